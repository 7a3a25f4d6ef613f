//! Opening a store file and walking its rows: gzip detection by magic bytes, SHA-256 of the
//! bytes as they are read (one pass), byte-order mark, header lookup, field-count checks,
//! UTF-8 decoding of the used cells, and progress. The layouts' meaning lives in
//! `transactions` and `events`.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use sha2::{Digest, Sha256};

use super::StoreIngestError;
use super::report::{Tally, reasons};
use crate::analysis::progress::Progress;

/// Rows between two progress updates.
const PROGRESS_EVERY: u64 = 1 << 16;

/// A column a layout reads: its configured header name (`""` for an optional column the
/// file does not have) and whether the layout cannot do without it.
pub(super) struct Wanted<'a> {
    pub name: &'a str,
    pub required: bool,
}

/// Which layout a file is read as, for error messages.
pub(super) struct Layout {
    pub name: &'static str,
    pub section: &'static str,
}

/// A store file being streamed.
pub(super) struct Scanner<'p> {
    file: PathBuf,
    reader: csv::Reader<Decoded>,
    record: csv::ByteRecord,
    header: Vec<String>,
    gzip: bool,
    progress: &'p dyn Progress,
    reported_bytes: u64,
}

impl<'p> Scanner<'p> {
    /// Opens `path`, reads its header and starts progress for `stage`.
    pub fn open(
        path: &Path,
        delimiter: u8,
        stage: &str,
        progress: &'p dyn Progress,
    ) -> Result<Self, StoreIngestError> {
        let file = path.to_path_buf();
        let io = |source| StoreIngestError::Io {
            file: file.clone(),
            source,
        };
        let handle = File::open(path).map_err(io)?;
        let total = handle.metadata().map(|m| m.len()).unwrap_or(0);
        let mut raw = BufReader::with_capacity(
            1 << 20,
            Hashing {
                inner: handle,
                hasher: Sha256::new(),
                bytes: 0,
            },
        );
        let gzip = raw.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
        let decoded = if gzip {
            Decoded::Gzip(Box::new(BufReader::with_capacity(
                1 << 20,
                MultiGzDecoder::new(raw),
            )))
        } else {
            Decoded::Plain(raw)
        };
        let reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(decoded);
        progress.start(stage, total);
        let mut scanner = Scanner {
            file,
            reader,
            record: csv::ByteRecord::new(),
            header: Vec::new(),
            gzip,
            progress,
            reported_bytes: 0,
        };
        let has_header = scanner.read()?;
        let empty = !has_header
            || scanner.record.iter().enumerate().all(|(i, cell)| {
                let cell = if i == 0 { strip_bom(cell) } else { cell };
                cell.iter().all(u8::is_ascii_whitespace)
            });
        if empty {
            progress.finish();
            return Err(StoreIngestError::Empty { file: scanner.file });
        }
        scanner.header = scanner
            .record
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let cell = if i == 0 { strip_bom(cell) } else { cell };
                String::from_utf8_lossy(cell).trim().to_string()
            })
            .collect();
        Ok(scanner)
    }

    /// Header names as read (trimmed, BOM removed).
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// Finds the wanted columns: exact name first, then ignoring ASCII case. Every missing
    /// required column is named in one error, with the header found.
    pub fn columns<const N: usize>(
        &self,
        layout: &Layout,
        wanted: &[Wanted<'_>; N],
    ) -> Result<[Option<usize>; N], StoreIngestError> {
        let mut missing = Vec::new();
        let mut found = [None; N];
        for (slot, w) in found.iter_mut().zip(wanted) {
            let name = w.name.trim();
            if name.is_empty() && !w.required {
                continue;
            }
            let exact: Vec<usize> = (0..self.header.len())
                .filter(|&i| self.header[i] == name)
                .collect();
            let matches = if exact.is_empty() {
                (0..self.header.len())
                    .filter(|&i| self.header[i].eq_ignore_ascii_case(name))
                    .collect()
            } else {
                exact
            };
            match matches.as_slice() {
                [] => missing.push(name.to_string()),
                [i] => *slot = Some(*i),
                _ => {
                    return Err(StoreIngestError::DuplicateColumn {
                        file: self.file.clone(),
                        column: name.to_string(),
                    });
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        Err(StoreIngestError::MissingColumns {
            file: self.file.clone(),
            layout: layout.name,
            section: layout.section,
            missing,
            found: self.header.clone(),
        })
    }

    /// Moves to the next data row with as many fields as the header. Blank lines are
    /// ignored; rows with another field count are counted in `tally` and passed over.
    /// `false` at the end of the file.
    pub fn next_row(&mut self, tally: &mut Tally) -> Result<bool, StoreIngestError> {
        loop {
            if !self.read()? {
                return Ok(false);
            }
            if self.record.len() == 1 && self.record.get(0).is_some_and(<[u8]>::is_empty) {
                continue;
            }
            tally.rows_read += 1;
            if tally.rows_read.is_multiple_of(PROGRESS_EVERY) {
                self.report_progress();
            }
            if self.record.len() != self.header.len() {
                let value = format!(
                    "{} fields, expected {}",
                    self.record.len(),
                    self.header.len()
                );
                tally.skip(reasons::WRONG_FIELD_COUNT, self.line(), None, &value);
                continue;
            }
            return Ok(true);
        }
    }

    /// 1-based line where the current row starts.
    pub fn line(&self) -> u64 {
        self.record.position().map_or(0, csv::Position::line)
    }

    /// The current row's cells at `columns` as text (`""` for a column the file lacks).
    /// A cell that is not UTF-8 is counted in `tally` as [`reasons::INVALID_UTF8`] and the
    /// row is refused (`None`).
    pub fn cells<const N: usize>(
        &self,
        columns: &[Option<usize>; N],
        tally: &mut Tally,
    ) -> Option<[&str; N]> {
        let mut out = [""; N];
        for (slot, col) in out.iter_mut().zip(columns) {
            let Some(col) = *col else { continue };
            let bytes = self.record.get(col).unwrap_or_default();
            match std::str::from_utf8(bytes) {
                Ok(text) => *slot = text,
                Err(_) => {
                    let column = self.header.get(col).map(String::as_str);
                    let value = String::from_utf8_lossy(bytes);
                    tally.skip(reasons::INVALID_UTF8, self.line(), column, &value);
                    return None;
                }
            }
        }
        Some(out)
    }

    /// The current row's raw fields, for exact-duplicate comparison.
    pub fn raw_fields(&self) -> impl Iterator<Item = &[u8]> {
        self.record.iter()
    }

    /// Ends the stream: refuses a file without data rows or with mostly malformed rows,
    /// and returns the SHA-256 of all of the file's bytes.
    pub fn finish(mut self, tally: &Tally) -> Result<String, StoreIngestError> {
        self.report_progress();
        self.progress.finish();
        if tally.rows_read == 0 {
            return Err(StoreIngestError::NoDataRows { file: self.file });
        }
        let bad = tally.malformed();
        if bad * 2 > tally.rows_read {
            return Err(StoreIngestError::MostlyMalformed {
                file: self.file,
                bad,
                rows_read: tally.rows_read,
                examples: tally.malformed_examples(),
            });
        }
        let mut hashing = self.reader.into_inner().into_hashing();
        // Bytes after the end of the CSV (trailing data after a gzip stream) are part of
        // the file, so they are part of its digest.
        std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|source| {
            StoreIngestError::Io {
                file: self.file.clone(),
                source,
            }
        })?;
        Ok(hashing
            .hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }

    fn read(&mut self) -> Result<bool, StoreIngestError> {
        self.reader
            .read_byte_record(&mut self.record)
            .map_err(|e| match e.into_kind() {
                csv::ErrorKind::Io(source) if self.gzip => StoreIngestError::Gzip {
                    file: self.file.clone(),
                    source,
                },
                csv::ErrorKind::Io(source) => StoreIngestError::Io {
                    file: self.file.clone(),
                    source,
                },
                // With flexible field counts and byte records the parser reports nothing
                // else; should it, the row is as unreadable as an I/O failure.
                other => StoreIngestError::Io {
                    file: self.file.clone(),
                    source: std::io::Error::other(format!("{other:?}")),
                },
            })
    }

    fn report_progress(&mut self) {
        let bytes = self.reader.get_ref().raw_bytes();
        if bytes > self.reported_bytes {
            self.progress.advance(bytes - self.reported_bytes);
            self.reported_bytes = bytes;
        }
    }
}

fn strip_bom(cell: &[u8]) -> &[u8] {
    cell.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(cell)
}

/// The file's bytes, hashed and counted as they are pulled.
struct Hashing {
    inner: File,
    hasher: Sha256,
    bytes: u64,
}

impl Read for Hashing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// The text stream: the file itself or its decompressed content.
enum Decoded {
    Plain(BufReader<Hashing>),
    Gzip(Box<BufReader<MultiGzDecoder<BufReader<Hashing>>>>),
}

impl Decoded {
    /// Bytes of the file read so far (compressed bytes for a gzip file), for progress.
    fn raw_bytes(&self) -> u64 {
        match self {
            Decoded::Plain(r) => r.get_ref().bytes,
            Decoded::Gzip(r) => r.get_ref().get_ref().get_ref().bytes,
        }
    }

    /// The hashing reader; bytes buffered above it were already hashed when pulled.
    fn into_hashing(self) -> Hashing {
        match self {
            Decoded::Plain(r) => r.into_inner(),
            Decoded::Gzip(r) => r.into_inner().into_inner().into_inner(),
        }
    }
}

impl Read for Decoded {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Decoded::Plain(r) => r.read(buf),
            Decoded::Gzip(r) => r.read(buf),
        }
    }
}
