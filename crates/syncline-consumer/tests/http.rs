//! The operational endpoints over a real TCP connection.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use syncline_consumer::http;
use syncline_consumer::{Health, Metrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Status, headers and body of `GET path`.
async fn get_full(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read");
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = get_full(addr, path).await;
    (status, body)
}

#[tokio::test]
async fn metrics_healthz_and_readyz() {
    let metrics = Metrics::new();
    let sink_counter = metrics.counter("syncline_test_requests_total", "Requests a sink made.");
    sink_counter.inc_by(3);
    let stop = CancellationToken::new();
    let (addr, task) = http::serve(
        "127.0.0.1:0".parse().expect("addr"),
        metrics.clone(),
        Health::new(),
        Duration::from_secs(60),
        stop.clone(),
    )
    .await
    .expect("bind");

    let (status, body) = get(addr, "/healthz").await;
    assert_eq!(status, 200, "{body}");

    // No partitions assigned yet.
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("no partitions assigned"), "{body}");

    let (status, head, body) = get_full(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{head}"
    );
    assert!(
        body.contains("# TYPE syncline_consumer_records_consumed counter"),
        "{body}"
    );
    assert!(
        body.contains("\nsyncline_test_requests_total 3\n"),
        "{body}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");

    let (status, _) = get(addr, "/nope").await;
    assert_eq!(status, 404);

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("server stops")
        .expect("task");
}
