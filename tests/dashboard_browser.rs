//! The dashboard end to end in real headless Chromium (Debian's `chromium`, driven over the
//! DevTools protocol): the service runs on a free loopback port over a temporary data
//! directory holding real runs; the tests load the pages, check that the WebGL map draws
//! every customer, hover a point and read its tooltip, ask a question in the chat and read
//! the streamed answer, and save a screenshot of each page (under Cargo's test temp dir,
//! `dashboard/`), checking that it shows something. The movement page of a tracked run is
//! checked the same way (share lines, Sankey, the weekly map, an alert's customers) and
//! takes a new week from the live event stream without a reload. A third test loads a 200,000-point map
//! and prints load, frame and hover timings (measured, not asserted beyond sanity).
//!
//! Waiting is done by polling page state with a deadline, never by fixed sleeps.

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

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::layout::Point;
use chromiumoxide::page::{Page, ScreenshotParams};
use futures::StreamExt;
use serde_json::{Value, json};
use support::dashboard::{
    STORE_CUSTOMERS, assignments, make_store_run, make_table_run, make_track_run, settings, start,
};
use support::openai_stub::{ChatAnswer, OpenAiStub};

const CHROMIUM: &str = "/usr/bin/chromium";
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 1000;

struct Chrome {
    browser: Browser,
    handler: tokio::task::JoinHandle<()>,
    _profile: tempfile::TempDir,
}

impl Chrome {
    async fn launch() -> Chrome {
        assert!(
            Path::new(CHROMIUM).exists(),
            "headless Chromium is missing: the dashboard tests need Debian's `chromium` at \
             {CHROMIUM} (apt-get install chromium fonts-dejavu-core; .ci/run installs it)"
        );
        let profile = tempfile::tempdir().unwrap();
        let config = BrowserConfig::builder()
            .chrome_executable(CHROMIUM)
            .no_sandbox()
            .new_headless_mode()
            .user_data_dir(profile.path())
            .window_size(WIDTH, HEIGHT)
            .viewport(Viewport {
                width: WIDTH,
                height: HEIGHT,
                device_scale_factor: Some(1.0),
                emulating_mobile: false,
                is_landscape: true,
                has_touch: false,
            })
            // WebGL without a GPU: Chromium's software renderer.
            .args([
                "enable-unsafe-swiftshader",
                "use-angle=swiftshader",
                "ignore-gpu-blocklist",
            ])
            .launch_timeout(Duration::from_secs(60))
            .request_timeout(Duration::from_secs(60))
            .build()
            .expect("browser config");
        let (browser, mut events) = Browser::launch(config).await.expect("launch chromium");
        let handler = tokio::spawn(async move { while events.next().await.is_some() {} });
        Chrome {
            browser,
            handler,
            _profile: profile,
        }
    }

    async fn open(&self, url: &str) -> Page {
        let page = self.browser.new_page(url).await.expect("new page");
        page.wait_for_navigation().await.expect("navigation");
        page
    }

    async fn close(mut self) {
        let _ = self.browser.close().await;
        let _ = self.browser.wait().await;
        self.handler.abort();
    }
}

async fn eval(page: &Page, expression: &str) -> Value {
    page.evaluate(expression)
        .await
        .unwrap_or_else(|e| panic!("{expression}: {e}"))
        .into_value::<Value>()
        .unwrap_or(Value::Null)
}

/// Polls `expression` until it is truthy; fails with `what` and the page's map/chat state
/// after `limit`. An evaluation that fails (the page is navigating and its script context
/// is gone) counts as "not yet".
async fn wait_for(page: &Page, expression: &str, what: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let value = match page.evaluate(expression).await {
            Ok(result) => result.into_value::<Value>().unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        let truthy = !matches!(value, Value::Null | Value::Bool(false))
            && value != json!(0)
            && value != json!("");
        if truthy {
            return value;
        }
        if Instant::now() > deadline {
            let state = eval(
                page,
                "JSON.stringify({url: location.href, map: window.segscopeMap || null, chat: window.segscopeChat || null, \
                 movement: window.segscopeMovement ? {live: segscopeMovement.live, error: segscopeMovement.error, map: segscopeMovement.map, \
                 sankey: segscopeMovement.sankey, alert: segscopeMovement.alert, updates: segscopeMovement.updates} : null, \
                 text: document.body ? document.body.innerText.slice(0, 400) : null})",
            )
            .await;
            panic!("timed out waiting for {what} ({expression}); page state: {state}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Saves a screenshot of the viewport as `name` and checks it: a PNG of the viewport's size
/// that is not one flat colour (at least `min_colours` distinct colours).
async fn screenshot(page: &Page, name: &str, min_colours: usize) -> PathBuf {
    let png = page
        .screenshot(ScreenshotParams::builder().build())
        .await
        .expect("screenshot");
    let path = screenshot_dir().join(name);
    std::fs::write(&path, &png).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().expect("png header");
    let mut pixels = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut pixels).expect("png frame");
    assert_eq!((info.width, info.height), (WIDTH, HEIGHT), "{name}");
    let channels = info.color_type.samples();
    let colours: std::collections::HashSet<&[u8]> =
        pixels[..info.buffer_size()].chunks(channels).collect();
    assert!(
        colours.len() >= min_colours,
        "{name} shows only {} colours",
        colours.len()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_page_draws_every_customer_and_hovering_shows_who_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = make_store_run(dir.path(), "store-1");
    let rows = assignments(&run_dir);
    let doc: Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("segments.json")).unwrap()).unwrap();
    let server = start(dir.path(), settings(&[])).await;
    let chrome = Chrome::launch().await;
    let long = Duration::from_secs(60);

    let runs = chrome.open(&format!("{}/", server.base)).await;
    let first = wait_for(
        &runs,
        "document.querySelector('#runs a') && document.querySelector('#runs a').textContent",
        "the runs list",
        long,
    )
    .await;
    assert_eq!(first, "store-1");
    screenshot(&runs, "runs.png", 8).await;

    let page = chrome.open(&format!("{}/runs/store-1", server.base)).await;
    wait_for(
        &page,
        "window.segscopeMap && segscopeMap.ready && segscopeMap.idsReady",
        "the map",
        long,
    )
    .await;
    assert_eq!(eval(&page, "segscopeMap.error").await, Value::Null);
    assert_eq!(eval(&page, "segscopeMap.method").await, "pca");
    assert_eq!(
        eval(&page, "segscopeMap.pointsDrawn").await,
        json!(STORE_CUSTOMERS)
    );
    assert_eq!(
        eval(
            &page,
            "Array.from(document.querySelectorAll('#map-method option')).map(o => o.value)"
        )
        .await,
        json!(["pca", "umap"])
    );

    // A point with no other point within 10 px, so the pointer can only mean it.
    let target = eval(
        &page,
        "(() => { const m = segscopeMap, n = m.pointsDrawn, ps = [];
          for (let i = 0; i < n; i++) ps.push(m.screenPosition(i));
          const r = document.getElementById('map').getBoundingClientRect();
          for (let i = 0; i < n; i++) {
            const p = ps[i];
            if (p.x < r.left + 8 || p.y < r.top + 8 || p.x > r.right - 8 || p.y > r.bottom - 8) continue;
            let alone = true;
            for (let j = 0; j < n && alone; j++) {
              if (j !== i) { const dx = ps[j].x - p.x, dy = ps[j].y - p.y; alone = dx * dx + dy * dy >= 100; }
            }
            if (alone) return {index: i, x: p.x, y: p.y};
          }
          return null; })()",
    )
    .await;
    let index = target["index"].as_u64().expect("an isolated point") as usize;
    let row = &rows[index];
    page.move_mouse(Point {
        x: target["x"].as_f64().unwrap(),
        y: target["y"].as_f64().unwrap(),
    })
    .await
    .unwrap();
    wait_for(
        &page,
        "!document.getElementById('tooltip').hidden && document.getElementById('tooltip-details').textContent !== '…'",
        "the tooltip's details",
        long,
    )
    .await;
    assert_eq!(
        eval(&page, "document.getElementById('tooltip-id').textContent").await,
        row.id.as_str()
    );
    let name = doc["segments"][row.segment as usize - 1]["name"]
        .as_str()
        .unwrap();
    assert_eq!(
        eval(
            &page,
            "document.getElementById('tooltip-segment').textContent"
        )
        .await,
        format!("{}. {name}", row.segment)
    );
    let details = eval(
        &page,
        "document.getElementById('tooltip-details').textContent",
    )
    .await
    .as_str()
    .unwrap()
    .to_string();
    let mut profiles = csv::Reader::from_path(run_dir.join("profiles.csv")).unwrap();
    let profile = profiles
        .records()
        .map(Result::unwrap)
        .find(|r| r[0] == row.id)
        .unwrap();
    if profile[1].is_empty() {
        assert!(details.starts_with("never bought"), "{details}");
    } else {
        assert!(details.starts_with("R "), "{details}");
        assert!(details.contains(" days · F "), "{details}");
    }
    if !profile[7].is_empty() {
        assert!(
            details.ends_with(&format!("Top: {}", profile[7].replace('|', ", "))),
            "{details}"
        );
    }
    screenshot(&page, "run-hover.png", 40).await;

    // Clicking the hovered point highlights its segment and shows its card.
    page.click(Point {
        x: target["x"].as_f64().unwrap(),
        y: target["y"].as_f64().unwrap(),
    })
    .await
    .unwrap();
    wait_for(
        &page,
        "segscopeMap.highlighted !== null",
        "the highlight",
        long,
    )
    .await;
    assert_eq!(
        eval(&page, "segscopeMap.highlighted").await,
        json!(row.segment)
    );
    let panel = eval(
        &page,
        "document.getElementById('segment-panel').textContent",
    )
    .await;
    assert!(panel.as_str().unwrap().contains(name), "{panel}");
    assert_eq!(
        eval(
            &page,
            "document.querySelector('.legend .seg.active').dataset.segment"
        )
        .await,
        row.segment.to_string()
    );

    // Another map and a KPI colouring.
    eval(
        &page,
        "segscopeMap.setMethod('umap'); segscopeMap.setColour('monetary'); true",
    )
    .await;
    wait_for(
        &page,
        "segscopeMap.ready && segscopeMap.method === 'umap' && !document.getElementById('kpi-scale').hidden",
        "the UMAP map coloured by monetary",
        long,
    )
    .await;
    assert_eq!(
        eval(&page, "segscopeMap.pointsDrawn").await,
        json!(STORE_CUSTOMERS)
    );
    screenshot(&page, "run-umap-monetary.png", 40).await;

    let report = chrome
        .open(&format!("{}/runs/store-1/report", server.base))
        .await;
    let title = wait_for(&report, "document.title", "the briefing", long).await;
    assert!(
        title.as_str().unwrap().starts_with("segscope briefing"),
        "{title}"
    );
    screenshot(&report, "report.png", 40).await;
    chrome.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_page_streams_the_answer_the_json_api_gives() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = make_table_run(dir.path(), "iris-1");
    let doc: Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("segments.json")).unwrap()).unwrap();
    let largest = doc["segments"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|s| s["size"].as_u64())
        .unwrap()
        .clone();
    // The model looks the sizes up with a tool, then answers citing one; the same script
    // answers the JSON API and the browser.
    let text = format!(
        "The largest segment is \"{}\" with {} customers; the segments differ mostly in petal length.",
        largest["name"].as_str().unwrap(),
        largest["size"]
    );
    let stub = OpenAiStub::start("stub-key", 4).await;
    for _ in 0..2 {
        stub.queue_chat(ChatAnswer::ToolCalls(vec![(
            "list_segments".into(),
            "{}".into(),
        )]));
        stub.queue_chat(ChatAnswer::Text(text.clone()));
    }
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
    let question = "Which segment is the largest, and how do they differ?";
    let answered: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/runs/iris-1/ask", server.base))
        .json(&json!({ "question": question }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answered["text"], text.as_str());

    let chrome = Chrome::launch().await;
    let page = chrome
        .open(&format!("{}/runs/iris-1/chat", server.base))
        .await;
    wait_for(
        &page,
        "window.segscopeChat",
        "the chat script",
        Duration::from_secs(30),
    )
    .await;
    let input = page.find_element("#chat-question").await.unwrap();
    input.click().await.unwrap();
    input.type_str(question).await.unwrap();
    page.find_element("#chat-send")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        &page,
        "segscopeChat.answers === 1 || segscopeChat.error",
        "the streamed answer",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(eval(&page, "segscopeChat.error").await, Value::Null);
    assert_eq!(
        eval(
            &page,
            "document.querySelector('.msg.bot .answer-text').textContent"
        )
        .await,
        answered["text"]
    );
    assert_eq!(
        eval(&page, "document.querySelector('.msg.user').textContent").await,
        question
    );
    let tokens = eval(&page, "segscopeChat.tokens").await.as_u64().unwrap();
    assert!(tokens > 1, "the answer arrived in {tokens} token event(s)");
    assert_eq!(eval(&page, "segscopeChat.last.answerer").await, "stub-chat");
    assert_eq!(answered["status"], "answered");
    let cited = format!("segment.{}.size = {}", largest["id"], largest["size"]);
    assert_eq!(
        eval(&page, "Array.from(document.querySelectorAll('.msg.bot .figures a')).map(a => [a.textContent, a.getAttribute('href')])").await,
        json!([[cited, format!("/runs/iris-1#segment-{}", largest["id"])]])
    );
    screenshot(&page, "chat.png", 20).await;
    chrome.close().await;
    server.stop().await;
}

/// Writes a run of `n` customers in three blobs (PCA map only) by hand: the dashboard reads
/// only `segments.json` and `assignments.csv`, so this measures the map, not the pipeline.
fn write_big_run(data_dir: &Path, template: &Path, n: usize) {
    let out = data_dir.join("runs").join("big");
    std::fs::create_dir_all(&out).unwrap();
    let mut doc: Value =
        serde_json::from_slice(&std::fs::read(template.join("segments.json")).unwrap()).unwrap();
    doc["n_customers"] = json!(n);
    std::fs::write(out.join("segments.json"), doc.to_string()).unwrap();
    let mut csv = String::with_capacity(n * 40);
    csv.push_str("id,segment,pca_x,pca_y\n");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut uniform = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for i in 0..n {
        let segment = i % 3 + 1;
        let (cx, cy) = [(0.0, 0.0), (6.0, 1.0), (3.0, 5.0)][segment - 1];
        let (r, a) = (uniform().sqrt() * 2.5, uniform() * std::f64::consts::TAU);
        csv.push_str(&format!(
            "c{i},{segment},{},{}\n",
            cx + r * a.cos(),
            cy + r * a.sin()
        ));
    }
    std::fs::write(out.join("assignments.csv"), csv).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_thousand_points_load_pan_and_hover_in_time() {
    const N: usize = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let iris = make_table_run(dir.path(), "iris-1");
    write_big_run(dir.path(), &iris, N);
    let server = start(dir.path(), settings(&[])).await;
    let chrome = Chrome::launch().await;
    let started = Instant::now();
    let page = chrome.open(&format!("{}/runs/big", server.base)).await;
    wait_for(
        &page,
        "window.segscopeMap && segscopeMap.ready && segscopeMap.idsReady",
        "the 200,000-point map",
        Duration::from_secs(120),
    )
    .await;
    let ready_ms = started.elapsed().as_millis();
    assert_eq!(eval(&page, "segscopeMap.pointsDrawn").await, json!(N));

    // 60 animation frames, each panning the map: the interval between frames.
    let frames = eval(
        &page,
        "new Promise(resolve => { const m = segscopeMap, t = [], start = m.frames;
           function step(ts) { t.push(ts); if (t.length <= 60) { m.panBy(3, 1); requestAnimationFrame(step); }
             else { resolve({ms_per_frame: (t[t.length - 1] - t[0]) / (t.length - 1), drawn: m.frames - start, draw_ms: m.drawMs}); } }
           requestAnimationFrame(step); })",
    )
    .await;
    // Hover hit-testing: 1,000 pointer moves over the canvas, timed in the page.
    let hover = eval(
        &page,
        "(() => { const c = document.getElementById('map'), r = c.getBoundingClientRect(), t0 = performance.now();
           for (let i = 0; i < 1000; i++) {
             c.dispatchEvent(new PointerEvent('pointermove', {clientX: r.left + (i * 37) % r.width, clientY: r.top + (i * 53) % r.height, bubbles: true}));
           }
           return (performance.now() - t0) / 1000; })()",
    )
    .await;
    let load = eval(&page, "segscopeMap.loadMs").await;
    let timings = json!({
        "points": N,
        "page_to_ready_ms": ready_ms,
        "points_fetch_and_index_ms": load,
        "pan": frames,
        "hover_ms_per_move": hover,
    });
    println!("dashboard timings: {timings}");
    std::fs::write(
        screenshot_dir().join("timings-200k.json"),
        timings.to_string(),
    )
    .unwrap();
    let per_move = hover.as_f64().unwrap();
    assert!(
        per_move < 16.0,
        "a hover must fit in a frame: {per_move} ms per move"
    );
    screenshot(&page, "run-200k.png", 20).await;
    chrome.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_from_the_runs_page_is_listed_when_it_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        settings(&[("SEGSCOPE__STABILITY__RESAMPLES", "0")]),
    )
    .await;
    std::fs::copy(
        "examples/iris.csv",
        dir.path().join("inbox").join("iris.csv"),
    )
    .unwrap();
    let chrome = Chrome::launch().await;
    let page = chrome.open(&format!("{}/", server.base)).await;
    wait_for(
        &page,
        "document.getElementById('no-runs')",
        "the empty list",
        Duration::from_secs(30),
    )
    .await;
    eval(
        &page,
        "(() => { const f = document.getElementById('start-form');
           document.getElementById('start-run').open = true;
           f.elements.kind.value = 'table'; f.elements.kind.dispatchEvent(new Event('change'));
           f.elements.features.value = 'iris.csv'; f.elements.label_column.value = 'species';
           f.elements.k.value = '3'; f.elements.maps.value = 'pca';
           return true; })()",
    )
    .await;
    page.find_element("#start-submit")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The page reloads itself when the run succeeds; the new list links the run.
    let link = wait_for(
        &page,
        "document.querySelector('#runs a') && document.querySelector('#runs a').getAttribute('href')",
        "the finished run in the list",
        Duration::from_secs(120),
    )
    .await;
    let run_id = link
        .as_str()
        .unwrap()
        .strip_prefix("/runs/")
        .unwrap()
        .to_string();
    let doc: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("runs").join(&run_id).join("segments.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (doc["k"].as_u64(), doc["n_customers"].as_u64()),
        (Some(3), Some(150))
    );
    screenshot(&page, "runs-after-start.png", 8).await;
    chrome.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_browser_logs_in_and_the_map_loads_with_the_cookie() {
    let dir = tempfile::tempdir().unwrap();
    make_table_run(dir.path(), "iris-1");
    let token = "browser-token-93d1";
    let server = start(dir.path(), settings(&[("SEGSCOPE__SERVE__TOKEN", token)])).await;
    let chrome = Chrome::launch().await;
    let page = chrome.open(&format!("{}/runs/iris-1", server.base)).await;
    wait_for(
        &page,
        "location.pathname === '/login' && document.querySelector('input[name=token]')",
        "the login form",
        Duration::from_secs(30),
    )
    .await;
    let input = page.find_element("input[name=token]").await.unwrap();
    input.click().await.unwrap();
    input.type_str("wrong").await.unwrap();
    input.press_key("Enter").await.unwrap();
    wait_for(
        &page,
        "document.getElementById('login-failed')",
        "the refusal",
        Duration::from_secs(30),
    )
    .await;
    let input = page.find_element("input[name=token]").await.unwrap();
    input.click().await.unwrap();
    input.type_str(token).await.unwrap();
    input.press_key("Enter").await.unwrap();
    // Back on the run page; its script reads the API with the cookie alone.
    wait_for(
        &page,
        "location.pathname === '/runs/iris-1' && window.segscopeMap && segscopeMap.ready && segscopeMap.idsReady",
        "the map after logging in",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(eval(&page, "segscopeMap.pointsDrawn").await, json!(150));
    assert_eq!(
        eval(&page, "document.cookie").await,
        "",
        "the session cookie is HTTP-only"
    );
    chrome.close().await;
    server.stop().await;
}

/// `movement.json` and `weekly_assignments.csv` as they were before the run's last week:
/// what a watched track held a week earlier.
fn without_last_week(movement: &Value, csv: &str) -> (Value, String) {
    let last = movement["weeks"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    let mut doc = movement.clone();
    doc["weeks"].as_array_mut().unwrap().pop();
    let keep = |list: &mut Value, field: &str| {
        list.as_array_mut()
            .unwrap()
            .retain(|item| item[field] != last);
    };
    keep(&mut doc["shares"], "week");
    keep(&mut doc["transitions"], "to_week");
    keep(&mut doc["alerts"], "week");
    keep(&mut doc["summaries"], "week");
    keep(&mut doc["psi"]["shares"], "week");
    keep(&mut doc["psi"]["features"], "week");
    let last = last.as_str().unwrap().to_string();
    let rows: String = csv
        .lines()
        .filter(|line| !line.starts_with(&format!("{last},")))
        .map(|line| format!("{line}\n"))
        .collect();
    (doc, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_movement_page_draws_shares_flows_the_weekly_map_and_alerts_and_takes_a_new_week_live()
{
    let dir = tempfile::tempdir().unwrap();
    let run_dir = make_track_run(dir.path(), "shop-track");
    let full_doc: Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("movement.json")).unwrap()).unwrap();
    let full_csv = std::fs::read_to_string(run_dir.join("weekly_assignments.csv")).unwrap();
    // The page first sees the run a week short; the last week arrives while it is open.
    let (doc, csv) = without_last_week(&full_doc, &full_csv);
    std::fs::write(run_dir.join("movement.json"), doc.to_string()).unwrap();
    std::fs::write(run_dir.join("weekly_assignments.csv"), &csv).unwrap();
    let weeks: Vec<String> = doc["weeks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    let rows_in = |csv: &str, week: &str| -> Vec<String> {
        csv.lines()
            .filter(|l| l.starts_with(&format!("{week},")))
            .map(|l| l.split(',').nth(1).unwrap().to_string())
            .collect()
    };
    let server = start(dir.path(), settings(&[])).await;
    let base = server.base.clone();
    let chrome = Chrome::launch().await;
    let long = Duration::from_secs(60);

    // A track-only folder is listed, linking its movement page.
    let runs = chrome.open(&format!("{base}/")).await;
    let link = wait_for(
        &runs,
        "document.querySelector('#runs a') && document.querySelector('#runs a').getAttribute('href')",
        "the runs list",
        long,
    )
    .await;
    assert_eq!(link, "/runs/shop-track/movement");

    let page = chrome
        .open(&format!("{base}/runs/shop-track/movement"))
        .await;
    let ready = "(() => { const m = window.segscopeMovement; return m && m.doc && m.sankey && m.sankey.links > 0 \
                 && m.map.ready && m.live === 'open'; })()";
    wait_for(&page, ready, "the movement page", long).await;
    assert_eq!(eval(&page, "segscopeMovement.error").await, Value::Null);
    eval(&page, "window.notReloaded = true").await;

    // One share line per segment, in segment order; hovering a week lists its shares.
    let segments: Vec<Value> = doc["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!(s["id"].to_string()))
        .collect();
    assert_eq!(
        eval(
            &page,
            "Array.from(document.querySelectorAll('#shares-chart .share-line')).map(l => l.dataset.segment)"
        )
        .await,
        json!(segments)
    );
    let week3 = &doc["shares"][3];
    let tip = eval(
        &page,
        &format!(
            "(() => {{ const c = document.querySelector('.hover-col[data-week=\"{}\"]'), r = c.getBoundingClientRect();
               c.dispatchEvent(new MouseEvent('mousemove', {{clientX: r.left + r.width / 2, clientY: r.top + 20, bubbles: true}}));
               return Array.from(document.querySelectorAll('#tooltip div')).map(d => d.textContent); }})()",
            weeks[3]
        ),
    )
    .await;
    let first = &week3["segments"][0];
    let share = (first["share"].as_f64().unwrap() * 1000.0).round() / 10.0;
    assert_eq!(tip[0], weeks[3].as_str());
    assert_eq!(
        tip[1],
        format!(
            "Segment {}: {share}% ({})",
            first["segment"], first["count"]
        )
    );

    // The Sankey of the last two weeks is the stored transition.
    let n = weeks.len();
    let transition = doc["transitions"].as_array().unwrap().last().unwrap();
    assert_eq!(
        eval(&page, "[segscopeMovement.sankey.from, segscopeMovement.sankey.to, segscopeMovement.sankey.source]").await,
        json!([weeks[n - 2], weeks[n - 1], "transitions"])
    );
    let drawn = eval(
        &page,
        "Array.from(document.querySelectorAll('#sankey path.flow')).map(p => [Number(p.dataset.from), Number(p.dataset.to), Number(p.dataset.count)])",
    )
    .await;
    let stored: Vec<Value> = transition["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| json!([f["from"], f["to"], f["count"]]))
        .collect();
    assert_eq!(drawn, json!(stored));
    // Two weeks apart: counted by the server from the weekly assignments.
    eval(
        &page,
        &format!(
            "(() => {{ const s = document.getElementById('flow-from'); s.value = '{}'; s.dispatchEvent(new Event('change')); return true; }})()",
            weeks[0]
        ),
    )
    .await;
    wait_for(
        &page,
        &format!(
            "segscopeMovement.sankey.from === '{}' && segscopeMovement.sankey.source === 'weekly_assignments'",
            weeks[0]
        ),
        "the Sankey of non-consecutive weeks",
        long,
    )
    .await;
    let flows: Value = reqwest::get(format!(
        "{base}/api/v1/runs/shop-track/movement/flows?from={}&to={}",
        weeks[0],
        weeks[n - 1]
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        eval(
            &page,
            "Array.from(document.querySelectorAll('#sankey path.flow')).reduce((s, p) => s + Number(p.dataset.count), 0)"
        )
        .await,
        flows["customers_in_both"]
    );
    assert_eq!(
        eval(&page, "segscopeMovement.sankey.links").await,
        json!(flows["flows"].as_array().unwrap().len())
    );

    // The map starts on the last week and steps to another with the slider.
    assert_eq!(
        eval(&page, "segscopeMovement.map.week").await,
        weeks[n - 1].as_str()
    );
    assert_eq!(
        eval(&page, "segscopeMovement.map.pointsDrawn").await,
        json!(rows_in(&csv, &weeks[n - 1]).len())
    );
    eval(
        &page,
        "(() => { const s = document.getElementById('week-slider'); s.value = '2'; s.dispatchEvent(new Event('input')); return true; })()",
    )
    .await;
    wait_for(
        &page,
        &format!(
            "segscopeMovement.map.week === '{}' && segscopeMovement.map.ready",
            weeks[2]
        ),
        "the map of the third week",
        long,
    )
    .await;
    assert_eq!(
        eval(&page, "segscopeMovement.map.pointsDrawn").await,
        json!(rows_in(&csv, &weeks[2]).len())
    );
    screenshot(&page, "movement.png", 40).await;

    // Clicking an alert lists its customers and lights them up on that week's map.
    let alerts = doc["alerts"].as_array().unwrap();
    let (index, alert) = alerts
        .iter()
        .enumerate()
        .find(|(_, a)| a["kind"] == "migration")
        .expect("a migration alert");
    page.find_element(&format!("#alerts button[data-index='{index}']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let week = alert["week"].as_str().unwrap();
    wait_for(
        &page,
        &format!(
            "segscopeMovement.alert && segscopeMovement.alert.index === {index} && segscopeMovement.map.week === '{week}' \
             && segscopeMovement.map.ready && segscopeMovement.map.idsReady && segscopeMovement.map.highlighted > 0"
        ),
        "the alert's customers",
        long,
    )
    .await;
    let customers: Vec<Value> = alert["customers"].as_array().unwrap().clone();
    assert_eq!(
        eval(
            &page,
            "Array.from(document.querySelectorAll('#alert-customers tr.alert-customer')).map(r => r.dataset.id)"
        )
        .await,
        json!(customers.iter().take(50).collect::<Vec<_>>())
    );
    assert_eq!(
        eval(&page, "segscopeMovement.map.highlighted").await,
        json!(customers.len())
    );
    screenshot(&page, "movement-alert.png", 40).await;

    // The last week arrives: the files are rewritten and the watch announces it.
    std::fs::write(run_dir.join("weekly_assignments.csv"), &full_csv).unwrap();
    std::fs::write(run_dir.join("movement.json"), full_doc.to_string()).unwrap();
    let added = full_doc["weeks"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap();
    server
        .updates
        .publish(segscope::serve::live::RunUpdate::WeekAdded {
            run_id: "shop-track".into(),
            week: added.to_string(),
        });
    wait_for(
        &page,
        &format!(
            "document.body.dataset.updates === '1' && document.getElementById('week-count').textContent === '{}' \
             && Array.from(document.querySelectorAll('#flow-to option')).some(o => o.value === '{added}')",
            n + 1
        ),
        "the new week on the page",
        long,
    )
    .await;
    assert_eq!(
        eval(&page, "window.notReloaded === true").await,
        json!(true)
    );
    assert_eq!(
        eval(&page, "document.getElementById('week-slider').max").await,
        json!(n.to_string())
    );
    assert_eq!(
        eval(
            &page,
            "document.querySelectorAll('#shares-chart .share-line').length"
        )
        .await,
        json!(full_doc["segments"].as_array().unwrap().len())
    );
    chrome.close().await;
    server.stop().await;
}
