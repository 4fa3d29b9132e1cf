//! The dead-letter topic misbehaving: a dead letter too large for it is written truncated
//! (headers and the source reference, no payload) instead of blocking; a dead-letter topic
//! that cannot be written pauses the partition (memory stays bounded, nothing is committed
//! past the poison record), fails readiness, and once it works again nothing is lost.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{test_config, wait_committed_to_end, Plan, Shared, TestSink};
use rdkafka::message::{Headers, Message};
use syncline_consumer::dlq::{HEADER_CLASS, HEADER_OFFSET, HEADER_PARTITION, HEADER_TRUNCATED};
use syncline_consumer::{run_with, run_with_metrics, Health, Membership, Metrics};
use syncline_event::{encode, ChangeEvent, Limits, Op};
use syncline_testkit::{
    committed_offsets, create_topic_with_dlq, free_port, kafka_brokers, publish_raw, read_all,
    unique_name, wait_until,
};
use tokio_util::sync::CancellationToken;

fn valid(n: usize, from: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (from..from + n)
        .map(|i| {
            let e = ChangeEvent::new(
                "item",
                format!("ok{i}"),
                Op::Upsert,
                1,
                "test",
                Some(format!("{{\"n\":{i}}}")),
            );
            (
                e.key().into_bytes(),
                encode(&e, &Limits::default()).expect("encode"),
            )
        })
        .collect()
}

fn headers(m: &rdkafka::message::OwnedMessage) -> HashMap<String, String> {
    m.headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_too_large_for_the_topic_is_written_truncated() {
    let brokers = kafka_brokers();
    let topic = unique_name("dlq-big");
    let group = unique_name("dlq-big-g");
    create_topic_with_dlq(&brokers, &topic, 1)
        .await
        .expect("topics");
    let mut records = valid(20, 0);
    // 60 KB of not-Avro: dead-lettered as bad_magic, larger than the DLQ producer allows.
    records.insert(5, (b"item:huge".to_vec(), vec![b'x'; 60_000]));
    publish_raw(&brokers, &topic, records)
        .await
        .expect("publish");

    let sink = TestSink::new(Plan::default());
    let metrics = Metrics::new();
    let token = CancellationToken::new();
    let mut config = test_config(&topic, &group);
    config
        .dlq_kafka
        .insert("message.max.bytes".into(), "20000".into());
    let run = tokio::spawn(run_with_metrics(
        config,
        Shared(sink.clone()),
        metrics.clone(),
        token.clone(),
    ));
    wait_committed_to_end(&group, &topic, Duration::from_secs(120)).await;
    assert_eq!(sink.snapshot().len(), 20, "every valid event applied");

    let dead = read_all(
        &brokers,
        &format!("{topic}.dlq"),
        1,
        Duration::from_secs(30),
    )
    .await
    .expect("read dlq");
    assert_eq!(dead.len(), 1);
    let h = headers(&dead[0]);
    assert_eq!(h[HEADER_CLASS], "bad_magic");
    assert_eq!(h[HEADER_TRUNCATED], "60000", "{h:?}");
    assert_eq!(h[HEADER_PARTITION], "0");
    assert_eq!(h[HEADER_OFFSET], "5");
    assert!(dead[0].payload().is_none(), "the payload is left out");
    assert_eq!(metrics.snapshot().dead_lettered.get("bad_magic"), Some(&1));

    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(60), run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_dead_letter_topic_pauses_and_fails_readiness_and_loses_nothing() {
    let brokers = kafka_brokers();
    let topic = unique_name("dlq-down");
    let group = unique_name("dlq-down-g");
    create_topic_with_dlq(&brokers, &topic, 1)
        .await
        .expect("topics");
    // The poison record first, then far more valid records than the runtime may hold.
    let mut records = vec![(b"item:poison".to_vec(), b"not avro".to_vec())];
    records.extend(valid(5_000, 0));
    publish_raw(&brokers, &topic, records)
        .await
        .expect("publish");

    let sink = TestSink::new(Plan::default());
    let metrics = Metrics::new();
    let token = CancellationToken::new();
    let mut config = test_config(&topic, &group);
    config.batch_max_events = 100;
    config.max_in_flight_batches = 2;
    config.unready_after_retrying = Duration::from_millis(500);
    // A dead-letter cluster nobody answers on: every dead letter times out.
    config.dlq_kafka.insert(
        "bootstrap.servers".into(),
        format!("127.0.0.1:{}", free_port()),
    );
    config
        .dlq_kafka
        .insert("message.timeout.ms".into(), "1000".into());
    let health = Health::new();
    let run = tokio::spawn(run_with(
        config.clone(),
        Shared(sink.clone()),
        metrics.clone(),
        health.clone(),
        Membership::Group,
        token.clone(),
    ));

    // Readiness fails, naming the cause.
    let why = wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
        let h = health.clone();
        async move {
            match h.readiness(Duration::from_millis(500)) {
                Err(why) if why.contains("dead-letter") => Ok(why),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
    .expect("readiness fails while dead letters cannot be written");
    assert!(why.contains("retrying"), "{why}");

    // The partition is paused, so memory stays bounded: records published from now on
    // are not read (the runtime had read the first 5,001 before the first dead-letter
    // write timed out), and nothing is committed past the poison record at offset 0.
    let before = metrics.snapshot().consumed;
    publish_raw(&brokers, &topic, valid(5_000, 5_000))
        .await
        .expect("publish more");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = metrics.snapshot().consumed;
    assert_eq!(
        after, before,
        "kept reading the paused partition while dead letters could not be written"
    );
    let committed = committed_offsets(&brokers, &group, &topic)
        .await
        .expect("committed");
    assert!(
        committed.iter().all(|c| c.unwrap_or(0) == 0),
        "committed past the poison record: {committed:?}"
    );
    assert_eq!(metrics.snapshot().dead_lettered_total(), 0);

    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(60), run).await;

    // The dead-letter topic works again: a restart writes the dead letter and drains.
    let mut healthy = config;
    healthy.dlq_kafka = Default::default();
    let health = Health::new();
    let token = CancellationToken::new();
    let run = tokio::spawn(run_with(
        healthy,
        Shared(sink.clone()),
        Metrics::new(),
        health.clone(),
        Membership::Group,
        token.clone(),
    ));
    wait_committed_to_end(&group, &topic, Duration::from_secs(120)).await;
    assert_eq!(sink.snapshot().len(), 10_000);
    let dead = read_all(
        &brokers,
        &format!("{topic}.dlq"),
        1,
        Duration::from_secs(30),
    )
    .await
    .expect("read dlq");
    assert_eq!(dead.len(), 1, "exactly one dead letter");
    assert_eq!(headers(&dead[0])[HEADER_CLASS], "bad_magic");
    assert!(health.readiness(Duration::from_secs(60)).is_ok());
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(60), run).await;
}
