//! `GET /_cluster/health` on one node: what it waits for, what a timeout answers (200 with
//! `timed_out: true` in 8.x), closed indices counted, `level=indices|shards`, the health of
//! named indices and the parameter errors.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use common::Es;
use serde_json::json;

#[tokio::test]
async fn waits_that_one_node_cannot_meet_time_out_with_200() {
    let es = Es::start().await;
    for q in [
        "wait_for_nodes=10&timeout=1ms",
        "wait_for_nodes=>=2&timeout=1ms",
        "wait_for_nodes=gt(1)&timeout=1ms",
        "wait_for_active_shards=5&timeout=1ms",
        "wait_for_active_shards=5&timeout=1ms&return_200_for_cluster_health_timeout=true",
    ] {
        let (s, v) = es.call("GET", &format!("/_cluster/health?{q}"), None).await;
        assert_eq!(s, 200, "{q}: {v}");
        assert_eq!(v["timed_out"], json!(true), "{q}");
        assert_eq!(v["number_of_nodes"], json!(1));
        assert_eq!(v["active_shards"], json!(0));
    }
    // The 7.x answer when asked for explicitly.
    let (s, v) = es
        .call(
            "GET",
            "/_cluster/health?wait_for_nodes=3&timeout=1ms&return_200_for_cluster_health_timeout=false",
            None,
        )
        .await;
    assert_eq!((s, &v["timed_out"]), (408, &json!(true)));
    // Conditions one node meets answer at once.
    for q in [
        "wait_for_nodes=1",
        "wait_for_nodes=>=1",
        "wait_for_nodes=le(1)",
        "wait_for_nodes=<2",
        "wait_for_active_shards=0",
        "wait_for_active_shards=all",
        "wait_for_status=green",
        "wait_for_no_relocating_shards=true&wait_for_no_initializing_shards=true",
        "wait_for_events=languid",
    ] {
        let v = es.ok("GET", &format!("/_cluster/health?{q}"), None).await;
        assert_eq!(v["timed_out"], json!(false), "{q}");
    }
    es.stop().await;
}

#[tokio::test]
async fn replicas_stay_unassigned_so_green_times_out_at_yellow() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/rep",
        Some(json!({"settings": {"number_of_shards": 2, "number_of_replicas": 1}})),
    )
    .await;
    let started = Instant::now();
    let (s, v) = es
        .call(
            "GET",
            "/_cluster/health?wait_for_status=green&timeout=200ms",
            None,
        )
        .await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(s, 200);
    assert_eq!(v["status"], json!("yellow"));
    assert_eq!(v["timed_out"], json!(true));
    assert_eq!(v["active_shards"], json!(2));
    assert_eq!(v["unassigned_shards"], json!(2));
    assert_eq!(v["active_shards_percent_as_number"], json!(50.0));
    let v = es
        .ok("GET", "/_cluster/health?wait_for_status=yellow", None)
        .await;
    assert_eq!(v["timed_out"], json!(false));
    // All shards active cannot happen either.
    let v = es
        .ok(
            "GET",
            "/_cluster/health?wait_for_active_shards=all&timeout=1ms",
            None,
        )
        .await;
    assert_eq!(v["timed_out"], json!(true));
    es.stop().await;
}

#[tokio::test]
async fn closed_indices_count_and_expand_wildcards_selects_them() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/index-1",
        Some(json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}})),
    )
    .await;
    es.ok(
        "PUT",
        "/index-2",
        Some(json!({"settings": {"number_of_shards": 2, "number_of_replicas": 0}})),
    )
    .await;
    es.ok("POST", "/index-2/_close", None).await;
    let v = es.ok("GET", "/_cluster/health", None).await;
    assert_eq!(v["active_shards"], json!(3));
    assert!(v.get("indices").is_none());
    for (ew, active, names) in [
        ("open", 1, vec!["index-1"]),
        ("closed", 2, vec!["index-2"]),
        ("all", 3, vec!["index-1", "index-2"]),
        ("none", 0, vec![]),
    ] {
        let v = es
            .ok(
                "GET",
                &format!("/_cluster/health/index-*?level=indices&expand_wildcards={ew}"),
                None,
            )
            .await;
        assert_eq!(v["status"], json!("green"), "{ew}");
        assert_eq!(v["active_shards"], json!(active), "{ew}");
        let got: Vec<&String> = v["indices"]
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        assert_eq!(got, names, "{ew}");
    }
    es.stop().await;
}

#[tokio::test]
async fn levels_and_named_indices() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/logs",
        Some(json!({"settings": {"number_of_shards": 2, "number_of_replicas": 1}})),
    )
    .await;
    es.ok(
        "PUT",
        "/metrics",
        Some(json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}, "aliases": {"m": {}}})),
    )
    .await;
    // The health of one index only.
    let v = es.ok("GET", "/_cluster/health/metrics", None).await;
    assert_eq!(v["status"], json!("green"));
    assert_eq!(v["active_primary_shards"], json!(1));
    // Through an alias too.
    let v = es.ok("GET", "/_cluster/health/m?level=indices", None).await;
    assert_eq!(v["indices"]["metrics"]["status"], json!("green"));
    let v = es.ok("GET", "/_cluster/health?level=shards", None).await;
    assert_eq!(v["status"], json!("yellow"));
    let logs = &v["indices"]["logs"];
    assert_eq!(logs["status"], json!("yellow"));
    assert_eq!(logs["number_of_replicas"], json!(1));
    assert_eq!(logs["unassigned_shards"], json!(2));
    assert_eq!(
        logs["shards"]["1"],
        json!({"status": "yellow", "primary_active": true, "active_shards": 1,
               "relocating_shards": 0, "initializing_shards": 0, "unassigned_shards": 1,
               "unassigned_primary_shards": 0})
    );
    assert!(v["indices"]["metrics"]["shards"]["0"].is_object());
    assert!(v["indices"]["logs"].get("shards").is_some());
    let v = es.ok("GET", "/_cluster/health?level=indices", None).await;
    assert!(v["indices"]["logs"].get("shards").is_none());
    // human adds the readable forms.
    let v = es.ok("GET", "/_cluster/health?human", None).await;
    assert_eq!(v["active_shards_percent"], json!("60.0%"));
    assert_eq!(v["task_max_waiting_in_queue"], json!("0s"));
    // A missing index is red once the wait for it times out.
    let (s, v) = es
        .call("GET", "/_cluster/health/nope?timeout=50ms", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        (&v["status"], &v["timed_out"]),
        (&json!("red"), &json!(true))
    );
    // It turns up while the request waits.
    let url = format!("{}/_cluster/health/late?timeout=5s", es.url);
    let client = es.client.clone();
    let waiting = tokio::spawn(async move {
        let r = client.get(url).send().await.expect("request");
        r.json::<serde_json::Value>().await.expect("json")
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    es.ok("PUT", "/late", None).await;
    let v = waiting.await.expect("join");
    // One replica by default, which one node cannot assign.
    assert_eq!(
        (&v["status"], &v["timed_out"]),
        (&json!("yellow"), &json!(false))
    );
    es.stop().await;
}

#[tokio::test]
async fn parameter_errors() {
    let es = Es::start().await;
    for (q, kind, reason) in [
        (
            "level=nodes",
            "illegal_argument_exception",
            "level parameter must be one of [cluster] or [indices] or [shards] but was [nodes]",
        ),
        (
            "wait_for_status=purple",
            "illegal_argument_exception",
            "No enum constant org.elasticsearch.cluster.health.ClusterHealthStatus.PURPLE",
        ),
        (
            "wait_for_nodes=many",
            "number_format_exception",
            "For input string: \"many\"",
        ),
        (
            "wait_for_active_shards=-1",
            "illegal_argument_exception",
            "shard count cannot be a negative value",
        ),
        (
            "wait_for_events=soon",
            "illegal_argument_exception",
            "No enum constant org.elasticsearch.common.Priority.SOON",
        ),
        (
            "wait_for_relocating_shards=0",
            "illegal_argument_exception",
            "wait_for_relocating_shards has been removed, use wait_for_no_relocating_shards [true/false] instead",
        ),
    ] {
        let v = es
            .err("GET", &format!("/_cluster/health?{q}"), None, 400)
            .await;
        assert_eq!(v["error"]["type"], json!(kind), "{q}");
        assert_eq!(v["error"]["reason"], json!(reason), "{q}");
    }
    es.stop().await;
}
