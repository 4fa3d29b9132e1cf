//! The dead-letter topic: the original key and payload bytes, with headers that say why
//! and where from. A record's offset counts as done only once the broker acknowledged its
//! dead letter; until then the write is retried (with backoff), so nothing is dropped.
//!
//! Dead letters are at-least-once: a consumer killed after the broker acknowledged a dead
//! letter but before its offset was committed writes it again after the restart. A repeat
//! is recognised by its source topic, partition and offset headers.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;

use crate::batch::RecordRef;
use crate::config::RuntimeConfig;
use crate::dlq_log::DlqLog;
use crate::health::Health;
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
/// Header, present only on a truncated dead letter: the original payload's size in bytes.
/// The record was too large for the dead-letter topic, so it carries no key or payload;
/// the source topic/partition/offset headers point at the original.
pub const HEADER_TRUNCATED: &str = "syncline.dlq.truncated";

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
    health: Health,
    log: DlqLog,
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
        health: Health,
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
        for (k, v) in &config.dlq_kafka {
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
            health,
            log: DlqLog::default(),
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

    /// Write every dead letter and wait for the broker's acknowledgements. All are sent
    /// at once (librdkafka batches them), so a storm of poison records costs one round
    /// trip per batch, not per record. Failed ones are retried with backoff until they are
    /// acknowledged or `abandon` is cancelled; `on_stall` is called once, with the records
    /// still unwritten, the first time a round fails, so the caller can pause their
    /// partitions and fail readiness. A dead letter the topic refuses as too large is sent
    /// again without its key and payload: headers plus the source partition and offset,
    /// which still point at the original record.
    pub async fn write_all(
        &self,
        letters: &[DeadLetter<'_>],
        on_stall: &mut (dyn FnMut(&[RecordRef]) + Send),
        abandon: &CancellationToken,
    ) -> Result<(), DlqError> {
        let mut todo: Vec<(usize, bool)> = (0..letters.len()).map(|i| (i, false)).collect();
        let mut attempt = 0u32;
        let mut stalled = false;
        while !todo.is_empty() {
            let sends = todo.iter().filter_map(|&(i, truncated)| {
                letters.get(i).map(|dl| async move {
                    let result = self.send(dl, truncated).await;
                    (i, truncated, result)
                })
            });
            let results = tokio::select! {
                r = futures::future::join_all(sends) => r,
                _ = abandon.cancelled() => return Err(DlqError::Abandoned),
            };
            let mut failed = Vec::new();
            let mut cause: Option<KafkaError> = None;
            for (i, truncated, result) in results {
                let Some(dl) = letters.get(i) else { continue };
                match result {
                    Ok(()) => {
                        self.metrics.dead_lettered(dl.class);
                        self.health.dead_lettered(dl.class);
                        self.log.written(dl, truncated, &self.topic);
                    }
                    Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge))
                        if !truncated =>
                    {
                        // Retried at once, without the bytes that made it too large.
                        failed.push((i, true));
                    }
                    Err(e) => {
                        failed.push((i, truncated));
                        cause.get_or_insert(e);
                    }
                }
            }
            todo = failed;
            let Some(cause) = cause else { continue };
            attempt = attempt.saturating_add(1);
            if !stalled {
                stalled = true;
                let at: Vec<RecordRef> = todo
                    .iter()
                    .filter_map(|&(i, _)| letters.get(i).map(|d| d.at))
                    .collect();
                on_stall(&at);
            }
            let delay = self.backoff.delay(attempt, &mut rand::rng());
            self.log
                .failed(&cause, todo.len(), attempt, delay, &self.topic);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = abandon.cancelled() => return Err(DlqError::Abandoned),
            }
        }
        Ok(())
    }

    /// Send one dead letter and wait for its acknowledgement.
    async fn send(&self, dl: &DeadLetter<'_>, truncated: bool) -> Result<(), KafkaError> {
        let partition = dl.at.partition.to_string();
        let offset = dl.at.offset.to_string();
        let reason = truncate(dl.reason, MAX_REASON_BYTES);
        let original_len = dl.payload.map_or(0, <[u8]>::len).to_string();
        let mut headers = OwnedHeaders::new_with_capacity(7)
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
        if truncated {
            headers = headers.insert(Header {
                key: HEADER_TRUNCATED,
                value: Some(original_len.as_str()),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers);
        if !truncated {
            if let Some(k) = dl.key {
                record = record.key(k);
            }
            if let Some(p) = dl.payload {
                record = record.payload(p);
            }
        }
        self.producer
            .send(record, Timeout::After(Duration::from_secs(30)))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }

    /// Wait (bounded) for queued writes, e.g. on shutdown, and log what the rate-limited
    /// log still holds back.
    pub fn flush(&self, timeout: Duration) {
        self.log.flush(&self.topic);
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
    // `end` is a char boundary within `s`, so this always splits.
    s.split_at_checked(end).map_or("", |(head, _)| head)
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
