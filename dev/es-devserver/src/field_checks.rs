//! Per-index options of document checking (from index settings) and the value checks of
//! field types with rules of their own: `ip`, `date_nanos` (1970 to 2262), and
//! `ignore_malformed`.

use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::error::{EsError, EsResult};

/// Index settings that change how documents are checked and mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOpts {
    /// `index.mapping.dynamic_strings.auto_text` (default `true`): a new string field is
    /// `text` with a `keyword` sub-field; `false` maps it as a plain `keyword`.
    pub auto_text: bool,
    /// `index.mapping.ignore_malformed`: the default of `ignore_malformed` for the field
    /// types that support it.
    pub ignore_malformed: bool,
    /// `index.mapping.field_name_length.limit` (unlimited by default).
    pub field_name_limit: Option<u64>,
    /// `index.mapping.field_name_length.ignore_dynamic_beyond_limit`: dynamic fields whose
    /// name is over the limit are left out of the mapping instead of failing the document.
    pub ignore_long_dynamic_names: bool,
}

impl Default for CheckOpts {
    fn default() -> Self {
        CheckOpts {
            auto_text: true,
            ignore_malformed: false,
            field_name_limit: None,
            ignore_long_dynamic_names: false,
        }
    }
}

/// The message for a field name over `index.mapping.field_name_length.limit`.
pub fn long_name_message(name: &str, limit: u64) -> String {
    format!("Field name [{name}] is longer than the limit of [{limit}] characters")
}

/// Rejects a mapping with a field name over `index.mapping.field_name_length.limit` (each
/// field's own name is measured, not its full path).
pub fn check_mapping_names(m: &crate::mapping::Mapping, limit: Option<u64>) -> EsResult<()> {
    fn walk(
        props: &std::collections::BTreeMap<String, crate::mapping::Field>,
        limit: u64,
    ) -> EsResult<()> {
        for (name, f) in props {
            for part in name.split('.') {
                if part.chars().count() as u64 > limit {
                    return Err(EsError::illegal_argument(long_name_message(part, limit)));
                }
            }
            for sub in f.fields.keys() {
                if sub.chars().count() as u64 > limit {
                    return Err(EsError::illegal_argument(long_name_message(sub, limit)));
                }
            }
            walk(&f.properties, limit)?;
        }
        Ok(())
    }
    match limit {
        Some(l) => walk(&m.properties, l),
        None => Ok(()),
    }
}

/// Whether a field of this type takes `ignore_malformed`.
pub fn supports_ignore_malformed(type_name: &str) -> bool {
    matches!(
        type_name,
        "long"
            | "integer"
            | "short"
            | "byte"
            | "unsigned_long"
            | "double"
            | "float"
            | "half_float"
            | "scaled_float"
            | "date"
            | "date_nanos"
            | "ip"
            | "boolean"
            | "geo_point"
    )
}

/// Whether malformed values of this field are kept in `_source` and left unindexed.
pub fn ignores_malformed(type_name: &str, params: &Map<String, Value>, opts: &CheckOpts) -> bool {
    if !supports_ignore_malformed(type_name) {
        return false;
    }
    match params.get("ignore_malformed") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => opts.ignore_malformed,
    }
}

/// Parses an IP address as Elasticsearch's `InetAddresses.forString` does (IPv4 dotted
/// quads, IPv6 in any of its forms).
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok()
}

/// The canonical text of an IP address (how doc values and `fields` print it).
pub fn canonical_ip(s: &str) -> Option<String> {
    parse_ip(s).map(|ip| match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    })
}

/// Why a value is not an IP address, or `None` when it is.
pub fn ip_mismatch(text: &str) -> Option<String> {
    match parse_ip(text) {
        Some(_) => None,
        None => Some(format!("'{text}' is not an IP string literal.")),
    }
}

/// Nanoseconds of the latest instant `date_nanos` can hold (2262-04-11T23:47:16.854775807Z).
pub const MAX_NANOS: i128 = i64::MAX as i128;

/// The digits of a date's fraction of a second beyond the milliseconds, as nanoseconds
/// (`...:04.828456Z` has 456,000).
pub fn sub_millis_nanos(text: &str) -> u32 {
    let b = text.as_bytes();
    let Some(sep) = b
        .iter()
        .enumerate()
        .skip(10)
        .find(|(i, c)| {
            (**c == b'.' || **c == b',')
                && b.get(i.wrapping_sub(1)).is_some_and(u8::is_ascii_digit)
                && b.get(i + 1).is_some_and(u8::is_ascii_digit)
        })
        .map(|(i, _)| i)
    else {
        return 0;
    };
    let digits: Vec<u32> = b
        .iter()
        .skip(sep + 1)
        .take_while(|c| c.is_ascii_digit())
        .take(9)
        .map(|c| u32::from(c - b'0'))
        .collect();
    let mut n: u32 = 0;
    for i in 3..9 {
        n = n * 10 + digits.get(i).copied().unwrap_or(0);
    }
    n
}

/// An instant as Java's `Instant.toString()` prints it: seconds always, the fraction only
/// when not zero, in groups of three digits.
pub fn instant_string(nanos: i128) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let ms = i64::try_from(secs).unwrap_or(0).saturating_mul(1000);
    let base = crate::names::format_date(ms);
    // "yyyy-MM-ddTHH:mm:ss.SSSZ" without ".SSSZ".
    let head = base.get(..base.len().saturating_sub(5)).unwrap_or(&base);
    if frac == 0 {
        format!("{head}Z")
    } else if frac % 1_000_000 == 0 {
        format!("{head}.{:03}Z", frac / 1_000_000)
    } else if frac % 1_000 == 0 {
        format!("{head}.{:06}Z", frac / 1_000)
    } else {
        format!("{head}.{frac:09}Z")
    }
}

/// Why a parsed date does not fit `date_nanos`, or `None` when it does.
pub fn date_nanos_mismatch(nanos: i128) -> Option<String> {
    let shown = instant_string(nanos);
    if nanos < 0 {
        Some(format!(
            "date[{shown}] is before the epoch in 1970 and cannot be stored in nanosecond resolution"
        ))
    } else if nanos > MAX_NANOS {
        Some(format!(
            "date[{shown}] is after 2262-04-11T23:47:16.854775807 and cannot be stored in nanosecond resolution"
        ))
    } else {
        None
    }
}

/// The preview of an object value in `document_parsing_exception` reasons, as Java prints a
/// map (`{object=wow}`).
pub fn java_preview(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", java_preview(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(java_preview).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips() {
        assert!(ip_mismatch("192.168.0.1").is_none());
        assert!(ip_mismatch("::1").is_none());
        assert_eq!(
            ip_mismatch("garbage").as_deref(),
            Some("'garbage' is not an IP string literal.")
        );
        assert!(ip_mismatch("7").is_some());
        assert_eq!(canonical_ip("::ffff:10.0.0.1").as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn nanos() {
        assert_eq!(sub_millis_nanos("2021-06-11T04:30:04.828456Z"), 456_000);
        assert_eq!(sub_millis_nanos("2021-06-11 04:30:04.828456"), 456_000);
        assert_eq!(sub_millis_nanos("2021-06-11T04:30:04.123456789Z"), 456_789);
        assert_eq!(sub_millis_nanos("2021-06-11"), 0);
        assert_eq!(
            instant_string(1_623_385_804_828_456_000),
            "2021-06-11T04:30:04.828456Z"
        );
        assert_eq!(instant_string(0), "1970-01-01T00:00:00Z");
        assert!(date_nanos_mismatch(-1).is_some());
        assert!(date_nanos_mismatch(MAX_NANOS + 1).is_some());
        assert!(date_nanos_mismatch(5).is_none());
    }
}
