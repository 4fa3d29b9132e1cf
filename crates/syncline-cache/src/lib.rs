//! Cache-aside helper for applications, and the one place that defines Syncline's Redis key
//! layout and server-side scripts (the Redis invalidator depends on this crate).
//!
//! * [`keys`]: where a cached entity, its version guard and a tag generation live.
//! * [`value`]: how a cached value carries its version (`<version>\n<document>`).
//! * [`scripts`]: the Lua scripts (APPLY for change events, STORE for cache-aside loads)
//!   that compare versions and write atomically on the server.
//! * [`cache_aside`]: [`Cache::get_or_load`], the read-through helper that never puts an
//!   older version back after an invalidation.
//! * [`connect`]: URL, ACL credentials and TLS files (private CA, client certificate)
//!   turned into a client; [`Cache::connect_with`] uses it.
//! * [`search_cache`]: search-result caching keyed by the query and its tags' generations;
//!   [`SearchCache::bump_tags`] retires every cached result for a tag in O(1).
//!
//! See the crate README for the full layout and the reasoning behind it.

pub mod admin;
pub mod cache_aside;
pub mod connect;
pub mod error;
pub mod keys;
pub mod scripts;
pub mod search_cache;
pub mod ttl;
pub mod value;

pub use cache_aside::{Cache, Lookup, Origin, StoreOutcome};
pub use connect::{ConnectOptions, RedisTlsFiles};
pub use error::{CacheError, LoadError};
pub use keys::{KeyLayout, DEFAULT_PREFIX};
pub use scripts::{ApplyOutcome, Mode};
pub use search_cache::{normalize_query, SearchCache, SearchLookup};
pub use ttl::Ttls;
pub use value::Entry;
