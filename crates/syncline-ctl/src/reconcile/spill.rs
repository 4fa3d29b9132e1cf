//! Sorting entity records by id in bounded memory, so that reconcile can merge the truth
//! and the stores in one ordered pass instead of holding every entity in a map.
//!
//! The stores cannot be read in id order (Elasticsearch 8 refuses to sort on `_id`;
//! Redis `SCAN` returns hash order) and neither can a topic, so their records go through
//! a [`Sorter`]: it keeps at most `chunk` records in memory, sorts each full chunk and
//! writes it to an anonymous temporary file (a *run*); [`Sorter::finish`] merges the runs
//! with a heap holding one record per run. Memory is one chunk plus one record and one
//! 64 KiB read buffer per run; disk is every record once.
//!
//! No crate on crates.io did this for records produced by an async walk without pulling
//! in a thread pool, hence these ~150 lines.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};

/// Records per in-memory chunk by default (a few tens of MiB of small records).
pub const DEFAULT_CHUNK: usize = 250_000;

/// What a record carries besides its id, and how it is written to a run.
pub trait Payload: Sized {
    /// Append the encoding to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Decode what [`Payload::encode`] wrote; `None` if it is malformed.
    fn decode(buf: &[u8]) -> Option<Self>;
}

impl Payload for i64 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn decode(buf: &[u8]) -> Option<Self> {
        Some(i64::from_le_bytes(buf.try_into().ok()?))
    }
}

/// Collects `(id, payload)` records and yields them sorted by id.
pub struct Sorter<V> {
    chunk: Vec<(String, V)>,
    limit: usize,
    runs: Vec<File>,
}

impl<V: Payload> Sorter<V> {
    /// A sorter keeping at most `limit` records in memory.
    pub fn new(limit: usize) -> Sorter<V> {
        Sorter {
            chunk: Vec::new(),
            limit: limit.max(1),
            runs: Vec::new(),
        }
    }

    /// Add a record.
    pub fn push(&mut self, id: String, v: V) -> io::Result<()> {
        self.chunk.push((id, v));
        if self.chunk.len() >= self.limit {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> io::Result<()> {
        // Stable: records with the same id keep the order they were pushed in.
        self.chunk.sort_by(|a, b| a.0.cmp(&b.0));
        let mut w = BufWriter::with_capacity(1 << 16, tempfile::tempfile()?);
        let mut buf = Vec::new();
        for (id, v) in self.chunk.drain(..) {
            buf.clear();
            v.encode(&mut buf);
            write_field(&mut w, id.as_bytes())?;
            write_field(&mut w, &buf)?;
        }
        let mut f = w.into_inner().map_err(|e| e.into_error())?;
        f.seek(SeekFrom::Start(0))?;
        self.runs.push(f);
        Ok(())
    }

    /// Every record, in ascending id order (records with equal ids in push order when
    /// they fell in one chunk).
    pub fn finish(mut self) -> io::Result<Sorted<V>> {
        if self.runs.is_empty() {
            self.chunk.sort_by(|a, b| a.0.cmp(&b.0));
            return Ok(Sorted::Memory(self.chunk.into_iter()));
        }
        if !self.chunk.is_empty() {
            self.spill()?;
        }
        let mut readers: Vec<BufReader<File>> = self
            .runs
            .into_iter()
            .map(|f| BufReader::with_capacity(1 << 16, f))
            .collect();
        let mut heads = Vec::with_capacity(readers.len());
        let mut heap = BinaryHeap::new();
        for (i, r) in readers.iter_mut().enumerate() {
            let head = read_record::<V>(r)?;
            if let Some((id, _)) = &head {
                heap.push(Reverse((id.clone(), i)));
            }
            heads.push(head);
        }
        Ok(Sorted::Runs {
            readers,
            heads,
            heap,
        })
    }
}

fn write_field(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::other("a record field over 4 GiB cannot be spilled"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(bytes)
}

fn read_field(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}

fn read_record<V: Payload>(r: &mut impl Read) -> io::Result<Option<(String, V)>> {
    let Some(id) = read_field(r)? else {
        return Ok(None);
    };
    let corrupt = || io::Error::other("a spilled run is corrupt");
    let payload = read_field(r)?.ok_or_else(corrupt)?;
    let id = String::from_utf8(id).map_err(|_| corrupt())?;
    let v = V::decode(&payload).ok_or_else(corrupt)?;
    Ok(Some((id, v)))
}

/// Records in id order, from memory or merged from runs.
pub enum Sorted<V> {
    /// Everything fitted in one chunk.
    Memory(std::vec::IntoIter<(String, V)>),
    /// Runs on disk, merged through a heap of each run's next id.
    Runs {
        /// One reader per run.
        readers: Vec<BufReader<File>>,
        /// Each run's next record.
        heads: Vec<Option<(String, V)>>,
        /// `(id, run)` of every run that has a next record, smallest id on top.
        heap: BinaryHeap<Reverse<(String, usize)>>,
    },
}

impl<V: Payload> Sorted<V> {
    /// The next record in id order.
    pub fn next_record(&mut self) -> io::Result<Option<(String, V)>> {
        match self {
            Sorted::Memory(it) => Ok(it.next()),
            Sorted::Runs {
                readers,
                heads,
                heap,
            } => {
                let Some(Reverse((_, run))) = heap.pop() else {
                    return Ok(None);
                };
                let (Some(slot), Some(reader)) = (heads.get_mut(run), readers.get_mut(run)) else {
                    return Ok(None);
                };
                let out = slot.take();
                *slot = read_record::<V>(reader)?;
                if let Some((id, _)) = slot.as_ref() {
                    heap.push(Reverse((id.clone(), run)));
                }
                Ok(out)
            }
        }
    }
}

/// A [`Sorted`] stream with one record of look-ahead, for merging.
pub struct Cursor<V> {
    sorted: Sorted<V>,
    head: Option<(String, V)>,
}

impl<V: Payload> Cursor<V> {
    /// Start reading `sorted`.
    pub fn new(mut sorted: Sorted<V>) -> io::Result<Cursor<V>> {
        let head = sorted.next_record()?;
        Ok(Cursor { sorted, head })
    }

    /// The next record if its id is below `bound` (every record left when `None`).
    pub fn next_below(&mut self, bound: Option<&str>) -> io::Result<Option<(String, V)>> {
        match (&self.head, bound) {
            (Some((id, _)), Some(b)) if id.as_str() >= b => Ok(None),
            (None, _) => Ok(None),
            _ => {
                let next = self.sorted.next_record()?;
                Ok(std::mem::replace(&mut self.head, next))
            }
        }
    }

    /// The last of the records with exactly this id (records before it with the same id
    /// are skipped: a repeated `SCAN` key).
    pub fn take_equal(&mut self, id: &str) -> io::Result<Option<V>> {
        self.take_equal_with(id, |_, _| true)
    }

    /// One of the records with exactly this id: a later one replaces the one kept so far
    /// when `replaces(later, kept)` says so (e.g. a higher version of one entity).
    pub fn take_equal_with(
        &mut self,
        id: &str,
        mut replaces: impl FnMut(&V, &V) -> bool,
    ) -> io::Result<Option<V>> {
        let mut out: Option<V> = None;
        while self.head.as_ref().is_some_and(|(h, _)| h == id) {
            let next = self.sorted.next_record()?;
            if let Some((_, v)) = std::mem::replace(&mut self.head, next) {
                if out.as_ref().is_none_or(|kept| replaces(&v, kept)) {
                    out = Some(v);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(mut s: Sorted<i64>) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        while let Some(r) = s.next_record().unwrap() {
            out.push(r);
        }
        out
    }

    #[test]
    fn sorts_in_memory_and_across_runs_alike() {
        let ids: Vec<String> = (0..1_000u32)
            .map(|i| format!("k{}", (i * 7919) % 1_000))
            .collect();
        let mut want: Vec<(String, i64)> =
            ids.iter().cloned().zip(0..).collect::<Vec<(String, i64)>>();
        want.sort();
        for limit in [10_000, 64, 1] {
            let mut s = Sorter::new(limit);
            for (id, v) in ids.iter().cloned().zip(0..) {
                s.push(id, v).unwrap();
            }
            assert_eq!(drain(s.finish().unwrap()), want, "limit {limit}");
        }
    }

    #[test]
    fn cursor_merges_below_a_bound_and_skips_repeats() {
        let mut s = Sorter::new(2);
        for (id, v) in [("b", 1), ("a", 1), ("c", 1), ("b", 2), ("e", 1)] {
            s.push(id.to_owned(), v).unwrap();
        }
        let mut c = Cursor::new(s.finish().unwrap()).unwrap();
        assert_eq!(c.next_below(Some("b")).unwrap(), Some(("a".into(), 1)));
        assert_eq!(c.next_below(Some("b")).unwrap(), None);
        assert!(c.take_equal("b").unwrap().is_some());
        assert_eq!(c.take_equal("b").unwrap(), None);
        assert_eq!(c.next_below(Some("d")).unwrap(), Some(("c".into(), 1)));
        assert_eq!(c.take_equal("d").unwrap(), None);
        assert_eq!(c.next_below(None).unwrap(), Some(("e".into(), 1)));
        assert_eq!(c.next_below(None).unwrap(), None);
    }
}
