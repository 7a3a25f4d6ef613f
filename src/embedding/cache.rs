//! A content-hash cache of remote embeddings, so an unchanged history is never embedded twice.
//!
//! Owns one redb file (`embeddings.redb` under the configured directory): key =
//! sha256(base URL, model, dimensions, document text), value = the vector as f32
//! little-endian bytes. It survives restarts. It never decides what to embed and never fails a
//! run: a cache that cannot be opened, read or written (corrupt file, permissions, another
//! process holding redb's lock) is reported once with `tracing::warn!` and bypassed, and a
//! stored value of the wrong length is treated as a miss. Reads and writes are synchronous
//! (redb); the async caller runs them with `spawn_blocking`. Each batch is written in one
//! transaction.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redb::{ReadableDatabase, TableDefinition};
use sha2::{Digest, Sha256};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("embeddings_v1");
/// File name of the cache inside the configured directory.
pub const FILE_NAME: &str = "embeddings.redb";

/// The key of one cached vector.
pub type CacheKey = [u8; 32];

/// Why a cache operation failed; logged and bypassed, never returned to a run.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The directory could not be created.
    #[error("cannot create cache directory {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// redb refused to open, read or write the file.
    #[error("embedding cache {path}: {detail}")]
    Store {
        /// The file.
        path: PathBuf,
        /// redb's explanation.
        detail: String,
    },
}

/// The cache handle; cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct EmbeddingCache {
    db: Option<Arc<redb::Database>>,
    path: PathBuf,
    /// Set after the first failed read or write, so a broken cache is bypassed (and reported
    /// once) instead of failing every batch.
    broken: Arc<AtomicBool>,
}

impl std::fmt::Debug for EmbeddingCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingCache")
            .field("path", &self.path)
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

/// The cache key of one document for one endpoint, model and vector length; fields are
/// length-prefixed so that no two different tuples hash the same bytes.
pub fn cache_key(base_url: &str, model: &str, dimensions: usize, text: &str) -> CacheKey {
    let mut h = Sha256::new();
    for part in [base_url.as_bytes(), model.as_bytes(), text.as_bytes()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update((dimensions as u64).to_le_bytes());
    h.finalize().into()
}

impl EmbeddingCache {
    /// A cache that stores nothing (the cache directory setting is empty).
    pub fn disabled() -> Self {
        EmbeddingCache {
            db: None,
            path: PathBuf::new(),
            broken: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Opens (or creates) the cache under `dir`; on failure, warns and returns a disabled cache.
    pub fn open(dir: &Path) -> Self {
        let path = dir.join(FILE_NAME);
        match Self::try_open(dir, &path) {
            Ok(db) => EmbeddingCache {
                db: Some(Arc::new(db)),
                path,
                broken: Arc::new(AtomicBool::new(false)),
            },
            Err(e) => {
                tracing::warn!(error = %e, "embedding cache unavailable; embedding without it");
                EmbeddingCache {
                    db: None,
                    path,
                    broken: Arc::new(AtomicBool::new(false)),
                }
            }
        }
    }

    fn try_open(dir: &Path, path: &Path) -> Result<redb::Database, CacheError> {
        std::fs::create_dir_all(dir).map_err(|source| CacheError::Directory {
            path: dir.to_path_buf(),
            source,
        })?;
        redb::Database::create(path).map_err(|e| CacheError::Store {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
    }

    /// True when look-ups and writes reach a file.
    pub fn is_enabled(&self) -> bool {
        self.db.is_some() && !self.broken.load(Ordering::Relaxed)
    }

    fn fail(&self, e: CacheError) {
        if !self.broken.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %e, "embedding cache failed; bypassing it for this run");
        }
    }

    /// Looks up `keys`; a miss, a value of another length than `dimensions`, or any failure
    /// gives `None` for that key.
    pub fn get_many(&self, keys: &[CacheKey], dimensions: usize) -> Vec<Option<Vec<f32>>> {
        let mut out = vec![None; keys.len()];
        let Some(db) = self.db.as_ref().filter(|_| self.is_enabled()) else {
            return out;
        };
        let store = |e: &dyn std::fmt::Display| CacheError::Store {
            path: self.path.clone(),
            detail: e.to_string(),
        };
        let read = match db.begin_read() {
            Ok(r) => r,
            Err(e) => {
                self.fail(store(&e));
                return out;
            }
        };
        let table = match read.open_table(TABLE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return out,
            Err(e) => {
                self.fail(store(&e));
                return out;
            }
        };
        for (slot, key) in out.iter_mut().zip(keys) {
            match table.get(key.as_slice()) {
                Ok(Some(value)) => *slot = decode(value.value(), dimensions),
                Ok(None) => {}
                Err(e) => {
                    self.fail(store(&e));
                    return vec![None; keys.len()];
                }
            }
        }
        out
    }

    /// Stores one batch of vectors in one transaction; failures are reported and bypassed.
    pub fn put_batch(&self, entries: &[(CacheKey, Vec<f32>)]) {
        let Some(db) = self.db.as_ref().filter(|_| self.is_enabled()) else {
            return;
        };
        let result = (|| -> Result<(), String> {
            let write = db.begin_write().map_err(|e| e.to_string())?;
            {
                let mut table = write.open_table(TABLE).map_err(|e| e.to_string())?;
                for (key, vector) in entries {
                    let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                    table
                        .insert(key.as_slice(), bytes.as_slice())
                        .map_err(|e| e.to_string())?;
                }
            }
            write.commit().map_err(|e| e.to_string())
        })();
        if let Err(detail) = result {
            self.fail(CacheError::Store {
                path: self.path.clone(),
                detail,
            });
        }
    }
}

fn decode(bytes: &[u8], dimensions: usize) -> Option<Vec<f32>> {
    if bytes.len() != dimensions * 4 {
        return None;
    }
    let v: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    v.iter().all(|x| x.is_finite()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_survives_reopen_and_corruption_is_bypassed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let k1 = cache_key("http://x/v1", "m", 2, "a");
        let k2 = cache_key("http://x/v1", "m", 2, "b");
        assert_ne!(k1, cache_key("http://x/v1", "m", 3, "a"));
        {
            let cache = EmbeddingCache::open(dir.path());
            assert!(cache.is_enabled());
            cache.put_batch(&[(k1, vec![1.0, -2.5])]);
        }
        let cache = EmbeddingCache::open(dir.path());
        assert_eq!(
            cache.get_many(&[k1, k2], 2),
            vec![Some(vec![1.0, -2.5]), None]
        );
        assert_eq!(cache.get_many(&[k1], 3), vec![None]);
        drop(cache);

        std::fs::write(dir.path().join(FILE_NAME), b"not a redb file at all").expect("write");
        let cache = EmbeddingCache::open(dir.path());
        assert!(!cache.is_enabled());
        assert_eq!(cache.get_many(&[k1], 2), vec![None]);
        cache.put_batch(&[(k1, vec![1.0, 2.0])]);
    }
}
