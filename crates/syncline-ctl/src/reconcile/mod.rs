//! `syncline-ctl reconcile`: compare Elasticsearch and Redis with the system of record,
//! report drift, and optionally repair it through the topic.
//!
//! One run, for one entity type:
//!
//! 1. the stores are read first, side by side: the concrete index behind the alias,
//!    walked with a point in time (tombstones included), and the Redis entities holding a
//!    cached value (`SCAN` and pipelined `MGET`s); both walks are sorted by entity id on
//!    disk ([`spill`]);
//! 2. the truth is streamed in batches in entity id order (PostgreSQL cursor sorted by the
//!    server, or the topic's latest record per key sorted on disk) and merged with the two
//!    sorted walks; per batch the Redis guards are read with pipelined `MGET`s and each
//!    entity is classified per store: `missing`, `stale` (lower version), `extra` (live in the store,
//!    absent or deleted in the truth), `tombstone_mismatch` (a tombstone where the truth
//!    is live);
//! 3. every candidate is checked again after `--grace`: the truth and the stores are
//!    read anew for it, and it is drift only if the truth still says what it said during
//!    the walk and the store still disagrees. A change of the truth in between means the
//!    entity is being written right now (in flight), which is not drift;
//! 4. `--repair` publishes corrective events through the topic with the normal producer
//!    (never writing a store directly), at a version that wins: see `docs/reconcile.md`.
//!
//! Memory: two truth batches (the one being merged and the next, fetched meanwhile),
//! one sort chunk per walk (`--sort-chunk` records) and the candidates, i.e.
//! proportional to the drift found, not to the number of entities.
//!
//! Time: the walks wait on servers, not on this process, so waits overlap: the two store
//! walks run side by side, and the truth's next batch is fetched while the current one's
//! Redis guards are read.
//!
//! Reading the stores before the truth matters: anything the pipeline delivers during
//! the walk makes a store newer than what was read, never older than the truth read
//! later, so a late event shows up as a candidate that the re-check clears.

pub mod monitor;
pub mod spill;
pub mod stores;
pub mod truth;

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use serde::Serialize;
use syncline_cache::KeyLayout;
use syncline_event::{ChangeEvent, Op};
use syncline_kafka::Connection;
use syncline_producer::Producer;

use spill::{Cursor, Sorter};
use stores::{EsDoc, EsStore, RedisEntry, RedisStore};
use truth::{PgQuery, TopicTruth, Truth, TruthRow};

/// Where the truth comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TruthKind {
    /// A PostgreSQL query (`--postgres-url`, `--query`).
    Postgres,
    /// The latest record per key of `--topic`.
    Topic,
}

/// `reconcile` arguments.
#[derive(Debug, Clone, Args)]
pub struct ReconcileArgs {
    /// The system of record.
    #[arg(long, value_enum)]
    pub truth: TruthKind,
    /// The entity type to reconcile.
    #[arg(long)]
    pub entity_type: String,
    /// PostgreSQL connection string (URL or conninfo), for `--truth postgres`.
    #[arg(long, env = "SYNCLINE_POSTGRES_URL", hide_env_values = true)]
    pub postgres_url: Option<String>,
    /// Query returning `entity_id`, `version` and (for `--repair`) `document` of every
    /// live entity of this type.
    #[arg(long)]
    pub query: Option<String>,
    /// The change topic: the truth for `--truth topic`, where `--repair` publishes.
    #[arg(long, default_value = "changes")]
    pub topic: String,
    /// Elasticsearch to check (omit to skip Elasticsearch).
    #[arg(long, env = "SYNCLINE_ES_URL", hide_env_values = true)]
    pub es_url: Option<String>,
    /// The indexer's alias prefix: the alias is `<prefix><entity_type>`.
    #[arg(long, env = "SYNCLINE_ES_INDEX_PREFIX", default_value = "")]
    pub es_index_prefix: String,
    /// Elasticsearch API key (instead of `user:password@` in the URL).
    #[arg(long, env = "SYNCLINE_ES_API_KEY", hide_env_values = true)]
    pub es_api_key: Option<String>,
    /// Redis to check (omit to skip Redis).
    #[arg(long, env = "SYNCLINE_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// The invalidator's key prefix.
    #[arg(long, env = "SYNCLINE_REDIS_KEY_PREFIX", default_value = syncline_cache::keys::DEFAULT_PREFIX)]
    pub redis_key_prefix: String,
    /// How long to wait before re-checking candidates (events still in flight land).
    #[arg(long, default_value = "5s", value_parser = crate::humantime_duration)]
    pub grace: Duration,
    /// Publish corrective events for the drift found.
    #[arg(long)]
    pub repair: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Samples listed per store and kind.
    #[arg(long, default_value_t = 10)]
    pub samples: usize,
    /// Rows per cursor fetch from PostgreSQL.
    #[arg(long, default_value_t = truth::DEFAULT_FETCH_ROWS)]
    pub fetch_rows: usize,
    /// Records held in memory per sorted run when the stores' walks (and a topic truth)
    /// are sorted by id on disk; bounds the run's memory.
    #[arg(long, default_value_t = spill::DEFAULT_CHUNK, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub sort_chunk: usize,
    /// Run again at this interval, serving metrics (continuous mode).
    #[arg(long, value_parser = crate::humantime_duration)]
    pub every: Option<Duration>,
    /// Address for `/metrics` and `/healthz` in continuous mode.
    #[arg(long, default_value = "127.0.0.1:9466")]
    pub metrics_addr: std::net::SocketAddr,
    /// Consumer groups whose lag is exported beside the drift in continuous mode.
    #[arg(long = "lag-group")]
    pub lag_groups: Vec<String>,
}

/// What a store disagrees with the truth about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Live in the truth, absent from the store.
    Missing,
    /// Live in the truth, the store holds a lower version.
    Stale,
    /// Live in the store, absent or deleted in the truth.
    Extra,
    /// A tombstone in the store where the truth is live.
    TombstoneMismatch,
}

impl Kind {
    /// The label used in reports and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::Stale => "stale",
            Kind::Extra => "extra",
            Kind::TombstoneMismatch => "tombstone_mismatch",
        }
    }
    /// Every kind, for zero-valued gauges.
    pub const ALL: [Kind; 4] = [
        Kind::Missing,
        Kind::Stale,
        Kind::Extra,
        Kind::TombstoneMismatch,
    ];
}

/// A store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    /// Elasticsearch.
    Es,
    /// Redis.
    Redis,
}

impl Store {
    /// The label used in reports and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Store::Es => "es",
            Store::Redis => "redis",
        }
    }
}

fn live(t: Option<&TruthRow>) -> Option<&TruthRow> {
    t.filter(|t| !t.deleted)
}

/// Classify one entity in Elasticsearch. A store ahead of the truth is not drift: it is
/// what a change committed after the truth was read looks like.
pub fn classify_es(truth: Option<&TruthRow>, doc: Option<EsDoc>) -> Option<Kind> {
    match (live(truth), doc) {
        (Some(_), None) => Some(Kind::Missing),
        (Some(_), Some(d)) if d.tombstone => Some(Kind::TombstoneMismatch),
        (Some(t), Some(d)) if d.version < t.version => Some(Kind::Stale),
        (Some(_), Some(_)) => None,
        (None, Some(d)) if !d.tombstone => Some(Kind::Extra),
        (None, _) => None,
    }
}

/// Classify one entity in Redis. The highest known version is the guard, else the cached
/// value's (as the invalidator's scripts read it). A guard without a value for an entity
/// the truth lacks is what a DELETE leaves behind, not drift; Redis records no tombstone,
/// so it has no tombstone mismatch.
pub fn classify_redis(truth: Option<&TruthRow>, e: RedisEntry) -> Option<Kind> {
    match live(truth) {
        Some(t) => match e.guard.or(e.cached) {
            None => Some(Kind::Missing),
            Some(v) if v < t.version => Some(Kind::Stale),
            Some(_) => None,
        },
        None => e.cached.map(|_| Kind::Extra),
    }
}

/// One listed example.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// The entity.
    pub entity_id: String,
    /// Its version in the truth (`None`: absent; deleted ones say so in `truth_deleted`).
    pub truth_version: Option<i64>,
    /// Deleted in the truth.
    pub truth_deleted: bool,
    /// The version the store holds.
    pub store_version: Option<i64>,
}

/// Counts and samples of one kind in one store.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KindReport {
    /// Entities of this kind.
    pub count: u64,
    /// The first few.
    pub samples: Vec<Sample>,
}

/// One store's findings.
#[derive(Debug, Clone, Serialize)]
pub struct StoreReport {
    /// Which store.
    pub store: Store,
    /// What was read from it: the concrete index, or the key prefix.
    pub location: String,
    /// Documents walked (ES) or cached values found (Redis).
    pub walked: u64,
    /// Per kind.
    pub drift: BTreeMap<Kind, KindReport>,
}

/// What `--repair` published.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairReport {
    /// UPSERTs published.
    pub upserts: u64,
    /// DELETEs published.
    pub deletes: u64,
    /// Drifted entities that could not be repaired, with the reason.
    pub skipped: Vec<String>,
}

/// A run's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The entity type.
    pub entity_type: String,
    /// The truth.
    pub truth: TruthKind,
    /// Entities in the truth (deleted ones of a topic included).
    pub truth_entities: u64,
    /// Candidates whose truth changed between the walk and the re-check.
    pub in_flight: u64,
    /// Candidates the re-check found settled (the store caught up).
    pub settled: u64,
    /// Entities with drift in at least one store.
    pub drifted_entities: u64,
    /// Per store.
    pub stores: Vec<StoreReport>,
    /// Repairs, with `--repair`.
    pub repair: Option<RepairReport>,
    /// Seconds the run took.
    pub duration_seconds: f64,
    /// Where those seconds went.
    pub phase_seconds: PhaseSeconds,
}

/// Seconds of each phase of a run. The two store walks run side by side, so the run
/// took about the longer of them plus the merge and the re-check.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PhaseSeconds {
    /// Walking Elasticsearch (refresh and point-in-time pages) into its sorter.
    pub es_walk: f64,
    /// Walking Redis (`SCAN` and value reads) into its sorter.
    pub redis_walk: f64,
    /// Sorting the walks, streaming the truth and merging (Redis guard reads included).
    pub truth_merge: f64,
    /// The grace period and the re-check of the candidates.
    pub recheck: f64,
}

/// A drifted entity: its id, the truth now, and per store the kind and the store's version.
type Drifted = (String, Option<TruthRow>, Vec<(Store, Kind, Option<i64>)>);

/// A candidate found by the walk: what the truth said then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    version: Option<i64>,
    deleted: bool,
}

fn seen(t: Option<&TruthRow>) -> Seen {
    Seen {
        version: t.map(|t| t.version),
        deleted: t.is_some_and(|t| t.deleted),
    }
}

/// The stores a run talks to.
struct Stores {
    es: Option<(EsStore, String)>,
    redis: Option<RedisStore>,
    es_location: String,
}

async fn open_truth(conn: &Connection, a: &ReconcileArgs) -> anyhow::Result<Truth> {
    match a.truth {
        TruthKind::Postgres => {
            let (Some(url), Some(query)) = (&a.postgres_url, &a.query) else {
                bail!("--truth postgres needs --postgres-url and --query");
            };
            Ok(Truth::Pg(
                PgQuery::open(url, query, a.repair, a.fetch_rows)
                    .await?
                    .in_id_order(),
            ))
        }
        TruthKind::Topic => Ok(Truth::Topic(Box::new(
            TopicTruth::read(conn, &a.topic, &a.entity_type, a.sort_chunk).await?,
        ))),
    }
}

fn check_args(a: &ReconcileArgs) -> anyhow::Result<()> {
    if a.es_url.is_none() && a.redis_url.is_none() {
        bail!("nothing to reconcile: give --es-url and/or --redis-url");
    }
    if a.entity_type.is_empty()
        || !a
            .entity_type
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        bail!(
            "--entity-type {:?} is not a valid entity type ([a-z0-9][a-z0-9_-]*)",
            a.entity_type
        );
    }
    Ok(())
}

/// One reconcile run.
pub async fn reconcile_once(conn: &Connection, a: &ReconcileArgs) -> anyhow::Result<Report> {
    let started = Instant::now();
    check_args(a)?;
    let alias = format!("{}{}", a.es_index_prefix, a.entity_type);
    let mut st = Stores {
        es: None,
        redis: None,
        es_location: String::new(),
    };
    if let Some(url) = &a.es_url {
        let es = EsStore::new(url, a.es_api_key.clone())?;
        match es.concrete_index(&alias).await? {
            Some(index) => {
                st.es_location = index.clone();
                st.es = Some((es, index));
            }
            None => {
                // No index yet: every live entity is missing, and nothing to walk.
                st.es_location = format!("{alias} (absent)");
                st.es = Some((es, String::new()));
            }
        }
    }
    if let Some(url) = &a.redis_url {
        let layout = KeyLayout::new(a.redis_key_prefix.clone())
            .map_err(|e| anyhow::anyhow!("--redis-key-prefix: {e}"))?;
        st.redis = Some(RedisStore::connect(url, layout).await?);
    }
    let mut truth = open_truth(conn, a).await?;
    if a.repair && !truth.has_documents() {
        bail!("--repair needs the query to return a `document` column");
    }

    // 1. The stores first (see the module docs for why), sorted by id on disk. The two
    //    walks wait on different servers, so they run side by side.
    let Stores { es, redis, .. } = &mut st;
    let es_walk = async {
        let walk_started = Instant::now();
        let mut sorter: Sorter<EsDoc> = Sorter::new(a.sort_chunk);
        let mut walked = 0;
        if let Some((es, index)) = es.as_ref().filter(|(_, index)| !index.is_empty()) {
            es.refresh(index).await?;
            let mut failed = None;
            walked = es
                .walk(index, |id, d| {
                    if failed.is_none() {
                        failed = sorter.push(id, d).err();
                    }
                })
                .await?;
            if let Some(e) = failed {
                bail!("sorting the Elasticsearch walk on disk: {e}");
            }
        }
        Ok::<_, anyhow::Error>((sorter, walked, walk_started.elapsed()))
    };
    let redis_walk = async {
        let walk_started = Instant::now();
        let mut sorter: Sorter<i64> = Sorter::new(a.sort_chunk);
        let mut walked = 0;
        if let Some(r) = redis.as_mut() {
            walked = r.cached_entities(&a.entity_type, &mut sorter).await?;
        }
        Ok::<_, anyhow::Error>((sorter, walked, walk_started.elapsed()))
    };
    let (es_walk, redis_walk) = tokio::join!(es_walk, redis_walk);
    let (es_sorter, es_walked, es_walk_time) = es_walk?;
    let (redis_sorter, redis_walked, redis_walk_time) = redis_walk?;
    let merge_started = Instant::now();
    let mut es_docs = Cursor::new(
        es_sorter
            .finish()
            .context("sorting the Elasticsearch walk")?,
    )?;
    let mut cached = Cursor::new(redis_sorter.finish().context("sorting the Redis walk")?)?;

    // 2. Stream the truth in id order and merge: a store id below the truth's next id is
    //    absent from the truth.
    let mut candidates: HashMap<String, Seen> = HashMap::new();
    // What the walk saw of each candidate, for a truth that re-checks against it (topic).
    let mut walked_rows: HashMap<String, TruthRow> = HashMap::new();
    let keep_rows = truth.needs_walked_rows();
    let mut truth_entities = 0u64;
    let mut last_id: Option<String> = None;
    let mut batch = truth.next_batch().await?;
    while !batch.is_empty() {
        truth_entities += batch.len() as u64;
        // The truth's next batch is fetched while this one's Redis guards are read: two
        // round trips to two servers at once instead of one after the other.
        let redis_reads = async {
            match &mut st.redis {
                Some(r) => {
                    let ids: Vec<&str> = batch.iter().map(|t| t.entity_id.as_str()).collect();
                    r.entries(&a.entity_type, &ids).await.map(Some)
                }
                None => Ok(None),
            }
        };
        let (next, redis_entries) = tokio::join!(truth.next_batch(), redis_reads);
        let (next, redis_entries) = (next?, redis_entries?);
        for (i, t) in batch.iter().enumerate() {
            let id = t.entity_id.as_str();
            if let Some(prev) = &last_id {
                if prev.as_str() > id {
                    bail!(
                        "the truth is not in entity id order ({prev:?} before {id:?}); \
                         reconcile sorts it with ORDER BY entity_id COLLATE \"C\": does the \
                         query end in its own ORDER BY or LIMIT?"
                    );
                }
            }
            last_id = Some(t.entity_id.clone());
            while let Some((extra, d)) = es_docs.next_below(Some(id))? {
                if classify_es(None, Some(d)).is_some() {
                    candidates.insert(extra, seen(None));
                }
            }
            while let Some((extra, _)) = cached.next_below(Some(id))? {
                candidates.insert(extra, seen(None));
            }
            let mut drift = false;
            if st.es.is_some() {
                let d = es_docs.take_equal(id)?;
                drift |= classify_es(Some(t), d).is_some();
            }
            if let Some(entries) = &redis_entries {
                // The guard read just now covers the value; the walk's entry is consumed.
                let _ = cached.take_equal(id)?;
                let e = entries.get(i).copied().unwrap_or_default();
                drift |= classify_redis(Some(t), e).is_some();
            }
            if drift {
                candidates.insert(t.entity_id.clone(), seen(Some(t)));
                if keep_rows {
                    walked_rows.insert(t.entity_id.clone(), t.clone());
                }
            }
        }
        batch = next;
    }
    // What is left in the stores is absent from the truth.
    while let Some((id, d)) = es_docs.next_below(None)? {
        if classify_es(None, Some(d)).is_some() {
            candidates.insert(id, seen(None));
        }
    }
    while let Some((id, _)) = cached.next_below(None)? {
        candidates.insert(id, seen(None));
    }

    let merge_time = merge_started.elapsed();

    // 3. Re-check.
    let recheck_started = Instant::now();
    if !candidates.is_empty() && !a.grace.is_zero() {
        tokio::time::sleep(a.grace).await;
    }
    let mut ids: Vec<String> = candidates.keys().cloned().collect();
    ids.sort_unstable();
    let now_truth = truth.lookup(&ids, &walked_rows).await?;
    let now_es = match &st.es {
        Some((es, index)) if !index.is_empty() => es.mget(index, &ids).await?,
        _ => HashMap::new(),
    };
    let now_redis: HashMap<&str, RedisEntry> = match &mut st.redis {
        Some(r) => {
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let entries = r.entries(&a.entity_type, &refs).await?;
            refs.into_iter().zip(entries).collect()
        }
        None => HashMap::new(),
    };

    let mut es_report = StoreReport {
        store: Store::Es,
        location: st.es_location.clone(),
        walked: es_walked,
        drift: BTreeMap::new(),
    };
    let mut redis_report = StoreReport {
        store: Store::Redis,
        location: a.redis_key_prefix.clone(),
        walked: redis_walked,
        drift: BTreeMap::new(),
    };
    let (mut in_flight, mut settled) = (0u64, 0u64);
    let mut drifted: Vec<Drifted> = Vec::new();
    for id in &ids {
        let t = now_truth.get(id);
        if candidates.get(id).copied() != Some(seen(t)) {
            in_flight += 1;
            continue;
        }
        let mut found = Vec::new();
        if st.es.is_some() {
            let d = now_es.get(id).copied();
            if let Some(k) = classify_es(t, d) {
                found.push((Store::Es, k, d.map(|d| d.version)));
            }
        }
        if st.redis.is_some() {
            let e = now_redis.get(id.as_str()).copied().unwrap_or_default();
            if let Some(k) = classify_redis(t, e) {
                found.push((Store::Redis, k, e.guard.max(e.cached)));
            }
        }
        if found.is_empty() {
            settled += 1;
            continue;
        }
        for (store, kind, v) in &found {
            let r = match store {
                Store::Es => &mut es_report,
                Store::Redis => &mut redis_report,
            };
            let k = r.drift.entry(*kind).or_default();
            k.count += 1;
            if k.samples.len() < a.samples {
                k.samples.push(Sample {
                    entity_id: id.clone(),
                    truth_version: t.map(|t| t.version),
                    truth_deleted: t.is_some_and(|t| t.deleted),
                    store_version: *v,
                });
            }
        }
        drifted.push((id.clone(), t.cloned(), found));
    }

    let recheck_time = recheck_started.elapsed();

    let repair = if a.repair && !drifted.is_empty() {
        Some(repair(conn, a, &drifted, &now_es, &now_redis).await?)
    } else if a.repair {
        Some(RepairReport::default())
    } else {
        None
    };
    let mut stores = Vec::new();
    if st.es.is_some() {
        stores.push(es_report);
    }
    if st.redis.is_some() {
        stores.push(redis_report);
    }
    Ok(Report {
        entity_type: a.entity_type.clone(),
        truth: a.truth,
        truth_entities,
        in_flight,
        settled,
        drifted_entities: drifted.len() as u64,
        stores,
        repair,
        duration_seconds: started.elapsed().as_secs_f64(),
        phase_seconds: PhaseSeconds {
            es_walk: es_walk_time.as_secs_f64(),
            redis_walk: redis_walk_time.as_secs_f64(),
            truth_merge: merge_time.as_secs_f64(),
            recheck: recheck_time.as_secs_f64(),
        },
    })
}

/// The version a corrective event must carry to win in every store that drifted; see
/// `docs/reconcile.md` ("the version rule").
pub fn winning_version(truth: Option<&TruthRow>, store_versions: &[Option<i64>]) -> i64 {
    let top = store_versions.iter().flatten().copied().max();
    match live(truth) {
        // The row's own version, unless a store already holds that or more (a tombstone
        // at or above it): then one above the store.
        Some(t) => match top {
            Some(s) if s >= t.version => s.saturating_add(1),
            _ => t.version,
        },
        // A DELETE above everything any store holds (and above a deletion the topic knows).
        None => {
            let floor = truth.map_or(0, |t| t.version);
            top.map_or(floor, |s| s.saturating_add(1).max(floor))
        }
    }
}

async fn repair(
    conn: &Connection,
    a: &ReconcileArgs,
    drifted: &[Drifted],
    now_es: &HashMap<String, EsDoc>,
    now_redis: &HashMap<&str, RedisEntry>,
) -> anyhow::Result<RepairReport> {
    let cfg = crate::producer_config(conn, &a.topic, "syncline-ctl-reconcile");
    let producer = Producer::new(cfg).context("creating the producer")?;
    let mut report = RepairReport::default();
    let mut events = Vec::new();
    for (id, t, found) in drifted {
        let event = match live(t.as_ref()) {
            Some(row) => {
                // Only the stores in drift count: one that is up to date ignores the event.
                let vs: Vec<Option<i64>> = found.iter().map(|(_, _, v)| *v).collect();
                let Some(doc) = row.document.clone() else {
                    report
                        .skipped
                        .push(format!("{id}: the truth has no document for it"));
                    continue;
                };
                report.upserts += 1;
                ChangeEvent::new(
                    &a.entity_type,
                    id,
                    Op::Upsert,
                    winning_version(Some(row), &vs),
                    "syncline-reconcile",
                    Some(doc),
                )
            }
            None => {
                // A DELETE must win everywhere, so every store's version counts.
                let es = now_es.get(id).map(|d| d.version);
                let r = now_redis.get(id.as_str()).copied().unwrap_or_default();
                let v = winning_version(t.as_ref(), &[es, r.guard, r.cached]);
                report.deletes += 1;
                ChangeEvent::new(
                    &a.entity_type,
                    id,
                    Op::Delete,
                    v,
                    "syncline-reconcile",
                    None,
                )
            }
        };
        let mut event = event;
        let kinds: Vec<&str> = found
            .iter()
            .map(|(s, k, _)| if *s == Store::Es { k.as_str() } else { "redis" })
            .collect();
        event
            .attributes
            .insert("syncline.repair".into(), kinds.join(","));
        events.push(event);
    }
    producer
        .publish_many(&events, 1_000)
        .await
        .with_context(|| format!("publishing repairs to {}", a.topic))?;
    producer
        .flush(Duration::from_secs(30))
        .await
        .context("flushing repairs")?;
    Ok(report)
}

/// Print a report for people.
pub fn print_report(r: &Report) {
    println!(
        "reconcile {}: truth {} ({} entities), {:.1} s",
        r.entity_type,
        match r.truth {
            TruthKind::Postgres => "postgres",
            TruthKind::Topic => "topic",
        },
        r.truth_entities,
        r.duration_seconds
    );
    let ph = &r.phase_seconds;
    println!(
        "  phases: es walk {:.1} s, redis walk {:.1} s (side by side), truth and merge {:.1} s, \
         re-check {:.1} s",
        ph.es_walk, ph.redis_walk, ph.truth_merge, ph.recheck
    );
    for s in &r.stores {
        println!(
            "  {} ({}, {} walked)",
            s.store.as_str(),
            s.location,
            s.walked
        );
        if s.drift.is_empty() {
            println!("    in sync");
        }
        for (k, kr) in &s.drift {
            let samples: Vec<String> = kr
                .samples
                .iter()
                .map(|x| {
                    let tv = match (x.truth_version, x.truth_deleted) {
                        (None, _) => "absent".to_owned(),
                        (Some(v), true) => format!("deleted v{v}"),
                        (Some(v), false) => format!("v{v}"),
                    };
                    let sv = x.store_version.map_or("-".to_owned(), |v| format!("v{v}"));
                    format!("{} (truth {tv}, store {sv})", x.entity_id)
                })
                .collect();
            println!(
                "    {:<19} {:>8}  {}",
                k.as_str(),
                kr.count,
                samples.join(", ")
            );
        }
    }
    println!(
        "  re-check: {} settled, {} in flight (not drift)",
        r.settled, r.in_flight
    );
    if let Some(rep) = &r.repair {
        println!(
            "  repair: published {} UPSERT and {} DELETE events",
            rep.upserts, rep.deletes
        );
        for s in &rep.skipped {
            println!("  repair skipped {s}");
        }
    }
    if r.drifted_entities == 0 {
        println!("in sync");
    } else {
        println!("drift: {} entities", r.drifted_entities);
    }
}

/// Run `reconcile`.
pub async fn run(conn: &Connection, args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    if let Some(every) = args.every {
        return monitor::run(conn, args.clone(), every).await;
    }
    let report = reconcile_once(conn, &args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.drifted_entities == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: i64, deleted: bool) -> TruthRow {
        TruthRow {
            entity_id: "x".into(),
            version: v,
            document: None,
            deleted,
        }
    }

    #[test]
    fn es_kinds() {
        let t = row(5, false);
        let d = |version, tombstone| Some(EsDoc { version, tombstone });
        assert_eq!(classify_es(Some(&t), None), Some(Kind::Missing));
        assert_eq!(classify_es(Some(&t), d(4, false)), Some(Kind::Stale));
        assert_eq!(classify_es(Some(&t), d(5, false)), None);
        assert_eq!(classify_es(Some(&t), d(6, false)), None);
        assert_eq!(
            classify_es(Some(&t), d(9, true)),
            Some(Kind::TombstoneMismatch)
        );
        assert_eq!(classify_es(None, d(3, false)), Some(Kind::Extra));
        assert_eq!(classify_es(None, d(3, true)), None);
        assert_eq!(
            classify_es(Some(&row(5, true)), d(3, false)),
            Some(Kind::Extra)
        );
    }

    #[test]
    fn redis_kinds() {
        let t = row(5, false);
        let e = |guard, cached| RedisEntry { guard, cached };
        assert_eq!(classify_redis(Some(&t), e(None, None)), Some(Kind::Missing));
        assert_eq!(
            classify_redis(Some(&t), e(Some(4), None)),
            Some(Kind::Stale)
        );
        assert_eq!(classify_redis(Some(&t), e(Some(5), None)), None);
        assert_eq!(classify_redis(Some(&t), e(None, Some(5))), None);
        assert_eq!(classify_redis(None, e(Some(7), None)), None);
        assert_eq!(classify_redis(None, e(Some(7), Some(7))), Some(Kind::Extra));
    }

    #[test]
    fn winning_versions() {
        let t = row(5, false);
        assert_eq!(winning_version(Some(&t), &[None, Some(3)]), 5);
        assert_eq!(winning_version(Some(&t), &[Some(5)]), 6);
        assert_eq!(winning_version(None, &[Some(9), Some(4), None]), 10);
        assert_eq!(winning_version(Some(&row(12, true)), &[Some(9)]), 12);
        assert_eq!(winning_version(Some(&row(12, true)), &[Some(12)]), 13);
    }
}
