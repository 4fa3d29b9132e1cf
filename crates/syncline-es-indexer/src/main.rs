//! `syncline-es-indexer`: consumes change events and applies them to Elasticsearch.
//!
//! Configuration: defaults < TOML file (`[consumer]` and `[elasticsearch]` tables) <
//! `SYNCLINE_*` env vars < flags. See the crate README for every setting. Startup,
//! `--check-config` and exit codes are `syncline-app`'s, the same in every Syncline
//! service binary (0 clean shutdown, 1 failed while running, 2 invalid configuration,
//! 130/143 second signal).

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use syncline_app::{CommonArgs, ConfigError, EffectiveConfig, LogFormat, RenderError, Service};
use syncline_consumer::config::RuntimeConfig;
use syncline_consumer::{cli, runtime, Metrics};
use syncline_es_indexer::args::{self, EsArgs};
use syncline_es_indexer::client::build_client;
use syncline_es_indexer::mappings::IndexDefinitions;
use syncline_es_indexer::sink::StartupError;
use syncline_es_indexer::{EsConfig, EsSink, CONFIG_SECTION, DEFAULT_GROUP_ID};
use tokio_util::sync::CancellationToken;

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
    #[command(flatten)]
    common: CommonArgs,
}

/// The validated configuration, with the index definitions already read (so that
/// `--check-config` finds a bad mapping file too).
struct Config {
    runtime: RuntimeConfig,
    es: EsConfig,
    definitions: IndexDefinitions,
}

struct Indexer;

impl Service for Indexer {
    type Args = Args;
    type Config = Config;

    fn common(args: &Args) -> &CommonArgs {
        &args.common
    }

    fn load(args: &Args) -> Result<Config, ConfigError> {
        let defaults = RuntimeConfig {
            group_id: DEFAULT_GROUP_ID.into(),
            metrics_addr: Some(SocketAddr::from(DEFAULT_METRICS_ADDR)),
            ..Default::default()
        };
        let layers = args
            .es
            .layer(cli::layers(&args.runtime, CONFIG_SECTION, &defaults)?)?;
        let runtime = cli::runtime_config(&layers)?;
        let es = args::extract(&layers)?;
        let definitions =
            IndexDefinitions::load(&es.mappings_dir_or_default(), es.mappings_dir.is_some())
                .map_err(|e| ConfigError::new("elasticsearch.mappings_dir", e.to_string()))?;
        // Reads the CA and client certificate files; connects nowhere.
        build_client(&es).map_err(|e| e.in_table(CONFIG_SECTION))?;
        Ok(Config {
            runtime,
            es,
            definitions,
        })
    }

    fn effective(c: &Config) -> Result<EffectiveConfig, RenderError> {
        EffectiveConfig::new()
            .table(cli::CONSUMER_SECTION, &c.runtime)?
            .table(CONFIG_SECTION, &c.es)
    }

    fn log_format(c: &Config) -> LogFormat {
        c.runtime.log_format
    }

    async fn run(_: Args, c: Config, stop: CancellationToken) -> anyhow::Result<()> {
        let Config {
            runtime: config,
            es,
            definitions,
        } = c;
        let metrics = Metrics::new();
        let sink = EsSink::with_definitions(&es, definitions, &metrics).map_err(|e| match e {
            StartupError::Config(c) => c.in_table(CONFIG_SECTION),
            StartupError::Mappings(m) => {
                ConfigError::new("elasticsearch.mappings_dir", m.to_string())
            }
        })?;
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
}

fn main() -> ExitCode {
    syncline_app::main::<Indexer>()
}
