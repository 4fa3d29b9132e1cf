//! `/_devserver/...`: fault injection, counters, reset and dumps (not Elasticsearch APIs).

use serde_json::{json, Value};

use crate::error::{EsError, EsResult};
use crate::faults::FaultRule;
use crate::node::{Node, Req, Resp};

pub(crate) fn stats(node: &Node) -> EsResult<Resp> {
    let s = node.faults.stats();
    Ok(Resp::json(
        200,
        &serde_json::to_value(s).unwrap_or(Value::Null),
    ))
}

pub(crate) fn reset_stats(node: &Node) -> EsResult<Resp> {
    node.faults.reset_stats();
    Ok(Resp::json(200, &json!({"acknowledged": true})))
}

pub(crate) fn get_faults(node: &Node) -> EsResult<Resp> {
    Ok(Resp::json(200, &node.faults.to_json()))
}

/// Parses fault rules from a JSON body: a list of rules, or `{"rules": [...]}`.
pub(crate) fn parse_rules(body: &Value) -> EsResult<Vec<FaultRule>> {
    let list = match body {
        Value::Array(_) => body.clone(),
        Value::Object(m) => match m.get("rules") {
            Some(r) => r.clone(),
            None => Value::Array(vec![body.clone()]),
        },
        _ => return Err(EsError::parse("expected a list of fault rules")),
    };
    let rules: Vec<FaultRule> = serde_json::from_value(list)
        .map_err(|e| EsError::parse(format!("invalid fault rules: {e}")))?;
    for r in &rules {
        r.validate().map_err(EsError::illegal_argument)?;
    }
    Ok(rules)
}

pub(crate) fn put_faults(node: &Node, req: &Req) -> EsResult<Resp> {
    let body = req
        .json_body()?
        .ok_or_else(|| EsError::parse("request body is required"))?;
    let rules = parse_rules(&body)?;
    node.faults.set_rules(rules);
    Ok(Resp::json(
        200,
        &json!({"acknowledged": true, "faults": node.faults.to_json()}),
    ))
}

pub(crate) fn delete_faults(node: &Node) -> EsResult<Resp> {
    node.faults.set_rules(Vec::new());
    Ok(Resp::json(200, &json!({"acknowledged": true})))
}

pub(crate) fn reset(node: &Node) -> EsResult<Resp> {
    node.cluster.meta.write().indices.clear();
    *node.cluster.settings.write() = crate::cluster_settings::Store::default();
    node.pits.clear();
    node.faults.set_rules(Vec::new());
    node.faults.reset_stats();
    Ok(Resp::json(200, &json!({"acknowledged": true})))
}

pub(crate) fn dump(node: &Node, req: &Req) -> EsResult<Resp> {
    let name = req.part("index").unwrap_or_default();
    let index = crate::api::single_index(node, name)?;
    let docs = index.data.read().live_docs();
    let mut out = Vec::with_capacity(docs.len());
    for (id, d) in docs {
        let src: Value = serde_json::from_str(&d.source).unwrap_or(Value::Null);
        out.push(json!({"_id": &*id, "_version": d.version, "_seq_no": d.seq_no, "_source": src}));
    }
    Ok(Resp::json(200, &json!({"index": index.name, "docs": out})))
}
