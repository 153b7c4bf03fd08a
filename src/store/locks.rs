//! Locks that order work across replicas: what two replicas must not do at once even though
//! each does it under its own process's lock (removing the same files from the default branch
//! by two fresh changes, the second an empty merge the audit calls forged).

use super::{Backend, Store, StoreError};

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
