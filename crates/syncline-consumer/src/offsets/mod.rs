//! Offsets: what is done, and every commit of it.
//!
//! One place owns the commit path. [`book`] tracks, per owned partition and assignment,
//! which registered records are done (its property tests prove a commit never passes
//! unfinished work); [`commit`] sends those positions to the group coordinator (after each
//! batch and on every tick, on revoke and at shutdown) and counts the broker's answers.
//! [`Shared`] is the state the consumer loop, the batch tasks and the rebalance callbacks
//! share.

pub mod book;
pub mod commit;

use std::sync::atomic::AtomicU64;

use parking_lot::Mutex;

pub use book::{Assigned, OffsetBook, PartitionOffsets, Registration};

use crate::health::Health;
use crate::metrics::Metrics;

/// State shared by the consumer loop, the batch tasks and the callbacks.
#[derive(Debug)]
pub struct Shared {
    /// Completion tracking of every owned partition.
    pub book: Mutex<OffsetBook>,
    /// Bumped on every assignment change, so the consumer loop notices cheaply.
    pub generation: AtomicU64,
    /// Metrics.
    pub metrics: Metrics,
    /// Readiness.
    pub health: Health,
    /// The source topic.
    pub topic: String,
}

impl Shared {
    /// Fresh state for `topic`.
    pub fn new(topic: String, metrics: Metrics, health: Health) -> Self {
        Shared {
            book: Mutex::new(OffsetBook::default()),
            generation: AtomicU64::new(0),
            metrics,
            health,
            topic,
        }
    }
}
