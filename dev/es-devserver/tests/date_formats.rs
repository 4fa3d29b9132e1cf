//! Date fields with custom and named `format`s: documents are accepted, searched by range,
//! and dates print in the field's format.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{ids, Es};
use serde_json::json;

#[tokio::test]
async fn custom_date_formats() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/d",
        Some(json!({"mappings": {"properties": {
            "ts": {"type": "date", "format": "yyyy-MM-dd HH:mm:ss.SSS||epoch_millis"},
            "day": {"type": "date", "format": "dd/MM/yyyy"},
            "sec": {"type": "date", "format": "epoch_second"}
        }}})),
    )
    .await;
    es.ok(
        "PUT",
        "/d/_doc/1",
        Some(json!({"ts": "2024-03-05 10:20:30.123", "day": "05/03/2024", "sec": 1709634030})),
    )
    .await;
    es.ok(
        "PUT",
        "/d/_doc/2",
        Some(json!({"ts": 1709720430000_i64, "day": "06/03/2024", "sec": "1709720430"})),
    )
    .await;
    // A value that fits none of the formats is rejected with the field's format.
    let e = es
        .err("PUT", "/d/_doc/3", Some(json!({"day": "2024-03-05"})), 400)
        .await;
    assert_eq!(e["error"]["type"], json!("document_parsing_exception"));
    assert!(
        e["error"]["caused_by"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("failed to parse date field [2024-03-05] with format [dd/MM/yyyy]"),
        "{e}"
    );
    es.ok("POST", "/d/_refresh", None).await;

    let v = es
        .ok(
            "POST",
            "/d/_search",
            Some(json!({"query": {"range": {"day": {"gte": "06/03/2024"}}}})),
        )
        .await;
    assert_eq!(ids(&v), ["2"]);
    let v = es
        .ok(
            "POST",
            "/d/_search",
            Some(json!({"query": {"range": {"ts": {"lt": "2024-03-06 00:00:00.000"}}}})),
        )
        .await;
    assert_eq!(ids(&v), ["1"]);
    let v = es
        .ok(
            "POST",
            "/d/_search",
            Some(json!({"query": {"range": {"sec": {"gte": 1709634030, "lte": 1709634030}}}})),
        )
        .await;
    assert_eq!(ids(&v), ["1"]);

    // docvalue_fields print in the field's format, or the one asked for.
    let v = es
        .ok(
            "POST",
            "/d/_search",
            Some(json!({"query": {"ids": {"values": ["2"]}},
                "docvalue_fields": ["ts", "day", {"field": "day", "format": "yyyy/MM/dd"}]})),
        )
        .await;
    let f = &v["hits"]["hits"][0]["fields"];
    assert_eq!(f["ts"], json!(["2024-03-06 10:20:30.000"]), "{v}");
    assert_eq!(f["day"], json!(["2024/03/06"]), "{v}");
    es.stop().await;
}

#[tokio::test]
async fn invalid_format_is_a_mapping_error() {
    let es = Es::start().await;
    let e = es
        .err(
            "PUT",
            "/bad",
            Some(json!({"mappings": {"properties": {"t": {"type": "date", "format": "yyyy-MM-dd cc"}}}})),
            400,
        )
        .await;
    assert_eq!(e["error"]["type"], json!("mapper_parsing_exception"));
    es.stop().await;
}
