//! The `segscope` command line: raw arguments become a validated request before anything
//! runs, and every failure becomes one line and a documented exit status.
//!
//! Exit status: 0 success; 1 internal error (a bug or an unexpected library failure);
//! 2 usage error (unknown flag, bad value); 3 the input data cannot support the run (the
//! message names file, line and column); 4 configuration error; 5 output cannot be written;
//! 6 an outside service failed (embedding API, chat model, Qdrant server, or the embedded
//! store's files).

use std::path::PathBuf;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use clap::{ArgAction, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::analysis::progress::Progress;
use crate::ask::agent::AgentError;
use crate::ask::{Agent, AskError, RunError, StoredRun, Toolbox, builtin};
use crate::demo::{DemoError, DemoRequest, MIN_DEMO_CUSTOMERS, WEEKLY_RUN_ID, run_demo};
use crate::domain::{MapMethod, Method, Scaling};
use crate::ingest::FeatureTableSpec;
use crate::llm::ChatBackend;
use crate::pipeline::{
    PipelineError, SegmentRequest, StoreSegmentRequest, run_segment, run_store_segment,
};
use crate::report::{ReportError, SegmentsDocument};
use crate::settings::{KSetting, Settings, SettingsError};

/// See, trust and talk about customer segments.
#[derive(Debug, Parser)]
#[command(name = "segscope", version, about, long_about = None)]
pub struct Cli {
    /// More log output on stderr (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Worker threads (0 = one per core); overrides run.threads. Results do not depend on it.
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Segment a numeric feature table (--features) or store data (--transactions and/or
    /// --events) and write segments.json, assignments.csv and report.html.
    Segment(SegmentArgs),
    /// Generate a synthetic store with planted segments and run the whole pipeline on it.
    Demo(DemoArgs),
    /// Answer a plain-language question about a finished run, citing the figures used.
    Ask(AskArgs),
    /// Serve the runs in a data directory over HTTP: health, metrics and the JSON API.
    Serve(ServeArgs),
    /// Track store data week by week: stable segments, transitions, drift and alerts, written
    /// to movement.json and weekly_assignments.csv.
    Track(TrackArgs),
}

/// `segscope track`.
#[derive(Debug, clap::Args)]
pub struct TrackArgs {
    /// Transactions in the Online Retail II layout (CSV, optionally gzip-compressed).
    #[arg(long, value_name = "T.csv", required_unless_present = "events")]
    pub transactions: Option<PathBuf>,
    /// Browsing events in the REES46 layout (CSV, optionally gzip-compressed).
    #[arg(long, value_name = "E.csv")]
    pub events: Option<PathBuf>,
    /// Output directory (created if missing; files in it are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// ISO weeks to track, inclusive (e.g. 2026-W36..2026-W43); default: every week of the
    /// data from the first whose browsing window (track.browsing_window_weeks) is complete.
    /// Data after the last week is ignored.
    #[arg(long, value_name = "FROM..TO")]
    pub weeks: Option<crate::track::WeekRange>,
    /// First weeks the segments are fitted on (overrides track.fit_weeks).
    #[arg(long, value_name = "N")]
    pub fit_weeks: Option<usize>,
    /// Maps to place every week on, comma separated: pca (always drawn) and umap (fitted on
    /// the fit weeks, later weeks placed by its transform).
    #[arg(long, value_name = "pca,umap", value_delimiter = ',')]
    pub maps: Option<Vec<MapMethod>>,
    /// Refit the segments every N weeks after the fit, keeping ids stable (overrides
    /// track.refit_every; 0 = never).
    #[arg(long, value_name = "N")]
    pub refit_every: Option<usize>,
    /// Number of segments: auto or a number.
    #[arg(long, value_name = "auto|N")]
    pub k: Option<KSetting>,
    /// Seed of every random choice.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Settings file (TOML) overriding config/default.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `segscope ask`.
#[derive(Debug, clap::Args)]
pub struct AskArgs {
    /// The question, in plain language.
    #[arg(value_name = "QUESTION")]
    pub question: String,
    /// The run's output directory (of `segscope segment` or `segscope track`, or
    /// `out/demo/runs/demo` after `segscope demo`).
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// Settings file (TOML) overriding config/default.toml (e.g. `[llm] provider = "openai"`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the run's vector store lives (default: DIR/store, or D/store for a run in a
    /// service data directory D, i.e. DIR = D/runs/<run id>, as `segscope demo` writes).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print the answer, its citations and what happened on the way as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `segscope serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    pub bind: std::net::SocketAddr,
    /// Data directory: runs are served from DIR/runs/<run id>/, the embedded store is DIR/store.
    #[arg(long, value_name = "DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Settings file (TOML), layered over the defaults.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `segscope demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Output directory, laid out for `segscope serve --data-dir DIR`: the generated store
    /// goes to DIR/data, the segment run to DIR/runs/demo, the weekly movement to
    /// DIR/runs/demo-weekly.
    #[arg(long, value_name = "DIR", default_value = "out/demo")]
    pub out: PathBuf,
    /// Customers in the synthetic store.
    #[arg(long, value_name = "N", default_value_t = 5_000)]
    pub customers: usize,
    /// Seed of every random choice (the store's and the run's).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Settings file (TOML) overriding config/default.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the vector store and embedding cache live (default: DIR/store).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `segscope segment`.
#[derive(Debug, clap::Args)]
pub struct SegmentArgs {
    /// CSV with an id column, numeric feature columns and optionally a label column.
    #[arg(
        long,
        value_name = "F.csv",
        conflicts_with_all = ["transactions", "events"],
        required_unless_present_any = ["transactions", "events"],
        requires = "id_column"
    )]
    pub features: Option<PathBuf>,
    /// Column holding the customer id (feature tables).
    #[arg(long, value_name = "ID")]
    pub id_column: Option<String>,
    /// Transactions in the Online Retail II layout (CSV, optionally gzip-compressed).
    #[arg(long, value_name = "T.csv")]
    pub transactions: Option<PathBuf>,
    /// Browsing events in the REES46 layout (CSV, optionally gzip-compressed).
    #[arg(long, value_name = "E.csv")]
    pub events: Option<PathBuf>,
    /// Ignore store data after this instant and measure recency from it (a date such as
    /// 2026-11-01, or an RFC 3339 instant; dates mean the end of that day, UTC).
    #[arg(long, value_name = "DATE", value_parser = crate::pipeline::parse_as_of)]
    pub as_of: Option<DateTime<Utc>>,
    /// Where the vector store and embedding cache live (store data; default: OUT/store).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Column with known classes, used only to check the segments (ARI, NMI, map separation).
    #[arg(long, value_name = "L")]
    pub label_column: Option<String>,
    /// Output directory (created if missing; files in it are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Number of segments: auto or a number.
    #[arg(long, value_name = "auto|N")]
    pub k: Option<KSetting>,
    /// Clustering method: kmeans, gmm or hdbscan.
    #[arg(long, value_name = "kmeans|gmm|hdbscan")]
    pub method: Option<Method>,
    /// Maps to draw, comma separated.
    #[arg(long, value_name = "pca,umap,tsne", value_delimiter = ',')]
    pub maps: Option<Vec<MapMethod>>,
    /// Feature scaling: standard, robust or none.
    #[arg(long, value_name = "standard|robust|none")]
    pub scale: Option<Scaling>,
    /// Seed of every random choice.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Settings file (TOML) overriding config/default.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Field delimiter of the feature table (one character, e.g. ';').
    #[arg(long, value_name = "C")]
    pub delimiter: Option<String>,
}

/// A failure, with the exit status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Settings could not be loaded or are invalid.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The run failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The thread pool or async runtime could not be set up.
    #[error("cannot start worker threads: {0}")]
    Threads(String),
    /// Arguments that parse but do not make sense together.
    #[error("{0}")]
    Usage(String),
    /// The demo's store could not be generated, or its run failed.
    #[error(transparent)]
    Demo(#[from] DemoError),
    /// A question could not be answered.
    #[error(transparent)]
    Ask(#[from] AskError),
    /// The chat model could not be set up or failed (after its retries).
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The service could not start or failed.
    #[error(transparent)]
    Serve(#[from] crate::serve::ServeError),
    /// Weekly tracking failed.
    #[error(transparent)]
    Track(#[from] crate::track::TrackError),
}

impl CliError {
    /// The documented exit status.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Settings(_) => 4,
            CliError::Usage(_) => 2,
            CliError::Demo(DemoError::Generate { .. }) => 5,
            CliError::Track(crate::track::TrackError::Pipeline(e))
            | CliError::Pipeline(e)
            | CliError::Demo(
                DemoError::Pipeline(e) | DemoError::Track(crate::track::TrackError::Pipeline(e)),
            ) => match e {
                PipelineError::Report(ReportError::Io { .. }) => 5,
                PipelineError::ChatSettings(_) => 4,
                PipelineError::Embedding(_) | PipelineError::Store(_) => 6,
                e if e.is_input_problem() => 3,
                _ => 1,
            },
            CliError::Track(_) => 3,
            // The demo's own weeks not fitting its own store is a bug, not bad input.
            CliError::Demo(DemoError::Track(_)) => 1,
            CliError::Threads(_) => 1,
            CliError::Ask(e) | CliError::Agent(AgentError::Ask(e)) => match e {
                AskError::Run(RunError::Io { .. }) => 5,
                AskError::Run(_) => 3,
                AskError::Tools(_) | AskError::Prompt(_) => 1,
                AskError::Model(_) => 4,
            },
            CliError::Agent(AgentError::Model(_)) => 6,
            CliError::Serve(crate::serve::ServeError::Bind { .. }) => 2,
            CliError::Serve(
                crate::serve::ServeError::DataDir { .. } | crate::serve::ServeError::Watch(_),
            ) => 5,
            CliError::Serve(
                crate::serve::ServeError::Io(_)
                | crate::serve::ServeError::Threads(_)
                | crate::serve::ServeError::Slack(_),
            ) => 1,
        }
    }
}

/// What `segment` was asked to do.
#[derive(Debug, Clone)]
pub enum SegmentCommand {
    /// A numeric feature table.
    Table(SegmentRequest),
    /// Transactions and/or browsing events.
    Store(StoreSegmentRequest),
}

/// Settings layered (defaults, `--config`, environment), then the flags applied last.
fn layered_settings(args: &SegmentArgs, threads: Option<usize>) -> Result<Settings, CliError> {
    let mut settings = Settings::load(args.config.as_deref())?;
    if let Some(k) = args.k {
        settings.segment.k = k;
    }
    if let Some(method) = args.method {
        settings.segment.method = method;
    }
    if let Some(maps) = &args.maps {
        settings.segment.maps = maps.clone();
    }
    if let Some(scale) = args.scale {
        settings.segment.scale = scale;
    }
    if let Some(seed) = args.seed {
        settings.run.seed = seed;
    }
    if let Some(threads) = threads {
        settings.run.threads = threads;
    }
    if let Some(delimiter) = &args.delimiter {
        settings.input.delimiter = if delimiter == "\\t" {
            "\t".into()
        } else {
            delimiter.clone()
        };
    }
    settings.validate()?;
    Ok(settings)
}

/// Turns `segment` arguments into a validated request: settings layered, flags applied last.
pub fn segment_request(
    args: &SegmentArgs,
    threads: Option<usize>,
) -> Result<SegmentCommand, CliError> {
    let settings = layered_settings(args, threads)?;
    match (&args.features, &args.id_column) {
        (Some(features), Some(id_column)) => Ok(SegmentCommand::Table(SegmentRequest {
            features: features.clone(),
            table: FeatureTableSpec {
                id_column: id_column.clone(),
                label_column: args.label_column.clone(),
                delimiter: settings.delimiter_byte(),
            },
            out_dir: args.out.clone(),
            settings,
        })),
        // clap guarantees --features comes with --id-column and excludes store inputs.
        _ => Ok(SegmentCommand::Store(StoreSegmentRequest {
            transactions: args.transactions.clone(),
            events: args.events.clone(),
            as_of: args.as_of,
            labels: None,
            data_dir: args
                .data_dir
                .clone()
                .unwrap_or_else(|| args.out.join("store")),
            out_dir: args.out.clone(),
            settings,
        })),
    }
}

/// A worker pool of the configured size; results do not depend on it.
fn thread_pool(threads: usize) -> Result<rayon::ThreadPool, CliError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| CliError::Threads(e.to_string()))
}

/// The async runtime for outside services (embedding API, Qdrant).
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Threads(e.to_string()))
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    init_logging(cli.verbose);
    let progress = BarProgress::default();
    match &cli.command {
        Command::Segment(args) => match segment_request(args, cli.threads)? {
            SegmentCommand::Table(request) => {
                let pool = thread_pool(request.settings.run.threads)?;
                let run = pool.install(|| run_segment(&request, &progress))?;
                print_summary(&run.document, &run.out_dir);
                Ok(())
            }
            SegmentCommand::Store(request) => {
                let pool = thread_pool(request.settings.run.threads)?;
                let runtime = runtime()?;
                let handle = runtime.handle().clone();
                let run = pool.install(|| run_store_segment(&request, &handle, &progress))?;
                print_summary(&run.document, &run.out_dir);
                Ok(())
            }
        },
        Command::Ask(args) => ask(args),
        Command::Track(args) => track(args, cli.threads, &progress),
        Command::Demo(args) => {
            let mut settings = Settings::load(args.config.as_deref())?;
            if let Some(seed) = args.seed {
                settings.run.seed = seed;
            }
            if let Some(threads) = cli.threads {
                settings.run.threads = threads;
            }
            settings.validate()?;
            if args.customers < MIN_DEMO_CUSTOMERS {
                return Err(CliError::Usage(format!(
                    "--customers {}: the demo plants six segments and needs at least {MIN_DEMO_CUSTOMERS} customers",
                    args.customers
                )));
            }
            let request = DemoRequest {
                customers: args.customers,
                data_dir: args
                    .data_dir
                    .clone()
                    .unwrap_or_else(|| args.out.join("store")),
                out_dir: args.out.clone(),
                settings,
            };
            let pool = thread_pool(request.settings.run.threads)?;
            let runtime = runtime()?;
            let handle = runtime.handle().clone();
            let demo = pool.install(|| run_demo(&request, &handle, &progress))?;
            println!("{}", demo.summary_table());
            print_summary(&demo.run.document, &demo.run.out_dir);
            println!(
                "weekly movement: {}\non the dashboard: segscope serve --data-dir {}, then open http://127.0.0.1:8080/runs/{WEEKLY_RUN_ID}/movement",
                demo.weekly.out_dir.join("movement.json").display(),
                args.out.display()
            );
            Ok(())
        }
        Command::Serve(args) => {
            let settings = Settings::load(args.config.as_deref())?;
            if settings.serve.token.is_empty() && !args.bind.ip().is_loopback() {
                tracing::warn!(
                    bind = %args.bind,
                    "serving on a non-loopback address without serve.token: anyone who can reach it can read every run"
                );
            }
            let watch = &settings.serve.watch;
            if watch.enabled {
                println!(
                    "segscope serve: watching {} for weekly transactions*/events* files (run {}, every {}s)",
                    watch.folder_in(&args.data_dir).display(),
                    watch.run_id,
                    watch.poll_secs
                );
            }
            let runtime = runtime()?;
            runtime.block_on(async {
                let state = crate::serve::AppState::new(settings, args.data_dir.clone())?;
                crate::serve::serve(state, args.bind, crate::serve::shutdown_signal(), |bound| {
                    println!("segscope serve: listening on http://{bound}")
                })
                .await
            })?;
            Ok(())
        }
    }
}

/// Turns `track` arguments into a validated request: settings layered, flags applied last.
pub fn track_request(
    args: &TrackArgs,
    threads: Option<usize>,
) -> Result<crate::track::TrackRequest, CliError> {
    let mut settings = Settings::load(args.config.as_deref())?;
    if let Some(n) = args.fit_weeks {
        if n == 0 {
            return Err(CliError::Usage(
                "--fit-weeks 0: the segments need at least one week to be fitted on".into(),
            ));
        }
        settings.track.fit_weeks = n;
    }
    if let Some(n) = args.refit_every {
        settings.track.refit_every = n;
    }
    let maps = args
        .maps
        .clone()
        .unwrap_or_else(|| settings.track.maps.clone());
    // The run records the maps it drew (movement.json's thresholds, run.json's settings).
    settings.track.maps.clone_from(&maps);
    if let Some(k) = args.k {
        settings.segment.k = k;
    }
    if let Some(seed) = args.seed {
        settings.run.seed = seed;
    }
    if let Some(threads) = threads {
        settings.run.threads = threads;
    }
    settings.validate()?;
    Ok(crate::track::TrackRequest {
        transactions: args.transactions.iter().cloned().collect(),
        events: args.events.iter().cloned().collect(),
        weeks: args.weeks,
        maps,
        settings,
        out_dir: args.out.clone(),
    })
}

/// `segscope track`: the run, then one line per alert kind and where the files are.
fn track(args: &TrackArgs, threads: Option<usize>, progress: &BarProgress) -> Result<(), CliError> {
    let request = track_request(args, threads)?;
    let pool = thread_pool(request.settings.run.threads)?;
    let runtime = runtime()?;
    let handle = runtime.handle().clone();
    let run = pool.install(|| crate::track::run_track(&request, &handle, progress))?;
    let d = &run.document;
    println!(
        "{} weeks ({}..{}), {} segments fitted on {} week(s), {} alert(s)",
        d.weeks.len(),
        d.weeks.first().map(ToString::to_string).unwrap_or_default(),
        d.weeks.last().map(ToString::to_string).unwrap_or_default(),
        d.segments.len(),
        d.fit_weeks.len(),
        d.alerts.len()
    );
    for alert in &d.alerts {
        println!(
            "  {} {:?} segment {} ({} customers)",
            alert.week,
            alert.kind,
            alert
                .segment
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            alert.customers.len()
        );
    }
    println!("wrote {}", run.out_dir.join("movement.json").display());
    Ok(())
}

/// Where a run's vector store is when `--data-dir` is not given: beside the runs of a
/// service data directory (`D/runs/<id>` → `D/store`, the layout `serve` reads and `demo`
/// writes), otherwise inside the run folder (`segment --out DIR` → `DIR/store`).
fn default_store_dir(run: &std::path::Path) -> PathBuf {
    match run.parent() {
        Some(runs) if runs.file_name().is_some_and(|name| name == "runs") => runs
            .parent()
            .map_or_else(|| PathBuf::from("store"), |d| d.join("store")),
        _ => run.join("store"),
    }
}

/// `segscope ask`: the run loaded, the configured backend answering (the built-in answerer
/// or the agent with a chat model), the answer printed with its citations.
fn ask(args: &AskArgs) -> Result<(), CliError> {
    let settings = Settings::load(args.config.as_deref())?;
    let run = StoredRun::open(&args.run).map_err(AskError::from)?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| default_store_dir(&args.run));
    let toolbox = Toolbox::new(run, &settings, data_dir).map_err(AskError::from)?;
    let backend =
        ChatBackend::from_settings(&settings.llm, settings.run.seed).map_err(AskError::Model)?;
    let runtime = runtime()?;
    let answer = match backend {
        ChatBackend::Builtin => runtime.block_on(builtin::answer(&toolbox, &args.question)),
        ChatBackend::OpenAi(model) => {
            let agent = Agent::new(model, toolbox, &settings.ask)?;
            runtime.block_on(agent.answer(&args.question, None))?
        }
    };
    if args.json {
        // Plain data with string keys: serialising cannot fail (non-finite numbers become
        // null), so the rendered text is only a formal fallback.
        let text = serde_json::to_string_pretty(&answer).unwrap_or_else(|_| answer.render());
        println!("{text}");
    } else {
        println!("{}", answer.render());
    }
    Ok(())
}

/// The one line every `segment` and `demo` run ends with.
fn print_summary(doc: &SegmentsDocument, out_dir: &std::path::Path) {
    let silhouette = doc
        .quality
        .silhouette
        .map(|s| format!(", silhouette {s:.3}"))
        .unwrap_or_default();
    println!(
        "{} segments of {} customers ({}{silhouette}); report: {}",
        doc.k,
        doc.n_customers,
        doc.method.key(),
        out_dir.join("report.html").display()
    );
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("segscope={default}")));
    // A second initialisation (tests calling run twice) is harmless and ignored.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Progress bars on stderr; indicatif hides them when stderr is not a terminal.
#[derive(Default)]
struct BarProgress {
    current: Mutex<Option<ProgressBar>>,
}

impl Progress for BarProgress {
    fn start(&self, stage: &str, total: u64) {
        let bar = if total > 0 {
            ProgressBar::new(total).with_style(
                ProgressStyle::with_template(
                    "{spinner} {msg:<18} [{bar:30}] {pos}/{len} ({elapsed})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            )
        } else {
            let spinner = ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            spinner.enable_steady_tick(std::time::Duration::from_millis(120));
            spinner
        };
        bar.set_message(stage.to_string());
        if let Ok(mut current) = self.current.lock()
            && let Some(previous) = current.replace(bar)
        {
            previous.finish_and_clear();
        }
    }

    fn advance(&self, steps: u64) {
        if let Ok(current) = self.current.lock()
            && let Some(bar) = current.as_ref()
        {
            bar.inc(steps);
        }
    }

    fn finish(&self) {
        if let Ok(mut current) = self.current.lock()
            && let Some(bar) = current.take()
        {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::default_store_dir;

    #[test]
    fn a_run_in_a_service_data_directory_uses_that_directorys_store() {
        assert_eq!(
            default_store_dir(Path::new("out/demo/runs/demo")),
            PathBuf::from("out/demo/store")
        );
        assert_eq!(
            default_store_dir(Path::new("runs/demo")),
            PathBuf::from("store")
        );
    }

    #[test]
    fn a_run_folder_of_its_own_keeps_its_store_inside() {
        assert_eq!(
            default_store_dir(Path::new("out/iris")),
            PathBuf::from("out/iris/store")
        );
    }
}
