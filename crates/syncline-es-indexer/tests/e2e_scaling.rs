//! Scaling: three indexer processes in one group on a 6-partition topic; one is killed
//! (SIGKILL) and one added while events are being published. The end state equals the
//! oracle.
//!
//! A background publisher spreads the events over about 40 s. Every step waits on what the
//! processes report (assigned partitions, applied events), and the test checks that the
//! publisher was still running when the kill and the join happened, so it fails instead of
//! passing when its scenario did not occur.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{check_oracle, Es, Indexer, Setup};
use syncline_testkit::{
    create_topic_with_dlq, metric_sum, publish_events, wait_until, Workload, WorkloadSpec,
};

const ASSIGNED: &str = "syncline_consumer_assigned_partitions";
const APPLIED: &str = "syncline_consumer_events_applied_total";

/// Wait until `check` holds for the metrics of `members` (one `/metrics` text each).
async fn wait_for_members(
    members: &[&Indexer],
    what: &str,
    check: impl Fn(&[String]) -> bool + Copy,
) {
    wait_until(
        Duration::from_secs(120),
        Duration::from_millis(200),
        || async move {
            let mut texts = Vec::with_capacity(members.len());
            for m in members {
                texts.push(m.metrics().await);
            }
            if check(&texts) {
                Ok(())
            } else {
                let seen: Vec<(f64, f64)> = texts
                    .iter()
                    .map(|t| (metric_sum(t, ASSIGNED), metric_sum(t, APPLIED)))
                    .collect();
                Err(format!("(assigned, applied) per member: {seen:?}"))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{what}: {e}"));
}

fn working(metrics: &str) -> bool {
    metric_sum(metrics, ASSIGNED) >= 1.0 && metric_sum(metrics, APPLIED) > 0.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_of_three_with_a_kill_and_a_join_converges() {
    let es = Es::start().await;
    let setup = Setup::new(&es, "scale");
    create_topic_with_dlq(&setup.brokers, &setup.topic, 6)
        .await
        .expect("topics");
    let w = Workload::generate(&WorkloadSpec {
        events: 30_000,
        keys: 1_500,
        entity_type: "product".into(),
        delete_ratio: 0.15,
        duplicate_ratio: 0.05,
        doc_bytes: 200,
        shuffle: true,
        seed: 21,
    });
    let mut group: Vec<_> = (0..3).map(|_| setup.spawn(&[])).collect();

    // 60 slices of 500 events, a quarter of a second apart (publishing takes ~40 s).
    let published = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (brokers, topic) = (setup.brokers.clone(), setup.topic.clone());
        let (events, published) = (w.events.clone(), published.clone());
        tokio::spawn(async move {
            for slice in events.chunks(500) {
                publish_events(&brokers, &topic, slice)
                    .await
                    .expect("publish");
                published.fetch_add(slice.len(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let total = w.events.len();
    let still_publishing = |when: &str| {
        let n = published.load(Ordering::SeqCst);
        assert!(n < total, "the publisher had finished ({n} events) {when}");
    };

    // All three own partitions and have applied events: the victim has work to lose.
    wait_for_members(
        &group.iter().collect::<Vec<_>>(),
        "three members working",
        |t| t.iter().all(|m| working(m)),
    )
    .await;
    still_publishing("when the member was killed");
    // One dies without a chance to commit or leave the group.
    group.remove(0).child.kill();
    // The survivors take over the dead member's partitions once its session expires.
    wait_for_members(
        &group.iter().collect::<Vec<_>>(),
        "survivors own all six partitions",
        |t| t.iter().map(|m| metric_sum(m, ASSIGNED)).sum::<f64>() >= 6.0,
    )
    .await;
    still_publishing("when the survivors took over");
    group.push(setup.spawn(&[]));
    // The newcomer is given partitions and applies events from them while the publisher
    // is still running: partitions changed hands mid-stream.
    let newcomer = group.last().expect("just pushed");
    wait_for_members(&[newcomer], "the joined member working", |t| {
        t.iter().all(|m| working(m))
    })
    .await;
    still_publishing("when the joined member started working");

    publisher.await.expect("publisher");
    setup.wait_drained(Duration::from_secs(600)).await;
    let result = check_oracle(&es, &setup.alias("product"), &w.oracle, true).await;
    drop(group);
    if let Err(e) = result {
        panic!("index differs from the oracle: {e}");
    }
}
