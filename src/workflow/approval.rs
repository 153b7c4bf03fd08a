//! Approvals: by reaction (polled: GitHub sends no webhook for reactions), by approving review,
//! or by `/breakglass approve`. Each is bound to the PR head it was given on; the requester
//! never counts; N distinct approvers when the policy asks. Also the after-the-fact review of
//! fast-path grants, which an approver's reaction closes too.

use std::collections::BTreeSet;

use anyhow::Context as _;

use super::Workflow;
use super::evaluate::StoredDecision;
use crate::comment;
use crate::forge::{Actor, Polled, PullRequestInfo};
use crate::names::{Login, RequestId};
use crate::store::{Approval, ApprovalSource};
use crate::store::{EventKind, JobKind};
use crate::store::{RequestRecord, RequestState};

/// Whether an approval attempt counted, and if not, why.
pub(super) enum ApprovalOutcome {
    Counted { have: usize, need: u32 },
    Merging,
    ByRequester,
    NotApprover { approvers: Vec<String> },
}

impl Workflow {
    /// Marks the request approved (by `approved_by`, or by its fast-path rule) and starts the merge.
    pub(super) async fn approve(
        &self,
        mut record: RequestRecord,
        approved_by: Option<Vec<Login>>,
    ) -> anyhow::Result<()> {
        record.state = RequestState::Approved;
        record.approved_by = approved_by;
        self.store.update_request(&mut record, self.now()).await?;
        self.store.cancel_job(JobKind::Poll, &record.id).await?;
        self.schedule(JobKind::Merge, &record.id, self.now()).await
    }

    /// Counts the approvals bound to the current head and approves when there are enough.
    pub(super) async fn check_approvals(&self, record: RequestRecord) -> anyhow::Result<()> {
        let (approvers, need) = self.counted_approvers(&record).await?;
        if need > 0 && approvers.len() >= need as usize {
            return self
                .approve(record, Some(approvers.into_iter().collect()))
                .await;
        }
        Ok(())
    }

    async fn counted_approvers(
        &self,
        record: &RequestRecord,
    ) -> anyhow::Result<(BTreeSet<Login>, u32)> {
        let stored: StoredDecision =
            serde_json::from_value(record.decision.clone()).context("stored decision")?;
        let approvals = self
            .store
            .approvals_for(&record.id, &record.head_sha)
            .await?;
        let mut ids = BTreeSet::new();
        let mut logins = BTreeSet::new();
        for approval in approvals {
            if approval.approver_id != record.requester_id && ids.insert(approval.approver_id) {
                logins.insert(approval.approver_login);
            }
        }
        Ok((logins, stored.decision.approvals_required))
    }

    /// Records `actor`'s approval of the request's current head, if they may give one.
    pub(super) async fn record_approval(
        &self,
        record: RequestRecord,
        actor: &Actor,
        source: ApprovalSource,
    ) -> anyhow::Result<ApprovalOutcome> {
        if actor.id == record.requester_id {
            return Ok(ApprovalOutcome::ByRequester);
        }
        let (_, policies) = self.load_policies().await?;
        let policies = policies.map_err(|problems| {
            anyhow::anyhow!("the policies are invalid: {} problem(s)", problems.len())
        })?;
        let Some(policy) = policies.get(record.environment.as_str()) else {
            return Ok(ApprovalOutcome::NotApprover {
                approvers: Vec::new(),
            });
        };
        if !self.is_approver(policy, actor).await? {
            return Ok(ApprovalOutcome::NotApprover {
                approvers: policy.approvers.iter().map(ToString::to_string).collect(),
            });
        }
        let approval = Approval {
            request_id: record.id.clone(),
            approver_id: actor.id,
            approver_login: Login::try_from(actor.login.clone()).map_err(anyhow::Error::msg)?,
            source,
            head_sha: record.head_sha.clone(),
            approved_at: self.now(),
        };
        if self.store.add_approval(&approval).await? {
            self.record_event(
                EventKind::APPROVAL,
                Some(&record.id),
                super::events::actor(actor),
                serde_json::json!({ "source": source.to_string(), "head_sha": record.head_sha }),
            )
            .await?;
        }
        let (approvers, need) = self.counted_approvers(&record).await?;
        if approvers.len() >= need as usize {
            self.approve(record, Some(approvers.into_iter().collect()))
                .await?;
            return Ok(ApprovalOutcome::Merging);
        }
        Ok(ApprovalOutcome::Counted {
            have: approvers.len(),
            need,
        })
    }

    /// An approving review: it counts for the commit it was given on, if that is still the head.
    pub(super) async fn handle_review_approval(
        &self,
        pr: &PullRequestInfo,
        author: &Actor,
        commit_id: Option<&str>,
        _delivery: &str,
    ) -> anyhow::Result<()> {
        let Some(record) = self
            .store
            .find_request_by_pr(self.forge_kind(), &self.settings.repository, pr.number)
            .await?
        else {
            return Ok(());
        };
        if record.state != RequestState::Pending || commit_id != Some(record.head_sha.as_str()) {
            return Ok(()); // stale review, or nothing to approve
        }
        let requester = record.requester_login.clone();
        let environment = record.environment.to_string();
        match self
            .record_approval(record, author, ApprovalSource::Review)
            .await?
        {
            ApprovalOutcome::ByRequester => self
                .forge
                .comment(
                    pr.number,
                    &comment::self_approval_comment(requester.as_str()),
                )
                .await
                .map(drop)?,
            ApprovalOutcome::NotApprover { approvers } => self
                .forge
                .comment(
                    pr.number,
                    &comment::not_an_approver_comment(&author.login, &environment, &approvers),
                )
                .await
                .map(drop)?,
            ApprovalOutcome::Counted { have, need } => self
                .forge
                .comment(
                    pr.number,
                    &comment::approval_recorded_comment(&author.login, have, need),
                )
                .await
                .map(drop)?,
            ApprovalOutcome::Merging => {}
        }
        Ok(())
    }

    /// The reaction poll: approvals of pending requests, reviews of fast-path grants.
    pub(super) async fn job_poll(&self, id: &RequestId) -> anyhow::Result<()> {
        let Some(record) = self.store.get_request(id).await? else {
            return Ok(());
        };
        let awaiting_review = record.fast_path_rule.is_some()
            && record.reviewed_at.is_none()
            && matches!(
                record.state,
                RequestState::Active | RequestState::Revoking | RequestState::Revoked
            );
        if record.state != RequestState::Pending && !awaiting_review {
            return Ok(()); // nothing to poll for any more
        }
        let etag = self
            .etags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&record.pr_number)
            .cloned();
        let reactions = match self
            .forge
            .reactions(record.pr_number, etag.as_deref())
            .await?
        {
            Polled::NotModified => None,
            Polled::Changed { etag, value } => {
                let mut etags = self.etags.lock().unwrap_or_else(|p| p.into_inner());
                match etag {
                    Some(etag) => etags.insert(record.pr_number, etag),
                    None => etags.remove(&record.pr_number),
                };
                Some(value)
            }
        };
        let next = self.now()
            + chrono::TimeDelta::from_std(self.settings.poll_interval)
                .unwrap_or(chrono::TimeDelta::seconds(30));
        let Some(reactions) = reactions else {
            return self.schedule(JobKind::Poll, id, next).await;
        };
        let (_, policies) = self.load_policies().await?;
        let Ok(policies) = policies else {
            return self.schedule(JobKind::Poll, id, next).await;
        };
        let Some(policy) = policies.get(record.environment.as_str()) else {
            return Ok(());
        };
        let stored: StoredDecision =
            serde_json::from_value(record.decision.clone()).context("stored decision")?;
        for reaction in reactions {
            if !policy.approval_reactions.contains(&reaction.content)
                || reaction.user.id == record.requester_id
                || reaction.user.is_bot
            {
                continue;
            }
            if awaiting_review {
                if self.is_approver(policy, &reaction.user).await? {
                    return self.mark_reviewed(record, &reaction.user).await;
                }
                continue;
            }
            // A reaction from before the latest push approved an older version.
            if reaction.created_at < stored.head_seen_at {
                continue;
            }
            let current = self
                .store
                .get_request(id)
                .await?
                .context("request vanished")?;
            if current.state != RequestState::Pending {
                return Ok(());
            }
            if let ApprovalOutcome::Merging = self
                .record_approval(current, &reaction.user, ApprovalSource::Reaction)
                .await?
            {
                return Ok(());
            }
        }
        self.schedule(JobKind::Poll, id, next).await
    }

    /// Closes the after-the-fact review of a fast-path grant.
    pub(super) async fn mark_reviewed(
        &self,
        mut record: RequestRecord,
        reviewer: &Actor,
    ) -> anyhow::Result<()> {
        record.reviewed_by =
            Some(Login::try_from(reviewer.login.clone()).map_err(anyhow::Error::msg)?);
        record.reviewed_at = Some(self.now());
        self.store.update_request(&mut record, self.now()).await?;
        self.record_event(
            EventKind::REVIEW,
            Some(&record.id),
            super::events::actor(reviewer),
            serde_json::json!({}),
        )
        .await?;
        self.store.cancel_job(JobKind::Poll, &record.id).await?;
        self.store
            .cancel_job(JobKind::ReviewDue, &record.id)
            .await?;
        self.forge
            .remove_label(record.pr_number, super::NEEDS_REVIEW_LABEL)
            .await?;
        self.forge
            .remove_label(record.pr_number, super::REVIEW_OVERDUE_LABEL)
            .await?;
        self.forge
            .comment(
                record.pr_number,
                &comment::reviewed_comment(&reviewer.login),
            )
            .await?;
        Ok(())
    }

    /// A fast-path grant's review is overdue: label it and ask the approvers.
    pub(super) async fn job_review_due(&self, id: &RequestId) -> anyhow::Result<()> {
        let Some(record) = self.store.get_request(id).await? else {
            return Ok(());
        };
        let (Some(due), None) = (record.review_due_at, record.reviewed_at) else {
            return Ok(());
        };
        if record.fast_path_rule.is_none() || due > self.now() {
            return Ok(());
        }
        let (_, policies) = self.load_policies().await?;
        let approvers: Vec<String> = policies
            .ok()
            .and_then(|p| {
                p.get(record.environment.as_str())
                    .map(|policy| policy.approvers.iter().map(ToString::to_string).collect())
            })
            .unwrap_or_default();
        self.forge
            .add_label(record.pr_number, super::REVIEW_OVERDUE_LABEL)
            .await?;
        let text = comment::review_overdue_comment(
            record.requester_login.as_str(),
            record.environment.as_str(),
            record.role.as_str(),
            due,
            &approvers,
        );
        self.forge.comment(record.pr_number, &text).await?;
        self.metrics
            .inc("breakglass_anomalies_total", "kind=\"review_overdue\"");
        self.record_event(
            EventKind::new("review_overdue").map_err(anyhow::Error::msg)?,
            Some(id),
            None,
            serde_json::json!({ "due": crate::clock::iso(due) }),
        )
        .await
    }

    /// The request of `requester` whose fast-path review is overdue, if any.
    pub(super) async fn overdue_review_of(
        &self,
        requester_id: u64,
    ) -> anyhow::Result<Option<RequestId>> {
        let now = self.now();
        for state in [
            RequestState::Active,
            RequestState::Revoking,
            RequestState::Revoked,
        ] {
            for record in self.store.list_requests(Some(state)).await? {
                if record.requester_id == requester_id
                    && record.fast_path_rule.is_some()
                    && record.reviewed_at.is_none()
                    && record.review_due_at.is_some_and(|due| due < now)
                {
                    return Ok(Some(record.id));
                }
            }
        }
        Ok(None)
    }
}
