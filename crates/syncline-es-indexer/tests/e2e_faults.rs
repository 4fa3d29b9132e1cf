//! Elasticsearch misbehaving (dev server fault injection): 30 % of bulk requests answered
//! 429, single items 429, 503 bursts, 2 s delays, connections closed mid-response. The
//! end state equals the oracle, nothing transient is dead-lettered, and the retries show
//! on `/metrics`.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::{check_oracle, Es, Setup};
use es_devserver::{FaultKind, FaultRule, FaultTarget};
use syncline_testkit::{
    create_topic_with_dlq, metric_sum, publish_events, read_all, Workload, WorkloadSpec,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried_to_the_oracle_and_never_dead_lettered() {
    let es = Es::start().await;
    let dev = es.dev();
    let setup = Setup::new(&es, "faults");
    let dlq = format!("{}.dlq", setup.topic);
    create_topic_with_dlq(&setup.brokers, &setup.topic, 3)
        .await
        .expect("topics");
    let w = Workload::generate(&WorkloadSpec {
        events: 20_000,
        keys: 1_000,
        entity_type: "product".into(),
        delete_ratio: 0.15,
        duplicate_ratio: 0.05,
        doc_bytes: 200,
        shuffle: true,
        seed: 3,
    });
    publish_events(&setup.brokers, &setup.topic, &w.events)
        .await
        .expect("publish");

    // The first rule that fires wins. Each kind first fires at a fixed point (`skip`
    // requests reaching the rule, then `count` in a row), so every kind happens however
    // few bulk requests the indexer needs (large batches: ~80 requests here; a purely
    // random delay rule once drew none); random ones follow on top.
    dev.set_faults(vec![
        FaultRule::new(FaultTarget::Bulk, FaultKind::Delay)
            .delay(Duration::from_secs(2))
            .skip(3)
            .count(2),
        FaultRule::new(FaultTarget::Bulk, FaultKind::Close)
            .skip(6)
            .count(2),
        FaultRule::new(FaultTarget::Bulk, FaultKind::Unavailable)
            .skip(5)
            .count(5),
        FaultRule::new(FaultTarget::Bulk, FaultKind::TooManyRequests).probability(0.3),
        FaultRule::new(FaultTarget::Bulk, FaultKind::Delay)
            .delay(Duration::from_secs(2))
            .probability(0.05),
        FaultRule::new(FaultTarget::Bulk, FaultKind::Close).probability(0.05),
        FaultRule::new(FaultTarget::BulkItem, FaultKind::TooManyRequests).probability(0.02),
    ]);
    let indexer = setup.spawn(&[
        "--retry-initial-backoff",
        "20ms",
        "--retry-max-backoff",
        "500ms",
    ]);
    setup.wait_drained(Duration::from_secs(600)).await;
    let stats = dev.stats();
    dev.clear_faults();
    let metrics = indexer.metrics().await;
    drop(indexer);

    if let Err(e) = check_oracle(&es, &setup.alias("product"), &w.oracle, true).await {
        panic!("index differs from the oracle: {e}\nfault stats: {stats:?}");
    }
    let dead = read_all(&setup.brokers, &dlq, 1, Duration::from_secs(5))
        .await
        .expect("read dlq");
    assert!(dead.is_empty(), "{} records dead-lettered", dead.len());

    // Every kind of fault actually happened, and the indexer reported the retries.
    for kind in ["429", "503", "delay", "close"] {
        assert!(
            stats.faults.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} fault injected: {stats:?}"
        );
    }
    assert!(
        stats.item_faults.get("429").copied().unwrap_or(0) > 0,
        "{stats:?}"
    );
    assert!(
        metric_sum(&metrics, "syncline_es_bulk_request_failures_total") > 0.0,
        "{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l
            .strip_prefix("syncline_es_bulk_items_total{result=\"error\"} ")
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| v > 0.0)),
        "{metrics}"
    );
    assert!(
        metric_sum(&metrics, "syncline_consumer_retries_total") > 0.0,
        "runtime retry counter missing or zero:\n{metrics}"
    );
}
