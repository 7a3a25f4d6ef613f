//! Stability of segments under resampling (bootstrap, after Hennig's clusterboot).
//!
//! Each resample draws n customers with replacement, refits the same method with the same
//! k, and compares with the full-data segments on the customers it drew: the adjusted Rand
//! index for the whole partition, and for each segment the best Jaccard overlap with any
//! resample cluster. Hennig's reading: a segment below 0.6 mean Jaccard has dissolved, above
//! 0.75 it is stable, above 0.85 highly stable. A refit that fails counts as 0 (the segment
//! did not reappear), which is the honest reading of instability.
//!
//! Resamples run in parallel; each has its own RNG derived from the run's seed and its index
//! and results are collected in index order, so the figures do not depend on threads.

use ndarray::{ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::ClusteringError;
use crate::analysis::progress::Progress;
use crate::analysis::validity::adjusted_rand_score;
use crate::domain::Partition;

/// Resampling settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StabilityParams {
    /// Number of bootstrap resamples (0 skips the measurement).
    pub resamples: usize,
}

impl Default for StabilityParams {
    fn default() -> Self {
        StabilityParams { resamples: 20 }
    }
}

/// Stability figures of one clustering.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stability {
    /// Mean adjusted Rand index between the full-data segments and each resample's.
    pub mean_ari: f64,
    /// Per segment (indexed by segment), mean best Jaccard overlap across resamples.
    pub per_segment: Vec<f64>,
    /// Resamples drawn.
    pub resamples: usize,
    /// Resamples whose refit failed (counted as 0).
    pub failed_refits: usize,
}

/// Measures stability of `reference` by refitting on bootstrap resamples.
pub fn bootstrap_stability<F>(
    x: ArrayView2<f64>,
    reference: &Partition,
    refit: F,
    params: &StabilityParams,
    seed: u64,
    progress: &dyn Progress,
) -> Stability
where
    F: Fn(ArrayView2<f64>, u64) -> Result<Partition, ClusteringError> + Sync,
{
    let n = x.nrows();
    let k = reference.k();
    progress.start("stability", params.resamples as u64);
    let outcomes: Vec<Resample> = (0..params.resamples)
        .into_par_iter()
        .map(|b| {
            let resample_seed = seed ^ (0x9E37_79B9_7F4A_7C15_u64.wrapping_mul(b as u64 + 1));
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(resample_seed);
            let drawn: Vec<usize> = (0..n).map(|_| rng.gen_range(0..n)).collect();
            let sample = x.select(Axis(0), &drawn);
            let outcome = match refit(sample.view(), resample_seed) {
                Ok(fit) => {
                    let (ari, jaccards) = compare(reference, &drawn, &fit);
                    Resample {
                        ari,
                        jaccards,
                        failed: false,
                    }
                }
                Err(_) => Resample {
                    ari: 0.0,
                    jaccards: vec![Some(0.0); k],
                    failed: true,
                },
            };
            progress.advance(1);
            outcome
        })
        .collect();
    progress.finish();
    let mut ari_sum = 0.0;
    let mut jaccard_sum = vec![0.0; k];
    let mut jaccard_count = vec![0usize; k];
    let mut failed_refits = 0;
    for Resample {
        ari,
        jaccards,
        failed,
    } in outcomes
    {
        failed_refits += usize::from(failed);
        ari_sum += ari;
        for (s, j) in jaccards.into_iter().enumerate() {
            if let Some(j) = j {
                jaccard_sum[s] += j;
                jaccard_count[s] += 1;
            }
        }
    }
    let resamples = params.resamples.max(1) as f64;
    let per_segment = jaccard_sum
        .iter()
        .zip(&jaccard_count)
        .map(|(s, &c)| if c > 0 { s / c as f64 } else { 0.0 })
        .collect();
    Stability {
        mean_ari: ari_sum / resamples,
        per_segment,
        resamples: params.resamples,
        failed_refits,
    }
}

/// What one resample showed.
struct Resample {
    ari: f64,
    /// Best Jaccard per reference segment; `None` when no member of it was drawn.
    jaccards: Vec<Option<f64>>,
    failed: bool,
}

/// ARI and per-segment best Jaccard of one resample, over the distinct customers drawn.
fn compare(reference: &Partition, drawn: &[usize], fit: &Partition) -> (f64, Vec<Option<f64>>) {
    let n = reference.len();
    let mut resample_label: Vec<Option<Option<usize>>> = vec![None; n];
    for (pos, &i) in drawn.iter().enumerate() {
        if resample_label[i].is_none() {
            resample_label[i] = Some(fit.labels()[pos]);
        }
    }
    let drawn_once: Vec<usize> = (0..n).filter(|&i| resample_label[i].is_some()).collect();
    let noise_ref = reference.k();
    let noise_fit = fit.k();
    let a: Vec<usize> = drawn_once
        .iter()
        .map(|&i| reference.labels()[i].unwrap_or(noise_ref))
        .collect();
    let b: Vec<usize> = drawn_once
        .iter()
        .map(|&i| resample_label[i].flatten().unwrap_or(noise_fit))
        .collect();
    let ari = adjusted_rand_score(&a, &b).unwrap_or(0.0);
    // Contingency counts between reference segments and resample clusters (noise excluded).
    let mut both = vec![vec![0usize; noise_fit]; noise_ref];
    let mut ref_size = vec![0usize; noise_ref];
    let mut fit_size = vec![0usize; noise_fit];
    for (&ra, &fb) in a.iter().zip(&b) {
        if ra < noise_ref {
            ref_size[ra] += 1;
        }
        if fb < noise_fit {
            fit_size[fb] += 1;
        }
        if ra < noise_ref && fb < noise_fit {
            both[ra][fb] += 1;
        }
    }
    let jaccards = (0..noise_ref)
        .map(|s| {
            (ref_size[s] > 0).then(|| {
                (0..noise_fit)
                    .map(|c| {
                        let inter = both[s][c] as f64;
                        inter / ((ref_size[s] + fit_size[c]) as f64 - inter)
                    })
                    .fold(0.0, f64::max)
            })
        })
        .collect();
    (ari, jaccards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaccard_and_ari_of_one_resample() {
        // Reference: customers 0-3 in segment 0, 4-5 in segment 1.
        let reference = Partition::from_raw([Some(0), Some(0), Some(0), Some(0), Some(1), Some(1)]);
        // Drawn: 0, 0, 1, 4, 5, 2 -> distinct 0, 1, 2, 4, 5; the refit puts 2 with 4 and 5.
        let drawn = [0, 0, 1, 4, 5, 2];
        let fit = Partition::from_raw([Some(0), Some(0), Some(0), Some(1), Some(1), Some(1)]);
        let (ari, jaccards) = compare(&reference, &drawn, &fit);
        // Segment 0 drawn as {0,1,2}; best match {0,1}: 2/3. Segment 1 drawn as {4,5}; best {2,4,5}: 2/3.
        assert!((jaccards[0].expect("drawn") - 2.0 / 3.0).abs() < 1e-12);
        assert!((jaccards[1].expect("drawn") - 2.0 / 3.0).abs() < 1e-12);
        let expected_ari = adjusted_rand_score(&[0, 0, 0, 1, 1], &[0, 0, 1, 1, 1]).expect("ari");
        assert_eq!(ari, expected_ari);
    }

    #[test]
    fn a_segment_not_drawn_is_not_scored() {
        let reference = Partition::from_raw([Some(0), Some(0), Some(1)]);
        let fit = Partition::from_raw([Some(0), Some(0)]);
        let (_, jaccards) = compare(&reference, &[0, 1], &fit);
        assert_eq!(jaccards[1], None);
    }
}
