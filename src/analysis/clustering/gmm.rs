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
use ndarray::ArrayView2;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;
use serde::{Deserialize, Serialize};

use super::model::{MixtureComponents, SegmentModel};
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
    /// The components, in the partition's order, to assign other customers.
    pub model: SegmentModel,
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
    let mut best: Option<(f64, Vec<usize>, MixtureComponents)> = None;
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
        let scored = MixtureComponents::new(
            model.weights().view(),
            model.means().view(),
            model.covariances(),
        )
        .and_then(|mixture| score(x, &mixture).map(|(ll, labels)| (ll, labels, mixture)));
        match scored {
            Ok((log_likelihood, labels, mixture)) => {
                if best.as_ref().is_none_or(|(b, _, _)| log_likelihood > *b) {
                    best = Some((log_likelihood, labels, mixture));
                }
            }
            Err(message) => last_error = message,
        }
    }
    let (log_likelihood, labels, mixture) = best.ok_or(ClusteringError::Gmm {
        k,
        message: last_error,
    })?;
    let n_params = (k * d + k * d * (d + 1) / 2 + k - 1) as f64;
    let bic = -2.0 * log_likelihood + n_params * (n as f64).ln();
    let (partition, order) = Partition::from_raw_with_order(labels.into_iter().map(Some));
    Ok(GmmFit {
        partition,
        log_likelihood,
        bic,
        model: SegmentModel::Mixture(mixture.reordered(&order)),
    })
}

/// Total log-likelihood and the most probable component of each row.
fn score(x: ArrayView2<f64>, mixture: &MixtureComponents) -> Result<(f64, Vec<usize>), String> {
    let mut total = 0.0;
    let mut labels = Vec::with_capacity(x.nrows());
    for row in x.rows() {
        let (component, log_likelihood) = mixture.most_probable(row);
        total += log_likelihood;
        labels.push(component);
    }
    if !total.is_finite() {
        return Err("log-likelihood is not finite".into());
    }
    Ok((total, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bic_prefers_the_true_number_of_components() {
        let x = crate::analysis::test_blobs::gaussian_blobs(
            &[&[0.0, 0.0], &[8.0, 0.0], &[0.0, 8.0]],
            30,
            1.0,
            5,
        );
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
