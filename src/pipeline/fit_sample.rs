//! Which customers a run fits on: everyone, or above `sampling.fit_above` a seeded random
//! sample of `sampling.fit_sample`, the rest placed by the fitted models.
//!
//! The quadratic parts of a run (choosing k, stability, silhouette, trustworthiness, the
//! neighbourhood maps' fits) cost n^2 or worse; a uniform sample of 50,000 keeps every
//! segment above a few hundred customers represented while bounding time and memory, and
//! the placement of everyone else is exact for k-means and mixtures (nearest centroid, most
//! probable component) and the methods' own transform for UMAP and t-SNE.

use ndarray::{Array2, ArrayView2, Axis, CowArray, Ix2};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::settings::SamplingSettings;

/// The customers a run fits on.
#[derive(Debug, Clone, PartialEq)]
pub struct FitSet {
    n: usize,
    /// Sorted rows of the sample; `None` when the fit sees everyone.
    rows: Option<Vec<usize>>,
}

impl FitSet {
    /// Everyone up to `fit_above` customers, a seeded sample above.
    pub fn choose(n: usize, sampling: &SamplingSettings, seed: u64) -> Self {
        if n <= sampling.fit_above {
            return FitSet { n, rows: None };
        }
        // A stream of its own, so sampling does not shift other seeded choices.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5A4D_504C_455F_5345);
        let mut rows = rand::seq::index::sample(&mut rng, n, sampling.fit_sample.min(n)).into_vec();
        rows.sort_unstable();
        FitSet {
            n,
            rows: Some(rows),
        }
    }

    /// The sample's rows, or `None` when the fit sees everyone.
    pub fn sample(&self) -> Option<&[usize]> {
        self.rows.as_deref()
    }

    /// Number of customers fitted on.
    pub fn len(&self) -> usize {
        self.rows.as_ref().map_or(self.n, Vec::len)
    }

    /// True when the fit sees nobody (an empty run).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The fitted rows of `x` (a view when the fit sees everyone).
    pub fn select<'a>(&self, x: ArrayView2<'a, f64>) -> CowArray<'a, f64, Ix2> {
        match &self.rows {
            None => CowArray::from(x),
            Some(rows) => CowArray::from(x.select(Axis(0), rows)),
        }
    }

    /// Rows not in the sample, in order (empty when the fit sees everyone).
    pub fn rest(&self) -> Vec<usize> {
        match &self.rows {
            None => Vec::new(),
            Some(rows) => {
                let mut in_sample = vec![false; self.n];
                for &r in rows {
                    in_sample[r] = true;
                }
                (0..self.n).filter(|&r| !in_sample[r]).collect()
            }
        }
    }

    /// Puts fitted-row coordinates and placed-row coordinates back in customer order.
    pub fn assemble(&self, fitted: &Array2<f64>, placed: Option<&Array2<f64>>) -> Array2<f64> {
        match (&self.rows, placed) {
            (Some(rows), Some(placed)) => {
                let mut all = Array2::zeros((self.n, fitted.ncols()));
                for (i, &r) in rows.iter().enumerate() {
                    all.row_mut(r).assign(&fitted.row(i));
                }
                for (i, r) in self.rest().into_iter().enumerate() {
                    all.row_mut(r).assign(&placed.row(i));
                }
                all
            }
            _ => fitted.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn sampling(fit_above: usize, fit_sample: usize) -> SamplingSettings {
        SamplingSettings {
            fit_above,
            fit_sample,
        }
    }

    #[test]
    fn small_runs_fit_everyone() {
        let fit = FitSet::choose(10, &sampling(10, 5), 1);
        assert_eq!(fit.sample(), None);
        assert_eq!(fit.len(), 10);
        assert!(fit.rest().is_empty());
    }

    #[test]
    fn large_runs_fit_a_seeded_sample_and_reassemble_in_order() {
        let fit = FitSet::choose(6, &sampling(5, 3), 9);
        let rows = fit.sample().expect("sampled").to_vec();
        assert_eq!(rows.len(), 3);
        assert!(rows.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(fit, FitSet::choose(6, &sampling(5, 3), 9));
        let rest = fit.rest();
        assert_eq!(rest.len(), 3);
        let x = array![[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]];
        let fitted = fit.select(x.view()).to_owned();
        let placed = x.select(Axis(0), &rest);
        assert_eq!(fit.assemble(&fitted, Some(&placed)), x);
    }
}
