//! The store contract on the real embedded engine (qdrant-edge) in a temporary directory.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test loudly"
)]

mod store_common;

use segscope::store::{
    CollectionSpec, ConfiguredStore, EdgeStore, PointIdMapper, StoreError, StoreSettings,
    VectorStore,
};
use serde_json::json;
use store_common::*;

async fn open(dir: &std::path::Path) -> EdgeStore {
    EdgeStore::open(
        &dir.join("qdrant").join("customers"),
        spec("customers"),
        256,
    )
    .await
    .expect("open")
}

#[tokio::test]
async fn upsert_twice_then_reopen_keeps_count_vectors_and_payload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let points = {
        let store = open(dir.path()).await;
        upsert_is_idempotent(&store).await
    };
    // Dropped above; everything must come back from disk.
    let store = open(dir.path()).await;
    assert_eq!(store.count().await.expect("count"), 1_000);
    assert_stored_as_written(&store, &points).await;
}

#[tokio::test]
async fn re_upsert_without_a_vector_removes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    let mut points = customers(3, 1);
    store.upsert(&points).await.expect("upsert");
    points[1].vectors.remove("browsing");
    store.upsert(&points[1..2]).await.expect("upsert");
    let s = store
        .retrieve(&ids(&points[1..2]), true)
        .await
        .expect("retrieve");
    assert_eq!(s[0].vectors.keys().collect::<Vec<_>>(), vec!["rfm"]);
}

#[tokio::test]
async fn wrong_dimension_is_refused_before_any_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    wrong_dimension_writes_nothing(&store).await;
    store.upsert(&customers(5, 2)).await.expect("upsert");
    wrong_dimension_writes_nothing(&store).await;
}

#[tokio::test]
async fn set_payload_merges_segments_of_several_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    set_payload_keeps_every_run(&open(dir.path()).await).await;
}

#[tokio::test]
async fn knn_graph_equals_brute_force_for_euclid_and_cosine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    let points = customers(400, 11);
    store.upsert(&points).await.expect("upsert");
    knn_graph_is_exact(&store, &points, 15).await;
}

#[tokio::test]
async fn nearest_with_a_payload_filter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    let points = customers(500, 5);
    store.upsert(&points).await.expect("upsert");
    nearest_respects_filter(&store, &points).await;
}

#[tokio::test]
async fn point_id_collisions_are_refused_not_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ids = PointIdMapper::truncated_for_tests(4); // 16 point ids: collisions guaranteed
    let store = EdgeStore::open_with_ids(&dir.path().join("c"), spec("c"), 64, ids)
        .await
        .expect("open");
    let first = customers(1, 1);
    store.upsert(&first).await.expect("upsert");
    let target = ids.point_id(&first[0].customer_id);
    let other = (0..)
        .map(|i| format!("X{i}"))
        .find(|c| ids.point_id(c) == target)
        .expect("a colliding id");
    let mut intruder = customers(1, 2);
    intruder[0].customer_id.clone_from(&other);
    intruder[0].payload = obj(json!({"country": "DE"}));
    // Against a stored customer...
    let err = store.upsert(&intruder).await.expect_err("collision");
    assert!(
        matches!(err, StoreError::PointIdCollision { ref first, ref second, point_id }
            if *first == "C00000" && *second == other && point_id == target),
        "{err}"
    );
    // ...and inside one request.
    let mut pair = customers(1, 3);
    pair[0].customer_id = "fresh".into();
    let mut twin = intruder[0].clone();
    twin.customer_id = (0..)
        .map(|i| format!("Y{i}"))
        .find(|c| ids.point_id(c) == ids.point_id("fresh"))
        .expect("a colliding id");
    pair.push(twin);
    assert!(matches!(
        store.upsert(&pair).await.expect_err("collision"),
        StoreError::PointIdCollision { .. }
    ));
    assert_eq!(store.count().await.expect("count"), 1);
    assert_stored_as_written(&store, &first).await;
    assert!(
        store
            .retrieve(&[other], false)
            .await
            .expect("retrieve")
            .is_empty()
    );
}

#[tokio::test]
async fn compact_keeps_every_point_and_later_writes_still_apply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    let mut points = customers(600, 21);
    for round in 0..4 {
        for p in &mut points {
            p.payload.insert("round".into(), json!(round));
        }
        store.upsert(&points).await.expect("upsert");
    }
    let before = store.wal_usage().expect("wal");
    assert_eq!(store.compact().await.expect("compact"), 600);
    let after = store.wal_usage().expect("wal");
    eprintln!("WAL before compaction {before:?}, after {after:?}");
    assert!(after.bytes <= before.bytes, "{after:?} vs {before:?}");
    assert_eq!(store.count().await.expect("count"), 600);
    assert_stored_as_written(&store, &points).await;
    // The note's trap: a shard with a fresh WAL ignored updates of existing points. Ours
    // must apply them, before and after a reopen.
    points[0].payload.insert("round".into(), json!(99));
    points[0].vectors.insert("rfm".into(), vec![9.0, 9.0, 9.0]);
    store
        .upsert(&points[..1])
        .await
        .expect("upsert after compact");
    assert_stored_as_written(&store, &points[..1]).await;
    drop(store);
    let store = open(dir.path()).await;
    assert_eq!(store.count().await.expect("count"), 600);
    assert_stored_as_written(&store, &points).await;
    points[1].payload.insert("round".into(), json!(100));
    store
        .upsert(&points[1..2])
        .await
        .expect("upsert after reopen");
    assert_stored_as_written(&store, &points[1..2]).await;
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("qdrant"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("customers")]);
}

#[tokio::test]
async fn reopening_with_other_vectors_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(dir.path()).await);
    let mut other: CollectionSpec = spec("customers");
    other.vectors[0].dimensions = 16;
    let err = EdgeStore::open(&dir.path().join("qdrant").join("customers"), other, 256)
        .await
        .expect_err("mismatch");
    match err {
        StoreError::SchemaMismatch {
            expected, found, ..
        } => {
            assert_eq!(expected, "browsing: 16 cosine, rfm: 3 euclid");
            assert_eq!(found, "browsing: 8 cosine, rfm: 3 euclid");
        }
        other => panic!("wrong error: {other}"),
    }
}

#[tokio::test]
async fn configured_store_opens_edge_under_the_data_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings: StoreSettings = toml::from_str(
        r#"
        backend = "edge"
        collection = "weekly"
        batch_size = 100
        [server]
        url = "http://localhost:6334"
        timeout_secs = 5
        shard_number = 1
        replication_factor = 1
        on_disk = false
        "#,
    )
    .expect("settings");
    // An empty spec name means "the configured collection".
    let store = ConfiguredStore::open(&settings, dir.path(), &spec(""))
        .await
        .expect("open");
    let points = customers(250, 4);
    let summary = store.upsert(&points).await.expect("upsert");
    assert_eq!((summary.points, summary.batches), (250, 3));
    assert!(dir.path().join("qdrant/weekly/edge_config.json").is_file());
    let found = store
        .retrieve(
            &[
                "C00003".to_string(),
                "nobody".to_string(),
                "C00001".to_string(),
            ],
            false,
        )
        .await
        .expect("retrieve");
    let order: Vec<_> = found.iter().map(|c| c.customer_id.as_str()).collect();
    assert_eq!(order, vec!["C00003", "C00001"]);
}

const CHILD_DIR: &str = "SEGSCOPE_TEST_STORE_CHILD_DIR";

#[tokio::test]
async fn a_write_survives_a_process_that_dies_right_after() {
    // qdrant-edge does not replay its WAL on load: only flushed data survives a crash. The
    // store flushes before each write call returns, so a process killed right after the
    // call (no Drop, no flush) must lose nothing. The child is this test binary itself.
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let store = open(std::path::Path::new(&dir)).await;
        let points = customers(300, 13);
        store.upsert(&points).await.expect("upsert");
        let runs = vec![(
            points[0].customer_id.clone(),
            obj(json!({"segments": {"r1": 2}})),
        )];
        store.set_payload(&runs).await.expect("set");
        std::process::abort();
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let status = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            "a_write_survives_a_process_that_dies_right_after",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("child");
    assert!(!status.success(), "the child must have died by abort");
    let store = open(dir.path()).await;
    let points = customers(300, 13);
    assert_eq!(store.count().await.expect("count"), 300);
    assert_stored_as_written(&store, &points[1..]).await;
    let first = store
        .retrieve(&ids(&points[..1]), false)
        .await
        .expect("retrieve");
    assert_eq!(first[0].payload["segments"], json!({"r1": 2}));
}

#[tokio::test]
async fn a_second_open_of_the_same_directory_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = open(dir.path()).await;
    let err = EdgeStore::open(
        &dir.path().join("qdrant").join("customers"),
        spec("customers"),
        256,
    )
    .await
    .expect_err("locked");
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
}
