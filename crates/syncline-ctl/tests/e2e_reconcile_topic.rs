//! `reconcile --truth topic` against the real pipeline: the truth is the latest record per
//! key of the change topic itself (here a compacted one, written with shuffled versions,
//! duplicates and deletes). Seeded drift of every kind is found in the store where it was
//! seeded and nowhere else, `--repair` fixes it through the topic, and the next run finds
//! nothing. A topic that no longer holds its history is refused, as `rebuild` refuses it.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
mod support_reconcile;

use std::time::Duration;

use redis::AsyncCommands as _;
use serde_json::json;
use support_reconcile::{assert_drift, id_set, Pipeline, ENTITY};
use syncline_testkit::{publish_events, wait_until, Workload, WorkloadSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_truth_finds_repairs_and_clears_seeded_drift() {
    // gc_deletes 1s: a document deleted by hand can be re-created (by the test, and by a
    // repair) a second later.
    let p = Pipeline::start_with("rec-topic", "1s", &[("cleanup.policy", "compact")]).await;
    let w = Workload::generate(&WorkloadSpec {
        events: 1_500,
        keys: 300,
        entity_type: ENTITY.to_owned(),
        doc_bytes: 120,
        ..WorkloadSpec::default()
    });
    publish_events(&p.brokers, &p.topic, &w.events)
        .await
        .expect("publish");
    p.wait_caught_up().await;
    let (code, report, text) = p.reconcile_topic(&["--grace", "1s"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["drifted_entities"], 0, "{text}");
    assert_eq!(report["truth"], "topic", "{text}");
    assert_eq!(report["truth_entities"], w.oracle.len() as u64, "{text}");

    // Live entities with a version above 1 (so an older one can be written), and one
    // deleted in the truth.
    let live: Vec<(String, i64)> = w
        .oracle
        .iter()
        .filter(|(_, e)| e.document.is_some() && e.version > 1)
        .map(|((_, id), e)| (id.clone(), e.version))
        .collect();
    let (deleted, deleted_v) = w
        .oracle
        .iter()
        .find(|(_, e)| e.document.is_none())
        .map(|((_, id), e)| (id.clone(), e.version))
        .expect("a deleted entity");
    assert!(live.len() >= 6, "only {} live entities", live.len());
    let l = |i: usize| live[i].0.as_str();

    let index = p.index().await;
    let put = |id: String, version: i64, body: serde_json::Value| {
        let path =
            format!("/{index}/_doc/{id}?version={version}&version_type=external&refresh=true");
        let p = &p;
        async move {
            // Retried: a version below one deleted less than gc_deletes ago is refused.
            wait_until(
                Duration::from_secs(30),
                Duration::from_millis(200),
                || async {
                    let (s, b) = p.es(reqwest::Method::PUT, &path, Some(body.clone())).await;
                    if s == 200 || s == 201 {
                        Ok(())
                    } else {
                        Err(format!("PUT {path}: {s} {b}"))
                    }
                },
            )
            .await
            .expect("seed a document");
        }
    };
    let delete = |id: String| {
        let p = &p;
        let path = format!("/{index}/_doc/{id}?refresh=true");
        async move {
            let (s, b) = p.es(reqwest::Method::DELETE, &path, None).await;
            assert_eq!(s, 200, "{b}");
        }
    };
    let mut r = p.redis().await;
    // 1. documents deleted from ES by hand
    delete(l(0).to_owned()).await;
    delete(l(1).to_owned()).await;
    // 2. an older version written directly into both stores
    delete(l(2).to_owned()).await;
    put(l(2).to_owned(), 1, json!({"name": "old"})).await;
    let _: () = r.set(p.layout.guard_key(ENTITY, l(2)), "1").await.unwrap();
    // 3. extras: an entity the topic never had (ES and Redis), and a live document for
    //    one the topic deleted
    put("x-1".to_owned(), 7, json!({"name": "ghost"})).await;
    put(deleted.clone(), deleted_v + 1, json!({"name": "undead"})).await;
    let _: () = r
        .set(p.layout.cache_key(ENTITY, "x-2"), "7\n{\"name\":\"ghost\"}")
        .await
        .unwrap();
    let _: () = r.set(p.layout.guard_key(ENTITY, "x-2"), "7").await.unwrap();
    // 4. Redis guards removed
    for i in [3, 4] {
        let _: () = r.del(p.layout.guard_key(ENTITY, l(i))).await.unwrap();
    }
    // 5. a tombstone where the topic's entity is live, above its version
    put(
        l(5).to_owned(),
        live[5].1 + 1,
        json!({"_syncline_deleted": true, "_syncline_deleted_at": 0}),
    )
    .await;

    let (code, report, text) = p.reconcile_topic(&["--grace", "1s"]);
    assert_eq!(code, Some(1), "{text}");
    let expect = [
        ("es", "missing", id_set(&[l(0), l(1)])),
        ("es", "stale", id_set(&[l(2)])),
        ("es", "extra", id_set(&["x-1", &deleted])),
        ("es", "tombstone_mismatch", id_set(&[l(5)])),
        ("redis", "missing", id_set(&[l(3), l(4)])),
        ("redis", "stale", id_set(&[l(2)])),
        ("redis", "extra", id_set(&["x-2"])),
        ("redis", "tombstone_mismatch", Vec::new()),
    ];
    assert_drift(&report, &text, &expect);
    assert_eq!(report["drifted_entities"], 9, "{text}");

    // Repair through the topic (which is also the truth), then nothing is left.
    let (code, report, text) = p.reconcile_topic(&["--grace", "1s", "--repair"]);
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(report["repair"]["upserts"], 6, "{text}");
    assert_eq!(report["repair"]["deletes"], 3, "{text}");
    p.wait_caught_up().await;
    let (code, report, text) = p.reconcile_topic(&["--grace", "1s"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["drifted_entities"], 0, "{text}");

    // The stores hold the topic's documents again, not merely higher numbers.
    let want = |id: &str| -> serde_json::Value {
        let doc = w.oracle[&(ENTITY.to_owned(), id.to_owned())]
            .document
            .clone()
            .expect("live");
        serde_json::from_str(&doc).expect("json")
    };
    for id in [l(0), l(2), l(5)] {
        let (s, b) = p
            .es(reqwest::Method::GET, &format!("/{index}/_doc/{id}"), None)
            .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["_source"], want(id), "{id}");
    }
    for id in ["x-1", deleted.as_str()] {
        let (_, b) = p
            .es(reqwest::Method::GET, &format!("/{index}/_doc/{id}"), None)
            .await;
        assert_eq!(b["_source"]["_syncline_deleted"], true, "{id}: {b}");
    }
    let cached: Option<String> = r.get(p.layout.cache_key(ENTITY, "x-2")).await.unwrap();
    assert_eq!(cached, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_without_its_history_is_refused() {
    let p = Pipeline::start_with(
        "rec-topic-hist",
        "60s",
        &[("cleanup.policy", "delete"), ("retention.ms", "3600000")],
    )
    .await;
    // Records older than the topic's retention: a real broker deletes them, so the topic
    // cannot be the truth (Tansu keeps them, the check reads the settings and timestamps).
    common::publish_stamped(&p.brokers, &p.topic, 20, Duration::from_secs(3 * 3600)).await;
    let (code, report, text) = p.reconcile_topic(&["--grace", "0s"]);
    assert_eq!(code, Some(2), "{text}");
    assert_eq!(report, serde_json::Value::Null, "{text}");
    assert!(
        text.contains("refusing --truth topic")
            && text.contains("no longer holds its whole history"),
        "{text}"
    );
    assert!(text.contains("--truth postgres"), "{text}");
}
