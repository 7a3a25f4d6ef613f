//! The dashboard: server-rendered pages over the runs, plus the small hand-written script
//! and style sheet they load.
//!
//! Pages (HTML; with `serve.token` set each needs the login cookie, else it redirects to
//! `/login?next=...`):
//! - `GET /`: the runs, newest first, and a form that starts a run on inbox files (through
//!   `POST /api/v1/runs`, progress followed over its event stream);
//! - `GET /runs/{id}`: the map (WebGL, drawn by `assets/map.js` from the binary points of
//!   [`super::maps`]), segment cards (`#segment-N`), the validity panel in plain words and
//!   the downloads;
//!   (a run only `segscope track` wrote redirects to its movement page);
//! - `GET /runs/{id}/movement`: a tracked run's weeks (`assets/movement.js` over
//!   [`super::movement`]): segment shares over the weeks (SVG), a Sankey of the flows
//!   between any two weeks, the map stepped week by week (WebGL, drawn by the same
//!   `assets/pointmap.js` as the run map), and the alerts with their customers; it follows
//!   the run's event stream and takes new weeks in without a reload;
//! - `GET /runs/{id}/report`: the run's own `report.html` briefing, as written;
//! - `GET /runs/{id}/chat`: the web chat (`assets/chat.js` over [`super::webchat`]);
//! - `GET /login`, `POST /login` (form field `token`), `GET /logout`: see [`super::auth`] for
//!   the cookie.
//!
//! Assets: `GET /assets/{name}` serves the files compiled into the binary (no CDN, no build
//! step). Pages link them as `/assets/NAME?v=HASH`, the first 12 hex digits of the file's
//! SHA-256: that URL changes whenever the file does, so it is cached for a year
//! (`immutable`); any other URL of an asset is revalidated by ETag.
//!
//! Templates live in `templates/dashboard/` and are compiled in as well; everything that
//! comes from data (names, descriptions, ids) reaches a page through tera's HTML escaping,
//! or as JSON inside a non-executed `<script type="application/json">` with `<` escaped,
//! and the pages' scripts write text with `textContent`, never markup. Pages are sent with
//! a Content-Security-Policy that allows only this server's own scripts.

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::AppState;
use super::auth::{SESSION_COOKIE, has_session, session_value, token_matches};
use super::maps::PointsCache;
use super::movement::MovementCache;
use super::runs::{DOWNLOADS, RunError, RunSummary};
use super::webchat::Conversations;
use crate::narrative::reading;

/// What the dashboard keeps between requests.
#[derive(Debug, Default)]
pub struct DashboardState {
    /// Parsed `assignments.csv`/`profiles.csv` of recently viewed runs.
    pub points: Arc<PointsCache>,
    /// Parsed `movement.json`/`weekly_assignments.csv` of recently viewed tracked runs.
    pub movement: Arc<MovementCache>,
    /// Web chat conversations.
    pub conversations: Conversations,
}

impl DashboardState {
    /// Empty caches.
    pub fn new() -> Self {
        DashboardState::default()
    }
}

/// One embedded file.
struct Asset {
    name: &'static str,
    media: &'static str,
    body: &'static str,
}

const ASSETS: [Asset; 6] = [
    Asset {
        name: "dashboard.css",
        media: "text/css; charset=utf-8",
        body: include_str!("../../templates/dashboard/assets/dashboard.css"),
    },
    Asset {
        name: "pointmap.js",
        media: "text/javascript; charset=utf-8",
        body: include_str!("../../templates/dashboard/assets/pointmap.js"),
    },
    Asset {
        name: "movement.js",
        media: "text/javascript; charset=utf-8",
        body: include_str!("../../templates/dashboard/assets/movement.js"),
    },
    Asset {
        name: "map.js",
        media: "text/javascript; charset=utf-8",
        body: include_str!("../../templates/dashboard/assets/map.js"),
    },
    Asset {
        name: "runs.js",
        media: "text/javascript; charset=utf-8",
        body: include_str!("../../templates/dashboard/assets/runs.js"),
    },
    Asset {
        name: "chat.js",
        media: "text/javascript; charset=utf-8",
        body: include_str!("../../templates/dashboard/assets/chat.js"),
    },
];

/// Short content hash of each asset, in [`ASSETS`] order.
static ASSET_HASHES: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            Sha256::digest(a.body.as_bytes())
                .iter()
                .take(6)
                .map(|b| format!("{b:02x}"))
                .collect()
        })
        .collect()
});

const TEMPLATES: [(&str, &str); 7] = [
    (
        "layout.html",
        include_str!("../../templates/dashboard/layout.html.tera"),
    ),
    (
        "runs.html",
        include_str!("../../templates/dashboard/runs.html.tera"),
    ),
    (
        "run.html",
        include_str!("../../templates/dashboard/run.html.tera"),
    ),
    (
        "movement.html",
        include_str!("../../templates/dashboard/movement.html.tera"),
    ),
    (
        "chat.html",
        include_str!("../../templates/dashboard/chat.html.tera"),
    ),
    (
        "login.html",
        include_str!("../../templates/dashboard/login.html.tera"),
    ),
    (
        "error.html",
        include_str!("../../templates/dashboard/error.html.tera"),
    ),
];

static TERA: LazyLock<Result<tera::Tera, String>> = LazyLock::new(|| {
    let mut tera = tera::Tera::default();
    tera.autoescape_on(vec![".html"]);
    tera.add_raw_templates(TEMPLATES.to_vec())
        .map_err(|e| format!("{e:?}"))?;
    Ok(tera)
});

/// A page that could not be shown: rendered as a small HTML page with the status.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    fn internal() -> Self {
        PageError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "The server failed; the cause is in its log.".into(),
        }
    }
}

impl From<RunError> for PageError {
    fn from(error: RunError) -> Self {
        match error {
            RunError::InvalidId(_) | RunError::UnknownFile(_) => PageError {
                status: StatusCode::BAD_REQUEST,
                message: error.to_string(),
            },
            RunError::NotFound(_) | RunError::NoMovement(_) => PageError {
                status: StatusCode::NOT_FOUND,
                message: error.to_string(),
            },
            RunError::Unreadable { .. } => {
                tracing::error!(%error, "run unreadable");
                PageError::internal()
            }
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let mut context = tera::Context::new();
        context.insert("title", &format!("Error {}", self.status.as_u16()));
        context.insert("status", &self.status.as_u16());
        context.insert("message", &self.message);
        match render("error.html", context) {
            Ok(mut page) => {
                *page.status_mut() = self.status;
                page
            }
            Err(_) => (self.status, self.message).into_response(),
        }
    }
}

/// Headers every page carries: no caching of run data, no framing, only our own scripts.
fn page_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

fn render(name: &str, mut context: tera::Context) -> Result<Response, PageError> {
    let tera = TERA.as_ref().map_err(|error| {
        tracing::error!(%error, "dashboard templates");
        PageError::internal()
    })?;
    let assets: serde_json::Map<String, Value> = ASSETS
        .iter()
        .zip(ASSET_HASHES.iter())
        .map(|(a, hash)| {
            (
                a.name.replace('.', "_"),
                format!("/assets/{}?v={hash}", a.name).into(),
            )
        })
        .collect();
    context.insert("assets", &assets);
    let html = tera.render(name, &context).map_err(|error| {
        tracing::error!(error = ?error, template = name, "dashboard page");
        PageError::internal()
    })?;
    let mut response = Html(html).into_response();
    page_headers(&mut response);
    Ok(response)
}

/// The dashboard's routes: pages behind [`require_login`], login and assets open.
pub fn routes(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/", get(runs_page))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/movement", get(movement_page))
        .route("/runs/{id}/report", get(report_page))
        .route("/runs/{id}/chat", get(chat_page))
        .layer(axum::middleware::from_fn_with_state(state, require_login));
    Router::new()
        .merge(pages)
        .route("/login", get(login_page).post(login))
        .route("/logout", get(logout))
        .route("/assets/{name}", get(asset))
}

/// Sends a page request without a valid session to `/login?next=<its path>`.
pub async fn require_login(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if has_session(&state, request.headers()) {
        return next.run(request).await;
    }
    let wanted = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let query = query_pair("next", &wanted);
    Redirect::to(&format!("/login?{query}")).into_response()
}

/// `key=value` with the value percent-encoded for a query string.
fn query_pair(key: &str, value: &str) -> String {
    let encoded: String = value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("{key}={encoded}")
}

/// Where to go after logging in: a path on this server only (never `//host` or a URL), so
/// the login cannot be used to send people elsewhere.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p.into(),
        _ => "/".into(),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RunError> + Send + 'static,
) -> Result<T, PageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "dashboard read task failed");
            PageError::internal()
        })?
        .map_err(PageError::from)
}

async fn runs_page(State(state): State<AppState>) -> Result<Response, PageError> {
    let runs: Vec<RunSummary> = blocking(move || state.runs.list()).await?;
    let mut context = tera::Context::new();
    context.insert("runs", &runs);
    context.insert("title", "Runs");
    render("runs.html", context)
}

/// A quality figure with its plain-language reading.
#[derive(Serialize)]
struct Reading {
    label: &'static str,
    value: String,
    text: String,
}

fn readings(doc: &Value) -> Vec<Reading> {
    let q = &doc["quality"];
    let mut out = Vec::new();
    let mut add = |label, value: Option<f64>, text: fn(f64) -> String| {
        if let Some(v) = value {
            out.push(Reading {
                label,
                value: reading::figure(v),
                text: text(v),
            });
        }
    };
    add("Silhouette", q["silhouette"].as_f64(), reading::silhouette);
    add(
        "Davies–Bouldin",
        q["davies_bouldin"].as_f64(),
        reading::davies_bouldin,
    );
    add(
        "Calinski–Harabasz",
        q["calinski_harabasz"].as_f64(),
        reading::calinski_harabasz,
    );
    if let (Some(ari), Some(resamples)) = (
        q["stability"]["mean_ari"].as_f64(),
        q["stability"]["resamples"].as_u64(),
    ) {
        out.push(Reading {
            label: "Stability",
            value: reading::figure(ari),
            text: reading::stability(ari, resamples as usize),
        });
    }
    for (key, title) in [("pca", "PCA"), ("umap", "UMAP"), ("tsne", "t-SNE")] {
        let map = &doc["maps"][key];
        if let (Some(t), Some(k)) = (
            map["trustworthiness"].as_f64(),
            map["trustworthiness_neighbors"].as_u64(),
        ) {
            out.push(Reading {
                label: title,
                value: reading::figure(t),
                text: reading::trustworthiness(title, t, k as usize),
            });
        }
    }
    out
}

/// The run's data the map script needs, as JSON safe inside a `<script>` element.
fn run_data(id: &str, doc: &Value) -> String {
    let segments: Vec<Value> = doc["segments"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|s| json!({"id": s["id"], "name": s["name"]}))
                .collect()
        })
        .unwrap_or_default();
    json!({"run": id, "n_customers": doc["n_customers"], "segments": segments})
        .to_string()
        .replace('<', "\\u003c")
}

async fn run_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let runs = Arc::clone(&state.runs);
    let run_id = id.clone();
    let summary = blocking(move || runs.summary(&run_id)).await?;
    if summary.method == "track" {
        // Only `segscope track` wrote this run: its weeks are what there is to show.
        return Ok(Redirect::to(&format!("/runs/{id}/movement")).into_response());
    }
    let runs = Arc::clone(&state.runs);
    let run_id = id.clone();
    let (doc, summary, files) = blocking(move || {
        let doc = runs.segments(&run_id)?;
        let summary = runs.summary(&run_id)?;
        let dir = runs.dir().join(&run_id);
        let files: Vec<&str> = DOWNLOADS
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| dir.join(name).is_file())
            .collect();
        Ok((doc, summary, files))
    })
    .await?;
    let mut context = tera::Context::new();
    context.insert("title", &format!("Run {id}"));
    context.insert("run", &summary);
    context.insert("doc", &doc);
    context.insert("readings", &readings(&doc));
    context.insert("files", &files);
    context.insert("run_json", &run_data(&id, &doc));
    render("run.html", context)
}

/// What the movement page's script starts from, as JSON safe inside a `<script>` element:
/// the run, its weeks, the maps every week is placed on and the segment ids. Everything
/// else it reads from the API (and again when a week is added).
fn movement_data(id: &str, weeks: &[String], maps: &[String], doc: &Value) -> String {
    let maps: Vec<Value> = maps
        .iter()
        .map(|key| {
            let title = key
                .parse::<crate::domain::MapMethod>()
                .map_or_else(|_| key.clone(), |m| m.display_name().to_string());
            json!({"key": key, "title": title})
        })
        .collect();
    let segments: Vec<Value> = doc["segments"]
        .as_array()
        .map(|all| all.iter().map(|s| s["id"].clone()).collect())
        .unwrap_or_default();
    json!({"run": id, "weeks": weeks, "maps": maps, "segments": segments})
        .to_string()
        .replace('<', "\\u003c")
}

async fn movement_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let runs = Arc::clone(&state.runs);
    let run_id = id.clone();
    let summary = blocking(move || runs.summary(&run_id)).await?;
    let movement = super::movement::load(&state, id.clone())
        .await
        .map_err(|error| {
            let (status, _, message) = error.parts();
            PageError { status, message }
        })?;
    let weeks = movement.week_labels();
    let doc: Value = movement.document().clone();
    let mut context = tera::Context::new();
    context.insert("title", &format!("Movement of run {id}"));
    context.insert("run", &summary);
    context.insert("weeks", &weeks);
    context.insert(
        "movement_json",
        &movement_data(&id, &weeks, movement.map_keys(), &doc),
    );
    render("movement.html", context)
}

async fn report_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let (bytes, media) = blocking(move || state.runs.file(&id, "report.html")).await?;
    // The briefing is self-contained with inline script and style: it gets its own policy
    // (inline allowed, nothing fetched from anywhere).
    let mut response = ([(header::CONTENT_TYPE, media)], bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             img-src data:; frame-ancestors 'none'",
        ),
    );
    Ok(response)
}

async fn chat_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let runs = Arc::clone(&state.runs);
    let run_id = id.clone();
    let summary = blocking(move || runs.summary(&run_id)).await?;
    let mut context = tera::Context::new();
    context.insert("title", &format!("Ask about run {id}"));
    context.insert("run", &summary);
    render("chat.html", context)
}

/// Query of `GET /login`.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    /// Where to go after logging in.
    pub next: Option<String>,
}

fn login_form(next: &str, failed: bool) -> Result<Response, PageError> {
    let mut context = tera::Context::new();
    context.insert("title", "Log in");
    context.insert("next", next);
    context.insert("failed", &failed);
    render("login.html", context)
}

async fn login_page(
    State(state): State<AppState>,
    Query(query): Query<LoginQuery>,
) -> Result<Response, PageError> {
    let next = local_path(query.next.as_deref());
    if state.settings.serve.token.expose().is_empty() {
        return Ok(Redirect::to(&next).into_response());
    }
    login_form(&next, false)
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    /// The service's token (`serve.token`).
    pub token: String,
    /// Where to go after logging in.
    pub next: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    axum::Form(form): axum::Form<LoginForm>,
) -> Result<Response, PageError> {
    let next = local_path(form.next.as_deref());
    let token = state.settings.serve.token.expose();
    if token.is_empty() {
        return Ok(Redirect::to(&next).into_response());
    }
    if !token_matches(&state, &form.token) {
        tracing::warn!("dashboard login refused");
        let mut page = login_form(&next, true)?;
        *page.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(page);
    }
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; Secure; SameSite=Strict",
        session_value(token)
    );
    let mut response = Redirect::to(&next).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

async fn logout() -> Response {
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "segscope_session=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}

/// Query of an asset URL.
#[derive(Debug, Deserialize)]
pub struct AssetQuery {
    /// The content hash the page linked.
    pub v: Option<String>,
}

async fn asset(
    Path(name): Path<String>,
    Query(query): Query<AssetQuery>,
    headers: HeaderMap,
) -> Response {
    let Some((asset, hash)) = ASSETS
        .iter()
        .zip(ASSET_HASHES.iter())
        .find(|(a, _)| a.name == name)
    else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let etag = format!("\"{hash}\"");
    let cache = if query.v.as_deref() == Some(hash.as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag);
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.media)], asset.body).into_response()
    };
    let out = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, value);
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_only_go_back_to_local_paths() {
        assert_eq!(local_path(Some("/runs/a?x=1")), "/runs/a?x=1");
        for bad in ["//evil.example", "https://evil.example", "/\\evil", "runs"] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local_path(None), "/");
        assert_eq!(
            query_pair("next", "/runs/a?x=1&y"),
            "next=/runs/a%3Fx%3D1%26y"
        );
    }

    #[test]
    fn every_template_compiles() {
        assert!(TERA.is_ok(), "{:?}", TERA.as_ref().err());
    }
}
