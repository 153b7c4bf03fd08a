-- The trust boundary (see docs/design.md, "The merge guard"). Keep in step with
-- ../postgres/0002_trust_boundary.sql.

-- Approvals are now keyed by the forge's own signal (a reaction, review or comment id), so that a
-- replayed or re-polled signal is stored once and a withdrawn one can be removed. Nothing was
-- deployed with the old table, so it is replaced rather than migrated.
DROP TABLE approvals;
CREATE TABLE approvals (
    request_id     TEXT    NOT NULL REFERENCES requests (id),
    signal         TEXT    NOT NULL,               -- 'reaction:<id>' | 'review:<id>' | 'comment:<id>'
    approver_id    INTEGER NOT NULL,
    approver_login TEXT    NOT NULL,
    source         TEXT    NOT NULL,               -- reaction | review | comment
    head_sha       TEXT    NOT NULL,
    approved_at    INTEGER NOT NULL,               -- the forge's timestamp of the signal
    PRIMARY KEY (request_id, signal)
) STRICT;

-- The branches and PRs the bot itself builds (request PRs opened for a comment, revert PRs,
-- removals). `head_sha` is the bot's own last commit: a bot branch whose head is anything else
-- was pushed to by someone else and is never merged.
CREATE TABLE changes (
    subject    TEXT    NOT NULL,                   -- the request id the change is about
    kind       TEXT    NOT NULL,                   -- request | revert | removal
    branch     TEXT    NOT NULL,
    base_sha   TEXT    NOT NULL,
    head_sha   TEXT,                               -- NULL while the change is being built
    pr_number  INTEGER,
    paths      TEXT    NOT NULL,                   -- JSON: files the change adds or deletes
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (subject, kind)
) STRICT;
CREATE INDEX changes_branch ON changes (branch);

-- What a grant applied, recorded when it was applied: revoke and verify read this, never the
-- current policy.
CREATE TABLE applied_grants (
    request_id TEXT    NOT NULL PRIMARY KEY REFERENCES requests (id),
    provider   TEXT    NOT NULL,
    role       TEXT    NOT NULL,                   -- JSON: the role as applied
    files      TEXT    NOT NULL,                   -- JSON: the rendered grant files
    applied_at INTEGER NOT NULL
) STRICT;
