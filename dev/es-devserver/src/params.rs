//! URL query parameters with Elasticsearch's parsing rules and errors.

use std::time::Duration;

use percent_encoding::percent_decode_str;

use crate::error::{EsError, EsResult};

/// Decoded query parameters (last value wins, as in Elasticsearch).
#[derive(Debug, Clone, Default)]
pub struct Params {
    items: Vec<(String, String)>,
}

fn decode(s: &str) -> String {
    let replaced = s.replace('+', " ");
    percent_decode_str(&replaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// Lucene's Levenshtein similarity (1 - distance / max length), used for "did you mean".
fn similarity(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let max = a.len().max(b.len());
    if max == 0 {
        return 1.0;
    }
    // Plain Levenshtein (no transpositions), with no cap on the distance.
    let dist = crate::fuzzy::distance(&a, &b, false, usize::MAX).unwrap_or(max);
    1.0 - dist as f64 / max as f64
}

/// Parameters every endpoint accepts.
pub const GLOBAL: &[&str] = &[
    "pretty",
    "human",
    "error_trace",
    "filter_path",
    "format",
    "source",
    "source_content_type",
];

impl Params {
    /// Parses a raw query string.
    pub fn parse(query: Option<&str>) -> Params {
        let mut items = Vec::new();
        if let Some(q) = query {
            for pair in q.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = match pair.split_once('=') {
                    Some((k, v)) => (decode(k), decode(v)),
                    None => (decode(pair), String::new()),
                };
                items.retain(|(ek, _): &(String, String)| *ek != k);
                items.push((k, v));
            }
        }
        Params { items }
    }

    /// A raw value.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.items
            .iter()
            .find(|(ik, _)| ik == k)
            .map(|(_, v)| v.as_str())
    }

    /// Whether present.
    pub fn has(&self, k: &str) -> bool {
        self.get(k).is_some()
    }

    /// Sets a value (used when a body field is merged into parameters).
    pub fn set(&mut self, k: &str, v: &str) {
        self.items.retain(|(ik, _)| ik != k);
        self.items.push((k.to_string(), v.to_string()));
    }

    /// All keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(|(k, _)| k.as_str())
    }

    /// Rejects parameters the endpoint does not know, as Elasticsearch does.
    pub fn check_allowed(&self, path: &str, allowed: &[&str]) -> EsResult<()> {
        let unknown: Vec<&str> = self
            .keys()
            .filter(|k| !allowed.contains(k) && !GLOBAL.contains(k))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let mut parts = Vec::new();
        for u in &unknown {
            let mut candidates: Vec<(f64, &str)> = allowed
                .iter()
                .chain(GLOBAL.iter())
                .map(|a| (similarity(u, a), *a))
                .filter(|(s, _)| *s > 0.7)
                .collect();
            candidates.sort_by(|a, b| {
                b.0.partial_cmp(&a.0)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(a.1.cmp(b.1))
            });
            let mut s = format!("[{u}]");
            match candidates.as_slice() {
                [] => {}
                [(_, one)] => s.push_str(&format!(" -> did you mean [{one}]?")),
                many => {
                    let names: Vec<&str> = many.iter().map(|(_, n)| *n).collect();
                    s.push_str(&format!(" -> did you mean any of [{}]?", names.join(", ")));
                }
            }
            parts.push(s);
        }
        let noun = if unknown.len() == 1 {
            "parameter"
        } else {
            "parameters"
        };
        Err(EsError::illegal_argument(format!(
            "request [{path}] contains unrecognized {noun}: {}",
            parts.join(", ")
        )))
    }

    /// A boolean: `true`, `false`, or empty (= true).
    pub fn bool_opt(&self, k: &str) -> EsResult<Option<bool>> {
        match self.get(k) {
            None => Ok(None),
            Some("") | Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(EsError::illegal_argument(format!(
                "Failed to parse value [{other}] as only [true] or [false] are allowed."
            ))),
        }
    }

    /// A boolean with a default.
    pub fn bool_or(&self, k: &str, default: bool) -> EsResult<bool> {
        Ok(self.bool_opt(k)?.unwrap_or(default))
    }

    /// A 64-bit integer.
    pub fn i64_opt(&self, k: &str) -> EsResult<Option<i64>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| {
                EsError::illegal_argument(format!(
                    "Failed to parse long parameter [{k}] with value [{v}]"
                ))
            }),
        }
    }

    /// A 32-bit integer.
    pub fn i32_opt(&self, k: &str) -> EsResult<Option<i64>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<i32>()
                .map(|n| Some(i64::from(n)))
                .map_err(|_| {
                    EsError::illegal_argument(format!(
                        "Failed to parse int parameter [{k}] with value [{v}]"
                    ))
                }),
        }
    }

    /// A time value (`30s`).
    pub fn time_opt(&self, k: &str) -> EsResult<Option<Duration>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => crate::settings::parse_time(v, k).map(|d| Some(d.unwrap_or(Duration::ZERO))),
        }
    }

    /// A comma-separated list.
    pub fn list(&self, k: &str) -> Option<Vec<String>> {
        self.get(k).map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        let p = Params::parse(Some("a=1&b=&c&d=x%20y&e=a+b"));
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.bool_opt("b").ok(), Some(Some(true)));
        assert_eq!(p.bool_opt("c").ok(), Some(Some(true)));
        assert_eq!(p.get("d"), Some("x y"));
        assert_eq!(p.get("e"), Some("a b"));
    }

    #[test]
    fn unknown() {
        let p = Params::parse(Some("sizee=1"));
        let e = p
            .check_allowed("/_search", &["size", "from"])
            .err()
            .map(|e| e.reason);
        assert_eq!(
            e.as_deref(),
            Some("request [/_search] contains unrecognized parameter: [sizee] -> did you mean [size]?")
        );
    }
}
