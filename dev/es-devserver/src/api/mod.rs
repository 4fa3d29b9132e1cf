//! REST handlers.

pub(crate) mod aliases;
pub(crate) mod bulk;
pub(crate) mod cluster;
pub(crate) mod cluster_settings;
pub(crate) mod devserver;
pub(crate) mod docs;
pub(crate) mod health;
pub(crate) mod indices;
mod indices_boost;
mod rescore;
pub(crate) mod search;

use std::sync::Arc;

use serde_json::{json, Value};

use crate::cluster::WriteTarget;
use crate::error::{EsError, EsResult};
use crate::index::Index;
use crate::node::{Api, Node, Req, Resp};

pub(crate) async fn dispatch(node: &Node, api: Api, req: &Req) -> EsResult<Resp> {
    match api {
        Api::Info => cluster::info(node, req),
        Api::Health => health::health(node, req).await,
        Api::PutClusterSettings => cluster_settings::put(node, req),
        Api::GetClusterSettings => cluster_settings::get(node, req),
        Api::Nodes => cluster::nodes(node, req),
        Api::Capabilities => cluster::capabilities(node, req),
        Api::CatIndices => cluster::cat_indices(node, req),
        Api::CatHealth => cluster::cat_health(node, req),
        Api::CatAliases => cluster::cat_aliases(node, req),
        Api::CatCount => cluster::cat_count(node, req),
        Api::Bulk => bulk::bulk(node, req),
        Api::Mget => docs::mget(node, req),
        Api::Search => search::search(node, req),
        Api::Count => search::count(node, req),
        Api::Refresh => indices::refresh(node, req),
        Api::UpdateAliases => aliases::update_aliases(node, req),
        Api::GetAlias => aliases::get_alias(node, req),
        Api::ExistsAlias => aliases::exists_alias(node, req),
        Api::PutAlias => aliases::put_alias(node, req),
        Api::DeleteAlias => aliases::delete_alias(node, req),
        Api::CreateIndex => indices::create(node, req),
        Api::DeleteIndex => indices::delete(node, req),
        Api::GetIndex => indices::get(node, req),
        Api::ExistsIndex => indices::exists(node, req),
        Api::GetMapping => indices::get_mapping(node, req),
        Api::PutMapping => indices::put_mapping(node, req),
        Api::GetSettings => indices::get_settings(node, req),
        Api::PutSettings => indices::put_settings(node, req),
        Api::Stats => indices::stats(node, req),
        Api::IndexDoc => docs::index(node, req, false),
        Api::CreateDoc => docs::index(node, req, true),
        Api::GetDoc => docs::get(node, req, docs::GetMode::Doc),
        Api::ExistsDoc => docs::get(node, req, docs::GetMode::Exists),
        Api::GetSource => docs::get(node, req, docs::GetMode::Source),
        Api::ExistsSource => docs::get(node, req, docs::GetMode::SourceExists),
        Api::DeleteDoc => docs::delete(node, req),
        Api::UpdateDoc => docs::update(node, req),
        Api::DevStats => devserver::stats(node),
        Api::DevStatsReset => devserver::reset_stats(node),
        Api::DevFaultsGet => devserver::get_faults(node),
        Api::DevFaultsPut => devserver::put_faults(node, req),
        Api::DevFaultsDelete => devserver::delete_faults(node),
        Api::DevReset => devserver::reset(node),
        Api::DevDump => devserver::dump(node, req),
        Api::CloseIndex => indices::close(node, req),
        Api::OpenIndex => indices::open(node, req),
        Api::OpenPit => search::open_pit(node, req),
        Api::ClosePit => search::close_pit(node, req),
    }
}

/// `refresh` parameter of writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refresh {
    No,
    Now,
    WaitFor,
}

pub(crate) fn refresh_param(v: Option<&str>) -> EsResult<Refresh> {
    match v {
        None | Some("false") => Ok(Refresh::No),
        Some("") | Some("true") => Ok(Refresh::Now),
        Some("wait_for") => Ok(Refresh::WaitFor),
        Some(other) => Err(EsError::illegal_argument(format!(
            "Unknown value for refresh: [{other}]."
        ))),
    }
}

pub(crate) fn shards_json(total: u64, successful: u64) -> Value {
    json!({"total": total, "successful": successful, "failed": 0})
}

/// Resolves the index a single-document write goes to, creating it if needed.
pub(crate) fn write_index(
    node: &Node,
    name: &str,
    require_alias: bool,
) -> EsResult<(Arc<Index>, Option<String>)> {
    let name = crate::names::resolve_date_math_name(name, crate::names::now_millis())?;
    let target = node.cluster.meta.read().write_target(&name);
    let not_alias = || {
        EsError::index_not_found(&name).tap_reason(format!(
            "no such index [{name}] and [require_alias] request flag is [true] and [{name}] is not an alias"
        ))
    };
    match target {
        WriteTarget::Index(idx, routing) => {
            if idx.is_closed() {
                return Err(idx.closed_error());
            }
            if require_alias && node.cluster.meta.read().indices.contains_key(&name) {
                return Err(not_alias());
            }
            Ok((idx, routing))
        }
        WriteTarget::NoWriteIndex => Err(crate::cluster::no_write_index_error(&name)),
        WriteTarget::Missing => {
            if require_alias {
                return Err(not_alias());
            }
            let idx = indices::create_index(node, &name, None, true)?;
            Ok((idx, None))
        }
    }
}

/// Resolves a name that must point to exactly one index (get, delete, update).
pub(crate) fn single_index(node: &Node, name: &str) -> EsResult<Arc<Index>> {
    single_index_routed(node, name, None).map(|(i, _)| i)
}

/// [`single_index`] with the routing a read uses: the request's, or through an alias the
/// alias's `index_routing` (a different request routing is rejected, as Elasticsearch does).
pub(crate) fn single_index_routed(
    node: &Node,
    name: &str,
    routing: Option<&str>,
) -> EsResult<(Arc<Index>, Option<String>)> {
    let name = crate::names::resolve_date_math_name(name, crate::names::now_millis())?;
    let meta = node.cluster.meta.read();
    if let Some(e) = meta.indices.get(&name) {
        if e.index.is_closed() {
            return Err(e.index.closed_error());
        }
        return Ok((e.index.clone(), routing.map(str::to_string)));
    }
    let targets = meta.alias_indices(&name);
    match targets.as_slice() {
        [] => Err(EsError::index_not_found(&name)),
        [(_, e, _)] if e.index.is_closed() => Err(e.index.closed_error()),
        [(_, e, a)] => match (&a.index_routing, routing) {
            (Some(ar), Some(r)) if ar != r => Err(EsError::illegal_argument(format!(
                "Alias [{name}] has index routing associated with it [{ar}], and was provided with routing value [{r}], rejecting operation"
            ))),
            (Some(ar), _) => Ok((e.index.clone(), Some(ar.clone()))),
            (None, r) => Ok((e.index.clone(), r.map(str::to_string))),
        },
        many => {
            let names: Vec<&str> = many.iter().map(|(n, _, _)| *n).collect();
            Err(EsError::illegal_argument(format!(
                "alias [{name}] has more than one index associated with it [{}], can't execute a single index op",
                names.join(", ")
            )))
        }
    }
}

trait TapReason {
    fn tap_reason(self, reason: String) -> Self;
}

impl TapReason for EsError {
    fn tap_reason(mut self, reason: String) -> Self {
        self.reason = reason;
        self
    }
}
