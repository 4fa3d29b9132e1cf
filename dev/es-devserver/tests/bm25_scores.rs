//! Relevance scores are BM25 as Elasticsearch computes them (k1 1.2, b 0.75, the `(k1 + 1)`
//! factor of its legacy similarity, field lengths as Lucene norms), so `min_score` and
//! rankings agree with it.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{ids, Es};
use serde_json::{json, Value};

fn close(v: &Value, want: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() < 1e-4)
}

#[tokio::test]
async fn text_and_keyword_scores() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/s/_doc/1",
        Some(json!({"field": "foo bar", "tag": "a"})),
    )
    .await;
    es.ok(
        "PUT",
        "/s/_doc/2?refresh=true",
        Some(json!({"field": "foo bar bar bar bar", "tag": "b"})),
    )
    .await;
    // idf ln(1.2); lengths 2 and 5 against an average of 3.5.
    let v = es
        .ok(
            "POST",
            "/s/_search",
            Some(json!({"query": {"match": {"field": "foo"}}})),
        )
        .await;
    assert_eq!(ids(&v), vec!["1", "2"]);
    assert!(close(&v["hits"]["hits"][0]["_score"], 0.22108), "{v}");
    assert!(close(&v["hits"]["hits"][1]["_score"], 0.15512), "{v}");
    // A term that occurs more often outweighs the longer field.
    let v = es
        .ok(
            "POST",
            "/s/_search",
            Some(json!({"query": {"match": {"field": "bar"}}})),
        )
        .await;
    assert_eq!(ids(&v), vec!["2", "1"]);
    // A keyword without norms: its idf (ln(2) for one of two documents).
    let v = es
        .ok(
            "POST",
            "/s/_search",
            Some(json!({"query": {"term": {"tag": "a"}}})),
        )
        .await;
    assert!(close(&v["hits"]["hits"][0]["_score"], 2f64.ln()), "{v}");
    // min_score on count sees the same scores.
    for (min, count) in [(0.2, 1), (0.1, 2), (0.5, 0)] {
        let v = es
            .ok(
                "GET",
                &format!("/s/_count?q=field:foo&min_score={min}"),
                None,
            )
            .await;
        assert_eq!(v["count"], json!(count), "min_score {min}");
    }
    // Rare terms weigh more than common ones.
    es.ok(
        "PUT",
        "/s/_doc/3?refresh=true",
        Some(json!({"field": "foo baz"})),
    )
    .await;
    let v = es
        .ok(
            "POST",
            "/s/_search",
            Some(json!({"query": {"match": {"field": "foo baz"}}})),
        )
        .await;
    assert_eq!(ids(&v).first().map(String::as_str), Some("3"));
    es.stop().await;
}
