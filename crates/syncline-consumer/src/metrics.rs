//! The runtime's metrics, on a [`prometheus_client`] registry of their own (no global
//! registry: tests and `syncline-ctl rebuild` run several runtimes in one process), served
//! on `/metrics` in the OpenMetrics text format.
//!
//! The hot path touches atomics only: counters and gauges are prometheus-client's
//! (atomics), latencies go to [`TimeHistogram`] (atomic buckets; prometheus-client's own
//! histogram takes a mutex per observation), and labelled series the runtime bumps often
//! are resolved once. Readiness lives in [`crate::health::Health`], not here.
//!
//! Sinks register their own metrics on the same registry with [`Metrics::register`] (any
//! prometheus-client metric), [`Metrics::counter`] or [`Metrics::gauge`]: create the
//! [`Metrics`] first, hand it to the sink, and pass it to `runtime::run_with_metrics`.
//!
//! Names: prometheus-client appends `_total` to counters and the unit to metrics
//! registered with one, so `register("x", .., Counter)` serves `x_total` and
//! `register_with_unit("x_duration", .., Unit::Seconds, ..)` serves `x_duration_seconds`.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Metric, Registry, Unit};

pub use prometheus_client;
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;

/// `Content-Type` of what [`Metrics::render`] returns (and `/metrics` serves).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the latency histograms.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A histogram of durations, exported in seconds, whose observations are atomic adds:
/// one to the bucket, one to the sum. Cheap to clone; clones share the counts.
///
/// The sum is kept in whole microseconds (an integer add instead of a compare-and-swap
/// loop on a float); that resolution is far below the smallest bucket.
#[derive(Debug, Clone)]
pub struct TimeHistogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug)]
struct HistogramInner {
    /// Upper bounds in seconds, ascending and finite.
    bounds: Box<[f64]>,
    /// Non-cumulative counts: one per bound, then the `+Inf` bucket.
    buckets: Box<[AtomicU64]>,
    sum_micros: AtomicU64,
}

impl TimeHistogram {
    /// A histogram with these upper bounds (seconds). Bounds that are not finite are
    /// dropped and the rest sorted; `+Inf` is always the last bucket.
    pub fn new(bounds: &[f64]) -> Self {
        let mut bounds: Vec<f64> = bounds.iter().copied().filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let buckets = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        TimeHistogram {
            inner: Arc::new(HistogramInner {
                bounds: bounds.into_boxed_slice(),
                buckets,
                sum_micros: AtomicU64::new(0),
            }),
        }
    }

    /// A histogram with [`LATENCY_BUCKETS`].
    pub fn latency() -> Self {
        Self::new(&LATENCY_BUCKETS)
    }

    /// Record one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        // The first bucket whose bound is >= secs (Prometheus' `le`); past the last bound
        // that is the `+Inf` bucket.
        let i = self.inner.bounds.partition_point(|b| *b < secs);
        if let Some(bucket) = self.inner.buckets.get(i) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.inner.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.inner
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }

    /// Sum of the observations, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.inner.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    }
}

impl TypedMetric for TimeHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for TimeHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let bounds = self.inner.bounds.iter().copied().chain([f64::INFINITY]);
        // One read of each bucket; the count is their sum, so `_count` always equals the
        // `+Inf` bucket even while observations race the scrape.
        let buckets: Vec<(f64, u64)> = bounds
            .zip(self.inner.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum_seconds(), count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A metric whose `# HELP`/`# TYPE` are served even while it has no sample (an empty
/// [`Family`] is otherwise left out), so dashboards, alert rules and the deploy test see
/// labelled families on an idle process.
#[derive(Debug, Clone)]
pub struct Declared<M>(pub M);

impl<M: EncodeMetric> EncodeMetric for Declared<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
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

/// Label set `{class}` of the dead-letter counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    class: String,
}

/// Renders the per-partition gauges from the owned partitions at scrape time: revoked
/// partitions disappear with their entry, and both gauges come from one reading.
#[derive(Debug)]
struct PartitionGauges(Arc<Mutex<BTreeMap<i32, PartitionPosition>>>);

impl Collector for PartitionGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let parts = self.0.lock().clone();
        type Value = fn(&PartitionPosition) -> i64;
        let gauges: [(&str, &str, Value); 2] = [
            (
                "syncline_consumer_committed_offset",
                "Last committed offset per assigned partition",
                |p| p.committed,
            ),
            (
                "syncline_consumer_lag",
                "High watermark minus committed offset per assigned partition",
                PartitionPosition::lag,
            ),
        ];
        for (name, help, value) in gauges {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (p, pos) in &parts {
                let labels = [("partition", p.to_string())];
                metric.encode_family(&labels)?.encode_gauge(&value(pos))?;
            }
        }
        Ok(())
    }
}

/// The registry and the names registered on it.
#[derive(Debug)]
struct Registered {
    registry: Registry,
    /// Each registered metric by its served name, so that registering a name again
    /// returns the same metric instead of a second family of that name.
    by_name: HashMap<String, Box<dyn Any + Send + Sync>>,
}

#[derive(Debug)]
struct Inner {
    registered: Mutex<Registered>,
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
    assigned: Gauge,
    dead_letters: Family<ClassLabel, Counter>,
    /// The dead-letter counter of each class seen, resolved once (and listed by
    /// [`Metrics::snapshot`], which a `Family` cannot do).
    dead_letter_classes: Mutex<BTreeMap<String, Counter>>,
    latency: TimeHistogram,
    fetch_delay: TimeHistogram,
    event_delay: TimeHistogram,
    processing_delay: TimeHistogram,
    partitions: Arc<Mutex<BTreeMap<i32, PartitionPosition>>>,
}

/// The runtime's metrics, shared by the runtime, the sink and the HTTP endpoint. Cheap to
/// clone; clones share the registry.
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
    /// A registry with the runtime's metrics, all zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let r = &mut registry;
        let consumed = counter(
            r,
            "syncline_consumer_records_consumed",
            "Records received from Kafka",
        );
        let applied = counter(
            r,
            "syncline_consumer_events_applied",
            "Events the sink applied",
        );
        let stale = counter(
            r,
            "syncline_consumer_events_stale",
            "Events the sink already had (same or newer version)",
        );
        let retries = counter(
            r,
            "syncline_consumer_retries",
            "Event retries after a transient sink failure",
        );
        let coalesced = counter(
            r,
            "syncline_consumer_coalesced",
            "Records dropped by coalescing (superseded or duplicate versions)",
        );
        let commits = counter(
            r,
            "syncline_consumer_commits",
            "Offset commits the group coordinator accepted",
        );
        let commit_failures = counter(
            r,
            "syncline_consumer_commit_failures",
            "Offset commits that failed: refused by the group coordinator, or not sent",
        );
        let batches = counter(r, "syncline_consumer_batches", "Batches handed to the sink");
        let offsets_dropped = counter(
            r,
            "syncline_consumer_offsets_dropped",
            "Records dropped because an offset at or above theirs was already registered in the same assignment (redeliveries)",
        );
        let dead_letters = Family::<ClassLabel, Counter>::default();
        r.register(
            "syncline_dead_letters",
            "Records written to the dead-letter topic, by error class",
            Declared(dead_letters.clone()),
        );
        let in_flight = Gauge::default();
        r.register(
            "syncline_consumer_in_flight_batches",
            "Batches being applied or retried",
            in_flight.clone(),
        );
        let assigned = Gauge::default();
        r.register(
            "syncline_consumer_assigned_partitions",
            "Partitions assigned to this instance",
            assigned.clone(),
        );
        let histogram = |registry: &mut Registry, name: &str, help: &str| {
            let h = TimeHistogram::latency();
            registry.register_with_unit(name, help, Unit::Seconds, h.clone());
            h
        };
        let latency = histogram(
            r,
            "syncline_consumer_batch_duration",
            "Time from handing a batch to the sink until all its records are done (incl. retries)",
        );
        let fetch_delay = histogram(
            r,
            "syncline_consumer_fetch_delay",
            "Time from a record's Kafka timestamp until this consumer read it (broker and fetch)",
        );
        let event_delay = histogram(
            r,
            "syncline_consumer_event_delay",
            "Time from a record's Kafka timestamp until its event was done (end-to-end freshness)",
        );
        let processing_delay = histogram(
            r,
            "syncline_consumer_processing_delay",
            "Time from when this consumer read a record until its event was done: Syncline's own share of the freshness (batching, decoding, applying, retries)",
        );
        let partitions = Arc::new(Mutex::new(BTreeMap::new()));
        r.register_collector(Box::new(PartitionGauges(partitions.clone())));
        Metrics {
            inner: Arc::new(Inner {
                registered: Mutex::new(Registered {
                    registry,
                    by_name: HashMap::new(),
                }),
                consumed,
                applied,
                stale,
                retries,
                coalesced,
                commits,
                commit_failures,
                batches,
                offsets_dropped,
                in_flight,
                assigned,
                dead_letters,
                dead_letter_classes: Mutex::new(BTreeMap::new()),
                latency,
                fetch_delay,
                event_delay,
                processing_delay,
                partitions,
            }),
        }
    }

    /// Register a sink's metric (any prometheus-client metric, e.g. a [`Family`] of
    /// counters) under `name`, and return the handle to update. prometheus-client adds
    /// the suffixes: a counter's `_total` (so `name` must not end with it) and nothing
    /// else; `help` gets a final full stop (one already there is not doubled).
    ///
    /// Registering a name again returns the metric registered first (two sinks built on
    /// one registry share their series). If that one has another type, `metric` is
    /// returned unregistered (its values are not served) and the clash is logged: a bug
    /// in the caller, which must not take the process down.
    pub fn register<M>(&self, name: &str, help: &str, metric: M) -> M
    where
        M: Metric + Clone,
    {
        self.register_inner(name, help, None, metric)
    }

    /// [`Metrics::register`] with a unit, which prometheus-client appends to the name
    /// (`register_with_unit("x_duration", .., Unit::Seconds, ..)` serves
    /// `x_duration_seconds`).
    pub fn register_with_unit<M>(&self, name: &str, help: &str, unit: Unit, metric: M) -> M
    where
        M: Metric + Clone,
    {
        self.register_inner(name, help, Some(unit), metric)
    }

    fn register_inner<M>(&self, name: &str, help: &str, unit: Option<Unit>, metric: M) -> M
    where
        M: Metric + Clone,
    {
        // prometheus-client appends a full stop to every help text.
        let help = help.strip_suffix('.').unwrap_or(help);
        let served = match &unit {
            Some(u) => format!("{name}_{}", u.as_str()),
            None => name.to_owned(),
        };
        let mut reg = self.inner.registered.lock();
        if let Some(existing) = reg.by_name.get(&served) {
            return match existing.downcast_ref::<M>() {
                Some(m) => m.clone(),
                None => {
                    tracing::error!(
                        name = %served,
                        "a metric of this name but another type is registered already; this one is not served"
                    );
                    metric
                }
            };
        }
        reg.by_name.insert(served, Box::new(metric.clone()));
        match unit {
            Some(u) => reg
                .registry
                .register_with_unit(name, help, u, metric.clone()),
            None => reg.registry.register(name, help, metric.clone()),
        }
        metric
    }

    /// Register (or look up) a sink counter. `name` may end with `_total` (the served
    /// name always does; the suffix is not doubled).
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        let name = name.strip_suffix("_total").unwrap_or(name);
        self.register(name, help, Counter::default())
    }

    /// Register (or look up) a sink gauge.
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        self.register(name, help, Gauge::default())
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
            dead_lettered: i
                .dead_letter_classes
                .lock()
                .iter()
                .map(|(class, c)| (class.clone(), c.get()))
                .collect(),
            in_flight: i.in_flight.get(),
        }
    }

    /// Per-partition positions now.
    pub fn partitions(&self) -> BTreeMap<i32, PartitionPosition> {
        self.inner.partitions.lock().clone()
    }

    /// Number of partitions this instance owns (the `assigned_partitions` gauge).
    pub fn assigned_partitions(&self) -> usize {
        usize::try_from(self.inner.assigned.get()).unwrap_or(0)
    }

    /// The OpenMetrics text exposition of every registered metric, ending in `# EOF`
    /// (served as [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        let reg = self.inner.registered.lock();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &reg.registry) {
            // Writing into a String cannot fail; a metric's encoder could, and a partial
            // page would be misread, so serve an empty one and say why.
            tracing::error!(error = %e, "encoding the metrics failed");
            out.clear();
            out.push_str("# EOF\n");
        }
        out
    }

    // ---- updates used by the runtime -------------------------------------------------

    pub(crate) fn consumed(&self, n: u64) {
        self.inner.consumed.inc_by(n);
    }
    pub(crate) fn applied(&self, n: u64) {
        self.inner.applied.inc_by(n);
    }
    pub(crate) fn stale(&self, n: u64) {
        self.inner.stale.inc_by(n);
    }
    pub(crate) fn offsets_dropped(&self, n: u64) {
        self.inner.offsets_dropped.inc_by(n);
    }
    pub(crate) fn retries(&self, n: u64) {
        self.inner.retries.inc_by(n);
    }
    pub(crate) fn coalesced(&self, n: u64) {
        self.inner.coalesced.inc_by(n);
    }
    pub(crate) fn commit_ok(&self) {
        self.inner.commits.inc();
    }
    pub(crate) fn commit_failed(&self) {
        self.inner.commit_failures.inc();
    }
    pub(crate) fn batch_started(&self) {
        self.inner.batches.inc();
        self.inner.in_flight.inc();
    }
    pub(crate) fn batch_finished(&self, latency: Duration) {
        self.inner.in_flight.dec();
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
    /// Records read at these instants are done now.
    pub(crate) fn processed(&self, read_at: impl Iterator<Item = Instant>, now: Instant) {
        for t in read_at {
            self.inner
                .processing_delay
                .observe(now.saturating_duration_since(t));
        }
    }
    pub(crate) fn dead_lettered(&self, class: &str) {
        let mut classes = self.inner.dead_letter_classes.lock();
        if let Some(c) = classes.get(class) {
            c.inc();
            return;
        }
        let c = self.inner.dead_letters.get_or_create_owned(&ClassLabel {
            class: class.to_owned(),
        });
        c.inc();
        classes.insert(class.to_owned(), c);
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
        self.inner
            .assigned
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// Age of a record with Kafka timestamp `timestamp_ms` at `now_ms` (0 if the clocks disagree).
fn age(timestamp_ms: i64, now_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(now_ms.saturating_sub(timestamp_ms)).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample lines of `text` (no comments), for exact matching.
    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn renders_openmetrics_with_counters_classes_histograms_and_partitions() {
        let m = Metrics::new();
        m.consumed(3);
        m.dead_lettered("bad_magic");
        m.dead_lettered("bad_magic");
        m.batch_started();
        m.batch_finished(Duration::from_millis(3));
        m.fetched(1_000, 1_004);
        m.events_done([1_000, 1_020, 730].into_iter(), 1_030);
        m.events_done([2_000].into_iter(), 1_000); // producer clock ahead: counts as 0
        let now = Instant::now();
        m.processed(
            [
                now - Duration::from_millis(15),
                now - Duration::from_millis(3),
            ]
            .into_iter(),
            now,
        );
        m.partition_assigned(2);
        m.set_committed(2, 10);
        m.set_high_watermark(2, 15);
        let text = m.render();
        let s = samples(&text);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE syncline_consumer_records_consumed counter\n"));
        assert!(
            s.contains(&"syncline_consumer_records_consumed_total 3"),
            "{text}"
        );
        assert!(s.contains(&"syncline_dead_letters_total{class=\"bad_magic\"} 2"));
        assert!(text.contains("# TYPE syncline_consumer_batch_duration_seconds histogram\n"));
        assert!(text.contains("# UNIT syncline_consumer_batch_duration_seconds seconds\n"));
        assert!(s.contains(&"syncline_consumer_batch_duration_seconds_bucket{le=\"0.0025\"} 0"));
        assert!(s.contains(&"syncline_consumer_batch_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(s.contains(&"syncline_consumer_batch_duration_seconds_bucket{le=\"+Inf\"} 1"));
        assert!(s.contains(&"syncline_consumer_batch_duration_seconds_count 1"));
        assert!(s.contains(&"syncline_consumer_fetch_delay_seconds_bucket{le=\"0.0025\"} 0"));
        assert!(s.contains(&"syncline_consumer_fetch_delay_seconds_bucket{le=\"0.005\"} 1"));
        assert!(s.contains(&"syncline_consumer_event_delay_seconds_bucket{le=\"0.01\"} 2"));
        assert!(s.contains(&"syncline_consumer_event_delay_seconds_bucket{le=\"0.05\"} 3"));
        assert!(s.contains(&"syncline_consumer_event_delay_seconds_bucket{le=\"0.25\"} 3"));
        assert!(s.contains(&"syncline_consumer_event_delay_seconds_bucket{le=\"0.5\"} 4"));
        assert!(
            s.contains(&"syncline_consumer_event_delay_seconds_sum 0.34"),
            "{text}"
        );
        assert!(s.contains(&"syncline_consumer_processing_delay_seconds_bucket{le=\"0.005\"} 1"));
        assert!(s.contains(&"syncline_consumer_processing_delay_seconds_bucket{le=\"0.02\"} 2"));
        assert!(s.contains(&"syncline_consumer_lag{partition=\"2\"} 5"));
        assert!(s.contains(&"syncline_consumer_committed_offset{partition=\"2\"} 10"));
        assert!(s.contains(&"syncline_consumer_in_flight_batches 0"));
        assert_eq!(m.snapshot().dead_lettered_total(), 2);
        // A revoked partition's series go with it.
        m.partition_revoked(2);
        assert!(!m.render().contains("partition=\"2\""));
    }

    #[test]
    fn every_bucket_bound_is_served_once_in_order() {
        let m = Metrics::new();
        let text = m.render();
        let les: Vec<&str> = samples(&text)
            .into_iter()
            .filter_map(|l| l.strip_prefix("syncline_consumer_event_delay_seconds_bucket{le=\""))
            .filter_map(|l| l.split('"').next())
            .collect();
        let mut want: Vec<String> = LATENCY_BUCKETS.iter().map(|b| b.to_string()).collect();
        want.push("+Inf".into());
        let les: Vec<f64> = les
            .iter()
            .map(|l| {
                if *l == "+Inf" {
                    f64::INFINITY
                } else {
                    l.parse().unwrap()
                }
            })
            .collect();
        let want: Vec<f64> = want
            .iter()
            .map(|l| {
                if l == "+Inf" {
                    f64::INFINITY
                } else {
                    l.parse().unwrap()
                }
            })
            .collect();
        assert_eq!(les, want);
    }

    #[test]
    fn idle_registry_declares_labelled_families() {
        let text = Metrics::new().render();
        for family in [
            "# TYPE syncline_dead_letters counter",
            "# TYPE syncline_consumer_lag gauge",
            "# TYPE syncline_consumer_committed_offset gauge",
            "# TYPE syncline_consumer_assigned_partitions gauge",
        ] {
            assert!(text.contains(family), "{family} missing:\n{text}");
        }
        assert!(!text.contains("syncline_dead_letters_total{"), "{text}");
    }

    #[test]
    fn sink_metrics_register_once_per_name() {
        let m = Metrics::new();
        let c = m.counter("syncline_test_total", "A test counter");
        c.inc_by(5);
        assert_eq!(m.counter("syncline_test", "again").get(), 5);
        let g = m.gauge("syncline_test_level", "A test gauge");
        g.set(-2);
        // Another type under a taken name: a working handle, not served.
        let clash = m.gauge("syncline_test", "clash");
        clash.set(9);
        let family = m.register(
            "syncline_test_results",
            "Results",
            Family::<[(&'static str, &'static str); 1], Counter>::default(),
        );
        family.get_or_create(&[("result", "ok")]).inc();
        let h = m.register_with_unit(
            "syncline_test_duration",
            "Durations",
            Unit::Seconds,
            TimeHistogram::new(&[0.1, 1.0, f64::NAN]),
        );
        h.observe(Duration::from_millis(200));
        h.observe(Duration::from_secs(5));
        let text = m.render();
        let s = samples(&text);
        assert!(s.contains(&"syncline_test_total 5"), "{text}");
        assert_eq!(text.matches("# TYPE syncline_test ").count(), 1, "{text}");
        assert!(s.contains(&"syncline_test_level -2"));
        assert!(s.contains(&"syncline_test_results_total{result=\"ok\"} 1"));
        assert!(s.contains(&"syncline_test_duration_seconds_bucket{le=\"0.1\"} 0"));
        assert!(
            s.contains(&"syncline_test_duration_seconds_bucket{le=\"1.0\"} 1"),
            "{text}"
        );
        assert!(s.contains(&"syncline_test_duration_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(s.contains(&"syncline_test_duration_seconds_sum 5.2"));
        assert_eq!(h.count(), 2);
    }

    #[test]
    fn registries_are_independent() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.consumed(1);
        a.counter("syncline_only_in_a", "x").inc();
        assert_eq!(b.snapshot().consumed, 0);
        assert!(!b.render().contains("syncline_only_in_a"));
    }
}
