//! Shared helpers for the cache tests: the shared Redis, unique prefixes, clean-up, and a
//! private `redis-server` for tests that must not disturb the shared one.
#![allow(dead_code)]

use redis::aio::ConnectionManager;
use syncline_cache::KeyLayout;

#[allow(unused_imports)]
pub use syncline_testkit::redis_url;

/// A key prefix no other test run uses.
pub fn unique_prefix(test: &str) -> String {
    format!("t:{}:", syncline_testkit::unique_name(test))
}

pub async fn connect(url: &str) -> ConnectionManager {
    let client = redis::Client::open(url).expect("valid redis url");
    ConnectionManager::new(client)
        .await
        .expect("redis reachable")
}

pub fn layout(test: &str) -> KeyLayout {
    KeyLayout::new(unique_prefix(test)).expect("valid prefix")
}

/// Delete every key under the layout's prefix.
pub async fn cleanup(conn: &mut ConnectionManager, layout: &KeyLayout) {
    syncline_cache::admin::purge_prefix(conn, layout)
        .await
        .expect("purge test keys");
}

#[allow(unused_imports)]
pub use syncline_testkit::RedisServer as OwnRedis;
