//! HDBSCAN: density clusters plus a noise group that is reported separately and never
//! counted as a segment.
//!
//! Our own implementation, because the `hdbscan` crate builds its spanning tree by Prim's
//! algorithm over all n² pairs (32 s at 50,000 points against Python hdbscan's 8 s) and
//! defines core distances one neighbour short of the reference. The steps and where they
//! live:
//!
//! * core distances: each point's distance to its `min_samples`-th nearest other point
//!   (the reference's `knn_dist[:, min_samples]` with the point itself at rank 0), exact,
//!   from a kd-tree (module `kdtree`);
//! * the exact minimum spanning tree of the mutual-reachability graph by Borůvka's
//!   algorithm over the same tree (module `boruvka`);
//! * single linkage, the condensed tree, stabilities, excess-of-mass selection and labels,
//!   as scikit-learn-contrib's hdbscan 0.8 (`_hdbscan_tree.pyx`) computes them
//!   (module `condensed`), with its defaults: `cluster_selection_method="eom"`,
//!   `allow_single_cluster=False`, no epsilon, `alpha=1`.
//!
//! Every parallel step either writes one slot per point or takes a minimum under a strict
//! total order, so the clusters do not depend on the thread count.
//!
//! `min_cluster_size = 0` means "automatic": 1% of the customers, at least 5, so a segment
//! of a handful of people in a large base is not called a segment. In many raw dimensions
//! density clustering finds only noise; the error then says so and suggests what to change.

mod boruvka;
mod condensed;
mod kdtree;

use ndarray::ArrayView2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::ClusteringError;
use super::model::SegmentModel;
use crate::domain::Partition;
use boruvka::Neighbours;
use kdtree::KdTree;

/// Points whose core distances one parallel task computes at least.
const MIN_POINTS_PER_TASK: usize = 64;

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
    // The reference caps min_samples at n - 1 (there are no more neighbours).
    let min_samples = min_samples.min(n - 1).max(1);
    let dim = x.ncols();
    let data: Vec<f64> = x.iter().copied().collect();
    let tree = KdTree::build(&data, dim);
    let (core2, neighbours) = core_distances(&tree, min_samples);
    let edges = boruvka::minimum_spanning_tree(&tree, &core2, &neighbours);
    if edges.len() + 1 != n {
        return Err(ClusteringError::Hdbscan(format!(
            "the spanning tree has {} edges for {n} customers",
            edges.len()
        )));
    }
    let merges = condensed::single_linkage(edges, n);
    let labels = condensed::clusters(&merges, min_cluster_size);
    let partition = Partition::from_raw(labels);
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

/// Squared core distance of every tree-order position (squared distance to its
/// `min_samples`-th nearest other point) and the closed ball that distance defines.
fn core_distances(tree: &KdTree, min_samples: usize) -> (Vec<f64>, Neighbours) {
    let k = min_samples + 1;
    // Ties beyond this are not kept: the ball then only bounds searches (see `Neighbours`).
    let max_len = 4 * k;
    let balls: Vec<(Vec<(f64, usize)>, bool)> = (0..tree.rows().len())
        .into_par_iter()
        .with_min_len(MIN_POINTS_PER_TASK)
        .map_init(
            || (Vec::new(), Vec::new()),
            |(found, scratch), pos| {
                let complete = tree.ball(tree.point(pos), k, max_len, found, scratch);
                (found.clone(), complete)
            },
        )
        .collect();
    let mut core2 = Vec::with_capacity(balls.len());
    let mut neighbours = Neighbours::with_capacity(balls.len(), k);
    for (ball, complete) in balls {
        core2.push(ball.get(min_samples).map_or(0.0, |f| f.0));
        neighbours.push(&ball, complete);
    }
    (core2, neighbours)
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
    fn spanning_tree_weighs_what_the_reference_tree_weighs() {
        // Any two minimum spanning trees weigh the same, whichever tied edges they chose.
        let fixture: serde_json::Value = serde_json::from_str(include_str!(
            "../../../../tests/fixtures/clustering_reference.json"
        ))
        .expect("fixture");
        let points = fixture["hdbscan"]["points"].as_array().expect("points");
        let dim = points[0].as_array().expect("row").len();
        let data: Vec<f64> = points
            .iter()
            .flat_map(|r| {
                r.as_array()
                    .expect("row")
                    .iter()
                    .map(|v| v.as_f64().expect("x"))
            })
            .collect();
        let tree = KdTree::build(&data, dim);
        for case in fixture["hdbscan"]["cases"].as_array().expect("cases") {
            let min_samples = case["min_samples"].as_u64().expect("min_samples") as usize;
            let expected = case["mst_weight"].as_f64().expect("weight");
            let (core2, neighbours) = core_distances(&tree, min_samples);
            let edges = boruvka::minimum_spanning_tree(&tree, &core2, &neighbours);
            assert_eq!(edges.len() + 1, points.len());
            let weight: f64 = edges.iter().map(|e| e.weight2.sqrt()).sum();
            assert!(
                (weight - expected).abs() <= 1e-9 * expected,
                "min_samples {min_samples}: {weight} vs hdbscan's {expected}"
            );
        }
    }

    #[test]
    fn automatic_min_cluster_size() {
        let p = HdbscanParams::default();
        assert_eq!(p.effective_min_cluster_size(150), 5);
        assert_eq!(p.effective_min_cluster_size(50_000), 500);
    }
}
