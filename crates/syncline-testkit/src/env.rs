//! Where the test infrastructure is, from the same variables `scripts/stack` exports.

use std::sync::atomic::{AtomicU64, Ordering};

/// Kafka bootstrap servers: `KAFKA_BROKERS`, default `127.0.0.1:9092`.
pub fn kafka_brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// Redis URL: `REDIS_URL`, default `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A real Elasticsearch to test against instead of the in-process dev server: `ES_URL`.
pub fn es_url() -> Option<String> {
    std::env::var("ES_URL").ok().filter(|s| !s.is_empty())
}

/// A name no other test, process or earlier run uses: `<prefix>-<pid>-<micros>-<n>`,
/// lowercase, valid as a topic, group, index or key prefix.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    format!(
        "{}-{}-{}-{}",
        prefix.to_ascii_lowercase(),
        std::process::id(),
        micros % 1_000_000_000_000,
        n
    )
}

/// A loopback port nothing listens on right now (for servers a test starts itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// librdkafka properties for a consumer that a test or bench runs, in order (later wins):
/// the group timeouts Tansu needs to form groups quickly (docs/decisions.md), then whatever
/// the caller's `SYNCLINE_KAFKA` holds (one `key=value` per line, the format every binary
/// reads; `scripts/stack` puts the Tansu settings there), then `extra` (same format).
/// Malformed lines are skipped.
pub fn consumer_kafka_props(extra: &str) -> Vec<(String, String)> {
    let inherited = std::env::var(syncline_kafka::KAFKA_ENV).unwrap_or_default();
    let mut props: Vec<(String, String)> = [
        ("session.timeout.ms", "6000"),
        ("max.poll.interval.ms", "10000"),
        ("heartbeat.interval.ms", "1000"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for line in inherited.lines().chain(extra.lines()) {
        if let Ok((k, v)) = syncline_kafka::parse_property("kafka", line.trim()) {
            props.retain(|(have, _)| *have != k);
            props.push((k, v));
        }
    }
    props
}

/// [`consumer_kafka_props`] as a `SYNCLINE_KAFKA` value (one property per line) for a
/// spawned binary.
pub fn consumer_kafka_env(extra: &str) -> String {
    consumer_kafka_props(extra)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n")
}
