-- On-time revocation at 100k grants (issue 10): the periodic passes and the job lanes read
-- what they need through indexes instead of scanning. Keep in step with
-- ../sqlite/0004_revocation.sql.

-- Reconciliation pages through the active requests by id.
CREATE INDEX requests_state_id ON requests (state, id);
DROP INDEX requests_state;
-- The overdue-review lookup made at every decision: the open fast-path reviews of one requester.
CREATE INDEX requests_open_review ON requests (requester_id, review_due_at)
    WHERE fast_path_rule IS NOT NULL AND reviewed_at IS NULL;
-- The orphaned-grant check and shared attachments read one provider's grants only.
CREATE INDEX applied_grants_provider ON applied_grants (provider);
-- Each job lane claims its own kinds, earliest first.
CREATE INDEX jobs_kind_run_at ON jobs (kind, run_at);
