//! A finished run read back from its directory: what the `ask` tools answer from.
//!
//! `segments.json` is read into this module's own read model rather than into the report's
//! types: the report's structs are written, never read, and carry serialisation-only
//! details; a reader needs only the fields it answers from and must say exactly which field
//! of which file is missing or malformed. Each top-level section (and each segment) is
//! decoded on its own, so an error names its path (`segments[2].kpis.business`).
//!
//! The run's fitted local embedder (`local_embedder.json`, written by store runs since it
//! was introduced) is loaded when present; without it the similarity tool says so instead
//! of guessing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::embedding::LocalEmbedder;
use crate::embedding::local::{SAVED_FILE, SavedLocalEmbedder};
use crate::narrative::Caveat;

/// The file every run directory has.
pub const SEGMENTS_FILE: &str = "segments.json";

/// Why a run directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The directory has no `segments.json`.
    #[error(
        "{path}: no such file; --run must name the output directory of `segscope segment` or `segscope demo`"
    )]
    Missing {
        /// The file looked for.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("{path}: not valid JSON: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's message (line and column).
        message: String,
    },
    /// A field is missing or has the wrong shape.
    #[error("{path}: field `{field}`: {message}")]
    Field {
        /// The file.
        path: PathBuf,
        /// Path of the field (`segments[2].kpis`).
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Mean and median of a KPI.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct SummaryView {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub median: f64,
}

/// One feature column's profile in a segment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FeatureView {
    /// Column name.
    pub feature: String,
    /// Segment mean.
    pub mean: f64,
    /// Segment median.
    pub median: f64,
    /// Mean over everyone.
    pub overall_mean: f64,
    /// Standardized difference from everyone.
    pub standardized_difference: f64,
}

/// An over-indexed category or brand.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InterestView {
    /// Category or brand.
    pub name: String,
    /// Share of the segment's browsers who touched it.
    pub segment_share: f64,
    /// Share of all browsers who touched it.
    pub base_share: f64,
    /// segment_share / base_share.
    pub lift: f64,
    /// Customers of the segment who touched it.
    pub customers: usize,
}

/// Store-data KPIs of a segment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BusinessView {
    /// Customers who bought.
    pub buyers: usize,
    /// Customers who browsed.
    pub browsers: usize,
    /// buyers / size.
    pub buyer_share: f64,
    /// Days since last purchase, over buyers.
    pub recency_days: Option<SummaryView>,
    /// Invoices, over buyers.
    pub frequency: Option<SummaryView>,
    /// Net revenue, over buyers.
    pub monetary: Option<SummaryView>,
    /// Net revenue of the segment.
    pub revenue: f64,
    /// Its share of all revenue.
    pub revenue_share: f64,
    /// Revenue per invoice.
    pub average_order_value: Option<f64>,
    /// Purchases per product view.
    pub conversion_rate: Option<f64>,
    /// Over-indexed categories.
    #[serde(default)]
    pub top_categories: Vec<InterestView>,
    /// Over-indexed brands.
    #[serde(default)]
    pub top_brands: Vec<InterestView>,
}

/// A segment's key figures.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct KpisView {
    /// Feature profiles.
    pub features: Vec<FeatureView>,
    /// Business KPIs (store data).
    pub business: Option<BusinessView>,
}

/// One segment as written in `segments.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SegmentView {
    /// Id from 1, largest first.
    pub id: usize,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Customers.
    pub size: usize,
    /// Share of all customers.
    pub share: f64,
    /// Mean best Jaccard under resampling.
    pub stability: Option<f64>,
    /// Key figures.
    pub kpis: KpisView,
    /// Caveats about this segment.
    pub caveats: Vec<Caveat>,
}

impl SegmentView {
    /// A feature column's profile, by name.
    pub fn feature(&self, name: &str) -> Option<&FeatureView> {
        self.kpis.features.iter().find(|f| f.feature == name)
    }
}

/// Whole-partition stability.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StabilityView {
    /// Mean adjusted Rand index.
    pub mean_ari: f64,
    /// Resamples drawn.
    pub resamples: usize,
}

/// Validity figures.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct QualityView {
    /// Mean silhouette.
    pub silhouette: Option<f64>,
    /// Davies–Bouldin.
    pub davies_bouldin: Option<f64>,
    /// Calinski–Harabasz.
    pub calinski_harabasz: Option<f64>,
    /// Stability.
    pub stability: Option<StabilityView>,
}

/// One map's figures.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MapView {
    /// PCA's explained variance per axis.
    pub explained_variance_ratio: Option<Vec<f64>>,
    /// Trustworthiness.
    pub trustworthiness: f64,
}

/// One k tried.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct KCandidateView {
    /// k.
    pub k: usize,
    /// Mean silhouette.
    pub silhouette: f64,
    /// Calinski–Harabasz.
    pub calinski_harabasz: f64,
    /// Davies–Bouldin.
    pub davies_bouldin: f64,
    /// BIC (Gaussian mixtures).
    pub bic: Option<f64>,
}

/// How k was chosen.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct KSelectionView {
    /// Every k tried.
    pub candidates: Vec<KCandidateView>,
    /// The k chosen.
    pub chosen: usize,
    /// The rule in words.
    pub rule: String,
}

/// The embedder a store run used.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EmbedderView {
    /// `local` or `openai`.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Vector length.
    pub dimensions: usize,
}

/// Where a store run put its customers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StoreView {
    /// `edge` or `server`.
    pub backend: String,
    /// Collection.
    pub collection: String,
    /// Payload key of this run's segments.
    pub run_id: String,
}

/// The store-data summary of a run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StoreRunView {
    /// Reference instant of recency.
    pub reference_time: String,
    /// Embedder, when anybody browsed.
    pub embedder: Option<EmbedderView>,
    /// Where customers are.
    pub store: StoreView,
}

/// Customers in no segment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NoiseView {
    /// How many.
    pub size: usize,
    /// Their share.
    pub share: f64,
}

/// What `ask` reads of `segments.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunDocument {
    /// Number of segments.
    pub k: usize,
    /// Clustering method.
    pub method: String,
    /// Seed.
    pub seed: u64,
    /// Customers analysed.
    pub n_customers: usize,
    /// Store-data summary.
    pub store: Option<StoreRunView>,
    /// How k was chosen (`--k auto`).
    pub k_selection: Option<KSelectionView>,
    /// Validity figures.
    pub quality: QualityView,
    /// Maps by name.
    pub maps: BTreeMap<String, MapView>,
    /// Noise.
    pub noise: Option<NoiseView>,
    /// Segments, largest first.
    pub segments: Vec<SegmentView>,
    /// Every caveat of the run.
    pub caveats: Vec<Caveat>,
    /// Who wrote the names.
    pub narrator: String,
}

/// A run directory, loaded.
#[derive(Debug)]
pub struct StoredRun {
    dir: PathBuf,
    document: RunDocument,
    embedder: Option<LocalEmbedder>,
    movement: Option<Value>,
}

/// The file `segscope track` writes; its presence offers the movement tools.
pub const MOVEMENT_FILE: &str = "movement.json";

impl StoredRun {
    /// Reads `dir/segments.json` (required unless the directory is a `segscope track`
    /// output), `dir/local_embedder.json` and `dir/movement.json` (when present). A
    /// directory with only `movement.json` opens as a run without segments, so questions
    /// about movement can be asked of `segscope track`'s output directly.
    pub fn open(dir: &Path) -> Result<StoredRun, RunError> {
        let path = dir.join(SEGMENTS_FILE);
        let movement_path = dir.join(MOVEMENT_FILE);
        let movement = if movement_path.is_file() {
            Some(read_json(&movement_path)?)
        } else {
            None
        };
        let document = match &movement {
            Some(m) if !path.exists() => RunDocument::movement_only(m),
            _ => {
                let root = read_json(&path)?;
                RunDocument::from_json(&path, &root)?
            }
        };
        let embedder_path = dir.join(SAVED_FILE);
        let embedder = if embedder_path.is_file() {
            let value = read_json(&embedder_path)?;
            let saved: SavedLocalEmbedder = decode(&embedder_path, "(root)", value)?;
            Some(LocalEmbedder::load(saved).map_err(|e| RunError::Field {
                path: embedder_path.clone(),
                field: "(root)".into(),
                message: e.to_string(),
            })?)
        } else {
            None
        };
        Ok(StoredRun {
            dir: dir.to_path_buf(),
            document,
            embedder,
            movement,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What `segments.json` says.
    pub fn document(&self) -> &RunDocument {
        &self.document
    }

    /// The run's fitted local embedder, when it was saved.
    pub fn embedder(&self) -> Option<&LocalEmbedder> {
        self.embedder.as_ref()
    }

    /// How answers cite the run: the store run id when there is one, and the directory.
    pub fn citation(&self) -> String {
        match &self.document.store {
            Some(store) => format!("run {} ({})", store.store.run_id, self.dir.display()),
            None => format!("run {}", self.dir.display()),
        }
    }

    /// What `movement.json` says, when the directory has one.
    pub fn movement(&self) -> Option<&Value> {
        self.movement.as_ref()
    }

    /// The segment with this id.
    pub fn segment(&self, id: usize) -> Option<&SegmentView> {
        self.document.segments.iter().find(|s| s.id == id)
    }
}

fn read_json(path: &Path) -> Result<Value, RunError> {
    let bytes = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            RunError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            RunError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| RunError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn decode<T: DeserializeOwned>(path: &Path, field: &str, value: Value) -> Result<T, RunError> {
    serde_json::from_value(value).map_err(|e| RunError::Field {
        path: path.to_path_buf(),
        field: field.to_string(),
        message: e.to_string(),
    })
}

fn required<T: DeserializeOwned>(
    path: &Path,
    root: &Map<String, Value>,
    field: &str,
) -> Result<T, RunError> {
    match root.get(field) {
        Some(value) => decode(path, field, value.clone()),
        None => Err(RunError::Field {
            path: path.to_path_buf(),
            field: field.to_string(),
            message: "missing".into(),
        }),
    }
}

fn optional<T: DeserializeOwned>(
    path: &Path,
    root: &Map<String, Value>,
    field: &str,
) -> Result<Option<T>, RunError> {
    match root.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => decode(path, field, value.clone()).map(Some),
    }
}

impl RunDocument {
    /// The document of a directory with `movement.json` and no `segments.json`: no
    /// segments, no quality figures; the seed is movement's.
    fn movement_only(movement: &Value) -> RunDocument {
        RunDocument {
            k: 0,
            method: "track".into(),
            seed: movement.get("seed").and_then(Value::as_u64).unwrap_or(0),
            n_customers: 0,
            store: None,
            k_selection: None,
            quality: QualityView {
                silhouette: None,
                davies_bouldin: None,
                calinski_harabasz: None,
                stability: None,
            },
            maps: BTreeMap::new(),
            noise: None,
            segments: Vec::new(),
            caveats: Vec::new(),
            narrator: "builtin".into(),
        }
    }

    fn from_json(path: &Path, root: &Value) -> Result<RunDocument, RunError> {
        let Some(root) = root.as_object() else {
            return Err(RunError::Field {
                path: path.to_path_buf(),
                field: "(root)".into(),
                message: "expected a JSON object".into(),
            });
        };
        let raw_segments: Vec<Value> = required(path, root, "segments")?;
        let segments = raw_segments
            .into_iter()
            .enumerate()
            .map(|(i, v)| decode::<SegmentView>(path, &format!("segments[{i}]"), v))
            .collect::<Result<Vec<_>, _>>()?;
        let raw_maps: BTreeMap<String, Value> = required(path, root, "maps")?;
        let maps = raw_maps
            .into_iter()
            .map(|(name, v)| {
                let view = decode::<MapView>(path, &format!("maps.{name}"), v)?;
                Ok((name, view))
            })
            .collect::<Result<BTreeMap<_, _>, RunError>>()?;
        let k: usize = required(path, root, "k")?;
        if k != segments.len() {
            return Err(RunError::Field {
                path: path.to_path_buf(),
                field: "k".into(),
                message: format!("is {k} but `segments` lists {}", segments.len()),
            });
        }
        Ok(RunDocument {
            k,
            method: required(path, root, "method")?,
            seed: required(path, root, "seed")?,
            n_customers: required(path, root, "n_customers")?,
            store: optional(path, root, "store")?,
            k_selection: optional(path, root, "k_selection")?,
            quality: required(path, root, "quality")?,
            maps,
            noise: optional(path, root, "noise")?,
            segments,
            caveats: required(path, root, "caveats")?,
            narrator: required(path, root, "narrator")?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn write(dir: &Path, text: &str) {
        std::fs::write(dir.join(SEGMENTS_FILE), text).expect("write");
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = StoredRun::open(dir.path()).expect_err("missing");
        assert!(matches!(err, RunError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("segments.json: no such file"));

        write(dir.path(), "{");
        let err = StoredRun::open(dir.path()).expect_err("not json");
        assert!(
            err.to_string().contains("segments.json: not valid JSON"),
            "{err}"
        );

        write(
            dir.path(),
            r#"{"k": 1, "method": "kmeans", "seed": 1, "n_customers": 3, "quality": {},
                "maps": {}, "caveats": [], "narrator": "builtin",
                "segments": [{"id": 1, "name": "a", "description": "", "size": 3,
                              "kpis": {"features": []}, "caveats": []}]}"#,
        );
        let err = StoredRun::open(dir.path()).expect_err("no share");
        assert_eq!(
            err.to_string(),
            format!(
                "{}: field `segments[0]`: missing field `share`",
                dir.path().join(SEGMENTS_FILE).display()
            )
        );

        write(
            dir.path(),
            r#"{"k": 2, "method": "kmeans", "seed": 1, "n_customers": 3, "quality": {},
                "maps": {}, "caveats": [], "narrator": "builtin", "segments": []}"#,
        );
        let err = StoredRun::open(dir.path()).expect_err("k");
        assert!(
            err.to_string()
                .ends_with("field `k`: is 2 but `segments` lists 0"),
            "{err}"
        );
    }
}
