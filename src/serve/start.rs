//! Starting runs through the API and following them.
//!
//! `POST /api/v1/runs` takes JSON naming files in `<data dir>/inbox` (relative paths only:
//! a request can never make the service read outside that folder) and a few run options:
//!
//! ```json
//! {"kind": "table", "features": "iris.csv", "id_column": "id", "label_column": "species",
//!  "k": 3, "method": "kmeans", "maps": ["pca", "umap"], "seed": 7}
//! {"kind": "store", "transactions": "tx.csv.gz", "events": "events.csv", "as_of": "2026-11-01"}
//! ```
//!
//! Everything is validated before the job is queued (unknown fields, missing files, bad
//! options: 400 naming the field); the answer is 202 with the run id and where to follow it.

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path as UrlPath, Request, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures::Stream;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::api::ApiError;
use super::jobs::{JobRequest, JobStatus, recorded_status};
use super::runs::valid_run_id;
use crate::domain::{MapMethod, Method};
use crate::ingest::FeatureTableSpec;
use crate::pipeline::{SegmentRequest, StoreSegmentRequest, parse_as_of};
use crate::settings::{KSetting, Settings};

/// The folder under the data directory that requests may name files in.
pub const INBOX: &str = "inbox";

/// JSON that failed to parse becomes a 400 naming the field, line and column.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(ApiError::BadRequest(match rejection {
                JsonRejection::MissingJsonContentType(_) => {
                    "send the body as JSON (Content-Type: application/json)".into()
                }
                other => format!("request body: {}", other.body_text()),
            })),
        }
    }
}

/// Options every run may set; anything else comes from the service's settings.
#[derive(Debug, Default)]
struct RunOptions {
    k: Option<KSetting>,
    method: Option<Method>,
    maps: Option<Vec<MapMethod>>,
    seed: Option<u64>,
}

/// The body of `POST /api/v1/runs`. Options (`k`, `method`, `maps`, `seed`) are written out
/// in each kind rather than flattened, because serde ignores unknown fields under `flatten`
/// and a misspelt option must be an error, not a silent default.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StartRun {
    /// A numeric feature table.
    Table {
        /// The table, relative to the inbox.
        features: String,
        /// Its id column.
        id_column: String,
        /// A label column to compare against.
        label_column: Option<String>,
        /// Number of segments (`"auto"` or a number).
        k: Option<KSetting>,
        /// Clustering method.
        method: Option<Method>,
        /// Maps to draw.
        maps: Option<Vec<MapMethod>>,
        /// Seed.
        seed: Option<u64>,
    },
    /// Store data.
    Store {
        /// Transactions (Online Retail II layout), relative to the inbox.
        transactions: Option<String>,
        /// Browsing events (REES46 layout), relative to the inbox.
        events: Option<String>,
        /// Reference date (`YYYY-MM-DD`, end of day UTC) or RFC 3339 instant.
        as_of: Option<String>,
        /// Number of segments (`"auto"` or a number).
        k: Option<KSetting>,
        /// Clustering method.
        method: Option<Method>,
        /// Maps to draw.
        maps: Option<Vec<MapMethod>>,
        /// Seed.
        seed: Option<u64>,
    },
}

/// A file named in a request: relative, inside the inbox, existing.
fn inbox_file(data_dir: &Path, field: &str, name: &str) -> Result<PathBuf, ApiError> {
    let relative = Path::new(name);
    let inside = !name.is_empty()
        && relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if !inside {
        return Err(ApiError::BadRequest(format!(
            "{field}: {name:?} must be a relative path inside the inbox, without '..'"
        )));
    }
    let path = data_dir.join(INBOX).join(relative);
    if !path.is_file() {
        return Err(ApiError::BadRequest(format!(
            "{field}: {name:?} is not a file in the inbox"
        )));
    }
    Ok(path)
}

fn apply(options: RunOptions, settings: &mut Settings) -> Result<(), ApiError> {
    if let Some(k) = options.k {
        settings.segment.k = k;
    }
    if let Some(method) = options.method {
        settings.segment.method = method;
    }
    if let Some(maps) = options.maps {
        settings.segment.maps = maps;
    }
    if let Some(seed) = options.seed {
        settings.run.seed = seed;
    }
    settings
        .validate()
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// A new run id: the start time and a sequence number, unique in the runs folder.
fn new_run_id(runs_dir: &Path) -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n:03}", Utc::now().format("%Y%m%d-%H%M%S"));
        if !runs_dir.join(&id).exists() {
            return id;
        }
    }
}

/// `POST /api/v1/runs`: validates and queues a run; 202 with its id.
pub async fn start_run(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<StartRun>,
) -> Result<Response, ApiError> {
    let mut settings = (*state.settings).clone();
    let run_id = new_run_id(state.runs.dir());
    let out_dir = state.runs.dir().join(&run_id);
    let request = match body {
        StartRun::Table {
            features,
            id_column,
            label_column,
            k,
            method,
            maps,
            seed,
        } => {
            let features = inbox_file(&state.data_dir, "features", &features)?;
            apply(
                RunOptions {
                    k,
                    method,
                    maps,
                    seed,
                },
                &mut settings,
            )?;
            JobRequest::Table(SegmentRequest {
                features,
                table: FeatureTableSpec {
                    id_column,
                    label_column,
                    delimiter: settings.delimiter_byte(),
                },
                settings,
                out_dir,
            })
        }
        StartRun::Store {
            transactions,
            events,
            as_of,
            k,
            method,
            maps,
            seed,
        } => {
            if transactions.is_none() && events.is_none() {
                return Err(ApiError::BadRequest(
                    "transactions, events: name at least one of them".into(),
                ));
            }
            let transactions = transactions
                .map(|t| inbox_file(&state.data_dir, "transactions", &t))
                .transpose()?;
            let events = events
                .map(|e| inbox_file(&state.data_dir, "events", &e))
                .transpose()?;
            let as_of = as_of
                .as_deref()
                .map(parse_as_of)
                .transpose()
                .map_err(|e| ApiError::BadRequest(format!("as_of: {e}")))?;
            apply(
                RunOptions {
                    k,
                    method,
                    maps,
                    seed,
                },
                &mut settings,
            )?;
            JobRequest::Store(StoreSegmentRequest {
                transactions,
                events,
                as_of,
                labels: None,
                data_dir: state.data_dir.join("store"),
                settings,
                out_dir,
            })
        }
    };
    state.jobs.start(run_id.clone(), request);
    tracing::info!(run_id = run_id.as_str(), "run queued");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "run_id": run_id,
            "progress": format!("/api/v1/runs/{run_id}/progress"),
            "events": format!("/api/v1/runs/{run_id}/events"),
        })),
    )
        .into_response())
}

/// The status of a run: its job's when it ran in this process, else what its folder says.
fn status_of(state: &AppState, run_id: &str) -> Result<JobStatus, ApiError> {
    if !valid_run_id(run_id) {
        return Err(ApiError::BadRequest(format!(
            "run id {run_id:?} is not valid: use 1 to 64 letters, digits, '-' or '_'"
        )));
    }
    if let Some(watch) = state.jobs.watch(run_id) {
        return Ok(watch.borrow().clone());
    }
    let dir = state.runs.dir().join(run_id);
    if let Some(recorded) = recorded_status(&dir) {
        return Ok(recorded);
    }
    if dir.join("segments.json").is_file() {
        return Ok(JobStatus {
            run_id: run_id.to_string(),
            state: super::jobs::JobState::Succeeded,
            stage: "done".into(),
            stage_fraction: None,
            percent: 100.0,
            error: None,
        });
    }
    Err(ApiError::NotFound(format!("no run {run_id:?}")))
}

/// `GET /api/v1/runs/{id}/progress`.
pub async fn progress(
    State(state): State<AppState>,
    UrlPath(run_id): UrlPath<String>,
) -> Result<Json<JobStatus>, ApiError> {
    status_of(&state, &run_id).map(Json)
}

/// `GET /api/v1/runs/{id}/events`: a `progress` event with the status now and at every
/// change, until the run ends or the service stops.
pub async fn events(
    State(state): State<AppState>,
    UrlPath(run_id): UrlPath<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>, ApiError> {
    let first = status_of(&state, &run_id)?;
    let watch = state.jobs.watch(&run_id);
    let stopping = state.stopping.clone();
    let stream = futures::stream::unfold(
        (Some(first), watch, stopping, false),
        |(pending, mut watch, mut stopping, ended)| async move {
            if let Some(status) = pending {
                let ended = status.state.is_terminal();
                return Some((Ok(progress_event(&status)), (None, watch, stopping, ended)));
            }
            if ended {
                return None;
            }
            let receiver = watch.as_mut()?;
            let changed = tokio::select! {
                changed = receiver.changed() => changed.is_ok(),
                _ = stopping.wait_for(|s| *s) => false,
            };
            if !changed {
                return None;
            }
            let status = receiver.borrow_and_update().clone();
            let ended = status.state.is_terminal();
            Some((Ok(progress_event(&status)), (None, watch, stopping, ended)))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn progress_event(status: &JobStatus) -> Event {
    Event::default()
        .event("progress")
        .json_data(status)
        .unwrap_or_else(|_| Event::default().event("progress"))
}
