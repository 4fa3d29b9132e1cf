//! The pipeline's real binaries, as the repo-level tests start them: the commands for
//! `syncline-es-indexer`, `syncline-redis-invalidator` and `syncline-outbox` against one
//! topic, each with its own metrics port. Callers add where output goes and spawn them.

#![allow(dead_code)] // each test binary uses a part of it

use std::path::PathBuf;
use std::process::{Command, Stdio};

use syncline_cache::Mode;
use syncline_testkit::{consumer_kafka_env, debug_binary};

/// Where the pipeline reads and writes.
pub struct Pipeline {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// The change-event topic.
    pub topic: String,
    /// Unique name stem: consumer groups `<base>-es` / `<base>-redis`, index prefix
    /// `<base>-`, Redis key prefix `<base>:`.
    pub base: String,
}

impl Pipeline {
    /// The indexer's consumer group.
    pub fn es_group(&self) -> String {
        format!("{}-es", self.base)
    }

    /// The invalidator's consumer group.
    pub fn redis_group(&self) -> String {
        format!("{}-redis", self.base)
    }

    /// The Elasticsearch index prefix (the alias of type `t` is `<prefix>t`).
    pub fn index_prefix(&self) -> String {
        format!("{}-", self.base)
    }

    /// The Redis key prefix.
    pub fn key_prefix(&self) -> String {
        format!("{}:", self.base)
    }

    /// `syncline-es-indexer` writing to `es_url`, metrics on `metrics_port`.
    pub fn indexer(&self, es_url: &str, metrics_port: u16) -> Command {
        let mut c = Command::new(binary("syncline-es-indexer", "SYNCLINE_ES_INDEXER_BIN"));
        c.args(["--brokers", &self.brokers, "--topic", &self.topic])
            .args(["--group", &self.es_group()])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args([
                "--es-url",
                es_url,
                "--es-index-prefix",
                &self.index_prefix(),
            ])
            .env("SYNCLINE_KAFKA", consumer_kafka_env(""));
        quiet(&mut c);
        c
    }

    /// `syncline-redis-invalidator` in `mode` against `redis_url`, metrics on
    /// `metrics_port`.
    pub fn invalidator(&self, redis_url: &str, mode: Mode, metrics_port: u16) -> Command {
        let mut c = Command::new(binary(
            "syncline-redis-invalidator",
            "SYNCLINE_REDIS_INVALIDATOR_BIN",
        ));
        c.env("SYNCLINE_BROKERS", &self.brokers)
            .env("SYNCLINE_TOPIC", &self.topic)
            .env("SYNCLINE_GROUP_ID", self.redis_group())
            .env("SYNCLINE_KAFKA", consumer_kafka_env(""))
            .env("SYNCLINE_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
            .env("SYNCLINE_REDIS_URL", redis_url)
            .env("SYNCLINE_REDIS_KEY_PREFIX", self.key_prefix())
            .env("SYNCLINE_REDIS_MODE", mode.as_str());
        quiet(&mut c);
        c
    }

    /// `syncline-outbox` relaying the outbox of `database_url`, metrics on
    /// `metrics_port`.
    pub fn relay(&self, database_url: &str, metrics_port: u16) -> Command {
        let mut c = Command::new(relay_binary());
        c.env("SYNCLINE_DATABASE_URL", database_url)
            .env("SYNCLINE_BROKERS", &self.brokers)
            .env("SYNCLINE_TOPIC", &self.topic)
            .env("SYNCLINE_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
            // Consumer properties: not for the relay's producer.
            .env_remove("SYNCLINE_KAFKA");
        quiet(&mut c);
        c
    }
}

/// The outbox schema in `database_url`, by the relay binary's own `migrate`, as an
/// operator would apply it.
pub fn migrate_outbox(database_url: &str) {
    let out = Command::new(relay_binary())
        .arg("migrate")
        .env("SYNCLINE_DATABASE_URL", database_url)
        .output()
        .expect("run syncline-outbox migrate");
    assert!(
        out.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn relay_binary() -> PathBuf {
    binary("syncline-outbox", "SYNCLINE_OUTBOX_BIN")
}

/// A package's binary of the same name, built if needed (`override_env` points at
/// another build).
fn binary(package: &str, override_env: &str) -> PathBuf {
    debug_binary(package, package, Some(override_env))
        .unwrap_or_else(|e| panic!("the {package} binary: {e}"))
}

/// Warnings only, no input.
fn quiet(c: &mut Command) {
    c.env("RUST_LOG", "warn").stdin(Stdio::null());
}
