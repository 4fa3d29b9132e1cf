//! `_search` and `_count`.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::cluster::{Access, ResolveOpts, Resolved};
use crate::error::{EsError, EsResult};
use crate::index::StoredDoc;
use crate::json::{token_name, Obj, Out};
use crate::mapping::{resolve_field, FieldRef, Kind};
use crate::node::{Node, Req, Resp};
use crate::query::{
    compile, eval, parse_query, query_string, with_stats, Compiled, Ctx, DocView, Key, QsOpts,
    Query,
};
use crate::source_filter::SourceFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrackTotal {
    Exact,
    UpTo(u64),
    Off,
}

#[derive(Debug, Clone)]
struct SortSpec {
    field: String,
    desc: bool,
    missing_first: Option<bool>,
    missing_value: Option<Value>,
    unmapped_type: Option<String>,
    mode_max: Option<bool>,
    /// `format` of a date field's sort values (a missing value then prints as null).
    format: Option<String>,
}

#[derive(Debug, Clone)]
struct DvField {
    field: String,
    format: Option<String>,
}

#[derive(Debug, Clone)]
struct SearchReq {
    query: Option<Query>,
    post_filter: Option<Query>,
    from: i64,
    size: i64,
    sort: Vec<SortSpec>,
    source: SourceFilter,
    track_total: TrackTotal,
    total_as_int: bool,
    docvalue_fields: Vec<DvField>,
    fields: Vec<DvField>,
    version: bool,
    seq_no_primary_term: bool,
    track_scores: bool,
    min_score: Option<f32>,
    search_after: Option<Vec<Value>>,
    terminate_after: Option<u64>,
    /// `pit`: the point-in-time id and the keep-alive to extend it by.
    pit: Option<(String, Option<std::time::Duration>)>,
    /// `indices_boost`, in request order.
    indices_boost: Vec<(String, f32)>,
    /// `size=-1` in the URL: the default size, with Elasticsearch's deprecation warning.
    size_unset_warning: bool,
    /// `rescore`, in order.
    rescore: Vec<super::rescore::Rescorer>,
}

fn unknown_key(k: &str, v: &Value) -> EsError {
    EsError::parsing(format!("Unknown key for a {} in [{k}].", token_name(v)))
}

fn int_of(v: &Value, k: &str) -> EsResult<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| EsError::parsing(format!("[{k}] failed to parse field [{k}]"))),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| EsError::parsing(format!("[{k}] failed to parse field [{k}]"))),
        other => Err(EsError::parsing(format!(
            "[{k}] failed to parse field [{k}]: unexpected token [{}]",
            token_name(other)
        ))),
    }
}

fn bool_v(v: &Value) -> bool {
    matches!(v, Value::Bool(true)) || matches!(v, Value::String(s) if s == "true")
}

fn parse_sort_entry(v: &Value, out: &mut Vec<SortSpec>) -> EsResult<()> {
    let default_desc = |f: &str| f == "_score";
    match v {
        Value::String(s) => {
            let (f, order) = match s.rsplit_once(':') {
                Some((f, o)) if o == "asc" || o == "desc" => (f, Some(o)),
                _ => (s.as_str(), None),
            };
            out.push(SortSpec {
                field: f.to_string(),
                desc: order.map_or(default_desc(f), |o| o == "desc"),
                missing_first: None,
                missing_value: None,
                unmapped_type: None,
                mode_max: None,
                format: None,
            });
        }
        Value::Object(m) => {
            for (f, spec) in m {
                let mut s = SortSpec {
                    field: f.clone(),
                    desc: default_desc(f),
                    missing_first: None,
                    missing_value: None,
                    unmapped_type: None,
                    mode_max: None,
                    format: None,
                };
                match spec {
                    Value::String(o) => match o.as_str() {
                        "asc" => s.desc = false,
                        "desc" => s.desc = true,
                        other => {
                            return Err(EsError::illegal_argument(format!(
                                "Unknown SortOrder [{other}]"
                            )))
                        }
                    },
                    Value::Object(sm) => {
                        for (k, val) in sm {
                            match k.as_str() {
                                "order" => match val.as_str() {
                                    Some("asc") => s.desc = false,
                                    Some("desc") => s.desc = true,
                                    _ => {
                                        return Err(EsError::illegal_argument(format!(
                                            "Unknown SortOrder [{}]",
                                            val
                                        )))
                                    }
                                },
                                "missing" => match val.as_str() {
                                    Some("_first") => s.missing_first = Some(true),
                                    Some("_last") => s.missing_first = Some(false),
                                    _ => s.missing_value = Some(val.clone()),
                                },
                                "unmapped_type" => {
                                    s.unmapped_type = val.as_str().map(str::to_string)
                                }
                                "mode" => s.mode_max = Some(val.as_str() == Some("max")),
                                "format" => s.format = val.as_str().map(str::to_string),
                                "numeric_type" | "nested" => {}
                                other => {
                                    return Err(EsError::parsing(format!(
                                        "[field_sort] unknown field [{other}]"
                                    )))
                                }
                            }
                        }
                    }
                    other => {
                        return Err(EsError::parsing(format!(
                            "[sort] unexpected token [{}]",
                            token_name(other)
                        )))
                    }
                }
                out.push(s);
            }
        }
        Value::Array(a) => {
            for e in a {
                parse_sort_entry(e, out)?;
            }
        }
        other => {
            return Err(EsError::parsing(format!(
                "[sort] unexpected token [{}]",
                token_name(other)
            )))
        }
    }
    Ok(())
}

fn parse_dv(v: &Value) -> EsResult<Vec<DvField>> {
    let items = match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    items
        .iter()
        .map(|i| match i {
            Value::String(s) => Ok(DvField {
                field: s.clone(),
                format: None,
            }),
            Value::Object(m) => Ok(DvField {
                field: m
                    .get("field")
                    .and_then(Value::as_str)
                    .ok_or_else(|| EsError::parsing("[field] is required"))?
                    .to_string(),
                format: m.get("format").and_then(Value::as_str).map(str::to_string),
            }),
            other => Err(EsError::parsing(format!(
                "[docvalue_fields] unexpected token [{}]",
                token_name(other)
            ))),
        })
        .collect()
}

const UNSUPPORTED: &[&str] = &[
    "aggs",
    "aggregations",
    "highlight",
    "suggest",
    "collapse",
    "script_fields",
    "knn",
    "runtime_mappings",
    "slice",
    "retriever",
    "rank",
];

/// The body's `pit` object: `{"id": ..., "keep_alive": ...}`.
fn parse_pit(v: &Value) -> EsResult<(String, Option<std::time::Duration>)> {
    let m = v.as_object().ok_or_else(|| {
        EsError::parsing(format!(
            "[pit] expected an object but found [{}]",
            token_name(v)
        ))
    })?;
    let mut id = None;
    let mut keep_alive = None;
    for (k, x) in m {
        match (k.as_str(), x) {
            ("id", Value::String(i)) => id = Some(i.clone()),
            ("keep_alive", Value::String(t)) => {
                keep_alive = crate::settings::parse_time(t, "keep_alive")?;
            }
            _ => {
                return Err(EsError::parsing(format!(
                    "[point_in_time] unknown field [{k}]"
                )))
            }
        }
    }
    let id = id.ok_or_else(|| EsError::parsing("[point_in_time] requires [id]"))?;
    Ok((id, keep_alive))
}

/// `POST /{index}/_pit?keep_alive=...`.
pub(crate) fn open_pit(node: &Node, req: &Req) -> EsResult<Resp> {
    let keep_alive = req
        .params
        .time_opt("keep_alive")?
        .ok_or_else(|| EsError::validation(&["[keep_alive] is not specified".to_string()]))?;
    if req.has_body() {
        // `index_filter` would need query-time shard skipping; refuse instead of ignoring it.
        return Err(EsError::illegal_argument(
            "a request body (index_filter) on open point in time is not supported by es-devserver",
        ));
    }
    let resolved = node
        .cluster
        .meta
        .read()
        .resolve(req.part("index").unwrap_or(""), &search_opts(req)?)?;
    let shards: u64 = resolved.iter().map(|r| u64::from(r.index.shards())).sum();
    let id = node.pits.open(resolved, keep_alive);
    Ok(Resp::json(
        200,
        &json!({"id": id, "_shards": {"total": shards, "successful": shards, "skipped": 0, "failed": 0}}),
    ))
}

/// `DELETE /_pit` with `{"id": ...}`.
pub(crate) fn close_pit(node: &Node, req: &Req) -> EsResult<Resp> {
    let body = req
        .json_body()?
        .ok_or_else(|| EsError::validation(&["[id] is required".to_string()]))?;
    let id = match body.get("id") {
        Some(Value::String(i)) => i.clone(),
        _ => return Err(EsError::validation(&["[id] is required".to_string()])),
    };
    if let Some(Value::Object(m)) = Some(&body) {
        if let Some(k) = m.keys().find(|k| k.as_str() != "id") {
            return Err(EsError::parsing(format!(
                "[close_point_in_time] unknown field [{k}]"
            )));
        }
    }
    let freed = node.pits.close(&id);
    // Elasticsearch answers 404 when nothing was freed.
    Ok(Resp::json(
        if freed { 200 } else { 404 },
        &json!({"succeeded": true, "num_freed": u64::from(freed)}),
    ))
}

fn parse_search(req: &Req) -> EsResult<SearchReq> {
    let mut s = SearchReq {
        query: None,
        post_filter: None,
        from: 0,
        size: 10,
        sort: Vec::new(),
        source: SourceFilter::all(),
        track_total: TrackTotal::UpTo(10_000),
        total_as_int: false,
        docvalue_fields: Vec::new(),
        fields: Vec::new(),
        version: false,
        seq_no_primary_term: false,
        track_scores: false,
        min_score: None,
        search_after: None,
        terminate_after: None,
        pit: None,
        indices_boost: Vec::new(),
        size_unset_warning: false,
        rescore: Vec::new(),
    };
    let mut stored_fields: Option<Vec<String>> = None;
    if let Some(body) = req.json_body()? {
        let m = body.as_object().ok_or_else(|| {
            EsError::parsing(format!(
                "Unknown key for a {} in [null].",
                token_name(&body)
            ))
        })?;
        for (k, v) in m {
            match k.as_str() {
                "query" => s.query = Some(parse_query(v)?),
                "post_filter" => s.post_filter = Some(parse_query(v)?),
                "rescore" => s.rescore = super::rescore::parse(v)?,
                "from" => s.from = int_of(v, k)?,
                "size" => s.size = int_of(v, k)?,
                "sort" => parse_sort_entry(v, &mut s.sort)?,
                "_source" => s.source = SourceFilter::from_body(v)?,
                "track_total_hits" => {
                    s.track_total = match v {
                        Value::Bool(true) => TrackTotal::Exact,
                        Value::Bool(false) => TrackTotal::Off,
                        Value::Number(n) => match n.as_i64() {
                            Some(i) if i >= 0 => TrackTotal::UpTo(i as u64),
                            Some(-1) => TrackTotal::Off,
                            _ => return Err(EsError::illegal_argument("[track_total_hits] parameter must be positive or equals to -1, got -2")),
                        },
                        other => return Err(unknown_key(k, other)),
                    }
                }
                "stored_fields" => {
                    stored_fields = Some(match v {
                        Value::String(f) => vec![f.clone()],
                        Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
                        other => return Err(unknown_key(k, other)),
                    })
                }
                "docvalue_fields" => s.docvalue_fields = parse_dv(v)?,
                "fields" => s.fields = parse_dv(v)?,
                "version" => s.version = bool_v(v),
                "seq_no_primary_term" => s.seq_no_primary_term = bool_v(v),
                "track_scores" => s.track_scores = bool_v(v),
                "min_score" => s.min_score = v.as_f64().map(|f| f as f32),
                "search_after" => s.search_after = Some(v.as_array().cloned().unwrap_or_else(|| vec![v.clone()])),
                "terminate_after" => s.terminate_after = Some(int_of(v, k)?.max(0) as u64),
                "pit" => s.pit = Some(parse_pit(v)?),
                "indices_boost" => s.indices_boost = super::indices_boost::parse(v)?,
                "timeout" | "explain" | "profile" | "stats" | "ext" | "_name" => {}
                other if UNSUPPORTED.contains(&other) => {
                    return Err(EsError::illegal_argument(format!(
                        "[{other}] is not supported by es-devserver (see its README for the supported search features)"
                    )))
                }
                other => return Err(unknown_key(other, v)),
            }
        }
    }
    let p = &req.params;
    if let Some(q) = p.get("q") {
        let df = p.get("df").unwrap_or("*").to_string();
        let and = p
            .get("default_operator")
            .is_some_and(|o| o.eq_ignore_ascii_case("and"));
        let mut opts = QsOpts::new(vec![df]);
        opts.and = and;
        opts.lenient = p.bool_opt("lenient")?;
        s.query = Some(query_string(q, opts));
    }
    if let Some(f) = p.i32_opt("from")? {
        s.from = f;
    }
    match p.i32_opt("size")? {
        // Elasticsearch still reads `size=-1` (once "no size") as unset, with a warning.
        Some(-1) => s.size_unset_warning = true,
        Some(sz) => s.size = sz,
        None => {}
    }
    if let Some(sort) = p.get("sort") {
        s.sort.clear();
        for part in sort.split(',').filter(|x| !x.is_empty()) {
            parse_sort_entry(&Value::from(part), &mut s.sort)?;
        }
    }
    if let Some(f) = SourceFilter::from_params(p)? {
        s.source = f;
    }
    if let Some(t) = p.get("track_total_hits") {
        s.track_total = match t {
            "true" | "" => TrackTotal::Exact,
            "false" => TrackTotal::Off,
            n => match n.parse::<i64>() {
                Ok(i) if i >= 0 => TrackTotal::UpTo(i as u64),
                Ok(-1) => TrackTotal::Off,
                _ => {
                    return Err(EsError::illegal_argument(format!(
                        "Failed to parse int parameter [track_total_hits] with value [{n}]"
                    )))
                }
            },
        };
    }
    if let Some(sf) = p.list("stored_fields") {
        stored_fields = Some(sf);
    }
    if let Some(dv) = p.list("docvalue_fields") {
        s.docvalue_fields = dv
            .into_iter()
            .map(|field| DvField {
                field,
                format: None,
            })
            .collect();
    }
    if let Some(v) = p.bool_opt("version")? {
        s.version = v;
    }
    if let Some(v) = p.bool_opt("seq_no_primary_term")? {
        s.seq_no_primary_term = v;
    }
    if let Some(v) = p.bool_opt("track_scores")? {
        s.track_scores = v;
    }
    if let Some(t) = p.i32_opt("terminate_after")? {
        if t < 0 {
            return Err(EsError::illegal_argument("terminateAfter must be > 0"));
        }
        s.terminate_after = Some(t as u64);
    }
    if let Some(t) = p.get("search_type") {
        match t {
            "query_then_fetch" | "dfs_query_then_fetch" => {}
            "query_and_fetch" | "dfs_query_and_fetch" => {
                return Err(EsError::illegal_argument(format!(
                    "Unsupported search type [{t}]"
                )))
            }
            other => {
                return Err(EsError::illegal_argument(format!(
                    "No search type for [{other}]"
                )))
            }
        }
    }
    if p.has("scroll") {
        return Err(EsError::illegal_argument(
            "scroll is not supported by es-devserver (use from/size or search_after)",
        ));
    }
    s.total_as_int = p.bool_or("rest_total_hits_as_int", false)?;
    if s.total_as_int {
        match s.track_total {
            TrackTotal::UpTo(10_000) if !p.has("track_total_hits") => s.track_total = TrackTotal::Exact,
            TrackTotal::Exact => {}
            TrackTotal::UpTo(n) => {
                return Err(EsError::illegal_argument(format!(
                    "[rest_total_hits_as_int] cannot be used if the tracking of total hits is not accurate, got {n}"
                )))
            }
            TrackTotal::Off => {}
        }
    }
    if let Some(sf) = stored_fields {
        let body_source = req
            .json_body()
            .ok()
            .flatten()
            .is_some_and(|b| b.get("_source").is_some());
        if !sf.iter().any(|f| f == "_source") && p.get("_source").is_none() && !body_source {
            s.source = SourceFilter::none();
        }
    }
    if s.from < 0 {
        return Err(EsError::illegal_argument(format!(
            "[from] parameter cannot be negative, found [{}]",
            s.from
        )));
    }
    if s.size < 0 {
        return Err(EsError::illegal_argument(format!(
            "[size] parameter cannot be negative, found [{}]",
            s.size
        )));
    }
    Ok(s)
}

fn search_opts(req: &Req) -> EsResult<ResolveOpts> {
    ResolveOpts::strict_expand_open_forbid_closed().with_params(&req.params)
}

/// The query to run on one index: the request's query AND'ed with alias filters.
fn effective_query(q: Option<&Query>, access: &Access) -> EsResult<Query> {
    let base = q.cloned().unwrap_or(Query::MatchAll(1.0));
    match access {
        Access::Unfiltered => Ok(base),
        Access::Filtered(filters) => {
            let fs: Vec<Query> = filters.iter().map(parse_query).collect::<EsResult<_>>()?;
            let alias_filter = Query::Bool {
                must: vec![],
                filter: vec![],
                should: fs,
                must_not: vec![],
                msm: Some(crate::query::Msm::Count(1)),
                boost: 1.0,
            };
            Ok(Query::Bool {
                must: vec![base],
                filter: vec![alias_filter],
                should: vec![],
                must_not: vec![],
                msm: None,
                boost: 1.0,
            })
        }
    }
}

struct Hit {
    index_pos: usize,
    id: Arc<str>,
    doc: Arc<StoredDoc>,
    score: f32,
    sort: Vec<Key>,
    sort_json: Vec<Value>,
}

struct Prepared {
    r: Resolved,
    compiled: Compiled,
    post: Option<Compiled>,
}

fn prepare(
    resolved: Vec<Resolved>,
    q: Option<&Query>,
    post: Option<&Query>,
) -> EsResult<Vec<Prepared>> {
    let mut out = Vec::new();
    for r in resolved {
        let mapping = r.index.mapping();
        let ctx = Ctx {
            index: &r.name,
            uuid: &r.index.uuid,
            mapping: &mapping,
            limits: r.index.meta.read().eff.query_limits,
        };
        let eq = effective_query(q, &r.access)?;
        let compiled = compile(&eq, &ctx).map_err(|e| wrap_shard(e, &r.name))?;
        let post = match post {
            Some(p) => Some(compile(p, &ctx).map_err(|e| wrap_shard(e, &r.name))?),
            None => None,
        };
        out.push(Prepared { r, compiled, post });
    }
    Ok(out)
}

/// Applies the rescorers in order: per shard, the top `window_size` hits by score.
fn apply_rescore(s: &SearchReq, prepared: &[Prepared], hits: &mut [Hit]) -> EsResult<()> {
    for rescorer in &s.rescore {
        let mut compiled = Vec::new();
        for p in prepared {
            let mapping = p.r.index.mapping();
            let ctx = Ctx {
                index: &p.r.name,
                uuid: &p.r.index.uuid,
                mapping: &mapping,
                limits: p.r.index.meta.read().eff.query_limits,
            };
            let c = compile(&rescorer.query, &ctx).map_err(|e| wrap_shard(e, &p.r.name))?;
            let snapshot = p.r.index.data.read().snapshot();
            compiled.push(with_stats(&c, &snapshot, &p.r.name));
        }
        // Each hit's shard, then its rank by first-pass score within the shard.
        let shard_of = |h: &Hit| -> (usize, u32) {
            let shard = prepared.get(h.index_pos).map_or(0, |p| {
                p.r.index
                    .meta
                    .read()
                    .eff
                    .routing
                    .shard(&h.id, h.doc.routing.as_deref())
            });
            (h.index_pos, shard)
        };
        let mut order: Vec<usize> = (0..hits.len()).collect();
        let keys: Vec<(usize, u32)> = hits.iter().map(shard_of).collect();
        let rank_of = |i: usize| {
            let h = hits.get(i);
            (
                keys.get(i).copied().unwrap_or((0, 0)),
                h.map_or(0.0, |h| h.score),
                h.map_or(0, |h| h.doc.seq_no),
            )
        };
        order.sort_by(|&a, &b| {
            let (ka, sa, qa) = rank_of(a);
            let (kb, sb, qb) = rank_of(b);
            ka.cmp(&kb)
                .then(sb.partial_cmp(&sa).unwrap_or(Ordering::Equal))
                .then(qa.cmp(&qb))
        });
        let mut rank = 0usize;
        let mut group: Option<(usize, u32)> = None;
        for i in order {
            let key = keys.get(i).copied().unwrap_or((0, 0));
            if group != Some(key) {
                group = Some(key);
                rank = 0;
            }
            let Some(h) = hits.get_mut(i) else { continue };
            h.score = if rank < rescorer.window {
                let index = prepared.get(h.index_pos).map_or("", |p| p.r.name.as_str());
                let view = DocView::new(&h.id, index, h.doc.routing.as_deref(), &h.doc.source);
                let second = compiled.get(h.index_pos).and_then(|c| eval(c, &view));
                rescorer.combine(h.score, second)
            } else {
                rescorer.outside(h.score)
            };
            rank += 1;
        }
    }
    // A `_score` sort reads the new scores.
    for h in hits.iter_mut() {
        for (i, spec) in s.sort.iter().enumerate() {
            if spec.field == "_score" {
                if let Some(k) = h.sort.get_mut(i) {
                    *k = Key::F(f64::from(h.score));
                }
                if let Some(j) = h.sort_json.get_mut(i) {
                    *j = json!(h.score);
                }
            }
        }
    }
    Ok(())
}

fn wrap_shard(e: EsError, index: &str) -> EsError {
    if e.kind == "query_shard_exception" || e.kind == "illegal_argument_exception" {
        EsError::search_phase(e, index)
    } else {
        e
    }
}

fn sort_keys(spec: &SortSpec, doc: &DocView<'_>, mapping: &crate::mapping::Mapping) -> Option<Key> {
    let keys = doc.field_keys(mapping, &spec.field).unwrap_or_default();
    let pick_max = spec.mode_max.unwrap_or(spec.desc);
    let mut best: Option<Key> = None;
    for k in keys {
        best = match best {
            None => Some(k),
            Some(b) => {
                let ord = k.partial_cmp_key(&b);
                if (pick_max && ord == Ordering::Greater) || (!pick_max && ord == Ordering::Less) {
                    Some(k)
                } else {
                    Some(b)
                }
            }
        };
    }
    best
}

trait KeyOrd {
    fn partial_cmp_key(&self, other: &Key) -> Ordering;
}

impl KeyOrd for Key {
    fn partial_cmp_key(&self, other: &Key) -> Ordering {
        match (self, other) {
            (Key::I(a), Key::I(b)) => a.cmp(b),
            (Key::F(a), Key::F(b)) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
            (Key::I(a), Key::F(b)) => (*a as f64).partial_cmp(b).unwrap_or(Ordering::Equal),
            (Key::F(a), Key::I(b)) => a.partial_cmp(&(*b as f64)).unwrap_or(Ordering::Equal),
            (Key::S(a), Key::S(b)) => a.cmp(b),
            (Key::B(a), Key::B(b)) => a.cmp(b),
            _ => Ordering::Equal,
        }
    }
}

fn check_sort_field(spec: &SortSpec, p: &Prepared) -> EsResult<()> {
    if spec.field == "_score" || spec.field == "_doc" || spec.field == "_shard_doc" {
        return Ok(());
    }
    let mapping = p.r.index.mapping();
    let shard_err = |reason: String| {
        EsError::search_phase(
            EsError::new(400, "query_shard_exception", reason)
                .with_meta("index_uuid", p.r.index.uuid.as_str())
                .with_meta("index", p.r.name.as_str()),
            &p.r.name,
        )
    };
    match resolve_field(&mapping, &spec.field) {
        FieldRef::Id => Err(EsError::search_phase(
            EsError::illegal_argument("Fielddata access on the _id field is disallowed, you can re-enable it by updating the dynamic cluster setting: indices.id_field_data.enabled"),
            &p.r.name,
        )),
        FieldRef::Index | FieldRef::Routing => Ok(()),
        FieldRef::Unmapped => {
            if spec.unmapped_type.is_some() {
                Ok(())
            } else {
                Err(shard_err(format!("No mapping found for [{}] in order to sort on", spec.field)))
            }
        }
        FieldRef::Field { field, .. } => {
            if field.kind == Kind::Text && !field.params.get("fielddata").is_some_and(|v| v == &Value::Bool(true)) {
                let f = &spec.field;
                return Err(EsError::search_phase(
                    EsError::illegal_argument(format!(
                        "Fielddata is disabled on [{f}] in [{}]. Text fields are not optimised for operations that require per-document field data like aggregations and sorting, so these operations are disabled by default. Please use a keyword field instead. Alternatively, set fielddata=true on [{f}] in order to load field data by uninverting the inverted index. Note that this can use significant memory.",
                        p.r.name
                    )),
                    &p.r.name,
                ));
            }
            if field.kind == Kind::GeoPoint {
                return Err(shard_err(
                    "can't sort on geo_point field without using specific sorting feature, like geo_distance"
                        .to_string(),
                ));
            }
            if matches!(field.kind, Kind::Object | Kind::Nested | Kind::Opaque) {
                return Err(shard_err(format!("No mapping found for [{}] in order to sort on", spec.field)));
            }
            Ok(())
        }
    }
}

fn missing_sort_value(spec: &SortSpec, mapping: &crate::mapping::Mapping) -> (Option<Key>, Value) {
    // `integer`, `short` and `byte` sort as 32-bit integers (8.19): their missing value is
    // Integer.MAX_VALUE / MIN_VALUE, the other numbers' Long's.
    let mut int32 = false;
    let numeric = match resolve_field(mapping, &spec.field) {
        FieldRef::Field { field, .. } => {
            int32 = matches!(field.kind, Kind::Integer | Kind::Short | Kind::Byte);
            field.kind.is_numeric()
                || matches!(field.kind, Kind::Date | Kind::DateNanos | Kind::Boolean)
        }
        _ => spec
            .unmapped_type
            .as_deref()
            .is_some_and(|t| t != "keyword" && t != "text"),
    };
    if let Some(v) = &spec.missing_value {
        let k = match v {
            Value::Number(n) => n.as_i64().map(Key::I).or_else(|| n.as_f64().map(Key::F)),
            Value::String(s) => Some(Key::S(s.clone())),
            _ => None,
        };
        let j = k.as_ref().map(Key::to_json).unwrap_or(Value::Null);
        return (k, j);
    }
    let first = spec.missing_first.unwrap_or(false);
    // Missing values sort last (or first) regardless of direction.
    let high = first == spec.desc;
    if numeric {
        let v = match (high, int32) {
            (true, true) => i64::from(i32::MAX),
            (false, true) => i64::from(i32::MIN),
            (true, false) => i64::MAX,
            (false, false) => i64::MIN,
        };
        (Some(Key::I(v)), Value::from(v))
    } else {
        (None, Value::Null)
    }
}

fn format_dv(k: &Key, kind: Kind, format: Option<&str>) -> Value {
    match (kind, format) {
        (Kind::DateNanos, None | Some("strict_date_optional_time_nanos")) => match k {
            Key::I(n) => Value::from(crate::date_nanos::format_iso(*n)),
            other => other.to_json(),
        },
        (Kind::DateNanos, Some("epoch_millis")) => match k {
            Key::I(n) => Value::from(crate::date_nanos::format_epoch_millis(*n)),
            other => other.to_json(),
        },
        (Kind::DateNanos, Some(fmt)) => match (k, crate::datefmt::DateFormat::new(fmt)) {
            (Key::I(n), Ok(df)) => Value::from(df.format(crate::date_nanos::to_millis(*n))),
            (other, _) => other.to_json(),
        },
        (Kind::Date, None) => match k {
            Key::I(ms) => Value::from(crate::names::format_date(*ms)),
            other => other.to_json(),
        },
        (Kind::Date, Some("epoch_millis")) => match k {
            Key::I(ms) => Value::from(ms.to_string()),
            other => other.to_json(),
        },
        (Kind::Date, Some(fmt)) => match (k, crate::datefmt::DateFormat::new(fmt)) {
            (Key::I(ms), Ok(df)) => Value::from(df.format(*ms)),
            (other, _) => other.to_json(),
        },
        (Kind::Boolean, _) => match k {
            Key::B(b) => Value::Bool(*b),
            other => other.to_json(),
        },
        (_, Some(fmt)) if fmt.contains('#') || fmt.contains('0') => {
            let n = match k {
                Key::I(i) => *i as f64,
                Key::F(f) => *f,
                _ => return k.to_json(),
            };
            let decimals = fmt.split_once('.').map_or(0, |(_, d)| d.len());
            Value::from(format!("{n:.decimals$}"))
        }
        _ => k.to_json(),
    }
}

fn docvalue_json(
    fields: &[DvField],
    doc: &DocView<'_>,
    mapping: &crate::mapping::Mapping,
    index: &str,
    from_source: bool,
) -> EsResult<Map<String, Value>> {
    let mut out = Map::new();
    for f in fields {
        let names: Vec<String> = if f.field.contains('*') {
            crate::mapping::leaf_fields(mapping)
                .into_iter()
                .filter(|l| crate::names::glob_match(&f.field, l))
                .collect()
        } else {
            vec![f.field.clone()]
        };
        for name in names {
            // Dates print in the field's own format unless the request names one.
            let field_fmt = match resolve_field(mapping, &name) {
                FieldRef::Field { field, .. }
                    if matches!(field.kind, Kind::Date | Kind::DateNanos) =>
                {
                    field
                        .params
                        .get("format")
                        .and_then(Value::as_str)
                        .filter(|t| *t != crate::datefmt::DEFAULT)
                        .map(str::to_string)
                }
                _ => None,
            };
            let f = &DvField {
                field: f.field.clone(),
                format: f.format.clone().or(field_fmt),
            };
            let kind = match resolve_field(mapping, &name) {
                FieldRef::Field { field, .. } => field.kind,
                FieldRef::Id | FieldRef::Index | FieldRef::Routing => Kind::Keyword,
                FieldRef::Unmapped => continue,
            };
            if from_source {
                // The fields API returns source values, formatted by type.
                let FieldRef::Field { path, field } = resolve_field(mapping, &name) else {
                    continue;
                };
                let vals: Vec<Value> = doc
                    .values(&path)
                    .into_iter()
                    .filter(|v| !v.is_null())
                    .flat_map(|v| match field.kind {
                        Kind::Keyword | Kind::Date | Kind::DateNanos => {
                            crate::query::doc_keys(field.kind, &field.params, v)
                                .iter()
                                .map(|k| format_dv(k, field.kind, f.format.as_deref()))
                                .collect::<Vec<_>>()
                        }
                        _ => vec![v.clone()],
                    })
                    .collect();
                if !vals.is_empty() {
                    out.insert(name, Value::Array(vals));
                }
                continue;
            }
            if kind == Kind::Text {
                return Err(EsError::search_phase(
                    EsError::illegal_argument(format!(
                        "Fielddata is disabled on [{name}] in [{index}]. Text fields are not optimised for operations that require per-document field data like aggregations and sorting, so these operations are disabled by default. Please use a keyword field instead. Alternatively, set fielddata=true on [{name}] in order to load field data by uninverting the inverted index. Note that this can use significant memory."
                    )),
                    index,
                ));
            }
            let mut keys = doc.field_keys(mapping, &name).unwrap_or_default();
            keys.sort_by(|a, b| a.partial_cmp_key(b));
            if !keys.is_empty() {
                out.insert(
                    name,
                    Value::Array(
                        keys.iter()
                            .map(|k| format_dv(k, kind, f.format.as_deref()))
                            .collect(),
                    ),
                );
            }
        }
    }
    Ok(out)
}

/// `GET|POST /_search`, `/{index}/_search`.
pub(crate) fn search(node: &Node, req: &Req) -> EsResult<Resp> {
    let start = Instant::now();
    let mut s = parse_search(req)?;
    let pit = match &s.pit {
        Some((id, keep_alive)) => {
            let mut errors = Vec::new();
            if req.part("index").is_some() {
                errors.push("[indices] cannot be used with point in time. Do not specify any index with point in time.".to_string());
            }
            if req.params.has("routing") {
                errors.push("[routing] cannot be used with point in time".to_string());
            }
            if req.params.has("preference") {
                errors.push("[preference] cannot be used with point in time".to_string());
            }
            if !errors.is_empty() {
                return Err(EsError::validation(&errors));
            }
            Some(node.pits.get(id, *keep_alive)?)
        }
        None => {
            if s.sort.iter().any(|x| x.field == "_shard_doc") {
                return Err(EsError::validation(&[
                    "[_shard_doc] sort field cannot be used without [point in time]".to_string(),
                ]));
            }
            None
        }
    };
    // With a point in time Elasticsearch adds the implicit `_shard_doc` tiebreaker to an
    // explicit sort, unless search_after carries exactly the explicit sort's values.
    if pit.is_some()
        && !s.sort.is_empty()
        && !s.sort.iter().any(|x| x.field == "_shard_doc")
        && s.search_after
            .as_ref()
            .is_none_or(|a| a.len() == s.sort.len() + 1)
    {
        s.sort.push(SortSpec {
            field: "_shard_doc".to_string(),
            desc: false,
            missing_first: None,
            missing_value: None,
            unmapped_type: None,
            mode_max: None,
            format: None,
        });
    }
    let resolved = match &pit {
        Some(p) => p.indices.iter().map(|i| i.resolved.clone()).collect(),
        None => node
            .cluster
            .meta
            .read()
            .resolve(req.part("index").unwrap_or(""), &search_opts(req)?)?,
    };
    let now = Instant::now();
    for r in &resolved {
        r.index.maybe_scheduled_refresh(now);
        r.index
            .stats
            .query_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (window, max_dv, max_rescore) = {
            let m = r.index.meta.read();
            (
                m.eff.max_result_window,
                m.eff.max_docvalue_fields,
                m.eff.max_rescore_window,
            )
        };
        let sorted = s.sort.iter().any(|x| x.field != "_score");
        super::rescore::validate(&s.rescore, max_rescore, sorted)
            .map_err(|e| EsError::search_phase(e, &r.name))?;
        if s.docvalue_fields.len() as u64 > max_dv {
            return Err(EsError::search_phase(
                EsError::illegal_argument(format!(
                    "Trying to retrieve too many docvalue_fields. Must be less than or equal to: [{max_dv}] but was [{}]. This limit can be set by changing the [index.max_docvalue_fields_search] index level setting.",
                    s.docvalue_fields.len()
                )),
                &r.name,
            ));
        }
        if s.from.saturating_add(s.size) as u64 > window {
            return Err(EsError::search_phase(
                EsError::illegal_argument(format!(
                    "Result window is too large, from + size must be less than or equal to: [{window}] but was [{}]. See the scroll api for a more efficient way to request large data sets. This limit can be set by changing the [index.max_result_window] index level setting.",
                    s.from.saturating_add(s.size)
                )),
                &r.name,
            ));
        }
    }
    let total_shards: u64 = resolved.iter().map(|r| u64::from(r.index.shards())).sum();
    let index_boosts = if s.indices_boost.is_empty() {
        Default::default()
    } else {
        super::indices_boost::resolve(
            &node.cluster.meta.read(),
            &s.indices_boost,
            &search_opts(req)?,
        )?
    };
    let prepared = prepare(resolved, s.query.as_ref(), s.post_filter.as_ref())?;
    for p in &prepared {
        for spec in &s.sort {
            check_sort_field(spec, p)?;
        }
    }
    let sort_by_score = s.sort.is_empty() || s.sort.iter().any(|x| x.field == "_score");
    let early_after = s
        .search_after
        .as_ref()
        .filter(|a| s.rescore.is_empty() && a.len() == s.sort.len());
    let mut hits: Vec<Hit> = Vec::new();
    let mut total: u64 = 0;
    // Each index's query with its collection statistics (for named query scores too).
    let mut scored: Vec<Compiled> = Vec::with_capacity(prepared.len());
    // A point-in-time walk sorted by `_shard_doc` alone, without totals (how clients page
    // through a whole index): a capture is in `_seq_no` order, which is `_shard_doc`
    // order, so a page starts right after `search_after` and ends once `from + size` hits
    // are found. Elasticsearch answers such pages without visiting the rest of the index;
    // visiting all of it for every page made a walk quadratic in the index size.
    let walk_page = pit.is_some()
        && matches!(s.sort.as_slice(), [only] if only.field == "_shard_doc" && !only.desc)
        && s.rescore.is_empty()
        && matches!(s.track_total, TrackTotal::Off)
        && s.terminate_after.is_none()
        && !s.track_scores;
    let walk_after = match s.search_after.as_deref() {
        Some([v]) if walk_page => v.as_i64(),
        _ => None,
    };
    let walk_wanted = usize::try_from(s.from.saturating_add(s.size)).unwrap_or(usize::MAX);
    for (pos, p) in prepared.iter().enumerate() {
        if walk_page && hits.len() >= walk_wanted {
            break;
        }
        let mapping = p.r.index.mapping();
        // A point in time's capture is read in place: copying its pointers for every page
        // of a walk cost as much as the page itself on a large index.
        let current;
        let snapshot: &[(Arc<str>, Arc<StoredDoc>)] =
            match pit.as_ref().and_then(|x| x.indices.get(pos)) {
                Some(frozen) => &frozen.docs,
                None => {
                    current = p.r.index.data.read().snapshot();
                    &current
                }
            };
        // The index boost multiplies the query score, so min_score sees the boosted score.
        let index_boost = index_boosts.get(&p.r.name).copied().unwrap_or(1.0);
        let compiled = with_stats(&p.compiled, snapshot, &p.r.name);
        scored.push(compiled.clone());
        let shard_doc = |seq_no: i64| ((pos as i64) << 32).saturating_add(seq_no);
        let first = match walk_after {
            Some(after) => snapshot.partition_point(|(_, d)| shard_doc(d.seq_no) <= after),
            None => 0,
        };
        for (id, doc) in snapshot.get(first..).unwrap_or_default() {
            if walk_page && hits.len() >= walk_wanted {
                break;
            }
            let view = DocView::new(id, &p.r.name, doc.routing.as_deref(), &doc.source);
            let Some(score) = eval(&compiled, &view).map(|sc| sc * index_boost) else {
                continue;
            };
            if let Some(post) = &p.post {
                if eval(post, &view).is_none() {
                    continue;
                }
            }
            if let Some(min) = s.min_score {
                if score < min {
                    continue;
                }
            }
            total += 1;
            let mut sort = Vec::new();
            let mut sort_json = Vec::new();
            for spec in &s.sort {
                match spec.field.as_str() {
                    "_score" => {
                        sort.push(Key::F(f64::from(score)));
                        sort_json.push(json!(score));
                    }
                    "_doc" => {
                        sort.push(Key::I(doc.seq_no));
                        sort_json.push(json!(doc.seq_no));
                    }
                    "_shard_doc" => {
                        // Like Elasticsearch's (shard index << 32 | doc id): unique across
                        // the point in time's indices, stable for its lifetime.
                        let v = shard_doc(doc.seq_no);
                        sort.push(Key::I(v));
                        sort_json.push(json!(v));
                    }
                    _ => match sort_keys(spec, &view, &mapping) {
                        Some(k) => {
                            let kind = match resolve_field(&mapping, &spec.field) {
                                FieldRef::Field { field, .. } => field.kind,
                                _ => Kind::Keyword,
                            };
                            sort_json.push(match (&k, kind, &spec.format) {
                                (Key::B(b), _, _) => json!(i64::from(*b)),
                                (_, Kind::Date | Kind::DateNanos, Some(f)) => {
                                    format_dv(&k, kind, Some(f))
                                }
                                _ => k.to_json(),
                            });
                            sort.push(k);
                        }
                        None => {
                            let (k, j) = missing_sort_value(spec, &mapping);
                            sort.push(k.unwrap_or(Key::S(String::new())));
                            // A formatted date sort prints a missing value as null.
                            let formatted_date = spec.format.is_some()
                                && spec.missing_value.is_none()
                                && matches!(resolve_field(&mapping, &spec.field), FieldRef::Field { field, .. } if matches!(field.kind, Kind::Date | Kind::DateNanos));
                            sort_json.push(if formatted_date { Value::Null } else { j });
                        }
                    },
                }
            }
            // Hits at or before `search_after` are dropped here rather than after sorting
            // every hit: a walk page by page over a large index would otherwise hold and
            // sort the whole index for each page (rescoring needs them all, so not then).
            if early_after.is_none_or(|after| is_after(&s.sort, &sort_json, after)) {
                hits.push(Hit {
                    index_pos: pos,
                    id: id.clone(),
                    doc: doc.clone(),
                    score,
                    sort,
                    sort_json,
                });
            }
            if let Some(t) = s.terminate_after {
                if t > 0 && total >= t {
                    break;
                }
            }
        }
    }
    let cmp_hits = |a: &Hit, b: &Hit| -> Ordering {
        if s.sort.is_empty() {
            return b
                .score
                .partial_cmp(&a.score)
                .unwrap_or(Ordering::Equal)
                .then(a.index_pos.cmp(&b.index_pos))
                .then(a.doc.seq_no.cmp(&b.doc.seq_no));
        }
        for (i, spec) in s.sort.iter().enumerate() {
            let (ka, kb) = (a.sort.get(i), b.sort.get(i));
            let ja = a.sort_json.get(i).is_some_and(Value::is_null);
            let jb = b.sort_json.get(i).is_some_and(Value::is_null);
            // Null (missing keyword) values go last unless missing: _first.
            let ord = match (ja, jb) {
                (true, true) => Ordering::Equal,
                (true, false) => {
                    if spec.missing_first == Some(true) {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    }
                }
                (false, true) => {
                    if spec.missing_first == Some(true) {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    }
                }
                (false, false) => {
                    let o = match (ka, kb) {
                        (Some(x), Some(y)) => x.partial_cmp_key(y),
                        _ => Ordering::Equal,
                    };
                    if spec.desc {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        a.index_pos
            .cmp(&b.index_pos)
            .then(a.doc.seq_no.cmp(&b.doc.seq_no))
    };
    if !s.rescore.is_empty() {
        apply_rescore(&s, &prepared, &mut hits)?;
    }
    if let Some(after) = &s.search_after {
        if after.len() != s.sort.len() {
            return Err(EsError::illegal_argument(format!(
                "search_after has {} value(s) but sort has {}.",
                after.len(),
                s.sort.len()
            )));
        }
        if early_after.is_none() {
            hits.retain(|h| is_after(&s.sort, &h.sort_json, after));
        }
    }
    let max_score = if sort_by_score || s.track_scores {
        hits.iter()
            .map(|h| h.score)
            .fold(None, |m: Option<f32>, x| Some(m.map_or(x, |m| m.max(x))))
    } else {
        None
    };
    let from = usize::try_from(s.from).unwrap_or(usize::MAX);
    let size = usize::try_from(s.size).unwrap_or(0);
    // Only `from + size` hits can be returned: select those, then sort just them
    // (`cmp_hits` breaks every tie, so the page is the one a full sort gives).
    let keep = from.saturating_add(size);
    if keep < hits.len() {
        match keep.checked_sub(1) {
            Some(last) => {
                hits.select_nth_unstable_by(last, cmp_hits);
                hits.truncate(keep);
            }
            None => hits.clear(),
        }
    }
    hits.sort_by(cmp_hits);
    let named_scores = req.params.bool_or("include_named_queries_score", false)?;
    let mut out_hits = Vec::new();
    for h in hits.iter().skip(from).take(size) {
        let Some(p) = prepared.get(h.index_pos) else {
            continue;
        };
        let mapping = p.r.index.mapping();
        let mut m = Obj::default();
        m.val("_index", p.r.name.as_str());
        m.val("_id", &*h.id);
        if s.version {
            m.val("_version", h.doc.version);
        }
        if s.seq_no_primary_term {
            m.val("_seq_no", h.doc.seq_no);
            m.val("_primary_term", 1);
        }
        let score = if sort_by_score || s.track_scores {
            json!(h.score)
        } else {
            Value::Null
        };
        m.val("_score", score);
        if let Some(r) = h
            .doc
            .routing
            .as_ref()
            .filter(|_| !mapping.routing_in_doc_values())
        {
            m.val("_routing", &**r);
        }
        if let Some(raw) = crate::api::docs::render_source(&h.doc, &s.source) {
            m.push("_source", Out::Raw(raw));
        }
        let view = DocView::new(&h.id, &p.r.name, h.doc.routing.as_deref(), &h.doc.source);
        let mut fields = docvalue_json(&s.fields, &view, &mapping, &p.r.name, true)?;
        fields.extend(docvalue_json(
            &s.docvalue_fields,
            &view,
            &mapping,
            &p.r.name,
            false,
        )?);
        if !fields.is_empty() {
            m.val("fields", Value::Object(fields));
        }
        if !s.sort.is_empty() {
            m.val("sort", Value::Array(h.sort_json.clone()));
        }
        let mut named = Vec::new();
        let query = scored.get(h.index_pos).unwrap_or(&p.compiled);
        for c in std::iter::once(query).chain(p.post.as_ref()) {
            crate::query::matched_queries(c, &view, &mut named);
        }
        if !named.is_empty() {
            named.sort_by(|a, b| a.0.cmp(&b.0));
            named.dedup_by(|a, b| a.0 == b.0);
            m.val(
                "matched_queries",
                if named_scores {
                    Value::Object(named.into_iter().map(|(n, sc)| (n, json!(sc))).collect())
                } else {
                    Value::Array(named.into_iter().map(|(n, _)| Value::from(n)).collect())
                },
            );
        }
        out_hits.push(m);
    }
    let mut hits_obj = Obj::default();
    match s.track_total {
        // Not tracked: absent, or -1 where the total must be an integer.
        TrackTotal::Off if s.total_as_int => hits_obj.val("total", -1),
        TrackTotal::Off => {}
        _ if s.total_as_int => hits_obj.val("total", total),
        TrackTotal::Exact => hits_obj.val("total", json!({"value": total, "relation": "eq"})),
        TrackTotal::UpTo(n) => {
            if total > n {
                hits_obj.val("total", json!({"value": n, "relation": "gte"}));
            } else {
                hits_obj.val("total", json!({"value": total, "relation": "eq"}));
            }
        }
    }
    hits_obj.val("max_score", max_score.map_or(Value::Null, |m| json!(m)));
    hits_obj.push("hits", Out::Objs(out_hits));
    let mut body = Obj::default();
    if let Some((id, _)) = &s.pit {
        body.val("pit_id", id.as_str());
    }
    body.val("took", start.elapsed().as_millis() as u64);
    body.val("timed_out", false);
    if let Some(t) = s.terminate_after {
        if t > 0 {
            body.val("terminated_early", total >= t);
        }
    }
    body.val(
        "_shards",
        json!({"total": total_shards, "successful": total_shards, "skipped": 0, "failed": 0}),
    );
    body.push("hits", Out::Obj(hits_obj));
    let resp = Resp::raw(200, body.to_vec());
    Ok(if s.size_unset_warning {
        resp.with_warning("Using search size of -1 is deprecated and will be removed in future versions. Instead, don't use the `size` parameter if you don't want to set it explicitly.")
    } else {
        resp
    })
}

/// Does a hit with these sort values come after `after` (`search_after`) in `sort`'s order?
fn is_after(sort: &[SortSpec], values: &[Value], after: &[Value]) -> bool {
    for (i, spec) in sort.iter().enumerate() {
        let (Some(hv), Some(av)) = (values.get(i), after.get(i)) else {
            return false;
        };
        let o = cmp_json(hv, av);
        let o = if spec.desc { o.reverse() } else { o };
        match o {
            Ordering::Greater => return true,
            Ordering::Less => return false,
            Ordering::Equal => continue,
        }
    }
    false
}

fn cmp_json(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i.cmp(&j),
            _ => x
                .as_f64()
                .partial_cmp(&y.as_f64())
                .unwrap_or(Ordering::Equal),
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Greater,
        (_, Value::Null) => Ordering::Less,
        _ => Ordering::Equal,
    }
}

/// `GET|POST /_count`, `/{index}/_count`.
pub(crate) fn count(node: &Node, req: &Req) -> EsResult<Resp> {
    if let Some(t) = req.params.i32_opt("terminate_after")? {
        if t < 0 {
            return Err(EsError::illegal_argument("terminateAfter must be > 0"));
        }
    }
    let mut query = None;
    if let Some(body) = req.json_body()? {
        let m = body.as_object().ok_or_else(|| {
            EsError::parsing("request does not support a body that is not an object")
        })?;
        for (k, v) in m {
            match k.as_str() {
                "query" => query = Some(parse_query(v)?),
                other => {
                    return Err(EsError::parsing(format!(
                        "request does not support [{other}]"
                    )));
                }
            }
        }
    }
    if let Some(q) = req.params.get("q") {
        let df = req.params.get("df").unwrap_or("*").to_string();
        let and = req
            .params
            .get("default_operator")
            .is_some_and(|o| o.eq_ignore_ascii_case("and"));
        let mut opts = QsOpts::new(vec![df]);
        opts.and = and;
        opts.lenient = req.params.bool_opt("lenient")?;
        query = Some(query_string(q, opts));
    }
    let min_score = match req.params.get("min_score") {
        Some(v) => Some(v.parse::<f32>().map_err(|_| {
            EsError::illegal_argument(format!(
                "Failed to parse float parameter [min_score] with value [{v}]"
            ))
        })?),
        None => None,
    };
    let resolved = node
        .cluster
        .meta
        .read()
        .resolve(req.part("index").unwrap_or(""), &search_opts(req)?)?;
    let now = Instant::now();
    let total_shards: u64 = resolved.iter().map(|r| u64::from(r.index.shards())).sum();
    for r in &resolved {
        r.index.maybe_scheduled_refresh(now);
        r.index
            .stats
            .query_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let match_all = matches!(query, None | Some(Query::MatchAll(_))) && min_score.is_none();
    let prepared = prepare(resolved, query.as_ref(), None)?;
    let mut count: u64 = 0;
    for p in &prepared {
        if match_all && p.r.access == Access::Unfiltered {
            count += p.r.index.data.read().visible_count();
            continue;
        }
        let snapshot = p.r.index.data.read().snapshot();
        let compiled = with_stats(&p.compiled, &snapshot, &p.r.name);
        for (id, doc) in snapshot {
            let view = DocView::new(&id, &p.r.name, doc.routing.as_deref(), &doc.source);
            if let Some(score) = eval(&compiled, &view) {
                if min_score.is_none_or(|m| score >= m) {
                    count += 1;
                }
            }
        }
    }
    Ok(Resp::json(
        200,
        &json!({"count": count, "_shards": {"total": total_shards, "successful": total_shards, "skipped": 0, "failed": 0}}),
    ))
}
