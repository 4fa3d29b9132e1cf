//! `_close` / `_open`: a closed index keeps its documents but refuses reads and writes with
//! `index_closed_exception`; wildcards skip it unless `expand_wildcards` says otherwise.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{ids, Es};
use serde_json::json;

#[tokio::test]
async fn close_then_open_keeps_documents() {
    let es = Es::start().await;
    es.ok("PUT", "/a/_doc/1?refresh=true", Some(json!({"x": 1})))
        .await;
    // Not yet refreshed when closed: visible after reopening (close flushes).
    es.ok("PUT", "/a/_doc/2", Some(json!({"x": 2}))).await;
    es.ok("PUT", "/b/_doc/1?refresh=true", Some(json!({"x": 3})))
        .await;

    let v = es.ok("POST", "/a/_close", None).await;
    assert_eq!(
        v,
        json!({"acknowledged": true, "shards_acknowledged": true, "indices": {"a": {"closed": true}}})
    );
    for (m, p, body) in [
        ("POST", "/a/_search", None),
        ("GET", "/a/_doc/1", None),
        ("PUT", "/a/_doc/3", Some(json!({"x": 4}))),
        ("POST", "/a/_count", None),
        ("POST", "/a/_refresh", None),
    ] {
        let e = es.err(m, p, body, 400).await;
        assert_eq!(
            e["error"]["type"],
            json!("index_closed_exception"),
            "{m} {p}"
        );
        assert_eq!(e["error"]["index"], json!("a"));
    }
    // Wildcards skip closed indices; ignore_unavailable skips a named one.
    let v = es.ok("POST", "/*/_search", None).await;
    assert_eq!(v["hits"]["total"]["value"], json!(1));
    let v = es
        .ok("POST", "/a,b/_search?ignore_unavailable=true", None)
        .await;
    assert_eq!(v["hits"]["total"]["value"], json!(1));
    // Metadata stays readable.
    let v = es.ok("GET", "/a", None).await;
    assert_eq!(
        v["a"]["settings"]["index"]["verified_before_close"],
        json!("true")
    );
    let cat = es
        .ok(
            "GET",
            "/_cat/indices?format=json&expand_wildcards=all",
            None,
        )
        .await;
    let status: Vec<_> = cat
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| (r["index"].clone(), r["status"].clone()))
        .collect();
    assert!(status.contains(&(json!("a"), json!("close"))), "{cat}");

    // Open by wildcard expands to closed indices.
    let v = es.ok("POST", "/a*/_open", None).await;
    assert_eq!(
        v,
        json!({"acknowledged": true, "shards_acknowledged": true})
    );
    let v = es
        .ok("POST", "/a/_search", Some(json!({"sort": ["x"]})))
        .await;
    assert_eq!(ids(&v), ["1", "2"]);
    es.ok("PUT", "/a/_doc/3", Some(json!({"x": 4}))).await;
    es.stop().await;
}

#[tokio::test]
async fn closed_indices_are_deleted_by_wildcard() {
    let es = Es::start().await;
    es.ok("PUT", "/logs-1", None).await;
    es.ok("POST", "/logs-1/_close", None).await;
    es.ok("DELETE", "/logs-*", None).await;
    es.err("GET", "/logs-1", None, 404).await;
    es.stop().await;
}
