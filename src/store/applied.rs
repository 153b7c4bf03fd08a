//! What each grant applied, recorded when it was applied. Revocation and verification read this
//! record, never the current policy: a policy edited, broken or stripped of the role after the
//! grant must not stop the revoke.

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::row::Fields;
use super::{Store, StoreError, to_millis};
use crate::grant::RenderedFile;
use crate::names::RequestId;
use crate::policy::Role;

/// One applied grant.
#[derive(Clone, Debug, PartialEq)]
pub struct AppliedGrant {
    pub request_id: RequestId,
    /// The provider that applied it.
    pub provider: String,
    /// The role's configuration as applied.
    pub role: Role,
    /// The grant files rendered for it (iac).
    pub files: Vec<RenderedFile>,
    /// The git blob id of the request file as its merge brought it to the default branch
    /// (`None`: not known, as for grants merged before it was recorded).
    pub request_blob: Option<String>,
    pub applied_at: DateTime<Utc>,
}

impl TryFrom<&AnyRow> for AppliedGrant {
    type Error = StoreError;

    fn try_from(row: &AnyRow) -> Result<Self, StoreError> {
        let f = Fields::new(row, "applied_grants", "request_id");
        Ok(Self {
            request_id: f.parsed("request_id", RequestId::try_from)?,
            provider: f.text("provider")?,
            role: f.json("role")?,
            files: f.json("files")?,
            request_blob: f.opt_text("request_blob")?,
            applied_at: f.time("applied_at")?,
        })
    }
}

/// Records what a grant will apply, right before its merge; a later attempt (after a refused
/// merge) replaces it, so the record is what the merge that happened checked.
pub async fn plan_grant(conn: &mut AnyConnection, grant: &AppliedGrant) -> Result<(), StoreError> {
    let json = |value: serde_json::Result<String>| {
        value.map_err(|err| StoreError::Invalid {
            what: "applied grant",
            key: grant.request_id.to_string(),
            reason: err.to_string(),
        })
    };
    sqlx::query(
        "INSERT INTO applied_grants (request_id, provider, role, files, request_blob, \
         applied_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (request_id) DO UPDATE SET \
         provider = $2, role = $3, files = $4, request_blob = $5, applied_at = $6",
    )
    .bind(grant.request_id.as_str())
    .bind(&grant.provider)
    .bind(json(serde_json::to_string(&grant.role))?)
    .bind(json(serde_json::to_string(&grant.files))?)
    .bind(grant.request_blob.as_deref())
    .bind(to_millis(grant.applied_at))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What the grant of `request_id` applied, if it was applied.
pub async fn applied_grant(
    conn: &mut AnyConnection,
    request_id: &RequestId,
) -> Result<Option<AppliedGrant>, StoreError> {
    sqlx::query(
        "SELECT request_id, provider, role, files, request_blob, applied_at \
         FROM applied_grants WHERE request_id = $1",
    )
    .bind(request_id.as_str())
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(AppliedGrant::try_from)
    .transpose()
}

impl Store {
    /// See [`plan_grant`].
    pub async fn plan_grant(&self, grant: &AppliedGrant) -> Result<(), StoreError> {
        plan_grant(&mut *self.conn().await?, grant).await
    }

    /// See [`applied_grant`].
    pub async fn applied_grant(
        &self,
        request_id: &RequestId,
    ) -> Result<Option<AppliedGrant>, StoreError> {
        applied_grant(&mut *self.conn().await?, request_id).await
    }
}
