//! `syncline-ctl rebuild es` refuses a topic that no longer holds (or is about to lose) its
//! whole history, and `--allow-partial` proceeds.
//!
//! The Tansu broker does not delete records (memory storage, no retention enforcement, no
//! DeleteRecords), so a topic cannot be made to lose its head here. What can be set up is
//! the other refusal: a topic whose `retention.ms` (1 h) is shorter than the age of its
//! data (records stamped 3 h ago), which a real broker deletes before or while a rebuild
//! reads them. The "first offset > 0" rule is covered by unit tests of the decision.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
mod rebuild_support;

use std::time::Duration;

use common::publish_stamped;
use rebuild_support::{mapping_dir, Es, Setup};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_shorter_retention_than_its_data_is_refused_unless_allow_partial() {
    let es = Es::start().await;
    let setup = Setup::new(&es, "rebuild-history");
    let alias = setup.alias("product");
    let mut configs = std::collections::BTreeMap::new();
    configs.insert("retention.ms".to_owned(), "3600000".to_owned());
    configs.insert("cleanup.policy".to_owned(), "delete".to_owned());
    syncline_kafka::create_topic(
        setup.brokers.as_str(),
        &setup.topic,
        &syncline_kafka::TopicSpec {
            partitions: 2,
            configs,
            ..Default::default()
        },
    )
    .await
    .expect("topic");
    publish_stamped(
        &setup.brokers,
        &setup.topic,
        20,
        Duration::from_secs(3 * 3600),
    )
    .await;
    // The live alias, as the indexer would have created it.
    let (s, b) = es
        .req(
            reqwest::Method::PUT,
            &format!("/{alias}-000001"),
            Some(json!({"aliases": {alias.clone(): {"is_write_index": true}}})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let mappings = mapping_dir(
        "product",
        &json!({"properties": {"id": {"type": "keyword"}}}),
    );

    let out = setup
        .rebuild_cmd(mappings.path(), &["--entity-type", "product"])
        .output()
        .expect("run rebuild");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("refused run: {:?}\n{stderr}", out.status);
    assert_eq!(out.status.code(), Some(1), "expected the refusal exit code");
    assert!(
        stderr.contains("retention.ms=3600000 is shorter than the data"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Backfill from the system of record"),
        "{stderr}"
    );
    assert!(stderr.contains("--allow-partial"), "{stderr}");
    let (s, _) = es.get(&format!("/{alias}-000002")).await;
    assert_eq!(s, 404, "a refused rebuild must not create its index");

    // --allow-partial proceeds (and finishes: 20 records into generation 2).
    let out = setup
        .rebuild_cmd(
            mappings.path(),
            &["--entity-type", "product", "--allow-partial"],
        )
        .output()
        .expect("run rebuild");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("allowed run: {:?}\n{stderr}", out.status);
    assert!(out.status.success(), "--allow-partial should proceed");
    assert!(
        stderr.contains("--allow-partial: rebuilding from an incomplete history"),
        "{stderr}"
    );
    let behind = es.alias_indexes(&alias).await;
    assert_eq!(
        behind.keys().collect::<Vec<_>>(),
        vec![&format!("{alias}-000002")],
        "{behind:?}"
    );
    let (s, c) = es.get(&format!("/{alias}-000002/_count")).await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["count"], 20, "{c}");
}
