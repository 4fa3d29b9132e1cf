//! The replay flags shared by `rebuild es` and `rebuild redis` (one definition, flattened
//! into both): which topic, where the replay starts, how fast it may go, and how the
//! history check treats a topic that has lost records. Also where a replay's consumer
//! group starts for `--from DATETIME`.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use syncline_consumer::RuntimeConfig;
use syncline_kafka::Connection;

/// Replay flags of both rebuild commands.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Topic with the change events (default: the config file's, else `changes`).
    #[arg(long, env = "SYNCLINE_TOPIC")]
    pub topic: Option<String>,
    /// Where the replay starts: `earliest`, or an RFC 3339 time (events before it are
    /// not replayed; use only when they are already covered by a backfill).
    #[arg(long, default_value = "earliest", value_parser = parse_from)]
    pub from: From,
    /// Proceed even when the topic no longer holds the whole history (entities whose
    /// events are gone are absent from the result until a new event brings them).
    #[arg(long)]
    pub allow_partial: bool,
    /// Limit of events per second handed to the sink during the replay.
    #[arg(long)]
    pub events_per_second: Option<u32>,
    /// History check: records this close to deletion by `retention.ms` count as lost.
    #[arg(long, default_value = "1h", value_parser = crate::humantime_duration)]
    pub retention_margin: Duration,
}

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// Offset 0 of every partition (the whole history).
    Earliest,
    /// The first record at or after this time (ms since the epoch).
    Time(i64),
}

/// Parse `--from`: `earliest` or an RFC 3339 time.
pub fn parse_from(s: &str) -> Result<From, String> {
    if s.eq_ignore_ascii_case("earliest") {
        return Ok(From::Earliest);
    }
    let t = humantime::parse_rfc3339_weak(s).map_err(|e| {
        format!("expected `earliest` or an RFC 3339 time like 2026-12-01T10:00:00Z: {e}")
    })?;
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "time before 1970".to_owned())?
        .as_millis();
    i64::try_from(ms)
        .map(From::Time)
        .map_err(|_| "time out of range".to_owned())
}

impl ReplayArgs {
    /// Put the topic and the rate limit into the replay's consumer settings.
    pub fn apply(&self, runtime: &mut RuntimeConfig) {
        if let Some(t) = &self.topic {
            runtime.topic = t.clone();
        }
        if self.events_per_second.is_some() {
            runtime.events_per_second = self.events_per_second;
        }
    }

    /// The time before which records are not needed (`--from DATETIME`), for the history
    /// check.
    pub fn since(&self) -> Option<i64> {
        match self.from {
            From::Earliest => None,
            From::Time(ms) => Some(ms),
        }
    }

    /// The first offset of every partition the replay needs.
    pub async fn start_offsets(
        &self,
        conn: &Connection,
        topic: &str,
        ends: &[i64],
    ) -> anyhow::Result<Vec<i64>> {
        match self.from {
            From::Earliest => Ok(vec![0; ends.len()]),
            From::Time(ms) => offsets_for_time(conn, topic, ends, ms).await,
        }
    }

    /// With `--from DATETIME`, commit the start positions for `group` when it has no
    /// committed offset yet (its first run), so the replay starts there; a rerun finds
    /// the group's own progress and keeps it. Returns the positions committed.
    pub async fn seed_group(
        &self,
        conn: &Connection,
        group: &str,
        topic: &str,
        ends: &[i64],
    ) -> anyhow::Result<Option<Vec<i64>>> {
        let From::Time(ms) = self.from else {
            return Ok(None);
        };
        let committed = syncline_kafka::committed_offsets(conn.clone(), group, topic).await?;
        if !committed.iter().all(Option::is_none) {
            return Ok(None);
        }
        let start = offsets_for_time(conn, topic, ends, ms).await?;
        commit_positions(conn, group, topic, &start).await?;
        Ok(Some(start))
    }
}

/// The first offset at or after `ms` on every partition (the end offset where none is),
/// from [`syncline_kafka::offsets_for_time`].
async fn offsets_for_time(
    conn: &Connection,
    topic: &str,
    ends: &[i64],
    ms: i64,
) -> anyhow::Result<Vec<i64>> {
    let found = syncline_kafka::offsets_for_time(conn, topic, ms)
        .await
        .context("looking up offsets by time")?;
    Ok(ends
        .iter()
        .enumerate()
        .map(|(p, end)| match found.get(p) {
            Some(Some(o)) => (*o).min(*end),
            _ => *end,
        })
        .collect())
}

/// Commit `positions` for `group` (which has no members yet), so its first run starts
/// there.
async fn commit_positions(
    conn: &Connection,
    group: &str,
    topic: &str,
    positions: &[i64],
) -> anyhow::Result<()> {
    let offsets: Vec<(i32, i64)> = positions
        .iter()
        .enumerate()
        .map(|(p, o)| (p as i32, *o))
        .collect();
    syncline_kafka::commit_group_offsets(conn, group, topic, &offsets)
        .await
        .with_context(|| format!("committing start positions for group {group}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_parses() {
        assert_eq!(parse_from("earliest"), Ok(From::Earliest));
        assert_eq!(
            parse_from("2026-01-01T00:00:00Z"),
            Ok(From::Time(1_767_225_600_000))
        );
        assert!(parse_from("yesterday").is_err());
    }
}
