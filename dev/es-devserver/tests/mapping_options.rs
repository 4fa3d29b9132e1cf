//! Recent mapping options and field rules: `index.mapping.dynamic_strings.auto_text`,
//! `include_defaults`, `enabled: false` objects, the `date_nanos` range, `ip` validation
//! with `ignore_malformed`, and `index.mapping.field_name_length.limit`.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::Es;
use serde_json::json;

#[tokio::test]
async fn dynamic_strings_auto_text() {
    let es = Es::start().await;
    es.ok("PUT", "/d", Some(json!({"mappings": {}}))).await;
    es.ok("PUT", "/d/_doc/1", Some(json!({"s": "hello"}))).await;
    let m = es.ok("GET", "/d/_mapping", None).await;
    assert_eq!(
        m["d"]["mappings"]["properties"]["s"],
        json!({"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}})
    );
    let v = es
        .ok(
            "GET",
            "/d/_settings?include_defaults=true&flat_settings=true",
            None,
        )
        .await;
    assert_eq!(
        v["d"]["defaults"]["index.mapping.dynamic_strings.auto_text"],
        json!("true")
    );
    assert!(v["d"]["settings"]
        .get("index.mapping.dynamic_strings.auto_text")
        .is_none());

    // Off at creation: new strings are plain keywords.
    es.ok(
        "PUT",
        "/k",
        Some(json!({"settings": {"index.mapping.dynamic_strings.auto_text": false}})),
    )
    .await;
    es.ok("PUT", "/k/_doc/1", Some(json!({"s": "hello"}))).await;
    let m = es.ok("GET", "/k/_mapping", None).await;
    assert_eq!(
        m["k"]["mappings"]["properties"]["s"],
        json!({"type": "keyword"})
    );

    // Switched off later (a dynamic setting): fields mapped before keep their mapping.
    es.ok(
        "PUT",
        "/d/_settings",
        Some(json!({"index.mapping.dynamic_strings.auto_text": false})),
    )
    .await;
    es.ok(
        "PUT",
        "/d/_doc/2",
        Some(json!({"t": "hello", "s": "again"})),
    )
    .await;
    let m = es.ok("GET", "/d/_mapping", None).await;
    assert_eq!(m["d"]["mappings"]["properties"]["s"]["type"], json!("text"));
    assert_eq!(
        m["d"]["mappings"]["properties"]["t"],
        json!({"type": "keyword"})
    );
    let v = es.ok("GET", "/d/_settings", None).await;
    assert_eq!(
        v["d"]["settings"]["index"]["mapping"]["dynamic_strings"]["auto_text"],
        json!("false")
    );
    // Not a boolean.
    let e = es
        .err(
            "PUT",
            "/bad",
            Some(json!({"settings": {"index.mapping.dynamic_strings.auto_text": "maybe"}})),
            400,
        )
        .await;
    assert_eq!(e["error"]["type"], json!("illegal_argument_exception"));
    es.stop().await;
}

#[tokio::test]
async fn include_defaults_on_get_index_and_named_settings() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/i",
        Some(json!({"settings": {"index.max_result_window": 50}})),
    )
    .await;
    let v = es.ok("GET", "/i?include_defaults=true", None).await;
    assert_eq!(
        v["i"]["settings"]["index"]["max_result_window"],
        json!("50")
    );
    assert_eq!(
        v["i"]["defaults"]["index"]["max_regex_length"],
        json!("1000")
    );
    assert!(v["i"]["defaults"]["index"]
        .get("max_result_window")
        .is_none());
    let v = es
        .ok(
            "GET",
            "/i/_settings/index.max_*?include_defaults=true&flat_settings=true",
            None,
        )
        .await;
    assert_eq!(v["i"]["settings"], json!({"index.max_result_window": "50"}));
    assert_eq!(
        v["i"]["defaults"]["index.max_rescore_window"],
        json!("10000")
    );
    assert!(v["i"]["defaults"].get("index.refresh_interval").is_none());
    let v = es.ok("GET", "/i/_settings", None).await;
    assert!(v["i"].get("defaults").is_none());
    es.stop().await;
}

#[tokio::test]
async fn disabled_objects_are_stored_not_indexed() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/e",
        Some(json!({"mappings": {"dynamic": false, "properties": {
            "obj": {"type": "object", "enabled": false, "properties": {"k": {"type": "long"}}}
        }}})),
    )
    .await;
    // Not parsed: a value that would not fit `long` is fine, arrays of objects too.
    es.ok(
        "PUT",
        "/e/_doc/1",
        Some(json!({"obj": {"k": "not a number"}})),
    )
    .await;
    es.ok(
        "PUT",
        "/e/_doc/2?refresh=true",
        Some(json!({"obj": [{"k": 1}, {"k": 2}]})),
    )
    .await;
    let v = es
        .ok(
            "POST",
            "/e/_search",
            Some(json!({"query": {"exists": {"field": "obj.k"}}})),
        )
        .await;
    assert_eq!(v["hits"]["total"]["value"], json!(0));
    let v = es
        .ok(
            "POST",
            "/e/_search",
            Some(json!({"query": {"term": {"obj.k": 1}}})),
        )
        .await;
    assert_eq!(v["hits"]["total"]["value"], json!(0));
    let v = es.ok("GET", "/e/_doc/1", None).await;
    assert_eq!(v["_source"], json!({"obj": {"k": "not a number"}}));
    es.stop().await;
}

#[tokio::test]
async fn date_nanos_holds_1970_to_2262() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/n",
        Some(json!({"mappings": {"properties": {"date": {"type": "date_nanos"}}}})),
    )
    .await;
    let body = [
        r#"{"index":{"_id":"1"}}"#,
        r#"{"date":"1969-10-28T12:12:12.123456789Z"}"#,
        r#"{"index":{"_id":"2"}}"#,
        r#"{"date":"2263-10-29T12:12:12.123456789Z"}"#,
        r#"{"index":{"_id":"3"}}"#,
        r#"{"date":"2020-01-01T00:00:00.000000001Z"}"#,
        "",
    ]
    .join("\n");
    let (_, v) = es.call_ndjson("POST", "/n/_bulk", &body).await;
    assert_eq!(v["errors"], json!(true));
    let item = |i: usize| v["items"][i]["index"].clone();
    assert_eq!(item(0)["status"], json!(400));
    assert_eq!(
        item(0)["error"]["type"],
        json!("document_parsing_exception")
    );
    assert_eq!(
        item(0)["error"]["caused_by"]["reason"],
        json!("date[1969-10-28T12:12:12.123456789Z] is before the epoch in 1970 and cannot be stored in nanosecond resolution")
    );
    assert_eq!(
        item(1)["error"]["caused_by"]["reason"],
        json!("date[2263-10-29T12:12:12.123456789Z] is after 2262-04-11T23:47:16.854775807 and cannot be stored in nanosecond resolution")
    );
    assert_eq!(item(2)["status"], json!(201));
    // Epoch millis before 1970 too.
    let e = es
        .err("PUT", "/n/_doc/4", Some(json!({"date": -1})), 400)
        .await;
    assert_eq!(
        e["error"]["caused_by"]["reason"],
        json!("date[1969-12-31T23:59:59.999Z] is before the epoch in 1970 and cannot be stored in nanosecond resolution")
    );
    es.stop().await;
}

#[tokio::test]
async fn ip_fields_and_ignore_malformed() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/ips",
        Some(json!({"mappings": {"properties": {
            "strict": {"type": "ip"},
            "lenient": {"type": "ip", "ignore_malformed": true},
            "n": {"type": "long", "ignore_malformed": true}
        }}})),
    )
    .await;
    let e = es
        .err(
            "PUT",
            "/ips/_doc/1",
            Some(json!({"strict": "garbage"})),
            400,
        )
        .await;
    assert_eq!(e["error"]["type"], json!("document_parsing_exception"));
    assert_eq!(
        e["error"]["caused_by"]["reason"],
        json!("'garbage' is not an IP string literal.")
    );
    es.err("PUT", "/ips/_doc/1", Some(json!({"strict": 7})), 400)
        .await;
    // Malformed values are kept in _source and not indexed.
    es.ok(
        "PUT",
        "/ips/_doc/2?refresh=true",
        Some(json!({"lenient": ["10.10.1.1", "hot garbage", 7], "n": "missing"})),
    )
    .await;
    es.ok(
        "PUT",
        "/ips/_doc/3?refresh=true",
        Some(json!({"lenient": "::ffff:10.0.0.1", "strict": "2001:db8::1"})),
    )
    .await;
    let v = es.ok("GET", "/ips/_doc/2", None).await;
    assert_eq!(
        v["_source"]["lenient"],
        json!(["10.10.1.1", "hot garbage", 7])
    );
    let count = |q: serde_json::Value| {
        let es = &es;
        async move {
            es.ok("POST", "/ips/_count", Some(json!({"query": q})))
                .await["count"]
                .clone()
        }
    };
    assert_eq!(
        count(json!({"term": {"lenient": "10.10.1.1"}})).await,
        json!(1)
    );
    // IPv4-mapped IPv6 matches its IPv4 form.
    assert_eq!(
        count(json!({"term": {"lenient": "10.0.0.1"}})).await,
        json!(1)
    );
    assert_eq!(count(json!({"exists": {"field": "n"}})).await, json!(0));
    // ignore_malformed does not cover objects; the preview prints the object.
    let e = es
        .err(
            "PUT",
            "/ips/_doc/4",
            Some(json!({"lenient": {"object": "wow"}})),
            400,
        )
        .await;
    let reason = e["error"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.ends_with("failed to parse field [lenient] of type [ip] in document with id '4'. Preview of field's value: '{object=wow}'"),
        "{reason}"
    );
    // A query value that is not an IP.
    let e = es
        .err(
            "POST",
            "/ips/_search",
            Some(json!({"query": {"term": {"strict": "nope"}}})),
            400,
        )
        .await;
    assert!(e
        .to_string()
        .contains("'nope' is not an IP string literal."));
    // The index-wide default.
    es.ok(
        "PUT",
        "/lax",
        Some(json!({"settings": {"index.mapping.ignore_malformed": true},
                    "mappings": {"properties": {"n": {"type": "integer"}, "ip": {"type": "ip"},
                                                "strict_n": {"type": "integer", "ignore_malformed": false}}}})),
    )
    .await;
    es.ok("PUT", "/lax/_doc/1", Some(json!({"n": "x", "ip": "y"})))
        .await;
    es.err("PUT", "/lax/_doc/2", Some(json!({"strict_n": "x"})), 400)
        .await;
    es.stop().await;
}

#[tokio::test]
async fn field_name_length_limit() {
    let es = Es::start().await;
    es.ok(
        "PUT",
        "/f",
        Some(json!({"settings": {"index.mapping.field_name_length.limit": 10}})),
    )
    .await;
    es.ok(
        "PUT",
        "/f/_doc/1",
        Some(json!({"short": 1, "obj": {"inner": 2}})),
    )
    .await;
    let e = es
        .err(
            "PUT",
            "/f/_doc/2",
            Some(json!({"much_too_long_name": 1})),
            400,
        )
        .await;
    assert_eq!(e["error"]["type"], json!("illegal_argument_exception"));
    assert_eq!(
        e["error"]["reason"],
        json!("Field name [much_too_long_name] is longer than the limit of [10] characters")
    );
    // The leaf name counts, not the path.
    es.ok(
        "PUT",
        "/f/_doc/3",
        Some(json!({"abcdefghij": {"klmnopqrst": 1}})),
    )
    .await;
    // Explicit mappings too.
    let e = es
        .err(
            "PUT",
            "/f/_mapping",
            Some(json!({"properties": {"another_long_one": {"type": "keyword"}}})),
            400,
        )
        .await;
    assert_eq!(e["error"]["type"], json!("illegal_argument_exception"));
    let e = es
        .err(
            "PUT",
            "/g",
            Some(
                json!({"settings": {"index.mapping.field_name_length.limit": 3},
                        "mappings": {"properties": {"four": {"type": "long"}}}}),
            ),
            400,
        )
        .await;
    assert_eq!(
        e["error"]["reason"],
        json!("Field name [four] is longer than the limit of [3] characters")
    );
    // ignore_dynamic_beyond_limit leaves long dynamic names out of the mapping.
    es.ok(
        "PUT",
        "/h",
        Some(json!({"settings": {"index.mapping.field_name_length.limit": 5,
                                 "index.mapping.field_name_length.ignore_dynamic_beyond_limit": true}})),
    )
    .await;
    es.ok(
        "PUT",
        "/h/_doc/1",
        Some(json!({"ok": 1, "too_long": {"x": 1}, "longer_still": "a"})),
    )
    .await;
    let m = es.ok("GET", "/h/_mapping", None).await;
    let props = m["h"]["mappings"]["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert_eq!(props.keys().collect::<Vec<_>>(), vec!["ok"]);
    let v = es.ok("GET", "/h/_doc/1", None).await;
    assert_eq!(v["_source"]["longer_still"], json!("a"));
    // The synthetic source mode is accepted (and behaves as stored source).
    es.ok(
        "PUT",
        "/s",
        Some(json!({"settings": {"index.mapping.source.mode": "synthetic"}})),
    )
    .await;
    es.err(
        "PUT",
        "/s2",
        Some(json!({"settings": {"index.mapping.source.mode": "sometimes"}})),
        400,
    )
    .await;
    es.stop().await;
}
