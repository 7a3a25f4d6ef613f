//! Uploading input files into the inbox: `PUT /api/v1/inbox/{name}` with the file as the
//! raw body (`curl -T tx.csv.gz`), and `GET /api/v1/inbox` to list what is there.
//!
//! An upload is streamed to a hidden temporary file in the inbox (never held in memory),
//! counted against `serve.max_upload_bytes` as it arrives, and checked before it becomes
//! visible: readable CSV (plain or gzip, detected from the bytes), UTF-8, a header with
//! non-empty unique column names, at least one data row, every row as long as the header.
//! Only then is it renamed to its name, atomically, so a run never sees half a file and a
//! rejected upload leaves the inbox as it was. An existing file is replaced only with
//! `?overwrite=true` (409 otherwise), because a queued run may be about to read it.
//!
//! Layout checks (which columns a transactions export needs) happen when a run starts,
//! where the configured column names are known; the upload check is what every input must
//! pass whatever it will be used for.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::AppState;
use super::api::ApiError;
use super::start::INBOX;

/// Longest file name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// How much larger than the upload its decompressed text may be before the check stops:
/// a gzip bomb must not keep the server busy for hours.
const MAX_EXPANSION: u64 = 50;

/// What an accepted upload looks like.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Uploaded {
    /// Its name in the inbox (what `POST /api/v1/runs` names).
    pub name: String,
    /// Bytes stored (compressed size for gzip).
    pub bytes: u64,
    /// SHA-256 of the stored bytes, hex.
    pub sha256: String,
    /// Whether the file is gzip-compressed.
    pub gzip: bool,
    /// Data rows (the header not counted).
    pub rows: u64,
    /// The header's column names.
    pub columns: Vec<String>,
}

/// One file in the inbox.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InboxFile {
    /// File name.
    pub name: String,
    /// Size, bytes.
    pub bytes: u64,
    /// Last modified (RFC 3339, UTC).
    pub modified: String,
}

/// Why an uploaded file was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum UploadCheckError {
    /// Nothing in it.
    #[error("{name}: the file is empty")]
    Empty {
        /// The upload's name.
        name: String,
    },
    /// A header but no rows.
    #[error("{name}: the file has a header but no data rows")]
    NoRows {
        /// The upload's name.
        name: String,
    },
    /// The name says gzip but the bytes are not.
    #[error("{name}: the name ends in .gz but the content is not gzip-compressed")]
    NotGzip {
        /// The upload's name.
        name: String,
    },
    /// The text is UTF-16 (a common spreadsheet export); only UTF-8 is read.
    #[error("{name}: the file is UTF-16; export it as UTF-8 CSV")]
    Utf16 {
        /// The upload's name.
        name: String,
    },
    /// A malformed spot, with where it is.
    #[error("{name}: line {line}{column}: {message}")]
    Malformed {
        /// The upload's name.
        name: String,
        /// 1-based line.
        line: u64,
        /// `, column "x"` when known, else empty.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// Decompressed, the text is implausibly larger than the upload.
    #[error("{name}: decompresses to more than {limit} bytes; upload it in parts")]
    TooLargeDecompressed {
        /// The upload's name.
        name: String,
        /// The limit.
        limit: u64,
    },
    /// The gzip stream is damaged.
    #[error("{name}: the gzip stream is damaged: {message}")]
    BadGzip {
        /// The upload's name.
        name: String,
        /// The decoder's message.
        message: String,
    },
}

/// A file name an upload may have: a plain name (no folders) of letters, digits, `.`, `-`,
/// `_`, not starting with `.`, ending in `.csv` or `.csv.gz`.
pub fn valid_upload_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && (name.ends_with(".csv") || name.ends_with(".csv.gz"))
}

/// Counts bytes read and stops past a limit.
struct Capped<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(std::io::Error::other(CAP_EXCEEDED));
        }
        Ok(n)
    }
}

const CAP_EXCEEDED: &str = "decompressed size limit exceeded";

/// Checks the file at `path` (uploaded as `name`) as CSV with `delimiter`; returns its
/// shape. Reads it once, streaming.
pub fn check_csv(
    path: &Path,
    name: &str,
    delimiter: u8,
    max_decompressed: u64,
) -> Result<(bool, u64, Vec<String>), UploadCheckError> {
    let malformed = |line: u64, column: String, message: String| UploadCheckError::Malformed {
        name: name.to_string(),
        line,
        column,
        message,
    };
    let io = |e: std::io::Error| malformed(1, String::new(), format!("cannot read: {e}"));
    let mut head = [0u8; 2];
    let mut file = std::fs::File::open(path).map_err(io)?;
    let got = file.read(&mut head).map_err(io)?;
    if got == 0 {
        return Err(UploadCheckError::Empty { name: name.into() });
    }
    let gzip = got == 2 && head == [0x1f, 0x8b];
    if name.ends_with(".gz") && !gzip {
        return Err(UploadCheckError::NotGzip { name: name.into() });
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut reader = Capped {
        inner: reader,
        read: 0,
        limit: max_decompressed,
    };
    let mut start = [0u8; 2];
    let n = read_up_to(&mut reader, &mut start).map_err(|e| stream_error(name, e))?;
    if n == 0 {
        return Err(UploadCheckError::Empty { name: name.into() });
    }
    if n == 2 && (start == [0xff, 0xfe] || start == [0xfe, 0xff]) {
        return Err(UploadCheckError::Utf16 { name: name.into() });
    }
    let chained = std::io::Cursor::new(start[..n].to_vec()).chain(reader);
    let mut csv = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(false)
        .from_reader(chained);
    let mut record = csv::StringRecord::new();
    let mut columns: Vec<String> = Vec::new();
    let mut rows = 0u64;
    loop {
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                if columns.is_empty() {
                    columns = record
                        .iter()
                        .map(|c| c.trim_start_matches('\u{feff}').trim().to_string())
                        .collect();
                    check_header(name, &columns)?;
                } else {
                    rows += 1;
                }
            }
            Err(error) => {
                let line = error.position().map_or(0, |p| p.line());
                return Err(match error.into_kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => malformed(
                        line,
                        String::new(),
                        format!("{len} fields where the header has {expected_len}"),
                    ),
                    csv::ErrorKind::Utf8 { err, .. } => malformed(
                        line,
                        columns
                            .get(err.field())
                            .map(|c| format!(", column {c:?}"))
                            .unwrap_or_default(),
                        "not valid UTF-8 (export the file as UTF-8)".into(),
                    ),
                    csv::ErrorKind::Io(e) => return Err(stream_error(name, e)),
                    other => malformed(line, String::new(), format!("{other:?}")),
                });
            }
        }
    }
    if columns.is_empty() {
        return Err(UploadCheckError::Empty { name: name.into() });
    }
    if rows == 0 {
        return Err(UploadCheckError::NoRows { name: name.into() });
    }
    Ok((gzip, rows, columns))
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn stream_error(name: &str, error: std::io::Error) -> UploadCheckError {
    if error.to_string() == CAP_EXCEEDED {
        UploadCheckError::TooLargeDecompressed {
            name: name.into(),
            limit: 0,
        }
    } else {
        UploadCheckError::BadGzip {
            name: name.into(),
            message: error.to_string(),
        }
    }
}

fn check_header(name: &str, columns: &[String]) -> Result<(), UploadCheckError> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, column) in columns.iter().enumerate() {
        let problem = if column.is_empty() {
            Some(format!("header column {} has no name", i + 1))
        } else if !seen.insert(column.as_str()) {
            Some(format!("header names column {column:?} twice"))
        } else {
            None
        };
        if let Some(message) = problem {
            return Err(UploadCheckError::Malformed {
                name: name.into(),
                line: 1,
                column: String::new(),
                message,
            });
        }
    }
    Ok(())
}

/// `?overwrite=true` lets an upload replace a file of the same name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// Replace an existing file.
    #[serde(default)]
    pub overwrite: bool,
}

/// A temporary upload file that is removed unless it was moved into place.
struct TempUpload(PathBuf);

impl Drop for TempUpload {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn temp_path(inbox: &Path) -> PathBuf {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    inbox.join(format!(".upload-{}-{n}", std::process::id()))
}

/// `PUT /api/v1/inbox/{name}`: stores a checked upload; 201 with its shape.
pub async fn upload(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
    Query(query): Query<UploadQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    if !valid_upload_name(&name) {
        return Err(ApiError::BadRequest(format!(
            "name: {name:?} must be 1 to {MAX_NAME_LEN} letters, digits, '.', '-' or '_', \
             not starting with '.', ending in .csv or .csv.gz"
        )));
    }
    let inbox = state.data_dir.join(INBOX);
    let target = inbox.join(&name);
    if target.exists() && !query.overwrite {
        return Err(ApiError::Conflict(format!(
            "name: {name:?} is already in the inbox; add ?overwrite=true to replace it"
        )));
    }
    let limit = state.settings.serve.max_upload_bytes;
    let temp = TempUpload(temp_path(&inbox));
    let internal = |what: &'static str| {
        move |e: std::io::Error| {
            tracing::error!(error = %e, what, "upload failed");
            ApiError::Internal
        }
    };
    let mut file = tokio::fs::File::create(&temp.0)
        .await
        .map_err(internal("create"))?;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            // The body limit layer ends the stream with an error past the limit.
            tracing::info!(error = %e, "upload body ended early");
            ApiError::TooLarge(format!(
                "the upload ended early or is larger than serve.max_upload_bytes ({limit} bytes)"
            ))
        })?;
        bytes += chunk.len() as u64;
        if bytes > limit {
            return Err(ApiError::TooLarge(format!(
                "the upload is larger than serve.max_upload_bytes ({limit} bytes)"
            )));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(internal("write"))?;
    }
    file.sync_all().await.map_err(internal("sync"))?;
    drop(file);
    let delimiter = state.settings.delimiter_byte();
    let path = temp.0.clone();
    let checked_name = name.clone();
    let (gzip, rows, columns) = tokio::task::spawn_blocking(move || {
        check_csv(
            &path,
            &checked_name,
            delimiter,
            limit.saturating_mul(MAX_EXPANSION),
        )
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "upload check task failed");
        ApiError::Internal
    })?
    .map_err(|e| match e {
        UploadCheckError::TooLargeDecompressed { name, .. } => ApiError::TooLarge(
            UploadCheckError::TooLargeDecompressed {
                name,
                limit: limit.saturating_mul(MAX_EXPANSION),
            }
            .to_string(),
        ),
        other => ApiError::Unprocessable(other.to_string()),
    })?;
    if target.exists() && !query.overwrite {
        return Err(ApiError::Conflict(format!(
            "name: {name:?} is already in the inbox; add ?overwrite=true to replace it"
        )));
    }
    tokio::fs::rename(&temp.0, &target)
        .await
        .map_err(internal("rename"))?;
    tracing::info!(name = name.as_str(), bytes, rows, "upload stored");
    let uploaded = Uploaded {
        name,
        bytes,
        sha256: format!("{:x}", hasher.finalize()),
        gzip,
        rows,
        columns,
    };
    Ok((StatusCode::CREATED, Json(uploaded)).into_response())
}

/// `GET /api/v1/inbox`: the files runs may name, by name.
pub async fn list(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let inbox = state.data_dir.join(INBOX);
    let files = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<InboxFile>> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&inbox)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.metadata()?;
            if name.starts_with('.') || !meta.is_file() {
                continue;
            }
            files.push(InboxFile {
                name,
                bytes: meta.len(),
                modified: meta
                    .modified()
                    .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339())
                    .unwrap_or_default(),
            });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(files)
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "inbox list task failed");
        ApiError::Internal
    })?
    .map_err(|e| {
        tracing::error!(error = %e, "inbox unreadable");
        ApiError::Internal
    })?;
    Ok(Json(json!({"files": files})))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).expect("gzip");
        encoder.finish().expect("gzip")
    }

    fn check(name: &str, bytes: &[u8]) -> Result<(bool, u64, Vec<String>), UploadCheckError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "upload", bytes);
        check_csv(&path, name, b',', 1 << 20)
    }

    #[test]
    fn names_are_plain_csv_files() {
        for good in ["tx.csv", "events-2026_W41.csv.gz", "a.csv"] {
            assert!(valid_upload_name(good), "{good}");
        }
        for bad in [
            "",
            ".hidden.csv",
            "../x.csv",
            "a/b.csv",
            "x.txt",
            "x.gz",
            "sp ace.csv",
            &format!("{}.csv", "a".repeat(125)),
        ] {
            assert!(!valid_upload_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn accepts_plain_and_gzip_csv_with_a_bom() {
        let text = b"\xEF\xBB\xBFid,x\na,1\nb,2\n";
        assert_eq!(
            check("t.csv", text),
            Ok((false, 2, vec!["id".to_string(), "x".to_string()]))
        );
        assert_eq!(
            check("t.csv.gz", &gzip(text)),
            Ok((true, 2, vec!["id".to_string(), "x".to_string()]))
        );
    }

    #[test]
    fn refusals_name_the_file_and_the_line() {
        let cases: [(&str, Vec<u8>, &str); 9] = [
            ("e.csv", Vec::new(), "e.csv: the file is empty"),
            ("g.csv.gz", gzip(b""), "g.csv.gz: the file is empty"),
            (
                "h.csv",
                b"id,x\n".to_vec(),
                "h.csv: the file has a header but no data rows",
            ),
            (
                "n.csv.gz",
                b"id,x\na,1\n".to_vec(),
                "n.csv.gz: the name ends in .gz but the content is not gzip-compressed",
            ),
            (
                "u.csv",
                b"\xff\xfei\x00d\x00".to_vec(),
                "u.csv: the file is UTF-16; export it as UTF-8 CSV",
            ),
            (
                "r.csv",
                b"id,x\na,1\nb,2,3\n".to_vec(),
                "r.csv: line 3: 3 fields where the header has 2",
            ),
            (
                "w.csv",
                b"id,name\na,caf\xe9\n".to_vec(),
                "w.csv: line 2, column \"name\": not valid UTF-8 (export the file as UTF-8)",
            ),
            (
                "d.csv",
                b"id,x,x\na,1,2\n".to_vec(),
                "d.csv: line 1: header names column \"x\" twice",
            ),
            (
                "b.csv",
                b"id,,x\na,1,2\n".to_vec(),
                "b.csv: line 1: header column 2 has no name",
            ),
        ];
        for (name, bytes, expected) in cases {
            let error = check(name, &bytes).expect_err(name);
            assert_eq!(error.to_string(), expected);
        }
    }

    #[test]
    fn a_damaged_gzip_stream_is_refused() {
        let mut bytes = gzip(b"id,x\na,1\nb,2\n");
        let cut = bytes.len() - 12;
        bytes.truncate(cut);
        let error = check("c.csv.gz", &bytes).expect_err("cut");
        assert!(
            matches!(error, UploadCheckError::BadGzip { ref name, .. } if name == "c.csv.gz"),
            "{error}"
        );
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_decompressed_limit() {
        let mut text = b"id,x\n".to_vec();
        text.extend(std::iter::repeat_n(b"a,1\n".as_slice(), 400_000).flatten());
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "upload", &gzip(&text));
        let error = check_csv(&path, "bomb.csv.gz", b',', 100_000).expect_err("bomb");
        assert!(matches!(
            error,
            UploadCheckError::TooLargeDecompressed { .. }
        ));
    }
}
