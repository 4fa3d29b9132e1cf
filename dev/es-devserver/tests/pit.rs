//! Point in time: a frozen view for paging with `search_after` and the `_shard_doc`
//! tiebreaker (what `syncline-ctl reconcile` pages through).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{ids, Es};
use serde_json::json;

async fn seed(es: &Es, index: &str, n: u32) {
    es.ok(
        "PUT",
        &format!("/{index}"),
        Some(
            json!({"mappings": {"properties": {"n": {"type": "long"}, "g": {"type": "keyword"}}}}),
        ),
    )
    .await;
    for i in 0..n {
        es.ok(
            "PUT",
            &format!("/{index}/_doc/{i}"),
            Some(json!({"n": i, "g": if i % 2 == 0 { "even" } else { "odd" }})),
        )
        .await;
    }
    es.ok("POST", &format!("/{index}/_refresh"), None).await;
}

#[tokio::test]
async fn pit_is_a_snapshot() {
    let es = Es::start().await;
    seed(&es, "items", 5).await;
    let pit = es.ok("POST", "/items/_pit?keep_alive=1m", None).await;
    let id = pit["id"].as_str().expect("pit id").to_string();
    assert_eq!(pit["_shards"]["failed"], json!(0));

    // Changes after opening: a new document, a deletion, an update.
    es.ok(
        "PUT",
        "/items/_doc/new?refresh=true",
        Some(json!({"n": 99, "g": "odd"})),
    )
    .await;
    es.ok("DELETE", "/items/_doc/0?refresh=true", None).await;
    es.ok(
        "PUT",
        "/items/_doc/1?refresh=true",
        Some(json!({"n": 100, "g": "odd"})),
    )
    .await;

    let body = json!({"size": 100, "pit": {"id": id, "keep_alive": "1m"}, "sort": [{"n": "asc"}]});
    let v = es.ok("POST", "/_search", Some(body)).await;
    assert_eq!(ids(&v), ["0", "1", "2", "3", "4"]);
    assert_eq!(
        v["hits"]["hits"][1]["_source"]["n"],
        json!(1),
        "old version of 1"
    );
    assert_eq!(v["pit_id"], json!(id));
    // The implicit tiebreaker is appended to the explicit sort.
    assert_eq!(
        v["hits"]["hits"][0]["sort"].as_array().map(Vec::len),
        Some(2)
    );

    // The live index sees the changes.
    let live = es
        .ok(
            "POST",
            "/items/_search",
            Some(json!({"size": 100, "sort": ["n"]})),
        )
        .await;
    assert_eq!(ids(&live), ["2", "3", "4", "new", "1"]);

    let closed = es.ok("DELETE", "/_pit", Some(json!({"id": id}))).await;
    assert_eq!(closed, json!({"succeeded": true, "num_freed": 1}));
    let again = es
        .err("DELETE", "/_pit", Some(json!({"id": id})), 404)
        .await;
    assert_eq!(again["num_freed"], json!(0));
    let gone = es
        .err("POST", "/_search", Some(json!({"pit": {"id": id}})), 404)
        .await;
    assert_eq!(
        gone["error"]["type"],
        json!("search_context_missing_exception")
    );
    es.stop().await;
}

#[tokio::test]
async fn search_after_pages_through_everything_once() {
    let es = Es::start().await;
    seed(&es, "pages", 23).await;
    let id = es.ok("POST", "/pages/_pit?keep_alive=30s", None).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let mut seen = Vec::new();
    let mut after: Option<serde_json::Value> = None;
    loop {
        // Many ties on `g`: only the tiebreaker keeps pages apart.
        let mut body = json!({
            "size": 4,
            "pit": {"id": id, "keep_alive": "30s"},
            "sort": [{"g": "asc"}, {"_shard_doc": "asc"}],
        });
        if let Some(a) = &after {
            body["search_after"] = a.clone();
        }
        let v = es.ok("POST", "/_search", Some(body)).await;
        let hits = v["hits"]["hits"].as_array().cloned().unwrap_or_default();
        if hits.is_empty() {
            break;
        }
        // A write between pages must not shift them.
        es.ok(
            "PUT",
            &format!("/pages/_doc/x{}?refresh=true", seen.len()),
            Some(json!({"n": 1000, "g": "even"})),
        )
        .await;
        seen.extend(ids(&v));
        after = hits.last().map(|h| h["sort"].clone());
    }
    seen.sort_by_key(|s| s.parse::<u32>().unwrap_or(u32::MAX));
    let want: Vec<String> = (0..23).map(|i| i.to_string()).collect();
    assert_eq!(seen, want);
    es.stop().await;
}

#[tokio::test]
async fn pit_request_errors() {
    let es = Es::start().await;
    seed(&es, "e", 2).await;
    let v = es
        .err(
            "POST",
            "/e/_search",
            Some(json!({"sort": ["_shard_doc"]})),
            400,
        )
        .await;
    assert_eq!(
        v["error"]["type"],
        json!("action_request_validation_exception")
    );
    assert!(v["error"]["reason"]
        .as_str()
        .unwrap_or("")
        .contains("[_shard_doc] sort field cannot be used without [point in time]"));

    let v = es.err("POST", "/e/_pit", None, 400).await;
    assert!(
        v["error"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("[keep_alive] is not specified"),
        "{v}"
    );

    let id = es.ok("POST", "/e/_pit?keep_alive=1m", None).await["id"].clone();
    let v = es
        .err("POST", "/e/_search", Some(json!({"pit": {"id": id}})), 400)
        .await;
    assert!(
        v["error"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("[indices] cannot be used with point in time"),
        "{v}"
    );
    es.err("POST", "/missing/_pit?keep_alive=1m", None, 404)
        .await;
    es.stop().await;
}

/// One page of a point-in-time walk: `(index, id, _shard_doc)` of each hit.
async fn walk_page(
    es: &Es,
    body: serde_json::Value,
) -> (Vec<(String, String, i64)>, Option<serde_json::Value>) {
    let v = es.ok("POST", "/_search", Some(body)).await;
    let hits = v["hits"]["hits"].as_array().cloned().unwrap_or_default();
    let rows = hits
        .iter()
        .map(|h| {
            let sort = h["sort"].as_array().expect("sort values");
            let shard_doc = sort.last().and_then(|s| s.as_i64()).expect("_shard_doc");
            (
                h["_index"].as_str().expect("index").to_owned(),
                h["_id"].as_str().expect("id").to_owned(),
                shard_doc,
            )
        })
        .collect();
    (rows, hits.last().map(|h| h["sort"].clone()))
}

/// The walk `syncline-ctl reconcile` makes: sorted by `_shard_doc` alone, no totals, page
/// after page with `search_after`, over two indices whose documents were updated and
/// deleted before the point in time was opened (so `_seq_no` order is not insertion
/// order), with writes to the live indices between pages. The pages, joined, must equal
/// one sorted answer of the whole point in time computed without the walk's shortcut
/// (`track_total_hits` on), hit for hit and in order, filtered query or not.
#[tokio::test]
async fn shard_doc_walk_without_totals_matches_the_full_sort() {
    let es = Es::start().await;
    seed(&es, "walk-a", 25).await;
    seed(&es, "walk-b", 13).await;
    for id in [3, 7, 11] {
        es.ok(
            "PUT",
            &format!("/walk-a/_doc/{id}"),
            Some(json!({"n": 500 + id, "g": "odd"})),
        )
        .await;
    }
    es.ok("DELETE", "/walk-a/_doc/5", None).await;
    es.ok("DELETE", "/walk-b/_doc/0", None).await;
    es.ok("POST", "/walk-a,walk-b/_refresh", None).await;
    let id = es
        .ok("POST", "/walk-a,walk-b/_pit?keep_alive=1m", None)
        .await["id"]
        .as_str()
        .expect("id")
        .to_string();

    for query in [json!({"match_all": {}}), json!({"term": {"g": "odd"}})] {
        let (want, _) = walk_page(
            &es,
            json!({
                "size": 1000,
                "query": query,
                "pit": {"id": id, "keep_alive": "1m"},
                "sort": [{"_shard_doc": "asc"}],
                "track_total_hits": true,
            }),
        )
        .await;
        let mut got = Vec::new();
        let mut after: Option<serde_json::Value> = None;
        for page in 0.. {
            assert!(page < 100, "the walk does not end");
            let mut body = json!({
                "size": 4,
                "query": query,
                "pit": {"id": id, "keep_alive": "1m"},
                "sort": [{"_shard_doc": "asc"}],
                "track_total_hits": false,
            });
            if let Some(a) = &after {
                body["search_after"] = a.clone();
            }
            let (rows, last) = walk_page(&es, body).await;
            if rows.is_empty() {
                break;
            }
            assert!(rows.len() <= 4, "a page larger than size: {rows:?}");
            // Writes to the live indices between pages do not reach the point in time.
            es.ok(
                "PUT",
                &format!("/walk-a/_doc/late{page}?refresh=true"),
                Some(json!({"n": 9000, "g": "odd"})),
            )
            .await;
            es.ok(
                "PUT",
                &format!("/walk-b/_doc/{}?refresh=true", page % 13),
                Some(json!({"n": 7000, "g": "even"})),
            )
            .await;
            got.extend(rows);
            after = last;
        }
        assert_eq!(got, want, "query {query}");
        assert!(
            got.windows(2).all(|w| w[0].2 < w[1].2),
            "_shard_doc strictly increasing: {got:?}"
        );
        let expected = if query.get("match_all").is_some() {
            24 + 12
        } else {
            // Odd ids: walk-a's 12 less the deleted 5, and walk-b's 6.
            11 + 6
        };
        assert_eq!(got.len(), expected, "query {query}: {got:?}");
    }
    es.stop().await;
}
