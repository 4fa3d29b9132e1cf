//! [`BulkProducer`]: publishes a long stream of events (a snapshot, a backfill) with the
//! same validation, encoding, key, headers and guarantees as [`crate::Producer`], but
//! accounts for deliveries with counters instead of one future per event.
//!
//! Why a second producer: [`crate::Producer::send`] allocates per event a record key, a
//! oneshot channel and its boxed sender (freed by librdkafka's polling thread), and its
//! caller keeps one [`crate::PendingDelivery`] per event in flight. Profiling a
//! 1,000,000-row snapshot put allocation and future bookkeeping at about half of the
//! publishing thread's CPU. Here the delivery callback, on librdkafka's polling thread,
//! only counts (keeping the first failure), and the key and payload buffers are reused,
//! so a caller that streams events learns exactly how many were acknowledged without
//! owning anything per event.
//!
//! Reports stay on for every event (not `delivery.report.only.error`): measured, that
//! moved the destruction of every message and its headers onto the broker thread, which
//! became the bottleneck (about the same CPU in total, 15-20% less throughput).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use syncline_event::{ChangeEvent, Limits, SchemaRegistry};

use crate::config::ProducerConfig;
use crate::error::{ProducerError, PublishError};
use crate::producer::{
    client_config, cluster_info, config_error, encode_error, ensure_topic, record_headers,
    ClusterInfo, LastError, ProducerClientContext, TopicStatus, MAX_KEPT_BUFFER, RECHECK,
};
use crate::trace::TraceParent;

/// Event counts of a [`BulkProducer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BulkCounts {
    /// Handed to librdkafka.
    pub sent: u64,
    /// Acknowledged by the broker (all in-sync replicas).
    pub acked: u64,
    /// Reported as failed (not acknowledged within the delivery timeout, refused, ...).
    pub failed: u64,
}

impl BulkCounts {
    /// Sent and neither acknowledged nor failed yet.
    pub fn in_flight(&self) -> u64 {
        self.sent.saturating_sub(self.acked + self.failed)
    }
}

/// A delivery that failed: the tag the event was sent with ([`BulkProducer::send_tagged`];
/// for [`BulkProducer::send`], its 1-based position among the events sent) and why.
#[derive(Debug)]
pub struct FailedDelivery {
    /// The event's tag.
    pub tag: usize,
    /// Why it was not written.
    pub error: PublishError,
}

/// What the delivery callback updates, read by the publishing task.
struct Tally {
    acked: AtomicU64,
    failed: AtomicU64,
    /// The first failed delivery; later ones are only counted.
    first_failure: Mutex<Option<FailedDelivery>>,
    timeout: Duration,
}

/// Client callbacks as [`crate::Producer`]'s, plus the counting delivery callback.
struct BulkContext {
    client: ProducerClientContext,
    tally: Arc<Tally>,
}

impl ClientContext for BulkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.client.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.client.error(error, reason);
    }
}

impl ProducerContext for BulkContext {
    // The caller's tag: a plain integer travels through librdkafka without an allocation.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: usize) {
        let Err((error, message)) = result else {
            self.tally.acked.fetch_add(1, Ordering::Release);
            return;
        };
        if let Ok(mut first) = self.tally.first_failure.lock() {
            if first.is_none() {
                let key = message
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default();
                *first = Some(FailedDelivery {
                    tag,
                    error: PublishError::from_kafka(key, error.clone(), self.tally.timeout),
                });
            }
        }
        self.tally.failed.fetch_add(1, Ordering::Release);
    }
}

/// Publishes a stream of [`ChangeEvent`]s to one topic (`enable.idempotence=true`,
/// `acks=all`), counting their deliveries.
///
/// Every event is validated and encoded as by [`crate::Producer`] (same record key, same
/// Avro single-object value, `content-type` header; `traceparent` only when one is given
/// with [`BulkProducer::with_traceparent`]: a bulk load is rarely part of a request's
/// trace). [`BulkProducer::send`] returns once librdkafka holds the
/// event; [`BulkProducer::counts`] says how many were acknowledged or failed,
/// [`BulkProducer::wait_for_room`] bounds the events in flight, and
/// [`BulkProducer::settle`] waits for the last ones. Events sent one after another keep
/// their order within a partition.
///
/// Call [`BulkProducer::settle`] before dropping it: dropping purges events still queued.
pub struct BulkProducer {
    inner: ThreadedProducer<BulkContext>,
    tally: Arc<Tally>,
    last_error: LastError,
    config: ProducerConfig,
    limits: Limits,
    sent: u64,
    /// Acknowledged and failed events last seen: with `sent`, an upper bound of the events
    /// in flight that needs no atomic read per event (see `wait_for_room`).
    acked_seen: u64,
    /// Reused per event: librdkafka copies key and payload.
    key: String,
    payload: Vec<u8>,
    /// The `traceparent` header value every event carries, if any.
    traceparent: Option<String>,
}

impl std::fmt::Debug for BulkProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkProducer")
            .field("brokers", &self.config.brokers)
            .field("topic", &self.config.topic)
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl BulkProducer {
    /// Validate the configuration and create the client, as [`crate::Producer::new`].
    pub fn new(config: ProducerConfig) -> Result<BulkProducer, ProducerError> {
        config.validate()?;
        let last_error = LastError::default();
        let tally = Arc::new(Tally {
            acked: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            first_failure: Mutex::new(None),
            timeout: config.delivery_timeout,
        });
        let context = BulkContext {
            client: ProducerClientContext::new(last_error.clone()),
            tally: tally.clone(),
        };
        let inner = client_config(&config)
            .create_with_context(context)
            .map_err(config_error)?;
        Ok(BulkProducer {
            inner,
            tally,
            last_error,
            limits: config.limits(),
            config,
            sent: 0,
            acked_seen: 0,
            key: String::new(),
            payload: Vec::with_capacity(16 * 1024),
            traceparent: None,
        })
    }

    /// Attach this trace context (header `traceparent`) to every event sent from now on.
    pub fn with_traceparent(mut self, traceparent: Option<TraceParent>) -> Self {
        self.traceparent = traceparent.map(|tp| tp.to_string());
        self
    }

    /// As [`crate::Producer::ensure_topic`].
    pub async fn ensure_topic(
        &self,
        name: &str,
        partitions: i32,
        compact: bool,
    ) -> Result<TopicStatus, ProducerError> {
        ensure_topic(&self.config, name, partitions, compact).await
    }

    /// As [`crate::Producer::check_connection`].
    pub async fn check_connection(&self, timeout: Duration) -> Result<ClusterInfo, ProducerError> {
        let inner = self.inner.clone();
        cluster_info(&self.config, &self.last_error, timeout, move |topic, t| {
            inner.client().fetch_metadata(Some(topic), t)
        })
        .await
    }

    /// Validate, encode and hand one event to librdkafka. An invalid event is
    /// [`PublishError::Invalid`] and is not sent. Waits only while librdkafka's local
    /// queue is full, at most the delivery timeout ([`PublishError::QueueFull`]). A failed
    /// delivery is reported with the event's position among those sent (1 for the first).
    pub async fn send(&mut self, event: &ChangeEvent) -> Result<(), PublishError> {
        let position = usize::try_from(self.sent + 1).unwrap_or(usize::MAX);
        self.send_tagged(event, position).await
    }

    /// [`BulkProducer::send`] with the caller's own `tag` (a line number, a row id), which
    /// [`BulkProducer::take_failure`] returns if this event's delivery fails.
    pub async fn send_tagged(
        &mut self,
        event: &ChangeEvent,
        tag: usize,
    ) -> Result<(), PublishError> {
        self.payload.clear();
        if self.payload.capacity() > MAX_KEPT_BUFFER {
            self.payload = Vec::new();
        }
        SchemaRegistry::builtin()
            .encode_into(event, &self.limits, &mut self.payload)
            .map_err(|e| encode_error(e, event))?;
        event.write_key(&mut self.key);
        let timeout = self.config.delivery_timeout;
        let mut deadline: Option<Instant> = None;
        loop {
            let headers = record_headers(self.traceparent.as_deref());
            let record = BaseRecord::with_opaque_to(&self.config.topic, tag)
                .key(self.key.as_str())
                .payload(self.payload.as_slice())
                .headers(headers);
            match self.inner.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {}
                Err((error, _)) => {
                    return Err(PublishError::from_kafka(self.key.clone(), error, timeout))
                }
            }
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + timeout);
            if Instant::now() >= deadline {
                return Err(PublishError::QueueFull {
                    key: self.key.clone(),
                    after: timeout,
                });
            }
            // Room appears as acknowledgements arrive; re-check shortly rather than retrying
            // in a busy loop.
            tokio::time::sleep(RECHECK).await;
        }
        self.sent += 1;
        Ok(())
    }

    /// Sent, acknowledged and failed so far.
    pub fn counts(&self) -> BulkCounts {
        BulkCounts {
            sent: self.sent,
            acked: self.tally.acked.load(Ordering::Acquire),
            failed: self.tally.failed.load(Ordering::Acquire),
        }
    }

    /// Has any delivery failed? (Cheap: one atomic load, for a check per event.)
    pub fn has_failed(&self) -> bool {
        self.tally.failed.load(Ordering::Acquire) > 0
    }

    /// The first failed delivery, once (later calls return `None`).
    pub fn take_failure(&self) -> Option<FailedDelivery> {
        self.tally
            .first_failure
            .lock()
            .ok()
            .and_then(|mut f| f.take())
    }

    /// Wait until fewer than `limit` events (at least 1) are in flight. Cheap when there
    /// is room: the counters are only read once the events sent since the last
    /// acknowledgement seen could reach the limit.
    pub async fn wait_for_room(&mut self, limit: u64) {
        let limit = limit.max(1);
        if self.sent.saturating_sub(self.acked_seen) < limit {
            return;
        }
        loop {
            let c = self.counts();
            self.acked_seen = c.acked + c.failed;
            if c.in_flight() < limit {
                return;
            }
            tokio::time::sleep(RECHECK).await;
        }
    }

    /// Wait until every event sent was acknowledged or failed (each is reported within the
    /// delivery timeout), and return the final counts.
    pub async fn settle(&mut self) -> BulkCounts {
        self.wait_for_room(1).await;
        self.counts()
    }
}

#[allow(dead_code)]
fn _assert_send() {
    fn is<T: Send>() {}
    is::<BulkProducer>();
}
