//! Support for the snapshot and reconcile tests: a whole pipeline on real components (the
//! broker, the ES dev server, Redis, PostgreSQL) with the indexer and the invalidator
//! running in this process on the shared consumer runtime, and `syncline-ctl` as a binary.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde_json::Value;
use syncline_cache::KeyLayout;
use syncline_consumer::{Metrics, RuntimeConfig};
use syncline_kafka::KafkaProperties;
use syncline_testkit::{
    consumer_kafka_props, create_topic, group_caught_up, unique_name, wait_until,
};
use tokio_util::sync::CancellationToken;

pub const ENTITY: &str = "product";

pub struct Pipeline {
    pub brokers: String,
    pub topic: String,
    pub es_url: String,
    pub es_prefix: String,
    pub redis_url: String,
    pub redis_prefix: String,
    pub layout: KeyLayout,
    pub groups: [String; 2],
    pub http: reqwest::Client,
    token: CancellationToken,
    _es: es_devserver::RunningServer,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _mappings: tempfile::TempDir,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.token.cancel();
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Pipeline {
    /// Topic, dev server, and both sinks consuming. `gc_deletes` is the ES setting for the
    /// indexes the indexer creates.
    pub async fn start(name: &str, gc_deletes: &str) -> Pipeline {
        Self::start_with(name, gc_deletes, &[]).await
    }

    /// [`Pipeline::start`] on a topic created with these configs (e.g.
    /// `cleanup.policy=compact`).
    pub async fn start_with(
        name: &str,
        gc_deletes: &str,
        topic_configs: &[(&str, &str)],
    ) -> Pipeline {
        let brokers = syncline_testkit::kafka_brokers();
        let topic = unique_name(name);
        if topic_configs.is_empty() {
            create_topic(&brokers, &topic, 3).await.expect("topic");
        } else {
            syncline_kafka::create_topic(
                brokers.as_str(),
                &topic,
                &syncline_kafka::TopicSpec {
                    partitions: 3,
                    configs: topic_configs
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    ..Default::default()
                },
            )
            .await
            .expect("topic");
        }
        let es = es_devserver::start(es_devserver::Config::default())
            .await
            .expect("dev server");
        let es_url = es.url().to_owned();
        let es_prefix = format!("{}-", unique_name("rc"));
        let redis_url = syncline_testkit::redis_url();
        let redis_prefix = format!("{}:", unique_name("rc"));
        let layout = KeyLayout::new(redis_prefix.clone()).expect("layout");
        let token = CancellationToken::new();
        let groups = [format!("{topic}-es"), format!("{topic}-redis")];
        let kafka = KafkaProperties(consumer_kafka_props("").into_iter().collect());
        let runtime = |group: &str| RuntimeConfig {
            brokers: brokers.clone(),
            topic: topic.clone(),
            group_id: group.to_owned(),
            kafka: kafka.clone(),
            // Two runtimes in one process: neither serves metrics (the port would clash).
            metrics_addr: None,
            ..RuntimeConfig::default()
        };
        let mappings = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            mappings.path().join(format!("{ENTITY}.json")),
            format!(r#"{{"settings":{{"index.gc_deletes":"{gc_deletes}"}}}}"#),
        )
        .expect("mapping");
        let es_cfg = syncline_es_indexer::EsConfig {
            url: es_url.clone(),
            index_prefix: es_prefix.clone(),
            mappings_dir: Some(mappings.path().to_path_buf()),
            ..Default::default()
        };
        let metrics = Metrics::new();
        let es_sink = syncline_es_indexer::EsSink::new(&es_cfg, &metrics).expect("es sink");
        let mut tasks = Vec::new();
        let (cfg, t) = (runtime(&groups[0]), token.clone());
        tasks.push(tokio::spawn(async move {
            syncline_consumer::run_with_metrics(cfg, es_sink, metrics, t)
                .await
                .expect("indexer runtime");
        }));
        let settings = syncline_redis_invalidator::RedisSettings {
            url: redis_url.clone(),
            key_prefix: redis_prefix.clone(),
            ..Default::default()
        };
        let sink_cfg = settings.validate().expect("redis settings");
        let conn = connect(&redis_url).await;
        let metrics = Metrics::new();
        let redis_sink = syncline_redis_invalidator::RedisSink::new(conn, sink_cfg, &metrics);
        let (cfg, t) = (runtime(&groups[1]), token.clone());
        tasks.push(tokio::spawn(async move {
            syncline_consumer::run_with_metrics(cfg, redis_sink, metrics, t)
                .await
                .expect("invalidator runtime");
        }));
        Pipeline {
            brokers,
            topic,
            es_url,
            es_prefix,
            redis_url,
            redis_prefix,
            layout,
            groups,
            http: reqwest::Client::new(),
            token,
            _es: es,
            tasks,
            _mappings: mappings,
        }
    }

    /// Both groups have committed the whole topic.
    pub async fn wait_caught_up(&self) {
        wait_until(
            Duration::from_secs(120),
            Duration::from_millis(100),
            || async {
                for g in &self.groups {
                    if !group_caught_up(&self.brokers, g, &self.topic).await {
                        return Err(format!("group {g} has not committed the whole topic"));
                    }
                }
                Ok(())
            },
        )
        .await
        .expect("both sinks caught up");
    }

    /// Run `syncline-ctl` with the broker flag.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_syncline-ctl"))
            .arg("--brokers")
            .arg(&self.brokers)
            .args(args)
            .output()
            .expect("run syncline-ctl")
    }

    /// The initial load: a snapshot of `query` that must succeed, then both sinks caught up.
    pub async fn load_snapshot(&self, db_url: &str, query: &str) {
        let out = self.snapshot(db_url, query);
        assert!(out.status.success(), "{out:?}");
        self.wait_caught_up().await;
    }

    /// `snapshot --quiet` of `query` from `db_url` into the pipeline's topic.
    pub fn snapshot(&self, db_url: &str, query: &str) -> Output {
        self.ctl(&[
            "snapshot",
            "--postgres-url",
            db_url,
            "--entity-type",
            ENTITY,
            "--query",
            query,
            "--topic",
            &self.topic,
            "--quiet",
        ])
    }

    /// [`Pipeline::reconcile`] without blocking a runtime thread (for tests whose own
    /// tasks must keep running meanwhile).
    pub async fn reconcile_async(
        &self,
        db_url: &str,
        query: &str,
        extra: &[&str],
    ) -> (Option<i32>, Value, String) {
        let args = self.reconcile_args(db_url, query, extra);
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_syncline-ctl"))
            .arg("--brokers")
            .arg(&self.brokers)
            .args(&args)
            .output()
            .await
            .expect("run syncline-ctl");
        parse(out)
    }

    fn reconcile_args(&self, db_url: &str, query: &str, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "reconcile",
            "--truth",
            "postgres",
            "--postgres-url",
            db_url,
            "--query",
            query,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(self.store_args());
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    }

    /// `--entity-type`, `--topic`, both stores, `--json` and every sample.
    pub fn store_args(&self) -> Vec<String> {
        [
            "--entity-type",
            ENTITY,
            "--topic",
            &self.topic,
            "--es-url",
            &self.es_url,
            "--es-index-prefix",
            &self.es_prefix,
            "--redis-url",
            &self.redis_url,
            "--redis-key-prefix",
            &self.redis_prefix,
            "--json",
            "--samples",
            "1000",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }

    /// `reconcile --truth topic` (the pipeline's topic) against both stores, as JSON.
    pub fn reconcile_topic(&self, extra: &[&str]) -> (Option<i32>, Value, String) {
        let mut args: Vec<String> = vec!["reconcile".into(), "--truth".into(), "topic".into()];
        args.extend(self.store_args());
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        parse(self.ctl(&args))
    }

    /// `reconcile --truth postgres` against both stores, as JSON, with `extra` flags.
    pub fn reconcile(
        &self,
        db_url: &str,
        query: &str,
        extra: &[&str],
    ) -> (Option<i32>, Value, String) {
        let args = self.reconcile_args(db_url, query, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        parse(self.ctl(&args))
    }

    pub fn alias(&self) -> String {
        format!("{}{ENTITY}", self.es_prefix)
    }

    pub async fn es(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.http.request(method, format!("{}{path}", self.es_url));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("es request");
        let s = resp.status().as_u16();
        (s, resp.json().await.unwrap_or(Value::Null))
    }

    /// The concrete index behind the alias.
    pub async fn index(&self) -> String {
        let (s, b) = self
            .es(
                reqwest::Method::GET,
                &format!("/_alias/{}", self.alias()),
                None,
            )
            .await;
        assert_eq!(s, 200, "{b}");
        b.as_object()
            .and_then(|m| m.keys().next().cloned())
            .expect("one index")
    }

    pub async fn redis(&self) -> ConnectionManager {
        connect(&self.redis_url).await
    }
}

fn parse(out: Output) -> (Option<i32>, Value, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code(),
        v,
        format!("stdout:\n{stdout}\nstderr:\n{stderr}"),
    )
}

pub async fn connect(url: &str) -> ConnectionManager {
    let client = redis::Client::open(url).expect("redis url");
    ConnectionManager::new(client).await.expect("redis")
}

/// Entity ids of one store and kind in a reconcile JSON report.
pub fn ids(report: &Value, store: &str, kind: &str) -> Vec<String> {
    let mut out: Vec<String> = report["stores"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["store"] == store)
        .flat_map(|s| {
            s["drift"][kind]["samples"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|x| x["entity_id"].as_str().map(str::to_owned))
        .collect();
    out.sort();
    out
}

/// Total count of one store and kind.
pub fn count(report: &Value, store: &str, kind: &str) -> u64 {
    report["stores"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["store"] == store)
        .map(|s| s["drift"][kind]["count"].as_u64().unwrap_or(0))
        .sum()
}

/// A sorted, de-duplicated list of ids: the shape [`ids`] returns.
pub fn id_set(ids: &[&str]) -> Vec<String> {
    let s: BTreeSet<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    s.into_iter().collect()
}

/// Each `(store, kind, ids)` of `expect` is exactly what the report says: the sampled ids
/// and the count (`text` is the command's output, shown on failure).
pub fn assert_drift(report: &Value, text: &str, expect: &[(&str, &str, Vec<String>)]) {
    for (store, kind, want) in expect {
        assert_eq!(&ids(report, store, kind), want, "{store} {kind}\n{text}");
        assert_eq!(
            count(report, store, kind),
            want.len() as u64,
            "{store} {kind}\n{text}"
        );
    }
}

/// Create the `product` table (`id text`, `version bigint` from a sequence, `doc jsonb`)
/// with `rows` rows; `id_sql` and `doc_sql` are SQL expressions over the row number `i`.
pub async fn create_product_table(
    pg: &tokio_postgres::Client,
    rows: u32,
    id_sql: &str,
    doc_sql: &str,
) {
    pg.batch_execute(&format!(
        "CREATE SEQUENCE product_version;
         CREATE TABLE product (id text PRIMARY KEY, version bigint NOT NULL, doc jsonb NOT NULL);
         INSERT INTO product
           SELECT {id_sql}, nextval('product_version'), {doc_sql}
           FROM generate_series(1, {rows}) AS i;"
    ))
    .await
    .expect("create and fill the product table");
}
