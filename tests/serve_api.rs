//! `segscope serve` over real HTTP: health and readiness, the runs API reading a run made by
//! the real binary, errors as JSON that name what was wrong, bearer-token auth, the body
//! limit, Prometheus metrics and graceful shutdown.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test loudly"
)]

mod support {
    pub mod cli;
    pub mod openai_stub;
}

use std::net::SocketAddr;
use std::path::Path;

use segscope::embedding::ApiKey;
use segscope::serve::{AppState, serve};
use segscope::settings::Settings;
use serde_json::{Value, json};
use support::cli::{assert_matches_schema, read_json, segscope};
use tokio::sync::oneshot;

const TOKEN: &str = "serve-token-7f3a";

/// Writes an Iris run (PCA only, no resampling: quick) into `data_dir/runs/iris-1`.
fn make_run(data_dir: &Path) {
    let out = data_dir.join("runs").join("iris-1");
    segscope()
        .args([
            "segment",
            "--features",
            "examples/iris.csv",
            "--id-column",
            "id",
        ])
        .args([
            "--label-column",
            "species",
            "--k",
            "3",
            "--maps",
            "pca",
            "--out",
        ])
        .arg(&out)
        .env("SEGSCOPE__STABILITY__RESAMPLES", "0")
        .assert()
        .success();
}

struct Running {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), segscope::serve::ServeError>>,
}

async fn start(data_dir: &Path, token: Option<&str>, max_body: usize) -> Running {
    start_with(data_dir, |settings| {
        if let Some(token) = token {
            settings.serve.token = ApiKey::new(token);
        }
        settings.serve.max_body_bytes = max_body;
    })
    .await
}

async fn start_with(data_dir: &Path, configure: impl FnOnce(&mut Settings)) -> Running {
    let mut settings = Settings::load_with_env(None, Vec::new()).expect("defaults");
    configure(&mut settings);
    let state = AppState::new(settings, data_dir.to_path_buf()).expect("state");
    let (stop, stopped) = oneshot::channel::<()>();
    let (bound_tx, bound_rx) = oneshot::channel::<SocketAddr>();
    let done = tokio::spawn(serve(
        state,
        "127.0.0.1:0".parse().unwrap(),
        async move {
            let _ = stopped.await;
        },
        move |addr| {
            let _ = bound_tx.send(addr);
        },
    ));
    let addr = bound_rx.await.expect("bound");
    Running {
        base: format!("http://{addr}"),
        stop: Some(stop),
        done,
    }
}

async fn get(url: &str, token: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let media = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (
        status,
        media,
        response.bytes().await.expect("body").to_vec(),
    )
}

async fn get_json(url: &str, token: Option<&str>) -> (u16, Value) {
    let (status, media, body) = get(url, token).await;
    assert!(media.starts_with("application/json"), "{url}: {media}");
    (status, serde_json::from_slice(&body).expect("json"))
}

#[tokio::test]
async fn the_runs_api_serves_what_the_pipeline_wrote() {
    let dir = tempfile::tempdir().unwrap();
    make_run(dir.path());
    std::fs::create_dir_all(dir.path().join("runs").join("half-written")).unwrap();
    let server = start(dir.path(), None, 1 << 20).await;
    let base = &server.base;
    let run_dir = dir.path().join("runs").join("iris-1");
    let on_disk = read_json(&run_dir.join("segments.json"));

    assert_eq!(
        get_json(&format!("{base}/healthz"), None).await,
        (200, json!({"status": "ok"}))
    );
    assert_eq!(
        get_json(&format!("{base}/readyz"), None).await,
        (200, json!({"status": "ready", "store": "edge"}))
    );

    let (status, list) = get_json(&format!("{base}/api/v1/runs"), None).await;
    assert_eq!(status, 200);
    let runs = list["runs"].as_array().unwrap();
    assert_eq!(
        runs.len(),
        1,
        "the folder without segments.json is not a run: {list}"
    );
    assert_eq!(runs[0]["id"], "iris-1");
    assert_eq!(runs[0]["k"], 3);
    assert_eq!(runs[0]["n_customers"], 150);
    assert_eq!(runs[0]["method"], "kmeans");
    assert_eq!(runs[0]["narrator"], on_disk["narrator"]);

    let (status, served) = get_json(&format!("{base}/api/v1/runs/iris-1"), None).await;
    assert_eq!((status, &served), (200, &on_disk));
    assert_matches_schema(&served);
    let (status, segments) = get_json(&format!("{base}/api/v1/runs/iris-1/segments"), None).await;
    assert_eq!(status, 200);
    assert_eq!(segments["segments"], on_disk["segments"]);
    assert_eq!(segments["caveats"], on_disk["caveats"]);
    assert_eq!(
        get_json(&format!("{base}/api/v1/runs/iris-1/segments/2"), None).await,
        (200, on_disk["segments"][1].clone())
    );

    let (status, media, bytes) = get(
        &format!("{base}/api/v1/runs/iris-1/files/assignments.csv"),
        None,
    )
    .await;
    assert_eq!((status, media.as_str()), (200, "text/csv; charset=utf-8"));
    assert_eq!(
        bytes,
        std::fs::read(run_dir.join("assignments.csv")).unwrap()
    );

    for (path, status, code, message) in [
        ("/api/v1/runs/nope", 404, "not_found", "no run \"nope\""),
        (
            "/api/v1/runs/iris-1/segments/9",
            404,
            "not_found",
            "run \"iris-1\" has no segment 9",
        ),
        (
            "/api/v1/runs/iris-1/segments/first",
            400,
            "bad_request",
            "segment \"first\" is not a segment id (1, 2, ...)",
        ),
        (
            "/api/v1/runs/bad.id",
            400,
            "bad_request",
            "run id \"bad.id\" is not valid: use 1 to 64 letters, digits, '-' or '_'",
        ),
        (
            "/api/v1/runs/iris-1/files/config.toml",
            400,
            "bad_request",
            "\"config.toml\" is not a run file; use one of segments.json, assignments.csv, report.html, run.json, profiles.csv",
        ),
        ("/no/such/route", 404, "not_found", "no such route"),
    ] {
        assert_eq!(
            get_json(&format!("{base}{path}"), None).await,
            (status, json!({"error": {"code": code, "message": message}})),
            "{path}"
        );
    }
}

#[tokio::test]
async fn with_a_token_the_api_needs_it_and_health_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Some(TOKEN), 1 << 20).await;
    let runs = format!("{}/api/v1/runs", server.base);
    let denied = json!({"error": {"code": "unauthorized",
        "message": "missing or wrong bearer token (Authorization: Bearer <serve.token>)"}});
    assert_eq!(get_json(&runs, None).await, (401, denied.clone()));
    assert_eq!(
        get_json(&runs, Some("serve-token-7f3b")).await,
        (401, denied)
    );
    assert_eq!(
        get_json(&runs, Some(TOKEN)).await,
        (200, json!({"runs": []}))
    );
    let response = reqwest::Client::new().get(&runs).send().await.unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        get_json(&format!("{}/healthz", server.base), None).await.0,
        200
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_they_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, 1024).await;
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/runs", server.base))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_shutdown_is_graceful() {
    let dir = tempfile::tempdir().unwrap();
    make_run(dir.path());
    let mut server = start(dir.path(), None, 1 << 20).await;
    let base = server.base.clone();
    for _ in 0..2 {
        assert_eq!(
            get(&format!("{base}/api/v1/runs/iris-1"), None).await.0,
            200
        );
    }
    assert_eq!(get(&format!("{base}/api/v1/runs/nope"), None).await.0, 404);
    let (status, media, body) = get(&format!("{base}/metrics"), None).await;
    assert_eq!(status, 200);
    assert!(media.starts_with("application/openmetrics-text"), "{media}");
    let text = String::from_utf8(body).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.contains(&r#"segscope_http_requests_total{method="GET",route="/api/v1/runs/{id}",status="200"} 2"#),
        "{text}"
    );
    assert!(
        lines.contains(&r#"segscope_http_requests_total{method="GET",route="/api/v1/runs/{id}",status="404"} 1"#),
        "{text}"
    );
    assert!(
        lines.contains(&r#"segscope_http_request_duration_seconds_count{method="GET",route="/api/v1/runs/{id}"} 3"#),
        "{text}"
    );
    assert!(
        !text.contains("iris-1"),
        "run ids must not become labels: {text}"
    );

    server.stop.take().unwrap().send(()).unwrap();
    server.done.await.unwrap().expect("clean stop");
}

/// Reads a server-sent event stream to its end; returns each `progress` event's data.
async fn follow(url: &str) -> Vec<Value> {
    let mut response = reqwest::Client::new().get(url).send().await.expect("send");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        text.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
    }
    text.split("\n\n")
        .filter(|block| block.lines().any(|l| l == "event: progress"))
        .map(|block| {
            let data = block
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .expect("data line");
            serde_json::from_str(data).expect("json")
        })
        .collect()
}

async fn post(url: &str, body: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_slice(&response.bytes().await.unwrap()).expect("json"),
    )
}

#[tokio::test]
async fn a_run_started_through_the_api_reports_progress_until_it_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, 1 << 20).await;
    std::fs::copy(
        "examples/iris.csv",
        dir.path().join("inbox").join("iris.csv"),
    )
    .unwrap();
    let (status, started) = post(
        &format!("{}/api/v1/runs", server.base),
        r#"{"kind": "table", "features": "iris.csv", "id_column": "id",
            "label_column": "species", "k": 3, "maps": ["pca"], "seed": 11}"#,
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let run_id = started["run_id"].as_str().unwrap().to_string();
    assert_eq!(started["events"], format!("/api/v1/runs/{run_id}/events"));

    let events = follow(&format!(
        "{}{}",
        server.base,
        started["events"].as_str().unwrap()
    ))
    .await;
    let last = events.last().expect("events");
    assert_eq!(last["state"], "succeeded", "{events:?}");
    assert_eq!(last["percent"], 100.0);
    let percents: Vec<f64> = events
        .iter()
        .map(|e| e["percent"].as_f64().unwrap())
        .collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");

    let (status, progress) = get_json(
        &format!("{}/api/v1/runs/{run_id}/progress", server.base),
        None,
    )
    .await;
    assert_eq!((status, &progress), (200, last));
    let (_, doc) = get_json(&format!("{}/api/v1/runs/{run_id}", server.base), None).await;
    assert_eq!(
        (doc["k"].as_u64(), doc["seed"].as_u64()),
        (Some(3), Some(11))
    );
    assert_eq!(doc["n_customers"], 150);
}

#[tokio::test]
async fn a_failed_run_says_why_and_bad_requests_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None, 1 << 20).await;
    let inbox = dir.path().join("inbox");
    std::fs::write(inbox.join("empty.csv"), "id,a,b\n").unwrap();
    let runs = format!("{}/api/v1/runs", server.base);

    let (status, started) = post(
        &runs,
        r#"{"kind": "table", "features": "empty.csv", "id_column": "id"}"#,
    )
    .await;
    assert_eq!(status, 202);
    let events = follow(&format!(
        "{}{}",
        server.base,
        started["events"].as_str().unwrap()
    ))
    .await;
    let last = events.last().unwrap();
    assert_eq!(last["state"], "failed");
    assert!(
        last["error"].as_str().unwrap().contains("empty.csv"),
        "the error names the file: {last}"
    );

    let bad = |message: &str| {
        (
            400,
            json!({"error": {"code": "bad_request", "message": message}}),
        )
    };
    assert_eq!(
        post(
            &runs,
            r#"{"kind": "table", "features": "../etc/passwd", "id_column": "id"}"#
        )
        .await,
        bad("features: \"../etc/passwd\" must be a relative path inside the inbox, without '..'")
    );
    assert_eq!(
        post(
            &runs,
            r#"{"kind": "table", "features": "missing.csv", "id_column": "id"}"#
        )
        .await,
        bad("features: \"missing.csv\" is not a file in the inbox")
    );
    assert_eq!(
        post(&runs, r#"{"kind": "store"}"#).await,
        bad("transactions, events: name at least one of them")
    );
    assert_eq!(
        post(
            &runs,
            r#"{"kind": "store", "events": "empty.csv", "as_of": "last week"}"#
        )
        .await,
        bad("as_of: 'last week' is not a date: use YYYY-MM-DD or an RFC 3339 instant")
    );
    assert_eq!(
        post(
            &runs,
            r#"{"kind": "table", "features": "empty.csv", "id_column": "id", "maps": []}"#
        )
        .await,
        bad("configuration: segment.maps is empty: name at least one of pca, umap, tsne")
    );
    let (status, unknown) = post(
        &runs,
        r#"{"kind": "table", "features": "empty.csv", "id_column": "id", "clusters": 4}"#,
    )
    .await;
    assert_eq!(status, 400);
    let message = unknown["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("request body: "), "{message}");
    assert!(message.contains("unknown field `clusters`"), "{message}");
    let response = reqwest::Client::new()
        .post(&runs)
        .body(r#"{"kind": "store"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(
        serde_json::from_slice::<Value>(&response.bytes().await.unwrap()).unwrap(),
        bad("send the body as JSON (Content-Type: application/json)").1
    );
    assert_eq!(
        get_json(&format!("{runs}/nope/progress"), None).await,
        (
            404,
            json!({"error": {"code": "not_found", "message": "no run \"nope\""}})
        )
    );
}

#[tokio::test]
async fn questions_get_the_same_cited_answer_as_segscope_ask() {
    let dir = tempfile::tempdir().unwrap();
    make_run(dir.path());
    let server = start(dir.path(), None, 1 << 20).await;
    let question = "Which segment is the largest?";
    let output = segscope()
        .args(["ask", question, "--json", "--run"])
        .arg(dir.path().join("runs").join("iris-1"))
        .output()
        .unwrap();
    assert!(output.status.success());
    let mut from_cli: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        from_cli["run"],
        format!("run {}", dir.path().join("runs").join("iris-1").display())
    );
    // The service cites the run by id: a client never sees a server path.
    from_cli["run"] = json!("run iris-1");
    let ask = format!("{}/api/v1/runs/iris-1/ask", server.base);
    let body = json!({ "question": question }).to_string();
    let (status, answer) = post(&ask, &body).await;
    assert_eq!((status, &answer), (200, &from_cli));
    assert_eq!(answer["answerer"], "builtin");
    assert_eq!(answer["figures"][0]["key"], "segment.1.size");

    let bad = |message: &str| {
        (
            400,
            json!({"error": {"code": "bad_request", "message": message}}),
        )
    };
    assert_eq!(
        post(&ask, r#"{"question": "   "}"#).await,
        bad("question: must be 1 to 2000 characters")
    );
    assert_eq!(
        post(
            &format!("{}/api/v1/runs/nope/ask", server.base),
            r#"{"question": "Which is largest?"}"#
        )
        .await,
        (
            404,
            json!({"error": {"code": "not_found", "message": "no run \"nope\""}})
        )
    );
}

async fn put(url: &str, body: Vec<u8>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .put(url)
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_slice(&response.bytes().await.unwrap()).expect("json"),
    )
}

/// Every entry of a folder, hidden ones included, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn uploads_are_checked_before_they_are_stored_and_runs_can_use_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), |s| s.serve.max_upload_bytes = 64 * 1024).await;
    let base = &server.base;
    let inbox = dir.path().join("inbox");
    let iris = std::fs::read("examples/iris.csv").unwrap();

    let (status, stored) = put(&format!("{base}/api/v1/inbox/iris.csv"), iris.clone()).await;
    assert_eq!(status, 201, "{stored}");
    let sha = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(&iris))
    };
    assert_eq!(
        stored,
        json!({"name": "iris.csv", "bytes": iris.len(), "sha256": sha, "gzip": false,
               "rows": 150, "columns": ["id", "sepal_length", "sepal_width", "petal_length",
               "petal_width", "species"]})
    );
    assert_eq!(std::fs::read(inbox.join("iris.csv")).unwrap(), iris);
    let (status, listed) = get_json(&format!("{base}/api/v1/inbox"), None).await;
    assert_eq!(status, 200);
    assert_eq!(listed["files"][0]["name"], "iris.csv");
    assert_eq!(listed["files"][0]["bytes"], iris.len());

    // A second upload of the same name must say so; with overwrite it replaces the file.
    let (status, clash) = put(
        &format!("{base}/api/v1/inbox/iris.csv"),
        b"id,x\na,1\n".to_vec(),
    )
    .await;
    assert_eq!(
        (status, clash),
        (
            409,
            json!({"error": {"code": "conflict", "message":
            "name: \"iris.csv\" is already in the inbox; add ?overwrite=true to replace it"}})
        )
    );

    // Refused uploads leave the inbox exactly as it was: no file, no temporary left over.
    let before = entries(&inbox);
    let ragged = b"id,x\na,1\nb,2,3\n".to_vec();
    assert_eq!(
        put(
            &format!("{base}/api/v1/inbox/iris.csv?overwrite=true"),
            ragged
        )
        .await,
        (
            422,
            json!({"error": {"code": "invalid_file",
            "message": "iris.csv: line 3: 3 fields where the header has 2"}})
        )
    );
    assert_eq!(
        put(
            &format!("{base}/api/v1/inbox/latin1.csv"),
            b"id,name\na,caf\xe9\n".to_vec()
        )
        .await,
        (
            422,
            json!({"error": {"code": "invalid_file", "message":
            "latin1.csv: line 2, column \"name\": not valid UTF-8 (export the file as UTF-8)"}})
        )
    );
    assert_eq!(
        put(&format!("{base}/api/v1/inbox/empty.csv"), Vec::new()).await,
        (
            422,
            json!({"error": {"code": "invalid_file", "message": "empty.csv: the file is empty"}})
        )
    );
    let (status, error) = put(&format!("{base}/api/v1/inbox/notes.txt"), iris.clone()).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("name: \"notes.txt\"")
    );
    let (status, error) = put(
        &format!("{base}/api/v1/inbox/big.csv"),
        vec![b'a'; 200 * 1024],
    )
    .await;
    assert_eq!(status, 413, "{error}");
    assert_eq!(entries(&inbox), before);
    assert_eq!(std::fs::read(inbox.join("iris.csv")).unwrap(), iris);

    let (status, _) = put(
        &format!("{base}/api/v1/inbox/iris.csv?overwrite=true"),
        iris.clone(),
    )
    .await;
    assert_eq!(status, 201);
    let (status, started) = post(
        &format!("{base}/api/v1/runs"),
        r#"{"kind": "table", "features": "iris.csv", "id_column": "id", "label_column": "species",
            "k": 3, "maps": ["pca"]}"#,
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let events = follow(&format!("{base}{}", started["events"].as_str().unwrap())).await;
    assert_eq!(events.last().unwrap()["state"], "succeeded", "{events:?}");

    let (_, _, metrics) = get(&format!("{base}/metrics"), None).await;
    let metrics = String::from_utf8(metrics).unwrap();
    let lines: Vec<&str> = metrics.lines().collect();
    for expected in [
        "segscope_runs_started_total 1",
        r#"segscope_runs_finished_total{state="succeeded"} 1"#,
        "segscope_runs_active 0",
    ] {
        assert!(lines.contains(&expected), "{expected} in {metrics}");
    }
}

/// The OpenAPI document's operations with a request that exercises each on a server holding
/// the run `iris-1`.
fn sample_request(path: &str, method: &str) -> (String, Option<(&'static str, Vec<u8>)>) {
    let url = path
        .replace("{id}", "iris-1")
        .replace("{segment}", "1")
        .replace("/files/{name}", "/files/segments.json")
        .replace("/inbox/{name}", "/inbox/sample.csv")
        .replace("{method}", "pca")
        .replace("{customer_id}", "iris-001")
        .replace("/kpis/{name}", "/kpis/monetary")
        .replace("{week}", "2026-W41")
        .replace("{index}", "0");
    let body = match (method, path) {
        ("put", "/api/v1/inbox/{name}") => Some(("text/csv", b"id,x\na,1\n".to_vec())),
        ("post", "/api/v1/runs") => Some((
            "application/json",
            br#"{"kind": "table", "features": "missing.csv", "id_column": "id"}"#.to_vec(),
        )),
        ("post", "/api/v1/runs/{id}/ask" | "/api/v1/runs/{id}/chat") => Some((
            "application/json",
            br#"{"question": "Which segment is the largest?"}"#.to_vec(),
        )),
        ("post", "/slack/commands") => Some((
            "application/x-www-form-urlencoded",
            b"command=%2Fsegments&text=largest".to_vec(),
        )),
        ("post", "/slack/events") => Some((
            "application/json",
            br#"{"type": "url_verification"}"#.to_vec(),
        )),
        ("post" | "put", _) => panic!("no sample body for {method} {path}: add one"),
        _ => None,
    };
    (url, body)
}

async fn call(
    base: &str,
    method: &str,
    url: &str,
    body: Option<(&str, Vec<u8>)>,
    token: Option<&str>,
) -> (u16, String, Vec<u8>) {
    let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let mut request = reqwest::Client::new().request(method, format!("{base}{url}"));
    if let Some((media, bytes)) = body {
        request = request.header("content-type", media).body(bytes);
    }
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let media = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, media, response.bytes().await.unwrap().to_vec())
}

/// Resolves a `$ref` to `#/components/...` in the document.
fn resolve<'a>(doc: &'a Value, node: &'a Value) -> &'a Value {
    match node["$ref"].as_str() {
        Some(pointer) => doc
            .pointer(pointer.trim_start_matches('#'))
            .expect("ref resolves"),
        None => node,
    }
}

/// The routes the service registers, read from its source: every `.route("...")` in
/// src/serve; those in api.rs, maps.rs, movement.rs and webchat.rs are nested under /api/v1.
/// HTML pages and assets are the dashboard's, not the API's.
fn routes_in_source() -> std::collections::BTreeSet<(String, String)> {
    let mut routes = std::collections::BTreeSet::new();
    let mut files = Vec::new();
    let mut folders = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src/serve")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    for path in files {
        let source = std::fs::read_to_string(&path).unwrap();
        // Routers nested under /api/v1 (the dashboard's pages are not).
        let nested = ["api.rs", "maps.rs", "movement.rs", "webchat.rs"]
            .iter()
            .any(|f| path.file_name().unwrap() == *f);
        for piece in source.split(".route(\"").skip(1) {
            let (route, rest) = piece.split_once('"').unwrap();
            let route = if nested {
                format!("/api/v1{route}")
            } else {
                route.to_string()
            };
            let api = route.starts_with("/api/")
                || route.starts_with("/slack/")
                || ["/healthz", "/readyz", "/metrics"].contains(&route.as_str());
            if !api {
                continue;
            }
            // The handlers: the rest of the `.route(` call, up to its closing parenthesis.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(rest.len(), |(i, _)| i);
            let handlers = &rest[..end];
            for method in ["get", "post", "put", "delete", "patch"] {
                if handlers.contains(&format!("{method}(")) {
                    routes.insert((route.clone(), method.to_string()));
                }
            }
        }
    }
    routes
}

#[tokio::test]
async fn the_openapi_document_describes_the_real_routes() {
    let dir = tempfile::tempdir().unwrap();
    make_run(dir.path());
    let server = start(dir.path(), None, 1 << 20).await;
    let guarded = start(dir.path(), Some(TOKEN), 1 << 20).await;
    let base = &server.base;
    let doc: Value = serde_json::from_str(segscope::serve::api::OPENAPI).unwrap();
    let (status, served) = get_json(&format!("{base}/api/v1/openapi.json"), None).await;
    assert_eq!((status, &served), (200, &doc));
    assert_eq!(
        read_json(&Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/openapi.json")),
        doc
    );

    let mut documented = std::collections::BTreeSet::new();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            documented.insert((path.clone(), method.clone()));
            let (url, body) = sample_request(path, method);
            let (status, media, bytes) = call(base, method, &url, body.clone(), None).await;
            let what = format!(
                "{} {path} answered {status}: {}",
                method.to_uppercase(),
                String::from_utf8_lossy(&bytes)
            );
            let response = operation["responses"]
                .get(status.to_string())
                .unwrap_or_else(|| panic!("undocumented status: {what}"));
            let response = resolve(&doc, response);
            if let Some(schema) = response["content"]["application/json"].get("schema") {
                assert!(media.starts_with("application/json"), "{what}: {media}");
                let body: Value = serde_json::from_slice(&bytes).unwrap();
                let mut schema = schema.clone();
                schema["components"] = doc["components"].clone();
                let validator = jsonschema::validator_for(&schema).expect("schema compiles");
                let errors: Vec<String> = validator
                    .iter_errors(&body)
                    .map(|e| format!("{e} at {}", e.instance_path))
                    .collect();
                assert!(errors.is_empty(), "{what}: {errors:?}");
            }
            // Security as documented: public operations answer without the token, the
            // others refuse with 401.
            let public = operation.get("security").is_some_and(|s| s == &json!([]));
            let (status, _, _) = call(&guarded.base, method, &url, body, None).await;
            assert_eq!(
                status == 401,
                !public,
                "{} {path} without a token: {status}",
                method.to_uppercase()
            );
        }
    }
    assert_eq!(
        routes_in_source(),
        documented,
        "routes in src/serve vs schemas/openapi.json"
    );
}

/// The secrets of the secrets test: each distinctive, so a leak anywhere is found.
const SERVE_SECRET: &str = "serve-secret-5c1e9b";
const MODEL_KEY: &str = "sk-model-secret-83d0f2";

#[tokio::test]
async fn no_secret_reaches_the_log_even_at_debug_level() {
    use std::io::BufRead;
    use support::openai_stub::OpenAiStub;

    let dir = tempfile::tempdir().unwrap();
    make_run(dir.path());
    // The model server knows another key: every model call fails with 401 after the
    // service logs it, the path where a careless error message would echo the key.
    let stub = OpenAiStub::start("sk-the-right-key", 8).await;
    let std_cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("segscope"));
    let mut command = std_cmd;
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("SEGSCOPE__")) {
        command.env_remove(key);
    }
    let mut child = command
        .args(["serve", "--bind", "127.0.0.1:0", "-vv", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "debug")
        .env("SEGSCOPE__SERVE__TOKEN", SERVE_SECRET)
        .env("SEGSCOPE__LLM__PROVIDER", "openai")
        .env("OPENAI_API_KEY", MODEL_KEY)
        .env("OPENAI_BASE_URL", &stub.base_url)
        .env("SEGSCOPE__LLM__OPENAI__MAX_RETRIES", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("segscope serve: listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();

    let client = reqwest::Client::new();
    let ask = format!("{base}/api/v1/runs/iris-1/ask");
    let question = json!({"question": "Which segment is the largest?"}).to_string();
    for offered in [None, Some("serve-secret-5c1e9c"), Some(SERVE_SECRET)] {
        let mut request = client
            .post(&ask)
            .header("content-type", "application/json")
            .body(question.clone());
        if let Some(token) = offered {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert!(
            !body.contains(SERVE_SECRET) && !body.contains(MODEL_KEY),
            "{body}"
        );
        let expected = if offered == Some(SERVE_SECRET) {
            502
        } else {
            401
        };
        assert_eq!(status, expected, "{body}");
    }
    assert_eq!(
        stub.chat_requests().len(),
        1,
        "one call, answered 401 (echoing the key it was sent, as OpenAI does) and not retried"
    );

    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "graceful stop");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("chat model failed"),
        "the failure is logged: {log}"
    );
    for secret in [SERVE_SECRET, MODEL_KEY] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}
