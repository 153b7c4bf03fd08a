//! The lock of one pull request, held by all work on it (a webhook, a job): in this process a
//! striped mutex; on PostgreSQL also a row in `pr_locks`, so that two replicas never handle
//! the same PR at once either. Without it an approval and the decision of a push in the same
//! second, handled on two replicas, interleaved: the approval was dropped without a reply,
//! recorded as "0 of 1", or answered "withdrawn".
//!
//! The row is a lease on the service's clock (on PostgreSQL the database's, one for every
//! replica), renewed while the work runs and deleted when it ends; the row of a replica that
//! died lapses within [`LEASE`]. Work whose hold ends before it does (held [`MAX_HOLD`], or
//! not renewed for a lease) is stopped ([`while_held`]), as a crash would stop it: another
//! replica may hold the PR then.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::store::{Backend, PrKey, Store, StoreError};

/// How long a row stays held without a heartbeat, as the service's job and delivery leases.
const LEASE: Duration = Duration::from_secs(2);
/// How often the holder renews it…
const HEARTBEAT: Duration = Duration::from_millis(500);
/// …for at most this long, as the service's leases: work stuck longer lets another replica in.
const MAX_HOLD: Duration = Duration::from_secs(120);
/// The longest pause between two tries of a lock another replica holds.
const MAX_WAIT_STEP: Duration = Duration::from_millis(50);

/// Held while work runs on a PR; dropping it lets the next one in.
pub(super) struct PrGuard {
    shared: Option<SharedPrLock>,
    local: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl PrGuard {
    pub(super) fn new(
        local: tokio::sync::OwnedMutexGuard<()>,
        shared: Option<SharedPrLock>,
    ) -> Self {
        Self {
            shared,
            local: Some(local),
        }
    }

    /// Ends when the hold across replicas does; never on SQLite (one process).
    async fn lost(&self) {
        match &self.shared {
            // An error: the heartbeat is gone without saying so (it panicked; only dropping
            // the hold aborts it), and nothing renews the row any more.
            Some(shared) => drop(shared.lost.clone().wait_for(|lost| *lost).await),
            None => std::future::pending().await,
        }
    }
}

/// Runs `work` while `guard` (if any) holds its PR, and stops it if the hold across replicas
/// ends first: another replica may then take the PR, and two must never work on one at once.
/// Stopped, the work fails, to be tried again; every step is safe to stop between two awaits,
/// as a crash would stop it.
pub(super) fn while_held<'a, T: 'a>(
    guard: Option<&'a PrGuard>,
    work: impl Future<Output = anyhow::Result<T>> + 'a,
) -> impl Future<Output = anyhow::Result<T>> + 'a {
    // Boxed: the work (a whole delivery's or job's handling) is large, and a future that held
    // it inline, in a debug build's moves, overflowed a worker thread's stack.
    let work = Box::pin(work);
    async move {
        let Some(guard) = guard else {
            return work.await;
        };
        tokio::select! {
            biased;
            out = work => out,
            () = guard.lost() => Err(anyhow::anyhow!(
                "the PR's lock across replicas ended before the work on it (held 2 minutes, or not renewed); stopped, to be tried again"
            )),
        }
    }
}

impl Drop for PrGuard {
    fn drop(&mut self) {
        // The process's turn passes on only once the row is gone: the next holder here (the
        // merge job an approval woke, say) then takes the row at its first try instead of
        // finding it still there and waiting.
        if let Some(shared) = &mut self.shared {
            shared.then_release = self.local.take();
        }
    }
}

/// This replica's row in `pr_locks`, renewed until dropped; dropping it deletes the row (in
/// the background, since a drop cannot wait), then lets go of `then_release`.
pub(super) struct SharedPrLock {
    row: Row,
    heartbeat: JoinHandle<()>,
    /// Set when the hold ends before it is dropped.
    lost: watch::Receiver<bool>,
    then_release: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// A row of `pr_locks` as one hold of it names it.
#[derive(Clone)]
struct Row {
    store: Store,
    key: PrKey,
    holder: String,
}

impl Row {
    /// Deletes the row if it is still this hold's, in the background, then drops `then`. The
    /// delete waits at most a second: past that the row lapses by itself, and the process's
    /// turn must not wait on a database that does not answer.
    fn delete_then(self, then: Option<tokio::sync::OwnedMutexGuard<()>>) {
        // Outside a runtime (one shutting down) the row lapses by itself.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let deleted = self.store.unlock_pr(&self.key, &self.holder);
            match tokio::time::timeout(Duration::from_secs(1), deleted).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::warn!(pr = self.key.number, %err, "cannot let go of the PR's lock; it lapses in 2 s");
                }
                Err(_) => {
                    tracing::warn!(pr = self.key.number, "letting go of the PR's lock takes over a second; it lapses in 2 s");
                }
            }
            drop(then);
        });
    }
}

/// A row a try took, until the hold is made of it: dropped unclaimed (the caller gave up while
/// the try was on its way: a revoke's 1 s wait, an aborted task), it deletes the row, so that
/// no row is left without a holder to renew or delete it (every replica would wait out its
/// lease). The try runs in a task of its own, so the delete comes after the insert it undoes.
struct Taken(Option<Row>);

impl Taken {
    fn claim(mut self) -> Option<Row> {
        self.0.take()
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        if let Some(row) = self.0.take() {
            row.delete_then(None);
        }
    }
}

/// One try at `row`, carried to the end even if its caller gives up.
async fn try_taking(row: &Row, clock: &Arc<dyn Clock>) -> Result<Option<Taken>, StoreError> {
    let (row, now) = (row.clone(), clock.now());
    let (answer, answered) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let taken = row
            .store
            .try_lock_pr(&row.key, &row.holder, now, LEASE)
            .await;
        // Sent back; if the caller is gone the `Taken` is dropped here and deletes the row.
        let _ = answer.send(taken.map(|taken| taken.then(|| Taken(Some(row)))));
    });
    answered.await.unwrap_or(Ok(None))
}

/// On PostgreSQL, waits for PR `key`'s row and holds it; `None` on SQLite (one process). An
/// error if the database cannot be asked: the work must not go on under this process's lock
/// alone while another replica may hold the row (this replica's pool may be the only thing
/// busy), so it fails and is tried again.
pub(super) async fn across_replicas(
    store: &Store,
    clock: &Arc<dyn Clock>,
    key: PrKey,
) -> Result<Option<SharedPrLock>, StoreError> {
    if store.backend() != Backend::Postgres {
        return Ok(None);
    }
    // One holder per hold: a hold that lapsed cannot let go of its successor's.
    let row = Row {
        store: store.clone(),
        key,
        holder: format!("{}-{:016x}", std::process::id(), rand::random::<u64>()),
    };
    let mut pause = Duration::from_millis(5);
    loop {
        match try_taking(&row, clock).await {
            Ok(Some(taken)) => {
                return Ok(taken.claim().map(|row| SharedPrLock::hold(row, clock)));
            }
            Ok(None) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_WAIT_STEP);
            }
            Err(err) => return Err(err),
        }
    }
}

impl SharedPrLock {
    fn hold(row: Row, clock: &Arc<dyn Clock>) -> Self {
        let (lost_tx, lost) = watch::channel(false);
        let heartbeat = tokio::spawn({
            let (row, clock) = (row.clone(), clock.clone());
            async move {
                renew_while_held(&row, &clock).await;
                lost_tx.send_replace(true);
            }
        });
        Self {
            row,
            heartbeat,
            lost,
            then_release: None,
        }
    }
}

/// Renews `row` every [`HEARTBEAT`] until the hold ends: held [`MAX_HOLD`], taken by another
/// replica, or not renewed in time. The last renewal's lease lapses [`LEASE`] after it was
/// asked for; a renewal still unanswered (a pool busy to its timeout) or failing a heartbeat
/// before that ends the hold, so that the work stops before another replica can come in.
async fn renew_while_held(row: &Row, clock: &Arc<dyn Clock>) {
    let number = row.key.number;
    let started = Instant::now();
    let mut renewed_at = Instant::now();
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        if started.elapsed() >= MAX_HOLD {
            tracing::warn!(
                pr = number,
                "work on the PR has held its lock for 2 minutes; it is stopped, and another replica may take the PR"
            );
            return;
        }
        let deadline = tokio::time::Instant::from_std(renewed_at + (LEASE - HEARTBEAT));
        let asked = Instant::now();
        let renewed = row
            .store
            .renew_pr_lock(&row.key, &row.holder, clock.now(), LEASE);
        match tokio::time::timeout_at(deadline, renewed).await {
            Ok(Ok(true)) => renewed_at = asked,
            Ok(Ok(false)) => {
                tracing::warn!(
                    pr = number,
                    "the PR's lock lapsed and another replica took it; the work on it is stopped"
                );
                return;
            }
            Ok(Err(err)) if tokio::time::Instant::now() >= deadline => {
                tracing::warn!(pr = number, %err, "the PR's lock was not renewed in time; the work on it is stopped");
                return;
            }
            Ok(Err(err)) => tracing::warn!(pr = number, %err, "cannot renew the PR's lock"),
            Err(_) => {
                tracing::warn!(
                    pr = number,
                    "renewing the PR's lock takes too long; the work on it is stopped"
                );
                return;
            }
        }
    }
}

impl Drop for SharedPrLock {
    fn drop(&mut self) {
        self.heartbeat.abort();
        self.row.clone().delete_then(self.then_release.take());
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
        let first = across_replicas(&store, &clock, key(1)).await.unwrap();
        assert!(first.is_some(), "on PostgreSQL the row is taken");
        let other = tokio::time::timeout(
            Duration::from_secs(1),
            across_replicas(&store, &clock, key(2)),
        )
        .await;
        assert!(
            matches!(other, Ok(Ok(Some(_)))),
            "PR 2 is not held up by PR 1"
        );

        let second = tokio::spawn({
            let (store, clock) = (store.clone(), clock.clone());
            async move {
                across_replicas(&store, &clock, key(1))
                    .await
                    .unwrap()
                    .is_some()
            }
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

    /// Attempts given up at any point (a revoke's 1 s wait, an aborted task), some while
    /// their insert was on its way: none leaves a row behind, which every replica would then
    /// wait out (and, on a test's stopped clock, forever).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_attempt_given_up_leaves_no_row_behind() {
        let Some((store, _database)) = postgres_store().await else {
            eprintln!("SKIPPED: no PostgreSQL");
            return;
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let mut given_up = 0;
        for n in 0..300u64 {
            let wait = Duration::from_micros(n * 7 % 1500);
            let attempt = across_replicas(&store, &clock, key(n));
            given_up += usize::from(tokio::time::timeout(wait, attempt).await.is_err());
        }
        assert!(given_up > 0, "some attempts were given up");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let row = sqlx::query("SELECT COUNT(*) AS n FROM pr_locks")
            .fetch_one(store.pool())
            .await
            .unwrap();
        let left: i64 = sqlx::Row::try_get(&row, "n").unwrap();
        assert_eq!(left, 0, "{given_up} attempts given up");
    }

    /// A database this replica cannot ask (here its pool is closed; in life, a pool busy to its
    /// timeout): the work fails, to be tried again, rather than going on under this process's
    /// lock alone while another replica may hold the PR.
    #[tokio::test]
    async fn a_lock_that_cannot_be_asked_for_is_an_error_not_a_pass() {
        let Some((store, _database)) = postgres_store().await else {
            eprintln!("SKIPPED: no PostgreSQL");
            return;
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        store.pool().close().await;
        let taken = tokio::time::timeout(
            Duration::from_secs(5),
            across_replicas(&store, &clock, key(1)),
        )
        .await
        .expect("answered at once");
        assert!(taken.is_err());
    }

    /// Another replica takes the row while the work runs (its lease lapsed under a stalled
    /// database, say): the work is stopped at the next heartbeat, never run on beside the
    /// other's. Work that ends first is untouched.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_whose_hold_another_replica_took_is_stopped() {
        let Some((store, _database)) = postgres_store().await else {
            eprintln!("SKIPPED: no PostgreSQL");
            return;
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let shared = across_replicas(&store, &clock, key(1)).await.unwrap();
        assert!(shared.is_some());
        let local = Arc::new(tokio::sync::Mutex::new(())).lock_owned().await;
        let guard = PrGuard::new(local, shared);
        let done = while_held(Some(&guard), async { Ok(7) }).await.unwrap();
        assert_eq!(done, 7);
        sqlx::query("UPDATE pr_locks SET holder = 'another replica'")
            .execute(store.pool())
            .await
            .unwrap();
        let started = Instant::now();
        let endless = std::future::pending::<anyhow::Result<()>>();
        let stopped =
            tokio::time::timeout(Duration::from_secs(5), while_held(Some(&guard), endless))
                .await
                .expect("stopped");
        let err = stopped.unwrap_err().to_string();
        assert!(err.contains("lock across replicas ended"), "{err}");
        assert!(started.elapsed() < HEARTBEAT * 3, "{:?}", started.elapsed());
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
        assert!(taken.unwrap().is_some());
        assert!(started.elapsed() >= LEASE - Duration::from_millis(100));
    }
}
