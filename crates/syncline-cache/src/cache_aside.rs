//! Read-through caching of entities with version guards.
//!
//! [`Cache::get_or_load`] reads the cached value; on a miss it calls the application's
//! loader and stores the result through the STORE script, which refuses a version older
//! than the one Redis knows. The race this closes: a reader loads version N from the
//! database, an update to N+1 is committed and its event invalidates the cache (guard =
//! N+1), then the slow reader stores N. Without the guard, N would stay cached until its
//! TTL; with it, the store is refused.
//!
//! Every read and write goes through a script that checks the key prefix's generation in
//! the same atomic step (see [`crate::scripts`]). A [`Cache`] remembers the last generation
//! it saw; when a rebuild has switched it, the script says so and the cache retries with
//! the new generation's keys, so no read returns an entry of the old generation. A load
//! that started in the old generation is never stored in the new one: the new generation
//! starts without the old one's version guards, so such a load could be older than what
//! the invalidator had already applied.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redis::{aio::ConnectionManager, Client, Value};

use crate::connect::ConnectOptions;
use syncline_event::ChangeEvent;

use crate::{
    error::{CacheError, LoadError},
    keys::KeyLayout,
    scripts::{self, ApplyOutcome, Mode},
    ttl::Ttls,
    value::{self, Entry},
};

/// Where the entry returned by [`Cache::get_or_load`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Read from Redis.
    Hit,
    /// Loaded by the loader and stored in Redis.
    Stored,
    /// Loaded by the loader, but Redis already knew a newer version, so it was not
    /// stored. The loaded entry is still returned: it is what the loader saw.
    Refused,
}

/// An entry and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The document and its version.
    pub entry: Entry,
    /// Cache hit, stored load, or refused load.
    pub origin: Origin,
}

/// Result of [`Cache::store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// The value is now cached.
    Stored,
    /// Redis knows a newer version; nothing was written.
    Refused,
}

/// Version-guarded cache-aside access to entities cached under Syncline's key layout.
///
/// Cheap to clone: the connection is a multiplexed, self-reconnecting
/// [`ConnectionManager`].
#[derive(Clone)]
pub struct Cache {
    conn: ConnectionManager,
    layout: KeyLayout,
    ttls: Ttls,
    /// The prefix's generation as last confirmed by a script (shared by clones).
    generation: Arc<AtomicU64>,
}

/// How many generation switches in a row one call follows before giving up (each one is
/// an `INCR` by an operator; more than a couple during one call means something is wrong).
const MAX_GENERATION_RETRIES: usize = 8;

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("layout", &self.layout)
            .field("ttls", &self.ttls)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// A cache over an existing connection.
    pub fn new(conn: ConnectionManager, layout: KeyLayout, ttls: Ttls) -> Self {
        Cache {
            conn,
            layout,
            ttls,
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Connect to `url` (`redis://` or `rediss://`, ACL user and password allowed in it).
    pub async fn connect(url: &str, layout: KeyLayout, ttls: Ttls) -> Result<Self, CacheError> {
        let client = Client::open(url)?;
        let conn = ConnectionManager::new(client).await?;
        Ok(Cache::new(conn, layout, ttls))
    }

    /// Connect with full [`ConnectOptions`]: credentials besides the URL, and for
    /// `rediss://` a private CA and a client certificate. The TLS files are read and
    /// checked first; a TLS failure is reported with its cause (see
    /// [`crate::connect::tls_cause`]).
    pub async fn connect_with(
        options: &ConnectOptions,
        layout: KeyLayout,
        ttls: Ttls,
    ) -> Result<Self, CacheError> {
        let client = options.client()?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(options.connect_timeout)
            .set_response_timeout(options.response_timeout)
            .set_number_of_retries(2);
        let classify = |e: redis::RedisError| match crate::connect::tls_cause(&e) {
            Some(cause) => CacheError::Tls(format!("{cause} ({e})")),
            None => CacheError::Redis(e),
        };
        crate::connect::probe(&client, options.connect_timeout, options.response_timeout)
            .await
            .map_err(classify)?;
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(classify)?;
        Ok(Cache::new(conn, layout, ttls))
    }

    /// The key layout.
    pub fn layout(&self) -> &KeyLayout {
        &self.layout
    }

    /// The TTLs used when storing.
    pub fn ttls(&self) -> &Ttls {
        &self.ttls
    }

    /// A clone of the underlying connection.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The prefix's generation as last seen by this cache (0 before the first call).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Read `key_of(generation)` through the GET script, following generation switches.
    /// Returns the generation the value was read in.
    async fn read(
        &self,
        key_of: impl Fn(u64) -> String,
    ) -> Result<(u64, String, Option<Vec<u8>>), CacheError> {
        let mut conn = self.conn.clone();
        let mut generation = self.generation();
        for _ in 0..MAX_GENERATION_RETRIES {
            let key = key_of(generation);
            let cmd = scripts::get_cmd(&self.layout, generation, &key);
            match scripts::invoke(&mut conn, scripts::get_script(), &cmd).await {
                Ok(Value::Nil) => return Ok((generation, key, None)),
                Ok(Value::BulkString(raw)) => return Ok((generation, key, Some(raw))),
                Ok(other) => {
                    return Err(CacheError::UnexpectedReply {
                        script: "GET",
                        reply: format!("{other:?}"),
                    })
                }
                Err(CacheError::GenerationChanged(current)) => {
                    self.generation.store(current, Ordering::Relaxed);
                    generation = current;
                }
                Err(e) => return Err(e),
            }
        }
        Err(CacheError::GenerationChanged(generation))
    }

    /// The cached entry of the current generation, if any.
    pub async fn get(
        &self,
        entity_type: &str,
        entity_id: &str,
    ) -> Result<Option<Entry>, CacheError> {
        Ok(self.get_in(entity_type, entity_id).await?.1)
    }

    /// The cached entry and the generation it was read in.
    async fn get_in(
        &self,
        entity_type: &str,
        entity_id: &str,
    ) -> Result<(u64, Option<Entry>), CacheError> {
        let (generation, key, raw) = self
            .read(|g| self.layout.cache_key_in(g, entity_type, entity_id))
            .await?;
        let entry = raw.map(|r| value::decode(&key, &r)).transpose()?;
        Ok((generation, entry))
    }

    /// The entity's version guard in the current generation (the highest version an
    /// event or store has written there), if present.
    pub async fn guard(
        &self,
        entity_type: &str,
        entity_id: &str,
    ) -> Result<Option<i64>, CacheError> {
        let (_, key, raw) = self
            .read(|g| self.layout.guard_key_in(g, entity_type, entity_id))
            .await?;
        match raw {
            None => Ok(None),
            Some(r) => value::parse_version(&r)
                .map(Some)
                .ok_or(CacheError::Malformed {
                    key,
                    reason: "guard is not a decimal i64 >= 0".into(),
                }),
        }
    }

    /// Store a loaded entry unless Redis knows a newer version (atomic, server side).
    ///
    /// The entry goes into the generation this cache last saw. If a rebuild has switched
    /// the generation since, nothing is stored ([`StoreOutcome::Refused`]): the entry may
    /// have been loaded before the switch.
    pub async fn store(
        &self,
        entity_type: &str,
        entity_id: &str,
        entry: &Entry,
    ) -> Result<StoreOutcome, CacheError> {
        self.store_in(self.generation(), entity_type, entity_id, entry)
            .await
    }

    async fn store_in(
        &self,
        generation: u64,
        entity_type: &str,
        entity_id: &str,
        entry: &Entry,
    ) -> Result<StoreOutcome, CacheError> {
        let cmd = scripts::store_cmd(
            &self.layout,
            generation,
            entity_type,
            entity_id,
            entry.version,
            &entry.document,
            &self.ttls,
        )?;
        let mut conn = self.conn.clone();
        let reply = match scripts::invoke(&mut conn, scripts::store_script(), &cmd).await {
            Ok(reply) => reply,
            Err(CacheError::GenerationChanged(current)) => {
                self.generation.store(current, Ordering::Relaxed);
                return Ok(StoreOutcome::Refused);
            }
            Err(e) => return Err(e),
        };
        Ok(match scripts::parse_store_outcome(&reply)? {
            ApplyOutcome::Applied => StoreOutcome::Stored,
            ApplyOutcome::Stale => StoreOutcome::Refused,
        })
    }

    /// Read through the cache. On a miss, `loader` returns the entity's current
    /// `(document, version)` from the system of record, or `None` if it does not exist
    /// (nothing is cached then). The loaded entry is stored only if its version is at
    /// least the guard. Redis errors are returned, not hidden: callers that prefer to serve
    /// from the database while Redis is down can call their loader on `Err`.
    pub async fn get_or_load<F, Fut, E>(
        &self,
        entity_type: &str,
        entity_id: &str,
        loader: F,
    ) -> Result<Option<Lookup>, LoadError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Entry>, E>>,
    {
        let (generation, cached) = self.get_in(entity_type, entity_id).await?;
        if let Some(entry) = cached {
            return Ok(Some(Lookup {
                entry,
                origin: Origin::Hit,
            }));
        }
        let Some(entry) = loader().await.map_err(LoadError::Loader)? else {
            return Ok(None);
        };
        // Into the generation of the miss only: see the module docs.
        let origin = match self
            .store_in(generation, entity_type, entity_id, &entry)
            .await?
        {
            StoreOutcome::Stored => Origin::Stored,
            StoreOutcome::Refused => Origin::Refused,
        };
        Ok(Some(Lookup { entry, origin }))
    }

    /// Apply one change event the way the invalidator does (one round trip). Useful for an
    /// application that wants its own write visible in the cache immediately; the
    /// invalidator applying the same event later finds it stale.
    ///
    /// The event goes into the current generation (an event is safe in any generation:
    /// the new one's guards order it like the old one's did).
    pub async fn apply(&self, event: &ChangeEvent, mode: Mode) -> Result<ApplyOutcome, CacheError> {
        let mut conn = self.conn.clone();
        let mut generation = self.generation();
        for _ in 0..MAX_GENERATION_RETRIES {
            let mut call =
                scripts::ApplyCall::new(&self.layout, generation, mode, &self.ttls, None);
            call.push(event.view(), None)?;
            match scripts::invoke(&mut conn, scripts::apply_script(), &call.cmd()).await {
                Ok(reply) => {
                    let outcomes = call.outcomes(&reply)?;
                    return outcomes
                        .first()
                        .copied()
                        .ok_or(CacheError::UnexpectedReply {
                            script: "APPLY",
                            reply: format!("{reply:?}"),
                        });
                }
                Err(CacheError::GenerationChanged(current)) => {
                    self.generation.store(current, Ordering::Relaxed);
                    generation = current;
                }
                Err(e) => return Err(e),
            }
        }
        Err(CacheError::GenerationChanged(generation))
    }
}
