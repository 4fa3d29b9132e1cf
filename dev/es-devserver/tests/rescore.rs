//! `rescore` with a query rescorer: the top `window_size` hits get the weighted scores of
//! both queries, the others `query_weight` times theirs; `index.max_rescore_window`; no
//! rescoring with a field sort.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{ids, Es};
use serde_json::json;

#[tokio::test]
async fn rescores_the_window() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/r",
        Some(json!({"settings": {"number_of_shards": 1},
                    "mappings": {"properties": {"rank": {"type": "integer"}, "tag": {"type": "keyword"}}}})),
    )
    .await;
    for (id, rank, tag) in [("a", 1, "x"), ("b", 2, "y"), ("c", 3, "y")] {
        es.ok(
            "PUT",
            &format!("/r/_doc/{id}"),
            Some(json!({"rank": rank, "tag": tag})),
        )
        .await;
    }
    es.ok("POST", "/r/_refresh", None).await;
    // First pass: constant 1 for all; the rescore query adds 10 for tag y.
    let body = |window: u64, qw: f64, rw: f64, mode: &str| {
        json!({
            "query": {"constant_score": {"filter": {"match_all": {}}}},
            "rescore": {"window_size": window, "query": {
                "rescore_query": {"constant_score": {"filter": {"term": {"tag": "y"}}, "boost": 10}},
                "query_weight": qw, "rescore_query_weight": rw, "score_mode": mode}}
        })
    };
    let v = es
        .ok("POST", "/r/_search", Some(body(10, 1.0, 1.0, "total")))
        .await;
    assert_eq!(ids(&v), vec!["b", "c", "a"]);
    assert_eq!(v["hits"]["hits"][0]["_score"], json!(11.0));
    assert_eq!(v["hits"]["hits"][2]["_score"], json!(1.0));
    assert_eq!(v["hits"]["max_score"], json!(11.0));
    let v = es
        .ok("POST", "/r/_search", Some(body(10, 2.0, 0.5, "multiply")))
        .await;
    assert_eq!(v["hits"]["hits"][0]["_score"], json!(10.0));
    assert_eq!(v["hits"]["hits"][2]["_score"], json!(2.0));
    let v = es
        .ok("POST", "/r/_search", Some(body(10, 1.0, 1.0, "min")))
        .await;
    assert_eq!(v["hits"]["hits"][0]["_score"], json!(1.0));
    // A window of one: only the first hit ("a", first by index order) is rescored; it does
    // not match the rescore query, so every score stays query_weight times the first one.
    let v = es
        .ok("POST", "/r/_search", Some(body(1, 3.0, 1.0, "total")))
        .await;
    assert_eq!(v["hits"]["hits"][0]["_score"], json!(3.0));
    // A list of rescorers applies in order.
    let v = es
        .ok(
            "POST",
            "/r/_search",
            Some(json!({
                "query": {"constant_score": {"filter": {"match_all": {}}}},
                "rescore": [
                    {"window_size": 10, "query": {"rescore_query": {"term": {"tag": "x"}}, "query_weight": 0}},
                    {"window_size": 10, "query": {"rescore_query": {"constant_score": {"filter": {"term": {"tag": "y"}}, "boost": 10}}, "query_weight": 0}}
                ]
            })),
        )
        .await;
    assert_eq!(ids(&v).len(), 3);
    assert_eq!(v["hits"]["hits"][0]["_score"], json!(10.0));
    es.stop().await;
}

#[tokio::test]
async fn limits_and_errors() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/r",
        Some(json!({"settings": {"index.max_rescore_window": 50}})),
    )
    .await;
    let rescore = |w: u64| {
        json!({"query": {"match_all": {}},
               "rescore": {"window_size": w, "query": {"rescore_query": {"match_all": {}}}}})
    };
    es.ok("POST", "/r/_search", Some(rescore(50))).await;
    let e = es.err("POST", "/r/_search", Some(rescore(51)), 400).await;
    assert_eq!(
        e["error"]["type"],
        json!("search_phase_execution_exception")
    );
    assert!(e.to_string().contains(
        "Rescore window [51] is too large. It must be less than [50]. This prevents allocating massive heaps for storing the results to be rescored. This limit can be set by changing the [index.max_rescore_window] index level setting."
    ));
    // Without the setting, max_result_window bounds it.
    es.ok(
        "PUT",
        "/s",
        Some(json!({"settings": {"index.max_result_window": 20}})),
    )
    .await;
    es.err("POST", "/s/_search", Some(rescore(21)), 400).await;
    let mut sorted = rescore(10);
    sorted["sort"] = json!([{"_id": "asc"}]);
    let e = es.err("POST", "/r/_search", Some(sorted), 400).await;
    assert!(e
        .to_string()
        .contains("Cannot use [sort] option in conjunction with [rescore]."));
    let mut by_score = rescore(10);
    by_score["sort"] = json!(["_score"]);
    es.ok("POST", "/r/_search", Some(by_score)).await;
    es.err(
        "POST",
        "/r/_search",
        Some(json!({"rescore": {"query": {"query_weight": 1}}})),
        400,
    )
    .await;
    es.stop().await;
}
