//! segscope's validity measures against scikit-learn 1.7.2 on the committed fixtures.
//!
//! `tests/fixtures/sklearn_validity.py` computed every expected value with scikit-learn and
//! stored it, with the inputs, in `tests/fixtures/sklearn_validity.json`; Iris and digits are
//! read from the CSVs the repository ships. Each test prints the largest difference it saw
//! (`cargo test --test validity_vs_sklearn -- --nocapture`).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test that cannot read its fixture should stop there, loudly"
)]

use std::path::Path;

use ndarray::Array2;
use segscope::analysis::validity::{
    adjusted_rand_score, calinski_harabasz_score, davies_bouldin_score,
    normalized_mutual_info_score, silhouette_samples, silhouette_score, silhouette_scores,
    trustworthiness,
};
use serde::Deserialize;

/// The brief's bound: every value within 1e-6 of sklearn's. Measures that hold tighter
/// bounds assert those too (see each test).
const SKLEARN_TOLERANCE: f64 = 1e-6;

#[derive(Deserialize)]
struct Fixture {
    internal: Vec<InternalCase>,
    choose_k: ChooseK,
    external: Vec<ExternalCase>,
    trustworthiness: Vec<TrustCase>,
}

/// A matrix given inline or by the name of a shipped dataset.
#[derive(Deserialize)]
struct Points {
    dataset: Option<String>,
    x: Option<Vec<Vec<f64>>>,
}

#[derive(Deserialize)]
struct InternalCase {
    name: String,
    #[serde(flatten)]
    points: Points,
    labels: Vec<usize>,
    silhouette_samples: Vec<f64>,
    silhouette_score: f64,
    davies_bouldin: f64,
    calinski_harabasz: f64,
}

#[derive(Deserialize)]
struct ChooseK {
    dataset: String,
    labelings: Vec<Vec<usize>>,
    silhouette_scores: Vec<f64>,
}

#[derive(Deserialize)]
struct ExternalCase {
    name: String,
    a: Vec<usize>,
    b: Vec<usize>,
    ari: f64,
    nmi: f64,
}

#[derive(Deserialize)]
struct TrustCase {
    name: String,
    #[serde(flatten)]
    points: Points,
    embedded: Vec<Vec<f64>>,
    n_neighbors: usize,
    sklearn: f64,
    stable_ties: f64,
    tie_bounds: [f64; 2],
    has_ties: bool,
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sklearn_validity.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn matrix(rows: &[Vec<f64>]) -> Array2<f64> {
    let cols = rows.first().map_or(0, Vec::len);
    Array2::from_shape_vec((rows.len(), cols), rows.concat()).unwrap()
}

/// The numeric feature columns of a shipped dataset CSV: all but the first (id) and last
/// (species or digit) columns.
fn dataset(name: &str) -> Array2<f64> {
    let file = match name {
        "iris" => "examples/iris.csv",
        "digits" => "tests/fixtures/digits.csv",
        other => panic!("unknown dataset {other}"),
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let mut reader = csv::Reader::from_path(path).unwrap();
    let rows: Vec<Vec<f64>> = reader
        .records()
        .map(|record| {
            let record = record.unwrap();
            let features = 1..record.len() - 1;
            features.map(|c| record[c].parse().unwrap()).collect()
        })
        .collect();
    matrix(&rows)
}

impl Points {
    fn load(&self) -> Array2<f64> {
        match (&self.dataset, &self.x) {
            (Some(name), None) => dataset(name),
            (None, Some(rows)) => matrix(rows),
            _ => panic!("a case gives either a dataset or x"),
        }
    }
}

/// Asserts `|got - expected| <= tolerance` and returns the difference, for reporting.
fn close(what: &str, got: f64, expected: f64, tolerance: f64) -> f64 {
    let diff = (got - expected).abs();
    assert!(
        diff <= tolerance,
        "{what}: got {got}, sklearn {expected}, |diff| {diff:e} > {tolerance:e}"
    );
    diff
}

#[test]
fn internal_measures_match_sklearn() {
    // Our distances sum squares directly where sklearn expands |x|² − 2x·y + |y|²: only the
    // last bits differ, far inside these bounds.
    const SILHOUETTE: f64 = 1e-12;
    const DAVIES_BOULDIN: f64 = 1e-12;
    const CALINSKI_HARABASZ_RELATIVE: f64 = 1e-12;
    for case in fixture().internal {
        let x = case.points.load();
        let samples = silhouette_samples(x.view(), &case.labels).unwrap();
        assert_eq!(
            samples.len(),
            case.silhouette_samples.len(),
            "{}",
            case.name
        );
        let max_sample_diff = samples
            .iter()
            .zip(&case.silhouette_samples)
            .map(|(&got, &expected)| close(&case.name, got, expected, SILHOUETTE))
            .fold(0.0, f64::max);
        let score = silhouette_score(x.view(), &case.labels).unwrap();
        let score_diff = close(&case.name, score, case.silhouette_score, SILHOUETTE);
        let db = davies_bouldin_score(x.view(), &case.labels).unwrap();
        let db_diff = close(&case.name, db, case.davies_bouldin, DAVIES_BOULDIN);
        let ch = calinski_harabasz_score(x.view(), &case.labels).unwrap();
        let ch_diff = close(
            &case.name,
            ch,
            case.calinski_harabasz,
            SKLEARN_TOLERANCE.min(CALINSKI_HARABASZ_RELATIVE * case.calinski_harabasz.abs()),
        );
        println!(
            "{}: silhouette samples {max_sample_diff:.1e}, score {score_diff:.1e}, \
             Davies-Bouldin {db_diff:.1e}, Calinski-Harabasz {ch_diff:.1e} (value {ch:.3})",
            case.name
        );
    }
}

#[test]
fn silhouette_batch_matches_sklearn() {
    let choose_k = fixture().choose_k;
    let x = dataset(&choose_k.dataset);
    let labelings: Vec<&[usize]> = choose_k.labelings.iter().map(Vec::as_slice).collect();
    let scores = silhouette_scores(x.view(), &labelings).unwrap();
    assert_eq!(scores.len(), choose_k.silhouette_scores.len());
    for (k, (&got, &expected)) in (2..).zip(scores.iter().zip(&choose_k.silhouette_scores)) {
        let diff = close(&format!("iris k-means k={k}"), got, expected, 1e-12);
        println!("iris k-means k={k}: silhouette {got:.6}, |diff| {diff:.1e}");
    }
}

#[test]
fn external_measures_match_sklearn() {
    for case in fixture().external {
        // Pair counts are exact integers, as in sklearn; only the entropies' sums can differ
        // in the last bits.
        let ari = adjusted_rand_score(&case.a, &case.b).unwrap();
        let ari_diff = close(&case.name, ari, case.ari, 1e-15);
        let nmi = normalized_mutual_info_score(&case.a, &case.b).unwrap();
        let nmi_diff = close(&case.name, nmi, case.nmi, 1e-14);
        // Both are symmetric.
        assert_eq!(adjusted_rand_score(&case.b, &case.a).unwrap(), ari);
        close(
            &case.name,
            normalized_mutual_info_score(&case.b, &case.a).unwrap(),
            nmi,
            1e-15,
        );
        println!(
            "{}: ARI {ari:.6} |diff| {ari_diff:.1e}, NMI {nmi:.6} |diff| {nmi_diff:.1e}",
            case.name
        );
    }
}

#[test]
fn trustworthiness_matches_sklearn() {
    for case in fixture().trustworthiness {
        let x = case.points.load();
        let embedded = matrix(&case.embedded);
        let t = trustworthiness(x.view(), embedded.view(), case.n_neighbors).unwrap();
        // Same tie rule as the fixture's stable-sort run of sklearn's algorithm: same integer
        // penalty, same normalisation, same bits.
        assert_eq!(t, case.stable_ties, "{}", case.name);
        let diff = (t - case.sklearn).abs();
        if case.has_ties {
            // sklearn's own value depends on how its unstable sort orders tied distances;
            // both lie within the range that tie orders can produce.
            let [low, high] = case.tie_bounds;
            assert!(
                low <= t && t <= high,
                "{}: {t} outside {low}..={high}",
                case.name
            );
        } else {
            close(&case.name, t, case.sklearn, SKLEARN_TOLERANCE);
            assert_eq!(t, case.sklearn, "{}", case.name);
        }
        println!(
            "{}: {t:.10}, sklearn {:.10}, |diff| {diff:.1e}, tie range {:.1e}",
            case.name,
            case.sklearn,
            case.tie_bounds[1] - case.tie_bounds[0]
        );
    }
}
