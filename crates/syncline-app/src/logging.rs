//! Tracing setup shared by every binary: `RUST_LOG` filter, text or JSON lines on stderr.

use serde::{Deserialize, Serialize};

/// Log output format (`log_format` in the binary's main table, `--log-format`,
/// `SYNCLINE_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("expected `text` or `json`, got `{other}`")),
        }
    }
}

/// The filter when `RUST_LOG` is unset, for the service binaries.
pub const DEFAULT_FILTER: &str = "info";

/// Install the global `tracing` subscriber: `RUST_LOG` filter (default
/// [`DEFAULT_FILTER`]), text or JSON lines on stderr (stdout stays free for
/// `--check-config` and command output). Calling it twice is harmless (the second call
/// does nothing).
pub fn init_tracing(format: LogFormat) {
    init_tracing_with(format, DEFAULT_FILTER);
}

/// [`init_tracing`] with another filter for when `RUST_LOG` is unset (directives such as
/// `warn,rdkafka::client=off`), for tools whose defaults differ from a service's.
pub fn init_tracing_with(format: LogFormat, default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Err only when a subscriber is already installed: the first one stays.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
