//! Search-result caching against a real Redis: tag bumps retire exactly their results.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use redis::AsyncCommands;
use serde_json::json;
use syncline_cache::SearchCache;

#[tokio::test]
async fn bumping_a_tag_retires_its_results_and_no_others() {
    let conn = common::connect(&common::redis_url()).await;
    let layout = common::layout("search");
    let cache = SearchCache::new(
        conn.clone(),
        layout.clone(),
        "products",
        Duration::from_secs(60),
    )
    .expect("valid search cache");
    let mut conn = conn;

    let shoes = json!({"q": "shoe", "filter": {"category": 7}});
    let hats = json!({"q": "hat", "filter": {"category": 8}});
    let compute =
        |text: &'static str| move || async move { Ok::<_, std::io::Error>(text.to_owned()) };

    let a = cache
        .get_or_compute(&shoes, &["category:7"], compute("shoes v1"))
        .await
        .unwrap();
    let b = cache
        .get_or_compute(&hats, &["category:8"], compute("hats v1"))
        .await
        .unwrap();
    assert!(!a.hit && !b.hit);
    // Same query with another key order and formatting: a hit.
    let shoes_again = json!({"filter": {"category": 7}, "q": "shoe"});
    let a2 = cache
        .get_or_compute(&shoes_again, &["category:7"], compute("unused"))
        .await
        .unwrap();
    assert!(a2.hit);
    assert_eq!(a2.result, "shoes v1");

    let gens = cache.bump_tags(&["category:7"]).await.unwrap();
    assert_eq!(gens, vec![1]);

    let a3 = cache
        .get_or_compute(&shoes, &["category:7"], compute("shoes v2"))
        .await
        .unwrap();
    assert!(!a3.hit, "bumped tag must retire the cached result");
    assert_eq!(a3.result, "shoes v2");
    assert_ne!(a3.key, a.key);
    let b2 = cache
        .get_or_compute(&hats, &["category:8"], compute("unused"))
        .await
        .unwrap();
    assert!(b2.hit, "other tags keep their results");
    assert_eq!(b2.result, "hats v1");

    // A result with several tags is retired by bumping any one of them.
    let both = json!({"q": "all"});
    let tags = ["category:7", "category:8"];
    let c1 = cache
        .get_or_compute(&both, &tags, compute("all v1"))
        .await
        .unwrap();
    assert!(!c1.hit);
    assert!(
        cache
            .get_or_compute(&both, &["category:8", "category:7"], compute("x"))
            .await
            .unwrap()
            .hit
    );
    cache.bump_tags(&["category:8"]).await.unwrap();
    assert!(
        !cache
            .get_or_compute(&both, &tags, compute("all v2"))
            .await
            .unwrap()
            .hit
    );

    // Results carry the TTL; generations do not expire.
    let ttl: i64 = conn.pttl(&a3.key).await.unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "pttl {ttl}");
    let gen_ttl: i64 = conn.pttl(layout.tag_key("category:7")).await.unwrap();
    assert_eq!(gen_ttl, -1);
    common::cleanup(&mut conn, &layout).await;
}

#[tokio::test]
async fn invalid_namespace_or_ttl_is_refused() {
    let conn = common::connect(&common::redis_url()).await;
    let layout = common::layout("searchcfg");
    assert!(SearchCache::new(
        conn.clone(),
        layout.clone(),
        "bad name",
        Duration::from_secs(1)
    )
    .is_err());
    assert!(SearchCache::new(conn, layout, "ok", Duration::ZERO).is_err());
}
