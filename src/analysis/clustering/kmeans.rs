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
//! bits on 1 or 16 threads. Restarts are independent tasks run in parallel (each also
//! parallel inside), so small inputs (digits: 8 chunks) keep every core busy without a
//! thread hand-off per iteration; each restart starts from the RNG state a sequential loop
//! over restarts would reach (the draws of a seeding depend on n and k only), and the
//! winner is chosen in restart order, so the result is the sequential loop's, bit for bit.

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
    let starts: Vec<Xoshiro256PlusPlus> = (0..params.n_init.max(1))
        .map(|_| {
            let start = rng.clone();
            skip_kmeans_plusplus_draws(&mut rng, data.n(), k);
            start
        })
        .collect();
    let runs: Vec<Run> = starts
        .into_par_iter()
        .map(|mut rng| lloyd(&data, kmeans_plusplus(&data, k, &mut rng), max_iter, tol))
        .collect();
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
        let sum_sq: f64 = self.x.columns().into_iter().map(|c| c.dot(&c)).sum();
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

/// Greedy k-means++ (scikit-learn's `_kmeans_plusplus`): the first centre uniformly at
/// random, then for each next centre `2 + floor(ln k)` candidates drawn with probability
/// proportional to the current squared distance, keeping the one that lowers the potential
/// (sum of squared distances to the nearest centre) the most.
fn kmeans_plusplus(data: &Centred, k: usize, rng: &mut Xoshiro256PlusPlus) -> Array2<f64> {
    let n = data.n();
    let trials = kmeans_plusplus_trials(k);
    let mut centres = Array2::zeros((k, data.x.ncols()));
    let first = rng.gen_range(0..n);
    centres.row_mut(0).assign(&data.x.row(first));
    let (mut distances, potentials) = candidate_distances(data, &[first], None);
    let mut closest = distances.swap_remove(0);
    let mut potential = potentials[0];
    let mut cumulative = Vec::with_capacity(n);
    for c in 1..k {
        cumulative.clear();
        let mut running = 0.0;
        for &d in &closest {
            running += d;
            cumulative.push(running);
        }
        let candidates: Vec<usize> = (0..trials)
            .map(|_| {
                let target = rng.r#gen::<f64>() * potential;
                // numpy's searchsorted (left): the first index whose running sum reaches it.
                cumulative.partition_point(|&v| v < target).min(n - 1)
            })
            .collect();
        let (mut distances, potentials) = candidate_distances(data, &candidates, Some(&closest));
        let mut chosen = 0;
        for (t, &p) in potentials.iter().enumerate() {
            if p < potentials[chosen] {
                chosen = t;
            }
        }
        potential = potentials[chosen];
        closest = distances.swap_remove(chosen);
        centres.row_mut(c).assign(&data.x.row(candidates[chosen]));
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

/// For each candidate row: the squared distance of every point to it, lowered to
/// `closest` where that is smaller, and the sum of those (the potential if it were added).
fn candidate_distances(
    data: &Centred,
    candidates: &[usize],
    closest: Option<&[f64]>,
) -> (Vec<Vec<f64>>, Vec<f64>) {
    let cand = data.x.select(Axis(0), candidates);
    let cand_sq: Vec<f64> = candidates.iter().map(|&i| data.sq_norms[i]).collect();
    let m = candidates.len();
    let chunks = data.map_chunks(|start, rows| {
        let mut products = Array2::zeros((rows.nrows(), m));
        general_mat_mul(1.0, &rows, &cand.t(), 0.0, &mut products);
        let mut sums = vec![0.0; m];
        for (i, prod) in products.rows_mut().into_iter().enumerate() {
            for (t, p) in prod.into_iter().enumerate() {
                let mut d = (data.sq_norms[start + i] - 2.0 * *p + cand_sq[t]).max(0.0);
                if let Some(closest) = closest {
                    d = d.min(closest[start + i]);
                }
                *p = d;
                sums[t] += d;
            }
        }
        (products, sums)
    });
    let mut distances = vec![Vec::with_capacity(data.n()); m];
    let mut potentials = vec![0.0; m];
    for (products, sums) in chunks {
        for (t, dist) in distances.iter_mut().enumerate() {
            dist.extend(products.column(t).iter());
            potentials[t] += sums[t];
        }
    }
    (distances, potentials)
}

/// What one assignment pass over a chunk found.
struct ChunkPass {
    labels: Vec<usize>,
    /// Per-centre sum of the chunk's rows assigned to it (`k x d`), when centres update.
    sums: Option<Array2<f64>>,
    counts: Vec<usize>,
}

/// Lloyd iterations from `centres` (scikit-learn's `_kmeans_single_lloyd`).
fn lloyd(data: &Centred, mut centres: Array2<f64>, max_iter: usize, tol: f64) -> Run {
    let mut labels: Vec<usize> = Vec::new();
    let mut strict = false;
    for _ in 0..max_iter {
        let (new_labels, sums, counts) = assign(data, centres.view(), true);
        let new_centres = update_centres(data, centres.view(), &new_labels, sums, counts);
        let shift: f64 = centres
            .rows()
            .into_iter()
            .zip(new_centres.rows())
            .map(|(a, b)| squared_distance(a, b))
            .sum();
        centres = new_centres;
        let unchanged = new_labels == labels;
        labels = new_labels;
        if unchanged {
            strict = true;
            break;
        }
        if shift <= tol {
            break;
        }
    }
    if !strict {
        labels = assign(data, centres.view(), false).0;
    }
    let inertia = inertia(data, centres.view(), &labels);
    Run {
        labels,
        inertia,
        centres,
    }
}

/// Nearest centre of every row and, when `update`, each centre's sum of its rows and count.
fn assign(
    data: &Centred,
    centres: ArrayView2<f64>,
    update: bool,
) -> (Vec<usize>, Array2<f64>, Vec<usize>) {
    let (k, d) = centres.dim();
    let centre_sq: Vec<f64> = centres.rows().into_iter().map(|c| c.dot(&c)).collect();
    let passes = data.map_chunks(|_, rows| {
        // Only -2 x.c + |c|^2 is needed to rank centres for a row.
        let mut dist = Array2::from_shape_fn((rows.nrows(), k), |(_, j)| centre_sq[j]);
        general_mat_mul(-2.0, &rows, &centres.t(), 1.0, &mut dist);
        let mut pass = ChunkPass {
            labels: Vec::with_capacity(rows.nrows()),
            sums: update.then(|| Array2::zeros((k, d))),
            counts: vec![0; k],
        };
        for (row, dists) in rows.rows().into_iter().zip(dist.rows()) {
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
        pass
    });
    let mut labels = Vec::with_capacity(data.n());
    let mut sums = Array2::zeros((k, d));
    let mut counts = vec![0; k];
    for pass in passes {
        labels.extend_from_slice(&pass.labels);
        if let Some(chunk_sums) = pass.sums {
            sums += &chunk_sums;
        }
        for (total, c) in counts.iter_mut().zip(&pass.counts) {
            *total += c;
        }
    }
    (labels, sums, counts)
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

/// Sum of squared distances of the rows to their centres, computed directly (not through
/// the norm expansion), per chunk and added in chunk order.
fn inertia(data: &Centred, centres: ArrayView2<f64>, labels: &[usize]) -> f64 {
    data.map_chunks(|start, rows| {
        rows.rows()
            .into_iter()
            .zip(&labels[start..])
            .map(|(row, &l)| squared_distance(row, centres.row(l)))
            .sum::<f64>()
    })
    .into_iter()
    .sum()
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
            kmeans_plusplus(&data, k, &mut seeded);
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
        let mut best = lloyd(&data, kmeans_plusplus(&data, 5, &mut rng), 300, tol);
        for _ in 1..params.n_init {
            let run = lloyd(&data, kmeans_plusplus(&data, 5, &mut rng), 300, tol);
            if run.inertia < best.inertia && !same_clustering(&run.labels, &best.labels, 5) {
                best = run;
            }
        }
        assert_eq!(fit.inertia.to_bits(), best.inertia.to_bits());
        let (partition, _) = Partition::from_raw_with_order(best.labels.iter().map(|&l| Some(l)));
        assert_eq!(fit.partition, partition);
    }
}
