//! `syncline-outbox`: relay committed PostgreSQL outbox rows to Kafka (`run`, the default),
//! or create/upgrade the outbox schema (`migrate`).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use syncline_outbox::{OutboxArgs, OutboxConfig};

/// Publish rows of the transactional outbox table `syncline_outbox` as Syncline change
/// events (at least once, in id order, deleted after acknowledgement).
#[derive(Debug, Parser)]
#[command(name = "syncline-outbox", version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    outbox: OutboxArgs,
    /// Validate the configuration, print the effective settings (secrets redacted), exit.
    #[arg(long, global = true)]
    check_config: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the relay (the default).
    Run,
    /// Create or upgrade the outbox schema (idempotent), then exit.
    Migrate,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Configuration errors stop startup with one line naming the setting (exit 2).
    let config = match syncline_outbox::load(&args.outbox) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        print!("{}", config.describe());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args.command.unwrap_or(Command::Run), config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "syncline-outbox failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: OutboxConfig) -> anyhow::Result<()> {
    syncline_consumer::cli::init_tracing(config.log_format);
    let db = &config.relay.database;
    if let Command::Migrate = command {
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
    let stop = syncline_consumer::shutdown::signal_token();
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
