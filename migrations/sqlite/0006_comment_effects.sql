-- What a comment's command did, once. A delivery handled again (killed before it was marked
-- done, or its lease taken over by another replica) finds its comment here and does not do
-- it twice (issue 11, chaos runs). `effect` is `request` (the request a `/breakglass`
-- comment opens: its id is reserved here before anything is built, so a re-run opens the same
-- one) or `extend` (written in the transaction that stores the new expiry).
-- Keep in step with ../postgres/0006_comment_effects.sql.
CREATE TABLE comment_effects (
    forge       TEXT    NOT NULL,
    repository  TEXT    NOT NULL,
    comment_id  INTEGER NOT NULL,
    effect      TEXT    NOT NULL,
    request_id  TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (forge, repository, comment_id, effect)
) STRICT;
-- One comment per request id: two comments never share a reserved id.
CREATE UNIQUE INDEX comment_effects_request ON comment_effects (request_id)
    WHERE effect = 'request';
