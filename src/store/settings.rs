//! The `[store]` settings: which Qdrant backend holds the customer points and how to reach
//! it. Owns their shape, defaults and validation; it does not own the data directory (the
//! caller passes it in) nor the layered loading (that is [`crate::settings`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::StoreError;

/// `[store]`: where customer vectors and payloads live.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// Which engine: the embedded one (no server needed) or a Qdrant server/cluster.
    pub backend: StoreBackend,
    /// Collection name; also the directory name under `<data_dir>/qdrant/` for `edge`.
    pub collection: String,
    /// Points per write request: bounds memory and request size, not semantics.
    pub batch_size: usize,
    /// How to reach a Qdrant server; read only when `backend = "server"`.
    pub server: ServerSettings,
}

/// Which Qdrant engine holds the points.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    /// `qdrant-edge`, embedded in the process, data under the data directory.
    Edge,
    /// `qdrant-client` over gRPC to one node or a cluster.
    Server,
}

/// `[store.server]`: connection and collection settings for a Qdrant server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// gRPC URL (port 6334 by default; REST's 6333 does not work here).
    pub url: String,
    /// API key; empty means "use `QDRANT_API_KEY` if set, else none". Never serialised, so
    /// it cannot leak into `run.json` or `segments.json`.
    #[serde(default, skip_serializing)]
    pub api_key: ApiKey,
    /// Deadline of each request, in seconds.
    pub timeout_secs: u64,
    /// Shards of a newly created collection (spread over a cluster's nodes).
    pub shard_number: u32,
    /// Copies of each shard in a cluster (1 = no replication).
    pub replication_factor: u32,
    /// Keep vectors and payload on disk (mmap) instead of RAM in a new collection.
    pub on_disk: bool,
}

/// A secret that prints as `<redacted>` in `Debug` and never serialises, so that settings
/// can be logged and recorded without leaking it.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key (e.g. from `QDRANT_API_KEY`).
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// True when no key is set.
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }

    /// The key itself, for the one place that sends it (the gRPC client).
    pub(crate) fn expose(&self) -> &str {
        self.0.trim()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            f.write_str("ApiKey(none)")
        } else {
            f.write_str("ApiKey(<redacted>)")
        }
    }
}

/// The environment variable that supplies the server API key when the settings leave it empty.
pub const API_KEY_ENV: &str = "QDRANT_API_KEY";

impl ServerSettings {
    /// The key to send: the configured one, else the value of [`API_KEY_ENV`] looked up with
    /// `env` (passed in so that tests and the settings loader decide where it comes from).
    pub fn effective_api_key(&self, env: impl Fn(&str) -> Option<String>) -> Option<ApiKey> {
        if !self.api_key.is_empty() {
            return Some(self.api_key.clone());
        }
        env(API_KEY_ENV)
            .map(ApiKey::new)
            .filter(|key| !key.is_empty())
    }
}

impl StoreSettings {
    /// Checks ranges once so the backends never re-check them.
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |message: String| Err(StoreError::InvalidSettings { message });
        if let Err(message) = super::check_collection_name(&self.collection) {
            return bad(format!("store.collection: {message}"));
        }
        if self.batch_size == 0 {
            return bad("store.batch_size must be at least 1".into());
        }
        if self.backend == StoreBackend::Server {
            let s = &self.server;
            if !(s.url.starts_with("http://") || s.url.starts_with("https://")) {
                return bad(format!(
                    "store.server.url = {:?}: must start with http:// or https://",
                    s.url
                ));
            }
            if s.timeout_secs == 0 || s.shard_number == 0 || s.replication_factor == 0 {
                return bad(
                    "store.server: timeout_secs, shard_number and replication_factor must be at least 1"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_never_shows_in_debug_or_serialised_settings() {
        let s = ServerSettings {
            url: "http://localhost:6334".into(),
            api_key: ApiKey::new("s3cret-key"),
            timeout_secs: 10,
            shard_number: 1,
            replication_factor: 1,
            on_disk: false,
        };
        assert!(!format!("{s:?}").contains("s3cret"));
        let json = serde_json::to_string(&s).expect("serialise");
        assert!(!json.contains("s3cret"), "{json}");
        assert!(!json.contains("api_key"), "{json}");
    }

    #[test]
    fn configured_key_wins_over_environment() {
        let mut s = ServerSettings {
            url: "http://localhost:6334".into(),
            api_key: ApiKey::default(),
            timeout_secs: 10,
            shard_number: 1,
            replication_factor: 1,
            on_disk: false,
        };
        let env = |name: &str| (name == API_KEY_ENV).then(|| "from-env".to_string());
        assert_eq!(s.effective_api_key(env), Some(ApiKey::new("from-env")));
        assert_eq!(s.effective_api_key(|_| None), None);
        s.api_key = ApiKey::new("from-config");
        assert_eq!(s.effective_api_key(env), Some(ApiKey::new("from-config")));
    }
}
