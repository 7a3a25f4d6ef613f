//! Progress reporting for long computations, without tying the maths to a UI.
//!
//! The CLI shows these as progress bars, the service (later) as job progress; the
//! algorithms only call [`Progress`]. Implementations must be cheap: algorithms call
//! [`Progress::advance`] from inner loops (at most a few thousand times per stage).

/// Receives progress of one stage of work.
pub trait Progress: Sync {
    /// A new unit of work with `total` steps starts (`0` when the total is unknown).
    fn start(&self, stage: &str, total: u64);
    /// `steps` more steps of the current unit are done.
    fn advance(&self, steps: u64);
    /// The current unit is finished.
    fn finish(&self);
}

/// Discards all progress; for tests, benchmarks and library callers without a UI.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _stage: &str, _total: u64) {}
    fn advance(&self, _steps: u64) {}
    fn finish(&self) {}
}
