//! Runs and a running service for the dashboard tests: a store run made by the pipeline
//! from the demo's synthetic store (so customers have R/F/M and categories), an Iris table
//! run, and `segscope serve` on 127.0.0.1:0 over a temporary data directory.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use segscope::demo::store_spec;
use segscope::demo::synthetic_store::{StoreSpec, generate};
use segscope::serve::{AppState, ServeError, serve};
use segscope::settings::Settings;
use tokio::sync::oneshot;

use segscope::analysis::progress::NoProgress;
use segscope::domain::MapMethod;
use segscope::ingest::FeatureTableSpec;
use segscope::pipeline::{SegmentRequest, StoreSegmentRequest, run_segment, run_store_segment};

/// Customers in the synthetic store of [`make_store_run`].
pub const STORE_CUSTOMERS: usize = 300;

/// Runs `work` on a plain thread (the pipeline starts and stops its own runtime, which an
/// async test's thread may not do).
fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(work).join().expect("pipeline thread")
}

/// Writes a store run (PCA and UMAP, k = 4, no resampling) into `data_dir/runs/{id}` with
/// the library's pipeline (not the binary: the build folder is shared, and the binary there
/// may be another checkout's), its vectors in `data_dir/store` where the service looks.
pub fn make_store_run(data_dir: &Path, id: &str) -> PathBuf {
    let store = generate(
        &StoreSpec::demo(STORE_CUSTOMERS, 7),
        &data_dir.join("source"),
    )
    .expect("synthetic store");
    let out = data_dir.join("runs").join(id);
    let mut run_settings = settings(&[
        ("SEGSCOPE__STABILITY__RESAMPLES", "0"),
        ("SEGSCOPE__SEGMENT__K", "4"),
    ]);
    run_settings.segment.maps = vec![MapMethod::Pca, MapMethod::Umap];
    let request = StoreSegmentRequest {
        transactions: Some(store.transactions),
        events: Some(store.events),
        as_of: None,
        labels: None,
        data_dir: data_dir.join("store"),
        settings: run_settings,
        out_dir: out.clone(),
    };
    off_runtime(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        run_store_segment(&request, runtime.handle(), &NoProgress).expect("store run");
    });
    out
}

/// Customers of the planted store of [`make_track_run`].
pub const TRACK_CUSTOMERS: usize = 1000;
/// The weeks [`make_track_run`] tracks: changes are planted from the sixth (2026-W41).
pub const TRACK_WEEKS: &str = "2026-W36..2026-W43";

/// Writes `segscope track`'s output over the demo's planted store (12 weeks, changes from
/// week 6, 1,000 customers, seed 7, a one-week browsing window, PCA) into
/// `data_dir/runs/{id}`, as tests/cli_track.rs makes it.
pub fn make_track_run(data_dir: &Path, id: &str) -> PathBuf {
    use segscope::track::{TrackRequest, WeekRange, run_track};
    let spec = store_spec(TRACK_CUSTOMERS, 7);
    let source = data_dir.join("track-source");
    generate(&spec, &source).expect("planted store");
    let out = data_dir.join("runs").join(id);
    let mut track_settings = settings(&[]);
    track_settings.run.seed = 7;
    track_settings.track.browsing_window_weeks = 1;
    let request = TrackRequest {
        transactions: vec![source.join("transactions.csv.gz")],
        events: vec![source.join("events.csv")],
        weeks: Some(TRACK_WEEKS.parse::<WeekRange>().expect("weeks")),
        maps: vec![MapMethod::Pca],
        settings: track_settings,
        out_dir: out.clone(),
    };
    off_runtime(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        run_track(&request, runtime.handle(), &NoProgress).expect("track runs");
    });
    out
}

/// Writes an Iris run (k = 3, PCA only, no resampling) into `data_dir/runs/{id}`.
pub fn make_table_run(data_dir: &Path, id: &str) -> PathBuf {
    let out = data_dir.join("runs").join(id);
    let mut run_settings = settings(&[
        ("SEGSCOPE__STABILITY__RESAMPLES", "0"),
        ("SEGSCOPE__SEGMENT__K", "3"),
    ]);
    run_settings.segment.maps = vec![MapMethod::Pca];
    let request = SegmentRequest {
        features: PathBuf::from("examples/iris.csv"),
        table: FeatureTableSpec {
            id_column: "id".into(),
            label_column: Some("species".into()),
            delimiter: b',',
        },
        settings: run_settings,
        out_dir: out.clone(),
    };
    off_runtime(move || run_segment(&request, &NoProgress).expect("table run"));
    out
}

/// Settings from the defaults plus `SEGSCOPE__*`-style overrides.
pub fn settings(overrides: &[(&str, &str)]) -> Settings {
    Settings::load_with_env(
        None,
        overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>(),
    )
    .expect("settings")
}

/// A service running on a free loopback port.
pub struct Running {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The service's live-update channel (what a folder watch publishes on).
    pub updates: std::sync::Arc<segscope::serve::live::RunUpdates>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<Result<(), ServeError>>>,
}

impl Running {
    /// Stops the service and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            done.await.expect("join").expect("clean stop");
        }
    }
}

/// Starts `segscope serve` over `data_dir` with `settings`.
pub async fn start(data_dir: &Path, settings: Settings) -> Running {
    let state = AppState::new(settings, data_dir.to_path_buf()).expect("state");
    let updates = std::sync::Arc::clone(&state.updates);
    let (stop, stopped) = oneshot::channel::<()>();
    let (bound_tx, bound_rx) = oneshot::channel::<SocketAddr>();
    let done = tokio::spawn(serve(
        state,
        "127.0.0.1:0".parse().expect("addr"),
        async move {
            let _ = stopped.await;
        },
        move |addr| {
            let _ = bound_tx.send(addr);
        },
    ));
    let addr = bound_rx.await.expect("bound");
    Running {
        base: format!("http://{addr}"),
        updates,
        stop: Some(stop),
        done: Some(done),
    }
}

/// One row of `assignments.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Assigned {
    pub id: String,
    /// 0 = no segment.
    pub segment: u32,
    /// Coordinates per map key, in the file's column order.
    pub maps: Vec<(String, f64, f64)>,
}

/// `assignments.csv` of a run, parsed.
pub fn assignments(run_dir: &Path) -> Vec<Assigned> {
    let mut reader = csv::Reader::from_path(run_dir.join("assignments.csv")).expect("csv");
    let header = reader.headers().expect("header").clone();
    let maps: Vec<(String, usize, usize)> = ["pca", "umap", "tsne"]
        .iter()
        .filter_map(|m| {
            let x = header.iter().position(|h| h == format!("{m}_x"))?;
            let y = header.iter().position(|h| h == format!("{m}_y"))?;
            Some((m.to_string(), x, y))
        })
        .collect();
    reader
        .records()
        .map(|r| {
            let r = r.expect("row");
            Assigned {
                id: r[0].to_string(),
                segment: r[1].parse().unwrap_or(0),
                maps: maps
                    .iter()
                    .map(|(m, x, y)| {
                        (
                            m.clone(),
                            r[*x].parse().expect("x"),
                            r[*y].parse().expect("y"),
                        )
                    })
                    .collect(),
            }
        })
        .collect()
}
