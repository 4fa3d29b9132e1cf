//! A change event borrowed from the bytes it was decoded from.
//!
//! Why: the consumers decode every record of a batch and hand the events to a sink that
//! only reads them (into a bulk request body or a Redis command). Decoding into owned
//! `String`s cost five allocations and a copy of the document per record, the largest
//! part of the allocator's share (about a quarter) of the invalidator's CPU in profiles.
//! An [`EventRef`] borrows the record's bytes instead; [`ChangeEvent::view`] gives the same
//! view of an owned event, so a sink has one input type whatever the event's origin.

use std::collections::BTreeMap;
use std::fmt;

use crate::binary::Reader;
use crate::model::{ChangeEvent, Op};

/// [`ChangeEvent`] with every string borrowed: what a sink reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventRef<'a> {
    /// See [`ChangeEvent::event_id`].
    pub event_id: &'a str,
    /// See [`ChangeEvent::entity_type`].
    pub entity_type: &'a str,
    /// See [`ChangeEvent::entity_id`].
    pub entity_id: &'a str,
    /// See [`ChangeEvent::op`].
    pub op: Op,
    /// See [`ChangeEvent::version`].
    pub version: i64,
    /// See [`ChangeEvent::occurred_at`].
    pub occurred_at: i64,
    /// See [`ChangeEvent::source`].
    pub source: &'a str,
    /// See [`ChangeEvent::document`].
    pub document: Option<&'a str>,
    /// See [`ChangeEvent::invalidate`].
    pub invalidate: Strings<'a>,
    /// See [`ChangeEvent::attributes`].
    pub attributes: Pairs<'a>,
}

impl EventRef<'_> {
    /// The Kafka record key: `entity_type:entity_id`, so one entity stays on one partition.
    pub fn key(&self) -> String {
        let mut key = String::with_capacity(self.entity_type.len() + 1 + self.entity_id.len());
        self.write_key(&mut key);
        key
    }

    /// [`EventRef::key`] into `out` (cleared first), for a caller that reuses one buffer
    /// across many events.
    pub fn write_key(&self, out: &mut String) {
        out.clear();
        out.push_str(self.entity_type);
        out.push(':');
        out.push_str(self.entity_id);
    }

    /// An owned copy.
    pub fn to_owned_event(&self) -> ChangeEvent {
        ChangeEvent {
            event_id: self.event_id.to_owned(),
            entity_type: self.entity_type.to_owned(),
            entity_id: self.entity_id.to_owned(),
            op: self.op,
            version: self.version,
            occurred_at: self.occurred_at,
            source: self.source.to_owned(),
            document: self.document.map(str::to_owned),
            invalidate: self.invalidate.iter().map(str::to_owned).collect(),
            attributes: self
                .attributes
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }
}

impl ChangeEvent {
    /// This event as a view, the type sinks take.
    pub fn view(&self) -> EventRef<'_> {
        EventRef {
            event_id: &self.event_id,
            entity_type: &self.entity_type,
            entity_id: &self.entity_id,
            op: self.op,
            version: self.version,
            occurred_at: self.occurred_at,
            source: &self.source,
            document: self.document.as_deref(),
            invalidate: Strings(StringsRepr::Owned(&self.invalidate)),
            attributes: Pairs(PairsRepr::Owned(&self.attributes)),
        }
    }
}

/// A list of strings (`invalidate`): either still Avro-encoded in a record or a slice of
/// an owned event's.
#[derive(Clone, Copy)]
pub struct Strings<'a>(StringsRepr<'a>);

#[derive(Clone, Copy)]
enum StringsRepr<'a> {
    /// The array's blocks, already checked by the decoder, and its item count.
    Avro {
        blocks: &'a [u8],
        len: usize,
    },
    Owned(&'a [String]),
}

impl<'a> Strings<'a> {
    /// An Avro array of strings whose blocks the decoder has checked.
    pub(crate) fn avro(blocks: &'a [u8], len: usize) -> Self {
        Strings(StringsRepr::Avro { blocks, len })
    }

    /// Number of strings.
    pub fn len(&self) -> usize {
        match self.0 {
            StringsRepr::Avro { len, .. } => len,
            StringsRepr::Owned(s) => s.len(),
        }
    }

    /// No strings?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The strings in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let (avro, owned) = match self.0 {
            StringsRepr::Avro { blocks, .. } => (Some(AvroStrings::new(blocks, 1)), None),
            StringsRepr::Owned(s) => (None, Some(s.iter().map(String::as_str))),
        };
        avro.into_iter()
            .flatten()
            .chain(owned.into_iter().flatten())
    }
}

/// A string map (`attributes`): either still Avro-encoded in a record or an owned event's.
#[derive(Clone, Copy)]
pub struct Pairs<'a>(PairsRepr<'a>);

#[derive(Clone, Copy)]
enum PairsRepr<'a> {
    /// The map's blocks, already checked by the decoder, and its entry count.
    Avro {
        blocks: &'a [u8],
        len: usize,
    },
    Owned(&'a BTreeMap<String, String>),
}

impl<'a> Pairs<'a> {
    /// An Avro map of strings whose blocks the decoder has checked.
    pub(crate) fn avro(blocks: &'a [u8], len: usize) -> Self {
        Pairs(PairsRepr::Avro { blocks, len })
    }

    /// Number of entries as written (a map written with a repeated key counts it twice;
    /// [`EventRef::to_owned_event`] keeps the last, as Avro readers do).
    pub fn len(&self) -> usize {
        match self.0 {
            PairsRepr::Avro { len, .. } => len,
            PairsRepr::Owned(m) => m.len(),
        }
    }

    /// No entries?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries in written order (owned: key order).
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let (avro, owned) = match self.0 {
            PairsRepr::Avro { blocks, .. } => (Some(AvroStrings::new(blocks, 2)), None),
            PairsRepr::Owned(m) => (None, Some(m.iter().map(|(k, v)| (k.as_str(), v.as_str())))),
        };
        let avro = avro.into_iter().flat_map(|mut strings| {
            std::iter::from_fn(move || Some((strings.next()?, strings.next()?)))
        });
        avro.chain(owned.into_iter().flatten())
    }
}

/// The strings of an Avro array (`per_item` 1) or map (`per_item` 2) of strings, block by
/// block. The decoder checked these bytes (lengths, UTF-8) before handing them out, so a
/// failure here cannot happen; it ends the iteration rather than panicking.
struct AvroStrings<'a> {
    reader: Reader<'a>,
    /// Strings left in the current block.
    left: usize,
    per_item: usize,
}

impl<'a> AvroStrings<'a> {
    fn new(blocks: &'a [u8], per_item: usize) -> Self {
        AvroStrings {
            reader: Reader::new(blocks),
            left: 0,
            per_item,
        }
    }
}

impl<'a> Iterator for AvroStrings<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.left == 0 {
            let items = self.reader.block_count("").ok()?;
            self.left = items.checked_mul(self.per_item)?;
            if self.left == 0 {
                return None;
            }
        }
        self.left -= 1;
        self.reader.str("").ok()
    }
}

impl fmt::Debug for Strings<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for Strings<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl fmt::Debug for Pairs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl PartialEq for Pairs<'_> {
    /// Equal as maps (the last of a repeated key wins, as when decoded into an owned event).
    fn eq(&self, other: &Self) -> bool {
        let map = |p: &Self| p.iter().collect::<BTreeMap<_, _>>();
        map(self) == map(other)
    }
}
