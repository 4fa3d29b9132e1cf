//! Shared helpers for the cache tests: the shared Redis, unique prefixes, clean-up, and a
//! private `redis-server` for tests that must not disturb the shared one.
#![allow(dead_code)]

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use redis::aio::ConnectionManager;
use syncline_cache::KeyLayout;

/// The shared Redis (env `REDIS_URL`, default `redis://127.0.0.1:6379`).
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test run uses.
pub fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "t:{test}:{}:{nanos:x}:{:x}:",
        std::process::id(),
        rand::random::<u32>()
    )
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

/// A private `redis-server` on a free loopback port; killed on drop.
pub struct OwnRedis {
    pub port: u16,
    child: Child,
}

impl OwnRedis {
    pub fn start() -> OwnRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server installed");
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        OwnRedis { port, child }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
