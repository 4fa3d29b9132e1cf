//! `syncline-ctl`: operator commands for a running Syncline pipeline.
//!
//! `lag` reads a consumer group's committed offsets and the topic's high watermarks
//! straight from the broker (what the group has durably finished, not what an instance
//! says about itself), so it is the ground truth for "has this sink caught up".

mod lag;

use std::time::Duration;

use clap::{Parser, Subcommand};

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print each partition's end offset, committed offset and lag for consumer groups.
    Lag {
        /// Topic to inspect.
        #[arg(long)]
        topic: String,
        /// Consumer groups (repeat or comma-separate).
        #[arg(long, value_delimiter = ',', required = true)]
        group: Vec<String>,
        /// Keep polling until every group's lag is zero, then exit 0.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up (exit 1) after this long, e.g. `120s`.
        #[arg(long, default_value = "120s", value_parser = humantime_duration)]
        timeout: Duration,
    },
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Lag {
            topic,
            group,
            wait,
            timeout,
        } => lag::run(&cli.brokers, &topic, &group, wait, timeout).await,
    }
}
