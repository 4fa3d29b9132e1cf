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
