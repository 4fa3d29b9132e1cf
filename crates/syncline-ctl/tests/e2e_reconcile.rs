//! `reconcile --truth postgres` against the real pipeline: every kind of seeded drift is
//! found in the store where it was seeded (and nowhere else), `--repair` publishes events
//! that fix all of it through the topic, and the next run finds nothing.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support_reconcile;

use redis::AsyncCommands as _;
use serde_json::json;
use support_reconcile::{assert_drift, create_product_table, id_set, Pipeline, ENTITY};
use syncline_testkit::TestDb;

const QUERY: &str = "SELECT id AS entity_id, version, doc AS document FROM product";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_drift_is_found_repaired_and_gone() {
    // gc_deletes 1s: a document deleted by hand is re-creatable by a repair a second later
    // (with the default 60 s, Elasticsearch refuses it as a conflict until then; see
    // docs/reconcile.md).
    let p = Pipeline::start("rec-seeded", "1s").await;
    let db = TestDb::create().await;
    let pg = db.client().await;
    create_product_table(
        &pg,
        300,
        "format('p-%s', lpad(i::text, 4, '0'))",
        "jsonb_build_object('name', format('item %s', i), 'price', i)",
    )
    .await;

    // Initial load through snapshot, then the stores agree with the table.
    p.load_snapshot(&db.url, QUERY).await;
    let (code, report, text) = p.reconcile(&db.url, QUERY, &["--grace", "1s"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["drifted_entities"], 0, "{text}");
    assert_eq!(report["truth_entities"], 300, "{text}");

    // Seed drift behind Syncline's back.
    let index = p.index().await;
    let put = |id: &str, version: i64, body: serde_json::Value| {
        let path =
            format!("/{index}/_doc/{id}?version={version}&version_type=external&refresh=true");
        let p = &p;
        async move {
            let (s, b) = p.es(reqwest::Method::PUT, &path, Some(body)).await;
            assert!(s == 200 || s == 201, "PUT {path}: {s} {b}");
        }
    };
    // 1. documents deleted from ES by hand
    for id in ["p-0001", "p-0002", "p-0003"] {
        let (s, b) = p
            .es(
                reqwest::Method::DELETE,
                &format!("/{index}/_doc/{id}?refresh=true"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{b}");
    }
    // 2. events never published: new rows, and a changed row
    pg.batch_execute(
        "INSERT INTO product VALUES
           ('p-0301', nextval('product_version'), '{\"name\":\"new 1\"}'),
           ('p-0302', nextval('product_version'), '{\"name\":\"new 2\"}'),
           ('p-0303', nextval('product_version'), '{\"name\":\"new 3\"}'),
           ('old-1', nextval('product_version'), '{\"name\":\"old 1 now\"}'),
           ('old-2', nextval('product_version'), '{\"name\":\"old 2 now\"}');
         UPDATE product SET version = nextval('product_version'), doc = '{\"name\":\"changed\"}'
           WHERE id = 'p-0006';",
    )
    .await
    .unwrap();
    // 3. older versions written directly into both stores
    let mut r = p.redis().await;
    for id in ["old-1", "old-2"] {
        put(id, 1, json!({"name": "old"})).await;
        let _: () = r.set(p.layout.guard_key(ENTITY, id), "1").await.unwrap();
    }
    // 4. extras
    put("x-1", 7, json!({"name": "ghost"})).await;
    let _: () = r
        .set(p.layout.cache_key(ENTITY, "x-2"), "7\n{\"name\":\"ghost\"}")
        .await
        .unwrap();
    let _: () = r.set(p.layout.guard_key(ENTITY, "x-2"), "7").await.unwrap();
    // 5. Redis guards removed
    for id in ["p-0010", "p-0011"] {
        let _: () = r.del(p.layout.guard_key(ENTITY, id)).await.unwrap();
    }
    // 6. a tombstone where the row is live, above the row's version
    let v12: i64 = pg
        .query_one("SELECT version FROM product WHERE id = 'p-0012'", &[])
        .await
        .unwrap()
        .get(0);
    put(
        "p-0012",
        v12 + 1,
        json!({"_syncline_deleted": true, "_syncline_deleted_at": 0}),
    )
    .await;

    let (code, report, text) = p.reconcile(&db.url, QUERY, &["--grace", "1s"]);
    assert_eq!(code, Some(1), "{text}");
    let expect = [
        (
            "es",
            "missing",
            id_set(&["p-0001", "p-0002", "p-0003", "p-0301", "p-0302", "p-0303"]),
        ),
        ("es", "stale", id_set(&["old-1", "old-2", "p-0006"])),
        ("es", "extra", id_set(&["x-1"])),
        ("es", "tombstone_mismatch", id_set(&["p-0012"])),
        (
            "redis",
            "missing",
            id_set(&["p-0010", "p-0011", "p-0301", "p-0302", "p-0303"]),
        ),
        ("redis", "stale", id_set(&["old-1", "old-2", "p-0006"])),
        ("redis", "extra", id_set(&["x-2"])),
        ("redis", "tombstone_mismatch", Vec::new()),
    ];
    assert_drift(&report, &text, &expect);
    assert_eq!(report["drifted_entities"], 14, "{text}");
    assert_eq!(report["truth_entities"], 305, "{text}");

    // Repair through the topic, then nothing is left.
    let (code, report, text) = p.reconcile(&db.url, QUERY, &["--grace", "1s", "--repair"]);
    assert_eq!(code, Some(1), "{text}");
    assert_eq!(report["repair"]["upserts"], 12, "{text}");
    assert_eq!(report["repair"]["deletes"], 2, "{text}");
    p.wait_caught_up().await;
    let (code, report, text) = p.reconcile(&db.url, QUERY, &["--grace", "1s"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(report["drifted_entities"], 0, "{text}");

    // And the stores hold what the table holds, not merely higher numbers.
    let (s, b) = p
        .es(reqwest::Method::GET, &format!("/{index}/_doc/p-0006"), None)
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["_source"], json!({"name": "changed"}));
    let (_, b) = p
        .es(reqwest::Method::GET, &format!("/{index}/_doc/x-1"), None)
        .await;
    assert_eq!(b["_source"]["_syncline_deleted"], true, "{b}");
    let (_, b) = p
        .es(reqwest::Method::GET, &format!("/{index}/_doc/p-0012"), None)
        .await;
    assert_eq!(b["_source"]["name"], "item 12", "{b}");
    let cached: Option<String> = r.get(p.layout.cache_key(ENTITY, "x-2")).await.unwrap();
    assert_eq!(cached, None);
    let g: Option<String> = r.get(p.layout.guard_key(ENTITY, "p-0301")).await.unwrap();
    let v301: i64 = pg
        .query_one("SELECT version FROM product WHERE id = 'p-0301'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(g, Some(v301.to_string()));
}
