//! Transactional outbox relay for PostgreSQL.
//!
//! A service writes its change and one row in `syncline_outbox` (directly, or with
//! `SELECT syncline_emit(...)`) in the same transaction; [`relay::run`] publishes committed
//! rows as Syncline change events through [`syncline_producer::Producer`] (idempotent,
//! `acks=all`, key `entity_type:entity_id`) and deletes them once the broker acknowledged
//! them. Rows that can never be published go to `syncline_outbox_quarantine` with the
//! reason. See `docs/outbox.md` and this crate's README.

pub mod config;
pub mod metrics;
pub mod migrate;
pub mod relay;

pub use config::{load, ConfigError, OutboxArgs, OutboxConfig};
pub use metrics::Metrics;
pub use migrate::migrate;
pub use relay::{derived_event_id, run, RelayError, RelaySettings, CHANNEL, LOCK_KEY};
