//! Delete tombstones are kept for `index.gc_deletes` and affect external versioning as in
//! Elasticsearch: a delete at v5 blocks re-indexing at v3 until the tombstone expires.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use es_devserver::Config;
use serde_json::{json, Value};

struct Es {
    client: reqwest::Client,
    url: String,
}

impl Es {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{}", self.url, path));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let v = r.json().await.unwrap_or(Value::Null);
        (status, v)
    }

    async fn index_ext(&self, index: &str, id: &str, version: i64) -> (u16, Value) {
        self.call(
            reqwest::Method::PUT,
            &format!("/{index}/_doc/{id}?version={version}&version_type=external"),
            Some(json!({"v": version})),
        )
        .await
    }

    async fn delete_ext(&self, index: &str, id: &str, version: i64) -> (u16, Value) {
        self.call(
            reqwest::Method::DELETE,
            &format!("/{index}/_doc/{id}?version={version}&version_type=external"),
            None,
        )
        .await
    }
}

#[tokio::test]
async fn tombstones_expire_after_gc_deletes() {
    let server = es_devserver::start(Config::default()).await.expect("start");
    let es = Es {
        client: reqwest::Client::new(),
        url: server.url().to_string(),
    };
    let (s, _) = es
        .call(
            reqwest::Method::PUT,
            "/short",
            Some(json!({"settings": {"index.gc_deletes": "1s", "number_of_replicas": 0}})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = es.call(reqwest::Method::PUT, "/default", None).await;
    assert_eq!(s, 200);

    for index in ["short", "default"] {
        assert_eq!(es.index_ext(index, "1", 4).await.0, 201);
        let (s, v) = es.delete_ext(index, "1", 5).await;
        assert_eq!(
            (s, v["result"].clone(), v["_version"].clone()),
            (200, json!("deleted"), json!(5))
        );
        // Within gc_deletes the tombstone's version still wins.
        let (s, v) = es.index_ext(index, "1", 3).await;
        assert_eq!(s, 409);
        assert_eq!(v["error"]["type"], "version_conflict_engine_exception");
        assert_eq!(
            v["error"]["reason"],
            "[1]: version conflict, current version [5] is higher or equal to the one provided [3]"
        );

        // A delete of a missing document with an external version records a tombstone.
        let (s, v) = es.delete_ext(index, "2", 10).await;
        assert_eq!(
            (s, v["result"].clone(), v["_version"].clone()),
            (404, json!("not_found"), json!(10))
        );
        assert_eq!(es.index_ext(index, "2", 7).await.0, 409);
    }

    tokio::time::sleep(Duration::from_millis(1300)).await;

    // Expired in the index with gc_deletes=1s: the old versions are accepted.
    let (s, v) = es.index_ext("short", "1", 3).await;
    assert_eq!(
        (s, v["result"].clone(), v["_version"].clone()),
        (201, json!("created"), json!(3))
    );
    assert_eq!(es.index_ext("short", "2", 7).await.0, 201);
    // Still there with the default of 60s.
    assert_eq!(es.index_ext("default", "1", 3).await.0, 409);
    assert_eq!(es.index_ext("default", "2", 7).await.0, 409);
    assert_eq!(es.index_ext("default", "2", 11).await.0, 201);
    server.shutdown().await;
}

#[tokio::test]
async fn internal_versions_continue_after_delete_until_gc() {
    let server = es_devserver::start(Config::default()).await.expect("start");
    let es = Es {
        client: reqwest::Client::new(),
        url: server.url().to_string(),
    };
    es.call(
        reqwest::Method::PUT,
        "/iv",
        Some(json!({"settings": {"index": {"gc_deletes": "500ms"}}})),
    )
    .await;
    let put = || es.call(reqwest::Method::PUT, "/iv/_doc/a", Some(json!({"x": 1})));
    assert_eq!(put().await.1["_version"], 1);
    let (s, v) = es.call(reqwest::Method::DELETE, "/iv/_doc/a", None).await;
    assert_eq!((s, v["_version"].clone()), (200, json!(2)));
    let (s, v) = put().await;
    assert_eq!(
        (s, v["_version"].clone(), v["result"].clone()),
        (201, json!(3), json!("created"))
    );
    es.call(reqwest::Method::DELETE, "/iv/_doc/a", None).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        put().await.1["_version"],
        1,
        "after gc_deletes the document starts over"
    );

    // gc_deletes is a dynamic setting.
    let (s, _) = es
        .call(
            reqwest::Method::PUT,
            "/iv/_settings",
            Some(json!({"index": {"gc_deletes": "1h"}})),
        )
        .await;
    assert_eq!(s, 200);
    let (_, v) = es.call(reqwest::Method::GET, "/iv/_settings", None).await;
    assert_eq!(v["iv"]["settings"]["index"]["gc_deletes"], "1h");
    es.call(
        reqwest::Method::DELETE,
        "/iv/_doc/a?version=9&version_type=external",
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(es.index_ext("iv", "a", 5).await.0, 409);
    server.shutdown().await;
}
