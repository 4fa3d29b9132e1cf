//! The range query's own `format`, and the round-up of `lte`/`gt` bounds a pattern leaves
//! the time of day out of, beyond what the official YAML covers.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{ids, Es};
use serde_json::{json, Value};

async fn range(es: &Es, bounds: Value) -> Vec<String> {
    let v = es
        .ok(
            "POST",
            "/d/_search",
            Some(json!({"query": {"range": {"date": bounds}}, "sort": ["date"]})),
        )
        .await;
    ids(&v)
}

#[tokio::test]
async fn bounds_use_the_query_format_and_round_up() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/d",
        Some(json!({"mappings": {"properties": {"date": {"type": "date"}}}})),
    )
    .await;
    for (id, date) in [
        ("a", "2020-03-01T00:00:00Z"),
        ("b", "2020-03-01T18:30:00Z"),
        ("c", "2020-03-02T00:00:00Z"),
    ] {
        es.ok("PUT", &format!("/d/_doc/{id}"), Some(json!({"date": date})))
            .await;
    }
    es.ok("POST", "/d/_refresh", None).await;
    // `lte` rounds up to the end of the day the pattern names; `lt` does not.
    let f = "dd/MM/yyyy";
    assert_eq!(
        range(&es, json!({"lte": "01/03/2020", "format": f})).await,
        ["a", "b"]
    );
    assert_eq!(
        range(&es, json!({"lt": "01/03/2020", "format": f})).await,
        Vec::<String>::new()
    );
    // `gt` rounds up too (after the whole day); `gte` starts at midnight.
    assert_eq!(
        range(&es, json!({"gt": "01/03/2020", "format": f})).await,
        ["c"]
    );
    assert_eq!(
        range(&es, json!({"gte": "01/03/2020", "format": f})).await,
        ["a", "b", "c"]
    );
    // A bound the query's format cannot read is the field format's error.
    let e = es
        .err(
            "POST",
            "/d/_search",
            Some(json!({"query": {"range": {"date": {"gte": "2020-03-01", "format": f}}}})),
            400,
        )
        .await;
    assert_eq!(
        e["error"]["root_cause"][0]["type"],
        json!("query_shard_exception")
    );
    let e = es
        .err(
            "POST",
            "/d/_search",
            Some(json!({"query": {"range": {"date": {"gte": "1", "format": "yyyy-MM-dd'"}}}})),
            400,
        )
        .await;
    assert_eq!(
        e["error"]["root_cause"][0]["type"],
        json!("query_shard_exception")
    );
    es.stop().await;
}

/// In the default format too, `lte` and `gt` bounds take the end of what they leave out:
/// `lte: 2024-01-15` holds the whole day, `gt: 2024-01-15T10` starts after 10:59:59.999, and
/// date math rounding (`||/M`) rounds to the end of the month.
#[tokio::test]
async fn default_format_bounds_round_up() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/d",
        Some(json!({"mappings": {"properties": {"t": {"type": "date"}}}})),
    )
    .await;
    for (id, t) in [
        ("1", "2024-01-15T00:00:00Z"),
        ("2", "2024-01-15T10:30:00Z"),
        ("3", "2024-01-15T23:59:59.999Z"),
        ("4", "2024-01-31T12:00:00Z"),
        ("5", "2024-02-01T00:00:00Z"),
    ] {
        es.ok("PUT", &format!("/d/_doc/{id}"), Some(json!({"t": t})))
            .await;
    }
    es.ok("POST", "/d/_refresh", None).await;
    let found = |range: serde_json::Value| {
        let es = &es;
        async move {
            let v = es
                .ok(
                    "POST",
                    "/d/_search",
                    Some(json!({"query": {"range": {"t": range}}})),
                )
                .await;
            let mut got = ids(&v);
            got.sort();
            got
        }
    };
    assert_eq!(
        found(json!({"lte": "2024-01-15"})).await,
        vec!["1", "2", "3"]
    );
    assert_eq!(
        found(json!({"lt": "2024-01-15"})).await,
        Vec::<String>::new()
    );
    assert_eq!(
        found(json!({"gte": "2024-01-15"})).await,
        vec!["1", "2", "3", "4", "5"]
    );
    assert_eq!(
        found(json!({"gt": "2024-01-15T10"})).await,
        vec!["3", "4", "5"]
    );
    assert_eq!(
        found(json!({"gt": "2024-01-15T10:30:00"})).await,
        vec!["3", "4", "5"]
    );
    assert_eq!(
        found(json!({"lte": "2024-01-01||/M"})).await,
        vec!["1", "2", "3", "4"]
    );
    assert_eq!(
        found(json!({"gte": "2024-01-15||/M", "lt": "2024-02-01"})).await,
        vec!["1", "2", "3", "4"]
    );
    es.stop().await;
}
