//! Agreement between two labelings of the same samples: adjusted Rand index and normalised
//! mutual information, as `sklearn.metrics.adjusted_rand_score` and
//! `normalized_mutual_info_score(average_method="arithmetic")`.
//!
//! Both read a sparse contingency table: the non-zero cells only, as sorted pairs of dense
//! codes, so memory grows with the number of samples, never with `classes × clusters` (two
//! labelings into thousands of micro-segments stay cheap). Cells are visited in (class,
//! cluster) order, as in sklearn's sparse table; sklearn's floating sums are pairwise and
//! ours sequential, which can move the last bit of the mutual information.

use super::ValidityError;
use super::labels::Codes;

/// Largest sample count whose pair counts (up to `n⁴`) fit exactly in an `i128`.
const MAX_PAIR_COUNT_SAMPLES: usize = (1 << 31) - 1;

/// Adjusted Rand index of two labelings: pair-counting agreement corrected for chance, 1 for
/// identical partitions (whatever the label values), about 0 for independent ones, negative
/// when worse than chance; symmetric, and sklearn's number bit for bit.
///
/// As sklearn: 1.0 when no pair of samples is split differently (identical partitions, but
/// also empty or single-sample inputs). Pair counts are exact integers, as sklearn's Python
/// integers.
pub fn adjusted_rand_score(a: &[usize], b: &[usize]) -> Result<f64, ValidityError> {
    if a.len() > MAX_PAIR_COUNT_SAMPLES {
        return Err(ValidityError::TooManySamples {
            n_samples: a.len(),
            max: MAX_PAIR_COUNT_SAMPLES,
        });
    }
    let table = Contingency::new(a, b)?;
    // sklearn's pair_confusion_matrix: each count is over ordered pairs of distinct samples.
    let n = a.len() as i128;
    let sum_squares: i128 = table
        .cells
        .iter()
        .map(|c| c.count as i128 * c.count as i128)
        .sum();
    let by_cluster_sizes: i128 = table
        .cells
        .iter()
        .map(|c| c.count as i128 * table.cluster_sizes[c.cluster] as i128)
        .sum();
    let by_class_sizes: i128 = table
        .cells
        .iter()
        .map(|c| c.count as i128 * table.class_sizes[c.class] as i128)
        .sum();
    let tp = sum_squares - n;
    let fp = by_cluster_sizes - sum_squares;
    let false_neg = by_class_sizes - sum_squares;
    let tn = n * n - fp - false_neg - sum_squares;
    if false_neg == 0 && fp == 0 {
        return Ok(1.0);
    }
    // Python's `2.0 * int / int` rounds each integer to f64 once, then divides: as here.
    let numerator = (tp * tn - false_neg * fp) as f64 * 2.0;
    let denominator = ((tp + false_neg) * (false_neg + tn) + (tp + fp) * (fp + tn)) as f64;
    Ok(numerator / denominator)
}

/// Normalised mutual information of two labelings, mutual information over the arithmetic
/// mean of the two entropies (sklearn's default): 1 for identical partitions, 0 for
/// independent ones; symmetric, insensitive to label values.
///
/// As sklearn: 1.0 when both labelings have a single cluster (or no samples at all), 0.0 when
/// the mutual information is 0 (in particular when exactly one labeling has a single cluster).
pub fn normalized_mutual_info_score(a: &[usize], b: &[usize]) -> Result<f64, ValidityError> {
    let table = Contingency::new(a, b)?;
    let (classes, clusters) = (table.class_sizes.len(), table.cluster_sizes.len());
    if classes == clusters && classes <= 1 {
        return Ok(1.0);
    }
    let mi = table.mutual_information();
    if mi == 0.0 {
        return Ok(0.0);
    }
    let normalizer = (entropy(&table.class_sizes) + entropy(&table.cluster_sizes)) / 2.0;
    Ok(mi / normalizer)
}

/// One non-zero cell of the contingency table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cell {
    class: usize,
    cluster: usize,
    count: u64,
}

/// Sparse contingency table of labeling `a` (classes) against `b` (clusters).
#[derive(Debug)]
struct Contingency {
    /// Non-zero cells in (class, cluster) order.
    cells: Vec<Cell>,
    class_sizes: Vec<usize>,
    cluster_sizes: Vec<usize>,
}

impl Contingency {
    fn new(a: &[usize], b: &[usize]) -> Result<Self, ValidityError> {
        if a.len() != b.len() {
            return Err(ValidityError::LengthMismatch {
                expected: a.len(),
                got: b.len(),
            });
        }
        let classes = Codes::encode(a);
        let clusters = Codes::encode(b);
        let mut pairs: Vec<(usize, usize)> = classes
            .codes
            .iter()
            .copied()
            .zip(clusters.codes.iter().copied())
            .collect();
        pairs.sort_unstable();
        let mut cells: Vec<Cell> = Vec::new();
        for (class, cluster) in pairs {
            match cells.last_mut() {
                Some(last) if last.class == class && last.cluster == cluster => last.count += 1,
                _ => cells.push(Cell {
                    class,
                    cluster,
                    count: 1,
                }),
            }
        }
        Ok(Self {
            cells,
            class_sizes: classes.counts,
            cluster_sizes: clusters.counts,
        })
    }

    /// sklearn's `mutual_info_score` term by term (natural log), including its zeroing of
    /// terms below machine epsilon and its clipping at 0.
    fn mutual_information(&self) -> f64 {
        if self.class_sizes.len() == 1 || self.cluster_sizes.len() == 1 {
            return 0.0;
        }
        let total: u64 = self.cells.iter().map(|c| c.count).sum();
        let total = total as f64;
        // Row and column sums both equal the number of samples.
        let log_total = total.ln();
        let mi: f64 = self
            .cells
            .iter()
            .map(|cell| {
                let count = cell.count as f64;
                let p = count / total;
                // An exact integer product rounded once, as sklearn's int64 product.
                let outer = (self.class_sizes[cell.class] as u128
                    * self.cluster_sizes[cell.cluster] as u128) as f64;
                let log_outer = -outer.ln() + log_total + log_total;
                let term = p * (count.ln() - log_total) + p * log_outer;
                if term.abs() < f64::EPSILON { 0.0 } else { term }
            })
            .sum();
        mi.max(0.0)
    }
}

/// Shannon entropy (natural log) of a labeling from its cluster sizes, as sklearn's `entropy`.
fn entropy(sizes: &[usize]) -> f64 {
    if sizes.len() == 1 {
        return 0.0;
    }
    let total = sizes.iter().map(|&s| s as f64).sum::<f64>();
    let log_total = total.ln();
    -sizes
        .iter()
        .map(|&s| {
            let s = s as f64;
            (s / total) * (s.ln() - log_total)
        })
        .sum::<f64>()
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a failing test should stop at the failure"
)]
mod tests {
    use super::*;

    #[test]
    fn permuted_labels_agree_perfectly() {
        let a = [0, 0, 1, 1, 2, 2, 2];
        let b = [9, 9, 4, 4, 1_000_000, 1_000_000, 1_000_000];
        assert_eq!(adjusted_rand_score(&a, &b), Ok(1.0));
        approx::assert_relative_eq!(normalized_mutual_info_score(&a, &b).unwrap(), 1.0);
    }

    #[test]
    fn single_cluster_special_cases() {
        assert_eq!(normalized_mutual_info_score(&[3; 5], &[8; 5]), Ok(1.0));
        assert_eq!(
            normalized_mutual_info_score(&[3; 5], &[0, 1, 2, 3, 4]),
            Ok(0.0)
        );
        assert_eq!(adjusted_rand_score(&[3; 5], &[8; 5]), Ok(1.0));
        assert_eq!(adjusted_rand_score(&[3; 5], &[0, 1, 2, 3, 4]), Ok(0.0));
        assert_eq!(adjusted_rand_score(&[], &[]), Ok(1.0));
        assert_eq!(normalized_mutual_info_score(&[], &[]), Ok(1.0));
    }

    #[test]
    fn sklearn_docstring_examples() {
        // adjusted_rand_score([0, 0, 1, 2], [0, 0, 1, 1]) == 0.57...
        assert_eq!(
            adjusted_rand_score(&[0, 0, 1, 2], &[0, 0, 1, 1]),
            Ok(4.0 / 7.0)
        );
        // adjusted_rand_score([0, 0, 1, 1], [0, 1, 0, 1]) == -0.5
        assert_eq!(adjusted_rand_score(&[0, 0, 1, 1], &[0, 1, 0, 1]), Ok(-0.5));
        assert_eq!(
            normalized_mutual_info_score(&[0, 0, 1, 1], &[0, 1, 0, 1]),
            Ok(0.0)
        );
    }

    #[test]
    fn length_mismatch() {
        let expected = Err(ValidityError::LengthMismatch {
            expected: 3,
            got: 2,
        });
        assert_eq!(adjusted_rand_score(&[0, 1, 2], &[0, 1]), expected);
        assert_eq!(normalized_mutual_info_score(&[0, 1, 2], &[0, 1]), expected);
    }
}
