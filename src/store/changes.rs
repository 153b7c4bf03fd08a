//! The branches and pull requests the bot builds itself: a request PR opened for a comment (or
//! re-opened from the bot's own branch), the revert PR of a grant, the removal of files that
//! landed without the bot.
//!
//! The row is written before the branch exists (`head_sha` NULL: "being built"), so that a crash
//! in the middle leaves a record of the half-built branch to clean up, and completed with the
//! bot's own head commit. The merge guard merges a bot branch only at exactly that commit:
//! anything else on it was pushed by someone else.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::row::{Fields, string_enum};
use super::{Store, StoreError, to_i64, to_millis};

/// What a bot-built change is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// A request PR on the bot's branch: adds the request file and its grant files.
    Request,
    /// Removes a grant's request file and grant files at the TTL.
    Revert,
    /// Removes files that reached the default branch without the bot.
    Removal,
}

string_enum!(ChangeKind {
    Request => "request",
    Revert => "revert",
    Removal => "removal",
});

/// One bot-built change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The request id the change is about.
    pub subject: String,
    pub kind: ChangeKind,
    /// The bot's branch (with an unguessable suffix).
    pub branch: String,
    /// The default branch's head the change was built on.
    pub base_sha: String,
    /// The bot's own last commit on `branch`; `None` while it is being built.
    pub head_sha: Option<String>,
    /// The PR, once opened.
    pub pr_number: Option<u64>,
    /// The files the change adds (request) or deletes (revert, removal).
    pub paths: Vec<String>,
    /// The git blob id of each file the change wrote, by path: what a later deletion of that
    /// file hands the forge without reading it first (the forge refuses a stale one).
    pub blobs: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<&AnyRow> for Change {
    type Error = StoreError;

    fn try_from(row: &AnyRow) -> Result<Self, StoreError> {
        let f = Fields::new(row, "changes", "subject");
        Ok(Self {
            subject: f.text("subject")?,
            kind: f.parsed("kind", |text| text.parse())?,
            branch: f.text("branch")?,
            base_sha: f.text("base_sha")?,
            head_sha: f.opt_text("head_sha")?,
            pr_number: f.opt_uint("pr_number")?,
            paths: f.json("paths")?,
            blobs: f.json("blobs")?,
            created_at: f.time("created_at")?,
            updated_at: f.time("updated_at")?,
        })
    }
}

macro_rules! select {
    ($where:literal) => {
        concat!(
            "SELECT subject, kind, branch, base_sha, head_sha, pr_number, paths, blobs, \
             created_at, updated_at FROM changes WHERE ",
            $where
        )
    };
}

/// Records `change` as the build of its subject and kind, in place of `replacing` exactly as
/// it was read (its branch, head and PR; `None`: in place of none). `false` when the recorded
/// one is no longer that: another run (one delivery handled twice at once, by two replicas)
/// claimed the subject or wrote its build's progress meanwhile, and this run leaves the
/// subject to it.
pub async fn claim_change(
    conn: &mut AnyConnection,
    change: &Change,
    replacing: Option<&Change>,
) -> Result<bool, StoreError> {
    let Some(old) = replacing else {
        let sql = "INSERT INTO changes (subject, kind, branch, base_sha, head_sha, pr_number, \
                   paths, blobs, created_at, updated_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                   ON CONFLICT (subject, kind) DO NOTHING";
        let written = bind_change(sqlx::query(sql), change)?;
        return Ok(written.execute(&mut *conn).await?.rows_affected() == 1);
    };
    let sql = "UPDATE changes SET branch = $3, base_sha = $4, head_sha = $5, pr_number = $6, \
               paths = $7, blobs = $8, created_at = $9, updated_at = $10 \
               WHERE subject = $1 AND kind = $2 AND branch = $11 \
               AND head_sha IS NOT DISTINCT FROM $12 AND pr_number IS NOT DISTINCT FROM $13";
    let old_pr = old
        .pr_number
        .map(|n| to_i64(n, "change", &old.subject))
        .transpose()?;
    let written = bind_change(sqlx::query(sql), change)?
        .bind(old.branch.clone())
        .bind(old.head_sha.clone())
        .bind(old_pr);
    Ok(written.execute(&mut *conn).await?.rows_affected() == 1)
}

/// Writes what a build learned (its head, its PR, its blobs), as long as the build on
/// `change.branch` is still the recorded one; `false` when another run claimed the subject
/// since (see [`claim_change`]).
pub async fn update_change(conn: &mut AnyConnection, change: &Change) -> Result<bool, StoreError> {
    let sql = "UPDATE changes SET base_sha = $4, head_sha = $5, pr_number = $6, paths = $7, \
               blobs = $8, created_at = $9, updated_at = $10 \
               WHERE subject = $1 AND kind = $2 AND branch = $3";
    let written = bind_change(sqlx::query(sql), change)?
        .execute(&mut *conn)
        .await?;
    Ok(written.rows_affected() == 1)
}

/// Binds `change`'s columns as `$1`…`$10`.
fn bind_change<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    change: &Change,
) -> Result<sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>, StoreError> {
    let invalid = |err: serde_json::Error| StoreError::Invalid {
        what: "change",
        key: change.subject.clone(),
        reason: err.to_string(),
    };
    let paths = serde_json::to_string(&change.paths).map_err(invalid)?;
    let blobs = serde_json::to_string(&change.blobs).map_err(invalid)?;
    let pr = change
        .pr_number
        .map(|n| to_i64(n, "change", &change.subject))
        .transpose()?;
    Ok(query
        .bind(change.subject.clone())
        .bind(change.kind.as_str())
        .bind(change.branch.clone())
        .bind(change.base_sha.clone())
        .bind(change.head_sha.clone())
        .bind(pr)
        .bind(paths)
        .bind(blobs)
        .bind(to_millis(change.created_at))
        .bind(to_millis(change.updated_at)))
}

/// The change of `kind` about `subject`.
pub async fn get_change(
    conn: &mut AnyConnection,
    subject: &str,
    kind: ChangeKind,
) -> Result<Option<Change>, StoreError> {
    sqlx::query(select!("subject = $1 AND kind = $2"))
        .bind(subject)
        .bind(kind.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(Change::try_from)
        .transpose()
}

/// The change built on `branch`, if the bot built one there.
pub async fn change_on_branch(
    conn: &mut AnyConnection,
    branch: &str,
) -> Result<Option<Change>, StoreError> {
    sqlx::query(select!("branch = $1"))
        .bind(branch)
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(Change::try_from)
        .transpose()
}

/// The change whose PR is `pr_number`.
pub async fn change_of_pr(
    conn: &mut AnyConnection,
    pr_number: u64,
) -> Result<Option<Change>, StoreError> {
    sqlx::query(select!("pr_number = $1"))
        .bind(to_i64(pr_number, "change", "pr")?)
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(Change::try_from)
        .transpose()
}

impl Store {
    /// See [`claim_change`].
    pub async fn claim_change(
        &self,
        change: &Change,
        replacing: Option<&Change>,
    ) -> Result<bool, StoreError> {
        claim_change(&mut *self.conn().await?, change, replacing).await
    }

    /// See [`update_change`].
    pub async fn update_change(&self, change: &Change) -> Result<bool, StoreError> {
        update_change(&mut *self.conn().await?, change).await
    }

    /// See [`get_change`].
    pub async fn get_change(
        &self,
        subject: &str,
        kind: ChangeKind,
    ) -> Result<Option<Change>, StoreError> {
        get_change(&mut *self.conn().await?, subject, kind).await
    }

    /// See [`change_on_branch`].
    pub async fn change_on_branch(&self, branch: &str) -> Result<Option<Change>, StoreError> {
        change_on_branch(&mut *self.conn().await?, branch).await
    }

    /// See [`change_of_pr`].
    pub async fn change_of_pr(&self, pr_number: u64) -> Result<Option<Change>, StoreError> {
        change_of_pr(&mut *self.conn().await?, pr_number).await
    }
}
