//! Runs started through the API: validated requests become background jobs, one at a time
//! (two cores, and the embedded store takes one writer), whose progress is watched by
//! polling and by server-sent events.
//!
//! Owns the life of a job (queued → running → succeeded | failed | interrupted), the
//! progress it publishes, and what happens at shutdown: a job still running when the service
//! stops is marked `interrupted` in its run folder (`job.json`), so after a restart its id
//! says what happened instead of "no run". The computation itself is the pipeline's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};

use super::metrics::{Metrics, ModelUsageCounts};
use crate::analysis::progress::Progress;
use crate::pipeline::{SegmentRequest, StoreSegmentRequest, run_segment, run_store_segment};

/// Why a job failed: the error of whichever use case it ran.
type JobError = Box<dyn std::error::Error + Send + Sync>;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for the run before it.
    Queued,
    /// Computing.
    Running,
    /// Finished; its files are in the run folder.
    Succeeded,
    /// Stopped with an error (in `error`).
    Failed,
    /// The service stopped while it ran.
    Interrupted,
}

impl JobState {
    /// True once the job will not change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Interrupted
        )
    }
}

/// A job's progress as the API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The run id.
    pub run_id: String,
    /// Where it is in its life.
    pub state: JobState,
    /// The stage now running ("UMAP", "writing the report").
    pub stage: String,
    /// Share of the current stage done, when the stage knows its size.
    pub stage_fraction: Option<f64>,
    /// Estimated share of the whole run done, 0 to 100, never decreasing.
    pub percent: f64,
    /// Why it failed, for people (no paths beyond the request's own file names).
    pub error: Option<String>,
}

/// What to run.
#[derive(Debug, Clone)]
pub enum JobRequest {
    /// A numeric feature table.
    Table(SegmentRequest),
    /// Store data.
    Store(StoreSegmentRequest),
    /// A re-run of the watched folder (see [`super::watch`]); boxed, being the largest.
    Track(Box<super::watch::WatchedTrack>),
}

/// Milestones of a run and the share of the run done when each starts: the stages every run
/// passes, in order (the sub-stages between them only update `stage`).
const MILESTONES: [(&str, f64); 9] = [
    ("reading input", 2.0),
    ("reading transactions", 2.0),
    ("reading events", 10.0),
    ("embedding browsing histories", 20.0),
    ("scaling", 25.0),
    ("measuring", 75.0),
    ("business KPIs", 85.0),
    ("writing the narrative", 88.0),
    ("writing the report", 95.0),
];

/// Publishes a job's progress to its watchers.
struct JobProgress {
    status: watch::Sender<JobStatus>,
    stage: Mutex<(u64, u64)>,
}

impl Progress for JobProgress {
    fn start(&self, stage: &str, total: u64) {
        if let Ok(mut s) = self.stage.lock() {
            *s = (0, total);
        }
        let floor = MILESTONES
            .iter()
            .find(|(name, _)| *name == stage)
            .map(|(_, percent)| *percent);
        self.status.send_modify(|status| {
            status.stage = stage.to_string();
            status.stage_fraction = (total > 0).then_some(0.0);
            if let Some(floor) = floor {
                status.percent = status.percent.max(floor);
            }
        });
    }

    fn advance(&self, steps: u64) {
        let fraction = match self.stage.lock() {
            Ok(mut s) if s.1 > 0 => {
                s.0 = (s.0 + steps).min(s.1);
                Some(s.0 as f64 / s.1 as f64)
            }
            _ => None,
        };
        if let Some(fraction) = fraction {
            self.status.send_if_modified(|status| {
                let rounded = (fraction * 100.0).round() / 100.0;
                let changed = status.stage_fraction != Some(rounded);
                status.stage_fraction = Some(rounded);
                changed
            });
        }
    }

    fn finish(&self) {}
}

/// The jobs of this service process.
pub struct Jobs {
    jobs: Mutex<HashMap<String, (watch::Sender<JobStatus>, PathBuf)>>,
    one_at_a_time: Arc<Semaphore>,
    runtime: tokio::runtime::Handle,
    pool: Arc<rayon::ThreadPool>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").finish_non_exhaustive()
    }
}

/// The file in a run folder that records a job that did not finish.
pub const JOB_FILE: &str = "job.json";

impl Jobs {
    /// Jobs computed on `pool`, talking to outside services through `runtime`, counted in
    /// `metrics`.
    pub fn new(
        runtime: tokio::runtime::Handle,
        pool: Arc<rayon::ThreadPool>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Jobs {
            jobs: Mutex::new(HashMap::new()),
            one_at_a_time: Arc::new(Semaphore::new(1)),
            runtime,
            pool,
            metrics,
        }
    }

    /// Starts `request` as run `run_id` (its output folder is the request's `out_dir`) and
    /// returns at once; the job waits for the run before it.
    pub fn start(
        self: &Arc<Self>,
        run_id: String,
        request: JobRequest,
    ) -> watch::Receiver<JobStatus> {
        let (sender, receiver) = watch::channel(JobStatus {
            run_id: run_id.clone(),
            state: JobState::Queued,
            stage: "queued".into(),
            stage_fraction: None,
            percent: 0.0,
            error: None,
        });
        let out_dir = match &request {
            JobRequest::Table(r) => r.out_dir.clone(),
            JobRequest::Store(r) => r.out_dir.clone(),
            JobRequest::Track(r) => r.out_dir().to_path_buf(),
        };
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.insert(run_id.clone(), (sender.clone(), out_dir.clone()));
        }
        let jobs = Arc::clone(self);
        self.metrics.run_started();
        tokio::spawn(async move {
            let Ok(_permit) = jobs.one_at_a_time.clone().acquire_owned().await else {
                return;
            };
            sender.send_modify(|s| s.state = JobState::Running);
            let progress = JobProgress {
                status: sender.clone(),
                stage: Mutex::new((0, 0)),
            };
            let (runtime, pool) = (jobs.runtime.clone(), Arc::clone(&jobs.pool));
            let outcome = tokio::task::spawn_blocking(move || {
                let result: Result<(), JobError> = pool.install(|| match &request {
                    JobRequest::Table(r) => run_segment(r, &progress)
                        .map(|_| ())
                        .map_err(JobError::from),
                    JobRequest::Store(r) => run_store_segment(r, &runtime, &progress)
                        .map(|_| ())
                        .map_err(JobError::from),
                    JobRequest::Track(r) => r.run(&runtime, &progress).map_err(JobError::from),
                });
                (result, progress)
            })
            .await;
            // A job marked interrupted at shutdown was counted then.
            let counted = sender.borrow().state == JobState::Interrupted;
            let final_state = match &outcome {
                Ok((Ok(()), _)) => "succeeded",
                _ => "failed",
            };
            if !counted {
                jobs.metrics.run_finished(final_state);
            }
            if let (Ok((Ok(()), _)), Some(usage)) = (&outcome, recorded_model_usage(&out_dir)) {
                jobs.metrics.model_usage("narrative", &usage);
            }
            match outcome {
                Ok((Ok(()), _)) => sender.send_modify(|s| {
                    s.state = JobState::Succeeded;
                    s.stage = "done".into();
                    s.stage_fraction = None;
                    s.percent = 100.0;
                }),
                Ok((Err(error), _)) => {
                    tracing::warn!(run_id = run_id.as_str(), %error, "run failed");
                    sender.send_modify(|s| {
                        s.state = JobState::Failed;
                        s.error = Some(error.to_string());
                    });
                }
                Err(join) => {
                    tracing::error!(run_id = run_id.as_str(), error = %join, "run task ended abnormally");
                    sender.send_modify(|s| {
                        s.state = JobState::Failed;
                        s.error = Some(
                            "the run stopped unexpectedly; the cause is in the server log".into(),
                        );
                    });
                }
            }
        });
        receiver
    }

    /// The progress of a job of this process, if there is one.
    pub fn watch(&self, run_id: &str) -> Option<watch::Receiver<JobStatus>> {
        self.jobs
            .lock()
            .ok()?
            .get(run_id)
            .map(|(sender, _)| sender.subscribe())
    }

    /// Marks every job that has not finished as interrupted, in memory and in its run
    /// folder's `job.json`; called when the service stops.
    pub fn interrupt_unfinished(&self) {
        let Ok(jobs) = self.jobs.lock() else { return };
        for (sender, out_dir) in jobs.values() {
            if sender.borrow().state.is_terminal() {
                continue;
            }
            self.metrics.run_finished("interrupted");
            sender.send_modify(|s| {
                s.state = JobState::Interrupted;
                s.error = Some(format!("the service stopped during \"{}\"", s.stage));
            });
            let status = sender.borrow().clone();
            if let Err(error) = write_job_file(out_dir, &status) {
                tracing::error!(run_id = status.run_id.as_str(), %error, "cannot record the interrupted run");
            }
        }
    }
}

/// The chat model's usage recorded in a finished run's `run.json`, if a model was used.
fn recorded_model_usage(dir: &Path) -> Option<ModelUsageCounts> {
    let bytes = std::fs::read(dir.join("run.json")).ok()?;
    let record: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    serde_json::from_value(record.get("model")?.get("usage")?.clone()).ok()
}

fn write_job_file(dir: &Path, status: &JobStatus) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    std::fs::write(dir.join(JOB_FILE), json)
}

/// The status recorded in a run folder for a job that did not finish, if any.
pub fn recorded_status(dir: &Path) -> Option<JobStatus> {
    let bytes = std::fs::read(dir.join(JOB_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress() -> (JobProgress, watch::Receiver<JobStatus>) {
        let (sender, receiver) = watch::channel(JobStatus {
            run_id: "r".into(),
            state: JobState::Running,
            stage: "queued".into(),
            stage_fraction: None,
            percent: 0.0,
            error: None,
        });
        (
            JobProgress {
                status: sender,
                stage: Mutex::new((0, 0)),
            },
            receiver,
        )
    }

    #[test]
    fn percent_rises_at_milestones_and_never_falls() {
        let (p, rx) = progress();
        p.start("scaling", 0);
        assert_eq!(rx.borrow().percent, 25.0);
        p.start("UMAP", 200);
        p.advance(50);
        let status = rx.borrow().clone();
        assert_eq!(
            (status.stage.as_str(), status.stage_fraction, status.percent),
            ("UMAP", Some(0.25), 25.0)
        );
        p.start("writing the report", 0);
        assert_eq!(rx.borrow().percent, 95.0);
        p.start("reading input", 0);
        assert_eq!(rx.borrow().percent, 95.0);
        assert_eq!(rx.borrow().stage_fraction, None);
    }
}
