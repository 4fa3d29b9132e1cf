//! Reading a bulk response: what became of each item, and of the request as a whole.
//!
//! The table in the crate README is the contract; `classify_item` implements it. The rule
//! of thumb: anything that can succeed later (overload, outage, cluster block, missing
//! alias, unknown status) is retried, because retrying never loses data; only errors that
//! are about the document itself and will fail the same way every time are dead-lettered.

use serde::Deserialize;
use syncline_consumer::Outcome;

use crate::bulk::Action;

/// What an item did, for the `bulk items by result` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemResult {
    /// A new document (or tombstone) was written.
    Created,
    /// An existing document was replaced.
    Updated,
    /// A document was deleted (mode `delete`) or replaced by a tombstone (mode `tombstone`).
    Deleted,
    /// Version conflict: the index already held this version or a newer one.
    Conflict,
    /// Delete of a document that does not exist.
    NotFound,
    /// Any failure (retried or dead-lettered).
    Error,
}

impl ItemResult {
    /// Every result, for registering metric series up front.
    pub const ALL: [ItemResult; 6] = [
        ItemResult::Created,
        ItemResult::Updated,
        ItemResult::Deleted,
        ItemResult::Conflict,
        ItemResult::NotFound,
        ItemResult::Error,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemResult::Created => "created",
            ItemResult::Updated => "updated",
            ItemResult::Deleted => "deleted",
            ItemResult::Conflict => "conflict",
            ItemResult::NotFound => "not_found",
            ItemResult::Error => "error",
        }
    }
}

/// The classification of one bulk item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemVerdict {
    /// What the runtime should do with the event.
    pub outcome: Outcome,
    /// What happened, for metrics.
    pub result: ItemResult,
    /// The target alias/index does not exist (the alias cache entry must be dropped so
    /// the next attempt bootstraps it again).
    pub index_missing: bool,
}

/// An item's `error` object (only the parts that matter here).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// Elasticsearch's exception type, e.g. `mapper_parsing_exception`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Human-readable reason.
    #[serde(default)]
    pub reason: Option<String>,
    /// The underlying cause, which usually says which field was wrong.
    #[serde(default)]
    pub caused_by: Option<Box<ErrorBody>>,
}

impl ErrorBody {
    /// `type: reason (caused by type: reason)`, the text sent to the DLQ and logs.
    pub fn describe(&self) -> String {
        let mut s = self.kind.clone();
        if let Some(r) = &self.reason {
            s.push_str(": ");
            s.push_str(r);
        }
        let mut cause = self.caused_by.as_deref();
        // Bounded: a hostile or broken response must not make this loop long.
        for _ in 0..4 {
            let Some(c) = cause else { break };
            s.push_str(" (caused by ");
            s.push_str(&c.kind);
            if let Some(r) = &c.reason {
                s.push_str(": ");
                s.push_str(r);
            }
            s.push(')');
            cause = c.caused_by.as_deref();
        }
        s
    }
}

/// One item of a bulk response.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ItemBody {
    /// HTTP status of this item.
    pub status: u16,
    /// `created`, `updated`, `deleted`, `not_found`, `noop`.
    #[serde(default)]
    pub result: Option<String>,
    /// Present when the item failed.
    #[serde(default)]
    pub error: Option<ErrorBody>,
}

/// `{"index": {...}}` and friends: the key names the action, which is implied by the
/// request order, so it is accepted whatever it is.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ItemEnvelope {
    Index(ItemBody),
    Create(ItemBody),
    Update(ItemBody),
    Delete(ItemBody),
}

#[derive(Debug, Deserialize)]
struct BulkResponseBody {
    items: Vec<ItemEnvelope>,
}

/// Why a bulk response could not be used item by item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// Not JSON, or not shaped like a bulk response.
    #[error("unparseable bulk response: {0}")]
    Unparseable(String),
    /// A different number of items than actions sent.
    #[error("bulk response has {got} items for {sent} actions")]
    ItemCount {
        /// Actions sent.
        sent: usize,
        /// Items returned.
        got: usize,
    },
}

/// Parse a 200 bulk response body into its items, checking the count.
pub fn parse_items(body: &[u8], sent: usize) -> Result<Vec<ItemBody>, ResponseError> {
    let parsed: BulkResponseBody =
        serde_json::from_slice(body).map_err(|e| ResponseError::Unparseable(e.to_string()))?;
    if parsed.items.len() != sent {
        return Err(ResponseError::ItemCount {
            sent,
            got: parsed.items.len(),
        });
    }
    Ok(parsed
        .items
        .into_iter()
        .map(|i| match i {
            ItemEnvelope::Index(b)
            | ItemEnvelope::Create(b)
            | ItemEnvelope::Update(b)
            | ItemEnvelope::Delete(b) => b,
        })
        .collect())
}

/// Error types that say the document does not fit the index mapping.
const MAPPING_ERRORS: [&str; 3] = [
    "mapper_parsing_exception",
    "document_parsing_exception",
    "strict_dynamic_mapping_exception",
];

/// Error types that are operational (an index closed or being created, a block) and go
/// away without the document changing.
const TRANSIENT_400S: [&str; 2] = ["index_closed_exception", "cluster_block_exception"];

/// Errors of the index or alias an item was sent to, not of the document: one botched
/// alias change would otherwise send every event to the dead-letter topic. They are
/// retried with the alias resolution dropped, so the next attempt checks the alias again.
fn is_target_error(error: &ErrorBody) -> bool {
    if error.kind == "invalid_index_name_exception" || error.kind == "index_not_found_exception" {
        return true;
    }
    if error.kind != "illegal_argument_exception" {
        return false;
    }
    let reason = error.reason.as_deref().unwrap_or("").to_ascii_lowercase();
    // "no write index is defined for alias [x]...", "alias [x] has more than one write
    // index", "[require_alias] request flag is [true] and [x] is not an alias".
    reason.contains("write index")
        || reason.contains("is not an alias")
        || reason.contains("require_alias")
        || (reason.contains("alias [") && reason.contains("points to multiple indices"))
}

/// Classify one item according to the README's table.
pub fn classify_item(action: Action, item: &ItemBody) -> ItemVerdict {
    let verdict = |outcome, result| ItemVerdict {
        outcome,
        result,
        index_missing: false,
    };
    let error = item.error.clone().unwrap_or_default();
    let error_text = || {
        if error.kind.is_empty() {
            format!("HTTP {}", item.status)
        } else {
            format!("HTTP {}: {}", item.status, error.describe())
        }
    };
    match item.status {
        200..=299 => {
            let result = match (action, item.result.as_deref()) {
                (Action::Tombstone, _) | (_, Some("deleted")) => ItemResult::Deleted,
                (_, Some("created")) => ItemResult::Created,
                (_, Some("not_found")) => ItemResult::NotFound,
                _ => ItemResult::Updated,
            };
            verdict(Outcome::Applied, result)
        }
        409 if error.kind.is_empty() || error.kind == "version_conflict_engine_exception" => {
            verdict(Outcome::Stale, ItemResult::Conflict)
        }
        404 if action == Action::Delete && error.kind != "index_not_found_exception" => {
            verdict(Outcome::Applied, ItemResult::NotFound)
        }
        404 => ItemVerdict {
            outcome: Outcome::Retry {
                reason: format!("target index missing: {}", error_text()),
            },
            result: ItemResult::Error,
            index_missing: true,
        },
        400 if is_target_error(&error) => ItemVerdict {
            outcome: Outcome::Retry {
                reason: format!("target alias or index unusable: {}", error_text()),
            },
            result: ItemResult::Error,
            index_missing: true,
        },
        400 if MAPPING_ERRORS.contains(&error.kind.as_str()) => verdict(
            Outcome::DeadLetter {
                class: "mapping_error".into(),
                reason: error_text(),
            },
            ItemResult::Error,
        ),
        400 if TRANSIENT_400S.contains(&error.kind.as_str()) => verdict(
            Outcome::Retry {
                reason: error_text(),
            },
            ItemResult::Error,
        ),
        // illegal_argument_exception and other document-level 400s (an id Elasticsearch
        // refuses, a field name it cannot take) fail the same way on every attempt.
        400 => verdict(
            Outcome::DeadLetter {
                class: "invalid_document".into(),
                reason: error_text(),
            },
            ItemResult::Error,
        ),
        // 429, 5xx, 403 cluster blocks, 401/403 credentials the operator will fix, and
        // anything unexpected: retrying never loses data, dead-lettering could.
        _ => verdict(
            Outcome::Retry {
                reason: error_text(),
            },
            ItemResult::Error,
        ),
    }
}

/// The reason text for a whole request that failed with `status` and `body`, e.g.
/// `HTTP 429: es_rejected_execution_exception: rejected execution ...`.
pub fn request_failure_reason(status: u16, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        error: ErrorOrString,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ErrorOrString {
        Body(ErrorBody),
        Text(String),
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope {
            error: ErrorOrString::Body(e),
        }) => format!("HTTP {status}: {}", e.describe()),
        Ok(Envelope {
            error: ErrorOrString::Text(t),
        }) => format!("HTTP {status}: {t}"),
        Err(_) => {
            let snippet: String = String::from_utf8_lossy(body.get(..200).unwrap_or(body)).into();
            format!("HTTP {status}: {snippet}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(status: u16, result: Option<&str>, error: Option<(&str, &str)>) -> ItemBody {
        ItemBody {
            status,
            result: result.map(String::from),
            error: error.map(|(k, r)| ErrorBody {
                kind: k.into(),
                reason: Some(r.into()),
                caused_by: None,
            }),
        }
    }

    #[test]
    fn alias_and_index_errors_are_retried_with_the_alias_forgotten() {
        for (kind, reason) in [
            (
                "illegal_argument_exception",
                "no write index is defined for alias [product]. The write index may be explicitly disabled using is_write_index=false or the alias points to multiple indices without one being designated as a write index",
            ),
            (
                "illegal_argument_exception",
                "[require_alias] request flag is [true] and [product] is not an alias",
            ),
            ("invalid_index_name_exception", "Invalid index name [Product], must be lowercase"),
        ] {
            let v = classify_item(Action::Index, &item(400, None, Some((kind, reason))));
            assert!(matches!(v.outcome, Outcome::Retry { .. }), "{reason}: {v:?}");
            assert!(v.index_missing, "{reason}");
        }
        // A document's own illegal argument is still dead-lettered.
        let v = classify_item(
            Action::Index,
            &item(
                400,
                None,
                Some((
                    "illegal_argument_exception",
                    "mapper [price] cannot be changed from type [long] to [text]",
                )),
            ),
        );
        assert!(matches!(v.outcome, Outcome::DeadLetter { .. }), "{v:?}");
    }

    #[test]
    fn table() {
        use Action::*;
        let applied = |a, i: &ItemBody, r| {
            let v = classify_item(a, i);
            assert_eq!(v.outcome, Outcome::Applied, "{i:?}");
            assert_eq!(v.result, r);
        };
        applied(
            Index,
            &item(201, Some("created"), None),
            ItemResult::Created,
        );
        applied(
            Index,
            &item(200, Some("updated"), None),
            ItemResult::Updated,
        );
        applied(
            Delete,
            &item(200, Some("deleted"), None),
            ItemResult::Deleted,
        );
        applied(
            Tombstone,
            &item(201, Some("created"), None),
            ItemResult::Deleted,
        );
        applied(
            Delete,
            &item(404, Some("not_found"), None),
            ItemResult::NotFound,
        );

        let conflict = item(
            409,
            None,
            Some((
                "version_conflict_engine_exception",
                "current version [5] is higher",
            )),
        );
        for a in [Index, Delete, Tombstone] {
            let v = classify_item(a, &conflict);
            assert_eq!(v.outcome, Outcome::Stale);
            assert_eq!(v.result, ItemResult::Conflict);
        }

        for (k, class) in [
            ("mapper_parsing_exception", "mapping_error"),
            ("document_parsing_exception", "mapping_error"),
            ("strict_dynamic_mapping_exception", "mapping_error"),
            ("illegal_argument_exception", "invalid_document"),
        ] {
            let v = classify_item(
                Index,
                &item(400, None, Some((k, "failed to parse field [price]"))),
            );
            match v.outcome {
                Outcome::DeadLetter { class: c, reason } => {
                    assert_eq!(c, class);
                    assert!(reason.contains(k) && reason.contains("price"), "{reason}");
                }
                o => panic!("{k}: {o:?}"),
            }
        }

        for i in [
            item(
                429,
                None,
                Some(("es_rejected_execution_exception", "queue full")),
            ),
            item(
                503,
                None,
                Some(("unavailable_shards_exception", "primary shard not active")),
            ),
            item(500, None, None),
            item(403, None, Some(("cluster_block_exception", "read-only"))),
            item(400, None, Some(("index_closed_exception", "closed"))),
            item(409, None, Some(("something_else", "?"))),
        ] {
            let v = classify_item(Index, &i);
            assert!(matches!(v.outcome, Outcome::Retry { .. }), "{i:?}");
            assert!(!v.index_missing);
        }

        let missing = item(
            404,
            None,
            Some(("index_not_found_exception", "no such index")),
        );
        for a in [Index, Delete, Tombstone] {
            let v = classify_item(a, &missing);
            assert!(matches!(v.outcome, Outcome::Retry { .. }));
            assert!(v.index_missing);
        }
    }

    #[test]
    fn parses_real_shaped_response() {
        let body = br#"{"took":3,"errors":true,"items":[
            {"index":{"_index":"p-000001","_id":"1","_version":3,"result":"created","status":201}},
            {"delete":{"_index":"p-000001","_id":"2","result":"not_found","status":404}},
            {"index":{"_index":"p-000001","_id":"3","status":400,"error":{"type":"document_parsing_exception","reason":"[1:10] failed to parse field [price] of type [long]","caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"abc\""}}}}
        ]}"#;
        let items = parse_items(body, 3).unwrap();
        assert_eq!(items[0].status, 201);
        assert_eq!(items[1].result.as_deref(), Some("not_found"));
        let d = items[2].error.as_ref().unwrap().describe();
        assert!(d.contains("price") && d.contains("abc"), "{d}");
        assert_eq!(
            parse_items(body, 4),
            Err(ResponseError::ItemCount { sent: 4, got: 3 })
        );
        assert!(matches!(
            parse_items(b"<html>", 1),
            Err(ResponseError::Unparseable(_))
        ));
    }

    #[test]
    fn request_reasons() {
        let r = request_failure_reason(
            429,
            br#"{"error":{"type":"es_rejected_execution_exception","reason":"rejected"},"status":429}"#,
        );
        assert_eq!(r, "HTTP 429: es_rejected_execution_exception: rejected");
        assert_eq!(
            request_failure_reason(502, b"bad gateway"),
            "HTTP 502: bad gateway"
        );
    }
}
