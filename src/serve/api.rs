//! The JSON API's handlers and its error shape.
//!
//! Every error is `{"error": {"code": "...", "message": "..."}}` with a 4xx status naming
//! what was wrong (the run id, the file name), or a 5xx whose message says only that the
//! server failed: the cause (paths, parse errors) goes to the log, never to the client.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::AppState;
use super::runs::{RunError, RunSummary};

/// An API failure, rendered as JSON.
#[derive(Debug)]
pub enum ApiError {
    /// No or wrong bearer token.
    Unauthorized,
    /// The path names nothing (unknown route, run, segment or file).
    NotFound(String),
    /// A path or body value is malformed; the message names it.
    BadRequest(String),
    /// The request clashes with what is stored (a file of that name exists).
    Conflict(String),
    /// The body is larger than allowed.
    TooLarge(String),
    /// The body is well-formed but its content is refused (an upload that is not valid CSV);
    /// the message names the file, line and column.
    Unprocessable(String),
    /// The server failed; details are logged, not returned.
    Internal,
    /// The request took longer than allowed.
    Timeout,
    /// An outside service (the chat model) failed after its retries.
    Upstream,
}

impl ApiError {
    /// Status, code and message, as the JSON body and the web chat's `error` event show them.
    pub fn parts(self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong bearer token (Authorization: Bearer <serve.token>)".to_string(),
            ),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", m),
            ApiError::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_file", m),
            ApiError::Upstream => (
                StatusCode::BAD_GATEWAY,
                "upstream",
                "the chat model did not answer; try again later".to_string(),
            ),
            ApiError::Timeout => (
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the request took longer than serve.request_timeout_secs".to_string(),
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the server failed; the cause is in its log".to_string(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        let mut response = (
            status,
            Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<RunError> for ApiError {
    fn from(error: RunError) -> Self {
        match error {
            RunError::InvalidId(_) | RunError::UnknownFile(_) => {
                ApiError::BadRequest(error.to_string())
            }
            RunError::NotFound(_) | RunError::NoMovement(_) => {
                ApiError::NotFound(error.to_string())
            }
            RunError::Unreadable { .. } => {
                tracing::error!(%error, "run unreadable");
                ApiError::Internal
            }
        }
    }
}

/// The `/api/v1` routes (auth is layered on by [`super::router`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/runs", get(list_runs).post(super::start::start_run))
        .route("/inbox", get(super::uploads::list))
        .route("/runs/{id}/progress", get(super::start::progress))
        .route("/runs/{id}/events", get(super::start::events))
        .route("/runs/{id}/ask", axum::routing::post(super::chat::ask))
        .route("/runs/{id}", get(run))
        .route("/runs/{id}/segments", get(segments))
        .route("/runs/{id}/segments/{segment}", get(segment))
        .route("/runs/{id}/files/{name}", get(file))
        .merge(super::maps::routes())
        .merge(super::movement::routes())
        .merge(super::webchat::api_routes())
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when the vector store can take work, else 503 with the reason.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match crate::store::probe(&state.settings.store, &state.data_dir.join("store")).await {
        Ok(backend) => Json(json!({"status": "ready", "store": backend})).into_response(),
        Err(error) => {
            tracing::warn!(%error, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "not_ready", "reason": "the vector store is not reachable"})),
            )
                .into_response()
        }
    }
}

/// The API's OpenAPI document, compiled in so the binary describes itself.
pub const OPENAPI: &str = include_str!("../../schemas/openapi.json");

/// `GET /api/v1/openapi.json`.
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Middleware: gives the bare 408 and 413 answers of the timeout and body-limit layers the
/// API's JSON error body, so every error a client sees has the same shape.
pub async fn json_errors(response: Response) -> Response {
    let bare = !response.headers().contains_key(header::CONTENT_TYPE)
        || response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    match response.status() {
        StatusCode::PAYLOAD_TOO_LARGE if bare => ApiError::TooLarge(
            "the request body is larger than this route accepts (serve.max_body_bytes, or \
             serve.max_upload_bytes for uploads)"
                .into(),
        )
        .into_response(),
        StatusCode::REQUEST_TIMEOUT if bare => ApiError::Timeout.into_response(),
        _ => response,
    }
}

/// Unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

/// Runs blocking file reads off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RunError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "run read task failed");
            ApiError::Internal
        })?
        .map_err(ApiError::from)
}

async fn list_runs(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let runs: Vec<RunSummary> = blocking(move || state.runs.list()).await?;
    Ok(Json(json!({"runs": runs})))
}

async fn run(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(blocking(move || state.runs.segments(&id)).await?))
}

async fn segments(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let doc = blocking(move || state.runs.segments(&id)).await?;
    Ok(Json(json!({
        "segments": doc["segments"],
        "caveats": doc["caveats"],
        "quality": doc["quality"],
        "narrator": doc["narrator"],
    })))
}

async fn segment(
    State(state): State<AppState>,
    Path((id, segment)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let number: u64 = segment.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "segment {segment:?} is not a segment id (1, 2, ...)"
        ))
    })?;
    let run_id = id.clone();
    let doc = blocking(move || state.runs.segments(&run_id)).await?;
    doc["segments"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["id"].as_u64() == Some(number)))
        .map(|s| Json(s.clone()))
        .ok_or_else(|| ApiError::NotFound(format!("run {id:?} has no segment {number}")))
}

async fn file(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let disposition = format!("attachment; filename=\"{id}-{name}\"");
    let (bytes, media) = blocking(move || state.runs.file(&id, &name)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, media.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}
