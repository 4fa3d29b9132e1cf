//! The outbox schema, shipped as versioned SQL files in `schemas/postgres/` and embedded
//! here, applied by [`migrate`] (what `syncline-outbox migrate` runs).

use syncline_pg::{PgConfig, PgError};

/// The migrations in order: (version, name, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "V1__outbox.sql",
    include_str!("../../../schemas/postgres/V1__outbox.sql"),
)];

/// Serialises concurrent `migrate` runs (any constant both sides agree on).
const MIGRATE_LOCK: i64 = 0x5359_4e43_4d49_4752; // "SYNCMIGR"

/// Apply every migration not yet recorded in `syncline_schema_migrations`, each in its own
/// transaction, under an advisory lock so two concurrent runs do not race. Running it
/// again is a no-op. Returns the versions applied now.
pub async fn migrate(cfg: &PgConfig) -> Result<Vec<i32>, PgError> {
    let mut conn = cfg.connect().await?;
    let c = &mut conn.client;
    let err = |e: tokio_postgres::Error| cfg.error(&e);
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS syncline_schema_migrations (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(err)?;
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        let tx = c.transaction().await.map_err(err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
            .await
            .map_err(err)?;
        let done = tx
            .query_opt(
                "SELECT 1 FROM syncline_schema_migrations WHERE version = $1",
                &[version],
            )
            .await
            .map_err(err)?;
        if done.is_some() {
            continue;
        }
        tx.batch_execute(sql).await.map_err(err)?;
        tx.execute(
            "INSERT INTO syncline_schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        applied.push(*version);
    }
    Ok(applied)
}
