//! The statistics movement is judged by: population-stability index, the two-sample
//! Kolmogorov–Smirnov test, robust (median/MAD) z-scores and the binomial z-score of a count
//! against a baseline rate. Plain functions on slices; no I/O.

/// Proportions below this are raised to it before the PSI's logarithm, so an empty bin
/// contributes a large but finite term (the usual convention; 1e-4 is what most credit-risk
/// tooling uses).
pub const PSI_FLOOR: f64 = 1e-4;

/// Population-stability index of `actual` against `expected` proportions (same bins):
/// `Σ (a − e) · ln(a / e)`, each proportion floored at [`PSI_FLOOR`]. By convention below 0.1
/// is stable, 0.1–0.25 worth watching, above 0.25 a real shift.
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    expected
        .iter()
        .zip(actual)
        .map(|(&e, &a)| {
            let (e, a) = (e.max(PSI_FLOOR), a.max(PSI_FLOOR));
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// Bin edges (upper bounds) at the `bins`-quantiles of `reference`, duplicates removed so
/// that a value shared by many customers (zero views, say) is one bin rather than several
/// empty ones. The last bin is open above.
pub fn quantile_edges(reference: &[f64], bins: usize) -> Vec<f64> {
    let mut sorted: Vec<f64> = reference
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() || bins < 2 {
        return Vec::new();
    }
    let mut edges: Vec<f64> = (1..bins)
        .map(|i| {
            let pos = (i as f64 / bins as f64) * (sorted.len() - 1) as f64;
            sorted[pos.round() as usize]
        })
        .collect();
    edges.dedup_by(|a, b| a == b);
    edges
}

/// Share of `values` in each bin of `edges` (value ≤ edge, first edge that holds; the last
/// bin takes the rest).
pub fn bin_shares(values: &[f64], edges: &[f64]) -> Vec<f64> {
    let mut counts = vec![0usize; edges.len() + 1];
    for &v in values {
        let bin = edges.iter().position(|&e| v <= e).unwrap_or(edges.len());
        counts[bin] += 1;
    }
    let n = values.len().max(1) as f64;
    counts.into_iter().map(|c| c as f64 / n).collect()
}

/// PSI of `actual` against `reference`, binned at the reference's quantiles.
pub fn psi_of_samples(reference: &[f64], actual: &[f64], bins: usize) -> f64 {
    let edges = quantile_edges(reference, bins);
    psi(&bin_shares(reference, &edges), &bin_shares(actual, &edges))
}

/// Two-sample Kolmogorov–Smirnov statistic and its asymptotic p-value (ties handled by
/// evaluating both empirical distributions at every distinct value; with many ties the
/// p-value is conservative).
pub fn ks_two_sample(a: &[f64], b: &[f64]) -> (f64, f64) {
    if a.is_empty() || b.is_empty() {
        return (0.0, 1.0);
    }
    let mut a: Vec<f64> = a.to_vec();
    let mut b: Vec<f64> = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0.0f64);
    while i < a.len() && j < b.len() {
        let v = if a[i] <= b[j] { a[i] } else { b[j] };
        while i < a.len() && a[i] <= v {
            i += 1;
        }
        while j < b.len() && b[j] <= v {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    let (n, m) = (a.len() as f64, b.len() as f64);
    let en = (n * m / (n + m)).sqrt();
    let lambda = (en + 0.12 + 0.11 / en) * d;
    (d, kolmogorov_q(lambda))
}

/// `Q_KS(λ) = 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²}` (Numerical Recipes' `probks`).
fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda < 1e-3 {
        return 1.0;
    }
    let mut sum = 0.0;
    let mut sign = 1.0;
    for k in 1..=100 {
        let k = f64::from(k);
        let term = sign * 2.0 * (-2.0 * k * k * lambda * lambda).exp();
        sum += term;
        if term.abs() < 1e-12 {
            return sum.clamp(0.0, 1.0);
        }
        sign = -sign;
    }
    1.0
}

/// Median of `values` (NaN-free), 0 for none.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

/// Median and scaled median absolute deviation (`1.4826 · MAD`, the normal-consistent
/// spread), the centre and scale of robust z-scores.
pub fn median_mad(values: &[f64]) -> (f64, f64) {
    let m = median(values);
    let deviations: Vec<f64> = values.iter().map(|v| (v - m).abs()).collect();
    (m, 1.4826 * median(&deviations))
}

/// z-score of `count` successes in `trials` against the rate `baseline` (normal
/// approximation to the binomial).
pub fn binomial_z(count: f64, trials: f64, baseline: f64) -> f64 {
    let var = trials * baseline * (1.0 - baseline);
    if var <= 0.0 {
        return 0.0;
    }
    (count - trials * baseline) / var.sqrt()
}

/// `p`-quantile of `values` (linear interpolation, numpy's default); 0 for none.
pub fn quantile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = p.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}
