//! Approvals: by reaction (polled: GitHub sends no webhook for reactions), by approving review,
//! or by `/breakglass approve`. Each is bound to the PR head it was given on; the requester
//! never counts; N distinct approvers when the policy asks. Also the after-the-fact review of
//! fast-path grants, which an approver's reaction closes too.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use super::{Workflow, stored_decision};
use crate::command::Command;
use crate::comment;
use crate::forge::Thread;
use crate::forge::{Actor, PullRequestInfo, ReviewState};
use crate::names::{Login, RequestId};
use crate::policy::Policy;
use crate::store::{Approval, ApprovalSource};
use crate::store::{EventKind, ForgeKind, JobKind, PolledCounts};
use crate::store::{RequestRecord, RequestState};

/// Whether an approval attempt counted, and if not, why.
pub(super) enum ApprovalOutcome {
    Counted {
        have: usize,
        need: u32,
    },
    Merging,
    /// The same signal again (a re-poll, a delivery handled again): counted once, with the
    /// count as it stands.
    Repeated {
        have: usize,
        need: u32,
    },
    ByRequester,
    NotApprover {
        approvers: Vec<String>,
    },
    /// Given before the current head was pushed (forge time on both sides).
    Stale,
    /// Within the same second as the push: which version it approves cannot be told.
    Ambiguous,
    /// A GitLab approval whose time GitLab does not say (no `approved_at`): which version it
    /// approves cannot be told.
    Untimed,
    /// The policies on the default branch (named) are invalid: nobody can be checked as an
    /// approver until they are fixed.
    PoliciesInvalid {
        default_branch: String,
    },
}

/// When a signal came, against when the head came, both on the forge's clock and to the second
/// (GitHub gives whole seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timing {
    Current,
    Stale,
    Ambiguous,
}

/// A signal older than a `head_since` that is only a bound (`is_bound`) may still be younger
/// than the push: ambiguous, not stale.
pub(super) fn timing(
    at: DateTime<Utc>,
    head_since: Option<DateTime<Utc>>,
    is_bound: bool,
) -> Timing {
    let Some(since) = head_since else {
        return Timing::Ambiguous;
    };
    match at.timestamp().cmp(&since.timestamp()) {
        std::cmp::Ordering::Greater => Timing::Current,
        std::cmp::Ordering::Equal => Timing::Ambiguous,
        std::cmp::Ordering::Less if is_bound => Timing::Ambiguous,
        std::cmp::Ordering::Less => Timing::Stale,
    }
}

/// How an approver's review given at `at` (forge time) stands against what a fast-path grant
/// gave: after the merged head's push, and after the ask of an extension given since (which
/// the review then covers too).
fn review_timing(stored: &crate::store::StoredDecision, at: DateTime<Utc>) -> Timing {
    let (since, is_bound) = match stored.review_since {
        Some(asked) if Some(asked) > stored.head_since => (Some(asked), false),
        _ => (stored.head_since, stored.head_since_is_bound),
    };
    timing(at, since, is_bound)
}

/// The version `record`'s approvals are of: its head, or, while the head is the expiry commit
/// breakglass wrote in its merge step, the approved head that commit continues (see
/// `StoredDecision::stamp`): the bot's own commit is no new version to approve.
pub(super) fn approval_subject(record: &RequestRecord) -> anyhow::Result<String> {
    let stored = stored_decision(record)?;
    Ok(stored
        .stamp_at(&record.head_sha)
        .map_or_else(|| record.head_sha.clone(), |stamp| stamp.from.clone()))
}

/// One approval signal as the forge shows it.
pub(super) struct Signal<'a> {
    pub actor: &'a Actor,
    pub source: ApprovalSource,
    /// The forge's id: `reaction:<id>`, `review:<id>`, `comment:<id>`.
    pub key: String,
    /// The forge's timestamp; `None` for a review, which names its commit instead.
    pub at: Option<DateTime<Utc>>,
}

/// The signals (`reaction:<id>`, …) the forge still shows, of one kind, with a reaction's emoji.
type Alive = anyhow::Result<Vec<(String, Option<String>)>>;

/// Forgets the PR's kept reaction list when dropped before `done`: a poll that read a changed
/// list and then failed (an approver's team not readable) or was stopped must read it in full
/// again, or the next poll's `304` would hide those emoji until they change.
struct ReadAgainUnlessDone<'a> {
    forge: &'a crate::forge::Forge,
    number: u64,
    done: bool,
}

impl Drop for ReadAgainUnlessDone<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.forge.forget_reactions(self.number);
        }
    }
}

impl Workflow {
    /// Marks the request approved (by `approved_by`, or by its fast-path rule) and starts the
    /// merge. Only now does `breakglass/policy` turn green.
    pub(super) async fn approve(
        &self,
        mut record: RequestRecord,
        approved_by: Option<Vec<Login>>,
    ) -> anyhow::Result<()> {
        record.state = RequestState::Approved;
        record.approved_by = approved_by.clone();
        self.store.update_request(&mut record, self.now()).await?;
        self.store.cancel_job(JobKind::Poll, &record.id).await?;
        // The status turns to success in the merge job, with its last read of the PR: a
        // required status check sees it before the merge, and the way to access is one round
        // trip shorter.
        self.schedule(JobKind::Merge, &record.id, self.now()).await
    }

    /// Counts the approvals bound to the current head and approves when there are enough.
    pub(super) async fn check_approvals(&self, record: RequestRecord) -> anyhow::Result<()> {
        let (approvers, need) = self.counted_approvers(&record).await?;
        if need > 0 && approvers.len() >= need as usize {
            self.approve(record, Some(approvers.into_iter().collect()))
                .await?;
        }
        Ok(())
    }

    /// Distinct approvers (by user id, never the requester) of the current head.
    pub(super) async fn counted_approvers(
        &self,
        record: &RequestRecord,
    ) -> anyhow::Result<(BTreeSet<Login>, u32)> {
        let need = stored_decision(record)?.decision.approvals_required;
        let approvals = self
            .store
            .approvals_for(&record.id, &approval_subject(record)?)
            .await?;
        Ok((distinct_approvers(&approvals, record.requester_id), need))
    }

    /// Why `actor` cannot approve the request, if they cannot: they asked for it, they are a
    /// bot, or its policy does not name them.
    async fn approver_refusal(
        &self,
        record: &RequestRecord,
        actor: &Actor,
    ) -> anyhow::Result<Option<ApprovalOutcome>> {
        if actor.id == record.requester_id {
            return Ok(Some(ApprovalOutcome::ByRequester));
        }
        let nobody = || {
            Some(ApprovalOutcome::NotApprover {
                approvers: Vec::new(),
            })
        };
        // Bots never approve, whatever the channel (a review, GitLab's button): a bot account
        // in an approvers' group is a token someone holds, not a person who looked.
        if actor.is_bot || actor.id == self.bot.id {
            return Ok(nobody());
        }
        let (default_branch, policies) = self.load_policies().await?;
        let Ok(policies) = policies else {
            return Ok(Some(ApprovalOutcome::PoliciesInvalid { default_branch }));
        };
        let Some(policy) = policies.get(record.environment.as_str()) else {
            return Ok(nobody());
        };
        if !self.is_approver(policy, actor).await? {
            return Ok(Some(ApprovalOutcome::NotApprover {
                approvers: policy.approvers.iter().map(ToString::to_string).collect(),
            }));
        }
        Ok(None)
    }

    /// Records an approval signal for the request's current head, if its giver may approve and
    /// it is not older than the head (forge time against forge time).
    pub(super) async fn record_approval(
        &self,
        mut record: RequestRecord,
        signal: Signal<'_>,
    ) -> anyhow::Result<ApprovalOutcome> {
        let actor = signal.actor;
        if let Some(refusal) = self.approver_refusal(&record, actor).await? {
            return Ok(refusal);
        }
        let mut stored = stored_decision(&record)?.clone();
        if let Some(at) = signal.at {
            match timing(at, stored.head_since, stored.head_since_is_bound) {
                Timing::Current => {}
                Timing::Stale => return Ok(ApprovalOutcome::Stale),
                Timing::Ambiguous => return Ok(ApprovalOutcome::Ambiguous),
            }
        }
        let approval = Approval {
            request_id: record.id.clone(),
            signal: signal.key.clone(),
            approver_id: actor.id,
            approver_login: Login::try_from(actor.login.clone()).map_err(anyhow::Error::msg)?,
            source: signal.source,
            head_sha: approval_subject(&record)?,
            approved_at: signal.at.unwrap_or_else(|| self.now()),
        };
        let event = super::events::new_event(
            EventKind::Approval,
            Some(&record.id),
            super::events::actor(actor),
            serde_json::json!({ "source": signal.source.to_string(), "signal": signal.key, "head_sha": approval_subject(&record)? }),
            self.forge_kind(),
        );
        let added = self
            .store
            .add_approval_logged(&approval, &event, self.now())
            .await?;
        if !added {
            self.log_approval_if_missing(&record.id, &signal.key, &event)
                .await?;
        } else if stored.merge_refused.take().is_some() {
            // A new approval is what lets a refused merge be tried again.
            record.decision = Some(stored.clone());
            self.store.update_request(&mut record, self.now()).await?;
        }
        // A repeated signal is counted again too: its first run may have been killed after
        // storing it and before acting on it, and approving is idempotent.
        let (approvers, need) = self.counted_approvers(&record).await?;
        if stored.merge_refused.is_none() && !stored.draft && approvers.len() >= need as usize {
            self.approve(record, Some(approvers.into_iter().collect()))
                .await?;
            return Ok(ApprovalOutcome::Merging);
        }
        if !added {
            // It changes nothing.
            return Ok(ApprovalOutcome::Repeated {
                have: approvers.len(),
                need,
            });
        }
        Ok(ApprovalOutcome::Counted {
            have: approvers.len(),
            need,
        })
    }

    /// Logs a repeated signal's `approval` event if its first run stored the approval
    /// without it (a kill between the two, before they were written together).
    async fn log_approval_if_missing(
        &self,
        id: &RequestId,
        key: &str,
        event: &crate::store::NewEvent,
    ) -> anyhow::Result<()> {
        let logged = self.store.events_for_request(id).await?;
        let seen = logged
            .iter()
            .any(|e| e.kind == EventKind::Approval && e.data["signal"].as_str() == Some(key));
        if !seen {
            tracing::warn!(request = %id, signal = key, "an approval stored without its event; logging it");
            self.store.append_event(event, self.now()).await?;
        }
        Ok(())
    }

    /// Answers an approval attempt that did not (or did not yet) make the merge.
    pub(super) async fn reply_to_approval(
        &self,
        thread: Thread,
        actor: &Actor,
        requester: &Login,
        environment: &str,
        outcome: ApprovalOutcome,
    ) -> anyhow::Result<()> {
        match approval_reply(actor, requester, environment, outcome, self.forge.kind()) {
            Some(text) => self.reply(thread, &text).await,
            None => Ok(()),
        }
    }

    /// An approving review: it counts for the commit it was given on, if that is still the head;
    /// a GitLab approval (`commit_id` `None`) counts when GitLab's own `approved_at` is after
    /// the head's push.
    pub(super) async fn handle_review_approval(
        &self,
        pr: &PullRequestInfo,
        review_id: u64,
        author: &Actor,
        commit_id: Option<&str>,
        submitted_at: Option<DateTime<Utc>>,
    ) -> anyhow::Result<()> {
        let Some(record) = self
            .store
            .find_request_by_pr(self.forge_kind(), &self.settings.repository, pr.number)
            .await?
        else {
            return Ok(());
        };
        let thread = Thread::Change(pr.number);
        match record.state {
            RequestState::Pending => {}
            // Approving what the policy denies or what was closed is answered, as the command
            // is: an approver who approved in the forge's own way is not left waiting.
            RequestState::Denied => {
                let said =
                    super::commands::denied_request_reply("approve", &record, self.forge.kind());
                return self.reply(thread, &said).await;
            }
            RequestState::Closed => {
                let said = comment::not_in_this_state_comment(
                    "approve",
                    record.id.as_str(),
                    record.state,
                    self.forge.kind(),
                );
                return self.reply(thread, &said).await;
            }
            _ => return Ok(()), // nothing to approve
        }
        let Some(commit) = commit_id else {
            return self
                .handle_gitlab_approval(record, pr, review_id, author)
                .await;
        };
        let record = match commit {
            // Its head, or the version the bot's expiry commit at its head continues, whose
            // approvals are the head's (see `approval_subject`).
            c if c == record.head_sha || c == approval_subject(&record)? => record,
            // The PR's head as this event shows it, which the bot has not decided yet: the
            // push's webhook is late. Decided now, the review counts for what it approved.
            c if c == pr.head_sha => {
                let id = record.id.clone();
                self.evaluate_pr(pr.number, Some(record), None).await?;
                match self.store.get_request(&id).await? {
                    Some(now) if now.state == RequestState::Pending && now.head_sha == commit => {
                        now
                    }
                    // The head moved on since (a push handled before this event replaced it).
                    Some(now) if now.state == RequestState::Pending => {
                        return self.answer_stale_review(&now, pr.number, author).await;
                    }
                    _ => return Ok(()),
                }
            }
            // A review of an older version: said, never silently dropped.
            _ => return self.answer_stale_review(&record, pr.number, author).await,
        };
        // A review names its commit, but that commit may have been pushed away and back since
        // (A, B, A): one submitted before the head's latest push (forge time on both sides,
        // strictly older; a bound on the push proves nothing) approved it before it came back.
        if let Some(at) = submitted_at {
            let stored = stored_decision(&record)?;
            if !stored.head_since_is_bound
                && stored
                    .head_since
                    .is_some_and(|since| at.timestamp() < since.timestamp())
            {
                return self.answer_stale_review(&record, pr.number, author).await;
            }
        }
        self.count_review(record, pr.number, review_id, author, None)
            .await
    }

    /// Records `author`'s approving review `review_id` of `record` on PR `number` (timed by
    /// `at` when it names no commit) and answers it.
    async fn count_review(
        &self,
        record: RequestRecord,
        number: u64,
        review_id: u64,
        author: &Actor,
        at: Option<DateTime<Utc>>,
    ) -> anyhow::Result<()> {
        let requester = record.requester_login.clone();
        let environment = record.environment.to_string();
        let signal = Signal {
            actor: author,
            source: ApprovalSource::Review,
            key: format!("review:{review_id}"),
            at,
        };
        let outcome = self.record_approval(record, signal).await?;
        let thread = Thread::Change(number);
        self.reply_to_approval(thread, author, &requester, &environment, outcome)
            .await
    }

    /// A GitLab approval of pending `record`. Its hook names no commit the approval was given
    /// on: GitLab builds it later, from the merge request as it is then. A head the hook shows
    /// that the bot has not decided is caught up with first (the push's webhook is late); then
    /// the approval is timed by GitLab's own `approved_at` against that head's push, as an emoji
    /// is (one read of the approvals). One withdrawn since counts nothing.
    async fn handle_gitlab_approval(
        &self,
        mut record: RequestRecord,
        pr: &PullRequestInfo,
        review_id: u64,
        author: &Actor,
    ) -> anyhow::Result<()> {
        if pr.head_sha != record.head_sha {
            let current = self.forge.change(pr.number).await?;
            let head = current.info.head_sha.clone();
            if head != record.head_sha {
                // Decided at its push's time (GitLab's MR versions say it), so that an approval
                // given after that push counts.
                let at = self.forge.head_pushed_at(pr.number, &head).await?;
                let pushed = at.map(|at| (head, at));
                let id = record.id.clone();
                let announce = pushed.is_some();
                self.evaluate_current(current, Some(record), pushed, None, announce)
                    .await?;
                match self.store.get_request(&id).await? {
                    Some(now) if now.state == RequestState::Pending => record = now,
                    _ => return Ok(()),
                }
            }
        }
        let approvals = self.forge.reviews(pr.number).await?;
        let Some(approval) = approvals.iter().find(|a| a.author.id == author.id) else {
            return Ok(()); // withdrawn since: its `unapproval` follows
        };
        let Some(at) = approval.submitted_at else {
            return self
                .answer_unapproved(&record, pr.number, author, ApprovalOutcome::Untimed)
                .await;
        };
        self.count_review(record, pr.number, review_id, author, Some(at))
            .await
    }

    /// Answers an approving review of a version that is no longer the head: approve again
    /// (or why the reviewer cannot approve at all).
    async fn answer_stale_review(
        &self,
        record: &RequestRecord,
        number: u64,
        author: &Actor,
    ) -> anyhow::Result<()> {
        self.answer_unapproved(record, number, author, ApprovalOutcome::Stale)
            .await
    }

    /// Answers an approval that does not count, with `outcome` (or why the reviewer cannot
    /// approve at all).
    async fn answer_unapproved(
        &self,
        record: &RequestRecord,
        number: u64,
        author: &Actor,
        outcome: ApprovalOutcome,
    ) -> anyhow::Result<()> {
        let outcome = match self.approver_refusal(record, author).await? {
            Some(refusal) => refusal,
            None => outcome,
        };
        let environment = record.environment.to_string();
        let thread = Thread::Change(number);
        self.reply_to_approval(
            thread,
            author,
            &record.requester_login,
            &environment,
            outcome,
        )
        .await
    }

    /// A signal was withdrawn (comment deleted, review dismissed): it no longer counts.
    pub(super) async fn withdraw_signal(&self, number: u64, key: &str) -> anyhow::Result<()> {
        if let Some(record) = self.request_of_pr(number).await? {
            self.withdraw(&record.id, key).await?;
        }
        Ok(())
    }

    /// A comment on `thread` edited: what it gave (an approval, or the requester's ask for
    /// more time) and no longer says is withdrawn, by the rule the check before a merge or an
    /// extension reads it with ([`still_approves`]): an approval edited away no longer counts,
    /// and an ask edited to another duration asks nothing any more.
    pub(super) async fn withdraw_edited_away(
        &self,
        thread: Thread,
        comment_id: u64,
        body: &str,
    ) -> anyhow::Result<()> {
        let Some(record) = self.request_on(thread).await? else {
            return Ok(());
        };
        let key = format!("comment:{comment_id}");
        let given = self
            .store
            .approvals_with_subject_prefix(&record.id, "")
            .await?;
        if given
            .iter()
            .any(|a| a.signal == key && !still_approves(body, a))
        {
            self.withdraw(&record.id, &key).await?;
        }
        Ok(())
    }

    /// Withdraws every approving review that `author` gave on PR `number` (a later review of
    /// theirs asked for changes).
    pub(super) async fn withdraw_reviews_of(&self, number: u64, author: u64) -> anyhow::Result<()> {
        let Some(record) = self.request_of_pr(number).await? else {
            return Ok(());
        };
        let approvals = self
            .store
            .approvals_for(&record.id, &approval_subject(&record)?)
            .await?;
        for approval in approvals
            .iter()
            .filter(|a| a.source == ApprovalSource::Review && a.approver_id == author)
        {
            self.withdraw(&record.id, &approval.signal).await?;
        }
        Ok(())
    }

    pub(super) async fn request_of_pr(&self, number: u64) -> anyhow::Result<Option<RequestRecord>> {
        Ok(self
            .store
            .find_request_by_pr(self.forge_kind(), &self.settings.repository, number)
            .await?)
    }

    /// Forgets one approval signal, logged once.
    pub(super) async fn withdraw(&self, id: &RequestId, key: &str) -> anyhow::Result<()> {
        if self.store.withdraw_approval(id, key).await? {
            self.record_event(
                EventKind::ApprovalWithdrawn,
                Some(id),
                None,
                serde_json::json!({ "signal": key }),
            )
            .await?;
        }
        Ok(())
    }

    /// Right before a merge: the stored approvals of the head, each checked against the forge
    /// (the reaction still there, the review not dismissed, the comment not deleted); the
    /// withdrawn ones are removed. `Some((have, need))` when too few are left; otherwise the
    /// record's `approved_by` is set from the live ones.
    pub(super) async fn live_approvals(
        &self,
        record: &mut RequestRecord,
    ) -> anyhow::Result<Option<(usize, u32)>> {
        let stored = stored_decision(record)?;
        let need = stored.decision.approvals_required;
        if need == 0 {
            return Ok(None);
        }
        // A head whose expiry breakglass wrote in this merge step continues the version that
        // was approved (see `StoredDecision::stamp`).
        let version = stored
            .stamp_at(&record.head_sha)
            .map_or(record.head_sha.as_str(), |stamp| stamp.from.as_str())
            .to_owned();
        let approvals = self.store.approvals_for(&record.id, &version).await?;
        // Approvers as the default branch's policy names them now: one taken off it since
        // approving no longer counts. Asked of the forge while it is asked which signals
        // stand, all at once: no round trip more before the merge.
        let (_, policies) = self.load_policies().await?;
        let policies = policies.map_err(|problems| {
            anyhow::anyhow!("the policies are invalid: {} problem(s)", problems.len())
        })?;
        let policy = policies.get(record.environment.as_str());
        let (alive, approvers_now) = tokio::join!(
            self.signals_alive(record.pr_number, &approvals),
            self.approvers_now(policy, &approvals)
        );
        let (alive, approvers_now) = (alive?, approvers_now?);
        let mut live = Vec::new();
        for approval in approvals {
            let Some(emoji) = alive.get(&approval.signal) else {
                self.store
                    .withdraw_approval(&record.id, &approval.signal)
                    .await?;
                continue;
            };
            // A reaction counts only while the policy takes its emoji as an approval.
            if let Some(emoji) = emoji
                && policy.is_none_or(|p| !p.approval_reactions.contains(emoji))
            {
                continue;
            }
            if approvers_now.contains(&approval.approver_id) {
                live.push(approval);
            }
        }
        let approvers = distinct_approvers(&live, record.requester_id);
        if approvers.len() < need as usize {
            return Ok(Some((approvers.len(), need)));
        }
        record.approved_by = Some(approvers.into_iter().collect());
        Ok(None)
    }

    /// The ids of the people behind `approvals` whom `policy` names as approvers now (each
    /// asked of the forge, all at once); none without a policy.
    async fn approvers_now(
        &self,
        policy: Option<&Policy>,
        approvals: &[crate::store::Approval],
    ) -> anyhow::Result<BTreeSet<u64>> {
        let Some(policy) = policy else {
            return Ok(BTreeSet::new());
        };
        let mut people: Vec<Actor> = approvals
            .iter()
            .map(|approval| Actor {
                id: approval.approver_id,
                login: approval.approver_login.to_string(),
                is_bot: false,
            })
            .collect();
        people.sort_by_key(|actor| actor.id);
        people.dedup_by_key(|actor| actor.id);
        let asked = people
            .iter()
            .map(|actor| self.is_approver_now(policy, actor));
        let answers = futures_util::future::try_join_all(asked).await?;
        Ok(people
            .iter()
            .zip(answers)
            .filter(|(_, approver)| *approver)
            .map(|(actor, _)| actor.id)
            .collect())
    }

    /// Which of `approvals` the forge still shows on PR `number` (the reaction there, the review
    /// not dismissed, the comment not deleted), by signal, with each reaction's emoji. Only the
    /// kinds of signal given are read, all at once.
    pub(super) async fn signals_alive(
        &self,
        number: u64,
        approvals: &[crate::store::Approval],
    ) -> anyhow::Result<BTreeMap<String, Option<String>>> {
        let given = |source| approvals.iter().any(|a| a.source == source);
        let reactions = async {
            if !given(ApprovalSource::Reaction) {
                return Ok(Vec::new());
            }
            Ok(self
                .forge
                .reactions(number)
                .await?
                .into_iter()
                .map(|r| (format!("reaction:{}", r.id), Some(r.content)))
                .collect())
        };
        let reviews = async {
            if !given(ApprovalSource::Review) {
                return Ok(Vec::new());
            }
            Ok(standing_approvals(self.forge.reviews(number).await?)
                .into_iter()
                .map(|signal| (signal, None))
                .collect())
        };
        let comments = async {
            let mut alive = Vec::new();
            for approval in approvals
                .iter()
                .filter(|a| a.source == ApprovalSource::Comment)
            {
                let id = approval
                    .signal
                    .strip_prefix("comment:")
                    .and_then(|id| id.parse().ok());
                if let Some(id) = id
                    && let Some(body) = self.forge.note_body(Thread::Change(number), id).await?
                    && still_approves(&body, approval)
                {
                    alive.push((approval.signal.clone(), None));
                }
            }
            Ok(alive)
        };
        let (reactions, reviews, comments): (Alive, Alive, Alive) =
            tokio::join!(reactions, reviews, comments);
        Ok(reactions?
            .into_iter()
            .chain(reviews?)
            .chain(comments?)
            .collect())
    }

    /// A call about `record`'s PR answered 404 (`err`): when the PR itself no longer exists (a
    /// GitLab owner may delete a merge request), nothing is left to poll or merge, and a request
    /// still waiting for its merge is closed (it would count against its requester's open
    /// requests, and its jobs fail, forever); otherwise `err` stands.
    pub(super) async fn close_if_deleted(
        &self,
        mut record: RequestRecord,
        err: anyhow::Error,
    ) -> anyhow::Result<()> {
        if self.forge.change_if_any(record.pr_number).await?.is_some() {
            return Err(err);
        }
        tracing::warn!(request = %record.id, pr = record.pr_number, "the request's PR was deleted");
        if matches!(record.state, RequestState::Pending | RequestState::Approved) {
            let data = serde_json::json!({ "deleted": true });
            self.close_request(&mut record, data, None).await?;
        }
        Ok(())
    }

    /// The reaction poll: approvals of pending requests and of extensions asked for, reviews
    /// of fast-path grants.
    pub(super) async fn job_poll(&self, id: &RequestId) -> anyhow::Result<()> {
        let Some(record) = self.store.get_request(id).await? else {
            return Ok(());
        };
        let Some(awaiting) = self.awaits_emoji(&record).await? else {
            self.forge.done_polling(record.pr_number);
            self.caches.asks_changed(record.pr_number, BTreeSet::new());
            if record.state == RequestState::Active && record.total_secs > record.duration_secs {
                // Extended, maybe by an emoji in an earlier run of this job that failed after
                // the new expiry was stored: its timers and its note are made sure of.
                self.extension_timers(&record).await?;
                self.announce_extension(&record).await?;
            }
            return Ok(()); // nothing to poll for any more
        };
        let mut read_again = ReadAgainUnlessDone {
            forge: &self.forge,
            number: record.pr_number,
            done: false,
        };
        let end = self.poll_change(&record).await?;
        read_again.done = true;
        if end == PollEnd::Done {
            self.forge.done_polling(record.pr_number);
            self.caches.asks_changed(record.pr_number, BTreeSet::new());
            return Ok(());
        }
        let spacing = self.poll_spacing(awaiting).await;
        let spacing = dephased(spacing, self.settings.poll_interval, rand::random());
        let spacing = chrono::TimeDelta::from_std(spacing);
        let next = self.now() + spacing.unwrap_or(chrono::TimeDelta::days(1));
        self.schedule(JobKind::Poll, id, next).await?;
        // Scheduled first: a failed read of the comment's emoji fails this run, but the next
        // poll keeps its time instead of the backoff, so the PR's own emoji are still read
        // every interval.
        self.poll_latest_note(record.pr_number).await
    }

    /// How long until the next poll of a PR awaiting `awaiting`: [`poll_spacing`] with the PRs
    /// polled now on this forge, every replica's (each has a `poll` job). Not known (the
    /// database did not answer): the configured interval.
    async fn poll_spacing(&self, awaiting: Awaiting) -> std::time::Duration {
        let settings = &self.settings;
        match self.store.count_polled(self.forge.kind()).await {
            Ok(polled) => poll_spacing(
                settings.poll_interval,
                polled,
                settings.poll_budget,
                awaiting,
            ),
            Err(err) => {
                tracing::warn!(%err, "cannot count the PRs polled; polling at the interval");
                settings.poll_interval
            }
        }
    }

    /// What an emoji on `record`'s PR would settle now, if anything: an approval (of the
    /// pending request, or of the extension its requester asked for) before a review.
    async fn awaits_emoji(&self, record: &RequestRecord) -> anyhow::Result<Option<Awaiting>> {
        Ok(
            if record.state == RequestState::Pending || self.extension_asked(record).await? {
                Some(Awaiting::Approval)
            } else if awaits_review(record) {
                Some(Awaiting::Review)
            } else {
                None
            },
        )
    }

    /// One poll of the emoji on `record`'s change (pending, awaiting its review, or an
    /// extension's approval).
    async fn poll_change(&self, record: &RequestRecord) -> anyhow::Result<PollEnd> {
        let pending = record.state == RequestState::Pending;
        if record.state == RequestState::Active {
            let asks = self.extension_ask_signals(record).await?;
            if self.caches.asks_changed(record.pr_number, asks) {
                // An emoji read before the ask was stored (its webhook late, another replica)
                // could not approve it; an unchanged list would not be read again.
                self.forge.forget_reactions(record.pr_number);
            }
        }
        let reactions = match self.forge.reactions_if_changed(record.pr_number).await {
            Err(err) if err.status() == Some(404) => {
                self.close_if_deleted(record.clone(), err.into()).await?;
                return Ok(PollEnd::Done);
            }
            answer => answer?,
        };
        let Some(reactions) = reactions else {
            return Ok(PollEnd::Again);
        };
        if !pending && reactions.is_empty() {
            // Nobody reacted: no reviewer or approver to look up in the policies.
            return Ok(PollEnd::Again);
        }
        let Some(policies) = self
            .policies_to_judge_emoji(record, !reactions.is_empty())
            .await?
        else {
            return Ok(PollEnd::Again);
        };
        let Some(policy) = policies.get(record.environment.as_str()) else {
            return Ok(PollEnd::Done);
        };
        if pending {
            self.withdraw_removed_reactions(record, &reactions).await?;
        }
        // Every emoji is considered until one settles all there was to poll for: an unchanged
        // list is not read again (its ETag), so one left for later would be missed.
        for reaction in &reactions {
            let current = self
                .store
                .get_request(&record.id)
                .await?
                .context("request vanished")?;
            if self.awaits_emoji(&current).await?.is_none() {
                return Ok(PollEnd::Done);
            }
            self.consider_reaction(current, policy, reaction).await?;
        }
        let current = self.store.get_request(&record.id).await?;
        Ok(match current {
            Some(current) if self.awaits_emoji(&current).await?.is_some() => PollEnd::Again,
            _ => PollEnd::Done,
        })
    }

    /// The policies to judge the emoji a poll just read on `record`'s PR (`any`: some were
    /// there); `None` while they are invalid. Those emoji then wait for valid policies: a
    /// pending PR with some is told why once and decided again when a push fixes them (its
    /// emoji read again then); any other's next poll reads them all again.
    async fn policies_to_judge_emoji(
        &self,
        record: &RequestRecord,
        any: bool,
    ) -> anyhow::Result<Option<crate::policy::PolicySet>> {
        let (default_branch, policies) = self.load_policies().await?;
        let problems = match policies {
            Ok(policies) => return Ok(Some(policies)),
            Err(problems) => problems,
        };
        let number = record.pr_number;
        if !any {
            return Ok(None);
        }
        if record.state != RequestState::Pending {
            self.forge.forget_reactions(number);
        } else if self.caches.await_valid_policies(number) {
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            let text = comment::invalid_policies_comment(&default_branch, &list, self.forge.kind());
            self.forge.note(Thread::Change(number), &text).await?;
        }
        Ok(None)
    }

    /// The emoji on the bot's latest note on change `number` (GitHub: polled, as it sends no
    /// event for them; see `reaction_etags`), each answered as GitLab's event for one is.
    async fn poll_latest_note(&self, number: u64) -> anyhow::Result<()> {
        let Some(reactions) = self.forge.latest_note_reactions_if_changed(number).await? else {
            return Ok(());
        };
        for reaction in &reactions {
            self.emoji_on_a_note(number, self.bot.id, &reaction.content, &reaction.user)
                .await?;
        }
        Ok(())
    }

    /// One emoji on a request's change: an approval of a pending request or of the extension an
    /// active grant's requester asked for, or the review of a fast-path grant.
    async fn consider_reaction(
        &self,
        mut record: RequestRecord,
        policy: &crate::policy::Policy,
        reaction: &crate::forge::Reaction,
    ) -> anyhow::Result<()> {
        if !policy.approval_reactions.contains(&reaction.content)
            || reaction.user.id == record.requester_id
            || reaction.user.is_bot
            || reaction.user.id == self.bot.id
        {
            return Ok(());
        }
        if record.state == RequestState::Active
            && self
                .reaction_approves_extension(&record, policy, reaction)
                .await?
        {
            // Extended: a fast-path grant's review (below) is of the record as it is now.
            let Some(extended) = self.store.get_request(&record.id).await? else {
                return Ok(());
            };
            record = extended;
        }
        if awaits_review(&record) {
            // Asked of the forge now, as for a merge: a review is the approvers' word on a
            // grant nobody approved, and an approver taken off a team a moment ago has none.
            if !self.is_approver_now(policy, &reaction.user).await? {
                return Ok(());
            }
            // A review is of what was merged: an emoji on an older version (before the push of
            // the merged head, forge time on both sides) reviewed something else.
            let key = format!("reaction:{}", reaction.id);
            let stored = stored_decision(&record)?;
            return match review_timing(stored, reaction.created_at) {
                Timing::Current => self.mark_reviewed(record, &reaction.user).await,
                Timing::Stale => Ok(()),
                Timing::Ambiguous => self.ask_once(&record, &reaction.user, &key).await,
            };
        }
        if record.state == RequestState::Denied && self.is_approver(policy, &reaction.user).await? {
            // An approver's emoji on what the policy denies is answered, as the command and the
            // forge's own approval are (once: the emoji may be toggled).
            let said = super::commands::denied_request_reply("approve", &record, self.forge.kind());
            self.note_once(Thread::Change(record.pr_number), &said, &said)
                .await?;
        }
        if record.state != RequestState::Pending {
            return Ok(());
        }
        let signal = Signal {
            actor: &reaction.user,
            source: ApprovalSource::Reaction,
            key: format!("reaction:{}", reaction.id),
            at: Some(reaction.created_at),
        };
        let key = signal.key.clone();
        let asked = record.clone();
        match self.record_approval(record, signal).await? {
            // Too close to the push to tell: ask, once per reaction. (A reaction from before
            // the push approved the older version: the push voided it.)
            ApprovalOutcome::Ambiguous => self.ask_once(&asked, &reaction.user, &key).await?,
            // Said as a comment's approval is: the approver sees it counted and how many more
            // are needed. Once per approver and version: the next poll finds the approval
            // stored (`Repeated`), and an approver who approved this version before (by a
            // comment, or by an emoji taken back and put on again) is not answered again.
            ApprovalOutcome::Counted { have, need }
                if self.first_approval_of(&asked, &reaction.user).await? =>
            {
                let text = comment::approval_recorded_comment(&reaction.user.login, have, need);
                self.forge
                    .note(Thread::Change(asked.pr_number), &text)
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether the approval `who` just gave `record`'s head is their first of that head, by
    /// the event log (which keeps withdrawn approvals too).
    async fn first_approval_of(&self, record: &RequestRecord, who: &Actor) -> anyhow::Result<bool> {
        let logged = self.store.events_for_request(&record.id).await?;
        let subject = approval_subject(record)?;
        let given = logged.iter().filter(|e| {
            e.kind == EventKind::Approval
                && e.actor.as_ref().is_some_and(|a| a.id == who.id)
                && e.data["head_sha"].as_str() == Some(subject.as_str())
        });
        Ok(given.count() <= 1)
    }

    /// An emoji put on a change as it happened (GitLab's Emoji Hook): judged as the poll
    /// would judge it.
    pub(super) async fn handle_reaction_added(
        &self,
        number: u64,
        reaction: &crate::forge::Reaction,
    ) -> anyhow::Result<()> {
        let Some(record) = self
            .store
            .find_request_by_pr(self.forge_kind(), &self.settings.repository, number)
            .await?
        else {
            return Ok(());
        };
        let (default_branch, policies) = self.load_policies().await?;
        let Ok(policies) = policies else {
            // Nobody can be checked as an approver: a 👍 on a pending request is answered
            // (the delivery is not retried without end); other emoji mean nothing yet.
            if record.state != RequestState::Pending || reaction.content != "+1" {
                return Ok(());
            }
            let text = comment::approval_unchecked_comment(&reaction.user.login, &default_branch);
            self.forge.note(Thread::Change(number), &text).await?;
            return Ok(());
        };
        let Some(policy) = policies.get(record.environment.as_str()) else {
            return Ok(());
        };
        self.consider_reaction(record, policy, reaction).await
    }

    /// An emoji on a note of change `number` (GitLab tells; on GitHub the poll reads those on
    /// the bot's latest comment): never an approval. An approver's approval emoji on the bot's
    /// own note, while the request awaits an approval (its own, or an extension's) or a review,
    /// is answered with where it counts (not again while that answer is the bot's latest note:
    /// the emoji may be toggled). Anyone else's gets nothing, so that an outsider's emoji
    /// cannot make the bot talk.
    pub(super) async fn emoji_on_a_note(
        &self,
        number: u64,
        note_author_id: u64,
        content: &str,
        user: &Actor,
    ) -> anyhow::Result<()> {
        if note_author_id != self.bot.id || user.is_bot || user.id == self.bot.id {
            return Ok(());
        }
        let repo = &self.settings.repository;
        let Some(record) = self
            .store
            .find_request_by_pr(self.forge_kind(), repo, number)
            .await?
        else {
            return Ok(());
        };
        let awaiting = if record.state == RequestState::Pending {
            comment::EmojiAwaited::Approval
        } else if self.extension_asked(&record).await? {
            comment::EmojiAwaited::Extension
        } else if awaits_review(&record) {
            comment::EmojiAwaited::Review
        } else {
            return Ok(());
        };
        if user.id == record.requester_id {
            return Ok(());
        }
        let (_, Ok(policies)) = self.load_policies().await? else {
            return Ok(());
        };
        let Some(policy) = policies.get(record.environment.as_str()) else {
            return Ok(());
        };
        if !policy.approval_reactions.iter().any(|r| r == content)
            || !self.is_approver(policy, user).await?
        {
            return Ok(());
        }
        let text =
            comment::emoji_on_a_note_comment(&user.login, content, awaiting, self.forge.kind());
        self.note_unless_latest(Thread::Change(number), &text).await
    }

    /// Reaction approvals whose reaction is gone no longer count.
    async fn withdraw_removed_reactions(
        &self,
        record: &RequestRecord,
        reactions: &[crate::forge::Reaction],
    ) -> anyhow::Result<()> {
        let present: BTreeSet<String> = reactions
            .iter()
            .map(|r| format!("reaction:{}", r.id))
            .collect();
        for approval in self
            .store
            .approvals_for(&record.id, &approval_subject(record)?)
            .await?
        {
            if approval.source == ApprovalSource::Reaction && !present.contains(&approval.signal) {
                self.withdraw_signal(record.pr_number, &approval.signal)
                    .await?;
            }
        }
        Ok(())
    }

    /// Asks `actor` to approve (or, for a fast-path grant, review) again, once per signal (the
    /// event log remembers).
    pub(super) async fn ask_once(
        &self,
        record: &RequestRecord,
        actor: &Actor,
        key: &str,
    ) -> anyhow::Result<()> {
        // A fast-path grant's review closes only by an emoji or `/breakglass reviewed`: the
        // reply names those, not the approval ways that would answer "nothing to approve".
        let text = if awaits_review(record) {
            comment::emoji_review_again_comment(&actor.login)
        } else {
            comment::approve_again_comment(&actor.login, false, self.forge.kind())
        };
        let answer = (EventKind::ApprovalAmbiguous, key);
        self.answer_once(record, actor, answer, &text).await
    }

    /// Says `text` on `record`'s PR in answer to `actor`'s signal `key` (an emoji, read again
    /// at every poll that finds the PR's emoji changed), once: the event log keeps the answer
    /// as a `kind` event, for every replica.
    pub(super) async fn answer_once(
        &self,
        record: &RequestRecord,
        actor: &Actor,
        (kind, key): (EventKind, &str),
        text: &str,
    ) -> anyhow::Result<()> {
        let asked = self
            .store
            .events_for_request(&record.id)
            .await?
            .iter()
            .any(|e| e.kind == kind && e.data.get("signal").and_then(|v| v.as_str()) == Some(key));
        if asked {
            return Ok(());
        }
        self.record_event(
            kind,
            Some(&record.id),
            super::events::actor(actor),
            serde_json::json!({ "signal": key }),
        )
        .await?;
        self.forge
            .note(Thread::Change(record.pr_number), text)
            .await?;
        Ok(())
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
            EventKind::Review,
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
            .note(
                Thread::Change(record.pr_number),
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
        let policy = policies
            .as_ref()
            .ok()
            .and_then(|p| p.get(record.environment.as_str()));
        let approvers: Vec<String> = policy
            .map(|policy| policy.approvers.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        let reactions = policy.map_or_else(
            || vec!["+1".to_owned()],
            |policy| policy.approval_reactions.clone(),
        );
        self.forge
            .add_label(record.pr_number, super::REVIEW_OVERDUE_LABEL)
            .await?;
        let text = comment::review_overdue_comment(
            record.requester_login.as_str(),
            record.environment.as_str(),
            record.role.as_str(),
            due,
            &approvers,
            &reactions,
            self.forge.kind(),
        );
        self.forge
            .note(Thread::Change(record.pr_number), &text)
            .await?;
        self.metrics
            .inc("breakglass_anomalies_total", "kind=\"review_overdue\"");
        self.record_event(
            EventKind::ReviewOverdue,
            Some(id),
            None,
            serde_json::json!({ "due": crate::clock::iso(due) }),
        )
        .await
    }

    /// The request of `requester` whose fast-path review is overdue, if any: an active one
    /// first, then one being revoked, then a revoked one. One indexed query.
    pub(super) async fn overdue_review_of(
        &self,
        requester_id: u64,
    ) -> anyhow::Result<Option<RequestId>> {
        let overdue = self.store.overdue_reviews(requester_id, self.now()).await?;
        let rank = |state| match state {
            RequestState::Active => 0,
            RequestState::Revoking => 1,
            _ => 2,
        };
        // Stable: within a state, the oldest first, as the store returned them.
        Ok(overdue
            .into_iter()
            .filter(|record| self.owns(record))
            .min_by_key(|record| rank(record.state))
            .map(|record| record.id))
    }
}

/// How a poll of a change's emoji ended: polled again later, or nothing left to poll.
#[derive(Debug, PartialEq, Eq)]
enum PollEnd {
    Again,
    Done,
}

/// The distinct approvers among `approvals`, by user id, never the requester.
fn distinct_approvers(approvals: &[Approval], requester_id: u64) -> BTreeSet<Login> {
    let mut ids = BTreeSet::new();
    approvals
        .iter()
        .filter(|a| a.approver_id != requester_id && ids.insert(a.approver_id))
        .map(|a| a.approver_login.clone())
        .collect()
}

/// Whether the comment behind `approval` still gives it, reading `body` now: `/breakglass
/// approve`, or for an extension (subject `extend:…+<secs>s`) also `/breakglass extend` of
/// that very duration.
/// A body that now also denies says neither, as a new comment saying both would.
fn still_approves(body: &str, approval: &Approval) -> bool {
    let extension_secs = super::extend::extension_secs(&approval.head_sha);
    let commands = crate::command::parse_commands(body);
    if commands
        .iter()
        .any(|c| matches!(c, Ok(Command::Deny { .. })))
    {
        return false;
    }
    commands
        .iter()
        .any(|command| match (command, extension_secs) {
            (Ok(Command::Approve), _) => true,
            (Ok(Command::Extend { duration }), Some(secs)) => duration.as_secs() == secs,
            _ => false,
        })
}

fn awaits_review(record: &RequestRecord) -> bool {
    record.fast_path_rule.is_some()
        && record.reviewed_at.is_none()
        && matches!(
            record.state,
            RequestState::Active | RequestState::Revoking | RequestState::Revoked
        )
}

/// The approving reviews that still stand, as signals: each reviewer's latest review that is
/// not a plain comment, when it approves. A later review asking for changes (or a dismissal)
/// takes an approval back, as on GitHub. `reviews` come in the order they were submitted.
fn standing_approvals(reviews: Vec<crate::forge::Review>) -> Vec<String> {
    standing_reviews(reviews)
        .into_iter()
        .map(|r| format!("review:{}", r.id))
        .collect()
}

/// The approving reviews that stand: each reviewer's latest review that is not a comment,
/// when it approves.
pub(super) fn standing_reviews(reviews: Vec<crate::forge::Review>) -> Vec<crate::forge::Review> {
    let mut latest = std::collections::BTreeMap::new();
    for review in reviews {
        if review.state != ReviewState::Commented {
            latest.insert(review.author.id, review);
        }
    }
    latest
        .into_values()
        .filter(|r| r.state == ReviewState::Approved)
        .collect()
}

/// The answer to an approval attempt that did not (or did not yet) make the merge, by
/// `actor` on `requester`'s request for `environment`; `None` when there is nothing to say.
fn approval_reply(
    actor: &Actor,
    requester: &Login,
    environment: &str,
    outcome: ApprovalOutcome,
    forge: ForgeKind,
) -> Option<String> {
    Some(match outcome {
        ApprovalOutcome::ByRequester => comment::self_approval_comment(requester.as_str()),
        ApprovalOutcome::NotApprover { approvers } => {
            comment::not_an_approver_comment(&actor.login, environment, &approvers)
        }
        ApprovalOutcome::Counted { have, need } => {
            comment::approval_recorded_comment(&actor.login, have, need)
        }
        ApprovalOutcome::Stale => comment::approve_again_comment(&actor.login, true, forge),
        ApprovalOutcome::Ambiguous => comment::approve_again_comment(&actor.login, false, forge),
        ApprovalOutcome::Untimed => comment::untimed_approval_comment(&actor.login),
        ApprovalOutcome::PoliciesInvalid { default_branch } => {
            comment::approval_unchecked_comment(&actor.login, &default_branch)
        }
        ApprovalOutcome::Merging | ApprovalOutcome::Repeated { .. } => return None,
    })
}

/// A poll's next turn `spacing` away, when its budget spaces the polls out: drawn between half
/// and one and a half times it (`unit`, drawn in [0, 1), picks where). Polls that fell due
/// together (all of them after a restart) would otherwise stay together, each round's reads in
/// one burst; drawn anew each round, they spread over the spacing within a round, and a PR is
/// still polled every `spacing` on average. At the interval itself, polls keep their time.
fn dephased(
    spacing: std::time::Duration,
    interval: std::time::Duration,
    unit: f64,
) -> std::time::Duration {
    if spacing <= interval {
        return spacing;
    }
    spacing.mul_f64(0.5 + unit.clamp(0.0, 1.0))
}

/// The longest [`poll_spacing`] a budget makes.
const MAX_POLL_SPACING: std::time::Duration = std::time::Duration::from_secs(86_400);

/// Reaction reads each poll of a PR makes: its own emoji and those on the bot's latest comment
/// there (each conditional: a `304` is free of the primary rate limit, not of the secondary).
const READS_PER_POLL: u64 = 2;

/// What a poll waits for: it decides how soon its PR is polled again once the polls of all
/// PRs are more than their budget allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Awaiting {
    /// An approval, of a pending request or of the extension an active grant's requester
    /// asked for: someone is waiting for access.
    Approval,
    /// A fast-path grant's retroactive review: it has a day, and a comment or an approving
    /// review is heard at once anyway.
    Review,
}

/// The time between two polls of one PR awaiting `awaiting` when `polled` PRs are polled:
/// `interval`, or longer when their reads at that interval would pass `budget` a minute, so
/// that their polls together keep within it on average (GitHub's secondary limit of 900 points
/// a minute counts every request, a free `304` too). Approvals come first: their polls may take
/// nine tenths of the budget, all of it while no review is polled; reviews have what approvals
/// leave, at least a tenth. Unreviewed grants pile up over weeks and must not slow the notice
/// of an approval at 2 a.m. At most a day: a pending request is closed by then anyway.
fn poll_spacing(
    interval: std::time::Duration,
    polled: PolledCounts,
    budget: std::num::NonZeroU32,
    awaiting: Awaiting,
) -> std::time::Duration {
    let budget = f64::from(budget.get());
    let approvals_share = if polled.reviews == 0 {
        budget
    } else {
        budget * 0.9
    };
    let (prs, share) = match awaiting {
        Awaiting::Approval => (polled.approvals, approvals_share),
        Awaiting::Review => {
            let approvals_use = reads_a_minute(polled.approvals, interval).min(approvals_share);
            (polled.reviews, budget - approvals_use)
        }
    };
    spacing_within(interval, prs, share)
}

/// The reads a minute of `prs` PRs each polled every `every`.
fn reads_a_minute(prs: u64, every: std::time::Duration) -> f64 {
    (prs as f64) * (READS_PER_POLL as f64) * 60.0 / every.as_secs_f64()
}

/// The spacing that keeps the polls of `prs` PRs within `share` reads a minute (positive), never
/// shorter than `interval` nor longer than [`MAX_POLL_SPACING`].
fn spacing_within(interval: std::time::Duration, prs: u64, share: f64) -> std::time::Duration {
    if reads_a_minute(prs, interval) <= share {
        return interval;
    }
    // Rounded up: rounded down, the polls together would read a little over their share.
    let spread_ms = ((prs as f64) * (READS_PER_POLL as f64) * 60_000.0 / share).ceil();
    let spread = std::time::Duration::from_millis(spread_ms as u64).min(MAX_POLL_SPACING);
    interval.max(spread)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use chrono::TimeZone;

    use super::*;

    fn approvals(approvals: u64) -> PolledCounts {
        PolledCounts {
            approvals,
            reviews: 0,
        }
    }

    /// Up to the budget each PR is polled at the interval; past it, the polls spread so that
    /// all of them together read no more than the budget a minute.
    #[test]
    fn polls_stay_within_their_budget_however_many_prs_are_polled() {
        use std::time::Duration;
        let (interval, budget) = (Duration::from_secs(30), NonZeroU32::new(450).unwrap());
        let spacing = |polled| poll_spacing(interval, polled, budget, Awaiting::Approval);
        assert_eq!(spacing(approvals(0)), interval);
        assert_eq!(spacing(approvals(112)), interval, "448 reads a minute");
        for polled in [113, 1_000, 100_000] {
            let spacing = spacing(approvals(polled));
            assert!(spacing > interval, "{polled}: {spacing:?}");
            let reads = reads_a_minute(polled, spacing);
            assert!(reads <= 450.0, "{polled}: {reads}");
            assert!(reads > 449.0, "{polled}: no slower than needed");
        }
        let one_a_minute = NonZeroU32::new(1).unwrap();
        let spacing = poll_spacing(interval, approvals(3), one_a_minute, Awaiting::Approval);
        assert_eq!(spacing, Duration::from_secs(360), "6 reads, one a minute");
        assert_eq!(
            poll_spacing(
                interval,
                approvals(u64::MAX),
                one_a_minute,
                Awaiting::Approval
            ),
            MAX_POLL_SPACING
        );
        // A longer interval (GitLab's five minutes) wins until the budget asks for more.
        let five_minutes = Duration::from_secs(300);
        let gitlab = |polled| poll_spacing(five_minutes, polled, budget, Awaiting::Approval);
        assert_eq!(gitlab(approvals(1_000)), five_minutes);
        assert!(gitlab(approvals(1_200)) > five_minutes);
    }

    /// Grants awaiting their review share the budget with pending requests, but an approval
    /// is noticed first: reviews are slowed before approvals are, and approvals keep nine
    /// tenths of the budget however many grants went unreviewed; together they stay within it.
    #[test]
    fn polls_for_an_approval_come_before_polls_for_a_review() {
        use std::time::Duration;
        let (interval, budget) = (Duration::from_secs(30), NonZeroU32::new(450).unwrap());
        let spacing = |approvals, reviews, awaiting| {
            let polled = PolledCounts { approvals, reviews };
            poll_spacing(interval, polled, budget, awaiting)
        };
        // Within the budget together: both at the interval.
        assert_eq!(spacing(100, 12, Awaiting::Approval), interval);
        assert_eq!(spacing(100, 12, Awaiting::Review), interval);
        // 10 pending requests beside 5,000 unreviewed grants: approvals still every 30 s (40
        // reads a minute), the reviews share the other 410.
        assert_eq!(spacing(10, 5_000, Awaiting::Approval), interval);
        let reviews = spacing(10, 5_000, Awaiting::Review);
        let reads = reads_a_minute(10, interval) + reads_a_minute(5_000, reviews);
        assert!(449.0 < reads && reads <= 450.0, "{reviews:?}: {reads}");
        // More pending requests than nine tenths of the budget allows: they are spaced to it,
        // the reviews have the last tenth.
        let pending = spacing(1_000, 5_000, Awaiting::Approval);
        assert!(pending > interval, "{pending:?}");
        let approvals_reads = reads_a_minute(1_000, pending);
        assert!(
            404.0 < approvals_reads && approvals_reads <= 405.0,
            "{approvals_reads}"
        );
        let reviews = spacing(1_000, 5_000, Awaiting::Review);
        let reviews_reads = reads_a_minute(5_000, reviews);
        assert!(
            44.0 < reviews_reads && reviews_reads <= 45.0,
            "{reviews_reads}"
        );
        // With no review polled, the approvals have the whole budget, and the other way round.
        let alone = spacing(1_000, 0, Awaiting::Approval);
        assert!(reads_a_minute(1_000, alone) > 449.0, "{alone:?}");
        let alone = spacing(0, 1_000, Awaiting::Review);
        assert!(reads_a_minute(1_000, alone) > 449.0, "{alone:?}");
    }

    /// Spaced out by their budget, polls are drawn between half and one and a half times the
    /// spacing; at the interval they keep their time.
    #[test]
    fn polls_spaced_by_their_budget_are_dephased() {
        use std::time::Duration;
        let (interval, spacing) = (Duration::from_secs(30), Duration::from_secs(90));
        assert_eq!(dephased(interval, interval, 0.9), interval);
        assert_eq!(dephased(spacing, interval, 0.0), Duration::from_secs(45));
        assert_eq!(dephased(spacing, interval, 0.5), spacing);
        assert_eq!(dephased(spacing, interval, 1.0), Duration::from_secs(135));
    }

    #[test]
    fn an_approval_edited_to_also_deny_no_longer_approves() {
        let approval = Approval {
            request_id: RequestId::try_from("r-1".to_owned()).unwrap(),
            signal: "comment:7".into(),
            approver_id: 3,
            approver_login: Login::try_from("carol".to_owned()).unwrap(),
            source: ApprovalSource::Comment,
            head_sha: "a".repeat(40),
            approved_at: DateTime::UNIX_EPOCH,
        };
        assert!(still_approves("/breakglass approve", &approval));
        assert!(still_approves("lgtm\n/breakglass approve\n", &approval));
        let both = "/breakglass approve\n/breakglass deny -- actually no";
        assert!(!still_approves(both, &approval));
        assert!(!still_approves("/breakglass deny", &approval));
    }

    #[test]
    fn approvals_are_timed_against_the_push_to_the_second() {
        let push = Utc.with_ymd_and_hms(2026, 11, 26, 2, 14, 0).unwrap();
        let at = |secs: i64| push + chrono::TimeDelta::milliseconds(secs);
        assert_eq!(timing(at(1000), Some(push), false), Timing::Current);
        assert_eq!(
            timing(at(999), Some(push), false),
            Timing::Ambiguous,
            "same second"
        );
        assert_eq!(timing(at(0), Some(push), false), Timing::Ambiguous);
        assert_eq!(timing(at(-1), Some(push), false), Timing::Stale);
        assert_eq!(
            timing(at(5000), None, false),
            Timing::Ambiguous,
            "no push time known"
        );
    }

    #[test]
    fn an_approval_older_than_a_bound_on_the_push_is_ambiguous_not_stale() {
        let bound = Utc.with_ymd_and_hms(2026, 11, 26, 2, 14, 0).unwrap();
        let at = |secs: i64| bound + chrono::TimeDelta::seconds(secs);
        assert_eq!(timing(at(-60), Some(bound), true), Timing::Ambiguous);
        assert_eq!(timing(at(0), Some(bound), true), Timing::Ambiguous);
        assert_eq!(timing(at(1), Some(bound), true), Timing::Current);
    }

    #[test]
    fn only_a_reviewers_latest_review_that_is_not_a_comment_approves() {
        let review = |id: u64, author: u64, state| crate::forge::Review {
            id,
            author: Actor {
                id: author,
                login: format!("user{author}"),
                is_bot: false,
            },
            state,
            commit_id: None,
            submitted_at: None,
        };
        let standing = standing_approvals(vec![
            review(1, 7, ReviewState::Approved),
            review(2, 7, ReviewState::ChangesRequested), // 7 takes it back
            review(3, 8, ReviewState::Approved),
            review(4, 8, ReviewState::Commented), // a comment takes nothing back
            review(5, 9, ReviewState::ChangesRequested),
            review(6, 9, ReviewState::Approved), // 9 approves after asking for changes
            review(7, 10, ReviewState::Approved),
            review(8, 10, ReviewState::Dismissed),
        ]);
        assert_eq!(standing, ["review:3", "review:6"]);
    }
}
