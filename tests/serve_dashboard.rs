//! The dashboard's HTTP side over real HTTP: map points as JSON pages and packed binary,
//! their paging edges and errors, the customer look-up with R/F/M from `profiles.csv`, the
//! pages and their embedded assets, the login cookie, and the web chat's event stream with
//! the built-in answerer and with a model streaming token by token.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test loudly"
)]

mod support {
    pub mod dashboard;
    pub mod openai_stub;
}

use reqwest::redirect::Policy;
use serde_json::{Value, json};
use support::dashboard::{
    STORE_CUSTOMERS, assignments, make_store_run, make_table_run, settings, start,
};
use support::openai_stub::{ChatAnswer, OpenAiStub};

const TOKEN: &str = "dash-token-51c2";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

struct Got {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_default()
    }
}

async fn send(request: reqwest::RequestBuilder) -> Got {
    let response = request.send().await.expect("send");
    Got {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().await.expect("body").to_vec(),
    }
}

async fn get(url: &str) -> Got {
    send(client().get(url)).await
}

fn error(status: u16, code: &str, message: &str) -> (u16, Value) {
    (status, json!({"error": {"code": code, "message": message}}))
}

#[tokio::test]
async fn map_points_come_as_json_pages_and_as_one_packed_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = make_store_run(dir.path(), "store-1");
    let server = start(dir.path(), settings(&[])).await;
    let api = format!("{}/api/v1/runs/store-1", server.base);
    let rows = assignments(&run_dir);
    assert_eq!(rows.len(), STORE_CUSTOMERS);

    let maps = get(&format!("{api}/maps")).await;
    assert_eq!(maps.status, 200);
    let maps = maps.json();
    assert_eq!(maps["n_customers"], STORE_CUSTOMERS);
    let keys: Vec<&str> = maps["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["pca", "umap"]);
    assert_eq!(maps["methods"][1]["title"], "UMAP");
    assert_eq!(
        maps["methods"][0]["points"],
        "/api/v1/runs/store-1/maps/pca/points"
    );
    let min_x = rows
        .iter()
        .map(|r| r.maps[0].1 as f32)
        .fold(f32::INFINITY, f32::min);
    assert_eq!(
        maps["methods"][0]["bounds"]["min_x"].as_f64().unwrap() as f32,
        min_x
    );
    assert_eq!(
        maps["kpis"],
        json!([
            "recency_days",
            "frequency",
            "monetary",
            "views",
            "sessions",
            "conversion"
        ])
    );

    // JSON pages: every point once, in file order, with exact coordinates.
    let mut seen = Vec::new();
    let mut offset = Some(0u64);
    while let Some(at) = offset {
        let page = get(&format!("{api}/maps/umap/points?offset={at}&limit=128")).await;
        assert_eq!(page.status, 200);
        let page = page.json();
        assert_eq!(page["total"], STORE_CUSTOMERS);
        assert_eq!(page["offset"], at);
        seen.extend(page["points"].as_array().unwrap().clone());
        offset = page["next_offset"].as_u64();
    }
    assert_eq!(seen.len(), STORE_CUSTOMERS);
    for (point, row) in seen.iter().zip(&rows) {
        assert_eq!(point["id"], row.id.as_str());
        let segment = if row.segment == 0 {
            Value::Null
        } else {
            row.segment.into()
        };
        assert_eq!(point["segment"], segment);
        assert_eq!(point["x"].as_f64().unwrap() as f32, row.maps[1].1 as f32);
        assert_eq!(point["y"].as_f64().unwrap() as f32, row.maps[1].2 as f32);
    }
    let last = get(&format!("{api}/maps/pca/points?offset=250&limit=100"))
        .await
        .json();
    assert_eq!(last["points"].as_array().unwrap().len(), 50);
    assert_eq!(last["next_offset"], Value::Null);
    let end = get(&format!("{api}/maps/pca/points?offset=300"))
        .await
        .json();
    assert_eq!(end["points"], json!([]));
    assert_eq!(end["next_offset"], Value::Null);
    let default = get(&format!("{api}/maps/pca/points")).await.json();
    assert_eq!(default["points"].as_array().unwrap().len(), STORE_CUSTOMERS);

    // Binary: header, interleaved f32 x,y, then u16 segments.
    let packed = get(&format!("{api}/maps/pca/points?format=binary")).await;
    assert_eq!(packed.status, 200);
    assert_eq!(packed.header("content-type"), "application/octet-stream");
    let b = &packed.body;
    let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let f32_at = |i: usize| f32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    assert_eq!(&b[..4], b"SGPT");
    assert_eq!((u16_at(4), u16_at(6)), (1, 2));
    assert_eq!(
        (u32_at(8), u32_at(12), u32_at(16), u32_at(20)),
        (300, 0, 300, 0)
    );
    assert_eq!(b.len(), 24 + 300 * 10);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(f32_at(24 + 8 * i), row.maps[0].1 as f32, "x of {}", row.id);
        assert_eq!(f32_at(28 + 8 * i), row.maps[0].2 as f32, "y of {}", row.id);
        assert_eq!(u32::from(u16_at(24 + 2400 + 2 * i)), row.segment);
    }
    let slice = get(&format!(
        "{api}/maps/umap/points?format=binary&offset=10&limit=5"
    ))
    .await;
    let s = &slice.body;
    assert_eq!(s.len(), 24 + 5 * 10);
    assert_eq!(
        u32::from_le_bytes(s[12..16].try_into().unwrap()),
        10,
        "offset in the header"
    );
    assert_eq!(
        f32::from_le_bytes(s[24..28].try_into().unwrap()),
        rows[10].maps[1].1 as f32
    );

    for (path, expected) in [
        (
            "/maps/pca/points?limit=0",
            error(
                400,
                "bad_request",
                "limit: must be 1 to 10000 for JSON (use format=binary for more)",
            ),
        ),
        (
            "/maps/pca/points?limit=10001",
            error(
                400,
                "bad_request",
                "limit: must be 1 to 10000 for JSON (use format=binary for more)",
            ),
        ),
        (
            "/maps/pca/points?offset=-1",
            error(
                400,
                "bad_request",
                "offset: \"-1\" is not a whole number of points",
            ),
        ),
        (
            "/maps/pca/points?offset=301",
            error(
                400,
                "bad_request",
                "offset: 301 is past the last point (the map has 300)",
            ),
        ),
        (
            "/maps/pca/points?format=xml",
            error(
                400,
                "bad_request",
                "format: \"xml\" is not a format; use json or binary",
            ),
        ),
        (
            "/maps/mds/points",
            error(
                400,
                "bad_request",
                "method \"mds\" is not a map method; use one of pca, umap, tsne",
            ),
        ),
        (
            "/maps/tsne/points",
            error(404, "not_found", "run \"store-1\" has no t-SNE map"),
        ),
    ] {
        let got = get(&format!("{api}{path}")).await;
        assert_eq!((got.status, got.json()), expected, "{path}");
    }
    let unknown = get(&format!("{}/api/v1/runs/nope/maps", server.base)).await;
    assert_eq!(
        (unknown.status, unknown.json()),
        error(404, "not_found", "no run \"nope\"")
    );
    let query = get(&format!("{api}/maps/pca/points?page=2")).await;
    assert_eq!(query.status, 400);
    assert!(
        query.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `page`")
    );
    server.stop().await;
}

#[tokio::test]
async fn customers_are_looked_up_with_segment_coordinates_and_profile() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = make_store_run(dir.path(), "store-1");
    make_table_run(dir.path(), "iris-1");
    let server = start(dir.path(), settings(&[])).await;
    let api = format!("{}/api/v1/runs/store-1", server.base);
    let rows = assignments(&run_dir);

    let ids = get(&format!("{api}/customers")).await.json();
    assert_eq!(ids["total"], STORE_CUSTOMERS);
    let listed: Vec<&str> = ids["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let expected: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(listed, expected);

    // profiles.csv: written by the run, downloadable, and the source of the look-up.
    let profiles = get(&format!("{api}/files/profiles.csv")).await;
    assert_eq!(profiles.status, 200);
    assert_eq!(
        profiles.body,
        std::fs::read(run_dir.join("profiles.csv")).unwrap()
    );
    let mut reader = csv::Reader::from_reader(profiles.body.as_slice());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "id",
            "recency_days",
            "frequency",
            "monetary",
            "views",
            "sessions",
            "conversion",
            "top_categories"
        ]
    );
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), STORE_CUSTOMERS);
    let buyer = records
        .iter()
        .find(|r| !r[1].is_empty() && !r[7].is_empty())
        .expect("a customer who bought and browsed");
    let row = rows.iter().find(|r| r.id == buyer[0]).unwrap();
    let got = get(&format!("{api}/customers/{}", &buyer[0])).await;
    assert_eq!(got.status, 200);
    let number = |s: &str| s.parse::<f64>().unwrap();
    assert_eq!(
        got.json(),
        json!({
            "run": "store-1",
            "id": &buyer[0],
            "segment": row.segment,
            "maps": {
                "pca": {"x": row.maps[0].1 as f32, "y": row.maps[0].2 as f32},
                "umap": {"x": row.maps[1].1 as f32, "y": row.maps[1].2 as f32},
            },
            "profile": {
                "recency_days": number(&buyer[1]),
                "frequency": number(&buyer[2]),
                "monetary": number(&buyer[3]),
                "views": number(&buyer[4]),
                "sessions": number(&buyer[5]),
                "conversion": number(&buyer[6]),
                "top_categories": buyer[7].split('|').collect::<Vec<_>>(),
            },
        })
    );

    // One KPI per customer, in point order, NaN where there is none.
    let monetary = get(&format!("{api}/kpis/monetary")).await;
    assert_eq!(monetary.header("content-type"), "application/octet-stream");
    assert_eq!(monetary.body.len(), STORE_CUSTOMERS * 4);
    for (i, record) in records.iter().enumerate() {
        let value = f32::from_le_bytes(monetary.body[4 * i..4 * i + 4].try_into().unwrap());
        if record[3].is_empty() {
            assert!(value.is_nan(), "{}", &record[0]);
        } else {
            assert_eq!(value, number(&record[3]) as f32, "{}", &record[0]);
        }
    }

    for (url, expected) in [
        (
            format!("{api}/customers/no-such-customer"),
            error(
                404,
                "not_found",
                "run \"store-1\" has no customer \"no-such-customer\"",
            ),
        ),
        (
            format!("{api}/kpis/age"),
            error(
                400,
                "bad_request",
                "kpi: \"age\" is not a per-customer figure; use one of recency_days, frequency, monetary, views, sessions, conversion",
            ),
        ),
        (
            format!("{}/api/v1/runs/iris-1/kpis/monetary", server.base),
            error(
                404,
                "not_found",
                "run \"iris-1\" has no per-customer figures (only store runs have them)",
            ),
        ),
    ] {
        let got = get(&url).await;
        assert_eq!((got.status, got.json()), expected, "{url}");
    }
    let iris = get(&format!(
        "{}/api/v1/runs/iris-1/customers/iris-001",
        server.base
    ))
    .await
    .json();
    assert_eq!(iris["profile"], Value::Null);
    assert_eq!(iris["id"], "iris-001");
    assert_eq!(iris["label"], "setosa");
    assert!(iris["maps"]["pca"]["x"].is_number());
    let no_maps = get(&format!("{}/api/v1/runs/iris-1/maps", server.base))
        .await
        .json();
    assert_eq!(no_maps["kpis"], json!([]));
    server.stop().await;
}

#[tokio::test]
async fn pages_render_the_run_and_assets_are_embedded_and_cached() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = make_store_run(dir.path(), "store-1");
    let server = start(dir.path(), settings(&[])).await;
    let base = &server.base;
    let doc: Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("segments.json")).unwrap()).unwrap();

    let runs = get(&format!("{base}/")).await;
    assert_eq!(runs.status, 200);
    assert_eq!(runs.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(runs.header("cache-control"), "no-store");
    assert!(
        runs.header("content-security-policy")
            .contains("script-src 'self'")
    );
    let page = runs.text();
    assert!(
        page.contains(r#"<a href="/runs/store-1">store-1</a>"#),
        "{page}"
    );

    let run = get(&format!("{base}/runs/store-1")).await;
    assert_eq!(run.status, 200);
    let page = run.text();
    for s in doc["segments"].as_array().unwrap() {
        assert!(
            page.contains(&format!("id=\"segment-{}\"", s["id"])),
            "card {}",
            s["id"]
        );
        let name = s["name"]
            .as_str()
            .unwrap()
            .replace('&', "&amp;")
            .replace('\'', "&#x27;");
        assert!(page.contains(&name), "name {name}");
    }
    assert!(page.contains("id=\"validity\""));
    assert!(page.contains("UMAP trustworthiness"), "map reading");
    assert!(page.contains("/api/v1/runs/store-1/files/profiles.csv"));
    assert!(page.contains("<canvas id=\"map\""));

    let report = get(&format!("{base}/runs/store-1/report")).await;
    assert_eq!(report.status, 200);
    assert_eq!(
        report.body,
        std::fs::read(run_dir.join("report.html")).unwrap()
    );
    let chat = get(&format!("{base}/runs/store-1/chat")).await;
    assert_eq!(chat.status, 200);
    assert!(chat.text().contains("id=\"chat-form\""));
    let missing = get(&format!("{base}/runs/nope")).await;
    assert_eq!(missing.status, 404);
    assert!(
        missing.text().contains("no run &quot;nope&quot;"),
        "{}",
        missing.text()
    );

    // Assets: linked with a content hash, cached for a year under that URL.
    for (name, media) in [
        ("map.js", "text/javascript; charset=utf-8"),
        ("dashboard.css", "text/css; charset=utf-8"),
    ] {
        let start = page.find(&format!("/assets/{name}?v=")).expect("linked");
        let url: String = page[start..].chars().take_while(|c| *c != '"').collect();
        let asset = get(&format!("{base}{url}")).await;
        assert_eq!(asset.status, 200, "{url}");
        assert_eq!(asset.header("content-type"), media);
        assert_eq!(
            asset.header("cache-control"),
            "public, max-age=31536000, immutable"
        );
        let etag = asset.header("etag").to_string();
        assert_eq!(etag, format!("\"{}\"", url.rsplit('=').next().unwrap()));
        let again = send(
            client()
                .get(format!("{base}/assets/{name}"))
                .header("if-none-match", &etag),
        )
        .await;
        assert_eq!(again.status, 304);
        assert_eq!(again.header("cache-control"), "no-cache");
    }
    assert_eq!(
        get(&format!("{base}/assets/../Cargo.toml")).await.status,
        404
    );
    assert_eq!(get(&format!("{base}/assets/nope.js")).await.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn with_a_token_pages_need_the_login_cookie_and_the_api_accepts_it() {
    let dir = tempfile::tempdir().unwrap();
    make_table_run(dir.path(), "iris-1");
    let server = start(dir.path(), settings(&[("SEGSCOPE__SERVE__TOKEN", TOKEN)])).await;
    let base = &server.base;

    let page = get(&format!("{base}/runs/iris-1?x=1")).await;
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), "/login?next=/runs/iris-1%3Fx%3D1");
    let form = get(&format!("{base}/login?next=/runs/iris-1")).await;
    assert_eq!(form.status, 200);
    assert!(
        form.text()
            .contains(r#"name="next" value="&#x2F;runs&#x2F;iris-1""#),
        "{}",
        form.text()
    );

    let login = |token: &str, next: &str| {
        client()
            .post(format!("{base}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}&next={}", next.replace('/', "%2F")))
    };
    let wrong = send(login("dash-token-51c3", "/runs/iris-1")).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.text().contains("id=\"login-failed\""));
    assert!(wrong.headers.get("set-cookie").is_none());

    let right = send(login(TOKEN, "/runs/iris-1")).await;
    assert_eq!(right.status, 303);
    assert_eq!(right.header("location"), "/runs/iris-1");
    let cookie = right.header("set-cookie").to_string();
    let value = segscope::serve::auth::session_value(TOKEN);
    assert_eq!(
        cookie,
        format!("segscope_session={value}; Path=/; HttpOnly; Secure; SameSite=Strict")
    );
    assert!(!cookie.contains(TOKEN));
    let offsite = send(login(TOKEN, "//evil.example/")).await;
    assert_eq!(offsite.header("location"), "/");

    let with_cookie = |url: String, value: &str| {
        client()
            .get(url)
            .header("cookie", format!("other=1; segscope_session={value}"))
    };
    assert_eq!(
        send(with_cookie(format!("{base}/runs/iris-1"), &value))
            .await
            .status,
        200
    );
    assert_eq!(
        send(with_cookie(format!("{base}/api/v1/runs"), &value))
            .await
            .status,
        200
    );
    let forged = segscope::serve::auth::session_value("another token");
    assert_eq!(
        send(with_cookie(format!("{base}/runs/iris-1"), &forged))
            .await
            .status,
        303
    );
    let denied = send(with_cookie(format!("{base}/api/v1/runs"), &forged)).await;
    assert_eq!(denied.status, 401);
    assert_eq!(
        denied.json(),
        json!({"error": {"code": "unauthorized",
            "message": "missing or wrong bearer token (Authorization: Bearer <serve.token>)"}})
    );
    let bearer = send(
        client()
            .get(format!("{base}/api/v1/runs"))
            .bearer_auth(TOKEN),
    )
    .await;
    assert_eq!(bearer.status, 200);
    assert_eq!(get(&format!("{base}/assets/map.js")).await.status, 200);

    let logout = get(&format!("{base}/logout")).await;
    assert_eq!(logout.status, 303);
    assert_eq!(
        logout.header("set-cookie"),
        "segscope_session=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0"
    );
    server.stop().await;

    // Without a token there is nothing to log in to.
    let open = start(dir.path(), settings(&[])).await;
    assert_eq!(get(&format!("{}/", open.base)).await.status, 200);
    let login = get(&format!("{}/login?next=/runs/iris-1", open.base)).await;
    assert_eq!(
        (login.status, login.header("location")),
        (303, "/runs/iris-1")
    );
    open.stop().await;
}

/// The events of a server-sent event stream: (name, data as JSON).
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data: String = block
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            Some((
                name.to_string(),
                serde_json::from_str(&data).expect("event json"),
            ))
        })
        .collect()
}

async fn chat(base: &str, run: &str, question: &str, cookie: Option<&str>) -> Got {
    let mut request = client()
        .post(format!("{base}/api/v1/runs/{run}/chat"))
        .json(&json!({ "question": question }));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    send(request).await
}

#[tokio::test]
async fn the_web_chat_streams_the_same_answer_as_the_json_api() {
    let dir = tempfile::tempdir().unwrap();
    make_table_run(dir.path(), "iris-1");
    let server = start(dir.path(), settings(&[])).await;
    let question = "Which segment is the largest?";
    let asked = send(
        client()
            .post(format!("{}/api/v1/runs/iris-1/ask", server.base))
            .json(&json!({ "question": question })),
    )
    .await
    .json();

    let streamed = chat(&server.base, "iris-1", question, None).await;
    assert_eq!(streamed.status, 200);
    assert_eq!(streamed.header("content-type"), "text/event-stream");
    let cookie = streamed.header("set-cookie");
    assert!(cookie.starts_with("segscope_chat="), "{cookie}");
    assert!(
        cookie.ends_with("; Path=/; HttpOnly; Secure; SameSite=Strict"),
        "{cookie}"
    );
    let events = events(&streamed.text());
    let (last, tokens) = events.split_last().unwrap();
    assert_eq!(last.0, "done");
    assert_eq!(last.1, asked);
    assert!(!tokens.is_empty());
    let text: String = tokens
        .iter()
        .map(|(name, data)| {
            assert_eq!(name, "token");
            data["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(text, asked["text"].as_str().unwrap());

    let empty = chat(&server.base, "iris-1", "  ", None).await;
    assert_eq!(
        (empty.status, empty.json()),
        error(400, "bad_request", "question: must be 1 to 2000 characters")
    );
    let nope = chat(&server.base, "nope", question, None).await;
    assert_eq!(
        (nope.status, nope.json()),
        error(404, "not_found", "no run \"nope\"")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_model_answer_streams_token_by_token_and_the_conversation_is_remembered() {
    let dir = tempfile::tempdir().unwrap();
    make_table_run(dir.path(), "iris-1");
    let stub = OpenAiStub::start("stub-key", 4).await;
    let server = start(
        dir.path(),
        settings(&[
            ("SEGSCOPE__LLM__PROVIDER", "openai"),
            ("SEGSCOPE__LLM__OPENAI__BASE_URL", &stub.base_url),
            ("SEGSCOPE__LLM__OPENAI__API_KEY", "stub-key"),
            ("SEGSCOPE__LLM__OPENAI__MODEL", "stub-chat"),
            ("SEGSCOPE__LLM__OPENAI__MAX_RETRIES", "0"),
        ]),
    )
    .await;
    let run_doc: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("runs/iris-1/segments.json")).unwrap(),
    )
    .unwrap();
    let size = run_doc["segments"][0]["size"].as_u64().unwrap();
    // First turn: the model looks the sizes up, then answers citing one.
    let first_text = format!(
        "The first segment has {size} customers; the segments differ mostly in petal length and petal width."
    );
    let first_text = first_text.as_str();
    stub.queue_chat(ChatAnswer::ToolCalls(vec![(
        "list_segments".into(),
        "{}".into(),
    )]));
    stub.queue_chat(ChatAnswer::Text(first_text.into()));
    let first = chat(&server.base, "iris-1", "How do the segments differ?", None).await;
    assert_eq!(first.status, 200);
    let session = first
        .header("set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let events1 = events(&first.text());
    let tokens: Vec<&str> = events1
        .iter()
        .filter(|(name, _)| name == "token")
        .map(|(_, data)| data["text"].as_str().unwrap())
        .collect();
    assert!(tokens.len() > 1, "streamed in pieces: {tokens:?}");
    assert_eq!(tokens.concat(), first_text);
    let (name, done) = events1.last().unwrap();
    assert_eq!(name, "done");
    assert_eq!(done["text"], first_text);
    assert_eq!(done["answerer"], "stub-chat");
    assert_eq!(done["status"], "answered");

    // The same browser session: the model sees the earlier exchange.
    // Second turn, no tool call: restating a figure the first answer cited is grounded.
    let second_text =
        format!("Petal width separates them best; that segment keeps its {size} customers.");
    let second_text = second_text.as_str();
    stub.queue_chat(ChatAnswer::Text(second_text.into()));
    let second = chat(
        &server.base,
        "iris-1",
        "And which separates best?",
        Some(&session),
    )
    .await;
    assert!(
        second.headers.get("set-cookie").is_none(),
        "the session is kept"
    );
    let second_done = events(&second.text()).last().unwrap().1.clone();
    assert_eq!(second_done["text"], second_text);
    assert_eq!(second_done["status"], "answered");
    assert_eq!(second_done["figures"][0]["key"], "segment.1.size");
    let roles = |n: usize| -> Vec<(String, String)> {
        stub.chat_requests()[n]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .map(|m| {
                (
                    m["role"].as_str().unwrap().to_string(),
                    m["content"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        roles(2),
        [
            (
                "user".to_string(),
                "How do the segments differ?".to_string()
            ),
            ("assistant".to_string(), first_text.to_string()),
            ("user".to_string(), "And which separates best?".to_string()),
        ]
    );
    // A new browser starts a new conversation.
    let third_text = "Petal width separates them best.";
    stub.queue_chat(ChatAnswer::Text(third_text.into()));
    let third = chat(&server.base, "iris-1", "And which separates best?", None).await;
    assert_eq!(
        events(&third.text()).last().unwrap().1["text"],
        third_text,
        "{}",
        third.text()
    );
    assert_eq!(
        roles(3),
        [("user".to_string(), "And which separates best?".to_string())]
    );
    server.stop().await;
}
