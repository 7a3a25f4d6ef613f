//! The OpenAI-compatible embedder: any `/v1/embeddings` endpoint (OpenAI, Azure OpenAI,
//! Ollama, vLLM, TEI) through async-openai, with batching, bounded concurrency, retries that
//! honour `Retry-After`, response validation and the content-hash [`super::cache`].
//!
//! Owns the only use of async-openai for embeddings and every decision about talking to the
//! endpoint; it does not choose the text (that is [`BrowsingDocument::text`]) and does not
//! store vectors.
//!
//! Retries, Retry-After, redaction and the transport are shared with the chat model in
//! [`crate::openai_compat`]; here a batch is retried as a whole, and a malformed success
//! body only once (then reported).
//!
//! Key and base URL: the `[embedding.openai]` value wins when set; otherwise `OPENAI_API_KEY`
//! / `OPENAI_BASE_URL`, as OpenAI's own SDKs do for explicit arguments over the environment.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::embeddings::{
    CreateEmbeddingRequest, CreateEmbeddingResponse, EmbeddingInput,
};
use ndarray::Array2;
use tokio::task::JoinSet;

use super::cache::{CacheKey, EmbeddingCache, cache_key};
use super::{ApiKey, EmbedderInfo, EmbeddingError, OpenAiSettings};
use crate::analysis::progress::Progress;
use crate::domain::BrowsingDocument;
use crate::openai_compat::{
    Backoff, Endpoint, FailureKind, build_client, classify, redact_url, resolve_endpoint,
};

/// Why embedding through the endpoint failed. Messages name the status and the provider's
/// explanation, never the key.
#[derive(Debug, thiserror::Error)]
pub enum OpenAiError {
    /// api.openai.com needs a key and none was configured.
    #[error("no API key for {base_url}: set OPENAI_API_KEY or embedding.openai.api_key")]
    MissingApiKey {
        /// The endpoint.
        base_url: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {detail}")]
    Client {
        /// The cause.
        detail: String,
    },
    /// The endpoint answered with an error status.
    #[error("embedding endpoint answered HTTP {status} after {attempts} attempt(s): {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The provider's message (key scrubbed).
        message: String,
        /// Requests made for this batch.
        attempts: u32,
    },
    /// No answer within the per-request timeout.
    #[error("embedding endpoint did not answer within {timeout_secs} s, {attempts} attempt(s)")]
    Timeout {
        /// The configured timeout.
        timeout_secs: f64,
        /// Requests made for this batch.
        attempts: u32,
    },
    /// The connection failed or broke.
    #[error("cannot reach the embedding endpoint after {attempts} attempt(s): {detail}")]
    Transport {
        /// The cause.
        detail: String,
        /// Requests made for this batch.
        attempts: u32,
    },
    /// The server asked to wait longer than `max_retry_after_secs`.
    #[error(
        "embedding endpoint asked to retry after {seconds} s, more than embedding.openai.max_retry_after_secs = {limit}"
    )]
    RetryAfterTooLong {
        /// Requested wait.
        seconds: u64,
        /// Configured limit.
        limit: u64,
    },
    /// A success response that is not the embeddings JSON.
    #[error("embedding endpoint returned a malformed body after {attempts} attempt(s): {detail}")]
    Malformed {
        /// The parse error (not the body).
        detail: String,
        /// Requests made for this batch.
        attempts: u32,
    },
    /// Fewer or more embeddings than inputs.
    #[error("embedding endpoint returned {got} embeddings for {expected} inputs")]
    CountMismatch {
        /// Inputs sent.
        expected: usize,
        /// Embeddings received.
        got: usize,
    },
    /// The `index` fields do not cover `0..n` exactly once.
    #[error(
        "embedding endpoint returned index {index}, out of range or repeated, for {inputs} inputs"
    )]
    BadIndex {
        /// The offending index.
        index: u32,
        /// Inputs sent.
        inputs: usize,
    },
    /// A vector of another length than configured.
    #[error(
        "embedding endpoint returned vectors of {got} dimensions, expected {expected} (embedding.openai.dimensions)"
    )]
    DimensionMismatch {
        /// Configured length.
        expected: usize,
        /// Received length.
        got: usize,
    },
    /// A NaN or infinite value.
    #[error("embedding endpoint returned a non-finite value in embedding {index}")]
    NonFinite {
        /// Index of the embedding in its batch.
        index: usize,
    },
    /// A request task ended abnormally.
    #[error("embedding task failed: {detail}")]
    Task {
        /// The cause.
        detail: String,
    },
}

/// What a request task hands back: its batch number and the batch's vectors.
type BatchOutcome = (usize, Result<Vec<Vec<f32>>, OpenAiError>);

/// Everything a request task needs, shared between tasks.
struct Inner {
    client: Client<OpenAIConfig>,
    base_url: String,
    key: ApiKey,
    model: String,
    dimensions: usize,
    send_dimensions: bool,
    batch_size: usize,
    concurrency: usize,
    timeout_secs: f64,
    max_retries: u32,
    backoff_initial: Duration,
    backoff_max: Duration,
    max_retry_after: Duration,
    cache: EmbeddingCache,
    seed: u64,
}

/// Embeds through an OpenAI-compatible endpoint; see the module doc for retries and caching.
pub struct OpenAiEmbedder {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("base_url", &redact_url(&self.inner.base_url))
            .field("key", &self.inner.key)
            .field("model", &self.inner.model)
            .field("dimensions", &self.inner.dimensions)
            .field("cache", &self.inner.cache)
            .finish_non_exhaustive()
    }
}

impl OpenAiEmbedder {
    /// Builds the client from settings, falling back to `OPENAI_API_KEY` / `OPENAI_BASE_URL`.
    /// No request is made. `seed` seeds the retry jitter.
    pub fn new(settings: &OpenAiSettings, seed: u64) -> Result<Self, OpenAiError> {
        Self::with_env(settings, seed, |name| std::env::var(name).ok())
    }

    /// As [`OpenAiEmbedder::new`], with the environment given explicitly (for tests).
    pub fn with_env(
        settings: &OpenAiSettings,
        seed: u64,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, OpenAiError> {
        let Endpoint { base_url, key } =
            resolve_endpoint(&settings.base_url, &settings.api_key, env)
                .map_err(|base_url| OpenAiError::MissingApiKey { base_url })?;
        let client = build_client(
            &Endpoint {
                base_url: base_url.clone(),
                key: key.clone(),
            },
            Duration::from_secs_f64(settings.timeout_secs),
        )
        .map_err(|detail| OpenAiError::Client { detail })?;
        let cache = if settings.cache_dir.trim().is_empty() {
            EmbeddingCache::disabled()
        } else {
            EmbeddingCache::open(std::path::Path::new(settings.cache_dir.trim()))
        };
        Ok(OpenAiEmbedder {
            inner: Arc::new(Inner {
                client,
                base_url,
                key,
                model: settings.model.clone(),
                dimensions: settings.dimensions,
                send_dimensions: settings.send_dimensions,
                batch_size: settings.batch_size.max(1),
                concurrency: settings.concurrency.max(1),
                timeout_secs: settings.timeout_secs,
                max_retries: settings.max_retries,
                backoff_initial: Duration::from_millis(settings.backoff_initial_ms),
                backoff_max: Duration::from_millis(settings.backoff_max_ms),
                max_retry_after: Duration::from_secs(settings.max_retry_after_secs),
                cache,
                seed,
            }),
        })
    }

    /// Provider, model and dimensions; the endpoint without credentials in the notes.
    pub fn describe(&self) -> EmbedderInfo {
        EmbedderInfo {
            provider: "openai".into(),
            model: self.inner.model.clone(),
            dimensions: self.inner.dimensions,
            notes: vec![format!("endpoint {}", redact_url(&self.inner.base_url))],
        }
    }

    /// The configured vector length, which every response is checked against.
    pub fn dimensions(&self) -> usize {
        self.inner.dimensions
    }

    /// Whether the content-hash cache is in use.
    pub fn cache_enabled(&self) -> bool {
        self.inner.cache.is_enabled()
    }

    async fn embed_docs(
        &self,
        docs: &[BrowsingDocument],
        progress: &dyn Progress,
    ) -> Result<Array2<f32>, OpenAiError> {
        let inner = &self.inner;
        let d = inner.dimensions;
        let mut out = Array2::<f32>::zeros((docs.len(), d));
        if docs.is_empty() {
            return Ok(out);
        }
        progress.start("embed (openai)", docs.len() as u64);
        let texts: Vec<String> = docs.iter().map(BrowsingDocument::text).collect();
        let keys: Vec<CacheKey> = texts
            .iter()
            .map(|t| cache_key(&inner.base_url, &inner.model, d, t))
            .collect();
        let cached = if inner.cache.is_enabled() {
            let (cache, keys) = (inner.cache.clone(), keys.clone());
            tokio::task::spawn_blocking(move || cache.get_many(&keys, d))
                .await
                .unwrap_or_else(|_| vec![None; docs.len()])
        } else {
            vec![None; docs.len()]
        };
        // Distinct texts still to embed, each with the rows that share it.
        let mut pending: Vec<(String, CacheKey, Vec<usize>)> = Vec::new();
        let mut slot_of: HashMap<CacheKey, usize> = HashMap::new();
        let mut hits = 0u64;
        for (i, hit) in cached.into_iter().enumerate() {
            if let Some(v) = hit {
                out.row_mut(i).iter_mut().zip(v).for_each(|(o, x)| *o = x);
                hits += 1;
            } else if let Some(&s) = slot_of.get(&keys[i]) {
                pending[s].2.push(i);
            } else {
                slot_of.insert(keys[i], pending.len());
                pending.push((texts[i].clone(), keys[i], vec![i]));
            }
        }
        progress.advance(hits);
        tracing::debug!(
            documents = docs.len(),
            cached = hits,
            to_request = pending.len(),
            "embedding through the endpoint"
        );
        let batches: Vec<std::ops::Range<usize>> = (0..pending.len())
            .step_by(inner.batch_size)
            .map(|s| s..(s + inner.batch_size).min(pending.len()))
            .collect();
        let mut tasks: JoinSet<BatchOutcome> = JoinSet::new();
        let mut next = 0usize;
        let mut done = 0usize;
        while done < batches.len() {
            while next < batches.len() && tasks.len() < inner.concurrency {
                let batch_texts: Vec<String> = pending[batches[next].clone()]
                    .iter()
                    .map(|p| p.0.clone())
                    .collect();
                let task_inner = Arc::clone(inner);
                let batch_no = next;
                tasks.spawn(async move {
                    (
                        batch_no,
                        embed_batch(&task_inner, batch_texts, batch_no as u64).await,
                    )
                });
                next += 1;
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            let (batch_no, result) = joined.map_err(|e| OpenAiError::Task {
                detail: e.to_string(),
            })?;
            // An error drops `tasks`, which aborts the batches still in flight.
            let vectors = result?;
            let entries = &pending[batches[batch_no].clone()];
            let mut rows = 0u64;
            let mut to_cache = Vec::with_capacity(entries.len());
            for ((_, key, targets), v) in entries.iter().zip(vectors) {
                for &i in targets {
                    out.row_mut(i).iter_mut().zip(&v).for_each(|(o, x)| *o = *x);
                    rows += 1;
                }
                to_cache.push((*key, v));
            }
            if inner.cache.is_enabled() {
                let cache = inner.cache.clone();
                // One transaction per batch; awaited so a finished run is fully cached.
                let _ = tokio::task::spawn_blocking(move || cache.put_batch(&to_cache)).await;
            }
            progress.advance(rows);
            done += 1;
        }
        progress.finish();
        Ok(out)
    }
}

/// Sends one batch with retries; returns its vectors in input order, validated.
async fn embed_batch(
    inner: &Inner,
    texts: Vec<String>,
    batch_no: u64,
) -> Result<Vec<Vec<f32>>, OpenAiError> {
    let n = texts.len();
    let request = CreateEmbeddingRequest {
        model: inner.model.clone(),
        input: EmbeddingInput::StringArray(texts),
        encoding_format: None,
        user: None,
        dimensions: inner
            .send_dimensions
            .then(|| u32::try_from(inner.dimensions).unwrap_or(u32::MAX)),
    };
    let mut backoff = Backoff::new(
        inner.backoff_initial,
        inner.backoff_max,
        inner.max_retry_after,
        inner.seed ^ batch_no.wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let mut attempts = 0u32;
    let mut malformed_retried = false;
    loop {
        attempts += 1;
        let failure = match inner.client.embeddings().create(request.clone()).await {
            Ok(response) => return validate(response, n, inner.dimensions),
            Err(e) => classify(e, &inner.key),
        };
        let malformed = matches!(failure.kind, FailureKind::Malformed { .. });
        let may_retry =
            failure.retry && attempts <= inner.max_retries && !(malformed && malformed_retried);
        let error = attempt_error(failure.kind, attempts, inner.timeout_secs);
        if !may_retry {
            return Err(error);
        }
        malformed_retried |= malformed;
        let delay = backoff
            .delay(attempts, failure.retry_after)
            .map_err(|seconds| OpenAiError::RetryAfterTooLong {
                seconds,
                limit: inner.max_retry_after.as_secs(),
            })?;
        tracing::warn!(
            attempt = attempts,
            batch = batch_no,
            delay_ms = delay.as_millis() as u64,
            error = %error,
            "embedding request failed; retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

/// The embedder's error for a failed attempt, after `attempts` requests.
fn attempt_error(kind: FailureKind, attempts: u32, timeout_secs: f64) -> OpenAiError {
    match kind {
        FailureKind::Status { status, message } => OpenAiError::Status {
            status,
            message,
            attempts,
        },
        FailureKind::Timeout => OpenAiError::Timeout {
            timeout_secs,
            attempts,
        },
        FailureKind::Transport { detail } => OpenAiError::Transport { detail, attempts },
        FailureKind::Malformed { detail } => OpenAiError::Malformed { detail, attempts },
    }
}

/// Checks count, indices, dimensions and finiteness; returns vectors in input order.
fn validate(
    response: CreateEmbeddingResponse,
    n: usize,
    dimensions: usize,
) -> Result<Vec<Vec<f32>>, OpenAiError> {
    if response.data.len() != n {
        return Err(OpenAiError::CountMismatch {
            expected: n,
            got: response.data.len(),
        });
    }
    let mut ordered: Vec<Option<Vec<f32>>> = vec![None; n];
    for item in response.data {
        let i = item.index as usize;
        if i >= n || ordered[i].is_some() {
            return Err(OpenAiError::BadIndex {
                index: item.index,
                inputs: n,
            });
        }
        if item.embedding.len() != dimensions {
            return Err(OpenAiError::DimensionMismatch {
                expected: dimensions,
                got: item.embedding.len(),
            });
        }
        if !item.embedding.iter().all(|v| v.is_finite()) {
            return Err(OpenAiError::NonFinite { index: i });
        }
        ordered[i] = Some(item.embedding);
    }
    // n items, each index distinct and < n: every slot is filled.
    Ok(ordered.into_iter().flatten().collect())
}

impl super::Embedder for OpenAiEmbedder {
    fn describe(&self) -> EmbedderInfo {
        OpenAiEmbedder::describe(self)
    }

    fn dimensions(&self) -> usize {
        OpenAiEmbedder::dimensions(self)
    }

    async fn embed(
        &self,
        docs: &[BrowsingDocument],
        progress: &dyn Progress,
    ) -> Result<Array2<f32>, EmbeddingError> {
        Ok(self.embed_docs(docs, progress).await?)
    }
}
