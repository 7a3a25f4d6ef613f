//! The weekly use case: ingest once → week states → anomalies → fit (embedder, matrix,
//! k-means, PCA) on the fit weeks → every week placed → movement → files.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;

use ndarray::{Array2, ArrayView1, Axis};
use serde_json::json;

use super::document::{
    Alert, AlertKind, FeaturePsi, Flow, MOVEMENT_SCHEMA_VERSION, MovementDocument, NamedValue,
    PsiLevel, PsiReport, Refit, RefitMatch, SegmentCount, SegmentInfo, SegmentShare, SharePsi,
    SplitMerge, Transition, WeekShares,
};
use super::emerging::{self, EmergingWeek};
use super::narrate::narrate_weeks;
use super::state::{WeekState, WeeklyAggregates, select, stack, week_states};
use super::stats::{binomial_z, ks_two_sample, median, median_mad, psi, psi_of_samples, quantile};
use super::weeks::{IsoWeek, WeekRange};
use super::{TrackError, TrackRequest, TrackSettings};
use crate::analysis::clustering::{self, ClusterSpec, KChoice, SegmentModel};
use crate::analysis::knn::{KnnIndex, knn_graph};
use crate::analysis::maps::pca::{PcaModel, fit_pca};
use crate::analysis::maps::tsne::{TransformParams, TsneMap, fit_tsne};
use crate::analysis::maps::umap::{UmapModel, fit_umap};
use crate::analysis::progress::{NoProgress, Progress};
use crate::domain::{BrowsingDocument, MapMethod, Method};
use crate::embedding::{ConfiguredEmbedder, Embedder};
use crate::ingest::store::{
    CustomerBrowsing, CustomerPurchases, SourceReport, StoreIngestError, read_events_by,
    read_transactions_by,
};
use crate::llm::ChatBackend;
use crate::pipeline::PipelineError;
use crate::pipeline::engine::{Stages, write_run_record};
use crate::pipeline::fit_sample::FitSet;
use crate::pipeline::store_segment::{
    MatrixModel, PROFILE_COLUMNS, fit_embedder, skipped_lines_warning,
};
use crate::report::{ReportError, write_atomically};
use crate::settings::KSetting;

/// The drift features: what a customer did in the trailing window.
const DRIFT_FEATURES: [&str; 5] = ["views", "sessions", "conversion", "orders", "revenue"];

/// What a finished tracking run produced.
#[derive(Debug, Clone)]
pub struct TrackRun {
    /// The contents of `movement.json`.
    pub document: MovementDocument,
    /// Seconds per stage.
    pub timings: BTreeMap<String, f64>,
    /// Where the files are.
    pub out_dir: PathBuf,
}

/// One week placed into the fitted model.
struct Placed {
    /// Segment index per customer; `None` for anomalies.
    segment: Vec<Option<usize>>,
    /// Fit distance per customer; `None` for anomalies.
    distance: Vec<Option<f64>>,
    /// Bot-like customers.
    anomaly: Vec<bool>,
    /// PCA coordinates (rows as customers), when the map could be fitted.
    pca: Option<Array2<f64>>,
    /// UMAP coordinates (transform into the fit weeks' map), when `--maps` asked for it.
    umap: Option<Array2<f64>>,
    /// t-SNE coordinates (openTSNE transform into the fit weeks' map), when asked for.
    tsne: Option<Array2<f64>>,
}

/// Several files of one kind read into one set of weekly buckets, with each file's report.
struct Several<T> {
    /// One report per file, in the request's order.
    reports: Vec<SourceReport>,
    /// Per week, per customer: the files' rows combined.
    buckets: BTreeMap<IsoWeek, BTreeMap<String, T>>,
}

impl<T> Several<T> {
    /// The earliest row used in any of the files.
    fn first_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.reports.iter().filter_map(|r| r.first_time).min()
    }
}

/// Reads every file with `read_one` (the single-file ingest, so errors keep naming the file
/// and line) and combines a customer's rows of one week found in two files with `merge`:
/// what the ingest does for two time buckets. Duplicate rows are detected within a file,
/// not across files; a watched folder holds one file per week, and a duplicate shares its
/// time, hence its week, hence its file.
fn read_several<T>(
    paths: &[PathBuf],
    merge: fn(&mut T, &T),
    read_one: impl Fn(
        &std::path::Path,
    ) -> Result<
        (SourceReport, BTreeMap<IsoWeek, BTreeMap<String, T>>),
        StoreIngestError,
    >,
) -> Result<Several<T>, StoreIngestError> {
    let mut several = Several {
        reports: Vec::with_capacity(paths.len()),
        buckets: BTreeMap::new(),
    };
    for path in paths {
        let (report, buckets) = read_one(path)?;
        several.reports.push(report);
        for (week, customers) in buckets {
            let into = several.buckets.entry(week).or_default();
            if into.is_empty() {
                *into = customers;
                continue;
            }
            for (id, value) in customers {
                match into.get_mut(&id) {
                    Some(existing) => merge(existing, &value),
                    None => {
                        into.insert(id, value);
                    }
                }
            }
        }
    }
    Ok(several)
}

/// Runs `segscope track`; async parts (an embedding API) run on `runtime`, which must not be
/// the caller's own runtime thread.
pub fn run_track(
    request: &TrackRequest,
    runtime: &tokio::runtime::Handle,
    progress: &dyn Progress,
) -> Result<TrackRun, TrackError> {
    let settings = &request.settings;
    let track = &settings.track;
    let seed = settings.run.seed;
    // Settings problems surface before any file is read.
    let backend =
        ChatBackend::from_settings(&settings.llm, seed).map_err(PipelineError::ChatSettings)?;
    let mut stages = Stages::new(progress);
    if request.transactions.is_empty() && request.events.is_empty() {
        return Err(PipelineError::Unsupported {
            file: "(none)".into(),
            message: "track needs --transactions, --events or both".into(),
        }
        .into());
    }
    let as_of = request.weeks.map(|r| r.last.end());
    let delimiter = settings.delimiter_byte();
    let purchases = if request.transactions.is_empty() {
        None
    } else {
        progress.start("reading transactions", 0);
        Some(
            stages
                .run("ingest_transactions", || {
                    read_several(&request.transactions, CustomerPurchases::merge, |path| {
                        read_transactions_by(
                            path,
                            &settings.transactions,
                            delimiter,
                            as_of,
                            IsoWeek::of,
                            progress,
                        )
                        .map(|r| (r.report, r.buckets))
                    })
                })
                .map_err(PipelineError::from)?,
        )
    };
    let browsing = if request.events.is_empty() {
        None
    } else {
        progress.start("reading events", 0);
        Some(
            stages
                .run("ingest_events", || {
                    read_several(&request.events, CustomerBrowsing::merge, |path| {
                        read_events_by(
                            path,
                            &settings.events,
                            delimiter,
                            as_of,
                            IsoWeek::of,
                            progress,
                        )
                        .map(|r| (r.report, r.buckets))
                    })
                })
                .map_err(PipelineError::from)?,
        )
    };
    let reports: Vec<&SourceReport> = purchases
        .iter()
        .flat_map(|p| &p.reports)
        .chain(browsing.iter().flat_map(|b| &b.reports))
        .collect();
    let source: String = reports
        .iter()
        .map(|r| r.file.as_str())
        .collect::<Vec<_>>()
        .join(" + ");
    let mut notes: Vec<String> = reports
        .iter()
        .filter_map(|r| skipped_lines_warning(r))
        .collect();
    let first_time = reports.iter().filter_map(|r| r.first_time).min();
    let last_time = reports.iter().filter_map(|r| r.last_time).max();
    let (Some(first_time), Some(last_time)) = (first_time, last_time) else {
        if let Some(range) = request.weeks {
            return Err(TrackError::Weeks {
                requested: format!("{}..{}", range.first, range.last),
                message: "outside the data: no usable rows in or before these weeks".into(),
            });
        }
        return Err(PipelineError::Unsupported {
            file: source,
            message: "no usable rows: nothing to track".into(),
        }
        .into());
    };
    let data_first = IsoWeek::of(first_time);
    let data_last = IsoWeek::of(last_time);
    // Weeks are counted from the first browsing event (the first row without browsing);
    // the first week whose trailing browsing window lies wholly in the data is `complete`:
    // before it the window is still filling, and its growing totals would read as drift.
    let browsing_start = browsing
        .as_ref()
        .and_then(Several::first_time)
        .map(IsoWeek::of);
    let start = browsing_start.unwrap_or_else(|| IsoWeek::of(first_time));
    let complete = window_complete(start, track.browsing_window_weeks);
    let range = match request.weeks {
        Some(range) => {
            if range.first < data_first || range.last > data_last {
                return Err(TrackError::Weeks {
                    requested: format!("{}..{}", range.first, range.last),
                    message: format!(
                        "outside the data, which covers {data_first}..{data_last} (up to the range's end)"
                    ),
                });
            }
            range
        }
        None => {
            // Data too short to start at `complete` keeps every week (the note below says so).
            let enough = WeekRange {
                first: complete,
                last: data_last,
            }
            .weeks()
            .len()
                > track.fit_weeks;
            WeekRange {
                first: if enough { complete } else { start },
                last: data_last,
            }
        }
    };
    if browsing_start.is_some() && range.first < complete {
        notes.push(format!(
            "Weeks before {complete} see only part of the {}-week browsing window (browsing starts in {start}); their browsing totals grow as the window fills, so drift there measures the window, not behaviour.",
            track.browsing_window_weeks
        ));
    }
    let weeks = range.weeks();
    if weeks.len() <= track.fit_weeks {
        return Err(TrackError::TooFewWeeks {
            fit_weeks: track.fit_weeks,
            weeks: weeks.len(),
        });
    }
    let first_transaction = purchases.as_ref().and_then(Several::first_time);
    let mut inputs = BTreeMap::new();
    for r in &reports {
        inputs.insert(r.file.clone(), r.sha256.clone());
    }
    let aggregates = WeeklyAggregates {
        purchases: purchases.map(|p| p.buckets).unwrap_or_default(),
        browsing: browsing.map(|b| b.buckets).unwrap_or_default(),
        first_transaction,
    };

    progress.start("building weekly states", 0);
    let states = stages.run("features", || {
        week_states(&aggregates, &weeks, track.browsing_window_weeks, settings)
    });
    drop(aggregates);
    let anomalies: Vec<(Vec<bool>, serde_json::Value)> =
        states.iter().map(|s| bot_flags(s, track)).collect();

    // The fit: every fit week's customers that are not anomalies, stacked.
    let fit_rows: Vec<Vec<usize>> = (0..track.fit_weeks)
        .map(|w| {
            (0..states[w].ids.len())
                .filter(|&i| !anomalies[w].0[i])
                .collect()
        })
        .collect();
    let fit_parts: Vec<_> = fit_rows
        .iter()
        .enumerate()
        .map(|(w, rows)| select(&states[w].features, rows))
        .collect();
    let fit_features = stack(&fit_parts);
    drop(fit_parts);
    if fit_features.rfm_block.nrows() < 3 {
        return Err(PipelineError::Unsupported {
            file: source,
            message: format!(
                "only {} customers in the fit weeks; tracking needs at least 3",
                fit_features.rfm_block.nrows()
            ),
        }
        .into());
    }

    progress.start("embedding browsing histories", 0);
    let started = std::time::Instant::now();
    let embedder = fit_embedder(settings, &fit_features.documents, &request.out_dir, seed)?;
    let vocabulary: Option<HashSet<(&'static str, String)>> = match &embedder {
        Some(ConfiguredEmbedder::Local(e)) => Some(
            e.vocabulary()
                .into_iter()
                .map(|(k, v)| (k.key(), v.to_string()))
                .collect(),
        ),
        _ => None,
    };
    let mut embeddings: Vec<(Array2<f32>, Vec<f64>)> = Vec::with_capacity(states.len());
    for state in &states {
        let mut e = match &embedder {
            Some(embedder) => runtime
                .block_on(embedder.embed(&state.features.documents, progress))
                .map_err(PipelineError::from)?,
            None => Array2::zeros((state.ids.len(), 0)),
        };
        let unseen: Vec<f64> = state
            .features
            .documents
            .iter()
            .map(|d| unseen_share(d, vocabulary.as_ref()))
            .collect();
        for (mut row, u) in e.axis_iter_mut(Axis(0)).zip(&unseen) {
            let keep = (1.0 - u * u).max(0.0).sqrt() as f32;
            row.mapv_inplace(|v| v * keep);
        }
        embeddings.push((e, unseen));
    }
    stages
        .timings
        .insert("embed".into(), started.elapsed().as_secs_f64());
    progress.finish();

    progress.start("fitting segments", 0);
    let fit_embeddings = {
        let views: Vec<Array2<f32>> = fit_rows
            .iter()
            .enumerate()
            .map(|(w, rows)| embeddings[w].0.select(Axis(0), rows))
            .collect();
        let views: Vec<_> = views.iter().map(|v| v.view()).collect();
        ndarray::concatenate(Axis(0), &views).unwrap_or_else(|_| Array2::zeros((0, 0)))
    };
    let matrix = MatrixModel::fit(&fit_features, &fit_embeddings, settings);
    let x_fit = matrix.apply(&fit_features, &fit_embeddings);
    let n_fit = x_fit.nrows();
    if let KSetting::Fixed(k) = settings.segment.k
        && k >= n_fit
    {
        return Err(PipelineError::Unsupported {
            file: source,
            message: format!("{k} segments asked for, but the fit weeks have {n_fit} customers"),
        }
        .into());
    }
    let spec = ClusterSpec {
        method: Method::Kmeans,
        k: match settings.segment.k {
            KSetting::Auto => KChoice::Auto {
                min: settings.segment.k_min,
                max: settings
                    .segment
                    .k_max
                    .min(n_fit - 1)
                    .max(settings.segment.k_min),
            },
            KSetting::Fixed(k) => KChoice::Fixed(k),
        },
        kmeans: settings.kmeans.clone(),
        gmm: settings.gmm.clone(),
        hdbscan: settings.hdbscan.clone(),
    };
    let sample = FitSet::choose(n_fit, &settings.sampling, seed);
    let clustering = stages
        .run("cluster", || {
            clustering::segment(sample.select(x_fit.view()).view(), &spec, seed, progress)
        })
        .map_err(PipelineError::from)?;
    let SegmentModel::Centroids(centroids) = clustering.model else {
        return Err(PipelineError::Unsupported {
            file: source,
            message: "k-means returned no centroids".into(),
        }
        .into());
    };
    let k = centroids.nrows();
    let pca = fit_pca(x_fit.view(), 2).ok();
    if pca.is_none() {
        notes.push("The PCA map could not be fitted (too few features); no coordinates.".into());
    }
    let browsing_factor = matrix.browsing_factor();
    let map_failed = |message: String| PipelineError::Map {
        map: "umap",
        message,
    };
    let umap: Option<(UmapModel, KnnIndex, usize)> = if request.maps.contains(&MapMethod::Umap) {
        progress.start("UMAP of the fit weeks", 0);
        let params = settings
            .umap
            .params(n_fit)
            .validate()
            .map_err(|e| map_failed(e.to_string()))?;
        let n_neighbors = params.params().n_neighbors;
        let knn = knn_graph(x_fit.view(), n_neighbors - 1, seed, progress)
            .map_err(|e| map_failed(e.to_string()))?;
        let model = stages
            .run("umap", || {
                fit_umap(x_fit.view(), &knn, &params, seed, progress)
            })
            .map_err(|e| map_failed(e.to_string()))?;
        let index =
            KnnIndex::new(x_fit.view(), &knn, seed).map_err(|e| map_failed(e.to_string()))?;
        Some((model, index, n_neighbors))
    } else {
        None
    };
    let tsne_failed = |message: String| PipelineError::Map {
        map: "tsne",
        message,
    };
    // t-SNE is fitted on the fit weeks like UMAP; every week is placed by its transform,
    // which finds each point's neighbours among the fit weeks' customer-weeks (UMAP's index
    // when there is one: any kNN graph of the same reference serves the search).
    let tsne: Option<(TsneMap, Option<KnnIndex>, TransformParams, usize)> =
        if request.maps.contains(&MapMethod::Tsne) {
            progress.start("t-SNE of the fit weeks", 0);
            let params = settings.tsne.params();
            let map = stages
                .run("tsne", || fit_tsne(x_fit.view(), &params, seed, progress))
                .map_err(|e| tsne_failed(e.to_string()))?;
            let transform = TransformParams::default();
            let k = transform.neighbours().clamp(1, n_fit - 1);
            let own_index = match &umap {
                Some(_) => None,
                None => {
                    let knn = knn_graph(x_fit.view(), k, seed, progress)
                        .map_err(|e| tsne_failed(e.to_string()))?;
                    Some(
                        KnnIndex::new(x_fit.view(), &knn, seed)
                            .map_err(|e| tsne_failed(e.to_string()))?,
                    )
                }
            };
            notes.push(format!(
                "The t-SNE map was fitted on the fit weeks' {n_fit} customer-weeks (perplexity \
                 {:.0}) and every week placed into it by its transform, so a customer whose \
                 features did not change stays where they were; gaps between t-SNE groups are \
                 not distances.",
                map.perplexity
            ));
            Some((map, own_index, transform, k))
        } else {
            None
        };

    progress.start("placing weeks", states.len() as u64);
    let mut models = Models {
        centroids,
        ids: (0..k).collect(),
        reference: vec![Vec::new(); k],
        reference_total: vec![0; k],
        since: vec![track.fit_weeks - 1; k],
        next_id: k,
    };
    let mut refits: Vec<Refit> = Vec::new();
    let umap_index = umap.as_ref().map(|(_, index, _)| index);
    let placed: Vec<Placed> = stages.run("assign", || -> Result<Vec<Placed>, PipelineError> {
        let mut placed: Vec<Placed> = Vec::with_capacity(states.len());
        for (w, ((state, (e, unseen)), (flags, _))) in
            states.iter().zip(&embeddings).zip(&anomalies).enumerate()
        {
            let x = matrix.apply(&state.features, e);
            let mut segment = Vec::with_capacity(x.nrows());
            let mut distance = Vec::with_capacity(x.nrows());
            for (i, row) in x.axis_iter(Axis(0)).enumerate() {
                if flags[i] {
                    segment.push(None);
                    distance.push(None);
                    continue;
                }
                let (j, d2) = nearest(&models.centroids, row);
                let residual = unseen[i] * browsing_factor;
                segment.push(Some(models.ids[j]));
                distance.push(Some((d2 + residual * residual).sqrt()));
                if w < track.fit_weeks {
                    models.reference[models.ids[j]].push((w, i));
                }
            }
            let pca = pca.as_ref().map(|p: &PcaModel| p.transform(x.view()));
            let umap = match &umap {
                Some((model, index, n_neighbors)) => {
                    let neighbours = index
                        .query(x.view(), *n_neighbors)
                        .map_err(|e| map_failed(e.to_string()))?;
                    Some(
                        model
                            .transform(x.view(), &neighbours, seed)
                            .map_err(|e| map_failed(e.to_string()))?,
                    )
                }
                None => None,
            };
            let tsne = match &tsne {
                Some((map, own_index, transform, k)) => {
                    let Some(index) = own_index.as_ref().or(umap_index) else {
                        return Err(tsne_failed("no neighbour index for t-SNE".into()));
                    };
                    let neighbours = index
                        .query(x.view(), *k)
                        .map_err(|e| tsne_failed(e.to_string()))?;
                    Some(
                        map.transform(&neighbours, transform, &NoProgress)
                            .map_err(|e| tsne_failed(e.to_string()))?,
                    )
                }
                None => None,
            };
            progress.advance(1);
            placed.push(Placed {
                segment,
                distance,
                anomaly: flags.clone(),
                pca,
                umap,
                tsne,
            });
            if w + 1 == track.fit_weeks {
                let total: usize = models.reference.iter().map(Vec::len).sum();
                models.reference_total = vec![total; k];
            }
            let every = track.refit_every;
            if every > 0
                && w + 1 >= track.fit_weeks + every
                && (w + 1 - track.fit_weeks).is_multiple_of(every)
                && w + 1 < states.len()
            {
                let window: Vec<usize> = (w + 1 - track.fit_weeks..=w).collect();
                let xs: Vec<Array2<f64>> = window
                    .iter()
                    .map(|&ww| matrix.apply(&states[ww].features, &embeddings[ww].0))
                    .collect();
                refits.push(refit(
                    &mut models,
                    &window,
                    &xs,
                    &placed,
                    &weeks,
                    &spec,
                    seed ^ (w as u64 + 1),
                    progress,
                )?);
            }
        }
        Ok(placed)
    })?;
    drop(embeddings);

    progress.start("measuring movement", 0);
    let document = stages.run("movement", || {
        movement(
            &states,
            &placed,
            &anomalies,
            &models,
            refits,
            &weeks,
            settings.track.clone(),
            seed,
            notes,
        )
    });

    // The weekly summaries: the built-in ones, or a configured model's where they pass the
    // same grounding (see the narrate module); never a reason for the run to fail.
    let mut document = document;
    let narration = stages.run("narrative", || {
        runtime.block_on(narrate_weeks(&backend, &document, &settings.narrative))
    });
    document.summaries = narration.summaries;
    document.narrative = narration.record;

    progress.start("writing files", 0);
    stages.run("write", || {
        write_files(request, &document, &states, &placed)
    })?;
    write_run_record(
        &request.out_dir,
        "track",
        inputs,
        &stages,
        settings,
        narration.model,
    )
    .map_err(PipelineError::from)?;
    Ok(TrackRun {
        document,
        timings: stages.timings,
        out_dir: request.out_dir.clone(),
    })
}

/// The first week whose trailing `window`-week browsing window starts at or after `start`.
fn window_complete(start: IsoWeek, window: u32) -> IsoWeek {
    (1..window).fold(start, |week, _| week.next())
}

/// Share of a document's weight (L2 of `ln(1 + w)`) on terms the fitted embedder does not
/// know; 0 without a vocabulary (an API embedder knows every term) or without terms.
fn unseen_share(
    doc: &BrowsingDocument,
    vocabulary: Option<&HashSet<(&'static str, String)>>,
) -> f64 {
    let Some(vocabulary) = vocabulary else {
        return 0.0;
    };
    let (mut all, mut unseen) = (0.0, 0.0);
    for t in doc.terms() {
        let w = t.weight.ln_1p();
        all += w * w;
        if !vocabulary.contains(&(t.kind.key(), t.value.clone())) {
            unseen += w * w;
        }
    }
    if all > 0.0 {
        (unseen / all).sqrt()
    } else {
        0.0
    }
}

/// Nearest centroid and the squared distance to it (ties to the smaller id).
fn nearest(centroids: &Array2<f64>, row: ArrayView1<f64>) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (j, c) in centroids.axis_iter(Axis(0)).enumerate() {
        let d: f64 = c
            .iter()
            .zip(row.iter())
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        if d < best.1 {
            best = (j, d);
        }
    }
    best
}

/// Bot-like customers of a week and the thresholds that found them.
fn bot_flags(state: &WeekState, s: &TrackSettings) -> (Vec<bool>, serde_json::Value) {
    let per_session = |a: &super::state::WindowActivity| (a.views / a.sessions.max(1.0)).ln();
    let browsers: Vec<&super::state::WindowActivity> =
        state.activity.iter().filter(|a| a.views > 0.0).collect();
    let a: Vec<f64> = browsers.iter().map(|x| per_session(x)).collect();
    let b: Vec<f64> = browsers.iter().map(|x| x.views.ln_1p()).collect();
    let (ma, sa) = median_mad(&a);
    let (mb, sb) = median_mad(&b);
    // A spread of zero (everyone alike) must not make every difference infinite.
    let (sa, sb) = (sa.max(0.1), sb.max(0.1));
    let flags = state
        .activity
        .iter()
        .map(|x| {
            x.views > 0.0
                && x.carts == 0.0
                && x.purchases == 0.0
                && x.views >= s.anomaly_min_views
                && ((per_session(x) - ma) / sa >= s.anomaly_mad_threshold
                    || (x.views.ln_1p() - mb) / sb >= s.anomaly_mad_threshold)
        })
        .collect();
    let rule = json!({
        "ln_views_per_session": {"median": ma, "scaled_mad": sa},
        "ln_1p_views": {"median": mb, "scaled_mad": sb},
        "robust_z_threshold": s.anomaly_mad_threshold,
        "min_views": s.anomaly_min_views,
        "requires": "no carts and no purchases in the window",
    });
    (flags, rule)
}

fn drift_values(state: &WeekState, i: usize) -> [f64; 5] {
    let a = &state.activity[i];
    let conversion = if a.views > 0.0 {
        a.purchases / a.views
    } else {
        0.0
    };
    [a.views, a.sessions, conversion, a.orders, a.revenue]
}

#[allow(
    clippy::too_many_arguments,
    reason = "one caller; the run's pieces travel explicitly"
)]
fn movement(
    states: &[WeekState],
    placed: &[Placed],
    anomalies: &[(Vec<bool>, serde_json::Value)],
    models: &Models,
    refits: Vec<Refit>,
    weeks: &[IsoWeek],
    track: TrackSettings,
    seed: u64,
    mut notes: Vec<String>,
) -> MovementDocument {
    let fit_weeks = track.fit_weeks;
    // Every segment id ever made (refits add ids); each is judged against the customers it was
    // fitted on: the fit weeks, or the refit window that made it.
    let k = models.next_id;
    let fit_members = &models.reference;
    let fit_drift: Vec<Vec<Vec<f64>>> = fit_members
        .iter()
        .map(|rows| {
            (0..DRIFT_FEATURES.len())
                .map(|f| {
                    rows.iter()
                        .map(|&(w, i)| drift_values(&states[w], i)[f])
                        .collect()
                })
                .collect()
        })
        .collect();
    let fit_distances: Vec<f64> = (0..fit_weeks)
        .flat_map(|w| placed[w].distance.iter().flatten().copied())
        .collect();
    let fit_total: usize = (0..fit_weeks)
        .map(|w| placed[w].segment.iter().flatten().count())
        .sum();
    let fit_share =
        |s: usize| fit_members[s].len() as f64 / models.reference_total[s].max(1) as f64;
    let segments: Vec<SegmentInfo> = (0..k)
        .map(|s| SegmentInfo {
            id: s + 1,
            fit_size: fit_members[s].len(),
            fit_share: fit_share(s),
            medians: PROFILE_COLUMNS
                .iter()
                .enumerate()
                .map(|(c, name)| {
                    let values: Vec<f64> = fit_members[s]
                        .iter()
                        .map(|&(w, i)| states[w].features.profile[[i, c]])
                        .collect();
                    NamedValue {
                        name: (*name).to_string(),
                        value: median(&values),
                    }
                })
                .collect(),
            since: weeks[models.since[s]],
        })
        .collect();
    let threshold = quantile(&fit_distances, track.emerging_quantile);

    let mut shares = Vec::with_capacity(weeks.len());
    let mut counts_per_week: Vec<Vec<usize>> = Vec::with_capacity(weeks.len());
    for (w, p) in placed.iter().enumerate() {
        let mut counts = vec![0usize; k];
        for s in p.segment.iter().flatten() {
            counts[*s] += 1;
        }
        let total: usize = counts.iter().sum();
        shares.push(WeekShares {
            week: weeks[w],
            customers: total,
            excluded: p.anomaly.iter().filter(|a| **a).count(),
            segments: counts
                .iter()
                .enumerate()
                .map(|(s, &count)| SegmentShare {
                    segment: s + 1,
                    count,
                    share: count as f64 / total.max(1) as f64,
                })
                .collect(),
        });
        counts_per_week.push(counts);
    }

    let mut alerts: Vec<Alert> = Vec::new();
    // Anomalies: alerted in the week a customer is first flagged.
    for (w, (flags, rule)) in anomalies.iter().enumerate() {
        let before: BTreeSet<&str> = match w {
            0 => BTreeSet::new(),
            _ => states[w - 1]
                .ids
                .iter()
                .zip(&anomalies[w - 1].0)
                .filter(|(_, f)| **f)
                .map(|(id, _)| id.as_str())
                .collect(),
        };
        let new: Vec<usize> = (0..flags.len())
            .filter(|&i| flags[i] && !before.contains(states[w].ids[i].as_str()))
            .collect();
        if new.is_empty() {
            continue;
        }
        let views: Vec<f64> = new.iter().map(|&i| states[w].activity[i].views).collect();
        let sessions: f64 = new.iter().map(|&i| states[w].activity[i].sessions).sum();
        alerts.push(Alert {
            week: weeks[w],
            kind: AlertKind::Anomaly,
            segment: None,
            customers: sorted_ids(&states[w], &new),
            evidence: json!({
                "reason": "bot_like",
                "count": new.len(),
                "sessions": sessions,
                "median_views": median(&views),
                "max_views": views.iter().copied().fold(0.0, f64::max),
                "rule": rule,
            }),
        });
    }

    // Transitions and migrations.
    let mut transitions = Vec::with_capacity(weeks.len().saturating_sub(1));
    let mut history_counts: BTreeMap<(usize, usize), f64> = BTreeMap::new();
    let mut history_sizes: Vec<f64> = vec![0.0; k];
    let mut history_weeks = 0usize;
    for w in 1..weeks.len() {
        let prev: BTreeMap<&str, usize> = states[w - 1]
            .ids
            .iter()
            .zip(&placed[w - 1].segment)
            .filter_map(|(id, s)| s.map(|s| (id.as_str(), s)))
            .collect();
        let mut flows: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
        let mut entered = vec![0usize; k];
        let mut seen_now: BTreeSet<&str> = BTreeSet::new();
        for (i, (id, s)) in states[w].ids.iter().zip(&placed[w].segment).enumerate() {
            let Some(to) = s else { continue };
            seen_now.insert(id.as_str());
            match prev.get(id.as_str()) {
                Some(&from) => flows.entry((from, *to)).or_default().push(i),
                None => entered[*to] += 1,
            }
        }
        let mut left = vec![0usize; k];
        for (id, &from) in &prev {
            if !seen_now.contains(id) {
                left[from] += 1;
            }
        }
        let sizes = &counts_per_week[w - 1];
        let rate = |from: usize, count: usize| count as f64 / sizes[from].max(1) as f64;
        for (&(from, to), members) in &flows {
            if from == to || history_weeks == 0 {
                continue;
            }
            let count = members.len();
            let base_count = history_counts.get(&(from, to)).copied().unwrap_or(0.0);
            let baseline = (base_count + 0.5) / (history_sizes[from] + 1.0);
            let r = rate(from, count);
            let z = binomial_z(count as f64, sizes[from] as f64, baseline);
            if count >= track.migration_min_count
                && r >= track.migration_min_rate
                && r >= track.migration_min_ratio * baseline
                && z >= track.migration_z
            {
                alerts.push(Alert {
                    week: weeks[w],
                    kind: AlertKind::Migration,
                    segment: Some(from + 1),
                    customers: sorted_ids(&states[w], members),
                    evidence: json!({
                        "from": from + 1,
                        "to": to + 1,
                        "count": count,
                        "from_size": sizes[from],
                        "rate": r,
                        "baseline_rate": baseline,
                        "baseline_transitions": history_weeks,
                        "z": z,
                    }),
                });
            }
        }
        for (&(from, to), members) in &flows {
            *history_counts.entry((from, to)).or_insert(0.0) += members.len() as f64;
        }
        for (s, size) in sizes.iter().enumerate() {
            history_sizes[s] += *size as f64;
        }
        history_weeks += 1;
        transitions.push(Transition {
            from_week: weeks[w - 1],
            to_week: weeks[w],
            customers_in_both: flows.values().map(Vec::len).sum(),
            flows: flows
                .iter()
                .map(|(&(from, to), members)| Flow {
                    from: from + 1,
                    to: to + 1,
                    count: members.len(),
                    rate: rate(from, members.len()),
                })
                .collect(),
            entered: counts_of(&entered),
            left: counts_of(&left),
        });
    }

    // PSI of shares week over week.
    let share_psi: Vec<SharePsi> = (1..weeks.len())
        .map(|w| {
            let e: Vec<f64> = shares[w - 1].segments.iter().map(|s| s.share).collect();
            let a: Vec<f64> = shares[w].segments.iter().map(|s| s.share).collect();
            let v = psi(&e, &a);
            SharePsi {
                week: weeks[w],
                psi: v,
                level: PsiLevel::of(v, &track),
            }
        })
        .collect();

    // PSI (and KS) of each drift feature per segment against the fit weeks; drift alerts.
    let mut feature_psi = Vec::new();
    for (w, p) in placed.iter().enumerate() {
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
        for (i, s) in p.segment.iter().enumerate() {
            if let Some(s) = s {
                members[*s].push(i);
            }
        }
        for s in 0..k {
            let n = members[s].len();
            let reference_n = fit_members[s].len();
            let bins = (reference_n / 25).clamp(2, track.psi_bins.max(2));
            let mut drifted = Vec::new();
            for (f, name) in DRIFT_FEATURES.iter().enumerate() {
                let now: Vec<f64> = members[s]
                    .iter()
                    .map(|&i| drift_values(&states[w], i)[f])
                    .collect();
                let reference = &fit_drift[s][f];
                let v = if n == 0 || reference.is_empty() {
                    0.0
                } else {
                    psi_of_samples(reference, &now, bins)
                };
                let (ks, p_value) = ks_two_sample(reference, &now);
                let level = PsiLevel::of(v, &track);
                if level == PsiLevel::Alert && p_value <= track.drift_max_p {
                    drifted.push(json!({
                        "feature": name,
                        "psi": v,
                        "ks": ks,
                        "ks_p_value": p_value,
                        "median_fit": median(reference),
                        "median_now": median(&now),
                    }));
                }
                feature_psi.push(FeaturePsi {
                    week: weeks[w],
                    segment: s + 1,
                    feature: name,
                    psi: v,
                    ks,
                    ks_p_value: p_value,
                    level,
                    customers: n,
                });
            }
            let share_now = shares[w].segments[s].share;
            let share_fit = fit_share(s);
            let share_change = if share_fit > 0.0 {
                (share_now - share_fit).abs() / share_fit
            } else {
                f64::INFINITY
            };
            if w >= fit_weeks
                && !drifted.is_empty()
                && n >= track.drift_min_customers
                && share_change <= track.drift_max_share_change
            {
                alerts.push(Alert {
                    week: weeks[w],
                    kind: AlertKind::Drift,
                    segment: Some(s + 1),
                    customers: sorted_ids(&states[w], &members[s]),
                    evidence: json!({
                        "features": drifted,
                        "share_now": share_now,
                        "share_fit": share_fit,
                        "relative_share_change": share_change,
                    }),
                });
            }
        }
    }

    // Emerging segments.
    let mut fit_population: BTreeMap<String, f64> = BTreeMap::new();
    for w in 0..fit_weeks {
        for (i, families) in states[w].families.iter().enumerate() {
            if placed[w].segment[i].is_some() {
                for (k, v) in families {
                    *fit_population.entry(k.clone()).or_insert(0.0) += v;
                }
            }
        }
    }
    let fit_events: f64 = fit_population.values().sum();
    if fit_events > 0.0 {
        fit_population.values_mut().for_each(|v| *v /= fit_events);
    }
    for w in 1..weeks.len() {
        let state = &states[w];
        let browses = |i: usize| !state.families[i].is_empty();
        let browsers: Vec<usize> = (0..state.ids.len())
            .filter(|&i| placed[w].segment[i].is_some() && browses(i))
            .collect();
        let candidates: Vec<usize> = browsers
            .iter()
            .copied()
            .filter(|&i| placed[w].distance[i].is_some_and(|d| d > threshold))
            .collect();
        let previous = states[w - 1]
            .ids
            .iter()
            .map(String::as_str)
            .zip(&states[w - 1].families)
            .collect();
        let fit = (0..fit_weeks.min(w))
            .map(|f| {
                states[f]
                    .ids
                    .iter()
                    .map(String::as_str)
                    .zip(&states[f].families)
                    .collect()
            })
            .collect();
        let week = EmergingWeek {
            week: weeks[w],
            ids: &state.ids,
            families: &state.families,
            candidates,
            browsers,
            previous,
            fit,
            fit_population: &fit_population,
            threshold,
        };
        alerts.extend(emerging::detect(&week, &track, seed ^ (w as u64)));
    }
    alerts.sort_by(|a, b| {
        (a.week, a.kind, a.segment)
            .cmp(&(b.week, b.kind, b.segment))
            .then_with(|| a.customers.cmp(&b.customers))
    });

    notes.push(format!(
        "Segments were fitted on {fit_total} customer-weeks of the fit weeks with k-means; every \
         week is assigned by the nearest centroid, so ids are stable."
    ));
    notes.push(format!(
        "Customers are poorly assigned above a fit distance of {threshold:.4} (quantile {} of \
         the fit weeks).",
        track.emerging_quantile
    ));
    let mut document = MovementDocument {
        schema_version: MOVEMENT_SCHEMA_VERSION,
        seed,
        weeks: weeks.to_vec(),
        fit_weeks: weeks[..fit_weeks].to_vec(),
        browsing_window_weeks: track.browsing_window_weeks,
        segments,
        shares,
        transitions,
        psi: PsiReport {
            shares: share_psi,
            features: feature_psi,
        },
        alerts,
        summaries: Vec::new(),
        narrative: super::narrate::WeeklyNarrativeRecord::builtin(),
        refits,
        thresholds: track,
        notes,
    };
    document.summaries = super::summary::summarize(&document)
        .into_iter()
        .map(|s| s.summary)
        .collect();
    document
}

/// The segment model in force: centroids in the fitted space, the stable id of each, and per
/// id (every id ever made) the customer-weeks it was fitted on.
struct Models {
    centroids: Array2<f64>,
    /// Global id (0-based) of each centroid row.
    ids: Vec<usize>,
    /// Per id: (week index, row) of the customer-weeks it was fitted on.
    reference: Vec<Vec<(usize, usize)>>,
    /// Per id: customer-weeks of the fit that made it (its share's denominator).
    reference_total: Vec<usize>,
    /// Per id: the week index it was made in.
    since: Vec<usize>,
    /// The next id to hand out.
    next_id: usize,
}

/// Share of an old segment's members a new segment must take (or give) for a split (merge).
const SPLIT_SHARE: f64 = 0.3;
/// Jaccard overlap a new segment needs with an old one to continue its id.
const CONTINUE_JACCARD: f64 = 0.3;

/// Refits k-means on the window's customer-weeks (the same space: embedder and scaler stay),
/// matches the new segments to the old ids and makes the new model the one in force.
///
/// Matching: the overlap of every new segment with every old id (customers of the window
/// under both models), greedy by Jaccard overlap (ties by centroid distance, then id): a new
/// segment continues the old id it overlaps most, each old id at most once, when the Jaccard
/// overlap is at least 0.3; otherwise it gets a new id. An old id that gives at least 30% of
/// its members to each of two or more new segments split; a new segment that takes at least
/// 30% of each of two or more old ids is their merge.
#[allow(
    clippy::too_many_arguments,
    reason = "one caller; the run's pieces travel explicitly"
)]
fn refit(
    models: &mut Models,
    window: &[usize],
    xs: &[Array2<f64>],
    placed: &[Placed],
    weeks: &[IsoWeek],
    spec: &ClusterSpec,
    seed: u64,
    progress: &dyn Progress,
) -> Result<Refit, PipelineError> {
    let mut rows: Vec<(usize, usize)> = Vec::new();
    let mut old: Vec<usize> = Vec::new();
    for (&w, x) in window.iter().zip(xs) {
        for i in 0..x.nrows() {
            if let Some(s) = placed[w].segment[i] {
                rows.push((w, i));
                old.push(s);
            }
        }
    }
    let mut stacked = Array2::<f64>::zeros((rows.len(), xs.first().map_or(0, |x| x.ncols())));
    for (r, &(w, i)) in rows.iter().enumerate() {
        let x = &xs[w - window[0]];
        stacked.row_mut(r).assign(&x.row(i));
    }
    let clustering = clustering::segment(stacked.view(), spec, seed, progress)?;
    let SegmentModel::Centroids(centroids) = clustering.model else {
        return Err(PipelineError::Unsupported {
            file: "refit".into(),
            message: "k-means returned no centroids".into(),
        });
    };
    let new: Vec<usize> = stacked
        .axis_iter(Axis(0))
        .map(|row| nearest(&centroids, row).0)
        .collect();
    let kn = centroids.nrows();
    let old_centroid = |o: usize| {
        models
            .ids
            .iter()
            .position(|&id| id == o)
            .map(|r| models.centroids.row(r).to_owned())
    };
    let matching = match_refit(&old, &new, kn, |j, o| {
        old_centroid(o).map_or(f64::INFINITY, |oc| {
            oc.iter()
                .zip(centroids.row(j).iter())
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
        })
    });
    let continues = &matching.continues;
    let size_new = &matching.size_new;
    let week = window.last().copied().unwrap_or(0);
    let ids: Vec<usize> = continues
        .iter()
        .map(|c| match c {
            Some((id, _)) => *id,
            None => {
                let id = models.next_id;
                models.next_id += 1;
                models.reference.push(Vec::new());
                models.reference_total.push(rows.len());
                models.since.push(week);
                id
            }
        })
        .collect();
    for (r, &j) in new.iter().enumerate() {
        let id = ids[j];
        if continues[j].is_none() {
            models.reference[id].push(rows[r]);
        }
    }
    let splits = matching
        .splits
        .iter()
        .map(|(o, to)| SplitMerge {
            old: vec![o + 1],
            new: to.iter().map(|&j| ids[j] + 1).collect(),
        })
        .collect();
    let merges = matching
        .merges
        .iter()
        .map(|(from, j)| SplitMerge {
            old: from.iter().map(|o| o + 1).collect(),
            new: vec![ids[*j] + 1],
        })
        .collect();
    let matches = (0..kn)
        .map(|j| RefitMatch {
            id: ids[j] + 1,
            continues: continues[j].map(|(o, _)| o + 1),
            jaccard: continues[j].map_or(0.0, |(_, v)| v),
            size: size_new[j],
        })
        .collect();
    models.centroids = centroids;
    models.ids = ids;
    Ok(Refit {
        applies_from: weeks[week + 1],
        fitted_on: window.iter().map(|&w| weeks[w]).collect(),
        matches,
        splits,
        merges,
    })
}

/// How a refit's clusters relate to the ids before it, from the same customer-weeks'
/// labels under both: `old` ids (0-based) and `new` cluster indexes (0..kn).
#[derive(Debug, Clone, PartialEq)]
struct RefitMatching {
    /// Per new cluster, the old id it continues and their Jaccard overlap.
    continues: Vec<Option<(usize, f64)>>,
    /// Customer-weeks per new cluster.
    size_new: Vec<usize>,
    /// Old id → the new clusters that each took at least [`SPLIT_SHARE`] of it (two or more).
    splits: Vec<(usize, Vec<usize>)>,
    /// Old ids that each gave at least [`SPLIT_SHARE`] of their members (two or more) →
    /// the new cluster that took them.
    merges: Vec<(Vec<usize>, usize)>,
}

/// Greedy matching by membership overlap: pairs in order of Jaccard (ties by the squared
/// centroid distance `distance(new, old)`, then by index), each new cluster continuing at
/// most one old id and each old id continued at most once, only at Jaccard ≥
/// [`CONTINUE_JACCARD`]; splits and merges by shares of the old ids' members.
fn match_refit(
    old: &[usize],
    new: &[usize],
    kn: usize,
    distance: impl Fn(usize, usize) -> f64,
) -> RefitMatching {
    let mut overlap: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    let mut size_new = vec![0usize; kn];
    let mut size_old: BTreeMap<usize, usize> = BTreeMap::new();
    for (&o, &j) in old.iter().zip(new) {
        *overlap.entry((j, o)).or_insert(0) += 1;
        size_new[j] += 1;
        *size_old.entry(o).or_insert(0) += 1;
    }
    let mut pairs: Vec<(f64, f64, usize, usize)> = overlap
        .iter()
        .map(|(&(j, o), &c)| {
            let union = size_new[j] + size_old.get(&o).copied().unwrap_or(0) - c;
            let jaccard = c as f64 / union.max(1) as f64;
            (jaccard, distance(j, o), j, o)
        })
        .collect();
    pairs.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(a.1.total_cmp(&b.1))
            .then((a.2, a.3).cmp(&(b.2, b.3)))
    });
    let mut continues: Vec<Option<(usize, f64)>> = vec![None; kn];
    let mut taken: BTreeSet<usize> = BTreeSet::new();
    for &(jaccard, _, j, o) in &pairs {
        if jaccard < CONTINUE_JACCARD || continues[j].is_some() || taken.contains(&o) {
            continue;
        }
        continues[j] = Some((o, jaccard));
        taken.insert(o);
    }
    let share_of_old = |j: usize, o: usize| {
        overlap.get(&(j, o)).copied().unwrap_or(0) as f64
            / size_old.get(&o).copied().unwrap_or(1).max(1) as f64
    };
    let splits = size_old
        .keys()
        .filter_map(|&o| {
            let to: Vec<usize> = (0..kn)
                .filter(|&j| share_of_old(j, o) >= SPLIT_SHARE)
                .collect();
            (to.len() >= 2).then_some((o, to))
        })
        .collect();
    let merges = (0..kn)
        .filter_map(|j| {
            let from: Vec<usize> = size_old
                .keys()
                .copied()
                .filter(|&o| share_of_old(j, o) >= SPLIT_SHARE)
                .collect();
            (from.len() >= 2).then_some((from, j))
        })
        .collect();
    RefitMatching {
        continues,
        size_new,
        splits,
        merges,
    }
}

fn counts_of(counts: &[usize]) -> Vec<SegmentCount> {
    counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(s, &count)| SegmentCount {
            segment: s + 1,
            count,
        })
        .collect()
}

fn sorted_ids(state: &WeekState, rows: &[usize]) -> Vec<String> {
    let mut ids: Vec<String> = rows.iter().map(|&i| state.ids[i].clone()).collect();
    ids.sort();
    ids
}

/// Writes `weekly_assignments.csv` and `movement.json`, each atomically.
fn write_files(
    request: &TrackRequest,
    document: &MovementDocument,
    states: &[WeekState],
    placed: &[Placed],
) -> Result<(), PipelineError> {
    let dir = &request.out_dir;
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.clone(),
        source,
    })?;
    let err = |e: csv::Error| ReportError::Serialize {
        what: "weekly_assignments.csv",
        message: e.to_string(),
    };
    let mut writer = csv::Writer::from_writer(Vec::new());
    let with_umap = placed.iter().any(|p| p.umap.is_some());
    let with_tsne = placed.iter().any(|p| p.tsne.is_some());
    let mut header = vec![
        "week",
        "id",
        "segment",
        "reason",
        "fit_distance",
        "pca_x",
        "pca_y",
    ];
    if with_umap {
        header.extend(["umap_x", "umap_y"]);
    }
    if with_tsne {
        header.extend(["tsne_x", "tsne_y"]);
    }
    writer.write_record(&header).map_err(err)?;
    let xy = |c: &Option<Array2<f64>>, i: usize| -> [String; 2] {
        c.as_ref()
            .map(|c| [c[[i, 0]].to_string(), c[[i, 1]].to_string()])
            .unwrap_or_default()
    };
    for (state, p) in states.iter().zip(placed) {
        let week = state.week.to_string();
        for (i, id) in state.ids.iter().enumerate() {
            let mut record = vec![
                week.clone(),
                id.clone(),
                p.segment[i]
                    .map(|s| (s + 1).to_string())
                    .unwrap_or_default(),
                if p.anomaly[i] { "anomaly" } else { "" }.to_string(),
                p.distance[i].map(|d| d.to_string()).unwrap_or_default(),
            ];
            record.extend(xy(&p.pca, i));
            if with_umap {
                record.extend(xy(&p.umap, i));
            }
            if with_tsne {
                record.extend(xy(&p.tsne, i));
            }
            writer.write_record(&record).map_err(err)?;
        }
    }
    let csv = writer.into_inner().map_err(|e| ReportError::Serialize {
        what: "weekly_assignments.csv",
        message: e.to_string(),
    })?;
    let mut json = serde_json::to_vec_pretty(document).map_err(|e| ReportError::Serialize {
        what: "movement.json",
        message: e.to_string(),
    })?;
    json.push(b'\n');
    write_atomically(dir, "weekly_assignments.csv", &csv)?;
    write_atomically(dir, "movement.json", &json)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::match_refit;

    /// `n` customer-weeks labelled `label`.
    fn labels(groups: &[(usize, usize)]) -> Vec<usize> {
        groups
            .iter()
            .flat_map(|&(label, n)| std::iter::repeat_n(label, n))
            .collect()
    }

    #[test]
    fn a_segment_cut_in_two_is_recorded_as_a_split_and_the_larger_part_keeps_its_id() {
        // Old ids 0 (100) and 1 (50); the refit cuts 0 into clusters 0 (60) and 2 (40).
        let old = labels(&[(0, 60), (0, 40), (1, 50)]);
        let new = labels(&[(0, 60), (2, 40), (1, 50)]);
        let m = match_refit(&old, &new, 3, |_, _| 0.0);
        assert_eq!(m.size_new, [60, 50, 40]);
        assert_eq!(m.continues, [Some((0, 0.6)), Some((1, 1.0)), None]);
        assert_eq!(m.splits, [(0, vec![0, 2])]);
        assert!(m.merges.is_empty());
    }

    #[test]
    fn two_segments_taken_into_one_are_recorded_as_a_merge() {
        // Old ids 0 (40), 1 (40), 2 (20); the refit puts 0 and 1 together.
        let old = labels(&[(0, 40), (1, 40), (2, 20)]);
        let new = labels(&[(0, 80), (1, 20)]);
        let m = match_refit(&old, &new, 2, |_, _| 0.0);
        assert_eq!(m.continues, [Some((0, 0.5)), Some((2, 1.0))]);
        assert_eq!(m.merges, [(vec![0, 1], 0)]);
        assert!(m.splits.is_empty());
    }

    #[test]
    fn equal_overlaps_go_to_the_nearer_centroid_and_weak_ones_start_a_new_id() {
        // Clusters 0 and 1 each take half of old 0 (Jaccard 0.5 each): the nearer centroid
        // (cluster 1) continues it. Cluster 3 takes a sliver of old 1 (Jaccard 1/9).
        let old = labels(&[(0, 20), (0, 20), (1, 40), (1, 5)]);
        let new = labels(&[(0, 20), (1, 20), (2, 40), (3, 5)]);
        let m = match_refit(
            &old,
            &new,
            4,
            |j, o| if (j, o) == (1, 0) { 1.0 } else { 2.0 },
        );
        assert_eq!(
            m.continues,
            [None, Some((0, 0.5)), Some((1, 40.0 / 45.0)), None]
        );
        assert_eq!(m.splits, [(0, vec![0, 1])]);
        assert!(m.merges.is_empty());
    }
}
