//! Cluster-level APIs: info, nodes, capabilities and a few `_cat` tables (health is in
//! [`super::health`]).

use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::cluster::ResolveOpts;
use crate::error::EsResult;
use crate::node::{Node, Req, Resp, LUCENE_VERSION, NODE_ID, VERSION};

const BUILD_HASH: &str = "0000000000000000000000000000000000000000";

/// `GET /`.
pub(crate) fn info(node: &Node, _req: &Req) -> EsResult<Resp> {
    Ok(Resp::json(
        200,
        &json!({
            "name": node.config.node_name,
            "cluster_name": node.cluster.name,
            "cluster_uuid": node.cluster.uuid,
            "version": {
                "number": VERSION,
                "build_flavor": "default",
                "build_type": "tar",
                "build_hash": BUILD_HASH,
                "build_date": "2025-07-01T00:00:00.000Z",
                "build_snapshot": false,
                "lucene_version": LUCENE_VERSION,
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0"
            },
            "tagline": "You Know, for Search"
        }),
    ))
}

/// `GET /_nodes`.
pub(crate) fn nodes(node: &Node, _req: &Req) -> EsResult<Resp> {
    let addr = node.publish_address.lock().clone();
    let host = addr
        .rsplit_once(':')
        .map_or(addr.as_str(), |(h, _)| h)
        .to_string();
    Ok(Resp::json(
        200,
        &json!({
            "_nodes": {"total": 1, "successful": 1, "failed": 0},
            "cluster_name": node.cluster.name,
            "nodes": {
                NODE_ID: {
                    "name": node.config.node_name,
                    "transport_address": addr,
                    "host": host,
                    "ip": host,
                    "version": VERSION,
                    "build_flavor": "default",
                    "build_type": "tar",
                    "build_hash": BUILD_HASH,
                    "roles": ["data", "data_content", "ingest", "master"],
                    "attributes": {},
                    "http": {
                        "bound_address": [addr],
                        "publish_address": addr,
                        "max_content_length_in_bytes": node.config.max_content_length
                    }
                }
            }
        }),
    ))
}

/// `GET /_capabilities`.
pub(crate) fn capabilities(_node: &Node, req: &Req) -> EsResult<Resp> {
    let method = req
        .params
        .get("method")
        .unwrap_or("GET")
        .to_ascii_uppercase();
    let path = req.params.get("path").unwrap_or("/");
    let caps = req.params.list("capabilities").unwrap_or_default();
    let params = req.params.list("parameters").unwrap_or_default();
    let Some((api_caps, api_params)) = crate::node::route_capabilities(&method, path) else {
        return Ok(Resp::json(200, &json!({"supported": false})));
    };
    let supported = caps.iter().all(|c| api_caps.contains(&c.as_str()))
        && params.iter().all(|p| {
            api_params.contains(&p.as_str()) || crate::params::GLOBAL.contains(&p.as_str())
        });
    Ok(Resp::json(200, &json!({ "supported": supported })))
}

struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

fn render(req: &Req, t: Table) -> EsResult<Resp> {
    let cols: Vec<usize> = match req.params.list("h") {
        Some(h) => h
            .iter()
            .filter_map(|c| t.headers.iter().position(|x| x == c))
            .collect(),
        None => (0..t.headers.len()).collect(),
    };
    let mut rows = t.rows;
    if let Some(s) = req.params.list("s") {
        if let Some(first) = s.first() {
            let (name, desc) = match first.split_once(':') {
                Some((n, d)) => (n.to_string(), d == "desc"),
                None => (first.clone(), false),
            };
            if let Some(i) = t.headers.iter().position(|x| *x == name) {
                rows.sort_by(|a, b| {
                    let o = a.get(i).cmp(&b.get(i));
                    if desc {
                        o.reverse()
                    } else {
                        o
                    }
                });
            }
        }
    }
    if req.params.get("format") == Some("json") {
        let arr: Vec<Value> = rows
            .iter()
            .map(|r| {
                let m: Map<String, Value> = cols
                    .iter()
                    .filter_map(|&i| {
                        Some((
                            t.headers.get(i)?.to_string(),
                            Value::from(r.get(i)?.as_str()),
                        ))
                    })
                    .collect();
                Value::Object(m)
            })
            .collect();
        return Ok(Resp::json(200, &Value::Array(arr)));
    }
    let verbose = req.params.bool_or("v", false)?;
    let mut all: Vec<Vec<String>> = Vec::new();
    if verbose {
        all.push(
            cols.iter()
                .filter_map(|&i| t.headers.get(i).map(|h| h.to_string()))
                .collect(),
        );
    }
    for r in rows {
        all.push(cols.iter().filter_map(|&i| r.get(i).cloned()).collect());
    }
    let widths: Vec<usize> = (0..cols.len())
        .map(|c| {
            all.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in all {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{:width$}", s, width = widths.get(i).copied().unwrap_or(0)))
            .collect();
        out.push_str(line.join(" ").trim_end());
        out.push('\n');
    }
    Ok(Resp::text(200, out).with_header("Content-Type", "text/plain; charset=UTF-8"))
}

/// `GET /_cat/indices`.
pub(crate) fn cat_indices(node: &Node, req: &Req) -> EsResult<Resp> {
    let o = ResolveOpts::strict_expand_open().with_params(&req.params)?;
    let resolved = node
        .cluster
        .meta
        .read()
        .resolve(req.part("index").unwrap_or(""), &o)?;
    let rows = resolved
        .iter()
        .map(|r| {
            let d = r.index.data.read();
            vec![
                super::health::index_status(&r.index).name().to_string(),
                if r.index.is_closed() { "close" } else { "open" }.to_string(),
                r.name.clone(),
                r.index.uuid.clone(),
                r.index.shards().to_string(),
                r.index.replicas().to_string(),
                d.visible_count().to_string(),
                "0".to_string(),
            ]
        })
        .collect();
    render(
        req,
        Table {
            headers: vec![
                "health",
                "status",
                "index",
                "uuid",
                "pri",
                "rep",
                "docs.count",
                "docs.deleted",
            ],
            rows,
        },
    )
}

/// `GET /_cat/health`.
pub(crate) fn cat_health(node: &Node, req: &Req) -> EsResult<Resp> {
    let h = super::health::cluster_summary(node);
    let now = crate::names::now_millis();
    let g = |k: &str| {
        h.get(k)
            .map(|v| v.to_string().trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let row = vec![
        (now / 1000).to_string(),
        g("cluster_name"),
        g("status"),
        "1".into(),
        "1".into(),
        g("active_shards"),
        g("active_primary_shards"),
        "0".into(),
        "0".into(),
        g("unassigned_shards"),
        "0".into(),
        format!("{}%", g("active_shards_percent_as_number")),
    ];
    render(
        req,
        Table {
            headers: vec![
                "epoch",
                "cluster",
                "status",
                "node.total",
                "node.data",
                "shards",
                "pri",
                "relo",
                "init",
                "unassign",
                "pending_tasks",
                "active_shards_percent",
            ],
            rows: vec![row],
        },
    )
}

/// `GET /_cat/aliases`.
pub(crate) fn cat_aliases(node: &Node, req: &Req) -> EsResult<Resp> {
    let meta = node.cluster.meta.read();
    let pattern = req.part("name");
    let mut rows = Vec::new();
    for (idx, e) in &meta.indices {
        for (alias, a) in &e.aliases {
            if pattern.is_some_and(|p| !p.split(',').any(|p| crate::names::glob_match(p, alias))) {
                continue;
            }
            rows.push(vec![
                alias.clone(),
                idx.clone(),
                if a.filter.is_some() {
                    "*".into()
                } else {
                    "-".into()
                },
                a.index_routing.clone().unwrap_or_else(|| "-".into()),
                a.search_routing.clone().unwrap_or_else(|| "-".into()),
                a.is_write_index.map_or("-".into(), |w| w.to_string()),
            ]);
        }
    }
    render(
        req,
        Table {
            headers: vec![
                "alias",
                "index",
                "filter",
                "routing.index",
                "routing.search",
                "is_write_index",
            ],
            rows,
        },
    )
}

/// `GET /_cat/count`.
pub(crate) fn cat_count(node: &Node, req: &Req) -> EsResult<Resp> {
    let o = ResolveOpts::strict_expand_open().with_params(&req.params)?;
    let resolved = node
        .cluster
        .meta
        .read()
        .resolve(req.part("index").unwrap_or(""), &o)?;
    let now = Instant::now();
    let mut count = 0;
    for r in &resolved {
        r.index.maybe_scheduled_refresh(now);
        count += r.index.data.read().visible_count();
    }
    let ms = crate::names::now_millis();
    render(
        req,
        Table {
            headers: vec!["epoch", "timestamp", "count"],
            rows: vec![vec![
                (ms / 1000).to_string(),
                crate::names::format_date(ms)
                    .get(11..19)
                    .unwrap_or("")
                    .to_string(),
                count.to_string(),
            ]],
        },
    )
}
