//! Kafka over TLS, end to end through a real broker: `syncline-publish` creates a topic
//! and publishes events, and the invalidator binary consumes them and applies them to
//! Redis, both connecting only through a TLS port (a private Tansu behind stunnel,
//! advertising the TLS port, so metadata-directed connections are TLS too). Trusting the
//! wrong CA fails clearly and within a bounded time: `syncline-publish` exits with an
//! error naming the certificate problem, the invalidator logs it and commits nothing.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use syncline_testkit::tls::TestPki;
use syncline_testkit::tls_broker::TlsBroker;
use syncline_testkit::{unique_name, ChildGuard};

/// The debug `syncline-publish` next to this test's target directory, built if needed
/// (another package's binary is not in this test's `CARGO_BIN_EXE_*`).
fn publish_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .to_path_buf();
    let path = dir.join("syncline-publish");
    if !path.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "-p",
                "syncline-producer",
                "--bin",
                "syncline-publish",
            ])
            .status()
            .expect("cargo");
        assert!(status.success(), "building syncline-publish failed");
    }
    path
}

fn jsonl(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("events.jsonl");
    let lines: Vec<String> = (0..n)
        .map(|i| {
            serde_json::json!({
                "entity_type": "product",
                "entity_id": format!("k{i}"),
                "op": "UPSERT",
                "version": 10 + i,
                "document": {"i": i},
            })
            .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").expect("write jsonl");
    path
}

fn publish(broker: &TlsBroker, topic: &str, ca: &Path, file: &Path) -> (Option<i32>, String) {
    let out = Command::new(publish_binary())
        .args(["--brokers", &broker.tls_brokers(), "--topic", topic])
        .args(["--create-topic", "--partitions", "1", "--timeout", "15s"])
        .args(["--progress", "none"])
        .args(["-X", "security.protocol=ssl"])
        .arg("-X")
        .arg(format!("ssl.ca.location={}", ca.display()))
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .expect("run syncline-publish");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn invalidator(
    broker: &TlsBroker,
    topic: &str,
    group: &str,
    prefix: &str,
    ca: &Path,
    log: &Path,
) -> ChildGuard {
    let out = std::fs::File::create(log).expect("log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncline-redis-invalidator"));
    cmd.env("SYNCLINE_BROKERS", broker.tls_brokers())
        .env("SYNCLINE_TOPIC", topic)
        .env("SYNCLINE_GROUP_ID", group)
        .env("SYNCLINE_KAFKA", syncline_testkit::consumer_kafka_env(""))
        .env(
            "SYNCLINE_METRICS_ADDR",
            format!("127.0.0.1:{}", syncline_testkit::free_port()),
        )
        .env("SYNCLINE_REDIS_URL", syncline_testkit::redis_url())
        .env("SYNCLINE_REDIS_KEY_PREFIX", prefix)
        .env("RUST_LOG", "info")
        .args(["--kafka-security-protocol", "ssl"])
        .arg("--kafka-ca-file")
        .arg(ca)
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .stdin(Stdio::null());
    ChildGuard::spawn(&mut cmd).expect("spawn invalidator")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_consume_over_tls_and_wrong_ca_fails_clearly() {
    let pki = TestPki::generate();
    let broker = TlsBroker::start(&pki);
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 30;
    let file = jsonl(dir.path(), n);
    let topic = unique_name("kafka-tls");

    // Wrong CA first: syncline-publish must give up within its timeout, saying why.
    // (Build it first, so that building is not counted.)
    let _ = publish_binary();
    let started = Instant::now();
    let (code, output) = publish(&broker, &topic, &pki.other_ca_cert(), &file);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "wrong CA took {:?}",
        started.elapsed()
    );
    assert_ne!(
        code,
        Some(0),
        "publishing with the wrong CA succeeded: {output}"
    );
    assert!(
        output.contains("certificate verify failed") || output.contains("SSL handshake failed"),
        "the error does not name the certificate problem:\n{output}"
    );

    // Right CA: topic created and every event published through TLS.
    let (code, output) = publish(&broker, &topic, &pki.ca_cert(), &file);
    assert_eq!(code, Some(0), "publish over TLS failed:\n{output}");

    // The invalidator consumes over TLS and applies every event to Redis.
    let prefix = format!("{}:", unique_name("kafka-tls"));
    let layout = syncline_cache::KeyLayout::new(prefix.clone()).expect("prefix");
    let cache = syncline_cache::Cache::connect(
        &syncline_testkit::redis_url(),
        layout,
        syncline_cache::Ttls::default(),
    )
    .await
    .expect("redis");
    let log = dir.path().join("ok.log");
    let mut child = invalidator(
        &broker,
        &topic,
        &unique_name("kafka-tls-g"),
        &prefix,
        &pki.ca_cert(),
        &log,
    );
    let applied =
        syncline_testkit::wait_until(common::DEADLINE, Duration::from_millis(250), || async {
            let mut missing = 0;
            for i in 0..n {
                let g = cache
                    .guard("product", &format!("k{i}"))
                    .await
                    .map_err(|e| e.to_string())?;
                if g != Some(10 + i as i64) {
                    missing += 1;
                }
            }
            if missing == 0 {
                Ok(())
            } else {
                Err(format!("{missing} guards not yet at their version"))
            }
        })
        .await;
    child.kill();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(applied.is_ok(), "{applied:?}\nlog:\n{text}");

    // Wrong CA for the consumer: a clear log line within a bounded time, nothing applied.
    let prefix2 = format!("{}:", unique_name("kafka-tls-bad"));
    let layout2 = syncline_cache::KeyLayout::new(prefix2.clone()).expect("prefix");
    let cache2 = syncline_cache::Cache::connect(
        &syncline_testkit::redis_url(),
        layout2,
        syncline_cache::Ttls::default(),
    )
    .await
    .expect("redis");
    let log = dir.path().join("bad.log");
    let mut child = invalidator(
        &broker,
        &topic,
        &unique_name("kafka-tls-bad-g"),
        &prefix2,
        &pki.other_ca_cert(),
        &log,
    );
    let deadline = Instant::now() + Duration::from_secs(45);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("certificate verify failed") || Instant::now() >= deadline {
            break text;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break std::fs::read_to_string(&log).unwrap_or_default();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    child.kill();
    assert!(
        text.contains("certificate verify failed"),
        "the invalidator's log does not say why it cannot reach the broker:\n{text}"
    );
    assert_eq!(
        cache2.guard("product", "k0").await.ok(),
        Some(None),
        "applied despite the wrong CA"
    );
}
