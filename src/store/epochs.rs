//! Cache epochs: a counter per in-memory cache, bumped by whichever replica learns that the
//! cached data changed (a push webhook), and read by every replica before it serves its copy.
//! A cache that is not here yet has epoch 0.

use sqlx::AnyConnection;

use super::{Store, StoreError};

/// The epoch of the default branch's policies (and its name).
pub const POLICIES: &str = "policies";

/// The current epoch of cache `name`.
pub async fn cache_epoch(conn: &mut AnyConnection, name: &str) -> Result<i64, StoreError> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT epoch FROM cache_epochs WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map_or(0, |(epoch,)| epoch))
}

/// Moves cache `name` to a new epoch: every copy read before now is stale.
pub async fn bump_cache_epoch(conn: &mut AnyConnection, name: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO cache_epochs (name, epoch) VALUES ($1, 1) \
         ON CONFLICT (name) DO UPDATE SET epoch = cache_epochs.epoch + 1",
    )
    .bind(name)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    /// See [`cache_epoch`].
    pub async fn cache_epoch(&self, name: &str) -> Result<i64, StoreError> {
        cache_epoch(&mut *self.conn().await?, name).await
    }

    /// See [`bump_cache_epoch`].
    pub async fn bump_cache_epoch(&self, name: &str) -> Result<(), StoreError> {
        bump_cache_epoch(&mut *self.conn().await?, name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_epoch_starts_at_zero_and_each_bump_moves_it() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        assert_eq!(store.cache_epoch(POLICIES).await.unwrap(), 0);
        store.bump_cache_epoch(POLICIES).await.unwrap();
        store.bump_cache_epoch(POLICIES).await.unwrap();
        assert_eq!(store.cache_epoch(POLICIES).await.unwrap(), 2);
        assert_eq!(store.cache_epoch("other").await.unwrap(), 0);
    }
}
