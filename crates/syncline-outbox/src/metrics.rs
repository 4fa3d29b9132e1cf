//! The relay's metrics (a prometheus-client registry of its own, served as OpenMetrics
//! text) and the `/metrics` `/healthz` `/readyz` server.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use syncline_consumer::metrics::{Declared, TimeHistogram};
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

/// A counter of seconds (a float, added to atomically).
type SecondsCounter = Counter<f64, AtomicU64>;
/// A gauge holding a float.
type FloatGauge = Gauge<f64, AtomicU64>;

/// Counters and gauges of one relay; cheap to clone (shared).
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

struct Inner {
    registry: Registry,
    published: Counter,
    quarantined: Counter,
    publish_failures: Counter,
    batches: Counter,
    gaps: Counter,
    /// `syncline_outbox_stage_seconds_total{stage}`, one handle per [`Stage::ALL`] entry.
    stages: [SecondsCounter; Stage::ALL.len()],
    pending: Gauge,
    oldest_age: FloatGauge,
    published_per_second: FloatGauge,
    active: Gauge,
    connected: Gauge,
    takeovers: Counter,
    commit_to_ack: TimeHistogram,
}

impl Metrics {
    /// New, all zero.
    pub fn new() -> Self {
        let mut r = Registry::default();
        let counter = |r: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            r.register(name, help, c.clone());
            c
        };
        let gauge = |r: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            r.register(name, help, g.clone());
            g
        };
        let published = counter(
            &mut r,
            "syncline_outbox_published",
            "Rows published, acknowledged by the broker and deleted",
        );
        let published_per_second = FloatGauge::default();
        r.register(
            "syncline_outbox_published_per_second",
            "Rows published per second over the last measurement window",
            published_per_second.clone(),
        );
        let quarantined = counter(
            &mut r,
            "syncline_outbox_quarantined",
            "Rows moved to the quarantine table",
        );
        let publish_failures = counter(
            &mut r,
            "syncline_outbox_publish_failures",
            "Rows whose publication failed transiently (left in the outbox, retried)",
        );
        let batches = counter(
            &mut r,
            "syncline_outbox_batches",
            "Batches read from the outbox",
        );
        let gaps = counter(
            &mut r,
            "syncline_outbox_gaps",
            "Reads that found a row committed below rows in flight (the pipeline was drained and the head read again)",
        );
        let pending = gauge(
            &mut r,
            "syncline_outbox_rows_pending",
            "Rows in the outbox table (last count by the active relay)",
        );
        let oldest_age = FloatGauge::default();
        r.register_with_unit(
            "syncline_outbox_oldest_pending_age",
            "Age of the oldest row in the outbox (0 when empty)",
            Unit::Seconds,
            oldest_age.clone(),
        );
        let active = gauge(
            &mut r,
            "syncline_outbox_active",
            "1 while this relay holds the outbox lock and publishes, 0 on standby",
        );
        let connected = gauge(
            &mut r,
            "syncline_outbox_connected",
            "1 while this relay has a PostgreSQL connection",
        );
        let takeovers = counter(
            &mut r,
            "syncline_outbox_takeovers",
            "Times this relay became the active one",
        );
        let stage_family = Family::<[(&'static str, &'static str); 1], SecondsCounter>::default();
        r.register_with_unit(
            "syncline_outbox_stage",
            "Time of the relay's loop by stage (read, send, wait for acknowledgements, delete)",
            Unit::Seconds,
            Declared(stage_family.clone()),
        );
        // Resolved once: the loop adds to them on every batch.
        let stages = Stage::ALL.map(|s| stage_family.get_or_create_owned(&[("stage", s.label())]));
        let commit_to_ack = TimeHistogram::new(&DELAY_BUCKETS);
        r.register_with_unit(
            "syncline_outbox_commit_to_ack",
            "From the row's occurred_at to the broker's acknowledgement",
            Unit::Seconds,
            commit_to_ack.clone(),
        );
        Metrics(Arc::new(Inner {
            registry: r,
            published,
            quarantined,
            publish_failures,
            batches,
            gaps,
            stages,
            pending,
            oldest_age,
            published_per_second,
            active,
            connected,
            takeovers,
            commit_to_ack,
        }))
    }

    /// Rows published and acknowledged (and then deleted).
    pub fn published(&self) -> u64 {
        self.0.published.get()
    }

    /// Rows moved to the quarantine table.
    pub fn quarantined(&self) -> u64 {
        self.0.quarantined.get()
    }

    /// Whether this relay holds the outbox lock.
    pub fn is_active(&self) -> bool {
        self.0.active.get() == 1
    }

    /// Whether this relay has a PostgreSQL connection.
    pub fn is_connected(&self) -> bool {
        self.0.connected.get() == 1
    }

    pub(crate) fn add_published(&self, n: u64) {
        self.0.published.inc_by(n);
    }
    pub(crate) fn add_quarantined(&self, n: u64) {
        self.0.quarantined.inc_by(n);
    }
    pub(crate) fn add_publish_failures(&self, n: u64) {
        self.0.publish_failures.inc_by(n);
    }
    pub(crate) fn add_batch(&self) {
        self.0.batches.inc();
    }
    pub(crate) fn add_gap(&self) {
        self.0.gaps.inc();
    }
    pub(crate) fn add_stage(&self, stage: Stage, took: Duration) {
        if let Some(c) = self.0.stages.get(stage as usize) {
            c.inc_by(took.as_secs_f64());
        }
    }
    pub(crate) fn set_pending(&self, rows: u64, oldest_age_ms: u64) {
        self.0.pending.set(i64::try_from(rows).unwrap_or(i64::MAX));
        self.0.oldest_age.set(oldest_age_ms as f64 / 1000.0);
    }
    pub(crate) fn set_rate(&self, per_second: f64) {
        self.0.published_per_second.set(per_second);
    }
    pub(crate) fn set_active(&self, active: bool) {
        let was = self.0.active.set(i64::from(active));
        if active && was == 0 {
            self.0.takeovers.inc();
        }
    }
    pub(crate) fn set_connected(&self, connected: bool) {
        self.0.connected.set(i64::from(connected));
    }
    pub(crate) fn observe_delay(&self, seconds: f64) {
        // A producer clock ahead of ours gives a negative delay: counted as 0.
        let d = Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::MAX);
        self.0.commit_to_ack.observe(d);
    }

    /// OpenMetrics text exposition, ending in `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.0.registry) {
            tracing::error!(error = %e, "encoding the metrics failed");
            out.clear();
            out.push_str("# EOF\n");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_in_openmetrics() {
        let m = Metrics::new();
        let idle = m.render();
        assert!(
            idle.contains("# TYPE syncline_outbox_stage_seconds counter\n"),
            "{idle}"
        );
        m.add_published(3);
        m.add_stage(Stage::Read, Duration::from_millis(1500));
        m.set_pending(7, 2500);
        m.set_active(true);
        m.set_active(true);
        m.set_connected(true);
        m.observe_delay(0.004);
        m.observe_delay(-1.0);
        let text = m.render();
        let lines: Vec<&str> = text.lines().collect();
        assert!(text.ends_with("# EOF\n"), "{text}");
        for want in [
            "syncline_outbox_published_total 3",
            "syncline_outbox_stage_seconds_total{stage=\"read\"} 1.5",
            "syncline_outbox_stage_seconds_total{stage=\"wait\"} 0.0",
            "syncline_outbox_rows_pending 7",
            "syncline_outbox_oldest_pending_age_seconds 2.5",
            "syncline_outbox_active 1",
            "syncline_outbox_takeovers_total 1",
            "syncline_outbox_commit_to_ack_seconds_bucket{le=\"0.001\"} 1",
            "syncline_outbox_commit_to_ack_seconds_bucket{le=\"0.005\"} 2",
            "syncline_outbox_commit_to_ack_seconds_bucket{le=\"+Inf\"} 2",
            "syncline_outbox_commit_to_ack_seconds_count 2",
        ] {
            assert!(lines.contains(&want), "{want} missing:\n{text}");
        }
        assert_eq!(m.readiness(), Ok("ready (active)".to_owned()));
    }
}
