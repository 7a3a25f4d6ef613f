//! `segscope demo`: a synthetic store with planted segments, run through the whole store
//! pipeline on the embedded defaults (local embedder, embedded Qdrant, built-in narrator).
//!
//! The planted personas travel with the run as known labels, so `segments.json` reports how
//! well the segments recover them (`quality.external.ari`) and the maps can be coloured by
//! them: the demo checks segscope as much as it shows it off.
//!
//! The store has twelve weeks of browsing with three changes planted from the sixth (an
//! emerging micro-segment, a migration between two personas and a burst of bot traffic;
//! see [`synthetic_store::PlantedChanges`]), and the demo tracks its first eight weeks with
//! `segscope track`'s machinery, so the weekly movement view has something to find. The
//! last four weeks are left out of tracking: one persona stops browsing in them by design
//! (a lapsing segment), which is a change of its own and not one of the three planted.
//! The weekly run measures browsing over each week alone (`track.browsing_window_weeks =
//! 1`, whatever the settings say): with the default four-week window a change enters a
//! customer's state a quarter at a time, and on this store the migration is alerted for
//! about two thirds of its customers and the 2% emerging group not at all.
//!
//! The output directory is laid out as a service data directory: `DIR/runs/demo/` (the
//! segment run), `DIR/runs/demo-weekly/` (the weekly movement), `DIR/store/` (the embedded
//! vector store), `DIR/data/` (the generated files), so `segscope serve --data-dir DIR`
//! shows both runs on the dashboard.

pub mod synthetic_store;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use crate::analysis::progress::Progress;
use crate::domain::MapMethod;
use crate::pipeline::{PipelineError, StoreSegmentRequest, StoreSegmentRun, run_store_segment};
use crate::settings::Settings;
use crate::track::document::AlertKind;
use crate::track::{IsoWeek, TrackError, TrackRequest, TrackRun, WeekRange, run_track};
use synthetic_store::{PlantedChanges, PlantedStore, StoreSpec, generate};

/// The segment run's folder under `DIR/runs/`.
pub const SEGMENT_RUN_ID: &str = "demo";
/// The weekly movement's folder under `DIR/runs/`.
pub const WEEKLY_RUN_ID: &str = "demo-weekly";
/// Weeks of browsing in the demo's store.
const STORE_WEEKS: u32 = 12;
/// Weeks tracked, from the first: every week before the lapsing persona goes quiet.
const TRACKED_WEEKS: u32 = 8;
/// The weekly run's browsing window: each week's own browsing, so a change planted in a
/// week is measured at full strength in that week. The default window (four weeks) spreads
/// it over four weeks, and on the demo's store it alerts the planted migration late and
/// partly and misses the 2% emerging group; see the module doc.
const DEMO_BROWSING_WINDOW_WEEKS: u32 = 1;
/// First week (1-based) with the planted changes: five quiet weeks before it give the
/// migration alert a baseline.
const PLANTED_FROM_WEEK: u32 = 6;

/// Fewest customers the demo accepts: six planted segments need a few dozen members each
/// to be findable at all.
pub const MIN_DEMO_CUSTOMERS: usize = 60;

/// A validated demo request.
#[derive(Debug, Clone)]
pub struct DemoRequest {
    /// Customers in the synthetic store.
    pub customers: usize,
    /// Where the vector store and embedding cache live.
    pub data_dir: PathBuf,
    /// Output directory, laid out as a service data directory (see the module doc).
    pub out_dir: PathBuf,
    /// Effective settings; `run.seed` seeds the store too.
    pub settings: Settings,
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The synthetic store could not be written.
    #[error("{path}: cannot write the synthetic store: {source}")]
    Generate {
        /// Directory.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The pipeline failed on the synthetic store.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// Weekly tracking failed on the synthetic store.
    #[error(transparent)]
    Track(#[from] TrackError),
}

/// The demo's store and the run over it.
#[derive(Debug, Clone)]
pub struct DemoRun {
    /// What was generated and planted.
    pub store: PlantedStore,
    /// The store run.
    pub run: StoreSegmentRun,
    /// The weekly movement over the first eight weeks.
    pub weekly: TrackRun,
}

/// The demo's store: [`StoreSpec::demo`] over twelve weeks with the changes planted from
/// the sixth.
pub fn store_spec(customers: usize, seed: u64) -> StoreSpec {
    StoreSpec {
        weeks: STORE_WEEKS,
        changes: Some(PlantedChanges {
            from_week: PLANTED_FROM_WEEK,
        }),
        ..StoreSpec::demo(customers, seed)
    }
}

/// Generates the store and runs the pipeline over it.
pub fn run_demo(
    request: &DemoRequest,
    runtime: &tokio::runtime::Handle,
    progress: &dyn Progress,
) -> Result<DemoRun, DemoError> {
    let data = request.out_dir.join("data");
    let runs = request.out_dir.join("runs");
    progress.start("generating a synthetic store", 0);
    let spec = store_spec(request.customers, request.settings.run.seed);
    let store = generate(&spec, &data).map_err(|source| DemoError::Generate {
        path: data.clone(),
        source,
    })?;
    progress.finish();
    let labels: BTreeMap<String, String> = store
        .truth
        .iter()
        .map(|(id, persona)| (id.clone(), (*persona).to_string()))
        .collect();
    let run = run_store_segment(
        &StoreSegmentRequest {
            transactions: Some(store.transactions.clone()),
            events: Some(store.events.clone()),
            as_of: None,
            labels: Some(labels),
            data_dir: request.data_dir.clone(),
            settings: request.settings.clone(),
            out_dir: runs.join(SEGMENT_RUN_ID),
        },
        runtime,
        progress,
    )?;
    let mut weekly_settings = request.settings.clone();
    weekly_settings.track.browsing_window_weeks = DEMO_BROWSING_WINDOW_WEEKS;
    let weekly = run_track(
        &TrackRequest {
            transactions: vec![store.transactions.clone()],
            events: vec![store.events.clone()],
            weeks: Some(tracked_weeks(&spec)),
            maps: vec![MapMethod::Pca, MapMethod::Umap],
            settings: weekly_settings,
            out_dir: runs.join(WEEKLY_RUN_ID),
        },
        runtime,
        progress,
    )?;
    Ok(DemoRun { store, run, weekly })
}

/// The first [`TRACKED_WEEKS`] ISO weeks of the store's browsing window.
fn tracked_weeks(spec: &StoreSpec) -> WeekRange {
    let store_last = IsoWeek::of(spec.end);
    WeekRange {
        first: store_last.minus(STORE_WEEKS - 1),
        last: store_last.minus(STORE_WEEKS - TRACKED_WEEKS),
    }
}

impl DemoRun {
    /// A short table for the terminal: each segment's size, revenue share and name, how well
    /// the segments recover the planted personas, then the weekly alerts and how many of each
    /// planted change's customers they name.
    pub fn summary_table(&self) -> String {
        let doc = &self.run.document;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "synthetic store: {} customers, files in {}",
            self.store.truth.len(),
            self.store
                .transactions
                .parent()
                .map_or_else(String::new, |p| p.display().to_string())
        );
        let _ = writeln!(
            out,
            "{:>3}  {:>6}  {:>6}  {:>8}  name",
            "id", "size", "share", "revenue"
        );
        for s in &doc.segments {
            let revenue = s.kpis.business.as_ref().map_or_else(
                || "-".to_string(),
                |b| format!("{:.1}%", b.revenue_share * 100.0 + 0.0),
            );
            let _ = writeln!(
                out,
                "{:>3}  {:>6}  {:>5.1}%  {:>8}  {}",
                s.id,
                s.size,
                s.share * 100.0,
                revenue,
                s.name
            );
        }
        if let Some(external) = &doc.quality.external {
            let _ = write!(
                out,
                "agreement with the planted personas: ARI {:.3}, NMI {:.3}",
                external.ari, external.nmi
            );
        }
        out.push('\n');
        out.push_str(&self.movement_lines());
        out
    }

    /// The weekly part of [`DemoRun::summary_table`].
    fn movement_lines(&self) -> String {
        let doc = &self.weekly.document;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "weekly movement {}..{}: {} alert(s)",
            doc.weeks
                .first()
                .map(ToString::to_string)
                .unwrap_or_default(),
            doc.weeks
                .last()
                .map(ToString::to_string)
                .unwrap_or_default(),
            doc.alerts.len()
        );
        for alert in &doc.alerts {
            let segment = alert
                .segment
                .map_or_else(|| "-".to_string(), |s| s.to_string());
            let _ = writeln!(
                out,
                "  {}  {:<16}  segment {:>2}  {:>5} customers",
                alert.week,
                alert.kind.key(),
                segment,
                alert.customers.len()
            );
        }
        if let Some(planted) = &self.store.changes {
            let found = |kind: AlertKind, planted: &[String]| -> (usize, usize) {
                let named: BTreeSet<&str> = doc
                    .alerts
                    .iter()
                    .filter(|a| a.kind == kind)
                    .flat_map(|a| a.customers.iter().map(String::as_str))
                    .collect();
                let hits = planted
                    .iter()
                    .filter(|id| named.contains(id.as_str()))
                    .count();
                (hits, planted.len())
            };
            let parts: Vec<String> = [
                (
                    "emerging micro-segment",
                    AlertKind::EmergingSegment,
                    &planted.emerging,
                ),
                ("migration", AlertKind::Migration, &planted.migrants),
                ("bot traffic", AlertKind::Anomaly, &planted.bots),
            ]
            .into_iter()
            .map(|(what, kind, ids)| {
                let (hits, total) = found(kind, ids);
                format!("{what} {hits}/{total}")
            })
            .collect();
            let _ = write!(
                out,
                "planted changes from {} found by the alerts: {}",
                IsoWeek::of(planted.start),
                parts.join(", ")
            );
        }
        out
    }
}
