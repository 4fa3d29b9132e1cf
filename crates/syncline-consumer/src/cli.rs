//! The runtime's flags and env vars, shared by every sink binary, and the layered loading
//! of the `[consumer]` table: defaults < TOML file < `KAFKA_BROKERS` < `SYNCLINE_*` env
//! vars < flags (clap puts a flag over its env var; [`syncline_app::Layers`] does the
//! rest).
//!
//! A sink binary flattens [`RuntimeArgs`] into its parser, starts from [`layers`], adds
//! its own table's fallback env var and flags, and extracts both tables:
//!
//! ```no_run
//! # use clap::Parser;
//! # use syncline_consumer::{cli, config::RuntimeConfig};
//! #[derive(Parser)]
//! struct Args {
//!     #[command(flatten)]
//!     runtime: cli::RuntimeArgs,
//! }
//! #[derive(serde::Deserialize, Default)]
//! #[serde(default, deny_unknown_fields)]
//! struct RedisSettings { url: Option<String> }
//!
//! let args = Args::parse();
//! let defaults = RuntimeConfig { group_id: "syncline-redis-invalidator".into(), ..Default::default() };
//! let layers = cli::layers(&args.runtime, "redis", &defaults)?;
//! let config = cli::runtime_config(&layers)?;
//! let redis: RedisSettings = layers.extract("redis")?;
//! # Ok::<(), syncline_consumer::config::ConfigError>(())
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Serialize;
use syncline_app::{HumanDuration, Layers};

use crate::config::{ConfigError, LogFormat, RuntimeConfig};

pub use syncline_app::init_tracing;

/// The table of the TOML file that holds [`RuntimeConfig`].
pub const CONSUMER_SECTION: &str = "consumer";

/// Flags (each with a `SYNCLINE_*` env var) for the [`RuntimeConfig`] settings. All are
/// optional: what is not given comes from the file or the defaults. The field names are
/// the `[consumer]` keys: the set ones are layered over the file by name.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct RuntimeArgs {
    /// TOML config file with a `[consumer]` table and the sink's own table.
    #[arg(long = "config", env = "SYNCLINE_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers (also read from KAFKA_BROKERS).
    #[arg(long, env = "SYNCLINE_BROKERS", value_name = "HOST:PORT,...")]
    pub brokers: Option<String>,
    /// Topic with the change events.
    #[arg(long, env = "SYNCLINE_TOPIC")]
    pub topic: Option<String>,
    /// Consumer group id.
    #[arg(long = "group", env = "SYNCLINE_GROUP_ID")]
    pub group_id: Option<String>,
    /// Dead-letter topic (default `<topic>.dlq`).
    #[arg(long, env = "SYNCLINE_DLQ_TOPIC")]
    pub dlq_topic: Option<String>,
    /// Address for /metrics, /healthz and /readyz, or `off`.
    #[arg(long, env = "SYNCLINE_METRICS_ADDR", value_name = "IP:PORT|off")]
    pub metrics_addr: Option<String>,
    /// Max records per batch.
    #[arg(long, env = "SYNCLINE_BATCH_MAX_EVENTS")]
    pub batch_max_events: Option<usize>,
    /// Max payload bytes per batch.
    #[arg(long, env = "SYNCLINE_BATCH_MAX_BYTES")]
    pub batch_max_bytes: Option<usize>,
    /// Max time a batch waits to fill (e.g. `50ms`).
    #[arg(long, env = "SYNCLINE_BATCH_LINGER")]
    pub batch_linger: Option<HumanDuration>,
    /// Batches applied concurrently.
    #[arg(long, env = "SYNCLINE_MAX_IN_FLIGHT_BATCHES")]
    pub max_in_flight_batches: Option<usize>,
    /// First retry delay (e.g. `100ms`).
    #[arg(long, env = "SYNCLINE_RETRY_INITIAL_BACKOFF")]
    pub retry_initial_backoff: Option<HumanDuration>,
    /// Largest retry delay (e.g. `30s`).
    #[arg(long, env = "SYNCLINE_RETRY_MAX_BACKOFF")]
    pub retry_max_backoff: Option<HumanDuration>,
    /// Attempts before dead-lettering with class `retries_exhausted` (default: forever).
    #[arg(long, env = "SYNCLINE_RETRY_MAX_ATTEMPTS")]
    pub retry_max_attempts: Option<u32>,
    /// Limit of events per second handed to the sink.
    #[arg(long, env = "SYNCLINE_EVENTS_PER_SECOND")]
    pub events_per_second: Option<u32>,
    /// Limit of sink requests (batches) per second.
    #[arg(long, env = "SYNCLINE_REQUESTS_PER_SECOND")]
    pub requests_per_second: Option<u32>,
    /// Time allowed for in-flight work on shutdown (e.g. `30s`).
    #[arg(long, env = "SYNCLINE_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<HumanDuration>,
    /// How often complete offsets are committed besides after each batch (e.g. `1s`).
    #[arg(long, env = "SYNCLINE_COMMIT_INTERVAL")]
    pub commit_interval: Option<HumanDuration>,
    /// `/readyz` fails while a batch has been retrying longer than this (e.g. `60s`).
    #[arg(long, env = "SYNCLINE_UNREADY_AFTER_RETRYING")]
    pub unready_after_retrying: Option<HumanDuration>,
    /// `/readyz` fails after this many dead letters in a row with nothing applied (0: off).
    #[arg(long, env = "SYNCLINE_UNREADY_AFTER_DEAD_LETTERS", value_name = "N")]
    pub unready_after_dead_letters: Option<u64>,
    /// Largest accepted document in bytes.
    #[arg(long, env = "SYNCLINE_MAX_DOCUMENT_BYTES")]
    pub max_document_bytes: Option<usize>,
    /// Kafka connection: `-X/--kafka key=value` (repeatable), `SYNCLINE_KAFKA` (one
    /// property per line) and the first-class TLS/SASL flags. Layered into the `kafka`
    /// map key by key.
    #[command(flatten)]
    #[serde(skip)]
    pub kafka: syncline_kafka::KafkaArgs,
    /// Log format: `text` or `json`.
    #[arg(long, env = "SYNCLINE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
}

/// The librdkafka properties of the flags, layered into `[consumer] kafka`.
#[derive(Serialize)]
struct KafkaLayer {
    kafka: BTreeMap<String, String>,
}

/// The layers of a sink binary so far: `defaults` < the file (`--config`, tables
/// `[consumer]` and `[<sink_section>]`) < `KAFKA_BROKERS` < the runtime's env vars and
/// flags. The sink adds its own table's layers and extracts it.
pub fn layers(
    args: &RuntimeArgs,
    sink_section: &str,
    defaults: &RuntimeConfig,
) -> Result<Layers, ConfigError> {
    let mut layers = Layers::new(CONSUMER_SECTION);
    if let Some(path) = &args.config {
        layers = layers.file(path, &[CONSUMER_SECTION, sink_section])?;
    }
    let kafka = args
        .kafka
        .properties()
        .map_err(|e| ConfigError::new(e.setting, e.reason))?;
    layers
        .defaults(CONSUMER_SECTION, defaults)?
        // The variable the scripts and tests export; SYNCLINE_BROKERS and the flag win.
        .env_fallback(CONSUMER_SECTION, "brokers", "KAFKA_BROKERS")
        .flags(CONSUMER_SECTION, args)?
        .flags(CONSUMER_SECTION, &KafkaLayer { kafka })
}

/// The `[consumer]` table of `layers`, validated.
pub fn runtime_config(layers: &Layers) -> Result<RuntimeConfig, ConfigError> {
    let config: RuntimeConfig = layers.extract(CONSUMER_SECTION)?;
    config.validate()?;
    Ok(config)
}

/// [`load_with_defaults`] with [`RuntimeConfig::default`] as the base.
pub fn load<T: DeserializeOwned + Default>(
    args: &RuntimeArgs,
    sink_section: &str,
) -> Result<(RuntimeConfig, T), ConfigError> {
    load_with_defaults(args, sink_section, RuntimeConfig::default())
}

/// The validated runtime configuration and the file's `[<sink_section>]` table (or
/// `T::default()` without one), for a sink without flags of its own.
///
/// Unknown keys in either table, and unknown top-level tables, are errors naming the key
/// and the file.
pub fn load_with_defaults<T: DeserializeOwned + Default>(
    args: &RuntimeArgs,
    sink_section: &str,
    defaults: RuntimeConfig,
) -> Result<(RuntimeConfig, T), ConfigError> {
    let layers = layers(args, sink_section, &defaults)?;
    let config = runtime_config(&layers)?;
    Ok((config, layers.extract(sink_section)?))
}

/// Layer a TOML document over `defaults`, without env vars, flags or validation (for
/// tools that read a sink's config file). `origin` names the file in error messages.
pub fn from_toml<T: DeserializeOwned + Default>(
    text: &str,
    origin: &str,
    sink_section: &str,
    defaults: RuntimeConfig,
) -> Result<(RuntimeConfig, T), ConfigError> {
    let layers = Layers::new(CONSUMER_SECTION)
        .toml(text, origin, &[CONSUMER_SECTION, sink_section])?
        .defaults(CONSUMER_SECTION, &defaults)?;
    Ok((
        layers.extract(CONSUMER_SECTION)?,
        layers.extract(sink_section)?,
    ))
}

/// The address a metrics server would use, for log lines.
pub fn describe_metrics_addr(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "off".to_owned(), |a| a.to_string())
}
