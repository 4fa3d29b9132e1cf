-- Syncline transactional outbox, version 1.
--
-- Applied by `syncline-outbox migrate` (idempotent: every statement is IF NOT EXISTS /
-- CREATE OR REPLACE, and the migration is recorded in syncline_schema_migrations).
-- A service writes its change and the event row in ONE transaction; the relay publishes
-- committed rows to Kafka and deletes them after the broker acknowledged them.

CREATE TABLE IF NOT EXISTS syncline_outbox (
    -- Publication order; also the relay's only index (it reads ORDER BY id LIMIT n).
    id           bigserial PRIMARY KEY,
    -- NULL: the relay derives a stable UUID from the row (same row, same event_id).
    event_id     uuid,
    entity_type  text        NOT NULL,
    entity_id    text        NOT NULL,
    -- 'UPSERT' or 'DELETE'; not constrained here so that a bad row is quarantined by the
    -- relay with its reason rather than failing the service's transaction in a trigger.
    op           text        NOT NULL,
    version      bigint      NOT NULL,
    -- The commit cannot be known inside the transaction; clock_timestamp() at the write
    -- is the closest the row can carry.
    occurred_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    source       text        NOT NULL DEFAULT 'postgres-outbox',
    -- The JSON object as text, byte for byte as the service wrote it (jsonb would
    -- reorder keys and could not hold the invalid documents the relay quarantines).
    document     text,
    invalidate   text[]      NOT NULL DEFAULT '{}',
    attributes   jsonb       NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Rows the relay could not publish, with the reason; never retried automatically.
CREATE TABLE IF NOT EXISTS syncline_outbox_quarantine (
    id             bigint      PRIMARY KEY,
    event_id       uuid,
    entity_type    text,
    entity_id      text,
    op             text,
    version        bigint,
    occurred_at    timestamptz,
    source         text,
    document       text,
    invalidate     text[],
    attributes     jsonb,
    created_at     timestamptz,
    reason         text        NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now()
);

-- One NOTIFY per inserting statement (not per row), delivered at commit; a rolled-back
-- transaction notifies nobody. The relay polls as well, so a lost wake-up only delays.
CREATE OR REPLACE FUNCTION syncline_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('syncline_outbox', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS syncline_outbox_notify ON syncline_outbox;
CREATE TRIGGER syncline_outbox_notify
    AFTER INSERT ON syncline_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION syncline_outbox_notify();

-- Emit one change event inside the caller's transaction. Returns the outbox row id.
-- document: the full JSON object for UPSERT, NULL for DELETE. Validation (entity type,
-- id length, document shape and size) is the relay's, the same as the producer's: a row
-- that breaks it is quarantined, never published.
CREATE OR REPLACE FUNCTION syncline_emit(
    p_entity_type text,
    p_entity_id   text,
    p_op          text,
    p_version     bigint,
    p_document    jsonb   DEFAULT NULL,
    p_invalidate  text[]  DEFAULT '{}',
    p_attributes  jsonb   DEFAULT '{}',
    p_source      text    DEFAULT 'postgres-outbox'
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    new_id bigint;
BEGIN
    IF upper(p_op) NOT IN ('UPSERT', 'DELETE') THEN
        RAISE EXCEPTION 'syncline_emit: op must be UPSERT or DELETE, got %', p_op
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO syncline_outbox
        (entity_type, entity_id, op, version, document, invalidate, attributes, source)
    VALUES
        (p_entity_type, p_entity_id, upper(p_op), p_version, p_document::text,
         coalesce(p_invalidate, '{}'), coalesce(p_attributes, '{}'), p_source)
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;

-- Per-entity version counter for services without a version column of their own (see
-- docs/outbox.md for the trade-offs). The upsert takes a row lock that is held until
-- commit, so concurrent writers of one entity get increasing versions in commit order.
CREATE TABLE IF NOT EXISTS syncline_entity_versions (
    entity_type text   NOT NULL,
    entity_id   text   NOT NULL,
    version     bigint NOT NULL,
    PRIMARY KEY (entity_type, entity_id)
);

CREATE OR REPLACE FUNCTION syncline_next_version(p_entity_type text, p_entity_id text)
RETURNS bigint
LANGUAGE sql AS $$
    INSERT INTO syncline_entity_versions AS v (entity_type, entity_id, version)
    VALUES (p_entity_type, p_entity_id, 1)
    ON CONFLICT (entity_type, entity_id) DO UPDATE SET version = v.version + 1
    RETURNING version;
$$;
