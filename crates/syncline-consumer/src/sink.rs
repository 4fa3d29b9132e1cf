//! The contract between the runtime and a sink.

use std::future::Future;

use syncline_event::{ChangeEvent, EventRef};

/// What became of one event handed to [`Sink::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The store now reflects this event (or a newer version of the same entity).
    Applied,
    /// The store already held this version or a newer one; nothing was changed.
    Stale,
    /// A transient failure (timeout, connection, 429, 5xx, cluster block): the runtime
    /// retries this event with backoff and never commits past it meanwhile.
    Retry {
        /// Human-readable cause, logged and counted.
        reason: String,
    },
    /// A permanent failure for this event alone: it goes to the dead-letter topic.
    DeadLetter {
        /// Stable error class (e.g. `mapping_error`), sent as a DLQ header.
        class: String,
        /// Human-readable reason, sent as a DLQ header.
        reason: String,
    },
}

/// A store that change events are applied to.
///
/// Implementations must be idempotent and version-guarded: applying the same event twice,
/// or an older version after a newer one, must leave the store as the newest version left
/// it. The runtime coalesces each batch to at most one event per key (the highest
/// version) before calling [`Sink::apply`].
pub trait Sink: Send + Sync + 'static {
    /// Short name for logs and metrics (e.g. `elasticsearch`).
    fn name(&self) -> &'static str;

    /// Apply a batch. Must return exactly one outcome per event, in the same order.
    /// A failure that affects the whole batch (store unreachable) is reported as
    /// [`Outcome::Retry`] for every event.
    ///
    /// The events borrow the batch's record bytes (no copy per event); a sink that keeps
    /// one beyond the call takes [`EventRef::to_owned_event`].
    fn apply(&self, batch: &[EventRef<'_>]) -> impl Future<Output = Vec<Outcome>> + Send;

    /// [`Sink::apply`] for owned events (a caller that built them, such as a test).
    fn apply_owned(&self, batch: &[ChangeEvent]) -> impl Future<Output = Vec<Outcome>> + Send {
        async move {
            let views: Vec<EventRef<'_>> = batch.iter().map(ChangeEvent::view).collect();
            self.apply(&views).await
        }
    }
}
