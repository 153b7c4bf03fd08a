//! Group commit for webhook intake. Every verified delivery must be durable before its 2xx;
//! one commit (one fsync of SQLite's WAL, one round trip to PostgreSQL) per delivery caps intake
//! at a few hundred per second, and concurrent writers queue on SQLite's lock. So the handlers
//! hand their deliveries to a writer task (one on SQLite, a few on PostgreSQL), which stores
//! whatever has queued up as one transaction and only then answers each handler: nothing is
//! acknowledged before the commit that holds it has returned.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Any;
use sqlx::pool::PoolConnection;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::store::deliveries::record_deliveries;
use crate::store::{Backend, NewDelivery, Recorded, Store, StoreError};

/// Deliveries stored in one transaction at most.
const MAX_BATCH: usize = 256;
/// How long one batch may wait for the database before its deliveries are refused (503):
/// well inside the 10 s a forge waits for the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The handle the webhook handlers store through. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Recorder {
    queue: mpsc::Sender<Pending>,
}

#[derive(Debug)]
struct Pending {
    delivery: NewDelivery,
    answer: oneshot::Sender<Result<Recorded, String>>,
}

impl Recorder {
    /// Starts the writer tasks on `store`; they end when every handle is dropped.
    pub fn start(store: Store) -> Self {
        let (queue, waiting) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(write_batches(store, waiting));
        Self { queue }
    }

    /// Stores `delivery` durably (or finds it stored already). `Err` says why it could not be
    /// stored now; the forge should deliver it again later.
    pub async fn record(&self, delivery: NewDelivery) -> Result<Recorded, String> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Pending { delivery, answer })
            .await
            .map_err(|_| "the delivery writer has stopped".to_owned())?;
        answered
            .await
            .map_err(|_| "the delivery writer has stopped".to_owned())?
    }
}

/// How long a writer keeps its connection while deliveries keep coming. Handing it back costs
/// a spawned task and a round trip (the pool checks a connection as it comes back), which was
/// half of each batch's time under load on SQLite; the workers (claims, revocations) wait at
/// most this long for SQLite's one connection, as the pool's queue is fair.
const HOLD: Duration = Duration::from_millis(10);

/// Writers, each storing one batch at a time. SQLite has one writer, so one. PostgreSQL
/// flushes the WAL of concurrent commits together, so a batch may be written while the one
/// before it commits. Two batches in flight may commit out of order; that never reorders what
/// a forge could order: a delivery is acknowledged only after its commit, so every delivery
/// that arrives after that acknowledgement is stored (and `received_at`, then `seq`, ordered)
/// after it.
fn writers(store: &Store) -> usize {
    match store.backend() {
        Backend::Sqlite => 1,
        Backend::Postgres => 4,
    }
}

async fn write_batches(store: Store, waiting: mpsc::Receiver<Pending>) {
    let waiting = Arc::new(Mutex::new(waiting));
    let writers: Vec<_> = (0..writers(&store))
        .map(|_| tokio::spawn(write_in_turn(store.clone(), waiting.clone())))
        .collect();
    for writer in writers {
        let _ = writer.await;
    }
}

/// One writer: takes what has queued (at least one, at most [`MAX_BATCH`]), stores it as one
/// transaction on a connection kept while more wait, and answers each.
async fn write_in_turn(store: Store, waiting: Arc<Mutex<mpsc::Receiver<Pending>>>) {
    let mut held: Option<(PoolConnection<Any>, Instant)> = None;
    loop {
        let batch = {
            let mut waiting = waiting.lock().await;
            let first = match waiting.try_recv() {
                Ok(first) => first,
                Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => {
                    held = None; // nothing waits: the connection goes back to the pool
                    match waiting.recv().await {
                        Some(first) => first,
                        None => return,
                    }
                }
            };
            take_batch(first, &mut waiting)
        };
        if held
            .as_ref()
            .is_some_and(|(_, since)| since.elapsed() >= HOLD)
        {
            held = None; // the others' turn
        }
        let deliveries: Vec<&NewDelivery> = batch.iter().map(|p| &p.delivery).collect();
        let written = within_write_timeout(async {
            if held.is_none() {
                held = Some((store.pool().acquire().await?, Instant::now()));
            }
            let (conn, _) = held.as_mut().expect("acquired just above");
            record_deliveries(conn, &deliveries).await
        })
        .await;
        if written.is_err() {
            held = None; // the pool checks it as it comes back
        }
        answer(batch, written);
    }
}

/// `first` and whatever else has queued, up to [`MAX_BATCH`].
fn take_batch(first: Pending, waiting: &mut mpsc::Receiver<Pending>) -> Vec<Pending> {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match waiting.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    batch
}

/// A database that does not answer gets the forge a 503 (it redelivers), not a hang past its
/// own timeout. A write cut off here may still have committed: then the redelivery is found
/// stored, and nothing was acknowledged before it was durable.
async fn within_write_timeout(
    write: impl Future<Output = Result<Vec<Recorded>, StoreError>>,
) -> Result<Vec<Recorded>, String> {
    tokio::time::timeout(WRITE_TIMEOUT, write)
        .await
        .map_err(|_| {
            format!(
                "the database did not answer within {} s",
                WRITE_TIMEOUT.as_secs()
            )
        })
        .and_then(|written| written.map_err(|err| err.to_string()))
}

/// Answers each delivery of a batch; a failed transaction fails every delivery in it, none is
/// half-stored.
fn answer(batch: Vec<Pending>, written: Result<Vec<Recorded>, String>) {
    match written {
        Ok(recorded) => {
            for (pending, outcome) in batch.into_iter().zip(recorded) {
                let _ = pending.answer.send(Ok(outcome));
            }
        }
        Err(why) => {
            for pending in batch {
                let _ = pending.answer.send(Err(why.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::*;
    use crate::store::testing::sqlite_store;
    use crate::store::{DeliveryId, ForgeKind};

    fn delivery(n: u64) -> NewDelivery {
        NewDelivery {
            id: DeliveryId::new(ForgeKind::GitHub, &format!("flood-{n}")).unwrap(),
            event: "ping".into(),
            payload: "{}".into(),
            received_at: chrono::Utc::now(),
        }
    }

    /// A flood of webhooks never keeps SQLite's one connection from the workers (claims,
    /// revocations): the writer gives it back at least every [`HOLD`], even while deliveries
    /// keep queueing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_deliveries_leaves_the_connection_to_the_others_in_turn() {
        let (store, _dir) = sqlite_store().await;
        let recorder = Recorder::start(store.clone());
        let (stop, stored) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        // Open loop: deliveries are sent without waiting for the ones before, so the queue
        // never runs empty while the flood lasts.
        let flood = tokio::spawn({
            let (stop, stored) = (stop.clone(), stored.clone());
            async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let (recorder, stored) = (recorder.clone(), stored.clone());
                    tokio::spawn(async move {
                        recorder.record(delivery(n)).await.expect("stored");
                        stored.fetch_add(1, Ordering::Relaxed);
                    });
                    if n % 8 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            }
        });
        while stored.load(Ordering::Relaxed) < 500 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let turn = tokio::time::timeout(Duration::from_secs(10), store.pool().acquire()).await;
        let stored_by_then = stored.load(Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        flood.await.unwrap();
        assert!(
            turn.is_ok(),
            "the connection never came back while deliveries kept coming"
        );
        drop(turn);
        // The flood was still being stored after that turn.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(stored.load(Ordering::Relaxed) > stored_by_then);
    }
}
