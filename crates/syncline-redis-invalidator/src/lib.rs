//! Syncline's Redis invalidator as a library: the [`RedisSink`] that the shared consumer
//! runtime drives, and its validated settings. The binary `syncline-redis-invalidator`
//! wires both to `syncline_consumer::runtime`.
//!
//! The key layout and the Lua scripts are not defined here but in `syncline-cache`, which
//! applications use to read the same keys.

pub mod config;
pub mod sink;

pub use config::{RedisArgs, RedisSettings, SinkConfig, DEFAULT_GROUP_ID, SECTION};
pub use sink::{connect_with_retry, RedisSink, SinkError, SinkMetrics};
