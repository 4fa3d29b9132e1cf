//! Alias APIs: `POST /_aliases` (atomic), get, exists, put and delete.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::cluster::{AliasMeta, Metadata, ResolveOpts};
use crate::error::{EsError, EsResult};
use crate::json::token_name;
use crate::names::{
    glob_match, is_wildcard, now_millis, resolve_date_math_name, validate_alias_name,
};
use crate::node::{Node, Req, Resp};

fn routing_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn bool_val(v: &Value, field: &str) -> EsResult<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        other => Err(EsError::illegal_argument(format!(
            "Failed to parse value [{}] as only [true] or [false] are allowed.",
            match other {
                Value::String(s) => s.clone(),
                o => o.to_string(),
            }
        ))
        .caused_by(EsError::illegal_argument(format!("[{field}]")))),
    }
}

fn validate_filter(alias: &str, f: &Value) -> EsResult<()> {
    crate::query::parse_query(f).map(|_| ()).map_err(|e| {
        EsError::illegal_argument(format!("failed to parse filter for alias [{alias}]"))
            .caused_by(e)
    })
}

/// Applies one alias property (`filter`, `routing`, ...) to an alias definition.
fn apply_prop(a: &mut AliasMeta, alias: &str, k: &str, v: &Value) -> EsResult<bool> {
    match k {
        "filter" => {
            if v.is_null() {
                a.filter = None;
            } else {
                validate_filter(alias, v)?;
                a.filter = Some(v.clone());
            }
        }
        "routing" => {
            a.index_routing = routing_str(v);
            a.search_routing = routing_str(v);
        }
        "index_routing" => a.index_routing = routing_str(v),
        "search_routing" => a.search_routing = routing_str(v),
        "is_write_index" => {
            a.is_write_index = if v.is_null() {
                None
            } else {
                Some(bool_val(v, k)?)
            }
        }
        "is_hidden" => {
            a.is_hidden = if v.is_null() {
                None
            } else {
                Some(bool_val(v, k)?)
            }
        }
        _ => return Ok(false),
    }
    if let Some(r) = &a.index_routing {
        if r.contains(',') {
            return Err(EsError::illegal_argument(format!(
                "alias [{alias}] has several index routing values associated with it"
            )));
        }
    }
    Ok(true)
}

/// Alias properties with `routing` first, so that the specific `index_routing` and
/// `search_routing` win over it whatever their order in the request.
fn routing_first(m: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut v: Vec<(&String, &Value)> = m.iter().collect();
    v.sort_by_key(|(k, _)| k.as_str() != "routing");
    v
}

/// Parses the body of an alias definition (`{"filter":..,"routing":..}`).
pub(crate) fn parse_alias_body(alias: &str, def: &Value) -> EsResult<AliasMeta> {
    let mut a = AliasMeta::default();
    match def {
        Value::Null => {}
        Value::Object(m) => {
            for (k, v) in routing_first(m) {
                if !apply_prop(&mut a, alias, k, v)? {
                    return Err(EsError::parse(format!("unknown field [{k}]")));
                }
            }
        }
        other => {
            return Err(EsError::parse(format!(
                "Failed to parse alias [{alias}]: expected START_OBJECT but found [{}]",
                token_name(other)
            )))
        }
    }
    Ok(a)
}

fn str_list(v: &Value, what: &str) -> EsResult<Vec<String>> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| EsError::x_content_parse(format!("[{what}] expected strings")))
            })
            .collect(),
        other => Err(EsError::x_content_parse(format!(
            "[{what}] unexpected token [{}]",
            token_name(other)
        ))),
    }
}

fn check_write_indices(meta: &Metadata) -> EsResult<()> {
    let mut by_alias: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, e) in &meta.indices {
        for (alias, a) in &e.aliases {
            if a.is_write_index == Some(true) {
                by_alias
                    .entry(alias.as_str())
                    .or_default()
                    .push(name.as_str());
            }
        }
    }
    for (alias, idx) in by_alias {
        if idx.len() > 1 {
            return Err(EsError::illegal_argument(format!(
                "alias [{alias}] has more than one write index [{}]",
                idx.join(",")
            )));
        }
    }
    Ok(())
}

fn concrete_indices(
    meta: &Metadata,
    exprs: &[String],
    for_remove_index: bool,
) -> EsResult<Vec<String>> {
    let mut out = Vec::new();
    for e in exprs {
        let e = resolve_date_math_name(e, now_millis())?;
        if is_wildcard(&e) || e == "_all" {
            for name in meta.indices.keys() {
                if e == "_all" || glob_match(&e, name) {
                    out.push(name.clone());
                }
            }
            continue;
        }
        if meta.indices.contains_key(&e) {
            out.push(e);
            continue;
        }
        let targets = meta.alias_indices(&e);
        if !targets.is_empty() {
            if for_remove_index {
                return Err(EsError::illegal_argument(format!(
                    "The provided expression [{e}] matches an alias, specify the corresponding concrete indices instead."
                )));
            }
            out.extend(targets.into_iter().map(|(n, _, _)| n.to_string()));
            continue;
        }
        return Err(EsError::index_not_found(&e));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn aliases_not_found(names: &[String]) -> EsError {
    let mut sorted = names.to_vec();
    sorted.sort();
    let joined = sorted.join(",");
    EsError::new(
        404,
        "aliases_not_found_exception",
        format!("aliases [{joined}] missing"),
    )
    .with_meta("resource.type", "aliases")
    .with_meta("resource.id", joined)
}

/// `POST /_aliases`.
pub(crate) fn update_aliases(node: &Node, req: &Req) -> EsResult<Resp> {
    let body = req
        .json_body()?
        .ok_or_else(|| EsError::parse("request body is required"))?;
    let obj = body
        .as_object()
        .ok_or_else(|| EsError::parse("Failed to derive xcontent"))?;
    let mut actions = Vec::new();
    for (k, v) in obj {
        if k != "actions" {
            return Err(EsError::x_content_parse(format!(
                "[1:2] [aliases] unknown field [{k}]"
            )));
        }
        match v {
            Value::Array(a) => actions.extend(a.iter().cloned()),
            Value::Object(_) => actions.push(v.clone()),
            other => {
                return Err(EsError::x_content_parse(format!(
                    "[1:2] [aliases] actions doesn't support values of type: {}",
                    token_name(other)
                )))
            }
        }
    }
    if actions.is_empty() {
        return Err(EsError::validation(&[
            "Must specify at least one alias action".to_string(),
        ]));
    }
    struct Act {
        kind: String,
        indices: Vec<String>,
        aliases: Vec<String>,
        props: Map<String, Value>,
        must_exist: Option<bool>,
    }
    let mut parsed = Vec::new();
    for a in &actions {
        let m = a
            .as_object()
            .ok_or_else(|| EsError::x_content_parse("[1:2] [alias_action] expected an object"))?;
        let Some((kind, def)) = m.iter().next() else {
            return Err(EsError::x_content_parse(
                "[1:2] [alias_action] expected an action",
            ));
        };
        if !matches!(kind.as_str(), "add" | "remove" | "remove_index") {
            return Err(EsError::x_content_parse(format!(
                "[1:2] [alias_action] unknown field [{kind}]"
            )));
        }
        let dm = def.as_object().ok_or_else(|| {
            EsError::x_content_parse(format!("[1:2] [{kind}] expected an object"))
        })?;
        let mut act = Act {
            kind: kind.clone(),
            indices: vec![],
            aliases: vec![],
            props: Map::new(),
            must_exist: None,
        };
        for (k, v) in dm {
            match k.as_str() {
                "must_exist" if kind != "remove" => {
                    return Err(EsError::illegal_argument(format!(
                        "[must_exist] is unsupported for [{}]",
                        kind.to_uppercase()
                    )));
                }
                "index" => act.indices.push(
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| EsError::x_content_parse("[index] must be a string"))?,
                ),
                "indices" => act.indices.extend(str_list(v, k)?),
                "alias" => act.aliases.push(
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| EsError::x_content_parse("[alias] must be a string"))?,
                ),
                "aliases" => act.aliases.extend(str_list(v, k)?),
                "must_exist" => act.must_exist = Some(bool_val(v, k)?),
                "filter" | "routing" | "index_routing" | "search_routing" | "is_write_index"
                | "is_hidden"
                    if kind == "add" =>
                {
                    act.props.insert(k.clone(), v.clone());
                }
                other => {
                    return Err(EsError::x_content_parse(format!(
                        "[1:2] [{kind}] unknown field [{other}]"
                    )));
                }
            }
        }
        let mut errs = Vec::new();
        if act.indices.is_empty() {
            errs.push("One of [index] or [indices] is required".to_string());
        }
        if kind != "remove_index" && act.aliases.is_empty() {
            errs.push("One of [alias] or [aliases] is required".to_string());
        }
        if !errs.is_empty() {
            return Err(EsError::validation(&errs));
        }
        parsed.push(act);
    }
    let mut meta = node.cluster.meta.write();
    let mut next = meta.clone();
    // Index removals first, so an index can be replaced by an alias of the same name.
    for act in parsed.iter().filter(|a| a.kind == "remove_index") {
        for name in concrete_indices(&next, &act.indices, true)? {
            next.indices.remove(&name);
        }
    }
    // Per-action results (Elasticsearch 8.14+): a `remove` of a missing alias without
    // `must_exist` fails only that action; the response then says `errors: true`.
    let mut results: Vec<Value> = Vec::new();
    let mut any_error = false;
    for act in parsed.iter().filter(|a| a.kind == "remove_index") {
        results.push(json!({
            "action": {"type": "remove_index", "indices": act.indices, "aliases": []},
            "status": 200,
        }));
    }
    for act in parsed.iter().filter(|a| a.kind != "remove_index") {
        let targets = concrete_indices(&next, &act.indices, false)?;
        let mut result = Map::new();
        result.insert(
            "action".into(),
            json!({"type": act.kind, "indices": targets, "aliases": act.aliases}),
        );
        result.insert("status".into(), json!(200));
        match act.kind.as_str() {
            "add" => {
                for alias in &act.aliases {
                    let alias = resolve_date_math_name(alias, now_millis())?;
                    validate_alias_name(&alias)?;
                    if next.indices.contains_key(&alias) {
                        return Err(EsError::invalid_alias_name(
                            &alias,
                            "an index or data stream exists with the same name as the alias",
                        ));
                    }
                    let mut meta_a = AliasMeta::default();
                    for (k, v) in routing_first(&act.props) {
                        apply_prop(&mut meta_a, &alias, k, v)?;
                    }
                    for t in &targets {
                        if let Some(e) = next.indices.get_mut(t) {
                            e.aliases.insert(alias.clone(), meta_a.clone());
                        }
                    }
                }
            }
            _ => {
                let mut removed_any = false;
                let mut missing = Vec::new();
                for pattern in &act.aliases {
                    let mut found = false;
                    for t in &targets {
                        if let Some(e) = next.indices.get_mut(t) {
                            let keys: Vec<String> = e
                                .aliases
                                .keys()
                                .filter(|a| pattern == "_all" || glob_match(pattern, a))
                                .cloned()
                                .collect();
                            for k in keys {
                                e.aliases.remove(&k);
                                found = true;
                            }
                        }
                    }
                    if found {
                        removed_any = true;
                    } else {
                        missing.push(pattern.clone());
                    }
                }
                let must_exist = act.must_exist.unwrap_or(false);
                if must_exist && !missing.is_empty() {
                    return Err(aliases_not_found(&missing));
                }
                if !removed_any {
                    let e = aliases_not_found(&missing);
                    any_error = true;
                    result.insert("status".into(), json!(e.status));
                    result.insert("error".into(), e.inner_json(true));
                }
            }
        }
        results.push(Value::Object(result));
    }
    check_write_indices(&next)?;
    *meta = next;
    let mut body = Map::new();
    body.insert("acknowledged".into(), Value::Bool(true));
    body.insert("errors".into(), Value::Bool(any_error));
    if any_error {
        body.insert("action_results".into(), Value::Array(results));
    }
    Ok(Resp::json(200, &Value::Object(body)))
}

/// Parsed `{name}` of alias APIs.
struct NameFilter {
    all: bool,
    patterns: Vec<String>,
}

impl NameFilter {
    fn new(name: Option<&str>) -> NameFilter {
        match name {
            None => NameFilter {
                all: true,
                patterns: vec![],
            },
            Some(n) => {
                let patterns: Vec<String> = n
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                let all = patterns.iter().any(|p| p == "_all" || p == "*");
                NameFilter { all, patterns }
            }
        }
    }

    fn matches(&self, alias: &str) -> bool {
        if self.all {
            return true;
        }
        let mut result = false;
        // `-name` excludes only after a wildcard; before one it is a plain alias name.
        let mut seen_wildcard = false;
        for p in &self.patterns {
            match p.strip_prefix('-') {
                Some(ex) if seen_wildcard => {
                    if glob_match(ex, alias) {
                        result = false;
                    }
                }
                _ => {
                    seen_wildcard |= is_wildcard(p);
                    if glob_match(p, alias) {
                        result = true;
                    }
                }
            }
        }
        result
    }

    /// Concrete (non-wildcard) names.
    fn explicit(&self) -> Vec<&str> {
        let mut seen_wildcard = false;
        let mut out = Vec::new();
        for p in &self.patterns {
            if is_wildcard(p) {
                seen_wildcard = true;
            } else if p != "_all" && !(seen_wildcard && p.starts_with('-')) {
                out.push(p.as_str());
            }
        }
        out
    }
}

fn alias_indices_for(node: &Node, req: &Req) -> EsResult<Vec<String>> {
    match req.part("index") {
        None => Ok(node
            .cluster
            .meta
            .read()
            .indices
            .iter()
            .filter(|(_, e)| !e.hidden)
            .map(|(n, _)| n.clone())
            .collect()),
        Some(expr) => {
            let o = ResolveOpts::strict_expand_open().with_params(&req.params)?;
            Ok(node
                .cluster
                .meta
                .read()
                .resolve(expr, &o)?
                .into_iter()
                .map(|r| r.name)
                .collect())
        }
    }
}

/// `GET /_alias`, `/_alias/{name}`, `/{index}/_alias`, `/{index}/_alias/{name}`.
pub(crate) fn get_alias(node: &Node, req: &Req) -> EsResult<Resp> {
    let indices = alias_indices_for(node, req)?;
    let name = req.part("name");
    let filter = NameFilter::new(name);
    let meta = node.cluster.meta.read();
    let mut out = Map::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for idx in &indices {
        let Some(e) = meta.indices.get(idx) else {
            continue;
        };
        let matched: Map<String, Value> = e
            .aliases
            .iter()
            .filter(|(a, _)| filter.matches(a))
            .map(|(a, m)| {
                seen.insert(a.clone());
                (a.clone(), m.to_json())
            })
            .collect();
        if name.is_none() || !matched.is_empty() {
            out.insert(idx.clone(), json!({ "aliases": matched }));
        }
    }
    let mut missing: Vec<&str> = filter
        .explicit()
        .into_iter()
        .filter(|n| !seen.contains(*n))
        .collect();
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        let msg = if missing.len() == 1 {
            format!("alias [{}] missing", missing.join(","))
        } else {
            format!("aliases [{}] missing", missing.join(","))
        };
        let mut body = Map::new();
        body.insert("error".into(), Value::from(msg));
        body.insert("status".into(), Value::from(404));
        body.extend(out);
        return Ok(Resp::json(404, &Value::Object(body)));
    }
    Ok(Resp::json(200, &Value::Object(out)))
}

/// `HEAD /_alias/{name}`, `HEAD /{index}/_alias/{name}`.
pub(crate) fn exists_alias(node: &Node, req: &Req) -> EsResult<Resp> {
    let indices = match alias_indices_for(node, req) {
        Ok(i) => i,
        Err(e) => return Ok(Resp::empty(e.status)),
    };
    let filter = NameFilter::new(req.part("name"));
    let meta = node.cluster.meta.read();
    let found = indices
        .iter()
        .filter_map(|i| meta.indices.get(i))
        .any(|e| e.aliases.keys().any(|a| filter.matches(a)));
    Ok(Resp::empty(if found { 200 } else { 404 }))
}

/// `PUT /{index}/_alias/{name}`.
pub(crate) fn put_alias(node: &Node, req: &Req) -> EsResult<Resp> {
    let alias = resolve_date_math_name(req.part("name").unwrap_or_default(), now_millis())?;
    validate_alias_name(&alias)?;
    let def = req.json_body()?.unwrap_or(Value::Null);
    let a = parse_alias_body(&alias, &def)?;
    let expr = req.part("index").unwrap_or_default();
    let mut meta = node.cluster.meta.write();
    let exprs: Vec<String> = expr.split(',').map(str::to_string).collect();
    let targets = concrete_indices(&meta, &exprs, false)?;
    if meta.indices.contains_key(&alias) {
        return Err(EsError::invalid_alias_name(
            &alias,
            "an index or data stream exists with the same name as the alias",
        ));
    }
    let mut next = meta.clone();
    for t in &targets {
        if let Some(e) = next.indices.get_mut(t) {
            e.aliases.insert(alias.clone(), a.clone());
        }
    }
    check_write_indices(&next)?;
    *meta = next;
    Ok(Resp::json(
        200,
        &json!({"acknowledged": true, "errors": false}),
    ))
}

/// `DELETE /{index}/_alias/{name}`.
pub(crate) fn delete_alias(node: &Node, req: &Req) -> EsResult<Resp> {
    let filter = NameFilter::new(req.part("name"));
    let expr = req.part("index").unwrap_or_default();
    let mut meta = node.cluster.meta.write();
    let exprs: Vec<String> = expr.split(',').map(str::to_string).collect();
    let targets = concrete_indices(&meta, &exprs, false)?;
    let mut removed = false;
    for t in &targets {
        if let Some(e) = meta.indices.get_mut(t) {
            let keys: Vec<String> = e
                .aliases
                .keys()
                .filter(|a| filter.matches(a))
                .cloned()
                .collect();
            for k in keys {
                e.aliases.remove(&k);
                removed = true;
            }
        }
    }
    if !removed {
        let names: Vec<String> = filter.patterns.clone();
        return Err(aliases_not_found(&names));
    }
    Ok(Resp::json(
        200,
        &json!({"acknowledged": true, "errors": false}),
    ))
}
