//! A batch task: one batch, start to finish. Decode, dead-letter what cannot be applied,
//! coalesce, apply through the sink (rate-limited), retry transient failures with backoff
//! while the driver holds the batch's partitions, and mark offsets done in the book.

use std::sync::Arc;
use std::time::Instant;

use syncline_event::{EventRef, Limits};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::batch::{Batch, BatchPool, RecordRef};
use crate::dlq::{DeadLetter, DlqError, DlqWriter};
use crate::metrics::Metrics;
use crate::offsets::Shared;
use crate::rate::RateLimits;
use crate::retry::Backoff;
use crate::sink::{Outcome, Sink};

/// Class of records dead-lettered after `retry_max_attempts` failed attempts.
pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";

/// Messages from batch tasks to the consumer loop.
#[derive(Debug)]
pub(super) enum Control {
    /// Batch `batch` has events waiting for a retry on these partitions: pause them.
    Retrying {
        /// The retrying batch.
        batch: u64,
        /// (partition, epoch) pairs it holds.
        partitions: Vec<(i32, u64)>,
    },
    /// Batch `batch` is finished (its slot is free): resume what it held, commit.
    Finished {
        /// The finished batch.
        batch: u64,
    },
}

/// What every batch task needs.
pub(super) struct Work<S> {
    /// Where events are applied.
    pub(super) sink: S,
    /// Where records that cannot be applied go.
    pub(super) dlq: DlqWriter,
    /// The offset book and friends.
    pub(super) shared: Arc<Shared>,
    /// Counters and health.
    pub(super) metrics: Metrics,
    /// Event validation limits.
    pub(super) limits: Limits,
    /// Events/s and requests/s limits on the sink.
    pub(super) rate: RateLimits,
    /// Delay between attempts of a transient failure.
    pub(super) backoff: Backoff,
    /// Attempts before records are dead-lettered (`None`: retry forever).
    pub(super) max_attempts: Option<u32>,
    /// Cancelled when shutdown gives up on in-flight batches.
    pub(super) abandon: CancellationToken,
    /// To the driver: which partitions to hold, which batch finished.
    pub(super) ctrl: mpsc::UnboundedSender<Control>,
    /// Where finished batches go back for reuse by the driver.
    pub(super) pool: BatchPool,
}

/// One batch, start to finish: decode, dead-letter rejects, coalesce, apply, retry,
/// dead-letter sink rejects, mark offsets done.
pub(super) async fn process<S: Sink>(
    work: Arc<Work<S>>,
    batch: Batch,
    id: u64,
    permit: OwnedSemaphorePermit,
) {
    let started = Instant::now();
    work.metrics.batch_started();
    let finished = run_batch(&work, &batch, id).await;
    if finished.is_err() {
        tracing::debug!(batch = id, "batch abandoned");
    }
    work.shared.health.retrying_finished(id);
    work.metrics.batch_finished(started.elapsed());
    if finished.is_ok() {
        work.metrics.events_done(batch.timestamps(), now_ms());
        work.metrics.processed(batch.read_times(), Instant::now());
    }
    work.pool.give(batch);
    drop(permit);
    let _ = work.ctrl.send(Control::Finished { batch: id });
}

/// Wall-clock milliseconds since the epoch, the unit of Kafka record timestamps.
pub(super) fn now_ms() -> i64 {
    syncline_event::model::now_micros() / 1000
}

/// Marks records done in the offset book (one lock per call).
fn complete(work: &Work<impl Sink>, batch: &Batch, records: &mut Vec<usize>) {
    if records.is_empty() {
        return;
    }
    let mut book = work.shared.book.lock();
    for i in records.drain(..) {
        if let Some(at) = batch.at(i) {
            book.complete(at.partition, at.epoch, at.offset);
        }
    }
}

/// Batch `id` waits on a retry (of the sink or of the dead-letter topic) for these
/// records: pause their partitions and count the batch as retrying, which fails
/// readiness after `unready_after_retrying`.
fn hold_partitions<S: Sink>(work: &Work<S>, id: u64, held: impl Iterator<Item = RecordRef>) {
    let mut partitions: Vec<(i32, u64)> = held.map(|at| (at.partition, at.epoch)).collect();
    partitions.sort_unstable();
    partitions.dedup();
    let _ = work.ctrl.send(Control::Retrying {
        batch: id,
        partitions,
    });
    work.shared.health.retrying_started(id);
}

/// Dead-letter records of `batch` (index, class, reason) together. The first time the
/// dead-letter topic fails, the records' partitions are held exactly as for a failing
/// sink ([`hold_partitions`]): nothing more is fetched for them until the dead letters
/// are written.
async fn dead_letter_all<'a, S: Sink>(
    work: &Work<S>,
    batch: &'a Batch,
    id: u64,
    items: impl IntoIterator<Item = (usize, &'a str, &'a str)>,
) -> Result<(), DlqError> {
    let letters: Vec<DeadLetter<'_>> = items
        .into_iter()
        .filter_map(|(i, class, reason)| {
            batch.at(i).map(|at| DeadLetter {
                at,
                key: batch.key(i),
                payload: batch.payload(i),
                class,
                reason,
            })
        })
        .collect();
    if letters.is_empty() {
        return Ok(());
    }
    let mut on_stall = |stalled: &[RecordRef]| hold_partitions(work, id, stalled.iter().copied());
    work.dlq
        .write_all(&letters, &mut on_stall, &work.abandon)
        .await
}

async fn run_batch<S: Sink>(work: &Work<S>, batch: &Batch, id: u64) -> Result<(), DlqError> {
    let prepared = batch.prepare(&work.limits);
    work.metrics.coalesced(prepared.dropped as u64);
    let mut done: Vec<usize> = Vec::with_capacity(batch.len());
    let rejected = prepared
        .rejected
        .iter()
        .map(|(i, why)| (*i, why.class.as_str(), why.reason.as_str()));
    dead_letter_all(work, batch, id, rejected).await?;
    done.extend(prepared.rejected.iter().map(|(i, _)| *i));
    complete(work, batch, &mut done);

    // The events borrow the batch's records; the members borrow the groups.
    let mut events: Vec<EventRef<'_>> = prepared.groups.iter().map(|g| g.event.view()).collect();
    let mut members: Vec<(usize, &[usize])> = prepared
        .groups
        .iter()
        .map(|g| (g.winner, g.superseded.as_slice()))
        .collect();
    let mut attempt: u32 = 0;
    while !events.is_empty() {
        tokio::select! {
            _ = work.rate.acquire(events.len()) => {}
            _ = work.abandon.cancelled() => return Err(DlqError::Abandoned),
        }
        let outcomes = tokio::select! {
            o = work.sink.apply(&events) => o,
            _ = work.abandon.cancelled() => return Err(DlqError::Abandoned),
        };
        attempt = attempt.saturating_add(1);
        let outcomes = if outcomes.len() == events.len() {
            outcomes
        } else {
            tracing::error!(
                sink = work.sink.name(),
                events = events.len(),
                outcomes = outcomes.len(),
                "sink returned the wrong number of outcomes; retrying the whole batch"
            );
            vec![
                Outcome::Retry {
                    reason: "sink returned the wrong number of outcomes".into()
                };
                events.len()
            ]
        };
        let mut retry_events = Vec::new();
        let mut retry_members = Vec::new();
        let mut sink_rejects: Vec<(usize, String, String)> = Vec::new();
        let mut last_reason = String::new();
        let (mut applied, mut stale) = (0u64, 0u64);
        for ((event, m), outcome) in events.into_iter().zip(members).zip(outcomes) {
            match outcome {
                Outcome::Applied | Outcome::Stale => {
                    if outcome == Outcome::Applied {
                        applied += 1;
                    } else {
                        stale += 1;
                    }
                    done.push(m.0);
                    done.extend_from_slice(m.1);
                }
                Outcome::DeadLetter { class, reason } => {
                    // Only the surviving (newest) record goes to the DLQ: replaying it
                    // restores the newest state; the superseded ones are done with it.
                    sink_rejects.push((m.0, class, reason));
                    done.extend_from_slice(m.1);
                }
                Outcome::Retry { reason } => {
                    last_reason = reason;
                    retry_events.push(event);
                    retry_members.push(m);
                }
            }
        }
        work.metrics.applied(applied);
        work.metrics.stale(stale);
        work.shared.health.progressed(applied + stale);
        let items = sink_rejects
            .iter()
            .map(|(i, c, r)| (*i, c.as_str(), r.as_str()));
        dead_letter_all(work, batch, id, items).await?;
        done.extend(sink_rejects.iter().map(|(i, _, _)| *i));
        complete(work, batch, &mut done);
        if retry_events.is_empty() {
            break;
        }
        work.metrics.retries(retry_events.len() as u64);
        if work.max_attempts.is_some_and(|max| attempt >= max) {
            let reason = format!("gave up after {attempt} attempts; last error: {last_reason}");
            let items = retry_members
                .iter()
                .map(|m| (m.0, RETRIES_EXHAUSTED, reason.as_str()));
            dead_letter_all(work, batch, id, items).await?;
            for m in &retry_members {
                done.push(m.0);
                done.extend_from_slice(m.1);
            }
            complete(work, batch, &mut done);
            break;
        }
        // Stop working for partitions that were revoked meanwhile: their new owner
        // redelivers these records.
        {
            let book = work.shared.book.lock();
            let keep: Vec<bool> = retry_members
                .iter()
                .map(|m| {
                    std::iter::once(m.0).chain(m.1.iter().copied()).any(|i| {
                        batch
                            .at(i)
                            .is_some_and(|at| book.is_current(at.partition, at.epoch))
                    })
                })
                .collect();
            drop(book);
            let mut k = keep.iter();
            retry_events.retain(|_| k.next().copied().unwrap_or(false));
            let mut k = keep.iter();
            retry_members.retain(|_| k.next().copied().unwrap_or(false));
        }
        if retry_events.is_empty() {
            break;
        }
        if attempt == 1 {
            hold_partitions(
                work,
                id,
                retry_members
                    .iter()
                    .flat_map(|m| std::iter::once(m.0).chain(m.1.iter().copied()))
                    .filter_map(|i| batch.at(i)),
            );
        }
        let delay = work.backoff.delay(attempt, &mut rand::rng());
        tracing::warn!(
            sink = work.sink.name(), batch = id, events = retry_events.len(), attempt, ?delay,
            reason = %last_reason, "transient sink failure; retrying"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = work.abandon.cancelled() => return Err(DlqError::Abandoned),
        }
        events = retry_events;
        members = retry_members;
    }
    Ok(())
}
