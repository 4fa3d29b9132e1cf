//! `syncline-ctl dlq` against the real broker and the real consumer runtime.
//!
//! Scenario: a consumer configured with a small `max_document_bytes` dead-letters oversized
//! documents (class `document_too_large`, a config-driven class whose fix is a setting),
//! and two groups share the dead-letter topic so every poison record is dead-lettered
//! twice. After the "fix" (the consumer restarted with the default limit) a redrive
//! republishes each source record once, the fixed consumer applies them exactly as if they
//! had been valid, and a second redrive is a no-op. A first, partial redrive (one letter
//! picked by position) stands in for a redrive killed half-way: the full redrive after it
//! republishes only the rest.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ctl, text};
use rdkafka::message::{Headers, Message};
use syncline_consumer::{run, Outcome, RuntimeConfig, Sink};
use syncline_event::{encode, ChangeEvent, EventRef, Limits, Op};
use syncline_testkit::*;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn ok(args: &[&str]) -> String {
    let out = ctl(args);
    assert_eq!(out.status.code(), Some(0), "{args:?}\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A version-guarded in-memory store: what a sink would hold. (Our own trait, no wire
/// protocol.)
/// Entity key -> (version, document; `None` after a delete).
type Store = HashMap<String, (i64, Option<String>)>;

#[derive(Clone, Default)]
struct MemorySink(Arc<Mutex<Store>>);

impl Sink for MemorySink {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn apply(&self, batch: &[EventRef<'_>]) -> Vec<Outcome> {
        let Ok(mut state) = self.0.lock() else {
            return vec![
                Outcome::Retry {
                    reason: "poisoned".into()
                };
                batch.len()
            ];
        };
        batch
            .iter()
            .map(|e| match state.get(&e.key()) {
                Some((v, _)) if *v >= e.version => Outcome::Stale,
                _ => {
                    let doc = match e.op {
                        Op::Upsert => e.document.map(str::to_owned),
                        Op::Delete => None,
                    };
                    state.insert(e.key(), (e.version, doc));
                    Outcome::Applied
                }
            })
            .collect()
    }
}

impl MemorySink {
    fn snapshot(&self) -> Store {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn config(topic: &str, group: &str, max_document_bytes: usize) -> RuntimeConfig {
    RuntimeConfig {
        brokers: kafka_brokers(),
        topic: topic.to_owned(),
        group_id: group.to_owned(),
        metrics_addr: None,
        batch_linger: Duration::from_millis(20),
        retry_initial_backoff: Duration::from_millis(20),
        retry_max_backoff: Duration::from_millis(300),
        commit_interval: Duration::from_millis(200),
        shutdown_timeout: Duration::from_secs(10),
        max_document_bytes,
        kafka: consumer_kafka_props("")
            .into_iter()
            .collect::<BTreeMap<_, _>>()
            .into(),
        ..RuntimeConfig::default()
    }
}

struct Running {
    token: CancellationToken,
    task: JoinHandle<Result<(), syncline_consumer::runtime::RuntimeError>>,
}

fn start(cfg: RuntimeConfig, sink: MemorySink) -> Running {
    let token = CancellationToken::new();
    let task = tokio::spawn(run(cfg, sink, token.clone()));
    Running { token, task }
}

impl Running {
    async fn stop(self) {
        self.token.cancel();
        let r = tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("runtime stops")
            .expect("runtime task");
        assert!(r.is_ok(), "{r:?}");
    }
}

async fn wait_caught_up(group: &str, topic: &str) {
    syncline_testkit::wait_group_caught_up(
        &kafka_brokers(),
        group,
        topic,
        Duration::from_secs(120),
    )
    .await
    .expect("group caught up");
}

async fn dlq_count(dlq: &str) -> i64 {
    end_offsets(&kafka_brokers(), dlq)
        .await
        .expect("dlq ends")
        .iter()
        .sum()
}

/// The redrive summary's first number ("redriven N, ...").
fn redriven(stdout: &str) -> usize {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("redriven "))
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no redrive summary in {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redriven_dead_letters_are_applied_once_after_the_fix() {
    let brokers = kafka_brokers();
    let topic = unique_name("ctl-dlq");
    let dlq = format!("{topic}.dlq");
    let (g1, g2) = (unique_name("ctl-dlq-a"), unique_name("ctl-dlq-b"));
    create_topic_with_dlq(&brokers, &topic, 2)
        .await
        .expect("topics");

    // 20 valid events, 4 documents over the first consumer's 1000-byte limit, and one
    // record that is not Avro at all (no fix makes it valid).
    let mut events = Vec::new();
    for i in 0..20 {
        events.push(ChangeEvent::new(
            "item",
            format!("ok{i}"),
            Op::Upsert,
            1,
            "test",
            Some(format!("{{\"n\":{i}}}")),
        ));
    }
    let mut big = Vec::new();
    for i in 0..4 {
        big.push(ChangeEvent::new(
            "item",
            format!("big{i}"),
            Op::Upsert,
            3,
            "test",
            Some(format!("{{\"pad\":\"{}\"}}", "x".repeat(3000 + i))),
        ));
    }
    let limits = Limits::default();
    let mut records: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for e in events.iter().chain(&big) {
        records.push((e.key().into_bytes(), encode(e, &limits).expect("encode")));
    }
    records.push((b"item:junk".to_vec(), b"not avro".to_vec()));
    publish_raw(&brokers, &topic, records)
        .await
        .expect("publish");

    // Two groups with the small limit, both dead-lettering into the same DLQ.
    let (old_a, old_b) = (MemorySink::default(), MemorySink::default());
    let a = start(config(&topic, &g1, 1000), old_a.clone());
    let b = start(config(&topic, &g2, 1000), old_b.clone());
    wait_caught_up(&g1, &topic).await;
    wait_caught_up(&g2, &topic).await;
    a.stop().await;
    b.stop().await;
    assert_eq!(old_a.snapshot().len(), 20, "only the valid events applied");
    assert_eq!(dlq_count(&dlq).await, 10, "5 poison records x 2 groups");

    // list / summary / show.
    let listed = ok(&["dlq", "list", "--dlq-topic", &dlq]);
    assert!(listed.contains("10 dead letter(s)"), "{listed}");
    assert_eq!(listed.matches("document_too_large").count(), 8, "{listed}");
    let json = ok(&["dlq", "summary", "--dlq-topic", &dlq, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("summary json");
    assert_eq!(v["total"], 10, "{v}");
    assert_eq!(v["distinct_source_records"], 5, "{v}");
    assert_eq!(v["by_class"]["document_too_large"], 8, "{v}");
    assert_eq!(v["by_class"]["bad_magic"], 2, "{v}");
    assert_eq!(v["by_group"][&g1], 5, "{v}");
    let only_g1 = ok(&[
        "dlq",
        "list",
        "--dlq-topic",
        &dlq,
        "--group",
        &g1,
        "--class",
        "bad_magic",
        "--json",
    ]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&only_g1).expect("list json");
    assert_eq!(rows.len(), 1, "{only_g1}");
    assert_eq!(rows[0]["source_topic"], topic.as_str());
    let first = rows[0]["offset"].as_i64().expect("offset").to_string();
    let shown = ok(&[
        "dlq",
        "show",
        "--dlq-topic",
        &dlq,
        "--partition",
        "0",
        "--offset",
        &first,
    ]);
    assert!(
        shown.contains("syncline.error.class: \"bad_magic\""),
        "{shown}"
    );
    assert!(shown.contains("key: \"item:junk\""), "{shown}");
    assert!(
        shown.contains("does not decode as a change event (bad_magic)"),
        "{shown}"
    );
    let future = ok(&[
        "dlq",
        "list",
        "--dlq-topic",
        &dlq,
        "--since",
        "2999-01-01T00:00:00Z",
    ]);
    assert!(future.contains("0 dead letter(s)"), "{future}");

    // Dry run: the plan, nothing published.
    let ends_before = end_offsets(&brokers, &topic).await.expect("ends");
    let plan = ok(&[
        "dlq",
        "redrive",
        "--dlq-topic",
        &dlq,
        "--class",
        "document_too_large",
    ]);
    assert!(
        plan.contains("dry run: 4 to republish, 0 already redriven, 4 duplicate(s)"),
        "{plan}"
    );
    assert_eq!(
        end_offsets(&brokers, &topic).await.expect("ends"),
        ends_before
    );

    // The fix: the same group, restarted with the default document limit.
    let fixed = MemorySink(old_a.0.clone());
    let a = start(config(&topic, &g1, 1024 * 1024), fixed.clone());

    // A partial redrive first (one letter by position), as if a redrive died after it.
    let letters: Vec<serde_json::Value> = serde_json::from_str(&ok(&[
        "dlq",
        "list",
        "--dlq-topic",
        &dlq,
        "--class",
        "document_too_large",
        "--json",
    ]))
    .expect("list json");
    let one = letters[0]["offset"].as_i64().expect("offset").to_string();
    let out = ok(&[
        "dlq",
        "redrive",
        "--dlq-topic",
        &dlq,
        "--partition",
        "0",
        "--offset",
        &one,
        "--execute",
    ]);
    assert_eq!(redriven(&out), 1, "{out}");

    let out = ok(&[
        "dlq",
        "redrive",
        "--dlq-topic",
        &dlq,
        "--class",
        "document_too_large",
        "--execute",
    ]);
    assert_eq!(redriven(&out), 3, "{out}");
    // The picked letter and the other group's copy of the same source record.
    assert!(
        out.contains("redriven 3, 2 already redriven, 3 duplicate(s)"),
        "{out}"
    );
    let ends_after: i64 = end_offsets(&brokers, &topic)
        .await
        .expect("ends")
        .iter()
        .sum();
    assert_eq!(ends_after, ends_before.iter().sum::<i64>() + 4);

    // Applied exactly as if they had been valid.
    wait_caught_up(&g1, &topic).await;
    let state = fixed.snapshot();
    assert_eq!(state.len(), 24, "20 valid + 4 redriven");
    for e in &big {
        assert_eq!(
            state.get(&e.key()),
            Some(&(3, e.document.clone())),
            "{}",
            e.key()
        );
    }

    // The second redrive is a no-op.
    let out = ok(&[
        "dlq",
        "redrive",
        "--dlq-topic",
        &dlq,
        "--class",
        "document_too_large",
        "--execute",
    ]);
    assert_eq!(redriven(&out), 0, "{out}");
    assert!(out.contains("redriven 0, 8 already redriven"), "{out}");
    let again: i64 = end_offsets(&brokers, &topic)
        .await
        .expect("ends")
        .iter()
        .sum();
    assert_eq!(again, ends_after);

    // The republished records: original key and bytes, marker headers, no DLQ headers.
    let all = read_all(
        &brokers,
        &topic,
        ends_after as usize,
        Duration::from_secs(60),
    )
    .await
    .expect("read back");
    let originals: HashMap<Vec<u8>, Vec<u8>> = big
        .iter()
        .map(|e| (e.key().into_bytes(), encode(e, &limits).expect("encode")))
        .collect();
    let mut republished = 0;
    for m in &all {
        let headers: HashMap<String, String> = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let Some(source) = headers.get("syncline.redriven.source") else {
            continue;
        };
        republished += 1;
        assert!(source.starts_with(&format!("{topic}:")), "{source}");
        assert!(headers["syncline.redriven.from"].starts_with(&format!("{dlq}:0:")));
        assert!(!headers.contains_key("syncline.error.class"), "{headers:?}");
        let key = m.key().expect("key").to_vec();
        assert_eq!(
            m.payload().map(<[u8]>::to_vec),
            originals.get(&key).cloned()
        );
        let source_partition: i32 = source
            .split(':')
            .nth(1)
            .and_then(|p| p.parse().ok())
            .expect("partition");
        assert_eq!(
            m.partition(),
            source_partition,
            "back to its source partition"
        );
    }
    assert_eq!(republished, 4);
    a.stop().await;
}
