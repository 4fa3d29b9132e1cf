//! The Redis key layout. Every key Syncline reads or writes is built here.
//!
//! | what | key |
//! |---|---|
//! | cached entity | `<prefix><entity_type>:{<entity_id>}` |
//! | its version guard | `<prefix><entity_type>:{<entity_id>}:v` |
//! | tag generation | `<prefix>_tag:{<tag>}` |
//! | cached search result | `<prefix>_search:<namespace>:<sha256 hex>` |
//!
//! The cached value and its guard share the hash tag `{<entity_id>}`, so the scripts that
//! touch both address one Redis Cluster slot. Syncline's own key spaces start with `_`,
//! which an entity type (`[a-z0-9][a-z0-9_-]{0,63}`) cannot, so no entity type can collide
//! with them (an entity type `tag` would otherwise share `<prefix>tag:{x}` with tag `x`).

use crate::error::CacheError;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "syncline:";

/// Builds Syncline's Redis keys under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    prefix: String,
}

impl Default for KeyLayout {
    fn default() -> Self {
        KeyLayout {
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

impl KeyLayout {
    /// A layout under `prefix` (may be empty). The prefix must not contain `{` or `}`:
    /// that would move the hash tag and split a value from its guard across cluster slots.
    pub fn new(prefix: impl Into<String>) -> Result<Self, CacheError> {
        let prefix = prefix.into();
        if prefix.contains(['{', '}']) {
            return Err(CacheError::Config(format!(
                "key prefix {prefix:?} must not contain '{{' or '}}' (it would change the hash tag)"
            )));
        }
        if prefix.len() > 256 {
            return Err(CacheError::Config(format!(
                "key prefix is {} bytes; at most 256 are allowed",
                prefix.len()
            )));
        }
        Ok(KeyLayout { prefix })
    }

    /// The prefix every key starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Key of the cached value of one entity: `<prefix><entity_type>:{<entity_id>}`.
    pub fn cache_key(&self, entity_type: &str, entity_id: &str) -> String {
        let mut key =
            String::with_capacity(self.prefix.len() + entity_type.len() + entity_id.len() + 5);
        key.push_str(&self.prefix);
        key.push_str(entity_type);
        key.push_str(":{");
        key.push_str(entity_id);
        key.push('}');
        key
    }

    /// Key of the version guard of one entity: the cache key followed by `:v`.
    pub fn guard_key(&self, entity_type: &str, entity_id: &str) -> String {
        let mut key = self.cache_key(entity_type, entity_id);
        key.push_str(":v");
        key
    }

    /// Key of the generation counter of one tag: `<prefix>_tag:{<tag>}`.
    pub fn tag_key(&self, tag: &str) -> String {
        format!("{}_tag:{{{tag}}}", self.prefix)
    }

    /// Key of one cached search result: `<prefix>_search:<namespace>:<digest>`.
    pub fn search_key(&self, namespace: &str, digest_hex: &str) -> String {
        format!("{}_search:{namespace}:{digest_hex}", self.prefix)
    }

    /// A `SCAN MATCH` pattern covering every key of this layout (for clean-up in tests
    /// and benchmarks). Glob metacharacters in the prefix are escaped.
    pub fn scan_pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.prefix.len() + 1);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        pattern
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_documented_format() {
        let l = KeyLayout::default();
        assert_eq!(l.cache_key("product", "42"), "syncline:product:{42}");
        assert_eq!(l.guard_key("product", "42"), "syncline:product:{42}:v");
        assert_eq!(l.tag_key("category:7"), "syncline:_tag:{category:7}");
        assert_eq!(
            l.search_key("products", "ab"),
            "syncline:_search:products:ab"
        );
    }

    #[test]
    fn prefix_with_braces_is_refused() {
        assert!(KeyLayout::new("a{b").is_err());
        assert!(KeyLayout::new("").is_ok());
    }

    #[test]
    fn scan_pattern_escapes_glob_characters() {
        let l = KeyLayout::new("t*[x]:").unwrap_or_default();
        assert_eq!(l.scan_pattern(), "t\\*\\[x\\]:*");
    }
}
