//! k-means through linfa-clustering: k-means++ seeding, several restarts, the run with the
//! lowest inertia kept (as scikit-learn's `KMeans(n_init=...)`).
//!
//! linfa assigns memberships in parallel row by row and sums sequentially, so results do not
//! depend on the thread count. Labels come from predicting with the best centroids (linfa's
//! own counts describe the last restart, not the best one).

use linfa::DatasetBase;
use linfa::traits::{Fit, Predict};
use linfa_clustering::{KMeans, KMeansInit};
use linfa_nn::distance::L2Dist;
use ndarray::ArrayView2;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;
use serde::{Deserialize, Serialize};

use super::model::SegmentModel;
use super::{ClusteringError, distinct_rows};
use crate::domain::Partition;

/// k-means settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KmeansParams {
    /// Restarts from different k-means++ seedings; the lowest inertia wins.
    pub n_init: usize,
    /// Lloyd iterations per restart at most.
    pub max_iter: usize,
    /// Convergence: centroids moved less than this in all.
    pub tolerance: f64,
}

impl Default for KmeansParams {
    fn default() -> Self {
        KmeansParams {
            n_init: 10,
            max_iter: 300,
            tolerance: 1e-4,
        }
    }
}

/// A fitted k-means model.
#[derive(Debug, Clone)]
pub struct KmeansFit {
    /// Segments (renumbered by size).
    pub partition: Partition,
    /// Sum of squared distances to the nearest centroid, as scikit-learn's `inertia_`.
    pub inertia: f64,
    /// The centroids, in the partition's order, to assign other customers.
    pub model: SegmentModel,
}

/// Fits k-means with `k` segments.
pub fn fit_kmeans(
    x: ArrayView2<f64>,
    k: usize,
    params: &KmeansParams,
    seed: u64,
) -> Result<KmeansFit, ClusteringError> {
    let distinct = distinct_rows(x, k);
    if distinct < k {
        return Err(ClusteringError::TooFewDistinctRows { k, distinct });
    }
    let dataset = DatasetBase::from(x.to_owned());
    let rng = Xoshiro256Plus::seed_from_u64(seed);
    let model = KMeans::params_with(k, rng, L2Dist)
        .n_runs(params.n_init)
        .max_n_iterations(params.max_iter as u64)
        .tolerance(params.tolerance)
        .init_method(KMeansInit::KMeansPlusPlus)
        .fit(&dataset)
        .map_err(|e| ClusteringError::Kmeans {
            k,
            message: e.to_string(),
        })?;
    let labels = model.predict(&x);
    let centroids = model.centroids().to_owned();
    let inertia = x
        .rows()
        .into_iter()
        .zip(labels.iter())
        .map(|(row, &c)| {
            row.iter()
                .zip(centroids.row(c))
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
        })
        .sum();
    let (partition, order) = Partition::from_raw_with_order(labels.iter().map(|&l| Some(l)));
    let model = SegmentModel::Centroids(centroids.select(ndarray::Axis(0), &order));
    Ok(KmeansFit {
        partition,
        inertia,
        model,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn separates_obvious_groups_and_is_seeded() {
        let x = array![
            [0.0, 0.0],
            [0.1, 0.0],
            [0.0, 0.1],
            [5.0, 5.0],
            [5.1, 5.0],
            [9.0, 0.0],
            [9.1, 0.1],
            [9.0, 0.2]
        ];
        let a = fit_kmeans(x.view(), 3, &KmeansParams::default(), 3).expect("kmeans");
        let b = fit_kmeans(x.view(), 3, &KmeansParams::default(), 3).expect("kmeans");
        assert_eq!(a.partition, b.partition);
        let l = a.partition.labels();
        assert_eq!(l[0], l[1]);
        assert_eq!(l[0], l[2]);
        assert_eq!(l[3], l[4]);
        assert_eq!(l[5], l[6]);
        assert_ne!(l[0], l[3]);
        assert_ne!(l[0], l[5]);
        assert_eq!(a.partition.sizes(), vec![3, 3, 2]);
        // Inertia by hand: each group's squared deviations from its mean. linfa stops once
        // centroids move less than the tolerance, a hair from the exact means.
        let expected = 0.04 / 3.0 + 0.005 + 0.08 / 3.0;
        assert!(
            (a.inertia - expected).abs() < 1e-6 * expected,
            "inertia {} vs {}",
            a.inertia,
            expected
        );
    }

    #[test]
    fn more_segments_than_distinct_rows_is_an_error() {
        let x = array![[1.0, 1.0], [1.0, 1.0], [2.0, 2.0]];
        assert!(matches!(
            fit_kmeans(x.view(), 3, &KmeansParams::default(), 0),
            Err(ClusteringError::TooFewDistinctRows { k: 3, distinct: 2 })
        ));
    }
}
