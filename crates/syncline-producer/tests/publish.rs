//! The producer library against the real broker (`KAFKA_BROKERS`, default 127.0.0.1:9092;
//! `scripts/stack up` starts one).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![allow(missing_docs)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{brokers, fresh_topic, read_topic};
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use syncline_event::{ChangeEvent, Limits, Op, ValidationError};
use syncline_producer::{
    Compression, Producer, ProducerConfig, ProducerError, PublishError, PublishManyError,
    TopicStatus, TraceContextLayer, CONTENT_TYPE, CONTENT_TYPE_HEADER, TRACEPARENT_HEADER,
};
use tracing_subscriber::prelude::*;

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn producer_for(topic: &str, partitions: i32) -> Producer {
    let producer = Producer::new(ProducerConfig::new(brokers(), topic)).expect("producer");
    let status = producer
        .ensure_topic(topic, partitions, false)
        .await
        .expect("create topic");
    assert_eq!(status, TopicStatus::Created);
    producer
}

/// 10,000 events over 700 keys: creates, updates and deletes, tags and attributes, in a
/// per-key increasing version order.
fn workload(n: usize, keys: usize) -> Vec<ChangeEvent> {
    let mut versions = vec![0i64; keys];
    (0..n)
        .map(|i| {
            let k = (i * 7919) % keys; // spread keys, revisit each many times
            versions[k] += 1 + (i % 3) as i64;
            let delete = i.is_multiple_of(11);
            let mut e = ChangeEvent::new(
                if k.is_multiple_of(5) {
                    "category"
                } else {
                    "product"
                },
                format!("p-{k:04}"),
                if delete { Op::Delete } else { Op::Upsert },
                versions[k],
                "producer-test",
                (!delete).then(|| {
                    serde_json::json!({
                        "name": format!("item {k} v{}", versions[k]),
                        "price": (i % 1000) as f64 / 10.0,
                        "tags": ["a", "b"],
                        "unicode": "läмп ✓",
                    })
                    .to_string()
                }),
            );
            if i.is_multiple_of(4) {
                e.invalidate = vec![format!("search:category:c{}", k % 9)];
            }
            if i.is_multiple_of(6) {
                e.attributes = BTreeMap::from([
                    ("tenant".to_string(), "t1".to_string()),
                    ("request".to_string(), format!("r{i}")),
                ]);
            }
            e
        })
        .collect()
}

#[tokio::test]
async fn ten_thousand_events_arrive_once_in_key_order_with_headers() {
    let topic = fresh_topic("producer-roundtrip");
    let producer = producer_for(&topic, 6).await;
    let events = workload(10_000, 700);

    // Publish inside a span that carries the caller's trace context.
    let subscriber = tracing_subscriber::registry().with(TraceContextLayer::new());
    let _default = tracing::subscriber::set_default(subscriber);
    let span = tracing::info_span!("import", traceparent = TP);
    let deliveries = {
        let _entered = span.enter();
        producer
            .publish_many(&events, 2_000)
            .await
            .expect("publish_many")
    };
    assert_eq!(deliveries.len(), events.len());
    producer
        .flush(Duration::from_secs(30))
        .await
        .expect("flush");

    let records = read_topic(&topic);
    assert_eq!(records.len(), events.len(), "every event exactly once");

    let by_id: HashMap<&str, (usize, &ChangeEvent)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (e.event_id.as_str(), (i, e)))
        .collect();
    let limits = Limits::default();
    let mut seen = HashSet::new();
    let mut versions_read: HashMap<String, Vec<i64>> = HashMap::new();
    let mut partition_of_key: HashMap<String, i32> = HashMap::new();
    for r in &records {
        let decoded = syncline_event::decode(&r.value, &limits).expect("decodes");
        let (index, sent) = by_id
            .get(decoded.event_id.as_str())
            .unwrap_or_else(|| panic!("unknown event {}", decoded.event_id));
        assert!(seen.insert(*index), "event {index} read twice");
        assert_eq!(&decoded, *sent, "decoded event equals the one sent");
        assert_eq!(r.key, sent.key(), "record key");
        assert_eq!(
            (r.partition, r.offset),
            (deliveries[*index].partition, deliveries[*index].offset),
            "delivery report matches where the record is"
        );
        assert_eq!(
            r.headers.get(CONTENT_TYPE_HEADER).map(String::as_str),
            Some(CONTENT_TYPE)
        );
        assert_eq!(
            r.headers.get(TRACEPARENT_HEADER).map(String::as_str),
            Some(TP)
        );
        let p = *partition_of_key.entry(r.key.clone()).or_insert(r.partition);
        assert_eq!(p, r.partition, "key {} on one partition", r.key);
        versions_read
            .entry(r.key.clone())
            .or_default()
            .push(decoded.version);
    }
    // Records are sorted by (partition, offset), so this is the log order per key.
    let mut versions_sent: HashMap<String, Vec<i64>> = HashMap::new();
    for e in &events {
        versions_sent.entry(e.key()).or_default().push(e.version);
    }
    assert_eq!(versions_read.len(), versions_sent.len());
    for (key, sent) in &versions_sent {
        assert_eq!(
            versions_read.get(key),
            Some(sent),
            "order of versions for {key}"
        );
    }
    let used: HashSet<i32> = records.iter().map(|r| r.partition).collect();
    assert!(used.len() > 1, "keys spread over partitions: {used:?}");
}

#[tokio::test]
async fn invalid_events_are_refused_and_never_reach_the_topic() {
    let topic = fresh_topic("producer-invalid");
    let producer = Producer::new(ProducerConfig {
        max_document_bytes: 100,
        ..ProducerConfig::new(brokers(), &topic)
    })
    .expect("producer");
    producer
        .ensure_topic(&topic, 2, false)
        .await
        .expect("topic");

    let bad_type = ChangeEvent::new("Product", "p-1", Op::Delete, 1, "t", None);
    match producer.publish(&bad_type).await {
        Err(PublishError::Invalid(ValidationError::EntityType(t))) => assert_eq!(t, "Product"),
        other => panic!("expected Invalid(EntityType), got {other:?}"),
    }
    let too_big = ChangeEvent::new(
        "product",
        "p-1",
        Op::Upsert,
        1,
        "t",
        Some(format!(r#"{{"d":"{}"}}"#, "x".repeat(200))),
    );
    match producer.publish(&too_big).await {
        Err(PublishError::Invalid(ValidationError::DocumentTooLarge { limit: 100, .. })) => {}
        other => panic!("expected DocumentTooLarge, got {other:?}"),
    }
    let not_object = ChangeEvent::new("product", "p-1", Op::Upsert, 1, "t", Some("[1]".into()));
    assert!(matches!(
        producer.send(&not_object).await,
        Err(PublishError::Invalid(ValidationError::DocumentNotObject))
    ));

    // One invalid event in a batch: nothing of the batch is published.
    let mut batch: Vec<ChangeEvent> = (0..10)
        .map(|i| ChangeEvent::new("product", format!("p-{i}"), Op::Delete, 1, "t", None))
        .collect();
    batch[7].version = -5;
    match producer.publish_many(&batch, 4).await {
        Err(PublishManyError::Invalid {
            index: 7,
            error: ValidationError::NegativeVersion(-5),
        }) => {}
        other => panic!("expected Invalid at 7, got {other:?}"),
    }

    // A valid event afterwards is the only record in the topic.
    let ok = ChangeEvent::new("product", "p-ok", Op::Delete, 1, "t", None);
    producer.publish(&ok).await.expect("valid event");
    producer
        .flush(Duration::from_secs(10))
        .await
        .expect("flush");
    let records = read_topic(&topic);
    assert_eq!(records.len(), 1, "only the valid event: {records:?}");
    let decoded = syncline_event::decode(&records[0].value, &Limits::default()).unwrap();
    assert_eq!(decoded, ok);
    // Without a span or an explicit trace context there is no traceparent header.
    assert!(!records[0].headers.contains_key(TRACEPARENT_HEADER));
}

#[tokio::test]
async fn explicit_traceparent_compression_codecs_and_single_publish() {
    let topic = fresh_topic("producer-codecs");
    let admin = Producer::new(ProducerConfig::new(brokers(), &topic)).expect("producer");
    admin.ensure_topic(&topic, 3, false).await.expect("topic");
    let tp: syncline_producer::TraceParent = TP.parse().unwrap();
    let mut sent = Vec::new();
    for (i, codec) in Compression::ALL.into_iter().enumerate() {
        let producer = Producer::new(ProducerConfig {
            compression: codec,
            ..ProducerConfig::new(brokers(), &topic)
        })
        .expect("producer");
        let e = ChangeEvent::new(
            "product",
            format!("codec-{codec}"),
            Op::Upsert,
            i as i64,
            "t",
            Some(format!(
                r#"{{"codec":"{codec}","pad":"{}"}}"#,
                "ab".repeat(500)
            )),
        );
        let d = producer
            .publish_with_traceparent(&e, Some(tp))
            .await
            .unwrap_or_else(|err| panic!("{codec}: {err}"));
        assert!(d.offset >= 0);
        sent.push(e);
    }
    let records = read_topic(&topic);
    assert_eq!(records.len(), sent.len());
    for r in records {
        assert_eq!(
            r.headers.get(TRACEPARENT_HEADER).map(String::as_str),
            Some(TP)
        );
        let e = syncline_event::decode(&r.value, &Limits::default()).unwrap();
        assert!(sent.contains(&e));
    }
}

#[tokio::test]
async fn ensure_topic_creates_compacted_topics_and_reports_existing_ones() {
    let topic = fresh_topic("producer-compact");
    let producer = Producer::new(ProducerConfig::new(brokers(), &topic)).expect("producer");
    assert_eq!(
        producer
            .check_connection(Duration::from_secs(10))
            .await
            .unwrap()
            .topic_partitions,
        None
    );
    assert_eq!(
        producer.ensure_topic(&topic, 4, true).await.unwrap(),
        TopicStatus::Created
    );
    assert_eq!(
        producer.ensure_topic(&topic, 8, false).await.unwrap(),
        TopicStatus::Existed { partitions: 4 }
    );
    assert_eq!(
        producer
            .check_connection(Duration::from_secs(10))
            .await
            .unwrap()
            .topic_partitions,
        Some(4)
    );
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let configs = admin
        .describe_configs(&[ResourceSpecifier::Topic(&topic)], &AdminOptions::new())
        .await
        .unwrap();
    let resource = configs.into_iter().next().unwrap().unwrap();
    let policy = resource
        .entries
        .iter()
        .find(|e| e.name == "cleanup.policy")
        .and_then(|e| e.value.clone());
    assert_eq!(policy.as_deref(), Some("compact"));

    assert!(matches!(
        producer.ensure_topic(&topic, 0, false).await,
        Err(ProducerError::Config(ref c)) if c.setting == "partitions"
    ));
}

#[tokio::test]
async fn unreachable_broker_is_reported_quickly_and_publish_times_out() {
    let producer = Producer::new(ProducerConfig {
        delivery_timeout: Duration::from_secs(2),
        ..ProducerConfig::new("127.0.0.1:1", "changes")
    })
    .expect("producer");
    let started = Instant::now();
    let err = producer
        .check_connection(Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, ProducerError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");

    let started = Instant::now();
    let e = ChangeEvent::new("product", "p-1", Op::Delete, 1, "t", None);
    let err = producer.publish(&e).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, PublishError::Timeout { .. }), "{err:?}");
    assert_eq!(err.key(), Some("product:p-1"));
}

#[test]
fn bad_configuration_names_the_setting() {
    let err = Producer::new(ProducerConfig {
        extra: BTreeMap::from([("no.such.property".to_string(), "1".to_string())]).into(),
        ..ProducerConfig::default()
    })
    .unwrap_err();
    match err {
        ProducerError::Config(c) => assert_eq!(c.setting, "no.such.property"),
        other => panic!("expected a config error, got {other:?}"),
    }
    let err = Producer::new(ProducerConfig::new("127.0.0.1:9092", "bad topic!")).unwrap_err();
    assert!(err.to_string().contains("`topic`"), "{err}");
}
