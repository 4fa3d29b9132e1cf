//! The relay in-process against a real PostgreSQL (the test kit's) and the real broker.
// Test code: a panic is the failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use rdkafka::Message as _;
use syncline_outbox::{migrate, Metrics, RelaySettings};
use syncline_producer::ProducerConfig;
use syncline_testkit::kafka::decode_message;
use syncline_testkit::postgres::{count_rows, wait_until_empty};
use syncline_testkit::{
    create_topic, end_offsets, kafka_brokers, read_all, unique_name, wait_until, TestDb,
};
use tokio_util::sync::CancellationToken;

struct Relay {
    metrics: Metrics,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn settings(db: &TestDb, topic: &str) -> RelaySettings {
    let mut s = RelaySettings::new(db.config(), ProducerConfig::new(kafka_brokers(), topic));
    s.standby_retry = Duration::from_millis(200);
    s.stats_interval = Duration::from_millis(200);
    s
}

fn start(s: RelaySettings) -> Relay {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info")
        .try_init();
    let metrics = Metrics::new();
    let stop = CancellationToken::new();
    let (m, st) = (metrics.clone(), stop.clone());
    let task = tokio::spawn(async move {
        syncline_outbox::run(s, m, st).await.expect("relay");
    });
    Relay {
        metrics,
        stop,
        task,
    }
}

async fn setup(partitions: i32) -> (TestDb, String) {
    let db = TestDb::create().await;
    assert_eq!(migrate(&db.config()).await.unwrap(), vec![1]);
    let topic = unique_name("outbox");
    create_topic(&kafka_brokers(), &topic, partitions)
        .await
        .unwrap();
    (db, topic)
}

/// Everything in the topic, read up to the end offsets (taken after the relay finished).
async fn topic_events(topic: &str) -> Vec<(i32, syncline_event::ChangeEvent)> {
    let total: i64 = end_offsets(&kafka_brokers(), topic)
        .await
        .unwrap()
        .iter()
        .sum();
    let msgs = read_all(
        &kafka_brokers(),
        topic,
        total as usize,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(msgs.len() as i64, total);
    msgs.iter()
        .map(|m| {
            let e = decode_message(m).unwrap();
            assert_eq!(m.key(), Some(e.key().as_bytes()));
            (m.partition(), e)
        })
        .collect()
}

#[tokio::test]
async fn migrate_is_idempotent() {
    let db = TestDb::create().await;
    assert_eq!(migrate(&db.config()).await.unwrap(), vec![1]);
    assert!(migrate(&db.config()).await.unwrap().is_empty());
    let c = db.client().await;
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename IN
               ('syncline_outbox','syncline_outbox_quarantine','syncline_entity_versions')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    // syncline_emit refuses a bad op inside the caller's transaction.
    let e = c
        .query_one("SELECT syncline_emit('product', 'p1', 'PATCH', 1)", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("22023"));
}

#[tokio::test]
async fn committed_rows_published_rolled_back_never_in_order_and_cleaned_up() {
    let (db, topic) = setup(3).await;
    let relay = start(settings(&db, &topic));
    let db = Arc::new(db);
    let mut services = Vec::new();
    for service in 0..4 {
        let db = db.clone();
        services.push(tokio::spawn(async move {
            let mut c = db.client().await;
            let mut committed = Vec::new();
            let mut rolled_back = Vec::new();
            for i in 0..120 {
                let txn = format!("{service}-{i}");
                let (rows, rollback, entities) = {
                    let mut r = rand::rng();
                    let rows = r.random_range(1..=3);
                    let rollback = r.random_bool(0.25);
                    // Sorted and distinct: services lock rows in one order, or deadlock.
                    let entities: BTreeSet<String> =
                        (0..rows).map(|_| format!("e{:02}", r.random_range(0..20))).collect();
                    let entities: Vec<String> = entities.into_iter().collect();
                    let rows = entities.len();
                    (rows, rollback, entities)
                };
                let tx = c.transaction().await.unwrap();
                for (k, entity) in entities.iter().enumerate().take(rows) {
                    let attrs = serde_json::json!({ "txn": txn, "row": k.to_string() });
                    let doc = serde_json::json!({ "name": entity, "txn": txn });
                    if k.is_multiple_of(2) {
                        tx.execute(
                            "SELECT syncline_emit('item', $1, 'UPSERT',
                                 syncline_next_version('item', $1), $2::text::jsonb, '{}', $3::text::jsonb, 'test')",
                            &[entity, &doc.to_string(), &attrs.to_string()],
                        )
                        .await
                        .unwrap();
                    } else {
                        // The version first, then the row: the row's id must be drawn
                        // after the entity's lock (docs/outbox.md), not in the same
                        // VALUES list, where PostgreSQL may draw the id first.
                        let version: i64 = tx
                            .query_one("SELECT syncline_next_version('item', $1)", &[entity])
                            .await
                            .unwrap()
                            .get(0);
                        tx.execute(
                            "INSERT INTO syncline_outbox (entity_type, entity_id, op, version, document, attributes)
                             VALUES ('item', $1, 'UPSERT', $2, $3, $4::text::jsonb)",
                            &[entity, &version, &doc.to_string(), &attrs.to_string()],
                        )
                        .await
                        .unwrap();
                    }
                }
                if rollback {
                    tx.rollback().await.unwrap();
                    rolled_back.push((txn, rows));
                } else {
                    tx.commit().await.unwrap();
                    committed.push((txn, rows));
                }
            }
            (committed, rolled_back)
        }));
    }
    let mut committed = BTreeMap::new();
    let mut rolled_back = BTreeSet::new();
    for s in services {
        let (c, r) = s.await.unwrap();
        committed.extend(c);
        rolled_back.extend(r.into_iter().map(|(t, _)| t));
    }
    let expected: usize = committed.values().sum();
    assert!(!rolled_back.is_empty() && expected > 0);
    let c = db.client().await;
    let m = relay.metrics.clone();
    wait_until(Duration::from_secs(60), Duration::from_millis(50), || {
        let c = &c;
        let m = m.clone();
        async move {
            let left = count_rows(c, "syncline_outbox").await;
            if left == 0 && m.published() as usize >= expected {
                Ok(())
            } else {
                Err(format!(
                    "{left} rows left, {} published of {expected}",
                    m.published()
                ))
            }
        }
    })
    .await
    .unwrap();
    relay.stop.cancel();
    relay.task.await.unwrap();

    let events = topic_events(&topic).await;
    // Every committed row at least once; no rolled-back row ever.
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (_, e) in &events {
        let txn = e.attributes.get("txn").cloned().unwrap();
        assert!(
            !rolled_back.contains(&txn),
            "rolled-back transaction {txn} was published"
        );
        assert!(committed.contains_key(&txn), "unknown transaction {txn}");
        *seen.entry((txn, e.attributes["row"].clone())).or_default() += 1;
        assert_eq!(
            e.source,
            if e.attributes["row"]
                .parse::<usize>()
                .unwrap()
                .is_multiple_of(2)
            {
                "test"
            } else {
                "postgres-outbox"
            }
        );
    }
    for (txn, rows) in &committed {
        for k in 0..*rows {
            assert!(
                seen.contains_key(&(txn.clone(), k.to_string())),
                "{txn} row {k} missing"
            );
        }
    }
    // Per entity, in log order: versions 1, 2, 3, ... (rolled-back versions were rolled
    // back with their transaction, so the committed ones are contiguous).
    let mut per_entity: BTreeMap<String, (i32, Vec<i64>)> = BTreeMap::new();
    for (p, e) in &events {
        let entry = per_entity
            .entry(e.entity_id.clone())
            .or_insert((*p, Vec::new()));
        assert_eq!(entry.0, *p, "entity {} on two partitions", e.entity_id);
        entry.1.push(e.version);
    }
    for (entity, (_, versions)) in per_entity {
        let want: Vec<i64> = (1..=versions.len() as i64).collect();
        assert_eq!(versions, want, "entity {entity} out of order");
    }
    assert_eq!(count_rows(&c, "syncline_outbox").await, 0);
    assert_eq!(relay.metrics.quarantined(), 0);
    // A stable event_id derived from the row.
    assert!(events.iter().all(|(_, e)| uuid_like(&e.event_id)));
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

#[tokio::test]
async fn bad_rows_are_quarantined_without_blocking() {
    let (db, topic) = setup(1).await;
    let c = db.client().await;
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(3000));
    c.batch_execute(&format!(
        "INSERT INTO syncline_outbox (entity_type, entity_id, op, version, document) VALUES
           ('good', 'g1', 'UPSERT', 1, '{{\"n\":1}}'),
           ('Bad Type!', 'b1', 'UPSERT', 1, '{{\"n\":1}}'),
           ('good', 'g2', 'UPSERT', 1, 'not json at all'),
           ('good', 'g3', 'UPSERT', 1, '{big}'),
           ('good', 'g4', 'MERGE', 1, '{{\"n\":1}}'),
           ('good', 'g5', 'DELETE', 2, NULL),
           ('good', 'g6', 'UPSERT', 1, '[1,2]');
         INSERT INTO syncline_outbox (entity_type, entity_id, op, version, document, attributes)
           VALUES ('good', 'g7', 'UPSERT', 1, '{{}}', '{{\"n\": 5}}');
         INSERT INTO syncline_outbox (entity_type, entity_id, op, version, document, event_id)
           VALUES ('good', 'g8', 'UPSERT', 3, '{{\"n\":8}}', '0190f0a0-0000-7000-8000-000000000001');"
    ))
    .await
    .unwrap();
    let mut s = settings(&db, &topic);
    s.producer.max_document_bytes = 2048;
    let relay = start(s);
    wait_until_empty(
        &c,
        "syncline_outbox",
        Duration::from_secs(60),
        Duration::from_millis(50),
    )
    .await
    .unwrap();
    relay.stop.cancel();
    relay.task.await.unwrap();
    let q: BTreeMap<String, String> = c
        .query(
            "SELECT entity_id, reason FROM syncline_outbox_quarantine",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let reason = |id: &str| q.get(id).cloned().unwrap_or_default();
    assert_eq!(q.len(), 6, "{q:?}");
    assert!(reason("b1").contains("entity_type"), "{q:?}");
    assert!(reason("g2").contains("not a JSON object"), "{q:?}");
    assert!(reason("g3").contains("over the limit of 2048"), "{q:?}");
    assert!(
        reason("g4").contains("op must be UPSERT or DELETE"),
        "{q:?}"
    );
    assert!(reason("g6").contains("not an object"), "{q:?}");
    assert!(reason("g7").contains("attributes"), "{q:?}");
    // The quarantined rows keep their content.
    let doc: String = c
        .query_one(
            "SELECT document FROM syncline_outbox_quarantine WHERE entity_id = 'g3'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(doc, big);
    let events = topic_events(&topic).await;
    let ids: Vec<&str> = events.iter().map(|(_, e)| e.entity_id.as_str()).collect();
    assert_eq!(ids, ["g1", "g5", "g8"]);
    assert_eq!(events[2].1.event_id, "0190f0a0-0000-7000-8000-000000000001");
    assert_eq!(events[1].1.document, None);
    assert_eq!(relay.metrics.quarantined(), 6);
}

#[tokio::test]
async fn one_active_relay_and_the_standby_takes_over_a_lost_connection() {
    let (db, topic) = setup(1).await;
    let a = start(settings(&db, &topic));
    let b = start(settings(&db, &topic));
    let (ma, mb) = (a.metrics.clone(), b.metrics.clone());
    wait_until(Duration::from_secs(30), Duration::from_millis(20), || {
        let (ma, mb) = (ma.clone(), mb.clone());
        async move {
            if ma.is_connected() && mb.is_connected() && (ma.is_active() ^ mb.is_active()) {
                Ok(())
            } else {
                Err("waiting for one active, one standby".into())
            }
        }
    })
    .await
    .unwrap();
    let (active, standby) = if ma.is_active() { (&a, &b) } else { (&b, &a) };
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO syncline_outbox (entity_type, entity_id, op, version, document)
         SELECT 'item', 'i' || g, 'UPSERT', 1, '{}' FROM generate_series(1, 200) g",
    )
    .await
    .unwrap();
    let am = active.metrics.clone();
    wait_until(Duration::from_secs(30), Duration::from_millis(20), || {
        let am = am.clone();
        async move {
            if am.published() >= 200 {
                Ok(())
            } else {
                Err(format!("{} published", am.published()))
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(standby.metrics.published(), 0, "the standby published");
    assert!(!standby.metrics.is_active());

    // The active relay's connection dies (as in a network partition or a restarted
    // backend): the lock goes with it and the standby takes over.
    c.batch_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_locks
         WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .await
    .unwrap();
    c.batch_execute(
        "INSERT INTO syncline_outbox (entity_type, entity_id, op, version, document)
         SELECT 'item', 'j' || g, 'UPSERT', 1, '{}' FROM generate_series(1, 200) g",
    )
    .await
    .unwrap();
    let (ma, mb) = (a.metrics.clone(), b.metrics.clone());
    wait_until(Duration::from_secs(30), Duration::from_millis(20), || {
        let (ma, mb) = (ma.clone(), mb.clone());
        let c = &c;
        async move {
            let left = count_rows(c, "syncline_outbox").await;
            if left == 0 && ma.published() + mb.published() >= 400 {
                Ok(())
            } else {
                Err(format!("{left} left"))
            }
        }
    })
    .await
    .unwrap();
    assert!(!(a.metrics.is_active() && b.metrics.is_active()));
    let events = topic_events(&topic).await;
    let ids: BTreeSet<String> = events.iter().map(|(_, e)| e.entity_id.clone()).collect();
    assert_eq!(ids.len(), 400);
    for r in [a, b] {
        r.stop.cancel();
        r.task.await.unwrap();
    }
}
