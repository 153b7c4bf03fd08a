//! Revocation, in two jobs. `revoke` (the revocation lane, due at the expiry) ends the access
//! on time: the provider revoke first, then the request's end (`Revoked`, its `Revoke` event
//! and the revert job) in one transaction; no forge call. `revert` (the forge lane) follows:
//! it merges the revert PR through the guard, deletes the bot's branches and tells the
//! requester. Forge work may be slow, rate-limited or refused and is retried forever, but it
//! never holds a revoke back, its own or anyone else's.

use anyhow::Context as _;

use super::Workflow;
use super::events::new_event;
use super::guard::{MergePlan, Refusal};
use super::trailers;
use crate::comment;
use crate::forge::Thread;
use crate::grant::{GrantSpec, Providers};
use crate::names::RequestId;
use crate::policy::ProviderKind;
use crate::store::{AppliedGrant, ChangeKind, EventKind, JobKind};
use crate::store::{RequestRecord, RequestState, RevokeReason};

impl Workflow {
    /// Revokes through the provider, then records the end of the grant and schedules its
    /// revert.
    pub(super) async fn job_revoke(&self, id: &RequestId) -> anyhow::Result<()> {
        let Some(mut record) = self.store.get_request(id).await? else {
            return Ok(());
        };
        // Counted only when this run revoked or tried to: a second job for a request that is
        // revoked already (a reconciliation racing the first) is no revocation.
        let outcome = match self.revoke(&mut record).await {
            Ok(false) => return Ok(()),
            Ok(true) => Ok(()),
            Err(err) => Err(err),
        };
        let result = if outcome.is_ok() { "ok" } else { "failed" };
        self.metrics.inc(
            "breakglass_revocations_total",
            format!("result=\"{result}\""),
        );
        outcome
    }

    /// `true` when this run ended the grant; `false` when there was nothing to do (revoked
    /// already, not granted, or extended meanwhile).
    async fn revoke(&self, record: &mut RequestRecord) -> anyhow::Result<bool> {
        match record.state {
            RequestState::Active => {
                if record.expires_at.is_some_and(|at| at > self.now()) {
                    // An extension moved the expiry; the job was rescheduled to the new time.
                    return Ok(false);
                }
                // Revoking first: an extension racing this revoke (another replica) now fails
                // its optimistic lock instead of keeping a grant the provider no longer holds.
                record.state = RequestState::Revoking;
                record.revoke_reason = Some(RevokeReason::Ttl);
                self.store.update_request(record, self.now()).await?;
            }
            RequestState::Revoking => {}
            _ => return Ok(false),
        }
        let reason = record.revoke_reason.unwrap_or(RevokeReason::Ttl);
        // The provider first: whatever happens to the revert PR, the access ends now.
        let applied = self.applied(record).await?;
        match &applied {
            Some(applied) => {
                let spec = Self::spec(record);
                let others = self
                    .sharing_grants(record.id.as_str(), applied, &spec)
                    .await?;
                self.providers
                    .revoke_with(&applied.role, &spec, &others)
                    .await?
            }
            None => {
                tracing::warn!(request = %record.id, "no record of what was applied; nothing to revoke at a provider")
            }
        }
        let now = self.now();
        let event = new_event(
            EventKind::Revoke,
            Some(&record.id),
            None,
            serde_json::json!({
                "reason": reason.to_string(),
                "provider": applied.as_ref().map(|a| a.provider.clone()),
                "revert_pr": record.revert_pr_number,
            }),
            self.forge_kind(),
        );
        let mut revoked = record.clone();
        revoked.state = RequestState::Revoked;
        revoked.revoked_at = Some(now);
        self.store.record_revoked(&mut revoked, &event, now).await?;
        *record = revoked;
        self.wake_jobs.wake(JobKind::Revert.lane());
        Ok(true)
    }

    /// The other active grants that share this grant's managed-policy attachment (aws-iam):
    /// revoking this one must leave theirs in place. One query over the active aws-iam grants.
    pub(super) async fn sharing_grants(
        &self,
        except: &str,
        applied: &AppliedGrant,
        spec: &GrantSpec,
    ) -> anyhow::Result<Vec<String>> {
        let Some(mine) = Providers::aws_attachment(&applied.role, spec) else {
            return Ok(Vec::new());
        };
        let aws = ProviderKind::AwsIam.to_string();
        let active = self
            .store
            .grants_of_provider(&aws, Some(RequestState::Active))
            .await?;
        Ok(active
            .iter()
            .filter(|other| other.record.id.as_str() != except && self.owns(&other.record))
            .filter(|other| {
                other.applied.as_ref().is_some_and(|theirs| {
                    Providers::aws_attachment(&theirs.role, &Self::spec(&other.record)).as_ref()
                        == Some(&mine)
                })
            })
            .map(|other| other.record.id.to_string())
            .collect())
    }

    /// After the revoke: lands the removal of the request's files, deletes the bot's branches
    /// and tells the requester, then logs the revert. Each step is re-runnable; a revert that
    /// was logged already is done.
    pub(super) async fn job_revert(&self, id: &RequestId) -> anyhow::Result<()> {
        let Some(mut record) = self.store.get_request(id).await? else {
            return Ok(());
        };
        if record.state != RequestState::Revoked || self.reverted(id).await? {
            return Ok(());
        }
        let reason = record.revoke_reason.unwrap_or(RevokeReason::Ttl);
        let applied = self.applied(&record).await?;
        let revert_sha = if record.expires_at.is_some() {
            self.merge_revert(&mut record, applied.as_ref(), reason)
                .await?
        } else {
            None
        };
        for kind in [ChangeKind::Revert, ChangeKind::Request] {
            if let Some(change) = self.store.get_change(record.id.as_str(), kind).await? {
                self.forge.delete_branch(&change.branch).await?;
            }
        }
        // Tell the requester before logging the revert: after a crash in between, the step
        // runs again, reads the thread and does not say it twice.
        let text = comment::revoked_comment(
            record.requester_login.as_str(),
            record.environment.as_str(),
            record.role.as_str(),
            record.revoked_at.unwrap_or_else(|| self.now()),
            &reason.to_string(),
            record
                .revert_pr_number
                .map(|n| self.forge.change_label(n))
                .as_deref(),
        );
        self.note_once(
            Thread::Change(record.pr_number),
            super::once::REVOKED,
            &text,
        )
        .await?;
        self.record_event(
            EventKind::Revert,
            Some(&record.id),
            None,
            serde_json::json!({
                "reason": reason.to_string(),
                "revert_pr": record.revert_pr_number,
                "revert_sha": revert_sha,
            }),
        )
        .await
    }

    /// Whether the revert of `id` was logged already.
    async fn reverted(&self, id: &RequestId) -> anyhow::Result<bool> {
        let events = self.store.events_for_request(id).await?;
        Ok(events.iter().any(|e| e.kind == EventKind::Revert))
    }

    /// Lands the removal of the request's files. The existing revert PR is merged through the
    /// guard; if anyone made it unmergeable (closed, draft, pushed to, conflicting) a fresh
    /// change of the bot's own is built and merged instead; if that is refused too, the bot
    /// says so loudly and the job fails, to be retried. Nobody can hold the revocation back.
    async fn merge_revert(
        &self,
        record: &mut RequestRecord,
        applied: Option<&AppliedGrant>,
        reason: RevokeReason,
    ) -> anyhow::Result<Option<String>> {
        let (title, message) = trailers::revoke_message(record, &reason.to_string());
        let mut refusal = None;
        for attempt in 0..2 {
            let change = match self
                .store
                .get_change(record.id.as_str(), ChangeKind::Revert)
                .await?
            {
                Some(change)
                    if attempt == 0 && change.head_sha.is_some() && change.pr_number.is_some() =>
                {
                    change
                }
                _ => {
                    if self.build_revert(record, applied).await?.is_none() {
                        return Ok(None); // nothing of it is left on the default branch
                    }
                    self.store
                        .get_change(record.id.as_str(), ChangeKind::Revert)
                        .await?
                        .context("the revert change was just built")?
                }
            };
            let plan = MergePlan::deletion(&change, title.clone(), message.clone())?;
            match self.merge_own_or_theirs(&plan).await? {
                Ok(merged) => return Ok(Some(merged.sha)),
                Err(Refusal::Closed) if self.forge.change(plan.pr).await?.info.merged => {
                    // Merged by hand at another head: the files may still be there; rebuild.
                    refusal = Some(Refusal::Closed);
                }
                Err(why) => {
                    tracing::warn!(request = %record.id, pr = plan.pr, %why, "the revert PR cannot be merged; rebuilding it");
                    refusal = Some(why);
                }
            }
        }
        let refusal = refusal.context("two attempts failed")?;
        self.revert_blocked(record, &refusal).await?;
        anyhow::bail!("the revert of {} cannot be merged: {refusal}", record.id)
    }

    /// A revert that cannot land: an error in the logs and metrics every time, a comment once.
    async fn revert_blocked(&self, record: &RequestRecord, why: &Refusal) -> anyhow::Result<()> {
        tracing::error!(request = %record.id, %why, "REVOCATION BLOCKED: the revert cannot be merged; the provider revoke is done, the request file stays on the default branch");
        self.metrics
            .inc("breakglass_anomalies_total", "kind=\"revert_blocked\"");
        let kind = EventKind::RevertBlocked;
        let told = self
            .store
            .events_for_request(&record.id)
            .await?
            .iter()
            .any(|e| e.kind == kind);
        if told {
            return Ok(());
        }
        let default = self.default_branch().await?;
        self.forge
            .note(
                Thread::Change(record.pr_number),
                &comment::revert_blocked_comment(&why.to_string(), &default, why.is_protection()),
            )
            .await?;
        self.record_event(
            kind,
            Some(&record.id),
            None,
            serde_json::json!({ "why": why.to_string() }),
        )
        .await
    }
}
