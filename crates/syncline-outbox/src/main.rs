//! `syncline-outbox`: relay committed PostgreSQL outbox rows to Kafka (`run`, the default),
//! or create/upgrade the outbox schema (`migrate`).
//!
//! Startup, `--check-config` and exit codes are `syncline-app`'s, the same in every
//! Syncline service binary.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use syncline_app::{CommonArgs, ConfigError, EffectiveConfig, LogFormat, RenderError, Service};
use syncline_outbox::{OutboxArgs, OutboxConfig};
use tokio_util::sync::CancellationToken;

/// Publish rows of the transactional outbox table `syncline_outbox` as Syncline change
/// events (at least once, in id order, deleted after acknowledgement).
#[derive(Debug, Parser)]
#[command(name = "syncline-outbox", version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    outbox: OutboxArgs,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Clone, Copy, Subcommand)]
enum Command {
    /// Run the relay (the default).
    Run,
    /// Create or upgrade the outbox schema (idempotent), then exit.
    Migrate,
}

struct Relay;

impl Service for Relay {
    type Args = Args;
    type Config = OutboxConfig;

    fn common(args: &Args) -> &CommonArgs {
        &args.common
    }

    fn load(args: &Args) -> Result<OutboxConfig, ConfigError> {
        syncline_outbox::load(&args.outbox)
    }

    fn effective(config: &OutboxConfig) -> Result<EffectiveConfig, RenderError> {
        config.effective()
    }

    fn log_format(config: &OutboxConfig) -> LogFormat {
        config.log_format
    }

    async fn run(args: Args, config: OutboxConfig, stop: CancellationToken) -> anyhow::Result<()> {
        let db = &config.relay.database;
        if let Some(Command::Migrate) = args.command {
            let applied = syncline_outbox::migrate(db)
                .await
                .context("migrating the outbox schema")?;
            if applied.is_empty() {
                println!("outbox schema up to date at {}", db.redacted());
            } else {
                println!("applied migrations {applied:?} at {}", db.redacted());
            }
            return Ok(());
        }
        tracing::info!(
            database = %db,
            brokers = %config.relay.producer.brokers,
            topic = %config.relay.producer.topic,
            "syncline-outbox starting"
        );
        let metrics = syncline_outbox::Metrics::new();
        if let Some(addr) = config.metrics_addr {
            syncline_outbox::metrics::serve(addr, metrics.clone(), stop.clone())
                .await
                .with_context(|| format!("binding the metrics address {addr}"))?;
        }
        syncline_outbox::run(config.relay, metrics, stop).await?;
        tracing::info!("syncline-outbox stopped");
        Ok(())
    }
}

fn main() -> ExitCode {
    syncline_app::main::<Relay>()
}
