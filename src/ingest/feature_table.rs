//! A plain numeric feature table: one row per customer, an id column, numeric feature
//! columns and optionally a label column (Iris, or any customer feature table).
//!
//! The file is streamed record by record, so memory holds only the kept values. Decisions:
//! - a missing cell (empty, `NA`, `N/A`, `null`, `NaN`) drops its row, counted and reported
//!   with the first examples (line and column), because one missing value should not stop a
//!   run over a hundred thousand customers;
//! - an infinite value drops its row the same way (it cannot be scaled);
//! - a cell that is not a number at all (`abc`) is an error: it is a broken export, not a
//!   gap, and guessing would hide it;
//! - a duplicate id is an error naming both lines: two rows for one customer means the
//!   table is not what the user thinks it is;
//! - a constant column is dropped with a warning (it carries no information and would
//!   divide by zero when scaled).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use ndarray::Array2;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// How many examples of each problem are kept for the report.
const MAX_EXAMPLES: usize = 5;

/// What to read from a feature table.
#[derive(Debug, Clone)]
pub struct FeatureTableSpec {
    /// Column holding the customer id.
    pub id_column: String,
    /// Optional column with known classes (e.g. Iris species), used only to check segments.
    pub label_column: Option<String>,
    /// Field delimiter (a single byte, `,` by default).
    pub delimiter: u8,
}

/// A validated numeric table: finite values, unique ids, no constant columns.
#[derive(Debug, Clone)]
pub struct FeatureTable {
    /// Customer ids in file order.
    pub ids: Vec<String>,
    /// Names of the feature columns kept, in file order.
    pub feature_names: Vec<String>,
    /// `ids.len() x feature_names.len()` values.
    pub values: Array2<f64>,
    /// Label of each row when a label column was given.
    pub labels: Option<Vec<String>>,
    /// What was read, dropped and why.
    pub report: IngestReport,
}

/// A problem found in one cell, kept as an example for the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CellProblem {
    /// 1-based line number in the file.
    pub line: u64,
    /// Column name.
    pub column: String,
    /// The offending text (truncated).
    pub value: String,
}

/// A column left out of the analysis, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DroppedColumn {
    /// Column name.
    pub column: String,
    /// Why it was dropped.
    pub reason: String,
}

/// What happened while reading the file; recorded in `segments.json` so that a reader of
/// the results knows exactly which rows they describe.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IngestReport {
    /// File name as given.
    pub file: String,
    /// SHA-256 of the file's bytes, so a run can be tied to its exact input.
    pub sha256: String,
    /// Data rows read (header excluded).
    pub rows_read: usize,
    /// Rows kept for the analysis.
    pub rows_kept: usize,
    /// Rows dropped, per reason.
    pub rows_dropped: BTreeMap<String, usize>,
    /// First examples of dropped rows, per reason.
    pub examples: BTreeMap<String, Vec<CellProblem>>,
    /// Feature columns left out.
    pub dropped_columns: Vec<DroppedColumn>,
}

/// Why a feature table could not be read. Every variant names the file, and the line and
/// column where there is one, so the user can open the file and fix it.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file could not be opened or read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// File name.
        file: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file holds no bytes (or only a byte-order mark / whitespace).
    #[error("{file}: the file is empty; expected a header line and data rows")]
    Empty {
        /// File name.
        file: PathBuf,
    },
    /// A header but no data rows.
    #[error("{file}: only a header line, no data rows")]
    HeaderOnly {
        /// File name.
        file: PathBuf,
    },
    /// Every data row was dropped.
    #[error("{file}: none of the {rows_read} data rows is usable ({reasons})")]
    NoUsableRows {
        /// File name.
        file: PathBuf,
        /// Rows read.
        rows_read: usize,
        /// Counts per reason, as text.
        reasons: String,
    },
    /// The header has a single column that looks like another delimiter's row.
    #[error(
        "{file}: line 1: the header has one column but contains '{found}'; the file looks \
         '{found}'-delimited (set input.delimiter = \"{found}\" in the config or pass --delimiter)"
    )]
    WrongDelimiter {
        /// File name.
        file: PathBuf,
        /// The character that looks like the real delimiter.
        found: char,
    },
    /// A named column is not in the header.
    #[error("{file}: line 1: no column named '{column}' ({role}); the header has: {available}")]
    UnknownColumn {
        /// File name.
        file: PathBuf,
        /// The column asked for.
        column: String,
        /// What it was asked for (id column, label column).
        role: &'static str,
        /// The header's columns, comma separated.
        available: String,
    },
    /// Two header cells have the same name.
    #[error("{file}: line 1: column '{column}' appears twice in the header")]
    DuplicateColumn {
        /// File name.
        file: PathBuf,
        /// The repeated name.
        column: String,
    },
    /// Nothing but the id and label columns.
    #[error("{file}: no feature columns besides the id and label columns")]
    NoFeatureColumns {
        /// File name.
        file: PathBuf,
    },
    /// Every feature column was constant.
    #[error("{file}: every feature column is constant ({columns}); nothing to segment on")]
    AllColumnsConstant {
        /// File name.
        file: PathBuf,
        /// The constant columns.
        columns: String,
    },
    /// A row with a different number of cells than the header.
    #[error("{file}: line {line}: {got} cells, but the header has {expected} columns")]
    RaggedRow {
        /// File name.
        file: PathBuf,
        /// 1-based line.
        line: u64,
        /// Header width.
        expected: usize,
        /// This row's width.
        got: usize,
    },
    /// A feature cell that is not a number and not a missing-value marker.
    #[error("{file}: line {line}, column '{column}': '{value}' is not a number")]
    NotANumber {
        /// File name.
        file: PathBuf,
        /// 1-based line.
        line: u64,
        /// Column name.
        column: String,
        /// The cell's text (truncated).
        value: String,
    },
    /// A cell that is not valid UTF-8.
    #[error(
        "{file}: line {line}, column {column}: not valid UTF-8 (was the file saved as \
         Latin-1 or Windows-1252? re-save it as UTF-8)"
    )]
    Encoding {
        /// File name.
        file: PathBuf,
        /// 1-based line.
        line: u64,
        /// Column name, or its 1-based number when the header itself is broken.
        column: String,
    },
    /// An empty id.
    #[error("{file}: line {line}, column '{column}': the id is empty")]
    EmptyId {
        /// File name.
        file: PathBuf,
        /// 1-based line.
        line: u64,
        /// Id column name.
        column: String,
    },
    /// The same id on two rows.
    #[error(
        "{file}: line {line}: id '{id}' already appeared on line {first_line}; ids must be unique"
    )]
    DuplicateId {
        /// File name.
        file: PathBuf,
        /// 1-based line of the second occurrence.
        line: u64,
        /// The id.
        id: String,
        /// 1-based line of the first occurrence.
        first_line: u64,
    },
    /// The CSV itself is malformed (e.g. an unterminated quote).
    #[error("{file}: line {line}: malformed CSV: {message}")]
    Malformed {
        /// File name.
        file: PathBuf,
        /// 1-based line, as far as the parser knows.
        line: u64,
        /// The parser's message.
        message: String,
    },
}

/// Role of each column of the file.
enum ColumnRole {
    Id,
    Label,
    Feature(usize),
}

/// A cell that could not be used as a number.
enum CellValue {
    Number(f64),
    Missing,
    NonFinite,
}

/// Reads and validates a feature table, streaming the file.
pub fn read_feature_table(
    path: &Path,
    spec: &FeatureTableSpec,
) -> Result<FeatureTable, IngestError> {
    let file = path.to_path_buf();
    let io = |source| IngestError::Io {
        file: file.clone(),
        source,
    };
    let handle = File::open(path).map_err(io)?;
    let hashing = HashingReader {
        inner: BufReader::with_capacity(1 << 20, handle),
        hasher: Sha256::new(),
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(spec.delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(hashing);

    let mut record = csv::ByteRecord::new();
    let has_header = reader
        .read_byte_record(&mut record)
        .map_err(|e| csv_error(&file, e))?;
    if !has_header || record.iter().all(|c| c.iter().all(u8::is_ascii_whitespace)) {
        return Err(IngestError::Empty { file });
    }
    let header = decode_header(&file, &record)?;
    let (roles, feature_names) = assign_roles(&file, &header, spec)?;

    let mut ids = Vec::new();
    let mut labels: Option<Vec<String>> = spec.label_column.as_ref().map(|_| Vec::new());
    let mut values: Vec<f64> = Vec::new();
    let mut first_line_of: HashMap<String, u64> = HashMap::new();
    let mut rows_read = 0usize;
    let mut rows_dropped: BTreeMap<String, usize> = BTreeMap::new();
    let mut examples: BTreeMap<String, Vec<CellProblem>> = BTreeMap::new();
    let mut row = vec![0.0; feature_names.len()];

    loop {
        let more = reader
            .read_byte_record(&mut record)
            .map_err(|e| csv_error(&file, e))?;
        if !more {
            break;
        }
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.len() == 1 && record.get(0).is_some_and(|c| c.is_empty()) {
            continue; // a blank line
        }
        rows_read += 1;
        if record.len() != header.len() {
            return Err(IngestError::RaggedRow {
                file,
                line,
                expected: header.len(),
                got: record.len(),
            });
        }
        let mut id = String::new();
        let mut label = String::new();
        let mut drop_reason: Option<(&'static str, CellProblem)> = None;
        for (col, (cell, role)) in record.iter().zip(&roles).enumerate() {
            let text = std::str::from_utf8(cell).map_err(|_| IngestError::Encoding {
                file: file.clone(),
                line,
                column: header[col].clone(),
            })?;
            match role {
                ColumnRole::Id => id = text.trim().to_string(),
                ColumnRole::Label => label = text.trim().to_string(),
                ColumnRole::Feature(j) => match parse_cell(text) {
                    Some(CellValue::Number(v)) => row[*j] = v,
                    Some(kind) => {
                        if drop_reason.is_none() {
                            let reason = match kind {
                                CellValue::NonFinite => "non-finite value",
                                _ => "missing value",
                            };
                            let problem = CellProblem {
                                line,
                                column: header[col].clone(),
                                value: truncate(text),
                            };
                            drop_reason = Some((reason, problem));
                        }
                    }
                    None => {
                        return Err(IngestError::NotANumber {
                            file,
                            line,
                            column: header[col].clone(),
                            value: truncate(text),
                        });
                    }
                },
            }
        }
        if id.is_empty() {
            let column = spec.id_column.clone();
            return Err(IngestError::EmptyId { file, line, column });
        }
        if let Some(&first_line) = first_line_of.get(&id) {
            return Err(IngestError::DuplicateId {
                file,
                line,
                id,
                first_line,
            });
        }
        first_line_of.insert(id.clone(), line);
        if let Some((reason, problem)) = drop_reason {
            *rows_dropped.entry(reason.to_string()).or_default() += 1;
            let list = examples.entry(reason.to_string()).or_default();
            if list.len() < MAX_EXAMPLES {
                list.push(problem);
            }
            continue;
        }
        ids.push(id);
        if let Some(labels) = labels.as_mut() {
            labels.push(label);
        }
        values.extend_from_slice(&row);
    }
    drop(first_line_of);

    if rows_read == 0 {
        return Err(IngestError::HeaderOnly { file });
    }
    if ids.is_empty() {
        let reasons = rows_dropped
            .iter()
            .map(|(r, n)| format!("{n} with a {r}"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(IngestError::NoUsableRows {
            file,
            rows_read,
            reasons,
        });
    }
    let hashing = reader.into_inner();
    let sha256 = hex(&hashing.finish());
    let n = ids.len();
    let mut matrix = Array2::from_shape_vec((n, feature_names.len()), values).map_err(|e| {
        IngestError::Malformed {
            file: file.clone(),
            line: 0,
            message: e.to_string(),
        }
    })?;

    let constant: Vec<usize> = (0..feature_names.len())
        .filter(|&j| {
            let col = matrix.column(j);
            let first = col[0];
            col.iter().all(|&v| v == first)
        })
        .collect();
    let dropped_columns: Vec<DroppedColumn> = constant
        .iter()
        .map(|&j| DroppedColumn {
            column: feature_names[j].clone(),
            reason: "constant: every kept row has the same value".into(),
        })
        .collect();
    let mut feature_names = feature_names;
    if !constant.is_empty() {
        if constant.len() == feature_names.len() {
            let columns = feature_names.join(", ");
            return Err(IngestError::AllColumnsConstant { file, columns });
        }
        let keep: Vec<usize> = (0..feature_names.len())
            .filter(|j| !constant.contains(j))
            .collect();
        matrix = matrix.select(ndarray::Axis(1), &keep);
        feature_names = keep.iter().map(|&j| feature_names[j].clone()).collect();
    }

    Ok(FeatureTable {
        ids,
        feature_names,
        values: matrix,
        labels,
        report: IngestReport {
            file: path.display().to_string(),
            sha256,
            rows_read,
            rows_kept: n,
            rows_dropped,
            examples,
            dropped_columns,
        },
    })
}

/// Decodes the header, naming a broken cell by its position.
fn decode_header(file: &Path, record: &csv::ByteRecord) -> Result<Vec<String>, IngestError> {
    record
        .iter()
        .enumerate()
        .map(|(i, cell)| {
            std::str::from_utf8(cell)
                .map(|s| s.trim().to_string())
                .map_err(|_| IngestError::Encoding {
                    file: file.to_path_buf(),
                    line: 1,
                    column: format!("#{}", i + 1),
                })
        })
        .collect()
}

/// Finds the id, label and feature columns; every other column is a feature.
fn assign_roles(
    file: &Path,
    header: &[String],
    spec: &FeatureTableSpec,
) -> Result<(Vec<ColumnRole>, Vec<String>), IngestError> {
    for (i, name) in header.iter().enumerate() {
        if header[..i].contains(name) {
            return Err(IngestError::DuplicateColumn {
                file: file.to_path_buf(),
                column: name.clone(),
            });
        }
    }
    let find = |column: &str, role: &'static str| {
        header.iter().position(|h| h == column).ok_or_else(|| {
            if header.len() == 1
                && let Some(found) = [';', '\t', '|', ',']
                    .into_iter()
                    .find(|c| header[0].contains(*c))
            {
                return IngestError::WrongDelimiter {
                    file: file.to_path_buf(),
                    found,
                };
            }
            IngestError::UnknownColumn {
                file: file.to_path_buf(),
                column: column.to_string(),
                role,
                available: header.join(", "),
            }
        })
    };
    let id_at = find(&spec.id_column, "id column")?;
    let label_at = spec
        .label_column
        .as_deref()
        .map(|l| find(l, "label column"))
        .transpose()?;
    let mut feature_names = Vec::new();
    let roles = (0..header.len())
        .map(|i| {
            if i == id_at {
                ColumnRole::Id
            } else if Some(i) == label_at {
                ColumnRole::Label
            } else {
                feature_names.push(header[i].clone());
                ColumnRole::Feature(feature_names.len() - 1)
            }
        })
        .collect();
    if feature_names.is_empty() {
        return Err(IngestError::NoFeatureColumns {
            file: file.to_path_buf(),
        });
    }
    Ok((roles, feature_names))
}

/// Parses one feature cell: a number, a missing marker, or `None` for text.
fn parse_cell(text: &str) -> Option<CellValue> {
    let t = text.trim();
    if t.is_empty()
        || ["na", "n/a", "nan", "null", "none"]
            .iter()
            .any(|m| t.eq_ignore_ascii_case(m))
    {
        return Some(CellValue::Missing);
    }
    let v: f64 = t.parse().ok()?;
    Some(if v.is_finite() {
        CellValue::Number(v)
    } else {
        CellValue::NonFinite
    })
}

fn truncate(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

fn csv_error(file: &Path, e: csv::Error) -> IngestError {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    match e.into_kind() {
        csv::ErrorKind::Io(source) => IngestError::Io {
            file: file.to_path_buf(),
            source,
        },
        other => IngestError::Malformed {
            file: file.to_path_buf(),
            line,
            message: format!("{other:?}"),
        },
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hashes the bytes as the CSV parser pulls them, so the file is read once.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    /// Reads what the parser left unread (nothing, normally) and returns the digest.
    fn finish(mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        // The parser stops at end of input; draining guards against a buffered tail.
        if self.inner.read_to_end(&mut rest).is_ok() {
            self.hasher.update(&rest);
        }
        self.hasher.finalize().to_vec()
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
