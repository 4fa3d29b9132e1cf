//! Kafka plumbing shared by Syncline's producer, consumers, tools and tests.
//!
//! One place for what several crates need from the broker beyond producing and
//! consuming: how to connect ([`Connection`], [`KafkaArgs`], secret redaction), what this
//! build of librdkafka supports ([`capabilities`]), creating topics, and reading end
//! offsets and committed offsets in a way that is right on every broker Syncline supports
//! (see [`end_offsets`] for why that needs care with Tansu).

pub mod capabilities;
mod connection;
pub mod groups;

pub use connection::{
    is_secret, parse_env_list, parse_property, redact, Connection, KafkaArgs, KafkaProperties,
    PropertyError, KAFKA_ENV, REDACTED,
};
pub use groups::{
    commit_group_offsets, describe_group, earliest_offsets, offsets_for_time, GroupDescription,
    GroupError, GroupMember,
};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const BROKER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a broker operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The client could not be created or the broker refused or did not answer.
    #[error("kafka at {brokers}: {source}")]
    Kafka {
        /// The bootstrap servers asked.
        brokers: String,
        /// What librdkafka said.
        source: KafkaError,
    },
    /// The broker refused to create a topic.
    #[error("creating topic {topic}: {code:?}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
    /// The broker did not show the expected state in time.
    #[error("{0}")]
    Timeout(String),
    /// A blocking task could not run to its end.
    #[error("task: {0}")]
    Task(String),
}

/// Settings of a new topic.
#[derive(Debug, Clone, Default)]
pub struct TopicSpec {
    /// Partition count.
    pub partitions: i32,
    /// Replication factor; 0 (or less) leaves it to the broker's `default.replication.factor`.
    pub replication: i32,
    /// Topic configs, e.g. `cleanup.policy=compact`.
    pub configs: BTreeMap<String, String>,
}

fn kafka(brokers: &str) -> impl Fn(KafkaError) -> AdminError + '_ {
    move |source| AdminError::Kafka {
        brokers: brokers.to_owned(),
        source,
    }
}

/// Kafka's topic name rules: 1..=249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
/// The error says which rule the name breaks.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name.len() > 249 {
        return Err(format!("topic name is {} characters, over 249", name.len()));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a legal topic name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {name:?} contains {c:?}; only [a-zA-Z0-9._-] are allowed"
        ));
    }
    Ok(())
}

/// What [`create_topic`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicStatus {
    /// The topic was created with the requested settings.
    Created,
    /// The topic already existed; its settings were left as they are.
    Existed {
        /// Its partition count.
        partitions: usize,
    },
}

/// Create `name` with `spec` and wait until the broker's metadata shows all its
/// partitions. A topic that already exists is left as it is (settings and partition
/// count) and reported as [`TopicStatus::Existed`].
pub async fn create_topic(
    conn: impl Into<Connection>,
    name: &str,
    spec: &TopicSpec,
) -> Result<TopicStatus, AdminError> {
    let conn: Connection = conn.into();
    let brokers = conn.brokers.as_str();
    let admin: AdminClient<DefaultClientContext> =
        conn.client_config().create().map_err(kafka(brokers))?;
    let replication = if spec.replication > 0 {
        spec.replication
    } else {
        -1 // the broker's default.replication.factor
    };
    let mut topic = NewTopic::new(name, spec.partitions, TopicReplication::Fixed(replication));
    for (k, v) in &spec.configs {
        topic = topic.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(BROKER_TIMEOUT));
    let results = admin
        .create_topics([&topic], &opts)
        .await
        .map_err(kafka(brokers))?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                let partitions = partition_count(&conn, name).await?;
                return Ok(TopicStatus::Existed {
                    partitions: usize::try_from(partitions).unwrap_or(0),
                });
            }
            Err((topic, code)) => return Err(AdminError::CreateTopic { topic, code }),
        }
    }
    let deadline = Instant::now() + BROKER_TIMEOUT;
    loop {
        if partition_count(&conn, name).await.unwrap_or(0) >= spec.partitions {
            return Ok(TopicStatus::Created);
        }
        if Instant::now() > deadline {
            return Err(AdminError::Timeout(format!(
                "topic {name} did not show {} partitions in the metadata of {brokers}",
                spec.partitions
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Partition count of `topic` as `c` itself sees it, from a metadata request made through
/// `c` (0 when the topic does not exist). Call it before assigning logical offsets
/// (beginning, end): a client that does not know the partitions' leaders yet cannot look
/// such an offset up at once, and librdkafka retries the lookup on a 500 ms timer, so
/// every short-lived reader started half a second late. Fixed offsets are not delayed.
pub fn learn_partitions<C: ConsumerContext>(
    c: &impl Consumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<i32, KafkaError> {
    let md = c.fetch_metadata(Some(topic), timeout)?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len() as i32)
        .unwrap_or(0))
}

/// How many partitions `topic` has (0 when unknown).
pub async fn partition_count(conn: impl Into<Connection>, topic: &str) -> Result<i32, AdminError> {
    let (conn, topic): (Connection, String) = (conn.into(), topic.to_owned());
    blocking(move || {
        let brokers = &conn.brokers;
        let c: BaseConsumer = conn.client_config().create().map_err(kafka(brokers))?;
        learn_partitions(&c, &topic, BROKER_TIMEOUT).map_err(kafka(brokers))
    })
    .await
}

/// The end offset (high watermark) of every partition, indexed by partition.
///
/// Read from fetch responses, never from a ListOffsets request: the Tansu broker answers
/// ListOffsets(latest) wrongly, on any partition (it said 1 where a partition held many
/// records, and 3,760 for partition 0 holding 3,772; seen with librdkafka from Rust and
/// Python), while the high watermark it puts in fetch responses is right. Each partition
/// is assigned from its beginning and polled until it yields a record or its end;
/// librdkafka's statistics then carry the watermark of that fetch. Against a real Kafka
/// both ways agree. Empty when the topic does not exist.
pub async fn end_offsets(conn: impl Into<Connection>, topic: &str) -> Result<Vec<i64>, AdminError> {
    let conn: Connection = conn.into();
    let topic = topic.to_owned();
    blocking(move || {
        let brokers = conn.brokers.clone();
        let c: BaseConsumer<WatermarkContext> = reader_config(&conn, "syncline-watermarks")
            .set("enable.partition.eof", "true")
            .set("max.partition.fetch.bytes", "8192")
            .set("statistics.interval.ms", "50")
            .create_with_context(WatermarkContext::default())
            .map_err(kafka(&brokers))?;
        // Through this client, so it knows the leaders before the beginning is looked up.
        let n = learn_partitions(&c, &topic, BROKER_TIMEOUT).map_err(kafka(&brokers))?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut tpl = TopicPartitionList::new();
        for p in 0..n {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .map_err(kafka(&brokers))?;
        }
        c.assign(&tpl).map_err(kafka(&brokers))?;
        let deadline = Instant::now() + BROKER_TIMEOUT;
        loop {
            if let Some(ends) = c.context().ends(&topic, n) {
                return Ok(ends);
            }
            if Instant::now() > deadline {
                return Err(AdminError::Timeout(format!(
                    "no high watermark for every partition of {topic}"
                )));
            }
            match c.poll(Duration::from_millis(50)) {
                Some(Err(KafkaError::PartitionEOF(_))) | Some(Ok(_)) | None => {}
                Some(Err(e)) => return Err(kafka(&brokers)(e)),
            }
        }
    })
    .await
}

/// Keeps the newest statistics librdkafka emitted, for their per-partition `hi_offset`.
#[derive(Default)]
struct WatermarkContext {
    latest: std::sync::Mutex<Option<rdkafka::Statistics>>,
}

impl rdkafka::ClientContext for WatermarkContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        if let Ok(mut l) = self.latest.lock() {
            *l = Some(statistics);
        }
    }
}

impl rdkafka::consumer::ConsumerContext for WatermarkContext {}

impl WatermarkContext {
    /// Every partition's watermark, once a fetch has reported each of them.
    fn ends(&self, topic: &str, n: i32) -> Option<Vec<i64>> {
        let latest = self.latest.lock().ok()?;
        let t = latest.as_ref()?.topics.get(topic)?;
        (0..n)
            .map(|p| {
                t.partitions
                    .get(&p)
                    .map(|s| s.hi_offset)
                    .filter(|&o| o >= 0)
            })
            .collect()
    }
}

/// The group's committed offset of every partition (`None`: nothing committed yet).
pub async fn committed_offsets(
    conn: impl Into<Connection>,
    group: &str,
    topic: &str,
) -> Result<Vec<Option<i64>>, AdminError> {
    let conn: Connection = conn.into();
    let n = partition_count(&conn, topic).await?;
    let (group, topic) = (group.to_owned(), topic.to_owned());
    blocking(move || {
        let brokers = conn.brokers.clone();
        let c: BaseConsumer = reader_config(&conn, &group)
            .create()
            .map_err(kafka(&brokers))?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..n {
            tpl.add_partition(&topic, p);
        }
        let got = c
            .committed_offsets(tpl, BROKER_TIMEOUT)
            .map_err(kafka(&brokers))?;
        Ok((0..n)
            .map(
                |p| match got.find_partition(&topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => Some(o),
                    _ => None,
                },
            )
            .collect())
    })
    .await
}

/// A consumer that never joins a group or commits: it only reads positions.
fn reader_config(conn: &Connection, group: &str) -> ClientConfig {
    let mut c = conn.client_config();
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    c
}

async fn blocking<T, F>(f: F) -> Result<T, AdminError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, AdminError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AdminError::Task(e.to_string()))?
}
