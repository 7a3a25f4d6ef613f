//! The Slack app of `segscope serve` over real HTTP, against a local server standing in for
//! Slack (a slash command's `response_url` and the Web API's `chat.postMessage`) that
//! records what it receives. Requests are signed exactly as Slack signs them (v0, HMAC-SHA256
//! of `v0:{timestamp}:{body}`). "Nothing was posted" is proved without sleeping: the service
//! counts the answers it is still working on, and once `Slack::settled` resolves anything it
//! was going to post has reached the stand-in.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test loudly"
)]

mod support {
    #[allow(dead_code, reason = "shared helpers; this binary uses some")]
    pub mod cli;
}

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use segscope::embedding::ApiKey;
use segscope::serve::{AppState, serve};
use segscope::settings::Settings;
use serde_json::{Value, json};
use sha2::Sha256;
use support::cli::segscope;
use tokio::sync::{mpsc, oneshot};

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const BOT_TOKEN: &str = "xoxb-test-1234";
/// Longest wait for something that must arrive; only a failing test waits this long.
const GUARD: Duration = Duration::from_secs(120);

/// Every log line of this test binary at debug level and above, from every crate: the
/// place to look for a leaked secret.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Arc::clone(&buffer);
        tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || LogWriter(Arc::clone(&writer)))
            .try_init()
            .expect("one subscriber per test binary");
        buffer
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Fails when a log line holds the signing secret, the bot token, a signature or a
/// `response_url` (a capability to post into the channel); returns the logs.
fn assert_no_secret_logged() -> String {
    let logs = String::from_utf8(captured_logs().lock().unwrap().clone()).unwrap();
    for secret in [SECRET, BOT_TOKEN, "v0=", "/hook/"] {
        assert!(!logs.contains(secret), "{secret:?} logged:\n{logs}");
    }
    logs
}

/// Writes an Iris run (PCA only, no resampling: quick) into `data_dir/runs/iris-1`.
fn make_run(data_dir: &Path) {
    let out = data_dir.join("runs").join("iris-1");
    segscope()
        .args(["segment", "--features", "examples/iris.csv"])
        .args(["--id-column", "id", "--label-column", "species"])
        .args(["--k", "3", "--maps", "pca", "--out"])
        .arg(&out)
        .env("SEGSCOPE__STABILITY__RESAMPLES", "0")
        .assert()
        .success();
}

/// One request the stand-in received.
#[derive(Debug)]
struct Received {
    path: String,
    authorization: Option<String>,
    body: Value,
    at: Instant,
}

#[derive(Clone)]
struct StandInState {
    sent: mpsc::UnboundedSender<Received>,
    calls: Arc<Mutex<HashMap<String, usize>>>,
}

/// Records every POST; `/hook/busy` answers 429 with `Retry-After: 1` the first time, and
/// `chat.postMessage` refuses channel `C_GONE` as Slack does (200, `ok: false`).
async fn stand_in_handler(
    State(state): State<StandInState>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let path = uri.path().to_string();
    let body: Value = serde_json::from_slice(&body).expect("Slack receives JSON");
    let calls = {
        let mut calls = state.calls.lock().unwrap();
        let n = calls.entry(path.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let channel = body["channel"].as_str().unwrap_or_default().to_string();
    state
        .sent
        .send(Received {
            path: path.clone(),
            authorization: headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string()),
            body,
            at: Instant::now(),
        })
        .unwrap();
    match path.as_str() {
        "/hook/busy" if calls == 1 => {
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "").into_response()
        }
        "/api/chat.postMessage" if channel == "C_GONE" => {
            axum::Json(json!({"ok": false, "error": "channel_not_found"})).into_response()
        }
        "/api/chat.postMessage" => {
            axum::Json(json!({"ok": true, "channel": channel, "ts": "1700000001.000200"}))
                .into_response()
        }
        _ => "ok".into_response(),
    }
}

struct StandIn {
    base: String,
    received: mpsc::UnboundedReceiver<Received>,
}

impl StandIn {
    async fn start() -> StandIn {
        let (sent, received) = mpsc::unbounded_channel();
        let state = StandInState {
            sent,
            calls: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(axum::routing::post(stand_in_handler))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        StandIn { base, received }
    }

    /// The next request received (fails the test after [`GUARD`]).
    async fn next(&mut self) -> Received {
        tokio::time::timeout(GUARD, self.received.recv())
            .await
            .expect("nothing reached the stand-in in time")
            .expect("stand-in stopped")
    }

    /// Fails when anything has been received that was not taken with [`StandIn::next`].
    fn assert_nothing_more(&mut self) {
        if let Ok(extra) = self.received.try_recv() {
            panic!("unexpected post to the stand-in: {extra:?}");
        }
    }
}

struct Server {
    base: String,
    state: AppState,
    _stop: oneshot::Sender<()>,
}

impl Server {
    async fn start(data_dir: &Path, stand_in: &StandIn, secret: Option<&str>) -> Server {
        captured_logs();
        let mut settings = Settings::load_with_env(None, Vec::new()).expect("defaults");
        if let Some(secret) = secret {
            settings.slack.signing_secret = ApiKey::new(secret);
        }
        settings.slack.bot_token = ApiKey::new(BOT_TOKEN);
        settings.slack.api_base_url = format!("{}/api", stand_in.base);
        settings.slack.retry_initial_secs = 0.01;
        settings.slack.retry_max_secs = 0.02;
        settings.serve.max_body_bytes = 64 * 1024;
        let state = AppState::new(settings, data_dir.to_path_buf()).expect("state");
        let (stop, stopped) = oneshot::channel::<()>();
        let (bound_tx, bound_rx) = oneshot::channel::<SocketAddr>();
        tokio::spawn(serve(
            state.clone(),
            "127.0.0.1:0".parse().unwrap(),
            async move {
                let _ = stopped.await;
            },
            move |addr| {
                let _ = bound_tx.send(addr);
            },
        ));
        let addr = bound_rx.await.expect("bound");
        Server {
            base: format!("http://{addr}"),
            state,
            _stop: stop,
        }
    }

    /// Waits until the service has posted everything it was going to post.
    async fn settled(&self) {
        tokio::time::timeout(GUARD, self.state.slack.settled())
            .await
            .expect("Slack answers still in flight");
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The answer the JSON API gives, the reference for what Slack must show.
    async fn ask(&self, question: &str) -> Value {
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/runs/iris-1/ask", self.base))
            .json(&json!({ "question": question }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.json().await.unwrap()
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

/// `X-Slack-Signature` as Slack computes it.
fn slack_signature(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("v0={hex}")
}

/// How a test request is signed.
#[derive(Clone, Copy)]
enum Signing<'a> {
    /// Correctly, at this timestamp.
    At(i64),
    /// With another secret.
    WrongSecret,
    /// No Slack headers at all.
    Unsigned,
    /// A signature made for this other body.
    ForBody(&'a str),
}

struct Reply {
    status: u16,
    body: Value,
    took: Duration,
}

async fn send(
    url: &str,
    content_type: &str,
    body: &str,
    signing: Signing<'_>,
    retry_num: Option<u32>,
) -> Reply {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body.to_string());
    let timestamp = match signing {
        Signing::At(at) => at,
        _ => now(),
    }
    .to_string();
    let signature = match signing {
        Signing::At(_) => Some(slack_signature(SECRET, &timestamp, body)),
        Signing::WrongSecret => Some(slack_signature("not-the-secret", &timestamp, body)),
        Signing::ForBody(other) => Some(slack_signature(SECRET, &timestamp, other)),
        Signing::Unsigned => None,
    };
    if let Some(signature) = signature {
        request = request
            .header("X-Slack-Request-Timestamp", &timestamp)
            .header("X-Slack-Signature", signature);
    }
    if let Some(n) = retry_num {
        request = request
            .header("X-Slack-Retry-Num", n.to_string())
            .header("X-Slack-Retry-Reason", "http_timeout");
    }
    let started = Instant::now();
    let response = request.send().await.unwrap();
    let took = started.elapsed();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON reply")
    };
    Reply { status, body, took }
}

/// A slash command body as Slack sends it (form-encoded).
fn command_body(text: &str, response_url: &str) -> String {
    serde_urlencoded::to_string([
        ("token", "gIkuvaNzQIHg97ATvDxqgjtO"),
        ("team_id", "T0001"),
        ("team_domain", "example"),
        ("channel_id", "C2147483705"),
        ("channel_name", "test"),
        ("user_id", "U2147483697"),
        ("user_name", "Steve"),
        ("command", "/segments"),
        ("text", text),
        ("response_url", response_url),
        ("trigger_id", "13345224609.738474920.8088930838d88f008e0"),
        ("api_app_id", "A123456"),
    ])
    .unwrap()
}

async fn command(server: &Server, body: &str, signing: Signing<'_>, retry: Option<u32>) -> Reply {
    send(
        &format!("{}/slack/commands", server.base),
        "application/x-www-form-urlencoded",
        body,
        signing,
        retry,
    )
    .await
}

async fn event(server: &Server, body: &Value, signing: Signing<'_>, retry: Option<u32>) -> Reply {
    send(
        &format!("{}/slack/events", server.base),
        "application/json",
        &body.to_string(),
        signing,
        retry,
    )
    .await
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The blocks Slack must show for `answer` (the JSON API's reply) about run iris-1.
fn expected_blocks(answer: &Value) -> Value {
    let figures: Vec<String> = answer["figures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "`{}` = {}",
                f["key"].as_str().unwrap(),
                f["display"].as_str().unwrap()
            )
        })
        .collect();
    assert!(!figures.is_empty(), "the answer cites figures: {answer}");
    json!([
        {"type": "section", "text": {"type": "mrkdwn",
            "text": escape(answer["text"].as_str().unwrap().trim())}},
        {"type": "context", "elements": [
            {"type": "mrkdwn", "text": "Run `iris-1` · answered by builtin"},
            {"type": "mrkdwn", "text": format!("Figures: {}", figures.join(" · "))},
        ]},
    ])
}

fn metric_line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no metric {prefix} in:\n{text}"))
}

const QUESTION: &str = "Which segment is the largest?";

#[tokio::test]
async fn a_signed_slash_command_is_acknowledged_at_once_and_answered_once_at_response_url() {
    let dir = tempfile::tempdir().unwrap();
    make_run(dir.path());
    let mut stand_in = StandIn::start().await;
    let server = Server::start(dir.path(), &stand_in, Some(SECRET)).await;
    let reference = server.ask(QUESTION).await;

    let body = command_body(QUESTION, &format!("{}/hook/first", stand_in.base));
    let signed_at = now();
    let ack = command(&server, &body, Signing::At(signed_at), None).await;
    assert_eq!(ack.status, 200);
    assert_eq!(
        ack.body,
        json!({"response_type": "ephemeral", "text": "Working on it…"})
    );
    assert!(ack.took < Duration::from_secs(3), "ack took {:?}", ack.took);

    let answer = stand_in.next().await;
    assert_eq!(answer.path, "/hook/first");
    assert_eq!(answer.authorization, None, "response_url needs no token");
    assert_eq!(
        answer.body,
        json!({
            "response_type": "in_channel",
            "text": escape(reference["text"].as_str().unwrap().trim()),
            "blocks": expected_blocks(&reference),
        })
    );

    // Slack's retry of the same delivery (same timestamp, same body) is acknowledged only.
    let retry = command(&server, &body, Signing::At(signed_at), Some(1)).await;
    assert_eq!((retry.status, retry.body), (200, Value::Null));
    server.settled().await;
    stand_in.assert_nothing_more();

    // No question: usage help, nothing posted.
    let empty = command_body("  ", &format!("{}/hook/empty", stand_in.base));
    let usage = command(&server, &empty, Signing::At(now()), None).await;
    assert_eq!(usage.status, 200);
    assert_eq!(
        usage.body,
        json!({"response_type": "ephemeral", "text":
            "Ask a question about your customer segments, for example: /segments which segment is the largest?"})
    );
    server.settled().await;
    stand_in.assert_nothing_more();

    let metrics = server.metrics().await;
    assert_eq!(
        metric_line(
            &metrics,
            r#"segscope_slack_requests_total{endpoint="commands",outcome="duplicate"}"#
        ),
        r#"segscope_slack_requests_total{endpoint="commands",outcome="duplicate"} 1"#
    );
    assert_eq!(
        metric_line(
            &metrics,
            r#"segscope_slack_requests_total{endpoint="commands",outcome="verified"}"#
        ),
        r#"segscope_slack_requests_total{endpoint="commands",outcome="verified"} 3"#
    );
    assert_eq!(
        metric_line(
            &metrics,
            r#"segscope_slack_posts_total{target="response_url",outcome="ok"}"#
        ),
        r#"segscope_slack_posts_total{target="response_url",outcome="ok"} 1"#
    );
    assert!(!metrics.contains(SECRET) && !metrics.contains(BOT_TOKEN));
    let logs = assert_no_secret_logged();
    assert!(logs.contains("Slack command accepted"), "{logs}");
}

#[tokio::test]
async fn requests_not_signed_by_slack_get_401_and_nothing_happens() {
    let dir = tempfile::tempdir().unwrap();
    let mut stand_in = StandIn::start().await;
    let server = Server::start(dir.path(), &stand_in, Some(SECRET)).await;
    let body = command_body(QUESTION, &format!("{}/hook/forged", stand_in.base));
    let tampered = body.replace("largest", "smallest");
    let mention = json!({"type": "event_callback", "event_id": "EvForged",
        "event": {"type": "app_mention", "text": "<@UBOT> hi", "channel": "C1", "ts": "1.1"}});
    let cases: Vec<(&str, Reply, &str)> = vec![
        (
            "unsigned",
            command(&server, &body, Signing::Unsigned, None).await,
            "missing X-Slack-Signature or X-Slack-Request-Timestamp",
        ),
        (
            "mis-signed",
            command(&server, &body, Signing::WrongSecret, None).await,
            "X-Slack-Signature does not match the request",
        ),
        (
            "stale",
            command(&server, &body, Signing::At(now() - 301), None).await,
            "X-Slack-Request-Timestamp is more than 5 minutes from now",
        ),
        (
            "future",
            command(&server, &body, Signing::At(now() + 360), None).await,
            "X-Slack-Request-Timestamp is more than 5 minutes from now",
        ),
        (
            "tampered body",
            command(&server, &tampered, Signing::ForBody(&body), None).await,
            "X-Slack-Signature does not match the request",
        ),
        (
            "mis-signed event",
            event(&server, &mention, Signing::WrongSecret, Some(1)).await,
            "X-Slack-Signature does not match the request",
        ),
        (
            "unsigned url_verification",
            event(
                &server,
                &json!({"type": "url_verification", "challenge": "c"}),
                Signing::Unsigned,
                None,
            )
            .await,
            "missing X-Slack-Signature or X-Slack-Request-Timestamp",
        ),
    ];
    for (case, reply, reason) in cases {
        assert_eq!(reply.status, 401, "{case}");
        assert_eq!(
            reply.body,
            json!({"error": {"code": "unauthorized",
                "message": format!("not a request signed by Slack: {reason}")}}),
            "{case}"
        );
    }
    // The body-size limit covers the Slack routes too, signed or not.
    let huge = command_body(
        &"x".repeat(100 * 1024),
        &format!("{}/hook/huge", stand_in.base),
    );
    let timestamp = now().to_string();
    let response = reqwest::Client::new()
        .post(format!("{}/slack/commands", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Slack-Request-Timestamp", &timestamp)
        .header(
            "X-Slack-Signature",
            slack_signature(SECRET, &timestamp, &huge),
        )
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    server.settled().await;
    stand_in.assert_nothing_more();

    // The same body, properly signed, is taken: only its reply arrives (no run yet).
    let good = command_body(QUESTION, &format!("{}/hook/good", stand_in.base));
    assert_eq!(
        command(&server, &good, Signing::At(now()), None)
            .await
            .status,
        200
    );
    let notice = stand_in.next().await;
    assert_eq!(notice.path, "/hook/good");
    assert_eq!(
        notice.body,
        json!({"response_type": "ephemeral",
            "text": "There is no segmentation run to answer from yet: start one first."})
    );
    server.settled().await;
    stand_in.assert_nothing_more();

    let metrics = server.metrics().await;
    for (outcome, count) in [
        ("rejected_missing_headers", 1),
        ("rejected_bad_signature", 2),
        ("rejected_stale", 2),
        ("verified", 1),
    ] {
        let prefix =
            format!(r#"segscope_slack_requests_total{{endpoint="commands",outcome="{outcome}"}}"#);
        assert_eq!(metric_line(&metrics, &prefix), format!("{prefix} {count}"));
    }
    let logs = assert_no_secret_logged();
    assert!(logs.contains("Slack request refused"), "{logs}");
}

#[tokio::test]
async fn without_a_signing_secret_the_slack_routes_are_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut stand_in = StandIn::start().await;
    let server = Server::start(dir.path(), &stand_in, None).await;
    let body = command_body(QUESTION, &format!("{}/hook/off", stand_in.base));
    let off = json!({"error": {"code": "not_found",
        "message": "the Slack app is not configured on this server (no signing secret)"}});
    let reply = command(&server, &body, Signing::At(now()), None).await;
    assert_eq!((reply.status, reply.body), (404, off.clone()));
    let reply = event(
        &server,
        &json!({"type": "url_verification", "challenge": "c"}),
        Signing::At(now()),
        None,
    )
    .await;
    assert_eq!((reply.status, reply.body), (404, off));
    server.settled().await;
    stand_in.assert_nothing_more();
}

#[tokio::test]
async fn events_verify_the_url_and_mentions_are_answered_in_their_thread_once() {
    let dir = tempfile::tempdir().unwrap();
    make_run(dir.path());
    let mut stand_in = StandIn::start().await;
    let server = Server::start(dir.path(), &stand_in, Some(SECRET)).await;
    let reference = server.ask(QUESTION).await;

    let challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P";
    let reply = event(
        &server,
        &json!({"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": challenge,
            "type": "url_verification"}),
        Signing::At(now()),
        None,
    )
    .await;
    assert_eq!(
        (reply.status, reply.body),
        (200, json!({ "challenge": challenge }))
    );

    let mention = |event_id: &str, channel: &str, thread_ts: Option<&str>| {
        let mut event = json!({"type": "app_mention", "user": "U061F7AUR",
            "text": format!("<@U0LAN0Z89> {QUESTION}"), "ts": "1515449522.000016",
            "channel": channel, "event_ts": "1515449522000016"});
        if let Some(thread_ts) = thread_ts {
            event["thread_ts"] = json!(thread_ts);
        }
        json!({"token": "ZZZZZZWSxiZZZ2yIvs3peJ", "team_id": "T061EG9R6",
            "api_app_id": "A0MDYCDME", "event": event, "type": "event_callback",
            "event_id": event_id, "event_time": 1515449522})
    };
    let ack = event(
        &server,
        &mention("Ev1", "C1", None),
        Signing::At(now()),
        None,
    )
    .await;
    assert_eq!((ack.status, &ack.body), (200, &Value::Null));
    assert!(ack.took < Duration::from_secs(3), "ack took {:?}", ack.took);
    let posted = stand_in.next().await;
    assert_eq!(posted.path, "/api/chat.postMessage");
    assert_eq!(
        posted.authorization.as_deref(),
        Some(format!("Bearer {BOT_TOKEN}").as_str())
    );
    assert_eq!(
        posted.body,
        json!({
            "channel": "C1",
            "thread_ts": "1515449522.000016",
            "text": escape(reference["text"].as_str().unwrap().trim()),
            "blocks": expected_blocks(&reference),
        })
    );

    // Slack's retry of the same event (a new delivery, newly signed) is not answered again.
    let retry = event(
        &server,
        &mention("Ev1", "C1", None),
        Signing::At(now()),
        Some(1),
    )
    .await;
    assert_eq!((retry.status, retry.body), (200, Value::Null));
    server.settled().await;
    stand_in.assert_nothing_more();

    // A mention inside a thread is answered in that thread.
    let threaded = mention("Ev2", "C1", Some("1515449000.000001"));
    assert_eq!(
        event(&server, &threaded, Signing::At(now()), None)
            .await
            .status,
        200
    );
    let posted = stand_in.next().await;
    assert_eq!(posted.body["thread_ts"], "1515449000.000001");
    assert_eq!(posted.body["channel"], "C1");

    // Slack refuses (ok: false): logged and counted, not retried.
    assert_eq!(
        event(
            &server,
            &mention("Ev3", "C_GONE", None),
            Signing::At(now()),
            None
        )
        .await
        .status,
        200
    );
    let refused = stand_in.next().await;
    assert_eq!(refused.body["channel"], "C_GONE");

    // A bot's own message and other event types are acknowledged and ignored.
    let mut from_bot = mention("Ev4", "C1", None);
    from_bot["event"]["bot_id"] = json!("B123");
    let mut reaction = mention("Ev5", "C1", None);
    reaction["event"]["type"] = json!("reaction_added");
    for ignored in [from_bot, reaction] {
        let reply = event(&server, &ignored, Signing::At(now()), None).await;
        assert_eq!((reply.status, reply.body), (200, Value::Null));
    }
    server.settled().await;
    stand_in.assert_nothing_more();

    let metrics = server.metrics().await;
    for (line, count) in [
        (
            r#"segscope_slack_posts_total{target="chat.postMessage",outcome="ok"}"#,
            2,
        ),
        (
            r#"segscope_slack_posts_total{target="chat.postMessage",outcome="refused"}"#,
            1,
        ),
        (
            r#"segscope_slack_requests_total{endpoint="events",outcome="duplicate"}"#,
            1,
        ),
        (
            r#"segscope_slack_requests_total{endpoint="events",outcome="ignored"}"#,
            2,
        ),
    ] {
        assert_eq!(metric_line(&metrics, line), format!("{line} {count}"));
    }
    let logs = assert_no_secret_logged();
    assert!(
        logs.contains("channel_not_found"),
        "Slack's refusal is logged: {logs}"
    );
}

#[tokio::test]
async fn a_busy_response_url_is_tried_again_after_its_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut stand_in = StandIn::start().await;
    let server = Server::start(dir.path(), &stand_in, Some(SECRET)).await;
    let body = command_body(QUESTION, &format!("{}/hook/busy", stand_in.base));
    assert_eq!(
        command(&server, &body, Signing::At(now()), None)
            .await
            .status,
        200
    );
    let first = stand_in.next().await;
    let second = stand_in.next().await;
    assert_eq!(
        (first.path.as_str(), second.path.as_str()),
        ("/hook/busy", "/hook/busy")
    );
    assert_eq!(first.body, second.body);
    // Backoff without Retry-After is at most 20 ms here: a wait of a second is Retry-After's.
    let gap = second.at - first.at;
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    server.settled().await;
    stand_in.assert_nothing_more();
    let metrics = server.metrics().await;
    let line = r#"segscope_slack_posts_total{target="response_url",outcome="ok"}"#;
    assert_eq!(metric_line(&metrics, line), format!("{line} 1"));
    assert_no_secret_logged();
}
