-- The git blob id of the request file as the grant's merge brought it to the default branch.
-- Reconciliation compares it with the blob its listing shows: a request file rewritten there
-- while the push's webhook was lost is found without reading the file (NULL: merged before
-- this column, not compared).
-- Keep in step with ../postgres/0013_applied_request_blob.sql.
ALTER TABLE applied_grants ADD COLUMN request_blob TEXT;
