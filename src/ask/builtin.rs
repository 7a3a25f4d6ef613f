//! The built-in answerer: common questions answered deterministically from the tools, with
//! no model.
//!
//! It recognises a question by its words (a segment named by id — `segment 3`, `#3` — or by
//! the words of its name; a KPI by its everyday words; an intent such as "compare",
//! "biggest", "caveat", "churn"), calls the same tools the agent offers a model, and writes
//! the answer from the figures those tools returned, so its numbers are grounded by
//! construction and cited like a model's. A question it does not recognise gets a plain
//! statement of what it can answer and how to configure a model; it never guesses.

use serde_json::{Value, json};

use super::tools::{Tool, ToolError, ToolOutput, Toolbox, kpi_label, kpi_value, kpis};
use super::{Answer, AnswerStatus, AskRecord};
use crate::narrative::figures::Figure;

/// What the built-in answerer recognised.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    /// Compare two segments.
    Compare(usize, usize),
    /// Caveats (of the run, and of a segment when one is named).
    Caveats(Option<usize>),
    /// How k was chosen.
    KChoice,
    /// The segment most at risk of churning (highest median recency).
    Churn,
    /// The segment highest (`true`) or lowest by a KPI.
    Extreme {
        /// KPI name as `kpi_table` takes it.
        kpi: String,
        /// Highest when true.
        highest: bool,
    },
    /// How big a segment is.
    Size(usize),
    /// Describe a segment.
    Describe(usize),
    /// List the segments.
    List,
    /// What changed in a tracked week (the latest when `None`), from `movement.json`.
    Movement(Option<String>),
    /// Not recognised.
    Unknown,
}

/// Words that carry no meaning for matching segment names.
const NAME_STOPWORDS: [&str; 12] = [
    "the", "and", "who", "of", "a", "an", "to", "in", "on", "for", "with", "group",
];

fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            // Plural and singular name the same segment ("spender", "spenders").
            match w.strip_suffix('s') {
                Some(stem) if stem.len() >= 3 && !w.ends_with("ss") => stem.to_string(),
                _ => w.to_string(),
            }
        })
        .collect()
}

fn has_any(words: &[String], wanted: &[&str]) -> bool {
    words.iter().any(|w| wanted.contains(&w.as_str()))
}

fn has_phrase(question: &str, phrases: &[&str]) -> bool {
    let q = question.to_lowercase();
    phrases.iter().any(|p| q.contains(p))
}

/// Segment ids named as `segment 3`, `segments 2 and 4`, `cluster 3` or `#3`, in order.
fn ids_in(question: &str, k: usize) -> Vec<usize> {
    let ws: Vec<String> = question
        .to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '#'))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    let mut ids = Vec::new();
    let mut after_keyword = false;
    for w in &ws {
        if let Some(n) = w.strip_prefix('#').and_then(|n| n.parse::<usize>().ok()) {
            ids.push(n);
            continue;
        }
        if matches!(w.as_str(), "segment" | "segments" | "cluster" | "clusters") {
            after_keyword = true;
            continue;
        }
        match w.parse::<usize>() {
            Ok(n) if after_keyword => ids.push(n),
            _ if matches!(w.as_str(), "and" | "or" | "vs" | "versus" | "with" | "to") => {}
            _ => after_keyword = false,
        }
    }
    ids.retain(|id| (1..=k).contains(id));
    ids.dedup();
    ids
}

/// The segment whose name shares the most words with `text` (at least one, and more than
/// any other segment's), if there is exactly one.
fn segment_by_name(toolbox: &Toolbox, text: &str) -> Option<usize> {
    let asked = words(text);
    let mut scored: Vec<(usize, usize)> = toolbox
        .run()
        .document()
        .segments
        .iter()
        .map(|s| {
            let mut name_words = words(&s.name);
            name_words.retain(|w| w.len() >= 3 && !NAME_STOPWORDS.contains(&w.as_str()));
            name_words.dedup();
            let hits = name_words.iter().filter(|w| asked.contains(w)).count();
            (s.id, hits)
        })
        .collect();
    scored.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    match scored.as_slice() {
        [(id, best), rest @ ..] if *best > 0 && rest.first().is_none_or(|r| r.1 < *best) => {
            Some(*id)
        }
        _ => None,
    }
}

/// The KPI a question is about, by its everyday words.
fn kpi_in(words: &[String], question: &str, available: &[String]) -> Option<String> {
    let kpi = if has_phrase(question, &["order value", "basket"]) {
        "average_order_value"
    } else if has_phrase(question, &["revenue share", "share of revenue"]) {
        "revenue_share"
    } else if has_any(words, &["revenue", "sale"]) {
        "revenue"
    } else if has_any(
        words,
        &[
            "spend", "spender", "spending", "monetary", "valuable", "value",
        ],
    ) {
        "monetary"
    } else if has_any(
        words,
        &["order", "frequency", "frequent", "often", "purchase"],
    ) {
        "frequency"
    } else if has_any(words, &["recent", "recency", "recently"]) {
        "recency_days"
    } else if has_any(words, &["conversion", "convert", "converting", "converter"]) {
        "conversion_rate"
    } else if has_any(words, &["stable", "stability"]) {
        "stability"
    } else if has_any(words, &["buyer"]) {
        "buyer_share"
    } else {
        return available
            .iter()
            .filter_map(|k| k.strip_prefix("feature."))
            .find(|column| question.to_lowercase().contains(&column.to_lowercase()))
            .map(|column| format!("feature.{column}"));
    };
    available.iter().any(|k| k == kpi).then(|| kpi.to_string())
}

/// Recognises what `question` asks about this run.
pub fn classify(toolbox: &Toolbox, question: &str) -> Intent {
    let k = toolbox.run().document().k;
    let ws = words(question);
    if let Some(movement) = toolbox.run().movement() {
        let weeks = super::movement::weeks(movement);
        let lowered = question.to_lowercase();
        let named_week = weeks
            .iter()
            .find(|w| lowered.contains(&w.to_lowercase()))
            .cloned();
        if named_week.is_some()
            || has_any(
                &ws,
                &[
                    "change",
                    "changed",
                    "changes",
                    "alert",
                    "alerts",
                    "movement",
                    "moved",
                    "migration",
                    "drift",
                    "anomaly",
                    "anomalies",
                    "emerging",
                    "week",
                    "weekly",
                ],
            )
        {
            return Intent::Movement(named_week);
        }
        if k == 0 {
            return Intent::Unknown;
        }
    }
    let ids = ids_in(question, k);
    let named = ids
        .first()
        .copied()
        .or_else(|| segment_by_name(toolbox, question));

    if has_any(
        &ws,
        &[
            "compare",
            "comparison",
            "versu",
            "vs",
            "difference",
            "differ",
        ],
    ) {
        if let [a, b, ..] = ids.as_slice() {
            return Intent::Compare(*a, *b);
        }
        let lowered = question.to_lowercase();
        for separator in [" versus ", " vs ", " with ", " and ", " to "] {
            if let Some((left, right)) = lowered.split_once(separator)
                && let (Some(a), Some(b)) = (
                    segment_by_name(toolbox, left),
                    segment_by_name(toolbox, right),
                )
                && a != b
            {
                return Intent::Compare(a, b);
            }
        }
    }
    if has_any(
        &ws,
        &[
            "caveat",
            "trust",
            "trustworthy",
            "reliable",
            "caution",
            "warning",
            "map",
            "limitation",
        ],
    ) {
        return Intent::Caveats(named);
    }
    if has_phrase(
        question,
        &[
            "how many segments",
            "number of segments",
            "why k",
            "choose k",
            "chosen k",
            "k chosen",
            "k was chosen",
            "was k",
            "choice of k",
            "how many clusters",
        ],
    ) {
        return Intent::KChoice;
    }
    let available = kpis(toolbox.run());
    if named.is_none()
        && (has_any(
            &ws,
            &[
                "churn", "churning", "lapsed", "lapsing", "dormant", "inactive",
            ],
        ) || has_phrase(question, &["at risk", "losing"]))
        && available.iter().any(|k| k == "recency_days")
    {
        return Intent::Churn;
    }
    let lowest = has_any(
        &ws,
        &["smallest", "least", "lowest", "fewest", "worst", "minimum"],
    );
    let highest = has_any(
        &ws,
        &[
            "biggest", "largest", "most", "highest", "top", "best", "maximum", "greatest",
        ],
    );
    if named.is_none() && (lowest || highest) {
        let kpi = kpi_in(&ws, question, &available).unwrap_or_else(|| "size".into());
        // "most recent" means the fewest days since the last purchase.
        let highest = if kpi == "recency_days" && has_any(&ws, &["recent"]) {
            lowest
        } else {
            !lowest
        };
        return Intent::Extreme { kpi, highest };
    }
    if let Some(id) = named {
        if has_any(&ws, &["big", "large", "size", "many", "small"])
            || has_phrase(question, &["how big"])
        {
            return Intent::Size(id);
        }
        return Intent::Describe(id);
    }
    if has_any(&ws, &["list", "segment", "cluster", "overview"]) {
        return Intent::List;
    }
    Intent::Unknown
}

/// How the built-in answerer explains what it cannot do.
pub fn cannot_answer() -> String {
    "The built-in answerer (no language model is configured) cannot answer this question. \
     It answers: the size of a segment, which segment is biggest or smallest by a KPI, a \
     comparison of two segments, a segment's description, which caveats apply, how the number \
     of segments was chosen, and which segment is most at risk of churning. Name segments by \
     id (\"segment 3\") or by words of their name. To answer other questions, configure a \
     model: set llm.provider = \"openai\" (in a --config file, or SEGSCOPE__LLM__PROVIDER=openai) \
     and OPENAI_API_KEY, or llm.openai.base_url for a local OpenAI-compatible server (Ollama, \
     vLLM, llama.cpp)."
        .to_string()
}

/// Answers `question` without a model.
pub async fn answer(toolbox: &Toolbox, question: &str) -> Answer {
    let intent = classify(toolbox, question);
    let mut record = AskRecord::default();
    let result = respond(toolbox, &intent, &mut record).await;
    let (text, figures, status) = match result {
        Ok(Some((text, figures))) => (text, figures, AnswerStatus::Answered),
        Ok(None) => (cannot_answer(), Vec::new(), AnswerStatus::NotUnderstood),
        Err(e) => (
            format!("The built-in answerer could not answer: {e}"),
            Vec::new(),
            AnswerStatus::ToolFailed,
        ),
    };
    Answer {
        text,
        run: toolbox.run().citation(),
        figures,
        answerer: "builtin".into(),
        status,
        record,
    }
}

/// Calls a tool on the built-in answerer's behalf and records it.
async fn call(
    toolbox: &Toolbox,
    record: &mut AskRecord,
    tool: Tool,
    args: Value,
) -> Result<ToolOutput, ToolError> {
    let result = toolbox.run_tool(tool, args).await;
    record.note_call(tool.name(), result.as_ref().err());
    result
}

/// The display of the figure `key` among `output`'s figures.
fn shown<'a>(output: &'a ToolOutput, key: &str, used: &mut Vec<Figure>) -> &'a str {
    match output.figures.iter().find(|f| f.key == key) {
        Some(f) => {
            if !used.iter().any(|u| u.key == f.key) {
                used.push(f.clone());
            }
            &f.display
        }
        None => "n/a",
    }
}

fn name_of(toolbox: &Toolbox, id: usize) -> String {
    toolbox
        .run()
        .segment(id)
        .map_or_else(String::new, |s| s.name.clone())
}

async fn respond(
    toolbox: &Toolbox,
    intent: &Intent,
    record: &mut AskRecord,
) -> Result<Option<(String, Vec<Figure>)>, ToolError> {
    let mut used = Vec::new();
    let text = match intent {
        Intent::Unknown => return Ok(None),
        Intent::Movement(week) => {
            let args = week
                .as_ref()
                .map_or_else(|| json!({}), |w| json!({"week": w}));
            let out = call(toolbox, record, Tool::MovementWeek, args).await?;
            let label = out.content["week"].as_str().unwrap_or_default();
            match out.content["summary"].as_str() {
                Some(summary) => {
                    let keys: Vec<String> = toolbox
                        .run()
                        .movement()
                        .and_then(|m| m["summaries"].as_array())
                        .and_then(|all| all.iter().find(|s| s["week"] == label))
                        .and_then(|s| s["figures"].as_array())
                        .map(|keys| {
                            keys.iter()
                                .filter_map(|k| k.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    for key in &keys {
                        shown(&out, key, &mut used);
                    }
                    format!("What changed in {label}: {summary}")
                }
                None => format!(
                    "{label} is the first tracked week: there is no week before it to compare \
                     with."
                ),
            }
        }
        Intent::List => {
            let out = call(toolbox, record, Tool::ListSegments, json!({})).await?;
            let doc = toolbox.run().document();
            let lines: Vec<String> = doc
                .segments
                .iter()
                .map(|s| {
                    format!(
                        "- segment {}, \"{}\": {} customers ({})",
                        s.id,
                        s.name,
                        shown(&out, &format!("segment.{}.size", s.id), &mut used),
                        shown(&out, &format!("segment.{}.share", s.id), &mut used),
                    )
                })
                .collect();
            format!(
                "The run has {} segments of {} customers:\n{}",
                shown(&out, "k", &mut used),
                shown(&out, "n_customers", &mut used),
                lines.join("\n")
            )
        }
        Intent::Size(id) => {
            let out = call(toolbox, record, Tool::ListSegments, json!({})).await?;
            format!(
                "Segment {id}, \"{}\", has {} customers, {} of the {} customers in the run.",
                name_of(toolbox, *id),
                shown(&out, &format!("segment.{id}.size"), &mut used),
                shown(&out, &format!("segment.{id}.share"), &mut used),
                shown(&out, "n_customers", &mut used),
            )
        }
        Intent::Describe(id)
            if toolbox
                .run()
                .segment(*id)
                .is_some_and(|s| toolbox.is_small(s)) =>
        {
            let out = call(
                toolbox,
                record,
                Tool::SegmentProfile,
                json!({"segment": id}),
            )
            .await?;
            format!(
                "Segment {id}, \"{}\", has {} customers ({} of the run), fewer than {} \
                 (narrative.min_segment_size): segscope does not describe segments this small \
                 individually.",
                name_of(toolbox, *id),
                shown(&out, &format!("segment.{id}.size"), &mut used),
                shown(&out, &format!("segment.{id}.share"), &mut used),
                shown(&out, "narrative.min_segment_size", &mut used),
            )
        }
        Intent::Describe(id) => {
            let out = call(
                toolbox,
                record,
                Tool::SegmentProfile,
                json!({"segment": id}),
            )
            .await?;
            let segment = toolbox.run().segment(*id);
            let description = segment.map_or("", |s| s.description.as_str());
            let caveats: Vec<String> = segment
                .map(|s| s.caveats.iter().map(|c| c.message.clone()).collect())
                .unwrap_or_default();
            let mut text = format!(
                "Segment {id}, \"{}\" ({} customers, {} of the run): {description}",
                name_of(toolbox, *id),
                shown(&out, &format!("segment.{id}.size"), &mut used),
                shown(&out, &format!("segment.{id}.share"), &mut used),
            );
            // The description states the segment's own figures: cite them all.
            for f in &out.figures {
                if !used.iter().any(|u| u.key == f.key) {
                    used.push(f.clone());
                }
            }
            if !caveats.is_empty() {
                text.push_str(&format!("\nCaveats: {}", caveats.join(" ")));
            }
            text
        }
        Intent::Compare(a, b) => {
            let out = call(
                toolbox,
                record,
                Tool::CompareSegments,
                json!({"a": a, "b": b}),
            )
            .await?;
            let rows = out.content["kpis"].as_array().cloned().unwrap_or_default();
            let lines: Vec<String> = rows
                .iter()
                .filter_map(|row| {
                    let kpi = row["kpi"].as_str()?;
                    let a_seg = toolbox.run().segment(*a)?;
                    let b_seg = toolbox.run().segment(*b)?;
                    let (ka, _, _) = kpi_value(a_seg, kpi)?;
                    let (kb, _, _) = kpi_value(b_seg, kpi)?;
                    Some(format!(
                        "- {}: {} against {}",
                        kpi_label(kpi),
                        shown(&out, &ka, &mut used),
                        shown(&out, &kb, &mut used)
                    ))
                })
                .collect();
            format!(
                "Segment {a}, \"{}\", against segment {b}, \"{}\":\n{}",
                name_of(toolbox, *a),
                name_of(toolbox, *b),
                lines.join("\n")
            )
        }
        Intent::Extreme { kpi, highest } => {
            let out = call(toolbox, record, Tool::KpiTable, json!({"kpi": kpi})).await?;
            let table = out.content["segments"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let ranked: Vec<(usize, String)> = table
                .iter()
                .filter_map(|row| {
                    let id = row["id"].as_u64()? as usize;
                    let (key, _, _) = kpi_value(toolbox.run().segment(id)?, kpi)?;
                    Some((id, key))
                })
                .collect();
            let pick = if *highest {
                ranked.first()
            } else {
                ranked.last()
            };
            let Some((id, key)) = pick.cloned() else {
                return Ok(None);
            };
            let ranking: Vec<String> = ranked
                .iter()
                .map(|(id, key)| format!("segment {id} {}", shown(&out, key, &mut used)))
                .collect();
            format!(
                "By {}, the {} is segment {id}, \"{}\", with {}. All segments, highest first: {}.",
                kpi_label(kpi),
                if *highest { "highest" } else { "lowest" },
                name_of(toolbox, id),
                shown(&out, &key, &mut used),
                ranking.join(", ")
            )
        }
        Intent::Churn => {
            let out = call(
                toolbox,
                record,
                Tool::KpiTable,
                json!({"kpi": "recency_days"}),
            )
            .await?;
            let table = out.content["segments"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let ranked: Vec<usize> = table
                .iter()
                .filter_map(|row| row["id"].as_u64().map(|id| id as usize))
                .collect();
            let Some(&id) = ranked.first() else {
                return Ok(None);
            };
            let key = |id: usize| format!("segment.{id}.recency_days.median");
            let others: Vec<String> = ranked[1..]
                .iter()
                .map(|other| format!("segment {other} {}", shown(&out, &key(*other), &mut used)))
                .collect();
            format!(
                "Most at risk of churning, judged by the time since the last purchase: segment \
                 {id}, \"{}\", whose buyers last bought a median of {} days ago. The other \
                 segments, in days: {}. Recency is a proxy for churn risk, not a prediction.",
                name_of(toolbox, id),
                shown(&out, &key(id), &mut used),
                others.join(", ")
            )
        }
        Intent::Caveats(segment) => {
            let out = call(toolbox, record, Tool::MapCaveats, json!({})).await?;
            let doc = toolbox.run().document();
            let maps: Vec<String> = doc
                .maps
                .keys()
                .map(|name| {
                    format!(
                        "{} {}",
                        map_name(name),
                        shown(&out, &format!("maps.{name}.trustworthiness"), &mut used)
                    )
                })
                .collect();
            let mut text = match segment.and_then(|id| toolbox.run().segment(id)) {
                Some(s) if s.caveats.is_empty() => format!(
                    "Segment {}, \"{}\", has no caveats of its own. ",
                    s.id, s.name
                ),
                Some(s) => format!(
                    "Caveats for segment {}, \"{}\":\n{}\n",
                    s.id,
                    s.name,
                    s.caveats
                        .iter()
                        .map(|c| format!("- {}", c.message))
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
                None => String::new(),
            };
            if doc.caveats.is_empty() {
                text.push_str("The run has no caveats.");
            } else {
                text.push_str("Caveats for the run:\n");
                text.push_str(
                    &doc.caveats
                        .iter()
                        .map(|c| format!("- {}", c.message))
                        .collect::<Vec<_>>()
                        .join("\n"),
                );
            }
            if !maps.is_empty() {
                text.push_str(&format!(
                    "\nMap trustworthiness (1 = neighbourhoods kept perfectly): {}.",
                    maps.join(", ")
                ));
            }
            text
        }
        Intent::KChoice => {
            let out = call(toolbox, record, Tool::KChoice, json!({})).await?;
            let doc = toolbox.run().document();
            match &doc.k_selection {
                Some(selection) => {
                    let candidates: Vec<String> = selection
                        .candidates
                        .iter()
                        .map(|c| {
                            format!(
                                "k={} {}",
                                c.k,
                                shown(&out, &format!("k_selection.{}.silhouette", c.k), &mut used)
                            )
                        })
                        .collect();
                    format!(
                        "The run has {} segments, chosen automatically ({}): {}. Mean silhouette \
                         of each k tried: {}.",
                        shown(&out, "k", &mut used),
                        doc.method,
                        selection.rule,
                        candidates.join(", ")
                    )
                }
                None => format!(
                    "The run has {} segments; {}.",
                    shown(&out, "k", &mut used),
                    out.content["rule"].as_str().unwrap_or_default()
                ),
            }
        }
    };
    Ok(Some((text, used)))
}

fn map_name(key: &str) -> &str {
    match key {
        "pca" => "PCA",
        "umap" => "UMAP",
        "tsne" => "t-SNE",
        other => other,
    }
}
