//! `segscope demo` end to end through the real binary: the planted segments are recovered
//! (ARI of at least 0.8 at default settings), every reported count adds up against what the
//! generator planted, the output matches its JSON Schema, each customer is one point in the
//! embedded Qdrant store, and a rerun leaves the store without duplicates.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test loudly"
)]

mod support {
    pub mod cli;
}

use serde_json::Value;

use support::cli::{assert_matches_schema, read_json, segscope};

use segscope::demo::synthetic_store::{StoreSpec, generate};

/// Small enough for a debug build, large enough for six planted segments of 100+.
const CUSTOMERS: usize = 1_200;
const SEED: u64 = 42;

fn count(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no count at {path}"))
}

fn skipped(source: &Value, reason: &str) -> u64 {
    source["skipped"]
        .get(reason)
        .map_or(0, |s| s["count"].as_u64().expect("count"))
}

#[test]
fn demo_recovers_planted_segments_and_every_count_adds_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("demo");
    let assert = segscope()
        .args([
            "demo",
            "--customers",
            &CUSTOMERS.to_string(),
            "--seed",
            &SEED.to_string(),
            "--out",
        ])
        .arg(&out)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).to_string();
    assert!(
        stdout.contains("agreement with the planted personas: ARI"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&out.join("report.html").display().to_string()),
        "{stdout}"
    );

    let doc = read_json(&out.join("segments.json"));
    assert_matches_schema(&doc);
    let ari = doc["quality"]["external"]["ari"].as_f64().expect("ari");
    assert!(ari >= 0.8, "ARI against the planted personas is {ari}");

    // The generator is deterministic: regenerate to know exactly what was planted.
    let planted_dir = dir.path().join("planted");
    let planted = generate(&StoreSpec::demo(CUSTOMERS, SEED), &planted_dir).expect("generate");
    let c = &planted.counts;
    let store = &doc["store"];
    let tx = &store["transactions"];
    let ev = &store["events"];

    // Every line is either used or skipped for one counted reason.
    for source in [tx, ev] {
        let skipped_total: u64 = source["skipped"]
            .as_object()
            .expect("skipped")
            .values()
            .map(|s| s["count"].as_u64().expect("count"))
            .sum();
        assert_eq!(
            count(source, "/rows_used") + skipped_total,
            count(source, "/rows_read"),
            "{source:#}"
        );
    }
    assert_eq!(count(tx, "/rows_read"), c.transaction_lines);
    assert_eq!(count(ev, "/rows_read"), c.event_lines);
    assert_eq!(skipped(tx, "duplicate_row"), c.duplicate_transaction_lines);
    assert_eq!(skipped(tx, "missing_customer_id"), c.lines_without_customer);
    assert_eq!(skipped(tx, "unparseable_price"), c.unparseable_prices);
    assert_eq!(skipped(ev, "duplicate_row"), c.duplicate_event_lines);
    assert_eq!(skipped(ev, "wrong_field_count"), c.short_event_lines);
    assert_eq!(
        skipped(ev, "unparseable_timestamp"),
        c.unparseable_event_times
    );

    // Everyone planted is in the run, once, and the coverage adds up.
    let customers = &store["customers"];
    let n = doc["n_customers"].as_u64().expect("n");
    assert_eq!(n, CUSTOMERS as u64);
    assert_eq!(count(customers, "/total"), n);
    assert_eq!(
        count(customers, "/both")
            + count(customers, "/transactions_only")
            + count(customers, "/events_only"),
        n
    );
    assert!(count(customers, "/transactions_only") > 0 && count(customers, "/events_only") > 0);

    // Segments partition the customers; shares and revenue shares add up to one.
    let segments = doc["segments"].as_array().expect("segments");
    let sizes: u64 = segments.iter().map(|s| s["size"].as_u64().unwrap()).sum();
    let noise = doc["noise"]["size"].as_u64().unwrap_or(0);
    assert_eq!(sizes + noise, n);
    let share: f64 = segments.iter().map(|s| s["share"].as_f64().unwrap()).sum();
    assert!((share - 1.0).abs() < 1e-9, "shares sum to {share}");
    let revenue: f64 = segments
        .iter()
        .map(|s| s["kpis"]["business"]["revenue_share"].as_f64().unwrap())
        .sum();
    assert!(
        (revenue - 1.0).abs() < 1e-9,
        "revenue shares sum to {revenue}"
    );
    let buyers: u64 = segments
        .iter()
        .map(|s| s["kpis"]["business"]["buyers"].as_u64().unwrap())
        .sum();
    assert_eq!(buyers, count(customers, "/buyers"));
    let mut names: Vec<&str> = segments
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), segments.len(), "segment names are unique");

    // One assignment row per customer.
    let assignments = std::fs::read_to_string(out.join("assignments.csv")).expect("csv");
    assert_eq!(assignments.lines().count() as u64, n + 1);

    // One point per customer was written; the engine's own count after a rerun is below.
    let points = count(store, "/store/points_written");
    assert_eq!(points, n);
    segscope()
        .args([
            "demo",
            "--customers",
            &CUSTOMERS.to_string(),
            "--seed",
            &SEED.to_string(),
            "--out",
        ])
        .arg(&out)
        .assert()
        .success();
    let again = read_json(&out.join("segments.json"));
    assert_eq!(
        again, doc,
        "a rerun with the same seed writes the same segments.json"
    );
    assert_eq!(
        stored_points(&out.join("store")),
        n,
        "the rerun added no points"
    );
}

/// Points in the demo's embedded Qdrant collection, counted by the engine itself.
fn stored_points(data_dir: &std::path::Path) -> u64 {
    use segscope::store::{CollectionSpec, ConfiguredStore, Distance, VectorSpec, VectorStore};
    let settings = segscope::settings::Settings::load_with_env(None, Vec::new()).unwrap();
    let spec = CollectionSpec {
        name: String::new(),
        vectors: vec![
            VectorSpec {
                name: "browsing".into(),
                dimensions: settings.embedding.local.dimensions,
                distance: Distance::Cosine,
            },
            VectorSpec {
                name: "rfm".into(),
                dimensions: 3,
                distance: Distance::Euclid,
            },
        ],
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = ConfiguredStore::open(&settings.store, data_dir, &spec)
            .await
            .unwrap();
        store.count().await.unwrap()
    })
}
