//! The agent: a chat model answers a question by calling the read-only tools, and its answer
//! is accepted only when every number in it is a figure some tool returned.
//!
//! The conversation, round by round:
//! 1. system prompt (`prompts/ask_system.tera`) and the question; the tools are offered;
//! 2. each tool call is checked (known name, JSON arguments, the tool's schema) before it
//!    runs; a failing call gets its error back as the tool's result, so the model can fix
//!    it, and is counted in the [`AskRecord`]; each round of calls uses one of
//!    `ask.max_tool_rounds`;
//! 3. once the rounds are used up, the tools are withdrawn and the model is told to answer
//!    from what it has; a model that still calls tools gets no answer from them;
//! 4. a text answer goes through the narrative's grounding check against every figure the
//!    tools returned in this conversation. A failing answer is sent back once with the
//!    violations listed (the tools stay available, so the model can fetch a figure it
//!    lacked).
//!
//! When the retry fails too (or the model refuses, or keeps calling tools), the agent falls
//! back to the built-in answerer **if it recognises the question**, and otherwise replies
//! that the answer could not be verified. Why this order: the built-in answer is grounded by
//! construction and answers the same question when it recognises it, so the user still gets
//! a trustworthy answer; when it does not recognise the question, its reply would be about
//! something else, and an honest "could not verify" beats both an off-topic answer and an
//! unchecked one. An ungrounded model answer is never shown.
//!
//! Streaming: with a [`TokenSink`], text is passed through as the model writes it. Streamed
//! text is provisional: the returned [`Answer`] is authoritative, and a caller that streams
//! must replace the streamed text with [`Answer::text`] whenever its status is not
//! [`AnswerStatus::Answered`] (a rejected answer may already have been shown in part).

use serde_json::json;

use super::builtin;
use super::prompt::{AskSystemContext, render_system};
use super::tools::Toolbox;
use super::{Answer, AnswerStatus, AskError, AskRecord};
use crate::llm::{
    ChatMessage, ChatModel, ChatRequest, FinishReason, OpenAiChatError, TokenSink, ToolSpec,
};
use crate::narrative::figures::Figure;
use crate::narrative::grounding::{check_numbers, numbers_in};
use crate::settings::AskSettings;

/// Why the agent could not get an answer from the model at all.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Setting up failed.
    #[error(transparent)]
    Ask(#[from] AskError),
    /// The model failed after its own retries (rate limits, timeouts, server errors).
    #[error("the chat model failed: {0}")]
    Model(#[from] OpenAiChatError),
}

/// One earlier exchange of a conversation: what was asked, what was answered and the
/// figures that answer cited.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// The question as asked.
    pub question: String,
    /// The answer's text as shown.
    pub answer: String,
    /// The figures the answer cited (grounded when it was given).
    pub figures: Vec<Figure>,
}

/// A chat model with the tools over one run.
#[derive(Debug)]
pub struct Agent<M: ChatModel> {
    model: M,
    toolbox: Toolbox,
    max_tool_rounds: usize,
    system: String,
}

impl<M: ChatModel> Agent<M> {
    /// An agent over `toolbox`'s run; the system prompt is rendered once here.
    pub fn new(model: M, toolbox: Toolbox, settings: &AskSettings) -> Result<Self, AskError> {
        let context = AskSystemContext::for_run(toolbox.run(), settings.max_tool_rounds);
        let system = render_system(&context)?;
        Ok(Agent {
            model,
            toolbox,
            max_tool_rounds: settings.max_tool_rounds,
            system,
        })
    }

    /// The tools (and through them the run).
    pub fn toolbox(&self) -> &Toolbox {
        &self.toolbox
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    fn tool_specs(&self) -> Vec<ToolSpec> {
        self.toolbox
            .specs()
            .map(|(tool, schema)| ToolSpec {
                name: tool.name().to_string(),
                description: tool.description().to_string(),
                parameters: schema.clone(),
            })
            .collect()
    }

    /// Answers `question`; see the module documentation for the conversation and what
    /// happens when the model misbehaves.
    pub async fn answer(
        &self,
        question: &str,
        tokens: Option<TokenSink<'_>>,
    ) -> Result<Answer, AgentError> {
        self.answer_in_conversation(&[], question, tokens).await
    }

    /// Answers `question` as the next turn of a conversation (the web chat keeps one per
    /// browser session), so "and the second largest?" can lean on what was said before.
    /// Earlier turns are replayed as user and assistant messages; the figures their answers
    /// cited were verified then and may be restated now, so they count as grounded along with
    /// whatever the tools return in this turn.
    pub async fn answer_in_conversation(
        &self,
        history: &[Turn],
        question: &str,
        tokens: Option<TokenSink<'_>>,
    ) -> Result<Answer, AgentError> {
        let mut messages = vec![ChatMessage::system(self.system.clone())];
        let mut figures: Vec<Figure> = Vec::new();
        for turn in history {
            messages.push(ChatMessage::user(turn.question.clone()));
            messages.push(ChatMessage::assistant(turn.answer.clone()));
            figures.extend(turn.figures.iter().cloned());
        }
        messages.push(ChatMessage::user(question));
        let specs = self.tool_specs();
        let mut record = AskRecord::default();
        let mut retried = false;
        let mut told_to_answer = false;
        // Tool rounds, plus one answer after the rounds, plus one grounding retry.
        let mut turns_left = self.max_tool_rounds + 2;
        let outcome = loop {
            if turns_left == 0 {
                break Outcome::GaveUp;
            }
            turns_left -= 1;
            let offer_tools = record.rounds < self.max_tool_rounds;
            if !offer_tools && !told_to_answer {
                record.rounds_exhausted = true;
                told_to_answer = true;
                messages.push(ChatMessage::user(format!(
                    "You have used all {} rounds of tool calls. Answer the question now, using \
                     only figures from the tool results above; if they are not enough, say \
                     what you could not find.",
                    self.max_tool_rounds
                )));
            }
            let request = ChatRequest {
                messages: messages.clone(),
                tools: if offer_tools {
                    specs.clone()
                } else {
                    Vec::new()
                },
                structured: None,
            };
            let reply = self.model.complete(&request, tokens).await?;
            if let Some(refusal) = reply.refusal.filter(|r| !r.trim().is_empty()) {
                record.refusals += 1;
                break Outcome::Refused(refusal);
            }
            if !reply.tool_calls.is_empty() {
                if !offer_tools {
                    // Tools were withdrawn; running them now would break the bound.
                    break Outcome::GaveUp;
                }
                record.rounds += 1;
                messages.push(ChatMessage::assistant_calls(reply.tool_calls.clone()));
                for call in &reply.tool_calls {
                    let result = self.toolbox.call(&call.name, &call.arguments).await;
                    record.note_call(&call.name, result.as_ref().err());
                    let content = match result {
                        Ok(output) => {
                            let content = json!({"result": output.content}).to_string();
                            figures.extend(output.figures);
                            content
                        }
                        Err(e) => json!({"error": e.to_string()}).to_string(),
                    };
                    messages.push(ChatMessage::tool_result(call.id.clone(), content));
                }
                continue;
            }
            let text = reply.content.unwrap_or_default();
            let mut problems: Vec<String> =
                check_numbers(&text, &figures.iter().collect::<Vec<_>>())
                    .iter()
                    .map(ToString::to_string)
                    .collect();
            if text.trim().is_empty() {
                problems.push("the answer is empty".into());
            }
            if reply.finish_reason == FinishReason::Length {
                problems
                    .push("the answer was cut off at the token limit; answer more briefly".into());
            }
            if problems.is_empty() {
                break Outcome::Grounded(text);
            }
            record.rejected_answers.push(problems.clone());
            if retried {
                break Outcome::Ungrounded;
            }
            retried = true;
            messages.push(ChatMessage::assistant(text));
            let next = if record.rounds < self.max_tool_rounds {
                "Call a tool if you need a figure you do not have, then answer again."
            } else {
                "Answer again with the figures you have."
            };
            messages.push(ChatMessage::user(format!(
                "Your answer cannot be shown: {}. Every number must be a figure from a tool \
                 result in this conversation, written as the tool wrote it. {next}",
                problems.join("; ")
            )));
        };
        record.usage = Some(self.model.usage());
        let run = self.toolbox.run().citation();
        let model_name = self.model.describe().model;
        let answer = match outcome {
            Outcome::Grounded(text) => Answer {
                figures: used_figures(&text, &figures),
                text,
                run,
                answerer: model_name,
                status: AnswerStatus::Answered,
                record,
            },
            Outcome::Refused(refusal) => {
                self.fallback(
                    question,
                    record,
                    AnswerStatus::Refused,
                    format!("The model declined to answer: {refusal}"),
                )
                .await
            }
            Outcome::Ungrounded | Outcome::GaveUp => {
                self.fallback(
                    question,
                    record,
                    AnswerStatus::BuiltinAfterUngrounded,
                    format!(
                        "segscope could not verify the model's answer against the run's figures, \
                         so it is not shown. Ask about one segment or one KPI at a time, or read \
                         the briefing in {}.",
                        self.toolbox.run().dir().join("report.html").display()
                    ),
                )
                .await
            }
        };
        Ok(answer)
    }

    /// The built-in answer when it recognises the question, else `otherwise`.
    async fn fallback(
        &self,
        question: &str,
        record: AskRecord,
        status: AnswerStatus,
        otherwise: String,
    ) -> Answer {
        let builtin = builtin::answer(&self.toolbox, question).await;
        if builtin.status == AnswerStatus::Answered {
            return Answer {
                status,
                record,
                ..builtin
            };
        }
        Answer {
            text: otherwise,
            run: self.toolbox.run().citation(),
            figures: Vec::new(),
            answerer: self.model.describe().model,
            status: if status == AnswerStatus::Refused {
                AnswerStatus::Refused
            } else {
                AnswerStatus::Unverified
            },
            record,
        }
    }
}

enum Outcome {
    Grounded(String),
    Refused(String),
    Ungrounded,
    GaveUp,
}

/// The figures the numbers of `text` state: for each number, the figures written exactly as
/// it is written, else every figure it matches within its rounding; in order of first use,
/// each key once.
pub fn used_figures(text: &str, figures: &[Figure]) -> Vec<Figure> {
    let mut used: Vec<Figure> = Vec::new();
    for mention in numbers_in(text) {
        let matching: Vec<&Figure> = figures.iter().filter(|f| mention.matches(f)).collect();
        let exact: Vec<&Figure> = matching
            .iter()
            .copied()
            .filter(|f| f.display == mention.written)
            .collect();
        let chosen = if exact.is_empty() { matching } else { exact };
        for f in chosen {
            if !used.iter().any(|u| u.key == f.key) {
                used.push(f.clone());
            }
        }
    }
    used
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::narrative::figures::Unit;

    #[test]
    fn an_answer_cites_the_figures_its_numbers_state_and_nothing_else() {
        let figures = vec![
            Figure::new("segment.2.size", 109.0, Unit::Count),
            Figure::new("segment.2.share", 0.18166, Unit::Share),
            Figure::new("segment.3.size", 96.0, Unit::Count),
            Figure::new("segment.2.recency_days.median", 6.0306, Unit::Number),
        ];
        let text = "Segment 2 has 109 customers (18.2% of the base); its buyers last bought 6.03 days ago.";
        let keys: Vec<String> = used_figures(text, &figures)
            .into_iter()
            .map(|f| f.key)
            .collect();
        assert_eq!(
            keys,
            [
                "segment.2.size",
                "segment.2.share",
                "segment.2.recency_days.median"
            ]
        );
        assert!(check_numbers(text, &figures.iter().collect::<Vec<_>>()).is_empty());
        assert_eq!(
            check_numbers(
                "Segment 2 has 110 customers.",
                &figures.iter().collect::<Vec<_>>()
            )
            .len(),
            1
        );
    }
}
