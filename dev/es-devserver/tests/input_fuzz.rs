//! Property tests: no input crashes the server. Random bytes and NDJSON-like text go to the
//! bulk parser and through the node's request handling; random JSON goes to the document,
//! search and index APIs. Every answer must be a well-formed Elasticsearch response.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::OnceLock;

use bytes::Bytes;
use es_devserver::bulk::{parse_bulk, BulkDefaults};
use es_devserver::{Config, Node};
use http::{HeaderMap, HeaderValue, Method};
use proptest::prelude::*;
use serde_json::Value;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| Node::new(Config::default()))
}

fn send(method: Method, uri: &str, body: Vec<u8>, content_type: &str) -> (u16, Bytes) {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(http::header::CONTENT_TYPE, v);
    }
    let resp = runtime().block_on(node().handle(method, uri, headers, Bytes::from(body)));
    (resp.status, resp.body)
}

/// An Elasticsearch error or success body: JSON, and errors carry `status` and `error`.
fn assert_well_formed(status: u16, body: &[u8]) {
    assert!((200..600).contains(&status), "status {status}");
    if body.is_empty() {
        return;
    }
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("invalid JSON body ({e}): {}", String::from_utf8_lossy(body)));
    if status >= 400 && !(status == 404 && v.get("found").is_some()) && v.get("count").is_none() {
        let is_bulk_style = v.get("items").is_some();
        let has_error = v.get("error").is_some() || v.get("result").is_some() || is_bulk_style;
        assert!(has_error, "error body without `error`: {v}");
    }
}

fn ndjson_fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{\"index\":{\"_index\":\"fuzz\"}}".to_string()),
        Just("{\"index\":{\"_index\":\"fuzz\",\"_id\":\"1\"}}".to_string()),
        Just("{\"create\":{\"_index\":\"fuzz\",\"_id\":\"2\"}}".to_string()),
        Just("{\"delete\":{\"_index\":\"fuzz\",\"_id\":\"1\"}}".to_string()),
        Just("{\"update\":{\"_index\":\"fuzz\",\"_id\":\"1\"}}".to_string()),
        Just("{\"index\":{\"_index\":\"fuzz\",\"version\":3,\"version_type\":\"external\",\"_id\":\"3\"}}".to_string()),
        Just("{\"doc\":{\"a\":1},\"doc_as_upsert\":true}".to_string()),
        Just("{\"a\":\"text\",\"n\":1,\"o\":{\"x\":[1,2]}}".to_string()),
        Just("{\"n\":\"not a number\"}".to_string()),
        Just("{}".to_string()),
        Just("[]".to_string()),
        Just("{\"index\":".to_string()),
        Just("".to_string()),
        Just("\r".to_string()),
        "[ -~]{0,30}",
        any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        "[a-z_.*]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_.]{0,8}|query|match|term|bool|range|must|filter|should|size|from|sort|_source|properties|type|settings|mappings|aliases|doc", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn bulk_parser_never_panics(data in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_bulk(&data, &BulkDefaults::default());
        let _ = parse_bulk(&data, &BulkDefaults { index: Some("fuzz".into()), ..BulkDefaults::default() });
    }

    #[test]
    fn bulk_requests_get_es_answers(lines in prop::collection::vec(ndjson_fragment(), 0..12), trailing_newline in any::<bool>()) {
        let mut body = lines.join("\n");
        if trailing_newline {
            body.push('\n');
        }
        let (status, resp) = send(Method::POST, "/_bulk", body.into_bytes(), "application/x-ndjson");
        assert_well_formed(status, &resp);
        prop_assert!(status == 200 || status == 400 || status == 404 || status == 406, "status {}", status);
    }

    #[test]
    fn random_documents(doc in json_value(), id in "[a-zA-Z0-9_-]{0,5}") {
        let body = serde_json::to_vec(&doc).unwrap_or_default();
        let uri = if id.is_empty() { "/docs/_doc".to_string() } else { format!("/docs/_doc/{id}?refresh=true") };
        let (status, resp) = send(Method::POST, &uri, body, "application/json");
        assert_well_formed(status, &resp);
    }

    #[test]
    fn random_search_bodies(q in json_value()) {
        let body = serde_json::to_vec(&q).unwrap_or_default();
        for uri in ["/_search", "/docs/_search", "/_count", "/docs/_count", "/fuzz,docs/_search?size=3&sort=n:desc"] {
            let (status, resp) = send(Method::POST, uri, body.clone(), "application/json");
            assert_well_formed(status, &resp);
        }
    }

    #[test]
    fn random_index_and_alias_bodies(v in json_value(), name in "[a-z<>{}|*_-]{1,8}") {
        let body = serde_json::to_vec(&v).unwrap_or_default();
        for (m, uri) in [
            (Method::PUT, format!("/{name}")),
            (Method::PUT, "/docs/_mapping".to_string()),
            (Method::PUT, "/docs/_settings".to_string()),
            (Method::POST, "/_aliases".to_string()),
            (Method::PUT, format!("/docs/_alias/{name}")),
            (Method::POST, "/_mget".to_string()),
            (Method::POST, "/docs/_update/1".to_string()),
            (Method::PUT, "/_devserver/faults".to_string()),
        ] {
            let (status, resp) = send(m, &uri, body.clone(), "application/json");
            assert_well_formed(status, &resp);
        }
        // Keep the fault rules empty for the other cases.
        let _ = send(Method::DELETE, "/_devserver/faults", Vec::new(), "application/json");
    }

    #[test]
    fn random_raw_bodies_and_paths(body in prop::collection::vec(any::<u8>(), 0..200), path in "(/[a-z_%*,<>{}.-]{0,8}){0,4}(\\?[a-z_=&%.]{0,20})?") {
        for m in [Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::HEAD] {
            let (status, resp) = send(m, &path, body.clone(), "application/json");
            assert_well_formed(status, &resp);
        }
    }
}
