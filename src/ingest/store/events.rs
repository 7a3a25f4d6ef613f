//! Browsing events in the REES46 layout
//! (`event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session`),
//! streamed into per-customer behaviour counts and recency-weighted terms.
//!
//! Checks, in order (the first that applies is the reason counted): wrong field count,
//! invalid UTF-8 in a used cell, no user id, unparseable time, time after the as-of
//! instant, an event type other than `view`, `cart`, `remove_from_cart`, `purchase`
//! (any case; `unknown_event_type`), for purchases an unparseable or negative price, and
//! an exact duplicate among the customer's latest events. An empty category code, brand or
//! session is normal in REES46: the event counts, contributes no term of that kind (or no
//! session), and the condition is counted in the report's notes.
//!
//! Recency weighting without keeping events: an event at `t` adds `2^(-(R - t)/h)` to each
//! of its terms, where the reference `R` is only known once the file has been read. Each
//! term therefore keeps its latest time `a` and `w = Σ 2^(-(a - t)/h)` over its events;
//! a later event rescales `w` to its own time, an earlier one adds its discounted weight,
//! and [`CustomerBrowsing::document`] multiplies by `2^(-(R - a)/h)`. The result is the
//! same, to rounding, whatever order the events come in.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::Path;

use chrono::{DateTime, TimeDelta, Utc};

use super::report::{SourceReport, Tally, notes, reasons};
use super::source::{Layout, Scanner, Wanted};
use super::values::{customer_id, finite, parse_time};
use super::{EventSettings, StoreIngestError};
use crate::analysis::progress::Progress;
use crate::domain::{BrowsingDocument, TermKind, WeightedTerm};

/// Every customer's browsing, and what reading the file did.
#[derive(Debug, Clone)]
pub struct BrowsingLog {
    /// Rows read, used and skipped (with reasons), file digest, time span.
    pub report: SourceReport,
    /// Per customer id (normalised like transaction ids, so the two files join).
    pub customers: BTreeMap<String, CustomerBrowsing>,
}

/// One customer's browsing: behaviour counts and the state of their browsing document.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerBrowsing {
    /// `view` events.
    pub views: u32,
    /// `cart` events.
    pub carts: u32,
    /// `remove_from_cart` events.
    pub removes: u32,
    /// `purchase` events.
    pub purchases: u32,
    /// Distinct non-empty session ids.
    pub sessions: u32,
    /// Sum of the price of purchase events.
    pub purchase_value: f64,
    /// Earliest event used.
    pub first_event: DateTime<Utc>,
    /// Latest event used.
    pub last_event: DateTime<Utc>,
    /// Events per full category code (lower case); events without one are not here.
    pub categories: BTreeMap<String, u32>,
    /// Events per brand (lower case); events without one are not here.
    pub brands: BTreeMap<String, u32>,
    /// Recency state per term, one map per [`TermKind`] (in `KINDS` order) so a term is
    /// found by a borrowed `&str`; see the module doc.
    terms: [BTreeMap<String, Decayed>; 3],
    /// Half-life, in days, the term state was accumulated with.
    half_life_days: f64,
}

/// A term's weight relative to its own latest event: `weight = Σ 2^(-(anchor - t)/h)`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Decayed {
    anchor: DateTime<Utc>,
    weight: f64,
}

impl Decayed {
    fn add(&mut self, t: DateTime<Utc>, half_life_days: f64) {
        if t <= self.anchor {
            self.weight += decay(self.anchor - t, half_life_days);
        } else {
            self.weight = self.weight * decay(t - self.anchor, half_life_days) + 1.0;
            self.anchor = t;
        }
    }
}

/// The term kinds, in the order of [`CustomerBrowsing`]'s term maps.
const KINDS: [TermKind; 3] = [TermKind::Category, TermKind::Brand, TermKind::Event];

fn kind_index(kind: TermKind) -> usize {
    match kind {
        TermKind::Category => 0,
        TermKind::Brand => 1,
        TermKind::Event => 2,
    }
}

/// `2^(-delta / half_life)`.
fn decay(delta: TimeDelta, half_life_days: f64) -> f64 {
    const MS_PER_DAY: f64 = 86_400_000.0;
    (-(delta.num_milliseconds() as f64) / (half_life_days * MS_PER_DAY)).exp2()
}

impl CustomerBrowsing {
    fn new(at: DateTime<Utc>, half_life_days: f64) -> Self {
        CustomerBrowsing {
            views: 0,
            carts: 0,
            removes: 0,
            purchases: 0,
            sessions: 0,
            purchase_value: 0.0,
            first_event: at,
            last_event: at,
            categories: BTreeMap::new(),
            brands: BTreeMap::new(),
            terms: Default::default(),
            half_life_days,
        }
    }

    fn add_term(&mut self, kind: TermKind, value: &str, at: DateTime<Utc>) {
        let h = self.half_life_days;
        let terms = &mut self.terms[kind_index(kind)];
        match terms.get_mut(value) {
            Some(state) => state.add(at, h),
            None => {
                terms.insert(
                    value.to_string(),
                    Decayed {
                        anchor: at,
                        weight: 1.0,
                    },
                );
            }
        }
    }

    /// Adds `other` (the same customer's browsing in another time bucket, read with the same
    /// half-life): counts add, term states combine exactly (see the module doc), sessions add
    /// (a session spanning both buckets counts twice).
    pub fn merge(&mut self, other: &CustomerBrowsing) {
        self.views = self.views.saturating_add(other.views);
        self.carts = self.carts.saturating_add(other.carts);
        self.removes = self.removes.saturating_add(other.removes);
        self.purchases = self.purchases.saturating_add(other.purchases);
        self.sessions = self.sessions.saturating_add(other.sessions);
        self.purchase_value += other.purchase_value;
        self.first_event = self.first_event.min(other.first_event);
        self.last_event = self.last_event.max(other.last_event);
        for (key, n) in &other.categories {
            *self.categories.entry(key.clone()).or_insert(0) += n;
        }
        for (key, n) in &other.brands {
            *self.brands.entry(key.clone()).or_insert(0) += n;
        }
        let h = self.half_life_days;
        for (mine, theirs) in self.terms.iter_mut().zip(&other.terms) {
            for (term, state) in theirs {
                match mine.get_mut(term) {
                    Some(m) => {
                        let anchor = m.anchor.max(state.anchor);
                        m.weight = m.weight * decay(anchor - m.anchor, h)
                            + state.weight * decay(anchor - state.anchor, h);
                        m.anchor = anchor;
                    }
                    None => {
                        mine.insert(term.clone(), *state);
                    }
                }
            }
        }
    }

    /// The browsing document at `reference` (the as-of instant or the end of the data):
    /// category path prefixes, brands and event types, each weighted by
    /// `Σ 2^(-(reference - t)/half_life_days)` over its events. Exact when `half_life_days`
    /// is the half-life the file was read with (`events.recency_half_life_days`); with
    /// another one the decay from each term's latest event to `reference` uses the new
    /// half-life but the spread among the term's own events keeps the old one.
    pub fn document(&self, reference: DateTime<Utc>, half_life_days: f64) -> BrowsingDocument {
        BrowsingDocument::new(KINDS.iter().zip(&self.terms).flat_map(|(kind, terms)| {
            terms.iter().map(move |(value, state)| WeightedTerm {
                kind: *kind,
                value: value.clone(),
                weight: state.weight * decay(reference - state.anchor, half_life_days),
            })
        }))
    }
}

/// The four REES46 event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum EventType {
    View,
    Cart,
    Remove,
    Purchase,
}

impl EventType {
    fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        [
            ("view", EventType::View),
            ("cart", EventType::Cart),
            ("remove_from_cart", EventType::Remove),
            ("purchase", EventType::Purchase),
        ]
        .into_iter()
        .find(|(name, _)| t.eq_ignore_ascii_case(name))
        .map(|(_, kind)| kind)
    }

    fn key(self) -> &'static str {
        match self {
            EventType::View => "view",
            EventType::Cart => "cart",
            EventType::Remove => "remove_from_cart",
            EventType::Purchase => "purchase",
        }
    }
}

/// A customer being accumulated: the public totals plus hashed session ids and the
/// fingerprints of the latest events (both dropped once counted).
struct Visitor {
    browsing: CustomerBrowsing,
    sessions: HashSet<u64>,
    recent: Vec<u64>,
    next_recent: usize,
}

impl Visitor {
    /// True when `fingerprint` is among the latest `window` events; records it otherwise.
    fn seen(&mut self, fingerprint: u64, window: usize) -> bool {
        if window == 0 {
            return false;
        }
        if self.recent.contains(&fingerprint) {
            return true;
        }
        if self.recent.len() < window {
            self.recent.push(fingerprint);
        } else {
            if let Some(slot) = self.recent.get_mut(self.next_recent) {
                *slot = fingerprint;
            }
            self.next_recent = (self.next_recent + 1) % window;
        }
        false
    }
}

/// A stable 64-bit hash (SipHash with fixed keys), so runs are reproducible.
fn fingerprint(parts: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// Reads an events file (plain or gzip CSV), skipping rows after `as_of`.
pub fn read_events(
    path: &Path,
    settings: &EventSettings,
    delimiter: u8,
    as_of: Option<DateTime<Utc>>,
    progress: &dyn Progress,
) -> Result<BrowsingLog, StoreIngestError> {
    let mut read = read_events_by(path, settings, delimiter, as_of, |_| (), progress)?;
    Ok(BrowsingLog {
        report: read.report,
        customers: read.buckets.remove(&()).unwrap_or_default(),
    })
}

/// Every customer's browsing per time bucket (weekly tracking buckets by ISO week), read in
/// one pass, and what reading the file did.
#[derive(Debug, Clone)]
pub struct BucketedBrowsing<B> {
    /// Rows read, used and skipped (with reasons), file digest, time span.
    pub report: SourceReport,
    /// Per bucket, per customer id: the browsing whose events fall in that bucket.
    pub buckets: BTreeMap<B, BTreeMap<String, CustomerBrowsing>>,
}

/// Reads an events file like [`read_events`], accumulating each customer separately per
/// bucket (`bucket_of` an event's time). Exact duplicates share their time, hence their
/// bucket, so duplicate detection is unchanged; a session that spans two buckets counts once
/// in each.
pub fn read_events_by<B: Ord + Copy + Hash>(
    path: &Path,
    settings: &EventSettings,
    delimiter: u8,
    as_of: Option<DateTime<Utc>>,
    bucket_of: impl Fn(DateTime<Utc>) -> B,
    progress: &dyn Progress,
) -> Result<BucketedBrowsing<B>, StoreIngestError> {
    let half_life = settings.recency_half_life_days;
    let c = &settings.columns;
    let invalid = |message: String| StoreIngestError::InvalidSettings {
        file: path.to_path_buf(),
        message,
    };
    if !(half_life.is_finite() && half_life > 0.0) {
        return Err(invalid(format!(
            "events.recency_half_life_days = {half_life}: must be a positive number of days"
        )));
    }
    for (key, name) in [
        ("event_time", &c.event_time),
        ("event_type", &c.event_type),
        ("user_id", &c.user_id),
    ] {
        if name.trim().is_empty() {
            return Err(invalid(format!(
                "events.columns.{key} is empty; this column is required"
            )));
        }
    }

    let mut scanner = Scanner::open(path, delimiter, "ingest events", progress)?;
    let names = [
        (c.event_time.as_str(), true),
        (c.event_type.as_str(), true),
        (c.user_id.as_str(), true),
        (c.product_id.as_str(), false),
        (c.category_code.as_str(), false),
        (c.brand.as_str(), false),
        (c.price.as_str(), false),
        (c.user_session.as_str(), false),
    ];
    let wanted = names.map(|(name, required)| Wanted { name, required });
    let layout = Layout {
        name: "events (REES46)",
        section: "events",
    };
    let columns = scanner.columns(&layout, &wanted)?;
    let header = scanner.header().to_vec();
    let name = |i: usize| columns[i].and_then(|c| header.get(c)).map(String::as_str);
    let window = settings.duplicate_window;

    let mut tally = Tally::default();
    let mut buckets: HashMap<B, HashMap<String, Visitor>> = HashMap::new();
    while scanner.next_row(&mut tally)? {
        let line = scanner.line();
        let Some([time, kind, user, product, category, brand, price, session]) =
            scanner.cells(&columns, &mut tally)
        else {
            continue;
        };
        let Some((user, normalised)) = customer_id(user) else {
            tally.skip(reasons::MISSING_CUSTOMER_ID, line, name(2), user);
            continue;
        };
        let Some(at) = parse_time(time) else {
            tally.skip(reasons::UNPARSEABLE_TIMESTAMP, line, name(0), time);
            continue;
        };
        if as_of.is_some_and(|limit| at > limit) {
            tally.skip(reasons::AFTER_AS_OF, line, name(0), time);
            continue;
        }
        let Some(event) = EventType::parse(kind) else {
            tally.skip(reasons::UNKNOWN_EVENT_TYPE, line, name(1), kind);
            continue;
        };
        let mut value = 0.0;
        if event == EventType::Purchase && columns[6].is_some() {
            match finite(price) {
                None => {
                    tally.skip(reasons::UNPARSEABLE_PRICE, line, name(6), price);
                    continue;
                }
                Some(v) if v < 0.0 => {
                    tally.skip(reasons::NEGATIVE_PRICE, line, name(6), price);
                    continue;
                }
                Some(v) => value = v,
            }
        }
        let (product, session) = (product.trim(), session.trim());
        let visitors = buckets.entry(bucket_of(at)).or_default();
        let visitor = match visitors.get_mut(user.as_ref()) {
            Some(v) => v,
            None => visitors
                .entry(user.into_owned())
                .or_insert_with(|| Visitor {
                    browsing: CustomerBrowsing::new(at, half_life),
                    sessions: HashSet::new(),
                    recent: Vec::new(),
                    next_recent: 0,
                }),
        };
        let print = fingerprint((
            at.timestamp(),
            at.timestamp_subsec_nanos(),
            event,
            product,
            session,
        ));
        if visitor.seen(print, window) {
            tally.skip(
                reasons::DUPLICATE_ROW,
                line,
                None,
                &format!("{event:?} at {time}"),
            );
            continue;
        }

        if normalised {
            tally.note(notes::CUSTOMER_IDS_NORMALISED);
        }
        if session.is_empty() {
            tally.note(notes::EVENTS_WITHOUT_SESSION);
        } else {
            visitor.sessions.insert(fingerprint(session));
        }
        let b = &mut visitor.browsing;
        match event {
            EventType::View => b.views = b.views.saturating_add(1),
            EventType::Cart => b.carts = b.carts.saturating_add(1),
            EventType::Remove => b.removes = b.removes.saturating_add(1),
            EventType::Purchase => {
                b.purchases = b.purchases.saturating_add(1);
                b.purchase_value += value;
            }
        }
        b.first_event = b.first_event.min(at);
        b.last_event = b.last_event.max(at);
        b.add_term(TermKind::Event, event.key(), at);

        let category = lower(category);
        if category.is_empty() {
            tally.note(notes::EVENTS_WITHOUT_CATEGORY);
        } else {
            for (i, ch) in category.char_indices() {
                if ch == '.' {
                    b.add_term(TermKind::Category, &category[..i], at);
                }
            }
            b.add_term(TermKind::Category, &category, at);
            bump(&mut b.categories, &category);
        }
        let brand = lower(brand);
        if brand.is_empty() {
            tally.note(notes::EVENTS_WITHOUT_BRAND);
        } else {
            b.add_term(TermKind::Brand, &brand, at);
            bump(&mut b.brands, &brand);
        }
        tally.used(at);
    }

    let sha256 = scanner.finish(&tally)?;
    let buckets = buckets
        .into_iter()
        .map(|(bucket, visitors)| {
            let customers = visitors
                .into_iter()
                .map(|(id, v)| {
                    let mut b = v.browsing;
                    b.sessions = u32::try_from(v.sessions.len()).unwrap_or(u32::MAX);
                    (id, b)
                })
                .collect();
            (bucket, customers)
        })
        .collect();
    Ok(BucketedBrowsing {
        report: tally.into_report(path.display().to_string(), sha256),
        buckets,
    })
}

/// Trimmed and lower case, allocating only when there is an upper-case letter.
fn lower(text: &str) -> std::borrow::Cow<'_, str> {
    let t = text.trim();
    if t.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(t.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(t)
    }
}

fn bump(counts: &mut BTreeMap<String, u32>, key: &str) {
    match counts.get_mut(key) {
        Some(n) => *n = n.saturating_add(1),
        None => {
            counts.insert(key.to_string(), 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::progress::NoProgress;
    use crate::ingest::store::testing::{event_settings, gzip, write};
    use chrono::TimeZone;

    const HEADER: &str = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n";
    const ROWS: [&str; 10] = [
        "2019-10-01 00:00:00 UTC,view,1,10,electronics.smartphone,Apple,100.0,1,s1",
        "2019-10-02 00:00:00 UTC,view,2,10,electronics.smartphone,samsung,50.0,1,s1",
        "2019-10-02 00:00:00 UTC,view,2,10,electronics.smartphone,samsung,50.0,1,s1",
        "2019-10-03 00:00:00 UTC,cart,1,10,electronics.smartphone,apple,100.0,1,s2",
        "2019-10-04 00:00:00 UTC,purchase,1,10,electronics.smartphone,apple,100.5,1,s2",
        "2019-10-04 00:00:00 UTC,view,3,11,,,,2,s3",
        "2019-10-04 00:00:00 UTC,remove_from_cart,3,11,,,,2,",
        "2019-10-05 00:00:00 UTC,wishlist,3,11,,,,2,s3",
        "2019-10-05 00:00:00 UTC,purchase,3,11,,,abc,2,s3",
        "2019-10-06 00:00:00 UTC,VIEW,3,11,appliances.kitchen,,5,2.0,s4",
    ];

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2019, 10, d, 0, 0, 0).unwrap()
    }

    fn read_rows(
        rows: &[&str],
        settings: &EventSettings,
        as_of: Option<DateTime<Utc>>,
    ) -> BrowsingLog {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{HEADER}{}\n", rows.join("\n"));
        let path = write(&dir, "e.csv", text.as_bytes());
        read_events(&path, settings, b',', as_of, &NoProgress).unwrap()
    }

    #[test]
    fn counts_sessions_duplicates_and_unknown_types() {
        let log = read_rows(&ROWS, &event_settings(), None);
        let one = &log.customers["1"];
        assert_eq!(
            (
                one.views,
                one.carts,
                one.removes,
                one.purchases,
                one.sessions
            ),
            (2, 1, 0, 1, 2)
        );
        assert_eq!(one.purchase_value, 100.5);
        assert_eq!((one.first_event, one.last_event), (day(1), day(4)));
        assert_eq!(
            one.categories,
            BTreeMap::from([("electronics.smartphone".to_string(), 4)])
        );
        assert_eq!(
            one.brands,
            BTreeMap::from([("apple".to_string(), 3), ("samsung".to_string(), 1)])
        );
        let two = &log.customers["2"];
        assert_eq!(
            (
                two.views,
                two.carts,
                two.removes,
                two.purchases,
                two.sessions
            ),
            (2, 0, 1, 0, 2)
        );
        assert_eq!(
            two.categories,
            BTreeMap::from([("appliances.kitchen".to_string(), 1)])
        );
        let r = &log.report;
        assert_eq!((r.rows_read, r.rows_used), (10, 7));
        let counts: Vec<(&str, u64)> = r
            .skipped
            .iter()
            .map(|(k, s)| (k.as_str(), s.count))
            .collect();
        assert_eq!(
            counts,
            vec![
                ("duplicate_row", 1),
                ("unknown_event_type", 1),
                ("unparseable_price", 1)
            ]
        );
        assert_eq!(r.skipped[reasons::DUPLICATE_ROW].examples[0].line, 4);
        let unknown = &r.skipped[reasons::UNKNOWN_EVENT_TYPE].examples[0];
        assert_eq!(
            (
                unknown.line,
                unknown.column.as_deref(),
                unknown.value.as_str()
            ),
            (9, Some("event_type"), "wishlist")
        );
        let price = &r.skipped[reasons::UNPARSEABLE_PRICE].examples[0];
        assert_eq!(
            (price.line, price.column.as_deref(), price.value.as_str()),
            (10, Some("price"), "abc")
        );
        let notes: Vec<(&str, u64)> = r.notes.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        assert_eq!(
            notes,
            vec![
                ("customer_ids_normalised", 1),
                ("events_without_brand", 3),
                ("events_without_category", 2),
                ("events_without_session", 1),
            ]
        );
        assert_eq!((r.first_time, r.last_time), (Some(day(1)), Some(day(6))));
    }

    #[test]
    fn as_of_skips_later_events() {
        let log = read_rows(&ROWS, &event_settings(), Some(day(5)));
        assert_eq!(log.customers["2"].views, 1);
        let after = &log.report.skipped[reasons::AFTER_AS_OF];
        assert_eq!(after.count, 1);
        assert_eq!(after.examples[0].line, 11);
        assert_eq!(log.report.last_time, Some(day(4)));
    }

    #[test]
    fn document_weights_are_exact_and_independent_of_order() {
        let mut settings = event_settings();
        settings.recency_half_life_days = 2.0;
        let in_order = read_rows(&ROWS[..5], &settings, None);
        let mut reversed: Vec<&str> = ROWS[..5].to_vec();
        reversed.reverse();
        let shuffled = [ROWS[3], ROWS[0], ROWS[4], ROWS[1]];
        let reversed = read_rows(&reversed, &settings, None);
        let shuffled = read_rows(&shuffled, &settings, None);
        let w = |days: f64| (-days / 2.0).exp2();
        let all = w(3.0) + w(2.0) + w(1.0) + w(0.0);
        let expected = [
            (TermKind::Category, "electronics", all),
            (TermKind::Category, "electronics.smartphone", all),
            (TermKind::Brand, "apple", w(3.0) + w(1.0) + w(0.0)),
            (TermKind::Brand, "samsung", w(2.0)),
            (TermKind::Event, "cart", w(1.0)),
            (TermKind::Event, "purchase", w(0.0)),
            (TermKind::Event, "view", w(3.0) + w(2.0)),
        ];
        for log in [in_order, reversed, shuffled] {
            let doc = log.customers["1"].document(day(4), 2.0);
            assert_eq!(doc.terms().len(), expected.len());
            for (term, (kind, value, weight)) in doc.terms().iter().zip(expected) {
                assert_eq!((term.kind, term.value.as_str()), (kind, value));
                assert!(
                    (term.weight - weight).abs() < 1e-12,
                    "{value}: {} vs {weight}",
                    term.weight
                );
            }
        }
    }

    #[test]
    fn gzip_gives_identical_results() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{HEADER}{}\n", ROWS.join("\n"));
        let plain = write(&dir, "e.csv", text.as_bytes());
        let packed = write(&dir, "e.csv.bin", &gzip(text.as_bytes()));
        let a = read_events(&plain, &event_settings(), b',', None, &NoProgress).unwrap();
        let b = read_events(&packed, &event_settings(), b',', None, &NoProgress).unwrap();
        assert_eq!(a.customers, b.customers);
        assert_eq!(
            (a.report.skipped, a.report.notes),
            (b.report.skipped, b.report.notes)
        );
    }

    #[test]
    fn optional_columns_may_be_absent_and_bad_settings_are_refused() {
        let mut settings = event_settings();
        settings.columns.brand = String::new();
        settings.columns.user_session = String::new();
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "min.csv",
            b"event_time,event_type,product_id,category_code,price,user_id\n\
              2019-10-01T00:00:00Z,view,1,a.b,1,7\n",
        );
        let log = read_events(&path, &settings, b',', None, &NoProgress).unwrap();
        assert_eq!(log.customers["7"].sessions, 0);
        assert_eq!(log.report.note_count(notes::EVENTS_WITHOUT_SESSION), 1);
        settings.recency_half_life_days = 0.0;
        let e = read_events(&path, &settings, b',', None, &NoProgress).unwrap_err();
        assert!(
            e.to_string().contains("events.recency_half_life_days = 0"),
            "{e}"
        );
    }
}
