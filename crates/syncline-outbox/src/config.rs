//! The relay's configuration: defaults < TOML file (`[outbox]`) < `SYNCLINE_*` env vars <
//! flags, layered by [`syncline_app::Layers`] as in the other binaries. All of it lives in
//! this module.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use syncline_app::{EffectiveConfig, HumanDuration, Layers, LogFormat, Redact, RenderError};
use syncline_kafka::{KafkaArgs, KafkaProperties};
use syncline_pg::PgConfig;
use syncline_producer::ProducerConfig;

use crate::relay::RelaySettings;

/// The TOML table read from `--config`.
pub const SECTION: &str = "outbox";

/// Default `/metrics` address.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9467";

/// A setting that cannot work, named: the configuration error every binary shares.
pub use syncline_app::ConfigError;

/// Flags (each with its env var) shared by `run` and `migrate`. The field names are the
/// `[outbox]` keys: set flags are layered over the file by name.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct OutboxArgs {
    /// TOML file with an `[outbox]` table (keys as the flags, with underscores).
    #[arg(
        long = "config",
        env = "SYNCLINE_CONFIG",
        value_name = "FILE",
        global = true
    )]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// PostgreSQL URL or conninfo holding the outbox (`sslmode`, `sslrootcert`, `sslcert`,
    /// `sslkey` as in libpq).
    #[arg(
        long,
        env = "SYNCLINE_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<String>,
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "SYNCLINE_BROKERS",
        value_name = "HOST:PORT,...",
        global = true
    )]
    pub brokers: Option<String>,
    /// Topic the events are published to.
    #[arg(long, env = "SYNCLINE_TOPIC", global = true)]
    pub topic: Option<String>,
    /// Most rows per batch.
    #[arg(long, env = "SYNCLINE_OUTBOX_BATCH_ROWS", global = true)]
    pub batch_rows: Option<i64>,
    /// Most document bytes per batch (bounds memory together with batch-rows).
    #[arg(long, env = "SYNCLINE_OUTBOX_BATCH_BYTES", global = true)]
    pub batch_bytes: Option<i64>,
    /// Most batches between reading and deletion (reading, acknowledgement and deletion of
    /// different batches overlap); 1 runs them one after the other.
    #[arg(long, env = "SYNCLINE_OUTBOX_BATCHES_IN_FLIGHT", global = true)]
    pub batches_in_flight: Option<usize>,
    /// Fallback poll interval when no notification arrives (e.g. `500ms`).
    #[arg(long, env = "SYNCLINE_OUTBOX_POLL_INTERVAL", global = true)]
    pub poll_interval: Option<HumanDuration>,
    /// How often a standby tries to take over (e.g. `1s`).
    #[arg(long, env = "SYNCLINE_OUTBOX_STANDBY_RETRY", global = true)]
    pub standby_retry: Option<HumanDuration>,
    /// Producer linger (`linger.ms`), e.g. `5ms`.
    #[arg(long, env = "SYNCLINE_PRODUCER_LINGER", global = true)]
    pub linger: Option<HumanDuration>,
    /// Largest accepted document in bytes; larger rows are quarantined.
    #[arg(long, env = "SYNCLINE_MAX_DOCUMENT_BYTES", global = true)]
    pub max_document_bytes: Option<usize>,
    /// Address of `/metrics` `/healthz` `/readyz`, or `off`.
    #[arg(
        long,
        env = "SYNCLINE_METRICS_ADDR",
        value_name = "IP:PORT|off",
        global = true
    )]
    pub metrics_addr: Option<String>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "SYNCLINE_LOG_FORMAT", global = true)]
    pub log_format: Option<LogFormat>,
    /// Kafka connection: `-X/--kafka key=value`, `SYNCLINE_KAFKA`, TLS/SASL flags.
    #[command(flatten)]
    #[serde(skip)]
    pub kafka: KafkaArgs,
}

/// The librdkafka properties of the flags, layered into `[outbox] kafka` key by key.
#[derive(Serialize)]
struct KafkaLayer {
    kafka: BTreeMap<String, String>,
}

/// The `[outbox]` table, from all layers. Unset settings keep the relay's and the
/// producer's defaults ([`RelaySettings::new`], [`ProducerConfig::new`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboxTable {
    database_url: Option<String>,
    brokers: Option<String>,
    topic: Option<String>,
    batch_rows: Option<i64>,
    batch_bytes: Option<i64>,
    batches_in_flight: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    poll_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    standby_retry: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    linger: Option<Duration>,
    max_document_bytes: Option<usize>,
    metrics_addr: Option<String>,
    log_format: Option<LogFormat>,
    #[serde(default)]
    kafka: BTreeMap<String, String>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// What the relay needs.
    pub relay: RelaySettings,
    /// `/metrics` address; `None`: off.
    pub metrics_addr: Option<SocketAddr>,
    /// Log format.
    pub log_format: LogFormat,
}

impl OutboxConfig {
    /// The effective settings for `--check-config`: the `[outbox]` table as resolved.
    pub fn effective(&self) -> Result<EffectiveConfig, RenderError> {
        let r = &self.relay;
        let p = &r.producer;
        let table = EffectiveOutbox {
            database_url: r.database.clone(),
            brokers: p.brokers.clone(),
            topic: p.topic.clone(),
            batch_rows: r.batch_rows,
            batch_bytes: r.batch_bytes,
            batches_in_flight: r.batches_in_flight,
            poll_interval: r.poll_interval,
            standby_retry: r.standby_retry,
            linger: p.linger,
            max_document_bytes: p.max_document_bytes,
            metrics_addr: syncline_consumer::cli::describe_metrics_addr(self.metrics_addr),
            log_format: self.log_format,
            kafka: p.extra.clone(),
        };
        EffectiveConfig::new().table(SECTION, &table)
    }
}

/// The `[outbox]` table as resolved, keyed as in the file, for `--check-config`.
#[derive(Clone, Serialize)]
struct EffectiveOutbox {
    #[serde(serialize_with = "redacted_database")]
    database_url: PgConfig,
    brokers: String,
    topic: String,
    batch_rows: i64,
    batch_bytes: i64,
    batches_in_flight: usize,
    #[serde(with = "humantime_serde")]
    poll_interval: Duration,
    #[serde(with = "humantime_serde")]
    standby_retry: Duration,
    #[serde(with = "humantime_serde")]
    linger: Duration,
    max_document_bytes: usize,
    metrics_addr: String,
    log_format: LogFormat,
    kafka: KafkaProperties,
}

/// The database is shown only as [`PgConfig::redacted`] (password masked), whatever the
/// copy: [`PgConfig`] has no unredacted text form.
fn redacted_database<S: serde::Serializer>(db: &PgConfig, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(db.redacted())
}

/// The secret librdkafka properties; the database URL always serializes redacted.
impl Redact for EffectiveOutbox {
    fn redacted(&self) -> Self {
        EffectiveOutbox {
            kafka: KafkaProperties(self.kafka.redacted()),
            ..self.clone()
        }
    }
}

fn parse_metrics_addr(s: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| ConfigError::new("metrics_addr", format!("{s:?} is not IP:PORT or off")))
}

/// Merge defaults < file < env/flags (clap already puts flags over env) and validate.
pub fn load(args: &OutboxArgs) -> Result<OutboxConfig, ConfigError> {
    let mut layers = Layers::new(SECTION);
    if let Some(path) = &args.config {
        layers = layers.file(path, &[SECTION])?;
    }
    let kafka = args
        .kafka
        .properties()
        .map_err(|e| ConfigError::new(&e.setting, e.reason))?;
    let file: OutboxTable = layers
        .flags(SECTION, args)?
        .flags(SECTION, &KafkaLayer { kafka })?
        .extract(SECTION)?;
    let url = file.database_url.ok_or_else(|| {
        ConfigError::new(
            "database_url",
            "required (--database-url or SYNCLINE_DATABASE_URL)",
        )
    })?;
    let database =
        PgConfig::parse(&url).map_err(|e| ConfigError::new("database_url", e.to_string()))?;
    let mut producer = ProducerConfig::new(
        file.brokers.unwrap_or_else(|| "127.0.0.1:9092".into()),
        file.topic.unwrap_or_else(|| "changes".into()),
    );
    producer.client_id = "syncline-outbox".into();
    if let Some(l) = file.linger {
        producer.linger = l;
    }
    if let Some(m) = file.max_document_bytes {
        producer.max_document_bytes = m;
    }
    producer.extra = file.kafka.into();
    producer
        .validate()
        .map_err(|e| ConfigError::new(&e.setting, e.reason))?;
    let mut relay = RelaySettings::new(database, producer);
    if let Some(n) = file.batch_rows {
        relay.batch_rows = n;
    }
    if let Some(n) = file.batch_bytes {
        relay.batch_bytes = n;
    }
    if let Some(n) = file.batches_in_flight {
        relay.batches_in_flight = n;
    }
    if let Some(d) = file.poll_interval {
        relay.poll_interval = d;
    }
    if let Some(d) = file.standby_retry {
        relay.standby_retry = d;
    }
    if !(1..=100_000).contains(&relay.batch_rows) {
        return Err(ConfigError::new("batch_rows", "must be 1..=100000"));
    }
    if relay.batch_bytes < 1 {
        return Err(ConfigError::new("batch_bytes", "must be positive"));
    }
    if !(1..=64).contains(&relay.batches_in_flight) {
        return Err(ConfigError::new("batches_in_flight", "must be 1..=64"));
    }
    if relay.poll_interval.is_zero() {
        return Err(ConfigError::new("poll_interval", "must be positive"));
    }
    if relay.standby_retry.is_zero() {
        return Err(ConfigError::new("standby_retry", "must be positive"));
    }
    let metrics_addr =
        parse_metrics_addr(file.metrics_addr.as_deref().unwrap_or(DEFAULT_METRICS_ADDR))?;
    Ok(OutboxConfig {
        relay,
        metrics_addr,
        log_format: file.log_format.unwrap_or_default(),
    })
}
