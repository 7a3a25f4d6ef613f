//! k-means as scikit-learn's `KMeans(algorithm="lloyd")` computes it: greedy k-means++
//! seeding, Lloyd iterations, several restarts, the run with the lowest inertia kept.
//!
//! Why our own: linfa's k-means matched scikit-learn's answers but took twice its time for
//! ten restarts and five times at 50,000 x 64. What we copy from scikit-learn, so the same
//! settings mean the same thing and give the same quality:
//!
//! * the data are centred on their mean first (distances are computed as
//!   `|x|^2 - 2 x.c + |c|^2`, which loses precision far from the origin);
//! * greedy k-means++: each new centre is the best of `2 + ln k` candidates drawn with
//!   probability proportional to the squared distance to the nearest centre so far;
//! * the tolerance is relative to the data: iterations stop when the squared centre shift
//!   summed over centres is at most `tolerance x` the mean per-feature variance, or when no
//!   label changes; after a tolerance stop one more assignment pass makes labels match the
//!   final centres;
//! * a centre left without points moves to the point farthest from its own centre;
//! * a restart replaces the best so far only if its inertia is lower *and* its clustering
//!   differs (a relabelled copy of the same clustering is not an improvement).
//!
//! Speed and determinism: rows are processed in fixed chunks of 256 rows (scikit-learn's
//! `CHUNK_SIZE`); each chunk's distances come from one matrix product (ndarray's, i.e.
//! matrixmultiply), and each chunk returns its own partial sums, which are added in chunk
//! order. The chunking never depends on the thread count, so the same seed gives the same
//! bits on 1 or 16 threads.
//!
//! The restarts run in lockstep rather than one after another: each k-means++ step draws
//! every restart's candidates, then one pass over the data scores all of them (one product
//! of each chunk with every restart's candidates), and each Lloyd iteration assigns the rows
//! to every still-running restart's centres in one pass. The data are read, and packed for
//! the product, once per step for all restarts instead of once per restart (matrixmultiply
//! packs the chunk for every product: with 4 candidates per product that packing cost more
//! than the multiplication). With 10 restarts and k = 10 on one core that took 200,000 x 64
//! from 3.7 s to 1.4 s and 50,000 x 64 from 0.46 s to 0.39 s (bench/README.md).
//! Each restart still starts from the RNG state a sequential loop over restarts would reach
//! (the draws of a seeding depend on n and k only), every product element is the same bits
//! whether it is computed alone or among other restarts' columns (matrixmultiply's
//! accumulation order depends on the rows' width only; see `distance_element` and
//! `assign`), and the winner is chosen in restart order, so the result is the sequential
//! loop's, bit for bit, and the same as before the lockstep was introduced.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::model::SegmentModel;
use super::{ClusteringError, distinct_rows};
use crate::domain::Partition;

/// Rows per chunk: scikit-learn's `CHUNK_SIZE`. A chunk's distance block (256 x k) stays in
/// cache, and the count of chunks, hence the summation order, depends only on n.
const CHUNK_ROWS: usize = 256;

/// Chunks one parallel task takes at least, so that small inputs (digits: 8 chunks) do not
/// pay for a task per 256 rows. Grouping never changes results: sums are per chunk.
const MIN_CHUNKS_PER_TASK: usize = 4;

/// k-means settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KmeansParams {
    /// Restarts from different k-means++ seedings; the lowest inertia wins.
    pub n_init: usize,
    /// Lloyd iterations per restart at most.
    pub max_iter: usize,
    /// Convergence: the squared centre shift, summed over centres, relative to the mean
    /// per-feature variance of the data (scikit-learn's `tol`).
    pub tolerance: f64,
}

impl Default for KmeansParams {
    fn default() -> Self {
        KmeansParams {
            n_init: 10,
            max_iter: 300,
            tolerance: 1e-4,
        }
    }
}

/// A fitted k-means model.
#[derive(Debug, Clone)]
pub struct KmeansFit {
    /// Segments (renumbered by size).
    pub partition: Partition,
    /// Sum of squared distances to the nearest centroid, as scikit-learn's `inertia_`.
    pub inertia: f64,
    /// The centroids, in the partition's order, to assign other customers.
    pub model: SegmentModel,
}

/// Fits k-means with `k` segments: `params.n_init` restarts, the lowest inertia kept.
pub fn fit_kmeans(
    x: ArrayView2<f64>,
    k: usize,
    params: &KmeansParams,
    seed: u64,
) -> Result<KmeansFit, ClusteringError> {
    if k == 0 {
        return Err(ClusteringError::NoSegmentsAsked);
    }
    let distinct = distinct_rows(x, k);
    if distinct < k {
        return Err(ClusteringError::TooFewDistinctRows { k, distinct });
    }
    let mean = x
        .mean_axis(Axis(0))
        .unwrap_or_else(|| Array1::zeros(x.ncols()));
    let data = Centred::new(&x - &mean);
    let tol = params.tolerance * data.mean_variance();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let max_iter = params.max_iter.max(1);
    // Each restart's RNG state as a sequential loop would find it: what one k-means++
    // seeding draws depends on n and k only, never on the data, so the states come from
    // skipping those draws. The restarts then run side by side, each parallel inside, and
    // the winner is chosen in restart order: the result of the sequential loop, bit for bit.
    let mut starts: Vec<Xoshiro256PlusPlus> = (0..params.n_init.max(1))
        .map(|_| {
            let start = rng.clone();
            skip_kmeans_plusplus_draws(&mut rng, data.n(), k);
            start
        })
        .collect();
    let seedings = kmeans_plusplus(&data, k, &mut starts);
    let runs = lloyd(&data, seedings, max_iter, tol);
    let mut runs = runs.into_iter();
    // n_init is at least 1, so there is a first run.
    let Some(mut best) = runs.next() else {
        return Err(ClusteringError::NoSegmentsAsked);
    };
    for run in runs {
        if run.inertia < best.inertia && !same_clustering(&run.labels, &best.labels, k) {
            best = run;
        }
    }
    let Run {
        labels,
        inertia,
        mut centres,
    } = best;
    centres += &mean;
    let (partition, order) = Partition::from_raw_with_order(labels.iter().map(|&l| Some(l)));
    let model = SegmentModel::Centroids(centres.select(Axis(0), &order));
    Ok(KmeansFit {
        partition,
        inertia,
        model,
    })
}

/// The centred data and what every pass needs of it.
struct Centred {
    x: Array2<f64>,
    /// `|x_i|^2` of each row, for k-means++'s distances.
    sq_norms: Vec<f64>,
}

impl Centred {
    fn new(x: Array2<f64>) -> Self {
        let x = x.as_standard_layout().into_owned();
        let sq_norms = x.rows().into_iter().map(|r| r.dot(&r)).collect();
        Centred { x, sq_norms }
    }

    fn n(&self) -> usize {
        self.x.nrows()
    }

    /// Mean over features of the per-feature (population) variance; the data are centred.
    fn mean_variance(&self) -> f64 {
        let (n, d) = self.x.dim();
        if n == 0 || d == 0 {
            return 0.0;
        }
        // Each column's sum of squares in row order, as ndarray's `dot` of a strided column
        // computes it, but in one row-major sweep instead of one strided sweep per column.
        // (A single column is contiguous, and `dot` unrolls it: keep `dot` there.)
        let sum_sq: f64 = if d == 1 {
            self.x.columns().into_iter().map(|c| c.dot(&c)).sum()
        } else {
            let mut columns = vec![0.0; d];
            for row in self.x.rows() {
                for (sum, &v) in columns.iter_mut().zip(row) {
                    *sum += v * v;
                }
            }
            columns.into_iter().sum()
        };
        sum_sq / (n * d) as f64
    }

    /// Applies `f` to every chunk of rows (its first row index and its rows) in parallel
    /// and returns the results in chunk order.
    fn map_chunks<T, F>(&self, f: F) -> Vec<T>
    where
        T: Send,
        F: Fn(usize, ArrayView2<f64>) -> T + Sync + Send,
    {
        self.x
            .axis_chunks_iter(Axis(0), CHUNK_ROWS)
            .into_par_iter()
            .enumerate()
            .with_min_len(MIN_CHUNKS_PER_TASK)
            .map(|(c, rows)| f(c * CHUNK_ROWS, rows))
            .collect()
    }
}

/// One restart's result.
struct Run {
    labels: Vec<usize>,
    inertia: f64,
    centres: Array2<f64>,
}

/// Greedy k-means++ (scikit-learn's `_kmeans_plusplus`) for several restarts at once, one
/// per RNG: for each restart the first centre uniformly at random, then for each next centre
/// `2 + floor(ln k)` candidates drawn with probability proportional to the current squared
/// distance, keeping the one that lowers the potential (sum of squared distances to the
/// nearest centre) the most.
///
/// The restarts advance in lockstep: at each step every restart draws its candidates from
/// its own RNG and distances, one pass over the data computes every candidate's potential
/// (one matrix product of each chunk of rows with all restarts' candidates), and a second
/// pass lowers each restart's nearest-centre distances to its chosen candidate (a product
/// with the chosen ones only). The data are read twice per step instead of once per restart
/// and step, the product's packing of each chunk is shared by all candidates, and no
/// `rows x candidates` table outlives its chunk. Each restart's result is what it would be
/// alone, bit for bit: see [`distance_element`].
fn kmeans_plusplus(data: &Centred, k: usize, rngs: &mut [Xoshiro256PlusPlus]) -> Vec<Array2<f64>> {
    let n = data.n();
    let runs = rngs.len();
    let trials = kmeans_plusplus_trials(k);
    let mut centres = vec![Array2::zeros((k, data.x.ncols())); runs];
    let mut chosen: Vec<usize> = rngs.iter_mut().map(|rng| rng.gen_range(0..n)).collect();
    // Row r: restart r's squared distance of every point to its nearest centre so far.
    let mut closest = Array2::zeros((runs, n));
    let mut potential = lower_closest(data, &chosen, &mut closest, false);
    let mut cumulative = Vec::with_capacity(n);
    let mut candidates = Vec::with_capacity(runs * trials);
    for c in 0..k {
        for (centres, &i) in centres.iter_mut().zip(&chosen) {
            centres.row_mut(c).assign(&data.x.row(i));
        }
        if c + 1 == k {
            break;
        }
        candidates.clear();
        for ((rng, closest), &potential) in rngs.iter_mut().zip(closest.rows()).zip(&potential) {
            cumulative.clear();
            let mut running = 0.0;
            for &d in closest {
                running += d;
                cumulative.push(running);
            }
            candidates.extend((0..trials).map(|_| {
                let target = rng.r#gen::<f64>() * potential;
                // numpy's searchsorted (left): the first index whose running sum reaches it.
                cumulative.partition_point(|&v| v < target).min(n - 1)
            }));
        }
        let potentials = candidate_potentials(data, &candidates, trials, closest.view());
        for (r, group) in potentials.chunks(trials).enumerate() {
            let mut best = 0;
            for (t, &p) in group.iter().enumerate() {
                if p < group[best] {
                    best = t;
                }
            }
            potential[r] = group[best];
            chosen[r] = candidates[r * trials + best];
        }
        lower_closest(data, &chosen, &mut closest, true);
    }
    centres
}

/// Number of candidates greedy k-means++ draws for each centre after the first.
fn kmeans_plusplus_trials(k: usize) -> usize {
    2 + (k as f64).ln().floor() as usize
}

/// Advances `rng` exactly as [`kmeans_plusplus`] does for `n` rows and `k` centres (one
/// index, then one uniform per candidate), without touching the data.
fn skip_kmeans_plusplus_draws(rng: &mut Xoshiro256PlusPlus, n: usize, k: usize) {
    let _first: usize = rng.gen_range(0..n);
    for _ in 1..k {
        for _ in 0..kmeans_plusplus_trials(k) {
            let _target: f64 = rng.r#gen();
        }
    }
}

/// A point's squared distance to a candidate for k-means++: `|x|^2 - 2 x.c + |c|^2` clamped
/// at 0, where `x.c` is one element of a chunk's matrix product with candidates, then
/// lowered to `bound` (the point's distance to its nearest centre so far).
///
/// Why the two passes of [`kmeans_plusplus`] and every restart in a lockstep group see the
/// same bits as a restart seeded alone: matrixmultiply computes each element of a product by
/// the same kernel, accumulating along the rows' width in an order fixed by that width
/// only, never by how many columns the product has or where the element sits; and this
/// function is the only arithmetic after it (`lockstep_seeding_equals_seeding_each_restart_alone`
/// checks it).
#[inline]
fn distance_element(x_sq: f64, product: f64, c_sq: f64, bound: f64) -> f64 {
    (x_sq - 2.0 * product + c_sq).max(0.0).min(bound)
}

/// For each candidate `t` (`trials` consecutive candidates per restart, restart `t / trials`
/// bounded by row `t / trials` of `closest`): the potential if it were added, the sum over
/// points of [`distance_element`], summed per chunk in row order and over chunks in order.
fn candidate_potentials(
    data: &Centred,
    candidates: &[usize],
    trials: usize,
    closest: ArrayView2<f64>,
) -> Vec<f64> {
    let cand = data.x.select(Axis(0), candidates);
    let cand_sq: Vec<f64> = candidates.iter().map(|&i| data.sq_norms[i]).collect();
    let m = candidates.len();
    let chunks = data.map_chunks(|start, rows| {
        let mut products = Array2::zeros((rows.nrows(), m));
        general_mat_mul(1.0, &rows, &cand.t(), 0.0, &mut products);
        let mut sums = vec![0.0; m];
        // A fresh array is in row-major order: row i is products[i * m..][..m].
        let (products, _) = products.into_raw_vec_and_offset();
        for (i, prod) in products.chunks_exact(m).enumerate() {
            let x_sq = data.sq_norms[start + i];
            let groups = prod
                .chunks_exact(trials)
                .zip(cand_sq.chunks_exact(trials))
                .zip(sums.chunks_exact_mut(trials));
            for (((prod, cand_sq), sums), bound) in groups.zip(closest.column(start + i)) {
                for ((&p, &c_sq), sum) in prod.iter().zip(cand_sq).zip(sums) {
                    *sum += distance_element(x_sq, p, c_sq, *bound);
                }
            }
        }
        sums
    });
    let mut potentials = vec![0.0; m];
    for sums in chunks {
        for (total, s) in potentials.iter_mut().zip(&sums) {
            *total += s;
        }
    }
    potentials
}

/// Lowers row `r` of `closest` to every point's [`distance_element`] to `centres[r]` (sets
/// it, when not `bounded`), and returns each row's new sum (per chunk in row order, over
/// chunks in order: the same sum [`candidate_potentials`] computed for that candidate).
fn lower_closest(
    data: &Centred,
    centres: &[usize],
    closest: &mut Array2<f64>,
    bounded: bool,
) -> Vec<f64> {
    let cent = data.x.select(Axis(0), centres);
    let cent_sq: Vec<f64> = centres.iter().map(|&i| data.sq_norms[i]).collect();
    let m = centres.len();
    let chunks: Vec<Vec<f64>> = data
        .x
        .axis_chunks_iter(Axis(0), CHUNK_ROWS)
        .into_par_iter()
        .zip(closest.axis_chunks_iter_mut(Axis(1), CHUNK_ROWS))
        .enumerate()
        .with_min_len(MIN_CHUNKS_PER_TASK)
        .map(|(chunk, (rows, mut closest))| {
            let start = chunk * CHUNK_ROWS;
            let mut products = Array2::zeros((rows.nrows(), m));
            general_mat_mul(1.0, &rows, &cent.t(), 0.0, &mut products);
            let mut sums = vec![0.0; m];
            for ((prod, x_sq), mut closest) in products
                .rows()
                .into_iter()
                .zip(&data.sq_norms[start..])
                .zip(closest.columns_mut())
            {
                for (((&p, &c_sq), sum), d) in
                    prod.iter().zip(&cent_sq).zip(&mut sums).zip(&mut closest)
                {
                    let bound = if bounded { *d } else { f64::INFINITY };
                    *d = distance_element(*x_sq, p, c_sq, bound);
                    *sum += *d;
                }
            }
            sums
        })
        .collect();
    let mut totals = vec![0.0; m];
    for sums in chunks {
        for (total, s) in totals.iter_mut().zip(&sums) {
            *total += s;
        }
    }
    totals
}

/// One restart's state while [`lloyd`] iterates.
struct Restart {
    centres: Array2<f64>,
    labels: Vec<usize>,
    /// Stopped iterating (labels unchanged, tolerance reached, or `max_iter`).
    done: bool,
    /// Stopped because no label changed: the labels already match the final centres.
    strict: bool,
}

/// Lloyd iterations (scikit-learn's `_kmeans_single_lloyd`) from each of `seedings`, all
/// restarts in lockstep: each pass over the data assigns the rows to every still-running
/// restart's centres with one matrix product per chunk (see [`assign`]), so the data are
/// read and packed once per iteration instead of once per restart and iteration. Each
/// restart stops on its own rule and leaves the lockstep group; its result is what it would
/// be alone, bit for bit.
fn lloyd(data: &Centred, seedings: Vec<Array2<f64>>, max_iter: usize, tol: f64) -> Vec<Run> {
    let mut restarts: Vec<Restart> = seedings
        .into_iter()
        .map(|centres| Restart {
            centres,
            labels: Vec::new(),
            done: false,
            strict: false,
        })
        .collect();
    for _ in 0..max_iter {
        let active: Vec<usize> = (0..restarts.len()).filter(|&r| !restarts[r].done).collect();
        if active.is_empty() {
            break;
        }
        let centres: Vec<ArrayView2<f64>> =
            active.iter().map(|&r| restarts[r].centres.view()).collect();
        let passes = assign(data, &centres, true);
        for (&r, (new_labels, sums, counts)) in active.iter().zip(passes) {
            let restart = &mut restarts[r];
            let new_centres =
                update_centres(data, restart.centres.view(), &new_labels, sums, counts);
            let shift: f64 = restart
                .centres
                .rows()
                .into_iter()
                .zip(new_centres.rows())
                .map(|(a, b)| squared_distance(a, b))
                .sum();
            restart.centres = new_centres;
            let unchanged = new_labels == restart.labels;
            restart.labels = new_labels;
            if unchanged {
                restart.strict = true;
                restart.done = true;
            } else if shift <= tol {
                restart.done = true;
            }
        }
    }
    // A restart that stopped on the tolerance or on max_iter gets labels that match its
    // final centres: one more assignment, all such restarts in one pass.
    let loose: Vec<usize> = (0..restarts.len())
        .filter(|&r| !restarts[r].strict)
        .collect();
    if !loose.is_empty() {
        let centres: Vec<ArrayView2<f64>> =
            loose.iter().map(|&r| restarts[r].centres.view()).collect();
        let passes = assign(data, &centres, false);
        for (&r, (labels, _, _)) in loose.iter().zip(passes) {
            restarts[r].labels = labels;
        }
    }
    let inertias = inertia(data, &restarts);
    restarts
        .into_iter()
        .zip(inertias)
        .map(|(restart, inertia)| Run {
            labels: restart.labels,
            inertia,
            centres: restart.centres,
        })
        .collect()
}

/// For each set of centres (one per restart, all with the same k): the nearest centre of
/// every row and, when `update`, each centre's sum of its rows and count.
///
/// Each chunk's distances to every set come from one matrix product with all the sets'
/// centres stacked, `-2 x.c + |c|^2` (all that is needed to rank centres for a row). An
/// element of that product is the same bits as in a product with one set alone:
/// matrixmultiply accumulates each element in an order fixed by the rows' width, and
/// applies `alpha = -2` (exact) and `beta = 1` the same way on full and edge tiles. Labels
/// and per-chunk sums are then per set, added over chunks in chunk order.
fn assign(
    data: &Centred,
    sets: &[ArrayView2<f64>],
    update: bool,
) -> Vec<(Vec<usize>, Array2<f64>, Vec<usize>)> {
    let Some(first) = sets.first() else {
        return Vec::new();
    };
    let (k, d) = first.dim();
    let mut stacked = Array2::zeros((sets.len() * k, d));
    for (mut block, set) in stacked.axis_chunks_iter_mut(Axis(0), k).zip(sets) {
        block.assign(set);
    }
    let centre_sq: Vec<f64> = stacked.rows().into_iter().map(|c| c.dot(&c)).collect();
    let passes = data.map_chunks(|_, rows| {
        let mut dist =
            Array2::from_shape_fn((rows.nrows(), stacked.nrows()), |(_, j)| centre_sq[j]);
        general_mat_mul(-2.0, &rows, &stacked.t(), 1.0, &mut dist);
        let mut passes: Vec<ChunkPass> = (0..sets.len())
            .map(|_| ChunkPass {
                labels: Vec::with_capacity(rows.nrows()),
                sums: update.then(|| Array2::zeros((k, d))),
                counts: vec![0; k],
            })
            .collect();
        for (row, dists) in rows.rows().into_iter().zip(dist.rows()) {
            for (pass, dists) in passes.iter_mut().zip(dists.axis_chunks_iter(Axis(0), k)) {
                let mut label = 0;
                let mut min = dists[0];
                for (j, &v) in dists.iter().enumerate().skip(1) {
                    if v < min {
                        min = v;
                        label = j;
                    }
                }
                pass.labels.push(label);
                pass.counts[label] += 1;
                if let Some(sums) = pass.sums.as_mut() {
                    sums.row_mut(label).scaled_add(1.0, &row);
                }
            }
        }
        passes
    });
    let mut out: Vec<(Vec<usize>, Array2<f64>, Vec<usize>)> = (0..sets.len())
        .map(|_| {
            (
                Vec::with_capacity(data.n()),
                Array2::zeros((k, d)),
                vec![0; k],
            )
        })
        .collect();
    for chunk in passes {
        for ((labels, sums, counts), pass) in out.iter_mut().zip(chunk) {
            labels.extend_from_slice(&pass.labels);
            if let Some(chunk_sums) = pass.sums {
                *sums += &chunk_sums;
            }
            for (total, c) in counts.iter_mut().zip(&pass.counts) {
                *total += c;
            }
        }
    }
    out
}

/// What one assignment pass over a chunk found for one set of centres.
struct ChunkPass {
    labels: Vec<usize>,
    /// Per-centre sum of the chunk's rows assigned to it (`k x d`), when centres update.
    sums: Option<Array2<f64>>,
    counts: Vec<usize>,
}

/// New centres from the sums: empty centres first take the points farthest from their own
/// centre (scikit-learn's `_relocate_empty_clusters_dense`), then every centre with points
/// becomes their mean; a centre that still has none stays where it was summed to (zero).
fn update_centres(
    data: &Centred,
    old: ArrayView2<f64>,
    labels: &[usize],
    mut sums: Array2<f64>,
    mut counts: Vec<usize>,
) -> Array2<f64> {
    let empty: Vec<usize> = (0..counts.len()).filter(|&j| counts[j] == 0).collect();
    if !empty.is_empty() {
        let far = farthest_points(data, old, labels, empty.len());
        for (&j, &i) in empty.iter().zip(&far) {
            let row = data.x.row(i);
            let from = labels[i];
            sums.row_mut(from).scaled_add(-1.0, &row);
            sums.row_mut(j).assign(&row);
            counts[from] -= 1;
            counts[j] = 1;
        }
    }
    for (mut centre, &count) in sums.rows_mut().into_iter().zip(&counts) {
        if count > 0 {
            centre *= 1.0 / count as f64;
        }
    }
    sums
}

/// The `m` points farthest from their assigned centre, farthest first (ties: lower index);
/// none when every point sits on its centre, where moving a centre cannot help.
fn farthest_points(
    data: &Centred,
    centres: ArrayView2<f64>,
    labels: &[usize],
    m: usize,
) -> Vec<usize> {
    let distances: Vec<f64> = data
        .x
        .rows()
        .into_iter()
        .zip(labels)
        .map(|(row, &l)| squared_distance(row, centres.row(l)))
        .collect();
    if distances.iter().all(|&d| d == 0.0) {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..distances.len()).collect();
    order.sort_by(|&a, &b| distances[b].total_cmp(&distances[a]).then(a.cmp(&b)));
    order.truncate(m);
    order
}

/// Each restart's sum of squared distances of the rows to their centres, computed
/// directly (not through the norm expansion), per chunk and added in chunk order; one pass
/// over the data for all restarts.
fn inertia(data: &Centred, restarts: &[Restart]) -> Vec<f64> {
    let chunks = data.map_chunks(|start, rows| {
        restarts
            .iter()
            .map(|restart| {
                let labels = &restart.labels[start..start + rows.nrows()];
                row_distances(rows, labels, restart.centres.view())
                    .into_iter()
                    .sum::<f64>()
            })
            .collect::<Vec<f64>>()
    });
    (0..restarts.len())
        .map(|r| chunks.iter().map(|sums| sums[r]).sum())
        .collect()
}

/// Each row's [`squared_distance`] to its centre, the same bits, but four rows at a time:
/// one row's sum is a chain of dependent additions (the order is fixed, so it cannot be
/// vectorised), and four independent chains keep the adder busy.
fn row_distances(rows: ArrayView2<f64>, labels: &[usize], centres: ArrayView2<f64>) -> Vec<f64> {
    let d = rows.ncols();
    let (Some(x), Some(c)) = (rows.as_slice(), centres.as_slice()) else {
        return rows
            .rows()
            .into_iter()
            .zip(labels)
            .map(|(row, &l)| squared_distance(row, centres.row(l)))
            .collect();
    };
    let mut out = Vec::with_capacity(labels.len());
    if d == 0 {
        out.resize(labels.len(), 0.0);
        return out;
    }
    let centre = |l: usize| &c[l * d..(l + 1) * d];
    let mut blocks = x.chunks_exact(4 * d);
    let mut block_labels = labels.chunks_exact(4);
    for (block, l) in (&mut blocks).zip(&mut block_labels) {
        let (r0, rest) = block.split_at(d);
        let (r1, rest) = rest.split_at(d);
        let (r2, r3) = rest.split_at(d);
        let (c0, c1, c2, c3) = (centre(l[0]), centre(l[1]), centre(l[2]), centre(l[3]));
        let mut s = [-0.0f64; 4];
        for p in 0..d {
            let e = [r0[p] - c0[p], r1[p] - c1[p], r2[p] - c2[p], r3[p] - c3[p]];
            for (s, e) in s.iter_mut().zip(e) {
                *s += e * e;
            }
        }
        out.extend_from_slice(&s);
    }
    for (row, &l) in blocks
        .remainder()
        .chunks_exact(d)
        .zip(block_labels.remainder())
    {
        out.push(
            row.iter()
                .zip(centre(l))
                .map(|(u, v)| (u - v) * (u - v))
                .sum(),
        );
    }
    out
}

fn squared_distance(a: ArrayView1<f64>, b: ArrayView1<f64>) -> f64 {
    a.iter().zip(b).map(|(u, v)| (u - v) * (u - v)).sum()
}

/// Whether two labelings are the same clustering up to renaming (scikit-learn's
/// `_is_same_clustering`).
fn same_clustering(a: &[usize], b: &[usize], k: usize) -> bool {
    let mut mapping = vec![usize::MAX; k];
    for (&la, &lb) in a.iter().zip(b) {
        if mapping[la] == usize::MAX {
            mapping[la] = lb;
        } else if mapping[la] != lb {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn separates_obvious_groups_and_is_seeded() {
        let x = array![
            [0.0, 0.0],
            [0.1, 0.0],
            [0.0, 0.1],
            [5.0, 5.0],
            [5.1, 5.0],
            [9.0, 0.0],
            [9.1, 0.1],
            [9.0, 0.2]
        ];
        let a = fit_kmeans(x.view(), 3, &KmeansParams::default(), 3).expect("kmeans");
        let b = fit_kmeans(x.view(), 3, &KmeansParams::default(), 3).expect("kmeans");
        assert_eq!(a.partition, b.partition);
        let l = a.partition.labels();
        assert_eq!(l[0], l[1]);
        assert_eq!(l[0], l[2]);
        assert_eq!(l[3], l[4]);
        assert_eq!(l[5], l[6]);
        assert_ne!(l[0], l[3]);
        assert_ne!(l[0], l[5]);
        assert_eq!(a.partition.sizes(), vec![3, 3, 2]);
        // Inertia by hand: each group's squared deviations from its mean.
        let expected = 0.04 / 3.0 + 0.005 + 0.08 / 3.0;
        assert!(
            (a.inertia - expected).abs() < 1e-12 * expected.max(1.0),
            "inertia {} vs {}",
            a.inertia,
            expected
        );
    }

    #[test]
    fn more_segments_than_distinct_rows_is_an_error() {
        let x = array![[1.0, 1.0], [1.0, 1.0], [2.0, 2.0]];
        assert!(matches!(
            fit_kmeans(x.view(), 3, &KmeansParams::default(), 0),
            Err(ClusteringError::TooFewDistinctRows { k: 3, distinct: 2 })
        ));
        assert!(matches!(
            fit_kmeans(x.view(), 0, &KmeansParams::default(), 0),
            Err(ClusteringError::NoSegmentsAsked)
        ));
    }

    #[test]
    fn skipping_a_seedings_draws_leaves_the_rng_where_the_seeding_does() {
        use rand::RngCore;
        let x = crate::analysis::test_blobs::gaussian_blobs(
            &[&[0.0, 0.0], &[5.0, 1.0], &[1.0, 6.0], &[7.0, 7.0]],
            50,
            1.0,
            2,
        );
        let data = Centred::new(x);
        for k in [1, 2, 3, 4, 8, 20] {
            let mut seeded = Xoshiro256PlusPlus::seed_from_u64(k as u64);
            let mut skipped = seeded.clone();
            kmeans_plusplus(&data, k, std::slice::from_mut(&mut seeded));
            skip_kmeans_plusplus_draws(&mut skipped, data.n(), k);
            assert_eq!(seeded.next_u64(), skipped.next_u64(), "k = {k}");
        }
    }

    #[test]
    fn parallel_restarts_pick_what_a_sequential_loop_picks() {
        let x = crate::analysis::test_blobs::gaussian_blobs(
            &[
                &[0.0, 0.0],
                &[3.0, 0.0],
                &[0.0, 3.0],
                &[3.0, 3.0],
                &[1.5, 1.5],
            ],
            80,
            1.0,
            6,
        );
        let params = KmeansParams::default();
        let fit = fit_kmeans(x.view(), 5, &params, 11).expect("kmeans");
        // The loop fit_kmeans replaced: seed, run, keep the best, one restart after another.
        let mean = x.mean_axis(Axis(0)).expect("rows");
        let data = Centred::new(&x - &mean);
        let tol = params.tolerance * data.mean_variance();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
        let seed_one = |rng: &mut Xoshiro256PlusPlus| {
            let mut seeding = kmeans_plusplus(&data, 5, std::slice::from_mut(rng));
            seeding.remove(0)
        };
        let run_one = |rng: &mut Xoshiro256PlusPlus| {
            let seeding = seed_one(rng);
            lloyd(&data, vec![seeding], 300, tol).remove(0)
        };
        let mut best = run_one(&mut rng);
        for _ in 1..params.n_init {
            let run = run_one(&mut rng);
            if run.inertia < best.inertia && !same_clustering(&run.labels, &best.labels, 5) {
                best = run;
            }
        }
        assert_eq!(fit.inertia.to_bits(), best.inertia.to_bits());
        let (partition, _) = Partition::from_raw_with_order(best.labels.iter().map(|&l| Some(l)));
        assert_eq!(fit.partition, partition);
    }
    /// 7 blobs in 5 dimensions, 130 points each: 910 rows, i.e. three full chunks and a
    /// partial one, and widths that leave partial tiles in every matrix product.
    fn seven_blobs() -> Array2<f64> {
        crate::analysis::test_blobs::gaussian_blobs(
            &[
                &[0.0, 0.0, 0.0, 0.0, 0.0],
                &[4.0, 0.0, 1.0, 0.0, 2.0],
                &[0.0, 4.0, 0.0, 1.0, -2.0],
                &[4.0, 4.0, 2.0, 2.0, 0.0],
                &[-3.0, 1.0, 0.0, -2.0, 1.0],
                &[1.0, -4.0, 3.0, 0.0, 0.0],
                &[2.0, 2.0, -3.0, 3.0, 1.0],
            ],
            130,
            1.5,
            17,
        )
    }

    /// 300 rows of 300 columns: wider than matrixmultiply's depth block (256), so every
    /// product accumulates in two blocks.
    fn wide_rows() -> Array2<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        Array2::from_shape_fn((300, 300), |(i, _)| {
            (i % 3) as f64 * 2.0 + rng.r#gen::<f64>()
        })
    }

    #[test]
    fn lockstep_seeding_equals_seeding_each_restart_alone() {
        for (x, k) in [(seven_blobs(), 7), (seven_blobs(), 2), (wide_rows(), 3)] {
            let data = Centred::new(&x - &x.mean_axis(Axis(0)).expect("rows"));
            let mut together: Vec<Xoshiro256PlusPlus> = (0..6)
                .map(|r| Xoshiro256PlusPlus::seed_from_u64(100 + r))
                .collect();
            let mut alone = together.clone();
            let seeded = kmeans_plusplus(&data, k, &mut together);
            for (r, (rng, centres)) in alone.iter_mut().zip(&seeded).enumerate() {
                let own = kmeans_plusplus(&data, k, std::slice::from_mut(rng));
                assert_eq!(own.len(), 1);
                let bits = |a: &Array2<f64>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&own[0]), bits(centres), "k = {k}, restart {r}");
                assert_eq!(rng, &together[r], "k = {k}, restart {r}: RNG state");
            }
        }
    }

    #[test]
    fn candidate_potentials_match_directly_computed_distances() {
        let x = seven_blobs();
        let data = Centred::new(&x - &x.mean_axis(Axis(0)).expect("rows"));
        let n = data.n();
        // Two restarts, two candidates each; bounds: row 0 distances to row 3, row 1 none.
        let candidates = [10, 200, 333, 909];
        let mut closest = Array2::from_elem((2, n), f64::INFINITY);
        for i in 0..n {
            closest[[0, i]] = squared_distance(data.x.row(i), data.x.row(3));
        }
        let potentials = candidate_potentials(&data, &candidates, 2, closest.view());
        for (t, &c) in candidates.iter().enumerate() {
            let direct: f64 = (0..n)
                .map(|i| squared_distance(data.x.row(i), data.x.row(c)).min(closest[[t / 2, i]]))
                .sum();
            let err = (potentials[t] - direct).abs();
            assert!(
                err <= 1e-9 * direct,
                "candidate {c}: {} vs {direct}",
                potentials[t]
            );
        }
        // And lowering the nearest distances gives the same sums as the potentials.
        let mut lowered = closest.clone();
        let sums = lower_closest(&data, &[candidates[1], candidates[2]], &mut lowered, true);
        assert_eq!(sums[0].to_bits(), potentials[1].to_bits());
        assert_eq!(sums[1].to_bits(), potentials[2].to_bits());
        for i in 0..n {
            let direct = squared_distance(data.x.row(i), data.x.row(candidates[1]));
            let expected = direct.min(closest[[0, i]]);
            assert!((lowered[[0, i]] - expected).abs() <= 1e-9 * (1.0 + expected));
        }
    }

    #[test]
    fn lockstep_lloyd_equals_each_restart_alone() {
        let x = seven_blobs();
        let data = Centred::new(&x - &x.mean_axis(Axis(0)).expect("rows"));
        let tol = 1e-4 * data.mean_variance();
        let mut rngs: Vec<Xoshiro256PlusPlus> = (0..5)
            .map(|r| Xoshiro256PlusPlus::seed_from_u64(40 + r))
            .collect();
        let mut seedings = kmeans_plusplus(&data, 7, &mut rngs);
        // A seeding with two identical centres leaves one empty: the relocation path.
        let duplicate = seedings[4].row(0).to_owned();
        seedings[4].row_mut(1).assign(&duplicate);
        // max_iter 2 stops some restarts before convergence (the final-assignment path).
        for max_iter in [2, 300] {
            let together = lloyd(&data, seedings.clone(), max_iter, tol);
            for (r, (seeding, run)) in seedings.iter().zip(&together).enumerate() {
                let alone = lloyd(&data, vec![seeding.clone()], max_iter, tol).remove(0);
                assert_eq!(
                    alone.inertia.to_bits(),
                    run.inertia.to_bits(),
                    "restart {r}"
                );
                assert_eq!(alone.labels, run.labels, "restart {r}");
                assert_eq!(alone.centres, run.centres, "restart {r}");
            }
        }
    }

    #[test]
    fn row_distances_and_mean_variance_keep_the_plain_sums_bits() {
        let x = seven_blobs();
        let data = Centred::new(&x - &x.mean_axis(Axis(0)).expect("rows"));
        let centres = data.x.select(Axis(0), &[0, 500, 900]);
        let labels: Vec<usize> = (0..data.n()).map(|i| (i * 7) % 3).collect();
        // 910 rows: 227 blocks of four and a remainder of two.
        let fast = row_distances(data.x.view(), &labels, centres.view());
        for (i, (&f, &l)) in fast.iter().zip(&labels).enumerate() {
            let plain = squared_distance(data.x.row(i), centres.row(l));
            assert_eq!(f.to_bits(), plain.to_bits(), "row {i}");
        }
        for x in [
            data.x.clone(),
            data.x.slice(ndarray::s![.., 0..1]).to_owned(),
        ] {
            let (n, d) = x.dim();
            let plain: f64 = x.columns().into_iter().map(|c| c.dot(&c)).sum();
            let centred = Centred::new(x);
            assert_eq!(
                centred.mean_variance().to_bits(),
                (plain / (n * d) as f64).to_bits()
            );
        }
    }

    #[test]
    fn same_seed_same_bits_on_one_or_three_threads() {
        let x = seven_blobs();
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool")
                .install(|| fit_kmeans(x.view(), 7, &KmeansParams::default(), 9).expect("kmeans"))
        };
        let (one, three) = (run(1), run(3));
        assert_eq!(one.partition, three.partition);
        assert_eq!(one.inertia.to_bits(), three.inertia.to_bits());
    }
}
