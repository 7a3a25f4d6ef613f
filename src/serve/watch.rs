//! The serve watch: a folder of weekly files that the service tracks again whenever they
//! change, so a new week reaches open dashboards without anyone starting a run.
//!
//! Owns noticing changes in the folder, running the track as a job of [`super::jobs`],
//! replacing `runs/<run id>` and announcing the new week on [`super::live::RunUpdates`].
//! The tracking itself is [`crate::track::run_track`]'s; the dashboard's reaction is the
//! dashboard's.
//!
//! # Design
//! - **Files by name.** `transactions*.csv[.gz]` are transactions (Online Retail II layout)
//!   and `events*.csv[.gz]` browsing events (REES46 layout); anything else is ignored. Names
//!   rather than sniffed headers: a name says what the sender meant, a file with the wrong
//!   columns fails loudly (the ingest names the missing columns) instead of being silently
//!   skipped, and a half-copied file whose header is not written yet is not misfiled. One
//!   file per week is the expected shape, but any split works: the track reads every file
//!   of a kind as one input (see [`crate::track::TrackRequest`]).
//! - **A re-run of everything, not an increment.** Each change re-tracks all the files from
//!   the first week. The fit weeks, the settings and the seed are the same, so earlier weeks
//!   come out as before (same segment ids, same coordinates; the tests check it), and there
//!   is no second, incremental code path whose state could drift from what `segscope track`
//!   computes.
//! - **Polling with a settle look.** Every `serve.watch.poll_secs` the folder's listing
//!   (names, sizes, modification times) is compared with the previous look and with the
//!   listing last tracked. A change is tracked only once the listing looked the same at two
//!   consecutive looks, so a file still being copied in (its size or time still moving) is
//!   not read. Polling needs no platform file-notification API and behaves the same on
//!   network and container file systems; at a weekly cadence a minute's latency costs
//!   nothing. There is no separate schedule: a watch that looks every minute already runs as
//!   soon as a week lands, and [`Watch::poll`] can be driven by anything else (tests do).
//! - **Atomic replacement.** The track writes into `runs/.<run id>.staging`; when it
//!   succeeds, that folder is exchanged with `runs/<run id>` in one `renameat2
//!   (RENAME_EXCHANGE)` on Linux (two renames elsewhere, where a reader can briefly find no
//!   run, but never half of one), and the old run is removed. A failed re-run removes its
//!   staging folder and leaves the last good run untouched. A failed listing is tracked
//!   again only once its files change.
//! - **One announcement per change.** [`RunUpdate::WeekAdded`] with the run's last week is
//!   published when the new `movement.json` differs from the one it replaced (a new week, or
//!   changed data within the weeks), never for a re-run that changed nothing, and only once
//!   the job is marked succeeded. The watch remembers nothing across restarts: a service
//!   that starts re-tracks the folder once, which announces nothing when the run was
//!   already up to date.
//! - **A job like any other.** The re-run is a [`super::jobs::Jobs`] job under the run id:
//!   followed by `GET /api/v1/runs/{id}/progress`, queued behind runs started through the
//!   API, computed on the service's worker pool, counted in the runs metrics, marked
//!   interrupted at shutdown. Its failure (with the file and line the ingest reports) is the
//!   job's error and a warning in the log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::AppState;
use super::jobs::{JobRequest, JobState, JobStatus};
use super::live::RunUpdate;
use crate::analysis::progress::Progress;
use crate::track::{TrackError, TrackRequest, run_track};

/// Why the watch could not look at its folder or replace its run.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The watched folder cannot be created or listed.
    #[error("watched folder {folder}: {source}")]
    Folder {
        /// The folder.
        folder: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The track of the watched files failed; the last good run stays.
    #[error(transparent)]
    Track(#[from] TrackError),
    /// The new run could not be put in place of the old one; the old one stays.
    #[error("cannot replace run folder {run}: {source}")]
    Replace {
        /// The run folder.
        run: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// What one look at the folder found.
#[derive(Debug)]
pub enum Poll {
    /// No transactions or events file in the folder.
    Empty,
    /// The files are those last tracked (successfully or not).
    Unchanged,
    /// The files changed since the previous look; they are tracked once a look finds them
    /// as they were (so a file still being written is not read).
    Settling,
    /// The previous re-run has not finished.
    Busy,
    /// The service is stopping; nothing new starts.
    Stopping,
    /// A re-run was queued; its status is followed here.
    Started(watch::Receiver<JobStatus>),
}

/// One file's name, size and modification time: what a look compares.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

/// The input files of the folder by name.
type Listing = BTreeMap<String, Stamp>;

/// What the watch remembers between looks.
#[derive(Debug, Default)]
struct Seen {
    /// The listing of the previous look.
    previous: Option<Listing>,
    /// The listing the last re-run was started on.
    tracked: Option<Listing>,
    /// The last re-run's status.
    running: Option<watch::Receiver<JobStatus>>,
}

/// A watched folder and the run it feeds.
pub struct Watch {
    state: AppState,
    folder: PathBuf,
    run_id: String,
    seen: Mutex<Seen>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("folder", &self.folder)
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

/// The kinds of input a file name says it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Transactions,
    Events,
}

fn kind_of(name: &str) -> Option<Kind> {
    let lower = name.to_ascii_lowercase();
    if !(lower.ends_with(".csv") || lower.ends_with(".csv.gz")) {
        return None;
    }
    if lower.starts_with("transactions") {
        Some(Kind::Transactions)
    } else if lower.starts_with("events") {
        Some(Kind::Events)
    } else {
        None
    }
}

impl Watch {
    /// The watch `state.settings.serve.watch` describes over the service's data directory;
    /// creates the folder when missing. Whether the watch is enabled is the caller's
    /// concern (tests drive a watch that the settings leave off).
    pub fn new(state: &AppState) -> Result<Self, WatchError> {
        let settings = &state.settings.serve.watch;
        let folder = settings.folder_in(&state.data_dir);
        std::fs::create_dir_all(&folder).map_err(|source| WatchError::Folder {
            folder: folder.clone(),
            source,
        })?;
        // A re-run cut short by a previous stop leaves its staging folder; never a run.
        remove_dir_if_present(&staging_dir(state.runs.dir(), &settings.run_id));
        Ok(Watch {
            state: state.clone(),
            folder,
            run_id: settings.run_id.clone(),
            seen: Mutex::new(Seen::default()),
        })
    }

    /// The watched folder.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// The run the watch writes.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    fn listing(&self) -> Result<Listing, WatchError> {
        let failed = |source| WatchError::Folder {
            folder: self.folder.clone(),
            source,
        };
        let mut listing = Listing::new();
        for entry in std::fs::read_dir(&self.folder).map_err(failed)? {
            let entry = entry.map_err(failed)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if kind_of(&name).is_none() {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(meta) if meta.is_file() => meta,
                Ok(_) => continue,
                // Removed between the listing and now: not there.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(failed(e)),
            };
            listing.insert(
                name,
                Stamp {
                    len: meta.len(),
                    modified: meta.modified().ok(),
                },
            );
        }
        Ok(listing)
    }

    /// Looks at the folder once and queues a re-run when its files changed and then held
    /// still for one look. Must be called inside the service's tokio runtime (the job is
    /// spawned on it). The loop of [`spawn`] calls this every `poll_secs`; tests call it
    /// directly.
    pub fn poll(&self) -> Result<Poll, WatchError> {
        if *self.state.stopping.borrow() {
            return Ok(Poll::Stopping);
        }
        let listing = self.listing()?;
        let Ok(mut seen) = self.seen.lock() else {
            return Ok(Poll::Busy);
        };
        if seen
            .running
            .as_ref()
            .is_some_and(|r| !r.borrow().state.is_terminal())
        {
            return Ok(Poll::Busy);
        }
        let settled = seen.previous.as_ref() == Some(&listing);
        seen.previous = Some(listing.clone());
        if listing.is_empty() {
            return Ok(Poll::Empty);
        }
        if seen.tracked.as_ref() == Some(&listing) {
            return Ok(Poll::Unchanged);
        }
        if !settled {
            return Ok(Poll::Settling);
        }
        let request = self.request(&listing);
        let announce = Arc::clone(&request.announce);
        seen.tracked = Some(listing);
        tracing::info!(
            run_id = self.run_id.as_str(),
            folder = %self.folder.display(),
            transactions = request.request.transactions.len(),
            events = request.request.events.len(),
            "watched files changed: tracking again"
        );
        let status = self
            .state
            .jobs
            .start(self.run_id.clone(), JobRequest::Track(Box::new(request)));
        seen.running = Some(status.clone());
        let mut follow = status.clone();
        let updates = Arc::clone(&self.state.updates);
        tokio::spawn(async move {
            let succeeded = match follow.wait_for(|s| s.state.is_terminal()).await {
                Ok(done) => done.state == JobState::Succeeded,
                Err(_) => false,
            };
            let update = announce.lock().ok().and_then(|mut a| a.take());
            if let (true, Some(update)) = (succeeded, update) {
                updates.publish(update);
            }
        });
        Ok(Poll::Started(status))
    }

    fn request(&self, listing: &Listing) -> WatchedTrack {
        let settings = (*self.state.settings).clone();
        let files = |kind: Kind| -> Vec<PathBuf> {
            listing
                .keys()
                .filter(|name| kind_of(name) == Some(kind))
                .map(|name| self.folder.join(name))
                .collect()
        };
        let runs = self.state.runs.dir();
        WatchedTrack {
            request: TrackRequest {
                transactions: files(Kind::Transactions),
                events: files(Kind::Events),
                weeks: None,
                maps: settings.track.maps.clone(),
                settings,
                out_dir: staging_dir(runs, &self.run_id),
            },
            run_dir: runs.join(&self.run_id),
            run_id: self.run_id.clone(),
            announce: Arc::new(Mutex::new(None)),
        }
    }
}

/// Where a re-run of `run_id` is written before it replaces the run: a hidden sibling (not a
/// valid run id, so never listed or served).
pub fn staging_dir(runs_dir: &Path, run_id: &str) -> PathBuf {
    runs_dir.join(format!(".{run_id}.staging"))
}

/// A re-run of the watched files, as a job computes it.
#[derive(Debug, Clone)]
pub struct WatchedTrack {
    /// The track, writing into the staging folder.
    request: TrackRequest,
    /// The run folder it replaces.
    run_dir: PathBuf,
    /// The run id (for the announcement).
    run_id: String,
    /// The announcement a successful re-run leaves for [`Watch::poll`]'s follower, which
    /// publishes it once the job is marked succeeded: a dashboard told of a new week finds
    /// the job finished, and a service stopping in between does not record a finished
    /// re-run as interrupted.
    announce: Arc<Mutex<Option<RunUpdate>>>,
}

impl WatchedTrack {
    /// The staging folder the job writes (and where an interrupted job is recorded).
    pub fn out_dir(&self) -> &Path {
        &self.request.out_dir
    }

    /// Tracks into the staging folder, puts it in place of the run and, when
    /// `movement.json` changed, leaves the announcement of its last week to be published
    /// once the job has succeeded. On any failure the staging folder is removed and the run
    /// folder is as it was.
    pub fn run(
        &self,
        runtime: &tokio::runtime::Handle,
        progress: &dyn Progress,
    ) -> Result<(), WatchError> {
        let staging = &self.request.out_dir;
        remove_dir_if_present(staging);
        let run = match run_track(&self.request, runtime, progress) {
            Ok(run) => run,
            Err(error) => {
                remove_dir_if_present(staging);
                return Err(error.into());
            }
        };
        progress.start("replacing the run", 0);
        let before = std::fs::read(self.run_dir.join("movement.json")).ok();
        let after = std::fs::read(staging.join("movement.json")).ok();
        if let Err(source) = exchange(staging, &self.run_dir) {
            remove_dir_if_present(staging);
            return Err(WatchError::Replace {
                run: self.run_dir.clone(),
                source,
            });
        }
        // The staging folder now holds the previous run (or nothing).
        remove_dir_if_present(staging);
        let last = run.document.weeks.last().map(ToString::to_string);
        match last {
            Some(week) if before != after => {
                tracing::info!(
                    run_id = self.run_id.as_str(),
                    week = week.as_str(),
                    "watched run updated"
                );
                if let Ok(mut announce) = self.announce.lock() {
                    *announce = Some(RunUpdate::WeekAdded {
                        run_id: self.run_id.clone(),
                        week,
                    });
                }
            }
            _ => tracing::info!(
                run_id = self.run_id.as_str(),
                "watched run re-tracked; movement unchanged"
            ),
        }
        Ok(())
    }
}

fn remove_dir_if_present(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(folder = %dir.display(), %error, "cannot remove a staging folder")
        }
    }
}

/// Puts `new` at `target`, leaving what was at `target` (if anything) at `new`.
fn exchange(new: &Path, target: &Path) -> std::io::Result<()> {
    if !target.exists() {
        return std::fs::rename(new, target);
    }
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        match renameat_with(CWD, new, CWD, target, RenameFlags::EXCHANGE) {
            Ok(()) => return Ok(()),
            // Old kernels and some file systems lack the exchange; fall back below.
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
            Err(e) => return Err(e.into()),
        }
    }
    let aside = new.with_extension("previous");
    remove_dir_if_present(&aside);
    std::fs::rename(target, &aside)?;
    if let Err(e) = std::fs::rename(new, target) {
        // Put the old run back; the new one stays in staging to be removed.
        let _ = std::fs::rename(&aside, target);
        return Err(e);
    }
    std::fs::rename(&aside, new)
}

/// Starts the watch loop when `serve.watch.enabled`: a look every `poll_secs` until the
/// service stops. Returns the watched folder (to tell the user), `None` when disabled.
pub fn spawn(state: &AppState) -> Result<Option<PathBuf>, WatchError> {
    let settings = &state.settings.serve.watch;
    if !settings.enabled {
        return Ok(None);
    }
    let watch = Watch::new(state)?;
    let folder = watch.folder().to_path_buf();
    let every = Duration::from_secs_f64(settings.poll_secs);
    let mut stopping = state.stopping.clone();
    tracing::info!(
        folder = %folder.display(),
        run_id = watch.run_id(),
        poll_secs = settings.poll_secs,
        "watching a folder for new weekly files"
    );
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A failing listing is logged once until it works again, not every look.
        let mut failing = false;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopping.wait_for(|s| *s) => break,
            }
            match watch.poll() {
                Ok(Poll::Stopping) => break,
                Ok(_) => failing = false,
                Err(error) => {
                    if !failing {
                        tracing::warn!(%error, "the watch cannot look at its folder");
                    }
                    failing = true;
                }
            }
        }
        tracing::info!(run_id = watch.run_id(), "watch stopped");
    });
    Ok(Some(folder))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_recognised_by_name() {
        assert_eq!(
            kind_of("transactions-2026-W41.csv.gz"),
            Some(Kind::Transactions)
        );
        assert_eq!(kind_of("Events_2026-W41.CSV"), Some(Kind::Events));
        assert_eq!(kind_of("events.csv.part"), None);
        assert_eq!(kind_of("notes.csv"), None);
        assert_eq!(kind_of("transactions.xlsx"), None);
    }

    #[test]
    fn exchange_swaps_two_folders_and_moves_into_an_empty_place() {
        let dir = tempfile::tempdir().unwrap();
        let (new, target) = (dir.path().join("new"), dir.path().join("run"));
        std::fs::create_dir(&new).unwrap();
        std::fs::write(new.join("f"), "1").unwrap();
        exchange(&new, &target).unwrap();
        assert!(!new.exists());
        assert_eq!(std::fs::read_to_string(target.join("f")).unwrap(), "1");
        std::fs::create_dir(&new).unwrap();
        std::fs::write(new.join("f"), "2").unwrap();
        exchange(&new, &target).unwrap();
        assert_eq!(std::fs::read_to_string(target.join("f")).unwrap(), "2");
        assert_eq!(std::fs::read_to_string(new.join("f")).unwrap(), "1");
    }
}
