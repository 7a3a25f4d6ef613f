//! Nearest-neighbour search for points that are not in a built graph: what UMAP's
//! `transform` needs to place new customers in a fitted map.
//!
//! The index keeps the reference data, a search graph (each point's kNN neighbours plus
//! the points that list it, at most `2k` per point, nearest first) and one
//! random-projection tree. A query starts from the tree leaf it falls into and walks the
//! graph best-first, as pynndescent's `query` does: it stops when the closest unexplored
//! point is farther than `(1 + ε)` times the current k-th nearest (squared distances,
//! `ε = 0.1`, pynndescent's default).
//!
//! Each query is answered independently from the index alone, and the random entry points
//! that top up a small leaf are drawn from a stream named by the query's own coordinates,
//! so answers depend neither on the thread count nor on how queries are batched.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use ndarray::ArrayView2;
use rand::Rng;
use rayon::prelude::*;

use super::exact::by_distance_then_index;
use super::rptree::RpTree;
use super::{
    KnnError, KnnGraph, KnnMethod, check_finite, graph_from_rows, row, row_major, squared_euclidean,
};
use crate::analysis::streams::{Purpose, point_key, stream};

/// Search slack: explore while a candidate is within `1 + ε` of the current k-th squared
/// distance. pynndescent's default; larger values trade time for recall.
const EPSILON: f64 = 0.1;

/// A searchable copy of reference data and its kNN graph.
#[derive(Debug, Clone)]
pub struct KnnIndex {
    data: Vec<f64>,
    d: usize,
    offsets: Vec<usize>,
    neighbours: Vec<usize>,
    tree: RpTree,
}

impl KnnIndex {
    /// Builds an index over the rows of `reference` from their kNN graph (any method;
    /// exact or NN-descent). Copies the reference (n x d values) so that the index owns
    /// everything a later query needs. `seed` names the random-projection tree.
    ///
    /// # Errors
    /// [`KnnError::GraphMismatch`] when the graph has a different number of points,
    /// [`KnnError::NonFinite`] for NaN or infinite reference values.
    pub fn new(reference: ArrayView2<f64>, graph: &KnnGraph, seed: u64) -> Result<Self, KnnError> {
        let n_points = reference.nrows();
        if graph.n_points() != n_points {
            return Err(KnnError::GraphMismatch {
                data_points: n_points,
                graph_points: graph.n_points(),
            });
        }
        check_finite(reference)?;
        let d = reference.ncols();
        let data = row_major(reference).into_owned();
        let k = graph.k();
        let max_degree = 2 * k;

        // Undirected search graph: forward and reverse edges, nearest first, capped.
        let mut edges: Vec<Vec<(f64, usize)>> = vec![Vec::with_capacity(2 * k); n_points];
        for (i, (indices, distances)) in graph
            .indices()
            .outer_iter()
            .zip(graph.distances().outer_iter())
            .enumerate()
        {
            for (&j, &distance) in indices.iter().zip(distances.iter()) {
                edges[i].push((distance, j));
                edges[j].push((distance, i));
            }
        }
        let edges: Vec<Vec<usize>> = edges
            .into_par_iter()
            .map(|mut list| {
                list.sort_unstable_by(by_distance_then_index);
                // A pair listed from both ends has one distance (it is symmetric bit for
                // bit), so its two copies are adjacent after sorting.
                list.dedup_by_key(|entry| entry.1);
                list.into_iter().take(max_degree).map(|(_, j)| j).collect()
            })
            .collect();
        let mut offsets = Vec::with_capacity(n_points + 1);
        offsets.push(0);
        let mut neighbours = Vec::new();
        for list in edges {
            neighbours.extend(list);
            offsets.push(neighbours.len());
        }
        let leaf_size = (k + 1).max(10);
        let tree = RpTree::build(&data, d, (0..n_points).collect(), leaf_size, seed, 0);
        Ok(Self {
            data,
            d,
            offsets,
            neighbours,
            tree,
        })
    }

    /// Number of reference points.
    pub fn n_points(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The (approximate) `k` nearest reference points of each row of `queries`, as a
    /// [`KnnGraph`] whose rows are the queries and whose indices refer to the reference
    /// ([`KnnMethod::IndexSearch`]). A query equal to a reference point finds it at
    /// distance 0. Queries run in parallel; each answer is a pure function of the index
    /// and that query, so the result is bit-identical whatever the threads or batches.
    ///
    /// # Errors
    /// [`KnnError::ZeroNeighbours`], [`KnnError::TooFewReferencePoints`] when `k` exceeds
    /// the reference, [`KnnError::DimensionMismatch`], [`KnnError::NonFinite`].
    pub fn query(&self, queries: ArrayView2<f64>, k: usize) -> Result<KnnGraph, KnnError> {
        if k == 0 {
            return Err(KnnError::ZeroNeighbours);
        }
        let n_points = self.n_points();
        if k > n_points {
            return Err(KnnError::TooFewReferencePoints { n_points, k });
        }
        if queries.ncols() != self.d {
            return Err(KnnError::DimensionMismatch {
                expected: self.d,
                got: queries.ncols(),
            });
        }
        check_finite(queries)?;
        let n_queries = queries.nrows();
        let queries = row_major(queries);
        let queries: &[f64] = &queries;
        let mut rows = vec![(0.0, 0_usize); n_queries * k];
        rows.par_chunks_mut(k).enumerate().for_each_init(
            || Visited::new(n_points),
            |visited, (q, out)| {
                self.search(row(queries, self.d, q), k, visited, out);
            },
        );
        Ok(graph_from_rows(&rows, k, KnnMethod::IndexSearch))
    }

    /// Best-first search for one query; writes its `k` nearest `(squared distance, index)`.
    fn search(&self, query: &[f64], k: usize, visited: &mut Visited, out: &mut [(f64, usize)]) {
        visited.clear();
        // Sorted ascending by (distance, index), at most k long.
        let mut best: Vec<(f64, usize)> = Vec::with_capacity(k + 1);
        let mut frontier: BinaryHeap<Reverse<Candidate>> = BinaryHeap::new();
        // Entry points are always explored; other points only while within the slack.
        let visit = |j: usize,
                     entry_point: bool,
                     best: &mut Vec<(f64, usize)>,
                     frontier: &mut BinaryHeap<Reverse<Candidate>>| {
            let entry = (squared_euclidean(query, row(&self.data, self.d, j)), j);
            if entry_point || entry.0 < (1.0 + EPSILON) * bound(best, k) {
                keep_best(best, entry, k);
                frontier.push(Reverse(Candidate(entry)));
            }
        };

        for &j in self.tree.leaf_of(query) {
            if visited.insert(j) {
                visit(j, true, &mut best, &mut frontier);
            }
        }
        if best.len() < k {
            // A small leaf: top up with random entry points named by the query itself.
            let mut rng = stream(0, Purpose::QuerySeeds, point_key(query.iter().copied()), 0);
            let n_points = self.n_points();
            let mut attempts = 0;
            while best.len() < k {
                let j = if attempts < 4 * k {
                    rng.gen_range(0..n_points)
                } else {
                    // Unlucky draws on a tiny reference: take points in order.
                    (attempts - 4 * k) % n_points
                };
                attempts += 1;
                if visited.insert(j) {
                    visit(j, true, &mut best, &mut frontier);
                }
            }
        }

        while let Some(Reverse(Candidate((distance, vertex)))) = frontier.pop() {
            if distance >= (1.0 + EPSILON) * bound(&best, k) {
                break;
            }
            for &j in &self.neighbours[self.offsets[vertex]..self.offsets[vertex + 1]] {
                if visited.insert(j) {
                    visit(j, false, &mut best, &mut frontier);
                }
            }
        }
        out.copy_from_slice(&best[..k]);
    }
}

/// Inserts `entry` into `best` (sorted, at most `k` long) if it is among the `k` best.
fn keep_best(best: &mut Vec<(f64, usize)>, entry: (f64, usize), k: usize) {
    let at = best.partition_point(|b| by_distance_then_index(b, &entry).is_lt());
    if at < k {
        best.insert(at, entry);
        best.truncate(k);
    }
}

/// The k-th best squared distance so far, or infinity while fewer than k are known.
fn bound(best: &[(f64, usize)], k: usize) -> f64 {
    if best.len() < k {
        f64::INFINITY
    } else {
        best[k - 1].0
    }
}

/// A frontier entry ordered by (squared distance, index): a total order, so the search
/// visits points in one order whatever happens elsewhere.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Candidate((f64, usize));

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        by_distance_then_index(&self.0, &other.0)
    }
}

/// Which reference points the current query has seen: a generation stamp per point, so
/// that clearing between queries is O(1). One per worker thread; it carries no state from
/// one query into the next.
struct Visited {
    stamps: Vec<u64>,
    generation: u64,
}

impl Visited {
    fn new(n_points: usize) -> Self {
        Self {
            stamps: vec![0; n_points],
            generation: 0,
        }
    }

    fn clear(&mut self) {
        self.generation += 1;
    }

    /// Marks `j` as seen; `true` if it was not seen before in this query.
    fn insert(&mut self, j: usize) -> bool {
        if self.stamps[j] == self.generation {
            false
        } else {
            self.stamps[j] = self.generation;
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::knn::exact_knn;
    use crate::analysis::knn::{NnDescentParams, nn_descent};
    use crate::analysis::progress::NoProgress;
    use crate::analysis::test_blobs::gaussian_blobs;
    use ndarray::{Array2, Axis, s};

    type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

    /// Ten 16-dimensional blobs, interleaved so that any split holds all of them.
    fn data(n: usize) -> Array2<f64> {
        let centres: Vec<Vec<f64>> = (0..10)
            .map(|c| {
                (0..16)
                    .map(|j| ((c * 7 + j * 3) % 11) as f64 - 5.0)
                    .collect()
            })
            .collect();
        let refs: Vec<&[f64]> = centres.iter().map(Vec::as_slice).collect();
        let blobs = gaussian_blobs(&refs, n / 10, 1.5, 3);
        Array2::from_shape_fn(blobs.dim(), |(i, j)| {
            blobs[[(i % 10) * (n / 10) + i / 10, j]]
        })
    }

    /// Exact neighbours of each query among the reference rows.
    fn brute_force(
        reference: ArrayView2<f64>,
        queries: ArrayView2<f64>,
        k: usize,
    ) -> Vec<Vec<usize>> {
        queries
            .axis_iter(Axis(0))
            .map(|q| {
                let mut all: Vec<(f64, usize)> = reference
                    .axis_iter(Axis(0))
                    .enumerate()
                    .map(|(j, r)| ((&r - &q).mapv(|v| v * v).sum(), j))
                    .collect();
                all.sort_by(by_distance_then_index);
                all.into_iter().take(k).map(|(_, j)| j).collect()
            })
            .collect()
    }

    #[test]
    fn finds_the_neighbours_of_held_out_points() -> TestResult {
        let x = data(2_000);
        let (reference, queries) = (x.slice(s![..1_800, ..]), x.slice(s![1_800.., ..]));
        let graph = nn_descent(reference, 15, &NnDescentParams::default(), 1, &NoProgress)?;
        let index = KnnIndex::new(reference, &graph, 2)?;
        assert_eq!(index.n_points(), 1_800);
        let found = index.query(queries, 15)?;
        assert_eq!(found.method(), KnnMethod::IndexSearch);
        let truth = brute_force(reference, queries, 15);
        let hits: usize = found
            .indices()
            .axis_iter(Axis(0))
            .zip(&truth)
            .map(|(row, t)| row.iter().filter(|j| t.contains(j)).count())
            .sum();
        let recall = hits as f64 / (200 * 15) as f64;
        assert!(recall >= 0.95, "recall {recall}");
        for row in found.distances().axis_iter(Axis(0)) {
            assert!(row.windows(2).into_iter().all(|w| w[0] <= w[1]));
        }
        Ok(())
    }

    #[test]
    fn a_reference_point_finds_itself() -> TestResult {
        let x = data(500);
        let index = KnnIndex::new(x.view(), &exact_knn(x.view(), 10)?, 0)?;
        let found = index.query(x.slice(s![..50, ..]), 5)?;
        for (i, (indices, distances)) in found
            .indices()
            .axis_iter(Axis(0))
            .zip(found.distances().axis_iter(Axis(0)))
            .enumerate()
        {
            assert_eq!((indices[0], distances[0]), (i, 0.0));
        }
        Ok(())
    }

    #[test]
    fn identical_with_one_and_two_threads_and_in_any_batch() -> TestResult {
        let x = data(1_000);
        let (reference, queries) = (x.slice(s![..900, ..]), x.slice(s![900.., ..]));
        let index = KnnIndex::new(reference, &exact_knn(reference, 8)?, 4)?;
        let run = |threads: usize| -> Result<KnnGraph, Box<dyn std::error::Error + Send + Sync>> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()?;
            Ok(pool.install(|| index.query(queries, 12))?)
        };
        let (one, two) = (run(1)?, run(2)?);
        assert_eq!(one.indices(), two.indices());
        let bits = |g: &KnnGraph| {
            g.distances()
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(&one), bits(&two));
        let tail = index.query(queries.slice(s![37.., ..]), 12)?;
        assert_eq!(tail.indices(), one.indices().slice(s![37.., ..]));
        Ok(())
    }

    #[test]
    fn rejects_mismatched_inputs() -> TestResult {
        let x = data(100);
        let graph = exact_knn(x.view(), 5)?;
        assert_eq!(
            KnnIndex::new(x.slice(s![..50, ..]), &graph, 0).err(),
            Some(KnnError::GraphMismatch {
                data_points: 50,
                graph_points: 100
            })
        );
        let index = KnnIndex::new(x.view(), &graph, 0)?;
        assert_eq!(
            index.query(x.view(), 0).err(),
            Some(KnnError::ZeroNeighbours)
        );
        assert_eq!(
            index.query(x.view(), 101).err(),
            Some(KnnError::TooFewReferencePoints {
                n_points: 100,
                k: 101
            })
        );
        assert_eq!(
            index.query(x.slice(s![.., ..3]), 5).err(),
            Some(KnnError::DimensionMismatch {
                expected: 16,
                got: 3
            })
        );
        let mut bad = x.slice(s![..4, ..]).to_owned();
        bad[[2, 7]] = f64::NAN;
        assert_eq!(
            index.query(bad.view(), 5).err(),
            Some(KnnError::NonFinite { row: 2, column: 7 })
        );
        // Every reference point can be asked for.
        assert_eq!(index.query(x.slice(s![..2, ..]), 100)?.k(), 100);
        Ok(())
    }
}
