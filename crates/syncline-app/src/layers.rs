//! Layered configuration with `figment`: defaults < TOML file < fallback env vars < flags.
//!
//! Every layer is a dictionary keyed by TOML table (`consumer`, `elasticsearch`, `redis`,
//! `outbox`), and a table is deserialized once, from all layers merged, into the same serde
//! struct the file is written for. So a setting is written twice: the struct field (with
//! its default in `Default`) and the clap flag (with its `SYNCLINE_*` env var, which clap
//! resolves: flag over env). No field-by-field override code exists; the flags struct's
//! field names are the TOML keys, and a flag left unset is simply absent from its layer.
//!
//! ```
//! # use syncline_app::{Layers, ConfigError};
//! #[derive(serde::Serialize, serde::Deserialize, Default, Debug, PartialEq)]
//! #[serde(default, deny_unknown_fields)]
//! struct Redis { url: String, ttl: u64 }
//! #[derive(serde::Serialize, Default)]
//! struct RedisFlags { url: Option<String>, ttl: Option<u64> }
//!
//! let redis: Redis = Layers::new("redis")
//!     .toml("[redis]\nurl = \"redis://file\"\nttl = 5\n", "test.toml", &["redis"])?
//!     .flags("redis", &RedisFlags { ttl: Some(9), ..Default::default() })?
//!     .extract("redis")?;
//! assert_eq!(redis, Redis { url: "redis://file".into(), ttl: 9 });
//! # Ok::<(), ConfigError>(())
//! ```

use std::path::Path;

use figment::error::Kind;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ConfigError;

/// The configuration of one binary being assembled. Build it in precedence order:
/// [`Layers::file`] (or [`Layers::toml`]), [`Layers::env_fallback`], [`Layers::flags`];
/// [`Layers::defaults`] always goes underneath, whenever it is called.
#[derive(Debug, Clone)]
pub struct Layers {
    figment: Figment,
    /// The table whose settings errors name bare (`batch_max_events`, not
    /// `consumer.batch_max_events`).
    main_table: String,
    /// The file's name, for messages about keys only the file can hold.
    origin: Option<String>,
}

impl Layers {
    /// Nothing but what later calls add. Errors name the settings of `main_table` bare and
    /// those of other tables qualified (`redis.mode`).
    pub fn new(main_table: &str) -> Self {
        Layers {
            figment: Figment::new(),
            main_table: main_table.to_owned(),
            origin: None,
        }
    }

    /// Layer the TOML file at `path` (see [`Layers::toml`]); an unreadable file is an error
    /// naming the setting `config`.
    pub fn file(self, path: &Path, tables: &[&str]) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("config", format!("cannot read {}: {e}", path.display()))
        })?;
        self.toml(&text, &path.display().to_string(), tables)
    }

    /// Layer a TOML document whose top-level keys must be tables among `tables`; `origin`
    /// names it in messages. Unknown tables are errors naming the table and the file.
    pub fn toml(mut self, text: &str, origin: &str, tables: &[&str]) -> Result<Self, ConfigError> {
        let doc: toml::Table = text
            .parse()
            .map_err(|e| ConfigError::new("config", format!("{origin} is not valid TOML: {e}")))?;
        let expected = tables
            .iter()
            .map(|t| format!("`[{t}]`"))
            .collect::<Vec<_>>()
            .join(" and ");
        for (key, value) in &doc {
            if !tables.contains(&key.as_str()) {
                return Err(ConfigError::new(
                    key.clone(),
                    format!("unknown top-level key in {origin} (expected tables {expected})"),
                ));
            }
            if !value.is_table() {
                return Err(ConfigError::new(
                    key.clone(),
                    format!("must be a table in {origin}"),
                ));
            }
        }
        let dict =
            to_dict(&doc).map_err(|e| ConfigError::new("config", format!("{origin}: {e}")))?;
        self.figment = self.figment.merge(Layer {
            name: format!("the file {origin}"),
            dict,
        });
        self.origin = Some(origin.to_owned());
        Ok(self)
    }

    /// Put `defaults` (the binary's own, e.g. its group id and metrics port) underneath
    /// every other layer of `table`. Dictionaries merge key by key, so a file adding one
    /// `kafka` property keeps the binary's other default properties.
    pub fn defaults<T: Serialize>(
        mut self,
        table: &str,
        defaults: &T,
    ) -> Result<Self, ConfigError> {
        let value = serialize(table, defaults)?;
        self.figment = self.figment.join(Layer::table("defaults", table, value));
        Ok(self)
    }

    /// Layer the env var `var`, when set and not blank, as `table.key`, above the file and
    /// below the flags: the conventional variables (`KAFKA_BROKERS`, `ES_URL`,
    /// `REDIS_URL`) that the scripts export, which the `SYNCLINE_*` ones override.
    pub fn env_fallback(mut self, table: &str, key: &str, var: &str) -> Self {
        if let Some(v) = std::env::var(var).ok().filter(|s| !s.trim().is_empty()) {
            let mut dict = Dict::new();
            dict.insert(key.to_owned(), Value::from(v));
            self.figment = self.figment.merge(Layer::table(
                &format!("the env var {var}"),
                table,
                Value::from(dict),
            ));
        }
        self
    }

    /// Layer the flags (and their env vars) of `table` over everything else. `flags`
    /// serializes to a map whose keys are TOML keys; unset (`None`) fields are left out.
    pub fn flags<T: Serialize>(mut self, table: &str, flags: &T) -> Result<Self, ConfigError> {
        let value =
            strip_unset(serialize(table, flags)?).unwrap_or_else(|| Value::from(Dict::new()));
        self.figment = self.figment.merge(Layer::table(
            "the flags and SYNCLINE_* env vars",
            table,
            value,
        ));
        Ok(self)
    }

    /// Deserialize `table` from all layers merged (`T::default()` when no layer has it).
    /// Type errors name the setting and the layer the value came from.
    pub fn extract<T: DeserializeOwned + Default>(&self, table: &str) -> Result<T, ConfigError> {
        if !self.figment.contains(table) {
            return Ok(T::default());
        }
        self.figment
            .focus(table)
            .extract::<T>()
            .map_err(|e| self.error(table, e))
    }

    /// The setting's name as errors spell it.
    fn setting(&self, table: &str, path: &[String]) -> String {
        let key = path.join(".");
        match (table == self.main_table, key.is_empty()) {
            (_, true) => table.to_owned(),
            (true, false) => key,
            (false, false) => format!("{table}.{key}"),
        }
    }

    fn error(&self, table: &str, e: figment::Error) -> ConfigError {
        let mut path = e.path.clone();
        let reason = match &e.kind {
            // Only the file can hold a key the struct does not know.
            Kind::UnknownField(field, _) => {
                if path.last() != Some(field) {
                    path.push(field.clone());
                }
                let origin = self.origin.as_deref().unwrap_or("the configuration");
                format!("unknown key in [{table}] of {origin}: {}", e.kind)
            }
            kind => {
                // The value itself is left out: a wrongly typed password is still a secret.
                let what = match kind {
                    Kind::InvalidType(_, expected) => format!("invalid type, expected {expected}"),
                    Kind::InvalidValue(_, expected) => {
                        format!("invalid value, expected {expected}")
                    }
                    other => other.to_string(),
                };
                match &e.metadata {
                    Some(m) => format!("{what} (from {})", m.name),
                    None => what,
                }
            }
        };
        ConfigError::new(self.setting(table, &path), reason)
    }
}

/// One layer of settings under a name for messages.
struct Layer {
    name: String,
    dict: Dict,
}

impl Layer {
    fn table(name: &str, table: &str, value: Value) -> Layer {
        let mut dict = Dict::new();
        dict.insert(table.to_owned(), value);
        Layer {
            name: name.to_owned(),
            dict,
        }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

fn serialize<T: Serialize>(table: &str, value: &T) -> Result<Value, ConfigError> {
    Value::serialize(value).map_err(|e| ConfigError::new(table, e.kind.to_string()))
}

fn to_dict(doc: &toml::Table) -> Result<Dict, String> {
    match Value::serialize(doc) {
        Ok(Value::Dict(_, d)) => Ok(d),
        Ok(_) => Ok(Dict::new()),
        Err(e) => Err(e.kind.to_string()),
    }
}

/// Drop `None`s: an unset flag must not override the file (figment merges an empty value
/// like any other).
fn strip_unset(v: Value) -> Option<Value> {
    match v {
        Value::Empty(..) => None,
        Value::Dict(tag, d) => Some(Value::Dict(
            tag,
            d.into_iter()
                .filter_map(|(k, v)| strip_unset(v).map(|v| (k, v)))
                .collect(),
        )),
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Main {
        topic: String,
        batch: u32,
        kafka: BTreeMap<String, String>,
    }

    #[derive(Debug, Default, serde::Serialize)]
    struct MainFlags {
        topic: Option<String>,
        batch: Option<u32>,
    }

    fn defaults() -> Main {
        Main {
            topic: "changes".into(),
            batch: 10,
            kafka: [("client.id".to_owned(), "me".to_owned())].into(),
        }
    }

    #[test]
    fn defaults_file_flags_in_order_and_dicts_merge_by_key() {
        let m: Result<Main, _> = Layers::new("main")
            .toml(
                "[main]\ntopic = \"file\"\nbatch = 5\n[main.kafka]\n\"linger.ms\" = \"1\"\n",
                "f.toml",
                &["main"],
            )
            .and_then(|l| l.defaults("main", &defaults()))
            .and_then(|l| {
                l.flags(
                    "main",
                    &MainFlags {
                        batch: Some(7),
                        ..Default::default()
                    },
                )
            })
            .and_then(|l| l.extract("main"));
        let m = m.unwrap_or_default();
        assert_eq!(m.topic, "file");
        assert_eq!(m.batch, 7);
        assert_eq!(m.kafka.get("client.id").map(String::as_str), Some("me"));
        assert_eq!(m.kafka.get("linger.ms").map(String::as_str), Some("1"));
    }

    #[test]
    fn errors_name_setting_and_source() {
        let e = Layers::new("main")
            .toml("[main]\nbatch = \"many\"\n", "f.toml", &["main"])
            .and_then(|l| l.extract::<Main>("main"))
            .err()
            .unwrap_or_else(|| ConfigError::new("", ""));
        assert_eq!(e.setting, "batch", "{e}");
        assert!(e.reason.contains("f.toml"), "{e}");
        assert!(!e.reason.contains("many"), "values are not quoted: {e}");

        let e = Layers::new("main")
            .toml("[side]\nbatchh = 1\n", "f.toml", &["main", "side"])
            .and_then(|l| l.extract::<Main>("side"))
            .err()
            .unwrap_or_else(|| ConfigError::new("", ""));
        assert_eq!(e.setting, "side.batchh", "{e}");
        assert!(
            e.reason.contains("`batchh`") && e.reason.contains("f.toml"),
            "{e}"
        );

        let e = Layers::new("main")
            .toml("[other]\n", "f.toml", &["main"])
            .err()
            .unwrap_or_else(|| ConfigError::new("", ""));
        assert_eq!(e.setting, "other");
    }

    #[test]
    fn a_missing_table_is_the_default() {
        let m: Main = Layers::new("main")
            .extract("main")
            .unwrap_or_else(|_| defaults());
        assert_eq!(m, Main::default());
    }
}
