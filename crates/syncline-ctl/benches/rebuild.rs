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
//! and peak RSS of each process, and the rebuild's ratio to each ceiling.
//!
//! Run: `cargo bench -p syncline-ctl --bench rebuild` (source `.syncline/env` first).
//! Quick run: `BENCH_EVENTS=100000 BENCH_KEYS=10000 cargo bench -p syncline-ctl --bench
//! rebuild`. Elasticsearch: `ES_URL`, else the dev server as a release process of its own.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use syncline_testkit::drain::{self, bare_read, env_or, fill_topics, watch_drain, DrainSpec};
use syncline_testkit::es_process::start_devserver_process;
use syncline_testkit::{
    consumer_kafka_env, consumer_kafka_props, delete_topics, free_port, kafka_brokers,
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
    let (es_url, _devserver) = start_devserver_process().context("starting the dev server")?;
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
    let mut indexer = indexer;
    let _ = indexer.terminate();
    let indexer_rate = records as f64 / drained.seconds;
    eprintln!("indexer drain: {indexer_rate:.0} events/s from spawn");

    let log_dir = tempfile::tempdir()?;
    let log_path = log_dir.path().join("rebuild.log");
    let log = std::fs::File::create(&log_path)?;
    let started = Instant::now();
    let mut rebuild = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_syncline-ctl"))
            .args(["--brokers", &brokers, "rebuild", "es"])
            .args(["--entity-type", "product", "--topic", &topic])
            .args(["--live-group", &group, "--delete-old"])
            .args(["--es-url", &es_url, "--es-index-prefix", &prefix])
            .env("SYNCLINE_KAFKA", consumer_kafka_env(""))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log),
    )
    .context("start syncline-ctl")?;
    let pid = rebuild.id();
    let mut stats = ProcessStats::of_pid(pid)?;
    let status = loop {
        stats = stats.resample(pid);
        if let Some(status) = rebuild.try_wait()? {
            break status;
        }
        if started.elapsed() > Duration::from_secs(3600) {
            bail!("the rebuild did not finish within an hour");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rebuild_secs = started.elapsed().as_secs_f64();
    if !status.success() {
        let err = std::fs::read_to_string(&log_path).unwrap_or_default();
        bail!("rebuild es failed ({status}): {err}");
    }
    let rebuild_rate = records as f64 / rebuild_secs;

    delete_topics(&brokers, &[&topic, &format!("{topic}.dlq")]).await;
    println!(
        "\n{records} events, {} keys, {} B documents, {:.0}% deletes, 6 partitions, written by {}\n",
        spec.keys,
        spec.doc_bytes,
        spec.delete_ratio * 100.0,
        filled.publisher.label()
    );
    let mut t = Table::new(&["process", "wall s", "events/s", "CPU s", "peak RSS MiB"]);
    t.row(&[
        "bare librdkafka read (ceiling)".to_owned(),
        format!("{:.1}", bare.seconds),
        format!("{:.0}", bare.rate()),
        "-".to_owned(),
        "-".to_owned(),
    ]);
    t.row(&[
        "syncline-es-indexer drain into a fresh index (ceiling)".to_owned(),
        format!("{:.1}", drained.seconds),
        format!("{indexer_rate:.0}"),
        format!("{:.1}", drained.stats.cpu_seconds),
        format!("{:.1}", drained.stats.peak_rss_mib()),
    ]);
    t.row(&[
        "syncline-ctl rebuild es (spawn to exit)".to_owned(),
        format!("{rebuild_secs:.1}"),
        format!("{rebuild_rate:.0}"),
        format!("{:.1}", stats.cpu_seconds),
        format!("{:.1}", stats.peak_rss_mib()),
    ]);
    println!("{t}");
    println!(
        "rebuild / indexer drain: {:.2}; rebuild / bare read: {:.2}",
        rebuild_rate / indexer_rate,
        rebuild_rate / bare.rate()
    );
    println!("host after: {}", uptime());
    Ok(())
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
