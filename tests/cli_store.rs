//! `segscope segment` over store data through the real binary: one file or both, `--as-of`,
//! byte-identical output across thread counts, and bad input with its exit status and a
//! message that names the file (and the line or column where there is one).

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

use predicates::str::contains;
use serde_json::Value;

use support::cli::{assert_matches_schema, read_json, segscope};

use segscope::demo::synthetic_store::{PlantedStore, StoreSpec, generate};

fn small_store(dir: &Path) -> PlantedStore {
    generate(&StoreSpec::demo(300, 7), dir).expect("generate")
}

/// Runs `segment` on store files with the given extra flags and returns segments.json.
fn run_store(out: &Path, files: &[(&str, &Path)], extra: &[&str]) -> Value {
    let mut cmd = segscope();
    cmd.arg("segment");
    for (flag, path) in files {
        cmd.arg(flag).arg(path);
    }
    cmd.arg("--out")
        .arg(out)
        .args(["--maps", "pca"])
        .args(extra)
        .assert()
        .success();
    read_json(&out.join("segments.json"))
}

#[test]
fn store_output_is_identical_across_thread_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_store(&dir.path().join("data"));
    let files = [
        ("--transactions", store.transactions.as_path()),
        ("--events", store.events.as_path()),
    ];
    let one = dir.path().join("one");
    let two = dir.path().join("two");
    let a = run_store(&one, &files, &["--threads", "1"]);
    run_store(&two, &files, &["--threads", "2"]);
    assert_matches_schema(&a);
    for file in ["segments.json", "assignments.csv"] {
        assert_eq!(
            std::fs::read(one.join(file)).unwrap(),
            std::fs::read(two.join(file)).unwrap(),
            "{file} differs between 1 and 2 threads"
        );
    }
    assert_eq!(a["store"]["reference"], "end_of_data");
    assert_eq!(a["store"]["reference_time"], "2026-11-22T23:59:59+00:00");
}

#[test]
fn transactions_alone_segment_on_rfm() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_store(&dir.path().join("data"));
    let out = dir.path().join("out");
    let doc = run_store(&out, &[("--transactions", &store.transactions)], &[]);
    assert_matches_schema(&doc);
    assert!(doc["store"].get("events").is_none());
    assert!(doc["store"].get("embedder").is_none());
    assert_eq!(doc["store"]["matrix"]["browsing_weight"], 0.0);
    let customers = &doc["store"]["customers"];
    assert_eq!(customers["events_only"], 0);
    assert_eq!(customers["total"], customers["transactions_only"]);
    // Every planted customer who bought (all personas but the window shoppers) is there.
    let buyers = store
        .truth
        .iter()
        .filter(|(_, persona)| *persona != "window_sports")
        .count();
    assert_eq!(doc["n_customers"].as_u64().unwrap() as usize, buyers);
}

#[test]
fn as_of_ignores_later_data_and_measures_recency_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_store(&dir.path().join("data"));
    let out = dir.path().join("out");
    let doc = run_store(
        &out,
        &[
            ("--transactions", store.transactions.as_path()),
            ("--events", store.events.as_path()),
        ],
        &["--as-of", "2026-10-31"],
    );
    assert_eq!(doc["store"]["reference"], "as_of");
    assert_eq!(doc["store"]["reference_time"], "2026-10-31T23:59:59+00:00");
    let later = doc["store"]["events"]["skipped"]["after_as_of"]["count"]
        .as_u64()
        .expect("events after the as-of date are counted");
    assert!(later > 0);
    let last = doc["store"]["events"]["last_time"].as_str().unwrap();
    assert!(last <= "2026-10-31T23:59:59Z", "{last}");
}

#[test]
fn segment_needs_some_input() {
    let dir = tempfile::tempdir().unwrap();
    segscope()
        .args(["segment", "--out"])
        .arg(dir.path())
        .assert()
        .code(2);
    segscope()
        .args([
            "segment",
            "--events",
            "e.csv",
            "--as-of",
            "last tuesday",
            "--out",
        ])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(contains("'last tuesday' is not a date"));
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn bad_store_files_name_the_file_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let empty = write(dir.path(), "empty.csv", "");
    segscope()
        .arg("segment")
        .arg("--events")
        .arg(&empty)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(3)
        .stderr(contains("empty.csv"));

    let wrong = write(
        dir.path(),
        "orders.csv",
        "Invoice,StockCode,Quantity,InvoiceDate,Price,Country\n1,A,1,2026-01-01 10:00:00,2.5,UK\n",
    );
    segscope()
        .arg("segment")
        .arg("--transactions")
        .arg(&wrong)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(3)
        .stderr(contains("orders.csv"))
        .stderr(contains("Customer ID"));

    let missing = dir.path().join("nowhere.csv");
    segscope()
        .arg("segment")
        .arg("--events")
        .arg(&missing)
        .arg("--out")
        .arg(&out)
        .assert()
        .failure()
        .stderr(contains("nowhere.csv"));
    assert!(
        !out.join("segments.json").exists(),
        "a failed run writes nothing"
    );
}
