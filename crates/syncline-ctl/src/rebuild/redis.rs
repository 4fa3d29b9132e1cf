//! `syncline-ctl rebuild redis` (being written).

use std::process::ExitCode;

use syncline_kafka::Connection;

/// `syncline-ctl rebuild redis`.
#[derive(Debug, clap::Args)]
pub struct RedisRebuildArgs {}

/// Run `syncline-ctl rebuild redis`.
pub async fn run(_conn: &Connection, _args: RedisRebuildArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
