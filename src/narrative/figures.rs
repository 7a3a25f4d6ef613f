//! The figure catalogue: every number a narrator (built-in or model) may put in a text, each
//! under a stable key, with its value and exactly the string segscope shows for it.
//!
//! The catalogue is the contract between numbers and words: narrators cite keys, the
//! grounding check ([`crate::narrative::grounding`]) accepts a number in a text only when it
//! equals a cited figure within the rounding the text displays, and `segments.json` records
//! the keys each text cites so a reader can trace every number back.
//!
//! # Key grammar
//!
//! Keys are dot-separated paths. Segment ids are the 1-based ids people see (`segment.1` is
//! the largest segment). Names after `segment.<id>.` mirror the field names of
//! `segments.json` (`kpis.business.*`) so a key can be looked up there by eye.
//!
//! ```text
//! key      := run | quality | map | segment | base
//! run      := "k" | "n_customers" | "noise.size" | "noise.share"
//! quality  := "quality." ( "silhouette" | "davies_bouldin" | "calinski_harabasz"
//!                        | "stability" | "external.ari" | "external.nmi" )
//! map      := "maps." ( "pca" | "umap" | "tsne" ) ".trustworthiness"
//!           | "maps.pca.explained_variance_ratio." AXIS            (AXIS from 1)
//! segment  := "segment." ID "." ( "size" | "share" | "stability"
//!           | "feature." COLUMN "." ( "mean" | "median" | "standardized_difference" )
//!           | business )
//! business := ( "recency_days" | "frequency" | "monetary" ) "." ( "mean" | "median" )
//!           | "buyers" | "browsers" | "buyer_share" | "revenue" | "revenue_share"
//!           | "average_order_value" | "conversion_rate"
//!           | ( "top_categories" | "top_brands" ) "." RANK "." ( "lift" | "segment_share"
//!                                                           | "base_share" | "customers" )
//!           | "nearest.centroid_distance"
//! base     := "base.feature." COLUMN ".mean"
//!           | "base." ( "recency_days" | "frequency" | "monetary" ) ".median"
//!           | "base.buyer_share" | "base.conversion_rate"
//! ```
//!
//! `COLUMN` is the feature column's name verbatim (it may itself contain dots; keys are only
//! ever looked up, never parsed). Feature columns live under `feature.` so that a column
//! called `size` or `frequency` cannot collide with a segment's own figures. `RANK` starts at
//! 1. `stability` under a segment is its mean best Jaccard overlap; `quality.stability` is the
//! mean adjusted Rand index of the whole partition.
//!
//! # Displays
//!
//! Shares and rates (`share`, `*_share`, `conversion_rate`, `noise.share`,
//! `explained_variance_ratio`) show as percentages, `figure(v × 100)` followed by `%`
//! (0.1234 → `12.3%`); counts show as integers (`1234`); standardized differences with a sign
//! and one decimal (`+0.9`), as the built-in narrator writes them; everything else with
//! [`figure`] (three significant digits). The grounding check treats a display ending in `%`
//! as a percentage of `value`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analysis::clustering::Stability;
use crate::analysis::kpis::{BusinessKpis, Interest, Summary};
use crate::analysis::profile::SegmentProfile;
use crate::narrative::reading::figure;
use crate::narrative::store_names::BaseMedians;

/// One computed number, as a narrator may cite it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    /// Where it lives in the catalogue (see the module's key grammar).
    pub key: String,
    /// The computed value (a share is a fraction, 0.1234, not 12.34).
    pub value: f64,
    /// Exactly how segscope shows it (`12.3%`, `0.421`, `1234`).
    pub display: String,
}

/// How a kind of figure is shown; decides [`Figure::display`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count of customers, segments, invoices: an integer.
    Count,
    /// A fraction shown as a percentage.
    Share,
    /// A standardized difference: signed, one decimal.
    StandardizedDifference,
    /// Any other number: three significant digits.
    Number,
}

impl Figure {
    /// A figure with the display its unit calls for, so every producer of figures shows a
    /// number the same way.
    pub fn new(key: impl Into<String>, value: f64, unit: Unit) -> Self {
        Figure {
            key: key.into(),
            value,
            display: display(value, unit),
        }
    }

    /// Whether the display is a percentage of `value`.
    pub fn is_percent(&self) -> bool {
        self.display.ends_with('%')
    }
}

/// How segscope shows `value` in `unit`.
pub fn display(value: f64, unit: Unit) -> String {
    if !value.is_finite() {
        return "n/a".to_string();
    }
    match unit {
        Unit::Count => format!("{}", value.round()),
        Unit::Share => format!("{}%", figure(value * 100.0)),
        Unit::StandardizedDifference => format!("{value:+.1}"),
        Unit::Number => figure(value),
    }
}

/// The base's KPIs that store-data figures are compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaseKpis {
    /// The whole base's medians over buyers (the built-in store narrator's reference).
    pub medians: BaseMedians,
    /// Share of all customers who bought.
    pub buyer_share: Option<f64>,
    /// Purchase events per view event over all browsers.
    pub conversion_rate: Option<f64>,
}

/// What the catalogue is built from: everything the narrative stage knows.
#[derive(Debug, Clone, Copy)]
pub struct CatalogueFacts<'a> {
    /// Segment profiles (sizes, shares, feature means), in segment order.
    pub profiles: &'a [SegmentProfile],
    /// Business KPIs aligned with `profiles`, for store data.
    pub business: Option<&'a [BusinessKpis]>,
    /// The base's KPIs, for store data.
    pub base: Option<&'a BaseKpis>,
    /// Customers analysed.
    pub n_customers: usize,
    /// Customers in no segment.
    pub noise: usize,
    /// Mean silhouette.
    pub silhouette: Option<f64>,
    /// Davies–Bouldin index.
    pub davies_bouldin: Option<f64>,
    /// Calinski–Harabasz index.
    pub calinski_harabasz: Option<f64>,
    /// Stability under resampling.
    pub stability: Option<&'a Stability>,
    /// Adjusted Rand index and NMI against known labels.
    pub external: Option<(f64, f64)>,
    /// Each map drawn: its key (`pca`, `umap`, `tsne`) and trustworthiness.
    pub maps: &'a [(&'a str, Option<f64>)],
    /// PCA's explained variance ratio per axis, when PCA was drawn.
    pub explained_variance_ratio: Option<&'a [f64]>,
}

/// Every citable figure of a run, by key (sorted, so anything rendered from it is
/// deterministic).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FigureCatalogue {
    figures: BTreeMap<String, Figure>,
}

impl FigureCatalogue {
    /// An empty catalogue, for callers that assemble figures themselves (e.g. from a stored
    /// `segments.json`).
    pub fn new() -> Self {
        Self::default()
    }

    /// The catalogue of one run.
    pub fn build(facts: &CatalogueFacts<'_>) -> Self {
        let mut c = FigureCatalogue::new();
        c.insert(Figure::new("k", facts.profiles.len() as f64, Unit::Count));
        c.insert(Figure::new(
            "n_customers",
            facts.n_customers as f64,
            Unit::Count,
        ));
        if facts.noise > 0 {
            c.insert(Figure::new("noise.size", facts.noise as f64, Unit::Count));
            c.insert(Figure::new(
                "noise.share",
                facts.noise as f64 / facts.n_customers.max(1) as f64,
                Unit::Share,
            ));
        }
        let quality = [
            ("silhouette", facts.silhouette),
            ("davies_bouldin", facts.davies_bouldin),
            ("calinski_harabasz", facts.calinski_harabasz),
            ("stability", facts.stability.map(|s| s.mean_ari)),
            ("external.ari", facts.external.map(|e| e.0)),
            ("external.nmi", facts.external.map(|e| e.1)),
        ];
        for (name, value) in quality {
            if let Some(v) = value {
                c.insert(Figure::new(format!("quality.{name}"), v, Unit::Number));
            }
        }
        for (map, tw) in facts.maps {
            if let Some(tw) = tw {
                c.insert(Figure::new(
                    format!("maps.{map}.trustworthiness"),
                    *tw,
                    Unit::Number,
                ));
            }
        }
        for (axis, v) in facts
            .explained_variance_ratio
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            c.insert(Figure::new(
                format!("maps.pca.explained_variance_ratio.{}", axis + 1),
                *v,
                Unit::Share,
            ));
        }
        if let Some(base) = facts.base {
            let medians = [
                ("recency_days", base.medians.recency_days),
                ("frequency", base.medians.frequency),
                ("monetary", base.medians.monetary),
            ];
            for (name, v) in medians {
                if let Some(v) = v {
                    c.insert(Figure::new(format!("base.{name}.median"), v, Unit::Number));
                }
            }
            if let Some(v) = base.buyer_share {
                c.insert(Figure::new("base.buyer_share", v, Unit::Share));
            }
            if let Some(v) = base.conversion_rate {
                c.insert(Figure::new("base.conversion_rate", v, Unit::Share));
            }
        }
        if let Some(first) = facts.profiles.first() {
            for f in &first.features {
                c.insert(Figure::new(
                    format!("base.feature.{}.mean", f.feature),
                    f.overall_mean,
                    Unit::Number,
                ));
            }
        }
        for (position, profile) in facts.profiles.iter().enumerate() {
            let id = profile.segment + 1;
            let seg = |rest: &str| format!("segment.{id}.{rest}");
            c.insert(Figure::new(seg("size"), profile.size as f64, Unit::Count));
            c.insert(Figure::new(seg("share"), profile.share, Unit::Share));
            if let Some(j) = facts
                .stability
                .and_then(|s| s.per_segment.get(profile.segment))
            {
                c.insert(Figure::new(seg("stability"), *j, Unit::Number));
            }
            for f in &profile.features {
                let feature = |stat: &str| seg(&format!("feature.{}.{stat}", f.feature));
                c.insert(Figure::new(feature("mean"), f.mean, Unit::Number));
                c.insert(Figure::new(feature("median"), f.median, Unit::Number));
                c.insert(Figure::new(
                    feature("standardized_difference"),
                    f.standardized_difference,
                    Unit::StandardizedDifference,
                ));
            }
            if let Some(k) = facts.business.and_then(|b| b.get(position)) {
                c.insert_business(id, k);
            }
        }
        c
    }

    fn insert_business(&mut self, id: usize, k: &BusinessKpis) {
        let seg = |rest: &str| format!("segment.{id}.{rest}");
        self.insert(Figure::new(seg("buyers"), k.buyers as f64, Unit::Count));
        self.insert(Figure::new(seg("browsers"), k.browsers as f64, Unit::Count));
        self.insert(Figure::new(seg("buyer_share"), k.buyer_share, Unit::Share));
        let summaries: [(&str, Option<Summary>); 3] = [
            ("recency_days", k.recency_days),
            ("frequency", k.frequency),
            ("monetary", k.monetary),
        ];
        for (name, summary) in summaries {
            if let Some(s) = summary {
                self.insert(Figure::new(
                    seg(&format!("{name}.mean")),
                    s.mean,
                    Unit::Number,
                ));
                self.insert(Figure::new(
                    seg(&format!("{name}.median")),
                    s.median,
                    Unit::Number,
                ));
            }
        }
        self.insert(Figure::new(seg("revenue"), k.revenue, Unit::Number));
        self.insert(Figure::new(
            seg("revenue_share"),
            k.revenue_share,
            Unit::Share,
        ));
        if let Some(v) = k.average_order_value {
            self.insert(Figure::new(seg("average_order_value"), v, Unit::Number));
        }
        if let Some(v) = k.conversion_rate {
            self.insert(Figure::new(seg("conversion_rate"), v, Unit::Share));
        }
        let interests: [(&str, &[Interest]); 2] = [
            ("top_categories", &k.top_categories),
            ("top_brands", &k.top_brands),
        ];
        for (list, items) in interests {
            for (rank, i) in items.iter().enumerate() {
                let at = |stat: &str| seg(&format!("{list}.{}.{stat}", rank + 1));
                self.insert(Figure::new(at("lift"), i.lift, Unit::Number));
                self.insert(Figure::new(
                    at("segment_share"),
                    i.segment_share,
                    Unit::Share,
                ));
                self.insert(Figure::new(at("base_share"), i.base_share, Unit::Share));
                self.insert(Figure::new(
                    at("customers"),
                    i.customers as f64,
                    Unit::Count,
                ));
            }
        }
        if let Some(near) = &k.nearest {
            self.insert(Figure::new(
                seg("nearest.centroid_distance"),
                near.centroid_distance,
                Unit::Number,
            ));
        }
    }

    /// Adds or replaces a figure.
    pub fn insert(&mut self, figure: Figure) {
        self.figures.insert(figure.key.clone(), figure);
    }

    /// The figure under `key`, if the run has it.
    pub fn get(&self, key: &str) -> Option<&Figure> {
        self.figures.get(key)
    }

    /// Every figure, by key.
    pub fn iter(&self) -> impl Iterator<Item = &Figure> {
        self.figures.values()
    }

    /// How many figures there are.
    pub fn len(&self) -> usize {
        self.figures.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.figures.is_empty()
    }

    /// The figures of one segment (`segment.<id>.*`), by key.
    pub fn segment(&self, id: usize) -> impl Iterator<Item = &Figure> {
        let prefix = format!("segment.{id}.");
        self.figures
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .map(|(_, f)| f)
    }

    /// The figures that describe the run or the base rather than one segment (everything
    /// not under `segment.`), by key.
    pub fn run_level(&self) -> impl Iterator<Item = &Figure> {
        self.figures
            .values()
            .filter(|f| !f.key.starts_with("segment."))
    }

    /// The figures under `keys`, in that order, skipping unknown keys; for callers that hold
    /// a text's cited keys and need the figures to check it against.
    pub fn cited<'a, S: AsRef<str>>(&'a self, keys: &[S]) -> Vec<&'a Figure> {
        keys.iter().filter_map(|k| self.get(k.as_ref())).collect()
    }
}

/// The key under which the KPI named in a [`crate::analysis::kpis::KpiDifference`] is
/// catalogued for segment `id` (`monetary_median` → `segment.3.monetary.median`).
pub fn difference_key(id: usize, kpi: &str) -> Option<String> {
    let rest = match kpi {
        "recency_median_days" => "recency_days.median",
        "frequency_median" => "frequency.median",
        "monetary_median" => "monetary.median",
        "average_order_value" => "average_order_value",
        "conversion_rate" => "conversion_rate",
        "buyer_share" => "buyer_share",
        _ => return None,
    };
    Some(format!("segment.{id}.{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::kpis::NearestSegment;
    use crate::analysis::profile::FeatureProfile;

    fn profile(segment: usize, size: usize, share: f64) -> SegmentProfile {
        SegmentProfile {
            segment,
            size,
            share,
            features: vec![FeatureProfile {
                feature: "petal_length".into(),
                mean: 1.4621,
                median: 1.5,
                overall_mean: 3.758,
                standardized_difference: -1.3052,
            }],
        }
    }

    fn business() -> BusinessKpis {
        let s = |mean: f64, median: f64| Some(Summary { mean, median });
        BusinessKpis {
            buyers: 12_345,
            browsers: 20,
            buyer_share: 0.8,
            recency_days: s(41.3, 38.0),
            frequency: s(3.2, 3.0),
            monetary: s(1234.56, 980.0),
            revenue: 15_240_000.0,
            revenue_share: 0.4213,
            average_order_value: Some(385.8),
            conversion_rate: Some(0.0525),
            top_categories: vec![Interest {
                name: "appliances.kitchen".into(),
                segment_share: 0.6,
                base_share: 0.2,
                lift: 3.0,
                customers: 6,
            }],
            top_brands: vec![],
            nearest: Some(NearestSegment {
                segment: 2,
                centroid_distance: 1.23456,
                differences: vec![],
            }),
        }
    }

    #[test]
    fn catalogue_holds_every_run_figure_with_its_display() {
        let profiles = [profile(0, 60, 0.6), profile(1, 40, 0.4)];
        let kpis = [business(), business()];
        let base = BaseKpis {
            medians: BaseMedians {
                recency_days: Some(40.0),
                frequency: Some(2.0),
                monetary: Some(500.0),
            },
            buyer_share: Some(0.5),
            conversion_rate: None,
        };
        let stability = Stability {
            mean_ari: 0.9134,
            per_segment: vec![0.95, 0.41],
            resamples: 20,
            failed_refits: 0,
        };
        let maps = [("pca", Some(0.97)), ("tsne", Some(0.8812))];
        let c = FigureCatalogue::build(&CatalogueFacts {
            profiles: &profiles,
            business: Some(&kpis),
            base: Some(&base),
            n_customers: 100,
            noise: 0,
            silhouette: Some(0.4213),
            davies_bouldin: None,
            calinski_harabasz: Some(523.7),
            stability: Some(&stability),
            external: None,
            maps: &maps,
            explained_variance_ratio: Some(&[0.7296, 0.2285]),
        });
        let shown = |key: &str| c.get(key).map(|f| f.display.as_str());
        assert_eq!(shown("k"), Some("2"));
        assert_eq!(shown("n_customers"), Some("100"));
        assert_eq!(shown("quality.silhouette"), Some("0.421"));
        assert_eq!(shown("quality.stability"), Some("0.913"));
        assert_eq!(shown("quality.davies_bouldin"), None);
        assert_eq!(shown("maps.tsne.trustworthiness"), Some("0.881"));
        assert_eq!(shown("maps.pca.explained_variance_ratio.1"), Some("73%"));
        assert_eq!(shown("segment.1.size"), Some("60"));
        assert_eq!(shown("segment.2.share"), Some("40%"));
        assert_eq!(shown("segment.2.stability"), Some("0.41"));
        assert_eq!(shown("segment.1.feature.petal_length.mean"), Some("1.46"));
        assert_eq!(
            shown("segment.1.feature.petal_length.standardized_difference"),
            Some("-1.3")
        );
        assert_eq!(shown("base.feature.petal_length.mean"), Some("3.76"));
        assert_eq!(shown("segment.1.buyers"), Some("12345"));
        assert_eq!(shown("segment.1.monetary.mean"), Some("1235"));
        assert_eq!(shown("segment.1.monetary.median"), Some("980"));
        assert_eq!(shown("segment.1.revenue_share"), Some("42.1%"));
        assert_eq!(shown("segment.1.conversion_rate"), Some("5.25%"));
        assert_eq!(shown("segment.1.top_categories.1.lift"), Some("3"));
        assert_eq!(shown("segment.1.nearest.centroid_distance"), Some("1.23"));
        assert_eq!(shown("base.monetary.median"), Some("500"));
        assert_eq!(shown("base.buyer_share"), Some("50%"));
        assert_eq!(shown("base.conversion_rate"), None);
        let seg2: Vec<&str> = c.segment(2).map(|f| f.key.as_str()).collect();
        assert!(seg2.iter().all(|k| k.starts_with("segment.2.")));
        assert!(seg2.contains(&"segment.2.size"));
        assert!(c.run_level().all(|f| !f.key.starts_with("segment.")));
        assert_eq!(
            c.cited(&["segment.1.size", "nope", "k"])
                .iter()
                .map(|f| f.key.as_str())
                .collect::<Vec<_>>(),
            ["segment.1.size", "k"]
        );
    }

    #[test]
    fn segment_ten_is_not_listed_under_segment_one() {
        let profiles: Vec<SegmentProfile> = (0..10).map(|s| profile(s, 10, 0.1)).collect();
        let c = FigureCatalogue::build(&CatalogueFacts {
            profiles: &profiles,
            business: None,
            base: None,
            n_customers: 100,
            noise: 0,
            silhouette: None,
            davies_bouldin: None,
            calinski_harabasz: None,
            stability: None,
            external: None,
            maps: &[],
            explained_variance_ratio: None,
        });
        assert!(c.segment(1).all(|f| f.key.starts_with("segment.1.")));
        assert_eq!(c.segment(1).count(), c.segment(10).count());
    }

    #[test]
    fn difference_kpis_map_to_catalogue_keys() {
        assert_eq!(
            difference_key(3, "monetary_median").as_deref(),
            Some("segment.3.monetary.median")
        );
        assert_eq!(
            difference_key(1, "recency_median_days").as_deref(),
            Some("segment.1.recency_days.median")
        );
        assert_eq!(difference_key(1, "bogus"), None);
    }

    #[test]
    fn displays_follow_the_unit() {
        assert_eq!(display(0.1234, Unit::Share), "12.3%");
        assert_eq!(display(12.0, Unit::Count), "12");
        assert_eq!(display(0.94, Unit::StandardizedDifference), "+0.9");
        assert_eq!(display(f64::NAN, Unit::Number), "n/a");
    }
}
