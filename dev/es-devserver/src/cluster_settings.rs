//! Cluster settings (`PUT|GET /_cluster/settings`): the persistent and transient layers, the
//! settings Elasticsearch knows with their defaults and validation, and the two this server
//! acts on: `action.destructive_requires_name` and `action.auto_create_index`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{EsError, EsResult};

/// The type of a cluster setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Bool,
    Int,
    Time,
    Bytes,
    /// One of a fixed set of words.
    Enum(&'static [&'static str]),
    /// Any string (percentages, patterns, ...).
    Text,
}

/// Known cluster settings: key, type, default (as Elasticsearch prints it).
const KNOWN: &[(&str, Ty, &str)] = &[
    ("action.auto_create_index", Ty::Text, "true"),
    ("action.destructive_requires_name", Ty::Bool, "true"),
    ("cluster.blocks.read_only", Ty::Bool, "false"),
    ("cluster.blocks.read_only_allow_delete", Ty::Bool, "false"),
    ("cluster.indices.close.enable", Ty::Bool, "true"),
    ("cluster.max_shards_per_node", Ty::Int, "1000"),
    (
        "cluster.routing.allocation.enable",
        Ty::Enum(&["all", "primaries", "new_primaries", "none"]),
        "all",
    ),
    (
        "cluster.routing.rebalance.enable",
        Ty::Enum(&["all", "primaries", "replicas", "none"]),
        "all",
    ),
    (
        "cluster.routing.allocation.disk.threshold_enabled",
        Ty::Bool,
        "true",
    ),
    (
        "cluster.routing.allocation.disk.watermark.low",
        Ty::Text,
        "85%",
    ),
    (
        "cluster.routing.allocation.disk.watermark.high",
        Ty::Text,
        "90%",
    ),
    (
        "cluster.routing.allocation.disk.watermark.flood_stage",
        Ty::Text,
        "95%",
    ),
    ("indices.recovery.max_bytes_per_sec", Ty::Bytes, "40mb"),
    ("ingest.geoip.downloader.enabled", Ty::Bool, "true"),
    ("search.allow_expensive_queries", Ty::Bool, "true"),
    ("search.default_search_timeout", Ty::Time, "-1"),
    ("search.max_buckets", Ty::Int, "65536"),
];

/// Prefixes of setting groups whose keys are free (`logger.org.elasticsearch...`).
const GROUPS: &[&str] = &["logger.", "cluster.metadata."];

/// Which layer a setting is updated in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// Survives a restart (of a real cluster).
    Persistent,
    /// Lost on restart; deprecated in 8.x.
    Transient,
}

impl Layer {
    /// The body key.
    pub fn name(self) -> &'static str {
        match self {
            Layer::Persistent => "persistent",
            Layer::Transient => "transient",
        }
    }
}

/// The two layers of cluster settings (flat keys, string values).
#[derive(Debug, Default, Clone)]
pub struct Store {
    /// `persistent`.
    pub persistent: BTreeMap<String, Value>,
    /// `transient`.
    pub transient: BTreeMap<String, Value>,
}

fn known(key: &str) -> Option<(Ty, &'static str)> {
    KNOWN
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, t, d)| (*t, *d))
}

fn validate(layer: Layer, key: &str, v: &Value) -> EsResult<Value> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => {
            let parts: Vec<String> = a
                .iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            parts.join(",")
        }
        Value::Null | Value::Object(_) => String::new(),
    };
    if GROUPS.iter().any(|g| key.starts_with(g)) {
        return Ok(Value::String(text));
    }
    let Some((ty, _)) = known(key) else {
        return Err(EsError::illegal_argument(format!(
            "{} setting [{key}], not recognized",
            layer.name()
        )));
    };
    let bad = |what: &str| {
        EsError::illegal_argument(format!(
            "Failed to parse value [{text}] for setting [{key}]{what}"
        ))
    };
    match ty {
        Ty::Bool => {
            if text != "true" && text != "false" {
                return Err(EsError::illegal_argument(format!(
                    "Failed to parse value [{text}] as only [true] or [false] are allowed."
                ))
                .caused_by(EsError::illegal_argument(format!("setting [{key}]"))));
            }
        }
        Ty::Int => {
            text.trim().parse::<i32>().map_err(|_| bad(""))?;
        }
        Ty::Time => {
            crate::settings::parse_time(&text, key)?;
        }
        Ty::Bytes => {
            if crate::settings::parse_bytes(&text).is_none() {
                return Err(EsError::parse(format!(
                    "failed to parse setting [{key}] with value [{text}] as a size in bytes: unit is missing or unrecognized"
                )));
            }
        }
        Ty::Enum(words) => {
            if !words.contains(&text.to_ascii_lowercase().as_str()) {
                return Err(bad(&format!(", must be one of {words:?}")));
            }
        }
        Ty::Text => {}
    }
    if key == "action.auto_create_index" {
        AutoCreate::parse(&text)?;
    }
    Ok(Value::String(text))
}

fn flatten_into(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_into(&key, x, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

impl Store {
    /// Applies one layer of an update (`{"a.b": "x"}` or nested); `null` resets a setting.
    /// Validates everything before changing anything. Returns the applied settings.
    pub fn update(&mut self, layer: Layer, body: &Value) -> EsResult<BTreeMap<String, Value>> {
        let mut pairs = Vec::new();
        flatten_into("", body, &mut pairs);
        let mut checked = Vec::new();
        for (k, v) in pairs {
            if v.is_null() {
                checked.push((k, None));
            } else {
                let value = validate(layer, &k, &v)?;
                checked.push((k, Some(value)));
            }
        }
        let target = match layer {
            Layer::Persistent => &mut self.persistent,
            Layer::Transient => &mut self.transient,
        };
        let mut applied = BTreeMap::new();
        for (k, v) in checked {
            match v {
                None => {
                    if let Some(prefix) = k.strip_suffix('*') {
                        target.retain(|key, _| !key.starts_with(prefix));
                    } else {
                        target.remove(&k);
                    }
                }
                Some(v) => {
                    target.insert(k.clone(), v.clone());
                    applied.insert(k, v);
                }
            }
        }
        Ok(applied)
    }

    /// The value in force: transient over persistent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.transient
            .get(key)
            .or_else(|| self.persistent.get(key))
            .and_then(Value::as_str)
    }

    /// The defaults of the known settings neither layer sets.
    pub fn defaults(&self, destructive_default: bool) -> BTreeMap<String, Value> {
        KNOWN
            .iter()
            .filter(|(k, _, _)| self.get(k).is_none())
            .map(|(k, _, d)| {
                let v = if *k == "action.destructive_requires_name" {
                    destructive_default.to_string()
                } else {
                    d.to_string()
                };
                (k.to_string(), Value::String(v))
            })
            .collect()
    }
}

/// `action.auto_create_index`: `true`, `false` or `+pattern,-pattern` (first match wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoCreate {
    /// Any index.
    All,
    /// None.
    Never,
    /// Patterns, each allowing (`+`, or no sign) or refusing (`-`).
    Patterns(Vec<(bool, String)>),
}

impl AutoCreate {
    /// Parses the setting's value.
    pub fn parse(s: &str) -> EsResult<AutoCreate> {
        match s.trim() {
            "true" | "" => return Ok(AutoCreate::All),
            "false" => return Ok(AutoCreate::Never),
            _ => {}
        }
        let mut out = Vec::new();
        for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (allow, pat) = match p.strip_prefix('-') {
                Some(rest) => (false, rest),
                None => (true, p.strip_prefix('+').unwrap_or(p)),
            };
            if pat.is_empty() {
                return Err(EsError::illegal_argument(format!(
                    "Can't parse [{s}] for setting [action.auto_create_index] must be either [true, false, or a comma separated list of index patterns]"
                )));
            }
            out.push((allow, pat.to_string()));
        }
        Ok(AutoCreate::Patterns(out))
    }

    /// Whether an index of this name may be created by a write; the error otherwise.
    pub fn check(&self, raw: &str, name: &str) -> EsResult<()> {
        let refused = |why: String| {
            let mut e = EsError::index_not_found(name);
            e.reason = why;
            e
        };
        match self {
            AutoCreate::All => Ok(()),
            AutoCreate::Never => Err(refused(format!(
                "no such index [{name}] and [action.auto_create_index] is [false]"
            ))),
            AutoCreate::Patterns(ps) => {
                match ps
                    .iter()
                    .find(|(_, p)| crate::names::glob_match(p, name))
                {
                    Some((true, _)) => Ok(()),
                    Some((false, p)) => Err(refused(format!(
                        "no such index [{name}] and [action.auto_create_index] contains [-{p}] which forbids automatic creation of the index"
                    ))),
                    None => Err(refused(format!(
                        "no such index [{name}] and [action.auto_create_index] ([{raw}]) doesn't match"
                    ))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layers_and_validation() {
        let mut s = Store::default();
        let applied = s
            .update(
                Layer::Persistent,
                &json!({"action": {"destructive_requires_name": true}}),
            )
            .unwrap();
        assert_eq!(
            applied.get("action.destructive_requires_name"),
            Some(&Value::from("true"))
        );
        assert_eq!(s.get("action.destructive_requires_name"), Some("true"));
        s.update(
            Layer::Transient,
            &json!({"action.destructive_requires_name": "false"}),
        )
        .unwrap();
        assert_eq!(s.get("action.destructive_requires_name"), Some("false"));
        s.update(
            Layer::Transient,
            &json!({"action.destructive_requires_name": null}),
        )
        .unwrap();
        assert_eq!(s.get("action.destructive_requires_name"), Some("true"));
        let e = s
            .update(Layer::Persistent, &json!({"no.such": 1}))
            .unwrap_err();
        assert_eq!(e.reason, "persistent setting [no.such], not recognized");
        assert!(s
            .update(
                Layer::Persistent,
                &json!({"cluster.max_shards_per_node": "x"})
            )
            .is_err());
    }

    #[test]
    fn auto_create_patterns() {
        let a = AutoCreate::parse("+logs-*,-logs-old*,metrics").unwrap();
        assert!(a.check("", "logs-1").is_ok());
        assert!(a.check("", "metrics").is_ok());
        assert!(a.check("", "other").is_err());
        let a = AutoCreate::parse("-secret*,+*").unwrap();
        assert!(a.check("", "secret1").is_err());
        assert!(a.check("", "x").is_ok());
        assert!(AutoCreate::parse("false").unwrap().check("", "x").is_err());
    }
}
