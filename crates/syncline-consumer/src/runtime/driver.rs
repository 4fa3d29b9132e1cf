//! The Kafka driver: the one loop that owns the consumer. It copies fetched records into
//! the batch being built, hands full (or lingering) batches to batch tasks (at most
//! `max_in_flight_batches`), pauses partitions whose records wait for a retry (and every
//! partition while no batch slot is free), serves the rebalance callbacks through its
//! polls, and commits (`offsets::commit`) after every batch and on every tick.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::TopicPartitionList;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::batch_task::{now_ms, process, Control, Work};
use crate::batch::{Batch, RecordRef};
use crate::config::RuntimeConfig;
use crate::offsets::{commit, Registration, Shared};
use crate::rebalance::RuntimeContext;
use crate::sink::Sink;

/// How long the loop may stop reading (all batch slots busy) before it pauses every
/// partition instead. Well below any sane `max.poll.interval.ms`.
const STALL_BEFORE_PAUSE: Duration = Duration::from_millis(500);

/// The consumer loop's state.
pub(super) struct Driver<'a, S> {
    config: &'a RuntimeConfig,
    work: Arc<Work<S>>,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    tasks: JoinSet<()>,
    ctrl: mpsc::UnboundedReceiver<Control>,
    building: Batch,
    /// Records a batch holds at most (`RuntimeConfig::batch_event_limit`, fixed for the run).
    batch_events: usize,
    /// The loop's copy of each owned partition's epoch, refreshed when the generation
    /// changes, so stamping a record needs no lock.
    epochs: HashMap<i32, u64>,
    seen_generation: u64,
    /// Partition -> batches (with the epoch they hold it in) waiting to retry on it.
    retry_holds: HashMap<i32, HashMap<u64, u64>>,
    /// No batch slot is free and the batch being built is full: every partition paused.
    backpressure: bool,
    /// Since when the batch being built is full and no slot is free. For a short while
    /// the loop just stops reading (librdkafka keeps what it prefetched); only if that
    /// lasts does it pause the partitions, which throws the prefetched records away but
    /// lets the loop keep polling (group membership, `max.poll.interval.ms`).
    stalled_since: Option<tokio::time::Instant>,
    /// Why the loop stopped on its own (a batch task panicked).
    failure: Option<String>,
    /// Partitions currently paused in librdkafka.
    paused: HashSet<i32>,
    /// Every record fetched so far has been read into the batch being built (the last
    /// read found librdkafka's queue empty). Kept across loop turns, so that a batch
    /// finishing can send the waiting one at once (`sink_idle`).
    caught_up: bool,
    next_batch: u64,
}

impl<'a, S: Sink> Driver<'a, S> {
    /// A driver for `config`, handing batches to tasks that share `work`.
    pub(super) fn new(
        config: &'a RuntimeConfig,
        work: Arc<Work<S>>,
        shared: Arc<Shared>,
        ctrl: mpsc::UnboundedReceiver<Control>,
    ) -> Self {
        Driver {
            config,
            work,
            shared,
            slots: Arc::new(Semaphore::new(config.max_in_flight_batches)),
            tasks: JoinSet::new(),
            ctrl,
            building: Batch::new(),
            batch_events: config.batch_event_limit(),
            epochs: HashMap::new(),
            seen_generation: u64::MAX,
            retry_holds: HashMap::new(),
            backpressure: false,
            stalled_since: None,
            failure: None,
            paused: HashSet::new(),
            caught_up: false,
            next_batch: 0,
        }
    }

    /// Why the loop stopped on its own, if it did (a batch task panicked).
    pub(super) fn take_failure(&mut self) -> Option<String> {
        self.failure.take()
    }

    /// Fetch, batch and dispatch until `shutdown` is cancelled or a batch task fails.
    pub(super) async fn consume(
        &mut self,
        consumer: &StreamConsumer<RuntimeContext>,
        shutdown: &CancellationToken,
    ) {
        let mut commit_tick = tokio::time::interval(self.config.commit_interval);
        commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let linger = self.config.batch_linger;
        // One stream for the whole run: it registers its waker once, where `recv()` would
        // register and unregister one per message.
        let mut stream = consumer.stream();
        loop {
            let deadline = self
                .building
                .started()
                .map(|s| tokio::time::Instant::from_std(s + linger));
            let lingering = deadline.is_some();
            let sleep_until = deadline.unwrap_or_else(tokio::time::Instant::now);
            // While stalled (full batch, no free slot) stop reading; after a while,
            // pause instead so polling can go on.
            let reading = self.stalled_since.is_none() || self.backpressure;
            let stall_limit = self
                .stalled_since
                .filter(|_| !self.backpressure)
                .map(|since| since + STALL_BEFORE_PAUSE);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                Some(c) = self.ctrl.recv() => {
                    self.on_control(c, consumer);
                    self.commit(consumer);
                }
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Err(e) = joined {
                        // A panicking sink is a bug. Its records can never be done, so
                        // their partitions could never commit again: stop (cleanly, with
                        // what is complete committed) and let the process restart.
                        tracing::error!(error = %e, "batch task failed; shutting down");
                        self.failure = Some(e.to_string());
                        return;
                    }
                }
                _ = tokio::time::sleep_until(stall_limit.unwrap_or_else(tokio::time::Instant::now)), if stall_limit.is_some() => {
                    self.backpressure = true;
                    self.update_pauses(consumer, false);
                }
                m = stream.next(), if reading => {
                    self.sync_assignment(consumer);
                    match m {
                        Some(Ok(m)) => {
                            self.caught_up = false;
                            self.on_message(&m);
                            // Drain what is already fetched without going back through
                            // select! and timers: this is the hot path.
                            while !self.batch_full() {
                                match stream.next().now_or_never() {
                                    Some(Some(Ok(m))) => {
                                        self.sync_assignment(consumer);
                                        self.on_message(&m);
                                    }
                                    Some(Some(Err(e))) => {
                                        tracing::warn!(error = %e, "kafka consumer error");
                                        break;
                                    }
                                    Some(None) => break,
                                    None => {
                                        self.caught_up = true;
                                        break;
                                    }
                                }
                            }
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "kafka consumer error");
                            // Avoid spinning on a persistent error.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        None => {}
                    }
                }
                _ = tokio::time::sleep_until(sleep_until), if lingering => {}
                _ = commit_tick.tick() => self.commit(consumer),
            }
            self.sync_assignment(consumer);
            let linger_over = self
                .building
                .started()
                .is_some_and(|s| s.elapsed() >= linger);
            if self.batch_full() || linger_over || (self.caught_up && self.sink_idle()) {
                self.dispatch(consumer);
            }
        }
    }

    fn on_message(&mut self, m: &rdkafka::message::BorrowedMessage<'_>) {
        if m.topic() != self.shared.topic {
            return;
        }
        let partition = m.partition();
        let Some(&epoch) = self.epochs.get(&partition) else {
            // Not (or no longer) ours: librdkafka may still hand over a fetched record of
            // a partition revoked a moment ago. Its new owner reads it.
            return;
        };
        let at = RecordRef {
            partition,
            epoch,
            offset: m.offset(),
        };
        let timestamp_ms = m.timestamp().to_millis();
        if let Some(t) = timestamp_ms {
            self.work.metrics.fetched(t, now_ms());
        }
        self.building.push(at, timestamp_ms, m.key(), m.payload());
    }

    /// After a rebalance: refresh epochs, drop records of revoked partitions from the
    /// batch being built, forget pause state of partitions that changed hands.
    fn sync_assignment(&mut self, consumer: &StreamConsumer<RuntimeContext>) {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation == self.seen_generation {
            return;
        }
        self.seen_generation = generation;
        {
            let book = self.shared.book.lock();
            self.epochs = book
                .partitions()
                .into_iter()
                .filter_map(|p| book.epoch(p).map(|e| (p, e)))
                .collect();
        }
        let epochs = &self.epochs;
        self.building
            .retain(|r| epochs.get(&r.partition) == Some(&r.epoch));
        // A revoked partition is no longer paused in librdkafka; a reassigned one starts
        // unpaused.
        self.paused.clear();
        self.update_pauses(consumer, true);
    }

    fn on_control(&mut self, c: Control, consumer: &StreamConsumer<RuntimeContext>) {
        match c {
            Control::Retrying { batch, partitions } => {
                for (p, epoch) in partitions {
                    self.retry_holds.entry(p).or_default().insert(batch, epoch);
                }
            }
            Control::Finished { batch } => {
                for holds in self.retry_holds.values_mut() {
                    holds.remove(&batch);
                }
                self.retry_holds.retain(|_, h| !h.is_empty());
                // A slot is free: the waiting batch can go.
                if self.backpressure || self.stalled_since.is_some() || self.batch_full() {
                    self.dispatch(consumer);
                }
            }
        }
        self.update_pauses(consumer, false);
    }

    /// Pause exactly the partitions that must not be fetched: all of them under
    /// backpressure, else those with events waiting for a retry (in the current epoch).
    fn update_pauses(&mut self, consumer: &StreamConsumer<RuntimeContext>, force: bool) {
        let want: HashSet<i32> = if self.backpressure {
            self.epochs.keys().copied().collect()
        } else {
            self.retry_holds
                .iter()
                .filter(|(p, holds)| {
                    let current = self.epochs.get(p);
                    holds.values().any(|e| Some(e) == current)
                })
                .map(|(p, _)| *p)
                .collect()
        };
        if !force && want == self.paused {
            return;
        }
        let to_pause: Vec<i32> = want.difference(&self.paused).copied().collect();
        let to_resume: Vec<i32> = if force {
            self.epochs
                .keys()
                .filter(|p| !want.contains(p))
                .copied()
                .collect()
        } else {
            self.paused.difference(&want).copied().collect()
        };
        let topic = self.shared.topic.as_str();
        if !to_pause.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for p in &to_pause {
                tpl.add_partition(topic, *p);
            }
            match consumer.pause(&tpl) {
                Ok(()) => tracing::debug!(partitions = ?to_pause, "paused"),
                Err(e) => tracing::warn!(error = %e, partitions = ?to_pause, "pause failed"),
            }
        }
        if !to_resume.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for p in &to_resume {
                tpl.add_partition(topic, *p);
            }
            match consumer.resume(&tpl) {
                Ok(()) => tracing::debug!(partitions = ?to_resume, "resumed"),
                Err(e) => tracing::warn!(error = %e, partitions = ?to_resume, "resume failed"),
            }
        }
        self.paused = want;
    }

    /// The batch being built holds as many records or bytes as a batch may.
    fn batch_full(&self) -> bool {
        self.building
            .is_full(self.batch_events, self.config.batch_max_bytes)
    }

    /// No batch is being applied: the sink would wait for nothing but the linger.
    ///
    /// Why a batch goes early then: the linger exists to gather records while the sink is
    /// busy with earlier ones. With the sink idle and every fetched record read, waiting
    /// only adds latency: at 5,000 events/s the indexer's own share (read to acknowledged)
    /// went from 40 to 3 ms at the median. The check also runs when a batch finishes, so
    /// records read while it was applied go as soon as it is done rather than with the
    /// next fetch or the linger. Under load batches are in flight, so they still
    /// fill up to `batch_max_events` within the linger (a 1M-event Redis drain measured the
    /// same with and without this); the batch size follows the sink's own latency.
    fn sink_idle(&self) -> bool {
        self.slots.available_permits() == self.config.max_in_flight_batches
    }

    /// Hand the batch being built to a task if a slot is free; otherwise pause everything
    /// until one is (the loop keeps polling so the group membership stays alive).
    fn dispatch(&mut self, consumer: &StreamConsumer<RuntimeContext>) {
        if self.building.is_empty() {
            return;
        }
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            if self.batch_full() && self.stalled_since.is_none() {
                self.stalled_since = Some(tokio::time::Instant::now());
            }
            return;
        };
        self.stalled_since = None;
        let fresh = self.work.pool.take();
        let mut batch = std::mem::replace(&mut self.building, fresh);
        let mut redelivered: Vec<(i32, i64, i64)> = Vec::new();
        {
            // Register in delivery order; records of revoked assignments (and
            // redeliveries of already tracked offsets) are dropped here.
            let mut book = self.shared.book.lock();
            batch.retain(|r| match book.register(r.partition, r.epoch, r.offset) {
                Registration::Registered => true,
                Registration::NotOwned => false,
                Registration::AtOrBelowLast { last } => {
                    redelivered.push((r.partition, r.offset, last));
                    false
                }
            });
        }
        if let Some(&(partition, offset, last)) = redelivered.first() {
            // The first copy is tracked and will be committed over only once done, so
            // dropping this one loses nothing; it is counted because it should be rare.
            self.work.metrics.offsets_dropped(redelivered.len() as u64);
            tracing::warn!(
                count = redelivered.len(), partition, offset, last_registered = last,
                "dropped records at or below an offset already registered (redelivered within one assignment)"
            );
        }
        if self.backpressure {
            self.backpressure = false;
            self.update_pauses(consumer, false);
        }
        if batch.is_empty() {
            return;
        }
        self.work.metrics.consumed(batch.len() as u64);
        let id = self.next_batch;
        self.next_batch += 1;
        let work = self.work.clone();
        self.tasks.spawn(process(work, batch, id, permit));
    }

    /// Commit what is done (after each batch and on every tick).
    fn commit(&self, consumer: &StreamConsumer<RuntimeContext>) {
        commit::commit_progress(consumer, &self.shared);
    }

    /// Stop fetching, let in-flight batches finish within `shutdown_timeout` (then abandon
    /// them), and commit what is complete, synchronously.
    pub(super) async fn shut_down(
        &mut self,
        consumer: &StreamConsumer<RuntimeContext>,
        abandon: &CancellationToken,
    ) {
        tracing::info!(
            in_flight = self.tasks.len(),
            timeout = ?self.config.shutdown_timeout,
            "shutting down: draining in-flight batches within the shutdown timeout (a second signal exits at once)"
        );
        // Records not yet handed to a task were never registered: dropping them leaves
        // them uncommitted, so they are redelivered.
        self.building = Batch::new();
        self.backpressure = true;
        self.update_pauses(consumer, true);
        let deadline = tokio::time::Instant::now() + self.config.shutdown_timeout;
        while !self.tasks.is_empty() {
            tokio::select! {
                biased;
                Some(joined) = self.tasks.join_next() => {
                    if let Err(e) = joined {
                        tracing::error!(error = %e, "batch task failed");
                    }
                }
                Some(Control::Retrying { .. } | Control::Finished { .. }) = self.ctrl.recv() => {
                    self.commit(consumer);
                }
                // Keep serving the consumer (rebalance callbacks, membership); anything
                // fetched now is dropped uncommitted.
                _ = consumer.recv() => {
                    self.sync_assignment(consumer);
                    self.building = Batch::new();
                }
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(in_flight = self.tasks.len(), "shutdown timeout: abandoning in-flight batches (they stay uncommitted)");
                    abandon.cancel();
                    // Tasks stop at their next await point; give them a moment, then
                    // abort whatever is stuck inside the sink.
                    let grace = tokio::time::sleep(Duration::from_secs(2));
                    tokio::pin!(grace);
                    loop {
                        tokio::select! {
                            j = self.tasks.join_next() => if j.is_none() { break },
                            _ = &mut grace => { self.tasks.abort_all(); }
                        }
                    }
                    break;
                }
            }
        }
        commit::commit_final(consumer, &self.shared);
    }
}
