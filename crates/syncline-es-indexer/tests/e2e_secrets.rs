//! Secrets never reach output: planted passwords and keys, given as flags, env vars and in
//! the TOML file, appear neither in `--check-config`, nor in the logs of a running indexer,
//! nor in a configuration error. Kafka property values with commas arrive whole.

use std::process::{Command, Stdio};
use std::time::Duration;

use syncline_testkit::{free_port, wait_until};

const PLANTED: [&str; 5] = [
    "planted-kafka-flag-pw",
    "planted-kafka-env-pw",
    "planted-es-password",
    "planted-es-api-key",
    "planted-oauth-secret",
];

fn indexer() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncline-es-indexer"));
    cmd.env_remove("SYNCLINE_KAFKA")
        .env("SYNCLINE_KAFKA_SASL_PASSWORD", "planted-kafka-env-pw")
        .env("SYNCLINE_ES_PASSWORD", "planted-es-password")
        .env("SYNCLINE_ES_USERNAME", "elastic")
        .args([
            "-X",
            "sasl.password=planted-kafka-flag-pw",
            "-X",
            "sasl.oauthbearer.client.secret=planted-oauth-secret",
            "-X",
            "debug=consumer,cgrp",
            "--kafka",
            "client.id=syncline,secrets-test",
        ]);
    cmd
}

fn assert_clean(what: &str, text: &str) {
    for p in PLANTED {
        assert!(!text.contains(p), "{what} shows the secret {p}:\n{text}");
    }
}

#[test]
fn check_config_redacts_and_keeps_commas() {
    let out = indexer().arg("--check-config").output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_clean("--check-config", &format!("{stdout}{stderr}"));
    assert!(stdout.contains("[redacted]"), "{stdout}");
    // One property each, never split on the comma, in the TOML the file is written in.
    assert!(
        stdout.contains("[consumer.kafka]\n") && stdout.contains("\ndebug = \"consumer,cgrp\"\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n\"client.id\" = \"syncline,secrets-test\"\n"),
        "{stdout}"
    );
    assert!(stdout.contains("\n[elasticsearch]\n"), "{stdout}");
    assert!(stdout.contains("\npassword = \"[redacted]\"\n"), "{stdout}");

    // An API key (instead of user/password) in the TOML file.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("es.toml");
    std::fs::write(&file, "[elasticsearch]\napi_key = \"planted-es-api-key\"\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_syncline-es-indexer"))
        .args([
            "--config",
            file.to_str().unwrap_or_default(),
            "--check-config",
        ])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_clean(
        "--check-config with an API key",
        &format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    );

    // A configuration error next to the secrets names the setting, not the secrets.
    let out = indexer()
        .args(["--batch-max-events", "0", "--check-config"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("batch_max_events"), "{stderr}");
    assert_clean("a configuration error", &stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_indexer_logs_no_secret() {
    let port = free_port();
    let child = indexer()
        .args([
            "--brokers",
            &syncline_testkit::kafka_brokers(),
            "--topic",
            &syncline_testkit::unique_name("secrets"),
            "--group",
            &syncline_testkit::unique_name("secrets-group"),
            "--es-url",
            "http://127.0.0.1:9",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            // The SASL settings must not reach the plaintext local broker.
            "-X",
            "security.protocol=plaintext",
        ])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Up: the metrics endpoint answers (after config, client creation and startup logs).
    let up = wait_until(
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    )
    .await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("wait");
    up.expect("the indexer started");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("starting indexer"), "{text}");
    assert_clean("the running indexer's output", &text);
}
