//! Emit a change event into the PostgreSQL transactional outbox (`syncline_outbox`, see
//! `schemas/postgres/` and `docs/outbox.md`) inside the service's own transaction, with the
//! same validation as [`crate::Producer`]: an event the producer would refuse is refused
//! here, before it reaches the table. `syncline-outbox` then publishes the row.
//!
//! ```no_run
//! # async fn run(client: &mut tokio_postgres::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use syncline_producer::{outbox, ChangeEvent, Limits, Op};
//! let tx = client.transaction().await?;
//! tx.execute("UPDATE product SET price = 42, version = version + 1 WHERE id = 'p1'", &[]).await?;
//! let version: i64 = tx.query_one("SELECT version FROM product WHERE id = 'p1'", &[]).await?.get(0);
//! let event = ChangeEvent::new("product", "p1", Op::Upsert, version, "catalog",
//!                              Some(r#"{"price":42}"#.into()));
//! outbox::emit(&tx, &event, &Limits::default()).await?;
//! tx.commit().await?; // the event is published only if this commits
//! # Ok(()) }
//! ```

use syncline_event::{ChangeEvent, Limits, ValidationError};
use tokio_postgres::GenericClient;

/// Why an event was not written to the outbox.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// The event breaks the contract; nothing was written.
    #[error("invalid event, not written to the outbox: {0}")]
    Invalid(#[from] ValidationError),
    /// The outbox's `event_id` column is a UUID; this event's id is not one.
    #[error("event_id {0:?} is not a UUID (the outbox stores event ids as uuid)")]
    EventIdNotUuid(String),
    /// The INSERT failed (the transaction is now aborted, as with any failed statement).
    #[error("writing the outbox row: {0}")]
    Database(#[from] tokio_postgres::Error),
}

const INSERT: &str = "
INSERT INTO syncline_outbox
    (event_id, entity_type, entity_id, op, version, occurred_at, source, document,
     invalidate, attributes)
VALUES ($1::text::uuid, $2, $3, $4, $5,
        'epoch'::timestamptz + $6::bigint * interval '1 microsecond', $7, $8, $9,
        $10::text::jsonb)
RETURNING id";

/// Validate `event` against `limits` (as the producer does) and insert it into
/// `syncline_outbox` through `client` (a `Transaction`, so that the row commits or rolls
/// back with the service's change). Returns the outbox row id.
pub async fn emit<C: GenericClient>(
    client: &C,
    event: &ChangeEvent,
    limits: &Limits,
) -> Result<i64, EmitError> {
    event.validate(limits)?;
    if uuid::Uuid::parse_str(&event.event_id).is_err() {
        return Err(EmitError::EventIdNotUuid(event.event_id.clone()));
    }
    // BTreeMap<String, String> always serializes; the fallback only satisfies the type.
    let attributes = serde_json::to_string(&event.attributes).unwrap_or_else(|_| "{}".into());
    let row = client
        .query_one(
            INSERT,
            &[
                &event.event_id,
                &event.entity_type,
                &event.entity_id,
                &event.op.as_str(),
                &event.version,
                &event.occurred_at,
                &event.source,
                &event.document,
                &event.invalidate,
                &attributes,
            ],
        )
        .await?;
    Ok(row.get(0))
}
