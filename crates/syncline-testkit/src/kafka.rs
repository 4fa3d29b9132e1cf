//! Topics, publishing, offsets and reading back, against the real broker.
//!
//! Publishing here is deliberately raw (no validation, any bytes): tests need to put
//! poison records on a topic, which the producer library rightly refuses to do.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use syncline_event::{ChangeEvent, Limits};

const BROKER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a test-kit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    /// The broker refused or did not answer.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// An event could not be encoded (the test built an invalid event).
    #[error("encode: {0}")]
    Encode(#[from] syncline_event::EncodeError),
    /// A topic or offset operation failed.
    #[error(transparent)]
    Admin(#[from] syncline_kafka::AdminError),
    /// A condition was not met in time.
    #[error("{0}")]
    Timeout(String),
    /// A blocking helper task failed.
    #[error("task: {0}")]
    Task(String),
}

/// Where one published record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
}

/// Consumer settings every test consumer uses: the timeouts Tansu needs to form groups
/// quickly (docs/decisions.md), earliest reset and manual commits.
pub fn consumer_config(brokers: &str, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("session.timeout.ms", "6000")
        .set("max.poll.interval.ms", "10000")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    c
}

/// Create `name` with `partitions` partitions (the broker's default replication) and wait
/// until the broker shows all of them. An existing topic is fine.
pub async fn create_topic(brokers: &str, name: &str, partitions: i32) -> Result<(), KitError> {
    let spec = syncline_kafka::TopicSpec {
        partitions,
        ..Default::default()
    };
    syncline_kafka::create_topic(brokers, name, &spec).await?;
    Ok(())
}

/// Create `topic` with `partitions` partitions and its dead-letter topic `<topic>.dlq`
/// (one partition), as a consumer under test expects them.
pub async fn create_topic_with_dlq(
    brokers: &str,
    topic: &str,
    partitions: i32,
) -> Result<(), KitError> {
    create_topic(brokers, topic, partitions).await?;
    create_topic(brokers, &format!("{topic}.dlq"), 1).await
}

/// Delete `topics`, best effort (a bench cleaning up after itself; errors are ignored
/// because a leftover topic only costs broker memory).
pub async fn delete_topics(brokers: &str, topics: &[&str]) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    if let Ok(admin) = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create::<AdminClient<DefaultClientContext>>()
    {
        let _ = admin.delete_topics(topics, &AdminOptions::new()).await;
    }
}

/// Whether `group` has committed every record of `topic`: each partition's committed
/// offset equals its end offset (empty partitions need no commit). `false` while either
/// cannot be read.
pub async fn group_caught_up(brokers: &str, group: &str, topic: &str) -> bool {
    let (Ok(end), Ok(committed)) = (
        end_offsets(brokers, topic).await,
        committed_offsets(brokers, group, topic).await,
    ) else {
        return false;
    };
    end.len() == committed.len()
        && end
            .iter()
            .zip(&committed)
            .all(|(e, c)| *e == 0 || *c == Some(*e))
}

/// Wait until `group` has committed every record of `topic` ([`group_caught_up`]),
/// polling every 250 ms, or fail after `timeout` saying which group and topic.
pub async fn wait_group_caught_up(
    brokers: &str,
    group: &str,
    topic: &str,
    timeout: std::time::Duration,
) -> Result<(), String> {
    crate::wait_until(
        timeout,
        std::time::Duration::from_millis(250),
        || async move {
            if group_caught_up(brokers, group, topic).await {
                Ok(())
            } else {
                Err(format!("group {group} has not committed all of {topic}"))
            }
        },
    )
    .await
}

/// The end offset of every partition (see [`syncline_kafka::end_offsets`] for how).
pub async fn end_offsets(brokers: &str, topic: &str) -> Result<Vec<i64>, KitError> {
    Ok(syncline_kafka::end_offsets(brokers, topic).await?)
}

/// The group's committed offset of every partition (`None`: nothing committed yet).
pub async fn committed_offsets(
    brokers: &str,
    group: &str,
    topic: &str,
) -> Result<Vec<Option<i64>>, KitError> {
    Ok(syncline_kafka::committed_offsets(brokers, group, topic).await?)
}

fn producer(brokers: &str) -> Result<FutureProducer, KitError> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()?)
}

/// Publish raw `(key, payload)` records in order and return where each landed. Records
/// with the same key keep their order (idempotent producer, one partition per key).
pub async fn publish_raw(
    brokers: &str,
    topic: &str,
    records: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<Vec<Delivered>, KitError> {
    let p = producer(brokers)?;
    let mut pending = Vec::with_capacity(records.len());
    for (key, payload) in &records {
        loop {
            match p.send_result(FutureRecord::to(topic).key(key).payload(payload)) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    p.poll(Duration::from_millis(50));
                    tokio::task::yield_now().await;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    let mut out = Vec::with_capacity(pending.len());
    for f in pending {
        match f.await {
            Ok(Ok(d)) => out.push(Delivered {
                partition: d.partition,
                offset: d.offset,
            }),
            Ok(Err((e, _))) => return Err(e.into()),
            Err(_) => return Err(KitError::Task("delivery future cancelled".into())),
        }
    }
    p.flush(BROKER_TIMEOUT)?;
    Ok(out)
}

/// Publish one event to each partition `0..partitions` (the partition chosen explicitly,
/// not by key), built by `event(partition)`. Benches use it so that every partition has
/// delivered once, and the group is complete, before their clock starts.
pub async fn publish_one_per_partition(
    brokers: &str,
    topic: &str,
    partitions: i32,
    mut event: impl FnMut(i32) -> ChangeEvent,
) -> Result<(), KitError> {
    let p = producer(brokers)?;
    let limits = Limits::default();
    for partition in 0..partitions {
        let e = event(partition);
        let payload = syncline_event::encode(&e, &limits)?;
        let key = e.key();
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&payload)
            .partition(partition);
        p.send(record, BROKER_TIMEOUT)
            .await
            .map_err(|(e, _)| KitError::Kafka(e))?;
    }
    Ok(())
}

/// Encode (Avro single-object) and publish events with key `entity_type:entity_id`.
pub async fn publish_events(
    brokers: &str,
    topic: &str,
    events: &[ChangeEvent],
) -> Result<Vec<Delivered>, KitError> {
    let limits = Limits::default();
    let mut records = Vec::with_capacity(events.len());
    for e in events {
        records.push((e.key().into_bytes(), syncline_event::encode(e, &limits)?));
    }
    publish_raw(brokers, topic, records).await
}

/// Read `topic` from the beginning of every partition until `expected` records arrived or
/// `timeout` passed; returns what arrived (the caller asserts on the count).
pub async fn read_all(
    brokers: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Result<Vec<OwnedMessage>, KitError> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    blocking(move || {
        let c: BaseConsumer = consumer_config(&brokers, "syncline-testkit-reader").create()?;
        // The count through the reader itself, so it knows the leaders before the
        // beginning is looked up (see syncline_kafka::learn_partitions).
        let n = syncline_kafka::learn_partitions(&c, &topic, Duration::from_secs(30))?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..n {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
        }
        c.assign(&tpl)?;
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < expected && Instant::now() < deadline {
            match c.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => out.push(m.detach()),
                Some(Err(e)) => return Err(e.into()),
                None => {}
            }
        }
        Ok(out)
    })
    .await
}

async fn blocking<T, F>(f: F) -> Result<T, KitError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, KitError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| KitError::Task(e.to_string()))?
}

/// The message's payload decoded, for tests that read records back.
pub fn decode_message(m: &OwnedMessage) -> Result<ChangeEvent, syncline_event::DecodeError> {
    syncline_event::decode(m.payload().unwrap_or_default(), &Limits::default())
}
