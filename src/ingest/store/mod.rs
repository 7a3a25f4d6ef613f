//! Store data in: UCI *Online Retail II* transactions and REES46 browsing events, streamed
//! into per-customer aggregates.
//!
//! This module owns reading those two files (plain or gzip-compressed CSV, detected by the
//! gzip magic bytes, never by extension), the SHA-256 of their bytes, the meaning of their
//! rows (cancellations, adjustments, event types) and the accounting of every row that is
//! not used: each skip reason is counted with its first examples (line, column, value) in a
//! serialisable [`SourceReport`] that goes into `segments.json`. It does not compute
//! features (RFM, behaviour: `crate::features`) and does not decide the reference instant
//! of a run (the pipeline does: the as-of instant or the end of the data).
//!
//! Memory grows with the number of customers (and, per customer, with their distinct
//! invoices, sessions and terms), never with the number of rows. The price of that is in
//! how duplicates are found:
//! - a transaction line is a duplicate when every field equals a line already seen *in the
//!   same invoice run* (consecutive lines with the same invoice number, which is how the
//!   UCI export is ordered); the same line repeated after another invoice intervened is not
//!   caught;
//! - an event is a duplicate when (time, type, product, session) equals one of the last
//!   [`EventSettings::duplicate_window`] events of the same customer (compared by a 64-bit
//!   fingerprint; a false match has a probability of about `window / 2^64` per event).
//!
//! Nothing here panics on any input: a row that cannot be used is a counted skip; only a
//! file that cannot be read, is empty, lacks required columns, or is mostly malformed
//! (more than half of its data rows have the wrong field count, invalid UTF-8 or an
//! unparseable value: a wrong delimiter or a wrong file) is an error.

mod events;
mod report;
mod source;
mod transactions;
mod values;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use events::{BrowsingLog, BucketedBrowsing, CustomerBrowsing, read_events, read_events_by};
pub use report::{SkipExample, SkipSummary, SourceReport, notes, reasons};
pub use transactions::{
    BucketedPurchases, CustomerPurchases, TransactionLedger, read_transactions,
    read_transactions_by,
};
pub(crate) use values::parse_time;

/// How a transactions file is read; section `[transactions]` of the settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TransactionSettings {
    /// Names of the columns used, so exports with other headers need no conversion.
    pub columns: TransactionColumns,
    /// An invoice number starting with this text (compared ignoring case) is a
    /// cancellation; `C` in the UCI data.
    pub cancellation_prefix: String,
}

/// Header names of the transaction columns segscope uses (other columns are ignored).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TransactionColumns {
    /// Invoice number; groups lines into purchases and marks cancellations.
    pub invoice: String,
    /// Units on the line; negative on cancellations.
    pub quantity: String,
    /// When the invoice was made.
    pub invoice_date: String,
    /// Unit price.
    pub price: String,
    /// The customer; the same person as the events' user id.
    pub customer_id: String,
}

/// How an events file is read; section `[events]` of the settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EventSettings {
    /// Names of the columns used.
    pub columns: EventColumns,
    /// An event this many days before the reference instant weighs half as much in the
    /// browsing document as one at the reference; must be finite and positive.
    pub recency_half_life_days: f64,
    /// How many of a customer's latest events a new event is compared with to find exact
    /// duplicates; bounds memory per customer. 0 turns duplicate detection off.
    pub duplicate_window: usize,
}

/// Header names of the event columns segscope uses. The optional ones may be set to `""`
/// when a file does not have them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EventColumns {
    /// When the event happened (required).
    pub event_time: String,
    /// `view`, `cart`, `remove_from_cart` or `purchase` (required).
    pub event_type: String,
    /// The customer (required); the same person as the transactions' customer id.
    pub user_id: String,
    /// Product id (optional; part of what makes two events duplicates).
    pub product_id: String,
    /// Dotted category path such as `electronics.smartphone` (optional; often empty).
    pub category_code: String,
    /// Brand (optional).
    pub brand: String,
    /// Price; summed over purchases (optional).
    pub price: String,
    /// Session id; distinct sessions are counted per customer (optional).
    pub user_session: String,
}

/// Why a store file could not be read. Every variant names the file, so the user knows
/// which of the inputs to fix.
#[derive(Debug, thiserror::Error)]
pub enum StoreIngestError {
    /// The file could not be opened or read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// File name.
        file: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file starts as gzip but its compressed stream is broken.
    #[error("{file}: the gzip stream is broken: {source}")]
    Gzip {
        /// File name.
        file: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// No bytes, or only whitespace, after decompression.
    #[error("{file}: the file is empty; expected a header line and data rows")]
    Empty {
        /// File name.
        file: PathBuf,
    },
    /// A header but no data rows.
    #[error("{file}: only a header line, no data rows")]
    NoDataRows {
        /// File name.
        file: PathBuf,
    },
    /// Required columns are not in the header.
    #[error(
        "{file}: line 1: missing column(s) {missing} (the {layout} layout needs them; rename \
         them in the [{section}.columns] settings if the file uses other names); the header \
         has: {header}{hint}",
        missing = quoted(missing),
        header = quoted(found),
        hint = delimiter_hint(found)
    )]
    MissingColumns {
        /// File name.
        file: PathBuf,
        /// Which layout was expected (`transactions`, `events`).
        layout: &'static str,
        /// Settings section holding the column names.
        section: &'static str,
        /// The configured names that were not found.
        missing: Vec<String>,
        /// The header as read.
        found: Vec<String>,
    },
    /// A required column appears twice, so which one to read is ambiguous.
    #[error("{file}: line 1: column '{column}' appears twice in the header")]
    DuplicateColumn {
        /// File name.
        file: PathBuf,
        /// The repeated name.
        column: String,
    },
    /// More than half of the data rows are malformed.
    #[error(
        "{file}: {bad} of {rows_read} data rows are malformed (is the delimiter right? is \
         this the right file?); first problems: {examples}"
    )]
    MostlyMalformed {
        /// File name.
        file: PathBuf,
        /// Malformed rows.
        bad: u64,
        /// Data rows read.
        rows_read: u64,
        /// The first examples, as text (`line 2: wrong_field_count: 1 fields, expected 8`).
        examples: String,
    },
    /// A setting that cannot work.
    #[error("{file}: invalid settings: {message}")]
    InvalidSettings {
        /// File being read when the setting was checked.
        file: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
}

/// When the header is a single column holding another delimiter, says so: the usual cause
/// of every column being "missing".
fn delimiter_hint(header: &[String]) -> String {
    match header {
        [only] => [';', '\t', '|', ',']
            .into_iter()
            .find(|c| only.contains(*c))
            .map(|c| format!(" (one column containing {c:?}: is the file {c:?}-delimited?)"))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Test helpers shared by the submodules' tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// The UCI layout with the default names.
    pub fn transaction_settings() -> TransactionSettings {
        TransactionSettings {
            columns: TransactionColumns {
                invoice: "Invoice".into(),
                quantity: "Quantity".into(),
                invoice_date: "InvoiceDate".into(),
                price: "Price".into(),
                customer_id: "Customer ID".into(),
            },
            cancellation_prefix: "C".into(),
        }
    }

    /// The REES46 layout with the default names.
    pub fn event_settings() -> EventSettings {
        EventSettings {
            columns: EventColumns {
                event_time: "event_time".into(),
                event_type: "event_type".into(),
                user_id: "user_id".into(),
                product_id: "product_id".into(),
                category_code: "category_code".into(),
                brand: "brand".into(),
                price: "price".into(),
                user_session: "user_session".into(),
            },
            recency_half_life_days: 30.0,
            duplicate_window: 8,
        }
    }

    /// Writes `bytes` to a new file in `dir`.
    pub fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write fixture");
        path
    }

    /// Gzip-compresses `bytes`.
    pub fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(bytes).expect("gzip");
        enc.finish().expect("gzip")
    }
}
