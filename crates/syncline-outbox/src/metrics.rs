//! The relay's metrics and the `/metrics` `/healthz` `/readyz` server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Upper bounds (seconds) of the commit-to-acknowledgement histogram.
const DELAY_BUCKETS: [f64; 16] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0,
];

/// A part of the relay's loop whose time is counted (`syncline_outbox_stage_seconds_total`),
/// to show where a slow relay spends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading a batch (the fetch statement).
    Read,
    /// Turning rows into events and handing them to the producer.
    Send,
    /// Waiting for the oldest batch in flight to be acknowledged, with nothing else to do
    /// (the pipeline is full, draining, or no new rows).
    Wait,
    /// Deleting acknowledged rows (and copying quarantined ones).
    Delete,
}

impl Stage {
    const ALL: [Stage; 4] = [Stage::Read, Stage::Send, Stage::Wait, Stage::Delete];

    fn label(self) -> &'static str {
        match self {
            Stage::Read => "read",
            Stage::Send => "send",
            Stage::Wait => "wait",
            Stage::Delete => "delete",
        }
    }
}

/// Counters and gauges of one relay; cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Metrics(Arc<Inner>);

#[derive(Default)]
struct Inner {
    published: AtomicU64,
    quarantined: AtomicU64,
    publish_failures: AtomicU64,
    batches: AtomicU64,
    gaps: AtomicU64,
    stage_us: [AtomicU64; Stage::ALL.len()],
    pending: AtomicU64,
    oldest_age_ms: AtomicU64,
    published_per_second_milli: AtomicU64,
    active: AtomicU64,
    connected: AtomicU64,
    takeovers: AtomicU64,
    delay_buckets: [AtomicU64; DELAY_BUCKETS.len()],
    delay_count: AtomicU64,
    delay_sum_us: AtomicU64,
}

impl Metrics {
    /// New, all zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rows published and acknowledged (and then deleted).
    pub fn published(&self) -> u64 {
        self.0.published.load(Ordering::Relaxed)
    }

    /// Rows moved to the quarantine table.
    pub fn quarantined(&self) -> u64 {
        self.0.quarantined.load(Ordering::Relaxed)
    }

    /// Whether this relay holds the outbox lock.
    pub fn is_active(&self) -> bool {
        self.0.active.load(Ordering::Relaxed) == 1
    }

    /// Whether this relay has a PostgreSQL connection.
    pub fn is_connected(&self) -> bool {
        self.0.connected.load(Ordering::Relaxed) == 1
    }

    pub(crate) fn add_published(&self, n: u64) {
        self.0.published.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_quarantined(&self, n: u64) {
        self.0.quarantined.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_publish_failures(&self, n: u64) {
        self.0.publish_failures.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_batch(&self) {
        self.0.batches.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_gap(&self) {
        self.0.gaps.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_stage(&self, stage: Stage, took: std::time::Duration) {
        self.0.stage_us[stage as usize].fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }
    pub(crate) fn set_pending(&self, rows: u64, oldest_age_ms: u64) {
        self.0.pending.store(rows, Ordering::Relaxed);
        self.0.oldest_age_ms.store(oldest_age_ms, Ordering::Relaxed);
    }
    pub(crate) fn set_rate(&self, per_second: f64) {
        self.0
            .published_per_second_milli
            .store((per_second * 1000.0) as u64, Ordering::Relaxed);
    }
    pub(crate) fn set_active(&self, active: bool) {
        let was = self.0.active.swap(u64::from(active), Ordering::Relaxed);
        if active && was == 0 {
            self.0.takeovers.fetch_add(1, Ordering::Relaxed);
        }
    }
    pub(crate) fn set_connected(&self, connected: bool) {
        self.0
            .connected
            .store(u64::from(connected), Ordering::Relaxed);
    }
    pub(crate) fn observe_delay(&self, seconds: f64) {
        let s = seconds.max(0.0);
        for (i, b) in DELAY_BUCKETS.iter().enumerate() {
            if s <= *b {
                self.0.delay_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.0.delay_count.fetch_add(1, Ordering::Relaxed);
        self.0
            .delay_sum_us
            .fetch_add((s * 1e6) as u64, Ordering::Relaxed);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let i = &self.0;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        };
        metric(
            "syncline_outbox_published_total",
            "counter",
            "Rows published, acknowledged by the broker and deleted.",
            g(&i.published).to_string(),
        );
        metric(
            "syncline_outbox_published_per_second",
            "gauge",
            "Rows published per second over the last measurement window.",
            format!("{:.3}", g(&i.published_per_second_milli) as f64 / 1000.0),
        );
        metric(
            "syncline_outbox_quarantined_total",
            "counter",
            "Rows moved to the quarantine table.",
            g(&i.quarantined).to_string(),
        );
        metric(
            "syncline_outbox_publish_failures_total",
            "counter",
            "Rows whose publication failed transiently (left in the outbox, retried).",
            g(&i.publish_failures).to_string(),
        );
        metric(
            "syncline_outbox_batches_total",
            "counter",
            "Batches read from the outbox.",
            g(&i.batches).to_string(),
        );
        metric(
            "syncline_outbox_gaps_total",
            "counter",
            "Reads that found a row committed below rows in flight (the pipeline was drained and the head read again).",
            g(&i.gaps).to_string(),
        );
        metric(
            "syncline_outbox_rows_pending",
            "gauge",
            "Rows in the outbox table (last count by the active relay).",
            g(&i.pending).to_string(),
        );
        metric(
            "syncline_outbox_oldest_pending_age_seconds",
            "gauge",
            "Age of the oldest row in the outbox (0 when empty).",
            format!("{:.3}", g(&i.oldest_age_ms) as f64 / 1000.0),
        );
        metric(
            "syncline_outbox_active",
            "gauge",
            "1 while this relay holds the outbox lock and publishes, 0 on standby.",
            g(&i.active).to_string(),
        );
        metric(
            "syncline_outbox_connected",
            "gauge",
            "1 while this relay has a PostgreSQL connection.",
            g(&i.connected).to_string(),
        );
        metric(
            "syncline_outbox_takeovers_total",
            "counter",
            "Times this relay became the active one.",
            g(&i.takeovers).to_string(),
        );
        let name = "syncline_outbox_stage_seconds_total";
        out.push_str(&format!(
            "# HELP {name} Time of the relay's loop by stage (read, send, wait for acknowledgements, delete).\n# TYPE {name} counter\n"
        ));
        for stage in Stage::ALL {
            out.push_str(&format!(
                "{name}{{stage=\"{}\"}} {:.6}\n",
                stage.label(),
                g(&i.stage_us[stage as usize]) as f64 / 1e6
            ));
        }
        let name = "syncline_outbox_commit_to_ack_seconds";
        out.push_str(&format!(
            "# HELP {name} From the row's occurred_at to the broker's acknowledgement.\n# TYPE {name} histogram\n"
        ));
        for (b, c) in DELAY_BUCKETS.iter().zip(i.delay_buckets.iter()) {
            out.push_str(&format!("{name}_bucket{{le=\"{b}\"}} {}\n", g(c)));
        }
        let count = g(&i.delay_count);
        out.push_str(&format!("{name}_bucket{{le=\"+Inf\"}} {count}\n"));
        out.push_str(&format!(
            "{name}_sum {:.6}\n{name}_count {count}\n",
            g(&i.delay_sum_us) as f64 / 1e6
        ));
        out
    }
}

/// Bind `addr` and serve `/metrics`, `/healthz` (the process answers) and `/readyz` (it
/// has a PostgreSQL connection, active or standby) until `stop` (the consumers' server,
/// [`syncline_consumer::http::serve_with`]). Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let ready = metrics.clone();
    syncline_consumer::http::serve_with(
        addr,
        move || metrics.render(),
        move || ready.readiness(),
        stop,
    )
    .await
}

impl Metrics {
    /// `/readyz`: ready with a PostgreSQL connection (active or standby).
    fn readiness(&self) -> Result<String, String> {
        if self.is_connected() {
            let role = if self.is_active() {
                "active"
            } else {
                "standby"
            };
            Ok(format!("ready ({role})"))
        } else {
            Err("no PostgreSQL connection".to_owned())
        }
    }
}
