//! Does the topic still hold the history a rebuild needs?
//!
//! A rebuild from a topic that lost its head silently drops every entity whose only
//! events were deleted: nothing fails, the new index is just missing them. So before a
//! rebuild the topic is checked, and one that cannot be complete is refused (the operator
//! can override with `--allow-partial`):
//!
//! * on a topic whose cleanup policy deletes (not compact-only), a partition whose first
//!   readable record is past the first offset the rebuild needs (offset 0, or the offset
//!   of `--from`) has lost records;
//! * on such a topic with a finite `retention.ms`, records older than the retention (less
//!   a safety margin) are being deleted, possibly while the rebuild reads them (a consumer
//!   whose position is deleted jumps to the new head without an error).
//!
//! The first readable record of each partition is read with a fetch (not ListOffsets,
//! which the Tansu broker answers wrongly; see `docs/decisions.md`), so its offset and
//! timestamp are the broker's real head.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use syncline_kafka::Connection;

/// How long reading the heads or the configuration may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The first readable record of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Its offset.
    pub offset: i64,
    /// Its timestamp (ms since the epoch), when it has one.
    pub timestamp_ms: Option<i64>,
}

/// The topic settings that decide whether records are deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    /// `cleanup.policy` (`delete`, `compact` or `compact,delete`); `None` if unreadable.
    pub cleanup_policy: Option<String>,
    /// `retention.ms`; `None` if unreadable, `Some(-1)` for unlimited.
    pub retention_ms: Option<i64>,
}

impl Retention {
    /// Only compaction, never deletion by age: the head may move legitimately.
    fn compact_only(&self) -> bool {
        self.cleanup_policy.as_deref().is_some_and(|p| {
            p.split(',').any(|x| x.trim() == "compact")
                && !p.split(',').any(|x| x.trim() == "delete")
        })
    }
}

/// What the check found.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Reasons the history is (or is about to be) incomplete. Empty: complete.
    pub problems: Vec<String>,
    /// Things worth saying that do not make the history incomplete.
    pub notes: Vec<String>,
}

/// Read the configuration and the head of every partition of `topic`, and judge them
/// against what the rebuild needs: `needed[p]` is the first offset of partition `p` it
/// must read, `needed_since_ms` the oldest timestamp it needs (`None`: all of it).
pub async fn check(
    conn: &Connection,
    topic: &str,
    ends: &[i64],
    needed: &[i64],
    needed_since_ms: Option<i64>,
    margin: Duration,
) -> anyhow::Result<Verdict> {
    // Two independent round trips (a DescribeConfigs and a fetch of every partition's
    // head): made at once, since the rebuild waits for both before it starts.
    let (retention, heads) = tokio::join!(retention(conn, topic), heads(conn, topic, ends));
    let heads = heads?;
    let mut v = judge(
        retention.as_ref().unwrap_or(&Retention::default()),
        &heads,
        ends,
        needed,
        needed_since_ms,
        margin,
        now_ms(),
    );
    if let Err(e) = retention {
        v.notes.push(format!(
            "cannot read the topic's cleanup.policy/retention.ms ({e:#}); only the \
             partitions' first offsets were checked"
        ));
    }
    Ok(v)
}

/// Wall-clock milliseconds since the epoch (Kafka timestamps' unit).
pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The decision, on data already read (a pure function, unit-tested).
pub fn judge(
    retention: &Retention,
    heads: &HashMap<i32, Head>,
    ends: &[i64],
    needed: &[i64],
    needed_since_ms: Option<i64>,
    margin: Duration,
    now_ms: i64,
) -> Verdict {
    let mut v = Verdict::default();
    if retention.compact_only() {
        v.notes.push(
            "cleanup.policy=compact: the topic keeps the latest event of every key, which is \
             all a rebuild needs"
                .to_owned(),
        );
        return v;
    }
    for (p, end) in ends.iter().enumerate() {
        let want = needed.get(p).copied().unwrap_or(0);
        if *end <= want {
            continue;
        }
        match heads.get(&(p as i32)) {
            Some(h) if h.offset > want => v.problems.push(format!(
                "partition {p} starts at offset {} but the rebuild needs it from offset {want}: \
                 {} records were deleted",
                h.offset,
                h.offset - want
            )),
            Some(_) => {}
            None => v.problems.push(format!(
                "partition {p} ends at offset {end} but no record could be read from it \
                 (deleted, or unreadable)"
            )),
        }
    }
    match retention.retention_ms {
        Some(ms) if ms >= 0 => {
            let oldest =
                needed_since_ms.or_else(|| heads.values().filter_map(|h| h.timestamp_ms).min());
            let cutoff = now_ms - ms + margin.as_millis() as i64;
            match oldest {
                Some(t) if t <= cutoff => v.problems.push(format!(
                    "retention.ms={ms} is shorter than the data: the oldest record the rebuild \
                     needs is from {} (epoch ms {t}), older than the retention less a {}s \
                     safety margin, so the broker deletes it before or while it is read",
                    humantime::format_rfc3339_millis(
                        UNIX_EPOCH + Duration::from_millis(t.max(0) as u64)
                    ),
                    margin.as_secs()
                )),
                _ => v.notes.push(format!(
                    "retention.ms={ms}: the topic is not a permanent history; rebuilds work only \
                     while no record has been deleted"
                )),
            }
        }
        Some(_) => {}
        None => {}
    }
    v
}

/// `cleanup.policy` and `retention.ms` of `topic`.
pub async fn retention(conn: &Connection, topic: &str) -> anyhow::Result<Retention> {
    let admin: AdminClient<DefaultClientContext> = conn
        .client_config()
        .create()
        .context("cannot create an admin client")?;
    let results = admin
        .describe_configs(
            &[ResourceSpecifier::Topic(topic)],
            &AdminOptions::new().request_timeout(Some(TIMEOUT)),
        )
        .await
        .context("DescribeConfigs failed")?;
    let mut out = Retention::default();
    for r in results {
        let r = r.map_err(|e| anyhow::anyhow!("DescribeConfigs for {topic}: {e}"))?;
        for entry in &r.entries {
            match (entry.name.as_str(), &entry.value) {
                ("cleanup.policy", Some(v)) => out.cleanup_policy = Some(v.clone()),
                ("retention.ms", Some(v)) => out.retention_ms = v.trim().parse().ok(),
                _ => {}
            }
        }
    }
    Ok(out)
}

/// The first readable record of every partition that has any.
pub async fn heads(
    conn: &Connection,
    topic: &str,
    ends: &[i64],
) -> anyhow::Result<HashMap<i32, Head>> {
    let (conn, topic, ends) = (conn.clone(), topic.to_owned(), ends.to_vec());
    tokio::task::spawn_blocking(move || read_heads(&conn, &topic, &ends))
        .await
        .context("reading partition heads")?
}

fn read_heads(conn: &Connection, topic: &str, ends: &[i64]) -> anyhow::Result<HashMap<i32, Head>> {
    let mut cc = conn.client_config();
    cc.set("group.id", "syncline-rebuild-history")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("max.partition.fetch.bytes", "65536");
    let c: BaseConsumer = cc.create().context("cannot create a reader")?;
    let mut tpl = TopicPartitionList::new();
    let mut pending: Vec<i32> = Vec::new();
    for (p, end) in ends.iter().enumerate() {
        if *end > 0 {
            tpl.add_partition_offset(topic, p as i32, Offset::Beginning)?;
            pending.push(p as i32);
        }
    }
    let mut out = HashMap::new();
    if pending.is_empty() {
        return Ok(out);
    }
    // The leaders first, or the beginning is looked up 500 ms late (see learn_partitions).
    syncline_kafka::learn_partitions(&c, topic, TIMEOUT).context("reading the topic's metadata")?;
    c.assign(&tpl).context("assigning partitions")?;
    let deadline = Instant::now() + TIMEOUT;
    while !pending.is_empty() && Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let p = m.partition();
                if pending.contains(&p) {
                    out.insert(
                        p,
                        Head {
                            offset: m.offset(),
                            timestamp_ms: m.timestamp().to_millis(),
                        },
                    );
                    pending.retain(|x| *x != p);
                    let mut one = TopicPartitionList::new();
                    one.add_partition(topic, p);
                    // Stop fetching a partition once its head is known.
                    let _ = c.pause(&one);
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => pending.retain(|x| *x != p),
            Some(Err(e)) => return Err(e).context("reading the head of the topic"),
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads(v: &[(i32, i64, i64)]) -> HashMap<i32, Head> {
        v.iter()
            .map(|&(p, offset, ts)| {
                (
                    p,
                    Head {
                        offset,
                        timestamp_ms: Some(ts),
                    },
                )
            })
            .collect()
    }

    const HOUR: i64 = 3_600_000;

    #[test]
    fn complete_history_passes() {
        let r = Retention {
            cleanup_policy: Some("delete".into()),
            retention_ms: Some(-1),
        };
        let v = judge(
            &r,
            &heads(&[(0, 0, 0), (1, 0, 0)]),
            &[5, 7],
            &[0, 0],
            None,
            Duration::from_secs(3600),
            100 * HOUR,
        );
        assert!(v.problems.is_empty(), "{:?}", v.problems);
    }

    #[test]
    fn lost_head_is_refused_unless_compacted() {
        let r = Retention {
            cleanup_policy: Some("delete".into()),
            retention_ms: Some(-1),
        };
        let h = heads(&[(0, 0, 0), (1, 3, 0)]);
        let v = judge(&r, &h, &[5, 7], &[0, 0], None, Duration::ZERO, HOUR);
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
        assert!(v.problems[0].contains("partition 1 starts at offset 3"));
        // Starting later (--from) than the head is fine.
        let v = judge(&r, &h, &[5, 7], &[0, 4], None, Duration::ZERO, HOUR);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        let compacted = Retention {
            cleanup_policy: Some("compact".into()),
            retention_ms: Some(1000),
        };
        assert!(
            judge(&compacted, &h, &[5, 7], &[0, 0], None, Duration::ZERO, HOUR)
                .problems
                .is_empty()
        );
        // compact,delete still deletes by age.
        let both = Retention {
            cleanup_policy: Some("compact,delete".into()),
            retention_ms: Some(-1),
        };
        assert_eq!(
            judge(&both, &h, &[5, 7], &[0, 0], None, Duration::ZERO, HOUR)
                .problems
                .len(),
            1
        );
    }

    #[test]
    fn retention_shorter_than_the_data_is_refused() {
        let r = Retention {
            cleanup_policy: Some("delete".into()),
            retention_ms: Some(24 * HOUR),
        };
        let now = 1000 * HOUR;
        // Oldest record 23.5 h old, 1 h margin: within the margin of deletion.
        let h = heads(&[(0, 0, now - 23 * HOUR - HOUR / 2)]);
        let v = judge(&r, &h, &[5], &[0], None, Duration::from_secs(3600), now);
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
        assert!(v.problems[0].contains("retention.ms"));
        // 2 h old: fine, with a note.
        let h = heads(&[(0, 0, now - 2 * HOUR)]);
        let v = judge(&r, &h, &[5], &[0], None, Duration::from_secs(3600), now);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.notes.len(), 1);
    }

    #[test]
    fn unreadable_partition_is_a_problem() {
        let v = judge(
            &Retention::default(),
            &HashMap::new(),
            &[3],
            &[0],
            None,
            Duration::ZERO,
            HOUR,
        );
        assert_eq!(v.problems.len(), 1);
    }
}
