//! Shard routing on reads: a get, exists or mget whose routing (or id) leads to another
//! shard than the document's does not find it. The official YAML covers plain routing; this
//! covers alias `index_routing`, the conflicting-routing error, one-shard indices, the
//! layout settings' validation, and `_routing` kept as doc values (left out of responses).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::Es;
use serde_json::json;

/// Five shards and five routing shards: with Elasticsearch's hash, routing `5` and id `1`
/// (and routing `4`) land on different shards.
async fn five_shards(es: &Es) {
    es.ok(
        "PUT",
        "/r",
        Some(
            json!({"settings": {"number_of_shards": 5, "number_of_routing_shards": 5},
                    "aliases": {"ra": {"index_routing": "5"}}}),
        ),
    )
    .await;
}

#[tokio::test]
async fn alias_index_routing_applies_to_reads() {
    let es = Es::start().await;
    five_shards(&es).await;
    es.ok("PUT", "/ra/_doc/1", Some(json!({"x": 1}))).await;
    let v = es.ok("GET", "/ra/_doc/1", None).await;
    assert_eq!(v["_routing"], json!("5"));
    es.err("GET", "/r/_doc/1", None, 404).await;
    let (status, _) = es.call("HEAD", "/r/_doc/1", None).await;
    assert_eq!(status, 404);
    es.ok("GET", "/r/_doc/1?routing=5", None).await;
    let v = es
        .ok(
            "POST",
            "/_mget",
            Some(json!({"docs": [{"_index": "ra", "_id": "1"}, {"_index": "r", "_id": "1", "routing": "4"}]})),
        )
        .await;
    assert_eq!(v["docs"][0]["found"], json!(true));
    assert_eq!(v["docs"][1]["found"], json!(false));
    // A routing that disagrees with the alias's is refused, not silently replaced.
    let e = es.err("GET", "/ra/_doc/1?routing=4", None, 400).await;
    assert_eq!(e["error"]["type"], json!("illegal_argument_exception"));
    es.stop().await;
}

#[tokio::test]
async fn one_shard_finds_any_routing() {
    let es = Es::start().await;
    es.ok("PUT", "/one/_doc/1?routing=a", Some(json!({"x": 1})))
        .await;
    for path in [
        "/one/_doc/1",
        "/one/_doc/1?routing=b",
        "/one/_source/1?routing=zz",
    ] {
        es.ok("GET", path, None).await;
    }
    es.stop().await;
}

#[tokio::test]
async fn layout_settings_are_validated() {
    let es = Es::start().await;
    for settings in [
        json!({"number_of_shards": 5, "number_of_routing_shards": 7}),
        json!({"number_of_shards": 2, "number_of_routing_shards": 1}),
        json!({"number_of_shards": 2, "routing_partition_size": 1024}),
    ] {
        let e = es
            .err("PUT", "/bad", Some(json!({"settings": settings})), 400)
            .await;
        assert_eq!(
            e["error"]["type"],
            json!("illegal_argument_exception"),
            "{settings}"
        );
    }
    es.stop().await;
}

#[tokio::test]
async fn routing_in_doc_values_is_not_returned() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/dv",
        Some(json!({"mappings": {"_routing": {"doc_values": true}}})),
    )
    .await;
    es.ok(
        "PUT",
        "/dv/_doc/1?routing=r&refresh=true",
        Some(json!({"x": 1})),
    )
    .await;
    let v = es.ok("GET", "/dv/_doc/1?routing=r", None).await;
    assert_eq!(v.get("_routing"), None);
    let v = es.ok("POST", "/dv/_search", None).await;
    assert_eq!(v["hits"]["hits"][0].get("_routing"), None);
    // The routing still decides visibility and search on `_routing`.
    let v = es
        .ok(
            "POST",
            "/dv/_search",
            Some(json!({"query": {"term": {"_routing": "r"}}})),
        )
        .await;
    assert_eq!(v["hits"]["total"]["value"], json!(1));
    es.stop().await;
}
