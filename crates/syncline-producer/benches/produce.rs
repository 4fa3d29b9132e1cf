//! Produce benchmark: publish N change events through the library to a real broker and
//! print a markdown table row (events/s, MB/s, CPU seconds, peak RSS).
//!
//!     cargo bench -p syncline-producer --bench produce -- [--events N] [--doc-bytes B]
//!         [--keys K] [--partitions P] [--compression C] [--linger-ms L]
//!         [--batch-bytes B] [--queue-kbytes Q] [--max-in-flight M] [--keep-topic]
//!
//! The broker comes from `KAFKA_BROKERS` (default 127.0.0.1:9092). A fresh topic is created
//! for the run and deleted afterwards (unless `--keep-topic`). Unset flags use the
//! library's defaults, so a bare run measures what services get.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use syncline_producer::{ChangeEvent, Compression, Op, PendingDelivery, Producer, ProducerConfig};

struct Args {
    events: u64,
    doc_bytes: usize,
    keys: u64,
    partitions: i32,
    max_in_flight: usize,
    keep_topic: bool,
    header: bool,
    broker_pid: Option<u32>,
    config: ProducerConfig,
}

fn usage(msg: &str) -> ! {
    eprintln!("produce bench: {msg}");
    eprintln!(
        "flags: --events N --doc-bytes B --keys K --partitions P --compression C --linger-ms L \
         --batch-bytes B --queue-kbytes Q --max-in-flight M --broker-pid PID --keep-topic --no-header"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let mut a = Args {
        events: 500_000,
        doc_bytes: 1024,
        keys: 100_000,
        partitions: 6,
        max_in_flight: 20_000,
        keep_topic: false,
        header: true,
        broker_pid: None,
        config: ProducerConfig::new(brokers, "unused"),
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
            "--doc-bytes" => a.doc_bytes = num(&flag, value()),
            "--keys" => a.keys = num::<u64>(&flag, value()).max(1),
            "--partitions" => a.partitions = num(&flag, value()),
            "--max-in-flight" => a.max_in_flight = num::<usize>(&flag, value()).max(1),
            "--compression" => {
                a.config.compression = value()
                    .parse::<Compression>()
                    .unwrap_or_else(|e| usage(&e.to_string()))
            }
            "--linger-ms" => a.config.linger = Duration::from_millis(num(&flag, value())),
            "--batch-bytes" => a.config.batch_size = num(&flag, value()),
            "--queue-kbytes" => a.config.max_queued_bytes = num::<usize>(&flag, value()) * 1024,
            "--keep-topic" => a.keep_topic = true,
            "--broker-pid" => a.broker_pid = Some(num(&flag, value())),
            "--no-header" => a.header = false,
            // `cargo bench` passes --bench to harness=false targets.
            "--bench" => {}
            other => usage(&format!("unknown flag {other}")),
        }
    }
    a
}

/// JSON documents of about `size` bytes, varied so compression sees realistic input.
fn documents(size: usize, count: usize) -> Vec<String> {
    const WORDS: &[&str] = &[
        "lamp", "oak", "desk", "linen", "brass", "matte", "walnut", "cotton", "steel", "glass",
        "round", "tall", "compact", "classic", "modern", "soft", "warm", "bright", "natural",
        "woven", "ceramic", "velvet", "rattan", "marble", "copper", "green", "grey", "blue",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    (0..count)
        .map(|i| {
            let mut desc = String::new();
            let base = 160; // the fixed fields below
            while desc.len() + base < size {
                if !desc.is_empty() {
                    desc.push(' ');
                }
                desc.push_str(WORDS[(next() % WORDS.len() as u64) as usize]);
            }
            let doc = format!(
                r#"{{"name":"{} {}","category":"{}","price":{}.{:02},"stock":{},"tags":["{}","{}"],"description":"{}"}}"#,
                WORDS[i % WORDS.len()],
                i,
                WORDS[(next() % 8) as usize],
                next() % 500,
                next() % 100,
                next() % 1000,
                WORDS[(next() % WORDS.len() as u64) as usize],
                WORDS[(next() % WORDS.len() as u64) as usize],
                desc
            );
            doc
        })
        .collect()
}

fn cpu_seconds() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        }
        Err(_) => f64::NAN,
    }
}

/// CPU seconds (user + system) a local process has used so far, from /proc/PID/stat.
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    Some(ticks / hz as f64)
}

/// Busy CPU seconds of the whole machine so far (all cores), from /proc/stat.
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<f64> = cpu
        .split_whitespace()
        .filter_map(|x| x.parse::<f64>().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7)?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    Some(busy / hz as f64)
}

fn peak_rss_mib() -> f64 {
    // VmHWM: the resident set's high-water mark.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() {
    let mut args = parse_args();
    let topic = format!(
        "bench-produce-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    args.config.topic = topic.clone();
    let config = args.config.clone();
    let producer = Producer::new(config.clone()).unwrap_or_else(|e| usage(&e.to_string()));
    if let Err(e) = producer.check_connection(Duration::from_secs(10)).await {
        eprintln!("produce bench: {e}");
        std::process::exit(1);
    }
    producer
        .ensure_topic(&topic, args.partitions, false)
        .await
        .unwrap_or_else(|e| usage(&e.to_string()));

    let docs = documents(args.doc_bytes, 1000);
    let event = |i: u64| {
        let key = i % args.keys;
        ChangeEvent::new(
            "product",
            format!("p-{key:07}"),
            Op::Upsert,
            (i / args.keys + 1) as i64,
            "bench",
            Some(docs[(i % docs.len() as u64) as usize].clone()),
        )
    };
    // Warm-up: connection, producer id, partition metadata.
    producer
        .publish(&event(0))
        .await
        .unwrap_or_else(|e| usage(&e.to_string()));

    let broker0 = args.broker_pid.and_then(process_cpu_seconds);
    let machine0 = machine_busy_seconds();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let mut doc_bytes = 0u64;
    let mut window =
        std::collections::VecDeque::<PendingDelivery>::with_capacity(args.max_in_flight);
    for i in 1..=args.events {
        let e = event(i);
        doc_bytes += e.document.as_ref().map_or(0, |d| d.len()) as u64;
        if window.len() >= args.max_in_flight {
            if let Some(p) = window.pop_front() {
                p.await.unwrap_or_else(|e| panic!("delivery failed: {e}"));
            }
        }
        window.push_back(
            producer
                .send(&e)
                .await
                .unwrap_or_else(|e| panic!("send failed: {e}")),
        );
    }
    for p in window {
        p.await.unwrap_or_else(|e| panic!("delivery failed: {e}"));
    }
    producer
        .flush(Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("flush failed: {e}"));
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let rss = peak_rss_mib();
    let broker_secs = match (broker0, args.broker_pid.and_then(process_cpu_seconds)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let broker_cpu = broker_secs.map_or("-".into(), |b| format!("{b:.2}"));
    // CPU used by everything else on the machine meanwhile: shows how quiet the run was.
    let other_cpu = match (machine0, machine_busy_seconds()) {
        (Some(a), Some(b)) => format!("{:.2}", (b - a - cpu - broker_secs.unwrap_or(0.0)).max(0.0)),
        _ => "-".into(),
    };

    if args.header {
        println!("| events | doc bytes | keys | partitions | compression | linger.ms | batch.size | queue KiB | in flight | events/s | doc MB/s | wall s | CPU s | peak RSS MiB | broker CPU s | other CPU s |");
        println!(
            "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
    }
    println!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.1} | {:.2} | {:.2} | {:.1} | {} | {} |",
        args.events,
        args.doc_bytes,
        args.keys,
        args.partitions,
        config.compression,
        config.linger.as_millis(),
        config.batch_size,
        config.max_queued_bytes / 1024,
        args.max_in_flight,
        args.events as f64 / secs,
        doc_bytes as f64 / secs / 1e6,
        secs,
        cpu,
        rss,
        broker_cpu,
        other_cpu
    );

    drop(producer);
    if !args.keep_topic {
        let admin: Result<AdminClient<DefaultClientContext>, _> = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .create();
        if let Ok(admin) = admin {
            let _ = admin.delete_topics(&[&topic], &AdminOptions::new()).await;
        }
    }
}
