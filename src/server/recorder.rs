//! Group commit for webhook intake. Every verified delivery must be durable before its 2xx;
//! one commit (one fsync of SQLite's WAL, one round trip to PostgreSQL) per delivery caps intake
//! at a few hundred per second, and concurrent writers queue on SQLite's lock. So the handlers
//! hand their deliveries to one writer task, which stores whatever has queued up as one
//! transaction and only then answers each handler: nothing is acknowledged before the commit
//! that holds it has returned.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Any;
use sqlx::pool::PoolConnection;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{Semaphore, mpsc, oneshot};

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
    /// Starts the writer task on `store`; it ends when every handle is dropped.
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

/// How long the SQLite writer keeps the pool's one connection while deliveries keep coming.
/// Handing it back costs a spawned task and a round trip to SQLite's thread (the pool checks a
/// connection as it comes back), which was half of each batch's time under load; the
/// workers (claims, revocations) wait at most this long for their turn, as the pool's queue
/// is fair.
const HOLD: Duration = Duration::from_millis(10);

/// Batches PostgreSQL writes at once: it flushes the WAL of concurrent commits together, so a
/// batch may be written while the one before it commits. Two batches in flight may commit out
/// of order; that never reorders what a forge could order: a delivery is acknowledged only
/// after its commit, so every delivery that arrives after that acknowledgement is stored (and
/// `received_at`, then `seq`, ordered) after it.
const POSTGRES_IN_FLIGHT: usize = 4;

async fn write_batches(store: Store, waiting: mpsc::Receiver<Pending>) {
    match store.backend() {
        Backend::Sqlite => write_in_turn(store, waiting).await,
        Backend::Postgres => write_side_by_side(store, waiting).await,
    }
}

/// SQLite has one writer: one batch at a time, on a connection kept while more wait.
async fn write_in_turn(store: Store, mut waiting: mpsc::Receiver<Pending>) {
    let mut held: Option<(PoolConnection<Any>, Instant)> = None;
    loop {
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
        let batch = take_batch(first, &mut waiting);
        if held
            .as_ref()
            .is_some_and(|(_, since)| since.elapsed() >= HOLD)
        {
            held = None; // the others' turn
        }
        let deliveries = deliveries_of(&batch);
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

/// PostgreSQL: up to [`POSTGRES_IN_FLIGHT`] batches at once, each on a connection of its own.
async fn write_side_by_side(store: Store, mut waiting: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(POSTGRES_IN_FLIGHT));
    while let Some(first) = waiting.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let batch = take_batch(first, &mut waiting);
        let store = store.clone();
        tokio::spawn(async move {
            let deliveries = deliveries_of(&batch);
            let written = within_write_timeout(store.record_deliveries(&deliveries)).await;
            answer(batch, written);
            drop(slot);
        });
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

fn deliveries_of(batch: &[Pending]) -> Vec<NewDelivery> {
    batch.iter().map(|p| p.delivery.clone()).collect()
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
