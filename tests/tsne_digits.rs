//! t-SNE on scikit-learn's digits (1,797 x 64, raw pixel counts) with the defaults and seed 42
//! keeps neighbourhoods as well as the reference implementations: openTSNE reaches a
//! trustworthiness (k = 10) of 0.992, scikit-learn 0.993; we require at least 0.98.

use std::error::Error;

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use segscope::analysis::maps::tsne::{TsneParams, fit_tsne};
use segscope::analysis::progress::NoProgress;

type TestResult = Result<(), Box<dyn Error>>;

/// The 64 pixel columns `p0..p63`; the id and the digit label are not features.
fn digits() -> Result<Array2<f64>, Box<dyn Error>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/digits.csv");
    let mut reader = csv::Reader::from_path(path)?;
    let pixels: Vec<usize> = reader
        .headers()?
        .iter()
        .enumerate()
        .filter(|(_, name)| name.starts_with('p'))
        .map(|(column, _)| column)
        .collect();
    let mut values = Vec::new();
    let mut rows = 0;
    for record in reader.records() {
        let record = record?;
        for &column in &pixels {
            values.push(record[column].parse::<f64>()?);
        }
        rows += 1;
    }
    Ok(Array2::from_shape_vec((rows, pixels.len()), values)?)
}

fn squared_distance(a: ndarray::ArrayView1<f64>, b: ndarray::ArrayView1<f64>) -> f64 {
    a.iter().zip(b).map(|(u, v)| (u - v) * (u - v)).sum()
}

/// Other points of `data` ordered by distance from point `i`, ties by index.
fn by_distance(data: ArrayView2<f64>, i: usize) -> Vec<usize> {
    let mut others: Vec<(f64, usize)> = (0..data.nrows())
        .filter(|&j| j != i)
        .map(|j| (squared_distance(data.row(i), data.row(j)), j))
        .collect();
    others.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    others.into_iter().map(|(_, j)| j).collect()
}

/// Trustworthiness as scikit-learn defines it: penalises embedding neighbours that were far
/// in the input, by how far down the input ranking they were. 1 is perfect.
fn trustworthiness(x: ArrayView2<f64>, y: ArrayView2<f64>, k: usize) -> f64 {
    let n = x.nrows();
    let penalty: usize = (0..n)
        .into_par_iter()
        .map(|i| {
            // rank[j] = 1 for the nearest input neighbour of i.
            let mut rank = vec![0; n];
            for (position, j) in by_distance(x, i).into_iter().enumerate() {
                rank[j] = position + 1;
            }
            by_distance(y, i)
                .into_iter()
                .take(k)
                .map(|j| rank[j].saturating_sub(k))
                .sum::<usize>()
        })
        .sum();
    let (n, k) = (n as f64, k as f64);
    1.0 - penalty as f64 * 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0))
}

#[test]
fn digits_map_keeps_neighbourhoods() -> TestResult {
    let x = digits()?;
    assert_eq!(x.dim(), (1797, 64));
    let map = fit_tsne(x.view(), &TsneParams::default(), 42, &NoProgress)?;
    assert_eq!(map.perplexity, 30.0);
    let trust = trustworthiness(x.view(), map.embedding.view(), 10);
    assert!(trust >= 0.98, "trustworthiness {trust}");
    Ok(())
}
