//! The official `elasticsearch` client works against the dev server unchanged: index, get,
//! bulk and search through an alias, external versioning, and the product header.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use elasticsearch::http::transport::Transport;
use elasticsearch::http::StatusCode;
use elasticsearch::indices::{IndicesCreateParts, IndicesGetParts, IndicesRefreshParts};
use elasticsearch::params::{Refresh, VersionType};
use elasticsearch::{
    BulkOperation, BulkOperations, BulkParts, CountParts, DeleteParts, Elasticsearch, GetParts,
    IndexParts, SearchParts,
};
use serde_json::{json, Value};

async fn client() -> (es_devserver::RunningServer, Elasticsearch) {
    let server = es_devserver::start(es_devserver::Config::default())
        .await
        .expect("start");
    let transport = Transport::single_node(server.url()).expect("transport");
    (server, Elasticsearch::new(transport))
}

#[tokio::test]
async fn official_client_through_an_alias() {
    let (server, es) = client().await;

    let r = es
        .indices()
        .create(IndicesCreateParts::Index("products-v1"))
        .body(json!({
            "settings": {"number_of_replicas": 0},
            "mappings": {"properties": {"name": {"type": "text"}, "stock": {"type": "long"}}},
            "aliases": {"products": {"is_write_index": true}}
        }))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status_code(), StatusCode::OK);
    assert_eq!(
        r.headers()
            .get("x-elastic-product")
            .and_then(|v| v.to_str().ok()),
        Some("Elasticsearch"),
        "product header"
    );

    // Index through the alias with an external version.
    let r = es
        .index(IndexParts::IndexId("products", "1"))
        .version(5)
        .version_type(VersionType::External)
        .body(json!({"name": "Red Shoe", "stock": 3}))
        .send()
        .await
        .expect("index");
    assert_eq!(r.status_code(), StatusCode::CREATED);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["_index"], "products-v1");
    assert_eq!(body["_version"], 5);
    assert_eq!(body["result"], "created");

    // An older version is rejected with Elasticsearch's conflict.
    let r = es
        .index(IndexParts::IndexId("products", "1"))
        .version(3)
        .version_type(VersionType::External)
        .body(json!({"name": "Old Shoe", "stock": 1}))
        .send()
        .await
        .expect("index");
    assert_eq!(r.status_code(), StatusCode::CONFLICT);
    let err = r
        .exception()
        .await
        .expect("exception")
        .expect("an error body");
    assert_eq!(err.error().ty(), Some("version_conflict_engine_exception"));
    assert_eq!(
        err.error().reason(),
        Some(
            "[1]: version conflict, current version [5] is higher or equal to the one provided [3]"
        )
    );

    // Realtime get through the alias.
    let r = es
        .get(GetParts::IndexId("products", "1"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status_code(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["_source"], json!({"name": "Red Shoe", "stock": 3}));
    assert_eq!(body["_version"], 5);

    // Bulk through the alias, including a document the mapping rejects.
    let mut ops = BulkOperations::new();
    ops.push(
        BulkOperation::index(json!({"name": "Blue Shoe", "stock": 7}))
            .id("2")
            .version(1)
            .version_type(VersionType::External),
    )
    .expect("op");
    ops.push(BulkOperation::index(json!({"name": "Poison", "stock": "many"})).id("3"))
        .expect("op");
    ops.push(
        BulkOperation::index(json!({"name": "Stale", "stock": 0}))
            .id("1")
            .version(4)
            .version_type(VersionType::External),
    )
    .expect("op");
    ops.push(BulkOperation::<Value>::delete("404")).expect("op");
    let r = es
        .bulk(BulkParts::Index("products"))
        .body(vec![ops])
        .refresh(Refresh::True)
        .send()
        .await
        .expect("bulk");
    assert_eq!(r.status_code(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["errors"], true);
    let items = body["items"].as_array().expect("items");
    assert_eq!(items[0]["index"]["status"], 201);
    assert_eq!(items[0]["index"]["_index"], "products-v1");
    assert_eq!(items[1]["index"]["status"], 400);
    assert_eq!(
        items[1]["index"]["error"]["type"],
        "document_parsing_exception"
    );
    assert_eq!(
        items[1]["index"]["error"]["caused_by"]["type"],
        "illegal_argument_exception"
    );
    assert_eq!(items[2]["index"]["status"], 409);
    assert_eq!(
        items[2]["index"]["error"]["type"],
        "version_conflict_engine_exception"
    );
    assert_eq!(items[3]["delete"]["status"], 404);
    assert_eq!(items[3]["delete"]["result"], "not_found");

    // Search and count through the alias.
    let r = es
        .search(SearchParts::Index(&["products"]))
        .body(json!({"query": {"match": {"name": "shoe"}}, "sort": [{"stock": "desc"}]}))
        .send()
        .await
        .expect("search");
    assert_eq!(r.status_code(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["hits"]["total"], json!({"value": 2, "relation": "eq"}));
    assert_eq!(body["hits"]["hits"][0]["_id"], "2");
    assert_eq!(body["hits"]["hits"][0]["sort"], json!([7]));
    assert_eq!(body["hits"]["hits"][1]["_id"], "1");

    let r = es
        .count(CountParts::Index(&["products"]))
        .send()
        .await
        .expect("count");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["count"], 2);

    // External-version delete, then the index metadata through the client.
    let r = es
        .delete(DeleteParts::IndexId("products", "2"))
        .version(2)
        .version_type(VersionType::External)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status_code(), StatusCode::OK);
    es.indices()
        .refresh(IndicesRefreshParts::Index(&["products"]))
        .send()
        .await
        .expect("refresh");
    let r = es
        .indices()
        .get(IndicesGetParts::Index(&["products"]))
        .send()
        .await
        .expect("get index");
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        body["products-v1"]["aliases"]["products"]["is_write_index"],
        true
    );
    assert_eq!(
        body["products-v1"]["mappings"]["properties"]["stock"]["type"],
        "long"
    );

    let stats = server.stats();
    assert!(
        stats.bulk_requests >= 1 && stats.bulk_items >= 4,
        "{stats:?}"
    );
    server.shutdown().await;
}

#[test]
fn usable_from_a_sync_test() {
    let server = es_devserver::start_blocking(es_devserver::Config::default()).expect("start");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let r = reqwest::get(server.url()).await.expect("info");
        assert_eq!(
            r.headers()
                .get("x-elastic-product")
                .and_then(|v| v.to_str().ok()),
            Some("Elasticsearch")
        );
        let v: Value = r.json().await.expect("json");
        assert!(v["version"]["number"]
            .as_str()
            .is_some_and(|s| s.starts_with("8.")));
    });
    server.shutdown();
}
