//! Drain rate of the runtime itself (decode, coalesce, commit) with a sink that does
//! nothing: prints events/s; asserts only completeness (no timed assertions).
//! Run: `cargo nextest run -p syncline-consumer --test e2e_throughput --no-capture`.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_rate_with_a_no_op_sink() {
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
    eprintln!(
        "baseline: bare consumer read {} records in {secs:.2}s: {:.0} records/s",
        read.len(),
        read.len() as f64 / secs
    );
    drop(read);

    let sink = Counting::default();
    let metrics = Metrics::new();
    let token = CancellationToken::new();
    let mut config = test_config(&topic, &group);
    config.batch_max_events = 1000;
    let run = tokio::spawn(run_with_metrics(
        config,
        sink.clone(),
        metrics.clone(),
        token.clone(),
    ));
    // Time from the first consumed record, so the group join does not count.
    let m = metrics.clone();
    wait_until(Duration::from_secs(60), Duration::from_millis(5), || {
        let m = m.clone();
        async move {
            if m.snapshot().consumed > 0 {
                Ok(())
            } else {
                Err("nothing yet".to_owned())
            }
        }
    })
    .await
    .expect("starts");
    let t = Instant::now();
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
    eprintln!(
        "drained {total} events in {secs:.2}s: {:.0} events/s (first record to last applied)",
        total as f64 / secs
    );
    wait_committed_to_end(&group, &topic, Duration::from_secs(60)).await;
    token.cancel();
    let r = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("stops")
        .expect("task");
    assert!(r.is_ok(), "{r:?}");
}
