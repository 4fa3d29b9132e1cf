//! The shape every Syncline service binary shares (`syncline-es-indexer`,
//! `syncline-redis-invalidator`, `syncline-outbox`, and the ones to come).
//!
//! A binary implements [`Service`] (its parser, how it loads and describes its
//! configuration, what it runs) and its `main` is `syncline_app::main::<MyService>()`.
//! That one function owns, the same way for every binary:
//!
//! * the malloc arena cap ([`memory`]);
//! * argument parsing, with malformed flags reported on one line naming the setting;
//! * the layered configuration, defaults < TOML file < env vars < flags ([`Layers`], on
//!   `figment`), and the one configuration error type [`ConfigError`];
//! * `--check-config` ([`CommonArgs`]): validate, print the effective settings as TOML
//!   with secrets redacted ([`EffectiveConfig`]), exit;
//! * tracing ([`logging`]);
//! * signals ([`shutdown`]) and exit codes:
//!
//! | code | when |
//! |---|---|
//! | 0 | clean shutdown after SIGINT/SIGTERM, or `--check-config` succeeded |
//! | 1 | the service failed while running (the error is logged and printed) |
//! | 2 | invalid configuration or command line: one line on stderr naming the setting |
//! | 130 / 143 | a second SIGINT / SIGTERM cut the graceful shutdown short |

pub mod duration;
pub mod effective;
pub mod error;
pub mod layers;
pub mod logging;
pub mod memory;
pub mod service;
pub mod shutdown;

pub use duration::HumanDuration;
pub use effective::{EffectiveConfig, Redact, RenderError, REDACTED};
pub use error::ConfigError;
pub use layers::Layers;
pub use logging::{init_tracing, init_tracing_with, LogFormat};
pub use service::{main, CommonArgs, Service};
