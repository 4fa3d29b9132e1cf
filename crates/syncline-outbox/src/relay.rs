//! The relay: holds the outbox's advisory lock, reads committed rows in id order, publishes
//! them through [`syncline_producer::Producer`] and deletes them once acknowledged.
//!
//! Correctness rests on three rules:
//! * a row leaves the outbox only in the transaction that follows its acknowledgement
//!   (or its quarantine), so a crash anywhere republishes it (at least once), with the
//!   same `event_id` (stored, or derived from the row);
//! * every batch is read from the head of the table (`ORDER BY id LIMIT n`), never from
//!   a cursor, so a row whose transaction commits after rows with higher ids is still
//!   found; rows of one entity are written under that entity's row lock, so their ids
//!   follow their commit order, and the producer keeps per-key order;
//! * only the holder of the session advisory lock publishes; the lock goes with its
//!   connection, so a standby that retries `pg_try_advisory_lock` takes over as soon as
//!   PostgreSQL notices the old connection is gone.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use syncline_event::{ChangeEvent, Limits, Op};
use syncline_pg::{PgConfig, PgConnection, PgError};
use syncline_producer::{Producer, ProducerConfig, ProducerError, PublishError};
use tokio_postgres::Row;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// The advisory lock key of the outbox (one outbox per database).
pub const LOCK_KEY: i64 = 0x5359_4e43_4f55_5458; // "SYNCOUTX"

/// The channel the outbox trigger notifies.
pub const CHANNEL: &str = "syncline_outbox";

/// Namespace of the UUIDv5 `event_id`s derived from rows without one.
const EVENT_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6b1f_3c52_8f0e_4c5e_9a0d_5e2f_73a1_0b77);

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// PostgreSQL holding the outbox.
    pub database: PgConfig,
    /// The producer (brokers, topic, librdkafka properties, document limit).
    pub producer: ProducerConfig,
    /// Most rows read per batch.
    pub batch_rows: i64,
    /// Most document bytes read per batch (at least one row is always read): with
    /// `batch_rows` it bounds the relay's memory.
    pub batch_bytes: i64,
    /// How often the outbox is read without a notification.
    pub poll_interval: Duration,
    /// How often a standby tries to take the lock, and the reconnect delay.
    pub standby_retry: Duration,
    /// Wait after a batch whose publication failed transiently.
    pub retry_backoff: Duration,
    /// How often the pending-row count and oldest age are refreshed.
    pub stats_interval: Duration,
}

impl RelaySettings {
    /// Defaults for everything but where to connect.
    pub fn new(database: PgConfig, producer: ProducerConfig) -> Self {
        RelaySettings {
            database,
            producer,
            batch_rows: 5_000,
            batch_bytes: 32 * 1024 * 1024,
            poll_interval: Duration::from_millis(500),
            standby_retry: Duration::from_secs(1),
            retry_backoff: Duration::from_secs(1),
            stats_interval: Duration::from_secs(2),
        }
    }
}

/// Why the relay stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The producer could not be created (bad Kafka settings).
    #[error("kafka producer: {0}")]
    Producer(#[from] ProducerError),
}

/// Run until `stop`: connect, wait for the lock, publish; reconnect on any PostgreSQL
/// failure. Returns only on `stop` or a producer configuration error.
pub async fn run(
    settings: RelaySettings,
    metrics: Metrics,
    stop: CancellationToken,
) -> Result<(), RelayError> {
    let producer = Producer::new(settings.producer.clone())?;
    let limits = *producer.limits();
    while !stop.is_cancelled() {
        match settings.database.connect().await {
            Ok(conn) => {
                metrics.set_connected(true);
                let outcome = session(&settings, &producer, limits, conn, &metrics, &stop).await;
                metrics.set_connected(false);
                metrics.set_active(false);
                if let Err(e) = outcome {
                    tracing::warn!(error = %e, "outbox session ended; reconnecting");
                }
            }
            Err(e) => {
                metrics.set_connected(false);
                tracing::warn!(error = %e, "cannot connect to PostgreSQL; retrying");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(settings.standby_retry) => {}
        }
    }
    let _ = producer.flush(Duration::from_secs(10)).await;
    Ok(())
}

/// One connection's life: standby until the lock is ours, then publish until the
/// connection fails or `stop`.
async fn session(
    s: &RelaySettings,
    producer: &Producer,
    limits: Limits,
    mut conn: PgConnection,
    metrics: &Metrics,
    stop: &CancellationToken,
) -> Result<(), PgError> {
    let db = &s.database;
    let err = |e: tokio_postgres::Error| db.error(&e);
    loop {
        let got: bool = conn
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
            .await
            .map_err(err)?
            .get(0);
        if got {
            break;
        }
        metrics.set_active(false);
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(s.standby_retry) => {}
        }
    }
    metrics.set_active(true);
    tracing::info!(database = %db, "holding the outbox lock: publishing");
    conn.client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(err)?;
    let fetch = conn.client.prepare(FETCH_SQL).await.map_err(err)?;
    let mut last_stats = Instant::now() - s.stats_interval;
    let mut rate_window = (Instant::now(), metrics.published());
    loop {
        if stop.is_cancelled() {
            return Ok(());
        }
        if last_stats.elapsed() >= s.stats_interval {
            refresh_stats(&conn, db, metrics).await?;
            let (since, base) = rate_window;
            let secs = since.elapsed().as_secs_f64();
            if secs > 0.0 {
                metrics.set_rate((metrics.published() - base) as f64 / secs);
            }
            rate_window = (Instant::now(), metrics.published());
            last_stats = Instant::now();
        }
        let rows = conn
            .client
            .query(
                &fetch,
                &[
                    &s.batch_rows,
                    &(limits.max_document_bytes as i64),
                    &s.batch_bytes,
                ],
            )
            .await
            .map_err(err)?;
        if rows.is_empty() {
            // Drain wake-ups that arrived while the last batch ran, then wait for one.
            while conn.notifications.try_recv().is_ok() {}
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                n = conn.notifications.recv() => {
                    if n.is_none() {
                        return Err(PgError::Query {
                            target: db.redacted().to_owned(),
                            reason: "connection closed".into(),
                            code: None,
                            closed: true,
                        });
                    }
                }
                _ = tokio::time::sleep(s.poll_interval) => {}
            }
            continue;
        }
        metrics.add_batch();
        let outcome = publish_batch(producer, limits, &rows, metrics).await;
        finish_batch(&mut conn, db, &outcome).await?;
        metrics.add_published(outcome.acked.len() as u64);
        metrics.add_quarantined(outcome.quarantine.len() as u64);
        if outcome.transient_failures > 0 {
            metrics.add_publish_failures(outcome.transient_failures);
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(s.retry_backoff) => {}
            }
        }
    }
}

/// The head of the outbox: at most `$1` rows, documents over `$2` bytes not loaded (they
/// are quarantined by size), and no more rows once `$3` document bytes are reached.
const FETCH_SQL: &str = "
SELECT id, event_id, entity_type, entity_id, op, version, occurred_us, source, document,
       doc_len, invalidate, attributes
FROM (
    SELECT h.*, sum(coalesce(least(h.doc_len, $2::bigint + 1), 0)) OVER (ORDER BY h.id) AS cum
    FROM (
        SELECT id, event_id::text AS event_id, entity_type, entity_id, op, version,
               (extract(epoch FROM occurred_at) * 1000000)::bigint AS occurred_us,
               source,
               CASE WHEN octet_length(document) > $2::bigint THEN NULL ELSE document END AS document,
               octet_length(document)::bigint AS doc_len,
               invalidate, attributes::text AS attributes
        FROM syncline_outbox
        ORDER BY id
        LIMIT $1::bigint
    ) h
) b
WHERE cum - coalesce(least(doc_len, $2::bigint + 1), 0) < $3::bigint
ORDER BY id";

async fn refresh_stats(
    conn: &PgConnection,
    db: &PgConfig,
    metrics: &Metrics,
) -> Result<(), PgError> {
    let row = conn
        .client
        .query_one(
            "SELECT (SELECT count(*) FROM syncline_outbox),
                    coalesce((SELECT (extract(epoch FROM now() - created_at) * 1000)::bigint
                              FROM syncline_outbox ORDER BY id LIMIT 1), 0)",
            &[],
        )
        .await
        .map_err(|e| db.error(&e))?;
    let count: i64 = row.get(0);
    let age: i64 = row.get(1);
    metrics.set_pending(count.max(0) as u64, age.max(0) as u64);
    Ok(())
}

/// What happened to one batch.
#[derive(Debug, Default)]
struct BatchOutcome {
    /// Acknowledged ids.
    acked: Vec<i64>,
    /// Ids to quarantine, with the reason.
    quarantine: Vec<(i64, String)>,
    /// Rows whose publication failed transiently (left in the outbox).
    transient_failures: u64,
}

/// A row as a change event, or why it cannot be one.
pub fn row_to_event(row: &Row, limits: &Limits) -> Result<ChangeEvent, String> {
    let id: i64 = row.try_get("id").map_err(|e| e.to_string())?;
    let occurred_at: i64 = row.try_get("occurred_us").map_err(|e| e.to_string())?;
    let event_id: Option<String> = row.try_get("event_id").map_err(|e| e.to_string())?;
    let op_text: String = row.try_get("op").map_err(|e| e.to_string())?;
    let op = match op_text.as_str() {
        "UPSERT" => Op::Upsert,
        "DELETE" => Op::Delete,
        other => return Err(format!("op must be UPSERT or DELETE, got {other:?}")),
    };
    let doc_len: Option<i64> = row.try_get("doc_len").map_err(|e| e.to_string())?;
    let document: Option<String> = row.try_get("document").map_err(|e| e.to_string())?;
    if let (Some(len), None) = (doc_len, &document) {
        return Err(format!(
            "document is {len} bytes, over the limit of {} bytes",
            limits.max_document_bytes
        ));
    }
    let invalidate: Vec<Option<String>> = row.try_get("invalidate").map_err(|e| e.to_string())?;
    let invalidate = invalidate
        .into_iter()
        .collect::<Option<Vec<String>>>()
        .ok_or("invalidate must not contain NULL")?;
    let attributes_text: String = row.try_get("attributes").map_err(|e| e.to_string())?;
    let attributes: BTreeMap<String, String> = serde_json::from_str(&attributes_text)
        .map_err(|_| "attributes must be a JSON object whose values are strings".to_owned())?;
    let created = occurred_at;
    let event = ChangeEvent {
        event_id: event_id.unwrap_or_else(|| derived_event_id(id, created)),
        entity_type: row.try_get("entity_type").map_err(|e| e.to_string())?,
        entity_id: row.try_get("entity_id").map_err(|e| e.to_string())?,
        op,
        version: row.try_get("version").map_err(|e| e.to_string())?,
        occurred_at,
        source: row.try_get("source").map_err(|e| e.to_string())?,
        document,
        invalidate,
        attributes,
    };
    event.validate(limits).map_err(|e| e.to_string())?;
    Ok(event)
}

/// The `event_id` of a row that has none: a UUIDv5 of its id and write time, so a
/// republished row carries the same id and a recreated table's rows do not collide.
pub fn derived_event_id(id: i64, occurred_at_micros: i64) -> String {
    uuid::Uuid::new_v5(
        &EVENT_ID_NAMESPACE,
        format!("syncline_outbox:{id}:{occurred_at_micros}").as_bytes(),
    )
    .to_string()
}

/// Errors that no retry can fix: the row goes to quarantine.
fn is_permanent(e: &PublishError) -> bool {
    match e {
        PublishError::Invalid(_) | PublishError::Encode { .. } => true,
        PublishError::Kafka { source, .. } => matches!(
            source,
            KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageSizeTooLarge
                    | RDKafkaErrorCode::InvalidMessageSize
                    | RDKafkaErrorCode::InvalidMessage
                    | RDKafkaErrorCode::InvalidRecord
            )
        ),
        _ => false,
    }
}

async fn publish_batch(
    producer: &Producer,
    limits: Limits,
    rows: &[Row],
    metrics: &Metrics,
) -> BatchOutcome {
    let mut out = BatchOutcome::default();
    let mut pending = Vec::with_capacity(rows.len());
    for row in rows {
        let id: i64 = match row.try_get("id") {
            Ok(id) => id,
            Err(_) => continue,
        };
        match row_to_event(row, &limits) {
            Err(reason) => out.quarantine.push((id, reason)),
            Ok(event) => match producer.send(&event).await {
                Ok(p) => pending.push((id, event.occurred_at, p)),
                Err(e) if is_permanent(&e) => out.quarantine.push((id, e.to_string())),
                Err(e) => {
                    tracing::warn!(id, error = %e, "publishing an outbox row failed; will retry");
                    out.transient_failures += 1;
                }
            },
        }
    }
    for (id, occurred_at, p) in pending {
        match p.await {
            Ok(_) => {
                let now = syncline_event::model::now_micros();
                metrics.observe_delay((now - occurred_at) as f64 / 1e6);
                out.acked.push(id);
            }
            Err(e) if is_permanent(&e) => out.quarantine.push((id, e.to_string())),
            Err(e) => {
                tracing::warn!(id, error = %e, "outbox row not acknowledged; will retry");
                out.transient_failures += 1;
            }
        }
    }
    out
}

async fn finish_batch(
    conn: &mut PgConnection,
    db: &PgConfig,
    outcome: &BatchOutcome,
) -> Result<(), PgError> {
    if outcome.acked.is_empty() && outcome.quarantine.is_empty() {
        return Ok(());
    }
    let err = |e: tokio_postgres::Error| db.error(&e);
    let tx = conn.client.transaction().await.map_err(err)?;
    if !outcome.quarantine.is_empty() {
        let ids: Vec<i64> = outcome.quarantine.iter().map(|(id, _)| *id).collect();
        let reasons: Vec<&str> = outcome.quarantine.iter().map(|(_, r)| r.as_str()).collect();
        for (id, reason) in &outcome.quarantine {
            tracing::warn!(id, reason, "outbox row quarantined");
        }
        tx.execute(
            "INSERT INTO syncline_outbox_quarantine
                 (id, event_id, entity_type, entity_id, op, version, occurred_at, source,
                  document, invalidate, attributes, created_at, reason)
             SELECT o.id, o.event_id, o.entity_type, o.entity_id, o.op, o.version,
                    o.occurred_at, o.source, o.document, o.invalidate, o.attributes,
                    o.created_at, q.reason
             FROM syncline_outbox o JOIN unnest($1::bigint[], $2::text[]) AS q(id, reason)
                  ON o.id = q.id
             ON CONFLICT (id) DO NOTHING",
            &[&ids, &reasons],
        )
        .await
        .map_err(err)?;
    }
    // Acknowledged and quarantined rows leave the outbox in one statement.
    let done: Vec<i64> = outcome
        .acked
        .iter()
        .copied()
        .chain(outcome.quarantine.iter().map(|(id, _)| *id))
        .collect();
    tx.execute("DELETE FROM syncline_outbox WHERE id = ANY($1)", &[&done])
        .await
        .map_err(err)?;
    tx.commit().await.map_err(err)
}
