//! `PUT|GET /_cluster/settings`: persistent and transient layers, validation, and the two
//! settings the server acts on (`action.destructive_requires_name`,
//! `action.auto_create_index`).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::Es;
use serde_json::json;

#[tokio::test]
async fn put_and_get_layers() {
    let es = Es::start().await;
    let v = es
        .ok(
            "PUT",
            "/_cluster/settings?flat_settings=true",
            Some(json!({"persistent": {"action.destructive_requires_name": "true"}})),
        )
        .await;
    assert_eq!(
        v,
        json!({"acknowledged": true,
               "persistent": {"action.destructive_requires_name": "true"},
               "transient": {}})
    );
    let v = es.ok("GET", "/_cluster/settings", None).await;
    assert_eq!(
        v,
        json!({"persistent": {"action": {"destructive_requires_name": "true"}}, "transient": {}})
    );
    // Transient settings win, and are deprecated.
    let r = es
        .client
        .put(format!("{}/_cluster/settings", es.url))
        .header("content-type", "application/json")
        .body(json!({"transient": {"search.allow_expensive_queries": false}}).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 200);
    let warning = r
        .headers()
        .get("warning")
        .and_then(|w| w.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        warning.contains("[transient settings removal]"),
        "{warning}"
    );
    let v = es
        .ok(
            "GET",
            "/_cluster/settings?flat_settings=true&include_defaults=true",
            None,
        )
        .await;
    assert_eq!(
        v["transient"],
        json!({"search.allow_expensive_queries": "false"})
    );
    assert_eq!(v["defaults"]["cluster.max_shards_per_node"], json!("1000"));
    assert!(v["defaults"]
        .get("action.destructive_requires_name")
        .is_none());
    // null resets.
    es.ok(
        "PUT",
        "/_cluster/settings",
        Some(
            json!({"persistent": {"action.destructive_requires_name": null},
                    "transient": {"search.*": null}}),
        ),
    )
    .await;
    let v = es.ok("GET", "/_cluster/settings", None).await;
    assert_eq!(v, json!({"persistent": {}, "transient": {}}));
    es.stop().await;
}

#[tokio::test]
async fn validation() {
    let es = Es::start().await;
    let e = es
        .err(
            "PUT",
            "/_cluster/settings",
            Some(json!({"persistent": {"no.such.setting": 1}})),
            400,
        )
        .await;
    assert_eq!(
        e["error"]["reason"],
        json!("persistent setting [no.such.setting], not recognized")
    );
    let e = es
        .err(
            "PUT",
            "/_cluster/settings",
            Some(json!({"transient": {"action": {"destructive_requires_name": "maybe"}}})),
            400,
        )
        .await;
    assert_eq!(e["error"]["type"], json!("illegal_argument_exception"));
    let e = es
        .err(
            "PUT",
            "/_cluster/settings",
            Some(json!({"persistent": {}})),
            400,
        )
        .await;
    assert_eq!(
        e["error"]["reason"],
        json!("Validation Failed: 1: no settings to update;")
    );
    // Nothing of a refused update is applied.
    es.err(
        "PUT",
        "/_cluster/settings",
        Some(json!({"persistent": {"cluster.max_shards_per_node": 5, "bad": 1}})),
        400,
    )
    .await;
    let v = es.ok("GET", "/_cluster/settings", None).await;
    assert_eq!(v["persistent"], json!({}));
    es.stop().await;
}

#[tokio::test]
async fn destructive_requires_name_at_runtime() {
    let es = Es::start().await;
    es.ok("PUT", "/index1", None).await;
    es.ok(
        "PUT",
        "/_cluster/settings",
        Some(json!({"persistent": {"action.destructive_requires_name": true}})),
    )
    .await;
    let e = es.err("DELETE", "/index*", None, 400).await;
    assert_eq!(
        e["error"]["reason"],
        json!("Wildcard expressions or all indices are not allowed")
    );
    // A missing concrete name with ignore_unavailable is fine.
    es.ok("DELETE", "/index3?ignore_unavailable=true", None)
        .await;
    es.ok(
        "PUT",
        "/_cluster/settings",
        Some(json!({"persistent": {"action.destructive_requires_name": false}})),
    )
    .await;
    es.ok("DELETE", "/index*", None).await;
    es.stop().await;
}

#[tokio::test]
async fn auto_create_index() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/_cluster/settings",
        Some(json!({"persistent": {"action.auto_create_index": "+logs-*,-secret*"}})),
    )
    .await;
    es.ok("PUT", "/logs-1/_doc/1", Some(json!({"a": 1}))).await;
    let e = es
        .err("PUT", "/secret1/_doc/1", Some(json!({"a": 1})), 404)
        .await;
    assert_eq!(e["error"]["type"], json!("index_not_found_exception"));
    let e = es
        .err("PUT", "/other/_doc/1", Some(json!({"a": 1})), 404)
        .await;
    assert_eq!(
        e["error"]["reason"],
        json!("no such index [other] and [action.auto_create_index] ([+logs-*,-secret*]) doesn't match")
    );
    // Explicit creation is not affected; existing indices take writes.
    es.ok("PUT", "/other", None).await;
    es.ok("PUT", "/other/_doc/1", Some(json!({"a": 1}))).await;
    es.ok(
        "PUT",
        "/_cluster/settings",
        Some(json!({"persistent": {"action.auto_create_index": false}})),
    )
    .await;
    let (_, v) = es
        .call_ndjson(
            "POST",
            "/_bulk",
            "{\"index\":{\"_index\":\"nope\",\"_id\":\"1\"}}\n{\"a\":1}\n",
        )
        .await;
    assert_eq!(v["items"][0]["index"]["status"], json!(404));
    assert_eq!(
        v["items"][0]["index"]["error"]["reason"],
        json!("no such index [nope] and [action.auto_create_index] is [false]")
    );
    es.stop().await;
}
