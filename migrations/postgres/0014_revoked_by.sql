-- Who asked for an early revoke (`/breakglass revoke`): the login and the forge's user id,
-- set with `revoke_reason = 'early'`, so that the revoke event, the revoked note and the
-- revert's merge message name the person (NULL for a revoke at the TTL or by reconciliation).
-- Keep in step with ../sqlite/0014_revoked_by.sql.
ALTER TABLE requests ADD COLUMN revoked_by TEXT;
ALTER TABLE requests ADD COLUMN revoked_by_id BIGINT;
