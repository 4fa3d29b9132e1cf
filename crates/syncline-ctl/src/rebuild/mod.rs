//! `syncline-ctl rebuild es|redis`: rebuild a derived store from the change-event topic.
//!
//! * [`es`]: fill the next concrete index behind an alias by replaying the topic through
//!   the indexer's own sink, swap the alias atomically, keep replaying past the live
//!   indexer's position at the swap, then stop. Resumable: every step's state is read back
//!   from Elasticsearch and the broker.
//! * [`redis`]: not built yet (the subcommand refuses to run; design in the runbook).
//!
//! The runbook is `docs/rebuild.md`.

mod es;
mod es_api;
mod history;
mod progress;
mod redis;
mod replay;

use std::process::ExitCode;

use syncline_kafka::Connection;

/// `syncline-ctl rebuild`.
#[derive(Debug, clap::Args)]
pub struct RebuildArgs {
    #[command(subcommand)]
    target: Target,
}

#[derive(Debug, clap::Subcommand)]
enum Target {
    /// Rebuild Elasticsearch indexes: replay the topic into the next concrete index behind
    /// each alias, then swap the alias atomically.
    Es(Box<es::EsRebuildArgs>),
    /// Not built yet: would make every cached entry of a Redis key prefix unreachable at
    /// once (new generation) and unlink the old keys in the background.
    Redis(Box<redis::RedisRebuildArgs>),
}

/// Run the chosen rebuild.
pub async fn run(conn: &Connection, args: RebuildArgs) -> anyhow::Result<ExitCode> {
    match args.target {
        Target::Es(a) => es::run(conn, *a).await,
        Target::Redis(a) => redis::run(conn, *a).await,
    }
}
