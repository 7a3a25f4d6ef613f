//! The OpenAI-compatible embedder against a local stub server: order across concurrent
//! batches, retries (Retry-After, 5xx, timeouts), errors that are not retried, response
//! validation and the content-hash cache. No sleeps are used to synchronise: every assertion
//! reads what the stub recorded.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test loudly"
)]

mod support {
    pub mod openai_stub;
}

use std::path::Path;
use std::time::Duration;

use ndarray::Array2;
use segscope::analysis::progress::NoProgress;
use segscope::domain::{BrowsingDocument, TermKind, WeightedTerm};
use segscope::embedding::{
    ApiKey, Embedder, EmbeddingError, OpenAiEmbedder, OpenAiError, OpenAiSettings,
};
use support::openai_stub::{Fault, OpenAiStub, Route, stub_vector};

const KEY: &str = "sk-test-0123456789abcdef";
const DIMS: usize = 8;

fn settings(base_url: &str, key: &str, cache_dir: Option<&Path>) -> OpenAiSettings {
    OpenAiSettings {
        base_url: base_url.into(),
        api_key: ApiKey::new(key),
        model: "test-embed".into(),
        dimensions: DIMS,
        send_dimensions: false,
        batch_size: 2,
        concurrency: 3,
        timeout_secs: 0.5,
        max_retries: 3,
        backoff_initial_ms: 10,
        backoff_max_ms: 40,
        max_retry_after_secs: 5,
        cache_dir: cache_dir
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    }
}

fn embedder(s: &OpenAiSettings) -> OpenAiEmbedder {
    OpenAiEmbedder::with_env(s, 42, |_| None).expect("embedder")
}

fn doc(i: usize) -> BrowsingDocument {
    BrowsingDocument::new([
        WeightedTerm {
            kind: TermKind::Category,
            value: format!("category-{i}"),
            weight: 1.0 + i as f64,
        },
        WeightedTerm {
            kind: TermKind::Event,
            value: "view".into(),
            weight: 2.0,
        },
    ])
}

fn expected(docs: &[BrowsingDocument]) -> Array2<f32> {
    let mut out = Array2::zeros((docs.len(), DIMS));
    for (i, d) in docs.iter().enumerate() {
        for (j, v) in stub_vector(&d.text(), DIMS).into_iter().enumerate() {
            out[[i, j]] = v;
        }
    }
    out
}

fn openai_error(e: EmbeddingError) -> OpenAiError {
    match e {
        EmbeddingError::OpenAi(e) => e,
        other => panic!("expected an OpenAI error, got {other}"),
    }
}

#[tokio::test]
async fn vectors_come_back_in_input_order_across_concurrent_batches() {
    let stub = OpenAiStub::start(KEY, DIMS).await;
    let e = embedder(&settings(&stub.base_url, KEY, None));
    // Seven distinct histories and a repeat of the first: the repeat is sent once.
    let mut docs: Vec<BrowsingDocument> = (0..7).map(doc).collect();
    docs.push(doc(0));
    let got = e.embed(&docs, &NoProgress).await.expect("embed");
    assert_eq!(got, expected(&docs));
    let requests = stub.requests();
    assert_eq!(requests.len(), 4, "7 distinct texts in batches of 2");
    let sent: usize = requests
        .iter()
        .map(|r| r.body["input"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(sent, 7);
    assert!(requests.iter().all(|r| r.body.get("dimensions").is_none()));
    assert_eq!(e.describe().dimensions, DIMS);
    assert!(e.embed(&[], &NoProgress).await.expect("empty").is_empty());
}

#[tokio::test]
async fn rate_limit_waits_for_retry_after_then_succeeds() {
    let stub = OpenAiStub::start(KEY, DIMS).await;
    stub.script(Route::Embeddings, 1, Fault::rate_limited("1"));
    let e = embedder(&settings(&stub.base_url, KEY, None));
    let docs = vec![doc(1)];
    let got = e.embed(&docs, &NoProgress).await.expect("embed");
    assert_eq!(got, expected(&docs));
    let requests = stub.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1].at - requests[0].at >= Duration::from_secs(1),
        "second request after {:?}",
        requests[1].at - requests[0].at
    );
}

#[tokio::test]
async fn server_errors_are_retried_up_to_max_retries_then_reported() {
    let stub = OpenAiStub::start(KEY, DIMS).await;
    for n in 1..=10 {
        stub.script(Route::Embeddings, n, Fault::server_error());
    }
    let e = embedder(&settings(&stub.base_url, KEY, None));
    let err = openai_error(e.embed(&[doc(1)], &NoProgress).await.expect_err("500s"));
    assert!(
        matches!(
            err,
            OpenAiError::Status {
                status: 500,
                attempts: 4,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("HTTP 500"), "{err}");
    assert_eq!(
        stub.requests().len(),
        4,
        "one request and max_retries = 3 retries"
    );
}

#[tokio::test]
async fn a_timed_out_request_is_retried() {
    let stub = OpenAiStub::start(KEY, DIMS).await;
    stub.script(Route::Embeddings, 1, Fault::Delay(Duration::from_secs(3)));
    let e = embedder(&settings(&stub.base_url, KEY, None));
    let docs = vec![doc(2)];
    let got = e.embed(&docs, &NoProgress).await.expect("embed");
    assert_eq!(got, expected(&docs));
    assert_eq!(stub.requests().len(), 2);
}

#[tokio::test]
async fn a_wrong_key_is_not_retried_and_never_shown() {
    let stub = OpenAiStub::start(KEY, DIMS).await;
    let wrong = "sk-wrong-secret-value-987";
    let e = embedder(&settings(&stub.base_url, wrong, None));
    assert!(!format!("{e:?}").contains(wrong));
    let err = openai_error(e.embed(&[doc(1)], &NoProgress).await.expect_err("401"));
    let message = err.to_string();
    assert!(matches!(
        err,
        OpenAiError::Status {
            status: 401,
            attempts: 1,
            ..
        }
    ));
    assert!(
        message.contains("401") && message.contains("Incorrect API key"),
        "{message}"
    );
    assert!(!message.contains(wrong), "{message}");
    assert!(!format!("{err:?}").contains(wrong));
    assert_eq!(stub.requests().len(), 1);
}

#[tokio::test]
async fn an_exhausted_quota_is_not_retried() {
    let stub = OpenAiStub::start(KEY, DIMS).await;
    stub.script(Route::Embeddings, 1, Fault::QuotaExhausted);
    let e = embedder(&settings(&stub.base_url, KEY, None));
    let err = openai_error(e.embed(&[doc(1)], &NoProgress).await.expect_err("quota"));
    assert!(
        matches!(
            err,
            OpenAiError::Status {
                status: 429,
                attempts: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("exceeded your current quota"),
        "{err}"
    );
    assert_eq!(stub.requests().len(), 1);
}

#[tokio::test]
async fn wrong_dimensions_and_counts_are_errors() {
    let stub = OpenAiStub::start(KEY, DIMS).await;
    stub.script(Route::Embeddings, 1, Fault::WrongDimension(3));
    stub.script(Route::Embeddings, 2, Fault::DropOne);
    let e = embedder(&settings(&stub.base_url, KEY, None));
    let err = openai_error(e.embed(&[doc(1)], &NoProgress).await.expect_err("dims"));
    assert!(
        matches!(
            err,
            OpenAiError::DimensionMismatch {
                expected: DIMS,
                got: 3
            }
        ),
        "{err}"
    );
    let err = openai_error(
        e.embed(&[doc(1), doc(2)], &NoProgress)
            .await
            .expect_err("count"),
    );
    assert!(
        matches!(
            err,
            OpenAiError::CountMismatch {
                expected: 2,
                got: 1
            }
        ),
        "{err}"
    );
    assert_eq!(
        stub.requests().len(),
        2,
        "validation failures are not retried"
    );
}

#[tokio::test]
async fn a_malformed_body_is_retried_once() {
    let stub = OpenAiStub::start(KEY, DIMS).await;
    stub.script(
        Route::Embeddings,
        1,
        Fault::RawBody("{\"object\":\"list\",\"da".into()),
    );
    stub.script(
        Route::Embeddings,
        3,
        Fault::RawBody("<html>proxy</html>".into()),
    );
    stub.script(
        Route::Embeddings,
        4,
        Fault::RawBody("<html>proxy</html>".into()),
    );
    let e = embedder(&settings(&stub.base_url, KEY, None));
    let docs = vec![doc(5)];
    assert_eq!(
        e.embed(&docs, &NoProgress).await.expect("embed"),
        expected(&docs)
    );
    assert_eq!(stub.requests().len(), 2);
    let err = openai_error(
        e.embed(&[doc(6)], &NoProgress)
            .await
            .expect_err("malformed"),
    );
    assert!(
        matches!(err, OpenAiError::Malformed { attempts: 2, .. }),
        "{err}"
    );
    assert_eq!(stub.requests().len(), 4);
}

#[tokio::test]
async fn the_cache_spares_unchanged_histories_across_restarts() {
    let stub = OpenAiStub::start(KEY, DIMS).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = settings(&stub.base_url, KEY, Some(dir.path()));
    let mut docs: Vec<BrowsingDocument> = (0..5).map(doc).collect();
    {
        let e = embedder(&s);
        assert!(e.cache_enabled());
        assert_eq!(
            e.embed(&docs, &NoProgress).await.expect("first"),
            expected(&docs)
        );
        assert_eq!(stub.requests().len(), 3);
        assert_eq!(
            e.embed(&docs, &NoProgress).await.expect("second"),
            expected(&docs)
        );
        assert_eq!(
            stub.requests().len(),
            3,
            "second run is served from the cache"
        );
    }
    // A new instance reopens the file: still nothing to request.
    let e = embedder(&s);
    assert_eq!(
        e.embed(&docs, &NoProgress).await.expect("reopened"),
        expected(&docs)
    );
    assert_eq!(stub.requests().len(), 3);
    // One changed history: exactly one request, for that history alone.
    docs[2] = doc(99);
    assert_eq!(
        e.embed(&docs, &NoProgress).await.expect("changed"),
        expected(&docs)
    );
    let requests = stub.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(
        requests[3].body["input"],
        serde_json::json!([doc(99).text()])
    );
}

#[tokio::test]
async fn a_corrupt_cache_is_bypassed() {
    let stub = OpenAiStub::start(KEY, DIMS).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("embeddings.redb"), b"garbage").expect("write");
    let e = embedder(&settings(&stub.base_url, KEY, Some(dir.path())));
    assert!(!e.cache_enabled());
    let docs = vec![doc(1)];
    assert_eq!(
        e.embed(&docs, &NoProgress).await.expect("embed"),
        expected(&docs)
    );
}

#[tokio::test]
async fn the_dimensions_parameter_is_sent_only_when_configured() {
    let stub = OpenAiStub::start(KEY, DIMS).await;
    let mut s = settings(&stub.base_url, KEY, None);
    s.send_dimensions = true;
    let e = embedder(&s);
    e.embed(&[doc(1)], &NoProgress).await.expect("embed");
    assert_eq!(stub.requests()[0].body["dimensions"], DIMS);
}

#[test]
fn settings_win_over_the_environment_and_openai_needs_a_key() {
    let mut s = settings("", "", None);
    let err = OpenAiEmbedder::with_env(&s, 1, |_| None).expect_err("no key");
    assert!(matches!(err, OpenAiError::MissingApiKey { .. }));
    let env = |name: &str| match name {
        "OPENAI_BASE_URL" => Some("http://env.example/v1".to_string()),
        "OPENAI_API_KEY" => Some("sk-env".to_string()),
        _ => None,
    };
    let e = OpenAiEmbedder::with_env(&s, 1, env).expect("env");
    assert_eq!(e.describe().notes, vec!["endpoint http://env.example/v1"]);
    s.base_url = "http://settings.example/v1/".into();
    let e = OpenAiEmbedder::with_env(&s, 1, env).expect("settings");
    assert_eq!(
        e.describe().notes,
        vec!["endpoint http://settings.example/v1"]
    );
}
