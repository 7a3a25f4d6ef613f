//! The `segscope` command line: raw arguments become a validated request before anything
//! runs, and every failure becomes one line and a documented exit status.
//!
//! Exit status: 0 success; 1 internal error (a bug or an unexpected library failure);
//! 2 usage error (unknown flag, bad value); 3 the input data cannot support the run (the
//! message names file, line and column); 4 configuration error; 5 output cannot be written.

use std::path::PathBuf;
use std::sync::Mutex;

use clap::{ArgAction, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::analysis::progress::Progress;
use crate::domain::{MapMethod, Method, Scaling};
use crate::ingest::FeatureTableSpec;
use crate::pipeline::{PipelineError, SegmentRequest, run_segment};
use crate::report::ReportError;
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
    /// Segment a numeric feature table and write segments.json, assignments.csv and report.html.
    Segment(SegmentArgs),
}

/// `segscope segment`.
#[derive(Debug, clap::Args)]
pub struct SegmentArgs {
    /// CSV with an id column, numeric feature columns and optionally a label column.
    #[arg(long, value_name = "F.csv")]
    pub features: PathBuf,
    /// Column holding the customer id.
    #[arg(long, value_name = "ID")]
    pub id_column: String,
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
    /// The thread pool could not be set up.
    #[error("cannot start worker threads: {0}")]
    Threads(String),
}

impl CliError {
    /// The documented exit status.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Settings(_) => 4,
            CliError::Pipeline(PipelineError::Report(ReportError::Io { .. })) => 5,
            CliError::Pipeline(e) if e.is_input_problem() => 3,
            CliError::Pipeline(_) | CliError::Threads(_) => 1,
        }
    }
}

/// Turns `segment` arguments into a validated request: settings layered, flags applied last.
pub fn segment_request(
    args: &SegmentArgs,
    threads: Option<usize>,
) -> Result<SegmentRequest, CliError> {
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
    Ok(SegmentRequest {
        features: args.features.clone(),
        table: FeatureTableSpec {
            id_column: args.id_column.clone(),
            label_column: args.label_column.clone(),
            delimiter: settings.delimiter_byte(),
        },
        out_dir: args.out.clone(),
        settings,
    })
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    init_logging(cli.verbose);
    match &cli.command {
        Command::Segment(args) => {
            let request = segment_request(args, cli.threads)?;
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(request.settings.run.threads)
                .build()
                .map_err(|e| CliError::Threads(e.to_string()))?;
            let progress = BarProgress::default();
            let run = pool.install(|| run_segment(&request, &progress))?;
            let doc = &run.document;
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
                run.out_dir.join("report.html").display()
            );
            Ok(())
        }
    }
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
