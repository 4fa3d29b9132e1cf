//! The Avro specification's Parsing Canonical Form and its CRC-64-AVRO fingerprint,
//! written from the specification ("Schema Resolution" / "Parsing Canonical Form for
//! Schemas") rather than taken from apache-avro.
//!
//! Why our own: apache-avro 0.21 strips `logicalType` from `{"type":"long",
//! "logicalType":"timestamp-micros"}` but leaves `{"type":"long"}` instead of reducing it
//! to `"long"` ([PRIMITIVES]), so its fingerprint of `schemas/change_event.avsc`
//! (`0xd128c8f742a3d0d0`) differs from the one every other implementation computes
//! (`0x41e764096a33c7c3`: fastavro, Java's `SchemaNormalization`). Single-object records
//! from any other Avro library carry the spec's fingerprint.
//!
//! The transformations, applied to the schema's JSON:
//! - [PRIMITIVES] `{"type":"int"}` (after stripping) becomes `"int"`;
//! - [FULLNAMES] names become full names; `namespace` attributes are dropped;
//! - [STRIP] only `type`, `name`, `fields`, `symbols`, `items`, `values`, `size` are kept;
//! - [ORDER] in that order: `name`, `type`, `fields`, `symbols`, `items`, `values`, `size`;
//! - [STRINGS] string literals are written without escapes beyond JSON's mandatory ones;
//! - [INTEGERS] `size` is written as a plain integer;
//! - [WHITESPACE] no whitespace outside strings.

use serde_json::{Map, Value};

/// Why a schema has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// The text is not JSON.
    #[error("schema is not JSON: {0}")]
    Json(String),
    /// The JSON is not an Avro schema.
    #[error("not an Avro schema: {0}")]
    Schema(String),
}

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// The Parsing Canonical Form of the schema in `schema_json`.
pub fn parsing_canonical_form(schema_json: &str) -> Result<String, CanonicalError> {
    let v: Value =
        serde_json::from_str(schema_json).map_err(|e| CanonicalError::Json(e.to_string()))?;
    let mut out = String::new();
    write_schema(&v, "", &mut out)?;
    Ok(out)
}

/// CRC-64-AVRO (the spec's Rabin fingerprint) of `bytes`.
pub fn crc64_avro(bytes: &[u8]) -> u64 {
    const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
    static TABLE: std::sync::OnceLock<[u64; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u64; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut fp = i as u64;
            for _ in 0..8 {
                fp = (fp >> 1) ^ (EMPTY & (0u64.wrapping_sub(fp & 1)));
            }
            *slot = fp;
        }
        t
    });
    let mut fp = EMPTY;
    for &b in bytes {
        // Truncating to the low byte is the algorithm's `& 0xff`.
        fp = (fp >> 8) ^ entry(table, (fp as u8) ^ b);
    }
    fp
}

/// The table's entry for a byte.
#[allow(clippy::indexing_slicing)] // a u8 always indexes a 256-entry table
fn entry(table: &[u64; 256], byte: u8) -> u64 {
    table[usize::from(byte)]
}

/// The spec fingerprint of a schema: CRC-64-AVRO of its Parsing Canonical Form. This is
/// the value the single-object header stores, little-endian.
pub fn spec_fingerprint(schema_json: &str) -> Result<u64, CanonicalError> {
    Ok(crc64_avro(parsing_canonical_form(schema_json)?.as_bytes()))
}

fn schema_err(msg: impl Into<String>) -> CanonicalError {
    CanonicalError::Schema(msg.into())
}

/// The full name of `name` defined or referenced in `namespace`.
fn full_name(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}.{name}")
    }
}

fn write_str(s: &str, out: &mut String) {
    // serde_json escapes only `"`, `\` and control characters and writes everything else
    // as UTF-8, which is what [STRINGS] asks for.
    out.push_str(&Value::String(s.to_owned()).to_string());
}

fn write_schema(v: &Value, namespace: &str, out: &mut String) -> Result<(), CanonicalError> {
    match v {
        Value::String(name) => {
            if PRIMITIVES.contains(&name.as_str()) {
                write_str(name, out);
            } else {
                write_str(&full_name(name, namespace), out);
            }
            Ok(())
        }
        Value::Array(branches) => {
            out.push('[');
            for (i, b) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_schema(b, namespace, out)?;
            }
            out.push(']');
            Ok(())
        }
        Value::Object(obj) => write_object(obj, namespace, out),
        other => Err(schema_err(format!("unexpected JSON value {other}"))),
    }
}

fn write_object(
    obj: &Map<String, Value>,
    namespace: &str,
    out: &mut String,
) -> Result<(), CanonicalError> {
    let ty = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        // `{"type": {...}}` and `{"type": [...]}` wrap another schema.
        Some(inner @ (Value::Object(_) | Value::Array(_))) => {
            return write_schema(inner, namespace, out)
        }
        _ => return Err(schema_err("object without a string `type`")),
    };
    if PRIMITIVES.contains(&ty) {
        write_str(ty, out);
        return Ok(());
    }
    match ty {
        "record" | "error" | "enum" | "fixed" => {
            let name = obj
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| schema_err(format!("{ty} without a `name`")))?;
            let own_ns = obj
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or(namespace);
            let full = full_name(name, own_ns);
            // Names nested inside take the namespace of the full name.
            let inner_ns = full.rsplit_once('.').map_or("", |(ns, _)| ns);
            out.push_str("{\"name\":");
            write_str(&full, out);
            out.push_str(",\"type\":");
            // An `error` is a record for parsing purposes: Java's SchemaNormalization and
            // fastavro both write `"record"`, so the fingerprint must too.
            write_str(if ty == "error" { "record" } else { ty }, out);
            match ty {
                "enum" => {
                    let symbols = obj
                        .get("symbols")
                        .and_then(Value::as_array)
                        .ok_or_else(|| schema_err("enum without `symbols`"))?;
                    out.push_str(",\"symbols\":[");
                    for (i, s) in symbols.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let s = s
                            .as_str()
                            .ok_or_else(|| schema_err("enum symbol is not a string"))?;
                        write_str(s, out);
                    }
                    out.push(']');
                }
                "fixed" => {
                    let size = match obj.get("size") {
                        Some(Value::Number(n)) => n.as_u64(),
                        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
                        _ => None,
                    }
                    .ok_or_else(|| schema_err("fixed without an integer `size`"))?;
                    out.push_str(&format!(",\"size\":{size}"));
                }
                _ => {
                    let fields = obj
                        .get("fields")
                        .and_then(Value::as_array)
                        .ok_or_else(|| schema_err("record without `fields`"))?;
                    out.push_str(",\"fields\":[");
                    for (i, f) in fields.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let fname = f
                            .get("name")
                            .and_then(Value::as_str)
                            .ok_or_else(|| schema_err("record field without a `name`"))?;
                        let ftype = f
                            .get("type")
                            .ok_or_else(|| schema_err(format!("field {fname} without a `type`")))?;
                        out.push_str("{\"name\":");
                        write_str(fname, out);
                        out.push_str(",\"type\":");
                        write_schema(ftype, inner_ns, out)?;
                        out.push('}');
                    }
                    out.push(']');
                }
            }
            out.push('}');
            Ok(())
        }
        "array" => {
            let items = obj
                .get("items")
                .ok_or_else(|| schema_err("array without `items`"))?;
            out.push_str("{\"type\":\"array\",\"items\":");
            write_schema(items, namespace, out)?;
            out.push('}');
            Ok(())
        }
        "map" => {
            let values = obj
                .get("values")
                .ok_or_else(|| schema_err("map without `values`"))?;
            out.push_str("{\"type\":\"map\",\"values\":");
            write_schema(values, namespace, out)?;
            out.push('}');
            Ok(())
        }
        // A reference to a named type written as `{"type": "Name"}`.
        name => {
            write_str(&full_name(name, namespace), out);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_avro_matches_the_specs_reference_values() {
        // The fingerprint of the canonical form `"null"`, as given by the Avro test suite
        // (share/test/data/schema-tests.txt: 7195948357588979594 for "null").
        assert_eq!(crc64_avro(br#""null""#), 7_195_948_357_588_979_594);
        assert_eq!(
            spec_fingerprint(r#"{"type":"null"}"#).unwrap(),
            7_195_948_357_588_979_594
        );
    }

    #[test]
    fn logical_types_reduce_to_their_primitive() {
        assert_eq!(
            parsing_canonical_form(r#"{"type":"long","logicalType":"timestamp-micros"}"#).unwrap(),
            r#""long""#
        );
    }

    #[test]
    fn names_become_full_and_attributes_are_ordered_and_stripped() {
        let pcf = parsing_canonical_form(
            r#"{"doc":"d","fields":[{"type":{"symbols":["A","B"],"type":"enum","name":"E"},"name":"e","default":"A"},
                {"name":"r","type":"E"},{"name":"f","type":{"type":"fixed","size":"016","name":"x.F"}}],
                "namespace":"ns","type":"record","name":"R","aliases":["Q"]}"#,
        )
        .unwrap();
        assert_eq!(
            pcf,
            r#"{"name":"ns.R","type":"record","fields":[{"name":"e","type":{"name":"ns.E","type":"enum","symbols":["A","B"]}},{"name":"r","type":"ns.E"},{"name":"f","type":{"name":"x.F","type":"fixed","size":16}}]}"#
        );
    }

    #[test]
    fn bad_schemas_are_errors_not_panics() {
        for bad in [
            "",
            "3",
            r#"{"type":"record"}"#,
            r#"{"type":"enum","name":"E"}"#,
            "{\"a\":",
        ] {
            assert!(parsing_canonical_form(bad).is_err(), "{bad}");
        }
    }
}
