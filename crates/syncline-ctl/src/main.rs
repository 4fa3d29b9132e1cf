//! `syncline-ctl`: operator commands for a running Syncline pipeline.
//!
//! Every command reads what it needs straight from the broker and the stores (committed
//! offsets are what a group has durably finished, not what an instance says about
//! itself). Each command lives in its own module with its own `clap` arguments; this file
//! only wires them up and owns the connection flags and exit codes shared by all.
//!
//! Exit codes: 0 success, 1 the command ran and found a problem it reports (e.g. lag left
//! after `--wait`), 2 invalid arguments or configuration, or an error.

mod dlq;
mod lag;
mod offsets;
mod rebuild;
mod reconcile;
mod snapshot;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use syncline_kafka::{Connection, KafkaArgs};
use syncline_producer::ProducerConfig;

#[derive(Parser)]
#[command(name = "syncline-ctl", version, about)]
struct Cli {
    /// Bootstrap servers.
    #[arg(
        long,
        env = "KAFKA_BROKERS",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    brokers: String,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print each partition's end offset, committed offset and lag for consumer groups.
    Lag(lag::LagArgs),
    /// Publish an UPSERT for every row of a PostgreSQL query (initial load, backfill).
    Snapshot(snapshot::SnapshotArgs),
    /// Compare Elasticsearch and Redis with the system of record; --repair publishes fixes.
    Reconcile(reconcile::ReconcileArgs),
    /// Rebuild a derived store (Elasticsearch index, Redis cache prefix) from the topic.
    Rebuild(rebuild::RebuildArgs),
    /// Show a group's committed offsets, or reset them (dry run unless --execute).
    Offsets(offsets::OffsetsArgs),
    /// Inspect dead letters (list, show, summary) and redrive them to their source topic.
    Dlq(dlq::DlqArgs),
}

/// The log filter when `RUST_LOG` is unset: warnings and errors (a rebuild's retries and
/// dead letters) on stderr, stdout staying the command's output. librdkafka's own log is
/// off: the end-offset reader reaches the end of every partition on purpose, which
/// librdkafka reports as an error.
const LOG_FILTER: &str = "warn,rdkafka::client=off";

/// What a command's `run` returns: `Ok(code)` for a completed command (0 or 1).
type Outcome = anyhow::Result<ExitCode>;

/// Parse a humantime duration for a flag (`30s`, `5m`).
pub(crate) fn humantime_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// The end offsets of `topic`, indexed by partition (from fetch responses; see
/// [`syncline_kafka::end_offsets`]); a topic without partitions is an error.
pub(crate) async fn end_offsets(conn: &Connection, topic: &str) -> anyhow::Result<Vec<i64>> {
    let ends = syncline_kafka::end_offsets(conn, topic)
        .await
        .with_context(|| format!("cannot read the end offsets of {topic}"))?;
    if ends.is_empty() {
        bail!(
            "topic {topic} has no partitions (does it exist on {}?)",
            conn.brokers
        );
    }
    Ok(ends)
}

/// A producer for `topic` on `conn`'s cluster, with `conn`'s client properties (TLS, SASL)
/// and `client_id`.
pub(crate) fn producer_config(conn: &Connection, topic: &str, client_id: &str) -> ProducerConfig {
    let mut cfg = ProducerConfig::new(conn.brokers.clone(), topic);
    cfg.client_id = client_id.to_owned();
    cfg.extra = conn.properties.clone();
    cfg
}

/// The cluster connection from the global flags: servers plus TLS/SASL properties,
/// refused at once when this build lacks a capability they ask for.
fn connection(cli: &Cli) -> anyhow::Result<Connection> {
    let props = cli.kafka.properties()?;
    syncline_kafka::capabilities::check(&props)?;
    Ok(Connection::new(cli.brokers.clone()).with_properties(&props))
}

async fn run(cli: Cli) -> Outcome {
    let conn = connection(&cli)?;
    match cli.command {
        Command::Lag(args) => lag::run(&conn, args).await,
        Command::Snapshot(args) => snapshot::run(&conn, args).await,
        Command::Reconcile(args) => reconcile::run(&conn, args).await,
        Command::Rebuild(args) => rebuild::run(&conn, args).await,
        Command::Offsets(args) => offsets::run(&conn, args).await,
        Command::Dlq(args) => dlq::run(&conn, args).await,
    }
}

fn main() -> ExitCode {
    // The same process setup as the service binaries, from the same place.
    syncline_app::memory::cap_arenas();
    let cli = Cli::parse();
    syncline_app::init_tracing_with(syncline_app::LogFormat::Text, LOG_FILTER);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
