//! Poison records: bad magic, truncated body, unknown schema fingerprint, a document that
//! is not JSON, an oversized document, and a document the index mapping rejects (400).
//! Each lands in `<topic>.dlq` with its reason and source coordinates in the headers;
//! every valid event around them is applied.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{check_oracle, Es, Setup};
use rdkafka::message::{Headers, Message};
use serde_json::json;
use syncline_event::{ChangeEvent, Limits, Op};
use syncline_testkit::{create_topic_with_dlq, publish_raw, read_all, Expected, Oracle};

fn encode(e: &ChangeEvent) -> Vec<u8> {
    syncline_event::encode(
        e,
        &Limits {
            max_document_bytes: usize::MAX,
        },
    )
    .expect("encode")
}

fn header(m: &rdkafka::message::OwnedMessage, name: &str) -> Option<String> {
    let h = m.headers()?;
    h.iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_dead_lettered_with_reason_and_source() {
    let es = Es::start().await;
    let setup = Setup::new(&es, "poison");
    let dlq = format!("{}.dlq", setup.topic);
    create_topic_with_dlq(&setup.brokers, &setup.topic, 1)
        .await
        .expect("topics");
    let mappings = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        mappings.path().join("product.json"),
        r#"{"mappings":{"properties":{"price":{"type":"long"},"name":{"type":"keyword"}}}}"#,
    )
    .expect("mapping");

    let valid = |i: usize| {
        ChangeEvent::new(
            "product",
            format!("ok{i}"),
            Op::Upsert,
            1,
            "test",
            Some(json!({"price": i, "name": format!("n{i}")}).to_string()),
        )
    };
    let good = encode(&valid(0));
    let not_json = syncline_testkit::poison::document_not_json("product", "badjson");
    let unknown_fp = syncline_testkit::poison::with_unknown_fingerprint(&good);
    let oversized = encode(&ChangeEvent::new(
        "product",
        "huge",
        Op::Upsert,
        1,
        "test",
        Some(json!({"pad": "x".repeat(20_000)}).to_string()),
    ));
    let rejected = encode(&ChangeEvent::new(
        "product",
        "rejected",
        Op::Upsert,
        1,
        "test",
        Some(json!({"price": "abc"}).to_string()),
    ));

    // Valid events before, between and after the poison.
    let mut records: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut oracle = Oracle::new();
    let mut expected_classes = BTreeMap::new();
    let mut n = 0;
    let mut push_valid = |records: &mut Vec<(Vec<u8>, Vec<u8>)>, oracle: &mut Oracle| {
        for _ in 0..5 {
            let e = valid(n);
            n += 1;
            oracle.insert(
                (e.entity_type.clone(), e.entity_id.clone()),
                Expected {
                    version: e.version,
                    document: e.document.clone(),
                },
            );
            records.push((e.key().into_bytes(), encode(&e)));
        }
    };
    // (case, record key, payload); decodable records carry their real key, since the
    // runtime checks that the key matches the event.
    let poison: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "bad_magic",
            "product:x1",
            b"\x00\x01not avro at all".to_vec(),
        ),
        ("truncated", "product:ok0", good[..good.len() / 2].to_vec()),
        ("unknown_fingerprint", "product:ok0", unknown_fp),
        ("invalid_json", "product:badjson", not_json),
        ("oversized", "product:huge", oversized),
        ("mapping", "product:rejected", rejected),
    ];
    for (name, key, bytes) in poison {
        push_valid(&mut records, &mut oracle);
        expected_classes.insert(records.len() as i64, name);
        records.push((key.as_bytes().to_vec(), bytes));
    }
    push_valid(&mut records, &mut oracle);
    let delivered = publish_raw(&setup.brokers, &setup.topic, records)
        .await
        .expect("publish");
    // One partition: the record index is its offset.
    assert!(delivered
        .iter()
        .enumerate()
        .all(|(i, d)| d.offset == i as i64));

    let indexer = setup.spawn(&[
        "--max-document-bytes",
        "10000",
        "--es-mappings-dir",
        mappings.path().to_str().expect("utf-8"),
    ]);
    setup.wait_drained(Duration::from_secs(300)).await;
    let metrics = indexer.metrics().await;
    drop(indexer);

    check_oracle(&es, &setup.alias("product"), &oracle, true)
        .await
        .expect("every valid event applied");
    let dead = read_all(&setup.brokers, &dlq, 6, Duration::from_secs(60))
        .await
        .expect("read dlq");
    assert_eq!(dead.len(), 6, "dead letters; metrics:\n{metrics}");
    let mut seen = BTreeMap::new();
    for m in &dead {
        let offset: i64 = header(m, "syncline.source.offset")
            .and_then(|s| s.parse().ok())
            .expect("source offset header");
        assert_eq!(
            header(m, "syncline.source.topic").as_deref(),
            Some(setup.topic.as_str())
        );
        assert_eq!(header(m, "syncline.source.partition").as_deref(), Some("0"));
        assert_eq!(
            header(m, "syncline.consumer.group").as_deref(),
            Some(setup.group.as_str())
        );
        let class = header(m, "syncline.error.class").expect("class header");
        let reason = header(m, "syncline.error.reason").expect("reason header");
        assert!(!reason.is_empty());
        seen.insert(offset, (class, reason));
    }
    let offsets: Vec<i64> = seen.keys().copied().collect();
    assert_eq!(
        offsets,
        expected_classes.keys().copied().collect::<Vec<_>>()
    );
    // The mapping rejection is the indexer's own classification, with ES's reason.
    let (mapping_offset, _) = expected_classes
        .iter()
        .find(|(_, n)| **n == "mapping")
        .expect("mapping case");
    let (class, reason) = &seen[mapping_offset];
    assert_eq!(class, "mapping_error", "{reason}");
    assert!(reason.contains("price"), "{reason}");
    // The others are the runtime's decode/validation classes, each with a reason.
    for (offset, name) in &expected_classes {
        let (class, reason) = &seen[offset];
        assert_ne!(class, "retries_exhausted", "{name}: {reason}");
    }
}
