-- Where a `/breakglass` comment was made (`issue:<n>` or `change:<n>`), so that
-- `/breakglass status` on an incident issue answers for the requests asked for there, not
-- only on their PRs. Empty for effects stored before it and for extensions.
-- Keep in step with ../sqlite/0010_comment_thread.sql.
ALTER TABLE comment_effects ADD COLUMN thread TEXT;
CREATE INDEX comment_effects_thread ON comment_effects (forge, repository, thread);
