//! [`ProducerConfig`]: what a [`crate::Producer`] needs, with tuned defaults and a
//! `validate()` that names the setting at fault.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use syncline_event::Limits;

/// Record batch compression (librdkafka `compression.type`).
///
/// Every codec is compiled into this build's librdkafka: gzip (zlib), snappy and lz4 are
/// built in, zstd comes from the workspace's `rdkafka/zstd` feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// No compression.
    None,
    /// gzip: the smallest batches, the most CPU.
    Gzip,
    /// snappy.
    Snappy,
    /// lz4: the default; cheap on CPU, good on JSON-heavy events.
    #[default]
    Lz4,
    /// zstd: smaller than lz4 for a little more CPU.
    Zstd,
}

impl Compression {
    /// The librdkafka `compression.type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// Every codec, in the order they are listed in help texts.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Compression {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Compression::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ConfigError {
                setting: "compression".into(),
                reason: format!(
                    "unknown codec {s:?}; expected one of none, gzip, snappy, lz4, zstd"
                ),
            })
    }
}

/// A configuration value that cannot work, naming the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `{setting}`: {reason}")]
pub struct ConfigError {
    /// The setting at fault: a [`ProducerConfig`] field name, or a librdkafka property
    /// name for entries of [`ProducerConfig::extra`].
    pub setting: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(setting: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            setting: setting.into(),
            reason: reason.into(),
        }
    }
}

/// librdkafka properties this crate sets itself from typed settings or fixed guarantees.
/// They are refused in [`ProducerConfig::extra`] so that a stray entry cannot silently turn
/// idempotence off or override a typed setting.
const OWNED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "use `brokers`"),
    ("metadata.broker.list", "use `brokers`"),
    (
        "enable.idempotence",
        "the producer always runs with enable.idempotence=true",
    ),
    ("acks", "the producer always runs with acks=all"),
    (
        "request.required.acks",
        "the producer always runs with acks=all",
    ),
    ("compression.type", "use `compression`"),
    ("compression.codec", "use `compression`"),
    ("linger.ms", "use `linger`"),
    ("queue.buffering.max.ms", "use `linger`"),
    ("batch.size", "use `batch_size`"),
    ("message.timeout.ms", "use `delivery_timeout`"),
    ("delivery.timeout.ms", "use `delivery_timeout`"),
    ("queue.buffering.max.messages", "use `max_queued_messages`"),
    ("queue.buffering.max.kbytes", "use `max_queued_bytes`"),
    ("transactional.id", "this producer is not transactional"),
];

/// Everything a [`crate::Producer`] needs.
///
/// The defaults are the tuned ones measured in this crate's README (1 KiB events,
/// 2 cores): lz4, `linger.ms=5`, 1 MiB batches, a local queue bounded to 32 MiB.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerConfig {
    /// Bootstrap servers, comma-separated `host:port` (librdkafka `bootstrap.servers`).
    pub brokers: String,
    /// The topic events are published to.
    pub topic: String,
    /// Batch compression (`compression.type`).
    pub compression: Compression,
    /// How long librdkafka waits to fill a batch (`linger.ms`), 0..=900 s.
    pub linger: Duration,
    /// Largest record batch in bytes (`batch.size`).
    pub batch_size: usize,
    /// How long one event may take from `publish` to acknowledgement, retries included,
    /// before it fails with [`crate::PublishError::Timeout`] (`message.timeout.ms`). It also
    /// bounds how long `publish` waits for room in a full local queue.
    pub delivery_timeout: Duration,
    /// Largest accepted `document` in bytes (the contract's limit; 1 MiB by default).
    pub max_document_bytes: usize,
    /// Most events held in librdkafka's local queue (`queue.buffering.max.messages`).
    pub max_queued_messages: usize,
    /// Most bytes held in librdkafka's local queue (`queue.buffering.max.kbytes`, rounded
    /// up to whole KiB). This is what bounds the producer's memory under load.
    pub max_queued_bytes: usize,
    /// `client.id` reported to the broker.
    pub client_id: String,
    /// Further librdkafka properties, e.g. `security.protocol`, `sasl.mechanism`,
    /// `sasl.username`, `ssl.ca.location`. Properties this crate owns (see
    /// [`ProducerConfig::validate`]) are refused here.
    pub extra: syncline_kafka::KafkaProperties,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "changes".into(),
            compression: Compression::default(),
            linger: Duration::from_millis(5),
            batch_size: 1024 * 1024,
            delivery_timeout: Duration::from_secs(30),
            max_document_bytes: Limits::default().max_document_bytes,
            max_queued_messages: 100_000,
            max_queued_bytes: 32 * 1024 * 1024,
            client_id: "syncline-producer".into(),
            extra: syncline_kafka::KafkaProperties::default(),
        }
    }
}

/// Largest value librdkafka accepts for `linger.ms`.
const MAX_LINGER: Duration = Duration::from_millis(900_000);

impl ProducerConfig {
    /// A default configuration for these brokers and topic.
    pub fn new(brokers: impl Into<String>, topic: impl Into<String>) -> Self {
        ProducerConfig {
            brokers: brokers.into(),
            topic: topic.into(),
            ..ProducerConfig::default()
        }
    }

    /// The event limits the producer enforces.
    pub fn limits(&self) -> Limits {
        Limits {
            max_document_bytes: self.max_document_bytes,
        }
    }

    /// Check every setting; the first bad one is named in the error.
    ///
    /// Unknown librdkafka property names or values in `extra` are caught by
    /// [`crate::Producer::new`], which reports them the same way.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_brokers(&self.brokers)?;
        syncline_kafka::validate_topic_name(&self.topic)
            .map_err(|reason| ConfigError::new("topic", reason))?;
        if self.linger > MAX_LINGER {
            return Err(ConfigError::new(
                "linger",
                format!("{:?} is over librdkafka's maximum of 900 s", self.linger),
            ));
        }
        if self.batch_size == 0 || self.batch_size > i32::MAX as usize {
            return Err(ConfigError::new(
                "batch_size",
                format!("{} must be between 1 and {}", self.batch_size, i32::MAX),
            ));
        }
        let timeout_ms = self.delivery_timeout.as_millis();
        if timeout_ms == 0 || timeout_ms > i32::MAX as u128 {
            return Err(ConfigError::new(
                "delivery_timeout",
                format!(
                    "{:?} must be at least 1 ms and at most {} ms",
                    self.delivery_timeout,
                    i32::MAX
                ),
            ));
        }
        if self.delivery_timeout <= self.linger {
            return Err(ConfigError::new(
                "delivery_timeout",
                format!(
                    "{:?} must be greater than linger ({:?})",
                    self.delivery_timeout, self.linger
                ),
            ));
        }
        if self.max_document_bytes == 0 {
            return Err(ConfigError::new("max_document_bytes", "must be at least 1"));
        }
        if self.max_document_bytes > 512 * 1024 * 1024 {
            return Err(ConfigError::new(
                "max_document_bytes",
                format!(
                    "{} is over the 512 MiB a Kafka record can carry",
                    self.max_document_bytes
                ),
            ));
        }
        if self.max_queued_messages == 0 || self.max_queued_messages > 2_147_483_647 {
            return Err(ConfigError::new(
                "max_queued_messages",
                format!(
                    "{} must be between 1 and 2147483647",
                    self.max_queued_messages
                ),
            ));
        }
        if self.max_queued_bytes < 1024 || self.max_queued_bytes / 1024 > i32::MAX as usize {
            return Err(ConfigError::new(
                "max_queued_bytes",
                format!("{} must be between 1 KiB and 2 TiB", self.max_queued_bytes),
            ));
        }
        if self.max_queued_bytes < self.max_document_bytes {
            return Err(ConfigError::new(
                "max_queued_bytes",
                format!(
                    "{} is smaller than max_document_bytes ({}): the largest event could never be queued",
                    self.max_queued_bytes, self.max_document_bytes
                ),
            ));
        }
        if self.client_id.trim().is_empty() {
            return Err(ConfigError::new("client_id", "must not be empty"));
        }
        syncline_kafka::capabilities::check(&self.extra)
            .map_err(|e| ConfigError::new(format!("extra.{}", e.setting), e.reason()))?;
        for (key, value) in &self.extra {
            let key_norm = key.trim();
            if key_norm.is_empty() {
                return Err(ConfigError::new("extra", "a property name is empty"));
            }
            if let Some((_, why)) = OWNED_PROPERTIES
                .iter()
                .find(|(owned, _)| owned.eq_ignore_ascii_case(key_norm))
            {
                return Err(ConfigError::new(
                    key.clone(),
                    format!("cannot be set in `extra`: {why}"),
                ));
            }
            if value.contains('\0') {
                return Err(ConfigError::new(key.clone(), "value contains a NUL byte"));
            }
        }
        Ok(())
    }

    /// `message.max.bytes` large enough for the biggest valid event: the document limit
    /// plus room for the other fields, never below librdkafka's default.
    pub(crate) fn message_max_bytes(&self) -> usize {
        (self.max_document_bytes + 256 * 1024).max(1_000_000)
    }
}

fn validate_brokers(brokers: &str) -> Result<(), ConfigError> {
    if brokers.trim().is_empty() {
        return Err(ConfigError::new("brokers", "no bootstrap server given"));
    }
    for b in brokers.split(',') {
        let b = b.trim();
        // Accept `host:port`, `[v6]:port` and an optional `PROTOCOL://` prefix.
        let hostport = b.rsplit("://").next().unwrap_or(b);
        let Some((host, port)) = hostport.rsplit_once(':') else {
            return Err(ConfigError::new(
                "brokers",
                format!("{b:?} is not host:port"),
            ));
        };
        if host.is_empty() {
            return Err(ConfigError::new("brokers", format!("{b:?} has no host")));
        }
        if port.parse::<u16>().map(|p| p == 0).unwrap_or(true) {
            return Err(ConfigError::new(
                "brokers",
                format!("{b:?} has no valid port (1..=65535)"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        ProducerConfig::default().validate().unwrap();
    }

    #[test]
    fn bad_settings_are_named() {
        let cases: Vec<(ProducerConfig, &str)> = vec![
            (ProducerConfig::new("", "t"), "brokers"),
            (ProducerConfig::new("localhost", "t"), "brokers"),
            (ProducerConfig::new("localhost:0", "t"), "brokers"),
            (ProducerConfig::new("localhost:9092", "bad topic"), "topic"),
            (ProducerConfig::new("localhost:9092", ".."), "topic"),
            (
                ProducerConfig {
                    linger: Duration::from_secs(1000),
                    ..Default::default()
                },
                "linger",
            ),
            (
                ProducerConfig {
                    batch_size: 0,
                    ..Default::default()
                },
                "batch_size",
            ),
            (
                ProducerConfig {
                    delivery_timeout: Duration::ZERO,
                    ..Default::default()
                },
                "delivery_timeout",
            ),
            (
                ProducerConfig {
                    linger: Duration::from_secs(60),
                    delivery_timeout: Duration::from_secs(60),
                    ..Default::default()
                },
                "delivery_timeout",
            ),
            (
                ProducerConfig {
                    max_document_bytes: 0,
                    ..Default::default()
                },
                "max_document_bytes",
            ),
            (
                ProducerConfig {
                    max_queued_bytes: 1024,
                    ..Default::default()
                },
                "max_queued_bytes",
            ),
            (
                ProducerConfig {
                    extra: [("enable.idempotence".to_string(), "false".to_string())].into(),
                    ..Default::default()
                },
                "enable.idempotence",
            ),
            (
                ProducerConfig {
                    extra: [("ACKS".to_string(), "1".to_string())].into(),
                    ..Default::default()
                },
                "ACKS",
            ),
        ];
        for (cfg, setting) in cases {
            let err = cfg.validate().unwrap_err();
            assert_eq!(err.setting, setting, "{err}");
            assert!(err.to_string().contains(setting), "{err}");
        }
    }

    #[test]
    fn broker_lists_and_protocols_are_accepted() {
        ProducerConfig::new("a:1,b:2, [::1]:9092", "t")
            .validate()
            .unwrap();
        ProducerConfig::new("SASL_SSL://kafka.example:9093", "t")
            .validate()
            .unwrap();
    }

    #[test]
    fn compression_parses_case_insensitively() {
        assert_eq!("ZSTD".parse::<Compression>().unwrap(), Compression::Zstd);
        for c in Compression::ALL {
            assert_eq!(c.as_str().parse::<Compression>().unwrap(), c);
        }
        let err = "brotli".parse::<Compression>().unwrap_err();
        assert_eq!(err.setting, "compression");
    }

    #[test]
    fn security_properties_are_allowed_in_extra() {
        let cfg = ProducerConfig {
            extra: [
                ("security.protocol".to_string(), "SASL_SSL".to_string()),
                ("sasl.mechanism".to_string(), "SCRAM-SHA-512".to_string()),
            ]
            .into(),
            ..Default::default()
        };
        cfg.validate().unwrap();
    }
}
