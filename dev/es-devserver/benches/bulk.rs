//! Bulk-indexing benchmark of the `es-devserver` binary (a harness, not a timed test).
//!
//! Starts `target/release/es-devserver` as a separate process (building it first when it is
//! missing), bulk-indexes 1 KiB documents, 1,000 actions per request, over a few concurrent
//! connections, and prints a markdown table: items/s, MB/s, server CPU seconds, server peak
//! RSS (`VmHWM`) and memory per stored document against its JSON size.
//!
//! `cargo bench -p es-devserver --bench bulk`; `BENCH_DOCS` (default 500000) and
//! `BENCH_CONNECTIONS` (default 4) adjust the run; `ES_DEVSERVER_BIN` picks another binary.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DOC_SIZE: usize = 1024;
const BATCH: usize = 1000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Fields of /proc/<pid>/status in kB.
fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process, in seconds (USER_HZ = 100 on Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesized command name.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime is field 14, stime 15 (1-based), i.e. index 11 and 12 after the name.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn make_doc(i: usize) -> String {
    let mut body = String::new();
    let words = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    ];
    let mut k = i;
    let head = format!(
        "{{\"id\":{i},\"title\":\"document number {i}\",\"price\":{}.{:02},\"in_stock\":{},\"category\":\"cat-{}\",\"created\":\"2024-01-{:02}T10:00:00Z\",\"body\":\"",
        i % 1000,
        i % 100,
        i.is_multiple_of(2),
        i % 50,
        1 + i % 28
    );
    let tail = "\"}";
    while head.len() + body.len() + tail.len() < DOC_SIZE {
        k = k
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        body.push_str(words[(k >> 33) % words.len()]);
        body.push(' ');
    }
    let mut doc = format!("{head}{body}{tail}");
    // Pad or trim the body so every document is exactly DOC_SIZE bytes.
    while doc.len() > DOC_SIZE {
        let cut = doc.len() - tail.len() - 1;
        doc.replace_range(cut..cut + 1, "");
    }
    while doc.len() < DOC_SIZE {
        let at = doc.len() - tail.len();
        doc.insert(at, 'x');
    }
    doc
}

struct ServerProc(Child);

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let docs = env_usize("BENCH_DOCS", 500_000);
    let conns = env_usize("BENCH_CONNECTIONS", 4);
    let bin = syncline_testkit::release_binary("es-devserver", "es-devserver", "ES_DEVSERVER_BIN")
        .expect("es-devserver binary");
    let port = syncline_testkit::free_port();
    let child = Command::new(&bin)
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start es-devserver");
    let server = ServerProc(child);
    let pid = server.0.id();
    let base = format!("http://127.0.0.1:{port}");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(conns)
            .build()
            .expect("client");
        let start_wait = Instant::now();
        loop {
            if client.get(&base).send().await.is_ok() {
                break;
            }
            assert!(
                start_wait.elapsed() < Duration::from_secs(30),
                "server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = client
            .put(format!("{base}/bench"))
            .header("content-type", "application/json")
            .body(r#"{"settings":{"number_of_replicas":0,"refresh_interval":"-1"}}"#)
            .send()
            .await
            .expect("create index");
        assert!(r.status().is_success(), "create index: {}", r.status());

        // Request bodies are built up front so the client spends its CPU on sending.
        eprintln!("generating {docs} documents of {DOC_SIZE} bytes ...");
        let mut bodies: Vec<bytes::Bytes> = Vec::new();
        let mut json_bytes: u64 = 0;
        let mut i = 0;
        while i < docs {
            let n = BATCH.min(docs - i);
            let mut b = Vec::with_capacity(n * (DOC_SIZE + 64));
            for j in i..i + n {
                let doc = make_doc(j);
                json_bytes += doc.len() as u64;
                write!(b, "{{\"index\":{{\"_id\":\"{j}\"}}}}\n{doc}\n").expect("write");
            }
            bodies.push(bytes::Bytes::from(b));
            i += n;
        }
        let total_bytes: u64 = bodies.iter().map(|b| b.len() as u64).sum();
        let bodies = Arc::new(bodies);
        let rss_before = proc_status_kb(pid, "VmRSS:");
        let cpu_before = cpu_seconds(pid);
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let client = client.clone();
            let bodies = bodies.clone();
            let next = next.clone();
            let url = format!("{base}/bench/_bulk");
            tasks.push(tokio::spawn(async move {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(k).cloned() else {
                        break;
                    };
                    let resp = client
                        .post(&url)
                        .header("content-type", "application/x-ndjson")
                        .body(body)
                        .send()
                        .await
                        .expect("bulk request");
                    assert!(resp.status().is_success(), "bulk status {}", resp.status());
                    let text = resp.bytes().await.expect("bulk body");
                    assert!(
                        text.starts_with(b"{\"errors\":false"),
                        "bulk reported errors"
                    );
                }
            }));
        }
        for t in tasks {
            t.await.expect("bulk task");
        }
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(pid) - cpu_before;
        let rss_after = proc_status_kb(pid, "VmRSS:");
        let hwm = proc_status_kb(pid, "VmHWM:");

        let r = client
            .post(format!("{base}/bench/_refresh"))
            .send()
            .await
            .expect("refresh");
        assert!(r.status().is_success());
        let count: serde_json::Value = client
            .get(format!("{base}/bench/_count"))
            .send()
            .await
            .expect("count")
            .json()
            .await
            .expect("count json");
        assert_eq!(
            count["count"].as_u64(),
            Some(docs as u64),
            "all documents stored"
        );

        let items_per_s = docs as f64 / elapsed;
        let mb_per_s = total_bytes as f64 / elapsed / 1e6;
        let avg_json = json_bytes as f64 / docs as f64;
        let per_doc = (rss_after.saturating_sub(rss_before)) as f64 * 1024.0 / docs as f64;
        let per_doc_hwm = (hwm.saturating_sub(rss_before)) as f64 * 1024.0 / docs as f64;
        println!();
        println!("| metric | value |");
        println!("| --- | --- |");
        println!("| documents | {docs} ({BATCH} per request, {conns} connections) |");
        println!("| document JSON size | {avg_json:.0} B |");
        println!("| wall time | {elapsed:.2} s |");
        println!("| throughput | {items_per_s:.0} items/s |");
        println!("| request bytes | {mb_per_s:.1} MB/s |");
        println!(
            "| server CPU | {cpu:.2} s ({:.0} % of one core) |",
            cpu / elapsed * 100.0
        );
        println!(
            "| server peak RSS (VmHWM) | {:.1} MiB |",
            hwm as f64 / 1024.0
        );
        println!(
            "| server RSS growth | {:.1} MiB |",
            rss_after.saturating_sub(rss_before) as f64 / 1024.0
        );
        println!(
            "| memory per stored document | {per_doc:.0} B ({:.2}x its JSON) |",
            per_doc / avg_json
        );
        println!(
            "| peak memory per stored document | {per_doc_hwm:.0} B ({:.2}x its JSON) |",
            per_doc_hwm / avg_json
        );
    });
    drop(server);
}
