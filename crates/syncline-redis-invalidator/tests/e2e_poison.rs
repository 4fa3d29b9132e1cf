//! Poison records (bad magic, truncated body, unknown schema fingerprint, a document that
//! is not JSON) land in `<topic>.dlq` with their class, reason and source coordinates;
//! every valid event around them is applied, including its tag bumps.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::message::{Headers, Message};
use redis::AsyncCommands;
use serde_json::json;
use syncline_cache::Mode;
use syncline_event::{ChangeEvent, Limits, Op};
use syncline_testkit::{create_topic_with_dlq, publish_raw, read_all};

fn encode(e: &ChangeEvent) -> Vec<u8> {
    syncline_event::encode(e, &Limits::default()).expect("encode")
}

fn header(m: &rdkafka::message::OwnedMessage, name: &str) -> Option<String> {
    let h = m.headers()?;
    h.iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_dead_lettered_and_valid_ones_applied() {
    let url = syncline_testkit::redis_url();
    let setup = common::Setup::new("poison", &url);
    let dlq = format!("{}.dlq", setup.topic);
    create_topic_with_dlq(&setup.brokers, &setup.topic, 1)
        .await
        .expect("topics");

    let valid = |i: usize| {
        let mut e = ChangeEvent::new(
            "product",
            format!("ok{i}"),
            Op::Upsert,
            1,
            "test",
            Some(json!({"i": i}).to_string()),
        );
        e.invalidate = vec![format!("tag{}", i % 2)];
        e
    };
    let good = encode(&valid(0));
    let not_json = syncline_testkit::poison::document_not_json("product", "badjson");
    let unknown_fp = syncline_testkit::poison::with_unknown_fingerprint(&good);

    let mut records: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut valid_events = Vec::new();
    let mut expected = BTreeMap::new();
    let poison: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "bad_magic",
            "product:x1",
            b"\x00\x01not avro at all".to_vec(),
        ),
        ("truncated", "product:ok0", good[..good.len() / 2].to_vec()),
        ("unknown_fingerprint", "product:ok0", unknown_fp),
        ("invalid_json", "product:badjson", not_json),
    ];
    let mut n = 0;
    for (name, key, bytes) in poison {
        for _ in 0..3 {
            let e = valid(n);
            n += 1;
            records.push((e.key().into_bytes(), encode(&e)));
            valid_events.push(e);
        }
        expected.insert(records.len() as i64, name);
        records.push((key.as_bytes().to_vec(), bytes));
    }
    publish_raw(&setup.brokers, &setup.topic, records)
        .await
        .expect("publish");

    let inv = setup.spawn(Mode::Refresh, &[]);
    setup.wait_drained(common::DEADLINE).await;
    let metrics = inv.metrics();
    drop(inv);

    let mut conn = common::connect(&url).await;
    let oracle = common::oracle_of(&valid_events);
    let checked = common::check_oracle(&mut conn, &setup.layout, &oracle, Mode::Refresh).await;
    let gens: (Option<u64>, Option<u64>) = (
        conn.get(setup.layout.tag_key("tag0")).await.expect("gen"),
        conn.get(setup.layout.tag_key("tag1")).await.expect("gen"),
    );
    let bad_json_guard: Option<String> = conn
        .get(setup.layout.guard_key("product", "badjson"))
        .await
        .expect("get");
    common::cleanup(&mut conn, &setup.layout).await;
    checked.unwrap_or_else(|e| panic!("{e}\n{metrics}"));
    assert_eq!(gens, (Some(6), Some(6)), "one bump per valid event and tag");
    assert_eq!(bad_json_guard, None, "an invalid event never reaches redis");

    let dead = read_all(
        &setup.brokers,
        &dlq,
        expected.len(),
        Duration::from_secs(60),
    )
    .await
    .expect("read dlq");
    assert_eq!(
        dead.len(),
        expected.len(),
        "dead letters; metrics:\n{metrics}"
    );
    let mut seen = BTreeMap::new();
    for m in &dead {
        let offset: i64 = header(m, "syncline.source.offset")
            .and_then(|s| s.parse().ok())
            .expect("offset header");
        assert_eq!(
            header(m, "syncline.source.topic").as_deref(),
            Some(setup.topic.as_str())
        );
        assert_eq!(
            header(m, "syncline.consumer.group").as_deref(),
            Some(setup.group.as_str())
        );
        let class = header(m, "syncline.error.class").expect("class header");
        let reason = header(m, "syncline.error.reason").expect("reason header");
        assert!(!reason.is_empty());
        assert_ne!(class, "retries_exhausted", "{reason}");
        seen.insert(offset, class);
    }
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        expected.keys().copied().collect::<Vec<_>>()
    );
}
