//! `snapshot` and `reconcile` benchmark (not a timed test), one run of each on the same
//! data, with the ceilings and the host load printed beside them.
//!
//! 1. A PostgreSQL table of `BENCH_ROWS` rows (default **1,000,000**), documents of about
//!    `BENCH_DOC_BYTES` bytes (default 256), in a database of its own.
//! 2. Ceiling for the snapshot: a bare cursor read of the same query (tokio-postgres,
//!    5,000 rows per `FETCH`, nothing published).
//! 3. `syncline-ctl snapshot` (release) of the table into a fresh 6-partition topic: rows/s
//!    from spawn to exit, CPU seconds, peak RSS (target: at least 100,000 rows/s).
//! 4. The release indexer and invalidator drain the topic into a fresh index and a fresh
//!    Redis prefix; then drift is seeded (`BENCH_DRIFT`, default 100, documents deleted
//!    from Elasticsearch and as many Redis guards removed).
//! 5. `syncline-ctl reconcile --truth postgres` (release) over both stores: wall time from
//!    spawn to exit, CPU, peak RSS (target: under 60 s for 1,000,000 entities, bounded
//!    memory), and the drift it reports, checked against what was seeded.
//!
//! Run: `cargo bench -p syncline-ctl --bench drift` (source `.syncline/env` first).
//! Quick run: `BENCH_ROWS=100000 cargo bench -p syncline-ctl --bench drift`.
//! Elasticsearch: `ES_URL`, else the dev server as a release process of its own.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;
use syncline_cache::KeyLayout;
use syncline_testkit::drain::{env_or, load_average, watch_drain};
use syncline_testkit::es_process::start_devserver_process;
use syncline_testkit::{
    consumer_kafka_env, create_topic_with_dlq, delete_topics, free_port, kafka_brokers, redis_url,
    release_binary, unique_name, ChildGuard, ProcessStats, Table, TestDb,
};

const QUERY: &str = "SELECT id AS entity_id, version, doc AS document FROM product";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("bench failed: {e:#}");
        std::process::exit(1);
    }
}

/// A finished process: wall seconds, CPU and peak RSS (sampled every 100 ms), stdout.
struct Finished {
    seconds: f64,
    stats: ProcessStats,
    code: Option<i32>,
    stdout: String,
}

/// Run `cmd` to its exit, sampling its CPU and RSS; stderr goes to a file shown on error.
async fn measure(cmd: &mut Command) -> anyhow::Result<Finished> {
    let dir = tempfile::tempdir()?;
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?);
    let started = Instant::now();
    let mut child = ChildGuard::spawn(cmd)?;
    let (status, stats) =
        ProcessStats::sample_until_exit(&mut child, Duration::from_secs(3600)).await?;
    let seconds = started.elapsed().as_secs_f64();
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    if !matches!(status.code(), Some(0 | 1)) {
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        bail!("{cmd:?} exited with {status}: {stderr}");
    }
    Ok(Finished {
        seconds,
        stats,
        code: status.code(),
        stdout,
    })
}

async fn run() -> anyhow::Result<()> {
    let rows: u64 = env_or("BENCH_ROWS", 1_000_000);
    let doc_bytes: usize = env_or("BENCH_DOC_BYTES", 256);
    let seeded: usize = env_or("BENCH_DRIFT", 100);
    let brokers = kafka_brokers();
    let redis = redis_url();
    println!("host before: {}", uptime());
    let (es_url, _devserver) = start_devserver_process().context("starting the dev server")?;
    let name = unique_name("bench-drift");
    let topic = format!("{name}-changes");
    let es_prefix = format!("{name}-");
    let redis_prefix = format!("{name}:");
    let groups = [format!("{name}-es"), format!("{name}-redis")];
    let kafka = consumer_kafka_env("");

    eprintln!("creating a table of {rows} rows ...");
    let db = TestDb::create().await;
    let pg = db.client().await;
    let pad = doc_bytes.saturating_sub(40);
    pg.batch_execute(&format!(
        "CREATE TABLE product (id text PRIMARY KEY, version bigint NOT NULL, doc jsonb NOT NULL);
         INSERT INTO product
           SELECT format('p-%s', lpad(i::text, 8, '0')), i,
                  jsonb_build_object('n', i, 'pad', repeat('x', {pad}))
           FROM generate_series(1, {rows}) AS i;
         ANALYZE product;"
    ))
    .await
    .context("filling the table")?;

    // Ceiling: reading the query through a cursor, nothing else.
    let started = Instant::now();
    pg.batch_execute(&format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; DECLARE c NO SCROLL CURSOR FOR \
         SELECT q.entity_id::text, q.version::bigint, q.document::text FROM ({QUERY}) AS q"
    ))
    .await?;
    let mut read = 0u64;
    loop {
        let batch = pg.query("FETCH 5000 FROM c", &[]).await?;
        if batch.is_empty() {
            break;
        }
        read += batch.len() as u64;
    }
    pg.batch_execute("COMMIT").await?;
    let cursor_secs = started.elapsed().as_secs_f64();

    create_topic_with_dlq(&brokers, &topic, 6).await?;
    let ctl = env!("CARGO_BIN_EXE_syncline-ctl");
    let snapshot = measure(
        Command::new(ctl)
            .args(["--brokers", &brokers, "snapshot", "--postgres-url", &db.url])
            .args(["--entity-type", "product", "--query", QUERY])
            .args(["--topic", &topic, "--quiet"]),
    )
    .await?;
    eprintln!(
        "snapshot: {:.0} rows/s",
        rows as f64 / snapshot.seconds.max(1e-9)
    );
    let records: i64 = syncline_testkit::end_offsets(&brokers, &topic)
        .await?
        .iter()
        .sum();
    if records != i64::try_from(rows).unwrap_or(-1) {
        bail!("the snapshot published {records} events for {rows} rows");
    }

    // Fill both stores with the real consumers.
    let indexer_bin = release_binary(
        "syncline-es-indexer",
        "syncline-es-indexer",
        "SYNCLINE_ES_INDEXER_BIN",
    )?;
    let invalidator_bin = release_binary(
        "syncline-redis-invalidator",
        "syncline-redis-invalidator",
        "SYNCLINE_REDIS_INVALIDATOR_BIN",
    )?;
    let spawned = Instant::now();
    let mut indexer = ChildGuard::spawn(
        Command::new(&indexer_bin)
            .args([
                "--brokers",
                &brokers,
                "--topic",
                &topic,
                "--group",
                &groups[0],
            ])
            .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
            .args(["--es-url", &es_url, "--es-index-prefix", &es_prefix])
            .env("SYNCLINE_KAFKA", &kafka)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null()),
    )?;
    let mut invalidator = ChildGuard::spawn(
        Command::new(&invalidator_bin)
            .args(["--metrics-addr", "off"])
            .env("SYNCLINE_BROKERS", &brokers)
            .env("SYNCLINE_TOPIC", &topic)
            .env("SYNCLINE_GROUP_ID", &groups[1])
            .env("SYNCLINE_KAFKA", &kafka)
            .env("SYNCLINE_REDIS_URL", &redis)
            .env("SYNCLINE_REDIS_KEY_PREFIX", &redis_prefix)
            .env_remove("SYNCLINE_CONFIG")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null()),
    )?;
    let limit = Duration::from_secs(3600);
    watch_drain(
        &brokers, &groups[0], &topic, records, &indexer, spawned, limit,
    )
    .await?;
    watch_drain(
        &brokers,
        &groups[1],
        &topic,
        records,
        &invalidator,
        spawned,
        limit,
    )
    .await?;
    let _ = indexer.terminate();
    let _ = invalidator.terminate();
    eprintln!(
        "both stores filled in {:.1}s",
        spawned.elapsed().as_secs_f64()
    );

    // Seed drift: documents deleted from Elasticsearch, guards removed from Redis.
    let http = reqwest::Client::new();
    let alias = format!("{es_prefix}product");
    let indices: Value = http
        .get(format!("{es_url}/_alias/{alias}"))
        .send()
        .await?
        .json()
        .await?;
    let Some(index) = indices.as_object().and_then(|m| m.keys().next().cloned()) else {
        bail!("no index behind {alias}: {indices}");
    };
    let layout = KeyLayout::new(redis_prefix.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut r = redis::Client::open(redis.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let step = (rows as usize / seeded.max(1)).max(1);
    for i in 0..seeded {
        let id = format!("p-{:08}", i * step + 1);
        let s = http
            .delete(format!("{es_url}/{index}/_doc/{id}"))
            .send()
            .await?
            .status();
        if !s.is_success() {
            bail!("deleting {id}: {s}");
        }
        let _: i64 = redis::cmd("DEL")
            .arg(layout.guard_key("product", &id))
            .query_async(&mut r)
            .await?;
    }

    let reconcile = measure(
        Command::new(ctl)
            .args(["--brokers", &brokers, "reconcile", "--truth", "postgres"])
            .args(["--postgres-url", &db.url, "--query", QUERY])
            .args(["--entity-type", "product", "--topic", &topic])
            .args(["--es-url", &es_url, "--es-index-prefix", &es_prefix])
            .args(["--redis-url", &redis, "--redis-key-prefix", &redis_prefix])
            .args(["--grace", "1s", "--json"]),
    )
    .await?;
    let report: Value = serde_json::from_str(&reconcile.stdout).unwrap_or(Value::Null);
    let missing = |store: &str| {
        report["stores"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["store"] == store)
            .map(|s| s["drift"]["missing"]["count"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let found = (missing("es"), missing("redis"));
    let drifted = report["drifted_entities"].as_u64().unwrap_or(0);

    // Clean up the stores and the topic before printing.
    let _ = http.delete(format!("{es_url}/{index}")).send().await;
    let _ = syncline_cache::admin::purge_prefix(&mut r, &layout).await;
    delete_topics(&brokers, &[&topic, &format!("{topic}.dlq")]).await;

    println!("\n{rows} rows, documents of ~{doc_bytes} B, 6 partitions\n");
    let mut t = Table::new(&["step", "wall s", "rows/s", "CPU s", "peak RSS MiB"]);
    t.row(&[
        "PostgreSQL cursor read alone (snapshot ceiling)".to_owned(),
        format!("{cursor_secs:.1}"),
        format!("{:.0}", read as f64 / cursor_secs.max(1e-9)),
        "-".to_owned(),
        "-".to_owned(),
    ]);
    t.row(&[
        "syncline-ctl snapshot (spawn to exit)".to_owned(),
        format!("{:.1}", snapshot.seconds),
        format!("{:.0}", rows as f64 / snapshot.seconds.max(1e-9)),
        format!("{:.1}", snapshot.stats.cpu_seconds),
        format!("{:.1}", snapshot.stats.peak_rss_mib()),
    ]);
    t.row(&[
        "syncline-ctl reconcile, ES + Redis (spawn to exit, 1 s grace)".to_owned(),
        format!("{:.1}", reconcile.seconds),
        format!("{:.0}", rows as f64 / reconcile.seconds.max(1e-9)),
        format!("{:.1}", reconcile.stats.cpu_seconds),
        format!("{:.1}", reconcile.stats.peak_rss_mib()),
    ]);
    println!("{t}");
    println!(
        "reconcile exit {:?}: {drifted} drifted entities, ES missing {}, Redis missing {} \
         (seeded {seeded} each)",
        reconcile.code, found.0, found.1
    );
    let ph = &report["phase_seconds"];
    println!(
        "reconcile phases: es walk {:.1} s, redis walk {:.1} s (side by side), truth and merge \
         {:.1} s, re-check {:.1} s",
        ph["es_walk"].as_f64().unwrap_or(0.0),
        ph["redis_walk"].as_f64().unwrap_or(0.0),
        ph["truth_merge"].as_f64().unwrap_or(0.0),
        ph["recheck"].as_f64().unwrap_or(0.0)
    );
    println!("host after: {}", uptime());
    if found != (seeded as u64, seeded as u64) {
        bail!("reconcile found {found:?}, seeded {seeded} in each store");
    }
    Ok(())
}

/// `uptime`'s line (load averages), else `/proc/loadavg`.
fn uptime() -> String {
    Command::new("uptime")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(load_average)
}
