//! The Elasticsearch sink: one `apply` turns a (coalesced) batch into one or more bulk
//! requests and reports one outcome per event.

use std::collections::HashMap;
use std::time::Instant;

use elasticsearch::{BulkParts, Elasticsearch};
use syncline_consumer::metrics::Metrics;
use syncline_consumer::{Outcome, Sink};
use syncline_event::validate::is_valid_entity_type;
use syncline_event::{EventRef, Op};

use crate::bootstrap::Bootstrapper;
use crate::bulk::{BulkBuilder, BulkRequest};
use crate::client::build_client;
use crate::config::{ConfigError, DeleteMode, EsConfig};
use crate::mappings::{IndexDefinitions, MappingsError};
use crate::metrics::SinkMetrics;
use crate::response::{classify_item, parse_items, request_failure_reason, ItemResult};
use crate::routing::alias_name;

/// Why the sink cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An index definition in the mappings directory is unusable.
    #[error("invalid setting elasticsearch.mappings_dir: {0}")]
    Mappings(#[from] MappingsError),
}

/// Applies change events to Elasticsearch through per-entity-type aliases, with external
/// versioning so that only the highest version of each document is kept.
#[derive(Debug)]
pub struct EsSink {
    client: Elasticsearch,
    prefix: String,
    mode: DeleteMode,
    max_actions: usize,
    max_bytes: usize,
    bootstrap: Bootstrapper,
    metrics: SinkMetrics,
}

impl EsSink {
    /// Validate `config`, read the index definitions and build the client. Metrics are
    /// registered with `registry` (the runtime's, so they show on its `/metrics`).
    pub fn new(config: &EsConfig, registry: &Metrics) -> Result<Self, StartupError> {
        config.validate()?;
        let definitions = IndexDefinitions::load(
            &config.mappings_dir_or_default(),
            config.mappings_dir.is_some(),
        )?;
        Self::with_definitions(config, definitions, registry)
    }

    /// Like [`EsSink::new`] with index definitions supplied by the caller instead of the
    /// mappings directory.
    pub fn with_definitions(
        config: &EsConfig,
        definitions: IndexDefinitions,
        registry: &Metrics,
    ) -> Result<Self, StartupError> {
        config.validate()?;
        let client = build_client(config)?;
        let metrics = SinkMetrics::register(registry);
        Ok(EsSink {
            bootstrap: Bootstrapper::new(
                client.clone(),
                definitions,
                config.delete_mode,
                config.create_indexes,
                metrics.indexes_created.clone(),
            ),
            client,
            prefix: config.index_prefix.clone(),
            mode: config.delete_mode,
            max_actions: config.bulk_max_actions,
            max_bytes: config.bulk_max_bytes,
            metrics,
        })
    }

    /// The sink's metrics.
    pub fn metrics(&self) -> &SinkMetrics {
        &self.metrics
    }

    /// The client in use (shared connection pool).
    pub fn client(&self) -> &Elasticsearch {
        &self.client
    }

    /// Ask the cluster for its name and version, for the startup log line. A failure is
    /// returned, not fatal: the indexer keeps retrying writes until Elasticsearch answers.
    pub async fn probe(&self) -> Result<String, String> {
        let response = self
            .client
            .info()
            .send()
            .await
            .map_err(|e| crate::client::describe_error(&e))?;
        let status = response.status_code();
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(request_failure_reason(status.as_u16(), &bytes));
        }
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        Ok(format!(
            "cluster {} version {}",
            v.pointer("/cluster_name")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?"),
            v.pointer("/version/number")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?")
        ))
    }

    /// Send one bulk request and record the outcome of each of its items.
    // The items' positions are those `apply` gave the builder, enumerating the batch, and
    // `aliases` and `outcomes` have one entry per event of the batch: every index is in
    // bounds. Carrying aliases and slots through the builder instead would cost the bulk
    // path a copy per item.
    #[allow(clippy::indexing_slicing)]
    async fn send(&self, request: BulkRequest, aliases: &[&str], outcomes: &mut [Option<Outcome>]) {
        let started = Instant::now();
        self.metrics.bulk_requests.inc();
        let result = self
            .client
            .bulk(BulkParts::None)
            .require_alias(true)
            .body(vec![request.body])
            .send()
            .await;
        let fail_all = |outcomes: &mut [Option<Outcome>], reason: String| {
            self.metrics.bulk_request_failures.inc();
            tracing::warn!(items = request.items.len(), %reason, "bulk request failed; retrying its items");
            for (pos, _) in &request.items {
                self.metrics.item(ItemResult::Error);
                outcomes[*pos] = Some(Outcome::Retry {
                    reason: reason.clone(),
                });
            }
        };
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                self.metrics.observe_latency(started.elapsed());
                let kind = if e.is_timeout() {
                    "timed out"
                } else {
                    "failed"
                };
                return fail_all(
                    outcomes,
                    format!("bulk request {kind}: {}", crate::client::describe_error(&e)),
                );
            }
        };
        let status = response.status_code();
        let body = response.bytes().await;
        self.metrics.observe_latency(started.elapsed());
        let body = match body {
            Ok(b) => b,
            Err(e) => return fail_all(outcomes, format!("bulk response not received: {e}")),
        };
        if status.as_u16() != 200 {
            return fail_all(outcomes, request_failure_reason(status.as_u16(), &body));
        }
        let items = match parse_items(&body, request.items.len()) {
            Ok(items) => items,
            Err(e) => return fail_all(outcomes, e.to_string()),
        };
        for ((pos, action), item) in request.items.iter().zip(items) {
            let verdict = classify_item(*action, &item);
            self.metrics.item(verdict.result);
            if verdict.index_missing {
                self.bootstrap.forget(aliases[*pos]);
            }
            match &verdict.outcome {
                Outcome::DeadLetter { class, reason } => {
                    tracing::warn!(alias = %aliases[*pos], %class, %reason, "document rejected");
                }
                Outcome::Retry { reason } => {
                    tracing::debug!(alias = %aliases[*pos], %reason, "item will be retried");
                }
                Outcome::Applied | Outcome::Stale => {}
            }
            outcomes[*pos] = Some(verdict.outcome);
        }
    }
}

impl Sink for EsSink {
    fn name(&self) -> &'static str {
        "elasticsearch"
    }

    async fn apply(&self, batch: &[EventRef<'_>]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        // One alias name per entity type in the batch (usually one); each event's alias
        // borrows it.
        let mut names: HashMap<&str, String> = HashMap::new();
        for event in batch {
            names
                .entry(event.entity_type)
                .or_insert_with(|| alias_name(&self.prefix, event.entity_type));
        }
        let aliases: Vec<&str> = batch
            .iter()
            .map(|event| names.get(event.entity_type).map_or("", String::as_str))
            .collect();

        // One existence check (or creation) per alias not known yet.
        let mut alias_failures: HashMap<&str, String> = HashMap::new();
        for (entity_type, alias) in &names {
            if !is_valid_entity_type(entity_type) || self.bootstrap.is_known(alias) {
                continue;
            }
            if let Err(e) = self.bootstrap.ensure(entity_type, alias).await {
                tracing::warn!(%alias, error = %e, "alias not ready; retrying its events");
                alias_failures.insert(alias, e.to_string());
            }
        }

        let mut builder = BulkBuilder::new(self.max_actions, self.max_bytes);
        let events = batch.iter().zip(&aliases).zip(outcomes.iter_mut());
        for (pos, ((event, alias), outcome)) in events.enumerate() {
            // The runtime validates events when it decodes them; these checks only keep a
            // malformed event from producing a malformed bulk line.
            if !is_valid_entity_type(event.entity_type) {
                *outcome = Some(Outcome::DeadLetter {
                    class: "invalid_document".into(),
                    reason: format!("invalid entity_type {:?}", event.entity_type),
                });
                continue;
            }
            if event.op == Op::Upsert && event.document.is_none() {
                *outcome = Some(Outcome::DeadLetter {
                    class: "invalid_document".into(),
                    reason: "UPSERT without a document".into(),
                });
                continue;
            }
            if let Some(reason) = alias_failures.get(alias) {
                *outcome = Some(Outcome::Retry {
                    reason: reason.clone(),
                });
                continue;
            }
            builder.push(pos, event, alias, self.mode);
        }

        // Sequential: the runtime already applies several batches concurrently
        // (max_in_flight_batches), which keeps enough requests in flight.
        for request in builder.finish() {
            self.send(request, &aliases, &mut outcomes).await;
        }

        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| Outcome::Retry {
                    reason: "no bulk item answered for this event".into(),
                })
            })
            .collect()
    }
}
