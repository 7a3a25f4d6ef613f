//! HDBSCAN through the `hdbscan` crate: density clusters plus a noise group that is
//! reported separately and never counted as a segment.
//!
//! `min_cluster_size = 0` means "automatic": 1% of the customers, at least 5, so a segment
//! of a handful of people in a large base is not called a segment. In many raw dimensions
//! density clustering finds only noise; the error then says so and suggests what to change.

use hdbscan::{Hdbscan, HdbscanHyperParams};
use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use super::ClusteringError;
use super::model::SegmentModel;
use crate::domain::Partition;

/// HDBSCAN settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[derive(Default)]
pub struct HdbscanParams {
    /// Smallest group called a segment; 0 = automatic (1% of customers, at least 5).
    pub min_cluster_size: usize,
    /// Neighbours that define a point's core distance; 0 = same as min_cluster_size.
    pub min_samples: usize,
}

impl HdbscanParams {
    /// The minimum cluster size actually used for `n` customers.
    pub fn effective_min_cluster_size(&self, n: usize) -> usize {
        if self.min_cluster_size > 0 {
            self.min_cluster_size
        } else {
            (n / 100).max(5)
        }
    }
}

/// Runs HDBSCAN; noise customers get `None`. The model assigns others the segment of
/// their nearest fitted customer.
pub fn fit_hdbscan(
    x: ArrayView2<f64>,
    params: &HdbscanParams,
) -> Result<(Partition, SegmentModel), ClusteringError> {
    let n = x.nrows();
    let min_cluster_size = params.effective_min_cluster_size(n);
    let min_samples = if params.min_samples > 0 {
        params.min_samples
    } else {
        min_cluster_size
    };
    if n <= min_cluster_size {
        return Err(ClusteringError::AllNoise {
            n,
            min_cluster_size,
        });
    }
    let rows: Vec<Vec<f64>> = x.rows().into_iter().map(|r| r.to_vec()).collect();
    let hyper = HdbscanHyperParams::builder()
        .min_cluster_size(min_cluster_size)
        .min_samples(min_samples)
        .build();
    let labels = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Hdbscan::new(&rows, hyper).cluster()
    }))
    .map_err(|_| ClusteringError::Hdbscan("the HDBSCAN library panicked".into()))?
    .map_err(|e| ClusteringError::Hdbscan(e.to_string()))?;
    let partition = Partition::from_raw(labels.into_iter().map(|l| (l >= 0).then_some(l)));
    if partition.k() == 0 {
        return Err(ClusteringError::AllNoise {
            n,
            min_cluster_size,
        });
    }
    let model = SegmentModel::NearestFitted {
        points: x.to_owned(),
        labels: partition.labels().to_vec(),
    };
    Ok((partition, model))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn finds_dense_groups_and_leaves_outliers_as_noise() {
        let blobs =
            crate::analysis::test_blobs::gaussian_blobs(&[&[0.0, 0.0], &[10.0, 10.0]], 20, 0.5, 3);
        let mut x = Array2::zeros((41, 2));
        x.slice_mut(ndarray::s![..40, ..]).assign(&blobs);
        x[[40, 0]] = 50.0;
        x[[40, 1]] = -50.0;
        let params = HdbscanParams {
            min_cluster_size: 5,
            min_samples: 5,
        };
        let (p, _) = fit_hdbscan(x.view(), &params).expect("hdbscan");
        assert_eq!(p.k(), 2);
        assert_eq!(p.labels()[40], None);
        assert_eq!(p.noise_count(), 1);
        assert_eq!(p.sizes(), vec![20, 20]);
    }

    #[test]
    fn automatic_min_cluster_size() {
        let p = HdbscanParams::default();
        assert_eq!(p.effective_min_cluster_size(150), 5);
        assert_eq!(p.effective_min_cluster_size(50_000), 500);
    }
}
