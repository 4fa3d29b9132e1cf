//! What `deploy/` ships refers only to metrics the binaries serve: every `syncline_*` name
//! in the Prometheus alert rules (`deploy/prometheus/alerts.yml`) and the Grafana
//! dashboard (`deploy/grafana/*.json`) is declared (`# TYPE`) on the `/metrics` of a
//! running `syncline-es-indexer`, `syncline-redis-invalidator` or `syncline-outbox`
//! (OpenMetrics text: a counter's `# TYPE` names the family without `_total`). Labelled
//! families are declared before their first sample, so idle processes suffice.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "support/pipeline.rs"]
mod pipeline;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use pipeline::{migrate_outbox, Pipeline};
use syncline_cache::Mode;
use syncline_testkit::{
    create_topic_with_dlq, free_port, kafka_brokers, scrape_metrics, unique_name, wait_until,
    ChildGuard, TestDb,
};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every `syncline_*` metric name in `text` (PromQL, JSON or YAML alike).
fn referenced(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text.get(i..).and_then(|t| t.find("syncline_")) {
        let start = i + at;
        let preceded_by_word = start > 0
            && bytes
                .get(start - 1)
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |n| start + n);
        if !preceded_by_word {
            out.insert(text[start..end].to_owned());
        }
        i = end;
    }
    // The outbox's table names are not metrics.
    out.retain(|n| n != "syncline_outbox_quarantine");
    out
}

/// Metric families declared on a `/metrics` page (OpenMetrics text), with the series
/// names PromQL sees: a counter family `x` is served as `x_total`, a histogram's as
/// `x_bucket`, `x_sum` and `x_count`.
fn declared(page: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in page.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            out.insert(name.to_owned());
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[],
            };
            for suffix in suffixes {
                out.insert(format!("{name}{suffix}"));
            }
        }
    }
    out
}

#[test]
fn openmetrics_counters_and_histograms_declare_their_series() {
    let page = "# TYPE a counter\na_total 1\n# TYPE h_seconds histogram\n# UNIT h_seconds seconds\n# TYPE g gauge\n# EOF\n";
    let names: Vec<String> = declared(page).into_iter().collect();
    assert_eq!(
        names,
        [
            "a",
            "a_total",
            "g",
            "h_seconds",
            "h_seconds_bucket",
            "h_seconds_count",
            "h_seconds_sum"
        ]
    );
}

/// `/metrics` of the process serving on `port`, once it answers with metric families.
async fn metrics_page(port: u16, who: &str) -> String {
    wait_until(
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async move {
            let page = scrape_metrics(port);
            if page.contains("# TYPE") {
                Ok(page)
            } else {
                Err(format!("{who} serves no metrics on port {port} yet"))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_dashboard_name_only_served_metrics() {
    let mut files = vec![deploy_dir().join("prometheus/alerts.yml")];
    let grafana = std::fs::read_dir(deploy_dir().join("grafana")).expect("deploy/grafana");
    files.extend(
        grafana
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json")),
    );
    let mut wanted = BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read a deploy file");
        if f.extension().is_some_and(|x| x == "json") {
            let v: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
            assert!(v["panels"].is_array(), "{} has no panels", f.display());
        } else {
            let _: serde_yaml::Value = serde_yaml::from_str(&text).expect("alert rules are YAML");
        }
        wanted.extend(referenced(&text));
    }
    assert!(files.len() >= 2, "alert rules and a dashboard: {files:?}");
    assert!(wanted.len() > 10, "too few metric names found: {wanted:?}");

    let brokers = kafka_brokers();
    let base = unique_name("deploy");
    let topic = format!("{base}-events");
    create_topic_with_dlq(&brokers, &topic, 1)
        .await
        .expect("topics");
    let es = es_devserver::start(es_devserver::Config::default())
        .await
        .expect("start the ES dev server");
    let db = TestDb::create().await;
    migrate_outbox(&db.url);
    let pipeline = Pipeline {
        brokers,
        topic,
        base,
    };
    let ports = [free_port(), free_port(), free_port()];
    let silent = |c: &mut Command| {
        c.stdout(Stdio::null()).stderr(Stdio::null());
    };
    let mut commands = [
        pipeline.indexer(es.url(), ports[0]),
        pipeline.invalidator(&syncline_testkit::redis_url(), Mode::Invalidate, ports[1]),
        pipeline.relay(&db.url, ports[2]),
    ];
    let _children: Vec<ChildGuard> = commands
        .iter_mut()
        .map(|c| {
            silent(c);
            ChildGuard::spawn(c).expect("spawn a pipeline binary")
        })
        .collect();

    let mut served = BTreeSet::new();
    for (port, who) in ports.iter().zip(["indexer", "invalidator", "outbox relay"]) {
        served.extend(declared(&metrics_page(*port, who).await));
    }
    let missing: Vec<&String> = wanted.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "deploy/ refers to metrics no binary serves: {missing:?} (served: {served:?})"
    );
}
