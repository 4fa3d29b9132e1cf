//! The record value: Avro single-object encoding of a [`ChangeEvent`].
//!
//! `syncline_event::encode` is the reference encoder. It goes through apache-avro's generic
//! `Value` tree, which validates and resolves the schema on every call (about 7 µs for a
//! 1 KiB event on the development machine, most of the producer's CPU budget). The
//! producer therefore writes the current schema's binary form directly (about 0.3 µs),
//! and keeps the reference encoder as the authority:
//!
//! - [`Encoder::new`] encodes sample events with both encoders when a producer is created
//!   and uses the direct one only when the bytes are identical (same fingerprint, same
//!   body); otherwise, e.g. after a schema change this file was not taught, every event goes
//!   through `syncline_event::encode`;
//! - the tests compare both encoders byte for byte over generated events.
//!
//! Either way the event is validated first (`ChangeEvent::validate`), and the bytes are
//! those of `syncline_event::encode`, except that map entries (`attributes`) are written
//! in key order where the reference encoder uses hash order (both decode to the same
//! event).

use syncline_event::codec::{SchemaRegistry, MAGIC};
use syncline_event::{ChangeEvent, EncodeError, Limits, Op};

/// Encodes validated events for the wire.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Encoder {
    /// Fingerprint of the current schema, when the direct encoder matches the reference.
    direct: Option<u64>,
}

impl Encoder {
    /// Check the direct encoder against `syncline_event::encode` and pick one.
    pub(crate) fn new() -> Encoder {
        let fingerprint = SchemaRegistry::builtin().reader_fingerprint();
        let limits = Limits::default();
        let matches = samples().iter().all(|e| {
            let mut direct = Vec::new();
            encode_direct(e, fingerprint, &mut direct);
            syncline_event::encode(e, &limits).is_ok_and(|reference| reference == direct)
        });
        if !matches {
            tracing::warn!(
                "the direct Avro encoder does not match syncline_event::encode for the current \
                 schema; using syncline_event::encode (slower)"
            );
        }
        Encoder {
            direct: matches.then_some(fingerprint),
        }
    }

    /// The reference encoder only.
    #[cfg(test)]
    pub(crate) fn reference() -> Encoder {
        Encoder { direct: None }
    }

    /// Is the direct encoder in use?
    #[cfg(test)]
    pub(crate) fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Validate and encode.
    #[cfg(test)]
    pub(crate) fn encode(
        &self,
        event: &ChangeEvent,
        limits: &Limits,
    ) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode_into(event, limits, &mut out)?;
        Ok(out)
    }

    /// Validate and append the encoded event to `out`.
    pub(crate) fn encode_into(
        &self,
        event: &ChangeEvent,
        limits: &Limits,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        match self.direct {
            Some(fp) => {
                event.validate(limits)?;
                out.reserve(encoded_len_hint(event));
                encode_direct(event, fp, out);
            }
            None => out.extend_from_slice(&syncline_event::encode(event, limits)?),
        }
        Ok(())
    }
}

/// Events covering every field shape (at most one attribute, so that the reference
/// encoder's hash-ordered map is deterministic).
fn samples() -> Vec<ChangeEvent> {
    let mut upsert = ChangeEvent::new(
        "product",
        "p-0001",
        Op::Upsert,
        1_234_567_890_123,
        "catalog-service",
        Some(r#"{"name":"Désk lamp","price":39.5,"tags":["a","b"]}"#.into()),
    );
    upsert.event_id = "0190a5a4-3c1e-7cc2-9a55-2f1b0c9d8e7f".into();
    upsert.occurred_at = 1_700_000_000_123_456;
    upsert.invalidate = vec!["search:category:lamps".into(), "home".into()];
    upsert.attributes.insert("trace".into(), "x".repeat(200));
    let mut delete = ChangeEvent::new("order_line-2", "ü".repeat(100), Op::Delete, 0, "s", None);
    delete.occurred_at = -1;
    let mut big = ChangeEvent::new(
        "t",
        "1",
        Op::Upsert,
        i64::MAX,
        "",
        Some(format!(r#"{{"k":"{}"}}"#, "v".repeat(70_000))),
    );
    big.occurred_at = i64::MIN;
    vec![upsert, delete, big]
}

fn encoded_len_hint(e: &ChangeEvent) -> usize {
    64 + e.event_id.len()
        + e.entity_type.len()
        + e.entity_id.len()
        + e.source.len()
        + e.document.as_ref().map_or(0, |d| d.len())
        + e.invalidate.iter().map(|t| t.len() + 2).sum::<usize>()
        + e.attributes
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum::<usize>()
}

/// Avro `long`/`int`: zig-zag, then base-128 varint.
fn write_long(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    write_long(s.len() as i64, out);
    out.extend_from_slice(s.as_bytes());
}

/// Single-object header and the body in schema field order (schemas/change_event.avsc).
fn encode_direct(e: &ChangeEvent, fingerprint: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&fingerprint.to_le_bytes());
    write_str(&e.event_id, out);
    write_str(&e.entity_type, out);
    write_str(&e.entity_id, out);
    write_long(
        match e.op {
            Op::Upsert => 0,
            Op::Delete => 1,
        },
        out,
    );
    write_long(e.version, out);
    write_long(e.occurred_at, out);
    write_str(&e.source, out);
    match &e.document {
        None => write_long(0, out),
        Some(doc) => {
            write_long(1, out);
            write_str(doc, out);
        }
    }
    if !e.invalidate.is_empty() {
        write_long(e.invalidate.len() as i64, out);
        for tag in &e.invalidate {
            write_str(tag, out);
        }
    }
    write_long(0, out);
    if !e.attributes.is_empty() {
        write_long(e.attributes.len() as i64, out);
        for (k, v) in &e.attributes {
            write_str(k, out);
            write_str(v, out);
        }
    }
    write_long(0, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn direct_encoder_is_selected_for_the_current_schema() {
        assert!(Encoder::new().is_direct());
    }

    #[test]
    fn varints_match_the_avro_spec() {
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (
                i64::MAX,
                &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
            (
                i64::MIN,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for (n, bytes) in cases {
            let mut out = Vec::new();
            write_long(*n, &mut out);
            assert_eq!(&out, bytes, "{n}");
        }
    }

    #[test]
    fn invalid_events_are_refused_by_both() {
        let e = ChangeEvent::new("Bad Type", "1", Op::Delete, 1, "s", None);
        let limits = Limits::default();
        assert!(Encoder::new().encode(&e, &limits).is_err());
        assert!(Encoder::reference().encode(&e, &limits).is_err());
    }

    fn arb_event() -> impl Strategy<Value = ChangeEvent> {
        (
            "[a-z0-9][a-z0-9_-]{0,20}",
            "\\PC{1,40}",
            any::<bool>(),
            0..i64::MAX,
            any::<i64>(),
            "\\PC{0,20}",
            "\\PC{0,300}",
            proptest::collection::vec("\\PC{0,30}", 0..4),
            proptest::collection::btree_map("\\PC{0,10}", "\\PC{0,30}", 0..4),
        )
            .prop_map(
                |(et, id, upsert, version, at, source, text, invalidate, attributes)| {
                    let doc = serde_json::json!({ "text": text, "n": version }).to_string();
                    let mut e = ChangeEvent::new(
                        et,
                        id,
                        if upsert { Op::Upsert } else { Op::Delete },
                        version,
                        source,
                        upsert.then_some(doc),
                    );
                    e.occurred_at = at;
                    e.invalidate = invalidate;
                    e.attributes = attributes;
                    e
                },
            )
    }

    proptest! {
        #[test]
        fn direct_bytes_equal_the_reference_and_decode_back(e in arb_event()) {
            let limits = Limits::default();
            let direct = Encoder::new().encode(&e, &limits).unwrap();
            let reference = syncline_event::encode(&e, &limits).unwrap();
            if e.attributes.len() <= 1 {
                prop_assert_eq!(&direct, &reference);
            } else {
                // Same length; only the (hash-ordered) map entries may be permuted.
                prop_assert_eq!(direct.len(), reference.len());
            }
            prop_assert_eq!(syncline_event::decode(&direct, &limits).unwrap(), e);
        }
    }
}
