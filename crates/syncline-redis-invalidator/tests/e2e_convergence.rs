//! Convergence: 50,000 events over 2,000 keys (shuffled versions, duplicates, deletes),
//! drained by two invalidator binaries on the same topic, one per mode. Every guard ends
//! at the highest version per key; in `refresh` mode every value is the oracle's document
//! and deleted keys are absent.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use syncline_cache::Mode;
use syncline_testkit::{create_topic, publish_events, Workload, WorkloadSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_events_converge_in_both_modes() {
    let url = syncline_testkit::redis_url();
    let inv = common::Setup::new("conv-inv", &url);
    let refresh = inv.sibling("conv-refresh");
    create_topic(&inv.brokers, &inv.topic, 4)
        .await
        .expect("topic");
    let workload = Workload::generate(&WorkloadSpec {
        events: 50_000,
        keys: 2_000,
        entity_type: "product".into(),
        delete_ratio: 0.1,
        duplicate_ratio: 0.05,
        doc_bytes: 200,
        shuffle: true,
        seed: 7,
    });
    let a = inv.spawn(Mode::Invalidate, &[]);
    let b = refresh.spawn(Mode::Refresh, &[]);
    publish_events(&inv.brokers, &inv.topic, &workload.events)
        .await
        .expect("publish");

    inv.wait_drained(common::DEADLINE * 3).await;
    refresh.wait_drained(common::DEADLINE * 3).await;
    let metrics = (a.metrics(), b.metrics());
    drop((a, b));

    let mut conn = common::connect(&url).await;
    let r1 = common::check_oracle(&mut conn, &inv.layout, &workload.oracle, Mode::Invalidate).await;
    let r2 =
        common::check_oracle(&mut conn, &refresh.layout, &workload.oracle, Mode::Refresh).await;
    common::cleanup(&mut conn, &inv.layout).await;
    common::cleanup(&mut conn, &refresh.layout).await;
    r1.unwrap_or_else(|e| panic!("invalidate mode: {e}\n{}", metrics.0));
    r2.unwrap_or_else(|e| panic!("refresh mode: {e}\n{}", metrics.1));
    assert!(
        syncline_testkit::metric_sum(&metrics.1, "syncline_redis_scripts_applied_total")
            >= workload.oracle.len() as f64
    );
}
