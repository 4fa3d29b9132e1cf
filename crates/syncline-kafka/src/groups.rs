//! Consumer-group administration for operator tools: who is in a group, committing
//! offsets on a group's behalf, and the offsets at the start of a partition or at a point
//! in time.
//!
//! Committing goes through a consumer that never joins the group (no subscribe, no
//! assign): librdkafka then sends OffsetCommit with generation -1 and no member id, the
//! "simple consumer" commit that Kafka accepts only while the group has no members (an
//! active group answers `UNKNOWN_MEMBER_ID` / `ILLEGAL_GENERATION`). Tansu accepts it too
//! (checked by `syncline-ctl`'s `e2e_offsets` tests). Callers still look at the group
//! first ([`describe_group`]) so that they can refuse with a clear message, as
//! `kafka-consumer-groups --reset-offsets` does.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::{partition_count, reader_config, AdminError, Connection};

const BROKER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a group or offset operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// Client creation, metadata or the broker connection failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The broker answered, but with an error for one partition.
    #[error("{topic} partition {partition}: {source}")]
    Partition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// What the broker said.
        source: KafkaError,
    },
    /// The broker said nothing about a group or partition that was asked about.
    #[error("the broker did not answer for {0}")]
    Missing(String),
    /// The topic has no partitions (it does not exist).
    #[error("topic {0} does not exist (no partitions in the metadata)")]
    NoTopic(String),
}

/// One member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// Member id the coordinator assigned.
    pub id: String,
    /// The member's `client.id`.
    pub client_id: String,
    /// The member's host as the coordinator saw it.
    pub host: String,
}

/// A consumer group as its coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group: String,
    /// Coordinator state: `Empty`, `Dead` (unknown group), `Stable`,
    /// `PreparingRebalance`, `CompletingRebalance` (Kafka's names; other brokers may say
    /// something else, which counts as active).
    pub state: String,
    /// Current members.
    pub members: Vec<GroupMember>,
}

impl GroupDescription {
    /// Whether the group has members or is in a state where members may be joining:
    /// anything but `Empty`/`Dead` (or no state at all) without members. Offsets must not
    /// be changed then: the members would overwrite them with their own positions.
    pub fn is_active(&self) -> bool {
        !self.members.is_empty() || !matches!(self.state.as_str(), "" | "Empty" | "Dead")
    }
}

fn kafka(conn: &Connection) -> impl Fn(KafkaError) -> AdminError + '_ {
    move |source| AdminError::Kafka {
        brokers: conn.brokers.clone(),
        source,
    }
}

async fn blocking<T, F>(f: F) -> Result<T, GroupError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, GroupError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| GroupError::Admin(AdminError::Task(e.to_string())))?
}

/// Describe `group` (DescribeGroups via its coordinator). An unknown group comes back as
/// state `Dead` with no members, as Kafka reports it.
pub async fn describe_group(
    conn: impl Into<Connection>,
    group: &str,
) -> Result<GroupDescription, GroupError> {
    let conn: Connection = conn.into();
    let group = group.to_owned();
    blocking(move || {
        let c: BaseConsumer = reader_config(&conn, "syncline-describe")
            .create()
            .map_err(kafka(&conn))?;
        let list = c
            .fetch_group_list(Some(&group), BROKER_TIMEOUT)
            .map_err(kafka(&conn))?;
        let Some(info) = list.groups().iter().find(|g| g.name() == group) else {
            // Nothing known about the group: no members, nothing to refuse.
            return Ok(GroupDescription {
                group,
                state: "Dead".to_owned(),
                members: Vec::new(),
            });
        };
        Ok(GroupDescription {
            group: group.clone(),
            state: info.state().to_owned(),
            members: info
                .members()
                .iter()
                .map(|m| GroupMember {
                    id: m.id().to_owned(),
                    client_id: m.client_id().to_owned(),
                    host: m.client_host().to_owned(),
                })
                .collect(),
        })
    })
    .await
}

/// Commit `offsets` (`(partition, offset)`: the next record to read) of `topic` for
/// `group`, synchronously, without joining the group (see the module docs). Partitions
/// not named keep their committed offsets.
pub async fn commit_group_offsets(
    conn: impl Into<Connection>,
    group: &str,
    topic: &str,
    offsets: &[(i32, i64)],
) -> Result<(), GroupError> {
    let conn: Connection = conn.into();
    let (group, topic, offsets) = (group.to_owned(), topic.to_owned(), offsets.to_vec());
    blocking(move || {
        let c: BaseConsumer = reader_config(&conn, &group)
            .create()
            .map_err(kafka(&conn))?;
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &offsets {
            tpl.add_partition_offset(&topic, *p, Offset::Offset(*o))
                .map_err(kafka(&conn))?;
        }
        c.commit(&tpl, CommitMode::Sync).map_err(kafka(&conn))?;
        Ok(())
    })
    .await
}

/// The earliest offset still held by every partition of `topic` (ListOffsets(earliest)),
/// indexed by partition. Unlike ListOffsets(latest) and ListOffsets(timestamp), Tansu
/// answers this one right (0 for its memory storage, which never deletes; checked in
/// `syncline-ctl`'s `e2e_offsets`).
pub async fn earliest_offsets(
    conn: impl Into<Connection>,
    topic: &str,
) -> Result<Vec<i64>, GroupError> {
    let conn: Connection = conn.into();
    let n = partition_count(&conn, topic).await?;
    if n == 0 {
        return Err(GroupError::NoTopic(topic.to_owned()));
    }
    let topic = topic.to_owned();
    blocking(move || {
        let c: BaseConsumer = reader_config(&conn, "syncline-watermarks")
            .create()
            .map_err(kafka(&conn))?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..n {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .map_err(kafka(&conn))?;
        }
        // offsets_for_times with the special timestamp -2 is ListOffsets(earliest) for all
        // partitions in one request per leader.
        let got = c
            .offsets_for_times(tpl, BROKER_TIMEOUT)
            .map_err(kafka(&conn))?;
        (0..n)
            .map(|p| resolved(&got, &topic, p).map(|o| o.unwrap_or(0)))
            .collect()
    })
    .await
}

/// For every partition of `topic`, the earliest offset whose record timestamp is at or
/// after `timestamp_ms` (ms since the Unix epoch), or `None` when no such record exists
/// (the partition's end offset is then the answer). Indexed by partition.
///
/// The broker's ListOffsets(timestamp) answer is only a starting point: Tansu answers it
/// wrongly (0 for every timestamp, where the records' CreateTime said 6 and 3; found by
/// `syncline-ctl`'s `e2e_offsets`). So the answer is checked against the records
/// themselves: if the record just before it is already at or after the time, the broker
/// answered too high and the scan starts at the earliest offset; from there records are
/// read forward to the first one at or after the time. Against Kafka, whose answer is
/// right, that costs one fetch per partition; against Tansu it reads up to the answer.
pub async fn offsets_for_time(
    conn: impl Into<Connection>,
    topic: &str,
    timestamp_ms: i64,
) -> Result<Vec<Option<i64>>, GroupError> {
    let conn: Connection = conn.into();
    let n = partition_count(&conn, topic).await?;
    if n == 0 {
        return Err(GroupError::NoTopic(topic.to_owned()));
    }
    let ends = crate::end_offsets(&conn, topic).await?;
    let earliest = earliest_offsets(&conn, topic).await?;
    let topic = topic.to_owned();
    blocking(move || {
        let c: BaseConsumer = reader_config(&conn, "syncline-watermarks")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .create()
            .map_err(kafka(&conn))?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..n {
            tpl.add_partition_offset(&topic, p, Offset::Offset(timestamp_ms.max(0)))
                .map_err(kafka(&conn))?;
        }
        let got = c
            .offsets_for_times(tpl, BROKER_TIMEOUT)
            .map_err(kafka(&conn))?;
        let mut out = Vec::with_capacity(ends.len());
        for (i, (&end, &low)) in ends.iter().zip(&earliest).enumerate() {
            let p = i32::try_from(i).unwrap_or(i32::MAX);
            if end <= low {
                out.push(None);
                continue;
            }
            let answer = resolved(&got, &topic, p)?.unwrap_or(end).clamp(low, end);
            let before_is_late = answer > low
                && first_at_or_after(&c, &conn, &topic, p, answer - 1, answer, timestamp_ms)?
                    .is_some();
            let from = if before_is_late { low } else { answer };
            out.push(first_at_or_after(
                &c,
                &conn,
                &topic,
                p,
                from,
                end,
                timestamp_ms,
            )?);
        }
        Ok(out)
    })
    .await
}

/// The first offset in `[from, end)` of `topic`/`p` whose record timestamp is at least
/// `ts`, read with `c` (re-assigned to that one partition).
fn first_at_or_after(
    c: &BaseConsumer,
    conn: &Connection,
    topic: &str,
    p: i32,
    from: i64,
    end: i64,
    ts: i64,
) -> Result<Option<i64>, GroupError> {
    use rdkafka::Message;
    if from >= end {
        return Ok(None);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, p, Offset::Offset(from))
        .map_err(kafka(conn))?;
    c.assign(&tpl).map_err(kafka(conn))?;
    let deadline = std::time::Instant::now() + BROKER_TIMEOUT;
    while std::time::Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if m.offset() >= end {
                    return Ok(None);
                }
                if m.timestamp().to_millis().is_some_and(|t| t >= ts) {
                    return Ok(Some(m.offset()));
                }
                if m.offset() + 1 >= end {
                    return Ok(None);
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(None),
            Some(Err(source)) => {
                return Err(GroupError::Partition {
                    topic: topic.to_owned(),
                    partition: p,
                    source,
                })
            }
            None => {}
        }
    }
    Err(GroupError::Missing(format!(
        "records of {topic} partition {p} from offset {from} (nothing arrived in {BROKER_TIMEOUT:?})"
    )))
}

/// One partition's answer in an offsets_for_times result: `Some(offset)`, or `None` for
/// "no such record" (librdkafka's `End` / -1).
fn resolved(got: &TopicPartitionList, topic: &str, p: i32) -> Result<Option<i64>, GroupError> {
    let e = got
        .find_partition(topic, p)
        .ok_or_else(|| GroupError::Missing(format!("{topic} partition {p}")))?;
    e.error().map_err(|source| GroupError::Partition {
        topic: topic.to_owned(),
        partition: p,
        source,
    })?;
    Ok(match e.offset() {
        Offset::Offset(o) if o >= 0 => Some(o),
        _ => None,
    })
}
