//! Index settings: normalization to flat `index.*` keys with string values (as Elasticsearch
//! stores them), the few settings the server acts on, and time / byte-size values.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::{EsError, EsResult};

/// Parses an Elasticsearch time value (`1s`, `500ms`, `2m`, `1h`, `1d`, `-1`, `0`).
/// Returns `None` for `-1` (disabled).
pub fn parse_time(s: &str, setting: &str) -> EsResult<Option<Duration>> {
    let t = s.trim();
    if t == "-1" {
        return Ok(None);
    }
    if t == "0" {
        return Ok(Some(Duration::ZERO));
    }
    let err = || {
        EsError::illegal_argument(format!(
            "failed to parse setting [{setting}] with value [{s}] as a time value: unit is missing or unrecognized"
        ))
    };
    let units: [(&str, f64); 8] = [
        ("nanos", 1e-9),
        ("micros", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
        ("d", 86400.0),
        ("", 0.0),
    ];
    for (suffix, mult) in units {
        if suffix.is_empty() {
            break;
        }
        if let Some(num) = t.strip_suffix(suffix) {
            // "ms" also ends with "s"; the order above checks longer suffixes first where it
            // matters ("nanos", "micros", "ms" before "s"), but "m" must not match "ms".
            let n: f64 = num.trim().parse().map_err(|_| err())?;
            if n < 0.0 {
                if n == -1.0 {
                    return Ok(None);
                }
                return Err(err());
            }
            let secs = n * mult;
            if !secs.is_finite() || secs > 1e12 {
                return Err(err());
            }
            return Ok(Some(Duration::from_secs_f64(secs)));
        }
    }
    Err(err())
}

/// Parses a byte size (`100mb`, `1gb`, `512kb`, `1024b`, or a plain number of bytes).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let units: [(&str, u64); 6] = [
        ("pb", 1 << 50),
        ("tb", 1 << 40),
        ("gb", 1 << 30),
        ("mb", 1 << 20),
        ("kb", 1 << 10),
        ("b", 1),
    ];
    for (suffix, mult) in units {
        if let Some(num) = t.strip_suffix(suffix) {
            let n: f64 = num.trim().parse().ok()?;
            if n < 0.0 || !n.is_finite() {
                return None;
            }
            let v = n * mult as f64;
            if v > u64::MAX as f64 {
                return None;
            }
            return Some(v as u64);
        }
    }
    t.parse().ok()
}

/// Converts a JSON settings value to the string form Elasticsearch stores.
fn setting_string(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(s.clone()),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Number(n) => Value::String(n.to_string()),
        Value::Array(a) => Value::Array(a.iter().map(setting_string).collect()),
        Value::Null => Value::Null,
        Value::Object(_) => Value::Null,
    }
}

/// Flattens nested settings into dotted keys with an `index.` prefix.
pub fn flatten(settings: &Value) -> EsResult<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    match settings {
        Value::Object(m) => flatten_into(m, "", &mut out),
        Value::Null => {}
        _ => {
            return Err(EsError::parse(
                "failed to parse settings: expected an object",
            ))
        }
    }
    let mut fixed = BTreeMap::new();
    for (k, v) in out {
        let key = if k.starts_with("index.") {
            k
        } else {
            format!("index.{k}")
        };
        fixed.insert(key, v);
    }
    Ok(fixed)
}

fn flatten_into(m: &Map<String, Value>, prefix: &str, out: &mut BTreeMap<String, Value>) {
    for (k, v) in m {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Object(inner) => flatten_into(inner, &key, out),
            other => {
                out.insert(key, setting_string(other));
            }
        }
    }
}

/// Turns flat settings back into the nested form (`{"index":{"number_of_shards":"1"}}`).
pub fn nest(flat: &BTreeMap<String, Value>) -> Value {
    let mut root = Map::new();
    for (k, v) in flat {
        let parts: Vec<&str> = k.split('.').collect();
        insert_nested(&mut root, &parts, v.clone());
    }
    Value::Object(root)
}

fn insert_nested(m: &mut Map<String, Value>, parts: &[&str], v: Value) {
    match parts {
        [] => {}
        [last] => {
            m.insert((*last).to_string(), v);
        }
        [first, rest @ ..] => {
            let entry = m
                .entry((*first).to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                // A key is both a leaf and a prefix ("a": "x", "a.b": "y"): keep the flat form.
                let joined = parts.join(".");
                m.insert(joined, v);
                return;
            }
            if let Value::Object(inner) = entry {
                insert_nested(inner, rest, v);
            }
        }
    }
}

/// Settings the server acts on, parsed from the flat map.
#[derive(Debug, Clone)]
pub struct Effective {
    /// `index.number_of_shards`.
    pub shards: u32,
    /// `index.number_of_replicas`.
    pub replicas: u32,
    /// `index.refresh_interval` (`None` = disabled).
    pub refresh_interval: Option<Duration>,
    /// `index.gc_deletes`.
    pub gc_deletes: Duration,
    /// `index.max_result_window`.
    pub max_result_window: u64,
    /// `index.hidden`.
    pub hidden: bool,
}

fn str_of(v: Option<&Value>) -> Option<&str> {
    v.and_then(|v| v.as_str())
}

fn parse_bool_setting(key: &str, v: &str) -> EsResult<bool> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(EsError::illegal_argument(format!(
            "Failed to parse value [{v}] as only [true] or [false] are allowed."
        ))
        .caused_by(EsError::illegal_argument(format!("setting [{key}]")))),
    }
}

fn parse_int_setting(key: &str, v: &str, min: i64) -> EsResult<u32> {
    let n: i64 = v.trim().parse().map_err(|_| {
        EsError::illegal_argument(format!("Failed to parse value [{v}] for setting [{key}]"))
    })?;
    if n < min {
        return Err(EsError::illegal_argument(format!(
            "Failed to parse value [{v}] for setting [{key}] must be >= {min}"
        )));
    }
    u32::try_from(n).map_err(|_| {
        EsError::illegal_argument(format!("Failed to parse value [{v}] for setting [{key}]"))
    })
}

/// Validates the flat settings of a new index and computes the effective values.
pub fn effective(flat: &BTreeMap<String, Value>) -> EsResult<Effective> {
    let mode = str_of(flat.get("index.mode")).unwrap_or("standard");
    let shards = match str_of(flat.get("index.number_of_shards")) {
        Some(v) => parse_int_setting("index.number_of_shards", v, 1)?,
        None => 1,
    };
    if mode == "lookup" && shards != 1 {
        return Err(EsError::illegal_argument(format!(
            "index with [lookup] mode must have [index.number_of_shards] set to 1 or unset; provided {shards}"
        )));
    }
    let replicas = match str_of(flat.get("index.number_of_replicas")) {
        Some(v) => parse_int_setting("index.number_of_replicas", v, 0)?,
        None => 1,
    };
    let refresh_interval = match str_of(flat.get("index.refresh_interval")) {
        Some(v) => parse_time(v, "index.refresh_interval")?,
        None => Some(Duration::from_secs(1)),
    };
    let gc_deletes = match str_of(flat.get("index.gc_deletes")) {
        Some(v) => parse_time(v, "index.gc_deletes")?.unwrap_or(Duration::ZERO),
        None => Duration::from_secs(60),
    };
    let max_result_window = match str_of(flat.get("index.max_result_window")) {
        Some(v) => u64::from(parse_int_setting("index.max_result_window", v, 1)?),
        None => 10_000,
    };
    let hidden = match str_of(flat.get("index.hidden")) {
        Some(v) => parse_bool_setting("index.hidden", v)?,
        None => false,
    };
    if let Some(v) = str_of(flat.get("index.soft_deletes.enabled")) {
        if v == "false" {
            return Err(EsError::illegal_argument(
                "Creating indices with soft-deletes disabled is no longer supported. Please do not specify a value for setting [index.soft_deletes.enabled].",
            ));
        }
    }
    Ok(Effective {
        shards,
        replicas,
        refresh_interval,
        gc_deletes,
        max_result_window,
        hidden,
    })
}

/// Settings that cannot be changed on an existing index.
pub fn is_final_setting(key: &str) -> bool {
    matches!(
        key,
        "index.number_of_shards"
            | "index.mode"
            | "index.uuid"
            | "index.creation_date"
            | "index.provided_name"
            | "index.version.created"
            | "index.soft_deletes.enabled"
    ) || key.starts_with("index.analysis.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_values() {
        assert_eq!(
            parse_time("1s", "x").ok(),
            Some(Some(Duration::from_secs(1)))
        );
        assert_eq!(
            parse_time("500ms", "x").ok(),
            Some(Some(Duration::from_millis(500)))
        );
        assert_eq!(
            parse_time("2m", "x").ok(),
            Some(Some(Duration::from_secs(120)))
        );
        assert_eq!(parse_time("-1", "x").ok(), Some(None));
        assert!(parse_time("abc", "x").is_err());
    }

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("100mb"), Some(100 << 20));
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("1kb"), Some(1024));
    }

    #[test]
    fn flatten_and_nest() {
        let v = serde_json::json!({"index": {"number_of_replicas": 0}, "refresh_interval": "1s"});
        let flat = flatten(&v).unwrap_or_default();
        assert_eq!(
            flat.get("index.number_of_replicas"),
            Some(&Value::from("0"))
        );
        assert_eq!(flat.get("index.refresh_interval"), Some(&Value::from("1s")));
        let nested = nest(&flat);
        assert_eq!(nested["index"]["number_of_replicas"], "0");
    }
}
