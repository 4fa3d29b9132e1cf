//! Operator helpers.

use redis::aio::ConnectionLike;

use crate::{error::CacheError, keys::KeyLayout};

/// Delete every key under the layout's prefix (`SCAN MATCH` + `UNLINK` in batches) and
/// return how many were deleted. For tests, benchmarks and decommissioning a prefix: it
/// walks the whole keyspace, so do not run it on a hot path.
pub async fn purge_prefix<C: ConnectionLike>(
    conn: &mut C,
    layout: &KeyLayout,
) -> Result<u64, CacheError> {
    let pattern = layout.scan_pattern();
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        if !keys.is_empty() {
            let n: u64 = redis::cmd("UNLINK").arg(&keys).query_async(conn).await?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// The key prefix's current generation (`<prefix>_gen`; missing = 0).
pub async fn current_generation<C: ConnectionLike>(
    conn: &mut C,
    layout: &KeyLayout,
) -> Result<u64, CacheError> {
    let key = layout.generation_key();
    let raw: Option<String> = redis::cmd("GET").arg(&key).query_async(conn).await?;
    match raw {
        None => Ok(0),
        Some(s) => s.parse().map_err(|_| CacheError::Malformed {
            key,
            reason: format!("generation {s:?} is not a decimal u64"),
        }),
    }
}

/// Where the removal of one generation's keys stands: which of
/// [`KeyLayout::generation_patterns`] is being scanned, and the `SCAN` cursor in it. Both
/// survive a restart (a `SCAN` cursor stays valid across connections), so a removal can be
/// resumed from a saved position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnlinkCursor {
    /// Index into the generation's patterns.
    pub pattern: usize,
    /// `SCAN` cursor within that pattern (0 = start).
    pub cursor: u64,
}

/// What one [`unlink_generation_step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnlinkStep {
    /// Keys `SCAN` returned for the pattern.
    pub matched: u64,
    /// Keys unlinked (matched keys that belong to the generation and still existed).
    pub unlinked: u64,
    /// Every pattern has been scanned to its end.
    pub done: bool,
}

/// One bounded step of removing `generation`'s keys: one `SCAN cursor MATCH pattern COUNT
/// count`, then one `UNLINK` of the returned keys that belong to the generation
/// ([`KeyLayout::is_generation_key`]), advancing `at`. Refuses the current generation (or a
/// later one): only a generation a switch has made unreachable may be removed. `SCAN`
/// returns every key that exists for the whole scan, so once `done`, no key of the old
/// generation is left (nobody writes one after the switch: the scripts refuse).
pub async fn unlink_generation_step<C: ConnectionLike>(
    conn: &mut C,
    layout: &KeyLayout,
    generation: u64,
    at: &mut UnlinkCursor,
    count: u64,
) -> Result<UnlinkStep, CacheError> {
    let current = current_generation(conn, layout).await?;
    if generation >= current {
        return Err(CacheError::Config(format!(
            "refusing to remove generation {generation} of prefix {:?}: the current generation \
             is {current}",
            layout.prefix()
        )));
    }
    let patterns = layout.generation_patterns(generation);
    let Some(pattern) = patterns.get(at.pattern) else {
        return Ok(UnlinkStep {
            done: true,
            ..UnlinkStep::default()
        });
    };
    let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
        .arg(at.cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(count.max(1))
        .query_async(conn)
        .await?;
    let matched = keys.len() as u64;
    let ours: Vec<Vec<u8>> = keys
        .into_iter()
        .filter(|k| layout.is_generation_key(generation, k))
        .collect();
    let unlinked = if ours.is_empty() {
        0
    } else {
        redis::cmd("UNLINK").arg(&ours).query_async(conn).await?
    };
    if next == 0 {
        *at = UnlinkCursor {
            pattern: at.pattern + 1,
            cursor: 0,
        };
    } else {
        at.cursor = next;
    }
    Ok(UnlinkStep {
        matched,
        unlinked,
        done: at.pattern >= patterns.len(),
    })
}
