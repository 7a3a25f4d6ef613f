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
}
