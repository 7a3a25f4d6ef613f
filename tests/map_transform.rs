//! Approximate neighbours and UMAP's `transform` on scikit-learn's digits (1,797 x 64):
//! NN-descent and the query index find at least 95% of the exact neighbours (k = 15), and
//! points placed into a map fitted on the other points keep the map faithful.
//!
//! Measured figures are printed (`cargo test --test map_transform -- --nocapture`).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test loudly"
)]

use std::path::Path;
use std::sync::OnceLock;

use ndarray::{Array2, ArrayView2, Axis, concatenate, s};
use segscope::analysis::knn::{
    KnnGraph, KnnIndex, KnnMethod, NnDescentParams, exact_knn, knn_graph, nn_descent,
};
use segscope::analysis::maps::umap::{UmapModel, UmapParams, fit_umap};
use segscope::analysis::progress::NoProgress;
use segscope::analysis::validity::trustworthiness;
use segscope::ingest::{FeatureTableSpec, read_feature_table};

/// Digits split at a fixed row: the map is fitted on the first rows, the rest are placed.
const FITTED: usize = 1_500;

struct Digits {
    x: Array2<f64>,
    labels: Vec<String>,
}

fn digits() -> &'static Digits {
    static DIGITS: OnceLock<Digits> = OnceLock::new();
    DIGITS.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/digits.csv");
        let spec = FeatureTableSpec {
            id_column: "id".into(),
            label_column: Some("digit".into()),
            delimiter: b',',
        };
        let table = read_feature_table(&path, &spec).expect("fixture reads");
        Digits {
            x: table.values,
            labels: table.labels.expect("labels"),
        }
    })
}

/// The map fitted on the first [`FITTED`] digits, and its kNN graph.
fn fitted() -> &'static (UmapModel, KnnGraph) {
    static FITTED_MAP: OnceLock<(UmapModel, KnnGraph)> = OnceLock::new();
    FITTED_MAP.get_or_init(|| {
        let reference = digits().x.slice(s![..FITTED, ..]);
        let params = UmapParams::default().validate().expect("defaults");
        let graph =
            knn_graph(reference, params.params().n_neighbors - 1, 42, &NoProgress).expect("graph");
        let model = fit_umap(reference, &graph, &params, 42, &NoProgress).expect("umap");
        (model, graph)
    })
}

/// Share of each row's neighbours that the exact neighbours among `reference` also list.
fn recall(found: &KnnGraph, reference: ArrayView2<f64>, queries: ArrayView2<f64>) -> f64 {
    let k = found.k();
    let hits: usize = queries
        .axis_iter(Axis(0))
        .zip(found.indices().axis_iter(Axis(0)))
        .map(|(q, row)| {
            let mut all: Vec<(f64, usize)> = reference
                .axis_iter(Axis(0))
                .enumerate()
                .map(|(j, r)| ((&r - &q).mapv(|v| v * v).sum(), j))
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let truth: Vec<usize> = all.iter().take(k).map(|p| p.1).collect();
            row.iter().filter(|j| truth.contains(j)).count()
        })
        .sum();
    hits as f64 / (queries.nrows() * k) as f64
}

#[test]
fn nn_descent_finds_the_exact_neighbours_of_digits() {
    let x = &digits().x;
    let graph =
        nn_descent(x.view(), 15, &NnDescentParams::default(), 42, &NoProgress).expect("nn-descent");
    assert_eq!(graph.method(), KnnMethod::NnDescent);
    let truth = exact_knn(x.view(), 15).expect("exact");
    let recall = graph.recall_against(&truth).expect("same rows");
    println!("NN-descent recall on digits at k = 15: {recall:.4}");
    assert!(recall >= 0.95, "recall {recall}");
}

#[test]
fn index_finds_the_neighbours_of_held_out_digits() {
    let x = &digits().x;
    let (reference, queries) = (x.slice(s![..FITTED, ..]), x.slice(s![FITTED.., ..]));
    let index = KnnIndex::new(reference, &fitted().1, 42).expect("index");
    let found = index.query(queries, 15).expect("query");
    let recall = recall(&found, reference, queries);
    println!("index recall on the 297 held-out digits at k = 15: {recall:.4}");
    assert!(recall >= 0.95, "recall {recall}");
}

#[test]
fn transform_places_held_out_digits_faithfully() {
    let Digits { x, labels } = digits();
    let (model, graph) = fitted();
    let (reference, queries) = (x.slice(s![..FITTED, ..]), x.slice(s![FITTED.., ..]));
    let index = KnnIndex::new(reference, graph, 42).expect("index");
    let n_neighbors = model.params().params().n_neighbors;
    let neighbours = index.query(queries, n_neighbors).expect("query");
    let placed = model.transform(queries, &neighbours, 7).expect("transform");
    assert_eq!(placed.dim(), (x.nrows() - FITTED, 2));

    let combined = concatenate(Axis(0), &[model.embedding.view(), placed.view()]).expect("stack");
    let score = trustworthiness(x.view(), combined.view(), 10).expect("trustworthiness");
    // The nearest fitted point in the map should show the same digit.
    let mut agree = 0;
    for (i, point) in placed.axis_iter(Axis(0)).enumerate() {
        let nearest = model
            .embedding
            .axis_iter(Axis(0))
            .enumerate()
            .map(|(j, r)| ((&r - &point).mapv(|v| v * v).sum(), j))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .expect("fitted points")
            .1;
        agree += usize::from(labels[nearest] == labels[FITTED + i]);
    }
    let rate = agree as f64 / placed.nrows() as f64;
    println!(
        "transform of 297 held-out digits: trustworthiness of the combined map {score:.4}, \
         nearest fitted point has the same digit for {rate:.4}"
    );
    assert!(score >= 0.95, "trustworthiness {score}");
    assert!(rate >= 0.9, "label agreement {rate}");
}

#[test]
fn transform_of_fitted_points_lands_near_them() {
    let x = &digits().x;
    let (model, graph) = fitted();
    let reference = x.slice(s![..FITTED, ..]);
    let index = KnnIndex::new(reference, graph, 42).expect("index");
    let sample = reference.slice(s![..300, ..]);
    let neighbours = index.query(sample, 15).expect("query");
    let placed = model.transform(sample, &neighbours, 7).expect("transform");
    let extent = model
        .embedding
        .axis_iter(Axis(1))
        .map(|c| {
            c.fold(f64::NEG_INFINITY, |m, &v| m.max(v)) - c.fold(f64::INFINITY, |m, &v| m.min(v))
        })
        .fold(0.0, f64::max);
    let mut offsets: Vec<f64> = placed
        .axis_iter(Axis(0))
        .zip(model.embedding.axis_iter(Axis(0)))
        .map(|(p, e)| (&p - &e).mapv(|v| v * v).sum().sqrt() / extent)
        .collect();
    offsets.sort_by(f64::total_cmp);
    let (median, p90) = (offsets[150], offsets[270]);
    println!(
        "fitted points placed again: median offset {median:.4}, 90th percentile {p90:.4} of the map's extent"
    );
    assert!(median < 0.02 && p90 < 0.05, "median {median}, p90 {p90}");
}
