//! Plain-language questions about a finished run, answered from its figures.
//!
//! Owns the read-only tools over a stored run ([`tools`], reading [`run::StoredRun`] and,
//! for similarity, the vector store), the [`Agent`] that lets a chat model answer by calling
//! them, and the built-in answerer ([`builtin`]) used when no model is configured. It does
//! not own transport: the CLI (`segscope ask`), the web chat and Slack all call
//! [`Agent::answer`] or [`builtin::answer`] and print or send the [`Answer`].
//!
//! Trust rules every answer keeps, whoever writes it:
//! - every number in the answer equals a figure some tool returned in this conversation
//!   (the narrative's grounding check), and the answer cites the run and those figures;
//! - only aggregates reach the model (no customer ids, no personal fields), and strings that
//!   come from customer data are passed as quoted data;
//! - a model that misbehaves (unknown tools, malformed arguments, refusals, too many rounds,
//!   ungrounded numbers) never produces an unchecked answer: see [`agent`] for what happens
//!   instead. Everything that went wrong is counted in the answer's [`AskRecord`].

pub mod agent;
pub mod builtin;
pub mod movement;
pub mod prompt;
pub mod run;
pub mod similar;
pub mod tools;

use std::fmt::Write as _;

use serde::Serialize;

pub use agent::Agent;
pub use run::{RunError, StoredRun};
pub use tools::{Tool, ToolError, ToolOutput, Toolbox};

use crate::llm::ModelUsage;
use crate::narrative::figures::Figure;

/// How an answer came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerStatus {
    /// Answered, every number grounded.
    Answered,
    /// The model's answer failed the grounding check twice; the built-in answer was given.
    BuiltinAfterUngrounded,
    /// The model's answer failed the grounding check twice and the built-in answerer does
    /// not handle the question: the reply says the answer could not be verified.
    Unverified,
    /// The model refused.
    Refused,
    /// The built-in answerer did not recognise the question.
    NotUnderstood,
    /// A tool the built-in answerer needed failed.
    ToolFailed,
}

/// What happened while answering, for logs and the web chat's record.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AskRecord {
    /// Rounds of tool calls the model made.
    pub rounds: usize,
    /// Tool calls made, by tool name, in order, with the error when one failed.
    pub tool_calls: Vec<ToolCallRecord>,
    /// Calls with malformed or schema-breaking arguments.
    pub invalid_arguments: usize,
    /// Calls to tools that do not exist.
    pub unknown_tools: usize,
    /// Refusals by the model.
    pub refusals: usize,
    /// Whether the model used up `ask.max_tool_rounds` and was made to answer.
    pub rounds_exhausted: bool,
    /// Answers rejected by the grounding check (each with its violations).
    pub rejected_answers: Vec<Vec<String>>,
    /// Requests, tokens and incidents of the model, when one answered.
    pub usage: Option<ModelUsage>,
}

/// One tool call as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCallRecord {
    /// The tool name as called.
    pub tool: String,
    /// The error returned to the model, if the call failed.
    pub error: Option<String>,
}

impl AskRecord {
    /// Records a call and counts invalid ones.
    pub fn note_call(&mut self, tool: &str, error: Option<&ToolError>) {
        match error {
            Some(ToolError::UnknownTool { .. }) => self.unknown_tools += 1,
            Some(ToolError::MalformedArguments { .. } | ToolError::InvalidArguments { .. }) => {
                self.invalid_arguments += 1;
            }
            _ => {}
        }
        self.tool_calls.push(ToolCallRecord {
            tool: tool.to_string(),
            error: error.map(ToString::to_string),
        });
    }
}

/// An answer with what it rests on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    /// The answer text.
    pub text: String,
    /// The run it is about ([`StoredRun::citation`]).
    pub run: String,
    /// The figures it states, each traceable to a tool result.
    pub figures: Vec<Figure>,
    /// `builtin` or the model's name.
    pub answerer: String,
    /// How it came about.
    pub status: AnswerStatus,
    /// What happened on the way.
    pub record: AskRecord,
}

impl Answer {
    /// The answer followed by its citations, as the CLI prints it.
    pub fn render(&self) -> String {
        let mut out = self.text.trim_end().to_string();
        let _ = write!(
            out,
            "\n\nSource: {} (answered by {})",
            self.run, self.answerer
        );
        if !self.figures.is_empty() {
            out.push_str("\nFigures:");
            for f in &self.figures {
                let _ = write!(out, "\n  {} = {}", f.key, f.display);
            }
        }
        out
    }
}

/// Why a question could not be answered at all (as opposed to an answer that says it
/// cannot help).
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// The run directory could not be read.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The tools could not be set up for the run.
    #[error(transparent)]
    Tools(#[from] ToolError),
    /// The system prompt failed to render.
    #[error("cannot render the ask prompt: {0}")]
    Prompt(String),
    /// The configured chat model cannot be set up (settings, missing key).
    #[error(transparent)]
    Model(#[from] crate::llm::OpenAiChatError),
}
