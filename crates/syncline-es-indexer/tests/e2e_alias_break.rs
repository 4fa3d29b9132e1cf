//! A botched alias change while events flow (issue: one broken alias used to dead-letter
//! the whole stream). The alias loses its write index half-way through the topic; the
//! indexer keeps retrying those events (paused, not dead-lettered), and once the alias is
//! repaired everything converges to the oracle with an empty dead-letter topic.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::{check_oracle, Es, Setup};
use serde_json::json;
use syncline_testkit::{
    create_topic_with_dlq, metric_sum, publish_events, read_all, wait_until, Workload, WorkloadSpec,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_without_write_index_is_retried_not_dead_lettered() {
    let es = Es::start().await;
    let setup = Setup::new(&es, "aliasbreak");
    let alias = setup.alias("product");
    let dlq = format!("{}.dlq", setup.topic);
    create_topic_with_dlq(&setup.brokers, &setup.topic, 3)
        .await
        .expect("topics");
    let w = Workload::generate(&WorkloadSpec {
        events: 6_000,
        keys: 500,
        entity_type: "product".into(),
        delete_ratio: 0.1,
        duplicate_ratio: 0.05,
        doc_bytes: 200,
        shuffle: true,
        seed: 17,
    });
    let (first, second) = w.events.split_at(w.events.len() / 2);
    publish_events(&setup.brokers, &setup.topic, first)
        .await
        .expect("publish first half");
    let indexer = setup.spawn(&[
        "--retry-initial-backoff",
        "20ms",
        "--retry-max-backoff",
        "200ms",
    ]);
    setup.wait_drained(Duration::from_secs(120)).await;

    // Break it as a careless hand-made change would: a second index joins the alias and
    // the original loses its write flag, so the alias has no write index at all.
    let original = es.alias_indexes(&alias).await;
    assert_eq!(original.len(), 1, "{original:?}");
    // Keep the tombstone filter: an `add` replaces the alias's definition on that index.
    let (s, defn) = es
        .get_json(&format!("/{}/_alias/{alias}", original[0]))
        .await;
    assert_eq!(s, 200, "{defn}");
    let filter = defn[&original[0]]["aliases"][&alias]["filter"].clone();
    assert!(filter.is_object(), "the alias filters tombstones: {defn}");
    let stray = format!("{alias}-stray");
    let (s, b) = es.put_json(&format!("/{stray}"), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = es
        .post_json(
            "/_aliases",
            &json!({"actions": [
                {"add": {"index": original[0], "alias": alias, "is_write_index": false, "filter": filter}},
                {"add": {"index": stray, "alias": alias, "is_write_index": false, "filter": filter}},
            ]}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = es
        .post_json(
            &format!("/{alias}/_doc/probe?require_alias=true"),
            &json!({"x": 1}),
        )
        .await;
    assert_eq!(s, 400, "a write through the broken alias must fail: {b}");

    publish_events(&setup.brokers, &setup.topic, second)
        .await
        .expect("publish second half");
    // Observable proof that the indexer met the broken alias: retries are counted.
    wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
        let m = indexer.metrics();
        async move {
            let retries = metric_sum(&m.await, "syncline_consumer_retries_total");
            if retries > 0.0 {
                Ok(())
            } else {
                Err("no retry yet".to_owned())
            }
        }
    })
    .await
    .expect("the indexer retries while the alias is broken");
    let dead = read_all(&setup.brokers, &dlq, 1, Duration::from_secs(2))
        .await
        .expect("read dlq");
    assert!(
        dead.is_empty(),
        "{} records dead-lettered while broken",
        dead.len()
    );

    // Repair: the original is the write index again; the stray index leaves the alias.
    let (s, b) = es
        .post_json(
            "/_aliases",
            &json!({"actions": [
                {"remove": {"index": stray, "alias": alias}},
                {"add": {"index": original[0], "alias": alias, "is_write_index": true, "filter": filter}},
            ]}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    setup.wait_drained(Duration::from_secs(180)).await;
    drop(indexer);

    if let Err(e) = check_oracle(&es, &alias, &w.oracle, true).await {
        panic!("index differs from the oracle after the repair: {e}");
    }
    let dead = read_all(&setup.brokers, &dlq, 1, Duration::from_secs(5))
        .await
        .expect("read dlq");
    assert!(dead.is_empty(), "{} records dead-lettered", dead.len());
}
