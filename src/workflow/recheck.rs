//! The policy decision asked again right before a request's merge. A request can wait for its
//! approval for up to a day; a policy tightened on the default branch meanwhile (the requester
//! taken off, a shorter `max_duration`, more approvals, a fast path narrowed) must hold for it
//! as for a request opened now; a fast path also for the requester's grants and on-call
//! membership as they are now.

use super::{Workflow, stored_decision};
use crate::duration::HumanDuration;
use crate::policy::Requester;
use crate::policy::decision::{Context, evaluate_holding};
use crate::request::AccessRequest;
use crate::store::RequestRecord;

impl Workflow {
    /// The requester's teams as the merge's re-check asks them: for a fast path, the rule's
    /// teams asked of the forge now (someone off call a moment ago no longer takes it),
    /// otherwise within a minute. Read in the merge's last round, beside the guard's read of
    /// the PR, so that it costs no round trip on the way to access.
    pub(super) async fn requester_at_merge(
        &self,
        record: &RequestRecord,
    ) -> anyhow::Result<Requester> {
        let (_, policies) = self.load_policies().await?;
        let policies = policies.as_ref().ok();
        let policy = policies.and_then(|p| p.get(record.environment.as_str()));
        let login = &record.requester_login;
        if record.fast_path_rule.is_some() {
            self.resolve_requester_for_fast_path_now(policy, login)
                .await
        } else {
            self.resolve_requester(policy, login).await
        }
    }

    /// Why the default branch's policies as they are now would not merge `record` as it was
    /// decided (denied now, its fast path gone, more approvals needed); `None` when they
    /// would. `labels` are the PR's, as read for the merge, and `requester` is
    /// [`Self::requester_at_merge`].
    pub(super) async fn policy_moved(
        &self,
        record: &RequestRecord,
        labels: &[String],
        requester: &Requester,
    ) -> anyhow::Result<Option<String>> {
        let (_, policies) = self.load_policies().await?;
        let Ok(policies) = policies else {
            return Ok(Some("the default branch's policies are invalid".to_owned()));
        };
        let request = AccessRequest {
            environment: record.environment.clone(),
            role: record.role.clone(),
            duration: Some(HumanDuration::from_secs(record.duration_secs)),
            reason: record.reason.clone(),
            ticket: record.ticket.clone(),
            requester: None,
        };
        // A fast path is held to the requester's grants held meanwhile.
        let held = if record.fast_path_rule.is_some() {
            self.held_grants(record.requester_id, &record.environment, &record.id)
                .await?
        } else {
            Vec::new()
        };
        let ctx = Context {
            requester: Some(requester),
            labels,
            now: self.now(),
            path: None,
        };
        let decision = evaluate_holding(&policies, &request, &ctx, &held);
        if !decision.allowed {
            return Ok(Some(
                "the default branch's policy no longer allows it".to_owned(),
            ));
        }
        let decided_need = stored_decision(record)?.decision.approvals_required;
        let moved = match (&record.fast_path_rule, &decision.fast_path) {
            (Some(_), None) => Some("its fast path no longer applies"),
            (Some(_), Some(fast))
                if fast.block_until_reviewed
                    && self.overdue_review_of(record.requester_id).await?.is_some() =>
            {
                Some("its fast path waits for an overdue review (block_until_reviewed)")
            }
            (None, _) if decision.approvals_required > decided_need => {
                Some("the default branch's policy now asks for more approvals")
            }
            _ => None,
        };
        Ok(moved.map(str::to_owned))
    }
}
