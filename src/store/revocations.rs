//! The end of a revoke, in one transaction: the request becomes `Revoked`, its `Revoke` event
//! is appended, the revert job is scheduled and the reminder cancelled. Either all of it is
//! stored or none: a revoke that runs twice (after a crash, or on two replicas at once) loses
//! the request's optimistic lock on its second run and records nothing, so no request is
//! ever revoked twice in the log, and no revoked request is left without its revert.

use chrono::{DateTime, Utc};
use sqlx::Connection;

use super::events::{NewEvent, append_event};
use super::jobs::{JobKind, cancel_job, schedule_job};
use super::requests::{RequestRecord, RequestState, update_request};
use super::{Backend, Store, StoreError};

impl Store {
    /// Stores `record` (which must be `Revoked`) with `event`, and schedules its
    /// [`JobKind::Revert`] at `now`. On [`StoreError::Conflict`] nothing was written and
    /// `record` is unchanged.
    pub async fn record_revoked(
        &self,
        record: &mut RequestRecord,
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if record.state != RequestState::Revoked {
            return Err(StoreError::Invalid {
                what: "revocation",
                key: record.id.to_string(),
                reason: format!("the request is `{}`, not `revoked`", record.state),
            });
        }
        let mut conn = self.conn().await?;
        // SQLite: take the write lock first, as the event append needs it (see append_event).
        let mut tx = match self.backend {
            Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => conn.begin().await?,
        };
        let mut stored = record.clone();
        update_request(&mut tx, &mut stored, now).await?;
        append_event(&mut tx, event, now).await?;
        schedule_job(&mut tx, JobKind::Revert, &record.id, now, now).await?;
        cancel_job(&mut tx, JobKind::Remind, &record.id).await?;
        tx.commit().await?;
        *record = stored;
        Ok(())
    }
}
