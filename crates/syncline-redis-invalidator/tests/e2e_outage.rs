//! Redis outages: the test's own `redis-server` stops for 10 s while events are pending and
//! comes back (a) empty, (b) with its data (SHUTDOWN SAVE, reloaded from dump.rdb). The
//! invalidator recovers by itself (reconnecting, reloading its script), commits nothing
//! while Redis is gone, and ends equal to the oracle of the events it must apply.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use syncline_cache::Mode;
use syncline_event::ChangeEvent;
use syncline_testkit::{create_topic, publish_events, Workload, WorkloadSpec};

fn workload(seed: u64) -> Workload {
    Workload::generate(&WorkloadSpec {
        events: 8_000,
        keys: 500,
        entity_type: "product".into(),
        delete_ratio: 0.1,
        duplicate_ratio: 0.05,
        doc_bytes: 200,
        shuffle: true,
        seed,
    })
}

async fn outage(keep_data: bool) {
    let mut redis = common::OwnRedis::start();
    let setup = common::Setup::new(
        if keep_data {
            "outage-data"
        } else {
            "outage-empty"
        },
        &redis.url(),
    );
    create_topic(&setup.brokers, &setup.topic, 3)
        .await
        .expect("topic");
    let w = workload(if keep_data { 5 } else { 3 });
    let (before, after): (Vec<ChangeEvent>, Vec<ChangeEvent>) = {
        let half = w.events.len() / 2;
        (w.events[..half].to_vec(), w.events[half..].to_vec())
    };
    let inv = setup.spawn(Mode::Refresh, &[]);
    publish_events(&setup.brokers, &setup.topic, &before)
        .await
        .expect("publish");
    setup.wait_drained(common::DEADLINE).await;

    // Outage: Redis goes away, then events arrive.
    if keep_data {
        redis.shutdown_save();
    } else {
        redis.kill();
    }
    let stopped = Instant::now();
    publish_events(&setup.brokers, &setup.topic, &after)
        .await
        .expect("publish");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let at_start = setup.committed().await;
    let mut samples = vec![at_start.clone()];
    while stopped.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push(setup.committed().await);
    }
    let failures_during = inv.metric("syncline_redis_pipeline_failures_total");
    redis.restart();

    assert!(
        samples.iter().all(|s| *s == at_start),
        "committed offsets advanced while redis was down: {samples:?}"
    );
    assert!(
        failures_during >= 1.0,
        "no failed pipeline recorded during the outage"
    );
    setup.wait_drained(common::DEADLINE * 2).await;
    let metrics = inv.metrics();
    drop(inv);
    assert!(
        syncline_testkit::metric_sum(&metrics, "syncline_redis_script_reloads_total") >= 1.0,
        "{metrics}"
    );

    // Empty restart: only what was applied after it survives, i.e. the events published
    // during the outage. With data: everything.
    let oracle = if keep_data {
        w.oracle.clone()
    } else {
        common::oracle_of(&after)
    };
    let mut conn = common::connect(&redis.url()).await;
    common::check_oracle(&mut conn, &setup.layout, &oracle, Mode::Refresh)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{metrics}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarting_empty_is_survived() {
    outage(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarting_with_its_data_is_survived() {
    outage(true).await;
}
