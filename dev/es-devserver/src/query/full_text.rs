//! The full-text queries built from analyzed terms, `match_bool_prefix` and `multi_match`:
//! their options (query-time analyzer, fuzziness), parsing and compilation per field.

use serde_json::{Map, Value};

use super::{
    compile_match, expand_fields, shard_error, source_of, src_kind, Compiled, Ctx, Key, Msm, Query,
    Source,
};
use crate::analysis::Analyzer;
use crate::error::{EsError, EsResult};
use crate::fuzzy::{Fuzziness, FuzzyTerm};
use crate::mapping::{resolve_field, FieldRef, Kind, Mapping};

/// Fuzzy matching of the term clauses.
#[derive(Debug, Clone, PartialEq)]
pub struct FuzzyOpts {
    /// `fuzziness`.
    pub fuzziness: Fuzziness,
    /// `prefix_length`: characters that must match exactly.
    pub prefix_len: usize,
    /// `fuzzy_transpositions` (default true).
    pub transpositions: bool,
}

/// Analyzer and fuzziness of a full-text query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TextOpts {
    /// `analyzer`, checked when the query is compiled (as Elasticsearch does, per shard).
    pub analyzer: Option<String>,
    /// Set by `fuzziness`.
    pub fuzzy: Option<FuzzyOpts>,
}

impl TextOpts {
    /// Takes `key` when it is one of these options; `Ok(false)` when it is not.
    pub(super) fn accept(&mut self, key: &str, v: &Value) -> EsResult<bool> {
        match key {
            "analyzer" => {
                self.analyzer = Some(
                    v.as_str()
                        .ok_or_else(|| {
                            EsError::parsing(format!(
                                "[analyzer] unknown token [{}]",
                                crate::json::token_name(v)
                            ))
                        })?
                        .to_string(),
                );
            }
            "fuzziness" => {
                let f = Fuzziness::parse(v)?;
                let opts = self.fuzzy_mut();
                opts.fuzziness = f;
            }
            "prefix_length" => {
                let n = uint_of("prefix_length", v)?;
                self.fuzzy_mut().prefix_len = n;
            }
            "fuzzy_transpositions" => {
                let t = bool_value("fuzzy_transpositions", v)?;
                self.fuzzy_mut().transpositions = t;
            }
            // Accepted for compatibility; every matching term is kept (no expansion limit).
            "max_expansions" | "fuzzy_rewrite" => {}
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The fuzzy options, created (with no edits yet) when `prefix_length` or
    /// `fuzzy_transpositions` come before `fuzziness`.
    fn fuzzy_mut(&mut self) -> &mut FuzzyOpts {
        self.fuzzy.get_or_insert(FuzzyOpts {
            fuzziness: Fuzziness::Edits(0),
            prefix_len: 0,
            transpositions: true,
        })
    }

    /// The analyzer to use, or the query-shard error Elasticsearch gives for an unknown one.
    pub(super) fn analyzer(&self, query: &str, ctx: &Ctx<'_>) -> EsResult<Analyzer> {
        match &self.analyzer {
            None => Ok(Analyzer::Standard),
            Some(name) => Analyzer::named(name).ok_or_else(|| {
                shard_error(
                    ctx.index,
                    ctx.uuid,
                    format!("[{query}] analyzer [{name}] not found"),
                    None,
                )
            }),
        }
    }

    /// Fuzziness that allows at least one edit (`fuzziness: 0` is plain term matching).
    pub(super) fn active_fuzzy(&self) -> Option<&FuzzyOpts> {
        self.fuzzy
            .as_ref()
            .filter(|f| f.fuzziness != Fuzziness::Edits(0))
    }
}

fn uint_of(name: &str, v: &Value) -> EsResult<usize> {
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n >= 0 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        Some(n) => Err(EsError::illegal_argument(format!(
            "[{name}] must be non-negative, got [{n}]"
        ))),
        None => Err(EsError::parsing(format!(
            "[{name}] failed to parse [{}]",
            super::value_text(v)
        ))),
    }
}

fn bool_value(name: &str, v: &Value) -> EsResult<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        other => Err(EsError::parsing(format!(
            "[{name}] failed to parse [{}]",
            super::value_text(other)
        ))),
    }
}

/// `operator`: `and` or `or`, any case.
pub(super) fn parse_operator(v: &Value) -> EsResult<bool> {
    match v.as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("and") => Ok(true),
        Some("or") => Ok(false),
        _ => Err(EsError::illegal_argument(format!(
            "No enum constant org.elasticsearch.index.query.Operator.{}",
            v.as_str().unwrap_or("").to_uppercase()
        ))),
    }
}

/// Parses `match_bool_prefix`: `{"<field>": "text"}` or `{"<field>": {"query": ...}}`.
pub(super) fn parse_match_bool_prefix(body: &Value) -> EsResult<Query> {
    const NAME: &str = "match_bool_prefix";
    let (field, val, _) = super::single_field(NAME, body)?;
    let o = match val {
        Value::Object(o) => o,
        Value::Array(_) => {
            return Err(EsError::parsing(format!(
                "[{NAME}] unknown token [START_ARRAY] after [{field}]"
            )))
        }
        other => {
            return Ok(Query::BoolPrefix {
                field: field.clone(),
                query: super::value_text(other),
                opts: TextOpts::default(),
                and: false,
                msm: None,
                boost: 1.0,
            })
        }
    };
    let mut opts = TextOpts::default();
    let (mut and, mut msm) = (false, None);
    for (k, v) in o {
        if opts.accept(k, v)? {
            continue;
        }
        match k.as_str() {
            "query" | "boost" | "_name" => {}
            "operator" => and = parse_operator(v)?,
            "minimum_should_match" => msm = Some(Msm::parse(v)?),
            other => {
                return Err(EsError::parsing(format!(
                    "[{NAME}] query does not support [{other}]"
                )))
            }
        }
    }
    let query = o
        .get("query")
        .filter(|q| !q.is_null())
        .map(super::value_text)
        .ok_or_else(|| EsError::illegal_argument(format!("[{NAME}] requires query value")))?;
    Ok(Query::BoolPrefix {
        field: field.clone(),
        query,
        opts,
        and,
        msm,
        boost: super::boost_of(o)?,
    })
}

/// `multi_match`'s `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultiKind {
    /// `best_fields` (default): the best field's score.
    BestFields,
    /// `most_fields`: the fields' scores summed.
    MostFields,
    /// `cross_fields`: matched like `best_fields` here.
    CrossFields,
    /// `phrase`: a phrase per field, best wins.
    Phrase,
    /// `phrase_prefix`: matched like `best_fields` here.
    PhrasePrefix,
    /// `bool_prefix`: a `match_bool_prefix` per field, summed like `most_fields`.
    BoolPrefix,
}

impl MultiKind {
    fn parse(v: &Value) -> EsResult<MultiKind> {
        let s = super::value_text(v);
        Ok(match s.as_str() {
            "best_fields" | "bestFields" | "boolean" => MultiKind::BestFields,
            "most_fields" | "mostFields" => MultiKind::MostFields,
            "cross_fields" | "crossFields" => MultiKind::CrossFields,
            "phrase" => MultiKind::Phrase,
            "phrase_prefix" | "phrasePrefix" => MultiKind::PhrasePrefix,
            "bool_prefix" | "boolPrefix" => MultiKind::BoolPrefix,
            _ => {
                return Err(EsError::parse(format!(
                    "failed to parse [multi_match] query type [{s}]. unknown type."
                )))
            }
        })
    }
}

/// Parses `multi_match`.
pub(super) fn parse_multi_match(m: &Map<String, Value>) -> EsResult<Query> {
    let query = match m.get("query") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => return Err(EsError::parsing("[multi_match] requires query value")),
    };
    // Patterns keep their `^boost`, which the compiler reads per field.
    let fields = match m.get("fields") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => vec!["*".to_string()],
    };
    let mut opts = TextOpts::default();
    let (mut and, mut msm, mut kind) = (false, None, MultiKind::BestFields);
    let mut slop = false;
    let mut cutoff = false;
    for (k, v) in m {
        if opts.accept(k, v)? {
            continue;
        }
        match k.as_str() {
            "operator" => and = parse_operator(v)?,
            "minimum_should_match" => msm = Some(Msm::parse(v)?),
            "type" => kind = MultiKind::parse(v)?,
            // The default slop (0) is allowed with every type.
            "slop" => slop = !matches!(v.as_i64(), Some(0)),
            "cutoff_frequency" => cutoff = true,
            _ => {}
        }
    }
    if kind == MultiKind::BoolPrefix {
        for (set, name) in [(slop, "slop"), (cutoff, "cutoff_frequency")] {
            if set {
                return Err(EsError::parsing(format!(
                    "[{name}] not allowed for type [bool_prefix]"
                )));
            }
        }
    }
    Ok(Query::MultiMatch {
        fields,
        query,
        kind,
        opts,
        and,
        msm,
        boost: super::boost_of(m)?,
    })
}

/// Splits a field pattern's `^boost` suffix off.
pub(super) fn field_boost(pattern: &str) -> (&str, f32) {
    match pattern.split_once('^') {
        Some((name, b)) => (name, b.trim().parse::<f32>().unwrap_or(1.0)),
        None => (pattern, 1.0),
    }
}

/// Compiles `match_bool_prefix` on one field: a should clause per term, a term (or fuzzy)
/// clause for each but the last, a prefix clause for the last, so `brown fox ju` finds
/// `jump` and `jumparound`. Scores add up as in a `bool` query.
pub(super) fn compile_bool_prefix(
    ctx: &Ctx<'_>,
    field: &str,
    query: &str,
    opts: &TextOpts,
    and: bool,
    msm: Option<&Msm>,
    boost: f32,
) -> EsResult<Compiled> {
    const NAME: &str = "match_bool_prefix";
    let analyzer = opts.analyzer(NAME, ctx)?;
    let Some(src) = source_of(ctx, field) else {
        return Ok(Compiled::None);
    };
    let terms = match src_kind(&src) {
        Kind::Text => analyzer.terms(query),
        // A keyword is one term, so the whole text is the prefix.
        Kind::Keyword => vec![query.to_string()],
        _ => {
            let type_name = match resolve_field(ctx.mapping, field) {
                FieldRef::Field { field: f, .. } => f.type_name.clone(),
                _ => None,
            };
            return Err(shard_error(
                ctx.index,
                ctx.uuid,
                format!(
                    "Can only use prefix queries on keyword, text and wildcard fields - not on [{field}] which is of type [{}]",
                    type_name.as_deref().unwrap_or("object")
                ),
                None,
            ));
        }
    };
    let Some((last, rest)) = terms.split_last() else {
        return Ok(Compiled::None);
    };
    let mut should: Vec<Compiled> = rest
        .iter()
        .map(|t| term_clause(&src, t, opts.active_fuzzy()))
        .collect();
    should.push(Compiled::Pattern {
        src: src.clone(),
        pattern: last.clone(),
        prefix: true,
        ci: false,
        boost: 1.0,
    });
    let n = should.len();
    let required = if and {
        n
    } else {
        msm.map_or(1, |m| m.required(n)).max(1)
    };
    Ok(Compiled::Bool {
        must: vec![],
        filter: vec![],
        should,
        must_not: vec![],
        required,
        boost,
    })
}

/// `match` with `fuzziness` on a text or keyword field: each term of the text (the whole
/// text for a keyword) matches the indexed terms within the allowed edits.
pub(super) fn compile_fuzzy_match(
    ctx: &Ctx<'_>,
    field: &str,
    query: &str,
    opts: &TextOpts,
    and: bool,
    msm: Option<&Msm>,
    boost: f32,
) -> EsResult<Compiled> {
    let analyzer = opts.analyzer("match", ctx)?;
    let Some(src) = source_of(ctx, field) else {
        return Ok(Compiled::None);
    };
    let terms = match src_kind(&src) {
        Kind::Text => analyzer.terms(query),
        _ => vec![query.to_string()],
    };
    if terms.is_empty() {
        return Ok(Compiled::None);
    }
    let should: Vec<Compiled> = terms
        .iter()
        .map(|t| term_clause(&src, t, opts.active_fuzzy()))
        .collect();
    let n = should.len();
    let required = if and {
        n
    } else {
        msm.map_or(1, |m| m.required(n)).max(1)
    };
    Ok(Compiled::Bool {
        must: vec![],
        filter: vec![],
        should,
        must_not: vec![],
        required,
        boost,
    })
}

/// One term of the query text: an exact term, or a fuzzy one when fuzziness allows edits.
fn term_clause(src: &Source, term: &str, fuzzy: Option<&FuzzyOpts>) -> Compiled {
    match fuzzy {
        Some(f) => Compiled::Fuzzy {
            src: src.clone(),
            term: FuzzyTerm::new(term, f.fuzziness, f.prefix_len, f.transpositions),
            boost: 1.0,
        },
        None => Compiled::Exact {
            src: src.clone(),
            keys: vec![Key::S(term.to_string())],
            ci: false,
            boost: 1.0,
            stats: None,
        },
    }
}

/// Compiles `multi_match`: one clause per matching field (with its `^boost`), combined as
/// the type says: the best field's score, or the sum for `most_fields` and `bool_prefix`.
#[allow(clippy::too_many_arguments)]
pub(super) fn compile_multi_match(
    ctx: &Ctx<'_>,
    patterns: &[String],
    query: &str,
    kind: MultiKind,
    opts: &TextOpts,
    and: bool,
    msm: Option<&Msm>,
    boost: f32,
) -> EsResult<Compiled> {
    opts.analyzer("multi_match", ctx)?;
    let mut clauses = Vec::new();
    for (f, field_boost) in expand_weighted(ctx.mapping, patterns) {
        let Some(src) = source_of(ctx, &f) else {
            continue;
        };
        let text_like = matches!(src_kind(&src), Kind::Text | Kind::Keyword);
        let b = boost * field_boost;
        let clause = match kind {
            // Prefixes only exist on strings; other fields are left out, as with `lenient`.
            MultiKind::BoolPrefix if !text_like => continue,
            MultiKind::BoolPrefix => compile_bool_prefix(ctx, &f, query, opts, and, msm, b)?,
            _ if text_like && kind != MultiKind::Phrase && opts.active_fuzzy().is_some() => {
                compile_fuzzy_match(ctx, &f, query, opts, and, msm, b)?
            }
            _ => {
                // Lenient: numeric fields only take part when the text is a number.
                if !text_like && query.trim().parse::<f64>().is_err() {
                    continue;
                }
                let phrase = kind == MultiKind::Phrase;
                compile_match(ctx, &f, &Value::from(query), and, msm, phrase, b)?
            }
        };
        clauses.push(clause);
    }
    Ok(match kind {
        _ if clauses.is_empty() => Compiled::None,
        MultiKind::MostFields | MultiKind::BoolPrefix => Compiled::Bool {
            must: vec![],
            filter: vec![],
            should: clauses,
            must_not: vec![],
            required: 1,
            boost: 1.0,
        },
        _ => Compiled::Dis(clauses),
    })
}

/// Field patterns expanded against the mapping, each with its `^boost` (the first pattern
/// naming a field decides its boost).
fn expand_weighted(m: &Mapping, patterns: &[String]) -> Vec<(String, f32)> {
    let mut out: Vec<(String, f32)> = Vec::new();
    for p in patterns {
        let (name, b) = field_boost(p);
        for f in expand_fields(m, &[name.to_string()]) {
            if !out.iter().any(|(o, _)| *o == f) {
                out.push((f, b));
            }
        }
    }
    out
}
