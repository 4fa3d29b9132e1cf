//! `syncline-es-indexer`: consumes change events and applies them to Elasticsearch.
//!
//! Configuration: defaults < TOML file (`[consumer]` and `[elasticsearch]` tables) <
//! `SYNCLINE_*` env vars < flags. See the crate README for every setting.

use anyhow::Context as _;
use clap::Parser;
use syncline_consumer::config::RuntimeConfig;
use syncline_consumer::{cli, runtime, shutdown, Metrics};
use syncline_es_indexer::args::EsArgs;
use syncline_es_indexer::{EsConfig, EsSink, CONFIG_SECTION, DEFAULT_GROUP_ID};

/// Applies Syncline change events to Elasticsearch (one alias per entity type, bulk
/// writes with external versioning).
#[derive(Debug, Parser)]
#[command(name = "syncline-es-indexer", version)]
struct Args {
    #[command(flatten)]
    runtime: cli::RuntimeArgs,
    #[command(flatten)]
    es: EsArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Before the first batch: arenas are created lazily, under contention.
    syncline_consumer::memory::limit_malloc_arenas(2);
    let args = Args::parse();
    let defaults = RuntimeConfig {
        group_id: DEFAULT_GROUP_ID.into(),
        ..Default::default()
    };
    let (config, es_file): (RuntimeConfig, EsConfig) =
        cli::load_with_defaults(&args.runtime, CONFIG_SECTION, defaults)?;
    let es = args.es.apply(es_file)?;
    cli::init_tracing(config.log_format);

    let metrics = Metrics::new();
    let sink = EsSink::new(&es, &metrics)?;
    match sink.probe().await {
        Ok(info) => tracing::info!(url = %es.url, %info, "connected to Elasticsearch"),
        // Not fatal: writes are retried until Elasticsearch answers.
        Err(e) => tracing::warn!(url = %es.url, error = %e, "Elasticsearch not reachable yet"),
    }
    tracing::info!(
        topic = %config.topic,
        group = %config.group_id,
        prefix = %es.index_prefix,
        delete_mode = es.delete_mode.as_str(),
        "starting indexer"
    );
    runtime::run_with_metrics(config, sink, metrics, shutdown::signal_token())
        .await
        .context("consumer runtime")?;
    Ok(())
}
