//! The OpenAI-compatible embedder: any `/v1/embeddings` endpoint (OpenAI, Azure OpenAI,
//! Ollama, vLLM, TEI) through async-openai, with batching, bounded concurrency, retries that
//! honour `Retry-After`, response validation and the content-hash [`super::cache`].
//!
//! Owns the only use of async-openai for embeddings and every decision about talking to the
//! endpoint; it does not choose the text (that is [`BrowsingDocument::text`]) and does not
//! store vectors.
//!
//! How retries work, and why this way:
//! - async-openai's default transport wraps every request in its own `OpenAIRetryLayer`
//!   (3 retries, fixed exponential backoff without jitter, Retry-After only as whole seconds)
//!   and that layer cannot be removed without the crate's `middleware` feature. Its client
//!   also turns an error response into `OpenAIError::ApiError { status_code, api_error }`
//!   and drops the response headers, so Retry-After never reaches the caller.
//! - So the client is built with `Client::with_http_service` around a small tower service
//!   ([`StatusCapture`]) over async-openai's plain `ReqwestService`: no built-in retry, and
//!   every non-2xx response becomes an `OpenAIError::Boxed(HttpFailure)` carrying the status,
//!   the parsed Retry-After (delta-seconds or HTTP-date) and the provider's message. The
//!   retry loop here then downcasts it.
//! - Retried: 429 (except `insufficient_quota`, which waiting cannot clear), 408, 5xx,
//!   timeouts, connection and body-transfer errors, with full-jitter
//!   exponential backoff from an RNG seeded by the run seed and the batch number (so the
//!   schedule is reproducible), or exactly the server's Retry-After when it sends one (up to
//!   `max_retry_after_secs`; a longer one fails the run rather than stalling it). A malformed
//!   success body is retried once (a proxy may have cut it), then reported. Anything else
//!   (400, 401, 403, 404, ...) fails at once with the status and the provider's message.
//! - The API key only ever travels in the Authorization header: [`ApiKey`] hides it from
//!   `Debug`, and it is scrubbed from provider messages (OpenAI echoes a masked key on 401).
//!
//! Key and base URL: the `[embedding.openai]` value wins when set; otherwise `OPENAI_API_KEY`
//! / `OPENAI_BASE_URL`, as OpenAI's own SDKs do for explicit arguments over the environment.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::{OpenAIError as ClientError, WrappedError};
use async_openai::middleware::{HttpRequestFactory, ReqwestService};
use async_openai::types::embeddings::{
    CreateEmbeddingRequest, CreateEmbeddingResponse, EmbeddingInput,
};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use tokio::task::JoinSet;

use super::cache::{CacheKey, EmbeddingCache, cache_key};
use super::{ApiKey, EmbedderInfo, EmbeddingError, OpenAiSettings};
use crate::analysis::progress::Progress;
use crate::domain::BrowsingDocument;

/// The OpenAI API, used when neither the settings nor `OPENAI_BASE_URL` name another.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

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

/// An error response as the transport saw it, before async-openai could drop its headers.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status}: {message}")]
struct HttpFailure {
    status: u16,
    retry_after: Option<Duration>,
    message: String,
    /// The provider says retrying cannot help (OpenAI's `insufficient_quota` 429).
    permanent: bool,
}

/// Error codes that share a retryable status (429) but will not clear by waiting.
const PERMANENT_ERROR_CODES: [&str; 1] = ["insufficient_quota"];

/// Reads `Retry-After`: delta-seconds (a decimal is accepted) or an HTTP-date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The tower service installed into async-openai: plain reqwest transport (no built-in
/// retry) that turns error responses into [`HttpFailure`]s so status and Retry-After survive.
#[derive(Clone, Debug)]
struct StatusCapture {
    inner: ReqwestService,
}

type CaptureFuture =
    Pin<Box<dyn Future<Output = Result<reqwest::Response, ClientError>> + Send + 'static>>;

impl tower::Service<HttpRequestFactory> for StatusCapture {
    type Response = reqwest::Response;
    type Error = ClientError;
    type Future = CaptureFuture;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        let sent = self.inner.call(request);
        Box::pin(async move {
            let response = sent.await?;
            if response.status().is_success() {
                return Ok(response);
            }
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let body = response.bytes().await.map_err(ClientError::Reqwest)?;
            let (message, permanent) = match serde_json::from_slice::<WrappedError>(&body) {
                Ok(wrapped) => {
                    let error = wrapped.error;
                    let permanent = [&error.code, &error.r#type]
                        .into_iter()
                        .flatten()
                        .any(|c| PERMANENT_ERROR_CODES.contains(&c.as_str()));
                    (error.message, permanent)
                }
                Err(_) => (
                    String::from_utf8_lossy(&body).chars().take(300).collect(),
                    false,
                ),
            };
            Err(ClientError::Boxed(Box::new(HttpFailure {
                status,
                retry_after,
                message,
                permanent,
            })))
        })
    }
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

/// The base URL without user info or query, for outputs and logs.
fn redact_url(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{rest}")
        }
        None => url.to_string(),
    }
}

/// One failed attempt, classified.
struct Failure {
    retry: bool,
    malformed: bool,
    retry_after: Option<Duration>,
    error: Box<dyn Fn(u32) -> OpenAiError + Send>,
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
        let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let base_url = non_empty(Some(settings.base_url.clone()))
            .or_else(|| non_empty(env("OPENAI_BASE_URL")))
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string())
            .trim()
            .trim_end_matches('/')
            .to_string();
        let key = if settings.api_key.is_empty() {
            ApiKey::new(non_empty(env("OPENAI_API_KEY")).unwrap_or_default())
        } else {
            settings.api_key.clone()
        };
        if key.is_empty() && base_url.contains("api.openai.com") {
            return Err(OpenAiError::MissingApiKey { base_url });
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(settings.timeout_secs))
            .build()
            .map_err(|e| OpenAiError::Client {
                detail: e.to_string(),
            })?;
        let config = OpenAIConfig::new()
            .with_api_base(base_url.clone())
            .with_api_key(key.expose());
        let client = Client::build(http.clone(), config).with_http_service(StatusCapture {
            inner: ReqwestService::new(http),
        });
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
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(
        inner.seed ^ batch_no.wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let mut attempts = 0u32;
    let mut malformed_retried = false;
    loop {
        attempts += 1;
        let failure = match inner.client.embeddings().create(request.clone()).await {
            Ok(response) => return validate(response, n, inner.dimensions),
            Err(e) => classify(e, inner),
        };
        let may_retry = failure.retry
            && attempts <= inner.max_retries
            && !(failure.malformed && malformed_retried);
        if !may_retry {
            return Err((failure.error)(attempts));
        }
        malformed_retried |= failure.malformed;
        let delay = match failure.retry_after {
            Some(wait) if wait > inner.max_retry_after => {
                return Err(OpenAiError::RetryAfterTooLong {
                    seconds: wait.as_secs(),
                    limit: inner.max_retry_after.as_secs(),
                });
            }
            Some(wait) => wait,
            None => {
                // Full jitter (AWS architecture blog): uniform in [0, min(max, base · 2^k)].
                let ceiling = inner
                    .backoff_initial
                    .saturating_mul(2u32.saturating_pow(attempts - 1))
                    .min(inner.backoff_max);
                ceiling.mul_f64(rng.r#gen::<f64>())
            }
        };
        tracing::warn!(
            attempt = attempts,
            batch = batch_no,
            delay_ms = delay.as_millis() as u64,
            error = %(failure.error)(attempts),
            "embedding request failed; retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

/// Sorts an async-openai error into retryable or not, with the error to report.
fn classify(error: ClientError, inner: &Inner) -> Failure {
    let scrub = |m: &str| {
        if inner.key.is_empty() {
            m.to_string()
        } else {
            m.replace(inner.key.expose(), "[redacted]")
        }
    };
    let status_failure =
        |status: u16, message: String, retry_after: Option<Duration>, permanent: bool| Failure {
            retry: !permanent && (status == 429 || status == 408 || status >= 500),
            malformed: false,
            retry_after,
            error: Box::new(move |attempts| OpenAiError::Status {
                status,
                message: message.clone(),
                attempts,
            }),
        };
    match error {
        ClientError::Boxed(boxed) => match boxed.downcast::<HttpFailure>() {
            Ok(f) => status_failure(f.status, scrub(&f.message), f.retry_after, f.permanent),
            Err(other) => transport(scrub(&other.to_string()), false),
        },
        ClientError::ApiError(api) => status_failure(
            api.status_code.as_u16(),
            scrub(&api.api_error.message),
            None,
            false,
        ),
        ClientError::Reqwest(e) if e.is_timeout() => {
            let timeout_secs = inner.timeout_secs;
            Failure {
                retry: true,
                malformed: false,
                retry_after: None,
                error: Box::new(move |attempts| OpenAiError::Timeout {
                    timeout_secs,
                    attempts,
                }),
            }
        }
        ClientError::Reqwest(e) => {
            let retry = e.is_connect() || e.is_request() || e.is_body() || e.is_decode();
            transport(scrub(&e.to_string()), retry)
        }
        ClientError::JSONDeserialize(e, _body) => {
            let detail = e.to_string();
            Failure {
                retry: true,
                malformed: true,
                retry_after: None,
                error: Box::new(move |attempts| OpenAiError::Malformed {
                    detail: detail.clone(),
                    attempts,
                }),
            }
        }
        other => transport(scrub(&other.to_string()), false),
    }
}

fn transport(detail: String, retry: bool) -> Failure {
    Failure {
        retry,
        malformed: false,
        retry_after: None,
        error: Box::new(move |attempts| OpenAiError::Transport {
            detail: detail.clone(),
            attempts,
        }),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        let later = std::time::SystemTime::now() + Duration::from_secs(30);
        let wait = parse_retry_after(&httpdate::fmt_http_date(later)).expect("date");
        assert!(wait > Duration::from_secs(27) && wait <= Duration::from_secs(30));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn urls_lose_credentials() {
        assert_eq!(
            redact_url("https://user:pw@example.com/v1?api-key=x"),
            "https://example.com/v1"
        );
    }
}
