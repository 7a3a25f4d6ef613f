//! The files a run writes, and how they are written.
//!
//! `segments.json` ([`SegmentsDocument`]) is the machine-readable contract (its JSON Schema
//! is `schemas/segments.schema.json`); `assignments.csv` gives each customer's segment and
//! map coordinates; `report.html` is the self-contained briefing rendered with tera from
//! `templates/`; `run.json` records what varies between identical runs (timings, threads,
//! version) so that the first two files stay byte-identical for the same input and seed.
//! Files are written to temporary names and renamed into place, so a failed run never
//! leaves a half-written file over a previous run's output.

pub mod assignments;
pub mod document;
pub mod html;
pub mod profiles;

use std::path::{Path, PathBuf};

pub use document::{RunRecord, SegmentsDocument};

/// Why output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file or directory could not be written.
    #[error("{path}: cannot write: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Serialisation failed (does not happen with finite figures).
    #[error("cannot serialise {what}: {message}")]
    Serialize {
        /// Which output.
        what: &'static str,
        /// Details.
        message: String,
    },
    /// The report template failed to render.
    #[error("cannot render the report: {0}")]
    Template(String),
}

/// Writes `bytes` to `dir/name` through a temporary file and a rename.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ReportError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let io = |source| ReportError::Io {
        path: path.clone(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)
}
