//! Create operations report only their first validation problem, as Elasticsearch does.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::Es;
use serde_json::json;

#[tokio::test]
async fn create_with_external_version_reports_one_error() {
    let es = Es::start().await;
    let e = es
        .err(
            "PUT",
            "/c/_create/1?version=5&version_type=external",
            Some(json!({"a": 1})),
            400,
        )
        .await;
    assert_eq!(
        e["error"]["reason"],
        json!("Validation Failed: 1: create operations only support internal versioning. use index instead;")
    );
    let e = es
        .err("PUT", "/c/_create/1?version=5", Some(json!({"a": 1})), 400)
        .await;
    assert_eq!(
        e["error"]["reason"],
        json!("Validation Failed: 1: create operations do not support explicit versions. use index instead;")
    );
    es.stop().await;
}
