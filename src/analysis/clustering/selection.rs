//! Choosing k: every k in a range is fitted and scored, every candidate's scores are kept,
//! and a stated rule picks one, so a reader can see why k is what it is and how close the
//! runner-up was.
//!
//! Rules: for k-means, the highest mean silhouette, where candidates within
//! [`SILHOUETTE_TIE`] of the best count as tied and the smallest tied k wins (fewer segments
//! are easier to act on and the difference is within noise); for Gaussian mixtures, the
//! lowest BIC. Silhouettes of all candidates come from one pass over the pairwise distances.

use ndarray::ArrayView2;
use serde::Serialize;

use super::{ClusterSpec, ClusteringError, Fitted, distinct_rows, gmm, kmeans};
use crate::analysis::progress::Progress;
use crate::analysis::validity::{calinski_harabasz_score, davies_bouldin_score, silhouette_scores};
use crate::domain::{Method, Partition};

/// Silhouette differences below this are treated as ties when choosing k.
pub const SILHOUETTE_TIE: f64 = 0.01;

/// One k that was tried, with its scores.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KCandidate {
    /// Number of segments.
    pub k: usize,
    /// Mean silhouette over all customers (higher is better).
    pub silhouette: f64,
    /// Calinski–Harabasz index (higher is better).
    pub calinski_harabasz: f64,
    /// Davies–Bouldin index (lower is better).
    pub davies_bouldin: f64,
    /// k-means inertia (sum of squared distances to centroids), for k-means.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inertia: Option<f64>,
    /// Bayesian information criterion, for Gaussian mixtures (lower is better).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bic: Option<f64>,
}

/// How k was chosen.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KSelection {
    /// Every k tried, in increasing order.
    pub candidates: Vec<KCandidate>,
    /// The k chosen.
    pub chosen: usize,
    /// The rule, in words.
    pub rule: String,
}

/// Fits every k in `min..=max` (clipped to what the data allows) and picks one.
pub(super) fn choose_k(
    x: ArrayView2<f64>,
    spec: &ClusterSpec,
    min: usize,
    max: usize,
    seed: u64,
    progress: &dyn Progress,
) -> Result<(Fitted, KSelection), ClusteringError> {
    let n = x.nrows();
    let max = max.min(n.saturating_sub(1)).min(distinct_rows(x, max));
    if max < min.max(2) {
        return Err(ClusteringError::TooFewDistinctRows {
            k: min.max(2),
            distinct: max,
        });
    }
    let ks: Vec<usize> = (min.max(2)..=max).collect();
    progress.start("choosing k", ks.len() as u64 + 1);
    let mut fits: Vec<(usize, Fitted, Option<f64>, Option<f64>)> = Vec::with_capacity(ks.len());
    for &k in &ks {
        match spec.method {
            Method::Gmm => {
                let fit = gmm::fit_gmm(x, k, &spec.gmm, seed)?;
                fits.push((
                    k,
                    Fitted {
                        partition: fit.partition,
                        model: fit.model,
                    },
                    None,
                    Some(fit.bic),
                ));
            }
            _ => {
                let fit = kmeans::fit_kmeans(x, k, &spec.kmeans, seed)?;
                fits.push((
                    k,
                    Fitted {
                        partition: fit.partition,
                        model: fit.model,
                    },
                    Some(fit.inertia),
                    None,
                ));
            }
        }
        progress.advance(1);
    }
    let labelings: Vec<Vec<usize>> = fits
        .iter()
        .map(|(_, f, _, _)| dense_labels(&f.partition))
        .collect();
    let refs: Vec<&[usize]> = labelings.iter().map(Vec::as_slice).collect();
    let silhouettes = silhouette_scores(x, &refs)?;
    let mut candidates = Vec::with_capacity(fits.len());
    for ((k, _, inertia, bic), (labels, silhouette)) in
        fits.iter().zip(labelings.iter().zip(silhouettes))
    {
        candidates.push(KCandidate {
            k: *k,
            silhouette,
            calinski_harabasz: calinski_harabasz_score(x, labels)?,
            davies_bouldin: davies_bouldin_score(x, labels)?,
            inertia: *inertia,
            bic: *bic,
        });
    }
    progress.advance(1);
    progress.finish();
    let (chosen_at, rule) = match spec.method {
        Method::Gmm => (
            argmin(candidates.iter().map(|c| c.bic.unwrap_or(f64::INFINITY))),
            format!("lowest BIC among k = {}..={}", ks[0], max),
        ),
        _ => {
            let best = candidates
                .iter()
                .map(|c| c.silhouette)
                .fold(f64::NEG_INFINITY, f64::max);
            let at = candidates
                .iter()
                .position(|c| c.silhouette >= best - SILHOUETTE_TIE)
                .unwrap_or(0);
            (
                at,
                format!(
                    "highest mean silhouette among k = {}..={}; k within {SILHOUETTE_TIE} of the best count as tied and the smallest tied k wins",
                    ks[0], max
                ),
            )
        }
    };
    let chosen = candidates[chosen_at].k;
    let partition = fits.swap_remove(chosen_at).1;
    Ok((
        partition,
        KSelection {
            candidates,
            chosen,
            rule,
        },
    ))
}

/// Labels of a partition without noise (k-means and mixtures never produce noise).
fn dense_labels(p: &Partition) -> Vec<usize> {
    p.labels().iter().map(|l| l.unwrap_or(p.k())).collect()
}

fn argmin(values: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::INFINITY);
    for (i, v) in values.enumerate() {
        if v < best.1 {
            best = (i, v);
        }
    }
    best.0
}
