-- Caches every replica keeps in memory (the default branch's policies) are invalidated by
-- push webhooks; whichever replica handles the push bumps the cache's epoch here, and every
-- replica compares its copy's epoch with this one before serving it (issue 10).
-- Keep in step with ../postgres/0005_cache_epochs.sql.
CREATE TABLE cache_epochs (
    name TEXT PRIMARY KEY,
    epoch BIGINT NOT NULL
);
