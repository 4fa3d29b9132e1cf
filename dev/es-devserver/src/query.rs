//! The query DSL subset: parsing (with Elasticsearch's parse errors), compilation against an
//! index's mapping (field types decide how values compare) and evaluation over `_source`.

use std::cell::OnceCell;
use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::error::{EsError, EsResult};
use crate::json::{token_name, values_at};
use crate::mapping::{resolve_field, FieldRef, Kind, Mapping};
use crate::names::{eval_date_math, glob_match, now_millis, parse_date};

mod bm25;
mod full_text;
mod geo_query;
mod query_string;
mod regexp;
pub(crate) use bm25::with_stats;
pub use full_text::{FuzzyOpts, MultiKind, TextOpts};
pub use query_string::{QsOpts, QsQuery};
pub use regexp::{Flags as RegexpFlags, Regex};

/// `minimum_should_match`.
#[derive(Debug, Clone, PartialEq)]
pub enum Msm {
    /// A count (negative: all but N).
    Count(i64),
    /// A percentage (negative: all but that share).
    Percent(f64),
    /// `N<spec`: all required up to N clauses, otherwise spec.
    Cond(i64, Box<Msm>),
}

impl Msm {
    fn parse(v: &Value) -> EsResult<Msm> {
        let s = match v {
            Value::Number(n) => return Ok(Msm::Count(n.as_i64().unwrap_or(0))),
            Value::String(s) => s.trim().to_string(),
            other => {
                return Err(EsError::parsing(format!(
                    "[minimum_should_match] unknown token [{}]",
                    token_name(other)
                )))
            }
        };
        Self::parse_str(&s)
    }

    fn parse_str(s: &str) -> EsResult<Msm> {
        let bad = || EsError::illegal_argument(format!("Invalid minimum_should_match value [{s}]"));
        if let Some((n, rest)) = s.split_once('<') {
            let n: i64 = n.trim().parse().map_err(|_| bad())?;
            return Ok(Msm::Cond(n, Box::new(Self::parse_str(rest.trim())?)));
        }
        if let Some(p) = s.strip_suffix('%') {
            return p.trim().parse::<f64>().map(Msm::Percent).map_err(|_| bad());
        }
        s.parse::<i64>().map(Msm::Count).map_err(|_| bad())
    }

    /// The number of optional clauses required out of `n`.
    pub fn required(&self, n: usize) -> usize {
        let n_i = n as i64;
        let r = match self {
            Msm::Count(c) => {
                if *c < 0 {
                    n_i.saturating_add(*c)
                } else {
                    *c
                }
            }
            Msm::Percent(p) => {
                let part = ((n as f64) * p.abs() / 100.0).floor() as i64;
                if *p < 0.0 {
                    n_i.saturating_sub(part)
                } else {
                    part
                }
            }
            Msm::Cond(limit, spec) => {
                if n_i <= *limit {
                    n_i
                } else {
                    spec.required(n) as i64
                }
            }
        };
        r.clamp(0, n_i) as usize
    }
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// `match_all`.
    MatchAll(f32),
    /// `match_none`.
    MatchNone,
    /// `term` / `terms`.
    Terms {
        /// Field.
        field: String,
        /// Values.
        values: Vec<Value>,
        /// Case-insensitive matching (keyword).
        case_insensitive: bool,
        /// Boost.
        boost: f32,
    },
    /// `ids`.
    Ids(Vec<String>, f32),
    /// `match` / `match_phrase`.
    Match {
        /// Field.
        field: String,
        /// Query text or value.
        query: Value,
        /// `operator: and`.
        and: bool,
        /// `minimum_should_match`.
        msm: Option<Msm>,
        /// Phrase matching.
        phrase: bool,
        /// Boost.
        boost: f32,
    },
    /// `match_bool_prefix`: the terms of the text, the last one as a prefix.
    BoolPrefix {
        /// Field.
        field: String,
        /// Query text.
        query: String,
        /// Analyzer and fuzziness.
        opts: TextOpts,
        /// `operator: and`.
        and: bool,
        /// `minimum_should_match`.
        msm: Option<Msm>,
        /// Boost.
        boost: f32,
    },
    /// `multi_match` / `query_string` over several fields.
    MultiMatch {
        /// Field patterns, each with an optional `^boost`.
        fields: Vec<String>,
        /// Text.
        query: String,
        /// `type`.
        kind: MultiKind,
        /// Analyzer and fuzziness.
        opts: TextOpts,
        /// `operator: and`.
        and: bool,
        /// `minimum_should_match` (per field).
        msm: Option<Msm>,
        /// Boost.
        boost: f32,
    },
    /// `range`.
    Range {
        /// Field.
        field: String,
        /// Lower bound and whether inclusive.
        lo: Option<(Value, bool)>,
        /// Upper bound and whether inclusive.
        hi: Option<(Value, bool)>,
        /// The query's own date `format` for the bounds (else the field's).
        format: Option<String>,
        /// Boost.
        boost: f32,
    },
    /// `bool`.
    Bool {
        /// Must (scored).
        must: Vec<Query>,
        /// Filter (not scored).
        filter: Vec<Query>,
        /// Should.
        should: Vec<Query>,
        /// Must not.
        must_not: Vec<Query>,
        /// `minimum_should_match`.
        msm: Option<Msm>,
        /// Boost.
        boost: f32,
    },
    /// `exists`.
    Exists(String, f32),
    /// `prefix`.
    Prefix {
        /// Field.
        field: String,
        /// Prefix.
        value: String,
        /// Case-insensitive.
        case_insensitive: bool,
        /// Boost.
        boost: f32,
    },
    /// `wildcard`.
    Wildcard {
        /// Field.
        field: String,
        /// Pattern (`*` and `?`).
        value: String,
        /// Case-insensitive.
        case_insensitive: bool,
        /// Boost.
        boost: f32,
    },
    /// `regexp` (Lucene's regular expression syntax, whole terms).
    Regexp {
        /// Field.
        field: String,
        /// The expression.
        value: String,
        /// Optional operators.
        flags: RegexpFlags,
        /// Case-insensitive.
        case_insensitive: bool,
        /// Boost.
        boost: f32,
    },
    /// `query_string` / `q=` (Lucene's classic syntax).
    QueryString(Box<QsQuery>),
    /// `geo_bounding_box` / `geo_distance`.
    Geo {
        /// Field.
        field: String,
        /// The box or circle.
        area: geo_query::Area,
        /// `ignore_unmapped`.
        ignore_unmapped: bool,
        /// Boost.
        boost: f32,
    },
    /// `constant_score`.
    ConstantScore(Box<Query>, f32),
    /// A query with `_name`: hits it matches list the name in `matched_queries`.
    Named(String, Box<Query>),
}

fn malformed(name: &str, found: &str) -> EsError {
    EsError::parsing(format!(
        "[{name}] malformed query, expected [END_OBJECT] but found [{found}]"
    ))
}

fn boost_of(m: &Map<String, Value>) -> EsResult<f32> {
    match m.get("boost") {
        None => Ok(1.0),
        Some(Value::Number(n)) => Ok(n.as_f64().unwrap_or(1.0) as f32),
        Some(Value::String(s)) => s
            .parse::<f32>()
            .map_err(|_| EsError::parsing(format!("[boost] failed to parse [{s}]"))),
        Some(other) => Err(EsError::parsing(format!(
            "[boost] unknown token [{}]",
            token_name(other)
        ))),
    }
}

fn bool_of(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Bool(true))) || matches!(v, Some(Value::String(s)) if s == "true")
}

/// A `{"<field>": value-or-object}` clause with exactly one field.
fn single_field<'a>(
    name: &str,
    v: &'a Value,
) -> EsResult<(&'a String, &'a Value, Option<&'a Map<String, Value>>)> {
    let m = v.as_object().ok_or_else(|| {
        EsError::parsing(format!(
            "[{name}] query malformed, no start_object after query name"
        ))
    })?;
    let mut fields = m.iter().filter(|(k, _)| {
        !(matches!(name, "terms") && (k.as_str() == "boost" || k.as_str() == "_name"))
    });
    let (field, val) = fields.next().ok_or_else(|| {
        EsError::parsing(format!(
            "[{name}] query doesn't support an empty field name"
        ))
    })?;
    if let Some((second, _)) = fields.next() {
        return Err(EsError::parsing(format!(
            "[{name}] query doesn't support multiple fields, found [{field}] and [{second}]"
        )));
    }
    Ok((
        field,
        val,
        if matches!(name, "terms") {
            Some(m)
        } else {
            None
        },
    ))
}

/// Parses a query object.
pub fn parse_query(v: &Value) -> EsResult<Query> {
    let m = match v {
        Value::Object(m) => m,
        other => {
            return Err(EsError::parsing(format!(
                "[_na] query malformed, must start with start_object, found [{}]",
                token_name(other)
            )))
        }
    };
    let mut it = m.iter();
    let Some((name, body)) = it.next() else {
        return Err(EsError::parsing("query malformed, empty clause found"));
    };
    if it.next().is_some() {
        return Err(malformed(name, "FIELD_NAME"));
    }
    let q = parse_named(name, body)?;
    Ok(match query_name(body) {
        Some(n) => Query::Named(n, Box::new(q)),
        None => q,
    })
}

/// A query's `_name`: beside its parameters (`bool`, `terms`, `ids`, ...) or inside its
/// field's object (`match`, `term`, `range`, ...).
fn query_name(body: &Value) -> Option<String> {
    let m = body.as_object()?;
    if let Some(Value::String(n)) = m.get("_name") {
        return Some(n.clone());
    }
    m.values().find_map(|v| match v.get("_name") {
        Some(Value::String(n)) => Some(n.clone()),
        _ => None,
    })
}

fn parse_named(name: &str, body: &Value) -> EsResult<Query> {
    match name {
        "match_all" => {
            let m = body
                .as_object()
                .ok_or_else(|| EsError::parsing("[match_all] query malformed"))?;
            for k in m.keys() {
                if k != "boost" && k != "_name" {
                    return Err(EsError::parsing(format!(
                        "[match_all] query does not support [{k}]"
                    )));
                }
            }
            Ok(Query::MatchAll(boost_of(m)?))
        }
        "match_none" => Ok(Query::MatchNone),
        "term" => {
            let (field, val, _) = single_field(name, body)?;
            match val {
                Value::Object(o) => {
                    for k in o.keys() {
                        if !matches!(k.as_str(), "value" | "boost" | "case_insensitive" | "_name") {
                            return Err(EsError::parsing(format!(
                                "[term] query does not support [{k}]"
                            )));
                        }
                    }
                    let value = o
                        .get("value")
                        .cloned()
                        .ok_or_else(|| EsError::illegal_argument("value cannot be null"))?;
                    Ok(Query::Terms {
                        field: field.clone(),
                        values: vec![value],
                        case_insensitive: bool_of(o.get("case_insensitive")),
                        boost: boost_of(o)?,
                    })
                }
                Value::Array(_) => Err(EsError::parsing(
                    "[term] query does not support array of values",
                )),
                Value::Null => Err(EsError::illegal_argument("value cannot be null")),
                other => Ok(Query::Terms {
                    field: field.clone(),
                    values: vec![other.clone()],
                    case_insensitive: false,
                    boost: 1.0,
                }),
            }
        }
        "terms" => {
            let (field, val, outer) = single_field(name, body)?;
            let values = match val {
                Value::Array(a) => a.clone(),
                _ => {
                    return Err(EsError::parsing(format!(
                        "[terms] query does not support [{field}]"
                    )))
                }
            };
            Ok(Query::Terms {
                field: field.clone(),
                values,
                case_insensitive: false,
                boost: outer.map(boost_of).transpose()?.unwrap_or(1.0),
            })
        }
        "ids" => {
            let m = body
                .as_object()
                .ok_or_else(|| EsError::parsing("[ids] query malformed"))?;
            let mut out = Vec::new();
            for (k, v) in m {
                match k.as_str() {
                    "values" => {
                        let a = v.as_array().ok_or_else(|| {
                            EsError::parsing(
                                "[ids] values doesn't support values of type: VALUE_STRING",
                            )
                        })?;
                        for id in a {
                            match id {
                                Value::String(s) => out.push(s.clone()),
                                Value::Number(n) => out.push(n.to_string()),
                                other => {
                                    return Err(EsError::parsing(format!(
                                        "[ids] failed to parse field [values] with value [{}]",
                                        token_name(other)
                                    )))
                                }
                            }
                        }
                    }
                    "boost" | "_name" | "type" => {}
                    other => {
                        return Err(EsError::parsing(format!(
                            "[ids] query does not support [{other}]"
                        )))
                    }
                }
            }
            Ok(Query::Ids(out, boost_of(m)?))
        }
        "match" | "match_phrase" => {
            let phrase = name == "match_phrase";
            let (field, val, _) = single_field(name, body)?;
            match val {
                Value::Object(o) => {
                    let mut and = false;
                    let mut msm = None;
                    let mut fuzzy = TextOpts::default();
                    for (k, v) in o {
                        if !phrase
                            && matches!(
                                k.as_str(),
                                "fuzziness" | "prefix_length" | "fuzzy_transpositions"
                            )
                        {
                            fuzzy.accept(k, v)?;
                            continue;
                        }
                        match k.as_str() {
                            "query"
                            | "boost"
                            | "_name"
                            | "analyzer"
                            | "fuzziness"
                            | "prefix_length"
                            | "max_expansions"
                            | "lenient"
                            | "zero_terms_query"
                            | "auto_generate_synonyms_phrase_query"
                            | "fuzzy_transpositions"
                            | "slop" => {}
                            "operator" => and = full_text::parse_operator(v)?,
                            "minimum_should_match" => msm = Some(Msm::parse(v)?),
                            other => {
                                return Err(EsError::parsing(format!(
                                    "[{name}] query does not support [{other}]"
                                )))
                            }
                        }
                    }
                    let query = o
                        .get("query")
                        .cloned()
                        .ok_or_else(|| EsError::parsing("No text specified for text query"))?;
                    if fuzzy.active_fuzzy().is_some() {
                        // `fuzziness`: compiled like a one-field `multi_match`.
                        if let Some(a) = o.get("analyzer") {
                            fuzzy.accept("analyzer", a)?;
                        }
                        return Ok(Query::MultiMatch {
                            fields: vec![field.clone()],
                            query: value_text(&query),
                            kind: MultiKind::BestFields,
                            opts: fuzzy,
                            and,
                            msm,
                            boost: boost_of(o)?,
                        });
                    }
                    Ok(Query::Match {
                        field: field.clone(),
                        query,
                        and,
                        msm,
                        phrase,
                        boost: boost_of(o)?,
                    })
                }
                Value::Array(_) => Err(EsError::parsing(format!(
                    "[{name}] unknown token [START_ARRAY] after [{field}]"
                ))),
                other => Ok(Query::Match {
                    field: field.clone(),
                    query: other.clone(),
                    and: false,
                    msm: None,
                    phrase,
                    boost: 1.0,
                }),
            }
        }
        "multi_match" => {
            let m = body
                .as_object()
                .ok_or_else(|| EsError::parsing("[multi_match] query malformed"))?;
            full_text::parse_multi_match(m)
        }
        "match_bool_prefix" => full_text::parse_match_bool_prefix(body),
        "query_string" | "simple_query_string" => {
            let m = body
                .as_object()
                .ok_or_else(|| EsError::parsing(format!("[{name}] query malformed")))?;
            let q = m.get("query").and_then(Value::as_str).ok_or_else(|| {
                EsError::parsing(format!("[{name}] must be provided with a [query]"))
            })?;
            let df = m.get("default_field").and_then(Value::as_str);
            let fields: Option<Vec<String>> = m.get("fields").and_then(Value::as_array).map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            });
            let mut opts =
                QsOpts::new(fields.unwrap_or_else(|| vec![df.unwrap_or("*").to_string()]));
            opts.and = m
                .get("default_operator")
                .and_then(Value::as_str)
                .is_some_and(|o| o.eq_ignore_ascii_case("and"));
            opts.lenient = m.get("lenient").map(|v| bool_of(Some(v)));
            opts.fuzziness = m.get("fuzziness").cloned();
            opts.boost = boost_of(m)?;
            Ok(if name == "query_string" {
                query_string(q, opts)
            } else {
                simple_query_string(q, opts)
            })
        }
        "range" => {
            let (field, val, _) = single_field(name, body)?;
            let o = val.as_object().ok_or_else(|| {
                EsError::parsing(format!("[range] query does not support [{field}]"))
            })?;
            let mut lo = None;
            let mut hi = None;
            let mut include_lower = true;
            let mut include_upper = true;
            let mut from = None;
            let mut to = None;
            let mut format = None;
            for (k, v) in o {
                match k.as_str() {
                    "gt" => lo = Some((v.clone(), false)),
                    "gte" => lo = Some((v.clone(), true)),
                    "lt" => hi = Some((v.clone(), false)),
                    "lte" => hi = Some((v.clone(), true)),
                    "from" => from = Some(v.clone()),
                    "to" => to = Some(v.clone()),
                    "include_lower" => include_lower = bool_of(Some(v)),
                    "include_upper" => include_upper = bool_of(Some(v)),
                    "format" => format = Some(value_text(v)),
                    "boost" | "_name" | "time_zone" | "relation" => {}
                    other => {
                        return Err(EsError::parsing(format!(
                            "[range] query does not support [{other}]"
                        )))
                    }
                }
            }
            if let Some(f) = from.filter(|f| !f.is_null()) {
                lo = Some((f, include_lower));
            }
            if let Some(t) = to.filter(|t| !t.is_null()) {
                hi = Some((t, include_upper));
            }
            let lo = lo.filter(|(v, _)| !v.is_null());
            let hi = hi.filter(|(v, _)| !v.is_null());
            Ok(Query::Range {
                field: field.clone(),
                lo,
                hi,
                format,
                boost: boost_of(o)?,
            })
        }
        "bool" => {
            let m = body.as_object().ok_or_else(|| {
                EsError::parsing("[bool] query malformed, no start_object after query name")
            })?;
            let clauses = |k: &str, v: &Value| -> EsResult<Vec<Query>> {
                match v {
                    Value::Array(a) => a.iter().map(parse_query).collect(),
                    Value::Object(_) => Ok(vec![parse_query(v)?]),
                    other => Err(EsError::parsing(format!(
                        "[bool] query does not support [{k}] with token [{}]",
                        token_name(other)
                    ))),
                }
            };
            let (mut must, mut filter, mut should, mut must_not) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut msm = None;
            for (k, v) in m {
                match k.as_str() {
                    "must" => must = clauses(k, v)?,
                    "filter" => filter = clauses(k, v)?,
                    "should" => should = clauses(k, v)?,
                    "must_not" | "mustNot" => must_not = clauses(k, v)?,
                    "minimum_should_match" => msm = Some(Msm::parse(v)?),
                    "boost" | "_name" | "adjust_pure_negative" => {}
                    other => {
                        return Err(EsError::parsing(format!(
                            "[bool] query does not support [{other}]"
                        )))
                    }
                }
            }
            Ok(Query::Bool {
                must,
                filter,
                should,
                must_not,
                msm,
                boost: boost_of(m)?,
            })
        }
        "exists" => {
            let m = body
                .as_object()
                .ok_or_else(|| EsError::parsing("[exists] query malformed"))?;
            for k in m.keys() {
                if !matches!(k.as_str(), "field" | "boost" | "_name") {
                    return Err(EsError::parsing(format!(
                        "[exists] query does not support [{k}]"
                    )));
                }
            }
            let field = m
                .get("field")
                .and_then(Value::as_str)
                .ok_or_else(|| EsError::parsing("[exists] must be provided with a [field]"))?;
            Ok(Query::Exists(field.to_string(), boost_of(m)?))
        }
        "prefix" | "wildcard" => {
            let (field, val, _) = single_field(name, body)?;
            let (value, ci, boost) = match val {
                Value::Object(o) => {
                    let key = if name == "wildcard" && o.contains_key("wildcard") {
                        "wildcard"
                    } else {
                        "value"
                    };
                    let v = o.get(key).map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    });
                    (
                        v.ok_or_else(|| EsError::parsing(format!("[{name}] requires a value")))?,
                        bool_of(o.get("case_insensitive")),
                        boost_of(o)?,
                    )
                }
                Value::String(s) => (s.clone(), false, 1.0),
                other => (other.to_string(), false, 1.0),
            };
            Ok(if name == "prefix" {
                Query::Prefix {
                    field: field.clone(),
                    value,
                    case_insensitive: ci,
                    boost,
                }
            } else {
                Query::Wildcard {
                    field: field.clone(),
                    value,
                    case_insensitive: ci,
                    boost,
                }
            })
        }
        "regexp" => parse_regexp(body),
        "geo_bounding_box" => geo_query::parse_bounding_box(body),
        "geo_distance" => geo_query::parse_distance(body),
        "constant_score" => {
            let m = body
                .as_object()
                .ok_or_else(|| EsError::parsing("[constant_score] query malformed"))?;
            let f = m
                .get("filter")
                .ok_or_else(|| EsError::parsing("[constant_score] requires a 'filter' element"))?;
            Ok(Query::ConstantScore(
                Box::new(parse_query(f)?),
                boost_of(m)?,
            ))
        }
        other => Err(
            EsError::parsing(format!("unknown query [{other}]")).caused_by(EsError::new(
                400,
                "named_object_not_found_exception",
                format!("[1:1] unknown field [{other}]"),
            )),
        ),
    }
}

fn parse_regexp(body: &Value) -> EsResult<Query> {
    let (field, val, _) = single_field("regexp", body)?;
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match val {
        Value::Object(o) => {
            let mut flags = RegexpFlags::ALL;
            for (k, v) in o {
                match k.as_str() {
                    "value"
                    | "boost"
                    | "_name"
                    | "case_insensitive"
                    | "max_determinized_states"
                    | "rewrite" => {}
                    "flags" => {
                        flags = RegexpFlags::parse(&text(v)).map_err(EsError::illegal_argument)?
                    }
                    "flags_value" => flags = RegexpFlags::from_bits(v.as_i64().unwrap_or(0xffff)),
                    other => {
                        return Err(EsError::parsing(format!(
                            "[regexp] query does not support [{other}]"
                        )))
                    }
                }
            }
            let value = o
                .get("value")
                .map(text)
                .ok_or_else(|| EsError::illegal_argument("value cannot be null"))?;
            Ok(Query::Regexp {
                field: field.clone(),
                value,
                flags,
                case_insensitive: bool_of(o.get("case_insensitive")),
                boost: boost_of(o)?,
            })
        }
        Value::Null => Err(EsError::illegal_argument("value cannot be null")),
        other => Ok(Query::Regexp {
            field: field.clone(),
            value: text(other),
            flags: RegexpFlags::ALL,
            case_insensitive: false,
            boost: 1.0,
        }),
    }
}

/// `query_string` / `q=`: see [`query_string::parse`].
pub fn query_string(q: &str, opts: QsOpts) -> Query {
    query_string::parse(q, opts)
}

/// `simple_query_string`: the same syntax, lenient, and text it cannot parse is searched as
/// plain terms instead of failing.
fn simple_query_string(q: &str, mut opts: QsOpts) -> Query {
    opts.lenient = Some(opts.lenient.unwrap_or(true));
    let parsed = query_string::parse(q, opts.clone());
    if matches!(&parsed, Query::QueryString(qs) if qs.is_valid()) {
        return parsed;
    }
    let escaped: String = q
        .chars()
        .flat_map(|c| {
            let special = "+-!()[]{}^~\":\\/*?&|".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect();
    query_string::parse(&escaped, opts)
}

// ---------------------------------------------------------------------------------------
// Analysis and value normalization.

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF)
}

/// A standard-analyzer-like tokenizer: lowercased runs of letters and digits; each CJK
/// ideograph is a token of its own.
pub fn tokenize(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in s.chars() {
        if c.is_alphanumeric() || (c == '\'' && !cur.is_empty()) {
            if is_cjk(c) {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                out.push(c.to_string());
            } else {
                cur.extend(c.to_lowercase());
            }
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    for t in &mut out {
        while t.ends_with('\'') {
            t.pop();
        }
    }
    out.retain(|t| !t.is_empty());
    out
}

/// A comparable value of a field, normalized by the field's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    /// Integer types and dates.
    I(i64),
    /// Floating-point types.
    F(f64),
    /// Keywords and text tokens.
    S(String),
    /// Booleans.
    B(bool),
}

impl Key {
    fn cmp(&self, other: &Key) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Key::I(a), Key::I(b)) => Some(a.cmp(b)),
            (Key::F(a), Key::F(b)) => a.partial_cmp(b),
            (Key::I(a), Key::F(b)) => (*a as f64).partial_cmp(b),
            (Key::F(a), Key::I(b)) => a.partial_cmp(&(*b as f64)),
            (Key::S(a), Key::S(b)) => Some(a.cmp(b)),
            (Key::B(a), Key::B(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// As a JSON value (sort values, docvalue fields).
    pub fn to_json(&self) -> Value {
        match self {
            Key::I(i) => Value::from(*i),
            Key::F(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Key::S(s) => Value::from(s.as_str()),
            Key::B(b) => Value::from(i64::from(*b)),
        }
    }
}

fn num_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}

/// The indexed values of one source value for a field type (`None` when not indexable).
pub fn doc_keys(kind: Kind, field_params: &Map<String, Value>, v: &Value) -> Vec<Key> {
    match kind {
        Kind::Keyword => {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return vec![],
            };
            if let Some(limit) = field_params.get("ignore_above").and_then(Value::as_u64) {
                if s.chars().count() as u64 > limit {
                    return vec![];
                }
            }
            vec![Key::S(s)]
        }
        Kind::Ip => match v {
            Value::String(s) => crate::field_checks::canonical_ip(s)
                .map(|c| vec![Key::S(c)])
                .unwrap_or_default(),
            _ => vec![],
        },
        Kind::Text => match v {
            Value::String(s) => tokenize(s).into_iter().map(Key::S).collect(),
            Value::Number(n) => tokenize(&n.to_string()).into_iter().map(Key::S).collect(),
            Value::Bool(b) => vec![Key::S(b.to_string())],
            _ => vec![],
        },
        Kind::Long | Kind::Integer | Kind::Short | Kind::Byte | Kind::UnsignedLong => match v {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    vec![Key::I(i)]
                } else if let Some(u) = n.as_u64() {
                    vec![Key::I(i64::try_from(u).unwrap_or(i64::MAX))]
                } else {
                    n.as_f64()
                        .map(|f| vec![Key::I(f.trunc() as i64)])
                        .unwrap_or_default()
                }
            }
            Value::String(s) => match s.trim().parse::<i64>() {
                Ok(i) => vec![Key::I(i)],
                Err(_) => s
                    .trim()
                    .parse::<f64>()
                    .map(|f| vec![Key::I(f.trunc() as i64)])
                    .unwrap_or_default(),
            },
            _ => vec![],
        },
        Kind::Float | Kind::HalfFloat => num_of(v)
            .map(|f| vec![Key::F(f64::from(f as f32))])
            .unwrap_or_default(),
        Kind::Double | Kind::ScaledFloat => num_of(v).map(|f| vec![Key::F(f)]).unwrap_or_default(),
        Kind::Boolean => match v {
            Value::Bool(b) => vec![Key::B(*b)],
            Value::String(s) if s == "true" => vec![Key::B(true)],
            Value::String(s) if s == "false" => vec![Key::B(false)],
            _ => vec![],
        },
        Kind::Date if crate::datefmt::field_format(field_params).is_some() => {
            let Some(df) = crate::datefmt::field_format(field_params) else {
                return vec![];
            };
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return vec![],
            };
            df.parse(&text).map(|i| vec![Key::I(i)]).unwrap_or_default()
        }
        Kind::Date => match v {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .map(|i| vec![Key::I(i)])
                .unwrap_or_default(),
            Value::String(s) => parse_date(s)
                .or_else(|| s.parse::<i64>().ok())
                .map(|i| vec![Key::I(i)])
                .unwrap_or_default(),
            _ => vec![],
        },
        Kind::DateNanos => doc_keys(Kind::Date, field_params, v)
            .into_iter()
            .map(|k| match (k, v) {
                (Key::I(ms), Value::String(s)) => {
                    Key::I(crate::date_nanos::from_millis(ms, Some(s)))
                }
                (Key::I(ms), Value::Number(n)) => Key::I(
                    crate::date_nanos::from_epoch_millis(&n.to_string())
                        .unwrap_or_else(|| crate::date_nanos::from_millis(ms, None)),
                ),
                (other, _) => other,
            })
            .collect(),
        Kind::Object | Kind::Nested | Kind::Opaque | Kind::GeoPoint => vec![],
    }
}

fn shard_error(index: &str, uuid: &str, reason: String, cause: Option<String>) -> EsError {
    let mut e = EsError::new(400, "query_shard_exception", reason)
        .with_meta("index_uuid", uuid)
        .with_meta("index", index);
    if let Some(c) = cause {
        e = e.caused_by(EsError::illegal_argument(c));
    }
    e
}

/// A query value converted for a field type (term queries).
fn query_keys(kind: Kind, v: &Value, field: &str, ctx: &Ctx<'_>) -> EsResult<Vec<Key>> {
    let fail = |cause: String| {
        shard_error(
            ctx.index,
            ctx.uuid,
            format!("failed to create query: {cause}"),
            Some(cause),
        )
    };
    match kind {
        Kind::Keyword => Ok(doc_keys(kind, &Map::new(), v)),
        Kind::Ip => {
            let text = value_text(v);
            match crate::field_checks::canonical_ip(&text) {
                Some(c) => Ok(vec![Key::S(c)]),
                None => Err(fail(format!("'{text}' is not an IP string literal."))),
            }
        }
        Kind::Text => Ok(match v {
            Value::String(s) => vec![Key::S(s.clone())],
            other => vec![Key::S(other.to_string())],
        }),
        Kind::Long | Kind::Integer | Kind::Short | Kind::Byte | Kind::UnsignedLong => {
            let f = num_of(v).ok_or_else(|| fail(format!("For input string: \"{}\"", value_text(v))))?;
            if f.fract() != 0.0 {
                return Ok(vec![]);
            }
            Ok(match v {
                Value::Number(n) if n.as_i64().is_some() => vec![Key::I(n.as_i64().unwrap_or(0))],
                Value::String(s) if s.trim().parse::<i64>().is_ok() => vec![Key::I(s.trim().parse::<i64>().unwrap_or(0))],
                _ => vec![Key::I(f as i64)],
            })
        }
        Kind::Float | Kind::HalfFloat => {
            let f = num_of(v).ok_or_else(|| fail(format!("For input string: \"{}\"", value_text(v))))?;
            Ok(vec![Key::F(f64::from(f as f32))])
        }
        Kind::Double | Kind::ScaledFloat => {
            let f = num_of(v).ok_or_else(|| fail(format!("For input string: \"{}\"", value_text(v))))?;
            Ok(vec![Key::F(f)])
        }
        Kind::Boolean => match v {
            Value::Bool(b) => Ok(vec![Key::B(*b)]),
            Value::String(s) if s == "true" => Ok(vec![Key::B(true)]),
            Value::String(s) if s == "false" || s.is_empty() => Ok(vec![Key::B(false)]),
            other => Err(fail(format!(
                "Can't parse boolean value [{}], expected [true] or [false]",
                value_text(other)
            ))),
        },
        Kind::Date => date_key(v, field, ctx).map(|k| vec![k]),
        Kind::DateNanos => date_key(v, field, ctx).map(|k| match k {
            Key::I(ms) => vec![Key::I(crate::date_nanos::from_millis(
                ms,
                Some(&value_text(v)),
            ))],
            other => vec![other],
        }),
        Kind::Object | Kind::Nested | Kind::Opaque | Kind::GeoPoint => Err(shard_error(
            ctx.index,
            ctx.uuid,
            format!("Can only use term queries on keyword, text and numeric fields - not on [{field}] which is of type [{}]", kind_type(kind)),
            None,
        )),
    }
}

fn kind_type(k: Kind) -> &'static str {
    match k {
        Kind::Object => "object",
        Kind::Nested => "nested",
        Kind::GeoPoint => "geo_point",
        _ => "opaque",
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn date_key(v: &Value, field: &str, ctx: &Ctx<'_>) -> EsResult<Key> {
    date_bound(v, field, ctx, None, false)
}

/// A date value parsed with `format` (else the field's format), rounding the time of day
/// up when `round_up` (see [`crate::datefmt::DateFormat::parse_round_up`]).
fn date_bound(
    v: &Value,
    field: &str,
    ctx: &Ctx<'_>,
    format: Option<&crate::datefmt::DateFormat>,
    round_up: bool,
) -> EsResult<Key> {
    let df = match (format, crate::mapping::resolve_field(ctx.mapping, field)) {
        (Some(f), _) => Some(f.clone()),
        (None, crate::mapping::FieldRef::Field { field: f, .. }) => {
            crate::datefmt::field_format(&f.params)
        }
        _ => None,
    };
    let parse = |df: &crate::datefmt::DateFormat, t: &str| {
        if round_up {
            df.parse_round_up(t)
        } else {
            df.parse(t)
        }
    };
    if let Some(df) = &df {
        // The field's own format first; then date math (`now-1d`, `2024-01-01||/d`).
        let text = match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        if let Some(ms) = text.as_deref().and_then(|t| parse(df, t)) {
            return Ok(Key::I(ms));
        }
        if let Some((anchor, math)) = text.as_deref().and_then(|t| t.split_once("||")) {
            if let Some(ms) = df.parse(anchor) {
                let expr = format!("{}||{math}", crate::names::format_date(ms));
                let r = if round_up {
                    crate::names::eval_date_math_round_up(&expr, now_millis())
                } else {
                    eval_date_math(&expr, now_millis())
                };
                if let Some(r) = r {
                    return Ok(Key::I(r));
                }
            }
        }
    }
    let fmt_text = df
        .as_ref()
        .map_or(crate::datefmt::DEFAULT, |d| d.text())
        .to_string();
    let fail = || {
        let cause = format!(
            "failed to parse date field [{}] with format [{fmt_text}]",
            value_text(v)
        );
        shard_error(
            ctx.index,
            ctx.uuid,
            format!("failed to create query: {cause}"),
            Some(cause),
        )
        .with_meta("field", field)
    };
    match v {
        // The query's own format is strict: besides it only `now` date math is read.
        _ if format.is_some() && !matches!(v, Value::String(s) if s.starts_with("now")) => {
            Err(fail())
        }
        Value::Number(n) => n.as_i64().map(Key::I).ok_or_else(fail),
        Value::String(s) if round_up => crate::names::eval_date_math_round_up(s, now_millis())
            .map(Key::I)
            .ok_or_else(fail),
        Value::String(s) => eval_date_math(s, now_millis()).map(Key::I).ok_or_else(fail),
        _ => Err(fail()),
    }
}

// ---------------------------------------------------------------------------------------
// Compilation and evaluation.

/// Compilation context: the index being searched.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// Index name.
    pub index: &'a str,
    /// Index uuid.
    pub uuid: &'a str,
    /// Mapping.
    pub mapping: &'a Mapping,
    /// The index's query limits.
    pub limits: Limits,
}

/// Index settings that bound or relax queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `index.max_regex_length` (default 1000).
    pub max_regex_length: usize,
    /// `index.query_string.lenient` (default `false`).
    pub query_string_lenient: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_regex_length: 1000,
            query_string_lenient: false,
        }
    }
}

/// Where a compiled clause reads its values.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Id,
    Index,
    Routing,
    Field {
        path: String,
        kind: Kind,
        params: Map<String, Value>,
    },
}

/// A query compiled against one index's mapping.
#[derive(Debug, Clone)]
pub(crate) enum Compiled {
    /// Everything.
    All(f32),
    /// Nothing.
    None,
    /// Exact values.
    Exact {
        src: Source,
        keys: Vec<Key>,
        ci: bool,
        boost: f32,
        /// BM25 statistics (a single term on a text or keyword field).
        stats: Option<std::sync::Arc<bm25::Bm25>>,
    },
    /// Analyzed text tokens (match on text).
    Tokens {
        src: Source,
        tokens: Vec<String>,
        required: usize,
        phrase: bool,
        boost: f32,
        /// BM25 statistics of the tokens (set before documents are scored).
        stats: Option<std::sync::Arc<bm25::Bm25>>,
    },
    /// Range.
    Range {
        src: Source,
        lo: Option<(Key, bool)>,
        hi: Option<(Key, bool)>,
        boost: f32,
    },
    /// Exists.
    Exists { src: Source, boost: f32 },
    /// A term within a few edits (`fuzziness`).
    Fuzzy {
        src: Source,
        term: crate::fuzzy::FuzzyTerm,
        boost: f32,
    },
    /// Points of a `geo_point` field in an area.
    Geo {
        path: String,
        area: geo_query::Area,
        boost: f32,
    },
    /// A Lucene regular expression on string values.
    Regexp {
        src: Source,
        re: std::sync::Arc<Regex>,
        boost: f32,
    },
    /// Prefix / wildcard on string values.
    Pattern {
        src: Source,
        /// Lowercased once at compile time when `ci`.
        pattern: String,
        prefix: bool,
        ci: bool,
        boost: f32,
    },
    /// Boolean combination.
    Bool {
        must: Vec<Compiled>,
        filter: Vec<Compiled>,
        should: Vec<Compiled>,
        must_not: Vec<Compiled>,
        required: usize,
        boost: f32,
    },
    /// Disjunction of clauses (multi-field matching), best score wins.
    Dis(Vec<Compiled>),
    /// Constant score.
    Const(Box<Compiled>, f32),
    /// A named query (`_name`).
    Named(String, Box<Compiled>),
}

fn source_of(ctx: &Ctx<'_>, field: &str) -> Option<Source> {
    match resolve_field(ctx.mapping, field) {
        FieldRef::Id => Some(Source::Id),
        FieldRef::Index => Some(Source::Index),
        FieldRef::Routing => Some(Source::Routing),
        FieldRef::Field { path, field } => Some(Source::Field {
            path,
            kind: field.kind,
            params: field.params.clone(),
        }),
        FieldRef::Unmapped => None,
    }
}

fn src_kind(s: &Source) -> Kind {
    match s {
        Source::Field { kind, .. } => *kind,
        _ => Kind::Keyword,
    }
}

/// Compiles a query for an index.
pub(crate) fn compile(q: &Query, ctx: &Ctx<'_>) -> EsResult<Compiled> {
    Ok(match q {
        Query::MatchAll(b) => Compiled::All(*b),
        Query::MatchNone => Compiled::None,
        Query::Ids(ids, boost) => Compiled::Exact {
            src: Source::Id,
            keys: ids.iter().map(|s| Key::S(s.clone())).collect(),
            ci: false,
            boost: *boost,
            stats: None,
        },
        Query::Terms {
            field,
            values,
            case_insensitive,
            boost,
        } => {
            let Some(src) = source_of(ctx, field) else {
                return Ok(Compiled::None);
            };
            let kind = src_kind(&src);
            let mut keys = Vec::new();
            for v in values {
                keys.extend(query_keys(kind, v, field, ctx)?);
            }
            if kind == Kind::Text {
                // A term against analyzed text compares with the indexed tokens as is.
                Compiled::Exact {
                    src,
                    keys,
                    ci: *case_insensitive,
                    boost: *boost,
                    stats: None,
                }
            } else {
                Compiled::Exact {
                    src,
                    keys,
                    ci: *case_insensitive,
                    boost: *boost,
                    stats: None,
                }
            }
        }
        Query::Match {
            field,
            query,
            and,
            msm,
            phrase,
            boost,
        } => compile_match(ctx, field, query, *and, msm.as_ref(), *phrase, *boost)?,
        Query::BoolPrefix {
            field,
            query,
            opts,
            and,
            msm,
            boost,
        } => full_text::compile_bool_prefix(ctx, field, query, opts, *and, msm.as_ref(), *boost)?,
        Query::MultiMatch {
            fields,
            query,
            kind,
            opts,
            and,
            msm,
            boost,
        } => full_text::compile_multi_match(
            ctx,
            fields,
            query,
            *kind,
            opts,
            *and,
            msm.as_ref(),
            *boost,
        )?,
        Query::Range {
            field,
            lo,
            hi,
            format,
            boost,
        } => {
            let Some(src) = source_of(ctx, field) else {
                return Ok(Compiled::None);
            };
            let format = match format {
                Some(f) => Some(crate::datefmt::DateFormat::new(f).map_err(|e| {
                    shard_error(
                        ctx.index,
                        ctx.uuid,
                        format!("failed to create query: {e}"),
                        Some(e),
                    )
                })?),
                None => None,
            };
            let kind = src_kind(&src);
            let conv = |v: &Value, inclusive: bool, lower: bool| -> EsResult<Option<(Key, bool)>> {
                Ok(match kind {
                    Kind::Long | Kind::Integer | Kind::Short | Kind::Byte | Kind::UnsignedLong => {
                        let f = num_of(v).ok_or_else(|| {
                            let cause = format!("For input string: \"{}\"", value_text(v));
                            shard_error(
                                ctx.index,
                                ctx.uuid,
                                format!("failed to create query: {cause}"),
                                Some(cause),
                            )
                        })?;
                        let i = match (lower, inclusive) {
                            (true, true) => f.ceil(),
                            (true, false) => f.floor() + 1.0,
                            (false, true) => f.floor(),
                            (false, false) => f.ceil() - 1.0,
                        };
                        Some((Key::I(i as i64), true))
                    }
                    // An inclusive upper or exclusive lower bound rounds up.
                    Kind::Date => Some((
                        date_bound(v, field, ctx, format.as_ref(), lower != inclusive)?,
                        inclusive,
                    )),
                    Kind::DateNanos => {
                        let round_up = lower != inclusive;
                        let exact = date_bound(v, field, ctx, format.as_ref(), false)?;
                        let bound = date_bound(v, field, ctx, format.as_ref(), round_up)?;
                        match (exact, bound) {
                            // Rounded up to the end of a unit: its last nanosecond.
                            (Key::I(e), Key::I(b)) if b != e => Some((
                                Key::I(
                                    crate::date_nanos::from_millis(b, None).saturating_add(999_999),
                                ),
                                inclusive,
                            )),
                            (_, Key::I(b)) => Some((
                                Key::I(crate::date_nanos::from_millis(b, Some(&value_text(v)))),
                                inclusive,
                            )),
                            (_, other) => Some((other, inclusive)),
                        }
                    }
                    Kind::Text | Kind::Keyword => Some((Key::S(value_text(v)), inclusive)),
                    _ => query_keys(kind, v, field, ctx)?
                        .into_iter()
                        .next()
                        .map(|k| (k, inclusive)),
                })
            };
            let lo = match lo {
                Some((v, inc)) => conv(v, *inc, true)?,
                None => None,
            };
            let hi = match hi {
                Some((v, inc)) => conv(v, *inc, false)?,
                None => None,
            };
            Compiled::Range {
                src,
                lo,
                hi,
                boost: *boost,
            }
        }
        Query::Bool {
            must,
            filter,
            should,
            must_not,
            msm,
            boost,
        } => {
            let c = |qs: &Vec<Query>| -> EsResult<Vec<Compiled>> {
                qs.iter().map(|q| compile(q, ctx)).collect()
            };
            let should_c = c(should)?;
            let required = match msm {
                Some(m) => m.required(should_c.len()),
                None => {
                    if must.is_empty() && filter.is_empty() && !should_c.is_empty() {
                        1
                    } else {
                        0
                    }
                }
            };
            Compiled::Bool {
                must: c(must)?,
                filter: c(filter)?,
                should: should_c,
                must_not: c(must_not)?,
                required,
                boost: *boost,
            }
        }
        Query::Exists(field, boost) => {
            if field.contains('*') {
                let names = expand_fields(ctx.mapping, std::slice::from_ref(field));
                let clauses: Vec<Compiled> = names
                    .iter()
                    .filter_map(|f| source_of(ctx, f))
                    .map(|src| Compiled::Exists { src, boost: *boost })
                    .collect();
                return Ok(Compiled::Dis(clauses));
            }
            match field.as_str() {
                // Every document has a sequence number, primary term and version.
                "_seq_no" | "_primary_term" | "_version" => return Ok(Compiled::All(*boost)),
                "_source" => {
                    return Err(shard_error(
                        ctx.index,
                        ctx.uuid,
                        "The _source field is not searchable".to_string(),
                        None,
                    ))
                }
                _ => {}
            }
            match source_of(ctx, field) {
                Some(src) => Compiled::Exists { src, boost: *boost },
                None => Compiled::None,
            }
        }
        Query::Prefix {
            field,
            value,
            case_insensitive,
            boost,
        }
        | Query::Wildcard {
            field,
            value,
            case_insensitive,
            boost,
        } => match source_of(ctx, field) {
            Some(src) => Compiled::Pattern {
                src,
                pattern: if *case_insensitive {
                    value.to_lowercase()
                } else {
                    value.clone()
                },
                prefix: matches!(q, Query::Prefix { .. }),
                ci: *case_insensitive,
                boost: *boost,
            },
            None => Compiled::None,
        },
        Query::Regexp {
            field,
            value,
            flags,
            case_insensitive,
            boost,
        } => compile_regexp(ctx, field, value, *flags, *case_insensitive, *boost)?,
        Query::QueryString(qs) => query_string::compile_qs(qs, ctx)?,
        Query::Geo {
            field,
            area,
            ignore_unmapped,
            boost,
        } => geo_query::compile_geo(ctx, field, *area, *ignore_unmapped, *boost)?,
        Query::ConstantScore(inner, boost) => {
            Compiled::Const(Box::new(compile(inner, ctx)?), *boost)
        }
        Query::Named(name, inner) => Compiled::Named(name.clone(), Box::new(compile(inner, ctx)?)),
    })
}

fn compile_regexp(
    ctx: &Ctx<'_>,
    field: &str,
    value: &str,
    flags: RegexpFlags,
    ci: bool,
    boost: f32,
) -> EsResult<Compiled> {
    let fail = |msg: String| {
        shard_error(
            ctx.index,
            ctx.uuid,
            format!("failed to create query: {msg}"),
            Some(msg),
        )
    };
    check_regex_length(ctx, value)?;
    let Some(src) = source_of(ctx, field) else {
        return Ok(Compiled::None);
    };
    let kind = src_kind(&src);
    if !matches!(kind, Kind::Text | Kind::Keyword) {
        return Err(shard_error(
            ctx.index,
            ctx.uuid,
            format!(
                "Can only use regexp queries on keyword and text fields - not on [{field}] which is of type [{}]",
                field_type_name(ctx, field)
            ),
            None,
        ));
    }
    let re = Regex::new(value, flags, ci).map_err(fail)?;
    Ok(Compiled::Regexp {
        src,
        re: std::sync::Arc::new(re),
        boost,
    })
}

/// `index.max_regex_length` (Java counts UTF-16 units).
fn check_regex_length(ctx: &Ctx<'_>, value: &str) -> EsResult<()> {
    let len = value.encode_utf16().count();
    if len <= ctx.limits.max_regex_length {
        return Ok(());
    }
    let msg = format!(
        "The length of regex [{len}] used in the Regexp Query request has exceeded the allowed maximum of [{}]. This maximum can be set by changing the [index.max_regex_length] index level setting.",
        ctx.limits.max_regex_length
    );
    Err(shard_error(
        ctx.index,
        ctx.uuid,
        format!("failed to create query: {msg}"),
        Some(msg),
    ))
}

fn field_type_name(ctx: &Ctx<'_>, field: &str) -> String {
    match resolve_field(ctx.mapping, field) {
        FieldRef::Field { field: f, .. } => f.type_str().to_string(),
        _ => "keyword".to_string(),
    }
}

fn expand_fields(m: &Mapping, patterns: &[String]) -> Vec<String> {
    let leaves = crate::mapping::leaf_fields(m);
    let mut out = Vec::new();
    for p in patterns {
        let p = p.split('^').next().unwrap_or(p);
        if p.contains('*') {
            for l in &leaves {
                if glob_match(p, l) && !out.contains(l) {
                    out.push(l.clone());
                }
            }
        } else if !out.iter().any(|o| o == p) {
            out.push(p.to_string());
        }
    }
    out
}

fn compile_match(
    ctx: &Ctx<'_>,
    field: &str,
    query: &Value,
    and: bool,
    msm: Option<&Msm>,
    phrase: bool,
    boost: f32,
) -> EsResult<Compiled> {
    let Some(src) = source_of(ctx, field) else {
        return Ok(Compiled::None);
    };
    let kind = src_kind(&src);
    if kind == Kind::Text {
        let tokens = tokenize(&value_text(query));
        if tokens.is_empty() {
            return Ok(Compiled::None);
        }
        let required = if phrase || and {
            tokens.len()
        } else {
            msm.map_or(1, |m| m.required(tokens.len())).max(1)
        };
        return Ok(Compiled::Tokens {
            src,
            tokens,
            required,
            phrase,
            boost,
            stats: None,
        });
    }
    let keys = query_keys(kind, query, field, ctx)?;
    Ok(Compiled::Exact {
        src,
        keys,
        ci: false,
        boost,
        stats: None,
    })
}

/// A document being evaluated; its source is parsed on first use.
pub struct DocView<'a> {
    /// `_id`.
    pub id: &'a str,
    /// `_index`.
    pub index: &'a str,
    /// `_routing`.
    pub routing: Option<&'a str>,
    /// Raw `_source`.
    pub source: &'a str,
    parsed: OnceCell<Value>,
}

impl<'a> DocView<'a> {
    /// A view of a stored document.
    pub fn new(id: &'a str, index: &'a str, routing: Option<&'a str>, source: &'a str) -> Self {
        DocView {
            id,
            index,
            routing,
            source,
            parsed: OnceCell::new(),
        }
    }

    /// The parsed source.
    pub fn parsed(&self) -> &Value {
        self.parsed
            .get_or_init(|| serde_json::from_str(self.source).unwrap_or(Value::Null))
    }

    /// Source values at a dotted path.
    pub fn values(&self, path: &str) -> Vec<&Value> {
        let mut out = Vec::new();
        values_at(self.parsed(), path, &mut out);
        out
    }

    fn keys(&self, src: &Source) -> Vec<Key> {
        match src {
            Source::Id => vec![Key::S(self.id.to_string())],
            Source::Index => vec![Key::S(self.index.to_string())],
            Source::Routing => self
                .routing
                .map(|r| vec![Key::S(r.to_string())])
                .unwrap_or_default(),
            Source::Field { path, kind, params } => {
                let mut out = Vec::new();
                for v in self.values(path) {
                    out.extend(doc_keys(*kind, params, v));
                }
                out
            }
        }
    }

    /// Sort / docvalue keys of a field.
    pub fn field_keys(&self, mapping: &Mapping, field: &str) -> Option<Vec<Key>> {
        let ctx = Ctx {
            index: self.index,
            uuid: "",
            mapping,
            limits: Limits::default(),
        };
        source_of(&ctx, field).map(|s| self.keys(&s))
    }
}

fn key_eq(a: &Key, b: &Key, ci: bool) -> bool {
    match (a, b) {
        (Key::S(x), Key::S(y)) if ci => x.to_lowercase() == y.to_lowercase(),
        _ => a.cmp(b) == Some(std::cmp::Ordering::Equal),
    }
}

fn wildcard_match(pattern: &str, text: &str) -> bool {
    // `*` any run, `?` one character.
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    crate::names::star_match(&p, &t, '*', Some('?'))
}

fn tf_score(tf: usize) -> f32 {
    // BM25's term-frequency saturation with average field length.
    let tf = tf as f32;
    tf * 2.2 / (tf + 1.2)
}

/// Evaluates a compiled query; `Some(score)` when the document matches.
pub(crate) fn eval(c: &Compiled, d: &DocView<'_>) -> Option<f32> {
    match c {
        Compiled::All(b) => Some(*b),
        Compiled::None => None,
        Compiled::Exact {
            src,
            keys,
            ci,
            boost,
            stats,
        } => {
            let doc = d.keys(src);
            let hits = doc
                .iter()
                .filter(|k| keys.iter().any(|q| key_eq(k, q, *ci)))
                .count();
            if hits == 0 {
                None
            } else if matches!(src, Source::Id | Source::Index) {
                Some(*boost)
            } else if let Some(s) = stats {
                let idf = s.idf.first().copied().unwrap_or(0.0);
                // Keywords count a value once; text counts occurrences.
                let freq = if s.norms { hits as f32 } else { 1.0 };
                Some(boost * s.term_score(idf, freq, doc.len()))
            } else {
                Some(boost * tf_score(hits))
            }
        }
        Compiled::Tokens {
            src,
            tokens,
            required,
            phrase,
            boost,
            stats,
        } => {
            let doc = d.keys(src);
            let dl = doc.len();
            if *phrase {
                let doc_tokens: Vec<&str> = doc
                    .iter()
                    .filter_map(|k| {
                        if let Key::S(s) = k {
                            Some(s.as_str())
                        } else {
                            None
                        }
                    })
                    .collect();
                let n = tokens.len();
                let found = doc_tokens
                    .windows(n.max(1))
                    .filter(|w| w.iter().zip(tokens.iter()).all(|(a, b)| *a == b.as_str()))
                    .count();
                return if found == 0 {
                    None
                } else if let Some(s) = stats {
                    // A phrase scores with the sum of its terms' idf.
                    let idf: f32 = s.idf.iter().sum();
                    Some(boost * s.term_score(idf, found as f32, dl))
                } else {
                    Some(boost * tf_score(found) * n as f32)
                };
            }
            let mut matched = 0;
            let mut score = 0.0;
            for (i, t) in tokens.iter().enumerate() {
                let tf = doc
                    .iter()
                    .filter(|k| matches!(k, Key::S(s) if s == t))
                    .count();
                if tf > 0 {
                    matched += 1;
                    score += match stats {
                        Some(s) => {
                            let idf = s.idf.get(i).copied().unwrap_or(0.0);
                            s.term_score(idf, tf as f32, dl)
                        }
                        None => tf_score(tf),
                    };
                }
            }
            if matched >= *required && matched > 0 {
                Some(boost * score)
            } else {
                None
            }
        }
        Compiled::Range { src, lo, hi, boost } => {
            let doc = d.keys(src);
            let ok = doc.iter().any(|k| {
                let lo_ok = match lo {
                    None => true,
                    Some((b, inc)) => match k.cmp(b) {
                        Some(std::cmp::Ordering::Greater) => true,
                        Some(std::cmp::Ordering::Equal) => *inc,
                        _ => false,
                    },
                };
                let hi_ok = match hi {
                    None => true,
                    Some((b, inc)) => match k.cmp(b) {
                        Some(std::cmp::Ordering::Less) => true,
                        Some(std::cmp::Ordering::Equal) => *inc,
                        _ => false,
                    },
                };
                lo_ok && hi_ok
            });
            ok.then_some(*boost)
        }
        Compiled::Fuzzy { src, term, boost } => d
            .keys(src)
            .iter()
            .filter_map(|k| match k {
                Key::S(s) => term.similarity(s),
                _ => None,
            })
            .fold(None, |best: Option<f32>, s| {
                Some(best.map_or(s, |b| b.max(s)))
            })
            .map(|s| boost * s),
        Compiled::Exists { src, boost } => {
            let present = match src {
                Source::Id | Source::Index => true,
                Source::Routing => d.routing.is_some(),
                Source::Field { path, kind, params } => {
                    let vals = d.values(path);
                    if matches!(kind, Kind::Object | Kind::Nested) {
                        vals.iter().any(|v| match v {
                            Value::Object(m) => !m.is_empty(),
                            Value::Null => false,
                            _ => true,
                        })
                    } else if matches!(kind, Kind::Opaque | Kind::GeoPoint) {
                        vals.iter().any(|v| !v.is_null())
                    } else if *kind == Kind::Text {
                        // Text exists even when it analyzes to no token (`""`), as in
                        // Elasticsearch since 8.5.1.
                        vals.iter().any(|v| {
                            matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
                        })
                    } else {
                        vals.iter().any(|v| !doc_keys(*kind, params, v).is_empty())
                    }
                }
            };
            present.then_some(*boost)
        }
        Compiled::Geo { path, area, boost } => crate::geo::points_at(d.parsed(), path)
            .into_iter()
            .any(|p| area.contains(p))
            .then_some(*boost),
        Compiled::Regexp { src, re, boost } => {
            let doc = d.keys(src);
            let ok = doc.iter().any(|k| matches!(k, Key::S(s) if re.is_match(s)));
            ok.then_some(*boost)
        }
        Compiled::Pattern {
            src,
            pattern,
            prefix,
            ci,
            boost,
        } => {
            let doc = d.keys(src);
            let ok = doc.iter().any(|k| {
                let Key::S(s) = k else { return false };
                let s: std::borrow::Cow<'_, str> = if *ci {
                    s.to_lowercase().into()
                } else {
                    s.as_str().into()
                };
                if *prefix {
                    s.starts_with(pattern.as_str())
                } else {
                    wildcard_match(pattern, &s)
                }
            });
            ok.then_some(*boost)
        }
        Compiled::Bool {
            must,
            filter,
            should,
            must_not,
            required,
            boost,
        } => {
            let mut score = 0.0;
            for m in must {
                score += eval(m, d)?;
            }
            for f in filter {
                eval(f, d)?;
            }
            for n in must_not {
                if eval(n, d).is_some() {
                    return None;
                }
            }
            let mut matched = 0;
            for s in should {
                if let Some(sc) = eval(s, d) {
                    matched += 1;
                    score += sc;
                }
            }
            if matched < *required {
                return None;
            }
            if must.is_empty() && should.is_empty() && filter.is_empty() {
                // A bool with only must_not clauses (or none) matches like match_all.
                score = 1.0;
            }
            Some(score * boost)
        }
        Compiled::Dis(clauses) => clauses
            .iter()
            .filter_map(|c| eval(c, d))
            .fold(None, |acc: Option<f32>, s| {
                Some(acc.map_or(s, |a| a.max(s)))
            }),
        Compiled::Const(inner, boost) => eval(inner, d).map(|_| *boost),
        Compiled::Named(_, inner) => eval(inner, d),
    }
}

/// The named queries (`_name`) anywhere in `c` that match the document on their own, with
/// their scores, as Elasticsearch reports them in a hit's `matched_queries`.
pub(crate) fn matched_queries(c: &Compiled, d: &DocView<'_>, out: &mut Vec<(String, f32)>) {
    match c {
        Compiled::Named(name, inner) => {
            if let Some(score) = eval(inner, d) {
                out.push((name.clone(), score));
            }
            matched_queries(inner, d, out);
        }
        Compiled::Bool {
            must,
            filter,
            should,
            must_not,
            ..
        } => {
            for q in must.iter().chain(filter).chain(should).chain(must_not) {
                matched_queries(q, d, out);
            }
        }
        Compiled::Dis(qs) => qs.iter().for_each(|q| matched_queries(q, d, out)),
        Compiled::Const(inner, _) => matched_queries(inner, d, out),
        _ => {}
    }
}

/// Whether a compiled query needs scores (false for pure filters).
pub fn source_kind_is_text(m: &Mapping, field: &str) -> bool {
    matches!(resolve_field(m, field), FieldRef::Field { field, .. } if field.kind == Kind::Text)
}

/// Collects `_id`s a query can only match (fast path for `ids`/`term` on `_id`).
pub fn only_ids(q: &Query) -> Option<HashSet<String>> {
    match q {
        Query::Ids(ids, _) => Some(ids.iter().cloned().collect()),
        Query::Terms {
            field,
            values,
            case_insensitive: false,
            ..
        } if field == "_id" => Some(values.iter().map(value_text).collect()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(q: Value, mapping: Value, doc: Value) -> Option<f32> {
        let m = crate::mapping::parse_mapping(&mapping).unwrap_or_default();
        let q = parse_query(&q).ok()?;
        let ctx = Ctx {
            index: "i",
            uuid: "u",
            mapping: &m,
            limits: Limits::default(),
        };
        let c = compile(&q, &ctx).ok()?;
        let src = doc.to_string();
        eval(&c, &DocView::new("1", "i", None, &src))
    }

    #[test]
    fn basics() {
        let m = json!({"properties": {"t": {"type": "text"}, "k": {"type": "keyword"}, "n": {"type": "long"}}});
        let d = json!({"t": "Hello World", "k": "Hello", "n": 5});
        assert!(run(json!({"match": {"t": "hello"}}), m.clone(), d.clone()).is_some());
        assert!(run(json!({"term": {"t": "Hello"}}), m.clone(), d.clone()).is_none());
        assert!(run(json!({"term": {"k": "Hello"}}), m.clone(), d.clone()).is_some());
        assert!(run(
            json!({"range": {"n": {"gt": 4.5, "lte": 5}}}),
            m.clone(),
            d.clone()
        )
        .is_some());
        assert!(run(json!({"range": {"n": {"gt": 5}}}), m.clone(), d.clone()).is_none());
        assert!(run(
            json!({"bool": {"must_not": [{"term": {"k": "Hello"}}]}}),
            m.clone(),
            d.clone()
        )
        .is_none());
        assert!(run(
            json!({"bool": {"should": [{"term": {"k": "x"}}, {"term": {"n": 5}}]}}),
            m.clone(),
            d.clone()
        )
        .is_some());
        assert!(run(json!({"bool": {"should": [{"term": {"k": "x"}}, {"term": {"n": 5}}], "minimum_should_match": 2}}), m.clone(), d.clone()).is_none());
        assert!(run(json!({"exists": {"field": "n"}}), m.clone(), d.clone()).is_some());
        assert!(run(json!({"exists": {"field": "zz"}}), m.clone(), d.clone()).is_none());
        assert!(run(
            json!({"match": {"t": {"query": "hello there", "operator": "and"}}}),
            m.clone(),
            d.clone()
        )
        .is_none());
        assert!(run(json!({"ids": {"values": ["1"]}}), m.clone(), d.clone()).is_some());
        assert!(run(json!({"prefix": {"k": "He"}}), m.clone(), d).is_some());
    }

    #[test]
    fn parse_errors() {
        assert!(parse_query(&json!({"nope": {}})).is_err());
        assert!(parse_query(&json!({"term": {"a": 1, "b": 2}})).is_err());
        assert!(parse_query(&json!({"bool": {"foo": []}})).is_err());
        assert!(parse_query(&json!({})).is_err());
    }

    #[test]
    fn tokens() {
        assert_eq!(tokenize("Hello: 中文"), vec!["hello", "中", "文"]);
        assert_eq!(
            tokenize("The quick-brown fox's"),
            vec!["the", "quick", "brown", "fox's"]
        );
    }

    #[test]
    fn msm() {
        assert_eq!(Msm::Count(-1).required(3), 2);
        assert_eq!(Msm::Percent(50.0).required(3), 1);
        assert_eq!(Msm::Percent(-25.0).required(4), 3);
    }
}
