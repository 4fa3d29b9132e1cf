//! Continuous mode (`reconcile --every 10m`): the sync-health monitor. Runs reconcile on
//! an interval and serves, in the Prometheus text format:
//!
//! * `syncline_drift_entities{store,entity_type,kind}`: the last successful run's counts;
//! * `syncline_reconcile_last_run_timestamp_seconds`, `..._last_success_timestamp_seconds`,
//!   `syncline_reconcile_last_run_duration_seconds`, `syncline_reconcile_runs_total{result}`;
//! * `syncline_consumer_lag{group,topic}` for each `--lag-group`, read from committed
//!   offsets at the end of every run, so drift and lag are read side by side;
//!
//! and `/healthz`: 200 while the last run succeeded and is not older than twice the
//! interval, else 503 with the reason.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use syncline_kafka::Connection;

use super::{print_report, reconcile_once, Kind, ReconcileArgs, Report};

#[derive(Default)]
struct State {
    last_report: Option<Report>,
    last_run: Option<f64>,
    last_success: Option<f64>,
    last_duration: f64,
    last_error: Option<String>,
    ok_runs: u64,
    failed_runs: u64,
    lag: Vec<(String, String, i64)>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render(s: &State, entity_type: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# HELP syncline_drift_entities Entities in drift found by the last successful reconcile run.");
    let _ = writeln!(o, "# TYPE syncline_drift_entities gauge");
    if let Some(r) = &s.last_report {
        for st in &r.stores {
            for k in Kind::ALL {
                let n = st.drift.get(&k).map_or(0, |x| x.count);
                let _ = writeln!(
                    o,
                    "syncline_drift_entities{{store=\"{}\",entity_type=\"{}\",kind=\"{}\"}} {n}",
                    st.store.as_str(),
                    esc(entity_type),
                    k.as_str()
                );
            }
        }
    }
    let _ = writeln!(
        o,
        "# TYPE syncline_reconcile_last_run_timestamp_seconds gauge"
    );
    let _ = writeln!(
        o,
        "syncline_reconcile_last_run_timestamp_seconds {}",
        s.last_run.unwrap_or(0.0)
    );
    let _ = writeln!(
        o,
        "# TYPE syncline_reconcile_last_success_timestamp_seconds gauge"
    );
    let _ = writeln!(
        o,
        "syncline_reconcile_last_success_timestamp_seconds {}",
        s.last_success.unwrap_or(0.0)
    );
    let _ = writeln!(
        o,
        "# TYPE syncline_reconcile_last_run_duration_seconds gauge"
    );
    let _ = writeln!(
        o,
        "syncline_reconcile_last_run_duration_seconds {}",
        s.last_duration
    );
    let _ = writeln!(o, "# TYPE syncline_reconcile_runs_total counter");
    let _ = writeln!(
        o,
        "syncline_reconcile_runs_total{{result=\"ok\"}} {}",
        s.ok_runs
    );
    let _ = writeln!(
        o,
        "syncline_reconcile_runs_total{{result=\"error\"}} {}",
        s.failed_runs
    );
    if !s.lag.is_empty() {
        let _ = writeln!(o, "# TYPE syncline_consumer_lag gauge");
        for (g, t, lag) in &s.lag {
            let _ = writeln!(
                o,
                "syncline_consumer_lag{{group=\"{}\",topic=\"{}\"}} {lag}",
                esc(g),
                esc(t)
            );
        }
    }
    o
}

async fn lag(conn: &Connection, group: &str, topic: &str) -> anyhow::Result<i64> {
    let ends = syncline_kafka::end_offsets(conn, topic).await?;
    let committed = syncline_kafka::committed_offsets(conn, group, topic).await?;
    Ok(ends
        .iter()
        .zip(committed)
        .map(|(e, c)| e - c.unwrap_or(0).min(*e))
        .sum())
}

/// Run reconcile every `every` until interrupted.
pub async fn run(
    conn: &Connection,
    args: ReconcileArgs,
    every: Duration,
) -> anyhow::Result<ExitCode> {
    let state = Arc::new(Mutex::new(State::default()));
    let entity_type = args.entity_type.clone();
    let (m_state, h_state) = (state.clone(), state.clone());
    let stale_after = every.saturating_mul(2).as_secs_f64();
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let s = m_state.clone();
                let et = entity_type.clone();
                async move {
                    let text = match s.lock() {
                        Ok(g) => render(&g, &et),
                        Err(_) => String::new(),
                    };
                    ([("content-type", "text/plain; version=0.0.4")], text)
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let s = h_state.clone();
                async move {
                    let Ok(g) = s.lock() else {
                        return (StatusCode::SERVICE_UNAVAILABLE, "state poisoned".to_owned());
                    };
                    match (&g.last_error, g.last_success) {
                        (Some(e), _) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("last run failed: {e}"),
                        ),
                        (None, Some(t)) if now() - t > stale_after + g.last_duration => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("no successful run for {:.0} s", now() - t),
                        ),
                        (None, Some(_)) => (StatusCode::OK, "ok".to_owned()),
                        (None, None) => (StatusCode::OK, "first run in progress".to_owned()),
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_addr))?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("error: metrics server: {e}");
        }
    });
    eprintln!(
        "reconciling every {}; metrics on http://{}/metrics",
        humantime::format_duration(every),
        args.metrics_addr
    );
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
        let started = now();
        let result = reconcile_once(conn, &args).await;
        let mut lags = Vec::new();
        for g in &args.lag_groups {
            if let Ok(l) = lag(conn, g, &args.topic).await {
                lags.push((g.clone(), args.topic.clone(), l));
            }
        }
        let Ok(mut s) = state.lock() else {
            anyhow::bail!("monitor state poisoned");
        };
        s.last_run = Some(started);
        s.last_duration = now() - started;
        s.lag = lags;
        match result {
            Ok(r) => {
                if args.json {
                    println!("{}", serde_json::to_string(&r).unwrap_or_default());
                } else {
                    print_report(&r);
                }
                s.last_report = Some(r);
                s.last_success = Some(started);
                s.last_error = None;
                s.ok_runs += 1;
            }
            Err(e) => {
                eprintln!("error: reconcile run failed: {e:#}");
                s.last_error = Some(format!("{e:#}"));
                s.failed_runs += 1;
            }
        }
    }
}
