//! Index definitions per entity type, read once at startup from `<mappings_dir>/*.json`,
//! and the create-index request body built from them.
//!
//! A file is either a create-index body with `settings` and/or `mappings`, or just the
//! mappings object (`{"properties": {...}}`). `aliases` is not allowed: the indexer owns
//! the alias (its name, `is_write_index`, and in tombstone mode its filter). Files are read
//! at startup, not lazily, so a broken file stops the indexer before it consumes anything.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use syncline_event::validate::is_valid_entity_type;

use crate::bulk::{TOMBSTONE_AT_FIELD, TOMBSTONE_FIELD};
use crate::config::DeleteMode;

/// A mappings directory or file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MappingsError {
    /// The directory or a file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not valid JSON or not shaped like an index definition.
    #[error("invalid index definition {}: {reason}", path.display())]
    Invalid {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The index definitions found in the mappings directory, by entity type.
#[derive(Debug, Clone, Default)]
pub struct IndexDefinitions {
    by_type: HashMap<String, Map<String, Value>>,
}

impl IndexDefinitions {
    /// No definitions: every index is created with dynamic mappings.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Read every `<entity_type>.json` in `dir`. A missing directory yields no definitions
    /// when `must_exist` is false (the default directory is optional).
    pub fn load(dir: &Path, must_exist: bool) -> Result<Self, MappingsError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                return Ok(Self::empty())
            }
            Err(source) => {
                return Err(MappingsError::Io {
                    path: dir.to_owned(),
                    source,
                })
            }
        };
        let mut defs = Self::empty();
        for entry in entries {
            let entry = entry.map_err(|source| MappingsError::Io {
                path: dir.to_owned(),
                source,
            })?;
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Some(entity_type) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if !is_valid_entity_type(entity_type) {
                return Err(MappingsError::Invalid {
                    path: path.clone(),
                    reason: format!(
                        "file name {entity_type:?} is not an entity type ([a-z0-9][a-z0-9_-]{{0,63}})"
                    ),
                });
            }
            let text = std::fs::read_to_string(&path).map_err(|source| MappingsError::Io {
                path: path.clone(),
                source,
            })?;
            let def = parse_definition(&text).map_err(|reason| MappingsError::Invalid {
                path: path.clone(),
                reason,
            })?;
            defs.by_type.insert(entity_type.to_owned(), def);
        }
        Ok(defs)
    }

    /// Add or replace the definition for `entity_type` (for tests and embedding).
    pub fn insert(&mut self, entity_type: &str, definition_json: &str) -> Result<(), String> {
        let def = parse_definition(definition_json)?;
        self.by_type.insert(entity_type.to_owned(), def);
        Ok(())
    }

    /// Entity types that have a definition, sorted.
    pub fn entity_types(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.by_type.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// The body of the create-index request for `entity_type`'s first index: its
    /// settings and mappings (if defined) plus the write alias. In tombstone mode the
    /// tombstone fields are mapped explicitly (so `dynamic: strict` mappings accept them)
    /// and the alias filters tombstones out of searches. An object, so callers can add to
    /// it.
    pub fn create_body(
        &self,
        entity_type: &str,
        alias: &str,
        mode: DeleteMode,
    ) -> Map<String, Value> {
        let mut body = self.by_type.get(entity_type).cloned().unwrap_or_default();
        let mut alias_def = Map::from_iter([("is_write_index".to_owned(), Value::Bool(true))]);
        if mode == DeleteMode::Tombstone {
            let mappings = body
                .entry("mappings")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = mappings {
                let props = m
                    .entry("properties")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(p) = props {
                    p.insert(TOMBSTONE_FIELD.into(), json!({ "type": "boolean" }));
                    p.insert(TOMBSTONE_AT_FIELD.into(), json!({ "type": "long" }));
                }
            }
            alias_def.insert("filter".into(), tombstone_filter());
        }
        body.insert("aliases".into(), json!({ alias: alias_def }));
        body
    }
}

/// The alias filter that hides tombstones.
pub fn tombstone_filter() -> Value {
    json!({ "bool": { "must_not": { "term": { TOMBSTONE_FIELD: true } } } })
}

fn parse_definition(text: &str) -> Result<Map<String, Value>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let Value::Object(obj) = value else {
        return Err("top-level value must be an object".into());
    };
    let is_create_body = obj.contains_key("mappings") || obj.contains_key("settings");
    if !is_create_body {
        if obj.contains_key("aliases") {
            return Err("\"aliases\" is not allowed: the indexer manages the alias".into());
        }
        // A bare mappings object.
        let mut body = Map::new();
        body.insert("mappings".into(), Value::Object(obj));
        return Ok(body);
    }
    for (key, v) in &obj {
        match key.as_str() {
            "mappings" | "settings" if v.is_object() => {}
            "mappings" | "settings" => return Err(format!("\"{key}\" must be an object")),
            "aliases" => {
                return Err("\"aliases\" is not allowed: the indexer manages the alias".into())
            }
            other => {
                return Err(format!(
                    "unknown key \"{other}\" (expected \"settings\" and/or \"mappings\")"
                ))
            }
        }
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_modes() {
        let mut d = IndexDefinitions::empty();
        d.insert(
            "product",
            r#"{"settings":{"number_of_shards":1},"mappings":{"dynamic":"strict","properties":{"price":{"type":"long"}}}}"#,
        )
        .unwrap();
        let b = d.create_body("product", "shop-product", DeleteMode::Tombstone);
        assert_eq!(b["settings"]["number_of_shards"], 1);
        assert_eq!(b["mappings"]["dynamic"], "strict");
        assert_eq!(b["mappings"]["properties"]["price"]["type"], "long");
        assert_eq!(
            b["mappings"]["properties"]["_syncline_deleted"]["type"],
            "boolean"
        );
        assert_eq!(b["aliases"]["shop-product"]["is_write_index"], true);
        assert_eq!(b["aliases"]["shop-product"]["filter"], tombstone_filter());

        let b = d.create_body("product", "p", DeleteMode::Delete);
        assert!(b["mappings"]["properties"]
            .get("_syncline_deleted")
            .is_none());
        assert!(b["aliases"]["p"].get("filter").is_none());

        let b = d.create_body("unknown", "u", DeleteMode::Delete);
        assert_eq!(
            Value::Object(b),
            json!({"aliases":{"u":{"is_write_index":true}}})
        );
    }

    #[test]
    fn bare_mappings_and_bad_files() {
        let mut d = IndexDefinitions::empty();
        d.insert("a", r#"{"properties":{"x":{"type":"keyword"}}}"#)
            .unwrap();
        let b = d.create_body("a", "a", DeleteMode::Delete);
        assert_eq!(b["mappings"]["properties"]["x"]["type"], "keyword");
        assert!(d.insert("a", "[1]").is_err());
        assert!(d.insert("a", "{").is_err());
        assert!(d.insert("a", r#"{"mappings":{},"aliases":{}}"#).is_err());
        assert!(d.insert("a", r#"{"mappings":{},"typo":{}}"#).is_err());
    }

    #[test]
    fn loads_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("product.json"),
            r#"{"mappings":{"properties":{"price":{"type":"long"}}}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("README.md"), "ignored").unwrap();
        let d = IndexDefinitions::load(dir.path(), true).unwrap();
        assert_eq!(d.entity_types(), vec!["product"]);

        std::fs::write(dir.path().join("Bad Name.json"), "{}").unwrap();
        let err = IndexDefinitions::load(dir.path(), true).unwrap_err();
        assert!(err.to_string().contains("Bad Name"), "{err}");

        let missing = dir.path().join("nope");
        assert!(IndexDefinitions::load(&missing, false)
            .unwrap()
            .entity_types()
            .is_empty());
        assert!(IndexDefinitions::load(&missing, true).is_err());
    }

    #[test]
    fn repository_mappings_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/mappings");
        let d = IndexDefinitions::load(&dir, true).unwrap();
        assert!(d.entity_types().contains(&"product"));
    }
}
