//! Continuous mode (`reconcile --every 10m`): the sync-health monitor. Runs reconcile on
//! an interval and serves, in the OpenMetrics text format (`prometheus-client`, like the
//! consumers' `/metrics`):
//!
//! * `syncline_drift_entities{store,entity_type,kind}`: the last successful run's counts;
//! * `syncline_reconcile_last_run_timestamp_seconds`, `..._last_success_timestamp_seconds`,
//!   `syncline_reconcile_last_run_duration_seconds`, `syncline_reconcile_runs_total{result}`;
//! * `syncline_consumer_lag{group,topic}` for each `--lag-group`, read from committed
//!   offsets at the end of every run, so drift and lag are read side by side;
//!
//! and `/healthz`: 200 while the last run succeeded and is not older than twice the
//! interval, else 503 with the reason.

use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use syncline_kafka::Connection;

use super::{print_report, reconcile_once, Kind, ReconcileArgs, Report};

/// What `/healthz` needs to know about the runs.
#[derive(Default)]
struct Health {
    last_success: Option<f64>,
    last_duration: f64,
    last_error: Option<String>,
}

/// Labels of `syncline_drift_entities` (in the order they are served).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DriftLabels {
    store: String,
    entity_type: String,
    kind: String,
}

/// Labels of `syncline_reconcile_runs_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    result: &'static str,
}

/// Labels of `syncline_consumer_lag`, the name the consumers' own lag gauge has, so one
/// dashboard query shows both.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabels {
    group: String,
    topic: String,
}

/// The monitor's metrics, in one registry of its own (served on `/metrics`).
struct MonitorMetrics {
    registry: Registry,
    drift: Family<DriftLabels, Gauge>,
    last_run: Gauge<f64, AtomicU64>,
    last_success: Gauge<f64, AtomicU64>,
    last_duration: Gauge<f64, AtomicU64>,
    runs: Family<RunLabels, Counter>,
    lag: Family<LagLabels, Gauge>,
}

impl MonitorMetrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let drift = Family::<DriftLabels, Gauge>::default();
        registry.register(
            "syncline_drift_entities",
            "Entities in drift found by the last successful reconcile run",
            drift.clone(),
        );
        let last_run = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "syncline_reconcile_last_run_timestamp_seconds",
            "When the last reconcile run started (Unix time)",
            last_run.clone(),
        );
        let last_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "syncline_reconcile_last_success_timestamp_seconds",
            "When the last successful reconcile run started (Unix time)",
            last_success.clone(),
        );
        let last_duration = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "syncline_reconcile_last_run_duration_seconds",
            "How long the last reconcile run took",
            last_duration.clone(),
        );
        let runs = Family::<RunLabels, Counter>::default();
        registry.register(
            "syncline_reconcile_runs",
            "Reconcile runs by result (ok, error)",
            runs.clone(),
        );
        // Both results are served from the start, so a rate over them is defined at once.
        for result in ["ok", "error"] {
            runs.get_or_create(&RunLabels { result }).inc_by(0);
        }
        let lag = Family::<LagLabels, Gauge>::default();
        registry.register(
            "syncline_consumer_lag",
            "Records not yet committed by each --lag-group, read at the end of every run",
            lag.clone(),
        );
        MonitorMetrics {
            registry,
            drift,
            last_run,
            last_success,
            last_duration,
            runs,
            lag,
        }
    }

    /// The drift counts of a successful run, replacing the previous run's.
    fn set_drift(&self, report: &Report, entity_type: &str) {
        self.drift.clear();
        for st in &report.stores {
            for k in Kind::ALL {
                let n = st.drift.get(&k).map_or(0, |x| x.count);
                self.drift
                    .get_or_create(&DriftLabels {
                        store: st.store.as_str().to_owned(),
                        entity_type: entity_type.to_owned(),
                        kind: k.as_str().to_owned(),
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }

    /// The lag of each `--lag-group`, replacing the previous run's.
    fn set_lag(&self, lags: &[(String, String, i64)]) {
        self.lag.clear();
        for (group, topic, lag) in lags {
            self.lag
                .get_or_create(&LagLabels {
                    group: group.clone(),
                    topic: topic.clone(),
                })
                .set(*lag);
        }
    }

    /// OpenMetrics text of every metric.
    fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
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
    let metrics = Arc::new(MonitorMetrics::new());
    let health = Arc::new(Mutex::new(Health::default()));
    let (m_metrics, h_state) = (metrics.clone(), health.clone());
    let stale_after = every.saturating_mul(2).as_secs_f64();
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = m_metrics.clone();
                async move {
                    (
                        [(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.render(),
                    )
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
        let duration = now() - started;
        metrics.last_run.set(started);
        metrics.last_duration.set(duration);
        metrics.set_lag(&lags);
        let Ok(mut h) = health.lock() else {
            anyhow::bail!("monitor state poisoned");
        };
        h.last_duration = duration;
        match result {
            Ok(r) => {
                if args.json {
                    println!("{}", serde_json::to_string(&r).unwrap_or_default());
                } else {
                    print_report(&r);
                }
                metrics.set_drift(&r, &args.entity_type);
                metrics.last_success.set(started);
                metrics
                    .runs
                    .get_or_create(&RunLabels { result: "ok" })
                    .inc();
                h.last_success = Some(started);
                h.last_error = None;
            }
            Err(e) => {
                eprintln!("error: reconcile run failed: {e:#}");
                metrics
                    .runs
                    .get_or_create(&RunLabels { result: "error" })
                    .inc();
                h.last_error = Some(format!("{e:#}"));
            }
        }
    }
}
