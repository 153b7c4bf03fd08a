-- breakglass schema, PostgreSQL dialect. Keep in step with ../sqlite/0001_initial.sql: the same
-- tables and columns, so that one set of queries (sqlx `Any`, `$n` placeholders) serves both.
--
-- Conventions (see src/store/mod.rs): timestamps are BIGINT unix milliseconds and JSON is TEXT
-- rather than TIMESTAMPTZ/JSONB, because sqlx's `Any` driver carries only integers and text,
-- and because the audit log hashes the JSON text byte for byte (JSONB would reorder keys).
-- Enumerations are TEXT, checked when a row is decoded.

-- Webhook deliveries, stored before the HTTP 2xx and worked off by a claiming worker.
CREATE TABLE deliveries (
    id              TEXT   NOT NULL PRIMARY KEY, -- '<forge>:<delivery id>'
    seq             BIGINT  NOT NULL,             -- arrival order (ties in received_at happen)
    forge           TEXT   NOT NULL,
    event           TEXT   NOT NULL,
    payload         TEXT   NOT NULL,             -- the exact request body
    received_at     BIGINT NOT NULL,
    state           TEXT   NOT NULL,             -- pending | done | failed
    attempts        BIGINT NOT NULL,
    locked_by       TEXT,
    locked_until    BIGINT,
    last_error      TEXT,
    next_attempt_at BIGINT NOT NULL
);
CREATE INDEX deliveries_claim ON deliveries (state, next_attempt_at);

-- One row per access request; `version` is the optimistic lock.
CREATE TABLE requests (
    id               TEXT   NOT NULL PRIMARY KEY, -- the request file's stem
    forge            TEXT   NOT NULL,
    repository       TEXT   NOT NULL,
    pr_number        BIGINT NOT NULL,
    environment      TEXT   NOT NULL,
    role             TEXT   NOT NULL,
    requester_login  TEXT   NOT NULL,
    requester_id     BIGINT NOT NULL,
    duration_secs    BIGINT NOT NULL,
    reason           TEXT   NOT NULL,
    ticket           TEXT,
    state            TEXT   NOT NULL,
    head_sha         TEXT   NOT NULL,
    decision         TEXT   NOT NULL,             -- JSON
    fast_path_rule   TEXT,
    approved_by      TEXT,                        -- JSON array of logins
    merge_sha        TEXT,
    granted_at       BIGINT,
    expires_at       BIGINT,
    revert_pr_number BIGINT,
    revoked_at       BIGINT,
    revoke_reason    TEXT,                        -- ttl | early | reconcile
    review_due_at    BIGINT,
    reviewed_by      TEXT,
    reviewed_at      BIGINT,
    total_secs       BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    version          BIGINT NOT NULL,
    UNIQUE (forge, repository, pr_number)
);
CREATE INDEX requests_revert_pr ON requests (forge, repository, revert_pr_number);
CREATE INDEX requests_state ON requests (state);

-- Approvals, each bound to the head commit it was given on.
CREATE TABLE approvals (
    request_id     TEXT   NOT NULL REFERENCES requests (id),
    approver_id    BIGINT NOT NULL,
    approver_login TEXT   NOT NULL,
    source         TEXT   NOT NULL,               -- reaction | review | comment
    head_sha       TEXT   NOT NULL,
    approved_at    BIGINT NOT NULL,
    UNIQUE (request_id, approver_id, head_sha)
);

-- The durable timer/job queue.
CREATE TABLE jobs (
    id           BIGSERIAL NOT NULL PRIMARY KEY,
    kind         TEXT      NOT NULL,
    request_id   TEXT      NOT NULL REFERENCES requests (id),
    run_at       BIGINT    NOT NULL,
    attempts     BIGINT    NOT NULL,
    locked_by    TEXT,
    locked_until BIGINT,
    last_error   TEXT,
    created_at   BIGINT    NOT NULL,
    UNIQUE (kind, request_id)
);
CREATE INDEX jobs_run_at ON jobs (run_at);

-- The append-only, hash-chained audit log. `seq` is assigned by the appender under an advisory
-- lock (not a sequence, which skips numbers on rollback), so a gap means a deleted row.
CREATE TABLE events (
    seq         BIGINT NOT NULL PRIMARY KEY,
    at          BIGINT NOT NULL,
    kind        TEXT   NOT NULL,
    request_id  TEXT,
    actor_id    BIGINT,
    actor_login TEXT,
    delivery_id TEXT,
    data        TEXT   NOT NULL,                  -- JSON, hashed byte for byte
    prev_hash   TEXT   NOT NULL,
    hash        TEXT   NOT NULL
);
CREATE INDEX events_request ON events (request_id);

-- The code never changes an event; the database refuses to as well, so that rewriting history
-- takes a schema change (DROP TRIGGER), not a stray UPDATE. `verify_chain` catches the rest.
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only';
END;
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();
