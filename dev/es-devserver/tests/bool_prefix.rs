//! `match_bool_prefix` and `multi_match` `type: bool_prefix`, on the edges the official
//! YAML tests leave out: keyword fields, unknown analyzers and types, `prefix_length` with
//! fuzziness, non-string fields and per-field boosts.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{ids, Es};
use serde_json::{json, Value};

async fn seeded() -> Es {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/t",
        Some(json!({"mappings": {"properties": {
            "title": {"type": "text"},
            "body": {"type": "text"},
            "tag": {"type": "keyword"},
            "n": {"type": "long"}
        }}})),
    )
    .await;
    for (id, title, body, tag) in [
        ("1", "quick brown fox", "", "alpha-one"),
        ("2", "lazy dog", "fox", "alpha-two"),
        ("3", "quack", "", "beta"),
    ] {
        es.ok(
            "PUT",
            &format!("/t/_doc/{id}"),
            Some(json!({"title": title, "body": body, "tag": tag, "n": 1})),
        )
        .await;
    }
    es.ok("POST", "/t/_refresh", None).await;
    es
}

async fn search(es: &Es, query: Value) -> Value {
    es.ok("POST", "/t/_search", Some(json!({"query": query})))
        .await
}

#[tokio::test]
async fn last_term_is_a_prefix_and_keywords_are_one_term() {
    let es = seeded().await;
    let v = search(&es, json!({"match_bool_prefix": {"title": "qu"}})).await;
    let mut got = ids(&v);
    got.sort();
    assert_eq!(got, ["1", "3"]);
    // Only the last term is a prefix: `qu` before another term must match whole.
    let v = search(
        &es,
        json!({"match_bool_prefix": {"title": {"query": "qu dog", "operator": "and"}}}),
    )
    .await;
    assert!(ids(&v).is_empty());
    // A keyword is not split: the whole text is the prefix.
    let v = search(&es, json!({"match_bool_prefix": {"tag": "alpha-t"}})).await;
    assert_eq!(ids(&v), ["2"]);
    es.stop().await;
}

#[tokio::test]
async fn fuzziness_respects_prefix_length() {
    let es = seeded().await;
    let v = search(
        &es,
        json!({"match_bool_prefix": {"title": {"query": "dox", "fuzziness": "AUTO"}}}),
    )
    .await;
    // `dox` is the last term, so it is a prefix; fuzziness does not apply to it.
    assert!(ids(&v).is_empty());
    let v = search(
        &es,
        json!({"match_bool_prefix": {"title": {"query": "dox brown", "fuzziness": 1, "operator": "and"}}}),
    )
    .await;
    assert_eq!(ids(&v), ["1"]);
    let v = search(
        &es,
        json!({"match_bool_prefix": {"title": {"query": "dox qu", "fuzziness": 1, "prefix_length": 1, "operator": "and"}}}),
    )
    .await;
    // With prefix_length 1, `dox` no longer reaches `fox` (nor `dog`: `qu` must match too).
    assert!(ids(&v).is_empty());
    es.stop().await;
}

#[tokio::test]
async fn field_boosts_decide_the_order() {
    let es = seeded().await;
    // `fox` is in doc 1's title and doc 2's body: the boosted field's document comes first.
    for (fields, first) in [
        (json!(["title^5", "body"]), "1"),
        (json!(["title", "body^5"]), "2"),
    ] {
        let v = search(
            &es,
            json!({"multi_match": {"query": "fox", "fields": fields}}),
        )
        .await;
        assert_eq!(ids(&v).first().map(String::as_str), Some(first), "{fields}");
    }
    es.stop().await;
}

#[tokio::test]
async fn bad_input_gets_elasticsearch_errors() {
    let es = seeded().await;
    let root_type = |v: &Value| v["error"]["root_cause"][0]["type"].clone();
    let e = es
        .err(
            "POST",
            "/t/_search",
            Some(json!({"query": {"match_bool_prefix": {"title": {"query": "a", "analyzer": "nope"}}}})),
            400,
        )
        .await;
    assert_eq!(root_type(&e), json!("query_shard_exception"), "{e}");
    let e = es
        .err(
            "POST",
            "/t/_search",
            Some(json!({"query": {"match_bool_prefix": {"n": "1"}}})),
            400,
        )
        .await;
    assert_eq!(root_type(&e), json!("query_shard_exception"), "{e}");
    let e = es
        .err(
            "POST",
            "/t/_search",
            Some(json!({"query": {"match_bool_prefix": {"title": {"query": "a", "slop": 1}}}})),
            400,
        )
        .await;
    assert_eq!(root_type(&e), json!("parsing_exception"), "{e}");
    let e = es
        .err(
            "POST",
            "/t/_search",
            Some(json!({"query": {"multi_match": {"query": "a", "type": "nope"}}})),
            400,
        )
        .await;
    assert_eq!(root_type(&e), json!("parse_exception"), "{e}");
    let e = es
        .err(
            "POST",
            "/t/_search",
            Some(
                json!({"query": {"match_bool_prefix": {"title": {"query": "a", "fuzziness": 3}}}}),
            ),
            400,
        )
        .await;
    assert_eq!(root_type(&e), json!("illegal_argument_exception"), "{e}");
    // multi_match skips fields a prefix cannot apply to instead of failing.
    let v = search(
        &es,
        json!({"multi_match": {"query": "qu", "type": "bool_prefix", "fields": ["title", "n"]}}),
    )
    .await;
    assert_eq!(v["hits"]["total"]["value"], json!(2));
    es.stop().await;
}
