//! Chat models: the [`ChatModel`] capability the narrator and the `ask` agent write against,
//! its OpenAI-compatible implementation ([`openai`]) and the closed set of configured
//! backends ([`ChatBackend`]).
//!
//! Owns the wire-independent shape of a chat exchange (messages, tools, tool calls,
//! structured output, token usage) and the record of what went wrong on the way (retries,
//! timeouts, cut streams), so that a run can say what its model cost and what it survived. It
//! does not decide what to ask (prompts live in `prompts/` and are rendered by
//! [`crate::narrative`] and [`crate::ask`]) and never judges the answer (the grounding check
//! does).
//!
//! The built-in backend has no model: callers match on [`ChatBackend`] and use the built-in
//! narrator or answerer instead, so "no model configured" is a value, never an error.

pub mod openai;
pub mod settings;

use std::future::Future;

use serde::Serialize;

pub use openai::{OpenAiChat, OpenAiChatError};
pub use settings::{LlmProvider, LlmSettings, OpenAiChatSettings};

/// Who speaks in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions from segscope.
    System,
    /// The question or the data to write about.
    User,
    /// The model's earlier turns (text or tool calls).
    Assistant,
    /// A tool's result, answering one tool call.
    Tool,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatMessage {
    /// Who speaks.
    pub role: Role,
    /// The text (absent for an assistant turn that only calls tools).
    pub content: Option<String>,
    /// Tools the assistant called in this turn.
    pub tool_calls: Vec<ToolCall>,
    /// For a tool message: the call it answers.
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::text(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::text(Role::User, content)
    }

    /// An assistant message with text only.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::text(Role::Assistant, content)
    }

    /// The assistant turn that made these tool calls (to send back with their results).
    pub fn assistant_calls(calls: Vec<ToolCall>) -> Self {
        ChatMessage {
            role: Role::Assistant,
            content: None,
            tool_calls: calls,
            tool_call_id: None,
        }
    }

    /// A tool's result for the call `call_id`.
    pub fn tool_result(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::Tool,
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: Some(call_id.into()),
        }
    }

    fn text(role: Role, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A tool the model may call: a name, what it does, and a JSON schema of its arguments.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    /// Name the model calls it by (`[a-zA-Z0-9_-]{1,64}`).
    pub name: String,
    /// What it returns and when to use it, for the model.
    pub description: String,
    /// JSON schema of the arguments object.
    pub parameters: serde_json::Value,
}

/// A tool call as the model made it; the arguments are raw JSON text, validated by the caller.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    /// The id the result must quote.
    pub id: String,
    /// The tool's name (may name no tool: the caller checks).
    pub name: String,
    /// The arguments as the model wrote them (may be malformed JSON: the caller checks).
    pub arguments: String,
}

/// A JSON schema the reply must follow (`response_format: json_schema`, strict).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StructuredOutput {
    /// Schema name (`[a-zA-Z0-9_-]{1,64}`).
    pub name: String,
    /// The JSON schema.
    pub schema: serde_json::Value,
}

/// One request to a chat model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Tools offered (none: the model must answer in text).
    pub tools: Vec<ToolSpec>,
    /// Ask for JSON following this schema. Servers without `response_format` support get
    /// the schema in the instructions instead (see [`openai`]); callers parse either way.
    pub structured: Option<StructuredOutput>,
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// It finished its answer.
    Stop,
    /// It wants tool results.
    ToolCalls,
    /// It ran out of tokens: the text is cut.
    Length,
    /// A content filter stopped it.
    ContentFilter,
}

/// The model's reply.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatReply {
    /// Text, when it answered in text.
    pub content: Option<String>,
    /// An explicit refusal (OpenAI's `refusal` field), when it refused.
    pub refusal: Option<String>,
    /// Tool calls, when it wants tools run.
    pub tool_calls: Vec<ToolCall>,
    /// Why it stopped.
    pub finish_reason: FinishReason,
}

/// Receives answer text as it streams in, for chat pages that show tokens as they come.
pub type TokenSink<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// Something that went wrong talking to the model and was survived or reported: a run
/// records these so "the model was rate-limited twice" is visible, not just slower.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incident {
    /// What kind of trouble.
    pub kind: IncidentKind,
    /// Details for people (status, provider message without secrets, attempt number).
    pub detail: String,
}

/// Kinds of [`Incident`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// 429 (waited for Retry-After or backed off).
    RateLimited,
    /// 5xx or 408.
    ServerError,
    /// No answer within the timeout.
    Timeout,
    /// The connection failed or broke.
    Transport,
    /// A streamed answer ended before its finish reason.
    StreamCut,
    /// A 200 whose body was not a chat completion.
    MalformedBody,
    /// The server rejected `response_format`; the schema went into the instructions instead.
    StructuredOutputUnsupported,
    /// A request failed for good (after its retries, or at once for 4xx).
    Failed,
}

/// What talking to the model cost and survived, for the run's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModelUsage {
    /// HTTP requests made, retries included.
    pub requests: u64,
    /// Requests that were retries.
    pub retries: u64,
    /// Prompt tokens the server reported.
    pub prompt_tokens: u64,
    /// Completion tokens the server reported.
    pub completion_tokens: u64,
    /// What went wrong on the way, in order.
    pub incidents: Vec<Incident>,
}

/// Which model answers, for outputs ("openai gpt-4o-mini at https://host/v1"); no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelInfo {
    /// `openai` (the protocol).
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Base URL without credentials or query.
    pub endpoint: String,
}

/// A chat model.
///
/// Contract: a reply is returned only when the model finished (a cut stream, a malformed
/// body or a timeout is retried, then an error); transient failures are retried inside with
/// backoff honouring Retry-After and recorded in [`ChatModel::usage`]; errors and incidents
/// never contain the API key.
pub trait ChatModel: Send + Sync {
    /// Which model this is.
    fn describe(&self) -> ModelInfo;

    /// Sends `request` and returns the finished reply. With `tokens`, the answer is streamed
    /// and each text fragment is passed to the sink as it arrives (after a retry the sink
    /// sees the new attempt's text from its start).
    fn complete(
        &self,
        request: &ChatRequest,
        tokens: Option<TokenSink<'_>>,
    ) -> impl Future<Output = Result<ChatReply, OpenAiChatError>> + Send;

    /// Requests, tokens and incidents so far.
    fn usage(&self) -> ModelUsage;
}

/// The configured way of writing text: the built-in narrator and answerer (no model) or an
/// OpenAI-compatible chat model. Built once per run from [`LlmSettings`].
#[derive(Debug)]
pub enum ChatBackend {
    /// No model: built-in narrator and answerer.
    Builtin,
    /// An OpenAI-compatible chat model.
    OpenAi(OpenAiChat),
}

impl ChatBackend {
    /// Builds the backend the settings name; `seed` seeds the retry jitter. No request is made.
    pub fn from_settings(settings: &LlmSettings, seed: u64) -> Result<Self, OpenAiChatError> {
        match settings.provider {
            LlmProvider::Builtin => Ok(ChatBackend::Builtin),
            LlmProvider::Openai => Ok(ChatBackend::OpenAi(OpenAiChat::new(
                &settings.openai,
                seed,
            )?)),
        }
    }

    /// `builtin`, or the model's name: what outputs record as the narrator.
    pub fn narrator_name(&self) -> String {
        match self {
            ChatBackend::Builtin => "builtin".into(),
            ChatBackend::OpenAi(model) => model.describe().model,
        }
    }
}
