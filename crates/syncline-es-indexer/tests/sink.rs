//! The sink against a real Elasticsearch API (the in-process dev server, or `ES_URL`):
//! routing and bootstrap, external versioning, both delete modes, item classification,
//! bulk splitting and request-level failures. No Kafka here: `apply` is called directly,
//! the way the runtime calls it.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::Es;
use es_devserver::{FaultKind, FaultRule, FaultTarget};
use serde_json::json;
use syncline_consumer::{Metrics, Outcome, Sink};
use syncline_es_indexer::mappings::IndexDefinitions;
use syncline_es_indexer::response::ItemResult;
use syncline_es_indexer::{DeleteMode, EsConfig, EsSink};
use syncline_event::{ChangeEvent, Op};
use syncline_testkit::unique_name;

fn upsert(et: &str, id: &str, version: i64, doc: serde_json::Value) -> ChangeEvent {
    ChangeEvent::new(et, id, Op::Upsert, version, "test", Some(doc.to_string()))
}

fn delete(et: &str, id: &str, version: i64) -> ChangeEvent {
    ChangeEvent::new(et, id, Op::Delete, version, "test", None)
}

fn config(es: &Es, prefix: &str, mode: DeleteMode) -> EsConfig {
    EsConfig {
        url: es.url.clone(),
        index_prefix: prefix.to_owned(),
        delete_mode: mode,
        ..EsConfig::default()
    }
}

fn sink(cfg: &EsConfig, defs: IndexDefinitions) -> EsSink {
    EsSink::with_definitions(cfg, defs, &Metrics::new()).expect("sink")
}

fn is_retry(o: &Outcome) -> bool {
    matches!(o, Outcome::Retry { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstone_mode_versions_aliases_and_hidden_tombstones() {
    let es = Es::start().await;
    let prefix = format!("{}-", unique_name("t"));
    let cfg = config(&es, &prefix, DeleteMode::Tombstone);
    let s = sink(&cfg, IndexDefinitions::empty());
    let alias = format!("{prefix}product");

    let out = s
        .apply_owned(&[
            upsert("product", "a", 5, json!({"name": "a5"})),
            upsert("product", "b", 1, json!({"name": "b1"})),
            delete("product", "c", 3),
        ])
        .await;
    assert_eq!(out, vec![Outcome::Applied; 3]);

    // One concrete index of the first generation, behind the alias.
    assert_eq!(
        es.alias_indexes(&alias).await,
        vec![format!("{alias}-000001")]
    );
    let (_, aliases) = es.get_json(&format!("/_alias/{alias}")).await;
    let def = &aliases[format!("{alias}-000001")]["aliases"][&alias];
    assert_eq!(def["is_write_index"], true, "{aliases}");
    assert!(def.get("filter").is_some(), "{aliases}");

    // Older and equal versions are stale; a newer delete wins; nothing older resurrects.
    let out = s
        .apply_owned(&[
            upsert("product", "a", 4, json!({"name": "a4"})),
            upsert("product", "b", 1, json!({"name": "b1-again"})),
        ])
        .await;
    assert_eq!(out, vec![Outcome::Stale, Outcome::Stale]);
    assert_eq!(
        s.apply_owned(&[delete("product", "a", 6)]).await,
        vec![Outcome::Applied]
    );
    assert_eq!(
        s.apply_owned(&[upsert("product", "a", 3, json!({"name": "a3"}))])
            .await,
        vec![Outcome::Stale]
    );
    assert_eq!(
        s.apply_owned(&[delete("product", "a", 6)]).await,
        vec![Outcome::Stale]
    );

    // Searches and counts through the alias see only b; the tombstones stay in the index.
    assert_eq!(es.count(&alias).await, 1);
    let visible = es.search_all(&alias).await;
    assert_eq!(visible.keys().collect::<Vec<_>>(), vec!["b"]);
    assert_eq!(visible["b"], (1, json!({"name": "b1"})));
    let all = es.search_all(&format!("{alias}-000001")).await;
    assert_eq!(all.len(), 3);
    assert_eq!(all["a"].0, 6);
    assert_eq!(all["a"].1["_syncline_deleted"], true);
    assert_eq!(all["c"].0, 3);

    // GET by id through the alias returns the tombstone (documented: check the marker).
    let (status, got) = es.get_doc(&alias, "a").await;
    assert_eq!(status, 200);
    assert_eq!(got["_source"]["_syncline_deleted"], true);

    // A newer upsert brings the document back.
    assert_eq!(
        s.apply_owned(&[upsert("product", "a", 7, json!({"name": "a7"}))])
            .await,
        vec![Outcome::Applied]
    );
    assert_eq!(es.count(&alias).await, 2);

    assert_eq!(s.metrics().items(ItemResult::Conflict), 4);
    assert_eq!(s.metrics().items(ItemResult::Deleted), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_mode_hard_deletes_and_404_is_success() {
    let es = Es::start().await;
    let prefix = format!("{}-", unique_name("d"));
    let cfg = config(&es, &prefix, DeleteMode::Delete);
    let s = sink(&cfg, IndexDefinitions::empty());
    let alias = format!("{prefix}product");

    let out = s
        .apply_owned(&[
            upsert("product", "a", 1, json!({"n": 1})),
            upsert("product", "b", 1, json!({"n": 1})),
        ])
        .await;
    assert_eq!(out, vec![Outcome::Applied; 2]);
    let out = s
        .apply_owned(&[delete("product", "a", 2), delete("product", "never", 1)])
        .await;
    assert_eq!(out, vec![Outcome::Applied, Outcome::Applied]);
    assert_eq!(s.metrics().items(ItemResult::NotFound), 1);
    assert_eq!(es.get_doc(&alias, "a").await.0, 404);
    // Within gc_deletes the delete's version still guards against older upserts.
    assert_eq!(
        s.apply_owned(&[upsert("product", "a", 1, json!({"n": 1}))])
            .await,
        vec![Outcome::Stale]
    );
    assert_eq!(es.count(&alias).await, 1);
    let (_, aliases) = es.get_json(&format!("/_alias/{alias}")).await;
    assert!(
        aliases[format!("{alias}-000001")]["aliases"][&alias]
            .get("filter")
            .is_none(),
        "{aliases}"
    );
}

/// The `gc_deletes` hazard (crate README, "Deletes"): after `index.gc_deletes`, Elasticsearch forgets a delete's
/// version and an older upsert replayed later resurrects the document. Mode `delete` has
/// that hazard (shown here, as documented); mode `tombstone` does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_deletes_hazard_delete_mode_resurrects_tombstone_mode_does_not() {
    let es = Es::start().await;
    let mut defs = IndexDefinitions::empty();
    defs.insert(
        "product",
        r#"{"settings":{"index.gc_deletes":"1s"},"mappings":{"properties":{"n":{"type":"long"}}}}"#,
    )
    .expect("definition");

    let mut results = Vec::new();
    for mode in [DeleteMode::Delete, DeleteMode::Tombstone] {
        let prefix = format!("{}-", unique_name("gc"));
        let s = sink(&config(&es, &prefix, mode), defs.clone());
        let alias = format!("{prefix}product");
        assert_eq!(
            s.apply_owned(&[upsert("product", "a", 1, json!({"n": 1}))])
                .await,
            vec![Outcome::Applied]
        );
        assert_eq!(
            s.apply_owned(&[delete("product", "a", 2)]).await,
            vec![Outcome::Applied]
        );
        // The replay right away is refused in both modes.
        assert_eq!(
            s.apply_owned(&[upsert("product", "a", 1, json!({"n": 1}))])
                .await,
            vec![Outcome::Stale]
        );
        // Let gc_deletes (1 s) pass, with a wide margin.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let replay = s
            .apply_owned(&[upsert("product", "a", 1, json!({"n": 1}))])
            .await;
        let visible = es.count(&alias).await;
        results.push((mode, replay, visible));
    }
    assert_eq!(
        results,
        vec![
            // The hazard, as documented: the old version comes back.
            (DeleteMode::Delete, vec![Outcome::Applied], 1),
            // The tombstone still holds version 2: the replay is stale, nothing visible.
            (DeleteMode::Tombstone, vec![Outcome::Stale], 0),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_rejections_are_dead_lettered_the_rest_applied() {
    let es = Es::start().await;
    let prefix = format!("{}-", unique_name("m"));
    let mut defs = IndexDefinitions::empty();
    defs.insert(
        "product",
        r#"{"mappings":{"dynamic":"strict","properties":{"price":{"type":"long"},"name":{"type":"keyword"}}}}"#,
    )
    .expect("definition");
    let s = sink(&config(&es, &prefix, DeleteMode::Tombstone), defs);
    let out = s
        .apply_owned(&[
            upsert("product", "ok", 1, json!({"price": 5, "name": "x"})),
            upsert("product", "bad", 1, json!({"price": "abc"})),
            upsert("product", "extra", 1, json!({"price": 1, "color": "red"})),
            delete("product", "gone", 1),
        ])
        .await;
    assert_eq!(out[0], Outcome::Applied);
    match &out[1] {
        Outcome::DeadLetter { class, reason } => {
            assert_eq!(class, "mapping_error");
            assert!(reason.contains("price"), "{reason}");
        }
        o => panic!("expected a dead letter, got {o:?}"),
    }
    match &out[2] {
        Outcome::DeadLetter { class, reason } => {
            assert_eq!(class, "mapping_error");
            assert!(
                reason.contains("strict_dynamic_mapping_exception"),
                "{reason}"
            );
        }
        o => panic!("expected a dead letter, got {o:?}"),
    }
    // The tombstone fields are mapped even under `dynamic: strict`.
    assert_eq!(out[3], Outcome::Applied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_items_are_retried_alone_and_whole_request_failures_retry_all() {
    let es = Es::start().await;
    let dev = es.dev();
    let prefix = format!("{}-", unique_name("f"));
    let cfg = EsConfig {
        request_timeout: Duration::from_millis(1500),
        ..config(&es, &prefix, DeleteMode::Tombstone)
    };
    let s = sink(&cfg, IndexDefinitions::empty());
    let batch: Vec<ChangeEvent> = (0..20)
        .map(|i| upsert("product", &format!("k{i}"), 1, json!({"i": i})))
        .collect();
    // Bootstrap the alias first, so the faults below hit bulk requests only.
    assert_eq!(s.apply_owned(&batch[..1]).await, vec![Outcome::Applied]);

    // Three items answered 429: exactly those are retried.
    dev.set_faults(vec![FaultRule::new(
        FaultTarget::BulkItem,
        FaultKind::TooManyRequests,
    )
    .count(3)]);
    let out = s.apply_owned(&batch[1..]).await;
    let retried: Vec<usize> = (0..out.len()).filter(|i| is_retry(&out[*i])).collect();
    assert_eq!(retried.len(), 3, "{out:?}");
    assert_eq!(out.iter().filter(|o| **o == Outcome::Applied).count(), 16);
    dev.clear_faults();
    let again: Vec<ChangeEvent> = retried.iter().map(|i| batch[1 + i].clone()).collect();
    assert_eq!(s.apply_owned(&again).await, vec![Outcome::Applied; 3]);

    // Whole-request failures: 429, 503, a connection closed mid-response, a timeout.
    let more: Vec<ChangeEvent> = (0..5)
        .map(|i| upsert("product", &format!("m{i}"), 1, json!({"i": i})))
        .collect();
    for rule in [
        FaultRule::new(FaultTarget::Bulk, FaultKind::TooManyRequests).count(1),
        FaultRule::new(FaultTarget::Bulk, FaultKind::Unavailable).count(1),
        FaultRule::new(FaultTarget::Bulk, FaultKind::Close).count(1),
        FaultRule::new(FaultTarget::Bulk, FaultKind::Delay)
            .delay(Duration::from_secs(4))
            .count(1),
    ] {
        dev.set_faults(vec![rule.clone()]);
        let out = s.apply_owned(&more).await;
        assert!(out.iter().all(is_retry), "{rule:?}: {out:?}");
    }
    dev.clear_faults();
    // After a close or a timeout the write may or may not have happened: either way the
    // retry converges (applied, or stale because it is already there).
    let out = s.apply_owned(&more).await;
    assert!(
        out.iter()
            .all(|o| matches!(o, Outcome::Applied | Outcome::Stale)),
        "{out:?}"
    );
    assert!(s.metrics().bulk_request_failures.get() >= 4);
    assert_eq!(es.count(&format!("{prefix}product")).await, 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_split_by_actions_and_bytes() {
    let es = Es::start().await;
    let prefix = format!("{}-", unique_name("s"));
    let cfg = EsConfig {
        bulk_max_actions: 7,
        bulk_max_bytes: 4096,
        ..config(&es, &prefix, DeleteMode::Tombstone)
    };
    let s = sink(&cfg, IndexDefinitions::empty());
    let batch: Vec<ChangeEvent> = (0..50)
        .map(|i| upsert("product", &format!("k{i}"), 1, json!({"i": i})))
        .collect();
    assert_eq!(s.apply_owned(&batch).await, vec![Outcome::Applied; 50]);
    assert_eq!(s.metrics().bulk_requests.get(), 8); // ceil(50 / 7)

    // ~1.5 KiB documents: at most two fit in 4 KiB.
    let big: Vec<ChangeEvent> = (0..6)
        .map(|i| {
            upsert(
                "product",
                &format!("b{i}"),
                1,
                json!({"pad": "x".repeat(1500)}),
            )
        })
        .collect();
    assert_eq!(s.apply_owned(&big).await, vec![Outcome::Applied; 6]);
    assert_eq!(s.metrics().bulk_requests.get(), 8 + 3);
    assert_eq!(es.count(&format!("{prefix}product")).await, 56);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bootstrap_creates_one_index() {
    let es = Es::start().await;
    let prefix = format!("{}-", unique_name("r"));
    let cfg = config(&es, &prefix, DeleteMode::Tombstone);
    let sinks: Vec<EsSink> = (0..4)
        .map(|_| sink(&cfg, IndexDefinitions::empty()))
        .collect();
    let futures = sinks.iter().enumerate().map(|(i, s)| {
        let e = upsert("product", &format!("k{i}"), 1, json!({"i": i}));
        async move { s.apply_owned(&[e]).await }
    });
    let outs = futures::future::join_all(futures).await;
    for o in outs {
        assert_eq!(o, vec![Outcome::Applied]);
    }
    let alias = format!("{prefix}product");
    assert_eq!(
        es.alias_indexes(&alias).await,
        vec![format!("{alias}-000001")]
    );
    assert_eq!(es.count(&alias).await, 4);
    let created: u64 = sinks
        .iter()
        .map(|s| s.metrics().indexes_created.get())
        .sum();
    assert_eq!(created, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_create_indexes_a_missing_alias_is_retried_until_it_exists() {
    let es = Es::start().await;
    let prefix = format!("{}-", unique_name("n"));
    let cfg = EsConfig {
        create_indexes: false,
        ..config(&es, &prefix, DeleteMode::Delete)
    };
    let s = sink(&cfg, IndexDefinitions::empty());
    let e = upsert("product", "a", 1, json!({"n": 1}));
    match &s.apply_owned(std::slice::from_ref(&e)).await[0] {
        Outcome::Retry { reason } => assert!(reason.contains("create_indexes"), "{reason}"),
        o => panic!("expected retry, got {o:?}"),
    }
    // Nothing was auto-created under the alias name.
    let alias = format!("{prefix}product");
    assert_eq!(es.get_json(&format!("/{alias}")).await.0, 404);
    let (st, b) = es
        .put_json(
            &format!("/{alias}-v1"),
            &json!({"aliases": {&alias: {"is_write_index": true}}}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(s.apply_owned(&[e]).await, vec![Outcome::Applied]);
    assert_eq!(es.count(&alias).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_elasticsearch_is_retried() {
    // A port nothing listens on: bind one, then drop it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let cfg = EsConfig {
        url: format!("http://127.0.0.1:{port}"),
        request_timeout: Duration::from_secs(2),
        ..EsConfig::default()
    };
    let s = sink(&cfg, IndexDefinitions::empty());
    let out = s
        .apply_owned(&[
            upsert("product", "a", 1, json!({})),
            delete("product", "b", 1),
        ])
        .await;
    assert!(out.iter().all(is_retry), "{out:?}");
}
