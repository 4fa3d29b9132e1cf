//! Single-document APIs: index, create, get, exists, delete, update, `_source`, `_mget`.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::api::{refresh_param, shards_json, single_index_routed, write_index, Refresh};
use crate::error::{EsError, EsResult};
use crate::index::{
    Index, IndexData, StoredDoc, VersionType, Versioning, WriteOp, WriteOutcome, WriteResult,
};
use crate::json::{Obj, Out};
use crate::node::{Node, Req, Resp};
use crate::params::Params;
use crate::source_filter::SourceFilter;

pub(crate) fn pipeline_error(id: &str) -> EsError {
    EsError::illegal_argument(format!("pipeline with id [{id}] does not exist"))
}

pub(crate) fn validate_id(id: &str) -> EsResult<()> {
    if id.len() > 512 {
        return Err(EsError::validation(&[format!(
            "id [{id}] is too long, must be no longer than 512 bytes but was: {}",
            id.len()
        )]));
    }
    Ok(())
}

pub(crate) fn versioning_params(p: &Params) -> EsResult<Versioning> {
    let version_type = match p.get("version_type") {
        Some(v) => VersionType::parse(v)?,
        None => VersionType::Internal,
    };
    Ok(Versioning {
        version: p.i64_opt("version")?,
        version_type,
        if_seq_no: p.i64_opt("if_seq_no")?,
        if_primary_term: p.i64_opt("if_primary_term")?,
    })
}

fn write_response(index: &Index, id: &str, w: &WriteOutcome, forced: bool) -> Resp {
    let (total, ok) = if w.result == WriteResult::Noop {
        (0, 0)
    } else {
        index.write_shards()
    };
    let mut m = Map::new();
    m.insert("_index".into(), Value::from(index.name.as_str()));
    m.insert("_id".into(), Value::from(id));
    m.insert("_version".into(), Value::from(w.version));
    m.insert("result".into(), Value::from(w.result.as_str()));
    if forced {
        m.insert("forced_refresh".into(), Value::Bool(true));
    }
    m.insert("_shards".into(), shards_json(total, ok));
    m.insert("_seq_no".into(), Value::from(w.seq_no));
    m.insert("_primary_term".into(), Value::from(1));
    Resp::json(w.result.status(), &Value::Object(m))
}

fn do_refresh(index: &Index, refresh: Refresh) -> bool {
    match refresh {
        Refresh::No => false,
        Refresh::Now => {
            index.refresh();
            true
        }
        Refresh::WaitFor => {
            index.refresh();
            false
        }
    }
}

/// `PUT|POST /{index}/_doc/{id}`, `POST /{index}/_doc`, `PUT|POST /{index}/_create/{id}`.
pub(crate) fn index(node: &Node, req: &Req, create_endpoint: bool) -> EsResult<Resp> {
    let name = req.part("index").unwrap_or_default();
    let id = req.part("id");
    let mut create = create_endpoint;
    if let Some(op) = req.params.get("op_type") {
        match op {
            "create" => create = true,
            "index" if !create_endpoint => {}
            "index" => {}
            other => {
                return Err(EsError::illegal_argument(format!(
                    "opType must be 'create' or 'index', found: [{other}]"
                )))
            }
        }
    }
    let versioning = versioning_params(&req.params)?;
    let refresh = refresh_param(req.params.get("refresh"))?;
    let require_alias = req.params.bool_or("require_alias", false)?;
    if !req.has_body() {
        return Err(EsError::parse("request body is required"));
    }
    let mut errors = Vec::new();
    if let Some(id) = id {
        if id.len() > 512 {
            errors.push(format!(
                "id [{id}] is too long, must be no longer than 512 bytes but was: {}",
                id.len()
            ));
        }
    }
    errors.extend(versioning.validation_errors(create, id.is_some()));
    if !errors.is_empty() {
        return Err(EsError::validation(&errors));
    }
    if let Some(p) = req.params.get("pipeline").filter(|p| *p != "_none") {
        return Err(pipeline_error(p));
    }
    let (index, alias_routing) = write_index(node, name, require_alias)?;
    let routing = req
        .params
        .get("routing")
        .map(str::to_string)
        .or(alias_routing);
    let id: String = match id {
        Some(i) => i.to_string(),
        None => {
            create = true;
            crate::util::auto_id()
        }
    };
    let source = std::str::from_utf8(&req.body).map_err(|_| {
        EsError::new(
            400,
            "document_parsing_exception",
            "[1:1] failed to parse: Invalid UTF-8 start byte",
        )
    })?;
    let prepared = index.prepare(source.as_bytes(), &id)?;
    let w = index.data.write().apply(
        &index,
        &id,
        WriteOp::Index {
            source,
            create,
            prepared,
        },
        &versioning,
        routing.as_deref(),
        Instant::now(),
    )?;
    let forced = do_refresh(&index, refresh);
    Ok(write_response(&index, &id, &w, forced))
}

/// `DELETE /{index}/_doc/{id}`.
pub(crate) fn delete(node: &Node, req: &Req) -> EsResult<Resp> {
    let name = req.part("index").unwrap_or_default();
    let id = req.part("id").unwrap_or_default();
    let versioning = versioning_params(&req.params)?;
    let refresh = refresh_param(req.params.get("refresh"))?;
    let mut errors = Vec::new();
    if id.len() > 512 {
        errors.push(format!(
            "id [{id}] is too long, must be no longer than 512 bytes but was: {}",
            id.len()
        ));
    }
    errors.extend(versioning.validation_errors(false, true));
    if !errors.is_empty() {
        return Err(EsError::validation(&errors));
    }
    let index = if versioning.version_type == VersionType::Internal {
        // Deletes do not create the index unless external versioning is used.
        if let crate::cluster::WriteTarget::Missing = node.cluster.meta.read().write_target(name) {
            return Err(EsError::index_not_found(name));
        }
        write_index(node, name, false)?
    } else {
        write_index(node, name, false)?
    };
    let (index, alias_routing) = index;
    let routing = req
        .params
        .get("routing")
        .map(str::to_string)
        .or(alias_routing);
    let w = index.data.write().apply(
        &index,
        id,
        WriteOp::Delete,
        &versioning,
        routing.as_deref(),
        Instant::now(),
    )?;
    let forced = do_refresh(&index, refresh);
    Ok(write_response(&index, id, &w, forced))
}

fn merge_into(target: &mut Map<String, Value>, changes: &Map<String, Value>) -> bool {
    let mut changed = false;
    for (k, v) in changes {
        match (target.get_mut(k), v) {
            (Some(Value::Object(t)), Value::Object(c)) => {
                if merge_into(t, c) {
                    changed = true;
                }
            }
            (Some(existing), _) => {
                if existing != v {
                    *existing = v.clone();
                    changed = true;
                }
            }
            (None, _) => {
                target.insert(k.clone(), v.clone());
                changed = true;
            }
        }
    }
    changed
}

/// Applies an update body (`doc`, `upsert`, `doc_as_upsert`, `detect_noop`) to a document.
pub(crate) fn apply_update(
    index: &Arc<Index>,
    id: &str,
    body: &Value,
    versioning: &Versioning,
    routing: Option<&str>,
) -> EsResult<WriteOutcome> {
    let mut data = index.data.write();
    apply_update_locked(
        index,
        &mut data,
        id,
        body,
        versioning,
        routing,
        Instant::now(),
    )
}

/// [`apply_update`] with the index lock held by the caller.
pub(crate) fn apply_update_locked(
    index: &Index,
    data: &mut IndexData,
    id: &str,
    body: &Value,
    versioning: &Versioning,
    routing: Option<&str>,
    now: Instant,
) -> EsResult<WriteOutcome> {
    if body.get("script").is_some() {
        return Err(EsError::illegal_argument(
            "scripted updates are not supported by es-devserver (scripting is out of scope)",
        ));
    }
    let doc = body.get("doc").and_then(Value::as_object);
    let upsert = body.get("upsert").and_then(Value::as_object);
    let truthy = |v: Option<&Value>| {
        matches!(v, Some(Value::Bool(true))) || matches!(v, Some(Value::String(s)) if s == "true")
    };
    let doc_as_upsert = truthy(body.get("doc_as_upsert"));
    let detect_noop = !matches!(body.get("detect_noop"), Some(Value::Bool(false)))
        && !matches!(body.get("detect_noop"), Some(Value::String(s)) if s == "false");
    let current: Option<Arc<StoredDoc>> = data.get_live(id);
    let (new_source, create) = match &current {
        None => {
            let src = if doc_as_upsert {
                doc.cloned()
            } else {
                upsert.cloned()
            };
            match src {
                Some(s) => (
                    serde_json::to_string(&Value::Object(s)).unwrap_or_default(),
                    true,
                ),
                None => {
                    return Err(EsError::new(
                        404,
                        "document_missing_exception",
                        format!("[{id}]: document missing"),
                    )
                    .with_shard(&index.name, &index.uuid))
                }
            }
        }
        Some(cur) => {
            if let Some(if_seq) = versioning.if_seq_no {
                let term = versioning.if_primary_term.unwrap_or(0);
                if cur.seq_no != if_seq || term != 1 {
                    return Err(EsError::version_conflict(
                        id,
                        &format!(
                            "required seqNo [{if_seq}], primary term [{term}]. current document has seqNo [{}] and primary term [1]",
                            cur.seq_no
                        ),
                        &index.name,
                        &index.uuid,
                    ));
                }
            }
            let mut parsed: Map<String, Value> =
                serde_json::from_str(&cur.source).unwrap_or_default();
            let changed = match doc {
                Some(d) => merge_into(&mut parsed, d),
                None => false,
            };
            if !changed && detect_noop {
                index
                    .stats
                    .noop_update_total
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok(WriteOutcome {
                    version: cur.version,
                    seq_no: cur.seq_no,
                    result: WriteResult::Noop,
                });
            }
            (
                serde_json::to_string(&Value::Object(parsed)).unwrap_or_default(),
                false,
            )
        }
    };
    let updates = crate::mapping::check_source_with(
        data.mapping(),
        data.check_opts(),
        None,
        new_source.as_bytes(),
        id,
    )?;
    index
        .meta
        .read()
        .eff
        .doc_limits
        .check(data.mapping(), new_source.as_bytes())?;
    let prepared = crate::index::Prepared {
        updates,
        mapping_gen: u64::MAX,
        named: None,
        recheck: false,
    };
    let v = Versioning {
        version: None,
        version_type: VersionType::Internal,
        ..*versioning
    };
    let r = data.apply(
        index,
        id,
        WriteOp::Index {
            source: &new_source,
            create,
            prepared,
        },
        &v,
        routing,
        now,
    )?;
    Ok(r)
}

/// `POST /{index}/_update/{id}`.
pub(crate) fn update(node: &Node, req: &Req) -> EsResult<Resp> {
    let name = req.part("index").unwrap_or_default();
    let id = req.part("id").unwrap_or_default();
    let refresh = refresh_param(req.params.get("refresh"))?;
    let require_alias = req.params.bool_or("require_alias", false)?;
    let versioning = Versioning {
        if_seq_no: req.params.i64_opt("if_seq_no")?,
        if_primary_term: req.params.i64_opt("if_primary_term")?,
        ..Versioning::default()
    };
    req.params.i32_opt("retry_on_conflict")?;
    let body = req
        .json_body()?
        .ok_or_else(|| EsError::parse("request body is required"))?;
    crate::bulk::validate_update_body(&body)?;
    if body.get("doc").is_none() && body.get("script").is_none() {
        return Err(EsError::validation(&[
            "script or doc is missing".to_string()
        ]));
    }
    let errors = versioning.validation_errors(false, true);
    if !errors.is_empty() {
        return Err(EsError::validation(&errors));
    }
    let (index, alias_routing) = write_index(node, name, require_alias)?;
    let routing = req
        .params
        .get("routing")
        .map(str::to_string)
        .or(alias_routing);
    // `_source` in the body or the URL asks for the updated document in a `get` object.
    let mut source = match body.get("_source") {
        Some(v) => Some(SourceFilter::from_body(v)?),
        None => None,
    };
    if let Some(f) = SourceFilter::from_params(&req.params)? {
        source = Some(f);
    }
    let w = apply_update(&index, id, &body, &versioning, routing.as_deref())?;
    let forced = w.result != WriteResult::Noop && do_refresh(&index, refresh);
    let resp = write_response(&index, id, &w, forced);
    match source.filter(|f| f.fetch) {
        Some(f) => Ok(with_update_get(resp, &index, id, &f)),
        None => Ok(resp),
    }
}

/// Adds the `get` object of an update response: the document as the update left it.
pub(crate) fn update_get_json(index: &Index, id: &str, filter: &SourceFilter) -> Option<Value> {
    let doc = index.data.read().get_live(id)?;
    let mut m = Map::new();
    m.insert("_seq_no".into(), Value::from(doc.seq_no));
    m.insert("_primary_term".into(), Value::from(1));
    if let Some(r) = doc
        .routing
        .as_ref()
        .filter(|_| !index.mapping().routing_in_doc_values())
    {
        m.insert("_routing".into(), Value::from(&**r));
    }
    m.insert("found".into(), Value::Bool(true));
    if let Some(raw) = render_source(&doc, filter) {
        m.insert(
            "_source".into(),
            serde_json::from_str(raw.get()).unwrap_or(Value::Null),
        );
    }
    Some(Value::Object(m))
}

fn with_update_get(mut resp: Resp, index: &Index, id: &str, filter: &SourceFilter) -> Resp {
    let Some(get) = update_get_json(index, id, filter) else {
        return resp;
    };
    if let Ok(Value::Object(mut m)) = serde_json::from_slice::<Value>(&resp.body) {
        m.insert("get".into(), get);
        resp = Resp::json(resp.status, &Value::Object(m));
    }
    resp
}

/// What a get request returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GetMode {
    Doc,
    Exists,
    Source,
    SourceExists,
}

fn stored_fields_filter(p: &Params) -> Option<SourceFilter> {
    let sf = p.list("stored_fields")?;
    if sf.iter().any(|f| f == "_source") {
        None
    } else {
        Some(SourceFilter::none())
    }
}

pub(crate) fn render_source(
    doc: &StoredDoc,
    filter: &SourceFilter,
) -> Option<Box<serde_json::value::RawValue>> {
    if !filter.fetch {
        return None;
    }
    if filter.is_identity() {
        return serde_json::value::RawValue::from_string(doc.source.to_string()).ok();
    }
    let parsed: Value = serde_json::from_str(&doc.source).ok()?;
    let filtered = filter.apply(&parsed);
    serde_json::value::to_raw_value(&filtered).ok()
}

fn get_doc_json(index: &Index, id: &str, doc: Option<&StoredDoc>, filter: &SourceFilter) -> Obj {
    let mut m = Obj::default();
    m.val("_index", index.name.as_str());
    m.val("_id", id);
    match doc {
        Some(d) => {
            m.val("_version", d.version);
            m.val("_seq_no", d.seq_no);
            m.val("_primary_term", 1);
            if let Some(r) = d
                .routing
                .as_ref()
                .filter(|_| !index.mapping().routing_in_doc_values())
            {
                m.val("_routing", &**r);
            }
            m.val("found", true);
            if let Some(raw) = render_source(d, filter) {
                m.push("_source", Out::Raw(raw));
            }
        }
        None => m.val("found", false),
    }
    m
}

/// The document a get with this routing finds: none when the routing (or, without one, the
/// id) leads to another shard than the one the document was indexed to.
fn fetch(index: &Index, id: &str, routing: Option<&str>, realtime: bool) -> Option<Arc<StoredDoc>> {
    index
        .stats
        .get_total
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let doc = {
        let d = index.data.read();
        if realtime {
            d.get_live(id)
        } else {
            d.get_visible(id)
        }
    }?;
    let shards = index.meta.read().eff.routing;
    (shards.shard(id, doc.routing.as_deref()) == shards.shard(id, routing)).then_some(doc)
}

/// `GET|HEAD /{index}/_doc/{id}`, `GET|HEAD /{index}/_source/{id}`.
pub(crate) fn get(node: &Node, req: &Req, mode: GetMode) -> EsResult<Resp> {
    let name = req.part("index").unwrap_or_default();
    let id = req.part("id").unwrap_or_default();
    let realtime = req.params.bool_or("realtime", true)?;
    let version = req.params.i64_opt("version")?;
    let version_type = match req.params.get("version_type") {
        Some(v) => VersionType::parse(v)?,
        None => VersionType::Internal,
    };
    let filter = match SourceFilter::from_params(&req.params)? {
        Some(f) => f,
        None => stored_fields_filter(&req.params).unwrap_or_else(SourceFilter::all),
    };
    let (index, routing) = match single_index_routed(node, name, req.params.get("routing")) {
        Ok(i) => i,
        Err(e) => {
            if matches!(mode, GetMode::Exists | GetMode::SourceExists) {
                return Ok(Resp::empty(e.status));
            }
            return Err(e);
        }
    };
    if req.params.bool_or("refresh", false)? {
        index.refresh();
    }
    let doc = fetch(&index, id, routing.as_deref(), realtime);
    if let (Some(v), Some(d)) = (version, &doc) {
        let _ = version_type;
        if d.version != v {
            let e = EsError::version_conflict(
                id,
                &format!(
                    "current version [{}] is different than the one provided [{v}]",
                    d.version
                ),
                &index.name,
                &index.uuid,
            );
            if matches!(mode, GetMode::Exists | GetMode::SourceExists) {
                return Ok(Resp::empty(409));
            }
            return Err(e);
        }
    }
    match mode {
        GetMode::Exists => Ok(Resp::empty(if doc.is_some() { 200 } else { 404 })),
        GetMode::SourceExists => Ok(Resp::empty(if doc.is_some() { 200 } else { 404 })),
        GetMode::Doc => {
            let body = get_doc_json(&index, id, doc.as_deref(), &filter);
            Ok(Resp::raw(
                if doc.is_some() { 200 } else { 404 },
                body.to_vec(),
            ))
        }
        GetMode::Source => match doc {
            Some(d) => {
                let f = if filter.fetch {
                    filter
                } else {
                    SourceFilter::all()
                };
                match render_source(&d, &f) {
                    Some(raw) => Ok(Resp::raw(200, raw.get().as_bytes().to_vec())),
                    None => Ok(Resp::json(200, &json!({}))),
                }
            }
            None => Err(EsError::new(
                404,
                "resource_not_found_exception",
                format!("Document not found [{}]/[{id}]", index.name),
            )),
        },
    }
}

/// `GET|POST /_mget`, `/{index}/_mget`.
pub(crate) fn mget(node: &Node, req: &Req) -> EsResult<Resp> {
    let default_index = req.part("index");
    let realtime = req.params.bool_or("realtime", true)?;
    let refresh = req.params.bool_or("refresh", false)?;
    let default_filter = match SourceFilter::from_params(&req.params)? {
        Some(f) => f,
        None => stored_fields_filter(&req.params).unwrap_or_else(SourceFilter::all),
    };
    let body = req
        .json_body()?
        .ok_or_else(|| EsError::parse("request body is required"))?;
    let obj = body
        .as_object()
        .ok_or_else(|| EsError::parse("Failed to derive xcontent"))?;
    struct DocReq {
        index: Option<String>,
        id: String,
        routing: Option<String>,
        filter: SourceFilter,
    }
    let default_routing = req.params.get("routing").map(str::to_string);
    let mut docs: Vec<DocReq> = Vec::new();
    for (k, v) in obj {
        match k.as_str() {
            "docs" => {
                let arr = v
                    .as_array()
                    .ok_or_else(|| EsError::parse("docs array element should include an object"))?;
                for d in arr {
                    let dm = d.as_object().ok_or_else(|| {
                        EsError::parse("docs array element should include an object")
                    })?;
                    let mut dr = DocReq {
                        index: default_index.map(str::to_string),
                        id: String::new(),
                        routing: default_routing.clone(),
                        filter: default_filter.clone(),
                    };
                    let mut has_id = false;
                    for (dk, dv) in dm {
                        match dk.as_str() {
                            "_index" => dr.index = dv.as_str().map(str::to_string),
                            "_id" => {
                                has_id = true;
                                dr.id = match dv {
                                    Value::String(s) => s.clone(),
                                    other => other.to_string(),
                                };
                            }
                            "_source" => dr.filter = SourceFilter::from_body(dv)?,
                            "routing" => {
                                dr.routing = Some(match dv {
                                    Value::String(s) => s.clone(),
                                    other => other.to_string(),
                                })
                            }
                            "_routing" | "version" | "version_type" | "stored_fields" | "_type" => {
                            }
                            other => {
                                return Err(EsError::parse(format!(
                                    "Unknown key for a {} in [{other}].",
                                    crate::json::token_name(dv)
                                )))
                            }
                        }
                    }
                    if !has_id {
                        return Err(EsError::validation(&[format!(
                            "id is missing for doc {}",
                            docs.len()
                        )]));
                    }
                    docs.push(dr);
                }
            }
            "ids" => {
                let arr = v
                    .as_array()
                    .ok_or_else(|| EsError::parse("ids array element should only contain ids"))?;
                for id in arr {
                    let id = match id {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        _ => {
                            return Err(EsError::parse("ids array element should only contain ids"))
                        }
                    };
                    docs.push(DocReq {
                        index: default_index.map(str::to_string),
                        id,
                        routing: default_routing.clone(),
                        filter: default_filter.clone(),
                    });
                }
            }
            other => {
                return Err(EsError::parse(format!(
                    "unknown key [{other}] for a {}, expected [docs] or [ids]",
                    crate::json::token_name(v)
                )))
            }
        }
    }
    if docs.is_empty() {
        return Err(EsError::validation(&["no documents to get".to_string()]));
    }
    let missing_index: Vec<String> = docs
        .iter()
        .enumerate()
        .filter(|(_, d)| d.index.is_none())
        .map(|(i, _)| format!("index is missing for doc {i}"))
        .collect();
    if !missing_index.is_empty() {
        return Err(EsError::validation(&missing_index));
    }
    let mut out = Vec::with_capacity(docs.len());
    for d in docs {
        let name = d.index.unwrap_or_default();
        match single_index_routed(node, &name, d.routing.as_deref()) {
            Ok((index, routing)) => {
                if refresh {
                    index.refresh();
                }
                let doc = fetch(&index, &d.id, routing.as_deref(), realtime);
                out.push(get_doc_json(&index, &d.id, doc.as_deref(), &d.filter));
            }
            Err(e) => {
                let mut o = Obj::default();
                o.val("_index", name);
                o.val("_id", d.id);
                o.val("error", e.inner_json(true));
                out.push(o);
            }
        }
    }
    let mut body = Obj::default();
    body.push("docs", Out::Objs(out));
    Ok(Resp::raw(200, body.to_vec()))
}
