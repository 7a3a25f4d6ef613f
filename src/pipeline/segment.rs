//! `segscope segment` over a numeric feature table: ingest → scale → the core engine
//! (cluster, stability, maps, validity) → feature profiles → narrative → report.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::analysis::profile::profile_segments;
use crate::analysis::progress::Progress;
use crate::features::fit_scaler;
use crate::ingest::{FeatureTableSpec, read_feature_table};
use crate::llm::ChatBackend;
use crate::narrative::llm::NarrativeInput;
use crate::narrative::prompts::Population;
use crate::narrative::{self, CaveatFacts, SegmentText};
use crate::pipeline::PipelineError;
use crate::pipeline::engine::{self, Stages, Subject};
use crate::report::document::SCHEMA_VERSION;
use crate::report::{ReportError, SegmentsDocument, profiles, write_atomically};
use crate::settings::Settings;

/// A validated request to segment one feature table.
#[derive(Debug, Clone)]
pub struct SegmentRequest {
    /// The feature table.
    pub features: PathBuf,
    /// Which columns are what.
    pub table: FeatureTableSpec,
    /// Effective settings (defaults, file, environment and flags merged).
    pub settings: Settings,
    /// Output directory (created if missing).
    pub out_dir: PathBuf,
}

/// What a finished run produced.
#[derive(Debug, Clone)]
pub struct SegmentRun {
    /// The contents of `segments.json`.
    pub document: SegmentsDocument,
    /// Seconds per stage.
    pub timings: BTreeMap<String, f64>,
    /// Where the files are.
    pub out_dir: PathBuf,
}

/// Runs the whole pipeline and writes `segments.json`, `assignments.csv`, `report.html`
/// and `run.json` into the output directory.
pub fn run_segment(
    request: &SegmentRequest,
    progress: &dyn Progress,
) -> Result<SegmentRun, PipelineError> {
    let settings = &request.settings;
    let seed = settings.run.seed;
    let mut stages = Stages::new(progress);
    let mut warnings = Vec::new();
    let backend =
        ChatBackend::from_settings(&settings.llm, seed).map_err(PipelineError::ChatSettings)?;

    progress.start("reading input", 0);
    let table = stages.run("ingest", || {
        read_feature_table(&request.features, &request.table)
    })?;
    let n = table.ids.len();
    for dropped in &table.report.dropped_columns {
        warnings.push(format!(
            "Column {} was left out: {}.",
            dropped.column, dropped.reason
        ));
    }
    for (reason, count) in &table.report.rows_dropped {
        tracing::warn!(reason = reason.as_str(), count, "rows dropped");
    }

    progress.start("scaling", 0);
    let scaler = stages.run("scale", || {
        fit_scaler(table.values.view(), settings.segment.scale)
    });
    let x = scaler.transform(table.values.view());
    let subject = Subject {
        x: x.view(),
        labels: &table.labels,
        label_column: request.table.label_column.as_deref(),
        source: &table.report.file,
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

    progress.start("writing the narrative", 0);
    let profiles = profile_segments(table.values.view(), &table.feature_names, &partition);
    let (narration, model_record, run_caveats, segment_caveats) = stages.run("narrative", || {
        let facts = |names: &[SegmentText]| {
            narrative::caveats_for(&CaveatFacts {
                profiles: &profiles,
                names,
                silhouette: quality.silhouette,
                stability: stability.as_ref(),
                maps: &map_facts,
                noise: partition.noise_count(),
                n_customers: n,
                rows_dropped: table.report.rows_dropped.values().sum(),
                fit_sample: fit.sample().map(<[usize]>::len),
                thresholds: &settings.caveats,
            })
        };
        let builtin = narrative::name_segments(&profiles);
        let (_, builtin_caveats) = facts(&builtin);
        let catalogue = engine::figure_catalogue(
            &profiles,
            None,
            None,
            n,
            &partition,
            &quality,
            stability.as_ref(),
            &map_summaries,
        );
        let input = NarrativeInput {
            population: Population::FeatureRows,
            catalogue: &catalogue,
            segments: engine::segment_briefs(&profiles, &builtin, &builtin_caveats, None),
        };
        let (narration, model_record) = engine::narrate(&backend, None, &input, settings);
        // Caveats name segments: state them with the final names.
        let names: Vec<SegmentText> = narration.segments.iter().map(|s| s.text.clone()).collect();
        let (run_caveats, segment_caveats) = facts(&names);
        (narration, model_record, run_caveats, segment_caveats)
    });

    let narrator = engine::narrator_of(&narration);
    let segments = engine::segment_entries(
        profiles,
        narration.segments,
        segment_caveats,
        std::iter::repeat(None),
        stability.as_ref(),
    );
    let noise = engine::noise_summary(settings, &partition);
    let document = SegmentsDocument {
        schema_version: SCHEMA_VERSION,
        k,
        method: settings.segment.method,
        seed,
        n_customers: n,
        features: table.feature_names.clone(),
        label_column: request.table.label_column.clone(),
        input: Some(table.report.clone()),
        store: None,
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
        // Known labels let the dashboard show each customer's class; written before
        // segments.json, which marks the run complete.
        if let Some(labels) = &table.labels {
            std::fs::create_dir_all(&request.out_dir).map_err(|source| ReportError::Io {
                path: request.out_dir.clone(),
                source,
            })?;
            write_atomically(
                &request.out_dir,
                "profiles.csv",
                &profiles::render_labels(&table.ids, labels)?,
            )?;
        }
        engine::write_outputs(
            &request.out_dir,
            &document,
            &table.ids,
            table.labels.as_deref(),
            &partition,
            &maps,
        )
    })?;
    engine::write_run_record(
        &request.out_dir,
        "segment",
        BTreeMap::from([(table.report.file.clone(), table.report.sha256.clone())]),
        &stages,
        settings,
        model_record,
    )?;
    Ok(SegmentRun {
        document,
        timings: stages.timings,
        out_dir: request.out_dir.clone(),
    })
}

#[cfg(test)]
mod tests {
    use crate::pipeline::engine::{label_indices, plotted_rows};
    use crate::report::html;

    #[test]
    fn large_runs_plot_a_seeded_sorted_subset() {
        assert_eq!(plotted_rows(5, 1), vec![0, 1, 2, 3, 4]);
        let a = plotted_rows(html::MAX_PLOTTED + 10_000, 7);
        assert_eq!(a.len(), html::MAX_PLOTTED);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(a, plotted_rows(html::MAX_PLOTTED + 10_000, 7));
        assert_ne!(a, plotted_rows(html::MAX_PLOTTED + 10_000, 8));
    }

    #[test]
    fn labels_index_in_order_of_first_appearance() {
        let labels: Vec<String> = ["b", "a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            label_indices(&labels),
            (
                vec![0, 1, 0, 2],
                vec!["b".to_string(), "a".to_string(), "c".to_string()]
            )
        );
    }
}
