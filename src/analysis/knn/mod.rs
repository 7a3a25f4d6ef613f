//! k-nearest-neighbour graphs: the shared input of UMAP (and later t-SNE, HDBSCAN and
//! neighbourhood-preservation checks), and the search that places new points.
//!
//! Owns [`KnnGraph`], the one representation of "who is near whom" that the map and
//! clustering algorithms consume, and the three ways of finding one:
//!
//! - [`exact_knn`], brute force, O(n² d): the reference, and the fastest below
//!   [`EXACT_MAX_POINTS`] points;
//! - [`nn_descent`], approximate (Dong et al. 2011, as pynndescent implements it), about
//!   O(n d) per iteration: what makes UMAP scale past tens of thousands of points;
//! - [`KnnIndex::query`], best-first search of a built graph for points that were not in
//!   it (UMAP's `transform`).
//!
//! [`knn_graph`] picks between the first two by size and records which it used in
//! [`KnnGraph::method`], so a report can say whether its neighbours are exact.
//! It does not own what the graph is used for, nor metrics other than Euclidean.
//!
//! Determinism: every parallel step computes rows (points, queries) independently from
//! inputs that are fixed before the step starts, random numbers come from streams named by
//! `(seed, purpose, item)` and never from a thread, and ties are broken by the smaller
//! index. A graph is therefore the same, bit for bit, whatever the number of rayon threads.

mod exact;
mod index;
mod nndescent;
mod rptree;

use std::borrow::Cow;

use crate::analysis::progress::Progress;
use ndarray::{Array2, ArrayView2, Axis};

pub use exact::exact_knn;
pub use index::KnnIndex;
pub use nndescent::{NnDescentParams, nn_descent};

/// Largest number of points for which [`knn_graph`] uses [`exact_knn`].
///
/// Measured (release build, 64 columns, k = 14, CPU seconds): exact takes 0.3 s at 4,096
/// points and 1.4 s at 8,192, where NN-descent takes 0.5 s; exact grows with n², NN-descent
/// roughly with n. Near the crossover exact wins anyway: no approximation to report.
/// Sizes are compared, never times, so the choice is deterministic.
pub const EXACT_MAX_POINTS: usize = 4_096;

/// Why a k-nearest-neighbour graph could not be built or searched.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KnnError {
    /// Zero neighbours were asked for; a graph without edges is useless to every consumer.
    #[error("k must be at least 1")]
    ZeroNeighbours,
    /// Each point needs `k` neighbours other than itself, so there must be more than `k` points.
    #[error("{n_points} points are too few for {k} neighbours per point (need at least k + 1)")]
    TooFewPoints {
        /// Number of rows in the input.
        n_points: usize,
        /// Neighbours requested per point.
        k: usize,
    },
    /// A query asks for more neighbours than the reference data has points.
    #[error("a reference of {n_points} points cannot give {k} neighbours per query")]
    TooFewReferencePoints {
        /// Number of reference points.
        n_points: usize,
        /// Neighbours requested per query.
        k: usize,
    },
    /// A NaN or infinite value makes distances meaningless; the first one found is reported.
    #[error("value at row {row}, column {column} is not finite")]
    NonFinite {
        /// Row (point) of the offending value.
        row: usize,
        /// Column (feature) of the offending value.
        column: usize,
    },
    /// Queries must have the reference's columns, in the same order and scale.
    #[error("queries have {got} columns but the reference has {expected}")]
    DimensionMismatch {
        /// Columns of the reference data.
        expected: usize,
        /// Columns of the queries.
        got: usize,
    },
    /// The graph given to [`KnnIndex::new`] was not built from the reference data.
    #[error("the kNN graph has {graph_points} points but the reference has {data_points} rows")]
    GraphMismatch {
        /// Rows of the reference data.
        data_points: usize,
        /// Points in the graph.
        graph_points: usize,
    },
    /// NN-descent's `max_candidates` must be at least 1, or no neighbour is ever joined.
    #[error("max_candidates must be at least 1")]
    ZeroCandidates,
    /// NN-descent's early-termination fraction must lie in `[0, 1)`.
    #[error("delta must be in [0, 1), got {delta}")]
    InvalidDelta {
        /// The rejected value.
        delta: f64,
    },
}

/// How a [`KnnGraph`] was found, so that reports can say whether neighbours are exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KnnMethod {
    /// Brute force: every neighbour is the true one.
    Exact,
    /// NN-descent: approximate, typically above 95% of the true neighbours.
    NnDescent,
    /// Search of a [`KnnIndex`] for points outside it: approximate.
    IndexSearch,
}

impl KnnMethod {
    /// A short stable name (`exact`, `nn-descent`, `index-search`), so that reports and
    /// benchmark records name the method the same way everywhere.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::NnDescent => "nn-descent",
            Self::IndexSearch => "index-search",
        }
    }
}

/// The `k` nearest neighbours of every point (row).
///
/// Row `i` lists the neighbours of point `i` by increasing distance, ties broken by the
/// smaller index. For a graph of a data set with itself ([`exact_knn`], [`nn_descent`],
/// [`knn_graph`]) a point is never its own neighbour and duplicate points are each
/// other's neighbours at distance 0. For the answer of [`KnnIndex::query`], rows are the
/// queries and indices refer to the index's reference points.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnGraph {
    indices: Array2<usize>,
    distances: Array2<f64>,
    method: KnnMethod,
}

impl KnnGraph {
    /// Neighbour indices, `n_points x k`, nearest first.
    pub fn indices(&self) -> ArrayView2<'_, usize> {
        self.indices.view()
    }

    /// Euclidean distances matching [`KnnGraph::indices`], ascending along each row.
    pub fn distances(&self) -> ArrayView2<'_, f64> {
        self.distances.view()
    }

    /// Number of points (rows) in the graph.
    pub fn n_points(&self) -> usize {
        self.indices.nrows()
    }

    /// Number of neighbours per point.
    pub fn k(&self) -> usize {
        self.indices.ncols()
    }

    /// How the neighbours were found.
    pub fn method(&self) -> KnnMethod {
        self.method
    }

    /// Share of this graph's neighbours that `truth` (usually [`exact_knn`]) also lists,
    /// comparing the first `min(k)` columns of each row as sets: the usual recall of
    /// approximate nearest-neighbour search. `None` if the graphs have different rows.
    pub fn recall_against(&self, truth: &KnnGraph) -> Option<f64> {
        let k = self.k().min(truth.k());
        if self.n_points() != truth.n_points() || k == 0 {
            return None;
        }
        let found: usize = self
            .indices
            .axis_iter(Axis(0))
            .zip(truth.indices.axis_iter(Axis(0)))
            .map(|(mine, true_row)| {
                mine.iter()
                    .take(k)
                    .filter(|&&j| true_row.iter().take(k).any(|&t| t == j))
                    .count()
            })
            .sum();
        Some(found as f64 / (self.n_points() * k) as f64)
    }
}

/// The k-nearest-neighbour graph of the rows of `x`, exact up to [`EXACT_MAX_POINTS`]
/// points and by [`nn_descent`] (default parameters) above; [`KnnGraph::method`] says which.
///
/// This is the entry point the pipeline uses: callers state what they need (k neighbours,
/// a seed) and the size decides the method. The seed only matters for NN-descent.
/// Reports NN-descent's iterations as progress under the stage name `"kNN graph"`.
///
/// # Errors
/// [`KnnError::ZeroNeighbours`] for `k == 0`, [`KnnError::TooFewPoints`] when `x` has
/// `k` rows or fewer, [`KnnError::NonFinite`] for NaN or infinite inputs.
pub fn knn_graph(
    x: ArrayView2<f64>,
    k: usize,
    seed: u64,
    progress: &dyn Progress,
) -> Result<KnnGraph, KnnError> {
    if x.nrows() <= EXACT_MAX_POINTS {
        exact_knn(x, k)
    } else {
        nn_descent(x, k, &NnDescentParams::default(), seed, progress)
    }
}

/// Checks the shared preconditions of building a graph of `x` with itself.
fn check_graph_input(x: ArrayView2<f64>, k: usize) -> Result<(), KnnError> {
    let n_points = x.nrows();
    if k == 0 {
        return Err(KnnError::ZeroNeighbours);
    }
    if n_points <= k {
        return Err(KnnError::TooFewPoints { n_points, k });
    }
    check_finite(x)
}

/// The first non-finite value in row-major order, as an error.
fn check_finite(x: ArrayView2<f64>) -> Result<(), KnnError> {
    for (row, values) in x.axis_iter(Axis(0)).enumerate() {
        if let Some(column) = values.iter().position(|v| !v.is_finite()) {
            return Err(KnnError::NonFinite { row, column });
        }
    }
    Ok(())
}

/// Rows as one contiguous row-major buffer (borrowed when `x` already is one), so that
/// distance loops work on plain slices.
fn row_major(x: ArrayView2<'_, f64>) -> Cow<'_, [f64]> {
    match x.to_slice() {
        Some(slice) => Cow::Borrowed(slice),
        None => Cow::Owned(x.iter().copied().collect()),
    }
}

/// Row `i` of a row-major buffer with `d` columns.
#[inline]
fn row(data: &[f64], d: usize, i: usize) -> &[f64] {
    &data[i * d..(i + 1) * d]
}

/// Squared Euclidean distance, summed in eight interleaved lanes exactly as ndarray's
/// `sum` does: the lanes let the compiler use SIMD (a strict left-to-right sum cannot be
/// vectorised), and matching ndarray keeps results bit-identical to `(a - b)²` summed by
/// ndarray. The function is symmetric bit for bit, and equals 0 exactly for duplicates,
/// which the tie rule relies on.
#[inline]
fn squared_euclidean(a: &[f64], b: &[f64]) -> f64 {
    let mut lanes = [0.0_f64; 8];
    let chunks_a = a.chunks_exact(8);
    let chunks_b = b.chunks_exact(8);
    let (rest_a, rest_b) = (chunks_a.remainder(), chunks_b.remainder());
    for (ca, cb) in chunks_a.zip(chunks_b) {
        for lane in 0..8 {
            let t = ca[lane] - cb[lane];
            lanes[lane] += t * t;
        }
    }
    let mut sum = 0.0;
    sum += lanes[0] + lanes[4];
    sum += lanes[1] + lanes[5];
    sum += lanes[2] + lanes[6];
    sum += lanes[3] + lanes[7];
    for (x, y) in rest_a.iter().zip(rest_b) {
        let t = x - y;
        sum += t * t;
    }
    sum
}

/// Dot product in eight interleaved lanes, for the same reason as [`squared_euclidean`]:
/// a strict left-to-right sum cannot use SIMD.
#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut lanes = [0.0_f64; 8];
    let chunks_a = a.chunks_exact(8);
    let chunks_b = b.chunks_exact(8);
    let (rest_a, rest_b) = (chunks_a.remainder(), chunks_b.remainder());
    for (ca, cb) in chunks_a.zip(chunks_b) {
        for lane in 0..8 {
            lanes[lane] += ca[lane] * cb[lane];
        }
    }
    let mut sum = (lanes[0] + lanes[4]) + (lanes[1] + lanes[5]);
    sum += (lanes[2] + lanes[6]) + (lanes[3] + lanes[7]);
    for (x, y) in rest_a.iter().zip(rest_b) {
        sum += x * y;
    }
    sum
}

/// Builds a [`KnnGraph`] from rows of `(squared distance, index)`, taking square roots.
fn graph_from_rows(rows: &[(f64, usize)], k: usize, method: KnnMethod) -> KnnGraph {
    let n_points = rows.len() / k.max(1);
    let indices = Array2::from_shape_fn((n_points, k), |(i, j)| rows[i * k + j].1);
    let distances = Array2::from_shape_fn((n_points, k), |(i, j)| rows[i * k + j].0.sqrt());
    KnnGraph {
        indices,
        distances,
        method,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::progress::NoProgress;
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    #[test]
    fn squared_euclidean_matches_ndarray_sum_bit_for_bit() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        for d in [1, 3, 7, 8, 9, 15, 16, 64, 67] {
            let a = ndarray::Array1::from_shape_fn(d, |_| rng.gen_range(-5.0..5.0));
            let b = ndarray::Array1::from_shape_fn(d, |_| rng.gen_range(-5.0..5.0));
            let reference = (&a - &b).mapv(|v| v * v).sum();
            let ours = squared_euclidean(a.as_slice().unwrap_or(&[]), b.as_slice().unwrap_or(&[]));
            assert_eq!(ours.to_bits(), reference.to_bits(), "d = {d}");
            let swapped =
                squared_euclidean(b.as_slice().unwrap_or(&[]), a.as_slice().unwrap_or(&[]));
            assert_eq!(ours.to_bits(), swapped.to_bits());
        }
    }

    #[test]
    fn knn_graph_is_exact_for_small_inputs_and_says_so() -> Result<(), KnnError> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        let x = Array2::from_shape_fn((100, 3), |_| rng.gen_range(-1.0..1.0));
        let graph = knn_graph(x.view(), 5, 0, &NoProgress)?;
        assert_eq!(graph.method(), KnnMethod::Exact);
        assert_eq!(graph, exact_knn(x.view(), 5)?);
        assert_eq!(graph.recall_against(&graph), Some(1.0));
        Ok(())
    }
}
