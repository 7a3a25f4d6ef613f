//! What reading one store file did: rows read and used, every skip reason with its count
//! and first examples, counted conditions that are not skips, and the time span of the
//! rows used. Serialised into `segments.json` so a reader knows exactly which rows the
//! segments describe.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Examples kept per skip reason.
pub(super) const MAX_EXAMPLES: usize = 5;

/// Longest example value kept, in characters; longer values end with `…`.
const MAX_VALUE_CHARS: usize = 40;

/// Skip reasons (keys of [`SourceReport::skipped`]); constants so the pipeline and the
/// tests name them without typos.
pub mod reasons {
    /// The row has a different number of fields than the header.
    pub const WRONG_FIELD_COUNT: &str = "wrong_field_count";
    /// A used field is not valid UTF-8.
    pub const INVALID_UTF8: &str = "invalid_utf8";
    /// No customer id (empty, `nan`, `null`, `NA`, `none`).
    pub const MISSING_CUSTOMER_ID: &str = "missing_customer_id";
    /// The time is not in one of the accepted layouts.
    pub const UNPARSEABLE_TIMESTAMP: &str = "unparseable_timestamp";
    /// The quantity is not a finite number.
    pub const UNPARSEABLE_QUANTITY: &str = "unparseable_quantity";
    /// The price is not a finite number.
    pub const UNPARSEABLE_PRICE: &str = "unparseable_price";
    /// The row is later than the as-of instant.
    pub const AFTER_AS_OF: &str = "after_as_of";
    /// An exact duplicate of a row already used (see the module doc for the window).
    pub const DUPLICATE_ROW: &str = "duplicate_row";
    /// A transaction line without an invoice number.
    pub const MISSING_INVOICE: &str = "missing_invoice";
    /// A transaction line with quantity 0.
    pub const ZERO_QUANTITY: &str = "zero_quantity";
    /// A transaction line with price 0 (free items, manual corrections): no revenue.
    pub const ZERO_PRICE: &str = "zero_price";
    /// A negative price (UCI "adjust bad debt" lines) or a negative purchase event price.
    pub const NEGATIVE_PRICE: &str = "negative_price";
    /// A negative quantity on an invoice that is not a cancellation: a stock adjustment
    /// (damages, write-offs), not something the customer did.
    pub const ADJUSTMENT: &str = "adjustment";
    /// An event type other than view, cart, remove_from_cart, purchase.
    pub const UNKNOWN_EVENT_TYPE: &str = "unknown_event_type";

    /// Reasons that mean the row itself is broken; when they are more than half of the
    /// rows the file is refused.
    pub(crate) const MALFORMED: [&str; 5] = [
        WRONG_FIELD_COUNT,
        INVALID_UTF8,
        UNPARSEABLE_TIMESTAMP,
        UNPARSEABLE_QUANTITY,
        UNPARSEABLE_PRICE,
    ];
}

/// Counted conditions that are not skips (keys of [`SourceReport::notes`]).
pub mod notes {
    /// Cancellation lines used (they reduce net revenue).
    pub const CANCELLATION_LINES: &str = "cancellation_lines";
    /// Customer ids written as `13085.0` and read as `13085`.
    pub const CUSTOMER_IDS_NORMALISED: &str = "customer_ids_normalised";
    /// Events used with an empty category code (normal in REES46): no category term.
    pub const EVENTS_WITHOUT_CATEGORY: &str = "events_without_category";
    /// Events used with an empty brand: no brand term.
    pub const EVENTS_WITHOUT_BRAND: &str = "events_without_brand";
    /// Events used with an empty session id: not part of any session.
    pub const EVENTS_WITHOUT_SESSION: &str = "events_without_session";
}

/// What reading one store file did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SourceReport {
    /// File name as given.
    pub file: String,
    /// SHA-256 of the file's bytes as stored (compressed, for a gzip file), so a run can be
    /// tied to its exact input.
    pub sha256: String,
    /// Data rows read (header and blank lines excluded).
    pub rows_read: u64,
    /// Rows that contributed to a customer.
    pub rows_used: u64,
    /// Rows not used, per reason (snake_case keys, see [`reasons`]).
    pub skipped: BTreeMap<String, SkipSummary>,
    /// Counted conditions of used rows that are not skips (see [`notes`]).
    pub notes: BTreeMap<String, u64>,
    /// Earliest time among the rows used.
    pub first_time: Option<DateTime<Utc>>,
    /// Latest time among the rows used; the natural reference instant without an as-of.
    pub last_time: Option<DateTime<Utc>>,
}

/// How many rows one reason skipped, with the first examples.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SkipSummary {
    /// Rows skipped for this reason.
    pub count: u64,
    /// The first few (in file order).
    pub examples: Vec<SkipExample>,
}

/// One skipped row, precise enough to find it in the file.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SkipExample {
    /// 1-based line number where the row starts.
    pub line: u64,
    /// Column name, when one cell is the cause.
    pub column: Option<String>,
    /// The offending value (truncated), or a description for whole-row problems.
    pub value: String,
}

impl SourceReport {
    /// Rows skipped for `reason` (0 when none).
    pub fn skipped_count(&self, reason: &str) -> u64 {
        self.skipped.get(reason).map_or(0, |s| s.count)
    }

    /// Count of the condition `note` (0 when none).
    pub fn note_count(&self, note: &str) -> u64 {
        self.notes.get(note).copied().unwrap_or(0)
    }
}

/// The report under construction while a file streams.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub rows_read: u64,
    pub rows_used: u64,
    skipped: BTreeMap<&'static str, SkipSummary>,
    notes: BTreeMap<&'static str, u64>,
    first_time: Option<DateTime<Utc>>,
    last_time: Option<DateTime<Utc>>,
}

impl Tally {
    /// Counts a skipped row; the example is built only while fewer than
    /// [`MAX_EXAMPLES`] are kept, so skipping costs no allocation on large files.
    pub fn skip(&mut self, reason: &'static str, line: u64, column: Option<&str>, value: &str) {
        let summary = self.skipped.entry(reason).or_insert_with(|| SkipSummary {
            count: 0,
            examples: Vec::new(),
        });
        summary.count += 1;
        if summary.examples.len() < MAX_EXAMPLES {
            summary.examples.push(SkipExample {
                line,
                column: column.map(str::to_string),
                value: truncate(value),
            });
        }
    }

    /// Counts a condition of a used row.
    pub fn note(&mut self, note: &'static str) {
        *self.notes.entry(note).or_default() += 1;
    }

    /// Counts a used row at time `t`.
    pub fn used(&mut self, t: DateTime<Utc>) {
        self.rows_used += 1;
        self.first_time = Some(self.first_time.map_or(t, |f| f.min(t)));
        self.last_time = Some(self.last_time.map_or(t, |l| l.max(t)));
    }

    /// Rows skipped for a malformed-row reason.
    pub fn malformed(&self) -> u64 {
        reasons::MALFORMED
            .iter()
            .filter_map(|r| self.skipped.get(r))
            .map(|s| s.count)
            .sum()
    }

    /// The first malformed examples, in line order, as one line of text for an error.
    pub fn malformed_examples(&self) -> String {
        let mut all: Vec<(&str, &SkipExample)> = reasons::MALFORMED
            .iter()
            .filter_map(|r| self.skipped.get(r).map(|s| (*r, s)))
            .flat_map(|(r, s)| s.examples.iter().map(move |e| (r, e)))
            .collect();
        all.sort_by_key(|(_, e)| e.line);
        all.iter()
            .take(MAX_EXAMPLES)
            .map(|(r, e)| match &e.column {
                Some(c) => format!("line {}, column '{c}': {r}: '{}'", e.line, e.value),
                None => format!("line {}: {r}: {}", e.line, e.value),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The finished report.
    pub fn into_report(self, file: String, sha256: String) -> SourceReport {
        SourceReport {
            file,
            sha256,
            rows_read: self.rows_read,
            rows_used: self.rows_used,
            skipped: self
                .skipped
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            notes: self
                .notes
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            first_time: self.first_time,
            last_time: self.last_time,
        }
    }
}

/// Cuts a value to [`MAX_VALUE_CHARS`] characters.
fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_VALUE_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_five_examples_and_counts_all() {
        let mut t = Tally::default();
        for line in 2..10 {
            t.skip(reasons::ZERO_PRICE, line, Some("Price"), "0");
        }
        let r = t.into_report("f".into(), "h".into());
        let s = &r.skipped[reasons::ZERO_PRICE];
        assert_eq!(s.count, 8);
        assert_eq!(
            s.examples.iter().map(|e| e.line).collect::<Vec<_>>(),
            vec![2, 3, 4, 5, 6]
        );
        assert_eq!(r.skipped_count(reasons::ADJUSTMENT), 0);
    }

    #[test]
    fn long_values_are_truncated() {
        assert_eq!(truncate(&"é".repeat(45)), format!("{}…", "é".repeat(40)));
        assert_eq!(truncate("short"), "short");
    }
}
