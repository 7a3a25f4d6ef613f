//! The built-in weekly movement summary: per week after the first, a few plain sentences a
//! person reads instead of `movement.json` itself — the biggest share changes, the largest
//! flow between two different segments, and every alert of the week.
//!
//! Grounded like every other text segscope writes: each number stated is the display of a
//! figure (see [`crate::narrative::figures`]) under a `movement.<week>.` key, the summary
//! records the keys it cites, and the narrative's grounding check accepts it. Keys:
//!
//! ```text
//! movement.<week>.segment.<id>.share               the segment's share that week
//! movement.<week>.segment.<id>.share_change        change against the week before, in points
//! movement.<week>.flow.<from>.<to>.count | .rate   a flow into <week> (rate of <from>'s size)
//! movement.<week>.alert.<n>.customers              the week's n-th alert (from 0): customers
//! movement.<week>.alert.<n>.<evidence>             its key evidence number (rate, psi,
//!                                                  median_views, share_of_customers)
//! ```
//!
//! No model is involved: the text is deterministic, so the same seed gives the same bytes.

use serde::Serialize;

use super::document::{Alert, AlertKind, MovementDocument, WeekShares};
use super::weeks::IsoWeek;
use crate::narrative::figures::{Figure, FigureCatalogue, Unit};
use crate::narrative::reading::figure;

/// How many share changes a summary names.
const SHARE_CHANGES: usize = 2;
/// How many flows between different segments a model may cite per week (largest first).
const MODEL_FLOWS: usize = 5;
/// The narrator name of the built-in summaries.
pub const BUILTIN: &str = "builtin";

/// One week's summary as `movement.json` stores it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeekSummary {
    /// The week summarised (its changes are against the week before).
    pub week: IsoWeek,
    /// The summary, in sentences.
    pub text: String,
    /// The catalogue keys of every number in `text`, in order of first mention.
    pub figures: Vec<String>,
    /// Who wrote it: `builtin`, or the chat model's name when a model's summary passed
    /// the checks of [`super::narrate`].
    pub narrator: String,
}

/// One week's summary with the figures it cites, for callers that need the values.
#[derive(Debug, Clone, PartialEq)]
pub struct CitedSummary {
    /// The summary.
    pub summary: WeekSummary,
    /// The figures behind `summary.figures`, in the same order.
    pub figures: Vec<Figure>,
}

/// A segment's share that week, as the summaries cite it.
pub fn share_figure(week: IsoWeek, segment: usize, share: f64) -> Figure {
    Figure::new(
        format!("movement.{week}.segment.{segment}.share"),
        share,
        Unit::Share,
    )
}

/// A change of share in percentage points, shown with its sign (`+5.2`, `-3.1`).
pub fn share_change_figure(week: IsoWeek, segment: usize, points: f64) -> Figure {
    let shown = figure(points);
    let display = if points > 0.0 && points.is_finite() {
        format!("+{shown}")
    } else {
        shown
    };
    Figure {
        key: format!("movement.{week}.segment.{segment}.share_change"),
        value: points,
        display,
    }
}

/// Every week's summary (every week but the first), with the figures each cites.
pub fn summarize(doc: &MovementDocument) -> Vec<CitedSummary> {
    (1..doc.shares.len())
        .map(|w| summarize_week(doc, &doc.shares[w - 1], &doc.shares[w]))
        .collect()
}

/// Every figure a summary of week `index` (from 1: the first week has no summary) may cite:
/// each segment's share that week and the week before and its change in points, the
/// [`MODEL_FLOWS`] largest flows between different segments (count and rate), and each of
/// the week's alerts' figures, under the keys the built-in summary uses. A model writing
/// the summary chooses among these ([`super::narrate`]).
pub fn week_figures(doc: &MovementDocument, index: usize) -> Vec<Figure> {
    let (Some(before), Some(now)) = (
        index.checked_sub(1).and_then(|i| doc.shares.get(i)),
        doc.shares.get(index),
    ) else {
        return Vec::new();
    };
    let week = now.week;
    let mut cited = Cited::default();
    for s in &now.segments {
        if let Some(old) = before.segments.iter().find(|b| b.segment == s.segment) {
            cited.show(share_figure(before.week, s.segment, old.share));
            cited.show(share_figure(week, s.segment, s.share));
            cited.show(share_change_figure(
                week,
                s.segment,
                (s.share - old.share) * 100.0,
            ));
        }
    }
    if let Some(t) = doc.transitions.iter().find(|t| t.to_week == week) {
        let mut flows: Vec<_> = t
            .flows
            .iter()
            .filter(|f| f.from != f.to && f.count > 0)
            .collect();
        flows.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then((a.from, a.to).cmp(&(b.from, b.to)))
        });
        for f in flows.into_iter().take(MODEL_FLOWS) {
            let key = format!("movement.{week}.flow.{}.{}", f.from, f.to);
            cited.show(Figure::new(
                format!("{key}.count"),
                f.count as f64,
                Unit::Count,
            ));
            cited.show(Figure::new(format!("{key}.rate"), f.rate, Unit::Share));
        }
    }
    let alerts = doc.alerts.iter().filter(|a| a.week == week);
    for (n, alert) in alerts.enumerate() {
        alert_sentence(week, n, alert, &mut cited);
    }
    cited.0
}

/// Every figure the summaries cite, under its key.
pub fn movement_catalogue(summaries: &[CitedSummary]) -> FigureCatalogue {
    let mut catalogue = FigureCatalogue::new();
    for s in summaries {
        for f in &s.figures {
            catalogue.insert(f.clone());
        }
    }
    catalogue
}

/// Collects the figures a summary states, once each.
#[derive(Default)]
struct Cited(Vec<Figure>);

impl Cited {
    fn show(&mut self, figure: Figure) -> String {
        let display = figure.display.clone();
        if !self.0.iter().any(|f| f.key == figure.key) {
            self.0.push(figure);
        }
        display
    }
}

fn summarize_week(doc: &MovementDocument, before: &WeekShares, now: &WeekShares) -> CitedSummary {
    let week = now.week;
    let mut cited = Cited::default();
    let mut sentences = vec![format!("Week {week} against {}.", before.week)];

    // Share changes, largest first (ties by segment id), zero changes left out.
    let mut changes: Vec<(usize, f64, f64)> = now
        .segments
        .iter()
        .filter_map(|s| {
            let old = before.segments.iter().find(|b| b.segment == s.segment)?;
            Some((s.segment, old.share, s.share))
        })
        .filter(|(_, old, new)| new != old)
        .collect();
    changes.sort_by(|a, b| {
        (b.2 - b.1)
            .abs()
            .total_cmp(&(a.2 - a.1).abs())
            .then(a.0.cmp(&b.0))
    });
    changes.truncate(SHARE_CHANGES);
    if changes.is_empty() {
        sentences.push("No segment's share changed.".to_string());
    } else {
        let parts: Vec<String> = changes
            .iter()
            .map(|&(segment, old, new)| {
                let from = cited.show(share_figure(before.week, segment, old));
                let to = cited.show(share_figure(week, segment, new));
                let change = cited.show(share_change_figure(week, segment, (new - old) * 100.0));
                format!("segment {segment} from {from} to {to} ({change} points)")
            })
            .collect();
        sentences.push(format!("Biggest share changes: {}.", parts.join("; ")));
    }

    // The largest flow between two different segments.
    let flow = doc
        .transitions
        .iter()
        .find(|t| t.to_week == week)
        .and_then(|t| {
            t.flows
                .iter()
                .filter(|f| f.from != f.to && f.count > 0)
                .max_by(|a, b| {
                    a.count
                        .cmp(&b.count)
                        .then(a.rate.total_cmp(&b.rate))
                        .then((b.from, b.to).cmp(&(a.from, a.to)))
                })
        });
    match flow {
        Some(f) => {
            let key = format!("movement.{week}.flow.{}.{}", f.from, f.to);
            let count = cited.show(Figure::new(
                format!("{key}.count"),
                f.count as f64,
                Unit::Count,
            ));
            let rate = cited.show(Figure::new(format!("{key}.rate"), f.rate, Unit::Share));
            sentences.push(format!(
                "Largest flow between segments: {count} customers from segment {} to segment {} \
                 ({rate} of segment {}).",
                f.from, f.to, f.from
            ));
        }
        None => sentences.push("No customer moved between segments.".to_string()),
    }

    // Alerts of the week, in the document's order.
    let alerts: Vec<&Alert> = doc.alerts.iter().filter(|a| a.week == week).collect();
    if alerts.is_empty() {
        sentences.push("No alerts.".to_string());
    }
    for (n, alert) in alerts.iter().enumerate() {
        sentences.push(alert_sentence(week, n, alert, &mut cited));
    }

    let figures = cited.0;
    CitedSummary {
        summary: WeekSummary {
            week,
            text: sentences.join(" "),
            figures: figures.iter().map(|f| f.key.clone()).collect(),
            narrator: BUILTIN.to_string(),
        },
        figures,
    }
}

/// The alert's evidence number under `field`, when it is a finite number.
fn evidence(alert: &Alert, field: &str) -> Option<f64> {
    alert
        .evidence
        .get(field)
        .and_then(serde_json::Value::as_f64)
        .filter(|v| v.is_finite())
}

fn alert_sentence(week: IsoWeek, n: usize, alert: &Alert, cited: &mut Cited) -> String {
    let key = format!("movement.{week}.alert.{n}");
    let customers = cited.show(Figure::new(
        format!("{key}.customers"),
        alert.customers.len() as f64,
        Unit::Count,
    ));
    let mut cite = |field: &str, value: Option<f64>, unit: Unit| {
        value.map(|v| cited.show(Figure::new(format!("{key}.{field}"), v, unit)))
    };
    match alert.kind {
        AlertKind::Anomaly => {
            let views = cite(
                "median_views",
                evidence(alert, "median_views"),
                Unit::Number,
            );
            let detail = views.map_or(String::new(), |v| format!(" (median {v} views)"));
            format!(
                "Anomaly alert: {customers} bot-like customers kept out of the segments{detail}."
            )
        }
        AlertKind::Migration => {
            let rate = cite("rate", evidence(alert, "rate"), Unit::Share);
            let from = alert
                .segment
                .map_or(String::new(), |s| format!(" from segment {s}"));
            let to = alert
                .evidence
                .get("to")
                .and_then(serde_json::Value::as_u64)
                .map_or(String::new(), |s| format!(" to segment {s}"));
            let detail = rate.map_or(String::new(), |r| format!(" ({r} of the segment)"));
            format!("Migration alert: {customers} customers moved{from}{to}{detail}.")
        }
        AlertKind::Drift => {
            let top = alert
                .evidence
                .get("features")
                .and_then(serde_json::Value::as_array)
                .and_then(|features| {
                    features
                        .iter()
                        .filter_map(|f| {
                            let name = f.get("feature")?.as_str()?;
                            let psi = f.get("psi")?.as_f64().filter(|v| v.is_finite())?;
                            Some((name, psi))
                        })
                        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(a.0)))
                });
            let segment = alert
                .segment
                .map_or(String::new(), |s| format!(" in segment {s}"));
            let detail = top.map_or(String::new(), |(name, psi)| {
                let shown = cite("psi", Some(psi), Unit::Number).unwrap_or_default();
                format!(", {name} moved most (PSI {shown})")
            });
            format!("Drift alert{segment}: {customers} customers behave differently{detail}.")
        }
        AlertKind::EmergingSegment => {
            let share = cite(
                "share_of_customers",
                evidence(alert, "share_of_customers"),
                Unit::Share,
            );
            let detail = share.map_or(String::new(), |s| format!(" ({s} of customers)"));
            format!(
                "Emerging segment alert: {customers} customers form a new group the segments \
                 fit poorly{detail}."
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::narrative::grounding::check_numbers;
    use crate::settings::Settings;
    use crate::track::document::{Flow, PsiReport, SegmentShare, Transition, WeekShares as Shares};

    fn week(label: &str) -> IsoWeek {
        IsoWeek::parse(label).expect("week label")
    }

    fn shares(label: &str, values: [(usize, f64); 3]) -> Shares {
        Shares {
            week: week(label),
            customers: 100,
            excluded: 0,
            segments: values
                .iter()
                .map(|&(count, share)| (count, share))
                .enumerate()
                .map(|(i, (count, share))| SegmentShare {
                    segment: i + 1,
                    count,
                    share,
                })
                .collect(),
        }
    }

    fn document() -> MovementDocument {
        let w40 = week("2026-W40");
        let w41 = week("2026-W41");
        let alert = |kind, segment, n: usize, evidence| Alert {
            week: w41,
            kind,
            segment,
            customers: (0..n).map(|i| format!("c{i}")).collect(),
            evidence,
        };
        MovementDocument {
            schema_version: 1,
            seed: 7,
            weeks: vec![w40, w41],
            fit_weeks: vec![w40],
            browsing_window_weeks: 1,
            segments: Vec::new(),
            shares: vec![
                shares("2026-W40", [(50, 0.5), (30, 0.3), (20, 0.2)]),
                shares("2026-W41", [(42, 0.42), (30, 0.3), (28, 0.28)]),
            ],
            transitions: vec![Transition {
                from_week: w40,
                to_week: w41,
                customers_in_both: 100,
                flows: vec![
                    Flow {
                        from: 1,
                        to: 1,
                        count: 42,
                        rate: 0.84,
                    },
                    Flow {
                        from: 1,
                        to: 3,
                        count: 8,
                        rate: 0.16,
                    },
                    Flow {
                        from: 2,
                        to: 2,
                        count: 30,
                        rate: 1.0,
                    },
                    Flow {
                        from: 3,
                        to: 3,
                        count: 20,
                        rate: 1.0,
                    },
                ],
                entered: Vec::new(),
                left: Vec::new(),
            }],
            psi: PsiReport {
                shares: Vec::new(),
                features: Vec::new(),
            },
            alerts: vec![
                alert(
                    AlertKind::Anomaly,
                    None,
                    12,
                    json!({"count": 12, "median_views": 250.0}),
                ),
                alert(
                    AlertKind::Migration,
                    Some(1),
                    8,
                    json!({"from": 1, "to": 3, "count": 8, "rate": 0.16}),
                ),
                alert(
                    AlertKind::Drift,
                    Some(2),
                    30,
                    json!({"features": [
                        {"feature": "monetary", "psi": 0.31},
                        {"feature": "views", "psi": 0.4567}
                    ]}),
                ),
                alert(
                    AlertKind::EmergingSegment,
                    None,
                    9,
                    json!({"size": 9, "share_of_customers": 0.0825}),
                ),
            ],
            summaries: Vec::new(),
            narrative: crate::track::narrate::WeeklyNarrativeRecord::builtin(),
            refits: Vec::new(),
            thresholds: Settings::load(None).expect("settings").track,
            notes: Vec::new(),
        }
    }

    #[test]
    fn a_week_is_summarised_in_plain_sentences() {
        let summaries = summarize(&document());
        assert_eq!(summaries.len(), 1);
        let s = &summaries[0].summary;
        assert_eq!(s.week, week("2026-W41"));
        assert_eq!(
            s.text,
            "Week 2026-W41 against 2026-W40. Biggest share changes: segment 1 from 50% to 42% \
             (-8 points); segment 3 from 20% to 28% (+8 points). Largest flow between segments: \
             8 customers from segment 1 to segment 3 (16% of segment 1). Anomaly alert: 12 \
             bot-like customers kept out of the segments (median 250 views). Migration alert: 8 \
             customers moved from segment 1 to segment 3 (16% of the segment). Drift alert in \
             segment 2: 30 customers behave differently, views moved most (PSI 0.457). Emerging \
             segment alert: 9 customers form a new group the segments fit poorly (8.25% of \
             customers)."
        );
        assert_eq!(
            s.figures,
            [
                "movement.2026-W40.segment.1.share",
                "movement.2026-W41.segment.1.share",
                "movement.2026-W41.segment.1.share_change",
                "movement.2026-W40.segment.3.share",
                "movement.2026-W41.segment.3.share",
                "movement.2026-W41.segment.3.share_change",
                "movement.2026-W41.flow.1.3.count",
                "movement.2026-W41.flow.1.3.rate",
                "movement.2026-W41.alert.0.customers",
                "movement.2026-W41.alert.0.median_views",
                "movement.2026-W41.alert.1.customers",
                "movement.2026-W41.alert.1.rate",
                "movement.2026-W41.alert.2.customers",
                "movement.2026-W41.alert.2.psi",
                "movement.2026-W41.alert.3.customers",
                "movement.2026-W41.alert.3.share_of_customers",
            ]
        );
    }

    #[test]
    fn every_number_in_a_summary_is_a_cited_figure_shown_as_displayed() {
        let summaries = summarize(&document());
        let catalogue = movement_catalogue(&summaries);
        for s in &summaries {
            let cited = catalogue.cited(&s.summary.figures);
            assert_eq!(
                cited.len(),
                s.summary.figures.len(),
                "every key is catalogued"
            );
            assert_eq!(check_numbers(&s.summary.text, &cited), []);
            for f in &cited {
                assert!(s.summary.text.contains(&f.display), "{} not shown", f.key);
            }
            // Nothing else grounds it: without the figures every number is flagged.
            assert!(!check_numbers(&s.summary.text, &[]).is_empty());
        }
    }

    #[test]
    fn a_quiet_week_says_so() {
        let mut doc = document();
        doc.shares[1] = shares("2026-W41", [(50, 0.5), (30, 0.3), (20, 0.2)]);
        doc.transitions[0].flows.retain(|f| f.from == f.to);
        doc.alerts.clear();
        let s = &summarize(&doc)[0].summary;
        assert_eq!(
            s.text,
            "Week 2026-W41 against 2026-W40. No segment's share changed. No customer moved \
             between segments. No alerts."
        );
        assert!(s.figures.is_empty());
    }
}
