//! Publishes Syncline change events to Kafka.
//!
//! [`Producer`] validates every [`ChangeEvent`] against the contract's [`Limits`], encodes
//! it as an Avro single-object record (`syncline_event::encode`) and publishes it with the
//! key `entity_type:entity_id`, idempotently (`enable.idempotence=true`, `acks=all`), with
//! the headers `content-type` ([`CONTENT_TYPE`]) and, when a trace context is known,
//! `traceparent` (see [`trace`]). An invalid event is a typed error
//! ([`PublishError::Invalid`]) and is never sent.
//!
//! ```no_run
//! use std::time::Duration;
//! use syncline_event::{ChangeEvent, Op};
//! use syncline_producer::{Producer, ProducerConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let producer = Producer::new(ProducerConfig::new("127.0.0.1:9092", "changes"))?;
//! let event = ChangeEvent::new(
//!     "product", "p-0001", Op::Upsert, 7, "catalog-service",
//!     Some(r#"{"name":"Desk lamp","price":39.5}"#.into()),
//! );
//! let delivery = producer.publish(&event).await?;
//! println!("partition {} offset {}", delivery.partition, delivery.offset);
//! producer.flush(Duration::from_secs(10)).await?;
//! # Ok(()) }
//! ```
//!
//! The `syncline-publish` binary of this crate publishes JSON Lines files with the same
//! library (see the crate README).

mod bulk;
mod config;
mod error;
pub mod jsonl;
#[cfg(feature = "outbox")]
pub mod outbox;
mod producer;
pub mod trace;

pub use bulk::{BulkCounts, BulkProducer, FailedDelivery};
pub use config::{Compression, ConfigError, ProducerConfig};
pub use error::{ProducerError, PublishError, PublishManyError};
pub use producer::{
    ClusterInfo, Delivery, PendingDelivery, Producer, TopicStatus, CONTENT_TYPE,
    CONTENT_TYPE_HEADER, TRACEPARENT_HEADER,
};
pub use syncline_event::{ChangeEvent, Limits, Op, ValidationError};
pub use syncline_kafka::validate_topic_name;
pub use trace::{current_traceparent, TraceContextLayer, TraceParent};
