//! Alias details held against Elasticsearch 8.14+: routing precedence, `must_exist`,
//! per-action results, `-` exclusions.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::Es;
use serde_json::json;

#[tokio::test]
async fn specific_routing_wins_over_routing() {
    let es = Es::start().await;
    es.ok("PUT", "/i", None).await;
    es.ok(
        "POST",
        "/_aliases",
        Some(json!({"actions": [{"add": {"index": "i", "alias": "a", "index_routing": "x", "routing": "r", "search_routing": "s"}}]})),
    )
    .await;
    let v = es.ok("GET", "/i/_alias/a", None).await;
    assert_eq!(v["i"]["aliases"]["a"]["index_routing"], json!("x"));
    assert_eq!(v["i"]["aliases"]["a"]["search_routing"], json!("s"));
    es.ok(
        "PUT",
        "/i/_alias/b",
        Some(json!({"search_routing": "s", "routing": "r"})),
    )
    .await;
    let v = es.ok("GET", "/i/_alias/b", None).await;
    assert_eq!(v["i"]["aliases"]["b"]["index_routing"], json!("r"));
    assert_eq!(v["i"]["aliases"]["b"]["search_routing"], json!("s"));
    es.stop().await;
}

#[tokio::test]
async fn must_exist_and_action_results() {
    let es = Es::start().await;
    es.ok("PUT", "/i", Some(json!({"aliases": {"keep": {}}})))
        .await;
    for kind in ["add", "remove_index"] {
        let mut act = json!({"index": "i", "must_exist": true});
        if kind == "add" {
            act["alias"] = json!("x");
        }
        let e = es
            .err(
                "POST",
                "/_aliases",
                Some(json!({"actions": [{kind: act}]})),
                400,
            )
            .await;
        assert!(
            e["error"]["reason"]
                .as_str()
                .unwrap_or("")
                .contains("[must_exist] is unsupported"),
            "{e}"
        );
    }
    // A missing alias without must_exist: 200, errors, per-action results; the other
    // actions are applied.
    let v = es
        .ok(
            "POST",
            "/_aliases",
            Some(json!({"actions": [
                {"remove": {"index": "i", "alias": "nope"}},
                {"add": {"index": "i", "alias": "new"}}
            ]})),
        )
        .await;
    assert_eq!(v["errors"], json!(true));
    assert_eq!(v["action_results"][0]["status"], json!(404));
    assert_eq!(
        v["action_results"][0]["error"]["type"],
        json!("aliases_not_found_exception")
    );
    assert_eq!(v["action_results"][1]["status"], json!(200));
    let aliases = es.ok("GET", "/i/_alias", None).await;
    assert_eq!(aliases["i"]["aliases"], json!({"keep": {}, "new": {}}));
    // With must_exist the whole request fails and nothing changes.
    es.err(
        "POST",
        "/_aliases",
        Some(json!({"actions": [
            {"remove": {"index": "i", "alias": "nope", "must_exist": true}},
            {"remove": {"index": "i", "alias": "new"}}
        ]})),
        404,
    )
    .await;
    let aliases = es.ok("GET", "/i/_alias", None).await;
    assert_eq!(aliases["i"]["aliases"], json!({"keep": {}, "new": {}}));
    let v = es
        .ok(
            "POST",
            "/_aliases",
            Some(json!({"actions": [{"remove": {"index": "i", "alias": "new"}}]})),
        )
        .await;
    assert_eq!(v, json!({"acknowledged": true, "errors": false}));
    es.stop().await;
}

#[tokio::test]
async fn dash_excludes_only_after_a_wildcard() {
    let es = Es::start().await;
    es.ok("PUT", "/i", Some(json!({"aliases": {"ab": {}, "ac": {}}})))
        .await;
    // Without a wildcard before it, `-ab` is a (missing) alias name, not an exclusion.
    let v = es.err("GET", "/_alias/-ab", None, 404).await;
    assert_eq!(v["error"], json!("alias [-ab] missing"), "{v}");
    let v = es.ok("GET", "/_alias/a*,-ac", None).await;
    assert_eq!(v["i"]["aliases"], json!({"ab": {}}));
    es.stop().await;
}
