//! Typed errors of the cache helpers.

/// Why a cache operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Redis was unreachable, timed out or answered with an error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A value under one of Syncline's keys is not in the documented format.
    #[error("value at {key} is malformed: {reason}")]
    Malformed {
        /// The key that holds the value.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A script answered with something it never returns.
    #[error("unexpected reply from script {script}: {reply}")]
    UnexpectedReply {
        /// Which script.
        script: &'static str,
        /// The reply, debug-formatted.
        reply: String,
    },
    /// The TLS handshake failed for a reason retrying will not fix (untrusted server
    /// certificate, client certificate missing or refused).
    #[error("redis {0}")]
    Tls(String),
    /// A setting is out of range.
    #[error("invalid cache configuration: {0}")]
    Config(String),
    /// The key prefix's generation is no longer the one the keys were built for (a rebuild
    /// switched it); holds the current generation.
    #[error("the key prefix's generation changed to {0} (a rebuild switched it)")]
    GenerationChanged(u64),
    /// Versions are non-negative (the change event contract).
    #[error("version must be >= 0, got {0}")]
    NegativeVersion(i64),
}

/// Why [`crate::Cache::get_or_load`] or [`crate::SearchCache::get_or_compute`] failed:
/// either the cache or the application's own loader.
#[derive(Debug, thiserror::Error)]
pub enum LoadError<E> {
    /// The cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The application's loader failed.
    #[error("loader: {0}")]
    Loader(E),
}
