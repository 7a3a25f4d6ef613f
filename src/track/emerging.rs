//! Emerging micro-segments: a dense group of customers that the fitted segments describe
//! poorly, browsing something the others do not, and new this week.
//!
//! The procedure, per week (after the first):
//! 1. Candidates: customers in a segment, who browsed, with a fit distance above the
//!    `track.emerging_quantile` quantile of the fit weeks' fit distances.
//! 2. Each candidate is described by what they browse: their events per category family
//!    (first level of the category path, families the fitted embedder never saw included),
//!    as an L2-normalised vector. HDBSCAN (the crate's own, `min_cluster_size` the larger of
//!    `track.emerging_min_size` and `track.emerging_min_candidate_share` of the candidates)
//!    finds dense groups among them.
//! 3. A group's over-indexed tokens are the families whose share of the group's events is at
//!    least `track.emerging_min_lift` times their share among the week's *other* browsers
//!    ("what it browses that the others do not"); its top token is the over-indexed family
//!    with the largest share in the group. A group of customers who took up a family the rest
//!    browse too (customers moving between existing segments) is a migration, not a new
//!    segment, and fails this.
//! 4. The top token must have been rare when the segments were fitted: its share of all
//!    browsing in the fit weeks at most `track.emerging_max_fit_share`. Poorly-assigned
//!    customers are picked for being unusual *this* week, so a dense group of them that
//!    browses an established family (the few who browsed only furniture this week) is a
//!    selection artefact that reappears in week after week; what makes a segment emerging is
//!    an interest the fitted segments never saw. A new group built only from families that
//!    were already common shows as migration or drift instead.
//! 5. Two checks keep noise and standing niches out:
//!    - novelty against the same customers' earlier weeks: the members' mean share of the top
//!      token must exceed both their previous week's and their fit weeks' by at least
//!      `track.emerging_min_novelty`. Members were picked for fitting poorly *this* week, so
//!      their previous week alone would overstate novelty (regression to the mean); a group
//!      that browsed the same before is a standing niche, not emerging; and the previous
//!      week stops the same group alerting every week;
//!    - significance against random groups: the members' mean share of the top token is
//!      compared with `track.emerging_permutations` random groups of the same size drawn
//!      (seeded) from all of the week's browsers; the permutation p-value `(1 + #{random ≥
//!      observed}) / (1 + draws)` must be at most `track.emerging_max_p`.

use std::collections::BTreeMap;

use ndarray::Array2;
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::json;

use super::TrackSettings;
use super::document::{Alert, AlertKind};
use super::weeks::IsoWeek;
use crate::analysis::clustering::HdbscanParams;
use crate::analysis::clustering::hdbscan::fit_hdbscan;

/// One week's view of the customers, as the detector needs it.
pub(crate) struct EmergingWeek<'a> {
    /// The week.
    pub(crate) week: IsoWeek,
    /// Customer ids of the week.
    pub(crate) ids: &'a [String],
    /// Events per category family in the window, per customer.
    pub(crate) families: &'a [BTreeMap<String, f64>],
    /// Poorly-assigned, segmented browsers (indices into `ids`).
    pub(crate) candidates: Vec<usize>,
    /// Every segmented browser of the week (indices into `ids`).
    pub(crate) browsers: Vec<usize>,
    /// The same customers' families in the previous week, by id.
    pub(crate) previous: BTreeMap<&'a str, &'a BTreeMap<String, f64>>,
    /// The same customers' families in each fit week before this one, by id.
    pub(crate) fit: Vec<BTreeMap<&'a str, &'a BTreeMap<String, f64>>>,
    /// Share of each family in all browsing of the fit weeks.
    pub(crate) fit_population: &'a BTreeMap<String, f64>,
    /// The fit-distance threshold used to pick candidates.
    pub(crate) threshold: f64,
}

fn share(families: &BTreeMap<String, f64>, token: &str) -> f64 {
    let total: f64 = families.values().sum();
    if total <= 0.0 {
        return 0.0;
    }
    families.get(token).copied().unwrap_or(0.0) / total
}

fn pooled(families: &[BTreeMap<String, f64>], who: &[usize]) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for &i in who {
        for (k, v) in &families[i] {
            *out.entry(k.clone()).or_insert(0.0) += v;
        }
    }
    out
}

/// The week's emerging-segment alerts (none when nothing qualifies).
pub(crate) fn detect(w: &EmergingWeek<'_>, settings: &TrackSettings, seed: u64) -> Vec<Alert> {
    // Among thousands of candidates a fixed small minimum lets HDBSCAN cut one new interest
    // into many small groups by whatever else their members browse (on 100,000 customers,
    // a planted 2% group came out as three groups of 10-16); the minimum grows with them.
    let scaled = (settings.emerging_min_candidate_share * w.candidates.len() as f64).ceil();
    let min_size = settings.emerging_min_size.max(scaled as usize);
    if w.candidates.len() <= min_size {
        return Vec::new();
    }
    let vocabulary: Vec<&str> = {
        let mut v: Vec<&str> = w
            .candidates
            .iter()
            .flat_map(|&i| w.families[i].keys().map(String::as_str))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let mut x = Array2::<f64>::zeros((w.candidates.len(), vocabulary.len()));
    for (r, &i) in w.candidates.iter().enumerate() {
        for (k, v) in &w.families[i] {
            if let Ok(c) = vocabulary.binary_search(&k.as_str()) {
                x[[r, c]] = *v;
            }
        }
        let norm = x.row(r).dot(&x.row(r)).sqrt();
        if norm > 0.0 {
            x.row_mut(r).mapv_inplace(|v| v / norm);
        }
    }
    let params = HdbscanParams {
        min_cluster_size: min_size,
        min_samples: min_size.min(5),
    };
    let Ok((partition, _)) = fit_hdbscan(x.view(), &params) else {
        return Vec::new();
    };
    let mut alerts = Vec::new();
    for g in 0..partition.k() {
        let members: Vec<usize> = partition
            .labels()
            .iter()
            .zip(&w.candidates)
            .filter(|(l, _)| **l == Some(g))
            .map(|(_, &i)| i)
            .collect();
        let group = pooled(w.families, &members);
        let group_total: f64 = group.values().sum();
        let others: Vec<usize> = w
            .browsers
            .iter()
            .copied()
            .filter(|i| members.binary_search(i).is_err())
            .collect();
        let base = pooled(w.families, &others);
        let base_total: f64 = base.values().sum();
        if group_total <= 0.0 || base_total <= 0.0 {
            continue;
        }
        let mut tokens: Vec<(&str, f64, f64, f64)> = group
            .iter()
            .map(|(k, v)| {
                let g_share = v / group_total;
                let b_share = base.get(k).copied().unwrap_or(0.0) / base_total;
                let lift = if b_share > 0.0 {
                    g_share / b_share
                } else {
                    f64::INFINITY
                };
                (k.as_str(), g_share, b_share, lift)
            })
            .filter(|t| t.3 >= settings.emerging_min_lift)
            .collect();
        tokens.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        let Some(&(top, ..)) = tokens.first() else {
            continue;
        };
        let fit_population = w.fit_population.get(top).copied().unwrap_or(0.0);
        if fit_population > settings.emerging_max_fit_share {
            continue;
        }
        let mean_share = |who: &[usize]| {
            who.iter().map(|&i| share(&w.families[i], top)).sum::<f64>() / who.len() as f64
        };
        let now = mean_share(&members);
        let earlier = |week: &BTreeMap<&str, &BTreeMap<String, f64>>| {
            members
                .iter()
                .map(|&i| week.get(w.ids[i].as_str()).map_or(0.0, |f| share(f, top)))
                .sum::<f64>()
                / members.len() as f64
        };
        let before = earlier(&w.previous);
        let fit_weeks = if w.fit.is_empty() {
            0.0
        } else {
            w.fit.iter().map(earlier).sum::<f64>() / w.fit.len() as f64
        };
        if now - before.max(fit_weeks) < settings.emerging_min_novelty {
            continue;
        }
        let draws = settings.emerging_permutations;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ (g as u64).wrapping_mul(0x9E37));
        let mut at_least = 0usize;
        if w.browsers.len() > members.len() {
            for _ in 0..draws {
                let pick: Vec<usize> = sample(&mut rng, w.browsers.len(), members.len())
                    .into_iter()
                    .map(|j| w.browsers[j])
                    .collect();
                if mean_share(&pick) >= now {
                    at_least += 1;
                }
            }
        } else {
            at_least = draws;
        }
        let p_value = (1 + at_least) as f64 / (1 + draws) as f64;
        if p_value > settings.emerging_max_p {
            continue;
        }
        let mut customers: Vec<String> = members.iter().map(|&i| w.ids[i].clone()).collect();
        customers.sort();
        let over_indexed: Vec<serde_json::Value> = tokens
            .iter()
            .take(5)
            .map(|(token, g_share, b_share, lift)| {
                json!({
                    "token": token,
                    "group_share": g_share,
                    "base_share": b_share,
                    "lift": if lift.is_finite() { json!(lift) } else { serde_json::Value::Null },
                })
            })
            .collect();
        alerts.push(Alert {
            week: w.week,
            kind: AlertKind::EmergingSegment,
            segment: None,
            evidence: json!({
                "size": members.len(),
                "share_of_customers": members.len() as f64 / w.browsers.len().max(1) as f64,
                "candidates": w.candidates.len(),
                "min_group_size": min_size,
                "fit_distance_threshold": w.threshold,
                "over_indexed": over_indexed,
                "novelty": {
                    "token": top,
                    "share_now": now,
                    "share_previous_week": before,
                    "share_fit_weeks": fit_weeks,
                    "share_fit_population": fit_population,
                },
                "permutation": {"draws": draws, "p_value": p_value},
            }),
            customers,
        });
    }
    alerts
}
