//! `pull_request` events: a request PR is checked against the default branch's policies, gets
//! the `breakglass/policy` status and a comment with the verdict, and moves on to approval,
//! or straight to merge on a fast path.

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use super::Workflow;
use super::change::{Earlier, Write};
use super::evaluate::Written;
use super::verdict::{Decided, Inputs, Next, Verdict, decide};
use crate::comment;
use crate::forge::Thread;
use crate::forge::{
    Actor, ChangedFile, EntryKind, FileChange, PullRequestAction, PullRequestInfo,
    PullRequestState, StatusState,
};
use crate::grant::GrantSpec;
use crate::names::{Login, RequestId};
use crate::request::{AccessRequest, RequestPath};
use crate::store::{Approval, ApprovalSource};
use crate::store::{ChangeKind, EventKind, ForgeKind, JobKind, StoreError};
use crate::store::{RequestRecord, RequestState, RevokeReason, StoredDecision};

/// How long an expiry that found a merge under way waits before it looks again.
const EXPIRY_RECHECK: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

impl Workflow {
    pub(super) async fn handle_pull_request(
        &self,
        action: PullRequestAction,
        pr: &PullRequestInfo,
        sender: &Actor,
        _delivery: &str,
    ) -> anyhow::Result<()> {
        let repo = &self.settings.repository;
        if let Some(record) = self
            .store
            .find_request_by_revert_pr(self.forge_kind(), repo, pr.number)
            .await?
        {
            // Our own revert PR. Merged into another branch (retargeted while the bot merged
            // it; GitHub's merge answer does not say where), it removed nothing from the default
            // branch: a fresh change does. Merged there by someone while the grant runs, it
            // ends nothing either: only the requester or an approver revokes early, and the
            // expiry's revocation builds a fresh change when it finds its PR merged.
            if action == PullRequestAction::Closed
                && pr.merged
                && pr.base_ref != self.default_branch().await?
            {
                tracing::error!(request = %record.id, pr = pr.number, base = %pr.base_ref, by = %sender.login, "the bot's revert went into another branch than the default branch");
                self.metrics
                    .inc("breakglass_anomalies_total", "kind=\"merged_elsewhere\"");
                if record.state == RequestState::Active {
                    let text = comment::revert_merged_elsewhere_early_comment(
                        &sender.login,
                        &pr.base_ref,
                        self.forge.kind(),
                    );
                    self.forge
                        .note(Thread::Change(record.pr_number), &text)
                        .await?;
                } else {
                    self.remove_left_behind(&record, &pr.base_ref).await?;
                }
            }
            return Ok(());
        }
        if action == PullRequestAction::Closed
            && pr.merged
            && let Some(change) = self.store.change_of_pr(pr.number).await?
            && change.kind == ChangeKind::Removal
        {
            // Our own removal PR, merged elsewhere the same way: removed again.
            if pr.base_ref != self.default_branch().await? {
                tracing::error!(pr = pr.number, base = %pr.base_ref, "the bot's removal went into another branch than the default branch");
                self.metrics
                    .inc("breakglass_anomalies_total", "kind=\"merged_elsewhere\"");
                self.remove_again(&change, &pr.base_ref).await?;
            }
            return Ok(());
        }
        let existing = self
            .store
            .find_request_by_pr(self.forge_kind(), repo, pr.number)
            .await?;
        // The forge's time of the push, from the event that announces it. A PR reopened on
        // the head it was closed with was not pushed.
        let reopened_on_a_new_head = action == PullRequestAction::Reopened
            && existing.as_ref().is_none_or(|r| r.head_sha != pr.head_sha);
        let pushed = (matches!(
            action,
            PullRequestAction::Opened | PullRequestAction::Synchronized
        ) || reopened_on_a_new_head)
            .then(|| pr.updated_at.map(|at| (pr.head_sha.clone(), at)))
            .flatten();
        match action {
            PullRequestAction::Closed => self.request_pr_closed(existing, pr, sender).await,
            // The bot evaluates the PRs it opens itself, right after opening them.
            PullRequestAction::Opened if existing.is_none() && pr.author.id == self.bot.id => {
                Ok(())
            }
            _ => match existing {
                Some(record)
                    if action == PullRequestAction::Reopened
                        && record.state == RequestState::Closed =>
                {
                    self.reopened_closed(&record, pr).await
                }
                Some(record) if !decides_again(record.state, action) => Ok(()),
                Some(record) if merge_under_way(&record) => Err(wait_for_merge(&record, action)),
                existing => self.evaluate_pr(pr.number, existing, pushed).await,
            },
        }
    }

    /// The PR of a request closed without a grant (expired, denied, withdrawn, closed),
    /// reopened: the request is never decided again, and the reply says so, why it was
    /// closed, and how to ask again. Its check fails on the head it has now (a push made
    /// while it was closed brings a head without one), so a required check stops a hand merge.
    async fn reopened_closed(
        &self,
        record: &RequestRecord,
        pr: &PullRequestInfo,
    ) -> anyhow::Result<()> {
        let closing = self.closing_of(record).await?;
        let waited =
            crate::duration::HumanDuration::from_secs(self.settings.pending_timeout.as_secs())
                .to_string();
        if pr.head_sha != record.head_sha {
            let description = comment::closed_check_description(closing.as_closing(), &waited);
            self.set_status_on(&pr.head_sha, StatusState::Failure, &description)
                .await?;
        }
        let text = comment::reopened_closed_comment(
            record.id.as_str(),
            closing.as_closing(),
            &waited,
            self.forge.kind(),
        );
        self.forge.note(Thread::Change(pr.number), &text).await?;
        Ok(())
    }

    /// A request PR closed or merged by `sender`. A request not granted is closed, naming who
    /// closed (or merged) its PR.
    async fn request_pr_closed(
        &self,
        existing: Option<RequestRecord>,
        pr: &PullRequestInfo,
        sender: &Actor,
    ) -> anyhow::Result<()> {
        let Some(mut record) = existing else {
            return Ok(());
        };
        // The grant time is fixed right before the bot's own merge: a PR the bot merged for an
        // approved request that has one is that merge, whose store write a crash cut off. The
        // merge job (still queued) finds the PR merged and carries on; closing the request here
        // would leave its file on the default branch with no grant and no revoke. Merged by
        // anyone else, it is a hand merge (below), even while the bot's merge was to come.
        if pr.merged
            && record.state == RequestState::Approved
            && record.granted_at.is_some()
            && sender.id == self.bot.id
        {
            // Into another branch (retargeted under the merge), while the merge step runs on
            // another replica: once it has finished, this webhook is handled again and finds
            // the request granted (then revoked at once) or refused.
            anyhow::ensure!(
                pr.base_ref == self.default_branch().await?,
                "request {} was merged into `{}` while its merge step runs; handled again later",
                record.id,
                pr.base_ref
            );
            return Ok(());
        }
        if pr.merged && record.state == RequestState::Active {
            return self.granted_pr_closed(record, pr).await;
        }
        if !pr.merged && merge_under_way(&record) {
            // Closed (and maybe reopened) under the merge call: handled once it is over.
            return Err(wait_for_merge(&record, PullRequestAction::Closed));
        }
        if matches!(
            record.state,
            RequestState::Pending | RequestState::Denied | RequestState::Approved
        ) && record.merge_sha.is_none()
        {
            if pr.merged {
                // Into another branch no push says anything: the PR does.
                if pr.base_ref != self.default_branch().await? {
                    let text = comment::merged_elsewhere_comment(&pr.base_ref);
                    self.forge.note(Thread::Change(pr.number), &text).await?;
                }
                return self.close_merged_by_hand(record, Some(sender)).await;
            }
            let data = serde_json::json!({ "merged_by_hand": false });
            self.close_request(&mut record, data, Some(sender)).await?;
        }
        Ok(())
    }

    /// A request PR merged by someone else (`by`, when the forge says), not by the bot: closed,
    /// never granted; a push to the default branch removes its file. The requester of an
    /// approved request, whose merge was to come, is told nothing was granted.
    pub(super) async fn close_merged_by_hand(
        &self,
        mut record: RequestRecord,
        by: Option<&Actor>,
    ) -> anyhow::Result<()> {
        tracing::warn!(request = %record.id, pr = record.pr_number, "request PR merged without breakglass");
        self.metrics
            .inc("breakglass_anomalies_total", "kind=\"merged_without_bot\"");
        let approved = record.state == RequestState::Approved;
        let data = serde_json::json!({ "merged_by_hand": true });
        self.close_request(&mut record, data, by).await?;
        if approved {
            let login = by.map(|a| a.login.as_str());
            let text = comment::merged_by_hand_comment(login, self.forge.kind());
            self.forge
                .note(Thread::Change(record.pr_number), &text)
                .await?;
        }
        Ok(())
    }

    /// The bot's own merge of a granted request, as its webhook tells it. A member can retarget
    /// the PR between the guard's read and the merge call, and GitHub's merge answer does not
    /// say where the merge went: this webhook does. Access whose request file is not on the
    /// default branch ends now.
    async fn granted_pr_closed(
        &self,
        mut record: RequestRecord,
        pr: &PullRequestInfo,
    ) -> anyhow::Result<()> {
        if pr.base_ref == self.default_branch().await? {
            return Ok(());
        }
        tracing::error!(request = %record.id, pr = pr.number, base = %pr.base_ref, "the bot's merge went into another branch than the default branch; revoking");
        self.metrics
            .inc("breakglass_anomalies_total", "kind=\"merged_elsewhere\"");
        record.state = RequestState::Revoking;
        record.revoke_reason = Some(RevokeReason::Reconcile);
        self.store.update_request(&mut record, self.now()).await?;
        self.schedule(JobKind::Revoke, &record.id, self.now())
            .await?;
        let text = comment::granted_elsewhere_comment(&pr.base_ref);
        self.forge.note(Thread::Change(pr.number), &text).await?;
        Ok(())
    }

    /// Closes a request that will never be granted: its check fails, saying why; state,
    /// event, no more polling.
    pub(super) async fn close_request(
        &self,
        record: &mut RequestRecord,
        data: serde_json::Value,
        actor: Option<&Actor>,
    ) -> anyhow::Result<()> {
        // Before the state: a retry after a crash in between still finds the request open and
        // sets it again; after, a `pending` check would stay forever.
        let closing = super::commands::ClosingEvent {
            by: actor.map(|a| a.login.clone()),
            data: data.clone(),
        };
        let waited =
            crate::duration::HumanDuration::from_secs(self.settings.pending_timeout.as_secs());
        let description =
            comment::closed_check_description(closing.as_closing(), &waited.to_string());
        self.set_status_on(&record.head_sha, StatusState::Failure, &description)
            .await?;
        record.state = RequestState::Closed;
        super::clear_grant_plan(record);
        self.store.update_request(record, self.now()).await?;
        self.record_event(
            EventKind::Close,
            Some(&record.id),
            actor.and_then(super::events::actor),
            data,
        )
        .await?;
        self.store.cancel_job(JobKind::Poll, &record.id).await?;
        self.store.cancel_job(JobKind::Expire, &record.id).await?;
        Ok(())
    }

    /// Checks request PR `number` as it is now and records the verdict. Webhooks can arrive
    /// (or be processed) out of order: the decision is on the PR's current labels and head,
    /// not on what an older event saw. `pushed` is the forge's time of a push an event
    /// announced, used when that push is still the head.
    pub(super) async fn evaluate_pr(
        &self,
        number: u64,
        existing: Option<RequestRecord>,
        pushed: Option<(String, DateTime<Utc>)>,
    ) -> anyhow::Result<()> {
        let current = self.forge.change(number).await?;
        let announce = pushed.is_some();
        self.evaluate_current(current, existing, pushed, None, announce)
            .await
    }

    /// [`Self::evaluate_pr`] on a PR state the caller has just read: gather what the decision
    /// depends on, [`decide`], and apply the verdict. `announce`: a refusal that leaves no
    /// record is said (a head just heard of), not only shown by the check.
    pub(super) async fn evaluate_current(
        &self,
        current: PullRequestState,
        existing: Option<RequestRecord>,
        pushed: Option<(String, DateTime<Utc>)>,
        written: Option<Written>,
        announce: bool,
    ) -> anyhow::Result<()> {
        if !current.open {
            return Ok(());
        }
        let gathered = self.gather(current.info, existing, pushed, written, announce);
        let Some(inputs) = gathered.await? else {
            return Ok(());
        };
        match decide(&inputs) {
            Verdict::Reopen if self.id_taken_elsewhere(&inputs).await? => Ok(()),
            Verdict::Reopen => {
                let Inputs {
                    pr,
                    request,
                    text,
                    path,
                    existing,
                    requester_id,
                    ..
                } = inputs;
                self.reopen_from_bot_branch(&pr, &request, &text, &path, existing, requester_id)
                    .await
            }
            Verdict::Record(decided) => self.apply_verdict(inputs, decided).await,
        }
    }

    /// Whether the request id of a PR without a record of its own belongs to another request
    /// (said once, and the check fails). Such a PR is never re-opened from the bot's branch:
    /// that would abandon the other request's change. The original PR of a request the bot
    /// re-opened, reopened by hand, is one.
    async fn id_taken_elsewhere(&self, inputs: &Inputs) -> anyhow::Result<bool> {
        if inputs.existing.is_some() {
            return Ok(false);
        }
        let Some(other) = self.store.get_request(&inputs.path.id).await? else {
            return Ok(false);
        };
        if other.pr_number == inputs.pr.number {
            return Ok(false);
        }
        let says = comment::request_id_taken_comment(inputs.path.id.as_str());
        let thread = Thread::Change(inputs.pr.number);
        self.note_once(thread, &says, &says).await?;
        self.set_status(&inputs.pr, StatusState::Failure, "request id already used")
            .await?;
        Ok(true)
    }

    /// Records a decision and acts on it: the event, the status, the comment (unless the last
    /// one said the same), then approval, merge or waiting.
    async fn apply_verdict(&self, inputs: Inputs, decided: Decided) -> anyhow::Result<()> {
        let Some(record) = self
            .store_decision(
                inputs.existing,
                &inputs.pr,
                &inputs.request,
                &inputs.path,
                &inputs.requester.login,
                inputs.requester_id,
                decided.state,
                &decided.stored,
            )
            .await?
        else {
            return Ok(());
        };
        self.log_decision(&record, &decided).await?;
        let (status, description) = &decided.status;
        // On a fast path the verdict is said with the grant (one comment fewer), or with the
        // refusal when the merge or the grant does not happen.
        let fast_path = matches!(decided.next, Next::FastPath(_));
        // Approvals given before this decision (on a draft, say) that suffice: the verdict
        // says it merges now, not that it needs them.
        let comment = match decided.comment {
            Some(text) if decided.next == Next::Approvals => Some(
                self.approved_verdict(&record, &decided.stored)
                    .await?
                    .unwrap_or(text),
            ),
            comment => comment,
        };
        let said = self.say_verdict(inputs.pr.number, comment.as_deref().filter(|_| !fast_path));
        if matches!(decided.next, Next::FastPath(_) | Next::SelfService) {
            // Merged at once: the merge job sets the status in its round trip before the merge,
            // and waits for this comment, which is said meanwhile (see `ordering`).
            let saying = self.verdicts.saying(record.id.as_str());
            let (said, next) = tokio::join!(
                async {
                    let said = said.await;
                    drop(saying);
                    said
                },
                self.follow_up(record, decided.next, &decided.stored, inputs.now)
            );
            said?;
            return next;
        }
        // Independent writes, made together.
        let (set, said) = tokio::join!(self.set_status(&inputs.pr, *status, description), said);
        set?;
        said?;
        self.follow_up(record, decided.next, &decided.stored, inputs.now)
            .await
    }

    /// The decision's event in the log, and its count in the metrics.
    async fn log_decision(&self, record: &RequestRecord, decided: &Decided) -> anyhow::Result<()> {
        let allowed = decided.allowed();
        let decision = &decided.stored.decision;
        self.record_event(
            EventKind::Decision,
            Some(&record.id),
            super::events::requester(record),
            serde_json::json!({
                "allowed": allowed,
                "head_sha": record.head_sha,
                "violations": decision.violations.iter().map(|v| v.rule.to_string()).collect::<Vec<_>>(),
                "beyond_request": decided.stored.scope_problems,
                "approvals_required": decision.approvals_required,
                "fast_path": decision.fast_path.as_ref().map(|f| f.rule.clone()),
            }),
        )
        .await?;
        self.metrics.inc(
            "breakglass_decisions_total",
            format!("outcome=\"{}\"", if allowed { "allowed" } else { "denied" }),
        );
        Ok(())
    }

    /// The verdict comment on `record`, allowed, when the approvals of its head already suffice
    /// (counted as [`Self::check_approvals`] counts them, which then starts the merge).
    async fn approved_verdict(
        &self,
        record: &RequestRecord,
        stored: &StoredDecision,
    ) -> anyhow::Result<Option<String>> {
        let (approvers, need) = self.counted_approvers(record).await?;
        if need == 0 || approvers.len() < need as usize {
            return Ok(None);
        }
        let names: Vec<String> = approvers.iter().map(ToString::to_string).collect();
        Ok(Some(comment::approved_decision_comment(
            record.id.as_str(),
            &stored.decision,
            &names,
            record.forge,
        )))
    }

    /// Says the verdict's comment on PR `number`, when there is one to say.
    async fn say_verdict(&self, number: u64, comment: Option<&str>) -> anyhow::Result<()> {
        if let Some(text) = comment {
            self.forge.note(Thread::Change(number), text).await?;
        }
        Ok(())
    }

    /// What follows a recorded decision: nothing (polling stops), waiting after a refused
    /// merge, the merge (fast path, self-service), or counting approvals.
    async fn follow_up(
        &self,
        mut record: RequestRecord,
        next: Next,
        stored: &StoredDecision,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        match next {
            Next::Stop => {
                self.store.cancel_job(JobKind::Poll, &record.id).await?;
                Ok(())
            }
            // Refused at this head: only a new approval (or a push) moves it again.
            Next::AfterRefusedMerge => self.schedule_poll_if_needed(&record, stored).await,
            Next::FastPath(rule) => {
                // Approvals given before (on a draft, say) that suffice: approved by them, as
                // the audit must say, with no after-the-fact review to wait for.
                let (approvers, need) = self.counted_approvers(&record).await?;
                if need > 0 && approvers.len() >= need as usize {
                    return self
                        .approve(record, Some(approvers.into_iter().collect()))
                        .await;
                }
                record.fast_path_rule = Some(rule.parse().map_err(anyhow::Error::msg)?);
                self.approve(record, None).await
            }
            Next::SelfService => self.approve(record, Some(Vec::new())).await,
            Next::Approvals => {
                self.schedule(JobKind::Poll, &record.id, now).await?;
                self.check_approvals(record).await
            }
        }
    }

    async fn schedule_poll_if_needed(
        &self,
        record: &RequestRecord,
        stored: &StoredDecision,
    ) -> anyhow::Result<()> {
        if stored.decision.approvals_required > 0 {
            self.schedule(JobKind::Poll, &record.id, self.now()).await?;
        }
        Ok(())
    }

    /// The one request file a PR adds, or `None` (not a request PR, or refused with a comment:
    /// several request files, a file under `requests/` that is not named like one, or a
    /// request file that is a symbolic link or a submodule).
    pub(super) async fn the_request_file<'f>(
        &self,
        pr: &PullRequestInfo,
        files: &'f [ChangedFile],
        announce: bool,
    ) -> anyhow::Result<Option<(&'f ChangedFile, RequestPath)>> {
        let touched: Vec<&ChangedFile> = files
            .iter()
            .filter(|f| {
                matches!(
                    f.change,
                    FileChange::Added | FileChange::Modified | FileChange::Renamed
                ) && f.path.starts_with("requests/")
            })
            .collect();
        if let Some(bad) = touched
            .iter()
            .find(|f| RequestPath::parse(&f.path).is_none())
        {
            if announce {
                let says = comment::bad_request_path_comment(&bad.path);
                self.say_refusal(pr.number, &says).await?;
            }
            self.set_status(pr, StatusState::Failure, "not a request file name")
                .await?;
            return Ok(None);
        }
        let requests: Vec<(&ChangedFile, RequestPath)> = touched
            .into_iter()
            .filter_map(|f| RequestPath::parse(&f.path).map(|p| (f, p)))
            .collect();
        match requests.as_slice() {
            [] => Ok(None), // not a request PR
            [(file, _)] if matches!(file.kind, EntryKind::Symlink | EntryKind::Submodule) => {
                self.refuse_not_a_file(pr, &file.path, file.kind, announce)
                    .await?;
                Ok(None)
            }
            [(file, path)] => Ok(Some((*file, path.clone()))),
            several => {
                let paths: Vec<String> = several.iter().map(|(f, _)| f.path.clone()).collect();
                if announce {
                    let says = comment::several_requests_comment(&paths, self.forge.kind());
                    self.say_refusal(pr.number, &says).await?;
                }
                self.set_status(pr, StatusState::Failure, "one request per PR")
                    .await?;
                Ok(None)
            }
        }
    }

    /// A request file that is not a regular file (the forge said so, or served something else
    /// for it): a failure status and, when `say`, a comment. It is never decided or merged.
    pub(super) async fn refuse_not_a_file(
        &self,
        pr: &PullRequestInfo,
        path: &str,
        kind: EntryKind,
        say: bool,
    ) -> anyhow::Result<()> {
        tracing::info!(
            pr = pr.number,
            path,
            ?kind,
            "refusing a request file that is not a file"
        );
        if say {
            let says = comment::not_a_file_comment(path, kind, self.forge.kind());
            self.say_refusal(pr.number, &says).await?;
        }
        self.set_status(
            pr,
            StatusState::Failure,
            "the request file is not a regular file",
        )
        .await?;
        Ok(())
    }

    /// A PR from a fork: a failure status and, on its first sight, a comment. Nothing else.
    pub(super) async fn refuse_fork(
        &self,
        pr: &PullRequestInfo,
        repo: &str,
        announce: bool,
    ) -> anyhow::Result<()> {
        tracing::info!(pr = pr.number, repo, "refusing a request PR from a fork");
        // Said before the status: a comment that fails is said when the work is done again.
        if announce {
            let says = comment::fork_refused_comment(repo, self.forge.kind());
            self.say_refusal(pr.number, &says).await?;
        }
        self.set_status(pr, StatusState::Failure, "requests from forks are refused")
            .await?;
        Ok(())
    }

    /// Inserts the request or updates its decision; `None` (after a comment) when the id is
    /// taken by another request.
    #[allow(clippy::too_many_arguments)]
    async fn store_decision(
        &self,
        existing: Option<RequestRecord>,
        pr: &PullRequestInfo,
        request: &AccessRequest,
        path: &RequestPath,
        login: &Login,
        requester_id: u64,
        state: RequestState,
        stored: &StoredDecision,
    ) -> anyhow::Result<Option<RequestRecord>> {
        let now = self.now();
        let duration = stored.decision.duration.map(|d| d.as_secs());
        let mut record = match existing {
            Some(record) => record,
            None => {
                let new = NewRequest {
                    path,
                    request,
                    requester: login,
                    requester_id,
                    pr_number: pr.number,
                    head_sha: &pr.head_sha,
                    duration_secs: duration,
                    seen_at: now,
                };
                let Some(record) = self.insert_new_request(new, pr).await? else {
                    return Ok(None);
                };
                record
            }
        };
        record.environment = request.environment.clone();
        record.role = request.role.clone();
        record.duration_secs = duration.unwrap_or(record.duration_secs);
        record.reason = request.reason.clone();
        record.ticket = request.ticket.clone();
        if record.head_sha != pr.head_sha {
            self.approvals_after_push(&record, &pr.head_sha, stored)
                .await?;
        } else if came_back(record.decision.as_ref(), stored) {
            self.approvals_after_return(&record, stored).await?;
        }
        record.head_sha = pr.head_sha.clone();
        record.state = state;
        super::clear_grant_plan(&mut record);
        record.decision = Some(stored.clone());
        self.store.update_request(&mut record, now).await?;
        Ok(Some(record))
    }

    /// Inserts the record of a request decided for the first time and schedules its expiry;
    /// `None` (after saying so) when its id is taken by another request.
    async fn insert_new_request(
        &self,
        new: NewRequest<'_>,
        pr: &PullRequestInfo,
    ) -> anyhow::Result<Option<RequestRecord>> {
        let path = new.path;
        let record = self.new_record(new);
        match self.store.insert_request(&record).await {
            Ok(()) => {
                self.schedule_expiry(&record.id).await?;
                Ok(Some(record))
            }
            Err(StoreError::Duplicate { .. }) => {
                // This very PR, inserted meanwhile by another worker (a replica's catch-up
                // deciding it while this one handles its webhook): a lost race, decided again
                // at once with the record that won.
                if let Some(other) = self.store.get_request(&path.id).await?
                    && self.owns(&other)
                    && other.pr_number == pr.number
                {
                    return Err(StoreError::Conflict {
                        id: other.id.to_string(),
                        expected: 0,
                        found: other.version,
                    }
                    .into());
                }
                // Said once per PR and id, not again at each label or approval.
                let says = comment::request_id_taken_comment(path.id.as_str());
                self.note_once(Thread::Change(pr.number), &says, &says)
                    .await?;
                self.set_status(pr, StatusState::Failure, "request id already used")
                    .await?;
                Ok(None)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// The approvals of `record` once its PR moved to `head_sha`, pushed at `head_since`.
    async fn approvals_after_push(
        &self,
        record: &RequestRecord,
        head_sha: &str,
        stored: &StoredDecision,
    ) -> anyhow::Result<()> {
        // Approvals are of a head; a push voids them for good, even if the branch is later
        // put back on that head (A, then B, then A again). Only a comment or emoji given
        // after this push (forge time) but heard before its webhook was meant for the new
        // head, and counts for it.
        let (heard_early, too_close) = self.given_after_push(record, stored).await?;
        self.store
            .forget_approvals_of_other_heads(&record.id, head_sha)
            .await?;
        for approval in &too_close {
            // Given in the push's second: which version it approves cannot be told, and
            // its approver is asked to approve again, never dropped in silence.
            let approver = Actor {
                id: approval.approver_id,
                login: approval.approver_login.to_string(),
                is_bot: false,
            };
            self.ask_once(record, &approver, &approval.signal).await?;
        }
        for approval in heard_early {
            let approval = Approval {
                head_sha: head_sha.to_owned(),
                ..approval
            };
            self.store.add_approval(&approval).await?;
        }
        Ok(())
    }

    /// Whether `approval` is timed by the forge, as an emoji or a comment is, rather than bound
    /// to the commit it names: every approval but a GitHub review. GitLab's Approve button
    /// names no commit (its hook is built later, from the MR as it is then), so it is stored
    /// with GitLab's own `approved_at` and timed against pushes like the rest.
    fn is_timed(&self, approval: &Approval) -> bool {
        approval.source != ApprovalSource::Review || self.forge_kind() == ForgeKind::GitLab
    }

    /// The approvals of `record`'s head once it is known to have gone away and come back at
    /// `stored.head_since` (heard late, or found by [`Self::unheard_move`] at the merge): one given before
    /// may have been of the other head and no longer counts, and its approver is asked to
    /// approve again, once. GitHub's reviews name their commit and stay.
    async fn approvals_after_return(
        &self,
        record: &RequestRecord,
        stored: &StoredDecision,
    ) -> anyhow::Result<()> {
        use super::approval::{Timing, timing};
        let approvals = self
            .store
            .approvals_for(&record.id, &record.head_sha)
            .await?;
        for approval in approvals {
            let since = (stored.head_since, stored.head_since_is_bound);
            if !self.is_timed(&approval)
                || timing(approval.approved_at, since.0, since.1) == Timing::Current
            {
                continue;
            }
            self.withdraw(&record.id, &approval.signal).await?;
            let approver = Actor {
                id: approval.approver_id,
                login: approval.approver_login.to_string(),
                is_bot: false,
            };
            self.ask_once(record, &approver, &approval.signal).await?;
        }
        Ok(())
    }

    /// The approvals stored for `record`'s old head that were given after the push of the new
    /// one (`head_since`, forge time against forge time, more than a second apart), and those
    /// given within its second, or before it when it is only a bound (the push's own time not
    /// heard). GitHub's reviews are bound to the commit they approve, so they never move.
    async fn given_after_push(
        &self,
        record: &RequestRecord,
        stored: &StoredDecision,
    ) -> anyhow::Result<(Vec<Approval>, Vec<Approval>)> {
        use super::approval::{Timing, timing};
        let approvals = self
            .store
            .approvals_for(&record.id, &record.head_sha)
            .await?;
        let (mut after, mut within) = (Vec::new(), Vec::new());
        for approval in approvals {
            if !self.is_timed(&approval) {
                continue;
            }
            match timing(
                approval.approved_at,
                stored.head_since,
                stored.head_since_is_bound,
            ) {
                Timing::Current => after.push(approval),
                Timing::Ambiguous => within.push(approval),
                Timing::Stale => {}
            }
        }
        Ok((after, within))
    }

    /// A new request record on this workflow's forge and repository (see
    /// [`NewRequest::into_record`]).
    fn new_record(&self, new: NewRequest<'_>) -> RequestRecord {
        new.into_record(self.forge_kind(), &self.settings.repository)
    }

    /// A request PR whose role needs grant files: the bot writes only to branches it created,
    /// so it opens the same request from its own branch and closes this one.
    async fn reopen_from_bot_branch(
        &self,
        pr: &PullRequestInfo,
        request: &AccessRequest,
        text: &str,
        path: &RequestPath,
        existing: Option<RequestRecord>,
        requester_id: u64,
    ) -> anyhow::Result<()> {
        let requester = Actor {
            id: requester_id,
            login: existing.as_ref().map_or_else(
                || pr.author.login.clone(),
                |r| r.requester_login.to_string(),
            ),
            is_bot: false,
        };
        // The labels a fast-path rule looks at go with it (a PR labelled `sev1`).
        let (_, policies) = self.load_policies().await?;
        let policy = policies
            .as_ref()
            .ok()
            .and_then(|p| p.get(request.environment.as_str()));
        let labels = super::commands::fast_path_labels(policy, Some(&pr.labels));
        self.open_bot_request(
            &requester,
            request,
            text,
            path,
            Thread::Change(pr.number),
            existing,
            &labels,
            comment::reopened_comment,
        )
        .await?;
        self.forge.close_change(pr.number).await?;
        Ok(())
    }

    /// Opens a request PR from the bot's own branch (for a `/breakglass` comment, or to re-open
    /// a PR whose grant files the bot must write), records it and decides it. The request file
    /// is `text`; the grant files are rendered by the bot. `announce` (given the new PR's
    /// reference) is said on `origin` while the request is decided. The PR is opened with
    /// `labels` (those of `origin` that a fast-path rule looks at), which its decision sees.
    /// Returns the PR number.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn open_bot_request(
        &self,
        requester: &Actor,
        request: &AccessRequest,
        text: &str,
        path: &RequestPath,
        origin: Thread,
        existing: Option<RequestRecord>,
        labels: &[String],
        announce: impl Fn(&str) -> String,
    ) -> anyhow::Result<u64> {
        let login = Login::try_from(requester.login.clone()).map_err(anyhow::Error::msg)?;
        let writes = self.request_writes(request, text, path, &login).await?;
        let title = format!(
            "breakglass: {}/{} for {} ({login})",
            request.environment,
            request.role,
            request.duration.map(|d| d.to_string()).unwrap_or_default()
        );
        let earlier = match existing {
            // A fresh request: a PR an earlier run of its comment opened is kept.
            None => Earlier::KeepOpen,
            Some(_) => Earlier::Replace,
        };
        let body = comment::request_pr_body(
            path.id.as_str(),
            login.as_str(),
            &self.forge.thread_ref(origin),
        );
        let built = self
            .build_labelled_change(
                path.id.as_str(),
                ChangeKind::Request,
                &writes,
                (&title, &body, labels),
                earlier,
            )
            .await?
            .context("a request change always writes its file")?;
        // What an earlier run wrote is read back, never assumed to be this run's text.
        let head_sha = built.change.head_sha.filter(|_| !built.kept);
        let pr = built.pr;
        let pr_number = pr.info.number;
        let written = head_sha.map(|head_sha| Written {
            head_sha,
            files: writes
                .iter()
                .map(|write| ChangedFile {
                    path: write.path().to_owned(),
                    change: FileChange::Added,
                    previous_path: None,
                    // The bot wrote it, as a file.
                    kind: EntryKind::File,
                    blob: None,
                })
                .collect(),
            text: text.to_owned(),
        });
        let placeholder = self
            .record_bot_request(existing, request, path, (requester, &login), &pr)
            .await?;
        let opened = pr.info.updated_at.map(|at| (pr.info.head_sha.clone(), at));
        let announced = opened.is_some();
        // Boxed: deciding may re-open a request, which decides again.
        // Said while deciding: nobody waits on it, so it is off the way to access.
        let announcement = announce(&self.forge.change_ref(pr_number));
        let said = self.forge.note(origin, &announcement);
        let (said, decided) = tokio::join!(
            said,
            Box::pin(self.evaluate_current(pr, Some(placeholder), opened, written, announced))
        );
        decided?;
        said?;
        Ok(pr_number)
    }

    /// What a bot request change writes: the request file as given, and the grant files its
    /// role renders for it (by the policy on the default branch, when it has that role).
    async fn request_writes(
        &self,
        request: &AccessRequest,
        text: &str,
        path: &RequestPath,
        login: &Login,
    ) -> anyhow::Result<Vec<Write>> {
        let (_, policies) = self.load_policies().await?;
        let mut writes = vec![Write::Put {
            path: path.to_repo_path(),
            content: text.to_owned(),
        }];
        let policy = policies
            .as_ref()
            .ok()
            .and_then(|p| p.get(request.environment.as_str()));
        if let Some(policy) = policy
            && let Some(role) = policy.roles.get(&request.role)
        {
            let default = policy.effective_default_duration();
            let spec = grant_spec(request, path, login, default);
            for file in self.providers.rendered_files(role, &spec)? {
                writes.push(Write::Put {
                    path: file.path,
                    content: file.content,
                });
            }
        }
        Ok(writes)
    }

    /// The stored request of the bot's PR `pr`, before it is decided: a request decided on the
    /// person's own PR moves to the bot's PR, id and all; otherwise a new one, closed if
    /// nobody approves it within `pending_timeout`.
    async fn record_bot_request(
        &self,
        existing: Option<RequestRecord>,
        request: &AccessRequest,
        path: &RequestPath,
        (requester, login): (&Actor, &Login),
        pr: &PullRequestState,
    ) -> anyhow::Result<RequestRecord> {
        let now = self.now();
        if let Some(mut record) = existing {
            record.pr_number = pr.info.number;
            record.head_sha = pr.info.head_sha.clone();
            record.state = RequestState::Denied;
            // A merge step may have fixed its grant time before the head moved: nothing is
            // granted on this PR any more (the store refuses a denied request with one).
            super::clear_grant_plan(&mut record);
            self.store.update_request(&mut record, now).await?;
            return Ok(record);
        }
        let record = self.new_record(NewRequest {
            path,
            request,
            requester: login,
            requester_id: requester.id,
            pr_number: pr.info.number,
            head_sha: &pr.info.head_sha,
            duration_secs: request.duration.map(|d| d.as_secs()),
            seen_at: now,
        });
        self.store.insert_request(&record).await?;
        self.schedule_expiry(&record.id).await?;
        Ok(record)
    }

    pub(super) async fn set_status(
        &self,
        pr: &PullRequestInfo,
        state: StatusState,
        description: &str,
    ) -> anyhow::Result<()> {
        self.set_status_on(&pr.head_sha, state, description).await
    }

    pub(super) async fn set_status_on(
        &self,
        sha: &str,
        state: StatusState,
        description: &str,
    ) -> anyhow::Result<()> {
        self.forge
            .set_status(sha, super::STATUS_CONTEXT, state, description)
            .await?;
        Ok(())
    }

    /// A new request is closed if nobody approves it within `pending_timeout`.
    async fn schedule_expiry(&self, id: &RequestId) -> anyhow::Result<()> {
        let timeout = chrono::TimeDelta::from_std(self.settings.pending_timeout)
            .unwrap_or(chrono::TimeDelta::days(1));
        self.schedule(JobKind::Expire, id, self.now() + timeout)
            .await
    }

    /// A merge under way may still be refused and the request be pending again, past its
    /// deadline: its expiry looks again later instead of being done with.
    async fn expire_later(&self, id: &RequestId) -> anyhow::Result<()> {
        self.schedule(JobKind::Expire, id, self.now() + EXPIRY_RECHECK)
            .await
    }

    /// A request nobody approved in time: closed, with its PR, and no longer polled.
    pub(super) async fn job_expire(&self, id: &RequestId) -> anyhow::Result<()> {
        let Some(mut record) = self.store.get_request(id).await? else {
            return Ok(());
        };
        if record.state == RequestState::Approved {
            return self.expire_later(id).await;
        }
        if !matches!(record.state, RequestState::Pending | RequestState::Denied) {
            return Ok(());
        }
        if record.state == RequestState::Pending {
            // A last look at the reactions (GitHub sends no webhook for them): an approval
            // given before the deadline and not polled yet is an approval, not an expiry.
            self.job_poll(id).await?;
            match self.store.get_request(id).await? {
                Some(polled) if polled.state == RequestState::Pending => record = polled,
                Some(polled) if polled.state == RequestState::Approved => {
                    return self.expire_later(id).await;
                }
                _ => return Ok(()),
            }
        }
        let after =
            crate::duration::HumanDuration::from_secs(self.settings.pending_timeout.as_secs());
        self.close_request(&mut record, serde_json::json!({ "expired": true }), None)
            .await?;
        self.forge
            .note(
                Thread::Change(record.pr_number),
                &comment::pending_expired_comment(&after.to_string()),
            )
            .await?;
        self.forge.close_change(record.pr_number).await?;
        Ok(())
    }
}

/// Who asks for what, on which PR head: what a new request record starts from.
pub(super) struct NewRequest<'a> {
    pub path: &'a RequestPath,
    pub request: &'a AccessRequest,
    pub requester: &'a Login,
    pub requester_id: u64,
    pub pr_number: u64,
    pub head_sha: &'a str,
    /// Seconds asked for (or the policy's default); an hour when nothing says.
    pub duration_secs: Option<u64>,
    /// When the bot first saw the request: the record's creation and last write.
    pub seen_at: DateTime<Utc>,
}

impl NewRequest<'_> {
    /// The one way a request record is born: on `forge` and `repository`, `Denied`
    /// and without a decision until its first evaluation says otherwise (a record exists
    /// before its decision when the bot opens the PR itself).
    pub(super) fn into_record(self, forge: ForgeKind, repository: &str) -> RequestRecord {
        let now = self.seen_at;
        RequestRecord {
            id: self.path.id.clone(),
            forge,
            repository: repository.to_owned(),
            pr_number: self.pr_number,
            environment: self.request.environment.clone(),
            role: self.request.role.clone(),
            requester_login: self.requester.clone(),
            requester_id: self.requester_id,
            // A row needs a duration; the decision sets the real one.
            duration_secs: self.duration_secs.unwrap_or(3600),
            reason: self.request.reason.clone(),
            ticket: self.request.ticket.clone(),
            state: RequestState::Denied,
            head_sha: self.head_sha.to_owned(),
            decision: None,
            fast_path_rule: None,
            approved_by: None,
            merge_sha: None,
            granted_at: None,
            expires_at: None,
            revert_pr_number: None,
            revoked_at: None,
            revoke_reason: None,
            revoked_by: None,
            review_due_at: None,
            reviewed_by: None,
            reviewed_at: None,
            total_secs: 0,
            created_at: now,
            updated_at: now,
            version: 0,
        }
    }
}

/// alice's request `r-1` (`requests/prod/r-1.yaml`, as `yaml` says, for an hour) on PR 7 of
/// `acme/access-requests` on GitHub, as first stored at `seen_at`: for unit tests.
#[cfg(test)]
pub(crate) fn sample_record(yaml: &str, seen_at: DateTime<Utc>) -> RequestRecord {
    let request = AccessRequest::from_yaml(yaml).expect("a request");
    let path = RequestPath::parse("requests/prod/r-1.yaml").expect("a request path");
    NewRequest {
        path: &path,
        request: &request,
        requester: &Login::try_from("alice".to_owned()).expect("a login"),
        requester_id: 1001,
        pr_number: 7,
        head_sha: "1111111111111111111111111111111111111111",
        duration_secs: Some(3600),
        seen_at,
    }
    .into_record(ForgeKind::GitHub, "acme/access-requests")
}

/// Whether `record`'s merge step has begun: approved, its grant time fixed (the step's last
/// write before its merge call, kept while a failed call waits to be tried again). That call
/// may be on its way, from another replica too, and nothing can take it back: a close or a new
/// decision now would leave the merge to land, grant trailers and files and all, for a request
/// the bot holds as closed or pending. An event that would change the request waits instead.
pub(super) fn merge_under_way(record: &RequestRecord) -> bool {
    record.state == RequestState::Approved && record.granted_at.is_some()
}

/// The error that makes a delivery wait for `record`'s merge step (see [`merge_under_way`]):
/// it is handled again later and then finds the request granted, or refused and waiting.
pub(super) fn wait_for_merge(record: &RequestRecord, action: PullRequestAction) -> anyhow::Error {
    anyhow::anyhow!(
        "request {} is in its merge step; its PR's `{action:?}` event is handled again once that is over",
        record.id
    )
}

/// Whether a PR event makes the bot decide again on a request in `state`: pending and denied
/// requests on any change; an approved one (merge not done yet) only on a push, which voids
/// the approvals.
pub(super) fn decides_again(state: RequestState, action: PullRequestAction) -> bool {
    match state {
        RequestState::Pending | RequestState::Denied => true,
        RequestState::Approved => matches!(
            action,
            PullRequestAction::Synchronized | PullRequestAction::ConvertedToDraft
        ),
        _ => false,
    }
}

/// What a provider gets to render a request's grant files before the merge: the expiry is not
/// known yet, so it is [`crate::grant::NOT_YET_GRANTED`] (a grant file that grants nothing).
/// The duration is the request's, or `default` (the policy's) when it names none.
pub(super) fn grant_spec(
    request: &AccessRequest,
    path: &RequestPath,
    requester: &Login,
    default: crate::duration::HumanDuration,
) -> GrantSpec {
    GrantSpec {
        id: path.id.to_string(),
        environment: request.environment.to_string(),
        role: request.role.to_string(),
        requester: requester.to_string(),
        reason: request.reason.as_str().to_owned(),
        ticket: request.ticket.as_ref().map(ToString::to_string),
        duration: request.duration.unwrap_or(default).to_string(),
        expires_at: crate::grant::NOT_YET_GRANTED.to_owned(),
    }
}

/// Whether a decision on the same head moved its time later: the head went away and came back
/// (see `verdict::head_since`).
fn came_back(old: Option<&StoredDecision>, new: &StoredDecision) -> bool {
    old.and_then(|o| o.head_since)
        .is_some_and(|was| new.head_since.is_some_and(|now| now > was))
}
