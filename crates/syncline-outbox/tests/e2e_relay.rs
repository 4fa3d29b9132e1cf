//! The `syncline-outbox` binary, SIGKILLed: against a real PostgreSQL and the real broker.
// Test code: a panic is the failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng as _;
use rdkafka::Message as _;
use syncline_testkit::kafka::decode_message;
use syncline_testkit::postgres::wait_until_empty;
use syncline_testkit::{
    create_topic, end_offsets, free_port, kafka_brokers, metric_sum, read_all, scrape_metrics,
    unique_name, wait_until, ChildGuard, TestDb,
};

fn relay(db: &TestDb, topic: &str, metrics_port: Option<u16>) -> ChildGuard {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncline-outbox"));
    cmd.env("SYNCLINE_DATABASE_URL", &db.url)
        .env("SYNCLINE_BROKERS", kafka_brokers())
        .env("SYNCLINE_TOPIC", topic)
        .env("SYNCLINE_OUTBOX_STANDBY_RETRY", "200ms")
        .env_remove("SYNCLINE_KAFKA")
        .env("RUST_LOG", "warn")
        .env(
            "SYNCLINE_METRICS_ADDR",
            metrics_port.map_or("off".to_owned(), |p| format!("127.0.0.1:{p}")),
        )
        .stdout(Stdio::null());
    ChildGuard::spawn(&mut cmd).unwrap()
}

async fn topic_total(topic: &str) -> i64 {
    end_offsets(&kafka_brokers(), topic)
        .await
        .unwrap()
        .iter()
        .sum()
}

async fn setup() -> (TestDb, String) {
    let db = TestDb::create().await;
    syncline_outbox::migrate(&db.config()).await.unwrap();
    let topic = unique_name("outbox-e2e");
    create_topic(&kafka_brokers(), &topic, 3).await.unwrap();
    (db, topic)
}

/// Ten SIGKILLs at random moments and one killed PostgreSQL connection while services
/// keep writing: every committed row is published, no rolled-back one, and per entity
/// the first publication of each version comes in version order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_ten_times_and_a_killed_connection_lose_nothing() {
    let (db, topic) = setup().await;
    let db = Arc::new(db);
    let writing = Arc::new(AtomicBool::new(true));
    let service = {
        let (db, writing) = (db.clone(), writing.clone());
        tokio::spawn(async move {
            let mut c = db.client().await;
            let (mut committed, mut rolled_back) = (BTreeSet::new(), BTreeSet::new());
            let mut i = 0u64;
            while writing.load(Ordering::Relaxed) {
                i += 1;
                let (entity, rollback) = {
                    let mut r = rand::rng();
                    (format!("e{:02}", r.random_range(0..30)), r.random_bool(0.2))
                };
                let tx = c.transaction().await.unwrap();
                tx.execute(
                    "SELECT syncline_emit('item', $1, 'UPSERT', syncline_next_version('item', $1),
                         jsonb_build_object('n', $2::text), '{}', jsonb_build_object('txn', $2::text))",
                    &[&entity, &i.to_string()],
                )
                .await
                .unwrap();
                if rollback {
                    tx.rollback().await.unwrap();
                    rolled_back.insert(i.to_string());
                } else {
                    tx.commit().await.unwrap();
                    committed.insert(i.to_string());
                }
                if i.is_multiple_of(20) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            (committed, rolled_back)
        })
    };
    let admin = db.client().await;
    for round in 0..10 {
        let mut child = relay(&db, &topic, None);
        let before = topic_total(&topic).await;
        // Wait until this incarnation has published something, then kill it at a random
        // moment of its work.
        wait_until(Duration::from_secs(60), Duration::from_millis(20), || {
            let topic = topic.clone();
            async move {
                let now = topic_total(&topic).await;
                if now > before {
                    Ok(())
                } else {
                    Err(format!("round {round}: no progress"))
                }
            }
        })
        .await
        .unwrap();
        if round == 5 {
            // The relay's connection dies under it; it must reconnect and go on.
            admin
                .batch_execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks
                     WHERE locktype = 'advisory' AND granted
                       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                )
                .await
                .unwrap();
            let after_kill = topic_total(&topic).await;
            wait_until(Duration::from_secs(60), Duration::from_millis(20), || {
                let topic = topic.clone();
                async move {
                    if topic_total(&topic).await > after_kill {
                        Ok(())
                    } else {
                        Err("no progress after the killed connection".into())
                    }
                }
            })
            .await
            .unwrap();
        }
        let pause = rand::rng().random_range(0..300);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        child.kill();
    }
    writing.store(false, Ordering::Relaxed);
    let (committed, rolled_back) = service.await.unwrap();
    let _last = relay(&db, &topic, None);
    wait_until_empty(
        &admin,
        "syncline_outbox",
        Duration::from_secs(120),
        Duration::from_millis(50),
    )
    .await
    .unwrap();
    let total = topic_total(&topic).await;
    let msgs = read_all(
        &kafka_brokers(),
        &topic,
        total as usize,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(msgs.len() as i64, total);
    let mut seen = BTreeSet::new();
    let mut per_entity: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut by_event_id: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for m in &msgs {
        let e = decode_message(m).unwrap();
        let txn = e.attributes["txn"].clone();
        assert!(!rolled_back.contains(&txn), "rolled-back {txn} published");
        // A repeat is recognisable: same event_id, same content.
        let prev = by_event_id.insert(e.event_id.clone(), (txn.clone(), e.version));
        assert!(prev.is_none() || prev == Some((txn.clone(), e.version)));
        seen.insert(txn);
        let versions = per_entity.entry(e.entity_id.clone()).or_default();
        if !versions.contains(&e.version) {
            versions.push(e.version);
        }
        let _ = m.partition();
    }
    let missing: Vec<_> = committed.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "{} committed rows never published: {missing:?}",
        missing.len()
    );
    for (entity, versions) in per_entity {
        let want: Vec<i64> = (1..=versions.len() as i64).collect();
        assert_eq!(versions, want, "entity {entity}");
    }
    eprintln!(
        "{} committed, {} rolled back, {} records ({} repeats)",
        committed.len(),
        rolled_back.len(),
        total,
        total as usize - committed.len()
    );
}

/// Two relay processes: one publishes, the other waits; SIGKILL the active one and the
/// standby takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_process_takes_over_after_sigkill() {
    let (db, topic) = setup().await;
    let (pa, pb) = (free_port(), free_port());
    let mut a = relay(&db, &topic, Some(pa));
    let mut b = relay(&db, &topic, Some(pb));
    let m = |port: u16, name: &str| metric_sum(&scrape_metrics(port), name);
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async {
            let (ca, cb) = (
                m(pa, "syncline_outbox_connected"),
                m(pb, "syncline_outbox_connected"),
            );
            let (xa, xb) = (
                m(pa, "syncline_outbox_active"),
                m(pb, "syncline_outbox_active"),
            );
            if ca == 1.0 && cb == 1.0 && xa + xb == 1.0 {
                Ok(())
            } else {
                Err("waiting for one active, one standby".into())
            }
        },
    )
    .await
    .unwrap();
    let a_active = m(pa, "syncline_outbox_active") == 1.0;
    let (active, standby_port) = if a_active { (&mut a, pb) } else { (&mut b, pa) };
    let c = db.client().await;
    c.batch_execute(
        "INSERT INTO syncline_outbox (entity_type, entity_id, op, version, document)
         SELECT 'item', 'a' || g, 'UPSERT', 1, '{}' FROM generate_series(1, 300) g",
    )
    .await
    .unwrap();
    wait_until_empty(
        &c,
        "syncline_outbox",
        Duration::from_secs(30),
        Duration::from_millis(50),
    )
    .await
    .unwrap();
    assert_eq!(m(standby_port, "syncline_outbox_published_total"), 0.0);
    assert_eq!(m(standby_port, "syncline_outbox_active"), 0.0);
    let ready = std::net::TcpStream::connect(("127.0.0.1", standby_port)).is_ok();
    assert!(ready);

    active.kill();
    let killed_at = Instant::now();
    c.batch_execute(
        "INSERT INTO syncline_outbox (entity_type, entity_id, op, version, document)
         SELECT 'item', 'b' || g, 'UPSERT', 1, '{}' FROM generate_series(1, 300) g",
    )
    .await
    .unwrap();
    // "Within a few seconds": the lock is released when PostgreSQL sees the killed
    // process's connection close, and the standby retries every 200 ms here.
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let published = m(standby_port, "syncline_outbox_published_total");
            if published >= 300.0 {
                Ok(())
            } else {
                Err(format!("standby published {published}"))
            }
        },
    )
    .await
    .unwrap();
    eprintln!(
        "standby took over and published within {:?}",
        killed_at.elapsed()
    );
    let total = topic_total(&topic).await;
    let msgs = read_all(
        &kafka_brokers(),
        &topic,
        total as usize,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let ids: BTreeSet<String> = msgs
        .iter()
        .map(|m| decode_message(m).unwrap().entity_id)
        .collect();
    assert_eq!(ids.len(), 600);
}
