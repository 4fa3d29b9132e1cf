//! One index: documents with versions and sequence numbers, delete tombstones kept for
//! `index.gc_deletes`, a refresh model (search sees the state as of the last refresh, get is
//! realtime), its mapping and settings.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use serde_json::Value;

use crate::error::{EsError, EsResult};
use crate::mapping::{check_source_with, DynamicUpdate, Mapping};
use crate::settings::Effective;

/// A stored document version.
#[derive(Debug)]
pub struct StoredDoc {
    /// The `_source` exactly as indexed.
    pub source: Box<str>,
    /// `_seq_no` of the operation that wrote it.
    pub seq_no: i64,
    /// `_version`.
    pub version: i64,
    /// `_routing`, if given.
    pub routing: Option<Box<str>>,
}

#[derive(Debug)]
enum SlotState {
    Live(Arc<StoredDoc>),
    Deleted(Instant),
}

#[derive(Debug)]
struct Slot {
    version: i64,
    seq_no: i64,
    state: SlotState,
    /// The document as of the last refresh (what search sees).
    visible: Option<Arc<StoredDoc>>,
    dirty: bool,
}

/// The slot of `id` (its key shared with the map), created as a fresh tombstone when the
/// id is new; used by writes and deletes alike.
fn slot_entry<'a>(
    docs: &'a mut HashMap<Arc<str>, Slot>,
    id: &str,
    now: Instant,
) -> (Arc<str>, &'a mut Slot) {
    let key: Arc<str> = match docs.get_key_value(id) {
        Some((k, _)) => k.clone(),
        None => Arc::from(id),
    };
    let slot = docs.entry(key.clone()).or_insert(Slot {
        version: 0,
        seq_no: 0,
        state: SlotState::Deleted(now),
        visible: None,
        dirty: false,
    });
    (key, slot)
}

/// How a write's `version` is interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionType {
    /// Versions assigned by the server.
    Internal,
    /// Accept only a version higher than the current one.
    External,
    /// Accept a version higher than or equal to the current one.
    ExternalGte,
}

impl VersionType {
    /// Parses `internal`, `external`, `external_gte`.
    pub fn parse(s: &str) -> EsResult<VersionType> {
        match s {
            "internal" => Ok(VersionType::Internal),
            "external" => Ok(VersionType::External),
            "external_gte" => Ok(VersionType::ExternalGte),
            "force" => Err(EsError::illegal_argument(
                "version type [force] may no longer be used",
            )),
            other => Err(EsError::illegal_argument(format!(
                "No version type match [{other}]"
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            VersionType::Internal => "INTERNAL",
            VersionType::External => "EXTERNAL",
            VersionType::ExternalGte => "EXTERNAL_GTE",
        }
    }
}

/// Optimistic concurrency parameters of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versioning {
    /// Explicit `version`.
    pub version: Option<i64>,
    /// `version_type`.
    pub version_type: VersionType,
    /// `if_seq_no`.
    pub if_seq_no: Option<i64>,
    /// `if_primary_term`.
    pub if_primary_term: Option<i64>,
}

impl Default for Versioning {
    fn default() -> Self {
        Versioning {
            version: None,
            version_type: VersionType::Internal,
            if_seq_no: None,
            if_primary_term: None,
        }
    }
}

impl Versioning {
    /// The request-level validation errors Elasticsearch reports for these parameters
    /// (`action_request_validation_exception`).
    pub fn validation_errors(&self, create: bool, has_id: bool) -> Vec<String> {
        let mut errs = Vec::new();
        // Elasticsearch reports only the first problem of a create operation.
        if create {
            let first = if self.version_type != VersionType::Internal {
                Some("create operations only support internal versioning. use index instead")
            } else if self.version.is_some() {
                Some("create operations do not support explicit versions. use index instead")
            } else if self.if_seq_no.is_some() {
                Some("create operations do not support compare and set. use index instead")
            } else {
                None
            };
            if let Some(m) = first {
                return vec![m.to_string()];
            }
        }
        if !has_id && (self.version_type != VersionType::Internal || self.version.is_some()) {
            errs.push("an id must be provided if version type or value are set".to_string());
        }
        if let Some(v) = self.version {
            let valid = match self.version_type {
                VersionType::Internal => v > 0,
                _ => v >= 0,
            };
            if !valid {
                errs.push(format!(
                    "illegal version value [{v}] for version type [{}]",
                    self.version_type.name()
                ));
            }
            if self.version_type == VersionType::Internal && !create {
                errs.push("internal versioning can not be used for optimistic concurrency control. Please use `if_seq_no` and `if_primary_term` instead".to_string());
            }
        } else if self.version_type != VersionType::Internal && !create {
            errs.push(format!(
                "illegal version value [-3] for version type [{}]",
                self.version_type.name()
            ));
        }
        if self.if_seq_no.is_some()
            && (self.version_type != VersionType::Internal || self.version.is_some())
        {
            errs.push("compare and write operations can not use versioning".to_string());
        }
        match (self.if_seq_no, self.if_primary_term) {
            (Some(_), None) | (Some(_), Some(0)) => {
                errs.push("ifSeqNo is set, but primary term is [0]".to_string())
            }
            (None, Some(t)) if t != 0 => {
                errs.push(format!("ifSeqNo is unassigned, but primary term is [{t}]"))
            }
            _ => {}
        }
        if let Some(s) = self.if_seq_no {
            if s < 0 {
                errs.push(format!(
                    "sequence number must be >= 0 or unassigned; got [{s}]"
                ));
            }
        }
        errs
    }
}

/// The result of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteResult {
    /// A new document.
    Created,
    /// An existing document replaced.
    Updated,
    /// A document deleted.
    Deleted,
    /// A delete of a missing document.
    NotFound,
    /// An update that changed nothing.
    Noop,
}

impl WriteResult {
    /// The `result` string.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteResult::Created => "created",
            WriteResult::Updated => "updated",
            WriteResult::Deleted => "deleted",
            WriteResult::NotFound => "not_found",
            WriteResult::Noop => "noop",
        }
    }

    /// The HTTP status of a single-document response / bulk item.
    pub fn status(self) -> u16 {
        match self {
            WriteResult::Created => 201,
            WriteResult::NotFound => 404,
            _ => 200,
        }
    }
}

/// What a successful write produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// `_version`.
    pub version: i64,
    /// `_seq_no`.
    pub seq_no: i64,
    /// `result`.
    pub result: WriteResult,
}

/// Indexing counters (`GET /{index}/_stats`).
#[derive(Debug, Default)]
pub struct IndexStats {
    /// Index operations.
    pub index_total: AtomicU64,
    /// Delete operations.
    pub delete_total: AtomicU64,
    /// Updates that were no-ops.
    pub noop_update_total: AtomicU64,
    /// Searches.
    pub query_total: AtomicU64,
    /// Gets.
    pub get_total: AtomicU64,
    /// Refreshes.
    pub refresh_total: AtomicU64,
}

/// Mutable settings-derived values and the flat settings.
#[derive(Debug, Clone)]
pub struct IndexMeta {
    /// Flat `index.*` settings with string values (user-provided ones).
    pub flat: BTreeMap<String, Value>,
    /// Parsed values the server uses.
    pub eff: Effective,
}

/// The document store of an index (guarded by one `RwLock`).
#[derive(Debug)]
pub struct IndexData {
    docs: HashMap<Arc<str>, Slot>,
    next_seq_no: i64,
    mapping: Arc<Mapping>,
    mapping_gen: u64,
    dirty: Vec<Arc<str>>,
    pending_since: Option<Instant>,
    tombstones: VecDeque<(Arc<str>, Instant)>,
    live_count: u64,
    deleted_in_visible: u64,
    visible_count: u64,
    gc_deletes: Duration,
    refresh_interval: Option<Duration>,
    /// The index settings that change document checking (kept here for re-checks under
    /// the lock).
    check_opts: crate::field_checks::CheckOpts,
}

/// An index.
#[derive(Debug)]
pub struct Index {
    /// Name.
    pub name: String,
    /// `index.uuid`.
    pub uuid: String,
    /// `index.creation_date` (epoch millis).
    pub creation_date: i64,
    /// Settings.
    pub meta: RwLock<IndexMeta>,
    /// Documents and mapping.
    pub data: RwLock<IndexData>,
    /// Counters.
    pub stats: IndexStats,
    /// Closed (`POST /{index}/_close`): kept, but neither searchable nor writable.
    pub closed: std::sync::atomic::AtomicBool,
}

/// A document checked against the mapping outside the index lock.
#[derive(Debug)]
pub struct Prepared {
    /// Dynamic mapping updates the document needs.
    pub updates: Vec<DynamicUpdate>,
    /// The mapping generation the check ran against.
    pub mapping_gen: u64,
    /// The document's `dynamic_templates` (bulk items), for a check again under the lock.
    pub named: Option<Arc<BTreeMap<String, String>>>,
    /// The check failed against a mapping that earlier items of the same bulk request
    /// are about to extend: check again under the lock, against their mapping.
    pub recheck: bool,
}

/// A single write to apply under the index lock.
#[derive(Debug)]
pub enum WriteOp<'a> {
    /// Index (or create) a source.
    Index {
        /// The source JSON.
        source: &'a str,
        /// `op_type=create`.
        create: bool,
        /// Result of the mapping check done beforehand.
        prepared: Prepared,
    },
    /// Delete.
    Delete,
}

impl Index {
    /// A new, empty index.
    pub fn new(
        name: &str,
        flat: BTreeMap<String, Value>,
        eff: Effective,
        mapping: Mapping,
    ) -> Index {
        let data = IndexData {
            docs: HashMap::new(),
            next_seq_no: 0,
            mapping: Arc::new(mapping),
            mapping_gen: 0,
            dirty: Vec::new(),
            pending_since: None,
            tombstones: VecDeque::new(),
            live_count: 0,
            deleted_in_visible: 0,
            visible_count: 0,
            gc_deletes: eff.gc_deletes,
            refresh_interval: eff.refresh_interval,
            check_opts: eff.check,
        };
        Index {
            name: name.to_string(),
            uuid: crate::util::random_uuid(),
            creation_date: crate::names::now_millis(),
            meta: RwLock::new(IndexMeta { flat, eff }),
            data: RwLock::new(data),
            stats: IndexStats::default(),
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether the index is closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The error Elasticsearch answers for reads and writes on a closed index.
    pub fn closed_error(&self) -> crate::error::EsError {
        crate::error::EsError::new(400, "index_closed_exception", "closed")
            .with_meta("index_uuid", self.uuid.as_str())
            .with_meta("index", self.name.as_str())
    }

    /// The current mapping.
    pub fn mapping(&self) -> Arc<Mapping> {
        self.data.read().mapping.clone()
    }

    /// The current mapping and its generation.
    pub fn mapping_snapshot(&self) -> (Arc<Mapping>, u64) {
        let d = self.data.read();
        (d.mapping.clone(), d.mapping_gen)
    }

    /// Checks a source against the current mapping without holding the index lock.
    pub fn prepare(&self, source: &[u8], id: &str) -> EsResult<Prepared> {
        let (mapping, mapping_gen, opts) = {
            let d = self.data.read();
            (d.mapping.clone(), d.mapping_gen, d.check_opts)
        };
        let updates = check_source_with(&mapping, &opts, None, source, id)?;
        self.meta.read().eff.doc_limits.check(&mapping, source)?;
        Ok(Prepared {
            updates,
            mapping_gen,
            named: None,
            recheck: false,
        })
    }

    /// Number of primary shards.
    pub fn shards(&self) -> u32 {
        self.meta.read().eff.shards
    }

    /// Number of replicas.
    pub fn replicas(&self) -> u32 {
        self.meta.read().eff.replicas
    }

    /// `_shards` of a write response: total copies, successful (primary only: a single
    /// node cannot hold replicas), failed.
    pub fn write_shards(&self) -> (u64, u64) {
        (1 + u64::from(self.replicas()), 1)
    }

    /// Applies changed dynamic settings to the document store.
    pub fn settings_changed(&self) {
        let eff = self.meta.read().eff.clone();
        let mut d = self.data.write();
        d.gc_deletes = eff.gc_deletes;
        d.refresh_interval = eff.refresh_interval;
        d.check_opts = eff.check;
    }

    /// Refreshes if the refresh interval has passed since the first unrefreshed write
    /// (a periodic refresh, evaluated lazily when someone searches).
    pub fn maybe_scheduled_refresh(&self, now: Instant) {
        let due = {
            let d = self.data.read();
            match (d.pending_since, d.refresh_interval) {
                (Some(since), Some(iv)) => now.saturating_duration_since(since) >= iv,
                _ => false,
            }
        };
        if due {
            self.data.write().refresh(now);
            self.stats.refresh_total.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Explicit refresh.
    pub fn refresh(&self) {
        self.data.write().refresh(Instant::now());
        self.stats.refresh_total.fetch_add(1, Ordering::Relaxed);
    }
}

const NOT_FOUND: i64 = -1;

impl IndexData {
    /// The mapping.
    pub fn mapping(&self) -> &Arc<Mapping> {
        &self.mapping
    }

    /// The index settings that change document checking.
    pub fn check_opts(&self) -> &crate::field_checks::CheckOpts {
        &self.check_opts
    }

    /// Replaces the mapping (after a successful merge).
    pub fn set_mapping(&mut self, m: Mapping) {
        self.mapping = Arc::new(m);
        self.mapping_gen += 1;
    }

    fn expired(&self, at: Instant, now: Instant) -> bool {
        now.saturating_duration_since(at) >= self.gc_deletes
    }

    /// Current (version, seq_no, deleted) of a document; `None` if it never existed or its
    /// tombstone has been garbage-collected (`index.gc_deletes`).
    fn current(&self, id: &str, now: Instant) -> Option<(i64, i64, bool)> {
        let slot = self.docs.get(id)?;
        match slot.state {
            SlotState::Live(_) => Some((slot.version, slot.seq_no, false)),
            SlotState::Deleted(at) => {
                if self.expired(at, now) {
                    None
                } else {
                    Some((slot.version, slot.seq_no, true))
                }
            }
        }
    }

    /// The live document (realtime get).
    pub fn get_live(&self, id: &str) -> Option<Arc<StoredDoc>> {
        match &self.docs.get(id)?.state {
            SlotState::Live(d) => Some(d.clone()),
            SlotState::Deleted(_) => None,
        }
    }

    /// The document as of the last refresh.
    pub fn get_visible(&self, id: &str) -> Option<Arc<StoredDoc>> {
        self.docs.get(id)?.visible.clone()
    }

    /// Documents visible to search, in index order (by `_seq_no`).
    pub fn snapshot(&self) -> Vec<(Arc<str>, Arc<StoredDoc>)> {
        self.in_index_order(|s| s.visible.as_ref())
    }

    /// The document `pick` chooses from each slot, with its id, ordered by `_seq_no`.
    fn in_index_order(
        &self,
        pick: impl Fn(&Slot) -> Option<&Arc<StoredDoc>>,
    ) -> Vec<(Arc<str>, Arc<StoredDoc>)> {
        let mut v: Vec<(Arc<str>, Arc<StoredDoc>)> = self
            .docs
            .iter()
            .filter_map(|(id, s)| pick(s).map(|d| (id.clone(), d.clone())))
            .collect();
        v.sort_by_key(|(_, d)| d.seq_no);
        v
    }

    /// Number of documents visible to search.
    pub fn visible_count(&self) -> u64 {
        self.visible_count
    }

    /// Number of live documents.
    pub fn live_count(&self) -> u64 {
        self.live_count
    }

    /// Highest sequence number assigned (-1 if none).
    pub fn max_seq_no(&self) -> i64 {
        self.next_seq_no - 1
    }

    /// Live documents in index order (for dumps), realtime.
    pub fn live_docs(&self) -> Vec<(Arc<str>, Arc<StoredDoc>)> {
        self.in_index_order(|s| match &s.state {
            SlotState::Live(d) => Some(d),
            SlotState::Deleted(_) => None,
        })
    }

    /// Makes all writes so far visible to search.
    pub fn refresh(&mut self, now: Instant) {
        let dirty = std::mem::take(&mut self.dirty);
        for id in dirty {
            let remove = match self.docs.get_mut(&id) {
                Some(slot) if slot.dirty => {
                    slot.dirty = false;
                    let was_visible = slot.visible.is_some();
                    slot.visible = match &slot.state {
                        SlotState::Live(d) => Some(d.clone()),
                        SlotState::Deleted(_) => None,
                    };
                    match (was_visible, slot.visible.is_some()) {
                        (false, true) => self.visible_count += 1,
                        (true, false) => {
                            self.visible_count = self.visible_count.saturating_sub(1);
                            self.deleted_in_visible += 1;
                        }
                        _ => {}
                    }
                    matches!(slot.state, SlotState::Deleted(at) if now.saturating_duration_since(at) >= self.gc_deletes)
                }
                _ => false,
            };
            if remove {
                self.docs.remove(&id);
            }
        }
        self.pending_since = None;
        self.prune_tombstones(now);
    }

    /// Whether writes are waiting for a refresh.
    pub fn has_pending(&self) -> bool {
        self.pending_since.is_some()
    }

    fn prune_tombstones(&mut self, now: Instant) {
        while let Some((id, at)) = self.tombstones.front() {
            if now.saturating_duration_since(*at) < self.gc_deletes {
                break;
            }
            let (id, at) = (id.clone(), *at);
            self.tombstones.pop_front();
            let remove = matches!(
                self.docs.get(&id),
                Some(Slot { state: SlotState::Deleted(t), dirty: false, visible: None, .. }) if *t == at
            );
            if remove {
                self.docs.remove(&id);
            }
        }
    }

    fn mark_dirty(&mut self, id: &Arc<str>, now: Instant) {
        if let Some(slot) = self.docs.get_mut(id) {
            if !slot.dirty {
                slot.dirty = true;
                self.dirty.push(id.clone());
            }
        }
        if self.pending_since.is_none() {
            self.pending_since = Some(now);
        }
    }

    /// Applies one write: versioning checks, mapping updates, storage.
    pub fn apply(
        &mut self,
        index: &Index,
        id: &str,
        op: WriteOp<'_>,
        v: &Versioning,
        routing: Option<&str>,
        now: Instant,
    ) -> EsResult<WriteOutcome> {
        self.prune_tombstones(now);
        let cur = self.current(id, now);
        let (cur_version, cur_seq, not_found_or_deleted) = match cur {
            None => (NOT_FOUND, -1, true),
            Some((ver, seq, deleted)) => (ver, seq, deleted),
        };
        let conflict =
            |expl: String| EsError::version_conflict(id, &expl, &index.name, &index.uuid);
        let is_create = matches!(op, WriteOp::Index { create: true, .. });
        if let Some(if_seq) = v.if_seq_no {
            let if_term = v.if_primary_term.unwrap_or(0);
            if not_found_or_deleted {
                return Err(conflict(format!(
                    "required seqNo [{if_seq}], primary term [{if_term}]. but no document was found"
                )));
            }
            if cur_seq != if_seq || if_term != 1 {
                return Err(conflict(format!(
                    "required seqNo [{if_seq}], primary term [{if_term}]. current document has seqNo [{cur_seq}] and primary term [1]"
                )));
            }
        } else if is_create {
            if !not_found_or_deleted {
                return Err(conflict(format!(
                    "document already exists (current version [{cur_version}])"
                )));
            }
        } else if let Some(ver) = v.version {
            match v.version_type {
                VersionType::Internal => {
                    if cur_version == NOT_FOUND {
                        return Err(conflict(format!(
                            "document does not exist (expected version [{ver}])"
                        )));
                    }
                    if cur_version != ver {
                        return Err(conflict(format!(
                            "current version [{cur_version}] is different than the one provided [{ver}]"
                        )));
                    }
                }
                VersionType::External => {
                    if cur_version != NOT_FOUND && cur_version >= ver {
                        return Err(conflict(format!(
                            "current version [{cur_version}] is higher or equal to the one provided [{ver}]"
                        )));
                    }
                }
                VersionType::ExternalGte => {
                    if cur_version != NOT_FOUND && cur_version > ver {
                        return Err(conflict(format!(
                            "current version [{cur_version}] is higher than the one provided [{ver}]"
                        )));
                    }
                }
            }
        }
        let new_version = match (v.version_type, v.version) {
            (VersionType::External | VersionType::ExternalGte, Some(ver)) => ver,
            _ => {
                if cur_version == NOT_FOUND {
                    1
                } else {
                    cur_version.saturating_add(1)
                }
            }
        };
        match op {
            WriteOp::Index {
                source, prepared, ..
            } => {
                if !prepared.updates.is_empty() || prepared.recheck {
                    let updates = if prepared.mapping_gen == self.mapping_gen && !prepared.recheck {
                        prepared.updates
                    } else {
                        // The mapping changed since the check: check again against it.
                        check_source_with(
                            &self.mapping,
                            &self.check_opts,
                            prepared.named.as_deref(),
                            source.as_bytes(),
                            id,
                        )?
                    };
                    if !updates.is_empty() {
                        let mut m = (*self.mapping).clone();
                        match m.apply_updates(&updates) {
                            Ok(()) => self.set_mapping(m),
                            Err(_) => {
                                // A concurrent document mapped a field differently: the
                                // check against the current mapping reports the conflict.
                                let again = check_source_with(
                                    &self.mapping,
                                    &self.check_opts,
                                    prepared.named.as_deref(),
                                    source.as_bytes(),
                                    id,
                                )?;
                                let mut m = (*self.mapping).clone();
                                m.apply_updates(&again)?;
                                self.set_mapping(m);
                            }
                        }
                    }
                }
                let seq_no = self.next_seq_no;
                self.next_seq_no += 1;
                let doc = Arc::new(StoredDoc {
                    source: source.into(),
                    seq_no,
                    version: new_version,
                    routing: routing.map(Into::into),
                });
                let (key, slot) = slot_entry(&mut self.docs, id, now);
                let was_live = matches!(slot.state, SlotState::Live(_));
                slot.version = new_version;
                slot.seq_no = seq_no;
                slot.state = SlotState::Live(doc);
                if !was_live {
                    self.live_count += 1;
                }
                self.mark_dirty(&key, now);
                index.stats.index_total.fetch_add(1, Ordering::Relaxed);
                let result = if not_found_or_deleted {
                    WriteResult::Created
                } else {
                    WriteResult::Updated
                };
                Ok(WriteOutcome {
                    version: new_version,
                    seq_no,
                    result,
                })
            }
            WriteOp::Delete => {
                let seq_no = self.next_seq_no;
                self.next_seq_no += 1;
                let (key, slot) = slot_entry(&mut self.docs, id, now);
                if matches!(slot.state, SlotState::Live(_)) {
                    self.live_count = self.live_count.saturating_sub(1);
                }
                slot.version = new_version;
                slot.seq_no = seq_no;
                slot.state = SlotState::Deleted(now);
                self.tombstones.push_back((key.clone(), now));
                self.mark_dirty(&key, now);
                index.stats.delete_total.fetch_add(1, Ordering::Relaxed);
                let result = if not_found_or_deleted {
                    WriteResult::NotFound
                } else {
                    WriteResult::Deleted
                };
                Ok(WriteOutcome {
                    version: new_version,
                    seq_no,
                    result,
                })
            }
        }
    }

    /// Drops every document (used by index deletion bookkeeping in tests).
    pub fn doc_slots(&self) -> usize {
        self.docs.len()
    }
}
