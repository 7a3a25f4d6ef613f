//! Placing new points into a fitted t-SNE map without moving it: openTSNE's
//! `TSNEEmbedding.transform` (Poličar et al. 2019), so that a map fitted on a sample can show
//! every customer, and next week's customers on this week's map.
//!
//! Each new point gets its own affinities to its nearest reference points (perplexity 5,
//! row-normalised, not symmetrised), starts at the coordinate-wise median of its neighbours'
//! positions, and is then optimised alone against the fixed reference map: attraction to its
//! neighbours, repulsion from every reference point (Barnes-Hut over a quadtree of the
//! reference, or FFT interpolation on a fixed padded grid over it), normalised by its own
//! kernel sum. New points do not interact, so the result for one point does not depend on
//! which others are transformed with it. openTSNE's schedule: 250 iterations, learning rate
//! 0.1, exaggeration 1.5, momentum 0.8, gradients clipped to norm 0.25.
//!
//! It does not own neighbour search: the caller passes the query-to-reference [`KnnGraph`]
//! (row `i`: reference indices nearest to new point `i`, with distances), so exact or
//! approximate search is the caller's choice. The new points' features are not needed
//! beyond that graph, so they are not an argument.
//!
//! Differences from openTSNE, each on purpose:
//! - The reference map is not re-centred (openTSNE shifts it in place to its bounding box
//!   centre): the FFT grid is centred on the map instead, and results come back in the map's
//!   own coordinates.
//! - With FFT interpolation, a point leaving the disc inscribed in the grid is projected back
//!   onto it and its momentum is dropped, as openTSNE intends; openTSNE's code zeroes the
//!   gains of the points that did *not* leave, which stalls them.
//!
//! Determinism: every new point is computed independently, sequentially, into its own slot.

use ndarray::{Array2, ArrayView1, ArrayView2, s};
use rayon::prelude::*;
use serde::Serialize;

use super::barnes_hut::BarnesHutReference;
use super::fft::FftReference;
use super::{MOMENTUM, Repulsion, RepulsionMethod, TsneError, TsneMap, calibrate_row, step};
use crate::analysis::knn::KnnGraph;
use crate::analysis::progress::Progress;

/// Largest gradient norm of a new point (openTSNE's transform `max_grad_norm`): points
/// that start on top of reference points feel huge repulsion, and would shoot off.
const MAX_GRAD_NORM: f64 = 0.25;
/// Neighbours whose median position is a new point's start (openTSNE's transform `k`).
const MEDIAN_NEIGHBOURS: usize = 25;
/// New points per progress step.
const PROGRESS_CHUNK: usize = 256;

/// Settings of [`TsneMap::transform`]; defaults are openTSNE 1.0's `transform` defaults.
#[derive(Debug, Clone, Serialize)]
pub struct TransformParams {
    /// Effective number of reference neighbours of a new point: 5, lower than the fit's 30,
    /// so that a new point lands by its closest reference points rather than between
    /// clusters (Poličar et al. 2019).
    pub perplexity: f64,
    /// Gradient-descent iterations.
    pub max_iter: usize,
    /// Step size: small (0.1) because only the new points move and they start close to
    /// where they belong.
    pub learning_rate: f64,
    /// Attraction multiplier (1.5): pulls new points a little more firmly into their
    /// neighbours' clusters.
    pub exaggeration: f64,
    /// Barnes-Hut accuracy, when Barnes-Hut is used (0 to 1).
    pub theta: f64,
    /// Repulsion from the reference map; [`Repulsion::Auto`] decides by the number of new
    /// points, as openTSNE does.
    pub repulsion: Repulsion,
}

impl Default for TransformParams {
    fn default() -> Self {
        TransformParams {
            perplexity: 5.0,
            max_iter: 250,
            learning_rate: 0.1,
            exaggeration: 1.5,
            theta: 0.5,
            repulsion: Repulsion::Auto,
        }
    }
}

impl TransformParams {
    /// How many reference neighbours to find for each new point: `3 * perplexity` (15 by
    /// default), as many as the affinities use.
    pub fn neighbours(&self) -> usize {
        (3.0 * self.perplexity) as usize
    }

    fn validate(&self) -> Result<(), TsneError> {
        let invalid = |name, value, why| Err(TsneError::InvalidParameter { name, value, why });
        if !(self.perplexity.is_finite() && self.perplexity >= 1.0) {
            return invalid("perplexity", self.perplexity, "must be at least 1");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return invalid("learning_rate", self.learning_rate, "must be positive");
        }
        if !(self.exaggeration.is_finite() && self.exaggeration > 0.0) {
            return invalid("exaggeration", self.exaggeration, "must be positive");
        }
        if !(0.0..=1.0).contains(&self.theta) {
            return invalid("theta", self.theta, "must be between 0 and 1");
        }
        Ok(())
    }
}

/// Repulsion of the fixed reference map on one new point.
#[derive(Debug, Clone)]
enum ReferenceRepulsion {
    BarnesHut(BarnesHutReference),
    Fft(FftReference),
}

impl ReferenceRepulsion {
    fn repulsion_on(&self, p: [f64; 2]) -> ([f64; 2], f64) {
        match self {
            ReferenceRepulsion::BarnesHut(tree) => tree.repulsion_on(p),
            ReferenceRepulsion::Fft(grid) => grid.repulsion_on(p),
        }
    }

    /// Where a point that left the region the method is valid on goes back to.
    fn confine(&self, p: [f64; 2]) -> Option<[f64; 2]> {
        match self {
            ReferenceRepulsion::BarnesHut(_) => None,
            ReferenceRepulsion::Fft(grid) => grid.confine(p),
        }
    }
}

impl TsneMap {
    /// Places new points into this map, leaving the map itself unchanged (openTSNE's
    /// `transform`).
    ///
    /// `neighbours` holds, for each new point, its nearest points of the data this map was
    /// fitted on: indices into [`TsneMap::embedding`]'s rows, nearest first, and their
    /// distances in feature space (a point that is also in the reference is not excluded).
    /// [`TransformParams::neighbours`] says how many to find; more are allowed (the first
    /// `3 * perplexity` shape the affinities, the first 25 the start), fewer lower the
    /// perplexity to a third of them. Returns one row of map coordinates per new point, in
    /// the map's coordinates; `progress` sees one stage, "t-SNE transform", one step per
    /// new point.
    ///
    /// # Errors
    /// [`TsneError::InvalidParameter`] for a perplexity below 1, a non-positive learning
    /// rate or exaggeration, theta outside [0, 1] or a graph without neighbours;
    /// [`TsneError::NeighbourOutOfRange`] for an index that is not a row of the map;
    /// [`TsneError::Overflow`] for non-finite distances; [`TsneError::NotFinite`] if a
    /// result is not finite (not expected).
    pub fn transform(
        &self,
        neighbours: &KnnGraph,
        params: &TransformParams,
        progress: &dyn Progress,
    ) -> Result<Array2<f64>, TsneError> {
        self.transform_with(
            neighbours.indices(),
            neighbours.distances(),
            params,
            progress,
        )
    }

    /// [`TsneMap::transform`] on the graph's parts; the tests build query graphs directly,
    /// since only [`crate::analysis::knn`] constructs a [`KnnGraph`].
    fn transform_with(
        &self,
        indices: ArrayView2<usize>,
        distances: ArrayView2<f64>,
        params: &TransformParams,
        progress: &dyn Progress,
    ) -> Result<Array2<f64>, TsneError> {
        params.validate()?;
        let n_reference = self.embedding.nrows();
        let (n_new, k) = indices.dim();
        if k == 0 {
            return Err(TsneError::InvalidParameter {
                name: "neighbours",
                value: 0.0,
                why: "each new point needs at least one reference neighbour",
            });
        }
        for (query, row) in indices.outer_iter().enumerate() {
            if let Some(&index) = row.iter().find(|&&j| j >= n_reference) {
                return Err(TsneError::NeighbourOutOfRange {
                    query,
                    index,
                    n_reference,
                });
            }
        }
        if distances.iter().any(|d| !d.is_finite()) {
            return Err(TsneError::Overflow);
        }

        let reference: Vec<[f64; 2]> = self
            .embedding
            .outer_iter()
            .map(|row| [row[0], row[1]])
            .collect();
        let repulsion = match params.repulsion.resolve(n_new) {
            RepulsionMethod::BarnesHut => {
                ReferenceRepulsion::BarnesHut(BarnesHutReference::new(&reference, params.theta))
            }
            RepulsionMethod::Fft => ReferenceRepulsion::Fft(FftReference::new(&reference)),
        };
        // As in fitting: every point needs about 3 * perplexity neighbours.
        let perplexity = params.perplexity.min(k as f64 / 3.0);
        let affinity_neighbours = k.min(params.neighbours().max(1));
        let placement = Placement {
            reference: &reference,
            repulsion: &repulsion,
            params,
            target_entropy: perplexity.ln(),
            affinity_neighbours,
        };

        progress.start("t-SNE transform", n_new as u64);
        let mut placed = vec![[0.0; 2]; n_new];
        placed
            .par_chunks_mut(PROGRESS_CHUNK)
            .enumerate()
            .for_each(|(chunk, out)| {
                for (offset, slot) in out.iter_mut().enumerate() {
                    let i = chunk * PROGRESS_CHUNK + offset;
                    *slot = placement.place(indices.row(i), distances.row(i));
                }
                progress.advance(out.len() as u64);
            });
        progress.finish();

        if placed.iter().flatten().any(|v| !v.is_finite()) {
            return Err(TsneError::NotFinite);
        }
        Ok(Array2::from_shape_fn((n_new, 2), |(i, c)| placed[i][c]))
    }
}

/// What every new point's optimisation shares.
struct Placement<'a> {
    reference: &'a [[f64; 2]],
    repulsion: &'a ReferenceRepulsion,
    params: &'a TransformParams,
    target_entropy: f64,
    affinity_neighbours: usize,
}

impl Placement<'_> {
    /// Optimises one new point whose reference neighbours are `indices` at `distances`.
    fn place(&self, indices: ArrayView1<usize>, distances: ArrayView1<f64>) -> [f64; 2] {
        let k = self.affinity_neighbours;
        let mut p = vec![0.0; k];
        calibrate_row(distances.slice(s![..k]), self.target_entropy, &mut p);
        let neighbours: Vec<[f64; 2]> = indices.iter().map(|&j| self.reference[j]).collect();

        let mut y = median(&neighbours[..neighbours.len().min(MEDIAN_NEIGHBOURS)]);
        let mut update = [0.0; 2];
        let mut gains = [1.0; 2];
        for _ in 0..self.params.max_iter {
            let mut attraction = [0.0; 2];
            for (other, p_j) in neighbours[..k].iter().zip(&p) {
                let (dx, dy) = (y[0] - other[0], y[1] - other[1]);
                let q = 1.0 / (1.0 + dx * dx + dy * dy);
                attraction[0] += p_j * q * dx;
                attraction[1] += p_j * q * dy;
            }
            let (force, z) = self.repulsion.repulsion_on(y);
            // Normalised by this point's own kernel sum, as openTSNE's transform.
            let z_inverse = 1.0 / (z + f64::EPSILON);
            let mut gradient =
                [0, 1].map(|c| self.params.exaggeration * attraction[c] - force[c] * z_inverse);
            let coeff = MAX_GRAD_NORM / (gradient[0].hypot(gradient[1]) + 1e-6);
            if coeff < 1.0 {
                gradient = gradient.map(|g| g * coeff);
            }
            update = step(
                update,
                &mut gains,
                gradient,
                MOMENTUM,
                self.params.learning_rate,
            );
            y = [y[0] + update[0], y[1] + update[1]];
            if let Some(inside) = self.repulsion.confine(y) {
                y = inside;
                update = [0.0; 2];
            }
        }
        y
    }
}

/// Coordinate-wise median (the mean of the two middle values for an even count), as
/// `np.median(..., axis=1)`; `points` is never empty.
fn median(points: &[[f64; 2]]) -> [f64; 2] {
    [0, 1].map(|c| {
        let mut values: Vec<f64> = points.iter().map(|p| p[c]).collect();
        values.sort_by(f64::total_cmp);
        let middle = values.len() / 2;
        if values.len() % 2 == 1 {
            values[middle]
        } else {
            (values[middle - 1] + values[middle]) / 2.0
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::maps::tsne::{TsneParams, fit_tsne};
    use crate::analysis::progress::NoProgress;
    use crate::analysis::validity::trustworthiness;
    use crate::ingest::{FeatureTableSpec, read_feature_table};
    use ndarray::{Array2, ArrayView2, Axis, concatenate};
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// Exact Euclidean neighbours of each query among the reference rows, nearest first,
    /// ties to the lower index: what a query-capable kNN index would return.
    fn query_neighbours(
        reference: ArrayView2<f64>,
        queries: ArrayView2<f64>,
        k: usize,
    ) -> (Array2<usize>, Array2<f64>) {
        let mut indices = Array2::zeros((queries.nrows(), k));
        let mut distances = Array2::zeros((queries.nrows(), k));
        for (i, q) in queries.outer_iter().enumerate() {
            let mut all: Vec<(f64, usize)> = reference
                .outer_iter()
                .enumerate()
                .map(|(j, r)| ((&q - &r).mapv(|v| v * v).sum(), j))
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            for (slot, (d, j)) in all.into_iter().take(k).enumerate() {
                indices[[i, slot]] = j;
                distances[[i, slot]] = d.sqrt();
            }
        }
        (indices, distances)
    }

    fn blobs(n: usize, d: usize, clusters: usize, seed: u64) -> Array2<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let centres = Array2::from_shape_fn((clusters, d), |_| rng.gen_range(-10.0..10.0));
        Array2::from_shape_fn((n, d), |(i, j)| {
            centres[[i % clusters, j]] + rng.gen_range(-1.0..1.0)
        })
    }

    fn small_map() -> Result<(Array2<f64>, TsneMap), Box<dyn std::error::Error>> {
        let x = blobs(300, 5, 3, 1);
        let params = TsneParams {
            max_iter: 300,
            ..TsneParams::default()
        };
        let map = fit_tsne(x.view(), &params, 1, &NoProgress)?;
        Ok((x, map))
    }

    /// Fit on the first 1,500 digits, place the other 297. openTSNE 1.0.4 on the same split
    /// (exact neighbours): 93.6% of placed points have a nearest map point of their own
    /// digit, combined trustworthiness 0.991; ours 93.3% and 0.990. The ceiling is the
    /// data's: a 1-nearest-neighbour classifier in feature space gets 94.6%.
    #[test]
    fn digits_held_out_land_among_their_own_digit() -> TestResult {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/digits.csv");
        let spec = FeatureTableSpec {
            id_column: "id".into(),
            label_column: Some("digit".into()),
            delimiter: b',',
        };
        let table = read_feature_table(&path, &spec)?;
        let labels = table.labels.ok_or("digits has labels")?;
        let x = table.values;
        let (fit, held_out) = x.view().split_at(Axis(0), 1500);
        let map = fit_tsne(fit, &TsneParams::default(), 42, &NoProgress)?;
        let params = TransformParams::default();
        let (indices, distances) = query_neighbours(fit, held_out, params.neighbours());
        let placed = map.transform_with(indices.view(), distances.view(), &params, &NoProgress)?;
        assert_eq!(placed.dim(), (297, 2));

        // The nearest reference point on the map shares the new point's digit.
        let mut agree = 0;
        for (i, p) in placed.outer_iter().enumerate() {
            let nearest = map
                .embedding
                .outer_iter()
                .enumerate()
                .map(|(j, r)| ((p[0] - r[0]).hypot(p[1] - r[1]), j))
                .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
                .map(|(_, j)| j)
                .ok_or("reference is not empty")?;
            agree += usize::from(labels[nearest] == labels[1500 + i]);
        }
        let agreement = agree as f64 / 297.0;
        let combined = concatenate(Axis(0), &[map.embedding.view(), placed.view()])?;
        let score = trustworthiness(x.view(), combined.view(), 10)?;
        assert!(agreement >= 0.92, "label agreement {agreement}");
        assert!(score >= 0.95, "combined trustworthiness {score}");
        Ok(())
    }

    #[test]
    fn new_points_do_not_interact_and_threads_do_not_matter() -> TestResult {
        let (x, map) = small_map()?;
        let queries = blobs(40, 5, 3, 2);
        let mut params = TransformParams::default();
        let (indices, distances) = query_neighbours(x.view(), queries.view(), params.neighbours());
        for repulsion in [Repulsion::BarnesHut, Repulsion::Fft] {
            params.repulsion = repulsion;
            let run =
                |threads: usize, rows: usize| -> Result<Vec<u64>, Box<dyn std::error::Error>> {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()?;
                    let placed = pool.install(|| {
                        map.transform_with(
                            indices.slice(s![..rows, ..]),
                            distances.slice(s![..rows, ..]),
                            &params,
                            &NoProgress,
                        )
                    })?;
                    Ok(placed.iter().map(|v| v.to_bits()).collect())
                };
            let all = run(1, 40)?;
            assert_eq!(all, run(2, 40)?, "{repulsion:?}");
            // The first ten, placed alone, land exactly where they did among forty.
            assert_eq!(all[..20], run(2, 10)?, "{repulsion:?}");
        }
        Ok(())
    }

    #[test]
    fn barnes_hut_and_fft_place_points_alike() -> TestResult {
        let (x, map) = small_map()?;
        let queries = blobs(30, 5, 3, 3);
        let params = TransformParams::default();
        let (indices, distances) = query_neighbours(x.view(), queries.view(), params.neighbours());
        let place = |repulsion| {
            let params = TransformParams {
                repulsion,
                ..TransformParams::default()
            };
            map.transform_with(indices.view(), distances.view(), &params, &NoProgress)
        };
        let (bh, fft) = (place(Repulsion::BarnesHut)?, place(Repulsion::Fft)?);
        let spread = map.embedding.std(0.0);
        for (a, b) in bh.outer_iter().zip(fft.outer_iter()) {
            assert!((a[0] - b[0]).hypot(a[1] - b[1]) < 0.02 * spread);
        }
        Ok(())
    }

    #[test]
    fn bad_inputs_are_errors() -> TestResult {
        let (x, map) = small_map()?;
        let queries = blobs(5, 5, 3, 4);
        let (mut indices, distances) = query_neighbours(x.view(), queries.view(), 15);
        let transform =
            |indices: &Array2<usize>, distances: &Array2<f64>, params: &TransformParams| {
                map.transform_with(indices.view(), distances.view(), params, &NoProgress)
            };
        for (params, expected) in [
            (
                TransformParams {
                    perplexity: 0.5,
                    ..TransformParams::default()
                },
                "perplexity",
            ),
            (
                TransformParams {
                    learning_rate: 0.0,
                    ..TransformParams::default()
                },
                "learning_rate",
            ),
            (
                TransformParams {
                    exaggeration: f64::NAN,
                    ..TransformParams::default()
                },
                "exaggeration",
            ),
            (
                TransformParams {
                    theta: 2.0,
                    ..TransformParams::default()
                },
                "theta",
            ),
        ] {
            assert!(matches!(
                transform(&indices, &distances, &params),
                Err(TsneError::InvalidParameter { name, .. }) if name == expected
            ));
        }
        let defaults = TransformParams::default();
        assert!(matches!(
            transform(&Array2::zeros((5, 0)), &Array2::zeros((5, 0)), &defaults),
            Err(TsneError::InvalidParameter {
                name: "neighbours",
                ..
            })
        ));
        let mut infinite = distances.clone();
        infinite[[1, 3]] = f64::INFINITY;
        assert!(matches!(
            transform(&indices, &infinite, &defaults),
            Err(TsneError::Overflow)
        ));
        indices[[2, 4]] = 300;
        assert!(matches!(
            transform(&indices, &distances, &defaults),
            Err(TsneError::NeighbourOutOfRange {
                query: 2,
                index: 300,
                n_reference: 300
            })
        ));
        // No new points: nothing to place, not an error.
        let none = transform(&Array2::zeros((0, 15)), &Array2::zeros((0, 15)), &defaults)?;
        assert_eq!(none.dim(), (0, 2));
        Ok(())
    }

    #[test]
    fn median_is_numpys() {
        assert_eq!(median(&[[3.0, 1.0], [1.0, 5.0], [2.0, 2.0]]), [2.0, 2.0]);
        assert_eq!(median(&[[4.0, 0.0], [1.0, 1.0]]), [2.5, 0.5]);
    }
}
