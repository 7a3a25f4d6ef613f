//! The Slack app: `POST /slack/commands` (a slash command such as `/segments which segment
//! is most at risk?`) and `POST /slack/events` (the Events API: `url_verification` and
//! `app_mention`). Questions are answered by [`super::chat::answer_question`], the one answer
//! path every channel shares, about the run named by `slack.run` or else the newest run.
//!
//! Order of work for every request, and why:
//! 1. No signing secret configured: 404 with a JSON error, nothing read. The routes exist
//!    only once the app can tell Slack's requests from anyone else's.
//! 2. The signature (see [`signature`]) over the raw body, before anything is parsed: a
//!    missing, wrong or stale (more than 5 minutes either way) signature gets 401 with a JSON
//!    error and nothing else happens: nothing remembered, spawned or posted. These routes
//!    are not behind the API's bearer token (Slack cannot send it); the signature is their
//!    auth. The body-size limit still applies (the body is read as bytes within it).
//! 3. Retries: a delivery seen before (Slack's `X-Slack-Retry-Num` retries, or the same
//!    signed request replayed inside the window) gets 200 and nothing more; see [`replay`]
//!    for the limits (in memory; a restart forgets).
//! 4. The acknowledgement goes back at once (Slack gives 3 seconds): an ephemeral "Working
//!    on it…" for a command, an empty 200 for an event. The answer is worked out in a
//!    spawned task and posted: to the command's `response_url` as Block Kit
//!    (`response_type: in_channel`), or for a mention through `chat.postMessage` in the
//!    message's thread with the bot token. A failure is posted as a short notice that names
//!    no internals; the cause goes to the log.
//!
//! Metrics: `segscope_slack_requests_total{endpoint, outcome}` (verified, duplicate,
//! rejected_stale, rejected_bad_signature, ...) and `segscope_slack_posts_total{target,
//! outcome}`. Logs never contain the signing secret, the bot token, a signature or a
//! `response_url`.

pub mod blocks;
pub mod outbound;
pub mod replay;
pub mod settings;
pub mod signature;

use std::future::Future;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::AppState;
use super::api::ApiError;
use crate::ask::Answer;
use crate::settings::Settings;
pub use outbound::{PostError, Poster, Target};
pub use replay::Replays;
pub use settings::SlackSettings;
pub use signature::{Rejection, Verifier};

/// "Now" as Unix seconds; injectable so tests can move time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock as Unix seconds.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    })
}

/// What the Slack routes share: the verifier, the poster, the deliveries seen, the clock and
/// the answers still being worked on.
pub struct Slack {
    verifier: Option<Verifier>,
    /// Posts answers to Slack.
    pub poster: Poster,
    /// Deliveries already taken.
    pub replays: Replays,
    run: String,
    clock: Clock,
    in_flight: tokio::sync::watch::Sender<usize>,
}

impl std::fmt::Debug for Slack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slack")
            .field("configured", &self.verifier.is_some())
            .field("poster", &self.poster)
            .finish_non_exhaustive()
    }
}

impl Slack {
    /// The app from validated settings, on the system clock.
    pub fn new(settings: &Settings) -> Result<Self, String> {
        let slack = &settings.slack;
        let verifier =
            (!slack.signing_secret.is_empty()).then(|| Verifier::new(slack.signing_secret.clone()));
        if verifier.is_none() {
            tracing::info!(
                "Slack app off: no slack.signing_secret or SLACK_SIGNING_SECRET; /slack routes answer 404"
            );
        } else if slack.bot_token.is_empty() {
            tracing::warn!(
                "Slack app without a bot token (slack.bot_token or SLACK_BOT_TOKEN): slash commands work, mentions cannot be answered"
            );
        }
        Ok(Slack {
            verifier,
            poster: Poster::new(slack, settings.run.seed)?,
            replays: Replays::new(slack.replay_capacity, slack.replay_ttl_secs),
            run: slack.run.clone(),
            clock: system_clock(),
            in_flight: tokio::sync::watch::channel(0).0,
        })
    }

    /// The same app on another clock (tests move time with it).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Resolves once no answer is being worked on or posted (at once when none is): lets
    /// shutdown deliver answers already acknowledged, and tests know nothing more will come.
    pub async fn settled(&self) {
        let mut watch = self.in_flight.subscribe();
        let _ = watch.wait_for(|n| *n == 0).await;
    }

    /// Runs `work` in the background, counted until it ends (even by a panic).
    fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.in_flight.send_modify(|n| *n += 1);
        let guard = InFlight(self.in_flight.clone());
        tokio::spawn(async move {
            let _guard = guard;
            work.await;
        });
    }
}

struct InFlight(tokio::sync::watch::Sender<usize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The `/slack` routes (outside the bearer-token layer; see the module doc).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/slack/commands", post(commands))
        .route("/slack/events", post(events))
}

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Commands,
    Events,
}

impl Endpoint {
    fn label(self) -> &'static str {
        match self {
            Endpoint::Commands => "commands",
            Endpoint::Events => "events",
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Why a request to a `/slack` route was turned away before anything happened.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// No signing secret: the Slack app is off (404).
    NotConfigured,
    /// Not signed by Slack (401).
    Unsigned(Rejection),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::NotConfigured => ApiError::NotFound(
                "the Slack app is not configured on this server (no signing secret)".into(),
            )
            .into_response(),
            // Not ApiError::Unauthorized: that one asks for the API's bearer token.
            Refusal::Unsigned(rejection) => (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": {
                    "code": "unauthorized",
                    "message": format!("not a request signed by Slack: {rejection}"),
                }})),
            )
                .into_response(),
        }
    }
}

/// Steps 1 and 2 of the module doc: `Ok(now)` when the request is Slack's.
fn check(
    state: &AppState,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<i64, Refusal> {
    let slack = &state.slack;
    let count = |outcome: &str| state.metrics.slack_request(endpoint.label(), outcome);
    let Some(verifier) = &slack.verifier else {
        count("not_configured");
        return Err(Refusal::NotConfigured);
    };
    let now = (slack.clock)();
    match verifier.verify(
        header(headers, signature::TIMESTAMP_HEADER),
        header(headers, signature::SIGNATURE_HEADER),
        body,
        now,
    ) {
        Ok(_) => {
            count("verified");
            Ok(now)
        }
        Err(rejection) => {
            count(&format!("rejected_{}", rejection.label()));
            tracing::warn!(
                endpoint = endpoint.label(),
                reason = rejection.label(),
                "Slack request refused"
            );
            Err(Refusal::Unsigned(rejection))
        }
    }
}

/// Step 3 of the module doc: true when this delivery was taken before.
fn duplicate(
    state: &AppState,
    endpoint: Endpoint,
    headers: &HeaderMap,
    key: &str,
    now: i64,
) -> bool {
    if state.slack.replays.first_time(key, now) {
        return false;
    }
    state.metrics.slack_request(endpoint.label(), "duplicate");
    tracing::info!(
        endpoint = endpoint.label(),
        retry_num = header(headers, "x-slack-retry-num").unwrap_or(""),
        retry_reason = header(headers, "x-slack-retry-reason").unwrap_or(""),
        "Slack delivery seen before; acknowledged, not answered again"
    );
    true
}

/// The fields of a slash command that segscope uses (Slack sends more; they are ignored).
#[derive(Debug, Default, Deserialize)]
struct SlashCommand {
    #[serde(default)]
    command: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    response_url: String,
    #[serde(default)]
    channel_id: String,
    /// Slack's periodic certificate check: acknowledge, nothing else.
    #[serde(default)]
    ssl_check: Option<String>,
}

/// `POST /slack/commands`.
async fn commands(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let endpoint = Endpoint::Commands;
    let now = match check(&state, endpoint, &headers, &body) {
        Ok(now) => now,
        Err(refusal) => return refusal.into_response(),
    };
    let command: SlashCommand = match serde_urlencoded::from_bytes(&body) {
        Ok(command) => command,
        Err(e) => {
            state.metrics.slack_request(endpoint.label(), "malformed");
            return ApiError::BadRequest(format!("slash command form: {e}")).into_response();
        }
    };
    if command.ssl_check.is_some() {
        return StatusCode::OK.into_response();
    }
    // The signed timestamp and body identify a delivery: a retry or replay repeats both.
    let signed_at = header(&headers, signature::TIMESTAMP_HEADER).unwrap_or_default();
    let key = format!(
        "command:{:x}",
        Sha256::digest([signed_at.as_bytes(), b":", &body[..]].concat())
    );
    if duplicate(&state, endpoint, &headers, &key, now) {
        return StatusCode::OK.into_response();
    }
    if command.text.trim().is_empty() {
        return Json(blocks::ephemeral(&blocks::usage(&command.command))).into_response();
    }
    if !(command.response_url.starts_with("https://")
        || command.response_url.starts_with("http://"))
    {
        state.metrics.slack_request(endpoint.label(), "malformed");
        return ApiError::BadRequest("response_url: must be an http(s) URL".into()).into_response();
    }
    tracing::info!(
        channel = %command.channel_id,
        question_chars = command.text.chars().count(),
        "Slack command accepted"
    );
    let task_state = state.clone();
    state.slack.spawn(async move {
        let message = match answer(&task_state, &command.text).await {
            Ok((run_id, answer)) => json!({
                "response_type": "in_channel",
                "text": blocks::fallback_text(&answer),
                "blocks": blocks::answer_blocks(&answer, &run_id),
            }),
            Err(notice) => blocks::ephemeral(&notice),
        };
        let result = task_state
            .slack
            .poster
            .respond(&command.response_url, &message)
            .await;
        record_post(&task_state, Target::ResponseUrl, result);
    });
    Json(blocks::ephemeral("Working on it…")).into_response()
}

/// The envelope of an Events API delivery.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Envelope {
    UrlVerification {
        challenge: String,
    },
    EventCallback {
        event_id: String,
        event: Event,
    },
    #[serde(other)]
    Other,
}

/// The fields of an event that segscope uses.
#[derive(Debug, Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    ts: String,
    #[serde(default)]
    thread_ts: Option<String>,
    #[serde(default)]
    bot_id: Option<String>,
    #[serde(default)]
    subtype: Option<String>,
}

/// `POST /slack/events`.
async fn events(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let endpoint = Endpoint::Events;
    let now = match check(&state, endpoint, &headers, &body) {
        Ok(now) => now,
        Err(refusal) => return refusal.into_response(),
    };
    let envelope: Envelope = match serde_json::from_slice(&body) {
        Ok(envelope) => envelope,
        Err(e) => {
            state.metrics.slack_request(endpoint.label(), "malformed");
            return ApiError::BadRequest(format!("event body: {e}")).into_response();
        }
    };
    let (event_id, event) = match envelope {
        Envelope::UrlVerification { challenge } => {
            return Json(json!({ "challenge": challenge })).into_response();
        }
        Envelope::EventCallback { event_id, event } => (event_id, event),
        Envelope::Other => return StatusCode::OK.into_response(),
    };
    if duplicate(
        &state,
        endpoint,
        &headers,
        &format!("event:{event_id}"),
        now,
    ) {
        return StatusCode::OK.into_response();
    }
    let from_a_bot = event.bot_id.is_some() || event.subtype.is_some();
    if event.kind != "app_mention" || from_a_bot || event.channel.is_empty() {
        state.metrics.slack_request(endpoint.label(), "ignored");
        return StatusCode::OK.into_response();
    }
    if !state.slack.poster.has_bot_token() {
        record_post(&state, Target::PostMessage, Err(PostError::NoBotToken));
        return StatusCode::OK.into_response();
    }
    tracing::info!(channel = %event.channel, %event_id, "Slack mention accepted");
    let task_state = state.clone();
    state.slack.spawn(async move {
        let question = without_mentions(&event.text);
        let thread_ts = event.thread_ts.clone().unwrap_or_else(|| event.ts.clone());
        let mut message = json!({"channel": event.channel, "thread_ts": thread_ts});
        if question.is_empty() {
            message["text"] = json!(blocks::escape(&blocks::usage("@segscope")));
        } else {
            match answer(&task_state, &question).await {
                Ok((run_id, answer)) => {
                    message["text"] = json!(blocks::fallback_text(&answer));
                    message["blocks"] = json!(blocks::answer_blocks(&answer, &run_id));
                }
                Err(notice) => message["text"] = json!(blocks::escape(&notice)),
            }
        }
        let result = task_state.slack.poster.post_message(&message).await;
        record_post(&task_state, Target::PostMessage, result);
    });
    StatusCode::OK.into_response()
}

/// `text` without user mentions (`<@U123>`, `<@U123|name>`), whitespace collapsed: what is
/// left of "@segscope which segment is largest?" is the question.
fn without_mentions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<@") {
        out.push_str(&rest[..start]);
        match rest[start..].find('>') {
            Some(end) => rest = &rest[start + end + 1..],
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Answers `question` about the configured or newest run; `Err` is a notice for the asker
/// (no internals: the cause is logged).
async fn answer(state: &AppState, question: &str) -> Result<(String, Answer), String> {
    let run_id = match state.slack.run.as_str() {
        "" => {
            let runs = Arc::clone(&state.runs);
            match tokio::task::spawn_blocking(move || runs.list()).await {
                // Runs only `segscope track` wrote are listed too, but answers need a
                // segmentation run's segments.json.
                Ok(Ok(list)) => match list.into_iter().find(|r| r.method != "track") {
                    Some(newest) => newest.id,
                    None => {
                        return Err(
                            "There is no segmentation run to answer from yet: start one first."
                                .into(),
                        );
                    }
                },
                Ok(Err(error)) => {
                    tracing::error!(%error, "Slack: runs cannot be listed");
                    return Err(FAILED.into());
                }
                Err(error) => {
                    tracing::error!(%error, "Slack: run listing task failed");
                    return Err(FAILED.into());
                }
            }
        }
        configured => configured.to_string(),
    };
    match super::chat::answer_question(
        state,
        super::metrics::Channel::Slack,
        &run_id,
        question,
        None,
    )
    .await
    {
        Ok(answer) => Ok((run_id, answer)),
        Err(ApiError::BadRequest(message)) => Err(format!("Sorry, I cannot take that: {message}.")),
        Err(ApiError::NotFound(_)) => Err(format!(
            "The run {run_id} cannot be found or has no segments yet."
        )),
        Err(ApiError::Upstream) => {
            Err("The chat model did not answer; please try again in a moment.".into())
        }
        Err(ApiError::Timeout) => {
            Err("Answering took too long; please try again in a moment.".into())
        }
        Err(
            ApiError::Unauthorized
            | ApiError::Internal
            | ApiError::Conflict(_)
            | ApiError::TooLarge(_)
            | ApiError::Unprocessable(_),
        ) => Err(FAILED.into()),
    }
}

const FAILED: &str = "Sorry, something went wrong while answering; the cause is in segscope's log.";

fn record_post(state: &AppState, target: Target, result: Result<(), PostError>) {
    match result {
        Ok(()) => state.metrics.slack_post(target.label(), "ok"),
        Err(error) => {
            state.metrics.slack_post(target.label(), error.label());
            tracing::warn!(%error, "Slack post failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_stripped_from_the_question() {
        assert_eq!(
            without_mentions("<@U0LAN0Z89> which segment is   largest?"),
            "which segment is largest?"
        );
        assert_eq!(
            without_mentions("hey <@U0LAN0Z89|segscope>, what about <@U1>?"),
            "hey , what about ?"
        );
        assert_eq!(without_mentions("<@U0LAN0Z89>"), "");
        assert_eq!(without_mentions("a <@broken"), "a <@broken");
    }

    #[test]
    fn envelopes_parse_and_unknown_types_are_other() {
        let v: Envelope =
            serde_json::from_str(r#"{"type":"url_verification","challenge":"c1","token":"t"}"#)
                .unwrap_or(Envelope::Other);
        assert!(matches!(v, Envelope::UrlVerification { challenge } if challenge == "c1"));
        let other: Result<Envelope, _> = serde_json::from_str(r#"{"type":"app_rate_limited"}"#);
        assert!(matches!(other, Ok(Envelope::Other)));
    }
}
