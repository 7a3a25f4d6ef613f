//! Silhouette coefficients, as `sklearn.metrics.silhouette_samples` / `silhouette_score` with
//! the Euclidean metric and no sampling.
//!
//! For each point, sklearn accumulates its distances to every point per cluster (self
//! included, at distance 0), then `a` = own-cluster sum / (own size − 1), `b` = the smallest
//! other-cluster mean, `s = (b − a) / max(a, b)`, and NaN (a singleton cluster, or `a = b = 0`)
//! becomes 0. We do the same per row, summing each cluster's distances in index order as
//! sklearn's `bincount` does, so only the distances' last bits can differ.
//!
//! Rows are processed in fixed blocks in parallel; a row needs `O(n_clusters)` memory plus one
//! tile of distances, so the whole costs `O(n · n_clusters)`, never `O(n²)`.

use ndarray::ArrayView2;
use rayon::prelude::*;

use super::labels::Codes;
use super::points::Points;
use super::{Input, ValidityError};

/// Rows per parallel task: large enough to amortise scheduling, small enough to balance two
/// to a few dozen threads on a few thousand points.
const BLOCK_ROWS: usize = 32;
/// Distances computed at a time for one row: a few KiB that stay in L1 cache.
const TILE: usize = 512;

/// Silhouette coefficient of every point (in `[-1, 1]`, higher is better), in input order:
/// shows which points and clusters sit badly, where a single score cannot.
///
/// `x` holds one point per row; `labels[i]` is the cluster of row `i`, any `usize` values.
/// Fails like sklearn: one label per row, 2 to `n − 1` distinct labels, finite values.
pub fn silhouette_samples(x: ArrayView2<f64>, labels: &[usize]) -> Result<Vec<f64>, ValidityError> {
    let codes = Codes::for_partition(labels, x.nrows())?;
    let points = Points::new(x, Input::Points)?;
    let mut per_labeling = coefficients(&points, std::slice::from_ref(&codes));
    Ok(per_labeling.pop().unwrap_or_default())
}

/// Mean silhouette coefficient over all points: one number to compare partitions of the same
/// points (higher is better), exactly sklearn's `silhouette_score` without `sample_size`.
pub fn silhouette_score(x: ArrayView2<f64>, labels: &[usize]) -> Result<f64, ValidityError> {
    silhouette_samples(x, labels).map(|s| mean(&s))
}

/// Mean silhouette of several partitions of the same points, in the order given, paying for
/// the `n²` distances once: choosing `k` scores every candidate labeling, and the distances
/// dominate the cost while each extra labeling adds only `O(n²)` additions.
///
/// Each labeling is validated as in [`silhouette_score`]; a bad one is reported as
/// [`ValidityError::InLabeling`] with its position. An empty batch gives an empty result.
pub fn silhouette_scores(
    x: ArrayView2<f64>,
    labelings: &[&[usize]],
) -> Result<Vec<f64>, ValidityError> {
    let codes = labelings
        .iter()
        .enumerate()
        .map(|(index, labels)| {
            Codes::for_partition(labels, x.nrows()).map_err(|source| ValidityError::InLabeling {
                index,
                source: Box::new(source),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let points = Points::new(x, Input::Points)?;
    Ok(coefficients(&points, &codes)
        .iter()
        .map(|s| mean(s))
        .collect())
}

/// Mean in index order, so that it does not depend on how the values were computed.
fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Silhouette coefficients of every point under each labeling: `result[l][i]`.
fn coefficients(points: &Points, labelings: &[Codes]) -> Vec<Vec<f64>> {
    let n = points.len();
    let n_labelings = labelings.len();
    if n_labelings == 0 {
        return Vec::new();
    }
    // Each labeling's per-cluster sums live side by side in one row buffer.
    let offsets: Vec<usize> = labelings
        .iter()
        .scan(0, |next, codes| {
            let offset = *next;
            *next += codes.n_clusters();
            Some(offset)
        })
        .collect();
    let total_clusters: usize = labelings.iter().map(Codes::n_clusters).sum();

    // Block b yields, for each of its rows in order, one coefficient per labeling.
    let blocks: Vec<Vec<f64>> = (0..n.div_ceil(BLOCK_ROWS))
        .into_par_iter()
        .map(|block| {
            let rows = block * BLOCK_ROWS..((block + 1) * BLOCK_ROWS).min(n);
            let mut sums = vec![0.0; total_clusters];
            let mut tile = vec![0.0; TILE.min(n)];
            let mut out = Vec::with_capacity(rows.len() * n_labelings);
            for i in rows {
                sums.fill(0.0);
                for start in (0..n).step_by(TILE) {
                    let distances = &mut tile[..TILE.min(n - start)];
                    points.distances_from(i, start, distances);
                    for (codes, &offset) in labelings.iter().zip(&offsets) {
                        let cluster_sums = &mut sums[offset..offset + codes.n_clusters()];
                        let tile_codes = &codes.codes[start..start + distances.len()];
                        for (&d, &c) in distances.iter().zip(tile_codes) {
                            cluster_sums[c] += d;
                        }
                    }
                }
                for (codes, &offset) in labelings.iter().zip(&offsets) {
                    let cluster_sums = &sums[offset..offset + codes.n_clusters()];
                    out.push(coefficient(cluster_sums, &codes.counts, codes.codes[i]));
                }
            }
            out
        })
        .collect();

    let mut result = vec![Vec::with_capacity(n); n_labelings];
    for row in blocks
        .iter()
        .flat_map(|block| block.chunks_exact(n_labelings))
    {
        for (per_labeling, &s) in result.iter_mut().zip(row) {
            per_labeling.push(s);
        }
    }
    result
}

/// One point's coefficient from its per-cluster distance sums (self included at 0).
fn coefficient(cluster_sums: &[f64], counts: &[usize], own: usize) -> f64 {
    let own_size = counts[own];
    if own_size == 1 {
        // sklearn: 0 / 0 → NaN → 0 for singleton clusters.
        return 0.0;
    }
    let a = cluster_sums[own] / (own_size - 1) as f64;
    let b = cluster_sums
        .iter()
        .zip(counts)
        .enumerate()
        .filter(|&(c, _)| c != own)
        .map(|(_, (&sum, &count))| sum / count as f64)
        .fold(f64::INFINITY, f64::min);
    let s = (b - a) / a.max(b);
    // a = b = 0 (all points of the two nearest clusters coincide): NaN → 0, as sklearn.
    if s.is_nan() { 0.0 } else { s }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a failing test should stop at the failure"
)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    fn scattered(n: usize, d: usize) -> Array2<f64> {
        // Deterministic, irregular values; no RNG needed.
        Array2::from_shape_fn((n, d), |(i, j)| {
            ((i * 7919 + j * 104_729) % 1000) as f64 / 37.0
        })
    }

    #[test]
    fn two_clear_clusters() {
        let x = array![[0.0], [1.0], [10.0], [11.0]];
        let s = silhouette_samples(x.view(), &[4, 4, 9, 9]).unwrap();
        // Point 0: a = 1, b = (10 + 11) / 2 = 10.5.
        assert_eq!(s[0], (10.5 - 1.0) / 10.5);
        assert_eq!(s[1], (9.5 - 1.0) / 9.5);
    }

    #[test]
    fn singleton_scores_zero() {
        let x = array![[0.0], [1.0], [5.0], [6.0], [20.0]];
        let s = silhouette_samples(x.view(), &[0, 0, 1, 1, 2]).unwrap();
        assert_eq!(s[4], 0.0);
        assert!(s[..4].iter().all(|&v| v > 0.0));
    }

    #[test]
    fn errors_follow_sklearn() {
        let x = scattered(5, 2);
        assert_eq!(
            silhouette_score(x.view(), &[1, 1, 1, 1]),
            Err(ValidityError::LengthMismatch {
                expected: 5,
                got: 4
            })
        );
        assert_eq!(
            silhouette_score(x.view(), &[3, 3, 3, 3, 3]),
            Err(ValidityError::InvalidClusterCount {
                n_clusters: 1,
                n_samples: 5
            })
        );
        assert_eq!(
            silhouette_score(x.view(), &[0, 1, 2, 3, 4]),
            Err(ValidityError::InvalidClusterCount {
                n_clusters: 5,
                n_samples: 5
            })
        );
        assert_eq!(
            silhouette_scores(x.view(), &[&[0, 0, 1, 1, 1], &[0; 5]]),
            Err(ValidityError::InLabeling {
                index: 1,
                source: Box::new(ValidityError::InvalidClusterCount {
                    n_clusters: 1,
                    n_samples: 5
                })
            })
        );
        let mut bad = x.clone();
        bad[[3, 1]] = f64::INFINITY;
        assert_eq!(
            silhouette_score(bad.view(), &[0, 0, 1, 1, 1]),
            Err(ValidityError::NonFinite {
                input: Input::Points,
                row: 3,
                column: 1
            })
        );
    }

    #[test]
    fn batch_equals_one_by_one() {
        // More rows than one block and one tile, to cross both boundaries.
        let x = scattered(1100, 3);
        let by_mod: Vec<Vec<usize>> = (2..6).map(|k| (0..1100).map(|i| i % k).collect()).collect();
        let labelings: Vec<&[usize]> = by_mod.iter().map(Vec::as_slice).collect();
        let batch = silhouette_scores(x.view(), &labelings).unwrap();
        for (labels, score) in labelings.iter().zip(&batch) {
            assert_eq!(silhouette_score(x.view(), labels).unwrap(), *score);
        }
        assert!(silhouette_scores(x.view(), &[]).unwrap().is_empty());
    }

    #[test]
    fn identical_with_one_or_two_threads() -> Result<(), Box<dyn std::error::Error>> {
        let x = scattered(700, 5);
        let labels: Vec<usize> = (0..700).map(|i| (i * 31 % 97) % 4 * 1000).collect();
        let run = |threads: usize| -> Result<Vec<u64>, Box<dyn std::error::Error>> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()?;
            let mut bits: Vec<u64> = pool
                .install(|| silhouette_samples(x.view(), &labels))?
                .iter()
                .map(|s| s.to_bits())
                .collect();
            bits.push(
                pool.install(|| silhouette_score(x.view(), &labels))?
                    .to_bits(),
            );
            Ok(bits)
        };
        assert_eq!(run(1)?, run(2)?);
        Ok(())
    }
}
