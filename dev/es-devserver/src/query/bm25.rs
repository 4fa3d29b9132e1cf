//! BM25 scores as Elasticsearch computes them (`LegacyBM25Similarity`, k1 = 1.2, b = 0.75):
//! `(k1 + 1) * idf * freq / (freq + k1 * (1 - b + b * dl / avgdl))` with
//! `idf = ln(1 + (docCount - docFreq + 0.5) / (docFreq + 0.5))`, field lengths encoded as
//! Lucene's one-byte norms, and the collection statistics of the index's searchable
//! documents (as a one-shard index has them; Elasticsearch 8 creates one shard by default).
//! Keyword fields have no norms and count each value once.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Compiled, DocView, Key, Source};
use crate::index::StoredDoc;
use crate::mapping::Kind;

const K1: f32 = 1.2;
const B: f32 = 0.75;

/// The statistics a scored clause needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bm25 {
    /// `idf` of each term of the clause, in order.
    pub idf: Vec<f32>,
    /// Average field length (`sumTotalTermFreq / docCount`).
    pub avgdl: f32,
    /// Whether the field has norms (text) or not (keyword).
    pub norms: bool,
}

impl Bm25 {
    /// The score of one term (`idf` of term `i`) occurring `freq` times in a field of `dl`
    /// terms.
    pub fn term_score(&self, idf: f32, freq: f32, dl: usize) -> f32 {
        let len = if self.norms {
            decode_norm(encode_norm(dl)) as f32
        } else {
            1.0
        };
        let avgdl = if self.avgdl > 0.0 { self.avgdl } else { 1.0 };
        let norm = K1 * ((1.0 - B) + B * len / avgdl);
        (K1 + 1.0) * idf * freq / (freq + norm)
    }
}

fn idf(doc_freq: u64, doc_count: u64) -> f32 {
    let (n, df) = (doc_count as f64, doc_freq as f64);
    (1.0 + (n - df + 0.5) / (df + 0.5)).ln() as f32
}

// Lucene's SmallFloat.intToByte4 / byte4ToInt: lengths below 24 are exact, larger ones keep
// four significant bits.
const NUM_FREE_VALUES: u32 = 24;

fn long_to_int4(i: u64) -> u32 {
    let bits = 64 - i.leading_zeros();
    if bits < 4 {
        i as u32
    } else {
        let shift = bits - 4;
        (((i >> shift) & 0x07) as u32) | ((shift + 1) << 3)
    }
}

fn int4_to_long(i: u32) -> u64 {
    let bits = u64::from(i & 0x07);
    let shift = (i >> 3) as i64 - 1;
    if shift < 0 {
        bits
    } else {
        (bits | 0x08) << shift
    }
}

/// The norm byte of a field length.
pub(crate) fn encode_norm(len: usize) -> u32 {
    let len = len.min(i32::MAX as usize) as u32;
    if len < NUM_FREE_VALUES {
        len
    } else {
        NUM_FREE_VALUES + long_to_int4(u64::from(len - NUM_FREE_VALUES))
    }
}

/// The field length a norm byte stands for.
pub(crate) fn decode_norm(b: u32) -> u64 {
    if b < NUM_FREE_VALUES {
        u64::from(b)
    } else {
        (u64::from(NUM_FREE_VALUES) + int4_to_long(b - NUM_FREE_VALUES)).min(i32::MAX as u64)
    }
}

/// Per-field collection statistics over the searchable documents.
#[derive(Default)]
struct FieldStats {
    doc_count: u64,
    sum_ttf: u64,
    doc_freq: HashMap<String, u64>,
}

fn scored_kind(src: &Source) -> Option<bool> {
    match src {
        Source::Field {
            kind: Kind::Text, ..
        } => Some(true),
        Source::Field {
            kind: Kind::Keyword,
            ..
        } => Some(false),
        _ => None,
    }
}

fn field_key(src: &Source) -> String {
    match src {
        Source::Field { path, kind, .. } => format!("{path}\u{0}{kind:?}"),
        _ => String::new(),
    }
}

/// The terms a compiled query needs statistics for, by field.
fn wanted(c: &Compiled, out: &mut Vec<(Source, Vec<String>)>) {
    let mut add = |src: &Source, terms: Vec<String>| {
        let key = field_key(src);
        match out.iter_mut().find(|(s, _)| field_key(s) == key) {
            Some((_, t)) => t.extend(terms),
            None => out.push((src.clone(), terms)),
        }
    };
    match c {
        Compiled::Tokens { src, tokens, .. } if scored_kind(src).is_some() => {
            add(src, tokens.clone())
        }
        Compiled::Exact { src, keys, .. } if keys.len() == 1 && scored_kind(src).is_some() => {
            let terms = keys
                .iter()
                .filter_map(|k| match k {
                    Key::S(s) => Some(s.clone()),
                    _ => None,
                })
                .collect();
            add(src, terms)
        }
        Compiled::Bool {
            must,
            filter,
            should,
            must_not,
            ..
        } => {
            for x in must.iter().chain(filter).chain(should).chain(must_not) {
                wanted(x, out);
            }
        }
        Compiled::Dis(xs) => xs.iter().for_each(|x| wanted(x, out)),
        Compiled::Const(x, _) | Compiled::Named(_, x) => wanted(x, out),
        _ => {}
    }
}

fn collect(
    docs: &[(Arc<str>, Arc<StoredDoc>)],
    index: &str,
    fields: &[(Source, Vec<String>)],
) -> HashMap<String, FieldStats> {
    let mut stats: HashMap<String, FieldStats> = HashMap::new();
    for (id, doc) in docs {
        let view = DocView::new(id, index, doc.routing.as_deref(), &doc.source);
        for (src, terms) in fields {
            let keys = view.keys(src);
            let strings: Vec<&str> = keys
                .iter()
                .filter_map(|k| match k {
                    Key::S(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect();
            if strings.is_empty() {
                continue;
            }
            let s = stats.entry(field_key(src)).or_default();
            s.doc_count += 1;
            s.sum_ttf += if scored_kind(src) == Some(true) {
                strings.len() as u64
            } else {
                let mut distinct = strings.clone();
                distinct.sort_unstable();
                distinct.dedup();
                distinct.len() as u64
            };
            for t in terms {
                if strings.contains(&t.as_str()) {
                    *s.doc_freq.entry(t.clone()).or_default() += 1;
                }
            }
        }
    }
    stats
}

fn stats_for(src: &Source, terms: &[String], all: &HashMap<String, FieldStats>) -> Arc<Bm25> {
    let empty = FieldStats::default();
    let s = all.get(&field_key(src)).unwrap_or(&empty);
    Arc::new(Bm25 {
        idf: terms
            .iter()
            .map(|t| idf(s.doc_freq.get(t).copied().unwrap_or(0), s.doc_count))
            .collect(),
        avgdl: if s.doc_count == 0 {
            1.0
        } else {
            s.sum_ttf as f32 / s.doc_count as f32
        },
        norms: scored_kind(src) == Some(true),
    })
}

fn attach(c: &mut Compiled, all: &HashMap<String, FieldStats>) {
    match c {
        Compiled::Tokens {
            src, tokens, stats, ..
        } if scored_kind(src).is_some() => *stats = Some(stats_for(src, tokens, all)),
        Compiled::Exact {
            src, keys, stats, ..
        } if keys.len() == 1 && scored_kind(src).is_some() => {
            let terms: Vec<String> = keys
                .iter()
                .map(|k| match k {
                    Key::S(s) => s.clone(),
                    _ => String::new(),
                })
                .collect();
            *stats = Some(stats_for(src, &terms, all));
        }
        Compiled::Bool {
            must,
            filter,
            should,
            must_not,
            ..
        } => {
            for x in must
                .iter_mut()
                .chain(filter.iter_mut())
                .chain(should.iter_mut())
                .chain(must_not.iter_mut())
            {
                attach(x, all);
            }
        }
        Compiled::Dis(xs) => xs.iter_mut().for_each(|x| attach(x, all)),
        Compiled::Const(x, _) | Compiled::Named(_, x) => attach(x, all),
        _ => {}
    }
}

/// The compiled query with the collection statistics of `docs` for its scored clauses.
pub(crate) fn with_stats(
    c: &Compiled,
    docs: &[(Arc<str>, Arc<StoredDoc>)],
    index: &str,
) -> Compiled {
    let mut fields = Vec::new();
    wanted(c, &mut fields);
    if fields.is_empty() {
        return c.clone();
    }
    let all = collect(docs, index, &fields);
    let mut out = c.clone();
    attach(&mut out, &all);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norms_round_trip_like_lucene() {
        for len in 0..24 {
            assert_eq!(decode_norm(encode_norm(len)), len as u64);
        }
        // Four significant bits above 24.
        assert_eq!(decode_norm(encode_norm(100)), 96);
        assert_eq!(decode_norm(encode_norm(1000)), 984);
    }

    #[test]
    fn count_min_score_example() {
        // "foo bar" and "foo bar bar bar bar", query "foo": both documents hold it.
        let s = Bm25 {
            idf: vec![idf(2, 2)],
            avgdl: 3.5,
            norms: true,
        };
        let short = s.term_score(s.idf[0], 1.0, 2);
        let long = s.term_score(s.idf[0], 1.0, 5);
        assert!((0.2..0.5).contains(&short), "{short}");
        assert!((0.1..0.2).contains(&long), "{long}");
    }
}
