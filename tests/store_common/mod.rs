//! Behaviours every `VectorStore` must show, written once and run against the embedded
//! engine (`store_edge.rs`) and a real server (`store_server.rs`).

#![allow(
    dead_code,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test loudly"
)]

use std::collections::BTreeMap;

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use segscope::analysis::knn::exact_knn;
use segscope::store::{
    CollectionSpec, CustomerPoint, Distance, MatchValue, PayloadFilter, StoreError, VectorSpec,
    VectorStore,
};
use serde_json::{Map, Value, json};

pub const BROWSING_DIMS: usize = 8;

pub fn spec(name: &str) -> CollectionSpec {
    CollectionSpec {
        name: name.into(),
        vectors: vec![
            VectorSpec {
                name: "browsing".into(),
                dimensions: BROWSING_DIMS,
                distance: Distance::Cosine,
            },
            VectorSpec {
                name: "rfm".into(),
                dimensions: 3,
                distance: Distance::Euclid,
            },
        ],
    }
}

pub fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// `n` customers; every 10th has no browsing vector. Seeded, so reruns write the same data.
pub fn customers(n: usize, seed: u64) -> Vec<CustomerPoint> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let mut vectors = BTreeMap::new();
            vectors.insert(
                "rfm".to_string(),
                (0..3).map(|_| rng.gen_range(-3.0f32..3.0)).collect(),
            );
            if i % 10 != 0 {
                vectors.insert(
                    "browsing".to_string(),
                    (0..BROWSING_DIMS)
                        .map(|_| rng.gen_range(-1.0f32..1.0))
                        .collect(),
                );
            }
            CustomerPoint {
                customer_id: format!("C{i:05}"),
                vectors,
                payload: obj(json!({
                    "country": if i % 2 == 0 { "UK" } else { "FR" },
                    "tier": (i % 3) as i64,
                    "monetary": i as f64 * 1.5,
                })),
            }
        })
        .collect()
}

pub fn ids(points: &[CustomerPoint]) -> Vec<String> {
    points.iter().map(|p| p.customer_id.clone()).collect()
}

fn norm(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    v.iter().map(|x| (f64::from(*x) / n) as f32).collect()
}

/// Everything comes back as written: euclid vectors exactly, cosine ones normalised, the
/// payload plus `customer_id`, a missing vector missing.
pub async fn assert_stored_as_written(store: &impl VectorStore, points: &[CustomerPoint]) {
    let stored = store.retrieve(&ids(points), true).await.expect("retrieve");
    assert_eq!(stored.len(), points.len());
    for (p, s) in points.iter().zip(&stored) {
        assert_eq!(s.customer_id, p.customer_id);
        assert_eq!(s.vectors["rfm"], p.vectors["rfm"]);
        match p.vectors.get("browsing") {
            None => assert!(!s.vectors.contains_key("browsing"), "{}", p.customer_id),
            Some(b) => {
                for (x, y) in s.vectors["browsing"].iter().zip(norm(b)) {
                    assert!((x - y).abs() < 1e-6, "{x} vs {y}");
                }
            }
        }
        let mut expected = p.payload.clone();
        expected.insert("customer_id".into(), json!(p.customer_id));
        assert_eq!(s.payload, expected, "{}", p.customer_id);
    }
}

pub async fn upsert_is_idempotent(store: &impl VectorStore) -> Vec<CustomerPoint> {
    let points = customers(1_000, 7);
    let first = store.upsert(&points).await.expect("upsert");
    assert_eq!(first.points, 1_000);
    assert_eq!(store.count().await.expect("count"), 1_000);
    store.upsert(&points).await.expect("upsert again");
    assert_eq!(store.count().await.expect("count"), 1_000);
    assert_stored_as_written(store, &points).await;
    // Without browsing: stored and retrievable with the vectors it has.
    let lonely = store
        .retrieve(&["C00010".to_string()], true)
        .await
        .expect("retrieve");
    assert_eq!(lonely.len(), 1);
    assert_eq!(lonely[0].vectors.keys().collect::<Vec<_>>(), vec!["rfm"]);
    points
}

pub async fn wrong_dimension_writes_nothing(store: &impl VectorStore) {
    let before = store.count().await.expect("count");
    let mut points = customers(20, 99);
    for p in &mut points {
        p.customer_id = format!("new-{}", p.customer_id);
    }
    points[17].vectors.insert("rfm".into(), vec![1.0, 2.0]);
    let err = store.upsert(&points).await.expect_err("must refuse");
    match err {
        StoreError::DimensionMismatch {
            vector,
            expected,
            got,
            customer_id,
        } => {
            assert_eq!((vector.as_str(), expected, got), ("rfm", 3, 2));
            assert_eq!(customer_id, points[17].customer_id);
        }
        other => panic!("wrong error: {other}"),
    }
    assert_eq!(store.count().await.expect("count"), before);
    assert!(
        store
            .retrieve(&ids(&points), false)
            .await
            .expect("retrieve")
            .is_empty()
    );
}

pub async fn set_payload_keeps_every_run(store: &impl VectorStore) {
    let points = customers(30, 3);
    store.upsert(&points).await.expect("upsert");
    let run = |run: &str| -> Vec<(String, Map<String, Value>)> {
        points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    p.customer_id.clone(),
                    obj(json!({"segments": {run: (i % 4) as i64}, "last_run": run})),
                )
            })
            .collect()
    };
    assert_eq!(store.set_payload(&run("2026-W41")).await.expect("set"), 30);
    assert_eq!(
        store.set_payload(&run("2026-W42.b")).await.expect("set"),
        30
    );
    // A weekly re-upsert of features keeps the segment history.
    store.upsert(&points).await.expect("re-upsert");
    let stored = store
        .retrieve(&ids(&points), false)
        .await
        .expect("retrieve");
    for (i, s) in stored.iter().enumerate() {
        let seg = (i % 4) as i64;
        assert_eq!(
            s.payload["segments"],
            json!({"2026-W41": seg, "2026-W42.b": seg})
        );
        assert_eq!(s.payload["last_run"], json!("2026-W42.b"));
        assert_eq!(s.payload["country"], points[i].payload["country"]);
    }
    // Filter on a run's segment (a run id with a dot needs quoting inside).
    let hits = store
        .nearest(
            "rfm",
            &[0.0, 0.0, 0.0],
            100,
            Some(&PayloadFilter::Equals {
                path: vec!["segments".into(), "2026-W42.b".into()],
                value: MatchValue::Integer(2),
            }),
        )
        .await
        .expect("filtered");
    let expected = (0..30).filter(|i| i % 4 == 2).count();
    assert_eq!(hits.len(), expected);
    // An unknown customer: refused, nothing written.
    let mut bad = run("2026-W43");
    bad.push(("nobody".into(), obj(json!({"segments": {"2026-W43": 1}}))));
    let err = store.set_payload(&bad).await.expect_err("unknown");
    assert!(
        matches!(err, StoreError::UnknownCustomer { ref customer_id } if customer_id == "nobody")
    );
    let stored = store
        .retrieve(&ids(&points[..1]), false)
        .await
        .expect("retrieve");
    assert!(stored[0].payload["segments"].get("2026-W43").is_none());
}

/// Brute force on the vectors as stored (normalised for cosine), by segscope's own exact kNN.
pub fn brute_force(vectors: &[Vec<f32>], k: usize) -> (Array2<usize>, Array2<f64>) {
    let d = vectors[0].len();
    let x = Array2::from_shape_fn((vectors.len(), d), |(i, j)| f64::from(vectors[i][j]));
    let g = exact_knn(x.view(), k).expect("exact knn");
    (g.indices().to_owned(), g.distances().to_owned())
}

pub async fn knn_graph_is_exact(store: &impl VectorStore, points: &[CustomerPoint], k: usize) {
    for (vector, subset) in [
        ("rfm", false),
        ("browsing", false),
        ("rfm", true),
        ("browsing", true),
    ] {
        let chosen: Vec<&CustomerPoint> = points
            .iter()
            .enumerate()
            .filter(|(i, p)| p.vectors.contains_key(vector) && (!subset || i % 3 != 0))
            .map(|(_, p)| p)
            .collect();
        let chosen_ids: Vec<String> = chosen.iter().map(|p| p.customer_id.clone()).collect();
        let graph = store
            .knn_graph(vector, &chosen_ids, k)
            .await
            .expect("graph");
        let stored: Vec<Vec<f32>> = chosen
            .iter()
            .map(|p| {
                let v = &p.vectors[vector];
                if vector == "browsing" {
                    norm(v)
                } else {
                    v.clone()
                }
            })
            .collect();
        let (indices, distances) = brute_force(&stored, k);
        assert_eq!(graph.indices(), indices.view(), "{vector} subset={subset}");
        for (a, b) in graph.distances().iter().zip(distances.iter()) {
            assert!((a - b).abs() < 1e-5, "{vector}: {a} vs {b}");
        }
    }
    // Asking for a vector a customer lacks is a clear error.
    let err = store
        .knn_graph("browsing", &ids(&points[..5]), 2)
        .await
        .expect_err("C00000 has no browsing");
    assert!(matches!(err, StoreError::MissingVector { .. }), "{err}");
    let err = store
        .knn_graph("rfm", &ids(&points[..3]), 3)
        .await
        .expect_err("k >= n");
    assert!(matches!(err, StoreError::InvalidK { k: 3, n: 3 }));
}

pub async fn nearest_respects_filter(store: &impl VectorStore, points: &[CustomerPoint]) {
    let query = points[1].vectors["rfm"].clone();
    let filter = PayloadFilter::All(vec![
        PayloadFilter::Equals {
            path: vec!["country".into()],
            value: MatchValue::Keyword("FR".into()),
        },
        PayloadFilter::Range {
            path: vec!["monetary".into()],
            gte: Some(300.0),
            lte: None,
        },
    ]);
    let hits = store
        .nearest("rfm", &query, 10, Some(&filter))
        .await
        .expect("nearest");
    let mut expected: Vec<(f64, &str)> = points
        .iter()
        .filter(|p| {
            p.payload["country"] == json!("FR") && p.payload["monetary"].as_f64() >= Some(300.0)
        })
        .map(|p| {
            let d: f64 = p.vectors["rfm"]
                .iter()
                .zip(&query)
                .map(|(a, b)| f64::from(a - b).powi(2))
                .sum::<f64>()
                .sqrt();
            (d, p.customer_id.as_str())
        })
        .collect();
    expected.sort_by(|a, b| a.0.total_cmp(&b.0));
    let got: Vec<&str> = hits.iter().map(|h| h.customer_id.as_str()).collect();
    let want: Vec<&str> = expected.iter().take(10).map(|e| e.1).collect();
    assert_eq!(got, want);
    for (h, e) in hits.iter().zip(&expected) {
        assert!(
            (f64::from(h.score) - e.0).abs() < 1e-4,
            "score {} vs {}",
            h.score,
            e.0
        );
    }
}
