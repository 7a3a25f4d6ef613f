//! Measures the kNN graph and UMAP at scale on a feature table (release build):
//!
//! ```text
//! cargo run --release --example umap_scale -- TABLE.csv LABEL_COLUMN [--exact] [--no-trust] [--peer MAP.csv] [--knn-only]
//! ```
//!
//! Prints wall and CPU seconds of each stage (CPU time matters on a shared machine), the
//! method [`knn_graph`] chose, recall against exact kNN with `--exact` (slow: O(n²)), and
//! the trustworthiness (k = 10) of the map unless `--no-trust` (also O(n²), about a minute
//! at 50,000 points). Inputs: `tests/fixtures/digits.csv` (label column `digit`), or the
//! benchmark's tables (`bench/make_data.py`, label column `label`). `--peer MAP.csv` scores
//! another tool's map of the same rows (two comma-separated columns, no header, e.g. numpy's
//! `savetxt` of umap-learn's embedding) with the same trustworthiness function.

use std::path::PathBuf;
use std::time::Instant;

use segscope::analysis::knn::{exact_knn, knn_graph};
use segscope::analysis::maps::umap::{UmapParams, fit_umap};
use segscope::analysis::progress::NoProgress;
use segscope::analysis::validity::trustworthiness;
use segscope::ingest::{FeatureTableSpec, read_feature_table};

/// CPU seconds (user + system, all threads) of this process so far, from /proc (Linux;
/// 0 elsewhere). Clock ticks are 100 per second on Linux.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs `f`, printing its wall and CPU seconds under `label`.
fn timed<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    let out = f();
    println!(
        "{label}: wall {:.2} s, cpu {:.2} s",
        wall.elapsed().as_secs_f64(),
        cpu_seconds() - cpu
    );
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: umap_scale TABLE.csv LABEL_COLUMN [--exact] [--no-trust]";
    let path = PathBuf::from(args.first().ok_or(usage)?);
    let label = args.get(1).ok_or(usage)?;
    let flag = |name: &str| args.iter().any(|a| a == name);
    let spec = FeatureTableSpec {
        id_column: "id".into(),
        label_column: Some(label.clone()),
        delimiter: b',',
    };
    let x = read_feature_table(&path, &spec)?.values;
    println!(
        "{} x {}, {} threads",
        x.nrows(),
        x.ncols(),
        rayon::current_num_threads()
    );

    let params = UmapParams::default().validate()?;
    let k = params.params().n_neighbors - 1;
    let start = (Instant::now(), cpu_seconds());
    let graph = timed("kNN graph", || knn_graph(x.view(), k, 42, &NoProgress))?;
    println!("kNN method: {:?}", graph.method());
    if flag("--knn-only") {
        return Ok(());
    }
    let model = timed("UMAP layout", || {
        fit_umap(x.view(), &graph, &params, 42, &NoProgress)
    })?;
    println!(
        "UMAP total: wall {:.2} s, cpu {:.2} s",
        start.0.elapsed().as_secs_f64(),
        cpu_seconds() - start.1
    );
    if flag("--exact") {
        let truth = timed("exact kNN", || exact_knn(x.view(), k))?;
        println!(
            "recall at k = {k}: {:.4}",
            graph.recall_against(&truth).unwrap_or(0.0)
        );
    }
    if let Some(peer) = args
        .iter()
        .position(|a| a == "--peer")
        .and_then(|i| args.get(i + 1))
    {
        let text = std::fs::read_to_string(peer)?;
        let values: Vec<f64> = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|v| !v.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        let peer_map = ndarray::Array2::from_shape_vec((values.len() / 2, 2), values)?;
        let score = timed("peer trustworthiness", || {
            trustworthiness(x.view(), peer_map.view(), 10)
        })?;
        println!("peer trustworthiness (k = 10): {score:.4}");
    }
    if !flag("--no-trust") {
        let score = timed("trustworthiness", || {
            trustworthiness(x.view(), model.embedding.view(), 10)
        })?;
        println!("trustworthiness (k = 10): {score:.4}");
    }
    Ok(())
}
