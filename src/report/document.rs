//! The shape of `segments.json` and `run.json`.
//!
//! `segments.json` holds only what is determined by the input, settings and seed, so two
//! identical runs write identical bytes; `run.json` holds what is not (timings, thread
//! count, version) beside the seed and input digest, so a run can still be reproduced and
//! audited. Field order is fixed by the struct definitions.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analysis::clustering::KSelection;
use crate::analysis::kpis::BusinessKpis;
use crate::analysis::profile::FeatureProfile;
use crate::analysis::separation::{LabelOverlap, SplitSegment};
use crate::domain::Method;
use crate::embedding::EmbedderInfo;
use crate::features::FittedScaler;
use crate::ingest::IngestReport;
use crate::ingest::store::SourceReport;
use crate::narrative::Caveat;
use crate::narrative::llm::{ModelRecord, NarrativeRecord};
use crate::settings::Settings;

/// Version of the `segments.json` layout; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// `segments.json`.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentsDocument {
    /// Layout version.
    pub schema_version: u32,
    /// Number of segments (noise is not a segment).
    pub k: usize,
    /// Clustering method.
    pub method: Method,
    /// Seed of every random choice.
    pub seed: u64,
    /// Customers analysed (rows kept).
    pub n_customers: usize,
    /// Feature columns used.
    pub features: Vec<String>,
    /// Label column compared against, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_column: Option<String>,
    /// For a feature table: what was read and dropped, with the input's SHA-256.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<IngestReport>,
    /// For store data: both files' reports, coverage, embedder, matrix and store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreRunSummary>,
    /// The scaling applied before clustering and mapping.
    pub scaling: FittedScaler,
    /// Present when segments and neighbourhood maps were fitted on a sample.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampling: Option<SamplingSummary>,
    /// How k was chosen, for `--k auto`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k_selection: Option<KSelection>,
    /// Validity figures.
    pub quality: Quality,
    /// Each map drawn, by name (`pca`, `umap`, `tsne`).
    pub maps: BTreeMap<String, MapSummary>,
    /// Customers in no segment (HDBSCAN only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise: Option<NoiseSummary>,
    /// The segments, largest first.
    pub segments: Vec<SegmentEntry>,
    /// Every caveat of the run, segment caveats included.
    pub caveats: Vec<Caveat>,
    /// Who wrote names and descriptions (`builtin` or a model name): the model's name when
    /// it wrote at least one segment's text, else `builtin`.
    pub narrator: String,
    /// The configured narrator, which segments the model wrote, and which it did not and why.
    pub narrative: NarrativeRecord,
    /// Effective settings.
    pub settings: Settings,
    /// Things the user should know that are not caveats about the segments.
    pub warnings: Vec<String>,
}

/// Validity figures.
#[derive(Debug, Clone, Serialize)]
pub struct Quality {
    /// Mean silhouette over all clustered customers (absent with one segment).
    pub silhouette: Option<f64>,
    /// Davies–Bouldin index.
    pub davies_bouldin: Option<f64>,
    /// Calinski–Harabasz index.
    pub calinski_harabasz: Option<f64>,
    /// Stability under bootstrap resampling (absent when resamples = 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stability: Option<StabilitySummary>,
    /// Agreement with the label column, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalAgreement>,
}

/// Stability of the whole partition.
#[derive(Debug, Clone, Serialize)]
pub struct StabilitySummary {
    /// Mean adjusted Rand index between full-data and resample segments.
    pub mean_ari: f64,
    /// Resamples drawn.
    pub resamples: usize,
    /// Resamples whose refit failed (counted as 0).
    pub failed_refits: usize,
}

/// Agreement of segments with known labels.
#[derive(Debug, Clone, Serialize)]
pub struct ExternalAgreement {
    /// Adjusted Rand index (noise counted as one group).
    pub ari: f64,
    /// Normalized mutual information (arithmetic mean normalisation).
    pub nmi: f64,
}

/// One map's figures.
#[derive(Debug, Clone, Serialize)]
pub struct MapSummary {
    /// Share of variance along each axis (PCA only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explained_variance_ratio: Option<Vec<f64>>,
    /// Trustworthiness of the map.
    pub trustworthiness: f64,
    /// Neighbours used for trustworthiness.
    pub trustworthiness_neighbors: usize,
    /// Method parameters actually used (e.g. the perplexity after shrinking).
    pub parameters: BTreeMap<String, f64>,
    /// How much each pair of labels mixes in the map, when labels are given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_overlaps: Option<Vec<LabelOverlap>>,
    /// The same, in a sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_separation: Option<String>,
    /// Segments the map shows as several islands (segment ids start at 1).
    pub split_segments: Vec<SplitSegment>,
}

/// How a large run was fitted on a sample.
#[derive(Debug, Clone, Serialize)]
pub struct SamplingSummary {
    /// Customers in the run.
    pub population: usize,
    /// Customers the segments, the choice of k, stability and the UMAP and t-SNE maps were
    /// fitted on, and silhouette, trustworthiness and map readings measured on.
    pub fit_sample: usize,
    /// How everyone else was placed, in words.
    pub placement: String,
}

/// Customers in no segment.
#[derive(Debug, Clone, Serialize)]
pub struct NoiseSummary {
    /// How many.
    pub size: usize,
    /// Their share of all customers.
    pub share: f64,
}

/// One segment.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentEntry {
    /// Segment id, from 1, largest segment first.
    pub id: usize,
    /// Short unique name.
    pub name: String,
    /// One-line description with its figures.
    pub description: String,
    /// Who wrote name and description: `builtin` or the model's name.
    pub narrator: String,
    /// Keys of the figures name and description cite (the figure catalogue's keys, e.g.
    /// `segment.1.share`), so every number can be traced.
    pub figures: Vec<String>,
    /// Customers.
    pub size: usize,
    /// Share of all customers.
    pub share: f64,
    /// Mean best Jaccard overlap under resampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stability: Option<f64>,
    /// Key figures.
    pub kpis: SegmentKpis,
    /// Caveats about this segment.
    pub caveats: Vec<Caveat>,
}

/// A segment's key figures.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentKpis {
    /// Each feature's mean, median, overall mean and standardized difference.
    pub features: Vec<FeatureProfile>,
    /// Business KPIs, for store data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business: Option<BusinessKpis>,
}

/// Who is in the run, by which files they appear in.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CustomerCoverage {
    /// Customers in the run.
    pub total: usize,
    /// With at least one non-cancelled invoice.
    pub buyers: usize,
    /// With at least one browsing event.
    pub browsers: usize,
    /// Both.
    pub both: usize,
    /// In the transactions only.
    pub transactions_only: usize,
    /// In the events only.
    pub events_only: usize,
    /// In the transactions with cancellations only (no purchase to measure RFM from).
    pub only_cancellations: usize,
}

/// How the customer matrix was built.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MatrixSummary {
    /// Total variance given to the RFM block.
    pub rfm_weight: f64,
    /// Total variance given to the browsing-behaviour block.
    pub behaviour_weight: f64,
    /// Total variance given to the browsing embedding (0 when nobody browsed).
    pub browsing_weight: f64,
    /// Columns of the clustering space.
    pub columns: usize,
}

/// Where the customers were stored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StoreSummary {
    /// `edge` or `server`.
    pub backend: String,
    /// Collection name.
    pub collection: String,
    /// Points written (one per customer).
    pub points_written: usize,
    /// Payload key under which this run's segments are kept (`segments.<run_id>`).
    pub run_id: String,
}

/// The store-data part of `segments.json`.
#[derive(Debug, Clone, Serialize)]
pub struct StoreRunSummary {
    /// What was read from the transactions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transactions: Option<SourceReport>,
    /// What was read from the events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<SourceReport>,
    /// Recency and recency weights are measured from this instant (RFC 3339).
    pub reference_time: String,
    /// Whether the reference time is the `--as-of` date or the end of the data.
    pub reference: &'static str,
    /// Who is in the run.
    pub customers: CustomerCoverage,
    /// The embedder used for browsing histories (absent when nobody browsed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedder: Option<EmbedderInfo>,
    /// How the clustering space was built.
    pub matrix: MatrixSummary,
    /// Where the customers were stored.
    pub store: StoreSummary,
}

/// `run.json`: what varies between identical runs, plus what identifies the run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// segscope version.
    pub segscope_version: String,
    /// The command line's subcommand.
    pub command: String,
    /// Seed.
    pub seed: u64,
    /// Input file and its SHA-256.
    pub inputs: BTreeMap<String, String>,
    /// Worker threads used.
    pub threads: usize,
    /// Seconds per stage, for every stage that ran.
    pub timings: BTreeMap<String, f64>,
    /// Effective settings.
    pub settings: Settings,
    /// The chat model's requests, retries, tokens and incidents, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRecord>,
}
