//! Command-line flags and env vars shared by every sink binary, and the layered loading
//! of the configuration: defaults < TOML file (`[consumer]` + the sink's table) < env
//! vars < flags. (clap resolves "flag over env var" itself; both override the file.)
//!
//! A sink binary flattens [`RuntimeArgs`] into its own clap parser and calls
//! [`load_with_defaults`] with its own default group id:
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
//! let (config, redis): (RuntimeConfig, RedisSettings) =
//!     cli::load_with_defaults(&args.runtime, "redis", defaults)?;
//! cli::init_tracing(config.log_format);
//! # Ok::<(), syncline_consumer::config::ConfigError>(())
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::config::{parse_metrics_addr, ConfigError, LogFormat, RuntimeConfig};

/// The table of the TOML file that holds [`RuntimeConfig`].
pub const CONSUMER_SECTION: &str = "consumer";

/// Flags (each with a `SYNCLINE_*` env var) for every [`RuntimeConfig`] setting. All are
/// optional: what is not given comes from the file or the defaults.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RuntimeArgs {
    /// TOML config file with a `[consumer]` table and the sink's own table.
    #[arg(long = "config", env = "SYNCLINE_CONFIG", value_name = "FILE")]
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
    #[arg(long, env = "SYNCLINE_BATCH_LINGER", value_parser = humantime::parse_duration)]
    pub batch_linger: Option<Duration>,
    /// Batches applied concurrently.
    #[arg(long, env = "SYNCLINE_MAX_IN_FLIGHT_BATCHES")]
    pub max_in_flight_batches: Option<usize>,
    /// First retry delay (e.g. `100ms`).
    #[arg(long, env = "SYNCLINE_RETRY_INITIAL_BACKOFF", value_parser = humantime::parse_duration)]
    pub retry_initial_backoff: Option<Duration>,
    /// Largest retry delay (e.g. `30s`).
    #[arg(long, env = "SYNCLINE_RETRY_MAX_BACKOFF", value_parser = humantime::parse_duration)]
    pub retry_max_backoff: Option<Duration>,
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
    #[arg(long, env = "SYNCLINE_SHUTDOWN_TIMEOUT", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Option<Duration>,
    /// How often complete offsets are committed besides after each batch (e.g. `1s`).
    #[arg(long, env = "SYNCLINE_COMMIT_INTERVAL", value_parser = humantime::parse_duration)]
    pub commit_interval: Option<Duration>,
    /// `/readyz` fails while a batch has been retrying longer than this (e.g. `60s`).
    #[arg(long, env = "SYNCLINE_UNREADY_AFTER_RETRYING", value_parser = humantime::parse_duration)]
    pub unready_after_retrying: Option<Duration>,
    /// `/readyz` fails after this many dead letters in a row with nothing applied (0: off).
    #[arg(long, env = "SYNCLINE_UNREADY_AFTER_DEAD_LETTERS", value_name = "N")]
    pub unready_after_dead_letters: Option<u64>,
    /// Largest accepted document in bytes.
    #[arg(long, env = "SYNCLINE_MAX_DOCUMENT_BYTES")]
    pub max_document_bytes: Option<usize>,
    /// Kafka connection: `-X/--kafka key=value` (repeatable), `SYNCLINE_KAFKA` (one
    /// property per line) and the first-class TLS/SASL flags.
    #[command(flatten)]
    pub kafka: syncline_kafka::KafkaArgs,
    /// Log format: `text` or `json`.
    #[arg(long, env = "SYNCLINE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
}

/// [`load_with_defaults`] with [`RuntimeConfig::default`] as the base.
pub fn load<T: DeserializeOwned + Default>(
    args: &RuntimeArgs,
    sink_section: &str,
) -> Result<(RuntimeConfig, T), ConfigError> {
    load_with_defaults(args, sink_section, RuntimeConfig::default())
}

/// Merge `defaults` < the file's `[consumer]` table < env vars / flags, validate, and
/// deserialize the file's `[<sink_section>]` table (or `T::default()` without one).
///
/// Unknown keys in either table, and unknown top-level tables, are errors naming the key
/// and the file.
pub fn load_with_defaults<T: DeserializeOwned + Default>(
    args: &RuntimeArgs,
    sink_section: &str,
    defaults: RuntimeConfig,
) -> Result<(RuntimeConfig, T), ConfigError> {
    let (mut config, sink) = match &args.config {
        None => (defaults, T::default()),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new("config", format!("cannot read {}: {e}", path.display()))
            })?;
            from_toml(&text, &path.display().to_string(), sink_section, defaults)?
        }
    };
    apply_args(&mut config, args)?;
    config.validate()?;
    Ok((config, sink))
}

/// Layer a TOML document over `defaults`. `origin` names the file in error messages.
pub fn from_toml<T: DeserializeOwned + Default>(
    text: &str,
    origin: &str,
    sink_section: &str,
    defaults: RuntimeConfig,
) -> Result<(RuntimeConfig, T), ConfigError> {
    let mut doc: toml::Table = text
        .parse()
        .map_err(|e| ConfigError::new("config", format!("{origin} is not valid TOML: {e}")))?;
    if let Some(key) = doc
        .keys()
        .find(|k| k.as_str() != CONSUMER_SECTION && k.as_str() != sink_section)
    {
        return Err(ConfigError::new(
            key.clone(),
            format!(
                "unknown top-level key in {origin} (expected tables `[{CONSUMER_SECTION}]` \
                 and `[{sink_section}]`)"
            ),
        ));
    }
    let config = match doc.remove(CONSUMER_SECTION) {
        None => defaults,
        Some(toml::Value::Table(file)) => {
            // Serialize the defaults to a table and overlay the file's keys, so that a key
            // absent from the file keeps the binary's default, not RuntimeConfig's.
            let mut base = toml::Table::try_from(&defaults).map_err(|e| {
                ConfigError::new(CONSUMER_SECTION, format!("cannot represent defaults: {e}"))
            })?;
            for (k, v) in file {
                match (base.get_mut(&k), v) {
                    // Tables (`kafka`) merge key by key, so a file adding one librdkafka
                    // property keeps the binary's other defaults.
                    (Some(toml::Value::Table(b)), toml::Value::Table(f)) => b.extend(f),
                    (_, v) => {
                        base.insert(k, v);
                    }
                }
            }
            toml::Value::Table(base)
                .try_into::<RuntimeConfig>()
                .map_err(|e| section_error(CONSUMER_SECTION, origin, &e))?
        }
        Some(_) => {
            return Err(ConfigError::new(
                CONSUMER_SECTION,
                format!("must be a table in {origin}"),
            ))
        }
    };
    let sink = match doc.remove(sink_section) {
        None => T::default(),
        Some(v @ toml::Value::Table(_)) => v
            .try_into::<T>()
            .map_err(|e| section_error(sink_section, origin, &e))?,
        Some(_) => {
            return Err(ConfigError::new(
                sink_section,
                format!("must be a table in {origin}"),
            ))
        }
    };
    Ok((config, sink))
}

fn section_error(section: &str, origin: &str, e: &toml::de::Error) -> ConfigError {
    // serde names the offending key in its message ("unknown field `x`, expected one of
    // ..."); keep the section as the setting so the message says where to look.
    ConfigError::new(
        format!("[{section}]"),
        format!("in {origin}: {}", e.message().trim()),
    )
}

fn apply_args(c: &mut RuntimeConfig, a: &RuntimeArgs) -> Result<(), ConfigError> {
    // KAFKA_BROKERS is the variable the scripts and tests export; SYNCLINE_BROKERS and the
    // flag (both handled by clap) take precedence over it.
    if let Some(b) = a.brokers.clone().or_else(|| {
        std::env::var("KAFKA_BROKERS")
            .ok()
            .filter(|s| !s.trim().is_empty())
    }) {
        c.brokers = b;
    }
    set(&mut c.topic, a.topic.clone());
    set(&mut c.group_id, a.group_id.clone());
    if a.dlq_topic.is_some() {
        c.dlq_topic = a.dlq_topic.clone();
    }
    if let Some(m) = &a.metrics_addr {
        c.metrics_addr = parse_metrics_addr(m).map_err(|r| ConfigError::new("metrics_addr", r))?;
    }
    set(&mut c.batch_max_events, a.batch_max_events);
    set(&mut c.batch_max_bytes, a.batch_max_bytes);
    set(&mut c.batch_linger, a.batch_linger);
    set(&mut c.max_in_flight_batches, a.max_in_flight_batches);
    set(&mut c.retry_initial_backoff, a.retry_initial_backoff);
    set(&mut c.retry_max_backoff, a.retry_max_backoff);
    if a.retry_max_attempts.is_some() {
        c.retry_max_attempts = a.retry_max_attempts;
    }
    if a.events_per_second.is_some() {
        c.events_per_second = a.events_per_second;
    }
    if a.requests_per_second.is_some() {
        c.requests_per_second = a.requests_per_second;
    }
    set(&mut c.shutdown_timeout, a.shutdown_timeout);
    set(&mut c.commit_interval, a.commit_interval);
    set(&mut c.unready_after_retrying, a.unready_after_retrying);
    set(&mut c.max_document_bytes, a.max_document_bytes);
    set(
        &mut c.unready_after_dead_letters,
        a.unready_after_dead_letters,
    );
    set(&mut c.log_format, a.log_format);
    let extra = a
        .kafka
        .properties()
        .map_err(|e| ConfigError::new(e.setting, e.reason))?;
    c.kafka.extend(extra);
    Ok(())
}

fn set<V>(dst: &mut V, v: Option<V>) {
    if let Some(v) = v {
        *dst = v;
    }
}

/// Install the global `tracing` subscriber: `RUST_LOG` filter (default `info`), text or
/// JSON lines on stderr. Calling it twice is harmless (the second call does nothing).
pub fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The address a metrics server would use, for log lines.
pub fn describe_metrics_addr(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "off".to_owned(), |a| a.to_string())
}
