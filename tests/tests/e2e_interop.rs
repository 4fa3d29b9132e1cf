//! Any Avro library can publish to Syncline, and read what Syncline writes.
//!
//! `tests/python/publish_example.py` (confluent-kafka + fastavro, no Syncline code) publishes
//! creates, updates, deletes and out-of-order versions to the real broker; the
//! `syncline-es-indexer` and `syncline-redis-invalidator` binaries, each in its own group,
//! must apply every one of them (Elasticsearch documents and Redis guards/values equal the
//! highest version per entity) and dead-letter none. Syncline's decoder reads every record
//! Python wrote back to the event it came from, and fastavro decodes records Syncline
//! encoded, re-encoding them to the same bytes.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "support/pipeline.rs"]
mod pipeline;
#[path = "support/python.rs"]
mod python;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use pipeline::Pipeline;

use rdkafka::message::{Headers, Message};
use serde_json::{json, Value};
use syncline_cache::{KeyLayout, Mode};
use syncline_event::{ChangeEvent, Limits, Op};
use syncline_testkit::{
    create_topic_with_dlq, end_offsets, free_port, group_caught_up, kafka_brokers, read_all,
    unique_name, wait_until, ChildGuard,
};

const DEADLINE: Duration = Duration::from_secs(120);
const CONTENT_TYPE: &str = "application/vnd.syncline.change-event+avro";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const SPEC_HEADER: [u8; 10] = [0xC3, 0x01, 0xC3, 0xC7, 0x33, 0x6A, 0x09, 0x64, 0xE7, 0x41];

fn event(t: &str, id: &str, op: Op, version: i64, doc: Option<Value>) -> ChangeEvent {
    let mut e = ChangeEvent::new(t, id, op, version, "python-interop", None);
    e.document = doc.map(|d| d.to_string());
    e
}

/// Creates, updates with higher versions, deletes, a stale upsert after a delete, a
/// re-create, versions arriving out of order, duplicates, non-ASCII text, tags and
/// attributes, over two entity types and enough keys to cover every partition.
fn workload() -> Vec<ChangeEvent> {
    let mut v = vec![
        event(
            "product",
            "a",
            Op::Upsert,
            1,
            Some(json!({"name": "Desk lamp", "price": 39.5})),
        ),
        event(
            "product",
            "a",
            Op::Upsert,
            2,
            Some(json!({"name": "Desk lamp", "price": 34.0})),
        ),
        event(
            "product",
            "b",
            Op::Upsert,
            5,
            Some(json!({"name": "Chair", "stock": 5})),
        ),
        event(
            "product",
            "b",
            Op::Upsert,
            3,
            Some(json!({"name": "Old chair"})),
        ),
        event(
            "product",
            "c",
            Op::Upsert,
            1,
            Some(json!({"name": "Table"})),
        ),
        event("product", "c", Op::Delete, 2, None),
        event("product", "d", Op::Delete, 4, None),
        event(
            "product",
            "d",
            Op::Upsert,
            3,
            Some(json!({"name": "stale, never visible"})),
        ),
        event(
            "product",
            "e",
            Op::Upsert,
            1,
            Some(json!({"name": "Shelf"})),
        ),
        event("product", "e", Op::Delete, 2, None),
        event(
            "product",
            "e",
            Op::Upsert,
            3,
            Some(json!({"name": "Shelf", "back": true})),
        ),
        event(
            "product",
            "p/\u{fc} 1",
            Op::Upsert,
            9,
            Some(json!({"name": "\u{dc}ber-Lampe"})),
        ),
        event("store", "s-2", Op::Upsert, 7, Some(json!({"city": "Lyon"}))),
        event("store", "s-2", Op::Upsert, 7, Some(json!({"city": "Lyon"}))),
    ];
    let mut cafe = event(
        "store",
        "s-1",
        Op::Upsert,
        10,
        Some(
            json!({"name": "Caf\u{e9} Z\u{fc}rich \u{2615}", "tags": ["a", "b"], "geo": {"lat": 47.37}}),
        ),
    );
    cafe.invalidate = vec!["stores:zurich".into(), "search:cafe".into()];
    cafe.attributes = BTreeMap::from([("origin".into(), "python".into())]);
    v.push(cafe);
    // 40 keys, versions published in the order 2, 4, 1, 3; every fifth key ends deleted.
    for k in 0..40 {
        for version in [2, 4, 1, 3] {
            let deleted = k % 5 == 0 && version == 4;
            let doc =
                (!deleted).then(|| json!({"k": k, "v": version, "label": format!("item {k}")}));
            let op = if deleted { Op::Delete } else { Op::Upsert };
            v.push(event("product", &format!("g{k}"), op, version, doc));
        }
    }
    v
}

/// Per entity: the highest version and its document (`None`: deleted).
fn expected_state(events: &[ChangeEvent]) -> BTreeMap<(String, String), (i64, Option<String>)> {
    let mut out: BTreeMap<(String, String), (i64, Option<String>)> = BTreeMap::new();
    for e in events {
        let key = (e.entity_type.clone(), e.entity_id.clone());
        if out.get(&key).is_none_or(|(v, _)| e.version > *v) {
            out.insert(key, (e.version, e.document.clone()));
        }
    }
    out
}

fn header<'a>(m: &'a rdkafka::message::OwnedMessage, name: &str) -> Option<&'a [u8]> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
}

/// Documents visible through `alias`: id -> (version, source).
async fn es_visible(
    http: &reqwest::Client,
    es: &str,
    alias: &str,
) -> BTreeMap<String, (i64, Value)> {
    let r = http
        .post(format!("{es}/{alias}/_refresh"))
        .send()
        .await
        .expect("refresh");
    assert!(r.status().is_success(), "refresh {alias}: {}", r.status());
    let r = http
        .post(format!("{es}/{alias}/_search"))
        .json(&json!({"size": 1000, "version": true, "query": {"match_all": {}}}))
        .send()
        .await
        .expect("search");
    assert!(r.status().is_success(), "search {alias}: {}", r.status());
    let body: Value = r.json().await.expect("search answer is JSON");
    body["hits"]["hits"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|h| {
            let id = h["_id"].as_str().unwrap_or_default().to_owned();
            (
                id,
                (h["_version"].as_i64().unwrap_or(-1), h["_source"].clone()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_by_python_are_applied_by_both_consumers() {
    let brokers = kafka_brokers();
    let base = unique_name("interop");
    let topic = format!("{base}-events");
    let dlq = format!("{topic}.dlq");
    create_topic_with_dlq(&brokers, &topic, 3)
        .await
        .expect("topics");

    // 1. Python publishes the workload (the events as JSON Lines, in order).
    let events = workload();
    let dir = tempfile::tempdir().expect("tempdir");
    let jsonl = dir.path().join("events.jsonl");
    let text: String = events
        .iter()
        .map(|e| serde_json::to_string(e).expect("event as JSON") + "\n")
        .collect();
    std::fs::write(&jsonl, text).expect("write events");
    let out = python::run(
        "publish_example.py",
        &[
            "--brokers",
            &brokers,
            "--topic",
            &topic,
            "--events",
            &jsonl.display().to_string(),
            "--traceparent",
            TRACEPARENT,
        ],
        b"",
    );
    let summary = &python::json_lines(&out)[0];
    assert_eq!(summary["published"], events.len());
    assert_eq!(summary["fingerprint"], "0x41e764096a33c7c3");

    // 2. Syncline decodes every record Python wrote back into the event it came from.
    let records = read_all(&brokers, &topic, events.len(), DEADLINE)
        .await
        .expect("read topic");
    assert_eq!(records.len(), events.len(), "records on the topic");
    let by_id: BTreeMap<&str, &ChangeEvent> =
        events.iter().map(|e| (e.event_id.as_str(), e)).collect();
    let mut partition_of: BTreeMap<String, i32> = BTreeMap::new();
    let mut versions_seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for m in &records {
        let payload = m.payload().expect("payload");
        assert_eq!(payload[..10], SPEC_HEADER, "single-object header");
        let decoded = syncline_event::decode(payload, &Limits::default())
            .unwrap_or_else(|e| panic!("syncline cannot decode a Python record: {e}"));
        let original = by_id
            .get(decoded.event_id.as_str())
            .expect("event_id of a published event");
        assert_eq!(&decoded, *original);
        let key = decoded.key();
        assert_eq!(m.key(), Some(key.as_bytes()));
        assert_eq!(header(m, "content-type"), Some(CONTENT_TYPE.as_bytes()));
        assert_eq!(header(m, "traceparent"), Some(TRACEPARENT.as_bytes()));
        let p = *partition_of.entry(key.clone()).or_insert(m.partition());
        assert_eq!(p, m.partition(), "{key}: one key, one partition");
        versions_seen.entry(key).or_default().push(decoded.version);
    }
    let mut versions_sent: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for e in &events {
        versions_sent.entry(e.key()).or_default().push(e.version);
    }
    assert_eq!(versions_seen, versions_sent, "per-key order as published");
    let partitions_used: std::collections::BTreeSet<i32> = partition_of.values().copied().collect();
    assert_eq!(
        partitions_used.len(),
        3,
        "the workload covers every partition"
    );

    // 3. Both consumers apply it, each in its own group.
    let es = es_devserver::start(es_devserver::Config::default())
        .await
        .expect("start the ES dev server");
    let es_url = es.url().to_owned();
    let pipeline = Pipeline {
        brokers: brokers.clone(),
        topic: topic.clone(),
        base: base.clone(),
    };
    let (es_group, redis_group) = (pipeline.es_group(), pipeline.redis_group());
    let index_prefix = pipeline.index_prefix();
    let layout = KeyLayout::new(pipeline.key_prefix()).expect("key prefix");
    let redis_url = syncline_testkit::redis_url();
    let log = |name: &str| {
        std::fs::File::create(dir.path().join(name))
            .map(Stdio::from)
            .expect("log file")
    };
    let mut indexer = ChildGuard::spawn(
        pipeline
            .indexer(&es_url, free_port())
            .stdout(log("indexer.out"))
            .stderr(log("indexer.err")),
    )
    .expect("spawn syncline-es-indexer");
    let mut invalidator = ChildGuard::spawn(
        pipeline
            .invalidator(&redis_url, Mode::Refresh, free_port())
            .stdout(log("invalidator.out"))
            .stderr(log("invalidator.err")),
    )
    .expect("spawn syncline-redis-invalidator");

    let logs = || {
        ["indexer.err", "invalidator.err"]
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
                format!("--- {f}:\n{}", text.chars().take(4000).collect::<String>())
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let drained = wait_until(DEADLINE, Duration::from_millis(300), || {
        let exited = (
            indexer.try_wait().ok().flatten(),
            invalidator.try_wait().ok().flatten(),
        );
        let (brokers, topic, es_group, redis_group) = (
            brokers.clone(),
            topic.clone(),
            es_group.clone(),
            redis_group.clone(),
        );
        async move {
            if exited.0.is_some() || exited.1.is_some() {
                return Err(format!("a consumer exited: {exited:?}"));
            }
            let es_done = group_caught_up(&brokers, &es_group, &topic).await;
            let redis_done = group_caught_up(&brokers, &redis_group, &topic).await;
            if es_done && redis_done {
                Ok(())
            } else {
                Err(format!(
                    "caught up: indexer {es_done}, invalidator {redis_done}"
                ))
            }
        }
    })
    .await;
    if let Err(why) = drained {
        panic!("{why}\n{}", logs());
    }

    // 4. Nothing was dead-lettered.
    let dead = end_offsets(&brokers, &dlq).await.expect("dlq end offsets");
    assert!(
        dead.iter().all(|o| *o == 0),
        "dead letters: {dead:?}\n{}",
        logs()
    );

    // 5. Elasticsearch: exactly the live entities, at their highest version and document.
    let expected = expected_state(&events);
    let http = reqwest::Client::new();
    let mut problems = Vec::new();
    for entity_type in ["product", "store"] {
        let visible = es_visible(&http, &es_url, &format!("{index_prefix}{entity_type}")).await;
        let live: BTreeMap<String, (i64, Value)> = expected
            .iter()
            .filter(|((t, _), _)| t == entity_type)
            .filter_map(|((_, id), (v, doc))| {
                let doc = doc.as_ref()?;
                Some((
                    id.clone(),
                    (*v, serde_json::from_str(doc).expect("doc is JSON")),
                ))
            })
            .collect();
        for (id, want) in &live {
            if visible.get(id) != Some(want) {
                problems.push(format!(
                    "es {entity_type}/{id}: {:?}, expected {want:?}",
                    visible.get(id)
                ));
            }
        }
        for id in visible.keys().filter(|id| !live.contains_key(*id)) {
            problems.push(format!("es {entity_type}/{id}: visible, expected deleted"));
        }
    }

    // 6. Redis (refresh mode): every guard at the highest version, values for live entities.
    let client = redis::Client::open(redis_url.as_str()).expect("redis url");
    let mut conn = redis::aio::ConnectionManager::new(client)
        .await
        .expect("redis reachable");
    for ((t, id), (version, doc)) in &expected {
        let (guard, value): (Option<String>, Option<String>) = redis::pipe()
            .get(layout.guard_key(t, id))
            .get(layout.cache_key(t, id))
            .query_async(&mut conn)
            .await
            .expect("redis get");
        if guard != Some(version.to_string()) {
            problems.push(format!(
                "redis {t}:{id}: guard {guard:?}, expected {version}"
            ));
        }
        let want = doc.as_ref().map(|d| format!("{version}\n{d}"));
        if value != want {
            problems.push(format!(
                "redis {t}:{id}: value {value:?}, expected {want:?}"
            ));
        }
    }
    let _ = syncline_cache::admin::purge_prefix(&mut conn, &layout).await;
    drop(indexer);
    drop(invalidator);
    assert!(
        problems.is_empty(),
        "{} differences:\n{}\n{}",
        problems.len(),
        problems.join("\n"),
        logs()
    );
}

#[test]
fn fastavro_reads_what_syncline_encodes_byte_for_byte() {
    let mut upsert = event(
        "product",
        "p-\u{e9}",
        Op::Upsert,
        i64::MAX,
        Some(json!({"name": "Lampe \u{e0} poser", "n": [1, 2, {"deep": null}]})),
    );
    upsert.invalidate = vec!["t1".into(), "t2".into()];
    upsert.attributes =
        BTreeMap::from([("k".into(), "v".into()), ("\u{fc}".into(), String::new())]);
    let mut delete = event("store", "s", Op::Delete, 0, None);
    delete.occurred_at = 0;
    let events = [upsert, delete];
    let encoded: Vec<Vec<u8>> = events
        .iter()
        .map(|e| syncline_event::encode(e, &Limits::default()).expect("encode"))
        .collect();
    let input: String = encoded
        .iter()
        .map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>() + "\n")
        .collect();
    let answers = python::json_lines(&python::run("decode_records.py", &[], input.as_bytes()));
    assert_eq!(answers.len(), events.len());
    for ((e, bytes), a) in events.iter().zip(&encoded).zip(&answers) {
        assert!(a.get("error").is_none(), "fastavro could not decode: {a}");
        assert_eq!(a["fingerprint"], "0x41e764096a33c7c3");
        // The JSON form of the event has `document` as an object; fastavro gives the text.
        let mut want = serde_json::to_value(e).expect("event as JSON");
        want["document"] = e.document.clone().map_or(Value::Null, Value::String);
        assert_eq!(a["event"], want);
        let hex: String = bytes.iter().map(|x| format!("{x:02x}")).collect();
        assert_eq!(
            a["reencoded_hex"], hex,
            "fastavro's encoding equals Syncline's"
        );
    }
}
