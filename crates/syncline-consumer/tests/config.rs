//! Layered configuration: defaults < TOML file < env vars < flags, validation messages
//! that name the setting, and the sink's own table. (nextest runs each test in its own
//! process, so setting env vars here cannot leak into other tests.)

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::Write as _;
use std::time::Duration;

use clap::Parser;
use syncline_consumer::cli::{self, RuntimeArgs};
use syncline_consumer::{LogFormat, RuntimeConfig};

#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Debug, Default, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RedisSettings {
    url: Option<String>,
    ttl_seconds: u64,
}

fn parse(argv: &[&str]) -> RuntimeArgs {
    Args::try_parse_from(std::iter::once("bin").chain(argv.iter().copied()))
        .expect("flags parse")
        .runtime
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(text.as_bytes()).expect("write");
    f
}

fn defaults() -> RuntimeConfig {
    RuntimeConfig {
        group_id: "syncline-redis-invalidator".into(),
        ..RuntimeConfig::default()
    }
}

fn clear_env() {
    for (k, _) in std::env::vars() {
        if k.starts_with("SYNCLINE_") || k == "KAFKA_BROKERS" {
            std::env::remove_var(k);
        }
    }
}

#[test]
fn defaults_alone_validate_with_the_binary_group() {
    clear_env();
    let (c, s): (RuntimeConfig, RedisSettings) =
        cli::load_with_defaults(&parse(&[]), "redis", defaults()).expect("load");
    assert_eq!(c.group_id, "syncline-redis-invalidator");
    assert_eq!(c.batch_max_events, 1000);
    assert_eq!(c.dlq_topic(), "changes.dlq");
    assert_eq!(s, RedisSettings::default());
}

#[test]
fn file_over_defaults_env_over_file_flags_over_env() {
    clear_env();
    let f = file(
        r#"
[consumer]
topic = "from-file"
batch_max_events = 10
batch_linger = "5ms"
metrics_addr = "off"
[consumer.kafka]
"session.timeout.ms" = "6000"

[redis]
url = "redis://127.0.0.1:6390"
ttl_seconds = 60
"#,
    );
    let path = f.path().to_str().expect("utf-8 path").to_owned();
    std::env::set_var("SYNCLINE_TOPIC", "from-env");
    std::env::set_var("SYNCLINE_BATCH_MAX_EVENTS", "20");
    std::env::set_var("KAFKA_BROKERS", "10.0.0.1:9092");
    let args = parse(&[
        "--config",
        &path,
        "--batch-max-events",
        "30",
        "--kafka",
        "fetch.min.bytes=1",
    ]);
    let (c, s): (RuntimeConfig, RedisSettings) =
        cli::load_with_defaults(&args, "redis", defaults()).expect("load");
    assert_eq!(c.topic, "from-env", "env beats file");
    assert_eq!(c.batch_max_events, 30, "flag beats env");
    assert_eq!(
        c.batch_linger,
        Duration::from_millis(5),
        "file beats default"
    );
    assert_eq!(c.brokers, "10.0.0.1:9092", "KAFKA_BROKERS is honoured");
    assert_eq!(c.metrics_addr, None);
    assert_eq!(
        c.group_id, "syncline-redis-invalidator",
        "binary default survives a file without it"
    );
    assert_eq!(c.kafka["session.timeout.ms"], "6000");
    assert_eq!(c.kafka["fetch.min.bytes"], "1");
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(s.url.as_deref(), Some("redis://127.0.0.1:6390"));
    assert_eq!(s.ttl_seconds, 60);

    std::env::set_var("SYNCLINE_BROKERS", "10.0.0.2:9092");
    let (c, _): (RuntimeConfig, RedisSettings) =
        cli::load_with_defaults(&parse(&[]), "redis", defaults()).expect("load");
    assert_eq!(
        c.brokers, "10.0.0.2:9092",
        "SYNCLINE_BROKERS beats KAFKA_BROKERS"
    );
}

#[test]
fn invalid_values_name_the_setting() {
    clear_env();
    let e = cli::load_with_defaults::<RedisSettings>(
        &parse(&["--batch-max-events", "0"]),
        "redis",
        defaults(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid setting `batch_max_events`: must be at least 1"
    );

    let e = cli::load_with_defaults::<RedisSettings>(
        &parse(&["--metrics-addr", "nowhere"]),
        "redis",
        defaults(),
    )
    .unwrap_err();
    assert_eq!(e.setting, "metrics_addr");

    let e = cli::load_with_defaults::<RedisSettings>(
        &parse(&["--kafka", "novalue"]),
        "redis",
        defaults(),
    )
    .unwrap_err();
    assert_eq!(e.setting, "kafka");

    let e =
        cli::load_with_defaults::<RedisSettings>(&parse(&["--group", " "]), "redis", defaults())
            .unwrap_err();
    assert_eq!(e.setting, "group_id");
}

#[test]
fn unknown_keys_in_the_file_are_rejected_naming_key_and_file() {
    clear_env();
    let f = file("[consumer]\nbatch_max_evnts = 3\n");
    let path = f.path().display().to_string();
    let e =
        cli::load_with_defaults::<RedisSettings>(&parse(&["--config", &path]), "redis", defaults())
            .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("batch_max_evnts"), "{msg}");
    assert!(msg.contains(&path), "{msg}");

    let f = file("[redis]\nurl = \"redis://x\"\nttl = 3\n");
    let path = f.path().display().to_string();
    let e =
        cli::load_with_defaults::<RedisSettings>(&parse(&["--config", &path]), "redis", defaults())
            .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("`ttl`") && msg.contains(&path) && msg.contains("[redis]"),
        "{msg}"
    );

    let f = file("[consumr]\ntopic = \"x\"\n");
    let path = f.path().display().to_string();
    let e =
        cli::load_with_defaults::<RedisSettings>(&parse(&["--config", &path]), "redis", defaults())
            .unwrap_err();
    assert_eq!(e.setting, "consumr");
    assert!(e.to_string().contains(&path));

    let f = file("[consumer]\nbatch_max_events = 0\n");
    let path = f.path().display().to_string();
    let e =
        cli::load_with_defaults::<RedisSettings>(&parse(&["--config", &path]), "redis", defaults())
            .unwrap_err();
    assert_eq!(
        e.setting, "batch_max_events",
        "file values are validated too"
    );

    let e = cli::load_with_defaults::<RedisSettings>(
        &parse(&["--config", "/nonexistent/syncline.toml"]),
        "redis",
        defaults(),
    )
    .unwrap_err();
    assert_eq!(e.setting, "config");
    assert!(e.to_string().contains("/nonexistent/syncline.toml"));
}

#[test]
fn bad_flag_values_are_rejected_by_the_parser() {
    clear_env();
    let r = Args::try_parse_from(["bin", "--batch-linger", "soon"]);
    assert!(r.is_err());
    let r = Args::try_parse_from(["bin", "--log-format", "xml"]);
    assert!(r.is_err());
    let a = parse(&[
        "--log-format",
        "json",
        "--retry-max-attempts",
        "5",
        "--events-per-second",
        "100",
    ]);
    let (c, _): (RuntimeConfig, RedisSettings) =
        cli::load_with_defaults(&a, "redis", defaults()).expect("load");
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.retry_max_attempts, Some(5));
    assert_eq!(c.events_per_second, Some(100));
}

#[test]
fn kafka_properties_merge_with_the_binary_defaults() {
    clear_env();
    let mut d = defaults();
    d.kafka
        .insert("client.id".into(), "syncline-redis-invalidator".into());
    let f = file("[consumer.kafka]\n\"security.protocol\" = \"SSL\"\n");
    let path = f.path().display().to_string();
    let (c, _): (RuntimeConfig, RedisSettings) = cli::load_with_defaults(
        &parse(&["--config", &path, "--kafka", "linger.ms=1"]),
        "redis",
        d,
    )
    .expect("load");
    assert_eq!(c.kafka["client.id"], "syncline-redis-invalidator");
    assert_eq!(c.kafka["security.protocol"], "SSL");
    assert_eq!(c.kafka["linger.ms"], "1");
}
