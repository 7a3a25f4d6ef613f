//! `segscope serve`: the HTTP service over the runs kept in a data directory.
//!
//! Owns the routes, their middleware (bearer-token auth on the API, body-size and time
//! limits, request metrics) and the server's life cycle (bind, serve, graceful shutdown on
//! Ctrl-C or SIGTERM). It reads runs through [`runs::RunCatalog`] and never writes them;
//! starting runs, the dashboard, web chat and Slack build on this module.
//!
//! Layout of the data directory: `runs/<run id>/` holds one run's files (`segments.json`,
//! `assignments.csv`, `report.html`, `run.json`), exactly as `segscope segment --out` writes
//! them, so a run made on the command line is served by copying its folder there.
//!
//! Routes:
//! - `GET /healthz`: the process answers (no dependency checked);
//! - `GET /readyz`: the vector store can take work (see [`crate::store::probe`]), 503 if not;
//! - `GET /metrics`: Prometheus text format (requests by route and status, latencies);
//! - `GET /api/v1/runs`, `GET /api/v1/runs/{id}`, `GET /api/v1/runs/{id}/segments`,
//!   `GET /api/v1/runs/{id}/segments/{segment}`, `GET /api/v1/runs/{id}/files/{name}`:
//!   JSON (or the file) for the stored runs, behind the bearer token when one is configured.

pub mod api;
pub mod auth;
pub mod metrics;
pub mod runs;
pub mod settings;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
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
}

impl AppState {
    /// State over `data_dir`, creating `data_dir/runs` when missing.
    pub fn new(settings: Settings, data_dir: PathBuf) -> Result<Self, ServeError> {
        let runs_dir = data_dir.join("runs");
        std::fs::create_dir_all(&runs_dir).map_err(|source| ServeError::DataDir {
            path: runs_dir.clone(),
            source,
        })?;
        Ok(AppState {
            runs: Arc::new(runs::RunCatalog::new(runs_dir)),
            settings: Arc::new(settings),
            data_dir,
            metrics: Arc::new(metrics::Metrics::new()),
        })
    }
}

/// Every route with its middleware.
pub fn router(state: AppState) -> Router {
    let serve = &state.settings.serve;
    let api = api::routes().layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::require_token,
    ));
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(metrics::render))
        .nest("/api/v1", api)
        .fallback(api::not_found)
        .layer(RequestBodyLimitLayer::new(serve.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs_f64(serve.request_timeout_secs),
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// Serves on `addr` until `shutdown` resolves, then stops taking connections and lets the
/// requests in flight finish. `ready` receives the bound address (port 0 picks a free one).
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
    ready(bound);
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
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
