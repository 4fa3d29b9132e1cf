//! `syncline-ctl rebuild es|redis`: rebuild a derived store from the change-event topic.
//!
//! * [`es`]: fill the next concrete index behind an alias by replaying the topic through
//!   the indexer's own sink, swap the alias atomically, keep replaying past the live
//!   indexer's position at the swap, then stop. Resumable: every step's state is read back
//!   from Elasticsearch and the broker.
//! * [`redis`]: switch a Redis key prefix to a new generation (warmed first by replaying
//!   the topic through the invalidator's own sink in refresh mode), making every entry of
//!   the old generation unreachable at once, then unlink the old keys at a bounded rate.
//!   Resumable: its state lives in Redis.
//!
//! The runbook is `docs/rebuild.md`.

mod es;
mod es_api;
pub(crate) mod history;
mod progress;
mod redis;
mod replay;
mod replay_args;

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
    /// Rebuild a Redis cache prefix: switch it to a new generation (warmed by replaying the
    /// topic in refresh mode), making every old entry unreachable at once, then unlink the
    /// old generation's keys at a bounded rate.
    Redis(Box<redis::RedisRebuildArgs>),
}

/// Run the chosen rebuild.
pub async fn run(conn: &Connection, args: RebuildArgs) -> anyhow::Result<ExitCode> {
    match args.target {
        Target::Es(a) => es::run(conn, *a).await,
        Target::Redis(a) => redis::run(conn, *a).await,
    }
}
