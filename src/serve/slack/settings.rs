//! The `[slack]` settings: the app's secrets, where answers are posted and how hard to try.
//! Both secrets are [`ApiKey`]s: never shown by `Debug`, never serialised into run outputs.
//! An empty secret falls back to `SLACK_SIGNING_SECRET` / `SLACK_BOT_TOKEN`, resolved once
//! when settings load ([`SlackSettings::fill_from_env`]), so nothing deeper reads the
//! environment.

use serde::{Deserialize, Serialize};

use crate::embedding::ApiKey;
use crate::serve::runs::valid_run_id;

/// Environment variable read when `slack.signing_secret` is empty (Slack's own name).
pub const SIGNING_SECRET_ENV: &str = "SLACK_SIGNING_SECRET";
/// Environment variable read when `slack.bot_token` is empty (Slack's own name).
pub const BOT_TOKEN_ENV: &str = "SLACK_BOT_TOKEN";

/// `[slack]`: see `config/default.toml` for what each knob does.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlackSettings {
    /// Verifies that requests come from Slack; without it the `/slack` routes answer 404.
    #[serde(default, skip_serializing)]
    pub signing_secret: ApiKey,
    /// Lets the app post in channels (`chat.postMessage`); needed for `app_mention` only.
    #[serde(default, skip_serializing)]
    pub bot_token: ApiKey,
    /// Slack's Web API base URL, without a trailing slash.
    pub api_base_url: String,
    /// The run that answers; empty = the newest run in the data directory.
    pub run: String,
    /// Longest one outbound post may take, seconds.
    pub post_timeout_secs: f64,
    /// Further attempts after a post fails in a way waiting may fix (429, 5xx, timeout).
    pub post_retries: u32,
    /// First backoff ceiling between attempts, seconds (doubles per attempt, full jitter).
    pub retry_initial_secs: f64,
    /// Largest backoff ceiling, seconds.
    pub retry_max_secs: f64,
    /// A `Retry-After` longer than this fails the post rather than stalling it, seconds.
    pub max_retry_after_secs: f64,
    /// Most deliveries remembered to recognise Slack's retries.
    pub replay_capacity: usize,
    /// How long a delivery is remembered, seconds.
    pub replay_ttl_secs: u64,
}

impl SlackSettings {
    /// Fills an empty secret from `SLACK_SIGNING_SECRET` / `SLACK_BOT_TOKEN` in `env` (an
    /// explicit setting wins, as with `OPENAI_API_KEY`).
    pub fn fill_from_env(&mut self, env: impl Fn(&str) -> Option<String>) {
        for (key, name) in [
            (&mut self.signing_secret, SIGNING_SECRET_ENV),
            (&mut self.bot_token, BOT_TOKEN_ENV),
        ] {
            if key.is_empty()
                && let Some(value) = env(name).filter(|v| !v.trim().is_empty())
            {
                *key = ApiKey::new(value.trim());
            }
        }
    }

    /// Checks ranges once; the message names the key.
    #[allow(
        clippy::neg_cmp_op_on_partial_ord,
        reason = "`!(v > 0.0)` also rejects NaN"
    )]
    pub fn validate(&self) -> Result<(), String> {
        let url = self.api_base_url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!(
                "slack.api_base_url = {:?}: must be an http(s) URL such as https://slack.com/api",
                self.api_base_url
            ));
        }
        if !self.run.is_empty() && !valid_run_id(&self.run) {
            return Err(format!(
                "slack.run = {:?}: must be empty (the newest run) or a run id of 1 to 64 letters, digits, '-' or '_'",
                self.run
            ));
        }
        for (key, value) in [
            ("post_timeout_secs", self.post_timeout_secs),
            ("retry_initial_secs", self.retry_initial_secs),
            ("retry_max_secs", self.retry_max_secs),
        ] {
            if !(value > 0.0 && value.is_finite()) {
                return Err(format!("slack.{key} = {value}: must be above 0"));
            }
        }
        if !(self.max_retry_after_secs >= 0.0 && self.max_retry_after_secs.is_finite()) {
            return Err(format!(
                "slack.max_retry_after_secs = {}: must be at least 0",
                self.max_retry_after_secs
            ));
        }
        if self.replay_capacity == 0 || self.replay_ttl_secs == 0 {
            return Err(
                "slack.replay_capacity and slack.replay_ttl_secs must be at least 1".into(),
            );
        }
        Ok(())
    }

    /// The Web API base URL without a trailing slash.
    pub fn api_base(&self) -> &str {
        self.api_base_url.trim().trim_end_matches('/')
    }
}
