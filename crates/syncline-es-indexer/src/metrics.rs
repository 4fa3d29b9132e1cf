//! The indexer's own metrics, registered with the runtime's registry so they appear on
//! the same `/metrics` page: bulk requests and their failures, bulk items by result (one
//! labelled family), bulk request latency (a histogram in seconds) and index creations.

use std::time::Duration;

use syncline_consumer::metrics::prometheus_client::registry::Unit;
use syncline_consumer::metrics::{Counter, Declared, Family, Metrics, TimeHistogram};

use crate::response::ItemResult;

/// Label set `{result}` of the bulk item counter.
type ResultLabel = [(&'static str, &'static str); 1];

/// Upper bounds (seconds) of the bulk latency histogram: a bulk request of a few hundred
/// documents takes milliseconds on a healthy cluster, and the client times out at 30 s
/// by default.
pub const BULK_DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The series the sink updates. Cheap to clone; clones share the values.
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    /// Bulk requests sent (every attempt).
    pub bulk_requests: Counter,
    /// Bulk requests that failed as a whole (connection, timeout, non-200 status,
    /// unparseable response).
    pub bulk_request_failures: Counter,
    /// `syncline_es_bulk_items_total{result}`, one handle per [`ItemResult::ALL`] entry,
    /// resolved once so that counting an item is one atomic add.
    items: [Counter; ItemResult::ALL.len()],
    /// Bulk request latency, in seconds.
    pub bulk_duration: TimeHistogram,
    /// Index/alias creations performed by this process.
    pub indexes_created: Counter,
}

impl SinkMetrics {
    /// Register the series with `registry`.
    pub fn register(registry: &Metrics) -> Self {
        let family = registry.register(
            "syncline_es_bulk_items",
            "Bulk items by result (created, updated, deleted, conflict, not_found, error)",
            Declared(Family::<ResultLabel, Counter>::default()),
        );
        // Every result is served from the start (0 rather than absent), so that rates and
        // ratios over them need no `or vector(0)`.
        let items =
            ItemResult::ALL.map(|r| family.0.get_or_create_owned(&[("result", r.as_str())]));
        SinkMetrics {
            bulk_requests: registry.counter(
                "syncline_es_bulk_requests",
                "Bulk requests sent to Elasticsearch (every attempt)",
            ),
            bulk_request_failures: registry.counter(
                "syncline_es_bulk_request_failures",
                "Bulk requests that failed as a whole (connection, timeout, status, unparseable response); every item retried",
            ),
            items,
            bulk_duration: registry.register_with_unit(
                "syncline_es_bulk_request_duration",
                "Bulk request latency, from sending the request until its response is read",
                Unit::Seconds,
                TimeHistogram::new(&BULK_DURATION_BUCKETS),
            ),
            indexes_created: registry.counter(
                "syncline_es_indexes_created",
                "Indexes (with their write alias) created by this process",
            ),
        }
    }

    fn item_counter(&self, result: ItemResult) -> Option<&Counter> {
        let i = ItemResult::ALL.iter().position(|r| *r == result)?;
        self.items.get(i)
    }

    /// Count one item result.
    pub fn item(&self, result: ItemResult) {
        if let Some(c) = self.item_counter(result) {
            c.inc();
        }
    }

    /// Items counted so far with `result`.
    pub fn items(&self, result: ItemResult) -> u64 {
        self.item_counter(result).map_or(0, Counter::get)
    }

    /// Record one bulk request's latency.
    pub fn observe_latency(&self, d: Duration) {
        self.bulk_duration.observe(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_one_family_labelled_by_result_and_latency_a_histogram() {
        let registry = Metrics::new();
        let m = SinkMetrics::register(&registry);
        m.item(ItemResult::Conflict);
        m.item(ItemResult::Conflict);
        m.observe_latency(Duration::from_millis(7));
        m.bulk_requests.inc();
        assert_eq!(m.items(ItemResult::Conflict), 2);
        let text = registry.render();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            text.contains("# TYPE syncline_es_bulk_items counter\n"),
            "{text}"
        );
        assert!(lines.contains(&"syncline_es_bulk_items_total{result=\"conflict\"} 2"));
        for r in ItemResult::ALL {
            let zero_or_more =
                format!("syncline_es_bulk_items_total{{result=\"{}\"}} ", r.as_str());
            assert!(
                text.contains(&zero_or_more),
                "{zero_or_more} missing:\n{text}"
            );
        }
        assert!(text.contains("# TYPE syncline_es_bulk_request_duration_seconds histogram\n"));
        assert!(lines.contains(&"syncline_es_bulk_request_duration_seconds_bucket{le=\"0.005\"} 0"));
        assert!(lines.contains(&"syncline_es_bulk_request_duration_seconds_bucket{le=\"0.01\"} 1"));
        assert!(lines.contains(&"syncline_es_bulk_request_duration_seconds_count 1"));
        assert!(lines.contains(&"syncline_es_bulk_requests_total 1"));
        assert!(!text.contains("microseconds"), "{text}");
    }
}
