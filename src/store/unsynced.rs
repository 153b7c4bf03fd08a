//! Bookkeeping writes that need not survive a power loss: claims, lease renewals and "done"
//! marks of deliveries and jobs. Every one of them may be lost without losing work (a lost
//! claim or lease is claimed again, a lost done mark only means the work is handled again,
//! which every handler survives since a crash can do the same), so they skip the fsync that
//! each durable commit pays, and every fsync serves what must be durable: intake.
//!
//! It stays safe because both databases write their log in order and a durable commit syncs
//! everything before it: SQLite's WAL with `synchronous = FULL` syncs the whole file at every
//! commit, PostgreSQL flushes its WAL up to each synchronous commit. What a power loss can
//! take is therefore always the last few bookkeeping writes after the last durable commit,
//! never a bookkeeping write that a later durable commit built on. A process crash takes
//! nothing: the writes are in the operating system's hands already.

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, Executor};

use super::{Backend, Store, StoreError};

/// A pooled connection whose commits are not synced until [`Unsynced::restore`]. Dropped
/// before that (an error or a cancelled future), the connection is closed rather than returned
/// to the pool: the next user of the pool must never get a connection that does not sync.
pub(crate) struct Unsynced {
    conn: PoolConnection<Any>,
    restore: Option<&'static str>,
}

impl Unsynced {
    /// The connection, for the bookkeeping statement.
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }

    /// Syncs again, and gives the connection back to the pool.
    pub(crate) async fn restore(mut self) -> Result<(), StoreError> {
        if let Some(sql) = self.restore {
            self.conn.execute(sql).await?;
            self.restore = None;
        }
        Ok(())
    }
}

impl Drop for Unsynced {
    fn drop(&mut self) {
        if self.restore.is_some() {
            self.conn.close_on_drop();
        }
    }
}

impl Store {
    /// A connection for bookkeeping writes (see the module's comment). An in-memory SQLite
    /// database syncs nothing anyway, and its one connection must never be closed.
    pub(crate) async fn unsynced(&self) -> Result<Unsynced, StoreError> {
        let conn = self.conn().await?;
        let (relax, restore) = match self.backend {
            Backend::Sqlite if self.in_memory => {
                return Ok(Unsynced {
                    conn,
                    restore: None,
                });
            }
            Backend::Sqlite => ("PRAGMA synchronous = NORMAL", "PRAGMA synchronous = FULL"),
            Backend::Postgres => ("SET synchronous_commit = off", "RESET synchronous_commit"),
        };
        let mut unsynced = Unsynced {
            conn,
            restore: Some(restore),
        };
        unsynced.conn.execute(relax).await?;
        Ok(unsynced)
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::*;

    async fn setting(store: &Store) -> String {
        let mut conn = store.pool().acquire().await.unwrap();
        let sql = match store.backend() {
            Backend::Sqlite => "SELECT CAST(synchronous AS TEXT) FROM pragma_synchronous",
            Backend::Postgres => "SELECT current_setting('synchronous_commit')",
        };
        let row = sqlx::query(sql).fetch_one(&mut *conn).await.unwrap();
        row.get::<String, _>(0)
    }

    async fn stores() -> Vec<(Store, &'static str, &'static str, tempfile::TempDir)> {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("b.db").display());
        // SQLite: 2 is FULL, 1 is NORMAL.
        let mut stores = vec![(Store::connect(&url).await.unwrap(), "2", "1", dir)];
        if let Ok(url) = std::env::var("BREAKGLASS_TEST_DATABASE_URL") {
            let store = Store::connect(&url).await.unwrap();
            stores.push((store, "on", "off", tempfile::tempdir().unwrap()));
        }
        stores
    }

    #[tokio::test]
    async fn bookkeeping_is_unsynced_and_the_connection_syncs_again_after_it() {
        for (store, synced, unsynced, _dir) in stores().await {
            // One connection in the pool, so the next acquire gets the same one back.
            assert_eq!(setting(&store).await, synced);
            let mut conn = store.unsynced().await.unwrap();
            let row = sqlx::query(match store.backend() {
                Backend::Sqlite => "SELECT CAST(synchronous AS TEXT) FROM pragma_synchronous",
                Backend::Postgres => "SELECT current_setting('synchronous_commit')",
            })
            .fetch_one(conn.conn())
            .await
            .unwrap();
            assert_eq!(row.get::<String, _>(0), unsynced);
            conn.restore().await.unwrap();
            assert_eq!(setting(&store).await, synced, "{:?}", store.backend());
        }
    }

    #[tokio::test]
    async fn an_unsynced_connection_dropped_unrestored_is_never_reused() {
        for (store, synced, _, _dir) in stores().await {
            let conn = store.unsynced().await.unwrap();
            drop(conn); // an error or a cancelled future before `restore`
            // Whatever connection the pool hands out next syncs.
            for _ in 0..3 {
                assert_eq!(setting(&store).await, synced, "{:?}", store.backend());
            }
        }
    }
}
