//! Feature scaling, defined as scikit-learn's scalers so numbers can be compared:
//! `standard` is StandardScaler (mean, population standard deviation), `robust` is
//! RobustScaler (median, interquartile range with linear interpolation). A zero spread
//! scales by 1, as scikit-learn does, so a column never turns into NaN.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::Serialize;

use crate::domain::Scaling;

/// Per-column centre and scale learned from the data; recorded in the run output so a
/// reader can undo the scaling of any reported figure.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FittedScaler {
    /// The scaling that was fitted.
    pub kind: Scaling,
    /// Subtracted from each column.
    pub center: Vec<f64>,
    /// Each centred column is divided by this.
    pub scale: Vec<f64>,
}

/// Learns the centre and scale of each column.
pub fn fit_scaler(x: ArrayView2<f64>, kind: Scaling) -> FittedScaler {
    let d = x.ncols();
    let (center, scale) = match kind {
        Scaling::None => (vec![0.0; d], vec![1.0; d]),
        Scaling::Standard => {
            let mean: Array1<f64> = x.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(d));
            let std: Vec<f64> = x
                .axis_iter(Axis(1))
                .zip(mean.iter())
                .map(|(col, m)| {
                    (col.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / col.len() as f64).sqrt()
                })
                .collect();
            (mean.to_vec(), std.into_iter().map(non_zero).collect())
        }
        Scaling::Robust => x
            .axis_iter(Axis(1))
            .map(|col| {
                let mut sorted = col.to_vec();
                sorted.sort_by(f64::total_cmp);
                let q = |p: f64| quantile_sorted(&sorted, p);
                (q(0.5), non_zero(q(0.75) - q(0.25)))
            })
            .unzip(),
    };
    FittedScaler {
        kind,
        center,
        scale,
    }
}

impl FittedScaler {
    /// Applies the scaling to rows with the same columns as the fitted data.
    pub fn transform(&self, x: ArrayView2<f64>) -> Array2<f64> {
        let mut out = x.to_owned();
        for (mut col, (c, s)) in out
            .axis_iter_mut(Axis(1))
            .zip(self.center.iter().zip(&self.scale))
        {
            col.mapv_inplace(|v| (v - c) / s);
        }
        out
    }
}

fn non_zero(spread: f64) -> f64 {
    if spread.abs() < 10.0 * f64::EPSILON {
        1.0
    } else {
        spread
    }
}

/// numpy's default (linear) quantile of sorted values.
fn quantile_sorted(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = p * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn standard_matches_sklearn_standard_scaler() {
        // sklearn: StandardScaler().fit(X) -> mean_ [2, 20], scale_ [0.8164965809, 1]
        let x = array![[1.0, 20.0], [2.0, 20.0], [3.0, 20.0]];
        let s = fit_scaler(x.view(), Scaling::Standard);
        assert_eq!(s.center, vec![2.0, 20.0]);
        assert!((s.scale[0] - 0.816_496_580_927_726).abs() < 1e-12);
        assert_eq!(s.scale[1], 1.0, "a constant column scales by 1, never NaN");
        let t = s.transform(x.view());
        assert!((t[[0, 0]] + 1.224_744_871_391_589).abs() < 1e-12);
        assert_eq!(t[[1, 1]], 0.0);
    }

    #[test]
    fn robust_matches_sklearn_robust_scaler() {
        // sklearn: RobustScaler().fit([[1],[2],[4],[8],[100]]) -> center_ [4], scale_ [6]
        let x = array![[1.0], [2.0], [4.0], [8.0], [100.0]];
        let s = fit_scaler(x.view(), Scaling::Robust);
        assert_eq!(s.center, vec![4.0]);
        assert_eq!(s.scale, vec![6.0]);
    }

    #[test]
    fn none_leaves_values_alone() {
        let x = array![[1.5, -2.0]];
        let s = fit_scaler(x.view(), Scaling::None);
        assert_eq!(s.transform(x.view()), x);
    }
}
