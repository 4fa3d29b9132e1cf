//! `reconcile --every` (continuous mode), scraped while it runs: the drift gauges
//! `syncline_drift_entities{store,entity_type,kind}` show the seeded drift and go back to 0
//! once it is repaired, the last run's time and duration and the consumer lag are served
//! beside them, and `/healthz` answers 200 while runs succeed and 503 once one fails.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support_reconcile;

use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands as _;
use support_reconcile::{create_product_table, Pipeline, ENTITY};
use syncline_testkit::{free_port, scrape_metrics, wait_until, ChildGuard, TestDb};

const QUERY: &str = "SELECT id AS entity_id, version, doc AS document FROM product";
const DEADLINE: Duration = Duration::from_secs(120);

/// The value of one series (name with its labels, exactly as served).
fn series(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name_and_labels)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

fn drift(text: &str, store: &str, kind: &str) -> Option<f64> {
    series(
        text,
        &format!(
            "syncline_drift_entities{{store=\"{store}\",entity_type=\"{ENTITY}\",kind=\"{kind}\"}}"
        ),
    )
}

fn ok_runs(text: &str) -> f64 {
    series(text, "syncline_reconcile_runs_total{result=\"ok\"}").unwrap_or(0.0)
}

/// Wait until a run that started after `after_runs` successful ones shows `want` as
/// `(store, kind, count)` for every store and kind (the rest 0); returns the scrape.
async fn wait_for_drift(port: u16, after_runs: f64, want: &[(&str, &str, f64)]) -> String {
    wait_until(DEADLINE, Duration::from_millis(200), || async {
        let text = scrape_metrics(port);
        // Two more runs: the first may have started before the change being waited for.
        if ok_runs(&text) < after_runs + 2.0 {
            return Err(format!("{} ok runs so far", ok_runs(&text)));
        }
        for store in ["es", "redis"] {
            for kind in ["missing", "stale", "extra", "tombstone_mismatch"] {
                let expected = want
                    .iter()
                    .find(|(s, k, _)| *s == store && *k == kind)
                    .map_or(0.0, |w| w.2);
                let got = drift(&text, store, kind);
                if got != Some(expected) {
                    return Err(format!("{store} {kind}: {got:?}, want {expected}\n{text}"));
                }
            }
        }
        Ok(text)
    })
    .await
    .expect("the drift gauges")
}

async fn healthz(port: u16) -> (u16, String) {
    match reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_mode_serves_drift_gauges_last_run_and_health() {
    let p = Pipeline::start("rec-every", "1s").await;
    let db = TestDb::create().await;
    let pg = db.client().await;
    create_product_table(
        &pg,
        200,
        "format('p-%s', lpad(i::text, 4, '0'))",
        "jsonb_build_object('n', i)",
    )
    .await;
    p.load_snapshot(&db.url, QUERY).await;

    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let port = free_port();
    let mut args: Vec<String> = [
        "--brokers",
        &p.brokers,
        "reconcile",
        "--truth",
        "postgres",
        "--postgres-url",
        &db.url,
        "--query",
        QUERY,
        "--every",
        "1s",
        "--grace",
        "200ms",
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
        "--lag-group",
        &p.groups[0],
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(p.store_args());
    let _monitor = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_syncline-ctl"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null()),
    )
    .expect("spawn reconcile --every");

    // In sync: every gauge 0, healthy, the last run's time and duration, and the lag.
    let text = wait_for_drift(port, 0.0, &[]).await;
    let last_run = series(&text, "syncline_reconcile_last_run_timestamp_seconds").unwrap_or(0.0);
    assert!(
        last_run >= started,
        "last run at {last_run}, test started {started}\n{text}"
    );
    let duration = series(&text, "syncline_reconcile_last_run_duration_seconds").unwrap_or(-1.0);
    assert!(duration > 0.0, "{text}");
    let lag = series(
        &text,
        &format!(
            "syncline_consumer_lag{{group=\"{}\",topic=\"{}\"}}",
            p.groups[0], p.topic
        ),
    );
    assert_eq!(lag, Some(0.0), "{text}");
    assert_eq!(healthz(port).await, (200, "ok".to_owned()));

    // Drift behind Syncline's back shows up in the next runs.
    let index = p.index().await;
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
    let mut r = p.redis().await;
    for id in ["p-0010", "p-0011"] {
        let _: () = r.del(p.layout.guard_key(ENTITY, id)).await.unwrap();
    }
    let runs = ok_runs(&scrape_metrics(port));
    wait_for_drift(
        port,
        runs,
        &[("es", "missing", 3.0), ("redis", "missing", 2.0)],
    )
    .await;
    assert_eq!(healthz(port).await.0, 200, "drift is not ill health");

    // Repaired (a one-off run), the gauges go back to 0.
    let (code, _, text) = p.reconcile(&db.url, QUERY, &["--grace", "1s", "--repair"]);
    assert_eq!(code, Some(1), "{text}");
    p.wait_caught_up().await;
    let runs = ok_runs(&scrape_metrics(port));
    wait_for_drift(port, runs, &[]).await;

    // A run that fails (the truth's table is gone) makes /healthz fail with the reason.
    // (While DROP waits for a running walk's lock, /healthz may first say that no run
    // succeeded for too long: also 503, another reason.)
    pg.batch_execute("DROP TABLE product").await.unwrap();
    let body = wait_until(DEADLINE, Duration::from_millis(200), || async {
        match healthz(port).await {
            (503, body) if body.contains("last run failed") => Ok(body),
            h => Err(format!("{h:?}")),
        }
    })
    .await
    .expect("/healthz fails with the reason after a failed run");
    assert!(
        body.contains("product"),
        "the reason names the problem: {body}"
    );
    let text = scrape_metrics(port);
    assert!(
        series(&text, "syncline_reconcile_runs_total{result=\"error\"}").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
}
