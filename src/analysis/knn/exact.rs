//! Exact k-nearest neighbours by brute force: the reference every approximate graph is
//! measured against, and the fastest method for small inputs.
//!
//! Every row is computed independently from the input alone, and ties are broken by the
//! smaller index, so the graph is identical whatever the number of rayon threads and
//! whatever the order in which rows are scheduled.

use std::cmp::Ordering;

use ndarray::ArrayView2;
use rayon::prelude::*;

use super::{
    KnnError, KnnGraph, KnnMethod, check_graph_input, graph_from_rows, row, row_major,
    squared_euclidean,
};

/// Exact Euclidean k-nearest-neighbour graph of the rows of `x`, by brute force.
///
/// Costs O(n² d) time, which is fine up to tens of thousands of points; memory is O(n k)
/// for the result plus one O(n) distance buffer per rayon thread. Rows are processed in
/// parallel but independently, so the result does not depend on the thread count.
///
/// # Errors
/// [`KnnError::ZeroNeighbours`] for `k == 0`, [`KnnError::TooFewPoints`] when `x` has
/// `k` rows or fewer, [`KnnError::NonFinite`] for NaN or infinite inputs.
pub fn exact_knn(x: ArrayView2<f64>, k: usize) -> Result<KnnGraph, KnnError> {
    check_graph_input(x, k)?;
    let n_points = x.nrows();
    let d = x.ncols();
    let data = row_major(x);
    let data: &[f64] = &data;

    let mut rows = vec![(0.0, 0_usize); n_points * k];
    rows.par_chunks_mut(k).enumerate().for_each_init(
        || Vec::with_capacity(n_points),
        |candidates: &mut Vec<(f64, usize)>, (i, out)| {
            let xi = row(data, d, i);
            candidates.clear();
            // Squared differences summed directly (rather than the |a|² + |b|² - 2ab
            // expansion) keep exact zeros for duplicates and exact ties for equidistant
            // points, which the tie rule relies on.
            candidates.extend(
                (0..n_points)
                    .filter(|&j| j != i)
                    .map(|j| (squared_euclidean(xi, row(data, d, j)), j)),
            );
            // Partial selection: only the k nearest need ordering, O(n + k log k).
            candidates.select_nth_unstable_by(k - 1, by_distance_then_index);
            let nearest = &mut candidates[..k];
            // sqrt is monotone, so ordering by squared distance is the same order.
            nearest.sort_unstable_by(by_distance_then_index);
            out.copy_from_slice(nearest);
        },
    );
    Ok(graph_from_rows(&rows, k, KnnMethod::Exact))
}

/// Total order on (squared distance, index): distances are finite, and the index breaks
/// ties so that selection and sorting give one answer however they are implemented.
pub(super) fn by_distance_then_index(a: &(f64, usize), b: &(f64, usize)) -> Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, Axis, array};
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// Reference: full sort of every row by (distance, index).
    fn brute_force(x: ArrayView2<f64>, k: usize) -> (Array2<usize>, Array2<f64>) {
        let n = x.nrows();
        let mut indices = Array2::zeros((n, k));
        let mut distances = Array2::zeros((n, k));
        for i in 0..n {
            let mut all: Vec<(f64, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| ((&x.row(i) - &x.row(j)).mapv(|v| v * v).sum().sqrt(), j))
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            for (slot, (d, j)) in all.into_iter().take(k).enumerate() {
                indices[[i, slot]] = j;
                distances[[i, slot]] = d;
            }
        }
        (indices, distances)
    }

    fn random_data(n: usize, d: usize, seed: u64) -> Array2<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        Array2::from_shape_fn((n, d), |_| rng.gen_range(-1.0..1.0))
    }

    #[test]
    fn matches_brute_force_on_random_data() -> TestResult {
        let x = random_data(200, 5, 7);
        let graph = exact_knn(x.view(), 12)?;
        let (indices, distances) = brute_force(x.view(), 12);
        assert_eq!(graph.indices(), indices.view());
        assert_eq!(graph.distances(), distances.view());
        assert_eq!((graph.n_points(), graph.k()), (200, 12));
        Ok(())
    }

    #[test]
    fn ties_are_broken_by_smaller_index_and_duplicates_are_neighbours() -> TestResult {
        // Small integer grid: many exactly equal distances, plus duplicated points.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let x = Array2::from_shape_fn((150, 3), |_| f64::from(rng.gen_range(0..3_u8)));
        let graph = exact_knn(x.view(), 20)?;
        let (indices, distances) = brute_force(x.view(), 20);
        assert_eq!(graph.indices(), indices.view());
        assert_eq!(graph.distances(), distances.view());
        // 27 grid cells for 150 points: duplicates must show up at distance 0.
        assert!(graph.distances().column(0).iter().any(|&d| d == 0.0));
        for (i, row) in graph.indices().axis_iter(Axis(0)).enumerate() {
            assert!(
                row.iter().all(|&j| j != i),
                "point {i} is its own neighbour"
            );
        }
        Ok(())
    }

    #[test]
    fn equidistant_neighbours_come_in_index_order() -> TestResult {
        let x = array![[0.0], [1.0], [-1.0], [2.0], [-2.0]];
        let graph = exact_knn(x.view(), 4)?;
        assert_eq!(graph.indices().row(0).to_vec(), vec![1, 2, 3, 4]);
        assert_eq!(graph.distances().row(0).to_vec(), vec![1.0, 1.0, 2.0, 2.0]);
        Ok(())
    }

    #[test]
    fn rejects_bad_inputs() {
        let x = random_data(5, 2, 1);
        assert_eq!(
            exact_knn(x.view(), 5),
            Err(KnnError::TooFewPoints { n_points: 5, k: 5 })
        );
        assert_eq!(
            exact_knn(x.view(), 9),
            Err(KnnError::TooFewPoints { n_points: 5, k: 9 })
        );
        assert_eq!(exact_knn(x.view(), 0), Err(KnnError::ZeroNeighbours));
        let mut bad = x.clone();
        bad[[3, 1]] = f64::NAN;
        bad[[4, 0]] = f64::INFINITY;
        assert_eq!(
            exact_knn(bad.view(), 2),
            Err(KnnError::NonFinite { row: 3, column: 1 })
        );
        assert!(exact_knn(x.view(), 4).is_ok());
    }

    #[test]
    fn identical_with_one_and_two_threads() -> TestResult {
        let x = random_data(300, 4, 11);
        let run = |threads: usize| -> Result<KnnGraph, Box<dyn std::error::Error>> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()?;
            Ok(pool.install(|| exact_knn(x.view(), 10))?)
        };
        let (one, two) = (run(1)?, run(2)?);
        assert_eq!(one.indices(), two.indices());
        // Bitwise, not approximately.
        let bits = |g: &KnnGraph| {
            g.distances()
                .iter()
                .map(|d| d.to_bits())
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(&one), bits(&two));
        Ok(())
    }
}
