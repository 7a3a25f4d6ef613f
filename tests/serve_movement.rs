//! `segscope serve` over a real tracked run: the movement API answers what `segscope track`
//! wrote (shares, each week's map points, flows between any two weeks, alert drill-down),
//! names the bad parameter when a request is wrong, and its event stream forwards the run's
//! live updates (and only this run's), drops the parsed files when one arrives, says
//! `reload` when updates were lost, and ends when the service stops.
//!
//! The planted track output is made once per binary (the demo's synthetic store with
//! changes from week 6, as tests/cli_track.rs uses) into one data directory every test
//! serves; a test that rewrites files copies the run under another id first.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test loudly"
)]

mod support {
    pub mod dashboard;
}

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use futures::StreamExt;
use segscope::serve::live::RunUpdate;
use serde_json::{Value, json};
use support::dashboard::{Running, make_track_run, settings, start};

const RUN: &str = "shop-track";

struct Planted {
    _dir: tempfile::TempDir,
    data_dir: PathBuf,
    run_dir: PathBuf,
    movement: Value,
    rows: Vec<Row>,
}

/// One row of `weekly_assignments.csv`.
#[derive(Debug, Clone)]
struct Row {
    week: String,
    id: String,
    segment: Option<u32>,
    reason: String,
    fit_distance: Option<f64>,
    x: f32,
    y: f32,
}

fn planted() -> &'static Planted {
    static PLANTED: OnceLock<Planted> = OnceLock::new();
    PLANTED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_path_buf();
        let run_dir = make_track_run(&data_dir, RUN);
        // A run without movement, and a folder that is not a run.
        let plain = data_dir.join("runs").join("plain");
        std::fs::create_dir_all(&plain).unwrap();
        std::fs::write(
            plain.join("segments.json"),
            r#"{"k": 1, "n_customers": 1, "method": "kmeans", "seed": 1, "narrator": "builtin", "segments": []}"#,
        )
        .unwrap();
        let movement = read_json(&run_dir.join("movement.json"));
        let rows = read_rows(&run_dir);
        Planted {
            _dir: dir,
            data_dir,
            run_dir,
            movement,
            rows,
        }
    })
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn read_rows(run_dir: &Path) -> Vec<Row> {
    let mut reader = csv::Reader::from_path(run_dir.join("weekly_assignments.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (week, id, segment, reason, distance, x, y) = (
        col("week"),
        col("id"),
        col("segment"),
        col("reason"),
        col("fit_distance"),
        col("pca_x"),
        col("pca_y"),
    );
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            Row {
                week: r[week].to_string(),
                id: r[id].to_string(),
                segment: r[segment].parse().ok(),
                reason: r[reason].to_string(),
                fit_distance: r[distance].parse().ok(),
                x: r[x].parse().unwrap(),
                y: r[y].parse().unwrap(),
            }
        })
        .collect()
}

fn weeks() -> Vec<String> {
    planted().movement["weeks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect()
}

fn rows_of(week: &str) -> Vec<&'static Row> {
    planted().rows.iter().filter(|r| r.week == week).collect()
}

async fn serve() -> Running {
    start(&planted().data_dir, settings(&[])).await
}

async fn get(url: &str) -> (u16, String, Vec<u8>) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    let media = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, media, response.bytes().await.unwrap().to_vec())
}

async fn get_json(url: &str) -> (u16, Value) {
    let (status, media, body) = get(url).await;
    assert!(media.starts_with("application/json"), "{url}: {media}");
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn the_document_and_every_weeks_points_are_what_track_wrote() {
    let planted = planted();
    let server = serve().await;
    let api = format!("{}/api/v1/runs/{RUN}", server.base);

    let (status, doc) = get_json(&format!("{api}/movement")).await;
    assert_eq!(status, 200);
    assert_eq!(doc, planted.movement);
    assert_eq!(doc["shares"], planted.movement["shares"]);
    assert_eq!(weeks().len(), 8);

    // The track-only folder is a run in the list, with its movement.
    let (_, list) = get_json(&format!("{}/api/v1/runs", server.base)).await;
    let listed = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == RUN)
        .expect("the tracked run is listed")
        .clone();
    let last = doc["shares"].as_array().unwrap().last().unwrap();
    assert_eq!(listed["method"], "track");
    assert_eq!(listed["movement"], true);
    assert_eq!(
        listed["k"],
        json!(doc["segments"].as_array().unwrap().len())
    );
    assert_eq!(
        listed["n_customers"],
        json!(last["customers"].as_u64().unwrap() + last["excluded"].as_u64().unwrap())
    );

    for week in weeks() {
        let rows = rows_of(&week);
        assert!(!rows.is_empty(), "{week}");
        // JSON pages: the week's customers in the file's order, tracked segment ids.
        let mut points = Vec::new();
        let mut offset = 0;
        loop {
            let (status, page) = get_json(&format!(
                "{api}/movement/weeks/{week}/points?map=pca&limit=300&offset={offset}"
            ))
            .await;
            assert_eq!(status, 200, "{page}");
            assert_eq!(
                (&page["week"], &page["method"], &page["run"]),
                (&json!(week), &json!("pca"), &json!(RUN))
            );
            assert_eq!(page["total"], json!(rows.len()));
            points.extend(page["points"].as_array().unwrap().iter().cloned());
            match page["next_offset"].as_u64() {
                Some(next) => offset = next,
                None => break,
            }
        }
        assert_eq!(points.len(), rows.len(), "{week}");
        for (point, row) in points.iter().zip(&rows) {
            assert_eq!(
                (&point["id"], &point["segment"]),
                (&json!(row.id), &json!(row.segment)),
                "{week}"
            );
            // f32 coordinates, as parsed from the same text.
            let coordinate = |c: &str| point[c].as_f64().unwrap() as f32;
            assert_eq!(
                (coordinate("x"), coordinate("y")),
                (row.x, row.y),
                "{}",
                row.id
            );
        }
        // Binary: the same points in the map endpoint's layout.
        let (status, media, body) = get(&format!(
            "{api}/movement/weeks/{week}/points?map=pca&format=binary"
        ))
        .await;
        assert_eq!((status, media.as_str()), (200, "application/octet-stream"));
        let n = rows.len();
        let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().unwrap());
        assert_eq!(&body[..4], b"SGPT");
        assert_eq!(u16::from_le_bytes([body[6], body[7]]), 2);
        assert_eq!((u32_at(8), u32_at(12), u32_at(16)), (n as u32, 0, n as u32));
        assert_eq!(body.len(), 24 + 8 * n + 2 * n);
        for (i, row) in rows.iter().enumerate() {
            let f = |at: usize| f32::from_le_bytes(body[at..at + 4].try_into().unwrap());
            assert_eq!((f(24 + 8 * i), f(28 + 8 * i)), (row.x, row.y));
            let at = 24 + 8 * n + 2 * i;
            let segment = u16::from_le_bytes([body[at], body[at + 1]]);
            assert_eq!(u32::from(segment), row.segment.unwrap_or(0), "{}", row.id);
        }
    }
    server.stop().await;
}

/// Flows from `from` to `to` counted from the weekly assignments as the tracker counts
/// them: customers in a segment both weeks, rate over the earlier week's segment.
fn count_flows(from: &str, to: &str) -> (Value, Value, Value, u64) {
    let before: BTreeMap<&str, u32> = rows_of(from)
        .iter()
        .filter_map(|r| Some((r.id.as_str(), r.segment?)))
        .collect();
    let after: BTreeMap<&str, u32> = rows_of(to)
        .iter()
        .filter_map(|r| Some((r.id.as_str(), r.segment?)))
        .collect();
    let mut sizes: BTreeMap<u32, u64> = BTreeMap::new();
    for s in before.values() {
        *sizes.entry(*s).or_default() += 1;
    }
    let mut flows: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    let mut entered: BTreeMap<u32, u64> = BTreeMap::new();
    for (id, b) in &after {
        match before.get(id) {
            Some(a) => *flows.entry((*a, *b)).or_default() += 1,
            None => *entered.entry(*b).or_default() += 1,
        }
    }
    let mut left: BTreeMap<u32, u64> = BTreeMap::new();
    for (id, a) in &before {
        if !after.contains_key(id) {
            *left.entry(*a).or_default() += 1;
        }
    }
    let counts = |m: &BTreeMap<u32, u64>| {
        json!(
            m.iter()
                .map(|(s, c)| json!({"segment": s, "count": c}))
                .collect::<Vec<_>>()
        )
    };
    let both = flows.values().sum();
    let flows = json!(
        flows
            .iter()
            .map(|((a, b), c)| json!({"from": a, "to": b, "count": c, "rate": *c as f64 / sizes[a] as f64}))
            .collect::<Vec<_>>()
    );
    (flows, counts(&entered), counts(&left), both)
}

#[tokio::test]
async fn flows_are_the_stored_transitions_or_counted_from_the_weekly_assignments() {
    let planted = planted();
    let server = serve().await;
    let api = format!("{}/api/v1/runs/{RUN}/movement", server.base);
    let weeks = weeks();
    for (i, transition) in planted.movement["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let (status, flows) = get_json(&format!(
            "{api}/flows?from={}&to={}",
            weeks[i],
            weeks[i + 1]
        ))
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            flows,
            json!({
                "run": RUN,
                "from_week": weeks[i],
                "to_week": weeks[i + 1],
                "source": "transitions",
                "customers_in_both": transition["customers_in_both"],
                "flows": transition["flows"],
                "entered": transition["entered"],
                "left": transition["left"],
            })
        );
        // The stored matrix is the one the weekly assignments give.
        let (counted, _, _, both) = count_flows(&weeks[i], &weeks[i + 1]);
        assert_eq!(flows["flows"], counted);
        assert_eq!(flows["customers_in_both"], json!(both));
    }
    for (a, b) in [(0, 2), (0, 7), (3, 6), (4, 6)] {
        let (status, flows) =
            get_json(&format!("{api}/flows?from={}&to={}", weeks[a], weeks[b])).await;
        assert_eq!(status, 200, "{flows}");
        let (counted, entered, left, both) = count_flows(&weeks[a], &weeks[b]);
        assert_eq!(
            flows,
            json!({
                "run": RUN,
                "from_week": weeks[a],
                "to_week": weeks[b],
                "source": "weekly_assignments",
                "customers_in_both": both,
                "flows": counted,
                "entered": entered,
                "left": left,
            })
        );
    }
    for (query, status, message) in [
        (
            format!("from={}&to={}", weeks[3], weeks[3]),
            400,
            format!("to: {} is not later than from ({})", weeks[3], weeks[3]),
        ),
        (
            format!("from={}&to={}", weeks[5], weeks[2]),
            400,
            format!("to: {} is not later than from ({})", weeks[2], weeks[5]),
        ),
        (
            format!("to={}", weeks[2]),
            400,
            "from: required (an ISO week such as 2026-W41)".to_string(),
        ),
        (
            format!("from=last&to={}", weeks[2]),
            400,
            "from: \"last\" is not an ISO week such as 2026-W41".to_string(),
        ),
        (
            format!("from={}&to=2026-W50", weeks[2]),
            404,
            format!(
                "to: run \"{RUN}\" has no week 2026-W50; its weeks are {} to {}",
                weeks[0], weeks[7]
            ),
        ),
    ] {
        let (got, body) = get_json(&format!("{api}/flows?{query}")).await;
        assert_eq!(
            (got, &body["error"]["message"]),
            (status, &json!(message)),
            "{query}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn an_alerts_drill_down_lists_its_customers_with_both_weeks_segments() {
    let planted = planted();
    let server = serve().await;
    let api = format!("{}/api/v1/runs/{RUN}/movement", server.base);
    let alerts = planted.movement["alerts"].as_array().unwrap();
    assert!(
        alerts.iter().any(|a| a["kind"] == "migration")
            && alerts.iter().any(|a| a["kind"] == "anomaly"),
        "the planted store raises migration and anomaly alerts: {alerts:?}"
    );
    let weeks = weeks();
    for (index, alert) in alerts.iter().enumerate() {
        let week = alert["week"].as_str().unwrap();
        let previous = weeks
            .iter()
            .position(|w| w == week)
            .unwrap()
            .checked_sub(1)
            .map(|at| weeks[at].clone());
        let this_week: BTreeMap<&str, &Row> = rows_of(week)
            .into_iter()
            .map(|r| (r.id.as_str(), r))
            .collect();
        let before: BTreeMap<&str, &Row> = previous
            .as_deref()
            .map(|p| rows_of(p).into_iter().map(|r| (r.id.as_str(), r)).collect())
            .unwrap_or_default();
        let mut listed = Vec::new();
        let mut offset = 0;
        loop {
            let (status, page) =
                get_json(&format!("{api}/alerts/{index}?limit=7&offset={offset}")).await;
            assert_eq!(status, 200, "{page}");
            let mut expected_alert = alert.clone();
            expected_alert.as_object_mut().unwrap().remove("customers");
            assert_eq!(page["alert"], expected_alert);
            assert_eq!(page["previous_week"], json!(previous));
            assert_eq!(
                page["total"],
                json!(alert["customers"].as_array().unwrap().len())
            );
            let summary = planted.movement["summaries"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["week"] == week)
                .map_or(Value::Null, |s| s["text"].clone());
            assert_eq!(page["summary"], summary);
            for c in page["customers"].as_array().unwrap() {
                let id = c["id"].as_str().unwrap();
                let row = this_week[id];
                assert_eq!(
                    c,
                    &json!({
                        "id": id,
                        "segment": row.segment,
                        "previous_segment": before.get(id).and_then(|r| r.segment),
                        "fit_distance": row.fit_distance,
                        "reason": (!row.reason.is_empty()).then_some(&row.reason),
                    })
                );
                listed.push(c["id"].clone());
            }
            match page["next_offset"].as_u64() {
                Some(next) => offset = next,
                None => break,
            }
        }
        assert_eq!(json!(listed), alert["customers"], "alert {index}");
    }
    let n = alerts.len();
    for (path, status, message) in [
        (
            format!("alerts/{n}"),
            404,
            format!("index: run \"{RUN}\" has {n} alert(s); no alert {n}"),
        ),
        (
            "alerts/first".to_string(),
            400,
            "index: \"first\" is not an alert index (0, 1, ...)".to_string(),
        ),
        (
            "alerts/0?limit=0".to_string(),
            400,
            "limit: must be 1 to 5000".to_string(),
        ),
        (
            "alerts/0?offset=100000".to_string(),
            400,
            format!(
                "offset: 100000 is past the last customer (the alert has {})",
                alerts[0]["customers"].as_array().unwrap().len()
            ),
        ),
    ] {
        let (got, body) = get_json(&format!("{api}/{path}")).await;
        assert_eq!(
            (got, &body["error"]["message"]),
            (status, &json!(message)),
            "{path}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn bad_weeks_maps_and_runs_are_named_in_the_error() {
    planted();
    let server = serve().await;
    let base = format!("{}/api/v1/runs", server.base);
    let weeks = weeks();
    let w = &weeks[2];
    for (path, status, message) in [
        (
            format!("{RUN}/movement/weeks/someday/points?map=pca"),
            400,
            "week: \"someday\" is not an ISO week such as 2026-W41".to_string(),
        ),
        (
            format!("{RUN}/movement/weeks/2026-W50/points?map=pca"),
            404,
            format!(
                "week: run \"{RUN}\" has no week 2026-W50; its weeks are {} to {}",
                weeks[0], weeks[7]
            ),
        ),
        (
            format!("{RUN}/movement/weeks/{w}/points"),
            400,
            "map: required; use one of pca".to_string(),
        ),
        (
            format!("{RUN}/movement/weeks/{w}/points?map=tsne"),
            404,
            format!("map: run \"{RUN}\" has no tsne map for its weeks; it has pca"),
        ),
        (
            format!("{RUN}/movement/weeks/{w}/points?map=mds"),
            400,
            "map: \"mds\" is not a map; use one of pca".to_string(),
        ),
        (
            format!("{RUN}/movement/weeks/{w}/points?map=pca&format=png"),
            400,
            "format: \"png\" is not a format; use json or binary".to_string(),
        ),
        (
            format!("{RUN}/movement/weeks/{w}/points?map=pca&limit=0"),
            400,
            "limit: must be 1 to 10000 for JSON (use format=binary for more)".to_string(),
        ),
        (
            "plain/movement".to_string(),
            404,
            "run \"plain\" has no movement.json (only runs made by segscope track have weekly movement)"
                .to_string(),
        ),
        (
            "plain/movement/events".to_string(),
            404,
            "run \"plain\" has no movement.json (only runs made by segscope track have weekly movement)"
                .to_string(),
        ),
        ("nope/movement".to_string(), 404, "no run \"nope\"".to_string()),
        (
            "bad.id/movement/flows?from=2026-W36&to=2026-W37".to_string(),
            400,
            "run id \"bad.id\" is not valid: use 1 to 64 letters, digits, '-' or '_'"
                .to_string(),
        ),
        (
            format!("{RUN}/segments"),
            404,
            format!("no run \"{RUN}/segments.json\""),
        ),
    ] {
        let (got, body) = get_json(&format!("{base}/{path}")).await;
        assert_eq!((got, &body["error"]["message"]), (status, &json!(message)), "{path}");
    }
    server.stop().await;
}

/// Server-sent events as they arrive: `(event, data)` pairs, keep-alive comments skipped.
struct Events {
    stream: futures::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buffer: String,
}

impl Events {
    async fn open(url: &str) -> Events {
        let response = reqwest::get(url).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Events {
            stream: response
                .bytes_stream()
                .map(|chunk| chunk.map(|b| b.to_vec()))
                .boxed(),
            buffer: String::new(),
        }
    }

    /// The next event, or `None` when the stream ended; fails after 30 s.
    async fn next(&mut self) -> Option<(String, Value)> {
        let wait = async {
            loop {
                if let Some(at) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..at + 2).collect();
                    let mut event = String::from("message");
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(name) = line.strip_prefix("event:") {
                            event = name.trim().to_string();
                        } else if let Some(text) = line.strip_prefix("data:") {
                            data.push_str(text.trim_start());
                        }
                    }
                    if data.is_empty() {
                        continue; // a keep-alive comment
                    }
                    return Some((event, serde_json::from_str(&data).unwrap()));
                }
                match self.stream.next().await {
                    Some(chunk) => self
                        .buffer
                        .push_str(std::str::from_utf8(&chunk.unwrap()).unwrap()),
                    None => return None,
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .expect("an event within 30 s")
    }
}

fn copy_run(to: &str) -> PathBuf {
    let from = &planted().run_dir;
    let dir = planted().data_dir.join("runs").join(to);
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["movement.json", "weekly_assignments.csv", "run.json"] {
        std::fs::copy(from.join(name), dir.join(name)).unwrap();
    }
    dir
}

#[tokio::test]
async fn the_event_stream_forwards_this_runs_weeks_and_forgets_its_parsed_files() {
    let dir = copy_run("live-1");
    let server = serve().await;
    let api = format!("{}/api/v1/runs/live-1/movement", server.base);
    let (_, before) = get_json(&api).await;
    assert_eq!(before["seed"], 7);

    let mut events = Events::open(&format!("{api}/events")).await;
    assert_eq!(
        events.next().await,
        Some(("subscribed".into(), json!({"run": "live-1"})))
    );
    // The writer rewrites movement.json; this rewrite keeps its size and time, so only the
    // update can tell the service the cached parse is stale.
    let path = dir.join("movement.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, text.replacen("\"seed\": 7", "\"seed\": 8", 1)).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    assert_eq!(get_json(&api).await.1["seed"], 7, "served from the cache");

    server.updates.publish(RunUpdate::WeekAdded {
        run_id: "another-run".into(),
        week: "2026-W44".into(),
    });
    server.updates.publish(RunUpdate::WeekAdded {
        run_id: "live-1".into(),
        week: "2026-W44".into(),
    });
    // Updates arrive in order, so the other run's would have come first.
    assert_eq!(
        events.next().await,
        Some((
            "week_added".into(),
            json!({"kind": "week_added", "run_id": "live-1", "week": "2026-W44"})
        ))
    );
    assert_eq!(
        get_json(&api).await.1["seed"],
        8,
        "read again after the update"
    );

    // More updates than the channel keeps, published while the stream cannot run (this
    // test's runtime has one thread): the stream says what it missed, then goes on.
    let total = segscope::serve::live::CAPACITY + 10;
    for i in 0..total {
        server.updates.publish(RunUpdate::WeekAdded {
            run_id: "live-1".into(),
            week: format!("2026-W{:02}", 44 + i % 8),
        });
    }
    assert_eq!(
        events.next().await,
        Some(("reload".into(), json!({"missed": 10})))
    );
    for i in 10..total {
        let (event, data) = events.next().await.unwrap();
        assert_eq!(event, "week_added");
        assert_eq!(data["week"], format!("2026-W{:02}", 44 + i % 8));
    }

    // The stream ends when the service stops.
    let stopping = tokio::spawn(server.stop());
    assert_eq!(events.next().await, None);
    stopping.await.unwrap();
}
