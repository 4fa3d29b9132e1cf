//! Elasticsearch-shaped errors: `{"error":{"root_cause":[..],"type":..,"reason":..},"status":N}`.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// An error as Elasticsearch reports it: an HTTP status, an exception type in snake case, a
/// reason, metadata fields (`index`, `index_uuid`, `shard`, ...) and an optional cause.
#[derive(Debug, Clone, PartialEq)]
pub struct EsError {
    /// HTTP status code.
    pub status: u16,
    /// The exception type, e.g. `index_not_found_exception`.
    pub kind: Cow<'static, str>,
    /// The human-readable reason.
    pub reason: String,
    /// Extra fields, in order, next to `type` and `reason`.
    pub meta: Vec<(Cow<'static, str>, Value)>,
    /// The wrapped cause, serialized as `caused_by`.
    pub caused_by: Option<Box<EsError>>,
    /// Explicit root causes; by default the error itself (without its cause).
    pub root_cause: Option<Vec<EsError>>,
    /// When set, the body is the simple form `{"error":"<reason>","status":N}`.
    pub simple: bool,
}

impl EsError {
    /// A new error with the given status, type and reason.
    pub fn new(status: u16, kind: impl Into<Cow<'static, str>>, reason: impl Into<String>) -> Self {
        EsError {
            status,
            kind: kind.into(),
            reason: reason.into(),
            meta: Vec::new(),
            caused_by: None,
            root_cause: None,
            simple: false,
        }
    }

    /// The simple error form used by the REST layer (`{"error":"..","status":N}`).
    pub fn simple(status: u16, reason: impl Into<String>) -> Self {
        let mut e = EsError::new(status, "", reason);
        e.simple = true;
        e
    }

    /// Adds a metadata field.
    pub fn with_meta(mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Value>) -> Self {
        self.meta.push((key.into(), value.into()));
        self
    }

    /// Sets the cause.
    pub fn caused_by(mut self, cause: EsError) -> Self {
        self.caused_by = Some(Box::new(cause));
        self
    }

    /// Adds the `index_uuid`/`shard`/`index` metadata that shard-level errors carry.
    pub fn with_shard(self, index: &str, uuid: &str) -> Self {
        self.with_meta("index_uuid", uuid)
            .with_meta("shard", "0")
            .with_meta("index", index)
    }

    /// `illegal_argument_exception` (400).
    pub fn illegal_argument(reason: impl Into<String>) -> Self {
        EsError::new(400, "illegal_argument_exception", reason)
    }

    /// `parse_exception` (400).
    pub fn parse(reason: impl Into<String>) -> Self {
        EsError::new(400, "parse_exception", reason)
    }

    /// `parsing_exception` (400), the query DSL's parse error.
    pub fn parsing(reason: impl Into<String>) -> Self {
        EsError::new(400, "parsing_exception", reason)
    }

    /// `x_content_parse_exception` (400).
    pub fn x_content_parse(reason: impl Into<String>) -> Self {
        EsError::new(400, "x_content_parse_exception", reason)
    }

    /// `action_request_validation_exception` (400) with numbered validation errors.
    pub fn validation(errors: &[String]) -> Self {
        let mut reason = String::from("Validation Failed: ");
        for (i, e) in errors.iter().enumerate() {
            reason.push_str(&format!("{}: {};", i + 1, e));
        }
        EsError::new(400, "action_request_validation_exception", reason)
    }

    /// `index_not_found_exception` (404).
    pub fn index_not_found(name: &str) -> Self {
        EsError::new(
            404,
            "index_not_found_exception",
            format!("no such index [{name}]"),
        )
        .with_meta("resource.type", "index_or_alias")
        .with_meta("resource.id", name)
        .with_meta("index_uuid", "_na_")
        .with_meta("index", name)
    }

    /// `invalid_index_name_exception` (400).
    pub fn invalid_index_name(name: &str, desc: &str) -> Self {
        EsError::new(
            400,
            "invalid_index_name_exception",
            format!("Invalid index name [{name}], {desc}"),
        )
        .with_meta("index_uuid", "_na_")
        .with_meta("index", name)
    }

    /// `invalid_alias_name_exception` (400).
    pub fn invalid_alias_name(name: &str, desc: &str) -> Self {
        EsError::new(
            400,
            "invalid_alias_name_exception",
            format!("Invalid alias name [{name}]: {desc}"),
        )
    }

    /// `resource_already_exists_exception` (400).
    pub fn already_exists(name: &str, uuid: &str) -> Self {
        EsError::new(
            400,
            "resource_already_exists_exception",
            format!("index [{name}/{uuid}] already exists"),
        )
        .with_meta("index_uuid", uuid)
        .with_meta("index", name)
    }

    /// `version_conflict_engine_exception` (409).
    pub fn version_conflict(id: &str, explanation: &str, index: &str, uuid: &str) -> Self {
        EsError::new(
            409,
            "version_conflict_engine_exception",
            format!("[{id}]: version conflict, {explanation}"),
        )
        .with_shard(index, uuid)
    }

    /// `es_rejected_execution_exception` (429).
    pub fn rejected(reason: impl Into<String>) -> Self {
        EsError::new(429, "es_rejected_execution_exception", reason)
    }

    /// Wraps a shard-level failure as `search_phase_execution_exception`, as a search that
    /// failed on every shard reports it.
    pub fn search_phase(cause: EsError, index: &str) -> Self {
        let status = cause.status;
        let shard_failure = serde_json::json!({
            "shard": 0,
            "index": index,
            "node": crate::node::NODE_ID,
            "reason": cause.inner_json(true),
        });
        let mut e = EsError::new(
            status,
            "search_phase_execution_exception",
            "all shards failed",
        )
        .with_meta("phase", "query")
        .with_meta("grouped", true)
        .with_meta("failed_shards", Value::Array(vec![shard_failure]));
        e.root_cause = Some(vec![cause.clone()]);
        e.caused_by = Some(Box::new(cause));
        e
    }

    /// The error object (`type`, `reason`, metadata, `caused_by`), as it appears under
    /// `error`, inside `root_cause` (without cause) or as a bulk item's `error`.
    pub fn inner_json(&self, with_cause: bool) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), Value::String(self.kind.to_string()));
        m.insert("reason".into(), Value::String(self.reason.clone()));
        for (k, v) in &self.meta {
            m.insert(k.to_string(), v.clone());
        }
        if with_cause {
            if let Some(c) = &self.caused_by {
                m.insert("caused_by".into(), c.inner_json(true));
            }
        }
        Value::Object(m)
    }

    /// The full response body.
    pub fn to_json(&self) -> Value {
        if self.simple {
            let mut m = Map::new();
            m.insert("error".into(), Value::String(self.reason.clone()));
            m.insert("status".into(), Value::from(self.status));
            return Value::Object(m);
        }
        let roots: Vec<Value> = match &self.root_cause {
            Some(r) => r.iter().map(|e| e.inner_json(false)).collect(),
            None => vec![self.root_inner()],
        };
        let mut m = Map::new();
        m.insert("root_cause".into(), Value::Array(roots));
        if let Value::Object(inner) = self.inner_json(true) {
            m.extend(inner);
        }
        let mut top = Map::new();
        top.insert("error".into(), Value::Object(m));
        top.insert("status".into(), Value::from(self.status));
        Value::Object(top)
    }

    fn root_inner(&self) -> Value {
        // Elasticsearch reports the deepest Elasticsearch exception as the root cause; plain
        // Java exceptions in the chain (illegal_argument_exception, ...) are not roots when an
        // Elasticsearch exception wraps them.
        self.inner_json(false)
    }

    /// The body serialized as bytes.
    pub fn to_body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_json()).unwrap_or_default()
    }
}

impl std::fmt::Display for EsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.kind, self.status, self.reason)
    }
}

impl std::error::Error for EsError {}

/// Result alias for handlers.
pub type EsResult<T> = Result<T, EsError>;
