//! `segscope track` end to end on the demo's synthetic store with planted changes (an
//! emerging micro-segment, a migration and a bot burst from week 6 of 8 tracked), on a
//! hand-made store that repeats itself every week, and on bad input.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test loudly"
)]

mod support {
    #[allow(dead_code, reason = "shared helpers; this file uses some")]
    pub mod cli;
    pub mod openai_stub;
}

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use segscope::analysis::progress::NoProgress;
use segscope::demo::store_spec;
use segscope::demo::synthetic_store::{PlantedTruth, generate};
use segscope::domain::MapMethod;
use segscope::narrative::figures::Figure;
use segscope::narrative::grounding::check_numbers;
use segscope::settings::Settings;
use segscope::track::summary::{movement_catalogue, summarize};
use segscope::track::{MovementDocument, TrackRequest, WeekRange, run_track};
use serde_json::{Value, json};
use support::cli::{read_json, segscope};

/// Customers of the planted store: 2% emerging is 20 people.
const CUSTOMERS: usize = 1000;
const SEED: u64 = 7;
/// 12 weeks of browsing ending 2026-W47; `lapsed_home` stops browsing after week 8, so the
/// tracked weeks are the first eight, with the changes planted from week 6 (2026-W41).
const WEEKS: &str = "2026-W36..2026-W43";
const PLANTED_WEEK: &str = "2026-W41";

struct Planted {
    _dir: tempfile::TempDir,
    data: PathBuf,
    out: PathBuf,
    truth: PlantedTruth,
    document: MovementDocument,
    seconds: f64,
}

fn settings() -> Settings {
    let mut s = Settings::load(None).expect("settings");
    s.run.seed = SEED;
    s.track.browsing_window_weeks = 1;
    s
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

fn track_into(data: &Path, out: &Path) -> (MovementDocument, f64) {
    let request = TrackRequest {
        transactions: vec![data.join("transactions.csv.gz")],
        events: vec![data.join("events.csv")],
        weeks: Some(WEEKS.parse::<WeekRange>().expect("range")),
        maps: vec![MapMethod::Pca],
        settings: settings(),
        out_dir: out.to_path_buf(),
    };
    let rt = runtime();
    let started = std::time::Instant::now();
    let run = run_track(&request, rt.handle(), &NoProgress).expect("track runs");
    (run.document, started.elapsed().as_secs_f64())
}

fn planted() -> &'static Planted {
    static PLANTED: OnceLock<Planted> = OnceLock::new();
    PLANTED.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let spec = store_spec(CUSTOMERS, SEED);
        let started = std::time::Instant::now();
        let store = generate(&spec, &data).expect("store");
        eprintln!("generate: {:.2}s", started.elapsed().as_secs_f64());
        let out = dir.path().join("out");
        let (document, seconds) = track_into(&data, &out);
        eprintln!("track: {seconds:.2}s");
        Planted {
            _dir: dir,
            data,
            out,
            truth: store.changes.expect("changes planted"),
            document,
            seconds,
        }
    })
}

fn recall(found: &BTreeSet<String>, planted: &[String]) -> f64 {
    planted.iter().filter(|id| found.contains(*id)).count() as f64 / planted.len() as f64
}

fn alerts_of<'a>(doc: &'a Value, kind: &str) -> Vec<&'a Value> {
    doc["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["kind"] == kind)
        .collect()
}

fn customers_of(alerts: &[&Value]) -> BTreeSet<String> {
    alerts
        .iter()
        .flat_map(|a| a["customers"].as_array().expect("customers").iter())
        .map(|c| c.as_str().expect("id").to_string())
        .collect()
}

#[test]
fn planted_changes_are_alerted_in_their_week_and_no_other_week_alerts() {
    let p = planted();
    let doc = read_json(&p.out.join("movement.json"));
    eprintln!("tracked in {:.2}s", p.seconds);
    for alert in doc["alerts"].as_array().expect("alerts") {
        eprintln!(
            "{} {} segment {} customers {} evidence {}",
            alert["week"],
            alert["kind"],
            alert["segment"],
            alert["customers"].as_array().map_or(0, Vec::len),
            alert["evidence"]
        );
    }
    assert_eq!(p.document.weeks.len(), 8);
    let other_weeks: Vec<&Value> = doc["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["week"] != PLANTED_WEEK)
        .collect();
    assert!(
        other_weeks.is_empty(),
        "alerts outside the planted week: {other_weeks:#?}"
    );

    let anomaly = customers_of(&alerts_of(&doc, "anomaly"));
    assert_eq!(
        recall(&anomaly, &p.truth.bots),
        1.0,
        "every bot is an anomaly"
    );
    assert!(
        anomaly.len() <= p.truth.bots.len() + 2,
        "few customers besides the bots are flagged: {}",
        anomaly.len()
    );
    let migration = alerts_of(&doc, "migration");
    let migrated = customers_of(&migration);
    let r = recall(&migrated, &p.truth.migrants);
    assert!(
        r >= 0.8,
        "migration recall {r} ({} alerts)",
        migration.len()
    );
    let emerging = alerts_of(&doc, "emerging_segment");
    let found = customers_of(&emerging);
    let r = recall(&found, &p.truth.emerging);
    assert!(r >= 0.8, "emerging recall {r} ({} alerts)", emerging.len());
    assert!(
        emerging
            .iter()
            .any(|a| a["evidence"]["novelty"]["token"] == "pets"),
        "the emerging group is described by what it browses"
    );
    // Bots are kept out of the segments.
    let csv = std::fs::read_to_string(p.out.join("weekly_assignments.csv")).expect("csv");
    let bot_rows: Vec<&str> = csv
        .lines()
        .filter(|l| l.starts_with(PLANTED_WEEK))
        .filter(|l| {
            p.truth
                .bots
                .iter()
                .any(|b| l.split(',').nth(1) == Some(b.as_str()))
        })
        .collect();
    assert_eq!(bot_rows.len(), p.truth.bots.len());
    assert!(
        bot_rows
            .iter()
            .all(|l| l.split(',').nth(2) == Some("") && l.contains(",anomaly,"))
    );
}

#[test]
fn movement_json_matches_its_schema_and_transitions_add_up() {
    let p = planted();
    let doc = read_json(&p.out.join("movement.json"));
    let schema =
        read_json(&Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/movement.schema.json"));
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "movement.json breaks its schema: {errors:#?}"
    );

    // Segment of every customer per week, from the CSV.
    let csv = std::fs::read_to_string(p.out.join("weekly_assignments.csv")).expect("csv");
    let mut weeks: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for line in csv.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        if !cells[2].is_empty() {
            weeks
                .entry(cells[0].to_string())
                .or_default()
                .insert(cells[1].to_string(), cells[2].to_string());
        }
    }
    let transitions = doc["transitions"].as_array().expect("transitions");
    assert_eq!(transitions.len(), 7);
    for t in transitions {
        let from = &weeks[t["from_week"].as_str().expect("week")];
        let to = &weeks[t["to_week"].as_str().expect("week")];
        let both = from.keys().filter(|id| to.contains_key(*id)).count() as u64;
        let flows: u64 = t["flows"]
            .as_array()
            .expect("flows")
            .iter()
            .map(|f| f["count"].as_u64().expect("count"))
            .sum();
        assert_eq!(flows, both, "flows add up to the customers in both weeks");
        assert_eq!(t["customers_in_both"].as_u64(), Some(both));
        let entered: u64 = t["entered"]
            .as_array()
            .expect("entered")
            .iter()
            .map(|f| f["count"].as_u64().expect("count"))
            .sum();
        assert_eq!(entered, to.len() as u64 - both);
    }
}

#[test]
fn each_week_after_the_first_has_a_grounded_summary_naming_its_alerts() {
    let p = planted();
    let doc = read_json(&p.out.join("movement.json"));
    let written = doc["summaries"].as_array().expect("summaries");
    let summaries = summarize(&p.document);
    let catalogue = movement_catalogue(&summaries);
    assert_eq!(written.len(), 7);
    for (json, s) in written.iter().zip(&summaries) {
        assert_eq!(json["week"], s.summary.week.to_string());
        assert_eq!(json["text"], s.summary.text.as_str());
        let keys: Vec<String> = json["figures"]
            .as_array()
            .expect("figures")
            .iter()
            .map(|k| k.as_str().expect("key").to_string())
            .collect();
        let cited = catalogue.cited(&keys);
        assert_eq!(cited.len(), keys.len(), "every key is in the catalogue");
        assert_eq!(check_numbers(&s.summary.text, &cited), []);
    }
    let planted_week = written
        .iter()
        .find(|s| s["week"] == PLANTED_WEEK)
        .expect("planted week summarised");
    let text = planted_week["text"].as_str().expect("text");
    eprintln!("{text}");
    let n_alerts = alerts_of(&doc, "anomaly").len()
        + alerts_of(&doc, "migration").len()
        + alerts_of(&doc, "drift").len()
        + alerts_of(&doc, "emerging_segment").len();
    assert_eq!(text.matches(" alert").count(), n_alerts);
    for kind in ["Anomaly alert", "Migration alert", "Emerging segment alert"] {
        assert!(text.contains(kind), "{kind} missing from: {text}");
    }
}

#[test]
fn psi_matches_hand_computed_values() {
    // (0.4 − 0.5)·ln(0.4/0.5) + (0.6 − 0.5)·ln(0.6/0.5)
    let expected = 0.1 * (0.5f64 / 0.4).ln() + 0.1 * (0.6f64 / 0.5).ln();
    assert!((segscope::track::stats::psi(&[0.5, 0.5], &[0.4, 0.6]) - expected).abs() < 1e-12);
    assert!((expected - 0.040_546_5).abs() < 1e-6);
    // The week-over-week share PSI in movement.json is that formula on its own shares.
    let doc = read_json(&planted().out.join("movement.json"));
    let shares = doc["shares"].as_array().expect("shares");
    for (w, entry) in doc["psi"]["shares"]
        .as_array()
        .expect("psi")
        .iter()
        .enumerate()
    {
        let s = |i: usize| -> Vec<f64> {
            shares[i]["segments"]
                .as_array()
                .expect("segments")
                .iter()
                .map(|x| x["share"].as_f64().expect("share"))
                .collect()
        };
        let by_hand: f64 = s(w)
            .iter()
            .zip(s(w + 1))
            .map(|(e, a)| {
                let (e, a) = (e.max(1e-4), a.max(1e-4));
                (a - e) * (a / e).ln()
            })
            .sum();
        let psi = entry["psi"].as_f64().expect("psi");
        assert!(
            (psi - by_hand).abs() < 1e-12,
            "week {w}: {psi} vs {by_hand}"
        );
    }
}

#[test]
fn same_seed_gives_byte_identical_movement() {
    let p = planted();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, seconds) = track_into(&p.data, dir.path());
    eprintln!("second run: {seconds:.2}s");
    let a = std::fs::read(p.out.join("movement.json")).expect("first");
    let b = std::fs::read(dir.path().join("movement.json")).expect("second");
    assert!(a == b, "movement.json differs between identical runs");
    let a = std::fs::read(p.out.join("weekly_assignments.csv")).expect("first");
    let b = std::fs::read(dir.path().join("weekly_assignments.csv")).expect("second");
    assert!(
        a == b,
        "weekly_assignments.csv differs between identical runs"
    );
    let run = read_json(&dir.path().join("run.json"));
    assert_eq!(run["command"], "track");
    assert_eq!(run["seed"], SEED);
    assert_eq!(run["inputs"].as_object().map(|m| m.len()), Some(2));
}

/// Three kinds of browser whose every week is the week before shifted by seven days.
fn repeating_events(dir: &Path) -> PathBuf {
    let mut text = String::from(
        "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n",
    );
    let kinds = [
        ("electronics.smartphone", "apple", 12, true),
        ("apparel.shoes", "nike", 4, false),
        ("sport.bicycle", "trek", 8, true),
    ];
    let monday = chrono::NaiveDate::from_ymd_opt(2026, 10, 5).expect("date");
    for week in 0..4u64 {
        for (k, (category, brand, views, buys)) in kinds.iter().enumerate() {
            for c in 0..12u64 {
                let user = 100 + k as u64 * 100 + c;
                let day = monday + chrono::Days::new(week * 7 + c % 5);
                for v in 0..(*views + c as usize % 3) {
                    text.push_str(&format!(
                        "{day} 10:{v:02}:00 UTC,view,{k}{v},1,{category},{brand},10.0,{user},s{user}w{week}\n"
                    ));
                }
                if *buys {
                    text.push_str(&format!(
                        "{day} 11:00:00 UTC,cart,{k}0,1,{category},{brand},10.0,{user},s{user}w{week}\n"
                    ));
                    text.push_str(&format!(
                        "{day} 11:01:00 UTC,purchase,{k}0,1,{category},{brand},10.0,{user},s{user}w{week}\n"
                    ));
                }
            }
        }
    }
    let path = dir.join("events.csv");
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn a_week_without_change_assigns_everyone_as_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = repeating_events(dir.path());
    let out = dir.path().join("out");
    segscope()
        .args(["track", "--events"])
        .arg(&events)
        .arg("--out")
        .arg(&out)
        .args([
            "--weeks",
            "2026-W41..2026-W44",
            "--fit-weeks",
            "2",
            "--seed",
            "3",
        ])
        .env("SEGSCOPE__TRACK__BROWSING_WINDOW_WEEKS", "1")
        .assert()
        .success();
    let csv = std::fs::read_to_string(out.join("weekly_assignments.csv")).expect("csv");
    let mut per_week: BTreeMap<&str, Vec<(&str, &str, &str)>> = BTreeMap::new();
    for line in csv.lines().skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        per_week.entry(c[0]).or_default().push((c[1], c[2], c[4]));
    }
    let weeks: Vec<&Vec<(&str, &str, &str)>> = per_week.values().collect();
    assert_eq!(weeks.len(), 4);
    assert_eq!(weeks[0].len(), 36);
    for w in &weeks[1..] {
        assert_eq!(
            *w, weeks[0],
            "same customers, same segments, same fit distances"
        );
    }
    let doc = read_json(&out.join("movement.json"));
    assert!(doc["alerts"].as_array().expect("alerts").is_empty());
    for t in doc["transitions"].as_array().expect("transitions") {
        assert!(
            t["flows"]
                .as_array()
                .expect("flows")
                .iter()
                .all(|f| f["from"] == f["to"])
        );
    }
}

/// By default tracking starts at the first week whose trailing browsing window lies wholly in
/// the data (before it the window is still filling, and its growing totals read as drift);
/// weeks asked for before that are tracked, with a note saying what their numbers measure.
#[test]
fn default_weeks_start_once_the_browsing_window_is_complete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = repeating_events(dir.path());
    let run = |out: &Path, weeks: Option<&str>| -> Value {
        let mut cmd = segscope();
        cmd.args(["track", "--events"])
            .arg(&events)
            .arg("--out")
            .arg(out)
            .args(["--fit-weeks", "1", "--seed", "3"])
            .env("SEGSCOPE__TRACK__BROWSING_WINDOW_WEEKS", "2");
        if let Some(weeks) = weeks {
            cmd.args(["--weeks", weeks]);
        }
        cmd.assert().success();
        read_json(&out.join("movement.json"))
    };
    let partial_note = |doc: &Value| {
        doc["notes"]
            .as_array()
            .expect("notes")
            .iter()
            .filter_map(Value::as_str)
            .any(|n| {
                n.starts_with("Weeks before 2026-W42 see only part of the 2-week browsing window")
            })
    };
    let default = run(&dir.path().join("default"), None);
    assert_eq!(
        default["weeks"],
        serde_json::json!(["2026-W42", "2026-W43", "2026-W44"])
    );
    assert!(!partial_note(&default), "{:#}", default["notes"]);
    assert!(default["alerts"].as_array().expect("alerts").is_empty());

    let early = run(&dir.path().join("early"), Some("2026-W41..2026-W44"));
    assert_eq!(early["weeks"].as_array().expect("weeks").len(), 4);
    assert!(partial_note(&early), "{:#}", early["notes"]);
}

#[test]
fn every_map_places_each_week_in_the_fit_weeks_frame_whatever_the_threads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = repeating_events(dir.path());
    let track = |threads: &str| {
        let out = dir.path().join(format!("out-{threads}"));
        segscope()
            .args(["--threads", threads, "track", "--events"])
            .arg(&events)
            .arg("--out")
            .arg(&out)
            .args(["--fit-weeks", "2", "--seed", "3", "--maps", "pca,umap,tsne"])
            .env("SEGSCOPE__TRACK__BROWSING_WINDOW_WEEKS", "1")
            .assert()
            .success();
        (
            std::fs::read_to_string(out.join("weekly_assignments.csv")).expect("csv"),
            std::fs::read_to_string(out.join("movement.json")).expect("movement"),
        )
    };
    let (csv, movement) = track("1");
    assert_eq!(
        csv.lines().next(),
        Some("week,id,segment,reason,fit_distance,pca_x,pca_y,umap_x,umap_y,tsne_x,tsne_y")
    );
    // The store repeats itself every week: every customer keeps their features, so every
    // map must put them where it put them the week before.
    let mut per_week: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for line in csv.lines().skip(1) {
        let (week, rest) = line.split_once(',').expect("week");
        let tsne_x = rest.rsplit(',').nth(1).expect("tsne_x");
        assert!(tsne_x.parse::<f64>().is_ok_and(f64::is_finite), "{line}");
        per_week.entry(week).or_default().push(rest);
    }
    let weeks: Vec<&Vec<&str>> = per_week.values().collect();
    assert_eq!(weeks.len(), 4);
    for w in &weeks[1..] {
        assert_eq!(
            *w, weeks[0],
            "same segments and the same coordinates on every map"
        );
    }
    let doc: Value = serde_json::from_str(&movement).expect("json");
    assert!(
        doc["notes"].as_array().expect("notes").iter().any(|n| n
            .as_str()
            .is_some_and(|n| n.contains("t-SNE map was fitted"))),
        "{movement}"
    );
    // Bit for bit the same with two threads.
    assert_eq!(track("2"), (csv, movement));
}

/// Runs `segscope track --events EVENTS --out OUT ARGS...`; its exit code and stderr.
fn track_failure(events: &Path, out: &Path, args: &[&str]) -> (Option<i32>, String) {
    let o = segscope()
        .args(["track", "--events"])
        .arg(events)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .expect("run");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn bad_input_gives_one_line_naming_the_argument() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = repeating_events(dir.path());
    let out = dir.path().join("out");
    // A malformed week label.
    let (code, err) = track_failure(&events, &out, &["--weeks", "2026-41..2026-W44"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--weeks") && err.contains("ISO week such as 2026-W41"),
        "{err}"
    );
    // A range outside the data.
    let (code, err) = track_failure(&events, &out, &["--weeks", "2025-W01..2025-W05"]);
    assert_eq!(code, Some(3));
    assert!(
        err.contains("--weeks 2025-W01..2025-W05") && err.contains("outside the data"),
        "{err}"
    );
    // More fit weeks than weeks.
    let (code, err) = track_failure(&events, &out, &["--fit-weeks", "4"]);
    assert_eq!(code, Some(3));
    assert!(err.contains("--fit-weeks 4"), "{err}");
    // An empty file.
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "").expect("write");
    let (code, err) = track_failure(&empty, &out, &[]);
    assert_eq!(code, Some(3));
    assert!(err.contains("empty.csv") && err.contains("empty"), "{err}");
    // No input at all.
    let o = segscope()
        .args(["track", "--out"])
        .arg(&out)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_refit_on_an_unchanged_store_keeps_every_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = repeating_events(dir.path());
    let out = dir.path().join("out");
    segscope()
        .args(["track", "--events"])
        .arg(&events)
        .arg("--out")
        .arg(&out)
        .args(["--fit-weeks", "1", "--refit-every", "1", "--seed", "3"])
        .env("SEGSCOPE__TRACK__BROWSING_WINDOW_WEEKS", "1")
        .assert()
        .success();
    let doc = read_json(&out.join("movement.json"));
    let refits = doc["refits"].as_array().expect("refits");
    let applies: Vec<&str> = refits
        .iter()
        .map(|r| r["applies_from"].as_str().expect("week"))
        .collect();
    assert_eq!(applies, ["2026-W43", "2026-W44"]);
    for r in refits {
        for m in r["matches"].as_array().expect("matches") {
            assert_eq!(m["continues"], m["id"], "{r}");
            assert_eq!(m["jaccard"], 1.0, "{r}");
        }
        assert!(r["splits"].as_array().expect("splits").is_empty());
        assert!(r["merges"].as_array().expect("merges").is_empty());
    }
    assert_eq!(
        doc["segments"].as_array().map(Vec::len),
        refits[0]["matches"].as_array().map(Vec::len),
        "no new ids"
    );
    let csv = std::fs::read_to_string(out.join("weekly_assignments.csv")).expect("csv");
    let mut per_week: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for line in csv.lines().skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        per_week.entry(c[0]).or_default().push((c[1], c[2]));
    }
    let weeks: Vec<&Vec<(&str, &str)>> = per_week.values().collect();
    for w in &weeks[1..] {
        assert_eq!(*w, weeks[0], "the same segment ids after each refit");
    }
}

/// Timing on a larger planted store (`cargo test --test cli_track -- --ignored --nocapture`):
/// prints generation time, tracking time per stage and whether the planted changes were found.
#[test]
#[ignore = "timing run, minutes at opt-level 1"]
fn timing_on_a_larger_store() {
    let customers: usize = std::env::var("TRACK_TIMING_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let spec = store_spec(customers, SEED);
    let started = std::time::Instant::now();
    let store = generate(&spec, &data).expect("store");
    eprintln!(
        "{customers} customers: generate {:.2}s ({} event lines, {} transaction lines)",
        started.elapsed().as_secs_f64(),
        store.counts.event_lines,
        store.counts.transaction_lines
    );
    let request = TrackRequest {
        transactions: vec![data.join("transactions.csv.gz")],
        events: vec![data.join("events.csv")],
        weeks: Some(WEEKS.parse::<WeekRange>().expect("range")),
        maps: vec![MapMethod::Pca],
        settings: settings(),
        out_dir: dir.path().join("out"),
    };
    let rt = runtime();
    let started = std::time::Instant::now();
    let run = run_track(&request, rt.handle(), &NoProgress).expect("track runs");
    eprintln!("track: {:.2}s", started.elapsed().as_secs_f64());
    for (stage, seconds) in &run.timings {
        eprintln!("  {stage}: {seconds:.2}s");
    }
    let truth = store.changes.expect("changes");
    let doc = read_json(&request.out_dir.join("movement.json"));
    for (kind, planted) in [
        ("anomaly", &truth.bots),
        ("migration", &truth.migrants),
        ("emerging_segment", &truth.emerging),
    ] {
        let found = customers_of(&alerts_of(&doc, kind));
        eprintln!("  {kind}: recall {:.3}", recall(&found, planted));
    }
    let weeks: BTreeSet<&str> = doc["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter_map(|a| a["week"].as_str())
        .collect();
    eprintln!("  alert weeks: {weeks:?}");
    for a in doc["alerts"].as_array().expect("alerts") {
        let evidence = a["evidence"].to_string();
        eprintln!(
            "  {} {} segment {} customers {}: {}",
            a["week"],
            a["kind"],
            a["segment"],
            a["customers"].as_array().map_or(0, Vec::len),
            &evidence[..evidence.len().min(300)]
        );
    }
}

#[test]
fn ask_what_changed_this_week_answers_with_the_weeks_summary_and_its_figures() {
    // Tracking up to the planted week makes it "this week".
    let p = planted();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let request = TrackRequest {
        transactions: vec![p.data.join("transactions.csv.gz")],
        events: vec![p.data.join("events.csv")],
        weeks: Some(
            format!("2026-W36..{PLANTED_WEEK}")
                .parse::<WeekRange>()
                .expect("range"),
        ),
        maps: vec![MapMethod::Pca],
        settings: settings(),
        out_dir: out.clone(),
    };
    let run = run_track(&request, runtime().handle(), &NoProgress).expect("track runs");
    let catalogue = movement_catalogue(&summarize(&run.document));

    let output = segscope()
        .args(["ask", "what changed this week?", "--json", "--run"])
        .arg(&out)
        .output()
        .expect("ask runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).expect("answer json");
    let text = answer["text"].as_str().expect("text");
    eprintln!("{text}");
    assert_eq!(answer["status"], "answered");
    assert!(text.starts_with(&format!("What changed in {PLANTED_WEEK}: ")));
    let doc = read_json(&out.join("movement.json"));
    let week_alerts: Vec<&Value> = doc["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["week"] == PLANTED_WEEK)
        .collect();
    assert!(!week_alerts.is_empty());
    assert_eq!(text.matches(" alert").count(), week_alerts.len());
    for kind in ["Anomaly alert", "Migration alert", "Emerging segment alert"] {
        assert!(text.contains(kind), "{kind} missing from: {text}");
    }
    let figures = answer["figures"].as_array().expect("figures");
    assert!(!figures.is_empty());
    for f in figures {
        let key = f["key"].as_str().expect("key");
        let known = catalogue
            .get(key)
            .unwrap_or_else(|| panic!("{key} is not in the figure catalogue"));
        assert_eq!(f["display"], known.display.as_str(), "{key}");
    }
    let cited: Vec<Figure> = figures
        .iter()
        .map(|f| Figure {
            key: f["key"].as_str().expect("key").to_string(),
            value: f["value"].as_f64().expect("value"),
            display: f["display"].as_str().expect("display").to_string(),
        })
        .collect();
    assert_eq!(check_numbers(text, &cited.iter().collect::<Vec<_>>()), []);
}

const MODEL_KEY: &str = "sk-track-test-0123456789";

fn summary_model(stub: &support::openai_stub::OpenAiStub) -> segscope::llm::OpenAiChat {
    let settings = segscope::llm::OpenAiChatSettings {
        base_url: stub.base_url.clone(),
        api_key: segscope::embedding::ApiKey::new(MODEL_KEY),
        model: "stub-summariser".into(),
        temperature: 0.2,
        max_tokens: 800,
        structured_output: true,
        timeout_secs: 2.0,
        max_retries: 1,
        backoff_initial_ms: 10,
        backoff_max_ms: 40,
        max_retry_after_secs: 5,
    };
    segscope::llm::OpenAiChat::with_env(&settings, 7, |_| None).expect("client")
}

/// The `<data>` block of a weekly summary request.
fn week_data(body: &Value) -> Value {
    let user = body["messages"][1]["content"]
        .as_str()
        .expect("user message");
    let inside = user
        .split("<data>")
        .nth(1)
        .and_then(|rest| rest.split("</data>").next())
        .expect("data block");
    serde_json::from_str(inside).expect("data is JSON")
}

/// A grounded answer: the first listed share, then every alert's customer count.
fn grounded_answer(body: &Value) -> support::openai_stub::ChatAnswer {
    let data = week_data(body);
    let figures = data["figures"].as_object().expect("figures");
    let (share_key, share) = figures
        .iter()
        .find(|(k, _)| k.ends_with(".share"))
        .expect("a share");
    let mut text = format!(
        "Segment shares held steady, one at {}.",
        share.as_str().unwrap()
    );
    let mut keys = vec![share_key.clone()];
    for alert in data["alerts"].as_array().expect("alerts") {
        let n = alert["alert"].as_u64().expect("n");
        let (key, shown) = figures
            .iter()
            .find(|(k, _)| k.ends_with(&format!(".alert.{n}.customers")))
            .expect("the alert's customers");
        text.push_str(&format!(
            " A {} alert concerns {} customers.",
            alert["kind"].as_str().unwrap().replace('_', " "),
            shown.as_str().unwrap()
        ));
        keys.push(key.clone());
    }
    support::openai_stub::ChatAnswer::Text(json!({"text": text, "figures": keys}).to_string())
}

/// With a model configured, each week's summary is the model's when it passes the checks
/// (every number a listed figure, one key per number, every alert named) and the built-in
/// one otherwise, with the reason recorded; no customer id ever reaches the model.
#[test]
fn a_models_weekly_summaries_are_kept_only_when_grounded() {
    use segscope::track::narrate::narrate_with_model;
    use support::openai_stub::{ChatAnswer, OpenAiStub};
    let planted = planted();
    let doc = &planted.document;
    let rt = runtime();
    let narrative = Settings::load(None).expect("settings").narrative;
    rt.block_on(async {
        let stub = OpenAiStub::start(MODEL_KEY, 4).await;
        // The planted week's first answer invents a number; its retry is grounded.
        let planted_week = PLANTED_WEEK.to_string();
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = std::sync::Arc::clone(&calls);
        stub.respond_with(move |body| {
            let data = week_data(body);
            let is_planted = body["messages"][1]["content"]
                .as_str()
                .is_some_and(|u| u.starts_with(&format!("Summarise week {planted_week} ")));
            if is_planted && seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                let (key, _) = data["figures"].as_object().unwrap().iter().next().unwrap();
                return ChatAnswer::Text(
                    json!({"text": "Shares moved by 97.5 points.", "figures": [key]}).to_string(),
                );
            }
            grounded_answer(body)
        });
        let model = summary_model(&stub);
        let n = narrate_with_model(&model, doc, &narrative).await;
        assert_eq!(n.summaries.len(), doc.summaries.len());
        assert!(n.summaries.iter().all(|s| s.narrator == "stub-summariser"));
        assert_eq!(n.record.model_weeks.len(), doc.summaries.len());
        assert!(n.record.kept_builtin.is_empty());
        // One request per week plus the planted week's retry, which quotes the problem.
        let requests = stub.chat_requests();
        assert_eq!(requests.len(), doc.summaries.len() + 1);
        assert_eq!(n.record.attempts as usize, requests.len());
        let retry = requests
            .iter()
            .find(|r| r["messages"].as_array().unwrap().len() == 4)
            .expect("a retry");
        assert!(
            retry["messages"][3]["content"]
                .as_str()
                .unwrap()
                .contains("\\\"97.5\\\" does not state"),
            "{retry}"
        );
        // The planted week's summary names its three alerts with grounded counts, and ask's
        // movement tool reads its figures back from the text.
        let summary = n
            .summaries
            .iter()
            .find(|s| s.week.to_string() == PLANTED_WEEK)
            .expect("planted week");
        assert_eq!(summary.figures.len(), 4, "{summary:?}");
        let stored = serde_json::to_value(summary).unwrap();
        let (_, figures) = segscope::ask::movement::summary_figures(&stored).expect("readable");
        let cited: Vec<&Figure> = figures.iter().collect();
        assert!(check_numbers(&summary.text, &cited).is_empty());
        // Aggregates only: no customer id of any alert is in any request.
        let sent = serde_json::to_string(&requests).unwrap();
        for alert in &doc.alerts {
            for id in &alert.customers {
                assert!(
                    !sent.contains(&format!("\"{id}\"")),
                    "customer {id} sent to the model"
                );
            }
        }
    });
    rt.block_on(async {
        // A model that never answers well keeps every built-in summary, with the reasons.
        let stub = OpenAiStub::start(MODEL_KEY, 4).await;
        stub.respond_with(|_| ChatAnswer::Text("Things changed a lot this week.".into()));
        let model = summary_model(&stub);
        let n = narrate_with_model(&model, doc, &narrative).await;
        assert_eq!(n.summaries, doc.summaries);
        assert!(n.record.model_weeks.is_empty());
        assert_eq!(n.record.kept_builtin.len(), doc.summaries.len());
        assert!(
            n.record.kept_builtin[0].reasons[0]
                .starts_with("The answer is not the JSON object asked for"),
            "{:?}",
            n.record.kept_builtin[0]
        );
        let per_week = 1 + narrative.regenerations as usize;
        assert_eq!(stub.chat_requests().len(), doc.summaries.len() * per_week);
    });
}
