//! The binary's startup: invalid settings stop it with a line naming the setting (exit 2);
//! a valid configuration runs and SIGTERM shuts it down cleanly (exit 0).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::process::Command;
use std::time::Duration;

use syncline_cache::Mode;
use syncline_testkit::{create_topic, wait_until};

fn run_with(env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncline-redis-invalidator"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.args(args).output().expect("run binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn invalid_settings_name_the_setting_and_exit_2() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("SYNCLINE_REDIS_CACHE_TTL", "1h"),
                ("SYNCLINE_REDIS_GUARD_TTL", "1m"),
            ],
            "redis.guard_ttl",
        ),
        (&[("SYNCLINE_REDIS_MODE", "write-through")], "redis.mode"),
        (
            &[("SYNCLINE_REDIS_URL", "http://127.0.0.1:6379")],
            "redis.url",
        ),
        (&[("SYNCLINE_REDIS_KEY_PREFIX", "a{b}")], "redis.key_prefix"),
    ];
    for (env, setting) in cases {
        let (code, stderr) = run_with(env, &["--check-config"]);
        assert_eq!(code, Some(2), "{setting}: {stderr}");
        assert!(stderr.contains(setting), "{setting}: {stderr}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[redis]\nmode = \"refresh\"\nttl = \"1h\"\n").expect("write");
    let (code, stderr) = run_with(
        &[],
        &[
            "--config",
            file.to_str().unwrap_or_default(),
            "--check-config",
        ],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("ttl") && stderr.contains("[redis]"),
        "{stderr}"
    );

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[consumer]\ntopic = \"t\"\n\n[redis]\nmode = \"refresh\"\ncache_ttl = \"10m\"\nguard_ttl = \"1d\"\npassword = \"hunter2\"\n").expect("write");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncline-redis-invalidator"));
    let out = cmd
        .args([
            "--config",
            good.to_str().unwrap_or_default(),
            "--check-config",
        ])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("[redis]\n")
            && stdout.contains("\nmode = \"refresh\"\n")
            && stdout.contains("\nguard_ttl = \"1day\"\n")
            && stdout.contains("\npassword = \"[redacted]\"\n")
            && !stdout.contains("hunter2"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly() {
    let url = syncline_testkit::redis_url();
    let setup = common::Setup::new("sigterm", &url);
    create_topic(&setup.brokers, &setup.topic, 1)
        .await
        .expect("topic");
    let mut inv = setup.spawn(Mode::Invalidate, &[]);
    let port = inv.metrics_port;
    wait_until(
        common::DEADLINE,
        Duration::from_millis(200),
        || async move {
            let text = common::Invalidator::metrics_of(port);
            if text.contains("syncline_redis_scripts_applied_total") {
                Ok(())
            } else {
                Err("metrics not served yet".to_owned())
            }
        },
    )
    .await
    .expect("metrics endpoint up");
    let status = inv.child.terminate().expect("terminate");
    assert!(status.success(), "exit status {status:?}");
}
