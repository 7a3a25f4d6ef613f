//! A synthetic store with planted segments, written in the layouts real stores export:
//! transactions as UCI *Online Retail II* (gzip-compressed, as exports usually travel) and
//! browsing events as REES46.
//!
//! Six personas with distinct RFM and category profiles are planted, and the files carry the
//! mess real exports carry, in known amounts so a test can check that every count adds up:
//! customers with a second interest, browsing that strays into other personas'
//! categories, sparse customers, cancelled
//! invoices, guest checkouts without a customer id, exact duplicate lines, events without a
//! category or brand, and a few malformed lines. Customers of two personas appear in only
//! one file (browsers who never bought; one-time buyers who never browsed), so the pipeline's
//! handling of missing halves is exercised too.
//!
//! Everything is drawn from one seeded RNG and the calendar is fixed by [`StoreSpec::end`],
//! so the same spec always writes the same bytes.

use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, TimeZone, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use rand::Rng;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, LogNormal, Poisson};
use rand_xoshiro::Xoshiro256PlusPlus;

/// What to generate.
#[derive(Debug, Clone)]
pub struct StoreSpec {
    /// Customers with a planted persona.
    pub customers: usize,
    /// Weeks of browsing events before [`StoreSpec::end`]; transactions reach back a year.
    pub weeks: u32,
    /// The last instant of the data.
    pub end: DateTime<Utc>,
    /// Seed of every random choice.
    pub seed: u64,
    /// Multiplies every persona's browsing events per week (benchmarks size the store with it).
    pub events_scale: f64,
    /// Multiplies every repeat buyer's number of orders (one-time buyers keep one).
    pub orders_scale: f64,
    /// Changes planted from a later week on (weekly tracking's test bed); `None` writes the
    /// store exactly as before.
    pub changes: Option<PlantedChanges>,
}

/// Changes planted from week `from_week` of the browsing window on (week 1 is the window's
/// first week). Everything before that week is written exactly as without them: the changes
/// are drawn from their own RNG after every other draw, and only touch rows from their start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlantedChanges {
    /// The first changed week (1-based, within `StoreSpec::weeks`).
    pub from_week: u32,
}

/// The category family nobody browses before the planted change.
pub const EMERGING_FAMILY: &str = "pets";
const EMERGING_CATEGORIES: [&str; 3] = ["pets.aquarium", "pets.dog_food", "pets.cat_toys"];
const EMERGING_BRANDS: [&str; 3] = ["tetra", "royal_canin", "trixie"];
/// The persona part of which moves into another from the planted week on, and the persona
/// whose habits they take up: window shoppers who start buying, with one apparel order in the
/// first changed week and bargain hunters' browsing from then on.
pub const MIGRATION: (&str, &str) = ("window_sports", "bargain_apparel");
/// Share of the migrating persona that migrates.
const MIGRATING_SHARE: f64 = 0.3;
/// Share of all customers who take up the emerging family.
const EMERGING_SHARE: f64 = 0.02;
/// Bot users (one session each) in the planted week.
const BOTS: usize = 30;

/// Who was planted, for tests: customer ids per effect (ascending) and when it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct PlantedTruth {
    /// Monday 00:00:00 UTC of the first changed week.
    pub start: DateTime<Utc>,
    /// Customers who take up [`EMERGING_FAMILY`] (about 2% of customers).
    pub emerging: Vec<String>,
    /// Customers of `MIGRATION.0` who browse (and buy) like `MIGRATION.1` from the start.
    pub migrants: Vec<String>,
    /// Bot users: one session each of hundreds of views, no carts or purchases, in the first
    /// changed week only.
    pub bots: Vec<String>,
}

impl StoreSpec {
    /// The demo's store: `customers` customers, eight weeks of browsing ending on Sunday
    /// 2026-11-22 at 23:59:59 UTC.
    pub fn demo(customers: usize, seed: u64) -> Self {
        StoreSpec {
            customers,
            weeks: 8,
            end: Utc
                .with_ymd_and_hms(2026, 11, 22, 23, 59, 59)
                .single()
                .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
            seed,
            events_scale: 1.0,
            orders_scale: 1.0,
            changes: None,
        }
    }
}

/// A persona planted in the store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Persona {
    /// Short key, used as the planted label.
    pub key: &'static str,
    share: f64,
    purchases: Option<PurchaseHabit>,
    browsing: Option<BrowsingHabit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PurchaseHabit {
    /// Mean number of orders over the customer's active span.
    orders: u32,
    /// Median basket value (whole currency units).
    basket: u32,
    /// Days before the end of the data when the customer last bought: (from, to).
    last_order_days_ago: (i64, i64),
    /// Days over which the orders are spread, ending at the last order.
    active_days: i64,
    categories: &'static [&'static str],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BrowsingHabit {
    /// Mean events per week while browsing.
    events_per_week: u32,
    /// Weeks without browsing at the end of the window (a lapsing customer stops browsing).
    quiet_weeks: u32,
    /// Percent of viewed items put in the cart, and percent of carts bought.
    cart_percent: u32,
    purchase_percent: u32,
    categories: &'static [&'static str],
    brands: &'static [&'static str],
}

/// The planted personas, in label order.
pub const PERSONAS: [Persona; 6] = [
    Persona {
        key: "loyal_electronics",
        share: 0.18,
        purchases: Some(PurchaseHabit {
            orders: 20,
            basket: 320,
            last_order_days_ago: (0, 12),
            active_days: 330,
            categories: &["electronics"],
        }),
        browsing: Some(BrowsingHabit {
            events_per_week: 14,
            quiet_weeks: 0,
            cart_percent: 25,
            purchase_percent: 45,
            categories: &[
                "electronics.smartphone",
                "electronics.audio.headphone",
                "computers.notebook",
            ],
            brands: &["apple", "samsung", "sony"],
        }),
    },
    Persona {
        key: "lapsed_home",
        share: 0.16,
        purchases: Some(PurchaseHabit {
            orders: 9,
            basket: 260,
            last_order_days_ago: (150, 300),
            active_days: 200,
            categories: &["home"],
        }),
        browsing: Some(BrowsingHabit {
            events_per_week: 2,
            quiet_weeks: 4,
            cart_percent: 10,
            purchase_percent: 10,
            categories: &[
                "appliances.kitchen.refrigerators",
                "appliances.kitchen.washer",
                "furniture.living_room.sofa",
            ],
            brands: &["bosch", "lg", "ikea"],
        }),
    },
    Persona {
        key: "bargain_apparel",
        share: 0.2,
        purchases: Some(PurchaseHabit {
            orders: 16,
            basket: 32,
            last_order_days_ago: (0, 30),
            active_days: 300,
            categories: &["apparel"],
        }),
        browsing: Some(BrowsingHabit {
            events_per_week: 8,
            quiet_weeks: 0,
            cart_percent: 30,
            purchase_percent: 50,
            categories: &["apparel.shoes", "apparel.costume", "accessories.bag"],
            brands: &["nike", "adidas", "zara"],
        }),
    },
    Persona {
        key: "new_kids",
        share: 0.14,
        purchases: Some(PurchaseHabit {
            orders: 1,
            basket: 70,
            last_order_days_ago: (0, 25),
            active_days: 1,
            categories: &["kids"],
        }),
        browsing: Some(BrowsingHabit {
            events_per_week: 12,
            quiet_weeks: 0,
            cart_percent: 20,
            purchase_percent: 20,
            categories: &["kids.toys", "kids.carriage", "stationery.cartrige"],
            brands: &["lego", "chicco", "hp"],
        }),
    },
    Persona {
        key: "window_sports",
        share: 0.16,
        purchases: None,
        browsing: Some(BrowsingHabit {
            events_per_week: 10,
            quiet_weeks: 0,
            cart_percent: 15,
            purchase_percent: 0,
            categories: &["sport.bicycle", "sport.ski", "country_yard.lawn_mower"],
            brands: &["trek", "atomic", "husqvarna"],
        }),
    },
    Persona {
        key: "dormant_one_timer",
        share: 0.16,
        purchases: Some(PurchaseHabit {
            orders: 1,
            basket: 45,
            last_order_days_ago: (200, 360),
            active_days: 1,
            categories: &["gifts"],
        }),
        browsing: None,
    },
];

/// Products per transaction category: (stock code prefix, descriptions, unit price range).
fn catalogue(category: &str) -> (&'static str, &'static [&'static str], (f64, f64)) {
    match category {
        "electronics" => (
            "EL",
            &["WIRELESS HEADPHONES", "SMARTPHONE CASE", "USB-C CHARGER"],
            (20.0, 400.0),
        ),
        "home" => (
            "HM",
            &["STAND MIXER", "SOFA THROW", "KETTLE"],
            (25.0, 300.0),
        ),
        "apparel" => ("AP", &["RUNNING SOCKS", "T-SHIRT", "TOTE BAG"], (3.0, 25.0)),
        "kids" => (
            "KD",
            &["BUILDING BLOCKS", "PRAM TOY", "CRAYONS"],
            (5.0, 40.0),
        ),
        _ => (
            "GF",
            &["GIFT CARD HOLDER", "CANDLE SET", "GREETING CARD"],
            (2.0, 30.0),
        ),
    }
}

/// Exactly what was planted, so every count the pipeline reports can be checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlantedCounts {
    /// Transaction data lines written (header excluded), including every planted problem.
    pub transaction_lines: u64,
    /// Lines of cancellation invoices (`C...`, negative quantity).
    pub cancellation_lines: u64,
    /// Distinct cancellation invoices.
    pub cancelled_invoices: u64,
    /// Guest-checkout lines with an empty customer id.
    pub lines_without_customer: u64,
    /// Exact repeats of the line before them.
    pub duplicate_transaction_lines: u64,
    /// Transaction lines whose price is not a number.
    pub unparseable_prices: u64,
    /// Event data lines written (header excluded), including every planted problem.
    pub event_lines: u64,
    /// Events with an empty `category_code` (normal in REES46; they still count).
    pub events_without_category: u64,
    /// Events with an empty `brand`.
    pub events_without_brand: u64,
    /// Exact repeats of the event line before them.
    pub duplicate_event_lines: u64,
    /// Event lines with too few fields.
    pub short_event_lines: u64,
    /// Event lines whose timestamp cannot be read.
    pub unparseable_event_times: u64,
}

/// The files written and the truth behind them.
#[derive(Debug, Clone)]
pub struct PlantedStore {
    /// `transactions.csv.gz` (Online Retail II layout).
    pub transactions: PathBuf,
    /// `events.csv` (REES46 layout).
    pub events: PathBuf,
    /// `truth.csv`: `customer_id,persona`.
    pub truth_file: PathBuf,
    /// Each planted customer's id and persona key, in id order.
    pub truth: Vec<(String, &'static str)>,
    /// What was planted.
    pub counts: PlantedCounts,
    /// The planted changes, when the spec asked for them.
    pub changes: Option<PlantedTruth>,
}

struct Invoice {
    at: DateTime<Utc>,
    customer: Option<usize>,
    lines: Vec<(String, String, i64, f64)>,
    cancellation: bool,
}

struct Event {
    at: DateTime<Utc>,
    customer: usize,
    kind: &'static str,
    product: u32,
    category: &'static str,
    brand: &'static str,
    price: f64,
    session: u64,
}

/// Customer ids are five-digit numbers like the UCI data's, in a seeded order so that id
/// order says nothing about the persona.
fn customer_ids(n: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<u64> {
    let mut ids: Vec<u64> = (0..n as u64).map(|i| 12_000 + i * 3).collect();
    ids.shuffle(rng);
    ids
}

/// Persona of each customer, by the planted shares (largest remainder, so shares are exact
/// up to one customer).
fn assign_personas(n: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<usize> {
    let mut counts: Vec<usize> = PERSONAS
        .iter()
        .map(|p| (p.share * n as f64).floor() as usize)
        .collect();
    let mut p = 0;
    while counts.iter().sum::<usize>() < n {
        counts[p % PERSONAS.len()] += 1;
        p += 1;
    }
    let mut personas: Vec<usize> = counts
        .iter()
        .enumerate()
        .flat_map(|(p, &c)| std::iter::repeat_n(p, c))
        .collect();
    personas.shuffle(rng);
    personas
}

/// One ISO week of a store as weekly exports deliver it (see [`split_by_week`]).
#[derive(Debug, Clone, PartialEq)]
pub struct WeekFiles {
    /// The week.
    pub week: crate::track::IsoWeek,
    /// `transactions-<week>.csv.gz`, when the week has transaction lines.
    pub transactions: Option<PathBuf>,
    /// `events-<week>.csv`, when the week has event lines.
    pub events: Option<PathBuf>,
}

/// Splits a generated store into one file per ISO week and kind in `dir` (created if
/// missing), each with the original header and its lines byte for byte, in file order: what
/// a shop that exports weekly sends, and what the serve watch reads. A line whose time
/// cannot be read (the planted malformed ones) goes with the line before it (the first
/// readable one, at the start). Weeks come out in calendar order.
pub fn split_by_week(store: &PlantedStore, dir: &Path) -> io::Result<Vec<WeekFiles>> {
    use std::collections::BTreeMap;
    use std::io::Read;
    std::fs::create_dir_all(dir)?;
    let mut transactions = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&store.transactions)?)
        .read_to_end(&mut transactions)?;
    let events = std::fs::read(&store.events)?;
    let mut weeks: BTreeMap<crate::track::IsoWeek, WeekFiles> = BTreeMap::new();
    for (bytes, column, kind) in [
        (&transactions, "InvoiceDate", "transactions"),
        (&events, "event_time", "events"),
    ] {
        for (week, body) in split_lines(bytes, column)? {
            let entry = weeks.entry(week).or_insert(WeekFiles {
                week,
                transactions: None,
                events: None,
            });
            if kind == "transactions" {
                let path = dir.join(format!("transactions-{week}.csv.gz"));
                let mut out = GzEncoder::new(std::fs::File::create(&path)?, Compression::fast());
                out.write_all(&body)?;
                out.finish()?;
                entry.transactions = Some(path);
            } else {
                let path = dir.join(format!("events-{week}.csv"));
                std::fs::write(&path, &body)?;
                entry.events = Some(path);
            }
        }
    }
    Ok(weeks.into_values().collect())
}

/// The header plus each week's lines of a CSV, by the ISO week of `column`.
fn split_lines(
    bytes: &[u8],
    column: &str,
) -> io::Result<std::collections::BTreeMap<crate::track::IsoWeek, Vec<u8>>> {
    let invalid = |e: csv::Error| io::Error::new(io::ErrorKind::InvalidData, e);
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let at = reader
        .byte_headers()
        .map_err(invalid)?
        .iter()
        .position(|h| h == column.as_bytes())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("no {column}")))?;
    let header_end = usize::try_from(reader.position().byte()).unwrap_or(bytes.len());
    let header = &bytes[..header_end.min(bytes.len())];
    let mut out: std::collections::BTreeMap<crate::track::IsoWeek, Vec<u8>> =
        std::collections::BTreeMap::new();
    let mut record = csv::ByteRecord::new();
    let mut current = None;
    // Lines before the first readable time go with the first week.
    let mut orphans: Vec<u8> = Vec::new();
    loop {
        let start = usize::try_from(reader.position().byte()).unwrap_or(bytes.len());
        if !reader.read_byte_record(&mut record).map_err(invalid)? {
            break;
        }
        let end = usize::try_from(reader.position().byte()).unwrap_or(bytes.len());
        let time = record
            .get(at)
            .and_then(|t| std::str::from_utf8(t).ok())
            .and_then(crate::ingest::store::parse_time);
        if let Some(t) = time {
            current = Some(crate::track::IsoWeek::of(t));
        }
        let line = &bytes[start.min(end)..end.min(bytes.len())];
        let Some(week) = current else {
            orphans.extend_from_slice(line);
            continue;
        };
        let body = out.entry(week).or_insert_with(|| header.to_vec());
        body.append(&mut orphans);
        body.extend_from_slice(line);
    }
    Ok(out)
}

/// Writes the store into `dir` (created if missing).
pub fn generate(spec: &StoreSpec, dir: &Path) -> io::Result<PlantedStore> {
    std::fs::create_dir_all(dir)?;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(spec.seed);
    let ids = customer_ids(spec.customers, &mut rng);
    let personas = assign_personas(spec.customers, &mut rng);

    let mut invoices: Vec<Invoice> = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    let mut next_session: u64 = 1;
    for (c, &p) in personas.iter().enumerate() {
        let persona = &PERSONAS[p];
        if let Some(habit) = &persona.purchases {
            plant_orders(c, habit, spec, &mut rng, &mut invoices);
        }
        if let Some(habit) = &persona.browsing {
            plant_browsing(c, p, habit, spec, &mut rng, &mut next_session, &mut events);
        }
    }
    plant_guest_checkouts(spec, &mut rng, &mut invoices);
    let mut ids = ids;
    let changes = spec.changes.map(|changes| {
        plant_changes(
            &changes,
            spec,
            &personas,
            &mut ids,
            &mut next_session,
            &mut invoices,
            &mut events,
        )
    });
    invoices.sort_by_key(|i| i.at);
    events.sort_by_key(|e| (e.at, e.customer));
    // Two draws can coincide (same customer, minute, event type, product and session); a
    // reader rightly takes that for a duplicate row, so only planted duplicates may exist.
    let mut seen = std::collections::HashSet::new();
    events.retain(|e| seen.insert((e.at, e.customer, e.kind, e.product, e.session)));

    let mut counts = PlantedCounts::default();
    let transactions = dir.join("transactions.csv.gz");
    write_transactions(&transactions, &invoices, &ids, &mut rng, &mut counts)?;
    let events_path = dir.join("events.csv");
    write_events(&events_path, &events, &ids, &mut rng, &mut counts)?;

    let mut truth: Vec<(String, &'static str)> = ids
        .iter()
        .zip(&personas)
        .map(|(id, &p)| (id.to_string(), PERSONAS[p].key))
        .collect();
    truth.sort();
    let truth_file = dir.join("truth.csv");
    let mut out = BufWriter::new(std::fs::File::create(&truth_file)?);
    writeln!(out, "customer_id,persona")?;
    for (id, persona) in &truth {
        writeln!(out, "{id},{persona}")?;
    }
    out.flush()?;
    Ok(PlantedStore {
        transactions,
        events: events_path,
        truth_file,
        truth,
        counts,
        changes,
    })
}

/// Plants the changes of [`PlantedChanges`] into the drawn rows (before they are sorted and
/// written), from their own RNG so that nothing drawn before changes.
fn plant_changes(
    changes: &PlantedChanges,
    spec: &StoreSpec,
    personas: &[usize],
    ids: &mut Vec<u64>,
    next_session: &mut u64,
    invoices: &mut Vec<Invoice>,
    events: &mut Vec<Event>,
) -> PlantedTruth {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(spec.seed ^ 0x0074_7261_636b_6564);
    let from_week = changes.from_week.clamp(1, spec.weeks.max(1));
    let window_start = spec.end - Duration::weeks(i64::from(spec.weeks)) + Duration::seconds(1);
    let start = window_start + Duration::weeks(i64::from(from_week - 1));
    let remaining = spec.weeks - from_week + 1;
    let later = StoreSpec {
        weeks: remaining,
        changes: None,
        ..spec.clone()
    };
    let persona_of = |key: &str| PERSONAS.iter().position(|p| p.key == key).unwrap_or(0);
    let (from, to) = (persona_of(MIGRATION.0), persona_of(MIGRATION.1));

    // Migration: a share of one persona takes up another's habits: its browsing, and one
    // order in the first changed week.
    let mut pool: Vec<usize> = (0..personas.len())
        .filter(|&c| personas[c] == from)
        .collect();
    pool.shuffle(&mut rng);
    pool.truncate((pool.len() as f64 * MIGRATING_SHARE).round() as usize);
    let mut migrant = vec![false; personas.len()];
    for &c in &pool {
        migrant[c] = true;
    }
    events.retain(|e| !(e.at >= start && migrant.get(e.customer).copied().unwrap_or(false)));
    invoices.retain(|i| {
        !(i.at >= start
            && i.customer
                .is_some_and(|c| migrant.get(c).copied().unwrap_or(false)))
    });
    if let Some(habit) = PERSONAS[to].browsing.as_ref() {
        for &c in &pool {
            plant_browsing(c, to, habit, &later, &mut rng, next_session, events);
        }
    }
    if let Some(habit) = PERSONAS[to].purchases.as_ref() {
        let days = i64::from(remaining) * 7;
        let first_week_order = PurchaseHabit {
            orders: 1,
            last_order_days_ago: (days - 6, days - 1),
            active_days: 1,
            ..*habit
        };
        for &c in &pool {
            plant_orders(c, &first_week_order, &later, &mut rng, invoices);
        }
    }

    // Emerging: about 2% of the browsing customers (not migrants) take up a new family.
    let mut candidates: Vec<usize> = (0..personas.len())
        .filter(|&c| PERSONAS[personas[c]].browsing.is_some() && !migrant[c])
        .collect();
    candidates.shuffle(&mut rng);
    candidates.truncate((personas.len() as f64 * EMERGING_SHARE).round().max(1.0) as usize);
    let habit = BrowsingHabit {
        events_per_week: 30,
        quiet_weeks: 0,
        cart_percent: 20,
        purchase_percent: 30,
        categories: &EMERGING_CATEGORIES,
        brands: &EMERGING_BRANDS,
    };
    for &c in &candidates {
        plant_browsing(
            c,
            PERSONAS.len(),
            &habit,
            &later,
            &mut rng,
            next_session,
            events,
        );
    }

    // Bots: one session of hundreds of views each, in the first changed week, no carts.
    let mut bots = Vec::with_capacity(BOTS);
    for b in 0..BOTS {
        let customer = ids.len();
        ids.push(900_000 + b as u64);
        bots.push(customer);
        let session = *next_session;
        *next_session += 1;
        let views: u32 = rng.gen_range(200..400);
        let begin = start + Duration::minutes(rng.gen_range(0..6 * 1440));
        for v in 0..views {
            let persona = rng.gen_range(0..PERSONAS.len());
            let Some(habit) = PERSONAS[persona].browsing.as_ref() else {
                continue;
            };
            let c = rng.gen_range(0..habit.categories.len());
            events.push(Event {
                at: begin + Duration::seconds(i64::from(v) * 7),
                customer,
                kind: "view",
                product: 1_000_000 + (c as u32 + 1) * 1_000 + persona as u32 * 10_000,
                category: habit.categories[c],
                brand: habit.brands[c.min(habit.brands.len() - 1)],
                price: (rng.gen_range(10.0..500.0_f64) * 100.0).round() / 100.0,
                session,
            });
        }
    }

    let names = |who: &[usize], ids: &[u64]| {
        let mut v: Vec<String> = who.iter().map(|&c| ids[c].to_string()).collect();
        v.sort();
        v
    };
    PlantedTruth {
        start,
        emerging: names(&candidates, ids),
        migrants: names(&pool, ids),
        bots: names(&bots, ids),
    }
}

fn uniform_days(rng: &mut Xoshiro256PlusPlus, (from, to): (i64, i64)) -> i64 {
    if to <= from {
        from
    } else {
        rng.gen_range(from..=to)
    }
}

fn plant_orders(
    customer: usize,
    habit: &PurchaseHabit,
    spec: &StoreSpec,
    rng: &mut Xoshiro256PlusPlus,
    invoices: &mut Vec<Invoice>,
) {
    let orders = if habit.orders <= 1 {
        1
    } else {
        // At least one order; the Poisson spread gives regulars some variety.
        let mean = (f64::from(habit.orders) * spec.orders_scale).max(1.0);
        Poisson::new(mean)
            .map(|d| d.sample(rng) as u32)
            .unwrap_or(habit.orders)
            .max(1)
    };
    let last_days_ago = uniform_days(rng, habit.last_order_days_ago);
    let last = spec.end - Duration::days(last_days_ago) - Duration::minutes(rng.gen_range(0..720));
    let basket = LogNormal::new(f64::from(habit.basket).ln(), 0.35).ok();
    for o in 0..orders {
        let at = if o == 0 {
            last
        } else {
            last - Duration::minutes(rng.gen_range(0..habit.active_days.max(1) * 1440))
        };
        let target = basket.map_or(f64::from(habit.basket), |b| b.sample(rng));
        let category = habit.categories[rng.gen_range(0..habit.categories.len())];
        let (prefix, descriptions, (low, high)) = catalogue(category);
        let mut lines = Vec::new();
        let mut total = 0.0;
        while total < target * 0.8 && lines.len() < 6 {
            let item = rng.gen_range(0..descriptions.len());
            let price = (rng.gen_range(low..high) * 100.0).round() / 100.0;
            let quantity = ((target - total) / price).clamp(1.0, 12.0).floor() as i64;
            total += price * quantity as f64;
            lines.push((
                format!("{prefix}{:03}", item + 1),
                descriptions[item].to_string(),
                quantity,
                price,
            ));
        }
        // One order in 25 is (partly) cancelled later: a `C` invoice with the first line
        // returned.
        if rng.gen_ratio(1, 25)
            && let Some(first) = lines.first().cloned()
        {
            invoices.push(Invoice {
                at: (at + Duration::days(rng.gen_range(1..10))).min(spec.end),
                customer: Some(customer),
                lines: vec![(first.0, first.1, -first.2, first.3)],
                cancellation: true,
            });
        }
        invoices.push(Invoice {
            at,
            customer: Some(customer),
            lines,
            cancellation: false,
        });
    }
}

/// Guest checkouts: invoices without a customer id, as in the UCI data.
fn plant_guest_checkouts(spec: &StoreSpec, rng: &mut Xoshiro256PlusPlus, out: &mut Vec<Invoice>) {
    for _ in 0..(spec.customers / 20).max(1) {
        let (prefix, descriptions, (low, high)) = catalogue("gifts");
        let item = rng.gen_range(0..descriptions.len());
        out.push(Invoice {
            at: spec.end - Duration::minutes(rng.gen_range(0..365 * 1440)),
            customer: None,
            lines: vec![(
                format!("{prefix}{:03}", item + 1),
                descriptions[item].to_string(),
                rng.gen_range(1..4),
                (rng.gen_range(low..high) * 100.0).round() / 100.0,
            )],
            cancellation: false,
        });
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "one caller; the generator's state travels explicitly"
)]
fn plant_browsing(
    customer: usize,
    persona: usize,
    habit: &BrowsingHabit,
    spec: &StoreSpec,
    rng: &mut Xoshiro256PlusPlus,
    next_session: &mut u64,
    out: &mut Vec<Event>,
) {
    let active_weeks = spec.weeks.saturating_sub(habit.quiet_weeks).max(1);
    let window_minutes = i64::from(spec.weeks) * 7 * 1440;
    let quiet_minutes = i64::from(spec.weeks - active_weeks) * 7 * 1440;
    // Sparse customers are part of real data: the Poisson count is often 1 or 2 for
    // low-activity personas, and never 0 (the customer would vanish from the file).
    let expected = (f64::from(habit.events_per_week * active_weeks) * spec.events_scale).max(0.5);
    let n = Poisson::new(expected)
        .map(|d| d.sample(rng) as u32)
        .unwrap_or(1)
        .max(1);
    let mut session = *next_session;
    *next_session += 1;
    let others: Vec<&BrowsingHabit> = PERSONAS
        .iter()
        .enumerate()
        .filter(|(p, _)| *p != persona)
        .filter_map(|(_, q)| q.browsing.as_ref())
        .collect();
    // One customer in eight has a second interest that takes 40% of their browsing: real
    // segments overlap.
    let second_interest = rng
        .gen_ratio(1, 8)
        .then(|| others[rng.gen_range(0..others.len())]);
    for e in 0..n {
        // Besides, one event in seven strays into any other persona's categories.
        let (categories, brands) = if let Some(second) = second_interest
            && rng.gen_ratio(2, 5)
        {
            (second.categories, second.brands)
        } else if rng.gen_ratio(1, 7) {
            let other = others[rng.gen_range(0..others.len())];
            (other.categories, other.brands)
        } else {
            (habit.categories, habit.brands)
        };
        let c = rng.gen_range(0..categories.len());
        let category = categories[c];
        let brand = brands[c.min(brands.len() - 1)];
        if e > 0 && rng.gen_ratio(1, 6) {
            session = *next_session;
            *next_session += 1;
        }
        let at = spec.end
            - Duration::minutes(quiet_minutes + rng.gen_range(0..window_minutes - quiet_minutes));
        let product = 1_000_000 + (c as u32 + 1) * 1_000 + persona as u32 * 10_000;
        let price = (rng.gen_range(10.0..500.0_f64) * 100.0).round() / 100.0;
        let mut push = |kind: &'static str| {
            out.push(Event {
                at,
                customer,
                kind,
                product,
                category,
                brand,
                price,
                session,
            });
        };
        push("view");
        if rng.gen_range(0..100) < habit.cart_percent {
            push("cart");
            if rng.gen_range(0..100) < habit.purchase_percent {
                push("purchase");
            } else if rng.gen_ratio(1, 3) {
                push("remove_from_cart");
            }
        }
    }
}

fn write_transactions(
    path: &Path,
    invoices: &[Invoice],
    ids: &[u64],
    rng: &mut Xoshiro256PlusPlus,
    counts: &mut PlantedCounts,
) -> io::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut out = BufWriter::new(GzEncoder::new(file, Compression::fast()));
    writeln!(
        out,
        "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country"
    )?;
    let mut regular = 500_000u64;
    let mut line = String::new();
    for invoice in invoices {
        regular += 1;
        let number = if invoice.cancellation {
            counts.cancelled_invoices += 1;
            format!("C{regular}")
        } else {
            regular.to_string()
        };
        // Pandas exports write the id column as a float.
        let customer = invoice
            .customer
            .map(|c| format!("{}.0", ids[c]))
            .unwrap_or_default();
        let at = invoice.at.format("%Y-%m-%d %H:%M:%S");
        for (stock, description, quantity, price) in &invoice.lines {
            line.clear();
            let broken_price = rng.gen_ratio(1, 4000);
            let price_text = if broken_price {
                counts.unparseable_prices += 1;
                "12.5x".to_string()
            } else {
                format!("{price:.2}")
            };
            let _ = writeln!(
                line,
                "{number},{stock},{description},{quantity},{at},{price_text},{customer},United Kingdom"
            );
            out.write_all(line.as_bytes())?;
            counts.transaction_lines += 1;
            if invoice.cancellation {
                counts.cancellation_lines += 1;
            }
            if invoice.customer.is_none() {
                counts.lines_without_customer += 1;
            }
            if !broken_price && rng.gen_ratio(1, 200) {
                out.write_all(line.as_bytes())?;
                counts.transaction_lines += 1;
                counts.duplicate_transaction_lines += 1;
                if invoice.cancellation {
                    counts.cancellation_lines += 1;
                }
                if invoice.customer.is_none() {
                    counts.lines_without_customer += 1;
                }
            }
        }
    }
    out.into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .finish()?
        .sync_all()
}

fn write_events(
    path: &Path,
    events: &[Event],
    ids: &[u64],
    rng: &mut Xoshiro256PlusPlus,
    counts: &mut PlantedCounts,
) -> io::Result<()> {
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        out,
        "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
    )?;
    let mut line = String::new();
    for (i, event) in events.iter().enumerate() {
        line.clear();
        let no_category = rng.gen_ratio(1, 8);
        let no_brand = rng.gen_ratio(1, 10);
        let category = if no_category { "" } else { event.category };
        let brand = if no_brand { "" } else { event.brand };
        let category_id = 2_053_013_550_000_000_000u64 + (event.product / 1_000) as u64;
        let _ = writeln!(
            line,
            "{} UTC,{},{},{category_id},{category},{brand},{:.2},{},{:08x}-{:04x}-4000-8000-{:012x}",
            event.at.format("%Y-%m-%d %H:%M:%S"),
            event.kind,
            event.product,
            event.price,
            ids[event.customer],
            event.session,
            event.session % 0xffff,
            event.session
        );
        out.write_all(line.as_bytes())?;
        counts.event_lines += 1;
        counts.events_without_category += u64::from(no_category);
        counts.events_without_brand += u64::from(no_brand);
        if rng.gen_ratio(1, 300) {
            out.write_all(line.as_bytes())?;
            counts.event_lines += 1;
            counts.duplicate_event_lines += 1;
            counts.events_without_category += u64::from(no_category);
            counts.events_without_brand += u64::from(no_brand);
        }
        // A handful of broken lines, spread through the file.
        if i % 25_000 == 4_999 {
            writeln!(out, "2026-10-01 10:00:00 UTC,view,1000001")?;
            counts.event_lines += 1;
            counts.short_event_lines += 1;
        }
        if i % 25_000 == 12_499 {
            writeln!(
                out,
                "yesterday-ish,view,1000001,2053013550000001001,electronics.smartphone,apple,99.00,{},00000001-0001-4000-8000-000000000001",
                ids[event.customer]
            )?;
            counts.event_lines += 1;
            counts.unparseable_event_times += 1;
        }
    }
    out.flush()?;
    out.into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_gz(path: &Path) -> String {
        let mut text = String::new();
        let mut decoder = flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap());
        std::io::Read::read_to_string(&mut decoder, &mut text).unwrap();
        text
    }

    #[test]
    fn same_spec_writes_the_same_bytes_and_counts_what_it_plants() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let spec = StoreSpec::demo(600, 3);
        let first = generate(&spec, a.path()).unwrap();
        let second = generate(&spec, b.path()).unwrap();
        assert_eq!(first.counts, second.counts);
        assert_eq!(
            std::fs::read(&first.events).unwrap(),
            std::fs::read(&second.events).unwrap()
        );
        let transactions = read_gz(&first.transactions);
        assert_eq!(transactions, read_gz(&second.transactions));

        let counts = &first.counts;
        assert_eq!(
            transactions.lines().count() as u64 - 1,
            counts.transaction_lines
        );
        let events = std::fs::read_to_string(&first.events).unwrap();
        assert_eq!(events.lines().count() as u64 - 1, counts.event_lines);
        let cancellation_lines = transactions.lines().filter(|l| l.starts_with('C')).count() as u64;
        assert_eq!(cancellation_lines, counts.cancellation_lines);
        assert!(counts.cancelled_invoices > 0 && counts.lines_without_customer > 0);
        assert!(counts.duplicate_transaction_lines > 0 && counts.events_without_category > 0);
        assert_eq!(first.truth.len(), 600);
    }

    #[test]
    fn personas_get_their_planted_shares() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let personas = assign_personas(1000, &mut rng);
        let count = |p: usize| personas.iter().filter(|&&q| q == p).count();
        let planted: Vec<usize> = (0..PERSONAS.len()).map(count).collect();
        assert_eq!(planted, vec![180, 160, 200, 140, 160, 160]);
    }
}
