//! Secrets never reach output: planted passwords (Redis URL userinfo, `--redis-password`,
//! Kafka SASL by flag and env) appear neither in `--check-config`, nor in the logs of a
//! running invalidator that cannot reach Redis, nor in a configuration error.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use syncline_testkit::wait_until;

const PLANTED: [&str; 4] = [
    "planted-redis-url-pw",
    "planted-redis-flag-pw",
    "planted-kafka-flag-pw",
    "planted-kafka-env-pw",
];

fn invalidator(redis_url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncline-redis-invalidator"));
    cmd.env_remove("SYNCLINE_KAFKA")
        .env("SYNCLINE_KAFKA_SASL_PASSWORD", "planted-kafka-env-pw")
        .env("SYNCLINE_REDIS_URL", redis_url)
        .args(["-X", "sasl.password=planted-kafka-flag-pw"]);
    cmd
}

fn assert_clean(what: &str, text: &str) {
    for p in PLANTED {
        assert!(!text.contains(p), "{what} shows the secret {p}:\n{text}");
    }
}

#[test]
fn check_config_and_errors_redact_every_secret() {
    let out = invalidator("redis://app:planted-redis-url-pw@127.0.0.1:6379/0")
        .args([
            "--redis-password",
            "planted-redis-flag-pw",
            "--check-config",
        ])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("[redacted]") || stdout.contains("***"),
        "{stdout}"
    );
    assert_clean("--check-config", &format!("{stdout}{stderr}"));

    let out = invalidator("redis://app:planted-redis-url-pw@127.0.0.1:6379/0")
        .args(["--redis-mode", "write-through", "--check-config"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("redis.mode"), "{stderr}");
    assert_clean("a configuration error", &stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_invalidator_that_cannot_reach_redis_logs_no_secret() {
    // Port 1: nothing listens, so the invalidator logs connection failures with its URL.
    let mut child = invalidator("redis://app:planted-redis-url-pw@127.0.0.1:1/0")
        .args([
            "--redis-password",
            "planted-redis-flag-pw",
            "--brokers",
            &syncline_testkit::kafka_brokers(),
            "--metrics-addr",
            "off",
            "-X",
            "security.protocol=plaintext",
        ])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let log = Arc::new(Mutex::new(String::new()));
    let reader = child.stderr.take().map(|e| {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(e).lines().map_while(Result::ok) {
                if let Ok(mut l) = log.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        })
    });
    let seen = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        let text = log.lock().map(|l| l.clone()).unwrap_or_default();
        async move {
            if text.contains("redis not reachable yet") {
                Ok(())
            } else {
                Err(text)
            }
        }
    })
    .await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
    if let Some(r) = reader {
        let _ = r.join();
    }
    seen.expect("the invalidator logged its connection failure");
    let text = log.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert_clean("the running invalidator's log", &text);
}
