//! Words from numbers: segment names, one-line descriptions, caveats and plain-language
//! readings of the validity figures.
//!
//! This module owns the built-in narrator, which needs no model and only restates computed
//! figures, and the LLM narrator ([`llm`]) beside it: prompts ([`prompts`]), the figure
//! catalogue both cite from ([`figures`]) and the grounding check model text must pass
//! ([`grounding`]). Caveats are produced by code from thresholds, never left to a model's
//! discretion.

pub mod builtin;
pub mod caveats;
pub mod figures;
pub mod grounding;
pub mod llm;
pub mod prompts;
pub mod reading;
pub mod store_names;

use serde::{Deserialize, Serialize};

pub use builtin::name_segments;
pub use caveats::{CaveatFacts, MapFacts, caveats_for};

/// What a caveat is about, so downstream code (report, checks of LLM text) can test for a
/// kind rather than parse a sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaveatKind {
    /// Gaps and sizes in t-SNE are not distances or densities.
    TsneDistances,
    /// UMAP distances between clusters are only roughly meaningful.
    UmapDistances,
    /// The mean silhouette says the segments are weakly separated.
    WeakStructure,
    /// A segment does not reappear reliably under resampling.
    UnstableSegment,
    /// A segment is too small to act on as a market.
    TinySegment,
    /// A map keeps neighbourhoods poorly.
    LowTrustworthiness,
    /// A map shows a segment as several islands.
    SplitInMap,
    /// Many customers belong to no segment (HDBSCAN noise).
    Noise,
    /// Input rows were dropped.
    DroppedRows,
    /// Segments and maps were fitted on a sample and the other customers placed by the model.
    Sampled,
    /// A caution a language model wrote about a segment; its numbers passed the grounding
    /// check like the rest of its text. Code-made caveats are always kept beside it.
    Narrator,
}

/// A caveat: a kind and a sentence that states it with its figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Caveat {
    /// What it is about.
    pub kind: CaveatKind,
    /// The sentence shown to people.
    pub message: String,
}

/// Thresholds that turn numbers into caveats (documented in `config/default.toml`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CaveatThresholds {
    /// Mean silhouette below which structure is weak.
    pub weak_silhouette: f64,
    /// Mean best Jaccard below which a segment is unstable.
    pub unstable_jaccard: f64,
    /// Segments smaller than this are tiny.
    pub tiny_segment_size: usize,
    /// Segments with a smaller share than this are tiny.
    pub tiny_segment_share: f64,
    /// Trustworthiness below which a map is unreliable.
    pub low_trustworthiness: f64,
    /// Label-neighbourhood crossing below which two labels are separate in a map.
    pub label_overlap_separate: f64,
}

/// A segment's name and description.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentText {
    /// Short, unique name saying what sets the segment apart.
    pub name: String,
    /// One line with the figures behind the name.
    pub description: String,
    /// Keys of the figures the name and description cite (see [`figures`]), so outputs can
    /// say where every number came from.
    pub figures: Vec<String>,
}
