//! Records a well-behaved producer can never write, for the dead-letter tests of the
//! runtime and of every sink: each breaks exactly one layer of the wire format.

use syncline_event::{ChangeEvent, Limits, Op};

/// A fingerprint no schema has.
pub const UNKNOWN_FINGERPRINT: u64 = 0x0123_4567_89ab_cdef;

/// `record` (a valid single-object encoding) claiming the writer schema
/// [`UNKNOWN_FINGERPRINT`].
pub fn with_unknown_fingerprint(record: &[u8]) -> Vec<u8> {
    let mut out = record.to_vec();
    if let Some(fp) = out.get_mut(2..10) {
        fp.copy_from_slice(&UNKNOWN_FINGERPRINT.to_le_bytes());
    }
    out
}

/// A record whose Avro framing is valid but whose UPSERT document is not JSON: a valid
/// document is encoded, then its bytes are overwritten by as many bytes of non-JSON, so
/// only the document check can catch it.
pub fn document_not_json(entity_type: &str, entity_id: &str) -> Vec<u8> {
    const VALID: &[u8] = br#"{"a":"0123456789"}"#;
    const BROKEN: &[u8] = b"{not json at all!}";
    let event = ChangeEvent::new(
        entity_type,
        entity_id,
        Op::Upsert,
        1,
        "testkit",
        Some(String::from_utf8_lossy(VALID).into_owned()),
    );
    let mut out = syncline_event::encode(&event, &Limits::default()).unwrap_or_default();
    if let Some(at) = out.windows(VALID.len()).position(|w| w == VALID) {
        out[at..at + BROKEN.len()].copy_from_slice(BROKEN);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncline_event::DecodeError;

    #[test]
    fn each_record_fails_for_its_own_reason() {
        let limits = Limits::default();
        let bad = document_not_json("product", "x");
        assert_eq!(
            syncline_event::decode(&bad, &limits).unwrap_err().class(),
            "invalid_document"
        );
        let good = syncline_event::encode(
            &ChangeEvent::new("product", "x", Op::Delete, 1, "t", None),
            &limits,
        )
        .unwrap();
        assert_eq!(
            syncline_event::decode(&with_unknown_fingerprint(&good), &limits),
            Err(DecodeError::UnknownFingerprint(UNKNOWN_FINGERPRINT))
        );
    }
}
