//! `format` on a date field's sort values: values print in that format, a missing value
//! prints as null, and sorting itself still follows the dates.

mod common;

use common::Es;
use serde_json::json;

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
