-- A job scheduled again while a worker runs it stays leased to that worker, and is marked
-- `rescheduled`: when the run ends the job is unlocked and due at its new time, instead of
-- being deleted or moved to its backoff. Before, scheduling cleared the lease, so another
-- replica could claim the job and run it alongside the first run (two revert jobs building
-- the same change, each abandoning the other's branch).
-- Keep in step with ../sqlite/0009_job_rescheduled.sql.
ALTER TABLE jobs ADD COLUMN rescheduled INTEGER NOT NULL DEFAULT 0;
