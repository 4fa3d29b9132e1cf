//! Reconcile under live traffic: a writer keeps updating, inserting and deleting rows and
//! publishing each change after its commit (the way a service does), while reconcile
//! runs against the moving pipeline. Nothing that is merely in flight may be reported.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support_reconcile;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use support_reconcile::{create_product_table, Pipeline, ENTITY};
use syncline_event::{ChangeEvent, Op};
use syncline_producer::{Producer, ProducerConfig};
use syncline_testkit::TestDb;

const QUERY: &str = "SELECT id AS entity_id, version, doc AS document FROM product";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_under_live_traffic_reports_no_drift() {
    let p = Pipeline::start("rec-live", "60s").await;
    let db = TestDb::create().await;
    let pg = db.client().await;
    create_product_table(&pg, 2000, "format('p-%s', i)", "jsonb_build_object('n', i)").await;
    p.load_snapshot(&db.url, QUERY).await;

    // The writer: commit, then publish (so every change is in flight for a while).
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written) = (stop.clone(), written.clone());
        let client = db.client().await;
        let producer = Producer::new(ProducerConfig::new(p.brokers.clone(), p.topic.clone()))
            .expect("producer");
        tokio::spawn(async move {
            let mut i: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                // A spread of ids (a small LCG), some new ones, and every 7th change a delete.
                let k = (i.wrapping_mul(2_654_435_761) % 2300) + 1;
                let id = format!("p-{k}");
                let event = if i.is_multiple_of(7) {
                    let row = client
                        .query_opt(
                            "WITH d AS (DELETE FROM product WHERE id = $1 RETURNING id)
                             SELECT nextval('product_version') FROM d",
                            &[&id],
                        )
                        .await
                        .expect("delete");
                    row.map(|r| ChangeEvent::new(ENTITY, &id, Op::Delete, r.get(0), "live", None))
                } else {
                    let r = client
                        .query_one(
                            "INSERT INTO product VALUES ($1, nextval('product_version'),
                                jsonb_build_object('n', $2::bigint))
                             ON CONFLICT (id) DO UPDATE
                               SET version = EXCLUDED.version, doc = EXCLUDED.doc
                             RETURNING version, doc::text",
                            &[&id, &(i as i64)],
                        )
                        .await
                        .expect("upsert");
                    Some(ChangeEvent::new(
                        ENTITY,
                        &id,
                        Op::Upsert,
                        r.get(0),
                        "live",
                        Some(r.get(1)),
                    ))
                };
                if let Some(e) = event {
                    producer.publish(&e).await.expect("publish");
                    written.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(std::time::Duration::from_millis(3)).await;
            }
        })
    };

    // Let the writer get going before the first run.
    syncline_testkit::wait_until(
        std::time::Duration::from_secs(30),
        std::time::Duration::from_millis(50),
        || async {
            match written.load(Ordering::Relaxed) {
                n if n >= 50 => Ok(()),
                n => Err(format!("{n} changes written")),
            }
        },
    )
    .await
    .expect("writer running");
    let mut in_flight_or_settled = 0;
    for _ in 0..3 {
        let (code, report, text) = p.reconcile_async(&db.url, QUERY, &["--grace", "3s"]).await;
        assert_eq!(code, Some(0), "{text}");
        assert_eq!(report["drifted_entities"], 0, "{text}");
        in_flight_or_settled +=
            report["in_flight"].as_u64().unwrap_or(0) + report["settled"].as_u64().unwrap_or(0);
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    eprintln!(
        "live changes written: {}; candidates cleared by the re-check: {in_flight_or_settled}",
        written.load(Ordering::Relaxed)
    );
    assert!(
        written.load(Ordering::Relaxed) > 100,
        "the writer barely ran"
    );
    p.wait_caught_up().await;
    let (code, report, text) = p.reconcile(&db.url, QUERY, &["--grace", "1s"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["in_flight"], 0, "{text}");
}
