//! Support shared by this crate's integration tests: an Elasticsearch to talk to (the
//! in-process dev server, or `ES_URL`), and reading documents back with their versions.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use syncline_testkit::Oracle;

/// The Elasticsearch a test writes to. Holds the dev server alive when one was started.
pub struct Es {
    pub url: String,
    pub server: Option<es_devserver::RunningServer>,
    pub http: reqwest::Client,
}

impl Es {
    /// `ES_URL` when set, else a fresh dev server on an ephemeral port.
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

    /// The dev server (fault injection needs it).
    pub fn dev(&self) -> &es_devserver::RunningServer {
        self.server
            .as_ref()
            .expect("this test needs the dev server (fault injection); unset ES_URL")
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .put(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .expect("PUT");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn refresh(&self, index: &str) {
        let (s, b) = self
            .post_json(&format!("/{index}/_refresh"), &json!({}))
            .await;
        assert!(s == 200, "refresh {index}: {s} {b}");
    }

    /// Documents visible through `target` by search (alias filters apply), id -> source.
    pub async fn search_all(&self, target: &str) -> BTreeMap<String, (i64, Value)> {
        self.refresh(target).await;
        let (s, b) = self
            .post_json(
                &format!("/{target}/_search"),
                &json!({"size": 10000, "version": true, "query": {"match_all": {}}}),
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

    /// `_count` through `target`.
    pub async fn count(&self, target: &str) -> u64 {
        self.refresh(target).await;
        let (s, b) = self
            .post_json(&format!("/{target}/_count"), &json!({}))
            .await;
        assert_eq!(s, 200, "count {target}: {b}");
        b["count"].as_u64().unwrap_or(0)
    }

    /// GET by id: (status, body).
    pub async fn get_doc(&self, target: &str, id: &str) -> (u16, Value) {
        self.get_json(&format!("/{target}/_doc/{id}")).await
    }

    /// The concrete indexes behind `alias`.
    pub async fn alias_indexes(&self, alias: &str) -> Vec<String> {
        let (s, b) = self.get_json(&format!("/_alias/{alias}")).await;
        if s != 200 {
            return Vec::new();
        }
        b.as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// Compare an index's full contents (concrete index, tombstones included) and what is
/// visible through the alias with the oracle. Returns a description of the first
/// differences, or `Ok` when they agree.
pub async fn check_oracle(
    es: &Es,
    alias: &str,
    oracle: &Oracle,
    tombstone_mode: bool,
) -> Result<(), String> {
    let indexes = es.alias_indexes(alias).await;
    let [index] = indexes.as_slice() else {
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
                if tombstone_mode {
                    match all.get(id) {
                        Some((v, src))
                            if *v == expected.version && src["_syncline_deleted"] == true => {}
                        other => problems.push(format!(
                            "{id}: expected tombstone v{}, found {other:?}",
                            expected.version
                        )),
                    }
                } else if all.contains_key(id) {
                    problems.push(format!("{id}: present in {index} but deleted"));
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

#[allow(unused_imports)]
pub use syncline_testkit::free_port;

/// One indexer process.
pub struct Indexer {
    pub child: syncline_testkit::ChildGuard,
    pub metrics_port: u16,
}

impl Indexer {
    /// `/metrics` text (empty if the endpoint is not up).
    pub async fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        match reqwest::get(url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }
}

/// Where an indexer reads from and writes to.
#[derive(Clone)]
pub struct Setup {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    pub es_url: String,
    pub prefix: String,
}

impl Setup {
    pub fn new(es: &Es, name: &str) -> Setup {
        let base = syncline_testkit::unique_name(name);
        Setup {
            brokers: syncline_testkit::kafka_brokers(),
            topic: format!("{base}-events"),
            group: format!("{base}-group"),
            es_url: es.url.clone(),
            prefix: format!("{base}-"),
        }
    }

    pub fn alias(&self, entity_type: &str) -> String {
        format!("{}{entity_type}", self.prefix)
    }

    /// The command that starts the indexer binary for this setup, plus `extra` flags.
    pub fn command(&self, metrics_port: u16, extra: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_syncline-es-indexer"));
        cmd.args([
            "--brokers",
            &self.brokers,
            "--topic",
            &self.topic,
            "--group",
            &self.group,
            "--metrics-addr",
            &format!("127.0.0.1:{metrics_port}"),
            "--es-url",
            &self.es_url,
            "--es-index-prefix",
            &self.prefix,
        ])
        .args(extra)
        .env("SYNCLINE_KAFKA", syncline_testkit::consumer_kafka_env(""))
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(std::process::Stdio::null());
        cmd
    }

    /// Start an indexer process.
    pub fn spawn(&self, extra: &[&str]) -> Indexer {
        let metrics_port = free_port();
        let child = syncline_testkit::ChildGuard::spawn(&mut self.command(metrics_port, extra))
            .expect("spawn syncline-es-indexer");
        Indexer {
            child,
            metrics_port,
        }
    }

    /// Wait until the group's committed offsets equal the topic's end offsets.
    pub async fn wait_drained(&self, timeout: Duration) {
        let brokers = self.brokers.clone();
        let (topic, group) = (self.topic.clone(), self.group.clone());
        syncline_testkit::wait_until(timeout, Duration::from_millis(500), || {
            let (brokers, topic, group) = (brokers.clone(), topic.clone(), group.clone());
            async move {
                let end = syncline_testkit::end_offsets(&brokers, &topic)
                    .await
                    .map_err(|e| e.to_string())?;
                let committed = syncline_testkit::committed_offsets(&brokers, &group, &topic)
                    .await
                    .map_err(|e| e.to_string())?;
                let done = end
                    .iter()
                    .zip(&committed)
                    .all(|(e, c)| *e == 0 || *c == Some(*e));
                if done {
                    Ok(())
                } else {
                    Err(format!("end {end:?}, committed {committed:?}"))
                }
            }
        })
        .await
        .expect("indexer drained the topic");
    }
}
