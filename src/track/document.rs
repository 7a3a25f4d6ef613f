//! `movement.json`: what `segscope track` found, in a shape the dashboard, the agent's
//! movement tools and the weekly narrative read without re-deriving anything. Every list is
//! in a fixed order (weeks ascending, segments by id), every number is computed once here,
//! and the thresholds that turned numbers into levels and alerts travel with them. Described
//! by `schemas/movement.schema.json`.

use serde::Serialize;

use super::TrackSettings;
use super::weeks::IsoWeek;

/// Version of the document's shape; bumped on any breaking change.
pub const MOVEMENT_SCHEMA_VERSION: u32 = 1;

/// The contents of `movement.json`.
#[derive(Debug, Clone, Serialize)]
pub struct MovementDocument {
    /// Shape version ([`MOVEMENT_SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Seed of every random choice.
    pub seed: u64,
    /// Tracked weeks, ascending (ISO week labels, Monday to Sunday UTC).
    pub weeks: Vec<IsoWeek>,
    /// The first weeks, on which the segments, scaler, embedder and map were fitted.
    pub fit_weeks: Vec<IsoWeek>,
    /// Weeks of browsing each week's state covers (ending with the week).
    pub browsing_window_weeks: u32,
    /// The segments, by stable id.
    pub segments: Vec<SegmentInfo>,
    /// Per week, every segment's count and share (customers excluded as anomalies are not
    /// in any segment and not in the denominator).
    pub shares: Vec<WeekShares>,
    /// Between each pair of consecutive weeks.
    pub transitions: Vec<Transition>,
    /// Population-stability indices.
    pub psi: PsiReport,
    /// Alerts, by week then kind.
    pub alerts: Vec<Alert>,
    /// Per week after the first, the built-in plain-language summary and the figure keys
    /// it cites ([`super::summary`]).
    pub summaries: Vec<super::summary::WeekSummary>,
    /// Who wrote the summaries: the built-in summariser, or a model and which weeks kept
    /// the built-in text and why ([`super::narrate`]).
    pub narrative: super::narrate::WeeklyNarrativeRecord,
    /// Refits (`track.refit_every`) and how their segments were matched to the old ids.
    pub refits: Vec<Refit>,
    /// Thresholds and settings that turned numbers into levels and alerts.
    pub thresholds: TrackSettings,
    /// How the numbers were made, in sentences.
    pub notes: Vec<String>,
}

/// One segment as fitted.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentInfo {
    /// Stable id (1, 2, ...); never reused for another group.
    pub id: usize,
    /// Customer-weeks of the fit weeks in the segment.
    pub fit_size: usize,
    /// Share of the fit weeks' customer-weeks.
    pub fit_share: f64,
    /// Medians over the fit weeks of recency_days, frequency, monetary, views, sessions and
    /// conversion.
    pub medians: Vec<NamedValue>,
    /// The week the segment was made (the last fit week, or a refit week).
    pub since: IsoWeek,
}

/// A named figure.
#[derive(Debug, Clone, Serialize)]
pub struct NamedValue {
    /// Name.
    pub name: String,
    /// Value.
    pub value: f64,
}

/// One week's segment shares.
#[derive(Debug, Clone, Serialize)]
pub struct WeekShares {
    /// The week.
    pub week: IsoWeek,
    /// Customers in a segment this week.
    pub customers: usize,
    /// Customers kept out of the segments (anomalies).
    pub excluded: usize,
    /// Per segment, by id.
    pub segments: Vec<SegmentShare>,
}

/// A segment's size in one week.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentShare {
    /// Segment id.
    pub segment: usize,
    /// Customers.
    pub count: usize,
    /// Share of the week's segmented customers.
    pub share: f64,
}

/// Movement between two consecutive weeks.
#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    /// The earlier week.
    pub from_week: IsoWeek,
    /// The later week.
    pub to_week: IsoWeek,
    /// Customers in a segment in both weeks (the sum of every flow's count).
    pub customers_in_both: usize,
    /// Every non-zero flow, staying included (`from == to`), by (from, to).
    pub flows: Vec<Flow>,
    /// Customers in a segment in the later week but not the earlier one (new, returning,
    /// or no longer an anomaly), per segment.
    pub entered: Vec<SegmentCount>,
    /// Customers in a segment in the earlier week but not the later one, per segment.
    pub left: Vec<SegmentCount>,
}

/// Customers who were in `from` and are in `to` a week later.
#[derive(Debug, Clone, Serialize)]
pub struct Flow {
    /// Segment in the earlier week.
    pub from: usize,
    /// Segment in the later week.
    pub to: usize,
    /// Customers.
    pub count: usize,
    /// Share of the earlier week's `from` segment.
    pub rate: f64,
}

/// A count per segment.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentCount {
    /// Segment id.
    pub segment: usize,
    /// Customers.
    pub count: usize,
}

/// Population-stability indices and their levels.
#[derive(Debug, Clone, Serialize)]
pub struct PsiReport {
    /// Segment shares against the previous week, per week after the first.
    pub shares: Vec<SharePsi>,
    /// Each drift feature per segment against the fit weeks, per week.
    pub features: Vec<FeaturePsi>,
}

/// PSI of one week's segment shares against the week before.
#[derive(Debug, Clone, Serialize)]
pub struct SharePsi {
    /// The later week.
    pub week: IsoWeek,
    /// PSI.
    pub psi: f64,
    /// `stable`, `watch` or `alert`.
    pub level: PsiLevel,
}

/// PSI of one feature of one segment, this week against the fit weeks.
#[derive(Debug, Clone, Serialize)]
pub struct FeaturePsi {
    /// The week.
    pub week: IsoWeek,
    /// Segment id.
    pub segment: usize,
    /// Feature name.
    pub feature: &'static str,
    /// PSI (bins at the fit weeks' quantiles).
    pub psi: f64,
    /// Two-sample Kolmogorov–Smirnov statistic against the fit weeks.
    pub ks: f64,
    /// Its asymptotic p-value.
    pub ks_p_value: f64,
    /// `stable`, `watch` or `alert`.
    pub level: PsiLevel,
    /// Segment members this week.
    pub customers: usize,
}

/// Where a PSI lies against the thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PsiLevel {
    /// Below `psi_watch`.
    Stable,
    /// From `psi_watch` to below `psi_alert`.
    Watch,
    /// At or above `psi_alert`.
    Alert,
}

impl PsiLevel {
    /// The level of `psi` under `settings`.
    pub fn of(psi: f64, settings: &TrackSettings) -> Self {
        if psi >= settings.psi_alert {
            PsiLevel::Alert
        } else if psi >= settings.psi_watch {
            PsiLevel::Watch
        } else {
            PsiLevel::Stable
        }
    }
}

/// Something a person should look at.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// The week it happened.
    pub week: IsoWeek,
    /// What kind of change.
    pub kind: AlertKind,
    /// The segment concerned (the source segment of a migration); `null` for groups outside
    /// the segments (anomalies, an emerging segment).
    pub segment: Option<usize>,
    /// The customers involved, by id, ascending.
    pub customers: Vec<String>,
    /// The numbers behind it (shape per kind, documented in the schema).
    pub evidence: serde_json::Value,
}

/// The kinds of alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Traffic unlike customers (bot-like), kept out of the segments.
    Anomaly,
    /// An unusual flow from one segment to another.
    Migration,
    /// A segment whose behaviour moved while its membership did not.
    Drift,
    /// A dense new group the segments fit poorly.
    EmergingSegment,
}

impl AlertKind {
    /// The kind as written in `movement.json`.
    pub fn key(self) -> &'static str {
        match self {
            AlertKind::Anomaly => "anomaly",
            AlertKind::Migration => "migration",
            AlertKind::Drift => "drift",
            AlertKind::EmergingSegment => "emerging_segment",
        }
    }
}

/// A refit and how its segments were matched to the ids before it.
#[derive(Debug, Clone, Serialize)]
pub struct Refit {
    /// The first week assigned with the refitted segments.
    pub applies_from: IsoWeek,
    /// The weeks the segments were refitted on.
    pub fitted_on: Vec<IsoWeek>,
    /// Every new segment and the id it carries.
    pub matches: Vec<RefitMatch>,
    /// Old ids that split: two or more new segments each took at least 30% of its members.
    pub splits: Vec<SplitMerge>,
    /// New segments that merged old ids: each took at least 30% of two or more old ids.
    pub merges: Vec<SplitMerge>,
}

/// One segment of a refit.
#[derive(Debug, Clone, Serialize)]
pub struct RefitMatch {
    /// The id it carries (an old id it continues, or a new one).
    pub id: usize,
    /// The old id it continues, if any.
    pub continues: Option<usize>,
    /// Jaccard overlap of its members with the continued id's (0 for a new id).
    pub jaccard: f64,
    /// Customer-weeks of the refit window in it.
    pub size: usize,
}

/// Old ids and new ids of a split or merge.
#[derive(Debug, Clone, Serialize)]
pub struct SplitMerge {
    /// Old ids.
    pub old: Vec<usize>,
    /// New ids.
    pub new: Vec<usize>,
}

#[cfg(test)]
mod tests {
    use super::AlertKind;

    #[test]
    fn alert_kind_keys_are_the_names_written_in_movement_json() {
        for kind in [
            AlertKind::Anomaly,
            AlertKind::Migration,
            AlertKind::Drift,
            AlertKind::EmergingSegment,
        ] {
            assert_eq!(
                serde_json::to_value(kind).ok(),
                Some(serde_json::Value::from(kind.key()))
            );
        }
    }
}
