//! The checked-in schema is the contract of docs/event-contract.md: these are its field names, types and
//! defaults, and the released copy in history/ must never drift from what was released.

use std::path::{Path, PathBuf};

fn schemas() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas")
}

fn field<'a>(schema: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    schema["fields"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["name"] == name))
        .unwrap_or_else(|| panic!("field {name} missing from change_event.avsc"))
}

#[test]
fn current_schema_has_the_contract_fields_in_order() {
    let text = std::fs::read_to_string(schemas().join("change_event.avsc")).expect("schema file");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("schema is JSON");
    let names: Vec<&str> = schema["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "event_id",
            "entity_type",
            "entity_id",
            "op",
            "version",
            "occurred_at",
            "source",
            "document",
            "invalidate",
            "attributes"
        ]
    );
    assert_eq!(
        field(&schema, "op")["type"]["symbols"],
        serde_json::json!(["UPSERT", "DELETE"])
    );
    assert_eq!(field(&schema, "version")["type"], "long");
    assert_eq!(
        field(&schema, "occurred_at")["type"]["logicalType"],
        "timestamp-micros"
    );
    assert_eq!(
        field(&schema, "document")["type"],
        serde_json::json!(["null", "string"])
    );
    assert_eq!(
        field(&schema, "invalidate")["default"],
        serde_json::json!([])
    );
    assert_eq!(
        field(&schema, "attributes")["default"],
        serde_json::json!({})
    );
    for f in schema["fields"].as_array().expect("fields") {
        assert!(
            f["doc"].is_string(),
            "field {} has no doc string",
            f["name"]
        );
    }
}

#[test]
fn every_history_file_parses_and_the_newest_equals_the_current_schema() {
    let mut files: Vec<_> = std::fs::read_dir(schemas().join("history"))
        .expect("schemas/history")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "avsc"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no released schema in schemas/history");
    for f in &files {
        let text = std::fs::read_to_string(f).expect("history file");
        let _: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{f:?}: {e}"));
    }
    let newest = std::fs::read_to_string(files.last().expect("one file")).expect("newest");
    let current = std::fs::read_to_string(schemas().join("change_event.avsc")).expect("current");
    let parse = |t: &str| serde_json::from_str::<serde_json::Value>(t).expect("json");
    assert_eq!(
        parse(&newest),
        parse(&current),
        "change_event.avsc differs from the newest release: release it as a new history file"
    );
}
