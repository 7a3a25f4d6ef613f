//! The `[serve]` settings: auth and limits of `segscope serve`. The token is an [`ApiKey`]:
//! never shown by `Debug`, never serialised into run outputs.

use serde::{Deserialize, Serialize};

use crate::embedding::ApiKey;

/// `[serve]`: see `config/default.toml` for what each knob does.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServeSettings {
    /// Bearer token the API requires; empty = no auth (only for a loopback bind).
    #[serde(default, skip_serializing)]
    pub token: ApiKey,
    /// Largest request body accepted, bytes.
    pub max_body_bytes: usize,
    /// Longest a request may take before a 408, seconds.
    pub request_timeout_secs: f64,
    /// Largest file accepted by `PUT /api/v1/inbox/{name}`, bytes.
    pub max_upload_bytes: u64,
    /// Longest an upload may take before a 408, seconds.
    pub upload_timeout_secs: f64,
    /// `[serve.watch]`: re-track a folder of weekly files when new ones arrive.
    pub watch: WatchSettings,
}

/// `[serve.watch]`: a folder of weekly transactions and events files that the service tracks
/// again whenever its files change (see [`crate::serve::watch`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WatchSettings {
    /// Whether the service watches the folder at all (off by default: a service that only
    /// serves runs made elsewhere has nothing to watch).
    pub enabled: bool,
    /// The folder; empty means `<data dir>/watch`. A relative path is relative to the
    /// service's working directory, like `--data-dir`.
    pub folder: String,
    /// The run the watch writes (`runs/<run_id>`), replaced whole at every re-run.
    pub run_id: String,
    /// Seconds between two looks at the folder; a change is tracked once the folder looked
    /// the same at two consecutive looks, so a file still being copied is never read.
    pub poll_secs: f64,
}

impl WatchSettings {
    /// Checks the values, naming the key of the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.poll_secs.is_finite() && self.poll_secs > 0.0) {
            return Err(format!(
                "serve.watch.poll_secs = {}: must be a positive number of seconds",
                self.poll_secs
            ));
        }
        if !crate::serve::runs::valid_run_id(&self.run_id) {
            return Err(format!(
                "serve.watch.run_id = {:?}: use 1 to 64 letters, digits, '-' or '_'",
                self.run_id
            ));
        }
        Ok(())
    }

    /// The watched folder for a service over `data_dir`.
    pub fn folder_in(&self, data_dir: &std::path::Path) -> std::path::PathBuf {
        if self.folder.trim().is_empty() {
            data_dir.join("watch")
        } else {
            std::path::PathBuf::from(&self.folder)
        }
    }
}
