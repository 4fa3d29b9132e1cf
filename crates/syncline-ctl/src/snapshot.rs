//! `syncline-ctl snapshot`: publish an UPSERT for every row a PostgreSQL query returns,
//! for an initial load, a backfill, or a rebuild source when the topic lacks history.
//!
//! Rows are read through a server-side cursor (bounded memory), one batch ahead on a
//! thread of their own ([`prefetch`]), and published through the producer library's
//! [`BulkProducer`] (idempotent, acks=all, the contract's validation; deliveries counted,
//! not awaited one by one), with at most `--max-in-flight` events unacknowledged.
//! Versions come from the rows: they must be in the one version space the live events
//! use (docs/reconcile.md), so a snapshot never overwrites a newer live change and a live
//! change is never lost to a snapshot.
//!
//! Bad input stops the run with a message naming the row, after every event sent before
//! it was acknowledged; nothing invalid is published. Re-running is safe: the sinks keep
//! the highest version per entity, so re-published rows change nothing.

mod prefetch;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use syncline_event::{ChangeEvent, Op, ValidationError};
use syncline_kafka::Connection;
use syncline_producer::{BulkProducer, PublishError};

use crate::reconcile::truth::{RowRef, DEFAULT_FETCH_ROWS};
use prefetch::Prefetch;

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

/// Make `ev` (reused across rows, so no allocation per row) the UPSERT of `row`. A NULL
/// document is refused here; everything else the contract requires is checked once, by
/// the producer's validation (see [`row_error`]).
fn fill(ev: &mut ChangeEvent, row: RowRef<'_>) -> anyhow::Result<()> {
    let Some(doc) = row.document else {
        bail!("row entity_id={:?} has a NULL document", row.entity_id);
    };
    ev.entity_id.clear();
    ev.entity_id.push_str(row.entity_id);
    ev.version = row.version;
    let d = ev.document.get_or_insert_with(String::new);
    d.clear();
    d.push_str(doc);
    ev.renew();
    Ok(())
}

/// The producer refused the event of row `id`: say so naming the row, in the terms of a
/// table (a document that is not JSON, or JSON but not an object; a negative version).
fn row_error(id: &str, e: PublishError) -> anyhow::Error {
    match e {
        PublishError::Invalid(ValidationError::DocumentNotObject) => {
            anyhow!("row entity_id={id:?}: document is JSON but not an object")
        }
        PublishError::Invalid(ValidationError::DocumentNotJson(reason)) => {
            anyhow!("row entity_id={id:?}: document is not JSON: {reason}")
        }
        PublishError::Invalid(ValidationError::NegativeVersion(v)) => {
            anyhow!("row entity_id={id:?}: version {v} is negative; versions are >= 0")
        }
        PublishError::Invalid(v) => anyhow!("row entity_id={id:?}: {v}"),
        other => anyhow!(other).context(format!("entity_id={id:?}")),
    }
}

/// Run `snapshot`.
pub async fn run(conn: &Connection, a: SnapshotArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut rows = Prefetch::open(&a.postgres_url, &a.query, a.fetch_rows.max(1)).await?;
    let cfg = crate::producer_config(conn, &a.topic, "syncline-ctl-snapshot");
    let mut producer = BulkProducer::new(cfg).context("creating the producer")?;
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
    let max_in_flight = u64::try_from(a.max_in_flight.max(1)).unwrap_or(u64::MAX);
    let mut ev = ChangeEvent::new(
        &a.entity_type,
        String::new(),
        Op::Upsert,
        0,
        &a.source,
        Some(String::new()),
    );
    let mut failure: Option<anyhow::Error> = None;
    'batches: loop {
        let batch = match rows.next_batch().await {
            Ok(b) => b,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        if batch.is_empty() {
            break;
        }
        for row in batch.rows() {
            // A failed delivery stops the run; the summary below reports it.
            if producer.has_failed() {
                break 'batches;
            }
            if let Err(e) = fill(&mut ev, row) {
                failure = Some(e);
                break 'batches;
            }
            producer.wait_for_room(max_in_flight).await;
            if let Err(e) = producer.send(&ev).await {
                failure = Some(row_error(row.entity_id, e));
                break 'batches;
            }
        }
        bar.set_position(producer.counts().acked);
    }
    // Whatever happened, wait for every event already sent, so the summary is exact.
    let counts = producer.settle().await;
    if let Some(failed) = producer.take_failure() {
        if failure.is_none() {
            failure = Some(anyhow!(failed.error).context("a delivery failed"));
        }
    }
    bar.finish_and_clear();
    let (sent, acked, lost) = (counts.sent, counts.acked, counts.failed);
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
