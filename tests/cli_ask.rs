//! `segscope ask` through the real binary on a small store run: the built-in answerer's exact
//! answers (derived from `segments.json`), and a chat model served by the local
//! OpenAI-compatible stub: a tool-calling conversation ending in a cited answer, refused and
//! unknown tool calls, malformed arguments, a hallucinated number (rejected, retried, then
//! replaced), exhausted tool rounds, a refusal and the similarity tool over the vector store.
//! Assertions read the stub's recorded requests and the answer's JSON record; nothing sleeps.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test loudly"
)]

mod support {
    #[allow(dead_code, reason = "shared helpers; this binary uses some")]
    pub mod cli;
    pub mod openai_stub;
}

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use segscope::demo::synthetic_store::{StoreSpec, generate};
use segscope::narrative::figures::{Unit, display};
use serde_json::{Value, json};
use support::cli::{read_json, segscope};
use support::openai_stub::{ChatAnswer, OpenAiStub};

const KEY: &str = "sk-ask-test-0123456789";

/// One store run shared by every test of this binary (read-only for them all): the demo's
/// synthetic store without planted weekly changes, through `segscope segment`. It lives in
/// cargo's per-target temporary directory and is replaced on each run, so nothing piles up.
fn demo_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli_ask_demo");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("remove the previous demo run");
        }
        let store = generate(&StoreSpec::demo(600, 42), &dir.join("data")).expect("generate");
        let out = dir.join("run");
        segscope()
            .args(["segment", "--seed", "42", "--transactions"])
            .arg(&store.transactions)
            .arg("--events")
            .arg(&store.events)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        out
    })
}

fn segments() -> Value {
    read_json(&demo_run().join("segments.json"))
}

fn segment(doc: &Value, id: u64) -> &Value {
    doc["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .expect("segment")
}

fn run_citation(doc: &Value) -> String {
    format!(
        "run {} ({})",
        doc["store"]["store"]["run_id"].as_str().unwrap(),
        demo_run().display()
    )
}

fn ask_builtin(question: &str) -> String {
    let out = segscope()
        .args(["ask", question, "--run"])
        .arg(demo_run())
        .env_remove("OPENAI_API_KEY")
        .assert()
        .success();
    String::from_utf8(out.get_output().stdout.clone()).unwrap()
}

fn number(v: &Value) -> String {
    display(v.as_f64().unwrap(), Unit::Number)
}

#[test]
fn builtin_answers_the_size_of_a_segment_named_by_words_of_its_name() {
    let doc = segments();
    let s = segment(&doc, 3);
    assert!(
        s["name"]
            .as_str()
            .unwrap()
            .starts_with("Lapsed big spenders")
    );
    let stdout = ask_builtin("How big is the lapsed big-spender group?");
    let expected = format!(
        "Segment 3, \"{}\", has {} customers, {} of the {} customers in the run.\n\n\
         Source: {} (answered by builtin)\nFigures:\n  segment.3.size = {}\n  \
         segment.3.share = {}\n  n_customers = {}\n",
        s["name"].as_str().unwrap(),
        s["size"],
        display(s["share"].as_f64().unwrap(), Unit::Share),
        doc["n_customers"],
        run_citation(&doc),
        s["size"],
        display(s["share"].as_f64().unwrap(), Unit::Share),
        doc["n_customers"],
    );
    assert_eq!(stdout, expected);
}

#[test]
fn builtin_names_the_segment_most_at_risk_of_churning() {
    let doc = segments();
    let mut by_recency: Vec<(u64, f64)> = doc["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| {
            let median = s["kpis"]["business"]["recency_days"]["median"].as_f64()?;
            Some((s["id"].as_u64().unwrap(), median))
        })
        .collect();
    by_recency.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (top, days) = by_recency[0];
    let others: Vec<String> = by_recency[1..]
        .iter()
        .map(|(id, d)| format!("segment {id} {}", display(*d, Unit::Number)))
        .collect();
    let stdout = ask_builtin("Which segment is most at risk of churning?");
    let first = stdout.lines().next().unwrap();
    assert_eq!(
        first,
        format!(
            "Most at risk of churning, judged by the time since the last purchase: segment {top}, \
             \"{}\", whose buyers last bought a median of {} days ago. The other segments, in \
             days: {}. Recency is a proxy for churn risk, not a prediction.",
            segment(&doc, top)["name"].as_str().unwrap(),
            display(days, Unit::Number),
            others.join(", ")
        )
    );
    assert!(stdout.contains(&format!(
        "  segment.{top}.recency_days.median = {}",
        display(days, Unit::Number)
    )));
}

#[test]
fn builtin_ranks_by_a_kpi_and_compares_two_segments() {
    let doc = segments();
    let mut by_revenue: Vec<(u64, f64)> = doc["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_u64().unwrap(),
                s["kpis"]["business"]["revenue"].as_f64().unwrap(),
            )
        })
        .collect();
    by_revenue.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let ranking: Vec<String> = by_revenue
        .iter()
        .map(|(id, v)| format!("segment {id} {}", display(*v, Unit::Number)))
        .collect();
    let stdout = ask_builtin("Which segment brings the highest revenue?");
    assert_eq!(
        stdout.lines().next().unwrap(),
        format!(
            "By net revenue, the highest is segment {}, \"{}\", with {}. All segments, highest \
             first: {}.",
            by_revenue[0].0,
            segment(&doc, by_revenue[0].0)["name"].as_str().unwrap(),
            display(by_revenue[0].1, Unit::Number),
            ranking.join(", ")
        )
    );

    let (a, b) = (segment(&doc, 1), segment(&doc, 2));
    let stdout = ask_builtin("Compare segment 1 and segment 2");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "Segment 1, \"{}\", against segment 2, \"{}\":",
            a["name"].as_str().unwrap(),
            b["name"].as_str().unwrap()
        )
    );
    assert_eq!(
        lines[1],
        format!("- customers: {} against {}", a["size"], b["size"])
    );
    let median = |s: &Value, kpi: &str| number(&s["kpis"]["business"][kpi]["median"]);
    assert_eq!(
        lines[5],
        format!(
            "- median net revenue per buyer: {} against {}",
            median(a, "monetary"),
            median(b, "monetary")
        )
    );
}

#[test]
fn builtin_explains_k_caveats_and_what_it_cannot_answer() {
    let doc = segments();
    let stdout = ask_builtin("How was k chosen?");
    let rule = doc["k_selection"]["rule"].as_str().unwrap();
    assert!(
        stdout.starts_with(&format!(
            "The run has {} segments, chosen automatically (kmeans): {rule}. Mean silhouette of \
             each k tried: k=2 {}",
            doc["k"],
            number(&doc["k_selection"]["candidates"][0]["silhouette"])
        )),
        "{stdout}"
    );

    let stdout = ask_builtin("Which caveats apply?");
    let mut expected = String::from("Caveats for the run:\n");
    let caveats: Vec<String> = doc["caveats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("- {}", c["message"].as_str().unwrap()))
        .collect();
    expected.push_str(&caveats.join("\n"));
    assert!(stdout.starts_with(&expected), "{stdout}");
    assert!(stdout.contains(&format!(
        "t-SNE {}",
        number(&doc["maps"]["tsne"]["trustworthiness"])
    )));

    let stdout = ask_builtin("Write me a poem about our customers");
    assert!(
        stdout.starts_with(
            "The built-in answerer (no language model is configured) cannot answer this question."
        ),
        "{stdout}"
    );
    assert!(stdout.contains("llm.provider = \"openai\""));
    assert!(stdout.contains("OPENAI_API_KEY"));
    assert!(!stdout.contains("Figures:"));
}

#[test]
fn builtin_does_not_describe_a_segment_below_the_minimum_size() {
    let doc = segments();
    let smallest = doc["segments"]
        .as_array()
        .unwrap()
        .iter()
        .min_by_key(|s| (s["size"].as_u64().unwrap(), s["id"].as_u64().unwrap()))
        .unwrap();
    let (id, size) = (
        smallest["id"].as_u64().unwrap(),
        smallest["size"].as_u64().unwrap(),
    );
    let min = size + 1;
    let out = segscope()
        .args(["ask", &format!("Describe segment {id}"), "--run"])
        .arg(demo_run())
        .env("SEGSCOPE__NARRATIVE__MIN_SEGMENT_SIZE", min.to_string())
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert_eq!(
        stdout.lines().next().unwrap(),
        format!(
            "Segment {id}, \"{}\", has {size} customers ({} of the run), fewer than {min} \
             (narrative.min_segment_size): segscope does not describe segments this small \
             individually.",
            smallest["name"].as_str().unwrap(),
            display(smallest["share"].as_f64().unwrap(), Unit::Share),
        )
    );
    assert!(!stdout.contains("recency_days"), "{stdout}");
}

#[test]
fn a_directory_without_a_run_is_an_input_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = segscope()
        .args(["ask", "How big is segment 1?", "--run"])
        .arg(dir.path())
        .assert()
        .code(3);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("segments.json: no such file"), "{stderr}");
}

// ---------------------------------------------------------------- with a chat model

/// A stub on its own runtime (the binary runs on this thread while the stub answers).
struct Model {
    /// Keeps the stub serving.
    _runtime: tokio::runtime::Runtime,
    stub: OpenAiStub,
    config: tempfile::NamedTempFile,
}

fn model(max_tool_rounds: usize) -> Model {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let stub = runtime.block_on(OpenAiStub::start(KEY, 4));
    let config = tempfile::NamedTempFile::new().expect("config");
    std::fs::write(
        config.path(),
        format!(
            "[llm]\nprovider = \"openai\"\n[llm.openai]\nbase_url = \"{}\"\napi_key = \"{KEY}\"\n\
             model = \"stub-chat\"\nmax_retries = 0\ntimeout_secs = 10.0\n[ask]\n\
             max_tool_rounds = {max_tool_rounds}\n",
            stub.base_url
        ),
    )
    .expect("write config");
    Model {
        _runtime: runtime,
        stub,
        config,
    }
}

impl Model {
    /// Asks through the binary with `--json` and returns the answer document.
    fn ask(&self, question: &str) -> Value {
        let out = segscope()
            .args(["ask", question, "--json", "--run"])
            .arg(demo_run())
            .arg("--config")
            .arg(self.config.path())
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .assert()
            .success();
        serde_json::from_slice(&out.get_output().stdout).expect("answer json")
    }

    /// The content of the tool messages of the `n`-th chat request, parsed.
    fn tool_results(&self, n: usize) -> Vec<Value> {
        self.stub.chat_requests()[n]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "tool")
            .map(|m| serde_json::from_str(m["content"].as_str().unwrap()).unwrap())
            .collect()
    }
}

fn calls(calls: &[(&str, Value)]) -> ChatAnswer {
    ChatAnswer::ToolCalls(
        calls
            .iter()
            .map(|(name, args)| (name.to_string(), args.to_string()))
            .collect(),
    )
}

#[test]
fn a_tool_calling_conversation_ends_in_a_cited_grounded_answer() {
    let doc = segments();
    let s4 = segment(&doc, 4);
    let days = number(&s4["kpis"]["business"]["recency_days"]["median"]);
    let m = model(6);
    m.stub
        .queue_chat(calls(&[("kpi_table", json!({"kpi": "recency_days"}))]));
    let text = format!(
        "Segment 4 (\"{}\") is most at risk: its buyers last bought a median of {days} days ago.",
        s4["name"].as_str().unwrap()
    );
    m.stub.queue_chat(ChatAnswer::Text(text.clone()));
    let answer = m.ask("Which segment is most at risk of churning?");

    assert_eq!(answer["text"], text);
    assert_eq!(answer["status"], "answered");
    assert_eq!(answer["answerer"], "stub-chat");
    assert_eq!(answer["run"], run_citation(&doc));
    assert_eq!(
        answer["figures"],
        json!([{"key": "segment.4.recency_days.median", "value": s4["kpis"]["business"]["recency_days"]["median"], "display": days}])
    );
    assert_eq!(answer["record"]["rounds"], 1);
    assert_eq!(
        answer["record"]["tool_calls"],
        json!([{"tool": "kpi_table", "error": null}])
    );

    let requests = m.stub.chat_requests();
    assert_eq!(requests.len(), 2);
    // The first request offers every tool with its schema; the system prompt names the run.
    let tools: Vec<&str> = requests[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        [
            "list_segments",
            "segment_profile",
            "compare_segments",
            "kpi_table",
            "similar_customers",
            "k_choice",
            "map_caveats"
        ]
    );
    assert_eq!(
        requests[0]["tools"][1]["function"]["parameters"]["properties"]["segment"]["enum"],
        json!([1, 2, 3, 4, 5, 6])
    );
    let system = requests[0]["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains(&run_citation(&doc)), "{system}");
    // The second carries the tool's result, figures as displayed.
    let results = m.tool_results(1);
    assert_eq!(results[0]["result"]["kpi"], "recency_days");
    assert_eq!(results[0]["result"]["segments"][0]["id"], 4);
    assert_eq!(results[0]["result"]["segments"][0]["value"], days);

    // Without --json the answer is printed with its citations.
    let m = model(6);
    m.stub
        .queue_chat(calls(&[("kpi_table", json!({"kpi": "recency_days"}))]));
    m.stub.queue_chat(ChatAnswer::Text(text.clone()));
    let out = segscope()
        .args(["ask", "Which segment is most at risk of churning?", "--run"])
        .arg(demo_run())
        .arg("--config")
        .arg(m.config.path())
        .env_remove("OPENAI_API_KEY")
        .assert()
        .success();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout),
        format!(
            "{text}\n\nSource: {} (answered by stub-chat)\nFigures:\n  segment.4.recency_days.median = {days}\n",
            run_citation(&doc)
        )
    );
}

#[test]
fn refused_unknown_and_malformed_tool_calls_go_back_to_the_model_and_are_counted() {
    let m = model(6);
    m.stub.queue_chat(calls(&[
        ("segment_profile", json!({"segment": 99})),
        ("drop_tables", json!({})),
    ]));
    m.stub.queue_chat(ChatAnswer::ToolCalls(vec![(
        "segment_profile".into(),
        "{segment: 2".into(),
    )]));
    m.stub.queue_chat(ChatAnswer::Text(
        "Segment 2 is described in the report.".into(),
    ));
    let answer = m.ask("Tell me about segment 2");

    assert_eq!(answer["status"], "answered");
    assert_eq!(answer["text"], "Segment 2 is described in the report.");
    let record = &answer["record"];
    assert_eq!(record["rounds"], 2);
    assert_eq!(record["invalid_arguments"], 2);
    assert_eq!(record["unknown_tools"], 1);

    let first = m.tool_results(1);
    let refused = first[0]["error"].as_str().unwrap();
    assert!(
        refused.starts_with(
            "the arguments of segment_profile do not match its schema: 99 is not one of"
        ),
        "{refused}"
    );
    assert_eq!(
        first[1]["error"],
        "there is no tool named 'drop_tables'; the tools are: list_segments, segment_profile, \
         compare_segments, kpi_table, similar_customers, k_choice, map_caveats"
    );
    let second = m.tool_results(2);
    let malformed = second[2]["error"].as_str().unwrap();
    assert!(
        malformed.starts_with("the arguments of segment_profile are not valid JSON"),
        "{malformed}"
    );
}

#[test]
fn a_hallucinated_number_is_rejected_retried_then_replaced() {
    let doc = segments();
    let s2 = segment(&doc, 2);
    // Recognised by the built-in answerer: its answer replaces the model's.
    let m = model(6);
    m.stub.queue_chat(calls(&[("list_segments", json!({}))]));
    m.stub
        .queue_chat(ChatAnswer::Text("Segment 2 has 4321 customers.".into()));
    m.stub.queue_chat(ChatAnswer::Text(
        "Segment 2 has about 4300 customers.".into(),
    ));
    let answer = m.ask("How big is segment 2?");
    assert_eq!(answer["status"], "builtin_after_ungrounded");
    assert_eq!(answer["answerer"], "builtin");
    assert_eq!(
        answer["text"],
        format!(
            "Segment 2, \"{}\", has {} customers, {} of the {} customers in the run.",
            s2["name"].as_str().unwrap(),
            s2["size"],
            display(s2["share"].as_f64().unwrap(), Unit::Share),
            doc["n_customers"]
        )
    );
    let rejected = answer["record"]["rejected_answers"].as_array().unwrap();
    assert_eq!(rejected.len(), 2);
    assert!(
        rejected[0][0].as_str().unwrap().contains("4321"),
        "{rejected:?}"
    );
    // The retry told the model what was wrong.
    let requests = m.stub.chat_requests();
    assert_eq!(requests.len(), 3);
    let retry = requests[2]["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(retry.starts_with("Your answer cannot be shown:"), "{retry}");
    assert!(retry.contains("4321"), "{retry}");

    // Not recognised by the built-in answerer: an honest "could not verify".
    let m = model(6);
    m.stub.queue_chat(ChatAnswer::Text(
        "Our customers spend 12% more on Tuesdays.".into(),
    ));
    m.stub.queue_chat(ChatAnswer::Text(
        "Our customers spend 12% more on Tuesdays.".into(),
    ));
    let answer = m.ask("Write me a poem about our customers");
    assert_eq!(answer["status"], "unverified");
    assert!(
        answer["text"]
            .as_str()
            .unwrap()
            .starts_with("segscope could not verify the model's answer against the run's figures"),
        "{answer}"
    );
    assert_eq!(answer["figures"], json!([]));
}

#[test]
fn after_the_last_tool_round_the_model_must_answer() {
    let m = model(2);
    m.stub.queue_chat(calls(&[("list_segments", json!({}))]));
    m.stub.queue_chat(calls(&[("k_choice", json!({}))]));
    m.stub
        .queue_chat(ChatAnswer::Text("The run has 6 segments.".into()));
    let answer = m.ask("How many segments are there and why?");
    assert_eq!(answer["status"], "answered");
    assert_eq!(answer["record"]["rounds"], 2);
    assert_eq!(answer["record"]["rounds_exhausted"], true);
    assert_eq!(answer["figures"][0]["key"], "k");

    let requests = m.stub.chat_requests();
    assert_eq!(requests.len(), 3);
    assert!(
        requests[1]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
    );
    assert!(
        requests[2]
            .get("tools")
            .is_none_or(|t| t.as_array().is_none_or(Vec::is_empty)),
        "tools still offered: {}",
        requests[2]
    );
    let last = requests[2]["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        last.starts_with("You have used all 2 rounds of tool calls."),
        "{last}"
    );

    // A model that keeps calling tools gets no more of them and no unchecked answer.
    let m = model(1);
    m.stub.queue_chat(calls(&[("list_segments", json!({}))]));
    m.stub.queue_chat(calls(&[("list_segments", json!({}))]));
    let answer = m.ask("Write me a poem about our customers");
    assert_eq!(answer["status"], "unverified");
    assert_eq!(m.stub.chat_requests().len(), 2);
}

#[test]
fn a_refusal_is_reported_and_the_builtin_answer_given_when_it_applies() {
    let m = model(6);
    m.stub
        .queue_chat(ChatAnswer::Refusal("I cannot help with that.".into()));
    let answer = m.ask("Write me a poem about our customers");
    assert_eq!(answer["status"], "refused");
    assert_eq!(
        answer["text"],
        "The model declined to answer: I cannot help with that."
    );
    assert_eq!(answer["record"]["refusals"], 1);

    let m = model(6);
    m.stub.queue_chat(ChatAnswer::Refusal("No.".into()));
    let answer = m.ask("How big is segment 1?");
    assert_eq!(answer["status"], "refused");
    assert_eq!(answer["answerer"], "builtin");
    assert!(answer["text"].as_str().unwrap().starts_with("Segment 1, "));
}

#[test]
fn similar_customers_are_found_through_the_store_as_aggregates() {
    let doc = segments();
    let m = model(6);
    m.stub.queue_chat(calls(&[
        (
            "similar_customers",
            json!({"description": "people who buy smartphones from apple", "limit": 10}),
        ),
        ("similar_customers", json!({"description": "zzzz qqqq"})),
    ]));
    m.stub
        .queue_chat(ChatAnswer::Text("They are mostly in segment 2.".into()));
    let answer = m.ask("Who browses smartphones from apple?");
    assert_eq!(answer["status"], "answered");

    let results = m.tool_results(1);
    let found = &results[0]["result"];
    assert_eq!(found["found"], "10");
    let terms = found["matched_terms"]["data"].as_array().unwrap();
    assert!(terms.contains(&json!("brand:apple")), "{terms:?}");
    assert!(
        terms.contains(&json!("category:electronics.smartphone")),
        "{terms:?}"
    );
    // The smartphone shoppers are the electronics big spenders.
    let s2 = segment(&doc, 2);
    assert!(s2["name"].as_str().unwrap().contains("electronics"));
    let mix = found["segments"].as_array().unwrap();
    assert_eq!(mix[0]["segment"], 2, "{mix:?}");
    assert_eq!(mix[0]["customers"], "10");
    let browse = found["what_they_browse"]["data"].as_array().unwrap();
    assert!(!browse.is_empty());
    // Aggregates only: no customer id anywhere in the result.
    let text = found.to_string();
    assert!(!text.contains("customer_id"), "{text}");
    let ids: Vec<String> = std::fs::read_to_string(demo_run().join("assignments.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    assert!(ids.iter().all(|id| !text.contains(&format!("\"{id}\""))));

    let nothing = &results[1]["result"];
    assert_eq!(nothing["found"], 0);
    assert!(
        nothing["note"]
            .as_str()
            .unwrap()
            .starts_with("Nothing in the description matches the run's browsing vocabulary"),
        "{nothing}"
    );
}
