//! The OpenAI-compatible chat model: any `/v1/chat/completions` endpoint (OpenAI, Azure
//! OpenAI, Ollama, vLLM, llama.cpp server) through async-openai.
//!
//! Owns turning a [`ChatRequest`] into the wire request and the answer back into a
//! [`ChatReply`], and every decision about a failed attempt:
//! - transient failures (429 except `insufficient_quota`, 408, 5xx, timeouts, connection
//!   errors, a malformed body, a streamed answer that ends before its finish reason) are
//!   retried with the shared backoff of [`crate::openai_compat`], honouring Retry-After;
//! - a 400 that rejects `response_format` switches structured output off for this client
//!   and retries at once with the schema written into the instructions instead (llama.cpp
//!   and older vLLM builds reject the parameter); callers parse the reply the same way;
//! - every request, retry, token count and incident is added to [`ModelUsage`], which the
//!   run records, so a slow run says why.
//!
//! With a token sink the answer is streamed (`stream: true`, with `include_usage`), and
//! tool-call fragments are joined by their index as the chunks arrive.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls,
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestAssistantMessageContent,
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestSystemMessageContent, ChatCompletionRequestToolMessage,
    ChatCompletionRequestToolMessageContent, ChatCompletionRequestUserMessage,
    ChatCompletionRequestUserMessageContent, ChatCompletionStreamOptions, ChatCompletionTool,
    ChatCompletionTools, CompletionUsage, CreateChatCompletionRequest, FinishReason as WireFinish,
    FunctionCall, FunctionObject, ResponseFormat, ResponseFormatJsonSchema,
};
use futures::StreamExt;

use super::{
    ChatMessage, ChatModel, ChatReply, ChatRequest, FinishReason, Incident, IncidentKind,
    ModelInfo, ModelUsage, OpenAiChatSettings, Role, TokenSink, ToolCall,
};
use crate::embedding::ApiKey;
use crate::openai_compat::{
    Backoff, Endpoint, FailureKind, build_client, classify, redact_url, resolve_endpoint,
};

/// Why a chat request failed for good. Messages name the status and the provider's
/// explanation, never the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpenAiChatError {
    /// A setting is out of range.
    #[error("{reason}")]
    InvalidSettings {
        /// Which setting and why.
        reason: String,
    },
    /// api.openai.com needs a key and none was configured.
    #[error("no API key for {base_url}: set OPENAI_API_KEY or llm.openai.api_key")]
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
    #[error("chat endpoint answered HTTP {status} after {attempts} attempt(s): {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The provider's message (key scrubbed).
        message: String,
        /// Requests made.
        attempts: u32,
    },
    /// No answer within the per-request timeout.
    #[error("chat endpoint did not answer within {timeout_secs} s, {attempts} attempt(s)")]
    Timeout {
        /// The configured timeout.
        timeout_secs: f64,
        /// Requests made.
        attempts: u32,
    },
    /// The connection failed or broke.
    #[error("cannot reach the chat endpoint after {attempts} attempt(s): {detail}")]
    Transport {
        /// The cause.
        detail: String,
        /// Requests made.
        attempts: u32,
    },
    /// A success response that is not a chat completion.
    #[error("chat endpoint returned a malformed body after {attempts} attempt(s): {detail}")]
    Malformed {
        /// What was wrong (not the body).
        detail: String,
        /// Requests made.
        attempts: u32,
    },
    /// A streamed answer kept ending before its finish reason.
    #[error("chat endpoint's streamed answer was cut off, {attempts} attempt(s)")]
    StreamCut {
        /// Requests made.
        attempts: u32,
    },
    /// The server asked to wait longer than `max_retry_after_secs`.
    #[error(
        "chat endpoint asked to retry after {seconds} s, more than llm.openai.max_retry_after_secs = {limit}"
    )]
    RetryAfterTooLong {
        /// Requested wait.
        seconds: u64,
        /// Configured limit.
        limit: u64,
    },
}

/// Talks to an OpenAI-compatible chat endpoint; see the module doc.
pub struct OpenAiChat {
    client: Client<OpenAIConfig>,
    base_url: String,
    key: ApiKey,
    settings: OpenAiChatSettings,
    seed: u64,
    /// Switched off after the server rejected `response_format` once.
    structured_supported: AtomicBool,
    /// Numbers each request's backoff schedule differently but reproducibly.
    requests_started: AtomicU64,
    usage: Arc<Mutex<ModelUsage>>,
}

impl std::fmt::Debug for OpenAiChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiChat")
            .field("base_url", &redact_url(&self.base_url))
            .field("key", &self.key)
            .field("model", &self.settings.model)
            .finish_non_exhaustive()
    }
}

/// One attempt's outcome when it did not produce a reply.
enum AttemptError {
    /// Classified transport or status failure.
    Failed(crate::openai_compat::FailedAttempt),
    /// A streamed answer ended before its finish reason.
    StreamCut,
}

impl OpenAiChat {
    /// Builds the client from settings, falling back to `OPENAI_API_KEY` / `OPENAI_BASE_URL`.
    /// No request is made. `seed` seeds the retry jitter.
    pub fn new(settings: &OpenAiChatSettings, seed: u64) -> Result<Self, OpenAiChatError> {
        Self::with_env(settings, seed, |name| std::env::var(name).ok())
    }

    /// As [`OpenAiChat::new`], with the environment given explicitly (for tests).
    pub fn with_env(
        settings: &OpenAiChatSettings,
        seed: u64,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, OpenAiChatError> {
        let endpoint = resolve_endpoint(&settings.base_url, &settings.api_key, env)
            .map_err(|base_url| OpenAiChatError::MissingApiKey { base_url })?;
        let client = build_client(&endpoint, Duration::from_secs_f64(settings.timeout_secs))
            .map_err(|detail| OpenAiChatError::Client { detail })?;
        let Endpoint { base_url, key } = endpoint;
        Ok(OpenAiChat {
            client,
            base_url,
            key,
            settings: settings.clone(),
            seed,
            structured_supported: AtomicBool::new(settings.structured_output),
            requests_started: AtomicU64::new(0),
            usage: Arc::new(Mutex::new(ModelUsage::default())),
        })
    }

    fn record(&self, update: impl FnOnce(&mut ModelUsage)) {
        if let Ok(mut usage) = self.usage.lock() {
            update(&mut usage);
        }
    }

    fn incident(&self, kind: IncidentKind, detail: String) {
        tracing::warn!(kind = ?kind, detail = detail.as_str(), "chat model incident");
        self.record(|u| u.incidents.push(Incident { kind, detail }));
    }

    fn count_tokens(&self, usage: Option<&CompletionUsage>) {
        if let Some(usage) = usage {
            self.record(|u| {
                u.prompt_tokens += u64::from(usage.prompt_tokens);
                u.completion_tokens += u64::from(usage.completion_tokens);
            });
        }
    }

    /// The wire request for `request`, with or without `response_format`.
    fn wire_request(
        &self,
        request: &ChatRequest,
        structured: bool,
        stream: bool,
    ) -> CreateChatCompletionRequest {
        let mut messages: Vec<ChatCompletionRequestMessage> =
            request.messages.iter().map(wire_message).collect();
        let response_format = match (&request.structured, structured) {
            (Some(output), true) => Some(ResponseFormat::JsonSchema {
                json_schema: ResponseFormatJsonSchema {
                    description: None,
                    name: output.name.clone(),
                    schema: output.schema.clone(),
                    strict: Some(true),
                },
            }),
            (Some(output), false) => {
                messages.push(ChatCompletionRequestMessage::System(
                    ChatCompletionRequestSystemMessage {
                        content: ChatCompletionRequestSystemMessageContent::Text(format!(
                            "Answer with one JSON object only, no prose and no code fence, \
                             following this JSON schema:\n{}",
                            output.schema
                        )),
                        name: None,
                    },
                ));
                None
            }
            (None, _) => None,
        };
        let tools = (!request.tools.is_empty()).then(|| {
            request
                .tools
                .iter()
                .map(|t| {
                    ChatCompletionTools::Function(ChatCompletionTool {
                        function: FunctionObject {
                            name: t.name.clone(),
                            description: Some(t.description.clone()),
                            parameters: Some(t.parameters.clone()),
                            strict: None,
                        },
                    })
                })
                .collect()
        });
        CreateChatCompletionRequest {
            messages,
            model: self.settings.model.clone(),
            temperature: Some(self.settings.temperature),
            max_completion_tokens: Some(self.settings.max_tokens),
            response_format,
            tools,
            stream: stream.then_some(true),
            stream_options: stream.then_some(ChatCompletionStreamOptions {
                include_usage: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn attempt(
        &self,
        wire: CreateChatCompletionRequest,
        tokens: Option<TokenSink<'_>>,
    ) -> Result<ChatReply, AttemptError> {
        let chat = self.client.chat();
        let Some(sink) = tokens else {
            let response = chat
                .create(wire)
                .await
                .map_err(|e| AttemptError::Failed(classify(e, &self.key)))?;
            self.count_tokens(response.usage.as_ref());
            let Some(choice) = response.choices.into_iter().next() else {
                return Err(malformed("the answer has no choices"));
            };
            let Some(finish) = choice.finish_reason else {
                return Err(malformed("the answer has no finish_reason"));
            };
            let message = choice.message;
            return Ok(ChatReply {
                content: message.content.filter(|c| !c.is_empty()),
                refusal: message.refusal,
                tool_calls: message
                    .tool_calls
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|call| match call {
                        ChatCompletionMessageToolCalls::Function(f) => Some(ToolCall {
                            id: f.id,
                            name: f.function.name,
                            arguments: f.function.arguments,
                        }),
                        ChatCompletionMessageToolCalls::Custom(_) => None,
                    })
                    .collect(),
                finish_reason: finish_reason(finish),
            });
        };
        let mut stream = chat
            .create_stream(wire)
            .await
            .map_err(|e| AttemptError::Failed(classify(e, &self.key)))?;
        let mut content = String::new();
        let mut refusal = String::new();
        let mut calls: BTreeMap<u32, ToolCall> = BTreeMap::new();
        let mut finish = None;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    let failed = classify(e, &self.key);
                    return Err(match failed.kind {
                        FailureKind::Malformed { .. } => AttemptError::Failed(failed),
                        _ => AttemptError::StreamCut,
                    });
                }
            };
            self.count_tokens(chunk.usage.as_ref());
            for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
                let delta = choice.delta;
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    sink(&text);
                    content.push_str(&text);
                }
                if let Some(text) = delta.refusal {
                    refusal.push_str(&text);
                }
                for part in delta.tool_calls.unwrap_or_default() {
                    let call = calls.entry(part.index).or_insert_with(|| ToolCall {
                        id: String::new(),
                        name: String::new(),
                        arguments: String::new(),
                    });
                    if let Some(id) = part.id {
                        call.id = id;
                    }
                    if let Some(function) = part.function {
                        if let Some(name) = function.name {
                            call.name.push_str(&name);
                        }
                        if let Some(arguments) = function.arguments {
                            call.arguments.push_str(&arguments);
                        }
                    }
                }
                if let Some(reason) = choice.finish_reason {
                    finish = Some(finish_reason(reason));
                }
            }
        }
        let Some(finish_reason) = finish else {
            return Err(AttemptError::StreamCut);
        };
        Ok(ChatReply {
            content: (!content.is_empty()).then_some(content),
            refusal: (!refusal.is_empty()).then_some(refusal),
            tool_calls: calls.into_values().collect(),
            finish_reason,
        })
    }
}

fn malformed(detail: &str) -> AttemptError {
    AttemptError::Failed(crate::openai_compat::FailedAttempt {
        retry: true,
        retry_after: None,
        kind: FailureKind::Malformed {
            detail: detail.into(),
        },
    })
}

fn finish_reason(wire: WireFinish) -> FinishReason {
    match wire {
        WireFinish::Stop => FinishReason::Stop,
        WireFinish::Length => FinishReason::Length,
        WireFinish::ToolCalls | WireFinish::FunctionCall => FinishReason::ToolCalls,
        WireFinish::ContentFilter => FinishReason::ContentFilter,
    }
}

fn wire_message(message: &ChatMessage) -> ChatCompletionRequestMessage {
    let text = message.content.clone().unwrap_or_default();
    match message.role {
        Role::System => ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage {
            content: ChatCompletionRequestSystemMessageContent::Text(text),
            name: None,
        }),
        Role::User => ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
            content: ChatCompletionRequestUserMessageContent::Text(text),
            name: None,
        }),
        Role::Assistant => {
            ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
                content: message
                    .content
                    .clone()
                    .map(ChatCompletionRequestAssistantMessageContent::Text),
                tool_calls: (!message.tool_calls.is_empty()).then(|| {
                    message
                        .tool_calls
                        .iter()
                        .map(|c| {
                            ChatCompletionMessageToolCalls::Function(
                                ChatCompletionMessageToolCall {
                                    id: c.id.clone(),
                                    function: FunctionCall {
                                        name: c.name.clone(),
                                        arguments: c.arguments.clone(),
                                    },
                                },
                            )
                        })
                        .collect()
                }),
                ..Default::default()
            })
        }
        Role::Tool => ChatCompletionRequestMessage::Tool(ChatCompletionRequestToolMessage {
            content: ChatCompletionRequestToolMessageContent::Text(text),
            tool_call_id: message.tool_call_id.clone().unwrap_or_default(),
        }),
    }
}

/// True when a 400 says the server does not take `response_format` / JSON schemas.
fn rejects_structured_output(status: u16, message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    status == 400
        && ["response_format", "json_schema", "structured output"]
            .iter()
            .any(|m| message.contains(m))
}

impl ChatModel for OpenAiChat {
    fn describe(&self) -> ModelInfo {
        ModelInfo {
            provider: "openai".into(),
            model: self.settings.model.clone(),
            endpoint: redact_url(&self.base_url),
        }
    }

    async fn complete(
        &self,
        request: &ChatRequest,
        tokens: Option<TokenSink<'_>>,
    ) -> Result<ChatReply, OpenAiChatError> {
        let number = self.requests_started.fetch_add(1, Ordering::Relaxed);
        let s = &self.settings;
        let mut backoff = Backoff::new(
            Duration::from_millis(s.backoff_initial_ms),
            Duration::from_millis(s.backoff_max_ms),
            Duration::from_secs(s.max_retry_after_secs),
            self.seed ^ number.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let structured = self.structured_supported.load(Ordering::Relaxed);
            let wire = self.wire_request(request, structured, tokens.is_some());
            self.record(|u| {
                u.requests += 1;
                u.retries += u64::from(attempts > 1);
            });
            let failed = match self.attempt(wire, tokens).await {
                Ok(reply) => return Ok(reply),
                Err(AttemptError::StreamCut) => {
                    self.incident(
                        IncidentKind::StreamCut,
                        format!(
                            "attempt {attempts}: the streamed answer ended before its finish reason"
                        ),
                    );
                    if attempts > s.max_retries {
                        return Err(OpenAiChatError::StreamCut { attempts });
                    }
                    let delay = backoff.delay(attempts, None).unwrap_or_default();
                    tokio::time::sleep(delay).await;
                    continue;
                }
                Err(AttemptError::Failed(failed)) => failed,
            };
            if let FailureKind::Status { status, message } = &failed.kind
                && structured
                && request.structured.is_some()
                && rejects_structured_output(*status, message)
            {
                self.structured_supported.store(false, Ordering::Relaxed);
                self.incident(
                    IncidentKind::StructuredOutputUnsupported,
                    format!("HTTP {status}: {message}; the schema goes into the instructions"),
                );
                continue;
            }
            let (kind, error) = match failed.kind {
                FailureKind::Status { status, message } => (
                    match status {
                        429 => IncidentKind::RateLimited,
                        408 | 500.. => IncidentKind::ServerError,
                        _ => IncidentKind::Failed,
                    },
                    OpenAiChatError::Status {
                        status,
                        message,
                        attempts,
                    },
                ),
                FailureKind::Timeout => (
                    IncidentKind::Timeout,
                    OpenAiChatError::Timeout {
                        timeout_secs: s.timeout_secs,
                        attempts,
                    },
                ),
                FailureKind::Transport { detail } => (
                    IncidentKind::Transport,
                    OpenAiChatError::Transport { detail, attempts },
                ),
                FailureKind::Malformed { detail } => (
                    IncidentKind::MalformedBody,
                    OpenAiChatError::Malformed { detail, attempts },
                ),
            };
            if !failed.retry || attempts > s.max_retries {
                self.incident(IncidentKind::Failed, error.to_string());
                return Err(error);
            }
            self.incident(kind, error.to_string());
            let delay = backoff
                .delay(attempts, failed.retry_after)
                .map_err(|seconds| OpenAiChatError::RetryAfterTooLong {
                    seconds,
                    limit: s.max_retry_after_secs,
                })?;
            tokio::time::sleep(delay).await;
        }
    }

    fn usage(&self) -> ModelUsage {
        self.usage.lock().map(|u| u.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_output_rejections_are_recognised_only_on_400() {
        assert!(rejects_structured_output(
            400,
            "Invalid parameter: 'response_format' of type 'json_schema' is not supported"
        ));
        assert!(!rejects_structured_output(500, "response_format"));
        assert!(!rejects_structured_output(
            400,
            "messages must not be empty"
        ));
    }
}
