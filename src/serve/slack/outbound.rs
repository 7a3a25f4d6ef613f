//! Posting to Slack: answers to a slash command's `response_url`, and messages through the
//! Web API's `chat.postMessage` with the bot token.
//!
//! Each post has a timeout and bounded retries: 429, 408, 5xx, timeouts and connection
//! failures are tried again after the server's `Retry-After` (delta-seconds or HTTP-date,
//! read by [`crate::openai_compat::parse_retry_after`]) or a full-jitter backoff from
//! [`crate::openai_compat::Backoff`], seeded so the schedule is reproducible. Anything else
//! fails at once, and so does Slack's `{"ok": false, "error": ...}` (an unknown channel or a
//! revoked token does not fix itself by waiting).
//!
//! Neither the bot token nor a `response_url` (a capability: whoever has it can post to the
//! channel) ever appears in an error or a log line; errors name the target
//! (`response_url`, `chat.postMessage`) and Slack's error code.

use std::time::Duration;

use serde_json::Value;

use super::settings::SlackSettings;
use crate::embedding::ApiKey;
use crate::openai_compat::{Backoff, parse_retry_after};

/// Where a post went, for errors, logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A slash command's `response_url`.
    ResponseUrl,
    /// The Web API's `chat.postMessage`.
    PostMessage,
}

impl Target {
    /// The label used in logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Target::ResponseUrl => "response_url",
            Target::PostMessage => "chat.postMessage",
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Why a post failed (after its retries, where retrying could help).
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// Slack answered with an error status.
    #[error("{target}: HTTP {status} after {attempts} attempt(s)")]
    Status {
        /// Where it went.
        target: Target,
        /// The last status.
        status: u16,
        /// Attempts made.
        attempts: u32,
    },
    /// Slack answered `{"ok": false, "error": ...}`.
    #[error("{target}: Slack refused the message: {error}")]
    Refused {
        /// Where it went.
        target: Target,
        /// Slack's error code (`channel_not_found`, `invalid_auth`, ...).
        error: String,
    },
    /// No answer, or a broken connection.
    #[error("{target}: {detail} after {attempts} attempt(s)")]
    Transport {
        /// Where it went.
        target: Target,
        /// The cause, without the URL.
        detail: String,
        /// Attempts made.
        attempts: u32,
    },
    /// Slack asked to wait longer than `slack.max_retry_after_secs`.
    #[error("{target}: Slack asked to wait {secs} s, more than slack.max_retry_after_secs")]
    WaitTooLong {
        /// Where it went.
        target: Target,
        /// The wait asked for.
        secs: u64,
    },
    /// The URL is not an http(s) URL.
    #[error("{target}: not an http(s) URL")]
    BadUrl {
        /// Where it would have gone.
        target: Target,
    },
    /// `chat.postMessage` needs the bot token and none is configured.
    #[error("chat.postMessage: no bot token (set slack.bot_token or SLACK_BOT_TOKEN)")]
    NoBotToken,
}

impl PostError {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            PostError::Status { .. } => "http_error",
            PostError::Refused { .. } => "refused",
            PostError::Transport { .. } => "transport",
            PostError::WaitTooLong { .. } => "wait_too_long",
            PostError::BadUrl { .. } => "bad_url",
            PostError::NoBotToken => "no_bot_token",
        }
    }
}

/// Posts JSON to Slack with a timeout and bounded retries.
pub struct Poster {
    http: reqwest::Client,
    api_base: String,
    bot_token: ApiKey,
    retries: u32,
    initial: Duration,
    max: Duration,
    max_retry_after: Duration,
    seed: u64,
}

impl std::fmt::Debug for Poster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poster")
            .field("api_base", &self.api_base)
            .field("bot_token", &self.bot_token)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

impl Poster {
    /// A poster from validated settings; `seed` makes the jitter reproducible.
    pub fn new(settings: &SlackSettings, seed: u64) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(settings.post_timeout_secs))
            .build()
            .map_err(|e| e.without_url().to_string())?;
        Ok(Poster {
            http,
            api_base: settings.api_base().to_string(),
            bot_token: settings.bot_token.clone(),
            retries: settings.post_retries,
            initial: Duration::from_secs_f64(settings.retry_initial_secs),
            max: Duration::from_secs_f64(settings.retry_max_secs),
            max_retry_after: Duration::from_secs_f64(settings.max_retry_after_secs),
            seed,
        })
    }

    /// True when `chat.postMessage` can be called.
    pub fn has_bot_token(&self) -> bool {
        !self.bot_token.is_empty()
    }

    /// Posts `message` to a slash command's `response_url`.
    pub async fn respond(&self, response_url: &str, message: &Value) -> Result<(), PostError> {
        let target = Target::ResponseUrl;
        if !(response_url.starts_with("https://") || response_url.starts_with("http://")) {
            return Err(PostError::BadUrl { target });
        }
        let body = self.send(target, response_url, message, None).await?;
        // response_url answers `ok` as text; an error may come as JSON with `ok: false`.
        match serde_json::from_slice::<Value>(&body) {
            Ok(reply) if reply["ok"] == Value::Bool(false) => Err(PostError::Refused {
                target,
                error: slack_error(&reply),
            }),
            _ => Ok(()),
        }
    }

    /// Posts `message` (with `channel`, optionally `thread_ts`) through `chat.postMessage`.
    pub async fn post_message(&self, message: &Value) -> Result<(), PostError> {
        let target = Target::PostMessage;
        if self.bot_token.is_empty() {
            return Err(PostError::NoBotToken);
        }
        let url = format!("{}/chat.postMessage", self.api_base);
        let body = self
            .send(target, &url, message, Some(&self.bot_token))
            .await?;
        match serde_json::from_slice::<Value>(&body) {
            Ok(reply) if reply["ok"] == Value::Bool(true) => Ok(()),
            Ok(reply) => Err(PostError::Refused {
                target,
                error: slack_error(&reply),
            }),
            Err(_) => Err(PostError::Refused {
                target,
                error: "the reply is not Slack's JSON".into(),
            }),
        }
    }

    async fn send(
        &self,
        target: Target,
        url: &str,
        message: &Value,
        bearer: Option<&ApiKey>,
    ) -> Result<Vec<u8>, PostError> {
        let mut backoff = Backoff::new(self.initial, self.max, self.max_retry_after, self.seed);
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let mut request = self.http.post(url).json(message);
            if let Some(token) = bearer {
                request = request.bearer_auth(token.expose());
            }
            let (failure, retry_after) = match request.send().await {
                Ok(response) if response.status().is_success() => {
                    return response.bytes().await.map(|b| b.to_vec()).map_err(|e| {
                        PostError::Transport {
                            target,
                            detail: e.without_url().to_string(),
                            attempts: attempt,
                        }
                    });
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    let failure = PostError::Status {
                        target,
                        status,
                        attempts: attempt,
                    };
                    if !(status == 429 || status == 408 || status >= 500) {
                        return Err(failure);
                    }
                    (failure, retry_after)
                }
                Err(e) => {
                    let retry = e.is_timeout() || e.is_connect() || e.is_request();
                    let failure = PostError::Transport {
                        target,
                        detail: if e.is_timeout() {
                            "no answer within slack.post_timeout_secs".into()
                        } else {
                            e.without_url().to_string()
                        },
                        attempts: attempt,
                    };
                    if !retry {
                        return Err(failure);
                    }
                    (failure, None)
                }
            };
            if attempt > self.retries {
                return Err(failure);
            }
            let wait = backoff
                .delay(attempt, retry_after)
                .map_err(|secs| PostError::WaitTooLong { target, secs })?;
            tracing::info!(
                target_name = target.label(),
                attempt,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                error = %failure,
                "slack post failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// Slack's error code from an `ok: false` reply.
fn slack_error(reply: &Value) -> String {
    reply["error"].as_str().map_or_else(
        || "unknown error".to_string(),
        |e| e.chars().take(100).collect(),
    )
}
