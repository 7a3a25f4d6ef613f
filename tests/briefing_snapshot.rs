//! What people read, snapshotted: the Iris briefing's segment names, descriptions,
//! caveats and validity figures (rounded to 6 decimals so that a last-bit difference in
//! floating point does not churn the snapshot). Review changes with `cargo insta review`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail the test loudly"
)]

use std::path::Path;

use segscope::analysis::progress::NoProgress;
use segscope::domain::{MapMethod, Scaling};
use segscope::ingest::FeatureTableSpec;
use segscope::pipeline::{SegmentRequest, run_segment};
use segscope::settings::{KSetting, Settings};
use serde_json::Value;

fn rounded(value: Value) -> Value {
    match value {
        Value::Number(n) if n.is_f64() => {
            let v = n.as_f64().expect("f64");
            serde_json::json!((v * 1e6).round() / 1e6)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(rounded).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, rounded(v))).collect())
        }
        other => other,
    }
}

#[test]
fn iris_briefing_reads_as_reviewed() {
    let out = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::load_with_env(None, Vec::new()).expect("defaults");
    settings.segment.k = KSetting::Fixed(3);
    settings.segment.scale = Scaling::None;
    settings.segment.maps = vec![MapMethod::Pca];
    let request = SegmentRequest {
        features: Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/iris.csv"),
        table: FeatureTableSpec {
            id_column: "id".into(),
            label_column: Some("species".into()),
            delimiter: b',',
        },
        settings,
        out_dir: out.path().to_path_buf(),
    };
    let run = run_segment(&request, &NoProgress).expect("run");
    let doc = serde_json::to_value(&run.document).expect("json");
    let briefing = serde_json::json!({
        "segments": doc["segments"],
        "caveats": doc["caveats"],
        "quality": doc["quality"],
        "pca": doc["maps"]["pca"],
    });
    // Sorted keys: serde_json's map order depends on its `preserve_order` feature, which a
    // dependency (qdrant-edge) switches on; the reviewed text must not.
    insta::with_settings!({ sort_maps => true }, {
        insta::assert_json_snapshot!("iris_briefing", rounded(briefing));
    });
}
