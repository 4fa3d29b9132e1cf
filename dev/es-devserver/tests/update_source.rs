//! `_source` on the update API returns the updated document in a `get` object.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::Es;
use serde_json::json;

#[tokio::test]
async fn update_returns_get_with_source() {
    let es = Es::start().await;
    es.ok("PUT", "/u/_doc/1", Some(json!({"a": 1, "b": "x"})))
        .await;
    let v = es
        .ok(
            "POST",
            "/u/_update/1",
            Some(json!({"doc": {"a": 2}, "_source": true})),
        )
        .await;
    assert_eq!(v["result"], json!("updated"));
    assert_eq!(v["get"]["found"], json!(true));
    assert_eq!(v["get"]["_source"], json!({"a": 2, "b": "x"}));
    assert_eq!(v["get"]["_seq_no"], v["_seq_no"]);

    let v = es
        .ok(
            "POST",
            "/u/_update/1?_source_includes=b",
            Some(json!({"doc": {"a": 3}})),
        )
        .await;
    assert_eq!(v["get"]["_source"], json!({"b": "x"}));

    // Without _source there is no get.
    let v = es
        .ok("POST", "/u/_update/1", Some(json!({"doc": {"a": 4}})))
        .await;
    assert!(v.get("get").is_none(), "{v}");
    es.stop().await;
}

#[tokio::test]
async fn search_details() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/s/_doc/1?refresh=true",
        Some(json!({"name": "BAR baz"})),
    )
    .await;
    let v = es
        .ok(
            "GET",
            "/s/_search?track_total_hits=false&rest_total_hits_as_int=true",
            None,
        )
        .await;
    assert_eq!(v["hits"]["total"], json!(-1));
    let e = es
        .err("GET", "/s/_search?search_type=query_and_fetch", None, 400)
        .await;
    assert_eq!(
        e["error"]["reason"],
        json!("Unsupported search type [query_and_fetch]")
    );
    let v = es.ok("GET", "/s/_search?q=name:BA*", None).await;
    assert_eq!(v["hits"]["total"]["value"], json!(1), "{v}");
    es.stop().await;
}
