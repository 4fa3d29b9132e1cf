//! `format` on a date field's sort values: values print in that format, a missing value
//! prints as null, and sorting itself still follows the dates; the missing values of numbers.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::Es;
use serde_json::{json, Value};

#[tokio::test]
async fn formatted_date_sort_values() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/s",
        Some(json!({"mappings": {"properties": {"d": {"type": "date"}}}})),
    )
    .await;
    for (id, doc) in [
        ("1", json!({"d": "2021-12-31T10:00:00Z"})),
        ("2", json!({})),
        ("3", json!({"d": "2020-01-02T00:00:00Z"})),
    ] {
        es.ok("PUT", &format!("/s/_doc/{id}"), Some(doc)).await;
    }
    es.ok("POST", "/s/_refresh", None).await;
    let v = es
        .ok(
            "POST",
            "/s/_search",
            Some(json!({"sort": [{"d": {"order": "desc", "format": "dd/MM/yyyy"}}]})),
        )
        .await;
    let sorts: Vec<_> = v["hits"]["hits"]
        .as_array()
        .map(|a| a.iter().map(|h| h["sort"][0].clone()).collect())
        .unwrap_or_default();
    assert_eq!(
        sorts,
        [json!("31/12/2021"), json!("02/01/2020"), json!(null)]
    );
    // Without a format the raw epoch value is kept.
    let v = es
        .ok("POST", "/s/_search", Some(json!({"sort": [{"d": "asc"}]})))
        .await;
    assert_eq!(
        v["hits"]["hits"][0]["sort"][0],
        json!(1_577_923_200_000_i64)
    );
    es.stop().await;
}

/// Missing values of `integer`, `short` and `byte` fields sort as Integer.MAX_VALUE (or
/// MIN_VALUE), those of `long` fields as Long's, so a sort across both keeps them apart.
#[tokio::test]
async fn missing_values_of_narrow_integers() {
    let es = Es::start().await;
    for (index, ty) in [("il", "long"), ("ii", "integer"), ("ib", "byte")] {
        es.ok(
            "PUT",
            &format!("/{index}"),
            Some(json!({"mappings": {"properties": {"f": {"type": ty}}}})),
        )
        .await;
        es.ok(
            "PUT",
            &format!("/{index}/_doc/has?refresh=true"),
            Some(json!({"f": 3})),
        )
        .await;
        es.ok(
            "PUT",
            &format!("/{index}/_doc/none?refresh=true"),
            Some(json!({"g": 1})),
        )
        .await;
    }
    let v = es
        .ok(
            "POST",
            "/il,ii,ib/_search",
            Some(json!({"sort": [{"f": "asc"}]})),
        )
        .await;
    let sorts: Vec<Value> = v["hits"]["hits"]
        .as_array()
        .map(|a| a.iter().map(|h| h["sort"][0].clone()).collect())
        .unwrap_or_default();
    assert_eq!(
        sorts,
        vec![
            json!(3),
            json!(3),
            json!(3),
            json!(2147483647),
            json!(2147483647),
            json!(9223372036854775807i64)
        ]
    );
    let v = es
        .ok(
            "POST",
            "/ii/_search",
            Some(json!({"sort": [{"f": {"order": "asc", "missing": "_first"}}]})),
        )
        .await;
    assert_eq!(v["hits"]["hits"][0]["sort"][0], json!(-2147483648));
    es.stop().await;
}
