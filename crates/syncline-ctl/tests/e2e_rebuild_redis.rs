//! `syncline-ctl rebuild redis` against the real broker, the real Redis and the real
//! `syncline-redis-invalidator` binary: the generation switch under live traffic.
//!
//! * invalidate mode: a publisher keeps updating a system of record (an in-memory map)
//!   and publishing the events; the live invalidator applies them; readers hammer the
//!   cache through `Cache::get_or_load`, whose loader stamps each document with the time it
//!   was loaded. Every hit of a read that started after the switch was observed must have
//!   been loaded after the command started (no entry from before the switch). The cleanup
//!   is SIGKILLed halfway and rerun: it continues without switching again, and every key
//!   of generation 0 ends up gone. Afterwards every cached entry is the record's version.
//! * refresh mode: generation 0 holds entries the topic never produced (stale documents,
//!   entities that do not exist); the rebuild warms generation 1 by replaying the topic,
//!   switches under live traffic, and no reader sees those entries after the switch; the
//!   new generation equals the topic's oracle.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use syncline_cache::{Cache, Entry, KeyLayout, Origin, Ttls};
use syncline_event::{ChangeEvent, Op};
use syncline_testkit::{create_topic, publish_events, unique_name, wait_until, ChildGuard};

const DEADLINE: Duration = Duration::from_secs(180);
const KEYS: usize = 1_500;
const TYPE: &str = "product";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn kafka_env() -> String {
    syncline_testkit::consumer_kafka_props("")
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

struct Setup {
    brokers: String,
    topic: String,
    live_group: String,
    redis_url: String,
    layout: KeyLayout,
}

impl Setup {
    async fn new(name: &str) -> Setup {
        let s = Setup {
            brokers: syncline_testkit::kafka_brokers(),
            topic: unique_name(&format!("rr-{name}")),
            live_group: unique_name(&format!("rr-{name}-live")),
            redis_url: syncline_testkit::redis_url(),
            layout: KeyLayout::new(format!("t:{}:", unique_name(&format!("rr-{name}"))))
                .expect("prefix"),
        };
        create_topic(&s.brokers, &s.topic, 2).await.expect("topic");
        s
    }

    fn spawn_invalidator(&self, bin: &Path, mode: &str) -> ChildGuard {
        let mut cmd = Command::new(bin);
        cmd.args(["--metrics-addr", "off"])
            .env("SYNCLINE_BROKERS", &self.brokers)
            .env("SYNCLINE_TOPIC", &self.topic)
            .env("SYNCLINE_GROUP_ID", &self.live_group)
            .env("SYNCLINE_KAFKA", kafka_env())
            .env("SYNCLINE_REDIS_URL", &self.redis_url)
            .env("SYNCLINE_REDIS_KEY_PREFIX", self.layout.prefix())
            .env("SYNCLINE_REDIS_MODE", mode)
            .env_remove("SYNCLINE_CONFIG")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        ChildGuard::spawn(&mut cmd).expect("spawn syncline-redis-invalidator")
    }

    fn rebuild_cmd(&self, mode: &str, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncline-ctl"));
        cmd.args(["--brokers", &self.brokers, "rebuild", "redis"])
            .args(["--topic", &self.topic, "--live-group", &self.live_group])
            .args(extra)
            .env("SYNCLINE_KAFKA", kafka_env())
            .env("SYNCLINE_REDIS_URL", &self.redis_url)
            .env("SYNCLINE_REDIS_KEY_PREFIX", self.layout.prefix())
            .env("SYNCLINE_REDIS_MODE", mode)
            .env_remove("SYNCLINE_CONFIG")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,rdkafka::client=off".into()),
            )
            .stdin(Stdio::null());
        cmd
    }

    async fn wait_drained(&self, group: &str) {
        syncline_testkit::wait_group_caught_up(&self.brokers, group, &self.topic, DEADLINE)
            .await
            .expect("group drained the topic");
    }
}

fn invalidator_bin() -> PathBuf {
    syncline_testkit::debug_binary(
        "syncline-redis-invalidator",
        "syncline-redis-invalidator",
        None,
    )
    .expect("build syncline-redis-invalidator")
}

async fn connect(url: &str) -> ConnectionManager {
    let client = redis::Client::open(url).expect("redis url");
    ConnectionManager::new(client).await.expect("redis")
}

async fn generation(conn: &mut ConnectionManager, layout: &KeyLayout) -> Option<u64> {
    conn.get(layout.generation_key())
        .await
        .expect("GET generation")
}

/// Keys of `generation` under `layout` (one full SCAN of its patterns).
async fn generation_keys(
    conn: &mut ConnectionManager,
    layout: &KeyLayout,
    generation: u64,
) -> Vec<String> {
    let mut out = Vec::new();
    for pattern in layout.generation_patterns(generation) {
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(conn)
                .await
                .expect("SCAN");
            out.extend(
                keys.into_iter()
                    .filter(|k| layout.is_generation_key(generation, k.as_bytes())),
            );
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    out
}

fn upsert(id: &str, version: i64, document: String) -> ChangeEvent {
    ChangeEvent::new(TYPE, id, Op::Upsert, version, "test", Some(document))
}

/// The system of record: each entity's current version.
type Db = Arc<Mutex<HashMap<String, i64>>>;

/// Keeps bumping random entities in `db` and publishing their events until `stop`, on
/// its own thread (the readers keep the test's runtime busy).
fn spawn_publisher(
    s: &Setup,
    db: Db,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
) -> std::thread::JoinHandle<usize> {
    let (brokers, topic) = (s.brokers.clone(), s.topic.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("publisher runtime");
    std::thread::spawn(move || {
        rt.block_on(async move {
            let mut published = 0;
            while !stop.load(Ordering::Relaxed) {
                let events: Vec<ChangeEvent> = {
                    let mut rng = rand::rng();
                    let mut db = db.lock().expect("db");
                    (0..40)
                        .map(|_| {
                            let id = format!("{}", rng.random_range(0..KEYS));
                            let v = db.entry(id.clone()).or_insert(0);
                            *v += 1;
                            upsert(&id, *v, format!("{{\"id\":\"{id}\",\"v\":{v}}}"))
                        })
                        .collect()
                };
                publish_events(&brokers, &topic, &events)
                    .await
                    .expect("publish");
                published += events.len();
                count.fetch_add(events.len() as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            published
        })
    })
}

/// Live traffic around a rebuild: the publisher bumping the system of record, the readers
/// the test adds, their statistics and the switch clock they check against.
struct Live {
    stop: Arc<AtomicBool>,
    published: Arc<AtomicU64>,
    publisher: std::thread::JoinHandle<usize>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    stats: Arc<ReadStats>,
    clock: Arc<SwitchClock>,
}

impl Live {
    /// Start publishing updates of `db`; the test adds its readers to `readers`.
    fn start(s: &Setup, db: Db) -> Live {
        let stop = Arc::new(AtomicBool::new(false));
        let published = Arc::new(AtomicU64::new(0));
        let publisher = spawn_publisher(s, db, stop.clone(), published.clone());
        Live {
            stop,
            published,
            publisher,
            readers: Vec::new(),
            stats: Arc::new(ReadStats::default()),
            clock: Arc::new(SwitchClock::default()),
        }
    }

    /// The test saw the switch: stamp the clock; returns the events published so far.
    fn switch_observed(&self) -> u64 {
        self.clock.observed.store(now_ms(), Ordering::Relaxed);
        self.published.load(Ordering::Relaxed)
    }

    /// Live traffic across the switch: wait until 80 more events were published after it,
    /// stop the publisher and the readers, and wait until the live invalidator applied
    /// every event. Returns how many events were published in all.
    async fn finish(self, s: &Setup, published_at_switch: u64) -> usize {
        let published_count = &self.published;
        wait_until(DEADLINE, Duration::from_millis(100), || {
            let n = published_count.load(Ordering::Relaxed);
            async move {
                if n >= published_at_switch + 80 {
                    Ok(())
                } else {
                    Err(format!(
                        "{n} events published, {published_at_switch} at the switch"
                    ))
                }
            }
        })
        .await
        .expect("events published after the switch");
        self.stop.store(true, Ordering::Relaxed);
        let published = self.publisher.join().expect("publisher");
        for r in self.readers {
            r.await.expect("reader");
        }
        s.wait_drained(&s.live_group).await;
        published
    }
}

/// Every entity at version 1, published: the system of record the tests start from.
async fn seed_version_1(s: &Setup) -> Db {
    let first_versions: Vec<ChangeEvent> = (0..KEYS)
        .map(|i| upsert(&i.to_string(), 1, format!("{{\"id\":\"{i}\",\"v\":1}}")))
        .collect();
    publish_events(&s.brokers, &s.topic, &first_versions)
        .await
        .expect("publish");
    Arc::new(Mutex::new((0..KEYS).map(|i| (i.to_string(), 1)).collect()))
}

/// Wait until the prefix's generation is 1 (`what` names the step in the failure).
async fn wait_generation_1(conn: &ConnectionManager, layout: &KeyLayout, what: &str) {
    wait_until(DEADLINE, Duration::from_millis(20), || {
        let mut conn = conn.clone();
        let layout = layout.clone();
        async move {
            match generation(&mut conn, &layout).await {
                Some(1) => Ok(()),
                g => Err(format!("generation {g:?}")),
            }
        }
    })
    .await
    .expect(what);
}

/// Two readers of plain `Cache::get` over the entities and the ghosts that
/// [`corrupt_generation_0`] planted. A bad entry read before the switch is counted in the
/// returned counter (the oracle can fail); one read after it is a violation.
fn spawn_bad_entry_readers(
    live: &mut Live,
    conn: &ConnectionManager,
    layout: &KeyLayout,
) -> Arc<AtomicU64> {
    let bad_before = Arc::new(AtomicU64::new(0));
    for _ in 0..2 {
        let cache = Cache::new(conn.clone(), layout.clone(), Ttls::default());
        let (stop, stats, clock, bad_before) = (
            live.stop.clone(),
            live.stats.clone(),
            live.clock.clone(),
            bad_before.clone(),
        );
        live.readers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = rand::rng().random_range(0..KEYS + 200);
                let id = if n < KEYS {
                    n.to_string()
                } else {
                    format!("ghost-{}", n - KEYS)
                };
                let started = now_ms();
                let got = cache.get(TYPE, &id).await.expect("cache read");
                stats.reads.fetch_add(1, Ordering::Relaxed);
                let Some(entry) = got else { continue };
                stats.hits.fetch_add(1, Ordering::Relaxed);
                let bad = entry.document.contains("bad");
                let observed = clock.observed.load(Ordering::Relaxed);
                if observed == 0 || started < observed {
                    if bad {
                        bad_before.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                stats.hits_after_switch.fetch_add(1, Ordering::Relaxed);
                if bad {
                    stats.violations.lock().expect("violations").push(format!(
                        "{id}: read at {started} (switch seen at {observed}) returned {:?}",
                        entry.document
                    ));
                }
            }
        }));
    }
    bad_before
}

/// Wait until the readers have seen generation 0's bad entries, so their oracle can fail.
async fn wait_bad_reads(bad_before: &AtomicU64) {
    wait_until(DEADLINE, Duration::from_millis(100), || {
        let n = bad_before.load(Ordering::Relaxed);
        async move {
            if n >= 20 {
                Ok(())
            } else {
                Err(format!("{n} bad reads"))
            }
        }
    })
    .await
    .expect("readers see generation 0's bad entries");
}

#[derive(Default)]
struct ReadStats {
    reads: AtomicU64,
    hits: AtomicU64,
    hits_after_switch: AtomicU64,
    violations: Mutex<Vec<String>>,
}

/// After a refresh rebuild under live traffic: no read got a generation-0 entry after the
/// switch (and some reads hit), the new generation is the topic's state (every entity at
/// its last version, no ghost), and nothing is left in generation 0.
async fn assert_refreshed_after_switch(
    s: &Setup,
    stats: &ReadStats,
    db: &Db,
    conn: &mut ConnectionManager,
) {
    let violations = stats.violations.lock().expect("violations").clone();
    assert!(
        violations.is_empty(),
        "{} reads returned a generation-0 entry after the switch, first: {:#?}",
        violations.len(),
        &violations[..violations.len().min(5)]
    );
    assert!(stats.hits_after_switch.load(Ordering::Relaxed) > 0);
    let cache = Cache::new(conn.clone(), s.layout.clone(), Ttls::default());
    let db = db.lock().expect("db").clone();
    for (id, v) in &db {
        let e = cache.get(TYPE, id).await.expect("get");
        let want = format!("{{\"id\":\"{id}\",\"v\":{v}}}");
        assert_eq!(e.map(|e| (e.version, e.document)), Some((*v, want)), "{id}");
    }
    for i in 0..200 {
        let ghost = cache.get(TYPE, &format!("ghost-{i}")).await.expect("get");
        assert_eq!(ghost, None);
    }
    assert!(generation_keys(conn, &s.layout, 0).await.is_empty());
}

/// The test's generation-switch oracle shared with the readers: when the command was
/// launched (before its switch) and when the test saw the switch (after it), in ms.
#[derive(Default)]
struct SwitchClock {
    launched: AtomicU64,
    observed: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_under_live_traffic_hides_every_entry_from_before_it() {
    let bin = invalidator_bin();
    let s = Setup::new("inv").await;
    let mut conn = connect(&s.redis_url).await;
    // Every entity exists from the start (version 1), so every read can load and cache.
    let db = seed_version_1(&s).await;
    let _invalidator = s.spawn_invalidator(&bin, "invalidate");
    let mut live = Live::start(&s, db.clone());
    let (stats, clock) = (live.stats.clone(), live.clock.clone());
    for _ in 0..3 {
        let cache = Cache::new(conn.clone(), s.layout.clone(), Ttls::default());
        let (db, stop, stats, clock) =
            (db.clone(), live.stop.clone(), stats.clone(), clock.clone());
        live.readers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let id = format!("{}", rand::rng().random_range(0..KEYS));
                let started = now_ms();
                let loader = || async {
                    let v = db.lock().expect("db").get(&id).copied();
                    Ok::<_, Infallible>(v.map(|version| Entry {
                        version,
                        document: format!("{{\"loaded_at\":{}}}", now_ms()),
                    }))
                };
                let got = cache
                    .get_or_load(TYPE, &id, loader)
                    .await
                    .expect("cache read");
                stats.reads.fetch_add(1, Ordering::Relaxed);
                let Some(lookup) = got else { continue };
                if lookup.origin != Origin::Hit {
                    continue;
                }
                stats.hits.fetch_add(1, Ordering::Relaxed);
                let observed = clock.observed.load(Ordering::Relaxed);
                if observed == 0 || started < observed {
                    continue;
                }
                stats.hits_after_switch.fetch_add(1, Ordering::Relaxed);
                let doc: serde_json::Value =
                    serde_json::from_str(&lookup.entry.document).expect("document");
                let loaded_at = doc["loaded_at"].as_u64().unwrap_or(0);
                let launched = clock.launched.load(Ordering::Relaxed);
                if loaded_at < launched {
                    stats.violations.lock().expect("violations").push(format!(
                        "{id}: read at {started} (switch seen at {observed}) returned v{} \
                         loaded at {loaded_at}, before the rebuild started at {launched}",
                        lookup.entry.version
                    ));
                }
            }
        }));
    }

    // Generation 0, no generation key: the layout from before generations. The cache fills.
    wait_until(DEADLINE, Duration::from_millis(200), || {
        let hits = stats.hits.load(Ordering::Relaxed);
        async move {
            if hits >= 3_000 {
                Ok(())
            } else {
                Err(format!("{hits} hits"))
            }
        }
    })
    .await
    .expect("readers warm generation 0");
    assert_eq!(generation(&mut conn, &s.layout).await, None);
    let old_keys = generation_keys(&mut conn, &s.layout, 0).await.len();
    assert!(old_keys > 500, "generation 0 holds {old_keys} keys");

    // Slow cleanup so that it can be killed halfway.
    clock.launched.store(now_ms(), Ordering::Relaxed);
    let mut first = ChildGuard::spawn(&mut s.rebuild_cmd(
        "invalidate",
        &["--keys-per-second", "200", "--scan-count", "50"],
    ))
    .expect("spawn rebuild");
    wait_generation_1(&conn, &s.layout, "the rebuild switches to generation 1").await;
    let published_at_switch = live.switch_observed();

    let state_key = s.layout.rebuild_state_key();
    wait_until(DEADLINE, Duration::from_millis(100), || {
        let mut conn = conn.clone();
        let key = state_key.clone();
        async move {
            let n: Option<u64> = conn
                .hget(&key, "unlinked")
                .await
                .map_err(|e| e.to_string())?;
            match n {
                Some(n) if n >= 100 => Ok(()),
                n => Err(format!("unlinked {n:?}")),
            }
        }
    })
    .await
    .expect("the cleanup makes progress");
    first.kill();

    // Killed halfway: old entries are still in Redis, and a reader that ignored the
    // generation would get them (this is what the readers' oracle catches).
    let left = generation_keys(&mut conn, &s.layout, 0).await;
    assert!(
        !left.is_empty(),
        "the cleanup finished before it was killed"
    );
    let mut stale_seen = false;
    for key in left.iter().filter(|k| !k.ends_with(":v")).take(50) {
        let raw: Option<String> = conn.get(key).await.expect("GET");
        if let Some(raw) = raw {
            let doc = raw.split_once('\n').map(|(_, d)| d).unwrap_or_default();
            let doc: serde_json::Value = serde_json::from_str(doc).expect("doc");
            stale_seen |= doc["loaded_at"].as_u64().unwrap_or(u64::MAX)
                < clock.launched.load(Ordering::Relaxed);
        }
    }
    assert!(
        stale_seen,
        "no pre-switch entry left to hide: the oracle would be vacuous"
    );

    // The rerun continues the cleanup: same generation, no second switch.
    let out = s
        .rebuild_cmd("invalidate", &["--keys-per-second", "50000"])
        .output()
        .expect("rerun");
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("continuing the unfinished rebuild of generation 0 -> 1"),
        "{text}"
    );
    assert!(text.contains("rebuilt into generation 1"), "{text}");
    assert_eq!(generation(&mut conn, &s.layout).await, Some(1));
    let exists: bool = conn.exists(&state_key).await.expect("EXISTS");
    assert!(!exists, "the rebuild state must be gone after success");
    let left = generation_keys(&mut conn, &s.layout, 0).await;
    assert!(
        left.is_empty(),
        "generation 0 keys left: {:?}",
        &left[..left.len().min(10)]
    );

    // Let the readers run on the new generation a little (condition, not time).
    let base = stats.hits_after_switch.load(Ordering::Relaxed);
    wait_until(DEADLINE, Duration::from_millis(200), || {
        let n = stats.hits_after_switch.load(Ordering::Relaxed);
        async move {
            if n >= base + 1_000 {
                Ok(())
            } else {
                Err(format!("{n} hits after the switch"))
            }
        }
    })
    .await
    .expect("readers hit the new generation");
    let published = live.finish(&s, published_at_switch).await;

    let violations = stats.violations.lock().expect("violations").clone();
    assert!(
        violations.is_empty(),
        "{} reads returned an entry from before the switch, first: {:#?}",
        violations.len(),
        &violations[..violations.len().min(5)]
    );
    // The invalidator followed the switch: with every event applied, any cached entry of
    // the new generation is the record's current version (an invalidator still writing
    // generation 0 would leave stale loads cached here).
    let cache = Cache::new(conn.clone(), s.layout.clone(), Ttls::default());
    let db = db.lock().expect("db").clone();
    let mut stale = Vec::new();
    for (id, v) in &db {
        if let Some(e) = cache.get(TYPE, id).await.expect("get") {
            if e.version != *v {
                stale.push(format!("{id}: cached v{}, record v{v}", e.version));
            }
        }
        let guard = cache.guard(TYPE, id).await.expect("guard");
        assert!(
            guard.is_none_or(|g| g <= *v),
            "{id}: guard {guard:?} above v{v}"
        );
    }
    assert!(
        stale.is_empty(),
        "stale entries: {:?}",
        &stale[..stale.len().min(10)]
    );
    eprintln!(
        "published {published}, reads {}, hits {}, hits after the switch {}",
        stats.reads.load(Ordering::Relaxed),
        stats.hits.load(Ordering::Relaxed),
        stats.hits_after_switch.load(Ordering::Relaxed)
    );
    let _ = syncline_cache::admin::purge_prefix(&mut conn, &s.layout).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_warms_the_next_generation_before_switching_to_it() {
    let bin = invalidator_bin();
    let s = Setup::new("refresh").await;
    let mut conn = connect(&s.redis_url).await;
    let db = seed_version_1(&s).await;
    let _invalidator = s.spawn_invalidator(&bin, "refresh");
    s.wait_drained(&s.live_group).await;

    corrupt_generation_0(&mut conn, &s.layout).await;

    let mut live = Live::start(&s, db.clone());
    let bad_before = spawn_bad_entry_readers(&mut live, &conn, &s.layout);
    let (stats, clock) = (live.stats.clone(), live.clock.clone());
    // The readers see the bad entries before the switch: the oracle can fail.
    wait_bad_reads(&bad_before).await;

    let dry = s
        .rebuild_cmd("refresh", &["--dry-run"])
        .output()
        .expect("dry run");
    let dry_text = common::text(&dry);
    assert_eq!(dry.status.code(), Some(0), "{dry_text}");
    assert!(dry_text.contains("would warm generation 1"), "{dry_text}");
    assert_eq!(
        generation(&mut conn, &s.layout).await,
        None,
        "a dry run changed the generation"
    );

    clock.launched.store(now_ms(), Ordering::Relaxed);
    let child = s
        .rebuild_cmd("refresh", &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rebuild");
    wait_generation_1(&conn, &s.layout, "the rebuild switches to generation 1").await;
    let published_at_switch = live.switch_observed();
    // Warmed before the switch: every entity already has a value in generation 1.
    let warmed = generation_keys(&mut conn, &s.layout, 1)
        .await
        .iter()
        .filter(|k| !k.ends_with(":v"))
        .count();
    assert!(
        warmed >= KEYS,
        "only {warmed} values in generation 1 at the switch"
    );

    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("rebuild output");
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("rebuilt into generation 1"), "{text}");

    let published = live.finish(&s, published_at_switch).await;
    assert_refreshed_after_switch(&s, &stats, &db, &mut conn).await;
    eprintln!(
        "published {published}, reads {}, hits after the switch {}",
        stats.reads.load(Ordering::Relaxed),
        stats.hits_after_switch.load(Ordering::Relaxed)
    );
    let _ = syncline_cache::admin::purge_prefix(&mut conn, &s.layout).await;
}

/// Writes entries into generation 0 that the topic never produced: wrong documents for
/// the first 200 entities and 200 entities that do not exist. The guards keep the
/// invalidator from repairing them; only a rebuild does.
async fn corrupt_generation_0(conn: &mut ConnectionManager, layout: &KeyLayout) {
    for i in 0..200 {
        let id = i.to_string();
        let _: () = conn
            .set(layout.cache_key(TYPE, &id), "1\n{\"bad\":true}")
            .await
            .expect("SET");
        let _: () = conn
            .set(
                layout.cache_key(TYPE, &format!("ghost-{i}")),
                "5\n{\"bad\":true}",
            )
            .await
            .expect("SET");
    }
}

/// Sum of `group`'s committed offsets on the setup's topic.
async fn committed_sum(s: &Setup, group: &str) -> i64 {
    syncline_testkit::committed_offsets(&s.brokers, group, &s.topic)
        .await
        .map(|c| c.iter().map(|o| o.unwrap_or(0)).sum())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rebuild_killed_while_warming_converges_on_rerun() {
    let bin = invalidator_bin();
    let s = Setup::new("warmkill").await;
    let mut conn = connect(&s.redis_url).await;
    let db = seed_version_1(&s).await;
    let _invalidator = s.spawn_invalidator(&bin, "refresh");
    s.wait_drained(&s.live_group).await;
    corrupt_generation_0(&mut conn, &s.layout).await;

    let mut live = Live::start(&s, db.clone());
    let bad_before = spawn_bad_entry_readers(&mut live, &conn, &s.layout);
    let stats = live.stats.clone();

    // A slow warm-up (rate-limited), killed once its replay has committed part of the
    // topic and before it switches.
    let mut first =
        ChildGuard::spawn(&mut s.rebuild_cmd("refresh", &["--events-per-second", "200"]))
            .expect("spawn rebuild");
    let state_key = s.layout.rebuild_state_key();
    let group = wait_until(DEADLINE, Duration::from_millis(50), || {
        let mut conn = conn.clone();
        let key = state_key.clone();
        let s = &s;
        async move {
            let (phase, group): (Option<String>, Option<String>) = redis::cmd("HMGET")
                .arg(&key)
                .arg("phase")
                .arg("group")
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            let (Some(phase), Some(group)) = (phase, group) else {
                return Err("no rebuild state yet".to_owned());
            };
            if phase != "warming" {
                return Err(format!("phase {phase}, expected warming"));
            }
            let done = committed_sum(s, &group).await;
            if done >= 200 {
                Ok(group)
            } else {
                Err(format!("warming group committed {done}"))
            }
        }
    })
    .await
    .expect("the warm-up makes progress");
    first.kill();
    let done_at_kill = committed_sum(&s, &group).await;
    let total: i64 = syncline_testkit::end_offsets(&s.brokers, &s.topic)
        .await
        .expect("end offsets")
        .iter()
        .sum();
    assert!(
        done_at_kill < total,
        "the warm-up finished ({done_at_kill} of {total}) before it was killed"
    );
    assert_eq!(
        generation(&mut conn, &s.layout).await,
        None,
        "killed while warming, yet the generation moved"
    );
    // Partly warmed, not switched: generation 1 has values nobody reads yet, and the bad
    // entries of generation 0 are still served (the oracle can fail).
    assert!(!generation_keys(&mut conn, &s.layout, 1).await.is_empty());
    wait_bad_reads(&bad_before).await;

    // The rerun continues the same warm-up (same group, from its committed offsets),
    // switches and finishes.
    let child = s
        .rebuild_cmd("refresh", &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rerun");
    wait_generation_1(&conn, &s.layout, "the rerun switches to generation 1").await;
    let published_at_switch = live.switch_observed();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("rerun output");
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("continuing the unfinished rebuild of generation 0 -> 1 (warming)"),
        "{text}"
    );
    assert!(text.contains(&format!("with group {group}")), "{text}");
    assert!(text.contains("rebuilt into generation 1"), "{text}");

    let _ = live.finish(&s, published_at_switch).await;
    assert_refreshed_after_switch(&s, &stats, &db, &mut conn).await;
    let exists: bool = conn.exists(&state_key).await.expect("EXISTS");
    assert!(!exists, "the rebuild state must be gone after success");
    let _ = syncline_cache::admin::purge_prefix(&mut conn, &s.layout).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_from_datetime_warms_only_later_events() {
    let s = Setup::new("from").await;
    let mut conn = connect(&s.redis_url).await;
    let early: Vec<ChangeEvent> = (0..100)
        .map(|i| upsert(&format!("early-{i}"), 1, "{\"when\":\"early\"}".into()))
        .collect();
    publish_events(&s.brokers, &s.topic, &early)
        .await
        .expect("publish");
    // Record timestamps have millisecond resolution: leave a gap on both sides of `from`.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let from_ms = now_ms();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let late: Vec<ChangeEvent> = (0..100)
        .map(|i| upsert(&format!("late-{i}"), 1, "{\"when\":\"late\"}".into()))
        .collect();
    publish_events(&s.brokers, &s.topic, &late)
        .await
        .expect("publish");
    let from = jiff::Timestamp::from_millisecond(i64::try_from(from_ms).expect("ms"))
        .expect("timestamp")
        .to_string();

    // Bad values and a mode without warming are refused before anything changes.
    let out = s
        .rebuild_cmd("refresh", &["--from", "yesterday"])
        .output()
        .expect("run");
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("expected `earliest` or an RFC 3339 time"),
        "{text}"
    );
    let out = s
        .rebuild_cmd("invalidate", &["--from", &from])
        .output()
        .expect("run");
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("--from applies to the warm-up replay only"),
        "{text}"
    );
    assert_eq!(generation(&mut conn, &s.layout).await, None);

    let out = s
        .rebuild_cmd("refresh", &["--from", &from])
        .output()
        .expect("run");
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("warming starts at"), "{text}");
    assert_eq!(generation(&mut conn, &s.layout).await, Some(1));
    let cache = Cache::new(conn.clone(), s.layout.clone(), Ttls::default());
    for i in 0..100 {
        let late = cache.get(TYPE, &format!("late-{i}")).await.expect("get");
        assert_eq!(
            late.map(|e| e.document),
            Some("{\"when\":\"late\"}".to_owned()),
            "late-{i}"
        );
        let early = cache.get(TYPE, &format!("early-{i}")).await.expect("get");
        assert_eq!(early, None, "early-{i} was replayed despite --from");
    }
    let _ = syncline_cache::admin::purge_prefix(&mut conn, &s.layout).await;
}
