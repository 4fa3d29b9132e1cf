//! `syncline-publish` end to end: the real binary against the real broker.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![allow(missing_docs)]

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{brokers, count_records, count_records_on, fresh_topic, read_topic};
use syncline_event::{Limits, Op};
use syncline_testkit::private_broker::PrivateBroker;

const BIN: &str = env!("CARGO_BIN_EXE_syncline-publish");

fn good_line(i: usize) -> String {
    format!(
        r#"{{"entity_type":"product","entity_id":"p-{i:04}","op":"UPSERT","version":{i},"source":"cli-test","document":{{"name":"item {i}","price":{i}.5}}}}"#
    )
}

fn write_lines(lines: &[String]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    f.flush().unwrap();
    f
}

fn publish(args: &[&str], stdin: Option<&str>) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .env("KAFKA_BROKERS", brokers())
        .env_remove("TRACEPARENT")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn syncline-publish");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().expect("wait");
    (out, started.elapsed())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// (entity_id, version) of every record in the topic, in (partition, offset) order.
fn published_ids(topic: &str) -> Vec<(String, i64)> {
    let mut ids: Vec<(String, i64)> = read_topic(topic)
        .iter()
        .map(|r| {
            let e = syncline_event::decode(&r.value, &Limits::default()).expect("decodes");
            (e.entity_id, e.version)
        })
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_bad_line_stops_publishing_after_exactly_the_lines_before_it() {
    let topic = fresh_topic("cli-badline");
    // 60 lines, line 37 is not JSON.
    let bad_at = 37;
    let mut lines: Vec<String> = (1..=60).map(good_line).collect();
    lines[bad_at - 1] = r#"{"entity_type":"product","entity_id":"p-x","#.to_string();
    let file = write_lines(&lines);
    let (out, _) = publish(
        &[
            "--topic",
            &topic,
            "--create-topic",
            "--partitions",
            "3",
            file.path().to_str().unwrap(),
        ],
        None,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("line {bad_at}")),
        "stderr: {stderr}"
    );
    assert!(text(&out.stdout).contains(&format!("published {}", bad_at - 1)));

    let mut expected: Vec<(String, i64)> = (1..bad_at)
        .map(|i| (format!("p-{i:04}"), i as i64))
        .collect();
    expected.sort();
    assert_eq!(
        published_ids(&topic),
        expected,
        "exactly the lines before {bad_at}"
    );
}

#[test]
fn an_invalid_event_line_stops_too() {
    let topic = fresh_topic("cli-invalid-event");
    let mut lines: Vec<String> = (1..=10).map(good_line).collect();
    // Valid JSON, but an UPSERT without a document breaks the contract.
    lines[4] = r#"{"entity_type":"product","entity_id":"p-5","op":"UPSERT","version":5}"#.into();
    let file = write_lines(&lines);
    let (out, _) = publish(
        &[
            "--topic",
            &topic,
            "--create-topic",
            file.path().to_str().unwrap(),
        ],
        None,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("line 5: invalid event: UPSERT requires a document"),
        "{stderr}"
    );
    assert_eq!(count_records(&topic), 4);
}

#[test]
fn skip_invalid_publishes_every_good_line_and_reports_the_bad_ones() {
    let topic = fresh_topic("cli-skip");
    let mut lines: Vec<String> = (1..=50).map(good_line).collect();
    lines[9] = "not json at all".into(); // line 10
    lines[19] = r#"{"entity_type":"Bad Type","entity_id":"p","op":"DELETE","version":1}"#.into(); // line 20
    lines[29] = String::new(); // line 30: blank lines are ignored
    lines[39] =
        r#"{"entity_type":"product","entity_id":"p","op":"DELETE","version":1,"extra":1}"#.into(); // line 40
    let file = write_lines(&lines);
    let (out, _) = publish(
        &[
            "--topic",
            &topic,
            "--create-topic",
            "--skip-invalid",
            file.path().to_str().unwrap(),
        ],
        None,
    );
    let stderr = text(&out.stderr);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    for n in [10, 20, 40] {
        assert!(
            stderr.contains(&format!("line {n}:")),
            "line {n} not reported: {stderr}"
        );
    }
    assert!(!stderr.contains("line 30:"), "{stderr}");
    assert!(stdout.contains("published 46 event(s)"), "{stdout}");
    assert!(stdout.contains("rejected 3 line(s)"), "{stdout}");

    let mut expected: Vec<(String, i64)> = (1..=50)
        .filter(|i| ![10, 20, 30, 40].contains(i))
        .map(|i| (format!("p-{i:04}"), i as i64))
        .collect();
    expected.sort();
    assert_eq!(published_ids(&topic), expected);
}

#[test]
fn unreachable_broker_fails_within_the_timeout_naming_the_address() {
    let file = write_lines(&[good_line(1)]);
    let (out, elapsed) = publish(
        &[
            "--brokers",
            "127.0.0.1:1",
            "--timeout",
            "2s",
            file.path().to_str().unwrap(),
        ],
        None,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(stderr.contains("127.0.0.1:1"), "stderr: {stderr}");
    assert!(elapsed < Duration::from_secs(6), "took {elapsed:?}");
}

#[test]
fn missing_topic_without_create_topic_is_a_clear_error() {
    let topic = fresh_topic("cli-missing");
    let file = write_lines(&[good_line(1)]);
    let (out, _) = publish(&["--topic", &topic, file.path().to_str().unwrap()], None);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(stderr.contains("--create-topic"), "{stderr}");
}

#[test]
fn stdin_input_with_generated_ids_and_timestamps() {
    let topic = fresh_topic("cli-stdin");
    let input = concat!(
        r#"{"entity_type":"product","entity_id":"p-1","op":"UPSERT","version":1,"document":{"a":1},"invalidate":["search:category:lamps"]}"#,
        "\n",
        r#"{"entity_type":"product","entity_id":"p-1","op":"DELETE","version":2}"#,
        "\n"
    );
    let before = syncline_event::model::now_micros();
    let (out, _) = publish(
        &[
            "--topic",
            &topic,
            "--create-topic",
            "--partitions",
            "1",
            "--source",
            "stdin-test",
            "--traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "-",
        ],
        Some(input),
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let records = read_topic(&topic);
    assert_eq!(records.len(), 2);
    let events: Vec<_> = records
        .iter()
        .map(|r| syncline_event::decode(&r.value, &Limits::default()).unwrap())
        .collect();
    assert_eq!(events[0].op, Op::Upsert);
    assert_eq!(events[0].document.as_deref(), Some(r#"{"a":1}"#));
    assert_eq!(
        events[0].invalidate,
        vec!["search:category:lamps".to_string()]
    );
    assert_eq!(events[1].op, Op::Delete);
    for (e, r) in events.iter().zip(&records) {
        assert_eq!(e.source, "stdin-test");
        assert!(e.occurred_at >= before);
        let id = uuid::Uuid::parse_str(&e.event_id).unwrap();
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(r.key, "product:p-1");
        assert!(r.headers["traceparent"].starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    }
    assert_ne!(events[0].event_id, events[1].event_id);
}

#[test]
fn the_sample_catalogue_publishes_cleanly() {
    let topic = fresh_topic("cli-catalog");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/catalog.jsonl");
    let lines = std::fs::read_to_string(path)
        .expect("examples/catalog.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    let (out, _) = publish(&["--topic", &topic, "--create-topic", path], None);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("published {lines} event(s)")),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(count_records(&topic), lines as i64);
}

#[test]
fn usage_errors_exit_2() {
    let (out, _) = publish(&["--compression", "brotli", "-"], Some(""));
    assert_eq!(out.status.code(), Some(2));
    let (out, _) = publish(&["-X", "enable.idempotence=false", "-"], Some(""));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("enable.idempotence"));
}

#[test]
fn an_overlong_line_is_rejected_without_being_buffered() {
    let topic = fresh_topic("cli-overlong");
    let huge = format!(
        r#"{{"entity_type":"product","entity_id":"p-2","op":"UPSERT","version":2,"document":{{"d":"{}"}}}}"#,
        "x".repeat(1_200_000)
    );
    let file = write_lines(&[good_line(1), huge, good_line(3)]);
    let (out, _) = publish(
        &[
            "--topic",
            &topic,
            "--create-topic",
            "--skip-invalid",
            "--max-document-bytes",
            "1000",
            file.path().to_str().unwrap(),
        ],
        None,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.contains("line 2: line is"), "{stderr}");
    let ids: Vec<String> = published_ids(&topic)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, vec!["p-0001".to_string(), "p-0003".to_string()]);
}

#[test]
fn a_delivery_that_fails_exits_4_naming_its_line() {
    // A broker of the test's own, killed between two lines: the second line can never be
    // acknowledged, and the CLI must say which line that was.
    let mut broker = PrivateBroker::start();
    let topic = fresh_topic("cli-delivery");
    let mut child = Command::new(BIN)
        .args(["--brokers", &broker.brokers(), "--topic", &topic])
        .args([
            "--create-topic",
            "--timeout",
            "3s",
            "--progress",
            "none",
            "-",
        ])
        .env_remove("TRACEPARENT")
        .env_remove("SYNCLINE_KAFKA")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn syncline-publish");
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", good_line(1)).unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_records_on(&broker.brokers(), &topic) < 1 {
        assert!(Instant::now() < deadline, "line 1 never reached the broker");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Stored is not yet acknowledged: give the produce response time to arrive.
    std::thread::sleep(Duration::from_secs(1));
    broker.kill();
    writeln!(stdin, "{}", good_line(2)).unwrap();
    drop(stdin);

    let out = child.wait_with_output().expect("wait");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(4),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stderr.contains("line 2"), "stderr: {stderr}");
    assert!(!stderr.contains("line 1"), "stderr: {stderr}");
    assert!(stdout.contains("published 1 event"), "stdout: {stdout}");
}
