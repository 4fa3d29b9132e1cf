//! The `_bulk` NDJSON parser, following Elasticsearch's `BulkRequestParser`: the same line
//! numbering and error messages, document sources kept as byte slices of the request.

use serde_json::Value;

use crate::error::{EsError, EsResult};
use crate::index::{VersionType, Versioning};
use crate::json::token_name;

/// The action of a bulk item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `index` (the response key is `index`).
    Index,
    /// `create`, or `index` with `op_type: create` (the response key is `create`).
    Create,
    /// `update`.
    Update,
    /// `delete`.
    Delete,
}

impl Action {
    /// The key of the item in the response.
    pub fn key(self) -> &'static str {
        match self {
            Action::Index => "index",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// One parsed bulk item.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkItem<'a> {
    /// Action.
    pub action: Action,
    /// Target index (or alias), after defaults.
    pub index: Option<String>,
    /// `_id`.
    pub id: Option<String>,
    /// Routing.
    pub routing: Option<String>,
    /// Versioning parameters.
    pub versioning: Versioning,
    /// `require_alias`.
    pub require_alias: bool,
    /// Ingest pipeline.
    pub pipeline: Option<String>,
    /// The document line (index/create), exactly as sent without a trailing `\r`.
    pub source: Option<&'a [u8]>,
    /// The parsed update body (update).
    pub update: Option<Value>,
    /// 1-based line number of the action line.
    pub line: usize,
    /// `dynamic_templates`: the template (by name) for a new field at a path.
    pub dynamic_templates: Option<std::collections::BTreeMap<String, String>>,
}

/// Defaults from the URL (`/{index}/_bulk?routing=..&require_alias=..&pipeline=..`).
#[derive(Debug, Clone, Default)]
pub struct BulkDefaults {
    /// Default index.
    pub index: Option<String>,
    /// Default routing.
    pub routing: Option<String>,
    /// Default `require_alias`.
    pub require_alias: bool,
    /// Default pipeline.
    pub pipeline: Option<String>,
}

fn malformed(line: usize, msg: String) -> EsError {
    EsError::illegal_argument(format!("Malformed action/metadata line [{line}], {msg}"))
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn long_of(v: &Value, field: &str) -> EsResult<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                    .map(|f| f as i64)
            })
            .ok_or_else(|| {
                EsError::illegal_argument(format!("Numeric value ({n}) out of range of long"))
            }),
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| EsError::illegal_argument(format!("For input string: \"{s}\"")))
            .map_err(|e| {
                e.caused_by(EsError::illegal_argument(format!(
                    "failed to parse [{field}]"
                )))
            }),
        other => Err(EsError::illegal_argument(format!(
            "Current token ({}) not numeric, can not use numeric value accessors",
            token_name(other)
        ))),
    }
}

fn bool_of(v: &Value) -> EsResult<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        other => Err(EsError::illegal_argument(format!(
            "Failed to parse value [{}] as only [true] or [false] are allowed.",
            text_of(other)
        ))),
    }
}

/// The error for a line that is not valid JSON.
fn line_parse_error(e: &serde_json::Error) -> EsError {
    let msg = crate::json::describe_serde_error(e);
    EsError::x_content_parse(format!("[{}:{}] {msg}", e.line().max(1), e.column().max(1)))
        .caused_by(EsError::new(400, "json_parse_exception", msg))
}

fn trim_cr(line: &[u8]) -> &[u8] {
    match line.split_last() {
        Some((b'\r', rest)) => rest,
        _ => line,
    }
}

/// Parses a bulk body. Errors are whole-request errors (400), as in Elasticsearch.
pub fn parse_bulk<'a>(data: &'a [u8], defaults: &BulkDefaults) -> EsResult<Vec<BulkItem<'a>>> {
    let mut items = Vec::new();
    let mut from = 0usize;
    let mut line = 0usize;
    let next_marker = |from: usize| -> EsResult<Option<usize>> {
        match data
            .get(from..)
            .and_then(|rest| memchr::memchr(b'\n', rest))
        {
            Some(p) => Ok(Some(from + p)),
            None => {
                if from < data.len() {
                    Err(EsError::illegal_argument(
                        "The bulk request must be terminated by a newline [\\n]",
                    ))
                } else {
                    Ok(None)
                }
            }
        }
    };
    while let Some(end) = next_marker(from)? {
        line += 1;
        let action_line = data.get(from..end).unwrap_or_default();
        from = end + 1;
        if action_line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v: Value = match serde_json::from_slice(action_line) {
            Ok(v) => v,
            Err(e) => {
                // Trailing data after a valid object is tolerated in 8.x; anything else is a
                // parse error.
                let mut de = serde_json::Deserializer::from_slice(action_line).into_iter::<Value>();
                match de.next() {
                    Some(Ok(v)) => v,
                    _ => return Err(line_parse_error(&e)),
                }
            }
        };
        let obj = match &v {
            Value::Object(m) => m,
            other => {
                return Err(malformed(
                    line,
                    format!("expected START_OBJECT but found [{}]", token_name(other)),
                ));
            }
        };
        let Some((action_name, params)) = obj.iter().next() else {
            return Err(malformed(
                line,
                "expected FIELD_NAME but found [END_OBJECT]".into(),
            ));
        };
        let mut action = match action_name.as_str() {
            "index" => Action::Index,
            "create" => Action::Create,
            "update" => Action::Update,
            "delete" => Action::Delete,
            other => {
                return Err(malformed(
                    line,
                    format!(
                    "expected field [create], [delete], [index] or [update] but found [{other}]"
                ),
                ))
            }
        };
        let mut item = BulkItem {
            action,
            index: defaults.index.clone(),
            id: None,
            routing: defaults.routing.clone(),
            versioning: Versioning::default(),
            require_alias: defaults.require_alias,
            pipeline: defaults.pipeline.clone(),
            source: None,
            update: None,
            line,
            dynamic_templates: None,
        };
        let mut op_type: Option<String> = None;
        match params {
            Value::Object(p) => {
                for (k, val) in p {
                    match val {
                        Value::Null => continue,
                        Value::Array(_) => {
                            return Err(malformed(
                                line,
                                format!("expected a simple value for field [{k}] but found [START_ARRAY]"),
                            ))
                        }
                        Value::Object(_) if k != "_source" && k != "dynamic_templates" => {
                            return Err(malformed(
                                line,
                                format!("expected a simple value for field [{k}] but found [START_OBJECT]"),
                            ))
                        }
                        _ => {}
                    }
                    match k.as_str() {
                        "_index" => item.index = Some(text_of(val)),
                        "_id" => item.id = Some(text_of(val)),
                        "routing" => item.routing = Some(text_of(val)),
                        "op_type" => op_type = Some(text_of(val)),
                        "version" => item.versioning.version = Some(long_of(val, k)?),
                        "version_type" => {
                            item.versioning.version_type = VersionType::parse(&text_of(val))?
                        }
                        "if_seq_no" => item.versioning.if_seq_no = Some(long_of(val, k)?),
                        "if_primary_term" => {
                            item.versioning.if_primary_term = Some(long_of(val, k)?)
                        }
                        "retry_on_conflict" => {
                            long_of(val, k)?;
                        }
                        "pipeline" => item.pipeline = Some(text_of(val)),
                        "require_alias" => item.require_alias = bool_of(val)?,
                        "require_data_stream" | "list_executed_pipelines" => {
                            bool_of(val)?;
                        }
                        "dynamic_templates" => {
                            let Value::Object(m) = val else {
                                return Err(malformed(
                                    line,
                                    format!(
                                        "expected a map for field [{k}] but found [{}]",
                                        crate::json::token_name(val)
                                    ),
                                ));
                            };
                            let mut named = std::collections::BTreeMap::new();
                            for (path, name) in m {
                                let Value::String(name) = name else {
                                    return Err(malformed(
                                        line,
                                        format!("expected a string for the template of [{path}] in [{k}]"),
                                    ));
                                };
                                named.insert(path.clone(), name.clone());
                            }
                            item.dynamic_templates = Some(named);
                        }
                        "_source" => {}
                        other => {
                            return Err(EsError::illegal_argument(format!(
                            "Action/metadata line [{line}] contains an unknown parameter [{other}]"
                        )))
                        }
                    }
                }
            }
            other => {
                return Err(malformed(
                    line,
                    format!(
                        "expected START_OBJECT or END_OBJECT but found [{}]",
                        token_name(other)
                    ),
                ))
            }
        }
        if action == Action::Delete {
            items.push(item);
            continue;
        }
        if action == Action::Index {
            match op_type.as_deref() {
                None | Some("index") => {}
                Some("create") => action = Action::Create,
                Some(other) => {
                    return Err(EsError::illegal_argument(format!(
                        "opType must be 'create' or 'index', found: [{other}]"
                    )))
                }
            }
        }
        item.action = action;
        if action == Action::Update
            && (item.versioning.version.is_some()
                || item.versioning.version_type != VersionType::Internal)
        {
            return Err(EsError::illegal_argument(
                "Update requests do not support versioning. Please use `if_seq_no` and `if_primary_term` instead",
            ));
        }
        // The document line.
        let Some(end) = next_marker(from)? else { break };
        line += 1;
        let doc = trim_cr(data.get(from..end).unwrap_or_default());
        from = end + 1;
        if action == Action::Update {
            let body: Value = serde_json::from_slice(doc).map_err(|e| line_parse_error(&e))?;
            validate_update_body(&body)?;
            item.update = Some(body);
        } else {
            item.source = Some(doc);
        }
        items.push(item);
    }
    Ok(items)
}

/// Checks the keys of an update body (`doc`, `upsert`, `doc_as_upsert`, ...).
pub fn validate_update_body(body: &Value) -> EsResult<()> {
    let Value::Object(m) = body else {
        return Err(EsError::x_content_parse(format!(
            "[1:1] [UpdateRequest] Expected START_OBJECT but found [{}]",
            token_name(body)
        )));
    };
    for (k, v) in m {
        match k.as_str() {
            "doc" | "upsert" => {
                if !v.is_object() {
                    return Err(EsError::x_content_parse(format!(
                        "[1:2] [UpdateRequest] failed to parse field [{k}]"
                    ))
                    .caused_by(EsError::new(
                        400,
                        "parse_exception",
                        format!("Expected START_OBJECT but found [{}]", token_name(v)),
                    )));
                }
            }
            "doc_as_upsert" | "detect_noop" | "scripted_upsert" => {
                if !matches!(v, Value::Bool(_))
                    && !matches!(v, Value::String(s) if s == "true" || s == "false")
                {
                    return Err(EsError::x_content_parse(format!(
                        "[1:2] [UpdateRequest] failed to parse field [{k}]"
                    )));
                }
            }
            "script" | "_source" | "lang" | "params" => {}
            other => {
                return Err(EsError::x_content_parse(format!(
                    "[1:2] [UpdateRequest] unknown field [{other}]"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> EsResult<Vec<BulkItem<'_>>> {
        parse_bulk(s.as_bytes(), &BulkDefaults::default())
    }

    #[test]
    fn basic() {
        let items = parse("{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"f\":1}\r\n{\"delete\":{\"_index\":\"a\",\"_id\":\"2\"}}\n\n{\"create\":{}}\n{}\n").unwrap_or_default();
        assert_eq!(items.len(), 3);
        assert_eq!(
            items.first().and_then(|i| i.source),
            Some(&b"{\"f\":1}"[..])
        );
        assert_eq!(items.get(1).map(|i| i.action), Some(Action::Delete));
        assert_eq!(items.get(2).map(|i| i.line), Some(5));
    }

    #[test]
    fn errors() {
        let e = |s: &str| parse(s).err().map(|e| e.reason).unwrap_or_default();
        assert_eq!(
            e("{\"index\":{}}\n{}"),
            "The bulk request must be terminated by a newline [\\n]"
        );
        assert_eq!(
            e("{\"index\":{\"_index\":\"t\"}}\n{\"f\":1}\n{}\n"),
            "Malformed action/metadata line [3], expected FIELD_NAME but found [END_OBJECT]"
        );
        assert_eq!(
            e("{\"index\":1}\n"),
            "Malformed action/metadata line [1], expected START_OBJECT or END_OBJECT but found [VALUE_NUMBER_INT]"
        );
        assert_eq!(
            e("[]\n"),
            "Malformed action/metadata line [1], expected START_OBJECT but found [START_ARRAY]"
        );
        assert_eq!(
            e("{\"foo\":{}}\n"),
            "Malformed action/metadata line [1], expected field [create], [delete], [index] or [update] but found [foo]"
        );
        assert_eq!(
            e("{\"index\":{\"bar\":1}}\n{}\n"),
            "Action/metadata line [1] contains an unknown parameter [bar]"
        );
        assert!(parse("{\"index\":\n").is_err());
    }
}
