//! Access requests: one row per request (the request file's stem), its lifecycle state and
//! what the bot has done about it.
//!
//! [`RequestRecord::check`] holds the invariants between the state and the other columns (an
//! `Active` request has a merge, a grant time and an expiry; a `Revoked` one says when and
//! why…). Decoding a row runs it, so an illegal row is an error, and so does every write, so
//! the bot cannot store one. Updates are guarded by an optimistic lock: two replicas handling
//! the same request cannot silently overwrite each other; the loser gets
//! [`StoreError::Conflict`] and reloads.

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row};

use serde::{Deserialize, Serialize};

use super::row::{Fields, counts_by, string_enum};
use super::{EventActor, ForgeKind, Store, StoreError, to_i64, to_millis};
use crate::names::{Login, Name, RequestId, Ticket};
use crate::policy::Decision;
use crate::request::Reason;

/// Where a request is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestState {
    /// The PR is open and the policy allows it; waiting for approval.
    Pending,
    /// The policy denies it; re-evaluated when the PR is pushed to.
    Denied,
    /// Approvals are met (or a fast-path rule matched); the merge is in progress.
    Approved,
    /// Merged and granted; the revoke is scheduled for `expires_at`.
    Active,
    /// The revoke is in progress.
    Revoking,
    /// Access was revoked.
    Revoked,
    /// Closed without merge, or denied with `/breakglass deny`.
    Closed,
}

string_enum!(RequestState {
    Pending => "pending",
    Denied => "denied",
    Approved => "approved",
    Active => "active",
    Revoking => "revoking",
    Revoked => "revoked",
    Closed => "closed",
});

/// Why access ended (the `Breakglass-Revoked-Reason` trailer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RevokeReason {
    /// The grant's time ran out.
    Ttl,
    /// `/breakglass revoke` before the time ran out.
    Early,
    /// Found by reconciliation (e.g. a request that reached the default branch without the bot).
    Reconcile,
}

string_enum!(RevokeReason {
    Ttl => "ttl",
    Early => "early",
    Reconcile => "reconcile",
});

/// What is stored as a request's `decision`: the engine's verdict, when the head it was made on
/// was pushed by the forge's clock, and whether a merge of that head was refused.
///
/// The store (de)serializes it at its edge, so the workflow reads and writes a type, never JSON
/// by key. The column holds the JSON of this struct through [`serde_json::Value`] (keys in
/// alphabetical order), as it always has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredDecision {
    pub decision: Decision,
    /// When the forge says the current head arrived (the PR's `updated_at` on the event or read
    /// that first showed this head). Approvals are compared with it on the forge's clock, never
    /// the bot's; `None` when the forge did not say, and then every timed approval is
    /// ambiguous.
    #[serde(default)]
    pub head_since: Option<DateTime<Utc>>,
    /// `head_since` is only a bound: the PR's `updated_at` when an event other than the
    /// head's push (a label, a review, a read) first showed it. The push came at or before
    /// it, by how much is not known, so an approval older than it may be of this head or of
    /// the one before: ambiguous, never stale.
    #[serde(default)]
    pub head_since_is_bound: bool,
    /// Problems outside the policy rules (files beyond the request), shown with the decision.
    #[serde(default)]
    pub scope_problems: Vec<String>,
    /// Why the merge of this head was refused: the request waits for a push or a new approval
    /// instead of trying again by itself.
    #[serde(default)]
    pub merge_refused: Option<String>,
    /// The PR is a draft: decided, never merged.
    #[serde(default)]
    pub draft: bool,
    /// Why the role cannot be granted by its provider (checked before any merge).
    #[serde(default)]
    pub unservable: Option<String>,
    /// The PR's labels the decision saw: the catch-up decides again a PR labelled or
    /// unlabelled while the bot was down.
    #[serde(default)]
    pub labels: Vec<String>,
    /// When (forge time: the requester's comment) an extension given alone on a fast path
    /// reopened the grant's after-the-fact review: an emoji from before reviewed what was
    /// granted before, not the extension.
    #[serde(default)]
    pub review_since: Option<DateTime<Utc>>,
    /// An extension its requester asked for and the bot is judging (by its own clock, when
    /// the hold was written): counted in what the requester holds, so that two extensions of
    /// two grants judged at once on two replicas each see the other (see
    /// `Workflow::held_grants`). Cleared with the extension's write or its refusal; one older
    /// than [`EXTENSION_HOLD_FOR`] (a crash between the two) counts no more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension_hold: Option<ExtensionHold>,
    /// The expiry breakglass wrote into the grant files right before its merge, as a commit of
    /// its own on the approved head: the merge step's, not a new version of the request. Kept
    /// while that commit is the head, so that a merge call tried again (a forge error, a
    /// restart) merges it with the approvals of the version it continues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<Stamp>,
}

/// See [`StoredDecision::stamp`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// The commit that wrote the expiry.
    pub head: String,
    /// The approved head it was written on.
    pub from: String,
    /// The expiry written (UTC ISO 8601).
    pub expires_at: String,
}

impl StoredDecision {
    /// The stamp that is `head`, if the head is one.
    pub fn stamp_at(&self, head: &str) -> Option<&Stamp> {
        self.stamp.as_ref().filter(|stamp| stamp.head == head)
    }
}

/// See [`StoredDecision::extension_hold`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionHold {
    /// The extension asked for.
    pub secs: u64,
    /// When the hold was written, by the bot's clock.
    pub at: DateTime<Utc>,
}

/// How long an [`ExtensionHold`] counts: far longer than judging an extension takes.
pub const EXTENSION_HOLD_FOR: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

/// A stored access request.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    /// The request file's stem, unique in the repository.
    pub id: RequestId,
    /// The forge of the requests repository.
    pub forge: ForgeKind,
    /// `owner/name` (GitLab: the project path).
    pub repository: String,
    /// The pull (merge) request that adds the request file.
    pub pr_number: u64,
    /// The environment (policy) asked for.
    pub environment: Name,
    /// The role asked for.
    pub role: Name,
    /// The requester's login (for display; the id decides).
    pub requester_login: Login,
    /// The forge's numeric user id; permissions are decided by it, not by the login.
    pub requester_id: u64,
    /// The duration asked for, in seconds.
    pub duration_secs: u64,
    /// Why access is needed.
    pub reason: Reason,
    /// The incident or change ticket, if given.
    pub ticket: Option<Ticket>,
    /// Where the request is in its lifecycle; see [`RequestRecord::check`].
    pub state: RequestState,
    /// The PR head the decision and approvals refer to.
    pub head_sha: String,
    /// The last decision on `head_sha`; `None` (JSON `null`) for a request recorded before its
    /// first decision.
    pub decision: Option<StoredDecision>,
    /// The fast-path rule that let it merge without approval, if one did.
    pub fast_path_rule: Option<Name>,
    /// Who approved, as recorded at merge.
    pub approved_by: Option<Vec<Login>>,
    /// The merge commit, once merged.
    pub merge_sha: Option<String>,
    /// When the grant was applied.
    pub granted_at: Option<DateTime<Utc>>,
    /// When the grant ends (moved by extensions).
    pub expires_at: Option<DateTime<Utc>>,
    /// The PR that removes the request file again.
    pub revert_pr_number: Option<u64>,
    /// When access was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Set when revoking starts; `revoked_at` when it is done.
    pub revoke_reason: Option<RevokeReason>,
    /// Who asked for an early revoke (`/breakglass revoke`); `None` at the TTL or by
    /// reconciliation.
    pub revoked_by: Option<EventActor>,
    /// When a fast-path grant must have been reviewed.
    pub review_due_at: Option<DateTime<Utc>>,
    /// Who reviewed it after the fact (with `reviewed_at`).
    pub reviewed_by: Option<Login>,
    /// When it was reviewed (with `reviewed_by`).
    pub reviewed_at: Option<DateTime<Utc>>,
    /// Seconds granted so far, extensions included.
    pub total_secs: u64,
    /// When the bot first saw the request.
    pub created_at: DateTime<Utc>,
    /// When it was last written.
    pub updated_at: DateTime<Utc>,
    /// Optimistic lock: bumped by every [`Store::update_request`].
    pub version: i64,
}

impl RequestRecord {
    /// The invariants between state and columns; the reason when one is broken.
    pub fn check(&self) -> Result<(), String> {
        use RequestState::*;
        let state = self.state;
        let require = |present: bool, column: &str| {
            if present {
                Ok(())
            } else {
                Err(format!("a request in state `{state}` must have `{column}`"))
            }
        };
        let forbid = |present: bool, column: &str| {
            if present {
                Err(format!(
                    "a request in state `{state}` cannot have `{column}`"
                ))
            } else {
                Ok(())
            }
        };
        if self.repository.is_empty() {
            return Err("`repository` is empty".into());
        }
        if self.head_sha.is_empty() {
            return Err("`head_sha` is empty".into());
        }
        if self.duration_secs == 0 {
            return Err("`duration_secs` is zero".into());
        }
        match state {
            Active => {
                require(self.merge_sha.is_some(), "merge_sha")?;
                require(self.granted_at.is_some(), "granted_at")?;
                require(self.expires_at.is_some(), "expires_at")?;
            }
            Revoking => require(self.revoke_reason.is_some(), "revoke_reason")?,
            Revoked => {
                require(self.revoked_at.is_some(), "revoked_at")?;
                require(self.revoke_reason.is_some(), "revoke_reason")?;
            }
            // An empty `approved_by` is a self-service environment (`approvals: 0`).
            Approved => require(
                self.fast_path_rule.is_some() || self.approved_by.is_some(),
                "approved_by or fast_path_rule",
            )?,
            Pending | Denied | Closed => {
                forbid(self.granted_at.is_some(), "granted_at")?;
                forbid(self.expires_at.is_some(), "expires_at")?;
            }
        }
        if !matches!(state, Revoking | Revoked) {
            forbid(self.revoke_reason.is_some(), "revoke_reason")?;
        }
        if self.revoke_reason != Some(RevokeReason::Early) {
            forbid(self.revoked_by.is_some(), "revoked_by")?;
        }
        if state != Revoked {
            forbid(self.revoked_at.is_some(), "revoked_at")?;
        }
        if self.granted_at.is_some() != self.expires_at.is_some() {
            return Err("`granted_at` and `expires_at` must be set together".into());
        }
        if let (Some(granted), Some(expires)) = (self.granted_at, self.expires_at)
            && expires <= granted
        {
            return Err("`expires_at` is not after `granted_at`".into());
        }
        if self.reviewed_by.is_some() != self.reviewed_at.is_some() {
            return Err("`reviewed_by` and `reviewed_at` must be set together".into());
        }
        Ok(())
    }

    fn invalid(&self, reason: String) -> StoreError {
        StoreError::Invalid {
            what: "request",
            key: self.id.to_string(),
            reason,
        }
    }
}

macro_rules! columns {
    () => {
        "id, forge, repository, pr_number, environment, role, requester_login, requester_id, \
         duration_secs, reason, ticket, state, head_sha, decision, fast_path_rule, approved_by, \
         merge_sha, granted_at, expires_at, revert_pr_number, revoked_at, revoke_reason, \
         review_due_at, reviewed_by, reviewed_at, total_secs, created_at, updated_at, version, \
         revoked_by, revoked_by_id"
    };
}
pub(super) use columns as request_columns;

impl TryFrom<&AnyRow> for RequestRecord {
    type Error = StoreError;

    fn try_from(row: &AnyRow) -> Result<Self, StoreError> {
        let f = Fields::new(row, "requests", "id");
        let record = Self {
            id: f.parsed("id", RequestId::try_from)?,
            forge: f.parsed("forge", |text| text.parse())?,
            repository: f.text("repository")?,
            pr_number: f.uint("pr_number")?,
            environment: f.parsed("environment", Name::try_from)?,
            role: f.parsed("role", Name::try_from)?,
            requester_login: f.parsed("requester_login", Login::try_from)?,
            requester_id: f.uint("requester_id")?,
            duration_secs: f.uint("duration_secs")?,
            reason: f.parsed("reason", Reason::try_from)?,
            ticket: f.opt_parsed("ticket", Ticket::try_from)?,
            state: f.parsed("state", |text| text.parse())?,
            head_sha: f.text("head_sha")?,
            decision: f.json("decision")?,
            fast_path_rule: f.opt_parsed("fast_path_rule", Name::try_from)?,
            approved_by: f.opt_json("approved_by")?,
            merge_sha: f.opt_text("merge_sha")?,
            granted_at: f.opt_time("granted_at")?,
            expires_at: f.opt_time("expires_at")?,
            revert_pr_number: f.opt_uint("revert_pr_number")?,
            revoked_at: f.opt_time("revoked_at")?,
            revoke_reason: f.opt_parsed("revoke_reason", |text| text.parse())?,
            review_due_at: f.opt_time("review_due_at")?,
            reviewed_by: f.opt_parsed("reviewed_by", Login::try_from)?,
            reviewed_at: f.opt_time("reviewed_at")?,
            total_secs: f.uint("total_secs")?,
            created_at: f.time("created_at")?,
            updated_at: f.time("updated_at")?,
            version: f.int("version")?,
            revoked_by: match (
                f.opt_parsed("revoked_by", Login::try_from)?,
                f.opt_uint("revoked_by_id")?,
            ) {
                (Some(login), Some(id)) => Some(EventActor { id, login }),
                (None, None) => None,
                _ => return Err(f.error("`revoked_by` and `revoked_by_id` must be set together")),
            },
        };
        record.check().map_err(|reason| f.error(reason))?;
        Ok(record)
    }
}

/// Binds every column but `id`, `created_at` and `version`, as `$2…$27`, in `columns!()` order,
/// then `revoked_by` and `revoked_by_id` (the columns added since).
fn bind_fields<'q>(
    query: Query<'q, Any, AnyArguments>,
    r: &RequestRecord,
) -> Result<Query<'q, Any, AnyArguments>, StoreError> {
    let key = r.id.as_str();
    let int = |value: u64| to_i64(value, "request", key);
    let opt_int = |value: Option<u64>| value.map(int).transpose();
    // Through `Value`, as before the column was typed: the same text for the same decision.
    let decision = serde_json::to_value(&r.decision)
        .map_err(|err| r.invalid(err.to_string()))?
        .to_string();
    let approved_by = r
        .approved_by
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|err| r.invalid(err.to_string()))?;
    Ok(query
        .bind(r.forge.as_str())
        .bind(r.repository.clone())
        .bind(int(r.pr_number)?)
        .bind(r.environment.to_string())
        .bind(r.role.to_string())
        .bind(r.requester_login.to_string())
        .bind(int(r.requester_id)?)
        .bind(int(r.duration_secs)?)
        .bind(r.reason.as_str().to_owned())
        .bind(r.ticket.as_ref().map(Ticket::to_string))
        .bind(r.state.as_str())
        .bind(r.head_sha.clone())
        .bind(decision)
        .bind(r.fast_path_rule.as_ref().map(Name::to_string))
        .bind(approved_by)
        .bind(r.merge_sha.clone())
        .bind(r.granted_at.map(to_millis))
        .bind(r.expires_at.map(to_millis))
        .bind(opt_int(r.revert_pr_number)?)
        .bind(r.revoked_at.map(to_millis))
        .bind(r.revoke_reason.map(RevokeReason::as_str))
        .bind(r.review_due_at.map(to_millis))
        .bind(r.reviewed_by.as_ref().map(Login::to_string))
        .bind(r.reviewed_at.map(to_millis))
        .bind(int(r.total_secs)?)
        .bind(to_millis(r.updated_at))
        .bind(r.revoked_by.as_ref().map(|by| by.login.to_string()))
        .bind(r.revoked_by.as_ref().map(|by| int(by.id)).transpose()?))
}

/// Stores a new request as given (its `version` included). A request with the same id, or
/// for the same pull request, is a [`StoreError::Duplicate`].
pub async fn insert_request(
    conn: &mut AnyConnection,
    record: &RequestRecord,
) -> Result<(), StoreError> {
    record.check().map_err(|reason| record.invalid(reason))?;
    let query = sqlx::query(
        "INSERT INTO requests (id, forge, repository, pr_number, environment, role, \
         requester_login, requester_id, duration_secs, reason, ticket, state, head_sha, \
         decision, fast_path_rule, approved_by, merge_sha, granted_at, expires_at, \
         revert_pr_number, revoked_at, revoke_reason, review_due_at, reviewed_by, reviewed_at, \
         total_secs, updated_at, revoked_by, revoked_by_id, created_at, version) VALUES ($1, $2, \
         $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, \
         $22, $23, $24, $25, $26, $27, $28, $29, $30, $31)",
    )
    .bind(record.id.to_string());
    let result = bind_fields(query, record)?
        .bind(to_millis(record.created_at))
        .bind(record.version)
        .execute(&mut *conn)
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {
            Err(StoreError::Duplicate {
                what: "request",
                key: format!(
                    "{} ({} {}#{})",
                    record.id, record.forge, record.repository, record.pr_number
                ),
            })
        }
        Err(err) => Err(err.into()),
    }
}

pub async fn get_request(
    conn: &mut AnyConnection,
    id: &RequestId,
) -> Result<Option<RequestRecord>, StoreError> {
    sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM requests WHERE id = $1"
    ))
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(RequestRecord::try_from)
    .transpose()
}

/// The request opened as pull request `pr_number`.
pub async fn find_request_by_pr(
    conn: &mut AnyConnection,
    forge: ForgeKind,
    repository: &str,
    pr_number: u64,
) -> Result<Option<RequestRecord>, StoreError> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM requests WHERE forge = $1 AND repository = $2 AND pr_number = $3"
    );
    fetch_by_pr(conn, sql, forge, repository, pr_number).await
}

/// The request whose revert pull request is `pr_number`.
pub async fn find_request_by_revert_pr(
    conn: &mut AnyConnection,
    forge: ForgeKind,
    repository: &str,
    pr_number: u64,
) -> Result<Option<RequestRecord>, StoreError> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM requests WHERE forge = $1 AND repository = $2 AND revert_pr_number = $3 \
         ORDER BY created_at, id LIMIT 1"
    );
    fetch_by_pr(conn, sql, forge, repository, pr_number).await
}

/// Runs one of the two lookups above (`$1` forge, `$2` repository, `$3` a PR number).
async fn fetch_by_pr(
    conn: &mut AnyConnection,
    sql: &'static str,
    forge: ForgeKind,
    repository: &str,
    pr_number: u64,
) -> Result<Option<RequestRecord>, StoreError> {
    sqlx::query(sql)
        .bind(forge.as_str())
        .bind(repository)
        .bind(to_i64(pr_number, "pull request", repository)?)
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(RequestRecord::try_from)
        .transpose()
}

/// Writes `record` if nobody changed it since it was read (its `version` is still the stored
/// one), then bumps `record.version` and sets `record.updated_at = now`. Otherwise nothing is
/// written and the error is [`StoreError::Conflict`] (reload and decide again) or
/// [`StoreError::NotFound`].
pub async fn update_request(
    conn: &mut AnyConnection,
    record: &mut RequestRecord,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    record.check().map_err(|reason| record.invalid(reason))?;
    let mut next = record.clone();
    next.updated_at = now;
    next.version = record
        .version
        .checked_add(1)
        .ok_or_else(|| record.invalid("`version` cannot be incremented any further".to_owned()))?;
    let query = sqlx::query(
        "UPDATE requests SET forge = $2, repository = $3, pr_number = $4, environment = $5, \
         role = $6, requester_login = $7, requester_id = $8, duration_secs = $9, reason = $10, \
         ticket = $11, state = $12, head_sha = $13, decision = $14, fast_path_rule = $15, \
         approved_by = $16, merge_sha = $17, granted_at = $18, expires_at = $19, \
         revert_pr_number = $20, revoked_at = $21, revoke_reason = $22, review_due_at = $23, \
         reviewed_by = $24, reviewed_at = $25, total_secs = $26, updated_at = $27, \
         revoked_by = $28, revoked_by_id = $29, version = $30 WHERE id = $1 AND version = $31",
    )
    .bind(record.id.to_string());
    let result = bind_fields(query, &next)?
        .bind(next.version)
        .bind(record.version)
        .execute(&mut *conn)
        .await?;
    if result.rows_affected() == 1 {
        *record = next;
        return Ok(());
    }
    let found = sqlx::query("SELECT version FROM requests WHERE id = $1")
        .bind(record.id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    match found {
        Some(row) => Err(StoreError::Conflict {
            id: record.id.to_string(),
            expected: record.version,
            found: row.try_get::<i64, _>("version")?,
        }),
        None => Err(StoreError::NotFound {
            what: "request",
            key: record.id.to_string(),
        }),
    }
}

/// Requests in `state` (all when `None`), oldest first.
pub async fn list_requests(
    conn: &mut AnyConnection,
    state: Option<RequestState>,
) -> Result<Vec<RequestRecord>, StoreError> {
    let rows = match state {
        Some(state) => {
            sqlx::query(concat!(
                "SELECT ",
                columns!(),
                " FROM requests WHERE state = $1 ORDER BY created_at, id"
            ))
            .bind(state.as_str())
            .fetch_all(&mut *conn)
            .await?
        }
        None => {
            sqlx::query(concat!(
                "SELECT ",
                columns!(),
                " FROM requests ORDER BY created_at, id"
            ))
            .fetch_all(&mut *conn)
            .await?
        }
    };
    rows.iter().map(RequestRecord::try_from).collect()
}

/// The fast-path grants of `requester_id` whose after-the-fact review is overdue at `now`
/// (active, revoking or revoked, never reviewed, due before `now`), oldest first. Made at every
/// decision, so it reads the partial index `requests_open_review`, never the whole table.
pub async fn overdue_reviews(
    conn: &mut AnyConnection,
    requester_id: u64,
    now: DateTime<Utc>,
) -> Result<Vec<RequestRecord>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM requests WHERE requester_id = $1 AND fast_path_rule IS NOT NULL \
         AND reviewed_at IS NULL AND review_due_at < $2 \
         AND state IN ('active', 'revoking', 'revoked') ORDER BY created_at, id"
    ))
    .bind(to_i64(requester_id, "requester", "overdue reviews")?)
    .bind(to_millis(now))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(RequestRecord::try_from).collect()
}

/// The requests of `requester_id` in `environment` that hold or are about to hold access
/// (approved, active or revoking) on `forge`'s `repository`, oldest first; by the index
/// `requests_requester`.
pub async fn held_by(
    conn: &mut AnyConnection,
    (forge, repository): (ForgeKind, &str),
    requester_id: u64,
    environment: &str,
) -> Result<Vec<RequestRecord>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM requests WHERE requester_id = $1 AND environment = $2 \
         AND state IN ('approved', 'active', 'revoking') \
         AND forge = $3 AND repository = $4 ORDER BY created_at, id"
    ))
    .bind(to_i64(requester_id, "requester", "held grants")?)
    .bind(environment)
    .bind(forge.as_str())
    .bind(repository)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(RequestRecord::try_from).collect()
}

/// How many requests are in each state (every state listed, zeros included).
pub async fn count_requests_by_state(
    conn: &mut AnyConnection,
) -> Result<Vec<(RequestState, u64)>, StoreError> {
    let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM requests GROUP BY state")
        .fetch_all(&mut *conn)
        .await?;
    counts_by(&rows, "requests", RequestState::ALL)
}

impl Store {
    /// See [`insert_request`].
    pub async fn insert_request(&self, record: &RequestRecord) -> Result<(), StoreError> {
        insert_request(&mut *self.conn().await?, record).await
    }

    /// A request, by id.
    pub async fn get_request(&self, id: &RequestId) -> Result<Option<RequestRecord>, StoreError> {
        get_request(&mut *self.conn().await?, id).await
    }

    /// The request opened as pull request `pr_number` of `repository`.
    pub async fn find_request_by_pr(
        &self,
        forge: ForgeKind,
        repository: &str,
        pr_number: u64,
    ) -> Result<Option<RequestRecord>, StoreError> {
        find_request_by_pr(&mut *self.conn().await?, forge, repository, pr_number).await
    }

    /// The request whose revert pull request is `pr_number` of `repository`.
    pub async fn find_request_by_revert_pr(
        &self,
        forge: ForgeKind,
        repository: &str,
        pr_number: u64,
    ) -> Result<Option<RequestRecord>, StoreError> {
        find_request_by_revert_pr(&mut *self.conn().await?, forge, repository, pr_number).await
    }

    /// See [`update_request`]: an optimistic-lock write that bumps `record.version`.
    pub async fn update_request(
        &self,
        record: &mut RequestRecord,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        update_request(&mut *self.conn().await?, record, now).await
    }

    /// Requests in `state` (all when `None`), oldest first.
    pub async fn list_requests(
        &self,
        state: Option<RequestState>,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        list_requests(&mut *self.conn().await?, state).await
    }

    /// See [`overdue_reviews`].
    pub async fn overdue_reviews(
        &self,
        requester_id: u64,
        now: DateTime<Utc>,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        overdue_reviews(&mut *self.conn().await?, requester_id, now).await
    }

    /// See [`held_by`].
    pub async fn held_by(
        &self,
        place: (ForgeKind, &str),
        requester_id: u64,
        environment: &str,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        held_by(&mut *self.conn().await?, place, requester_id, environment).await
    }

    /// For metrics: requests per state, zeros included.
    pub async fn count_requests_by_state(&self) -> Result<Vec<(RequestState, u64)>, StoreError> {
        count_requests_by_state(&mut *self.conn().await?).await
    }
}
