//! Redis over TLS with a private CA and client certificates (`tls-auth-clients yes`), end
//! to end: the invalidator binary applies events over such a connection and the cache
//! crate reads the result over one; without a client certificate, or trusting the wrong
//! CA, both fail with an error that says so (the binary exits, it does not retry
//! silently); unusable files are refused by `--check-config`. A password is set on the
//! server and must never appear in any output.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use syncline_cache::{Cache, CacheError, ConnectOptions, Entry, KeyLayout, RedisTlsFiles, Ttls};
use syncline_event::{ChangeEvent, Op};
use syncline_testkit::tls::TestPki;
use syncline_testkit::{create_topic, publish_events, unique_name, ChildGuard, RedisServer};

const PASSWORD: &str = "planted-Redis-secret-7d1f";

fn files(pki: &TestPki, ca: &Path, client_cert: bool) -> RedisTlsFiles {
    RedisTlsFiles {
        ca_file: Some(ca.to_path_buf()),
        cert_file: client_cert.then(|| pki.client_cert()),
        key_file: client_cert.then(|| pki.client_key()),
    }
}

fn options(server: &RedisServer, tls: RedisTlsFiles) -> ConnectOptions {
    ConnectOptions {
        url: server.tls_url(),
        password: Some(PASSWORD.into()),
        tls,
        ..Default::default()
    }
}

/// A TLS server with a password (set over a TLS connection: it has no plain port).
async fn server(pki: &TestPki) -> RedisServer {
    let server = RedisServer::start_tls(pki);
    let opts = ConnectOptions {
        url: server.tls_url(),
        tls: files(pki, &pki.ca_cert(), true),
        ..Default::default()
    };
    let client = opts.client().expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect with CA and client certificate");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(PASSWORD)
        .query_async(&mut conn)
        .await
        .expect("set password");
    server
}

/// The binary with everything configured through env vars plus `flags`; stdout and
/// stderr go to `log`.
fn invalidator(
    server: &RedisServer,
    topic: &str,
    group: &str,
    prefix: &str,
    flags: &[&str],
    log: &Path,
) -> ChildGuard {
    let out = std::fs::File::create(log).expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncline-redis-invalidator"));
    cmd.env("SYNCLINE_BROKERS", syncline_testkit::kafka_brokers())
        .env("SYNCLINE_TOPIC", topic)
        .env("SYNCLINE_GROUP_ID", group)
        .env("SYNCLINE_KAFKA", syncline_testkit::consumer_kafka_env(""))
        .env(
            "SYNCLINE_METRICS_ADDR",
            format!("127.0.0.1:{}", syncline_testkit::free_port()),
        )
        .env("SYNCLINE_REDIS_URL", server.tls_url())
        .env("SYNCLINE_REDIS_PASSWORD", PASSWORD)
        .env("SYNCLINE_REDIS_KEY_PREFIX", prefix)
        .env("RUST_LOG", "info")
        .args(flags)
        .stdout(out.try_clone().expect("dup log"))
        .stderr(out)
        .stdin(Stdio::null());
    ChildGuard::spawn(&mut cmd).expect("spawn invalidator")
}

/// Wait (bounded) for the process to exit; its exit code.
fn exit_code(child: &mut ChildGuard, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn assert_no_secret(text: &str) {
    assert!(
        !text.contains(PASSWORD),
        "the password appears in the output:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidator_and_cache_work_over_mutual_tls() {
    let pki = TestPki::generate();
    let server = server(&pki).await;
    let prefix = format!("{}:", unique_name("tls"));
    let layout = KeyLayout::new(prefix.clone()).expect("prefix");
    let cache = Cache::connect_with(
        &options(&server, files(&pki, &pki.ca_cert(), true)),
        layout,
        Ttls::default(),
    )
    .await
    .expect("cache connects with CA + client certificate + password");

    // Cached at version 1 by an application; the events carry version 2.
    let ids: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
    for id in &ids {
        let entry = Entry {
            version: 1,
            document: json!({"id": id, "v": 1}).to_string(),
        };
        cache.store("product", id, &entry).await.expect("store");
    }
    let topic = unique_name("redis-tls");
    create_topic(&syncline_testkit::kafka_brokers(), &topic, 1)
        .await
        .expect("topic");
    let events: Vec<ChangeEvent> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let op = if i % 5 == 0 { Op::Delete } else { Op::Upsert };
            let doc = (op == Op::Upsert).then(|| json!({"id": id, "v": 2}).to_string());
            ChangeEvent::new("product", id.clone(), op, 2, "test", doc)
        })
        .collect();
    publish_events(&syncline_testkit::kafka_brokers(), &topic, &events)
        .await
        .expect("publish");

    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("invalidator.log");
    let ca = pki.ca_cert();
    let cert = pki.client_cert();
    let key = pki.client_key();
    let child = invalidator(
        &server,
        &topic,
        &unique_name("redis-tls-group"),
        &prefix,
        &[
            "--redis-ca-file",
            &ca.to_string_lossy(),
            "--redis-cert-file",
            &cert.to_string_lossy(),
            "--redis-key-file",
            &key.to_string_lossy(),
        ],
        &log,
    );
    // Shared with the polling closure, which only needs to look whether it exited.
    let child = std::sync::Mutex::new(child);

    // Every entity's guard reaches version 2 and its cached value is gone: the binary
    // applied every event over the TLS connection, observed through another one.
    let applied =
        syncline_testkit::wait_until(common::DEADLINE, Duration::from_millis(200), || async {
            let exited = child
                .lock()
                .ok()
                .and_then(|mut c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                return Ok(Err(format!("invalidator exited: {status}")));
            }
            let mut missing = Vec::new();
            for id in &ids {
                let guard = cache
                    .guard("product", id)
                    .await
                    .map_err(|e| e.to_string())?;
                let value = cache.get("product", id).await.map_err(|e| e.to_string())?;
                if guard != Some(2) || value.is_some() {
                    missing.push(id.clone());
                }
            }
            if missing.is_empty() {
                Ok(Ok(()))
            } else {
                Err(format!("not yet applied: {missing:?}"))
            }
        })
        .await;
    if let Ok(mut c) = child.into_inner() {
        let _ = c.terminate();
    }
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(matches!(applied, Ok(Ok(()))), "{applied:?}\nlog:\n{output}");
    // An older load after the invalidation is refused over TLS too.
    let stale = Entry {
        version: 1,
        document: "{}".into(),
    };
    assert_eq!(
        cache.store("product", "p1", &stale).await.ok(),
        Some(syncline_cache::StoreOutcome::Refused)
    );
    assert_no_secret(&output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_client_certificate_and_wrong_ca_fail_clearly() {
    let pki = TestPki::generate();
    let server = server(&pki).await;
    let prefix = format!("{}:", unique_name("tls-bad"));
    let layout = KeyLayout::new(prefix.clone()).expect("prefix");

    // The cache crate: a typed TLS error naming the cause, not a generic I/O error.
    let bounded = Duration::from_secs(60);
    let no_cert = tokio::time::timeout(
        bounded,
        Cache::connect_with(
            &options(&server, files(&pki, &pki.ca_cert(), false)),
            layout.clone(),
            Ttls::default(),
        ),
    )
    .await
    .expect("connect_with returns within a minute")
    .err();
    let text = format!(
        "{no_cert:?} / {}",
        no_cert.as_ref().map(|e| e.to_string()).unwrap_or_default()
    );
    assert!(
        matches!(&no_cert, Some(CacheError::Tls(m)) if m.contains("client certificate")),
        "{text}"
    );
    assert_no_secret(&text);
    let wrong_ca = tokio::time::timeout(
        bounded,
        Cache::connect_with(
            &options(&server, files(&pki, &pki.other_ca_cert(), true)),
            layout,
            Ttls::default(),
        ),
    )
    .await
    .expect("connect_with returns within a minute")
    .err();
    let text = format!("{wrong_ca:?}");
    assert!(
        matches!(&wrong_ca, Some(CacheError::Tls(m)) if m.contains("not signed by a trusted CA")),
        "{text}"
    );
    assert_no_secret(&text);

    // The binary: exits 1 promptly with the cause on stderr.
    let topic = unique_name("redis-tls-bad");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = pki.ca_cert().to_string_lossy().into_owned();
    let other = pki.other_ca_cert().to_string_lossy().into_owned();
    let cert = pki.client_cert().to_string_lossy().into_owned();
    let key = pki.client_key().to_string_lossy().into_owned();
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "no-client-cert",
            vec!["--redis-ca-file", &ca],
            "client certificate",
        ),
        (
            "wrong-ca",
            vec![
                "--redis-ca-file",
                &other,
                "--redis-cert-file",
                &cert,
                "--redis-key-file",
                &key,
            ],
            "not signed by a trusted CA",
        ),
    ];
    for (name, flags, expect) in cases {
        let log = dir.path().join(format!("{name}.log"));
        let mut child = invalidator(&server, &topic, &unique_name(name), &prefix, &flags, &log);
        let code = exit_code(&mut child, Duration::from_secs(30));
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(code, Some(1), "{name}: exit code; output:\n{output}");
        assert!(
            output.contains(expect),
            "{name}: output lacks {expect:?}:\n{output}"
        );
        assert_no_secret(&output);
    }

    // Unusable files: refused before connecting, naming the setting (exit 2).
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "this is not PEM\n").expect("write");
    let junk = junk.to_string_lossy().into_owned();
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "missing-ca",
            vec!["--redis-ca-file", "/nonexistent/ca.pem"],
            "redis.ca_file",
        ),
        ("junk-ca", vec!["--redis-ca-file", &junk], "redis.ca_file"),
        (
            "junk-key",
            vec!["--redis-cert-file", &cert, "--redis-key-file", &junk],
            "redis.key_file",
        ),
        (
            "cert-without-key",
            vec!["--redis-cert-file", &cert],
            "redis.key_file",
        ),
    ];
    for (name, mut flags, expect) in cases {
        flags.push("--check-config");
        let log = dir.path().join(format!("{name}.log"));
        let mut child = invalidator(&server, &topic, &unique_name(name), &prefix, &flags, &log);
        let code = exit_code(&mut child, Duration::from_secs(30));
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(code, Some(2), "{name}: exit code; output:\n{output}");
        assert!(
            output.contains(expect),
            "{name}: output lacks {expect:?}:\n{output}"
        );
        assert_no_secret(&output);
    }

    // And a good configuration passes --check-config, showing the files but no secret.
    let log = dir.path().join("check-ok.log");
    let mut child = invalidator(
        &server,
        &topic,
        &unique_name("ok"),
        &prefix,
        &[
            "--redis-ca-file",
            &ca,
            "--redis-cert-file",
            &cert,
            "--redis-key-file",
            &key,
            "--check-config",
        ],
        &log,
    );
    let code = exit_code(&mut child, Duration::from_secs(30));
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(code, Some(0), "check-config: {output}");
    assert!(output.contains("client.pem"), "{output}");
    assert_no_secret(&output);
}
