-- The git blob id of each file a bot change wrote, by path (JSON object). A later change that
-- deletes such a file (the revert of a grant) hands this id to the contents API instead of
-- reading the file first; a delete the forge refuses falls back to the read (issue 10).
-- Keep in step with ../sqlite/0007_change_blobs.sql.
ALTER TABLE changes ADD COLUMN blobs TEXT NOT NULL DEFAULT '{}';
