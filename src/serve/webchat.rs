//! The web chat's transport: `POST /api/v1/runs/{id}/chat` with `{"question": "..."}`
//! answers as a `text/event-stream` whose events are
//! - `token` `{"text": "..."}`: answer text as the model writes it (provisional);
//! - `done` `{...}`: the whole [`Answer`] (text, run, cited figures, status), authoritative:
//!   a page replaces the streamed text with its `text`;
//! - `error` `{"code": "...", "message": "..."}`: the answer failed after the stream began.
//!
//! A request that fails before any token (bad run id, empty question, the model down) gets
//! the API's JSON error with its 4xx/5xx status instead of a stream.
//!
//! Conversations: each browser gets an HTTP-only, `SameSite=Strict` cookie
//! ([`CHAT_COOKIE`]) holding a random session id; the last [`MAX_TURNS`] exchanges per
//! session and run are kept in memory (at most [`MAX_SESSIONS`] conversations, the least
//! recently used dropped first) and handed to the `Agent` as the conversation so far. They
//! are lost on restart, which is the point of keeping them bounded and in memory: nothing a
//! user typed is written to disk. Answers go through [`super::chat::answer_in_conversation`],
//! the one answer path of every channel.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use rand::RngCore;
use serde_json::json;

use super::AppState;
use super::api::ApiError;
use super::auth::cookie;
use super::chat::{Question, answer_in_conversation};
use super::metrics::Channel;
use super::start::ApiJson;
use crate::ask::Answer;
use crate::ask::agent::Turn;
use crate::llm::TokenSink;

/// Name of the chat session cookie.
pub const CHAT_COOKIE: &str = "segscope_chat";
/// Conversations kept (session × run).
pub const MAX_SESSIONS: usize = 1_000;
/// Exchanges kept per conversation (older ones are forgotten).
pub const MAX_TURNS: usize = 8;

#[derive(Debug)]
struct Conversation {
    turns: VecDeque<Turn>,
    used: Instant,
}

/// The web chat's conversations, bounded in sessions and turns.
#[derive(Debug, Default)]
pub struct Conversations {
    by_session: Mutex<HashMap<(String, String), Conversation>>,
}

impl Conversations {
    /// No conversations yet.
    pub fn new() -> Self {
        Conversations::default()
    }

    /// The turns so far of `session` about `run`.
    pub fn history(&self, session: &str, run: &str) -> Vec<Turn> {
        self.by_session
            .lock()
            .ok()
            .and_then(|all| {
                all.get(&(session.to_string(), run.to_string()))
                    .map(|c| c.turns.iter().cloned().collect())
            })
            .unwrap_or_default()
    }

    /// Adds a turn, forgetting the oldest turn and the least recently used conversation
    /// when over the bounds.
    pub fn record(&self, session: &str, run: &str, turn: Turn) {
        let Ok(mut all) = self.by_session.lock() else {
            return;
        };
        let key = (session.to_string(), run.to_string());
        if !all.contains_key(&key) && all.len() >= MAX_SESSIONS {
            let oldest = all
                .iter()
                .min_by_key(|(_, c)| c.used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                all.remove(&oldest);
            }
        }
        let conversation = all.entry(key).or_insert_with(|| Conversation {
            turns: VecDeque::new(),
            used: Instant::now(),
        });
        conversation.used = Instant::now();
        conversation.turns.push_back(turn);
        while conversation.turns.len() > MAX_TURNS {
            conversation.turns.pop_front();
        }
    }

    /// Conversations held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.by_session.lock().map(|all| all.len()).unwrap_or(0)
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The API route of the web chat (mounted under `/api/v1`, behind the API's auth).
pub fn api_routes() -> Router<AppState> {
    Router::new().route("/runs/{id}/chat", post(chat))
}

/// A session id: 128 random bits, hex.
fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The request's chat session, if its cookie looks like one we issue.
fn session_of(headers: &HeaderMap) -> Option<String> {
    cookie(headers, CHAT_COOKIE)
        .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(String::from)
}

enum Message {
    Token(String),
    Done(Box<Answer>),
    Failed(ApiError),
}

fn event(message: Message) -> Event {
    match message {
        Message::Token(text) => Event::default()
            .event("token")
            .data(json!({ "text": text }).to_string()),
        Message::Done(answer) => Event::default()
            .event("done")
            .data(serde_json::to_string(&answer).unwrap_or_else(|_| "{}".into())),
        Message::Failed(error) => {
            let (_, code, message) = error.parts();
            Event::default()
                .event("error")
                .data(json!({"code": code, "message": message}).to_string())
        }
    }
}

/// `POST /api/v1/runs/{id}/chat`: see the module documentation.
pub async fn chat(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Question>,
) -> Result<Response, ApiError> {
    let known = session_of(&headers);
    let session = known.clone().unwrap_or_else(new_session_id);
    let history = state.dashboard.conversations.history(&session, &run_id);
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Message>();
    let task_state = state.clone();
    let task_session = session.clone();
    tokio::spawn(async move {
        let tokens = sender.clone();
        let sink = move |text: &str| {
            // The page may have gone: a closed channel only means nobody reads on.
            let _ = tokens.send(Message::Token(text.to_string()));
        };
        let sink: TokenSink<'_> = &sink;
        let result = answer_in_conversation(
            &task_state,
            Channel::Web,
            &run_id,
            &history,
            &body.question,
            Some(sink),
        )
        .await;
        let message = match result {
            Ok(answer) => {
                task_state.dashboard.conversations.record(
                    &task_session,
                    &run_id,
                    Turn {
                        question: body.question.trim().to_string(),
                        answer: answer.text.clone(),
                        figures: answer.figures.clone(),
                    },
                );
                Message::Done(Box::new(answer))
            }
            Err(error) => Message::Failed(error),
        };
        let _ = sender.send(message);
    });
    // Fail as plain JSON while nothing has been streamed yet.
    let first = match receiver.recv().await {
        Some(Message::Failed(error)) => return Err(error),
        Some(first) => first,
        None => return Err(ApiError::Internal),
    };
    let rest = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|m| (m, receiver))
    });
    let events = futures::stream::once(async move { first })
        .chain(rest)
        .map(|m| Ok::<Event, Infallible>(event(m)));
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    if known.is_none() {
        let cookie = format!("{CHAT_COOKIE}={session}; Path=/; HttpOnly; Secure; SameSite=Strict");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(n: usize) -> Turn {
        Turn {
            question: format!("q{n}"),
            answer: format!("a{n}"),
            figures: Vec::new(),
        }
    }

    #[test]
    fn conversations_keep_the_latest_turns_per_session_and_run() {
        let all = Conversations::new();
        for n in 0..MAX_TURNS + 2 {
            all.record("s1", "run-a", turn(n));
        }
        all.record("s1", "run-b", turn(99));
        let history = all.history("s1", "run-a");
        assert_eq!(history.len(), MAX_TURNS);
        assert_eq!(history[0], turn(2));
        assert_eq!(all.history("s1", "run-b"), vec![turn(99)]);
        assert!(all.history("s2", "run-a").is_empty());
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn session_cookies_must_look_like_ours() {
        let id = new_session_id();
        assert_eq!(id.len(), 32);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            format!("{CHAT_COOKIE}={id}").parse().unwrap(),
        );
        assert_eq!(session_of(&headers), Some(id));
        headers.insert(
            header::COOKIE,
            format!("{CHAT_COOKIE}=../x").parse().unwrap(),
        );
        assert_eq!(session_of(&headers), None);
    }
}
