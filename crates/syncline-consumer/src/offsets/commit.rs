//! Every offset commit of the runtime, and what the broker answered.
//!
//! Positions are stored in librdkafka (`store_offsets`) and then the consumer's stored
//! offsets are committed. librdkafka commits stored offsets only for partitions still
//! assigned, so a late call can never commit for a partition this instance no longer
//! owns, and it resends a stored offset until the broker accepted it, so an asynchronous
//! commit that failed is repeated by the next call (every batch and every
//! `commit_interval` tick makes one).
//!
//! - [`commit_progress`]: after each batch and on each tick, asynchronously; the broker's
//!   answer arrives later through [`on_commit_result`].
//! - [`commit_revoked`]: inside the revoke callback, synchronously, while the partitions
//!   are still assigned.
//! - [`commit_final`]: at shutdown, synchronously.

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{IsError, KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use super::Shared;

/// A commit list for `positions` (partition, next offset to read) of `topic`.
pub fn commit_list(topic: &str, positions: &[(i32, i64)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(positions.len());
    for (p, o) in positions {
        // Adding a fresh partition cannot fail; ignore the impossible error.
        let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(*o));
    }
    tpl
}

/// Store every done position that moved since the last commit and commit the stored
/// offsets asynchronously. A failure to submit is counted and logged here; the broker's
/// answer is counted by [`on_commit_result`].
pub fn commit_progress<C: ConsumerContext>(consumer: &impl Consumer<C>, shared: &Shared) {
    let positions = {
        let mut book = shared.book.lock();
        let positions = book.committable();
        book.mark_committed(&positions);
        positions
    };
    let submitted =
        store(consumer, shared, &positions).and_then(|()| commit_stored_async(consumer));
    if let Err(e) = submitted {
        shared.metrics.commit_failed();
        tracing::warn!(error = %e, ?positions, "offset commit failed; the next one retries");
        let mut book = shared.book.lock();
        for (p, o) in positions {
            book.commit_failed(p, o);
        }
    }
}

/// Commit `positions` of partitions being revoked, synchronously: they are still assigned
/// until the revoke callback returns. A failure is logged; the new owner redelivers.
pub fn commit_revoked<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    shared: &Shared,
    positions: &[(i32, i64)],
) {
    match store_and_commit_sync(consumer, shared, positions) {
        Ok(()) => tracing::info!(?positions, "committed revoked partitions"),
        Err(e) => tracing::warn!(
            error = %e, ?positions,
            "commit on revoke failed; the new owner redelivers"
        ),
    }
}

/// Commit every done position synchronously, once no batch runs any more (shutdown).
pub fn commit_final<C: ConsumerContext>(consumer: &impl Consumer<C>, shared: &Shared) {
    let positions = shared.book.lock().done_positions();
    match store_and_commit_sync(consumer, shared, &positions) {
        Ok(()) => tracing::info!(?positions, "final commit"),
        Err(e) => tracing::warn!(
            error = %e,
            "final commit failed; uncommitted records will be redelivered"
        ),
    }
}

/// The broker's answer to an asynchronous commit (from
/// `ConsumerContext::commit_callback`): counted, and logged when it failed. Nothing else
/// to do on failure: the offsets stay stored, and the next commit resends them.
pub fn on_commit_result(shared: &Shared, result: KafkaResult<()>, offsets: &TopicPartitionList) {
    let partition_refused = || offsets.elements().iter().any(|e| e.error().is_err());
    match result {
        // Nothing was stored beyond what is committed (an idle tick): not a commit.
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        // Per-partition errors are only formatted when there is a failure to log.
        Ok(()) if !partition_refused() => {
            shared.metrics.commit_ok();
            // The coordinator has the positions now: the committed gauge follows at once
            // rather than at the next statistics tick (a replay waits on it).
            for e in offsets.elements() {
                if let (true, Offset::Offset(o)) = (e.topic() == shared.topic, e.offset()) {
                    shared.metrics.set_committed(e.partition(), o);
                }
            }
        }
        outcome => {
            shared.metrics.commit_failed();
            let error = outcome.err().map(|e| e.to_string());
            let refused: Vec<(i32, String)> = offsets
                .elements()
                .iter()
                .filter_map(|e| e.error().err().map(|err| (e.partition(), err.to_string())))
                .collect();
            tracing::warn!(
                ?error,
                ?refused,
                "the group coordinator refused an offset commit; the next commit retries"
            );
        }
    }
}

fn store<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    shared: &Shared,
    positions: &[(i32, i64)],
) -> KafkaResult<()> {
    if positions.is_empty() {
        return Ok(());
    }
    consumer.store_offsets(&commit_list(&shared.topic, positions))
}

/// Store `positions` and commit the stored offsets synchronously, counting the result.
fn store_and_commit_sync<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    shared: &Shared,
    positions: &[(i32, i64)],
) -> KafkaResult<()> {
    store(consumer, shared, positions)?;
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {
            shared.metrics.commit_ok();
            Ok(())
        }
        // Nothing stored that is not committed yet.
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
        Err(e) => {
            shared.metrics.commit_failed();
            Err(e)
        }
    }
}

/// Commit the stored offsets asynchronously, with the broker's answer delivered to
/// `ConsumerContext::commit_callback`.
///
/// Why not `commit_consumer_state(CommitMode::Async)`: rust-rdkafka 0.39 submits it with
/// `rd_kafka_commit`, which gives librdkafka neither a reply queue nor a callback, so the
/// answer is dropped and the context's `commit_callback` never runs
/// (fede1024/rust-rdkafka#856). `rd_kafka_commit_queue` with the consumer's own queue makes
/// librdkafka post the answer there as an offset-commit event; the consumer's poll (the
/// runtime's stream) turns that event into the callback.
#[allow(unsafe_code)]
fn commit_stored_async<C: ConsumerContext>(consumer: &impl Consumer<C>) -> KafkaResult<()> {
    let rk = consumer.client().native_ptr();
    // SAFETY: `rk` is the live handle of `consumer`, which outlives this call. The queue
    // handle is a new reference to the consumer queue: librdkafka takes its own reference
    // for the reply (rd_kafka_replyq_make keeps the queue), so ours is released right after.
    // A null offset list means "the assignment's stored offsets", as in rd_kafka_commit;
    // a null callback means "deliver the result on the queue".
    let err = unsafe {
        let queue = rdsys::rd_kafka_queue_get_consumer(rk);
        if queue.is_null() {
            return Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::UnknownGroup));
        }
        let err =
            rdsys::rd_kafka_commit_queue(rk, std::ptr::null(), queue, None, std::ptr::null_mut());
        rdsys::rd_kafka_queue_destroy(queue);
        err
    };
    if err.is_error() {
        Err(KafkaError::ConsumerCommit(err.into()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn shared() -> Shared {
        Shared::new("t".into(), Metrics::new(), crate::health::Health::new())
    }

    #[test]
    fn answers_are_counted_by_outcome() {
        let s = shared();
        let tpl = commit_list("t", &[(0, 10)]);
        on_commit_result(&s, Ok(()), &tpl);
        on_commit_result(
            &s,
            Err(KafkaError::ConsumerCommit(
                RDKafkaErrorCode::RebalanceInProgress,
            )),
            &tpl,
        );
        // An idle tick: nothing stored beyond what is committed.
        on_commit_result(
            &s,
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)),
            &TopicPartitionList::new(),
        );
        let m = s.metrics.snapshot();
        assert_eq!((m.commits, m.commit_failures), (1, 1));
    }

    #[test]
    fn the_committed_gauge_follows_acknowledged_commits_of_owned_partitions() {
        let s = shared();
        s.metrics.partition_assigned(0);
        s.metrics.partition_assigned(1);
        let committed = |p: i32| s.metrics.partitions().get(&p).map(|x| x.committed);
        // Refused: the gauge stays where it was.
        on_commit_result(
            &s,
            Err(KafkaError::ConsumerCommit(
                RDKafkaErrorCode::RebalanceInProgress,
            )),
            &commit_list("t", &[(0, 10)]),
        );
        assert_eq!(committed(0), Some(-1));
        // Acknowledged: the gauge moves at once; another topic's and an unowned
        // partition's offsets are ignored.
        let mut tpl = commit_list("t", &[(0, 10), (1, 4), (7, 99)]);
        let _ = tpl.add_partition_offset("other", 1, Offset::Offset(500));
        on_commit_result(&s, Ok(()), &tpl);
        assert_eq!((committed(0), committed(1)), (Some(10), Some(4)));
        assert_eq!(committed(7), None);
        // Never backwards (a late answer to an older commit).
        on_commit_result(&s, Ok(()), &commit_list("t", &[(0, 6)]));
        assert_eq!(committed(0), Some(10));
    }
}
