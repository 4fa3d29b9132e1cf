//! `_bulk` execution: per-item results and errors as Elasticsearch reports them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::api::docs::{apply_update_locked, pipeline_error, validate_id};
use crate::api::{refresh_param, write_index, Refresh};
use crate::bulk::{parse_bulk, Action, BulkDefaults, BulkItem};
use crate::error::{EsError, EsResult};
use crate::index::{Index, IndexData, Prepared, VersionType, WriteOp, WriteOutcome, WriteResult};
use crate::json::{write_i64, write_key, write_str};
use crate::mapping::{check_source_with, Mapping};
use crate::node::{Node, Req, Resp};

enum Outcome {
    Ok(Action, Arc<Index>, String, WriteOutcome, (u64, u64)),
    Err(Action, Option<String>, Option<String>, EsError),
}

struct Planned<'a> {
    item: BulkItem<'a>,
    target: Result<(Arc<Index>, Option<String>), EsError>,
    id: Option<String>,
    prepared: Option<Result<Prepared, EsError>>,
}

pub(crate) fn bulk(node: &Node, req: &Req) -> EsResult<Resp> {
    let start = Instant::now();
    if !req.has_body() {
        return Err(EsError::parse("request body is required"));
    }
    let defaults = BulkDefaults {
        index: req.part("index").map(str::to_string),
        routing: req.params.get("routing").map(str::to_string),
        require_alias: req.params.bool_or("require_alias", false)?,
        pipeline: req.params.get("pipeline").map(str::to_string),
    };
    let refresh = refresh_param(req.params.get("refresh"))?;
    let items = parse_bulk(&req.body, &defaults)?;
    node.faults.count_bulk_items(items.len() as u64);
    // Request validation (BulkRequest.validate): any invalid item fails the whole request.
    let mut errors = Vec::new();
    if items.is_empty() {
        errors.push("no requests added".to_string());
    }
    for item in &items {
        if item.index.is_none() {
            errors.push("index is missing".to_string());
        }
        match item.action {
            Action::Index | Action::Create => {
                if item.source.is_none_or(|s| s.is_empty()) {
                    errors.push("source is missing".to_string());
                }
                if let Some(id) = &item.id {
                    if id.len() > 512 {
                        errors.push(format!(
                            "id [{id}] is too long, must be no longer than 512 bytes but was: {}",
                            id.len()
                        ));
                    }
                }
                errors.extend(
                    item.versioning
                        .validation_errors(item.action == Action::Create, item.id.is_some()),
                );
            }
            Action::Delete => {
                if item.id.is_none() {
                    errors.push("id is missing".to_string());
                }
                errors.extend(item.versioning.validation_errors(false, true));
            }
            Action::Update => {
                if item.id.is_none() {
                    errors.push("id is missing".to_string());
                }
                let u = item.update.as_ref();
                let has_doc = u.and_then(|u| u.get("doc")).is_some();
                let has_script = u.and_then(|u| u.get("script")).is_some();
                if !has_doc && !has_script {
                    errors.push("script or doc is missing".to_string());
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(EsError::validation(&errors));
    }

    // Phase 1: resolve targets (creating indices) and check sources against the mappings,
    // without holding any index lock.
    let now = Instant::now();
    let mut targets: HashMap<(String, bool, bool), Result<(Arc<Index>, Option<String>), EsError>> =
        HashMap::new();
    // Each index's mapping snapshot, and whether earlier items add fields to it.
    let mut mappings: Vec<(Arc<Index>, Arc<Mapping>, u64, bool)> = Vec::new();
    let mut planned: Vec<Option<Planned<'_>>> = Vec::with_capacity(items.len());
    for item in items {
        let name = item.index.clone().unwrap_or_default();
        let creates = match item.action {
            Action::Delete => item.versioning.version_type != VersionType::Internal,
            _ => true,
        };
        let key = (name.clone(), item.require_alias, creates);
        let target = targets
            .entry(key)
            .or_insert_with(|| {
                if creates {
                    write_index(node, &name, item.require_alias)
                } else {
                    // Deletes with internal versioning do not create the index.
                    let exists = node.cluster.meta.read().write_target(&name);
                    match exists {
                        crate::cluster::WriteTarget::Missing => {
                            Err(EsError::index_not_found(&name))
                        }
                        _ => write_index(node, &name, item.require_alias),
                    }
                }
            })
            .clone();
        let mut id = item.id.clone();
        let mut prepared = None;
        if let (Ok((index, _)), Action::Index | Action::Create) = (&target, item.action) {
            if id.is_none() {
                id = Some(crate::util::auto_id());
            }
            let doc_id = id.clone().unwrap_or_default();
            let slot = match mappings
                .iter()
                .position(|(i, _, _, _)| Arc::ptr_eq(i, index))
            {
                Some(p) => p,
                None => {
                    let (m, g) = index.mapping_snapshot();
                    mappings.push((index.clone(), m, g, false));
                    mappings.len() - 1
                }
            };
            let (mapping, gen, extended) = mappings
                .get(slot)
                .map(|(_, m, g, d)| (m.clone(), *g, *d))
                .unwrap_or_else(|| {
                    let (m, g) = index.mapping_snapshot();
                    (m, g, false)
                });
            let result = item.source.map_or_else(
                || Err(EsError::validation(&["source is missing".to_string()])),
                |s| {
                    let opts = index.meta.read().eff.check;
                    let named = item.dynamic_templates.clone().map(Arc::new);
                    match check_source_with(&mapping, &opts, named.as_deref(), s, &doc_id) {
                        Ok(updates) => {
                            index.meta.read().eff.doc_limits.check(&mapping, s)?;
                            Ok(Prepared {
                                updates,
                                mapping_gen: gen,
                                named,
                                recheck: false,
                            })
                        }
                        // Earlier items map new fields first (as Elasticsearch applies
                        // items in order): decide under the lock.
                        Err(_) if extended => Ok(Prepared {
                            updates: Vec::new(),
                            mapping_gen: gen,
                            named,
                            recheck: true,
                        }),
                        Err(e) => Err(e),
                    }
                },
            );
            if result.as_ref().is_ok_and(|p| !p.updates.is_empty()) {
                if let Some(m) = mappings.get_mut(slot) {
                    m.3 = true;
                }
            }
            prepared = Some(result);
        }
        planned.push(Some(Planned {
            item,
            target,
            id,
            prepared,
        }));
    }

    // Phase 2: apply in order, holding each index's lock for a run of items.
    let mut outcomes = Vec::with_capacity(planned.len());
    let mut touched: Vec<Arc<Index>> = Vec::new();
    let mut i = 0;
    while i < planned.len() {
        let Some(first) = planned.get_mut(i).and_then(Option::take) else {
            i += 1;
            continue;
        };
        let index = match &first.target {
            Ok((idx, _)) => idx.clone(),
            Err(e) => {
                let e = e.clone();
                outcomes.push(Outcome::Err(
                    first.item.action,
                    first.item.index.clone(),
                    first.id.clone(),
                    e,
                ));
                i += 1;
                continue;
            }
        };
        let shards = index.write_shards();
        let mut data = index.data.write();
        let mut run = vec![first];
        let mut j = i + 1;
        while let Some(slot) = planned.get_mut(j) {
            let same = matches!(slot, Some(p) if matches!(&p.target, Ok((idx, _)) if Arc::ptr_eq(idx, &index)));
            if !same {
                break;
            }
            if let Some(p) = slot.take() {
                run.push(p);
            }
            j += 1;
        }
        for p in run {
            outcomes.push(execute(node, &index, &mut data, shards, p, now));
        }
        drop(data);
        if !touched.iter().any(|t| Arc::ptr_eq(t, &index)) {
            touched.push(index);
        }
        i = j;
    }
    let forced = refresh == Refresh::Now;
    if refresh != Refresh::No {
        for idx in &touched {
            idx.refresh();
        }
    }

    // Response.
    let mut out = Vec::with_capacity(64 + outcomes.len() * 160);
    let any_error = outcomes.iter().any(|o| matches!(o, Outcome::Err(..)));
    out.extend_from_slice(b"{\"errors\":");
    out.extend_from_slice(if any_error { b"true" } else { b"false" });
    out.extend_from_slice(b",\"took\":");
    write_i64(&mut out, start.elapsed().as_millis() as i64);
    out.extend_from_slice(b",\"items\":[");
    for (i, o) in outcomes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_item(&mut out, o, forced);
    }
    out.extend_from_slice(b"]}");
    Ok(Resp::raw(200, out))
}

fn write_item(out: &mut Vec<u8>, o: &Outcome, forced: bool) {
    out.push(b'{');
    match o {
        Outcome::Ok(action, index, id, w, shards) => {
            write_key(out, action.key());
            out.extend_from_slice(b"{\"_index\":");
            write_str(out, &index.name);
            out.extend_from_slice(b",\"_id\":");
            write_str(out, id);
            out.extend_from_slice(b",\"_version\":");
            write_i64(out, w.version);
            out.extend_from_slice(b",\"result\":");
            write_str(out, w.result.as_str());
            if forced && w.result != WriteResult::Noop {
                out.extend_from_slice(b",\"forced_refresh\":true");
            }
            let (total, ok) = if w.result == WriteResult::Noop {
                (0, 0)
            } else {
                *shards
            };
            out.extend_from_slice(b",\"_shards\":{\"total\":");
            write_i64(out, total as i64);
            out.extend_from_slice(b",\"successful\":");
            write_i64(out, ok as i64);
            out.extend_from_slice(b",\"failed\":0},\"_seq_no\":");
            write_i64(out, w.seq_no);
            out.extend_from_slice(b",\"_primary_term\":1,\"status\":");
            write_i64(out, i64::from(w.result.status()));
            out.push(b'}');
        }
        Outcome::Err(action, index, id, e) => {
            write_key(out, action.key());
            out.extend_from_slice(b"{\"_index\":");
            match index {
                Some(i) => write_str(out, i),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"_id\":");
            match id {
                Some(i) => write_str(out, i),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"status\":");
            write_i64(out, i64::from(e.status));
            out.extend_from_slice(b",\"error\":");
            let _ = serde_json::to_writer(&mut *out, &e.inner_json(true));
            out.push(b'}');
        }
    }
    out.push(b'}');
}

fn execute(
    node: &Node,
    index: &Arc<Index>,
    data: &mut IndexData,
    shards: (u64, u64),
    p: Planned<'_>,
    now: Instant,
) -> Outcome {
    let Planned {
        item,
        target,
        id,
        prepared,
    } = p;
    let action = item.action;
    let alias_routing = match target {
        Ok((_, r)) => r,
        Err(e) => return Outcome::Err(action, item.index.clone(), id, e),
    };
    let fail =
        |e: EsError, id: Option<String>| Outcome::Err(action, Some(index.name.clone()), id, e);
    if let Some(f) = node.faults.for_bulk_item() {
        if let Some(e) = f.kind.error(&format!("bulk item on [{}][0]", index.name)) {
            return fail(e, id);
        }
    }
    let routing = item.routing.clone().or(alias_routing);
    match item.action {
        Action::Index | Action::Create => {
            if let Some(pl) = item.pipeline.as_deref().filter(|p| *p != "_none") {
                return fail(pipeline_error(pl), id);
            }
            if item.id.as_deref() == Some("") {
                return fail(
                    EsError::illegal_argument("if _id is specified it must not be empty"),
                    id,
                );
            }
            let doc_id = id.clone().unwrap_or_default();
            let prepared = match prepared {
                Some(Ok(p)) => p,
                Some(Err(e)) => return fail(e, id),
                None => return fail(EsError::validation(&["source is missing".to_string()]), id),
            };
            let source = match std::str::from_utf8(item.source.unwrap_or_default()) {
                Ok(s) => s,
                Err(_) => {
                    return fail(
                        EsError::new(
                            400,
                            "document_parsing_exception",
                            "[1:1] failed to parse: Invalid UTF-8 start byte",
                        ),
                        id,
                    )
                }
            };
            let create = item.action == Action::Create;
            let r = data.apply(
                index,
                &doc_id,
                WriteOp::Index {
                    source,
                    create,
                    prepared,
                },
                &item.versioning,
                routing.as_deref(),
                now,
            );
            match r {
                Ok(w) => Outcome::Ok(action, index.clone(), doc_id, w, shards),
                Err(e) => fail(e, id),
            }
        }
        Action::Delete => {
            let doc_id = id.clone().unwrap_or_default();
            if let Err(e) = validate_id(&doc_id) {
                return fail(e, id);
            }
            match data.apply(
                index,
                &doc_id,
                WriteOp::Delete,
                &item.versioning,
                routing.as_deref(),
                now,
            ) {
                Ok(w) => Outcome::Ok(action, index.clone(), doc_id, w, shards),
                Err(e) => fail(e, id),
            }
        }
        Action::Update => {
            let doc_id = id.clone().unwrap_or_default();
            let body = item.update.unwrap_or_default();
            match apply_update_locked(
                index,
                data,
                &doc_id,
                &body,
                &item.versioning,
                routing.as_deref(),
                now,
            ) {
                Ok(w) => Outcome::Ok(action, index.clone(), doc_id, w, shards),
                Err(e) => fail(e, id),
            }
        }
    }
}
