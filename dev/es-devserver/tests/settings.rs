//! Index settings validation: unknown settings are refused, static settings only change on a
//! closed index (or with `reopen=true`), `auto_expand_replicas` on one node.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::Es;
use serde_json::json;

#[tokio::test]
async fn unknown_settings_are_rejected() {
    let es = Es::start().await;
    let e = es
        .err(
            "PUT",
            "/s",
            Some(json!({"settings": {"garbage": "garbage"}})),
            400,
        )
        .await;
    assert_eq!(e["error"]["type"], json!("illegal_argument_exception"));
    assert!(
        e["error"]["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("unknown setting [index.garbage]"),
        "{e}"
    );
    es.err("GET", "/s", None, 404).await;
    es.ok(
        "PUT",
        "/s",
        Some(json!({"settings": {"number_of_replicas": 0}})),
    )
    .await;
    let e = es
        .err(
            "PUT",
            "/s/_settings",
            Some(json!({"index": {"garbage": 1}})),
            400,
        )
        .await;
    assert!(e["error"]["reason"]
        .as_str()
        .unwrap_or("")
        .contains("unknown setting"));
    es.stop().await;
}

#[tokio::test]
async fn static_settings_need_a_closed_index() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/s",
        Some(json!({"settings": {"number_of_replicas": 0}})),
    )
    .await;
    es.ok(
        "PUT",
        "/s/_settings",
        Some(json!({"number_of_replicas": 1})),
    )
    .await;
    let e = es
        .err(
            "PUT",
            "/s/_settings",
            Some(json!({"index.codec": "best_compression"})),
            400,
        )
        .await;
    assert!(
        e["error"]["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("Can't update non dynamic settings [[index.codec]] for open indices"),
        "{e}"
    );
    let v = es.ok("GET", "/s/_settings?flat_settings=true", None).await;
    assert_eq!(v["s"]["settings"]["index.codec"], serde_json::Value::Null);

    es.ok(
        "PUT",
        "/s/_settings?reopen=true",
        Some(json!({"index.codec": "best_compression"})),
    )
    .await;
    let v = es.ok("GET", "/s/_settings?flat_settings=true", None).await;
    assert_eq!(v["s"]["settings"]["index.codec"], json!("best_compression"));

    es.ok("POST", "/s/_close", None).await;
    es.ok(
        "PUT",
        "/s/_settings",
        Some(json!({"index.codec": "default"})),
    )
    .await;
    es.ok("POST", "/s/_open", None).await;
    let v = es.ok("GET", "/s/_settings?flat_settings=true", None).await;
    assert_eq!(v["s"]["settings"]["index.codec"], json!("default"));
    es.stop().await;
}

#[tokio::test]
async fn auto_expand_replicas_is_green_on_one_node() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/a",
        Some(json!({"settings": {"auto_expand_replicas": "0-1"}})),
    )
    .await;
    let v = es
        .ok(
            "GET",
            "/_cluster/health?wait_for_status=green&timeout=1s",
            None,
        )
        .await;
    assert_eq!(v["status"], json!("green"));
    es.stop().await;
}
