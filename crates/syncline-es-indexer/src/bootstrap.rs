//! Making sure an entity type's alias exists before writing through it, creating the
//! first index (with its mapping and the write alias in the same request) when allowed.
//!
//! Aliases known to exist are cached, so the check costs one request per alias per
//! process (again only after a write reports the index missing). Bulk writes are sent
//! with `require_alias=true`, so Elasticsearch never auto-creates a concrete index named
//! like the alias, even if the alias disappears after it was cached.

use std::collections::HashSet;

use elasticsearch::http::StatusCode;
use elasticsearch::indices::{IndicesCreateParts, IndicesGetAliasParts};
use elasticsearch::Elasticsearch;
use parking_lot::Mutex;
use serde_json::Value;
use syncline_consumer::metrics::Counter;

use crate::client::describe_error;
use crate::config::DeleteMode;
use crate::mappings::{tombstone_filter, IndexDefinitions};
use crate::response::request_failure_reason;
use crate::routing::initial_index_name;

/// Why an alias is not usable yet. Every variant is retried by the sink: none of them is
/// about a document, and pausing is safer than dead-lettering a whole entity type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapError {
    /// The request did not get an answer (connection refused, timeout, ...).
    #[error("cannot reach Elasticsearch to check alias {alias}: {reason}")]
    Unreachable {
        /// The alias.
        alias: String,
        /// The transport error.
        reason: String,
    },
    /// The alias does not exist and `create_indexes` is off.
    #[error("alias {alias} does not exist and create_indexes is false: create it (with is_write_index) or enable create_indexes")]
    Missing {
        /// The alias.
        alias: String,
    },
    /// The alias exists but Elasticsearch cannot write through it (no write index, e.g.
    /// half-way through a hand-made alias change). Retried until an operator fixes it.
    #[error("alias {alias} has {write_indexes} write indexes; writes through it fail until it has exactly one (set is_write_index: true on one index)")]
    NoWriteIndex {
        /// The alias.
        alias: String,
        /// How many indexes are write indexes (0, or several).
        write_indexes: usize,
    },
    /// Elasticsearch refused to create the index/alias or answered unexpectedly.
    #[error("cannot create index {index} with alias {alias}: {reason}")]
    Refused {
        /// The alias.
        alias: String,
        /// The index that was to be created.
        index: String,
        /// Elasticsearch's answer.
        reason: String,
    },
}

/// Creates missing aliases and remembers which exist.
#[derive(Debug)]
pub struct Bootstrapper {
    client: Elasticsearch,
    definitions: IndexDefinitions,
    mode: DeleteMode,
    create: bool,
    known: Mutex<HashSet<String>>,
    created: Counter,
}

/// Whether an alias exists and, if so, whether it filters tombstones and how many write
/// indexes it has (Elasticsearch writes through an alias only with exactly one: an alias
/// on one index without `is_write_index: false`, or one index marked `is_write_index`).
enum AliasState {
    Absent,
    Present {
        filtered: bool,
        write_indexes: usize,
    },
}

impl Bootstrapper {
    /// A bootstrapper writing with `mode`, creating indexes only if `create`, counting
    /// the indexes it creates in `created`.
    pub fn new(
        client: Elasticsearch,
        definitions: IndexDefinitions,
        mode: DeleteMode,
        create: bool,
        created: Counter,
    ) -> Self {
        Bootstrapper {
            client,
            definitions,
            mode,
            create,
            known: Mutex::new(HashSet::new()),
            created,
        }
    }

    /// Is `alias` known to exist (no request needed)?
    pub fn is_known(&self, alias: &str) -> bool {
        self.known.lock().contains(alias)
    }

    /// Forget `alias` (a write found its index missing), so the next write checks again.
    pub fn forget(&self, alias: &str) {
        self.known.lock().remove(alias);
    }

    /// Make sure `alias` (for `entity_type`) exists, creating its first index if allowed.
    pub async fn ensure(&self, entity_type: &str, alias: &str) -> Result<(), BootstrapError> {
        if self.is_known(alias) {
            return Ok(());
        }
        match self.alias_state(alias).await? {
            AliasState::Present {
                filtered,
                write_indexes,
            } => {
                if write_indexes != 1 {
                    return Err(BootstrapError::NoWriteIndex {
                        alias: alias.to_owned(),
                        write_indexes,
                    });
                }
                self.warn_if_unfiltered(alias, filtered);
                self.known.lock().insert(alias.to_owned());
                return Ok(());
            }
            AliasState::Absent if !self.create => {
                return Err(BootstrapError::Missing {
                    alias: alias.to_owned(),
                })
            }
            AliasState::Absent => {}
        }
        let index = initial_index_name(alias);
        let body = self.definitions.create_body(entity_type, alias, self.mode);
        let refused = |reason: String| BootstrapError::Refused {
            alias: alias.to_owned(),
            index: index.clone(),
            reason,
        };
        let response = self
            .client
            .indices()
            .create(IndicesCreateParts::Index(&index))
            .body(body)
            .send()
            .await
            .map_err(|e| unreachable(alias, &e))?;
        let status = response.status_code();
        let bytes = response.bytes().await.map_err(|e| unreachable(alias, &e))?;
        if status.is_success() {
            tracing::info!(%alias, %index, mode = self.mode.as_str(), "created index with write alias");
            self.created.inc();
            self.known.lock().insert(alias.to_owned());
            return Ok(());
        }
        let reason = request_failure_reason(status.as_u16(), &bytes);
        if status == StatusCode::BAD_REQUEST && reason.contains("resource_already_exists_exception")
        {
            // Another instance created it first (both use the same first-generation name).
            // Its create request carried the alias too, so check that it is there.
            return match self.alias_state(alias).await? {
                AliasState::Present { filtered, .. } => {
                    self.warn_if_unfiltered(alias, filtered);
                    self.known.lock().insert(alias.to_owned());
                    Ok(())
                }
                AliasState::Absent => Err(refused(format!(
                    "index {index} exists but alias {alias} does not point to it; \
                     add the alias (is_write_index: true) or remove the index"
                ))),
            };
        }
        Err(refused(reason))
    }

    /// Look up `alias`: absent, or present with/without a filter.
    async fn alias_state(&self, alias: &str) -> Result<AliasState, BootstrapError> {
        let names = [alias];
        let response = self
            .client
            .indices()
            .get_alias(IndicesGetAliasParts::Name(&names))
            .send()
            .await
            .map_err(|e| unreachable(alias, &e))?;
        let status = response.status_code();
        let bytes = response.bytes().await.map_err(|e| unreachable(alias, &e))?;
        if status == StatusCode::NOT_FOUND {
            return Ok(AliasState::Absent);
        }
        if !status.is_success() {
            return Err(BootstrapError::Unreachable {
                alias: alias.to_owned(),
                reason: request_failure_reason(status.as_u16(), &bytes),
            });
        }
        // {"<index>": {"aliases": {"<alias>": {"filter": {...}, ...}}}, ...}
        let parsed: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let filtered = parsed.as_object().is_some_and(|indexes| {
            !indexes.is_empty()
                && indexes.values().all(|i| {
                    i.get("aliases")
                        .and_then(|a| a.get(alias))
                        .and_then(|a| a.get("filter"))
                        .is_some()
                })
        });
        let entries: Vec<&Value> = parsed
            .as_object()
            .map(|indexes| {
                indexes
                    .values()
                    .filter_map(|i| i.get("aliases").and_then(|a| a.get(alias)))
                    .collect()
            })
            .unwrap_or_default();
        let marked = entries
            .iter()
            .filter(|a| a.get("is_write_index").and_then(Value::as_bool) == Some(true))
            .count();
        let write_indexes = match entries.as_slice() {
            // One index is the write index unless explicitly disabled.
            [only] => {
                usize::from(only.get("is_write_index").and_then(Value::as_bool) != Some(false))
            }
            _ => marked,
        };
        Ok(AliasState::Present {
            filtered,
            write_indexes,
        })
    }

    fn warn_if_unfiltered(&self, alias: &str, filtered: bool) {
        if self.mode == DeleteMode::Tombstone && !filtered {
            tracing::warn!(
                %alias,
                filter = %tombstone_filter(),
                "delete_mode is tombstone but the existing alias has no filter: searches \
                 through it will see tombstone documents; add the filter to the alias"
            );
        }
    }
}

/// `alias`'s bootstrap request got no answer: the whole cause chain goes into the reason,
/// so a TLS failure names its cause (`CertificateRequired`, `UnknownIssuer`) on every retry.
fn unreachable(alias: &str, e: &elasticsearch::Error) -> BootstrapError {
    BootstrapError::Unreachable {
        alias: alias.to_owned(),
        reason: describe_error(e),
    }
}
