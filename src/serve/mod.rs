//! `segscope serve`: the HTTP service over the runs kept in a data directory.
//!
//! Owns the routes, their middleware (bearer-token auth on the API, body-size and time
//! limits, request metrics) and the server's life cycle (bind, serve, graceful shutdown on
//! Ctrl-C or SIGTERM). It reads runs through [`runs::RunCatalog`] and never writes them;
//! starting runs, the dashboard, web chat and Slack build on this module.
//!
//! Layout of the data directory: `runs/<run id>/` holds one run's files (`segments.json`,
//! `assignments.csv`, `report.html`, `run.json`), exactly as `segscope segment --out` writes
//! them, so a run made on the command line is served by copying its folder there; a folder
//! written by `segscope track --out` (`movement.json`, `weekly_assignments.csv`, `run.json`)
//! is served the same way. With `serve.watch.enabled`, `watch/` (or `serve.watch.folder`)
//! holds weekly files that are tracked again into `runs/<serve.watch.run_id>` whenever they
//! change (see [`watch`]), and open movement pages redraw (see [`live`]).
//!
//! Routes:
//! - `GET /healthz`: the process answers (no dependency checked);
//! - `GET /readyz`: the vector store can take work (see [`crate::store::probe`]), 503 if not;
//! - `GET /metrics`: Prometheus text format (requests by route and status, latencies);
//! - `POST /api/v1/runs`: start a run on files in `<data dir>/inbox` (202 and the run id;
//!   see [`start`]), `GET /api/v1/runs/{id}/progress` and `GET /api/v1/runs/{id}/events`
//!   (server-sent events) to follow it;
//! - `GET /api/v1/runs`, `GET /api/v1/runs/{id}`, `GET /api/v1/runs/{id}/segments`,
//!   `GET /api/v1/runs/{id}/segments/{segment}`, `GET /api/v1/runs/{id}/files/{name}`:
//!   JSON (or the file) for the stored runs;
//! - `PUT /api/v1/inbox/{name}` uploads an input file (checked before it is stored; see
//!   [`uploads`]) and `GET /api/v1/inbox` lists them;
//! - `POST /api/v1/runs/{id}/ask`: a plain-language question answered with cited figures
//!   (see [`chat`]); `POST /api/v1/runs/{id}/chat`: the same, streamed as server-sent
//!   events, with a conversation per browser session (see [`webchat`]);
//! - `GET /api/v1/runs/{id}/maps`, `.../maps/{method}/points`, `.../customers`,
//!   `.../customers/{customer}`, `.../kpis/{name}`: map points (JSON pages or packed binary)
//!   and customer look-ups (see [`maps`]);
//! - `GET /api/v1/runs/{id}/movement`, `.../movement/weeks/{week}/points`,
//!   `.../movement/flows`, `.../movement/alerts/{index}`, `.../movement/events`: a tracked
//!   run's weekly movement, each week's map points, flows between any two weeks, alert
//!   drill-down and live `week_added` events (see [`movement`]);
//! - `POST /slack/commands` (slash command) and `POST /slack/events` (Events API:
//!   `url_verification`, `app_mention`): the Slack app, acknowledged at once and answered
//!   later through Slack; every request's Slack signature is checked first (see [`slack`]);
//! - `/`, `/runs/{id}`, `/runs/{id}/movement`, `/runs/{id}/report`, `/runs/{id}/chat`,
//!   `/login`, `/logout`, `/assets/{name}`: the dashboard (see [`dashboard`]).
//!
//! The API is described by `schemas/openapi.json`, served at `GET /api/v1/openapi.json`
//! and checked against these routes by the tests. Everything under `/api` except that
//! document needs the bearer token (or the dashboard's login cookie) when one is
//! configured, and so do the dashboard's pages (see [`auth`]); `/slack` is authenticated by
//! Slack's signature instead (404 while no signing secret is configured). Every route has a
//! body-size limit and a request timeout (uploads their own, larger ones).

pub mod api;
pub mod auth;
pub mod chat;
pub mod dashboard;
pub mod jobs;
pub mod live;
pub mod maps;
pub mod metrics;
pub mod movement;
pub mod recent;
pub mod runs;
pub mod settings;
pub mod slack;
pub mod start;
pub mod uploads;
pub mod watch;
pub mod webchat;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, put};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

pub use settings::ServeSettings;

use crate::settings::Settings;

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The data directory cannot be used.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    /// The worker pool for runs could not be built.
    #[error("cannot start worker threads: {0}")]
    Threads(String),
    /// The Slack app's HTTP client could not be built.
    #[error("cannot set up the Slack app: {0}")]
    Slack(String),
    /// The watched folder cannot be used.
    #[error(transparent)]
    Watch(#[from] watch::WatchError),
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The runs on disk.
    pub runs: Arc<runs::RunCatalog>,
    /// Effective settings (store for readiness, serve for auth and limits).
    pub settings: Arc<Settings>,
    /// Where the data directory is (for the embedded store's files).
    pub data_dir: PathBuf,
    /// Request metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// Runs started through the API.
    pub jobs: Arc<jobs::Jobs>,
    /// The Slack app (verifier, poster, deliveries seen).
    pub slack: Arc<slack::Slack>,
    /// The dashboard's caches: parsed map points and web chat conversations.
    pub dashboard: Arc<dashboard::DashboardState>,
    /// Live updates of stored runs (a watched track gaining a week), for event streams.
    pub updates: Arc<live::RunUpdates>,
    /// Turns true when the service starts to stop (event streams end then).
    pub stopping: tokio::sync::watch::Receiver<bool>,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
}

impl AppState {
    /// State over `data_dir`, creating `data_dir/runs` and `data_dir/inbox` when missing.
    /// Must be called inside the tokio runtime the service runs on (jobs use its handle).
    pub fn new(settings: Settings, data_dir: PathBuf) -> Result<Self, ServeError> {
        let runs_dir = data_dir.join("runs");
        for dir in [&runs_dir, &data_dir.join(start::INBOX)] {
            std::fs::create_dir_all(dir).map_err(|source| ServeError::DataDir {
                path: dir.clone(),
                source,
            })?;
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(settings.run.threads)
            .build()
            .map_err(|e| ServeError::Threads(e.to_string()))?;
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let metrics = Arc::new(metrics::Metrics::new());
        let slack = slack::Slack::new(&settings).map_err(ServeError::Slack)?;
        let dashboard = Arc::new(dashboard::DashboardState::new());
        let updates = Arc::new(live::RunUpdates::default());
        tokio::spawn(movement::forget_on_updates(
            updates.subscribe(),
            Arc::clone(&dashboard),
            stopping.clone(),
        ));
        Ok(AppState {
            runs: Arc::new(runs::RunCatalog::new(runs_dir)),
            settings: Arc::new(settings),
            data_dir,
            jobs: Arc::new(jobs::Jobs::new(
                tokio::runtime::Handle::current(),
                Arc::new(pool),
                Arc::clone(&metrics),
            )),
            metrics,
            slack: Arc::new(slack),
            dashboard,
            updates,
            stopping,
            stop: Arc::new(stop),
        })
    }
}

/// Every route with its middleware.
///
/// Uploads get their own body limit and timeout (a large export takes minutes); every other
/// route is held to `serve.max_body_bytes` and `serve.request_timeout_secs`.
pub fn router(state: AppState) -> Router {
    let serve = &state.settings.serve;
    let bearer = || axum::middleware::from_fn_with_state(state.clone(), auth::require_token);
    let limited = Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(metrics::render))
        .route("/api/v1/openapi.json", get(api::openapi))
        .nest("/api/v1", api::routes().layer(bearer()))
        .merge(slack::routes())
        .merge(dashboard::routes(state.clone()))
        .layer(RequestBodyLimitLayer::new(serve.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs_f64(serve.request_timeout_secs),
        ));
    let upload_limit = usize::try_from(serve.max_upload_bytes).unwrap_or(usize::MAX);
    let uploads = Router::new()
        .route("/api/v1/inbox/{name}", put(uploads::upload))
        .layer(bearer())
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(upload_limit))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs_f64(serve.upload_timeout_secs),
        ));
    limited
        .merge(uploads)
        .fallback(api::not_found)
        .layer(axum::middleware::map_response(api::json_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// Serves on `addr` until `shutdown` resolves, then stops taking connections, ends the
/// event streams, lets the requests in flight finish and marks runs that have not finished
/// as interrupted. `ready` receives the bound address (port 0 picks a free one).
pub async fn serve(
    state: AppState,
    addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener.local_addr()?;
    tracing::info!(%bound, "segscope serve listening");
    // Before `ready`: a watched folder that cannot be used stops the start, not a later look.
    watch::spawn(&state)?;
    ready(bound);
    let stop = Arc::clone(&state.stop);
    let mut stopping = state.stopping.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let jobs = Arc::clone(&state.jobs);
    let slack = Arc::clone(&state.slack);
    let grace = Duration::from_secs_f64(state.settings.serve.request_timeout_secs);
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            let _ = stopping.wait_for(|stopping| *stopping).await;
        })
        .await?;
    jobs.interrupt_unfinished();
    // Slack answers already acknowledged get a last chance to be delivered.
    if tokio::time::timeout(grace, slack.settled()).await.is_err() {
        tracing::warn!("Slack answers still in flight at shutdown were dropped");
    }
    tracing::info!("segscope serve stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM (what `docker stop` and Kubernetes send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
