//! The timed half of the lifecycle, run as durable jobs: merge, grant (with the expiry comment
//! and the revert PR), reminder, and revoke at the TTL. A job that fails is retried with
//! backoff, forever: no grant is ever left alive past its expiry.

use std::collections::BTreeSet;

use anyhow::{Context as _, bail};

use super::Workflow;
use super::trailers;
use crate::comment;
use crate::forge::{FileChange, MergeError, PushedCommit};
use crate::grant::GrantSpec;
use crate::names::RequestId;
use crate::policy::Role;
use crate::request::{AccessRequest, RequestPath};
use crate::store::{EventKind, JobKind};
use crate::store::{RequestRecord, RequestState, RevokeReason};

/// How soon a fast-path grant must be reviewed (`None` when it needs no review).
fn review_within(record: &RequestRecord) -> Option<crate::duration::HumanDuration> {
    record.fast_path_rule.as_ref()?;
    Some(
        serde_json::from_value::<super::evaluate::StoredDecision>(record.decision.clone())
            .ok()
            .and_then(|d| d.decision.fast_path.map(|f| f.review_within))
            .unwrap_or(crate::duration::HumanDuration::from_secs(86_400)),
    )
}

impl Workflow {
    fn request_path(record: &RequestRecord) -> String {
        RequestPath {
            environment: record.environment.clone(),
            id: record.id.clone(),
        }
        .to_repo_path()
    }

    /// The role as the default branch's policy defines it now (`None` when it is gone).
    async fn current_role(&self, record: &RequestRecord) -> anyhow::Result<Option<Role>> {
        let (_, policies) = self.load_policies().await?;
        Ok(policies.ok().and_then(|p| {
            p.get(record.environment.as_str())
                .and_then(|policy| policy.roles.get(&record.role).cloned())
        }))
    }

    fn spec(record: &RequestRecord) -> GrantSpec {
        GrantSpec {
            id: record.id.to_string(),
            environment: record.environment.to_string(),
            role: record.role.to_string(),
            requester: record.requester_login.to_string(),
            reason: record.reason.as_str().to_owned(),
            ticket: record.ticket.as_ref().map(ToString::to_string),
            duration: crate::duration::HumanDuration::from_secs(record.duration_secs).to_string(),
            expires_at: record.expires_at.map(crate::clock::iso).unwrap_or_default(),
        }
    }

    /// Merges an approved request PR, guarded by the approved head, and schedules the rest.
    pub(super) async fn job_merge(&self, id: &RequestId) -> anyhow::Result<()> {
        let Some(mut record) = self.store.get_request(id).await? else {
            return Ok(());
        };
        if record.state != RequestState::Approved {
            return Ok(());
        }
        let pr = self.forge.pull_request(record.pr_number).await?;
        let (merge_sha, merged_at) = if pr.info.merged {
            // We merged before a crash: carry on from the merge as it happened.
            (
                pr.merge_sha
                    .clone()
                    .context("a merged PR without merge commit")?,
                pr.merged_at.unwrap_or_else(|| self.now()),
            )
        } else {
            if !pr.open {
                record.state = RequestState::Closed;
                record.approved_by = None;
                record.fast_path_rule = None;
                self.store.update_request(&mut record, self.now()).await?;
                return Ok(());
            }
            if pr.info.head_sha != record.head_sha {
                return self
                    .back_to_pending(
                        record,
                        "the PR changed after it was approved; approve the new version",
                    )
                    .await;
            }
            if let Some(problem) = self.scope_problem(&record).await? {
                return self.back_to_pending(record, &problem).await;
            }
            let now = self.now();
            let expected_expiry = now + chrono::TimeDelta::seconds(record.duration_secs as i64);
            let review_due = review_within(&record).map(|within| now + within.to_chrono());
            let (title, message) = trailers::grant_message(&record, expected_expiry, review_due);
            match self
                .forge
                .merge(record.pr_number, &record.head_sha, &title, &message)
                .await
            {
                Ok(sha) => (sha, self.now()),
                Err(MergeError::HeadChanged) => {
                    return self
                        .back_to_pending(
                            record,
                            "the PR changed after it was approved; approve the new version",
                        )
                        .await;
                }
                Err(MergeError::NotMergeable(why)) => {
                    return self
                        .back_to_pending(record, &format!("the forge refused the merge ({why})"))
                        .await;
                }
                Err(MergeError::Forge(err)) => return Err(err.into()),
            }
        };
        let expires_at = merged_at + chrono::TimeDelta::seconds(record.duration_secs as i64);
        record.state = RequestState::Active;
        record.merge_sha = Some(merge_sha);
        record.granted_at = Some(merged_at);
        record.expires_at = Some(expires_at);
        record.total_secs = record.duration_secs;
        record.review_due_at = review_within(&record).map(|within| merged_at + within.to_chrono());
        self.store.update_request(&mut record, self.now()).await?;
        self.record_event(
            EventKind::MERGE,
            Some(id),
            None,
            serde_json::json!({
                "pr": record.pr_number,
                "merge_sha": record.merge_sha,
                "approved_by": trailers::approved_by(&record),
                "granted_at": record.granted_at.map(crate::clock::iso),
                "expires_at": crate::clock::iso(expires_at),
            }),
        )
        .await?;
        self.schedule(JobKind::Revoke, id, expires_at).await?;
        if let Some(due) = record.review_due_at {
            self.schedule(JobKind::ReviewDue, id, due).await?;
        }
        let remind_at = expires_at
            - chrono::TimeDelta::from_std(self.settings.reminder_before).unwrap_or_default();
        if remind_at > self.now() {
            self.schedule(JobKind::Remind, id, remind_at).await?;
        }
        self.schedule(JobKind::Grant, id, self.now()).await
    }

    /// The merge did not happen: say why and decide again on the PR as it is now (its head may
    /// have moved, which voids the approvals given before).
    async fn back_to_pending(&self, record: RequestRecord, why: &str) -> anyhow::Result<()> {
        self.forge
            .comment(record.pr_number, &format!("⚠️ Not merged: {why}."))
            .await?;
        self.evaluate_pr(record.pr_number, Some(record)).await
    }

    /// Files of the request PR beyond its request file and the grant files the bot renders.
    async fn scope_problem(&self, record: &RequestRecord) -> anyhow::Result<Option<String>> {
        let files = self.forge.pull_request_files(record.pr_number).await?;
        let request_path = Self::request_path(record);
        let mut allowed = BTreeSet::from([request_path.clone()]);
        if let Some(role) = self.current_role(record).await?
            && let Some(text) = self
                .forge
                .read_file(&record.head_sha, &request_path)
                .await?
                .map(|f| f.text)
        {
            let request = AccessRequest::from_yaml(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
            let path = RequestPath {
                environment: record.environment.clone(),
                id: record.id.clone(),
            };
            let spec = super::pull_request::grant_spec(&request, &path, &record.requester_login);
            for rendered in self.providers.rendered_files(&role, &spec)? {
                let current = self
                    .forge
                    .read_file(&record.head_sha, &rendered.path)
                    .await?;
                if current.map(|f| f.text) != Some(rendered.content) {
                    return Ok(Some(format!(
                        "`{}` is not the grant file breakglass renders",
                        rendered.path
                    )));
                }
                allowed.insert(rendered.path);
            }
        }
        let extra: Vec<&str> = files
            .iter()
            .flat_map(|f| std::iter::once(&f.path).chain(f.previous_path.as_ref()))
            .filter(|p| !allowed.contains(*p))
            .map(String::as_str)
            .collect();
        Ok((!extra.is_empty()).then(|| {
            format!(
                "the PR changes files beyond its request: {}",
                extra.join(", ")
            )
        }))
    }

    /// Applies the grant, opens the revert PR and posts the expiry comment.
    pub(super) async fn job_grant(&self, id: &RequestId) -> anyhow::Result<()> {
        let Some(mut record) = self.store.get_request(id).await? else {
            return Ok(());
        };
        if record.state != RequestState::Active {
            return Ok(()); // revoked before the grant step ran: nothing to give
        }
        let Some(role) = self.current_role(&record).await? else {
            // The role vanished from the policy after the merge: fail closed.
            record.state = RequestState::Revoking;
            record.revoke_reason = Some(RevokeReason::Reconcile);
            self.store.update_request(&mut record, self.now()).await?;
            return self.schedule(JobKind::Revoke, id, self.now()).await;
        };
        self.providers.apply(&role, &Self::spec(&record)).await?;
        self.record_event(
            EventKind::GRANT,
            Some(id),
            super::events::requester(&record),
            serde_json::json!({ "provider": role.provider, "role": record.role, "expires_at": record.expires_at.map(crate::clock::iso) }),
        )
        .await?;
        self.metrics.inc(
            "breakglass_grants_total",
            format!("provider=\"{}\"", role.provider),
        );
        if record.fast_path_rule.is_some() && record.reviewed_at.is_none() {
            self.forge
                .add_label(record.pr_number, super::NEEDS_REVIEW_LABEL)
                .await?;
            self.schedule(JobKind::Poll, id, self.now()).await?;
        }
        let revert = self.ensure_revert_pr(&mut record).await?;
        let expires_at = record
            .expires_at
            .context("an active request has an expiry")?;
        // Approvers are mentioned; `fast-path:<rule>` and `self-service` read as they are.
        let approved_by = match (&record.fast_path_rule, &record.approved_by) {
            (None, Some(by)) if !by.is_empty() => by
                .iter()
                .map(|login| comment::mention(login.as_str()))
                .collect::<Vec<_>>()
                .join(", "),
            _ => trailers::approved_by(&record),
        };
        let text = comment::granted_comment(
            record.id.as_str(),
            record.requester_login.as_str(),
            record.environment.as_str(),
            record.role.as_str(),
            expires_at,
            self.now(),
            &approved_by,
            record.reason.as_str(),
            record.ticket.as_ref().map(|t| t.as_str()),
            revert,
        );
        self.forge.comment(record.pr_number, &text).await?;
        Ok(())
    }

    /// The PR that removes the request (and its grant files) from the default branch; created
    /// once, found again after a crash.
    async fn ensure_revert_pr(&self, record: &mut RequestRecord) -> anyhow::Result<u64> {
        if let Some(number) = record.revert_pr_number {
            let pr = self.forge.pull_request(number).await?;
            if pr.open || pr.info.merged {
                return Ok(number);
            }
        }
        let default = self.forge.default_branch().await?;
        let branch = format!("breakglass/revoke/{}", record.id);
        if let Err(err) = self
            .forge
            .create_branch(&branch, &self.forge.branch_head(&default).await?)
            .await
            && err.status() != Some(422)
        {
            return Err(err.into()); // 422: the branch exists from an earlier attempt
        }
        let added: Vec<String> = self
            .forge
            .pull_request_files(record.pr_number)
            .await?
            .into_iter()
            .filter(|f| !matches!(f.change, FileChange::Removed))
            .map(|f| f.path)
            .collect();
        for path in added {
            if let Some(file) = self.forge.read_file(&branch, &path).await? {
                self.forge
                    .delete_file(
                        &branch,
                        &path,
                        &format!("breakglass: remove {path}"),
                        &file.blob_sha,
                    )
                    .await?;
            }
        }
        let expires_at = record
            .expires_at
            .context("an active request has an expiry")?;
        let number = match self.forge.find_open_pull_request(&branch, &default).await? {
            Some(number) => number,
            None => {
                self.forge
                    .open_pull_request(
                        &branch,
                        &default,
                        &comment::revert_pr_title(record.id.as_str(), expires_at),
                        &comment::revert_pr_body(record.id.as_str(), record.pr_number, expires_at),
                    )
                    .await?
            }
        };
        record.revert_pr_number = Some(number);
        self.store.update_request(record, self.now()).await?;
        Ok(number)
    }

    /// Whether an active grant is still what git says: its request file on the default branch.
    /// When it is not (removed by hand), the grant is revoked at once with reason `reconcile`.
    pub(super) async fn reconcile(&self, id: &RequestId, default: &str) -> anyhow::Result<()> {
        let Some(mut record) = self.store.get_request(id).await? else {
            return Ok(());
        };
        if record.state != RequestState::Active {
            return Ok(());
        }
        let listed = self
            .forge
            .read_file(default, &Self::request_path(&record))
            .await?
            .is_some();
        let held = match self.current_role(&record).await? {
            Some(role) => {
                self.providers
                    .verify(&role, &Self::spec(&record), listed)
                    .await?
            }
            None => false, // the role left the policy: nothing may hold it
        };
        if held {
            return Ok(());
        }
        tracing::warn!(request = %id, "an active grant is no longer held (request file gone or role removed); revoking");
        self.metrics.inc(
            "breakglass_anomalies_total",
            "kind=\"request_removed_by_hand\"",
        );
        record.state = RequestState::Revoking;
        record.revoke_reason = Some(RevokeReason::Reconcile);
        self.store.update_request(&mut record, self.now()).await?;
        self.schedule(JobKind::Revoke, id, self.now()).await
    }

    /// Every active grant checked against git (at start and then periodically): a missed
    /// webhook cannot leave a grant whose request file is gone.
    pub async fn reconcile_all(&self) -> anyhow::Result<()> {
        let default = self.forge.default_branch().await?;
        for record in self.store.list_requests(Some(RequestState::Active)).await? {
            let _guard = self.lock_pr(record.pr_number).await;
            self.reconcile(&record.id, &default).await?;
        }
        Ok(())
    }

    /// Revokes through the provider first, then merges the revert PR, then tells the requester.
    pub(super) async fn job_revoke(&self, id: &RequestId) -> anyhow::Result<()> {
        let Some(mut record) = self.store.get_request(id).await? else {
            return Ok(());
        };
        let result = self.revoke(&mut record).await;
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        if !matches!(
            record.state,
            RequestState::Active | RequestState::Revoking | RequestState::Revoked
        ) {
            return Ok(());
        }
        self.metrics.inc(
            "breakglass_revocations_total",
            format!("result=\"{outcome}\""),
        );
        result
    }

    async fn revoke(&self, record: &mut RequestRecord) -> anyhow::Result<()> {
        match record.state {
            RequestState::Active => {
                if record.expires_at.is_some_and(|at| at > self.now()) {
                    // An extension moved the expiry; the job was rescheduled to the new time.
                    return Ok(());
                }
                record.state = RequestState::Revoking;
                record.revoke_reason = Some(RevokeReason::Ttl);
                self.store.update_request(record, self.now()).await?;
            }
            RequestState::Revoking => {}
            _ => return Ok(()),
        }
        let reason = record.revoke_reason.unwrap_or(RevokeReason::Ttl);
        if let Some(role) = self.current_role(record).await? {
            self.providers.revoke(&role, &Self::spec(record)).await?;
        }
        // The revert PR may already be merged (a crash after the merge): carry on from it.
        let mut revert_sha = None;
        if let Some(number) = record.revert_pr_number {
            let pr = self.forge.pull_request(number).await?;
            if pr.info.merged {
                revert_sha = pr.merge_sha;
            }
        }
        let default = self.forge.default_branch().await?;
        let listed = self
            .forge
            .read_file(&default, &Self::request_path(record))
            .await?
            .is_some();
        if revert_sha.is_none() && !listed {
            // Someone removed the request file by hand: nothing is left to revert in git.
            if let Some(number) = record.revert_pr_number
                && self.forge.pull_request(number).await?.open
            {
                self.forge.close_pull_request(number).await?;
            }
        }
        if revert_sha.is_none() && listed && record.expires_at.is_some() {
            let revert = self.ensure_revert_pr(record).await?;
            let pr = self.forge.pull_request(revert).await?;
            revert_sha = pr.merge_sha.clone();
            if !pr.info.merged {
                let (title, message) = trailers::revoke_message(record, &reason.to_string());
                match self
                    .forge
                    .merge(revert, &pr.info.head_sha, &title, &message)
                    .await
                {
                    Ok(sha) => revert_sha = Some(sha),
                    Err(MergeError::Forge(err)) => return Err(err.into()),
                    Err(err) => bail!("cannot merge revert PR #{revert}: {err}"),
                }
            }
        }
        if record.expires_at.is_some() {
            self.forge
                .delete_branch(&format!("breakglass/revoke/{}", record.id))
                .await?;
            self.forge
                .delete_branch(&format!("breakglass/request/{}", record.id))
                .await?;
        }
        // Tell the requester before recording the end: after a crash in between, the step
        // runs again and may say it twice, but never not at all.
        let now = self.now();
        let text = comment::revoked_comment(
            record.requester_login.as_str(),
            record.environment.as_str(),
            record.role.as_str(),
            now,
            &reason.to_string(),
            record.revert_pr_number,
        );
        self.forge.comment(record.pr_number, &text).await?;
        record.state = RequestState::Revoked;
        record.revoked_at = Some(now);
        self.store.update_request(record, now).await?;
        self.record_event(
            EventKind::REVOKE,
            Some(&record.id),
            None,
            serde_json::json!({ "reason": reason.to_string(), "revert_pr": record.revert_pr_number, "revert_sha": revert_sha }),
        )
        .await?;
        self.store.cancel_job(JobKind::Remind, &record.id).await?;
        Ok(())
    }

    pub(super) async fn job_remind(&self, id: &RequestId) -> anyhow::Result<()> {
        let Some(record) = self.store.get_request(id).await? else {
            return Ok(());
        };
        match (record.state, record.expires_at) {
            (RequestState::Active, Some(at)) if at > self.now() => {
                let text = comment::reminder_comment(
                    record.requester_login.as_str(),
                    record.environment.as_str(),
                    record.role.as_str(),
                    at,
                    self.now(),
                );
                self.forge.comment(record.pr_number, &text).await?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A push to the default branch that adds request files the bot did not merge (a direct
    /// push, or a request PR merged by hand): flagged, and removed again, so that `requests/`
    /// lists only grants the bot made. Nothing was granted, so no provider is involved.
    pub(super) async fn handle_push(
        &self,
        git_ref: &str,
        commits: &[PushedCommit],
    ) -> anyhow::Result<()> {
        let default = self.forge.default_branch().await?;
        if git_ref != format!("refs/heads/{default}") {
            return Ok(());
        }
        // A request file of an active grant removed by hand: the grant ends now (reconcile).
        let removed: BTreeSet<&String> = commits.iter().flat_map(|c| c.removed.iter()).collect();
        for path in removed {
            if let Some(request) = RequestPath::parse(path) {
                self.reconcile(&request.id, &default).await?;
            }
        }
        // A merge's push lists the file under several commits: look at each path once.
        let added: BTreeSet<&String> = commits.iter().flat_map(|c| c.added.iter()).collect();
        for path in added {
            let Some(request) = RequestPath::parse(path) else {
                continue;
            };
            let known = self.store.get_request(&request.id).await?;
            let granted_by_bot = known.as_ref().is_some_and(|r| {
                matches!(
                    r.state,
                    RequestState::Approved
                        | RequestState::Active
                        | RequestState::Revoking
                        | RequestState::Revoked
                )
            });
            if granted_by_bot {
                continue;
            }
            tracing::warn!(
                path,
                "request file reached the default branch without breakglass; removing it"
            );
            self.metrics
                .inc("breakglass_anomalies_total", "kind=\"landed_without_bot\"");
            self.remove_unauthorized(&default, path, &request).await?;
        }
        Ok(())
    }

    async fn remove_unauthorized(
        &self,
        default: &str,
        path: &str,
        request: &RequestPath,
    ) -> anyhow::Result<()> {
        if self.forge.read_file(default, path).await?.is_none() {
            return Ok(()); // already removed (a redelivery, or a later push)
        }
        let branch = format!("breakglass/remove/{}", request.id);
        if let Err(err) = self
            .forge
            .create_branch(&branch, &self.forge.branch_head(default).await?)
            .await
            && err.status() != Some(422)
        {
            return Err(err.into());
        }
        if let Some(file) = self.forge.read_file(&branch, path).await? {
            self.forge
                .delete_file(
                    &branch,
                    path,
                    &format!("breakglass: remove {path}"),
                    &file.blob_sha,
                )
                .await?;
        }
        let number = match self.forge.find_open_pull_request(&branch, default).await? {
            Some(number) => number,
            None => {
                let title = format!(
                    "breakglass: remove {} (landed without breakglass)",
                    request.id
                );
                let number = self
                    .forge
                    .open_pull_request(
                        &branch,
                        default,
                        &title,
                        &comment::direct_push_comment(&[path.to_owned()]),
                    )
                    .await?;
                self.forge
                    .comment(number, &comment::direct_push_comment(&[path.to_owned()]))
                    .await?;
                number
            }
        };
        let pr = self.forge.pull_request(number).await?;
        let mut removal_sha = pr.merge_sha.clone();
        if !pr.info.merged {
            let title = format!("breakglass: remove {} (reconcile)", request.id);
            let message = format!(
                "{path} reached {default} without breakglass; it was never granted.\n\nBreakglass-Revokes: {}\nBreakglass-Revoked-Reason: reconcile\n",
                request.id
            );
            match self
                .forge
                .merge(number, &pr.info.head_sha, &title, &message)
                .await
            {
                Ok(sha) => removal_sha = Some(sha),
                Err(MergeError::Forge(err)) => return Err(err.into()),
                Err(err) => bail!("cannot merge removal PR #{number}: {err}"),
            }
        }
        self.record_event(
            EventKind::new("remove").map_err(anyhow::Error::msg)?,
            Some(&request.id),
            None,
            serde_json::json!({ "path": path, "reason": "reconcile", "revert_sha": removal_sha }),
        )
        .await?;
        self.forge.delete_branch(&branch).await?;
        Ok(())
    }
}
