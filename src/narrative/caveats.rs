//! Caveats produced by code from the computed figures and the configured thresholds.
//!
//! Two are always stated when their map is drawn (t-SNE gaps and sizes are not distances or
//! densities; UMAP distances between clusters are only roughly meaningful); the others when
//! the numbers call for them: weak structure, unstable or tiny segments, a map with low
//! trustworthiness, a segment that a map shows split, many noise customers, dropped rows.

use crate::analysis::clustering::Stability;
use crate::analysis::profile::SegmentProfile;
use crate::analysis::separation::SplitSegment;
use crate::domain::MapMethod;
use crate::narrative::reading::figure;
use crate::narrative::{Caveat, CaveatKind, CaveatThresholds, SegmentText};

/// What one map showed.
#[derive(Debug, Clone)]
pub struct MapFacts {
    /// Which map.
    pub method: MapMethod,
    /// Its trustworthiness, when measured.
    pub trustworthiness: Option<f64>,
    /// Segments it shows as several islands.
    pub splits: Vec<SplitSegment>,
}

/// The figures caveats are drawn from.
#[derive(Debug, Clone)]
pub struct CaveatFacts<'a> {
    /// Segment profiles (sizes and shares).
    pub profiles: &'a [SegmentProfile],
    /// Segment names, to refer to segments in sentences.
    pub names: &'a [SegmentText],
    /// Mean silhouette, when it could be computed.
    pub silhouette: Option<f64>,
    /// Stability under resampling, when measured.
    pub stability: Option<&'a Stability>,
    /// Each map drawn.
    pub maps: &'a [MapFacts],
    /// Customers in no segment.
    pub noise: usize,
    /// Customers analysed.
    pub n_customers: usize,
    /// Input rows dropped before the analysis.
    pub rows_dropped: usize,
    /// Size of the sample segments and maps were fitted on, when the run sampled.
    pub fit_sample: Option<usize>,
    /// Thresholds.
    pub thresholds: &'a CaveatThresholds,
}

/// Caveats for the whole run, and for each segment. Segment caveats also appear in the
/// run's list, so that list alone is complete.
pub fn caveats_for(facts: &CaveatFacts<'_>) -> (Vec<Caveat>, Vec<Vec<Caveat>>) {
    let t = facts.thresholds;
    let mut run = Vec::new();
    let caveat = |kind, message: String| Caveat { kind, message };
    for map in facts.maps {
        match map.method {
            MapMethod::Tsne => run.push(caveat(
                CaveatKind::TsneDistances,
                "In the t-SNE map, gaps between clusters are not distances and cluster sizes are not densities: \
                 t-SNE keeps each customer's neighbours together and says nothing about how far apart groups are."
                    .into(),
            )),
            MapMethod::Umap => run.push(caveat(
                CaveatKind::UmapDistances,
                "In the UMAP map, distances between clusters are only roughly meaningful; compare neighbourhoods, \
                 not gaps."
                    .into(),
            )),
            MapMethod::Pca => {}
        }
    }
    if let Some(s) = facts.silhouette {
        if s < t.weak_silhouette / 2.0 {
            run.push(caveat(
                CaveatKind::WeakStructure,
                format!(
                    "No substantial structure: the mean silhouette is {} (below {}). The segments cut a continuous \
                     cloud of customers; treat them as ranges, not as distinct groups.",
                    figure(s),
                    figure(t.weak_silhouette / 2.0)
                ),
            ));
        } else if s < t.weak_silhouette {
            run.push(caveat(
                CaveatKind::WeakStructure,
                format!(
                    "Weak structure: the mean silhouette is {} (below {}). Many customers sit near segment borders.",
                    figure(s),
                    figure(t.weak_silhouette)
                ),
            ));
        }
    }
    for map in facts.maps {
        if let Some(tw) = map.trustworthiness.filter(|tw| *tw < t.low_trustworthiness) {
            run.push(caveat(
                CaveatKind::LowTrustworthiness,
                format!(
                    "The {} map keeps neighbourhoods poorly (trustworthiness {}, below {}): customers drawn \
                     together may not be alike.",
                    map.method.display_name(),
                    figure(tw),
                    figure(t.low_trustworthiness)
                ),
            ));
        }
    }
    if facts.noise > 0 && facts.n_customers > 0 {
        run.push(caveat(
            CaveatKind::Noise,
            format!(
                "{} customers ({}%) belong to no segment: HDBSCAN found them in no dense group. They are listed with \
                 an empty segment, not as a segment of their own.",
                facts.noise,
                figure(facts.noise as f64 * 100.0 / facts.n_customers as f64)
            ),
        ));
    }
    if let Some(sample) = facts.fit_sample {
        let fitted_maps: Vec<&str> = facts
            .maps
            .iter()
            .filter(|m| m.method != MapMethod::Pca)
            .map(|m| m.method.display_name())
            .collect();
        let what = match fitted_maps.as_slice() {
            [] => "Segments were".to_string(),
            [one] => format!("Segments and the {one} map were"),
            many => format!("Segments and the {} maps were", many.join(" and ")),
        };
        run.push(caveat(
            CaveatKind::Sampled,
            format!(
                "{what} fitted on a random sample of {sample} of the {} customers; everyone else was placed with \
                 the fitted model. Silhouette, stability and map trustworthiness were measured on that sample; PCA, \
                 segment sizes and profiles cover everyone.",
                facts.n_customers
            ),
        ));
    }
    if facts.rows_dropped > 0 {
        run.push(caveat(
            CaveatKind::DroppedRows,
            format!(
                "{} input rows were left out (missing or non-finite values); the figures describe the other {} customers.",
                facts.rows_dropped, facts.n_customers
            ),
        ));
    }

    let mut per_segment: Vec<Vec<Caveat>> = vec![Vec::new(); facts.profiles.len()];
    for (s, profile) in facts.profiles.iter().enumerate() {
        let name = facts
            .names
            .get(s)
            .map(|n| n.name.as_str())
            .unwrap_or("this segment");
        if profile.size < t.tiny_segment_size || profile.share < t.tiny_segment_share {
            per_segment[s].push(caveat(
                CaveatKind::TinySegment,
                format!(
                    "\"{name}\" has only {} customers ({}% of the base): too few to treat as a market or to trust its averages.",
                    profile.size,
                    figure(profile.share * 100.0)
                ),
            ));
        }
        if let Some(j) = facts
            .stability
            .and_then(|st| st.per_segment.get(s))
            .filter(|j| **j < t.unstable_jaccard)
        {
            per_segment[s].push(caveat(
                CaveatKind::UnstableSegment,
                format!(
                    "\"{name}\" is unstable: under resampling it reappears with a mean Jaccard overlap of only {} \
                     (below {}); its borders, or the segment itself, may not hold.",
                    figure(*j),
                    figure(t.unstable_jaccard)
                ),
            ));
        }
        for map in facts.maps {
            if let Some(split) = map.splits.iter().find(|sp| sp.segment == s) {
                per_segment[s].push(caveat(
                    CaveatKind::SplitInMap,
                    format!(
                        "The {} map shows \"{name}\" as {} separate islands (sizes {}): it may mix different kinds of customers.",
                        map.method.display_name(),
                        split.parts.len(),
                        split.parts.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
    }
    run.extend(per_segment.iter().flatten().cloned());
    (run, per_segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds() -> CaveatThresholds {
        CaveatThresholds {
            weak_silhouette: 0.5,
            unstable_jaccard: 0.6,
            tiny_segment_size: 30,
            tiny_segment_share: 0.02,
            low_trustworthiness: 0.9,
            label_overlap_separate: 0.01,
        }
    }

    fn profile(segment: usize, size: usize, share: f64) -> SegmentProfile {
        SegmentProfile {
            segment,
            size,
            share,
            features: vec![],
        }
    }

    fn text(name: &str) -> SegmentText {
        SegmentText {
            name: name.into(),
            description: String::new(),
            figures: Vec::new(),
        }
    }

    #[test]
    fn caveats_follow_the_numbers() {
        let profiles = [
            profile(0, 900, 0.9),
            profile(1, 100, 0.1),
            profile(2, 12, 0.012),
        ];
        let names = [text("A"), text("B"), text("C")];
        let stability = Stability {
            mean_ari: 0.7,
            per_segment: vec![0.95, 0.41, 0.8],
            resamples: 20,
            failed_refits: 0,
        };
        let maps = [
            MapFacts {
                method: MapMethod::Pca,
                trustworthiness: Some(0.97),
                splits: vec![],
            },
            MapFacts {
                method: MapMethod::Tsne,
                trustworthiness: Some(0.85),
                splits: vec![SplitSegment {
                    segment: 0,
                    parts: vec![500, 400],
                }],
            },
        ];
        let t = thresholds();
        let facts = CaveatFacts {
            profiles: &profiles,
            names: &names,
            silhouette: Some(0.31),
            stability: Some(&stability),
            maps: &maps,
            noise: 0,
            n_customers: 1012,
            rows_dropped: 3,
            fit_sample: Some(500),
            thresholds: &t,
        };
        let (run, per_segment) = caveats_for(&facts);
        let kinds: Vec<CaveatKind> = run.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            vec![
                CaveatKind::TsneDistances,
                CaveatKind::WeakStructure,
                CaveatKind::LowTrustworthiness,
                CaveatKind::Sampled,
                CaveatKind::DroppedRows,
                CaveatKind::SplitInMap,
                CaveatKind::UnstableSegment,
                CaveatKind::TinySegment,
            ]
        );
        assert_eq!(
            per_segment[0][0].message,
            "The t-SNE map shows \"A\" as 2 separate islands (sizes 500, 400): it may mix different kinds of customers."
        );
        assert!(per_segment[1][0].message.contains("0.41"));
        assert!(
            run[3].message.starts_with("Segments and the t-SNE map were fitted on a random sample of 500 of the 1012 customers"),
            "{}",
            run[3].message
        );
        assert!(
            per_segment[2][0]
                .message
                .contains("only 12 customers (1.2% of the base)")
        );
        assert!(
            run[1]
                .message
                .starts_with("Weak structure: the mean silhouette is 0.31 (below 0.5)")
        );
    }
}
