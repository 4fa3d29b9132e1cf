//! Drain rate of the runtime itself (decode, coalesce, commit) with a sink that does
//! nothing, beside the ceiling measured in the same run: a bare librdkafka reader of the
//! same topic. Prints both rates and their ratio; fails only if the drain is incomplete.
//!
//! Run: `cargo bench -p syncline-consumer --bench runtime_drain` (broker from
//! `scripts/stack up`; `SYNCLINE_BENCH_EVENTS`, default 200000).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{test_config, wait_committed_to_end};
use syncline_consumer::{run_with_metrics, Metrics, Outcome, Sink};
use syncline_event::ChangeEvent;
use syncline_testkit::{
    create_topic_with_dlq, kafka_brokers, publish_events, read_all, unique_name, wait_until,
    Workload, WorkloadSpec,
};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
struct Counting(Arc<AtomicU64>);

impl Sink for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    async fn apply(&self, batch: &[ChangeEvent]) -> Vec<Outcome> {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        vec![Outcome::Applied; batch.len()]
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events: usize = std::env::var("SYNCLINE_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let brokers = kafka_brokers();
    let topic = unique_name("tput");
    let group = unique_name("tput-g");
    create_topic_with_dlq(&brokers, &topic, 4)
        .await
        .expect("create topics");
    let w = Workload::generate(&WorkloadSpec {
        events,
        keys: 50_000,
        duplicate_ratio: 0.0,
        ..WorkloadSpec::default()
    });
    let t = Instant::now();
    publish_events(&brokers, &topic, &w.events)
        .await
        .expect("publish");
    eprintln!("published {} events in {:?}", w.events.len(), t.elapsed());
    // Baseline: how fast a bare librdkafka consumer reads the topic from this broker.
    let t = Instant::now();
    let read = read_all(&brokers, &topic, w.events.len(), Duration::from_secs(300))
        .await
        .expect("read back");
    let secs = t.elapsed().as_secs_f64();
    let ceiling = read.len() as f64 / secs;
    eprintln!(
        "ceiling: bare librdkafka reader read {} records in {secs:.2}s: {ceiling:.0} records/s",
        read.len(),
    );
    drop(read);

    let sink = Counting::default();
    let metrics = Metrics::new();
    let token = CancellationToken::new();
    let mut config = test_config(&topic, &group);
    config.batch_max_events = 1000;
    let started = Instant::now();
    let run = tokio::spawn(run_with_metrics(
        config,
        sink.clone(),
        metrics.clone(),
        token.clone(),
    ));
    // Both figures run from the moment partitions are assigned to the last record, so
    // both include the first fetches: the bare reader assigns them itself, the runtime
    // once its group join completes (the join, ~seconds on Tansu, is not counted).
    let m = metrics.clone();
    wait_until(Duration::from_secs(60), Duration::from_millis(1), || {
        let m = m.clone();
        async move {
            if m.assigned_partitions() > 0 {
                Ok(())
            } else {
                Err("no partition assigned yet".to_owned())
            }
        }
    })
    .await
    .expect("assigned");
    let t = Instant::now();
    let joined = started.elapsed();
    let total = w.events.len() as u64;
    let m = metrics.clone();
    wait_until(Duration::from_secs(300), Duration::from_millis(20), || {
        let m = m.clone();
        async move {
            let s = m.snapshot();
            if s.applied + s.stale + s.coalesced >= total {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        }
    })
    .await
    .expect("drained");
    let secs = t.elapsed().as_secs_f64();
    let rate = total as f64 / secs;
    eprintln!(
        "runtime: drained {total} events in {secs:.2}s: {rate:.0} events/s (assignment to last applied; the group join took {joined:.2?} more), {:.2} of the ceiling",
        rate / ceiling
    );
    wait_committed_to_end(&group, &topic, Duration::from_secs(60)).await;
    token.cancel();
    let r = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("stops")
        .expect("task");
    assert!(r.is_ok(), "{r:?}");
}
