//! Principal component analysis to 2D, defined as scikit-learn's `PCA(n_components=2)`.
//!
//! We diagonalise the d x d covariance matrix with a symmetric eigensolver instead of using
//! linfa-reduction 0.8.1, which was measured to panic on some inputs ("NaN values in array")
//! and to normalise explained-variance ratios over the kept components only. The ratios here
//! are each component's variance over the total variance of all d components, as
//! scikit-learn reports them. Signs follow scikit-learn's `svd_flip(u_based_decision=False)`:
//! the largest-magnitude loading of each component is positive, so the map does not mirror
//! itself between runs or versions.

use linfa_linalg::eigh::EighInto;
use ndarray::{Array1, Array2, ArrayView2, Axis, s};

/// Why PCA could not run.
#[derive(Debug, thiserror::Error)]
pub enum PcaError {
    /// Fewer features than components.
    #[error("PCA to {components}D needs at least {components} features, got {features}")]
    TooFewFeatures {
        /// Components asked for.
        components: usize,
        /// Features available.
        features: usize,
    },
    /// Fewer than two rows.
    #[error("PCA needs at least 2 customers, got {rows}")]
    TooFewRows {
        /// Rows available.
        rows: usize,
    },
    /// The eigensolver failed (does not happen on finite input).
    #[error("PCA eigen-decomposition failed: {0}")]
    Linalg(String),
    /// Values so large that their squares overflow.
    #[error("PCA: values too large (their squares overflow); rescale the features")]
    Overflow,
}

/// A fitted projection: the mean, the principal axes and their variance.
#[derive(Debug, Clone)]
pub struct PcaModel {
    /// Column means subtracted before projecting.
    pub mean: Vec<f64>,
    /// `components x d` principal axes (rows), as scikit-learn's `components_`.
    pub components: Array2<f64>,
    /// Variance along each kept axis (`explained_variance_`, with n - 1 in the denominator).
    pub explained_variance: Vec<f64>,
    /// Share of the total variance along each kept axis (`explained_variance_ratio_`).
    pub explained_variance_ratio: Vec<f64>,
}

impl PcaModel {
    /// Projects rows (with the fitted data's columns) onto the principal axes.
    pub fn transform(&self, x: ArrayView2<f64>) -> Array2<f64> {
        let mean = Array1::from(self.mean.clone());
        let centered = &x - &mean;
        centered.dot(&self.components.t())
    }
}

/// Fits PCA with `components` axes.
pub fn fit_pca(x: ArrayView2<f64>, components: usize) -> Result<PcaModel, PcaError> {
    let (n, d) = x.dim();
    if d < components {
        return Err(PcaError::TooFewFeatures {
            components,
            features: d,
        });
    }
    if n < 2 {
        return Err(PcaError::TooFewRows { rows: n });
    }
    let mean = x
        .mean_axis(Axis(0))
        .ok_or(PcaError::TooFewRows { rows: n })?;
    let centered = &x - &mean;
    let covariance = centered.t().dot(&centered) / (n as f64 - 1.0);
    if covariance.iter().any(|v| !v.is_finite()) {
        return Err(PcaError::Overflow);
    }
    let (eigenvalues, vectors) = covariance
        .eigh_into()
        .map_err(|e| PcaError::Linalg(e.to_string()))?;
    // Our own ordering rather than linfa's EigSort, which panics on NaN; ties go to the
    // lower index. Round-off can leave tiny negative eigenvalues for rank-deficient data.
    let mut order: Vec<usize> = (0..eigenvalues.len()).collect();
    order.sort_by(|&a, &b| eigenvalues[b].total_cmp(&eigenvalues[a]).then(a.cmp(&b)));
    let values: Vec<f64> = order.iter().map(|&c| eigenvalues[c].max(0.0)).collect();
    let vectors = vectors.select(Axis(1), &order);
    let total: f64 = values.iter().sum();
    let mut axes = vectors.slice(s![.., ..components]).t().to_owned();
    for mut axis in axes.axis_iter_mut(Axis(0)) {
        let dominant =
            axis.iter().copied().fold(
                0.0_f64,
                |best, v| if v.abs() > best.abs() { v } else { best },
            );
        if dominant < 0.0 {
            axis.mapv_inplace(|v| -v);
        }
    }
    let explained_variance: Vec<f64> = values.iter().take(components).copied().collect();
    let explained_variance_ratio = explained_variance
        .iter()
        .map(|v| if total > 0.0 { v / total } else { 0.0 })
        .collect();
    Ok(PcaModel {
        mean: mean.to_vec(),
        components: axes,
        explained_variance,
        explained_variance_ratio,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn matches_sklearn_on_a_small_matrix() {
        // sklearn 1.7.2: PCA(2).fit(X) on this X gives
        // explained_variance_ratio_ [0.99244289, 0.00755711],
        // explained_variance_ [7.93954312, 0.06045688], components_[0] = [0.83849224, 0.54491354]
        let x = array![
            [-1.0, -1.0],
            [-2.0, -1.0],
            [-3.0, -2.0],
            [1.0, 1.0],
            [2.0, 1.0],
            [3.0, 2.0]
        ];
        let pca = fit_pca(x.view(), 2).expect("pca");
        assert!((pca.explained_variance_ratio[0] - 0.992_442_89).abs() < 1e-8);
        assert!((pca.explained_variance_ratio[1] - 0.007_557_11).abs() < 1e-8);
        assert!((pca.explained_variance[0] - 7.939_543_12).abs() < 1e-7);
        assert!((pca.components[[0, 0]] - 0.838_492_24).abs() < 1e-8);
        assert!((pca.components[[0, 1]] - 0.544_913_54).abs() < 1e-8);
    }

    #[test]
    fn rank_deficient_input_does_not_fail() {
        let x = array![[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [3.0, 6.0, 9.0]];
        let pca = fit_pca(x.view(), 2).expect("pca");
        assert!((pca.explained_variance_ratio[0] - 1.0).abs() < 1e-12);
        assert!(pca.explained_variance_ratio[1].abs() < 1e-12);
        assert!(pca.transform(x.view()).iter().all(|v| v.is_finite()));
    }

    #[test]
    fn too_few_features_is_an_error() {
        let x = array![[1.0], [2.0]];
        assert!(matches!(
            fit_pca(x.view(), 2),
            Err(PcaError::TooFewFeatures { .. })
        ));
    }
}
