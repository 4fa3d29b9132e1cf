//! Test and benchmark support for Syncline, shared by every crate's integration tests and
//! bench harnesses so that addresses, topic handling, workloads and measurements mean the
//! same thing everywhere.
//!
//! Everything here talks to real components (the broker at [`kafka_brokers`], Redis at
//! [`redis_url`]); nothing mocks a wire protocol. Names from [`unique_name`] keep parallel
//! tests and leftovers of earlier runs apart.

// Test support: a panic is the failure report (a missing tool or temp dir is a broken test
// machine, and the test should fail right there, saying so).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod drain;
pub mod env;
pub mod es_process;
pub mod kafka;
pub mod measure;
pub mod poison;
pub mod postgres;
pub mod private_broker;
pub mod process;
pub mod redis_server;
pub mod tls;
pub mod tls_broker;
pub mod wait;
pub mod workload;

pub use env::{
    consumer_kafka_env, consumer_kafka_props, es_url, free_port, kafka_brokers, redis_url,
    unique_name,
};
pub use kafka::{
    committed_offsets, consumer_config, create_topic, create_topic_with_dlq, delete_topics,
    end_offsets, group_caught_up, publish_events, publish_one_per_partition, publish_raw, read_all,
    wait_group_caught_up, Delivered, KitError,
};
pub use measure::{
    histogram_quantile, metric_sum, metric_sums, scrape_metrics, ProcessStats, Table,
};
pub use postgres::TestDb;
pub use process::{debug_binary, release_binary, ChildGuard};
pub use redis_server::RedisServer;
pub use wait::wait_until;
pub use workload::{Expected, Oracle, Workload, WorkloadSpec};
