//! `segscope segment` end to end through the real binary: the Iris scenario, byte-identical
//! reruns across thread counts, the JSON Schema of segments.json, and every kind of bad
//! input the issue lists, each with its exit status and a message naming file, line and
//! column.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test loudly"
)]

mod support {
    pub mod cli;
}

use std::path::{Path, PathBuf};

use serde_json::Value;

use support::cli::{assert_matches_schema, read_json, segscope};

fn iris() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/iris.csv")
}

/// Runs `segment` on iris with extra flags; returns the output directory.
fn run_iris(out: &Path, extra: &[&str]) -> Value {
    segscope()
        .args(["segment", "--features"])
        .arg(iris())
        .args(["--id-column", "id", "--label-column", "species", "--out"])
        .arg(out)
        .args(extra)
        .assert()
        .success();
    read_json(&out.join("segments.json"))
}

#[test]
fn iris_scenario_species_separation_is_measured_and_explained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let doc = run_iris(dir.path(), &["--scale", "none", "--k", "3", "--seed", "42"]);
    assert_matches_schema(&doc);
    assert_eq!(doc["k"], 3);
    assert_eq!(doc["n_customers"], 150);
    let evr = doc["maps"]["pca"]["explained_variance_ratio"]
        .as_array()
        .expect("evr");
    assert!(
        (evr[0].as_f64().expect("f64") - 0.924_618_72).abs() < 1e-6,
        "{evr:?}"
    );
    assert!(
        (evr[1].as_f64().expect("f64") - 0.053_066_48).abs() < 1e-6,
        "{evr:?}"
    );
    let ari = doc["quality"]["external"]["ari"].as_f64().expect("ari");
    assert!(ari >= 0.70, "k-means ARI against species {ari}");
    for map in ["pca", "umap", "tsne"] {
        let sentence = doc["maps"][map]["label_separation"]
            .as_str()
            .expect("sentence");
        assert!(
            sentence.contains("setosa separates from the others; versicolor and virginica overlap"),
            "{map}: {sentence}"
        );
        let tw = doc["maps"][map]["trustworthiness"]
            .as_f64()
            .expect("trustworthiness");
        assert!(tw > 0.9, "{map} trustworthiness {tw}");
    }
    let report = std::fs::read_to_string(dir.path().join("report.html")).expect("report");
    assert!(report.contains(
        "In the PCA map, setosa separates from the others; versicolor and virginica overlap"
    ));
    assert!(report.contains("gaps between clusters are not distances"));
    assert!(
        !report.contains("http://") && !report.contains("https://"),
        "the report must not load anything"
    );
    let csv = std::fs::read_to_string(dir.path().join("assignments.csv")).expect("csv");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("id,segment,pca_x,pca_y,umap_x,umap_y,tsne_x,tsne_y")
    );
    assert_eq!(lines.count(), 150);
    let names: Vec<&str> = doc["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        names.len(),
        "segment names must be unique: {names:?}"
    );
    let run: Value = read_json(&dir.path().join("run.json"));
    assert_eq!(run["seed"], 42);
    for stage in [
        "ingest",
        "scale",
        "cluster",
        "stability",
        "map_pca",
        "map_umap",
        "map_tsne",
        "metrics",
        "narrative",
        "report",
    ] {
        assert!(
            run["timings"][stage].is_number(),
            "timing of {stage} missing: {}",
            run["timings"]
        );
    }
}

#[test]
fn same_input_and_seed_give_identical_files_with_one_or_two_threads() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    run_iris(a.path(), &["--seed", "7", "--threads", "1"]);
    run_iris(b.path(), &["--seed", "7", "--threads", "2"]);
    for file in ["segments.json", "assignments.csv"] {
        let left = std::fs::read(a.path().join(file)).expect("read");
        let right = std::fs::read(b.path().join(file)).expect("read");
        assert!(left == right, "{file} differs between 1 and 2 threads");
    }
    let c = tempfile::tempdir().expect("tempdir");
    run_iris(
        c.path(),
        &["--seed", "8", "--threads", "2", "--maps", "umap"],
    );
    let seven = read_json(&a.path().join("segments.json"));
    let eight = read_json(&c.path().join("segments.json"));
    assert_ne!(
        seven["maps"]["umap"], eight["maps"]["umap"],
        "another seed draws another UMAP"
    );
}

#[test]
fn automatic_k_records_every_candidate_and_the_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let doc = run_iris(dir.path(), &["--maps", "pca"]);
    assert_matches_schema(&doc);
    let selection = &doc["k_selection"];
    let ks: Vec<u64> = selection["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .map(|c| c["k"].as_u64().expect("k"))
        .collect();
    assert_eq!(ks, (2..=10).collect::<Vec<u64>>());
    let best = selection["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .map(|c| c["silhouette"].as_f64().expect("silhouette"))
        .fold(f64::NEG_INFINITY, f64::max);
    let chosen = selection["chosen"].as_u64().expect("chosen");
    let chosen_silhouette = selection["candidates"][(chosen - 2) as usize]["silhouette"]
        .as_f64()
        .expect("s");
    assert!(chosen_silhouette >= best - 0.01);
    assert_eq!(doc["k"], chosen);
    assert!(
        selection["rule"]
            .as_str()
            .expect("rule")
            .starts_with("highest mean silhouette")
    );
}

#[test]
fn gaussian_mixture_chooses_k_by_bic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let doc = run_iris(
        dir.path(),
        &["--method", "gmm", "--maps", "pca", "--k", "auto"],
    );
    assert_matches_schema(&doc);
    let candidates = doc["k_selection"]["candidates"]
        .as_array()
        .expect("candidates");
    let best = candidates
        .iter()
        .min_by(|a, b| {
            a["bic"]
                .as_f64()
                .expect("bic")
                .total_cmp(&b["bic"].as_f64().expect("bic"))
        })
        .expect("some");
    assert_eq!(doc["k"], best["k"]);
    assert!(
        doc["k_selection"]["rule"]
            .as_str()
            .expect("rule")
            .starts_with("lowest BIC")
    );
}

#[test]
fn hdbscan_reports_noise_apart_from_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let doc = run_iris(dir.path(), &["--method", "hdbscan", "--maps", "pca"]);
    assert_matches_schema(&doc);
    let noise = doc["noise"]["size"].as_u64().expect("noise");
    let in_segments: u64 = doc["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| s["size"].as_u64().expect("size"))
        .sum();
    assert_eq!(noise + in_segments, 150);
    let csv = std::fs::read_to_string(dir.path().join("assignments.csv")).expect("csv");
    assert!(csv.starts_with("id,segment,reason,pca_x,pca_y\n"));
    let empty_segments = csv
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(1) == Some(""))
        .count() as u64;
    assert_eq!(empty_segments, noise);
}

/// Writes `content` to a file in `dir` and runs `segment` on it with PCA only.
fn run_on(dir: &Path, name: &str, content: &[u8], extra: &[&str]) -> assert_cmd::assert::Assert {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write input");
    let k: &[&str] = if extra.contains(&"--k") {
        &[]
    } else {
        &["--k", "2"]
    };
    segscope()
        .args(["segment", "--features"])
        .arg(&path)
        .args(["--id-column", "id", "--maps", "pca", "--out"])
        .arg(dir.join("out"))
        .args(k)
        .args(extra)
        .assert()
}

fn stderr_of(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stderr).to_string()
}

#[test]
fn bad_input_gets_exit_status_3_and_names_file_line_and_column() {
    let cases: Vec<(&str, &[u8], &str)> = vec![
        ("empty.csv", b"", "empty.csv: the file is empty"),
        (
            "header.csv",
            b"id,a,b\n",
            "header.csv: only a header line, no data rows",
        ),
        (
            "unknown.csv",
            b"cust,a,b\nx,1,2\n",
            "no column named 'id' (id column); the header has: cust, a, b",
        ),
        (
            "text.csv",
            b"id,a,b\nx,1,2\ny,abc,3\n",
            "text.csv: line 3, column 'a': 'abc' is not a number",
        ),
        (
            "dup.csv",
            b"id,a,b\nx,1,2\ny,2,3\nx,3,4\n",
            "dup.csv: line 4: id 'x' already appeared on line 2",
        ),
        ("semi.csv", b"id;a;b\nx;1;2\n", "looks ';'-delimited"),
        (
            "latin1.csv",
            b"id,a,b\nx,1,2\nJos\xe9,2,3\n",
            "latin1.csv: line 3, column id: not valid UTF-8",
        ),
        (
            "ragged.csv",
            b"id,a,b\nx,1,2\ny,2\n",
            "ragged.csv: line 3: 2 cells, but the header has 3 columns",
        ),
        (
            "allmissing.csv",
            b"id,a,b\nx,,2\ny,NA,3\n",
            "none of the 2 data rows is usable (2 with a missing value)",
        ),
        (
            "constant.csv",
            b"id,a,b\nx,1,2\ny,1,2\nz,1,2\n",
            "every feature column is constant (a, b)",
        ),
        (
            "fewer.csv",
            b"id,a,b\nx,1,2\ny,2,3\nz,3,1\n",
            "3 segments asked for, but there are only 3 customers",
        ),
        (
            "quote.csv",
            b"id,a,b\nx,1,2\n\"y,2,3\n",
            "quote.csv: line 3",
        ),
    ];
    for (name, content, expected) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let extra: &[&str] = if name == "fewer.csv" {
            &["--k", "3"]
        } else {
            &[]
        };
        let assert = run_on(dir.path(), name, content, extra);
        let stderr = stderr_of(&assert);
        assert.code(3);
        assert!(
            stderr.contains(expected),
            "{name}: expected '{expected}' in: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name} panicked: {stderr}");
        assert!(
            !dir.path().join("out/segments.json").exists(),
            "{name}: no output on failure"
        );
    }
}

#[test]
fn missing_and_non_finite_values_drop_rows_and_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut content = String::from("\u{feff}id,a,b,c\n");
    for i in 0..40 {
        content.push_str(&format!("c{i},{},{},{}\n", i % 7, (i * 3) % 11, 5));
    }
    content.push_str("m1,,1,5\nm2,NaN,2,5\nm3,inf,3,5\nm4,2,null,5\n");
    run_on(dir.path(), "gaps.csv", content.as_bytes(), &[]).success();
    let doc = read_json(&dir.path().join("out/segments.json"));
    assert_matches_schema(&doc);
    assert_eq!(doc["n_customers"], 40);
    assert_eq!(doc["input"]["rows_read"], 44);
    assert_eq!(doc["input"]["rows_dropped"]["missing value"], 3);
    assert_eq!(doc["input"]["rows_dropped"]["non-finite value"], 1);
    assert_eq!(doc["input"]["examples"]["missing value"][0]["line"], 42);
    assert_eq!(doc["input"]["examples"]["missing value"][0]["column"], "a");
    assert_eq!(doc["input"]["examples"]["non-finite value"][0]["line"], 44);
    // The BOM did not leak into the id column's name, and the constant column c was dropped.
    assert_eq!(doc["features"], serde_json::json!(["a", "b"]));
    assert_eq!(doc["input"]["dropped_columns"][0]["column"], "c");
    let kinds: Vec<&str> = doc["caveats"]
        .as_array()
        .expect("caveats")
        .iter()
        .map(|c| c["kind"].as_str().expect("kind"))
        .collect();
    assert!(kinds.contains(&"dropped_rows"), "{kinds:?}");
}

#[test]
fn configuration_usage_and_output_errors_have_their_own_exit_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[kmeans]\nn_inits = 3\n").expect("write");
    let assert = run_on(
        dir.path(),
        "ok.csv",
        b"id,a,b\nx,1,2\ny,2,3\nz,3,1\nw,5,5\n",
        &["--config", config.to_str().expect("utf8")],
    );
    let stderr = stderr_of(&assert);
    assert.code(4);
    assert!(stderr.contains("n_inits"), "{stderr}");

    let assert = run_on(
        dir.path(),
        "ok.csv",
        b"id,a,b\nx,1,2\ny,2,3\nz,3,1\nw,5,5\n",
        &["--method", "pam"],
    );
    let stderr = stderr_of(&assert);
    assert.code(2);
    assert!(
        stderr.contains("'pam' is not a clustering method; use one of: kmeans, gmm, hdbscan"),
        "{stderr}"
    );

    std::fs::write(
        dir.path().join("blocker"),
        b"a file where the output directory should be",
    )
    .expect("write");
    let path = dir.path().join("ok.csv");
    let assert = segscope()
        .args(["segment", "--features"])
        .arg(&path)
        .args(["--id-column", "id", "--maps", "pca", "--k", "2", "--out"])
        .arg(dir.path().join("blocker"))
        .assert();
    let stderr = stderr_of(&assert);
    assert.code(5);
    assert!(stderr.contains("blocker"), "{stderr}");
}

#[test]
fn a_failed_run_leaves_the_previous_output_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    run_on(
        dir.path(),
        "good.csv",
        b"id,a,b\nx,1,2\ny,2,3\nz,3,1\nw,5,5\nv,6,1\n",
        &[],
    )
    .success();
    let before = std::fs::read(dir.path().join("out/segments.json")).expect("read");
    run_on(dir.path(), "bad.csv", b"id,a,b\nx,1,2\ny,abc,3\n", &[]).code(3);
    let after = std::fs::read(dir.path().join("out/segments.json")).expect("read");
    assert_eq!(before, after);
}

#[test]
fn large_runs_fit_on_a_sample_place_everyone_and_say_so() {
    let run = |out: &Path, threads: &str| {
        segscope()
            .env("SEGSCOPE__SAMPLING__FIT_ABOVE", "100")
            .env("SEGSCOPE__SAMPLING__FIT_SAMPLE", "100")
            .args(["segment", "--features"])
            .arg(iris())
            .args([
                "--id-column",
                "id",
                "--label-column",
                "species",
                "--k",
                "3",
                "--threads",
                threads,
                "--out",
            ])
            .arg(out)
            .assert()
            .success();
        read_json(&out.join("segments.json"))
    };
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let doc = run(a.path(), "1");
    run(b.path(), "2");
    assert_matches_schema(&doc);
    assert_eq!(doc["sampling"]["population"], 150);
    assert_eq!(doc["sampling"]["fit_sample"], 100);
    let sizes: u64 = doc["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| s["size"].as_u64().expect("size"))
        .sum();
    assert_eq!(sizes, 150, "everyone is placed in a segment");
    let kinds: Vec<&str> = doc["caveats"]
        .as_array()
        .expect("caveats")
        .iter()
        .map(|c| c["kind"].as_str().expect("kind"))
        .collect();
    assert!(kinds.contains(&"sampled"), "{kinds:?}");
    let csv = std::fs::read_to_string(a.path().join("assignments.csv")).expect("csv");
    assert_eq!(csv.lines().count(), 151);
    assert!(
        csv.lines()
            .skip(1)
            .all(|l| l.split(',').skip(1).all(|cell| !cell.is_empty())),
        "every customer has a segment and coordinates in every map"
    );
    for file in ["segments.json", "assignments.csv"] {
        let left = std::fs::read(a.path().join(file)).expect("read");
        let right = std::fs::read(b.path().join(file)).expect("read");
        assert!(
            left == right,
            "{file} differs between 1 and 2 threads on the sampled path"
        );
    }
}
