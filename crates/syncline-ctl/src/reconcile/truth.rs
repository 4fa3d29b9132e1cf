//! Sources of truth: what each entity's state should be, streamed in bounded batches.
//!
//! * [`PgQuery`]: a user-given query per entity type returning `entity_id`, `version` and
//!   optionally `document`, read through a server-side cursor (`DECLARE ... CURSOR` and
//!   `FETCH n`) inside one `REPEATABLE READ` read-only transaction, so the whole walk sees
//!   one snapshot and the client never holds more than one batch of rows.
//! * [`TopicTruth`]: the latest event per key of a topic (compacted, or one that still
//!   holds its whole history), read from the beginning to the end offsets.
//!
//! Both are used by `reconcile` (through [`Truth`]); `snapshot` uses [`PgQuery`] alone.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use syncline_event::{Limits, Op};
use syncline_kafka::Connection;
use syncline_pg::PgConfig;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

/// One entity's state in the truth.
#[derive(Debug, Clone, PartialEq)]
pub struct TruthRow {
    /// The entity id.
    pub entity_id: String,
    /// Its version in the one version space shared with live events.
    pub version: i64,
    /// The JSON document (`None` when the query has no `document` column, or deleted).
    pub document: Option<String>,
    /// Deleted in the truth (only a topic knows deletions; a database row that is absent
    /// is simply not returned).
    pub deleted: bool,
}

/// Rows fetched per `FETCH` from the server-side cursor.
pub const DEFAULT_FETCH_ROWS: usize = 5_000;

const CURSOR: &str = "syncline_truth";

/// A user's query over PostgreSQL, checked and wrapped.
pub struct PgQuery {
    cfg: PgConfig,
    client: Client,
    wrapped: String,
    has_document: bool,
    fetch_rows: usize,
    open: bool,
}

fn integer(t: &Type) -> bool {
    *t == Type::INT2 || *t == Type::INT4 || *t == Type::INT8
}

fn texty(t: &Type) -> bool {
    *t == Type::TEXT || *t == Type::VARCHAR || *t == Type::BPCHAR || *t == Type::NAME
}

impl PgQuery {
    /// Connect and check that `query` returns the columns needed, with usable types:
    /// `entity_id` (text, varchar, an integer type or uuid), `version` (smallint, integer
    /// or bigint) and, when `need_document`, `document` (json, jsonb or text). Nothing is
    /// read yet.
    pub async fn open(
        url: &str,
        query: &str,
        need_document: bool,
        fetch_rows: usize,
    ) -> anyhow::Result<PgQuery> {
        let cfg = PgConfig::parse(url).context("--postgres-url")?;
        let conn = cfg.connect().await?;
        let client = conn.client;
        let query = query.trim().trim_end_matches(';');
        if query.is_empty() {
            bail!("--query is empty");
        }
        let stmt = client.prepare(query).await.map_err(|e| {
            anyhow!(
                "the query is not valid on {}: {}",
                cfg.redacted(),
                cfg.error(&e)
            )
        })?;
        let cols: Vec<(String, Type)> = stmt
            .columns()
            .iter()
            .map(|c| (c.name().to_owned(), c.type_().clone()))
            .collect();
        let names = cols
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let find = |name: &str| cols.iter().find(|(n, _)| n == name).map(|(_, t)| t);
        let id_type = find("entity_id").ok_or_else(|| {
            anyhow!("the query must return a column named `entity_id` (it returns: {names})")
        })?;
        if !(texty(id_type) || integer(id_type) || *id_type == Type::UUID) {
            bail!(
                "column `entity_id` has type {id_type}; expected text, varchar, an integer type or uuid"
            );
        }
        let v_type = find("version").ok_or_else(|| {
            anyhow!("the query must return a column named `version` (it returns: {names})")
        })?;
        if !integer(v_type) {
            bail!(
                "column `version` has type {v_type}; it must be an integer type (smallint, integer \
                 or bigint) from the same version space as the live events (see docs/reconcile.md)"
            );
        }
        let has_document = match find("document") {
            Some(t) if *t == Type::JSON || *t == Type::JSONB || texty(t) => true,
            Some(t) => bail!("column `document` has type {t}; expected json, jsonb or text"),
            None if need_document => bail!(
                "the query must return a column named `document` (json, jsonb or text) to publish \
                 events from it (it returns: {names})"
            ),
            None => false,
        };
        let doc = if has_document {
            "q.document::text"
        } else {
            "NULL::text"
        };
        let wrapped =
            format!("SELECT q.entity_id::text, q.version::bigint, {doc} FROM ({query}) AS q");
        Ok(PgQuery {
            cfg,
            client,
            wrapped,
            has_document,
            fetch_rows: fetch_rows.max(1),
            open: false,
        })
    }

    /// Does the query return documents?
    pub fn has_document(&self) -> bool {
        self.has_document
    }

    fn convert(&self, rows: Vec<tokio_postgres::Row>) -> anyhow::Result<Vec<TruthRow>> {
        rows.into_iter()
            .map(|r| {
                let id: Option<String> = r.try_get(0).map_err(|e| self.cfg.error(&e))?;
                let id = id.ok_or_else(|| anyhow!("a row has a NULL entity_id"))?;
                let version: Option<i64> = r.try_get(1).map_err(|e| self.cfg.error(&e))?;
                let version =
                    version.ok_or_else(|| anyhow!("row entity_id={id:?} has a NULL version"))?;
                let document: Option<String> = r.try_get(2).map_err(|e| self.cfg.error(&e))?;
                Ok(TruthRow {
                    entity_id: id,
                    version,
                    document,
                    deleted: false,
                })
            })
            .collect()
    }

    /// The next batch of rows (empty: the end). The first call opens the cursor.
    pub async fn next_batch(&mut self) -> anyhow::Result<Vec<TruthRow>> {
        if !self.open {
            // One snapshot for the whole walk; read-only so a mistaken query cannot write.
            let sql = format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
                 DECLARE {CURSOR} NO SCROLL CURSOR FOR {}",
                self.wrapped
            );
            self.client
                .batch_execute(&sql)
                .await
                .map_err(|e| anyhow!("running the query: {}", self.cfg.error(&e)))?;
            self.open = true;
        }
        let rows = self
            .client
            .query(&format!("FETCH {} FROM {CURSOR}", self.fetch_rows), &[])
            .await
            .map_err(|e| anyhow!("reading the query's rows: {}", self.cfg.error(&e)))?;
        if rows.is_empty() {
            self.client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| anyhow!("{}", self.cfg.error(&e)))?;
            self.open = false;
            return Ok(Vec::new());
        }
        self.convert(rows)
    }

    /// The current rows of these entities (a fresh statement, outside the walk's snapshot).
    pub async fn lookup(&self, ids: &[String]) -> anyhow::Result<HashMap<String, TruthRow>> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(10_000) {
            let sql = format!("{} WHERE q.entity_id::text = ANY($1)", self.wrapped);
            let rows = self
                .client
                .query(&sql, &[&chunk])
                .await
                .map_err(|e| anyhow!("looking rows up: {}", self.cfg.error(&e)))?;
            for r in self.convert(rows)? {
                out.insert(r.entity_id.clone(), r);
            }
        }
        Ok(out)
    }
}

/// The latest event per key of one entity type in a topic.
pub struct TopicTruth {
    conn: Connection,
    topic: String,
    entity_type: String,
    latest: HashMap<String, TruthRow>,
    /// Next offset to read per partition.
    positions: Vec<i64>,
    /// Records that could not be decoded (counted, reported, not truth).
    pub undecodable: u64,
    order: Option<Vec<String>>,
}

impl TopicTruth {
    /// Read `topic` from its beginning to its current end offsets.
    pub async fn read(
        conn: &Connection,
        topic: &str,
        entity_type: &str,
    ) -> anyhow::Result<TopicTruth> {
        let mut t = TopicTruth {
            conn: conn.clone(),
            topic: topic.to_owned(),
            entity_type: entity_type.to_owned(),
            latest: HashMap::new(),
            positions: Vec::new(),
            undecodable: 0,
            order: None,
        };
        t.catch_up().await?;
        Ok(t)
    }

    /// Read what was appended since the last read (up to the end offsets now).
    pub async fn catch_up(&mut self) -> anyhow::Result<()> {
        let ends = crate::end_offsets(&self.conn, &self.topic).await?;
        self.positions.resize(ends.len(), 0);
        let starts = self.positions.clone();
        if starts.iter().zip(&ends).all(|(s, e)| s >= e) {
            return Ok(());
        }
        let conn = self.conn.clone();
        let topic = self.topic.clone();
        let prefix = format!("{}:", self.entity_type);
        let mut latest = std::mem::take(&mut self.latest);
        let ends2 = ends.clone();
        let (latest, undecodable) = tokio::task::spawn_blocking(move || {
            read_range(&conn, &topic, &prefix, &starts, &ends2, &mut latest).map(|u| (latest, u))
        })
        .await
        .map_err(|e| anyhow!("topic reader task: {e}"))??;
        self.latest = latest;
        self.undecodable += undecodable;
        self.positions = ends;
        Ok(())
    }

    /// The next batch of entities (empty: the end).
    pub fn next_batch(&mut self, n: usize) -> Vec<TruthRow> {
        let order = self.order.get_or_insert_with(|| {
            let mut ids: Vec<String> = self.latest.keys().cloned().collect();
            // Reversed so that popping from the end walks in ascending order.
            ids.sort_unstable_by(|a, b| b.cmp(a));
            ids
        });
        let mut out = Vec::with_capacity(n.min(order.len()));
        while out.len() < n {
            let Some(id) = order.pop() else { break };
            if let Some(r) = self.latest.get(&id) {
                out.push(r.clone());
            }
        }
        out
    }

    /// The current state of these entities (catching up with the topic first).
    pub async fn lookup(&mut self, ids: &[String]) -> anyhow::Result<HashMap<String, TruthRow>> {
        self.catch_up().await?;
        Ok(ids
            .iter()
            .filter_map(|id| self.latest.get(id).map(|r| (id.clone(), r.clone())))
            .collect())
    }
}

fn read_range(
    conn: &Connection,
    topic: &str,
    key_prefix: &str,
    starts: &[i64],
    ends: &[i64],
    latest: &mut HashMap<String, TruthRow>,
) -> anyhow::Result<u64> {
    let mut cfg = conn.client_config();
    cfg.set("group.id", "syncline-ctl-reconcile")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    let c: BaseConsumer = cfg
        .create()
        .with_context(|| format!("cannot create a consumer for {}", conn.brokers))?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0usize;
    for (p, (s, e)) in starts.iter().zip(ends).enumerate() {
        if s < e {
            let p = i32::try_from(p).context("partition number")?;
            tpl.add_partition_offset(topic, p, Offset::Offset(*s))
                .context("assigning partitions")?;
            remaining += 1;
        }
    }
    c.assign(&tpl).context("assigning partitions")?;
    let limits = Limits::default();
    let mut undecodable = 0u64;
    let mut done = vec![false; ends.len()];
    let mut idle_since = std::time::Instant::now();
    while remaining > 0 {
        let Some(m) = c.poll(Duration::from_millis(500)) else {
            if idle_since.elapsed() > Duration::from_secs(60) {
                bail!("topic {topic}: no records for 60 s before reaching the end offsets");
            }
            continue;
        };
        idle_since = std::time::Instant::now();
        let m = m.with_context(|| format!("reading topic {topic}"))?;
        let p = usize::try_from(m.partition()).unwrap_or(0);
        let end = ends.get(p).copied().unwrap_or(0);
        if m.offset() >= end {
            if !done.get(p).copied().unwrap_or(true) {
                if let Some(d) = done.get_mut(p) {
                    *d = true;
                }
                remaining -= 1;
            }
            continue;
        }
        let for_type = m
            .key()
            .is_some_and(|k| k.starts_with(key_prefix.as_bytes()));
        if for_type {
            match m.payload().map(|b| syncline_event::decode(b, &limits)) {
                Some(Ok(ev)) => {
                    let newer = latest
                        .get(&ev.entity_id)
                        .is_none_or(|cur| ev.version >= cur.version);
                    if newer {
                        let deleted = ev.op == Op::Delete;
                        latest.insert(
                            ev.entity_id.clone(),
                            TruthRow {
                                entity_id: ev.entity_id,
                                version: ev.version,
                                document: if deleted { None } else { ev.document },
                                deleted,
                            },
                        );
                    }
                }
                // A tombstone record of a compacted topic (no value) or a poison record:
                // neither says anything about the entity's state.
                Some(Err(_)) => undecodable += 1,
                None => {}
            }
        }
        if m.offset() + 1 >= end && !done.get(p).copied().unwrap_or(true) {
            if let Some(d) = done.get_mut(p) {
                *d = true;
            }
            remaining -= 1;
        }
    }
    Ok(undecodable)
}

/// Where the truth comes from.
// One value per run: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Truth {
    /// A PostgreSQL query.
    Pg(PgQuery),
    /// The latest record per key of a topic.
    Topic(Box<TopicTruth>),
}

impl Truth {
    /// The next batch (empty: the end).
    pub async fn next_batch(&mut self) -> anyhow::Result<Vec<TruthRow>> {
        match self {
            Truth::Pg(q) => q.next_batch().await,
            Truth::Topic(t) => Ok(t.next_batch(DEFAULT_FETCH_ROWS)),
        }
    }

    /// The current state of these entities.
    pub async fn lookup(&mut self, ids: &[String]) -> anyhow::Result<HashMap<String, TruthRow>> {
        match self {
            Truth::Pg(q) => q.lookup(ids).await,
            Truth::Topic(t) => t.lookup(ids).await,
        }
    }

    /// Does the truth carry documents (needed to publish UPSERTs)?
    pub fn has_documents(&self) -> bool {
        match self {
            Truth::Pg(q) => q.has_document(),
            Truth::Topic(_) => true,
        }
    }
}
