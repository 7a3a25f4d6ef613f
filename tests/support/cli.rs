//! Driving the real `segscope` binary from integration tests: a command with no settings
//! leaking in from the developer's environment, and the checks every output file gets.

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

/// The `segscope` binary; settings come only from the defaults and the flags under test.
pub fn segscope() -> Command {
    let mut cmd = Command::cargo_bin("segscope").expect("binary");
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("SEGSCOPE__")) {
        cmd.env_remove(key);
    }
    cmd
}

/// A JSON file, parsed.
pub fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read json")).expect("parse json")
}

/// Fails the test with every violation when `doc` breaks `schemas/segments.schema.json`.
pub fn assert_matches_schema(doc: &Value) {
    let schema_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/segments.schema.json");
    let schema = read_json(&schema_path);
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "segments.json breaks its schema: {errors:#?}"
    );
}
