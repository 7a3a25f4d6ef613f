//! `segscope segment --transactions T --events E`: store data to segments a marketer can act
//! on. Ingest (streamed) → per-customer RFM, browsing behaviour and browsing documents →
//! embedding → the customer matrix → Qdrant (one point per customer) → the core engine
//! (cluster, stability, maps, validity) → business KPIs → narrative → report, and each
//! customer's segment written back to the store.
//!
//! # The customer matrix
//!
//! Three blocks, each scaled so that its *total* variance equals its configured weight
//! (`customer_matrix.*_weight`): otherwise a 32-dimensional embedding would outvote three
//! RFM columns by sheer column count, and the weighting would change with the embedder's
//! dimensions.
//! - RFM: recency in days, `ln(1 + frequency)`, signed `ln(1 + |monetary|)` (revenue and
//!   orders are heavy-tailed: one wholesaler should not be a segment of its own), scaled by
//!   `segment.scale`. A customer who never bought has frequency and monetary 0 and the
//!   recency of the whole observed window (nobody bought later than "never").
//! - Browsing behaviour: `ln(1 + views)`, `ln(1 + sessions)` and conversion, scaled by
//!   `segment.scale`; zeros for a customer who never browsed.
//! - Browsing embedding: the embedder's vector (unit length), the zero vector for a
//!   customer who never browsed.
//!
//! Customers present in only one file are kept: the zeros above are exact statements ("no
//! orders", "no views"), and the coverage is reported (`store.customers`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ndarray::{Array2, Axis, s};
use sha2::{Digest, Sha256};

use crate::analysis::kpis::{
    self, BrowsingFacts, CustomerFacts, InterestKind, Interests, PurchaseFacts,
};
use crate::analysis::profile::profile_segments;
use crate::analysis::progress::Progress;
use crate::domain::BrowsingDocument;
use crate::embedding::local::{self, SavedLocalEmbedder};
use crate::embedding::{ConfiguredEmbedder, Embedder};
use crate::features::browsing::behaviour;
use crate::features::fit_scaler;
use crate::features::rfm::rfm;
use crate::ingest::store::{
    BrowsingLog, CustomerBrowsing, CustomerPurchases, SourceReport, TransactionLedger, read_events,
    read_transactions,
};
use crate::llm::ChatBackend;
use crate::narrative::figures::BaseKpis;
use crate::narrative::llm::NarrativeInput;
use crate::narrative::prompts::Population;
use crate::narrative::store_names::{BaseMedians, name_store_segments};
use crate::narrative::{self, CaveatFacts, SegmentText};
use crate::pipeline::PipelineError;
use crate::pipeline::engine::{self, Stages, Subject};
use crate::report::document::{
    CustomerCoverage, MatrixSummary, SCHEMA_VERSION, StoreRunSummary, StoreSummary,
};
use crate::report::{ReportError, SegmentsDocument, profiles, write_atomically};
use crate::settings::Settings;
use crate::store::{
    CollectionSpec, ConfiguredStore, CustomerPoint, Distance, StoreBackend, VectorSpec, VectorStore,
};

/// Named vector holding the browsing embedding.
pub const BROWSING_VECTOR: &str = "browsing";
/// Named vector holding the scaled RFM block.
pub const RFM_VECTOR: &str = "rfm";

/// A validated request to segment store data.
#[derive(Debug, Clone)]
pub struct StoreSegmentRequest {
    /// Transactions (Online Retail II layout), if any.
    pub transactions: Option<PathBuf>,
    /// Browsing events (REES46 layout), if any.
    pub events: Option<PathBuf>,
    /// Ignore data after this instant and measure recency from it.
    pub as_of: Option<DateTime<Utc>>,
    /// Known classes per customer id (the demo's planted personas), used only to check the
    /// segments.
    pub labels: Option<BTreeMap<String, String>>,
    /// Where the vector store keeps its files (the embedded engine) and the embedding cache.
    pub data_dir: PathBuf,
    /// Effective settings.
    pub settings: Settings,
    /// Output directory.
    pub out_dir: PathBuf,
}

/// Reads an `as_of` reference time as the command line and the API take it: a date (the
/// end of that day, UTC) or an RFC 3339 instant.
pub fn parse_as_of(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(23, 59, 59))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("'{text}' is not a date: use YYYY-MM-DD or an RFC 3339 instant"))
}

/// What a finished store run produced.
#[derive(Debug, Clone)]
pub struct StoreSegmentRun {
    /// The contents of `segments.json`.
    pub document: SegmentsDocument,
    /// Seconds per stage.
    pub timings: BTreeMap<String, f64>,
    /// Where the files are.
    pub out_dir: PathBuf,
}

/// The interpretable per-customer columns, profiled per segment in the report.
pub(crate) const PROFILE_COLUMNS: [&str; 6] = [
    "recency_days",
    "frequency",
    "monetary",
    "views",
    "sessions",
    "conversion",
];

/// One customer's ingested records.
pub(crate) struct Customer<'a> {
    pub(crate) id: &'a str,
    pub(crate) purchases: Option<&'a CustomerPurchases>,
    pub(crate) browsing: Option<&'a CustomerBrowsing>,
}

/// Runs the store pipeline; async parts (embedding API, Qdrant) run on `runtime`, which must
/// not be the caller's own runtime thread (call from a plain or `spawn_blocking` thread).
pub fn run_store_segment(
    request: &StoreSegmentRequest,
    runtime: &tokio::runtime::Handle,
    progress: &dyn Progress,
) -> Result<StoreSegmentRun, PipelineError> {
    let settings = &request.settings;
    let seed = settings.run.seed;
    let mut stages = Stages::new(progress);
    let mut warnings = Vec::new();
    let backend =
        ChatBackend::from_settings(&settings.llm, seed).map_err(PipelineError::ChatSettings)?;
    if request.transactions.is_none() && request.events.is_none() {
        return Err(PipelineError::Unsupported {
            file: "(none)".into(),
            message: "store data needs --transactions, --events or both".into(),
        });
    }

    let delimiter = settings.delimiter_byte();
    let ledger = match &request.transactions {
        Some(path) => {
            progress.start("reading transactions", 0);
            Some(stages.run("ingest_transactions", || {
                read_transactions(
                    path,
                    &settings.transactions,
                    delimiter,
                    request.as_of,
                    progress,
                )
            })?)
        }
        None => None,
    };
    let log = match &request.events {
        Some(path) => {
            progress.start("reading events", 0);
            Some(stages.run("ingest_events", || {
                read_events(path, &settings.events, delimiter, request.as_of, progress)
            })?)
        }
        None => None,
    };
    let source = source_name(ledger.as_ref(), log.as_ref());
    for report in ledger
        .iter()
        .map(|l| &l.report)
        .chain(log.iter().map(|l| &l.report))
    {
        if let Some(warning) = skipped_lines_warning(report) {
            warnings.push(warning);
        }
    }
    let reference = match request.as_of {
        Some(at) => at,
        None => {
            data_end(ledger.as_ref(), log.as_ref()).ok_or_else(|| PipelineError::Unsupported {
                file: source.clone(),
                message: "no usable rows: nothing to segment".into(),
            })?
        }
    };

    progress.start("building features", 0);
    let customers = join_customers(ledger.as_ref(), log.as_ref());
    let coverage = coverage(&customers);
    let window_days = observation_window_days(ledger.as_ref(), reference);
    let features = stages.run("features", || {
        CustomerFeatures::build(&customers, reference, window_days, settings)
    });
    let (facts, interests) = kpi_inputs(&customers, &features);
    let labels: Option<Vec<String>> = request.labels.as_ref().map(|truth| {
        customers
            .iter()
            .map(|c| truth.get(c.id).cloned().unwrap_or_else(|| "unknown".into()))
            .collect()
    });
    let ids: Vec<String> = customers.iter().map(|c| c.id.to_string()).collect();
    let top_categories: Vec<Vec<String>> = customers
        .iter()
        .map(|c| {
            c.browsing.map_or_else(Vec::new, |b| {
                profiles::top_categories(&b.categories, category_interest)
            })
        })
        .collect();
    let run_id = run_id(ledger.as_ref(), log.as_ref(), settings, request.as_of);
    // Everything later needs only what was derived above: free the per-customer ingest
    // state (hundreds of MB at 100,000 customers) before the memory-hungry maps run.
    drop(customers);
    let transactions_report = ledger.map(|l| l.report);
    let events_report = log.map(|l| l.report);

    progress.start("embedding browsing histories", 0);
    let started = std::time::Instant::now();
    let embedder = fit_embedder(settings, &features.documents, &request.data_dir, seed)?;
    let embeddings = match &embedder {
        Some(embedder) => runtime.block_on(embedder.embed(&features.documents, progress))?,
        None => Array2::zeros((features.documents.len(), 0)),
    };
    // Fitting the local embedder is part of embedding: time both as one stage.
    stages
        .timings
        .insert("embed".into(), started.elapsed().as_secs_f64());
    progress.finish();
    let info = embedder.as_ref().map(Embedder::describe);
    // Kept with the run so that questions about it (`segscope ask`) can embed a description
    // with the same model the customers were embedded with.
    let saved_embedder = match &embedder {
        Some(ConfiguredEmbedder::Local(e)) => Some(e.save()),
        _ => None,
    };

    progress.start("building the customer matrix", 0);
    let (x, scaler, matrix) = stages.run("matrix", || {
        customer_matrix(&features, &embeddings, settings)
    });

    progress.start("storing customers", 0);
    let collection = CollectionSpec {
        name: settings.store.collection.clone(),
        vectors: embedder
            .as_ref()
            .map(|e| VectorSpec {
                name: BROWSING_VECTOR.into(),
                dimensions: e.dimensions(),
                distance: Distance::Cosine,
            })
            .into_iter()
            .chain([VectorSpec {
                name: RFM_VECTOR.into(),
                dimensions: 3,
                distance: Distance::Euclid,
            }])
            .collect(),
    };
    let store = runtime
        .block_on(ConfiguredStore::open(
            &settings.store,
            &request.data_dir,
            &collection,
        ))
        .map_err(PipelineError::from)?;
    let points = customer_points(&ids, &features, &embeddings, &x);
    stages.run("store", || runtime.block_on(store.upsert(&points)))?;

    let subject = Subject {
        x: x.view(),
        labels: &labels,
        label_column: labels.as_ref().map(|_| "planted persona"),
        source: &source,
    };
    let engine::Analysed {
        partition,
        fit,
        selection,
        stability,
        maps,
        quality,
        map_summaries,
        map_facts,
    } = engine::analyse(&subject, settings, &mut stages, &mut warnings)?;
    let k = partition.k();

    progress.start("business KPIs", 0);
    let business = stages.run("kpis", || {
        kpis::segment_kpis(&facts, &interests, &partition, x.view())
    });

    progress.start("writing the narrative", 0);
    let profiles = profile_segments(
        features.profile.view(),
        &PROFILE_COLUMNS.map(String::from),
        &partition,
    );
    let base = base_kpis(&facts);
    let n = ids.len();
    let (narration, model_record, run_caveats, segment_caveats) = stages.run("narrative", || {
        let sizes: Vec<usize> = profiles.iter().map(|p| p.size).collect();
        let shares: Vec<f64> = profiles.iter().map(|p| p.share).collect();
        let caveats = |names: &[SegmentText]| {
            narrative::caveats_for(&CaveatFacts {
                profiles: &profiles,
                names,
                silhouette: quality.silhouette,
                stability: stability.as_ref(),
                maps: &map_facts,
                noise: partition.noise_count(),
                n_customers: n,
                // Skipped lines are events and invoice lines, not customers: they are reported
                // per file and reason in the warnings and the store input summary instead.
                rows_dropped: 0,
                fit_sample: fit.sample().map(<[usize]>::len),
                thresholds: &settings.caveats,
            })
        };
        let builtin = name_store_segments(&business, &sizes, &shares, &base.medians);
        let (_, builtin_caveats) = caveats(&builtin);
        let catalogue = engine::figure_catalogue(
            &profiles,
            Some(&business),
            Some(&base),
            n,
            &partition,
            &quality,
            stability.as_ref(),
            &map_summaries,
        );
        let input = NarrativeInput {
            population: Population::StoreCustomers,
            catalogue: &catalogue,
            segments: engine::segment_briefs(
                &profiles,
                &builtin,
                &builtin_caveats,
                Some(&business),
            ),
        };
        let (narration, model_record) = engine::narrate(&backend, Some(runtime), &input, settings);
        // Caveats name segments: state them with the final names.
        let names: Vec<SegmentText> = narration.segments.iter().map(|s| s.text.clone()).collect();
        let (run_caveats, segment_caveats) = caveats(&names);
        (narration, model_record, run_caveats, segment_caveats)
    });

    let narrator = engine::narrator_of(&narration);
    let segments = engine::segment_entries(
        profiles,
        narration.segments,
        segment_caveats,
        business.into_iter().map(Some),
        stability.as_ref(),
    );
    let noise = engine::noise_summary(settings, &partition);
    let mut feature_names: Vec<String> = PROFILE_COLUMNS.map(String::from).to_vec();
    if let Some(info) = &info {
        feature_names.push(format!("browsing embedding ({} dims)", info.dimensions));
    }
    let document = SegmentsDocument {
        schema_version: SCHEMA_VERSION,
        k,
        method: settings.segment.method,
        seed,
        n_customers: n,
        features: feature_names,
        label_column: labels.as_ref().map(|_| "planted persona".to_string()),
        input: None,
        store: Some(StoreRunSummary {
            transactions: transactions_report.clone(),
            events: events_report.clone(),
            reference_time: reference.to_rfc3339(),
            reference: if request.as_of.is_some() {
                "as_of"
            } else {
                "end_of_data"
            },
            customers: coverage,
            embedder: info,
            matrix,
            store: StoreSummary {
                backend: match settings.store.backend {
                    StoreBackend::Edge => "edge",
                    StoreBackend::Server => "server",
                }
                .into(),
                collection: settings.store.collection.clone(),
                points_written: points.len(),
                run_id: run_id.clone(),
            },
        }),
        scaling: scaler,
        sampling: engine::sampling_summary(&fit, n),
        k_selection: selection,
        quality,
        maps: map_summaries,
        noise,
        segments,
        caveats: run_caveats,
        narrator,
        narrative: narration.record,
        settings: settings.clone(),
        warnings,
    };

    progress.start("writing the report", 0);
    stages.run("report", || {
        // Before segments.json, which marks the run complete: a listed run has its profiles.
        write_profiles(&request.out_dir, &ids, &features, top_categories)?;
        engine::write_outputs(
            &request.out_dir,
            &document,
            &ids,
            labels.as_deref(),
            &partition,
            &maps,
        )
    })?;
    write_saved_embedder(&request.out_dir, saved_embedder.as_ref())?;
    let segment_payload: Vec<(String, serde_json::Map<String, serde_json::Value>)> = ids
        .iter()
        .zip(partition.labels())
        .map(|(id, label)| {
            let mut runs = serde_json::Map::new();
            runs.insert(
                run_id.clone(),
                label.map_or(serde_json::Value::Null, |s| (s + 1).into()),
            );
            let mut payload = serde_json::Map::new();
            payload.insert("segments".into(), serde_json::Value::Object(runs));
            (id.clone(), payload)
        })
        .collect();
    stages.run("store_segments", || {
        runtime.block_on(store.set_payload(&segment_payload))
    })?;

    let mut inputs = BTreeMap::new();
    for report in transactions_report.iter().chain(&events_report) {
        inputs.insert(report.file.clone(), report.sha256.clone());
    }
    engine::write_run_record(
        &request.out_dir,
        "segment",
        inputs,
        &stages,
        settings,
        model_record,
    )?;
    Ok(StoreSegmentRun {
        document,
        timings: stages.timings,
        out_dir: request.out_dir.clone(),
    })
}

/// Writes the run's fitted local embedder beside `segments.json`, or removes a file left by
/// an earlier run in the same directory when this run has none (an OpenAI embedder, or
/// nobody browsed), so that a stale model is never paired with this run's vectors.
/// Writes `profiles.csv` (see [`profiles`]): what the dashboard shows for a customer.
fn write_profiles(
    out_dir: &Path,
    ids: &[String],
    features: &CustomerFeatures,
    top_categories: Vec<Vec<String>>,
) -> Result<(), ReportError> {
    std::fs::create_dir_all(out_dir).map_err(|source| ReportError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let rows: Vec<profiles::CustomerProfile> = top_categories
        .into_iter()
        .enumerate()
        .map(|(i, top_categories)| {
            let p = features.profile.row(i);
            profiles::CustomerProfile {
                rfm: features.rfm[i],
                views: p[3],
                sessions: p[4],
                conversion: p[5],
                top_categories,
            }
        })
        .collect();
    write_atomically(
        out_dir,
        "profiles.csv",
        &profiles::render_profiles(ids, &rows)?,
    )
}

fn write_saved_embedder(
    out_dir: &std::path::Path,
    saved: Option<&SavedLocalEmbedder>,
) -> Result<(), PipelineError> {
    let path = out_dir.join(local::SAVED_FILE);
    match saved {
        Some(saved) => {
            let bytes = serde_json::to_vec(saved).map_err(|e| ReportError::Serialize {
                what: local::SAVED_FILE,
                message: e.to_string(),
            })?;
            write_atomically(out_dir, local::SAVED_FILE, &bytes)?;
        }
        None => match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(ReportError::Io { path, source }.into()),
        },
    }
    Ok(())
}

/// "12 of 14,423 lines of transactions.csv.gz were skipped: duplicate row 8, ..." or nothing
/// when every line was used.
pub(crate) fn skipped_lines_warning(report: &SourceReport) -> Option<String> {
    let skipped: u64 = report.skipped.values().map(|s| s.count).sum();
    if skipped == 0 {
        return None;
    }
    let reasons: Vec<String> = report
        .skipped
        .iter()
        .map(|(reason, s)| format!("{} {}", reason.replace('_', " "), s.count))
        .collect();
    Some(format!(
        "{skipped} of {} lines of {} were skipped: {}.",
        report.rows_read,
        report.file,
        reasons.join(", ")
    ))
}

/// The inputs, named for messages.
fn source_name(ledger: Option<&TransactionLedger>, log: Option<&BrowsingLog>) -> String {
    let names: Vec<&str> = ledger
        .map(|l| l.report.file.as_str())
        .into_iter()
        .chain(log.map(|l| l.report.file.as_str()))
        .collect();
    names.join(" + ")
}

/// The last instant seen in either file.
fn data_end(
    ledger: Option<&TransactionLedger>,
    log: Option<&BrowsingLog>,
) -> Option<DateTime<Utc>> {
    ledger
        .and_then(|l| l.report.last_time)
        .into_iter()
        .chain(log.and_then(|l| l.report.last_time))
        .max()
}

/// Days from the first transaction to the reference: the recency of a customer who never
/// bought.
fn observation_window_days(ledger: Option<&TransactionLedger>, reference: DateTime<Utc>) -> f64 {
    ledger
        .and_then(|l| l.report.first_time)
        .map_or(0.0, |first| days_between(first, reference))
}

fn days_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_seconds().max(0) as f64 / 86_400.0
}

/// Every customer in either file, in id order.
pub(crate) fn join_customers<'a>(
    ledger: Option<&'a TransactionLedger>,
    log: Option<&'a BrowsingLog>,
) -> Vec<Customer<'a>> {
    let ids: BTreeSet<&str> = ledger
        .iter()
        .flat_map(|l| l.customers.keys())
        .chain(log.iter().flat_map(|l| l.customers.keys()))
        .map(String::as_str)
        .collect();
    ids.into_iter()
        .map(|id| Customer {
            id,
            purchases: ledger.and_then(|l| l.customers.get(id)),
            browsing: log.and_then(|l| l.customers.get(id)),
        })
        .collect()
}

fn coverage(customers: &[Customer<'_>]) -> CustomerCoverage {
    let bought = |c: &Customer<'_>| c.purchases.is_some_and(|p| p.last_purchase.is_some());
    CustomerCoverage {
        total: customers.len(),
        buyers: customers.iter().filter(|c| bought(c)).count(),
        browsers: customers.iter().filter(|c| c.browsing.is_some()).count(),
        both: customers
            .iter()
            .filter(|c| c.purchases.is_some() && c.browsing.is_some())
            .count(),
        transactions_only: customers
            .iter()
            .filter(|c| c.purchases.is_some() && c.browsing.is_none())
            .count(),
        events_only: customers
            .iter()
            .filter(|c| c.purchases.is_none() && c.browsing.is_some())
            .count(),
        only_cancellations: customers
            .iter()
            .filter(|c| c.purchases.is_some() && !bought(c))
            .count(),
    }
}

/// Per-customer values, rows in customer order.
pub(crate) struct CustomerFeatures {
    /// Raw RFM (recency days, frequency, monetary) when the customer bought.
    pub(crate) rfm: Vec<Option<[f64; 3]>>,
    /// RFM block before scaling: recency, ln(1+f), signed ln(1+|m|).
    pub(crate) rfm_block: Array2<f64>,
    /// Behaviour block before scaling: ln(1+views), ln(1+sessions), conversion.
    pub(crate) behaviour_block: Array2<f64>,
    /// Interpretable columns ([`PROFILE_COLUMNS`]) in their own units.
    pub(crate) profile: Array2<f64>,
    /// Each customer's browsing document (empty for non-browsers).
    pub(crate) documents: Vec<BrowsingDocument>,
}

fn signed_log1p(v: f64) -> f64 {
    v.signum() * v.abs().ln_1p()
}

impl CustomerFeatures {
    /// The features of `customers` at `reference`; `window_days` is the recency of a
    /// customer who never bought.
    pub(crate) fn build(
        customers: &[Customer<'_>],
        reference: DateTime<Utc>,
        window_days: f64,
        settings: &Settings,
    ) -> Self {
        let n = customers.len();
        let mut rfm_block = Array2::zeros((n, 3));
        let mut behaviour_block = Array2::zeros((n, 3));
        let mut profile = Array2::zeros((n, PROFILE_COLUMNS.len()));
        let mut rfms = Vec::with_capacity(n);
        let mut documents = Vec::with_capacity(n);
        for (i, c) in customers.iter().enumerate() {
            let r = c.purchases.and_then(|p| rfm(p, reference));
            let (recency, frequency, monetary) = match &r {
                Some(r) => (r.recency_days, r.frequency, r.monetary),
                None => (window_days, 0.0, 0.0),
            };
            rfms.push(r.map(|r| [r.recency_days, r.frequency, r.monetary]));
            rfm_block[[i, 0]] = recency;
            rfm_block[[i, 1]] = frequency.ln_1p();
            rfm_block[[i, 2]] = signed_log1p(monetary);
            let b = c.browsing.map(behaviour);
            let (views, sessions, conversion) = b
                .as_ref()
                .map_or((0.0, 0.0, 0.0), |b| (b.views, b.sessions, b.conversion));
            behaviour_block[[i, 0]] = views.ln_1p();
            behaviour_block[[i, 1]] = sessions.ln_1p();
            behaviour_block[[i, 2]] = conversion;
            let row = [recency, frequency, monetary, views, sessions, conversion];
            profile.row_mut(i).assign(&ndarray::ArrayView1::from(&row));
            documents.push(c.browsing.map_or_else(BrowsingDocument::default, |b| {
                b.document(reference, settings.events.recency_half_life_days)
            }));
        }
        CustomerFeatures {
            rfm: rfms,
            rfm_block,
            behaviour_block,
            profile,
            documents,
        }
    }
}

/// The factor that scales `block` to a total variance of `weight`, or `None` when it has
/// no variance at all (the block is then left as it is).
fn block_factor(block: ndarray::ArrayView2<f64>, weight: f64) -> Option<f64> {
    let total: f64 = block.axis_iter(Axis(1)).map(|col| col.var(0.0)).sum();
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    Some((weight / total).sqrt())
}

/// How customer features become rows of the clustering space: the scaler of the six tabular
/// columns and the factor of each block. Fitted once (on a run's customers, or on the fit
/// weeks of `segscope track`) and applied to any customers with the same columns, so that
/// later weeks land in the same space.
#[derive(Debug, Clone)]
pub(crate) struct MatrixModel {
    /// Scaler of the RFM and behaviour columns.
    pub(crate) scaler: crate::features::FittedScaler,
    /// Factor of the RFM, behaviour and embedding blocks (1 for a block without variance).
    factors: [f64; 3],
    /// Weights actually applied, as reported.
    pub(crate) summary: MatrixSummary,
}

impl MatrixModel {
    /// Fits the scaler and block weights on `features` and `embeddings` (same rows).
    pub(crate) fn fit(
        features: &CustomerFeatures,
        embeddings: &Array2<f32>,
        settings: &Settings,
    ) -> Self {
        let weights = &settings.customer_matrix;
        let tabular = Self::tabular(features);
        let scaler = fit_scaler(tabular.view(), settings.segment.scale);
        let tabular = scaler.transform(tabular.view());
        let embedded = embeddings.mapv(f64::from);
        let rfm = block_factor(tabular.slice(s![.., ..3]), weights.rfm_weight);
        let behaviour = block_factor(tabular.slice(s![.., 3..6]), weights.behaviour_weight);
        let d = embeddings.ncols();
        let browsing = if d > 0 {
            block_factor(embedded.view(), weights.browsing_weight)
        } else {
            None
        };
        let summary = MatrixSummary {
            rfm_weight: if rfm.is_some() {
                weights.rfm_weight
            } else {
                0.0
            },
            behaviour_weight: if behaviour.is_some() {
                weights.behaviour_weight
            } else {
                0.0
            },
            browsing_weight: if browsing.is_some() {
                weights.browsing_weight
            } else {
                0.0
            },
            columns: 6 + d,
        };
        MatrixModel {
            scaler,
            factors: [rfm, behaviour, browsing].map(|f| f.unwrap_or(1.0)),
            summary,
        }
    }

    fn tabular(features: &CustomerFeatures) -> Array2<f64> {
        let n = features.rfm_block.nrows();
        ndarray::concatenate(
            Axis(1),
            &[features.rfm_block.view(), features.behaviour_block.view()],
        )
        .unwrap_or_else(|_| Array2::zeros((n, 6)))
    }

    /// The rows of `features` and `embeddings` in the fitted space.
    pub(crate) fn apply(
        &self,
        features: &CustomerFeatures,
        embeddings: &Array2<f32>,
    ) -> Array2<f64> {
        let n = features.rfm_block.nrows();
        let tabular = self.scaler.transform(Self::tabular(features).view());
        let d = embeddings.ncols();
        let mut x = Array2::<f64>::zeros((n, 6 + d));
        x.slice_mut(s![.., ..6]).assign(&tabular);
        x.slice_mut(s![.., 6..]).assign(&embeddings.mapv(f64::from));
        let [rfm, behaviour, browsing] = self.factors;
        x.slice_mut(s![.., ..3]).mapv_inplace(|v| v * rfm);
        x.slice_mut(s![.., 3..6]).mapv_inplace(|v| v * behaviour);
        x.slice_mut(s![.., 6..]).mapv_inplace(|v| v * browsing);
        x
    }

    /// The factor of the embedding block: how long a unit browsing vector is in the space.
    pub(crate) fn browsing_factor(&self) -> f64 {
        self.factors[2]
    }
}

fn customer_matrix(
    features: &CustomerFeatures,
    embeddings: &Array2<f32>,
    settings: &Settings,
) -> (Array2<f64>, crate::features::FittedScaler, MatrixSummary) {
    let model = MatrixModel::fit(features, embeddings, settings);
    let x = model.apply(features, embeddings);
    (x, model.scaler, model.summary)
}

/// Fits the configured embedder on the customers who browsed; `None` when nobody did (no
/// events file, or no usable events): there is nothing to embed, and the local embedder
/// would have no vocabulary to learn. A relative embedding cache folder is taken under
/// `cache_base`. Segment runs and `segscope track` fit their embedders here.
pub(crate) fn fit_embedder(
    settings: &Settings,
    documents: &[BrowsingDocument],
    cache_base: &Path,
    seed: u64,
) -> Result<Option<ConfiguredEmbedder>, PipelineError> {
    let browsing: Vec<BrowsingDocument> = documents
        .iter()
        .filter(|d| !d.is_empty())
        .cloned()
        .collect();
    if browsing.is_empty() {
        return Ok(None);
    }
    let mut embedding_settings = settings.embedding.clone();
    let cache = &mut embedding_settings.openai.cache_dir;
    if !cache.is_empty() && PathBuf::from(&*cache).is_relative() {
        *cache = cache_base.join(&*cache).display().to_string();
    }
    Ok(Some(ConfiguredEmbedder::build(
        &embedding_settings,
        &browsing,
        seed,
    )?))
}

/// One Qdrant point per customer: the browsing embedding (browsers only), the weighted RFM
/// block, and the customer's figures as payload.
fn customer_points(
    ids: &[String],
    features: &CustomerFeatures,
    embeddings: &Array2<f32>,
    x: &Array2<f64>,
) -> Vec<CustomerPoint> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let mut vectors = BTreeMap::new();
            if !features.documents[i].is_empty() {
                vectors.insert(BROWSING_VECTOR.to_string(), embeddings.row(i).to_vec());
            }
            vectors.insert(
                RFM_VECTOR.to_string(),
                x.slice(s![i, ..3]).iter().map(|&v| v as f32).collect(),
            );
            let mut payload = serde_json::Map::new();
            payload.insert("customer_id".into(), id.clone().into());
            let rfm = features.rfm[i].map_or(
                serde_json::Value::Null,
                |[r, f, m]| serde_json::json!({"recency_days": r, "frequency": f, "monetary": m}),
            );
            payload.insert("rfm".into(), rfm);
            let p = features.profile.row(i);
            payload.insert(
                "browsing".into(),
                serde_json::json!({"views": p[3], "sessions": p[4], "conversion": p[5]}),
            );
            CustomerPoint {
                customer_id: id.clone(),
                vectors,
                payload,
            }
        })
        .collect()
}

/// Category interests are the first two levels of the category path: `appliances.kitchen`
/// says what a segment shops for; the full path splits it into too many small groups.
pub(crate) fn category_interest(category: &str) -> String {
    category.split('.').take(2).collect::<Vec<_>>().join(".")
}

fn kpi_inputs(
    customers: &[Customer<'_>],
    features: &CustomerFeatures,
) -> (Vec<CustomerFacts>, Interests) {
    let mut index: BTreeMap<(u8, String), u32> = BTreeMap::new();
    let mut interests = Interests::default();
    let mut id_of = |kind: InterestKind, name: String| -> u32 {
        let key = (kind as u8, name.clone());
        *index.entry(key).or_insert_with(|| {
            interests.names.push((kind, name));
            (interests.names.len() - 1) as u32
        })
    };
    let facts = customers
        .iter()
        .enumerate()
        .map(|(i, c)| CustomerFacts {
            purchases: features.rfm[i].map(|[r, f, m]| PurchaseFacts {
                recency_days: r,
                invoices: f,
                net_revenue: m,
            }),
            browsing: c.browsing.map(|b| {
                let mut touched: Vec<u32> = Vec::new();
                for category in b.categories.keys() {
                    touched.push(id_of(InterestKind::Category, category_interest(category)));
                }
                for brand in b.brands.keys() {
                    touched.push(id_of(InterestKind::Brand, brand.clone()));
                }
                touched.sort_unstable();
                touched.dedup();
                BrowsingFacts {
                    views: f64::from(b.views),
                    purchases: f64::from(b.purchases),
                    interests: touched,
                }
            }),
        })
        .collect();
    (facts, interests)
}

/// The whole base's figures segments are named against: medians over buyers (the built-in
/// narrator's reference), the share who bought and the conversion of all views.
fn base_kpis(facts: &[CustomerFacts]) -> BaseKpis {
    let median = |values: Vec<f64>| kpis::summarize(values).map(|s| s.median);
    let buys: Vec<PurchaseFacts> = facts.iter().filter_map(|f| f.purchases).collect();
    let (views, purchases) = facts
        .iter()
        .filter_map(|f| f.browsing.as_ref())
        .fold((0.0, 0.0), |(v, p), b| (v + b.views, p + b.purchases));
    BaseKpis {
        medians: BaseMedians {
            recency_days: median(buys.iter().map(|p| p.recency_days).collect()),
            frequency: median(buys.iter().map(|p| p.invoices).collect()),
            monetary: median(buys.iter().map(|p| p.net_revenue).collect()),
        },
        buyer_share: (!facts.is_empty()).then(|| buys.len() as f64 / facts.len() as f64),
        conversion_rate: (views > 0.0).then(|| purchases / views),
    }
}

/// A run id that depends only on what determines the run (input digests, as-of, settings),
/// so re-running the same data overwrites its own segment payload instead of piling up.
fn run_id(
    ledger: Option<&TransactionLedger>,
    log: Option<&BrowsingLog>,
    settings: &Settings,
    as_of: Option<DateTime<Utc>>,
) -> String {
    let mut hasher = Sha256::new();
    for report in ledger
        .map(|l| &l.report)
        .into_iter()
        .chain(log.map(|l| &l.report))
    {
        hasher.update(report.sha256.as_bytes());
    }
    hasher.update(as_of.map(|a| a.to_rfc3339()).unwrap_or_default().as_bytes());
    hasher.update(serde_json::to_vec(settings).unwrap_or_default());
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("run-{hex}")
}
