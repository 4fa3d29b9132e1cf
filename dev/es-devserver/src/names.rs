//! Index and alias names: validation, wildcard matching and date-math names
//! (`<logs-{now/d{yyyy.MM.dd}}>`).

use crate::error::{EsError, EsResult};

/// The characters Elasticsearch forbids in index and alias names, printed as it prints them.
pub const INVALID_CHARS_MSG: &str =
    "must not contain the following characters [ , \", *, \\, <, |, ,, >, /, ?]";

const INVALID_CHARS: [char; 10] = ['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ','];

/// Validates a name against the static rules shared by indices and aliases. Returns the
/// description of the first violated rule.
pub fn check_index_or_alias_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.chars().any(|c| INVALID_CHARS.contains(&c)) {
        return Some(INVALID_CHARS_MSG.into());
    }
    if name.contains('#') {
        return Some("must not contain '#'".into());
    }
    if name.contains(':') {
        return Some("must not contain ':'".into());
    }
    if name.starts_with('_') || name.starts_with('-') || name.starts_with('+') {
        return Some("must not start with '_', '-', or '+'".into());
    }
    let bytes = name.len();
    if bytes > 255 {
        return Some(format!("index name is too long, ({bytes} > 255)"));
    }
    if name == "." || name == ".." {
        return Some("must not be '.' or '..'".into());
    }
    None
}

/// Validates a new index name (`invalid_index_name_exception`).
pub fn validate_index_name(name: &str) -> EsResult<()> {
    if let Some(desc) = check_index_or_alias_name(name) {
        return Err(EsError::invalid_index_name(name, &desc));
    }
    if name.to_lowercase() != name {
        return Err(EsError::invalid_index_name(name, "must be lowercase"));
    }
    Ok(())
}

/// Validates an alias name (`invalid_alias_name_exception`).
pub fn validate_alias_name(name: &str) -> EsResult<()> {
    if name.is_empty() {
        return Err(EsError::illegal_argument("alias name is required"));
    }
    if let Some(desc) = check_index_or_alias_name(name) {
        return Err(EsError::invalid_alias_name(name, &desc));
    }
    Ok(())
}

/// Whether `s` contains a wildcard.
pub fn is_wildcard(s: &str) -> bool {
    s.contains('*')
}

/// Simple glob matching with `*` (Elasticsearch's `Regex.simpleMatch`).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    star_match(pattern.as_bytes(), text.as_bytes(), b'*', None)
}

/// Matches `text` against `pattern`, where `star` stands for any run and `one` (if set)
/// for any single element; shared by [`glob_match`] (bytes, `*`) and the `wildcard`
/// query (characters, `*` and `?`).
pub(crate) fn star_match<T: Copy + PartialEq>(p: &[T], t: &[T], star: T, one: Option<T>) -> bool {
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(&c) if c == star => {
                backtrack = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if Some(c) == one || Some(&c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match backtrack {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    backtrack = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    while p.get(pi) == Some(&star) {
        pi += 1;
    }
    pi == p.len()
}

/// Whether some string starting with `prefix` could match `pattern` (used by `_source`
/// filtering to decide whether to descend into an object).
pub fn glob_prefix_viable(pattern: &str, prefix: &str) -> bool {
    // reachable[i]: pattern position i can be reached after consuming the prefix so far.
    let p = pattern.as_bytes();
    let mut reachable = vec![false; p.len() + 1];
    set(&mut reachable, 0);
    close_stars(p, &mut reachable);
    for &c in prefix.as_bytes() {
        let mut next = vec![false; p.len() + 1];
        for (i, r) in reachable.iter().enumerate() {
            if !*r {
                continue;
            }
            match p.get(i) {
                Some(b'*') => set(&mut next, i),
                Some(&pc) if pc == c => set(&mut next, i + 1),
                _ => {}
            }
        }
        close_stars(p, &mut next);
        if !next.iter().any(|x| *x) {
            return false;
        }
        reachable = next;
    }
    true
}

fn set(v: &mut [bool], i: usize) {
    if let Some(x) = v.get_mut(i) {
        *x = true;
    }
}

/// A `*` may match nothing: whoever reaches it also reaches the position after it.
fn close_stars(p: &[u8], reachable: &mut [bool]) {
    for (i, c) in p.iter().enumerate() {
        if *c == b'*' && reachable.get(i).copied().unwrap_or(false) {
            set(reachable, i + 1);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Dates (UTC): civil-from-days and days-from-civil (H. Hinnant's algorithms).

/// Days since 1970-01-01 for a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let d = i64::from(d);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The civil date of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub(crate) fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

/// Broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// Year.
    pub y: i64,
    /// Month 1-12.
    pub mo: u32,
    /// Day 1-31.
    pub d: u32,
    /// Hour.
    pub h: u32,
    /// Minute.
    pub mi: u32,
    /// Second.
    pub s: u32,
    /// Millisecond.
    pub ms: u32,
}

impl Civil {
    /// From epoch milliseconds.
    pub fn from_millis(ms: i64) -> Civil {
        let days = ms.div_euclid(86_400_000);
        let rem = ms.rem_euclid(86_400_000);
        let (y, mo, d) = civil_from_days(days);
        Civil {
            y,
            mo,
            d,
            h: (rem / 3_600_000) as u32,
            mi: ((rem / 60_000) % 60) as u32,
            s: ((rem / 1000) % 60) as u32,
            ms: (rem % 1000) as u32,
        }
    }

    /// To epoch milliseconds.
    pub fn to_millis(&self) -> i64 {
        days_from_civil(self.y, self.mo, self.d) * 86_400_000
            + i64::from(self.h) * 3_600_000
            + i64::from(self.mi) * 60_000
            + i64::from(self.s) * 1000
            + i64::from(self.ms)
    }
}

fn digits(s: &[u8], n: usize) -> Option<u32> {
    if s.len() < n {
        return None;
    }
    let mut v: u32 = 0;
    for &c in s.get(..n)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// Parses `strict_date_optional_time` (`yyyy-MM-dd['T'HH[:mm[:ss[.SSS]]]][Z|±HH:mm]`),
/// also `yyyy/MM/dd[ HH:mm:ss]`, into epoch milliseconds.
pub fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let y = i64::from(digits(b, 4)?);
    let sep = *b.get(4)?;
    if sep != b'-' && sep != b'/' {
        return None;
    }
    let mo = digits(b.get(5..)?, 2)?;
    if *b.get(7)? != sep {
        return None;
    }
    let d = digits(b.get(8..)?, 2)?;
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    let mut c = Civil {
        y,
        mo,
        d,
        h: 0,
        mi: 0,
        s: 0,
        ms: 0,
    };
    let mut i = 10;
    let mut offset_ms: i64 = 0;
    if i < b.len() {
        let t = *b.get(i)?;
        if !(t == b'T' || (sep == b'/' && t == b' ')) {
            return None;
        }
        i += 1;
        c.h = digits(b.get(i..)?, 2)?;
        i += 2;
        if b.get(i) == Some(&b':') {
            c.mi = digits(b.get(i + 1..)?, 2)?;
            i += 3;
            if b.get(i) == Some(&b':') {
                c.s = digits(b.get(i + 1..)?, 2)?;
                i += 3;
                if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
                    i += 1;
                    let start = i;
                    let mut frac: u32 = 0;
                    let mut n = 0;
                    while let Some(ch) = b.get(i).filter(|c| c.is_ascii_digit()) {
                        if n < 3 {
                            frac = frac * 10 + u32::from(ch - b'0');
                            n += 1;
                        }
                        i += 1;
                    }
                    if i == start || i - start > 9 {
                        return None;
                    }
                    while n < 3 {
                        frac *= 10;
                        n += 1;
                    }
                    c.ms = frac;
                }
            }
        }
        if c.h > 23 || c.mi > 59 || c.s > 59 {
            return None;
        }
        match b.get(i) {
            None => {}
            Some(b'Z') if i + 1 == b.len() => {}
            Some(&sign) if sign == b'+' || sign == b'-' => {
                let rest = b.get(i + 1..)?;
                let oh = digits(rest, 2)?;
                let om = match rest.len() {
                    2 => 0,
                    4 => digits(rest.get(2..)?, 2)?,
                    5 if rest.get(2) == Some(&b':') => digits(rest.get(3..)?, 2)?,
                    _ => return None,
                };
                let off = i64::from(oh) * 3_600_000 + i64::from(om) * 60_000;
                offset_ms = if sign == b'+' { off } else { -off };
            }
            _ => return None,
        }
    }
    Some(c.to_millis() - offset_ms)
}

/// Formats epoch millis as `strict_date_optional_time` (`2015-01-01T00:00:00.000Z`).
pub fn format_date(ms: i64) -> String {
    let c = Civil::from_millis(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.y, c.mo, c.d, c.h, c.mi, c.s, c.ms
    )
}

/// Now, in epoch milliseconds.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn round_down(ms: i64, unit: u8) -> Option<i64> {
    let mut c = Civil::from_millis(ms);
    match unit {
        b'y' => {
            c.mo = 1;
            c.d = 1;
            c.h = 0;
            c.mi = 0;
            c.s = 0;
        }
        b'M' => {
            c.d = 1;
            c.h = 0;
            c.mi = 0;
            c.s = 0;
        }
        b'w' => {
            let days = ms.div_euclid(86_400_000);
            // 1970-01-01 was a Thursday; weeks start on Monday.
            let monday = days - (days + 3).rem_euclid(7);
            return Some(monday * 86_400_000);
        }
        b'd' => {
            c.h = 0;
            c.mi = 0;
            c.s = 0;
        }
        b'h' | b'H' => {
            c.mi = 0;
            c.s = 0;
        }
        b'm' => c.s = 0,
        b's' => {}
        _ => return None,
    }
    c.ms = 0;
    Some(c.to_millis())
}

fn add_units(ms: i64, n: i64, unit: u8) -> Option<i64> {
    match unit {
        b'y' | b'M' => {
            let mut c = Civil::from_millis(ms);
            let months = if unit == b'y' { n.checked_mul(12)? } else { n };
            let total =
                c.y.checked_mul(12)?
                    .checked_add(i64::from(c.mo) - 1)?
                    .checked_add(months)?;
            c.y = total.div_euclid(12);
            if c.y.abs() > 100_000_000 {
                return None;
            }
            c.mo = (total.rem_euclid(12) + 1) as u32;
            c.d = c.d.min(days_in_month(c.y, c.mo));
            Some(c.to_millis())
        }
        b'w' => ms.checked_add(n.checked_mul(7 * 86_400_000)?),
        b'd' => ms.checked_add(n.checked_mul(86_400_000)?),
        b'h' | b'H' => ms.checked_add(n.checked_mul(3_600_000)?),
        b'm' => ms.checked_add(n.checked_mul(60_000)?),
        b's' => ms.checked_add(n.checked_mul(1000)?),
        _ => None,
    }
}

/// Evaluates date math (`now-7d/d`, `2022-12-31||/d`, `2022-12-31||+1M`) to epoch millis.
pub fn eval_date_math(expr: &str, now: i64) -> Option<i64> {
    eval_date_math_with(expr, now, false)
}

/// Date math as the upper end of what it names, the way Elasticsearch parses `lte` and
/// `gt` range bounds: `/d` rounds to the last millisecond of the day, and a date without
/// a time (or with a partial one) ends at the last millisecond it covers.
pub fn eval_date_math_round_up(expr: &str, now: i64) -> Option<i64> {
    eval_date_math_with(expr, now, true)
}

fn eval_date_math_with(expr: &str, now: i64, round_up: bool) -> Option<i64> {
    let plain = |s: &str| {
        if round_up {
            crate::datefmt::DateFormat::default_format().parse_round_up(s)
        } else {
            parse_date(s).or_else(|| s.parse::<i64>().ok())
        }
    };
    let (mut t, ops) = if let Some(rest) = expr.strip_prefix("now") {
        (now, rest)
    } else if let Some((anchor, ops)) = expr.split_once("||") {
        (
            parse_date(anchor).or_else(|| anchor.parse::<i64>().ok())?,
            ops,
        )
    } else {
        return plain(expr);
    };
    let b = ops.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let op = *b.get(i)?;
        i += 1;
        match op {
            b'/' => {
                let unit = *b.get(i)?;
                i += 1;
                t = round_down(t, unit)?;
                if round_up {
                    t = add_units(t, 1, unit)?.checked_sub(1)?;
                }
            }
            b'+' | b'-' => {
                let start = i;
                while b.get(i).is_some_and(|c| c.is_ascii_digit()) {
                    i += 1;
                }
                let n: i64 = if i == start {
                    1
                } else {
                    ops.get(start..i)?.parse().ok()?
                };
                let unit = *b.get(i)?;
                i += 1;
                t = add_units(t, if op == b'-' { -n } else { n }, unit)?;
            }
            _ => return None,
        }
    }
    Some(t)
}

/// Formats with a Java-style date pattern (`yyyy`, `uuuu`, `MM`, `dd`, `HH`, `mm`, `ss`).
fn format_java(ms: i64, pattern: &str) -> String {
    let c = Civil::from_millis(ms);
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while let Some(&ch) = chars.get(i) {
        let mut n = 1;
        while chars.get(i + n) == Some(&ch) {
            n += 1;
        }
        let val: Option<i64> = match ch {
            'y' | 'u' | 'Y' => Some(if n == 2 { c.y % 100 } else { c.y }),
            'M' => Some(i64::from(c.mo)),
            'd' => Some(i64::from(c.d)),
            'H' => Some(i64::from(c.h)),
            'm' => Some(i64::from(c.mi)),
            's' => Some(i64::from(c.s)),
            'S' => Some(i64::from(c.ms)),
            _ => None,
        };
        match val {
            Some(v) => out.push_str(&format!("{:0width$}", v, width = n)),
            None => {
                for _ in 0..n {
                    out.push(ch);
                }
            }
        }
        i += n;
    }
    out
}

/// Resolves a date-math index name (`<static-{date_math{format|tz}}>`); other names are
/// returned unchanged.
pub fn resolve_date_math_name(name: &str, now: i64) -> EsResult<String> {
    let Some(inner) = name.strip_prefix('<').and_then(|s| s.strip_suffix('>')) else {
        return Ok(name.to_string());
    };
    let err = || EsError::parse(format!("invalid dynamic name expression [{inner}]"));
    let chars: Vec<char> = inner.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            '\\' => {
                out.push(*chars.get(i + 1).ok_or_else(err)?);
                i += 2;
            }
            '{' => {
                // Find the matching close brace, allowing one nested `{format}`.
                let mut depth = 0;
                let mut j = i;
                loop {
                    match chars.get(j) {
                        None => return Err(err()),
                        Some('{') => depth += 1,
                        Some('}') => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                let expr: String = chars.get(i + 1..j).ok_or_else(err)?.iter().collect();
                let (math, format) = match expr.find('{') {
                    Some(p) => {
                        let fmt = expr
                            .get(p + 1..)
                            .and_then(|f| f.strip_suffix('}'))
                            .ok_or_else(err)?;
                        (expr.get(..p).ok_or_else(err)?.to_string(), fmt.to_string())
                    }
                    None => (expr.clone(), "uuuu.MM.dd".to_string()),
                };
                let format = format.split('|').next().unwrap_or("uuuu.MM.dd").to_string();
                let ms = eval_date_math(&math, now).ok_or_else(err)?;
                out.push_str(&format_java(ms, &format));
                i = j + 1;
            }
            '}' => return Err(err()),
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globbing() {
        assert!(glob_match("test_*", "test_index"));
        assert!(glob_match("*2", "test_index_2"));
        assert!(!glob_match("*2", "test_index"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(!glob_match("a*b*c", "aXbY"));
        assert!(glob_prefix_viable("*.field2", "include."));
        assert!(glob_prefix_viable("include.field1", "include."));
        assert!(!glob_prefix_viable("count", "include."));
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("1970-01-02T00:00:00Z"), Some(86_400_000));
        assert_eq!(parse_date("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_date("2015-13-01"), None);
        assert_eq!(parse_date("hello"), None);
        let ms = parse_date("2022-12-31T10:11:12Z").unwrap_or(0);
        assert_eq!(format_date(ms), "2022-12-31T10:11:12.000Z");
    }

    #[test]
    fn date_math_names() {
        let now = parse_date("2024-03-05T12:00:00Z").unwrap_or(0);
        assert_eq!(
            resolve_date_math_name("<logs_http_{2022-12-31||/d{yyyy-MM-dd}}>", now).ok(),
            Some("logs_http_2022-12-31".to_string())
        );
        assert_eq!(
            resolve_date_math_name("<logs-{now/d}>", now).ok(),
            Some("logs-2024.03.05".to_string())
        );
        assert_eq!(
            resolve_date_math_name("<logs-{now/M-1M{yyyy.MM}}>", now).ok(),
            Some("logs-2024.02".to_string())
        );
        assert_eq!(
            resolve_date_math_name("plain", now).ok(),
            Some("plain".to_string())
        );
    }

    #[test]
    fn name_rules() {
        assert!(validate_index_name("ok-name").is_ok());
        assert!(validate_index_name("Upper").is_err());
        assert!(validate_index_name("_x").is_err());
        assert!(validate_index_name("a*b").is_err());
    }
}
