//! `/metrics` in the Prometheus text format, through the official `prometheus-client`.
//!
//! Requests are counted by method, matched route (the template, e.g.
//! `/api/v1/runs/{id}`, so run ids do not explode the label space) and status, and timed in
//! a latency histogram by method and route.

use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::AppState;

/// Labels of a request count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

/// Labels of a request latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

/// Labels of a Slack request count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SlackRequestLabels {
    endpoint: String,
    outcome: String,
}

/// Labels of a post to Slack.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SlackPostLabels {
    target: String,
    outcome: String,
}

/// The service's metrics and their registry.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    slack_requests: Family<SlackRequestLabels, Counter>,
    slack_posts: Family<SlackPostLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `segscope` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("segscope");
        let requests = Family::<RequestLabels, Counter>::default();
        // 1 ms to ~16 s in factors of 2.
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 15))
        });
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route",
            latency.clone(),
        );
        let slack_requests = Family::<SlackRequestLabels, Counter>::default();
        let slack_posts = Family::<SlackPostLabels, Counter>::default();
        registry.register(
            "slack_requests",
            "Slack requests by endpoint and outcome (verified, duplicate, rejected_<reason>, ...)",
            slack_requests.clone(),
        );
        registry.register(
            "slack_posts",
            "Posts to Slack by target (response_url, chat.postMessage) and outcome",
            slack_posts.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            requests,
            latency,
            slack_requests,
            slack_posts,
        }
    }

    /// Counts a request to a `/slack` route by its outcome.
    pub fn slack_request(&self, endpoint: &str, outcome: &str) {
        self.slack_requests
            .get_or_create(&SlackRequestLabels {
                endpoint: endpoint.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Counts a post to Slack by its outcome.
    pub fn slack_post(&self, target: &str, outcome: &str) {
        self.slack_posts
            .get_or_create(&SlackPostLabels {
                target: target.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route: route.to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                method: method.to_string(),
                route: route.to_string(),
            })
            .observe(seconds);
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        let registry = self.registry.lock().map_err(|_| std::fmt::Error)?;
        prometheus_client::encoding::text::encode(&mut text, &registry)?;
        Ok(text)
    }
}

/// Middleware: counts and times every request by its matched route.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    state.metrics.observe(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
