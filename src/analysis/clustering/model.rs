//! Fitted segment models that can place customers they were not fitted on.
//!
//! Large runs fit segments on a sample and assign everyone else with the model; weekly
//! tracking (later) assigns new weeks to existing segments the same way. Segment indices of
//! a model follow its [`Partition`](crate::domain::Partition)'s order. Assignment runs in
//! parallel over rows, each row independently, so results do not depend on threads.

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;

/// How a fitted clustering assigns a customer.
#[derive(Debug, Clone)]
pub enum SegmentModel {
    /// k-means: the nearest centroid (rows in segment order).
    Centroids(Array2<f64>),
    /// Gaussian mixture: the most probable component.
    Mixture(MixtureComponents),
    /// HDBSCAN, which has no closed-form model: the segment of the nearest fitted customer
    /// (noise if that customer is noise).
    NearestFitted {
        /// The customers the model was fitted on.
        points: Array2<f64>,
        /// Their segments.
        labels: Vec<Option<usize>>,
    },
}

impl SegmentModel {
    /// Segment of each row of `x` (columns as the fitted data's).
    pub fn assign(&self, x: ArrayView2<f64>) -> Vec<Option<usize>> {
        let rows: Vec<ArrayView1<f64>> = x.axis_iter(Axis(0)).collect();
        rows.par_iter()
            .map(|row| match self {
                SegmentModel::Centroids(centroids) => Some(nearest(centroids.view(), *row)),
                SegmentModel::Mixture(mixture) => Some(mixture.most_probable(*row).0),
                SegmentModel::NearestFitted { points, labels } => {
                    labels[nearest(points.view(), *row)]
                }
            })
            .collect()
    }
}

/// Index of the row of `points` nearest to `row` (ties to the smaller index).
fn nearest(points: ArrayView2<f64>, row: ArrayView1<f64>) -> usize {
    let mut best = (0, f64::INFINITY);
    for (i, p) in points.axis_iter(Axis(0)).enumerate() {
        let d: f64 = p
            .iter()
            .zip(row.iter())
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        if d < best.1 {
            best = (i, d);
        }
    }
    best.0
}

/// Mixture components ready for density evaluation: log weights, means and Cholesky
/// factors of the covariances with their log-determinants.
#[derive(Debug, Clone)]
pub struct MixtureComponents {
    log_weights: Vec<f64>,
    means: Array2<f64>,
    factors: Vec<Array2<f64>>,
    log_dets: Vec<f64>,
}

impl MixtureComponents {
    /// Builds components from weights, means and covariances; fails when a covariance is
    /// not positive definite.
    pub fn new(
        weights: ArrayView1<f64>,
        means: ArrayView2<f64>,
        covariances: &ndarray::Array3<f64>,
    ) -> Result<Self, String> {
        use linfa_linalg::cholesky::CholeskyInplace;
        let mut factors = Vec::with_capacity(weights.len());
        let mut log_dets = Vec::with_capacity(weights.len());
        for cov in covariances.axis_iter(Axis(0)) {
            let l = cov
                .to_owned()
                .cholesky_into()
                .map_err(|e| format!("covariance not positive definite: {e}"))?;
            log_dets.push(2.0 * l.diag().iter().map(|v| v.ln()).sum::<f64>());
            factors.push(l);
        }
        Ok(MixtureComponents {
            log_weights: weights.iter().map(|w| w.ln()).collect(),
            means: means.to_owned(),
            factors,
            log_dets,
        })
    }

    /// The same components in another order: `order[s]` is the old index of new component `s`.
    pub fn reordered(&self, order: &[usize]) -> Self {
        MixtureComponents {
            log_weights: order.iter().map(|&c| self.log_weights[c]).collect(),
            means: self.means.select(Axis(0), order),
            factors: order.iter().map(|&c| self.factors[c].clone()).collect(),
            log_dets: order.iter().map(|&c| self.log_dets[c]).collect(),
        }
    }

    /// Most probable component of `row` and the row's log-likelihood under the mixture.
    pub fn most_probable(&self, row: ArrayView1<f64>) -> (usize, f64) {
        let d = row.len();
        let log_norm = d as f64 * (2.0 * std::f64::consts::PI).ln();
        let mut z = vec![0.0; d];
        let mut best = (0, f64::NEG_INFINITY);
        let mut per_component = Vec::with_capacity(self.factors.len());
        for (c, l) in self.factors.iter().enumerate() {
            // Solve L z = (x - mean) by forward substitution; |z|^2 is the Mahalanobis term.
            for i in 0..d {
                let mut s = row[i] - self.means[[c, i]];
                for j in 0..i {
                    s -= l[[i, j]] * z[j];
                }
                z[i] = s / l[[i, i]];
            }
            let mahalanobis: f64 = z.iter().map(|v| v * v).sum();
            let v = self.log_weights[c] - 0.5 * (log_norm + self.log_dets[c] + mahalanobis);
            if v > best.1 {
                best = (c, v);
            }
            per_component.push(v);
        }
        let sum: f64 = per_component.iter().map(|v| (v - best.1).exp()).sum();
        (best.0, best.1 + sum.ln())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array3, array};

    #[test]
    fn centroids_assign_to_the_nearest() {
        let model = SegmentModel::Centroids(array![[0.0, 0.0], [10.0, 0.0]]);
        assert_eq!(
            model.assign(array![[1.0, 1.0], [9.0, -1.0], [5.0, 0.0]].view()),
            vec![Some(0), Some(1), Some(0)]
        );
    }

    #[test]
    fn nearest_fitted_keeps_noise() {
        let model = SegmentModel::NearestFitted {
            points: array![[0.0], [5.0], [10.0]],
            labels: vec![Some(0), None, Some(1)],
        };
        assert_eq!(
            model.assign(array![[1.0], [4.0], [12.0]].view()),
            vec![Some(0), None, Some(1)]
        );
    }

    #[test]
    fn log_likelihood_of_a_single_standard_normal() {
        // One component N(0, I) in 2D: log p(x) = -ln(2 pi) - |x|^2 / 2.
        let cov = Array3::from_shape_fn((1, 2, 2), |(_, i, j)| if i == j { 1.0 } else { 0.0 });
        let mixture = MixtureComponents::new(array![1.0].view(), array![[0.0, 0.0]].view(), &cov)
            .expect("components");
        let (c, ll) = mixture.most_probable(array![1.0, 2.0].view());
        assert_eq!(c, 0);
        assert!((ll - (-(2.0 * std::f64::consts::PI).ln() - 2.5)).abs() < 1e-12);
    }
}
