-- The grants a requester holds in an environment, looked up at every fast-path decision (a
-- fast path never gives more than its rule's max_duration in total): by index, not by reading
-- every active grant.
-- Keep in step with ../sqlite/0012_requests_by_requester.sql.
CREATE INDEX requests_requester ON requests (requester_id, environment, state);
