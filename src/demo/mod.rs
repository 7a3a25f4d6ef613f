//! `segscope demo`: a synthetic store with planted segments, run through the whole store
//! pipeline on the embedded defaults (local embedder, embedded Qdrant, built-in narrator).
//!
//! The planted personas travel with the run as known labels, so `segments.json` reports how
//! well the segments recover them (`quality.external.ari`) and the maps can be coloured by
//! them: the demo checks segscope as much as it shows it off.

pub mod synthetic_store;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use crate::analysis::progress::Progress;
use crate::pipeline::{PipelineError, StoreSegmentRequest, StoreSegmentRun, run_store_segment};
use crate::settings::Settings;
use synthetic_store::{PlantedStore, StoreSpec, generate};

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
    /// Output directory; the generated files go to its `data/` subdirectory.
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
}

/// The demo's store and the run over it.
#[derive(Debug, Clone)]
pub struct DemoRun {
    /// What was generated and planted.
    pub store: PlantedStore,
    /// The store run.
    pub run: StoreSegmentRun,
}

/// Generates the store and runs the pipeline over it.
pub fn run_demo(
    request: &DemoRequest,
    runtime: &tokio::runtime::Handle,
    progress: &dyn Progress,
) -> Result<DemoRun, DemoError> {
    let data = request.out_dir.join("data");
    progress.start("generating a synthetic store", 0);
    let spec = StoreSpec::demo(request.customers, request.settings.run.seed);
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
            out_dir: request.out_dir.clone(),
        },
        runtime,
        progress,
    )?;
    Ok(DemoRun { store, run })
}

impl DemoRun {
    /// A short table for the terminal: each segment's size, revenue share and name, and how
    /// well the segments recover the planted personas.
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
        out
    }
}
