//! Convergence: a shuffled, duplicated stream with deletes ends as the oracle says, in
//! both delete modes, and the group's committed offsets reach the end of the topic.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::{check_oracle, Es, Setup};
use syncline_testkit::{create_topic_with_dlq, publish_events, Workload, WorkloadSpec};

async fn converge(mode: &str, events: usize, keys: usize, seed: u64, extra: &[&str]) {
    let es = Es::start().await;
    let setup = Setup::new(&es, &format!("conv-{mode}"));
    create_topic_with_dlq(&setup.brokers, &setup.topic, 3)
        .await
        .expect("topics");
    let w = Workload::generate(&WorkloadSpec {
        events,
        keys,
        entity_type: "product".into(),
        delete_ratio: 0.15,
        duplicate_ratio: 0.05,
        doc_bytes: 200,
        shuffle: true,
        seed,
    });
    publish_events(&setup.brokers, &setup.topic, &w.events)
        .await
        .expect("publish");
    let mut args = vec!["--es-delete-mode", mode];
    args.extend_from_slice(extra);
    let indexer = setup.spawn(&args);
    setup.wait_drained(Duration::from_secs(300)).await;
    let result = check_oracle(&es, &setup.alias("product"), &w.oracle, mode == "tombstone").await;
    let metrics = indexer.metrics().await;
    drop(indexer);
    if let Err(e) = result {
        panic!("{mode}: index differs from the oracle: {e}\nmetrics:\n{metrics}");
    }
    assert!(
        syncline_testkit::metric_sum(&metrics, "syncline_es_bulk_requests_total") > 0.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstone_mode_converges_to_the_oracle() {
    converge("tombstone", 50_000, 2_000, 7, &[]).await;
}

/// Mode `delete` converges too, as long as replays of older versions arrive within
/// `index.gc_deletes`; the mapping raises it to an hour, which is what the README advises
/// for this mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_mode_converges_to_the_oracle() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("product.json"),
        r#"{"settings":{"index.gc_deletes":"1h"}}"#,
    )
    .expect("mapping");
    let path = dir.path().to_str().expect("utf-8 path").to_owned();
    converge("delete", 20_000, 1_000, 11, &["--es-mappings-dir", &path]).await;
}
