//! The cached value format: `<version>\n<document>`.
//!
//! The version is the decimal `i64` (>= 0) of the change event or loader that produced the
//! document; the document follows the first newline byte-for-byte. One string value (not
//! a hash) keeps a hit to a single `GET`, and lets the scripts read just the version with
//! `GETRANGE key 0 20` without copying the document.

use crate::error::CacheError;

/// One cached entity: its document and the version the document belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entity's version at the source.
    pub version: i64,
    /// The entity's document (JSON text for Syncline events).
    pub document: String,
}

/// Encode an entry in the cached value format.
pub fn encode(version: i64, document: &str) -> Vec<u8> {
    let v = version.to_string();
    let mut out = Vec::with_capacity(v.len() + 1 + document.len());
    out.extend_from_slice(v.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(document.as_bytes());
    out
}

/// Decode a cached value read from `key` (the key is only used in error messages).
pub fn decode(key: &str, raw: &[u8]) -> Result<Entry, CacheError> {
    let malformed = |reason: &str| CacheError::Malformed {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    let mut parts = raw.splitn(2, |b| *b == b'\n');
    let head = parts.next().unwrap_or_default();
    let document = parts
        .next()
        .ok_or_else(|| malformed("no newline after the version"))?;
    let version =
        parse_version(head).ok_or_else(|| malformed("version is not a decimal i64 >= 0"))?;
    let document = std::str::from_utf8(document)
        .map_err(|_| malformed("document is not UTF-8"))?
        .to_owned();
    Ok(Entry { version, document })
}

/// Parse a canonical non-negative decimal version (what the scripts write).
pub fn parse_version(raw: &[u8]) -> Option<i64> {
    if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(raw).ok()?.parse::<i64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_newlines_in_the_document() {
        let raw = encode(7, "{\"a\":\n1}");
        assert_eq!(raw, b"7\n{\"a\":\n1}");
        let e = decode("k", &raw).ok();
        assert_eq!(
            e,
            Some(Entry {
                version: 7,
                document: "{\"a\":\n1}".into()
            })
        );
    }

    #[test]
    fn malformed_values_are_errors() {
        assert!(decode("k", b"no newline").is_err());
        assert!(decode("k", b"-1\n{}").is_err());
        assert!(decode("k", b"x\n{}").is_err());
        assert!(decode("k", b"99999999999999999999\n{}").is_err());
    }
}
