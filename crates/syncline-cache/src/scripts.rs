//! The server-side Lua scripts and how to call them.
//!
//! The entity scripts compare versions and write in one atomic step on the server, touching
//! the cached value and its guard (one hash tag) and the prefix's generation key.
//!
//! **Generations.** Every script takes the generation its caller built the keys for and
//! first reads `<prefix>_gen` (missing = 0) in the same atomic step. If the caller's
//! generation is not the current one, the script touches nothing and fails with the error
//! reply `SYNCLINE_GEN <current>` ([`CacheError::GenerationChanged`]); the caller rebuilds its
//! keys for the current generation and asks again (a reader, the invalidator) or gives up
//! (a cache-aside store whose load predates the switch: see [`crate::Cache::get_or_load`]).
//! So after one `INCR` of the generation key nobody reads or writes the old generation's
//! keys any more, however long they cached the old number. APPLY alone also accepts a
//! generation *newer* than the current one: that is a rebuild warming the next generation
//! before it switches to it.
//!
//! * **APPLY** (used by the invalidator): for each of up to [`MAX_APPLY_EVENTS`] change
//!   events, if the event's version is newer than the highest version Redis knows for the
//!   entity, delete the cached value (`invalidate` mode, and deletes in `refresh` mode) or
//!   write the event's document (`refresh` mode UPSERT, with the cache TTL), then set the
//!   guard to the event's version with the guard TTL. Equal or older versions change
//!   nothing. Returns one integer per event: 1 (applied) or 0 (stale). Several events per
//!   call because the fixed cost of a script call (~9 µs on the development machine) was
//!   most of Redis's time per event; each event is still checked and written on its own.
//! * **STORE** (used by [`crate::Cache::get_or_load`]): write a loaded `(version, document)`
//!   only if the version is at least the highest known one, then set the guard to it.
//!   Returns 1 (stored) or 0 (refused).
//! * **GET** (used by [`crate::Cache::get`] and the search cache): the value of one key of
//!   the caller's generation.
//! * **SET** (used by the search cache): write one search result with a TTL, in the
//!   caller's generation only.
//!
//! "Highest known version" is the guard; only when there is no (valid) guard is it the
//! version inside the cached value (a guard evicted under memory pressure must not let an
//! older version win); with neither it counts as -1. Reading the value only then is exact,
//! not a shortcut: both scripts write a value only together with a guard at least its
//! version, and raise a guard only to a version above what is known, so while a guard
//! exists no cached value is newer than it. Versions travel as canonical decimal strings and are
//! compared as strings (length first), because Lua numbers are doubles and lose precision
//! above 2^53, which real transaction ids and timestamps exceed.
//!
//! Scripts are called with `EVALSHA`; [`invoke`] loads a script on `NOSCRIPT` (an empty
//! script cache after a Redis restart or failover) and retries once. Pipelined callers (the
//! invalidator) build [`ApplyCall`]s and handle `NOSCRIPT` per reply with [`is_noscript`].

use std::sync::LazyLock;

use redis::{aio::ConnectionLike, Cmd, Script, Value};
use syncline_event::{EventRef, Op};

use crate::{error::CacheError, keys::KeyLayout, ttl::Ttls};

/// Helpers shared by both scripts (kept in one literal so both scripts use the same text).
macro_rules! prelude {
    () => {
        r#"
local function valid(s)
  return s and #s > 0 and #s <= 19 and string.match(s, '^%d+$') ~= nil
    and (s == '0' or string.sub(s, 1, 1) ~= '0')
end
local function newer(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
local function known(cache_key, guard_key)
  local g = redis.call('GET', guard_key)
  if valid(g) then return g end
  local head = redis.call('GETRANGE', cache_key, 0, 20)
  local nl = string.find(head, '\n', 1, true)
  if nl then
    local c = string.sub(head, 1, nl - 1)
    if valid(c) then return c end
  end
  return nil
end
local BAD_VERSION = 'ERR syncline: version must be a canonical decimal >= 0'
local function generation(gen_key)
  return redis.call('GET', gen_key) or '0'
end
local function gen_changed(cur)
  return redis.error_reply('SYNCLINE_GEN ' .. cur)
end
"#
    };
}

/// APPLY: KEYS = [generation key, cache key 1, guard key 1, cache key 2, guard key 2, ...];
/// ARGV = [cache TTL ms, guard TTL ms, notice channel (empty: none), generation of the keys,
/// then per event: version, action (`del` | `set`), document, notice message]. A notice is
/// PUBLISHed only for an event that was applied, so subscribers never hear about stale
/// duplicates. All versions are checked before anything is written: one bad version fails
/// the whole call. Keys of an older generation than the current one: `SYNCLINE_GEN`.
pub const APPLY_LUA: &str = concat!(
    prelude!(),
    r#"
local n = (#KEYS - 1) / 2
if n ~= math.floor(n) or #ARGV ~= 4 + 4 * n then
  return redis.error_reply('ERR syncline: APPLY wants 1 + 2 keys and 4 + 4 arguments per event')
end
local want = ARGV[4]
if not valid(want) then
  return redis.error_reply('ERR syncline: generation must be a canonical decimal >= 0')
end
local cur = generation(KEYS[1])
-- Writing an older generation would be invisible to readers and never cleaned up; a
-- newer one is a rebuild warming the generation it is about to switch to.
if cur ~= want and not (valid(cur) and newer(want, cur)) then return gen_changed(cur) end
for i = 1, n do
  if not valid(ARGV[4 * i + 1]) then return redis.error_reply(BAD_VERSION) end
end
local out = {}
for i = 1, n do
  local ck, gk, a = KEYS[2 * i], KEYS[2 * i + 1], 4 * i + 1
  local v = ARGV[a]
  local cur = known(ck, gk)
  if cur and not newer(v, cur) then
    out[i] = 0
  else
    if ARGV[a + 1] == 'set' then
      redis.call('SET', ck, v .. '\n' .. ARGV[a + 2], 'PX', ARGV[1])
    else
      redis.call('DEL', ck)
    end
    redis.call('SET', gk, v, 'PX', ARGV[2])
    if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[a + 3]) end
    out[i] = 1
  end
end
return out
"#
);

/// STORE: KEYS = [generation key, cache key, guard key]; ARGV = [generation of the keys,
/// version, cache TTL ms, guard TTL ms, document].
pub const STORE_LUA: &str = concat!(
    prelude!(),
    r#"
local g = generation(KEYS[1])
if g ~= ARGV[1] then return gen_changed(g) end
local v = ARGV[2]
if not valid(v) then return redis.error_reply(BAD_VERSION) end
local cur = known(KEYS[2], KEYS[3])
if cur and newer(cur, v) then return 0 end
redis.call('SET', KEYS[2], v .. '\n' .. ARGV[5], 'PX', ARGV[3])
redis.call('SET', KEYS[3], v, 'PX', ARGV[4])
return 1
"#
);

/// GET: KEYS = [generation key, key]; ARGV = [generation of the key]. The value or nil.
pub const GET_LUA: &str = concat!(
    prelude!(),
    r#"
local g = generation(KEYS[1])
if g ~= ARGV[1] then return gen_changed(g) end
return redis.call('GET', KEYS[2])
"#
);

/// SET: KEYS = [generation key, key]; ARGV = [generation of the key, value, TTL ms]. 1.
pub const SET_LUA: &str = concat!(
    prelude!(),
    r#"
local g = generation(KEYS[1])
if g ~= ARGV[1] then return gen_changed(g) end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
"#
);

static APPLY: LazyLock<Script> = LazyLock::new(|| Script::new(APPLY_LUA));
static STORE: LazyLock<Script> = LazyLock::new(|| Script::new(STORE_LUA));
static GET: LazyLock<Script> = LazyLock::new(|| Script::new(GET_LUA));
static SET: LazyLock<Script> = LazyLock::new(|| Script::new(SET_LUA));

/// The error code of a script refusing keys of another generation.
pub const GENERATION_CHANGED: &str = "SYNCLINE_GEN";

/// The APPLY script (its SHA1 is what `EVALSHA` calls).
pub fn apply_script() -> &'static Script {
    &APPLY
}

/// The STORE script.
pub fn store_script() -> &'static Script {
    &STORE
}

/// The GET script.
pub fn get_script() -> &'static Script {
    &GET
}

/// The SET script.
pub fn set_script() -> &'static Script {
    &SET
}

/// How change events change cached values. With the `serde` feature it reads and writes
/// as `"invalidate"` / `"refresh"`; with the `clap` feature it is a flag value
/// (`--redis-mode refresh`) whose `--help` lists both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Mode {
    /// Delete the cached value; the next read loads it (default: never caches what nobody
    /// reads, and writes no document bytes to Redis).
    #[default]
    Invalidate,
    /// Write the event's document as the new cached value (deletes still delete).
    Refresh,
}

impl Mode {
    /// The configuration spelling (`invalidate` / `refresh`).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Invalidate => "invalidate",
            Mode::Refresh => "refresh",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Mode {
    type Err = CacheError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "invalidate" => Ok(Mode::Invalidate),
            "refresh" => Ok(Mode::Refresh),
            other => Err(CacheError::Config(format!(
                "mode must be `invalidate` or `refresh`, got {other:?}"
            ))),
        }
    }
}

/// What a script did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The version was newer (APPLY) or at least the known one (STORE): Redis changed.
    Applied,
    /// Redis already knew an equal or newer version (APPLY) or a newer one (STORE).
    Stale,
}

fn check_version(version: i64) -> Result<i64, CacheError> {
    if version < 0 {
        return Err(CacheError::NegativeVersion(version));
    }
    Ok(version)
}

/// Most events one APPLY call takes. Redis runs a script without serving anyone else, so
/// this bounds how long one call holds the server (about 0.5 ms here).
pub const MAX_APPLY_EVENTS: usize = 64;

/// Builds one `EVALSHA` of the APPLY script for up to [`MAX_APPLY_EVENTS`] events.
///
/// All keys of one call must live on one node; on a single Redis (or a Sentinel-managed
/// primary) that always holds. A Redis Cluster caller would group events by hash slot.
/// Documents and notices are borrowed, not copied: they go straight from the events into
/// the command. The keys are written back to back into one buffer: a `String` per key
/// was most of the allocations the invalidator made per event.
#[derive(Debug, Clone)]
pub struct ApplyCall<'a> {
    /// The generation key, then each event's cache key and guard key.
    keys: String,
    /// Where each key in `keys` ends.
    key_ends: Vec<usize>,
    /// Where the entry keys of `generation` start ([`KeyLayout::generation_prefix`]).
    entry_prefix: String,
    /// The script's first arguments: cache TTL, guard TTL, channel, generation.
    head: [String; 4],
    /// Per event: version, action, document, notice.
    events: Vec<(i64, &'static str, &'a str, &'a str)>,
    mode: Mode,
    generation: u64,
}

impl<'a> ApplyCall<'a> {
    /// An empty call writing the keys of `generation` under `layout`; `channel` =
    /// `Some(name)` PUBLISHes each applied event's notice there.
    pub fn new(
        layout: &KeyLayout,
        generation: u64,
        mode: Mode,
        ttls: &Ttls,
        channel: Option<&str>,
    ) -> Self {
        let keys = layout.generation_key();
        ApplyCall {
            key_ends: vec![keys.len()],
            keys,
            entry_prefix: layout.generation_prefix(generation),
            head: [
                ttls.cache_ttl_ms().to_string(),
                ttls.guard_ttl_ms().to_string(),
                channel.unwrap_or_default().to_owned(),
                generation.to_string(),
            ],
            events: Vec::new(),
            mode,
            generation,
        }
    }

    /// The generation whose keys this call writes.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Add one event (with its notice message when a channel is set). Errors only on a
    /// negative version, leaving the call unchanged.
    pub fn push(&mut self, event: EventRef<'a>, notice: Option<&'a str>) -> Result<(), CacheError> {
        let version = check_version(event.version)?;
        let (action, document) = match (self.mode, event.op, event.document) {
            (Mode::Refresh, Op::Upsert, Some(doc)) => ("set", doc),
            _ => ("del", ""),
        };
        KeyLayout::push_cache_key(
            &mut self.keys,
            &self.entry_prefix,
            event.entity_type,
            event.entity_id,
        );
        self.key_ends.push(self.keys.len());
        KeyLayout::push_guard_key(
            &mut self.keys,
            &self.entry_prefix,
            event.entity_type,
            event.entity_id,
        );
        self.key_ends.push(self.keys.len());
        self.events
            .push((version, action, document, notice.unwrap_or_default()));
        Ok(())
    }

    /// Events added so far.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// No event added yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Room for another event.
    pub fn is_full(&self) -> bool {
        self.len() >= MAX_APPLY_EVENTS
    }

    /// The command.
    pub fn cmd(&self) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(APPLY.get_hash()).arg(self.key_ends.len());
        let mut start = 0;
        for &end in &self.key_ends {
            cmd.arg(self.keys.get(start..end).unwrap_or_default());
            start = end;
        }
        for a in &self.head {
            cmd.arg(a.as_str());
        }
        for &(version, action, document, notice) in &self.events {
            cmd.arg(version).arg(action).arg(document).arg(notice);
        }
        cmd
    }

    /// The call's reply as one outcome per event, in the order they were added.
    pub fn outcomes(&self, reply: &Value) -> Result<Vec<ApplyOutcome>, CacheError> {
        let unexpected = || CacheError::UnexpectedReply {
            script: "APPLY",
            reply: format!("{reply:?}"),
        };
        let Value::Array(items) = reply else {
            return Err(unexpected());
        };
        if items.len() != self.len() {
            return Err(unexpected());
        }
        items
            .iter()
            .map(|item| match item {
                Value::Int(1) => Ok(ApplyOutcome::Applied),
                Value::Int(0) => Ok(ApplyOutcome::Stale),
                _ => Err(unexpected()),
            })
            .collect()
    }
}

/// The `EVALSHA` command storing a loaded value (cache-aside) in `generation`.
pub fn store_cmd(
    layout: &KeyLayout,
    generation: u64,
    entity_type: &str,
    entity_id: &str,
    version: i64,
    document: &str,
    ttls: &Ttls,
) -> Result<Cmd, CacheError> {
    let version = check_version(version)?;
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(STORE.get_hash())
        .arg(3)
        .arg(layout.generation_key())
        .arg(layout.cache_key_in(generation, entity_type, entity_id))
        .arg(layout.guard_key_in(generation, entity_type, entity_id))
        .arg(generation)
        .arg(version)
        .arg(ttls.cache_ttl_ms())
        .arg(ttls.guard_ttl_ms())
        .arg(document);
    Ok(cmd)
}

/// The `EVALSHA` command reading `key`, a key of `generation` under `layout`.
pub fn get_cmd(layout: &KeyLayout, generation: u64, key: &str) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(GET.get_hash())
        .arg(2)
        .arg(layout.generation_key())
        .arg(key)
        .arg(generation);
    cmd
}

/// The `EVALSHA` command writing `value` at `key` (a key of `generation`) for `ttl_ms`.
pub fn set_cmd(layout: &KeyLayout, generation: u64, key: &str, value: &str, ttl_ms: u64) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(SET.get_hash())
        .arg(2)
        .arg(layout.generation_key())
        .arg(key)
        .arg(generation)
        .arg(value)
        .arg(ttl_ms);
    cmd
}

/// If this pipelined reply is a script's refusal of another generation's keys, the
/// current generation (an unreadable number is an error).
pub fn generation_changed(reply: &Value) -> Option<Result<u64, CacheError>> {
    match reply {
        Value::ServerError(e) if e.code() == GENERATION_CHANGED => {
            Some(parse_generation(e.details().unwrap_or_default()))
        }
        _ => None,
    }
}

fn parse_generation(detail: &str) -> Result<u64, CacheError> {
    detail.trim().parse().map_err(|_| CacheError::Malformed {
        key: "<prefix>_gen".into(),
        reason: format!("generation {detail:?} is not a decimal u64"),
    })
}

/// Interpret the STORE script's reply (1 = stored, 0 = refused).
pub fn parse_store_outcome(reply: &Value) -> Result<ApplyOutcome, CacheError> {
    match reply {
        Value::Int(1) => Ok(ApplyOutcome::Applied),
        Value::Int(0) => Ok(ApplyOutcome::Stale),
        other => Err(CacheError::UnexpectedReply {
            script: "STORE",
            reply: format!("{other:?}"),
        }),
    }
}

/// Is this pipelined reply a `NOSCRIPT` error (the server's script cache lacks the script)?
pub fn is_noscript(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(e) if e.code() == "NOSCRIPT")
}

/// Run one script command built by [`ApplyCall`], [`store_cmd`], [`get_cmd`] or
/// [`set_cmd`]; on `NOSCRIPT`, load `script` and run it once more. A refusal of another
/// generation's keys is [`CacheError::GenerationChanged`].
pub async fn invoke<C: ConnectionLike>(
    conn: &mut C,
    script: &Script,
    cmd: &Cmd,
) -> Result<Value, CacheError> {
    let result = match cmd.query_async::<Value>(conn).await {
        Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
            tracing::debug!(
                sha = script.get_hash(),
                "script missing on the server; loading it"
            );
            script.load_async(conn).await?;
            cmd.query_async::<Value>(conn).await
        }
        other => other,
    };
    match result {
        Err(e) if e.code() == Some(GENERATION_CHANGED) => Err(CacheError::GenerationChanged(
            parse_generation(e.detail().unwrap_or_default())?,
        )),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_parses_its_two_spellings_only() {
        assert_eq!("invalidate".parse::<Mode>().ok(), Some(Mode::Invalidate));
        assert_eq!("refresh".parse::<Mode>().ok(), Some(Mode::Refresh));
        assert!("Refresh".parse::<Mode>().is_err());
    }

    #[test]
    fn negative_versions_are_refused_before_redis() {
        let layout = KeyLayout::default();
        let r = store_cmd(&layout, 0, "t", "1", -1, "{}", &Ttls::default());
        assert!(matches!(r, Err(CacheError::NegativeVersion(-1))));
    }
}
