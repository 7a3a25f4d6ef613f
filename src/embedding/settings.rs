//! The `[embedding]` settings: which embedder, and the knobs of each.
//!
//! Owns the typed shape of the section and its validation; it does not read the environment
//! (the OpenAI key and base URL fall back to `OPENAI_API_KEY` / `OPENAI_BASE_URL` in
//! [`super::openai`], where they are used) and does not build embedders (that is
//! [`super::ConfiguredEmbedder::build`]). The API key is wrapped in [`ApiKey`], whose `Debug`
//! never shows it and which is never serialised, because settings are recorded in run outputs.

use serde::{Deserialize, Serialize};

use super::EmbeddingError;

/// Which embedder a run uses; a closed set so that the choice is matched, never compared as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingProvider {
    /// TF-IDF + randomized truncated SVD learned from the corpus; no network.
    Local,
    /// Any OpenAI-compatible `/v1/embeddings` endpoint.
    Openai,
}

/// The `[embedding]` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingSettings {
    /// Which embedder runs.
    pub provider: EmbeddingProvider,
    /// Knobs of the local embedder.
    pub local: LocalSettings,
    /// Knobs of the OpenAI-compatible embedder.
    pub openai: OpenAiSettings,
}

/// `[embedding.local]`: see `config/default.toml` for what each knob does.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocalSettings {
    /// Requested vector length.
    pub dimensions: usize,
    /// Minimum number of histories a term must appear in.
    pub min_df: usize,
    /// Extra random directions of the randomized SVD.
    pub oversampling: usize,
    /// Power iterations of the randomized SVD.
    pub power_iterations: usize,
}

/// `[embedding.openai]`: see `config/default.toml` for what each knob does.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OpenAiSettings {
    /// Base URL including `/v1`; empty = `OPENAI_BASE_URL`, else the OpenAI API.
    pub base_url: String,
    /// API key; empty = `OPENAI_API_KEY`. Never serialised.
    #[serde(default, skip_serializing)]
    pub api_key: ApiKey,
    /// Model name.
    pub model: String,
    /// Expected vector length, checked on every response.
    pub dimensions: usize,
    /// Whether `dimensions` is also sent as the request parameter.
    pub send_dimensions: bool,
    /// Histories per request.
    pub batch_size: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Per-request timeout, seconds.
    pub timeout_secs: f64,
    /// Retries of one request after a retryable failure.
    pub max_retries: u32,
    /// First backoff ceiling, milliseconds.
    pub backoff_initial_ms: u64,
    /// Largest backoff ceiling, milliseconds.
    pub backoff_max_ms: u64,
    /// Longest Retry-After honoured, seconds; longer fails the run.
    pub max_retry_after_secs: u64,
    /// Cache directory; empty disables the cache.
    pub cache_dir: String,
}

/// An API key that cannot leak by accident: `Debug` prints `<redacted>` (or `<unset>`), it is
/// never serialised, and the only way to read it is [`ApiKey::expose`].
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key (from settings or the environment).
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    /// The key itself, for the one place that sends it (the Authorization header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no key is configured.
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            f.write_str("ApiKey(<unset>)")
        } else {
            f.write_str("ApiKey(<redacted>)")
        }
    }
}

impl EmbeddingSettings {
    /// Checks ranges once, so the embedders never re-check them.
    #[allow(
        clippy::neg_cmp_op_on_partial_ord,
        reason = "`!(v > 0.0)` also rejects NaN"
    )]
    pub fn validate(&self) -> Result<(), EmbeddingError> {
        let bad = |m: &str| {
            Err(EmbeddingError::InvalidSettings {
                reason: m.to_string(),
            })
        };
        let l = &self.local;
        if l.dimensions == 0 || l.min_df == 0 {
            return bad("embedding.local: dimensions and min_df must be at least 1");
        }
        let o = &self.openai;
        if self.provider == EmbeddingProvider::Openai {
            if o.model.trim().is_empty() {
                return bad("embedding.openai.model is empty");
            }
            if o.dimensions == 0 || o.batch_size == 0 || o.concurrency == 0 {
                return bad(
                    "embedding.openai: dimensions, batch_size and concurrency must be at least 1",
                );
            }
            if !(o.timeout_secs > 0.0) || !o.timeout_secs.is_finite() {
                return bad("embedding.openai.timeout_secs must be a positive number");
            }
            if o.backoff_max_ms < o.backoff_initial_ms {
                return bad("embedding.openai: need backoff_initial_ms <= backoff_max_ms");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_never_shows_in_debug_or_json() {
        let key = ApiKey::new("sk-very-secret");
        assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
        let settings = crate::settings::Settings::load_with_env(None, Vec::new());
        let mut settings = settings.expect("defaults");
        settings.embedding.openai.api_key = key;
        let debug = format!("{settings:?}");
        let json = serde_json::to_string(&settings).expect("json");
        assert!(!debug.contains("sk-very-secret"));
        assert!(!json.contains("sk-very-secret"));
        assert_eq!(settings.embedding.provider, EmbeddingProvider::Local);
        assert!(settings.embedding.validate().is_ok());
    }
}
