//! `date_nanos` at nanosecond precision: sort values (nanoseconds, or formatted), ranges
//! between two instants of the same millisecond, the `fields` output, and rounding of `lte`.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{ids, Es};
use serde_json::json;

#[tokio::test]
async fn nanosecond_precision() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/n",
        Some(json!({"mappings": {"properties": {"t": {"type": "date_nanos"}}}})),
    )
    .await;
    for (id, t) in [
        ("a", "2021-06-11T04:30:04.828456Z"),
        ("b", "2021-06-11T04:30:04.828123789Z"),
        ("c", "2021-06-12T00:00:00Z"),
    ] {
        es.ok("PUT", &format!("/n/_doc/{id}"), Some(json!({"t": t})))
            .await;
    }
    es.ok(
        "PUT",
        "/n/_doc/d?refresh=true",
        Some(json!({"t": 1_623_385_804_000.5})),
    )
    .await;
    let v = es
        .ok("POST", "/n/_search", Some(json!({"sort": [{"t": "asc"}]})))
        .await;
    assert_eq!(ids(&v), vec!["d", "b", "a", "c"]);
    // Raw sort values are nanoseconds.
    assert_eq!(
        v["hits"]["hits"][1]["sort"][0],
        json!(1_623_385_804_828_123_789i64)
    );
    assert_eq!(
        v["hits"]["hits"][0]["sort"][0],
        json!(1_623_385_804_000_500_000i64)
    );
    let v = es
        .ok(
            "POST",
            "/n/_search",
            Some(json!({"sort": [{"t": {"order": "asc", "format": "strict_date_optional_time_nanos"}}],
                        "fields": ["t"]})),
        )
        .await;
    assert_eq!(
        v["hits"]["hits"][1]["sort"][0],
        json!("2021-06-11T04:30:04.828123789Z")
    );
    assert_eq!(
        v["hits"]["hits"][2]["sort"][0],
        json!("2021-06-11T04:30:04.828456Z")
    );
    assert_eq!(
        v["hits"]["hits"][2]["fields"]["t"],
        json!(["2021-06-11T04:30:04.828456Z"])
    );
    assert_eq!(
        v["hits"]["hits"][3]["sort"][0],
        json!("2021-06-12T00:00:00.000Z")
    );
    let v = es
        .ok(
            "POST",
            "/n/_search",
            Some(json!({"sort": [{"t": {"order": "asc", "format": "epoch_millis"}}]})),
        )
        .await;
    assert_eq!(
        v["hits"]["hits"][1]["sort"][0],
        json!("1623385804828.123789")
    );
    // Two instants of the same millisecond are told apart.
    let v = es
        .ok(
            "POST",
            "/n/_search",
            Some(json!({"query": {"range": {"t": {"gt": "2021-06-11T04:30:04.828200Z"}}}})),
        )
        .await;
    let mut got = ids(&v);
    got.sort();
    assert_eq!(got, vec!["a", "c"]);
    // `lte` a day includes its last nanosecond.
    let v = es
        .ok(
            "POST",
            "/n/_search",
            Some(json!({"query": {"range": {"t": {"lte": "2021-06-11"}}}})),
        )
        .await;
    let mut got = ids(&v);
    got.sort();
    assert_eq!(got, vec!["a", "b", "d"]);
    es.stop().await;
}
