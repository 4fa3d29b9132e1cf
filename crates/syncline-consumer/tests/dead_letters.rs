//! Poison records and sink rejections land in `<topic>.dlq` with the original key and
//! payload and the documented headers; every valid event is applied; offsets are
//! committed to the end.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{test_config, wait_committed_to_end, Plan, Shared, TestSink};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use syncline_consumer::dlq::{
    HEADER_CLASS, HEADER_GROUP, HEADER_OFFSET, HEADER_PARTITION, HEADER_REASON, HEADER_TOPIC,
};
use syncline_consumer::{run_with_metrics, Metrics};
use syncline_event::{encode, ChangeEvent, Limits, Op};
use syncline_testkit::{create_topic_with_dlq, kafka_brokers, publish_raw, read_all, unique_name};
use tokio_util::sync::CancellationToken;

fn event(id: &str, version: i64, doc: &str) -> ChangeEvent {
    ChangeEvent::new(
        "item",
        id,
        Op::Upsert,
        version,
        "test",
        Some(doc.to_owned()),
    )
}

fn record(e: &ChangeEvent) -> (Vec<u8>, Vec<u8>) {
    (
        e.key().into_bytes(),
        encode(e, &Limits::default()).expect("encode"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_and_rejections_are_dead_lettered_with_headers() {
    let brokers = kafka_brokers();
    let topic = unique_name("dlq");
    let group = unique_name("dlq-g");
    let dlq_topic = format!("{topic}.dlq");
    create_topic_with_dlq(&brokers, &topic, 2)
        .await
        .expect("topics");

    // Valid events, interleaved with poison below. Expected class per poison key.
    let mut records = Vec::new();
    let mut expected_class: HashMap<Vec<u8>, &str> = HashMap::new();
    let mut valid = Vec::new();
    for i in 0..40 {
        let e = event(&format!("ok{i}"), 1, &format!("{{\"n\":{i}}}"));
        records.push(record(&e));
        valid.push(e);
    }
    let mut poison = |key: &str, payload: Vec<u8>, class: &'static str| {
        expected_class.insert(key.as_bytes().to_vec(), class);
        (key.as_bytes().to_vec(), payload)
    };
    let good = encode(&event("p1", 1, "{\"x\":\"ab\"}"), &Limits::default()).expect("encode");
    // Not Avro at all.
    records.insert(
        3,
        poison("item:bad-magic", b"this is not avro".to_vec(), "bad_magic"),
    );
    // Cut in half.
    records.insert(
        7,
        poison("item:p1", good[..good.len() / 2].to_vec(), "malformed_body"),
    );
    // A fingerprint nobody knows.
    let unknown = syncline_testkit::poison::with_unknown_fingerprint(&good);
    records.insert(11, poison("item:unknown-fp", unknown, "unknown_schema"));
    // The document is not JSON: same length, so the Avro framing stays valid.
    let mut bad_doc =
        encode(&event("bad-doc", 1, "{\"x\":\"ab\"}"), &Limits::default()).expect("encode");
    let at = bad_doc
        .windows(10)
        .position(|w| w == b"{\"x\":\"ab\"}")
        .expect("doc bytes");
    bad_doc[at..at + 10].copy_from_slice(b"{\"x\":\"ab\"]");
    records.insert(15, poison("item:bad-doc", bad_doc, "invalid_document"));
    // Over the configured document limit (set to 1000 bytes below).
    let big = format!("{{\"pad\":\"{}\"}}", "y".repeat(2000));
    records.insert(
        19,
        poison(
            "item:too-big",
            encode(
                &event("too-big", 1, &big),
                &Limits {
                    max_document_bytes: 1 << 20,
                },
            )
            .expect("encode"),
            "document_too_large",
        ),
    );
    // Key does not match entity_type:entity_id.
    records.insert(
        23,
        poison(
            "item:someone-else",
            encode(&event("mismatch", 1, "{}"), &Limits::default()).expect("encode"),
            "key_mismatch",
        ),
    );
    // The sink rejects this one.
    let rejected = event("reject-me", 4, "{\"r\":1}");
    records.insert(
        27,
        poison("item:reject-me", record(&rejected).1, "test_rejected"),
    );
    // The sink keeps failing this one; retry_max_attempts = 3 gives up.
    let hopeless = event("hopeless", 2, "{\"h\":1}");
    records.insert(
        31,
        poison("item:hopeless", record(&hopeless).1, "retries_exhausted"),
    );

    let originals: HashMap<Vec<u8>, Vec<u8>> = records.iter().cloned().collect();
    publish_raw(&brokers, &topic, records)
        .await
        .expect("publish");
    // A Kafka tombstone (no value at all) cannot be made with publish_raw.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("producer");
    producer
        .send(
            FutureRecord::<[u8], [u8]>::to(&topic).key(b"item:tombstone".as_slice()),
            Duration::from_secs(30),
        )
        .await
        .expect("tombstone");
    expected_class.insert(b"item:tombstone".to_vec(), "empty_payload");

    let sink = TestSink::new(Plan {
        reject_ids: ["reject-me".to_owned()].into(),
        always_fail_ids: ["hopeless".to_owned()].into(),
        ..Plan::default()
    });
    let metrics = Metrics::new();
    let token = CancellationToken::new();
    let mut config = test_config(&topic, &group);
    config.max_document_bytes = 1000;
    config.retry_max_attempts = Some(3);
    let run = tokio::spawn(run_with_metrics(
        config,
        Shared(sink.clone()),
        metrics.clone(),
        token.clone(),
    ));

    wait_committed_to_end(&group, &topic, Duration::from_secs(120)).await;

    // Every valid event applied.
    let state = sink.snapshot();
    for e in &valid {
        let got = state.get(&(e.entity_type.clone(), e.entity_id.clone()));
        assert_eq!(got, Some(&(1, e.document.clone())), "{}", e.entity_id);
    }
    assert!(!state.contains_key(&("item".to_owned(), "reject-me".to_owned())));

    // Every poison record in the DLQ, once, with its original bytes and headers.
    let dead = read_all(
        &brokers,
        &dlq_topic,
        expected_class.len(),
        Duration::from_secs(60),
    )
    .await
    .expect("read dlq");
    assert_eq!(dead.len(), expected_class.len(), "dead letters");
    for m in &dead {
        let key = m.key().expect("dlq key").to_vec();
        let headers: HashMap<String, String> = m
            .headers()
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
            .unwrap_or_default();
        let class = expected_class.get(&key).unwrap_or_else(|| {
            panic!("unexpected dead letter {:?}", String::from_utf8_lossy(&key))
        });
        assert_eq!(
            headers.get(HEADER_CLASS).map(String::as_str),
            Some(*class),
            "{headers:?}"
        );
        assert!(!headers[HEADER_REASON].is_empty());
        assert_eq!(headers[HEADER_TOPIC], topic);
        assert_eq!(headers[HEADER_GROUP], group);
        assert!(headers[HEADER_PARTITION].parse::<i32>().is_ok());
        assert!(headers[HEADER_OFFSET].parse::<i64>().is_ok());
        assert_eq!(
            m.payload().map(<[u8]>::to_vec),
            originals.get(&key).cloned(),
            "original payload of {:?}",
            String::from_utf8_lossy(&key)
        );
    }

    let snap = metrics.snapshot();
    assert_eq!(
        snap.dead_lettered_total(),
        expected_class.len() as u64,
        "{snap:?}"
    );
    assert_eq!(snap.dead_lettered.get("retries_exhausted"), Some(&1));

    token.cancel();
    let result = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("run returns after cancel")
        .expect("task");
    assert!(result.is_ok(), "{result:?}");
}
