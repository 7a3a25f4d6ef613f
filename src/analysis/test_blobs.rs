//! Seeded Gaussian blobs for unit tests of the clustering code (test builds only).

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// `per_centre` points around each centre with standard deviation `sd`, centre by centre.
pub(crate) fn gaussian_blobs(centres: &[&[f64]], per_centre: usize, sd: f64, seed: u64) -> Array2<f64> {
    let d = centres.first().map_or(0, |c| c.len());
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut normal = move || {
        // Box–Muller: two uniforms in (0, 1] give one standard normal.
        let u1: f64 = 1.0 - rng.r#gen::<f64>();
        let u2: f64 = rng.r#gen::<f64>();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    };
    Array2::from_shape_fn((centres.len() * per_centre, d), |(i, j)| centres[i / per_centre][j]).mapv(|c| c + sd * normal())
}
