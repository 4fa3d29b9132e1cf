//! Dynamic templates (mapping conditions and the per-item `dynamic_templates` of `_bulk`),
//! and `geo_point` fields with `geo_bounding_box` and `geo_distance`.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{ids, Es};
use serde_json::{json, Value};

fn ndjson(lines: &[Value]) -> String {
    let mut s = String::new();
    for l in lines {
        s.push_str(&l.to_string());
        s.push('\n');
    }
    s
}

#[tokio::test]
async fn templates_by_condition() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/t",
        Some(json!({"mappings": {"dynamic_templates": [
            {"ints": {"match_mapping_type": "long", "mapping": {"type": "integer"}}},
            {"ids": {"match": "*_id", "match_mapping_type": "string", "mapping": {"type": "keyword"}}},
            {"no_text": {"match_mapping_type": "string", "unmatch": "body*",
                         "mapping": {"type": "keyword", "ignore_above": 10}}},
            {"meta": {"path_match": "meta.*", "mapping": {"type": "{dynamic_type}", "index": false}}},
            {"flat": {"match": "labels", "match_mapping_type": "object", "mapping": {"type": "flattened"}}},
            {"named_only": {"mapping": {"type": "ip"}}}
        ]}})),
    )
    .await;
    es.ok(
        "PUT",
        "/t/_doc/1",
        Some(
            json!({"n": 5, "user_id": "U1", "name": "short", "body": "some long text",
                    "meta": {"flag": true}, "labels": {"a": "b"}, "addr": "10.0.0.1",
                    "when": "2024-01-01"}),
        ),
    )
    .await;
    let m = es.ok("GET", "/t/_mapping", None).await;
    let p = &m["t"]["mappings"]["properties"];
    assert_eq!(p["n"], json!({"type": "integer"}));
    assert_eq!(p["user_id"], json!({"type": "keyword"}));
    assert_eq!(p["name"], json!({"type": "keyword", "ignore_above": 10}));
    // `unmatch` leaves the default string mapping.
    assert_eq!(p["body"]["type"], json!("text"));
    assert_eq!(
        p["meta"]["properties"]["flag"],
        json!({"type": "boolean", "index": false})
    );
    assert_eq!(p["labels"], json!({"type": "flattened"}));
    // A template without conditions applies only by name; dates are not strings.
    assert_eq!(p["addr"]["type"], json!("keyword"));
    assert_eq!(p["when"], json!({"type": "date"}));
    // The new field's type checks later values.
    let e = es
        .err(
            "PUT",
            "/t/_doc/2",
            Some(json!({"n": 3_000_000_000u64})),
            400,
        )
        .await;
    assert_eq!(e["error"]["type"], json!("document_parsing_exception"));
    // Invalid templates are refused.
    let e = es
        .err(
            "PUT",
            "/bad",
            Some(json!({"mappings": {"dynamic_templates": [{"x": {"match": "a", "wat": 1, "mapping": {}}}]}})),
            400,
        )
        .await;
    assert_eq!(e["error"]["type"], json!("mapper_parsing_exception"));
    es.stop().await;
}

#[tokio::test]
async fn templates_named_per_bulk_item() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/g",
        Some(json!({"mappings": {"dynamic_templates": [
            {"location": {"mapping": {"type": "geo_point"}}},
            {"my_location": {"match": "my*", "mapping": {"type": "geo_point"}}},
            {"string": {"mapping": {"type": "keyword"}}}
        ]}})),
    )
    .await;
    let body = ndjson(&[
        json!({"create": {"_index": "g", "_id": "1", "dynamic_templates": {"location": "location"}}}),
        json!({"location": "41.12,-71.34"}),
        json!({"index": {"_index": "g", "_id": "2", "dynamic_templates": {"location": "location"}}}),
        json!({"location": [-71.34, 41.12]}),
        json!({"index": {"_index": "g", "_id": "3"}}),
        json!({"my_location": {"lat": 41.12, "lon": -71.34}}),
        json!({"index": {"_index": "g", "_id": "4", "dynamic_templates": {"other": "nope"}}}),
        json!({"other": "x"}),
        json!({"index": {"_index": "g", "_id": "5", "dynamic_templates": {"location": "nope"}}}),
        json!({"location": "1,2"}),
        json!({"index": {"_index": "g", "_id": "6", "dynamic_templates": {"foo": "string"}}}),
        json!({"foo.bar": "hello world"}),
    ]);
    let (s, v) = es.call_ndjson("POST", "/_bulk?refresh=true", &body).await;
    assert_eq!(s, 200);
    let item = |i: usize| {
        v["items"][i]
            .as_object()
            .and_then(|m| m.values().next())
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(item(0)["result"], json!("created"));
    assert_eq!(item(1)["result"], json!("created"));
    assert_eq!(item(2)["result"], json!("created"));
    // A named template that does not exist.
    assert_eq!(item(3)["status"], json!(400));
    assert_eq!(
        item(3)["error"]["type"],
        json!("document_parsing_exception")
    );
    let reason = item(3)["error"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.ends_with("failed to parse: Can't find dynamic template for dynamic template name [nope] of field [other]"),
        "{reason}"
    );
    // Fields that already exist ignore the name.
    assert_eq!(item(4)["result"], json!("created"));
    // The template made `foo` a keyword, so `foo.bar` cannot be an object below it.
    assert_eq!(
        item(5)["error"]["reason"],
        json!("failed to parse field [foo] of type [keyword] in document with id '6'. Preview of field's value: '{bar=hello world}'")
    );
    let m = es.ok("GET", "/g/_mapping", None).await;
    let p = &m["g"]["mappings"]["properties"];
    assert_eq!(p["location"], json!({"type": "geo_point"}));
    assert_eq!(p["my_location"], json!({"type": "geo_point"}));
    assert!(p.get("other").is_none());
    let boxed = |field: &str| {
        json!({"query": {"geo_bounding_box": {field: {
            "top_left": {"lat": 42, "lon": -72}, "bottom_right": {"lat": 40, "lon": -74}}}}})
    };
    let v = es.ok("POST", "/g/_search", Some(boxed("location"))).await;
    assert_eq!(ids(&v), vec!["1", "2"]);
    let v = es
        .ok("POST", "/g/_search", Some(boxed("my_location")))
        .await;
    assert_eq!(ids(&v), vec!["3"]);
    es.stop().await;
}

#[tokio::test]
async fn geo_point_queries() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/places",
        Some(json!({"mappings": {"properties": {"pin": {"type": "geo_point"}, "name": {"type": "keyword"}}}})),
    )
    .await;
    let places = [
        ("nyc", json!({"lat": 40.7128, "lon": -74.0060})),
        ("newark", json!("40.7357,-74.1724")),
        ("la", json!("POINT (-118.2437 34.0522)")),
        ("tokyo", json!([139.6917, 35.6895])),
        ("both", json!([[-74.0060, 40.7128], "35.6895,139.6917"])),
    ];
    for (id, pin) in places {
        es.ok(
            "PUT",
            &format!("/places/_doc/{id}"),
            Some(json!({"pin": pin, "name": id})),
        )
        .await;
    }
    es.ok("POST", "/places/_refresh", None).await;
    let hits = |q: Value| {
        let es = &es;
        async move {
            let v = es
                .ok("POST", "/places/_search", Some(json!({"query": q})))
                .await;
            let mut got = ids(&v);
            got.sort();
            got
        }
    };
    assert_eq!(
        hits(
            json!({"geo_distance": {"distance": "20km", "pin": {"lat": 40.7128, "lon": -74.0060}}})
        )
        .await,
        vec!["both", "newark", "nyc"]
    );
    assert_eq!(
        hits(json!({"geo_distance": {"distance": "5km", "pin": "40.7128,-74.0060"}})).await,
        vec!["both", "nyc"]
    );
    assert_eq!(
        hits(json!({"geo_bounding_box": {"pin": {"top": 36, "left": 139, "bottom": 35, "right": 140}}})).await,
        vec!["both", "tokyo"]
    );
    assert_eq!(
        hits(json!({"geo_bounding_box": {"pin": {"wkt": "BBOX (-119, -118, 35, 34)"}}})).await,
        vec!["la"]
    );
    assert_eq!(hits(json!({"exists": {"field": "pin"}})).await.len(), 5);
    // Not on other types; unmapped fields are an error unless ignored.
    es.err(
        "POST",
        "/places/_search",
        Some(json!({"query": {"geo_distance": {"distance": "1km", "name": "0,0"}}})),
        400,
    )
    .await;
    es.err(
        "POST",
        "/places/_search",
        Some(json!({"query": {"geo_distance": {"distance": "1km", "nope": "0,0"}}})),
        400,
    )
    .await;
    assert!(hits(
        json!({"geo_distance": {"distance": "1km", "nope": "0,0", "ignore_unmapped": true}})
    )
    .await
    .is_empty());
    // Sorting on a geo_point needs a geo sort.
    es.err(
        "POST",
        "/places/_search",
        Some(json!({"sort": ["pin"]})),
        400,
    )
    .await;
    es.stop().await;
}
