//! Elasticsearch over mutual TLS: the indexer binary against the dev server's HTTPS
//! listener that requires client certificates signed by a private CA. With the CA and a
//! client certificate every event is indexed; without the certificate, or trusting the
//! wrong CA, nothing is written and the log names the TLS cause; unusable files stop
//! startup naming the setting. A planted API key never appears in any output.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use syncline_event::{ChangeEvent, Op};
use syncline_testkit::tls::TestPki;
use syncline_testkit::{create_topic, free_port, publish_events, ChildGuard};

const API_KEY: &str = "planted-key-id:planted-ES-secret-93c2";
const SECRET: &str = "planted-ES-secret-93c2";

async fn mtls_server(pki: &TestPki) -> es_devserver::RunningServer {
    let tls = es_devserver::tls::TlsConfig::from_files(
        &pki.server_cert(),
        &pki.server_key(),
        Some(&pki.ca_cert()),
    )
    .expect("tls files");
    es_devserver::tls::start_tls(es_devserver::Config::default(), &tls)
        .await
        .expect("start the dev server with TLS")
}

fn spawn(setup: &common::Setup, extra: &[&str], log: &Path) -> ChildGuard {
    let out = std::fs::File::create(log).expect("log file");
    let mut cmd = setup.command(free_port(), extra);
    cmd.env("SYNCLINE_ES_API_KEY", API_KEY)
        .env("RUST_LOG", "info")
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .stdin(Stdio::null());
    ChildGuard::spawn(&mut cmd).expect("spawn syncline-es-indexer")
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

fn assert_no_secret(text: &str) {
    assert!(
        !text.contains(SECRET),
        "the API key secret appears in the output:\n{text}"
    );
}

fn events(n: usize) -> Vec<ChangeEvent> {
    (0..n)
        .map(|i| {
            ChangeEvent::new(
                "product",
                format!("p{i}"),
                Op::Upsert,
                1 + i as i64,
                "test",
                Some(json!({"name": format!("lamp {i}")}).to_string()),
            )
        })
        .collect()
}

/// Wait up to `within` for `needle` in the log (or the process to exit); the log.
fn wait_log(child: &mut ChildGuard, log: &Path, needles: &[&str], within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let text = read(log);
        if needles.iter().any(|n| text.contains(n)) || Instant::now() >= deadline {
            return text;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return read(log);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexer_writes_over_mutual_tls_and_fails_clearly_without_it() {
    let pki = TestPki::generate();
    let server = mtls_server(&pki).await;
    let es = common::Es {
        url: server.url().to_owned(),
        server: None,
        http: reqwest::Client::new(),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = pki.ca_cert().to_string_lossy().into_owned();
    let other_ca = pki.other_ca_cert().to_string_lossy().into_owned();
    let cert = pki.client_cert().to_string_lossy().into_owned();
    let key = pki.client_key().to_string_lossy().into_owned();

    // Without a client certificate, then with the wrong CA: nothing written, the log says
    // why (the indexer keeps retrying, as it does for any unreachable Elasticsearch).
    let bad: Vec<(&str, Vec<&str>, &[&str])> = vec![
        (
            "no-cert",
            vec!["--es-ca-file", &ca],
            &["CertificateRequired", "certificate required"],
        ),
        (
            "wrong-ca",
            vec![
                "--es-ca-file",
                &other_ca,
                "--es-cert-file",
                &cert,
                "--es-key-file",
                &key,
            ],
            &["UnknownIssuer"],
        ),
    ];
    for (name, flags, needles) in bad {
        let setup = common::Setup::new(&es, &format!("es-tls-{name}"));
        create_topic(&setup.brokers, &setup.topic, 1)
            .await
            .expect("topic");
        publish_events(&setup.brokers, &setup.topic, &events(3))
            .await
            .expect("publish");
        let log = dir.path().join(format!("{name}.log"));
        let mut child = spawn(&setup, &flags, &log);
        let text = wait_log(&mut child, &log, needles, Duration::from_secs(45));
        child.kill();
        assert!(
            needles.iter().any(|n| text.contains(n)),
            "{name}: the log does not name the TLS cause {needles:?}:\n{text}"
        );
        assert!(
            server.dump_index(&setup.alias("product")).is_none(),
            "{name}: something was written"
        );
        let committed =
            syncline_testkit::committed_offsets(&setup.brokers, &setup.group, &setup.topic)
                .await
                .expect("committed offsets");
        assert!(
            committed.iter().all(|c| c.unwrap_or(0) == 0),
            "{name}: offsets committed without writing: {committed:?}"
        );
        assert_no_secret(&text);
    }

    // Unusable files stop startup naming the setting.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not PEM at all\n").expect("write");
    let junk = junk.to_string_lossy().into_owned();
    let setup = common::Setup::new(&es, "es-tls-files");
    let file_cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--es-cert-file", &cert], "key_file"),
        (
            vec!["--es-cert-file", &cert, "--es-key-file", &junk],
            "key_file",
        ),
        (
            vec!["--es-cert-file", &junk, "--es-key-file", &key],
            "cert_file",
        ),
        (vec!["--es-ca-file", &junk], "ca_file"),
        (vec!["--es-ca-file", "/nonexistent/ca.pem"], "ca_file"),
    ];
    for (i, (flags, setting)) in file_cases.into_iter().enumerate() {
        let log = dir.path().join(format!("files-{i}.log"));
        let mut child = spawn(&setup, &flags, &log);
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Ok(Some(s)) = child.try_wait() {
                break Some(s);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let text = read(&log);
        assert!(
            status.is_some_and(|s| !s.success()),
            "{flags:?} should stop startup: {status:?}\n{text}"
        );
        assert!(
            text.contains(&format!("elasticsearch.{setting}")),
            "{flags:?}: the error does not name elasticsearch.{setting}:\n{text}"
        );
        assert_no_secret(&text);
    }

    // With the CA and a client certificate: every event indexed, offsets committed.
    let setup = common::Setup::new(&es, "es-tls-ok");
    create_topic(&setup.brokers, &setup.topic, 1)
        .await
        .expect("topic");
    let sent = events(25);
    publish_events(&setup.brokers, &setup.topic, &sent)
        .await
        .expect("publish");
    let log = dir.path().join("ok.log");
    let mut child = spawn(
        &setup,
        &[
            "--es-ca-file",
            &ca,
            "--es-cert-file",
            &cert,
            "--es-key-file",
            &key,
        ],
        &log,
    );
    setup.wait_drained(Duration::from_secs(90)).await;
    let _ = child.terminate();
    let text = read(&log);
    let docs = server
        .dump_index(&setup.alias("product"))
        .unwrap_or_default();
    assert_eq!(
        docs.len(),
        sent.len(),
        "documents indexed over mTLS; log:\n{text}"
    );
    for e in &sent {
        let doc = docs
            .iter()
            .find(|(id, _)| *id == e.entity_id)
            .map(|(_, d)| d.clone());
        let want: serde_json::Value =
            serde_json::from_str(e.document.as_deref().unwrap_or("null")).unwrap_or_default();
        assert_eq!(doc, Some(want), "document {}", e.entity_id);
    }
    assert_no_secret(&text);
    server.shutdown().await;
}
