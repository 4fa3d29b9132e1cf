//! What the drain benches share: one workload written as JSON Lines, topics filled from it
//! by two kinds of producer (a non-Rust client and `syncline-publish`), the ceiling every
//! drain figure is a ratio to (a bare librdkafka reader of the same topic, default
//! settings), and the CPU of the processes that share the host (broker, store, consumer).
//!
//! The figures are meant to survive a noisy 2-core host: each drain is reported beside
//! the bare reader's rate measured in the same run, and CPU seconds per million events,
//! which carry over to other machines better than rates do.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::json;

use crate::measure::ProcessStats;
use crate::process::ChildGuard;

/// Why a bench step failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The broker refused or did not answer.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A publisher exited unsuccessfully.
    #[error("{0}")]
    Publisher(String),
    /// The topic could not be read to its end in time.
    #[error("{0}")]
    Timeout(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Io { what, source }
}

/// Read an environment variable as a number (`_` separators allowed), else `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The drain workload: `events` change events over `keys` product keys, versions rising
/// per key, `doc_bytes`-byte documents, a share of deletes.
#[derive(Debug, Clone, Copy)]
pub struct DrainSpec {
    /// Events in all.
    pub events: usize,
    /// Distinct entity ids.
    pub keys: usize,
    /// Approximate size of each document's JSON.
    pub doc_bytes: usize,
    /// Share of events that are deletes.
    pub delete_ratio: f64,
}

impl DrainSpec {
    /// `BENCH_EVENTS` (1,050,000), `BENCH_KEYS` (100,000), `BENCH_DOC_BYTES` (1024),
    /// `BENCH_DELETE_RATIO` (0.1): the figures issue 14 was measured with.
    pub fn from_env() -> Self {
        DrainSpec {
            events: env_or("BENCH_EVENTS", 1_050_000),
            keys: env_or("BENCH_KEYS", 100_000),
            doc_bytes: env_or("BENCH_DOC_BYTES", 1024),
            delete_ratio: env_or("BENCH_DELETE_RATIO", 0.1),
        }
    }
}

/// The end state the workload leads to: per key, its last version and whether that was a
/// delete.
#[derive(Debug, Default)]
pub struct DrainOracle {
    /// Entity id -> (last version, deleted).
    pub last: HashMap<String, (i64, bool)>,
}

impl DrainOracle {
    /// Entities whose last event was an upsert.
    pub fn live(&self) -> usize {
        self.last.values().filter(|(_, deleted)| !deleted).count()
    }
}

/// Write the workload as JSON Lines (the form `syncline-publish` and
/// `tests/python/publish_example.py` read), deterministically (seed 1).
pub fn write_jsonl(spec: &DrainSpec, path: &Path) -> Result<DrainOracle, BenchError> {
    let file = std::fs::File::create(path).map_err(io_err(format!("create {}", path.display())))?;
    let mut out = BufWriter::new(file);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut versions = vec![0i64; spec.keys.max(1)];
    let mut oracle = DrainOracle::default();
    let pad_len = spec.doc_bytes.saturating_sub(120);
    for _ in 0..spec.events {
        let k = rng.random_range(0..versions.len());
        let Some(v) = versions.get_mut(k) else {
            continue;
        };
        *v += 1;
        let version = *v;
        let id = format!("k{k:07}");
        let delete = rng.random::<f64>() < spec.delete_ratio;
        let line = if delete {
            json!({"entity_type": "product", "entity_id": id, "op": "DELETE",
                   "version": version, "source": "bench", "document": null})
        } else {
            let pad: String = (0..pad_len)
                .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
                .collect();
            json!({"entity_type": "product", "entity_id": id, "op": "UPSERT",
                   "version": version, "source": "bench",
                   "document": {"id": id, "version": version,
                                "price": rng.random_range(1..100_000),
                                "name": format!("product {k}"), "pad": pad}})
        };
        serde_json::to_writer(&mut out, &line)
            .map_err(|e| io_err("write JSON Lines")(std::io::Error::other(e)))?;
        out.write_all(b"\n").map_err(io_err("write JSON Lines"))?;
        oracle.last.insert(id, (version, delete));
    }
    out.flush().map_err(io_err("flush JSON Lines"))?;
    Ok(oracle)
}

/// Which client writes a topic.
#[derive(Debug, Clone)]
pub enum Publisher {
    /// `tests/python/publish_example.py` (confluent-kafka + fastavro, no Syncline code)
    /// run by this Python, with no compression and linger 10 ms: a typical non-Rust
    /// producer, whose topic is made of many small uncompressed batches.
    AnyProducer {
        /// The venv's interpreter (`scripts/python-venv` prints it; `SYNCLINE_PYTHON`).
        python: PathBuf,
    },
    /// The release `syncline-publish` binary, with its defaults (lz4).
    SynclinePublish {
        /// Path of the binary.
        binary: PathBuf,
    },
}

impl Publisher {
    /// A short label for tables.
    pub fn label(&self) -> &'static str {
        match self {
            Publisher::AnyProducer { .. } => "confluent-kafka (Python), none, linger 10 ms",
            Publisher::SynclinePublish { .. } => "syncline-publish (lz4)",
        }
    }
}

/// What one run of a process cost.
#[derive(Debug, Clone, Copy)]
pub struct RunReport {
    /// Wall time from spawn to exit (or to the end condition).
    pub seconds: f64,
    /// CPU seconds and peak RSS (sampled every 50 ms until exit, so the last few ms of
    /// CPU may be missing).
    pub stats: ProcessStats,
}

/// Publish `jsonl` to `topic` (which must exist) with `publisher`; waits for every ack.
pub fn publish(
    publisher: &Publisher,
    brokers: &str,
    topic: &str,
    jsonl: &Path,
) -> Result<RunReport, BenchError> {
    let repo = repo_root();
    let mut cmd = match publisher {
        Publisher::AnyProducer { python } => {
            let mut c = Command::new(python);
            c.arg(repo.join("tests/python/publish_example.py"))
                .args(["--compression", "none", "--linger-ms", "10"])
                .args(["--timeout", "300"]);
            c
        }
        Publisher::SynclinePublish { binary } => {
            let mut c = Command::new(binary);
            c.args(["--timeout", "300s"]);
            c
        }
    };
    if matches!(publisher, Publisher::AnyProducer { .. }) {
        cmd.arg("--events");
    }
    cmd.arg(jsonl)
        .args(["--brokers", brokers, "--topic", topic])
        .stdout(Stdio::null());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(io_err(format!("start {}", publisher.label())))?;
    let pid = child.id();
    let mut stats = ProcessStats {
        cpu_seconds: 0.0,
        peak_rss_bytes: 0,
    };
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io_err("wait for the publisher"))? {
            break status;
        }
        stats = stats.resample(pid);
        std::thread::sleep(Duration::from_millis(50));
    };
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        return Err(BenchError::Publisher(format!(
            "{} exited with {status}",
            publisher.label()
        )));
    }
    Ok(RunReport { seconds, stats })
}

/// The repository root (two levels above this crate), where `tests/python` lives.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The bare reader's result: every record of the topic read once.
#[derive(Debug, Clone, Copy)]
pub struct BareRead {
    /// Records read.
    pub records: u64,
    /// From creating the client until the last partition reached its end.
    pub seconds: f64,
}

impl BareRead {
    /// Records per second.
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.seconds.max(1e-9)
    }
}

/// The ceiling: a bare librdkafka reader (no group, no decode, no commit) of every
/// partition of `topic` from the beginning to `ends` (per partition, as
/// [`crate::kafka::end_offsets`] gives them), with
/// librdkafka's default settings plus `props`. Timed from client creation, the way the
/// consumers are timed from process start.
pub fn bare_read(
    brokers: &str,
    topic: &str,
    ends: &[i64],
    props: &[(&str, &str)],
) -> Result<BareRead, BenchError> {
    let started = Instant::now();
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", brokers)
        .set("group.id", "syncline-bench-bare-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    for (k, v) in props {
        cc.set(*k, *v);
    }
    let consumer: BaseConsumer = cc.create()?;
    // The end offsets come from the caller (`syncline_kafka::end_offsets`, from fetch
    // responses): Tansu answers the watermark query (ListOffsets) wrongly.
    let mut ends: HashMap<i32, i64> = (0i32..)
        .zip(ends.iter().copied())
        .filter(|(_, end)| *end > 0)
        .collect();
    let mut tpl = TopicPartitionList::new();
    for &p in ends.keys() {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    // The leaders first, or the beginning is looked up 500 ms late and the ceiling reads
    // low (see syncline_kafka::learn_partitions).
    syncline_kafka::learn_partitions(&consumer, topic, Duration::from_secs(30))?;
    consumer.assign(&tpl)?;
    let mut records = 0u64;
    let deadline = Instant::now() + Duration::from_secs(1800);
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(BenchError::Timeout(format!(
                "the bare reader did not reach the end of {topic} in 30 minutes"
            )));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                records += 1;
                if ends
                    .get(&m.partition())
                    .is_some_and(|&end| m.offset() + 1 >= end)
                {
                    ends.remove(&m.partition());
                }
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    Ok(BareRead {
        records,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The process listening on TCP `port` on this host (via `/proc/net/tcp{,6}` and the
/// processes' socket descriptors), e.g. the broker or Redis, to report its CPU beside the
/// consumer's. `None` when it cannot be found (another user's process, no `/proc`).
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let listening = *state == "0A";
            let on_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                == Some(port);
            if listening && on_port {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let procs = std::fs::read_dir("/proc").ok()?;
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if inodes.iter().any(|i| target.as_os_str() == i.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// CPU seconds used by a set of named processes between [`CpuWatch::start`] and
/// [`CpuWatch::stop`]: the broker and the store beside the consumer, so a bench shows
/// when the host, not the consumer, was the limit.
#[derive(Debug)]
pub struct CpuWatch {
    start: Vec<(String, u32, f64)>,
}

impl CpuWatch {
    /// Start watching `(label, pid)`; processes that cannot be read are left out.
    pub fn start(processes: &[(&str, Option<u32>)]) -> Self {
        let start = processes
            .iter()
            .filter_map(|(label, pid)| {
                let pid = (*pid)?;
                let s = ProcessStats::of_pid(pid).ok()?;
                Some(((*label).to_owned(), pid, s.cpu_seconds))
            })
            .collect();
        CpuWatch { start }
    }

    /// `(label, CPU seconds since start)` per watched process still alive.
    pub fn stop(&self) -> Vec<(String, f64)> {
        self.start
            .iter()
            .filter_map(|(label, pid, before)| {
                let s = ProcessStats::of_pid(*pid).ok()?;
                Some((label.clone(), s.cpu_seconds - before))
            })
            .collect()
    }
}

/// How a consumer's drain went, timed from its process start.
#[derive(Debug, Clone, Copy)]
pub struct DrainRun {
    /// From spawn until every partition's committed offset reached the end.
    pub seconds: f64,
    /// From spawn until the group's first commit: the group join (on Tansu, half of
    /// `session.timeout.ms`; on Kafka, `group.initial.rebalance.delay.ms`) plus the first
    /// batch. `None` if the drain ended before a sample saw a partial commit.
    pub first_commit_seconds: Option<f64>,
    /// The consumer's CPU and peak RSS (last sample before the end).
    pub stats: ProcessStats,
}

/// Wait until `group`'s committed offsets on `topic` sum to `end`, sampling `child`'s
/// CPU and RSS every 250 ms; `spawned` is when the child was started.
pub async fn watch_drain(
    brokers: &str,
    group: &str,
    topic: &str,
    end: i64,
    child: &ChildGuard,
    spawned: Instant,
    timeout: Duration,
) -> Result<DrainRun, BenchError> {
    let pid = child.id();
    let mut stats = ProcessStats::of_pid(pid).map_err(io_err("read the consumer's stats"))?;
    let mut first_commit_seconds = None;
    loop {
        // Each check is a new client (a few ms of CPU on a shared host), so a sample every
        // 250 ms: the first-commit time is late by up to that much.
        tokio::time::sleep(Duration::from_millis(250)).await;
        stats = stats.resample(pid);
        let committed: i64 = crate::kafka::committed_offsets(brokers, group, topic)
            .await
            .map_err(|e| BenchError::Timeout(format!("committed offsets of {group}: {e}")))?
            .iter()
            .map(|c| c.unwrap_or(0))
            .sum();
        if committed > 0 && first_commit_seconds.is_none() {
            first_commit_seconds = Some(spawned.elapsed().as_secs_f64());
        }
        if committed >= end {
            return Ok(DrainRun {
                seconds: spawned.elapsed().as_secs_f64(),
                first_commit_seconds,
                stats,
            });
        }
        if spawned.elapsed() > timeout {
            return Err(BenchError::Timeout(format!(
                "{group} did not drain {topic} within {timeout:?} ({committed}/{end})"
            )));
        }
    }
}

/// The host's load averages (`/proc/loadavg`), for the record of a bench run.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The Python that has confluent-kafka and fastavro: `SYNCLINE_PYTHON`, else what
/// `scripts/python-venv` prints (it creates the venv on first use).
pub fn bench_python() -> Result<PathBuf, BenchError> {
    if let Some(p) = std::env::var_os("SYNCLINE_PYTHON") {
        return Ok(p.into());
    }
    let out = Command::new(repo_root().join("scripts/python-venv"))
        .stderr(Stdio::inherit())
        .output()
        .map_err(io_err("run scripts/python-venv"))?;
    let printed = String::from_utf8_lossy(&out.stdout);
    match printed.lines().last().map(str::trim) {
        Some(p) if out.status.success() && !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Err(BenchError::Publisher(format!(
            "scripts/python-venv failed ({})",
            out.status
        ))),
    }
}

/// A topic filled by one publisher from the shared JSON Lines file.
#[derive(Debug, Clone)]
pub struct FilledTopic {
    /// Who wrote it.
    pub publisher: Publisher,
    /// Its name.
    pub topic: String,
    /// Records in it (sum of the end offsets).
    pub records: i64,
    /// What publishing cost.
    pub publish: RunReport,
    /// The broker's CPU seconds while it was published (when the broker runs on this
    /// host): on a shared 2-core host the publisher's rate is bounded by both.
    pub broker_cpu_seconds: Option<f64>,
}

/// Create `topic` (6 partitions, with its `.dlq`) and fill it from `jsonl` with
/// `publisher`.
pub async fn fill_topic(
    publisher: Publisher,
    brokers: &str,
    topic: &str,
    jsonl: &Path,
) -> Result<FilledTopic, BenchError> {
    crate::kafka::create_topic_with_dlq(brokers, topic, 6)
        .await
        .map_err(|e| BenchError::Publisher(format!("create {topic}: {e}")))?;
    let (p, b, t, j) = (
        publisher.clone(),
        brokers.to_owned(),
        topic.to_owned(),
        jsonl.to_owned(),
    );
    let watch = CpuWatch::start(&[("broker", broker_port(brokers).and_then(pid_listening_on))]);
    let publish = tokio::task::spawn_blocking(move || publish(&p, &b, &t, &j))
        .await
        .map_err(|e| BenchError::Publisher(format!("publisher task: {e}")))??;
    let broker_cpu_seconds = watch.stop().first().map(|(_, cpu)| *cpu);
    let records = crate::kafka::end_offsets(brokers, topic)
        .await
        .map_err(|e| BenchError::Publisher(format!("end offsets of {topic}: {e}")))?
        .iter()
        .sum();
    Ok(FilledTopic {
        publisher,
        topic: topic.to_owned(),
        records,
        publish,
        broker_cpu_seconds,
    })
}

/// Fill one topic per publisher in `publishers` (names `<prefix>-any` and
/// `<prefix>-syncline`) from one workload file; the file is removed afterwards.
pub async fn fill_topics(
    spec: &DrainSpec,
    brokers: &str,
    prefix: &str,
    publishers: Vec<Publisher>,
) -> Result<(Vec<FilledTopic>, DrainOracle), BenchError> {
    let dir = tempfile::tempdir().map_err(io_err("create a temporary directory"))?;
    let jsonl = dir.path().join("events.jsonl");
    let oracle = write_jsonl(spec, &jsonl)?;
    let mut topics = Vec::new();
    for p in publishers {
        let suffix = match p {
            Publisher::AnyProducer { .. } => "any",
            Publisher::SynclinePublish { .. } => "syncline",
        };
        let topic = format!("{prefix}-{suffix}");
        eprintln!("[bench] filling {topic} with {} ...", p.label());
        topics.push(fill_topic(p, brokers, &topic, &jsonl).await?);
    }
    Ok((topics, oracle))
}

/// Both publishers of the drain benches: Python (any producer) and `syncline-publish`.
pub fn both_publishers() -> Result<Vec<Publisher>, BenchError> {
    let python = bench_python()?;
    let binary = crate::process::release_binary(
        "syncline-producer",
        "syncline-publish",
        "SYNCLINE_PUBLISH_BIN",
    )
    .map_err(io_err("locate syncline-publish"))?;
    Ok(vec![
        Publisher::AnyProducer { python },
        Publisher::SynclinePublish { binary },
    ])
}

/// One consumer's drain of one topic, with the ceiling and the host's other processes
/// measured in the same run.
#[derive(Debug, Clone)]
pub struct DrainFigures {
    /// Which producer wrote the topic.
    pub written_by: String,
    /// Which consumer (and mode) drained it.
    pub consumer: String,
    /// Records in the topic.
    pub records: i64,
    /// The bare reader's run over the same topic.
    pub ceiling: BareRead,
    /// The consumer's run.
    pub run: DrainRun,
    /// CPU seconds of the broker and the store during the consumer's run.
    pub others: Vec<(String, f64)>,
    /// What the end-state check found ("ok: ..." or what differs).
    pub end_state: String,
}

impl DrainFigures {
    /// Column names of [`DrainFigures::row`].
    pub const HEADER: [&'static str; 13] = [
        "topic written by",
        "consumer",
        "events",
        "ceiling: bare reader rec/s",
        "events/s (from process start)",
        "ratio to ceiling",
        "first commit s",
        "events/s after first commit",
        "consumer CPU s / M events",
        "broker CPU s / M",
        "store CPU s / M",
        "consumer peak RSS MiB",
        "end state",
    ];

    /// The figures as one table row.
    pub fn row(&self) -> Vec<String> {
        let n = self.records as f64;
        let rate = n / self.run.seconds.max(1e-9);
        let per_m = |cpu: f64| format!("{:.2}", cpu / n * 1e6);
        let other = |label: &str| {
            self.others
                .iter()
                .find(|(l, _)| l == label)
                .map_or_else(|| "-".to_owned(), |(_, cpu)| per_m(*cpu))
        };
        vec![
            self.written_by.clone(),
            self.consumer.clone(),
            self.records.to_string(),
            format!("{:.0}", self.ceiling.rate()),
            format!("{rate:.0}"),
            format!("{:.2}", rate / self.ceiling.rate()),
            self.run
                .first_commit_seconds
                .map_or_else(|| "-".to_owned(), |s| format!("{s:.2}")),
            // Approximate: the records of the first batch count as read after it.
            self.run.first_commit_seconds.map_or_else(
                || "-".to_owned(),
                |s| format!("{:.0}", n / (self.run.seconds - s).max(1e-9)),
            ),
            per_m(self.run.stats.cpu_seconds),
            other("broker"),
            other("store"),
            format!("{:.1}", self.run.stats.peak_rss_mib()),
            self.end_state.clone(),
        ]
    }
}

/// The port of the first broker in a bootstrap list, for [`pid_listening_on`].
pub fn broker_port(brokers: &str) -> Option<u16> {
    brokers
        .split(',')
        .next()
        .and_then(|b| b.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
}

/// [`bare_read`] on a blocking thread, with default settings.
pub async fn ceiling(brokers: &str, topic: &str) -> Result<BareRead, BenchError> {
    let ends = crate::kafka::end_offsets(brokers, topic)
        .await
        .map_err(|e| BenchError::Timeout(format!("end offsets of {topic}: {e}")))?;
    let (b, t) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || bare_read(&b, &t, &ends, &[]))
        .await
        .map_err(|e| BenchError::Timeout(format!("bare reader task: {e}")))?
}

/// How each topic's publisher did: events/s, CPU seconds and peak RSS of the fill, and
/// the broker's CPU seconds meanwhile (publisher and broker share the host's cores).
pub fn publishing_table(topics: &[FilledTopic]) -> crate::measure::Table {
    let mut t = crate::measure::Table::new(&[
        "publisher",
        "events",
        "events/s",
        "CPU s",
        "peak RSS MiB",
        "broker CPU s",
    ]);
    for topic in topics {
        t.row(&[
            topic.publisher.label().to_owned(),
            topic.records.to_string(),
            format!(
                "{:.0}",
                topic.records as f64 / topic.publish.seconds.max(1e-9)
            ),
            format!("{:.1}", topic.publish.stats.cpu_seconds),
            format!("{:.1}", topic.publish.stats.peak_rss_mib()),
            topic
                .broker_cpu_seconds
                .map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.1}")),
        ]);
    }
    t
}

/// Delete every filled topic with its dead-letter topic, best effort.
pub async fn delete_filled(brokers: &str, topics: &[FilledTopic]) {
    for topic in topics {
        crate::kafka::delete_topics(brokers, &[&topic.topic, &format!("{}.dlq", topic.topic)])
            .await;
    }
}
