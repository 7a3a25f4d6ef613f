//! Plain-language questions about a run over HTTP: `POST /api/v1/runs/{id}/ask` with
//! `{"question": "..."}` answers with the same machinery as `segscope ask` (the built-in
//! answerer, or the `Agent` over read-only tools when a model is configured) and returns the
//! answer with the run and the figures it cites. The web chat and Slack build on this.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::AppState;
use super::api::ApiError;
use super::metrics::Channel;
use super::runs::valid_run_id;
use super::start::ApiJson;
use crate::ask::agent::{Agent, AgentError, Turn};
use crate::ask::run::{RunError as StoredRunError, StoredRun};
use crate::ask::tools::Toolbox;
use crate::ask::{Answer, AskError, builtin};
use crate::llm::{ChatBackend, TokenSink};

/// Longest question accepted, in characters.
pub const MAX_QUESTION_CHARS: usize = 2000;

/// The body of `POST /api/v1/runs/{id}/ask`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// The question, in plain language.
    pub question: String,
}

fn ask_failed(error: AskError) -> ApiError {
    match error {
        AskError::Run(StoredRunError::Missing { .. }) => {
            ApiError::NotFound("the run has no segments.json".into())
        }
        other => {
            tracing::error!(error = %other, "ask failed");
            ApiError::Internal
        }
    }
}

/// Answers `question` about the run `run_id` with the configured backend: the built-in
/// answerer, or the `Agent` over read-only tools when a chat model is configured. `tokens`
/// receives the answer's text as the model writes it (the web chat streams it; the
/// built-in answerer writes its whole answer at once). The JSON API, the web chat and Slack
/// all answer through here, so a question gets the same answer wherever it is asked.
pub async fn answer_question(
    state: &AppState,
    channel: Channel,
    run_id: &str,
    question: &str,
    tokens: Option<TokenSink<'_>>,
) -> Result<Answer, ApiError> {
    answer_in_conversation(state, channel, run_id, &[], question, tokens).await
}

/// [`answer_question`] as the next turn of a conversation: the `Agent` sees `history` (see
/// [`Agent::answer_in_conversation`]); the built-in answerer reads each question on its own.
/// Counted in the metrics by `channel`.
pub async fn answer_in_conversation(
    state: &AppState,
    channel: Channel,
    run_id: &str,
    history: &[Turn],
    question: &str,
    tokens: Option<TokenSink<'_>>,
) -> Result<Answer, ApiError> {
    let mut answered = answer_uncounted(state, run_id, history, question, tokens).await;
    if let Ok(answer) = &mut answered {
        // The citation names the run folder on the command line; a client of the service
        // gets the run id, never a server path.
        answer.run = format!("run {run_id}");
    }
    match &answered {
        Ok(answer) => {
            let status = serde_json::to_value(answer.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "unknown".into());
            state.metrics.question(channel, &status);
            if let Some(usage) = &answer.record.usage {
                state.metrics.model_usage("ask", &usage.into());
            }
        }
        Err(_) => state.metrics.question(channel, "error"),
    }
    answered
}

async fn answer_uncounted(
    state: &AppState,
    run_id: &str,
    history: &[Turn],
    question: &str,
    tokens: Option<TokenSink<'_>>,
) -> Result<Answer, ApiError> {
    if !valid_run_id(run_id) {
        return Err(ApiError::BadRequest(format!(
            "run id {run_id:?} is not valid: use 1 to 64 letters, digits, '-' or '_'"
        )));
    }
    let question = question.trim();
    if question.is_empty() || question.chars().count() > MAX_QUESTION_CHARS {
        return Err(ApiError::BadRequest(format!(
            "question: must be 1 to {MAX_QUESTION_CHARS} characters"
        )));
    }
    let dir = state.runs.dir().join(run_id);
    if !dir.join("segments.json").is_file() {
        return Err(ApiError::NotFound(format!("no run {run_id:?}")));
    }
    let settings = state.settings.clone();
    let store_dir = state.data_dir.join("store");
    let toolbox = tokio::task::spawn_blocking(move || {
        let run = StoredRun::open(&dir).map_err(AskError::from)?;
        Toolbox::new(run, &settings, store_dir).map_err(AskError::from)
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "ask set-up task failed");
        ApiError::Internal
    })?
    .map_err(ask_failed)?;
    let settings = &state.settings;
    let backend = ChatBackend::from_settings(&settings.llm, settings.run.seed).map_err(|e| {
        tracing::error!(error = %e, "chat model settings");
        ApiError::Internal
    })?;
    let answer = match backend {
        ChatBackend::Builtin => {
            let answer = builtin::answer(&toolbox, question).await;
            if let Some(tokens) = tokens {
                tokens(&answer.text);
            }
            answer
        }
        ChatBackend::OpenAi(model) => {
            let agent = Agent::new(model, toolbox, &settings.ask).map_err(ask_failed)?;
            agent
                .answer_in_conversation(history, question, tokens)
                .await
                .map_err(|e| match e {
                    AgentError::Ask(e) => ask_failed(e),
                    AgentError::Model(e) => {
                        tracing::warn!(error = %e, "chat model failed");
                        ApiError::Upstream
                    }
                })?
        }
    };
    Ok(answer)
}

/// `POST /api/v1/runs/{id}/ask`.
pub async fn ask(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    ApiJson(body): ApiJson<Question>,
) -> Result<Json<Answer>, ApiError> {
    Ok(Json(
        answer_question(&state, Channel::Api, &run_id, &body.question, None).await?,
    ))
}
