//! Avro binary body of the *current* schema, read and written directly.
//!
//! Why: going through apache-avro's generic `Value` tree costs several microseconds per
//! record (allocations for every field name and value), the largest per-record cost in
//! the consumers. The current schema is fixed at compile time, so its body is read and
//! written here field by field; records written with any other known schema still go
//! through apache-avro's schema resolution. Tests check byte-for-byte agreement with
//! apache-avro in both directions.
//!
//! Every length and count read from the input is checked against the bytes that remain
//! before anything is allocated, so hostile input costs at most its own size.

use crate::model::{ChangeEvent, Op};
use crate::view::{EventRef, Pairs, Strings};

/// Why a body could not be read. Converted into `DecodeError` by the codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Input ended or a value is malformed (bad varint, length, UTF-8, index).
    Malformed(String),
    /// Bytes left after the record.
    Trailing(usize),
}

fn malformed(what: &str) -> BodyError {
    BodyError::Malformed(what.to_owned())
}

/// Reads Avro primitives off the front of a byte slice.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn long(&mut self, field: &str) -> Result<i64, BodyError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| malformed(&format!("{field}: input ends inside a varint")))?;
            self.buf = rest;
            // Bits beyond 64 in a 10th byte are dropped, as the Java and apache-avro
            // readers do, so every Avro implementation reads the same value.
            value |= u64::from(b & 0x7f).wrapping_shl(7 * i);
            if b & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(malformed(&format!("{field}: varint longer than 10 bytes")))
    }

    fn len(&mut self, field: &str) -> Result<usize, BodyError> {
        let n = self.long(field)?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.buf.len())
            .ok_or_else(|| {
                malformed(&format!(
                    "{field}: length {n} with {} bytes left",
                    self.buf.len()
                ))
            })
    }

    /// A string, borrowed from the input.
    pub(crate) fn str(&mut self, field: &str) -> Result<&'a str, BodyError> {
        let n = self.len(field)?;
        let (s, rest) = self.buf.split_at(n);
        self.buf = rest;
        std::str::from_utf8(s).map_err(|_| malformed(&format!("{field}: string is not UTF-8")))
    }

    /// The blocks of an array (`per_item` 1) or map (`per_item` 2) of strings, checked,
    /// and its item count.
    fn string_blocks(
        &mut self,
        field: &str,
        per_item: usize,
    ) -> Result<(&'a [u8], usize), BodyError> {
        let start = self.buf;
        let mut items = 0usize;
        loop {
            let n = self.block_count(field)?;
            if n == 0 {
                break;
            }
            for _ in 0..n.saturating_mul(per_item) {
                self.str(field)?;
            }
            items = items.saturating_add(n);
        }
        let used = start.len() - self.buf.len();
        Ok((start.get(..used).unwrap_or_default(), items))
    }

    /// Reads the item count of the next block of an array or map; 0 ends the value.
    /// Every item takes at least one byte, which bounds a believable count.
    pub(crate) fn block_count(&mut self, field: &str) -> Result<usize, BodyError> {
        let n = self.long(field)?;
        let count = if n < 0 {
            // A negative count is followed by the block's size in bytes, which we do not
            // need: the items are read one by one anyway.
            self.long(field)?;
            n.checked_neg()
                .ok_or_else(|| malformed(&format!("{field}: block count overflows")))?
        } else {
            n
        };
        usize::try_from(count)
            .ok()
            .filter(|&c| c <= self.buf.len())
            .ok_or_else(|| malformed(&format!("{field}: block of {count} items is impossible")))
    }
}

/// Read a body written with the current schema, borrowing its strings.
pub(crate) fn read_view(body: &[u8]) -> Result<EventRef<'_>, BodyError> {
    let mut r = Reader::new(body);
    let event_id = r.str("event_id")?;
    let entity_type = r.str("entity_type")?;
    let entity_id = r.str("entity_id")?;
    let op = match r.long("op")? {
        0 => Op::Upsert,
        1 => Op::Delete,
        i => return Err(malformed(&format!("op: enum index {i} out of range"))),
    };
    let version = r.long("version")?;
    let occurred_at = r.long("occurred_at")?;
    let source = r.str("source")?;
    let document = match r.long("document")? {
        0 => None,
        1 => Some(r.str("document")?),
        i => {
            return Err(malformed(&format!(
                "document: union index {i} out of range"
            )))
        }
    };
    let (blocks, len) = r.string_blocks("invalidate", 1)?;
    let invalidate = Strings::avro(blocks, len);
    let (blocks, len) = r.string_blocks("attributes", 2)?;
    let attributes = Pairs::avro(blocks, len);
    if !r.buf.is_empty() {
        return Err(BodyError::Trailing(r.buf.len()));
    }
    Ok(EventRef {
        event_id,
        entity_type,
        entity_id,
        op,
        version,
        occurred_at,
        source,
        document,
        invalidate,
        attributes,
    })
}

fn put_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

/// Append the body of `e` in the current schema (the same bytes apache-avro writes).
pub(crate) fn write(e: &ChangeEvent, out: &mut Vec<u8>) {
    put_str(out, &e.event_id);
    put_str(out, &e.entity_type);
    put_str(out, &e.entity_id);
    put_long(
        out,
        match e.op {
            Op::Upsert => 0,
            Op::Delete => 1,
        },
    );
    put_long(out, e.version);
    put_long(out, e.occurred_at);
    put_str(out, &e.source);
    match &e.document {
        None => put_long(out, 0),
        Some(d) => {
            put_long(out, 1);
            put_str(out, d);
        }
    }
    if !e.invalidate.is_empty() {
        put_long(out, e.invalidate.len() as i64);
        for t in &e.invalidate {
            put_str(out, t);
        }
    }
    put_long(out, 0);
    if !e.attributes.is_empty() {
        put_long(out, e.attributes.len() as i64);
        for (k, v) in &e.attributes {
            put_str(out, k);
            put_str(out, v);
        }
    }
    put_long(out, 0);
}

/// Upper bound of the body size of `e`, for one allocation per record.
pub(crate) fn size_hint(e: &ChangeEvent) -> usize {
    let strs = e.event_id.len()
        + e.entity_type.len()
        + e.entity_id.len()
        + e.source.len()
        + e.document.as_ref().map_or(0, String::len)
        + e.invalidate.iter().map(String::len).sum::<usize>()
        + e.attributes
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    let items = 8 + e.invalidate.len() + 2 * e.attributes.len();
    strs + 10 * (items + 4)
}
