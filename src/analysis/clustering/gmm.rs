//! Gaussian mixtures with full covariances, fitted by EM as scikit-learn's
//! `GaussianMixture(covariance_type="full", init_params="kmeans")` fits them, with k chosen
//! by BIC as scikit-learn defines it.
//!
//! Our own EM (it replaced linfa-clustering's, which spent half of a 50,000 x 64 fit in its
//! ten-restart k-means initialisation and scored rows one at a time). What we copy from
//! scikit-learn, so the same settings mean the same thing:
//!
//! * initialisation: one k-means run (k-means++ seeding, [`fit_kmeans`] with `n_init = 1`)
//!   gives hard responsibilities, from which the first weights, means and covariances are
//!   estimated;
//! * E-step: `ln w_c + ln N(x | m_c, S_c)` through the precision Cholesky factor
//!   `U_c = L_c^{-T}` (`|x U_c - m_c U_c|^2`, one matrix product per component and block of
//!   rows), responsibilities by log-sum-exp;
//! * M-step: `n_c = sum_i r_ic + 10 eps`, `m_c = sum_i r_ic x_i / n_c`,
//!   `S_c = sum_i r_ic (x_i - m_c)(x_i - m_c)^T / n_c + reg I`, weights `n_c / sum n`;
//! * convergence: the mean log-likelihood per row before an M-step (scikit-learn's lower
//!   bound) changed by less than `tolerance` since the previous iteration; at most
//!   `max_iter` iterations; labels from one more E-step with the final parameters.
//!
//! Differences: a restart that fails (a covariance that is not positive definite) is
//! skipped rather than raised while another restart succeeds, and the winning restart is
//! the one with the highest log-likelihood under its *final* parameters (scikit-learn
//! compares the lower bound of the last E-step).
//!
//! Speed and determinism: rows go in fixed blocks of
//! [`MIXTURE_BLOCK_ROWS`](super::model) (the E-step, in parallel) or fixed groups (the
//! covariance products, in parallel over component x group), each returning its own partial
//! sums, which are added in block order; no cut depends on the thread count, so the same
//! seed gives the same bits on 1 or 16 threads. A covariance product only gathers the rows
//! whose responsibility is not exactly zero: skipping an exact zero changes no bit, and on
//! well-separated data it skips most of the work.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, Array3, ArrayView2, ArrayViewMut2, Axis, s};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::kmeans::{KmeansParams, fit_kmeans};
use super::model::{MIXTURE_BLOCK_ROWS, MixtureComponents, SegmentModel};
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
    /// Convergence threshold on the change of the mean log-likelihood per customer
    /// (scikit-learn's `tol` on the lower bound).
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
    /// EM iterations of the winning restart.
    pub iterations: usize,
    /// Whether the winning restart met the tolerance within `max_iter` iterations.
    pub converged: bool,
    /// The components, in the partition's order, to assign other customers.
    pub model: SegmentModel,
}

/// Blocks one parallel E-step task takes at least.
const MIN_BLOCKS_PER_TASK: usize = 2;

/// Row groups of the covariance products: at most this many per component, so that the
/// partial `d x d` sums held at once stay small whatever n is.
const COVARIANCE_GROUPS: usize = 16;

/// Rows per covariance group at least (small inputs: fewer, fuller products).
const MIN_GROUP_ROWS: usize = 256;

/// Fits a `k`-component mixture: `params.n_init` restarts, the highest log-likelihood kept.
pub fn fit_gmm(
    x: ArrayView2<f64>,
    k: usize,
    params: &GmmParams,
    seed: u64,
) -> Result<GmmFit, ClusteringError> {
    if k == 0 {
        return Err(ClusteringError::NoSegmentsAsked);
    }
    let distinct = distinct_rows(x, k);
    if distinct < k {
        return Err(ClusteringError::TooFewDistinctRows { k, distinct });
    }
    let (n, d) = x.dim();
    let x = x.as_standard_layout();
    let mut best: Option<Em> = None;
    let mut last_error = String::from("no restart ran");
    for restart in 0..params.n_init.max(1) {
        match fit_once(x.view(), k, params, seed.wrapping_add(restart as u64)) {
            Ok(em) => {
                if best
                    .as_ref()
                    .is_none_or(|b| em.log_likelihood > b.log_likelihood)
                {
                    best = Some(em);
                }
            }
            Err(message) => last_error = message,
        }
    }
    let em = best.ok_or(ClusteringError::Gmm {
        k,
        message: last_error,
    })?;
    let n_params = (k * d + k * d * (d + 1) / 2 + k - 1) as f64;
    let bic = -2.0 * em.log_likelihood + n_params * (n as f64).ln();
    let (partition, order) = Partition::from_raw_with_order(em.labels.into_iter().map(Some));
    Ok(GmmFit {
        partition,
        log_likelihood: em.log_likelihood,
        bic,
        iterations: em.iterations,
        converged: em.converged,
        model: SegmentModel::Mixture(em.mixture.reordered(&order)),
    })
}

/// One restart's result.
struct Em {
    mixture: MixtureComponents,
    labels: Vec<usize>,
    log_likelihood: f64,
    iterations: usize,
    converged: bool,
}

/// One EM run from a k-means initialisation (scikit-learn's `fit_predict` for one init).
fn fit_once(x: ArrayView2<f64>, k: usize, params: &GmmParams, seed: u64) -> Result<Em, String> {
    let n = x.nrows();
    let init = fit_kmeans(
        x,
        k,
        &KmeansParams {
            n_init: 1,
            ..KmeansParams::default()
        },
        seed,
    )
    .map_err(|e| format!("k-means initialisation: {e}"))?;
    let mut resp = Array2::zeros((n, k));
    for (mut r, label) in resp.rows_mut().into_iter().zip(init.partition.labels()) {
        if let Some(label) = *label {
            r[label] = 1.0;
        }
    }
    let mut mixture = m_step(x, resp.view(), params.reg_covariance)?;
    let mut lower_bound = f64::NEG_INFINITY;
    let mut iterations = 0;
    let mut converged = false;
    while iterations < params.max_iter {
        iterations += 1;
        let previous = lower_bound;
        lower_bound = e_step(x, &mixture, resp.view_mut());
        if !lower_bound.is_finite() {
            return Err("log-likelihood is not finite".into());
        }
        mixture = m_step(x, resp.view(), params.reg_covariance)?;
        if (lower_bound - previous).abs() < params.tolerance {
            converged = true;
            break;
        }
    }
    let (labels, log_likelihood) = mixture.classify(x);
    if !log_likelihood.is_finite() {
        return Err("log-likelihood is not finite".into());
    }
    Ok(Em {
        mixture,
        labels,
        log_likelihood,
        iterations,
        converged,
    })
}

/// Writes the responsibilities of the current mixture into `resp` (`n x k`) and returns the
/// mean log-likelihood per row.
fn e_step(x: ArrayView2<f64>, mixture: &MixtureComponents, mut resp: ArrayViewMut2<f64>) -> f64 {
    let n = x.nrows();
    let blocks: Vec<(ArrayView2<f64>, ArrayViewMut2<f64>)> = x
        .axis_chunks_iter(Axis(0), MIXTURE_BLOCK_ROWS)
        .zip(resp.axis_chunks_iter_mut(Axis(0), MIXTURE_BLOCK_ROWS))
        .collect();
    let sums: Vec<f64> = blocks
        .into_par_iter()
        .with_min_len(MIN_BLOCKS_PER_TASK)
        .map_init(
            || Array2::zeros((0, 0)),
            |scratch, (rows, mut r)| {
                mixture.weighted_log_densities(rows, &mut r, scratch);
                let mut sum = 0.0;
                for mut row in r.rows_mut() {
                    let (_, log_norm) = super::model::argmax_and_log_sum_exp(row.view());
                    row.mapv_inplace(|v| (v - log_norm).exp());
                    sum += log_norm;
                }
                sum
            },
        )
        .collect();
    sums.into_iter().sum::<f64>() / n.max(1) as f64
}

/// Weights, means and covariances from responsibilities (`n x k`), ready for densities.
fn m_step(
    x: ArrayView2<f64>,
    resp: ArrayView2<f64>,
    reg_covariance: f64,
) -> Result<MixtureComponents, String> {
    let d = x.ncols();
    let k = resp.ncols();
    let mut nk = Array1::from_elem(k, 10.0 * f64::EPSILON);
    for r in resp.rows() {
        nk += &r;
    }
    let mut means = Array2::zeros((k, d));
    general_mat_mul(1.0, &resp.t(), &x, 0.0, &mut means);
    for (mut mean, &count) in means.rows_mut().into_iter().zip(&nk) {
        mean /= count;
    }
    let covariances = covariances(x, resp, means.view(), nk.view(), reg_covariance);
    let total: f64 = nk.sum();
    let weights = nk.mapv(|v| v / total);
    MixtureComponents::new(weights.view(), means.view(), &covariances)
}

/// `S_c = sum_i r_ic (x_i - m_c)(x_i - m_c)^T / n_c + reg I` for every component, as one
/// product `(R D)^T D` per component and group of rows (`D` the centred rows whose
/// responsibility is not zero, `R` their responsibilities), summed in group order.
fn covariances(
    x: ArrayView2<f64>,
    resp: ArrayView2<f64>,
    means: ArrayView2<f64>,
    nk: ndarray::ArrayView1<f64>,
    reg_covariance: f64,
) -> Array3<f64> {
    let (n, d) = x.dim();
    let k = resp.ncols();
    let group_rows = n.div_ceil(COVARIANCE_GROUPS).max(MIN_GROUP_ROWS);
    let groups = n.div_ceil(group_rows);
    let partials: Vec<Option<Array2<f64>>> = (0..k * groups)
        .into_par_iter()
        .map(|task| {
            let (c, g) = (task / groups, task % groups);
            let range = g * group_rows..((g + 1) * group_rows).min(n);
            let mean = means.row(c);
            let weights = resp.slice(s![range.clone(), c]);
            let active = weights.iter().filter(|&&r| r != 0.0).count();
            if active == 0 {
                return None;
            }
            let mut centred = Array2::zeros((active, d));
            let mut weighted = Array2::zeros((active, d));
            let mut rows = centred.rows_mut().into_iter().zip(weighted.rows_mut());
            for (i, &r) in range.zip(weights.iter()) {
                if r == 0.0 {
                    continue;
                }
                if let Some((mut out, mut out_weighted)) = rows.next() {
                    for ((o, w), (&v, &m)) in out
                        .iter_mut()
                        .zip(out_weighted.iter_mut())
                        .zip(x.row(i).iter().zip(mean.iter()))
                    {
                        *o = v - m;
                        *w = r * (v - m);
                    }
                }
            }
            let mut product = Array2::zeros((d, d));
            general_mat_mul(1.0, &weighted.t(), &centred, 0.0, &mut product);
            Some(product)
        })
        .collect();
    let mut covariances = Array3::zeros((k, d, d));
    for (task, partial) in partials.into_iter().enumerate() {
        if let Some(partial) = partial {
            let mut cov = covariances.index_axis_mut(Axis(0), task / groups);
            cov += &partial;
        }
    }
    for (mut cov, &count) in covariances.outer_iter_mut().zip(&nk) {
        cov /= count;
        for i in 0..d {
            cov[[i, i]] += reg_covariance;
        }
    }
    covariances
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bic_prefers_the_true_number_of_components() {
        // 60 points per cloud: with 30, one sample of this seed has a 4-component optimum
        // (a 3-point component) whose BIC scikit-learn also finds lower (767.436 vs 767.700).
        let x = crate::analysis::test_blobs::gaussian_blobs(
            &[&[0.0, 0.0], &[8.0, 0.0], &[0.0, 8.0]],
            60,
            1.0,
            5,
        );
        let params = GmmParams::default();
        let bics: Vec<f64> = (1..=5)
            .map(|k| fit_gmm(x.view(), k, &params, 1).expect("gmm").bic)
            .collect();
        let best = bics
            .iter()
            .enumerate()
            .fold(0, |b, (i, v)| if *v < bics[b] { i } else { b })
            + 1;
        assert_eq!(best, 3, "BIC per k: {bics:?}");
        let fit = fit_gmm(x.view(), 3, &params, 1).expect("gmm");
        assert_eq!(fit.partition.sizes(), vec![60, 60, 60]);
    }

    /// `S_c = sum_i r_ic (x_i - m_c)(x_i - m_c)^T / n_c + reg I` row by row, the textbook way.
    fn plain_covariance(
        x: ArrayView2<f64>,
        r: ndarray::ArrayView1<f64>,
        mean: ndarray::ArrayView1<f64>,
        nk: f64,
        reg: f64,
    ) -> Array2<f64> {
        let d = x.ncols();
        let mut cov = Array2::<f64>::zeros((d, d));
        for (row, &w) in x.rows().into_iter().zip(r) {
            let diff = &row - &mean;
            for a in 0..d {
                for b in 0..d {
                    cov[[a, b]] += w * diff[a] * diff[b];
                }
            }
        }
        cov /= nk;
        for a in 0..d {
            cov[[a, a]] += reg;
        }
        cov
    }

    #[test]
    fn grouped_covariance_products_equal_the_row_by_row_formula() {
        // 700 rows: three groups of 256 rows (the last one short); responsibilities with
        // exact zeros (skipped rows) and fractions.
        let x = crate::analysis::test_blobs::gaussian_blobs(
            &[&[0.0, 1.0, 2.0], &[5.0, -1.0, 0.5]],
            350,
            1.5,
            3,
        );
        let n = x.nrows();
        let resp = Array2::from_shape_fn((n, 2), |(i, c)| match (i % 5, c) {
            (0, 0) => 0.0,
            (0, 1) => 1.0,
            (1, 0) => 1.0,
            (1, 1) => 0.0,
            (_, 0) => 0.25,
            _ => 0.75,
        });
        let nk = resp.sum_axis(Axis(0));
        let means =
            Array2::from_shape_fn((2, 3), |(c, j)| x.column(j).dot(&resp.column(c)) / nk[c]);
        let got = covariances(x.view(), resp.view(), means.view(), nk.view(), 1e-6);
        for c in 0..2 {
            let want = plain_covariance(x.view(), resp.column(c), means.row(c), nk[c], 1e-6);
            for (g, w) in got.index_axis(Axis(0), c).iter().zip(&want) {
                assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "{g} vs {w}");
            }
        }
    }

    #[test]
    fn em_recovers_the_generating_mixture() {
        // Two well-separated 2-D clouds with different spreads: the fitted weights, means
        // and total log-likelihood must be those of the clouds.
        let x =
            crate::analysis::test_blobs::gaussian_blobs(&[&[0.0, 0.0], &[10.0, 10.0]], 400, 1.0, 9);
        let params = GmmParams {
            n_init: 1,
            ..GmmParams::default()
        };
        let fit = fit_gmm(x.view(), 2, &params, 4).expect("gmm");
        assert!(fit.converged, "{} iterations", fit.iterations);
        assert_eq!(fit.partition.sizes(), vec![400, 400]);
        let SegmentModel::Mixture(mixture) = &fit.model else {
            panic!("not a mixture: {:?}", fit.model);
        };
        for w in mixture.weights() {
            assert!((w - 0.5).abs() < 1e-9, "weight {w}");
        }
        // Each cloud's sample mean, recomputed from the partition.
        for (c, mean) in mixture.means().rows().into_iter().enumerate() {
            let members: Vec<usize> = (0..x.nrows())
                .filter(|&i| fit.partition.labels()[i] == Some(c))
                .collect();
            let sample_mean = x
                .select(Axis(0), &members)
                .mean_axis(Axis(0))
                .expect("members");
            for (a, b) in mean.iter().zip(&sample_mean) {
                assert!((a - b).abs() < 1e-6, "mean {a} vs {b}");
            }
        }
        // The log-likelihood equals the sum of the rows' log densities under the model.
        let by_rows: f64 = x
            .rows()
            .into_iter()
            .map(|row| mixture.most_probable(row).1)
            .sum();
        assert!((fit.log_likelihood - by_rows).abs() < 1e-8 * by_rows.abs());
    }

    #[test]
    fn same_bits_on_one_or_three_threads() {
        // 2,000 rows: 8 E-step blocks and 8 covariance groups, enough for several tasks.
        let x = crate::analysis::test_blobs::gaussian_blobs(
            &[
                &[0.0, 0.0, 0.0],
                &[3.0, 0.0, 1.0],
                &[0.0, 3.0, -1.0],
                &[2.0, 2.0, 2.0],
            ],
            500,
            1.2,
            21,
        );
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool")
                .install(|| fit_gmm(x.view(), 4, &GmmParams::default(), 8).expect("gmm"))
        };
        let (one, three) = (run(1), run(3));
        assert_eq!(one.partition, three.partition);
        assert_eq!(one.log_likelihood.to_bits(), three.log_likelihood.to_bits());
        assert_eq!(one.iterations, three.iterations);
    }
}
