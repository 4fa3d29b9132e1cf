//! Alias behaviour: the assertions of the suite's `indices.get_alias/10_basic.yml` (skipped
//! there because its setup needs security), atomic `_aliases`, filters, write indices.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use es_devserver::Config;
use serde_json::{json, Value};

struct Es {
    client: reqwest::Client,
    url: String,
}

impl Es {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(m, format!("{}{}", self.url, path));
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

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.call(method, path, body).await;
        assert!(s < 300, "{method} {path} -> {s}: {v}");
        v
    }
}

async fn setup() -> (es_devserver::RunningServer, Es) {
    let server = es_devserver::start(Config::default()).await.expect("start");
    let es = Es {
        client: reqwest::Client::new(),
        url: server.url().to_string(),
    };
    for i in ["test_index", "test_index_2"] {
        es.ok(
            "PUT",
            &format!("/{i}"),
            Some(json!({"aliases": {"test_alias": {}, "test_blias": {}}})),
        )
        .await;
    }
    (server, es)
}

#[tokio::test]
async fn get_alias_forms() {
    let (server, es) = setup().await;
    es.ok("PUT", "/test_index_3", None).await;

    let v = es.ok("GET", "/_alias", None).await;
    assert_eq!(v["test_index"]["aliases"]["test_alias"], json!({}));
    assert_eq!(v["test_index_2"]["aliases"]["test_blias"], json!({}));
    assert_eq!(v["test_index_3"]["aliases"], json!({}));

    for path in ["/_alias/_all", "/_alias/*"] {
        let v = es.ok("GET", path, None).await;
        assert_eq!(v["test_index"]["aliases"]["test_blias"], json!({}));
        assert!(v.get("test_index_3").is_none(), "{path}: {v}");
    }
    for path in ["/_all/_alias", "/*/_alias"] {
        let v = es.ok("GET", path, None).await;
        assert_eq!(v["test_index_3"]["aliases"], json!({}), "{path}");
        assert_eq!(v["test_index_2"]["aliases"]["test_alias"], json!({}));
    }
    let v = es.ok("GET", "/test_index/_alias", None).await;
    assert!(v.get("test_index_2").is_none());
    assert_eq!(v["test_index"]["aliases"]["test_blias"], json!({}));

    let v = es.ok("GET", "/test_index/_alias/test_alias", None).await;
    assert_eq!(v, json!({"test_index": {"aliases": {"test_alias": {}}}}));
    let v = es.ok("GET", "/test_index/_alias/test_a*", None).await;
    assert_eq!(v, json!({"test_index": {"aliases": {"test_alias": {}}}}));
    let v = es
        .ok("GET", "/test_index/_alias/test_alias,test_blias", None)
        .await;
    assert_eq!(
        v["test_index"]["aliases"].as_object().map(|m| m.len()),
        Some(2)
    );
    let v = es.ok("GET", "/_alias/test_alias", None).await;
    assert_eq!(
        v,
        json!({"test_index": {"aliases": {"test_alias": {}}}, "test_index_2": {"aliases": {"test_alias": {}}}})
    );
    let v = es.ok("GET", "/*2/_alias/test_alias", None).await;
    assert_eq!(v, json!({"test_index_2": {"aliases": {"test_alias": {}}}}));

    let (s, v) = es
        .call("GET", "/test_index/_alias/non-existent", None)
        .await;
    assert_eq!(
        (s, v["status"].clone(), v["error"].clone()),
        (404, json!(404), json!("alias [non-existent] missing"))
    );
    let (s, v) = es
        .call(
            "GET",
            "/test_index/_alias/test_alias,non-existent,another-non-existent",
            None,
        )
        .await;
    assert_eq!(s, 404);
    assert_eq!(
        v["error"],
        "aliases [another-non-existent,non-existent] missing"
    );
    assert_eq!(v["test_index"]["aliases"]["test_alias"], json!({}));
    let (s, v) = es.call("GET", "/non-existent/_alias/foo", None).await;
    assert_eq!(
        (s, v["error"]["type"].clone()),
        (404, json!("index_not_found_exception"))
    );

    assert_eq!(es.call("HEAD", "/_alias/test_alias", None).await.0, 200);
    assert_eq!(es.call("HEAD", "/_alias/nope", None).await.0, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn update_aliases_is_atomic_and_validated() {
    let (server, es) = setup().await;
    // The second action fails: nothing of the request is applied.
    let (s, v) = es
        .call(
            "POST",
            "/_aliases",
            Some(json!({"actions": [
                {"add": {"index": "test_index", "alias": "new_alias"}},
                {"add": {"index": "missing_index", "alias": "other"}}
            ]})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["type"].clone()),
        (404, json!("index_not_found_exception"))
    );
    assert_eq!(es.call("HEAD", "/_alias/new_alias", None).await.0, 404);

    // Swap an alias from one index to another in one request.
    es.ok("PUT", "/v2", None).await;
    es.ok(
        "POST",
        "/_aliases",
        Some(json!({"actions": [
            {"remove": {"index": "test_index", "alias": "test_alias"}},
            {"remove": {"index": "test_index_2", "alias": "test_alias"}},
            {"add": {"index": "v2", "alias": "test_alias", "is_write_index": true}}
        ]})),
    )
    .await;
    let v = es.ok("GET", "/_alias/test_alias", None).await;
    assert_eq!(
        v,
        json!({"v2": {"aliases": {"test_alias": {"is_write_index": true}}}})
    );

    // Invalid names.
    let (s, v) = es.call("PUT", "/test_index/_alias/bad*name", None).await;
    assert_eq!(
        (s, v["error"]["type"].clone()),
        (400, json!("invalid_alias_name_exception"))
    );
    let (s, v) = es.call("PUT", "/test_index/_alias/v2", None).await;
    assert_eq!(
        (s, v["error"]["type"].clone()),
        (400, json!("invalid_alias_name_exception"))
    );
    // Two write indices for one alias.
    let (s, v) = es
        .call(
            "PUT",
            "/test_index/_alias/test_alias",
            Some(json!({"is_write_index": true})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["type"].clone()),
        (400, json!("illegal_argument_exception"))
    );
    // Removing a missing alias.
    let (s, v) = es.call("DELETE", "/test_index/_alias/nope", None).await;
    assert_eq!(
        (s, v["error"]["type"].clone()),
        (404, json!("aliases_not_found_exception"))
    );
    es.ok("DELETE", "/test_index/_alias/test_blias", None).await;
    let v = es.ok("GET", "/test_index/_alias", None).await;
    assert_eq!(v, json!({"test_index": {"aliases": {}}}));
    server.shutdown().await;
}

#[tokio::test]
async fn writes_and_searches_through_aliases() {
    let (server, es) = setup().await;
    // test_blias spans two indices without a write index: writes are rejected.
    let (s, v) = es
        .call("PUT", "/test_blias/_doc/1", Some(json!({"a": 1})))
        .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["type"], "illegal_argument_exception");
    assert_eq!(
        v["error"]["reason"],
        "no write index is defined for alias [test_blias]. The write index may be explicitly disabled using is_write_index=false or the alias points to multiple indices without one being designated as a write index"
    );
    // With a write index, writes go there.
    es.ok("POST", "/_aliases", Some(json!({"actions": [{"add": {"index": "test_index_2", "alias": "test_blias", "is_write_index": true}}]})))
        .await;
    let v = es
        .ok(
            "PUT",
            "/test_blias/_doc/1?refresh=true",
            Some(json!({"color": "red"})),
        )
        .await;
    assert_eq!(v["_index"], "test_index_2");
    es.ok(
        "PUT",
        "/test_index/_doc/2?refresh=true",
        Some(json!({"color": "blue"})),
    )
    .await;

    // A filtered alias restricts search and count.
    es.ok(
        "POST",
        "/_aliases",
        Some(json!({"actions": [{"add": {"indices": ["test_index", "test_index_2"], "alias": "reds", "filter": {"term": {"color.keyword": "red"}}}}]})),
    )
    .await;
    let v = es.ok("GET", "/reds/_count", None).await;
    assert_eq!(v["count"], 1);
    let v = es
        .ok(
            "POST",
            "/reds/_search",
            Some(json!({"query": {"match_all": {}}})),
        )
        .await;
    assert_eq!(v["hits"]["hits"][0]["_id"], "1");
    let v = es.ok("GET", "/test_alias/_count", None).await;
    assert_eq!(v["count"], 2);
    // Reads through an alias with several indices are rejected for single-document APIs.
    let (s, v) = es.call("GET", "/test_alias/_doc/1", None).await;
    assert_eq!(
        (s, v["error"]["type"].clone()),
        (400, json!("illegal_argument_exception"))
    );
    // Deleting an index by its alias name is refused.
    let (s, _) = es.call("DELETE", "/test_alias", None).await;
    assert_eq!(s, 400);
    server.shutdown().await;
}
