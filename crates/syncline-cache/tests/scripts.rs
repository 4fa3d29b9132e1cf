//! The Lua scripts against a real Redis: version-guard semantics, TTLs, value format.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use redis::AsyncCommands;
use syncline_cache::{scripts, ApplyOutcome, Cache, Entry, Mode, StoreOutcome, Ttls};
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

fn delete(id: &str, version: i64) -> ChangeEvent {
    ChangeEvent::new("product", id, Op::Delete, version, "test", None)
}

async fn cache(test: &str, ttls: Ttls) -> Cache {
    let conn = common::connect(&common::redis_url()).await;
    Cache::new(conn, common::layout(test), ttls)
}

#[tokio::test]
async fn invalidate_mode_deletes_newer_and_ignores_equal_or_older() {
    let c = cache("inv", Ttls::default()).await;
    let mut conn = c.connection();
    let key = c.layout().cache_key("product", "1");
    let _: () = conn.set(&key, "3\n{\"old\":true}").await.unwrap();

    assert_eq!(
        c.apply(&upsert("1", 5, "{}"), Mode::Invalidate)
            .await
            .unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(c.get("product", "1").await.unwrap(), None);
    assert_eq!(c.guard("product", "1").await.unwrap(), Some(5));

    // Someone re-caches version 5; an equal or older event must not touch it.
    let _: () = conn.set(&key, "5\n{\"v\":5}").await.unwrap();
    for v in [5, 4, 0] {
        assert_eq!(
            c.apply(&upsert("1", v, "{}"), Mode::Invalidate)
                .await
                .unwrap(),
            ApplyOutcome::Stale
        );
        assert_eq!(
            c.apply(&delete("1", v), Mode::Invalidate).await.unwrap(),
            ApplyOutcome::Stale
        );
    }
    assert_eq!(
        c.get("product", "1").await.unwrap().map(|e| e.version),
        Some(5)
    );
    assert_eq!(c.guard("product", "1").await.unwrap(), Some(5));

    // A delete with a newer version invalidates too.
    assert_eq!(
        c.apply(&delete("1", 6), Mode::Invalidate).await.unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(c.get("product", "1").await.unwrap(), None);
    assert_eq!(c.guard("product", "1").await.unwrap(), Some(6));
    common::cleanup(&mut conn, c.layout()).await;
}

#[tokio::test]
async fn refresh_mode_writes_the_documented_format_and_deletes_on_delete() {
    let c = cache("refresh", Ttls::default()).await;
    let mut conn = c.connection();
    let key = c.layout().cache_key("product", "7");

    assert_eq!(
        c.apply(&upsert("7", 2, "{\"n\":2}"), Mode::Refresh)
            .await
            .unwrap(),
        ApplyOutcome::Applied
    );
    let raw: String = conn.get(&key).await.unwrap();
    assert_eq!(raw, "2\n{\"n\":2}");
    assert_eq!(
        c.get("product", "7").await.unwrap(),
        Some(Entry {
            version: 2,
            document: "{\"n\":2}".into()
        })
    );

    assert_eq!(
        c.apply(&upsert("7", 1, "{\"n\":1}"), Mode::Refresh)
            .await
            .unwrap(),
        ApplyOutcome::Stale
    );
    assert_eq!(
        c.apply(&upsert("7", 2, "{\"n\":\"dup\"}"), Mode::Refresh)
            .await
            .unwrap(),
        ApplyOutcome::Stale
    );
    assert_eq!(
        c.get("product", "7").await.unwrap().map(|e| e.document),
        Some("{\"n\":2}".into())
    );

    assert_eq!(
        c.apply(&upsert("7", 3, "{\"n\":3}"), Mode::Refresh)
            .await
            .unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(
        c.get("product", "7").await.unwrap().map(|e| e.version),
        Some(3)
    );

    assert_eq!(
        c.apply(&delete("7", 4), Mode::Refresh).await.unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(c.get("product", "7").await.unwrap(), None);
    assert_eq!(c.guard("product", "7").await.unwrap(), Some(4));
    // An older upsert after the delete does not resurrect the entity.
    assert_eq!(
        c.apply(&upsert("7", 3, "{\"n\":3}"), Mode::Refresh)
            .await
            .unwrap(),
        ApplyOutcome::Stale
    );
    assert_eq!(c.get("product", "7").await.unwrap(), None);
    common::cleanup(&mut conn, c.layout()).await;
}

#[tokio::test]
async fn ttls_are_set_on_value_and_guard() {
    let ttls = Ttls::new(Duration::from_secs(600), Duration::from_secs(86_400)).unwrap();
    let c = cache("ttl", ttls).await;
    let mut conn = c.connection();
    c.apply(&upsert("1", 1, "{}"), Mode::Refresh).await.unwrap();
    let value_ttl: i64 = conn
        .pttl(c.layout().cache_key("product", "1"))
        .await
        .unwrap();
    let guard_ttl: i64 = conn
        .pttl(c.layout().guard_key("product", "1"))
        .await
        .unwrap();
    assert!(
        value_ttl > 0 && value_ttl <= 600_000,
        "value pttl {value_ttl}"
    );
    assert!(
        guard_ttl > 600_000 && guard_ttl <= 86_400_000,
        "guard pttl {guard_ttl}"
    );

    // Invalidate mode: no value, guard with its TTL.
    c.apply(&upsert("2", 1, "{}"), Mode::Invalidate)
        .await
        .unwrap();
    let guard_ttl: i64 = conn
        .pttl(c.layout().guard_key("product", "2"))
        .await
        .unwrap();
    assert!(
        guard_ttl > 600_000 && guard_ttl <= 86_400_000,
        "guard pttl {guard_ttl}"
    );

    // Cache-aside stores use the same TTLs.
    c.store(
        "product",
        "3",
        &Entry {
            version: 1,
            document: "{}".into(),
        },
    )
    .await
    .unwrap();
    let value_ttl: i64 = conn
        .pttl(c.layout().cache_key("product", "3"))
        .await
        .unwrap();
    let guard_ttl: i64 = conn
        .pttl(c.layout().guard_key("product", "3"))
        .await
        .unwrap();
    assert!(
        value_ttl > 0 && value_ttl <= 600_000,
        "value pttl {value_ttl}"
    );
    assert!(guard_ttl > 600_000, "guard pttl {guard_ttl}");
    common::cleanup(&mut conn, c.layout()).await;
}

#[tokio::test]
async fn versions_beyond_double_precision_compare_exactly() {
    let c = cache("bigver", Ttls::default()).await;
    let mut conn = c.connection();
    let base: i64 = 9_007_199_254_740_992; // 2^53: base and base+1 are the same double.
    assert_eq!(
        c.apply(&upsert("b", base, "{}"), Mode::Refresh)
            .await
            .unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(
        c.apply(&upsert("b", base + 1, "{\"x\":1}"), Mode::Refresh)
            .await
            .unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(
        c.apply(&upsert("b", base, "{}"), Mode::Refresh)
            .await
            .unwrap(),
        ApplyOutcome::Stale
    );
    assert_eq!(c.guard("product", "b").await.unwrap(), Some(base + 1));
    assert_eq!(
        c.apply(&upsert("b", i64::MAX, "{}"), Mode::Refresh)
            .await
            .unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(
        c.apply(&upsert("b", 99, "{}"), Mode::Refresh)
            .await
            .unwrap(),
        ApplyOutcome::Stale
    );
    // Shorter decimal strings are smaller even when lexicographically larger ("9" > "10").
    assert_eq!(
        c.apply(&upsert("c", 10, "{}"), Mode::Invalidate)
            .await
            .unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(
        c.apply(&upsert("c", 9, "{}"), Mode::Invalidate)
            .await
            .unwrap(),
        ApplyOutcome::Stale
    );
    assert_eq!(
        c.apply(&upsert("c", 100, "{}"), Mode::Invalidate)
            .await
            .unwrap(),
        ApplyOutcome::Applied
    );
    common::cleanup(&mut conn, c.layout()).await;
}

#[tokio::test]
async fn a_value_whose_guard_vanished_still_guards_itself() {
    let c = cache("evicted", Ttls::default()).await;
    let mut conn = c.connection();
    c.apply(&upsert("e", 8, "{\"v\":8}"), Mode::Refresh)
        .await
        .unwrap();
    // Simulate eviction of the guard alone.
    let _: () = conn
        .del(c.layout().guard_key("product", "e"))
        .await
        .unwrap();
    assert_eq!(
        c.apply(&upsert("e", 7, "{\"v\":7}"), Mode::Refresh)
            .await
            .unwrap(),
        ApplyOutcome::Stale
    );
    let refused = c
        .store(
            "product",
            "e",
            &Entry {
                version: 6,
                document: "{}".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(refused, StoreOutcome::Refused);
    assert_eq!(
        c.get("product", "e").await.unwrap().map(|e| e.version),
        Some(8)
    );
    common::cleanup(&mut conn, c.layout()).await;
}

#[tokio::test]
async fn slow_reader_cannot_put_an_older_version_back() {
    let c = cache("slowreader", Ttls::default()).await;
    let mut conn = c.connection();
    let n = 41;
    // A reader misses and loads version N from the database ...
    assert_eq!(c.get("product", "r").await.unwrap(), None);
    let loaded = Entry {
        version: n,
        document: "{\"v\":41}".into(),
    };
    // ... meanwhile the source commits N+1 and its event is applied ...
    assert_eq!(
        c.apply(&upsert("r", n + 1, "{\"v\":42}"), Mode::Invalidate)
            .await
            .unwrap(),
        ApplyOutcome::Applied
    );
    // ... so the slow reader's store of N is refused.
    assert_eq!(
        c.store("product", "r", &loaded).await.unwrap(),
        StoreOutcome::Refused
    );
    assert_eq!(c.get("product", "r").await.unwrap(), None);
    // A reader that loads N+1 after the event may store it.
    let fresh = Entry {
        version: n + 1,
        document: "{\"v\":42}".into(),
    };
    assert_eq!(
        c.store("product", "r", &fresh).await.unwrap(),
        StoreOutcome::Stored
    );
    assert_eq!(c.get("product", "r").await.unwrap(), Some(fresh));

    // The same race through get_or_load.
    let res = c
        .get_or_load("product", "s", || async {
            // The event lands while the loader runs.
            c.apply(&upsert("s", 10, "{}"), Mode::Invalidate)
                .await
                .map(|_| ())?;
            Ok::<_, syncline_cache::CacheError>(Some(Entry {
                version: 9,
                document: "{\"v\":9}".into(),
            }))
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.origin, syncline_cache::Origin::Refused);
    assert_eq!(c.get("product", "s").await.unwrap(), None);
    common::cleanup(&mut conn, c.layout()).await;
}

#[tokio::test]
async fn get_or_load_stores_then_hits() {
    let c = cache("getorload", Ttls::default()).await;
    let mut conn = c.connection();
    let loader = || async {
        Ok::<_, std::io::Error>(Some(Entry {
            version: 3,
            document: "{\"a\":1}".into(),
        }))
    };
    let first = c
        .get_or_load("product", "g", loader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.origin, syncline_cache::Origin::Stored);
    let second = c
        .get_or_load("product", "g", || async {
            Err::<Option<Entry>, _>(std::io::Error::other("must not be called"))
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.origin, syncline_cache::Origin::Hit);
    assert_eq!(second.entry, first.entry);
    // A missing entity is not cached.
    let none = c
        .get_or_load("product", "missing", || async {
            Ok::<_, std::io::Error>(None)
        })
        .await
        .unwrap();
    assert!(none.is_none());
    let exists: bool = conn
        .exists(c.layout().cache_key("product", "missing"))
        .await
        .unwrap();
    assert!(!exists);
    // Loader errors surface as such.
    let err = c
        .get_or_load("product", "x", || async {
            Err::<Option<Entry>, _>(std::io::Error::other("db down"))
        })
        .await;
    assert!(matches!(err, Err(syncline_cache::LoadError::Loader(_))));
    common::cleanup(&mut conn, c.layout()).await;
}

#[tokio::test]
async fn malformed_values_are_reported_not_served() {
    let c = cache("malformed", Ttls::default()).await;
    let mut conn = c.connection();
    let _: () = conn
        .set(c.layout().cache_key("product", "m"), "garbage")
        .await
        .unwrap();
    assert!(matches!(
        c.get("product", "m").await,
        Err(syncline_cache::CacheError::Malformed { .. })
    ));
    // Scripts treat an unparsable value as carrying no version.
    assert_eq!(
        c.apply(&upsert("m", 0, "{}"), Mode::Refresh).await.unwrap(),
        ApplyOutcome::Applied
    );
    assert_eq!(
        c.get("product", "m").await.unwrap().map(|e| e.version),
        Some(0)
    );
    // The scripts refuse a non-canonical version outright.
    let mut bad = redis::cmd("EVALSHA");
    bad.arg(scripts::store_script().get_hash())
        .arg(2)
        .arg(c.layout().cache_key("product", "m"))
        .arg(c.layout().guard_key("product", "m"))
        .arg("01")
        .arg(1000)
        .arg(1000)
        .arg("{}");
    let r = scripts::invoke(&mut conn, scripts::store_script(), &bad).await;
    assert!(r.is_err(), "{r:?}");
    common::cleanup(&mut conn, c.layout()).await;
}

#[tokio::test]
async fn scripts_reload_after_the_script_cache_is_flushed() {
    // SCRIPT FLUSH on a private server: the shared one is left alone.
    let own = common::OwnRedis::start();
    let conn = common::connect(&own.url()).await;
    let c = Cache::new(conn, common::layout("noscript"), Ttls::default());
    let mut conn = c.connection();
    assert_eq!(
        c.apply(&upsert("n", 1, "{}"), Mode::Refresh).await.unwrap(),
        ApplyOutcome::Applied
    );
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        c.apply(&upsert("n", 2, "{}"), Mode::Refresh).await.unwrap(),
        ApplyOutcome::Applied
    );
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let stored = c
        .store(
            "product",
            "n",
            &Entry {
                version: 2,
                document: "{}".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(stored, StoreOutcome::Stored);
}

#[tokio::test]
async fn one_apply_call_checks_every_event_on_its_own() {
    let c = cache("many", Ttls::default()).await;
    let mut conn = c.connection();
    let layout = c.layout().clone();
    c.apply(&upsert("b", 10, "{}"), Mode::Invalidate)
        .await
        .unwrap();
    let events = [
        upsert("a", 3, "{\"a\":3}"),
        upsert("b", 9, "{\"b\":9}"), // older than b's guard: stale
        upsert("a", 2, "{\"a\":2}"), // same key again, older than the first: stale
        upsert("c", 1, "{\"c\":1}"),
        delete("b", 11),
        upsert("a", 4, "{\"a\":4}"), // same key again, newer: applied
    ];
    let mut call = scripts::ApplyCall::new(&layout, 0, Mode::Refresh, c.ttls(), None);
    for e in &events {
        call.push(e.view(), None).unwrap();
    }
    let reply: redis::Value = scripts::invoke(&mut conn, scripts::apply_script(), &call.cmd())
        .await
        .unwrap();
    use ApplyOutcome::{Applied, Stale};
    assert_eq!(
        call.outcomes(&reply).unwrap(),
        vec![Applied, Stale, Stale, Applied, Applied, Applied]
    );
    let doc = |id: &'static str| {
        let c = &c;
        async move { c.get("product", id).await.unwrap().map(|e| e.document) }
    };
    assert_eq!(doc("a").await.as_deref(), Some("{\"a\":4}"));
    assert_eq!(doc("b").await, None);
    assert_eq!(doc("c").await.as_deref(), Some("{\"c\":1}"));
    for (id, v) in [("a", 4), ("b", 11), ("c", 1)] {
        assert_eq!(
            c.guard("product", id).await.unwrap(),
            Some(v),
            "guard of {id}"
        );
    }
    common::cleanup(&mut conn, c.layout()).await;
}

#[tokio::test]
async fn an_apply_call_with_a_bad_version_changes_nothing() {
    let c = cache("badver", Ttls::default()).await;
    let mut conn = c.connection();
    let layout = c.layout();
    scripts::apply_script().load_async(&mut conn).await.unwrap();
    // A hand-built call (the builder refuses negative versions): the second event's
    // version is not a canonical decimal, so the first must not be applied either.
    let reply: redis::RedisResult<redis::Value> = redis::cmd("EVALSHA")
        .arg(scripts::apply_script().get_hash())
        .arg(5)
        .arg(layout.generation_key())
        .arg(layout.cache_key("product", "x"))
        .arg(layout.guard_key("product", "x"))
        .arg(layout.cache_key("product", "y"))
        .arg(layout.guard_key("product", "y"))
        .arg(60_000)
        .arg(120_000)
        .arg("")
        .arg(0)
        .arg(&["5", "del", "", ""][..])
        .arg(&["007", "del", "", ""][..])
        .query_async(&mut conn)
        .await;
    let err = reply.unwrap_err();
    assert!(err.to_string().contains("canonical decimal"), "{err}");
    assert_eq!(c.guard("product", "x").await.unwrap(), None);
    common::cleanup(&mut conn, c.layout()).await;
}
