//! `syncline-ctl rebuild es` under live traffic, against the real broker, the ES dev server
//! and the real `syncline-es-indexer` binary.
//!
//! A publisher keeps publishing shuffled updates and deletes while the live indexer runs
//! and the rebuild fills a new index with a changed mapping, swaps the alias and finishes.
//! A reader queries the alias the whole time for a set of entities that live traffic
//! updates but never deletes: every search must succeed and find all of them. At the end
//! the alias equals the oracle of everything published, it points at the new index only,
//! the new mapping is in effect and the old index is gone (`--delete-old`).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod rebuild_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rebuild_support::{check_oracle, debug_binary, mapping_dir, Es, Publisher, Setup};
use serde_json::json;
use syncline_testkit::{create_topic_with_dlq, publish_events, Workload, WorkloadSpec};

/// What the reader saw.
#[derive(Debug, Default)]
struct Reads {
    searches: u64,
    failed: Vec<String>,
    missing: Vec<String>,
    indexes_seen: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_under_live_traffic_never_loses_an_entity_and_ends_at_the_oracle() {
    let indexer_bin = debug_binary("syncline-es-indexer", "syncline-es-indexer");
    let es = Arc::new(Es::start().await);
    let setup = Setup::new(&es, "rebuild-live");
    let alias = setup.alias("product");
    create_topic_with_dlq(&setup.brokers, &setup.topic, 3)
        .await
        .expect("topics");

    // Old mapping: `name` is text. New mapping: `name` is a keyword, plus a new field.
    let v1 = mapping_dir(
        "product",
        &json!({"mappings": {"properties": {"name": {"type": "text"}, "price": {"type": "long"}}}}),
    );
    let v2 = mapping_dir(
        "product",
        &json!({"settings": {"number_of_replicas": 0, "refresh_interval": "500ms"},
                "mappings": {"properties": {"name": {"type": "keyword"}, "price": {"type": "long"},
                                            "id": {"type": "keyword"}}}}),
    );

    // History before the rebuild, applied by the live indexer into generation 1.
    let keys = 2_000;
    let w = Workload::generate(&WorkloadSpec {
        events: 20_000,
        keys,
        entity_type: "product".into(),
        delete_ratio: 0.1,
        duplicate_ratio: 0.05,
        doc_bytes: 300,
        shuffle: true,
        seed: 11,
    });
    publish_events(&setup.brokers, &setup.topic, &w.events)
        .await
        .expect("publish history");
    let _live = setup.spawn_indexer(&indexer_bin, v1.path());
    setup
        .wait_drained(&setup.live_group, Duration::from_secs(180))
        .await;
    let old_index = format!("{alias}-000001");
    let (s, b) = es.post(&format!("/{alias}/_refresh"), json!({})).await;
    assert_eq!(s, 200, "{b}");

    // Protected entities: live now, never deleted by the live traffic (updated, though).
    let protected: Vec<String> = w
        .oracle
        .iter()
        .filter(|((_, id), e)| e.document.is_some() && id.ends_with(['0', '2', '4']))
        .map(|((_, id), _)| id.clone())
        .collect();
    assert!(protected.len() > 300, "{} protected", protected.len());

    let publisher = Publisher::start(
        setup.brokers.clone(),
        setup.topic.clone(),
        "product".into(),
        w.oracle.clone(),
        keys + 300,
        protected.clone(),
        1_500,
        12,
    );

    // The reader: ids query through the alias, as often as it can.
    let reading = Arc::new(AtomicBool::new(true));
    let reader = {
        let (es, alias, protected, reading) = (
            es.clone(),
            alias.clone(),
            protected.clone(),
            reading.clone(),
        );
        tokio::spawn(async move {
            let mut r = Reads::default();
            while reading.load(Ordering::Relaxed) {
                let (s, b) = es
                    .post(
                        &format!("/{alias}/_search"),
                        json!({"size": protected.len(), "_source": false,
                               "query": {"ids": {"values": protected}}}),
                    )
                    .await;
                r.searches += 1;
                if s != 200 {
                    r.failed.push(format!("status {s}: {b}"));
                    continue;
                }
                let hits = b["hits"]["hits"].as_array().cloned().unwrap_or_default();
                if hits.len() != protected.len() {
                    let seen: std::collections::HashSet<&str> =
                        hits.iter().filter_map(|h| h["_id"].as_str()).collect();
                    let gone: Vec<&String> = protected
                        .iter()
                        .filter(|id| !seen.contains(id.as_str()))
                        .take(5)
                        .collect();
                    r.missing.push(format!(
                        "{} of {} missing, e.g. {gone:?}",
                        protected.len() - hits.len(),
                        protected.len()
                    ));
                }
                for h in &hits {
                    if let Some(i) = h["_index"].as_str() {
                        if !r.indexes_seen.iter().any(|x| x == i) {
                            r.indexes_seen.push(i.to_owned());
                        }
                    }
                }
            }
            r
        })
    };

    // The rebuild, with live traffic running from before it starts to after it ends.
    let before = publisher.published.load(Ordering::Relaxed);
    syncline_testkit::wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
        let p = publisher.published.clone();
        async move {
            if p.load(Ordering::Relaxed) > before + 500 {
                Ok(())
            } else {
                Err("live traffic not flowing yet".to_owned())
            }
        }
    })
    .await
    .expect("live traffic");
    let started = Instant::now();
    // Paced so that the rebuild lasts a few seconds (unpaced it takes about one), long
    // enough for live events to land during the fill, around the swap and in the overlap.
    let out = setup
        .rebuild_cmd(
            v2.path(),
            &[
                "--entity-type",
                "product",
                "--delete-old",
                "--events-per-second",
                "2500",
            ],
        )
        .output()
        .expect("run rebuild");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("rebuild took {took:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(out.status.success(), "rebuild failed: {:?}", out.status);

    // Live traffic goes on after the rebuild, into the new index.
    let after = publisher.published.load(Ordering::Relaxed);
    syncline_testkit::wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
        let p = publisher.published.clone();
        async move {
            if p.load(Ordering::Relaxed) > after + 1_000 {
                Ok(())
            } else {
                Err("live traffic stalled".to_owned())
            }
        }
    })
    .await
    .expect("live traffic after the rebuild");
    let published_during = after - before;
    let oracle = publisher.stop().await;
    setup
        .wait_drained(&setup.live_group, Duration::from_secs(180))
        .await;
    reading.store(false, Ordering::Relaxed);
    let reads = reader.await.expect("reader");
    eprintln!(
        "{published_during} live events during the rebuild; reader: {} searches, indexes seen {:?}",
        reads.searches, reads.indexes_seen
    );

    let new_index = format!("{alias}-000002");
    assert!(
        reads.failed.is_empty(),
        "failed searches: {:?}",
        &reads.failed[..reads.failed.len().min(5)]
    );
    assert!(
        reads.missing.is_empty(),
        "entities missing: {:?}",
        &reads.missing[..reads.missing.len().min(5)]
    );
    assert!(
        reads.indexes_seen.contains(&old_index) && reads.indexes_seen.contains(&new_index),
        "the reader should have read both indexes: {:?}",
        reads.indexes_seen
    );
    assert!(reads.searches > 20, "only {} searches", reads.searches);
    assert!(
        published_during > 1_000,
        "only {published_during} events during the rebuild"
    );

    // The alias: the new index only, as write index, with the tombstone filter.
    let behind = es.alias_indexes(&alias).await;
    assert_eq!(
        behind.keys().collect::<Vec<_>>(),
        vec![&new_index],
        "{behind:?}"
    );
    assert_eq!(behind[&new_index]["is_write_index"], true, "{behind:?}");
    assert!(behind[&new_index].get("filter").is_some(), "{behind:?}");
    // Old index deleted, rebuild alias gone.
    let (s, _) = es.get(&format!("/{old_index}")).await;
    assert_eq!(s, 404, "old index still exists");
    let (s, _) = es.get(&format!("/_alias/syncline-rebuild.{alias}")).await;
    assert_eq!(s, 404, "rebuild alias left behind");
    // New mapping and settings in effect.
    let (s, m) = es.get(&format!("/{alias}/_mapping")).await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(
        m[&new_index]["mappings"]["properties"]["name"]["type"], "keyword",
        "{m}"
    );
    assert_eq!(
        m[&new_index]["mappings"]["properties"]["id"]["type"], "keyword",
        "{m}"
    );
    let (s, st) = es
        .get(&format!("/{new_index}/_settings?flat_settings=true"))
        .await;
    assert_eq!(s, 200, "{st}");
    assert_eq!(
        st[&new_index]["settings"]["index.refresh_interval"], "500ms",
        "{st}"
    );
    // A keyword field matches the whole value only.
    let some_live = oracle
        .iter()
        .find(|(_, e)| e.document.is_some())
        .map(|((_, id), e)| (id.clone(), e.version))
        .expect("a live entity");
    let (s, b) = es
        .post(
            &format!("/{alias}/_search"),
            json!({"query": {"term": {"name": format!("item {} v{}", some_live.0, some_live.1)}}}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["hits"]["total"]["value"], 1, "{b}");

    // No dead letters from the live indexer or the rebuild.
    let dlq = syncline_testkit::end_offsets(&setup.brokers, &format!("{}.dlq", setup.topic))
        .await
        .expect("dlq offsets");
    assert_eq!(dlq.iter().sum::<i64>(), 0, "dead letters: {dlq:?}");

    if let Err(e) = check_oracle(&es, &alias, &oracle).await {
        panic!("after the rebuild the alias differs from the oracle: {e}");
    }
}
