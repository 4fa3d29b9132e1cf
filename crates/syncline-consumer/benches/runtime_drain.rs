//! Drain rate of the runtime itself (fetch, decode, coalesce, commit) with a sink that
//! does nothing, on two topics holding the same workload: one written by a typical
//! non-Rust producer (confluent-kafka from Python, no compression, linger 10 ms: many
//! small batches) and one by `syncline-publish` (lz4). Beside each, from the same run:
//! the ceiling (a bare librdkafka reader with default settings) and the same bare reader
//! with the runtime's own fetch settings, so a prefetch setting that throttles reading
//! shows up as a gap between the two readers. Also prints each publisher's rate, CPU and
//! RSS (the `syncline-publish` goal is measured here).
//!
//! Run: `cargo bench -p syncline-consumer --bench runtime_drain` (broker from
//! `scripts/stack up`). Size: `BENCH_EVENTS` (1,050,000), `BENCH_KEYS` (100,000),
//! `BENCH_DOC_BYTES` (1024), `BENCH_DELETE_RATIO` (0.1). Fails only if a drain is
//! incomplete.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use syncline_consumer::config::RuntimeConfig;
use syncline_consumer::runtime::consumer_config;
use syncline_consumer::{run_with_metrics, Metrics, Outcome, Sink};
use syncline_event::EventRef;
use syncline_testkit::drain::{
    bare_read, both_publishers, ceiling, delete_filled, fill_topics, load_average,
    pid_listening_on, publishing_table, CpuWatch, DrainSpec, FilledTopic,
};
use syncline_testkit::{end_offsets, kafka_brokers, unique_name, wait_until, ProcessStats, Table};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
struct Counting(Arc<AtomicU64>);

impl Sink for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    async fn apply(&self, batch: &[EventRef<'_>]) -> Vec<Outcome> {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        vec![Outcome::Applied; batch.len()]
    }
}

/// The runtime's settings for this bench: product defaults plus the stack's broker
/// settings (`SYNCLINE_KAFKA`), no metrics endpoint.
fn bench_config(brokers: &str, topic: &str, group: &str) -> RuntimeConfig {
    RuntimeConfig {
        brokers: brokers.to_owned(),
        topic: topic.to_owned(),
        group_id: group.to_owned(),
        metrics_addr: None,
        kafka: syncline_testkit::consumer_kafka_props("")
            .into_iter()
            .collect::<syncline_kafka::KafkaProperties>(),
        ..RuntimeConfig::default()
    }
}

/// The fetch-related properties the runtime sets, to give the bare reader the same.
const FETCH_PROPS: &[&str] = &[
    "queued.max.messages.kbytes",
    "queued.min.messages",
    "fetch.queue.backoff.ms",
    "fetch.wait.max.ms",
    "fetch.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.min.bytes",
];

struct RuntimeRun {
    from_start: f64,
    from_assignment: f64,
    cpu_seconds: f64,
}

/// Run the runtime with the counting sink until every record is applied (or coalesced).
async fn run_runtime(brokers: &str, topic: &FilledTopic) -> RuntimeRun {
    let group = unique_name("bench-runtime-g");
    let config = bench_config(brokers, &topic.topic, &group);
    let sink = Counting::default();
    let metrics = Metrics::new();
    let token = CancellationToken::new();
    let cpu_before = ProcessStats::of_self()
        .map(|s| s.cpu_seconds)
        .unwrap_or(0.0);
    let started = Instant::now();
    let run = tokio::spawn(run_with_metrics(
        config,
        sink.clone(),
        metrics.clone(),
        token.clone(),
    ));
    let m = metrics.clone();
    wait_until(Duration::from_secs(120), Duration::from_millis(1), || {
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
    .expect("partitions assigned");
    let assigned = Instant::now();
    let total = topic.records as u64;
    let m = metrics.clone();
    wait_until(Duration::from_secs(1800), Duration::from_millis(10), || {
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
    let from_start = started.elapsed().as_secs_f64();
    let from_assignment = assigned.elapsed().as_secs_f64();
    let cpu_seconds = ProcessStats::of_self()
        .map(|s| s.cpu_seconds)
        .unwrap_or(0.0)
        - cpu_before;
    token.cancel();
    let r = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("stops")
        .expect("task");
    assert!(r.is_ok(), "{r:?}");
    RuntimeRun {
        from_start,
        from_assignment,
        cpu_seconds,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let spec = DrainSpec::from_env();
    let brokers = kafka_brokers();
    let broker_pid = brokers
        .split(',')
        .next()
        .and_then(|b| b.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .and_then(pid_listening_on);
    let prefix = unique_name("bench-runtime");
    let publishers = both_publishers().expect("publishers");
    let (topics, _oracle) = fill_topics(&spec, &brokers, &prefix, publishers)
        .await
        .expect("fill topics");

    let runtime_props = consumer_config(&bench_config(&brokers, "t", "g"));
    let fetch_props: Vec<(&str, &str)> = FETCH_PROPS
        .iter()
        .filter_map(|k| runtime_props.get(k).map(|v| (*k, v)))
        .collect();

    let mut drain = Table::new(&[
        "topic written by",
        "bare reader, defaults (ceiling) rec/s",
        "bare reader, runtime's fetch settings rec/s",
        "runtime events/s (from start)",
        "runtime events/s (from assignment)",
        "ratio to ceiling (from start)",
        "runtime CPU s / M events",
        "broker CPU s / M events",
    ]);
    for t in &topics {
        let n = t.records as f64;
        let ceiling = ceiling(&brokers, &t.topic).await.expect("bare read");
        let ends = end_offsets(&brokers, &t.topic).await.expect("end offsets");
        let (b, topic) = (brokers.clone(), t.topic.clone());
        let props: Vec<(String, String)> = fetch_props
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let throttled = tokio::task::spawn_blocking(move || {
            let p: Vec<(&str, &str)> = props
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            bare_read(&b, &topic, &ends, &p)
        })
        .await
        .expect("task")
        .expect("bare read with the runtime's settings");
        let watch = CpuWatch::start(&[("broker", broker_pid)]);
        let run = run_runtime(&brokers, t).await;
        let broker_cpu = watch.stop().first().map_or(f64::NAN, |(_, s)| *s);
        let rate = n / run.from_start;
        drain.row(&[
            t.publisher.label().to_owned(),
            format!("{:.0}", ceiling.rate()),
            format!("{:.0}", throttled.rate()),
            format!("{rate:.0}"),
            format!("{:.0}", n / run.from_assignment),
            format!("{:.2}", rate / ceiling.rate()),
            format!("{:.2}", run.cpu_seconds / n * 1e6),
            format!("{:.2}", broker_cpu / n * 1e6),
        ]);
    }
    delete_filled(&brokers, &topics).await;
    println!(
        "\nruntime_drain: {} events over {} keys, {} B documents, {:.0}% deletes; load {}",
        spec.events,
        spec.keys,
        spec.doc_bytes,
        spec.delete_ratio * 100.0,
        load_average()
    );
    println!("runtime fetch settings: {fetch_props:?}\n");
    println!(
        "Publishing (the same JSON Lines file)\n\n{}",
        publishing_table(&topics)
    );
    println!("Drain (counting sink)\n\n{drain}");
}
