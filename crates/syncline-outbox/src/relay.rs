//! The relay: holds the outbox's advisory lock, reads committed rows in id order, publishes
//! them through [`syncline_producer::Producer`] and deletes them once acknowledged.
//!
//! The stages overlap: while the broker acknowledges some batches, the next one is read
//! from PostgreSQL and the one before it is turned into records by a publisher task, and
//! acknowledged batches are deleted; at most [`RelaySettings::batches_in_flight`] batches
//! are between reading and deletion, so memory stays bounded.
//!
//! Correctness rests on these rules:
//! * a row leaves the outbox only in a statement that follows its acknowledgement (or its
//!   quarantine), so a crash anywhere republishes it (at least once), with the same
//!   `event_id` (stored, or derived from the row);
//! * every batch is the first committed rows in id order that are not in flight. It is
//!   read past the highest id in flight, and the same statement (so the same snapshot)
//!   checks for a "gap": a visible row below the lowest id in flight, or in one of the
//!   holes the reads left between the ids in flight (rows of transactions that were still
//!   running, or rolled back). On a gap the batch is dropped, the pipeline drained and the
//!   next batch read from the head of the table. So a row whose transaction commits after
//!   rows with higher ids is never skipped;
//! * rows of one entity are written under that entity's row lock, so their ids follow
//!   their commit order: a row is visible only when every earlier row of its entity is,
//!   so the earlier ones are in flight, earlier in the same batch, or already deleted;
//!   batches reach the producer in id order, one publisher task hands them over in turn,
//!   and the producer keeps per-key order;
//! * only the holder of the session advisory lock publishes; the lock goes with its
//!   connection, so a standby that retries `pg_try_advisory_lock` takes over as soon as
//!   PostgreSQL notices the old connection is gone.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use syncline_event::{ChangeEvent, Limits, Op};
use syncline_pg::{PgConfig, PgConnection, PgError};
use syncline_producer::{Producer, ProducerConfig, ProducerError, PublishError};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, Row, Statement};
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, Stage};

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
    /// Most batches read and not yet deleted. Reading, acknowledgement and deletion of
    /// different batches overlap up to this depth; 1 runs them one after the other.
    /// Only one batch's rows are held at a time (they are dropped once handed to the
    /// producer, whose queue is bounded on its own), so memory does not grow with it.
    pub batches_in_flight: usize,
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
            batches_in_flight: 4,
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
    let producer = Arc::new(Producer::new(settings.producer.clone())?);
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

/// The statements of a session, prepared once.
struct Statements {
    fetch: Statement,
    delete: Statement,
    quarantine_and_delete: Statement,
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Statements, tokio_postgres::Error> {
        Ok(Statements {
            fetch: client.prepare(FETCH_SQL).await?,
            delete: client.prepare(DELETE_SQL).await?,
            quarantine_and_delete: client.prepare(QUARANTINE_AND_DELETE_SQL).await?,
        })
    }
}

/// One batch between reading and deletion.
struct InFlight {
    /// Its lowest id.
    min_id: i64,
    /// Its highest id.
    max_id: i64,
    /// Ranges of ids between the previous batch in flight (or this batch's lowest id) and
    /// this batch's highest that the read did not return: rows of transactions that were
    /// still running then, which may commit later. Usually none.
    holes: Vec<(i64, i64)>,
    /// Rows read.
    rows: usize,
    /// Settles when every row is acknowledged, failed or to be quarantined.
    outcome: oneshot::Receiver<BatchOutcome>,
}

/// The batches between reading and deletion, oldest first. A batch leaves only after its
/// DELETE committed.
#[derive(Default)]
struct Pipeline {
    batches: VecDeque<InFlight>,
}

impl Pipeline {
    /// Where the next read starts: past the highest id in flight, or the head of the
    /// table when nothing is.
    fn after(&self) -> i64 {
        self.batches.back().map_or(i64::MIN, |b| b.max_id)
    }

    /// The lowest id in flight: a visible row below it is a gap.
    fn floor(&self) -> i64 {
        self.batches.front().map_or(i64::MIN, |b| b.min_id)
    }

    /// The holes in flight, as two arrays (lows, highs) for the fetch statement.
    fn holes(&self) -> (Vec<i64>, Vec<i64>) {
        self.batches
            .iter()
            .flat_map(|b| b.holes.iter().copied())
            .unzip()
    }

    /// A batch of rows read past [`Pipeline::after`], sorted by id, enters the pipeline.
    fn push(&mut self, ids: &[i64], outcome: oneshot::Receiver<BatchOutcome>) {
        let (Some(&min_id), Some(&max_id)) = (ids.first(), ids.last()) else {
            return;
        };
        let mut next = if self.batches.is_empty() {
            min_id
        } else {
            self.after().saturating_add(1)
        };
        let mut holes = Vec::new();
        for &id in ids {
            if id > next {
                holes.push((next, id - 1));
            }
            next = id.saturating_add(1);
        }
        self.batches.push_back(InFlight {
            min_id,
            max_id,
            holes,
            rows: ids.len(),
            outcome,
        });
    }
}

/// A batch for the publisher task, and where to report what became of its rows.
struct SendJob {
    rows: Vec<Row>,
    done: oneshot::Sender<BatchOutcome>,
}

/// One connection's life: standby until the lock is ours, then publish until the
/// connection fails or `stop`.
async fn session(
    s: &RelaySettings,
    producer: &Arc<Producer>,
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
    let stmts = Statements::prepare(&conn.client).await.map_err(err)?;
    // One batch waits for the publisher while it works on the one before: turning rows
    // into records (relay CPU) overlaps the next read (PostgreSQL).
    let (jobs, job_rx) = mpsc::channel(1);
    let publisher = tokio::spawn(publish_batches(
        producer.clone(),
        limits,
        job_rx,
        metrics.clone(),
    ));
    let outcome = relay_loop(s, &mut conn, &stmts, limits, &jobs, metrics, stop).await;
    // Every batch read is handed to the producer before a new session reads the head
    // again, so that the producer sees one entity's rows in order.
    drop(jobs);
    let _ = publisher.await;
    outcome
}

/// Read, hand over, wait, delete: until `stop` or a PostgreSQL failure.
async fn relay_loop(
    s: &RelaySettings,
    conn: &mut PgConnection,
    stmts: &Statements,
    limits: Limits,
    jobs: &mpsc::Sender<SendJob>,
    metrics: &Metrics,
    stop: &CancellationToken,
) -> Result<(), PgError> {
    let db = &s.database;
    let err = |e: tokio_postgres::Error| db.error(&e);
    let depth = s.batches_in_flight.max(1);
    let mut pipe = Pipeline::default();
    // Read when there may be rows past the pipeline: at start, after a notification or a
    // poll interval, and while batches come back full.
    let mut want_read = true;
    // No reads until the pipeline is empty: after a gap or a transient failure, the next
    // batch must come from the head of the table.
    let mut draining = false;
    // Wait `retry_backoff` once the pipeline is empty (a transient failure).
    let mut backoff = false;
    let mut last_stats = Instant::now() - s.stats_interval;
    let mut rate_window = (Instant::now(), metrics.published());
    loop {
        if stop.is_cancelled() {
            // Settle what the producer already holds, so that the next relay repeats less.
            while let Some(b) = pipe.batches.front_mut() {
                let outcome = settled((&mut b.outcome).await, b.rows);
                finish(&conn.client, stmts, db, &outcome, metrics).await?;
                pipe.batches.pop_front();
            }
            return Ok(());
        }
        if last_stats.elapsed() >= s.stats_interval {
            refresh_stats(conn, db, metrics).await?;
            let (since, base) = rate_window;
            let secs = since.elapsed().as_secs_f64();
            if secs > 0.0 {
                metrics.set_rate((metrics.published() - base) as f64 / secs);
            }
            rate_window = (Instant::now(), metrics.published());
            last_stats = Instant::now();
        }
        if want_read && !draining && pipe.batches.len() < depth {
            let t = Instant::now();
            let read = read_batch(&conn.client, stmts, s, &limits, &pipe).await;
            metrics.add_stage(Stage::Read, t.elapsed());
            match read.map_err(err)? {
                Read::Gap => {
                    metrics.add_gap();
                    draining = true;
                }
                Read::Rows { rows, more } => {
                    want_read = more;
                    if !rows.is_empty() {
                        metrics.add_batch();
                        let ids: Vec<i64> = rows.iter().map(row_id).collect();
                        let (done, outcome) = oneshot::channel();
                        if jobs.send(SendJob { rows, done }).await.is_err() {
                            return Err(PgError::Query {
                                target: db.redacted().to_owned(),
                                reason: "the publisher task ended".into(),
                                code: None,
                                closed: false,
                            });
                        }
                        pipe.push(&ids, outcome);
                    }
                }
            }
            continue;
        }
        let Some(oldest) = pipe.batches.front_mut() else {
            if draining || backoff {
                if backoff {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(s.retry_backoff) => {}
                    }
                }
                draining = false;
                backoff = false;
                want_read = true;
                continue;
            }
            // Nothing in flight, nothing to read: wait for a commit.
            tokio::select! {
                _ = stop.cancelled() => {}
                n = conn.notifications.recv() => {
                    if n.is_none() {
                        return Err(closed(db));
                    }
                    // One read covers every commit notified so far.
                    while conn.notifications.try_recv().is_ok() {}
                    want_read = true;
                }
                _ = tokio::time::sleep(s.poll_interval) => want_read = true,
            }
            continue;
        };
        let idle = !want_read && !draining;
        let t = Instant::now();
        tokio::select! {
            biased;
            _ = stop.cancelled() => {}
            joined = &mut oldest.outcome => {
                metrics.add_stage(Stage::Wait, t.elapsed());
                let mut outcome = settled(joined, oldest.rows);
                // Batches acknowledged meanwhile go in the same statement.
                let mut settled_batches = 1;
                for b in pipe.batches.iter_mut().skip(1) {
                    match b.outcome.try_recv() {
                        Ok(o) => outcome.merge(o),
                        Err(oneshot::error::TryRecvError::Empty) => break,
                        Err(oneshot::error::TryRecvError::Closed) => {
                            outcome.merge(settled(Err(()), b.rows))
                        }
                    }
                    settled_batches += 1;
                }
                let t = Instant::now();
                finish(&conn.client, stmts, db, &outcome, metrics).await?;
                metrics.add_stage(Stage::Delete, t.elapsed());
                // Only now, with their rows deleted, do the batches leave the pipeline:
                // until then their ids count as in flight for the gap check.
                pipe.batches.drain(..settled_batches);
                if outcome.transient_failures > 0 {
                    draining = true;
                    backoff = true;
                }
            }
            n = conn.notifications.recv(), if idle => {
                if n.is_none() {
                    return Err(closed(db));
                }
                while conn.notifications.try_recv().is_ok() {}
                want_read = true;
            }
            _ = tokio::time::sleep(s.poll_interval), if idle => want_read = true,
        }
    }
}

fn closed(db: &PgConfig) -> PgError {
    PgError::Query {
        target: db.redacted().to_owned(),
        reason: "connection closed".into(),
        code: None,
        closed: true,
    }
}

/// The head of the outbox past `$4` (the highest id in flight): at most `$1` rows,
/// documents over `$2` bytes not loaded (they are quarantined by size), and no more rows
/// once `$3` document bytes are reached, in id order.
///
/// `gap`, in the same snapshot: a row below `$5` (the lowest id in flight) or in one of
/// the id ranges `$6[i]..=$7[i]` (the holes in flight). `min(id)` and the `ORDER BY id
/// LIMIT 1` per hole keep both checks on the primary key whatever the planner estimates
/// (an `EXISTS (... id < $5)` got a sequential scan). The outer join returns `gap` even
/// when there is no new row (then `id` is NULL). No outer `ORDER BY`: the rows come in the
/// order of the inner index scan, and the relay checks it rather than paying for a sort.
/// `doc_len` is `octet_length`'s int4, so that the running sum is a bigint, not a numeric.
const FETCH_SQL: &str = "
SELECT coalesce((SELECT min(id) FROM syncline_outbox) < $5::bigint, false)
       OR EXISTS (SELECT 1
                  FROM unnest($6::bigint[], $7::bigint[]) AS hole(lo, hi),
                       LATERAL (SELECT o.id FROM syncline_outbox o
                                WHERE o.id BETWEEN hole.lo AND hole.hi
                                ORDER BY o.id LIMIT 1) found) AS gap,
       b.id, b.event_id, b.entity_type, b.entity_id, b.op, b.version, b.occurred_at,
       b.source, b.document, b.doc_len, b.invalidate, b.attributes
FROM (VALUES (1)) AS one(x)
LEFT JOIN (
    SELECT *
    FROM (
        SELECT h.*,
               sum(coalesce(least(h.doc_len, $2::bigint + 1), 0)::int4) OVER (ORDER BY h.id) AS cum
        FROM (
            SELECT id, event_id::text AS event_id, entity_type, entity_id, op, version,
                   occurred_at, source,
                   CASE WHEN octet_length(document) > $2::bigint THEN NULL ELSE document END AS document,
                   octet_length(document) AS doc_len,
                   invalidate, attributes::text AS attributes
            FROM syncline_outbox
            WHERE id > $4::bigint
            ORDER BY id
            LIMIT $1::bigint
        ) h
    ) w
    WHERE cum - coalesce(least(doc_len, $2::bigint + 1), 0) < $3::bigint
) b ON true";

/// Settled rows leave the outbox, as ranges of consecutive ids (`$1[i]..=$2[i]`): a batch
/// read without holes is one range, which the primary key deletes in one sweep instead of
/// one descent per id. Only ids of the batch are in its ranges, so no other row can be
/// (ids are unique).
const DELETE_SQL: &str = "
DELETE FROM syncline_outbox o
USING unnest($1::bigint[], $2::bigint[]) AS done(lo, hi)
WHERE o.id BETWEEN done.lo AND done.hi";

/// [`DELETE_SQL`], and quarantined rows (`$3`, with reasons `$4`) copied first, in one
/// statement: its parts share one snapshot, so the copy reads the rows the delete
/// removes, and either both happen or neither.
const QUARANTINE_AND_DELETE_SQL: &str = "
WITH quarantined AS (
    INSERT INTO syncline_outbox_quarantine
        (id, event_id, entity_type, entity_id, op, version, occurred_at, source,
         document, invalidate, attributes, created_at, reason)
    SELECT o.id, o.event_id, o.entity_type, o.entity_id, o.op, o.version,
           o.occurred_at, o.source, o.document, o.invalidate, o.attributes,
           o.created_at, q.reason
    FROM syncline_outbox o JOIN unnest($3::bigint[], $4::text[]) AS q(id, reason)
         ON o.id = q.id
    ON CONFLICT (id) DO NOTHING
)
DELETE FROM syncline_outbox o
USING unnest($1::bigint[], $2::bigint[]) AS done(lo, hi)
WHERE o.id BETWEEN done.lo AND done.hi";

/// What one read found.
enum Read {
    /// A row below or between the ids in flight committed late: drain, then read the head.
    Gap,
    /// The next rows (possibly none), in id order; `more`: the batch was cut by a limit,
    /// so more rows may be there already.
    Rows { rows: Vec<Row>, more: bool },
}

async fn read_batch(
    client: &Client,
    stmts: &Statements,
    s: &RelaySettings,
    limits: &Limits,
    pipe: &Pipeline,
) -> Result<Read, tokio_postgres::Error> {
    let max_doc = limits.max_document_bytes as i64;
    let (hole_lo, hole_hi) = pipe.holes();
    let rows = client
        .query(
            &stmts.fetch,
            &[
                &s.batch_rows,
                &max_doc,
                &s.batch_bytes,
                &pipe.after(),
                &pipe.floor(),
                &hole_lo,
                &hole_hi,
            ],
        )
        .await?;
    let gap: bool = match rows.first() {
        Some(r) => r.try_get("gap")?,
        None => false,
    };
    if gap {
        return Ok(Read::Gap);
    }
    let mut bytes = 0i64;
    let mut rows: Vec<Row> = rows
        .into_iter()
        .filter(|r| matches!(r.try_get::<_, Option<i64>>("id"), Ok(Some(_))))
        .inspect(|r| {
            if let Ok(Some(len)) = r.try_get::<_, Option<i32>>("doc_len") {
                bytes += i64::from(len).min(max_doc + 1);
            }
        })
        .collect();
    let more = rows.len() as i64 >= s.batch_rows || bytes >= s.batch_bytes;
    // Publication order is id order: sort in the unexpected case the join did not keep
    // the inner scan's order (a pass over sorted rows otherwise).
    if !rows.is_sorted_by_key(row_id) {
        rows.sort_by_key(row_id);
    }
    Ok(Read::Rows { rows, more })
}

fn row_id(r: &Row) -> i64 {
    r.try_get("id").unwrap_or(i64::MIN)
}

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

/// What happened to one or more batches.
#[derive(Debug, Default)]
struct BatchOutcome {
    /// Acknowledged ids.
    acked: Vec<i64>,
    /// Ids to quarantine, with the reason.
    quarantine: Vec<(i64, String)>,
    /// Rows whose publication failed transiently (left in the outbox).
    transient_failures: u64,
}

impl BatchOutcome {
    fn merge(&mut self, other: BatchOutcome) {
        self.acked.extend(other.acked);
        self.quarantine.extend(other.quarantine);
        self.transient_failures += other.transient_failures;
    }
}

/// A batch's outcome once settled. A batch whose publisher or acknowledgement task ended
/// without reporting is left in the outbox, as a transient failure of all its rows: it
/// is read again after the backoff.
fn settled<E>(reported: Result<BatchOutcome, E>, rows: usize) -> BatchOutcome {
    reported.unwrap_or_else(|_| {
        tracing::warn!(rows, "an outbox batch did not settle; will retry");
        BatchOutcome {
            transient_failures: rows.max(1) as u64,
            ..BatchOutcome::default()
        }
    })
}

/// Seconds between the Unix epoch and PostgreSQL's (2000-01-01), in microseconds.
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// A `timestamptz` as PostgreSQL sends it in binary: microseconds since 2000-01-01 UTC.
/// Read raw so that an out-of-range value (`infinity`) quarantines its row instead of
/// failing the statement that reads the whole batch.
struct PgMicros(i64);

impl<'a> FromSql<'a> for PgMicros {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let bytes: [u8; 8] = raw.try_into()?;
        Ok(PgMicros(i64::from_be_bytes(bytes)))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }
}

/// A row as a change event, or why it cannot be one.
pub fn row_to_event(row: &Row, limits: &Limits) -> Result<ChangeEvent, String> {
    let id: i64 = row.try_get("id").map_err(|e| e.to_string())?;
    let PgMicros(pg_micros) = row.try_get("occurred_at").map_err(|e| e.to_string())?;
    // ±infinity are i64::MAX / i64::MIN.
    let occurred_at = match pg_micros.checked_add(PG_EPOCH_UNIX_MICROS) {
        Some(t) if pg_micros != i64::MIN && pg_micros != i64::MAX => t,
        _ => return Err("occurred_at must be a finite time".to_owned()),
    };
    let event_id: Option<String> = row.try_get("event_id").map_err(|e| e.to_string())?;
    let op_text: String = row.try_get("op").map_err(|e| e.to_string())?;
    let op = match op_text.as_str() {
        "UPSERT" => Op::Upsert,
        "DELETE" => Op::Delete,
        other => return Err(format!("op must be UPSERT or DELETE, got {other:?}")),
    };
    let doc_len: Option<i32> = row.try_get("doc_len").map_err(|e| e.to_string())?;
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

/// The publisher task: hands each batch to the producer, in id order and batch after
/// batch, then lets a task of the batch collect its acknowledgements and report them on
/// the job's channel. The rows are dropped once handed over; librdkafka holds copies of
/// the records until they are acknowledged (its queue is bounded on its own).
async fn publish_batches(
    producer: Arc<Producer>,
    limits: Limits,
    mut jobs: mpsc::Receiver<SendJob>,
    metrics: Metrics,
) {
    while let Some(SendJob { rows, done }) = jobs.recv().await {
        let t = Instant::now();
        let mut out = BatchOutcome::default();
        let mut pending = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = match row.try_get("id") {
                Ok(id) => id,
                Err(_) => continue,
            };
            match row_to_event(row, &limits) {
                Err(reason) => out.quarantine.push((id, reason)),
                // Outbox rows carry no trace context: no `traceparent` header.
                Ok(event) => match producer.send_with_traceparent(&event, None).await {
                    Ok(p) => pending.push((id, event.occurred_at, p)),
                    Err(e) if is_permanent(&e) => out.quarantine.push((id, e.to_string())),
                    Err(e) => {
                        tracing::warn!(id, error = %e, "publishing an outbox row failed; will retry");
                        out.transient_failures += 1;
                    }
                },
            }
        }
        drop(rows);
        metrics.add_stage(Stage::Send, t.elapsed());
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut acks: FuturesUnordered<_> = pending
                .into_iter()
                .map(|(id, occurred_at, p)| async move { (id, occurred_at, p.await) })
                .collect();
            while let Some((id, occurred_at, result)) = acks.next().await {
                match result {
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
            // The relay may have gone (its session ended): the rows stay in the outbox.
            let _ = done.send(out);
        });
    }
}

/// Runs of consecutive ids, as two arrays (lows, highs) for the delete statements.
fn id_ranges(mut ids: Vec<i64>) -> (Vec<i64>, Vec<i64>) {
    ids.sort_unstable();
    ids.dedup();
    let (mut lo, mut hi) = (Vec::new(), Vec::<i64>::new());
    for id in ids {
        match hi.last_mut() {
            Some(h) if h.checked_add(1) == Some(id) => *h = id,
            _ => {
                lo.push(id);
                hi.push(id);
            }
        }
    }
    (lo, hi)
}

/// Remove settled rows: acknowledged ones, and quarantined ones after copying them.
async fn finish(
    client: &Client,
    stmts: &Statements,
    db: &PgConfig,
    outcome: &BatchOutcome,
    metrics: &Metrics,
) -> Result<(), PgError> {
    if outcome.transient_failures > 0 {
        metrics.add_publish_failures(outcome.transient_failures);
    }
    if outcome.acked.is_empty() && outcome.quarantine.is_empty() {
        return Ok(());
    }
    let err = |e: tokio_postgres::Error| db.error(&e);
    let done: Vec<i64> = outcome
        .acked
        .iter()
        .copied()
        .chain(outcome.quarantine.iter().map(|(id, _)| *id))
        .collect();
    let (lo, hi) = id_ranges(done);
    if outcome.quarantine.is_empty() {
        client
            .execute(&stmts.delete, &[&lo, &hi])
            .await
            .map_err(err)?;
    } else {
        for (id, reason) in &outcome.quarantine {
            tracing::warn!(id, reason, "outbox row quarantined");
        }
        let ids: Vec<i64> = outcome.quarantine.iter().map(|(id, _)| *id).collect();
        let reasons: Vec<&str> = outcome.quarantine.iter().map(|(_, r)| r.as_str()).collect();
        client
            .execute(&stmts.quarantine_and_delete, &[&lo, &hi, &ids, &reasons])
            .await
            .map_err(err)?;
    }
    metrics.add_published(outcome.acked.len() as u64);
    metrics.add_quarantined(outcome.quarantine.len() as u64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_ranges_are_runs_of_consecutive_ids() {
        assert_eq!(id_ranges(vec![]), (vec![], vec![]));
        assert_eq!(
            id_ranges(vec![7, 3, 4, 5, 9, 10, 5, i64::MAX]),
            (vec![3, 7, 9, i64::MAX], vec![5, 7, 10, i64::MAX])
        );
    }

    #[test]
    fn holes_are_the_ids_a_read_skipped_in_flight() {
        let mut pipe = Pipeline::default();
        assert_eq!((pipe.after(), pipe.floor()), (i64::MIN, i64::MIN));
        // A head read: nothing below its lowest id is a hole of its own.
        pipe.push(&[10, 11, 14, 15], oneshot::channel().1);
        // The next read starts past 15; 16 and 17 were not visible then.
        pipe.push(&[18, 19], oneshot::channel().1);
        assert_eq!((pipe.after(), pipe.floor()), (19, 10));
        assert_eq!(pipe.holes(), (vec![12, 16], vec![13, 17]));
    }
}
