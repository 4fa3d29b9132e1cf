//! `syncline-ctl snapshot`: publish an UPSERT for every row a PostgreSQL query returns,
//! for an initial load, a backfill, or a rebuild source when the topic lacks history.
//!
//! Rows are read through a server-side cursor (bounded memory) and published through the
//! normal producer (idempotent, acks=all, validation), with at most `--max-in-flight`
//! events unacknowledged. Versions come from the rows: they must be in the one version
//! space the live events use (docs/reconcile.md), so a snapshot never overwrites a newer
//! live change and a live change is never lost to a snapshot.
//!
//! Bad input stops the run with a message naming the row, after every event sent before
//! it was acknowledged; nothing invalid is published. Re-running is safe: the sinks keep
//! the highest version per entity, so re-published rows change nothing.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use syncline_event::{ChangeEvent, Op};
use syncline_kafka::Connection;
use syncline_producer::{PendingDelivery, Producer, PublishError};

use crate::reconcile::truth::{PgQuery, TruthRow, DEFAULT_FETCH_ROWS};

/// `snapshot` arguments.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// PostgreSQL connection string (URL or conninfo).
    #[arg(long, env = "SYNCLINE_POSTGRES_URL", hide_env_values = true)]
    pub postgres_url: String,
    /// The entity type of every row.
    #[arg(long)]
    pub entity_type: String,
    /// Query returning `entity_id`, `version` and `document` (json, jsonb or text).
    #[arg(long)]
    pub query: String,
    /// The change topic.
    #[arg(long, default_value = "changes")]
    pub topic: String,
    /// The events' `source`.
    #[arg(long, default_value = "syncline-snapshot")]
    pub source: String,
    /// Events awaiting acknowledgement at most.
    #[arg(long, default_value_t = 50_000)]
    pub max_in_flight: usize,
    /// Rows per cursor fetch.
    #[arg(long, default_value_t = DEFAULT_FETCH_ROWS)]
    pub fetch_rows: usize,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

fn event(a: &SnapshotArgs, row: TruthRow) -> anyhow::Result<ChangeEvent> {
    let id = row.entity_id;
    let Some(doc) = row.document else {
        bail!("row entity_id={id:?} has a NULL document");
    };
    // Checked here, not only by the producer, to name the row in the message. Parsed
    // without building a value: only whether it is a JSON object matters.
    match serde_json::from_str::<serde::de::IgnoredAny>(&doc) {
        Ok(_) if doc.trim_start().starts_with('{') => {}
        Ok(_) => bail!("row entity_id={id:?}: document is JSON but not an object"),
        Err(e) => bail!("row entity_id={id:?}: document is not JSON: {e}"),
    }
    if row.version < 0 {
        bail!(
            "row entity_id={id:?}: version {} is negative; versions are >= 0",
            row.version
        );
    }
    Ok(ChangeEvent::new(
        &a.entity_type,
        id,
        Op::Upsert,
        row.version,
        &a.source,
        Some(doc),
    ))
}

async fn settle(p: PendingDelivery) -> Result<(), PublishError> {
    p.await.map(|_| ())
}

/// Run `snapshot`.
pub async fn run(conn: &Connection, a: SnapshotArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut query = PgQuery::open(&a.postgres_url, &a.query, true, a.fetch_rows).await?;
    let cfg = crate::producer_config(conn, &a.topic, "syncline-ctl-snapshot");
    let producer = Producer::new(cfg).context("creating the producer")?;
    let info = producer
        .check_connection(Duration::from_secs(10))
        .await
        .context("connecting to Kafka")?;
    if info.topic_partitions.is_none() {
        bail!("topic {} does not exist on {}", a.topic, conn.brokers);
    }
    let bar = if a.quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new_spinner();
        b.set_style(
            ProgressStyle::with_template("{spinner} {pos} rows published, {per_sec} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        b
    };
    let mut pending: VecDeque<PendingDelivery> = VecDeque::new();
    let (mut sent, mut acked) = (0u64, 0u64);
    let mut failure: Option<anyhow::Error> = None;
    'rows: loop {
        let batch = match query.next_batch().await {
            Ok(b) => b,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        if batch.is_empty() {
            break;
        }
        for row in batch {
            let ev = match event(&a, row) {
                Ok(ev) => ev,
                Err(e) => {
                    failure = Some(e);
                    break 'rows;
                }
            };
            while pending.len() >= a.max_in_flight.max(1) {
                if let Some(p) = pending.pop_front() {
                    if let Err(e) = settle(p).await {
                        failure = Some(anyhow!(e).context("a delivery failed"));
                        break 'rows;
                    }
                    acked += 1;
                    bar.inc(1);
                }
            }
            match producer.send(&ev).await {
                Ok(p) => {
                    pending.push_back(p);
                    sent += 1;
                }
                Err(e) => {
                    failure = Some(anyhow!(e).context(format!("entity_id={:?}", ev.entity_id)));
                    break 'rows;
                }
            }
        }
    }
    // Whatever happened, wait for every event already sent, so the summary is exact.
    let mut lost = 0u64;
    for p in pending {
        match settle(p).await {
            Ok(()) => {
                acked += 1;
                bar.inc(1);
            }
            Err(e) => {
                lost += 1;
                if failure.is_none() {
                    failure = Some(anyhow!(e).context("a delivery failed"));
                }
            }
        }
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "snapshot {}: {acked} of {sent} events acknowledged on {} in {secs:.1} s ({:.0} rows/s){}",
        a.entity_type,
        a.topic,
        acked as f64 / secs.max(1e-9),
        if lost > 0 {
            format!(", {lost} not acknowledged (re-run: publishing again is safe)")
        } else {
            String::new()
        }
    );
    match failure {
        None => Ok(ExitCode::SUCCESS),
        Some(e) => Err(e.context(format!(
            "snapshot stopped after {acked} acknowledged events (all valid; re-running is safe)"
        ))),
    }
}
