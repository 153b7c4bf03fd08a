-- Comments whose commands were all handled and whose one reply note (if any) was posted.
-- A webhook replayed later (a captured payload under a new delivery id) finds its comment
-- here and is neither acted on nor answered again; a delivery handled again after a failure
-- finds nothing here and says what its first run did not get to say.
-- Keep in step with ../postgres/0011_comment_answered.sql.
CREATE TABLE comment_answered (
    forge       TEXT    NOT NULL,
    repository  TEXT    NOT NULL,
    comment_id  INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (forge, repository, comment_id)
) STRICT;
