//! Group commit for webhook intake. Every verified delivery must be durable before its 2xx;
//! one commit (one fsync of SQLite's WAL, one round trip to PostgreSQL) per delivery caps intake
//! at a few hundred per second, and concurrent writers queue on SQLite's lock. So the handlers
//! hand their deliveries to one writer task, which stores whatever has queued up as one
//! transaction and only then answers each handler: nothing is acknowledged before the commit
//! that holds it has returned.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::store::{Backend, NewDelivery, Recorded, Store};

/// Deliveries stored in one transaction at most.
const MAX_BATCH: usize = 256;
/// How long one batch may wait for the database before its deliveries are refused (503):
/// well inside the 10 s a forge waits for the answer.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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

/// Batches in flight at once. SQLite has one writer, so one. PostgreSQL flushes the WAL of
/// concurrent commits together, so a batch may be written while the one before it commits.
/// Two batches in flight may commit out of order; that never reorders what a forge could
/// order: a delivery is acknowledged only after its commit, so every delivery that arrives
/// after that acknowledgement is stored (and `received_at`, then `seq`, ordered) after it.
fn in_flight(store: &Store) -> usize {
    match store.backend() {
        Backend::Sqlite => 1,
        Backend::Postgres => 4,
    }
}

/// Takes what has queued (at least one, at most [`MAX_BATCH`]), stores it as one transaction and
/// answers each; a failed transaction fails every delivery in it, none is half-stored.
async fn write_batches(store: Store, mut waiting: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(in_flight(&store)));
    while let Some(first) = waiting.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match waiting.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let store = store.clone();
        tokio::spawn(async move {
            write_batch(&store, batch).await;
            drop(slot);
        });
    }
}

/// Stores one batch and answers each of its deliveries.
async fn write_batch(store: &Store, batch: Vec<Pending>) {
    let deliveries: Vec<NewDelivery> = batch.iter().map(|p| p.delivery.clone()).collect();
    // A database that does not answer gets the forge a 503 (it redelivers), not a hang
    // past its own timeout. A write cut off here may still have committed: then the
    // redelivery is found stored, and nothing was acknowledged before it was durable.
    let written = tokio::time::timeout(WRITE_TIMEOUT, store.record_deliveries(&deliveries))
        .await
        .map_err(|_| {
            format!(
                "the database did not answer within {} s",
                WRITE_TIMEOUT.as_secs()
            )
        })
        .and_then(|written| written.map_err(|err| err.to_string()));
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
