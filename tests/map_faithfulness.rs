//! The maps are as faithful as the reference tools on scikit-learn's digits (1,797 x 64,
//! raw): trustworthiness (k = 10) at least 0.975 for UMAP (umap-learn gets 0.987) and 0.98
//! for t-SNE with either repulsion method (openTSNE gets 0.992), measured with the crate's
//! own trustworthiness, which matches scikit-learn's (tests/validity_vs_sklearn.rs).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test loudly"
)]

use std::path::Path;

use ndarray::Array2;
use segscope::analysis::knn::exact_knn;
use segscope::analysis::maps::tsne::{Repulsion, RepulsionMethod, TsneParams, fit_tsne};
use segscope::analysis::maps::umap::{UmapParams, fit_umap};
use segscope::analysis::progress::NoProgress;
use segscope::analysis::validity::trustworthiness;
use segscope::ingest::{FeatureTableSpec, read_feature_table};

fn load(relative: &str, label: &str) -> Array2<f64> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    let spec = FeatureTableSpec {
        id_column: "id".into(),
        label_column: Some(label.into()),
        delimiter: b',',
    };
    let table = read_feature_table(&path, &spec).expect("fixture reads");
    // digits has constant pixel columns, which ingest drops; they carry no distance anyway.
    table.values
}

fn umap_trustworthiness(x: &Array2<f64>) -> f64 {
    let params = UmapParams::default()
        .validate()
        .expect("defaults are valid");
    let knn = exact_knn(x.view(), params.params().n_neighbors - 1).expect("knn");
    let y = fit_umap(x.view(), &knn, &params, 42, &NoProgress).expect("umap");
    trustworthiness(x.view(), y.embedding.view(), 10).expect("trustworthiness")
}

#[test]
fn umap_on_digits_is_as_faithful_as_umap_learn() {
    let x = load("tests/fixtures/digits.csv", "digit");
    assert_eq!(x.nrows(), 1797);
    let score = umap_trustworthiness(&x);
    assert!(score >= 0.975, "UMAP trustworthiness on digits {score}");
}

/// Iris splits into two connected components (setosa and the rest), so this also covers
/// UMAP's initialisation of a disconnected graph.
#[test]
fn umap_on_iris_handles_two_components() {
    let x = load("examples/iris.csv", "species");
    let score = umap_trustworthiness(&x);
    assert!(score >= 0.95, "UMAP trustworthiness on iris {score}");
}

#[test]
fn tsne_on_digits_is_as_faithful_as_opentsne() {
    let x = load("tests/fixtures/digits.csv", "digit");
    let map = fit_tsne(x.view(), &TsneParams::default(), 42, &NoProgress).expect("tsne");
    assert_eq!(map.perplexity, 30.0);
    assert_eq!(map.repulsion, RepulsionMethod::BarnesHut);
    let score = trustworthiness(x.view(), map.embedding.view(), 10).expect("trustworthiness");
    assert!(score >= 0.98, "t-SNE trustworthiness on digits {score}");
}

/// FFT interpolation is what large maps use; digits is small for it (its grid errors are
/// largest on sparse maps), so this is the demanding case for its quality.
#[test]
fn tsne_with_fft_interpolation_on_digits_is_as_faithful_as_opentsne() {
    let x = load("tests/fixtures/digits.csv", "digit");
    let params = TsneParams {
        repulsion: Repulsion::Fft,
        ..TsneParams::default()
    };
    let map = fit_tsne(x.view(), &params, 42, &NoProgress).expect("tsne");
    assert_eq!(map.repulsion, RepulsionMethod::Fft);
    let score = trustworthiness(x.view(), map.embedding.view(), 10).expect("trustworthiness");
    assert!(score >= 0.98, "FFT t-SNE trustworthiness on digits {score}");
}
