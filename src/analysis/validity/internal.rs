//! Centroid-based internal validity: Davies–Bouldin and Calinski–Harabasz, as
//! `sklearn.metrics.davies_bouldin_score` and `calinski_harabasz_score`.
//!
//! Both cost `O(n · features)` plus `O(n_clusters²)` for Davies–Bouldin, so they run
//! sequentially, in index order.

use ndarray::{Array1, Array2, ArrayView2, Axis};

use super::labels::Codes;
use super::points::check_matrix;
use super::{Input, ValidityError};

/// Davies–Bouldin index: the mean, over clusters, of the worst ratio of summed within-cluster
/// scatter to centroid separation (0 is best, lower is better); cheap where silhouette is
/// quadratic, and sklearn's number for the same labels.
///
/// Scatter is the mean Euclidean distance of a cluster's points to its centroid. As sklearn:
/// 0 when every scatter or every centroid distance is within 1e-8 of 0 (`np.allclose`), and a
/// pair of distinct clusters with coincident centroids is ignored rather than dividing by 0.
/// Fails like [`silhouette_score`](super::silhouette_score).
pub fn davies_bouldin_score(x: ArrayView2<f64>, labels: &[usize]) -> Result<f64, ValidityError> {
    let codes = Codes::for_partition(labels, x.nrows())?;
    check_matrix(x, Input::Points)?;
    let centroids = centroids(x, &codes);
    let mut scatter = vec![0.0; codes.n_clusters()];
    for (row, &c) in x.rows().into_iter().zip(&codes.codes) {
        scatter[c] += distance(row.iter(), centroids.row(c).iter());
    }
    for (s, &count) in scatter.iter_mut().zip(&codes.counts) {
        *s /= count as f64;
    }
    let k = codes.n_clusters();
    let separation = Array2::from_shape_fn((k, k), |(i, j)| {
        distance(centroids.row(i).iter(), centroids.row(j).iter())
    });
    // np.allclose(v, 0) with its default atol.
    let close_to_zero = |v: &f64| v.abs() <= 1e-8;
    if scatter.iter().all(close_to_zero) || separation.iter().all(close_to_zero) {
        return Ok(0.0);
    }
    let worst_ratios = separation.rows().into_iter().enumerate().map(|(i, row)| {
        row.iter()
            .enumerate()
            .map(|(j, &d)| {
                // sklearn sets zero separations (the diagonal included) to infinity.
                let d = if d == 0.0 { f64::INFINITY } else { d };
                (scatter[i] + scatter[j]) / d
            })
            .fold(f64::NEG_INFINITY, f64::max)
    });
    Ok(worst_ratios.sum::<f64>() / k as f64)
}

/// Calinski–Harabasz index (variance ratio criterion): between-cluster over within-cluster
/// dispersion, each per degree of freedom (higher is better); linear-time and sklearn's number.
///
/// As sklearn, 1.0 when the within-cluster dispersion is exactly 0. Fails like
/// [`silhouette_score`](super::silhouette_score).
pub fn calinski_harabasz_score(x: ArrayView2<f64>, labels: &[usize]) -> Result<f64, ValidityError> {
    let codes = Codes::for_partition(labels, x.nrows())?;
    check_matrix(x, Input::Points)?;
    let n = x.nrows() as f64;
    let k = codes.n_clusters() as f64;
    let mean = x.sum_axis(Axis(0)) / n;
    let centroids = centroids(x, &codes);
    let mut extra = 0.0;
    for (centroid, &count) in centroids.rows().into_iter().zip(&codes.counts) {
        let squares: f64 = centroid
            .iter()
            .zip(&mean)
            .map(|(c, m)| (c - m) * (c - m))
            .sum();
        extra += count as f64 * squares;
    }
    let mut intra = 0.0;
    for (row, &c) in x.rows().into_iter().zip(&codes.codes) {
        intra += square_distance(row.iter(), centroids.row(c).iter());
    }
    Ok(if intra == 0.0 {
        1.0
    } else {
        extra * (n - k) / (intra * (k - 1.0))
    })
}

/// Cluster means, one row per code.
fn centroids(x: ArrayView2<f64>, codes: &Codes) -> Array2<f64> {
    let mut sums = Array2::<f64>::zeros((codes.n_clusters(), x.ncols()));
    for (row, &c) in x.rows().into_iter().zip(&codes.codes) {
        let mut sum = sums.row_mut(c);
        sum += &row;
    }
    let counts = Array1::from_iter(codes.counts.iter().map(|&c| c as f64));
    sums / counts.insert_axis(Axis(1))
}

fn square_distance<'a>(a: impl Iterator<Item = &'a f64>, b: impl Iterator<Item = &'a f64>) -> f64 {
    a.zip(b).map(|(p, q)| (p - q) * (p - q)).sum()
}

fn distance<'a>(a: impl Iterator<Item = &'a f64>, b: impl Iterator<Item = &'a f64>) -> f64 {
    square_distance(a, b).sqrt()
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a failing test should stop at the failure"
)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn sklearn_docstring_examples() {
        // davies_bouldin_score([[0, 1], [1, 1], [3, 4]], [0, 0, 1]) == 0.12...
        let x = array![[0.0, 1.0], [1.0, 1.0], [3.0, 4.0]];
        let db = davies_bouldin_score(x.view(), &[0, 0, 1]).unwrap();
        // scatter (0.5, 0), centroid distance sqrt(2.5² + 3²).
        assert_eq!(db, 0.5 / (2.5f64 * 2.5 + 9.0).sqrt());
        let ch = calinski_harabasz_score(x.view(), &[0, 0, 1]).unwrap();
        // extra = 2·|(0.5,1) − (4/3,2)|² + |(3,4) − (4/3,2)|², intra = 0.5, (n − k)/(k − 1) = 1.
        let expected_extra =
            2.0 * ((0.5f64 - 4.0 / 3.0).powi(2) + 1.0) + ((3.0f64 - 4.0 / 3.0).powi(2) + 4.0);
        approx::assert_relative_eq!(ch, expected_extra / 0.5, max_relative = 1e-14);
    }

    #[test]
    fn degenerate_clusters_follow_sklearn() {
        let same = Array2::<f64>::zeros((4, 2));
        assert_eq!(davies_bouldin_score(same.view(), &[1, 1, 2, 2]), Ok(0.0));
        assert_eq!(calinski_harabasz_score(same.view(), &[1, 1, 2, 2]), Ok(1.0));
    }

    #[test]
    fn errors_follow_sklearn() {
        let x = array![[0.0], [1.0], [2.0]];
        let one_cluster = Err(ValidityError::InvalidClusterCount {
            n_clusters: 1,
            n_samples: 3,
        });
        assert_eq!(davies_bouldin_score(x.view(), &[0, 0, 0]), one_cluster);
        assert_eq!(calinski_harabasz_score(x.view(), &[0, 0, 0]), one_cluster);
        let short = Err(ValidityError::LengthMismatch {
            expected: 3,
            got: 2,
        });
        assert_eq!(davies_bouldin_score(x.view(), &[0, 1]), short);
        assert_eq!(calinski_harabasz_score(x.view(), &[0, 1]), short);
    }
}
