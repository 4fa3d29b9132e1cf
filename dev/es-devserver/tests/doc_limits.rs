//! Per-document limits (`index.mapping.*.limit`) on the paths the official YAML leaves out:
//! partial updates, bulk updates, and raising a limit on an open index.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::Es;
use serde_json::json;

#[tokio::test]
async fn updates_are_checked_like_index_requests() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/l",
        Some(json!({
            "settings": {"index.mapping.tokens_per_field.limit": 3},
            "mappings": {"properties": {"t": {"type": "text"}}}
        })),
    )
    .await;
    es.ok("PUT", "/l/_doc/1", Some(json!({"t": "one two three"})))
        .await;
    let e = es
        .err(
            "POST",
            "/l/_update/1",
            Some(json!({"doc": {"t": "one two three four"}})),
            400,
        )
        .await;
    assert_eq!(e["error"]["type"], json!("document_parsing_exception"));
    assert!(e["error"]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("[index.mapping.tokens_per_field.limit]")));
    let body = "{\"update\":{\"_index\":\"l\",\"_id\":\"1\"}}\n{\"doc\":{\"t\":\"a b c d\"}}\n{\"update\":{\"_index\":\"l\",\"_id\":\"1\"}}\n{\"doc\":{\"t\":\"a b\"}}\n";
    let (status, v) = es.call_ndjson("POST", "/_bulk", body).await;
    assert_eq!(status, 200);
    assert_eq!(v["errors"], json!(true));
    assert_eq!(v["items"][0]["update"]["status"], json!(400));
    assert_eq!(v["items"][1]["update"]["result"], json!("updated"));
    // Raising the limit on the open index lets the document in.
    es.ok(
        "PUT",
        "/l/_settings",
        Some(json!({"index.mapping.tokens_per_field.limit": -1})),
    )
    .await;
    es.ok(
        "POST",
        "/l/_update/1",
        Some(json!({"doc": {"t": "a b c d e"}})),
    )
    .await;
    es.stop().await;
}

#[tokio::test]
async fn nested_limit_applies_by_default_only_to_nested_fields() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/n",
        Some(json!({
            "settings": {"index.mapping.nested_objects.limit": 1},
            "mappings": {"properties": {"n": {"type": "nested"}}}
        })),
    )
    .await;
    // Plain object arrays are not nested documents.
    es.ok(
        "PUT",
        "/n/_doc/1",
        Some(json!({"o": [{"a": 1}, {"a": 2}], "n": {"a": 1}})),
    )
    .await;
    let e = es
        .err(
            "PUT",
            "/n/_doc/2",
            Some(json!({"n": [{"a": 1}, {"a": 2}]})),
            400,
        )
        .await;
    assert_eq!(e["error"]["type"], json!("document_parsing_exception"));
    es.stop().await;
}
