//! `segscope track`: week-by-week segments with stable ids, who moved where, drift, anomalies
//! and emerging micro-segments, written to `movement.json` and `weekly_assignments.csv`.
//!
//! This module owns the weekly use case; it reuses the store pipeline's ingest (one streamed
//! pass per file, aggregated per ISO week), features, customer matrix and embedder, and the
//! analysis layer's k-means, HDBSCAN and PCA. It does not draw dashboards or narrate.
//!
//! # How a week is measured
//! A week's state is RFM as of Sunday 23:59:59 UTC (every purchase up to then) and browsing
//! over the trailing `track.browsing_window_weeks` weeks. The first `track.fit_weeks` weeks
//! fit everything once: the local embedder, the scaler and block weights, k-means with the
//! configured k (auto by default), PCA and, when asked (`--maps` or `track.maps`), UMAP and
//! t-SNE. Every week, fit weeks included, is then placed with the fitted model: a customer's
//! segment is the nearest centroid, so a week without change assigns everyone as before and
//! segment ids stay stable; the maps put the week in the fit weeks' frame (PCA by its
//! projection, UMAP by its transform, t-SNE by openTSNE's transform, each point optimised
//! alone against the fixed map from the median of its nearest fit-week neighbours). A
//! customer whose features did not change therefore keeps their coordinates, and movement on
//! the maps is movement in the data. The maps' columns in `weekly_assignments.csv` are
//! `pca_x,pca_y`, then `umap_x,umap_y` and `tsne_x,tsne_y` when drawn.
//!
//! # Refits
//! With `track.refit_every = N`, k-means is refitted every N weeks after the fit on the last
//! `fit_weeks` weeks (in the same space: the embedder and scaler stay, so distances remain
//! comparable) and applies from the next week. New segments are matched to the old ids by
//! membership overlap (greedy Jaccard, ties by centroid distance; see `refit` in the run
//! module): one continuing an old id keeps it, others get new ids, and splits (an old id
//! giving ≥ 30% of its members to each of two or more new segments) and merges (a new
//! segment taking ≥ 30% of each of two or more old ids) are recorded in `refits`.
//!
//! # Fit distance
//! How poorly a customer is assigned: the distance to the nearest centroid in the fitted
//! space, plus what the fitted space cannot show. The fitted embedder drops browsing terms it
//! never saw; the share `u` of the customer's browsing weight (L2 of `ln(1 + w)` term
//! weights) on such terms is treated as a direction orthogonal to the fitted span, where
//! every centroid is zero: the in-span embedding is scaled by `√(1 − u²)` and the distance
//! gains `u` times the embedding block's scale in quadrature.
//!
//! # Alerts (thresholds in `[track]`, recorded in `movement.json`)
//! - `anomaly`: customers with views but no carts and no purchases in the window whose
//!   `ln(views per session)` or `ln(1 + views)` lies more than `anomaly_mad_threshold`
//!   robust z (median, 1.4826·MAD over the week's browsers) above the median, with at least
//!   `anomaly_min_views` views. They are kept out of the segments (empty segment, reason
//!   `anomaly`) every week they qualify, and alerted in the week they first do.
//! - `migration`: a flow a → b (a ≠ b) whose count is at least `migration_min_count`, whose
//!   rate (share of a's previous-week members) is at least `migration_min_rate` and at least
//!   `migration_min_ratio` times the
//!   baseline rate of the same flow over all earlier transitions (pooled, `(Σcount + 0.5) /
//!   (Σsize + 1)`), and whose binomial z against that baseline is at least `migration_z`.
//!   The first transition has no baseline and raises none.
//! - `drift`: for each segment and drift feature (the trailing window's views, sessions,
//!   conversion, orders and revenue; recency and cumulative totals grow with the calendar
//!   by construction and would measure ageing, not behaviour), PSI of this week's members
//!   against the fit weeks' members (bins at the fit quantiles, proportions floored at
//!   1e-4). An alert needs PSI ≥ `psi_alert`, a Kolmogorov–Smirnov p-value ≤ `drift_max_p`
//!   (PSI alone is noisy for small segments), at least `drift_min_customers` members, and a
//!   share within `drift_max_share_change` (relative) of the fit share: membership stayed,
//!   behaviour moved.
//! - `emerging_segment`: see [`emerging`].
//!
//! PSI levels follow the usual convention: below `psi_watch` (0.1) stable, up to `psi_alert`
//! (0.25) watch, above alert.

pub mod document;
pub mod emerging;
pub mod narrate;
mod run;
mod state;
pub mod stats;
pub mod summary;
pub mod weeks;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use document::MovementDocument;
pub use run::{TrackRun, run_track};
pub use weeks::{IsoWeek, WeekLabelError, WeekRange};

use crate::pipeline::PipelineError;
use crate::settings::Settings;

/// `[track]`: how weeks are measured and when movement becomes an alert.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrackSettings {
    /// Weeks of browsing in a week's state, ending with the week (at least 1).
    pub browsing_window_weeks: u32,
    /// First weeks the segments are fitted on (at least 1).
    pub fit_weeks: usize,
    /// Refit the segments every this many weeks after the fit, on the last `fit_weeks`
    /// weeks, matching them to the old ids (0: never).
    pub refit_every: usize,
    /// Maps every week is placed on when `--maps` is not given (PCA is always drawn).
    pub maps: Vec<crate::domain::MapMethod>,
    /// PSI from which a shift is worth watching.
    pub psi_watch: f64,
    /// PSI from which a shift is real.
    pub psi_alert: f64,
    /// Most bins of a feature's PSI (fewer for small segments: one per 25 members, at least 2).
    pub psi_bins: usize,
    /// Kolmogorov–Smirnov p-value a drift alert needs at most.
    pub drift_max_p: f64,
    /// Fewest members a segment needs for a drift alert.
    pub drift_min_customers: usize,
    /// Largest relative change of a segment's share (against the fit weeks) that still
    /// counts as "membership stayed" for drift.
    pub drift_max_share_change: f64,
    /// Fewest customers in a flow for a migration alert.
    pub migration_min_count: usize,
    /// Smallest share of the source segment a flow must take for a migration alert: on a
    /// large base a flow of a few in ten thousand is statistically clear and still not news.
    pub migration_min_rate: f64,
    /// Binomial z-score against the baseline rate a migration alert needs.
    pub migration_z: f64,
    /// How many times its baseline rate a flow's rate must be.
    pub migration_min_ratio: f64,
    /// Robust z-score (median, 1.4826·MAD) above which browsing is bot-like.
    pub anomaly_mad_threshold: f64,
    /// Fewest views in the window for a bot-like flag.
    pub anomaly_min_views: f64,
    /// Quantile of the fit weeks' fit distances above which a customer is poorly assigned.
    pub emerging_quantile: f64,
    /// Smallest dense group reported as an emerging segment.
    pub emerging_min_size: usize,
    /// Smallest dense group as a share of the week's candidates, when that is more than
    /// `emerging_min_size` (large stores: one new interest stays one group).
    pub emerging_min_candidate_share: f64,
    /// Lift (share in the group over share among the week's other browsers) a token needs to
    /// be called over-indexed.
    pub emerging_min_lift: f64,
    /// Rise of the top token's share in the group's browsing over the same customers' previous
    /// week and fit weeks that makes the group new rather than a standing niche.
    pub emerging_min_novelty: f64,
    /// Largest share of all fit-week browsing the group's top family may have had (an
    /// emerging interest is one the fitted segments never saw).
    pub emerging_max_fit_share: f64,
    /// Random groups of the same size the group is compared with.
    pub emerging_permutations: usize,
    /// Permutation p-value an emerging segment needs at most.
    pub emerging_max_p: f64,
}

impl TrackSettings {
    /// Checks every value, naming the key of the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("psi_watch", self.psi_watch),
            ("psi_alert", self.psi_alert),
            ("migration_z", self.migration_z),
            ("migration_min_ratio", self.migration_min_ratio),
            ("anomaly_mad_threshold", self.anomaly_mad_threshold),
            ("emerging_min_lift", self.emerging_min_lift),
        ];
        for (key, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("track.{key} = {v}: must be a positive number"));
            }
        }
        let unit = [
            ("drift_max_p", self.drift_max_p),
            ("migration_min_rate", self.migration_min_rate),
            ("drift_max_share_change", self.drift_max_share_change),
            ("emerging_quantile", self.emerging_quantile),
            (
                "emerging_min_candidate_share",
                self.emerging_min_candidate_share,
            ),
            ("emerging_min_novelty", self.emerging_min_novelty),
            ("emerging_max_fit_share", self.emerging_max_fit_share),
            ("emerging_max_p", self.emerging_max_p),
        ];
        for (key, v) in unit {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                return Err(format!("track.{key} = {v}: must be between 0 and 1"));
            }
        }
        if self.psi_watch > self.psi_alert {
            return Err("track.psi_watch must not exceed track.psi_alert".into());
        }
        if !(self.anomaly_min_views.is_finite() && self.anomaly_min_views >= 0.0) {
            return Err("track.anomaly_min_views must be a number of at least 0".into());
        }
        for (key, v) in [
            ("browsing_window_weeks", self.browsing_window_weeks as usize),
            ("fit_weeks", self.fit_weeks),
            ("psi_bins", self.psi_bins.saturating_sub(1)),
            (
                "emerging_min_size",
                self.emerging_min_size.saturating_sub(1),
            ),
        ] {
            if v == 0 {
                return Err(format!(
                    "track.{key} is too small (see config/default.toml)"
                ));
            }
        }
        Ok(())
    }
}

/// A validated request to track store data week by week.
#[derive(Debug, Clone)]
pub struct TrackRequest {
    /// Transactions files (Online Retail II layout), possibly none: several files are read
    /// as one (a watched folder holds one per week), each with its own report and errors.
    pub transactions: Vec<PathBuf>,
    /// Browsing events files (REES46 layout), possibly none, read as one like transactions.
    pub events: Vec<PathBuf>,
    /// The weeks to track; `None` tracks every week of the data from the first whose
    /// trailing browsing window lies wholly in the data (counted from the first browsing
    /// event, or the first transaction when there are no events; from the first week itself
    /// when that would leave no week after the fit weeks).
    pub weeks: Option<WeekRange>,
    /// Maps to place every week on: PCA always; UMAP and t-SNE (fitted on the fit weeks,
    /// every week placed by their transforms) when listed.
    pub maps: Vec<crate::domain::MapMethod>,
    /// Effective settings (`track.fit_weeks` already overridden by `--fit-weeks`).
    pub settings: Settings,
    /// Output directory.
    pub out_dir: PathBuf,
}

/// Why tracking failed.
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    /// The requested weeks do not fit the data.
    #[error("--weeks {requested}: {message}")]
    Weeks {
        /// The range as given.
        requested: String,
        /// What is wrong.
        message: String,
    },
    /// Fewer weeks than the fit needs.
    #[error(
        "--fit-weeks {fit_weeks}: only {weeks} week(s) to track; tracking needs at least one week after the fit weeks"
    )]
    TooFewWeeks {
        /// Fit weeks asked for.
        fit_weeks: usize,
        /// Weeks available.
        weeks: usize,
    },
    /// The pipeline's stages failed (ingest, embedding, clustering, writing).
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

impl TrackError {
    /// True when the cause is in the user's data or request.
    pub fn is_input_problem(&self) -> bool {
        match self {
            TrackError::Weeks { .. } | TrackError::TooFewWeeks { .. } => true,
            TrackError::Pipeline(e) => e.is_input_problem(),
        }
    }
}
