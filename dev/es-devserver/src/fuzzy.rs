//! Fuzzy term matching as Lucene's `FuzzyQuery` does it: `fuzziness` (0, 1, 2 or `AUTO`)
//! gives the most edits allowed for a term, the first `prefix_length` characters must match
//! exactly, and with `fuzzy_transpositions` (the default) swapping two adjacent characters
//! counts as one edit.

use serde_json::Value;

use crate::error::{EsError, EsResult};

/// A `fuzziness` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fuzziness {
    /// A fixed number of edits (0, 1 or 2).
    Edits(u8),
    /// `AUTO:low,high`: no edit below `low` characters, one below `high`, else two.
    Auto(usize, usize),
}

impl Fuzziness {
    /// Parses `fuzziness` as Elasticsearch accepts it: a number or `AUTO[:low,high]`.
    pub fn parse(v: &Value) -> EsResult<Fuzziness> {
        let text = match v {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            other => {
                return Err(EsError::parsing(format!(
                    "[fuzziness] unknown token [{}]",
                    crate::json::token_name(other)
                )))
            }
        };
        if let Some(rest) = text
            .strip_prefix("AUTO")
            .or_else(|| text.strip_prefix("auto"))
        {
            if rest.is_empty() {
                return Ok(Fuzziness::Auto(3, 6));
            }
            let bad = || EsError::parse("failed to find low and high distance values");
            let (lo, hi) = rest
                .strip_prefix(':')
                .and_then(|r| r.split_once(','))
                .ok_or_else(bad)?;
            let lo = lo.trim().parse::<usize>().map_err(|_| bad())?;
            let hi = hi.trim().parse::<usize>().map_err(|_| bad())?;
            if lo > hi {
                return Err(EsError::parse(format!(
                    "fuzziness wrongly configured, must be: lowDistance <= highDistance. Found [{lo}, {hi}]"
                )));
            }
            return Ok(Fuzziness::Auto(lo, hi));
        }
        // Lucene takes the integer part of a fractional value.
        let edits = text
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .ok_or_else(|| EsError::parse(format!("invalid fuzziness value: [{text}]")))?
            .trunc();
        if edits > 2.0 {
            return Err(EsError::illegal_argument(format!(
                "Valid edit distances are [0, 1, 2] but was [{edits}]"
            )));
        }
        Ok(Fuzziness::Edits(edits as u8))
    }

    /// The edits allowed for a term of this many characters.
    pub fn max_edits(self, term_chars: usize) -> usize {
        match self {
            Fuzziness::Edits(n) => usize::from(n),
            Fuzziness::Auto(lo, hi) => {
                if term_chars < lo {
                    0
                } else if term_chars < hi {
                    1
                } else {
                    2
                }
            }
        }
    }
}

/// A compiled fuzzy term.
#[derive(Debug, Clone, PartialEq)]
pub struct FuzzyTerm {
    term: Vec<char>,
    max_edits: usize,
    prefix_len: usize,
    transpositions: bool,
}

impl FuzzyTerm {
    /// A fuzzy term; `prefix_len` characters must match exactly.
    pub fn new(term: &str, fuzziness: Fuzziness, prefix_len: usize, transpositions: bool) -> Self {
        let term: Vec<char> = term.chars().collect();
        FuzzyTerm {
            max_edits: fuzziness.max_edits(term.len()),
            term,
            prefix_len,
            transpositions,
        }
    }

    /// The similarity of a matching candidate (1 for the term itself, lower with each edit),
    /// or `None` when the candidate is too far away.
    pub fn similarity(&self, candidate: &str) -> Option<f32> {
        let cand: Vec<char> = candidate.chars().collect();
        let p = self.prefix_len.min(self.term.len());
        if cand.get(..p) != self.term.get(..p) {
            return None;
        }
        let a = self.term.get(p..).unwrap_or_default();
        let b = cand.get(p..).unwrap_or_default();
        let d = distance(a, b, self.transpositions, self.max_edits)?;
        let shorter = self.term.len().min(cand.len()).max(1);
        Some((1.0 - d as f32 / shorter as f32).max(0.0))
    }
}

/// The edit distance between `a` and `b` (optimal string alignment when `transpositions`),
/// or `None` when it exceeds `max`.
pub(crate) fn distance(a: &[char], b: &[char], transpositions: bool, max: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > max {
        return None;
    }
    // Three rolling rows: two back (for transpositions), previous, current.
    let width = b.len() + 1;
    let mut prev2 = vec![0usize; width];
    let mut prev: Vec<usize> = (0..width).collect();
    let mut cur = vec![0usize; width];
    for (i, ca) in a.iter().enumerate() {
        if let Some(c0) = cur.first_mut() {
            *c0 = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            let del = prev
                .get(j + 1)
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(1);
            let ins = cur.get(j).copied().unwrap_or(usize::MAX).saturating_add(1);
            let sub = prev
                .get(j)
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(cost);
            let mut best = del.min(ins).min(sub);
            if transpositions && i > 0 && j > 0 {
                let swapped = a.get(i - 1) == Some(cb) && b.get(j - 1) == Some(ca);
                if swapped {
                    let t = prev2.get(j - 1).copied().unwrap_or(usize::MAX);
                    best = best.min(t.saturating_add(1));
                }
            }
            if let Some(slot) = cur.get_mut(j + 1) {
                *slot = best;
            }
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev.last().copied().filter(|d| *d <= max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse() {
        assert_eq!(Fuzziness::parse(&json!(1)).unwrap(), Fuzziness::Edits(1));
        assert_eq!(Fuzziness::parse(&json!("2")).unwrap(), Fuzziness::Edits(2));
        assert_eq!(
            Fuzziness::parse(&json!("AUTO")).unwrap(),
            Fuzziness::Auto(3, 6)
        );
        assert_eq!(
            Fuzziness::parse(&json!("AUTO:2,4")).unwrap(),
            Fuzziness::Auto(2, 4)
        );
        assert!(Fuzziness::parse(&json!(3)).is_err());
        assert!(Fuzziness::parse(&json!("AUTO:4,2")).is_err());
        assert!(Fuzziness::parse(&json!("x")).is_err());
    }

    #[test]
    fn auto_edits() {
        let a = Fuzziness::Auto(3, 6);
        assert_eq!((a.max_edits(2), a.max_edits(3), a.max_edits(6)), (0, 1, 2));
    }

    #[test]
    fn matching() {
        let t = FuzzyTerm::new("xylophoen", Fuzziness::Edits(1), 1, true);
        assert!(t.similarity("xylophone").is_some());
        let no_swap = FuzzyTerm::new("xylophoen", Fuzziness::Edits(1), 1, false);
        assert!(no_swap.similarity("xylophone").is_none());
        let dob = FuzzyTerm::new("dob", Fuzziness::Edits(1), 0, true);
        assert!(dob.similarity("dog").is_some());
        assert!(dob.similarity("brown").is_none());
        // The prefix must match exactly even when the distance would allow the edit.
        let p = FuzzyTerm::new("dob", Fuzziness::Edits(1), 1, true);
        assert!(p.similarity("bob").is_none());
        assert_eq!(dob.similarity("dob"), Some(1.0));
    }
}
