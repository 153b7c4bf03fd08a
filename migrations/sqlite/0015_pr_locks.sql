-- The lock of a pull request across replicas (PostgreSQL; SQLite serves one process): work on
-- one PR (a webhook, a job) holds its row while it runs, so that two replicas never handle the
-- same PR at once. A lease on the database's clock, renewed while the work runs: the row of a
-- replica that died lapses with it.
-- Keep in step with ../postgres/0015_pr_locks.sql.
CREATE TABLE pr_locks (
    forge        TEXT   NOT NULL,
    repository   TEXT   NOT NULL,
    pr_number    BIGINT NOT NULL,
    holder       TEXT   NOT NULL,
    locked_until BIGINT NOT NULL,
    PRIMARY KEY (forge, repository, pr_number)
);
