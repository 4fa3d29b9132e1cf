//! `syncline-redis-invalidator`: consume change events and apply them to Redis caches.
//!
//! Configuration: defaults < TOML file (`[consumer]` and `[redis]` tables) < `SYNCLINE_*`
//! env vars < flags. Startup, `--check-config` and exit codes are `syncline-app`'s, the
//! same in every Syncline service binary.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use syncline_app::{CommonArgs, ConfigError, LogFormat, Service};
use syncline_consumer::{cli, runtime, Metrics, RuntimeConfig};
use syncline_redis_invalidator::{
    connect_with_retry, RedisArgs, RedisSettings, SinkConfig, DEFAULT_GROUP_ID, SECTION,
};
use tokio_util::sync::CancellationToken;

/// Default address of `/metrics`, `/healthz` and `/readyz`: its own port, so that the
/// invalidator runs beside the indexer (9464) on one host with defaults.
const DEFAULT_METRICS_ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 9465);

/// Apply Syncline change events to Redis: version-guarded invalidation (or refresh) of
/// cached entities and tag generations for search-result caches.
#[derive(Debug, Parser)]
#[command(name = "syncline-redis-invalidator", version, about)]
struct Args {
    #[command(flatten)]
    runtime: cli::RuntimeArgs,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    common: CommonArgs,
}

struct Invalidator;

impl Service for Invalidator {
    type Args = Args;
    type Config = (RuntimeConfig, SinkConfig);

    fn common(args: &Args) -> &CommonArgs {
        &args.common
    }

    fn load(args: &Args) -> Result<(RuntimeConfig, SinkConfig), ConfigError> {
        let defaults = RuntimeConfig {
            group_id: DEFAULT_GROUP_ID.into(),
            metrics_addr: Some(SocketAddr::from(DEFAULT_METRICS_ADDR)),
            ..Default::default()
        };
        let layers = args
            .redis
            .layer(cli::layers(&args.runtime, SECTION, &defaults)?)?;
        let config = cli::runtime_config(&layers)?;
        let redis: RedisSettings = layers.extract(SECTION)?;
        Ok((config, redis.validate()?))
    }

    fn describe((config, sink): &(RuntimeConfig, SinkConfig)) -> String {
        format!("{config:#?}\n{sink:#?}\n")
    }

    fn log_format((config, _): &(RuntimeConfig, SinkConfig)) -> LogFormat {
        config.log_format
    }

    async fn run(
        _: Args,
        (config, sink_config): (RuntimeConfig, SinkConfig),
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        tracing::info!(
            url = %sink_config.display_url,
            prefix = sink_config.layout.prefix(),
            mode = %sink_config.mode,
            cache_ttl = ?sink_config.ttls.cache_ttl(),
            guard_ttl = ?sink_config.ttls.guard_ttl(),
            publish_channel = ?sink_config.publish_channel,
            "redis invalidator starting"
        );
        let metrics = Metrics::new();
        let Some(sink) = connect_with_retry(&sink_config, &metrics, &stop)
            .await
            .context("connecting to redis")?
        else {
            tracing::info!("shutdown requested before redis was reachable");
            return Ok(());
        };
        runtime::run_with_metrics(config, sink, metrics, stop)
            .await
            .context("consumer runtime")?;
        tracing::info!("redis invalidator stopped");
        Ok(())
    }
}

fn main() -> ExitCode {
    syncline_app::main::<Invalidator>()
}
