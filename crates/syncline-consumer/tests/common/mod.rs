//! Shared pieces of the runtime's integration tests: an in-memory, version-guarded test
//! sink with a programmable failure plan (the sink is our own trait, not a wire protocol,
//! so this is no mock of Kafka), and helpers around the real broker.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use syncline_consumer::{Outcome, RuntimeConfig, Sink};
use syncline_event::{EventRef, Op};
use syncline_testkit::{committed_offsets, end_offsets, kafka_brokers, wait_until, Oracle};

/// (entity_type, entity_id).
pub type Key = (String, String);

/// What the sink holds per entity: version and document (`None` after a delete; the
/// version stays as a tombstone so an older upsert cannot resurrect it).
pub type State = HashMap<Key, (i64, Option<String>)>;

/// How the test sink misbehaves.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    /// Events (by key and version) whose first `n` attempts return `Retry`: chosen when
    /// `hash(key, version) % fail_one_in == 0`.
    pub fail_one_in: Option<u64>,
    /// How many attempts of a chosen event fail.
    pub fail_attempts: u32,
    /// Entity ids the sink rejects permanently (`DeadLetter`, class `test_rejected`).
    pub reject_ids: HashSet<String>,
    /// Entity ids that always return `Retry`.
    pub always_fail_ids: HashSet<String>,
    /// Entity ids that make the sink panic (a sink bug).
    pub panic_ids: HashSet<String>,
}

/// In-memory, version-guarded store.
#[derive(Debug, Default)]
pub struct TestSink {
    pub state: Mutex<State>,
    plan: Plan,
    attempts: Mutex<HashMap<(Key, i64), u32>>,
    pub calls: AtomicU64,
    pub retries_returned: AtomicU64,
}

impl TestSink {
    pub fn new(plan: Plan) -> Arc<Self> {
        Arc::new(TestSink {
            plan,
            ..TestSink::default()
        })
    }

    fn chosen(&self, e: &EventRef<'_>) -> bool {
        let Some(n) = self.plan.fail_one_in else {
            return false;
        };
        // FNV-1a: stable across runs, unlike the std hasher.
        let mut h: u64 = 0xcbf29ce484222325;
        for b in e
            .entity_id
            .bytes()
            .chain(e.version.to_le_bytes().iter().copied())
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
        h.checked_rem(n) == Some(0)
    }

    pub fn snapshot(&self) -> State {
        self.state.lock().clone()
    }
}

/// A cheap handle so the same store can outlive several runtimes (rebalance test).
#[derive(Debug, Clone)]
pub struct Shared(pub Arc<TestSink>);

impl Sink for Shared {
    fn name(&self) -> &'static str {
        "test"
    }

    async fn apply(&self, batch: &[EventRef<'_>]) -> Vec<Outcome> {
        let s = &self.0;
        s.calls.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::with_capacity(batch.len());
        let mut keys = HashSet::new();
        for e in batch {
            let key = (e.entity_type.to_owned(), e.entity_id.to_owned());
            assert!(
                keys.insert(key.clone()),
                "runtime must coalesce to one event per key"
            );
            if s.plan.reject_ids.contains(e.entity_id) {
                out.push(Outcome::DeadLetter {
                    class: "test_rejected".into(),
                    reason: format!("{} is on the reject list", e.entity_id),
                });
                continue;
            }
            if s.plan.panic_ids.contains(e.entity_id) {
                panic!("test sink panics on {}", e.entity_id);
            }
            if s.plan.always_fail_ids.contains(e.entity_id) {
                s.retries_returned.fetch_add(1, Ordering::Relaxed);
                out.push(Outcome::Retry {
                    reason: "always fails".into(),
                });
                continue;
            }
            if self.0.chosen(e) {
                let mut attempts = s.attempts.lock();
                let n = attempts.entry((key.clone(), e.version)).or_insert(0);
                *n += 1;
                if *n <= s.plan.fail_attempts {
                    s.retries_returned.fetch_add(1, Ordering::Relaxed);
                    out.push(Outcome::Retry {
                        reason: format!("planned failure {n}"),
                    });
                    continue;
                }
            }
            let mut state = s.state.lock();
            let doc = match e.op {
                Op::Upsert => e.document.map(str::to_owned),
                Op::Delete => None,
            };
            match state.get(&key) {
                Some((v, _)) if *v >= e.version => out.push(Outcome::Stale),
                _ => {
                    state.insert(key, (e.version, doc));
                    out.push(Outcome::Applied);
                }
            }
        }
        // Let other tasks run, as a real network sink would.
        tokio::task::yield_now().await;
        out
    }
}

/// Runtime settings for tests: the test broker, Tansu's timeouts, fast linger/backoff,
/// no metrics server.
pub fn test_config(topic: &str, group: &str) -> RuntimeConfig {
    RuntimeConfig {
        brokers: kafka_brokers(),
        topic: topic.to_owned(),
        group_id: group.to_owned(),
        metrics_addr: None,
        batch_max_events: 500,
        batch_linger: Duration::from_millis(20),
        retry_initial_backoff: Duration::from_millis(20),
        retry_max_backoff: Duration::from_millis(300),
        commit_interval: Duration::from_millis(200),
        shutdown_timeout: Duration::from_secs(10),
        kafka: syncline_testkit::consumer_kafka_props("")
            .into_iter()
            .collect::<syncline_kafka::KafkaProperties>(),
        ..RuntimeConfig::default()
    }
}

/// Wait until the group's committed offsets equal the topic's end offsets.
pub async fn wait_committed_to_end(group: &str, topic: &str, timeout: Duration) {
    let brokers = kafka_brokers();
    let end = end_offsets(&brokers, topic).await.expect("end offsets");
    let r = wait_until(timeout, Duration::from_millis(250), || {
        let (brokers, end) = (brokers.clone(), end.clone());
        async move {
            let committed = committed_offsets(&brokers, group, topic)
                .await
                .map_err(|e| e.to_string())?;
            let caught_up = committed
                .iter()
                .zip(&end)
                .all(|(c, e)| *e == 0 || *c == Some(*e));
            if caught_up {
                Ok(())
            } else {
                Err(format!("committed {committed:?}, end {end:?}"))
            }
        }
    })
    .await;
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// Assert the sink's state is exactly the oracle.
pub fn assert_matches_oracle(state: &State, oracle: &Oracle) {
    let mut wrong = Vec::new();
    for (key, exp) in oracle {
        match state.get(key) {
            Some((v, doc)) if *v == exp.version && *doc == exp.document => {}
            other => wrong.push(format!(
                "{key:?}: expected v{} ({}), got {:?}",
                exp.version,
                if exp.document.is_some() {
                    "doc"
                } else {
                    "deleted"
                },
                other.map(|(v, d)| (v, d.is_some()))
            )),
        }
    }
    for key in state.keys() {
        if !oracle.contains_key(key) {
            wrong.push(format!("{key:?}: not in the oracle"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} keys differ from the oracle, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
}
