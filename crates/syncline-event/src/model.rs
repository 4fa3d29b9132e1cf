//! The change event as Rust types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What happened to the entity at the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Op {
    /// The entity exists with the event's `document`.
    Upsert,
    /// The entity no longer exists.
    Delete,
}

impl Op {
    /// The Avro enum symbol.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Upsert => "UPSERT",
            Op::Delete => "DELETE",
        }
    }
}

/// One change of one entity at the source of record.
///
/// The JSON form (used by `syncline-publish` and in docs) has the same field names as the
/// Avro schema; `occurred_at` is microseconds since the Unix epoch and `document` is the
/// JSON object itself (not a string).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// Identity of this event (UUID, v7 preferred), for tracing and dedup.
    pub event_id: String,
    /// Entity type: `[a-z0-9][a-z0-9_-]{0,63}`; selects the index alias and key space.
    pub entity_type: String,
    /// Entity id: 1..=512 bytes of UTF-8.
    pub entity_id: String,
    /// Upsert or delete.
    pub op: Op,
    /// Monotonically increasing per entity at the source; the only ordering that matters.
    pub version: i64,
    /// When the change happened at the source, microseconds since the Unix epoch.
    pub occurred_at: i64,
    /// The producing service.
    pub source: String,
    /// The full JSON document (an object) for `Upsert`, `None` for `Delete`.
    #[serde(default, with = "json_document")]
    pub document: Option<String>,
    /// Extra cache tags to invalidate.
    #[serde(default)]
    pub invalidate: Vec<String>,
    /// Free-form metadata.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl ChangeEvent {
    /// The Kafka record key: `entity_type:entity_id` ([`crate::EventRef::key`]).
    pub fn key(&self) -> String {
        self.view().key()
    }

    /// [`ChangeEvent::key`] into `out` (cleared first), for a caller that reuses one
    /// buffer across many events.
    pub fn write_key(&self, out: &mut String) {
        self.view().write_key(out);
    }

    /// A new event with a fresh UUIDv7 `event_id` and `occurred_at` = now.
    pub fn new(
        entity_type: impl Into<String>,
        entity_id: impl Into<String>,
        op: Op,
        version: i64,
        source: impl Into<String>,
        document: Option<String>,
    ) -> Self {
        ChangeEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            entity_type: entity_type.into(),
            entity_id: entity_id.into(),
            op,
            version,
            occurred_at: now_micros(),
            source: source.into(),
            document,
            invalidate: Vec::new(),
            attributes: BTreeMap::new(),
        }
    }
}

impl ChangeEvent {
    /// Give this event a new identity as [`ChangeEvent::new`] would (a fresh UUIDv7
    /// `event_id`, `occurred_at` = now), reusing the `event_id` allocation: for a caller
    /// that fills one event per row of a large stream.
    pub fn renew(&mut self) {
        let mut buf = uuid::Uuid::encode_buffer();
        let id = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf);
        self.event_id.clear();
        self.event_id.push_str(id);
        self.occurred_at = now_micros();
    }
}

/// Microseconds since the Unix epoch, saturating instead of panicking on a skewed clock.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// In JSON Lines the document is written as a JSON value; in the model and on the wire it
/// is the serialized string, so it is kept byte-for-byte as the source produced it.
mod json_document {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::value::RawValue;

    pub fn serialize<S: Serializer>(doc: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        match doc {
            None => s.serialize_none(),
            Some(text) => match RawValue::from_string(text.clone()) {
                Ok(raw) => raw.serialize(s),
                // Not valid JSON: keep it visible as a string rather than failing the dump.
                Err(_) => s.serialize_str(text),
            },
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let raw: Option<Box<RawValue>> = Option::deserialize(d)?;
        Ok(raw.and_then(|r| {
            let text = r.get();
            if text == "null" {
                None
            } else {
                Some(text.to_owned())
            }
        }))
    }
}
