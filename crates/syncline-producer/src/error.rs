//! Typed errors of the producer.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use syncline_event::ValidationError;

use crate::config::ConfigError;

/// Why one event was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The event breaks the contract (`ChangeEvent::validate`); it was never sent.
    #[error("invalid event, not published: {0}")]
    Invalid(#[from] ValidationError),
    /// The Avro encoder refused a valid event (a bug: the model matches the schema).
    #[error("event {key} could not be encoded: {reason}")]
    Encode {
        /// The record key (`entity_type:entity_id`).
        key: String,
        /// The encoder's message.
        reason: String,
    },
    /// The broker or librdkafka refused the event (e.g. unknown topic, record too large,
    /// authorisation), or a fatal idempotence error occurred.
    #[error("event {key} was not published: {source}")]
    Kafka {
        /// The record key (`entity_type:entity_id`).
        key: String,
        /// The Kafka error.
        #[source]
        source: KafkaError,
    },
    /// The event was not acknowledged within the delivery timeout (`message.timeout.ms`),
    /// retries included: typically the broker is unreachable or the partition has no leader.
    /// It may or may not have been written; publishing it again is safe because sinks keep
    /// only the highest version.
    #[error("event {key} was not acknowledged within {after:?} (delivery timeout)")]
    Timeout {
        /// The record key (`entity_type:entity_id`).
        key: String,
        /// The configured delivery timeout.
        after: Duration,
    },
    /// librdkafka's local queue stayed full for the whole delivery timeout, so the event
    /// was never handed to it (the broker is not keeping up, or is unreachable).
    #[error("event {key}: the local producer queue stayed full for {after:?}; not published")]
    QueueFull {
        /// The record key (`entity_type:entity_id`).
        key: String,
        /// How long the producer waited for room.
        after: Duration,
    },
    /// The producer was dropped before the delivery was reported.
    #[error("event {key}: the producer shut down before delivery was reported")]
    Canceled {
        /// The record key (`entity_type:entity_id`).
        key: String,
    },
}

impl PublishError {
    pub(crate) fn from_kafka(key: String, error: KafkaError, timeout: Duration) -> Self {
        match error {
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut) => {
                PublishError::Timeout {
                    key,
                    after: timeout,
                }
            }
            KafkaError::MessageProduction(
                RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight,
            ) => PublishError::Canceled { key },
            source => PublishError::Kafka { key, source },
        }
    }

    /// The record key of the event, when the error is about one that passed validation.
    pub fn key(&self) -> Option<&str> {
        match self {
            PublishError::Invalid(_) => None,
            PublishError::Encode { key, .. }
            | PublishError::Kafka { key, .. }
            | PublishError::Timeout { key, .. }
            | PublishError::QueueFull { key, .. }
            | PublishError::Canceled { key } => Some(key),
        }
    }
}

/// Why [`crate::Producer::publish_many`] did not publish every event.
#[derive(Debug, thiserror::Error)]
pub enum PublishManyError {
    /// Event number `index` (0-based) is invalid. Every event is validated before the
    /// first one is sent, so nothing was published.
    #[error("event #{index} is invalid, nothing was published: {error}")]
    Invalid {
        /// Position of the invalid event in the input.
        index: usize,
        /// The broken rule.
        error: ValidationError,
    },
    /// Publishing failed at event number `index` (the lowest failed position). No event
    /// after the first failure was handed to the producer; events already in flight were
    /// awaited, and `deliveries` says which of them were acknowledged.
    #[error("event #{index} was not published ({delivered} of {total} acknowledged): {error}")]
    Failed {
        /// Position of the first failed event.
        index: usize,
        /// Why it failed.
        #[source]
        error: PublishError,
        /// One entry per input event: `Some` when acknowledged.
        deliveries: Vec<Option<crate::Delivery>>,
        /// How many were acknowledged.
        delivered: usize,
        /// How many events were given.
        total: usize,
    },
}

/// Errors of the producer itself (creation, connection probe, topic creation, flush).
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// A setting is invalid; the error names it.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// librdkafka could not create the client.
    #[error("could not create the Kafka client: {0}")]
    Client(#[source] KafkaError),
    /// No broker answered within the timeout.
    #[error("cannot reach the Kafka broker at {brokers} within {timeout:?}: {reason}")]
    Unreachable {
        /// The configured bootstrap servers.
        brokers: String,
        /// How long the probe waited.
        timeout: Duration,
        /// The last connection error librdkafka reported, or the metadata error.
        reason: String,
    },
    /// Creating or inspecting a topic failed.
    #[error("topic {topic}: {reason}")]
    Topic {
        /// The topic.
        topic: String,
        /// What went wrong.
        reason: String,
    },
    /// `flush` returned with events still unacknowledged.
    #[error("flush timed out after {timeout:?} with {pending} event(s) still unacknowledged")]
    FlushTimeout {
        /// The flush timeout.
        timeout: Duration,
        /// Events still waiting for acknowledgement.
        pending: usize,
    },
    /// Another Kafka error.
    #[error("kafka error: {0}")]
    Kafka(#[source] KafkaError),
}
