//! Syncline's Elasticsearch sink: applies change events to one alias per entity type
//! (`<prefix><entity_type>`) with bulk requests and external versioning, so the index
//! keeps only the highest version of every document whatever the delivery order.
//!
//! * [`sink::EsSink`] implements [`syncline_consumer::Sink`]; the runtime does the
//!   consuming, batching, coalescing, retries, dead-lettering and commits.
//! * [`config::EsConfig`] is the `[elasticsearch]` table; [`args::EsArgs`] its flags and
//!   `SYNCLINE_ES_*` env vars.
//! * [`routing`] names aliases and indexes, [`bootstrap`] creates them with the mappings
//!   from [`mappings`], [`bulk`] builds the NDJSON bodies and [`response`] classifies the
//!   items (the table is in the crate README).

pub mod args;
pub mod bootstrap;
pub mod bulk;
pub mod client;
pub mod config;
pub mod mappings;
pub mod metrics;
pub mod response;
pub mod routing;
pub mod sink;

pub use config::{DeleteMode, EsConfig};
pub use sink::EsSink;

/// Default consumer group of the indexer.
pub const DEFAULT_GROUP_ID: &str = "syncline-es-indexer";
/// Name of the sink's table in the TOML config file.
pub const CONFIG_SECTION: &str = "elasticsearch";
