//! `syncline-es-indexer`: consumes change events and applies them to Elasticsearch.
//!
//! Configuration: defaults < TOML file (`[consumer]` and `[elasticsearch]` tables) <
//! `SYNCLINE_*` env vars < flags. See the crate README for every setting.
//!
//! Exit codes: 0 after a clean shutdown, 1 when the indexer failed while running, 2 when the
//! configuration is invalid (one line naming the setting), 130/143 when a second
//! SIGINT/SIGTERM cut the graceful shutdown short.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use syncline_consumer::config::RuntimeConfig;
use syncline_consumer::{cli, runtime, shutdown, Metrics};
use syncline_es_indexer::args::EsArgs;
use syncline_es_indexer::{EsConfig, EsSink, CONFIG_SECTION, DEFAULT_GROUP_ID};

/// Default address of `/metrics`, `/healthz` and `/readyz` (each Syncline binary has its
/// own port, so they run side by side on one host).
const DEFAULT_METRICS_ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 9464);

/// Applies Syncline change events to Elasticsearch (one alias per entity type, bulk
/// writes with external versioning).
#[derive(Debug, Parser)]
#[command(name = "syncline-es-indexer", version)]
struct Args {
    #[command(flatten)]
    runtime: cli::RuntimeArgs,
    #[command(flatten)]
    es: EsArgs,
    /// Validate the configuration, print the effective settings (secrets redacted) and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    // Before the first batch: arenas are created lazily, under contention.
    syncline_consumer::memory::limit_malloc_arenas(2);
    let args = Args::parse();
    let (config, es) = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        println!("{config:#?}\n{es:#?}");
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(config, es)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "indexer failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(args: &Args) -> anyhow::Result<(RuntimeConfig, EsConfig)> {
    let defaults = RuntimeConfig {
        group_id: DEFAULT_GROUP_ID.into(),
        metrics_addr: Some(SocketAddr::from(DEFAULT_METRICS_ADDR)),
        ..Default::default()
    };
    let (config, es_file): (RuntimeConfig, EsConfig) =
        cli::load_with_defaults(&args.runtime, CONFIG_SECTION, defaults)?;
    let es = args.es.apply(es_file)?;
    Ok((config, es))
}

async fn run(config: RuntimeConfig, es: EsConfig) -> anyhow::Result<()> {
    cli::init_tracing(config.log_format);
    let stop = shutdown::signal_token();
    let metrics = Metrics::new();
    let sink = EsSink::new(&es, &metrics)?;
    let url = syncline_es_indexer::config::redact_url(&es.url);
    match sink.probe().await {
        Ok(info) => tracing::info!(%url, %info, "connected to Elasticsearch"),
        // Not fatal: writes are retried until Elasticsearch answers.
        Err(e) => tracing::warn!(%url, error = %e, "Elasticsearch not reachable yet"),
    }
    tracing::info!(
        topic = %config.topic,
        group = %config.group_id,
        prefix = %es.index_prefix,
        delete_mode = es.delete_mode.as_str(),
        metrics = %cli::describe_metrics_addr(config.metrics_addr),
        "starting indexer"
    );
    runtime::run_with_metrics(config, sink, metrics, stop)
        .await
        .context("consumer runtime")?;
    Ok(())
}
