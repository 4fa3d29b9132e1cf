//! Indexer benchmark harness (not a timed test): prints markdown tables.
//!
//! Scenarios (both by default; pick with `BENCH_SCENARIOS=drain` or `steady`):
//!
//! * **drain**: one workload (`BENCH_EVENTS` (1,050,000) events over `BENCH_KEYS`
//!   (100,000) keys, `BENCH_DOC_BYTES` (1024) byte documents, `BENCH_DELETE_RATIO` (0.1)
//!   deletes) written to two 6-partition topics, one by a typical non-Rust producer
//!   (confluent-kafka from Python, no compression, linger 10 ms) and one by
//!   `syncline-publish` (lz4). For each: the ceiling (a bare librdkafka reader of the topic,
//!   default settings), then the indexer (release) timed from its process start until its
//!   committed offsets reach the end, with CPU seconds per million events of the indexer,
//!   the broker and the dev server, and the live-document count checked against the
//!   workload's oracle.
//! * **steady**: `BENCH_RATE` (5,000) events/s for `BENCH_SECONDS` (60) s against a
//!   running indexer; end-to-end latency from publish to bulk acknowledgement, and the
//!   indexer's own histograms: Kafka timestamp to read, to acknowledged, and Syncline's
//!   share per record (`syncline_consumer_processing_delay_seconds`: read to acknowledged).
//!
//! Latency method: every 25th event is tracked. Its publish time is taken just before it
//! is handed to the producer; a tracker asks Elasticsearch every 5 ms with a realtime
//! `_mget` (which sees a document as soon as its bulk item is acknowledged) whether the
//! tracked ids have reached their versions. Resolution is therefore about 5 ms plus one
//! `_mget` round trip.
//!
//! Extra librdkafka properties for the indexer: `BENCH_KAFKA=key=value,...`; extra indexer
//! flags: `BENCH_INDEXER_ARGS` (space separated).
//!
//! Elasticsearch: `ES_URL` if set, else the dev server as a separate release process
//! (`ES_DEVSERVER_BIN`, else `target/release/es-devserver`, built with cargo if missing).
//! Kafka: `KAFKA_BROKERS` (default 127.0.0.1:9092).
//!
//! Quick run: `BENCH_EVENTS=100000 BENCH_KEYS=10000 BENCH_SECONDS=10 cargo bench -p
//! syncline-es-indexer --bench drain`.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use syncline_event::{ChangeEvent, Limits, Op};
use syncline_testkit::drain::{
    both_publishers, broker_port, ceiling, delete_filled, env_or, fill_topics, load_average,
    pid_listening_on, publishing_table, watch_drain, CpuWatch, DrainFigures, DrainSpec,
};
use syncline_testkit::{
    create_topic_with_dlq, free_port, group_caught_up, histogram_quantile, metric_sums,
    publish_one_per_partition, scrape_metrics, unique_name, ChildGuard, ProcessStats, Table,
};

/// librdkafka properties for the indexer: the test timeouts Tansu needs, the caller's
/// `SYNCLINE_KAFKA` (the stack's broker settings), then `BENCH_KAFKA` (one `key=value` per
/// line) for experiments such as `fetch.wait.max.ms=100`.
fn kafka_props() -> String {
    syncline_testkit::consumer_kafka_env(&std::env::var("BENCH_KAFKA").unwrap_or_default())
}

struct Indexer {
    child: ChildGuard,
    metrics_port: u16,
}

fn start_indexer(
    brokers: &str,
    topic: &str,
    group: &str,
    es_url: &str,
    prefix: &str,
) -> anyhow::Result<Indexer> {
    let metrics_port = free_port();
    let child = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_syncline-es-indexer"))
            .args([
                "--brokers",
                brokers,
                "--topic",
                topic,
                "--group",
                group,
                "--metrics-addr",
                &format!("127.0.0.1:{metrics_port}"),
                "--es-url",
                es_url,
                "--es-index-prefix",
                prefix,
            ])
            .args(
                std::env::var("BENCH_INDEXER_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .env("SYNCLINE_KAFKA", kafka_props())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null()),
    )?;
    Ok(Indexer {
        child,
        metrics_port,
    })
}

/// The indexer's metrics, each name summed over its labels.
/// Each metric summed over its label sets, and each labelled series under its full name
/// (`syncline_es_bulk_items_total{result="conflict"}`).
fn scrape(port: u16) -> HashMap<String, f64> {
    let text = scrape_metrics(port);
    let mut m = metric_sums(&text);
    m.extend(
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains('{'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            }),
    );
    m
}

fn document(rng: &mut rand::rngs::StdRng, id: &str, version: i64, bytes: usize) -> String {
    let head = json!({"id": id, "version": version, "price": rng.random_range(1..100_000), "name": format!("product {id}")})
        .to_string();
    let pad = bytes.saturating_sub(head.len() + 10);
    let filler: String = (0..pad)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect();
    format!("{},\"pad\":\"{filler}\"}}", &head[..head.len() - 1])
}

/// Drain of one topic per kind of producer (see `syncline_testkit::drain`), each beside
/// the bare reader's ceiling of the same topic, measured in the same run.
async fn drain(brokers: &str, es_url: &str, devserver_pid: Option<u32>) -> anyhow::Result<Table> {
    let spec = DrainSpec::from_env();
    let name = unique_name("bench-drain");
    eprintln!(
        "[bench] workload: {} events over {} keys, {} B documents, {:.0}% deletes",
        spec.events,
        spec.keys,
        spec.doc_bytes,
        spec.delete_ratio * 100.0
    );
    let (topics, oracle) = fill_topics(&spec, brokers, &name, both_publishers()?).await?;
    let broker_pid = broker_port(brokers).and_then(pid_listening_on);
    let mut t = Table::new(&DrainFigures::HEADER);
    for (i, topic) in topics.iter().enumerate() {
        let ceiling = ceiling(brokers, &topic.topic).await?;
        let group = format!("{name}-group-{i}");
        let prefix = format!("{name}-{i}-");
        let watch = CpuWatch::start(&[("broker", broker_pid), ("store", devserver_pid)]);
        let spawned = Instant::now();
        let indexer = start_indexer(brokers, &topic.topic, &group, es_url, &prefix)?;
        let run = watch_drain(
            brokers,
            &group,
            &topic.topic,
            topic.records,
            &indexer.child,
            spawned,
            Duration::from_secs(3600),
        )
        .await?;
        let others = watch.stop();
        let m = scrape(indexer.metrics_port);
        let mut indexer = indexer;
        let _ = indexer.child.terminate();
        let alias = format!("{prefix}product");
        let end_state = check_end_state(es_url, &alias, oracle.live()).await;
        eprintln!(
            "[bench] {}: {} bulk requests, {:.0} stale (409), {:.0} coalesced away",
            topic.publisher.label(),
            m.get("syncline_es_bulk_requests_total")
                .copied()
                .unwrap_or(0.0),
            m.get("syncline_es_bulk_items_total{result=\"conflict\"}")
                .copied()
                .unwrap_or(0.0),
            m.get("syncline_consumer_coalesced_total")
                .copied()
                .unwrap_or(0.0),
        );
        delete_indices_behind(es_url, &alias).await;
        t.row(
            &DrainFigures {
                written_by: topic.publisher.label().to_owned(),
                consumer: "syncline-es-indexer".to_owned(),
                records: topic.records,
                ceiling,
                run,
                others,
                end_state,
            }
            .row(),
        );
    }
    // A steady run after this one must not share the broker with a million leftover
    // records.
    delete_filled(brokers, &topics).await;
    println!(
        "\n### publishing the drain workload (load {})\n\n{}",
        load_average(),
        publishing_table(&topics)
    );
    Ok(t)
}

/// Compare the index behind `alias` with the oracle: as many searchable documents as live
/// entities (tombstones, kept for version guards, are filtered out by the alias).
async fn check_end_state(es_url: &str, alias: &str, live: usize) -> String {
    let http = reqwest::Client::new();
    let _ = http.post(format!("{es_url}/{alias}/_refresh")).send().await;
    let count = match http.get(format!("{es_url}/{alias}/_count")).send().await {
        Ok(r) => r
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v["count"].as_u64()),
        Err(_) => None,
    };
    match count {
        Some(c) if c == live as u64 => format!("ok: {c} live documents"),
        Some(c) => format!("DIFFERS: {c} live documents, oracle {live}"),
        None => "cannot count".to_owned(),
    }
}

/// Delete the concrete indices behind `alias`, best effort. By name, because Elasticsearch
/// 8 refuses wildcard deletes by default (`action.destructive_requires_name`).
async fn delete_indices_behind(es_url: &str, alias: &str) {
    let http = reqwest::Client::new();
    let Ok(r) = http.get(format!("{es_url}/_alias/{alias}")).send().await else {
        return;
    };
    let Ok(Value::Object(indices)) = r.json::<Value>().await else {
        return;
    };
    for index in indices.keys() {
        let _ = http.delete(format!("{es_url}/{index}")).send().await;
    }
}

async fn steady(brokers: &str, es_url: &str, http: &reqwest::Client) -> anyhow::Result<Table> {
    let rate: usize = env_or("BENCH_RATE", 5_000);
    let seconds: u64 = env_or("BENCH_SECONDS", 60);
    let keys: usize = env_or("BENCH_STEADY_KEYS", 20_000);
    let doc_bytes: usize = env_or("BENCH_DOC_BYTES", 1024);
    let name = unique_name("bench-steady");
    let topic = format!("{name}-events");
    let prefix = format!("{name}-");
    create_topic_with_dlq(brokers, &topic, 6).await?;
    let mut indexer = start_indexer(brokers, &topic, &format!("{name}-group"), es_url, &prefix)?;
    // Wait for the group to form before the clock starts.
    let deadline = Instant::now() + Duration::from_secs(120);
    while scrape(indexer.metrics_port)
        .get("syncline_consumer_assigned_partitions")
        .copied()
        .unwrap_or(0.0)
        < 6.0
    {
        if Instant::now() > deadline {
            bail!("indexer never got its partitions");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "2")
        .set("acks", "all")
        .create()?;
    // Warm-up: one event per partition, applied before the clock starts, so the index
    // bootstrap and each partition's first fetch are not counted as steady-state latency.
    publish_one_per_partition(brokers, &topic, 6, |p| {
        let id = format!("warm-up-{p}");
        ChangeEvent::new("product", &id, Op::Upsert, 1, "bench", Some("{}".into()))
    })
    .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !group_caught_up(brokers, &format!("{name}-group"), &topic).await {
        if Instant::now() > deadline {
            bail!("the indexer never applied the warm-up events");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pending: Arc<parking_lot::Mutex<Vec<(String, i64, Instant)>>> = Arc::default();
    let latencies: Arc<parking_lot::Mutex<Vec<Duration>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let alias = format!("{prefix}product");
    let tracker = {
        let (pending, latencies, stop, http) = (
            pending.clone(),
            latencies.clone(),
            stop.clone(),
            http.clone(),
        );
        let url = format!("{es_url}/{alias}/_mget");
        tokio::spawn(async move {
            loop {
                let ids: Vec<String> = pending.lock().iter().map(|p| p.0.clone()).collect();
                if ids.is_empty() {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                let got: Value = match http.post(&url).json(&json!({"ids": ids})).send().await {
                    Ok(r) => r.json().await.unwrap_or(Value::Null),
                    Err(_) => Value::Null,
                };
                let now = Instant::now();
                let seen: HashMap<String, i64> = got["docs"]
                    .as_array()
                    .map(|docs| {
                        docs.iter()
                            .filter_map(|d| {
                                Some((d["_id"].as_str()?.to_owned(), d["_version"].as_i64()?))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                {
                    let mut p = pending.lock();
                    let mut l = latencies.lock();
                    p.retain(|(id, v, t)| match seen.get(id) {
                        Some(have) if have >= v => {
                            l.push(now - *t);
                            false
                        }
                        _ => true,
                    });
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let limits = Limits::default();
    let per_tick = (rate / 100).max(1);
    let mut version = 0i64;
    let mut sent = 0usize;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut deliveries = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        for _ in 0..per_tick {
            version += 1;
            let id = format!("k{:07}", rng.random_range(0..keys));
            let doc = document(&mut rng, &id, version, doc_bytes);
            let e = ChangeEvent::new("product", &id, Op::Upsert, version, "bench", Some(doc));
            let payload = syncline_event::encode(&e, &limits)?;
            let key = e.key();
            if sent.is_multiple_of(25) {
                pending.lock().push((id, version, Instant::now()));
            }
            sent += 1;
            match producer.send_result(FutureRecord::to(&topic).key(&key).payload(&payload)) {
                Ok(f) => deliveries.push(f),
                Err((e, _)) => bail!("produce: {e}"),
            }
        }
    }
    let elapsed = started.elapsed();
    for d in deliveries {
        let _ = d.await;
    }
    producer.flush(Duration::from_secs(30))?;
    let wait = Instant::now() + Duration::from_secs(120);
    while !pending.lock().is_empty() && Instant::now() < wait {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let left = pending.lock().len();
    pending.lock().clear();
    let _ = tracker.await;
    let stats = ProcessStats::of_pid(indexer.child.id())?;
    // The indexer's own view (whole run, warm-up included): Kafka timestamp -> record read,
    // and -> event acknowledged by the bulk API.
    let runtime_metrics = scrape_metrics(indexer.metrics_port);
    let m = metric_sums(&runtime_metrics);
    let _ = indexer.child.terminate();
    let hist = |name: &str| {
        let ms = |q: f64| {
            histogram_quantile(&runtime_metrics, name, q)
                .map_or_else(|| "-".to_owned(), |s| format!("{:.0}", s * 1000.0))
        };
        format!("{} / {}", ms(0.5), ms(0.99))
    };

    let mut l = latencies.lock().clone();
    l.sort();
    let pct = |q: f64| -> String {
        if l.is_empty() {
            return "-".into();
        }
        let i = ((l.len() as f64 * q).ceil() as usize).clamp(1, l.len()) - 1;
        format!("{:.0}", l[i].as_secs_f64() * 1000.0)
    };
    let mut t = Table::new(&[
        "target events/s",
        "achieved events/s",
        "seconds",
        "tracked events",
        "p50 ms",
        "p99 ms",
        "max ms",
        "read p50 / p99 ms",
        "acknowledged p50 / p99 ms",
        "Syncline's share (read to acknowledged) p50 / p99 ms",
        "never seen",
        "indexer CPU s",
        "indexer peak RSS MiB",
        "bulk requests",
    ]);
    t.row(&[
        rate.to_string(),
        format!("{:.0}", sent as f64 / elapsed.as_secs_f64()),
        format!("{:.0}", elapsed.as_secs_f64()),
        l.len().to_string(),
        pct(0.5),
        pct(0.99),
        pct(1.0),
        hist("syncline_consumer_fetch_delay_seconds"),
        hist("syncline_consumer_event_delay_seconds"),
        hist("syncline_consumer_processing_delay_seconds"),
        left.to_string(),
        format!("{:.1}", stats.cpu_seconds),
        format!("{:.1}", stats.peak_rss_mib()),
        format!(
            "{:.0}",
            m.get("syncline_es_bulk_requests_total")
                .copied()
                .unwrap_or(0.0)
        ),
    ]);
    Ok(t)
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let brokers = syncline_testkit::kafka_brokers();
        // The dev server as its own process, so its CPU is not counted as the indexer's.
        let (es_url, devserver) = syncline_testkit::es_process::start_devserver_process()
            .context("start the ES dev server")?;
        // One already answering at ES_URL (e.g. the stack's) is found by its port.
        let devserver_pid = devserver.as_ref().map(ChildGuard::id).or_else(|| {
            reqwest::Url::parse(&es_url)
                .ok()
                .and_then(|u| u.port_or_known_default())
                .and_then(pid_listening_on)
        });
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while http.get(&es_url).send().await.is_err() {
            if Instant::now() > deadline {
                bail!("Elasticsearch at {es_url} does not answer");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let scenarios = std::env::var("BENCH_SCENARIOS").unwrap_or_else(|_| "drain,steady".into());
        if scenarios.contains("drain") {
            let t = drain(&brokers, &es_url, devserver_pid).await?;
            println!(
                "\n### drain (indexer's librdkafka properties: {})\n\n{t}",
                kafka_props()
            );
        }
        if scenarios.contains("steady") {
            let t = steady(&brokers, &es_url, &http).await?;
            println!(
                "\n### steady load (indexer's librdkafka properties: {})\n\n{t}\n\
                 p50/p99/max: the bench's clock (publish -> realtime _mget sees the version).\n\
                 read / acknowledged: the indexer's histograms (Kafka timestamp -> record read, \
                 -> bulk item acknowledged), interpolated inside their buckets.",
                kafka_props()
            );
        }
        Ok(())
    })
}
