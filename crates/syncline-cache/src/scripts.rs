//! The server-side Lua scripts and how to call them.
//!
//! Both scripts compare versions and write in one atomic step on the server, touching only
//! the cached value and its guard (one hash tag, so one cluster slot).
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

use std::{borrow::Cow, sync::LazyLock};

use redis::{aio::ConnectionLike, Cmd, Script, Value};
use syncline_event::{ChangeEvent, Op};

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
"#
    };
}

/// APPLY: KEYS = [cache key 1, guard key 1, cache key 2, guard key 2, ...];
/// ARGV = [cache TTL ms, guard TTL ms, notice channel (empty: none), then per event:
/// version, action (`del` | `set`), document, notice message]. A notice is PUBLISHed only
/// for an event that was applied, so subscribers never hear about stale duplicates. All
/// versions are checked before anything is written: one bad version fails the whole call.
pub const APPLY_LUA: &str = concat!(
    prelude!(),
    r#"
local n = #KEYS / 2
if n ~= math.floor(n) or #ARGV ~= 3 + 4 * n then
  return redis.error_reply('ERR syncline: APPLY wants 2 keys and 4 arguments per event')
end
for i = 1, n do
  if not valid(ARGV[4 * i]) then return redis.error_reply(BAD_VERSION) end
end
local out = {}
for i = 1, n do
  local ck, gk, a = KEYS[2 * i - 1], KEYS[2 * i], 4 * i
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

/// STORE: KEYS = [cache key, guard key]; ARGV = [version, cache TTL ms, guard TTL ms, document].
pub const STORE_LUA: &str = concat!(
    prelude!(),
    r#"
local v = ARGV[1]
if not valid(v) then return redis.error_reply(BAD_VERSION) end
local cur = known(KEYS[1], KEYS[2])
if cur and newer(cur, v) then return 0 end
redis.call('SET', KEYS[1], v .. '\n' .. ARGV[4], 'PX', ARGV[2])
redis.call('SET', KEYS[2], v, 'PX', ARGV[3])
return 1
"#
);

static APPLY: LazyLock<Script> = LazyLock::new(|| Script::new(APPLY_LUA));
static STORE: LazyLock<Script> = LazyLock::new(|| Script::new(STORE_LUA));

/// The APPLY script (its SHA1 is what `EVALSHA` calls).
pub fn apply_script() -> &'static Script {
    &APPLY
}

/// The STORE script.
pub fn store_script() -> &'static Script {
    &STORE
}

/// How change events change cached values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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

fn check_version(version: i64) -> Result<String, CacheError> {
    if version < 0 {
        return Err(CacheError::NegativeVersion(version));
    }
    Ok(version.to_string())
}

/// Most events one APPLY call takes. Redis runs a script without serving anyone else, so
/// this bounds how long one call holds the server (about 0.5 ms here).
pub const MAX_APPLY_EVENTS: usize = 64;

/// Builds one `EVALSHA` of the APPLY script for up to [`MAX_APPLY_EVENTS`] events.
///
/// All keys of one call must live on one node; on a single Redis (or a Sentinel-managed
/// primary) that always holds. A Redis Cluster caller would group events by hash slot.
/// Documents and notices are borrowed, not copied: they go straight from the events into
/// the command.
#[derive(Debug, Clone)]
pub struct ApplyCall<'a> {
    keys: Vec<String>,
    args: Vec<Cow<'a, str>>,
    mode: Mode,
}

impl<'a> ApplyCall<'a> {
    /// An empty call; `channel` = `Some(name)` PUBLISHes each applied event's notice there.
    pub fn new(mode: Mode, ttls: &Ttls, channel: Option<&str>) -> Self {
        let args = vec![
            Cow::Owned(ttls.cache_ttl_ms().to_string()),
            Cow::Owned(ttls.guard_ttl_ms().to_string()),
            Cow::Owned(channel.unwrap_or_default().to_owned()),
        ];
        ApplyCall {
            keys: Vec::new(),
            args,
            mode,
        }
    }

    /// Add one event (with its notice message when a channel is set). Errors only on a
    /// negative version, leaving the call unchanged.
    pub fn push(
        &mut self,
        layout: &KeyLayout,
        event: &'a ChangeEvent,
        notice: Option<&'a str>,
    ) -> Result<(), CacheError> {
        let version = check_version(event.version)?;
        let (action, document) = match (self.mode, event.op, &event.document) {
            (Mode::Refresh, Op::Upsert, Some(doc)) => ("set", doc.as_str()),
            _ => ("del", ""),
        };
        self.keys
            .push(layout.cache_key(&event.entity_type, &event.entity_id));
        self.keys
            .push(layout.guard_key(&event.entity_type, &event.entity_id));
        self.args.extend([
            Cow::Owned(version),
            Cow::Borrowed(action),
            Cow::Borrowed(document),
            Cow::Borrowed(notice.unwrap_or_default()),
        ]);
        Ok(())
    }

    /// Events added so far.
    pub fn len(&self) -> usize {
        self.keys.len() / 2
    }

    /// No event added yet.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Room for another event.
    pub fn is_full(&self) -> bool {
        self.len() >= MAX_APPLY_EVENTS
    }

    /// The command.
    pub fn cmd(&self) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(APPLY.get_hash())
            .arg(self.keys.len())
            .arg(&self.keys);
        for a in &self.args {
            cmd.arg(a.as_ref());
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

/// The `EVALSHA` command storing a loaded value (cache-aside).
pub fn store_cmd(
    layout: &KeyLayout,
    entity_type: &str,
    entity_id: &str,
    version: i64,
    document: &str,
    ttls: &Ttls,
) -> Result<Cmd, CacheError> {
    let version = check_version(version)?;
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(STORE.get_hash())
        .arg(2)
        .arg(layout.cache_key(entity_type, entity_id))
        .arg(layout.guard_key(entity_type, entity_id))
        .arg(version)
        .arg(ttls.cache_ttl_ms())
        .arg(ttls.guard_ttl_ms())
        .arg(document);
    Ok(cmd)
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

/// Run one script command built by [`ApplyCall`] or [`store_cmd`]; on `NOSCRIPT`, load
/// `script` and run it once more.
pub async fn invoke<C: ConnectionLike>(
    conn: &mut C,
    script: &Script,
    cmd: &Cmd,
) -> Result<Value, CacheError> {
    match cmd.query_async::<Value>(conn).await {
        Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
            tracing::debug!(
                sha = script.get_hash(),
                "script missing on the server; loading it"
            );
            script.load_async(conn).await?;
            Ok(cmd.query_async::<Value>(conn).await?)
        }
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
        let r = store_cmd(&layout, "t", "1", -1, "{}", &Ttls::default());
        assert!(matches!(r, Err(CacheError::NegativeVersion(-1))));
    }
}
