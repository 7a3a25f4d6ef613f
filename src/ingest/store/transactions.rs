//! Transactions in the UCI *Online Retail II* layout
//! (`Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country`),
//! streamed into per-customer purchase totals.
//!
//! What a line means, checked in this order (the first reason that applies is the one
//! counted):
//! 1. wrong field count, invalid UTF-8 in a used cell, no customer id, unparseable time,
//!    time after the as-of instant, unparseable quantity or price, no invoice number;
//! 2. quantity 0: skipped (`zero_quantity`); price 0: skipped (`zero_price`: free items and
//!    manual corrections carry no revenue, and counting them would make an invoice of free
//!    samples look like a purchase); negative price: skipped (`negative_price`: the UCI
//!    "adjust bad debt" lines are bookkeeping, not customers);
//! 3. an invoice starting with the cancellation prefix (`C`, any case) is a cancellation:
//!    its value `|quantity × price|` is subtracted from net revenue and added to cancelled
//!    revenue, and its invoice counts as cancelled; it is never a purchase and does not move
//!    the first or last purchase;
//! 4. a negative quantity on any other invoice is a stock adjustment (damages, write-offs):
//!    skipped (`adjustment`), since it is not something the customer did;
//! 5. an exact duplicate of a line of the same invoice run is skipped (`duplicate_row`);
//! 6. otherwise the line is a purchase: it adds to gross and net revenue, its invoice to
//!    the customer's distinct invoices, and its time to the purchase span.
//!
//! Only the cells of the configured columns are decoded, so an unreadable byte in a column
//! segscope does not use (a Latin-1 description) costs nothing; duplicates compare all
//! fields byte for byte.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use chrono::{DateTime, Utc};

use super::report::{SourceReport, Tally, notes, reasons};
use super::source::{Layout, Scanner, Wanted};
use super::values::{customer_id, finite, parse_time};
use super::{StoreIngestError, TransactionSettings};
use crate::analysis::progress::Progress;

/// Every customer's purchases, and what reading the file did.
#[derive(Debug, Clone)]
pub struct TransactionLedger {
    /// Rows read, used and skipped (with reasons), file digest, time span.
    pub report: SourceReport,
    /// Per customer id (normalised: trimmed, `13085.0` → `13085`), sorted for stable output.
    pub customers: BTreeMap<String, CustomerPurchases>,
}

/// One customer's purchase totals: the inputs of RFM and of revenue KPIs.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerPurchases {
    /// Distinct invoices with at least one purchase line (cancellations excluded).
    pub invoices: u32,
    /// Distinct cancellation invoices.
    pub cancelled_invoices: u32,
    /// Purchase lines used (cancellation lines are not counted here).
    pub lines: u32,
    /// Gross revenue minus cancelled revenue; can be negative when a cancellation refers
    /// to a purchase before the data starts.
    pub net_revenue: f64,
    /// Sum of quantity × price over purchase lines.
    pub gross_revenue: f64,
    /// Sum of |quantity × price| over cancellation lines (positive).
    pub cancelled_revenue: f64,
    /// Earliest purchase line; `None` when the customer only cancelled.
    pub first_purchase: Option<DateTime<Utc>>,
    /// Latest purchase line; `None` when the customer only cancelled.
    pub last_purchase: Option<DateTime<Utc>>,
}

/// A customer being accumulated: totals plus the distinct invoice numbers, which are
/// dropped once counted.
#[derive(Default)]
struct Account {
    invoices: HashSet<Box<str>>,
    cancelled: HashSet<Box<str>>,
    lines: u32,
    gross: f64,
    cancelled_revenue: f64,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

impl CustomerPurchases {
    /// Adds `other` (the same customer's purchases in another time bucket): counts and
    /// revenues add, the first and last purchase widen. An invoice whose lines fall in two
    /// buckets counts once in each.
    pub fn merge(&mut self, other: &CustomerPurchases) {
        self.invoices = self.invoices.saturating_add(other.invoices);
        self.cancelled_invoices = self
            .cancelled_invoices
            .saturating_add(other.cancelled_invoices);
        self.lines = self.lines.saturating_add(other.lines);
        self.net_revenue += other.net_revenue;
        self.gross_revenue += other.gross_revenue;
        self.cancelled_revenue += other.cancelled_revenue;
        self.first_purchase = match (self.first_purchase, other.first_purchase) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_purchase = match (self.last_purchase, other.last_purchase) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Every customer's purchases per time bucket (weekly tracking buckets by ISO week), read in
/// one pass, and what reading the file did.
#[derive(Debug, Clone)]
pub struct BucketedPurchases<B> {
    /// Rows read, used and skipped (with reasons), file digest, time span.
    pub report: SourceReport,
    /// Per bucket, per customer id: the purchases whose lines fall in that bucket.
    pub buckets: BTreeMap<B, BTreeMap<String, CustomerPurchases>>,
}

/// Reads a transactions file (plain or gzip CSV), skipping rows after `as_of`.
pub fn read_transactions(
    path: &Path,
    settings: &TransactionSettings,
    delimiter: u8,
    as_of: Option<DateTime<Utc>>,
    progress: &dyn Progress,
) -> Result<TransactionLedger, StoreIngestError> {
    let mut read = read_transactions_by(path, settings, delimiter, as_of, |_| (), progress)?;
    Ok(TransactionLedger {
        report: read.report,
        customers: read.buckets.remove(&()).unwrap_or_default(),
    })
}

/// Reads a transactions file like [`read_transactions`], accumulating each customer
/// separately per bucket (`bucket_of` a line's invoice time).
pub fn read_transactions_by<B: Ord + Copy + std::hash::Hash>(
    path: &Path,
    settings: &TransactionSettings,
    delimiter: u8,
    as_of: Option<DateTime<Utc>>,
    bucket_of: impl Fn(DateTime<Utc>) -> B,
    progress: &dyn Progress,
) -> Result<BucketedPurchases<B>, StoreIngestError> {
    let c = &settings.columns;
    let mut scanner = Scanner::open(path, delimiter, "ingest transactions", progress)?;
    let wanted = [
        c.invoice.as_str(),
        &c.quantity,
        &c.invoice_date,
        &c.price,
        &c.customer_id,
    ]
    .map(|name| Wanted {
        name,
        required: true,
    });
    let layout = Layout {
        name: "transactions (UCI Online Retail II)",
        section: "transactions",
    };
    let columns = scanner.columns(&layout, &wanted)?;
    let names = scanner.header().to_vec();
    let name = |i: usize| columns[i].and_then(|c| names.get(c)).map(String::as_str);
    let prefix = settings.cancellation_prefix.trim();

    let mut tally = Tally::default();
    let mut buckets: HashMap<B, HashMap<String, Account>> = HashMap::new();
    // Duplicate detection: the lines of the current invoice run, byte for byte.
    let mut run_invoice = String::new();
    let mut run_lines: HashSet<Vec<u8>> = HashSet::new();

    while scanner.next_row(&mut tally)? {
        let line = scanner.line();
        let Some([invoice, quantity, time, price, customer]) = scanner.cells(&columns, &mut tally)
        else {
            continue;
        };
        let Some((customer, normalised)) = customer_id(customer) else {
            tally.skip(reasons::MISSING_CUSTOMER_ID, line, name(4), customer);
            continue;
        };
        let Some(at) = parse_time(time) else {
            tally.skip(reasons::UNPARSEABLE_TIMESTAMP, line, name(2), time);
            continue;
        };
        if as_of.is_some_and(|limit| at > limit) {
            tally.skip(reasons::AFTER_AS_OF, line, name(2), time);
            continue;
        }
        let Some(qty) = finite(quantity) else {
            tally.skip(reasons::UNPARSEABLE_QUANTITY, line, name(1), quantity);
            continue;
        };
        let Some(unit) = finite(price) else {
            tally.skip(reasons::UNPARSEABLE_PRICE, line, name(3), price);
            continue;
        };
        let invoice = invoice.trim();
        if invoice.is_empty() {
            tally.skip(reasons::MISSING_INVOICE, line, name(0), invoice);
            continue;
        }
        if qty == 0.0 {
            tally.skip(reasons::ZERO_QUANTITY, line, name(1), quantity);
            continue;
        }
        if unit == 0.0 {
            tally.skip(reasons::ZERO_PRICE, line, name(3), price);
            continue;
        }
        if unit < 0.0 {
            tally.skip(reasons::NEGATIVE_PRICE, line, name(3), price);
            continue;
        }
        let cancellation = !prefix.is_empty()
            && invoice
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix));
        if !cancellation && qty < 0.0 {
            tally.skip(reasons::ADJUSTMENT, line, name(1), quantity);
            continue;
        }
        if run_invoice != invoice {
            run_invoice.clear();
            run_invoice.push_str(invoice);
            run_lines.clear();
        }
        let mut key = Vec::new();
        for field in scanner.raw_fields() {
            key.extend_from_slice(&(field.len() as u64).to_le_bytes());
            key.extend_from_slice(field);
        }
        if !run_lines.insert(key) {
            tally.skip(reasons::DUPLICATE_ROW, line, None, invoice);
            continue;
        }

        if normalised {
            tally.note(notes::CUSTOMER_IDS_NORMALISED);
        }
        let accounts = buckets.entry(bucket_of(at)).or_default();
        if !accounts.contains_key(customer.as_ref()) {
            accounts.insert(customer.to_string(), Account::default());
        }
        let Some(account) = accounts.get_mut(customer.as_ref()) else {
            continue;
        };
        let value = qty * unit;
        if cancellation {
            tally.note(notes::CANCELLATION_LINES);
            account.cancelled_revenue += value.abs();
            if !account.cancelled.contains(invoice) {
                account.cancelled.insert(invoice.into());
            }
        } else {
            account.lines = account.lines.saturating_add(1);
            account.gross += value;
            if !account.invoices.contains(invoice) {
                account.invoices.insert(invoice.into());
            }
            account.first = Some(account.first.map_or(at, |f| f.min(at)));
            account.last = Some(account.last.map_or(at, |l| l.max(at)));
        }
        tally.used(at);
    }

    let sha256 = scanner.finish(&tally)?;
    let buckets = buckets
        .into_iter()
        .map(|(bucket, accounts)| (bucket, into_purchases(accounts)))
        .collect();
    Ok(BucketedPurchases {
        report: tally.into_report(path.display().to_string(), sha256),
        buckets,
    })
}

fn into_purchases(accounts: HashMap<String, Account>) -> BTreeMap<String, CustomerPurchases> {
    accounts
        .into_iter()
        .map(|(id, a)| {
            let purchases = CustomerPurchases {
                invoices: u32::try_from(a.invoices.len()).unwrap_or(u32::MAX),
                cancelled_invoices: u32::try_from(a.cancelled.len()).unwrap_or(u32::MAX),
                lines: a.lines,
                net_revenue: a.gross - a.cancelled_revenue,
                gross_revenue: a.gross,
                cancelled_revenue: a.cancelled_revenue,
                first_purchase: a.first,
                last_purchase: a.last,
            };
            (id, purchases)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::progress::NoProgress;
    use crate::ingest::store::testing::{gzip, transaction_settings, write};
    use chrono::TimeZone;

    const HEADER: &str =
        "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n";
    const ROWS: &str = "\
489434,85048,\"LIGHT, PINK\",12,2009-12-01 07:45:00,6.5,13085.0,United Kingdom
489434,79323P,PINK CHERRY,12,2009-12-01 07:45:00,6.75,13085.0,United Kingdom
489434,79323P,PINK CHERRY,12,2009-12-01 07:45:00,6.75,13085.0,United Kingdom
489435,22350,CAT BOWL,10,12/2/2009 9:30,2.0,13085,United Kingdom
C489449,22087,PAPER BUNTING,-12,2009-12-03 10:33:00,2.5,13085,United Kingdom
489436,21232,STRAWBERRY,4,2009-12-04 08:00:00,1.25,,United Kingdom
489437,21232,STRAWBERRY,-3,2009-12-04 09:00:00,1.25,14000,United Kingdom
489438,21232,FREE,1,2009-12-04 09:00:00,0,14000,United Kingdom
A506401,B,Adjust bad debt,1,2009-12-04 09:00:00,-53594.36,14000,United Kingdom
c489450,22087,X,-1,2009-12-05 10:00:00,3.0,15000,France
489439,22087,X,2,not a date,3.0,16000,France
489440,22087,X,two,2009-12-05 10:00:00,3.0,16000,France
489441,22087,X,2,2009-12-05 10:00:00
489442,22087,X,1,2009-12-06 10:00:00,10.0,16000,France
";

    fn utc(d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2009, 12, d, h, mi, 0).unwrap()
    }

    fn read(bytes: &[u8], as_of: Option<DateTime<Utc>>) -> TransactionLedger {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "t.csv", bytes);
        read_transactions(&path, &transaction_settings(), b',', as_of, &NoProgress).unwrap()
    }

    fn fixture() -> Vec<u8> {
        format!("{HEADER}{ROWS}").into_bytes()
    }

    fn example(line: u64, column: Option<&str>, value: &str) -> crate::ingest::store::SkipExample {
        crate::ingest::store::SkipExample {
            line,
            column: column.map(str::to_string),
            value: value.to_string(),
        }
    }

    #[test]
    fn cancellations_reduce_net_revenue_and_invoices_are_distinct() {
        let ledger = read(&fixture(), None);
        assert_eq!(
            ledger.customers.keys().collect::<Vec<_>>(),
            vec!["13085", "15000", "16000"]
        );
        assert_eq!(
            ledger.customers["13085"],
            CustomerPurchases {
                invoices: 2,
                cancelled_invoices: 1,
                lines: 3,
                net_revenue: 149.0,
                gross_revenue: 179.0,
                cancelled_revenue: 30.0,
                first_purchase: Some(utc(1, 7, 45)),
                last_purchase: Some(utc(2, 9, 30)),
            }
        );
        assert_eq!(
            ledger.customers["15000"],
            CustomerPurchases {
                invoices: 0,
                cancelled_invoices: 1,
                lines: 0,
                net_revenue: -3.0,
                gross_revenue: 0.0,
                cancelled_revenue: 3.0,
                first_purchase: None,
                last_purchase: None,
            }
        );
        assert_eq!(ledger.customers["16000"].net_revenue, 10.0);
    }

    #[test]
    fn every_skip_is_counted_with_line_column_and_value() {
        let r = read(&fixture(), None).report;
        assert_eq!((r.rows_read, r.rows_used), (14, 6));
        let counts: Vec<(&str, u64)> = r
            .skipped
            .iter()
            .map(|(k, s)| (k.as_str(), s.count))
            .collect();
        assert_eq!(
            counts,
            vec![
                ("adjustment", 1),
                ("duplicate_row", 1),
                ("missing_customer_id", 1),
                ("negative_price", 1),
                ("unparseable_quantity", 1),
                ("unparseable_timestamp", 1),
                ("wrong_field_count", 1),
                ("zero_price", 1),
            ]
        );
        let ex = |reason: &str| r.skipped[reason].examples.clone();
        assert_eq!(ex(reasons::DUPLICATE_ROW), vec![example(4, None, "489434")]);
        assert_eq!(
            ex(reasons::MISSING_CUSTOMER_ID),
            vec![example(7, Some("Customer ID"), "")]
        );
        assert_eq!(
            ex(reasons::ADJUSTMENT),
            vec![example(8, Some("Quantity"), "-3")]
        );
        assert_eq!(
            ex(reasons::ZERO_PRICE),
            vec![example(9, Some("Price"), "0")]
        );
        assert_eq!(
            ex(reasons::NEGATIVE_PRICE),
            vec![example(10, Some("Price"), "-53594.36")]
        );
        assert_eq!(
            ex(reasons::UNPARSEABLE_TIMESTAMP),
            vec![example(12, Some("InvoiceDate"), "not a date")]
        );
        assert_eq!(
            ex(reasons::UNPARSEABLE_QUANTITY),
            vec![example(13, Some("Quantity"), "two")]
        );
        assert_eq!(
            ex(reasons::WRONG_FIELD_COUNT),
            vec![example(14, None, "5 fields, expected 8")]
        );
        assert_eq!(r.note_count(notes::CANCELLATION_LINES), 2);
        assert_eq!(r.note_count(notes::CUSTOMER_IDS_NORMALISED), 2);
        assert_eq!(
            (r.first_time, r.last_time),
            (Some(utc(1, 7, 45)), Some(utc(6, 10, 0)))
        );
        assert_eq!(r.sha256.len(), 64);
    }

    #[test]
    fn rows_after_as_of_are_skipped_not_errors() {
        let ledger = read(&fixture(), Some(utc(5, 23, 59)));
        assert!(!ledger.customers.contains_key("16000"));
        let r = ledger.report;
        assert_eq!(r.rows_used, 5);
        assert_eq!(
            r.skipped[reasons::AFTER_AS_OF].examples,
            vec![example(15, Some("InvoiceDate"), "2009-12-06 10:00:00")]
        );
        assert_eq!(r.last_time, Some(utc(5, 10, 0)));
    }

    #[test]
    fn gzip_and_bom_give_identical_results() {
        let plain = read(&fixture(), None);
        let mut with_bom = b"\xEF\xBB\xBF".to_vec();
        with_bom.extend_from_slice(&fixture());
        for variant in [gzip(&fixture()), with_bom.clone(), gzip(&with_bom)] {
            let other = read(&variant, None);
            assert_eq!(other.customers, plain.customers);
            let mut report = other.report;
            assert_ne!(report.sha256, plain.report.sha256);
            report.sha256.clone_from(&plain.report.sha256);
            report.file.clone_from(&plain.report.file);
            assert_eq!(report, plain.report);
        }
    }

    #[test]
    fn sha256_is_of_the_file_bytes() {
        use sha2::{Digest, Sha256};
        for bytes in [fixture(), gzip(&fixture())] {
            let want: String = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(read(&bytes, None).report.sha256, want);
        }
    }

    #[test]
    fn invalid_utf8_in_a_used_cell_is_a_skip_and_elsewhere_harmless() {
        let mut bytes = HEADER.as_bytes().to_vec();
        bytes.extend_from_slice(b"1,A,caf\xE9,1,2009-12-01 07:45:00,2.0,17000,France\n");
        bytes.extend_from_slice(b"2,A,x,1,2009-12-01 07:45:00,2.0,17\xFF00,France\n");
        let ledger = read(&bytes, None);
        assert_eq!(ledger.customers["17000"].gross_revenue, 2.0);
        assert_eq!(
            ledger.report.skipped[reasons::INVALID_UTF8].examples,
            vec![example(3, Some("Customer ID"), "17\u{FFFD}00")]
        );
    }

    #[test]
    fn empty_and_header_only_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [
            ("e.csv", &b""[..]),
            ("b.csv", b"\xEF\xBB\xBF \n"),
            ("g.csv", &gzip(b"")),
        ] {
            let path = write(&dir, name, bytes);
            let e = read_transactions(&path, &transaction_settings(), b',', None, &NoProgress)
                .unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "{}: the file is empty; expected a header line and data rows",
                    path.display()
                )
            );
        }
        let path = write(&dir, "h.csv", HEADER.as_bytes());
        let e =
            read_transactions(&path, &transaction_settings(), b',', None, &NoProgress).unwrap_err();
        assert!(matches!(e, StoreIngestError::NoDataRows { .. }), "{e}");
    }

    #[test]
    fn missing_columns_are_named_with_the_header_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "m.csv",
            b"Invoice,StockCode,Quantity,Date,Price,Country\n1,A,1,x,1,UK\n",
        );
        let e =
            read_transactions(&path, &transaction_settings(), b',', None, &NoProgress).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: line 1: missing column(s) 'InvoiceDate', 'Customer ID' (the transactions \
                 (UCI Online Retail II) layout needs them; rename them in the \
                 [transactions.columns] settings if the file uses other names); the header \
                 has: 'Invoice', 'StockCode', 'Quantity', 'Date', 'Price', 'Country'",
                path.display()
            )
        );
        let semicolons = fixture()
            .iter()
            .map(|&b| if b == b',' { b';' } else { b })
            .collect::<Vec<_>>();
        let path = write(&dir, "s.csv", &semicolons);
        let e =
            read_transactions(&path, &transaction_settings(), b',', None, &NoProgress).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("(one column containing ';': is the file ';'-delimited?)"),
            "{e}"
        );
    }

    #[test]
    fn mostly_malformed_rows_fail_with_examples() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = format!("{HEADER}1,2\n3,4\n1,A,x,1,2009-12-01 07:45:00,2.0,17000,France\n");
        let path = write(&dir, "w.csv", bytes.as_bytes());
        let e =
            read_transactions(&path, &transaction_settings(), b',', None, &NoProgress).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: 2 of 3 data rows are malformed (is the delimiter right? is this the right \
                 file?); first problems: line 2: wrong_field_count: 2 fields, expected 8; \
                 line 3: wrong_field_count: 2 fields, expected 8",
                path.display()
            )
        );
    }

    #[test]
    fn column_names_come_from_settings() {
        let mut settings = transaction_settings();
        settings.columns.customer_id = "CustomerID".into();
        settings.columns.price = "UnitPrice".into();
        settings.columns.invoice = "InvoiceNo".into();
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "uci1.csv",
            b"InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n\
              536365,85123A,HEART,6,12/1/2010 8:26,2.5,17850,United Kingdom\n",
        );
        let ledger = read_transactions(&path, &settings, b',', None, &NoProgress).unwrap();
        let c = &ledger.customers["17850"];
        assert_eq!(c.gross_revenue, 15.0);
        assert_eq!(
            c.last_purchase,
            Some(Utc.with_ymd_and_hms(2010, 12, 1, 8, 26, 0).unwrap())
        );
    }

    #[test]
    fn progress_covers_the_whole_file() {
        use std::sync::Mutex;
        #[derive(Default)]
        struct Recorder(Mutex<(u64, u64, u32)>);
        impl Progress for Recorder {
            fn start(&self, _stage: &str, total: u64) {
                self.0.lock().unwrap().0 = total;
            }
            fn advance(&self, steps: u64) {
                self.0.lock().unwrap().1 += steps;
            }
            fn finish(&self) {
                self.0.lock().unwrap().2 += 1;
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let bytes = fixture();
        let path = write(&dir, "p.csv", &bytes);
        let recorder = Recorder::default();
        read_transactions(&path, &transaction_settings(), b',', None, &recorder).unwrap();
        let (total, done, finished) = *recorder.0.lock().unwrap();
        assert_eq!(
            (total, done, finished),
            (bytes.len() as u64, bytes.len() as u64, 1)
        );
    }
}
