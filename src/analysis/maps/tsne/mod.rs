//! t-SNE to 2D: our own Barnes-Hut and FFT-interpolation implementations, deterministic for
//! a seed whatever the number of rayon threads, and a transform that places new points into
//! a fitted map.
//!
//! Owns the whole pipeline from a scaled feature matrix to map coordinates: perplexity-
//! calibrated input similarities on the exact kNN graph of [`crate::analysis::knn`], the PCA
//! initialisation, gradient descent with one of two repulsion methods, and
//! [`TsneMap::transform`]. It does not own neighbour search (it consumes a [`KnnGraph`]) nor
//! quality measures.
//!
//! Why not linfa-tsne: linfa-tsne 0.8.1 (bhtsne 0.4) is faithful, but its VP-tree draws
//! vantage points from `rand::thread_rng()`, so one seed gives different maps, and segscope
//! promises identical bytes for identical input and seed; it is also Barnes-Hut only, which
//! cannot reach 50,000 points in reasonable time.
//!
//! We follow openTSNE 1.0's defaults (the reference we measure against) and its conventions:
//! the gradient is written without the constant factor 4; perplexity 30; early exaggeration
//! 12 for 250 iterations, then 500 more; momentum 0.8 throughout; and the "auto" learning
//! rate `n / exaggeration` of each phase (Belkina et al. 2019: `n / 12` while exaggerated,
//! `n` after). Deliberate differences, each explained where it is made:
//! - `max_iter` counts all iterations (250 exaggerated + the rest), as scikit-learn and the
//!   linfa-tsne wrapper we replaced did; the default 750 is openTSNE's 250 + 500.
//! - The binary search on each point's precision shifts squared distances by the nearest one
//!   and starts from the scale of the data, so it neither underflows nor runs out of steps on
//!   very large or very small feature scales; the distribution it finds is the same.
//! - Barnes-Hut (`barnes_hut.rs`) builds its quadtree by recursive partitioning with leaves
//!   of up to 16 points and never summarises a cell that contains the point itself.
//! - FFT interpolation (`fft.rs`) spreads charges relative to the grid's centre and packs
//!   its four real convolutions into two complex ones.
//! - When the second PCA coordinate is constant (one feature varies, or all features vary
//!   together exactly), its gradient would stay zero for ever and the map would be a line;
//!   we draw that coordinate from the seeded RNG instead (the only use of the seed).
//!
//! The repulsive term is the one replaceable piece (the private `RepulsiveForces` trait),
//! chosen by [`Repulsion`]: Barnes-Hut below [`Repulsion::AUTO_FFT_FROM`] points, FFT
//! interpolation from there (openTSNE's "auto" rule); attraction, calibration and the
//! optimiser are shared, and [`TsneMap::repulsion`] records which method ran.
//!
//! Determinism: the kNN graph, the calibration of each point and each row of the sparse
//! similarity matrix are computed independently; the quadtree is built and the FFT charges
//! are spread sequentially; every per-point force is accumulated sequentially into its own
//! slot by rayon, FFT passes work on fixed batches of lines, and every global sum (the
//! normalisation `Z`, the centring mean) is reduced sequentially in index order. Nothing
//! depends on how rayon schedules work, so any thread count gives the same bits (the tests
//! compare 1 and 2 threads, with each method).

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::analysis::knn::{KnnError, KnnGraph, knn_graph};
use crate::analysis::maps::pca::{PcaError, fit_pca};
use crate::analysis::progress::Progress;

mod barnes_hut;
mod fft;
mod transform;

use barnes_hut::BarnesHut;
use fft::FftInterpolation;
pub use transform::TransformParams;

/// Iterations with exaggerated attraction, during which clusters form (openTSNE, sklearn).
const EARLY_EXAGGERATION_ITER: usize = 250;
/// Attraction multiplier of the first phase.
const EARLY_EXAGGERATION: f64 = 12.0;
/// Momentum of both phases (openTSNE 1.0 raised the first phase's from 0.5: with the
/// smaller exaggerated learning rate `n / 12` it converges faster and as well).
const MOMENTUM: f64 = 0.8;
/// Added to every shrinking gain (openTSNE: `gains * 0.8 + min_gain`), so gains stay positive.
const MIN_GAIN: f64 = 0.01;
/// Longest step one point may take in one iteration (openTSNE's `max_step_norm`); stops
/// isolated points from shooting off and blowing up the quadtree's extent.
const MAX_STEP_NORM: f64 = 5.0;
/// Standard deviation of the first initial coordinate: small, so that early exaggeration
/// starts from a compact cloud (openTSNE's PCA initialisation).
const INIT_STD: f64 = 1e-4;
/// Entropy tolerance and step budget of the precision search (openTSNE's values).
const PERPLEXITY_TOL: f64 = 1e-8;
const PERPLEXITY_MAX_STEPS: usize = 200;

/// t-SNE settings.
///
/// Defaults are openTSNE 1.0's; they are what the digits and 50,000-point benchmarks
/// measured.
#[derive(Debug, Clone, Serialize)]
pub struct TsneParams {
    /// Effective number of neighbours (30 as openTSNE and scikit-learn).
    pub perplexity: f64,
    /// Barnes-Hut accuracy: 0 is exact, 0.5 the usual trade-off, at most 1. FFT
    /// interpolation ignores it, but it is validated whatever the method, so a bad setting
    /// never waits for a larger data set to show.
    pub theta: f64,
    /// Gradient-descent iterations in all, the 250 early-exaggeration ones included; the
    /// default 750 is openTSNE's 250 + 500.
    pub max_iter: usize,
    /// How the repulsive forces are computed; [`Repulsion::Auto`] picks by size.
    pub repulsion: Repulsion,
}

impl Default for TsneParams {
    fn default() -> Self {
        TsneParams {
            perplexity: 30.0,
            theta: 0.5,
            max_iter: 750,
            repulsion: Repulsion::Auto,
        }
    }
}

/// The method for the repulsive half of the gradient, the only part of t-SNE whose cost is
/// not linear in the number of points.
///
/// Both methods estimate the same forces (their tests compare them with the exact O(n²)
/// sums) and give maps of the same quality; they differ in speed with size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Repulsion {
    /// Barnes-Hut below [`Repulsion::AUTO_FFT_FROM`] points, FFT interpolation from there.
    #[default]
    Auto,
    /// Barnes-Hut quadtree, O(n log n) per iteration, accuracy set by `theta`: the faster
    /// method for small maps.
    BarnesHut,
    /// FFT-accelerated interpolation (FIt-SNE), O(n) plus a grid whose size follows the
    /// map's extent, not n: what makes 50,000 points and more practical.
    Fft,
}

impl Repulsion {
    /// Size from which [`Repulsion::Auto`] uses FFT interpolation: openTSNE's threshold.
    ///
    /// Measured on 64-dimensional blobs (optimisation CPU seconds, Barnes-Hut / FFT):
    /// 4.3 / 3.9 at 5,000 points, 11.5 / 5.7 at 10,000, 27.7 / 8.6 at 20,000, 83 / 17 at
    /// 50,000; on digits (1,797) 1.2 / 6.4. The costs cross near 5,000 points, but below
    /// 10,000 Barnes-Hut's final KL is slightly lower (FFT's grid errors grow on sparser
    /// maps) and the time is small either way, so openTSNE's threshold stands.
    pub const AUTO_FFT_FROM: usize = 10_000;

    /// The method used for `n_points` points.
    pub fn resolve(self, n_points: usize) -> RepulsionMethod {
        match self {
            Repulsion::BarnesHut => RepulsionMethod::BarnesHut,
            Repulsion::Fft => RepulsionMethod::Fft,
            Repulsion::Auto if n_points < Self::AUTO_FFT_FROM => RepulsionMethod::BarnesHut,
            Repulsion::Auto => RepulsionMethod::Fft,
        }
    }
}

/// The repulsion method a map was actually computed with ([`Repulsion`] resolved), recorded
/// so that a report can say how its map was drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepulsionMethod {
    /// Barnes-Hut quadtree.
    BarnesHut,
    /// FFT-accelerated interpolation.
    Fft,
}

impl RepulsionMethod {
    /// The repulsion on a whole map, for fitting.
    fn for_fit(self, theta: f64) -> Box<dyn RepulsiveForces> {
        match self {
            RepulsionMethod::BarnesHut => Box::new(BarnesHut { theta }),
            RepulsionMethod::Fft => Box::new(FftInterpolation::new()),
        }
    }
}

/// Why t-SNE could not run.
#[derive(Debug, thiserror::Error)]
pub enum TsneError {
    /// Too few points for any perplexity (each needs at least 3 neighbours).
    #[error("t-SNE needs at least 5 customers, got {rows}")]
    TooFewRows {
        /// Rows available.
        rows: usize,
    },
    /// Fewer than two features: the PCA initialisation needs two directions.
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
    /// The neighbour graph could not be built (in practice: a NaN or infinite value).
    #[error("t-SNE input: {0}")]
    Neighbours(#[from] KnnError),
    /// Values are finite but so large that squared distances overflow.
    #[error("t-SNE input values are too large: squared distances overflow; scale the features")]
    Overflow,
    /// Every row is the same point: there is nothing to lay out.
    #[error("t-SNE needs at least two distinct customers; all rows are identical")]
    NoVariance,
    /// The PCA initialisation failed (not expected on finite input).
    #[error("t-SNE initialisation failed: {0}")]
    Initialisation(String),
    /// A new point's neighbour is not a row of the map it is placed into.
    #[error("new point {query} has neighbour {index}, but the map has {n_reference} points")]
    NeighbourOutOfRange {
        /// Row of the new point.
        query: usize,
        /// The offending neighbour index.
        index: usize,
        /// Points in the map.
        n_reference: usize,
    },
    /// The optimisation produced NaN or infinite coordinates (not expected; a bug if seen).
    #[error("t-SNE produced non-finite coordinates")]
    NotFinite,
}

/// A t-SNE embedding, the perplexity it actually used and how well it fits.
#[derive(Debug, Clone)]
pub struct TsneMap {
    /// n x 2 coordinates, centred on the origin.
    pub embedding: Array2<f64>,
    /// Perplexity used: the requested one, or lower when the data has too few points.
    pub perplexity: f64,
    /// KL divergence of the final map from the input similarities, exact over the non-zeros
    /// of P with the repulsion method's estimate of the normalisation `Z` (what openTSNE
    /// reports as `kl_divergence`): lower is a closer fit.
    pub kl_divergence: f64,
    /// The repulsion method that computed the map.
    pub repulsion: RepulsionMethod,
}

/// Embeds the rows of `x` in 2D with t-SNE.
///
/// The result depends only on `x`, `params` and `seed` (bit for bit, whatever the number of
/// rayon threads); the seed matters only when the second principal coordinate of `x` is
/// constant (see the module docs). The
/// perplexity is lowered to `floor((n - 1) / 3)` when the data is too small for it, and
/// [`TsneMap::perplexity`] reports what was used. `progress` sees one stage, "t-SNE", with
/// one step per iteration. [`TsneParams::repulsion`] decides between Barnes-Hut and FFT
/// interpolation, [`TsneMap::repulsion`] says which ran.
///
/// # Errors
/// [`TsneError::TooFewRows`] below 5 rows, [`TsneError::TooFewFeatures`] below 2 columns,
/// [`TsneError::InvalidParameter`] for a perplexity below 1, theta outside [0, 1] or fewer
/// than 250 iterations, [`TsneError::Neighbours`] for NaN or infinite values,
/// [`TsneError::Overflow`] for values whose squares overflow, [`TsneError::NoVariance`] when
/// all rows are identical.
pub fn fit_tsne(
    x: ArrayView2<f64>,
    params: &TsneParams,
    seed: u64,
    progress: &dyn Progress,
) -> Result<TsneMap, TsneError> {
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
    if params.max_iter < EARLY_EXAGGERATION_ITER {
        return Err(TsneError::InvalidParameter {
            name: "max_iter",
            value: params.max_iter as f64,
            why: "must be at least 250 (the early-exaggeration phase)",
        });
    }

    // Every point needs about 3 * perplexity neighbours; n >= 5 keeps this at least 1.
    let perplexity = params.perplexity.min(((n - 1) / 3) as f64);
    // Truncation as openTSNE's int(3 * perplexity); at least 3 since perplexity >= 1.
    let k = (n - 1).min((3.0 * perplexity) as usize);
    // Exact up to a few thousand points, NN-descent above: exact kNN was 90% of t-SNE's
    // time at 50,000 points (openTSNE uses approximate neighbours too).
    let graph = knn_graph(x, k, seed, progress)?;
    if graph.distances().iter().any(|v| !v.is_finite()) {
        return Err(TsneError::Overflow);
    }

    let p = joint_probabilities(&graph, perplexity);
    let mut y = pca_initialisation(x, seed)?;
    let method = params.repulsion.resolve(n);
    let mut repulsion = method.for_fit(params.theta);
    let schedule = Schedule::open_tsne(n, params.max_iter);
    optimise(&p, &mut y, repulsion.as_mut(), &schedule, progress);
    let kl_divergence = kl_divergence(&p, &y, repulsion.as_mut());

    if !kl_divergence.is_finite() || y.iter().flatten().any(|v| !v.is_finite()) {
        return Err(TsneError::NotFinite);
    }
    let embedding = Array2::from_shape_fn((n, 2), |(i, c)| y[i][c]);
    Ok(TsneMap {
        embedding,
        perplexity,
        kl_divergence,
        repulsion: method,
    })
}

// ---------------------------------------------------------------------------------------
// Input similarities
// ---------------------------------------------------------------------------------------

/// The symmetric joint probabilities P as a CSR matrix: row `i` holds `p_ij` for every `j`
/// that is a neighbour of `i` or has `i` as a neighbour, columns ascending.
#[derive(Debug, Clone)]
struct SparseP {
    /// Row `i` occupies `indptr[i]..indptr[i + 1]` of `indices` and `values`.
    indptr: Vec<usize>,
    indices: Vec<usize>,
    values: Vec<f64>,
}

impl SparseP {
    fn row(&self, i: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let range = self.indptr[i]..self.indptr[i + 1];
        self.indices[range.clone()]
            .iter()
            .copied()
            .zip(self.values[range].iter().copied())
    }

    fn n_points(&self) -> usize {
        self.indptr.len() - 1
    }
}

/// Conditional probabilities `p_{j|i}` over each point's kNN, row-major `n x k` (row `i`
/// matches `graph.indices().row(i)`), each row calibrated to `perplexity` independently (in
/// parallel, so thread-count independent).
fn conditional_probabilities(graph: &KnnGraph, perplexity: f64) -> Vec<f64> {
    let target_entropy = perplexity.ln();
    let distances = graph.distances();
    // k >= 1 is guaranteed by the kNN graph, so the chunks are well defined.
    let mut conditional = vec![0.0; graph.n_points() * graph.k()];
    conditional
        .par_chunks_mut(graph.k())
        .enumerate()
        .for_each(|(i, out)| calibrate_row(distances.row(i), target_entropy, out));
    conditional
}

/// Gaussian weights over one point's neighbour distances with the precision (beta) whose
/// entropy matches `target_entropy`, normalised into `out`.
///
/// Squared distances are shifted by the nearest one: the normalised distribution is the
/// same, but the largest weight is exactly 1, so the sum never underflows to zero (the
/// failure openTSNE patches with `+ EPSILON`). Duplicate points (zero distances) therefore
/// need no special case: when all neighbours are equidistant the weights are uniform for
/// every beta, the search runs out of steps with beta at most 2^200 times its start, and
/// the row is the uniform distribution, which is the right answer.
fn calibrate_row(distances: ArrayView1<f64>, target_entropy: f64, out: &mut [f64]) {
    let nearest = distances.iter().copied().fold(f64::INFINITY, f64::min);
    let nearest_sq = nearest * nearest;
    let shifted: Vec<f64> = distances.iter().map(|d| d * d - nearest_sq).collect();
    // Starting from 1 / mean shifted distance makes the search scale-free: openTSNE starts
    // at 1 and needs ~log2(scale) doublings first, which its 200 steps may not cover.
    let mean_shifted = shifted.iter().sum::<f64>() / shifted.len() as f64;
    let mut beta = if mean_shifted > 0.0 {
        1.0 / mean_shifted
    } else {
        1.0
    };
    let (mut low, mut high) = (f64::NEG_INFINITY, f64::INFINITY);
    for _ in 0..PERPLEXITY_MAX_STEPS {
        let mut sum = 0.0;
        let mut weighted = 0.0;
        for (w, &s) in out.iter_mut().zip(&shifted) {
            *w = (-beta * s).exp();
            sum += *w;
            // (w * s) first: when w underflows to 0 the product stays 0, never inf * 0.
            weighted += *w * s;
        }
        // sum >= 1: the nearest neighbour's weight is exp(0).
        for w in out.iter_mut() {
            *w /= sum;
        }
        // H = -sum p ln p with p = w / sum and ln w = -beta s.
        let entropy = sum.ln() + beta * weighted / sum;
        let excess = entropy - target_entropy;
        if excess.abs() <= PERPLEXITY_TOL {
            break;
        }
        if excess > 0.0 {
            // Too flat: sharpen.
            low = beta;
            beta = if high.is_infinite() {
                beta * 2.0
            } else {
                (beta + high) / 2.0
            };
        } else {
            high = beta;
            beta = if low.is_infinite() {
                beta / 2.0
            } else {
                (beta + low) / 2.0
            };
        }
    }
}

/// `P = (P_cond + P_condᵀ) / (2n)` as CSR, built in a fixed order.
///
/// Both `p_ij` and `p_ji` are computed as `(p_{j|i} + p_{i|j}) / 2n`, with floating-point
/// addition commutative, so the matrix is exactly symmetric. The whole matrix sums to 1
/// up to rounding because every conditional row does.
fn joint_probabilities(graph: &KnnGraph, perplexity: f64) -> SparseP {
    let conditional = conditional_probabilities(graph, perplexity);
    let neighbours = graph.indices();
    let (n, k) = (graph.n_points(), graph.k());

    // Reverse edges, collected sequentially so each list is in ascending source order.
    let mut reverse: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
    for (i, (row, probabilities)) in neighbours
        .axis_iter(Axis(0))
        .zip(conditional.chunks(k))
        .enumerate()
    {
        for (&j, &p) in row.iter().zip(probabilities.iter()) {
            reverse[j].push((i, p));
        }
    }

    let two_n = 2.0 * n as f64;
    // Rows are independent; rayon's collect keeps them in index order.
    let rows: Vec<Vec<(usize, f64)>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut entries: Vec<(usize, f64)> = neighbours
                .row(i)
                .iter()
                .copied()
                .zip(conditional[i * k..(i + 1) * k].iter().copied())
                .chain(reverse[i].iter().copied())
                .collect();
            entries.sort_unstable_by_key(|&(j, _)| j);
            let mut merged: Vec<(usize, f64)> = Vec::with_capacity(entries.len());
            for (j, p) in entries {
                match merged.last_mut() {
                    Some(last) if last.0 == j => last.1 += p,
                    _ => merged.push((j, p)),
                }
            }
            for entry in &mut merged {
                entry.1 /= two_n;
            }
            merged
        })
        .collect();

    let mut indptr = Vec::with_capacity(n + 1);
    indptr.push(0);
    let total: usize = rows.iter().map(Vec::len).sum();
    let mut indices = Vec::with_capacity(total);
    let mut values = Vec::with_capacity(total);
    for row in rows {
        for (j, p) in row {
            indices.push(j);
            values.push(p);
        }
        indptr.push(indices.len());
    }
    SparseP {
        indptr,
        indices,
        values,
    }
}

// ---------------------------------------------------------------------------------------
// Initialisation
// ---------------------------------------------------------------------------------------

/// openTSNE's "pca" initialisation: the first two principal components, scaled together so
/// the first has standard deviation 1e-4.
///
/// Uses [`fit_pca`] (covariance and a symmetric eigensolver, sequential, so deterministic;
/// signs as scikit-learn's so a map does not mirror itself between versions). Costs
/// O(n d² + d³).
fn pca_initialisation(x: ArrayView2<f64>, seed: u64) -> Result<Vec<[f64; 2]>, TsneError> {
    let coordinates = match fit_pca(x, 2) {
        Ok(pca) => pca.transform(x),
        Err(PcaError::Overflow) => return Err(TsneError::Overflow),
        Err(PcaError::TooFewRows { rows }) => return Err(TsneError::TooFewRows { rows }),
        Err(PcaError::TooFewFeatures { features, .. }) => {
            return Err(TsneError::TooFewFeatures { features });
        }
        Err(PcaError::Linalg(message)) => return Err(TsneError::Initialisation(message)),
    };
    let first = coordinates.column(0).to_owned();
    let mut second = coordinates.column(1).to_owned();

    let std = |v: &ndarray::Array1<f64>| v.std(0.0);
    let first_std = std(&first);
    // Identical rows give a zero covariance and a zero first coordinate.
    if first_std.is_nan() || first_std <= 0.0 {
        return Err(TsneError::NoVariance);
    }
    let scale = INIT_STD / first_std;
    // A (numerically) constant second coordinate would keep a zero gradient for ever and
    // the map would stay on a line; replace it with seeded noise of the same scale as the
    // first coordinate. Uniform on ±sqrt(3) has unit variance, which is all that matters.
    if std(&second) < 1e-6 * first_std {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let half_width = 3.0_f64.sqrt() * first_std;
        second.mapv_inplace(|_| rng.gen_range(-half_width..=half_width));
    }
    Ok(first
        .iter()
        .zip(second.iter())
        .map(|(a, b)| [a * scale, b * scale])
        .collect())
}

// ---------------------------------------------------------------------------------------
// Forces
// ---------------------------------------------------------------------------------------

/// The repulsive half of the t-SNE gradient: the one piece that differs between Barnes-Hut
/// and FFT-accelerated interpolation.
///
/// Contract: for every point `i`, `forces[i]` is set (not added) to an estimate of
/// `Σ_{j≠i} q_ij² (y_i − y_j)` with the unnormalised kernel `q_ij = 1 / (1 + |y_i − y_j|²)`,
/// and the return value estimates `Z = Σ_i Σ_{j≠i} q_ij`. Implementations must give
/// bit-identical results whatever the number of rayon threads. `&mut self` lets an
/// implementation keep plans and buffers from one iteration to the next.
trait RepulsiveForces {
    fn repulsive_forces(&mut self, y: &[[f64; 2]], forces: &mut [[f64; 2]]) -> f64;
}

/// Attractive forces `Σ_j p_ij q_ij (y_i − y_j)`, one CSR row per point, written to
/// `forces` (rows in parallel, each summed sequentially in column order).
fn attractive_forces(p: &SparseP, y: &[[f64; 2]], forces: &mut [[f64; 2]]) {
    forces.par_iter_mut().enumerate().for_each(|(i, force)| {
        let mut sum = [0.0, 0.0];
        for (j, p_ij) in p.row(i) {
            let dx = y[i][0] - y[j][0];
            let dy = y[i][1] - y[j][1];
            let q = 1.0 / (1.0 + dx * dx + dy * dy);
            sum[0] += p_ij * q * dx;
            sum[1] += p_ij * q * dy;
        }
        *force = sum;
    });
}

/// `KL(P || Q) = Σ p_ij ln(p_ij / (q_ij / Z))` over the non-zeros of P, with `Z` from the
/// repulsion method (as openTSNE reports it); `Σ p_ij = 1` turns the normaliser into `+ ln Z`.
fn kl_divergence(p: &SparseP, y: &[[f64; 2]], repulsion: &mut dyn RepulsiveForces) -> f64 {
    let mut scratch = vec![[0.0; 2]; y.len()];
    let z = repulsion.repulsive_forces(y, &mut scratch);
    let mut sum_p = 0.0;
    let mut kl = 0.0;
    for i in 0..p.n_points() {
        for (j, p_ij) in p.row(i) {
            if p_ij > 0.0 {
                let dx = y[i][0] - y[j][0];
                let dy = y[i][1] - y[j][1];
                let q = 1.0 / (1.0 + dx * dx + dy * dy);
                kl += p_ij * (p_ij / q).ln();
                sum_p += p_ij;
            }
        }
    }
    kl + sum_p * z.ln()
}

// ---------------------------------------------------------------------------------------
// Optimisation
// ---------------------------------------------------------------------------------------

/// One phase of gradient descent.
#[derive(Debug, Clone, Copy)]
struct Phase {
    iterations: usize,
    exaggeration: f64,
    learning_rate: f64,
}

/// The optimisation plan: openTSNE's two phases, each with its "auto" learning rate.
#[derive(Debug, Clone)]
struct Schedule {
    phases: [Phase; 2],
}

impl Schedule {
    /// `max_iter >= 250` is validated by the caller.
    fn open_tsne(n: usize, max_iter: usize) -> Schedule {
        // Belkina et al. (2019), openTSNE 1.0's "auto": the step shrinks with the
        // exaggeration so that exaggerated attraction does not overshoot.
        let phase = |iterations: usize, exaggeration: f64| Phase {
            iterations,
            exaggeration,
            learning_rate: n as f64 / exaggeration,
        };
        Schedule {
            phases: [
                phase(EARLY_EXAGGERATION_ITER, EARLY_EXAGGERATION),
                phase(max_iter - EARLY_EXAGGERATION_ITER, 1.0),
            ],
        }
    }

    fn total_iterations(&self) -> usize {
        self.phases.iter().map(|phase| phase.iterations).sum()
    }
}

/// Gradient descent with momentum and delta-bar-delta gains, as openTSNE's
/// `gradient_descent`: gains persist across phases, the momentum buffer restarts with each
/// phase (openTSNE creates it per `optimize` call), steps are clipped to
/// [`MAX_STEP_NORM`] per point, and the map is re-centred after every step.
fn optimise(
    p: &SparseP,
    y: &mut [[f64; 2]],
    repulsion: &mut dyn RepulsiveForces,
    schedule: &Schedule,
    progress: &dyn Progress,
) {
    let n = y.len();
    let mut attraction = vec![[0.0; 2]; n];
    let mut repulsive = vec![[0.0; 2]; n];
    let mut gains = vec![[1.0; 2]; n];
    progress.start("t-SNE", schedule.total_iterations() as u64);
    for phase in &schedule.phases {
        let mut update = vec![[0.0; 2]; n];
        for _ in 0..phase.iterations {
            let z = repulsion.repulsive_forces(y, &mut repulsive);
            attractive_forces(p, y, &mut attraction);
            // openTSNE guards the normaliser with machine epsilon the same way.
            let z_inverse = 1.0 / (z + f64::EPSILON);
            for i in 0..n {
                let gradient = [0, 1]
                    .map(|c| phase.exaggeration * attraction[i][c] - repulsive[i][c] * z_inverse);
                update[i] = step(
                    update[i],
                    &mut gains[i],
                    gradient,
                    MOMENTUM,
                    phase.learning_rate,
                );
                let norm = update[i][0].hypot(update[i][1]);
                if norm > MAX_STEP_NORM {
                    let shrink = MAX_STEP_NORM / norm;
                    update[i] = [update[i][0] * shrink, update[i][1] * shrink];
                }
                y[i][0] += update[i][0];
                y[i][1] += update[i][1];
            }
            recentre(y);
            progress.advance(1);
        }
    }
    progress.finish();
}

/// One point's momentum step with delta-bar-delta gains, as openTSNE: grow the gain when
/// the step so far goes against the new gradient's sign (it still descends), shrink it
/// otherwise; `np.sign(0)` is 0, so the first step of a phase counts as "flipped". Returns
/// the new update; shared by fitting and transforming.
fn step(
    update: [f64; 2],
    gains: &mut [f64; 2],
    gradient: [f64; 2],
    momentum: f64,
    learning_rate: f64,
) -> [f64; 2] {
    [0, 1].map(|c| {
        gains[c] = if sign(update[c]) != sign(gradient[c]) {
            gains[c] + 0.2
        } else {
            gains[c] * 0.8 + MIN_GAIN
        };
        momentum * update[c] - learning_rate * gains[c] * gradient[c]
    })
}

fn sign(v: f64) -> i8 {
    if v > 0.0 {
        1
    } else if v < 0.0 {
        -1
    } else {
        0
    }
}

/// Subtracts the mean, summed sequentially in index order.
fn recentre(y: &mut [[f64; 2]]) {
    let n = y.len() as f64;
    let mut mean = [0.0, 0.0];
    for p in y.iter() {
        mean[0] += p[0];
        mean[1] += p[1];
    }
    mean = [mean[0] / n, mean[1] / n];
    for p in y.iter_mut() {
        p[0] -= mean[0];
        p[1] -= mean[1];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::progress::NoProgress;
    use std::sync::atomic::{AtomicU64, Ordering};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn random_data(n: usize, d: usize, seed: u64) -> Array2<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        Array2::from_shape_fn((n, d), |_| rng.gen_range(-1.0..1.0))
    }

    /// `clusters` well separated blobs of `n` points in total, in `d` dimensions.
    fn blobs(n: usize, d: usize, clusters: usize, seed: u64) -> Array2<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let centres = Array2::from_shape_fn((clusters, d), |_| rng.gen_range(-10.0..10.0));
        Array2::from_shape_fn((n, d), |(i, j)| {
            centres[[i % clusters, j]] + rng.gen_range(-1.0..1.0)
        })
    }

    fn entropy(row: &[f64]) -> f64 {
        -row.iter()
            .filter(|&&p| p > 0.0)
            .map(|&p| p * p.ln())
            .sum::<f64>()
    }

    fn bits(map: &TsneMap) -> Vec<u64> {
        map.embedding.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn rows_match_the_perplexity_at_any_feature_scale() -> TestResult {
        let x = random_data(300, 5, 1);
        for scale in [1e-6, 1.0, 1e6] {
            let graph = crate::analysis::knn::exact_knn((&x * scale).view(), 90)?;
            let conditional = conditional_probabilities(&graph, 30.0);
            for row in conditional.chunks(90) {
                assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
                let h = entropy(row);
                assert!(
                    (h - 30.0_f64.ln()).abs() < 1e-5,
                    "entropy {h} at scale {scale}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn joint_probabilities_are_symmetric_and_sum_to_one() -> TestResult {
        let x = random_data(250, 4, 2);
        let graph = crate::analysis::knn::exact_knn(x.view(), 45)?;
        let p = joint_probabilities(&graph, 15.0);
        assert!((p.values.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        for i in 0..p.n_points() {
            let row: Vec<(usize, f64)> = p.row(i).collect();
            assert!(row.windows(2).all(|w| w[0].0 < w[1].0), "row {i} unsorted");
            for (j, p_ij) in row {
                assert_ne!(i, j, "diagonal entry in row {i}");
                let p_ji = p.row(j).find(|&(c, _)| c == i).map(|(_, v)| v);
                assert_eq!(p_ji.map(f64::to_bits), Some(p_ij.to_bits()));
            }
        }
        Ok(())
    }

    #[test]
    fn duplicate_distances_give_finite_rows() {
        let target = 2.0_f64.ln();
        let mut out = vec![0.0; 5];
        // All neighbours at distance 0: only the uniform distribution is possible.
        calibrate_row(ndarray::arr1(&[0.0; 5]).view(), target, &mut out);
        assert!(out.iter().all(|&p| (p - 0.2).abs() < 1e-15));
        // Three duplicates but perplexity 2: entropy cannot drop below ln 3; the mass goes
        // to the duplicates, evenly, and nothing is NaN.
        calibrate_row(
            ndarray::arr1(&[0.0, 0.0, 0.0, 1.0, 2.0]).view(),
            target,
            &mut out,
        );
        assert!(out.iter().all(|p| p.is_finite()));
        assert!(out[..3].iter().all(|&p| (p - 1.0 / 3.0).abs() < 1e-9));
    }

    #[test]
    fn duplicate_points_land_close_together() -> TestResult {
        // 30 distinct points, each present three times. Copies do not coincide exactly:
        // a neighbour's kNN list may cut off between two copies (the tie rule keeps the
        // lower index), so their affinities differ slightly, as in openTSNE.
        let distinct = blobs(30, 4, 3, 4);
        let x = Array2::from_shape_fn((90, 4), |(i, j)| distinct[[i % 30, j]]);
        let params = TsneParams {
            max_iter: 300,
            ..TsneParams::default()
        };
        let map = fit_tsne(x.view(), &params, 1, &NoProgress)?;
        assert!(map.embedding.iter().all(|v| v.is_finite()));
        assert!(map.kl_divergence.is_finite());
        let spread = map.embedding.std(0.0);
        for i in 30..90 {
            let gap = &map.embedding.row(i) - &map.embedding.row(i % 30);
            let gap = gap[0].hypot(gap[1]);
            assert!(
                gap < 0.05 * spread,
                "copy {i} is {gap} away, spread {spread}"
            );
        }
        Ok(())
    }

    #[test]
    fn degenerate_inputs_are_errors() {
        let fit = |x: &Array2<f64>| fit_tsne(x.view(), &TsneParams::default(), 0, &NoProgress);
        assert!(matches!(
            fit(&random_data(4, 3, 5)),
            Err(TsneError::TooFewRows { rows: 4 })
        ));
        assert!(matches!(
            fit(&random_data(20, 1, 5)),
            Err(TsneError::TooFewFeatures { features: 1 })
        ));
        let mut bad = random_data(20, 3, 5);
        bad[[7, 2]] = f64::NAN;
        assert!(matches!(
            fit(&bad),
            Err(TsneError::Neighbours(KnnError::NonFinite {
                row: 7,
                column: 2
            }))
        ));
        assert!(matches!(
            fit(&Array2::from_elem((20, 3), 2.5)),
            Err(TsneError::NoVariance)
        ));
        assert!(matches!(
            fit(&(random_data(20, 3, 5) * 1e200)),
            Err(TsneError::Overflow)
        ));
    }

    #[test]
    fn bad_parameters_are_errors() {
        let x = random_data(40, 3, 6);
        let fit = |params: TsneParams| fit_tsne(x.view(), &params, 0, &NoProgress);
        let defaults = TsneParams::default;
        for (params, expected) in [
            (
                TsneParams {
                    perplexity: 0.5,
                    ..defaults()
                },
                "perplexity",
            ),
            (
                TsneParams {
                    perplexity: f64::NAN,
                    ..defaults()
                },
                "perplexity",
            ),
            (
                TsneParams {
                    theta: 1.5,
                    ..defaults()
                },
                "theta",
            ),
            (
                TsneParams {
                    theta: -0.1,
                    ..defaults()
                },
                "theta",
            ),
            (
                TsneParams {
                    max_iter: 249,
                    ..defaults()
                },
                "max_iter",
            ),
        ] {
            assert!(matches!(
                fit(params),
                Err(TsneError::InvalidParameter { name, .. }) if name == expected
            ));
        }
    }

    #[test]
    fn small_inputs_shrink_perplexity() -> TestResult {
        let x = blobs(40, 3, 2, 7);
        let map = fit_tsne(x.view(), &TsneParams::default(), 7, &NoProgress)?;
        assert_eq!(map.perplexity, 13.0);
        assert_eq!(map.embedding.dim(), (40, 2));
        let tiny = fit_tsne(
            random_data(5, 2, 7).view(),
            &TsneParams::default(),
            7,
            &NoProgress,
        )?;
        assert_eq!(tiny.perplexity, 1.0);
        assert!(tiny.embedding.iter().all(|v| v.is_finite()));
        Ok(())
    }

    #[test]
    fn rank_one_data_still_spreads_in_two_dimensions() -> TestResult {
        // The second feature is constant, so the second principal coordinate is exactly
        // zero for every point and, without seeded noise, would get no gradient.
        let x = Array2::from_shape_fn((60, 2), |(i, j)| if j == 0 { i as f64 } else { 5.0 });
        let params = TsneParams {
            max_iter: 300,
            ..TsneParams::default()
        };
        let map = fit_tsne(x.view(), &params, 3, &NoProgress)?;
        assert!(map.embedding.iter().all(|v| v.is_finite()));
        assert!(map.embedding.column(1).std(0.0) > 1e-3);
        Ok(())
    }

    #[test]
    fn same_seed_gives_the_same_bits_with_one_and_two_threads() -> TestResult {
        let x = blobs(240, 6, 4, 8);
        for repulsion in [Repulsion::BarnesHut, Repulsion::Fft] {
            let params = TsneParams {
                max_iter: 300,
                repulsion,
                ..TsneParams::default()
            };
            let run = |threads: usize| -> Result<TsneMap, Box<dyn std::error::Error>> {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()?;
                Ok(pool.install(|| fit_tsne(x.view(), &params, 42, &NoProgress))?)
            };
            let (one, two, again) = (run(1)?, run(2)?, run(2)?);
            assert_eq!(bits(&one), bits(&two), "{repulsion:?}");
            assert_eq!(bits(&two), bits(&again), "{repulsion:?}");
            assert_eq!(one.kl_divergence.to_bits(), two.kl_divergence.to_bits());
        }
        Ok(())
    }

    #[test]
    fn auto_uses_barnes_hut_for_small_maps_and_fft_for_large_ones() -> TestResult {
        let small = Repulsion::AUTO_FFT_FROM - 1;
        assert_eq!(Repulsion::Auto.resolve(small), RepulsionMethod::BarnesHut);
        assert_eq!(
            Repulsion::Auto.resolve(Repulsion::AUTO_FFT_FROM),
            RepulsionMethod::Fft
        );
        assert_eq!(Repulsion::Fft.resolve(10), RepulsionMethod::Fft);
        assert_eq!(
            Repulsion::BarnesHut.resolve(1_000_000),
            RepulsionMethod::BarnesHut
        );
        // The map says which method drew it.
        let x = blobs(60, 3, 2, 10);
        let params = TsneParams {
            max_iter: 250,
            repulsion: Repulsion::Fft,
            ..TsneParams::default()
        };
        let map = fit_tsne(x.view(), &params, 0, &NoProgress)?;
        assert_eq!(map.repulsion, RepulsionMethod::Fft);
        let map = fit_tsne(
            x.view(),
            &TsneParams {
                max_iter: 250,
                ..TsneParams::default()
            },
            0,
            &NoProgress,
        )?;
        assert_eq!(map.repulsion, RepulsionMethod::BarnesHut);
        Ok(())
    }

    #[derive(Default)]
    struct Counting {
        total: AtomicU64,
        steps: AtomicU64,
    }

    impl Progress for Counting {
        fn start(&self, _stage: &str, total: u64) {
            self.total.store(total, Ordering::Relaxed);
        }
        fn advance(&self, steps: u64) {
            self.steps.fetch_add(steps, Ordering::Relaxed);
        }
        fn finish(&self) {}
    }

    #[test]
    fn progress_counts_every_iteration() -> TestResult {
        let progress = Counting::default();
        let params = TsneParams {
            max_iter: 260,
            ..TsneParams::default()
        };
        fit_tsne(blobs(30, 3, 2, 9).view(), &params, 0, &progress)?;
        assert_eq!(progress.total.load(Ordering::Relaxed), 260);
        assert_eq!(progress.steps.load(Ordering::Relaxed), 260);
        Ok(())
    }
}
