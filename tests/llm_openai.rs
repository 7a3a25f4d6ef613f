//! The OpenAI-compatible chat model against a local stub server speaking the real wire
//! format: plain and streamed answers, tool calls, structured output and the fallback for
//! servers that reject it, and every failure the client must survive or report (429 with
//! Retry-After, timeouts, a stream cut mid-way, a truncated body, 5xx, a wrong key). No
//! sleeps synchronise anything: assertions read what the stub recorded.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test loudly"
)]

mod support {
    pub mod openai_stub;
}

use std::sync::Mutex;
use std::time::Duration;

use segscope::embedding::ApiKey;
use segscope::llm::{
    ChatMessage, ChatModel, ChatRequest, FinishReason, IncidentKind, OpenAiChat, OpenAiChatError,
    OpenAiChatSettings, StructuredOutput, ToolCall, ToolSpec,
};
use serde_json::json;
use support::openai_stub::{ChatAnswer, Fault, OpenAiStub, Route};

const KEY: &str = "sk-chat-test-0123456789";

fn settings(base_url: &str, key: &str) -> OpenAiChatSettings {
    OpenAiChatSettings {
        base_url: base_url.into(),
        api_key: ApiKey::new(key),
        model: "stub-chat".into(),
        temperature: 0.2,
        max_tokens: 500,
        structured_output: true,
        timeout_secs: 0.5,
        max_retries: 2,
        backoff_initial_ms: 10,
        backoff_max_ms: 40,
        max_retry_after_secs: 5,
    }
}

fn model(stub: &OpenAiStub) -> OpenAiChat {
    OpenAiChat::with_env(&settings(&stub.base_url, KEY), 7, |_| None).expect("client")
}

fn question(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage::system("You are terse."),
            ChatMessage::user(text),
        ],
        ..Default::default()
    }
}

fn incident_kinds(model: &OpenAiChat) -> Vec<IncidentKind> {
    model.usage().incidents.iter().map(|i| i.kind).collect()
}

#[tokio::test]
async fn a_plain_answer_comes_back_with_its_token_usage() {
    let stub = OpenAiStub::start(KEY, 4).await;
    stub.queue_chat(ChatAnswer::Text("Segment 2 is the largest.".into()));
    let model = model(&stub);
    let reply = model
        .complete(&question("Which segment is largest?"), None)
        .await
        .expect("reply");
    assert_eq!(reply.content.as_deref(), Some("Segment 2 is the largest."));
    assert_eq!(reply.finish_reason, FinishReason::Stop);
    assert!(reply.tool_calls.is_empty());
    let sent = &stub.chat_requests()[0];
    assert_eq!(sent["model"], "stub-chat");
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(sent["messages"][1]["content"], "Which segment is largest?");
    assert!(sent.get("response_format").is_none());
    assert!(sent.get("stream").is_none());
    let usage = model.usage();
    assert_eq!((usage.requests, usage.retries), (1, 0));
    // The stub counts whitespace-separated words: 3 + 4 prompt, 5 completion.
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (7, 5));
    assert!(usage.incidents.is_empty());
}

#[tokio::test]
async fn a_streamed_answer_reaches_the_sink_piece_by_piece_and_counts_its_usage() {
    let stub = OpenAiStub::start(KEY, 4).await;
    stub.queue_chat(ChatAnswer::Text(
        "Lapsed big spenders are 12% of customers.".into(),
    ));
    let model = model(&stub);
    let pieces = Mutex::new(Vec::<String>::new());
    let sink = |t: &str| pieces.lock().unwrap().push(t.to_string());
    let reply = model
        .complete(&question("How big?"), Some(&sink))
        .await
        .expect("reply");
    let pieces = pieces.into_inner().unwrap();
    assert_eq!(pieces.len(), 3);
    assert_eq!(pieces.concat(), "Lapsed big spenders are 12% of customers.");
    assert_eq!(reply.content.as_deref(), Some(pieces.concat().as_str()));
    let sent = &stub.chat_requests()[0];
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert_eq!(model.usage().completion_tokens, 7);
}

#[tokio::test]
async fn tool_calls_are_returned_whole_streamed_or_not() {
    let stub = OpenAiStub::start(KEY, 4).await;
    let calls = vec![
        (
            "segment_profile".to_string(),
            r#"{"segment": 3}"#.to_string(),
        ),
        (
            "compare_segments".to_string(),
            r#"{"a": 1, "b": 2}"#.to_string(),
        ),
    ];
    stub.queue_chat(ChatAnswer::ToolCalls(calls.clone()));
    stub.queue_chat(ChatAnswer::ToolCalls(calls));
    let model = model(&stub);
    let mut request = question("Compare 1 and 2, and profile 3");
    request.tools = vec![ToolSpec {
        name: "segment_profile".into(),
        description: "One segment's figures.".into(),
        parameters: json!({"type": "object", "properties": {"segment": {"type": "integer"}}}),
    }];
    let expected = vec![
        ToolCall {
            id: "call_1_0".into(),
            name: "segment_profile".into(),
            arguments: r#"{"segment": 3}"#.into(),
        },
        ToolCall {
            id: "call_1_1".into(),
            name: "compare_segments".into(),
            arguments: r#"{"a": 1, "b": 2}"#.into(),
        },
    ];
    let plain = model.complete(&request, None).await.expect("plain");
    assert_eq!(plain.finish_reason, FinishReason::ToolCalls);
    assert_eq!(plain.tool_calls, expected);
    let sink = |_: &str| {};
    let streamed = model
        .complete(&request, Some(&sink))
        .await
        .expect("streamed");
    assert_eq!(streamed.finish_reason, FinishReason::ToolCalls);
    let ids: Vec<String> = streamed.tool_calls.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids, ["call_2_0", "call_2_1"]);
    let args: Vec<&str> = streamed
        .tool_calls
        .iter()
        .map(|c| c.arguments.as_str())
        .collect();
    assert_eq!(args, [r#"{"segment": 3}"#, r#"{"a": 1, "b": 2}"#]);
    let sent = &stub.chat_requests()[0];
    assert_eq!(sent["tools"][0]["type"], "function");
    assert_eq!(sent["tools"][0]["function"]["name"], "segment_profile");

    // The conversation goes back with the calls and their results in the wire format.
    request
        .messages
        .push(segscope::llm::ChatMessage::assistant_calls(
            expected.clone(),
        ));
    request
        .messages
        .push(ChatMessage::tool_result("call_1_0", r#"{"size": 120}"#));
    model.complete(&request, None).await.expect("third");
    let sent = &stub.chat_requests()[2];
    assert_eq!(sent["messages"][2]["role"], "assistant");
    assert_eq!(
        sent["messages"][2]["tool_calls"][1]["function"]["name"],
        "compare_segments"
    );
    assert_eq!(sent["messages"][3]["role"], "tool");
    assert_eq!(sent["messages"][3]["tool_call_id"], "call_1_0");
}

#[tokio::test]
async fn structured_output_falls_back_to_instructions_when_the_server_rejects_it() {
    let stub = OpenAiStub::start(KEY, 4).await;
    stub.script(Route::Chat, 1, Fault::RejectResponseFormat);
    stub.respond_with(|_| ChatAnswer::Text(r#"{"name": "Loyal regulars"}"#.into()));
    let model = model(&stub);
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}},
                        "required": ["name"], "additionalProperties": false});
    let mut request = question("Name segment 1");
    request.structured = Some(StructuredOutput {
        name: "segment_name".into(),
        schema: schema.clone(),
    });
    let reply = model.complete(&request, None).await.expect("reply");
    assert_eq!(
        reply.content.as_deref(),
        Some(r#"{"name": "Loyal regulars"}"#)
    );
    model.complete(&request, None).await.expect("second");
    let sent = stub.chat_requests();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[0]["response_format"]["type"], "json_schema");
    assert_eq!(sent[0]["response_format"]["json_schema"]["schema"], schema);
    for later in &sent[1..] {
        assert!(later.get("response_format").is_none());
        let last = later["messages"].as_array().unwrap().last().unwrap();
        assert_eq!(last["role"], "system");
        assert!(
            last["content"]
                .as_str()
                .unwrap()
                .contains(&schema.to_string())
        );
    }
    assert_eq!(
        incident_kinds(&model),
        [IncidentKind::StructuredOutputUnsupported]
    );
}

#[tokio::test]
async fn a_429_is_retried_after_exactly_its_retry_after() {
    let stub = OpenAiStub::start(KEY, 4).await;
    stub.script(Route::Chat, 1, Fault::rate_limited("0.3"));
    let model = model(&stub);
    let reply = model.complete(&question("hi"), None).await.expect("reply");
    assert_eq!(reply.content.as_deref(), Some("stub answer"));
    let requests = stub.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests[1].at - requests[0].at >= Duration::from_millis(300));
    assert_eq!(incident_kinds(&model), [IncidentKind::RateLimited]);
    assert_eq!((model.usage().requests, model.usage().retries), (2, 1));
}

#[tokio::test]
async fn a_timeout_a_truncated_body_and_a_cut_stream_are_retried_and_recorded() {
    let stub = OpenAiStub::start(KEY, 4).await;
    stub.script(Route::Chat, 1, Fault::Delay(Duration::from_secs(2)));
    stub.script(Route::Chat, 2, Fault::StreamCut);
    stub.script(Route::Chat, 4, Fault::StreamCut);
    stub.respond_with(|_| ChatAnswer::Text("All fine after all.".into()));
    let model = model(&stub);
    let reply = model.complete(&question("a"), None).await.expect("plain");
    assert_eq!(reply.content.as_deref(), Some("All fine after all."));
    let pieces = Mutex::new(Vec::<String>::new());
    let sink = |t: &str| pieces.lock().unwrap().push(t.to_string());
    let streamed = model
        .complete(&question("b"), Some(&sink))
        .await
        .expect("streamed");
    assert_eq!(streamed.content.as_deref(), Some("All fine after all."));
    // The cut attempt's first piece reached the sink before the retry started over.
    let pieces = pieces.into_inner().unwrap();
    assert_eq!(pieces[0], pieces[1]);
    assert_eq!(pieces[1..].concat(), "All fine after all.");
    assert_eq!(
        incident_kinds(&model),
        [
            IncidentKind::Timeout,
            IncidentKind::MalformedBody,
            IncidentKind::StreamCut
        ]
    );
    assert_eq!(model.usage().requests, 5);
}

#[tokio::test]
async fn errors_that_waiting_cannot_fix_fail_at_once_without_the_key() {
    let stub = OpenAiStub::start(KEY, 4).await;
    let wrong = OpenAiChat::with_env(&settings(&stub.base_url, "sk-wrong-key-999"), 7, |_| None)
        .expect("client");
    let error = wrong.complete(&question("hi"), None).await.unwrap_err();
    assert!(
        matches!(
            error,
            OpenAiChatError::Status {
                status: 401,
                attempts: 1,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!error.to_string().contains("sk-wrong-key-999"), "{error}");
    assert!(!format!("{:?}", wrong.usage()).contains("sk-wrong-key-999"));
    assert!(!format!("{wrong:?}").contains("sk-wrong-key-999"));
    assert_eq!(incident_kinds(&wrong), [IncidentKind::Failed]);
}

#[tokio::test]
async fn persistent_server_errors_give_up_after_the_configured_retries() {
    let stub = OpenAiStub::start(KEY, 4).await;
    for n in 1..=3 {
        stub.script(Route::Chat, n, Fault::server_error());
    }
    let model = model(&stub);
    let error = model.complete(&question("hi"), None).await.unwrap_err();
    assert!(
        matches!(
            error,
            OpenAiChatError::Status {
                status: 500,
                attempts: 3,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        incident_kinds(&model),
        [
            IncidentKind::ServerError,
            IncidentKind::ServerError,
            IncidentKind::Failed
        ]
    );
}

#[tokio::test]
async fn a_refusal_is_reported_as_such() {
    let stub = OpenAiStub::start(KEY, 4).await;
    stub.queue_chat(ChatAnswer::Refusal("I can't help with that.".into()));
    let model = model(&stub);
    let reply = model.complete(&question("hi"), None).await.expect("reply");
    assert_eq!(reply.content, None);
    assert_eq!(reply.refusal.as_deref(), Some("I can't help with that."));
}
