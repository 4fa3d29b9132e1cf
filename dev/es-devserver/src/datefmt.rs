//! Elasticsearch date formats: the built-in named formats (`strict_date_optional_time`,
//! `epoch_millis`, `date`, `date_time`, `basic_date`, ...) and custom java-time patterns
//! (`yyyy-MM-dd HH:mm:ss.SSS`, `dd/MMM/yyyy`), several of them joined with `||`. Parsing
//! tries each alternative in turn; printing uses the first, as Elasticsearch does. Times
//! without an offset are UTC.

use crate::names::{days_in_month, format_date, parse_date, Civil};

/// The custom `format` of a date field's mapping parameters, if it has one that is not the
/// default (the default takes the fast built-in path).
pub fn field_format(params: &serde_json::Map<String, serde_json::Value>) -> Option<DateFormat> {
    let text = params.get("format")?.as_str()?;
    if text == DEFAULT {
        return None;
    }
    DateFormat::new(text).ok()
}

/// The default format of `date` fields.
pub const DEFAULT: &str = "strict_date_optional_time||epoch_millis";

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Year(usize),
    Month(usize),
    Day(usize),
    Hour24(usize),
    Hour12(usize),
    Minute(usize),
    Second(usize),
    Fraction(usize),
    DayName(usize),
    AmPm,
    /// `Z` (`+0000`), `X`/`XX`/`XXX`/`ZZZZZ` (`Z` for UTC, else `+HH`, `+HHmm`, `+HH:mm`).
    Offset {
        colon: bool,
        iso: bool,
    },
    Lit(String),
    Opt(Vec<Tok>),
}

#[derive(Debug, Clone, PartialEq)]
enum Alt {
    /// `strict_date_optional_time` and its relatives.
    Iso,
    EpochMillis,
    EpochSecond,
    Pattern(Vec<Tok>),
}

/// A parsed `format` (one or more alternatives).
#[derive(Debug, Clone, PartialEq)]
pub struct DateFormat {
    alts: Vec<Alt>,
    text: String,
}

fn named(name: &str) -> Option<Alt> {
    let n = name.strip_prefix("strict_").unwrap_or(name);
    let pattern = match n {
        "date_optional_time" | "date_optional_time_nanos" | "iso8601" => return Some(Alt::Iso),
        "epoch_millis" => return Some(Alt::EpochMillis),
        "epoch_second" => return Some(Alt::EpochSecond),
        "date" | "year_month_day" => "yyyy-MM-dd",
        "date_time" => "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
        "date_time_no_millis" => "yyyy-MM-dd'T'HH:mm:ssXXX",
        "basic_date" => "yyyyMMdd",
        "basic_date_time" => "yyyyMMdd'T'HHmmss.SSSX",
        "basic_date_time_no_millis" => "yyyyMMdd'T'HHmmssX",
        "basic_time" => "HHmmss.SSSX",
        "basic_time_no_millis" => "HHmmssX",
        "date_hour" => "yyyy-MM-dd'T'HH",
        "date_hour_minute" => "yyyy-MM-dd'T'HH:mm",
        "date_hour_minute_second" => "yyyy-MM-dd'T'HH:mm:ss",
        "date_hour_minute_second_millis" | "date_hour_minute_second_fraction" => {
            "yyyy-MM-dd'T'HH:mm:ss.SSS"
        }
        "year_month" => "yyyy-MM",
        "year" => "yyyy",
        "hour" => "HH",
        "hour_minute" => "HH:mm",
        "hour_minute_second" => "HH:mm:ss",
        "hour_minute_second_millis" | "hour_minute_second_fraction" => "HH:mm:ss.SSS",
        "time" => "HH:mm:ss.SSSXXX",
        "time_no_millis" => "HH:mm:ssXXX",
        "t_time" => "'T'HH:mm:ss.SSSXXX",
        "t_time_no_millis" => "'T'HH:mm:ssXXX",
        _ => return None,
    };
    compile(pattern).ok().map(Alt::Pattern)
}

/// Compiles a java-time pattern; `Err` names the offending letter like Elasticsearch.
fn compile(p: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = p.chars().collect();
    let mut stack: Vec<Vec<Tok>> = vec![Vec::new()];
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let mut n = 1;
        while chars.get(i + n) == Some(&c) && c.is_ascii_alphabetic() {
            n += 1;
        }
        let tok = match c {
            'y' | 'u' | 'Y' => Some(Tok::Year(n)),
            'M' | 'L' => Some(Tok::Month(n)),
            'd' => Some(Tok::Day(n)),
            'H' => Some(Tok::Hour24(n)),
            'h' => Some(Tok::Hour12(n)),
            'm' => Some(Tok::Minute(n)),
            's' => Some(Tok::Second(n)),
            'S' => Some(Tok::Fraction(n)),
            'E' => Some(Tok::DayName(n)),
            'a' => Some(Tok::AmPm),
            'Z' => Some(Tok::Offset {
                colon: n >= 5,
                iso: n >= 5,
            }),
            'X' | 'x' => Some(Tok::Offset {
                colon: n >= 3,
                iso: c == 'X',
            }),
            '\'' => {
                let mut lit = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => {
                            return Err(format!(
                                "Pattern ends with an incomplete string literal: {p}"
                            ))
                        }
                        Some('\'') if chars.get(j + 1) == Some(&'\'') => {
                            lit.push('\'');
                            j += 2;
                        }
                        Some('\'') => break,
                        Some(&ch) => {
                            lit.push(ch);
                            j += 1;
                        }
                    }
                }
                if lit.is_empty() {
                    lit.push('\'');
                }
                n = j + 1 - i;
                Some(Tok::Lit(lit))
            }
            '[' => {
                stack.push(Vec::new());
                None
            }
            ']' => {
                let inner = stack.pop().unwrap_or_default();
                match stack.last_mut() {
                    Some(top) => top.push(Tok::Opt(inner)),
                    None => {
                        return Err(format!(
                            "Pattern invalid as it contains ] without previous [: {p}"
                        ))
                    }
                }
                None
            }
            c if c.is_ascii_alphabetic() => return Err(format!("Unknown pattern letter: {c}")),
            c => Some(Tok::Lit(c.to_string())),
        };
        if let (Some(t), Some(top)) = (tok, stack.last_mut()) {
            top.push(t);
        }
        i += n;
    }
    if stack.len() != 1 {
        return Err(format!(
            "Pattern invalid as it contains [ without matching ]: {p}"
        ));
    }
    Ok(stack.pop().unwrap_or_default())
}

/// What round-up parsing adds to an ISO date for the time units it leaves out: the rest of
/// the day after a bare date, of the hour after `THH`, of the minute after `THH:mm`, of the
/// second after `THH:mm:ss` (a written fraction is exact).
fn iso_round_up(s: &str) -> i64 {
    let Some(time) = s.get(10..).filter(|t| !t.is_empty()) else {
        return 86_399_999;
    };
    let time = time.get(1..).unwrap_or_default();
    let end = time.find(['Z', '+', '-']).unwrap_or(time.len());
    let clock = time.get(..end).unwrap_or_default();
    if clock.contains(['.', ',']) {
        return 0;
    }
    match clock.matches(':').count() {
        0 => 3_599_999,
        1 => 59_999,
        _ => 999,
    }
}

impl DateFormat {
    /// Parses a mapping's `format` (`name||pattern||...`).
    pub fn new(text: &str) -> Result<DateFormat, String> {
        let mut alts = Vec::new();
        for part in text.split("||") {
            let part = part.trim();
            if part.is_empty() {
                return Err(format!("Invalid format: [{text}]: empty format"));
            }
            let alt = match named(part) {
                Some(a) => a,
                None => Alt::Pattern(
                    compile(part).map_err(|e| format!("Invalid format: [{text}]: {e}"))?,
                ),
            };
            alts.push(alt);
        }
        Ok(DateFormat {
            alts,
            text: text.to_string(),
        })
    }

    /// The default `strict_date_optional_time||epoch_millis`.
    pub fn default_format() -> DateFormat {
        DateFormat {
            alts: vec![Alt::Iso, Alt::EpochMillis],
            text: DEFAULT.to_string(),
        }
    }

    /// The format as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Parses a string value to epoch milliseconds with the first alternative that fits.
    pub fn parse(&self, s: &str) -> Option<i64> {
        self.parse_with(s, false)
    }

    /// Parses like [`DateFormat::parse`], but the time of day a pattern leaves out takes
    /// its largest value, as Elasticsearch's round-up parsing of `lte` and `gt` range bounds
    /// does: `lte: 1500` with format `uuuu` ends at 1500-01-01T23:59:59.999 (a missing
    /// month or day still defaults to 1).
    pub fn parse_round_up(&self, s: &str) -> Option<i64> {
        self.parse_with(s, true)
    }

    fn parse_with(&self, s: &str, round_up: bool) -> Option<i64> {
        self.alts.iter().find_map(|a| match a {
            Alt::Iso if round_up => parse_date(s).map(|ms| ms + iso_round_up(s)),
            Alt::Iso => parse_date(s),
            Alt::EpochMillis => parse_epoch(s, 1),
            Alt::EpochSecond => parse_epoch(s, 1000),
            Alt::Pattern(toks) => parse_pattern(toks, s, round_up),
        })
    }

    /// Whether the format accepts numbers as epoch values (`epoch_millis`/`epoch_second`).
    pub fn numeric_scale(&self) -> Option<i64> {
        self.alts.iter().find_map(|a| match a {
            Alt::EpochMillis => Some(1),
            Alt::EpochSecond => Some(1000),
            _ => None,
        })
    }

    /// Prints epoch milliseconds with the first alternative.
    pub fn format(&self, ms: i64) -> String {
        match self.alts.first() {
            None | Some(Alt::Iso) => format_date(ms),
            Some(Alt::EpochMillis) => ms.to_string(),
            Some(Alt::EpochSecond) => ms.div_euclid(1000).to_string(),
            Some(Alt::Pattern(toks)) => {
                let mut out = String::new();
                print(toks, &Civil::from_millis(ms), &mut out);
                out
            }
        }
    }
}

fn parse_epoch(s: &str, scale: i64) -> Option<i64> {
    let t = s.trim();
    if t.is_empty() || t.len() > 20 {
        return None;
    }
    if let Ok(i) = t.parse::<i64>() {
        return i.checked_mul(scale);
    }
    // Decimal epochs (`1.5` seconds) are accepted, as in Elasticsearch.
    let f: f64 = t.parse().ok()?;
    if !f.is_finite() || t.contains(['e', 'E']) {
        return None;
    }
    Some((f * scale as f64).trunc() as i64)
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
const DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

#[derive(Default)]
struct Fields {
    y: Option<i64>,
    mo: Option<u32>,
    d: Option<u32>,
    h: Option<u32>,
    h12: Option<u32>,
    pm: Option<bool>,
    mi: Option<u32>,
    s: Option<u32>,
    ms: Option<u32>,
    offset_ms: i64,
}

fn is_numeric(t: Option<&Tok>) -> bool {
    matches!(
        t,
        Some(
            Tok::Year(_)
                | Tok::Month(1..=2)
                | Tok::Day(_)
                | Tok::Hour24(_)
                | Tok::Hour12(_)
                | Tok::Minute(_)
                | Tok::Second(_)
                | Tok::Fraction(_)
        )
    )
}

fn digits(b: &[u8], pos: &mut usize, min: usize, max: usize) -> Option<u64> {
    let mut v: u64 = 0;
    let mut n = 0;
    while n < max {
        match b.get(*pos + n) {
            Some(c) if c.is_ascii_digit() => {
                v = v * 10 + u64::from(c - b'0');
                n += 1;
            }
            _ => break,
        }
    }
    if n < min {
        return None;
    }
    *pos += n;
    Some(v)
}

fn word(s: &str, pos: &mut usize, words: &[&str], full: bool) -> Option<usize> {
    let rest = s.get(*pos..)?.to_ascii_lowercase();
    for (i, w) in words.iter().enumerate() {
        let cand = if full { w } else { w.get(..3)? };
        if rest.starts_with(cand) {
            *pos += cand.len();
            return Some(i);
        }
    }
    None
}

fn parse_toks(toks: &[Tok], s: &str, pos: &mut usize, f: &mut Fields) -> Option<()> {
    let b = s.as_bytes();
    for (i, t) in toks.iter().enumerate() {
        // Adjacent numeric fields (`yyyyMMdd`) take exactly their width.
        let fixed = is_numeric(toks.get(i + 1));
        let width = |n: usize, max: usize| {
            if fixed {
                (n.max(1), n.max(1))
            } else {
                (n.min(max).max(1), max)
            }
        };
        match t {
            Tok::Year(n) => {
                let neg = b.get(*pos) == Some(&b'-') && *n >= 4;
                if neg {
                    *pos += 1;
                }
                let (lo, hi) = if *n == 2 { (2, 2) } else { width(*n, 9) };
                let v = digits(b, pos, lo, hi)? as i64;
                f.y = Some(if *n == 2 {
                    2000 + v
                } else if neg {
                    -v
                } else {
                    v
                });
            }
            Tok::Month(n) if *n >= 3 => {
                f.mo = Some(word(s, pos, &MONTHS, *n >= 4)? as u32 + 1);
            }
            Tok::Month(n) => {
                let (lo, hi) = width(*n, 2);
                f.mo = Some(digits(b, pos, lo, hi)? as u32);
            }
            Tok::Day(n) => {
                let (lo, hi) = width(*n, 2);
                f.d = Some(digits(b, pos, lo, hi)? as u32);
            }
            Tok::Hour24(n) => {
                let (lo, hi) = width(*n, 2);
                f.h = Some(digits(b, pos, lo, hi)? as u32);
            }
            Tok::Hour12(n) => {
                let (lo, hi) = width(*n, 2);
                f.h12 = Some(digits(b, pos, lo, hi)? as u32);
            }
            Tok::Minute(n) => {
                let (lo, hi) = width(*n, 2);
                f.mi = Some(digits(b, pos, lo, hi)? as u32);
            }
            Tok::Second(n) => {
                let (lo, hi) = width(*n, 2);
                f.s = Some(digits(b, pos, lo, hi)? as u32);
            }
            Tok::Fraction(n) => {
                let start = *pos;
                let (lo, hi) = if fixed { (*n, *n) } else { (1, 9) };
                let v = digits(b, pos, lo, hi)?;
                let len = *pos - start;
                let ms = if len >= 3 {
                    v / 10u64.pow((len - 3) as u32)
                } else {
                    v * 10u64.pow((3 - len) as u32)
                };
                f.ms = Some(ms as u32);
            }
            Tok::DayName(n) => {
                word(s, pos, &DAYS, *n >= 4)?;
            }
            Tok::AmPm => {
                let rest = s.get(*pos..)?.to_ascii_uppercase();
                if rest.starts_with("AM") {
                    f.pm = Some(false);
                } else if rest.starts_with("PM") {
                    f.pm = Some(true);
                } else {
                    return None;
                }
                *pos += 2;
            }
            Tok::Offset { .. } => match b.get(*pos) {
                Some(b'Z') | Some(b'z') => *pos += 1,
                Some(&sign) if sign == b'+' || sign == b'-' => {
                    *pos += 1;
                    let oh = digits(b, pos, 2, 2)? as i64;
                    if b.get(*pos) == Some(&b':') {
                        *pos += 1;
                    }
                    let om = if b.get(*pos).is_some_and(u8::is_ascii_digit) {
                        digits(b, pos, 2, 2)? as i64
                    } else {
                        0
                    };
                    let off = oh * 3_600_000 + om * 60_000;
                    f.offset_ms = if sign == b'+' { off } else { -off };
                }
                _ => return None,
            },
            Tok::Lit(l) => {
                let rest = s.get(*pos..)?;
                if rest.starts_with(l.as_str()) {
                    *pos += l.len();
                } else if l.eq_ignore_ascii_case("t") && rest.starts_with(['t', 'T']) {
                    *pos += 1;
                } else {
                    return None;
                }
            }
            Tok::Opt(inner) => {
                let save = *pos;
                let mut trial = Fields {
                    offset_ms: f.offset_ms,
                    ..Fields::default()
                };
                if parse_toks(inner, s, pos, &mut trial).is_some() {
                    merge(f, trial);
                } else {
                    *pos = save;
                }
            }
        }
    }
    Some(())
}

fn merge(f: &mut Fields, t: Fields) {
    f.y = t.y.or(f.y);
    f.mo = t.mo.or(f.mo);
    f.d = t.d.or(f.d);
    f.h = t.h.or(f.h);
    f.h12 = t.h12.or(f.h12);
    f.pm = t.pm.or(f.pm);
    f.mi = t.mi.or(f.mi);
    f.s = t.s.or(f.s);
    f.ms = t.ms.or(f.ms);
    f.offset_ms = t.offset_ms;
}

fn parse_pattern(toks: &[Tok], s: &str, round_up: bool) -> Option<i64> {
    let mut f = Fields::default();
    let mut pos = 0;
    parse_toks(toks, s, &mut pos, &mut f)?;
    if pos != s.len() {
        return None;
    }
    let h = match (f.h, f.h12, f.pm) {
        (Some(h), _, _) => h,
        (None, Some(h), pm) => {
            if !(1..=12).contains(&h) {
                return None;
            }
            (h % 12) + if pm == Some(true) { 12 } else { 0 }
        }
        (None, None, _) if round_up => 23,
        (None, None, _) => 0,
    };
    let (max_mi, max_s, max_ms) = if round_up { (59, 59, 999) } else { (0, 0, 0) };
    let c = Civil {
        y: f.y.unwrap_or(1970),
        mo: f.mo.unwrap_or(1),
        d: f.d.unwrap_or(1),
        h,
        mi: f.mi.unwrap_or(max_mi),
        s: f.s.unwrap_or(max_s),
        ms: f.ms.unwrap_or(max_ms),
    };
    if !(1..=12).contains(&c.mo) || c.d < 1 || c.d > days_in_month(c.y, c.mo) {
        return None;
    }
    if c.h > 23 || c.mi > 59 || c.s > 59 {
        return None;
    }
    Some(c.to_millis() - f.offset_ms)
}

fn print(toks: &[Tok], c: &Civil, out: &mut String) {
    let cap = |w: &str| {
        let mut ch = w.chars();
        ch.next()
            .map(|f| f.to_ascii_uppercase().to_string() + ch.as_str())
            .unwrap_or_default()
    };
    for t in toks {
        match t {
            Tok::Year(2) => out.push_str(&format!("{:02}", c.y.rem_euclid(100))),
            Tok::Year(n) => out.push_str(&format!("{:0w$}", c.y, w = *n)),
            Tok::Month(n) if *n >= 3 => {
                let name = MONTHS.get(c.mo as usize - 1).copied().unwrap_or("");
                let name = if *n >= 4 {
                    name
                } else {
                    name.get(..3).unwrap_or(name)
                };
                out.push_str(&cap(name));
            }
            Tok::Month(n) => out.push_str(&format!("{:0w$}", c.mo, w = *n)),
            Tok::Day(n) => out.push_str(&format!("{:0w$}", c.d, w = *n)),
            Tok::Hour24(n) => out.push_str(&format!("{:0w$}", c.h, w = *n)),
            Tok::Hour12(n) => {
                let h = if c.h.is_multiple_of(12) { 12 } else { c.h % 12 };
                out.push_str(&format!("{:0w$}", h, w = *n));
            }
            Tok::Minute(n) => out.push_str(&format!("{:0w$}", c.mi, w = *n)),
            Tok::Second(n) => out.push_str(&format!("{:0w$}", c.s, w = *n)),
            Tok::Fraction(n) => {
                let ms = format!("{:03}", c.ms);
                let mut frac: String = ms.chars().take(*n).collect();
                while frac.len() < *n {
                    frac.push('0');
                }
                out.push_str(&frac);
            }
            Tok::DayName(n) => {
                let days = c.to_millis().div_euclid(86_400_000);
                // 1970-01-01 was a Thursday (index 3).
                let name = DAYS
                    .get((days + 3).rem_euclid(7) as usize)
                    .copied()
                    .unwrap_or("");
                let name = if *n >= 4 {
                    name
                } else {
                    name.get(..3).unwrap_or(name)
                };
                out.push_str(&cap(name));
            }
            Tok::AmPm => out.push_str(if c.h < 12 { "AM" } else { "PM" }),
            // Printed times are UTC.
            Tok::Offset { colon, iso } => out.push_str(match (iso, colon) {
                (true, _) => "Z",
                (false, true) => "+00:00",
                (false, false) => "+0000",
            }),
            Tok::Lit(l) => out.push_str(l),
            Tok::Opt(inner) => print(inner, c, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(f: &str, s: &str) -> Option<i64> {
        DateFormat::new(f).ok()?.parse(s)
    }

    #[test]
    fn named_and_custom() {
        let base = parse_date("2024-03-05T10:20:30.123Z");
        assert_eq!(
            ms("yyyy-MM-dd HH:mm:ss.SSS", "2024-03-05 10:20:30.123"),
            base
        );
        assert_eq!(ms("date_time", "2024-03-05T10:20:30.123Z"), base);
        assert_eq!(ms("basic_date_time", "20240305T102030.123Z"), base);
        assert_eq!(ms("epoch_second", "1709634030"), Some(1_709_634_030_000));
        assert_eq!(
            ms("dd/MMM/yyyy:HH:mm:ss Z", "05/Mar/2024:10:20:30 +0000"),
            Some(1_709_634_030_000)
        );
        assert_eq!(ms("yyyy-MM-dd||epoch_millis", "42"), Some(42));
        assert_eq!(ms("date", "2024-02-30"), None);
        assert_eq!(ms("yyyy-MM-dd", "2024-03-05 10:00"), None);
        assert_eq!(ms("uuuu-MM-dd", "2024-03-05"), parse_date("2024-03-05"));
        assert_eq!(
            ms("yyyy-MM-dd[ HH:mm]", "2024-03-05 10:20"),
            parse_date("2024-03-05T10:20")
        );
        assert_eq!(
            ms("yyyy-MM-dd[ HH:mm]", "2024-03-05"),
            parse_date("2024-03-05")
        );
        assert!(DateFormat::new("yyyy-MM-dd cc").is_err());
    }

    #[test]
    fn printing_uses_the_first_format() {
        let Some(t) = parse_date("2024-03-05T10:20:30.123Z") else {
            panic!("date");
        };
        let f = DateFormat::new("yyyy/MM/dd HH:mm||epoch_millis").ok();
        assert_eq!(f.map(|f| f.format(t)), Some("2024/03/05 10:20".to_string()));
        let f = DateFormat::new("epoch_second").ok();
        assert_eq!(f.map(|f| f.format(t)), Some("1709634030".to_string()));
        let f = DateFormat::new("strict_date_time").ok();
        assert_eq!(
            f.map(|f| f.format(t)),
            Some("2024-03-05T10:20:30.123Z".to_string())
        );
    }
}
