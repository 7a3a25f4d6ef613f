//! The vector store: one Qdrant point per customer (named vectors plus a JSON payload), and
//! the nearest-neighbour questions the maps and clustering ask of it.
//!
//! Owns: the [`VectorStore`] contract, the two Qdrant backends ([`EdgeStore`], embedded
//! `qdrant-edge`; [`ServerStore`], `qdrant-client` over gRPC) behind the closed
//! [`ConfiguredStore`] enum built from `[store]` settings, the customer-id → point-id
//! mapping, and validation of every write before anything reaches an engine. The qdrant
//! crates appear nowhere else in segscope; swapping an engine touches this module only.
//!
//! Does not own: where the data directory is (the caller passes it), what the vectors mean
//! (the embedders and features make them), or the maths done on neighbour graphs
//! (`analysis`). Nothing here reads the process environment except
//! [`ConfiguredStore::open`], which looks up `QDRANT_API_KEY` once when the settings leave the
//! key empty.
//!
//! Why a closed enum and `impl Future` methods rather than `Arc<dyn VectorStore>`: there are
//! exactly two engines, both chosen from settings, and static dispatch keeps the futures
//! `Send` without boxing. A test double is not needed: tests use the real embedded engine.

mod edge;
mod server;
mod settings;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;

use ndarray::{Array2, ArrayView2};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use edge::{EdgeStore, WalUsage};
pub use server::ServerStore;
pub use settings::{API_KEY_ENV, ApiKey, ServerSettings, StoreBackend, StoreSettings};

/// The payload key that keeps each point's original customer id (Qdrant ids are u64/UUID).
pub const CUSTOMER_ID_KEY: &str = "customer_id";

/// How a named vector's closeness is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distance {
    /// Angle only: vectors are normalised on insert (embeddings such as `browsing`).
    Cosine,
    /// Straight-line distance on the raw values (scaled features such as `rfm`).
    Euclid,
}

/// One named vector of the collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorSpec {
    /// Name used in points and queries (`browsing`, `rfm`).
    pub name: String,
    /// Exact length every vector of this name must have.
    pub dimensions: usize,
    /// How neighbours are measured.
    pub distance: Distance,
}

/// What the collection must look like; opening an existing collection that differs is an
/// error ([`StoreError::SchemaMismatch`]), never a silent reuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionSpec {
    /// Collection name (letters, digits, `_`, `-`; it is also a directory name).
    pub name: String,
    /// Named vectors, at least one, names unique.
    pub vectors: Vec<VectorSpec>,
}

impl CollectionSpec {
    /// Checks the spec once so the backends can rely on it.
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |message: String| Err(StoreError::InvalidSpec { message });
        if let Err(message) = check_collection_name(&self.name) {
            return bad(message);
        }
        if self.vectors.is_empty() {
            return bad("a collection needs at least one named vector".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for v in &self.vectors {
            if v.name.is_empty() || !seen.insert(v.name.as_str()) {
                return bad(format!("vector name {:?} is empty or repeated", v.name));
            }
            if v.dimensions == 0 {
                return bad(format!("vector {:?} has 0 dimensions", v.name));
            }
        }
        Ok(())
    }

    /// The spec of vector `name`, if the collection has it.
    pub fn vector(&self, name: &str) -> Option<&VectorSpec> {
        self.vectors.iter().find(|v| v.name == name)
    }

    /// Human-readable summary used in mismatch errors: `browsing: 64 cosine, rfm: 3 euclid`.
    pub(crate) fn describe(&self) -> String {
        describe_vectors(
            self.vectors
                .iter()
                .map(|v| (v.name.clone(), v.dimensions, v.distance)),
        )
    }
}

pub(crate) fn describe_vectors(vectors: impl Iterator<Item = (String, usize, Distance)>) -> String {
    let mut all: Vec<_> = vectors.collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all.iter()
        .map(|(name, dims, distance)| {
            let d = match distance {
                Distance::Cosine => "cosine",
                Distance::Euclid => "euclid",
            };
            format!("{name}: {dims} {d}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn check_collection_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "collection name {name:?}: use 1 to 128 ASCII letters, digits, '_' or '-' (not starting with '-')"
        ))
    }
}

/// One customer as written: its vectors by name and its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerPoint {
    /// The customer's id as the data names it; the point id is derived from it.
    pub customer_id: String,
    /// Named vectors; a customer may lack one (e.g. no browsing history).
    pub vectors: BTreeMap<String, Vec<f32>>,
    /// Payload; must not contain [`CUSTOMER_ID_KEY`] with another value.
    pub payload: Map<String, Value>,
}

/// A customer as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCustomer {
    /// The customer's id.
    pub customer_id: String,
    /// Named vectors (empty unless asked for); cosine vectors come back normalised.
    pub vectors: BTreeMap<String, Vec<f32>>,
    /// The whole payload, [`CUSTOMER_ID_KEY`] included.
    pub payload: Map<String, Value>,
}

/// What an upsert did, for logs and stage timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpsertSummary {
    /// Points written (new or replaced).
    pub points: usize,
    /// Write requests used (`ceil(points / batch_size)`).
    pub batches: usize,
}

/// One search hit.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbour {
    /// The customer found.
    pub customer_id: String,
    /// Qdrant's score: cosine similarity for cosine vectors (higher is closer), euclidean
    /// distance for euclid vectors (lower is closer).
    pub score: f32,
}

/// The `k` nearest other customers of each customer asked for, as row indices into the
/// list that was asked for.
///
/// Same convention as `analysis::knn::KnnGraph`: row `i` lists neighbours by increasing
/// distance, ties broken by the smaller index, a customer is never its own neighbour.
#[derive(Debug, Clone, PartialEq)]
pub struct NeighbourGraph {
    indices: Array2<usize>,
    distances: Array2<f64>,
}

impl NeighbourGraph {
    /// Neighbour indices, `n x k`, nearest first.
    pub fn indices(&self) -> ArrayView2<'_, usize> {
        self.indices.view()
    }

    /// Euclidean distances matching [`NeighbourGraph::indices`] (for cosine vectors, between
    /// the normalised vectors, i.e. `sqrt(2 - 2 cos)`).
    pub fn distances(&self) -> ArrayView2<'_, f64> {
        self.distances.view()
    }

    /// Both arrays, for callers that build their own graph type from them.
    pub fn into_parts(self) -> (Array2<usize>, Array2<f64>) {
        (self.indices, self.distances)
    }
}

/// A payload condition for [`VectorStore::nearest`]; conditions in `All` must all hold.
///
/// `path` names nested keys one element each (`["segments", "run-7"]`), so run ids with
/// dots or dashes need no escaping.
#[derive(Debug, Clone, PartialEq)]
pub enum PayloadFilter {
    /// The value at `path` equals `value` (for arrays: contains it).
    Equals {
        /// Keys from the payload root.
        path: Vec<String>,
        /// Value to match.
        value: MatchValue,
    },
    /// The number at `path` lies in the inclusive range.
    Range {
        /// Keys from the payload root.
        path: Vec<String>,
        /// Lower bound, inclusive.
        gte: Option<f64>,
        /// Upper bound, inclusive.
        lte: Option<f64>,
    },
    /// Every inner condition holds.
    All(Vec<PayloadFilter>),
}

/// A value a payload field can be matched against exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchValue {
    /// Text, matched whole.
    Keyword(String),
    /// Whole number (segment ids, counts).
    Integer(i64),
    /// Flag.
    Bool(bool),
}

/// Maps customer ids to Qdrant point ids: the first 8 bytes of SHA-256 as a `u64`.
///
/// Deterministic, so the same customer always lands on the same point and re-running an
/// upsert never duplicates. Two customers sharing a point id (probability about `n^2 / 2^65`,
/// 3e-8 at a million customers) is detected on write and reported as
/// [`StoreError::PointIdCollision`], never silently overwritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointIdMapper {
    mask: u64,
}

impl Default for PointIdMapper {
    fn default() -> Self {
        Self { mask: u64::MAX }
    }
}

impl PointIdMapper {
    /// The production mapping.
    pub fn sha256() -> Self {
        Self::default()
    }

    /// Keeps only the low `bits` bits of the hash so that collisions are easy to provoke.
    /// For tests of collision handling only: a store written with it is not readable with
    /// the production mapping.
    #[doc(hidden)]
    pub fn truncated_for_tests(bits: u32) -> Self {
        let mask = if bits >= 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        Self { mask }
    }

    /// The point id of `customer_id`.
    pub fn point_id(&self, customer_id: &str) -> u64 {
        let digest = Sha256::digest(customer_id.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first) & self.mask
    }
}

/// Why a store operation failed. Messages name the customer, vector or setting involved and
/// never contain an API key.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `[store]` settings are out of range.
    #[error("store settings: {message}")]
    InvalidSettings {
        /// What is wrong.
        message: String,
    },
    /// The collection spec asked for is inconsistent.
    #[error("collection spec: {message}")]
    InvalidSpec {
        /// What is wrong.
        message: String,
    },
    /// The existing collection was created with other vectors than the spec asks for.
    #[error(
        "collection {collection:?} exists with vectors [{found}] but segscope expects [{expected}]; \
         point store.collection at a new name or delete the old collection"
    )]
    SchemaMismatch {
        /// Collection name.
        collection: String,
        /// What the spec asks for.
        expected: String,
        /// What is stored.
        found: String,
    },
    /// A vector has the wrong length; nothing of the batch was written.
    #[error(
        "customer {customer_id:?}: vector {vector:?} has {got} dimensions, expected {expected}; nothing of this batch was written"
    )]
    DimensionMismatch {
        /// Customer whose vector is wrong.
        customer_id: String,
        /// Vector name.
        vector: String,
        /// Dimensions the collection has.
        expected: usize,
        /// Dimensions given.
        got: usize,
    },
    /// A vector name the collection does not have.
    #[error("vector {vector:?} is not in the collection (it has: {known})")]
    UnknownVector {
        /// Name given.
        vector: String,
        /// Names the collection has.
        known: String,
    },
    /// NaN or infinity in a vector; nothing of the batch was written.
    #[error("customer {customer_id:?}: vector {vector:?} has a NaN or infinite value")]
    NonFiniteVector {
        /// Customer whose vector is wrong.
        customer_id: String,
        /// Vector name.
        vector: String,
    },
    /// The same customer twice in one request; nothing of it was written.
    #[error("customer {customer_id:?} appears more than once in one request")]
    DuplicateCustomer {
        /// The repeated id.
        customer_id: String,
    },
    /// Two customer ids map to one point id; nothing of the batch was written.
    #[error(
        "customers {first:?} and {second:?} map to the same point id {point_id}; refusing to overwrite one with the other"
    )]
    PointIdCollision {
        /// The shared point id.
        point_id: u64,
        /// Customer already stored (or first in the request).
        first: String,
        /// Customer being written.
        second: String,
    },
    /// The payload tries to set [`CUSTOMER_ID_KEY`] to something else, or uses a key that
    /// cannot be addressed.
    #[error("customer {customer_id:?}: payload key {key:?}: {reason}")]
    InvalidPayload {
        /// Customer concerned.
        customer_id: String,
        /// Offending key.
        key: String,
        /// Why it is refused.
        reason: String,
    },
    /// A customer that is not stored.
    #[error("customer {customer_id:?} is not in the store")]
    UnknownCustomer {
        /// The id asked for.
        customer_id: String,
    },
    /// A customer lacks the vector a neighbour graph is built on.
    #[error("customer {customer_id:?} has no {vector:?} vector; leave it out of the graph")]
    MissingVector {
        /// The customer.
        customer_id: String,
        /// Vector name.
        vector: String,
    },
    /// `k` does not fit the request.
    #[error("k = {k} neighbours asked of {n} customers: need 1 <= k < n")]
    InvalidK {
        /// Neighbours asked for.
        k: usize,
        /// Customers in the request.
        n: usize,
    },
    /// A filter path cannot be expressed as a Qdrant key.
    #[error("filter path {path:?}: {reason}")]
    InvalidFilter {
        /// The path.
        path: Vec<String>,
        /// Why.
        reason: String,
    },
    /// The engine (embedded or server) refused or failed an operation.
    #[error("qdrant {backend} {operation}: {message}")]
    Engine {
        /// `edge` or `server`.
        backend: &'static str,
        /// What was being done.
        operation: &'static str,
        /// The engine's message.
        message: String,
    },
    /// The embedded store's directory is already open (its WAL is locked), in this process
    /// or another: one process, one handle per data directory.
    #[error("{path}: the store is already open in this or another process (its WAL is locked)")]
    Locked {
        /// The store directory.
        path: String,
    },
    /// Filesystem work around the embedded engine failed (directories, compaction swap).
    #[error("{path}: {source}")]
    Io {
        /// Path involved.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A Qdrant collection of customers, one point each.
///
/// Contract every implementation keeps:
/// - **Identity.** A customer id maps to one point id ([`PointIdMapper`]); the original id is
///   kept in the payload under [`CUSTOMER_ID_KEY`]. Writing the same customer again replaces
///   its point, never duplicates it. A point id shared by two customer ids is an error.
/// - **Validation before writing.** Every vector of a request is checked (known name, exact
///   dimensions, finite values) and every customer id checked for duplicates and collisions
///   before the first write; a rejected request leaves the store as it was.
/// - **Upsert** replaces the point's vectors with exactly those given (a vector left out is
///   absent afterwards) and merges the payload at the top level: given keys replace stored
///   ones, stored keys not given are kept, so segment history written with
///   [`VectorStore::set_payload`] survives a weekly re-upsert of features.
/// - **set_payload** merges: a key whose value is an object is merged one level into the
///   stored object under that key; any other value replaces the stored one. Segment per run
///   is therefore kept as `{"segments": {"<run_id>": <segment>}}`: writing run B leaves run
///   A's entry alone. Customers must already be stored.
/// - **Durability.** A write call returns only after its data is flushed to disk (edge) or
///   acknowledged by the server with `wait = true`.
/// - **Order.** `retrieve` returns customers in the order asked, leaving out ids not stored.
/// - **Exactness.** `knn_graph` is exact (no HNSW approximation) and restricted to the
///   customers asked for; `nearest` uses the engine's default search (exact on the edge).
pub trait VectorStore: Send + Sync {
    /// Writes `points` (validated first, then batched by `store.batch_size`).
    fn upsert(
        &self,
        points: &[CustomerPoint],
    ) -> impl Future<Output = Result<UpsertSummary, StoreError>> + Send;

    /// Merges payload values into stored customers; returns how many were updated.
    fn set_payload(
        &self,
        values: &[(String, Map<String, Value>)],
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Number of customers stored (exact).
    fn count(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The customers asked for, in that order; ids not stored are left out.
    fn retrieve(
        &self,
        customer_ids: &[String],
        with_vectors: bool,
    ) -> impl Future<Output = Result<Vec<StoredCustomer>, StoreError>> + Send;

    /// The `k` customers nearest to `query` on vector `vector`, best first, optionally only
    /// among customers whose payload matches `filter`.
    fn nearest(
        &self,
        vector: &str,
        query: &[f32],
        k: usize,
        filter: Option<&PayloadFilter>,
    ) -> impl Future<Output = Result<Vec<Neighbour>, StoreError>> + Send;

    /// The exact `k` nearest other customers of each of `customer_ids` on vector `vector`,
    /// neighbours drawn from `customer_ids` only.
    fn knn_graph(
        &self,
        vector: &str,
        customer_ids: &[String],
        k: usize,
    ) -> impl Future<Output = Result<NeighbourGraph, StoreError>> + Send;
}

/// Whether the configured store can take work now, for readiness probes; returns the
/// backend's name. The embedded engine is ready when its directory under `data_dir` exists
/// (it is created) and takes a write; a server when it answers its health check within
/// `store.server.timeout_secs`. Opens no collection, so a probe never contends with a run
/// for the embedded engine's lock.
pub async fn probe(settings: &StoreSettings, data_dir: &Path) -> Result<&'static str, StoreError> {
    match settings.backend {
        StoreBackend::Edge => {
            let dir = data_dir.join("qdrant");
            let failed = |e: std::io::Error| StoreError::Engine {
                backend: "edge",
                operation: "probe",
                message: format!("{}: {e}", dir.display()),
            };
            tokio::fs::create_dir_all(&dir).await.map_err(failed)?;
            let marker = dir.join(".readyz");
            tokio::fs::write(&marker, b"ok").await.map_err(failed)?;
            tokio::fs::remove_file(&marker).await.map_err(failed)?;
            Ok("edge")
        }
        StoreBackend::Server => {
            let key = settings
                .server
                .effective_api_key(|name| std::env::var(name).ok());
            server::probe(&settings.server, key).await?;
            Ok("server")
        }
    }
}

/// The store chosen by `store.backend`: the pipeline holds this, not a trait object.
#[derive(Debug, Clone)]
pub enum ConfiguredStore {
    /// Embedded engine.
    Edge(EdgeStore),
    /// Qdrant server or cluster.
    Server(ServerStore),
}

impl ConfiguredStore {
    /// Opens (or creates) `collection` on the configured backend. `data_dir` holds the
    /// embedded engine's files (`<data_dir>/qdrant/<collection>`); the server ignores it.
    /// The collection name comes from `settings.collection` when `collection.name` is empty.
    pub async fn open(
        settings: &StoreSettings,
        data_dir: &Path,
        collection: &CollectionSpec,
    ) -> Result<Self, StoreError> {
        settings.validate()?;
        let mut spec = collection.clone();
        if spec.name.is_empty() {
            spec.name.clone_from(&settings.collection);
        }
        match settings.backend {
            StoreBackend::Edge => {
                let dir = data_dir.join("qdrant").join(&spec.name);
                Ok(Self::Edge(
                    EdgeStore::open(&dir, spec, settings.batch_size).await?,
                ))
            }
            StoreBackend::Server => {
                let key = settings
                    .server
                    .effective_api_key(|name| std::env::var(name).ok());
                Ok(Self::Server(
                    ServerStore::connect(&settings.server, key, spec, settings.batch_size).await?,
                ))
            }
        }
    }
}

impl VectorStore for ConfiguredStore {
    async fn upsert(&self, points: &[CustomerPoint]) -> Result<UpsertSummary, StoreError> {
        match self {
            Self::Edge(s) => s.upsert(points).await,
            Self::Server(s) => s.upsert(points).await,
        }
    }

    async fn set_payload(
        &self,
        values: &[(String, Map<String, Value>)],
    ) -> Result<usize, StoreError> {
        match self {
            Self::Edge(s) => s.set_payload(values).await,
            Self::Server(s) => s.set_payload(values).await,
        }
    }

    async fn count(&self) -> Result<u64, StoreError> {
        match self {
            Self::Edge(s) => s.count().await,
            Self::Server(s) => s.count().await,
        }
    }

    async fn retrieve(
        &self,
        customer_ids: &[String],
        with_vectors: bool,
    ) -> Result<Vec<StoredCustomer>, StoreError> {
        match self {
            Self::Edge(s) => s.retrieve(customer_ids, with_vectors).await,
            Self::Server(s) => s.retrieve(customer_ids, with_vectors).await,
        }
    }

    async fn nearest(
        &self,
        vector: &str,
        query: &[f32],
        k: usize,
        filter: Option<&PayloadFilter>,
    ) -> Result<Vec<Neighbour>, StoreError> {
        match self {
            Self::Edge(s) => s.nearest(vector, query, k, filter).await,
            Self::Server(s) => s.nearest(vector, query, k, filter).await,
        }
    }

    async fn knn_graph(
        &self,
        vector: &str,
        customer_ids: &[String],
        k: usize,
    ) -> Result<NeighbourGraph, StoreError> {
        match self {
            Self::Edge(s) => s.knn_graph(vector, customer_ids, k).await,
            Self::Server(s) => s.knn_graph(vector, customer_ids, k).await,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Shared by both backends: validation, payload merging, graph assembly.

/// A point that passed validation, with its point id and the payload to write (customer id
/// included).
#[derive(Debug, Clone)]
pub(crate) struct CheckedPoint<'a> {
    pub(crate) point_id: u64,
    pub(crate) point: &'a CustomerPoint,
}

/// Validates a whole upsert request before anything is written.
pub(crate) fn check_points<'a>(
    spec: &CollectionSpec,
    ids: &PointIdMapper,
    points: &'a [CustomerPoint],
) -> Result<Vec<CheckedPoint<'a>>, StoreError> {
    let mut by_point: HashMap<u64, &str> = HashMap::with_capacity(points.len());
    let mut out = Vec::with_capacity(points.len());
    for p in points {
        for (name, values) in &p.vectors {
            let Some(v) = spec.vector(name) else {
                return Err(unknown_vector(spec, name));
            };
            if values.len() != v.dimensions {
                return Err(StoreError::DimensionMismatch {
                    customer_id: p.customer_id.clone(),
                    vector: name.clone(),
                    expected: v.dimensions,
                    got: values.len(),
                });
            }
            if values.iter().any(|x| !x.is_finite()) {
                return Err(StoreError::NonFiniteVector {
                    customer_id: p.customer_id.clone(),
                    vector: name.clone(),
                });
            }
        }
        check_payload_keys(&p.customer_id, &p.payload)?;
        let point_id = ids.point_id(&p.customer_id);
        if let Some(first) = by_point.insert(point_id, &p.customer_id) {
            if first == p.customer_id {
                return Err(StoreError::DuplicateCustomer {
                    customer_id: p.customer_id.clone(),
                });
            }
            return Err(StoreError::PointIdCollision {
                point_id,
                first: first.to_string(),
                second: p.customer_id.clone(),
            });
        }
        out.push(CheckedPoint { point_id, point: p });
    }
    Ok(out)
}

/// Maps the customers of a read or payload request to point ids, refusing duplicates and
/// collisions inside the request.
pub(crate) fn point_ids_of(
    ids: &PointIdMapper,
    customer_ids: &[String],
) -> Result<Vec<u64>, StoreError> {
    let mut by_point: HashMap<u64, &str> = HashMap::with_capacity(customer_ids.len());
    let mut out = Vec::with_capacity(customer_ids.len());
    for c in customer_ids {
        let point_id = ids.point_id(c);
        if let Some(first) = by_point.insert(point_id, c) {
            if first == c {
                return Err(StoreError::DuplicateCustomer {
                    customer_id: c.clone(),
                });
            }
            return Err(StoreError::PointIdCollision {
                point_id,
                first: first.to_string(),
                second: c.clone(),
            });
        }
        out.push(point_id);
    }
    Ok(out)
}

pub(crate) fn unknown_vector(spec: &CollectionSpec, name: &str) -> StoreError {
    StoreError::UnknownVector {
        vector: name.to_string(),
        known: spec
            .vectors
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn check_payload_keys(customer_id: &str, payload: &Map<String, Value>) -> Result<(), StoreError> {
    if let Some(v) = payload.get(CUSTOMER_ID_KEY)
        && v.as_str() != Some(customer_id)
    {
        return Err(StoreError::InvalidPayload {
            customer_id: customer_id.to_string(),
            key: CUSTOMER_ID_KEY.into(),
            reason: "is reserved for the customer's own id".into(),
        });
    }
    Ok(())
}

/// The payload to store for a new or replaced point: the stored payload (if any) with the
/// given keys replacing stored ones, and the customer id.
pub(crate) fn merged_upsert_payload(
    stored: Option<&Map<String, Value>>,
    point: &CustomerPoint,
) -> Map<String, Value> {
    let mut out = stored.cloned().unwrap_or_default();
    for (k, v) in &point.payload {
        out.insert(k.clone(), v.clone());
    }
    out.insert(
        CUSTOMER_ID_KEY.into(),
        Value::String(point.customer_id.clone()),
    );
    out
}

/// The stored customer id of a point, if the payload has one.
pub(crate) fn stored_customer_id(payload: &Map<String, Value>) -> Option<&str> {
    payload.get(CUSTOMER_ID_KEY).and_then(Value::as_str)
}

/// Fails unless the point stored under `point_id` belongs to `customer_id` (or is absent).
pub(crate) fn check_stored_owner(
    point_id: u64,
    customer_id: &str,
    stored: Option<&Map<String, Value>>,
) -> Result<(), StoreError> {
    match stored.map(stored_customer_id) {
        None => Ok(()),
        Some(Some(owner)) if owner == customer_id => Ok(()),
        Some(owner) => Err(StoreError::PointIdCollision {
            point_id,
            first: owner.unwrap_or("(a point without customer_id)").to_string(),
            second: customer_id.to_string(),
        }),
    }
}

/// One payload write as Qdrant understands it: `payload` merged at `key` (a JSON path) or at
/// the root, on `points`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PayloadWrite {
    pub(crate) key: Option<String>,
    pub(crate) payload: Map<String, Value>,
    pub(crate) points: Vec<u64>,
}

/// Splits `set_payload` values into Qdrant writes: plain values merge at the root, object
/// values merge one level into the object under their key. Identical writes to several
/// customers (e.g. everyone in segment 3 of a run) share one operation.
pub(crate) fn plan_payload_writes(
    values: &[(String, Map<String, Value>)],
    point_ids: &[u64],
) -> Result<Vec<PayloadWrite>, StoreError> {
    let mut groups: BTreeMap<(Option<String>, String), PayloadWrite> = BTreeMap::new();
    for ((customer_id, map), &point_id) in values.iter().zip(point_ids) {
        check_payload_keys(customer_id, map)?;
        let mut root = Map::new();
        for (k, v) in map {
            match v {
                Value::Object(obj) if !obj.is_empty() => {
                    let key = quote_key(k).ok_or_else(|| StoreError::InvalidPayload {
                        customer_id: customer_id.clone(),
                        key: k.clone(),
                        reason: "keys holding objects cannot contain '\"' or '\\'".into(),
                    })?;
                    push_write(&mut groups, Some(key), obj.clone(), point_id);
                }
                _ => {
                    root.insert(k.clone(), v.clone());
                }
            }
        }
        if !root.is_empty() {
            push_write(&mut groups, None, root, point_id);
        }
    }
    Ok(groups.into_values().collect())
}

fn push_write(
    groups: &mut BTreeMap<(Option<String>, String), PayloadWrite>,
    key: Option<String>,
    payload: Map<String, Value>,
    point_id: u64,
) {
    let fingerprint = Value::Object(payload.clone()).to_string();
    groups
        .entry((key.clone(), fingerprint))
        .or_insert_with(|| PayloadWrite {
            key,
            payload,
            points: Vec::new(),
        })
        .points
        .push(point_id);
}

/// One key as a Qdrant JSON-path element: bare when it is plain, quoted otherwise; `None`
/// when it cannot be expressed.
fn quote_key(key: &str) -> Option<String> {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        Some(key.to_string())
    } else if key.contains('"') || key.contains('\\') {
        None
    } else {
        Some(format!("\"{key}\""))
    }
}

/// A filter path as a Qdrant JSON path string (`segments."run.7"`).
pub(crate) fn json_path(path: &[String]) -> Result<String, StoreError> {
    if path.is_empty() {
        return Err(StoreError::InvalidFilter {
            path: path.to_vec(),
            reason: "empty path".into(),
        });
    }
    let parts: Option<Vec<String>> = path.iter().map(|k| quote_key(k)).collect();
    parts
        .map(|p| p.join("."))
        .ok_or_else(|| StoreError::InvalidFilter {
            path: path.to_vec(),
            reason: "keys cannot contain '\"' or '\\'".into(),
        })
}

/// Extra candidates asked of the engine per row beyond `k + 1`. The engine ranks in f32;
/// re-ranking a few more in f64 keeps the neighbour *set* exact when the k-th and the next
/// candidate differ by less than f32 rounding (seen on clustered data: 3 of 300,000
/// neighbours differed from brute force without it). The scan costs the same.
pub(crate) const RERANK_MARGIN: usize = 8;

/// Checks a kNN-graph request: `1 <= k < n`.
pub(crate) fn check_k(k: usize, n: usize) -> Result<(), StoreError> {
    if k == 0 || k >= n {
        return Err(StoreError::InvalidK { k, n });
    }
    Ok(())
}

/// Builds the graph from each row's candidate neighbours (row indices, best first as the
/// engine ranked them, possibly including the row itself). Distances are recomputed in f64
/// from the stored vectors, so they are exact rather than Qdrant's f32 scores turned back
/// into distances, and rows are re-sorted by (distance, index).
pub(crate) fn assemble_graph(
    vectors: &[Vec<f32>],
    candidates: Vec<Vec<usize>>,
    k: usize,
    backend: &'static str,
) -> Result<NeighbourGraph, StoreError> {
    let n = vectors.len();
    let mut indices = Array2::<usize>::zeros((n, k));
    let mut distances = Array2::<f64>::zeros((n, k));
    for (i, row) in candidates.into_iter().enumerate() {
        let mut found: Vec<(f64, usize)> = row
            .into_iter()
            .filter(|&j| j != i)
            .map(|j| (euclidean(&vectors[i], &vectors[j]), j))
            .collect();
        if found.len() < k {
            return Err(StoreError::Engine {
                backend,
                operation: "knn graph",
                message: format!("row {i}: {} neighbours found, {k} needed", found.len()),
            });
        }
        found.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (c, (d, j)) in found.into_iter().take(k).enumerate() {
            indices[[i, c]] = j;
            distances[[i, c]] = d;
        }
    }
    Ok(NeighbourGraph { indices, distances })
}

fn euclidean(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = f64::from(x) - f64::from(y);
            d * d
        })
        .sum::<f64>()
        .sqrt()
}

/// Cosine vectors as the engines store them (unit length), so that graph distances match
/// what is stored whichever engine returned the vector.
pub(crate) fn normalised(v: &[f32]) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 {
        return v.to_vec();
    }
    v.iter().map(|x| (f64::from(*x) / norm) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> CollectionSpec {
        CollectionSpec {
            name: "customers".into(),
            vectors: vec![
                VectorSpec {
                    name: "browsing".into(),
                    dimensions: 4,
                    distance: Distance::Cosine,
                },
                VectorSpec {
                    name: "rfm".into(),
                    dimensions: 3,
                    distance: Distance::Euclid,
                },
            ],
        }
    }

    fn point(id: &str, rfm: Vec<f32>) -> CustomerPoint {
        CustomerPoint {
            customer_id: id.into(),
            vectors: BTreeMap::from([("rfm".to_string(), rfm)]),
            payload: Map::new(),
        }
    }

    #[test]
    fn point_ids_are_stable_and_distinct() {
        let ids = PointIdMapper::sha256();
        assert_eq!(ids.point_id("12345"), ids.point_id("12345"));
        assert_ne!(ids.point_id("12345"), ids.point_id("12346"));
        // Pinned: changing the mapping would orphan every stored customer.
        assert_eq!(ids.point_id("12345"), 0x5994_471a_bb01_112a);
    }

    #[test]
    fn request_checks_name_the_problem() {
        let s = spec();
        let ids = PointIdMapper::sha256();
        let e = check_points(&s, &ids, &[point("a", vec![1.0, 2.0])]).unwrap_err();
        assert!(matches!(
            e,
            StoreError::DimensionMismatch { ref vector, expected: 3, got: 2, .. } if vector == "rfm"
        ));
        let e = check_points(&s, &ids, &[point("a", vec![1.0, f32::NAN, 0.0])]).unwrap_err();
        assert!(matches!(e, StoreError::NonFiniteVector { .. }));
        let e = check_points(
            &s,
            &ids,
            &[point("a", vec![0.0; 3]), point("a", vec![1.0; 3])],
        )
        .unwrap_err();
        assert!(matches!(e, StoreError::DuplicateCustomer { .. }));
        let mut p = point("a", vec![0.0; 3]);
        p.payload.insert(CUSTOMER_ID_KEY.into(), json!("b"));
        assert!(matches!(
            check_points(&s, &ids, &[p]).unwrap_err(),
            StoreError::InvalidPayload { .. }
        ));
        let tiny = PointIdMapper::truncated_for_tests(1);
        let many: Vec<_> = (0..3)
            .map(|i| point(&i.to_string(), vec![0.0; 3]))
            .collect();
        assert!(matches!(
            check_points(&s, &tiny, &many).unwrap_err(),
            StoreError::PointIdCollision { .. }
        ));
    }

    #[test]
    fn payload_writes_group_identical_values_and_merge_objects_by_key() {
        let values = vec![
            (
                "a".to_string(),
                json!({"segments": {"run-2": 3}, "tier": "gold"}),
            ),
            ("b".to_string(), json!({"segments": {"run-2": 3}})),
            ("c".to_string(), json!({"segments": {"run.2": 1}})),
        ];
        let values: Vec<_> = values
            .into_iter()
            .map(|(c, v)| match v {
                Value::Object(m) => (c, m),
                _ => unreachable!(),
            })
            .collect();
        let writes = plan_payload_writes(&values, &[1, 2, 3]).expect("plan");
        assert_eq!(writes.len(), 3);
        let seg3 = writes
            .iter()
            .find(|w| w.key.as_deref() == Some("segments") && w.payload.get("run-2").is_some())
            .expect("grouped");
        assert_eq!(seg3.points, vec![1, 2]);
        assert!(
            writes
                .iter()
                .any(|w| w.key.is_none() && w.points == vec![1])
        );
        assert_eq!(
            json_path(&["segments".into(), "run.2".into()]).expect("path"),
            "segments.\"run.2\""
        );
    }

    #[test]
    fn spec_validation() {
        assert!(spec().validate().is_ok());
        let mut s = spec();
        s.vectors[1].name = "browsing".into();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.name = "../x".into();
        assert!(s.validate().is_err());
    }
}
