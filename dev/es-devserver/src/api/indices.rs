//! Index APIs: create, delete, get, exists, refresh, mappings, settings, stats.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::api::aliases::parse_alias_body;
use crate::cluster::{IndexEntry, ResolveOpts, Resolved};
use crate::error::{EsError, EsResult};
use crate::index::Index;
use crate::mapping::parse_mapping;
use crate::names::{now_millis, resolve_date_math_name, validate_alias_name, validate_index_name};
use crate::node::{Node, Req, Resp, VERSION};
use crate::settings;

const INDEX_VERSION_CREATED: &str = "8536000";

/// Creates an index (explicitly or by auto-creation on first write).
pub(crate) fn create_index(
    node: &Node,
    name: &str,
    body: Option<&Value>,
    auto: bool,
) -> EsResult<Arc<Index>> {
    if auto && !node.cluster.meta.read().indices.contains_key(name) {
        node.check_auto_create(name)?;
    }
    validate_index_name(name)?;
    let mut flat = BTreeMap::new();
    let mut mapping = crate::mapping::Mapping::default();
    let mut aliases = BTreeMap::new();
    if let Some(body) = body {
        let obj = body
            .as_object()
            .ok_or_else(|| EsError::parse("Failed to derive xcontent"))?;
        for (k, v) in obj {
            match k.as_str() {
                "settings" => flat = settings::flatten(v)?,
                "mappings" => mapping = parse_mapping(v)?,
                "aliases" => {
                    let m = v
                        .as_object()
                        .ok_or_else(|| EsError::parse("aliases must be an object"))?;
                    for (alias, def) in m {
                        let alias_name = resolve_date_math_name(alias, now_millis())?;
                        validate_alias_name(&alias_name)?;
                        aliases.insert(alias_name.clone(), parse_alias_body(&alias_name, def)?);
                    }
                }
                other => {
                    return Err(EsError::parse(format!(
                        "unknown key [{other}] for create index"
                    )))
                }
            }
        }
    }
    settings::check_known(&flat)?;
    let eff = settings::effective(&flat)?;
    crate::field_checks::check_mapping_names(&mapping, eff.check.field_name_limit)?;
    let hidden = eff.hidden;
    let mut meta = node.cluster.meta.write();
    if let Some(existing) = meta.indices.get(name) {
        if auto {
            return Ok(existing.index.clone());
        }
        return Err(EsError::already_exists(name, &existing.index.uuid));
    }
    if meta.is_alias(name) {
        return Err(EsError::invalid_index_name(name, "already exists as alias"));
    }
    for (alias, a) in &aliases {
        if alias == name || meta.indices.contains_key(alias) {
            return Err(EsError::invalid_alias_name(
                alias,
                "an index or data stream exists with the same name as the alias",
            ));
        }
        if a.is_write_index == Some(true) {
            let others: Vec<&str> = meta
                .alias_indices(alias)
                .into_iter()
                .filter(|(_, _, m)| m.is_write_index == Some(true))
                .map(|(n, _, _)| n)
                .collect();
            if !others.is_empty() {
                return Err(EsError::illegal_argument(format!(
                    "alias [{alias}] has more than one write index [{},{name}]",
                    others.join(",")
                )));
            }
        }
    }
    let index = Arc::new(Index::new(name, flat, eff, mapping));
    meta.indices.insert(
        name.to_string(),
        IndexEntry {
            index: index.clone(),
            aliases,
            hidden,
        },
    );
    Ok(index)
}

/// `PUT /{index}`.
pub(crate) fn create(node: &Node, req: &Req) -> EsResult<Resp> {
    let raw = req.part("index").unwrap_or_default();
    let name = resolve_date_math_name(raw, now_millis())?;
    let body = req.json_body()?;
    if let Some(w) = req.params.get("wait_for_active_shards") {
        if w != "all" && w.parse::<u32>().is_err() {
            return Err(EsError::illegal_argument(format!(
                "could not parse [wait_for_active_shards] value [{w}]"
            )));
        }
    }
    create_index(node, &name, body.as_ref(), false)?;
    Ok(Resp::json(
        200,
        &json!({"acknowledged": true, "shards_acknowledged": true, "index": name}),
    ))
}

fn delete_opts(req: &Req) -> EsResult<ResolveOpts> {
    let mut o = ResolveOpts::strict_expand_open();
    o.forbid_aliases = true;
    o.wildcards_match_aliases = false;
    // Deleting by wildcard removes closed indices too, as in Elasticsearch.
    o.expand_closed = true;
    o.with_params(&req.params)
}

/// `DELETE /{index}`.
pub(crate) fn delete(node: &Node, req: &Req) -> EsResult<Resp> {
    let expr = req.part("index").unwrap_or_default();
    if node.destructive_requires_name() && expr.split(',').any(|p| p.contains('*') || p == "_all") {
        return Err(EsError::illegal_argument(
            "Wildcard expressions or all indices are not allowed",
        ));
    }
    let o = delete_opts(req)?;
    let mut meta = node.cluster.meta.write();
    let resolved = meta.resolve(expr, &o)?;
    for r in resolved {
        meta.indices.remove(&r.name);
    }
    Ok(Resp::json(200, &json!({"acknowledged": true})))
}

pub(crate) fn resolve(
    node: &Node,
    req: &Req,
    default_opts: ResolveOpts,
) -> EsResult<Vec<Resolved>> {
    let expr = req.part("index").unwrap_or("");
    let o = default_opts.with_params(&req.params)?;
    node.cluster.meta.read().resolve(expr, &o)
}

/// The full flat settings of an index, including the ones Elasticsearch adds.
pub(crate) fn full_settings(index: &Index) -> BTreeMap<String, Value> {
    let meta = index.meta.read();
    let mut flat = meta.flat.clone();
    flat.entry("index.number_of_shards".into())
        .or_insert_with(|| Value::from(meta.eff.shards.to_string()));
    flat.entry("index.number_of_replicas".into())
        .or_insert_with(|| Value::from(meta.eff.replicas.to_string()));
    flat.insert("index.uuid".into(), Value::from(index.uuid.as_str()));
    flat.insert(
        "index.creation_date".into(),
        Value::from(index.creation_date.to_string()),
    );
    flat.insert(
        "index.provided_name".into(),
        Value::from(index.name.as_str()),
    );
    flat.insert(
        "index.version.created".into(),
        Value::from(INDEX_VERSION_CREATED),
    );
    flat.insert(
        "index.routing.allocation.include._tier_preference".into(),
        Value::from("data_content"),
    );
    if index.is_closed() {
        flat.insert("index.verified_before_close".into(), Value::from("true"));
    }
    flat
}

fn settings_json(index: &Index, flat_settings: bool, filter: Option<&[String]>) -> Value {
    shape_settings(full_settings(index), flat_settings, filter)
}

/// `defaults` of `include_defaults=true`: the settings the index leaves at their default.
fn defaults_json(index: &Index, flat_settings: bool, filter: Option<&[String]>) -> Value {
    let defaults = crate::settings_defaults::defaults_for(&full_settings(index));
    shape_settings(defaults, flat_settings, filter)
}

fn shape_settings(
    mut flat: BTreeMap<String, Value>,
    flat_settings: bool,
    filter: Option<&[String]>,
) -> Value {
    if let Some(patterns) = filter {
        flat.retain(|k, _| {
            patterns.iter().any(|p| {
                crate::names::glob_match(p, k) || crate::names::glob_match(&format!("index.{p}"), k)
            })
        });
    }
    if flat_settings {
        Value::Object(flat.into_iter().collect())
    } else {
        settings::nest(&flat)
    }
}

fn aliases_json(entry: &IndexEntry) -> Value {
    let m: Map<String, Value> = entry
        .aliases
        .iter()
        .map(|(k, a)| (k.clone(), a.to_json()))
        .collect();
    Value::Object(m)
}

/// `GET /{index}`.
pub(crate) fn get(node: &Node, req: &Req) -> EsResult<Resp> {
    let resolved = resolve(node, req, ResolveOpts::strict_expand_open())?;
    let flat_settings = req.params.bool_or("flat_settings", false)?;
    let features = req.params.list("features");
    let include_defaults = req.params.bool_or("include_defaults", false)?;
    let want = |f: &str| features.as_ref().is_none_or(|fs| fs.iter().any(|x| x == f));
    let meta = node.cluster.meta.read();
    let mut out = Map::new();
    for r in resolved {
        let Some(entry) = meta.indices.get(&r.name) else {
            continue;
        };
        let mut m = Map::new();
        if want("aliases") {
            m.insert("aliases".into(), aliases_json(entry));
        }
        if want("mappings") {
            m.insert("mappings".into(), r.index.mapping().to_json());
        }
        if want("settings") {
            m.insert(
                "settings".into(),
                settings_json(&r.index, flat_settings, None),
            );
            if include_defaults {
                m.insert(
                    "defaults".into(),
                    defaults_json(&r.index, flat_settings, None),
                );
            }
        }
        out.insert(r.name.clone(), Value::Object(m));
    }
    Ok(Resp::json(200, &Value::Object(out)))
}

/// `HEAD /{index}`.
pub(crate) fn exists(node: &Node, req: &Req) -> EsResult<Resp> {
    let mut o = ResolveOpts::strict_expand_open();
    o.allow_no_indices = false;
    let found = resolve(node, req, o)
        .map(|r| !r.is_empty())
        .unwrap_or(false);
    let mut resp = Resp::empty(if found { 200 } else { 404 });
    if req.params.has("local") {
        resp = resp.with_warning(
            "the [?local] query parameter to this API has no effect, is now deprecated, and will be removed in a future version",
        );
    }
    Ok(resp)
}

/// `POST /{index}/_refresh`.
pub(crate) fn refresh(node: &Node, req: &Req) -> EsResult<Resp> {
    let resolved = resolve(node, req, ResolveOpts::strict_expand_open_forbid_closed())?;
    let (mut total, mut ok) = (0u64, 0u64);
    for r in &resolved {
        r.index.refresh();
        let shards = u64::from(r.index.shards());
        total += shards * (1 + u64::from(r.index.replicas()));
        ok += shards;
    }
    Ok(Resp::json(
        200,
        &json!({"_shards": {"total": total, "successful": ok, "failed": 0}}),
    ))
}

/// `POST /{index}/_close`.
pub(crate) fn close(node: &Node, req: &Req) -> EsResult<Resp> {
    let expr = req.part("index").unwrap_or("");
    if node.destructive_requires_name()
        && (expr.is_empty() || expr == "_all" || expr.split(',').any(crate::names::is_wildcard))
    {
        return Err(EsError::illegal_argument(
            "Wildcard expressions or all indices are not allowed",
        ));
    }
    let resp_warning = wait_for_active_shards_warning(req);
    let resolved = resolve(node, req, ResolveOpts::strict_expand_open())?;
    let mut indices = Map::new();
    for r in &resolved {
        // Elasticsearch flushes on close: everything written is searchable once reopened.
        r.index.refresh();
        r.index
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        indices.insert(r.name.clone(), json!({"closed": true}));
    }
    let resp = Resp::json(
        200,
        &json!({"acknowledged": true, "shards_acknowledged": true, "indices": indices}),
    );
    Ok(match resp_warning {
        Some(w) => resp.with_warning(w),
        None => resp,
    })
}

/// `POST /{index}/_open`.
pub(crate) fn open(node: &Node, req: &Req) -> EsResult<Resp> {
    let resp_warning = wait_for_active_shards_warning(req);
    // Open's wildcards expand to closed indices by default.
    let mut o = ResolveOpts::strict_expand_open();
    o.expand_open = false;
    o.expand_closed = true;
    let resolved = resolve(node, req, o)?;
    for r in &resolved {
        r.index
            .closed
            .store(false, std::sync::atomic::Ordering::Release);
    }
    let resp = Resp::json(
        200,
        &json!({"acknowledged": true, "shards_acknowledged": true}),
    );
    Ok(match resp_warning {
        Some(w) => resp.with_warning(w),
        None => resp,
    })
}

fn wait_for_active_shards_warning(req: &Req) -> Option<&'static str> {
    (req.params.get("wait_for_active_shards") == Some("index-setting")).then_some(
        "?wait_for_active_shards=index-setting is now the default behaviour; the 'index-setting' value for this parameter should no longer be used since it will become unsupported in version 9",
    )
}

/// `GET /{index}/_mapping`.
pub(crate) fn get_mapping(node: &Node, req: &Req) -> EsResult<Resp> {
    let resolved = resolve(node, req, ResolveOpts::strict_expand_open())?;
    let mut out = Map::new();
    for r in resolved {
        out.insert(
            r.name.clone(),
            json!({"mappings": r.index.mapping().to_json()}),
        );
    }
    Ok(Resp::json(200, &Value::Object(out)))
}

/// `PUT /{index}/_mapping`.
pub(crate) fn put_mapping(node: &Node, req: &Req) -> EsResult<Resp> {
    let body = req
        .json_body()?
        .ok_or_else(|| EsError::parse("request body is required"))?;
    let update = parse_mapping(&body)?;
    let resolved = resolve(node, req, ResolveOpts::strict_expand_open())?;
    // Check every index first so the update is all or nothing.
    let mut merged = Vec::new();
    for r in &resolved {
        let mut m = (*r.index.mapping()).clone();
        m.merge(&update)?;
        let limit = r.index.meta.read().eff.check.field_name_limit;
        crate::field_checks::check_mapping_names(&m, limit)?;
        merged.push(m);
    }
    for (r, m) in resolved.iter().zip(merged) {
        let mut d = r.index.data.write();
        let mut cur = (**d.mapping()).clone();
        cur.merge(&update)?;
        let _ = m;
        d.set_mapping(cur);
    }
    Ok(Resp::json(200, &json!({"acknowledged": true})))
}

/// `GET /{index}/_settings[/{name}]`.
pub(crate) fn get_settings(node: &Node, req: &Req) -> EsResult<Resp> {
    let resolved = resolve(node, req, ResolveOpts::strict_expand_open())?;
    let flat_settings = req.params.bool_or("flat_settings", false)?;
    let names: Option<Vec<String>> = req
        .part("name")
        .map(|n| n.split(',').map(str::to_string).collect());
    let include_defaults = req.params.bool_or("include_defaults", false)?;
    let mut out = Map::new();
    for r in resolved {
        let mut entry =
            json!({"settings": settings_json(&r.index, flat_settings, names.as_deref())});
        if include_defaults {
            if let Value::Object(m) = &mut entry {
                m.insert(
                    "defaults".into(),
                    defaults_json(&r.index, flat_settings, names.as_deref()),
                );
            }
        }
        out.insert(r.name.clone(), entry);
    }
    Ok(Resp::json(200, &Value::Object(out)))
}

/// `PUT /{index}/_settings`.
pub(crate) fn put_settings(node: &Node, req: &Req) -> EsResult<Resp> {
    let body = req
        .json_body()?
        .ok_or_else(|| EsError::parse("request body is required"))?;
    let inner = match body.get("settings") {
        Some(s) if body.as_object().is_some_and(|m| m.len() == 1) => s.clone(),
        _ => body,
    };
    let changes = settings::flatten(&inner)?;
    if changes.is_empty() {
        return Err(EsError::validation(&["no settings to update".to_string()]));
    }
    settings::check_known(&changes)?;
    let resolved = resolve(node, req, ResolveOpts::strict_expand_open())?;
    let preserve = req.params.bool_or("preserve_existing", false)?;
    // Static settings need a closed index, or `reopen=true` (close, update, reopen).
    let reopen = req.params.bool_or("reopen", false)?;
    let statics: Vec<&String> = changes
        .keys()
        .filter(|k| settings::is_static_setting(k) && !settings::is_final_setting(k))
        .collect();
    let open: Vec<String> = resolved
        .iter()
        .filter(|r| !r.index.is_closed())
        .map(|r| format!("{}/{}", r.name, r.index.uuid))
        .collect();
    if !statics.is_empty() && !reopen && !open.is_empty() {
        let names: Vec<String> = statics.iter().map(|s| s.to_string()).collect();
        return Err(EsError::illegal_argument(format!(
            "Can't update non dynamic settings [[{}]] for open indices [[{}]]",
            names.join(", "),
            open.join(", ")
        )));
    }
    let finals: Vec<&String> = changes
        .keys()
        .filter(|k| settings::is_final_setting(k))
        .collect();
    if !finals.is_empty() {
        let names: Vec<String> = finals.iter().map(|s| s.to_string()).collect();
        let idx: Vec<String> = resolved
            .iter()
            .map(|r| format!("{}/{}", r.name, r.index.uuid))
            .collect();
        return Err(EsError::illegal_argument(format!(
            "Can't update non dynamic settings [[{}]] for open indices [[{}]]",
            names.join(", "),
            idx.join(", ")
        )));
    }
    // Validate on copies, then apply.
    let mut updated = Vec::new();
    for r in &resolved {
        let mut flat = r.index.meta.read().flat.clone();
        for (k, v) in &changes {
            if v.is_null() {
                flat.remove(k);
            } else if !(preserve && flat.contains_key(k)) {
                flat.insert(k.clone(), v.clone());
            }
        }
        let eff = settings::effective(&flat)?;
        updated.push((flat, eff));
    }
    let mut meta = node.cluster.meta.write();
    for (r, (flat, eff)) in resolved.iter().zip(updated) {
        let hidden = eff.hidden;
        {
            let mut m = r.index.meta.write();
            m.flat = flat;
            m.eff = eff;
        }
        r.index.settings_changed();
        if let Some(e) = meta.indices.get_mut(&r.name) {
            e.hidden = hidden;
        }
    }
    Ok(Resp::json(200, &json!({"acknowledged": true})))
}

fn index_stats_json(index: &Index) -> Value {
    let s = &index.stats;
    let d = index.data.read();
    let docs = d.visible_count();
    json!({
        "docs": {"count": docs, "deleted": 0, "total_size_in_bytes": 0},
        "store": {"size_in_bytes": 0, "total_data_set_size_in_bytes": 0, "reserved_in_bytes": 0},
        "indexing": {
            "index_total": s.index_total.load(Ordering::Relaxed),
            "index_time_in_millis": 0,
            "index_current": 0,
            "index_failed": 0,
            "delete_total": s.delete_total.load(Ordering::Relaxed),
            "delete_time_in_millis": 0,
            "delete_current": 0,
            "noop_update_total": s.noop_update_total.load(Ordering::Relaxed),
            "is_throttled": false,
            "throttle_time_in_millis": 0
        },
        "get": {"total": s.get_total.load(Ordering::Relaxed), "time_in_millis": 0, "exists_total": 0, "exists_time_in_millis": 0, "missing_total": 0, "missing_time_in_millis": 0, "current": 0},
        "search": {"open_contexts": 0, "query_total": s.query_total.load(Ordering::Relaxed), "query_time_in_millis": 0, "query_current": 0, "fetch_total": 0, "fetch_time_in_millis": 0, "fetch_current": 0},
        "refresh": {"total": s.refresh_total.load(Ordering::Relaxed), "total_time_in_millis": 0, "external_total": s.refresh_total.load(Ordering::Relaxed), "external_total_time_in_millis": 0, "listeners": 0},
        "seq_no": {"max_seq_no": d.max_seq_no(), "local_checkpoint": d.max_seq_no(), "global_checkpoint": d.max_seq_no()}
    })
}

fn add_stats(total: &mut Value, part: &Value) {
    match (total, part) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                match t.get_mut(k) {
                    Some(tv) => add_stats(tv, v),
                    None => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Number(t), Value::Number(p)) => {
            if let (Some(a), Some(b)) = (t.as_i64(), p.as_i64()) {
                *t = serde_json::Number::from(a.saturating_add(b));
            }
        }
        _ => {}
    }
}

/// `GET /{index}/_stats`.
pub(crate) fn stats(node: &Node, req: &Req) -> EsResult<Resp> {
    let resolved = resolve(node, req, ResolveOpts::strict_expand_open())?;
    let mut all = json!({});
    let mut indices = Map::new();
    let (mut total_shards, mut ok_shards) = (0u64, 0u64);
    for r in &resolved {
        let s = index_stats_json(&r.index);
        add_stats(&mut all, &s);
        let shards = u64::from(r.index.shards());
        total_shards += shards * (1 + u64::from(r.index.replicas()));
        ok_shards += shards;
        let health = super::health::index_status(&r.index).name();
        indices.insert(
            r.name.clone(),
            json!({"uuid": r.index.uuid, "health": health, "status": "open", "primaries": s.clone(), "total": s}),
        );
    }
    let body = json!({
        "_shards": {"total": total_shards, "successful": ok_shards, "failed": 0},
        "_all": {"primaries": all.clone(), "total": all},
        "indices": indices,
    });
    let _ = VERSION;
    Ok(Resp::json(200, &body))
}
