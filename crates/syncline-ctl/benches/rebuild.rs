//! `rebuild es` benchmark (not a timed test): how fast a rebuild fills a fresh index, beside
//! the ceilings measured on the same topic in the same run.
//!
//! 1. Pre-fill a 6-partition topic with the shared drain workload
//!    (`syncline_testkit::drain`, written by `syncline-publish`): by default **1,000,000
//!    events over 100,000 keys, 1 KiB documents, 10% deletes** (`BENCH_EVENTS`,
//!    `BENCH_KEYS`, `BENCH_DOC_BYTES`, `BENCH_DELETE_RATIO`).
//! 2. Ceiling 1: a bare librdkafka read of the whole topic (no group, no decoding).
//! 3. Ceiling 2: the indexer (`syncline-es-indexer`, release) draining the topic into a
//!    fresh index, timed from spawn until its group's committed offsets reach the end.
//! 4. With the indexer stopped, `syncline-ctl rebuild es` (release) replays the same topic
//!    into the next index behind the same alias, swaps and finishes: timed from spawn to
//!    exit, so its figure includes the history check, index creation, swap and cleanup.
//!
//! Prints the host load (`uptime`) before and after, and one table: events/s, CPU seconds
//! and peak RSS of each process, the broker's and the store's CPU seconds while it ran,
//! and the rebuild's ratio to each ceiling.
//!
//! Run: `cargo bench -p syncline-ctl --bench rebuild` (source `.syncline/env` first).
//! Quick run: `BENCH_EVENTS=100000 BENCH_KEYS=10000 cargo bench -p syncline-ctl --bench
//! rebuild`. Elasticsearch: `ES_URL`, else the dev server as a release process of its own.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use syncline_cache::KeyLayout;
use syncline_testkit::drain::{
    self, bare_read, broker_port, env_or, fill_topics, pid_listening_on, watch_drain, CpuWatch,
    DrainSpec,
};
use syncline_testkit::es_process::start_devserver_process;
use syncline_testkit::{
    consumer_kafka_env, consumer_kafka_props, delete_topics, free_port, kafka_brokers, redis_url,
    release_binary, unique_name, ChildGuard, ProcessStats, Table,
};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("bench failed: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let brokers = kafka_brokers();
    // The size (the drain module's own default is 1,050,000).
    let spec = DrainSpec {
        events: env_or("BENCH_EVENTS", 1_000_000),
        ..DrainSpec::from_env()
    };
    println!("host before: {}", uptime());
    let (es_url, devserver) = start_devserver_process().context("starting the dev server")?;
    // The broker's and the store's CPU beside each measured process: on two cores they
    // share the host with it, so they show when the host, not the process, was the limit.
    let broker_pid = broker_port(&brokers).and_then(pid_listening_on);
    let devserver_pid = devserver.as_ref().map(ChildGuard::id);
    let servers = [("broker", broker_pid), ("store", devserver_pid)];
    let name = unique_name("bench-rebuild");
    let prefix = format!("{name}-");
    let group = format!("{name}-indexer");

    let publish = release_binary(
        "syncline-producer",
        "syncline-publish",
        "SYNCLINE_PUBLISH_BIN",
    )?;
    let (filled, _) = fill_topics(
        &spec,
        &brokers,
        &name,
        vec![drain::Publisher::SynclinePublish { binary: publish }],
    )
    .await?;
    let Some(filled) = filled.into_iter().next() else {
        bail!("no topic was filled");
    };
    let (topic, records) = (filled.topic.clone(), filled.records);
    eprintln!("filled {topic} with {records} records");

    // The same librdkafka properties the indexer and the rebuild get.
    let props = consumer_kafka_props("");
    let ends = syncline_testkit::end_offsets(&brokers, &topic).await?;
    let bare = {
        let (b, t) = (brokers.clone(), topic.clone());
        tokio::task::spawn_blocking(move || {
            let props: Vec<(&str, &str)> = props
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            bare_read(&b, &t, &ends, &props)
        })
        .await??
    };
    eprintln!("bare read: {:.0} records/s", bare.rate());

    let indexer_bin = release_binary(
        "syncline-es-indexer",
        "syncline-es-indexer",
        "SYNCLINE_ES_INDEXER_BIN",
    )?;
    let watch = CpuWatch::start(&servers);
    let spawned = Instant::now();
    let indexer = ChildGuard::spawn(
        Command::new(&indexer_bin)
            .args(["--brokers", &brokers, "--topic", &topic, "--group", &group])
            .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
            .args(["--es-url", &es_url, "--es-index-prefix", &prefix])
            .env("SYNCLINE_KAFKA", consumer_kafka_env(""))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null()),
    )
    .with_context(|| format!("start {}", indexer_bin.display()))?;
    let drained = watch_drain(
        &brokers,
        &group,
        &topic,
        records,
        &indexer,
        spawned,
        Duration::from_secs(3600),
    )
    .await?;
    let indexer_servers = watch.stop();
    let mut indexer = indexer;
    let _ = indexer.terminate();
    let indexer_rate = records as f64 / drained.seconds;
    eprintln!("indexer drain: {indexer_rate:.0} events/s from spawn");

    let watch = CpuWatch::start(&servers);
    let rebuild = run_to_exit(
        Command::new(env!("CARGO_BIN_EXE_syncline-ctl"))
            .args(["--brokers", &brokers, "rebuild", "es"])
            .args(["--entity-type", "product", "--topic", &topic])
            .args(["--live-group", &group, "--delete-old"])
            .args(["--es-url", &es_url, "--es-index-prefix", &prefix])
            .env("SYNCLINE_KAFKA", consumer_kafka_env(""))
            // `BENCH_REBUILD_LOG=syncline_ctl=debug` adds the setup steps' timings.
            .env(
                "RUST_LOG",
                std::env::var("BENCH_REBUILD_LOG").unwrap_or_else(|_| "warn".into()),
            ),
    )
    .await
    .context("rebuild es")?;
    let rebuild_servers = watch.stop();
    let (rebuild_secs, stats) = (rebuild.seconds, rebuild.stats);
    let rebuild_rate = records as f64 / rebuild_secs;
    let phases = rebuild.phases;

    // `rebuild redis` in refresh mode beside the invalidator draining the same topic.
    let redis_rows = if env_or("BENCH_REDIS", 1u8) == 1 {
        Some(redis_scenario(&brokers, &name, &topic, records).await?)
    } else {
        None
    };

    delete_topics(&brokers, &[&topic, &format!("{topic}.dlq")]).await;
    println!(
        "\n{records} events, {} keys, {} B documents, {:.0}% deletes, 6 partitions, written by {}\n",
        spec.keys,
        spec.doc_bytes,
        spec.delete_ratio * 100.0,
        filled.publisher.label()
    );
    let mut t = Table::new(&[
        "process",
        "wall s",
        "events/s",
        "CPU s",
        "peak RSS MiB",
        "broker CPU s",
        "store CPU s",
    ]);
    t.row(&[
        "bare librdkafka read (ceiling)".to_owned(),
        format!("{:.1}", bare.seconds),
        format!("{:.0}", bare.rate()),
        "-".to_owned(),
        "-".to_owned(),
        "-".to_owned(),
        "-".to_owned(),
    ]);
    let measured = |label: &str, seconds: f64, stats: &ProcessStats, servers: &[(String, f64)]| {
        let cpu_of = |name: &str| {
            servers
                .iter()
                .find(|(l, _)| l == name)
                .map_or_else(|| "-".to_owned(), |(_, s)| format!("{s:.1}"))
        };
        vec![
            label.to_owned(),
            format!("{seconds:.1}"),
            format!("{:.0}", records as f64 / seconds),
            format!("{:.1}", stats.cpu_seconds),
            format!("{:.1}", stats.peak_rss_mib()),
            cpu_of("broker"),
            cpu_of("store"),
        ]
    };
    t.row(&measured(
        "syncline-es-indexer drain into a fresh index (ceiling)",
        drained.seconds,
        &drained.stats,
        &indexer_servers,
    ));
    t.row(&measured(
        "syncline-ctl rebuild es (spawn to exit)",
        rebuild_secs,
        &stats,
        &rebuild_servers,
    ));
    if let Some(r) = &redis_rows {
        t.row(&measured(
            "syncline-redis-invalidator (refresh) drain into a fresh prefix (ceiling)",
            r.drain.seconds,
            &r.drain.stats,
            &r.drain_servers,
        ));
        t.row(&measured(
            "syncline-ctl rebuild redis, refresh (spawn to exit)",
            r.rebuild.seconds,
            &r.rebuild.stats,
            &r.rebuild_servers,
        ));
    }
    println!("{t}");
    println!(
        "rebuild es / indexer drain: {:.2}; rebuild es / bare read: {:.2}",
        rebuild_rate / indexer_rate,
        rebuild_rate / bare.rate()
    );
    for line in &phases {
        println!("rebuild es {line}");
    }
    if let Some(r) = &redis_rows {
        println!(
            "rebuild redis / invalidator drain: {:.2}",
            r.drain.seconds / r.rebuild.seconds
        );
        for line in &r.rebuild.phases {
            println!("rebuild redis {line}");
        }
    }
    println!("host after: {}", uptime());
    Ok(())
}

/// A process run to its exit.
struct Exited {
    seconds: f64,
    stats: ProcessStats,
    /// Its stderr lines with its own timing ("phases: ...", cleanup).
    phases: Vec<String>,
}

/// Run `cmd` to its exit (stdin and stdout closed, stderr kept), sampling its CPU and
/// peak RSS; fails with its stderr unless it exits 0.
async fn run_to_exit(cmd: &mut Command) -> anyhow::Result<Exited> {
    let log_dir = tempfile::tempdir()?;
    let log_path = log_dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path)?;
    let started = Instant::now();
    let mut child = ChildGuard::spawn(cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log))
        .with_context(|| format!("start {cmd:?}"))?;
    let (status, stats) =
        ProcessStats::sample_until_exit(&mut child, Duration::from_secs(3600)).await?;
    let seconds = started.elapsed().as_secs_f64();
    let err = std::fs::read_to_string(&log_path).unwrap_or_default();
    if !status.success() {
        bail!("exited with {status}: {err}");
    }
    let phases = err
        .lines()
        .filter(|l| l.contains("phases:") || l.contains("; done") || l.contains("DEBUG"))
        .map(str::to_owned)
        .collect();
    Ok(Exited {
        seconds,
        stats,
        phases,
    })
}

/// The Redis figures: the invalidator's drain and the rebuild's run.
struct RedisRows {
    drain: drain::DrainRun,
    /// Broker and Redis CPU seconds during the drain.
    drain_servers: Vec<(String, f64)>,
    rebuild: Exited,
    /// Broker and Redis CPU seconds during the rebuild.
    rebuild_servers: Vec<(String, f64)>,
}

/// The invalidator (refresh mode) drains `topic` into a fresh prefix; then, with it
/// stopped, `rebuild redis` warms the prefix's next generation from the same topic,
/// switches and unlinks the old generation (unthrottled here: the bench measures the
/// replay, not the operator's pacing). The prefix is purged afterwards.
async fn redis_scenario(
    brokers: &str,
    name: &str,
    topic: &str,
    records: i64,
) -> anyhow::Result<RedisRows> {
    let redis = redis_url();
    let prefix = format!("{name}:");
    let group = format!("{name}-invalidator");
    let redis_pid = redis::Client::open(redis.as_str()).ok().and_then(|c| {
        match &c.get_connection_info().addr {
            redis::ConnectionAddr::Tcp(_, port) => pid_listening_on(*port),
            _ => None,
        }
    });
    let servers = [
        ("broker", broker_port(brokers).and_then(pid_listening_on)),
        ("store", redis_pid),
    ];
    let invalidator_bin = release_binary(
        "syncline-redis-invalidator",
        "syncline-redis-invalidator",
        "SYNCLINE_REDIS_INVALIDATOR_BIN",
    )?;
    let watch = CpuWatch::start(&servers);
    let spawned = Instant::now();
    let mut invalidator = ChildGuard::spawn(
        Command::new(&invalidator_bin)
            .args(["--metrics-addr", "off"])
            .env("SYNCLINE_BROKERS", brokers)
            .env("SYNCLINE_TOPIC", topic)
            .env("SYNCLINE_GROUP_ID", &group)
            .env("SYNCLINE_KAFKA", consumer_kafka_env(""))
            .env("SYNCLINE_REDIS_URL", &redis)
            .env("SYNCLINE_REDIS_KEY_PREFIX", &prefix)
            .env("SYNCLINE_REDIS_MODE", "refresh")
            .env_remove("SYNCLINE_CONFIG")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null()),
    )
    .with_context(|| format!("start {}", invalidator_bin.display()))?;
    let drain = watch_drain(
        brokers,
        &group,
        topic,
        records,
        &invalidator,
        spawned,
        Duration::from_secs(3600),
    )
    .await?;
    let drain_servers = watch.stop();
    let _ = invalidator.terminate();
    eprintln!(
        "invalidator drain (refresh): {:.0} events/s from spawn",
        records as f64 / drain.seconds
    );
    let watch = CpuWatch::start(&servers);
    let rebuild = run_to_exit(
        Command::new(env!("CARGO_BIN_EXE_syncline-ctl"))
            .args(["--brokers", brokers, "rebuild", "redis"])
            .args(["--topic", topic, "--live-group", &group])
            .args(["--keys-per-second", "10000000", "--scan-count", "10000"])
            .env("SYNCLINE_KAFKA", consumer_kafka_env(""))
            .env("SYNCLINE_REDIS_URL", &redis)
            .env("SYNCLINE_REDIS_KEY_PREFIX", &prefix)
            .env("SYNCLINE_REDIS_MODE", "refresh")
            .env_remove("SYNCLINE_CONFIG")
            .env("RUST_LOG", "warn"),
    )
    .await
    .context("rebuild redis");
    let rebuild_servers = watch.stop();
    let layout = KeyLayout::new(prefix.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut r = redis::Client::open(redis.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let _ = syncline_cache::admin::purge_prefix(&mut r, &layout).await;
    Ok(RedisRows {
        drain,
        drain_servers,
        rebuild: rebuild?,
        rebuild_servers,
    })
}

/// `uptime`'s line (load averages), else `/proc/loadavg`.
fn uptime() -> String {
    Command::new("uptime")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(drain::load_average)
}
