//! The runtime's settings: defaults, (de)serialization and validation.
//!
//! Every setting has a default here; `cli::load` layers the TOML file's `[consumer]` table
//! and then env vars / flags over it ([`syncline_app::Layers`]) and calls
//! [`RuntimeConfig::validate`], so a bad value is reported once, at start, naming the
//! setting ([`ConfigError`], shared by every binary).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use syncline_kafka::KafkaProperties;

/// Settings that, if overridden through the `kafka` map, would break the commit protocol.
const PROTECTED_KAFKA_KEYS: &[&str] = &[
    "enable.auto.commit",
    "enable.auto.offset.store",
    "group.id",
    "bootstrap.servers",
];

pub use syncline_app::{ConfigError, LogFormat};

/// Everything the runtime needs to know. Deserialized from the `[consumer]` table of the
/// TOML file (unknown keys are rejected); durations are humantime strings (`"50ms"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Kafka bootstrap servers, comma separated (`bootstrap.servers`).
    pub brokers: String,
    /// The change-event topic to consume.
    pub topic: String,
    /// Consumer group id. Each sink binary supplies its own default
    /// (`syncline-es-indexer`, `syncline-redis-invalidator`).
    pub group_id: String,
    /// Dead-letter topic; `None` means `<topic>.dlq` (see [`RuntimeConfig::dlq_topic`]).
    pub dlq_topic: Option<String>,
    /// A batch is handed to the sink when it holds this many records...
    pub batch_max_events: usize,
    /// ...or this many payload bytes...
    pub batch_max_bytes: usize,
    /// ...or when its first record has waited this long (a batch goes sooner when no
    /// batch is in flight and every fetched record has been read).
    #[serde(with = "humantime_serde")]
    pub batch_linger: Duration,
    /// Batches being applied (or retried) at the same time; further fetching waits.
    pub max_in_flight_batches: usize,
    /// First retry delay; doubles per attempt (full jitter).
    #[serde(with = "humantime_serde")]
    pub retry_initial_backoff: Duration,
    /// Upper bound of the retry delay.
    #[serde(with = "humantime_serde")]
    pub retry_max_backoff: Duration,
    /// Give up after this many attempts and dead-letter the event (class
    /// `retries_exhausted`); `None` retries forever.
    pub retry_max_attempts: Option<u32>,
    /// Events per second handed to the sink; `None` is unlimited. A batch then holds at
    /// most one second's worth (see [`RuntimeConfig::batch_event_limit`]).
    pub events_per_second: Option<u32>,
    /// `Sink::apply` calls per second; `None` is unlimited.
    pub requests_per_second: Option<u32>,
    /// On shutdown, how long in-flight batches may take before they are abandoned
    /// (uncommitted, so redelivered to the next owner).
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// How often completed offsets are committed besides after each batch.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Address of `/metrics`, `/healthz`, `/readyz`; `None` (`"off"` in files and flags)
    /// disables the server. Port 0 picks a free port.
    #[serde(with = "metrics_addr_serde")]
    pub metrics_addr: Option<SocketAddr>,
    /// `/readyz` fails while some batch has been retrying for longer than this.
    #[serde(with = "humantime_serde")]
    pub unready_after_retrying: Duration,
    /// `/readyz` fails (and an error is logged at most once a minute) once this many
    /// records in a row were dead-lettered with none applied in between; 0 turns it off.
    pub unready_after_dead_letters: u64,
    /// Largest accepted document in bytes; larger ones are dead-lettered.
    pub max_document_bytes: usize,
    /// Extra librdkafka properties for the consumer and the DLQ producer, applied last
    /// (e.g. `security.protocol`, `sasl.*`, `session.timeout.ms`). Secrets in it are
    /// redacted by `Debug`.
    pub kafka: KafkaProperties,
    /// librdkafka properties for the dead-letter producer only, applied after `kafka`:
    /// e.g. a dead-letter topic on another cluster (`bootstrap.servers`), its own
    /// credentials, or `message.max.bytes`. TOML only (`[consumer.dlq_kafka]`).
    pub dlq_kafka: KafkaProperties,
    /// Log format of [`syncline_app::init_tracing`].
    pub log_format: LogFormat,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "changes".into(),
            group_id: String::new(),
            dlq_topic: None,
            batch_max_events: 1000,
            batch_max_bytes: 5 * 1024 * 1024,
            batch_linger: Duration::from_millis(50),
            max_in_flight_batches: 4,
            retry_initial_backoff: Duration::from_millis(100),
            retry_max_backoff: Duration::from_secs(30),
            retry_max_attempts: None,
            events_per_second: None,
            requests_per_second: None,
            shutdown_timeout: Duration::from_secs(30),
            commit_interval: Duration::from_secs(1),
            metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            unready_after_retrying: Duration::from_secs(60),
            unready_after_dead_letters: crate::health::DEFAULT_DEAD_LETTER_ALARM,
            max_document_bytes: 1024 * 1024,
            kafka: KafkaProperties::default(),
            dlq_kafka: KafkaProperties::default(),
            log_format: LogFormat::Text,
        }
    }
}

/// For `--check-config`: the librdkafka properties' secrets ([`syncline_kafka::is_secret`])
/// are the only secrets of the `[consumer]` table.
impl syncline_app::Redact for RuntimeConfig {
    fn redacted(&self) -> Self {
        RuntimeConfig {
            kafka: KafkaProperties(self.kafka.redacted()),
            dlq_kafka: KafkaProperties(self.dlq_kafka.redacted()),
            ..self.clone()
        }
    }
}

impl RuntimeConfig {
    /// The dead-letter topic: the configured one or `<topic>.dlq`.
    pub fn dlq_topic(&self) -> String {
        match &self.dlq_topic {
            Some(t) => t.clone(),
            None => format!("{}.dlq", self.topic),
        }
    }

    /// The most records one batch holds: `batch_max_events`, and under an
    /// `events_per_second` limit never more than one second's worth. A bigger batch would
    /// wait for all its permits and then reach the store at once, a burst of several
    /// seconds' worth, and its offsets would commit in one jump at the end instead of
    /// about once a second.
    pub fn batch_event_limit(&self) -> usize {
        match self.events_per_second {
            Some(rate) => self
                .batch_max_events
                .min(usize::try_from(rate).unwrap_or(usize::MAX)),
            None => self.batch_max_events,
        }
    }

    /// Check every setting; the first bad one is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |s: &str, r: &str| Err(ConfigError::new(s, r));
        if self.brokers.trim().is_empty() {
            return err("brokers", "must name at least one broker (host:port)");
        }
        check_topic("topic", &self.topic)?;
        if self.group_id.trim().is_empty() {
            return err("group_id", "must not be empty");
        }
        if let Some(dlq) = &self.dlq_topic {
            check_topic("dlq_topic", dlq)?;
        }
        if self.dlq_topic() == self.topic {
            return err("dlq_topic", "must differ from `topic`");
        }
        if self.batch_max_events < 1 {
            return err("batch_max_events", "must be at least 1");
        }
        if self.batch_max_bytes < 1 {
            return err("batch_max_bytes", "must be at least 1");
        }
        if self.max_in_flight_batches < 1 {
            return err("max_in_flight_batches", "must be at least 1");
        }
        if self.retry_initial_backoff.is_zero() {
            return err("retry_initial_backoff", "must be greater than 0");
        }
        if self.retry_max_backoff < self.retry_initial_backoff {
            return err(
                "retry_max_backoff",
                "must be at least `retry_initial_backoff`",
            );
        }
        if self.retry_max_attempts == Some(0) {
            return err(
                "retry_max_attempts",
                "must be at least 1 (leave it unset to retry forever)",
            );
        }
        if self.events_per_second == Some(0) {
            return err(
                "events_per_second",
                "must be at least 1 (leave it unset for no limit)",
            );
        }
        if self.requests_per_second == Some(0) {
            return err(
                "requests_per_second",
                "must be at least 1 (leave it unset for no limit)",
            );
        }
        if self.commit_interval.is_zero() {
            return err("commit_interval", "must be greater than 0");
        }
        if self.max_document_bytes < 1 {
            return err("max_document_bytes", "must be at least 1");
        }
        // A TLS or SASL setting this build of librdkafka cannot serve stops startup here,
        // naming the setting, instead of failing inside client creation.
        for (table, props) in [("kafka", &self.kafka), ("dlq_kafka", &self.dlq_kafka)] {
            syncline_kafka::capabilities::check(props)
                .map_err(|e| ConfigError::new(format!("{table}.{}", e.setting), e.reason()))?;
        }
        for key in self.dlq_kafka.keys() {
            if key == "acks" || key.starts_with("enable.idempotence") {
                return Err(ConfigError::new(
                    format!("dlq_kafka.{key}"),
                    "is managed by the runtime (dead letters are written with acks=all)",
                ));
            }
        }
        for key in self.kafka.keys() {
            if PROTECTED_KAFKA_KEYS.contains(&key.as_str()) {
                return Err(ConfigError::new(
                    format!("kafka.{key}"),
                    "is managed by the runtime (use `brokers` / `group_id`; offsets are \
                     committed only after the sink has the change)",
                ));
            }
        }
        Ok(())
    }
}

/// Kafka's own topic-name rules ([`syncline_kafka::validate_topic_name`]), as an error
/// naming `setting`.
fn check_topic(setting: &str, name: &str) -> Result<(), ConfigError> {
    syncline_kafka::validate_topic_name(name).map_err(|reason| ConfigError::new(setting, reason))
}

/// Parse a metrics address: `host:port`, or `off`/`none`/empty for no server.
pub fn parse_metrics_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    let t = s.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("off") || t.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    t.parse::<SocketAddr>()
        .map(Some)
        .map_err(|e| format!("`{t}` is not `ip:port` or `off`: {e}"))
}

mod metrics_addr_serde {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(a) => s.serialize_str(&a.to_string()),
            None => s.serialize_str("off"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_metrics_addr(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> RuntimeConfig {
        RuntimeConfig {
            group_id: "g".into(),
            ..RuntimeConfig::default()
        }
    }

    #[test]
    fn defaults_are_valid_once_a_group_is_set() {
        assert_eq!(valid().validate(), Ok(()));
        let e = RuntimeConfig::default().validate().unwrap_err();
        assert_eq!(e.setting, "group_id");
    }

    #[test]
    fn a_rate_limit_caps_the_batch_at_one_seconds_worth() {
        let limit = |batch_max_events, events_per_second| {
            RuntimeConfig {
                batch_max_events,
                events_per_second,
                ..valid()
            }
            .batch_event_limit()
        };
        assert_eq!(limit(1000, None), 1000);
        assert_eq!(limit(1000, Some(200)), 200);
        assert_eq!(limit(100, Some(5000)), 100);
    }

    #[test]
    fn message_names_the_setting() {
        let c = RuntimeConfig {
            batch_max_events: 0,
            ..valid()
        };
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "invalid setting `batch_max_events`: must be at least 1"
        );
    }

    #[test]
    fn each_bad_value_is_reported_by_name() {
        let cases: Vec<(RuntimeConfig, &str)> = vec![
            (
                RuntimeConfig {
                    brokers: " ".into(),
                    ..valid()
                },
                "brokers",
            ),
            (
                RuntimeConfig {
                    topic: "a b".into(),
                    ..valid()
                },
                "topic",
            ),
            (
                RuntimeConfig {
                    dlq_topic: Some("changes".into()),
                    ..valid()
                },
                "dlq_topic",
            ),
            (
                RuntimeConfig {
                    batch_max_bytes: 0,
                    ..valid()
                },
                "batch_max_bytes",
            ),
            (
                RuntimeConfig {
                    max_in_flight_batches: 0,
                    ..valid()
                },
                "max_in_flight_batches",
            ),
            (
                RuntimeConfig {
                    retry_initial_backoff: Duration::ZERO,
                    ..valid()
                },
                "retry_initial_backoff",
            ),
            (
                RuntimeConfig {
                    retry_max_backoff: Duration::from_millis(1),
                    ..valid()
                },
                "retry_max_backoff",
            ),
            (
                RuntimeConfig {
                    retry_max_attempts: Some(0),
                    ..valid()
                },
                "retry_max_attempts",
            ),
            (
                RuntimeConfig {
                    events_per_second: Some(0),
                    ..valid()
                },
                "events_per_second",
            ),
            (
                RuntimeConfig {
                    requests_per_second: Some(0),
                    ..valid()
                },
                "requests_per_second",
            ),
            (
                RuntimeConfig {
                    max_document_bytes: 0,
                    ..valid()
                },
                "max_document_bytes",
            ),
            (
                RuntimeConfig {
                    commit_interval: Duration::ZERO,
                    ..valid()
                },
                "commit_interval",
            ),
            (
                RuntimeConfig {
                    kafka: [("enable.auto.commit".to_owned(), "true".to_owned())].into(),
                    ..valid()
                },
                "kafka.enable.auto.commit",
            ),
        ];
        for (c, name) in cases {
            assert_eq!(c.validate().unwrap_err().setting, name);
        }
    }

    #[test]
    fn dlq_topic_defaults_to_topic_dot_dlq() {
        assert_eq!(valid().dlq_topic(), "changes.dlq");
    }

    #[test]
    fn toml_round_trip_and_unknown_keys() {
        let c: RuntimeConfig = toml::from_str(
            "batch_linger = \"10ms\"\nmetrics_addr = \"off\"\n[kafka]\n\"session.timeout.ms\" = \"6000\"\n",
        )
        .unwrap();
        assert_eq!(c.batch_linger, Duration::from_millis(10));
        assert_eq!(c.metrics_addr, None);
        assert_eq!(c.kafka["session.timeout.ms"], "6000");
        let back: RuntimeConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let e = toml::from_str::<RuntimeConfig>("batch_max_evnts = 3").unwrap_err();
        assert!(e.to_string().contains("batch_max_evnts"), "{e}");
    }
}
