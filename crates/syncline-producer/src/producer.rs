//! The [`Producer`]: validates, encodes and publishes change events.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use syncline_event::{ChangeEvent, EncodeError, Limits, SchemaRegistry};

use crate::config::{ConfigError, ProducerConfig};
use crate::error::{ProducerError, PublishError, PublishManyError};
use crate::trace::{current_traceparent, TraceParent};
use syncline_kafka::validate_topic_name;
pub use syncline_kafka::TopicStatus;

/// Header naming the payload format of every record.
pub const CONTENT_TYPE_HEADER: &str = "content-type";
/// Value of [`CONTENT_TYPE_HEADER`]: an Avro single-object encoded `ChangeEvent`.
pub const CONTENT_TYPE: &str = "application/vnd.syncline.change-event+avro";

/// Header carrying the W3C trace context, present only when one is known (see
/// [`crate::trace`]).
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The headers of every published record: `content-type`, and `traceparent` when a trace
/// context is given (one place for both producers).
pub(crate) fn record_headers(traceparent: Option<&str>) -> OwnedHeaders {
    let headers = OwnedHeaders::new_with_capacity(2).insert(Header {
        key: CONTENT_TYPE_HEADER,
        value: Some(CONTENT_TYPE),
    });
    match traceparent {
        Some(tp) => headers.insert(Header {
            key: TRACEPARENT_HEADER,
            value: Some(tp),
        }),
        None => headers,
    }
}

/// Where an event was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delivery {
    /// The partition.
    pub partition: i32,
    /// The record's offset in that partition.
    pub offset: i64,
}

/// What the broker says about the cluster and the configured topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// Number of brokers in the cluster metadata.
    pub brokers: usize,
    /// Partitions of the configured topic, `None` when it does not exist.
    pub topic_partitions: Option<usize>,
}

thread_local! {
    /// Per-thread encode buffer reused across events.
    static ENCODE_BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(16 * 1024));
}

/// A buffer grown past this by one huge event is released rather than kept.
pub(crate) const MAX_KEPT_BUFFER: usize = 256 * 1024;

/// How often a full local queue (or, for [`crate::BulkProducer`], a wait for room or for
/// the last acknowledgements) is re-checked: 1 ms against a delivery round trip of
/// milliseconds keeps the pipeline full without spinning, and without a wake-up per
/// acknowledgement.
pub(crate) const RECHECK: Duration = Duration::from_millis(1);

pub(crate) fn encode_error(e: EncodeError, event: &ChangeEvent) -> PublishError {
    match e {
        EncodeError::Invalid(v) => PublishError::Invalid(v),
        EncodeError::Avro(reason) => PublishError::Encode {
            key: event.key(),
            reason,
        },
    }
}

/// librdkafka callbacks: logs go to `tracing`, and the last client-level error (e.g.
/// "Connect to ipv4#127.0.0.1:1 failed: Connection refused") is kept so that an
/// unreachable broker can be reported with its cause.
#[derive(Default)]
pub(crate) struct ProducerClientContext {
    last_error: LastError,
}

impl ProducerClientContext {
    /// A context recording client-level errors into `last_error`.
    pub(crate) fn new(last_error: LastError) -> Self {
        ProducerClientContext { last_error }
    }
}

#[derive(Default, Clone)]
pub(crate) struct LastError(Arc<Mutex<Option<String>>>);

impl LastError {
    pub(crate) fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|e| e.clone())
    }

    fn set(&self, reason: &str) {
        if let Ok(mut last) = self.0.lock() {
            *last = Some(reason.to_owned());
        }
    }
}

impl ClientContext for ProducerClientContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", facility = fac, "{message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "{reason}");
        // "1/1 brokers are down" says less than the connection error before it.
        let summary_only = error == KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
        if !summary_only || self.last_error.get().is_none() {
            self.last_error.set(reason);
        }
    }
}

/// Publishes [`ChangeEvent`]s to one topic with `enable.idempotence=true` and `acks=all`.
///
/// Every event is validated against the configured [`Limits`] before anything is sent;
/// the record key is [`ChangeEvent::key`] and the value its Avro single-object encoding.
/// Cheap to share: wrap it in an `Arc` (all methods take `&self`).
///
/// Call [`Producer::flush`] before dropping it: dropping purges events that are still
/// queued, and their pending deliveries fail with [`PublishError::Canceled`].
pub struct Producer {
    inner: FutureProducer<ProducerClientContext>,
    last_error: LastError,
    config: ProducerConfig,
    limits: Limits,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("brokers", &self.config.brokers)
            .field("topic", &self.config.topic)
            .finish_non_exhaustive()
    }
}

/// A published event whose acknowledgement is still outstanding; await it for the
/// [`Delivery`].
#[must_use = "a pending delivery says nothing until it is awaited"]
pub struct PendingDelivery {
    fut: DeliveryFuture,
    key: String,
    timeout: Duration,
}

impl std::fmt::Debug for PendingDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingDelivery")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl PendingDelivery {
    /// The record key of the event.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl Future for PendingDelivery {
    type Output = Result<Delivery, PublishError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.fut.poll_unpin(cx).map(|res| match res {
            Ok(Ok(d)) => Ok(Delivery {
                partition: d.partition,
                offset: d.offset,
            }),
            Ok(Err((error, _message))) => Err(PublishError::from_kafka(
                std::mem::take(&mut this.key),
                error,
                this.timeout,
            )),
            Err(_canceled) => Err(PublishError::Canceled {
                key: std::mem::take(&mut this.key),
            }),
        })
    }
}

impl Producer {
    /// Validate the configuration and create the client. No broker is contacted yet: use
    /// [`Producer::check_connection`] to find out early whether one answers.
    pub fn new(config: ProducerConfig) -> Result<Producer, ProducerError> {
        config.validate()?;
        let client_config = client_config(&config);
        let last_error = LastError::default();
        let context = ProducerClientContext::new(last_error.clone());
        let inner = client_config
            .create_with_context(context)
            .map_err(config_error)?;
        Ok(Producer {
            inner,
            last_error,
            limits: config.limits(),
            config,
        })
    }

    /// The configuration this producer was built with.
    pub fn config(&self) -> &ProducerConfig {
        &self.config
    }

    /// The limits events are validated against.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Publish one event and wait until the broker acknowledged it (all in-sync replicas),
    /// or the delivery timeout passed. The `traceparent` header comes from the current
    /// `tracing` span (see [`crate::trace`]).
    pub async fn publish(&self, event: &ChangeEvent) -> Result<Delivery, PublishError> {
        self.send(event).await?.await
    }

    /// [`Producer::publish`] with an explicit trace context (`None`: no `traceparent`
    /// header, whatever the current span carries).
    pub async fn publish_with_traceparent(
        &self,
        event: &ChangeEvent,
        traceparent: Option<TraceParent>,
    ) -> Result<Delivery, PublishError> {
        self.send_with_traceparent(event, traceparent).await?.await
    }

    /// Validate, encode and hand one event to librdkafka, without waiting for the
    /// acknowledgement: await the returned [`PendingDelivery`] for that. This is the
    /// building block for pipelines that keep many events in flight; events sent one after
    /// another keep their order within a partition (idempotent producer).
    ///
    /// Waits only while librdkafka's local queue is full, at most the delivery timeout
    /// ([`PublishError::QueueFull`]).
    pub async fn send(&self, event: &ChangeEvent) -> Result<PendingDelivery, PublishError> {
        self.send_with_traceparent(event, current_traceparent())
            .await
    }

    /// [`Producer::send`] with an explicit trace context.
    pub async fn send_with_traceparent(
        &self,
        event: &ChangeEvent,
        traceparent: Option<TraceParent>,
    ) -> Result<PendingDelivery, PublishError> {
        let key = event.key();
        let traceparent = traceparent.map(|tp| tp.to_string());
        let headers = record_headers(traceparent.as_deref());
        let timeout = self.config.delivery_timeout;

        // Fast path: encode into a reused per-thread buffer (librdkafka copies the bytes),
        // so the common case allocates no payload of its own.
        let first = ENCODE_BUFFER.with_borrow_mut(|buf| {
            buf.clear();
            SchemaRegistry::builtin()
                .encode_into(event, &self.limits, buf)
                .map_err(|e| encode_error(e, event))?;
            let record = FutureRecord::to(&self.config.topic)
                .key(key.as_str())
                .payload(buf.as_slice())
                .headers(headers);
            let outcome = match self.inner.send_result(record) {
                Ok(fut) => Ok(fut),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), mut back)) => {
                    // Keep the bytes and headers for the waiting loop below.
                    Err((buf.clone(), back.headers.take()))
                }
                Err((error, _)) => {
                    return Err(PublishError::from_kafka(key.clone(), error, timeout))
                }
            };
            if buf.capacity() > MAX_KEPT_BUFFER {
                *buf = Vec::new();
            }
            Ok(outcome)
        })?;
        let (payload, headers) = match first {
            Ok(fut) => return Ok(PendingDelivery { fut, key, timeout }),
            Err(kept) => kept,
        };

        // The local queue is full: wait for room, at most the delivery timeout.
        let deadline = Instant::now() + timeout;
        let mut record = FutureRecord::to(&self.config.topic)
            .key(key.as_str())
            .payload(payload.as_slice());
        record.headers = headers;
        loop {
            if Instant::now() >= deadline {
                return Err(PublishError::QueueFull {
                    key: key.clone(),
                    after: timeout,
                });
            }
            // Room appears as acknowledgements arrive.
            tokio::time::sleep(RECHECK).await;
            match self.inner.send_result(record) {
                Ok(fut) => return Ok(PendingDelivery { fut, key, timeout }),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                }
                Err((error, _)) => {
                    return Err(PublishError::from_kafka(key.clone(), error, timeout))
                }
            }
        }
    }

    /// Publish several events, at most `max_in_flight` unacknowledged at a time (at least
    /// 1), and return their deliveries in input order.
    ///
    /// Every event is validated first: if one is invalid, nothing is published
    /// ([`PublishManyError::Invalid`]). If a send or delivery fails, no further event is
    /// sent, those in flight are awaited, and [`PublishManyError::Failed`] says which were
    /// acknowledged. Events of the same key keep their input order.
    pub async fn publish_many<'a, I>(
        &self,
        events: I,
        max_in_flight: usize,
    ) -> Result<Vec<Delivery>, PublishManyError>
    where
        I: IntoIterator<Item = &'a ChangeEvent>,
    {
        let events: Vec<&ChangeEvent> = events.into_iter().collect();
        for (index, event) in events.iter().enumerate() {
            event
                .validate(&self.limits)
                .map_err(|error| PublishManyError::Invalid { index, error })?;
        }
        let traceparent = current_traceparent();
        let max_in_flight = max_in_flight.max(1);
        let total = events.len();
        let mut deliveries: Vec<Option<Delivery>> = vec![None; total];
        let mut first_error: Option<(usize, PublishError)> = None;
        let mut record_error = |index: usize, error: PublishError| match &first_error {
            Some((i, _)) if *i <= index => {}
            _ => first_error = Some((index, error)),
        };
        // Each event's delivery slot travels with its pending delivery.
        let mut window: VecDeque<(usize, &mut Option<Delivery>, PendingDelivery)> =
            VecDeque::with_capacity(max_in_flight.min(total));
        for ((index, event), slot) in events.iter().enumerate().zip(deliveries.iter_mut()) {
            if window.len() >= max_in_flight {
                if let Some((i, done, pending)) = window.pop_front() {
                    match pending.await {
                        Ok(d) => *done = Some(d),
                        Err(e) => {
                            record_error(i, e);
                            break;
                        }
                    }
                }
            }
            match self.send_with_traceparent(event, traceparent).await {
                Ok(p) => window.push_back((index, slot, p)),
                Err(e) => {
                    record_error(index, e);
                    break;
                }
            }
        }
        for (i, done, pending) in window {
            match pending.await {
                Ok(d) => *done = Some(d),
                Err(e) => record_error(i, e),
            }
        }
        match first_error {
            None => Ok(deliveries.into_iter().flatten().collect()),
            Some((index, error)) => Err(PublishManyError::Failed {
                index,
                error,
                delivered: deliveries.iter().flatten().count(),
                deliveries,
                total,
            }),
        }
    }

    /// Wait until every event handed to the producer is acknowledged or failed, at most
    /// `timeout`. Runs librdkafka's blocking flush on tokio's blocking pool.
    pub async fn flush(&self, timeout: Duration) -> Result<(), ProducerError> {
        let inner = self.inner.clone();
        let result = tokio::task::spawn_blocking(move || {
            inner
                .flush(Timeout::After(timeout))
                .map_err(|e| (e, inner.in_flight_count()))
        })
        .await
        .map_err(|_| ProducerError::Kafka(KafkaError::Canceled))?;
        match result {
            Ok(()) => Ok(()),
            Err((KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut), pending)) => {
                Err(ProducerError::FlushTimeout {
                    timeout,
                    pending: usize::try_from(pending).unwrap_or(0),
                })
            }
            Err((e, _)) => Err(ProducerError::Kafka(e)),
        }
    }

    /// Events handed to librdkafka and not yet acknowledged or failed.
    pub fn in_flight(&self) -> usize {
        usize::try_from(self.inner.in_flight_count()).unwrap_or(0)
    }

    /// Ask the cluster for metadata (brokers and the configured topic), waiting at most
    /// `timeout`. Fails with [`ProducerError::Unreachable`] naming the bootstrap servers and
    /// the last connection error when no broker answers.
    pub async fn check_connection(&self, timeout: Duration) -> Result<ClusterInfo, ProducerError> {
        let inner = self.inner.clone();
        cluster_info(&self.config, &self.last_error, timeout, move |topic, t| {
            inner.client().fetch_metadata(Some(topic), t)
        })
        .await
    }

    /// Create the topic `name` with `partitions` partitions (replication factor: the
    /// broker's default) and, when `compact` is set, `cleanup.policy=compact`, through
    /// [`syncline_kafka::create_topic`] with this producer's connection settings. An
    /// existing topic is left as it is and reported as [`TopicStatus::Existed`].
    pub async fn ensure_topic(
        &self,
        name: &str,
        partitions: i32,
        compact: bool,
    ) -> Result<TopicStatus, ProducerError> {
        ensure_topic(&self.config, name, partitions, compact).await
    }
}

/// Create topic `name` on `config`'s cluster unless it exists (one place for both
/// producers' `ensure_topic`).
pub(crate) async fn ensure_topic(
    config: &ProducerConfig,
    name: &str,
    partitions: i32,
    compact: bool,
) -> Result<TopicStatus, ProducerError> {
    validate_topic_name(name).map_err(|reason| ConfigError::new("topic", reason))?;
    if partitions < 1 {
        return Err(
            ConfigError::new("partitions", format!("{partitions} must be at least 1")).into(),
        );
    }
    let conn =
        syncline_kafka::Connection::new(config.brokers.as_str()).with_properties(&config.extra);
    let mut spec = syncline_kafka::TopicSpec {
        partitions,
        ..Default::default()
    };
    if compact {
        spec.configs
            .insert("cleanup.policy".into(), "compact".into());
    }
    syncline_kafka::create_topic(conn, name, &spec)
        .await
        .map_err(|e| ProducerError::Topic {
            topic: name.to_owned(),
            reason: e.to_string(),
        })
}

/// What [`Producer::check_connection`] reports, from a metadata request made by `fetch`
/// (given the topic and the timeout) on tokio's blocking pool; shared by every producer
/// kind of this crate.
pub(crate) async fn cluster_info<F>(
    config: &ProducerConfig,
    last_error: &LastError,
    timeout: Duration,
    fetch: F,
) -> Result<ClusterInfo, ProducerError>
where
    F: FnOnce(&str, Timeout) -> rdkafka::error::KafkaResult<rdkafka::metadata::Metadata>
        + Send
        + 'static,
{
    let topic = config.topic.clone();
    let metadata = tokio::task::spawn_blocking(move || {
        fetch(&topic, Timeout::After(timeout)).map(|md| {
            let brokers = md.brokers().len();
            let partitions = md
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                .map(|t| t.partitions().len());
            (brokers, partitions)
        })
    })
    .await
    .map_err(|_| ProducerError::Kafka(KafkaError::Canceled))?;
    match metadata {
        Ok((brokers, topic_partitions)) => Ok(ClusterInfo {
            brokers,
            topic_partitions,
        }),
        Err(e) => Err(ProducerError::Unreachable {
            brokers: config.brokers.clone(),
            timeout,
            reason: last_error.get().unwrap_or_else(|| e.to_string()),
        }),
    }
}

/// The librdkafka properties for a configuration.
pub(crate) fn client_config(config: &ProducerConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set("client.id", &config.client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", config.compression.as_str())
        .set("linger.ms", config.linger.as_millis().to_string())
        .set("batch.size", config.batch_size.to_string())
        .set(
            "message.timeout.ms",
            config.delivery_timeout.as_millis().to_string(),
        )
        .set(
            "queue.buffering.max.messages",
            config.max_queued_messages.to_string(),
        )
        .set(
            "queue.buffering.max.kbytes",
            config.max_queued_bytes.div_ceil(1024).to_string(),
        )
        .set("message.max.bytes", config.message_max_bytes().to_string())
        // Same key -> same partition as the Java client's default partitioner, so services
        // written in other languages agree on where an entity lives.
        .set("partitioner", "murmur2_random")
        // A missing topic is an error to report, not something to create implicitly with
        // the broker's defaults (the topic may need compaction, partitions...).
        .set("allow.auto.create.topics", "false");
    for (k, v) in &config.extra {
        c.set(k.trim(), v);
    }
    c
}

pub(crate) fn config_error(e: KafkaError) -> ProducerError {
    match e {
        KafkaError::ClientConfig(_, desc, key, _value) => {
            ProducerError::Config(ConfigError::new(key, desc))
        }
        other => ProducerError::Client(other),
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Producer>();
}
