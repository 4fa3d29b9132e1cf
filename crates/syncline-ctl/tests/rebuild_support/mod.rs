//! Support for the rebuild tests: the ES dev server, the live indexer binary, a live
//! publisher with its oracle, and reading an index back.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use syncline_event::{ChangeEvent, Op};
use syncline_testkit::{ChildGuard, Expected, Oracle};
use tokio::sync::Mutex;

/// The dev server (or `ES_URL`) and an HTTP client.
pub struct Es {
    pub url: String,
    pub server: Option<es_devserver::RunningServer>,
    pub http: reqwest::Client,
}

impl Es {
    pub async fn start() -> Es {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        if let Some(url) = syncline_testkit::es_url() {
            return Es {
                url,
                server: None,
                http,
            };
        }
        let server = es_devserver::start(es_devserver::Config::default())
            .await
            .expect("start es dev server");
        Es {
            url: server.url().to_owned(),
            server: Some(server),
            http,
        }
    }

    pub async fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            r = r.json(&b);
        }
        match r.send().await {
            Ok(resp) => {
                let s = resp.status().as_u16();
                (s, resp.json().await.unwrap_or(Value::Null))
            }
            Err(e) => (0, json!({ "transport_error": e.to_string() })),
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.req(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.req(reqwest::Method::POST, path, Some(body)).await
    }

    /// Index -> alias definition for every index behind `alias`.
    pub async fn alias_indexes(&self, alias: &str) -> BTreeMap<String, Value> {
        let (s, b) = self.get(&format!("/_alias/{alias}")).await;
        if s != 200 {
            return BTreeMap::new();
        }
        b.as_object()
            .into_iter()
            .flatten()
            .map(|(i, d)| (i.clone(), d["aliases"][alias].clone()))
            .collect()
    }

    /// All documents of `target` by id: (version, source).
    pub async fn search_all(&self, target: &str) -> BTreeMap<String, (i64, Value)> {
        let (s, b) = self.post(&format!("/{target}/_refresh"), json!({})).await;
        assert_eq!(s, 200, "refresh {target}: {b}");
        let (s, b) = self
            .post(
                &format!("/{target}/_search"),
                json!({"size": 10000, "version": true, "query": {"match_all": {}}}),
            )
            .await;
        assert_eq!(s, 200, "search {target}: {b}");
        let total = b["hits"]["total"]["value"].as_u64().unwrap_or(0);
        assert!(total <= 10000, "too many docs for one page: {total}");
        b["hits"]["hits"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|h| {
                (
                    h["_id"].as_str().unwrap_or_default().to_owned(),
                    (h["_version"].as_i64().unwrap_or(-1), h["_source"].clone()),
                )
            })
            .collect()
    }
}

/// Compare what `alias` shows (and its single index holds, tombstones included) with the
/// oracle.
pub async fn check_oracle(es: &Es, alias: &str, oracle: &Oracle) -> Result<(), String> {
    let indexes = es.alias_indexes(alias).await;
    let Some((index, _)) = indexes.iter().next().filter(|_| indexes.len() == 1) else {
        return Err(format!("alias {alias} points to {indexes:?}"));
    };
    let all = es.search_all(index).await;
    let visible = es.search_all(alias).await;
    let mut problems = Vec::new();
    for ((_, id), expected) in oracle {
        match &expected.document {
            Some(doc) => {
                let want: Value = serde_json::from_str(doc).expect("oracle doc is json");
                match visible.get(id) {
                    Some((v, src)) if *v == expected.version && *src == want => {}
                    Some((v, _)) => problems.push(format!(
                        "{id}: version {v} / expected {} (or source differs)",
                        expected.version
                    )),
                    None => problems.push(format!("{id}: missing, expected v{}", expected.version)),
                }
            }
            None => {
                if visible.contains_key(id) {
                    problems.push(format!(
                        "{id}: visible but deleted at v{}",
                        expected.version
                    ));
                }
                match all.get(id) {
                    Some((v, src))
                        if *v == expected.version && src["_syncline_deleted"] == true => {}
                    other => problems.push(format!(
                        "{id}: expected tombstone v{}, found {other:?}",
                        expected.version
                    )),
                }
            }
        }
    }
    let live = oracle.values().filter(|e| e.document.is_some()).count();
    if visible.len() != live {
        problems.push(format!(
            "{} documents visible through {alias}, oracle has {live} live",
            visible.len()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        let n = problems.len();
        problems.truncate(10);
        Err(format!("{n} differences, first: {problems:#?}"))
    }
}

/// `SYNCLINE_KAFKA` for a spawned binary: the test kit's consumer properties, one per
/// line (the format the binaries read).
pub fn kafka_env() -> String {
    syncline_testkit::consumer_kafka_props("")
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The debug build of a binary of another workspace package (built if missing).
pub fn debug_binary(package: &str, bin: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_owned();
    let path = dir.join(bin);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", package, "--bin", bin])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build -p {package} --bin {bin}");
    assert!(path.exists(), "{} missing after the build", path.display());
    path
}

/// Names of one test's topic, groups and indexes.
#[derive(Clone)]
pub struct Setup {
    pub brokers: String,
    pub topic: String,
    pub live_group: String,
    pub es_url: String,
    pub prefix: String,
}

impl Setup {
    pub fn new(es: &Es, name: &str) -> Setup {
        let base = syncline_testkit::unique_name(name);
        Setup {
            brokers: syncline_testkit::kafka_brokers(),
            topic: format!("{base}-events"),
            live_group: format!("{base}-live"),
            es_url: es.url.clone(),
            prefix: format!("{base}-"),
        }
    }

    pub fn alias(&self, t: &str) -> String {
        format!("{}{t}", self.prefix)
    }

    /// Start the live indexer binary with `mappings` as its mappings directory.
    pub fn spawn_indexer(&self, bin: &Path, mappings: &Path) -> ChildGuard {
        let mut cmd = Command::new(bin);
        cmd.args([
            "--brokers",
            &self.brokers,
            "--topic",
            &self.topic,
            "--group",
            &self.live_group,
            "--metrics-addr",
            "off",
            "--es-url",
            &self.es_url,
            "--es-index-prefix",
            &self.prefix,
        ])
        .arg("--es-mappings-dir")
        .arg(mappings)
        .env("SYNCLINE_KAFKA", kafka_env())
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(std::process::Stdio::null());
        ChildGuard::spawn(&mut cmd).expect("spawn syncline-es-indexer")
    }

    /// The `syncline-ctl rebuild es` command for this setup, plus `extra` flags.
    pub fn rebuild_cmd(&self, mappings: &Path, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncline-ctl"));
        cmd.args([
            "--brokers",
            &self.brokers,
            "rebuild",
            "es",
            "--topic",
            &self.topic,
        ])
        .args(["--es-url", &self.es_url, "--es-index-prefix", &self.prefix])
        .arg("--es-mappings-dir")
        .arg(mappings)
        .args(["--live-group", &self.live_group])
        .args(extra)
        .env("SYNCLINE_KAFKA", kafka_env())
        .env_remove("SYNCLINE_CONFIG")
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,rdkafka::client=off".into()),
        )
        .stdin(std::process::Stdio::null());
        cmd
    }

    /// Wait until `group` has committed every record of the topic.
    pub async fn wait_drained(&self, group: &str, timeout: Duration) {
        syncline_testkit::wait_group_caught_up(&self.brokers, group, &self.topic, timeout)
            .await
            .expect("group drained the topic");
    }
}

/// Write `definition` as `<dir>/<entity_type>.json`.
pub fn mapping_dir(entity_type: &str, definition: &Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(format!("{entity_type}.json")),
        definition.to_string(),
    )
    .expect("write mapping");
    dir
}

/// A document naming its id and version (so a wrong version shows in the document).
pub fn document(id: &str, version: i64, price: u32) -> String {
    json!({"id": id, "version": version, "name": format!("item {id} v{version}"), "price": price})
        .to_string()
}

/// Keeps publishing shuffled updates and deletes until stopped, recording the oracle.
///
/// Keys in `protected` are only ever updated, never deleted (the reader checks they never
/// go missing). Each chunk of events is shuffled before publishing, so versions of a key
/// arrive out of order; some events are published twice.
pub struct Publisher {
    pub oracle: Arc<Mutex<Oracle>>,
    pub published: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    // Test support with positional settings read once at each call site; a spec struct
    // would only move the same eight names around.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        brokers: String,
        topic: String,
        entity_type: String,
        oracle: Oracle,
        keys: usize,
        protected: Vec<String>,
        per_second: u64,
        seed: u64,
    ) -> Publisher {
        let versions: HashMap<String, i64> = oracle
            .iter()
            .map(|((_, id), e)| (id.clone(), e.version))
            .collect();
        let oracle = Arc::new(Mutex::new(oracle));
        let published = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (oracle, published, stop) = (oracle.clone(), published.clone(), stop.clone());
            tokio::spawn(async move {
                let protected: std::collections::HashSet<String> = protected.into_iter().collect();
                let mut versions = versions;
                let mut rng = StdRng::seed_from_u64(seed);
                let chunk = 100usize;
                let pause = Duration::from_millis(1000 * chunk as u64 / per_second.max(1));
                while !stop.load(Ordering::Relaxed) {
                    let mut events = Vec::with_capacity(chunk + 10);
                    for _ in 0..chunk {
                        let id = syncline_testkit::workload::entity_id(rng.random_range(0..keys));
                        let v = versions.entry(id.clone()).or_insert(0);
                        *v += rng.random_range(1..=3);
                        let version = *v;
                        let e = if !protected.contains(&id) && rng.random::<f64>() < 0.2 {
                            ChangeEvent::new(&entity_type, id, Op::Delete, version, "live", None)
                        } else {
                            let doc = document(&id, version, rng.random_range(1..100_000));
                            ChangeEvent::new(
                                &entity_type,
                                id,
                                Op::Upsert,
                                version,
                                "live",
                                Some(doc),
                            )
                        };
                        events.push(e);
                    }
                    let dups: Vec<ChangeEvent> = events
                        .iter()
                        .filter(|_| rng.random::<f64>() < 0.05)
                        .cloned()
                        .collect();
                    events.extend(dups);
                    events.shuffle(&mut rng);
                    syncline_testkit::publish_events(&brokers, &topic, &events)
                        .await
                        .expect("publish live traffic");
                    {
                        let mut o = oracle.lock().await;
                        for e in &events {
                            let k = (e.entity_type.clone(), e.entity_id.clone());
                            let newer = o.get(&k).is_none_or(|x| x.version < e.version);
                            if newer {
                                o.insert(
                                    k,
                                    Expected {
                                        version: e.version,
                                        document: e.document.clone(),
                                    },
                                );
                            }
                        }
                    }
                    published.fetch_add(events.len() as u64, Ordering::Relaxed);
                    tokio::time::sleep(pause).await;
                }
            })
        };
        Publisher {
            oracle,
            published,
            stop,
            task,
        }
    }

    /// Stop after the chunk in progress; returns the oracle of everything published.
    pub async fn stop(self) -> Oracle {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("publisher task");
        let o = self.oracle.lock().await;
        o.clone()
    }
}
