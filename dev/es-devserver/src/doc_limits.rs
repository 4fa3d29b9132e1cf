//! Per-document limits from the index settings, checked when a document is indexed:
//! `index.mapping.nested_objects.limit` (objects in `nested` fields, default 10,000),
//! `index.mapping.array_objects.limit` (objects that are array elements, counted across all
//! arrays of the document), `index.mapping.total_tokens_per_document.limit` and
//! `index.mapping.tokens_per_field.limit` (analyzed tokens of `text` fields; `-1`, the
//! default, is no limit). All are dynamic. A document over a limit is a
//! `document_parsing_exception` naming the setting.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{EsError, EsResult};
use crate::mapping::{resolve_field, FieldRef, Kind, Mapping};

/// The limits in force for an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocLimits {
    nested_objects: u64,
    array_objects: Option<u64>,
    total_tokens: Option<u64>,
    tokens_per_field: Option<u64>,
}

impl Default for DocLimits {
    fn default() -> Self {
        DocLimits {
            nested_objects: 10_000,
            array_objects: None,
            total_tokens: None,
            tokens_per_field: None,
        }
    }
}

const NESTED: &str = "index.mapping.nested_objects.limit";
const ARRAY: &str = "index.mapping.array_objects.limit";
const TOTAL_TOKENS: &str = "index.mapping.total_tokens_per_document.limit";
const FIELD_TOKENS: &str = "index.mapping.tokens_per_field.limit";

fn int_setting(flat: &BTreeMap<String, Value>, key: &str) -> EsResult<Option<i64>> {
    let Some(v) = flat.get(key) else {
        return Ok(None);
    };
    let text = match v {
        Value::String(s) => s.trim().to_string(),
        other => other.to_string(),
    };
    text.parse::<i64>().map(Some).map_err(|_| {
        EsError::illegal_argument(format!(
            "Failed to parse value [{text}] for setting [{key}]"
        ))
    })
}

/// A token limit: `-1` (no limit) or a positive number.
fn token_limit(flat: &BTreeMap<String, Value>, key: &str) -> EsResult<Option<u64>> {
    match int_setting(flat, key)? {
        None | Some(-1) => Ok(None),
        Some(n) if n > 0 => Ok(Some(n.unsigned_abs())),
        Some(n) => Err(EsError::illegal_argument(format!(
            "Failed to parse value [{n}] for setting [{key}] must be -1 (no limit) or a positive number"
        ))),
    }
}

impl DocLimits {
    /// Reads and validates the limits from flat index settings.
    pub fn from_settings(flat: &BTreeMap<String, Value>) -> EsResult<DocLimits> {
        let nested_objects = match int_setting(flat, NESTED)? {
            None => 10_000,
            Some(n) if n >= 0 => n.unsigned_abs(),
            Some(n) => {
                return Err(EsError::illegal_argument(format!(
                    "Failed to parse value [{n}] for setting [{NESTED}] must be >= 0"
                )))
            }
        };
        let array_objects = match int_setting(flat, ARRAY)? {
            None => None,
            Some(n) if n >= 1 => Some(n.unsigned_abs()),
            Some(n) => {
                return Err(EsError::illegal_argument(format!(
                    "Failed to parse value [{n}] for setting [{ARRAY}] must be >= 1"
                )))
            }
        };
        Ok(DocLimits {
            nested_objects,
            array_objects,
            total_tokens: token_limit(flat, TOTAL_TOKENS)?,
            tokens_per_field: token_limit(flat, FIELD_TOKENS)?,
        })
    }

    /// Checks a document (already validated against the mapping) against the limits.
    pub fn check(&self, mapping: &Mapping, source: &[u8]) -> EsResult<()> {
        // Parsing the source again costs only when a limit could be reached: the default
        // nested limit matters only for mappings with nested fields.
        let needs_walk = self.array_objects.is_some()
            || self.total_tokens.is_some()
            || self.tokens_per_field.is_some()
            || has_nested(&mapping.properties);
        if !needs_walk {
            return Ok(());
        }
        let Ok(doc) = serde_json::from_slice::<Value>(source) else {
            return Ok(());
        };
        let mut c = Counts::default();
        count(mapping, &doc, "", false, &mut c);
        let over = |what: String, limit: u64, key: &str| {
            Err(EsError::new(
                400,
                "document_parsing_exception",
                format!(
                    "{what} has exceeded the allowed limit of [{limit}]. This limit can be set by changing the [{key}] index level setting."
                ),
            ))
        };
        if c.nested > self.nested_objects {
            return over(
                "The number of nested documents".into(),
                self.nested_objects,
                NESTED,
            );
        }
        if let Some(limit) = self.array_objects.filter(|l| c.array_objects > *l) {
            return over(
                "The total number of objects across all arrays in the document".into(),
                limit,
                ARRAY,
            );
        }
        if let Some(limit) = self.tokens_per_field {
            if let Some((field, _)) = c.field_tokens.iter().find(|(_, n)| **n > limit) {
                return over(
                    format!("The number of tokens in field [{field}]"),
                    limit,
                    FIELD_TOKENS,
                );
            }
        }
        if let Some(limit) = self.total_tokens {
            let total: u64 = c.field_tokens.values().sum();
            if total > limit {
                return over(
                    "The number of tokens in the document".into(),
                    limit,
                    TOTAL_TOKENS,
                );
            }
        }
        Ok(())
    }
}

fn has_nested(props: &BTreeMap<String, crate::mapping::Field>) -> bool {
    props
        .values()
        .any(|f| f.kind == Kind::Nested || has_nested(&f.properties))
}

#[derive(Default)]
struct Counts {
    nested: u64,
    array_objects: u64,
    field_tokens: BTreeMap<String, u64>,
}

/// Walks a value at `path`; `in_array` says whether it is an array element.
fn count(mapping: &Mapping, v: &Value, path: &str, in_array: bool, c: &mut Counts) {
    match v {
        Value::Object(m) => {
            if in_array {
                c.array_objects += 1;
            }
            if !path.is_empty() && kind_at(mapping, path) == Some(Kind::Nested) {
                c.nested += 1;
            }
            for (k, child) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                count(mapping, child, &p, false, c);
            }
        }
        Value::Array(a) => {
            for item in a {
                count(mapping, item, path, true, c);
            }
        }
        Value::String(s) if kind_at(mapping, path) == Some(Kind::Text) => {
            let n = crate::query::tokenize(s).len() as u64;
            *c.field_tokens.entry(path.to_string()).or_default() += n;
        }
        _ => {}
    }
}

fn kind_at(mapping: &Mapping, path: &str) -> Option<Kind> {
    match resolve_field(mapping, path) {
        FieldRef::Field { field, .. } => Some(field.kind),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flat(v: Value) -> BTreeMap<String, Value> {
        crate::settings::flatten(&v).unwrap_or_default()
    }

    #[test]
    fn settings_are_validated() {
        assert!(
            DocLimits::from_settings(&flat(json!({"index.mapping.array_objects.limit": 0})))
                .is_err()
        );
        assert!(DocLimits::from_settings(&flat(
            json!({"index.mapping.tokens_per_field.limit": 0})
        ))
        .is_err());
        assert!(DocLimits::from_settings(&flat(
            json!({"index.mapping.tokens_per_field.limit": -1})
        ))
        .is_ok());
        assert!(DocLimits::from_settings(&flat(
            json!({"index.mapping.nested_objects.limit": "x"})
        ))
        .is_err());
    }

    #[test]
    fn counts() {
        let m = crate::mapping::parse_mapping(&json!({"properties": {
            "n": {"type": "nested"}, "t": {"type": "text"}, "u": {"type": "text"}
        }}))
        .unwrap();
        let limits = |v: Value| DocLimits::from_settings(&flat(v)).unwrap();
        let doc = br#"{"n":[{"a":1},{"a":2}],"t":"a b c","u":["d e"],"o":[{"x":1}]}"#;
        assert!(limits(json!({"index.mapping.nested_objects.limit": 2}))
            .check(&m, doc)
            .is_ok());
        assert!(limits(json!({"index.mapping.nested_objects.limit": 1}))
            .check(&m, doc)
            .is_err());
        assert!(limits(json!({"index.mapping.array_objects.limit": 3}))
            .check(&m, doc)
            .is_ok());
        assert!(limits(json!({"index.mapping.array_objects.limit": 2}))
            .check(&m, doc)
            .is_err());
        assert!(
            limits(json!({"index.mapping.total_tokens_per_document.limit": 5}))
                .check(&m, doc)
                .is_ok()
        );
        assert!(
            limits(json!({"index.mapping.total_tokens_per_document.limit": 4}))
                .check(&m, doc)
                .is_err()
        );
        assert!(limits(json!({"index.mapping.tokens_per_field.limit": 3}))
            .check(&m, doc)
            .is_ok());
        assert!(limits(json!({"index.mapping.tokens_per_field.limit": 2}))
            .check(&m, doc)
            .is_err());
    }
}
