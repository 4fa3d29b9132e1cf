//! The Redis key layout. Every key Syncline reads or writes is built here.
//!
//! | what | key (generation 0) | key (generation `g` >= 1) |
//! |---|---|---|
//! | cached entity | `<prefix><entity_type>:{<entity_id>}` | `<prefix>_g<g>:<entity_type>:{<entity_id>}` |
//! | its version guard | `<prefix><entity_type>:{<entity_id>}:v` | `<prefix>_g<g>:<entity_type>:{<entity_id>}:v` |
//! | cached search result | `<prefix>_search:<namespace>:<sha256 hex>` | `<prefix>_g<g>:_search:<namespace>:<sha256 hex>` |
//! | tag generation | `<prefix>_tag:{<tag>}` | (shared by all generations) |
//! | prefix generation | `<prefix>_gen` | |
//! | rebuild state | `<prefix>_rebuild` | |
//!
//! The cached value and its guard share the hash tag `{<entity_id>}`, so the scripts that
//! touch both address one Redis Cluster slot. Syncline's own key spaces start with `_`,
//! which an entity type (`[a-z0-9][a-z0-9_-]{0,63}`) cannot, so no entity type can collide
//! with them (an entity type `tag` would otherwise share `<prefix>tag:{x}` with tag `x`).
//!
//! **Generations.** `<prefix>_gen` holds the prefix's current generation (a decimal
//! counter); a missing key is generation 0, whose keys are exactly the layout from before
//! generations existed, so existing deployments and their data keep working unchanged.
//! Every script that reads or writes a cached entry or search result first reads
//! `<prefix>_gen` in the same atomic step and refuses to touch another generation's keys
//! (see [`crate::scripts`]). One `INCR` of `<prefix>_gen` (`syncline-ctl rebuild redis`)
//! therefore makes every entry of the old generation unreachable at once, for readers and
//! for the invalidator alike; the old keys are then unlinked in the background
//! ([`crate::admin`]). Tag generations are not per prefix generation: they are counters
//! whose only job is to change search keys, and search keys already carry the generation.
//! Never delete `<prefix>_gen` (it has no TTL; run Redis with `noeviction` or a
//! `volatile-*` policy): generation 0 would come back with whatever it still holds.

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

    /// Key of the prefix's generation counter: `<prefix>_gen` (missing = generation 0).
    pub fn generation_key(&self) -> String {
        format!("{}_gen", self.prefix)
    }

    /// Key of the state of an unfinished `syncline-ctl rebuild redis`: `<prefix>_rebuild`.
    pub fn rebuild_state_key(&self) -> String {
        format!("{}_rebuild", self.prefix)
    }

    /// Where the entry keys of `generation` start: the prefix for generation 0 (the layout
    /// from before generations existed), `<prefix>_g<generation>:` after it.
    pub fn generation_prefix(&self, generation: u64) -> String {
        if generation == 0 {
            self.prefix.clone()
        } else {
            format!("{}_g{generation}:", self.prefix)
        }
    }

    /// Key of the cached value of one entity in generation 0:
    /// `<prefix><entity_type>:{<entity_id>}` (see [`KeyLayout::cache_key_in`]).
    pub fn cache_key(&self, entity_type: &str, entity_id: &str) -> String {
        self.cache_key_in(0, entity_type, entity_id)
    }

    /// Key of the cached value of one entity in `generation`.
    pub fn cache_key_in(&self, generation: u64, entity_type: &str, entity_id: &str) -> String {
        let mut key = String::new();
        Self::push_cache_key(
            &mut key,
            &self.generation_prefix(generation),
            entity_type,
            entity_id,
        );
        key
    }

    /// Append the cache key of one entity to `out`, under `entry_prefix` (what
    /// [`KeyLayout::generation_prefix`] returns): for a caller writing many keys into one
    /// buffer.
    pub fn push_cache_key(
        out: &mut String,
        entry_prefix: &str,
        entity_type: &str,
        entity_id: &str,
    ) {
        out.reserve(entry_prefix.len() + entity_type.len() + entity_id.len() + 5);
        out.push_str(entry_prefix);
        out.push_str(entity_type);
        out.push_str(":{");
        out.push_str(entity_id);
        out.push('}');
    }

    /// Key of the version guard of one entity in generation 0: the cache key followed by
    /// `:v`.
    pub fn guard_key(&self, entity_type: &str, entity_id: &str) -> String {
        self.guard_key_in(0, entity_type, entity_id)
    }

    /// Key of the version guard of one entity in `generation`.
    pub fn guard_key_in(&self, generation: u64, entity_type: &str, entity_id: &str) -> String {
        let mut key = String::new();
        Self::push_guard_key(
            &mut key,
            &self.generation_prefix(generation),
            entity_type,
            entity_id,
        );
        key
    }

    /// Append the guard key of one entity to `out`, as [`KeyLayout::push_cache_key`].
    pub fn push_guard_key(
        out: &mut String,
        entry_prefix: &str,
        entity_type: &str,
        entity_id: &str,
    ) {
        Self::push_cache_key(out, entry_prefix, entity_type, entity_id);
        out.push_str(":v");
    }

    /// Key of the generation counter of one tag: `<prefix>_tag:{<tag>}`.
    pub fn tag_key(&self, tag: &str) -> String {
        format!("{}_tag:{{{tag}}}", self.prefix)
    }

    /// Key of one cached search result in generation 0:
    /// `<prefix>_search:<namespace>:<digest>`.
    pub fn search_key(&self, namespace: &str, digest_hex: &str) -> String {
        self.search_key_in(0, namespace, digest_hex)
    }

    /// Key of one cached search result in `generation`.
    pub fn search_key_in(&self, generation: u64, namespace: &str, digest_hex: &str) -> String {
        format!(
            "{}_search:{namespace}:{digest_hex}",
            self.generation_prefix(generation)
        )
    }

    /// `SCAN MATCH` patterns that together cover every key of `generation` (cached
    /// values, guards, search results). They can also match keys of another layout whose
    /// prefix extends this one; [`KeyLayout::is_generation_key`] decides exactly.
    pub fn generation_patterns(&self, generation: u64) -> Vec<String> {
        let start = glob_escape(&self.generation_prefix(generation));
        if generation == 0 {
            // Generation 0 shares the bare prefix with Syncline's own `_` keys and with
            // every later generation; an entity type starts with [a-z0-9], so this
            // pattern skips all of those.
            vec![format!("{start}[a-z0-9]*"), format!("{start}_search:*")]
        } else {
            vec![format!("{start}*")]
        }
    }

    /// Is `key` a cached value, guard or search result of `generation` under this layout?
    pub fn is_generation_key(&self, generation: u64, key: &[u8]) -> bool {
        let start = self.generation_prefix(generation);
        let Some(rest) = key.strip_prefix(start.as_bytes()) else {
            return false;
        };
        if rest.starts_with(b"_search:") {
            return true;
        }
        // `<entity_type>:{...}`: the entity type is [a-z0-9][a-z0-9_-]{0,63} and ends at
        // the first ':' (it cannot hold one), which must be followed by the hash tag.
        let Some(colon) = rest.iter().position(|b| *b == b':') else {
            return false;
        };
        let (entity_type, tail) = rest.split_at(colon);
        let type_ok = entity_type.len() <= 64
            && entity_type
                .first()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && entity_type
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
        type_ok && tail.starts_with(b":{")
    }

    /// A `SCAN MATCH` pattern covering every key of this layout (for clean-up in tests
    /// and benchmarks). Glob metacharacters in the prefix are escaped.
    pub fn scan_pattern(&self) -> String {
        let mut pattern = glob_escape(&self.prefix);
        pattern.push('*');
        pattern
    }
}

/// `s` with the glob metacharacters of `SCAN MATCH` escaped.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 1);
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
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
    fn generation_zero_is_the_old_layout_and_later_ones_move_under_g() {
        let l = KeyLayout::default();
        assert_eq!(l.generation_key(), "syncline:_gen");
        assert_eq!(
            l.cache_key_in(0, "product", "42"),
            l.cache_key("product", "42")
        );
        assert_eq!(
            l.guard_key_in(0, "product", "42"),
            l.guard_key("product", "42")
        );
        assert_eq!(l.search_key_in(0, "s", "ab"), l.search_key("s", "ab"));
        assert_eq!(
            l.cache_key_in(3, "product", "42"),
            "syncline:_g3:product:{42}"
        );
        assert_eq!(
            l.guard_key_in(3, "product", "42"),
            "syncline:_g3:product:{42}:v"
        );
        assert_eq!(l.search_key_in(3, "s", "ab"), "syncline:_g3:_search:s:ab");
    }

    #[test]
    fn generation_keys_are_told_apart() {
        let l = KeyLayout::default();
        let owned = |g: u64, k: &str| l.is_generation_key(g, k.as_bytes());
        assert!(owned(0, "syncline:product:{1}"));
        assert!(owned(0, "syncline:product:{1}:v"));
        assert!(owned(0, "syncline:_search:s:ab"));
        assert!(!owned(0, "syncline:_g1:product:{1}"));
        assert!(!owned(0, "syncline:_gen"));
        assert!(!owned(0, "syncline:_tag:{x}"));
        assert!(!owned(0, "syncline:_rebuild"));
        // A nested prefix `syncline:a:` is another deployment.
        assert!(!owned(0, "syncline:a:product:{1}"));
        assert!(owned(1, "syncline:_g1:product:{1}:v"));
        assert!(owned(1, "syncline:_g1:_search:s:ab"));
        assert!(!owned(1, "syncline:_g12:product:{1}"));
        assert!(!owned(2, "syncline:_g1:product:{1}"));
        assert_eq!(
            l.generation_patterns(0),
            vec!["syncline:[a-z0-9]*", "syncline:_search:*"]
        );
        assert_eq!(l.generation_patterns(7), vec!["syncline:_g7:*"]);
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
