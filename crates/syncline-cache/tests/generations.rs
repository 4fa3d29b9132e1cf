//! Key prefix generations against a real Redis: generation 0 is the old layout, a switch
//! (one INCR) makes every entry of the old generation unreachable for reads, stores,
//! events and search results, a load that spans a switch is not stored, and the old
//! generation's keys can be unlinked while the new one's stay.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::convert::Infallible;
use std::time::Duration;

use redis::AsyncCommands;
use syncline_cache::admin::{self, UnlinkCursor};
use syncline_cache::{
    scripts, ApplyOutcome, Cache, CacheError, Entry, Mode, Origin, SearchCache, Ttls,
};
use syncline_event::{ChangeEvent, Op};

fn upsert(id: &str, version: i64, doc: &str) -> ChangeEvent {
    ChangeEvent::new(
        "product",
        id,
        Op::Upsert,
        version,
        "test",
        Some(doc.to_owned()),
    )
}

async fn cache(test: &str) -> Cache {
    let conn = common::connect(&common::redis_url()).await;
    Cache::new(conn, common::layout(test), Ttls::default())
}

async fn switch(c: &Cache) -> u64 {
    let mut conn = c.connection();
    conn.incr(c.layout().generation_key(), 1).await.unwrap()
}

#[tokio::test]
async fn generation_zero_reads_the_existing_layout() {
    let c = cache("gen0").await;
    let mut conn = c.connection();
    // Written the way every release before generations wrote it.
    let _: () = conn
        .set(c.layout().cache_key("product", "1"), "4\n{\"v\":4}")
        .await
        .unwrap();
    let _: () = conn
        .set(c.layout().guard_key("product", "1"), "4")
        .await
        .unwrap();
    let e = c.get("product", "1").await.unwrap();
    assert_eq!(e.map(|e| e.version), Some(4));
    assert_eq!(c.guard("product", "1").await.unwrap(), Some(4));
    assert_eq!(
        c.apply(&upsert("1", 3, "{}"), Mode::Refresh).await.unwrap(),
        ApplyOutcome::Stale
    );
    assert_eq!(
        admin::current_generation(&mut conn, c.layout())
            .await
            .unwrap(),
        0
    );
    let exists: bool = conn.exists(c.layout().generation_key()).await.unwrap();
    assert!(
        !exists,
        "reading generation 0 must not create the generation key"
    );
    common::cleanup(&mut conn, c.layout()).await;
}

#[tokio::test]
async fn a_switch_hides_every_old_entry_from_readers_and_writers() {
    let c = cache("switch").await;
    let mut conn = c.connection();
    for id in ["1", "2"] {
        c.apply(&upsert(id, 5, "{\"old\":true}"), Mode::Refresh)
            .await
            .unwrap();
    }
    assert!(c.get("product", "1").await.unwrap().is_some());
    // Another client switches; this cache still believes in generation 0.
    let other = Cache::new(c.connection(), c.layout().clone(), Ttls::default());
    assert_eq!(switch(&other).await, 1);
    assert_eq!(c.generation(), 0);
    assert_eq!(c.get("product", "1").await.unwrap(), None);
    assert_eq!(c.generation(), 1);
    assert_eq!(c.guard("product", "1").await.unwrap(), None);
    // An older event than the old generation's guard applies in the new generation: its
    // guards start empty.
    assert_eq!(
        c.apply(&upsert("2", 3, "{\"new\":true}"), Mode::Refresh)
            .await
            .unwrap(),
        ApplyOutcome::Applied
    );
    let e = c.get("product", "2").await.unwrap();
    assert_eq!(e.map(|e| e.document).as_deref(), Some("{\"new\":true}"));
    let raw: Option<String> = conn
        .get(c.layout().cache_key_in(1, "product", "2"))
        .await
        .unwrap();
    assert_eq!(raw.as_deref(), Some("3\n{\"new\":true}"));
    // The old generation's keys are untouched until removed.
    let old: Option<String> = conn
        .get(c.layout().cache_key("product", "2"))
        .await
        .unwrap();
    assert_eq!(old.as_deref(), Some("5\n{\"old\":true}"));
    common::cleanup(&mut conn, c.layout()).await;
}

#[tokio::test]
async fn a_load_that_spans_a_switch_is_returned_but_not_stored() {
    let c = cache("span").await;
    let mut conn = c.connection();
    let other = Cache::new(c.connection(), c.layout().clone(), Ttls::default());
    let got = c
        .get_or_load("product", "9", || async {
            switch(&other).await;
            Ok::<_, Infallible>(Some(Entry {
                version: 2,
                document: "{\"loaded\":\"before\"}".into(),
            }))
        })
        .await
        .unwrap();
    assert_eq!(got.map(|l| l.origin), Some(Origin::Refused));
    for g in [0, 1] {
        let v: Option<String> = conn
            .get(c.layout().cache_key_in(g, "product", "9"))
            .await
            .unwrap();
        assert_eq!(v, None, "generation {g}");
    }
    // The next load happens in the new generation and is stored there.
    let got = c
        .get_or_load("product", "9", || async {
            Ok::<_, Infallible>(Some(Entry {
                version: 2,
                document: "{\"loaded\":\"after\"}".into(),
            }))
        })
        .await
        .unwrap();
    assert_eq!(got.map(|l| l.origin), Some(Origin::Stored));
    let v: Option<String> = conn
        .get(c.layout().cache_key_in(1, "product", "9"))
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("2\n{\"loaded\":\"after\"}"));
    common::cleanup(&mut conn, c.layout()).await;
}

#[tokio::test]
async fn apply_takes_the_current_or_a_newer_generation_never_an_older_one() {
    let c = cache("pin").await;
    let mut conn = c.connection();
    let layout = c.layout().clone();
    let event = upsert("1", 7, "{}");
    let run = |generation: u64| {
        let mut call = scripts::ApplyCall::new(&layout, generation, Mode::Refresh, c.ttls(), None);
        call.push(event.view(), None).unwrap();
        let mut conn = c.connection();
        async move { scripts::invoke(&mut conn, scripts::apply_script(), &call.cmd()).await }
    };
    // Warming generation 2 while 0 is current.
    assert!(run(2).await.is_ok());
    let v: Option<String> = conn
        .get(layout.guard_key_in(2, "product", "1"))
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("7"));
    let _: () = conn.set(layout.generation_key(), 2).await.unwrap();
    assert!(matches!(
        run(1).await,
        Err(CacheError::GenerationChanged(2))
    ));
    assert!(matches!(
        run(0).await,
        Err(CacheError::GenerationChanged(2))
    ));
    common::cleanup(&mut conn, c.layout()).await;
}

#[tokio::test]
async fn search_results_of_the_old_generation_are_not_returned() {
    let conn = common::connect(&common::redis_url()).await;
    let layout = common::layout("search-gen");
    let sc = SearchCache::new(conn.clone(), layout.clone(), "s", Duration::from_secs(60)).unwrap();
    let q = serde_json::json!({"q": "shoe"});
    let compute = |r: &'static str| move || async move { Ok::<_, Infallible>(r.to_owned()) };
    let first = sc
        .get_or_compute(&q, &["t"], compute("before"))
        .await
        .unwrap();
    assert!(!first.hit);
    assert!(
        sc.get_or_compute(&q, &["t"], compute("x"))
            .await
            .unwrap()
            .hit
    );
    let mut c = conn.clone();
    let _: u64 = c.incr(layout.generation_key(), 1).await.unwrap();
    let after = sc
        .get_or_compute(&q, &["t"], compute("after"))
        .await
        .unwrap();
    assert!(!after.hit);
    assert_eq!(after.result, "after");
    assert_eq!(after.key, sc.key_in(1, &q, &[("t".into(), 0)]));
    // Computed across a switch: returned, not cached.
    let q2 = serde_json::json!({"q": "boot"});
    let spans = sc
        .get_or_compute(&q2, &["t"], || {
            let mut c = c.clone();
            let layout = layout.clone();
            async move {
                let _: u64 = c.incr(layout.generation_key(), 1).await.unwrap();
                Ok::<_, Infallible>("spanning".to_owned())
            }
        })
        .await
        .unwrap();
    assert!(!spans.hit);
    let again = sc
        .get_or_compute(&q2, &["t"], compute("fresh"))
        .await
        .unwrap();
    assert_eq!((again.hit, again.result.as_str()), (false, "fresh"));
    common::cleanup(&mut c, &layout).await;
}

#[tokio::test]
async fn unlinking_an_old_generation_leaves_everything_else() {
    let c = cache("unlink").await;
    let mut conn = c.connection();
    let layout = c.layout().clone();
    for i in 0..300 {
        c.apply(&upsert(&i.to_string(), 1, "{}"), Mode::Refresh)
            .await
            .unwrap();
    }
    let _: () = conn.set(layout.search_key("s", "ab"), "r").await.unwrap();
    let _: () = conn.set(layout.tag_key("t"), 3).await.unwrap();
    let mut at = UnlinkCursor::default();
    let refused = admin::unlink_generation_step(&mut conn, &layout, 0, &mut at, 100).await;
    assert!(
        refused.is_err(),
        "the current generation must not be removed"
    );
    switch(&c).await;
    c.apply(&upsert("new", 1, "{}"), Mode::Refresh)
        .await
        .unwrap();
    // The walk is a SCAN over the whole keyspace, 50 keys per step: bound it by what the
    // server holds (other tests' and tools' keys included), not by this test's keys.
    let keys_in_db: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
    let max_steps = keys_in_db / 50 * 2 + 1_000;
    let mut unlinked = 0;
    let mut steps = 0;
    loop {
        let step = admin::unlink_generation_step(&mut conn, &layout, 0, &mut at, 50)
            .await
            .unwrap();
        unlinked += step.unlinked;
        steps += 1;
        if step.done {
            break;
        }
        assert!(
            steps < max_steps,
            "unlink did not finish in {max_steps} steps ({keys_in_db} keys in the database)"
        );
    }
    assert_eq!(unlinked, 601, "300 values, 300 guards, 1 search result");
    let mut left = all_keys(&mut conn, &layout.scan_pattern()).await;
    left.sort();
    let mut want = vec![
        layout.generation_key(),
        layout.tag_key("t"),
        layout.cache_key_in(1, "product", "new"),
        layout.guard_key_in(1, "product", "new"),
    ];
    want.sort();
    assert_eq!(left, want);
    common::cleanup(&mut conn, &layout).await;
}

/// Every key matching `pattern` (one full SCAN).
async fn all_keys(conn: &mut redis::aio::ConnectionManager, pattern: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap();
        out.extend(keys);
        if next == 0 {
            return out;
        }
        cursor = next;
    }
}
