//! The lock of one pull request, held by all work on it (a webhook, a job): in this process a
//! striped mutex; on PostgreSQL also a row in `pr_locks`, so that two replicas never handle
//! the same PR at once either. Without it an approval and the decision of a push in the same
//! second, handled on two replicas, interleaved: the approval was dropped without a reply,
//! recorded as "0 of 1", or answered "withdrawn".
//!
//! The row is a lease on the service's clock (on PostgreSQL the database's, one for every
//! replica), renewed while the work runs and deleted when it ends; the row of a replica that
//! died lapses within [`LEASE`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::store::{Backend, PrKey, Store};

/// How long a row stays held without a heartbeat, as the service's job and delivery leases.
const LEASE: Duration = Duration::from_secs(2);
/// How often the holder renews it…
const HEARTBEAT: Duration = Duration::from_millis(500);
/// …for at most this long, as the service's leases: work stuck longer lets another replica in.
const MAX_HOLD: Duration = Duration::from_secs(120);
/// The longest pause between two tries of a lock another replica holds.
const MAX_WAIT_STEP: Duration = Duration::from_millis(50);

/// Held while work runs on a PR; dropping it lets the next one in.
pub(super) struct PrGuard<'a> {
    // Declared first, so dropped first: the row is let go before the local turn passes on.
    _shared: Option<SharedPrLock>,
    _local: tokio::sync::MutexGuard<'a, ()>,
}

impl<'a> PrGuard<'a> {
    pub(super) fn new(
        local: tokio::sync::MutexGuard<'a, ()>,
        shared: Option<SharedPrLock>,
    ) -> Self {
        Self {
            _shared: shared,
            _local: local,
        }
    }
}

/// This replica's row in `pr_locks`, renewed until dropped.
pub(super) struct SharedPrLock {
    store: Store,
    key: PrKey,
    holder: String,
    heartbeat: JoinHandle<()>,
}

/// On PostgreSQL, waits for PR `key`'s row and holds it; `None` on SQLite (one process), or
/// if the database cannot be asked (the work then goes on under this process's lock only,
/// as before replicas shared one; it fails soon enough on a database that does not answer).
pub(super) async fn across_replicas(
    store: &Store,
    clock: &Arc<dyn Clock>,
    key: PrKey,
) -> Option<SharedPrLock> {
    if store.backend() != Backend::Postgres {
        return None;
    }
    // One holder per hold: a hold that lapsed cannot let go of its successor's.
    let holder = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
    let mut pause = Duration::from_millis(5);
    loop {
        match store.try_lock_pr(&key, &holder, clock.now(), LEASE).await {
            Ok(true) => return Some(SharedPrLock::hold(store, clock, key, holder)),
            Ok(false) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_WAIT_STEP);
            }
            Err(err) => {
                tracing::warn!(pr = key.number, %err, "cannot take the PR's lock across replicas; going on under this process's");
                return None;
            }
        }
    }
}

impl SharedPrLock {
    fn hold(store: &Store, clock: &Arc<dyn Clock>, key: PrKey, holder: String) -> Self {
        let heartbeat = tokio::spawn({
            let (store, clock, key, holder) =
                (store.clone(), clock.clone(), key.clone(), holder.clone());
            async move {
                let started = Instant::now();
                loop {
                    tokio::time::sleep(HEARTBEAT).await;
                    if started.elapsed() >= MAX_HOLD {
                        return;
                    }
                    match store.renew_pr_lock(&key, &holder, clock.now(), LEASE).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(
                                pr = key.number,
                                "the PR's lock lapsed and another replica took it"
                            );
                            return;
                        }
                        Err(err) => {
                            tracing::warn!(pr = key.number, %err, "cannot renew the PR's lock")
                        }
                    }
                }
            }
        });
        Self {
            store: store.clone(),
            key,
            holder,
            heartbeat,
        }
    }
}

impl Drop for SharedPrLock {
    fn drop(&mut self) {
        self.heartbeat.abort();
        let (store, key, holder) = (
            self.store.clone(),
            self.key.clone(),
            std::mem::take(&mut self.holder),
        );
        // Dropped inside the service's runtime; outside one (a runtime shutting down), the
        // row lapses on its own.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = store.unlock_pr(&key, &holder).await {
                    tracing::warn!(pr = key.number, %err, "cannot let go of the PR's lock; it lapses in 2 s");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::store::ForgeKind;
    use crate::store::testing::postgres_store;

    fn key(number: u64) -> PrKey {
        PrKey {
            forge: ForgeKind::GitHub,
            repository: "acme/access-requests".into(),
            number,
        }
    }

    /// Two replicas (two holds on one database): the second waits for the first's row, also
    /// past the lease while the first's heartbeat renews it, and gets it once it is let go;
    /// another PR is not held up meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_replica_waits_for_the_pr_until_the_first_lets_go() {
        let Some((store, _database)) = postgres_store().await else {
            eprintln!("SKIPPED: no PostgreSQL");
            return;
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let first = across_replicas(&store, &clock, key(1)).await;
        assert!(first.is_some(), "on PostgreSQL the row is taken");
        let other = tokio::time::timeout(
            Duration::from_secs(1),
            across_replicas(&store, &clock, key(2)),
        )
        .await;
        assert!(matches!(other, Ok(Some(_))), "PR 2 is not held up by PR 1");

        let second = tokio::spawn({
            let (store, clock) = (store.clone(), clock.clone());
            async move { across_replicas(&store, &clock, key(1)).await.is_some() }
        });
        tokio::time::sleep(LEASE + Duration::from_millis(700)).await;
        assert!(
            !second.is_finished(),
            "still held, past the lease, by the heartbeat"
        );
        drop(first);
        let taken = tokio::time::timeout(Duration::from_secs(1), second)
            .await
            .expect("taken soon after it is let go")
            .unwrap();
        assert!(taken);
    }

    /// A replica that died mid-work (its heartbeat gone, its row left): the row lapses and
    /// the PR is taken within the lease.
    #[tokio::test]
    async fn the_row_of_a_replica_that_died_lapses() {
        let Some((store, _database)) = postgres_store().await else {
            eprintln!("SKIPPED: no PostgreSQL");
            return;
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        assert!(
            store
                .try_lock_pr(&key(1), "dead", clock.now(), LEASE)
                .await
                .unwrap()
        );
        let started = Instant::now();
        let taken = tokio::time::timeout(
            LEASE + Duration::from_secs(1),
            across_replicas(&store, &clock, key(1)),
        )
        .await
        .expect("taken once the dead one's lease lapsed");
        assert!(taken.is_some());
        assert!(started.elapsed() >= LEASE - Duration::from_millis(100));
    }
}
