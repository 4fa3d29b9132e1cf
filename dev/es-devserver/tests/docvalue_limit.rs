//! `index.max_docvalue_fields_search`: the default of 100, a setting changed on an open
//! index, and the error checked before any field is read.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::Es;
use serde_json::json;

#[tokio::test]
async fn docvalue_fields_are_limited_per_index() {
    let es = Es::start().await;
    es.ok("PUT", "/a/_doc/1?refresh=true", Some(json!({"n": 1})))
        .await;
    let fields: Vec<String> = (0..101).map(|i| format!("f{i}")).collect();
    let e = es
        .err(
            "POST",
            "/a/_search",
            Some(json!({"docvalue_fields": fields})),
            400,
        )
        .await;
    let reason = e["error"]["root_cause"][0]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("less than or equal to: [100] but was [101]"),
        "{e}"
    );
    es.ok(
        "PUT",
        "/a/_settings",
        Some(json!({"index.max_docvalue_fields_search": 1})),
    )
    .await;
    es.ok(
        "POST",
        "/a/_search",
        Some(json!({"docvalue_fields": ["n"]})),
    )
    .await;
    es.err(
        "POST",
        "/a/_search",
        Some(json!({"docvalue_fields": ["n", "m"]})),
        400,
    )
    .await;
    es.stop().await;
}
