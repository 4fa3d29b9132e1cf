//! Fault injection: a share of bulk requests answering 429, item-level 429s, connections
//! closed mid-response, delays, the REST control API and the counters.

use std::time::{Duration, Instant};

use es_devserver::{Config, FaultKind, FaultRule, FaultTarget};
use serde_json::{json, Value};

fn ndjson(index: &str, from: usize, n: usize) -> String {
    let mut s = String::new();
    for i in from..from + n {
        s.push_str(&format!(
            "{{\"index\":{{\"_index\":\"{index}\",\"_id\":\"{i}\"}}}}\n{{\"n\":{i}}}\n"
        ));
    }
    s
}

async fn bulk(client: &reqwest::Client, url: &str, body: String) -> reqwest::Result<(u16, Value)> {
    let r = client
        .post(format!("{url}/_bulk"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await?;
    let status = r.status().as_u16();
    let v = r.json().await?;
    Ok((status, v))
}

#[tokio::test]
async fn share_of_bulk_requests_rejected_and_reproducible() {
    let server = es_devserver::start(Config {
        fault_seed: 42,
        ..Config::default()
    })
    .await
    .expect("start");
    let client = reqwest::Client::new();
    let rule = FaultRule::new(FaultTarget::Bulk, FaultKind::TooManyRequests).probability(0.3);

    let mut runs = Vec::new();
    for _ in 0..2 {
        server.set_faults(vec![rule.clone()]);
        let mut outcomes = Vec::new();
        for i in 0..200 {
            let (status, body) = bulk(&client, server.url(), ndjson("share", i, 1))
                .await
                .expect("bulk");
            if status == 429 {
                assert_eq!(body["status"], 429);
                assert_eq!(body["error"]["type"], "es_rejected_execution_exception");
                assert_eq!(
                    body["error"]["root_cause"][0]["type"],
                    "es_rejected_execution_exception"
                );
            } else {
                assert_eq!(status, 200);
            }
            outcomes.push(status);
        }
        runs.push(outcomes);
    }
    let rejected = runs[0].iter().filter(|s| **s == 429).count();
    assert!(
        (30..=90).contains(&rejected),
        "about 30% of 200 requests rejected, got {rejected}"
    );
    assert_eq!(runs[0], runs[1], "the same seed rejects the same requests");

    // Other requests are untouched by a bulk rule.
    let r = client
        .get(format!("{}/share/_count", server.url()))
        .send()
        .await
        .expect("count");
    assert_eq!(r.status(), 200);

    let stats = server.stats();
    assert_eq!(stats.faults.get("429").copied(), Some(2 * rejected as u64));
    assert_eq!(stats.bulk_requests, 400);
    // Items are counted for the bulk requests that were processed.
    assert_eq!(stats.bulk_items, 400 - 2 * rejected as u64);
    server.shutdown().await;
}

#[tokio::test]
async fn item_level_rejections() {
    let server = es_devserver::start(Config::default()).await.expect("start");
    let client = reqwest::Client::new();
    server.set_faults(vec![FaultRule::new(
        FaultTarget::BulkItem,
        FaultKind::TooManyRequests,
    )
    .count(3)]);

    let (status, body) = bulk(&client, server.url(), ndjson("items", 0, 10))
        .await
        .expect("bulk");
    assert_eq!(status, 200);
    assert_eq!(body["errors"], true);
    let items = body["items"].as_array().expect("items");
    let rejected: Vec<&Value> = items
        .iter()
        .filter(|i| i["index"]["status"] == 429)
        .collect();
    assert_eq!(rejected.len(), 3);
    for r in &rejected {
        assert_eq!(
            r["index"]["error"]["type"],
            "es_rejected_execution_exception"
        );
        let id = r["index"]["_id"].as_str().expect("id");
        let g = client
            .get(format!("{}/items/_doc/{id}", server.url()))
            .send()
            .await
            .expect("get");
        assert_eq!(g.status(), 404, "a rejected item is not indexed");
    }
    assert_eq!(
        items.iter().filter(|i| i["index"]["status"] == 201).count(),
        7
    );

    // The count is used up: the next bulk succeeds entirely.
    let (_, body) = bulk(&client, server.url(), ndjson("items", 10, 5))
        .await
        .expect("bulk");
    assert_eq!(body["errors"], false);
    let stats = server.stats();
    assert_eq!(stats.item_faults.get("429").copied(), Some(3));
    assert_eq!(stats.faults_total, 3);
    server.shutdown().await;
}

#[tokio::test]
async fn connection_closed_mid_response() {
    let server = es_devserver::start(Config::default()).await.expect("start");
    let client = reqwest::Client::new();
    server.set_faults(vec![
        FaultRule::new(FaultTarget::Bulk, FaultKind::Close).count(1)
    ]);

    let r = bulk(&client, server.url(), ndjson("closed", 0, 50)).await;
    assert!(r.is_err(), "the response is cut off: {r:?}");

    // The request was processed before the connection was cut (a retry must be idempotent).
    let r = client
        .get(format!("{}/closed/_doc/7", server.url()))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);

    // Later requests work.
    let (status, body) = bulk(&client, server.url(), ndjson("closed", 0, 5))
        .await
        .expect("bulk");
    assert_eq!(status, 200);
    assert_eq!(body["items"][0]["index"]["result"], "updated");
    assert_eq!(server.stats().faults.get("close").copied(), Some(1));
    server.shutdown().await;
}

#[tokio::test]
async fn rest_control_api_and_other_kinds() {
    let server = es_devserver::start(Config::default()).await.expect("start");
    let url = server.url().to_string();
    let client = reqwest::Client::new();

    let rules = json!([
        {"target": "search", "kind": "503", "count": 1},
        {"target": "write", "kind": "500", "count": 1},
        {"target": "read", "kind": "delay", "delay_ms": 300, "count": 1}
    ]);
    let r = client
        .put(format!("{url}/_devserver/faults"))
        .header("content-type", "application/json")
        .body(rules.to_string())
        .send()
        .await
        .expect("put faults");
    assert_eq!(r.status(), 200);
    let got: Value = client
        .get(format!("{url}/_devserver/faults"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(got["rules"].as_array().map(Vec::len), Some(3));

    let r = client
        .get(format!("{url}/_search"))
        .send()
        .await
        .expect("search");
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["type"], "unavailable_shards_exception");
    assert_eq!(
        client
            .get(format!("{url}/_search"))
            .send()
            .await
            .expect("search")
            .status(),
        200
    );

    let put = |id: &str| {
        client
            .put(format!("{url}/kinds/_doc/{id}"))
            .header("content-type", "application/json")
            .body("{\"a\":1}")
            .send()
    };
    let r = put("1").await.expect("put");
    assert_eq!(r.status(), 500);
    assert_eq!(put("1").await.expect("put").status(), 201);

    let started = Instant::now();
    let r = client
        .get(format!("{url}/kinds/_doc/1"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300), "delayed");

    let stats: Value = client
        .get(format!("{url}/_devserver/stats"))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["faults"]["503"], 1);
    assert_eq!(stats["faults"]["500"], 1);
    assert_eq!(stats["faults"]["delay"], 1);
    assert_eq!(stats["faults_total"], 3);

    let r = client
        .delete(format!("{url}/_devserver/faults"))
        .send()
        .await
        .expect("delete faults");
    assert_eq!(r.status(), 200);
    let bad = client
        .put(format!("{url}/_devserver/faults"))
        .header("content-type", "application/json")
        .body(r#"[{"target":"bulk","kind":"429","probability":2.0}]"#)
        .send()
        .await
        .expect("bad rules");
    assert_eq!(bad.status(), 400);
    server.shutdown().await;
}

#[tokio::test]
async fn faults_from_config_flags() {
    let rule = FaultRule::parse_flag("bulk:429:2").expect("flag");
    let server = es_devserver::start(Config {
        faults: vec![rule],
        ..Config::default()
    })
    .await
    .expect("start");
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..4 {
        statuses.push(
            bulk(&client, server.url(), ndjson("flags", i, 1))
                .await
                .expect("bulk")
                .0,
        );
    }
    assert_eq!(statuses, vec![429, 429, 200, 200]);
    server.shutdown().await;
}
