//! Approvals, each bound to the head commit it was given on.
//!
//! An approval counts only for the exact commit the approver saw: after a push the request's
//! head SHA changes and [`approvals_for`] with the new SHA no longer returns the old ones. Each
//! row is one forge signal (a reaction, review or comment, by the forge's own id), so a replayed
//! or re-polled signal is stored once, and a withdrawn one is removed; distinct approvers are
//! counted by the workflow, by user id.

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::events::{NewEvent, append_event};
use super::row::{Fields, string_enum};
use super::{Store, StoreError, to_i64, to_millis};
use crate::names::{Login, RequestId};

/// How an approval was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApprovalSource {
    /// An approval emoji on the PR.
    Reaction,
    /// An approving review.
    Review,
    /// `/breakglass approve`.
    Comment,
}

string_enum!(ApprovalSource {
    Reaction => "reaction",
    Review => "review",
    Comment => "comment",
});

/// One approver's approval of one commit of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    /// The approved request.
    pub request_id: RequestId,
    /// The forge's own id of the signal: `reaction:<id>`, `review:<id>` or `comment:<id>`.
    pub signal: String,
    /// The forge's numeric user id: permissions and distinctness are decided by it.
    pub approver_id: u64,
    /// The approver's login when approving (for display; ids decide).
    pub approver_login: Login,
    /// Reaction, review or command.
    pub source: ApprovalSource,
    /// The head commit of the PR when the approval was given.
    pub head_sha: String,
    /// When the forge says the approval was given (the forge's clock, never the bot's).
    pub approved_at: DateTime<Utc>,
}

impl TryFrom<&AnyRow> for Approval {
    type Error = StoreError;

    fn try_from(row: &AnyRow) -> Result<Self, StoreError> {
        let f = Fields::new(row, "approvals", "request_id");
        Ok(Self {
            request_id: f.parsed("request_id", RequestId::try_from)?,
            signal: f.text("signal")?,
            approver_id: f.uint("approver_id")?,
            approver_login: f.parsed("approver_login", Login::try_from)?,
            source: f.parsed("source", |text| text.parse())?,
            head_sha: f.text("head_sha")?,
            approved_at: f.time("approved_at")?,
        })
    }
}

/// Stores an approval; `false` when this signal was stored already (a replayed webhook, a
/// reaction seen by two polls). An unknown request is [`StoreError::NotFound`].
pub async fn add_approval(
    conn: &mut AnyConnection,
    approval: &Approval,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "INSERT INTO approvals (request_id, approver_id, approver_login, source, head_sha, \
         approved_at, signal) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (request_id, signal) DO NOTHING",
    )
    .bind(approval.request_id.as_str())
    .bind(to_i64(
        approval.approver_id,
        "approval",
        approval.request_id.as_str(),
    )?)
    .bind(approval.approver_login.as_str())
    .bind(approval.source.as_str())
    .bind(&approval.head_sha)
    .bind(to_millis(approval.approved_at))
    .bind(&approval.signal)
    .execute(&mut *conn)
    .await;
    match result {
        Ok(done) => Ok(done.rows_affected() == 1),
        Err(sqlx::Error::Database(err)) if err.is_foreign_key_violation() => {
            Err(StoreError::NotFound {
                what: "request",
                key: approval.request_id.to_string(),
            })
        }
        Err(err) => Err(err.into()),
    }
}

/// The approvals of `request_id` given on `head_sha`, oldest first. Approvals of earlier
/// commits are stale and not returned.
pub async fn approvals_for(
    conn: &mut AnyConnection,
    request_id: &RequestId,
    head_sha: &str,
) -> Result<Vec<Approval>, StoreError> {
    sqlx::query(
        "SELECT request_id, signal, approver_id, approver_login, source, head_sha, approved_at \
         FROM approvals WHERE request_id = $1 AND head_sha = $2 \
         ORDER BY approved_at, approver_id, signal",
    )
    .bind(request_id.as_str())
    .bind(head_sha)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(Approval::try_from)
    .collect()
}

/// The approvals of `request_id` whose subject (`head_sha`) starts with `prefix` (made of
/// letters, digits, `:` and `+` only: no `LIKE` wildcard), oldest first.
pub async fn approvals_with_subject_prefix(
    conn: &mut AnyConnection,
    request_id: &RequestId,
    prefix: &str,
) -> Result<Vec<Approval>, StoreError> {
    debug_assert!(!prefix.contains(['%', '_', '\\']));
    sqlx::query(
        "SELECT request_id, signal, approver_id, approver_login, source, head_sha, approved_at \
         FROM approvals WHERE request_id = $1 AND head_sha LIKE $2 \
         ORDER BY approved_at, approver_id, signal",
    )
    .bind(request_id.as_str())
    .bind(format!("{prefix}%"))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(Approval::try_from)
    .collect()
}

/// Removes one signal's approval (the reaction was removed, the review dismissed, the comment
/// deleted); `true` if there was one.
pub async fn withdraw_approval(
    conn: &mut AnyConnection,
    request_id: &RequestId,
    signal: &str,
) -> Result<bool, StoreError> {
    let result = sqlx::query("DELETE FROM approvals WHERE request_id = $1 AND signal = $2")
        .bind(request_id.as_str())
        .bind(signal)
        .execute(&mut *conn)
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Forgets every approval of a request (e.g. when it is closed). Returns how many.
pub async fn delete_approvals(
    conn: &mut AnyConnection,
    request_id: &RequestId,
) -> Result<u64, StoreError> {
    let result = sqlx::query("DELETE FROM approvals WHERE request_id = $1")
        .bind(request_id.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(result.rows_affected())
}

/// Forgets the approvals of a request given on any head but `head_sha`. Returns how many.
pub async fn forget_approvals_of_other_heads(
    conn: &mut AnyConnection,
    request_id: &RequestId,
    head_sha: &str,
) -> Result<u64, StoreError> {
    let result = sqlx::query("DELETE FROM approvals WHERE request_id = $1 AND head_sha <> $2")
        .bind(request_id.as_str())
        .bind(head_sha)
        .execute(&mut *conn)
        .await?;
    Ok(result.rows_affected())
}

impl Store {
    /// See [`forget_approvals_of_other_heads`].
    pub async fn forget_approvals_of_other_heads(
        &self,
        request_id: &RequestId,
        head_sha: &str,
    ) -> Result<u64, StoreError> {
        forget_approvals_of_other_heads(&mut *self.conn().await?, request_id, head_sha).await
    }

    /// See [`add_approval`]: `true` if the approval is new.
    pub async fn add_approval(&self, approval: &Approval) -> Result<bool, StoreError> {
        add_approval(&mut *self.conn().await?, approval).await
    }

    /// Stores `approval` and, if it is new, its `approval` event, in one transaction: a kill
    /// between the two can no longer leave an approval the audit log does not know. `true` if
    /// the approval is new.
    pub async fn add_approval_logged(
        &self,
        approval: &Approval,
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let mut tx = self.begin_writing(&mut conn).await?;
        if !add_approval(&mut tx, approval).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        append_event(&mut tx, event, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The approvals that count for `head_sha`.
    pub async fn approvals_for(
        &self,
        request_id: &RequestId,
        head_sha: &str,
    ) -> Result<Vec<Approval>, StoreError> {
        approvals_for(&mut *self.conn().await?, request_id, head_sha).await
    }

    /// See [`approvals_with_subject_prefix`].
    pub async fn approvals_with_subject_prefix(
        &self,
        request_id: &RequestId,
        prefix: &str,
    ) -> Result<Vec<Approval>, StoreError> {
        approvals_with_subject_prefix(&mut *self.conn().await?, request_id, prefix).await
    }

    /// See [`withdraw_approval`].
    pub async fn withdraw_approval(
        &self,
        request_id: &RequestId,
        signal: &str,
    ) -> Result<bool, StoreError> {
        withdraw_approval(&mut *self.conn().await?, request_id, signal).await
    }

    /// Forgets every approval of a request.
    pub async fn delete_approvals(&self, request_id: &RequestId) -> Result<u64, StoreError> {
        delete_approvals(&mut *self.conn().await?, request_id).await
    }
}
