-- breakglass schema, SQLite dialect. Keep in step with ../postgres/0001_initial.sql: the same
-- tables and columns, so that one set of queries (sqlx `Any`, `$n` placeholders) serves both.
--
-- Conventions (see src/store/mod.rs): timestamps are INTEGER unix milliseconds, JSON is TEXT,
-- enumerations are TEXT. Their allowed values are checked when a row is decoded, not by CHECK
-- constraints, so that adding a value needs no table rebuild on SQLite. STRICT tables refuse
-- values of the wrong storage type.

-- Webhook deliveries, stored before the HTTP 2xx and worked off by a claiming worker.
CREATE TABLE deliveries (
    id              TEXT    NOT NULL PRIMARY KEY, -- '<forge>:<delivery id>'
    seq             INTEGER NOT NULL,             -- arrival order (ties in received_at happen)
    forge           TEXT    NOT NULL,
    event           TEXT    NOT NULL,
    payload         TEXT    NOT NULL,             -- the exact request body
    received_at     INTEGER NOT NULL,
    state           TEXT    NOT NULL,             -- pending | done | failed
    attempts        INTEGER NOT NULL,
    locked_by       TEXT,
    locked_until    INTEGER,
    last_error      TEXT,
    next_attempt_at INTEGER NOT NULL
) STRICT;
CREATE INDEX deliveries_claim ON deliveries (state, next_attempt_at);

-- One row per access request; `version` is the optimistic lock.
CREATE TABLE requests (
    id               TEXT    NOT NULL PRIMARY KEY, -- the request file's stem
    forge            TEXT    NOT NULL,
    repository       TEXT    NOT NULL,
    pr_number        INTEGER NOT NULL,
    environment      TEXT    NOT NULL,
    role             TEXT    NOT NULL,
    requester_login  TEXT    NOT NULL,
    requester_id     INTEGER NOT NULL,
    duration_secs    INTEGER NOT NULL,
    reason           TEXT    NOT NULL,
    ticket           TEXT,
    state            TEXT    NOT NULL,
    head_sha         TEXT    NOT NULL,
    decision         TEXT    NOT NULL,             -- JSON
    fast_path_rule   TEXT,
    approved_by      TEXT,                         -- JSON array of logins
    merge_sha        TEXT,
    granted_at       INTEGER,
    expires_at       INTEGER,
    revert_pr_number INTEGER,
    revoked_at       INTEGER,
    revoke_reason    TEXT,                         -- ttl | early | reconcile
    review_due_at    INTEGER,
    reviewed_by      TEXT,
    reviewed_at      INTEGER,
    total_secs       INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    version          INTEGER NOT NULL,
    UNIQUE (forge, repository, pr_number)
) STRICT;
CREATE INDEX requests_revert_pr ON requests (forge, repository, revert_pr_number);
CREATE INDEX requests_state ON requests (state);

-- Approvals, each bound to the head commit it was given on.
CREATE TABLE approvals (
    request_id     TEXT    NOT NULL REFERENCES requests (id),
    approver_id    INTEGER NOT NULL,
    approver_login TEXT    NOT NULL,
    source         TEXT    NOT NULL,               -- reaction | review | comment
    head_sha       TEXT    NOT NULL,
    approved_at    INTEGER NOT NULL,
    UNIQUE (request_id, approver_id, head_sha)
) STRICT;

-- The durable timer/job queue. AUTOINCREMENT so that a deleted job's id is never reused.
CREATE TABLE jobs (
    id           INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    kind         TEXT    NOT NULL,
    request_id   TEXT    NOT NULL REFERENCES requests (id),
    run_at       INTEGER NOT NULL,
    attempts     INTEGER NOT NULL,
    locked_by    TEXT,
    locked_until INTEGER,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    UNIQUE (kind, request_id)
) STRICT;
CREATE INDEX jobs_run_at ON jobs (run_at);

-- The append-only, hash-chained audit log. `seq` is assigned by the appender under a lock
-- (not AUTOINCREMENT), so the sequence has no gaps and a gap means a deleted row.
CREATE TABLE events (
    seq         INTEGER NOT NULL PRIMARY KEY,
    at          INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    request_id  TEXT,
    actor_id    INTEGER,
    actor_login TEXT,
    delivery_id TEXT,
    data        TEXT    NOT NULL,                  -- JSON, hashed byte for byte
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL
) STRICT;
CREATE INDEX events_request ON events (request_id);

-- The code never changes an event; the database refuses to as well, so that rewriting history
-- takes a schema change (DROP TRIGGER), not a stray UPDATE. `verify_chain` catches the rest.
CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;
CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;
