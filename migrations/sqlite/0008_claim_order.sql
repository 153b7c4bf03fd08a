-- A claim takes the oldest pending deliveries (ORDER BY received_at, seq LIMIT n). Indexed by
-- (state, next_attempt_at), it had to read and sort every pending delivery first: 17 ms at
-- 20,000 pending and 49 ms at 80,000 on SQLite, holding its one connection while webhooks
-- waited to be stored. In arrival order, a claim reads about the rows it takes (0.5 ms). The
-- same index serves the purge of old done deliveries (state, received_at).
-- Keep in step with ../postgres/0008_claim_order.sql.
DROP INDEX deliveries_claim;
CREATE INDEX deliveries_claim_order ON deliveries (state, received_at, seq);
