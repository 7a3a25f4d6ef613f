//! The store contract against a real Qdrant server. Runs only when `QDRANT_URL` (gRPC, e.g.
//! `http://localhost:6334`) is set, with `QDRANT_API_KEY` if the server needs one; each test
//! uses its own collection and deletes it afterwards.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test loudly"
)]

mod store_common;

use segscope::store::{
    ApiKey, PointIdMapper, ServerSettings, ServerStore, StoreError, VectorStore,
};
use serde_json::json;
use store_common::*;

fn server() -> Option<(ServerSettings, Option<ApiKey>)> {
    let Ok(url) = std::env::var("QDRANT_URL") else {
        println!("skipped: QDRANT_URL is not set, so there is no Qdrant server to test against");
        return None;
    };
    let settings = ServerSettings {
        url,
        api_key: ApiKey::default(),
        timeout_secs: 30,
        shard_number: 1,
        replication_factor: 1,
        on_disk: false,
    };
    let key = settings.effective_api_key(|name| std::env::var(name).ok());
    Some((settings, key))
}

async fn fresh(name: &str, ids: PointIdMapper) -> Option<ServerStore> {
    let (settings, key) = server()?;
    let name = format!("segscope_test_{name}_{}", std::process::id());
    let store = ServerStore::connect_with_ids(&settings, key.clone(), spec(&name), 256, ids)
        .await
        .expect("connect");
    // Start from nothing even if an earlier run was interrupted.
    store.delete_collection().await.expect("delete");
    Some(
        ServerStore::connect_with_ids(&settings, key, spec(&name), 256, ids)
            .await
            .expect("connect"),
    )
}

#[tokio::test]
async fn server_store_keeps_the_contract() {
    let Some(store) = fresh("contract", PointIdMapper::sha256()).await else {
        return;
    };
    let points = upsert_is_idempotent(&store).await;
    wrong_dimension_writes_nothing(&store).await;
    knn_graph_is_exact(&store, &points[..400], 15).await;
    nearest_respects_filter(&store, &points).await;
    store.delete_collection().await.expect("cleanup");
}

#[tokio::test]
async fn server_set_payload_keeps_every_run() {
    let Some(store) = fresh("payload", PointIdMapper::sha256()).await else {
        return;
    };
    set_payload_keeps_every_run(&store).await;
    store.delete_collection().await.expect("cleanup");
}

#[tokio::test]
async fn server_reconnect_sees_the_same_data_and_checks_the_schema() {
    let Some(store) = fresh("reopen", PointIdMapper::sha256()).await else {
        return;
    };
    let points = customers(200, 8);
    store.upsert(&points).await.expect("upsert");
    let (settings, key) = server().expect("server");
    let name = store.spec().name.clone();
    let again = ServerStore::connect(&settings, key.clone(), spec(&name), 256)
        .await
        .expect("reconnect");
    assert_eq!(again.count().await.expect("count"), 200);
    assert_stored_as_written(&again, &points).await;
    let mut other = spec(&name);
    other.vectors[1].dimensions = 4;
    let err = ServerStore::connect(&settings, key, other, 256)
        .await
        .expect_err("mismatch");
    assert!(matches!(err, StoreError::SchemaMismatch { .. }), "{err}");
    store.delete_collection().await.expect("cleanup");
}

#[tokio::test]
async fn server_refuses_point_id_collisions() {
    let ids = PointIdMapper::truncated_for_tests(4);
    let Some(store) = fresh("collide", ids).await else {
        return;
    };
    let first = customers(1, 1);
    store.upsert(&first).await.expect("upsert");
    let other = (0..)
        .map(|i| format!("X{i}"))
        .find(|c| ids.point_id(c) == ids.point_id("C00000"))
        .expect("a colliding id");
    let mut intruder = customers(1, 2);
    intruder[0].customer_id.clone_from(&other);
    intruder[0].payload = obj(json!({"country": "DE"}));
    let err = store.upsert(&intruder).await.expect_err("collision");
    assert!(matches!(err, StoreError::PointIdCollision { .. }), "{err}");
    assert_eq!(store.count().await.expect("count"), 1);
    assert_stored_as_written(&store, &first).await;
    store.delete_collection().await.expect("cleanup");
}
