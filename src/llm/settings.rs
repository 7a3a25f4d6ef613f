//! The `[llm]` settings: which chat backend writes text, and the knobs of the
//! OpenAI-compatible one. The API key is an [`ApiKey`]: never shown by `Debug`, never
//! serialised (settings are recorded in run outputs).

use serde::{Deserialize, Serialize};

use super::OpenAiChatError;
use crate::embedding::ApiKey;

/// Which backend writes names, descriptions and answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmProvider {
    /// No model: the built-in narrator and answerer write from the numbers.
    Builtin,
    /// Any OpenAI-compatible `/v1/chat/completions` endpoint.
    Openai,
}

/// The `[llm]` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LlmSettings {
    /// Which backend.
    pub provider: LlmProvider,
    /// Knobs of the OpenAI-compatible backend.
    pub openai: OpenAiChatSettings,
}

/// `[llm.openai]`: see `config/default.toml` for what each knob does.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OpenAiChatSettings {
    /// Base URL including `/v1`; empty = `OPENAI_BASE_URL`, else the OpenAI API.
    pub base_url: String,
    /// API key; empty = `OPENAI_API_KEY`. Never serialised.
    #[serde(default, skip_serializing)]
    pub api_key: ApiKey,
    /// Model name.
    pub model: String,
    /// Sampling temperature.
    pub temperature: f32,
    /// Most tokens one reply may use.
    pub max_tokens: u32,
    /// Send `response_format: json_schema` for structured replies (false: the schema goes
    /// into the instructions, for servers that reject the parameter).
    pub structured_output: bool,
    /// Per-request timeout, seconds.
    pub timeout_secs: f64,
    /// Retries of one request after a retryable failure.
    pub max_retries: u32,
    /// First backoff ceiling, milliseconds.
    pub backoff_initial_ms: u64,
    /// Largest backoff ceiling, milliseconds.
    pub backoff_max_ms: u64,
    /// Longest Retry-After honoured, seconds; longer fails the request.
    pub max_retry_after_secs: u64,
}

impl LlmSettings {
    /// Checks ranges once, so the client never re-checks them.
    #[allow(
        clippy::neg_cmp_op_on_partial_ord,
        reason = "`!(v > 0.0)` also rejects NaN"
    )]
    pub fn validate(&self) -> Result<(), OpenAiChatError> {
        let bad = |m: &str| {
            Err(OpenAiChatError::InvalidSettings {
                reason: m.to_string(),
            })
        };
        let o = &self.openai;
        if self.provider == LlmProvider::Openai {
            if o.model.trim().is_empty() {
                return bad("llm.openai.model is empty");
            }
            if !(o.timeout_secs > 0.0) || !o.timeout_secs.is_finite() {
                return bad("llm.openai.timeout_secs must be a positive number");
            }
            if !(0.0..=2.0).contains(&o.temperature) {
                return bad("llm.openai.temperature must be between 0 and 2");
            }
            if o.max_tokens == 0 {
                return bad("llm.openai.max_tokens must be at least 1");
            }
            if o.backoff_max_ms < o.backoff_initial_ms {
                return bad("llm.openai: need backoff_initial_ms <= backoff_max_ms");
            }
        }
        Ok(())
    }
}
