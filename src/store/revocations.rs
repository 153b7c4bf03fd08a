//! Revokes in batches, two transactions per batch whatever its size (each commit is an fsync
//! on SQLite): [`Store::begin_revokes`] marks the due grants `Revoking` before their provider
//! revokes, [`Store::record_revokes`] stores the end of those that went through: the request
//! `Revoked`, its `Revoke` event, its revert job scheduled, its reminder and revoke job gone.
//!
//! Each request's row is guarded by its optimistic lock, one by one: a request another worker
//! or replica changed meanwhile (an extension, a manual revoke, a second run of the same
//! revoke) loses its lock and nothing of it is stored, while the rest of the batch is. So no
//! request is ever revoked twice in the log, and no revoked request is left without its revert.

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;

use super::events::{NewEvent, append_event};
use super::jobs::{JobKind, cancel_job, schedule_job};
use super::requests::{RequestRecord, RequestState, update_request};
use super::{Store, StoreError};

/// Per request of a batch: stored, or the lost optimistic lock ([`StoreError::Conflict`]) or
/// vanished row ([`StoreError::NotFound`]) that kept it from being stored.
pub type RowOutcome = Result<(), StoreError>;

impl Store {
    /// Stores each of `records` (which must be `Revoking`) in one transaction. A record that
    /// lost its lock is left unchanged, with its error in the result; the others are stored
    /// and updated. Any other error stores nothing.
    pub async fn begin_revokes(
        &self,
        records: &mut [RequestRecord],
        now: DateTime<Utc>,
    ) -> Result<Vec<RowOutcome>, StoreError> {
        expect_state(records.iter(), RequestState::Revoking)?;
        let mut conn = self.conn().await?;
        let mut tx = self.begin_writing(&mut conn).await?;
        let outcomes = update_each(&mut tx, records.iter_mut(), now).await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    /// Stores the end of each revoke in `ends` (records `Revoked`, each with its event) in one
    /// transaction: the request, its event, its revert job due at `now`; its reminder and
    /// revoke job are removed. A record that lost its lock is left unchanged and gets no
    /// event; any other error stores nothing.
    pub async fn record_revokes(
        &self,
        ends: &mut [(RequestRecord, NewEvent)],
        now: DateTime<Utc>,
    ) -> Result<Vec<RowOutcome>, StoreError> {
        expect_state(ends.iter().map(|(r, _)| r), RequestState::Revoked)?;
        let mut conn = self.conn().await?;
        let mut tx = self.begin_writing(&mut conn).await?;
        // Every row first, then the events: the event lock (PostgreSQL) is taken after the row
        // locks, as every other writer takes them, so that none waits on the other in a cycle.
        let outcomes = update_each(&mut tx, ends.iter_mut().map(|(r, _)| r), now).await?;
        for ((record, event), outcome) in ends.iter().zip(&outcomes) {
            if outcome.is_ok() {
                append_event(&mut tx, event, now).await?;
                schedule_job(&mut tx, JobKind::Revert, &record.id, now, now).await?;
                cancel_job(&mut tx, JobKind::Remind, &record.id).await?;
                cancel_job(&mut tx, JobKind::Revoke, &record.id).await?;
            }
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    /// [`Store::record_revokes`] of one request; a lost lock is the error.
    pub async fn record_revoked(
        &self,
        record: &mut RequestRecord,
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut ends = [(record.clone(), event.clone())];
        let [outcome] = <[RowOutcome; 1]>::try_from(self.record_revokes(&mut ends, now).await?)
            .map_err(|_| invalid(record, "one outcome per revoke".into()))?;
        outcome?;
        let [(stored, _)] = ends;
        *record = stored;
        Ok(())
    }
}

/// Updates each record under its own optimistic lock. A lost lock or a missing row is that
/// record's outcome (the transaction goes on: an update that matched no row is no error to the
/// database); any other error ends the batch.
async fn update_each<'r>(
    conn: &mut AnyConnection,
    records: impl Iterator<Item = &'r mut RequestRecord>,
    now: DateTime<Utc>,
) -> Result<Vec<RowOutcome>, StoreError> {
    let mut outcomes = Vec::new();
    for record in records {
        match update_request(conn, record, now).await {
            Ok(()) => outcomes.push(Ok(())),
            Err(err @ (StoreError::Conflict { .. } | StoreError::NotFound { .. })) => {
                outcomes.push(Err(err));
            }
            Err(err) => return Err(err),
        }
    }
    Ok(outcomes)
}

fn expect_state<'r>(
    mut records: impl Iterator<Item = &'r RequestRecord>,
    state: RequestState,
) -> Result<(), StoreError> {
    match records.find(|r| r.state != state) {
        Some(record) => Err(invalid(
            record,
            format!("the request is `{}`, not `{state}`", record.state),
        )),
        None => Ok(()),
    }
}

fn invalid(record: &RequestRecord, reason: String) -> StoreError {
    StoreError::Invalid {
        what: "revocation",
        key: record.id.to_string(),
        reason,
    }
}
