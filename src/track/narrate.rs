//! Weekly summaries written by a chat model, held to the built-in summaries' standard.
//!
//! With a model configured (`[llm] provider = "openai"`), each week after the first is
//! summarised by the model from that week's figures ([`week_figures`]: shares, changes, the
//! largest flows, every alert's figures, under the built-in summary's keys), the week's
//! alerts as aggregates (kind, segment, an emerging group's category tokens; never customer
//! ids) and the built-in summary for reference. The model answers `{"text", "figures"}`.
//!
//! A summary is accepted only when:
//! - its text is non-empty plain text of at most [`MAX_CHARS`] characters, without links or
//!   markup;
//! - every key it lists is one of the week's figures, and it lists exactly one key per
//!   number in the text, in order, each number stating its key's figure within the shown
//!   rounding (the same rule `ask`'s movement tool relies on to cite a stored summary);
//! - it names every alert of the week (cites one of each alert's figures).
//!
//! A summary that fails is asked for again with the problems listed, up to
//! `narrative.regenerations` times; then the built-in summary stays and the record says why.
//! A transport failure (after the client's own retries) keeps the built-in summaries for the
//! remaining weeks. Nothing here can fail the run.

use serde::{Deserialize, Serialize};

use super::document::MovementDocument;
use super::summary::{BUILTIN, WeekSummary, week_figures};
use super::weeks::IsoWeek;
use crate::llm::{ChatBackend, ChatMessage, ChatModel, ChatRequest, ModelInfo, StructuredOutput};
use crate::narrative::figures::Figure;
use crate::narrative::grounding::numbers_in;
use crate::narrative::llm::{ModelRecord, model_record, parse_json_reply};
use crate::narrative::prompts::{
    self, WeekAlertData, WeekSummaryContext, WeekSummaryData, render_week_summary_retry,
};
use crate::settings::NarrativeSettings;

/// Longest summary accepted, in characters: a few sentences, not a report.
pub const MAX_CHARS: usize = 1200;

/// What the model answers for one week.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelSummary {
    text: String,
    figures: Vec<String>,
}

/// How the summaries were written, for `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeeklyNarrativeRecord {
    /// `builtin`, or the model's name.
    pub narrator: String,
    /// The model, when one was configured.
    pub model: Option<ModelInfo>,
    /// Requests sent.
    pub attempts: u32,
    /// Weeks whose summary the model wrote.
    pub model_weeks: Vec<IsoWeek>,
    /// Weeks that kept the built-in summary although a model was configured, and why.
    pub kept_builtin: Vec<KeptBuiltin>,
}

impl WeeklyNarrativeRecord {
    /// The record of summaries written without a model.
    pub fn builtin() -> Self {
        WeeklyNarrativeRecord {
            narrator: BUILTIN.into(),
            model: None,
            attempts: 0,
            model_weeks: Vec::new(),
            kept_builtin: Vec::new(),
        }
    }
}

/// A week whose model summary was not used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeptBuiltin {
    /// The week.
    pub week: IsoWeek,
    /// The last problems found, or the model's failure.
    pub reasons: Vec<String>,
}

/// The summaries to store and how they were written.
#[derive(Debug, Clone)]
pub struct WeeklyNarration {
    /// One per week after the first, in week order.
    pub summaries: Vec<WeekSummary>,
    /// What happened, for `run.json`.
    pub record: WeeklyNarrativeRecord,
    /// The model's usage, when there is a model.
    pub model: Option<ModelRecord>,
}

/// The configured backend's weekly summaries: the built-in ones as they are, or a model's
/// where they pass the checks.
pub async fn narrate_weeks(
    backend: &ChatBackend,
    doc: &MovementDocument,
    settings: &NarrativeSettings,
) -> WeeklyNarration {
    let mut narration = match backend {
        ChatBackend::Builtin => WeeklyNarration {
            summaries: doc.summaries.clone(),
            record: WeeklyNarrativeRecord::builtin(),
            model: None,
        },
        ChatBackend::OpenAi(model) => narrate_with_model(model, doc, settings).await,
    };
    narration.model = model_record(backend);
    narration
}

/// Every week's summary asked of `model`; never fails.
pub async fn narrate_with_model<M: ChatModel>(
    model: &M,
    doc: &MovementDocument,
    settings: &NarrativeSettings,
) -> WeeklyNarration {
    let info = model.describe();
    let mut record = WeeklyNarrativeRecord {
        narrator: info.model.clone(),
        model: Some(info.clone()),
        attempts: 0,
        model_weeks: Vec::new(),
        kept_builtin: Vec::new(),
    };
    let mut summaries = Vec::with_capacity(doc.summaries.len());
    let mut unavailable: Option<String> = None;
    for (i, builtin) in doc.summaries.iter().enumerate() {
        // Summaries are of weeks 1.. (the first week has none).
        let index = i + 1;
        if let Some(reason) = &unavailable {
            record.kept_builtin.push(KeptBuiltin {
                week: builtin.week,
                reasons: vec![reason.clone()],
            });
            summaries.push(builtin.clone());
            continue;
        }
        match summarise_week(model, doc, index, builtin, settings, &mut record.attempts).await {
            Ok(summary) => {
                record.model_weeks.push(builtin.week);
                summaries.push(WeekSummary {
                    narrator: info.model.clone(),
                    ..summary
                });
            }
            Err(WeekFailure::Checks(reasons)) => {
                record.kept_builtin.push(KeptBuiltin {
                    week: builtin.week,
                    reasons,
                });
                summaries.push(builtin.clone());
            }
            Err(WeekFailure::Model(error)) => {
                tracing::warn!(%error, week = %builtin.week, "weekly summary model failed; keeping the built-in summaries");
                let reason = format!("The model gave no usable answer: {error}");
                record.kept_builtin.push(KeptBuiltin {
                    week: builtin.week,
                    reasons: vec![reason.clone()],
                });
                summaries.push(builtin.clone());
                unavailable = Some(reason);
            }
        }
    }
    WeeklyNarration {
        summaries,
        record,
        model: None,
    }
}

/// Why a week kept its built-in summary.
enum WeekFailure {
    /// The model's last answer failed these checks.
    Checks(Vec<String>),
    /// The model could not be asked (prompt or transport).
    Model(String),
}

async fn summarise_week<M: ChatModel>(
    model: &M,
    doc: &MovementDocument,
    index: usize,
    builtin: &WeekSummary,
    settings: &NarrativeSettings,
    attempts: &mut u32,
) -> Result<WeekSummary, WeekFailure> {
    let figures = week_figures(doc, index);
    let previous = doc
        .shares
        .get(index - 1)
        .map(|s| s.week.to_string())
        .unwrap_or_default();
    let context = WeekSummaryContext {
        week: builtin.week.to_string(),
        previous_week: previous,
        data: WeekSummaryData {
            figures: figures
                .iter()
                .map(|f| (f.key.clone(), f.display.clone()))
                .collect(),
            alerts: week_alerts(doc, builtin.week),
            builtin: builtin.text.clone(),
        },
    };
    let system =
        prompts::render_week_summary_system().map_err(|e| WeekFailure::Model(e.to_string()))?;
    let user =
        prompts::render_week_summary(&context).map_err(|e| WeekFailure::Model(e.to_string()))?;
    let mut messages = vec![ChatMessage::system(system), ChatMessage::user(user)];
    let structured = StructuredOutput {
        name: "week_summary".into(),
        schema: answer_schema(),
    };
    let alert_count = context.data.alerts.len();
    let mut problems = Vec::new();
    for _ in 0..=settings.regenerations {
        *attempts += 1;
        let request = ChatRequest {
            messages: messages.clone(),
            tools: Vec::new(),
            structured: Some(structured.clone()),
        };
        let reply = model
            .complete(&request, None)
            .await
            .map_err(|e| WeekFailure::Model(e.to_string()))?;
        let content = reply.content.clone().or(reply.refusal.clone());
        problems = match (&reply.refusal, &reply.content) {
            (Some(refusal), _) => vec![format!("The model refused: {refusal}")],
            (None, Some(content)) => match parse_json_reply::<ModelSummary>(content) {
                Ok(answer) => match check(&answer, &figures, builtin.week, alert_count) {
                    Ok(()) => {
                        return Ok(WeekSummary {
                            week: builtin.week,
                            text: answer.text.trim().to_string(),
                            figures: answer.figures,
                            narrator: String::new(),
                        });
                    }
                    Err(problems) => problems,
                },
                Err(e) => vec![format!(
                    "The answer is not the JSON object asked for ({e})."
                )],
            },
            (None, None) => vec!["The answer was empty.".to_string()],
        };
        tracing::info!(week = %builtin.week, problems = problems.len(), "weekly summary failed its checks");
        let retry =
            render_week_summary_retry(&problems).map_err(|e| WeekFailure::Model(e.to_string()))?;
        messages.push(ChatMessage::assistant(content.unwrap_or_default()));
        messages.push(ChatMessage::user(retry));
    }
    Err(WeekFailure::Checks(problems))
}

/// The week's alerts as aggregates, in the document's order.
fn week_alerts(doc: &MovementDocument, week: IsoWeek) -> Vec<WeekAlertData> {
    doc.alerts
        .iter()
        .filter(|a| a.week == week)
        .enumerate()
        .map(|(n, a)| WeekAlertData {
            alert: n,
            kind: a.kind.key(),
            segment: a.segment,
            to: a
                .evidence
                .get("to")
                .and_then(serde_json::Value::as_u64)
                .and_then(|v| usize::try_from(v).ok()),
            over_indexed: a
                .evidence
                .get("over_indexed")
                .and_then(serde_json::Value::as_array)
                .map(|tokens| {
                    tokens
                        .iter()
                        .filter_map(|t| t.get("token")?.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

/// The problems of an answer, one sentence each; `Ok` when there are none.
fn check(
    answer: &ModelSummary,
    figures: &[Figure],
    week: IsoWeek,
    alert_count: usize,
) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let text = answer.text.trim();
    if text.is_empty() {
        problems.push("The text is empty.".to_string());
    }
    if text.chars().count() > MAX_CHARS {
        problems.push(format!(
            "The text has {} characters; at most {MAX_CHARS} are allowed.",
            text.chars().count()
        ));
    }
    if text.contains("://") || text.contains('<') || text.contains('>') {
        problems.push("The text contains a link or markup; write plain sentences.".to_string());
    }
    let mentions = numbers_in(text);
    let mut cited: Vec<&Figure> = Vec::new();
    for key in &answer.figures {
        match figures.iter().find(|f| &f.key == key) {
            Some(f) => cited.push(f),
            None => problems.push(format!(
                "\"{key}\" is not one of the week's figures; cite only keys from the data."
            )),
        }
    }
    if mentions.len() != answer.figures.len() {
        problems.push(format!(
            "The text states {} numbers but \"figures\" lists {} keys; list one key per number, in order.",
            mentions.len(),
            answer.figures.len()
        ));
    } else if cited.len() == answer.figures.len() {
        for (mention, figure) in mentions.iter().zip(&cited) {
            if !mention.matches(figure) {
                problems.push(format!(
                    "\"{}\" does not state {} = {}.",
                    mention.written, figure.key, figure.display
                ));
            }
        }
    }
    for n in 0..alert_count {
        let prefix = format!("movement.{week}.alert.{n}.");
        if !answer.figures.iter().any(|k| k.starts_with(&prefix)) {
            problems.push(format!(
                "Alert {n} of the week is not mentioned with any of its figures."
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The JSON schema of the model's answer (strict structured output).
fn answer_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["text", "figures"],
        "properties": {
            "text": { "type": "string" },
            "figures": { "type": "array", "items": { "type": "string" } }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::narrative::figures::Unit;

    fn week() -> IsoWeek {
        IsoWeek::parse("2026-W41").unwrap_or_else(|e| unreachable!("{e}"))
    }

    fn figures() -> Vec<Figure> {
        vec![
            Figure::new("movement.2026-W41.segment.1.share", 0.252, Unit::Share),
            Figure::new("movement.2026-W41.alert.0.customers", 19.0, Unit::Count),
        ]
    }

    fn answer(text: &str, keys: &[&str]) -> ModelSummary {
        ModelSummary {
            text: text.into(),
            figures: keys.iter().map(|k| k.to_string()).collect(),
        }
    }

    #[test]
    fn a_grounded_summary_naming_every_alert_passes() {
        let a = answer(
            "Segment 1 now holds 25.2% of customers; 19 customers form a new group.",
            &[
                "movement.2026-W41.segment.1.share",
                "movement.2026-W41.alert.0.customers",
            ],
        );
        assert_eq!(check(&a, &figures(), week(), 1), Ok(()));
    }

    #[test]
    fn invented_numbers_unknown_keys_missing_alerts_and_markup_are_named() {
        let problems = |a: ModelSummary| check(&a, &figures(), week(), 1).err().unwrap_or_default();
        let wrong = problems(answer(
            "Segment 1 now holds 31% of customers; 19 customers form a new group.",
            &[
                "movement.2026-W41.segment.1.share",
                "movement.2026-W41.alert.0.customers",
            ],
        ));
        assert_eq!(
            wrong,
            ["\"31%\" does not state movement.2026-W41.segment.1.share = 25.2%."]
        );
        let unknown = problems(answer(
            "19 customers form a new group, up 4 points.",
            &[
                "movement.2026-W41.alert.0.customers",
                "movement.2026-W41.made.up",
            ],
        ));
        assert_eq!(
            unknown,
            [
                "\"movement.2026-W41.made.up\" is not one of the week's figures; cite only keys from the data."
            ]
        );
        let uncounted = problems(answer(
            "Segment 1 holds 25.2% and 19 customers are new.",
            &["movement.2026-W41.segment.1.share"],
        ));
        assert_eq!(uncounted.len(), 2, "{uncounted:?}");
        assert!(uncounted[0].starts_with("The text states 2 numbers but \"figures\" lists 1 keys"));
        assert_eq!(
            uncounted[1],
            "Alert 0 of the week is not mentioned with any of its figures."
        );
        let markup = problems(answer(
            "See <a href=\"https://example.com\">19</a> customers.",
            &["movement.2026-W41.alert.0.customers"],
        ));
        assert_eq!(
            markup,
            ["The text contains a link or markup; write plain sentences."]
        );
    }
}
