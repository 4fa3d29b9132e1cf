//! Invalid settings stop the indexer at startup with exit code 2 and one line naming the
//! setting, whichever layer (flag, env var, file) or check (parser, validation, mapping
//! files) found them.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Command;

/// (flags, env vars, text the error must contain)
type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

fn run(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncline-es-indexer"));
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    // Nothing here may reach a broker: every case must fail before consuming.
    cmd.env("SYNCLINE_BROKERS", "127.0.0.1:1");
    let out = cmd.output().expect("run syncline-es-indexer");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn invalid_settings_fail_startup_naming_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad_toml = dir.path().join("bad.toml");
    std::fs::write(&bad_toml, "[elasticsearch]\nurll = \"http://x\"\n").expect("write");
    let bad_mapping_dir = dir.path().join("mappings");
    std::fs::create_dir(&bad_mapping_dir).expect("mkdir");
    std::fs::write(bad_mapping_dir.join("product.json"), "{ not json").expect("write");
    let bad_mapping_dir = bad_mapping_dir.to_str().expect("utf-8").to_owned();
    let bad_toml = bad_toml.to_str().expect("utf-8").to_owned();

    let cases: Vec<Case> = vec![
        (vec!["--es-url", "ftp://127.0.0.1:9200"], vec![], "url"),
        (vec![], vec![("SYNCLINE_ES_URL", "not a url")], "url"),
        (
            vec!["--es-bulk-max-actions", "0"],
            vec![],
            "bulk_max_actions",
        ),
        (vec!["--es-index-prefix", "Bad"], vec![], "index_prefix"),
        (vec!["--es-username", "elastic"], vec![], "password"),
        (
            vec!["--es-mappings-dir", "/nonexistent/mappings"],
            vec![],
            "mappings_dir",
        ),
        (
            vec!["--es-mappings-dir", &bad_mapping_dir],
            vec![],
            "product.json",
        ),
        (vec!["--config", &bad_toml], vec![], "urll"),
        (vec!["--es-delete-mode", "purge"], vec![], "delete-mode"),
        (vec!["--batch-max-events", "0"], vec![], "batch_max_events"),
    ];
    for (args, envs, needle) in cases {
        let (code, stderr) = run(&args, &envs);
        assert_eq!(code, Some(2), "{args:?} {envs:?}: stderr: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?} {envs:?}: message should name {needle:?}: {stderr}"
        );
    }
}
