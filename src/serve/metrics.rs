//! `/metrics` in the Prometheus text format, through the official `prometheus-client`.
//!
//! Requests are counted by method, matched route (the template, e.g.
//! `/api/v1/runs/{id}`, so run ids do not explode the label space) and status, and timed in
//! a latency histogram by method and route. Runs are counted as they start and end (by final
//! state, with a gauge of those in progress), questions by channel and how they were
//! answered, and the chat model's requests, retries, tokens and incidents by what used it
//! (`narrative` in runs, `ask` for questions), so a rate-limited or failing model shows up
//! on a dashboard before users complain.

use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::AppState;
use crate::llm::ModelUsage;

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

/// Labels of a finished run.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    state: String,
}

/// Labels of an answered question.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuestionLabels {
    channel: String,
    status: String,
}

/// Labels of the chat model's counters: what used it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    purpose: String,
}

/// Labels of the chat model's token counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    purpose: String,
    kind: String,
}

/// Labels of the chat model's incidents.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IncidentLabels {
    purpose: String,
    kind: String,
}

/// Where a question came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// `POST /api/v1/runs/{id}/ask`.
    Api,
    /// The dashboard's web chat.
    Web,
    /// Slack (slash command or mention).
    Slack,
}

impl Channel {
    fn label(self) -> &'static str {
        match self {
            Channel::Api => "api",
            Channel::Web => "web",
            Channel::Slack => "slack",
        }
    }
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
    runs_started: Counter,
    runs_finished: Family<RunLabels, Counter>,
    runs_active: Gauge,
    questions: Family<QuestionLabels, Counter>,
    model_requests: Family<ModelLabels, Counter>,
    model_retries: Family<ModelLabels, Counter>,
    model_tokens: Family<TokenLabels, Counter>,
    model_incidents: Family<IncidentLabels, Counter>,
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
        let runs_started = Counter::default();
        registry.register("runs_started", "Runs queued", runs_started.clone());
        let runs_finished = Family::<RunLabels, Counter>::default();
        registry.register(
            "runs_finished",
            "Runs that ended, by final state (succeeded, failed, interrupted)",
            runs_finished.clone(),
        );
        let runs_active = Gauge::default();
        registry.register(
            "runs_active",
            "Runs queued or computing now",
            runs_active.clone(),
        );
        let questions = Family::<QuestionLabels, Counter>::default();
        registry.register(
            "questions",
            "Questions answered, by channel and answer status",
            questions.clone(),
        );
        let model_requests = Family::<ModelLabels, Counter>::default();
        registry.register(
            "llm_requests",
            "Requests to the chat model (retries included), by purpose",
            model_requests.clone(),
        );
        let model_retries = Family::<ModelLabels, Counter>::default();
        registry.register(
            "llm_retries",
            "Requests to the chat model that were retries, by purpose",
            model_retries.clone(),
        );
        let model_tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "llm_tokens",
            "Tokens the chat model reported, by purpose and kind (prompt, completion)",
            model_tokens.clone(),
        );
        let model_incidents = Family::<IncidentLabels, Counter>::default();
        registry.register(
            "llm_incidents",
            "Trouble with the chat model (rate_limited, timeout, failed, ...), by purpose",
            model_incidents.clone(),
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
            runs_started,
            runs_finished,
            runs_active,
            questions,
            model_requests,
            model_retries,
            model_tokens,
            model_incidents,
            slack_requests,
            slack_posts,
        }
    }

    /// A run was queued.
    pub fn run_started(&self) {
        self.runs_started.inc();
        self.runs_active.inc();
    }

    /// A run ended in `state` (`succeeded`, `failed`, `interrupted`).
    pub fn run_finished(&self, state: &str) {
        self.runs_active.dec();
        self.runs_finished
            .get_or_create(&RunLabels {
                state: state.to_string(),
            })
            .inc();
    }

    /// A question from `channel` was answered with `status` (the answer's status, or
    /// `error` when none could be given).
    pub fn question(&self, channel: Channel, status: &str) {
        self.questions
            .get_or_create(&QuestionLabels {
                channel: channel.label().to_string(),
                status: status.to_string(),
            })
            .inc();
    }

    /// Adds what the chat model reported for one use (`purpose`: `narrative`, `ask`).
    pub fn model_usage(&self, purpose: &str, usage: &ModelUsageCounts) {
        let labels = ModelLabels {
            purpose: purpose.to_string(),
        };
        self.model_requests
            .get_or_create(&labels)
            .inc_by(usage.requests);
        self.model_retries
            .get_or_create(&labels)
            .inc_by(usage.retries);
        for (kind, n) in [
            ("prompt", usage.prompt_tokens),
            ("completion", usage.completion_tokens),
        ] {
            self.model_tokens
                .get_or_create(&TokenLabels {
                    purpose: purpose.to_string(),
                    kind: kind.to_string(),
                })
                .inc_by(n);
        }
        for kind in &usage.incidents {
            self.model_incidents
                .get_or_create(&IncidentLabels {
                    purpose: purpose.to_string(),
                    kind: kind.clone(),
                })
                .inc();
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

/// The chat model's counts for one use, whether they come from a live [`ModelUsage`] or a
/// finished run's `run.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct ModelUsageCounts {
    /// Requests, retries included.
    pub requests: u64,
    /// Retries.
    pub retries: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Incident kinds in order (`rate_limited`, `timeout`, ...).
    #[serde(default, deserialize_with = "incident_kinds")]
    pub incidents: Vec<String>,
}

fn incident_kinds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Kind {
        kind: String,
    }
    let kinds: Vec<Kind> = serde::Deserialize::deserialize(d)?;
    Ok(kinds.into_iter().map(|k| k.kind).collect())
}

impl From<&ModelUsage> for ModelUsageCounts {
    fn from(usage: &ModelUsage) -> Self {
        ModelUsageCounts {
            requests: usage.requests,
            retries: usage.retries,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            incidents: usage
                .incidents
                .iter()
                .map(|i| {
                    serde_json::to_value(i.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_else(|| "unknown".into())
                })
                .collect(),
        }
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
