//! The movement tools: what `segscope track`'s `movement.json` says, week by week, as
//! figures the grounding check accepts.
//!
//! Offered only when the run directory has a `movement.json`. Keys are the weekly
//! summary's (`movement.<week>.segment.<id>.share`, `...flow.<from>.<to>.count`,
//! `...alert.<n>.customers`; see [`crate::track::summary`]), so a figure a tool returns and
//! the same number in the stored summary carry one key. Alerts are returned as aggregates:
//! the customers' count, never their ids.

use serde_json::{Value, json};

use super::tools::{FigureList, ToolError};
use crate::narrative::figures::{Figure, Unit};
use crate::narrative::grounding::numbers_in;
use crate::track::summary::{share_change_figure, share_figure};
use crate::track::weeks::IsoWeek;

/// How many flows between different segments `movement_week` returns.
const TOP_FLOWS: usize = 3;

fn array<'a>(v: &'a Value, field: &str) -> &'a [Value] {
    v.get(field)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn number(v: &Value, field: &str) -> Option<f64> {
    v.get(field)
        .and_then(Value::as_f64)
        .filter(|x| x.is_finite())
}

fn week_of(v: &Value, field: &str) -> Option<IsoWeek> {
    v.get(field)
        .and_then(Value::as_str)
        .and_then(|w| IsoWeek::parse(w).ok())
}

/// The tracked weeks, in order.
pub fn weeks(movement: &Value) -> Vec<String> {
    array(movement, "weeks")
        .iter()
        .filter_map(|w| w.as_str().map(str::to_string))
        .collect()
}

/// `movement_weeks`: every week's segment shares and share PSI level.
pub(crate) fn movement_weeks(movement: &Value, figures: &mut FigureList) -> Value {
    let psi = movement.get("psi").unwrap_or(&Value::Null);
    let weeks: Vec<Value> = array(movement, "shares")
        .iter()
        .filter_map(|w| {
            let week = week_of(w, "week")?;
            let segments: Vec<Value> = array(w, "segments")
                .iter()
                .filter_map(|s| {
                    let id = s.get("segment")?.as_u64()? as usize;
                    let share = number(s, "share")?;
                    let f = share_figure(week, id, share);
                    let display = f.display.clone();
                    figures.figures.push(f);
                    Some(json!({"segment": id, "share": display}))
                })
                .collect();
            let share_psi = array(psi, "shares")
                .iter()
                .find(|p| week_of(p, "week") == Some(week))
                .map_or(Value::Null, |p| {
                    json!({
                        "psi": figures.maybe(
                            format!("movement.{week}.share_psi"),
                            number(p, "psi"),
                            Unit::Number,
                        ),
                        "level": p.get("level").cloned().unwrap_or(Value::Null),
                    })
                });
            let alerts = array(movement, "alerts")
                .iter()
                .filter(|a| week_of(a, "week") == Some(week))
                .count();
            Some(json!({
                "week": week.to_string(),
                "customers": figures.maybe(
                    format!("movement.{week}.customers"),
                    number(w, "customers"),
                    Unit::Count,
                ),
                "segments": segments,
                "share_psi_against_previous_week": share_psi,
                "alerts": figures.add(format!("movement.{week}.alerts"), alerts as f64, Unit::Count),
            }))
        })
        .collect();
    json!({
        "weeks": weeks,
        "fit_weeks": movement.get("fit_weeks").cloned().unwrap_or(Value::Null),
        "note": "Shares are of the week's segmented customers; PSI compares a week's shares \
                 with the week before (stable, watch or alert).",
    })
}

/// The summary of `week` with its figures under the summary's own keys: the numbers of the
/// text, in order, are the cited figures, in order (each key is shown once).
pub fn summary_figures(summary: &Value) -> Option<(String, Vec<Figure>)> {
    let text = summary.get("text")?.as_str()?.to_string();
    let keys: Vec<&str> = array(summary, "figures")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mentions = numbers_in(&text);
    if mentions.len() != keys.len() {
        return None;
    }
    let figures = mentions
        .into_iter()
        .zip(keys)
        .map(|(m, key)| Figure {
            key: key.to_string(),
            value: if m.percent { m.value / 100.0 } else { m.value },
            display: m.written,
        })
        .collect();
    Some((text, figures))
}

/// `movement_week`: one week's summary, share changes, top flows and alerts. `week`
/// defaults to the latest tracked week.
pub(crate) fn movement_week(
    movement: &Value,
    week: Option<&str>,
    figures: &mut FigureList,
) -> Result<Value, ToolError> {
    let tracked = weeks(movement);
    let label = match week {
        Some(w) => w.to_string(),
        None => tracked.last().cloned().unwrap_or_default(),
    };
    let position = tracked.iter().position(|w| *w == label);
    let (Some(position), Ok(week)) = (position, IsoWeek::parse(&label)) else {
        return Err(ToolError::Unavailable(format!(
            "week '{label}' was not tracked; the tracked weeks are {}",
            tracked.join(", ")
        )));
    };
    let summary = array(movement, "summaries")
        .iter()
        .find(|s| s.get("week").and_then(Value::as_str) == Some(label.as_str()));
    let summary_text = match summary.and_then(summary_figures) {
        Some((text, cited)) => {
            figures.figures.extend(cited);
            Value::String(text)
        }
        None => match summary.and_then(|s| s.get("text")).and_then(Value::as_str) {
            Some(text) => figures.quote(&format!("movement.{week}.summary"), text),
            None => Value::Null,
        },
    };

    let shares = array(movement, "shares");
    let share_of = |w: &Value, id: u64| {
        array(w, "segments")
            .iter()
            .find(|s| s.get("segment").and_then(Value::as_u64) == Some(id))
            .and_then(|s| number(s, "share"))
    };
    let mut changes = Vec::new();
    if position > 0
        && let (Some(now), Some(before)) = (shares.get(position), shares.get(position - 1))
        && let Some(before_week) = week_of(before, "week")
    {
        for s in array(now, "segments") {
            let Some(id) = s.get("segment").and_then(Value::as_u64) else {
                continue;
            };
            let (Some(new), Some(old)) = (number(s, "share"), share_of(before, id)) else {
                continue;
            };
            let id = id as usize;
            let from = share_figure(before_week, id, old);
            let to = share_figure(week, id, new);
            let change = share_change_figure(week, id, (new - old) * 100.0);
            changes.push(json!({
                "segment": id,
                "from": from.display,
                "to": to.display,
                "change_points": change.display,
            }));
            figures.figures.extend([from, to, change]);
        }
    }

    let mut flows: Vec<&Value> = array(movement, "transitions")
        .iter()
        .find(|t| t.get("to_week").and_then(Value::as_str) == Some(label.as_str()))
        .map(|t| array(t, "flows"))
        .unwrap_or_default()
        .iter()
        .filter(|f| f.get("from") != f.get("to"))
        .collect();
    flows.sort_by(|a, b| {
        number(b, "count")
            .unwrap_or(0.0)
            .total_cmp(&number(a, "count").unwrap_or(0.0))
    });
    let top_flows: Vec<Value> = flows
        .into_iter()
        .take(TOP_FLOWS)
        .map(|f| {
            let from = f.get("from").cloned().unwrap_or(Value::Null);
            let to = f.get("to").cloned().unwrap_or(Value::Null);
            let key = format!("movement.{week}.flow.{from}.{to}");
            json!({
                "from": from,
                "to": to,
                "customers": figures.maybe(format!("{key}.count"), number(f, "count"), Unit::Count),
                "rate_of_from": figures.maybe(format!("{key}.rate"), number(f, "rate"), Unit::Share),
            })
        })
        .collect();

    let alerts: Vec<Value> = array(movement, "alerts")
        .iter()
        .filter(|a| week_of(a, "week") == Some(week))
        .enumerate()
        .map(|(n, a)| {
            let key = format!("movement.{week}.alert.{n}");
            let evidence = a.get("evidence").unwrap_or(&Value::Null);
            let customers = figures.add(
                format!("{key}.customers"),
                array(a, "customers").len() as f64,
                Unit::Count,
            );
            let kind = a.get("kind").and_then(Value::as_str).unwrap_or_default();
            let detail = match kind {
                "anomaly" => json!({
                    "median_views": figures.maybe(format!("{key}.median_views"), number(evidence, "median_views"), Unit::Number),
                    "max_views": figures.maybe(format!("{key}.max_views"), number(evidence, "max_views"), Unit::Number),
                }),
                "migration" => json!({
                    "from": evidence.get("from").cloned().unwrap_or(Value::Null),
                    "to": evidence.get("to").cloned().unwrap_or(Value::Null),
                    "rate": figures.maybe(format!("{key}.rate"), number(evidence, "rate"), Unit::Share),
                    "baseline_rate": figures.maybe(format!("{key}.baseline_rate"), number(evidence, "baseline_rate"), Unit::Share),
                }),
                "drift" => {
                    let features: Vec<Value> = array(evidence, "features")
                        .iter()
                        .filter_map(|f| {
                            let name = f.get("feature")?.as_str()?;
                            Some(json!({
                                "feature": name,
                                "psi": figures.maybe(format!("{key}.feature.{name}.psi"), number(f, "psi"), Unit::Number),
                            }))
                        })
                        .collect();
                    json!({"features": features})
                }
                "emerging_segment" => json!({
                    "share_of_customers": figures.maybe(format!("{key}.share_of_customers"), number(evidence, "share_of_customers"), Unit::Share),
                }),
                _ => Value::Null,
            };
            json!({
                "kind": kind,
                "segment": a.get("segment").cloned().unwrap_or(Value::Null),
                "customers": customers,
                "evidence": detail,
            })
        })
        .collect();

    Ok(json!({
        "week": label,
        "summary": summary_text,
        "share_changes": changes,
        "top_flows_between_segments": top_flows,
        "alerts": alerts,
    }))
}
