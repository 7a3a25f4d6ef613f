//! Cluster validity and map faithfulness, defined exactly as scikit-learn defines them.
//!
//! Owns three families of measures, each a pure function of its inputs:
//!
//! - internal validity of one partition of points: [`silhouette_samples`],
//!   [`silhouette_score`], [`silhouette_scores`] (several partitions of the same points in one
//!   pass, for choosing `k`), [`davies_bouldin_score`] and [`calinski_harabasz_score`];
//! - external agreement between two labelings: [`adjusted_rand_score`] and
//!   [`normalized_mutual_info_score`] (arithmetic normalisation, sklearn's default);
//! - faithfulness of a 2D map to the original space: [`trustworthiness`].
//!
//! Every function follows the scikit-learn 1.7 definition of the same name, its special cases
//! included (singleton clusters score 0, a single cluster on both sides is a perfect match,
//! ...), so that a number segscope reports can be checked against sklearn; the committed
//! fixtures `tests/fixtures/sklearn_validity.{py,json}` and `tests/validity_vs_sklearn.rs`
//! hold us to that. Where we deliberately differ it is in how, never in what: distances are
//! computed directly (squares summed feature by feature) rather than through sklearn's
//! `|x|² − 2x·y + |y|²` expansion, which is more accurate and changes results only in the last
//! bits (trustworthiness on exactly tied distances aside, see below); pairwise work runs in row blocks on rayon with memory linear in the number of points,
//! never an `n × n` matrix; and trustworthiness ranks equally distant points by their index
//! (see [`trustworthiness`]), where sklearn's unstable sort leaves the order to the CPU.
//!
//! Labels are arbitrary `usize` values: like sklearn's `LabelEncoder`, each function first maps
//! the distinct values, in increasing order, to dense cluster codes.
//!
//! Results never depend on the number of rayon threads: each row's quantities are computed
//! independently of how rows are split among threads, and every reduction runs in index order.
//!
//! Not here: stability of a clustering under resampling or reseeding, which needs the
//! clustering algorithms themselves and lives with them; choosing `k`, which belongs to the
//! pipeline (it calls [`silhouette_scores`]).

mod external;
mod internal;
mod labels;
mod points;
mod silhouette;
mod trustworthiness;

use std::fmt;

pub use external::{adjusted_rand_score, normalized_mutual_info_score};
pub use internal::{calinski_harabasz_score, davies_bouldin_score};
pub use silhouette::{silhouette_samples, silhouette_score, silhouette_scores};
pub use trustworthiness::trustworthiness;

/// Which matrix argument an error is about, so a caller passing both points and an embedding
/// (as [`trustworthiness`] takes) knows which one to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The points in their original feature space (`x`).
    Points,
    /// Their low-dimensional embedding (`embedded`), e.g. a 2D map.
    Embedding,
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Input::Points => "the points",
            Input::Embedding => "the embedding",
        })
    }
}

/// Why a validity measure cannot be computed; raised where scikit-learn raises a `ValueError`,
/// with the quantities involved so that callers can explain or recover (e.g. skip a `k`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidityError {
    /// Two inputs that must describe the same samples have different lengths (labels vs rows
    /// of points, two labelings, points vs embedding).
    #[error("expected {expected} values, one per sample, got {got}")]
    LengthMismatch {
        /// The number of samples, from the first input.
        expected: usize,
        /// The length of the input that disagrees.
        got: usize,
    },
    /// Internal validity needs at least two clusters and at least one cluster with two points;
    /// the message is sklearn's.
    #[error(
        "Number of labels is {n_clusters}. Valid values are 2 to n_samples - 1 (inclusive); \
         n_samples is {n_samples}"
    )]
    InvalidClusterCount {
        /// Distinct label values found.
        n_clusters: usize,
        /// Number of samples labelled.
        n_samples: usize,
    },
    /// Trustworthiness compares neighbourhoods of `n_neighbors` points; sklearn requires
    /// `1 <= n_neighbors < n_samples / 2` for its normalisation to stay positive.
    #[error(
        "n_neighbors ({n_neighbors}) must be at least 1 and less than n_samples / 2 \
         (n_samples is {n_samples})"
    )]
    InvalidNeighbors {
        /// The neighbourhood size asked for.
        n_neighbors: usize,
        /// Number of samples.
        n_samples: usize,
    },
    /// A matrix without columns has no geometry to measure.
    #[error("{input} have no feature columns")]
    NoFeatures {
        /// The matrix without columns.
        input: Input,
    },
    /// NaN or infinity in the input; every distance involving it would be meaningless.
    #[error("{input} hold a non-finite value at row {row}, column {column}")]
    NonFinite {
        /// The matrix holding the value.
        input: Input,
        /// Its row (sample).
        row: usize,
        /// Its column (feature).
        column: usize,
    },
    /// [`adjusted_rand_score`] counts pairs of samples exactly in 128-bit integers, which
    /// holds for up to `max` samples.
    #[error("{n_samples} samples exceed the {max} that exact pair counting supports")]
    TooManySamples {
        /// Number of samples given.
        n_samples: usize,
        /// Largest number supported.
        max: usize,
    },
    /// One labeling of a batch given to [`silhouette_scores`] is invalid.
    #[error("labeling {index} of the batch is invalid")]
    InLabeling {
        /// Its position in the batch.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: Box<ValidityError>,
    },
}
