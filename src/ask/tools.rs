//! The read-only tools the agent (and the built-in answerer) answer from.
//!
//! Each tool has a name, a description for the model and a JSON schema of its arguments;
//! arguments are validated against the schema before the tool runs, so a tool only ever
//! sees arguments of the documented shape. A tool's result is JSON for the model plus the
//! [`Figure`]s it stated: the grounding check accepts a number in an answer only when it
//! matches one of them, and the answer's citations list the ones it used. Numbers in results
//! are given as their displayed text (`"18.2%"`), the form an answer should repeat.
//!
//! Only aggregates leave a tool: segment figures, and for customers found by similarity the
//! segment mix and what the group browses. Customer ids are never returned: they identify
//! people in the client's own systems, and the answer needs the group, not the person.
//! Strings that come from customer data (category and brand names) are returned inside
//! `"data"` fields that the system prompt tells the model to treat as quoted data.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::run::{SegmentView, StoredRun};
use super::similar;
use crate::narrative::figures::{Figure, Unit};
use crate::narrative::grounding::numbers_in;
use crate::settings::{AskSettings, Settings};
use crate::store::{ConfiguredStore, StoreError, StoreSettings};

/// The tools, a closed set: adding one is a compile-time-checked change here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// Every segment with its size and share.
    ListSegments,
    /// One segment's KPIs, description and caveats.
    SegmentProfile,
    /// Two segments' KPIs side by side.
    CompareSegments,
    /// One KPI across all segments, ranked.
    KpiTable,
    /// Customers whose browsing is like a description, as aggregates.
    SimilarCustomers,
    /// How k was chosen.
    KChoice,
    /// Map quality and every caveat of the run.
    MapCaveats,
    /// Tracked weeks with segment shares and share PSI (runs with `movement.json`).
    MovementWeeks,
    /// One tracked week's summary, share changes, top flows and alerts.
    MovementWeek,
}

impl Tool {
    /// Every tool, in the order offered to the model.
    pub const ALL: [Tool; 9] = [
        Tool::ListSegments,
        Tool::SegmentProfile,
        Tool::CompareSegments,
        Tool::KpiTable,
        Tool::SimilarCustomers,
        Tool::KChoice,
        Tool::MapCaveats,
        Tool::MovementWeeks,
        Tool::MovementWeek,
    ];

    /// The tools offered for `run`: the segment tools when it has segments, the movement
    /// tools when it has `movement.json`.
    pub fn offered(run: &StoredRun) -> Vec<Tool> {
        let movement = run.movement().is_some();
        let segments = !movement || run.document().k > 0;
        Tool::ALL
            .into_iter()
            .filter(|t| if t.is_movement() { movement } else { segments })
            .collect()
    }

    /// Whether it reads `movement.json`.
    pub fn is_movement(self) -> bool {
        matches!(self, Tool::MovementWeeks | Tool::MovementWeek)
    }

    /// The name the model calls it by.
    pub fn name(self) -> &'static str {
        match self {
            Tool::ListSegments => "list_segments",
            Tool::SegmentProfile => "segment_profile",
            Tool::CompareSegments => "compare_segments",
            Tool::KpiTable => "kpi_table",
            Tool::SimilarCustomers => "similar_customers",
            Tool::KChoice => "k_choice",
            Tool::MapCaveats => "map_caveats",
            Tool::MovementWeeks => "movement_weeks",
            Tool::MovementWeek => "movement_week",
        }
    }

    /// The tool named `name`, if any.
    pub fn from_name(name: &str) -> Option<Tool> {
        Tool::ALL.into_iter().find(|t| t.name() == name)
    }

    /// What it returns and when to use it, for the model.
    pub fn description(self) -> &'static str {
        match self {
            Tool::ListSegments => {
                "List every segment of the run with its id, name, size and share of customers."
            }
            Tool::SegmentProfile => {
                "One segment's description, size, share, stability, purchase and browsing KPIs \
                 (recency, frequency, monetary, revenue, conversion, over-indexed categories and \
                 brands) and the caveats that apply to it."
            }
            Tool::CompareSegments => {
                "Two segments' key KPIs side by side, with the differences between them."
            }
            Tool::KpiTable => {
                "One KPI for every segment, ranked from highest to lowest: use it for 'which \
                 segment is biggest/smallest/most at risk by ...' questions. recency_days is days \
                 since the last purchase (higher = more at risk of churning)."
            }
            Tool::SimilarCustomers => {
                "Find customers whose browsing resembles a free-text description (e.g. 'buys \
                 kitchen appliances from bosch'), through the vector store. Returns aggregates \
                 only: which segments they are in and what they browse, never individual \
                 customers."
            }
            Tool::KChoice => {
                "How the number of segments was chosen: the candidates tried, their scores and \
                 the rule that picked one."
            }
            Tool::MapCaveats => {
                "How trustworthy each map is, and every caveat of the run (map distances, weak \
                 structure, unstable or tiny segments, sampling)."
            }
            Tool::MovementWeeks => {
                "The weeks tracked by `segscope track`: each week's customers, every segment's \
                 share, the share PSI against the week before (stable, watch or alert) and how \
                 many alerts the week raised."
            }
            Tool::MovementWeek => {
                "What changed in one tracked week (default: the latest): its written summary, \
                 every segment's share change in percentage points, the largest flows between \
                 segments and each alert (anomaly, migration, drift, emerging segment) with its \
                 evidence. Use it for 'what changed this week?' and 'any alerts?'."
            }
        }
    }

    /// The JSON schema of its arguments, for this run (segment ids and KPI names are
    /// enumerated, so the schema itself rejects a segment the run does not have).
    pub fn schema(self, run: &StoredRun, ask: &AskSettings) -> Value {
        let ids: Vec<usize> = run.document().segments.iter().map(|s| s.id).collect();
        let segment = json!({"type": "integer", "enum": ids, "description": "segment id"});
        match self {
            Tool::MovementWeek => {
                let weeks = run
                    .movement()
                    .map(super::movement::weeks)
                    .unwrap_or_default();
                json!({
                    "type": "object",
                    "properties": {"week": {
                        "type": "string",
                        "enum": weeks,
                        "description": "ISO week label such as 2026-W41; default the latest"
                    }},
                    "additionalProperties": false
                })
            }
            Tool::ListSegments | Tool::KChoice | Tool::MapCaveats | Tool::MovementWeeks => json!({
                "type": "object", "properties": {}, "additionalProperties": false
            }),
            Tool::SegmentProfile => json!({
                "type": "object",
                "properties": {"segment": segment},
                "required": ["segment"],
                "additionalProperties": false
            }),
            Tool::CompareSegments => json!({
                "type": "object",
                "properties": {"a": segment, "b": segment},
                "required": ["a", "b"],
                "additionalProperties": false
            }),
            Tool::KpiTable => json!({
                "type": "object",
                "properties": {"kpi": {"type": "string", "enum": kpis(run)}},
                "required": ["kpi"],
                "additionalProperties": false
            }),
            Tool::SimilarCustomers => json!({
                "type": "object",
                "properties": {
                    "description": {"type": "string", "minLength": 1, "maxLength": 500},
                    "limit": {"type": "integer", "minimum": 1, "maximum": ask.similar_customers}
                },
                "required": ["description"],
                "additionalProperties": false
            }),
        }
    }
}

/// Why a tool call produced no result; the message goes back to the model as the tool's
/// result, so it says what to do differently.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The model named a tool that does not exist.
    #[error("there is no tool named '{name}'; the tools are: {known}")]
    UnknownTool {
        /// The name called.
        name: String,
        /// The tools there are.
        known: String,
    },
    /// The arguments are not a JSON object.
    #[error("the arguments of {tool} are not valid JSON: {message}")]
    MalformedArguments {
        /// Tool.
        tool: &'static str,
        /// Parser message.
        message: String,
    },
    /// The arguments break the tool's schema.
    #[error("the arguments of {tool} do not match its schema: {}", errors.join("; "))]
    InvalidArguments {
        /// Tool.
        tool: &'static str,
        /// Each violation.
        errors: Vec<String>,
    },
    /// The tool cannot answer for this run (no store data, no saved embedder, ...).
    #[error("{0}")]
    Unavailable(String),
    /// The vector store failed.
    #[error("the vector store failed: {0}")]
    Store(#[from] StoreError),
}

impl ToolError {
    /// True for errors in the call itself (the model's fault), as opposed to the run or the
    /// store: the agent counts these.
    pub fn is_invalid_call(&self) -> bool {
        matches!(
            self,
            ToolError::UnknownTool { .. }
                | ToolError::MalformedArguments { .. }
                | ToolError::InvalidArguments { .. }
        )
    }
}

/// What a tool returned.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    /// The tool.
    pub tool: Tool,
    /// The result for the model.
    pub content: Value,
    /// The figures the result states.
    pub figures: Vec<Figure>,
}

/// Collects the figures a result states and gives back their displays for the content.
#[derive(Debug, Default)]
pub(crate) struct FigureList {
    pub(crate) figures: Vec<Figure>,
}

impl FigureList {
    /// Records a figure and returns its display as a JSON string.
    pub(crate) fn add(&mut self, key: impl Into<String>, value: f64, unit: Unit) -> Value {
        let figure = Figure::new(key, value, unit);
        let display = Value::String(figure.display.clone());
        self.figures.push(figure);
        display
    }

    /// Records every number of a text segscope wrote from computed figures (a description,
    /// a caveat) as a figure under `key.N`, so an answer may repeat the text: the numbers
    /// were grounded when the text was written.
    pub(crate) fn quote(&mut self, key: &str, text: &str) -> Value {
        for (i, mention) in numbers_in(text).into_iter().enumerate() {
            let value = if mention.percent {
                mention.value / 100.0
            } else {
                mention.value
            };
            let display = if mention.percent && !mention.written.ends_with('%') {
                format!("{}%", mention.value)
            } else {
                mention.written.clone()
            };
            self.figures.push(Figure {
                key: format!("{key}.{}", i + 1),
                value,
                display,
            });
        }
        Value::String(text.to_string())
    }

    /// As [`FigureList::add`] for a value that may be absent (`null` then).
    pub(crate) fn maybe(
        &mut self,
        key: impl Into<String>,
        value: Option<f64>,
        unit: Unit,
    ) -> Value {
        value.map_or(Value::Null, |v| self.add(key, v, unit))
    }
}

/// Where the tools find the run's customers, when they need them.
#[derive(Debug, Clone)]
pub struct StoreAccess {
    /// The `[store]` settings to connect with.
    pub settings: StoreSettings,
    /// Where the embedded store's files are (`--data-dir`, default `<run>/store`).
    pub data_dir: PathBuf,
}

/// The tools over one run, with their compiled schemas.
pub struct Toolbox {
    run: StoredRun,
    ask: AskSettings,
    min_segment_size: usize,
    store_access: StoreAccess,
    store: OnceCell<ConfiguredStore>,
    validators: Vec<(Tool, Value, jsonschema::Validator)>,
}

impl std::fmt::Debug for Toolbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toolbox")
            .field("run", &self.run.dir())
            .finish_non_exhaustive()
    }
}

impl Toolbox {
    /// Compiles every tool's schema for `run`. The schemas are written here, so failing to
    /// compile one is a bug, reported as [`ToolError::Unavailable`] rather than a panic.
    ///
    /// Reads `settings.ask` (limits), `settings.narrative.min_segment_size` (segments
    /// smaller than this are not profiled individually) and `settings.store` (to reach the
    /// run's customers, the embedded store's files under `data_dir`).
    pub fn new(
        run: StoredRun,
        settings: &Settings,
        data_dir: PathBuf,
    ) -> Result<Toolbox, ToolError> {
        let ask = settings.ask.clone();
        let store_access = StoreAccess {
            settings: settings.store.clone(),
            data_dir,
        };
        let validators = Tool::offered(&run)
            .into_iter()
            .map(|tool| {
                let schema = tool.schema(&run, &ask);
                let validator = jsonschema::validator_for(&schema).map_err(|e| {
                    ToolError::Unavailable(format!("schema of {}: {e}", tool.name()))
                })?;
                Ok((tool, schema, validator))
            })
            .collect::<Result<Vec<_>, ToolError>>()?;
        Ok(Toolbox {
            run,
            ask,
            min_segment_size: settings.narrative.min_segment_size,
            store_access,
            store: OnceCell::new(),
            validators,
        })
    }

    /// The run the tools read.
    pub fn run(&self) -> &StoredRun {
        &self.run
    }

    /// Each tool with its description and schema, in offering order.
    pub fn specs(&self) -> impl Iterator<Item = (Tool, &Value)> {
        self.validators
            .iter()
            .map(|(tool, schema, _)| (*tool, schema))
    }

    /// Runs the tool `name` with `arguments` (JSON text as the model wrote it): unknown
    /// names, malformed JSON and arguments that break the schema are errors before
    /// anything runs.
    pub async fn call(&self, name: &str, arguments: &str) -> Result<ToolOutput, ToolError> {
        let Some((tool, _, validator)) = self.validators.iter().find(|(t, _, _)| t.name() == name)
        else {
            return Err(ToolError::UnknownTool {
                name: name.to_string(),
                known: self
                    .validators
                    .iter()
                    .map(|(t, _, _)| t.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let tool = *tool;
        // Models often send "" for a tool without arguments.
        let text = if arguments.trim().is_empty() {
            "{}"
        } else {
            arguments
        };
        let args: Value =
            serde_json::from_str(text).map_err(|e| ToolError::MalformedArguments {
                tool: tool.name(),
                message: e.to_string(),
            })?;
        let errors: Vec<String> = validator
            .iter_errors(&args)
            .map(|e| {
                let at = e.instance_path.to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{e} (at {at})")
                }
            })
            .collect();
        if !errors.is_empty() {
            return Err(ToolError::InvalidArguments {
                tool: tool.name(),
                errors,
            });
        }
        self.run_tool(tool, args).await
    }

    /// Runs a tool with arguments already known to match its schema (the built-in answerer
    /// calls tools this way).
    pub(crate) async fn run_tool(&self, tool: Tool, args: Value) -> Result<ToolOutput, ToolError> {
        let decode = |args: Value| -> Result<Args, ToolError> {
            serde_json::from_value(args).map_err(|e| ToolError::InvalidArguments {
                tool: tool.name(),
                errors: vec![e.to_string()],
            })
        };
        let mut figures = FigureList::default();
        let content = match tool {
            Tool::ListSegments => list_segments(&self.run, &mut figures),
            Tool::SegmentProfile => {
                let a = decode(args)?;
                let segment = self.segment(a.segment)?;
                if self.is_small(segment) {
                    small_segment(segment, self.min_segment_size, &mut figures)
                } else {
                    segment_profile(segment, &mut figures)
                }
            }
            Tool::CompareSegments => {
                let a = decode(args)?;
                let (x, y) = (self.segment(a.a)?, self.segment(a.b)?);
                if self.is_small(x) || self.is_small(y) {
                    let mut content = json!({
                        "a": small_segment(x, self.min_segment_size, &mut figures),
                        "b": small_segment(y, self.min_segment_size, &mut figures),
                    });
                    content["note"] = json!(
                        "At least one of the two segments is too small to profile individually, \
                         so only sizes and shares are compared."
                    );
                    content
                } else {
                    compare_segments(x, y, &mut figures)
                }
            }
            Tool::KpiTable => {
                let a = decode(args)?;
                kpi_table(&self.run, a.kpi.as_deref().unwrap_or("size"), &mut figures)?
            }
            Tool::SimilarCustomers => {
                let a = decode(args)?;
                let limit = a.limit.unwrap_or(self.ask.similar_customers);
                let description = a.description.unwrap_or_default();
                similar::similar_customers(self, &description, limit, &mut figures).await?
            }
            Tool::KChoice => k_choice(&self.run, &mut figures),
            Tool::MapCaveats => map_caveats(&self.run, &mut figures),
            Tool::MovementWeeks | Tool::MovementWeek => {
                let movement = self.run.movement().ok_or_else(|| {
                    ToolError::Unavailable(
                        "this run directory has no movement.json; run `segscope track` for \
                         weekly movement"
                            .into(),
                    )
                })?;
                if tool == Tool::MovementWeeks {
                    super::movement::movement_weeks(movement, &mut figures)
                } else {
                    let a = decode(args)?;
                    super::movement::movement_week(movement, a.week.as_deref(), &mut figures)?
                }
            }
        };
        Ok(ToolOutput {
            tool,
            content,
            figures: figures.figures,
        })
    }

    /// Whether `segment` is below `narrative.min_segment_size`: a handful of people is not
    /// profiled in detail (their KPIs would come close to describing individuals).
    pub fn is_small(&self, segment: &SegmentView) -> bool {
        segment.size < self.min_segment_size
    }

    fn segment(&self, id: Option<usize>) -> Result<&SegmentView, ToolError> {
        let id = id.unwrap_or(0);
        self.run.segment(id).ok_or_else(|| {
            ToolError::Unavailable(format!(
                "segment {id} does not exist; this run has segments 1 to {}",
                self.run.document().k
            ))
        })
    }

    /// The run's vector store, opened on first use (only similarity needs it, and the
    /// embedded store allows one process at a time).
    pub(crate) async fn store(
        &self,
        spec: &crate::store::CollectionSpec,
    ) -> Result<&ConfiguredStore, ToolError> {
        self.store
            .get_or_try_init(|| async {
                ConfiguredStore::open(
                    &self.store_access.settings,
                    &self.store_access.data_dir,
                    spec,
                )
                .await
            })
            .await
            .map_err(ToolError::from)
    }

    pub(crate) fn store_access(&self) -> &StoreAccess {
        &self.store_access
    }
}

/// Every tool's arguments; the schema decides which are present.
#[derive(Debug, Deserialize)]
struct Args {
    segment: Option<usize>,
    a: Option<usize>,
    b: Option<usize>,
    kpi: Option<String>,
    description: Option<String>,
    limit: Option<usize>,
    week: Option<String>,
}

/// Business KPIs a run may have, by the name `kpi_table` takes, with their unit.
const BUSINESS_KPIS: [(&str, Unit); 10] = [
    ("recency_days", Unit::Number),
    ("frequency", Unit::Number),
    ("monetary", Unit::Number),
    ("revenue", Unit::Number),
    ("revenue_share", Unit::Share),
    ("average_order_value", Unit::Number),
    ("conversion_rate", Unit::Share),
    ("buyer_share", Unit::Share),
    ("buyers", Unit::Count),
    ("browsers", Unit::Count),
];

/// The KPI names `kpi_table` accepts for this run.
pub fn kpis(run: &StoredRun) -> Vec<String> {
    let mut names = vec!["size".to_string(), "share".to_string()];
    let segments = &run.document().segments;
    if segments.iter().any(|s| s.stability.is_some()) {
        names.push("stability".into());
    }
    if segments.iter().any(|s| s.kpis.business.is_some()) {
        names.extend(BUSINESS_KPIS.iter().map(|(n, _)| n.to_string()));
    } else if let Some(first) = segments.first() {
        names.extend(
            first
                .kpis
                .features
                .iter()
                .map(|f| format!("feature.{}", f.feature)),
        );
    }
    names
}

/// A KPI's value for a segment, its figure key and unit. Recency, frequency and monetary
/// are the buyers' medians (robust to a few extreme customers, as the narrator uses them).
pub fn kpi_value(segment: &SegmentView, kpi: &str) -> Option<(String, f64, Unit)> {
    let id = segment.id;
    let b = segment.kpis.business.as_ref();
    let (key, value, unit) = match kpi {
        "size" => ("size".to_string(), Some(segment.size as f64), Unit::Count),
        "share" => ("share".into(), Some(segment.share), Unit::Share),
        "stability" => ("stability".into(), segment.stability, Unit::Number),
        "recency_days" => (
            "recency_days.median".into(),
            b.and_then(|b| b.recency_days).map(|s| s.median),
            Unit::Number,
        ),
        "frequency" => (
            "frequency.median".into(),
            b.and_then(|b| b.frequency).map(|s| s.median),
            Unit::Number,
        ),
        "monetary" => (
            "monetary.median".into(),
            b.and_then(|b| b.monetary).map(|s| s.median),
            Unit::Number,
        ),
        "revenue" => ("revenue".into(), b.map(|b| b.revenue), Unit::Number),
        "revenue_share" => (
            "revenue_share".into(),
            b.map(|b| b.revenue_share),
            Unit::Share,
        ),
        "average_order_value" => (
            "average_order_value".into(),
            b.and_then(|b| b.average_order_value),
            Unit::Number,
        ),
        "conversion_rate" => (
            "conversion_rate".into(),
            b.and_then(|b| b.conversion_rate),
            Unit::Share,
        ),
        "buyer_share" => ("buyer_share".into(), b.map(|b| b.buyer_share), Unit::Share),
        "buyers" => ("buyers".into(), b.map(|b| b.buyers as f64), Unit::Count),
        "browsers" => ("browsers".into(), b.map(|b| b.browsers as f64), Unit::Count),
        other => {
            let column = other.strip_prefix("feature.")?;
            (
                format!("feature.{column}.mean"),
                segment.feature(column).map(|f| f.mean),
                Unit::Number,
            )
        }
    };
    Some((format!("segment.{id}.{key}"), value?, unit))
}

/// What a KPI means, for tool results and built-in answers.
pub fn kpi_label(kpi: &str) -> String {
    match kpi {
        "size" => "customers".into(),
        "share" => "share of customers".into(),
        "stability" => "stability under resampling (mean best Jaccard)".into(),
        "recency_days" => "median days since the last purchase (buyers)".into(),
        "frequency" => "median orders per buyer".into(),
        "monetary" => "median net revenue per buyer".into(),
        "revenue" => "net revenue".into(),
        "revenue_share" => "share of all revenue".into(),
        "average_order_value" => "average order value".into(),
        "conversion_rate" => "share of product views that end in a purchase".into(),
        "buyer_share" => "share of customers who bought".into(),
        "buyers" => "customers who bought".into(),
        "browsers" => "customers who browsed".into(),
        other => match other.strip_prefix("feature.") {
            Some(column) => format!("mean {column}"),
            None => other.to_string(),
        },
    }
}

fn list_segments(run: &StoredRun, figures: &mut FigureList) -> Value {
    let doc = run.document();
    let segments: Vec<Value> = doc
        .segments
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "name": s.name,
                "size": figures.add(format!("segment.{}.size", s.id), s.size as f64, Unit::Count),
                "share": figures.add(format!("segment.{}.share", s.id), s.share, Unit::Share),
            })
        })
        .collect();
    let mut content = json!({
        "run": run.citation(),
        "k": figures.add("k", doc.k as f64, Unit::Count),
        "customers": figures.add("n_customers", doc.n_customers as f64, Unit::Count),
        "segments": segments,
    });
    if let Some(noise) = &doc.noise {
        content["not_in_any_segment"] = json!({
            "size": figures.add("noise.size", noise.size as f64, Unit::Count),
            "share": figures.add("noise.share", noise.share, Unit::Share),
        });
    }
    content
}

fn interests(
    id: usize,
    kind: &str,
    list: &[super::run::InterestView],
    figures: &mut FigureList,
) -> Value {
    list.iter()
        .enumerate()
        .map(|(i, interest)| {
            let key = format!("segment.{id}.{kind}.{}", i + 1);
            json!({
                "data": interest.name,
                "lift": figures.add(format!("{key}.lift"), interest.lift, Unit::Number),
                "segment_share": figures.add(format!("{key}.segment_share"), interest.segment_share, Unit::Share),
                "base_share": figures.add(format!("{key}.base_share"), interest.base_share, Unit::Share),
            })
        })
        .collect()
}

/// What is said about a segment below the minimum size: who it is, how many, and why no
/// more.
fn small_segment(s: &SegmentView, min_size: usize, figures: &mut FigureList) -> Value {
    let id = s.id;
    json!({
        "id": id,
        "name": s.name,
        "size": figures.add(format!("segment.{id}.size"), s.size as f64, Unit::Count),
        "share": figures.add(format!("segment.{id}.share"), s.share, Unit::Share),
        "minimum_size": figures.add("narrative.min_segment_size", min_size as f64, Unit::Count),
        "note": "This segment is smaller than narrative.min_segment_size: segscope does not \
                 profile segments this small individually.",
    })
}

fn segment_profile(s: &SegmentView, figures: &mut FigureList) -> Value {
    let id = s.id;
    let key = |k: &str| format!("segment.{id}.{k}");
    let mut content = json!({
        "id": id,
        "name": s.name,
        "description": figures.quote(&key("description"), &s.description),
        "size": figures.add(key("size"), s.size as f64, Unit::Count),
        "share": figures.add(key("share"), s.share, Unit::Share),
        "stability": figures.maybe(key("stability"), s.stability, Unit::Number),
        "caveats": s.caveats.iter().enumerate()
            .map(|(i, c)| figures.quote(&key(&format!("caveat.{}", i + 1)), &c.message))
            .collect::<Vec<_>>(),
    });
    if let Some(b) = &s.kpis.business {
        let summary = |name: &str, v: Option<super::run::SummaryView>, figures: &mut FigureList| {
            json!({
                "median": figures.maybe(key(&format!("{name}.median")), v.map(|v| v.median), Unit::Number),
                "mean": figures.maybe(key(&format!("{name}.mean")), v.map(|v| v.mean), Unit::Number),
            })
        };
        content["purchases"] = json!({
            "buyers": figures.add(key("buyers"), b.buyers as f64, Unit::Count),
            "buyer_share": figures.add(key("buyer_share"), b.buyer_share, Unit::Share),
            "days_since_last_purchase": summary("recency_days", b.recency_days, figures),
            "orders": summary("frequency", b.frequency, figures),
            "net_revenue_per_buyer": summary("monetary", b.monetary, figures),
            "revenue": figures.add(key("revenue"), b.revenue, Unit::Number),
            "revenue_share": figures.add(key("revenue_share"), b.revenue_share, Unit::Share),
            "average_order_value": figures.maybe(key("average_order_value"), b.average_order_value, Unit::Number),
        });
        content["browsing"] = json!({
            "browsers": figures.add(key("browsers"), b.browsers as f64, Unit::Count),
            "conversion_rate": figures.maybe(key("conversion_rate"), b.conversion_rate, Unit::Share),
            "over_indexed_categories": interests(id, "top_categories", &b.top_categories, figures),
            "over_indexed_brands": interests(id, "top_brands", &b.top_brands, figures),
        });
    } else {
        let features: Vec<Value> = s
            .kpis
            .features
            .iter()
            .map(|f| {
                let k = |stat: &str| key(&format!("feature.{}.{stat}", f.feature));
                json!({
                    "feature": f.feature,
                    "mean": figures.add(k("mean"), f.mean, Unit::Number),
                    "median": figures.add(k("median"), f.median, Unit::Number),
                    "standardized_difference": figures.add(k("standardized_difference"), f.standardized_difference, Unit::StandardizedDifference),
                })
            })
            .collect();
        content["features"] = Value::Array(features);
    }
    content
}

/// KPIs compared between two segments.
const COMPARED: [&str; 8] = [
    "size",
    "share",
    "recency_days",
    "frequency",
    "monetary",
    "revenue_share",
    "conversion_rate",
    "buyer_share",
];

fn compare_segments(a: &SegmentView, b: &SegmentView, figures: &mut FigureList) -> Value {
    let mut names: Vec<String> = COMPARED.iter().map(|s| s.to_string()).collect();
    if a.kpis.business.is_none() {
        names.truncate(2);
        names.extend(
            a.kpis
                .features
                .iter()
                .map(|f| format!("feature.{}", f.feature)),
        );
    }
    let rows: Vec<Value> = names
        .iter()
        .filter_map(|kpi| {
            let (ka, va, unit) = kpi_value(a, kpi)?;
            let (kb, vb, _) = kpi_value(b, kpi)?;
            let mut row = json!({
                "kpi": kpi,
                "meaning": kpi_label(kpi),
                "a": figures.add(ka, va, unit),
                "b": figures.add(kb, vb, unit),
            });
            let diff_unit = if unit == Unit::Count {
                Unit::Count
            } else {
                unit
            };
            row["a_minus_b"] = figures.add(
                format!("compare.{}.{}.{kpi}.difference", a.id, b.id),
                va - vb,
                diff_unit,
            );
            if vb != 0.0 && unit != Unit::Share {
                row["a_over_b"] = figures.add(
                    format!("compare.{}.{}.{kpi}.ratio", a.id, b.id),
                    va / vb,
                    Unit::Number,
                );
            }
            Some(row)
        })
        .collect();
    json!({
        "a": {"id": a.id, "name": a.name},
        "b": {"id": b.id, "name": b.name},
        "kpis": rows,
    })
}

fn kpi_table(run: &StoredRun, kpi: &str, figures: &mut FigureList) -> Result<Value, ToolError> {
    let mut rows: Vec<(&SegmentView, String, f64, Unit)> = run
        .document()
        .segments
        .iter()
        .filter_map(|s| kpi_value(s, kpi).map(|(key, v, unit)| (s, key, v, unit)))
        .collect();
    if rows.is_empty() {
        return Err(ToolError::Unavailable(format!(
            "no segment of this run has the KPI {kpi}"
        )));
    }
    // Highest first; ties by id so the order never depends on the input order.
    rows.sort_by(|x, y| y.2.total_cmp(&x.2).then(x.0.id.cmp(&y.0.id)));
    let table: Vec<Value> = rows
        .into_iter()
        .enumerate()
        .map(|(rank, (s, key, v, unit))| {
            json!({"rank": rank + 1, "id": s.id, "name": s.name, "value": figures.add(key, v, unit)})
        })
        .collect();
    Ok(json!({
        "kpi": kpi,
        "meaning": kpi_label(kpi),
        "order": "highest first",
        "segments": table,
    }))
}

fn k_choice(run: &StoredRun, figures: &mut FigureList) -> Value {
    let doc = run.document();
    let k = figures.add("k", doc.k as f64, Unit::Count);
    match &doc.k_selection {
        Some(selection) => {
            let candidates: Vec<Value> = selection
                .candidates
                .iter()
                .map(|c| {
                    let key = |m: &str| format!("k_selection.{}.{m}", c.k);
                    let mut row = json!({
                        "k": c.k,
                        "silhouette": figures.add(key("silhouette"), c.silhouette, Unit::Number),
                        "calinski_harabasz": figures.add(key("calinski_harabasz"), c.calinski_harabasz, Unit::Number),
                        "davies_bouldin": figures.add(key("davies_bouldin"), c.davies_bouldin, Unit::Number),
                    });
                    if let Some(bic) = c.bic {
                        row["bic"] = figures.add(key("bic"), bic, Unit::Number);
                    }
                    row
                })
                .collect();
            json!({
                "method": doc.method,
                "k": k,
                "chosen_automatically": true,
                "rule": selection.rule,
                "candidates": candidates,
            })
        }
        None => json!({
            "method": doc.method,
            "k": k,
            "chosen_automatically": false,
            "rule": if doc.method == "hdbscan" {
                "HDBSCAN finds the number of segments from the density of the data"
            } else {
                "k was fixed by the settings (--k N), not chosen from the data"
            },
        }),
    }
}

fn map_caveats(run: &StoredRun, figures: &mut FigureList) -> Value {
    let doc = run.document();
    let maps: BTreeMap<&str, Value> = doc
        .maps
        .iter()
        .map(|(name, map)| {
            let mut v = json!({
                "trustworthiness": figures.add(format!("maps.{name}.trustworthiness"), map.trustworthiness, Unit::Number),
            });
            if let Some(ratios) = &map.explained_variance_ratio {
                v["explained_variance_ratio"] = ratios
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        figures.add(
                            format!("maps.{name}.explained_variance_ratio.{}", i + 1),
                            *r,
                            Unit::Share,
                        )
                    })
                    .collect();
            }
            (name.as_str(), v)
        })
        .collect();
    json!({
        "maps": maps,
        "silhouette": figures.maybe("quality.silhouette", doc.quality.silhouette, Unit::Number),
        "caveats": doc.caveats.iter().enumerate()
            .map(|(i, c)| json!({"kind": c.kind, "message": figures.quote(&format!("caveat.{}", i + 1), &c.message)}))
            .collect::<Vec<_>>(),
    })
}
