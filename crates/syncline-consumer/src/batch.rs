//! Batching (by count, bytes and linger) and coalescing (one event per key, highest
//! version).
//!
//! The consumer loop only copies each record's key and payload into one growing arena per
//! batch (no allocation per record); decoding and coalescing happen in the batch's own
//! task, so the loop that owns the Kafka consumer stays cheap.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Instant;

use syncline_event::{DecodeError, Decoded, Limits};

/// Where a record came from: enough to commit it, and to name it in a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef {
    /// Partition of the source topic.
    pub partition: i32,
    /// Assignment epoch the record was received in.
    pub epoch: u64,
    /// Offset in the partition.
    pub offset: i64,
}

#[derive(Debug, Clone)]
struct Meta {
    at: RecordRef,
    /// Kafka timestamp (ms since the epoch), if the record has one.
    timestamp_ms: Option<i64>,
    /// When this consumer read it: the start of Syncline's own share of its latency.
    read_at: Instant,
    key: Option<Range<usize>>,
    payload: Option<Range<usize>>,
}

/// Records received from Kafka, not yet decoded.
#[derive(Debug)]
pub struct Batch {
    records: Vec<Meta>,
    arena: Vec<u8>,
    payload_bytes: usize,
    started: Option<Instant>,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch {
            records: Vec::new(),
            arena: Vec::new(),
            payload_bytes: 0,
            started: None,
        }
    }

    /// Append a record (copies key and payload).
    pub fn push(
        &mut self,
        at: RecordRef,
        timestamp_ms: Option<i64>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) {
        let read_at = Instant::now();
        if self.started.is_none() {
            self.started = Some(read_at);
        }
        let key = key.map(|k| self.copy(k));
        let payload = payload.map(|p| {
            self.payload_bytes += p.len();
            self.copy(p)
        });
        self.records.push(Meta {
            at,
            timestamp_ms,
            read_at,
            key,
            payload,
        });
    }

    /// Empty it, keeping its buffers' capacity for the next batch.
    pub fn clear(&mut self) {
        self.records.clear();
        self.arena.clear();
        self.payload_bytes = 0;
        self.started = None;
    }

    /// Bytes its buffers hold allocated.
    fn capacity_bytes(&self) -> usize {
        self.arena.capacity() + self.records.capacity() * std::mem::size_of::<Meta>()
    }

    fn copy(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        start..self.arena.len()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// No records?
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Sum of payload sizes.
    pub fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    /// When the first record arrived.
    pub fn started(&self) -> Option<Instant> {
        self.started
    }

    /// Is it full by count or bytes?
    pub fn is_full(&self, max_events: usize, max_bytes: usize) -> bool {
        self.records.len() >= max_events || self.payload_bytes >= max_bytes
    }

    /// Drop the records `keep` rejects (used when partitions are revoked).
    pub fn retain(&mut self, mut keep: impl FnMut(&RecordRef) -> bool) {
        // The arena keeps the dropped bytes until the batch is gone; revocations are rare.
        let before = self.records.len();
        self.records.retain(|m| keep(&m.at));
        if self.records.len() != before && self.records.is_empty() {
            self.arena.clear();
            self.payload_bytes = 0;
            self.started = None;
        }
    }

    /// Every record's origin, in delivery order.
    pub fn refs(&self) -> impl Iterator<Item = RecordRef> + '_ {
        self.records.iter().map(|m| m.at)
    }

    /// The original key bytes of record `i`.
    pub fn key(&self, i: usize) -> Option<&[u8]> {
        self.records
            .get(i)
            .and_then(|m| m.key.clone())
            .and_then(|r| self.arena.get(r))
    }

    /// The original payload bytes of record `i`.
    pub fn payload(&self, i: usize) -> Option<&[u8]> {
        self.records
            .get(i)
            .and_then(|m| m.payload.clone())
            .and_then(|r| self.arena.get(r))
    }

    /// Origin of record `i`.
    pub fn at(&self, i: usize) -> Option<RecordRef> {
        self.records.get(i).map(|m| m.at)
    }

    /// The Kafka timestamps of the records that have one.
    pub fn timestamps(&self) -> impl Iterator<Item = i64> + '_ {
        self.records.iter().filter_map(|m| m.timestamp_ms)
    }

    /// When each record was read.
    pub fn read_times(&self) -> impl Iterator<Item = Instant> + '_ {
        self.records.iter().map(|m| m.read_at)
    }

    /// Decode every record and coalesce the valid ones. The events borrow the batch.
    pub fn prepare(&self, limits: &Limits) -> Prepared<'_> {
        let mut valid = Vec::with_capacity(self.records.len());
        let mut rejected = Vec::new();
        for (i, m) in self.records.iter().enumerate() {
            let payload = m.payload.clone().and_then(|r| self.arena.get(r));
            let key = m.key.clone().and_then(|r| self.arena.get(r));
            match check(key, payload, limits) {
                Ok(event) => valid.push((event, i)),
                Err(r) => rejected.push((i, r)),
            }
        }
        let (groups, dropped) = coalesce(valid);
        Prepared {
            groups,
            rejected,
            dropped,
        }
    }
}

/// Finished batches handed back for reuse, so the next batch fills buffers that are
/// already allocated and mapped. A fresh arena per batch (about 1 MiB at the default
/// size) meant growing it by doubling and the kernel zeroing new pages for every batch:
/// about a tenth of the consumer's CPU in profiles (`memmove`, `malloc`, page faults).
#[derive(Debug)]
pub struct BatchPool {
    free: parking_lot::Mutex<Vec<Batch>>,
    /// Most batches kept (the in-flight limit plus the one being built covers the
    /// steady state).
    keep: usize,
    /// A batch whose buffers grew beyond this is dropped rather than kept, so one
    /// oversized batch does not pin its memory for the rest of the run.
    max_bytes: usize,
}

impl BatchPool {
    /// A pool keeping up to `keep` batches of at most `max_bytes` of buffers each.
    pub fn new(keep: usize, max_bytes: usize) -> Self {
        BatchPool {
            free: parking_lot::Mutex::new(Vec::with_capacity(keep)),
            keep,
            max_bytes,
        }
    }

    /// An empty batch, reusing a returned one's buffers when there is one.
    pub fn take(&self) -> Batch {
        self.free.lock().pop().unwrap_or_default()
    }

    /// Hand a finished batch back.
    pub fn give(&self, mut batch: Batch) {
        if batch.capacity_bytes() > self.max_bytes {
            return;
        }
        batch.clear();
        let mut free = self.free.lock();
        if free.len() < self.keep {
            free.push(batch);
        }
    }
}

/// Why a record is permanently rejected before reaching the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Stable class for the `syncline.error.class` header and metrics.
    pub class: String,
    /// Human-readable reason.
    pub reason: String,
}

impl Rejection {
    fn new(class: &str, reason: impl Into<String>) -> Self {
        Rejection {
            class: class.to_owned(),
            reason: reason.into(),
        }
    }
}

impl From<DecodeError> for Rejection {
    fn from(e: DecodeError) -> Self {
        Rejection::new(e.class(), e.to_string())
    }
}

/// Decode one record and check its key is `entity_type:entity_id` (the contract's
/// partitioning key: a record under another key may sit on another partition than the
/// rest of its entity, so it is a producer bug and dead-lettered as `key_mismatch`).
pub fn check<'a>(
    key: Option<&[u8]>,
    payload: Option<&'a [u8]>,
    limits: &Limits,
) -> Result<Decoded<'a>, Rejection> {
    let Some(payload) = payload else {
        return Err(Rejection::new(
            "empty_payload",
            "record has no value (Kafka tombstone); change events always carry one",
        ));
    };
    let decoded = syncline_event::decode_view(payload, limits)?;
    let event = decoded.view();
    // The key is exactly `entity_type:entity_id`.
    let matches = key.is_some_and(|k| {
        k.strip_prefix(event.entity_type.as_bytes())
            .and_then(|rest| rest.strip_prefix(b":"))
            .is_some_and(|id| id == event.entity_id.as_bytes())
    });
    if !matches {
        let shown = key.map_or_else(
            || "no key".to_owned(),
            |k| format!("key {:?}", String::from_utf8_lossy(k)),
        );
        return Err(Rejection::new(
            "key_mismatch",
            format!(
                "record has {shown}, expected \"{}:{}\"",
                event.entity_type, event.entity_id
            ),
        ));
    }
    Ok(decoded)
}

/// One event for the sink and the records it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Group<'a> {
    /// The highest version of the key in the batch (borrowed from the batch unless schema
    /// resolution had to build it).
    pub event: Decoded<'a>,
    /// Index (in the batch) of the record `event` came from.
    pub winner: usize,
    /// Records superseded by `event` (lower or equal versions of the same key); they are
    /// done exactly when `event` is.
    pub superseded: Vec<usize>,
}

/// A decoded, coalesced batch.
#[derive(Debug)]
pub struct Prepared<'a> {
    /// One group per key, in order of first appearance.
    pub groups: Vec<Group<'a>>,
    /// Records that failed decoding or checks: (index, why).
    pub rejected: Vec<(usize, Rejection)>,
    /// Records dropped by coalescing.
    pub dropped: usize,
}

/// Keep one event per `entity_type:entity_id`: the highest version; on equal versions the
/// first one received (they describe the same state). Returns the groups in order of each
/// key's first appearance and the number of records dropped.
// Every index below is a record's position (< n) or a group id handed out by `best.push`:
// plain indexing keeps this per-batch loop allocation-free and readable.
#[allow(clippy::indexing_slicing)]
pub fn coalesce(events: Vec<(Decoded<'_>, usize)>) -> (Vec<Group<'_>>, usize) {
    // Pass 1 borrows the ids to find each key's winner without allocating per record;
    // pass 2 moves the winning events out.
    let n = events.len();
    let mut group_of = Vec::with_capacity(n);
    let mut best: Vec<usize> = Vec::new();
    {
        let mut index: HashMap<(&str, &str), usize> = HashMap::with_capacity(n);
        for (j, (e, _)) in events.iter().enumerate() {
            let e = e.view();
            let g = *index
                .entry((e.entity_type, e.entity_id))
                .or_insert_with(|| {
                    best.push(j);
                    best.len() - 1
                });
            if e.version > events[best[g]].0.view().version {
                best[g] = j;
            }
            group_of.push(g);
        }
    }
    let groups_n = best.len();
    let mut winners: Vec<Option<(Decoded<'_>, usize)>> = (0..groups_n).map(|_| None).collect();
    let mut superseded: Vec<Vec<usize>> = vec![Vec::new(); groups_n];
    for (j, (event, i)) in events.into_iter().enumerate() {
        let g = group_of[j];
        if best[g] == j {
            winners[g] = Some((event, i));
        } else {
            superseded[g].push(i);
        }
    }
    let groups: Vec<Group> = winners
        .into_iter()
        .zip(superseded)
        .filter_map(|(w, superseded)| {
            w.map(|(event, winner)| Group {
                event,
                winner,
                superseded,
            })
        })
        .collect();
    (groups, n - groups_n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncline_event::{ChangeEvent, Op};

    fn ev(id: &str, version: i64) -> Decoded<'static> {
        Decoded::Owned(ChangeEvent::new(
            "item",
            id,
            Op::Upsert,
            version,
            "t",
            Some("{}".into()),
        ))
    }

    #[test]
    fn keeps_highest_version_per_key_and_counts_drops() {
        let events = vec![
            (ev("a", 2), 0),
            (ev("b", 1), 1),
            (ev("a", 5), 2),
            (ev("a", 3), 3),
            (ev("b", 1), 4),
        ];
        let (groups, dropped) = coalesce(events);
        assert_eq!(dropped, 3);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].event.view().entity_id, "a");
        assert_eq!(groups[0].event.view().version, 5);
        assert_eq!(groups[0].winner, 2);
        let mut s = groups[0].superseded.clone();
        s.sort();
        assert_eq!(s, vec![0, 3]);
        assert_eq!(groups[1].winner, 1, "equal version: first kept");
        assert_eq!(groups[1].superseded, vec![4]);
    }

    #[test]
    fn every_record_is_accounted_for_exactly_once() {
        let mut events = Vec::new();
        for i in 0..200usize {
            events.push((ev(&format!("k{}", i % 13), (i * 7 % 11) as i64), i));
        }
        let (groups, dropped) = coalesce(events);
        let mut seen: Vec<usize> = groups
            .iter()
            .flat_map(|g| std::iter::once(g.winner).chain(g.superseded.iter().copied()))
            .collect();
        seen.sort();
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
        assert_eq!(groups.len() + dropped, 200);
    }

    #[test]
    fn rejects_tombstones_bad_bytes_and_wrong_keys() {
        let limits = Limits::default();
        assert_eq!(
            check(Some(b"item:a"), None, &limits).unwrap_err().class,
            "empty_payload"
        );
        assert_eq!(
            check(Some(b"item:a"), Some(b"nope, not avro"), &limits)
                .unwrap_err()
                .class,
            "bad_magic"
        );
        let event = ChangeEvent::new("item", "a", Op::Upsert, 1, "t", Some("{}".into()));
        let bytes = syncline_event::encode(&event, &limits).unwrap();
        let decoded = check(Some(b"item:a"), Some(&bytes), &limits).unwrap();
        assert!(
            matches!(decoded, Decoded::Borrowed(_)),
            "a current-schema record is borrowed, not copied"
        );
        assert_eq!(decoded.view().to_owned_event(), event);
        assert_eq!(
            check(Some(b"item:b"), Some(&bytes), &limits)
                .unwrap_err()
                .class,
            "key_mismatch"
        );
        assert_eq!(
            check(None, Some(&bytes), &limits).unwrap_err().class,
            "key_mismatch"
        );
    }

    #[test]
    fn batch_arena_keeps_original_bytes() {
        let mut b = Batch::new();
        let at = |o| RecordRef {
            partition: 1,
            epoch: 1,
            offset: o,
        };
        b.push(at(0), Some(5), Some(b"k0"), Some(b"p0"));
        b.push(at(1), None, None, None);
        b.push(at(2), Some(7), Some(b"k2"), Some(b"payload2"));
        assert_eq!(b.len(), 3);
        assert_eq!(b.payload_bytes(), 10);
        assert_eq!(b.key(2), Some(&b"k2"[..]));
        assert_eq!(b.payload(1), None);
        assert_eq!(b.payload(2), Some(&b"payload2"[..]));
        assert!(b.is_full(3, usize::MAX));
        assert!(b.is_full(100, 10));
        b.retain(|r| r.offset != 0);
        assert_eq!(b.refs().map(|r| r.offset).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(b.timestamps().collect::<Vec<_>>(), vec![7]);
        let read: Vec<Instant> = b.read_times().collect();
        assert_eq!(read.len(), 2);
        assert!(read[0] <= read[1] && Some(read[0]) >= b.started());
    }
}

#[cfg(test)]
mod speed_probe {
    use super::*;
    use syncline_event::{ChangeEvent, Op};

    #[test]
    #[ignore = "manual speed probe"]
    fn decode_speed() {
        let limits = Limits::default();
        let doc = format!("{{\"id\":\"x\",\"pad\":\"{}\"}}", "a".repeat(200));
        let mut b = Batch::new();
        for i in 0..20_000i64 {
            let e = ChangeEvent::new(
                "item",
                format!("k{}", i % 5000),
                Op::Upsert,
                i,
                "t",
                Some(doc.clone()),
            );
            let bytes = syncline_event::encode(&e, &limits).unwrap();
            b.push(
                RecordRef {
                    partition: 0,
                    epoch: 1,
                    offset: i,
                },
                None,
                Some(e.key().as_bytes()),
                Some(&bytes),
            );
        }
        let _ = b.prepare(&limits);
        let t = Instant::now();
        let p = b.prepare(&limits);
        let el = t.elapsed();
        eprintln!(
            "prepare 20k: {el:?} = {:.0}/s, groups {}",
            20_000.0 / el.as_secs_f64(),
            p.groups.len()
        );
        let t = Instant::now();
        for i in 0..20_000 {
            let _ = syncline_event::decode(b.payload(i).unwrap(), &limits).unwrap();
        }
        eprintln!("decode only 20k: {:?}", t.elapsed());
    }
}
