//! The `regexp` query (Lucene's syntax, `index.max_regex_length`) and `query_string` / `q=`
//! with Lucene's classic syntax: operators, groups, phrases, wildcards, `/regex/`, ranges,
//! `_exists_`, fuzzy terms, boosts and `lenient`; `match` with `fuzziness`.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{ids, Es};
use serde_json::{json, Value};

async fn setup(es: &Es) {
    es.ok(
        "PUT",
        "/t",
        Some(json!({"mappings": {"properties": {
            "title": {"type": "text"},
            "tag": {"type": "keyword"},
            "n": {"type": "integer"}
        }}})),
    )
    .await;
    let docs = [
        (
            "1",
            json!({"title": "quick brown fox", "tag": "Animal", "n": 1}),
        ),
        (
            "2",
            json!({"title": "lazy brown dog", "tag": "animal", "n": 5}),
        ),
        (
            "3",
            json!({"title": "quick blue hare", "tag": "Plant-01", "n": 10}),
        ),
        ("4", json!({"title": "nothing here"})),
    ];
    for (id, d) in docs {
        es.ok("PUT", &format!("/t/_doc/{id}"), Some(d)).await;
    }
    es.ok("POST", "/t/_refresh", None).await;
}

async fn found(es: &Es, query: Value) -> Vec<String> {
    let v = es
        .ok("POST", "/t/_search", Some(json!({"query": query})))
        .await;
    let mut found = ids(&v);
    found.sort();
    found
}

async fn q(es: &Es, text: &str) -> Vec<String> {
    found(
        es,
        json!({"query_string": {"query": text, "default_field": "title"}}),
    )
    .await
}

#[tokio::test]
async fn regexp_query() {
    let es = Es::start().await;
    setup(&es).await;
    assert_eq!(
        found(&es, json!({"regexp": {"title": "qu.*"}})).await,
        vec!["1", "3"]
    );
    // The whole term must match: no anchors needed, none implied partially.
    assert_eq!(
        found(&es, json!({"regexp": {"title": "uick"}})).await,
        Vec::<String>::new()
    );
    assert_eq!(
        found(&es, json!({"regexp": {"tag": {"value": "[Aa]nimal"}}})).await,
        vec!["1", "2"]
    );
    assert_eq!(
        found(
            &es,
            json!({"regexp": {"tag": {"value": "animal", "case_insensitive": true}}})
        )
        .await,
        vec!["1", "2"]
    );
    assert_eq!(
        found(&es, json!({"regexp": {"tag": "Plant-<0-5>"}})).await,
        Vec::<String>::new()
    );
    assert_eq!(
        found(&es, json!({"regexp": {"tag": "Plant-<00-05>"}})).await,
        vec!["3"]
    );
    assert_eq!(
        found(
            &es,
            json!({"regexp": {"tag": {"value": "Plant-<00-05>", "flags": "NONE"}}})
        )
        .await,
        Vec::<String>::new()
    );
    // Complement and intersection.
    assert_eq!(
        found(&es, json!({"regexp": {"title": "b.*&~(brown)"}})).await,
        vec!["3"]
    );
    // Not on numbers.
    let e = es
        .err(
            "POST",
            "/t/_search",
            Some(json!({"query": {"regexp": {"n": "1.*"}}})),
            400,
        )
        .await;
    assert!(e.to_string().contains(
        "Can only use regexp queries on keyword and text fields - not on [n] which is of type [integer]"
    ));
    // A syntax error.
    es.err(
        "POST",
        "/t/_search",
        Some(json!({"query": {"regexp": {"title": "(ab"}}})),
        400,
    )
    .await;
    // index.max_regex_length.
    es.ok(
        "PUT",
        "/t/_settings",
        Some(json!({"index.max_regex_length": 5})),
    )
    .await;
    let e = es
        .err(
            "POST",
            "/t/_search",
            Some(json!({"query": {"regexp": {"title": "abcdef"}}})),
            400,
        )
        .await;
    assert!(e.to_string().contains("The length of regex [6] used in the Regexp Query request has exceeded the allowed maximum of [5]. This maximum can be set by changing the [index.max_regex_length] index level setting."));
    // Also through query_string, even with expanded (lenient) fields.
    let e = es
        .err(
            "POST",
            "/t/_search",
            Some(json!({"query": {"query_string": {"query": "/abcdef/"}}})),
            400,
        )
        .await;
    assert!(e.to_string().contains("The length of regex [6]"));
    es.stop().await;
}

#[tokio::test]
async fn query_string_syntax() {
    let es = Es::start().await;
    setup(&es).await;
    assert_eq!(q(&es, "quick brown").await, vec!["1", "2", "3"]);
    assert_eq!(q(&es, "quick AND brown").await, vec!["1"]);
    assert_eq!(q(&es, "quick && !brown").await, vec!["3"]);
    assert_eq!(q(&es, "+quick -fox").await, vec!["3"]);
    assert_eq!(q(&es, "brown NOT lazy").await, vec!["1"]);
    assert_eq!(q(&es, "(fox OR dog) AND brown").await, vec!["1", "2"]);
    assert_eq!(q(&es, "\"brown fox\"").await, vec!["1"]);
    assert_eq!(q(&es, "\"fox brown\"").await, Vec::<String>::new());
    assert_eq!(q(&es, "QUI*").await, vec!["1", "3"]);
    assert_eq!(q(&es, "h?re").await, vec!["3", "4"]);
    assert_eq!(q(&es, "ha?e").await, vec!["3"]);
    assert_eq!(q(&es, "/b.*n/").await, vec!["1", "2"]);
    assert_eq!(q(&es, "quikc~1").await, vec!["1", "3"]);
    // `match` takes fuzziness too.
    assert_eq!(
        found(&es, json!({"match": {"title": {"query": "quikc browm", "fuzziness": "AUTO", "operator": "and"}}})).await,
        vec!["1"]
    );
    assert_eq!(
        found(
            &es,
            json!({"match": {"tag": {"query": "Animol", "fuzziness": 1}}})
        )
        .await,
        vec!["1"]
    );
    assert_eq!(q(&es, "tag:Animal").await, vec!["1"]);
    assert_eq!(q(&es, "tag:(Animal OR animal)").await, vec!["1", "2"]);
    assert_eq!(q(&es, "n:[2 TO 10]").await, vec!["2", "3"]);
    assert_eq!(q(&es, "n:{1 TO 10}").await, vec!["2"]);
    assert_eq!(q(&es, "n:>=5").await, vec!["2", "3"]);
    assert_eq!(q(&es, "n:<5").await, vec!["1"]);
    assert_eq!(q(&es, "n:[* TO 1]").await, vec!["1"]);
    assert_eq!(q(&es, "_exists_:n").await, vec!["1", "2", "3"]);
    assert_eq!(q(&es, "n:*").await, vec!["1", "2", "3"]);
    assert_eq!(q(&es, "*:*").await, vec!["1", "2", "3", "4"]);
    assert_eq!(q(&es, "-n:*").await, vec!["4"]);
    assert_eq!(q(&es, "tag:Plant\\-01").await, vec!["3"]);
    // default_operator AND, and an explicit OR.
    let and = |text: &str| json!({"query_string": {"query": text, "default_field": "title", "default_operator": "AND"}});
    assert_eq!(found(&es, and("quick brown")).await, vec!["1"]);
    assert_eq!(found(&es, and("fox OR dog")).await, vec!["1", "2"]);
    // Boosts rank.
    let v = es
        .ok(
            "POST",
            "/t/_search",
            Some(json!({"query": {"query_string": {"query": "fox dog^5", "default_field": "title"}}})),
        )
        .await;
    assert_eq!(ids(&v).first().map(String::as_str), Some("2"));
    // Unfielded terms search every field (lenient) by default.
    assert_eq!(
        found(&es, json!({"query_string": {"query": "animal"}})).await,
        vec!["2"]
    );
    assert_eq!(
        found(&es, json!({"query_string": {"query": "5"}})).await,
        vec!["2"]
    );
    // `fields` with boosts.
    assert_eq!(
        found(
            &es,
            json!({"query_string": {"query": "Animal hare", "fields": ["title^2", "tag"]}})
        )
        .await,
        vec!["1", "3"]
    );
    // Syntax errors fail the search as Elasticsearch does on its shards.
    let e = es
        .err(
            "POST",
            "/t/_search",
            Some(json!({"query": {"query_string": {"query": "(quick"}}})),
            400,
        )
        .await;
    assert!(
        e.to_string().contains("Failed to parse query [(quick]"),
        "{e}"
    );
    // simple_query_string does not fail.
    es.ok(
        "POST",
        "/t/_search",
        Some(json!({"query": {"simple_query_string": {"query": "(quick"}}})),
    )
    .await;
    es.stop().await;
}

#[tokio::test]
async fn q_parameter_and_lenient() {
    let es = Es::start().await;
    setup(&es).await;
    let count = |path: String| {
        let es = &es;
        async move { es.ok("GET", &path, None).await["count"].clone() }
    };
    assert_eq!(
        count("/t/_count?q=title:quick%20title:xyz".into()).await,
        json!(2)
    );
    assert_eq!(
        count("/t/_count?q=title:quick%20title:brown&default_operator=AND".into()).await,
        json!(1)
    );
    assert_eq!(count("/t/_count?q=brown&df=title".into()).await, json!(2));
    // A value its field cannot take: an error, or nothing with lenient.
    es.err("GET", "/t/_search?q=n:foo", None, 400).await;
    assert_eq!(
        count("/t/_count?q=n:foo&lenient=true".into()).await,
        json!(0)
    );
    let v = es
        .ok(
            "GET",
            "/t/_search?q=n:foo%20OR%20title:fox&lenient=true",
            None,
        )
        .await;
    assert_eq!(ids(&v), vec!["1"]);
    // index.query_string.lenient makes it the default.
    es.ok(
        "PUT",
        "/t/_settings",
        Some(json!({"index.query_string.lenient": true})),
    )
    .await;
    assert_eq!(count("/t/_count?q=n:foo".into()).await, json!(0));
    es.err("GET", "/t/_search?q=n:foo&lenient=false", None, 400)
        .await;
    es.stop().await;
}
