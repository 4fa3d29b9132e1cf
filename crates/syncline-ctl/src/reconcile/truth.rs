//! Sources of truth: what each entity's state should be, streamed in bounded batches.
//!
//! * [`PgQuery`]: a user-given query per entity type returning `entity_id`, `version` and
//!   optionally `document`, read through a server-side cursor (`DECLARE ... CURSOR` and
//!   `FETCH n`) inside one `REPEATABLE READ` read-only transaction, so the whole walk sees
//!   one snapshot and the client never holds more than one batch of rows. For reconcile
//!   the server sorts the rows by id (`ORDER BY entity_id COLLATE "C"`, byte order).
//! * [`TopicTruth`]: the latest event per key of a topic (compacted, or one that still
//!   holds its whole history), read from the beginning to the end offsets and sorted by
//!   id on disk ([`super::spill`]).
//!
//! Reconcile merges the truth with the stores in id order, so neither side is ever held
//! whole in memory.
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

use super::spill::{Cursor, Payload, Sorter};
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

/// A [`TruthRow`] of a database query, borrowed from the fetched row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowRef<'a> {
    /// The entity id.
    pub entity_id: &'a str,
    /// Its version.
    pub version: i64,
    /// The JSON document (`None`: NULL, or the query has no `document` column).
    pub document: Option<&'a str>,
}

impl RowRef<'_> {
    /// The owned row.
    pub fn into_owned(self) -> TruthRow {
        TruthRow {
            entity_id: self.entity_id.to_owned(),
            version: self.version,
            document: self.document.map(str::to_owned),
            deleted: false,
        }
    }
}

/// Rows fetched per `FETCH` from the server-side cursor.
pub const DEFAULT_FETCH_ROWS: usize = 5_000;

const CURSOR: &str = "syncline_truth";

/// A user's query over PostgreSQL, checked and wrapped.
pub struct PgQuery {
    cfg: PgConfig,
    client: Client,
    wrapped: String,
    /// `wrapped` without the document: what reconcile's walk reads.
    wrapped_versions: String,
    has_document: bool,
    fetch_rows: usize,
    open: bool,
    ordered: bool,
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
        let wrapped_versions =
            format!("SELECT q.entity_id::text, q.version::bigint, NULL::text FROM ({query}) AS q");
        Ok(PgQuery {
            cfg,
            client,
            wrapped,
            wrapped_versions,
            has_document,
            fetch_rows: fetch_rows.max(1),
            open: false,
            ordered: false,
        })
    }

    /// Reconcile's walk: the server returns the rows in ascending entity id byte order
    /// (`COLLATE "C"`, the order of Rust strings), as the merge needs, and without their
    /// documents. The walk compares versions only; a repair takes its document from
    /// [`PgQuery::lookup`], which still reads it. Leaving the documents out spares the
    /// server converting and sorting them (a sort of ids and versions fits in memory
    /// where one carrying every document spills to disk) and the client receiving them.
    pub fn in_id_order(mut self) -> PgQuery {
        self.ordered = true;
        self
    }

    /// Does the query return documents?
    pub fn has_document(&self) -> bool {
        self.has_document
    }

    /// One fetched row's columns, borrowed from the row (NULL id or version: an error).
    fn row_ref<'r>(&self, r: &'r tokio_postgres::Row) -> anyhow::Result<RowRef<'r>> {
        let id: Option<&str> = r.try_get(0).map_err(|e| self.cfg.error(&e))?;
        let id = id.ok_or_else(|| anyhow!("a row has a NULL entity_id"))?;
        let version: Option<i64> = r.try_get(1).map_err(|e| self.cfg.error(&e))?;
        let version = version.ok_or_else(|| anyhow!("row entity_id={id:?} has a NULL version"))?;
        let document: Option<&str> = r.try_get(2).map_err(|e| self.cfg.error(&e))?;
        Ok(RowRef {
            entity_id: id,
            version,
            document,
        })
    }

    fn convert(&self, rows: Vec<tokio_postgres::Row>) -> anyhow::Result<Vec<TruthRow>> {
        rows.iter()
            .map(|r| self.row_ref(r).map(RowRef::into_owned))
            .collect()
    }

    /// The next batch of rows (empty: the end). The first call opens the cursor.
    pub async fn next_batch(&mut self) -> anyhow::Result<Vec<TruthRow>> {
        let rows = self.fetch().await?;
        self.convert(rows)
    }

    /// [`PgQuery::next_batch`] without owned copies: each row is handed to `each` borrowed
    /// from the fetched data, in order. Returns how many rows there were (0: the end).
    pub async fn next_batch_with(
        &mut self,
        mut each: impl FnMut(RowRef<'_>),
    ) -> anyhow::Result<usize> {
        let rows = self.fetch().await?;
        for r in &rows {
            each(self.row_ref(r)?);
        }
        Ok(rows.len())
    }

    /// The next `FETCH` (no rows: the end, and the transaction is closed). The first call
    /// opens the cursor.
    async fn fetch(&mut self) -> anyhow::Result<Vec<tokio_postgres::Row>> {
        if !self.open {
            // One snapshot for the whole walk; read-only so a mistaken query cannot write.
            let order = if self.ordered {
                " ORDER BY q.entity_id::text COLLATE \"C\""
            } else {
                ""
            };
            let select = if self.ordered {
                &self.wrapped_versions
            } else {
                &self.wrapped
            };
            let sql = format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
                 DECLARE {CURSOR} NO SCROLL CURSOR FOR {select}{order}"
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
        }
        Ok(rows)
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

/// How close to deletion by `retention.ms` a record may be before the topic counts as
/// losing its history (the default of `rebuild`'s `--retention-margin`).
const RETENTION_MARGIN: Duration = Duration::from_secs(3600);

/// One record of the entity type, as spilled for sorting.
struct TopicRecord {
    version: i64,
    deleted: bool,
    document: Option<String>,
}

impl Payload for TopicRecord {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.version.to_le_bytes());
        match (&self.document, self.deleted) {
            (_, true) => out.push(2),
            (None, false) => out.push(0),
            (Some(d), false) => {
                out.push(1);
                out.extend_from_slice(d.as_bytes());
            }
        }
    }
    fn decode(buf: &[u8]) -> Option<Self> {
        let version = i64::from_le_bytes(buf.get(..8)?.try_into().ok()?);
        let (deleted, document) = match buf.get(8)? {
            0 => (false, None),
            1 => (false, Some(String::from_utf8(buf.get(9..)?.to_vec()).ok()?)),
            2 => (true, None),
            _ => return None,
        };
        Some(TopicRecord {
            version,
            deleted,
            document,
        })
    }
}

fn row(entity_id: String, r: TopicRecord) -> TruthRow {
    TruthRow {
        entity_id,
        version: r.version,
        document: if r.deleted { None } else { r.document },
        deleted: r.deleted,
    }
}

/// The latest event per key of one entity type in a topic, in entity id order.
///
/// The topic is read once from its beginning to the end offsets of the start; every
/// record of the type goes through a [`Sorter`] (bounded memory, spilled to temporary
/// files), and the walk takes the highest version of each id from the sorted stream. A
/// topic that no longer holds its whole history is refused, as `rebuild` refuses it: its
/// lost entities would be reported as extra, and `--repair` would delete them.
pub struct TopicTruth {
    conn: Connection,
    topic: String,
    entity_type: String,
    sorted: Option<Cursor<TopicRecord>>,
    /// Next offset to read per partition (the end offsets of the walk).
    positions: Vec<i64>,
    /// Records that could not be decoded (counted, reported, not truth).
    pub undecodable: u64,
}

impl TopicTruth {
    /// Check the topic's history, then read it from its beginning to its current end
    /// offsets, sorting by entity id in at most `chunk` records of memory.
    pub async fn read(
        conn: &Connection,
        topic: &str,
        entity_type: &str,
        chunk: usize,
    ) -> anyhow::Result<TopicTruth> {
        let ends = crate::end_offsets(conn, topic).await?;
        let needed = vec![0; ends.len()];
        let verdict =
            crate::rebuild::history::check(conn, topic, &ends, &needed, None, RETENTION_MARGIN)
                .await?;
        if !verdict.problems.is_empty() {
            bail!(
                "refusing --truth topic: {topic} no longer holds its whole history ({}), so \
                 entities whose events are gone would be reported as extra and --repair would \
                 delete them. Use --truth postgres (the system of record), or a compacted topic",
                verdict.problems.join("; ")
            );
        }
        let (c, t) = (conn.clone(), topic.to_owned());
        let prefix = format!("{entity_type}:");
        let starts = vec![0; ends.len()];
        let ends2 = ends.clone();
        let (sorter, undecodable) = tokio::task::spawn_blocking(move || {
            let mut sorter = Sorter::new(chunk);
            let mut failed: Option<std::io::Error> = None;
            let undecodable = read_range(&c, &t, &prefix, &starts, &ends2, &mut |ev| {
                if failed.is_some() {
                    return;
                }
                let deleted = ev.op == Op::Delete;
                let rec = TopicRecord {
                    version: ev.version,
                    deleted,
                    document: if deleted { None } else { ev.document },
                };
                if let Err(e) = sorter.push(ev.entity_id, rec) {
                    failed = Some(e);
                }
            })?;
            if let Some(e) = failed {
                return Err(anyhow!("sorting the topic's records on disk: {e}"));
            }
            Ok::<_, anyhow::Error>((sorter, undecodable))
        })
        .await
        .map_err(|e| anyhow!("topic reader task: {e}"))??;
        let sorted = tokio::task::spawn_blocking(move || sorter.finish().and_then(Cursor::new))
            .await
            .map_err(|e| anyhow!("topic sort task: {e}"))?
            .context("sorting the topic's records on disk")?;
        Ok(TopicTruth {
            conn: conn.clone(),
            topic: topic.to_owned(),
            entity_type: entity_type.to_owned(),
            sorted: Some(sorted),
            positions: ends,
            undecodable,
        })
    }

    /// The next batch of at most `n` entities in id order (empty: the end).
    pub fn next_batch(&mut self, n: usize) -> anyhow::Result<Vec<TruthRow>> {
        let Some(cur) = self.sorted.as_mut() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let Some((id, first)) = cur.next_below(None)? else {
                self.sorted = None;
                break;
            };
            // Every record of this id: keep the highest version (the last of equal ones).
            let best =
                match cur.take_equal_with(&id, |later, kept| later.version >= kept.version)? {
                    Some(later) if later.version >= first.version => later,
                    _ => first,
                };
            out.push(row(id, best));
        }
        Ok(out)
    }

    /// The current state of the entities in `walked` (what the walk saw of each, absent
    /// when the topic had nothing): the records appended since the walk are read and the
    /// newer ones replace what the walk saw.
    pub async fn lookup(
        &mut self,
        ids: &[String],
        walked: &HashMap<String, TruthRow>,
    ) -> anyhow::Result<HashMap<String, TruthRow>> {
        let mut now: HashMap<String, TruthRow> = ids
            .iter()
            .filter_map(|id| walked.get(id).map(|r| (id.clone(), r.clone())))
            .collect();
        let ends = crate::end_offsets(&self.conn, &self.topic).await?;
        let mut starts = self.positions.clone();
        starts.resize(ends.len(), 0);
        if starts.iter().zip(&ends).all(|(s, e)| s >= e) {
            return Ok(now);
        }
        let wanted: std::collections::HashSet<String> = ids.iter().cloned().collect();
        let (c, t) = (self.conn.clone(), self.topic.clone());
        let prefix = format!("{}:", self.entity_type);
        let ends2 = ends.clone();
        let (now, undecodable) = tokio::task::spawn_blocking(move || {
            let undecodable = read_range(&c, &t, &prefix, &starts, &ends2, &mut |ev| {
                if !wanted.contains(&ev.entity_id) {
                    return;
                }
                if now
                    .get(&ev.entity_id)
                    .is_some_and(|cur| ev.version < cur.version)
                {
                    return;
                }
                let deleted = ev.op == Op::Delete;
                let id = ev.entity_id.clone();
                let r = row(
                    ev.entity_id,
                    TopicRecord {
                        version: ev.version,
                        deleted,
                        document: ev.document,
                    },
                );
                now.insert(id, r);
            })?;
            Ok::<_, anyhow::Error>((now, undecodable))
        })
        .await
        .map_err(|e| anyhow!("topic reader task: {e}"))??;
        self.undecodable += undecodable;
        self.positions = ends;
        Ok(now)
    }
}

/// Read `[starts, ends)` of every partition of `topic`, handing each decoded event whose
/// key starts with `key_prefix` to `each`; returns how many such records did not decode.
fn read_range(
    conn: &Connection,
    topic: &str,
    key_prefix: &str,
    starts: &[i64],
    ends: &[i64],
    each: &mut dyn FnMut(syncline_event::ChangeEvent),
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
                Some(Ok(ev)) => each(ev),
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
    /// The next batch in entity id order (empty: the end).
    pub async fn next_batch(&mut self) -> anyhow::Result<Vec<TruthRow>> {
        match self {
            Truth::Pg(q) => q.next_batch().await,
            Truth::Topic(t) => t.next_batch(DEFAULT_FETCH_ROWS),
        }
    }

    /// The current state of these entities; `walked` is what the walk saw of them (the
    /// topic reads only what was appended since).
    pub async fn lookup(
        &mut self,
        ids: &[String],
        walked: &HashMap<String, TruthRow>,
    ) -> anyhow::Result<HashMap<String, TruthRow>> {
        match self {
            Truth::Pg(q) => q.lookup(ids).await,
            Truth::Topic(t) => t.lookup(ids, walked).await,
        }
    }

    /// Does a re-check need the rows the walk saw (the topic does, a database does not)?
    pub fn needs_walked_rows(&self) -> bool {
        matches!(self, Truth::Topic(_))
    }

    /// Does the truth carry documents (needed to publish UPSERTs)?
    pub fn has_documents(&self) -> bool {
        match self {
            Truth::Pg(q) => q.has_document(),
            Truth::Topic(_) => true,
        }
    }
}
