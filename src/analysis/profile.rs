//! Per-segment profiles of the features, in the units people know (raw, unscaled values):
//! mean and median of each feature in the segment and overall, and the standardized
//! difference (segment mean − overall mean) / overall standard deviation, which is what says
//! what sets a segment apart.

use ndarray::{ArrayView2, Axis};
use serde::Serialize;

use crate::domain::Partition;

/// One feature in one segment.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FeatureProfile {
    /// Feature name.
    pub feature: String,
    /// Mean in the segment.
    pub mean: f64,
    /// Median in the segment.
    pub median: f64,
    /// Mean over all customers.
    pub overall_mean: f64,
    /// (segment mean − overall mean) / overall population standard deviation.
    pub standardized_difference: f64,
}

/// One segment's size and feature profile.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SegmentProfile {
    /// Segment index.
    pub segment: usize,
    /// Customers in the segment.
    pub size: usize,
    /// Share of all customers (noise included in the base).
    pub share: f64,
    /// Each feature, in column order.
    pub features: Vec<FeatureProfile>,
}

/// Profiles every segment of `partition` over the raw feature values.
pub fn profile_segments(
    raw: ArrayView2<f64>,
    names: &[String],
    partition: &Partition,
) -> Vec<SegmentProfile> {
    let n = raw.nrows();
    let overall_mean = raw
        .mean_axis(Axis(0))
        .map(|m| m.to_vec())
        .unwrap_or_else(|| vec![0.0; raw.ncols()]);
    let overall_std: Vec<f64> = raw
        .axis_iter(Axis(1))
        .zip(&overall_mean)
        .map(|(col, m)| {
            (col.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n.max(1) as f64).sqrt()
        })
        .collect();
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); partition.k()];
    for (i, label) in partition.labels().iter().enumerate() {
        if let Some(s) = label {
            members[*s].push(i);
        }
    }
    members
        .iter()
        .enumerate()
        .map(|(segment, rows)| {
            let features = names
                .iter()
                .enumerate()
                .map(|(j, name)| {
                    let mut values: Vec<f64> = rows.iter().map(|&i| raw[[i, j]]).collect();
                    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
                    values.sort_by(f64::total_cmp);
                    let median = median_sorted(&values);
                    let std = overall_std[j];
                    FeatureProfile {
                        feature: name.clone(),
                        mean,
                        median,
                        overall_mean: overall_mean[j],
                        standardized_difference: if std > 0.0 {
                            (mean - overall_mean[j]) / std
                        } else {
                            0.0
                        },
                    }
                })
                .collect();
            SegmentProfile {
                segment,
                size: rows.len(),
                share: rows.len() as f64 / n.max(1) as f64,
                features,
            }
        })
        .collect()
}

fn median_sorted(values: &[f64]) -> f64 {
    match values.len() {
        0 => 0.0,
        len if len % 2 == 1 => values[len / 2],
        len => (values[len / 2 - 1] + values[len / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn profiles_use_raw_units() {
        let raw = array![[1.0, 10.0], [3.0, 10.0], [8.0, 20.0], [8.0, 40.0]];
        let p = Partition::from_raw([Some(0), Some(0), Some(1), Some(1)]);
        let names = vec!["a".to_string(), "b".to_string()];
        let profiles = profile_segments(raw.view(), &names, &p);
        assert_eq!(profiles.len(), 2);
        assert_eq!(profiles[0].size, 2);
        assert_eq!(profiles[0].share, 0.5);
        let a0 = &profiles[0].features[0];
        assert_eq!((a0.mean, a0.median, a0.overall_mean), (2.0, 2.0, 5.0));
        // overall std of a: values 1,3,8,8 mean 5 -> var (16+4+9+9)/4 = 9.5
        assert!((a0.standardized_difference - (-3.0 / 9.5f64.sqrt())).abs() < 1e-12);
        assert_eq!(profiles[1].features[1].median, 30.0);
    }
}
