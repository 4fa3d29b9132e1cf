//! `date_nanos` values: nanoseconds since the epoch (1970 to 2262), kept at their full
//! precision for sorting, ranges and printing.

use crate::field_checks::sub_millis_nanos;

const NANOS_PER_MS: i64 = 1_000_000;

/// Nanoseconds from the milliseconds a date parsed to and the text it came from (whose
/// fraction may go beyond milliseconds).
pub fn from_millis(ms: i64, text: Option<&str>) -> i64 {
    let sub = text.map_or(0, sub_millis_nanos);
    ms.saturating_mul(NANOS_PER_MS)
        .saturating_add(i64::from(sub))
}

/// Nanoseconds from an epoch-milliseconds number as written (`1623385804000.5`): its
/// fraction is sub-millisecond, read from the digits so no precision is lost.
pub fn from_epoch_millis(text: &str) -> Option<i64> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.contains(['e', 'E']) || int.contains(['e', 'E']) {
        let f: f64 = text.parse().ok()?;
        return Some((f * NANOS_PER_MS as f64).round() as i64);
    }
    let ms: i64 = int.parse().ok()?;
    let mut sub: i64 = 0;
    for i in 0..6 {
        let d = frac
            .as_bytes()
            .get(i)
            .filter(|c| c.is_ascii_digit())
            .map_or(0, |c| i64::from(c - b'0'));
        sub = sub * 10 + d;
    }
    let sub = if ms < 0 { -sub } else { sub };
    Some(ms.saturating_mul(NANOS_PER_MS).saturating_add(sub))
}

/// Milliseconds of a nanosecond value (rounded down).
pub fn to_millis(nanos: i64) -> i64 {
    nanos.div_euclid(NANOS_PER_MS)
}

/// `strict_date_optional_time_nanos`: ISO 8601 with at least three fraction digits and up to
/// nine (`2021-06-11T04:30:04.828456Z`).
pub fn format_iso(nanos: i64) -> String {
    let ms = to_millis(nanos);
    let base = crate::names::format_date(ms);
    let frac = nanos.rem_euclid(1_000_000_000);
    let mut digits = format!("{frac:09}");
    while digits.len() > 3 && digits.ends_with('0') {
        digits.pop();
    }
    // `format_date` prints "yyyy-MM-ddTHH:mm:ss.SSSZ".
    let head = base.get(..base.len().saturating_sub(5)).unwrap_or(&base);
    format!("{head}.{digits}Z")
}

/// `epoch_millis` of a nanosecond value (`1623385804828.456`).
pub fn format_epoch_millis(nanos: i64) -> String {
    let ms = to_millis(nanos);
    let sub = nanos.rem_euclid(NANOS_PER_MS);
    if sub == 0 {
        ms.to_string()
    } else {
        let mut digits = format!("{sub:06}");
        while digits.ends_with('0') {
            digits.pop();
        }
        format!("{ms}.{digits}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        let n = from_millis(1_623_385_804_828, Some("2021-06-11T04:30:04.828456Z"));
        assert_eq!(n, 1_623_385_804_828_456_000);
        assert_eq!(format_iso(n), "2021-06-11T04:30:04.828456Z");
        assert_eq!(
            format_iso(1_623_385_804_828_000_000),
            "2021-06-11T04:30:04.828Z"
        );
        assert_eq!(format_iso(1_000_000_000), "1970-01-01T00:00:01.000Z");
        assert_eq!(format_epoch_millis(n), "1623385804828.456");
        assert_eq!(format_epoch_millis(5_000_000), "5");
        assert_eq!(from_epoch_millis("1.5"), Some(1_500_000));
        assert_eq!(
            from_epoch_millis("1623385804000.5"),
            Some(1_623_385_804_000_500_000)
        );
        assert_eq!(from_epoch_millis("1e3"), Some(1_000_000_000));
        assert_eq!(to_millis(n), 1_623_385_804_828);
    }
}
