//! The consumer runtime: fetch, batch, decode, coalesce, apply, retry, dead-letter, commit.
//!
//! Shape: the [`driver`] is one loop that owns the Kafka consumer and hands batches to
//! [`batch_task`]s, which mark offsets done in the offset book; every commit is made by
//! `offsets::commit`. Rebalance callbacks run inside the driver's polls and commit/forget
//! revoked partitions (see `rebalance`). This module wires them together.

mod batch_task;
mod driver;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use syncline_event::Limits;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use batch_task::RETRIES_EXHAUSTED;

use crate::batch::BatchPool;
use crate::config::{ConfigError, RuntimeConfig};
use crate::dlq::DlqWriter;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::offsets::Shared;
use crate::rate::RateLimits;
use crate::rebalance::{took_partitions, RuntimeContext};
use crate::retry::Backoff;
use crate::sink::Sink;

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
    /// A sole reader ([`Membership::SoleReader`]) found no partition of its topic.
    #[error("topic {0} does not exist (no partition to read)")]
    NoSuchTopic(String),
    /// The metrics/health endpoint could not bind its address.
    #[error("cannot serve metrics on {addr}: {source}")]
    MetricsBind {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
}

/// How the runtime gets its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// Join the consumer group as one of its members: partitions are balanced across the
    /// instances and move between them on rebalances. What every sink binary does.
    Group,
    /// Read every partition of the topic without joining the group, from the group's
    /// committed offsets (else `auto.offset.reset`), committing to it as a non-member.
    /// For a consumer that is its group's only reader by construction, such as a
    /// rebuild's replay: it starts at once instead of after the join of a new group, which
    /// Kafka delays by `group.initial.rebalance.delay.ms` (3 s by default) and Tansu by
    /// half of `session.timeout.ms`.
    /// Nothing stops a second such reader, and tools see the group without members.
    SoleReader,
}

/// Run `sink` until `shutdown` is cancelled, with a fresh [`Metrics`] registry.
pub async fn run<S: Sink>(
    config: RuntimeConfig,
    sink: S,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    run_with_metrics(config, sink, Metrics::new(), shutdown).await
}

/// How long a sole reader waits for the topic's metadata at start.
const METADATA_TIMEOUT: Duration = Duration::from_secs(30);

/// [`Membership::SoleReader`]: assign every partition of the topic, each at "the
/// committed offset" (librdkafka looks the group's offsets up itself and applies
/// `auto.offset.reset` where there is none), and track them as a group assignment would.
/// The metadata is read first so that the lookups start at once (see
/// [`syncline_kafka::learn_partitions`]); it blocks the calling thread for that one
/// request, once, before anything else runs.
fn assign_every_partition(
    consumer: &StreamConsumer<RuntimeContext>,
    shared: &Shared,
) -> Result<(), RuntimeError> {
    let topic = shared.topic.as_str();
    let n = syncline_kafka::learn_partitions(consumer, topic, METADATA_TIMEOUT)?;
    if n == 0 {
        return Err(RuntimeError::NoSuchTopic(topic.to_owned()));
    }
    let partitions: Vec<i32> = (0..n).collect();
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Invalid)?;
    }
    // Tracked before the assignment, so no fetched record finds its partition unknown.
    took_partitions(shared, &partitions);
    consumer.assign(&tpl)?;
    tracing::info!(assigned = ?partitions, "every partition assigned (sole reader, no group join)");
    Ok(())
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
        // consumer's RSS: each queued MiB cost about 3 MiB of RSS in the 1M-event Redis
        // drains (fetch and decompression buffers ride along). With 1 KiB records 16, 8, 4
        // and 2 MiB drained at the same rate; with 16 KiB records 4 MiB (less than one
        // full 5 MiB batch) drained 15-20 % slower than 16 and 8 MiB about as fast
        // (docs/benchmarks.md). 8 MiB keeps a full batch queued for either.
        .set("queued.max.messages.kbytes", "8192")
        // Once that queue is full librdkafka postpones the partition's next fetch by this
        // much (librdkafka: 1000 ms). A consumer that keeps up drains 8 MiB far sooner,
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
/// also hold to register its own metrics), with a fresh [`Health`]. Returns `Ok` after a
/// clean shutdown: in-flight work finished or abandoned within `shutdown_timeout`,
/// complete offsets committed, the group left.
pub async fn run_with_metrics<S: Sink>(
    config: RuntimeConfig,
    sink: S,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    run_with(
        config,
        sink,
        metrics,
        Health::new(),
        Membership::Group,
        shutdown,
    )
    .await
}

/// [`run_with_metrics`], reporting readiness into `health` (for a caller that watches
/// what `/readyz` would answer), with partitions taken as `membership` says. `health`'s
/// dead-letter alarm is set from `config.unready_after_dead_letters`.
pub async fn run_with<S: Sink>(
    config: RuntimeConfig,
    sink: S,
    metrics: Metrics,
    health: Health,
    membership: Membership,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    config.validate()?;
    health.set_dead_letter_alarm(config.unready_after_dead_letters);
    let shared = Arc::new(Shared::new(
        config.topic.clone(),
        metrics.clone(),
        health.clone(),
    ));
    let consumer: StreamConsumer<RuntimeContext> =
        consumer_config(&config).create_with_context(RuntimeContext::new(shared.clone()))?;
    let dlq = DlqWriter::new(&config, metrics.clone(), health.clone())?;

    let http_stop = CancellationToken::new();
    let http = match config.metrics_addr {
        Some(addr) => Some(
            crate::http::serve(
                addr,
                metrics.clone(),
                health.clone(),
                config.unready_after_retrying,
                http_stop.clone(),
            )
            .await
            .map_err(|source| RuntimeError::MetricsBind { addr, source })?,
        ),
        None => None,
    };

    dlq.check_topic().await;
    match membership {
        Membership::Group => consumer.subscribe(&[config.topic.as_str()])?,
        Membership::SoleReader => assign_every_partition(&consumer, &shared)?,
    }
    tracing::info!(
        sink = sink.name(), topic = %config.topic, group = %config.group_id,
        dlq = %dlq.topic(), ?membership, "consumer runtime started"
    );

    let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
    let abandon = CancellationToken::new();
    let work = Arc::new(batch_task::Work {
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
        // Batches in flight plus the one being built; buffers up to twice a full batch.
        pool: BatchPool::new(
            config.max_in_flight_batches + 1,
            config.batch_max_bytes.saturating_mul(2),
        ),
    });
    let mut driver = driver::Driver::new(&config, work.clone(), shared.clone(), ctrl_rx);

    driver.consume(&consumer, &shutdown).await;
    driver.shut_down(&consumer, &abandon).await;
    let failure = driver.take_failure();
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
