//! The serve watch end to end on the planted store split into weekly files: new weeks are
//! tracked and announced, earlier weeks come out as before, a malformed file fails its job
//! and leaves the run alone, a file still being written is not read, and `serve` runs the
//! watch on its own and stops it at shutdown.
//!
//! Looks at the folder are driven through [`Watch::poll`], and every wait is on a job's
//! status or a published [`RunUpdate`], with a timeout; nothing waits on the clock.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test loudly"
)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use segscope::demo::store_spec;
use segscope::demo::synthetic_store::{WeekFiles, generate, split_by_week};
use segscope::serve::jobs::{JobState, JobStatus};
use segscope::serve::live::RunUpdate;
use segscope::serve::watch::{Poll, Watch, staging_dir};
use segscope::serve::{AppState, router, serve};
use segscope::settings::Settings;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, watch};
use tower::ServiceExt;

const CUSTOMERS: usize = 1000;
const SEED: u64 = 7;
/// Longest any one wait may take (a track of the planted store takes seconds).
const PATIENCE: Duration = Duration::from_secs(300);

struct Weekly {
    _dir: tempfile::TempDir,
    weeks: Vec<WeekFiles>,
}

/// The planted store (12 weeks from 2026-W36, changes from week 6) as weekly files.
fn weekly() -> &'static Weekly {
    static WEEKLY: OnceLock<Weekly> = OnceLock::new();
    WEEKLY.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = store_spec(CUSTOMERS, SEED);
        let store = generate(&spec, &dir.path().join("store")).expect("store");
        let weeks = split_by_week(&store, &dir.path().join("weekly")).expect("split");
        Weekly { _dir: dir, weeks }
    })
}

fn settings() -> Settings {
    let mut s = Settings::load(None).expect("settings");
    s.run.seed = SEED;
    s.track.browsing_window_weeks = 1;
    s
}

/// Copies one week's files into the watched folder.
fn deliver(week: &WeekFiles, folder: &Path) {
    for file in [&week.transactions, &week.events].into_iter().flatten() {
        std::fs::copy(file, folder.join(file.file_name().expect("name"))).expect("copy");
    }
}

/// The `n`-th week of browsing (0-based): the files start with weeks of purchase history
/// only, and tracking starts at the first week with events.
fn browsing_week(n: usize) -> usize {
    let first = weekly()
        .weeks
        .iter()
        .position(|w| w.events.is_some())
        .expect("a week with events");
    first + n
}

/// Delivers every week up to the `n`-th week of browsing, inclusive.
fn deliver_up_to(n: usize, folder: &Path) {
    for week in &weekly().weeks[..=browsing_week(n)] {
        deliver(week, folder);
    }
}

/// The label of the `n`-th week of browsing.
fn label(n: usize) -> String {
    weekly().weeks[browsing_week(n)].week.to_string()
}

#[track_caller]
fn started(poll: Poll) -> watch::Receiver<JobStatus> {
    match poll {
        Poll::Started(status) => status,
        other => panic!("expected a re-run to start, got {other:?}"),
    }
}

async fn finished(mut status: watch::Receiver<JobStatus>) -> JobStatus {
    tokio::time::timeout(PATIENCE, status.wait_for(|s| s.state.is_terminal()))
        .await
        .expect("the job ends in time")
        .expect("the job's status is kept")
        .clone()
}

async fn next_update(updates: &mut broadcast::Receiver<RunUpdate>) -> RunUpdate {
    tokio::time::timeout(PATIENCE, updates.recv())
        .await
        .expect("an update in time")
        .expect("the channel is open")
}

/// Two looks at an unchanged folder: the first sees the change, the second starts the run.
async fn settle_and_run(watch: &Watch) -> JobStatus {
    assert!(matches!(watch.poll().expect("look"), Poll::Settling));
    finished(started(watch.poll().expect("look"))).await
}

fn movement(run: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(run.join("movement.json")).expect("movement.json"))
        .expect("json")
}

fn last_week(run: &Path) -> String {
    movement(run)["weeks"]
        .as_array()
        .and_then(|w| w.last())
        .and_then(Value::as_str)
        .expect("weeks")
        .to_string()
}

async fn get_json(state: &AppState, uri: &str) -> (StatusCode, Value) {
    let response = router(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn metrics(state: &AppState) -> String {
    let response = router(state.clone())
        .oneshot(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    String::from_utf8_lossy(&bytes).into_owned()
}

fn sha256(path: &Path) -> String {
    let digest = Sha256::digest(std::fs::read(path).expect("read"));
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_folder_gains_weeks_keeps_earlier_ones_and_survives_bad_files() {
    let weekly = weekly();
    let data = tempfile::tempdir().expect("tempdir");
    let state = AppState::new(settings(), data.path().to_path_buf()).expect("state");
    let watch = Watch::new(&state).expect("watch");
    let folder = watch.folder().to_path_buf();
    assert_eq!(folder, data.path().join("watch"));
    let run = state.runs.dir().join("watched");
    let mut updates = state.updates.subscribe();

    assert!(matches!(watch.poll().expect("look"), Poll::Empty));
    // Five weeks of browsing (and the purchase history before): two fit weeks, three placed.
    deliver_up_to(4, &folder);
    let status = settle_and_run(&watch).await;
    assert_eq!(status.state, JobState::Succeeded, "{:?}", status.error);
    assert_eq!(
        next_update(&mut updates).await,
        RunUpdate::WeekAdded {
            run_id: "watched".into(),
            week: label(4),
        }
    );
    assert_eq!(last_week(&run), label(4));
    let before = movement(&run);
    let assignments_before =
        std::fs::read_to_string(run.join("weekly_assignments.csv")).expect("assignments");

    // Nothing new: no run, no announcement.
    assert!(matches!(watch.poll().expect("look"), Poll::Unchanged));
    assert!(matches!(
        updates.try_recv(),
        Err(broadcast::error::TryRecvError::Empty)
    ));

    // The next week arrives.
    deliver(&weekly.weeks[browsing_week(5)], &folder);
    let status = settle_and_run(&watch).await;
    assert_eq!(status.state, JobState::Succeeded, "{:?}", status.error);
    assert_eq!(
        next_update(&mut updates).await,
        RunUpdate::WeekAdded {
            run_id: "watched".into(),
            week: label(5),
        }
    );
    assert_eq!(last_week(&run), label(5));
    assert!(!staging_dir(state.runs.dir(), "watched").exists());
    // Earlier weeks come out exactly as before: same ids, distances and coordinates, same
    // shares and transitions.
    let assignments =
        std::fs::read_to_string(run.join("weekly_assignments.csv")).expect("assignments");
    assert!(
        assignments.starts_with(&assignments_before),
        "the earlier weeks' rows changed"
    );
    assert!(assignments.len() > assignments_before.len());
    let after = movement(&run);
    assert_eq!(after["segments"], before["segments"]);
    let shares = after["shares"].as_array().expect("shares");
    assert_eq!(&shares[..5], before["shares"].as_array().expect("shares"));
    let transitions = after["transitions"].as_array().expect("transitions");
    assert_eq!(
        &transitions[..4],
        before["transitions"].as_array().expect("transitions")
    );

    // The job is followed like any run.
    let (code, progress) = get_json(&state, "/api/v1/runs/watched/progress").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(progress["state"], "succeeded");
    let text = metrics(&state).await;
    assert!(text.contains("runs_started_total 2"), "{text}");

    // A malformed file: a failed job naming the file, the run untouched, no announcement.
    let run_bytes = std::fs::read(run.join("movement.json")).expect("movement");
    std::fs::write(
        folder.join("events-broken.csv"),
        "when;who;what\n2026-10-12;1;view\n",
    )
    .expect("write");
    let status = settle_and_run(&watch).await;
    assert_eq!(status.state, JobState::Failed);
    let error = status.error.expect("error");
    assert!(
        error.contains("events-broken.csv") && error.contains("missing column"),
        "{error}"
    );
    assert_eq!(
        std::fs::read(run.join("movement.json")).expect("movement"),
        run_bytes
    );
    assert!(!staging_dir(state.runs.dir(), "watched").exists());
    let (_, progress) = get_json(&state, "/api/v1/runs/watched/progress").await;
    assert_eq!(progress["state"], "failed");
    assert!(matches!(
        updates.try_recv(),
        Err(broadcast::error::TryRecvError::Empty)
    ));
    // The same files are not retried until they change.
    assert!(matches!(watch.poll().expect("look"), Poll::Unchanged));
    let text = metrics(&state).await;
    assert!(
        text.contains(r#"runs_finished_total{state="failed"} 1"#),
        "{text}"
    );

    // A file still being copied is not read until two looks find it the same.
    std::fs::remove_file(folder.join("events-broken.csv")).expect("remove");
    let week = &weekly.weeks[browsing_week(6)];
    let transactions = week.transactions.as_ref().expect("transactions");
    std::fs::copy(
        transactions,
        folder.join(transactions.file_name().expect("name")),
    )
    .expect("copy");
    let events = week.events.as_ref().expect("events");
    let events_bytes = std::fs::read(events).expect("events");
    let partial: PathBuf = folder.join(events.file_name().expect("name"));
    std::fs::write(&partial, &events_bytes[..events_bytes.len() / 2]).expect("write half");
    assert!(matches!(watch.poll().expect("look"), Poll::Settling));
    std::fs::write(&partial, &events_bytes).expect("write the rest");
    assert!(matches!(watch.poll().expect("look"), Poll::Settling));
    let status = finished(started(watch.poll().expect("look"))).await;
    assert_eq!(status.state, JobState::Succeeded, "{:?}", status.error);
    assert_eq!(
        next_update(&mut updates).await,
        RunUpdate::WeekAdded {
            run_id: "watched".into(),
            week: label(6),
        }
    );
    // The whole file was read: the run records its complete digest.
    let record: Value =
        serde_json::from_slice(&std::fs::read(run.join("run.json")).expect("run.json"))
            .expect("json");
    let name = events.file_name().expect("name").to_string_lossy();
    let recorded = record["inputs"]
        .as_object()
        .expect("inputs")
        .iter()
        .find(|(file, _)| file.ends_with(name.as_ref()))
        .map(|(_, digest)| digest.clone())
        .expect("the events file is an input");
    assert_eq!(recorded, Value::String(sha256(&partial)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_an_enabled_watch_on_its_own_and_stops_it_at_shutdown() {
    let data = tempfile::tempdir().expect("tempdir");
    let folder = data.path().join("incoming");
    std::fs::create_dir_all(&folder).expect("folder");
    deliver_up_to(3, &folder);
    let mut settings = settings();
    settings.serve.watch.enabled = true;
    settings.serve.watch.folder = folder.display().to_string();
    settings.serve.watch.run_id = "shop".into();
    settings.serve.watch.poll_secs = 0.05;
    let state = AppState::new(settings, data.path().to_path_buf()).expect("state");
    let mut updates = state.updates.subscribe();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        state.clone(),
        "127.0.0.1:0".parse().expect("addr"),
        async move {
            let _ = stopped.await;
        },
        |_| {},
    ));
    assert_eq!(
        next_update(&mut updates).await,
        RunUpdate::WeekAdded {
            run_id: "shop".into(),
            week: label(3),
        }
    );
    assert_eq!(last_week(&state.runs.dir().join("shop")), label(3));
    stop.send(()).expect("stop");
    tokio::time::timeout(PATIENCE, server)
        .await
        .expect("serve stops in time")
        .expect("serve task")
        .expect("serve ends cleanly");
    assert!(!staging_dir(state.runs.dir(), "shop").exists());
}
