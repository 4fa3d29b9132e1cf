//! Commit metrics count the group coordinator's answers, not requests: the asynchronous
//! commits made while the consumer runs are counted when the broker accepts them, and the
//! idle ticks after the topic is drained (nothing new to commit) are not commits.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::{test_config, wait_committed_to_end, Plan, Shared, TestSink};
use syncline_consumer::{run_with_metrics, Metrics};
use syncline_testkit::{
    create_topic_with_dlq, kafka_brokers, publish_events, unique_name, wait_until, Workload,
    WorkloadSpec,
};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_count_broker_answers_and_idle_ticks_are_not_commits() {
    let brokers = kafka_brokers();
    let topic = unique_name("commit-results");
    let group = unique_name("commit-results-g");
    create_topic_with_dlq(&brokers, &topic, 2)
        .await
        .expect("create topics");
    let w = Workload::generate(&WorkloadSpec {
        events: 600,
        keys: 50,
        seed: 5,
        ..WorkloadSpec::default()
    });
    publish_events(&brokers, &topic, &w.events)
        .await
        .expect("publish");

    let config = test_config(&topic, &group);
    let tick = config.commit_interval;
    let metrics = Metrics::new();
    let token = CancellationToken::new();
    let run = tokio::spawn(run_with_metrics(
        config,
        Shared(TestSink::new(Plan::default())),
        metrics.clone(),
        token.clone(),
    ));

    wait_committed_to_end(&group, &topic, Duration::from_secs(60)).await;
    // The broker has the offsets; its answer reaches the callback on a following poll.
    wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let m = metrics.snapshot();
        async move {
            if m.commits >= 1 {
                Ok(())
            } else {
                Err(format!("no accepted commit counted yet: {m:?}"))
            }
        }
    })
    .await
    .expect("the broker's answer to a commit is counted");
    let drained = metrics.snapshot();
    assert_eq!(drained.commit_failures, 0, "no commit failed: {drained:?}");

    // Drained and idle: every tick still asks librdkafka to commit, which answers that
    // there is nothing to commit. Before commits counted answers, each tick counted one.
    tokio::time::sleep(tick * 10).await;
    let idle = metrics.snapshot();
    assert_eq!(
        idle.commits, drained.commits,
        "idle ticks counted as commits ({} ticks of {tick:?})",
        10
    );
    assert_eq!(idle.commit_failures, 0);

    token.cancel();
    run.await.expect("join").expect("clean shutdown");
}
