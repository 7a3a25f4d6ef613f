//! A local OpenAI-compatible server for tests: real HTTP on 127.0.0.1:0, the real wire format,
//! a Bearer-key check, deterministic answers and scripted faults per request number.
//!
//! Design for reuse: every route goes through one `scripted` step that records the request
//! and applies the [`Fault`] scripted for that route's n-th request (1-based) before the
//! route's own handler answers. Adding a route is one more [`Route`] variant, one handler
//! and one line in [`OpenAiStub::start`]; the faults, the recording and the auth check come
//! for free.
//!
//! Chat (`/v1/chat/completions`): each request is answered by the next queued
//! [`ChatAnswer`] ([`OpenAiStub::queue_chat`]), else by the responder
//! ([`OpenAiStub::respond_with`], which sees the request body, so a test can answer from
//! the figures in the prompt), else with the text "stub answer". Streamed requests
//! (`stream: true`) get real server-sent events: a role chunk, the text in pieces, tool-call
//! fragments split mid-arguments, the finish chunk, a usage chunk when `include_usage` is
//! asked, and `data: [DONE]`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

/// The routes the stub serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `POST /v1/chat/completions`.
    Chat,
}

/// What the chat route answers.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatAnswer {
    /// Text, finish reason `stop`.
    Text(String),
    /// Tool calls (name, raw arguments), finish reason `tool_calls`; ids are `call_{request}_{i}`.
    ToolCalls(Vec<(String, String)>),
    /// An explicit refusal (OpenAI's `refusal` field), finish reason `stop`.
    Refusal(String),
}

/// Builds a chat answer from the request body.
pub type Responder = Arc<dyn Fn(&Value) -> ChatAnswer + Send + Sync>;

/// What the stub does instead of (or before) a normal answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// An error status with an OpenAI error body, and a Retry-After header when given.
    Status {
        status: u16,
        retry_after: Option<String>,
        message: String,
    },
    /// Waits this long, then answers normally (longer than the client timeout = a timeout).
    Delay(Duration),
    /// A 200 with this raw body.
    RawBody(String),
    /// Embeddings of this many dimensions instead of the configured ones.
    WrongDimension(usize),
    /// One embedding fewer than inputs.
    DropOne,
    /// OpenAI's 429 for an exhausted quota: permanent until someone pays, unlike a rate limit.
    QuotaExhausted,
    /// Chat, streamed: the first text piece, then the connection ends without a finish
    /// reason or `[DONE]`. Not streamed: a 200 whose body stops mid-JSON.
    StreamCut,
    /// Chat: a 400 naming `response_format` when the request carries one (as llama.cpp
    /// does), else a normal answer.
    RejectResponseFormat,
}

impl Fault {
    /// A 429 with `Retry-After: {retry_after}`.
    pub fn rate_limited(retry_after: &str) -> Fault {
        Fault::Status {
            status: 429,
            retry_after: Some(retry_after.into()),
            message: "Rate limit reached for requests".into(),
        }
    }

    /// A 500.
    pub fn server_error() -> Fault {
        Fault::Status {
            status: 500,
            retry_after: None,
            message: "The server had an error while processing your request.".into(),
        }
    }
}

/// One request as the stub saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub route: Route,
    /// 1-based number of this request on its route.
    pub number: usize,
    /// When it arrived (tokio clock).
    pub at: Instant,
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    requests: Vec<Recorded>,
    script: HashMap<(Route, usize), Fault>,
    chat_queue: std::collections::VecDeque<ChatAnswer>,
    responder: Option<Responder>,
}

#[derive(Clone)]
struct AppState {
    key: String,
    dimensions: usize,
    shared: Arc<Mutex<Shared>>,
}

/// A running stub; stops when the test's runtime ends.
pub struct OpenAiStub {
    /// Base URL including `/v1`.
    pub base_url: String,
    state: AppState,
}

/// The vector the stub returns for `text`: deterministic, from the text's sha256.
pub fn stub_vector(text: &str, dimensions: usize) -> Vec<f32> {
    (0..dimensions)
        .map(|i| {
            let mut h = Sha256::new();
            h.update(text.as_bytes());
            h.update((i as u64).to_le_bytes());
            let b: [u8; 32] = h.finalize().into();
            let x = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            (x as f64 / u32::MAX as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

impl OpenAiStub {
    /// Starts on 127.0.0.1:0, accepting `Authorization: Bearer {key}`, answering vectors of
    /// `dimensions` (or the request's `dimensions` parameter when present).
    pub async fn start(key: &str, dimensions: usize) -> OpenAiStub {
        let state = AppState {
            key: key.into(),
            dimensions,
            shared: Arc::default(),
        };
        let app = Router::new()
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/chat/completions", post(chat))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        OpenAiStub {
            base_url: format!("http://{addr}/v1"),
            state,
        }
    }

    /// Scripts `fault` for the `number`-th (1-based) request on `route`.
    pub fn script(&self, route: Route, number: usize, fault: Fault) {
        self.state
            .shared
            .lock()
            .expect("lock")
            .script
            .insert((route, number), fault);
    }

    /// Queues `answer` for the next chat request not answered by an earlier queued one.
    pub fn queue_chat(&self, answer: ChatAnswer) {
        self.state
            .shared
            .lock()
            .expect("lock")
            .chat_queue
            .push_back(answer);
    }

    /// Answers chat requests the queue does not cover with `responder(request body)`.
    pub fn respond_with(&self, responder: impl Fn(&Value) -> ChatAnswer + Send + Sync + 'static) {
        self.state.shared.lock().expect("lock").responder = Some(Arc::new(responder));
    }

    /// The bodies of the chat requests so far, in arrival order.
    pub fn chat_requests(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r.route == Route::Chat)
            .map(|r| r.body)
            .collect()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.shared.lock().expect("lock").requests.clone()
    }
}

fn error_body(status: u16, message: &str, kind: &str, code: Option<&str>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    (status, Json(body)).into_response()
}

/// Records the request, checks the key, applies the scripted fault. `Err` is the response to
/// send instead of the route's answer; `Ok` carries a fault the route itself must apply.
async fn scripted(
    state: &AppState,
    route: Route,
    headers: &HeaderMap,
    body: &Value,
) -> Result<Option<Fault>, Response> {
    let fault = {
        let mut shared = state.shared.lock().expect("lock");
        let number = shared.requests.iter().filter(|r| r.route == route).count() + 1;
        shared.requests.push(Recorded {
            route,
            number,
            at: Instant::now(),
            body: body.clone(),
        });
        shared.script.get(&(route, number)).cloned()
    };
    let expected = format!("Bearer {}", state.key);
    if headers.get(header::AUTHORIZATION) != HeaderValue::from_str(&expected).ok().as_ref() {
        // OpenAI echoes a masked key; this stub is harsher and echoes it in full too, so a
        // test can prove the client scrubs provider messages.
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let masked: String = sent.chars().take(3).chain("****".chars()).collect();
        return Err(error_body(
            401,
            &format!("Incorrect API key provided: {masked}. Full key sent: {sent}"),
            "invalid_request_error",
            Some("invalid_api_key"),
        ));
    }
    match fault {
        Some(Fault::Status {
            status,
            retry_after,
            message,
        }) => {
            let mut response = error_body(status, &message, "server_error", None);
            if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            Err(response)
        }
        Some(Fault::QuotaExhausted) => Err(error_body(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            Some("insufficient_quota"),
        )),
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            Ok(None)
        }
        Some(Fault::RawBody(raw)) => Err((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            raw,
        )
            .into_response()),
        other => Ok(other),
    }
}

async fn embeddings(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let fault = match scripted(&state, Route::Embeddings, &headers, &body).await {
        Ok(fault) => fault,
        Err(response) => return response,
    };
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => return error_body(400, "'input' is required", "invalid_request_error", None),
    };
    let mut dimensions = body["dimensions"]
        .as_u64()
        .map_or(state.dimensions, |d| d as usize);
    if let Some(Fault::WrongDimension(d)) = fault {
        dimensions = d;
    }
    let mut data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            json!({"object": "embedding", "index": i, "embedding": stub_vector(text, dimensions)})
        })
        .collect();
    if let Some(Fault::DropOne) = fault {
        data.pop();
    }
    // Answer in reverse order: clients must sort by `index`, not trust the array order.
    data.reverse();
    let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
    Json(json!({
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    }))
    .into_response()
}

fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

fn sse(events: &[Value], done: bool) -> Response {
    let mut body = String::new();
    for event in events {
        body.push_str(&format!("data: {event}\n\n"));
    }
    if done {
        body.push_str("data: [DONE]\n\n");
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/event-stream")],
        body,
    )
        .into_response()
}

async fn chat(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let fault = match scripted(&state, Route::Chat, &headers, &body).await {
        Ok(fault) => fault,
        Err(response) => return response,
    };
    if fault == Some(Fault::RejectResponseFormat) && body.get("response_format").is_some() {
        return error_body(
            400,
            "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.",
            "invalid_request_error",
            Some("unsupported_parameter"),
        );
    }
    let (number, answer) = {
        let mut shared = state.shared.lock().expect("lock");
        let number = shared
            .requests
            .iter()
            .filter(|r| r.route == Route::Chat)
            .count();
        let answer = match shared.chat_queue.pop_front() {
            Some(answer) => answer,
            None => match shared.responder.clone() {
                Some(responder) => {
                    drop(shared);
                    responder(&body)
                }
                None => ChatAnswer::Text("stub answer".into()),
            },
        };
        (number, answer)
    };
    let prompt_tokens: usize = body["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| words(m["content"].as_str().unwrap_or("")))
                .sum()
        })
        .unwrap_or(0);
    let (content, refusal, calls, finish) = match &answer {
        ChatAnswer::Text(text) => (Some(text.clone()), None, Vec::new(), "stop"),
        ChatAnswer::Refusal(text) => (None, Some(text.clone()), Vec::new(), "stop"),
        ChatAnswer::ToolCalls(calls) => (None, None, calls.clone(), "tool_calls"),
    };
    let completion_tokens = words(content.as_deref().or(refusal.as_deref()).unwrap_or(""))
        + calls.iter().map(|(_, a)| words(a)).sum::<usize>();
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens
    });
    let id = format!("chatcmpl-stub-{number}");
    let model = body["model"].clone();
    let call_id = |i: usize| format!("call_{number}_{i}");
    if body["stream"].as_bool() != Some(true) {
        let tool_calls: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, (name, args))| {
                json!({"id": call_id(i), "type": "function", "function": {"name": name, "arguments": args}})
            })
            .collect();
        let mut message = json!({"role": "assistant", "content": content, "refusal": refusal});
        if !tool_calls.is_empty() {
            message["tool_calls"] = Value::Array(tool_calls);
        }
        let full = json!({
            "id": id, "object": "chat.completion", "created": 1_764_000_000u32, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
            "usage": usage
        })
        .to_string();
        if fault == Some(Fault::StreamCut) {
            let cut: String = full.chars().take(full.len() / 2).collect();
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                cut,
            )
                .into_response();
        }
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            full,
        )
            .into_response();
    }
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": 1_764_000_000u32,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}]
        })
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    if let Some(text) = &content {
        // Three pieces, cut on character boundaries.
        let chars: Vec<char> = text.chars().collect();
        let step = chars.len().div_ceil(3).max(1);
        for piece in chars.chunks(step) {
            events.push(chunk(
                json!({"content": piece.iter().collect::<String>()}),
                None,
            ));
        }
    }
    if let Some(text) = &refusal {
        events.push(chunk(json!({"refusal": text}), None));
    }
    for (i, (name, args)) in calls.iter().enumerate() {
        let half = args
            .char_indices()
            .nth(args.chars().count() / 2)
            .map_or(args.len(), |(b, _)| b);
        events.push(chunk(
            json!({"tool_calls": [{"index": i, "id": call_id(i), "type": "function",
                   "function": {"name": name, "arguments": &args[..half]}}]}),
            None,
        ));
        events.push(chunk(
            json!({"tool_calls": [{"index": i, "function": {"arguments": &args[half..]}}]}),
            None,
        ));
    }
    if fault == Some(Fault::StreamCut) {
        events.truncate(2);
        return sse(&events, false);
    }
    events.push(chunk(json!({}), Some(finish)));
    if body["stream_options"]["include_usage"].as_bool() == Some(true) {
        events.push(json!({
            "id": id, "object": "chat.completion.chunk", "created": 1_764_000_000u32,
            "model": model, "choices": [], "usage": usage
        }));
    }
    sse(&events, true)
}
