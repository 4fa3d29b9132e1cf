//! Consumer lag from the broker's own records.
//!
//! Committed offsets are what a group has durably finished, so they, not anything a
//! consumer instance says about itself, decide whether a sink has caught up.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use syncline_kafka::Connection;

/// One partition's position for one group.
struct Row {
    partition: usize,
    end: i64,
    committed: Option<i64>,
}

impl Row {
    fn lag(&self) -> i64 {
        self.end - self.committed.unwrap_or(0).min(self.end)
    }
}

async fn positions(conn: &Connection, topic: &str, group: &str) -> anyhow::Result<Vec<Row>> {
    let ends = crate::end_offsets(conn, topic).await?;
    let committed = syncline_kafka::committed_offsets(conn, group, topic)
        .await
        .with_context(|| format!("cannot read the committed offsets of group {group}"))?;
    Ok(ends
        .into_iter()
        .zip(committed)
        .enumerate()
        .map(|(partition, (end, committed))| Row {
            partition,
            end,
            committed,
        })
        .collect())
}

fn print(group: &str, rows: &[Row]) {
    println!("group {group}");
    println!("  partition        end  committed        lag");
    for r in rows {
        let committed = r.committed.map_or("-".to_owned(), |c| c.to_string());
        println!(
            "  {:>9} {:>10} {:>10} {:>10}",
            r.partition,
            r.end,
            committed,
            r.lag()
        );
    }
    println!("  total lag {}", rows.iter().map(Row::lag).sum::<i64>());
}

/// `syncline-ctl lag`.
#[derive(Debug, clap::Args)]
pub struct LagArgs {
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
    #[arg(long, default_value = "120s", value_parser = crate::humantime_duration)]
    timeout: Duration,
}

/// Print the lag of each group; with `wait`, poll until all are zero or `timeout` passes.
pub async fn run(conn: &Connection, args: LagArgs) -> anyhow::Result<ExitCode> {
    let LagArgs {
        topic,
        group: groups,
        wait,
        timeout,
    } = args;
    let topic = topic.as_str();
    let started = Instant::now();
    loop {
        let mut total = 0;
        let mut last = Vec::new();
        for g in &groups {
            let rows = positions(conn, topic, g).await?;
            total += rows.iter().map(Row::lag).sum::<i64>();
            last.push((g.clone(), rows));
        }
        if !wait || total == 0 {
            for (g, rows) in &last {
                print(g, rows);
            }
            return Ok(ExitCode::SUCCESS);
        }
        if started.elapsed() > timeout {
            for (g, rows) in &last {
                print(g, rows);
            }
            eprintln!("consumers still lag by {total} records after {timeout:?}");
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
