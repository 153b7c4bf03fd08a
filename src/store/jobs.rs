//! The durable job queue: every timer the bot relies on (revoke at expiry, remind before it,
//! poll reactions, grant, open the revert PR…) is a row here, so a restart forgets nothing.
//!
//! At most one job of a kind exists per request (rescheduling moves it). Workers claim due
//! jobs with a lease; on PostgreSQL the claim uses `FOR UPDATE SKIP LOCKED`, so replicas never
//! get the same job, and a job whose worker died becomes claimable when its lease lapses. A
//! failing job is retried forever with its error kept: a revoke must never be dropped.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::deliveries::lease;
use super::requests::{RequestRecord, request_columns};
use super::row::{Fields, string_enum};
use super::{
    Backend, ForgeKind, Lease, RequestState, Store, StoreError, duration_millis, to_millis,
};
use crate::names::RequestId;

/// A job's id (its row id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a job does when it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Merge an approved request PR (then schedule grant, reminder and revoke).
    Merge,
    /// Apply the grant through the role's provider (after the merge), and say so.
    Grant,
    /// Open the revert PR, and label a fast-path grant for review (after the expiry comment:
    /// nothing the requester waits for).
    OpenRevert,
    /// Comment that access expires soon.
    Remind,
    /// Revoke at expiry: the provider revoke and the request's end, on time; no forge call.
    Revoke,
    /// After a revoke: merge the revert PR, delete the branches, tell the requester (forge
    /// work, which may be slow or refused; it never holds a revoke back).
    Revert,
    /// Poll the PR's reactions (GitHub sends no webhook for them).
    Poll,
    /// Escalate a fast-path grant whose after-the-fact review is overdue.
    ReviewDue,
    /// Close a request that nobody approved in time.
    Expire,
}

string_enum!(JobKind {
    Merge => "merge",
    Grant => "grant",
    OpenRevert => "open_revert",
    Remind => "remind",
    Revoke => "revoke",
    Revert => "revert",
    Poll => "poll",
    ReviewDue => "review_due",
    Expire => "expire",
});

impl JobKind {
    /// The lane whose worker runs this kind.
    pub fn lane(self) -> Lane {
        match self {
            Self::Revoke => Lane::Revocation,
            _ => Lane::Forge,
        }
    }
}

/// Jobs are worked off in two lanes, each by its own worker, so that forge work (slow,
/// rate-limited, sometimes refused) never delays a revoke that is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Revokes: the provider call and the request's end, timed against the expiry.
    Revocation,
    /// Everything else: merges, grants, reverts, comments, polls.
    Forge,
}

impl Lane {
    /// Both lanes.
    pub const ALL: [Lane; 2] = [Lane::Revocation, Lane::Forge];

    /// The SQL condition on `kind` that selects this lane's jobs.
    fn condition(self) -> &'static str {
        match self {
            Self::Revocation => "kind = 'revoke'",
            Self::Forge => "kind <> 'revoke'",
        }
    }
}

/// A scheduled job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The job's id (for complete and retry).
    pub id: JobId,
    /// What to do.
    pub kind: JobKind,
    /// The request it is for.
    pub request_id: RequestId,
    /// When it is due.
    pub run_at: DateTime<Utc>,
    /// Failed runs so far.
    pub attempts: u32,
    /// Who is running it, if anyone.
    pub lease: Option<Lease>,
    /// Why the last run failed.
    pub last_error: Option<String>,
    /// When it was first scheduled.
    pub created_at: DateTime<Utc>,
}

macro_rules! columns {
    () => {
        "id, kind, request_id, run_at, attempts, locked_by, locked_until, last_error, created_at"
    };
}

impl TryFrom<&AnyRow> for Job {
    type Error = StoreError;

    fn try_from(row: &AnyRow) -> Result<Self, StoreError> {
        let f = Fields::new(row, "jobs", "id");
        Ok(Self {
            id: JobId(f.int("id")?),
            kind: f.parsed("kind", |text| text.parse())?,
            request_id: f.parsed("request_id", RequestId::try_from)?,
            run_at: f.time("run_at")?,
            attempts: f.count("attempts")?,
            lease: lease(&f)?,
            last_error: f.opt_text("last_error")?,
            created_at: f.time("created_at")?,
        })
    }
}

fn decode_all(rows: &[AnyRow]) -> Result<Vec<Job>, StoreError> {
    rows.iter().map(Job::try_from).collect()
}

/// Schedules the `kind` job of a request at `run_at`. If it already exists it is moved to
/// `run_at` (its attempts and last error are kept): this is how `extend` postpones a revoke.
/// A job that a worker is running stays leased to it, marked `rescheduled`: the run's end
/// ([`complete_job`], [`retry_job`]) unlocks it for its new time, so that no other worker
/// runs it meanwhile. Returns the job's id.
pub async fn schedule_job(
    conn: &mut AnyConnection,
    kind: JobKind,
    request_id: &RequestId,
    run_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<JobId, StoreError> {
    let result = sqlx::query(
        "INSERT INTO jobs (kind, request_id, run_at, attempts, created_at) \
         VALUES ($1, $2, $3, 0, $4) ON CONFLICT (kind, request_id) DO UPDATE \
         SET run_at = excluded.run_at, rescheduled = 1 RETURNING id",
    )
    .bind(kind.as_str())
    .bind(request_id.as_str())
    .bind(to_millis(run_at))
    .bind(to_millis(now))
    .fetch_one(&mut *conn)
    .await;
    match result {
        Ok(row) => Ok(JobId(row.try_get::<i64, _>("id")?)),
        Err(sqlx::Error::Database(err)) if err.is_foreign_key_violation() => {
            Err(StoreError::NotFound {
                what: "request",
                key: request_id.to_string(),
            })
        }
        Err(err) => Err(err.into()),
    }
}

/// Gives a request stuck in `Revoking` its revoke job back, due at `now`, in one statement:
/// nothing happens if the request has left `Revoking` meanwhile or a revoke job is due by
/// then (a reconciliation pass racing the revoke it would resume); one due later (still at
/// the expiry: the write that should have moved it to now was lost) is moved to `now`, unless
/// it ran and failed (it waits out its backoff: a provider that needs a person is not called
/// again at every pass). `true` if a job was created or moved.
pub async fn resume_revoke(
    conn: &mut AnyConnection,
    request_id: &RequestId,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "INSERT INTO jobs (kind, request_id, run_at, attempts, created_at) \
         SELECT $1, id, $3, 0, $3 FROM requests WHERE id = $2 AND state = $4 \
         ON CONFLICT (kind, request_id) DO UPDATE SET run_at = excluded.run_at, rescheduled = 1 \
         WHERE jobs.run_at > excluded.run_at AND jobs.attempts = 0",
    )
    .bind(JobKind::Revoke.as_str())
    .bind(request_id.as_str())
    .bind(to_millis(now))
    .bind(RequestState::Revoking.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Keeps an active grant's revoke job at `at` (its expiry), scheduled again if it is being
/// run, in one statement: nothing happens if the request has left `Active` meanwhile (an
/// early revoke moved its job to now, and that stays). `true` if the job was kept.
pub async fn keep_revoke_at(
    conn: &mut AnyConnection,
    request_id: &RequestId,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "INSERT INTO jobs (kind, request_id, run_at, attempts, created_at) \
         SELECT $1, id, $3, 0, $4 FROM requests WHERE id = $2 AND state = $5 \
         ON CONFLICT (kind, request_id) DO UPDATE SET run_at = excluded.run_at, rescheduled = 1",
    )
    .bind(JobKind::Revoke.as_str())
    .bind(request_id.as_str())
    .bind(to_millis(at))
    .bind(to_millis(now))
    .bind(RequestState::Active.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Leases up to `limit` due jobs (`run_at <= now`) that are unleased or whose lease lapsed
/// to `worker` until `now + lease`, earliest first. Run each, then [`complete_job`] or
/// [`retry_job`] it.
pub async fn claim_due_jobs(
    conn: &mut AnyConnection,
    worker: &str,
    now: DateTime<Utc>,
    lease: Duration,
    limit: u32,
) -> Result<Vec<Job>, StoreError> {
    claim(conn, "TRUE", worker, now, lease, limit).await
}

/// [`claim_due_jobs`] of one lane only.
pub async fn claim_lane_jobs(
    conn: &mut AnyConnection,
    lane: Lane,
    worker: &str,
    now: DateTime<Utc>,
    lease: Duration,
    limit: u32,
) -> Result<Vec<Job>, StoreError> {
    claim(conn, lane.condition(), worker, now, lease, limit).await
}

async fn claim(
    conn: &mut AnyConnection,
    condition: &str,
    worker: &str,
    now: DateTime<Utc>,
    lease: Duration,
    limit: u32,
) -> Result<Vec<Job>, StoreError> {
    // See deliveries::claim_deliveries for why this shape is safe on both backends.
    let lock = match Backend::of(conn)? {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE jobs SET locked_by = $1, locked_until = $2, rescheduled = 0 WHERE id IN (\
         SELECT id FROM jobs WHERE run_at <= $3 AND {condition} \
         AND (locked_until IS NULL OR locked_until <= $3) \
         ORDER BY run_at, id LIMIT $4{lock}) RETURNING {}",
        columns!()
    );
    let now = to_millis(now);
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(worker)
        .bind(now.saturating_add(duration_millis(lease)))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
    let mut jobs = decode_all(&rows)?;
    jobs.sort_by_key(|job| (job.run_at, job.id));
    Ok(jobs)
}

/// Up to `limit` requests in `state` that have no job of `kind`, oldest first: one query for
/// what reconciliation repairs (an approval whose merge job a crash never wrote, a grant
/// without its revoke), instead of one per request.
pub async fn requests_without_job(
    conn: &mut AnyConnection,
    state: RequestState,
    kind: JobKind,
    limit: u32,
) -> Result<Vec<RequestRecord>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        request_columns!(),
        " FROM requests r WHERE r.state = $1 AND NOT EXISTS \
         (SELECT 1 FROM jobs j WHERE j.request_id = r.id AND j.kind = $2) \
         ORDER BY r.created_at, r.id LIMIT $3"
    ))
    .bind(state.as_str())
    .bind(kind.as_str())
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(RequestRecord::try_from).collect()
}

/// Extends the lease of job `only` (every lease when `None`) that `worker` holds to
/// `now + lease`: a live worker's heartbeat, so that leases can be short and the work of a
/// dead one is taken over soon. Returns how many.
pub async fn renew_job_leases(
    conn: &mut AnyConnection,
    worker: &str,
    only: Option<JobId>,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<u64, StoreError> {
    let until = to_millis(now).saturating_add(duration_millis(lease));
    let query = match only {
        Some(id) => {
            sqlx::query("UPDATE jobs SET locked_until = $1 WHERE locked_by = $2 AND id = $3")
                .bind(until)
                .bind(worker)
                .bind(id.0)
        }
        None => sqlx::query("UPDATE jobs SET locked_until = $1 WHERE locked_by = $2")
            .bind(until)
            .bind(worker),
    };
    Ok(query.execute(&mut *conn).await?.rows_affected())
}

/// Deletes a job that ran, if `worker` still holds it and nobody scheduled it again while it
/// ran; one scheduled again is unlocked instead, due at its new time, with no failed attempts.
/// `false` unless deleted: the lease was lost (it lapsed and another worker claimed the job, or it was cancelled
/// meanwhile), or the job was scheduled again.
pub async fn complete_job(
    conn: &mut AnyConnection,
    id: JobId,
    worker: &str,
) -> Result<bool, StoreError> {
    let deleted =
        sqlx::query("DELETE FROM jobs WHERE id = $1 AND locked_by = $2 AND rescheduled = 0")
            .bind(id.0)
            .bind(worker)
            .execute(&mut *conn)
            .await?;
    if deleted.rows_affected() == 1 {
        return Ok(true);
    }
    // It ran well: a later failure backs off from the start again.
    sqlx::query(
        "UPDATE jobs SET locked_by = NULL, locked_until = NULL, rescheduled = 0, \
         attempts = 0, last_error = NULL WHERE id = $1 AND locked_by = $2",
    )
    .bind(id.0)
    .bind(worker)
    .execute(&mut *conn)
    .await?;
    Ok(false)
}

/// Records a failed run of a job `worker` holds: one more attempt, the error kept, unlocked
/// and due again at `next_run_at`, or at the time it was scheduled for while it ran. `false`
/// if the lease was lost (see [`complete_job`]).
pub async fn retry_job(
    conn: &mut AnyConnection,
    id: JobId,
    worker: &str,
    error: &str,
    next_run_at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "UPDATE jobs SET attempts = attempts + 1, last_error = $3, \
         run_at = CASE WHEN rescheduled = 0 THEN $4 ELSE run_at END, \
         locked_by = NULL, locked_until = NULL, rescheduled = 0 \
         WHERE id = $1 AND locked_by = $2",
    )
    .bind(id.0)
    .bind(worker)
    .bind(error)
    .bind(to_millis(next_run_at))
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Removes the `kind` job of a request, leased or not. `false` if there was none.
pub async fn cancel_job(
    conn: &mut AnyConnection,
    kind: JobKind,
    request_id: &RequestId,
) -> Result<bool, StoreError> {
    let result = sqlx::query("DELETE FROM jobs WHERE kind = $1 AND request_id = $2")
        .bind(kind.as_str())
        .bind(request_id.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(result.rows_affected() == 1)
}

/// The jobs of a request, earliest first (for `/breakglass status` and tests).
pub async fn jobs_for_request(
    conn: &mut AnyConnection,
    request_id: &RequestId,
) -> Result<Vec<Job>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM jobs WHERE request_id = $1 ORDER BY run_at, id"
    ))
    .bind(request_id.as_str())
    .fetch_all(&mut *conn)
    .await?;
    decode_all(&rows)
}

/// The earliest time at which some job can be claimed: its `run_at`, or the end of its lease
/// if it is leased beyond that. A worker sleeps until then (or until woken). `None` when the
/// queue is empty.
pub async fn next_job_due(conn: &mut AnyConnection) -> Result<Option<DateTime<Utc>>, StoreError> {
    next_due(conn, JobKind::ALL).await
}

/// The PRs whose emoji are polled on one forge (each has a `poll` job), by what the poll
/// waits for: an approval (of a pending request, or of the extension an active grant's
/// requester asked for), or a fast-path grant's review.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolledCounts {
    /// Pending requests and asked extensions, waiting for their approval.
    pub approvals: u64,
    /// Any other polled request: a fast-path grant awaiting its retroactive review.
    pub reviews: u64,
}

/// How many PRs on `forge` are polled, and for what. An index probe per `poll` job
/// (`jobs (kind, run_at)`, then each request by its key, and an active grant's approvals by
/// its id). An extension is asked while the requester's own ask of the current expiry is
/// stored (its subject `extend:<expiry ms>+<secs>s`, see the workflow's `extend`).
pub async fn count_polled(
    conn: &mut AnyConnection,
    forge: ForgeKind,
) -> Result<PolledCounts, StoreError> {
    let (all, pending): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN requests.state = 'pending' \
           OR (requests.state = 'active' AND EXISTS (SELECT 1 FROM approvals \
             WHERE approvals.request_id = requests.id \
             AND approvals.approver_id = requests.requester_id \
             AND approvals.head_sha LIKE 'extend:' || CAST(requests.expires_at AS TEXT) || '+%')) \
           THEN 1 ELSE 0 END), 0) \
         FROM jobs JOIN requests ON requests.id = jobs.request_id \
         WHERE jobs.kind = $1 AND requests.forge = $2",
    )
    .bind(JobKind::Poll.as_str())
    .bind(forge.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(PolledCounts {
        approvals: count(pending),
        reviews: count(all.saturating_sub(pending)),
    })
}

/// [`next_job_due`] of one lane.
pub async fn next_lane_job_due(
    conn: &mut AnyConnection,
    lane: Lane,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let kinds: Vec<JobKind> = JobKind::ALL
        .iter()
        .copied()
        .filter(|kind| kind.lane() == lane)
        .collect();
    next_due(conn, &kinds).await
}

/// Asked after nearly every batch a worker runs, with 100,000 revokes waiting: a few index
/// probes per kind on `(kind, run_at)`, never a scan. Per kind, the first job by `run_at`
/// that is not leased beyond its `run_at`; and the earliest lease end among the jobs before
/// it (a leased job after it is due later anyway).
async fn next_due(
    conn: &mut AnyConnection,
    kinds: &[JobKind],
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let per_kind: Vec<String> = kinds
        .iter()
        .map(|kind| {
            // The kinds are our own closed list of identifiers, not input.
            let first = format!(
                "(SELECT run_at FROM jobs WHERE kind = '{kind}' AND (locked_until IS NULL \
                 OR locked_until <= run_at) ORDER BY run_at LIMIT 1)"
            );
            format!(
                "SELECT {first} AS due UNION ALL SELECT MIN(locked_until) FROM jobs \
                 WHERE kind = '{kind}' AND locked_until > run_at \
                 AND run_at <= COALESCE({first}, {})",
                i64::MAX
            )
        })
        .collect();
    let sql = format!(
        "SELECT MIN(due) AS due FROM ({}) AS dues",
        per_kind.join(" UNION ALL ")
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut *conn)
        .await?;
    Fields::new(&row, "jobs", "due").opt_time("due")
}

/// Jobs due at `now` that have not completed (running, failing or waiting for a worker),
/// earliest first.
pub async fn overdue_jobs(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
) -> Result<Vec<Job>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM jobs WHERE run_at <= $1 ORDER BY run_at, id"
    ))
    .bind(to_millis(now))
    .fetch_all(&mut *conn)
    .await?;
    decode_all(&rows)
}

/// For metrics: how long the most overdue job has been due (zero when none is).
pub async fn job_lag(conn: &mut AnyConnection, now: DateTime<Utc>) -> Result<Duration, StoreError> {
    let now_ms = to_millis(now);
    let row = sqlx::query("SELECT MIN(run_at) AS oldest FROM jobs WHERE run_at <= $1")
        .bind(now_ms)
        .fetch_one(&mut *conn)
        .await?;
    let oldest = Fields::new(&row, "jobs", "oldest").opt_int("oldest")?;
    Ok(oldest.map_or(Duration::ZERO, |oldest| {
        Duration::from_millis(u64::try_from(now_ms.saturating_sub(oldest)).unwrap_or(0))
    }))
}

impl Store {
    /// See [`schedule_job`]: creates or moves the `kind` job of a request.
    pub async fn schedule_job(
        &self,
        kind: JobKind,
        request_id: &RequestId,
        run_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<JobId, StoreError> {
        schedule_job(&mut *self.conn().await?, kind, request_id, run_at, now).await
    }

    /// See [`keep_revoke_at`].
    pub async fn keep_revoke_at(
        &self,
        request_id: &RequestId,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        keep_revoke_at(&mut *self.conn().await?, request_id, at, now).await
    }

    /// See [`resume_revoke`].
    pub async fn resume_revoke(
        &self,
        request_id: &RequestId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        resume_revoke(&mut *self.conn().await?, request_id, now).await
    }

    /// See [`claim_due_jobs`].
    pub async fn claim_due_jobs(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        claim_due_jobs(&mut *self.conn().await?, worker, now, lease, limit).await
    }

    /// See [`claim_lane_jobs`].
    pub async fn claim_lane_jobs(
        &self,
        lane: Lane,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        let mut conn = self.unsynced().await?;
        let claimed = claim_lane_jobs(conn.conn(), lane, worker, now, lease, limit).await;
        conn.restore().await?;
        claimed
    }

    /// See [`count_polled`].
    pub async fn count_polled(&self, forge: ForgeKind) -> Result<PolledCounts, StoreError> {
        count_polled(&mut *self.conn().await?, forge).await
    }

    /// See [`next_lane_job_due`].
    pub async fn next_lane_job_due(&self, lane: Lane) -> Result<Option<DateTime<Utc>>, StoreError> {
        next_lane_job_due(&mut *self.conn().await?, lane).await
    }

    /// See [`requests_without_job`].
    pub async fn requests_without_job(
        &self,
        state: RequestState,
        kind: JobKind,
        limit: u32,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        requests_without_job(&mut *self.conn().await?, state, kind, limit).await
    }

    /// See [`renew_job_leases`].
    pub async fn renew_job_leases(
        &self,
        worker: &str,
        only: Option<JobId>,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<u64, StoreError> {
        let mut conn = self.unsynced().await?;
        let renewed = renew_job_leases(conn.conn(), worker, only, now, lease).await;
        conn.restore().await?;
        renewed
    }

    /// See [`complete_job`]. Bookkeeping, like claims and renewals: not synced on its own
    /// (see `unsynced`); a completion lost to a power loss only runs the job again.
    pub async fn complete_job(&self, id: JobId, worker: &str) -> Result<bool, StoreError> {
        let mut conn = self.unsynced().await?;
        let completed = complete_job(conn.conn(), id, worker).await;
        conn.restore().await?;
        completed
    }

    /// See [`retry_job`].
    pub async fn retry_job(
        &self,
        id: JobId,
        worker: &str,
        error: &str,
        next_run_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        retry_job(&mut *self.conn().await?, id, worker, error, next_run_at).await
    }

    /// Removes the `kind` job of a request.
    pub async fn cancel_job(
        &self,
        kind: JobKind,
        request_id: &RequestId,
    ) -> Result<bool, StoreError> {
        cancel_job(&mut *self.conn().await?, kind, request_id).await
    }

    /// The jobs of a request, earliest first.
    pub async fn jobs_for_request(&self, request_id: &RequestId) -> Result<Vec<Job>, StoreError> {
        jobs_for_request(&mut *self.conn().await?, request_id).await
    }

    /// See [`next_job_due`].
    pub async fn next_job_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        next_job_due(&mut *self.conn().await?).await
    }

    /// See [`overdue_jobs`].
    pub async fn overdue_jobs(&self, now: DateTime<Utc>) -> Result<Vec<Job>, StoreError> {
        overdue_jobs(&mut *self.conn().await?, now).await
    }

    /// See [`job_lag`].
    pub async fn job_lag(&self, now: DateTime<Utc>) -> Result<Duration, StoreError> {
        job_lag(&mut *self.conn().await?, now).await
    }
}
