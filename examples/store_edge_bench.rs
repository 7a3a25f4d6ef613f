//! Measures the embedded store (qdrant-edge) at segscope's scale:
//!
//! ```text
//! cargo run --release --example store_edge_bench -- [N=20000] [DIMS=32] [K=15] [WAL_POINTS=100000]
//! ```
//!
//! Upserts N customers with a DIMS-d cosine vector (and a 3-d euclid one), reports points/s,
//! times the exact kNN graph on the cosine vector against segscope's own brute force (and
//! checks they agree), then writes WAL_POINTS more point writes (re-upserts) to show how the
//! never-truncated WAL grows and what `compact()` brings it back to. Data is seeded; the
//! store lives in a temporary directory.
//!
//! First figures (dev profile, dependencies at opt-level 3, 2 shared cores, load about 2;
//! `cargo run --example store_edge_bench -- 20000 32 15 600000`):
//!
//! ```text
//! upsert: 20000 points x 32-d cosine + 3-d euclid in 0.24 s = 82287 points/s (incl. flush)
//! knn_graph (qdrant-edge, exact, k=15): 9.16 s
//! brute force (analysis::knn::exact_knn): 3.79 s; indices equal 300000/300000 ; max |distance diff| 1.67e-16
//! WAL: 67.1 MB after the first 20000 points; 201.3 MB after 600000 more point writes (12.0 s)
//! compact: 20000 points kept in 0.58 s; WAL now 67.1 MB; count 20000
//! ```

use std::collections::BTreeMap;
use std::time::Instant;

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use segscope::analysis::knn::exact_knn;
use segscope::store::{
    CollectionSpec, CustomerPoint, Distance, EdgeStore, VectorSpec, VectorStore,
};

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (n, dims, k, wal_points) = (arg(1, 20_000), arg(2, 32), arg(3, 15), arg(4, 100_000));
    let spec = CollectionSpec {
        name: "bench".into(),
        vectors: vec![
            VectorSpec {
                name: "browsing".into(),
                dimensions: dims,
                distance: Distance::Cosine,
            },
            VectorSpec {
                name: "rfm".into(),
                dimensions: 3,
                distance: Distance::Euclid,
            },
        ],
    };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(42);
    // Clustered data, like customers: 12 centres plus noise.
    let centres: Vec<Vec<f32>> = (0..12)
        .map(|_| (0..dims).map(|_| rng.gen_range(-1.0f32..1.0)).collect())
        .collect();
    let points: Vec<CustomerPoint> = (0..n)
        .map(|i| {
            let c = &centres[i % centres.len()];
            let browsing: Vec<f32> = c.iter().map(|x| x + rng.gen_range(-0.4f32..0.4)).collect();
            let rfm: Vec<f32> = (0..3).map(|_| rng.gen_range(0.0f32..1.0)).collect();
            CustomerPoint {
                customer_id: format!("customer-{i}"),
                vectors: BTreeMap::from([("browsing".into(), browsing), ("rfm".into(), rfm)]),
                payload: serde_json::Map::from_iter([("tier".to_string(), (i % 5).into())]),
            }
        })
        .collect();
    let dir = tempfile::tempdir()?;
    let store = EdgeStore::open(&dir.path().join("bench"), spec, 512).await?;

    let t = Instant::now();
    store.upsert(&points).await?;
    let upsert_s = t.elapsed().as_secs_f64();
    println!(
        "upsert: {n} points x {dims}-d cosine + 3-d euclid in {upsert_s:.2} s = {:.0} points/s (incl. flush)",
        n as f64 / upsert_s
    );

    let ids: Vec<String> = points.iter().map(|p| p.customer_id.clone()).collect();
    let t = Instant::now();
    let graph = store.knn_graph("browsing", &ids, k).await?;
    let store_s = t.elapsed().as_secs_f64();
    println!("knn_graph (qdrant-edge, exact, k={k}): {store_s:.2} s");

    let stored = store.retrieve(&ids, true).await?;
    let x = Array2::from_shape_fn((n, dims), |(i, j)| {
        f64::from(stored[i].vectors["browsing"][j])
    });
    let t = Instant::now();
    let brute = exact_knn(x.view(), k)?;
    let brute_s = t.elapsed().as_secs_f64();
    let same = graph
        .indices()
        .iter()
        .zip(brute.indices().iter())
        .filter(|(a, b)| a == b)
        .count();
    let max_diff = graph
        .distances()
        .iter()
        .zip(brute.distances().iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f64, f64::max);
    println!(
        "brute force (analysis::knn::exact_knn): {brute_s:.2} s; indices equal {same}/{} ; max |distance diff| {max_diff:.2e}",
        n * k
    );

    let wal0 = store.wal_usage()?;
    let mut written = 0;
    let mut round = 0i64;
    let t = Instant::now();
    while written < wal_points {
        let take = (wal_points - written).min(n);
        let mut batch = points[..take].to_vec();
        for p in &mut batch {
            p.payload.insert("round".into(), round.into());
        }
        store.upsert(&batch).await?;
        written += take;
        round += 1;
    }
    let wal1 = store.wal_usage()?;
    println!(
        "WAL: {:.1} MB after the first {n} points; {:.1} MB after {wal_points} more point writes ({:.1} s)",
        wal0.bytes as f64 / 1e6,
        wal1.bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let kept = store.compact().await?;
    let wal2 = store.wal_usage()?;
    println!(
        "compact: {kept} points kept in {:.2} s; WAL now {:.1} MB; count {}",
        t.elapsed().as_secs_f64(),
        wal2.bytes as f64 / 1e6,
        store.count().await?
    );
    Ok(())
}
