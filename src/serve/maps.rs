//! Map points and customer look-ups for the dashboard (and any client that draws maps).
//!
//! Routes (under `/api/v1`, behind the API's auth):
//! - `GET /runs/{id}/maps`: the maps the run has (key, title, bounds), its segments' names
//!   and which per-customer figures ([`KPIS`]) can colour the points;
//! - `GET /runs/{id}/maps/{method}/points?offset=&limit=`: JSON pages of
//!   `{id, segment, x, y}` (`limit` 1 to [`MAX_JSON_LIMIT`], default [`DEFAULT_JSON_LIMIT`]);
//!   `next_offset` is null on the last page;
//! - `GET /runs/{id}/maps/{method}/points?format=binary[&offset=&limit=]`: the same points
//!   packed for a WebGL buffer (default: all of them; see [`BINARY_MAGIC`] for the layout);
//! - `GET /runs/{id}/customers`: every customer id, in the order of the points;
//! - `GET /runs/{id}/customers/{customer_id}`: one customer's segment, map coordinates and,
//!   for store runs, R/F/M, browsing and top categories (from `profiles.csv`), or for a
//!   feature table with a label column, the customer's label;
//! - `GET /runs/{id}/kpis/{name}`: one figure per customer as little-endian `f32`, in the
//!   order of the points, NaN where the customer has none (colours the map by a KPI).
//!
//! Binary points layout (all little-endian), chosen so the browser can hand the body to
//! WebGL without copying or parsing: a 24-byte header — magic `SGPT`, `u16` version (1),
//! `u16` bytes per segment id (2 or 4), `u32` total points of the map, `u32` offset of the
//! first point sent, `u32` count of points sent, `u32` reserved (0) — then `count` pairs of
//! `f32 x, f32 y` (a ready vertex buffer, 4-byte aligned), then `count` segment ids (`u16`
//! when every id fits, else `u32`; 0 = in no segment). 200,000 points are 2.0 MB.
//!
//! `assignments.csv` (and `profiles.csv`) are parsed once per run and kept in a small cache
//! ([`super::recent`]) keyed by run id and the files' modification times and lengths, so a
//! run rewritten in place is read again and the cache never holds more than [`CACHED_RUNS`]
//! runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;
use super::api::ApiError;
use super::recent::RecentRuns;
use super::runs::valid_run_id;
use crate::domain::MapMethod;

/// Runs whose points are kept parsed in memory.
pub const CACHED_RUNS: usize = 4;
/// Largest JSON page.
pub const MAX_JSON_LIMIT: usize = 10_000;
/// JSON page size when none is asked for.
pub const DEFAULT_JSON_LIMIT: usize = 1_000;
/// First bytes of a binary points body.
pub const BINARY_MAGIC: &[u8; 4] = b"SGPT";
/// Bytes before the first coordinate of a binary points body.
pub const BINARY_HEADER_BYTES: usize = 24;
/// Per-customer figures that can colour the map (store runs only).
pub const KPIS: [&str; 6] = [
    "recency_days",
    "frequency",
    "monetary",
    "views",
    "sessions",
    "conversion",
];

const MAP_METHODS: [MapMethod; 3] = [MapMethod::Pca, MapMethod::Umap, MapMethod::Tsne];

/// One map's coordinates.
#[derive(Debug)]
struct MapCoords {
    method: MapMethod,
    /// Interleaved `x, y` per customer.
    xy: Vec<f32>,
    bounds: [f32; 4],
}

/// One customer's figures from `profiles.csv`.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// Days since the last purchase (none for a customer who never bought).
    pub recency_days: Option<f64>,
    /// Invoices.
    pub frequency: Option<f64>,
    /// Net revenue.
    pub monetary: Option<f64>,
    /// Product views.
    pub views: Option<f64>,
    /// Browsing sessions.
    pub sessions: Option<f64>,
    /// Purchases per view.
    pub conversion: Option<f64>,
    /// Category interests, most viewed first.
    pub top_categories: Vec<String>,
}

impl Profile {
    fn kpi(&self, name: &str) -> Option<f64> {
        match name {
            "recency_days" => self.recency_days,
            "frequency" => self.frequency,
            "monetary" => self.monetary,
            "views" => self.views,
            "sessions" => self.sessions,
            "conversion" => self.conversion,
            _ => None,
        }
    }
}

/// A run's customers as the map endpoints serve them, parsed once.
#[derive(Debug)]
pub struct RunPoints {
    ids: Vec<String>,
    /// Segment per customer, 0 = none.
    segments: Vec<u32>,
    reasons: Option<Vec<String>>,
    maps: Vec<MapCoords>,
    row_of: HashMap<String, usize>,
    /// R/F/M and browsing per customer (store runs).
    profiles: Option<Vec<Profile>>,
    /// Known class per customer (feature-table runs with a label column).
    labels: Option<Vec<String>>,
}

/// Why a run's points could not be read (logged; the client gets a 500 or 404).
#[derive(Debug, thiserror::Error)]
pub enum PointsError {
    /// The file is missing.
    #[error("{0} is missing")]
    Missing(PathBuf),
    /// The file cannot be read or is not what the pipeline writes.
    #[error("{path}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn number(text: &str) -> Option<f64> {
    if text.is_empty() {
        None
    } else {
        text.parse().ok()
    }
}

impl RunPoints {
    /// Parses `assignments.csv` and, when present, `profiles.csv` in `dir`.
    pub fn read(dir: &Path) -> Result<RunPoints, PointsError> {
        let path = dir.join("assignments.csv");
        if !path.is_file() {
            return Err(PointsError::Missing(path));
        }
        let malformed = |path: &Path, message: String| PointsError::Malformed {
            path: path.to_path_buf(),
            message,
        };
        let mut reader =
            csv::Reader::from_path(&path).map_err(|e| malformed(&path, e.to_string()))?;
        let header = reader
            .headers()
            .map_err(|e| malformed(&path, e.to_string()))?
            .clone();
        let column = |name: &str| header.iter().position(|h| h == name);
        let (Some(id_col), Some(segment_col)) = (column("id"), column("segment")) else {
            return Err(malformed(&path, "no id or segment column".into()));
        };
        let reason_col = column("reason");
        let map_cols: Vec<(MapMethod, usize, usize)> = MAP_METHODS
            .iter()
            .filter_map(|&m| {
                Some((
                    m,
                    column(&format!("{}_x", m.key()))?,
                    column(&format!("{}_y", m.key()))?,
                ))
            })
            .collect();
        let mut points = RunPoints {
            ids: Vec::new(),
            segments: Vec::new(),
            reasons: reason_col.map(|_| Vec::new()),
            maps: map_cols
                .iter()
                .map(|&(method, _, _)| MapCoords {
                    method,
                    xy: Vec::new(),
                    bounds: [
                        f32::INFINITY,
                        f32::INFINITY,
                        f32::NEG_INFINITY,
                        f32::NEG_INFINITY,
                    ],
                })
                .collect(),
            row_of: HashMap::new(),
            profiles: None,
            labels: None,
        };
        for (line, record) in reader.records().enumerate() {
            let record = record.map_err(|e| malformed(&path, e.to_string()))?;
            let field = |i: usize| record.get(i).unwrap_or_default();
            let at = |what: &str| format!("line {}: {what}", line + 2);
            let segment = match field(segment_col) {
                "" => 0,
                s => s
                    .parse::<u32>()
                    .map_err(|_| malformed(&path, at("segment is not a number")))?,
            };
            let id = field(id_col).to_string();
            points.row_of.insert(id.clone(), points.ids.len());
            points.ids.push(id);
            points.segments.push(segment);
            if let (Some(reasons), Some(col)) = (points.reasons.as_mut(), reason_col) {
                reasons.push(field(col).to_string());
            }
            for (map, &(_, x_col, y_col)) in points.maps.iter_mut().zip(&map_cols) {
                let coordinate = |col: usize| -> Result<f32, PointsError> {
                    field(col)
                        .parse::<f32>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| malformed(&path, at("a map coordinate is not a number")))
                };
                let (x, y) = (coordinate(x_col)?, coordinate(y_col)?);
                map.xy.extend([x, y]);
                map.bounds = [
                    map.bounds[0].min(x),
                    map.bounds[1].min(y),
                    map.bounds[2].max(x),
                    map.bounds[3].max(y),
                ];
            }
        }
        let profiles_path = dir.join("profiles.csv");
        if profiles_path.is_file() {
            let (profiles, labels) = read_profiles(&profiles_path, &points.row_of)?;
            points.profiles = profiles;
            points.labels = labels;
        }
        Ok(points)
    }

    /// Customers in the run.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the run has no customers.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn map(&self, method: MapMethod) -> Option<&MapCoords> {
        self.maps.iter().find(|m| m.method == method)
    }
}

/// What `profiles.csv` holds: per-customer figures (store runs) and labels (feature-table
/// runs with a label column), each in point order.
type ProfileColumns = (Option<Vec<Profile>>, Option<Vec<String>>);

/// `profiles.csv`: per-customer figures when it has them, labels when it has a `label`
/// column.
fn read_profiles(
    path: &Path,
    row_of: &HashMap<String, usize>,
) -> Result<ProfileColumns, PointsError> {
    let malformed = |message: String| PointsError::Malformed {
        path: path.to_path_buf(),
        message,
    };
    let mut profiles = vec![
        Profile {
            recency_days: None,
            frequency: None,
            monetary: None,
            views: None,
            sessions: None,
            conversion: None,
            top_categories: Vec::new(),
        };
        row_of.len()
    ];
    let mut reader = csv::Reader::from_path(path).map_err(|e| malformed(e.to_string()))?;
    let header = reader
        .headers()
        .map_err(|e| malformed(e.to_string()))?
        .clone();
    let column = |name: &str| header.iter().position(|h| h == name);
    let Some(id_col) = column("id") else {
        return Err(malformed("no id column".into()));
    };
    let kpi_cols: Vec<Option<usize>> = KPIS.iter().map(|k| column(k)).collect();
    let top_col = column("top_categories");
    let label_col = column("label");
    let mut labels = label_col.map(|_| vec![String::new(); row_of.len()]);
    for record in reader.records() {
        let record = record.map_err(|e| malformed(e.to_string()))?;
        let field = |col: Option<usize>| col.and_then(|c| record.get(c)).unwrap_or_default();
        let Some(&row) = row_of.get(field(Some(id_col))) else {
            continue;
        };
        if let Some(labels) = labels.as_mut() {
            labels[row] = field(label_col).to_string();
        }
        let kpi = |i: usize| number(field(kpi_cols[i]));
        profiles[row] = Profile {
            recency_days: kpi(0),
            frequency: kpi(1),
            monetary: kpi(2),
            views: kpi(3),
            sessions: kpi(4),
            conversion: kpi(5),
            top_categories: field(top_col)
                .split('|')
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect(),
        };
    }
    let has_figures = kpi_cols.iter().any(Option::is_some);
    Ok((has_figures.then_some(profiles), labels))
}

/// The parsed runs most recently asked for, at most [`CACHED_RUNS`], most recent first.
#[derive(Debug)]
pub struct PointsCache {
    recent: RecentRuns<RunPoints>,
}

impl Default for PointsCache {
    fn default() -> Self {
        PointsCache {
            recent: RecentRuns::new(CACHED_RUNS),
        }
    }
}

impl PointsCache {
    /// An empty cache.
    pub fn new() -> Self {
        PointsCache::default()
    }

    /// The run's points, parsed now unless the cache holds them for the same files.
    /// Blocking (reads files): call off the async workers.
    pub fn get(&self, runs_dir: &Path, run_id: &str) -> Result<Arc<RunPoints>, ApiError> {
        if !valid_run_id(run_id) {
            return Err(ApiError::BadRequest(format!(
                "run id {run_id:?} is not valid: use 1 to 64 letters, digits, '-' or '_'"
            )));
        }
        let dir = runs_dir.join(run_id);
        if !dir.join("segments.json").is_file() {
            return Err(ApiError::NotFound(format!("no run {run_id:?}")));
        }
        let files = [dir.join("assignments.csv"), dir.join("profiles.csv")];
        self.recent.get_or_read(run_id, &files, || {
            RunPoints::read(&dir).map_err(|error| match error {
                PointsError::Missing(_) => {
                    ApiError::NotFound(format!("run {run_id:?} has no assignments.csv"))
                }
                other => {
                    tracing::error!(error = %other, run_id, "map points unreadable");
                    ApiError::Internal
                }
            })
        })
    }

    /// Drops what is kept of `run_id` (its files were rewritten).
    pub fn forget(&self, run_id: &str) {
        self.recent.forget(run_id);
    }

    /// Drops everything.
    pub fn clear(&self) {
        self.recent.clear();
    }
}

/// The routes of this module (mounted under `/api/v1` by [`super::api::routes`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/runs/{id}/maps", get(maps))
        .route("/runs/{id}/maps/{method}/points", get(points))
        .route("/runs/{id}/customers", get(customer_ids))
        .route("/runs/{id}/customers/{customer_id}", get(customer))
        .route("/runs/{id}/kpis/{name}", get(kpi_values))
}

/// The run's points, loaded off the async workers.
pub async fn load(state: &AppState, run_id: String) -> Result<Arc<RunPoints>, ApiError> {
    let cache = Arc::clone(&state.dashboard.points);
    let runs_dir = state.runs.dir().to_path_buf();
    tokio::task::spawn_blocking(move || cache.get(&runs_dir, &run_id))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "map points task failed");
            ApiError::Internal
        })?
}

fn method_of(points: &RunPoints, run_id: &str, key: &str) -> Result<MapMethod, ApiError> {
    let method = MAP_METHODS
        .iter()
        .copied()
        .find(|m| m.key() == key)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "method {key:?} is not a map method; use one of pca, umap, tsne"
            ))
        })?;
    if points.map(method).is_none() {
        return Err(ApiError::NotFound(format!(
            "run {run_id:?} has no {} map",
            method.display_name()
        )));
    }
    Ok(method)
}

async fn maps(
    State(state): State<AppState>,
    UrlPath(run_id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let points = load(&state, run_id.clone()).await?;
    let methods: Vec<Value> = points
        .maps
        .iter()
        .map(|m| {
            json!({
                "key": m.method.key(),
                "title": m.method.display_name(),
                "bounds": {"min_x": m.bounds[0], "min_y": m.bounds[1], "max_x": m.bounds[2], "max_y": m.bounds[3]},
                "points": format!("/api/v1/runs/{run_id}/maps/{}/points", m.method.key()),
            })
        })
        .collect();
    let kpis: Vec<&str> = if points.profiles.is_some() {
        KPIS.to_vec()
    } else {
        Vec::new()
    };
    Ok(Json(json!({
        "run": run_id,
        "n_customers": points.len(),
        "methods": methods,
        "kpis": kpis,
    })))
}

/// Query of the points endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointsQuery {
    /// First point (0-based).
    pub offset: Option<String>,
    /// Most points to return.
    pub limit: Option<String>,
    /// `json` (default) or `binary`.
    pub format: Option<String>,
}

fn parse_count(field: &str, text: Option<&str>) -> Result<Option<usize>, ApiError> {
    text.map(|t| {
        t.parse::<usize>().map_err(|_| {
            ApiError::BadRequest(format!("{field}: {t:?} is not a whole number of points"))
        })
    })
    .transpose()
}

/// A points request's format and page, checked (shared with the weekly points of
/// [`super::movement`], so both answer in exactly the same formats).
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    binary: bool,
    offset: usize,
    limit: Option<usize>,
}

impl PageRequest {
    /// Checks the `format`, `offset` and `limit` query fields, naming the bad one.
    pub fn parse(
        format: Option<&str>,
        offset: Option<&str>,
        limit: Option<&str>,
    ) -> Result<PageRequest, ApiError> {
        let binary = match format {
            None | Some("json") => false,
            Some("binary") => true,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "format: {other:?} is not a format; use json or binary"
                )));
            }
        };
        let offset = parse_count("offset", offset)?.unwrap_or(0);
        let limit = parse_count("limit", limit)?;
        if !binary && limit.is_some_and(|l| l == 0 || l > MAX_JSON_LIMIT) {
            return Err(ApiError::BadRequest(format!(
                "limit: must be 1 to {MAX_JSON_LIMIT} for JSON (use format=binary for more)"
            )));
        }
        if binary && limit == Some(0) {
            return Err(ApiError::BadRequest("limit: must be at least 1".into()));
        }
        Ok(PageRequest {
            binary,
            offset,
            limit,
        })
    }
}

/// One map's points to answer from: ids, segments (0 = none) and interleaved `x, y`, all in
/// the same order.
#[derive(Debug, Clone, Copy)]
pub struct PointsSource<'a> {
    /// The run id.
    pub run: &'a str,
    /// The map's key.
    pub method: &'a str,
    /// The week, for a tracked run's weekly map.
    pub week: Option<&'a str>,
    /// Customer ids.
    pub ids: &'a [String],
    /// Segment per customer, 0 = none.
    pub segments: &'a [u32],
    /// `x, y` per customer.
    pub xy: &'a [f32],
}

/// The page `request` asks for of `source`: a JSON page or the binary layout of the module
/// documentation.
pub fn points_response(
    request: PageRequest,
    source: PointsSource<'_>,
) -> Result<Response, ApiError> {
    let total = source.ids.len();
    let offset = request.offset;
    if offset > total {
        return Err(ApiError::BadRequest(format!(
            "offset: {offset} is past the last point (the map has {total})"
        )));
    }
    let limit = request.limit.unwrap_or(if request.binary {
        total
    } else {
        DEFAULT_JSON_LIMIT
    });
    let end = offset.saturating_add(limit).min(total);
    if request.binary {
        return Ok(binary_points(source.segments, source.xy, offset, end));
    }
    let page = PointsPage {
        method: source.method,
        next_offset: (end < total).then_some(end),
        offset,
        points: (offset..end)
            .map(|i| PointOut {
                id: &source.ids[i],
                segment: (source.segments[i] != 0).then_some(source.segments[i]),
                x: source.xy[2 * i],
                y: source.xy[2 * i + 1],
            })
            .collect(),
        run: source.run,
        total,
        week: source.week,
    };
    Ok(Json(page).into_response())
}

async fn points(
    State(state): State<AppState>,
    UrlPath((run_id, method)): UrlPath<(String, String)>,
    query: Result<Query<PointsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::BadRequest(format!("query: {}", e.body_text())))?;
    let request = PageRequest::parse(
        query.format.as_deref(),
        query.offset.as_deref(),
        query.limit.as_deref(),
    )?;
    let points = load(&state, run_id.clone()).await?;
    let method = method_of(&points, &run_id, &method)?;
    let Some(map) = points.map(method) else {
        return Err(ApiError::Internal);
    };
    points_response(
        request,
        PointsSource {
            run: &run_id,
            method: method.key(),
            week: None,
            ids: &points.ids,
            segments: &points.segments,
            xy: &map.xy,
        },
    )
}

/// A JSON page of points, serialised straight from borrowed data (a `serde_json::Value`
/// per point cost about a microsecond each). Fields in alphabetical order, as before.
#[derive(Serialize)]
struct PointsPage<'a> {
    method: &'a str,
    next_offset: Option<usize>,
    offset: usize,
    points: Vec<PointOut<'a>>,
    run: &'a str,
    total: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    week: Option<&'a str>,
}

/// One point of a JSON page.
#[derive(Serialize)]
struct PointOut<'a> {
    id: &'a str,
    segment: Option<u32>,
    x: f32,
    y: f32,
}

/// The binary layout over points `offset..end` of `segments`/`xy`; the segment width is
/// chosen over all of them, so every page of a map has the same one.
fn binary_points(segments: &[u32], xy: &[f32], offset: usize, end: usize) -> Response {
    let count = end - offset;
    let wide = segments.iter().any(|&s| s > u32::from(u16::MAX));
    let segment_bytes: u16 = if wide { 4 } else { 2 };
    let mut body =
        Vec::with_capacity(BINARY_HEADER_BYTES + count * (8 + usize::from(segment_bytes)));
    body.extend_from_slice(BINARY_MAGIC);
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&segment_bytes.to_le_bytes());
    for n in [segments.len(), offset, count, 0] {
        body.extend_from_slice(&(n as u32).to_le_bytes());
    }
    for v in &xy[2 * offset..2 * end] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    for &s in &segments[offset..end] {
        if wide {
            body.extend_from_slice(&s.to_le_bytes());
        } else {
            body.extend_from_slice(&(s as u16).to_le_bytes());
        }
    }
    ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response()
}

async fn customer_ids(
    State(state): State<AppState>,
    UrlPath(run_id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let points = load(&state, run_id.clone()).await?;
    Ok(Json(
        json!({"run": run_id, "total": points.len(), "ids": points.ids}),
    ))
}

async fn customer(
    State(state): State<AppState>,
    UrlPath((run_id, customer_id)): UrlPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let points = load(&state, run_id.clone()).await?;
    let Some(&row) = points.row_of.get(&customer_id) else {
        return Err(ApiError::NotFound(format!(
            "run {run_id:?} has no customer {customer_id:?}"
        )));
    };
    let maps: serde_json::Map<String, Value> = points
        .maps
        .iter()
        .map(|m| {
            (
                m.method.key().to_string(),
                json!({"x": m.xy[2 * row], "y": m.xy[2 * row + 1]}),
            )
        })
        .collect();
    let segment = points.segments[row];
    let mut body = json!({
        "run": run_id,
        "id": customer_id,
        "segment": if segment == 0 { Value::Null } else { segment.into() },
        "maps": maps,
        "profile": points.profiles.as_ref().map(|p| &p[row]),
    });
    if let Some(label) = points.labels.as_ref().map(|l| &l[row]) {
        body["label"] = label.clone().into();
    }
    if let Some(reason) = points
        .reasons
        .as_ref()
        .map(|r| &r[row])
        .filter(|r| !r.is_empty())
    {
        body["reason"] = reason.clone().into();
    }
    Ok(Json(body))
}

async fn kpi_values(
    State(state): State<AppState>,
    UrlPath((run_id, name)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    if !KPIS.contains(&name.as_str()) {
        return Err(ApiError::BadRequest(format!(
            "kpi: {name:?} is not a per-customer figure; use one of {}",
            KPIS.join(", ")
        )));
    }
    let points = load(&state, run_id.clone()).await?;
    let Some(profiles) = &points.profiles else {
        return Err(ApiError::NotFound(format!(
            "run {run_id:?} has no per-customer figures (only store runs have them)"
        )));
    };
    let mut body = Vec::with_capacity(profiles.len() * 4);
    for p in profiles {
        let value = p.kpi(&name).map_or(f32::NAN, |v| v as f32);
        body.extend_from_slice(&value.to_le_bytes());
    }
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}
