//! The LLM narrator: asks a chat model for segment names and descriptions, keeps only what
//! passes the grounding check, and falls back to the built-in narrator segment by segment.
//!
//! Flow: render the prompts ([`crate::narrative::prompts`]) → ask once for every segment at
//! least `narrative.min_segment_size` large, with a JSON schema as structured output → parse
//! (JSON, else JSON inside a code fence, else the outermost `{…}` of prose, for servers
//! without `response_format`) → validate each segment (every segment present, cited keys
//! exist, every number equals a cited figure, names unique and supported by the KPIs) →
//! ask again for the failing segments only, with the violations listed, up to
//! `narrative.regenerations` times → replace what still fails by the built-in narrator's text,
//! recording which segment and why.
//!
//! What this module never does: retry a transport failure (the [`ChatModel`] did that; one
//! that still fails sends every remaining segment to the built-in narrator, and the run goes
//! on), write caveats of its own (code-made caveats are always kept; the model may add
//! cautions of kind `other`, which must pass the same number check), or send a segment below
//! the minimum size or anything per customer.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::analysis::kpis::BusinessKpis;
use crate::llm::{
    ChatBackend, ChatMessage, ChatModel, ChatReply, ChatRequest, ModelInfo, ModelUsage,
    StructuredOutput,
};
use crate::narrative::figures::{Figure, FigureCatalogue};
use crate::narrative::grounding::{self, FigureHint, Violation};
use crate::narrative::prompts::{
    self, InterestData, NarrateRetryContext, NarrateSegmentsContext, NarrativeData,
    NarratorSystemContext, Population, RetrySegment, SegmentData,
};
use crate::narrative::{Caveat, CaveatKind, SegmentText};
use crate::settings::NarrativeSettings;

/// What the narrator knows about one segment.
#[derive(Debug, Clone)]
pub struct SegmentBrief {
    /// Segment id (1-based).
    pub id: usize,
    /// Customers in it.
    pub size: usize,
    /// The built-in narrator's text: the fallback.
    pub builtin: SegmentText,
    /// The caveats code attaches to it (shown to the model, always kept).
    pub caveats: Vec<Caveat>,
    /// Categories and brands it over-indexes on.
    pub interests: Vec<InterestData>,
}

impl SegmentBrief {
    /// The interests of a segment's business KPIs, with the keys of their lifts.
    pub fn interests_of(id: usize, kpis: &BusinessKpis) -> Vec<InterestData> {
        let category = kpis
            .top_categories
            .iter()
            .enumerate()
            .map(|(r, i)| InterestData {
                kind: "category",
                name: i.name.clone(),
                lift_key: format!("segment.{id}.top_categories.{}.lift", r + 1),
            });
        let brand = kpis
            .top_brands
            .iter()
            .enumerate()
            .map(|(r, i)| InterestData {
                kind: "brand",
                name: i.name.clone(),
                lift_key: format!("segment.{id}.top_brands.{}.lift", r + 1),
            });
        category.chain(brand).collect()
    }
}

/// Everything the narrator works from.
#[derive(Debug, Clone)]
pub struct NarrativeInput<'a> {
    /// What was segmented.
    pub population: Population,
    /// Every citable figure of the run.
    pub catalogue: &'a FigureCatalogue,
    /// The segments, in output order.
    pub segments: Vec<SegmentBrief>,
}

/// One segment's final text.
#[derive(Debug, Clone, PartialEq)]
pub struct NarratedSegment {
    /// Name, description and the keys they cite.
    pub text: SegmentText,
    /// `builtin` or the model's name.
    pub narrator: String,
    /// Cautions the model added (kind [`CaveatKind::Narrator`]), checked like its text; the
    /// code-made caveats are added by the caller.
    pub extra_caveats: Vec<Caveat>,
}

/// Why a segment carries the built-in narrator's text although a model is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplacementReason {
    /// Smaller than `narrative.min_segment_size`: never sent to the model.
    BelowMinSegmentSize,
    /// The model's text failed the checks on every attempt.
    FailedChecks,
    /// The model could not be reached or gave no answer (transport failure after retries).
    ModelUnavailable,
    /// The model's name clashed with the built-in name another segment fell back to.
    NameClash,
}

/// A segment the built-in narrator wrote instead of the model, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replacement {
    /// The segment.
    pub segment: usize,
    /// Why.
    pub reason: ReplacementReason,
    /// The violations or the error, one sentence each.
    pub details: Vec<String>,
}

/// The narrative part of `segments.json`: who wrote what, and what was replaced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NarrativeRecord {
    /// The configured narrator: `builtin` or the model's name.
    pub narrator: String,
    /// The model, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelInfo>,
    /// Requests for text made to the model (first attempt plus regenerations).
    pub attempts: u32,
    /// Segments whose text the model wrote.
    pub model_segments: Vec<usize>,
    /// Segments the built-in narrator wrote although a model is configured, with reasons.
    pub replaced: Vec<Replacement>,
}

/// The outcome of narrating a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Narration {
    /// One per input segment, same order.
    pub segments: Vec<NarratedSegment>,
    /// What happened.
    pub record: NarrativeRecord,
}

/// What talking to the model cost, for `run.json` (not `segments.json`: it varies between
/// identical runs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRecord {
    /// Which model.
    pub model: ModelInfo,
    /// Requests, retries, tokens and incidents.
    pub usage: ModelUsage,
}

/// The model's usage, for a backend that has a model.
pub fn model_record(backend: &ChatBackend) -> Option<ModelRecord> {
    match backend {
        ChatBackend::Builtin => None,
        ChatBackend::OpenAi(model) => Some(ModelRecord {
            model: model.describe(),
            usage: model.usage(),
        }),
    }
}

/// Narrates with the configured backend: the built-in narrator unchanged for
/// [`ChatBackend::Builtin`], the model otherwise.
pub async fn narrate(
    backend: &ChatBackend,
    input: &NarrativeInput<'_>,
    settings: &NarrativeSettings,
) -> Narration {
    match backend {
        ChatBackend::Builtin => builtin_narration(input),
        ChatBackend::OpenAi(model) => narrate_with_model(model, input, settings).await,
    }
}

/// Every segment with the built-in narrator's text.
pub fn builtin_narration(input: &NarrativeInput<'_>) -> Narration {
    Narration {
        segments: input
            .segments
            .iter()
            .map(|s| NarratedSegment {
                text: s.builtin.clone(),
                narrator: BUILTIN.into(),
                extra_caveats: Vec::new(),
            })
            .collect(),
        record: NarrativeRecord {
            narrator: BUILTIN.into(),
            model: None,
            attempts: 0,
            model_segments: Vec::new(),
            replaced: Vec::new(),
        },
    }
}

const BUILTIN: &str = "builtin";

/// Every segment with the built-in text because the model could not be asked at all (e.g.
/// no async runtime), recorded as such.
pub fn unavailable(backend: &ChatBackend, input: &NarrativeInput<'_>, detail: &str) -> Narration {
    let mut narration = builtin_narration(input);
    if let ChatBackend::OpenAi(model) = backend {
        let info = model.describe();
        narration.record.narrator = info.model.clone();
        narration.record.model = Some(info);
        narration.record.replaced = input
            .segments
            .iter()
            .map(|s| Replacement {
                segment: s.id,
                reason: ReplacementReason::ModelUnavailable,
                details: vec![format!("The model gave no usable answer: {detail}")],
            })
            .collect();
    }
    narration
}

/// The JSON schema of the model's answer (strict structured output).
pub fn answer_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["segments"],
        "properties": {
            "segments": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["segment", "name", "description", "caveats", "figures"],
                    "properties": {
                        "segment": { "type": "integer", "description": "Segment id as given." },
                        "name": { "type": "string", "description": "Short unique name, two to six words." },
                        "description": { "type": "string", "description": "One paragraph, two to four sentences." },
                        "caveats": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "additionalProperties": false,
                                "required": ["kind", "text"],
                                "properties": {
                                    "kind": { "type": "string", "enum": ["other"] },
                                    "text": { "type": "string" }
                                }
                            }
                        },
                        "figures": {
                            "type": "array",
                            "description": "Every number in name, description and caveats, with the key of the figure it comes from.",
                            "items": {
                                "type": "object",
                                "additionalProperties": false,
                                "required": ["key", "shown_as"],
                                "properties": {
                                    "key": { "type": "string" },
                                    "shown_as": { "type": "string" }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

/// The model's answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Answer {
    /// One entry per segment described.
    pub segments: Vec<AnsweredSegment>,
}

/// One segment as the model wrote it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AnsweredSegment {
    /// Segment id.
    pub segment: usize,
    /// Name.
    pub name: String,
    /// One paragraph.
    pub description: String,
    /// Cautions of its own.
    #[serde(default)]
    pub caveats: Vec<AnsweredCaveat>,
    /// Figures cited.
    #[serde(default)]
    pub figures: Vec<Citation>,
}

/// A caution the model wrote.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AnsweredCaveat {
    /// `other` (code owns every other kind).
    #[serde(default)]
    pub kind: String,
    /// The sentence.
    pub text: String,
}

/// A figure the model says it used.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Citation {
    /// Catalogue key.
    pub key: String,
    /// The number as written in the text.
    #[serde(default)]
    pub shown_as: String,
}

/// Reads the answer out of a reply's text: JSON, else JSON in a code fence, else the
/// outermost braces of prose (servers without `response_format` wrap their JSON). The error
/// is the parser's message for the most JSON-like candidate.
pub fn parse_answer(content: &str) -> Result<Answer, String> {
    parse_json_reply(content)
}

/// Reads a JSON value of type `T` out of a model's reply text, as [`parse_answer`] does for
/// the segment narrative: JSON, else JSON in a code fence, else the outermost braces.
pub fn parse_json_reply<T: serde::de::DeserializeOwned>(content: &str) -> Result<T, String> {
    let trimmed = content.trim();
    let first = match serde_json::from_str::<T>(trimmed) {
        Ok(answer) => return Ok(answer),
        Err(e) => e.to_string(),
    };
    let mut candidates = Vec::new();
    if let Some(start) = trimmed.find("```") {
        let after = &trimmed[start + 3..];
        // Skip the info string ("json") up to the end of the fence line.
        let body = after.find('\n').map_or(after, |nl| &after[nl + 1..]);
        if let Some(end) = body.find("```") {
            candidates.push(&body[..end]);
        }
    }
    if let (Some(open), Some(close)) = (trimmed.find('{'), trimmed.rfind('}'))
        && open < close
    {
        candidates.push(&trimmed[open..=close]);
    }
    let mut last = first;
    for candidate in candidates {
        match serde_json::from_str::<T>(candidate.trim()) {
            Ok(answer) => return Ok(answer),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// A segment's text that passed every check.
#[derive(Debug, Clone, PartialEq)]
struct Accepted {
    name: String,
    description: String,
    figures: Vec<String>,
    caveats: Vec<String>,
}

/// The outcome of checking one reply.
#[derive(Debug, Default)]
struct Evaluation {
    accepted: BTreeMap<usize, Accepted>,
    problems: BTreeMap<usize, Vec<Violation>>,
}

/// Checks one answered segment's citations and numbers (names are checked across segments).
fn check_segment(answer: &AnsweredSegment, catalogue: &FigureCatalogue) -> Vec<Violation> {
    let id = answer.segment;
    let mut violations = Vec::new();
    let mut cited: Vec<&Figure> = Vec::new();
    for citation in &answer.figures {
        match catalogue.get(&citation.key) {
            None => violations.push(Violation::UnknownFigureKey {
                segment: id,
                key: citation.key.clone(),
            }),
            Some(figure) => {
                if !citation.shown_as.trim().is_empty()
                    && !grounding::check_numbers(&citation.shown_as, &[figure]).is_empty()
                {
                    violations.push(Violation::UngroundedNumber {
                        segment: Some(id),
                        number: citation.shown_as.clone(),
                        excerpt: format!("cited as {}", citation.key),
                        nearest: Some(FigureHint {
                            key: figure.key.clone(),
                            display: figure.display.clone(),
                        }),
                    });
                }
                cited.push(figure);
            }
        }
    }
    let mut texts = vec![answer.name.as_str(), answer.description.as_str()];
    texts.extend(answer.caveats.iter().map(|c| c.text.as_str()));
    for text in texts {
        violations.extend(
            grounding::check_numbers(text, &cited)
                .into_iter()
                .map(|v| v.in_segment(id)),
        );
    }
    violations
}

/// Checks a reply against the pending segments. `taken` are names already final (accepted
/// model names and built-in names of segments the model does not write).
fn evaluate(
    reply: &ChatReply,
    pending: &BTreeSet<usize>,
    taken: &[(usize, String)],
    catalogue: &FigureCatalogue,
) -> Evaluation {
    let mut out = Evaluation::default();
    let everyone = |v: Violation| -> BTreeMap<usize, Vec<Violation>> {
        pending.iter().map(|s| (*s, vec![v.clone()])).collect()
    };
    if let Some(refusal) = &reply.refusal {
        out.problems = everyone(Violation::NoAnswer {
            detail: format!("refused: {refusal}"),
        });
        return out;
    }
    let Some(content) = reply.content.as_deref().filter(|c| !c.trim().is_empty()) else {
        out.problems = everyone(Violation::NoAnswer {
            detail: "empty reply".into(),
        });
        return out;
    };
    let answer = match parse_answer(content) {
        Ok(answer) => answer,
        Err(detail) => {
            out.problems = everyone(Violation::MalformedAnswer { detail });
            return out;
        }
    };
    let mut candidates: BTreeMap<usize, &AnsweredSegment> = BTreeMap::new();
    for segment in &answer.segments {
        if pending.contains(&segment.segment) {
            candidates.entry(segment.segment).or_insert(segment);
        }
    }
    for id in pending {
        let Some(answer) = candidates.get(id) else {
            out.problems
                .insert(*id, vec![Violation::MissingSegment { segment: *id }]);
            continue;
        };
        let violations = check_segment(answer, catalogue);
        out.problems.insert(*id, violations);
    }
    // Names: the lexicon and uniqueness among the candidates, then against names taken.
    let names: Vec<(usize, &str)> = candidates
        .iter()
        .map(|(id, a)| (*id, a.name.as_str()))
        .collect();
    for violation in grounding::check_names(&names, catalogue) {
        let targets: Vec<usize> = match &violation {
            Violation::DuplicateName { segments, .. } => segments.clone(),
            other => other.segment().into_iter().collect(),
        };
        for id in targets {
            out.problems.entry(id).or_default().push(violation.clone());
        }
    }
    for (id, name) in &names {
        if let Some((other, taken_name)) = taken
            .iter()
            .find(|(_, t)| grounding::name_key(t) == grounding::name_key(name))
        {
            out.problems
                .entry(*id)
                .or_default()
                .push(Violation::DuplicateName {
                    name: taken_name.clone(),
                    segments: vec![(*id).min(*other), (*id).max(*other)],
                });
        }
    }
    out.problems.retain(|id, violations| {
        if !violations.is_empty() {
            return true;
        }
        if let Some(a) = candidates.get(id) {
            let mut figures: Vec<String> = Vec::new();
            for c in &a.figures {
                if !figures.contains(&c.key) {
                    figures.push(c.key.clone());
                }
            }
            out.accepted.insert(
                *id,
                Accepted {
                    name: a.name.trim().to_string(),
                    description: a.description.trim().to_string(),
                    figures,
                    caveats: a
                        .caveats
                        .iter()
                        .filter(|c| c.kind.is_empty() || c.kind == "other")
                        .map(|c| c.text.trim().to_string())
                        .filter(|t| !t.is_empty())
                        .collect(),
                },
            );
        }
        false
    });
    out
}

/// The request's data block: run-level figures, and each described segment's figures,
/// interests and caveats.
fn narrative_data(input: &NarrativeInput<'_>, described: &[&SegmentBrief]) -> NarrativeData {
    let display = |figures: &mut dyn Iterator<Item = &Figure>| {
        figures
            .map(|f| (f.key.clone(), f.display.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    NarrativeData {
        run: display(&mut input.catalogue.run_level()),
        segments: described
            .iter()
            .map(|s| SegmentData {
                segment: s.id,
                figures: display(&mut input.catalogue.segment(s.id)),
                interests: s.interests.clone(),
                caveats: s.caveats.iter().map(|c| c.message.clone()).collect(),
            })
            .collect(),
    }
}

/// Narrates with `model`; never fails: whatever the model cannot write well, the built-in
/// narrator writes, and the record says which and why.
pub async fn narrate_with_model<M: ChatModel>(
    model: &M,
    input: &NarrativeInput<'_>,
    settings: &NarrativeSettings,
) -> Narration {
    let info = model.describe();
    let mut replaced: Vec<Replacement> = Vec::new();
    let described: Vec<&SegmentBrief> = input
        .segments
        .iter()
        .filter(|s| s.size >= settings.min_segment_size)
        .collect();
    for s in input
        .segments
        .iter()
        .filter(|s| s.size < settings.min_segment_size)
    {
        replaced.push(Replacement {
            segment: s.id,
            reason: ReplacementReason::BelowMinSegmentSize,
            details: vec![format!(
                "{} customers, fewer than narrative.min_segment_size = {}: not sent to the model.",
                s.size, settings.min_segment_size
            )],
        });
    }
    let mut pending: BTreeSet<usize> = described.iter().map(|s| s.id).collect();
    let mut accepted: BTreeMap<usize, Accepted> = BTreeMap::new();
    let mut problems: BTreeMap<usize, Vec<Violation>> = BTreeMap::new();
    let mut failure: Option<String> = None;
    let mut attempts = 0u32;

    let prompts = prompts::render_narrator_system(&NarratorSystemContext {
        min_segment_size: settings.min_segment_size,
    })
    .and_then(|system| {
        let user = prompts::render_narrate_segments(&NarrateSegmentsContext {
            population: input.population,
            k: input.segments.len(),
            not_described: input.segments.len() - described.len(),
            data: narrative_data(input, &described),
        })?;
        Ok((system, user))
    });
    let mut messages = match prompts {
        Ok((system, user)) => vec![ChatMessage::system(system), ChatMessage::user(user)],
        Err(e) => {
            failure = Some(e.to_string());
            Vec::new()
        }
    };
    let fixed: Vec<(usize, String)> = input
        .segments
        .iter()
        .filter(|s| !pending.contains(&s.id))
        .map(|s| (s.id, s.builtin.name.clone()))
        .collect();
    let structured = StructuredOutput {
        name: "segment_narrative".into(),
        schema: answer_schema(),
    };
    while failure.is_none() && !pending.is_empty() && attempts <= settings.regenerations {
        attempts += 1;
        let request = ChatRequest {
            messages: messages.clone(),
            tools: Vec::new(),
            structured: Some(structured.clone()),
        };
        let reply = match model.complete(&request, None).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(error = %e, attempts, "narrative model failed; using the built-in narrator");
                failure = Some(e.to_string());
                break;
            }
        };
        let mut taken = fixed.clone();
        taken.extend(accepted.iter().map(|(id, a)| (*id, a.name.clone())));
        let evaluation = evaluate(&reply, &pending, &taken, input.catalogue);
        for (id, a) in evaluation.accepted {
            pending.remove(&id);
            problems.remove(&id);
            accepted.insert(id, a);
        }
        problems = evaluation.problems;
        tracing::info!(
            attempt = attempts,
            accepted = accepted.len(),
            failing = pending.len(),
            "narrative answer checked"
        );
        if pending.is_empty() || attempts > settings.regenerations {
            break;
        }
        let retry = prompts::render_narrate_retry(&NarrateRetryContext {
            segments: pending
                .iter()
                .map(|id| RetrySegment {
                    segment: *id,
                    problems: problems
                        .get(id)
                        .map(|v| v.iter().map(ToString::to_string).collect())
                        .unwrap_or_default(),
                })
                .collect(),
        });
        match retry {
            Ok(text) => {
                let previous = reply
                    .content
                    .clone()
                    .or(reply.refusal.clone())
                    .unwrap_or_default();
                messages.push(ChatMessage::assistant(previous));
                messages.push(ChatMessage::user(text));
            }
            Err(e) => failure = Some(e.to_string()),
        }
    }
    for id in &pending {
        let (reason, details) = match (&failure, problems.get(id)) {
            (Some(error), _) => (
                ReplacementReason::ModelUnavailable,
                vec![format!("The model gave no usable answer: {error}")],
            ),
            (None, Some(violations)) => (
                ReplacementReason::FailedChecks,
                violations.iter().map(ToString::to_string).collect(),
            ),
            (None, None) => (ReplacementReason::FailedChecks, Vec::new()),
        };
        replaced.push(Replacement {
            segment: *id,
            reason,
            details,
        });
    }
    // A model name may equal the built-in name a failing segment fell back to: then that
    // segment falls back too, until every name is unique again.
    loop {
        let builtin_names: Vec<(usize, String)> = input
            .segments
            .iter()
            .filter(|s| !accepted.contains_key(&s.id))
            .map(|s| (s.id, s.builtin.name.clone()))
            .collect();
        let clash = accepted.iter().find_map(|(id, a)| {
            builtin_names
                .iter()
                .find(|(_, b)| grounding::name_key(b) == grounding::name_key(&a.name))
                .map(|(other, _)| (*id, *other, a.name.clone()))
        });
        let Some((id, other, name)) = clash else {
            break;
        };
        accepted.remove(&id);
        replaced.push(Replacement {
            segment: id,
            reason: ReplacementReason::NameClash,
            details: vec![format!(
                "The model's name \"{name}\" equals the built-in name of segment {other}, which replaced a failing text."
            )],
        });
    }
    replaced.sort_by_key(|r| r.segment);
    let segments = input
        .segments
        .iter()
        .map(|s| match accepted.get(&s.id) {
            Some(a) => NarratedSegment {
                text: SegmentText {
                    name: a.name.clone(),
                    description: a.description.clone(),
                    figures: a.figures.clone(),
                },
                narrator: info.model.clone(),
                extra_caveats: a
                    .caveats
                    .iter()
                    .map(|t| Caveat {
                        kind: CaveatKind::Narrator,
                        message: t.clone(),
                    })
                    .collect(),
            },
            None => NarratedSegment {
                text: s.builtin.clone(),
                narrator: BUILTIN.into(),
                extra_caveats: Vec::new(),
            },
        })
        .collect();
    Narration {
        segments,
        record: NarrativeRecord {
            narrator: info.model.clone(),
            model: Some(info),
            attempts,
            model_segments: accepted.keys().copied().collect(),
            replaced,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::FinishReason;
    use crate::narrative::figures::Unit;

    fn catalogue() -> FigureCatalogue {
        let mut c = FigureCatalogue::new();
        for f in [
            Figure::new("base.monetary.median", 500.0, Unit::Number),
            Figure::new("segment.1.size", 412.0, Unit::Count),
            Figure::new("segment.1.share", 0.412, Unit::Share),
            Figure::new("segment.1.monetary.median", 2400.0, Unit::Number),
            Figure::new("segment.2.size", 388.0, Unit::Count),
            Figure::new("segment.2.monetary.median", 45.0, Unit::Number),
        ] {
            c.insert(f);
        }
        c
    }

    fn reply(content: &str) -> ChatReply {
        ChatReply {
            content: Some(content.into()),
            refusal: None,
            tool_calls: Vec::new(),
            finish_reason: FinishReason::Stop,
        }
    }

    const GOOD: &str = r#"{"segments": [
        {"segment": 1, "name": "Big spenders", "description": "412 customers (41.2%) with a median spend of 2,400 against 500.",
         "caveats": [{"kind": "other", "text": "Spend is net of returns."}],
         "figures": [{"key": "segment.1.size", "shown_as": "412"}, {"key": "segment.1.share", "shown_as": "41.2%"},
                     {"key": "segment.1.monetary.median", "shown_as": "2,400"}, {"key": "base.monetary.median", "shown_as": "500"}]},
        {"segment": 2, "name": "Low spenders", "description": "388 customers spending a median of 45.",
         "caveats": [], "figures": [{"key": "segment.2.size", "shown_as": "388"}, {"key": "segment.2.monetary.median", "shown_as": "45"}]}
    ]}"#;

    #[test]
    fn answers_parse_from_json_fences_and_prose() {
        let direct = parse_answer(GOOD).unwrap();
        assert_eq!(direct.segments.len(), 2);
        let fenced = format!("Here you go:\n```json\n{GOOD}\n```\nHope this helps.");
        assert_eq!(parse_answer(&fenced).unwrap(), direct);
        let prose = format!("Sure! {GOOD} Let me know.");
        assert_eq!(parse_answer(&prose).unwrap(), direct);
        let err = parse_answer("{\"segments\": [{\"segment\": 1}]}").unwrap_err();
        assert!(err.contains("missing field `name`"), "{err}");
        assert!(parse_answer("no json here").is_err());
    }

    #[test]
    fn a_grounded_answer_is_accepted_with_its_citations_and_cautions() {
        let pending = BTreeSet::from([1, 2]);
        let e = evaluate(&reply(GOOD), &pending, &[], &catalogue());
        assert!(e.problems.is_empty(), "{:?}", e.problems);
        let one = &e.accepted[&1];
        assert_eq!(one.name, "Big spenders");
        assert_eq!(
            one.figures,
            [
                "segment.1.size",
                "segment.1.share",
                "segment.1.monetary.median",
                "base.monetary.median"
            ]
        );
        assert_eq!(one.caveats, ["Spend is net of returns."]);
    }

    #[test]
    fn invented_numbers_unknown_keys_and_contradicted_names_are_violations() {
        let bad = r#"{"segments": [
            {"segment": 1, "name": "Big spenders", "description": "412 customers, 3x the base.",
             "caveats": [], "figures": [{"key": "segment.1.size", "shown_as": "412"}, {"key": "segment.9.size", "shown_as": "1"}]},
            {"segment": 2, "name": "VIP", "description": "388 customers.",
             "caveats": [], "figures": [{"key": "segment.2.size", "shown_as": "390"}]}
        ]}"#;
        let e = evaluate(&reply(bad), &BTreeSet::from([1, 2]), &[], &catalogue());
        assert!(e.accepted.is_empty());
        let kinds = |id: usize| -> Vec<String> {
            e.problems[&id]
                .iter()
                .map(|v| {
                    serde_json::to_value(v).unwrap()["kind"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect()
        };
        assert_eq!(kinds(1), ["unknown_figure_key", "ungrounded_number"]);
        assert_eq!(kinds(2), ["ungrounded_number", "contradicted_claim"]);
        assert!(e.problems[&1][1].to_string().contains("\"3x\""));
    }

    #[test]
    fn missing_segments_duplicates_and_taken_names_are_violations() {
        let answer = r#"{"segments": [
            {"segment": 1, "name": "Spenders", "description": "Many.", "caveats": [], "figures": []},
            {"segment": 7, "name": "Ghost", "description": "Not asked.", "caveats": [], "figures": []}
        ]}"#;
        let taken = [(3, "spenders".to_string())];
        let e = evaluate(
            &reply(answer),
            &BTreeSet::from([1, 2]),
            &taken,
            &catalogue(),
        );
        assert_eq!(e.problems[&2], [Violation::MissingSegment { segment: 2 }]);
        assert_eq!(
            e.problems[&1],
            [Violation::DuplicateName {
                name: "spenders".into(),
                segments: vec![1, 3]
            }]
        );
        assert!(!e.problems.contains_key(&7));
    }

    #[test]
    fn refusals_empty_and_malformed_replies_fail_every_pending_segment() {
        let pending = BTreeSet::from([1, 2]);
        let mut refused = reply("");
        refused.refusal = Some("I can't help with that.".into());
        let e = evaluate(&refused, &pending, &[], &catalogue());
        assert_eq!(e.problems.len(), 2);
        assert_eq!(
            e.problems[&1][0].to_string(),
            "The model gave no usable answer (refused: I can't help with that.)."
        );
        let e = evaluate(&reply("{\"segments\": [oops"), &pending, &[], &catalogue());
        assert!(matches!(
            e.problems[&2][0],
            Violation::MalformedAnswer { .. }
        ));
        let e = evaluate(&reply("  "), &pending, &[], &catalogue());
        assert!(matches!(e.problems[&1][0], Violation::NoAnswer { .. }));
    }

    #[test]
    fn the_schema_requires_every_field_strictly() {
        let schema = answer_schema();
        let item = &schema["properties"]["segments"]["items"];
        assert_eq!(
            item["required"],
            serde_json::json!(["segment", "name", "description", "caveats", "figures"])
        );
        assert_eq!(item["additionalProperties"], false);
        let valid: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        assert!(jsonschema::is_valid(&schema, &valid));
    }
}
