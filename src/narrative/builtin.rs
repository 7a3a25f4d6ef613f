//! The built-in narrator: names and one-line descriptions written from the segment
//! profiles alone, so every word traces back to a computed figure.
//!
//! A name lists what sets the segment apart: its features with the largest standardized
//! difference from the overall mean (|d| >= 0.5 counts as "high"/"low", |d| >= 1.5 as
//! "very"). Names must be unique: segments that would share a name get more features named
//! until they differ, and as a last resort their segment number.

use crate::analysis::profile::{FeatureProfile, SegmentProfile};
use crate::narrative::SegmentText;
use crate::narrative::reading::figure;

/// |standardized difference| from which a feature is called high or low.
const NOTABLE: f64 = 0.5;
/// |standardized difference| from which a feature is called very high or very low.
const STRONG: f64 = 1.5;

/// Names and describes every segment; names are unique.
pub fn name_segments(profiles: &[SegmentProfile]) -> Vec<SegmentText> {
    let ranked: Vec<Vec<&FeatureProfile>> = profiles.iter().map(rank_features).collect();
    let mut depth: Vec<usize> = ranked
        .iter()
        .map(|r| {
            r.iter()
                .take(2)
                .filter(|f| f.standardized_difference.abs() >= NOTABLE)
                .count()
        })
        .collect();
    let mut names: Vec<String> = ranked
        .iter()
        .zip(&depth)
        .map(|(r, &d)| compose(r, d))
        .collect();
    loop {
        let clashing: Vec<usize> = (0..names.len())
            .filter(|&i| {
                names
                    .iter()
                    .enumerate()
                    .any(|(j, n)| j != i && *n == names[i])
            })
            .collect();
        if clashing.is_empty() {
            break;
        }
        let mut grew = false;
        for &i in &clashing {
            if depth[i] < ranked[i].len() {
                depth[i] += 1;
                names[i] = compose(&ranked[i], depth[i]);
                grew = true;
            }
        }
        if !grew {
            for &i in &clashing {
                names[i] = format!("{} (segment {})", names[i], profiles[i].segment + 1);
            }
            break;
        }
    }
    profiles
        .iter()
        .zip(ranked)
        .zip(names)
        .map(|((profile, ranked), name)| {
            let (description, figures) = describe(profile, &ranked);
            SegmentText {
                name,
                description,
                figures,
            }
        })
        .collect()
}

/// Features by decreasing |standardized difference|, ties in column order.
fn rank_features(profile: &SegmentProfile) -> Vec<&FeatureProfile> {
    let mut ranked: Vec<&FeatureProfile> = profile.features.iter().collect();
    ranked.sort_by(|a, b| {
        b.standardized_difference
            .abs()
            .total_cmp(&a.standardized_difference.abs())
    });
    ranked
}

fn compose(ranked: &[&FeatureProfile], depth: usize) -> String {
    if depth == 0 {
        return "Close to average on every feature".to_string();
    }
    let parts: Vec<String> = ranked.iter().take(depth).map(|f| descriptor(f)).collect();
    let mut name = parts.join(", ");
    if let Some(first) = name.get(..1) {
        name = first.to_uppercase() + &name[1..];
    }
    name
}

fn descriptor(f: &FeatureProfile) -> String {
    let d = f.standardized_difference;
    let level = match d {
        d if d >= STRONG => "very high",
        d if d >= NOTABLE => "high",
        d if d > 0.0 => "slightly high",
        d if d <= -STRONG => "very low",
        d if d <= -NOTABLE => "low",
        d if d < 0.0 => "slightly low",
        _ => "average",
    };
    format!("{level} {}", humanize(&f.feature))
}

/// The description and the keys of the figures it states.
fn describe(profile: &SegmentProfile, ranked: &[&FeatureProfile]) -> (String, Vec<String>) {
    let id = profile.segment + 1;
    let mut figures = vec![format!("segment.{id}.size"), format!("segment.{id}.share")];
    let head = format!(
        "{} customers ({}% of the base)",
        profile.size,
        figure(profile.share * 100.0)
    );
    let notable: Vec<String> = ranked
        .iter()
        .take(3)
        .filter(|f| f.standardized_difference.abs() >= NOTABLE)
        .map(|f| {
            figures.extend([
                format!("segment.{id}.feature.{}.mean", f.feature),
                format!("base.feature.{}.mean", f.feature),
                format!("segment.{id}.feature.{}.standardized_difference", f.feature),
            ]);
            format!(
                "{} averages {} against {} overall ({:+.1} SD)",
                humanize(&f.feature),
                figure(f.mean),
                figure(f.overall_mean),
                f.standardized_difference
            )
        })
        .collect();
    let text = if notable.is_empty() {
        format!(
            "{head}; no feature is more than {NOTABLE} standard deviations from the overall mean."
        )
    } else {
        format!("{head}; {}.", notable.join("; "))
    };
    (text, figures)
}

/// Column names as words: `petal_length` → `petal length`.
pub fn humanize(column: &str) -> String {
    column.replace(['_', '-'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(segment: usize, size: usize, diffs: &[(&str, f64)]) -> SegmentProfile {
        SegmentProfile {
            segment,
            size,
            share: size as f64 / 100.0,
            features: diffs
                .iter()
                .map(|(name, d)| FeatureProfile {
                    feature: name.to_string(),
                    mean: 10.0 + d,
                    median: 10.0 + d,
                    overall_mean: 10.0,
                    standardized_difference: *d,
                })
                .collect(),
        }
    }

    #[test]
    fn names_say_what_sets_a_segment_apart() {
        let texts = name_segments(&[
            profile(0, 60, &[("petal_length", -1.6), ("sepal_width", 0.9)]),
            profile(1, 40, &[("petal_length", 1.0), ("sepal_width", -0.2)]),
        ]);
        assert_eq!(texts[0].name, "Very low petal length, high sepal width");
        assert_eq!(texts[1].name, "High petal length");
        assert_eq!(
            texts[0].figures,
            [
                "segment.1.size",
                "segment.1.share",
                "segment.1.feature.petal_length.mean",
                "base.feature.petal_length.mean",
                "segment.1.feature.petal_length.standardized_difference",
                "segment.1.feature.sepal_width.mean",
                "base.feature.sepal_width.mean",
                "segment.1.feature.sepal_width.standardized_difference",
            ]
        );
        assert_eq!(
            texts[0].description,
            "60 customers (60% of the base); petal length averages 8.4 against 10 overall (-1.6 SD); \
             sepal width averages 10.9 against 10 overall (+0.9 SD)."
        );
    }

    #[test]
    fn clashing_names_grow_until_unique() {
        let texts = name_segments(&[
            profile(0, 30, &[("a", 1.0), ("b", 0.2), ("c", 0.1)]),
            profile(1, 30, &[("a", 1.0), ("b", -0.2), ("c", 0.1)]),
            profile(2, 30, &[("a", 0.1), ("b", 0.1), ("c", 0.1)]),
            profile(3, 10, &[("a", 0.0), ("b", 0.0), ("c", 0.0)]),
        ]);
        let names: Vec<&str> = texts.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names[0], "High a, slightly high b");
        assert_eq!(names[1], "High a, slightly low b");
        // Both start as "Close to average on every feature", then name their first feature.
        assert_eq!(names[2], "Slightly high a");
        assert_eq!(names[3], "Average a");
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 4);
    }
}
