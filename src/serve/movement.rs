//! Weekly movement of a tracked run (`segscope track`'s `movement.json` and
//! `weekly_assignments.csv`) for the dashboard's movement page and any other client.
//!
//! Routes (under `/api/v1`, behind the API's auth; 404 when the run has no `movement.json`):
//! - `GET /runs/{id}/movement`: `movement.json` as written (schema
//!   `schemas/movement.schema.json`);
//! - `GET /runs/{id}/movement/weeks/{week}/points?map=KEY[&format=binary][&offset=&limit=]`:
//!   that week's customers on one map, in exactly the formats of the run map points of
//!   [`super::maps`] (JSON pages, or the binary `SGPT` layout; the same encoder). Segment
//!   ids are the tracked ones, stable across weeks, so one colour per id holds every week;
//!   the customers are in the file's order for that week. Maps are every `<key>_x`/`<key>_y`
//!   column pair of the file (today `pca`, `umap`, soon `tsne`), with no list to keep;
//! - `GET /runs/{id}/movement/flows?from=WEEK&to=WEEK`: customers who were in segment `a`
//!   in `from` and in `b` in `to`. Consecutive weeks answer the stored transition; any other
//!   pair is counted from `weekly_assignments.csv` the same way the tracker counts (a
//!   customer counts when in a segment both weeks; `rate` is the share of `a`'s members in
//!   `from`), so the Sankey can compare any two weeks;
//! - `GET /runs/{id}/movement/alerts/{index}?offset=&limit=`: one alert (its index in
//!   `movement.json`'s `alerts`) with a page of its customers, each with the segment that
//!   week and the week before, fit distance and exclusion reason: the drill-down;
//! - `GET /runs/{id}/movement/events`: server-sent events. `subscribed` first (nothing
//!   published from then on is missed), then `week_added` (data: the [`RunUpdate`] as JSON) for every
//!   update of this run published on [`AppState::updates`], and `reload` when the stream fell
//!   behind the channel and updates were lost (the page should reload everything). It ends
//!   when the service stops.
//!
//! Both files are parsed once per run and kept in [`MovementCache`] (at most
//! [`CACHED_RUNS`] runs), keyed by the files' modification times and sizes; an update for a
//! run also drops its entries outright (the writer renames new files into place, and a
//! rewrite within the file system's timestamp granularity would otherwise go unseen).
//! [`forget_on_updates`] does that for the whole service; each event stream does it too
//! before it forwards an update, so a page that hears `week_added` reads the new files.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use super::api::ApiError;
use super::dashboard::DashboardState;
use super::live::RunUpdate;
use super::maps::{PageRequest, PointsSource, points_response};
use super::recent::RecentRuns;
use super::runs::{MOVEMENT, RunCatalog};
use crate::domain::MapMethod;
use crate::track::IsoWeek;

/// Tracked runs kept parsed in memory.
pub const CACHED_RUNS: usize = 2;
/// Customers of an alert per page when no `limit` is asked for.
pub const DEFAULT_ALERT_LIMIT: usize = 100;
/// Largest page of an alert's customers.
pub const MAX_ALERT_LIMIT: usize = 5_000;
/// The weekly assignments file.
pub const WEEKLY_ASSIGNMENTS: &str = "weekly_assignments.csv";

/// One week of `weekly_assignments.csv`.
#[derive(Debug)]
struct Week {
    label: String,
    ids: Vec<String>,
    /// Segment per customer, 0 = none (excluded as an anomaly).
    segments: Vec<u32>,
    reasons: Vec<String>,
    fit_distances: Vec<Option<f64>>,
    /// Per map of [`RunMovement::maps`], `x, y` per customer; `None` when the week has no
    /// coordinates on that map.
    xy: Vec<Option<Vec<f32>>>,
    row_of: HashMap<String, usize>,
}

/// A tracked run's two files, parsed together.
#[derive(Debug)]
pub struct RunMovement {
    /// `movement.json` as written.
    bytes: Vec<u8>,
    /// The same, parsed.
    doc: Value,
    /// Map keys, in the file's column order.
    maps: Vec<String>,
    weeks: Vec<Week>,
}

/// Why a run's movement files could not be read (logged; the client gets a 500).
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct MovementFileError {
    file: String,
    message: String,
}

impl RunMovement {
    /// Reads `movement.json` and `weekly_assignments.csv` in `dir`.
    pub fn read(dir: &Path) -> Result<RunMovement, MovementFileError> {
        let fail = |file: &str, message: String| MovementFileError {
            file: dir.join(file).display().to_string(),
            message,
        };
        let bytes = std::fs::read(dir.join(MOVEMENT)).map_err(|e| fail(MOVEMENT, e.to_string()))?;
        let doc: Value =
            serde_json::from_slice(&bytes).map_err(|e| fail(MOVEMENT, e.to_string()))?;
        let bad = |message: String| fail(WEEKLY_ASSIGNMENTS, message);
        let mut reader =
            csv::Reader::from_path(dir.join(WEEKLY_ASSIGNMENTS)).map_err(|e| bad(e.to_string()))?;
        let header = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
        let column = |name: &str| header.iter().position(|h| h == name);
        let (Some(week_col), Some(id_col), Some(segment_col)) =
            (column("week"), column("id"), column("segment"))
        else {
            return Err(bad("no week, id or segment column".into()));
        };
        let (reason_col, distance_col) = (column("reason"), column("fit_distance"));
        // Every `<key>_x` with a matching `<key>_y` is a map.
        let map_cols: Vec<(String, usize, usize)> = header
            .iter()
            .enumerate()
            .filter_map(|(x, h)| {
                let key = h.strip_suffix("_x").filter(|k| !k.is_empty())?;
                Some((key.to_string(), x, column(&format!("{key}_y"))?))
            })
            .collect();
        let mut weeks: Vec<Week> = Vec::new();
        for (line, record) in reader.records().enumerate() {
            let record = record.map_err(|e| bad(e.to_string()))?;
            let field = |i: usize| record.get(i).unwrap_or_default();
            let at = |what: &str| bad(format!("line {}: {what}", line + 2));
            let label = field(week_col);
            if weeks.last().is_none_or(|w| w.label != label) {
                if weeks.iter().any(|w| w.label == label) {
                    return Err(at("the weeks' rows are not together"));
                }
                weeks.push(Week {
                    label: label.to_string(),
                    ids: Vec::new(),
                    segments: Vec::new(),
                    reasons: Vec::new(),
                    fit_distances: Vec::new(),
                    xy: vec![Some(Vec::new()); map_cols.len()],
                    row_of: HashMap::new(),
                });
            }
            let Some(week) = weeks.last_mut() else {
                return Err(at("no week"));
            };
            let segment = match field(segment_col) {
                "" => 0,
                s => s
                    .parse::<u32>()
                    .map_err(|_| at("segment is not a number"))?,
            };
            let id = field(id_col).to_string();
            let row = week.ids.len();
            week.row_of.insert(id.clone(), row);
            week.ids.push(id);
            week.segments.push(segment);
            week.reasons
                .push(reason_col.map(field).unwrap_or_default().to_string());
            week.fit_distances.push(
                distance_col
                    .map(field)
                    .filter(|d| !d.is_empty())
                    .map(|d| {
                        d.parse::<f64>()
                            .map_err(|_| at("fit_distance is not a number"))
                    })
                    .transpose()?,
            );
            for (coords, (_, x_col, y_col)) in week.xy.iter_mut().zip(&map_cols) {
                let (x, y) = (field(*x_col), field(*y_col));
                match coords {
                    // A map a week does not have leaves both columns empty on every row.
                    Some(_) if row == 0 && x.is_empty() && y.is_empty() => *coords = None,
                    None if x.is_empty() && y.is_empty() => {}
                    Some(xy) => {
                        let number = |t: &str| {
                            t.parse::<f32>()
                                .ok()
                                .filter(|v| v.is_finite())
                                .ok_or_else(|| at("a map coordinate is not a number"))
                        };
                        xy.extend([number(x)?, number(y)?]);
                    }
                    None => return Err(at("a map coordinate where the week has none")),
                }
            }
        }
        Ok(RunMovement {
            bytes,
            doc,
            maps: map_cols.into_iter().map(|(key, _, _)| key).collect(),
            weeks,
        })
    }

    /// The tracked weeks, in order (those of `movement.json`).
    pub fn week_labels(&self) -> Vec<String> {
        self.doc["weeks"]
            .as_array()
            .map(|w| {
                w.iter()
                    .filter_map(|w| w.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `movement.json`, parsed.
    pub fn document(&self) -> &Value {
        &self.doc
    }

    /// The map keys of the weekly assignments, in column order.
    pub fn map_keys(&self) -> &[String] {
        &self.maps
    }

    fn week(&self, label: &str) -> Option<&Week> {
        self.weeks.iter().find(|w| w.label == label)
    }
}

/// The tracked runs most recently asked for, most recent first.
#[derive(Debug)]
pub struct MovementCache {
    recent: RecentRuns<RunMovement>,
}

impl Default for MovementCache {
    fn default() -> Self {
        MovementCache {
            recent: RecentRuns::new(CACHED_RUNS),
        }
    }
}

impl MovementCache {
    /// The run's movement, parsed now unless the cache holds it for the same files.
    /// Blocking (reads files): call off the async workers.
    pub fn get(&self, runs: &RunCatalog, run_id: &str) -> Result<Arc<RunMovement>, ApiError> {
        let dir = runs.movement_dir(run_id)?;
        let files = [dir.join(MOVEMENT), dir.join(WEEKLY_ASSIGNMENTS)];
        self.recent.get_or_read(run_id, &files, || {
            RunMovement::read(&dir).map_err(|error| {
                tracing::error!(%error, run_id, "movement unreadable");
                ApiError::Internal
            })
        })
    }

    /// Drops what is kept of `run_id` (its files were rewritten).
    pub fn forget(&self, run_id: &str) {
        self.recent.forget(run_id);
    }

    /// Drops everything (updates were missed, so any run may have changed).
    pub fn clear(&self) {
        self.recent.clear();
    }
}

/// Drops the dashboard's parsed files of every run an update names, until the service
/// stops. Spawned once by [`AppState::new`]; pages that are not open still read fresh files.
pub async fn forget_on_updates(
    mut updates: tokio::sync::broadcast::Receiver<RunUpdate>,
    dashboard: Arc<DashboardState>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let received = tokio::select! {
            received = updates.recv() => received,
            _ = stopping.wait_for(|s| *s) => return,
        };
        match received {
            Ok(update) => forget(&dashboard, update.run_id()),
            Err(RecvError::Lagged(_)) => {
                dashboard.movement.clear();
                dashboard.points.clear();
            }
            Err(RecvError::Closed) => return,
        }
    }
}

fn forget(dashboard: &DashboardState, run_id: &str) {
    dashboard.movement.forget(run_id);
    dashboard.points.forget(run_id);
}

/// The routes of this module (mounted under `/api/v1` by [`super::api::routes`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/runs/{id}/movement", get(document))
        .route("/runs/{id}/movement/weeks/{week}/points", get(week_points))
        .route("/runs/{id}/movement/flows", get(flows))
        .route("/runs/{id}/movement/alerts/{index}", get(alert))
        .route("/runs/{id}/movement/events", get(events))
}

/// The run's movement, loaded off the async workers.
pub async fn load(state: &AppState, run_id: String) -> Result<Arc<RunMovement>, ApiError> {
    let cache = Arc::clone(&state.dashboard.movement);
    let runs = Arc::clone(&state.runs);
    tokio::task::spawn_blocking(move || cache.get(&runs, &run_id))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "movement task failed");
            ApiError::Internal
        })?
}

async fn document(
    State(state): State<AppState>,
    UrlPath(run_id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let movement = load(&state, run_id).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        movement.bytes.clone(),
    )
        .into_response())
}

/// A week named by `field`, checked against the run's weeks.
fn tracked_week<'a>(
    movement: &'a RunMovement,
    run_id: &str,
    field: &str,
    text: &str,
) -> Result<&'a Week, ApiError> {
    let label = IsoWeek::parse(text)
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "{field}: {text:?} is not an ISO week such as 2026-W41"
            ))
        })?
        .to_string();
    let weeks = movement.week_labels();
    let no_week = || {
        let range = match (weeks.first(), weeks.last()) {
            (Some(first), Some(last)) => format!("its weeks are {first} to {last}"),
            _ => "it has no weeks".into(),
        };
        ApiError::NotFound(format!(
            "{field}: run {run_id:?} has no week {label}; {range}"
        ))
    };
    if !weeks.contains(&label) {
        return Err(no_week());
    }
    movement.week(&label).ok_or_else(no_week)
}

/// Query of the weekly points endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeekPointsQuery {
    /// Map key (`pca`, `umap`, `tsne`: a `<key>_x` column of the weekly assignments).
    pub map: Option<String>,
    /// First point (0-based).
    pub offset: Option<String>,
    /// Most points to return.
    pub limit: Option<String>,
    /// `json` (default) or `binary`.
    pub format: Option<String>,
}

async fn week_points(
    State(state): State<AppState>,
    UrlPath((run_id, week)): UrlPath<(String, String)>,
    query: Result<Query<WeekPointsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::BadRequest(format!("query: {}", e.body_text())))?;
    let request = PageRequest::parse(
        query.format.as_deref(),
        query.offset.as_deref(),
        query.limit.as_deref(),
    )?;
    let movement = load(&state, run_id.clone()).await?;
    let week = tracked_week(&movement, &run_id, "week", &week)?;
    let have = movement.maps.join(", ");
    let Some(key) = query.map else {
        return Err(ApiError::BadRequest(format!(
            "map: required; use one of {have}"
        )));
    };
    let Some(at) = movement.maps.iter().position(|m| *m == key) else {
        return Err(if key.parse::<MapMethod>().is_ok() {
            ApiError::NotFound(format!(
                "map: run {run_id:?} has no {key} map for its weeks; it has {have}"
            ))
        } else {
            ApiError::BadRequest(format!("map: {key:?} is not a map; use one of {have}"))
        });
    };
    let Some(xy) = week.xy[at].as_deref() else {
        return Err(ApiError::NotFound(format!(
            "map: run {run_id:?} has no {key} map for week {}",
            week.label
        )));
    };
    points_response(
        request,
        PointsSource {
            run: &run_id,
            method: &key,
            week: Some(&week.label),
            ids: &week.ids,
            segments: &week.segments,
            xy,
        },
    )
}

/// Query of the flows endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowsQuery {
    /// The earlier week.
    pub from: Option<String>,
    /// The later week.
    pub to: Option<String>,
}

/// Customers who were in `from` in one week and in `to` in a later one.
#[derive(Debug, Serialize, PartialEq)]
pub struct FlowOut {
    /// Segment in the earlier week.
    pub from: u32,
    /// Segment in the later week.
    pub to: u32,
    /// Customers.
    pub count: usize,
    /// Share of the earlier week's `from` segment.
    pub rate: f64,
}

/// A count per segment.
#[derive(Debug, Serialize, PartialEq)]
pub struct SegmentCountOut {
    /// Segment id.
    pub segment: u32,
    /// Customers.
    pub count: usize,
}

/// Movement between two weeks, counted.
#[derive(Debug, PartialEq)]
struct Counted {
    customers_in_both: usize,
    flows: Vec<FlowOut>,
    entered: Vec<SegmentCountOut>,
    left: Vec<SegmentCountOut>,
}

/// Flows between two weeks counted from the weekly assignments, exactly as the tracker
/// counts consecutive weeks (see `src/track/run.rs`).
fn count_flows(before: &Week, after: &Week) -> Counted {
    let mut sizes: BTreeMap<u32, usize> = BTreeMap::new();
    for &s in before.segments.iter().filter(|&&s| s != 0) {
        *sizes.entry(s).or_default() += 1;
    }
    let mut flows: BTreeMap<(u32, u32), usize> = BTreeMap::new();
    let mut entered: BTreeMap<u32, usize> = BTreeMap::new();
    let mut left: BTreeMap<u32, usize> = BTreeMap::new();
    for (id, &to) in after.ids.iter().zip(&after.segments) {
        if to == 0 {
            continue;
        }
        let from = before
            .row_of
            .get(id)
            .map(|&row| before.segments[row])
            .filter(|&s| s != 0);
        match from {
            Some(from) => *flows.entry((from, to)).or_default() += 1,
            None => *entered.entry(to).or_default() += 1,
        }
    }
    for (id, &from) in before.ids.iter().zip(&before.segments) {
        let stays = after
            .row_of
            .get(id)
            .is_some_and(|&row| after.segments[row] != 0);
        if from != 0 && !stays {
            *left.entry(from).or_default() += 1;
        }
    }
    let counts = |m: BTreeMap<u32, usize>| {
        m.into_iter()
            .map(|(segment, count)| SegmentCountOut { segment, count })
            .collect()
    };
    let flows: Vec<FlowOut> = flows
        .into_iter()
        .map(|((from, to), count)| FlowOut {
            from,
            to,
            count,
            rate: count as f64 / sizes.get(&from).copied().unwrap_or(0).max(1) as f64,
        })
        .collect();
    Counted {
        customers_in_both: flows.iter().map(|f| f.count).sum(),
        flows,
        entered: counts(entered),
        left: counts(left),
    }
}

async fn flows(
    State(state): State<AppState>,
    UrlPath(run_id): UrlPath<String>,
    query: Result<Query<FlowsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::BadRequest(format!("query: {}", e.body_text())))?;
    let movement = load(&state, run_id.clone()).await?;
    let required = |field: &str, value: Option<String>| {
        value.ok_or_else(|| {
            ApiError::BadRequest(format!("{field}: required (an ISO week such as 2026-W41)"))
        })
    };
    let from = tracked_week(&movement, &run_id, "from", &required("from", query.from)?)?;
    let to = tracked_week(&movement, &run_id, "to", &required("to", query.to)?)?;
    let weeks = movement.week_labels();
    let position = |w: &Week| weeks.iter().position(|l| *l == w.label).unwrap_or(0);
    let (a, b) = (position(from), position(to));
    if b <= a {
        return Err(ApiError::BadRequest(format!(
            "to: {} is not later than from ({})",
            to.label, from.label
        )));
    }
    let stored = (b == a + 1)
        .then(|| {
            movement.doc["transitions"].as_array().and_then(|all| {
                all.iter().find(|t| {
                    t["from_week"] == from.label.as_str() && t["to_week"] == to.label.as_str()
                })
            })
        })
        .flatten();
    if let Some(t) = stored {
        return Ok(Json(json!({
            "run": run_id,
            "from_week": from.label,
            "to_week": to.label,
            "source": "transitions",
            "customers_in_both": t["customers_in_both"],
            "flows": t["flows"],
            "entered": t["entered"],
            "left": t["left"],
        })));
    }
    let counted = count_flows(from, to);
    Ok(Json(json!({
        "run": run_id,
        "from_week": from.label,
        "to_week": to.label,
        "source": "weekly_assignments",
        "customers_in_both": counted.customers_in_both,
        "flows": counted.flows,
        "entered": counted.entered,
        "left": counted.left,
    })))
}

/// Query of the alert endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    /// First customer (0-based).
    pub offset: Option<String>,
    /// Most customers to return.
    pub limit: Option<String>,
}

/// One customer of an alert, for the drill-down.
#[derive(Debug, Serialize)]
struct AlertCustomer<'a> {
    id: &'a str,
    /// Segment in the alert's week (null: in none, e.g. excluded as an anomaly).
    segment: Option<u32>,
    /// Segment the week before (null: in none, or not seen that week).
    previous_segment: Option<u32>,
    /// Distance to the nearest centroid in the alert's week.
    fit_distance: Option<f64>,
    /// Why the customer is in no segment that week (`anomaly`), if so.
    reason: Option<&'a str>,
}

fn count_field(field: &str, text: Option<&str>) -> Result<Option<usize>, ApiError> {
    text.map(|t| {
        t.parse::<usize>().map_err(|_| {
            ApiError::BadRequest(format!("{field}: {t:?} is not a whole number of customers"))
        })
    })
    .transpose()
}

async fn alert(
    State(state): State<AppState>,
    UrlPath((run_id, index)): UrlPath<(String, String)>,
    query: Result<Query<AlertQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::BadRequest(format!("query: {}", e.body_text())))?;
    let offset = count_field("offset", query.offset.as_deref())?.unwrap_or(0);
    let limit = count_field("limit", query.limit.as_deref())?.unwrap_or(DEFAULT_ALERT_LIMIT);
    if limit == 0 || limit > MAX_ALERT_LIMIT {
        return Err(ApiError::BadRequest(format!(
            "limit: must be 1 to {MAX_ALERT_LIMIT}"
        )));
    }
    let number: usize = index.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "index: {index:?} is not an alert index (0, 1, ...)"
        ))
    })?;
    let movement = load(&state, run_id.clone()).await?;
    let alerts = movement.doc["alerts"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let Some(found) = alerts.get(number) else {
        return Err(ApiError::NotFound(format!(
            "index: run {run_id:?} has {} alert(s); no alert {number}",
            alerts.len()
        )));
    };
    let label = found["week"].as_str().unwrap_or_default();
    let weeks = movement.week_labels();
    let previous = weeks
        .iter()
        .position(|w| w == label)
        .and_then(|at| at.checked_sub(1))
        .map(|at| weeks[at].clone());
    let week = movement.week(label);
    let before = previous.as_deref().and_then(|p| movement.week(p));
    let ids: Vec<&str> = found["customers"]
        .as_array()
        .map(|c| c.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let total = ids.len();
    if offset > total {
        return Err(ApiError::BadRequest(format!(
            "offset: {offset} is past the last customer (the alert has {total})"
        )));
    }
    let end = offset.saturating_add(limit).min(total);
    let segment_of = |week: Option<&Week>, id: &str| {
        week.and_then(|w| w.row_of.get(id).map(|&row| w.segments[row]))
            .filter(|&s| s != 0)
    };
    let customers: Vec<AlertCustomer<'_>> = ids[offset..end]
        .iter()
        .map(|&id| {
            let row = week.and_then(|w| w.row_of.get(id).map(|&row| (w, row)));
            AlertCustomer {
                id,
                segment: segment_of(week, id),
                previous_segment: segment_of(before, id),
                fit_distance: row.and_then(|(w, r)| w.fit_distances[r]),
                reason: row
                    .map(|(w, r)| w.reasons[r].as_str())
                    .filter(|r| !r.is_empty()),
            }
        })
        .collect();
    let mut summary_alert = found.clone();
    if let Some(object) = summary_alert.as_object_mut() {
        object.remove("customers");
    }
    let summary = movement.doc["summaries"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["week"] == label))
        .map(|s| s["text"].clone())
        .unwrap_or(Value::Null);
    Ok(Json(json!({
        "run": run_id,
        "index": number,
        "alert": summary_alert,
        "previous_week": previous,
        "summary": summary,
        "total": total,
        "offset": offset,
        "next_offset": (end < total).then_some(end),
        "customers": customers,
    })))
}

async fn events(
    State(state): State<AppState>,
    UrlPath(run_id): UrlPath<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let runs = Arc::clone(&state.runs);
    let id = run_id.clone();
    tokio::task::spawn_blocking(move || runs.movement_dir(&id))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "movement task failed");
            ApiError::Internal
        })??;
    // Subscribed before the response goes out: nothing published after `subscribed` is
    // missed.
    let updates = state.updates.subscribe();
    let open = Event::default()
        .event("subscribed")
        .data(json!({ "run": run_id }).to_string());
    struct Listening {
        run_id: String,
        updates: tokio::sync::broadcast::Receiver<RunUpdate>,
        stopping: tokio::sync::watch::Receiver<bool>,
        dashboard: Arc<DashboardState>,
    }
    let listening = Listening {
        run_id,
        updates,
        stopping: state.stopping.clone(),
        dashboard: Arc::clone(&state.dashboard),
    };
    let rest = futures::stream::unfold(listening, |mut l| async move {
        loop {
            let received = tokio::select! {
                received = l.updates.recv() => received,
                _ = l.stopping.wait_for(|s| *s) => return None,
            };
            let event = match received {
                Ok(update) if update.run_id() == l.run_id => {
                    forget(&l.dashboard, &l.run_id);
                    Event::default()
                        .event("week_added")
                        .json_data(&update)
                        .unwrap_or_else(|_| Event::default().event("reload").data("{}"))
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(missed)) => {
                    forget(&l.dashboard, &l.run_id);
                    Event::default()
                        .event("reload")
                        .data(json!({ "missed": missed }).to_string())
                }
                Err(RecvError::Closed) => return None,
            };
            return Some((Ok(event), l));
        }
    });
    let stream = futures::StreamExt::chain(futures::stream::once(async move { Ok(open) }), rest);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn week(label: &str, rows: &[(&str, u32)]) -> Week {
        Week {
            label: label.into(),
            ids: rows.iter().map(|(id, _)| id.to_string()).collect(),
            segments: rows.iter().map(|(_, s)| *s).collect(),
            reasons: vec![String::new(); rows.len()],
            fit_distances: vec![None; rows.len()],
            xy: Vec::new(),
            row_of: rows
                .iter()
                .enumerate()
                .map(|(i, (id, _))| (id.to_string(), i))
                .collect(),
        }
    }

    #[test]
    fn flows_count_customers_in_a_segment_both_weeks() {
        let before = week(
            "2026-W40",
            &[("a", 1), ("b", 1), ("c", 2), ("d", 0), ("e", 2)],
        );
        let after = week(
            "2026-W42",
            &[("a", 2), ("b", 1), ("d", 1), ("f", 2), ("e", 0)],
        );
        let counted = count_flows(&before, &after);
        assert_eq!(counted.customers_in_both, 2);
        assert_eq!(
            counted.flows,
            vec![
                FlowOut {
                    from: 1,
                    to: 1,
                    count: 1,
                    rate: 0.5
                },
                FlowOut {
                    from: 1,
                    to: 2,
                    count: 1,
                    rate: 0.5
                },
            ]
        );
        // d was excluded before, f is new: both entered; c vanished, e was excluded after.
        assert_eq!(
            counted.entered,
            vec![
                SegmentCountOut {
                    segment: 1,
                    count: 1
                },
                SegmentCountOut {
                    segment: 2,
                    count: 1
                },
            ]
        );
        assert_eq!(
            counted.left,
            vec![SegmentCountOut {
                segment: 2,
                count: 2
            }]
        );
    }
}
