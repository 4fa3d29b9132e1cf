//! Named queries (`_name`) on the edges the official YAML leaves out: names nested in
//! `must_not`/`filter`/`constant_score`, names in `post_filter`, and hits without any.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::Es;
use serde_json::json;

#[tokio::test]
async fn names_anywhere_in_the_query_are_reported() {
    let es = Es::start().await;
    es.ok("PUT", "/n/_doc/1", Some(json!({"a": "x", "b": 1})))
        .await;
    es.ok("PUT", "/n/_doc/2?refresh=true", Some(json!({"a": "y"})))
        .await;
    let v = es
        .ok(
            "POST",
            "/n/_search",
            Some(json!({
                "query": {"bool": {
                    "filter": {"constant_score": {"filter": {"exists": {"field": "a", "_name": "has_a"}}}},
                    "must_not": {"term": {"a.keyword": {"value": "z", "_name": "not_z"}}},
                    "_name": "outer"
                }},
                "post_filter": {"range": {"b": {"gte": 0, "_name": "b_pos"}}},
                "sort": ["_doc"]
            })),
        )
        .await;
    let hits = &v["hits"]["hits"];
    assert_eq!(v["hits"]["total"]["value"], json!(1));
    // `not_z` does not match the document, so it is not listed; names come sorted.
    assert_eq!(
        hits[0]["matched_queries"],
        json!(["b_pos", "has_a", "outer"])
    );
    let v = es
        .ok(
            "POST",
            "/n/_search?include_named_queries_score=true",
            Some(json!({"query": {"match": {"a": {"query": "y", "_name": "is_y", "boost": 3}}}})),
        )
        .await;
    assert_eq!(v["hits"]["hits"][0]["_id"], json!("2"));
    // BM25 as Elasticsearch scores it: boost 3 x idf ln(2) (one of two documents has "y").
    let score = v["hits"]["hits"][0]["matched_queries"]["is_y"]
        .as_f64()
        .unwrap_or_default();
    assert!((score - 3.0 * 2f64.ln()).abs() < 1e-5, "{score}");
    assert_eq!(v["hits"]["hits"][0]["_score"].as_f64(), Some(score));
    // Without named queries there is no `matched_queries` key.
    let v = es.ok("POST", "/n/_search", None).await;
    assert_eq!(v["hits"]["hits"][0].get("matched_queries"), None);
    es.stop().await;
}
