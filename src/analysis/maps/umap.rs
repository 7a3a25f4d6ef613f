//! UMAP to two dimensions, following umap-learn 0.5 step by step.
//!
//! Owns the fuzzy simplicial set built from a [`KnnGraph`], the spectral initialisation, the
//! stochastic layout optimisation and [`UmapModel::transform`], which places new points in
//! a fitted map. It does not find neighbours: the caller passes the graph (exact or
//! NN-descent, see [`crate::analysis::knn`]) so that UMAP, t-SNE and HDBSCAN can share one,
//! and new points' neighbours come from a [`crate::analysis::knn::KnnIndex`].
//!
//! The steps and constants are umap-learn's (`umap_.py`, `spectral.py`, `layouts.py`):
//! `smooth_knn_dist` with `local_connectivity = 1`, fuzzy union, pruning of edges lighter
//! than `max / n_epochs`, spectral initialisation of the normalised graph, and SGD with the
//! published gradients, clip 4, linear learning-rate decay and `move_other = true`.
//! We wrote our own because the umap-rs crate multiplies both gradients by an extra squared
//! distance and reached a trustworthiness of only 0.68 on digits. Deviations from
//! umap-learn, all deliberate:
//!
//! - arithmetic is `f64` throughout (umap-learn stores the embedding in `f32`);
//! - the spectral eigenvectors come from our thick-restart Lanczos rather than ARPACK; the
//!   constant eigenvector is deflated instead of computed and dropped, and if the solver
//!   does not reach its tolerance we keep its best Ritz vectors (umap-learn falls back to a
//!   random layout);
//! - when the graph has more than four connected components, components are placed by
//!   classical MDS of their centroids (umap-learn uses a spectral embedding of
//!   `exp(-d²)` affinities, which underflows to the identity on unscaled data);
//! - negative samples come from seeded xoshiro streams rather than per-vertex Tausworthe
//!   states; above 4,096 points the SGD runs in parallel blocks that see each other's moves
//!   an epoch late (umap-learn is single-threaded when seeded), and edges run in order of
//!   rank rather than row (see `optimize_layout`);
//! - `d^2b` in the gradients comes from an interpolated table, within 2e-7 relative of
//!   `powf` at the default `b`;
//! - [`UmapModel::transform`] places each point independently of its batch (see there).
//!
//! Everything is a pure function of the data, the graph, the parameters and the seed: the
//! parallel steps compute rows or blocks independently from fixed inputs and combine them
//! in a fixed order, so the output is bit-identical whatever the number of threads.

use linfa_linalg::eigh::EighInto;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis, Slice};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

use crate::analysis::knn::KnnGraph;
use crate::analysis::progress::Progress;
use crate::analysis::streams::{Purpose, point_key, stream};

/// Why UMAP parameters were rejected or a layout could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum UmapError {
    /// A neighbourhood of fewer than two points (the point itself included) has no shape.
    #[error("n_neighbors must be at least 2, got {n_neighbors}")]
    TooFewNeighbours {
        /// The rejected value.
        n_neighbors: usize,
    },
    /// The spread sets the scale of the embedded clusters and must be positive and finite.
    #[error("spread must be positive and finite, got {spread}")]
    InvalidSpread {
        /// The rejected value.
        spread: f64,
    },
    /// `min_dist` must lie in `[0, spread]`, as umap-learn requires.
    #[error("min_dist must be in [0, spread = {spread}], got {min_dist}")]
    InvalidMinDist {
        /// The rejected value.
        min_dist: f64,
        /// The spread it was compared with.
        spread: f64,
    },
    /// Zero epochs would return the initialisation, not a UMAP layout.
    #[error("n_epochs must be at least 1")]
    ZeroEpochs,
    /// Without negative samples nothing pushes clusters apart and the layout collapses.
    #[error("negative_sample_rate must be at least 1")]
    ZeroNegativeSampleRate,
    /// The SGD step size must be positive and finite.
    #[error("learning_rate must be positive and finite, got {learning_rate}")]
    InvalidLearningRate {
        /// The rejected value.
        learning_rate: f64,
    },
    /// The graph was not built from this data.
    #[error("the kNN graph has {graph_points} points but the data has {data_points} rows")]
    GraphMismatch {
        /// Rows of the data matrix.
        data_points: usize,
        /// Points in the graph.
        graph_points: usize,
    },
    /// `n_neighbors` counts the point itself, so the graph needs `n_neighbors - 1` columns.
    #[error(
        "n_neighbors = {n_neighbors} needs a kNN graph with at least {needed} neighbours per point, got {available}"
    )]
    GraphTooSmall {
        /// The requested neighbourhood size.
        n_neighbors: usize,
        /// Neighbours per point the graph must have (`n_neighbors - 1`).
        needed: usize,
        /// Neighbours per point the graph has.
        available: usize,
    },
    /// A NaN or infinite value in the data; the first one found is reported.
    #[error("value at row {row}, column {column} is not finite")]
    NonFinite {
        /// Row (point) of the offending value.
        row: usize,
        /// Column (feature) of the offending value.
        column: usize,
    },
    /// The eigensolver of the spectral initialisation found fewer independent directions
    /// than the layout needs.
    #[error("spectral initialisation found {found} of {wanted} eigenvectors")]
    Eigenvectors {
        /// Eigenvectors found.
        found: usize,
        /// Eigenvectors needed.
        wanted: usize,
    },
    /// New points must have the columns the map was fitted on.
    #[error("the map was fitted on {expected} columns but the new points have {got}")]
    DimensionMismatch {
        /// Columns of the fitted data.
        expected: usize,
        /// Columns of the new points.
        got: usize,
    },
    /// A neighbour of a new point is not a point of the fitted map.
    #[error("neighbour index {index} is outside the {reference_points} fitted points")]
    NeighbourOutOfRange {
        /// The offending index.
        index: usize,
        /// Points in the fitted map.
        reference_points: usize,
    },
    /// The dense eigendecomposition inside the eigensolver failed.
    #[error("dense eigendecomposition failed: {0}")]
    Linalg(#[from] linfa_linalg::LinalgError),
}

/// UMAP parameters as a user states them; turn them into [`ValidUmapParams`] with
/// [`UmapParams::validate`] before fitting.
///
/// Field names and defaults are umap-learn's, so published settings carry over.
#[derive(Debug, Clone, PartialEq)]
pub struct UmapParams {
    /// Size of the local neighbourhood, the point itself included (umap-learn's
    /// convention); larger values favour global over local structure. Default 15.
    pub n_neighbors: usize,
    /// Smallest distance between embedded points; smaller values give tighter clusters.
    /// Default 0.1.
    pub min_dist: f64,
    /// Scale of the embedded clusters, together with `min_dist`. Default 1.0.
    pub spread: f64,
    /// SGD epochs; `None` picks umap-learn's default: 500 up to 10,000 points, else 200.
    pub n_epochs: Option<usize>,
    /// Negative (repulsive) samples per positive sample. Default 5.
    pub negative_sample_rate: usize,
    /// Initial SGD step, decaying linearly to zero. Default 1.0.
    pub learning_rate: f64,
}

impl Default for UmapParams {
    fn default() -> Self {
        Self {
            n_neighbors: 15,
            min_dist: 0.1,
            spread: 1.0,
            n_epochs: None,
            negative_sample_rate: 5,
            learning_rate: 1.0,
        }
    }
}

impl UmapParams {
    /// Checks every parameter once and fits the output-space curve `1 / (1 + a d^2b)` to
    /// `(spread, min_dist)`, so that fitting never re-checks or re-fits.
    ///
    /// # Errors
    /// The [`UmapError`] parameter variant naming the first invalid value.
    pub fn validate(self) -> Result<ValidUmapParams, UmapError> {
        if self.n_neighbors < 2 {
            return Err(UmapError::TooFewNeighbours {
                n_neighbors: self.n_neighbors,
            });
        }
        if !(self.spread.is_finite() && self.spread > 0.0) {
            return Err(UmapError::InvalidSpread {
                spread: self.spread,
            });
        }
        if !(self.min_dist >= 0.0 && self.min_dist <= self.spread) {
            return Err(UmapError::InvalidMinDist {
                min_dist: self.min_dist,
                spread: self.spread,
            });
        }
        if self.n_epochs == Some(0) {
            return Err(UmapError::ZeroEpochs);
        }
        if self.negative_sample_rate == 0 {
            return Err(UmapError::ZeroNegativeSampleRate);
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(UmapError::InvalidLearningRate {
                learning_rate: self.learning_rate,
            });
        }
        let (a, b) = find_ab_params(self.spread, self.min_dist);
        Ok(ValidUmapParams { params: self, a, b })
    }
}

/// UMAP parameters that passed [`UmapParams::validate`], with the fitted curve parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidUmapParams {
    params: UmapParams,
    a: f64,
    b: f64,
}

impl ValidUmapParams {
    /// The validated parameters, e.g. to record them with a run.
    pub fn params(&self) -> &UmapParams {
        &self.params
    }

    /// `(a, b)` of the output-space similarity `1 / (1 + a d^2b)`, fitted from `spread`
    /// and `min_dist` as umap-learn's `find_ab_params` does (≈ 1.577, 0.895 by default).
    pub fn curve(&self) -> (f64, f64) {
        (self.a, self.b)
    }
}

/// A fitted UMAP map: the 2D coordinates of the fitted points and what
/// [`UmapModel::transform`] needs to place new points among them.
///
/// It keeps no copy of the input data: new points arrive with their neighbours among the
/// fitted points (from a [`crate::analysis::knn::KnnIndex`] over the same data), which is
/// all the placement uses.
#[derive(Debug, Clone, PartialEq)]
pub struct UmapModel {
    /// `n x 2` coordinates of the fitted points, in input order.
    pub embedding: Array2<f64>,
    params: ValidUmapParams,
    n_features: usize,
    /// umap-learn's global `mean_distances` of the fit (the self-distance 0 included),
    /// which floors the bandwidth of new points.
    mean_distance: f64,
}

/// Embeds the rows of `x` in 2D with UMAP, using the neighbours in `knn`.
///
/// `knn` must be the graph of `x` with at least `n_neighbors - 1` neighbours per point
/// (the point itself is the first of umap-learn's `n_neighbors`); extra columns are
/// ignored, so one graph can serve several consumers. `x` itself is only used to place
/// disconnected components relative to each other. The model's embedding is `n x 2`,
/// bit-identical for the same inputs and seed whatever the number of rayon threads.
/// Reports one progress step per epoch under the stage name `"UMAP"`.
///
/// # Errors
/// [`UmapError::GraphMismatch`], [`UmapError::GraphTooSmall`] or [`UmapError::NonFinite`]
/// when the inputs do not fit together; [`UmapError::Eigenvectors`] or
/// [`UmapError::Linalg`] if the spectral initialisation breaks down.
pub fn fit_umap(
    x: ArrayView2<f64>,
    knn: &KnnGraph,
    params: &ValidUmapParams,
    seed: u64,
    progress: &dyn Progress,
) -> Result<UmapModel, UmapError> {
    let n_points = x.nrows();
    let n_neighbors = params.params.n_neighbors;
    if knn.n_points() != n_points {
        return Err(UmapError::GraphMismatch {
            data_points: n_points,
            graph_points: knn.n_points(),
        });
    }
    let needed = n_neighbors - 1;
    if knn.k() < needed {
        return Err(UmapError::GraphTooSmall {
            n_neighbors,
            needed,
            available: knn.k(),
        });
    }
    for (row, values) in x.axis_iter(Axis(0)).enumerate() {
        if let Some(column) = values.iter().position(|v| !v.is_finite()) {
            return Err(UmapError::NonFinite { row, column });
        }
    }

    let default_epochs = if n_points <= 10_000 { 500 } else { 200 };
    let n_epochs = params.params.n_epochs.unwrap_or(default_epochs);
    // Our graph excludes the point itself, which umap-learn counts among n_neighbors.
    let mut indices = knn.indices();
    indices.slice_axis_inplace(Axis(1), Slice::from(0..needed));
    let mut distances = knn.distances();
    distances.slice_axis_inplace(Axis(1), Slice::from(0..needed));

    let mean_distance = distances.sum() / (distances.nrows() as f64 * n_neighbors as f64);
    let bandwidths = smooth_knn_dist(distances, n_neighbors);
    let graph = fuzzy_union(indices, distances, &bandwidths);
    // umap-learn prunes with the real epoch count unless it is tiny (≤ 10), where it would
    // keep almost nothing; then it uses the default count instead.
    let pruning_epochs = if n_epochs > 10 {
        n_epochs
    } else {
        default_epochs
    };
    let graph = graph.pruned(pruning_epochs);

    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let init = spectral_layout(x, &graph, &mut rng)?;
    let mut embedding = noisy_scale(init, &mut rng);
    rescale_to_box(&mut embedding);

    progress.start("UMAP", n_epochs as u64);
    optimize_layout(
        &mut embedding,
        &graph,
        params,
        n_epochs,
        seed,
        LAYOUT_BLOCK,
        progress,
    );
    progress.finish();

    Ok(UmapModel {
        embedding: to_array(&embedding),
        params: params.clone(),
        n_features: x.ncols(),
        mean_distance,
    })
}

fn to_array(points: &[[f64; 2]]) -> Array2<f64> {
    let mut result = Array2::zeros((points.len(), 2));
    for (mut row, point) in result.axis_iter_mut(Axis(0)).zip(points) {
        row[0] = point[0];
        row[1] = point[1];
    }
    result
}

impl UmapModel {
    /// The parameters the map was fitted with.
    pub fn params(&self) -> &ValidUmapParams {
        &self.params
    }

    /// Places new points in the fitted map without moving the fitted ones, as umap-learn's
    /// `transform`: each new point's memberships to its `n_neighbors` nearest fitted points
    /// (`neighbours`, row `i` for `queries` row `i`, indices into the fitted points), a
    /// start at their membership-weighted mean position, then a short optimisation in which
    /// only the new point moves, attracted by its neighbours and repelled by random fitted
    /// points.
    ///
    /// Following umap-learn: the nearest-neighbour distance is not subtracted
    /// (`local_connectivity - 1 = 0`), the bandwidth solves the same equation with the
    /// nearest neighbour left out of the sum, the learning rate is a quarter of the fit's,
    /// and the optimisation runs `n_epochs / 3` epochs (default: 100 up to 10,000 fitted
    /// points, else 30). Deliberate deviations, so that a point's place depends only on the
    /// point, its neighbours, the model and the seed, never on the batch it came in (the
    /// pipeline places a million customers in chunks):
    ///
    /// - the epoch default looks at the fitted points, where umap-learn counts the new ones;
    /// - edges are scheduled against the largest possible membership, 1, where umap-learn
    ///   uses the batch's largest (1 or nearly so as soon as a new point lies near a fitted
    ///   one), and the bandwidth floor is the fit's mean distance, not the batch's;
    /// - each point draws its negative samples from its own stream, named by the seed and
    ///   its coordinates, so points are placed in parallel and identical points land
    ///   together.
    ///
    /// # Errors
    /// [`UmapError::DimensionMismatch`], [`UmapError::GraphMismatch`],
    /// [`UmapError::GraphTooSmall`] (fewer than `n_neighbors` columns),
    /// [`UmapError::NeighbourOutOfRange`] or [`UmapError::NonFinite`] when the inputs do
    /// not fit the model.
    pub fn transform(
        &self,
        queries: ArrayView2<f64>,
        neighbours: &KnnGraph,
        seed: u64,
    ) -> Result<Array2<f64>, UmapError> {
        let n_neighbors = self.params.params.n_neighbors;
        let reference_points = self.embedding.nrows();
        if queries.ncols() != self.n_features {
            return Err(UmapError::DimensionMismatch {
                expected: self.n_features,
                got: queries.ncols(),
            });
        }
        if neighbours.n_points() != queries.nrows() {
            return Err(UmapError::GraphMismatch {
                data_points: queries.nrows(),
                graph_points: neighbours.n_points(),
            });
        }
        if neighbours.k() < n_neighbors {
            return Err(UmapError::GraphTooSmall {
                n_neighbors,
                needed: n_neighbors,
                available: neighbours.k(),
            });
        }
        if let Some(&index) = neighbours
            .indices()
            .iter()
            .find(|&&j| j >= reference_points)
        {
            return Err(UmapError::NeighbourOutOfRange {
                index,
                reference_points,
            });
        }
        for (row, values) in queries.axis_iter(Axis(0)).enumerate() {
            if let Some(column) = values.iter().position(|v| !v.is_finite()) {
                return Err(UmapError::NonFinite { row, column });
            }
        }

        let n_epochs = match self.params.params.n_epochs {
            Some(epochs) => (epochs / 3).max(1),
            None if reference_points <= 10_000 => 100,
            None => 30,
        };
        let reference: Vec<[f64; 2]> = self
            .embedding
            .axis_iter(Axis(0))
            .map(|row| [row[0], row[1]])
            .collect();
        let pow = PowTable::new(self.params.b);
        let mut placed = vec![[0.0; 2]; queries.nrows()];
        placed.par_iter_mut().enumerate().for_each(|(i, point)| {
            let query = queries.row(i);
            let indices = neighbours.indices();
            let distances = neighbours.distances();
            let indices = indices.row(i);
            let distances = distances.row(i);
            let edges = self.memberships(
                indices.slice(ndarray::s![..n_neighbors]),
                distances.slice(ndarray::s![..n_neighbors]),
            );
            let mut rng = stream(
                seed,
                Purpose::UmapTransform,
                point_key(query.iter().copied()),
                0,
            );
            *point = self.place(&edges, &reference, n_epochs, &pow, &mut rng);
        });
        Ok(to_array(&placed))
    }

    /// `(fitted point, membership)` of one new point's neighbours, umap-learn's
    /// `smooth_knn_dist` with `local_connectivity = 0` and
    /// `compute_membership_strengths(bipartite = True)`.
    fn memberships(
        &self,
        indices: ArrayView1<usize>,
        distances: ArrayView1<f64>,
    ) -> Vec<(usize, f64)> {
        let target = (self.params.params.n_neighbors as f64).log2();
        // umap-learn's loop starts at column 1, written for rows that begin with the point
        // itself; new points have no such column, so their nearest neighbour is left out.
        let summed = distances.slice(ndarray::s![1..]);
        let sigma = search_sigma(summed, 0.0, target).max(MIN_K_DIST_SCALE * self.mean_distance);
        indices
            .iter()
            .zip(distances.iter())
            .map(|(&j, &d)| {
                let strength = if d <= 0.0 || sigma == 0.0 {
                    1.0
                } else {
                    (-(d / sigma)).exp()
                };
                (j, strength)
            })
            .collect()
    }

    /// Starts a new point at the membership-weighted mean of its neighbours and runs the
    /// attract/repel optimisation with the fitted points fixed.
    fn place(
        &self,
        edges: &[(usize, f64)],
        reference: &[[f64; 2]],
        n_epochs: usize,
        pow: &PowTable,
        rng: &mut Xoshiro256PlusPlus,
    ) -> [f64; 2] {
        let total: f64 = edges.iter().map(|e| e.1).sum();
        let mut point = [0.0; 2];
        if total > 0.0 {
            for &(j, w) in edges {
                point[0] += w / total * reference[j][0];
                point[1] += w / total * reference[j][1];
            }
        } else if let Some(&(j, _)) = edges.first() {
            // Every membership underflowed: start on the nearest neighbour.
            point = reference[j];
        }
        // Edges sampled less than once in the whole run carry no weight (umap-learn prunes
        // them the same way).
        let threshold = 1.0 / n_epochs as f64;
        let mut schedule: Vec<ScheduledEdge> = edges
            .iter()
            .filter(|e| e.1 >= threshold)
            .map(|&(tail, w)| {
                ScheduledEdge::new(0, tail, 1.0 / w, self.params.params.negative_sample_rate)
            })
            .collect();
        let initial_alpha = self.params.params.learning_rate / 4.0;
        let mut alpha = initial_alpha;
        let (a, b) = (self.params.a, self.params.b);
        for epoch in 0..n_epochs {
            let n = epoch as f64;
            for edge in &mut schedule {
                if edge.next_sample > n {
                    continue;
                }
                let other = reference[edge.tail];
                let coefficient = attraction(squared_distance(&point, &other), a, b, pow);
                for d in 0..2 {
                    point[d] += clip(coefficient * (point[d] - other[d])) * alpha;
                }
                edge.next_sample += edge.epochs_per_sample;
                let n_negative = edge.negatives_owed(n);
                for _ in 0..n_negative {
                    let other = reference[rng.gen_range(0..reference.len())];
                    let dist_squared = squared_distance(&point, &other);
                    if dist_squared > 0.0 {
                        let coefficient = repulsion(dist_squared, a, b, pow);
                        for d in 0..2 {
                            point[d] += clip(coefficient * (point[d] - other[d])) * alpha;
                        }
                    }
                }
                edge.next_negative_sample += n_negative as f64 * edge.epochs_per_negative_sample;
            }
            alpha = initial_alpha * (1.0 - n / n_epochs as f64);
        }
        point
    }
}

/// Least-squares fit of `1 / (1 + a x^2b)` to the target curve (1 up to `min_dist`, then
/// `exp(-(x - min_dist) / spread)`) on umap-learn's 300 points over `[0, 3 spread]`.
///
/// umap-learn calls scipy's `curve_fit` (Levenberg–Marquardt from `a = b = 1`); we run
/// the same method with an analytic Jacobian. The two agree to 1e-5 relative or better
/// (scipy's finite-difference Jacobian stops it marginally short of the minimum).
/// A step is accepted only if it lowers a finite cost, so the result is always finite.
fn find_ab_params(spread: f64, min_dist: f64) -> (f64, f64) {
    const SAMPLES: usize = 300;
    let step = 3.0 * spread / (SAMPLES - 1) as f64;
    let samples: Vec<(f64, f64)> = (0..SAMPLES)
        .map(|i| {
            let x = i as f64 * step;
            let y = if x < min_dist {
                1.0
            } else {
                (-(x - min_dist) / spread).exp()
            };
            (x, y)
        })
        .collect();
    let cost = |a: f64, b: f64| -> f64 {
        samples
            .iter()
            .map(|&(x, y)| {
                let r = 1.0 / (1.0 + a * x.powf(2.0 * b)) - y;
                r * r
            })
            .sum()
    };

    let (mut a, mut b) = (1.0, 1.0);
    let mut current = cost(a, b);
    let mut damping = 1e-3;
    for _ in 0..500 {
        // Normal equations J'J δ = -J'r for the two parameters.
        let (mut jaa, mut jab, mut jbb, mut ga, mut gb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for &(x, y) in &samples {
            let u = x.powf(2.0 * b);
            let denom = 1.0 + a * u;
            let r = 1.0 / denom - y;
            let da = -u / (denom * denom);
            // d/db x^2b = 2 ln(x) x^2b, which tends to 0 at x = 0.
            let db = if x > 0.0 {
                -a * u * 2.0 * x.ln() / (denom * denom)
            } else {
                0.0
            };
            jaa += da * da;
            jab += da * db;
            jbb += db * db;
            ga += da * r;
            gb += db * r;
        }
        let mut improved = false;
        while damping < 1e12 {
            // Marquardt's scaling: damp each parameter by its own curvature.
            let (maa, mbb) = (jaa * (1.0 + damping), jbb * (1.0 + damping));
            let det = maa * mbb - jab * jab;
            let delta_a = (-ga * mbb + gb * jab) / det;
            let delta_b = (-gb * maa + ga * jab) / det;
            let (new_a, new_b) = (a + delta_a, b + delta_b);
            let new_cost = cost(new_a, new_b);
            if new_cost.is_finite() && new_cost < current {
                let converged = (current - new_cost) <= 1e-15 * current.max(1e-300)
                    || (delta_a.abs() <= 1e-12 * new_a.abs()
                        && delta_b.abs() <= 1e-12 * new_b.abs());
                (a, b, current) = (new_a, new_b, new_cost);
                damping = (damping / 10.0).max(1e-12);
                improved = !converged;
                break;
            }
            damping *= 10.0;
        }
        if !improved {
            break;
        }
    }
    (a, b)
}

/// Per point, `(rho, sigma)`: the distance to the nearest neighbour and the bandwidth that
/// makes the memberships sum to `log2(n_neighbors)` (umap-learn's `smooth_knn_dist` with
/// `local_connectivity = 1`, `bandwidth = 1`).
///
/// `distances` excludes the point itself; umap-learn's rows include it at distance 0, which
/// is why its loops skip column 0 and its means divide by `n_neighbors`. We keep those
/// means (zero included) so that the `MIN_K_DIST_SCALE` floors are the same.
fn smooth_knn_dist(distances: ArrayView2<f64>, n_neighbors: usize) -> Vec<(f64, f64)> {
    let target = (n_neighbors as f64).log2();
    let row_len = n_neighbors as f64;
    let mean_distances = distances.sum() / (distances.nrows() as f64 * row_len);

    (0..distances.nrows())
        .into_par_iter()
        .map(|i| {
            let row = distances.row(i);
            // Rows are sorted, so the first positive distance is the nearest distinct point;
            // a point whose neighbours are all duplicates keeps rho = 0.
            let rho = row.iter().copied().find(|&d| d > 0.0).unwrap_or(0.0);
            let mid = search_sigma(row, rho, target);
            let floor = if rho > 0.0 {
                MIN_K_DIST_SCALE * row.sum() / row_len
            } else {
                MIN_K_DIST_SCALE * mean_distances
            };
            (rho, mid.max(floor))
        })
        .collect()
}

/// Bisection steps of the bandwidth search, as umap-learn.
const SMOOTH_K_N_ITER: usize = 64;
/// The search stops when the memberships sum to within this of the target.
const SMOOTH_K_TOLERANCE: f64 = 1e-5;
/// Bandwidths never go below this share of the mean neighbour distance.
const MIN_K_DIST_SCALE: f64 = 1e-3;

/// umap-learn's bisection for the bandwidth `sigma` at which one point's memberships
/// `exp(-(d - rho) / sigma)` (1 for `d <= rho`) sum to `target`; shared by the fit
/// (`rho` = distance to the nearest distinct neighbour) and transform (`rho` = 0).
fn search_sigma(distances: ArrayView1<f64>, rho: f64, target: f64) -> f64 {
    let (mut lo, mut hi, mut mid) = (0.0_f64, f64::INFINITY, 1.0_f64);
    for _ in 0..SMOOTH_K_N_ITER {
        let psum: f64 = distances
            .iter()
            .map(|&d| {
                let excess = d - rho;
                if excess > 0.0 {
                    (-(excess / mid)).exp()
                } else {
                    1.0
                }
            })
            .sum();
        if (psum - target).abs() < SMOOTH_K_TOLERANCE {
            break;
        }
        if psum > target {
            hi = mid;
            mid = (lo + hi) / 2.0;
        } else {
            lo = mid;
            mid = if hi == f64::INFINITY {
                mid * 2.0
            } else {
                (lo + hi) / 2.0
            };
        }
    }
    mid
}

/// A symmetric weighted graph in compressed-row form, each row sorted by neighbour index:
/// the fuzzy simplicial set that UMAP lays out.
#[derive(Debug, Clone, PartialEq)]
struct FuzzyGraph {
    offsets: Vec<usize>,
    neighbours: Vec<usize>,
    weights: Vec<f64>,
}

impl FuzzyGraph {
    /// Builds the graph from `(row, column, weight)` triples sorted by row then column.
    fn from_sorted(n_points: usize, triples: &[(usize, usize, f64)]) -> Self {
        let mut offsets = vec![0; n_points + 1];
        for &(row, _, _) in triples {
            offsets[row + 1] += 1;
        }
        for i in 0..n_points {
            offsets[i + 1] += offsets[i];
        }
        Self {
            offsets,
            neighbours: triples.iter().map(|t| t.1).collect(),
            weights: triples.iter().map(|t| t.2).collect(),
        }
    }

    fn n_points(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Neighbours and weights of point `i`.
    fn row(&self, i: usize) -> (&[usize], &[f64]) {
        let range = self.offsets[i]..self.offsets[i + 1];
        (&self.neighbours[range.clone()], &self.weights[range])
    }

    /// Every directed edge `(head, tail, weight)`, in row order; each undirected edge
    /// appears once per direction, as in umap-learn's COO matrix.
    fn edges(&self) -> impl Iterator<Item = (usize, usize, f64)> + '_ {
        (0..self.n_points()).flat_map(move |i| {
            let (tails, weights) = self.row(i);
            tails.iter().zip(weights).map(move |(&j, &w)| (i, j, w))
        })
    }

    /// Drops edges lighter than `max weight / n_epochs`: they would be sampled less than
    /// once during the optimisation (umap-learn does this before the initialisation too).
    fn pruned(&self, n_epochs: usize) -> Self {
        let max = self.weights.iter().copied().fold(0.0, f64::max);
        let threshold = max / n_epochs as f64;
        let kept: Vec<_> = self.edges().filter(|e| e.2 >= threshold).collect();
        Self::from_sorted(self.n_points(), &kept)
    }

    /// Connected-component label of every point, numbered by smallest member (as scipy's
    /// `connected_components`), and the number of components.
    fn components(&self) -> (Vec<usize>, usize) {
        let mut labels = vec![usize::MAX; self.n_points()];
        let mut count = 0;
        let mut stack = Vec::new();
        for start in 0..self.n_points() {
            if labels[start] != usize::MAX {
                continue;
            }
            labels[start] = count;
            stack.push(start);
            while let Some(i) = stack.pop() {
                for &j in self.row(i).0 {
                    if labels[j] == usize::MAX {
                        labels[j] = count;
                        stack.push(j);
                    }
                }
            }
            count += 1;
        }
        (labels, count)
    }

    /// The subgraph induced by `members` (sorted), renumbered `0..members.len()`.
    fn subgraph(&self, members: &[usize]) -> Self {
        let mut local = vec![usize::MAX; self.n_points()];
        for (new, &old) in members.iter().enumerate() {
            local[old] = new;
        }
        let mut triples = Vec::new();
        for (new, &old) in members.iter().enumerate() {
            let (tails, weights) = self.row(old);
            // A component is closed under edges, so every tail has a local index.
            triples.extend(tails.iter().zip(weights).map(|(&j, &w)| (new, local[j], w)));
        }
        Self::from_sorted(members.len(), &triples)
    }
}

/// Membership strengths `exp(-(d - rho) / sigma)` of each directed kNN edge, combined by
/// fuzzy union `w_ij = p_ij + p_ji - p_ij p_ji` (umap-learn's `set_op_mix_ratio = 1`).
fn fuzzy_union(
    indices: ArrayView2<usize>,
    distances: ArrayView2<f64>,
    bandwidths: &[(f64, f64)],
) -> FuzzyGraph {
    let n_points = indices.nrows();
    let mut directed: Vec<(usize, usize, f64)> = Vec::with_capacity(indices.len());
    for (i, &(rho, sigma)) in bandwidths.iter().enumerate() {
        for (&j, &d) in indices.row(i).iter().zip(distances.row(i)) {
            let strength = if d - rho <= 0.0 || sigma == 0.0 {
                1.0
            } else {
                (-((d - rho) / sigma)).exp()
            };
            // umap-learn eliminates explicit zeros (memberships that underflowed).
            if strength > 0.0 {
                directed.push((i, j, strength));
            }
        }
    }
    directed.sort_unstable_by_key(|&(i, j, _)| (i, j));
    let reverse = FuzzyGraph::from_sorted(n_points, &directed);
    let strength = |i: usize, j: usize| -> f64 {
        let (tails, weights) = reverse.row(i);
        tails.binary_search(&j).map_or(0.0, |pos| weights[pos])
    };

    // Each directed edge yields both directions with the same union weight. Addition and
    // multiplication commute bitwise, so the two copies of an edge found from both ends
    // are equal and deduplication can keep either.
    let mut union: Vec<(usize, usize, f64)> = Vec::with_capacity(2 * directed.len());
    for &(i, j, p_ij) in &directed {
        let p_ji = strength(j, i);
        let w = (p_ij + p_ji) - p_ij * p_ji;
        union.push((i, j, w));
        union.push((j, i, w));
    }
    union.sort_unstable_by_key(|&(i, j, _)| (i, j));
    union.dedup_by_key(|&mut (i, j, _)| (i, j));
    FuzzyGraph::from_sorted(n_points, &union)
}

/// Initial 2D coordinates from the graph's spectrum, umap-learn's `spectral_layout`:
/// the eigenvectors of the normalised adjacency `D^-1/2 W D^-1/2` with the largest
/// eigenvalues below the trivial one (the smallest of the normalised Laplacian).
/// Disconnected graphs are laid out component by component (`multi_component_layout`).
fn spectral_layout(
    x: ArrayView2<f64>,
    graph: &FuzzyGraph,
    rng: &mut Xoshiro256PlusPlus,
) -> Result<Vec<[f64; 2]>, UmapError> {
    let (labels, n_components) = graph.components();
    if n_components == 1 {
        return spectral_component(graph, rng);
    }
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_components];
    for (i, &label) in labels.iter().enumerate() {
        members[label].push(i);
    }
    let meta = component_positions(x, &members, rng)?;
    let mut layout = vec![[0.0; 2]; graph.n_points()];
    for (component, points) in members.iter().enumerate() {
        let centre = meta[component];
        // Half the distance to the nearest other component, so components do not overlap.
        let half_gap = meta
            .iter()
            .map(|other| distance(&centre, other))
            .filter(|&d| d > 0.0)
            .fold(f64::INFINITY, f64::min)
            / 2.0;
        // Components sharing one centroid leave no gap; any positive scale will do then.
        let half_gap = if half_gap.is_finite() { half_gap } else { 1.0 };
        // umap-learn places components too small for an eigenproblem (fewer than 4 points
        // in 2D) uniformly at random around their position.
        if points.len() < 4 {
            for &i in points {
                for (axis, value) in layout[i].iter_mut().enumerate() {
                    *value = centre[axis] + rng.gen_range(-half_gap..half_gap);
                }
            }
            continue;
        }
        let coords = spectral_component(&graph.subgraph(points), rng)?;
        let largest = coords
            .iter()
            .flat_map(|p| p.iter().map(|v| v.abs()))
            .fold(0.0, f64::max);
        let expansion = half_gap / largest;
        for (&i, point) in points.iter().zip(&coords) {
            layout[i] = [
                point[0] * expansion + centre[0],
                point[1] * expansion + centre[1],
            ];
        }
    }
    Ok(layout)
}

/// Spectral coordinates of one connected graph: the two leading non-trivial eigenvectors
/// of `D^-1/2 W D^-1/2`, found by Lanczos with the trivial eigenvector `sqrt(degree)`
/// deflated. Starts from the all-ones vector, as umap-learn's `eigsh` call does.
fn spectral_component(
    graph: &FuzzyGraph,
    rng: &mut Xoshiro256PlusPlus,
) -> Result<Vec<[f64; 2]>, UmapError> {
    let n = graph.n_points();
    let sqrt_degree: Vec<f64> = (0..n)
        .map(|i| graph.row(i).1.iter().sum::<f64>().sqrt())
        .collect();
    let norm = dot(&sqrt_degree, &sqrt_degree).sqrt();
    let trivial: Vec<f64> = sqrt_degree.iter().map(|v| v / norm).collect();
    let apply = |v: &[f64], out: &mut [f64]| {
        for (i, slot) in out.iter_mut().enumerate() {
            let (tails, weights) = graph.row(i);
            let sum: f64 = tails
                .iter()
                .zip(weights)
                .map(|(&j, &w)| w * v[j] / sqrt_degree[j])
                .sum();
            *slot = sum / sqrt_degree[i];
        }
    };
    let vectors = top_eigenvectors(n, Some(&trivial), vec![1.0; n], apply, rng)?;
    Ok((0..n).map(|i| [vectors[0][i], vectors[1][i]]).collect())
}

/// Positions of the components' centres, each coordinate within `[-1, 1]`.
///
/// Up to four components take umap-learn's fixed corners `±e1, ±e2`; more are placed by
/// classical MDS of the component centroids (the top eigenvectors of their centred Gram
/// matrix), which keeps far-apart groups far apart.
fn component_positions(
    x: ArrayView2<f64>,
    members: &[Vec<usize>],
    rng: &mut Xoshiro256PlusPlus,
) -> Result<Vec<[f64; 2]>, UmapError> {
    let count = members.len();
    if count <= 4 {
        let corners = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]];
        // umap-learn stacks [I; -I] of size ceil(count / 2), so two components sit at ±e1.
        let half = count.div_ceil(2);
        return Ok((0..count)
            .map(|c| {
                if c < half {
                    corners[c]
                } else {
                    corners[2 + c - half]
                }
            })
            .collect());
    }
    let mut centroids = Array2::<f64>::zeros((count, x.ncols()));
    for (mut centroid, points) in centroids.axis_iter_mut(Axis(0)).zip(members) {
        for &i in points {
            centroid += &x.row(i);
        }
        centroid /= points.len() as f64;
    }
    let mean = centroids
        .mean_axis(Axis(0))
        .unwrap_or_else(|| Array1::zeros(x.ncols()));
    let centred = &centroids - &mean;
    // Gram operator v -> C (C' v) without forming the count x count matrix.
    let apply = |v: &[f64], out: &mut [f64]| {
        let projected = centred.t().dot(&ArrayView1::from(v));
        for (slot, row) in out.iter_mut().zip(centred.axis_iter(Axis(0))) {
            *slot = row.dot(&projected);
        }
    };
    let start: Vec<f64> = (0..count).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let vectors = top_eigenvectors(count, None, start, apply, rng)?;
    // Principal coordinates are the eigenvectors scaled by sqrt(eigenvalue), i.e. the
    // centroids projected on their two principal axes.
    let axes: Vec<Vec<f64>> = vectors
        .iter()
        .map(|u| centred.t().dot(&ArrayView1::from(u.as_slice())))
        .map(|axis| {
            let norm = axis.dot(&axis).sqrt();
            centred
                .dot(&axis)
                .iter()
                .map(|s| if norm > 0.0 { s / norm } else { 0.0 })
                .collect()
        })
        .collect();
    let largest = axes
        .iter()
        .flat_map(|a| a.iter().map(|v: &f64| v.abs()))
        .fold(0.0, f64::max);
    let scale = if largest > 0.0 { 1.0 / largest } else { 1.0 };
    Ok((0..count)
        .map(|c| [axes[0][c] * scale, axes[1][c] * scale])
        .collect())
}

/// The two eigenvectors with the largest eigenvalues of the symmetric operator `apply` on
/// `R^dim`, restricted to the complement of `deflate` (a unit vector) when given.
///
/// Thick-restart Lanczos with full reorthogonalisation: a basis of `max(5, sqrt(dim))`
/// vectors (ARPACK's `ncv` sized as umap-learn sizes it), restarted from the
/// best Ritz vectors until their residuals fall below `1e-4` relative (umap-learn's `tol`)
/// or `5 dim` restarts (its `maxiter`). Deterministic: the only random draws, made when the
/// Krylov space is exhausted early, come from the seeded `rng`.
fn top_eigenvectors(
    dim: usize,
    deflate: Option<&[f64]>,
    start: Vec<f64>,
    apply: impl Fn(&[f64], &mut [f64]),
    rng: &mut Xoshiro256PlusPlus,
) -> Result<Vec<Vec<f64>>, UmapError> {
    const WANTED: usize = 2;
    const TOLERANCE: f64 = 1e-4;
    let available = dim.saturating_sub(usize::from(deflate.is_some()));
    let basis_size = (2 * WANTED + 1)
        .max((dim as f64).sqrt() as usize)
        .min(available);
    // Keep about half the basis at each restart, as ARPACK's heuristics do.
    let keep = WANTED + (basis_size.saturating_sub(WANTED)) / 2;
    let max_restarts = 5 * dim;

    let mut basis: Vec<Vec<f64>> = Vec::with_capacity(basis_size);
    let mut projected = Array2::<f64>::zeros((basis_size, basis_size));
    match orthonormalised(start, deflate, &basis) {
        Some(v) => basis.push(v),
        None => match random_direction(dim, deflate, &basis, rng) {
            Some(v) => basis.push(v),
            None => {
                return Err(UmapError::Eigenvectors {
                    found: 0,
                    wanted: WANTED,
                });
            }
        },
    }
    let mut w = vec![0.0; dim];
    let mut restart = 0;
    loop {
        // Extend the basis to `basis_size` vectors (or until the space is exhausted).
        let mut residual = Vec::new();
        let mut residual_norm = 0.0;
        loop {
            let j = basis.len() - 1;
            apply(&basis[j], &mut w);
            let scale = dot(&w, &w).sqrt();
            // Gram-Schmidt against the whole basis, twice ("twice is enough"), keeps it
            // orthogonal to working precision, which three-term Lanczos would not; the
            // coefficients are the projected matrix, arrow part after a restart included.
            for _ in 0..2 {
                if let Some(d) = deflate {
                    let c = dot(d, &w);
                    axpy(-c, d, &mut w);
                }
                for (i, b) in basis.iter().enumerate() {
                    let c = dot(b, &w);
                    axpy(-c, b, &mut w);
                    projected[[i, j]] += c;
                }
            }
            let beta = dot(&w, &w).sqrt();
            if basis.len() == basis_size {
                residual_norm = beta;
                residual = w.clone();
                break;
            }
            if beta > 1e-10 * scale {
                projected[[j + 1, j]] = beta;
                basis.push(w.iter().map(|v| v / beta).collect());
            } else {
                // An invariant subspace: its Ritz pairs are exact. Continue with a fresh
                // direction; if there is none, the whole space has been spanned.
                match random_direction(dim, deflate, &basis, rng) {
                    Some(v) => basis.push(v),
                    None => break,
                }
            }
        }

        let m = basis.len();
        if m < WANTED {
            return Err(UmapError::Eigenvectors {
                found: m,
                wanted: WANTED,
            });
        }
        let mut small = Array2::<f64>::zeros((m, m));
        for i in 0..m {
            for k in 0..m {
                small[[i, k]] = (projected[[i, k]] + projected[[k, i]]) / 2.0;
            }
        }
        let (values, vectors) = small.eigh_into()?;
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by(|&p, &q| values[q].total_cmp(&values[p]).then(p.cmp(&q)));
        let converged = order[..WANTED].iter().all(|&c| {
            residual_norm * vectors[[m - 1, c]].abs()
                <= TOLERANCE * values[c].abs().max(f64::EPSILON)
        });
        let ritz = |c: usize| -> Vec<f64> {
            let mut y = vec![0.0; dim];
            for (i, b) in basis.iter().enumerate() {
                axpy(vectors[[i, c]], b, &mut y);
            }
            y
        };
        if converged || restart >= max_restarts || residual_norm == 0.0 {
            if !converged {
                tracing::warn!(
                    dim,
                    restarts = restart,
                    "spectral initialisation did not converge; using the best Ritz vectors"
                );
            }
            return Ok(order[..WANTED].iter().map(|&c| ritz(c)).collect());
        }

        // Thick restart: keep the best Ritz vectors; the residual continues the basis and
        // couples to them through the last components of their Ritz coordinates.
        let kept: Vec<Vec<f64>> = order[..keep].iter().map(|&c| ritz(c)).collect();
        projected.fill(0.0);
        for (r, &c) in order[..keep].iter().enumerate() {
            projected[[r, r]] = values[c];
            projected[[keep, r]] = residual_norm * vectors[[m - 1, c]];
        }
        basis = kept;
        basis.push(residual.iter().map(|v| v / residual_norm).collect());
        restart += 1;
    }
}

/// `v` made orthogonal to `deflate` and `basis` (twice, for stability) and normalised;
/// `None` if nothing independent is left of it.
fn orthonormalised(
    mut v: Vec<f64>,
    deflate: Option<&[f64]>,
    basis: &[Vec<f64>],
) -> Option<Vec<f64>> {
    let original = dot(&v, &v).sqrt();
    for _ in 0..2 {
        for b in deflate.into_iter().chain(basis.iter().map(Vec::as_slice)) {
            let c = dot(b, &v);
            axpy(-c, b, &mut v);
        }
    }
    let norm = dot(&v, &v).sqrt();
    if norm > 1e-8 * original && norm > 0.0 {
        Some(v.into_iter().map(|x| x / norm).collect())
    } else {
        None
    }
}

/// A random unit vector orthogonal to `deflate` and `basis`, or `None` after a few draws if
/// they already span the space.
fn random_direction(
    dim: usize,
    deflate: Option<&[f64]>,
    basis: &[Vec<f64>],
    rng: &mut Xoshiro256PlusPlus,
) -> Option<Vec<f64>> {
    (0..3).find_map(|_| {
        let v: Vec<f64> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
        orthonormalised(v, deflate, basis)
    })
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `y += alpha x`.
fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

fn distance(p: &[f64; 2], q: &[f64; 2]) -> f64 {
    ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt()
}

/// umap-learn's `noisy_scale_coords`: scale so the largest coordinate is 10, then add
/// Gaussian noise of standard deviation 1e-4 so that no two points start exactly together.
fn noisy_scale(mut coords: Vec<[f64; 2]>, rng: &mut Xoshiro256PlusPlus) -> Vec<[f64; 2]> {
    const NOISE: f64 = 1e-4;
    let largest = coords
        .iter()
        .flat_map(|p| p.iter().map(|v| v.abs()))
        .fold(0.0, f64::max);
    let expansion = if largest > 0.0 { 10.0 / largest } else { 1.0 };
    for point in &mut coords {
        for value in point.iter_mut() {
            *value = *value * expansion + NOISE * standard_normal(rng);
        }
    }
    coords
}

/// Box-Muller: rand 0.8 has no normal distribution without rand_distr, and one draw per
/// coordinate is all the initialisation needs.
fn standard_normal(rng: &mut Xoshiro256PlusPlus) -> f64 {
    // 1 - U lies in (0, 1], so the logarithm is finite.
    let radius = (-2.0 * (1.0 - rng.r#gen::<f64>()).ln()).sqrt();
    radius * (std::f64::consts::TAU * rng.r#gen::<f64>()).cos()
}

/// Min-max scales each axis to `[0, 10]`, as umap-learn does right before optimising, so
/// that the learning rate means the same thing for every initialisation.
fn rescale_to_box(coords: &mut [[f64; 2]]) {
    for axis in 0..2 {
        let (lo, hi) = coords
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                (lo.min(p[axis]), hi.max(p[axis]))
            });
        let range = hi - lo;
        if range > 0.0 {
            for point in coords.iter_mut() {
                point[axis] = 10.0 * (point[axis] - lo) / range;
            }
        }
    }
}

/// Largest step of one gradient component (umap-learn's `clip`).
const CLIP: f64 = 4.0;

fn clip(v: f64) -> f64 {
    v.clamp(-CLIP, CLIP)
}

/// `x^b` for a fixed `b` by table lookup and linear interpolation: the layout's two
/// gradients need `d^2b` about 2.5 million times per epoch at 50,000 points, and `powf`
/// was 40% of UMAP's time (a polynomial `exp2(b log2 x)` was slower still: the SGD is one
/// long dependency chain, so latency counts, and a table read is short).
///
/// Cells split each octave `[2^e, 2^(e+1))` into 256 equal parts, indexed by the exponent
/// and the top 8 mantissa bits; within a cell the error of linear interpolation is below
/// `b |b - 1| / 8 * 2^-16` relative: 1.8e-7 at the default `b = 0.895`, under 4e-6 for any
/// `b <= 2`, far below the noise of stochastic gradient descent.
/// Arguments outside `[2^-60, 2^60)` fall back to `powf`. Pure arithmetic on the bits, so as
/// deterministic as `powf`.
#[derive(Debug, Clone)]
struct PowTable {
    b: f64,
    values: Vec<f64>,
}

impl PowTable {
    const CELL_BITS: u32 = 8;
    const MIN_EXPONENT: i64 = -60;
    const MAX_EXPONENT: i64 = 60;

    fn new(b: f64) -> Self {
        let per_octave = 1_usize << Self::CELL_BITS;
        let octaves = (Self::MAX_EXPONENT - Self::MIN_EXPONENT) as usize;
        // One extra entry: the right end of the last cell.
        let values = (0..=octaves * per_octave)
            .map(|i| {
                let exponent = Self::MIN_EXPONENT + (i / per_octave) as i64;
                let mantissa = 1.0 + (i % per_octave) as f64 / per_octave as f64;
                (mantissa * 2.0_f64.powi(exponent as i32)).powf(b)
            })
            .collect();
        Self { b, values }
    }

    #[inline]
    fn pow(&self, x: f64) -> f64 {
        const FRACTION_BITS: u32 = 52 - PowTable::CELL_BITS;
        let bits = x.to_bits();
        let exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
        if !(Self::MIN_EXPONENT..Self::MAX_EXPONENT).contains(&exponent) || x <= 0.0 {
            return x.powf(self.b);
        }
        let cell = (bits >> FRACTION_BITS) & ((1 << Self::CELL_BITS) - 1);
        let at = (((exponent - Self::MIN_EXPONENT) as u64) << Self::CELL_BITS | cell) as usize;
        let fraction = (bits & ((1 << FRACTION_BITS) - 1)) as f64 / (1_u64 << FRACTION_BITS) as f64;
        let (lo, hi) = (self.values[at], self.values[at + 1]);
        lo + (hi - lo) * fraction
    }
}

/// Attraction along an edge, as a multiple of `y_i - y_j`: the gradient of
/// `log(1 / (1 + a d^2b))`, `-2ab d^2(b-1) / (1 + a d^2b)`; zero for coincident points.
#[inline]
fn attraction(dist_squared: f64, a: f64, b: f64, pow: &PowTable) -> f64 {
    if dist_squared > 0.0 {
        let pow_b = pow.pow(dist_squared);
        -2.0 * a * b * (pow_b / dist_squared) / (a * pow_b + 1.0)
    } else {
        0.0
    }
}

/// Repulsion from a negative sample, as a multiple of `y_i - y_j`:
/// `2b / ((0.001 + d²)(1 + a d^2b))`, the 0.001 keeping it finite for near-coincident
/// points. Only called with `dist_squared > 0`.
#[inline]
fn repulsion(dist_squared: f64, a: f64, b: f64, pow: &PowTable) -> f64 {
    2.0 * b / ((0.001 + dist_squared) * (a * pow.pow(dist_squared) + 1.0))
}

/// One directed edge of the graph with its sampling schedule (umap-learn's
/// `epochs_per_sample` and the `epoch_of_next_*` arrays).
struct ScheduledEdge {
    head: usize,
    tail: usize,
    /// Epochs between two samples: an edge of the largest weight is sampled every epoch.
    epochs_per_sample: f64,
    epochs_per_negative_sample: f64,
    next_sample: f64,
    next_negative_sample: f64,
}

impl ScheduledEdge {
    fn new(head: usize, tail: usize, epochs_per_sample: f64, negative_sample_rate: usize) -> Self {
        let epochs_per_negative_sample = epochs_per_sample / negative_sample_rate as f64;
        Self {
            head,
            tail,
            epochs_per_sample,
            epochs_per_negative_sample,
            next_sample: epochs_per_sample,
            next_negative_sample: epochs_per_negative_sample,
        }
    }

    /// Negative samples owed at epoch `n` since the last visit; truncated as Python's
    /// `int()`.
    fn negatives_owed(&self, n: f64) -> usize {
        let owed = ((n - self.next_negative_sample) / self.epochs_per_negative_sample).trunc();
        if owed > 0.0 { owed as usize } else { 0 }
    }
}

/// Points per block of the layout optimisation. Up to this many points (digits, iris) the
/// optimisation is umap-learn's sequential SGD exactly; above, blocks run in parallel.
/// Fixed, never derived from the thread count, so the result is the same on any machine.
const LAYOUT_BLOCK: usize = 4_096;

/// umap-learn's `optimize_layout_euclidean` with `move_other = true` and `gamma = 1`:
/// attract along sampled edges, repel from random points, clip each gradient component to
/// `[-4, 4]`, and let the learning rate decay linearly to zero.
///
/// umap-learn runs it on one thread when seeded (its parallel mode races on shared
/// memory). We split the points into blocks of `block_size` ([`LAYOUT_BLOCK`]) and let each block run the
/// sampled edges of its own points in parallel, deterministically: a block moves its own
/// points at once, reads the others as they stood at the start of the epoch, and its pushes
/// on other blocks' points are added at the end of the epoch in block order. Each block
/// draws negative samples from its own stream named by `(seed, epoch, block)`. With one
/// block this is the sequential algorithm; with many, a point sees others' moves up to one
/// epoch late, as in umap-learn's parallel mode but without the races. Within a block,
/// edges run in order of their rank in their head's row, then by head: consecutive updates
/// then move different points, which lets the processor overlap them (1.35x faster than
/// row order at 50,000 points).
fn optimize_layout(
    embedding: &mut [[f64; 2]],
    graph: &FuzzyGraph,
    params: &ValidUmapParams,
    n_epochs: usize,
    seed: u64,
    block_size: usize,
    progress: &dyn Progress,
) {
    let initial_alpha = params.params.learning_rate;
    let n_vertices = embedding.len();
    let max_weight = graph.weights.iter().copied().fold(0.0, f64::max);
    let context = LayoutContext {
        a: params.a,
        b: params.b,
        pow: PowTable::new(params.b),
        n_vertices,
    };
    // make_epochs_per_sample: an edge of weight w is sampled w / max_w times per epoch;
    // pruning guarantees w > 0.
    let mut blocks: Vec<Vec<ScheduledEdge>> = (0..n_vertices)
        .step_by(block_size)
        .map(|start| {
            let heads = start..(start + block_size).min(n_vertices);
            let mut edges: Vec<(usize, ScheduledEdge)> =
                heads
                    .flat_map(|head| {
                        let (tails, weights) = graph.row(head);
                        tails.iter().zip(weights).enumerate().map(
                            move |(rank, (&tail, &weight))| {
                                let epochs_per_sample = max_weight / weight;
                                let rate = params.params.negative_sample_rate;
                                (
                                    rank,
                                    ScheduledEdge::new(head, tail, epochs_per_sample, rate),
                                )
                            },
                        )
                    })
                    .collect();
            edges.sort_by_key(|(rank, edge)| (*rank, edge.head));
            edges.into_iter().map(|(_, edge)| edge).collect()
        })
        .collect();

    let mut alpha = initial_alpha;
    for epoch in 0..n_epochs {
        let snapshot = embedding.to_vec();
        let pushes: Vec<Vec<(usize, [f64; 2])>> = embedding
            .par_chunks_mut(block_size)
            .zip(blocks.par_iter_mut())
            .enumerate()
            .map(|(block, (own, edges))| {
                let mut rng = stream(seed, Purpose::UmapLayout, epoch as u64, block as u64);
                let mut state = BlockState {
                    own,
                    start: block * block_size,
                    snapshot: &snapshot,
                    pushes: Vec::new(),
                };
                state.run_epoch(edges, &context, epoch as f64, alpha, &mut rng);
                state.pushes
            })
            .collect();
        for (k, delta) in pushes.into_iter().flatten() {
            embedding[k][0] += delta[0];
            embedding[k][1] += delta[1];
        }
        alpha = initial_alpha * (1.0 - epoch as f64 / n_epochs as f64);
        progress.advance(1);
    }
}

/// What every block of the layout reads and nobody writes.
struct LayoutContext {
    a: f64,
    b: f64,
    pow: PowTable,
    n_vertices: usize,
}

/// One block's view of the layout during an epoch: its own points (live), everyone's
/// positions at the epoch's start, and the pushes it owes other blocks.
struct BlockState<'a> {
    own: &'a mut [[f64; 2]],
    start: usize,
    snapshot: &'a [[f64; 2]],
    pushes: Vec<(usize, [f64; 2])>,
}

impl BlockState<'_> {
    /// Current position of point `i` as this block sees it.
    #[inline]
    fn position(&self, i: usize) -> [f64; 2] {
        match i.checked_sub(self.start) {
            Some(local) if local < self.own.len() => self.own[local],
            _ => self.snapshot[i],
        }
    }

    /// Moves point `i` by `delta`: at once if it is this block's, else at the epoch's end.
    #[inline]
    fn shift(&mut self, i: usize, delta: [f64; 2]) {
        match i.checked_sub(self.start) {
            Some(local) if local < self.own.len() => {
                self.own[local][0] += delta[0];
                self.own[local][1] += delta[1];
            }
            _ => self.pushes.push((i, delta)),
        }
    }

    fn run_epoch(
        &mut self,
        edges: &mut [ScheduledEdge],
        context: &LayoutContext,
        n: f64,
        alpha: f64,
        rng: &mut Xoshiro256PlusPlus,
    ) {
        let (a, b, pow) = (context.a, context.b, &context.pow);
        for edge in edges.iter_mut() {
            if edge.next_sample > n {
                continue;
            }
            let (j, k) = (edge.head, edge.tail);
            let (current, other) = (self.position(j), self.position(k));
            let coefficient = attraction(squared_distance(&current, &other), a, b, pow);
            let grad = [
                clip(coefficient * (current[0] - other[0])) * alpha,
                clip(coefficient * (current[1] - other[1])) * alpha,
            ];
            self.shift(j, grad);
            self.shift(k, [-grad[0], -grad[1]]);
            edge.next_sample += edge.epochs_per_sample;

            let n_negative = edge.negatives_owed(n);
            for _ in 0..n_negative {
                let k = rng.gen_range(0..context.n_vertices);
                let (current, other) = (self.position(j), self.position(k));
                let dist_squared = squared_distance(&current, &other);
                // Drawing the point itself, or an exact duplicate: no direction to push.
                if dist_squared > 0.0 {
                    let coefficient = repulsion(dist_squared, a, b, pow);
                    self.shift(
                        j,
                        [
                            clip(coefficient * (current[0] - other[0])) * alpha,
                            clip(coefficient * (current[1] - other[1])) * alpha,
                        ],
                    );
                }
            }
            edge.next_negative_sample += n_negative as f64 * edge.epochs_per_negative_sample;
        }
    }
}

fn squared_distance(p: &[f64; 2], q: &[f64; 2]) -> f64 {
    (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::knn::{KnnIndex, exact_knn};
    use crate::analysis::progress::NoProgress;
    use linfa_linalg::eigh::Eigh;
    use std::sync::Mutex;

    type SendError = Box<dyn std::error::Error + Send + Sync>;
    type TestResult = Result<(), SendError>;

    fn random_data(n: usize, d: usize, seed: u64) -> Array2<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        Array2::from_shape_fn((n, d), |_| rng.gen_range(-1.0..1.0))
    }

    /// Gaussian blobs around well-separated centres, `per_blob` points each.
    fn blobs(centres: &[[f64; 3]], per_blob: usize, seed: u64) -> Array2<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        Array2::from_shape_fn((centres.len() * per_blob, 3), |(i, j)| {
            centres[i / per_blob][j] + 0.3 * standard_normal(&mut rng)
        })
    }

    fn bits(y: &Array2<f64>) -> Vec<u64> {
        y.iter().map(|v| v.to_bits()).collect()
    }

    fn short_run() -> Result<ValidUmapParams, UmapError> {
        UmapParams {
            n_epochs: Some(60),
            ..UmapParams::default()
        }
        .validate()
    }

    #[test]
    fn pow_table_matches_powf() {
        for b in [
            0.5,
            0.79,
            0.8950608778515733,
            1.0,
            1.3341669924314914,
            1.929237144081752,
        ] {
            let table = PowTable::new(b);
            let bound = b * (b - 1.0_f64).abs() / 8.0 / 65_536.0 * 1.01 + 1e-15;
            let mut x = 1e-30;
            while x < 1e30 {
                for x in [x, x * 1.37, x * 2.9, x * 7.1] {
                    let (fast, exact) = (table.pow(x), x.powf(b));
                    assert!(
                        (fast - exact).abs() <= bound * exact,
                        "{x}^{b}: {fast} vs {exact}"
                    );
                }
                x *= 10.0;
            }
            for x in [1e-300, 1e300, 0.0] {
                assert_eq!(table.pow(x), x.powf(b));
            }
        }
    }

    #[test]
    fn find_ab_params_matches_scipy_curve_fit() {
        // Reference values: umap-learn's find_ab_params (scipy 1.x curve_fit). scipy stops
        // at a relative step of 1.5e-8 with finite-difference Jacobians; for (1, 1) it stops
        // 3e-6 short of the minimum (our fit has the lower cost), hence 1e-5.
        let cases = [
            (1.0, 0.1, 1.5769434602697652, 0.8950608778515733),
            (1.0, 0.0, 1.93280839734315, 0.7904949732233831),
            (1.0, 0.5, 0.5830300203414425, 1.3341669924314914),
            (2.0, 0.3, 0.3794946886311041, 0.9488152194414622),
            (1.0, 1.0, 0.11497568327441922, 1.929237144081752),
            (0.5, 0.01, 5.7202408272596506, 0.8108767592167067),
        ];
        for (spread, min_dist, a, b) in cases {
            let (fit_a, fit_b) = find_ab_params(spread, min_dist);
            assert!(
                (fit_a - a).abs() < 1e-5 * a && (fit_b - b).abs() < 1e-5 * b,
                "spread {spread}, min_dist {min_dist}: got ({fit_a}, {fit_b}), want ({a}, {b})"
            );
        }
    }

    #[test]
    fn validate_fits_the_default_curve_and_rejects_bad_values() -> TestResult {
        let (a, b) = UmapParams::default().validate()?.curve();
        assert!((a - 1.577).abs() < 1e-3 && (b - 0.895).abs() < 1e-3);

        let with = |edit: fn(&mut UmapParams)| {
            let mut params = UmapParams::default();
            edit(&mut params);
            params.validate()
        };
        assert!(matches!(
            with(|p| p.n_neighbors = 1),
            Err(UmapError::TooFewNeighbours { n_neighbors: 1 })
        ));
        assert!(matches!(
            with(|p| p.spread = 0.0),
            Err(UmapError::InvalidSpread { .. })
        ));
        assert!(matches!(
            with(|p| p.spread = f64::NAN),
            Err(UmapError::InvalidSpread { .. })
        ));
        assert!(matches!(
            with(|p| p.min_dist = -0.1),
            Err(UmapError::InvalidMinDist { .. })
        ));
        assert!(matches!(
            with(|p| p.min_dist = 1.5),
            Err(UmapError::InvalidMinDist { .. })
        ));
        assert!(matches!(
            with(|p| p.min_dist = f64::NAN),
            Err(UmapError::InvalidMinDist { .. })
        ));
        assert!(matches!(
            with(|p| p.n_epochs = Some(0)),
            Err(UmapError::ZeroEpochs)
        ));
        assert!(matches!(
            with(|p| p.negative_sample_rate = 0),
            Err(UmapError::ZeroNegativeSampleRate)
        ));
        assert!(matches!(
            with(|p| p.learning_rate = -1.0),
            Err(UmapError::InvalidLearningRate { .. })
        ));
        let edge = with(|p| p.min_dist = 1.0)?;
        assert_eq!(edge.params().min_dist, 1.0);
        Ok(())
    }

    #[test]
    fn smooth_knn_dist_memberships_sum_to_log2_k() -> TestResult {
        let x = random_data(300, 4, 5);
        let n_neighbors = 15;
        let knn = exact_knn(x.view(), n_neighbors - 1)?;
        let bandwidths = smooth_knn_dist(knn.distances(), n_neighbors);
        for (row, &(rho, sigma)) in knn.distances().axis_iter(Axis(0)).zip(&bandwidths) {
            assert_eq!(rho, row[0], "rho is the nearest distance");
            let sum: f64 = row
                .iter()
                .map(|&d| (-((d - rho).max(0.0) / sigma)).exp())
                .sum();
            assert!(
                (sum - (n_neighbors as f64).log2()).abs() < 1e-5,
                "sum {sum}"
            );
        }
        Ok(())
    }

    #[test]
    fn smooth_knn_dist_handles_duplicates() {
        // Point 0's neighbours are all duplicates: rho stays 0 and sigma takes the global
        // floor instead of collapsing to zero.
        let distances = ndarray::array![[0.0, 0.0], [0.0, 2.0], [0.0, 3.0]];
        let bandwidths = smooth_knn_dist(distances.view(), 3);
        assert_eq!(bandwidths[0].0, 0.0);
        assert!(bandwidths.iter().all(|&(_, sigma)| sigma > 0.0));
        assert_eq!(bandwidths[1].0, 2.0);
    }

    #[test]
    fn fuzzy_union_is_symmetric_probabilistic_or() {
        // Point 0 sees 1 (strength 1 at rho); 1 sees 0; 2 sees 0 at a distance.
        let indices = ndarray::array![[1_usize], [0], [0]];
        let distances = ndarray::array![[1.0], [1.0], [3.0]];
        let bandwidths = [(1.0, 1.0), (1.0, 1.0), (2.0, 0.5)];
        let graph = fuzzy_union(indices.view(), distances.view(), &bandwidths);
        let edges: Vec<_> = graph.edges().collect();
        let p20 = (-2.0_f64).exp();
        assert_eq!(
            edges,
            vec![(0, 1, 1.0), (0, 2, p20), (1, 0, 1.0), (2, 0, p20)]
        );
        assert_eq!(graph.components(), (vec![0, 0, 0], 1));
        // The weak edge goes when it would be sampled less than once in 5 epochs.
        let pruned = graph.pruned(5);
        assert_eq!(pruned.edges().count(), 2);
        assert_eq!(pruned.components(), (vec![0, 0, 1], 2));
    }

    #[test]
    fn lanczos_matches_dense_eigendecomposition() -> TestResult {
        // A random symmetric matrix with a known unit vector deflated away.
        let n = 60;
        let r = random_data(n, n, 9);
        let matrix = &r + &r.t();
        let deflate: Vec<f64> = (0..n).map(|i| ((i + 1) as f64).sqrt()).collect();
        let norm = dot(&deflate, &deflate).sqrt();
        let deflate: Vec<f64> = deflate.iter().map(|v| v / norm).collect();
        // Dense reference on the projected matrix P A P, P = I - u u'.
        let u = Array1::from(deflate.clone());
        let projector = Array2::<f64>::eye(n) - outer(&u, &u);
        let reference = projector.dot(&matrix).dot(&projector);
        let (values, vectors) = reference.eigh()?;
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&p, &q| values[q].total_cmp(&values[p]));

        let apply = |v: &[f64], out: &mut [f64]| {
            let result = matrix.dot(&ArrayView1::from(v));
            for (slot, value) in out.iter_mut().zip(&result) {
                *slot = *value;
            }
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let found = top_eigenvectors(n, Some(&deflate), vec![1.0; n], apply, &mut rng)?;
        for (vector, &c) in found.iter().zip(&order) {
            let cosine: f64 = vector
                .iter()
                .zip(vectors.column(c))
                .map(|(a, b)| a * b)
                .sum();
            assert!(cosine.abs() > 1.0 - 1e-6, "eigenvector {c}: cos = {cosine}");
            assert!(dot(vector, &deflate).abs() < 1e-10);
        }
        Ok(())
    }

    fn outer(a: &Array1<f64>, b: &Array1<f64>) -> Array2<f64> {
        Array2::from_shape_fn((a.len(), b.len()), |(i, j)| a[i] * b[j])
    }

    #[test]
    fn lanczos_reports_too_small_spaces() {
        let deflate = [1.0, 0.0];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let identity = |v: &[f64], out: &mut [f64]| out.copy_from_slice(v);
        let result = top_eigenvectors(2, Some(&deflate), vec![1.0, 1.0], identity, &mut rng);
        assert!(matches!(
            result,
            Err(UmapError::Eigenvectors {
                found: 1,
                wanted: 2
            })
        ));
    }

    #[test]
    fn components_get_separate_places() -> TestResult {
        // Six chains (two of them too small for an eigenproblem) along a line in data
        // space: MDS of the centroids must keep them apart, in order.
        let sizes = [6, 2, 5, 3, 8, 7];
        let mut triples = Vec::new();
        let mut members = Vec::new();
        let mut first = 0;
        for &size in &sizes {
            let points: Vec<usize> = (first..first + size).collect();
            for w in points.windows(2) {
                triples.push((w[0], w[1], 1.0));
                triples.push((w[1], w[0], 0.5 + 0.1 * w[0] as f64));
            }
            first += size;
            members.push(points);
        }
        triples.sort_unstable_by_key(|&(i, j, _)| (i, j));
        let n = first;
        let graph = FuzzyGraph::from_sorted(n, &triples);
        let x = Array2::from_shape_fn((n, 2), |(i, j)| {
            let component = members.iter().position(|m| m.contains(&i)).unwrap_or(0);
            (10 * component) as f64 + (i % 3) as f64 * if j == 0 { 1.0 } else { -1.0 }
        });
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
        let layout = spectral_layout(x.view(), &graph, &mut rng)?;
        assert!(layout.iter().flatten().all(|v| v.is_finite()));
        // The centroids lie on a line, so their first principal coordinate is monotone
        // and each component stays inside its own slab along it.
        let span = |m: &Vec<usize>| {
            m.iter()
                .map(|&i| layout[i][0])
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                    (lo.min(v), hi.max(v))
                })
        };
        let spans: Vec<(f64, f64)> = members.iter().map(span).collect();
        let increasing = spans.windows(2).all(|w| w[0].1 < w[1].0);
        let decreasing = spans.windows(2).all(|w| w[0].0 > w[1].1);
        assert!(
            increasing || decreasing,
            "overlapping components: {spans:?}"
        );
        Ok(())
    }

    #[test]
    fn few_components_sit_at_umap_learn_corners() -> TestResult {
        let x = Array2::zeros((1, 1));
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
        let members = |count: usize| vec![vec![0]; count];
        assert_eq!(
            component_positions(x.view(), &members(2), &mut rng)?,
            vec![[1.0, 0.0], [-1.0, 0.0]]
        );
        assert_eq!(
            component_positions(x.view(), &members(3), &mut rng)?,
            vec![[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]
        );
        Ok(())
    }

    #[test]
    fn separates_blobs_and_reports_progress() -> TestResult {
        #[derive(Debug, Default, Clone, PartialEq)]
        struct Log {
            starts: Vec<(String, u64)>,
            advanced: u64,
            finished: usize,
        }
        #[derive(Default)]
        struct Recorder(Mutex<Log>);
        impl Progress for Recorder {
            fn start(&self, stage: &str, total: u64) {
                if let Ok(mut r) = self.0.lock() {
                    r.starts.push((stage.to_owned(), total));
                }
            }
            fn advance(&self, steps: u64) {
                if let Ok(mut r) = self.0.lock() {
                    r.advanced += steps;
                }
            }
            fn finish(&self) {
                if let Ok(mut r) = self.0.lock() {
                    r.finished += 1;
                }
            }
        }

        let x = blobs(&[[0.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 5.0, 5.0]], 40, 2);
        let params = short_run()?;
        let knn = exact_knn(x.view(), 14)?;
        let recorder = Recorder::default();
        let y = fit_umap(x.view(), &knn, &params, 7, &recorder)?.embedding;
        let recorded = recorder.0.lock().map(|r| r.clone()).unwrap_or_default();
        let expected = Log {
            starts: vec![("UMAP".to_owned(), 60)],
            advanced: 60,
            finished: 1,
        };
        assert_eq!(recorded, expected);

        // Every point's nearest embedded neighbour comes from its own blob.
        let embedded = exact_knn(y.view(), 1)?;
        for (i, row) in embedded.indices().axis_iter(Axis(0)).enumerate() {
            assert_eq!(i / 40, row[0] / 40, "point {i} landed in another blob");
        }
        Ok(())
    }

    #[test]
    fn same_seed_is_bit_identical_and_seeds_differ() -> TestResult {
        let x = random_data(200, 5, 3);
        let knn = exact_knn(x.view(), 14)?;
        let params = short_run()?;
        let first = fit_umap(x.view(), &knn, &params, 42, &NoProgress)?.embedding;
        let again = fit_umap(x.view(), &knn, &params, 42, &NoProgress)?.embedding;
        let other = fit_umap(x.view(), &knn, &params, 43, &NoProgress)?.embedding;
        assert_eq!(first.dim(), (200, 2));
        assert_eq!(bits(&first), bits(&again));
        assert_ne!(bits(&first), bits(&other));
        Ok(())
    }

    #[test]
    fn identical_with_one_and_two_threads() -> TestResult {
        let x = random_data(300, 4, 8);
        let params = short_run()?;
        let run = |threads: usize| -> Result<Array2<f64>, SendError> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()?;
            pool.install(|| {
                let knn = exact_knn(x.view(), 14)?;
                Ok(fit_umap(x.view(), &knn, &params, 5, &NoProgress)?.embedding)
            })
        };
        assert_eq!(bits(&run(1)?), bits(&run(2)?));
        Ok(())
    }

    #[test]
    fn rejects_inputs_that_do_not_fit_together() -> TestResult {
        let x = random_data(30, 3, 1);
        let params = UmapParams::default().validate()?;
        let knn = exact_knn(x.view(), 10)?;
        assert!(matches!(
            fit_umap(x.view(), &knn, &params, 0, &NoProgress),
            Err(UmapError::GraphTooSmall {
                n_neighbors: 15,
                needed: 14,
                available: 10
            })
        ));
        let other = exact_knn(random_data(31, 3, 1).view(), 14)?;
        assert!(matches!(
            fit_umap(x.view(), &other, &params, 0, &NoProgress),
            Err(UmapError::GraphMismatch {
                data_points: 30,
                graph_points: 31
            })
        ));
        let knn = exact_knn(x.view(), 14)?;
        let mut bad = x.clone();
        bad[[2, 1]] = f64::NAN;
        assert!(matches!(
            fit_umap(bad.view(), &knn, &params, 0, &NoProgress),
            Err(UmapError::NonFinite { row: 2, column: 1 })
        ));
        Ok(())
    }

    /// A model fitted on 200 random points, 40 new points, their neighbours among the
    /// fitted ones and the index that found them.
    fn fitted_and_new() -> Result<(UmapModel, Array2<f64>, KnnGraph, KnnIndex), SendError> {
        let x = random_data(240, 4, 12);
        let (fit, new) = (
            x.slice(ndarray::s![..200, ..]),
            x.slice(ndarray::s![200.., ..]),
        );
        let knn = exact_knn(fit, 14)?;
        let model = fit_umap(fit, &knn, &short_run()?, 3, &NoProgress)?;
        let index = KnnIndex::new(fit, &knn, 0)?;
        let neighbours = index.query(new, 15)?;
        Ok((model, new.to_owned(), neighbours, index))
    }

    #[test]
    fn transform_is_identical_with_one_and_two_threads_and_in_any_batch() -> TestResult {
        let (model, new, neighbours, index) = fitted_and_new()?;
        let run = |threads: usize| -> Result<Array2<f64>, SendError> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()?;
            pool.install(|| Ok(model.transform(new.view(), &neighbours, 11)?))
        };
        let one = run(1)?;
        assert_eq!(one.dim(), (40, 2));
        assert!(one.iter().all(|v| v.is_finite()));
        assert_eq!(bits(&one), bits(&run(2)?));
        assert_ne!(
            bits(&one),
            bits(&model.transform(new.view(), &neighbours, 12)?)
        );
        // A point's place does not depend on the batch it comes in.
        let tail = new.slice(ndarray::s![25.., ..]);
        let alone = model.transform(tail, &index.query(tail, 15)?, 11)?;
        assert_eq!(
            bits(&alone),
            bits(&one.slice(ndarray::s![25.., ..]).to_owned())
        );
        Ok(())
    }

    #[test]
    fn transform_rejects_inputs_that_do_not_fit_the_model() -> TestResult {
        let (model, new, neighbours, _) = fitted_and_new()?;
        assert!(matches!(
            model.transform(new.slice(ndarray::s![.., ..3]), &neighbours, 0),
            Err(UmapError::DimensionMismatch {
                expected: 4,
                got: 3
            })
        ));
        assert!(matches!(
            model.transform(new.slice(ndarray::s![..10, ..]), &neighbours, 0),
            Err(UmapError::GraphMismatch {
                data_points: 10,
                graph_points: 40
            })
        ));
        let narrow = exact_knn(new.view(), 10)?;
        assert!(matches!(
            model.transform(new.view(), &narrow, 0),
            Err(UmapError::GraphTooSmall {
                n_neighbors: 15,
                needed: 15,
                available: 10
            })
        ));
        // Neighbours among 1,000 points cannot index a map of 200.
        let wide = random_data(1_000, 4, 1);
        let elsewhere =
            KnnIndex::new(wide.view(), &exact_knn(wide.view(), 5)?, 0)?.query(new.view(), 15)?;
        assert!(matches!(
            model.transform(new.view(), &elsewhere, 0),
            Err(UmapError::NeighbourOutOfRange {
                reference_points: 200,
                ..
            })
        ));
        let mut bad = new.clone();
        bad[[5, 2]] = f64::INFINITY;
        assert!(matches!(
            model.transform(bad.view(), &neighbours, 0),
            Err(UmapError::NonFinite { row: 5, column: 2 })
        ));
        Ok(())
    }

    #[test]
    fn blocked_layout_is_identical_with_one_and_two_threads() -> TestResult {
        // Blocks of 50 points make the parallel path run on a small graph.
        let x = random_data(400, 4, 21);
        let knn = exact_knn(x.view(), 14)?;
        let bandwidths = smooth_knn_dist(knn.distances(), 15);
        let graph = fuzzy_union(knn.indices(), knn.distances(), &bandwidths).pruned(60);
        let params = short_run()?;
        let start: Vec<[f64; 2]> = (0..400)
            .map(|i| [(i % 20) as f64 / 2.0, (i / 20) as f64 / 2.0])
            .collect();
        let run = |threads: usize, block_size: usize| -> Result<Vec<u64>, SendError> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()?;
            let mut layout = start.clone();
            pool.install(|| {
                optimize_layout(&mut layout, &graph, &params, 60, 8, block_size, &NoProgress);
            });
            Ok(layout.iter().flatten().map(|v| v.to_bits()).collect())
        };
        let blocked = run(1, 50)?;
        assert_eq!(blocked, run(2, 50)?);
        assert_ne!(blocked, run(1, 400)?);
        Ok(())
    }
}
