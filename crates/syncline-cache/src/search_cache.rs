//! Search-result caching with tag generations.
//!
//! A cached result's key is a SHA-256 of the normalized query and the current generation
//! of each of its tags (`<prefix>_tag:{<tag>}`, a counter; missing = 0). Bumping a tag
//! (`INCR`, O(1) however many results mention it) changes the key every later reader
//! computes, so every result cached under the old generation is never read again and
//! expires with its TTL. Results for other tags keep their keys.
//!
//! Generations are read *before* the result is computed, so a result computed while a
//! tag is being bumped is stored under the old generation, where nobody looks any more.
//! Tag keys have no TTL (they are a few bytes each): a generation that expired or was
//! evicted would restart at 0 and could revive results cached under generation 0. Run
//! Redis with `noeviction` or a `volatile-*` policy so keys without TTL are never evicted.
//!
//! Results are also kept per key-prefix generation (see [`crate::keys`]): they are read
//! and written through the GET and SET scripts, which check the generation in the same
//! atomic step, so after a rebuild switched the generation no result cached before the
//! switch is returned, and a result computed across the switch is not cached.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::{fmt::Write as _, future::Future, time::Duration};

use redis::{aio::ConnectionManager, Value};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::{
    error::{CacheError, LoadError},
    keys::KeyLayout,
    scripts,
};

/// Generation switches one call follows before giving up (see [`crate::Cache`]).
const MAX_GENERATION_RETRIES: usize = 8;

/// A cached (or freshly computed) search result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchLookup {
    /// The result text.
    pub result: String,
    /// True if it came from Redis.
    pub hit: bool,
    /// The key it lives under.
    pub key: String,
}

/// Caches search results under keys derived from the query and its tags' generations.
#[derive(Clone)]
pub struct SearchCache {
    conn: ConnectionManager,
    layout: KeyLayout,
    namespace: String,
    ttl: Duration,
    /// The prefix's generation as last confirmed by a script (shared by clones).
    generation: Arc<AtomicU64>,
}

impl std::fmt::Debug for SearchCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchCache")
            .field("layout", &self.layout)
            .field("namespace", &self.namespace)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl SearchCache {
    /// A search cache for one family of queries (`namespace`, e.g. `product-search`:
    /// 1..=64 of `[A-Za-z0-9_.-]`), whose results live for `ttl` (>= 1 ms).
    pub fn new(
        conn: ConnectionManager,
        layout: KeyLayout,
        namespace: impl Into<String>,
        ttl: Duration,
    ) -> Result<Self, CacheError> {
        let namespace = namespace.into();
        let ok = !namespace.is_empty()
            && namespace.len() <= 64
            && namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(CacheError::Config(format!(
                "search namespace {namespace:?} must be 1..=64 of [A-Za-z0-9_.-]"
            )));
        }
        if ttl < Duration::from_millis(1) {
            return Err(CacheError::Config(format!(
                "search result ttl must be at least 1ms, got {ttl:?}"
            )));
        }
        Ok(SearchCache {
            conn,
            layout,
            namespace,
            ttl,
            generation: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The prefix's generation as last seen by this cache (0 before the first call).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Current generations of `tags` (sorted, deduplicated), in one round trip.
    ///
    /// Pipelined `GET`s rather than one `MGET`: the same single round trip on a standalone
    /// server, and it keeps working on Redis Cluster, where each tag key has its own slot.
    pub async fn generations<S: AsRef<str>>(
        &self,
        tags: &[S],
    ) -> Result<Vec<(String, u64)>, CacheError> {
        let mut tags: Vec<&str> = tags.iter().map(AsRef::as_ref).collect();
        tags.sort_unstable();
        tags.dedup();
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for tag in &tags {
            pipe.get(self.layout.tag_key(tag));
        }
        let mut conn = self.conn.clone();
        let gens: Vec<Option<u64>> = pipe.query_async(&mut conn).await?;
        Ok(tags
            .into_iter()
            .zip(gens)
            .map(|(t, g)| (t.to_owned(), g.unwrap_or(0)))
            .collect())
    }

    /// The key a result for `query` with these tag generations lives under, in the prefix
    /// generation this cache last saw.
    pub fn key_with_generations(&self, query: &Json, generations: &[(String, u64)]) -> String {
        self.key_in(self.generation(), query, generations)
    }

    /// The key a result for `query` with these tag generations lives under in the prefix
    /// generation `generation`.
    pub fn key_in(&self, generation: u64, query: &Json, generations: &[(String, u64)]) -> String {
        let mut h = Sha256::new();
        h.update(b"syncline-search-v1\0");
        h.update(normalize_query(query).as_bytes());
        for (tag, generation) in generations {
            // Length-prefixed so that no tag text can imitate a separator.
            h.update(format!("\0{}:{tag}={generation}", tag.len()).as_bytes());
        }
        self.layout
            .search_key_in(generation, &self.namespace, &hex::encode(h.finalize()))
    }

    /// The key for `query` under its tags' current generations (one round trip).
    pub async fn key_for<S: AsRef<str>>(
        &self,
        query: &Json,
        tags: &[S],
    ) -> Result<String, CacheError> {
        let gens = self.generations(tags).await?;
        Ok(self.key_with_generations(query, &gens))
    }

    /// Return the cached result for `query` (tagged with `tags`), or run `compute`, cache
    /// its result for the TTL and return it.
    pub async fn get_or_compute<S, F, Fut, E>(
        &self,
        query: &Json,
        tags: &[S],
        compute: F,
    ) -> Result<SearchLookup, LoadError<E>>
    where
        S: AsRef<str>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<String, E>>,
    {
        // Generations first, then compute: see the module docs for why the order matters.
        let gens = self.generations(tags).await?;
        let mut conn = self.conn.clone();
        let mut generation = self.generation();
        let mut missed = None;
        for _ in 0..MAX_GENERATION_RETRIES {
            let key = self.key_in(generation, query, &gens);
            let cmd = scripts::get_cmd(&self.layout, generation, &key);
            match scripts::invoke(&mut conn, scripts::get_script(), &cmd).await {
                Ok(Value::Nil) => {
                    missed = Some(key);
                    break;
                }
                Ok(Value::BulkString(raw)) => {
                    let result = String::from_utf8(raw).map_err(|_| CacheError::Malformed {
                        key: key.clone(),
                        reason: "search result is not UTF-8".into(),
                    })?;
                    return Ok(SearchLookup {
                        result,
                        hit: true,
                        key,
                    });
                }
                Ok(other) => {
                    return Err(CacheError::UnexpectedReply {
                        script: "GET",
                        reply: format!("{other:?}"),
                    }
                    .into())
                }
                Err(CacheError::GenerationChanged(current)) => {
                    self.generation.store(current, Ordering::Relaxed);
                    generation = current;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let Some(key) = missed else {
            return Err(CacheError::GenerationChanged(generation).into());
        };
        let result = compute().await.map_err(LoadError::Loader)?;
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let cmd = scripts::set_cmd(&self.layout, generation, &key, &result, ttl_ms);
        match scripts::invoke(&mut conn, scripts::set_script(), &cmd).await {
            // Computed across a switch: returned, but not cached in the new generation.
            Err(CacheError::GenerationChanged(current)) => {
                self.generation.store(current, Ordering::Relaxed);
            }
            other => {
                other?;
            }
        }
        Ok(SearchLookup {
            result,
            hit: false,
            key,
        })
    }

    /// Retire every cached result tagged with any of `tags` (one `INCR` per tag, one
    /// round trip). Returns the new generations in the given order.
    pub async fn bump_tags<S: AsRef<str>>(&self, tags: &[S]) -> Result<Vec<u64>, CacheError> {
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for tag in tags {
            pipe.incr(self.layout.tag_key(tag.as_ref()), 1);
        }
        let mut conn = self.conn.clone();
        Ok(pipe.query_async(&mut conn).await?)
    }
}

/// Canonical JSON text of a query: object keys sorted (by bytes), no insignificant
/// whitespace, so queries that differ only in key order or formatting share a cache key.
pub fn normalize_query(query: &Json) -> String {
    let mut out = String::new();
    write_canonical(query, &mut out);
    out
}

fn write_canonical(v: &Json, out: &mut String) {
    match v {
        Json::Object(map) => {
            let mut entries: Vec<(&String, &Json)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_canonical(val, out);
            }
            out.push('}');
        }
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Json::String(s) => write_string(s, out),
        // Null, booleans and numbers print canonically already.
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    // serde_json's escaping of a plain string cannot fail.
    out.push_str(&Json::String(s.to_owned()).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let a: Json =
            serde_json::from_str(r#"{"q":"shoe","filter":{"b":1,"a":[2, 1]}}"#).unwrap_or_default();
        let b: Json = serde_json::from_str(r#"{ "filter" : {"a":[2,1],"b":1}, "q":"shoe" }"#)
            .unwrap_or_default();
        assert_eq!(normalize_query(&a), normalize_query(&b));
        assert_eq!(
            normalize_query(&a),
            r#"{"filter":{"a":[2,1],"b":1},"q":"shoe"}"#
        );
    }

    #[test]
    fn array_order_matters() {
        let a = serde_json::json!({"a": [1, 2]});
        let b = serde_json::json!({"a": [2, 1]});
        assert_ne!(normalize_query(&a), normalize_query(&b));
    }
}
