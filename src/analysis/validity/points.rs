//! Validated points and the one Euclidean distance every measure here uses.

use ndarray::ArrayView2;

use super::{Input, ValidityError};

/// Checks what sklearn's `check_array` checks of a feature matrix: at least one column, every
/// value finite.
pub(super) fn check_matrix(x: ArrayView2<f64>, input: Input) -> Result<(), ValidityError> {
    if x.ncols() == 0 {
        return Err(ValidityError::NoFeatures { input });
    }
    match x.indexed_iter().find(|(_, v)| !v.is_finite()) {
        Some(((row, column), _)) => Err(ValidityError::NonFinite { input, row, column }),
        None => Ok(()),
    }
}

/// Finite points stored feature-major (one contiguous column per feature), so that distances
/// from one point to a run of others vectorise across the others while each distance still
/// sums its squares in feature order: the result is the same bits however rows are scheduled.
#[derive(Debug, Clone)]
pub(super) struct Points {
    n: usize,
    columns: Vec<f64>,
}

impl Points {
    /// Validates `x` (rows are points) and copies it feature-major; memory `O(n · features)`,
    /// the size of the input.
    pub(super) fn new(x: ArrayView2<f64>, input: Input) -> Result<Self, ValidityError> {
        check_matrix(x, input)?;
        Ok(Self {
            n: x.nrows(),
            columns: x.t().iter().copied().collect(),
        })
    }

    /// Number of points.
    pub(super) fn len(&self) -> usize {
        self.n
    }

    /// Writes into `out[t]` the Euclidean distance from point `i` to point `start + t`,
    /// squares summed in feature order (no fused multiply-add, no reassociation).
    pub(super) fn distances_from(&self, i: usize, start: usize, out: &mut [f64]) {
        out.fill(0.0);
        let end = start + out.len();
        for column in self.columns.chunks_exact(self.n) {
            let xi = column[i];
            for (acc, &xj) in out.iter_mut().zip(&column[start..end]) {
                let diff = xi - xj;
                *acc += diff * diff;
            }
        }
        for acc in out.iter_mut() {
            *acc = acc.sqrt();
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a failing test should stop at the failure"
)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn distances_are_euclidean_for_any_layout() {
        let x = array![[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]];
        let mut out = [0.0; 2];
        for view in [x.view(), x.t().t()] {
            Points::new(view, Input::Points)
                .unwrap()
                .distances_from(1, 1, &mut out);
            assert_eq!(out, [0.0, 5.0]);
        }
        let fortran = x.t().to_owned().reversed_axes();
        Points::new(fortran.view(), Input::Points)
            .unwrap()
            .distances_from(0, 1, &mut out);
        assert_eq!(out, [5.0, 10.0]);
    }

    #[test]
    fn rejects_what_sklearn_rejects() {
        let nan = array![[0.0, 1.0], [f64::NAN, 2.0]];
        assert_eq!(
            check_matrix(nan.view(), Input::Embedding),
            Err(ValidityError::NonFinite {
                input: Input::Embedding,
                row: 1,
                column: 0
            })
        );
        let empty = ndarray::Array2::<f64>::zeros((3, 0));
        assert_eq!(
            check_matrix(empty.view(), Input::Points),
            Err(ValidityError::NoFeatures {
                input: Input::Points
            })
        );
    }
}
