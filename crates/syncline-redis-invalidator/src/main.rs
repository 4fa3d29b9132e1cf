//! `syncline-redis-invalidator`: consume change events and apply them to Redis caches.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use syncline_consumer::{cli, runtime, shutdown, ConfigError, Metrics, RuntimeConfig};
use syncline_redis_invalidator::{
    connect_with_retry, RedisArgs, RedisSettings, SinkConfig, DEFAULT_GROUP_ID, SECTION,
};

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
    /// Validate the configuration, print the effective settings (secrets redacted) and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    syncline_consumer::memory::limit_malloc_arenas(2);
    let args = Args::parse();
    // Configuration errors stop startup with one line naming the setting (exit 2).
    let (config, sink_config) = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, config, sink_config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "redis invalidator failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(args: &Args) -> Result<(RuntimeConfig, SinkConfig), ConfigError> {
    let defaults = RuntimeConfig {
        group_id: DEFAULT_GROUP_ID.into(),
        metrics_addr: Some(SocketAddr::from(DEFAULT_METRICS_ADDR)),
        ..Default::default()
    };
    let (config, mut redis): (RuntimeConfig, RedisSettings) =
        cli::load_with_defaults(&args.runtime, SECTION, defaults)?;
    redis.apply_args(&args.redis);
    Ok((config, redis.validate()?))
}

async fn run(args: Args, config: RuntimeConfig, sink_config: SinkConfig) -> anyhow::Result<()> {
    cli::init_tracing(config.log_format);
    if args.check_config {
        println!("{config:#?}\n{sink_config:#?}");
        return Ok(());
    }
    tracing::info!(
        url = %sink_config.display_url,
        prefix = sink_config.layout.prefix(),
        mode = %sink_config.mode,
        cache_ttl = ?sink_config.ttls.cache_ttl(),
        guard_ttl = ?sink_config.ttls.guard_ttl(),
        publish_channel = ?sink_config.publish_channel,
        "redis invalidator starting"
    );

    let stop = shutdown::signal_token();
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
