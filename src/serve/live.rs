//! Live updates of stored runs: a watched track that gained a week announces it here, and
//! the dashboard's event streams pass it on to open pages so they redraw without a reload.
//!
//! One in-process broadcast channel for the whole service. A subscriber that falls behind
//! by more than [`CAPACITY`] updates misses the oldest ones (it is told so by the channel and
//! should reload what it shows); publishing never blocks and never fails, with or without
//! subscribers.

use serde::Serialize;
use tokio::sync::broadcast;

/// Updates kept for a slow subscriber before the oldest are dropped.
pub const CAPACITY: usize = 64;

/// What changed in a stored run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunUpdate {
    /// A tracked run's `movement.json` was rewritten and now ends with `week`.
    WeekAdded {
        /// The run (its folder name under `runs/`).
        run_id: String,
        /// The ISO week now last in the run, e.g. `2026-W44`.
        week: String,
    },
}

impl RunUpdate {
    /// The run the update is about.
    pub fn run_id(&self) -> &str {
        match self {
            RunUpdate::WeekAdded { run_id, .. } => run_id,
        }
    }
}

/// The service's channel of [`RunUpdate`]s.
#[derive(Debug)]
pub struct RunUpdates {
    sender: broadcast::Sender<RunUpdate>,
}

impl Default for RunUpdates {
    fn default() -> Self {
        RunUpdates {
            sender: broadcast::Sender::new(CAPACITY),
        }
    }
}

impl RunUpdates {
    /// Tells every current subscriber; nobody listening is not an error.
    pub fn publish(&self, update: RunUpdate) {
        // `send` fails only when there is no receiver, which is the normal idle state.
        let _ = self.sender.send(update);
    }

    /// Receives every update published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<RunUpdate> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_receive_what_is_published_after_they_subscribe() {
        let updates = RunUpdates::default();
        updates.publish(RunUpdate::WeekAdded {
            run_id: "early".into(),
            week: "2026-W40".into(),
        });
        let mut rx = updates.subscribe();
        let update = RunUpdate::WeekAdded {
            run_id: "shop".into(),
            week: "2026-W41".into(),
        };
        updates.publish(update.clone());
        assert_eq!(rx.recv().await.ok(), Some(update));
        assert!(rx.try_recv().is_err(), "nothing else was published");
    }

    #[test]
    fn updates_serialise_with_their_kind() {
        let update = RunUpdate::WeekAdded {
            run_id: "shop".into(),
            week: "2026-W41".into(),
        };
        assert_eq!(update.run_id(), "shop");
        assert_eq!(
            serde_json::to_value(&update).ok(),
            Some(serde_json::json!({"kind": "week_added", "run_id": "shop", "week": "2026-W41"}))
        );
    }
}
