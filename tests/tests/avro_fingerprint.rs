//! Syncline's Parsing Canonical Form and CRC-64-AVRO fingerprint agree with an independent
//! implementation (fastavro, run in .syncline/py-venv through tests/python/fingerprint.py):
//! for the change event schema and every released one, byte for byte in the single-object
//! header, and for schemas that exercise the spec's harder rules (namespaces, nested named
//! types, fixed, logical types, attributes that must be stripped).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "support/python.rs"]
mod python;

use serde_json::{json, Value};
use syncline_event::canonical::parsing_canonical_form;
use syncline_event::{spec_fingerprint, ChangeEvent, DecodeError, Limits, Op, SchemaRegistry};

/// The v1 fingerprint every Avro library computes (docs/publishing.md shows it too).
const V1: u64 = 0x41e7_6409_6a33_c7c3;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn fp_text(fp: u64) -> String {
    format!("{fp:#018x}")
}

/// fastavro's view of each schema text, in order.
fn fastavro_describe(schemas: &[String]) -> Vec<Value> {
    let input = serde_json::to_vec(schemas).expect("json");
    let out = python::run("fingerprint.py", &["--stdin"], &input);
    let lines = python::json_lines(&out);
    assert_eq!(lines.len(), schemas.len(), "one answer per schema");
    lines
}

fn schema_files() -> Vec<std::path::PathBuf> {
    let dir = python::root().join("schemas");
    let mut files = vec![dir.join("change_event.avsc")];
    let mut history: Vec<_> = std::fs::read_dir(dir.join("history"))
        .expect("schemas/history")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "avsc"))
        .collect();
    history.sort();
    assert!(!history.is_empty(), "schemas/history has no release");
    files.extend(history);
    files
}

#[test]
fn every_released_schema_has_fastavros_canonical_form_and_fingerprint() {
    let files = schema_files();
    let args: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let answers = python::json_lines(&python::run("fingerprint.py", &arg_refs, b""));
    assert_eq!(answers.len(), files.len());
    let registry = SchemaRegistry::builtin();

    for (path, theirs) in files.iter().zip(&answers) {
        let text = std::fs::read_to_string(path).expect("schema file");
        let ours_pcf = parsing_canonical_form(&text).expect("canonical form");
        assert_eq!(
            theirs["canonical_form"].as_str(),
            Some(ours_pcf.as_str()),
            "{}: canonical forms differ",
            path.display()
        );
        let ours_fp = spec_fingerprint(&text).expect("fingerprint");
        assert_eq!(
            theirs["fingerprint"].as_str(),
            Some(fp_text(ours_fp).as_str()),
            "{}: fingerprints differ",
            path.display()
        );
        let header = [&[0xC3, 0x01][..], &ours_fp.to_le_bytes()].concat();
        assert_eq!(theirs["header_hex"].as_str(), Some(hex(&header).as_str()));

        // The registry knows records stamped with this fingerprint: a header with no body
        // fails as a malformed body, not as an unknown schema.
        match syncline_event::decode(&header, &Limits::default()) {
            Err(DecodeError::Malformed(_)) => {}
            other => panic!("{}: header alone decoded as {other:?}", path.display()),
        }
    }

    // The current schema: what Syncline writes is what fastavro computes.
    assert_eq!(answers[0]["fingerprint"], fp_text(V1));
    assert_eq!(registry.reader_fingerprint(), V1);
    let event = ChangeEvent::new("product", "p-1", Op::Delete, 3, "test", None);
    let bytes = syncline_event::encode(&event, &Limits::default()).expect("encode");
    assert_eq!(
        bytes[..10],
        [0xC3, 0x01, 0xC3, 0xC7, 0x33, 0x6A, 0x09, 0x64, 0xE7, 0x41],
        "magic + fingerprint little-endian"
    );
    assert_eq!(answers[0]["header_hex"], hex(&bytes[..10]));
}

/// Schemas that exercise the canonical form's rules, each with the form both
/// implementations must produce (written out by hand from the spec, so a shared mistake is
/// caught too).
fn tricky_schemas() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "logical type on a primitive reduces to the primitive",
            json!({"type": "long", "logicalType": "timestamp-millis"}),
            r#""long""#,
        ),
        (
            "uuid string with extra properties",
            json!({"type": "string", "logicalType": "uuid", "x-owner": "team"}),
            r#""string""#,
        ),
        (
            "decimal on bytes",
            json!({"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}),
            r#""bytes""#,
        ),
        (
            "fixed with namespace, decimal, aliases and doc",
            json!({"type": "fixed", "name": "Money", "namespace": "com.acme", "size": 16,
                   "logicalType": "decimal", "precision": 20, "aliases": ["Cash"],
                   "doc": "amount in cents"}),
            r#"{"name":"com.acme.Money","type":"fixed","size":16}"#,
        ),
        (
            "top-level union of nested complex types",
            json!(["null", "int", {"type": "array",
                   "items": {"type": "map", "values": {"type": "double"}}}]),
            r#"["null","int",{"type":"array","items":{"type":"map","values":"double"}}]"#,
        ),
        (
            "namespaces: inherited, overridden, dotted names, references short and full",
            json!({
                "type": "record", "name": "Order", "namespace": "com.acme.shop",
                "doc": "an order", "aliases": ["Purchase"],
                "fields": [
                    {"name": "id", "type": {"type": "string", "logicalType": "uuid"},
                     "doc": "id", "order": "descending"},
                    {"name": "status", "type": {"type": "enum", "name": "Status",
                        "symbols": ["NEW", "PAID"], "default": "NEW", "doc": "state"},
                     "default": "NEW"},
                    {"name": "customer", "type": {
                        "type": "record", "name": "Customer", "namespace": "com.acme.crm",
                        "fields": [
                            {"name": "tier", "type": {"type": "enum", "name": "Tier",
                                                      "symbols": ["GOLD", "BASIC"]}},
                            {"name": "tier2", "type": "Tier"},
                            {"name": "since", "type": {"type": "int", "logicalType": "date"}}
                        ]}},
                    {"name": "lines", "type": {"type": "array", "items": {
                        "type": "record", "name": "Line",
                        "fields": [
                            {"name": "sku", "type": "string", "aliases": ["code"]},
                            {"name": "price", "type": {"type": "fixed", "name": "x.y.Price",
                                                       "size": 8}},
                            {"name": "other", "type": ["null", "x.y.Price"], "default": null}
                        ]}}, "default": []},
                    {"name": "again", "type": "Status"},
                    {"name": "who", "type": ["null", "com.acme.crm.Customer"]},
                    {"name": "lines_by_id", "type": {"type": "map", "values": "Line"}},
                    {"name": "at", "type": {"type": "long",
                                            "logicalType": "local-timestamp-micros"}}
                ]
            }),
            concat!(
                r#"{"name":"com.acme.shop.Order","type":"record","fields":["#,
                r#"{"name":"id","type":"string"},"#,
                r#"{"name":"status","type":{"name":"com.acme.shop.Status","type":"enum","symbols":["NEW","PAID"]}},"#,
                r#"{"name":"customer","type":{"name":"com.acme.crm.Customer","type":"record","fields":["#,
                r#"{"name":"tier","type":{"name":"com.acme.crm.Tier","type":"enum","symbols":["GOLD","BASIC"]}},"#,
                r#"{"name":"tier2","type":"com.acme.crm.Tier"},"#,
                r#"{"name":"since","type":"int"}]}},"#,
                r#"{"name":"lines","type":{"type":"array","items":{"name":"com.acme.shop.Line","type":"record","fields":["#,
                r#"{"name":"sku","type":"string"},"#,
                r#"{"name":"price","type":{"name":"x.y.Price","type":"fixed","size":8}},"#,
                r#"{"name":"other","type":["null","x.y.Price"]}]}}},"#,
                r#"{"name":"again","type":"com.acme.shop.Status"},"#,
                r#"{"name":"who","type":["null","com.acme.crm.Customer"]},"#,
                r#"{"name":"lines_by_id","type":{"type":"map","values":"com.acme.shop.Line"}},"#,
                r#"{"name":"at","type":"long"}]}"#
            ),
        ),
        (
            "a dotted name wins over the namespace attribute; an empty namespace is the null one",
            json!({"type": "record", "name": "a.b.R", "namespace": "ignored.ns",
            "fields": [
                {"name": "s", "type": {"type": "record", "name": "S", "fields": [
                    {"name": "e", "type": {"type": "enum", "name": "E",
                                           "namespace": "", "symbols": ["X"]}}
                ]}},
                {"name": "back", "type": "S"}
            ]}),
            concat!(
                r#"{"name":"a.b.R","type":"record","fields":["#,
                r#"{"name":"s","type":{"name":"a.b.S","type":"record","fields":["#,
                r#"{"name":"e","type":{"name":"E","type":"enum","symbols":["X"]}}]}},"#,
                r#"{"name":"back","type":"a.b.S"}]}"#
            ),
        ),
        (
            "duration fixed, fields named like keywords, non-ASCII doc",
            json!({"type": "record", "name": "Weird", "doc": "prix en \u{20ac}, d\u{e9}lai",
            "fields": [
                {"name": "type", "type": {"type": "fixed", "name": "duration",
                                          "size": 12, "logicalType": "duration"}},
                {"name": "name", "type": "duration"},
                {"name": "fields", "type": {"type": "array", "items": "Weird"},
                 "default": []}
            ]}),
            concat!(
                r#"{"name":"Weird","type":"record","fields":["#,
                r#"{"name":"type","type":{"name":"duration","type":"fixed","size":12}},"#,
                r#"{"name":"name","type":"duration"},"#,
                r#"{"name":"fields","type":{"type":"array","items":"Weird"}}]}"#
            ),
        ),
    ]
}

#[test]
fn tricky_schemas_have_the_same_canonical_form_in_both_implementations() {
    let cases = tricky_schemas();
    let texts: Vec<String> = cases.iter().map(|(_, s, _)| s.to_string()).collect();
    let answers = fastavro_describe(&texts);
    let mut problems = Vec::new();
    for ((what, _, expected), (text, theirs)) in cases.iter().zip(texts.iter().zip(&answers)) {
        let ours = parsing_canonical_form(text).map_err(|e| e.to_string());
        let Some(their_pcf) = theirs["canonical_form"].as_str() else {
            problems.push(format!("{what}: fastavro refused it: {}", theirs["error"]));
            continue;
        };
        if their_pcf != *expected {
            problems.push(format!(
                "{what}: fastavro gives\n  {their_pcf}\nexpected\n  {expected}"
            ));
        }
        match ours {
            Ok(pcf) if pcf == *expected => {
                let fp = spec_fingerprint(text).expect("fingerprint");
                if theirs["fingerprint"].as_str() != Some(fp_text(fp).as_str()) {
                    problems.push(format!(
                        "{what}: fingerprints {} (fastavro) vs {} (syncline)",
                        theirs["fingerprint"],
                        fp_text(fp)
                    ));
                }
            }
            other => problems.push(format!(
                "{what}: syncline gives\n  {other:?}\nexpected\n  {expected}"
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A record declared with `"type": "error"` is a record: Java's `SchemaNormalization` and
/// fastavro write `"type":"record"` in its canonical form, and so does `canonical.rs`
/// (it wrote `"error"` until this test found it).
#[test]
fn an_error_type_is_canonicalised_as_a_record() {
    let schema = json!({"type": "error", "name": "Oops", "namespace": "n",
                        "fields": [{"name": "m", "type": "string"}]})
    .to_string();
    let expected = r#"{"name":"n.Oops","type":"record","fields":[{"name":"m","type":"string"}]}"#;
    let theirs = &fastavro_describe(std::slice::from_ref(&schema))[0];
    assert_eq!(theirs["canonical_form"], expected);
    assert_eq!(
        parsing_canonical_form(&schema).expect("canonical form"),
        expected
    );
}
