//! End to end from PostgreSQL: a service's transaction calls `syncline_emit(...)` and the
//! real binaries take it from there. `syncline-outbox` relays the outbox to the real
//! broker, `syncline-es-indexer` writes the ES dev server, `syncline-redis-invalidator`
//! (mode `invalidate`) drops the cached value in Redis. A transaction that rolls back
//! emits nothing anywhere.
//!
//! Every wait polls observable state with a deadline; no sleep decides an outcome.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "support/pipeline.rs"]
mod pipeline;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use pipeline::{migrate_outbox, Pipeline};
use serde_json::{json, Value};
use syncline_cache::{KeyLayout, Mode};
use syncline_testkit::kafka::decode_message;
use syncline_testkit::postgres::count_rows;
use syncline_testkit::{
    create_topic_with_dlq, end_offsets, free_port, group_caught_up, kafka_brokers, read_all,
    unique_name, wait_until, ChildGuard, TestDb,
};

const DEADLINE: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(100);

/// The service's own table; its `version` column gives the events their versions (the
/// row lock of the UPDATE orders writers of one product, docs/outbox.md).
const SCHEMA: &str = "
CREATE TABLE product (
    id      text PRIMARY KEY,
    name    text NOT NULL,
    price   numeric NOT NULL,
    version bigint NOT NULL
)";

/// The product's document as the service publishes it: the row without its version.
const DOC: &str = "(SELECT to_jsonb(p) - 'version' FROM product p WHERE id = $1)";

/// The document and `_version` of `id` in `alias`, `None` while it is not visible.
async fn es_doc(
    http: &reqwest::Client,
    es: &str,
    alias: &str,
    id: &str,
) -> Result<Option<(i64, Value)>, String> {
    let refresh = http
        .post(format!("{es}/{alias}/_refresh"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !refresh.status().is_success() {
        // The indexer has not created the index yet.
        return Err(format!("refresh {alias}: {}", refresh.status()));
    }
    let r = http
        .post(format!("{es}/{alias}/_search"))
        .json(&json!({"size": 100, "version": true, "query": {"match_all": {}}}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("search {alias}: {}", r.status()));
    }
    let body: Value = r.json().await.map_err(|e| e.to_string())?;
    Ok(body["hits"]["hits"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| h["_id"] == id)
        .map(|h| (h["_version"].as_i64().unwrap_or(-1), h["_source"].clone())))
}

/// Where product p1 should show up.
struct Sinks {
    http: reqwest::Client,
    es_url: String,
    alias: String,
    redis: redis::aio::ConnectionManager,
    cache_key: String,
    guard_key: String,
}

impl Sinks {
    /// Wait until Elasticsearch shows p1 at `version` with `doc` (`None`: deleted) and
    /// Redis has no cached value for it and a guard at `version`.
    async fn applied(&self, version: i64, doc: Option<Value>) -> Result<(), String> {
        wait_until(DEADLINE, POLL, || {
            let doc = doc.clone();
            let mut redis = self.redis.clone();
            async move {
                let in_es = es_doc(&self.http, &self.es_url, &self.alias, "p1").await?;
                let want_es = doc.map(|d| (version, d));
                if in_es != want_es {
                    return Err(format!("es p1: {in_es:?}, want {want_es:?}"));
                }
                let (cached, guard): (Option<String>, Option<String>) = redis::pipe()
                    .get(&self.cache_key)
                    .get(&self.guard_key)
                    .query_async(&mut redis)
                    .await
                    .map_err(|e| e.to_string())?;
                if cached.is_some() || guard != Some(version.to_string()) {
                    return Err(format!(
                        "redis p1: value {cached:?}, guard {guard:?}, want none and {version}"
                    ));
                }
                Ok(())
            }
        })
        .await
    }
}

fn logs(dir: &Path) -> String {
    ["relay.err", "indexer.err", "invalidator.err"]
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
            let tail: String = text
                .chars()
                .rev()
                .take(4000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("--- {f}:\n{tail}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_in_a_transaction_becomes_a_document_and_an_invalidation() {
    let brokers = kafka_brokers();
    let base = unique_name("e2e-outbox");
    let topic = format!("{base}-events");
    create_topic_with_dlq(&brokers, &topic, 3)
        .await
        .expect("topics");
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = |name: &str| {
        std::fs::File::create(dir.path().join(name))
            .map(Stdio::from)
            .expect("log file")
    };

    let pipeline = Pipeline {
        brokers: brokers.clone(),
        topic: topic.clone(),
        base: base.clone(),
    };
    // The schema, by the relay binary's own `migrate`, as an operator would.
    migrate_outbox(&db.url);
    let mut pg = db.client().await;
    pg.batch_execute(SCHEMA).await.expect("service schema");

    // Redis holds a cached (now stale) value of the product, as a reader would leave it.
    let redis_url = syncline_testkit::redis_url();
    let layout = KeyLayout::new(pipeline.key_prefix()).expect("key prefix");
    let client = redis::Client::open(redis_url.as_str()).expect("redis url");
    let mut redis = redis::aio::ConnectionManager::new(client)
        .await
        .expect("redis reachable");
    let cache_key = layout.cache_key("product", "p1");
    let guard_key = layout.guard_key("product", "p1");
    let tag_key = layout.tag_key("search:lamps");
    let _: () = redis::cmd("SET")
        .arg(&cache_key)
        .arg("0\n{\"name\":\"cached before the change\"}")
        .query_async(&mut redis)
        .await
        .expect("seed the cache");

    // The three real binaries.
    let es = es_devserver::start(es_devserver::Config::default())
        .await
        .expect("start the ES dev server");
    let es_url = es.url().to_owned();
    let index_prefix = pipeline.index_prefix();
    let alias = format!("{index_prefix}product");
    let (es_group, redis_group) = (pipeline.es_group(), pipeline.redis_group());
    let mut relay = ChildGuard::spawn(
        pipeline
            .relay(&db.url, free_port())
            .stdout(log("relay.out"))
            .stderr(log("relay.err")),
    )
    .expect("spawn syncline-outbox");
    let mut indexer = ChildGuard::spawn(
        pipeline
            .indexer(&es_url, free_port())
            .stdout(log("indexer.out"))
            .stderr(log("indexer.err")),
    )
    .expect("spawn syncline-es-indexer");
    let mut invalidator = ChildGuard::spawn(
        pipeline
            .invalidator(&redis_url, Mode::Invalidate, free_port())
            .stdout(log("invalidator.out"))
            .stderr(log("invalidator.err")),
    )
    .expect("spawn syncline-redis-invalidator");

    // 1. A service inserts a product and emits its event in the same transaction; another
    //    transaction does the same for p2 and rolls back.
    let tx = pg.transaction().await.expect("begin");
    tx.execute(
        "INSERT INTO product (id, name, price, version) VALUES ('p1', 'Desk lamp', 39.5, 1)",
        &[],
    )
    .await
    .expect("insert p1");
    tx.execute(
        &format!(
            "SELECT syncline_emit('product', $1, 'UPSERT', 1, {DOC},
                                  ARRAY['search:lamps'], '{{\"tenant\":\"acme\"}}')"
        ),
        &[&"p1"],
    )
    .await
    .expect("emit p1");
    tx.commit().await.expect("commit p1");
    let tx = pg.transaction().await.expect("begin");
    tx.execute(
        "INSERT INTO product (id, name, price, version) VALUES ('p2', 'Never sold', 1, 1)",
        &[],
    )
    .await
    .expect("insert p2");
    tx.execute(
        &format!("SELECT syncline_emit('product', $1, 'UPSERT', 1, {DOC}, ARRAY['search:lamps'])"),
        &[&"p2"],
    )
    .await
    .expect("emit p2");
    tx.rollback().await.expect("roll back p2");

    // Elasticsearch gets the document at version 1; Redis loses the cached value, its
    // guard says 1 and the tag was bumped.
    let http = reqwest::Client::new();
    let want_v1 = json!({"id": "p1", "name": "Desk lamp", "price": 39.5});
    let mut children = [&mut relay, &mut indexer, &mut invalidator];
    let sinks = Sinks {
        http: http.clone(),
        es_url: es_url.clone(),
        alias: alias.clone(),
        redis: redis.clone(),
        cache_key: cache_key.clone(),
        guard_key: guard_key.clone(),
    };
    let applied = |version: i64, doc: Option<Value>| sinks.applied(version, doc);
    let check_alive = |children: &mut [&mut ChildGuard; 3]| {
        for (name, c) in ["relay", "indexer", "invalidator"]
            .iter()
            .zip(children.iter_mut())
        {
            if let Ok(Some(status)) = c.try_wait() {
                panic!("{name} exited: {status}\n{}", logs(dir.path()));
            }
        }
    };
    if let Err(why) = applied(1, Some(want_v1.clone())).await {
        check_alive(&mut children);
        panic!("{why}\n{}", logs(dir.path()));
    }
    let tag: Option<i64> = redis::cmd("GET")
        .arg(&tag_key)
        .query_async(&mut redis)
        .await
        .expect("redis get tag");
    assert!(tag.is_some_and(|n| n >= 1), "tag {tag_key}: {tag:?}");

    // 2. A reader caches the product again; the service updates it (the row lock of its
    //    UPDATE gives version 2) and emits in the same transaction.
    let _: () = redis::cmd("SET")
        .arg(&cache_key)
        .arg("1\n{\"name\":\"cached at version 1\"}")
        .query_async(&mut redis)
        .await
        .expect("cache again");
    let tx = pg.transaction().await.expect("begin");
    let version: i64 = tx
        .query_one(
            "UPDATE product SET price = 34, version = version + 1 WHERE id = 'p1' RETURNING version",
            &[],
        )
        .await
        .expect("update p1")
        .get(0);
    assert_eq!(version, 2);
    tx.execute(
        &format!("SELECT syncline_emit('product', $1, 'UPSERT', $2, {DOC}, ARRAY['search:lamps'])"),
        &[&"p1", &version],
    )
    .await
    .expect("emit p1 v2");
    tx.commit().await.expect("commit p1 v2");
    let want_v2 = json!({"id": "p1", "name": "Desk lamp", "price": 34});
    if let Err(why) = applied(2, Some(want_v2)).await {
        check_alive(&mut children);
        panic!("{why}\n{}", logs(dir.path()));
    }

    // 3. The service deletes the product: the document goes, the guard says 3.
    let tx = pg.transaction().await.expect("begin");
    let version: i64 = tx
        .query_one(
            "DELETE FROM product WHERE id = 'p1' RETURNING version + 1",
            &[],
        )
        .await
        .expect("delete p1")
        .get(0);
    tx.execute(
        "SELECT syncline_emit('product', 'p1', 'DELETE', $1, NULL, ARRAY['search:lamps'])",
        &[&version],
    )
    .await
    .expect("emit p1 delete");
    tx.commit().await.expect("commit p1 delete");
    if let Err(why) = applied(3, None).await {
        check_alive(&mut children);
        panic!("{why}\n{}", logs(dir.path()));
    }

    // 4. The rolled-back p2 never appears: not on the topic (which holds exactly p1's three
    //    events, relayed after p2's id was drawn), not in Elasticsearch, not in Redis.
    //    The outbox is empty and both consumers have read the whole topic.
    let outbox_empty = wait_until(DEADLINE, POLL, || {
        let pg = &pg;
        async move {
            match count_rows(pg, "syncline_outbox").await {
                0 => Ok(()),
                n => Err(format!("{n} rows left in the outbox")),
            }
        }
    })
    .await;
    if let Err(why) = outbox_empty {
        panic!("{why}\n{}", logs(dir.path()));
    }
    let caught_up = wait_until(DEADLINE, POLL, || {
        let (brokers, topic, es_group, redis_group) = (
            brokers.clone(),
            topic.clone(),
            es_group.clone(),
            redis_group.clone(),
        );
        async move {
            let es_done = group_caught_up(&brokers, &es_group, &topic).await;
            let redis_done = group_caught_up(&brokers, &redis_group, &topic).await;
            if es_done && redis_done {
                Ok(())
            } else {
                Err(format!(
                    "caught up: indexer {es_done}, invalidator {redis_done}"
                ))
            }
        }
    })
    .await;
    if let Err(why) = caught_up {
        panic!("{why}\n{}", logs(dir.path()));
    }
    let total: i64 = end_offsets(&brokers, &topic)
        .await
        .expect("end offsets")
        .iter()
        .sum();
    let records = read_all(&brokers, &topic, total as usize, DEADLINE)
        .await
        .expect("read the topic");
    let events: BTreeSet<(String, i64, bool)> = records
        .iter()
        .map(|m| {
            let e = decode_message(m).expect("a change event");
            (e.entity_id, e.version, e.document.is_some())
        })
        .collect();
    let want: BTreeSet<(String, i64, bool)> = [
        ("p1".to_owned(), 1, true),
        ("p1".to_owned(), 2, true),
        ("p1".to_owned(), 3, false),
    ]
    .into();
    assert_eq!(events, want, "events on the topic");
    assert_eq!(
        es_doc(&http, &es_url, &alias, "p2").await,
        Ok(None),
        "p2 in Elasticsearch"
    );
    let p2_guard: Option<String> = redis::cmd("GET")
        .arg(layout.guard_key("product", "p2"))
        .query_async(&mut redis)
        .await
        .expect("redis get");
    assert_eq!(p2_guard, None, "p2 in Redis");
    let dead: i64 = end_offsets(&brokers, &format!("{topic}.dlq"))
        .await
        .expect("dlq end offsets")
        .iter()
        .sum();
    assert_eq!(dead, 0, "dead letters\n{}", logs(dir.path()));
    check_alive(&mut children);

    let _ = syncline_cache::admin::purge_prefix(&mut redis, &layout).await;
    es.shutdown().await;
}
