//! `segscope-bench`: runs ONE stage of segscope's analysis on a feature table and times it,
//! for the side-by-side comparison with scikit-learn, umap-learn, openTSNE and hdbscan that
//! `bench/run.sh` drives.
//!
//! It is the segscope half of a pair: `bench/peers.py` is the other half and has the same
//! command line (`--stage S --data X.csv --out OUT.csv ...`). Each invocation runs one stage
//! in a fresh process, so that the peak RSS the driver measures around it belongs to that
//! stage alone. The binary calls the library's functions directly, with the parameters
//! `bench/README.md` lists; it goes through neither the pipeline nor the CLI, so that the
//! numbers are those of the algorithms, not of scaling, reporting or I/O.
//!
//! Output: labels (clustering stages, `-1` for noise) or an `n x 2` embedding (map stages)
//! in `--out`, for `bench/score.py` to measure with the same functions as the peers', and
//! one JSON line on stdout: `{"side": "segscope", "stage": ..., "seconds": ..., "extra":
//! {...}}`. `seconds` covers the computation only: reading the CSV and writing the output
//! are outside the timed region, as in `peers.py`.
//!
//! Threads: a global rayon pool of `--threads` workers (default 2), so every parallel loop
//! in the library, linfa's included, uses at most that many.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use ndarray::{Array2, ArrayView2, CowArray};
use serde_json::{Value, json};

use segscope::analysis::clustering::{
    GmmParams, HdbscanParams, KmeansParams, gmm::fit_gmm, hdbscan::fit_hdbscan, kmeans::fit_kmeans,
};
use segscope::analysis::knn::knn_graph;
use segscope::analysis::maps::pca::fit_pca;
use segscope::analysis::maps::tsne::{TsneParams, fit_tsne};
use segscope::analysis::maps::umap::{UmapParams, fit_umap};
use segscope::analysis::progress::NoProgress;
use segscope::analysis::validity::{silhouette_score, trustworthiness};
use segscope::domain::Partition;
use segscope::ingest::{FeatureTableSpec, read_feature_table};

/// Dimensions HDBSCAN clusters in: wider data is reduced by PCA first (as the peer does),
/// because density estimates in 64 raw dimensions find mostly noise.
const HDBSCAN_DIMS: usize = 10;
/// HDBSCAN's smallest cluster and its core-distance neighbourhood, on both sides.
const HDBSCAN_MIN_CLUSTER_SIZE: usize = 15;
/// umap-learn's default neighbourhood, the point itself included.
const UMAP_NEIGHBOURS: usize = 15;
/// Neighbourhood of the trustworthiness stage (sklearn's default is 5; we use 10 throughout).
const TRUST_NEIGHBOURS: usize = 10;

/// One stage of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Stage {
    /// k-means, k = `--k`, 10 k-means++ restarts.
    Kmeans,
    /// Gaussian mixture, full covariances, k = `--k`, one initialisation.
    Gmm,
    /// PCA to 10 dimensions (when wider), then HDBSCAN with min_cluster_size = 15.
    Hdbscan,
    /// PCA to 2 dimensions.
    Pca,
    /// Exact kNN graph (timed, and reported separately) then UMAP with umap-learn's defaults.
    Umap,
    /// Barnes-Hut t-SNE, perplexity 30.
    Tsne,
    /// Mean silhouette of the labels in `--labels`, over all points.
    Silhouette,
    /// Trustworthiness (k = 10) of the embedding in `--embedding`.
    Trustworthiness,
}

/// Raw command line.
#[derive(Debug, Parser)]
#[command(about = "Run one segscope analysis stage on a feature table and time it")]
struct Args {
    /// Stage to run.
    #[arg(long, value_enum)]
    stage: Stage,
    /// Feature table: an `id` column, numeric features, a `label` column.
    #[arg(long)]
    data: PathBuf,
    /// Where labels (clustering) or the n x 2 embedding (maps) are written.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Number of clusters (kmeans, gmm).
    #[arg(long)]
    k: Option<usize>,
    /// Labels file, one `label` column (silhouette).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Embedding file, `x,y` columns (trustworthiness).
    #[arg(long)]
    embedding: Option<PathBuf>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Rayon worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// What a stage needs besides the data, checked before anything is read or timed.
enum Job {
    /// Writes labels to the path.
    Kmeans {
        k: usize,
        out: PathBuf,
    },
    Gmm {
        k: usize,
        out: PathBuf,
    },
    Hdbscan {
        out: PathBuf,
    },
    /// Writes an embedding to the path.
    Pca {
        out: PathBuf,
    },
    Umap {
        out: PathBuf,
    },
    Tsne {
        out: PathBuf,
    },
    /// Reads labels from the path.
    Silhouette {
        labels: PathBuf,
    },
    /// Reads an embedding from the path.
    Trustworthiness {
        embedding: PathBuf,
    },
}

impl Job {
    fn from_args(args: &Args) -> Result<Job> {
        let out = || {
            args.out
                .clone()
                .with_context(|| format!("--out is required for {:?}", args.stage))
        };
        let k = || match args.k {
            Some(k) if k >= 1 => Ok(k),
            Some(_) => bail!("--k must be at least 1"),
            None => bail!("--k is required for {:?}", args.stage),
        };
        Ok(match args.stage {
            Stage::Kmeans => Job::Kmeans {
                k: k()?,
                out: out()?,
            },
            Stage::Gmm => Job::Gmm {
                k: k()?,
                out: out()?,
            },
            Stage::Hdbscan => Job::Hdbscan { out: out()? },
            Stage::Pca => Job::Pca { out: out()? },
            Stage::Umap => Job::Umap { out: out()? },
            Stage::Tsne => Job::Tsne { out: out()? },
            Stage::Silhouette => Job::Silhouette {
                labels: args
                    .labels
                    .clone()
                    .context("--labels is required for silhouette")?,
            },
            Stage::Trustworthiness => Job::Trustworthiness {
                embedding: args
                    .embedding
                    .clone()
                    .context("--embedding is required for trustworthiness")?,
            },
        })
    }
}

/// A stage's result: its time and what else is worth printing, plus what to write.
struct Outcome {
    seconds: f64,
    extra: Value,
    output: Output,
}

enum Output {
    Labels(PathBuf, Vec<i64>),
    Embedding(PathBuf, Array2<f64>),
    Nothing,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("segscope-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    if args.threads == 0 {
        bail!("--threads must be at least 1");
    }
    let job = Job::from_args(&args)?;
    rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build_global()
        .context("building the rayon thread pool")?;

    let spec = FeatureTableSpec {
        id_column: "id".into(),
        label_column: Some("label".into()),
        delimiter: b',',
    };
    let table = read_feature_table(&args.data, &spec)
        .with_context(|| format!("reading {}", args.data.display()))?;
    let x = table.values.view();

    let outcome = run_stage(x, job, args.seed)?;
    match outcome.output {
        Output::Labels(path, labels) => write_labels(&path, &labels)?,
        Output::Embedding(path, embedding) => write_embedding(&path, embedding.view())?,
        Output::Nothing => {}
    }
    let stage = args
        .stage
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    println!(
        "{}",
        json!({"side": "segscope", "stage": stage, "seconds": outcome.seconds, "extra": outcome.extra})
    );
    Ok(())
}

/// Runs and times one stage; inputs other than `x` are read before the clock starts.
fn run_stage(x: ArrayView2<f64>, job: Job, seed: u64) -> Result<Outcome> {
    Ok(match job {
        Job::Kmeans { k, out } => {
            let params = KmeansParams {
                n_init: 10,
                ..KmeansParams::default()
            };
            let start = Instant::now();
            let fit = fit_kmeans(x, k, &params, seed)?;
            let seconds = start.elapsed().as_secs_f64();
            let mut extra = cluster_extra(&fit.partition);
            extra["inertia"] = json!(fit.inertia);
            Outcome {
                seconds,
                extra,
                output: Output::Labels(out, raw_labels(&fit.partition)),
            }
        }
        Job::Gmm { k, out } => {
            let params = GmmParams {
                n_init: 1,
                ..GmmParams::default()
            };
            let start = Instant::now();
            let fit = fit_gmm(x, k, &params, seed)?;
            let seconds = start.elapsed().as_secs_f64();
            let mut extra = cluster_extra(&fit.partition);
            extra["converged"] = json!(fit.converged);
            extra["iterations"] = json!(fit.iterations);
            extra["log_likelihood"] = json!(fit.log_likelihood);
            Outcome {
                seconds,
                extra,
                output: Output::Labels(out, raw_labels(&fit.partition)),
            }
        }
        Job::Hdbscan { out } => {
            let params = HdbscanParams {
                min_cluster_size: HDBSCAN_MIN_CLUSTER_SIZE,
                min_samples: HDBSCAN_MIN_CLUSTER_SIZE,
            };
            let start = Instant::now();
            let input = if x.ncols() > HDBSCAN_DIMS {
                CowArray::from(fit_pca(x, HDBSCAN_DIMS)?.transform(x))
            } else {
                CowArray::from(x)
            };
            let (partition, _model) = fit_hdbscan(input.view(), &params)?;
            let seconds = start.elapsed().as_secs_f64();
            let mut extra = cluster_extra(&partition);
            extra["input_dims"] = json!(input.ncols());
            Outcome {
                seconds,
                extra,
                output: Output::Labels(out, raw_labels(&partition)),
            }
        }
        Job::Pca { out } => {
            let start = Instant::now();
            let embedding = fit_pca(x, 2)?.transform(x);
            let seconds = start.elapsed().as_secs_f64();
            Outcome {
                seconds,
                extra: json!({}),
                output: Output::Embedding(out, embedding),
            }
        }
        Job::Umap { out } => {
            let start = Instant::now();
            // Our graph excludes the point itself, which umap-learn counts among n_neighbors.
            // knn_graph is what the pipeline calls: exact up to 4,096 points, else NN-descent.
            let knn = knn_graph(x, UMAP_NEIGHBOURS - 1, seed, &NoProgress)?;
            let knn_seconds = start.elapsed().as_secs_f64();
            let params = UmapParams {
                n_neighbors: UMAP_NEIGHBOURS,
                min_dist: 0.1,
                ..UmapParams::default()
            }
            .validate()?;
            let embedding = fit_umap(x, &knn, &params, seed, &NoProgress)?.embedding;
            let seconds = start.elapsed().as_secs_f64();
            Outcome {
                seconds,
                extra: json!({"knn_seconds": knn_seconds, "knn": knn.method().as_str()}),
                output: Output::Embedding(out, embedding),
            }
        }
        Job::Tsne { out } => {
            let params = TsneParams {
                perplexity: 30.0,
                ..TsneParams::default()
            };
            let start = Instant::now();
            let map = fit_tsne(x, &params, seed, &NoProgress)?;
            let seconds = start.elapsed().as_secs_f64();
            Outcome {
                seconds,
                extra: json!({
                    "perplexity": map.perplexity,
                    "kl_divergence": map.kl_divergence,
                    "iterations": params.max_iter,
                }),
                output: Output::Embedding(out, map.embedding),
            }
        }
        Job::Silhouette { labels } => {
            let labels = read_labels(&labels, x.nrows())?;
            let start = Instant::now();
            let value = silhouette_score(x, &labels)?;
            let seconds = start.elapsed().as_secs_f64();
            Outcome {
                seconds,
                extra: json!({ "value": value }),
                output: Output::Nothing,
            }
        }
        Job::Trustworthiness { embedding } => {
            let embedding = read_embedding(&embedding, x.nrows())?;
            let start = Instant::now();
            let value = trustworthiness(x, embedding.view(), TRUST_NEIGHBOURS)?;
            let seconds = start.elapsed().as_secs_f64();
            Outcome {
                seconds,
                extra: json!({ "value": value }),
                output: Output::Nothing,
            }
        }
    })
}

/// Segment numbers as written for scoring: `-1` for noise.
fn raw_labels(partition: &Partition) -> Vec<i64> {
    partition
        .labels()
        .iter()
        .map(|l| l.map_or(-1, |c| c as i64))
        .collect()
}

fn cluster_extra(partition: &Partition) -> Value {
    json!({"clusters": partition.k(), "noise": partition.noise_count()})
}

fn write_labels(path: &Path, labels: &[i64]) -> Result<()> {
    let mut w =
        BufWriter::new(File::create(path).with_context(|| format!("creating {}", path.display()))?);
    writeln!(w, "label")?;
    for l in labels {
        writeln!(w, "{l}")?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))
}

fn write_embedding(path: &Path, embedding: ArrayView2<f64>) -> Result<()> {
    if embedding.ncols() != 2 {
        bail!("expected a 2-column embedding, got {}", embedding.ncols());
    }
    let mut w =
        BufWriter::new(File::create(path).with_context(|| format!("creating {}", path.display()))?);
    writeln!(w, "x,y")?;
    for row in embedding.rows() {
        // `{:?}` prints the shortest text that parses back to the same f64.
        writeln!(w, "{:?},{:?}", row[0], row[1])?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads every record of a headed CSV as numbers, checking the row count.
fn read_numbers(path: &Path, columns: usize, rows: usize) -> Result<Vec<f64>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    let mut values = Vec::with_capacity(rows * columns);
    for (i, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{}: record {}", path.display(), i + 1))?;
        if record.len() != columns {
            bail!(
                "{}: record {} has {} fields, expected {columns}",
                path.display(),
                i + 1,
                record.len()
            );
        }
        for field in record.iter() {
            values.push(field.trim().parse::<f64>().with_context(|| {
                format!(
                    "{}: record {}: '{field}' is not a number",
                    path.display(),
                    i + 1
                )
            })?);
        }
    }
    if values.len() != rows * columns {
        bail!(
            "{}: {} rows, but the data has {rows}",
            path.display(),
            values.len() / columns
        );
    }
    Ok(values)
}

fn read_labels(path: &Path, rows: usize) -> Result<Vec<usize>> {
    read_numbers(path, 1, rows)?
        .into_iter()
        .map(|v| {
            if v >= 0.0 && v.fract() == 0.0 {
                Ok(v as usize)
            } else {
                bail!(
                    "{}: label {v} is not a non-negative integer",
                    path.display()
                )
            }
        })
        .collect()
}

fn read_embedding(path: &Path, rows: usize) -> Result<Array2<f64>> {
    let values = read_numbers(path, 2, rows)?;
    Ok(Array2::from_shape_vec((rows, 2), values)?)
}
