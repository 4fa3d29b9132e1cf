//! JSON helpers: error descriptions, `filter_path`, value lookups and fast writers.

use serde_json::{Map, Value};

use crate::error::EsError;
use crate::names::glob_match;

/// A serde_json error message without its " at line X column Y" suffix.
pub fn describe_serde_error(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(p) => s.get(..p).unwrap_or(&s).to_string(),
        None => s,
    }
}

/// Parses a request body as JSON, with Elasticsearch's error for malformed content.
pub fn parse_body(body: &[u8]) -> Result<Value, EsError> {
    serde_json::from_slice(body).map_err(|e| body_parse_error(&e))
}

/// The error Elasticsearch returns for a request body that is not valid JSON.
pub fn body_parse_error(e: &serde_json::Error) -> EsError {
    let (line, col) = (e.line().max(1), e.column().max(1));
    let msg = describe_serde_error(e);
    if e.is_eof() {
        return EsError::parse(format!("[{line}:{col}] Unexpected end-of-input: {msg}")).caused_by(
            EsError::new(
                400,
                "json_e_o_f_exception",
                format!("Unexpected end-of-input: {msg}"),
            ),
        );
    }
    EsError::x_content_parse(format!("[{line}:{col}] {msg}")).caused_by(EsError::new(
        400,
        "json_parse_exception",
        msg,
    ))
}

/// The JSON token name Elasticsearch prints for a value (`START_OBJECT`, `VALUE_STRING`, ...).
pub fn token_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "VALUE_NULL",
        Value::Bool(true) => "VALUE_TRUE",
        Value::Bool(false) => "VALUE_FALSE",
        Value::Number(n) if n.is_f64() => "VALUE_NUMBER_FLOAT",
        Value::Number(_) => "VALUE_NUMBER_INT",
        Value::String(_) => "VALUE_STRING",
        Value::Array(_) => "START_ARRAY",
        Value::Object(_) => "START_OBJECT",
    }
}

/// Looks up a dotted path in a source document, collecting every value found (arrays are
/// flattened, objects inside arrays are searched too). Keys containing dots are matched
/// as well (`{"a.b": 1}` has a value at `a.b`).
pub fn values_at<'a>(v: &'a Value, path: &str, out: &mut Vec<&'a Value>) {
    fn rec<'a>(v: &'a Value, parts: &[&str], out: &mut Vec<&'a Value>, depth: usize) {
        if depth > 200 {
            return;
        }
        match v {
            Value::Array(items) => {
                for item in items {
                    rec(item, parts, out, depth + 1);
                }
            }
            Value::Object(m) => {
                if parts.is_empty() {
                    out.push(v);
                    return;
                }
                // Try every split: "a.b.c" may be stored as {"a":{"b.c":..}} or {"a.b":{"c":..}}.
                for i in 1..=parts.len() {
                    let key = parts.get(..i).unwrap_or_default().join(".");
                    if let Some(child) = m.get(&key) {
                        rec(child, parts.get(i..).unwrap_or_default(), out, depth + 1);
                    }
                }
            }
            other => {
                if parts.is_empty() {
                    out.push(other);
                }
            }
        }
    }
    let parts: Vec<&str> = path.split('.').collect();
    rec(v, &parts, out, 0);
}

// ---------------------------------------------------------------------------------------
// filter_path

/// Applies Elasticsearch's `filter_path` (comma-separated, `*` and `**` wildcards,
/// `-` prefixed exclusions) to a response body.
pub fn filter_path(v: &Value, spec: &str) -> Value {
    let mut includes = Vec::new();
    let mut excludes = Vec::new();
    for p in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (list, p) = match p.strip_prefix('-') {
            Some(rest) => (&mut excludes, rest),
            None => (&mut includes, p),
        };
        list.push(p.split('.').map(str::to_string).collect::<Vec<_>>());
    }
    let mut out = v.clone();
    if !includes.is_empty() {
        out = include_paths(v, &includes).unwrap_or_else(|| Value::Object(Map::new()));
    }
    for ex in &excludes {
        exclude_path(&mut out, ex);
    }
    out
}

fn segment_matches(pattern: &str, key: &str) -> bool {
    pattern == "**" || glob_match(pattern, key)
}

fn include_paths(v: &Value, patterns: &[Vec<String>]) -> Option<Value> {
    if patterns.iter().any(|p| p.is_empty()) {
        return Some(v.clone());
    }
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, child) in m {
                let mut next: Vec<Vec<String>> = Vec::new();
                for p in patterns {
                    let Some(first) = p.first() else { continue };
                    if first == "**" {
                        // `**` matches zero or more levels.
                        next.push(p.get(1..).unwrap_or_default().to_vec());
                        next.push(p.clone());
                        if p.get(1).is_some_and(|s| segment_matches(s, k)) {
                            next.push(p.get(2..).unwrap_or_default().to_vec());
                        }
                    } else if segment_matches(first, k) {
                        next.push(p.get(1..).unwrap_or_default().to_vec());
                    }
                }
                if next.is_empty() {
                    continue;
                }
                if let Some(filtered) = include_paths(child, &next) {
                    out.insert(k.clone(), filtered);
                }
            }
            if out.is_empty() {
                None
            } else {
                Some(Value::Object(out))
            }
        }
        Value::Array(items) => {
            let filtered: Vec<Value> = items
                .iter()
                .filter_map(|i| include_paths(i, patterns))
                .collect();
            if filtered.is_empty() {
                None
            } else {
                Some(Value::Array(filtered))
            }
        }
        _ => None,
    }
}

fn exclude_path(v: &mut Value, pattern: &[String]) {
    let Some((first, rest)) = pattern.split_first() else {
        return;
    };
    match v {
        Value::Object(m) => {
            let keys: Vec<String> = m
                .keys()
                .filter(|k| segment_matches(first, k))
                .cloned()
                .collect();
            for k in keys {
                if rest.is_empty() {
                    m.shift_remove(&k);
                } else if let Some(child) = m.get_mut(&k) {
                    exclude_path(child, rest);
                }
            }
        }
        Value::Array(items) => {
            for i in items {
                exclude_path(i, pattern);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// Writers

/// Appends a JSON string literal.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    // serde_json's string escaping never fails on a Vec.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Appends an integer.
pub fn write_i64(out: &mut Vec<u8>, n: i64) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(n).as_bytes());
}

/// Appends a `"key":` prefix.
pub fn write_key(out: &mut Vec<u8>, k: &str) {
    write_str(out, k);
    out.push(b':');
}

// ---------------------------------------------------------------------------------------
// Ordered output with raw (unparsed) fragments

/// A response value that may embed raw JSON (stored `_source`) verbatim.
#[derive(Debug)]
pub enum Out {
    /// A regular value.
    V(Value),
    /// Raw JSON, written as is.
    Raw(Box<serde_json::value::RawValue>),
    /// A nested ordered object.
    Obj(Obj),
    /// An array of ordered objects.
    Objs(Vec<Obj>),
}

/// An object with ordered keys whose values may be raw JSON.
#[derive(Debug, Default)]
pub struct Obj(pub Vec<(&'static str, Out)>);

impl Obj {
    /// Adds a field.
    pub fn push(&mut self, k: &'static str, v: Out) {
        self.0.push((k, v));
    }

    /// Adds a regular value.
    pub fn val(&mut self, k: &'static str, v: impl Into<Value>) {
        self.0.push((k, Out::V(v.into())));
    }

    /// Serialized bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl serde::Serialize for Out {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Out::V(v) => v.serialize(s),
            Out::Raw(r) => r.serialize(s),
            Out::Obj(o) => o.serialize(s),
            Out::Objs(os) => os.serialize(s),
        }
    }
}

impl serde::Serialize for Obj {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filter_paths() {
        let v = json!({"took": 1, "items": [{"index": {"_id": "1", "status": 201}}, {"index": {"_id": "2", "status": 409, "error": {"type": "x"}}}]});
        assert_eq!(filter_path(&v, "took"), json!({"took": 1}));
        assert_eq!(
            filter_path(&v, "items.*.error"),
            json!({"items": [{"index": {"error": {"type": "x"}}}]})
        );
        assert_eq!(
            filter_path(&v, "**.status").pointer("/items/0/index/status"),
            Some(&json!(201))
        );
        assert_eq!(filter_path(&v, "-items"), json!({"took": 1}));
    }

    #[test]
    fn lookup() {
        let v = json!({"a": {"b": [1, 2]}, "c.d": "x", "e": [{"f": 1}, {"f": 2}]});
        let mut out = Vec::new();
        values_at(&v, "a.b", &mut out);
        assert_eq!(out.len(), 2);
        out.clear();
        values_at(&v, "c.d", &mut out);
        assert_eq!(out, vec![&json!("x")]);
        out.clear();
        values_at(&v, "e.f", &mut out);
        assert_eq!(out.len(), 2);
    }
}
