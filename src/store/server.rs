//! The server backend: a Qdrant node or cluster over gRPC with `qdrant-client`.
//!
//! Owns the connection (URL, API key, timeout), creating the collection with the cluster
//! settings (shards, replication factor, on-disk storage) and checking an existing one, and
//! the translation between segscope's types and Qdrant's protobuf ones. Keeps the same
//! contract as the embedded store ([`super::VectorStore`]); the differences are stated where
//! they arise:
//! - writes use `wait = true`, so a call returns once the server has applied them;
//! - the checks before a write (stored owner of each point id) are a read followed by a
//!   write, not atomic against *another* process writing the same collection; segscope has
//!   one writer per collection;
//! - the kNN graph uses `search_batch_points` with `exact = true`. Qdrant's distance-matrix
//!   API (`search_matrix_pairs` / `SearchMatrixPoints`) does not fit: it draws a random
//!   `sample` of points, takes no `exact` flag or search params (so it is HNSW-approximate
//!   once a collection is indexed), cannot be told which customers to use except through a
//!   filter, and returns scores rather than distances. It suits a quick "how clustered is
//!   this" sample, not the exact graph UMAP, t-SNE and HDBSCAN are given.
//!
//! The API key is handed to the client and nowhere else: not to logs, errors or `Debug`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    Distance as QDistance, FieldType, Filter, GetPointsBuilder, ListValue, PayloadIncludeSelector,
    PointId, PointStruct, PointsIdsList, PointsUpdateOperation, Range, ScoredPoint,
    SearchBatchPointsBuilder, SearchParamsBuilder, SearchPointsBuilder, Struct,
    UpdateBatchPointsBuilder, UpsertPointsBuilder, Value as QValue, VectorParamsBuilder,
    VectorsConfigBuilder, VectorsSelector, point_id, points_selector, points_update_operation,
    value::Kind, vector_output, vectors_config, vectors_output,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use serde_json::{Map, Number, Value};

use super::{
    ApiKey, CUSTOMER_ID_KEY, CollectionSpec, CustomerPoint, Distance, MatchValue, Neighbour,
    NeighbourGraph, PayloadFilter, PointIdMapper, RERANK_MARGIN, ServerSettings, StoreError,
    StoredCustomer, UpsertSummary, VectorStore, assemble_graph, check_k, check_points,
    check_stored_owner, describe_vectors, json_path, merged_upsert_payload, normalised,
    plan_payload_writes, point_ids_of, stored_customer_id, unknown_vector,
};

const BACKEND: &str = "server";
/// Ids per read request and searches per batch request: keeps gRPC messages well under the
/// server's default 32 MiB limit.
const READ_CHUNK: usize = 1024;
const SEARCH_CHUNK: usize = 256;

/// A collection on a Qdrant server. Cheap to clone (an `Arc`; the client is shared).
#[derive(Clone)]
pub struct ServerStore {
    inner: Arc<ServerInner>,
}

struct ServerInner {
    client: Qdrant,
    spec: CollectionSpec,
    batch_size: usize,
    ids: PointIdMapper,
    url: String,
}

impl fmt::Debug for ServerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client holds the API key; never print it.
        f.debug_struct("ServerStore")
            .field("url", &self.inner.url)
            .field("collection", &self.inner.spec.name)
            .finish_non_exhaustive()
    }
}

fn engine(operation: &'static str) -> impl Fn(QdrantError) -> StoreError {
    move |e| StoreError::Engine {
        backend: BACKEND,
        operation,
        message: e.to_string(),
    }
}

/// A client for the server at `settings.url`, with its timeouts and key; connects lazily.
fn client(settings: &ServerSettings, api_key: Option<ApiKey>) -> Result<Qdrant, StoreError> {
    let mut config = Qdrant::from_url(&settings.url)
        .timeout(Duration::from_secs(settings.timeout_secs))
        .connect_timeout(Duration::from_secs(settings.timeout_secs))
        .skip_compatibility_check();
    if let Some(key) = api_key {
        config = config.api_key(key.expose().to_string());
    }
    config.build().map_err(engine("connect"))
}

/// Asks the server for its health, within `settings.timeout_secs`.
pub(crate) async fn probe(
    settings: &ServerSettings,
    api_key: Option<ApiKey>,
) -> Result<(), StoreError> {
    client(settings, api_key)?
        .health_check()
        .await
        .map_err(engine("health check"))?;
    Ok(())
}

impl ServerStore {
    /// Connects and opens the collection, creating it (with `settings`' shards, replication
    /// and on-disk choice, and a keyword index on `customer_id`) when it does not exist. An
    /// existing collection must have exactly the spec's vectors.
    pub async fn connect(
        settings: &ServerSettings,
        api_key: Option<ApiKey>,
        spec: CollectionSpec,
        batch_size: usize,
    ) -> Result<Self, StoreError> {
        Self::connect_with_ids(settings, api_key, spec, batch_size, PointIdMapper::sha256()).await
    }

    /// As [`ServerStore::connect`] with another id mapping (for collision tests).
    pub async fn connect_with_ids(
        settings: &ServerSettings,
        api_key: Option<ApiKey>,
        spec: CollectionSpec,
        batch_size: usize,
        ids: PointIdMapper,
    ) -> Result<Self, StoreError> {
        spec.validate()?;
        let client = client(settings, api_key)?;
        let store = Self {
            inner: Arc::new(ServerInner {
                client,
                spec,
                batch_size: batch_size.max(1),
                ids,
                url: settings.url.clone(),
            }),
        };
        store.ensure_collection(settings).await?;
        Ok(store)
    }

    /// The spec the store was opened with.
    pub fn spec(&self) -> &CollectionSpec {
        &self.inner.spec
    }

    /// Deletes the whole collection on the server (tests, and a deliberate reset after a
    /// schema change). Irreversible.
    pub async fn delete_collection(&self) -> Result<(), StoreError> {
        self.inner
            .client
            .delete_collection(self.inner.spec.name.clone())
            .await
            .map_err(engine("delete collection"))?;
        Ok(())
    }

    async fn ensure_collection(&self, settings: &ServerSettings) -> Result<(), StoreError> {
        let name = &self.inner.spec.name;
        let exists = self
            .inner
            .client
            .collection_exists(name)
            .await
            .map_err(engine("collection exists"))?;
        if exists {
            let info = self
                .inner
                .client
                .collection_info(name)
                .await
                .map_err(engine("collection info"))?;
            let params = info.result.and_then(|i| i.config).and_then(|c| c.params);
            return self.check_schema(params.and_then(|p| p.vectors_config).and_then(|v| v.config));
        }
        let mut vectors = VectorsConfigBuilder::default();
        for v in &self.inner.spec.vectors {
            let distance = match v.distance {
                Distance::Cosine => QDistance::Cosine,
                Distance::Euclid => QDistance::Euclid,
            };
            vectors.add_named_vector_params(
                v.name.clone(),
                VectorParamsBuilder::new(v.dimensions as u64, distance).on_disk(settings.on_disk),
            );
        }
        self.inner
            .client
            .create_collection(
                CreateCollectionBuilder::new(name.clone())
                    .vectors_config(vectors)
                    .shard_number(settings.shard_number)
                    .replication_factor(settings.replication_factor)
                    .on_disk_payload(settings.on_disk),
            )
            .await
            .map_err(engine("create collection"))?;
        self.inner
            .client
            .create_field_index(
                CreateFieldIndexCollectionBuilder::new(
                    name.clone(),
                    CUSTOMER_ID_KEY,
                    FieldType::Keyword,
                )
                .wait(true),
            )
            .await
            .map_err(engine("create customer_id index"))?;
        Ok(())
    }

    fn check_schema(&self, config: Option<vectors_config::Config>) -> Result<(), StoreError> {
        let found: Vec<(String, usize, Option<Distance>)> = match config {
            Some(vectors_config::Config::ParamsMap(map)) => map
                .map
                .into_iter()
                .map(|(name, p)| (name, p.size as usize, distance_of(p.distance)))
                .collect(),
            Some(vectors_config::Config::Params(p)) => {
                vec![(String::new(), p.size as usize, distance_of(p.distance))]
            }
            None => Vec::new(),
        };
        let matches = found.len() == self.inner.spec.vectors.len()
            && self.inner.spec.vectors.iter().all(|v| {
                found.iter().any(|(n, d, dist)| {
                    *n == v.name && *d == v.dimensions && *dist == Some(v.distance)
                })
            });
        if matches {
            return Ok(());
        }
        Err(StoreError::SchemaMismatch {
            collection: self.inner.spec.name.clone(),
            expected: self.inner.spec.describe(),
            found: describe_vectors(
                found
                    .into_iter()
                    .map(|(n, d, dist)| (n, d, dist.unwrap_or(Distance::Euclid))),
            ),
        })
    }

    /// Stored payloads (all, or the customer id only) of the given points, by point id.
    async fn stored_payloads(
        &self,
        point_ids: &[u64],
        full: bool,
    ) -> Result<HashMap<u64, Map<String, Value>>, StoreError> {
        let mut out = HashMap::with_capacity(point_ids.len());
        for chunk in point_ids.chunks(READ_CHUNK) {
            let request = GetPointsBuilder::new(self.inner.spec.name.clone(), num_ids(chunk))
                .with_vectors(false);
            let request = if full {
                request.with_payload(true)
            } else {
                request.with_payload(customer_id_only())
            };
            let points = self
                .inner
                .client
                .get_points(request)
                .await
                .map_err(engine("retrieve"))?;
            for p in points.result {
                if let Some(id) = p.id.and_then(num_id) {
                    out.insert(id, json_map(p.payload));
                }
            }
        }
        Ok(out)
    }

    async fn graph_vectors(
        &self,
        vector: &str,
        customer_ids: &[String],
        point_ids: &[u64],
    ) -> Result<Vec<Vec<f32>>, StoreError> {
        let mut out = Vec::with_capacity(point_ids.len());
        for (chunk_ids, chunk_customers) in point_ids
            .chunks(READ_CHUNK)
            .zip(customer_ids.chunks(READ_CHUNK))
        {
            let points = self
                .inner
                .client
                .get_points(
                    GetPointsBuilder::new(self.inner.spec.name.clone(), num_ids(chunk_ids))
                        .with_payload(customer_id_only())
                        .with_vectors(VectorsSelector {
                            names: vec![vector.to_string()],
                        }),
                )
                .await
                .map_err(engine("retrieve"))?;
            let mut by_id: HashMap<u64, _> = points
                .result
                .into_iter()
                .filter_map(|p| p.id.clone().and_then(num_id).map(|id| (id, p)))
                .collect();
            for (id, customer) in chunk_ids.iter().zip(chunk_customers) {
                let unknown = || StoreError::UnknownCustomer {
                    customer_id: customer.clone(),
                };
                let point = by_id.remove(id).ok_or_else(unknown)?;
                let payload = json_map(point.payload);
                if stored_customer_id(&payload) != Some(customer.as_str()) {
                    return Err(unknown());
                }
                let v = named_vectors(point.vectors).remove(vector).ok_or_else(|| {
                    StoreError::MissingVector {
                        customer_id: customer.clone(),
                        vector: vector.into(),
                    }
                })?;
                out.push(v);
            }
        }
        Ok(out)
    }
}

fn customer_id_only() -> PayloadIncludeSelector {
    PayloadIncludeSelector {
        fields: vec![CUSTOMER_ID_KEY.to_string()],
    }
}

fn distance_of(d: i32) -> Option<Distance> {
    match QDistance::try_from(d) {
        Ok(QDistance::Cosine) => Some(Distance::Cosine),
        Ok(QDistance::Euclid) => Some(Distance::Euclid),
        _ => None,
    }
}

fn num_ids(ids: &[u64]) -> Vec<PointId> {
    ids.iter().map(|&id| PointId::from(id)).collect()
}

fn num_id(id: PointId) -> Option<u64> {
    match id.point_id_options {
        Some(point_id::PointIdOptions::Num(n)) => Some(n),
        _ => None,
    }
}

fn named_vectors(v: Option<qdrant_client::qdrant::VectorsOutput>) -> BTreeMap<String, Vec<f32>> {
    let Some(vectors_output::VectorsOptions::Vectors(named)) = v.and_then(|v| v.vectors_options)
    else {
        return BTreeMap::new();
    };
    named
        .vectors
        .into_iter()
        .filter_map(|(name, out)| match out.vector {
            Some(vector_output::Vector::Dense(d)) => Some((name, d.data)),
            _ => None,
        })
        .collect()
}

// --- payload conversion (written here rather than enabling qdrant-client's `serde` feature,
// which would rebuild the client crate for a few lines of mapping) ---

fn to_qvalue(v: &Value) -> QValue {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Kind::IntegerValue(i),
            None => Kind::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(to_qvalue).collect(),
        }),
        Value::Object(map) => Kind::StructValue(Struct {
            fields: map.iter().map(|(k, v)| (k.clone(), to_qvalue(v))).collect(),
        }),
    };
    QValue { kind: Some(kind) }
}

fn from_qvalue(v: QValue) -> Value {
    match v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::IntegerValue(i)) => Value::Number(i.into()),
        Some(Kind::DoubleValue(f)) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::ListValue(l)) => Value::Array(l.values.into_iter().map(from_qvalue).collect()),
        Some(Kind::StructValue(s)) => Value::Object(
            s.fields
                .into_iter()
                .map(|(k, v)| (k, from_qvalue(v)))
                .collect(),
        ),
    }
}

fn to_qpayload(map: &Map<String, Value>) -> HashMap<String, QValue> {
    map.iter().map(|(k, v)| (k.clone(), to_qvalue(v))).collect()
}

fn json_map(payload: HashMap<String, QValue>) -> Map<String, Value> {
    // Sorted so that payloads read back compare equal whatever the server's map order.
    let sorted: BTreeMap<String, QValue> = payload.into_iter().collect();
    sorted
        .into_iter()
        .map(|(k, v)| (k, from_qvalue(v)))
        .collect()
}

fn to_filter(filter: &PayloadFilter) -> Result<Filter, StoreError> {
    Ok(Filter::must([to_condition(filter)?]))
}

fn to_condition(filter: &PayloadFilter) -> Result<Condition, StoreError> {
    Ok(match filter {
        PayloadFilter::Equals { path, value } => {
            let key = json_path(path)?;
            match value {
                MatchValue::Keyword(s) => Condition::matches(key, s.clone()),
                MatchValue::Integer(i) => Condition::matches(key, *i),
                MatchValue::Bool(b) => Condition::matches(key, *b),
            }
        }
        PayloadFilter::Range { path, gte, lte } => Condition::range(
            json_path(path)?,
            Range {
                lt: None,
                gt: None,
                gte: *gte,
                lte: *lte,
            },
        ),
        PayloadFilter::All(inner) => Condition::from(Filter::must(
            inner
                .iter()
                .map(to_condition)
                .collect::<Result<Vec<_>, _>>()?,
        )),
    })
}

fn hit_customer(hit: ScoredPoint) -> Option<Neighbour> {
    let payload = json_map(hit.payload);
    stored_customer_id(&payload).map(|c| Neighbour {
        customer_id: c.to_string(),
        score: hit.score,
    })
}

impl VectorStore for ServerStore {
    async fn upsert(&self, points: &[CustomerPoint]) -> Result<UpsertSummary, StoreError> {
        let checked = check_points(&self.inner.spec, &self.inner.ids, points)?;
        let ids: Vec<u64> = checked.iter().map(|c| c.point_id).collect();
        let stored = self.stored_payloads(&ids, true).await?;
        for c in &checked {
            check_stored_owner(c.point_id, &c.point.customer_id, stored.get(&c.point_id))?;
        }
        let mut batches = 0;
        for chunk in checked.chunks(self.inner.batch_size) {
            let list: Vec<PointStruct> = chunk
                .iter()
                .map(|c| {
                    let vectors: HashMap<String, Vec<f32>> = c
                        .point
                        .vectors
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    let payload = merged_upsert_payload(stored.get(&c.point_id), c.point);
                    PointStruct::new(c.point_id, vectors, Payload::from(to_qpayload(&payload)))
                })
                .collect();
            self.inner
                .client
                .upsert_points(
                    UpsertPointsBuilder::new(self.inner.spec.name.clone(), list).wait(true),
                )
                .await
                .map_err(engine("upsert"))?;
            batches += 1;
        }
        Ok(UpsertSummary {
            points: checked.len(),
            batches,
        })
    }

    async fn set_payload(
        &self,
        values: &[(String, Map<String, Value>)],
    ) -> Result<usize, StoreError> {
        let customer_ids: Vec<String> = values.iter().map(|(c, _)| c.clone()).collect();
        let point_ids = point_ids_of(&self.inner.ids, &customer_ids)?;
        let writes = plan_payload_writes(values, &point_ids)?;
        let stored = self.stored_payloads(&point_ids, false).await?;
        for (c, id) in customer_ids.iter().zip(&point_ids) {
            let payload = stored.get(id).ok_or_else(|| StoreError::UnknownCustomer {
                customer_id: c.clone(),
            })?;
            check_stored_owner(*id, c, Some(payload))?;
        }
        // One request carries many operations; chunk so no request grows unbounded.
        let operations: Vec<PointsUpdateOperation> = writes
            .into_iter()
            .map(|w| PointsUpdateOperation {
                operation: Some(points_update_operation::Operation::SetPayload(
                    points_update_operation::SetPayload {
                        payload: to_qpayload(&w.payload),
                        points_selector: Some(qdrant_client::qdrant::PointsSelector {
                            points_selector_one_of: Some(
                                points_selector::PointsSelectorOneOf::Points(PointsIdsList {
                                    ids: num_ids(&w.points),
                                }),
                            ),
                        }),
                        shard_key_selector: None,
                        key: w.key,
                    },
                )),
            })
            .collect();
        for chunk in operations.chunks(self.inner.batch_size) {
            self.inner
                .client
                .update_points_batch(
                    UpdateBatchPointsBuilder::new(self.inner.spec.name.clone(), chunk.to_vec())
                        .wait(true),
                )
                .await
                .map_err(engine("set payload"))?;
        }
        Ok(customer_ids.len())
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let response = self
            .inner
            .client
            .count(CountPointsBuilder::new(self.inner.spec.name.clone()).exact(true))
            .await
            .map_err(engine("count"))?;
        Ok(response.result.map_or(0, |r| r.count))
    }

    async fn retrieve(
        &self,
        customer_ids: &[String],
        with_vectors: bool,
    ) -> Result<Vec<StoredCustomer>, StoreError> {
        let point_ids = point_ids_of(&self.inner.ids, customer_ids)?;
        let mut by_id: HashMap<u64, StoredCustomer> = HashMap::with_capacity(point_ids.len());
        for chunk in point_ids.chunks(READ_CHUNK) {
            let points = self
                .inner
                .client
                .get_points(
                    GetPointsBuilder::new(self.inner.spec.name.clone(), num_ids(chunk))
                        .with_payload(true)
                        .with_vectors(with_vectors),
                )
                .await
                .map_err(engine("retrieve"))?;
            for p in points.result {
                let Some(id) = p.id.clone().and_then(num_id) else {
                    continue;
                };
                let payload = json_map(p.payload);
                let Some(customer_id) = stored_customer_id(&payload).map(str::to_string) else {
                    continue;
                };
                by_id.insert(
                    id,
                    StoredCustomer {
                        customer_id,
                        vectors: named_vectors(p.vectors),
                        payload,
                    },
                );
            }
        }
        // The server does not promise order: restore the order asked, keeping only points
        // that belong to the customer asked for.
        Ok(point_ids
            .iter()
            .zip(customer_ids)
            .filter_map(|(id, c)| by_id.remove(id).filter(|s| s.customer_id == *c))
            .collect())
    }

    async fn nearest(
        &self,
        vector: &str,
        query: &[f32],
        k: usize,
        filter: Option<&PayloadFilter>,
    ) -> Result<Vec<Neighbour>, StoreError> {
        let spec = self
            .inner
            .spec
            .vector(vector)
            .ok_or_else(|| unknown_vector(&self.inner.spec, vector))?;
        if query.len() != spec.dimensions {
            return Err(StoreError::DimensionMismatch {
                customer_id: "(query)".into(),
                vector: vector.into(),
                expected: spec.dimensions,
                got: query.len(),
            });
        }
        if k == 0 {
            return Ok(Vec::new());
        }
        let mut request =
            SearchPointsBuilder::new(self.inner.spec.name.clone(), query.to_vec(), k as u64)
                .vector_name(vector)
                .with_payload(customer_id_only());
        if let Some(f) = filter {
            request = request.filter(to_filter(f)?);
        }
        let response = self
            .inner
            .client
            .search_points(request)
            .await
            .map_err(engine("search"))?;
        Ok(response
            .result
            .into_iter()
            .filter_map(hit_customer)
            .collect())
    }

    async fn knn_graph(
        &self,
        vector: &str,
        customer_ids: &[String],
        k: usize,
    ) -> Result<NeighbourGraph, StoreError> {
        let spec = self
            .inner
            .spec
            .vector(vector)
            .ok_or_else(|| unknown_vector(&self.inner.spec, vector))?;
        check_k(k, customer_ids.len())?;
        let point_ids = point_ids_of(&self.inner.ids, customer_ids)?;
        let row_of: HashMap<u64, usize> =
            point_ids.iter().enumerate().map(|(i, &p)| (p, i)).collect();
        let mut vectors = self.graph_vectors(vector, customer_ids, &point_ids).await?;
        if spec.distance == Distance::Cosine {
            // The server stores cosine vectors normalised; normalising again is a no-op up
            // to rounding and makes the distances independent of that detail.
            vectors = vectors.iter().map(|v| normalised(v)).collect();
        }
        let with_vector = self
            .inner
            .client
            .count(
                CountPointsBuilder::new(self.inner.spec.name.clone())
                    .filter(Filter::must([Condition::has_vector(vector)]))
                    .exact(true),
            )
            .await
            .map_err(engine("count"))?
            .result
            .map_or(0, |r| r.count);
        let filter = (with_vector != point_ids.len() as u64)
            .then(|| Filter::must([Condition::has_id(point_ids.iter().copied())]));
        let mut candidates = Vec::with_capacity(vectors.len());
        for chunk in vectors.chunks(SEARCH_CHUNK) {
            let searches: Vec<_> = chunk
                .iter()
                .map(|v| {
                    let mut s = SearchPointsBuilder::new(
                        self.inner.spec.name.clone(),
                        v.clone(),
                        (k + 1 + RERANK_MARGIN) as u64,
                    )
                    .vector_name(vector)
                    .params(SearchParamsBuilder::default().exact(true));
                    if let Some(f) = &filter {
                        s = s.filter(f.clone());
                    }
                    s.build()
                })
                .collect();
            let response = self
                .inner
                .client
                .search_batch_points(SearchBatchPointsBuilder::new(
                    self.inner.spec.name.clone(),
                    searches,
                ))
                .await
                .map_err(engine("knn search"))?;
            for batch in response.result {
                candidates.push(
                    batch
                        .result
                        .into_iter()
                        .filter_map(|h| {
                            h.id.and_then(num_id)
                                .and_then(|id| row_of.get(&id).copied())
                        })
                        .collect(),
                );
            }
        }
        assemble_graph(&vectors, candidates, k, BACKEND)
    }
}
