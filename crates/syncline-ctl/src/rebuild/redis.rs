//! `syncline-ctl rebuild redis`: **not built yet**. The subcommand exists so that the
//! command line is stable; it refuses to run. The intended design (a generation per key
//! prefix, checked inside the cache scripts) is described in `docs/rebuild.md`.

use std::process::ExitCode;

use syncline_kafka::Connection;

/// `syncline-ctl rebuild redis` (not built yet).
#[derive(Debug, clap::Args)]
pub struct RedisRebuildArgs {}

/// Refuse: nothing is implemented, and doing nothing silently would be worse.
pub async fn run(_conn: &Connection, _args: RedisRebuildArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!(
        "`rebuild redis` is not built yet (see docs/rebuild.md for the design); to drop a \
         prefix's cached entries today, stop readers' writes and unlink its keys by hand"
    )
}
