//! Fitted segment models that can place customers they were not fitted on.
//!
//! Large runs fit segments on a sample and assign everyone else with the model; weekly
//! tracking (later) assigns new weeks to existing segments the same way. Segment indices of
//! a model follow its [`Partition`](crate::domain::Partition)'s order. Assignment runs in
//! parallel over rows (mixtures: over fixed blocks of rows), each row independently, so
//! results do not depend on threads.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut2, Axis};
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
        let nearest_of = |points: &Array2<f64>| -> Vec<usize> {
            let rows: Vec<ArrayView1<f64>> = x.axis_iter(Axis(0)).collect();
            rows.par_iter()
                .map(|row| nearest(points.view(), *row))
                .collect()
        };
        match self {
            SegmentModel::Centroids(centroids) => {
                nearest_of(centroids).into_iter().map(Some).collect()
            }
            // The same blocks and arithmetic as the fit's final labels, so a model assigns
            // its own customers exactly as it labelled them.
            SegmentModel::Mixture(mixture) => mixture.classify(x).0.into_iter().map(Some).collect(),
            SegmentModel::NearestFitted { points, labels } => {
                nearest_of(points).into_iter().map(|i| labels[i]).collect()
            }
        }
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

/// Rows per block when mixture densities are evaluated. A block's Mahalanobis terms for a
/// component come from one matrix product (`rows x d` times `d x d`); blocks are cut from
/// row 0 whatever the thread count, and each row's value does not depend on its block, so
/// fitting and assigning give the same bits on any number of threads.
pub(crate) const MIXTURE_BLOCK_ROWS: usize = 256;

/// Blocks one parallel task takes at least (digits: 8 blocks, 2 tasks).
const MIN_BLOCKS_PER_TASK: usize = 2;

/// Mixture components ready for density evaluation, as scikit-learn keeps them: log weights,
/// means and the Cholesky factors of the precisions.
///
/// For a covariance `S = L L^T` (`L` lower triangular) the precision factor is
/// `U = L^{-T}` (upper triangular), so `(x - m)^T S^{-1} (x - m) = |x U - m U|^2`: a block of
/// rows needs one matrix product per component, which matrixmultiply's kernels run far
/// faster than row-by-row triangular solves.
#[derive(Debug, Clone)]
pub struct MixtureComponents {
    log_weights: Vec<f64>,
    means: Array2<f64>,
    /// `U_c = L_c^{-T}`, one `d x d` upper-triangular matrix per component.
    precision_factors: Vec<Array2<f64>>,
    /// `m_c U_c`, row `c`: subtracted after the product instead of centring every row.
    projected_means: Array2<f64>,
    /// `ln w_c + ln det U_c - (d / 2) ln(2 pi)`: a component's log density but the
    /// Mahalanobis term.
    log_constants: Vec<f64>,
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
        use linfa_linalg::triangular::{SolveTriangularInplace, UPLO};
        let (k, d) = means.dim();
        let log_norm = 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln();
        let mut precision_factors = Vec::with_capacity(k);
        let mut log_constants = Vec::with_capacity(k);
        let mut projected_means = Array2::zeros((k, d));
        for (c, cov) in covariances.axis_iter(Axis(0)).enumerate() {
            let l = cov
                .to_owned()
                .cholesky_into()
                .map_err(|e| format!("covariance {c} not positive definite: {e}"))?;
            let l_inv = l
                .solve_triangular_into(Array2::eye(d), UPLO::Lower)
                .map_err(|e| format!("covariance {c}: {e}"))?;
            let u = l_inv.reversed_axes().as_standard_layout().into_owned();
            let log_det_u: f64 = u.diag().iter().map(|v| v.ln()).sum();
            log_constants.push(weights[c].ln() + log_det_u - log_norm);
            projected_means.row_mut(c).assign(&means.row(c).dot(&u));
            precision_factors.push(u);
        }
        Ok(MixtureComponents {
            log_weights: weights.iter().map(|w| w.ln()).collect(),
            means: means.to_owned(),
            precision_factors,
            projected_means,
            log_constants,
        })
    }

    /// Number of components.
    pub fn k(&self) -> usize {
        self.log_weights.len()
    }

    /// The means, one row per component.
    pub fn means(&self) -> ArrayView2<'_, f64> {
        self.means.view()
    }

    /// The mixing weights.
    pub fn weights(&self) -> Vec<f64> {
        self.log_weights.iter().map(|w| w.exp()).collect()
    }

    /// The same components in another order: `order[s]` is the old index of new component `s`.
    pub fn reordered(&self, order: &[usize]) -> Self {
        MixtureComponents {
            log_weights: order.iter().map(|&c| self.log_weights[c]).collect(),
            means: self.means.select(Axis(0), order),
            precision_factors: order
                .iter()
                .map(|&c| self.precision_factors[c].clone())
                .collect(),
            projected_means: self.projected_means.select(Axis(0), order),
            log_constants: order.iter().map(|&c| self.log_constants[c]).collect(),
        }
    }

    /// `ln w_c + ln N(x_i | m_c, S_c)` for every row `i` of a block and component `c`,
    /// written into `out` (`rows x k`); `scratch` holds one component's products (at least
    /// `rows x d`, reused across calls so that no block allocates).
    pub(crate) fn weighted_log_densities(
        &self,
        rows: ArrayView2<f64>,
        out: &mut ArrayViewMut2<f64>,
        scratch: &mut Array2<f64>,
    ) {
        let m = rows.nrows();
        let d = rows.ncols();
        if scratch.nrows() < m || scratch.ncols() != d {
            *scratch = Array2::zeros((m, d));
        }
        let mut y = scratch.slice_mut(ndarray::s![..m, ..]);
        for (c, u) in self.precision_factors.iter().enumerate() {
            general_mat_mul(1.0, &rows, u, 0.0, &mut y);
            let shift = self.projected_means.row(c);
            let constant = self.log_constants[c];
            for (yi, o) in y.rows().into_iter().zip(out.column_mut(c)) {
                let mahalanobis: f64 = yi
                    .iter()
                    .zip(shift.iter())
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum();
                *o = constant - 0.5 * mahalanobis;
            }
        }
    }

    /// Most probable component of every row of `x` and the log-likelihood of the rows under
    /// the mixture, summed in block order (the same bits on any number of threads).
    pub fn classify(&self, x: ArrayView2<f64>) -> (Vec<usize>, f64) {
        let k = self.k();
        let blocks: Vec<(Vec<usize>, f64)> = x
            .axis_chunks_iter(Axis(0), MIXTURE_BLOCK_ROWS)
            .into_par_iter()
            .with_min_len(MIN_BLOCKS_PER_TASK)
            .map_init(
                || {
                    (
                        Array2::zeros((0, 0)),
                        Array2::zeros((MIXTURE_BLOCK_ROWS, k)),
                    )
                },
                |(scratch, densities), rows| {
                    let mut out = densities.slice_mut(ndarray::s![..rows.nrows(), ..]);
                    self.weighted_log_densities(rows, &mut out, scratch);
                    let mut labels = Vec::with_capacity(rows.nrows());
                    let mut total = 0.0;
                    for row in out.rows() {
                        let (best, log_sum) = argmax_and_log_sum_exp(row);
                        labels.push(best);
                        total += log_sum;
                    }
                    (labels, total)
                },
            )
            .collect();
        let mut labels = Vec::with_capacity(x.nrows());
        let mut total = 0.0;
        for (block_labels, block_total) in blocks {
            labels.extend(block_labels);
            total += block_total;
        }
        (labels, total)
    }

    /// Most probable component of `row` and the row's log-likelihood under the mixture.
    pub fn most_probable(&self, row: ArrayView1<f64>) -> (usize, f64) {
        let mut out = Array2::zeros((1, self.k()));
        let mut scratch = Array2::zeros((1, row.len()));
        self.weighted_log_densities(row.insert_axis(Axis(0)), &mut out.view_mut(), &mut scratch);
        argmax_and_log_sum_exp(out.row(0))
    }
}

/// The index of the largest value (the first of equals) and `ln sum_c exp(v_c)`, computed
/// around the maximum so that nothing overflows.
pub(crate) fn argmax_and_log_sum_exp(values: ArrayView1<f64>) -> (usize, f64) {
    let mut best = (0, f64::NEG_INFINITY);
    for (c, &v) in values.iter().enumerate() {
        if v > best.1 {
            best = (c, v);
        }
    }
    if best.1 == f64::NEG_INFINITY {
        return (best.0, best.1);
    }
    let sum: f64 = values.iter().map(|v| (v - best.1).exp()).sum();
    (best.0, best.1 + sum.ln())
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

    /// `ln w_c + ln N(x | m_c, S_c)` the textbook way: forward substitution with the
    /// Cholesky factor of the covariance, row by row.
    fn plain_log_density(
        row: ArrayView1<f64>,
        weight: f64,
        mean: ArrayView1<f64>,
        cov: ArrayView2<f64>,
    ) -> f64 {
        use linfa_linalg::cholesky::CholeskyInplace;
        let d = row.len();
        let l = cov.to_owned().cholesky_into().expect("positive definite");
        let mut z = vec![0.0; d];
        for i in 0..d {
            let mut s = row[i] - mean[i];
            for j in 0..i {
                s -= l[[i, j]] * z[j];
            }
            z[i] = s / l[[i, i]];
        }
        let mahalanobis: f64 = z.iter().map(|v| v * v).sum();
        let log_det: f64 = 2.0 * l.diag().iter().map(|v| v.ln()).sum::<f64>();
        weight.ln() - 0.5 * (d as f64 * (2.0 * std::f64::consts::PI).ln() + log_det + mahalanobis)
    }

    #[test]
    fn blockwise_densities_equal_the_row_by_row_formula() {
        // 600 rows in 4 dimensions: blocks of 256, 256 and 88 rows; correlated covariances.
        let d = 4;
        let covs = Array3::from_shape_fn((2, d, d), |(c, i, j)| {
            let base = if i == j {
                1.0 + i as f64 + c as f64
            } else {
                0.0
            };
            base + 0.3 * (1.0 + c as f64) / (1.0 + (i as f64 - j as f64).abs())
        });
        let means = array![[0.5, -1.0, 2.0, 0.0], [3.0, 3.0, -2.0, 1.0]];
        let weights = array![0.3, 0.7];
        let mixture = MixtureComponents::new(weights.view(), means.view(), &covs).expect("pd");
        let x = Array2::from_shape_fn((600, d), |(i, j)| {
            ((i * 7 + j * 13) % 23) as f64 * 0.37 - 4.0 + (i as f64 * 0.01).sin()
        });
        let mut out = Array2::zeros((600, 2));
        let mut scratch = Array2::zeros((0, 0));
        for (rows, mut block) in x
            .axis_chunks_iter(Axis(0), MIXTURE_BLOCK_ROWS)
            .zip(out.axis_chunks_iter_mut(Axis(0), MIXTURE_BLOCK_ROWS))
        {
            mixture.weighted_log_densities(rows, &mut block, &mut scratch);
        }
        let (labels, total) = mixture.classify(x.view());
        let mut want_total = 0.0;
        for (i, row) in x.rows().into_iter().enumerate() {
            let want: Vec<f64> = (0..2)
                .map(|c| {
                    plain_log_density(row, weights[c], means.row(c), covs.index_axis(Axis(0), c))
                })
                .collect();
            for c in 0..2 {
                assert!(
                    (out[[i, c]] - want[c]).abs() <= 1e-10 * want[c].abs().max(1.0),
                    "row {i} component {c}: {} vs {}",
                    out[[i, c]],
                    want[c]
                );
            }
            let best = if want[1] > want[0] { 1 } else { 0 };
            assert_eq!(labels[i], best, "row {i}");
            let m = want[best];
            want_total += m + want.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        }
        assert!((total - want_total).abs() <= 1e-10 * want_total.abs());
    }

    #[test]
    fn a_mixture_assigns_rows_as_its_blocks_classify_them() {
        let cov = Array3::from_shape_fn((2, 2, 2), |(_, i, j)| if i == j { 1.0 } else { 0.0 });
        let mixture = MixtureComponents::new(
            array![0.5, 0.5].view(),
            array![[0.0, 0.0], [4.0, 0.0]].view(),
            &cov,
        )
        .expect("components");
        let model = SegmentModel::Mixture(mixture);
        assert_eq!(
            model.assign(array![[1.0, 0.0], [3.0, 1.0], [-2.0, 5.0]].view()),
            vec![Some(0), Some(1), Some(0)]
        );
    }
}
