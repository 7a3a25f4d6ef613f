//! Plain-language readings of validity figures, with the conventional thresholds named so
//! that a reader can disagree with them: silhouette after Kaufman and Rousseeuw, stability
//! after Hennig's clusterboot, trustworthiness after Venna and Kaski.

use crate::analysis::separation::LabelOverlap;

/// A figure as people read it: three significant digits, no trailing zeros.
pub fn figure(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (2 - magnitude).clamp(0, 6) as usize;
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// What a mean silhouette says about the structure.
pub fn silhouette(s: f64) -> String {
    let verdict = match s {
        s if s >= 0.7 => {
            "strong structure: customers sit clearly closer to their own segment than to the next"
        }
        s if s >= 0.5 => {
            "reasonable structure: segments are distinct, with some customers near the borders"
        }
        s if s >= 0.25 => {
            "weak structure: segments overlap and may partly be an artefact of the method"
        }
        _ => {
            "no substantial structure: the data is closer to one continuous cloud than to separate groups"
        }
    };
    format!(
        "Mean silhouette {} (−1 to 1; 0.7 strong, 0.5 reasonable, 0.25 weak): {verdict}.",
        figure(s)
    )
}

/// What the Davies–Bouldin index says.
pub fn davies_bouldin(v: f64) -> String {
    let verdict = if v < 1.0 {
        "segments are on average more compact than they are close to their nearest neighbour"
    } else {
        "segments are on average about as wide as the distance to their nearest neighbour, or wider"
    };
    format!(
        "Davies–Bouldin {} (0 is best, lower is better): {verdict}.",
        figure(v)
    )
}

/// What the Calinski–Harabasz index says.
pub fn calinski_harabasz(v: f64) -> String {
    format!(
        "Calinski–Harabasz {} (between-segment over within-segment dispersion; higher is better, \
         comparable only between runs on the same data).",
        figure(v)
    )
}

/// What the bootstrap ARI says.
pub fn stability(mean_ari: f64, resamples: usize) -> String {
    let verdict = match mean_ari {
        a if a >= 0.85 => "highly stable: resampling the customers gives nearly the same segments",
        a if a >= 0.75 => "stable: resampling mostly reproduces the segments",
        a if a >= 0.6 => "partly stable: the broad pattern holds but borders move",
        _ => "unstable: resampling the customers gives noticeably different segments",
    };
    format!(
        "Stability {} (mean adjusted Rand index over {resamples} bootstrap resamples): {verdict}.",
        figure(mean_ari)
    )
}

/// What a map's trustworthiness says.
pub fn trustworthiness(map: &str, t: f64, k: usize) -> String {
    let verdict = match t {
        t if t >= 0.95 => "neighbours in the map are almost always neighbours in the data",
        t if t >= 0.9 => "neighbours in the map are mostly neighbours in the data",
        _ => {
            "the map puts many customers next to others that are not their neighbours in the data; read it with care"
        }
    };
    format!(
        "{map} trustworthiness {} ({k} neighbours; 1 is perfect): {verdict}.",
        figure(t)
    )
}

/// Whether the known labels separate in a map, and which overlap, in one or two sentences.
pub fn label_separation(
    map: &str,
    label_column: &str,
    overlaps: &[LabelOverlap],
    threshold: f64,
) -> String {
    let mut labels: Vec<&str> = Vec::new();
    for o in overlaps {
        for l in [o.a.as_str(), o.b.as_str()] {
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
    }
    let overlapping: Vec<&LabelOverlap> =
        overlaps.iter().filter(|o| o.overlap >= threshold).collect();
    if overlapping.is_empty() {
        return format!(
            "In the {map} map, all {} {label_column} values separate.",
            labels.len()
        );
    }
    let isolated: Vec<&str> = labels
        .iter()
        .copied()
        .filter(|l| overlapping.iter().all(|o| o.a != *l && o.b != *l))
        .collect();
    let pairs: Vec<String> = overlapping
        .iter()
        .map(|o| {
            format!(
                "{} and {} overlap ({}% of their neighbours cross)",
                o.a,
                o.b,
                figure(o.overlap * 100.0)
            )
        })
        .collect();
    let mut text = format!("In the {map} map, ");
    match isolated.len() {
        0 => {}
        1 => text.push_str(&format!("{} separates from the others; ", isolated[0])),
        _ => text.push_str(&format!(
            "{} separate from the others; ",
            join_words(&isolated)
        )),
    }
    text.push_str(&pairs.join("; "));
    text.push('.');
    text
}

fn join_words(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_have_three_significant_digits() {
        assert_eq!(figure(0.924_618), "0.925");
        assert_eq!(figure(5.0), "5");
        assert_eq!(figure(1234.6), "1235");
        assert_eq!(figure(-0.0531), "-0.0531");
        assert_eq!(figure(f64::NAN), "n/a");
    }

    #[test]
    fn separation_sentence_names_the_overlapping_pair() {
        let o = |a: &str, b: &str, overlap: f64| LabelOverlap {
            a: a.into(),
            b: b.into(),
            overlap,
        };
        let overlaps = [
            o("setosa", "versicolor", 0.0),
            o("setosa", "virginica", 0.0),
            o("versicolor", "virginica", 0.083),
        ];
        assert_eq!(
            label_separation("PCA", "species", &overlaps, 0.01),
            "In the PCA map, setosa separates from the others; versicolor and virginica overlap (8.3% of their neighbours cross)."
        );
        let clean = [o("a", "b", 0.0)];
        assert_eq!(
            label_separation("t-SNE", "class", &clean, 0.01),
            "In the t-SNE map, all 2 class values separate."
        );
    }
}
