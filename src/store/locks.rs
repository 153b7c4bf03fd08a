//! Locks that order work across replicas: what two replicas must not do at once even though
//! each does it under its own process's lock (removing the same files from the default branch
//! by two fresh changes, the second an empty merge the audit calls forged), or handling the
//! same pull request.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Backend, ForgeKind, Store, StoreError, duration_millis, to_i64, to_millis};

/// Held while files are removed from the default branch by a fresh change of the bot's. In
/// this process a mutex; on PostgreSQL also a transaction-scoped advisory lock, so that a
/// replica in another process waits too. Dropping the guard ends both: the transaction is
/// rolled back as its connection goes back to the pool, and if the process dies, PostgreSQL
/// ends its session and the lock with it. SQLite serves one process.
pub struct RemovalLock {
    _shared: Option<sqlx::Transaction<'static, sqlx::Any>>,
    _local: tokio::sync::MutexGuard<'static, ()>,
}

/// The process's half of [`RemovalLock`].
static REMOVING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The advisory lock key of removals ("brkglsrm" in ASCII): one per database, whatever the
/// repository, as the process lock is.
const REMOVING_KEY: i64 = 0x6272_6b67_6c73_726d;

impl Store {
    /// Waits for, then holds, the right to remove files from the default branch (see
    /// [`RemovalLock`]).
    pub async fn removal_lock(&self) -> Result<RemovalLock, StoreError> {
        let local = REMOVING.lock().await;
        let shared = self.lock_across_replicas(REMOVING_KEY).await?;
        Ok(RemovalLock {
            _shared: shared,
            _local: local,
        })
    }

    /// On PostgreSQL, a transaction holding the advisory lock `key` (waited for); `None` on
    /// SQLite. The lock lasts as long as the transaction.
    pub async fn lock_across_replicas(
        &self,
        key: i64,
    ) -> Result<Option<sqlx::Transaction<'static, sqlx::Any>>, StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut transaction = self.pool.begin().await?;
        // The holder's transaction sits idle while it works with the forge: a server-wide
        // `idle_in_transaction_session_timeout` would end its session, and the lock with it,
        // while it carries on.
        sqlx::query("SET LOCAL idle_in_transaction_session_timeout = 0")
            .execute(&mut *transaction)
            .await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(key)
            .execute(&mut *transaction)
            .await?;
        Ok(Some(transaction))
    }
}

/// Which pull request a [`Store::try_lock_pr`] row locks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrKey {
    pub forge: ForgeKind,
    pub repository: String,
    pub number: u64,
}

impl Store {
    /// Takes the lock of PR `key` for `holder` until `now + lease`, unless another holder's
    /// is live (`locked_until > now`); `true` when `holder` holds it. One statement: of two
    /// replicas trying at once, one wins.
    pub async fn try_lock_pr(
        &self,
        key: &PrKey,
        holder: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let number = to_i64(key.number, "pull request", &key.repository)?;
        let now = to_millis(now);
        let taken = sqlx::query(
            "INSERT INTO pr_locks (forge, repository, pr_number, holder, locked_until) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (forge, repository, pr_number) DO UPDATE \
             SET holder = excluded.holder, locked_until = excluded.locked_until \
             WHERE pr_locks.locked_until <= $6 OR pr_locks.holder = excluded.holder",
        )
        .bind(key.forge.as_str())
        .bind(&key.repository)
        .bind(number)
        .bind(holder)
        .bind(now.saturating_add(duration_millis(lease)))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    /// Extends `holder`'s lock of PR `key` to `now + lease`; `false` if `holder` no longer
    /// holds it (it lapsed and another took it).
    pub async fn renew_pr_lock(
        &self,
        key: &PrKey,
        holder: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let number = to_i64(key.number, "pull request", &key.repository)?;
        let renewed = sqlx::query(
            "UPDATE pr_locks SET locked_until = $1 \
             WHERE forge = $2 AND repository = $3 AND pr_number = $4 AND holder = $5",
        )
        .bind(to_millis(now).saturating_add(duration_millis(lease)))
        .bind(key.forge.as_str())
        .bind(&key.repository)
        .bind(number)
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Lets go of `holder`'s lock of PR `key` (nothing if another holds it now).
    pub async fn unlock_pr(&self, key: &PrKey, holder: &str) -> Result<(), StoreError> {
        let number = to_i64(key.number, "pull request", &key.repository)?;
        sqlx::query(
            "DELETE FROM pr_locks \
             WHERE forge = $1 AND repository = $2 AND pr_number = $3 AND holder = $4",
        )
        .bind(key.forge.as_str())
        .bind(&key.repository)
        .bind(number)
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
