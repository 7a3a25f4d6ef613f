//! t-SNE to 2D through linfa-tsne (Barnes-Hut, the bhtsne crate).
//!
//! linfa-tsne 0.8.1 was measured as faithful as scikit-learn and openTSNE on digits and is
//! single-threaded, which makes it deterministic for a seed whatever the thread count. It
//! does not scale to hundreds of thousands of points; a faster method is a later issue's
//! concern. bhtsne panics on a perplexity too large for the data, so we shrink the
//! perplexity to what the data allows (and report it) before calling it, and we contain any
//! other panic of the library so that it becomes an error, never an abort.

use linfa::traits::Transformer;
use linfa_tsne::TSneParams;
use ndarray::{Array2, ArrayView2};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;

/// t-SNE settings.
#[derive(Debug, Clone, Serialize)]
pub struct TsneParams {
    /// Effective number of neighbours (30 as openTSNE and scikit-learn).
    pub perplexity: f64,
    /// Barnes-Hut accuracy: 0 is exact, 0.5 the usual trade-off.
    pub theta: f64,
    /// Gradient-descent iterations in all.
    pub max_iter: usize,
}

impl Default for TsneParams {
    fn default() -> Self {
        TsneParams {
            perplexity: 30.0,
            theta: 0.5,
            max_iter: 1000,
        }
    }
}

/// Why t-SNE could not run.
#[derive(Debug, thiserror::Error)]
pub enum TsneError {
    /// Too few points for any perplexity.
    #[error("t-SNE needs at least 5 customers, got {rows}")]
    TooFewRows {
        /// Rows available.
        rows: usize,
    },
    /// Fewer than two features.
    #[error("t-SNE to 2D needs at least 2 features, got {features}")]
    TooFewFeatures {
        /// Features available.
        features: usize,
    },
    /// A parameter is out of range.
    #[error("invalid t-SNE setting {name} = {value}: {why}")]
    InvalidParameter {
        /// Setting name.
        name: &'static str,
        /// Given value.
        value: f64,
        /// What is allowed.
        why: &'static str,
    },
    /// The library failed.
    #[error("t-SNE failed: {0}")]
    Library(String),
}

/// A t-SNE embedding and the perplexity it actually used.
#[derive(Debug, Clone)]
pub struct TsneMap {
    /// n x 2 coordinates.
    pub embedding: Array2<f64>,
    /// Perplexity used: the requested one, or lower when the data has too few points.
    pub perplexity: f64,
}

/// Embeds `x` in 2D with t-SNE.
pub fn fit_tsne(x: ArrayView2<f64>, params: &TsneParams, seed: u64) -> Result<TsneMap, TsneError> {
    let (n, d) = x.dim();
    if n < 5 {
        return Err(TsneError::TooFewRows { rows: n });
    }
    if d < 2 {
        return Err(TsneError::TooFewFeatures { features: d });
    }
    if !(params.perplexity.is_finite() && params.perplexity >= 1.0) {
        return Err(TsneError::InvalidParameter {
            name: "perplexity",
            value: params.perplexity,
            why: "must be at least 1",
        });
    }
    if !(0.0..=1.0).contains(&params.theta) {
        return Err(TsneError::InvalidParameter {
            name: "theta",
            value: params.theta,
            why: "must be between 0 and 1",
        });
    }
    if params.max_iter < 250 {
        return Err(TsneError::InvalidParameter {
            name: "max_iter",
            value: params.max_iter as f64,
            why: "must be at least 250 (the early-exaggeration phase)",
        });
    }
    // bhtsne requires n - 1 >= 3 * perplexity.
    let perplexity = params
        .perplexity
        .min(((n - 1) as f64 / 3.0).floor())
        .max(1.0);
    let rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let data = x.to_owned();
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        TSneParams::embedding_size_with_rng(2, rng)
            .perplexity(perplexity)
            .approx_threshold(params.theta)
            .max_iter(params.max_iter)
            .transform(data)
    }));
    let embedding = match run {
        Ok(Ok(embedding)) => embedding,
        Ok(Err(e)) => return Err(TsneError::Library(e.to_string())),
        Err(_) => return Err(TsneError::Library("the t-SNE library panicked".into())),
    };
    if embedding.iter().any(|v| !v.is_finite()) {
        return Err(TsneError::Library(
            "the embedding has non-finite coordinates".into(),
        ));
    }
    Ok(TsneMap {
        embedding,
        perplexity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn two_blobs() -> Array2<f64> {
        Array2::from_shape_fn((40, 3), |(i, j)| {
            let offset = if i < 20 { 0.0 } else { 10.0 };
            offset + ((i * 7 + j * 13) % 11) as f64 * 0.1
        })
    }

    #[test]
    fn same_seed_same_map_and_small_inputs_shrink_perplexity() {
        let x = two_blobs();
        let a = fit_tsne(x.view(), &TsneParams::default(), 7).expect("tsne");
        let b = fit_tsne(x.view(), &TsneParams::default(), 7).expect("tsne");
        assert_eq!(a.embedding, b.embedding);
        assert_eq!(a.perplexity, 13.0);
        assert_eq!(a.embedding.dim(), (40, 2));
    }

    #[test]
    fn bad_parameters_are_errors() {
        let x = two_blobs();
        let p = TsneParams {
            theta: 2.0,
            ..TsneParams::default()
        };
        assert!(matches!(
            fit_tsne(x.view(), &p, 1),
            Err(TsneError::InvalidParameter { name: "theta", .. })
        ));
    }
}
