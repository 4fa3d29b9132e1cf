//! `syncline-outbox` configuration: layering, `--check-config` redaction, exit code 2.
// Test code: a panic is the failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::{Command, Output};

fn outbox(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncline-outbox"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SYNCLINE_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args).envs(env.iter().copied()).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn check_config_redacts_secrets_and_layers_file_env_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("outbox.toml");
    std::fs::write(
        &file,
        "[outbox]\ntopic = \"from-file\"\nbatch_rows = 77\nbrokers = \"file:9092\"\n\
         [outbox.kafka]\n\"sasl.password\" = \"file-secret-planted\"\n",
    )
    .unwrap();
    let o = outbox(
        &[
            "--check-config",
            "--config",
            file.to_str().unwrap(),
            "--topic",
            "from-flag",
        ],
        &[
            (
                "SYNCLINE_DATABASE_URL",
                "postgres://app:pg-secret-planted@db:5432/shop?sslmode=require",
            ),
            ("SYNCLINE_TOPIC", "from-env"),
            ("SYNCLINE_BROKERS", "env:9092"),
            ("SYNCLINE_KAFKA_SASL_USERNAME", "alice"),
        ],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(!out.contains("planted"), "{out}");
    assert!(out.starts_with("[outbox]\n"), "{out}");
    assert!(
        out.contains("\ndatabase_url = \"postgres://app:***@db:5432/shop"),
        "{out}"
    );
    assert!(
        out.contains("\n\"sasl.password\" = \"[redacted]\"\n"),
        "{out}"
    );
    assert!(out.contains("\ntopic = \"from-flag\"\n"), "{out}");
    assert!(out.contains("\nbrokers = \"env:9092\"\n"), "{out}");
    assert!(out.contains("\nbatch_rows = 77\n"), "{out}");
    assert!(out.contains("alice"), "{out}");
    assert!(
        out.contains("\nmetrics_addr = \"127.0.0.1:9467\"\n"),
        "{out}"
    );
    // What it prints is a configuration file that resolves to the same settings.
    let again = dir.path().join("again.toml");
    std::fs::write(&again, &o.stdout).unwrap();
    let o2 = outbox(
        &["--check-config", "--config", again.to_str().unwrap()],
        &[],
    );
    assert!(o2.status.success(), "{}", text(&o2));
    assert_eq!(
        String::from_utf8_lossy(&o2.stdout),
        String::from_utf8_lossy(&o.stdout)
    );
}

/// (arguments, environment, the setting the error must name)
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn invalid_settings_exit_2_naming_the_setting() {
    let url = ("SYNCLINE_DATABASE_URL", "postgres://u:pw-planted@h/db");
    let cases: [Case; 5] = [
        (&["--check-config"], &[], "database_url"),
        (
            &["--check-config", "--batch-rows", "0"],
            &[url],
            "batch_rows",
        ),
        (
            &["--check-config", "--metrics-addr", "nowhere"],
            &[url],
            "metrics_addr",
        ),
        (
            &["--check-config"],
            &[(
                "SYNCLINE_DATABASE_URL",
                "postgres://u:pw-planted@h/db?sslmode=allow",
            )],
            "sslmode",
        ),
        (
            &["--check-config", "--topic", "bad topic!"],
            &[url],
            "topic",
        ),
    ];
    for (args, env, setting) in cases {
        let o = outbox(args, env);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {out}");
        assert!(out.contains(setting), "{args:?}: {out}");
        assert!(!out.contains("pw-planted"), "{out}");
    }
}
