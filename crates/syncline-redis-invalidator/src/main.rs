//! `syncline-redis-invalidator`: consume change events and apply them to Redis caches.
//!
//! Configuration: defaults < TOML file (`[consumer]` and `[redis]` tables) < `SYNCLINE_*`
//! env vars < flags. Startup, `--check-config` and exit codes are `syncline-app`'s, the
//! same in every Syncline service binary.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use syncline_app::{CommonArgs, ConfigError, EffectiveConfig, LogFormat, RenderError, Service};
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

/// The validated configuration: the `[consumer]` and `[redis]` tables as resolved (what
/// `--check-config` shows) and the sink's settings checked from the latter.
struct Config {
    runtime: RuntimeConfig,
    redis: RedisSettings,
    sink: SinkConfig,
}

struct Invalidator;

impl Service for Invalidator {
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
            .redis
            .layer(cli::layers(&args.runtime, SECTION, &defaults)?)?;
        let runtime = cli::runtime_config(&layers)?;
        let redis: RedisSettings = layers.extract(SECTION)?;
        let sink = redis.validate()?;
        Ok(Config {
            runtime,
            redis,
            sink,
        })
    }

    fn effective(c: &Config) -> Result<EffectiveConfig, RenderError> {
        EffectiveConfig::new()
            .table(cli::CONSUMER_SECTION, &c.runtime)?
            .table(SECTION, &c.redis)
    }

    fn log_format(c: &Config) -> LogFormat {
        c.runtime.log_format
    }

    async fn run(_: Args, c: Config, stop: CancellationToken) -> anyhow::Result<()> {
        let Config {
            runtime: config,
            sink: sink_config,
            ..
        } = c;
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
