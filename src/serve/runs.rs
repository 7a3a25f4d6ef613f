//! The runs kept under `<data dir>/runs/<run id>/`, read for the API.
//!
//! Owns what a run id may be (so no request can name a path outside the runs folder) and
//! which files of a run may be downloaded. Files are read at request time: a run folder
//! copied in while the service runs is served at once, and a half-written run (no
//! `segments.json` yet; the pipeline writes it by atomic rename) is not listed.
//!
//! A folder written by `segscope track` has `movement.json` (and `weekly_assignments.csv`)
//! instead of `segments.json`; it is a run too, listed with method `track`, and its
//! movement is served by [`super::movement`].

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

/// The files of a run that may be downloaded, with their media types.
/// (`profiles.csv` exists for store runs only.)
pub const DOWNLOADS: [(&str, &str); 5] = [
    ("segments.json", "application/json"),
    ("assignments.csv", "text/csv; charset=utf-8"),
    ("report.html", "text/html; charset=utf-8"),
    ("run.json", "application/json"),
    ("profiles.csv", "text/csv; charset=utf-8"),
];

/// Why a run could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The id is not of the allowed form.
    #[error("run id {0:?} is not valid: use 1 to 64 letters, digits, '-' or '_'")]
    InvalidId(String),
    /// No run of that id.
    #[error("no run {0:?}")]
    NotFound(String),
    /// The run exists but was not made by `segscope track`.
    #[error(
        "run {0:?} has no movement.json (only runs made by segscope track have weekly movement)"
    )]
    NoMovement(String),
    /// No such downloadable file.
    #[error(
        "{0:?} is not a run file; use one of segments.json, assignments.csv, report.html, run.json, profiles.csv"
    )]
    UnknownFile(String),
    /// The file exists but cannot be read or parsed (logged with its path, never returned).
    #[error("run {run:?}: cannot read {file}: {message}")]
    Unreadable {
        /// The run.
        run: String,
        /// The file.
        file: String,
        /// The cause.
        message: String,
    },
}

/// One line of the runs list.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunSummary {
    /// The run id (its folder name).
    pub id: String,
    /// Clustering method.
    pub method: String,
    /// Number of segments.
    pub k: u64,
    /// Customers analysed.
    pub n_customers: u64,
    /// Seed.
    pub seed: u64,
    /// Who wrote the names and descriptions.
    pub narrator: String,
    /// When the run's `segments.json` (or, for a track-only run, `movement.json`) was
    /// written (RFC 3339, UTC).
    pub written_at: String,
    /// Whether the run has `movement.json` (weekly movement, see [`super::movement`]), so
    /// lists can link its movement page.
    pub movement: bool,
}

/// Whether `dir` holds a run: `segments.json` from `segscope segment`, or `movement.json`
/// from `segscope track` (both written by atomic rename, so never half there).
fn is_run_dir(dir: &Path) -> bool {
    dir.join("segments.json").is_file() || dir.join(MOVEMENT).is_file()
}

/// The movement document `segscope track` writes.
pub const MOVEMENT: &str = "movement.json";

/// The runs folder.
#[derive(Debug)]
pub struct RunCatalog {
    dir: PathBuf,
}

/// Checks a run id: 1–64 of `[A-Za-z0-9_-]`, so it can never name another folder.
pub fn valid_run_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl RunCatalog {
    /// The catalogue of the runs under `dir`.
    pub fn new(dir: PathBuf) -> Self {
        RunCatalog { dir }
    }

    /// The folder runs live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn run_dir(&self, id: &str) -> Result<PathBuf, RunError> {
        if !valid_run_id(id) {
            return Err(RunError::InvalidId(id.to_string()));
        }
        let dir = self.dir.join(id);
        if is_run_dir(&dir) {
            Ok(dir)
        } else {
            Err(RunError::NotFound(id.to_string()))
        }
    }

    /// Every complete run, newest first (ties by id). Folders that are not runs, or whose
    /// `segments.json` cannot be read, are left out and logged.
    pub fn list(&self) -> Result<Vec<RunSummary>, RunError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| RunError::Unreadable {
            run: String::new(),
            file: self.dir.display().to_string(),
            message: e.to_string(),
        })?;
        let mut runs: Vec<RunSummary> = Vec::new();
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if !valid_run_id(&id) || !is_run_dir(&entry.path()) {
                continue;
            }
            match self.summary(&id) {
                Ok(summary) => runs.push(summary),
                Err(error) => tracing::warn!(%error, "run left out of the list"),
            }
        }
        runs.sort_by(|a, b| b.written_at.cmp(&a.written_at).then(a.id.cmp(&b.id)));
        Ok(runs)
    }

    /// One run's line of the runs list.
    pub fn summary(&self, id: &str) -> Result<RunSummary, RunError> {
        let dir = self.run_dir(id)?;
        let movement = dir.join(MOVEMENT).is_file();
        if !dir.join("segments.json").is_file() {
            return self.track_summary(id, &dir);
        }
        let doc = self.segments(id)?;
        let text = |key: &str| doc[key].as_str().unwrap_or_default().to_string();
        let number = |key: &str| doc[key].as_u64().unwrap_or_default();
        Ok(RunSummary {
            id: id.to_string(),
            method: text("method"),
            k: number("k"),
            n_customers: number("n_customers"),
            seed: number("seed"),
            narrator: text("narrator"),
            written_at: written_at(&dir.join("segments.json")),
            movement,
        })
    }

    /// The line of a run that only `segscope track` wrote: its segments are the tracked
    /// ones, its customers those of its last week (segmented or excluded), and its
    /// summaries are the built-in ones.
    fn track_summary(&self, id: &str, dir: &Path) -> Result<RunSummary, RunError> {
        let doc = self.movement(id)?;
        let last = doc["shares"].as_array().and_then(|weeks| weeks.last());
        let count = |key: &str| last.and_then(|w| w[key].as_u64()).unwrap_or_default();
        Ok(RunSummary {
            id: id.to_string(),
            method: "track".into(),
            k: doc["segments"].as_array().map_or(0, |s| s.len() as u64),
            n_customers: count("customers") + count("excluded"),
            seed: doc["seed"].as_u64().unwrap_or_default(),
            narrator: "builtin".into(),
            written_at: written_at(&dir.join(MOVEMENT)),
            movement: true,
        })
    }

    /// A run's `movement.json`, parsed; not found when the run was not tracked.
    pub fn movement(&self, id: &str) -> Result<Value, RunError> {
        let path = self.run_dir(id)?.join(MOVEMENT);
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RunError::NoMovement(id.to_string()),
            _ => RunError::Unreadable {
                run: id.to_string(),
                file: MOVEMENT.into(),
                message: e.to_string(),
            },
        })?;
        serde_json::from_slice(&bytes).map_err(|e| RunError::Unreadable {
            run: id.to_string(),
            file: MOVEMENT.into(),
            message: e.to_string(),
        })
    }

    /// The folder of a run that has `movement.json`.
    pub fn movement_dir(&self, id: &str) -> Result<PathBuf, RunError> {
        let dir = self.run_dir(id)?;
        if dir.join(MOVEMENT).is_file() {
            Ok(dir)
        } else {
            Err(RunError::NoMovement(id.to_string()))
        }
    }

    /// A run's `segments.json`, parsed.
    pub fn segments(&self, id: &str) -> Result<Value, RunError> {
        let path = self.run_dir(id)?.join("segments.json");
        let unreadable = |message: String| RunError::Unreadable {
            run: id.to_string(),
            file: "segments.json".into(),
            message,
        };
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            // A track-only run has no segments.json.
            std::io::ErrorKind::NotFound => RunError::NotFound(format!("{id}/segments.json")),
            _ => unreadable(e.to_string()),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))
    }

    /// A downloadable file of a run: its bytes and media type.
    pub fn file(&self, id: &str, name: &str) -> Result<(Vec<u8>, &'static str), RunError> {
        let dir = self.run_dir(id)?;
        let Some((_, media)) = DOWNLOADS.iter().find(|(file, _)| *file == name) else {
            return Err(RunError::UnknownFile(name.to_string()));
        };
        let bytes = std::fs::read(dir.join(name)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RunError::NotFound(format!("{id}/{name}")),
            _ => RunError::Unreadable {
                run: id.to_string(),
                file: name.to_string(),
                message: e.to_string(),
            },
        })?;
        Ok((bytes, media))
    }
}

/// When `path` was last written (RFC 3339, UTC), empty when unknown.
fn written_at(path: &Path) -> String {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_cannot_name_other_folders() {
        assert!(valid_run_id("2026-W48_iris"));
        for bad in ["", "..", "a/b", "a\\b", ".hidden", "x y", &"a".repeat(65)] {
            assert!(!valid_run_id(bad), "{bad:?}");
        }
    }
}
