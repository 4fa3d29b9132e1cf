//! The range query's own `format`, and the round-up of `lte`/`gt` bounds a pattern leaves
//! the time of day out of, beyond what the official YAML covers.

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
