//! segscope's k-means and HDBSCAN against scikit-learn 1.9.1 and hdbscan 0.8.44, and their
//! promise of the same bits whatever the thread count.
//!
//! `tests/fixtures/clustering_reference.py` computed the reference figures and stored them,
//! with the HDBSCAN sample, in `tests/fixtures/clustering_reference.json`; Iris and digits
//! are read from the CSVs the repository ships. Each test prints what it compared
//! (`cargo test --test clustering_vs_reference -- --nocapture`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test that cannot read its fixture should stop there, loudly"
)]

use std::collections::HashMap;
use std::path::Path;

use ndarray::{Array2, ArrayView2, Axis};
use segscope::analysis::clustering::hdbscan::fit_hdbscan;
use segscope::analysis::clustering::kmeans::{KmeansFit, fit_kmeans};
use segscope::analysis::clustering::{HdbscanParams, KmeansParams, SegmentModel};
use segscope::analysis::validity::adjusted_rand_score;
use segscope::domain::Partition;
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    kmeans: Vec<KmeansCase>,
    hdbscan: HdbscanFixture,
}

/// Where scikit-learn's `KMeans(k, n_init=10)` lands over 20 random states.
#[derive(Deserialize)]
struct KmeansCase {
    dataset: String,
    k: usize,
    inertia_min: f64,
    inertia_median: f64,
    inertia_max: f64,
    ari_min: f64,
    ari_median: f64,
    ari_max: f64,
}

#[derive(Deserialize)]
struct HdbscanFixture {
    points: Vec<Vec<f64>>,
    cases: Vec<HdbscanCase>,
}

#[derive(Deserialize)]
struct HdbscanCase {
    min_cluster_size: usize,
    min_samples: usize,
    labels: Vec<i64>,
}

fn fixture() -> Fixture {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clustering_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A shipped dataset's features (constant columns dropped, as segscope's ingest does) and
/// its true classes.
fn dataset(name: &str) -> (Array2<f64>, Vec<usize>) {
    let file = match name {
        "iris" => "examples/iris.csv",
        "digits" => "tests/fixtures/digits.csv",
        other => panic!("unknown dataset {other}"),
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let mut reader = csv::Reader::from_path(path).unwrap();
    let mut classes: HashMap<String, usize> = HashMap::new();
    let mut rows = Vec::new();
    let mut truth = Vec::new();
    for record in reader.records() {
        let record = record.unwrap();
        let last = record.len() - 1;
        rows.push(
            (1..last)
                .map(|c| record[c].parse::<f64>().unwrap())
                .collect::<Vec<_>>(),
        );
        let next = classes.len();
        truth.push(*classes.entry(record[last].to_string()).or_insert(next));
    }
    let x = matrix(&rows);
    let varying: Vec<usize> = (0..x.ncols())
        .filter(|&j| {
            let c = x.column(j);
            c.iter().any(|&v| v != c[0])
        })
        .collect();
    (x.select(Axis(1), &varying), truth)
}

fn matrix(rows: &[Vec<f64>]) -> Array2<f64> {
    let cols = rows.first().map_or(0, Vec::len);
    Array2::from_shape_vec((rows.len(), cols), rows.concat()).unwrap()
}

/// Labels with noise as one more group, for the adjusted Rand index.
fn dense(p: &Partition) -> Vec<usize> {
    p.labels().iter().map(|l| l.unwrap_or(p.k())).collect()
}

fn centroids(fit: &KmeansFit) -> Vec<u64> {
    match &fit.model {
        SegmentModel::Centroids(c) => c.iter().map(|v| v.to_bits()).collect(),
        other => panic!("k-means returned {other:?}"),
    }
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn kmeans_lands_where_scikit_learn_does() {
    for case in fixture().kmeans {
        let (x, truth) = dataset(&case.dataset);
        for seed in 0..3 {
            let fit = fit_kmeans(x.view(), case.k, &KmeansParams::default(), seed).unwrap();
            let ari = adjusted_rand_score(&truth, &dense(&fit.partition)).unwrap();
            println!(
                "{} k={} seed {seed}: inertia {:.6} (sklearn {:.6} .. {:.6}), ARI {ari:.4} (sklearn {:.4} .. {:.4})",
                case.dataset,
                case.k,
                fit.inertia,
                case.inertia_min,
                case.inertia_max,
                case.ari_min,
                case.ari_max
            );
            assert_eq!(fit.partition.k(), case.k);
            // Within 0.1% of sklearn's median inertia (its own spread over seeds on digits
            // is 0.055%), and never above its worst.
            assert!(
                (fit.inertia - case.inertia_median).abs() <= 1e-3 * case.inertia_median,
                "{}: inertia {} vs sklearn median {}",
                case.dataset,
                fit.inertia,
                case.inertia_median
            );
            assert!(fit.inertia <= case.inertia_max * (1.0 + 1e-12));
            assert!(
                ari >= case.ari_min - 0.01 && ari <= case.ari_max + 0.01,
                "{}: ARI {ari} outside sklearn's {}..{} (median {})",
                case.dataset,
                case.ari_min,
                case.ari_max,
                case.ari_median
            );
        }
    }
}

#[test]
fn kmeans_finds_the_iris_optimum_exactly() {
    let case = fixture()
        .kmeans
        .into_iter()
        .find(|c| c.dataset == "iris")
        .unwrap();
    let (x, truth) = dataset("iris");
    let fit = fit_kmeans(x.view(), 3, &KmeansParams::default(), 42).unwrap();
    assert!((fit.inertia - case.inertia_min).abs() <= 1e-9 * case.inertia_min);
    let ari = adjusted_rand_score(&truth, &dense(&fit.partition)).unwrap();
    assert!((ari - case.ari_median).abs() <= 1e-12, "ARI {ari}");
}

#[test]
fn kmeans_gives_the_same_bits_on_one_or_three_threads() {
    let (x, _) = dataset("digits");
    let params = KmeansParams::default();
    let one = in_pool(1, || fit_kmeans(x.view(), 10, &params, 7).unwrap());
    let three = in_pool(3, || fit_kmeans(x.view(), 10, &params, 7).unwrap());
    assert_eq!(one.partition, three.partition);
    assert_eq!(one.inertia.to_bits(), three.inertia.to_bits());
    assert_eq!(centroids(&one), centroids(&three));
}

#[test]
fn hdbscan_matches_the_exact_reference() {
    let fixture = fixture().hdbscan;
    let x = matrix(&fixture.points);
    for case in fixture.cases {
        let params = HdbscanParams {
            min_cluster_size: case.min_cluster_size,
            min_samples: case.min_samples,
        };
        let (partition, _) = fit_hdbscan(x.view(), &params).unwrap();
        let reference = Partition::from_raw(case.labels.iter().map(|&l| (l >= 0).then_some(l)));
        let ari = adjusted_rand_score(&dense(&partition), &dense(&reference)).unwrap();
        println!(
            "min_cluster_size {} min_samples {}: {} clusters, {} noise (hdbscan: {}, {}), ARI between them {ari:.6}",
            case.min_cluster_size,
            case.min_samples,
            partition.k(),
            partition.noise_count(),
            reference.k(),
            reference.noise_count()
        );
        assert_eq!(partition.k(), reference.k());
        // Equal-weight edges may be chosen differently by two exact algorithms: allow a
        // handful of points, no more.
        assert!(partition.noise_count().abs_diff(reference.noise_count()) <= 3);
        assert!(ari >= 0.99, "ARI {ari}");
    }
}

#[test]
fn hdbscan_gives_the_same_clusters_on_one_or_three_threads() {
    let fixture = fixture().hdbscan;
    let x = matrix(&fixture.points);
    // Four copies shifted apart: 3,600 points, enough for several parallel tasks per round.
    let shifted: Vec<Array2<f64>> = (0..4).map(|i| &x + 40.0 * f64::from(i)).collect();
    let views: Vec<ArrayView2<f64>> = shifted.iter().map(|a| a.view()).collect();
    let big = ndarray::concatenate(Axis(0), &views).unwrap();
    let params = HdbscanParams {
        min_cluster_size: 15,
        min_samples: 15,
    };
    let one = in_pool(1, || fit_hdbscan(big.view(), &params).unwrap().0);
    let three = in_pool(3, || fit_hdbscan(big.view(), &params).unwrap().0);
    assert_eq!(one, three);
    assert!(one.k() >= 4);
}
