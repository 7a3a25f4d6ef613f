//! Labels as dense cluster codes, the way sklearn's `LabelEncoder` sees them.

use super::ValidityError;

/// A labeling re-expressed with codes `0..counts.len()`, assigned to the distinct label values
/// in increasing order; `counts[c]` is the size of cluster `c` and is never zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Codes {
    /// One code per sample, in sample order.
    pub(super) codes: Vec<usize>,
    /// Samples per code.
    pub(super) counts: Vec<usize>,
}

impl Codes {
    /// Encodes any label values; memory and time depend on the number of samples and of
    /// distinct values only, never on how large the values are.
    pub(super) fn encode(labels: &[usize]) -> Self {
        let mut values = labels.to_vec();
        values.sort_unstable();
        values.dedup();
        let mut counts = vec![0; values.len()];
        let codes = labels
            .iter()
            // Every label is one of `values`, so the search always finds it (`Ok`).
            .map(|label| match values.binary_search(label) {
                Ok(code) | Err(code) => code,
            })
            .inspect(|&code| counts[code] += 1)
            .collect();
        Self { codes, counts }
    }

    /// Number of distinct labels.
    pub(super) fn n_clusters(&self) -> usize {
        self.counts.len()
    }

    /// Encodes the labels of `n_samples` points for an internal measure: one label per point,
    /// and between 2 and `n_samples - 1` clusters, as sklearn's `check_number_of_labels`.
    pub(super) fn for_partition(labels: &[usize], n_samples: usize) -> Result<Self, ValidityError> {
        if labels.len() != n_samples {
            return Err(ValidityError::LengthMismatch {
                expected: n_samples,
                got: labels.len(),
            });
        }
        let codes = Self::encode(labels);
        let n_clusters = codes.n_clusters();
        if n_clusters < 2 || n_clusters >= n_samples {
            return Err(ValidityError::InvalidClusterCount {
                n_clusters,
                n_samples,
            });
        }
        Ok(codes)
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a failing test should stop at the failure"
)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_sorted_label_values() {
        let codes = Codes::encode(&[1_000_000, 3, 42, 3, usize::MAX]);
        assert_eq!(codes.codes, vec![2, 0, 1, 0, 3]);
        assert_eq!(codes.counts, vec![2, 1, 1, 1]);
    }

    #[test]
    fn partition_needs_two_to_n_minus_one_clusters() {
        assert_eq!(
            Codes::for_partition(&[7, 7, 7], 3),
            Err(ValidityError::InvalidClusterCount {
                n_clusters: 1,
                n_samples: 3
            })
        );
        assert_eq!(
            Codes::for_partition(&[1, 2, 3], 3),
            Err(ValidityError::InvalidClusterCount {
                n_clusters: 3,
                n_samples: 3
            })
        );
        assert_eq!(
            Codes::for_partition(&[1, 2], 3),
            Err(ValidityError::LengthMismatch {
                expected: 3,
                got: 2
            })
        );
        assert!(Codes::for_partition(&[1, 2, 2], 3).is_ok());
    }
}
