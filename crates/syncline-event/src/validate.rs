//! The rules an event must satisfy before it is published or applied.
//!
//! Producer and consumers enforce the same rules (docs/event-contract.md,
//! "Limits"), so a record that a producer refused can never be half-applied by a
//! sink, and one written by a foreign producer that breaks them is dead-lettered.

use crate::model::{ChangeEvent, Op};
use crate::view::EventRef;

/// Configurable limits. The defaults are the contract's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted `document`, in bytes (default 1 MiB).
    pub max_document_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_document_bytes: 1024 * 1024,
        }
    }
}

/// Why an event breaks the contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// `entity_type` does not match `[a-z0-9][a-z0-9_-]{0,63}`.
    #[error("entity_type {0:?} must match [a-z0-9][a-z0-9_-]{{0,63}}")]
    EntityType(String),
    /// `entity_id` is empty or longer than 512 bytes.
    #[error("entity_id must be 1..=512 bytes of UTF-8, got {0} bytes")]
    EntityIdLength(usize),
    /// `version` is negative.
    #[error("version must be >= 0, got {0}")]
    NegativeVersion(i64),
    /// `event_id` is empty.
    #[error("event_id must not be empty")]
    EmptyEventId,
    /// An UPSERT carries no document.
    #[error("UPSERT requires a document")]
    MissingDocument,
    /// A DELETE carries a document.
    #[error("DELETE must not carry a document")]
    UnexpectedDocument,
    /// The document is not JSON at all (the parser's reason).
    #[error("document is not a JSON object: not valid JSON: {0}")]
    DocumentNotJson(String),
    /// The document is valid JSON but its top-level value is not an object.
    #[error("document is not a JSON object: top-level value is not an object")]
    DocumentNotObject,
    /// The document is larger than the configured limit.
    #[error("document is {size} bytes, over the limit of {limit} bytes")]
    DocumentTooLarge {
        /// Size of the document in bytes.
        size: usize,
        /// The configured limit in bytes.
        limit: usize,
    },
}

/// Is `s` a valid entity type?
pub fn is_valid_entity_type(s: &str) -> bool {
    let Some((first, rest)) = s.as_bytes().split_first() else {
        return false;
    };
    s.len() <= 64
        && (first.is_ascii_lowercase() || first.is_ascii_digit())
        && rest
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

impl ChangeEvent {
    /// Check every contract rule; the first broken one is returned.
    pub fn validate(&self, limits: &Limits) -> Result<(), ValidationError> {
        self.view().validate(limits)
    }
}

impl EventRef<'_> {
    /// Check every contract rule; the first broken one is returned.
    pub fn validate(&self, limits: &Limits) -> Result<(), ValidationError> {
        if self.event_id.is_empty() {
            return Err(ValidationError::EmptyEventId);
        }
        if !is_valid_entity_type(self.entity_type) {
            return Err(ValidationError::EntityType(self.entity_type.to_owned()));
        }
        let id_len = self.entity_id.len();
        if id_len == 0 || id_len > 512 {
            return Err(ValidationError::EntityIdLength(id_len));
        }
        if self.version < 0 {
            return Err(ValidationError::NegativeVersion(self.version));
        }
        match (self.op, self.document) {
            (Op::Upsert, None) => Err(ValidationError::MissingDocument),
            (Op::Delete, Some(_)) => Err(ValidationError::UnexpectedDocument),
            (Op::Delete, None) => Ok(()),
            (Op::Upsert, Some(doc)) => {
                if doc.len() > limits.max_document_bytes {
                    return Err(ValidationError::DocumentTooLarge {
                        size: doc.len(),
                        limit: limits.max_document_bytes,
                    });
                }
                match serde_json::from_str::<serde::de::IgnoredAny>(doc) {
                    Err(e) => Err(ValidationError::DocumentNotJson(e.to_string())),
                    Ok(_) if !doc.trim_start().starts_with('{') => {
                        Err(ValidationError::DocumentNotObject)
                    }
                    Ok(_) => Ok(()),
                }
            }
        }
    }
}
