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
    /// `index.max_docvalue_fields_search` (default 100).
    pub max_docvalue_fields: u64,
    /// `index.hidden`.
    pub hidden: bool,
    /// The shard layout (`number_of_routing_shards`, `routing_partition_size`).
    pub routing: crate::routing::ShardRouting,
    /// Per-document limits (nested and array objects, tokens).
    pub doc_limits: crate::doc_limits::DocLimits,
    /// How documents are checked and mapped (dynamic strings, `ignore_malformed`, field
    /// name length).
    pub check: crate::field_checks::CheckOpts,
    /// `index.max_regex_length`, `index.query_string.lenient`.
    pub query_limits: crate::query::Limits,
    /// `index.max_rescore_window` (default 10,000).
    pub max_rescore_window: u64,
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
    // `auto_expand_replicas` (`0-1`, `0-all`): on one node the number of other data nodes
    // is 0, so the effective count is the range's lower bound.
    let replicas = match str_of(flat.get("index.auto_expand_replicas")) {
        None | Some("false") => replicas,
        Some(v) => {
            let bad = || {
                EsError::illegal_argument(format!(
                    "failed to parse [index.auto_expand_replicas] from value: [{v}] at index -1"
                ))
            };
            let (lo, hi) = v.split_once('-').ok_or_else(bad)?;
            let lo: u32 = lo.trim().parse().map_err(|_| bad())?;
            if hi.trim() != "all" {
                let hi: u32 = hi.trim().parse().map_err(|_| bad())?;
                if hi < lo {
                    return Err(bad());
                }
            }
            lo
        }
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
    let max_docvalue_fields = match str_of(flat.get("index.max_docvalue_fields_search")) {
        Some(v) => u64::from(parse_int_setting("index.max_docvalue_fields_search", v, 0)?),
        None => 100,
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
    let routing_shards = str_of(flat.get("index.number_of_routing_shards"))
        .map(|v| parse_int_setting("index.number_of_routing_shards", v, 1))
        .transpose()?;
    let partition_size = str_of(flat.get("index.routing_partition_size"))
        .map(|v| parse_int_setting("index.routing_partition_size", v, 1))
        .transpose()?;
    let routing = crate::routing::ShardRouting::new(shards, routing_shards, partition_size)?;
    let doc_limits = crate::doc_limits::DocLimits::from_settings(flat)?;
    let check = check_opts(flat)?;
    let query_limits = crate::query::Limits {
        max_regex_length: match str_of(flat.get("index.max_regex_length")) {
            Some(v) => parse_int_setting("index.max_regex_length", v, 1)? as usize,
            None => 1000,
        },
        query_string_lenient: bool_setting(flat, "index.query_string.lenient", false)?,
    };
    let max_rescore_window = match str_of(flat.get("index.max_rescore_window")) {
        Some(v) => u64::from(parse_int_setting("index.max_rescore_window", v, 1)?),
        None => max_result_window,
    };
    Ok(Effective {
        check,
        query_limits,
        max_rescore_window,
        doc_limits,
        routing,
        shards,
        replicas,
        refresh_interval,
        gc_deletes,
        max_result_window,
        max_docvalue_fields,
        hidden,
    })
}

fn bool_setting(flat: &BTreeMap<String, Value>, key: &str, default: bool) -> EsResult<bool> {
    match str_of(flat.get(key)) {
        Some(v) => parse_bool_setting(key, v),
        None => Ok(default),
    }
}

fn check_opts(flat: &BTreeMap<String, Value>) -> EsResult<crate::field_checks::CheckOpts> {
    const LIMIT: &str = "index.mapping.field_name_length.limit";
    let field_name_limit = match str_of(flat.get(LIMIT)) {
        None => None,
        Some(v) => {
            let n: i64 = v.trim().parse().map_err(|_| {
                EsError::illegal_argument(format!(
                    "Failed to parse value [{v}] for setting [{LIMIT}]"
                ))
            })?;
            if n < 1 {
                return Err(EsError::illegal_argument(format!(
                    "Failed to parse value [{v}] for setting [{LIMIT}] must be >= 1"
                )));
            }
            Some(n.unsigned_abs())
        }
    };
    if let Some(mode) = str_of(flat.get("index.mapping.source.mode")) {
        if !matches!(
            mode.to_ascii_lowercase().as_str(),
            "stored" | "synthetic" | "disabled"
        ) {
            return Err(EsError::illegal_argument(format!(
                "No enum constant org.elasticsearch.index.mapper.SourceFieldMapper.Mode.{}",
                mode.to_uppercase()
            )));
        }
    }
    Ok(crate::field_checks::CheckOpts {
        auto_text: bool_setting(flat, "index.mapping.dynamic_strings.auto_text", true)?,
        ignore_malformed: bool_setting(flat, "index.mapping.ignore_malformed", false)?,
        field_name_limit,
        ignore_long_dynamic_names: bool_setting(
            flat,
            "index.mapping.field_name_length.ignore_dynamic_beyond_limit",
            false,
        )?,
    })
}

/// Index settings that may change on an open index (Elasticsearch's dynamic settings).
const DYNAMIC: &[&str] = &[
    "index.number_of_replicas",
    "index.auto_expand_replicas",
    "index.refresh_interval",
    "index.gc_deletes",
    "index.max_result_window",
    "index.max_inner_result_window",
    "index.max_rescore_window",
    "index.max_docvalue_fields_search",
    "index.max_script_fields",
    "index.max_ngram_diff",
    "index.max_shingle_diff",
    "index.max_refresh_listeners",
    "index.max_terms_count",
    "index.max_regex_length",
    "index.max_slices_per_scroll",
    "index.max_adjacency_matrix_filters",
    "index.default_pipeline",
    "index.final_pipeline",
    "index.hidden",
    "index.priority",
    "index.search.idle.after",
    "index.search.slowlog.threshold.query.warn",
    "index.search.slowlog.threshold.query.info",
    "index.search.slowlog.threshold.query.debug",
    "index.search.slowlog.threshold.query.trace",
    "index.search.slowlog.threshold.fetch.warn",
    "index.search.slowlog.threshold.fetch.info",
    "index.search.slowlog.threshold.fetch.debug",
    "index.search.slowlog.threshold.fetch.trace",
    "index.indexing.slowlog.threshold.index.warn",
    "index.indexing.slowlog.threshold.index.info",
    "index.indexing.slowlog.threshold.index.debug",
    "index.indexing.slowlog.threshold.index.trace",
    "index.indexing.slowlog.source",
    "index.translog.durability",
    "index.translog.sync_interval",
    "index.translog.flush_threshold_size",
    "index.unassigned.node_left.delayed_timeout",
    "index.mapping.total_fields.limit",
    "index.mapping.depth.limit",
    "index.mapping.nested_fields.limit",
    "index.mapping.nested_objects.limit",
    "index.mapping.array_objects.limit",
    "index.mapping.total_tokens_per_document.limit",
    "index.mapping.tokens_per_field.limit",
    "index.mapping.field_name_length.limit",
    "index.mapping.field_name_length.ignore_dynamic_beyond_limit",
    "index.mapping.dynamic_strings.auto_text",
    "index.mapping.dimension_fields.limit",
    "index.mapping.ignore_malformed",
    "index.mapping.coerce",
    "index.mapping.total_fields.ignore_dynamic_beyond_limit",
    "index.query.default_field",
    "index.query_string.lenient",
    "index.highlight.max_analyzed_offset",
    "index.write.wait_for_active_shards",
    "index.blocks.read_only",
    "index.blocks.read_only_allow_delete",
    "index.blocks.read",
    "index.blocks.write",
    "index.blocks.metadata",
    "index.merge.scheduler.max_thread_count",
    "index.merge.scheduler.max_merge_count",
    "index.merge.scheduler.auto_throttle",
    "index.merge.policy.max_merged_segment",
    "index.merge.policy.segments_per_tier",
    "index.merge.policy.floor_segment",
    "index.merge.policy.max_merge_at_once",
    "index.merge.policy.deletes_pct_allowed",
    "index.lifecycle.name",
    "index.lifecycle.rollover_alias",
    "index.lifecycle.origination_date",
    "index.lifecycle.parse_origination_date",
    "index.soft_deletes.retention_lease.period",
    "index.routing.rebalance.enable",
    "index.routing.allocation.enable",
    "index.routing.allocation.total_shards_per_node",
    "index.shard.check_on_startup",
    "index.verified_before_close",
];

/// Index settings fixed while the index is open (Elasticsearch's static settings); they can
/// be set at creation, or on a closed index.
const STATIC: &[&str] = &[
    "index.number_of_shards",
    "index.number_of_routing_shards",
    "index.codec",
    "index.mode",
    "index.mapping.source.mode",
    "index.routing_partition_size",
    "index.soft_deletes.enabled",
    "index.load_fixed_bitset_filters_eagerly",
    "index.shard.check_on_startup",
    "index.store.type",
    "index.store.preload",
    "index.sort.field",
    "index.sort.order",
    "index.sort.mode",
    "index.sort.missing",
    "index.uuid",
    "index.creation_date",
    "index.provided_name",
    "index.version.created",
    "index.format",
];

/// Key prefixes whose settings are groups (any sub-key is accepted).
const DYNAMIC_GROUPS: &[&str] = &[
    "index.routing.allocation.include.",
    "index.routing.allocation.exclude.",
    "index.routing.allocation.require.",
    "index.similarity.",
];
const STATIC_GROUPS: &[&str] = &["index.analysis.", "index.sort."];

/// Whether `key` is an index setting Elasticsearch knows.
pub fn is_known_setting(key: &str) -> bool {
    DYNAMIC.contains(&key)
        || STATIC.contains(&key)
        || DYNAMIC_GROUPS.iter().any(|g| key.starts_with(g))
        || STATIC_GROUPS.iter().any(|g| key.starts_with(g))
}

/// Whether `key` can change only while the index is closed (or not at all).
pub fn is_static_setting(key: &str) -> bool {
    (STATIC.contains(&key) || STATIC_GROUPS.iter().any(|g| key.starts_with(g)))
        && !DYNAMIC.contains(&key)
}

/// Rejects settings Elasticsearch does not know, with its message.
pub fn check_known(flat: &BTreeMap<String, Value>) -> EsResult<()> {
    match flat.keys().find(|k| !is_known_setting(k)) {
        None => Ok(()),
        Some(k) => Err(EsError::illegal_argument(format!(
            "unknown setting [{k}] please check that any required plugins are installed, or check the breaking changes documentation for removed settings"
        ))),
    }
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
