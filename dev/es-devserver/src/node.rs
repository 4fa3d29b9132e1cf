//! The node: routing, content-type and parameter checks, fault injection and response
//! post-processing (`filter_path`, `pretty`). HTTP-agnostic, so tests can drive it directly.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde_json::Value;

use crate::api;
use crate::cluster::Cluster;
use crate::error::{EsError, EsResult};
use crate::faults::{FaultKind, FaultTarget, Faults};
use crate::params::Params;
use crate::Config;

/// The Elasticsearch version this server speaks.
pub const VERSION: &str = "8.19.0";
/// The Lucene version reported with it.
pub const LUCENE_VERSION: &str = "9.12.2";
/// Node id used in responses.
pub const NODE_ID: &str = "es-devserver-node-0";

/// A request as the handlers see it.
#[derive(Debug, Clone)]
pub struct Req {
    /// Method.
    pub method: Method,
    /// Raw path (for messages).
    pub path: String,
    /// Raw path and query (for messages).
    pub uri: String,
    /// Query parameters.
    pub params: Params,
    /// Body (decompressed).
    pub body: Bytes,
    /// Headers.
    pub headers: HeaderMap,
    /// Path parameters of the matched route.
    pub parts: Vec<(&'static str, String)>,
}

impl Req {
    /// A path parameter.
    pub fn part(&self, name: &str) -> Option<&str> {
        self.parts
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the request has a non-empty body.
    pub fn has_body(&self) -> bool {
        !self.body.iter().all(u8::is_ascii_whitespace)
    }

    /// The body as JSON (`None` when empty).
    pub fn json_body(&self) -> EsResult<Option<Value>> {
        if !self.has_body() {
            return Ok(None);
        }
        crate::json::parse_body(&self.body).map(Some)
    }
}

/// A response before HTTP framing.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status.
    pub status: u16,
    /// Body bytes.
    pub body: Bytes,
    /// Whether the body is JSON (for `filter_path`/`pretty` and the content type).
    pub json: bool,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Close the connection half-way through the body (fault injection).
    pub cut: bool,
}

impl Resp {
    /// A JSON response.
    pub fn json(status: u16, v: &Value) -> Resp {
        Resp::raw(status, serde_json::to_vec(v).unwrap_or_default())
    }

    /// A JSON response from serialized bytes.
    pub fn raw(status: u16, body: Vec<u8>) -> Resp {
        Resp {
            status,
            body: Bytes::from(body),
            json: true,
            headers: Vec::new(),
            cut: false,
        }
    }

    /// A text response.
    pub fn text(status: u16, body: String) -> Resp {
        Resp {
            status,
            body: Bytes::from(body),
            json: false,
            headers: Vec::new(),
            cut: false,
        }
    }

    /// An empty response (HEAD requests).
    pub fn empty(status: u16) -> Resp {
        Resp {
            status,
            body: Bytes::new(),
            json: false,
            headers: Vec::new(),
            cut: false,
        }
    }

    /// An error response.
    pub fn error(e: &EsError) -> Resp {
        Resp::raw(e.status, e.to_body())
    }

    /// Adds a header.
    pub fn with_header(mut self, k: &str, v: &str) -> Resp {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    /// Adds a deprecation `Warning` header the way Elasticsearch formats it.
    pub fn with_warning(self, msg: &str) -> Resp {
        let v = format!(
            "299 Elasticsearch-{VERSION}-es-devserver \"{}\"",
            msg.replace('"', "\\\"")
        );
        self.with_header("Warning", &v)
    }
}

/// Which API a route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Info,
    Health,
    Bulk,
    Mget,
    Search,
    Count,
    Refresh,
    UpdateAliases,
    GetAlias,
    ExistsAlias,
    PutAlias,
    DeleteAlias,
    CreateIndex,
    DeleteIndex,
    GetIndex,
    ExistsIndex,
    GetMapping,
    PutMapping,
    GetSettings,
    PutSettings,
    Stats,
    IndexDoc,
    CreateDoc,
    GetDoc,
    ExistsDoc,
    DeleteDoc,
    UpdateDoc,
    GetSource,
    ExistsSource,
    Capabilities,
    Nodes,
    CatIndices,
    CatHealth,
    CatAliases,
    CatCount,
    DevStats,
    DevStatsReset,
    DevFaultsGet,
    DevFaultsPut,
    DevFaultsDelete,
    DevReset,
    DevDump,
    OpenPit,
    PutClusterSettings,
    GetClusterSettings,
    ClosePit,
    CloseIndex,
    OpenIndex,
}

struct Route {
    methods: &'static [Method],
    pattern: &'static str,
    api: Api,
    params: &'static [&'static str],
}

const OPEN_CLOSE: &[&str] = &[
    "ignore_unavailable",
    "allow_no_indices",
    "expand_wildcards",
    "wait_for_active_shards",
    "timeout",
    "master_timeout",
];
const INDEX_OPTS: &[&str] = &["ignore_unavailable", "allow_no_indices", "expand_wildcards"];
const GET_DOC: &[&str] = &[
    "force_synthetic_source",
    "stored_fields",
    "preference",
    "realtime",
    "refresh",
    "routing",
    "_source",
    "_source_excludes",
    "_source_includes",
    "version",
    "version_type",
];
const INDEX_DOC: &[&str] = &[
    "wait_for_active_shards",
    "op_type",
    "refresh",
    "routing",
    "timeout",
    "version",
    "version_type",
    "if_seq_no",
    "if_primary_term",
    "pipeline",
    "require_alias",
    "require_data_stream",
    "include_source_on_error",
];
const SEARCH: &[&str] = &[
    "analyzer",
    "analyze_wildcard",
    "ccs_minimize_roundtrips",
    "default_operator",
    "df",
    "explain",
    "stored_fields",
    "docvalue_fields",
    "from",
    "force_synthetic_source",
    "ignore_unavailable",
    "ignore_throttled",
    "allow_no_indices",
    "expand_wildcards",
    "lenient",
    "preference",
    "q",
    "routing",
    "scroll",
    "search_type",
    "size",
    "sort",
    "_source",
    "_source_excludes",
    "_source_includes",
    "terminate_after",
    "stats",
    "suggest_field",
    "suggest_mode",
    "suggest_size",
    "suggest_text",
    "timeout",
    "include_named_queries_score",
    "track_scores",
    "track_total_hits",
    "allow_partial_search_results",
    "typed_keys",
    "version",
    "seq_no_primary_term",
    "request_cache",
    "batched_reduce_size",
    "max_concurrent_shard_requests",
    "pre_filter_shard_size",
    "rest_total_hits_as_int",
    "min_compatible_shard_node",
    "include_named_queries_score",
];
const COUNT: &[&str] = &[
    // Search statistics groups: accepted as on `_search`; `_stats` does not report groups.
    "stats",
    "ignore_unavailable",
    "ignore_throttled",
    "allow_no_indices",
    "expand_wildcards",
    "min_score",
    "preference",
    "routing",
    "q",
    "analyzer",
    "analyze_wildcard",
    "default_operator",
    "df",
    "lenient",
    "terminate_after",
];
const BULK: &[&str] = &[
    "wait_for_active_shards",
    "refresh",
    "routing",
    "timeout",
    "type",
    "_source",
    "_source_excludes",
    "_source_includes",
    "pipeline",
    "require_alias",
    "require_data_stream",
    "list_executed_pipelines",
    "include_source_on_error",
];
const ALIAS_GET: &[&str] = &[
    "ignore_unavailable",
    "allow_no_indices",
    "expand_wildcards",
    "local",
    "master_timeout",
];
const MASTER: &[&str] = &["timeout", "master_timeout"];
const CAT: &[&str] = &[
    "format",
    "h",
    "help",
    "s",
    "v",
    "bytes",
    "health",
    "pri",
    "time",
    "expand_wildcards",
    "local",
    "ts",
    "master_timeout",
    "include_unloaded_segments",
];

use Method as M;

const ROUTES: &[Route] = &[
    Route {
        methods: &[M::GET, M::HEAD],
        pattern: "/",
        api: Api::Info,
        params: &[],
    },
    Route {
        methods: &[M::GET],
        pattern: "/_cluster/health",
        api: Api::Health,
        params: &[
            "expand_wildcards",
            "level",
            "local",
            "master_timeout",
            "timeout",
            "wait_for_active_shards",
            "wait_for_nodes",
            "wait_for_events",
            "wait_for_no_relocating_shards",
            "wait_for_no_initializing_shards",
            "wait_for_status",
            "wait_for_relocating_shards",
            "return_200_for_cluster_health_timeout",
        ],
    },
    Route {
        methods: &[M::PUT],
        pattern: "/_cluster/settings",
        api: Api::PutClusterSettings,
        params: &["flat_settings", "master_timeout", "timeout"],
    },
    Route {
        methods: &[M::GET],
        pattern: "/_cluster/settings",
        api: Api::GetClusterSettings,
        params: &[
            "flat_settings",
            "include_defaults",
            "master_timeout",
            "timeout",
            "local",
        ],
    },
    Route {
        methods: &[M::GET],
        pattern: "/_cluster/health/{index}",
        api: Api::Health,
        params: &[
            "expand_wildcards",
            "level",
            "local",
            "master_timeout",
            "timeout",
            "wait_for_active_shards",
            "wait_for_nodes",
            "wait_for_events",
            "wait_for_no_relocating_shards",
            "wait_for_no_initializing_shards",
            "wait_for_status",
            "wait_for_relocating_shards",
            "return_200_for_cluster_health_timeout",
        ],
    },
    Route {
        methods: &[M::POST, M::PUT],
        pattern: "/_bulk",
        api: Api::Bulk,
        params: BULK,
    },
    Route {
        methods: &[M::POST, M::PUT],
        pattern: "/{index}/_bulk",
        api: Api::Bulk,
        params: BULK,
    },
    Route {
        methods: &[M::GET, M::POST],
        pattern: "/_mget",
        api: Api::Mget,
        params: &[
            "stored_fields",
            "preference",
            "realtime",
            "refresh",
            "routing",
            "_source",
            "_source_excludes",
            "_source_includes",
            "force_synthetic_source",
        ],
    },
    Route {
        methods: &[M::GET, M::POST],
        pattern: "/{index}/_mget",
        api: Api::Mget,
        params: &[
            "stored_fields",
            "preference",
            "realtime",
            "refresh",
            "routing",
            "_source",
            "_source_excludes",
            "_source_includes",
            "force_synthetic_source",
        ],
    },
    Route {
        methods: &[M::GET, M::POST],
        pattern: "/_search",
        api: Api::Search,
        params: SEARCH,
    },
    Route {
        methods: &[M::GET, M::POST],
        pattern: "/{index}/_search",
        api: Api::Search,
        params: SEARCH,
    },
    Route {
        methods: &[M::POST],
        pattern: "/{index}/_pit",
        api: Api::OpenPit,
        params: &[
            "keep_alive",
            "ignore_unavailable",
            "allow_no_indices",
            "expand_wildcards",
            "preference",
            "routing",
            "allow_partial_search_results",
            "max_concurrent_shard_requests",
        ],
    },
    Route {
        methods: &[M::POST],
        pattern: "/{index}/_close",
        api: Api::CloseIndex,
        params: OPEN_CLOSE,
    },
    Route {
        methods: &[M::POST],
        pattern: "/{index}/_open",
        api: Api::OpenIndex,
        params: OPEN_CLOSE,
    },
    Route {
        methods: &[M::DELETE],
        pattern: "/_pit",
        api: Api::ClosePit,
        params: &[],
    },
    Route {
        methods: &[M::GET, M::POST],
        pattern: "/_count",
        api: Api::Count,
        params: COUNT,
    },
    Route {
        methods: &[M::GET, M::POST],
        pattern: "/{index}/_count",
        api: Api::Count,
        params: COUNT,
    },
    Route {
        methods: &[M::GET, M::POST],
        pattern: "/_refresh",
        api: Api::Refresh,
        params: INDEX_OPTS,
    },
    Route {
        methods: &[M::GET, M::POST],
        pattern: "/{index}/_refresh",
        api: Api::Refresh,
        params: INDEX_OPTS,
    },
    Route {
        methods: &[M::POST],
        pattern: "/_aliases",
        api: Api::UpdateAliases,
        params: MASTER,
    },
    Route {
        methods: &[M::GET],
        pattern: "/_alias",
        api: Api::GetAlias,
        params: ALIAS_GET,
    },
    Route {
        methods: &[M::GET],
        pattern: "/_alias/{name}",
        api: Api::GetAlias,
        params: ALIAS_GET,
    },
    Route {
        methods: &[M::HEAD],
        pattern: "/_alias/{name}",
        api: Api::ExistsAlias,
        params: ALIAS_GET,
    },
    Route {
        methods: &[M::GET],
        pattern: "/{index}/_alias",
        api: Api::GetAlias,
        params: ALIAS_GET,
    },
    Route {
        methods: &[M::GET],
        pattern: "/{index}/_alias/{name}",
        api: Api::GetAlias,
        params: ALIAS_GET,
    },
    Route {
        methods: &[M::HEAD],
        pattern: "/{index}/_alias/{name}",
        api: Api::ExistsAlias,
        params: ALIAS_GET,
    },
    Route {
        methods: &[M::PUT, M::POST],
        pattern: "/{index}/_alias/{name}",
        api: Api::PutAlias,
        params: MASTER,
    },
    Route {
        methods: &[M::PUT, M::POST],
        pattern: "/{index}/_aliases/{name}",
        api: Api::PutAlias,
        params: MASTER,
    },
    Route {
        methods: &[M::DELETE],
        pattern: "/{index}/_alias/{name}",
        api: Api::DeleteAlias,
        params: MASTER,
    },
    Route {
        methods: &[M::DELETE],
        pattern: "/{index}/_aliases/{name}",
        api: Api::DeleteAlias,
        params: MASTER,
    },
    Route {
        methods: &[M::GET],
        pattern: "/_mapping",
        api: Api::GetMapping,
        params: &[
            "ignore_unavailable",
            "allow_no_indices",
            "expand_wildcards",
            "local",
            "master_timeout",
        ],
    },
    Route {
        methods: &[M::GET],
        pattern: "/{index}/_mapping",
        api: Api::GetMapping,
        params: &[
            "ignore_unavailable",
            "allow_no_indices",
            "expand_wildcards",
            "local",
            "master_timeout",
        ],
    },
    Route {
        methods: &[M::PUT, M::POST],
        pattern: "/{index}/_mapping",
        api: Api::PutMapping,
        params: &[
            "timeout",
            "master_timeout",
            "ignore_unavailable",
            "allow_no_indices",
            "expand_wildcards",
            "write_index_only",
        ],
    },
    Route {
        methods: &[M::GET],
        pattern: "/_settings",
        api: Api::GetSettings,
        params: &[
            "ignore_unavailable",
            "allow_no_indices",
            "expand_wildcards",
            "flat_settings",
            "local",
            "master_timeout",
            "include_defaults",
        ],
    },
    Route {
        methods: &[M::GET],
        pattern: "/{index}/_settings",
        api: Api::GetSettings,
        params: &[
            "ignore_unavailable",
            "allow_no_indices",
            "expand_wildcards",
            "flat_settings",
            "local",
            "master_timeout",
            "include_defaults",
        ],
    },
    Route {
        methods: &[M::GET],
        pattern: "/{index}/_settings/{name}",
        api: Api::GetSettings,
        params: &[
            "ignore_unavailable",
            "allow_no_indices",
            "expand_wildcards",
            "flat_settings",
            "local",
            "master_timeout",
            "include_defaults",
        ],
    },
    Route {
        methods: &[M::PUT],
        pattern: "/_settings",
        api: Api::PutSettings,
        params: &[
            "master_timeout",
            "timeout",
            "preserve_existing",
            "reopen",
            "ignore_unavailable",
            "allow_no_indices",
            "expand_wildcards",
            "flat_settings",
        ],
    },
    Route {
        methods: &[M::PUT],
        pattern: "/{index}/_settings",
        api: Api::PutSettings,
        params: &[
            "master_timeout",
            "timeout",
            "preserve_existing",
            "reopen",
            "ignore_unavailable",
            "allow_no_indices",
            "expand_wildcards",
            "flat_settings",
        ],
    },
    Route {
        methods: &[M::GET],
        pattern: "/_stats",
        api: Api::Stats,
        params: &[
            "completion_fields",
            "fielddata_fields",
            "fields",
            "groups",
            "level",
            "include_segment_file_sizes",
            "include_unloaded_segments",
            "expand_wildcards",
            "forbid_closed_indices",
        ],
    },
    Route {
        methods: &[M::GET],
        pattern: "/{index}/_stats",
        api: Api::Stats,
        params: &[
            "completion_fields",
            "fielddata_fields",
            "fields",
            "groups",
            "level",
            "include_segment_file_sizes",
            "include_unloaded_segments",
            "expand_wildcards",
            "forbid_closed_indices",
        ],
    },
    Route {
        methods: &[M::GET],
        pattern: "/{index}/_stats/{metric}",
        api: Api::Stats,
        params: &[
            "completion_fields",
            "fielddata_fields",
            "fields",
            "groups",
            "level",
            "include_segment_file_sizes",
            "include_unloaded_segments",
            "expand_wildcards",
            "forbid_closed_indices",
        ],
    },
    Route {
        methods: &[M::PUT, M::POST],
        pattern: "/{index}/_doc/{id}",
        api: Api::IndexDoc,
        params: INDEX_DOC,
    },
    Route {
        methods: &[M::POST],
        pattern: "/{index}/_doc",
        api: Api::IndexDoc,
        params: INDEX_DOC,
    },
    Route {
        methods: &[M::PUT, M::POST],
        pattern: "/{index}/_create/{id}",
        api: Api::CreateDoc,
        params: INDEX_DOC,
    },
    Route {
        methods: &[M::GET],
        pattern: "/{index}/_doc/{id}",
        api: Api::GetDoc,
        params: GET_DOC,
    },
    Route {
        methods: &[M::HEAD],
        pattern: "/{index}/_doc/{id}",
        api: Api::ExistsDoc,
        params: GET_DOC,
    },
    Route {
        methods: &[M::DELETE],
        pattern: "/{index}/_doc/{id}",
        api: Api::DeleteDoc,
        params: &[
            "wait_for_active_shards",
            "refresh",
            "routing",
            "timeout",
            "if_seq_no",
            "if_primary_term",
            "version",
            "version_type",
        ],
    },
    Route {
        methods: &[M::POST],
        pattern: "/{index}/_update/{id}",
        api: Api::UpdateDoc,
        params: &[
            "wait_for_active_shards",
            "_source",
            "_source_excludes",
            "_source_includes",
            "lang",
            "refresh",
            "retry_on_conflict",
            "routing",
            "timeout",
            "if_seq_no",
            "if_primary_term",
            "require_alias",
            "include_source_on_error",
        ],
    },
    Route {
        methods: &[M::GET],
        pattern: "/{index}/_source/{id}",
        api: Api::GetSource,
        params: GET_DOC,
    },
    Route {
        methods: &[M::HEAD],
        pattern: "/{index}/_source/{id}",
        api: Api::ExistsSource,
        params: GET_DOC,
    },
    Route {
        methods: &[M::GET],
        pattern: "/_capabilities",
        api: Api::Capabilities,
        params: &["method", "path", "parameters", "capabilities", "local_only"],
    },
    Route {
        methods: &[M::GET],
        pattern: "/_nodes",
        api: Api::Nodes,
        params: &["flat_settings", "timeout", "filter_path"],
    },
    Route {
        methods: &[M::GET],
        pattern: "/_nodes/{metric}",
        api: Api::Nodes,
        params: &["flat_settings", "timeout"],
    },
    Route {
        methods: &[M::GET],
        pattern: "/_cat/indices",
        api: Api::CatIndices,
        params: CAT,
    },
    Route {
        methods: &[M::GET],
        pattern: "/_cat/indices/{index}",
        api: Api::CatIndices,
        params: CAT,
    },
    Route {
        methods: &[M::GET],
        pattern: "/_cat/health",
        api: Api::CatHealth,
        params: CAT,
    },
    Route {
        methods: &[M::GET],
        pattern: "/_cat/aliases",
        api: Api::CatAliases,
        params: CAT,
    },
    Route {
        methods: &[M::GET],
        pattern: "/_cat/aliases/{name}",
        api: Api::CatAliases,
        params: CAT,
    },
    Route {
        methods: &[M::GET],
        pattern: "/_cat/count",
        api: Api::CatCount,
        params: CAT,
    },
    Route {
        methods: &[M::GET],
        pattern: "/_cat/count/{index}",
        api: Api::CatCount,
        params: CAT,
    },
    Route {
        methods: &[M::PUT],
        pattern: "/{index}",
        api: Api::CreateIndex,
        params: &["timeout", "master_timeout", "wait_for_active_shards"],
    },
    Route {
        methods: &[M::DELETE],
        pattern: "/{index}",
        api: Api::DeleteIndex,
        params: &[
            "timeout",
            "master_timeout",
            "ignore_unavailable",
            "allow_no_indices",
            "expand_wildcards",
        ],
    },
    Route {
        methods: &[M::GET],
        pattern: "/{index}",
        api: Api::GetIndex,
        params: &[
            "local",
            "ignore_unavailable",
            "allow_no_indices",
            "expand_wildcards",
            "features",
            "flat_settings",
            "include_defaults",
            "master_timeout",
        ],
    },
    Route {
        methods: &[M::HEAD],
        pattern: "/{index}",
        api: Api::ExistsIndex,
        params: &[
            "local",
            "ignore_unavailable",
            "allow_no_indices",
            "expand_wildcards",
            "flat_settings",
            "include_defaults",
        ],
    },
    Route {
        methods: &[M::GET],
        pattern: "/_devserver/stats",
        api: Api::DevStats,
        params: &[],
    },
    Route {
        methods: &[M::DELETE],
        pattern: "/_devserver/stats",
        api: Api::DevStatsReset,
        params: &[],
    },
    Route {
        methods: &[M::GET],
        pattern: "/_devserver/faults",
        api: Api::DevFaultsGet,
        params: &[],
    },
    Route {
        methods: &[M::PUT, M::POST],
        pattern: "/_devserver/faults",
        api: Api::DevFaultsPut,
        params: &[],
    },
    Route {
        methods: &[M::DELETE],
        pattern: "/_devserver/faults",
        api: Api::DevFaultsDelete,
        params: &[],
    },
    Route {
        methods: &[M::POST],
        pattern: "/_devserver/reset",
        api: Api::DevReset,
        params: &[],
    },
    Route {
        methods: &[M::GET],
        pattern: "/_devserver/dump/{index}",
        api: Api::DevDump,
        params: &[],
    },
];

enum RouteMatch {
    Found(&'static Route, Vec<(&'static str, String)>),
    WrongMethod(Vec<Method>),
    None,
}

fn match_pattern(
    pattern: &'static str,
    segs: &[String],
) -> Option<(Vec<(&'static str, String)>, Vec<bool>)> {
    let pat: Vec<&'static str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    if pat.len() != segs.len() {
        return None;
    }
    let mut parts = Vec::new();
    let mut literal = Vec::new();
    for (p, s) in pat.iter().zip(segs) {
        if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            if s.is_empty() {
                return None;
            }
            parts.push((name, s.clone()));
            literal.push(false);
        } else if *p == s {
            literal.push(true);
        } else {
            return None;
        }
    }
    Some((parts, literal))
}

fn route(method: &Method, segs: &[String]) -> RouteMatch {
    // Elasticsearch's path trie prefers literal segments over wildcards, position by
    // position; among the matching paths the first that accepts the method wins.
    let mut matches: Vec<(&'static Route, Vec<(&'static str, String)>, Vec<bool>)> = ROUTES
        .iter()
        .filter_map(|r| match_pattern(r.pattern, segs).map(|(p, l)| (r, p, l)))
        .collect();
    matches.sort_by(|a, b| b.2.cmp(&a.2));
    let lookup = if *method == Method::HEAD {
        &[Method::HEAD][..]
    } else {
        std::slice::from_ref(method)
    };
    for (r, parts, _) in &matches {
        if r.methods.iter().any(|m| lookup.contains(m)) {
            return RouteMatch::Found(r, parts.clone());
        }
    }
    if matches.is_empty() {
        return RouteMatch::None;
    }
    let mut allowed: Vec<Method> = Vec::new();
    for (r, _, _) in &matches {
        for m in r.methods {
            if !allowed.contains(m) {
                allowed.push(m.clone());
            }
        }
    }
    RouteMatch::WrongMethod(allowed)
}

/// Capabilities and parameters of the route `method path` (`_capabilities`).
pub(crate) fn route_capabilities(
    method: &str,
    path: &str,
) -> Option<(&'static [&'static str], &'static [&'static str])> {
    let r = ROUTES
        .iter()
        .find(|r| r.pattern == path && r.methods.iter().any(|m| m.as_str() == method))?;
    let caps: &'static [&'static str] = match r.api {
        Api::CreateIndex => &["lookup_index_mode"],
        _ => &[],
    };
    Some((caps, r.params))
}

fn fault_targets(api: Api) -> &'static [FaultTarget] {
    match api {
        Api::Bulk => &[FaultTarget::Bulk],
        Api::Search | Api::Count => &[FaultTarget::Search],
        Api::IndexDoc | Api::CreateDoc | Api::DeleteDoc | Api::UpdateDoc => &[FaultTarget::Write],
        Api::GetDoc | Api::ExistsDoc | Api::GetSource | Api::ExistsSource | Api::Mget => {
            &[FaultTarget::Read]
        }
        _ => &[],
    }
}

fn is_devserver(api: Api) -> bool {
    matches!(
        api,
        Api::DevStats
            | Api::DevStatsReset
            | Api::DevFaultsGet
            | Api::DevFaultsPut
            | Api::DevFaultsDelete
            | Api::DevReset
            | Api::DevDump
    )
}

/// The server state behind the HTTP layer.
#[derive(Debug)]
pub struct Node {
    /// Indices and aliases.
    pub cluster: Cluster,
    /// Fault rules and counters.
    pub faults: Faults,
    /// Configuration.
    pub config: Config,
    /// When the node started.
    pub started: Instant,
    /// The address clients reach it at (for `_nodes`).
    pub publish_address: parking_lot::Mutex<String>,
    /// Open points in time.
    pub pits: crate::pit::PitStore,
}

fn content_type_ok(ct: &str) -> bool {
    let base = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        base.as_str(),
        "application/json"
            | "application/x-ndjson"
            | "application/vnd.elasticsearch+json"
            | "application/vnd.elasticsearch+x-ndjson"
    )
}

fn split_path(path: &str) -> Result<Vec<String>, EsError> {
    let mut segs = Vec::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        let dec = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| {
                EsError::illegal_argument(format!("unable to decode path segment [{raw}]"))
            })?;
        segs.push(dec.into_owned());
    }
    Ok(segs)
}

impl Node {
    /// `action.destructive_requires_name`: the cluster setting, else the start flag.
    pub fn destructive_requires_name(&self) -> bool {
        match self
            .cluster
            .settings
            .read()
            .get("action.destructive_requires_name")
        {
            Some(v) => v == "true",
            None => self.config.destructive_requires_name,
        }
    }

    /// `action.auto_create_index`: whether a write may create the index `name`.
    pub fn check_auto_create(&self, name: &str) -> EsResult<()> {
        let raw = self
            .cluster
            .settings
            .read()
            .get("action.auto_create_index")
            .map(str::to_string);
        match raw {
            None => Ok(()),
            Some(raw) => crate::cluster_settings::AutoCreate::parse(&raw)?.check(&raw, name),
        }
    }

    /// A node with the given configuration.
    pub fn new(config: Config) -> Node {
        Node {
            cluster: Cluster::new(&config.cluster_name),
            faults: Faults::new(config.faults.clone(), config.fault_seed),
            config,
            started: Instant::now(),
            publish_address: parking_lot::Mutex::new(String::from("127.0.0.1:9200")),
            pits: crate::pit::PitStore::default(),
        }
    }

    /// Handles one request: `method`, `uri` (path and query), headers and the full body.
    pub async fn handle(&self, method: Method, uri: &str, headers: HeaderMap, body: Bytes) -> Resp {
        let mut resp = match self.handle_inner(method.clone(), uri, headers, body).await {
            Ok(r) => r,
            Err(e) => Resp::error(&e),
        };
        if method == Method::HEAD {
            resp.body = Bytes::new();
        }
        resp
    }

    async fn handle_inner(
        &self,
        method: Method,
        uri: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> EsResult<Resp> {
        let (path, query) = match uri.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (uri, None),
        };
        let path = if path.is_empty() { "/" } else { path };
        let segs = split_path(path)?;
        let params = Params::parse(query);
        let (route, parts) = match route(&method, &segs) {
            RouteMatch::Found(r, p) => (r, p),
            RouteMatch::WrongMethod(allowed) => {
                let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
                if method == Method::OPTIONS {
                    return Ok(Resp::empty(200).with_header("Allow", &names.join(",")));
                }
                let msg = format!(
                    "Incorrect HTTP method for uri [{uri}] and method [{method}], allowed: [{}]",
                    names.join(", ")
                );
                let mut e = EsError::simple(405, msg);
                e.status = 405;
                return Ok(Resp::error(&e).with_header("Allow", &names.join(",")));
            }
            RouteMatch::None => {
                let body = serde_json::json!({
                    "error": format!("no handler found for uri [{uri}] and method [{method}]")
                });
                return Ok(Resp::json(400, &body));
            }
        };
        let api = route.api;
        let dev = is_devserver(api);
        // Bodies: decompress, then check the content type as Elasticsearch does.
        let body = decode_body(&headers, body, self.config.max_content_length as u64)?;
        if !body.is_empty() {
            let cts: Vec<&str> = headers
                .get_all(http::header::CONTENT_TYPE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            match cts.as_slice() {
                [] => return Err(EsError::simple(406, "Content-Type header is missing")),
                [ct] if content_type_ok(ct) => {}
                other => {
                    return Err(EsError::simple(
                        406,
                        format!("Content-Type header [{}] is not supported", other.join(",")),
                    ))
                }
            }
        }
        let mut req = Req {
            method: method.clone(),
            path: path.to_string(),
            uri: uri.to_string(),
            params,
            body,
            headers,
            parts,
        };
        // `source` + `source_content_type` carry a body in the query string.
        if !req.has_body() {
            if let Some(src) = req.params.get("source") {
                if !req.params.has("source_content_type") {
                    return Err(EsError::illegal_argument(
                        "source and source_content_type parameters are required",
                    ));
                }
                req.body = Bytes::from(src.to_string());
            }
        }
        req.params.check_allowed(path, route.params)?;
        let targets = fault_targets(api);
        let mut cut = false;
        if !dev {
            self.faults.count_request(targets);
            if let Some(f) = self.faults.for_request(targets) {
                match f.kind {
                    FaultKind::Delay => tokio::time::sleep(f.delay).await,
                    FaultKind::Close => cut = true,
                    k => {
                        let what = format!("{} {}", method, path);
                        if let Some(e) = k.error(&what) {
                            return Err(e);
                        }
                    }
                }
            }
        }
        let mut resp = api::dispatch(self, api, &req).await?;
        if resp.json && !resp.body.is_empty() {
            let pretty = req.params.bool_or("pretty", false).unwrap_or(false);
            let filter = req.params.get("filter_path");
            if pretty || filter.is_some() {
                if let Ok(mut v) = serde_json::from_slice::<Value>(&resp.body) {
                    if let Some(f) = filter {
                        v = crate::json::filter_path(&v, f);
                    }
                    let out = if pretty {
                        let mut s = serde_json::to_vec_pretty(&v).unwrap_or_default();
                        s.push(b'\n');
                        s
                    } else {
                        serde_json::to_vec(&v).unwrap_or_default()
                    };
                    resp.body = Bytes::from(out);
                }
            }
        }
        resp.cut = cut;
        Ok(resp)
    }
}

fn decode_body(headers: &HeaderMap, body: Bytes, limit: u64) -> EsResult<Bytes> {
    let enc = headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_ascii_lowercase());
    match enc.as_deref() {
        None | Some("") | Some("identity") => Ok(body),
        Some("gzip") | Some("x-gzip") => {
            use std::io::Read;
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&body[..])
                .take(limit.saturating_add(1))
                .read_to_end(&mut out)
                .map_err(|e| {
                    EsError::illegal_argument(format!("failed to decompress the request body: {e}"))
                })?;
            too_large(&out, limit)?;
            Ok(Bytes::from(out))
        }
        Some("deflate") => {
            use std::io::Read;
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(&body[..])
                .take(limit.saturating_add(1))
                .read_to_end(&mut out)
                .map_err(|e| {
                    EsError::illegal_argument(format!("failed to decompress the request body: {e}"))
                })?;
            too_large(&out, limit)?;
            Ok(Bytes::from(out))
        }
        Some(other) => Err(EsError::illegal_argument(format!(
            "Unsupported Content-Encoding [{other}]"
        ))),
    }
}

fn too_large(out: &[u8], limit: u64) -> EsResult<()> {
    if out.len() as u64 > limit {
        return Err(EsError::simple(
            413,
            "request body is too large after decompression",
        ));
    }
    Ok(())
}

/// Shared handle to a node.
pub type NodeRef = Arc<Node>;
