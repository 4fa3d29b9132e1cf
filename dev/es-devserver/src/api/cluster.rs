//! Cluster-level APIs: info, health, nodes, capabilities and a few `_cat` tables.

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::cluster::ResolveOpts;
use crate::error::{EsError, EsResult};
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    Green,
    Yellow,
    Red,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Green => "green",
            Status::Yellow => "yellow",
            Status::Red => "red",
        }
    }
}

struct HealthState {
    status: Status,
    body: Value,
}

fn compute_health(node: &Node, expr: Option<&str>, level: &str, timed_out: bool) -> HealthState {
    let meta = node.cluster.meta.read();
    let (resolved, missing) = match expr {
        None => (
            meta.resolve("", &ResolveOpts::strict_expand_open())
                .unwrap_or_default(),
            false,
        ),
        Some(e) => match meta.resolve(e, &ResolveOpts::strict_expand_open()) {
            Ok(r) => (r, false),
            Err(_) => (Vec::new(), true),
        },
    };
    let all: Vec<_> = meta.indices.values().map(|e| e.index.clone()).collect();
    let scope: Vec<_> = if expr.is_some() {
        resolved.iter().map(|r| r.index.clone()).collect()
    } else {
        all
    };
    let mut primaries = 0u64;
    let mut unassigned = 0u64;
    let mut status = Status::Green;
    let mut indices = Map::new();
    for idx in &scope {
        let shards = u64::from(idx.shards());
        let replicas = u64::from(idx.replicas());
        primaries += shards;
        unassigned += shards * replicas;
        let st = if replicas > 0 {
            Status::Yellow
        } else {
            Status::Green
        };
        status = status.max(st);
        indices.insert(
            idx.name.clone(),
            json!({
                "status": st.name(),
                "number_of_shards": shards,
                "number_of_replicas": replicas,
                "active_primary_shards": shards,
                "active_shards": shards,
                "relocating_shards": 0,
                "initializing_shards": 0,
                "unassigned_shards": shards * replicas,
                "unassigned_primary_shards": 0
            }),
        );
    }
    if missing {
        status = Status::Red;
    }
    let pct = if primaries + unassigned == 0 {
        100.0
    } else {
        primaries as f64 * 100.0 / (primaries + unassigned) as f64
    };
    let mut body = json!({
        "cluster_name": node.cluster.name,
        "status": status.name(),
        "timed_out": timed_out,
        "number_of_nodes": 1,
        "number_of_data_nodes": 1,
        "active_primary_shards": primaries,
        "active_shards": primaries,
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": unassigned,
        "unassigned_primary_shards": 0,
        "delayed_unassigned_shards": 0,
        "number_of_pending_tasks": 0,
        "number_of_in_flight_fetch": 0,
        "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": pct
    });
    if level == "indices" || level == "shards" {
        if let Value::Object(m) = &mut body {
            m.insert("indices".into(), Value::Object(indices));
        }
    }
    HealthState { status, body }
}

/// `GET /_cluster/health[/{index}]`.
pub(crate) async fn health(node: &Node, req: &Req) -> EsResult<Resp> {
    let wanted = match req.params.get("wait_for_status") {
        None => None,
        Some("green") => Some(Status::Green),
        Some("yellow") => Some(Status::Yellow),
        Some("red") => Some(Status::Red),
        Some(other) => {
            return Err(EsError::illegal_argument(format!(
                "unknown cluster health status [{other}]"
            )))
        }
    };
    let level = req.params.get("level").unwrap_or("cluster").to_string();
    if !matches!(level.as_str(), "cluster" | "indices" | "shards") {
        return Err(EsError::illegal_argument(format!(
            "No enum constant org.elasticsearch.cluster.health.ClusterHealthRequest.Level.{}",
            level.to_uppercase()
        )));
    }
    let timeout = req
        .params
        .time_opt("timeout")?
        .unwrap_or(Duration::from_secs(30));
    let expr = req.part("index").map(str::to_string);
    let waits = wanted.is_some()
        || req.params.has("wait_for_nodes")
        || req.params.has("wait_for_active_shards")
        || expr.is_some();
    let deadline = Instant::now()
        .checked_add(timeout)
        .unwrap_or_else(Instant::now);
    loop {
        let h = compute_health(node, expr.as_deref(), &level, false);
        let ok = match wanted {
            Some(w) => h.status <= w,
            None => h.status != Status::Red,
        };
        if ok || !waits {
            return Ok(Resp::json(200, &h.body));
        }
        if Instant::now() >= deadline {
            let h = compute_health(node, expr.as_deref(), &level, true);
            return Ok(Resp::json(408, &h.body));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
            let health = if r.index.replicas() == 0 {
                "green"
            } else {
                "yellow"
            };
            vec![
                health.to_string(),
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
    let h = compute_health(node, None, "cluster", false);
    let now = crate::names::now_millis();
    let g = |k: &str| {
        h.body
            .get(k)
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
