//! The sink in-process against real Redis (no Kafka): outcomes, tags, notices, NOSCRIPT
//! inside a pipeline, error replies and connection loss.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use redis::AsyncCommands;
use serde_json::json;
use syncline_cache::{Cache, Entry, KeyLayout, Mode, SearchCache, StoreOutcome, Ttls};
use syncline_consumer::{Metrics, Outcome, Sink};
use syncline_event::{ChangeEvent, Op};
use syncline_redis_invalidator::{RedisSettings, RedisSink};
use syncline_testkit::{unique_name, wait_until};

fn upsert(id: &str, version: i64) -> ChangeEvent {
    ChangeEvent::new(
        "product",
        id,
        Op::Upsert,
        version,
        "test",
        Some(json!({"id": id, "v": version}).to_string()),
    )
}

fn layout(name: &str) -> KeyLayout {
    KeyLayout::new(format!("{}:", unique_name(name))).expect("prefix")
}

async fn sink(
    url: &str,
    layout: &KeyLayout,
    mode: Mode,
    channel: Option<&str>,
) -> (RedisSink, Metrics) {
    let settings = RedisSettings {
        url: url.to_owned(),
        key_prefix: layout.prefix().to_owned(),
        mode,
        publish_channel: channel.map(str::to_owned),
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let metrics = Metrics::new();
    let sink = RedisSink::connect(settings.validate().expect("valid"), &metrics)
        .await
        .expect("connect");
    (sink, metrics)
}

fn is_retry(o: &Outcome) -> bool {
    matches!(o, Outcome::Retry { .. })
}

#[tokio::test]
async fn outcomes_follow_versions_and_tags_retire_search_results() {
    let url = syncline_testkit::redis_url();
    let layout = layout("sink-tags");
    let (sink, _) = sink(&url, &layout, Mode::Invalidate, None).await;
    let mut conn = common::connect(&url).await;
    let search = SearchCache::new(
        conn.clone(),
        layout.clone(),
        "products",
        Duration::from_secs(60),
    )
    .expect("search");
    let compute = |t: &'static str| move || async move { Ok::<_, std::io::Error>(t.to_owned()) };
    let q7 = json!({"category": 7});
    let q8 = json!({"category": 8});
    assert!(
        !search
            .get_or_compute(&q7, &["cat:7"], compute("r7"))
            .await
            .unwrap()
            .hit
    );
    assert!(
        !search
            .get_or_compute(&q8, &["cat:8"], compute("r8"))
            .await
            .unwrap()
            .hit
    );
    let _: () = conn
        .set(layout.cache_key("product", "a"), "1\n{}")
        .await
        .unwrap();

    let mut tagged = upsert("b", 3);
    tagged.invalidate = vec!["cat:7".into()];
    let batch = vec![upsert("a", 5), tagged.clone()];
    assert_eq!(
        sink.apply_owned(&batch).await,
        vec![Outcome::Applied, Outcome::Applied]
    );
    assert_eq!(
        sink.apply_owned(&batch).await,
        vec![Outcome::Stale, Outcome::Stale]
    );
    assert_eq!(
        sink.apply_owned(&[upsert("a", 4)]).await,
        vec![Outcome::Stale]
    );
    let exists: bool = conn.exists(layout.cache_key("product", "a")).await.unwrap();
    assert!(!exists, "invalidated");
    let guard: Option<i64> = conn.get(layout.guard_key("product", "a")).await.unwrap();
    assert_eq!(guard, Some(5));

    assert!(
        !search
            .get_or_compute(&q7, &["cat:7"], compute("r7'"))
            .await
            .unwrap()
            .hit,
        "tag bumped"
    );
    assert!(
        search
            .get_or_compute(&q8, &["cat:8"], compute("x"))
            .await
            .unwrap()
            .hit,
        "other tag untouched"
    );
    let m = sink.metrics();
    assert_eq!(
        (m.applied.get(), m.stale.get(), m.tag_bumps.get()),
        (2, 3, 2)
    );
    common::cleanup(&mut conn, &layout).await;
}

#[tokio::test]
async fn refresh_mode_writes_documents_readable_by_the_cache_helper() {
    let url = syncline_testkit::redis_url();
    let layout = layout("sink-refresh");
    let (sink, _) = sink(&url, &layout, Mode::Refresh, None).await;
    let mut conn = common::connect(&url).await;
    let cache = Cache::new(conn.clone(), layout.clone(), Ttls::default());
    let del = ChangeEvent::new("product", "d", Op::Delete, 9, "test", None);
    assert_eq!(
        sink.apply_owned(&[upsert("r", 2), del]).await,
        vec![Outcome::Applied, Outcome::Applied]
    );
    let got = cache.get("product", "r").await.unwrap();
    assert_eq!(
        got,
        Some(Entry {
            version: 2,
            document: upsert("r", 2).document.unwrap_or_default()
        })
    );
    assert_eq!(cache.get("product", "d").await.unwrap(), None);
    assert_eq!(cache.guard("product", "d").await.unwrap(), Some(9));

    // Slow-reader race against the sink: a load of version 2 after the sink applied 3.
    assert_eq!(
        sink.apply_owned(&[upsert("r", 3)]).await,
        vec![Outcome::Applied]
    );
    let slow = Entry {
        version: 2,
        document: "{}".into(),
    };
    assert_eq!(
        cache.store("product", "r", &slow).await.unwrap(),
        StoreOutcome::Refused
    );
    assert_eq!(
        cache.get("product", "r").await.unwrap().map(|e| e.version),
        Some(3)
    );
    common::cleanup(&mut conn, &layout).await;
}

#[tokio::test]
async fn notices_are_published_for_applied_events_only() {
    let url = syncline_testkit::redis_url();
    let layout = layout("sink-publish");
    let channel = unique_name("notices");
    let (sink, _) = sink(&url, &layout, Mode::Invalidate, Some(&channel)).await;
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(&channel).await.unwrap();
    let mut messages = pubsub.into_on_message();

    assert_eq!(
        sink.apply_owned(&[upsert("p", 2)]).await,
        vec![Outcome::Applied]
    );
    // A stale event, then a sentinel: the next notice must be the sentinel's.
    assert_eq!(
        sink.apply_owned(&[upsert("p", 1)]).await,
        vec![Outcome::Stale]
    );
    assert_eq!(
        sink.apply_owned(&[upsert("sentinel", 1)]).await,
        vec![Outcome::Applied]
    );

    use futures::StreamExt as _;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let msg = tokio::time::timeout(common::DEADLINE, messages.next())
            .await
            .expect("notice")
            .expect("stream");
        let payload: String = msg.get_payload().unwrap();
        let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(v["entity_type"], "product");
        ids.push((
            v["entity_id"].as_str().unwrap_or_default().to_owned(),
            v["version"].as_i64().unwrap_or(-1),
        ));
    }
    assert_eq!(ids, vec![("p".to_owned(), 2), ("sentinel".to_owned(), 1)]);
    let mut conn = common::connect(&url).await;
    common::cleanup(&mut conn, &layout).await;
}

#[tokio::test]
async fn noscript_inside_the_pipeline_is_reloaded_in_the_same_apply() {
    let own = common::OwnRedis::start();
    let layout = layout("sink-noscript");
    let (sink, _) = sink(&own.url(), &layout, Mode::Invalidate, None).await;
    let mut conn = common::connect(&own.url()).await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut tagged = upsert("n2", 1);
    tagged.invalidate = vec!["t".into()];
    let batch = vec![upsert("n1", 1), tagged];
    assert_eq!(
        sink.apply_owned(&batch).await,
        vec![Outcome::Applied, Outcome::Applied]
    );
    assert_eq!(sink.metrics().script_reloads.get(), 1);
    let guard: Option<i64> = conn.get(layout.guard_key("product", "n1")).await.unwrap();
    assert_eq!(guard, Some(1));
}

#[tokio::test]
async fn error_replies_retry_and_succeed_once_redis_accepts_writes() {
    let own = common::OwnRedis::start();
    let layout = layout("sink-oom");
    let (sink, _) = sink(&own.url(), &layout, Mode::Refresh, None).await;
    let mut conn = common::connect(&own.url()).await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query_async(&mut conn)
        .await
        .unwrap();
    let batch = vec![upsert("o1", 1), upsert("o2", 1)];
    let out = sink.apply_owned(&batch).await;
    assert!(out.iter().all(is_retry), "{out:?}");
    assert!(format!("{out:?}").contains("OOM"), "{out:?}");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        sink.apply_owned(&batch).await,
        vec![Outcome::Applied, Outcome::Applied]
    );
}

#[tokio::test]
async fn connection_loss_retries_and_recovers_after_an_empty_restart() {
    let mut own = common::OwnRedis::start();
    let layout = layout("sink-restart");
    let (sink, _) = sink(&own.url(), &layout, Mode::Refresh, None).await;
    assert_eq!(
        sink.apply_owned(&[upsert("c", 1)]).await,
        vec![Outcome::Applied]
    );
    own.kill();
    let out = sink.apply_owned(&[upsert("c", 2), upsert("d", 1)]).await;
    assert!(out.iter().all(is_retry), "{out:?}");
    own.restart();
    // The manager reconnects by itself; the empty server has no script (NOSCRIPT path).
    let sink = &sink;
    wait_until(
        common::DEADLINE,
        Duration::from_millis(200),
        || async move {
            let out = sink.apply_owned(&[upsert("c", 2), upsert("d", 1)]).await;
            if out == vec![Outcome::Applied, Outcome::Applied] {
                Ok(())
            } else {
                Err(format!("{out:?}"))
            }
        },
    )
    .await
    .expect("recovered");
    assert!(sink.metrics().script_reloads.get() >= 1);
    assert!(sink.metrics().pipeline_failures.get() >= 1);
    let mut conn = common::connect(&own.url()).await;
    let v: Option<String> = conn.get(layout.cache_key("product", "c")).await.unwrap();
    assert_eq!(
        v,
        Some(format!(
            "2\n{}",
            upsert("c", 2).document.unwrap_or_default()
        ))
    );
}

#[tokio::test]
async fn batches_larger_than_one_script_call_keep_outcomes_and_tags_in_place() {
    let url = syncline_testkit::redis_url();
    let layout = layout("sink-chunks");
    let (sink, _) = sink(&url, &layout, Mode::Invalidate, None).await;
    let mut conn = common::connect(&url).await;
    // Guards for the even ids first, at version 10: in the big batch below those events
    // (version 5) are stale and the odd ones applied. Every third event bumps a tag, so
    // the tag INCRs sit between script calls at irregular places.
    let n = 3 * syncline_cache::scripts::MAX_APPLY_EVENTS + 7;
    let evens: Vec<ChangeEvent> = (0..n)
        .step_by(2)
        .map(|i| upsert(&i.to_string(), 10))
        .collect();
    assert!(sink
        .apply_owned(&evens)
        .await
        .iter()
        .all(|o| *o == Outcome::Applied));
    let batch: Vec<ChangeEvent> = (0..n)
        .map(|i| {
            let mut e = upsert(&i.to_string(), 5);
            if i % 3 == 0 {
                e.invalidate = vec![format!("t{}", i % 2)];
            }
            e
        })
        .collect();
    let outcomes = sink.apply_owned(&batch).await;
    let expected: Vec<Outcome> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                Outcome::Stale
            } else {
                Outcome::Applied
            }
        })
        .collect();
    assert_eq!(outcomes, expected);
    for i in [0, 1, n - 2, n - 1] {
        let guard: Option<i64> = conn
            .get(layout.guard_key("product", &i.to_string()))
            .await
            .unwrap();
        assert_eq!(guard, Some(if i % 2 == 0 { 10 } else { 5 }), "guard of {i}");
    }
    // Tags are bumped whether or not the event was stale (the INCR is not conditional).
    let bumps = |parity: usize| (0..n).filter(|i| i % 3 == 0 && i % 2 == parity).count();
    for parity in [0, 1] {
        let generation: Option<i64> = conn
            .get(layout.tag_key(&format!("t{parity}")))
            .await
            .unwrap();
        assert_eq!(generation, Some(bumps(parity) as i64), "tag t{parity}");
    }
    common::cleanup(&mut conn, &layout).await;
}
