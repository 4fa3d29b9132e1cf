//! The JSON Lines input of `syncline-publish`: one change event per line.
//!
//! The form is the JSON form of [`ChangeEvent`] (same field names as the Avro schema,
//! `document` as the JSON object itself, `occurred_at` in microseconds since the Unix
//! epoch), with three conveniences for hand-written files:
//!
//! - `event_id` may be omitted: a fresh UUIDv7 is used;
//! - `occurred_at` may be omitted: the time the line is read is used;
//! - `source` may be omitted: the caller's default (`--source`) is used.
//!
//! Unknown fields are errors (a misspelt `documnet` must not silently publish an UPSERT
//! without its document). The document text is kept byte for byte as written.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use syncline_event::model::now_micros;
use syncline_event::{ChangeEvent, Op};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputEvent {
    #[serde(default)]
    event_id: Option<String>,
    entity_type: String,
    entity_id: String,
    op: Op,
    version: i64,
    #[serde(default)]
    occurred_at: Option<i64>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    document: Option<Box<RawValue>>,
    #[serde(default)]
    invalidate: Vec<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

/// Parse one line into an event (not yet validated against the contract: the producer
/// does that). The error is a one-line reason without the line number.
pub fn parse_line(line: &str, default_source: &str) -> Result<ChangeEvent, String> {
    let input: InputEvent = serde_json::from_str(line).map_err(|e| {
        let text = e.to_string();
        // serde_json appends " at line L column C"; within one line only the column helps.
        let reason = text
            .rsplit_once(" at line ")
            .map_or(text.as_str(), |(reason, _)| reason);
        format!("invalid JSON at column {}: {reason}", e.column())
    })?;
    let document = input
        .document
        .map(|raw| raw.get().to_owned())
        .filter(|text| text != "null");
    Ok(ChangeEvent {
        event_id: input
            .event_id
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
        entity_type: input.entity_type,
        entity_id: input.entity_id,
        op: input.op,
        version: input.version,
        occurred_at: input.occurred_at.unwrap_or_else(now_micros),
        source: input.source.unwrap_or_else(|| default_source.to_owned()),
        document,
        invalidate: input.invalidate,
        attributes: input.attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_form_round_trips_with_the_model() {
        let line = r#"{"event_id":"0190a5a4-0000-7000-8000-000000000001","entity_type":"product","entity_id":"p-0001","op":"UPSERT","version":3,"occurred_at":1700000000000000,"source":"catalog","document":{"name":"Lamp","price":12.5},"invalidate":["search:category:lamps"],"attributes":{"k":"v"}}"#;
        let parsed = parse_line(line, "default").unwrap();
        let model: ChangeEvent = serde_json::from_str(line).unwrap();
        assert_eq!(parsed, model);
        assert_eq!(
            parsed.document.as_deref(),
            Some(r#"{"name":"Lamp","price":12.5}"#)
        );
    }

    #[test]
    fn optional_fields_are_filled() {
        let e = parse_line(
            r#"{"entity_type":"product","entity_id":"p-1","op":"DELETE","version":2}"#,
            "syncline-publish",
        )
        .unwrap();
        assert_eq!(
            uuid::Uuid::parse_str(&e.event_id)
                .unwrap()
                .get_version_num(),
            7
        );
        assert!(e.occurred_at > 1_600_000_000_000_000);
        assert_eq!(e.source, "syncline-publish");
        assert_eq!(e.document, None);
        assert!(e.invalidate.is_empty());
    }

    #[test]
    fn null_document_is_none() {
        let e = parse_line(
            r#"{"entity_type":"product","entity_id":"p-1","op":"DELETE","version":2,"document":null}"#,
            "s",
        )
        .unwrap();
        assert_eq!(e.document, None);
    }

    #[test]
    fn errors_name_the_problem() {
        let err = parse_line(r#"{"entity_type":"product""#, "s").unwrap_err();
        assert!(err.starts_with("invalid JSON at column"), "{err}");
        let err = parse_line(
            r#"{"entity_type":"product","entity_id":"p","op":"UPSERT","version":1,"documnet":{}}"#,
            "s",
        )
        .unwrap_err();
        assert!(err.contains("unknown field `documnet`"), "{err}");
        let err = parse_line(
            r#"{"entity_type":"product","entity_id":"p","op":"upsert","version":1}"#,
            "s",
        )
        .unwrap_err();
        assert!(err.contains("unknown variant"), "{err}");
    }
}
