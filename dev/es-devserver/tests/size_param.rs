//! `size=-1` in the URL is read as unset (the default 10 hits) with Elasticsearch's
//! deprecation warning; other negative sizes, and -1 in the body, stay errors.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::Es;
use serde_json::json;

#[tokio::test]
async fn size_minus_one_is_unset_with_a_warning() {
    let es = Es::start().await;
    for i in 0..12 {
        es.ok("PUT", &format!("/s/_doc/{i}"), Some(json!({"n": i})))
            .await;
    }
    es.ok("POST", "/s/_refresh", None).await;
    let r = es
        .client
        .get(format!("{}/s/_search?size=-1", es.url))
        .send()
        .await
        .expect("request");
    let warning = r
        .headers()
        .get("warning")
        .and_then(|w| w.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        warning.contains("Using search size of -1 is deprecated"),
        "{warning}"
    );
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["hits"]["hits"].as_array().map(Vec::len), Some(10));
    let e = es.err("GET", "/s/_search?size=-2", None, 400).await;
    assert_eq!(e["error"]["type"], json!("illegal_argument_exception"));
    let e = es
        .err("POST", "/s/_search", Some(json!({"size": -1})), 400)
        .await;
    assert_eq!(e["error"]["type"], json!("illegal_argument_exception"));
    es.stop().await;
}
