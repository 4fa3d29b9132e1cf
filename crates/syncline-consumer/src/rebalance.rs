//! The consumer context: rebalance callbacks, commit results and statistics.
//!
//! librdkafka calls these from inside `recv()` on the task that owns the consumer, so they
//! see the offset book in a consistent state. On revoke, the partitions' complete offsets
//! are committed synchronously (`offsets::commit`) and their tracking is dropped: late outcomes of batches
//! still running for them are ignored (epochs), and the rest is redelivered to the new
//! owner. With `cooperative-sticky` (the default), assign and revoke are incremental: only
//! the listed partitions change hands. With an eager strategy (if configured through the
//! `kafka` map) every rebalance revokes everything first; the same code is correct for both.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};

use crate::offsets::{commit, Shared};

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
            // The broker-acknowledged position, whichever commit (of this instance or
            // of a previous owner) set it.
            if *p >= 0 && s.committed_offset >= 0 {
                self.shared.metrics.set_committed(*p, s.committed_offset);
            }
        }
    }
}

/// The runtime owns `assigned` from now on (a group assignment, or every partition of a
/// sole reader): track them in the offset book in a new epoch, and tell the driver.
pub(crate) fn took_partitions(shared: &Shared, assigned: &[i32]) {
    {
        let mut book = shared.book.lock();
        for p in assigned {
            book.assign(*p);
            shared.metrics.partition_assigned(*p);
        }
        shared.metrics.set_assigned(book.len());
        shared.health.set_assigned(book.len());
    }
    shared.generation.fetch_add(1, Ordering::AcqRel);
}

impl ConsumerContext for RuntimeContext {
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        commit::on_commit_result(&self.shared, result, offsets);
    }

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
                    self.shared.health.set_assigned(book.len());
                    positions
                };
                self.shared.generation.fetch_add(1, Ordering::AcqRel);
                if !positions.is_empty() {
                    if consumer.assignment_lost() {
                        // The group already gave the partitions away: a commit would be
                        // fenced. The new owner redelivers from the last commit.
                        tracing::warn!(?revoked, "assignment lost; not committing");
                    } else {
                        commit::commit_revoked(consumer, &self.shared, &positions);
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
            took_partitions(&self.shared, &assigned);
            let protocol = match consumer.rebalance_protocol() {
                RebalanceProtocol::Cooperative => "cooperative",
                RebalanceProtocol::Eager => "eager",
                RebalanceProtocol::None => "none",
            };
            tracing::info!(?assigned, protocol, "partitions assigned");
        }
    }
}
