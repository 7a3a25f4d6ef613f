//! Gaussian mixtures (full covariances) through linfa-clustering's EM, with k chosen by
//! BIC as scikit-learn defines it.
//!
//! linfa's `n_runs` continues EM from the previous run's state instead of restarting, so we
//! restart ourselves with different seeds and keep the highest log-likelihood. Log-likelihood,
//! BIC and the final labels are computed here from the fitted weights, means and
//! covariances (Cholesky factors), which also keeps linfa's internal `unwrap`s off the
//! prediction path; the EM fit itself runs inside `catch_unwind` so that a degenerate
//! component becomes an error for that restart, never an abort.

use linfa::DatasetBase;
use linfa::traits::Fit;
use linfa_clustering::{GaussianMixtureModel, GmmInitMethod};
use linfa_linalg::cholesky::CholeskyInplace;
use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;
use serde::{Deserialize, Serialize};

use super::{ClusteringError, distinct_rows};
use crate::domain::Partition;

/// Gaussian-mixture settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GmmParams {
    /// EM restarts with different seeds; the highest log-likelihood wins.
    pub n_init: usize,
    /// EM iterations per restart at most.
    pub max_iter: usize,
    /// Convergence threshold on the lower-bound change.
    pub tolerance: f64,
    /// Added to covariance diagonals so components never become singular.
    pub reg_covariance: f64,
}

impl Default for GmmParams {
    fn default() -> Self {
        GmmParams {
            n_init: 3,
            max_iter: 200,
            tolerance: 1e-3,
            reg_covariance: 1e-6,
        }
    }
}

/// A fitted mixture, summarised.
#[derive(Debug, Clone)]
pub struct GmmFit {
    /// Most probable component of each customer (renumbered by size).
    pub partition: Partition,
    /// Total log-likelihood of the data.
    pub log_likelihood: f64,
    /// Bayesian information criterion: `-2 log L + p ln n` (lower is better).
    pub bic: f64,
}

/// Fits a `k`-component mixture.
pub fn fit_gmm(
    x: ArrayView2<f64>,
    k: usize,
    params: &GmmParams,
    seed: u64,
) -> Result<GmmFit, ClusteringError> {
    let distinct = distinct_rows(x, k);
    if distinct < k {
        return Err(ClusteringError::TooFewDistinctRows { k, distinct });
    }
    let (n, d) = x.dim();
    let dataset = DatasetBase::from(x.to_owned());
    let mut best: Option<(f64, Vec<usize>)> = None;
    let mut last_error = String::from("no restart ran");
    for restart in 0..params.n_init.max(1) {
        let rng = Xoshiro256Plus::seed_from_u64(seed.wrapping_add(restart as u64));
        let fitted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            GaussianMixtureModel::params_with_rng(k, rng)
                .n_runs(1)
                .max_n_iterations(params.max_iter as u64)
                .tolerance(params.tolerance)
                .reg_covariance(params.reg_covariance)
                .init_method(GmmInitMethod::KMeans)
                .fit(&dataset)
        }));
        let model = match fitted {
            Ok(Ok(model)) => model,
            Ok(Err(e)) => {
                last_error = e.to_string();
                continue;
            }
            Err(_) => {
                last_error = "the mixture library panicked (degenerate component)".into();
                continue;
            }
        };
        match score(
            x,
            model.weights().view(),
            model.means().view(),
            model.covariances(),
        ) {
            Ok((log_likelihood, labels)) => {
                if best.as_ref().is_none_or(|(b, _)| log_likelihood > *b) {
                    best = Some((log_likelihood, labels));
                }
            }
            Err(message) => last_error = message,
        }
    }
    let (log_likelihood, labels) = best.ok_or(ClusteringError::Gmm {
        k,
        message: last_error,
    })?;
    let n_params = (k * d + k * d * (d + 1) / 2 + k - 1) as f64;
    let bic = -2.0 * log_likelihood + n_params * (n as f64).ln();
    Ok(GmmFit {
        partition: Partition::from_raw(labels.into_iter().map(Some)),
        log_likelihood,
        bic,
    })
}

/// Total log-likelihood and the most probable component of each row.
fn score(
    x: ArrayView2<f64>,
    weights: ArrayView1<f64>,
    means: ArrayView2<f64>,
    covariances: &ndarray::Array3<f64>,
) -> Result<(f64, Vec<usize>), String> {
    let d = x.ncols();
    let mut factors: Vec<(Array2<f64>, f64)> = Vec::with_capacity(weights.len());
    for cov in covariances.axis_iter(Axis(0)) {
        let l = cov
            .to_owned()
            .cholesky_into()
            .map_err(|e| format!("covariance not positive definite: {e}"))?;
        let log_det: f64 = 2.0 * l.diag().iter().map(|v| v.ln()).sum::<f64>();
        factors.push((l, log_det));
    }
    let log_norm = d as f64 * (2.0 * std::f64::consts::PI).ln();
    let mut total = 0.0;
    let mut labels = Vec::with_capacity(x.nrows());
    let mut z = vec![0.0; d];
    let mut per_component = vec![0.0; weights.len()];
    for row in x.rows() {
        for (c, (l, log_det)) in factors.iter().enumerate() {
            // Solve L z = (x - mean) by forward substitution; |z|^2 is the Mahalanobis term.
            for i in 0..d {
                let mut s = row[i] - means[[c, i]];
                for j in 0..i {
                    s -= l[[i, j]] * z[j];
                }
                z[i] = s / l[[i, i]];
            }
            let mahalanobis: f64 = z.iter().map(|v| v * v).sum();
            per_component[c] = weights[c].ln() - 0.5 * (log_norm + log_det + mahalanobis);
        }
        let (arg, max) = per_component
            .iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |(ba, bm), (i, &v)| {
                if v > bm { (i, v) } else { (ba, bm) }
            });
        let sum: f64 = per_component.iter().map(|v| (v - max).exp()).sum();
        total += max + sum.ln();
        labels.push(arg);
    }
    if !total.is_finite() {
        return Err("log-likelihood is not finite".into());
    }
    Ok((total, labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array3, array};

    #[test]
    fn log_likelihood_of_a_single_standard_normal() {
        // One component N(0, I) in 2D: log p(x) = -ln(2 pi) - |x|^2 / 2.
        let x = array![[0.0, 0.0], [1.0, 2.0]];
        let cov = Array3::from_shape_fn((1, 2, 2), |(_, i, j)| if i == j { 1.0 } else { 0.0 });
        let (ll, labels) = score(
            x.view(),
            array![1.0].view(),
            array![[0.0, 0.0]].view(),
            &cov,
        )
        .expect("score");
        let expected = -2.0 * (2.0 * std::f64::consts::PI).ln() - 2.5;
        assert!((ll - expected).abs() < 1e-12);
        assert_eq!(labels, vec![0, 0]);
    }

    #[test]
    fn bic_prefers_the_true_number_of_components() {
        let x = crate::analysis::test_blobs::gaussian_blobs(&[&[0.0, 0.0], &[8.0, 0.0], &[0.0, 8.0]], 30, 1.0, 5);
        let params = GmmParams::default();
        let bics: Vec<f64> = (1..=4)
            .map(|k| fit_gmm(x.view(), k, &params, 1).expect("gmm").bic)
            .collect();
        let best = bics
            .iter()
            .enumerate()
            .fold(0, |b, (i, v)| if *v < bics[b] { i } else { b })
            + 1;
        assert_eq!(best, 3, "BIC per k: {bics:?}");
        let fit = fit_gmm(x.view(), 3, &params, 1).expect("gmm");
        assert_eq!(fit.partition.sizes(), vec![30, 30, 30]);
    }
}
