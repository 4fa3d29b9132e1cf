//! The consumer loop: fetch, batch, decode, coalesce, apply, retry, dead-letter, commit.
//!
//! Shape: one loop owns the Kafka consumer. It copies records into the batch being built,
//! hands full (or lingering) batches to their own tasks (at most `max_in_flight_batches`),
//! pauses partitions whose records wait for a retry (and every partition while no batch
//! slot is free), and commits what the offset book says is complete. Batch tasks decode,
//! coalesce, call the sink, retry, dead-letter and mark offsets done in the book.
//! Rebalance callbacks run inside the loop's `recv()` and commit/forget revoked
//! partitions (see `rebalance`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, TopicPartitionList};
use syncline_event::{ChangeEvent, Limits};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::batch::{Batch, Group, RecordRef};
use crate::config::{ConfigError, RuntimeConfig};
use crate::dlq::{DeadLetter, DlqError, DlqWriter};
use crate::metrics::Metrics;
use crate::offsets::Registration;
use crate::rate::RateLimits;
use crate::rebalance::{store_and_commit, RuntimeContext, Shared};
use crate::retry::Backoff;
use crate::sink::{Outcome, Sink};

/// Why the runtime stopped with an error. A clean shutdown (token cancelled) is `Ok`.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The configuration does not validate.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The Kafka client could not be created or subscribed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A batch task panicked (a sink bug). What was complete is committed; the rest is
    /// redelivered after a restart.
    #[error("a batch task failed: {0}")]
    BatchTaskFailed(String),
    /// The metrics/health endpoint could not bind its address.
    #[error("cannot serve metrics on {addr}: {source}")]
    MetricsBind {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
}

/// How long the loop may stop reading (all batch slots busy) before it pauses every
/// partition instead. Well below any sane `max.poll.interval.ms`.
const STALL_BEFORE_PAUSE: Duration = Duration::from_millis(500);

/// Class of records dead-lettered after `retry_max_attempts` failed attempts.
pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";

/// Run `sink` until `shutdown` is cancelled, with a fresh [`Metrics`] registry.
pub async fn run<S: Sink>(
    config: RuntimeConfig,
    sink: S,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    run_with_metrics(config, sink, Metrics::new(), shutdown).await
}

/// The librdkafka consumer properties the runtime uses; `config.kafka` is applied last.
pub fn consumer_config(config: &RuntimeConfig) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // librdkafka prefetches up to 64 MiB per consumer by default, most of a small
        // consumer's RSS; 16 MiB still keeps several batches of 1 KiB records queued.
        .set("queued.max.messages.kbytes", "16384")
        // Once that queue is full librdkafka postpones the partition's next fetch by this
        // much (librdkafka: 1000 ms). A consumer that keeps up drains 16 MiB far sooner,
        // so the default left it idle most of each second: measured, it halved drain
        // throughput. Re-checking every 10 ms costs nothing noticeable.
        .set("fetch.queue.backoff.ms", "10")
        // A fetch waits at most this long for data on a quiet topic (librdkafka: 500 ms),
        // which bounds end-to-end latency at low load.
        .set("fetch.wait.max.ms", "100")
        // Feeds the per-partition high-watermark (lag) gauges; cheap at this interval.
        .set("statistics.interval.ms", "5000");
    for (k, v) in &config.kafka {
        cc.set(k, v);
    }
    cc
}

/// Run `sink` until `shutdown` is cancelled, recording into `metrics` (which the sink may
/// also hold to register its own counters). Returns `Ok` after a clean shutdown: in-flight
/// work finished or abandoned within `shutdown_timeout`, complete offsets committed, the
/// group left.
pub async fn run_with_metrics<S: Sink>(
    config: RuntimeConfig,
    sink: S,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    config.validate()?;
    metrics.set_dead_letter_alarm(config.unready_after_dead_letters);
    let shared = Arc::new(Shared::new(config.topic.clone(), metrics.clone()));
    let consumer: StreamConsumer<RuntimeContext> =
        consumer_config(&config).create_with_context(RuntimeContext::new(shared.clone()))?;
    let dlq = DlqWriter::new(&config, metrics.clone())?;

    let http_stop = CancellationToken::new();
    let http = match config.metrics_addr {
        Some(addr) => Some(
            crate::http::serve(
                addr,
                metrics.clone(),
                config.unready_after_retrying,
                http_stop.clone(),
            )
            .await
            .map_err(|source| RuntimeError::MetricsBind { addr, source })?,
        ),
        None => None,
    };

    dlq.check_topic().await;
    consumer.subscribe(&[config.topic.as_str()])?;
    tracing::info!(
        sink = sink.name(), topic = %config.topic, group = %config.group_id,
        dlq = %dlq.topic(), "consumer runtime started"
    );

    let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
    let abandon = CancellationToken::new();
    let work = Arc::new(Work {
        sink,
        dlq,
        shared: shared.clone(),
        metrics: metrics.clone(),
        limits: Limits {
            max_document_bytes: config.max_document_bytes,
        },
        rate: RateLimits::new(config.events_per_second, config.requests_per_second),
        backoff: Backoff {
            initial: config.retry_initial_backoff,
            max: config.retry_max_backoff,
        },
        max_attempts: config.retry_max_attempts,
        abandon: abandon.clone(),
        ctrl: ctrl_tx,
    });
    let mut driver = Driver {
        config: &config,
        work: work.clone(),
        shared: shared.clone(),
        slots: Arc::new(Semaphore::new(config.max_in_flight_batches)),
        tasks: JoinSet::new(),
        ctrl: ctrl_rx,
        building: Batch::new(),
        epochs: HashMap::new(),
        seen_generation: u64::MAX,
        retry_holds: HashMap::new(),
        backpressure: false,
        stalled_since: None,
        failure: None,
        paused: HashSet::new(),
        next_batch: 0,
    };

    driver.consume(&consumer, &shutdown).await;
    driver.shut_down(&consumer, &abandon).await;
    let failure = driver.failure.take();
    work.dlq.flush(Duration::from_secs(5));
    drop(driver);
    drop(work);

    // Dropping the consumer closes it: it leaves the group (running the revoke callback,
    // which commits anything complete) and blocks until done, so do it off the runtime.
    let closed = tokio::task::spawn_blocking(move || drop(consumer)).await;
    if let Err(e) = closed {
        tracing::warn!(error = %e, "closing the consumer failed");
    }
    http_stop.cancel();
    if let Some((_, task)) = http {
        let _ = task.await;
    }
    tracing::info!("consumer runtime stopped");
    match failure {
        Some(why) => Err(RuntimeError::BatchTaskFailed(why)),
        None => Ok(()),
    }
}

/// Messages from batch tasks to the consumer loop.
#[derive(Debug)]
enum Control {
    /// Batch `batch` has events waiting for a retry on these partitions: pause them.
    Retrying {
        batch: u64,
        partitions: Vec<(i32, u64)>,
    },
    /// Batch `batch` is finished (its slot is free): resume what it held, commit.
    Finished { batch: u64 },
}

/// What every batch task needs.
struct Work<S> {
    sink: S,
    dlq: DlqWriter,
    shared: Arc<Shared>,
    metrics: Metrics,
    limits: Limits,
    rate: RateLimits,
    backoff: Backoff,
    max_attempts: Option<u32>,
    abandon: CancellationToken,
    ctrl: mpsc::UnboundedSender<Control>,
}

struct Driver<'a, S> {
    config: &'a RuntimeConfig,
    work: Arc<Work<S>>,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    tasks: JoinSet<()>,
    ctrl: mpsc::UnboundedReceiver<Control>,
    building: Batch,
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
    next_batch: u64,
}

impl<S: Sink> Driver<'_, S> {
    async fn consume(
        &mut self,
        consumer: &StreamConsumer<RuntimeContext>,
        shutdown: &CancellationToken,
    ) {
        let mut commit_tick = tokio::time::interval(self.config.commit_interval);
        commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let linger = self.config.batch_linger;
        let (max_events, max_bytes) = (self.config.batch_max_events, self.config.batch_max_bytes);
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
                            self.on_message(&m);
                            // Drain what is already fetched without going back through
                            // select! and timers: this is the hot path.
                            while !self.building.is_full(max_events, max_bytes) {
                                match stream.next().now_or_never() {
                                    Some(Some(Ok(m))) => {
                                        self.sync_assignment(consumer);
                                        self.on_message(&m);
                                    }
                                    Some(Some(Err(e))) => {
                                        tracing::warn!(error = %e, "kafka consumer error");
                                        break;
                                    }
                                    _ => break,
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
            let full = self.building.is_full(max_events, max_bytes);
            if full || linger_over {
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
                let full = self
                    .building
                    .is_full(self.config.batch_max_events, self.config.batch_max_bytes);
                if self.backpressure || self.stalled_since.is_some() || full {
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

    /// Hand the batch being built to a task if a slot is free; otherwise pause everything
    /// until one is (the loop keeps polling so the group membership stays alive).
    fn dispatch(&mut self, consumer: &StreamConsumer<RuntimeContext>) {
        if self.building.is_empty() {
            return;
        }
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            let full = self
                .building
                .is_full(self.config.batch_max_events, self.config.batch_max_bytes);
            if full && self.stalled_since.is_none() {
                self.stalled_since = Some(tokio::time::Instant::now());
            }
            return;
        };
        self.stalled_since = None;
        let mut batch = std::mem::take(&mut self.building);
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

    /// Store every done position that moved and commit asynchronously. Called after
    /// each batch and on every `commit_interval` tick, which also resends a commit that
    /// failed (librdkafka reports no result for asynchronous manual commits).
    fn commit(&mut self, consumer: &StreamConsumer<RuntimeContext>) {
        let positions = {
            let mut book = self.shared.book.lock();
            let positions = book.committable();
            book.mark_committed(&positions);
            positions
        };
        if let Err(e) = store_and_commit(consumer, &self.shared, &positions, CommitMode::Async) {
            tracing::warn!(error = %e, ?positions, "offset commit failed; will retry");
            let mut book = self.shared.book.lock();
            for (p, o) in positions {
                book.commit_failed(p, o);
            }
        }
    }

    /// Stop fetching, let in-flight batches finish within `shutdown_timeout` (then abandon
    /// them), and commit what is complete, synchronously.
    async fn shut_down(
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
        let positions = self.shared.book.lock().done_positions();
        match store_and_commit(consumer, &self.shared, &positions, CommitMode::Sync) {
            Ok(()) => tracing::info!(?positions, "final commit"),
            Err(e) => tracing::warn!(
                error = %e,
                "final commit failed; uncommitted records will be redelivered"
            ),
        }
    }
}

/// One batch, start to finish: decode, dead-letter rejects, coalesce, apply, retry,
/// dead-letter sink rejects, mark offsets done.
async fn process<S: Sink>(work: Arc<Work<S>>, batch: Batch, id: u64, permit: OwnedSemaphorePermit) {
    let started = Instant::now();
    work.metrics.batch_started();
    let finished = run_batch(&work, &batch, id).await;
    if finished.is_err() {
        tracing::debug!(batch = id, "batch abandoned");
    }
    work.metrics.retrying_finished(id);
    work.metrics.batch_finished(started.elapsed());
    if finished.is_ok() {
        work.metrics.events_done(batch.timestamps(), now_ms());
    }
    drop(permit);
    let _ = work.ctrl.send(Control::Finished { batch: id });
}

/// Wall-clock milliseconds since the epoch, the unit of Kafka record timestamps.
fn now_ms() -> i64 {
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
    work.metrics.retrying_started(id);
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

    let (mut events, mut members): (Vec<ChangeEvent>, Vec<(usize, Vec<usize>)>) = prepared
        .groups
        .into_iter()
        .map(
            |Group {
                 event,
                 winner,
                 superseded,
             }| (event, (winner, superseded)),
        )
        .unzip();
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
                    done.extend_from_slice(&m.1);
                }
                Outcome::DeadLetter { class, reason } => {
                    // Only the surviving (newest) record goes to the DLQ: replaying it
                    // restores the newest state; the superseded ones are done with it.
                    sink_rejects.push((m.0, class, reason));
                    done.extend_from_slice(&m.1);
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
                done.extend_from_slice(&m.1);
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
