//! The server-side Lua scripts and how to call them.
//!
//! Both scripts compare versions and write in one atomic step on the server, touching only
//! the cached value and its guard (one hash tag, so one cluster slot).
//!
//! * **APPLY** (used by the invalidator for each change event): if the event's version is
//!   newer than the highest version Redis knows for the entity, delete the cached value
//!   (`invalidate` mode, and deletes in `refresh` mode) or write the event's document
//!   (`refresh` mode UPSERT, with the cache TTL), then set the guard to the event's version
//!   with the guard TTL. Equal or older versions change nothing. Returns 1 (applied) or
//!   0 (stale).
//! * **STORE** (used by [`crate::Cache::get_or_load`]): write a loaded `(version, document)`
//!   only if the version is at least the highest known one, then set the guard to it.
//!   Returns 1 (stored) or 0 (refused).
//!
//! "Highest known version" is the guard, or the version inside the cached value when that
//! is higher (a guard evicted under memory pressure must not let an older version win);
//! a missing guard counts as -1. Versions travel as canonical decimal strings and are
//! compared as strings (length first), because Lua numbers are doubles and lose precision
//! above 2^53, which real transaction ids and timestamps exceed.
//!
//! Scripts are called with `EVALSHA`; [`invoke`] loads a script on `NOSCRIPT` (an empty
//! script cache after a Redis restart or failover) and retries once. Pipelined callers (the
//! invalidator) use [`apply_cmd`] and handle `NOSCRIPT` per reply with [`is_noscript`].

use std::sync::LazyLock;

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
  local best = nil
  local g = redis.call('GET', guard_key)
  if valid(g) then best = g end
  local head = redis.call('GETRANGE', cache_key, 0, 20)
  local nl = string.find(head, '\n', 1, true)
  if nl then
    local c = string.sub(head, 1, nl - 1)
    if valid(c) and (best == nil or newer(c, best)) then best = c end
  end
  return best
end
local v = ARGV[1]
if not valid(v) then
  return redis.error_reply('ERR syncline: version must be a canonical decimal >= 0')
end
"#
    };
}

/// APPLY: KEYS = [cache key, guard key];
/// ARGV = [version, action (`del` | `set`), cache TTL ms, guard TTL ms, document,
/// notice channel (empty: none), notice message]. The notice is PUBLISHed only when the
/// event was applied, so subscribers never hear about stale duplicates.
pub const APPLY_LUA: &str = concat!(
    prelude!(),
    r#"
local cur = known(KEYS[1], KEYS[2])
if cur and not newer(v, cur) then return 0 end
if ARGV[2] == 'set' then
  redis.call('SET', KEYS[1], v .. '\n' .. ARGV[5], 'PX', ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
redis.call('SET', KEYS[2], v, 'PX', ARGV[4])
if ARGV[6] and ARGV[6] ~= '' then
  redis.call('PUBLISH', ARGV[6], ARGV[7])
end
return 1
"#
);

/// STORE: KEYS = [cache key, guard key]; ARGV = [version, cache TTL ms, guard TTL ms, document].
pub const STORE_LUA: &str = concat!(
    prelude!(),
    r#"
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

/// The `EVALSHA` command applying one change event; with `notice = Some((channel,
/// message))` the script also PUBLISHes `message` on `channel` if it applied the event.
/// Errors only on a negative version.
pub fn apply_cmd(
    layout: &KeyLayout,
    event: &ChangeEvent,
    mode: Mode,
    ttls: &Ttls,
    notice: Option<(&str, &str)>,
) -> Result<Cmd, CacheError> {
    let version = check_version(event.version)?;
    let (action, document) = match (mode, event.op, &event.document) {
        (Mode::Refresh, Op::Upsert, Some(doc)) => ("set", doc.as_str()),
        _ => ("del", ""),
    };
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(APPLY.get_hash())
        .arg(2)
        .arg(layout.cache_key(&event.entity_type, &event.entity_id))
        .arg(layout.guard_key(&event.entity_type, &event.entity_id))
        .arg(version)
        .arg(action)
        .arg(ttls.cache_ttl_ms())
        .arg(ttls.guard_ttl_ms())
        .arg(document);
    if let Some((channel, message)) = notice {
        cmd.arg(channel).arg(message);
    }
    Ok(cmd)
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

/// Interpret a script's reply (1 = applied, 0 = stale).
pub fn parse_outcome(script: &'static str, reply: &Value) -> Result<ApplyOutcome, CacheError> {
    match reply {
        Value::Int(1) => Ok(ApplyOutcome::Applied),
        Value::Int(0) => Ok(ApplyOutcome::Stale),
        other => Err(CacheError::UnexpectedReply {
            script,
            reply: format!("{other:?}"),
        }),
    }
}

/// Is this pipelined reply a `NOSCRIPT` error (the server's script cache lacks the script)?
pub fn is_noscript(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(e) if e.code() == "NOSCRIPT")
}

/// Run one script command built by [`apply_cmd`] or [`store_cmd`]; on `NOSCRIPT`, load
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
