//! Support shared by the invalidator's tests: a private `redis-server` that can be stopped
//! and restarted, spawning the binary, waiting for a drained group, and comparing Redis
//! with a workload's oracle.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use redis::aio::ConnectionManager;
use syncline_cache::{KeyLayout, Mode};
use syncline_event::ChangeEvent;
use syncline_testkit::{
    committed_offsets, end_offsets, unique_name, wait_until, ChildGuard, Expected, Oracle,
};

pub const DEADLINE: Duration = Duration::from_secs(120);

#[allow(unused_imports)]
pub use syncline_testkit::free_port;

pub async fn connect(url: &str) -> ConnectionManager {
    let client = redis::Client::open(url).expect("valid redis url");
    ConnectionManager::new(client)
        .await
        .expect("redis reachable")
}

#[allow(unused_imports)]
pub use syncline_testkit::RedisServer as OwnRedis;

/// One test's names: topic, group, key prefix, and where Redis and Kafka are.
pub struct Setup {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    pub layout: KeyLayout,
    pub redis_url: String,
}

/// A running invalidator binary with its metrics address.
pub struct Invalidator {
    pub child: ChildGuard,
    pub metrics_port: u16,
}

impl Invalidator {
    /// The `/metrics` text ("" when unreachable).
    pub fn metrics(&self) -> String {
        Self::metrics_of(self.metrics_port)
    }

    /// The `/metrics` text served on `port` ("" when unreachable).
    pub fn metrics_of(port: u16) -> String {
        http_get(port, "/metrics").unwrap_or_default()
    }

    /// A counter or gauge value from `/metrics` (0 when absent).
    pub fn metric(&self, name: &str) -> f64 {
        syncline_testkit::metric_sum(&self.metrics(), name)
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

impl Setup {
    pub fn new(name: &str, redis_url: &str) -> Setup {
        Setup {
            brokers: syncline_testkit::kafka_brokers(),
            topic: unique_name(&format!("redis-{name}")),
            group: unique_name(&format!("redis-{name}-group")),
            layout: KeyLayout::new(format!("{}:", unique_name(&format!("t-{name}"))))
                .expect("prefix"),
            redis_url: redis_url.to_owned(),
        }
    }

    /// The same topic with another group and prefix (a second, independent invalidator).
    pub fn sibling(&self, name: &str) -> Setup {
        Setup {
            brokers: self.brokers.clone(),
            topic: self.topic.clone(),
            group: unique_name(&format!("redis-{name}-group")),
            layout: KeyLayout::new(format!("{}:", unique_name(&format!("t-{name}"))))
                .expect("prefix"),
            redis_url: self.redis_url.clone(),
        }
    }

    /// Spawn the binary against this setup in `mode`, with extra flags.
    pub fn spawn(&self, mode: Mode, extra: &[&str]) -> Invalidator {
        let metrics_port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncline-redis-invalidator"));
        cmd.env("SYNCLINE_BROKERS", &self.brokers)
            .env("SYNCLINE_TOPIC", &self.topic)
            .env("SYNCLINE_GROUP_ID", &self.group)
            .env("SYNCLINE_KAFKA", syncline_testkit::consumer_kafka_env(""))
            .env("SYNCLINE_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
            .env("SYNCLINE_RETRY_MAX_BACKOFF", "2s")
            .env("SYNCLINE_REDIS_URL", &self.redis_url)
            .env("SYNCLINE_REDIS_KEY_PREFIX", self.layout.prefix())
            .env("SYNCLINE_REDIS_MODE", mode.as_str())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .args(extra)
            .stdout(Stdio::null());
        Invalidator {
            child: ChildGuard::spawn(&mut cmd).expect("spawn invalidator"),
            metrics_port,
        }
    }

    /// Committed offsets of the group, per partition.
    pub async fn committed(&self) -> Vec<Option<i64>> {
        committed_offsets(&self.brokers, &self.group, &self.topic)
            .await
            .expect("committed offsets")
    }

    /// Wait until the group's committed offsets equal the end offsets.
    pub async fn wait_drained(&self, timeout: Duration) {
        wait_until(timeout, Duration::from_millis(500), || async {
            let end = end_offsets(&self.brokers, &self.topic)
                .await
                .map_err(|e| e.to_string())?;
            let committed = committed_offsets(&self.brokers, &self.group, &self.topic)
                .await
                .map_err(|e| e.to_string())?;
            let done = end
                .iter()
                .zip(&committed)
                .all(|(e, c)| *e == 0 || *c == Some(*e));
            if done && end.len() == committed.len() {
                Ok(())
            } else {
                Err(format!("end {end:?}, committed {committed:?}"))
            }
        })
        .await
        .expect("group drained");
    }
}

/// The expected state after `events`: per key, the highest version and its document.
pub fn oracle_of(events: &[ChangeEvent]) -> Oracle {
    let mut o: Oracle = BTreeMap::new();
    for e in events {
        let key = (e.entity_type.clone(), e.entity_id.clone());
        let newer = o.get(&key).is_none_or(|x| e.version > x.version);
        if newer {
            o.insert(
                key,
                Expected {
                    version: e.version,
                    document: e.document.clone(),
                },
            );
        }
    }
    o
}

/// Compare Redis under `layout` with the oracle: every guard equals the oracle's version;
/// in `refresh` mode every value is `<version>\n<document>` (deleted keys absent), in
/// `invalidate` mode no value exists (nobody read through the cache).
pub async fn check_oracle(
    conn: &mut ConnectionManager,
    layout: &KeyLayout,
    oracle: &Oracle,
    mode: Mode,
) -> Result<(), String> {
    let entries: Vec<(&(String, String), &Expected)> = oracle.iter().collect();
    let mut problems = Vec::new();
    for chunk in entries.chunks(500) {
        let mut pipe = redis::pipe();
        for ((t, id), _) in chunk {
            pipe.get(layout.guard_key(t, id))
                .get(layout.cache_key(t, id));
        }
        let replies: Vec<Option<String>> =
            pipe.query_async(conn).await.map_err(|e| e.to_string())?;
        for (i, ((t, id), expected)) in chunk.iter().enumerate() {
            let guard = &replies[2 * i];
            let value = &replies[2 * i + 1];
            if guard.as_deref() != Some(expected.version.to_string().as_str()) {
                problems.push(format!(
                    "{t}:{id}: guard {guard:?}, expected {}",
                    expected.version
                ));
            }
            let want = match (mode, &expected.document) {
                (Mode::Refresh, Some(doc)) => Some(format!("{}\n{doc}", expected.version)),
                _ => None,
            };
            if *value != want {
                let shown = value
                    .as_ref()
                    .map(|v| v.chars().take(60).collect::<String>());
                problems.push(format!(
                    "{t}:{id}: value {shown:?}, expected v{} {}",
                    expected.version,
                    if want.is_some() { "present" } else { "absent" }
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        let n = problems.len();
        problems.truncate(10);
        Err(format!("{n} differences, first: {problems:#?}"))
    }
}

/// Poll `check_oracle` until it agrees (the group's commit can precede nothing: commits
/// follow the writes, so this normally succeeds at once).
pub async fn assert_converged(
    conn: &mut ConnectionManager,
    layout: &KeyLayout,
    oracle: &Oracle,
    mode: Mode,
) {
    if let Err(e) = check_oracle(conn, layout, oracle, mode).await {
        panic!("redis differs from the oracle: {e}");
    }
}

pub async fn cleanup(conn: &mut ConnectionManager, layout: &KeyLayout) {
    let _ = syncline_cache::admin::purge_prefix(conn, layout).await;
}
