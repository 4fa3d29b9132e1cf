//! The consumer context: rebalance callbacks, commit callbacks and statistics.
//!
//! librdkafka calls these from inside `recv()` on the task that owns the consumer, so they
//! see the offset book in a consistent state. On revoke, the partitions' complete offsets
//! are committed synchronously and their tracking is dropped: late outcomes of batches
//! still running for them are ignored (epochs), and the rest is redelivered to the new
//! owner. With `cooperative-sticky` (the default), assign and revoke are incremental: only
//! the listed partitions change hands. With an eager strategy (if configured through the
//! `kafka` map) every rebalance revokes everything first; the same code is correct for both.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::metrics::Metrics;
use crate::offsets::OffsetBook;

/// State shared by the consumer loop, the batch tasks and the callbacks.
#[derive(Debug)]
pub struct Shared {
    /// Completion tracking of every owned partition.
    pub book: Mutex<OffsetBook>,
    /// Bumped on every assignment change, so the consumer loop notices cheaply.
    pub generation: AtomicU64,
    /// Metrics and health.
    pub metrics: Metrics,
    /// The source topic.
    pub topic: String,
}

impl Shared {
    /// Fresh state for `topic`.
    pub fn new(topic: String, metrics: Metrics) -> Self {
        Shared {
            book: Mutex::new(OffsetBook::default()),
            generation: AtomicU64::new(0),
            metrics,
            topic,
        }
    }
}

/// Build a commit list for `positions` of `topic`.
pub fn commit_list(topic: &str, positions: &[(i32, i64)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(positions.len());
    for (p, o) in positions {
        // Adding a fresh partition cannot fail; ignore the impossible error.
        let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(*o));
    }
    tpl
}

/// Store `positions` (the next offset to read per partition) and commit the consumer's
/// stored offsets. librdkafka commits stored offsets only for partitions still assigned,
/// so a late call can never commit for a partition this instance no longer owns, and an
/// asynchronous commit that failed is resent by the next call (stored != committed).
pub fn store_and_commit<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    shared: &Shared,
    positions: &[(i32, i64)],
    mode: CommitMode,
) -> KafkaResult<()> {
    if !positions.is_empty() {
        consumer.store_offsets(&commit_list(&shared.topic, positions))?;
    }
    match consumer.commit_consumer_state(mode) {
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

/// The runtime's [`ConsumerContext`].
#[derive(Debug)]
pub struct RuntimeContext {
    shared: Arc<Shared>,
}

impl RuntimeContext {
    /// A context over `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        RuntimeContext { shared }
    }

    fn partitions_of(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements()
            .iter()
            .filter(|e| e.topic() == self.shared.topic)
            .map(|e| e.partition())
            .collect()
    }
}

impl ClientContext for RuntimeContext {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.shared.topic) else {
            return;
        };
        for (p, s) in &topic.partitions {
            // Under read_committed the last stable offset is what this group can reach.
            let end = if s.ls_offset >= 0 {
                s.ls_offset
            } else {
                s.hi_offset
            };
            if *p >= 0 && end >= 0 {
                self.shared.metrics.set_high_watermark(*p, end);
            }
            // The broker-acknowledged commit: async commits report no result to the
            // application, so statistics are where success shows.
            if *p >= 0 && s.committed_offset >= 0 {
                self.shared.metrics.set_committed(*p, s.committed_offset);
            }
        }
    }
}

impl ConsumerContext for RuntimeContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let revoked = self.partitions_of(tpl);
                let positions: Vec<(i32, i64)> = {
                    let mut book = self.shared.book.lock();
                    let positions = revoked
                        .iter()
                        .filter_map(|p| {
                            book.revoke(*p)
                                .and_then(|a| a.offsets.done_position().map(|o| (*p, o)))
                        })
                        .collect();
                    self.shared.metrics.set_assigned(book.len());
                    positions
                };
                self.shared.generation.fetch_add(1, Ordering::AcqRel);
                if !positions.is_empty() {
                    if consumer.assignment_lost() {
                        // The group already gave the partitions away: a commit would be
                        // fenced. The new owner redelivers from the last commit.
                        tracing::warn!(?revoked, "assignment lost; not committing");
                    } else {
                        // The partitions are still assigned until this callback returns,
                        // so their stored offsets are committed now.
                        match store_and_commit(consumer, &self.shared, &positions, CommitMode::Sync)
                        {
                            Ok(()) => tracing::info!(?positions, "committed revoked partitions"),
                            Err(e) => tracing::warn!(
                                error = %e, ?positions,
                                "commit on revoke failed; the new owner redelivers"
                            ),
                        }
                    }
                }
                for p in &revoked {
                    self.shared.metrics.partition_revoked(*p);
                }
                tracing::info!(?revoked, "partitions revoked");
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => tracing::error!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let assigned = self.partitions_of(tpl);
            {
                let mut book = self.shared.book.lock();
                for p in &assigned {
                    book.assign(*p);
                    self.shared.metrics.partition_assigned(*p);
                }
                self.shared.metrics.set_assigned(book.len());
            }
            self.shared.generation.fetch_add(1, Ordering::AcqRel);
            let protocol = match consumer.rebalance_protocol() {
                RebalanceProtocol::Cooperative => "cooperative",
                RebalanceProtocol::Eager => "eager",
                RebalanceProtocol::None => "none",
            };
            tracing::info!(?assigned, protocol, "partitions assigned");
        }
    }
}
