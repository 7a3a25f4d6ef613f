//! The core engine's stages, shared by every kind of input: cluster (on everyone or a fit
//! sample), stability, the maps, and the validity of segments and maps. A use case prepares
//! a scaled customer matrix ([`Subject`]), calls [`analyse`], then adds what is particular
//! to its input (feature profiles, business KPIs) before narrating and writing.

use std::collections::BTreeMap;
use std::time::Instant;

use ndarray::{Array2, ArrayView2, Axis};

use crate::analysis::clustering::{self, ClusterSpec, KChoice, KSelection, Stability};
use crate::analysis::knn::{KnnError, KnnGraph, KnnIndex, knn_graph};
use crate::analysis::kpis::BusinessKpis;
use crate::analysis::maps::pca::fit_pca;
use crate::analysis::maps::tsne::{TransformParams, fit_tsne};
use crate::analysis::maps::umap::fit_umap;
use crate::analysis::profile::SegmentProfile;
use crate::analysis::progress::Progress;
use crate::analysis::separation::{MapNeighbors, SplitSegment};
use crate::analysis::validity::{
    ValidityError, adjusted_rand_score, calinski_harabasz_score, davies_bouldin_score,
    normalized_mutual_info_score, silhouette_score, trustworthiness,
};
use crate::domain::{MapMethod, Method, Partition};
use crate::llm::ChatBackend;
use crate::narrative::figures::{BaseKpis, CatalogueFacts, FigureCatalogue};
use crate::narrative::llm::{
    self, ModelRecord, NarratedSegment, Narration, NarrativeInput, SegmentBrief,
};
use crate::narrative::{Caveat, SegmentText};
use crate::narrative::{MapFacts, reading};
use crate::pipeline::PipelineError;
use crate::pipeline::fit_sample::FitSet;
use crate::report::document::{
    ExternalAgreement, MapSummary, NoiseSummary, Quality, SamplingSummary, SegmentEntry,
    SegmentKpis, StabilitySummary,
};
use crate::report::{
    ReportError, RunRecord, SegmentsDocument, assignments, html, write_atomically,
};
use crate::settings::{KSetting, Settings};

/// Times stages and reports them to the progress sink.
pub(crate) struct Stages<'a> {
    pub(crate) progress: &'a dyn Progress,
    pub(crate) timings: BTreeMap<String, f64>,
}

impl<'a> Stages<'a> {
    /// Starts timing a run's stages.
    pub(crate) fn new(progress: &'a dyn Progress) -> Self {
        Stages {
            progress,
            timings: BTreeMap::new(),
        }
    }

    /// Runs one stage, records its duration under `name` and closes its progress unit.
    pub(crate) fn run<T>(&mut self, name: &str, work: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = work();
        let elapsed = started.elapsed().as_secs_f64();
        tracing::info!(
            stage = name,
            elapsed_ms = (elapsed * 1000.0) as u64,
            "stage done"
        );
        self.timings.insert(name.to_string(), elapsed);
        self.progress.finish();
        out
    }
}

/// One map as drawn: coordinates plus what the summary needs.
pub(crate) struct DrawnMap {
    pub(crate) method: MapMethod,
    pub(crate) coords: Array2<f64>,
    /// Parameters actually used (e.g. the perplexity after shrinking).
    parameters: BTreeMap<String, f64>,
    /// PCA's explained-variance ratios.
    explained_variance_ratio: Option<Vec<f64>>,
}

/// The customers a use case hands to the engine.
pub(crate) struct Subject<'a> {
    /// The clustering space: one scaled row per customer.
    pub(crate) x: ArrayView2<'a, f64>,
    /// Known classes per customer, used only to check the segments.
    pub(crate) labels: &'a Option<Vec<String>>,
    /// What the labels are called (for sentences).
    pub(crate) label_column: Option<&'a str>,
    /// The input named in errors ("only 2 usable rows").
    pub(crate) source: &'a str,
}

/// What the engine found.
pub(crate) struct Analysed {
    /// Everyone's segment, numbered by size.
    pub(crate) partition: Partition,
    /// Who the fit saw.
    pub(crate) fit: FitSet,
    /// How k was chosen, when it was.
    pub(crate) selection: Option<KSelection>,
    /// Stability under resampling, in the partition's numbering.
    pub(crate) stability: Option<Stability>,
    /// The maps, in the order pca, umap, tsne.
    pub(crate) maps: Vec<DrawnMap>,
    /// Validity of the segments.
    pub(crate) quality: Quality,
    /// Faithfulness of each map, by map key.
    pub(crate) map_summaries: BTreeMap<String, MapSummary>,
    /// What the caveats need to know about each map.
    pub(crate) map_facts: Vec<MapFacts>,
}

/// Clusters, maps and measures `subject`; warnings for the reader are appended to
/// `warnings`.
pub(crate) fn analyse(
    subject: &Subject<'_>,
    settings: &Settings,
    stages: &mut Stages<'_>,
    warnings: &mut Vec<String>,
) -> Result<Analysed, PipelineError> {
    let x = subject.x;
    let n = x.nrows();
    let seed = settings.run.seed;
    let progress = stages.progress;
    let unsupported = |message: String| PipelineError::Unsupported {
        file: subject.source.to_string(),
        message,
    };
    if n < 3 {
        return Err(unsupported(format!(
            "only {n} usable customers; segmenting needs at least 3"
        )));
    }
    if let KSetting::Fixed(k) = settings.segment.k
        && settings.segment.method != Method::Hdbscan
        && k >= n
    {
        return Err(unsupported(format!(
            "{k} segments asked for, but there are only {n} customers"
        )));
    }
    let spec = ClusterSpec {
        method: settings.segment.method,
        k: match settings.segment.k {
            KSetting::Auto => KChoice::Auto {
                min: settings.segment.k_min,
                max: settings.segment.k_max,
            },
            KSetting::Fixed(k) => KChoice::Fixed(k),
        },
        kmeans: settings.kmeans.clone(),
        gmm: settings.gmm.clone(),
        hdbscan: settings.hdbscan.clone(),
    };
    if settings.segment.method == Method::Hdbscan
        && matches!(settings.segment.k, KSetting::Fixed(_))
    {
        warnings.push("k was ignored: HDBSCAN finds the number of segments itself.".into());
    }
    let fit = FitSet::choose(n, &settings.sampling, seed);
    let x_fit = fit.select(x);
    if fit.sample().is_some() {
        tracing::info!(fit_sample = fit.len(), customers = n, "fitting on a sample");
    }
    let clustering = stages.run("cluster", || {
        clustering::segment(x_fit.view(), &spec, seed, progress)
    })?;
    let fit_partition = clustering.partition;
    let k = fit_partition.k();
    tracing::info!(k, method = ?settings.segment.method, "segments found");
    // Everyone gets a segment from the model when the fit saw a sample; `order[s]` is the
    // fitted segment that became segment `s` of the whole base (renumbered by size).
    let (partition, order) = match fit.sample() {
        None => (fit_partition.clone(), (0..k).collect::<Vec<usize>>()),
        Some(_) => {
            progress.start("assigning customers", 0);
            let assigned = stages.run("assign", || clustering.model.assign(x));
            Partition::from_raw_with_order(assigned)
        }
    };

    let stability = (settings.stability.resamples > 0).then(|| {
        let fitted = stages.run("stability", || {
            clustering::bootstrap_stability(
                x_fit.view(),
                &fit_partition,
                |sample, s| clustering::fit_fixed_k(sample, &spec, k, s).map(|f| f.partition),
                &settings.stability,
                seed,
                progress,
            )
        });
        clustering::Stability {
            per_segment: order.iter().map(|&f| fitted.per_segment[f]).collect(),
            ..fitted
        }
    });

    // Maps, in the fixed order pca, umap, tsne whatever order was asked.
    let mut wanted = settings.segment.maps.clone();
    wanted.sort();
    wanted.dedup();
    let placement = Placement::prepare(&fit, x.view(), x_fit.view(), &wanted, seed, progress)?;
    let mut maps: Vec<DrawnMap> = Vec::new();
    for method in wanted {
        let stage = format!("map_{}", method.key());
        progress.start(method.display_name(), 0);
        let drawn = stages.run(&stage, || {
            let inputs = MapInputs {
                x: x.view(),
                x_fit: x_fit.view(),
                fit: &fit,
                placement: placement.as_ref(),
            };
            draw_map(method, &inputs, settings, seed, progress)
        })?;
        maps.push(drawn);
    }

    // Choosing k already scored the chosen partition's silhouette on the fit set: the same
    // customers and the same grouping that `measure` would score again at O(n²).
    let known_silhouette = clustering.selection.as_ref().and_then(|selection| {
        selection
            .candidates
            .iter()
            .find(|c| c.k == selection.chosen)
            .map(|c| c.silhouette)
    });
    progress.start("measuring", 0);
    let (quality, map_summaries, map_facts) = stages.run("metrics", || {
        measure(
            x.view(),
            &partition,
            &fit,
            known_silhouette,
            subject.labels,
            subject.label_column,
            &maps,
            stability.as_ref(),
            settings,
        )
    })?;

    Ok(Analysed {
        partition,
        fit,
        selection: clustering.selection,
        stability,
        maps,
        quality,
        map_summaries,
        map_facts,
    })
}

/// Neighbours found for each placed customer: enough for UMAP's and t-SNE's transforms.
const PLACEMENT_NEIGHBOURS: usize = 15;

/// What placing the customers outside a fit sample needs: their rows, their features and a
/// neighbour index over the sample.
struct Placement {
    x_rest: Array2<f64>,
    index: KnnIndex,
}

impl Placement {
    /// Built only when the fit saw a sample and a neighbourhood map (UMAP, t-SNE) is wanted.
    fn prepare(
        fit: &FitSet,
        x: ArrayView2<f64>,
        x_fit: ArrayView2<f64>,
        wanted: &[MapMethod],
        seed: u64,
        progress: &dyn Progress,
    ) -> Result<Option<Self>, PipelineError> {
        if fit.sample().is_none() || wanted.iter().all(|m| *m == MapMethod::Pca) {
            return Ok(None);
        }
        let failed = |e: KnnError| PipelineError::Map {
            map: "placement",
            message: e.to_string(),
        };
        let k = PLACEMENT_NEIGHBOURS.min(x_fit.nrows() - 1);
        let graph = knn_graph(x_fit, k, seed, progress).map_err(failed)?;
        let index = KnnIndex::new(x_fit, &graph, seed).map_err(failed)?;
        Ok(Some(Placement {
            x_rest: x.select(Axis(0), &fit.rest()),
            index,
        }))
    }

    fn neighbours(&self, k: usize) -> Result<KnnGraph, KnnError> {
        self.index.query(self.x_rest.view(), k)
    }
}

/// The matrices a map is drawn from.
struct MapInputs<'a> {
    /// Everyone, scaled.
    x: ArrayView2<'a, f64>,
    /// The customers the fit sees (everyone, or the sample).
    x_fit: ArrayView2<'a, f64>,
    fit: &'a FitSet,
    /// How to place the others, when the fit saw a sample.
    placement: Option<&'a Placement>,
}

/// Draws one map for everyone: PCA is fitted on everyone (it is cheap and exact); UMAP and
/// t-SNE are fitted on the fit set and, when that is a sample, place the others with their
/// transforms.
fn draw_map(
    method: MapMethod,
    inputs: &MapInputs<'_>,
    settings: &Settings,
    seed: u64,
    progress: &dyn Progress,
) -> Result<DrawnMap, PipelineError> {
    let failed = |message: String| PipelineError::Map {
        map: method.display_name(),
        message,
    };
    let x_fit = inputs.x_fit;
    match method {
        MapMethod::Pca => {
            let pca = fit_pca(inputs.x, 2).map_err(|e| failed(e.to_string()))?;
            Ok(DrawnMap {
                method,
                coords: pca.transform(inputs.x),
                parameters: BTreeMap::new(),
                explained_variance_ratio: Some(pca.explained_variance_ratio.clone()),
            })
        }
        MapMethod::Umap => {
            let u = &settings.umap;
            // n_neighbors counts the point itself, as in umap-learn; the graph excludes it.
            let params = u
                .params(x_fit.nrows())
                .validate()
                .map_err(|e| failed(e.to_string()))?;
            let n_neighbors = params.params().n_neighbors;
            let knn = knn_graph(x_fit, n_neighbors - 1, seed, progress)
                .map_err(|e| failed(e.to_string()))?;
            let model = fit_umap(x_fit, &knn, &params, seed, progress)
                .map_err(|e| failed(e.to_string()))?;
            let placed = match inputs.placement {
                Some(placement) => {
                    progress.start("placing customers (UMAP)", 0);
                    let neighbours = placement
                        .neighbours(n_neighbors)
                        .map_err(|e| failed(e.to_string()))?;
                    Some(
                        model
                            .transform(placement.x_rest.view(), &neighbours, seed)
                            .map_err(|e| failed(e.to_string()))?,
                    )
                }
                None => None,
            };
            let used = BTreeMap::from([
                ("n_neighbors".to_string(), n_neighbors as f64),
                ("min_dist".to_string(), u.min_dist),
                ("spread".to_string(), u.spread),
            ]);
            Ok(DrawnMap {
                method,
                coords: inputs.fit.assemble(&model.embedding, placed.as_ref()),
                parameters: used,
                explained_variance_ratio: None,
            })
        }
        MapMethod::Tsne => {
            let t = &settings.tsne;
            let params = t.params();
            let map =
                fit_tsne(x_fit, &params, seed, progress).map_err(|e| failed(e.to_string()))?;
            let placed = match inputs.placement {
                Some(placement) => {
                    let transform = TransformParams::default();
                    let k = transform.neighbours().min(x_fit.nrows());
                    let neighbours = placement.neighbours(k).map_err(|e| failed(e.to_string()))?;
                    Some(
                        map.transform(&neighbours, &transform, progress)
                            .map_err(|e| failed(e.to_string()))?,
                    )
                }
                None => None,
            };
            let used = BTreeMap::from([
                ("perplexity".to_string(), map.perplexity),
                ("theta".to_string(), t.theta),
                ("max_iter".to_string(), t.max_iter as f64),
            ]);
            Ok(DrawnMap {
                method,
                coords: inputs.fit.assemble(&map.embedding, placed.as_ref()),
                parameters: used,
                explained_variance_ratio: None,
            })
        }
    }
}

type Measured = (Quality, BTreeMap<String, MapSummary>, Vec<MapFacts>);

/// Validity of the segments and faithfulness of each map. Quadratic measures (silhouette,
/// trustworthiness, map neighbourhoods) use the fit set; the others use everyone.
/// `known_silhouette` is the fit set's silhouette when choosing k already computed it.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site; the inputs are the run's parts"
)]
pub(crate) fn measure(
    x: ArrayView2<f64>,
    partition: &Partition,
    fit: &FitSet,
    known_silhouette: Option<f64>,
    labels: &Option<Vec<String>>,
    label_column: Option<&str>,
    maps: &[DrawnMap],
    stability: Option<&clustering::Stability>,
    settings: &Settings,
) -> Result<Measured, PipelineError> {
    let (rows, segment_of) = partition.clustered();
    let k = partition.k();
    let clustered = x.select(Axis(0), &rows);
    let internal = k >= 2 && k < rows.len();
    // The fit set's clustered customers, with the whole run's segment numbering.
    let fit_rows: Vec<usize> = fit
        .sample()
        .map_or_else(|| (0..x.nrows()).collect(), <[usize]>::to_vec);
    let fit_labels: Vec<Option<usize>> = fit_rows.iter().map(|&r| partition.labels()[r]).collect();
    let (fit_clustered, fit_segment_of): (Vec<usize>, Vec<usize>) = fit_rows
        .iter()
        .zip(&fit_labels)
        .filter_map(|(&r, l)| l.map(|s| (r, s)))
        .unzip();
    let fit_k = fit_segment_of
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let fit_internal = fit_k >= 2 && fit_k < fit_clustered.len();
    let quality = Quality {
        silhouette: match known_silhouette {
            Some(known) => Some(Ok(known)),
            None => fit_internal.then(|| {
                silhouette_score(x.select(Axis(0), &fit_clustered).view(), &fit_segment_of)
            }),
        }
        .transpose()?,
        davies_bouldin: internal
            .then(|| davies_bouldin_score(clustered.view(), &segment_of))
            .transpose()?,
        calinski_harabasz: internal
            .then(|| calinski_harabasz_score(clustered.view(), &segment_of))
            .transpose()?,
        stability: stability.map(|s| StabilitySummary {
            mean_ari: s.mean_ari,
            resamples: s.resamples,
            failed_refits: s.failed_refits,
        }),
        external: labels
            .as_ref()
            .map(|labels| {
                let truth = label_indices(labels).0;
                let found: Vec<usize> = partition.labels().iter().map(|l| l.unwrap_or(k)).collect();
                Ok::<_, ValidityError>(ExternalAgreement {
                    ari: adjusted_rand_score(&truth, &found)?,
                    nmi: normalized_mutual_info_score(&truth, &found)?,
                })
            })
            .transpose()?,
    };
    let x_fit = fit.select(x);
    let n = x_fit.nrows();
    let neighbors = settings
        .validity
        .trustworthiness_neighbors
        .min((n.saturating_sub(1)) / 2)
        .max(1);
    let mut summaries = BTreeMap::new();
    let mut facts = Vec::new();
    for DrawnMap {
        method,
        coords: embedding,
        parameters,
        explained_variance_ratio: evr,
    } in maps
    {
        let failed = |message: String| PipelineError::Map {
            map: method.display_name(),
            message,
        };
        let fit_map = embedding.select(Axis(0), &fit_rows);
        let tw = trustworthiness(x_fit.view(), fit_map.view(), neighbors)?;
        let map_neighbors = MapNeighbors::new(fit_map.view()).map_err(|e| failed(e.to_string()))?;
        let splits = map_neighbors.split_segments(&fit_labels, k);
        let (label_overlaps, label_separation) = match labels {
            Some(labels) => {
                let fit_label_text: Vec<String> =
                    fit_rows.iter().map(|&r| labels[r].clone()).collect();
                let (index, names) = label_indices(&fit_label_text);
                let overlaps = map_neighbors.label_overlaps(&index, &names);
                let sentence = reading::label_separation(
                    method.display_name(),
                    label_column.unwrap_or("label"),
                    &overlaps,
                    settings.caveats.label_overlap_separate,
                );
                (Some(overlaps), Some(sentence))
            }
            None => (None, None),
        };
        summaries.insert(
            method.key().to_string(),
            MapSummary {
                explained_variance_ratio: evr.clone(),
                trustworthiness: tw,
                trustworthiness_neighbors: neighbors,
                parameters: parameters.clone(),
                label_overlaps,
                label_separation,
                split_segments: splits
                    .iter()
                    .map(|s| SplitSegment {
                        segment: s.segment + 1,
                        parts: s.parts.clone(),
                    })
                    .collect(),
            },
        );
        facts.push(MapFacts {
            method: *method,
            trustworthiness: Some(tw),
            splits,
        });
    }
    Ok((quality, summaries, facts))
}

/// Customers drawn in the report's maps: all, or a seeded subset of `MAX_PLOTTED` in file order.
pub(crate) fn plotted_rows(n: usize, seed: u64) -> Vec<usize> {
    if n <= html::MAX_PLOTTED {
        return (0..n).collect();
    }
    let mut rng = <rand_xoshiro::Xoshiro256PlusPlus as rand::SeedableRng>::seed_from_u64(seed);
    let mut rows = rand::seq::index::sample(&mut rng, n, html::MAX_PLOTTED).into_vec();
    rows.sort_unstable();
    rows
}

/// Label of each row as an index into the distinct labels, in order of first appearance.
pub(crate) fn label_indices(labels: &[String]) -> (Vec<usize>, Vec<String>) {
    let mut names: Vec<String> = Vec::new();
    let mut at: std::collections::HashMap<&str, usize> = Default::default();
    let index = labels
        .iter()
        .map(|l| {
            *at.entry(l.as_str()).or_insert_with(|| {
                names.push(l.clone());
                names.len() - 1
            })
        })
        .collect();
    (index, names)
}

/// The segments as `segments.json` lists them: profile, words, caveats, stability and (for
/// store data) business KPIs, all in segment order.
pub(crate) fn segment_entries(
    profiles: Vec<SegmentProfile>,
    texts: Vec<NarratedSegment>,
    caveats: Vec<Vec<Caveat>>,
    business: impl IntoIterator<Item = Option<BusinessKpis>>,
    stability: Option<&Stability>,
) -> Vec<SegmentEntry> {
    profiles
        .into_iter()
        .zip(texts)
        .zip(caveats)
        .zip(business)
        .map(|(((profile, text), mut caveats), business)| {
            // Code-made caveats first, always; the narrator's own cautions after them.
            caveats.extend(text.extra_caveats);
            SegmentEntry {
                id: profile.segment + 1,
                name: text.text.name,
                description: text.text.description,
                narrator: text.narrator,
                figures: text.text.figures,
                size: profile.size,
                share: profile.share,
                stability: stability.and_then(|s| s.per_segment.get(profile.segment).copied()),
                kpis: SegmentKpis {
                    features: profile.features,
                    business,
                },
                caveats,
            }
        })
        .collect()
}

/// Every citable figure of the run, for both narrators and the grounding check.
#[allow(clippy::too_many_arguments)]
pub(crate) fn figure_catalogue(
    profiles: &[SegmentProfile],
    business: Option<&[BusinessKpis]>,
    base: Option<&BaseKpis>,
    n_customers: usize,
    partition: &Partition,
    quality: &Quality,
    stability: Option<&Stability>,
    maps: &BTreeMap<String, MapSummary>,
) -> FigureCatalogue {
    let map_trust: Vec<(&str, Option<f64>)> = maps
        .iter()
        .map(|(name, m)| (name.as_str(), Some(m.trustworthiness)))
        .collect();
    FigureCatalogue::build(&CatalogueFacts {
        profiles,
        business,
        base,
        n_customers,
        noise: partition.noise_count(),
        silhouette: quality.silhouette,
        davies_bouldin: quality.davies_bouldin,
        calinski_harabasz: quality.calinski_harabasz,
        stability,
        external: quality.external.as_ref().map(|e| (e.ari, e.nmi)),
        maps: &map_trust,
        explained_variance_ratio: maps
            .get("pca")
            .and_then(|m| m.explained_variance_ratio.as_deref()),
    })
}

/// What the narrator is told about each segment: its built-in text (the fallback), the
/// caveats code attaches, and its interests.
pub(crate) fn segment_briefs(
    profiles: &[SegmentProfile],
    builtin: &[SegmentText],
    caveats: &[Vec<Caveat>],
    business: Option<&[BusinessKpis]>,
) -> Vec<SegmentBrief> {
    profiles
        .iter()
        .enumerate()
        .map(|(s, p)| {
            let id = p.segment + 1;
            SegmentBrief {
                id,
                size: p.size,
                builtin: builtin.get(s).cloned().unwrap_or_else(|| SegmentText {
                    name: format!("Segment {id}"),
                    description: String::new(),
                    figures: Vec::new(),
                }),
                caveats: caveats.get(s).cloned().unwrap_or_default(),
                interests: business
                    .and_then(|b| b.get(s))
                    .map(|k| SegmentBrief::interests_of(id, k))
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// Runs the narrator on `runtime` (or, for a model without one, on a small runtime of its
/// own); the built-in narrator needs none. Never fails: a model that cannot be reached
/// leaves every segment with the built-in text, and the record says why.
pub(crate) fn narrate(
    backend: &ChatBackend,
    runtime: Option<&tokio::runtime::Handle>,
    input: &NarrativeInput<'_>,
    settings: &Settings,
) -> (Narration, Option<ModelRecord>) {
    let narration = match (backend, runtime) {
        (ChatBackend::Builtin, _) => llm::builtin_narration(input),
        (_, Some(handle)) => handle.block_on(llm::narrate(backend, input, &settings.narrative)),
        (_, None) => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(llm::narrate(backend, input, &settings.narrative)),
            Err(e) => llm::unavailable(
                backend,
                input,
                &format!("cannot start the async runtime: {e}"),
            ),
        },
    };
    (narration, llm::model_record(backend))
}

/// `segments.json`'s top-level narrator: the model when it wrote any text, else `builtin`.
pub(crate) fn narrator_of(narration: &Narration) -> String {
    if narration.record.model_segments.is_empty() {
        "builtin".into()
    } else {
        narration.record.narrator.clone()
    }
}

/// Customers in no segment, reported for HDBSCAN (the only method that leaves any out).
pub(crate) fn noise_summary(settings: &Settings, partition: &Partition) -> Option<NoiseSummary> {
    (settings.segment.method == Method::Hdbscan).then(|| NoiseSummary {
        size: partition.noise_count(),
        share: partition.noise_count() as f64 / partition.labels().len().max(1) as f64,
    })
}

/// How a run fitted on a sample placed everyone else, when it did.
pub(crate) fn sampling_summary(fit: &FitSet, population: usize) -> Option<SamplingSummary> {
    fit.sample().map(|rows| SamplingSummary {
        population,
        fit_sample: rows.len(),
        placement: "segments by the fitted model (nearest centroid, most probable component, or nearest fitted \
                    customer for HDBSCAN); UMAP and t-SNE positions by each method's transform into the fitted map"
            .into(),
    })
}

/// Writes `run.json`: what varies between identical runs (timings, threads, version) beside
/// what identifies the run (seed, input digests by file, settings).
pub(crate) fn write_run_record(
    dir: &std::path::Path,
    command: &str,
    inputs: BTreeMap<String, String>,
    stages: &Stages<'_>,
    settings: &Settings,
    model: Option<ModelRecord>,
) -> Result<(), ReportError> {
    let record = RunRecord {
        segscope_version: env!("CARGO_PKG_VERSION").into(),
        command: command.into(),
        seed: settings.run.seed,
        inputs,
        threads: rayon::current_num_threads(),
        timings: stages.timings.clone(),
        settings: settings.clone(),
        model,
    };
    let json = serde_json::to_vec_pretty(&record).map_err(|e| ReportError::Serialize {
        what: "run.json",
        message: e.to_string(),
    })?;
    write_atomically(dir, "run.json", &json)
}

/// Writes `segments.json`, `assignments.csv` and `report.html` into `dir`.
pub(crate) fn write_outputs(
    dir: &std::path::Path,
    document: &SegmentsDocument,
    ids: &[String],
    labels: Option<&[String]>,
    partition: &Partition,
    maps: &[DrawnMap],
) -> Result<(), ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let coords: Vec<(MapMethod, &Array2<f64>)> =
        maps.iter().map(|m| (m.method, &m.coords)).collect();
    let mut json = serde_json::to_vec_pretty(document).map_err(|e| ReportError::Serialize {
        what: "segments.json",
        message: e.to_string(),
    })?;
    json.push(b'\n');
    let csv = assignments::render_assignments(
        ids,
        partition,
        &coords,
        document.method == Method::Hdbscan,
    )?;
    let plotted = plotted_rows(ids.len(), document.seed);
    let page = html::render_report(document, ids, labels, partition, &coords, &plotted)?;
    write_atomically(dir, "segments.json", &json)?;
    write_atomically(dir, "assignments.csv", &csv)?;
    write_atomically(dir, "report.html", page.as_bytes())
}
