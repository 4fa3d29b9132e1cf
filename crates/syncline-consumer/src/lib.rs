//! Syncline's shared consumer runtime. A sink only says how to apply a batch of change
//! events; the runtime owns consuming, batching, coalescing, offset commits, retries,
//! dead-lettering, rate limits, rebalances, shutdown and the operational endpoints.
//!
//! # API in one page
//!
//! * [`sink::Sink`] / [`sink::Outcome`]: implement `apply(&[EventRef]) -> Vec<Outcome>`,
//!   one outcome per event, in order. Before `apply`, the runtime coalesces each batch to
//!   one event per key (`entity_type:entity_id`, highest version; equal-version duplicates
//!   dropped; their offsets still count as done once the surviving event is done). Only
//!   events whose outcome was [`Outcome::Retry`] are handed to `apply` again (with
//!   backoff). One `apply` call is one "request" for `requests_per_second`.
//! * [`config::RuntimeConfig`]: every setting with its default (`Default`), serde
//!   (`[consumer]` table, unknown keys rejected), [`config::RuntimeConfig::validate`]
//!   returning [`config::ConfigError`] ("invalid setting `batch_max_events`: must be at
//!   least 1").
//! * [`cli`]: [`cli::RuntimeArgs`] (clap `Args` to `#[command(flatten)]` into a binary's
//!   parser; every flag also reads a `SYNCLINE_*` env var), [`cli::layers`] /
//!   [`cli::runtime_config`] (defaults < TOML file < env < flags, validated, on
//!   [`syncline_app::Layers`]; the sink layers and extracts its own table).
//! * Everything around that, the same in every service binary (parsing, `--check-config`,
//!   tracing, signals, exit codes, malloc arenas), is `syncline-app`'s
//!   [`syncline_app::Service`]; [`shutdown`] and [`memory`] are its modules, re-exported.
//! * [`metrics::Metrics`]: the [`prometheus_client`] registry behind `/metrics`; sinks
//!   register their own metrics on it with [`metrics::Metrics::register`] (or
//!   [`metrics::Metrics::counter`] / [`metrics::Metrics::gauge`]).
//! * [`health::Health`]: what `/readyz` answers (partitions assigned, no batch retrying
//!   for long, the dead-letter alarm quiet), apart from the metrics.
//! * [`runtime::run`] / [`runtime::run_with_metrics`] / [`runtime::run_with`]: run until the
//!   [`CancellationToken`](tokio_util::sync::CancellationToken) is cancelled, then return
//!   `Ok(())` after a clean shutdown. [`shutdown::signal_token`] cancels on SIGINT/SIGTERM.
//!
//! The runtime without the binary around it (a sink binary is a
//! [`syncline_app::Service`] whose `run` does the same; see `syncline-redis-invalidator`):
//!
//! ```no_run
//! # use syncline_consumer::{cli, config::RuntimeConfig, metrics::Metrics, runtime, shutdown, Outcome, Sink};
//! # use syncline_event::EventRef;
//! # struct MySink; impl MySink { fn new(_: MySettings, _: Metrics) -> Self { MySink } }
//! # impl Sink for MySink {
//! #   fn name(&self) -> &'static str { "mine" }
//! #   async fn apply(&self, b: &[EventRef<'_>]) -> Vec<Outcome> { vec![Outcome::Applied; b.len()] }
//! # }
//! #[derive(serde::Deserialize, Default)]
//! #[serde(default, deny_unknown_fields)]
//! struct MySettings { url: Option<String> }
//!
//! #[derive(clap::Parser)]
//! struct Args {
//!     #[command(flatten)]
//!     runtime: cli::RuntimeArgs,
//! }
//!
//! #[tokio::main]
//! async fn main() -> anyhow::Result<()> {
//!     let args = <Args as clap::Parser>::parse();
//!     let defaults = RuntimeConfig { group_id: "syncline-mine".into(), ..Default::default() };
//!     let layers = cli::layers(&args.runtime, "mine", &defaults)?;
//!     let config = cli::runtime_config(&layers)?;
//!     let settings: MySettings = layers.extract("mine")?;
//!     syncline_app::init_tracing(config.log_format);
//!     let metrics = Metrics::new();
//!     let sink = MySink::new(settings, metrics.clone());
//!     runtime::run_with_metrics(config, sink, metrics, shutdown::signal_token()).await?;
//!     Ok(())
//! }
//! ```
//!
//! The guarantees (commit protocol, error classes, DLQ headers, rebalance, shutdown) are
//! described in this crate's README.md.

pub mod batch;
pub mod cli;
pub mod config;
pub mod dlq;
mod dlq_log;
pub mod health;
pub mod http;
pub mod metrics;
pub mod offsets;
mod rate;
mod rebalance;
pub mod retry;
pub mod runtime;
pub mod sink;

pub use syncline_app::{memory, shutdown};

pub use config::{ConfigError, LogFormat, RuntimeConfig};
pub use health::Health;
pub use metrics::Metrics;
pub use runtime::{run, run_with, run_with_metrics, Membership, RuntimeError};
pub use sink::{Outcome, Sink};
