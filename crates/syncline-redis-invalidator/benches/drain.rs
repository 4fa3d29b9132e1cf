//! Drain and latency benchmark of the Redis invalidator (release binary, real broker,
//! real Redis). Prints markdown tables.
//!
//!     cargo bench -p syncline-redis-invalidator --bench drain -- [--events N] [--keys K]
//!         [--partitions P] [--doc-bytes B] [--modes invalidate,refresh]
//!         [--steady-rate R] [--steady-secs S] [--skip-drain] [--skip-steady] [--storm N]
//!
//! Drain: one workload (default 1,000,000 events over 100,000 keys, 1 KiB documents, 10%
//! deletes) written to two 6-partition topics, one by a typical non-Rust producer
//! (confluent-kafka from Python, no compression, linger 10 ms) and one by
//! `syncline-publish` (lz4); see `syncline_testkit::drain`. For each topic: the ceiling (a
//! bare librdkafka reader, default settings), then the invalidator in each mode, timed from
//! its process start until its committed offsets equal the end offsets, with CPU seconds
//! per million events of the invalidator, the broker and redis-server, peak RSS, and every
//! entity's version guard checked against the workload's oracle.
//!
//! Storm: N poison records (default 300,000; 0 skips it), every one dead-lettered; dead
//! letters per second from process start, CPU, and the log's size at the default level.
//!
//! Steady: R events/s (default 5,000) for S seconds (default 60) with the invalidator's
//! PUBLISH notices on; a subscriber computes, per notice, receive time minus the event's
//! `occurred_at` (stamped when the bench hands it to the producer): publish-to-Redis latency
//! including Kafka, batching and the script. Same host, so one clock.
//!
//! With `--baseline`, a plain librdkafka consumer (own group, the invalidator's librdkafka
//! properties, no Syncline code) reads the same topic during the same run: its read delay
//! is what this broker gives any consumer at those moments.
//!
//! The steady table also quotes the invalidator's own `syncline_consumer_fetch_delay_seconds`
//! and `syncline_consumer_event_delay_seconds` histograms, which split that latency into
//! "producer, broker and fetch" and "batching and Redis", and
//! `syncline_consumer_processing_delay_seconds`, the distribution of Syncline's own share
//! per record (read to applied, one monotonic clock).
//!
//! Everything uses a fresh topic, group and key prefix; keys and topics are removed at the
//! end. `KAFKA_BROKERS` and `REDIS_URL` select the broker and Redis.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![allow(missing_docs)]

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use rand::{Rng as _, SeedableRng as _};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use syncline_cache::KeyLayout;
use syncline_event::{ChangeEvent, Limits, Op};
use syncline_testkit::drain::{
    both_publishers, broker_port, ceiling, delete_filled, fill_topics, load_average,
    pid_listening_on, publishing_table, watch_drain, CpuWatch, DrainFigures, DrainOracle,
    DrainSpec,
};
use syncline_testkit::{
    create_topic, delete_topics, free_port, group_caught_up, histogram_quantile, metric_sum,
    publish_one_per_partition, publish_raw, scrape_metrics, unique_name, ChildGuard, ProcessStats,
    Table,
};

struct Args {
    events: u64,
    keys: u64,
    partitions: i32,
    doc_bytes: usize,
    modes: Vec<String>,
    steady_rate: u64,
    steady_secs: u64,
    drain: bool,
    steady: bool,
    storm: u64,
    baseline: bool,
    kafka: String,
}

fn usage(msg: &str) -> ! {
    eprintln!("drain bench: {msg}");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        events: 1_000_000,
        keys: 100_000,
        partitions: 6,
        doc_bytes: 1024,
        modes: vec!["invalidate".into()],
        steady_rate: 5_000,
        steady_secs: 60,
        drain: true,
        steady: true,
        storm: 300_000,
        baseline: false,
        kafka: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> T {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("{flag}: {v:?} is not a number")))
        }
        match flag.as_str() {
            "--events" => a.events = num(&flag, value()),
            "--keys" => a.keys = num(&flag, value()),
            "--partitions" => a.partitions = num(&flag, value()),
            "--doc-bytes" => a.doc_bytes = num(&flag, value()),
            "--modes" => a.modes = value().split(',').map(str::to_owned).collect(),
            "--steady-rate" => a.steady_rate = num(&flag, value()),
            "--steady-secs" => a.steady_secs = num(&flag, value()),
            "--skip-drain" => a.drain = false,
            "--skip-steady" => a.steady = false,
            "--storm" => a.storm = num(&flag, value()),
            "--baseline" => a.baseline = true,
            // Repeatable, one property each (never split on commas), like the binaries' -X.
            "--kafka" => {
                if !a.kafka.is_empty() {
                    a.kafka.push('\n');
                }
                a.kafka.push_str(&value());
            }
            "--bench" => {} // added by `cargo bench`
            other => usage(&format!("unknown flag {other}")),
        }
    }
    a
}

fn event(rng: &mut rand::rngs::StdRng, keys: u64, version: i64, doc_bytes: usize) -> ChangeEvent {
    let id = format!("k{:06}", rng.random_range(0..keys));
    if rng.random::<f64>() < 0.1 {
        ChangeEvent::new("product", id, Op::Delete, version, "bench", None)
    } else {
        let head = format!("{{\"id\":\"{id}\",\"version\":{version},\"pad\":\"");
        let pad = "x".repeat(doc_bytes.saturating_sub(head.len() + 2));
        ChangeEvent::new(
            "product",
            id,
            Op::Upsert,
            version,
            "bench",
            Some(format!("{head}{pad}\"}}")),
        )
    }
}

fn scrape(port: u16, name: &str) -> f64 {
    metric_sum(&scrape_metrics(port), name)
}

/// The test timeouts Tansu needs, the caller's `SYNCLINE_KAFKA` (the stack's broker
/// settings), then `--kafka`.
fn kafka_props(a: &Args) -> String {
    syncline_testkit::consumer_kafka_env(&a.kafka)
}

struct Spawned {
    child: ChildGuard,
    port: u16,
}

fn spawn(
    a: &Args,
    brokers: &str,
    topic: &str,
    group: &str,
    prefix: &str,
    mode: &str,
    extra_env: &[(&str, &str)],
) -> Spawned {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncline-redis-invalidator"));
    cmd.env("SYNCLINE_BROKERS", brokers)
        .env("SYNCLINE_TOPIC", topic)
        .env("SYNCLINE_GROUP_ID", group)
        .env("SYNCLINE_KAFKA", kafka_props(a))
        .env("SYNCLINE_METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("SYNCLINE_REDIS_URL", syncline_testkit::redis_url())
        .env("SYNCLINE_REDIS_KEY_PREFIX", prefix)
        .env("SYNCLINE_REDIS_MODE", mode)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    Spawned {
        child: ChildGuard::spawn(&mut cmd).unwrap_or_else(|e| usage(&format!("spawn: {e}"))),
        port,
    }
}

async fn purge(prefix: &str) {
    if let Ok(client) = redis::Client::open(syncline_testkit::redis_url()) {
        if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
            if let Ok(layout) = KeyLayout::new(prefix) {
                let _ = syncline_cache::admin::purge_prefix(&mut conn, &layout).await;
            }
        }
    }
}

/// The end state against the oracle: every entity's version guard at its last version.
async fn check_guards(prefix: &str, oracle: &DrainOracle) -> String {
    let Ok(layout) = KeyLayout::new(prefix) else {
        return "bad prefix".to_owned();
    };
    let Ok(client) = redis::Client::open(syncline_testkit::redis_url()) else {
        return "cannot open redis".to_owned();
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return "cannot connect to redis".to_owned();
    };
    let entries: Vec<(&String, i64)> = oracle.last.iter().map(|(k, (v, _))| (k, *v)).collect();
    let mut wrong = 0usize;
    for chunk in entries.chunks(10_000) {
        let mut pipe = redis::pipe();
        for (id, _) in chunk {
            pipe.get(layout.guard_key("product", id));
        }
        let got: Vec<Option<i64>> = match pipe.query_async(&mut conn).await {
            Ok(g) => g,
            Err(e) => return format!("guard read failed: {e}"),
        };
        wrong += chunk
            .iter()
            .zip(got)
            .filter(|((_, v), g)| *g != Some(*v))
            .count();
    }
    if wrong == 0 {
        format!("ok: {} guards at their last version", entries.len())
    } else {
        format!("DIFFERS: {wrong} of {} guards", entries.len())
    }
}

/// Drain of one topic per kind of producer (see `syncline_testkit::drain`), in each mode,
/// each beside the bare reader's ceiling of the same topic, measured in the same run.
async fn drain(a: &Args, brokers: &str) -> Table {
    let spec = DrainSpec {
        events: a.events as usize,
        keys: a.keys as usize,
        doc_bytes: a.doc_bytes,
        delete_ratio: 0.1,
    };
    let name = unique_name("redis-bench-drain");
    let publishers = both_publishers().unwrap_or_else(|e| usage(&format!("publishers: {e}")));
    let (topics, oracle) = fill_topics(&spec, brokers, &name, publishers)
        .await
        .unwrap_or_else(|e| usage(&format!("fill topics: {e}")));
    let broker_pid = broker_port(brokers).and_then(pid_listening_on);
    let redis_pid = syncline_testkit::redis_url()
        .rsplit_once(':')
        .and_then(|(_, p)| p.trim_end_matches('/').parse().ok())
        .and_then(pid_listening_on);
    let mut table = Table::new(&DrainFigures::HEADER);
    for topic in &topics {
        let ceiling = ceiling(brokers, &topic.topic)
            .await
            .unwrap_or_else(|e| usage(&format!("bare reader: {e}")));
        for mode in &a.modes {
            let group = unique_name("redis-bench-group");
            let prefix = format!("{}:", unique_name("bench"));
            let watch = CpuWatch::start(&[("broker", broker_pid), ("store", redis_pid)]);
            let spawned = Instant::now();
            let mut inv = spawn(a, brokers, &topic.topic, &group, &prefix, mode, &[]);
            let run = watch_drain(
                brokers,
                &group,
                &topic.topic,
                topic.records,
                &inv.child,
                spawned,
                Duration::from_secs(3600),
            )
            .await
            .unwrap_or_else(|e| usage(&format!("drain: {e}")));
            let others = watch.stop();
            let pipelines = scrape(inv.port, "syncline_redis_pipelines_total");
            eprintln!(
                "[bench] {} / {mode}: {pipelines:.0} pipelines",
                topic.publisher.label()
            );
            inv.child.kill();
            let end_state = check_guards(&prefix, &oracle).await;
            purge(&prefix).await;
            table.row(
                &DrainFigures {
                    written_by: topic.publisher.label().to_owned(),
                    consumer: format!("syncline-redis-invalidator ({mode})"),
                    records: topic.records,
                    ceiling,
                    run,
                    others,
                    end_state,
                }
                .row(),
            );
        }
    }
    delete_filled(brokers, &topics).await;
    println!(
        "\n### Publishing the drain workload (load {})\n\n{}",
        load_average(),
        publishing_table(&topics)
    );
    table
}

/// A poison storm: every record of the topic is garbage (no Avro single-object header), so
/// every one is dead-lettered. Reports dead letters per second from process start, CPU,
/// and how much the invalidator logged.
async fn storm(a: &Args, brokers: &str) -> Table {
    let topic = unique_name("redis-bench-storm");
    create_topic(brokers, &topic, a.partitions)
        .await
        .unwrap_or_else(|e| usage(&format!("topic: {e}")));
    create_topic(brokers, &format!("{topic}.dlq"), a.partitions)
        .await
        .unwrap_or_else(|e| usage(&format!("dlq topic: {e}")));
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let mut left = a.storm;
    while left > 0 {
        let n = left.min(100_000);
        let records: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
            .map(|i| {
                let key = format!("product:p{}", rng.random_range(0..a.keys)).into_bytes();
                let payload: Vec<u8> = (0..200).map(|j| ((i + j) % 251) as u8).collect();
                (key, payload)
            })
            .collect();
        publish_raw(brokers, &topic, records)
            .await
            .unwrap_or_else(|e| usage(&format!("publish: {e}")));
        left -= n;
    }
    let log = tempfile::NamedTempFile::new().unwrap_or_else(|e| usage(&format!("log file: {e}")));
    let log_file = log
        .reopen()
        .unwrap_or_else(|e| usage(&format!("log file: {e}")));
    let group = unique_name("redis-bench-storm-g");
    let prefix = format!("{}:", unique_name("bench"));
    let spawned = Instant::now();
    let port = free_port();
    let child = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_syncline-redis-invalidator"))
            .env("SYNCLINE_BROKERS", brokers)
            .env("SYNCLINE_TOPIC", &topic)
            .env("SYNCLINE_GROUP_ID", &group)
            .env("SYNCLINE_KAFKA", kafka_props(a))
            .env("SYNCLINE_METRICS_ADDR", format!("127.0.0.1:{port}"))
            .env("SYNCLINE_REDIS_URL", syncline_testkit::redis_url())
            .env("SYNCLINE_REDIS_KEY_PREFIX", &prefix)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log_file),
    )
    .unwrap_or_else(|e| usage(&format!("spawn: {e}")));
    let run = watch_drain(
        brokers,
        &group,
        &topic,
        a.storm as i64,
        &child,
        spawned,
        Duration::from_secs(3600),
    )
    .await
    .unwrap_or_else(|e| usage(&format!("storm drain: {e}")));
    let dead = scrape(port, "syncline_dead_letters_total");
    drop(child);
    let logged = std::fs::read_to_string(log.path()).unwrap_or_default();
    delete_topics(brokers, &[&topic, &format!("{topic}.dlq")]).await;
    let mut t = Table::new(&[
        "poison records",
        "dead letters (metric)",
        "dead letters/s (from process start)",
        "CPU s",
        "CPU s / M",
        "peak RSS MiB",
        "log lines",
        "log bytes",
    ]);
    t.row(&[
        a.storm.to_string(),
        format!("{dead:.0}"),
        format!("{:.0}", a.storm as f64 / run.seconds),
        format!("{:.1}", run.stats.cpu_seconds),
        format!("{:.2}", run.stats.cpu_seconds / a.storm as f64 * 1e6),
        format!("{:.1}", run.stats.peak_rss_mib()),
        logged.lines().count().to_string(),
        logged.len().to_string(),
    ]);
    t
}

/// The plain consumer of `--baseline`: reads `topic` in its own group until `stop`, and
/// returns (Kafka timestamp, read delay) in milliseconds for every record. `seen` counts
/// records, so the caller knows when it has caught up with the warm-up.
fn spawn_baseline(
    brokers: &str,
    topic: &str,
    props: &[(String, String)],
    stop: Arc<AtomicBool>,
    seen: Arc<AtomicU64>,
) -> std::thread::JoinHandle<Vec<(i64, i64)>> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", brokers)
        .set("group.id", unique_name("redis-bench-baseline"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("partition.assignment.strategy", "cooperative-sticky");
    for (k, v) in props {
        cc.set(k, v);
    }
    let topic = topic.to_owned();
    std::thread::spawn(move || {
        let mut delays = Vec::new();
        let Ok(consumer) = cc.create::<BaseConsumer>() else {
            return delays;
        };
        if consumer.subscribe(&[topic.as_str()]).is_err() {
            return delays;
        }
        while !stop.load(Ordering::Relaxed) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                if let Some(ts) = m.timestamp().to_millis() {
                    delays.push((ts, now_micros() / 1000 - ts));
                }
                seen.fetch_add(1, Ordering::Relaxed);
            }
        }
        delays
    })
}

/// The `p` quantile (nearest rank) of ascending `sorted`; `None` when empty.
fn quantile(sorted: &[i64], p: f64) -> Option<i64> {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i.min(sorted.len().saturating_sub(1))).copied()
}

/// p99 of (publish time µs, latency µs) samples per 10 s of publish time since `from`, in
/// ms: shows whether a tail is spread over the run or grows with it.
fn p99_by_window(samples: &[(i64, i64)], from: i64) -> String {
    let mut windows: Vec<Vec<i64>> = Vec::new();
    for (at, latency) in samples {
        let w = usize::try_from((at - from) / 10_000_000).unwrap_or(0);
        if windows.len() <= w {
            windows.resize(w + 1, Vec::new());
        }
        windows[w].push(*latency);
    }
    windows
        .iter_mut()
        .map(|w| {
            w.sort_unstable();
            quantile(w, 0.99)
                .map_or_else(|| "-".to_owned(), |v| format!("{:.0}", v as f64 / 1000.0))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn now_micros() -> i64 {
    syncline_event::model::now_micros()
}

async fn steady(a: &Args, brokers: &str) -> Table {
    let topic = unique_name("redis-bench-steady");
    create_topic(brokers, &topic, a.partitions)
        .await
        .unwrap_or_else(|e| usage(&format!("topic: {e}")));
    let group = unique_name("redis-bench-group");
    let prefix = format!("{}:", unique_name("bench"));
    let channel = unique_name("bench-notices");
    let client = redis::Client::open(syncline_testkit::redis_url())
        .unwrap_or_else(|e| usage(&e.to_string()));
    let mut pubsub = client
        .get_async_pubsub()
        .await
        .unwrap_or_else(|e| usage(&e.to_string()));
    pubsub
        .subscribe(&channel)
        .await
        .unwrap_or_else(|e| usage(&e.to_string()));
    let mut messages = pubsub.into_on_message();
    let collector = tokio::spawn(async move {
        let mut lat = Vec::new();
        while let Some(m) = messages.next().await {
            let now = now_micros();
            let Ok(payload) = m.get_payload::<String>() else {
                continue;
            };
            if payload == "stop" {
                break;
            }
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&payload) {
                if let Some(at) = v["occurred_at"].as_i64() {
                    lat.push((at, now - at));
                }
            }
        }
        lat
    });
    let linger = "5ms";
    let mut inv = spawn(
        a,
        brokers,
        &topic,
        &group,
        &prefix,
        "invalidate",
        &[
            ("SYNCLINE_REDIS_PUBLISH_CHANNEL", channel.as_str()),
            ("SYNCLINE_BATCH_LINGER", linger),
        ],
    );
    // Let the group form and every partition deliver once before the clock starts: the
    // first record of a partition the consumer has not fetched from yet waits for
    // librdkafka's first fetch of it, a start-up cost, not steady-state latency.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "1")
        .set("enable.idempotence", "true")
        .create()
        .unwrap_or_else(|e| usage(&e.to_string()));
    let limits = Limits::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let mut version = 0i64;
    let send = |rng: &mut rand::rngs::StdRng, version: i64| {
        let e = event(rng, a.keys, version, a.doc_bytes);
        let bytes = syncline_event::encode(&e, &limits).unwrap_or_default();
        let key = e.key();
        loop {
            match producer.send_result(FutureRecord::to(&topic).key(&key).payload(&bytes)) {
                Ok(_) => break,
                Err(_) => producer.poll(Duration::from_millis(5)),
            }
        }
    };
    publish_one_per_partition(brokers, &topic, a.partitions, |_| {
        version += 1;
        event(&mut rng, a.keys, version, a.doc_bytes)
    })
    .await
    .unwrap_or_else(|e| usage(&format!("warm-up publish: {e}")));
    let baseline_stop = Arc::new(AtomicBool::new(false));
    let baseline_seen = Arc::new(AtomicU64::new(0));
    let baseline = a.baseline.then(|| {
        spawn_baseline(
            brokers,
            &topic,
            &syncline_testkit::consumer_kafka_props(&a.kafka),
            baseline_stop.clone(),
            baseline_seen.clone(),
        )
    });
    while !group_caught_up(brokers, &group, &topic).await
        || (baseline.is_some() && baseline_seen.load(Ordering::Relaxed) < a.partitions as u64)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "steady: {} events/s for {} s ...",
        a.steady_rate, a.steady_secs
    );
    // Warm-up notices (published before the group formed) are not steady-state latency.
    let steady_from = now_micros();
    let cpu_before = ProcessStats::of_pid(inv.child.id())
        .map(|s| s.cpu_seconds)
        .unwrap_or(0.0);
    let start = Instant::now();
    let tick = Duration::from_millis(10);
    let mut sent = 0u64;
    while start.elapsed() < Duration::from_secs(a.steady_secs) {
        let due = (start.elapsed().as_secs_f64() * a.steady_rate as f64) as u64;
        while sent < due {
            version += 1;
            send(&mut rng, version);
            sent += 1;
        }
        tokio::time::sleep(tick).await;
    }
    let _ = producer.flush(Duration::from_secs(30));
    let wall = Instant::now();
    while !group_caught_up(brokers, &group, &topic).await
        && wall.elapsed() < Duration::from_secs(300)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The runtime's own view of the same run (whole run, warm-up event included): from
    // each record's Kafka timestamp to when it was read, and to when it was applied.
    let runtime_metrics = scrape_metrics(inv.port);
    let ms = |name: &str, q: f64| {
        histogram_quantile(&runtime_metrics, name, q)
            .map_or_else(|| "-".to_owned(), |s| format!("{:.0}", s * 1000.0))
    };
    let fetch = "syncline_consumer_fetch_delay_seconds";
    let done = "syncline_consumer_event_delay_seconds";
    let share = "syncline_consumer_processing_delay_seconds";
    let stats = ProcessStats::of_pid(inv.child.id()).unwrap_or(ProcessStats {
        cpu_seconds: 0.0,
        peak_rss_bytes: 0,
    });
    inv.child.kill();
    baseline_stop.store(true, Ordering::Relaxed);
    let baseline = baseline.map(|b| {
        // Kafka timestamps are milliseconds; p99_by_window wants microseconds.
        let samples: Vec<(i64, i64)> = b
            .join()
            .unwrap_or_default()
            .into_iter()
            .filter(|(ts, _)| *ts >= steady_from / 1000)
            .map(|(ts, delay)| (ts * 1000, delay * 1000))
            .collect();
        let mut d: Vec<i64> = samples.iter().map(|(_, delay)| *delay).collect();
        d.sort_unstable();
        let q = |p: f64| quantile(&d, p).map(|us| us / 1000);
        match (q(0.5), q(0.99)) {
            (Some(p50), Some(p99)) => format!(
                "{p50} / {p99} (p99 per 10 s: {})",
                p99_by_window(&samples, steady_from)
            ),
            _ => "-".to_owned(),
        }
    });
    if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
        let _: Result<i64, _> = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg("stop")
            .query_async(&mut conn)
            .await;
    }
    let samples: Vec<(i64, i64)> = collector
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|(at, _)| *at >= steady_from)
        .collect();
    let by_window = p99_by_window(&samples, steady_from);
    let mut lat: Vec<i64> = samples.into_iter().map(|(_, latency)| latency).collect();
    lat.sort_unstable();
    let pct = |p: f64| quantile(&lat, p).map_or(f64::NAN, |us| us as f64 / 1000.0);
    purge(&prefix).await;
    delete_topics(brokers, &[&topic, &format!("{topic}.dlq")]).await;
    let mut table = Table::new(&[
        "rate (events/s)",
        "seconds",
        "sent",
        "notices",
        "p50 ms",
        "p99 ms",
        "max ms",
        "read p50 / p99 ms",
        "applied p50 / p99 ms",
        "Syncline's share (read to applied) p50 / p99 ms",
        "CPU s",
        "peak RSS MiB",
        "bare librdkafka read p50 / p99 ms",
        "p99 ms per 10 s",
    ]);
    table.row(&[
        a.steady_rate.to_string(),
        a.steady_secs.to_string(),
        sent.to_string(),
        lat.len().to_string(),
        format!("{:.1}", pct(0.5)),
        format!("{:.1}", pct(0.99)),
        format!("{:.1}", pct(1.0)),
        format!("{} / {}", ms(fetch, 0.5), ms(fetch, 0.99)),
        format!("{} / {}", ms(done, 0.5), ms(done, 0.99)),
        format!("{} / {}", ms(share, 0.5), ms(share, 0.99)),
        format!("{:.1}", stats.cpu_seconds - cpu_before),
        format!("{:.1}", stats.peak_rss_mib()),
        baseline.unwrap_or_else(|| "not run (--baseline)".to_owned()),
        by_window,
    ]);
    table
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = parse_args();
    let brokers = syncline_testkit::kafka_brokers();
    if a.drain {
        let t = drain(&a, &brokers).await;
        println!(
            "\n### Drain: {} events, {} keys, {} partitions, {} B documents, 10% deletes \
             (librdkafka properties: {})\n\n{t}",
            a.events,
            a.keys,
            a.partitions,
            a.doc_bytes,
            kafka_props(&a)
        );
    }
    if a.storm > 0 {
        let t = storm(&a, &brokers).await;
        println!("\n### Poison storm: every record dead-lettered (default log level)\n\n{t}");
    }
    if a.steady {
        let t = steady(&a, &brokers).await;
        println!(
            "\n### Steady load: publish-to-Redis latency (PUBLISH notices, batch linger 5ms, \
             librdkafka properties: {})\n\n{t}\n\
             p50/p99/max: the bench's clock, event handed to the producer -> notice received.\n\
             read / applied: the invalidator's histograms (Kafka timestamp -> record read, \
             -> event applied), interpolated inside their buckets.",
            kafka_props(&a)
        );
    }
}
