//! Trustworthiness of an embedding, as `sklearn.manifold.trustworthiness` with the Euclidean
//! metric.
//!
//! sklearn builds two `n × n` matrices (all distances, and an inverted index of argsorted
//! distances). We need neither: per row, in parallel blocks, we compute the row's distances in
//! both spaces (`O(n)` memory per row in flight), select the row's `k` nearest neighbours in
//! the embedding, and rank each of them in the original space by counting the points that
//! precede it. Ranks are integers and penalties are summed as integers, so the total is exact
//! whatever the thread count; the final normalisation is sklearn's expression, to the bit.

use std::cmp::Ordering;

use ndarray::ArrayView2;
use rayon::prelude::*;

use super::points::Points;
use super::{Input, ValidityError};

/// Rows per parallel task; a row costs `O(n · features)`, so small blocks balance well.
const BLOCK_ROWS: usize = 16;

/// How faithfully an embedding (say a 2D map) keeps each point's nearest neighbours: 1 when
/// every point's `n_neighbors` nearest in the embedding are also among its nearest in the
/// original space, lower as embedded neighbours come from further away; what tells a reader
/// whether clusters that look close on the map are close in the data.
///
/// `x` and `embedded` hold the same points, one per row. For each point, each embedded
/// neighbour with original-space rank `r > k` costs `r − k`; the total is normalised by
/// `2 / (n k (2n − 3k − 1))`, as sklearn. Requires `1 <= n_neighbors < n / 2` (sklearn's
/// condition) and finite values.
///
/// # Ties
///
/// When ranking the other points by distance from a point, one comes before another if it is
/// strictly closer, or equally close with a smaller index: the order a stable sort gives, used
/// in both spaces. sklearn uses `np.argsort`'s default unstable
/// sort in the original space, whose order among equal distances depends on the sort
/// implementation numpy picks for the CPU, and its distances (`|x|² − 2x·y + |y|²`) round
/// differently from ours (squares summed feature by feature). With continuous data ties
/// essentially never occur and the two agree (to the bit on the fixtures' Gaussian sample);
/// with gridded or integer data (Iris, digits) exact ties are common and sklearn's own value
/// moves with the machine. On the fixtures the two differ by up to 7.5e-5 (Iris against its
/// PCA map) and 4.4e-6 (digits), inside the range that orderings of the ties allow.
pub fn trustworthiness(
    x: ArrayView2<f64>,
    embedded: ArrayView2<f64>,
    n_neighbors: usize,
) -> Result<f64, ValidityError> {
    let n = x.nrows();
    if embedded.nrows() != n {
        return Err(ValidityError::LengthMismatch {
            expected: n,
            got: embedded.nrows(),
        });
    }
    // n_neighbors < n / 2 in real numbers, without overflow.
    if n_neighbors == 0 || n_neighbors >= n.div_ceil(2) {
        return Err(ValidityError::InvalidNeighbors {
            n_neighbors,
            n_samples: n,
        });
    }
    let original = Points::new(x, Input::Points)?;
    let embedded = Points::new(embedded, Input::Embedding)?;
    let k = n_neighbors;

    let block_penalties: Vec<u64> = (0..n.div_ceil(BLOCK_ROWS))
        .into_par_iter()
        .map(|block| {
            let mut scratch = Scratch::new(n, k);
            (block * BLOCK_ROWS..((block + 1) * BLOCK_ROWS).min(n))
                .map(|i| scratch.row_penalty(&original, &embedded, i))
                .sum::<u64>()
        })
        .collect();
    let penalty: u64 = block_penalties.iter().sum();

    // sklearn: 1.0 - t * (2.0 / (n_samples * n_neighbors * (2.0 * n_samples - 3.0 * n_neighbors
    // - 1.0))), where n_samples * n_neighbors is an integer product.
    let (n_f, k_f) = (n as f64, k as f64);
    let scale = 2.0 / ((n * k) as f64 * (2.0 * n_f - 3.0 * k_f - 1.0));
    Ok(1.0 - penalty as f64 * scale)
}

/// Per-task buffers, reused across the rows of a block.
struct Scratch {
    distances: Vec<f64>,
    candidates: Vec<(f64, usize)>,
    neighbours: Vec<(f64, usize)>,
    preceding: Vec<u64>,
}

/// The neighbour order of (distance, index) keys: closer first, equally close by smaller
/// index (a stable sort's order). Distances are finite and never `-0.0` (sums of squares from
/// `+0.0`), so `total_cmp` agrees with `<` and `==` on them.
fn order(a: &(f64, usize), b: &(f64, usize)) -> Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

impl Scratch {
    fn new(n: usize, k: usize) -> Self {
        Self {
            distances: vec![0.0; n],
            candidates: Vec::with_capacity(n),
            neighbours: Vec::with_capacity(k),
            preceding: vec![0; k],
        }
    }

    /// Sum over point `i`'s `k` embedded neighbours of `max(0, original rank − k)`.
    fn row_penalty(&mut self, original: &Points, embedded: &Points, i: usize) -> u64 {
        let k = self.preceding.len();

        // The k nearest in the embedding, self excluded.
        embedded.distances_from(i, 0, &mut self.distances);
        self.candidates.clear();
        self.candidates.extend(
            self.distances
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(j, &d)| (d, j)),
        );
        self.candidates.select_nth_unstable_by(k - 1, order);

        // Their keys in the original space, sorted.
        original.distances_from(i, 0, &mut self.distances);
        self.neighbours.clear();
        self.neighbours.extend(
            self.candidates[..k]
                .iter()
                .map(|&(_, j)| (self.distances[j], j)),
        );
        self.neighbours.sort_unstable_by(order);

        // A point that precedes some neighbours precedes all of them from the first one on:
        // count where each such point falls, then prefix sums give the ranks. Most points
        // are farther than every neighbour, and one comparison with the last settles them.
        self.preceding.fill(0);
        let Some(&last) = self.neighbours.last() else {
            return 0;
        };
        for (l, &d) in self.distances.iter().enumerate() {
            if l != i && order(&(d, l), &last) == Ordering::Less {
                // The first neighbour l precedes: past those ordered before l, and past l
                // itself when l is one of the neighbours.
                let from = self
                    .neighbours
                    .partition_point(|neighbour| order(neighbour, &(d, l)) != Ordering::Greater);
                self.preceding[from] += 1;
            }
        }
        let mut before = 0;
        let mut penalty = 0;
        for &count in &self.preceding {
            before += count;
            // 1-based rank among the n − 1 other points.
            let rank = before + 1;
            penalty += rank.saturating_sub(k as u64);
        }
        penalty
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a failing test should stop at the failure"
)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    fn scattered(n: usize, d: usize, salt: usize) -> Array2<f64> {
        Array2::from_shape_fn((n, d), |(i, j)| {
            ((i * 7919 + j * 104_729 + salt * 31) % 1009) as f64 / 37.0
        })
    }

    /// sklearn's algorithm with full matrices and stable sorts, for cross-checking.
    fn quadratic_reference(x: &Array2<f64>, e: &Array2<f64>, k: usize) -> f64 {
        let n = x.nrows();
        let dist = |m: &Array2<f64>, i: usize, j: usize| {
            m.row(i)
                .iter()
                .zip(m.row(j).iter())
                .fold(0.0, |acc, (a, b)| acc + (a - b) * (a - b))
                .sqrt()
        };
        let others_by_distance = |m: &Array2<f64>, i: usize| {
            let mut js: Vec<usize> = (0..n).filter(|&j| j != i).collect();
            js.sort_by(|&a, &b| dist(m, i, a).total_cmp(&dist(m, i, b)));
            js
        };
        let mut t = 0;
        for i in 0..n {
            let original = others_by_distance(x, i);
            for &j in &others_by_distance(e, i)[..k] {
                let rank = original.iter().position(|&l| l == j).unwrap() + 1;
                t += rank.saturating_sub(k);
            }
        }
        1.0 - t as f64 * (2.0 / ((n * k) as f64 * (2.0 * n as f64 - 3.0 * k as f64 - 1.0)))
    }

    #[test]
    fn identity_embedding_is_perfect() {
        let x = scattered(40, 3, 0);
        assert_eq!(trustworthiness(x.view(), x.view(), 5), Ok(1.0));
    }

    #[test]
    fn matches_quadratic_reference_with_ties() {
        // Integer-valued: many exactly tied distances in both spaces.
        let x = Array2::from_shape_fn((60, 3), |(i, j)| ((i * 7 + j * 3) % 5) as f64);
        let e = Array2::from_shape_fn((60, 2), |(i, j)| ((i * 11 + j) % 4) as f64);
        for k in [1, 4, 12, 29] {
            assert_eq!(
                trustworthiness(x.view(), e.view(), k).unwrap(),
                quadratic_reference(&x, &e, k),
                "k = {k}"
            );
        }
        let e = scattered(60, 2, 5);
        assert_eq!(
            trustworthiness(x.view(), e.view(), 7).unwrap(),
            quadratic_reference(&x, &e, 7)
        );
    }

    #[test]
    fn errors_follow_sklearn() {
        let x = scattered(10, 3, 0);
        let e = scattered(10, 2, 1);
        for bad in [0, 5, 6, usize::MAX] {
            assert_eq!(
                trustworthiness(x.view(), e.view(), bad),
                Err(ValidityError::InvalidNeighbors {
                    n_neighbors: bad,
                    n_samples: 10
                })
            );
        }
        assert!(trustworthiness(x.view(), e.view(), 4).is_ok());
        assert_eq!(
            trustworthiness(x.view(), e.view().split_at(ndarray::Axis(0), 9).0, 2),
            Err(ValidityError::LengthMismatch {
                expected: 10,
                got: 9
            })
        );
        let mut nan = e.clone();
        nan[[2, 1]] = f64::NAN;
        assert_eq!(
            trustworthiness(x.view(), nan.view(), 2),
            Err(ValidityError::NonFinite {
                input: Input::Embedding,
                row: 2,
                column: 1
            })
        );
        let tiny = array![[0.0], [1.0]];
        assert!(matches!(
            trustworthiness(tiny.view(), tiny.view(), 1),
            Err(ValidityError::InvalidNeighbors { .. })
        ));
    }

    #[test]
    fn identical_with_one_or_two_threads() -> Result<(), Box<dyn std::error::Error>> {
        let x = scattered(300, 6, 0);
        let e = scattered(300, 2, 3);
        let run = |threads: usize| -> Result<u64, Box<dyn std::error::Error>> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()?;
            Ok(pool
                .install(|| trustworthiness(x.view(), e.view(), 10))?
                .to_bits())
        };
        assert_eq!(run(1)?, run(2)?);
        Ok(())
    }
}
