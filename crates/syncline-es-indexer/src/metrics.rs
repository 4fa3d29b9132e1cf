//! The indexer's own metrics, registered with the runtime's registry so they appear on
//! the same `/metrics` page.
//!
//! The runtime's registry holds plain counters and gauges without labels, so the item
//! results are separate series (`..._items_created_total`, ...) and bulk latency is
//! exported as a running sum plus count (average = rate(sum) / rate(count)) and the
//! largest latency seen.

use std::time::Duration;

use syncline_consumer::metrics::{Counter, Gauge, Metrics};

use crate::response::ItemResult;

/// Counters the sink bumps.
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    /// Bulk requests sent (every attempt).
    pub bulk_requests: Counter,
    /// Bulk requests that failed as a whole (connection, timeout, non-200 status,
    /// unparseable response).
    pub bulk_request_failures: Counter,
    items: [Counter; ItemResult::ALL.len()],
    /// Sum of bulk request latencies, in microseconds.
    pub bulk_latency_micros: Counter,
    /// Largest bulk request latency seen, in microseconds.
    pub bulk_latency_max_micros: Gauge,
    /// Index/alias creations performed by this process.
    pub indexes_created: Counter,
}

impl SinkMetrics {
    /// Register the series with `registry`.
    pub fn register(registry: &Metrics) -> Self {
        let items = ItemResult::ALL.map(|r| {
            registry.counter(
                &format!("syncline_es_bulk_items_{}_total", r.as_str()),
                &format!("Bulk items whose result was {}.", r.as_str()),
            )
        });
        SinkMetrics {
            bulk_requests: registry.counter(
                "syncline_es_bulk_requests_total",
                "Bulk requests sent to Elasticsearch (every attempt).",
            ),
            bulk_request_failures: registry.counter(
                "syncline_es_bulk_request_failures_total",
                "Bulk requests that failed as a whole (connection, timeout, status, unparseable response); every item retried.",
            ),
            items,
            bulk_latency_micros: registry.counter(
                "syncline_es_bulk_request_duration_microseconds_total",
                "Sum of bulk request latencies in microseconds (divide by syncline_es_bulk_requests_total for the mean).",
            ),
            bulk_latency_max_micros: registry.gauge(
                "syncline_es_bulk_request_duration_max_microseconds",
                "Largest bulk request latency seen by this process, in microseconds.",
            ),
            indexes_created: registry.counter(
                "syncline_es_indexes_created_total",
                "Indexes (with their write alias) created by this process.",
            ),
        }
    }

    /// Count one item result.
    pub fn item(&self, result: ItemResult) {
        if let Some(i) = ItemResult::ALL.iter().position(|r| *r == result) {
            self.items[i].inc();
        }
    }

    /// Items counted so far with `result`.
    pub fn items(&self, result: ItemResult) -> u64 {
        ItemResult::ALL
            .iter()
            .position(|r| *r == result)
            .map_or(0, |i| self.items[i].get())
    }

    /// Record one bulk request's latency.
    pub fn observe_latency(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.bulk_latency_micros.add(micros);
        let m = i64::try_from(micros).unwrap_or(i64::MAX);
        if m > self.bulk_latency_max_micros.get() {
            // A racing writer may overwrite a slightly larger value; a max gauge that is
            // occasionally a little low is fine for its purpose.
            self.bulk_latency_max_micros.set(m);
        }
    }
}
