//! The dead-letter topic: the original key and payload bytes, with headers that say why
//! and where from. A record's offset counts as done only once the broker acknowledged its
//! dead letter; until then the write is retried (with backoff), so nothing is dropped.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;

use crate::batch::RecordRef;
use crate::config::RuntimeConfig;
use crate::metrics::Metrics;
use crate::retry::Backoff;

/// Header: stable error class (e.g. `bad_magic`, `retries_exhausted`).
pub const HEADER_CLASS: &str = "syncline.error.class";
/// Header: human-readable reason.
pub const HEADER_REASON: &str = "syncline.error.reason";
/// Header: source topic.
pub const HEADER_TOPIC: &str = "syncline.source.topic";
/// Header: source partition (decimal).
pub const HEADER_PARTITION: &str = "syncline.source.partition";
/// Header: source offset (decimal).
pub const HEADER_OFFSET: &str = "syncline.source.offset";
/// Header: consumer group that gave up on the record.
pub const HEADER_GROUP: &str = "syncline.consumer.group";

/// Reasons are truncated to this many bytes so one header cannot be huge.
const MAX_REASON_BYTES: usize = 4096;

/// One record to dead-letter.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    /// Where it came from.
    pub at: RecordRef,
    /// Original key bytes.
    pub key: Option<&'a [u8]>,
    /// Original payload bytes.
    pub payload: Option<&'a [u8]>,
    /// Error class.
    pub class: &'a str,
    /// Reason.
    pub reason: &'a str,
}

/// Why a dead letter was not written.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// The runtime is abandoning in-flight work (shutdown timeout); the record stays
    /// uncommitted and is redelivered to the next owner.
    #[error("abandoned before the dead letter was acknowledged")]
    Abandoned,
}

/// Producer for the dead-letter topic.
pub struct DlqWriter {
    producer: FutureProducer,
    topic: String,
    source_topic: String,
    group: String,
    backoff: Backoff,
    metrics: Metrics,
}

impl std::fmt::Debug for DlqWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DlqWriter")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl DlqWriter {
    /// A producer with `acks=all` and the config's extra `kafka` properties (applied last,
    /// so security settings reach it; consumer-only properties are ignored by librdkafka
    /// with a warning).
    pub fn new(
        config: &RuntimeConfig,
        metrics: Metrics,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &config.brokers)
            .set("acks", "all")
            // Hand failures back to our own retry loop rather than waiting minutes.
            .set("message.timeout.ms", "30000")
            .set("linger.ms", "5");
        for (k, v) in &config.kafka {
            if is_consumer_only(k) {
                continue;
            }
            cc.set(k, v);
        }
        Ok(DlqWriter {
            producer: cc.create()?,
            topic: config.dlq_topic(),
            source_topic: config.topic.clone(),
            group: config.group_id.clone(),
            backoff: Backoff {
                initial: config.retry_initial_backoff,
                max: config.retry_max_backoff,
            },
            metrics,
        })
    }

    /// Look the dead-letter topic up once at start and warn if it does not exist: dead
    /// letters would then be retried (and their partitions not committed) until it does.
    /// (A producer's metadata request lets a broker with topic auto-creation create it.)
    pub async fn check_topic(&self) {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        let found = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .map(|md| {
                    md.topics().iter().any(|t| {
                        t.name() == topic && t.error().is_none() && !t.partitions().is_empty()
                    })
                })
        })
        .await;
        match found {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => tracing::warn!(
                dlq = %self.topic,
                "dead-letter topic does not exist; create it, or dead letters will be retried until it does"
            ),
            Ok(Err(e)) => {
                tracing::warn!(dlq = %self.topic, error = %e, "cannot look up the dead-letter topic")
            }
            Err(e) => tracing::warn!(error = %e, "dead-letter topic lookup failed"),
        }
    }

    /// The dead-letter topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Write one dead letter and wait for the broker's acknowledgement, retrying with
    /// backoff until it succeeds or `abandon` is cancelled.
    pub async fn write(
        &self,
        dl: DeadLetter<'_>,
        abandon: &CancellationToken,
    ) -> Result<(), DlqError> {
        let partition = dl.at.partition.to_string();
        let offset = dl.at.offset.to_string();
        let reason = truncate(dl.reason, MAX_REASON_BYTES);
        let mut attempt = 0u32;
        loop {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: HEADER_CLASS,
                    value: Some(dl.class),
                })
                .insert(Header {
                    key: HEADER_REASON,
                    value: Some(reason),
                })
                .insert(Header {
                    key: HEADER_TOPIC,
                    value: Some(self.source_topic.as_str()),
                })
                .insert(Header {
                    key: HEADER_PARTITION,
                    value: Some(partition.as_str()),
                })
                .insert(Header {
                    key: HEADER_OFFSET,
                    value: Some(offset.as_str()),
                })
                .insert(Header {
                    key: HEADER_GROUP,
                    value: Some(self.group.as_str()),
                });
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.topic).headers(headers);
            if let Some(k) = dl.key {
                record = record.key(k);
            }
            if let Some(p) = dl.payload {
                record = record.payload(p);
            }
            let sent = tokio::select! {
                r = self.producer.send(record, Timeout::After(Duration::from_secs(30))) => r,
                _ = abandon.cancelled() => return Err(DlqError::Abandoned),
            };
            match sent {
                Ok(_) => {
                    self.metrics.dead_lettered(dl.class);
                    tracing::warn!(
                        class = dl.class, reason, partition = dl.at.partition, offset = dl.at.offset,
                        dlq = %self.topic, "record dead-lettered"
                    );
                    return Ok(());
                }
                Err((e, _)) => {
                    attempt = attempt.saturating_add(1);
                    let delay = self.backoff.delay(attempt, &mut rand::rng());
                    tracing::warn!(error = %e, attempt, ?delay, dlq = %self.topic, "dead-letter write failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = abandon.cancelled() => return Err(DlqError::Abandoned),
                    }
                }
            }
        }
    }

    /// Wait (bounded) for queued writes, e.g. on shutdown.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, "dead-letter producer flush failed");
        }
    }
}

/// Consumer-only librdkafka properties, skipped for the producer to keep its log clean.
fn is_consumer_only(key: &str) -> bool {
    matches!(
        key,
        "session.timeout.ms"
            | "max.poll.interval.ms"
            | "heartbeat.interval.ms"
            | "partition.assignment.strategy"
            | "isolation.level"
            | "auto.offset.reset"
            | "fetch.min.bytes"
            | "fetch.wait.max.ms"
            | "fetch.max.bytes"
            | "max.partition.fetch.bytes"
            | "queued.min.messages"
            | "queued.max.messages.kbytes"
            | "fetch.queue.backoff.ms"
            | "group.instance.id"
            | "group.protocol"
            | "group.remote.assignor"
            | "check.crcs"
            | "auto.commit.interval.ms"
    )
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
