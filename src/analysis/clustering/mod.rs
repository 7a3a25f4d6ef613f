//! Segments from a scaled feature matrix: k-means, Gaussian mixtures and HDBSCAN, the
//! choice of k, and stability under resampling.
//!
//! Owns the algorithms and the rule that picks k; it does not scale data, draw maps or
//! name segments. Every result is a [`Partition`] with segments numbered by decreasing size,
//! so the same data, settings and seed always give the same numbering.

pub mod gmm;
pub mod hdbscan;
pub mod kmeans;
pub mod model;
pub mod selection;
pub mod stability;

use ndarray::ArrayView2;
use serde::Serialize;

use crate::analysis::progress::Progress;
use crate::domain::{Method, Partition};

pub use gmm::GmmParams;
pub use hdbscan::HdbscanParams;
pub use kmeans::KmeansParams;
pub use model::SegmentModel;
pub use selection::{KCandidate, KSelection};
pub use stability::{Stability, StabilityParams, bootstrap_stability};

/// How many segments to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "mode", content = "k")]
pub enum KChoice {
    /// Score every k in `min..=max` and keep the best (the rule depends on the method).
    Auto {
        /// Smallest k tried (at least 2).
        min: usize,
        /// Largest k tried.
        max: usize,
    },
    /// Exactly this many segments.
    Fixed(usize),
}

/// Everything that decides how segments are made, validated at the edge.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterSpec {
    /// The algorithm.
    pub method: Method,
    /// How many segments (ignored by HDBSCAN, which finds its own number).
    pub k: KChoice,
    /// k-means settings.
    pub kmeans: KmeansParams,
    /// Gaussian-mixture settings.
    pub gmm: GmmParams,
    /// HDBSCAN settings.
    pub hdbscan: HdbscanParams,
}

/// A fitted clustering: segments of the fitted customers and the model that assigns others.
#[derive(Debug, Clone)]
pub struct Fitted {
    /// Segment of each fitted customer; `None` is HDBSCAN noise.
    pub partition: Partition,
    /// Assigns customers the fit did not see, segments in the partition's order.
    pub model: SegmentModel,
}

/// The segments found, and how k was chosen when it was.
#[derive(Debug, Clone)]
pub struct Clustering {
    /// Segment of each customer; `None` is HDBSCAN noise.
    pub partition: Partition,
    /// Assigns customers the fit did not see.
    pub model: SegmentModel,
    /// Scores of every k tried and the rule that chose one, for `--k auto`.
    pub selection: Option<KSelection>,
}

/// Why segments could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClusteringError {
    /// Fewer distinct customers than segments asked for.
    #[error("{k} segments asked for, but the data has only {distinct} distinct rows")]
    TooFewDistinctRows {
        /// Segments asked for.
        k: usize,
        /// Distinct rows in the data.
        distinct: usize,
    },
    /// k = 0: a partition needs at least one segment.
    #[error("at least one segment must be asked for (k = 0)")]
    NoSegmentsAsked,
    /// The Gaussian-mixture fit failed for every initialisation.
    #[error("Gaussian mixture failed for k = {k}: {message}")]
    Gmm {
        /// k.
        k: usize,
        /// What went wrong.
        message: String,
    },
    /// HDBSCAN failed.
    #[error("HDBSCAN failed: {0}")]
    Hdbscan(String),
    /// HDBSCAN labelled every customer as noise.
    #[error(
        "HDBSCAN found no dense group: all {n} customers are noise (min_cluster_size = {min_cluster_size}); \
         try a smaller hdbscan.min_cluster_size or another method"
    )]
    AllNoise {
        /// Customers.
        n: usize,
        /// Setting used.
        min_cluster_size: usize,
    },
    /// A validity score needed to choose k could not be computed.
    #[error("scoring k failed: {0}")]
    Scoring(#[from] crate::analysis::validity::ValidityError),
}

/// Makes segments as the spec says, choosing k when asked to.
pub fn segment(
    x: ArrayView2<f64>,
    spec: &ClusterSpec,
    seed: u64,
    progress: &dyn Progress,
) -> Result<Clustering, ClusteringError> {
    let (fitted, selection) = match (spec.method, spec.k) {
        (Method::Hdbscan, _) | (_, KChoice::Fixed(_)) => {
            let k = match spec.k {
                KChoice::Fixed(k) => k,
                KChoice::Auto { .. } => 0,
            };
            progress.start(method_stage(spec.method), 0);
            let fitted = fit_fixed_k(x, spec, k, seed)?;
            progress.finish();
            (fitted, None)
        }
        (_, KChoice::Auto { min, max }) => {
            let (fitted, selection) = selection::choose_k(x, spec, min, max, seed, progress)?;
            (fitted, Some(selection))
        }
    };
    Ok(Clustering {
        partition: fitted.partition,
        model: fitted.model,
        selection,
    })
}

/// Fits the spec's method with a given k (HDBSCAN ignores k): what resampling refits use.
pub fn fit_fixed_k(
    x: ArrayView2<f64>,
    spec: &ClusterSpec,
    k: usize,
    seed: u64,
) -> Result<Fitted, ClusteringError> {
    match spec.method {
        Method::Kmeans => {
            let fit = kmeans::fit_kmeans(x, k, &spec.kmeans, seed)?;
            Ok(Fitted {
                partition: fit.partition,
                model: fit.model,
            })
        }
        Method::Gmm => {
            let fit = gmm::fit_gmm(x, k, &spec.gmm, seed)?;
            Ok(Fitted {
                partition: fit.partition,
                model: fit.model,
            })
        }
        Method::Hdbscan => {
            let (partition, model) = hdbscan::fit_hdbscan(x, &spec.hdbscan)?;
            Ok(Fitted { partition, model })
        }
    }
}

fn method_stage(method: Method) -> &'static str {
    match method {
        Method::Kmeans => "k-means",
        Method::Gmm => "Gaussian mixture",
        Method::Hdbscan => "HDBSCAN",
    }
}

/// Number of distinct rows, up to `limit` (we only need to know whether there are k).
pub(crate) fn distinct_rows(x: ArrayView2<f64>, limit: usize) -> usize {
    let mut seen: std::collections::HashSet<Vec<u64>> = std::collections::HashSet::new();
    for row in x.rows() {
        seen.insert(row.iter().map(|v| v.to_bits()).collect());
        if seen.len() >= limit {
            break;
        }
    }
    seen.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::test_blobs::gaussian_blobs;

    #[test]
    fn each_model_reassigns_its_own_customers_to_their_segments() {
        let x = gaussian_blobs(&[&[0.0, 0.0], &[6.0, 0.0], &[0.0, 6.0]], 40, 1.0, 11);
        for method in [Method::Kmeans, Method::Gmm, Method::Hdbscan] {
            let spec = ClusterSpec {
                method,
                k: KChoice::Fixed(3),
                kmeans: KmeansParams::default(),
                gmm: GmmParams::default(),
                hdbscan: HdbscanParams {
                    min_cluster_size: 10,
                    min_samples: 5,
                },
            };
            let fitted = fit_fixed_k(x.view(), &spec, 3, 5).expect("fit");
            assert_eq!(
                fitted.model.assign(x.view()),
                fitted.partition.labels(),
                "{method:?}"
            );
        }
    }
}
