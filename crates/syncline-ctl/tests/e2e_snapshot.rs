//! `syncline-ctl snapshot`: a 100,000-row table ends in the table's state in both stores,
//! and bad input is a clear error that publishes nothing invalid and leaks no password.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support_reconcile;

use redis::AsyncCommands as _;
use support_reconcile::{Pipeline, ENTITY};
use syncline_testkit::{end_offsets, read_all, TestDb};

const QUERY: &str = "SELECT id AS entity_id, version, doc AS document FROM product";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_of_100k_rows_reaches_both_stores() {
    let p = Pipeline::start("snap-100k", "60s").await;
    let db = TestDb::create().await;
    let pg = db.client().await;
    pg.batch_execute(
        "CREATE TABLE product (id text PRIMARY KEY, version bigint NOT NULL, doc jsonb NOT NULL);
         INSERT INTO product
           SELECT format('p-%s', i), 1000 + i * 3,
                  jsonb_build_object('name', format('item %s', i), 'price', i % 97)
           FROM generate_series(1, 100000) AS i;",
    )
    .await
    .unwrap();
    let out = p.snapshot(&db.url, QUERY);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("100000 of 100000 events acknowledged"),
        "{stderr}"
    );
    eprintln!("{stderr}");
    let ends = end_offsets(&p.brokers, &p.topic).await.unwrap();
    assert_eq!(ends.iter().sum::<i64>(), 100_000);
    p.wait_caught_up().await;

    // The oracle is the table itself: every row, at its version, with its document.
    let rows = pg
        .query(
            "SELECT id, version, doc::text FROM product ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let index = p.index().await;
    let _ = p
        .es(reqwest::Method::POST, &format!("/{index}/_refresh"), None)
        .await;
    let (s, b) = p
        .es(
            reqwest::Method::GET,
            &format!("/{}/_count", p.alias()),
            None,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["count"], 100_000, "{b}");
    let mut r = p.redis().await;
    for chunk in rows.chunks(1000) {
        let ids: Vec<String> = chunk.iter().map(|r| r.get::<_, String>(0)).collect();
        let body = serde_json::json!({"ids": ids});
        let (s, b) = p
            .es(
                reqwest::Method::POST,
                &format!("/{index}/_mget"),
                Some(body),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        let docs = b["docs"].as_array().cloned().unwrap_or_default();
        assert_eq!(docs.len(), chunk.len());
        let keys: Vec<String> = ids
            .iter()
            .map(|id| p.layout.guard_key(ENTITY, id))
            .collect();
        let guards: Vec<Option<String>> = r.mget(&keys).await.unwrap();
        for ((row, doc), guard) in chunk.iter().zip(docs).zip(guards) {
            let (id, version, text): (String, i64, String) = (row.get(0), row.get(1), row.get(2));
            let want: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(doc["_id"], id.as_str());
            assert_eq!(doc["_version"], version, "{id}: {doc}");
            assert_eq!(doc["_source"], want, "{id}");
            assert_eq!(guard, Some(version.to_string()), "{id}");
        }
    }
}

/// Every bad input: exit code 2, a message that names the problem, nothing invalid
/// published, and the password nowhere in the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_clear_error_and_publishes_nothing_invalid() {
    let brokers = syncline_testkit::kafka_brokers();
    let topic = syncline_testkit::unique_name("snap-bad");
    syncline_testkit::create_topic(&brokers, &topic, 1)
        .await
        .unwrap();
    let db = TestDb::create().await;
    let pg = db.client().await;
    pg.batch_execute(
        "CREATE TABLE t (id text, v bigint, n numeric, s text, doc jsonb, txt text);
         INSERT INTO t VALUES
           ('a', 1, 1.5, 'x', '{\"ok\":1}', '{\"ok\":1}'),
           ('b', 2, 2, 'y', '{\"ok\":2}', 'not json'),
           ('c', 3, 3, 'z', '{\"ok\":3}', '{\"ok\":3}');",
    )
    .await
    .unwrap();
    let ctl = |url: &str, query: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_syncline-ctl"))
            .args([
                "--brokers",
                &brokers,
                "snapshot",
                "--quiet",
                "--entity-type",
                ENTITY,
            ])
            .args(["--topic", &topic, "--postgres-url", url, "--query", query])
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let cases = [
        (
            "SELECT id AS entity_id, doc AS document FROM t",
            "a column named `version`",
        ),
        (
            "SELECT id AS entity_id, v AS version FROM t",
            "a column named `document`",
        ),
        (
            "SELECT id, v AS version, doc AS document FROM t",
            "a column named `entity_id`",
        ),
        (
            "SELECT id AS entity_id, n AS version, doc AS document FROM t",
            "column `version` has type numeric",
        ),
        (
            "SELECT id AS entity_id, s AS version, doc AS document FROM t",
            "column `version` has type text",
        ),
        (
            "SELECT id AS entity_id, v AS version, v AS document FROM t",
            "column `document` has type int8",
        ),
        ("SELECT nope FROM t", "does not exist"),
    ];
    for (query, want) in cases {
        let (code, text) = ctl(&db.url, query);
        assert_eq!(code, Some(2), "{query}: {text}");
        assert!(text.contains(want), "{query}: expected {want:?} in\n{text}");
    }
    assert_eq!(end_offsets(&brokers, &topic).await.unwrap(), vec![0]);

    // A non-JSON document in the middle: the rows before it are published (valid, all
    // acknowledged), the bad one and everything after it are not, and the message names it.
    let (code, text) = ctl(
        &db.url,
        "SELECT id AS entity_id, v AS version, txt AS document FROM t ORDER BY id",
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("entity_id=\"b\": document is not JSON"),
        "{text}"
    );
    assert!(text.contains("1 of 1 events acknowledged"), "{text}");
    assert_eq!(end_offsets(&brokers, &topic).await.unwrap(), vec![1]);
    let records = read_all(&brokers, &topic, 1, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let first = records.first().map(syncline_testkit::kafka::decode_message);
    assert!(
        matches!(&first, Some(Ok(ev)) if ev.entity_id == "a" && ev.version == 1),
        "{first:?}"
    );

    // A wrong user with a password: refused, the password never shown.
    let secret = "s3cr3t-Pa55";
    let bad = db
        .url
        .replacen("postgres@", &format!("nobody:{secret}@"), 1);
    assert_ne!(bad, db.url, "test database URL has the expected user");
    let (code, text) = ctl(&bad, "SELECT 1");
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("nobody"), "{text}");
    assert!(!text.contains(secret), "password leaked: {text}");
}
