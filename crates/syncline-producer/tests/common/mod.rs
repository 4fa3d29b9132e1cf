//! Helpers shared by the integration tests: broker address, fresh topics, and reading a
//! whole topic back with a plain rdkafka consumer.

#![allow(dead_code, missing_docs)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

/// The broker the tests use (`KAFKA_BROKERS`, default the local stack's).
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// A topic name no other run uses.
pub fn fresh_topic(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    )
}

/// One record as read back.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub value: Vec<u8>,
    pub headers: HashMap<String, String>,
}

/// Every record of `topic`, read from the beginning until every partition reports its end
/// (`enable.partition.eof`), ordered by (partition, offset).
///
/// The end comes from the high watermark in fetch responses. ListOffsets is not used:
/// the local Tansu broker answers it with a wrong high watermark when the last record batch
/// of a partition holds several records.
pub fn read_topic(topic: &str) -> Vec<Record> {
    read_topic_on(&brokers(), topic)
}

/// [`read_topic`] on the broker at `brokers`.
pub fn read_topic_on(brokers: &str, topic: &str) -> Vec<Record> {
    read_if_present(brokers, topic).unwrap_or_else(|| panic!("topic {topic} has no partitions"))
}

/// Every record of `topic` as [`read_topic`] reads them, or `None` while the topic has
/// no partitions.
fn read_if_present(brokers: &str, topic: &str) -> Option<Vec<Record>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("test-reader-{}", uuid::Uuid::now_v7()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .ok()?;
    let partitions = partitions_in(&md, topic);
    if partitions.is_empty() {
        return None;
    }
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut open: HashSet<i32> = partitions.iter().copied().collect();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !open.is_empty() {
        assert!(
            Instant::now() < deadline,
            "timed out reading {topic}; no end seen for partitions {open:?}"
        );
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = match msg {
            Ok(m) => m,
            Err(KafkaError::PartitionEOF(p)) => {
                open.remove(&p);
                continue;
            }
            Err(e) => panic!("consumer error: {e}"),
        };
        let mut headers = HashMap::new();
        if let Some(h) = msg.headers() {
            for hdr in h.iter() {
                headers.insert(
                    hdr.key.to_owned(),
                    String::from_utf8_lossy(hdr.value.unwrap_or_default()).into_owned(),
                );
            }
        }
        out.push(Record {
            partition: msg.partition(),
            offset: msg.offset(),
            key: String::from_utf8(msg.key().unwrap_or_default().to_vec()).expect("utf-8 key"),
            value: msg.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    Some(out)
}

/// Number of records in `topic`.
pub fn count_records(topic: &str) -> i64 {
    count_records_on(&brokers(), topic)
}

/// Number of records in `topic` on the broker at `brokers`; 0 while the topic does not
/// exist yet (a test waiting for a CLI's first record may ask before the CLI created it).
pub fn count_records_on(brokers: &str, topic: &str) -> i64 {
    read_if_present(brokers, topic).map_or(0, |records| records.len() as i64)
}

fn partitions_in(md: &rdkafka::metadata::Metadata, topic: &str) -> Vec<i32> {
    md.topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default()
}
