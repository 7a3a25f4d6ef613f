//! What every OpenAI-compatible client of segscope shares: finding the endpoint and key,
//! a transport that keeps the status and `Retry-After` of error responses, the
//! classification of a failed attempt, and the backoff schedule.
//!
//! Owned here so that the embedder ([`crate::embedding::openai`]) and the chat model
//! ([`crate::llm::openai`]) retry, redact and time out the same way; each keeps its own
//! error type and its own idea of a valid answer.
//!
//! Why a custom transport: async-openai's default transport wraps every request in its own
//! retry layer (fixed exponential backoff without jitter, Retry-After only as whole seconds)
//! that cannot be removed without the crate's `middleware` feature, and its client turns an
//! error response into `OpenAIError::ApiError` without the headers, so Retry-After never
//! reaches the caller. So clients are built with `Client::with_http_service` around
//! [`StatusCapture`] over async-openai's plain `ReqwestService`: no built-in retry, and every
//! non-2xx response becomes an `OpenAIError::Boxed(HttpFailure)` carrying the status, the
//! parsed Retry-After (delta-seconds or HTTP-date) and the provider's message.
//!
//! Retry policy (see [`classify`]): 429 (except `insufficient_quota`, which waiting cannot
//! clear), 408, 5xx, timeouts, connection and body-transfer errors are retried, with
//! full-jitter exponential backoff from a seeded RNG (so the schedule is reproducible) or
//! exactly the server's Retry-After when it sends one, up to a limit beyond which the
//! request fails rather than stalls. A malformed success body is retried (a proxy may have
//! cut it). Anything else (400, 401, 403, 404, ...) fails at once.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::{OpenAIError as ClientError, WrappedError};
use async_openai::middleware::{HttpRequestFactory, ReqwestService};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::embedding::ApiKey;

/// The OpenAI API, used when neither the settings nor `OPENAI_BASE_URL` name another.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Error codes that share a retryable status (429) but will not clear by waiting.
const PERMANENT_ERROR_CODES: [&str; 1] = ["insufficient_quota"];

/// Where to send requests and with which key.
pub struct Endpoint {
    /// Base URL including `/v1`, without a trailing slash.
    pub base_url: String,
    /// The key (may be empty for local servers).
    pub key: ApiKey,
}

/// The endpoint from settings, falling back to `OPENAI_BASE_URL` / `OPENAI_API_KEY` as
/// OpenAI's own SDKs do (an explicit value wins over the environment). `None` when the
/// OpenAI API itself would be called without a key.
pub fn resolve_endpoint(
    base_url: &str,
    key: &ApiKey,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Endpoint, String> {
    let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let base_url = non_empty(Some(base_url.to_string()))
        .or_else(|| non_empty(env("OPENAI_BASE_URL")))
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_string())
        .trim()
        .trim_end_matches('/')
        .to_string();
    let key = if key.is_empty() {
        ApiKey::new(non_empty(env("OPENAI_API_KEY")).unwrap_or_default())
    } else {
        key.clone()
    };
    if key.is_empty() && base_url.contains("api.openai.com") {
        return Err(base_url);
    }
    Ok(Endpoint { base_url, key })
}

/// An async-openai client for `endpoint` with a per-request timeout and no built-in retry.
pub fn build_client(
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<Client<OpenAIConfig>, String> {
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let config = OpenAIConfig::new()
        .with_api_base(endpoint.base_url.clone())
        .with_api_key(endpoint.key.expose());
    Ok(
        Client::build(http.clone(), config).with_http_service(StatusCapture {
            inner: ReqwestService::new(http),
        }),
    )
}

/// The base URL without user info or query, for outputs and logs.
pub fn redact_url(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{rest}")
        }
        None => url.to_string(),
    }
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

/// Reads `Retry-After`: delta-seconds (a decimal is accepted) or an HTTP-date. Public so
/// that other outbound clients (the Slack app's posts) read it the same way.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
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

/// What went wrong in one attempt, without the attempt count (the caller's error adds it).
#[derive(Debug, Clone, PartialEq)]
pub enum FailureKind {
    /// An error status with the provider's message (key scrubbed).
    Status {
        /// HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// No answer within the per-request timeout.
    Timeout,
    /// The connection failed or broke.
    Transport {
        /// The cause (key scrubbed).
        detail: String,
    },
    /// A 2xx whose body is not what the API promises.
    Malformed {
        /// The parse error (not the body).
        detail: String,
    },
}

/// One failed attempt, classified.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedAttempt {
    /// Whether waiting and trying again may help.
    pub retry: bool,
    /// The server's Retry-After, when it sent one.
    pub retry_after: Option<Duration>,
    /// What went wrong.
    pub kind: FailureKind,
}

/// Classifies a client error; `key` is scrubbed from every message (OpenAI echoes a masked
/// key on 401, proxies may echo more).
pub fn classify(error: ClientError, key: &ApiKey) -> FailedAttempt {
    let scrub = |m: &str| {
        if key.is_empty() {
            m.to_string()
        } else {
            m.replace(key.expose(), "[redacted]")
        }
    };
    let status = |status: u16, message: String, retry_after, permanent: bool| FailedAttempt {
        retry: !permanent && (status == 429 || status == 408 || status >= 500),
        retry_after,
        kind: FailureKind::Status { status, message },
    };
    let transport = |detail: String, retry: bool| FailedAttempt {
        retry,
        retry_after: None,
        kind: FailureKind::Transport { detail },
    };
    match error {
        ClientError::Boxed(boxed) => match boxed.downcast::<HttpFailure>() {
            Ok(f) => status(f.status, scrub(&f.message), f.retry_after, f.permanent),
            Err(other) => transport(scrub(&other.to_string()), false),
        },
        ClientError::ApiError(api) => status(
            api.status_code.as_u16(),
            scrub(&api.api_error.message),
            None,
            false,
        ),
        ClientError::Reqwest(e) if e.is_timeout() => FailedAttempt {
            retry: true,
            retry_after: None,
            kind: FailureKind::Timeout,
        },
        ClientError::Reqwest(e) => {
            let retry = e.is_connect() || e.is_request() || e.is_body() || e.is_decode();
            transport(scrub(&e.to_string()), retry)
        }
        ClientError::JSONDeserialize(e, _body) => FailedAttempt {
            retry: true,
            retry_after: None,
            kind: FailureKind::Malformed {
                detail: e.to_string(),
            },
        },
        ClientError::StreamError(e) => transport(scrub(&e.to_string()), true),
        other => transport(scrub(&other.to_string()), false),
    }
}

/// The wait before the next attempt: the server's Retry-After, or full jitter.
pub struct Backoff {
    initial: Duration,
    max: Duration,
    max_retry_after: Duration,
    rng: Xoshiro256PlusPlus,
}

impl Backoff {
    /// A schedule whose jitter is drawn from an RNG seeded by `seed` (so it is reproducible).
    pub fn new(initial: Duration, max: Duration, max_retry_after: Duration, seed: u64) -> Self {
        Backoff {
            initial,
            max,
            max_retry_after,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
        }
    }

    /// The wait after failed attempt number `attempt` (1-based): exactly `retry_after` when
    /// the server sent one (an error carrying the requested seconds when it exceeds the
    /// limit), else uniform in [0, min(max, initial · 2^(attempt-1))] (full jitter, AWS
    /// architecture blog).
    pub fn delay(&mut self, attempt: u32, retry_after: Option<Duration>) -> Result<Duration, u64> {
        match retry_after {
            Some(wait) if wait > self.max_retry_after => Err(wait.as_secs()),
            Some(wait) => Ok(wait),
            None => {
                let ceiling = self
                    .initial
                    .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
                    .min(self.max);
                Ok(ceiling.mul_f64(self.rng.r#gen::<f64>()))
            }
        }
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

    #[test]
    fn endpoint_prefers_settings_then_environment_and_needs_a_key_for_openai() {
        let env = |name: &str| match name {
            "OPENAI_BASE_URL" => Some("http://env-host/v1/".to_string()),
            "OPENAI_API_KEY" => Some("sk-env".to_string()),
            _ => None,
        };
        let from_env = resolve_endpoint("", &ApiKey::default(), env).expect("env");
        assert_eq!(from_env.base_url, "http://env-host/v1");
        assert_eq!(from_env.key.expose(), "sk-env");
        let explicit =
            resolve_endpoint("http://mine/v1", &ApiKey::new("sk-mine"), env).expect("explicit");
        assert_eq!(explicit.base_url, "http://mine/v1");
        assert_eq!(explicit.key.expose(), "sk-mine");
        assert_eq!(
            resolve_endpoint("", &ApiKey::default(), |_| None).err(),
            Some(DEFAULT_BASE_URL.to_string())
        );
    }

    #[test]
    fn backoff_honours_retry_after_up_to_the_limit_and_jitters_otherwise() {
        let mut b = Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(250),
            Duration::from_secs(5),
            7,
        );
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(2))),
            Ok(Duration::from_secs(2))
        );
        assert_eq!(b.delay(1, Some(Duration::from_secs(9))), Err(9));
        for attempt in 1..6 {
            let d = b.delay(attempt, None).expect("jitter");
            let ceiling = (100u64 << (attempt - 1)).min(250);
            assert!(d <= Duration::from_millis(ceiling), "{attempt}: {d:?}");
        }
        let mut again = Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(250),
            Duration::from_secs(5),
            7,
        );
        let mut first = Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(250),
            Duration::from_secs(5),
            7,
        );
        assert_eq!(again.delay(3, None), first.delay(3, None));
    }
}
