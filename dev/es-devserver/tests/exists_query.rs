//! `exists` on metadata fields and on text that analyzes to nothing.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::Es;
use serde_json::{json, Value};

async fn hits(es: &Es, field: &str) -> Value {
    let v = es
        .ok(
            "POST",
            "/e/_search",
            Some(json!({"query": {"exists": {"field": field}}})),
        )
        .await;
    v["hits"]["total"]["value"].clone()
}

#[tokio::test]
async fn metadata_and_empty_text() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/e",
        Some(json!({"mappings": {"properties": {"t": {"type": "text"}}}})),
    )
    .await;
    for (id, doc) in [
        ("1", json!({"t": ""})),
        ("2", json!({"t": "  ,  "})),
        ("3", json!({"t": null})),
        ("4", json!({"t": []})),
        ("5", json!({})),
    ] {
        es.ok("PUT", &format!("/e/_doc/{id}"), Some(doc)).await;
    }
    es.ok("POST", "/e/_refresh", None).await;
    // A string exists even with no tokens; null, [] and absence do not.
    assert_eq!(hits(&es, "t").await, json!(2));
    for f in ["_seq_no", "_version", "_primary_term", "_id"] {
        assert_eq!(hits(&es, f).await, json!(5), "{f}");
    }
    let e = es
        .err(
            "POST",
            "/e/_search",
            Some(json!({"query": {"exists": {"field": "_source"}}})),
            400,
        )
        .await;
    assert_eq!(
        e["error"]["root_cause"][0]["type"],
        json!("query_shard_exception")
    );
    es.stop().await;
}
