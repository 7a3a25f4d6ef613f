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

use std::collections::BTreeSet;

use serde_json::Value;

use support::cli::{assert_matches_schema, read_json, segscope};

use segscope::demo::store_spec;
use segscope::demo::synthetic_store::generate;
use segscope::track::IsoWeek;

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
    let run = out.join("runs").join("demo");
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
        stdout.contains(&run.join("report.html").display().to_string()),
        "{stdout}"
    );

    let doc = read_json(&run.join("segments.json"));
    assert_matches_schema(&doc);
    let ari = doc["quality"]["external"]["ari"].as_f64().expect("ari");
    assert!(ari >= 0.8, "ARI against the planted personas is {ari}");

    // The generator is deterministic: regenerate to know exactly what was planted.
    let planted_dir = dir.path().join("planted");
    let planted = generate(&store_spec(CUSTOMERS, SEED), &planted_dir).expect("generate");
    let changes = planted.changes.clone().expect("the demo plants changes");
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
    // The planted personas, plus the bots of the planted week (new ids, browsing only).
    assert_eq!(n, (CUSTOMERS + changes.bots.len()) as u64);
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

    // The weekly movement finds each planted change, in the week it starts and no other.
    let movement = read_json(&out.join("runs").join("demo-weekly").join("movement.json"));
    let planted_week = IsoWeek::of(changes.start).to_string();
    let alerts = movement["alerts"].as_array().expect("alerts");
    for alert in alerts {
        assert_eq!(alert["week"], planted_week.as_str(), "{alert:#}");
    }
    for (kind, ids) in [
        ("emerging_segment", &changes.emerging),
        ("migration", &changes.migrants),
        ("anomaly", &changes.bots),
    ] {
        let named: BTreeSet<&str> = alerts
            .iter()
            .filter(|a| a["kind"] == kind)
            .flat_map(|a| a["customers"].as_array().expect("customers"))
            .map(|c| c.as_str().expect("id"))
            .collect();
        let hits = ids.iter().filter(|id| named.contains(id.as_str())).count();
        assert!(
            hits as f64 >= 0.8 * ids.len() as f64,
            "{kind}: {hits} of {} planted customers alerted",
            ids.len()
        );
        assert!(
            stdout.contains(&format!("{hits}/{}", ids.len())),
            "the summary reports {kind}'s recall: {stdout}"
        );
    }
    assert!(
        stdout.contains(&format!(
            "planted changes from {planted_week} found by the alerts"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("segscope serve --data-dir"), "{stdout}");

    // Every row of the weekly assignments carries both maps' coordinates (a bug once wrote
    // the UMAP columns in the header only, and the run failed).
    let weekly = std::fs::read_to_string(out.join("runs/demo-weekly/weekly_assignments.csv"))
        .expect("weekly assignments");
    let mut lines = weekly.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    assert_eq!(&header[5..], ["pca_x", "pca_y", "umap_x", "umap_y"]);
    let mut rows = 0;
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), header.len(), "{line}");
        for cell in &cells[5..] {
            assert!(cell.parse::<f64>().is_ok_and(f64::is_finite), "{line}");
        }
        rows += 1;
    }
    assert!(
        rows > 8 * CUSTOMERS,
        "eight weeks of customers: {rows} rows"
    );

    // One assignment row per customer.
    let assignments = std::fs::read_to_string(run.join("assignments.csv")).expect("csv");
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
    let again = read_json(&run.join("segments.json"));
    assert_eq!(
        read_json(&out.join("runs").join("demo-weekly").join("movement.json")),
        movement,
        "a rerun with the same seed writes the same movement.json"
    );
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
