//! Relay benchmark: `cargo bench -p syncline-outbox` (source `.syncline/env` first).
//!
//! 1. Drain: `--rows` rows (default 300,000, `--doc-bytes` 256) are committed first, then
//!    the release `syncline-outbox` binary starts; rows/s from its start until the outbox
//!    is empty (the relay's published + quarantined counters reach `--rows`, which count
//!    rows after their DELETE; then the table is checked empty). `SYNCLINE_OUTBOX_BIN`
//!    runs another build of the relay (e.g. an older one) under the same harness.
//! 2. Steady: `--rate` rows/s (default 2,000) for `--seconds` (default 20), each row its
//!    own committed transaction, from 4 connections; p50/p99 commit-to-acknowledgement from
//!    the relay's `syncline_outbox_commit_to_ack_seconds` histogram (steady phase only).
//! 3. The relay's peak RSS and CPU seconds.
// Test code: a panic is the failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use syncline_testkit::postgres::{count_rows, wait_until_empty};
use syncline_testkit::{
    create_topic, free_port, histogram_quantile, kafka_brokers, metric_sum, release_binary,
    scrape_metrics, unique_name, wait_until, ChildGuard, ProcessStats, TestDb,
};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let rows = arg("--rows", 300_000) as i64;
    let doc_bytes = arg("--doc-bytes", 256) as i32;
    let rate = arg("--rate", 2_000);
    let seconds = arg("--seconds", 20);
    let bin = release_binary("syncline-outbox", "syncline-outbox", "SYNCLINE_OUTBOX_BIN").unwrap();
    let db = TestDb::create().await;
    syncline_outbox::migrate(&db.config()).await.unwrap();
    let topic = unique_name("outbox-bench");
    create_topic(&kafka_brokers(), &topic, 6).await.unwrap();
    let c = db.client().await;

    // 1. Drain.
    let fill = Instant::now();
    let mut done = 0;
    while done < rows {
        let n = (rows - done).min(50_000);
        c.execute(
            "INSERT INTO syncline_outbox (entity_type, entity_id, op, version, document)
             SELECT 'item', 'i' || (g % 100000), 'UPSERT', g,
                    '{\"pad\":\"' || repeat('x', $2) || '\"}'
             FROM generate_series($1::bigint, $1::bigint + $3::bigint - 1) g",
            &[&done, &(doc_bytes - 10).max(0), &n],
        )
        .await
        .unwrap();
        done += n;
    }
    eprintln!("filled {rows} rows in {:?}", fill.elapsed());
    let port = free_port();
    let start = Instant::now();
    let child = ChildGuard::spawn(
        Command::new(&bin)
            .env("SYNCLINE_DATABASE_URL", &db.url)
            .env("SYNCLINE_BROKERS", kafka_brokers())
            .env("SYNCLINE_TOPIC", &topic)
            .env("SYNCLINE_METRICS_ADDR", format!("127.0.0.1:{port}"))
            .env_remove("SYNCLINE_KAFKA")
            .stdout(Stdio::null()),
    )
    .unwrap();
    // The relay's counters say when every row is gone (a row is counted after its
    // DELETE): polling `count(*)` over the full table every 20 ms, as this bench did
    // first, took a large share of PostgreSQL's CPU from the relay it measures.
    wait_until(
        Duration::from_secs(600),
        Duration::from_millis(20),
        || async move {
            let m = scrape_metrics(port);
            let done = metric_sum(&m, "syncline_outbox_published_total")
                + metric_sum(&m, "syncline_outbox_quarantined_total");
            if done >= rows as f64 {
                Ok(())
            } else {
                Err(format!("{done} of {rows} rows relayed"))
            }
        },
    )
    .await
    .unwrap();
    let drain = start.elapsed();
    let drain_rate = rows as f64 / drain.as_secs_f64();
    assert_eq!(count_rows(&c, "syncline_outbox").await, 0);
    let drained = scrape_metrics(port);

    // 2. Steady.
    let before = scrape_metrics(port);
    let per_conn = rate / 4;
    let mut writers = Vec::new();
    for w in 0..4 {
        let db_client = db.client().await;
        writers.push(tokio::spawn(async move {
            let stmt = db_client
                .prepare(
                    "INSERT INTO syncline_outbox (entity_type, entity_id, op, version, document)
                     VALUES ('steady', $1, 'UPSERT', $2, '{\"n\":1}')",
                )
                .await
                .unwrap();
            let total = per_conn * seconds;
            let t0 = Instant::now();
            for i in 0..total {
                let due = t0 + Duration::from_secs_f64(i as f64 / per_conn as f64);
                tokio::time::sleep_until(due.into()).await;
                db_client
                    .execute(&stmt, &[&format!("{w}-{}", i % 1000), &(i as i64)])
                    .await
                    .unwrap();
            }
            total
        }));
    }
    let mut sent = 0;
    for w in writers {
        sent += w.await.unwrap();
    }
    wait_until_empty(
        &c,
        "syncline_outbox",
        Duration::from_secs(60),
        Duration::from_millis(20),
    )
    .await
    .unwrap();
    let after = scrape_metrics(port);
    let stats = ProcessStats::of_pid(child.id()).unwrap();
    // The steady phase's histogram: after minus before, bucket by bucket.
    let diff = subtract_histogram(&before, &after, "syncline_outbox_commit_to_ack_seconds");
    let p50 = histogram_quantile(&diff, "syncline_outbox_commit_to_ack_seconds", 0.5);
    let p99 = histogram_quantile(&diff, "syncline_outbox_commit_to_ack_seconds", 0.99);
    println!("syncline-outbox relay bench");
    println!(
        "drain: {rows} rows x {doc_bytes} B in {:.2} s = {drain_rate:.0} rows/s",
        drain.as_secs_f64()
    );
    println!(
        "steady: {sent} rows at {rate} rows/s: commit->ack p50 {} ms, p99 {} ms",
        p50.map_or("n/a".into(), |v| format!("{:.1}", v * 1000.0)),
        p99.map_or("n/a".into(), |v| format!("{:.1}", v * 1000.0)),
    );
    // Where the relay's time went during the drain (relays that export it).
    let stages: Vec<String> = ["read", "send", "wait", "delete"]
        .iter()
        .filter_map(|stage| {
            let series = format!("syncline_outbox_stage_seconds_total{{stage=\"{stage}\"}}");
            let secs = drained
                .lines()
                .find_map(|l| l.strip_prefix(series.as_str()))?
                .trim()
                .parse::<f64>()
                .ok()?;
            Some(format!("{stage} {secs:.2} s"))
        })
        .collect();
    if !stages.is_empty() {
        println!(
            "drain stages (relay loop): {}; batches {}, gaps {}",
            stages.join(", "),
            metric_sum(&drained, "syncline_outbox_batches_total"),
            metric_sum(&drained, "syncline_outbox_gaps_total"),
        );
    }
    println!(
        "relay process: peak RSS {:.1} MiB, CPU {:.1} s, published {}",
        stats.peak_rss_mib(),
        stats.cpu_seconds,
        metric_sum(&after, "syncline_outbox_published_total")
    );
}

/// `after - before` for every sample of histogram `name`, as exposition text.
fn subtract_histogram(before: &str, after: &str, name: &str) -> String {
    let values = |text: &str| -> Vec<(String, f64)> {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect()
    };
    let b: std::collections::HashMap<String, f64> = values(before).into_iter().collect();
    let mut out = format!("# TYPE {name} histogram\n");
    for (k, v) in values(after) {
        out.push_str(&format!("{k} {}\n", v - b.get(&k).copied().unwrap_or(0.0)));
    }
    out
}
