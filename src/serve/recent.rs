//! The parsed files of the runs most recently asked for, kept so that map points and weekly
//! movement are parsed once per run rather than once per request.
//!
//! Entries are keyed by the run id and the stamp (modification time and length) of every file
//! parsed, so a run whose files were rewritten is parsed again on its next request even
//! without being told; [`RecentRuns::forget`] drops a run at once when a live update says so.
//! At most `capacity` runs are kept, the least recently asked for dropped first.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// `(modified, length)` of a file, so a rewrite is seen even within one timestamp tick when
/// the size changed; `None` when the file is missing.
pub type FileStamp = Option<(SystemTime, u64)>;

/// The stamp of `path`.
pub fn stamp(path: &Path) -> FileStamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

type Key = (String, Vec<FileStamp>);

/// Parsed runs, most recently asked for first.
#[derive(Debug)]
pub struct RecentRuns<T> {
    capacity: usize,
    entries: Mutex<Vec<(Key, Arc<T>)>>,
}

impl<T> RecentRuns<T> {
    /// An empty cache keeping at most `capacity` runs.
    pub fn new(capacity: usize) -> Self {
        RecentRuns {
            capacity,
            entries: Mutex::new(Vec::new()),
        }
    }

    /// The run's parsed files: kept ones when `files` are stamped as when they were parsed,
    /// else what `read` returns now (kept for next time). Blocking when `read` reads files.
    pub fn get_or_read<E>(
        &self,
        run_id: &str,
        files: &[PathBuf],
        read: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        let key: Key = (run_id.to_string(), files.iter().map(|f| stamp(f)).collect());
        if let Ok(mut entries) = self.entries.lock()
            && let Some(at) = entries.iter().position(|(k, _)| *k == key)
        {
            let entry = entries.remove(at);
            let parsed = Arc::clone(&entry.1);
            entries.insert(0, entry);
            return Ok(parsed);
        }
        let parsed = Arc::new(read()?);
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|(k, _)| k.0 != run_id);
            entries.insert(0, (key, Arc::clone(&parsed)));
            entries.truncate(self.capacity);
        }
        Ok(parsed)
    }

    /// Drops what is kept of `run_id` (its files were rewritten).
    pub fn forget(&self, run_id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|(k, _)| k.0 != run_id);
        }
    }

    /// Drops everything (updates were missed, so any run may have changed).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_read_once_until_its_files_change_or_it_is_forgotten() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("a.csv");
        std::fs::write(&file, "one")?;
        let cache: RecentRuns<String> = RecentRuns::new(2);
        let reads = std::cell::Cell::new(0);
        let read = || -> Result<String, std::io::Error> {
            reads.set(reads.get() + 1);
            std::fs::read_to_string(&file)
        };
        let files = [file.clone()];
        assert_eq!(*cache.get_or_read("a", &files, read)?, "one");
        assert_eq!(*cache.get_or_read("a", &files, read)?, "one");
        assert_eq!(reads.get(), 1);
        // A rewrite of another length is seen at once.
        std::fs::write(&file, "three")?;
        assert_eq!(*cache.get_or_read("a", &files, read)?, "three");
        assert_eq!(reads.get(), 2);
        cache.forget("a");
        cache.get_or_read("a", &files, read)?;
        assert_eq!(reads.get(), 3);
        // Beyond the capacity the least recently asked for goes.
        cache.get_or_read("b", &files, read)?;
        cache.get_or_read("c", &files, read)?;
        cache.get_or_read("a", &files, read)?;
        assert_eq!(reads.get(), 6);
        cache.clear();
        cache.get_or_read("c", &files, read)?;
        assert_eq!(reads.get(), 7);
        Ok(())
    }
}
