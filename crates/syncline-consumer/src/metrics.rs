//! A small Prometheus registry, written by hand: a handful of atomics the hot path bumps
//! without locks, rendered in the text exposition format on `/metrics`.
//!
//! Sinks register their own counters and gauges with [`Metrics::counter`] /
//! [`Metrics::gauge`]; create the [`Metrics`] first, hand a clone to the sink, and pass it
//! to `runtime::run_with_metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Default of [`Metrics::set_dead_letter_alarm`]: this many dead letters in a row, with
/// nothing applied in between, fail readiness.
pub const DEFAULT_DEAD_LETTER_ALARM: u64 = 1000;

/// The "every record is dead-lettered" error is logged at most this often.
const DEAD_LETTER_ALARM_LOG_EVERY: Duration = Duration::from_secs(60);

/// Upper bounds (seconds) of the latency histograms.
const LATENCY_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A monotonically increasing counter. Cheap to clone; clones share the value.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Add one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Add `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down. Cheap to clone; clones share the value.
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Set the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Add `d` (may be negative).
    pub fn add(&self, d: i64) {
        self.0.fetch_add(d, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        // Non-cumulative per bucket; rendering accumulates.
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

/// Age of a record with Kafka timestamp `timestamp_ms` at `now_ms` (0 if the clocks disagree).
fn age(timestamp_ms: i64, now_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(now_ms.saturating_sub(timestamp_ms)).unwrap_or(0))
}

fn render_histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cumulative = 0u64;
    for (b, n) in LATENCY_BUCKETS.iter().zip(h.buckets.iter()) {
        cumulative += n.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
    }
    let count = h.count.load(Ordering::Relaxed);
    let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
    let _ = writeln!(
        out,
        "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}"
    );
}

/// Per-partition positions, refreshed from librdkafka statistics and commits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionPosition {
    /// Last committed offset (the next offset to read), -1 if none yet.
    pub committed: i64,
    /// High watermark (or last stable offset under read_committed), -1 if unknown.
    pub high_watermark: i64,
}

impl PartitionPosition {
    /// Records not yet committed by this group.
    pub fn lag(&self) -> i64 {
        if self.high_watermark < 0 {
            return 0;
        }
        (self.high_watermark - self.committed.max(0)).max(0)
    }
}

#[derive(Debug)]
enum Kind {
    Counter(Counter),
    Gauge(Gauge),
}

#[derive(Debug)]
struct Custom {
    name: String,
    help: String,
    kind: Kind,
}

#[derive(Debug)]
struct Inner {
    consumed: Counter,
    applied: Counter,
    stale: Counter,
    retries: Counter,
    coalesced: Counter,
    commits: Counter,
    commit_failures: Counter,
    batches: Counter,
    offsets_dropped: Counter,
    in_flight: Gauge,
    /// Records dead-lettered since the last one the sink applied or found stale.
    dead_letter_streak: AtomicU64,
    /// A streak this long fails readiness (0: never).
    dead_letter_alarm: AtomicU64,
    /// When the "everything is dead-lettered" error was last logged.
    dead_letter_alarm_logged: Mutex<Option<Instant>>,
    dead_lettered: Mutex<BTreeMap<String, u64>>,
    latency: Histogram,
    fetch_delay: Histogram,
    event_delay: Histogram,
    partitions: Mutex<BTreeMap<i32, PartitionPosition>>,
    assigned: AtomicUsize,
    retrying: Mutex<BTreeMap<u64, Instant>>,
    custom: Mutex<Vec<Custom>>,
}

/// The runtime's metrics and health state, shared by the runtime, the sink and the HTTP
/// endpoints. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A point-in-time copy of the runtime's counters (for tests and status lines).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Records received from Kafka.
    pub consumed: u64,
    /// Events the sink reported `Applied`.
    pub applied: u64,
    /// Events the sink reported `Stale`.
    pub stale: u64,
    /// Event retries (one per event per failed attempt).
    pub retries: u64,
    /// Records dropped by coalescing (superseded or equal-version duplicates).
    pub coalesced: u64,
    /// Offset commits the group coordinator accepted.
    pub commits: u64,
    /// Offset commits that failed: refused by the coordinator or not sent.
    pub commit_failures: u64,
    /// Batches handed to the sink (first attempt).
    pub batches: u64,
    /// Dead-lettered records by error class.
    pub dead_lettered: BTreeMap<String, u64>,
    /// Batches being applied right now.
    pub in_flight: i64,
}

impl Snapshot {
    /// All dead-lettered records, whatever the class.
    pub fn dead_lettered_total(&self) -> u64 {
        self.dead_lettered.values().sum()
    }
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Metrics {
            inner: Arc::new(Inner {
                consumed: Counter::default(),
                applied: Counter::default(),
                stale: Counter::default(),
                retries: Counter::default(),
                coalesced: Counter::default(),
                commits: Counter::default(),
                commit_failures: Counter::default(),
                batches: Counter::default(),
                offsets_dropped: Counter::default(),
                in_flight: Gauge::default(),
                dead_letter_streak: AtomicU64::new(0),
                dead_letter_alarm: AtomicU64::new(DEFAULT_DEAD_LETTER_ALARM),
                dead_letter_alarm_logged: Mutex::new(None),
                dead_lettered: Mutex::new(BTreeMap::new()),
                latency: Histogram::default(),
                fetch_delay: Histogram::default(),
                event_delay: Histogram::default(),
                partitions: Mutex::new(BTreeMap::new()),
                assigned: AtomicUsize::new(0),
                retrying: Mutex::new(BTreeMap::new()),
                custom: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Register (or look up) a sink counter. `name` should follow Prometheus conventions
    /// (`syncline_es_bulk_requests_total`); registering a name twice returns the same
    /// counter.
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        let mut custom = self.inner.custom.lock();
        if let Some(Custom {
            kind: Kind::Counter(c),
            ..
        }) = custom.iter().find(|c| c.name == name)
        {
            return c.clone();
        }
        let c = Counter::default();
        custom.push(Custom {
            name: name.to_owned(),
            help: help.to_owned(),
            kind: Kind::Counter(c.clone()),
        });
        c
    }

    /// Register (or look up) a sink gauge.
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        let mut custom = self.inner.custom.lock();
        if let Some(Custom {
            kind: Kind::Gauge(g),
            ..
        }) = custom.iter().find(|c| c.name == name)
        {
            return g.clone();
        }
        let g = Gauge::default();
        custom.push(Custom {
            name: name.to_owned(),
            help: help.to_owned(),
            kind: Kind::Gauge(g.clone()),
        });
        g
    }

    /// Counter values now.
    pub fn snapshot(&self) -> Snapshot {
        let i = &self.inner;
        Snapshot {
            consumed: i.consumed.get(),
            applied: i.applied.get(),
            stale: i.stale.get(),
            retries: i.retries.get(),
            coalesced: i.coalesced.get(),
            commits: i.commits.get(),
            commit_failures: i.commit_failures.get(),
            batches: i.batches.get(),
            dead_lettered: i.dead_lettered.lock().clone(),
            in_flight: i.in_flight.get(),
        }
    }

    /// Per-partition positions now.
    pub fn partitions(&self) -> BTreeMap<i32, PartitionPosition> {
        self.inner.partitions.lock().clone()
    }

    // ---- updates used by the runtime -------------------------------------------------

    pub(crate) fn consumed(&self, n: u64) {
        self.inner.consumed.add(n);
    }
    pub(crate) fn applied(&self, n: u64) {
        self.inner.applied.add(n);
        if n > 0 {
            self.inner.dead_letter_streak.store(0, Ordering::Relaxed);
        }
    }
    pub(crate) fn stale(&self, n: u64) {
        self.inner.stale.add(n);
        if n > 0 {
            self.inner.dead_letter_streak.store(0, Ordering::Relaxed);
        }
    }
    pub(crate) fn offsets_dropped(&self, n: u64) {
        self.inner.offsets_dropped.add(n);
    }

    /// Fail readiness once `n` records in a row were dead-lettered with none applied or
    /// found stale in between (0 turns the check off). A group that dead-letters
    /// everything (a schema mistake, a producer bug) otherwise looks healthy: its lag is
    /// zero because dead letters are committed.
    pub fn set_dead_letter_alarm(&self, n: u64) {
        self.inner.dead_letter_alarm.store(n, Ordering::Relaxed);
    }

    /// Records dead-lettered since the sink last applied (or found stale) one.
    pub fn dead_letter_streak(&self) -> u64 {
        self.inner.dead_letter_streak.load(Ordering::Relaxed)
    }

    fn dead_letter_alarm_firing(&self) -> Option<u64> {
        let alarm = self.inner.dead_letter_alarm.load(Ordering::Relaxed);
        let streak = self.dead_letter_streak();
        (alarm > 0 && streak >= alarm).then_some(streak)
    }
    pub(crate) fn retries(&self, n: u64) {
        self.inner.retries.add(n);
    }
    pub(crate) fn coalesced(&self, n: u64) {
        self.inner.coalesced.add(n);
    }
    pub(crate) fn commit_ok(&self) {
        self.inner.commits.inc();
    }
    pub(crate) fn commit_failed(&self) {
        self.inner.commit_failures.inc();
    }
    pub(crate) fn batch_started(&self) {
        self.inner.batches.inc();
        self.inner.in_flight.add(1);
    }
    pub(crate) fn batch_finished(&self, latency: Duration) {
        self.inner.in_flight.add(-1);
        self.inner.latency.observe(latency);
    }
    /// A record with this Kafka timestamp (ms since the epoch) was just read.
    pub(crate) fn fetched(&self, timestamp_ms: i64, now_ms: i64) {
        self.inner.fetch_delay.observe(age(timestamp_ms, now_ms));
    }
    /// Records with these Kafka timestamps are done (applied, stale or dead-lettered).
    pub(crate) fn events_done(&self, timestamps_ms: impl Iterator<Item = i64>, now_ms: i64) {
        for t in timestamps_ms {
            self.inner.event_delay.observe(age(t, now_ms));
        }
    }
    pub(crate) fn dead_lettered(&self, class: &str) {
        *self
            .inner
            .dead_lettered
            .lock()
            .entry(class.to_owned())
            .or_insert(0) += 1;
        self.inner
            .dead_letter_streak
            .fetch_add(1, Ordering::Relaxed);
        if let Some(streak) = self.dead_letter_alarm_firing() {
            let mut logged = self.inner.dead_letter_alarm_logged.lock();
            if logged.is_none_or(|t| t.elapsed() >= DEAD_LETTER_ALARM_LOG_EVERY) {
                *logged = Some(Instant::now());
                tracing::error!(
                    streak, last_class = class,
                    "every one of the last {streak} records was dead-lettered and none applied: \
                     check the producers' schema and the dead-letter topic (readiness fails until a record is applied)"
                );
            }
        }
    }
    pub(crate) fn set_committed(&self, partition: i32, offset: i64) {
        // Only owned partitions: a late commit callback must not resurrect a revoked one.
        if let Some(p) = self.inner.partitions.lock().get_mut(&partition) {
            p.committed = p.committed.max(offset);
        }
    }
    pub(crate) fn set_high_watermark(&self, partition: i32, offset: i64) {
        if let Some(p) = self.inner.partitions.lock().get_mut(&partition) {
            p.high_watermark = offset;
        }
    }
    pub(crate) fn partition_assigned(&self, partition: i32) {
        self.inner
            .partitions
            .lock()
            .entry(partition)
            .or_insert(PartitionPosition {
                committed: -1,
                high_watermark: -1,
            });
    }
    pub(crate) fn partition_revoked(&self, partition: i32) {
        self.inner.partitions.lock().remove(&partition);
    }
    pub(crate) fn set_assigned(&self, n: usize) {
        self.inner.assigned.store(n, Ordering::Relaxed);
    }
    pub(crate) fn retrying_started(&self, batch: u64) {
        self.inner
            .retrying
            .lock()
            .entry(batch)
            .or_insert_with(Instant::now);
    }
    pub(crate) fn retrying_finished(&self, batch: u64) {
        self.inner.retrying.lock().remove(&batch);
    }

    // ---- health ----------------------------------------------------------------------

    /// Number of partitions this instance owns.
    pub fn assigned_partitions(&self) -> usize {
        self.inner.assigned.load(Ordering::Relaxed)
    }

    /// How long the oldest batch still in a retry loop has been retrying.
    pub fn retrying_for(&self) -> Option<Duration> {
        self.inner
            .retrying
            .lock()
            .values()
            .min()
            .map(|since| since.elapsed())
    }

    /// `/readyz`: `Ok` when partitions are assigned and no batch has been retrying for
    /// longer than `unready_after`; otherwise the reason.
    pub fn readiness(&self, unready_after: Duration) -> Result<(), String> {
        if self.assigned_partitions() == 0 {
            return Err("no partitions assigned".into());
        }
        if let Some(d) = self.retrying_for() {
            if d > unready_after {
                return Err(format!(
                    "the sink or the dead-letter topic has been failing (retrying) for {}s",
                    d.as_secs()
                ));
            }
        }
        if let Some(streak) = self.dead_letter_alarm_firing() {
            return Err(format!(
                "every one of the last {streak} records was dead-lettered and none applied"
            ));
        }
        Ok(())
    }

    // ---- exposition ------------------------------------------------------------------

    /// The Prometheus text exposition (version 0.0.4) of every metric.
    pub fn render(&self) -> String {
        let i = &self.inner;
        let mut out = String::with_capacity(4096);
        let counters: [(&str, &str, &Counter); 9] = [
            (
                "syncline_consumer_records_consumed_total",
                "Records received from Kafka.",
                &i.consumed,
            ),
            (
                "syncline_consumer_events_applied_total",
                "Events the sink applied.",
                &i.applied,
            ),
            (
                "syncline_consumer_events_stale_total",
                "Events the sink already had (same or newer version).",
                &i.stale,
            ),
            (
                "syncline_consumer_retries_total",
                "Event retries after a transient sink failure.",
                &i.retries,
            ),
            (
                "syncline_consumer_coalesced_total",
                "Records dropped by coalescing (superseded or duplicate versions).",
                &i.coalesced,
            ),
            (
                "syncline_consumer_commits_total",
                "Offset commits the group coordinator accepted.",
                &i.commits,
            ),
            (
                "syncline_consumer_commit_failures_total",
                "Offset commits that failed: refused by the group coordinator, or not sent.",
                &i.commit_failures,
            ),
            (
                "syncline_consumer_batches_total",
                "Batches handed to the sink.",
                &i.batches,
            ),
            (
                "syncline_consumer_offsets_dropped_total",
                "Records dropped because an offset at or above theirs was already registered in the same assignment (redeliveries).",
                &i.offsets_dropped,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.get()
            );
        }
        let name = "syncline_dead_letters_total";
        let _ = writeln!(
            out,
            "# HELP {name} Records written to the dead-letter topic, by error class.\n# TYPE {name} counter"
        );
        for (class, n) in i.dead_lettered.lock().iter() {
            let _ = writeln!(out, "{name}{{class=\"{}\"}} {n}", escape(class));
        }
        let name = "syncline_consumer_in_flight_batches";
        let _ = writeln!(
            out,
            "# HELP {name} Batches being applied or retried.\n# TYPE {name} gauge\n{name} {}",
            i.in_flight.get()
        );
        let name = "syncline_consumer_assigned_partitions";
        let _ = writeln!(
            out,
            "# HELP {name} Partitions assigned to this instance.\n# TYPE {name} gauge\n{name} {}",
            self.assigned_partitions()
        );
        render_histogram(
            &mut out,
            "syncline_consumer_batch_duration_seconds",
            "Time from handing a batch to the sink until all its records are done (incl. retries).",
            &i.latency,
        );
        render_histogram(
            &mut out,
            "syncline_consumer_fetch_delay_seconds",
            "Time from a record's Kafka timestamp until this consumer read it (broker and fetch).",
            &i.fetch_delay,
        );
        render_histogram(
            &mut out,
            "syncline_consumer_event_delay_seconds",
            "Time from a record's Kafka timestamp until its event was done (end-to-end freshness).",
            &i.event_delay,
        );
        let parts = i.partitions.lock().clone();
        let name = "syncline_consumer_committed_offset";
        let _ = writeln!(
            out,
            "# HELP {name} Last committed offset per assigned partition.\n# TYPE {name} gauge"
        );
        for (p, pos) in &parts {
            let _ = writeln!(out, "{name}{{partition=\"{p}\"}} {}", pos.committed);
        }
        let name = "syncline_consumer_lag";
        let _ = writeln!(out, "# HELP {name} High watermark minus committed offset per assigned partition.\n# TYPE {name} gauge");
        for (p, pos) in &parts {
            let _ = writeln!(out, "{name}{{partition=\"{p}\"}} {}", pos.lag());
        }
        for c in i.custom.lock().iter() {
            let (kind, value) = match &c.kind {
                Kind::Counter(x) => ("counter", x.get() as i128),
                Kind::Gauge(x) => ("gauge", i128::from(x.get())),
            };
            let _ = writeln!(
                out,
                "# HELP {} {}\n# TYPE {} {kind}\n{} {value}",
                c.name, c.help, c.name, c.name
            );
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_classes_histogram_and_custom() {
        let m = Metrics::new();
        m.consumed(3);
        m.dead_lettered("bad_magic");
        m.dead_lettered("bad_magic");
        m.batch_started();
        m.batch_finished(Duration::from_millis(3));
        m.fetched(1_000, 1_004);
        m.events_done([1_000, 1_020, 730].into_iter(), 1_030);
        m.events_done([2_000].into_iter(), 1_000); // producer clock ahead: counts as 0
        m.partition_assigned(2);
        m.set_committed(2, 10);
        m.set_high_watermark(2, 15);
        let c = m.counter("syncline_test_total", "A test counter.");
        c.add(5);
        assert_eq!(m.counter("syncline_test_total", "again").get(), 5);
        let text = m.render();
        assert!(text.contains("syncline_consumer_records_consumed_total 3"));
        assert!(text.contains("syncline_dead_letters_total{class=\"bad_magic\"} 2"));
        assert!(text.contains("syncline_consumer_batch_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("syncline_consumer_batch_duration_seconds_count 1"));
        assert!(text.contains("syncline_consumer_fetch_delay_seconds_bucket{le=\"0.0025\"} 0"));
        assert!(text.contains("syncline_consumer_fetch_delay_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("syncline_consumer_event_delay_seconds_bucket{le=\"0.01\"} 2"));
        assert!(text.contains("syncline_consumer_event_delay_seconds_bucket{le=\"0.05\"} 3"));
        assert!(text.contains("syncline_consumer_event_delay_seconds_bucket{le=\"0.25\"} 3"));
        assert!(text.contains("syncline_consumer_event_delay_seconds_bucket{le=\"0.5\"} 4"));
        assert!(text.contains("syncline_consumer_event_delay_seconds_sum 0.34"));
        assert!(text.contains("syncline_consumer_lag{partition=\"2\"} 5"));
        assert!(text.contains("syncline_test_total 5"));
        assert_eq!(m.snapshot().dead_lettered_total(), 2);
    }

    #[test]
    fn a_group_that_dead_letters_everything_is_not_ready() {
        let m = Metrics::new();
        m.partition_assigned(0);
        m.set_assigned(1);
        m.set_dead_letter_alarm(3);
        m.offsets_dropped(2);
        assert!(m
            .render()
            .contains("syncline_consumer_offsets_dropped_total 2"));
        m.dead_lettered("unknown_schema");
        m.dead_lettered("unknown_schema");
        assert!(m.readiness(Duration::from_secs(60)).is_ok());
        m.dead_lettered("unknown_schema");
        let why = m.readiness(Duration::from_secs(60)).unwrap_err();
        assert!(why.contains("dead-lettered"), "{why}");
        // One applied record ends the streak.
        m.applied(1);
        assert!(m.readiness(Duration::from_secs(60)).is_ok());
        assert_eq!(m.dead_letter_streak(), 0);
        // 0 turns the check off.
        m.set_dead_letter_alarm(0);
        for _ in 0..5 {
            m.dead_lettered("bad_magic");
        }
        assert!(m.readiness(Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn readiness_needs_partitions_and_no_long_retry() {
        let m = Metrics::new();
        assert!(m.readiness(Duration::from_secs(60)).is_err());
        m.set_assigned(1);
        assert!(m.readiness(Duration::from_secs(60)).is_ok());
        m.retrying_started(7);
        assert!(m.readiness(Duration::ZERO).is_err());
        m.retrying_finished(7);
        assert!(m.readiness(Duration::ZERO).is_ok());
    }
}
