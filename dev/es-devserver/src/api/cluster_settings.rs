//! `PUT /_cluster/settings` and `GET /_cluster/settings`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::cluster_settings::Layer;
use crate::error::{EsError, EsResult};
use crate::node::{Node, Req, Resp};

const TRANSIENT_DEPRECATION: &str = "[transient settings removal] Updating cluster settings through transientSettings is deprecated. Use persistent settings instead.";

fn shape(flat: BTreeMap<String, Value>, flat_settings: bool) -> Value {
    if flat_settings {
        Value::Object(flat.into_iter().collect())
    } else {
        crate::settings::nest(&flat)
    }
}

/// `PUT /_cluster/settings`.
pub(crate) fn put(node: &Node, req: &Req) -> EsResult<Resp> {
    let flat_settings = req.params.bool_or("flat_settings", false)?;
    req.params.time_opt("timeout")?;
    req.params.time_opt("master_timeout")?;
    let body = req
        .json_body()?
        .ok_or_else(|| EsError::parse("request body is required"))?;
    let Value::Object(m) = &body else {
        return Err(EsError::parse("request body must be an object"));
    };
    for k in m.keys() {
        if k != "persistent" && k != "transient" {
            return Err(EsError::new(
                400,
                "x_content_parse_exception",
                format!("[1:2] [cluster_update_settings_request] unknown field [{k}]"),
            ));
        }
    }
    let empty = |k: &str| {
        m.get(k)
            .is_none_or(|v| v.as_object().is_none_or(Map::is_empty))
    };
    if empty("persistent") && empty("transient") {
        return Err(EsError::validation(&["no settings to update".to_string()]));
    }
    // Validate both layers on a copy, then swap it in.
    let mut store = node.cluster.settings.read().clone();
    let mut applied = Map::new();
    for layer in [Layer::Persistent, Layer::Transient] {
        let done = match m.get(layer.name()) {
            Some(v) if !v.is_null() => store.update(layer, v)?,
            _ => BTreeMap::new(),
        };
        applied.insert(layer.name().into(), shape(done, flat_settings));
    }
    *node.cluster.settings.write() = store;
    let mut out = Map::new();
    out.insert("acknowledged".into(), Value::Bool(true));
    out.extend(applied);
    let resp = Resp::json(200, &Value::Object(out));
    Ok(if empty("transient") {
        resp
    } else {
        resp.with_warning(TRANSIENT_DEPRECATION)
    })
}

/// `GET /_cluster/settings`.
pub(crate) fn get(node: &Node, req: &Req) -> EsResult<Resp> {
    let flat_settings = req.params.bool_or("flat_settings", false)?;
    let include_defaults = req.params.bool_or("include_defaults", false)?;
    req.params.time_opt("timeout")?;
    req.params.time_opt("master_timeout")?;
    let store = node.cluster.settings.read().clone();
    let mut out = Map::new();
    out.insert(
        "persistent".into(),
        shape(store.persistent.clone(), flat_settings),
    );
    out.insert(
        "transient".into(),
        shape(store.transient.clone(), flat_settings),
    );
    if include_defaults {
        let defaults = store.defaults(node.config.destructive_requires_name);
        out.insert("defaults".into(), shape(defaults, flat_settings));
    }
    Ok(Resp::json(200, &Value::Object(out)))
}
