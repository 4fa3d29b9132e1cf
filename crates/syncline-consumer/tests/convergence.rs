//! The runtime against the real broker: a generated workload (shuffled versions,
//! duplicates, deletes) on a 4-partition topic converges to the oracle, offsets are
//! committed to the end, and cancelling the token returns `Ok`.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::{assert_matches_oracle, test_config, wait_committed_to_end, Plan, Shared, TestSink};
use syncline_consumer::{run_with_metrics, Metrics};
use syncline_testkit::{
    create_topic_with_dlq, kafka_brokers, publish_events, unique_name, Workload, WorkloadSpec,
};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_to_the_oracle_and_commits_to_the_end() {
    let brokers = kafka_brokers();
    let topic = unique_name("conv");
    let group = unique_name("conv-g");
    create_topic_with_dlq(&brokers, &topic, 4)
        .await
        .expect("create topics");
    let w = Workload::generate(&WorkloadSpec {
        events: 20_000,
        keys: 500,
        seed: 7,
        ..WorkloadSpec::default()
    });
    publish_events(&brokers, &topic, &w.events)
        .await
        .expect("publish");

    let sink = TestSink::new(Plan::default());
    let metrics = Metrics::new();
    let token = CancellationToken::new();
    let run = tokio::spawn(run_with_metrics(
        test_config(&topic, &group),
        Shared(sink.clone()),
        metrics.clone(),
        token.clone(),
    ));

    wait_committed_to_end(&group, &topic, Duration::from_secs(120)).await;
    assert_matches_oracle(&sink.snapshot(), &w.oracle);

    let snap = metrics.snapshot();
    assert_eq!(snap.consumed, w.events.len() as u64, "{snap:?}");
    assert_eq!(
        snap.applied + snap.stale + snap.coalesced,
        snap.consumed,
        "every record is applied, stale or coalesced: {snap:?}"
    );
    assert_eq!(snap.dead_lettered_total(), 0);
    assert!(snap.coalesced > 0, "duplicates were coalesced: {snap:?}");

    token.cancel();
    let result = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("run returns after cancel")
        .expect("task");
    assert!(result.is_ok(), "{result:?}");
}
