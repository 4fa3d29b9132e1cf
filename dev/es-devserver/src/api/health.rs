//! `GET /_cluster/health[/{index}]` as Elasticsearch 8 answers it on a single node.
//!
//! Every primary shard is active at once; a replica can never be assigned (there is no
//! second node), so an index with replicas is yellow for good. The wait conditions
//! (`wait_for_status`, `wait_for_nodes`, `wait_for_active_shards`, the indices of the path
//! existing, `wait_for_no_relocating_shards`, `wait_for_no_initializing_shards`) are counted
//! the way `TransportClusterHealthAction` counts them: the request answers as soon as all of
//! them hold, or at the `timeout` (default 30 s) with `timed_out: true` and status 200 (8.x
//! no longer answers 408, unless `return_200_for_cluster_health_timeout=false` asks for it).

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::cluster::{Metadata, ResolveOpts};
use crate::error::{EsError, EsResult};
use crate::index::Index;
use crate::node::{Node, Req, Resp};

/// The number of nodes of this cluster.
const NODES: u64 = 1;

/// Health status, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Status {
    Green,
    Yellow,
    Red,
}

impl Status {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Status::Green => "green",
            Status::Yellow => "yellow",
            Status::Red => "red",
        }
    }

    fn parse(s: &str) -> EsResult<Status> {
        match s.to_ascii_lowercase().as_str() {
            "green" => Ok(Status::Green),
            "yellow" => Ok(Status::Yellow),
            "red" => Ok(Status::Red),
            _ => Err(EsError::illegal_argument(format!(
                "No enum constant org.elasticsearch.cluster.health.ClusterHealthStatus.{}",
                s.to_uppercase()
            ))),
        }
    }
}

/// The health of one index: its primaries are active, its replicas unassigned.
pub(crate) fn index_status(idx: &Index) -> Status {
    if idx.replicas() > 0 {
        Status::Yellow
    } else {
        Status::Green
    }
}

/// `level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Cluster,
    Indices,
    Shards,
}

/// `wait_for_active_shards`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ActiveShards {
    All,
    AtLeast(u64),
}

/// `wait_for_nodes`: `N`, `>=N`, `<=N`, `>N`, `<N`, `ge(N)`, `le(N)`, `gt(N)`, `lt(N)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodesCond {
    Eq(i64),
    Ge(i64),
    Le(i64),
    Gt(i64),
    Lt(i64),
}

impl NodesCond {
    fn parse(s: &str) -> EsResult<NodesCond> {
        let num = |n: &str| {
            n.parse::<i64>().map_err(|_| {
                EsError::new(
                    400,
                    "number_format_exception",
                    format!("For input string: \"{n}\""),
                )
            })
        };
        let func = |prefix: &str| {
            s.strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(')'))
                .map(num)
        };
        // The longer prefixes first: ">=" before ">".
        if let Some(n) = s.strip_prefix(">=") {
            return Ok(NodesCond::Ge(num(n)?));
        }
        if let Some(n) = func("ge(") {
            return Ok(NodesCond::Ge(n?));
        }
        if let Some(n) = s.strip_prefix("<=") {
            return Ok(NodesCond::Le(num(n)?));
        }
        if let Some(n) = func("le(") {
            return Ok(NodesCond::Le(n?));
        }
        if let Some(n) = s.strip_prefix('>') {
            return Ok(NodesCond::Gt(num(n)?));
        }
        if let Some(n) = func("gt(") {
            return Ok(NodesCond::Gt(n?));
        }
        if let Some(n) = s.strip_prefix('<') {
            return Ok(NodesCond::Lt(num(n)?));
        }
        if let Some(n) = func("lt(") {
            return Ok(NodesCond::Lt(n?));
        }
        Ok(NodesCond::Eq(num(s)?))
    }

    fn holds(self, nodes: u64) -> bool {
        let n = i64::try_from(nodes).unwrap_or(i64::MAX);
        match self {
            NodesCond::Eq(x) => n == x,
            NodesCond::Ge(x) => n >= x,
            NodesCond::Le(x) => n <= x,
            NodesCond::Gt(x) => n > x,
            NodesCond::Lt(x) => n < x,
        }
    }
}

/// A parsed health request.
struct HealthRequest {
    expr: Option<String>,
    opts: ResolveOpts,
    level: Level,
    wait_status: Option<Status>,
    wait_nodes: Option<NodesCond>,
    wait_active: Option<ActiveShards>,
    wait_no_relocating: bool,
    wait_no_initializing: bool,
    /// `None`: no timeout (`-1`).
    timeout: Option<Duration>,
    timeout_status: u16,
    human: bool,
}

impl HealthRequest {
    fn parse(req: &Req) -> EsResult<HealthRequest> {
        let p = &req.params;
        if p.has("wait_for_relocating_shards") {
            return Err(EsError::illegal_argument(
                "wait_for_relocating_shards has been removed, use wait_for_no_relocating_shards [true/false] instead",
            ));
        }
        let level = match p.get("level").map(str::to_ascii_lowercase).as_deref() {
            None | Some("cluster") => Level::Cluster,
            Some("indices") => Level::Indices,
            Some("shards") => Level::Shards,
            Some(_) => {
                return Err(EsError::illegal_argument(format!(
                "level parameter must be one of [cluster] or [indices] or [shards] but was [{}]",
                p.get("level").unwrap_or_default()
            )))
            }
        };
        let wait_status = p.get("wait_for_status").map(Status::parse).transpose()?;
        let wait_nodes = match p.get("wait_for_nodes") {
            None | Some("") => None,
            Some(s) => Some(NodesCond::parse(s.trim())?),
        };
        let wait_active = match p.get("wait_for_active_shards") {
            None | Some("index-setting") => None,
            Some(s) if s.eq_ignore_ascii_case("all") => Some(ActiveShards::All),
            Some(s) => match s.parse::<i64>() {
                Ok(0) => None,
                Ok(n) if n > 0 => Some(ActiveShards::AtLeast(n.unsigned_abs())),
                Ok(_) => {
                    return Err(EsError::illegal_argument(
                        "shard count cannot be a negative value",
                    ))
                }
                Err(_) => {
                    return Err(EsError::new(
                        400,
                        "number_format_exception",
                        format!("For input string: \"{s}\""),
                    ))
                }
            },
        };
        if let Some(e) = p.get("wait_for_events") {
            const PRIORITIES: [&str; 6] =
                ["immediate", "urgent", "high", "normal", "low", "languid"];
            if !PRIORITIES.contains(&e.to_ascii_lowercase().as_str()) {
                return Err(EsError::illegal_argument(format!(
                    "No enum constant org.elasticsearch.common.Priority.{}",
                    e.to_uppercase()
                )));
            }
        }
        let timeout = match p.get("timeout") {
            None => Some(Duration::from_secs(30)),
            Some(t) => crate::settings::parse_time(t, "timeout")?,
        };
        p.time_opt("master_timeout")?;
        p.bool_opt("local")?;
        // 7.16 to 8.x: `return_200_for_cluster_health_timeout`. A timeout answers 200 in 8.x;
        // an explicit `false` still asks for the 7.x answer, 408.
        let timeout_status = match p.get("return_200_for_cluster_health_timeout") {
            Some(v) if v.eq_ignore_ascii_case("false") => 408,
            _ => 200,
        };
        // Health looks at every index by default, closed and hidden ones too; missing
        // concrete names are left out (and make the indices condition fail).
        let lenient = ResolveOpts {
            ignore_unavailable: true,
            allow_no_indices: true,
            expand_open: true,
            expand_closed: true,
            expand_hidden: true,
            ..ResolveOpts::strict_expand_open()
        };
        Ok(HealthRequest {
            expr: req
                .part("index")
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            opts: lenient.with_params(p)?,
            level,
            wait_status,
            wait_nodes,
            wait_active,
            wait_no_relocating: p.bool_or("wait_for_no_relocating_shards", false)?,
            wait_no_initializing: p.bool_or("wait_for_no_initializing_shards", false)?,
            timeout,
            timeout_status,
            human: p.bool_or("human", false)?,
        })
    }

    /// How many conditions the request waits for.
    fn wait_count(&self) -> usize {
        [
            self.wait_status.is_some(),
            self.wait_no_relocating,
            self.wait_no_initializing,
            self.wait_active.is_some(),
            self.wait_nodes.is_some(),
            self.expr.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count()
    }
}

/// Shard counts of one index or of the cluster.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    primaries: u64,
    active: u64,
    unassigned: u64,
}

/// The health of the indices a request covers.
struct Health {
    status: Status,
    counts: Counts,
    /// Whether every concrete name of the path exists.
    indices_exist: bool,
    indices: Map<String, Value>,
}

fn index_json(idx: &Index, level: Level) -> (Counts, Value) {
    let shards = u64::from(idx.shards());
    let replicas = u64::from(idx.replicas());
    let status = index_status(idx);
    let counts = Counts {
        primaries: shards,
        active: shards,
        unassigned: shards * replicas,
    };
    let mut body = json!({
        "status": status.name(),
        "number_of_shards": shards,
        "number_of_replicas": replicas,
        "active_primary_shards": shards,
        "active_shards": shards,
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": shards * replicas,
        "unassigned_primary_shards": 0
    });
    if level == Level::Shards {
        let per_shard: Map<String, Value> = (0..shards)
            .map(|n| {
                (
                    n.to_string(),
                    json!({
                        "status": status.name(),
                        "primary_active": true,
                        "active_shards": 1,
                        "relocating_shards": 0,
                        "initializing_shards": 0,
                        "unassigned_shards": replicas,
                        "unassigned_primary_shards": 0
                    }),
                )
            })
            .collect();
        if let Value::Object(m) = &mut body {
            m.insert("shards".into(), Value::Object(per_shard));
        }
    }
    (counts, body)
}

fn compute(meta: &Metadata, r: &HealthRequest) -> Health {
    let expr = r.expr.as_deref().unwrap_or("");
    // A name that exists nowhere is checked strictly (open and closed indices, aliases).
    let strict = ResolveOpts {
        expand_closed: true,
        ..ResolveOpts::strict_expand_open()
    };
    let indices_exist = r.expr.is_none() || meta.resolve(expr, &strict).is_ok();
    let Ok(resolved) = meta.resolve(expr, &r.opts) else {
        return Health {
            status: Status::Red,
            counts: Counts::default(),
            indices_exist,
            indices: Map::new(),
        };
    };
    let mut status = Status::Green;
    let mut counts = Counts::default();
    let mut indices = Map::new();
    for res in &resolved {
        let (c, body) = index_json(&res.index, r.level);
        counts.primaries += c.primaries;
        counts.active += c.active;
        counts.unassigned += c.unassigned;
        status = status.max(index_status(&res.index));
        indices.insert(res.name.clone(), body);
    }
    if !indices_exist {
        status = Status::Red;
    }
    Health {
        status,
        counts,
        indices_exist,
        indices,
    }
}

/// How many of the request's conditions hold.
fn conditions_met(r: &HealthRequest, h: &Health) -> usize {
    let active = match r.wait_active {
        None => false,
        Some(ActiveShards::All) => h.counts.unassigned == 0,
        Some(ActiveShards::AtLeast(n)) => h.counts.active >= n,
    };
    [
        r.wait_status.is_some_and(|w| h.status <= w),
        r.wait_no_relocating,
        r.wait_no_initializing,
        active,
        r.wait_nodes.is_some_and(|c| c.holds(NODES)),
        r.expr.is_some() && h.indices_exist,
    ]
    .iter()
    .filter(|b| **b)
    .count()
}

fn body(node: &Node, r: &HealthRequest, h: Health, timed_out: bool) -> Value {
    let total = h.counts.active + h.counts.unassigned;
    let pct = if total == 0 {
        100.0
    } else {
        h.counts.active as f64 * 100.0 / total as f64
    };
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    put("cluster_name", Value::from(node.cluster.name.as_str()));
    put("status", Value::from(h.status.name()));
    put("timed_out", Value::Bool(timed_out));
    put("number_of_nodes", Value::from(NODES));
    put("number_of_data_nodes", Value::from(NODES));
    put("active_primary_shards", Value::from(h.counts.primaries));
    put("active_shards", Value::from(h.counts.active));
    put("relocating_shards", Value::from(0));
    put("initializing_shards", Value::from(0));
    put("unassigned_shards", Value::from(h.counts.unassigned));
    put("unassigned_primary_shards", Value::from(0));
    put("delayed_unassigned_shards", Value::from(0));
    put("number_of_pending_tasks", Value::from(0));
    put("number_of_in_flight_fetch", Value::from(0));
    if r.human {
        put("task_max_waiting_in_queue", Value::from("0s"));
    }
    put("task_max_waiting_in_queue_millis", Value::from(0));
    if r.human {
        put("active_shards_percent", Value::from(format!("{pct:.1}%")));
    }
    put("active_shards_percent_as_number", Value::from(pct));
    if r.level != Level::Cluster {
        put("indices", Value::Object(h.indices));
    }
    Value::Object(m)
}

/// The cluster-wide status and shard counts (`_cat/health`).
pub(crate) fn cluster_summary(node: &Node) -> Value {
    let r = HealthRequest {
        expr: None,
        opts: ResolveOpts {
            ignore_unavailable: true,
            expand_closed: true,
            expand_hidden: true,
            ..ResolveOpts::strict_expand_open()
        },
        level: Level::Cluster,
        wait_status: None,
        wait_nodes: None,
        wait_active: None,
        wait_no_relocating: false,
        wait_no_initializing: false,
        timeout: None,
        timeout_status: 200,
        human: false,
    };
    let h = compute(&node.cluster.meta.read(), &r);
    body(node, &r, h, false)
}

/// `GET /_cluster/health[/{index}]`.
pub(crate) async fn health(node: &Node, req: &Req) -> EsResult<Resp> {
    let r = HealthRequest::parse(req)?;
    let wanted = r.wait_count();
    let deadline = r.timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let h = compute(&node.cluster.meta.read(), &r);
        if wanted == 0 || conditions_met(&r, &h) == wanted {
            return Ok(Resp::json(200, &body(node, &r, h, false)));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(Resp::json(r.timeout_status, &body(node, &r, h, true)));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
