//! `indices_boost`: edges the official YAML leaves out — the removed object form, bad
//! entries, and `min_score` comparing against the boosted score.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::Es;
use serde_json::json;

#[tokio::test]
async fn boost_multiplies_the_score_before_min_score() {
    let es = Es::start().await;
    for i in ["a", "b"] {
        es.ok("PUT", &format!("/{i}/_doc/1"), Some(json!({"t": "x"})))
            .await;
    }
    es.ok("POST", "/_refresh", None).await;
    let v = es
        .ok(
            "POST",
            "/a,b/_search",
            Some(json!({"query": {"match_all": {}}, "indices_boost": [{"b": 3}], "min_score": 2})),
        )
        .await;
    assert_eq!(v["hits"]["total"]["value"], json!(1));
    assert_eq!(v["hits"]["hits"][0]["_index"], json!("b"));
    assert_eq!(v["hits"]["hits"][0]["_score"], json!(3.0));
    // A boost for an index outside the search changes nothing.
    let v = es
        .ok(
            "POST",
            "/a/_search",
            Some(json!({"indices_boost": [{"b": 3}]})),
        )
        .await;
    assert_eq!(v["hits"]["hits"][0]["_score"], json!(1.0));
    es.stop().await;
}

#[tokio::test]
async fn malformed_entries_are_parsing_errors() {
    let es = Es::start().await;
    es.ok("PUT", "/a", None).await;
    for bad in [
        json!({"a": 2}),
        json!([{"a": "x"}]),
        json!([{"a": 1, "b": 2}]),
        json!([{}]),
        json!(["a"]),
    ] {
        let e = es
            .err(
                "POST",
                "/a/_search",
                Some(json!({"indices_boost": bad})),
                400,
            )
            .await;
        assert_eq!(e["error"]["type"], json!("parsing_exception"), "{bad}");
    }
    let e = es
        .err(
            "POST",
            "/a/_search",
            Some(json!({"indices_boost": [{"missing": 2}]})),
            404,
        )
        .await;
    assert_eq!(e["error"]["type"], json!("index_not_found_exception"));
    es.stop().await;
}
