//! The timed half of the lifecycle, run as durable jobs: merge, grant (with the expiry comment
//! and the revert PR), reminder, and revoke at the TTL. A job that fails is retried with
//! backoff, forever: no grant is ever left alive past its expiry.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use super::change::{BOT_BRANCH_PREFIX, Write};
use super::guard::{Expected, MergePlan, Merged, Refusal};
use super::trailers;
use super::unheard::{HeadCheck, Unheard};
use super::{Workflow, stored_decision};
use crate::comment;
use crate::forge::{Actor, PullRequestState, PushedCommit, PushedCommits, StatusState};
use crate::forge::{ChangedFile, ChangedFiles, FileChange, Thread};
use crate::grant::{GrantSpec, RenderedFile};
use crate::names::RequestId;
use crate::policy::{Requester, Role};
use crate::request::{AccessRequest, RequestPath};
use crate::store::{AppliedGrant, ChangeKind, EventKind, JobKind};
use crate::store::{RequestRecord, RequestState, RevokeReason};

/// How soon a fast-path grant must be reviewed (`None` when it needs no review).
fn review_within(record: &RequestRecord) -> Option<crate::duration::HumanDuration> {
    record.fast_path_rule.as_ref()?;
    Some(
        record
            .decision
            .as_ref()
            .and_then(|d| d.decision.fast_path.as_ref().map(|f| f.review_within))
            .unwrap_or(crate::duration::HumanDuration::from_secs(86_400)),
    )
}

/// The `breakglass/policy` status a request merges with: how it was allowed.
fn merge_status(record: &RequestRecord) -> String {
    match (&record.fast_path_rule, &record.approved_by) {
        (Some(rule), _) => format!("allowed: fast path {rule}"),
        (None, Some(by)) if !by.is_empty() => "approved".to_owned(),
        _ => "allowed: self-service".to_owned(),
    }
}

/// The verdict of a request merged on a fast path, which is said with what follows the merge
/// attempt (the grant, or why there was none) instead of in a comment of its own.
fn fast_path_verdict(record: &RequestRecord) -> Option<String> {
    record.fast_path_rule.as_ref()?;
    comment::fast_path_verdict_note(&record.decision.as_ref()?.decision, record.forge)
}

/// `text` after the unsaid verdict of a fast-path `record`: a merge refused or a grant that
/// failed still tells the requester what was decided.
fn with_fast_path_verdict(record: &RequestRecord, text: String) -> String {
    match (&record.fast_path_rule, &record.decision) {
        (Some(_), Some(stored)) => format!(
            "{}\n\n{text}",
            comment::decision_comment(record.id.as_str(), &stored.decision, record.forge)
        ),
        _ => text,
    }
}

/// A request checked and ready to merge.
#[allow(clippy::large_enum_variant)] // one short-lived value per merge: boxing buys nothing
pub(super) enum Ready {
    /// Merged already (a crash right after the merge): nothing is re-judged.
    AlreadyMerged,
    Checked {
        role: Role,
        /// The grant's values; the merge sets its expiry.
        spec: GrantSpec,
        /// The grant files as rendered before the merge, which the PR must hold.
        staged: Vec<RenderedFile>,
        /// The blob id of the request file the merge brings (`None`: none at the head).
        request_blob: Option<String>,
    },
}

/// What the merge's last round read (see [`Workflow::merge_round`]).
struct LastReads {
    pr: PullRequestState,
    /// How many approvals are left of how many needed, when some were withdrawn.
    withdrawn: Option<(usize, u32)>,
    /// A move of the head the bot did not hear.
    moved: Option<Unheard>,
    requester: Requester,
}

/// What stops a merge at its last reads; `stop_merge` does what each calls for.
enum Stop {
    /// The policy changed since the verdict: decide again on the PR as read.
    Redecide(Box<PullRequestState>),
    /// The head moved and came back unheard: decide again as that push would have had it.
    Pushed(Box<PullRequestState>, (String, DateTime<Utc>)),
    /// The requester's branch holds a head whose push was not heard: decide that head, or
    /// refuse the merge when it cannot be decided.
    Moved(Box<PullRequestState>),
    /// Refused, and said so with this reason.
    Refuse(String),
}

/// How long a grant time fixed by a merge try that failed is kept for the next try (see
/// `fix_grant_time`): a short outage keeps the expiry already written, a long one does not
/// eat into the access.
const GRANT_TIME_KEPT: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

impl Workflow {
    pub(super) fn request_path(record: &RequestRecord) -> String {
        RequestPath {
            environment: record.environment.clone(),
            id: record.id.clone(),
        }
        .to_repo_path()
    }

    /// The role as the default branch's policy defines it now (`None` when it is gone).
    pub(super) async fn current_role(
        &self,
        record: &RequestRecord,
    ) -> anyhow::Result<Option<Role>> {
        let (_, policies) = self.load_policies().await?;
        Ok(policies.ok().and_then(|p| {
            p.get(record.environment.as_str())
                .and_then(|policy| policy.roles.get(&record.role).cloned())
        }))
    }

    pub(super) fn spec(record: &RequestRecord) -> GrantSpec {
        GrantSpec {
            id: record.id.to_string(),
            environment: record.environment.to_string(),
            role: record.role.to_string(),
            requester: record.requester_login.to_string(),
            reason: record.reason.as_str().to_owned(),
            ticket: record.ticket.as_ref().map(ToString::to_string),
            duration: crate::duration::HumanDuration::from_secs(record.duration_secs).to_string(),
            expires_at: record.expires_at.map_or_else(
                || crate::grant::NOT_YET_GRANTED.to_owned(),
                crate::clock::iso,
            ),
        }
    }

    /// Merges an approved request PR through the merge guard and schedules the rest. The grant
    /// time and expiry are fixed (on the bot's clock) before the merge, so that the trailer and
    /// the stored expiry agree, also after a crash right after the merge.
    pub(super) async fn job_merge(&self, id: &RequestId) -> anyhow::Result<()> {
        let Some(record) = self.store.get_request(id).await? else {
            return Ok(());
        };
        match record.state {
            RequestState::Approved => {}
            // Merged and stored before a crash: what follows the merge is still to be done
            // (without it no grant, and no revoke at the expiry).
            RequestState::Active if record.merge_sha.is_some() => {
                return self.after_merge(record).await;
            }
            // Merged and stored, then ended (an early revoke, or reconciliation) before the
            // merge job ran again: the grant is over, but its merge is still logged.
            RequestState::Revoking | RequestState::Revoked if record.merge_sha.is_some() => {
                return self.log_merge(&record).await;
            }
            _ => return Ok(()),
        }
        match self.merge_approved(record.clone()).await {
            Err(err) if not_found(&err) => self.close_if_deleted(record, err).await,
            merged => merged,
        }
    }

    /// [`Self::job_merge`] of an approved request: checked, merged, granted.
    async fn merge_approved(&self, mut record: RequestRecord) -> anyhow::Result<()> {
        let Some(ready) = self.prepare_merge(&mut record).await? else {
            return Ok(()); // refused, and said so
        };
        let mut read = match self.last_reads(&mut record, &ready).await? {
            Ok(read) => read,
            Err(stop) => return self.stop_merge(record, stop).await,
        };
        let checked_head = record.head_sha.clone();
        // Read open just now, under the PR's lock: an earlier try's merge did not happen.
        let unmerged = read
            .as_ref()
            .is_some_and(|pr| pr.open && pr.merged_at.is_none());
        let expires_at = self.fix_grant_time(&mut record, unmerged).await?;
        let grant_files = match self
            .plan_grant_files(&mut record, ready, expires_at)
            .await?
        {
            Ok(files) => files,
            Err(why) => return self.refuse_merge(record, &why).await,
        };
        if record.head_sha != checked_head {
            // The expiry was stamped into the grant files: a new head, read again at the merge.
            read = None;
            self.set_status_on(
                &record.head_sha,
                StatusState::Success,
                &merge_status(&record),
            )
            .await?;
        }
        let (title, message) = trailers::grant_message(&record, expires_at, record.review_due_at);
        let plan = MergePlan {
            pr: record.pr_number,
            head_sha: record.head_sha.clone(),
            expected: Expected::Request {
                request_path: Self::request_path(&record),
                grant_files,
            },
            title,
            message,
        };
        // The verdict comment said meanwhile comes first on the thread.
        self.verdicts.said(record.id.as_str()).await;
        let outcome = match self.merge_own_or_theirs(&plan, read).await {
            Ok(outcome) => outcome,
            Err(err) => {
                self.hold_status_for_retry(&record).await;
                return Err(err);
            }
        };
        let merged = match outcome {
            Ok(merged) => merged,
            Err(Refusal::MergedElsewhere(base)) => {
                return self.closed_merged_elsewhere(record, &base).await;
            }
            Err(Refusal::MergedByHand(by)) => {
                return self.close_merged_by_hand(record, by.as_ref()).await;
            }
            Err(refusal) => return self.refuse_merge(record, &refusal.to_string()).await,
        };
        if merged.head != record.head_sha
            && let Some(stored) = self.store.get_request(&record.id).await?
            && stored.state == RequestState::Approved
        {
            // The branch was put back as a new commit (GitLab), which the store took as the
            // request's head meanwhile. (A record no longer approved keeps its old version:
            // the write below fails rather than overwrite what changed it.)
            record.head_sha = stored.head_sha;
            record.version = stored.version;
        }
        record.state = RequestState::Active;
        record.merge_sha = Some(merged.sha);
        record.total_secs = record.duration_secs;
        self.store.update_request(&mut record, self.now()).await?;
        self.after_merge(record).await
    }

    /// The last reads before a checked merge, and the status it needs, in one round trip: the
    /// PR as read, or what stops the merge (the policy changed, an approval was withdrawn).
    async fn last_reads(
        &self,
        record: &mut RequestRecord,
        ready: &Ready,
    ) -> anyhow::Result<Result<Option<PullRequestState>, Stop>> {
        let Ready::Checked { .. } = ready else {
            return Ok(Ok(None)); // merged already: the guard returns the merge as it happened
        };
        let LastReads {
            pr,
            withdrawn,
            moved,
            requester,
        } = self.merge_round(record).await?;
        if let Some(pushed) = moved.and_then(|moved| moved.push(&pr.info)) {
            return Ok(Err(Stop::Pushed(Box::new(pr), pushed)));
        }
        if self.pushed_unheard(record, &pr).await? {
            // Its webhook was lost: decided again on the head as read, timed by the PR's
            // latest update (a bound on the push: approvals in doubt are asked again).
            tracing::warn!(request = %record.id, head = %pr.info.head_sha, "the request's head moved and its push was not heard: decided again");
            return Ok(Err(Stop::Moved(Box::new(pr))));
        }
        if let Some(why) = self
            .policy_moved(record, &pr.info.labels, &requester)
            .await?
        {
            tracing::info!(request = %record.id, %why, "the policy changed before the merge");
            return Ok(Err(Stop::Redecide(Box::new(pr))));
        }
        if let Some((have, need)) = withdrawn {
            let why = format!(
                "an approval no longer counts at the merge: withdrawn, or not one under the default branch's policy any more ({have} of {need} remain)"
            );
            return Ok(Err(Stop::Refuse(why)));
        }
        Ok(Ok(Some(pr)))
    }

    /// Whether the requester's branch of `record`'s open PR holds another head than the one
    /// decided, its push unheard (GitHub's timeline dates no plain push). Left to the merge
    /// guard, it would refuse every merge for good: nothing else decides the new head. A bot
    /// branch someone pushed to is tampering, put back by the guard's caller instead.
    async fn pushed_unheard(
        &self,
        record: &RequestRecord,
        pr: &PullRequestState,
    ) -> anyhow::Result<bool> {
        if !pr.open || pr.info.head_sha == record.head_sha || pr.info.updated_at.is_none() {
            return Ok(false);
        }
        Ok(self.store.change_of_pr(record.pr_number).await?.is_none())
    }

    async fn stop_merge(&self, record: RequestRecord, stop: Stop) -> anyhow::Result<()> {
        match stop {
            Stop::Redecide(pr) => {
                // Decided again under the policy as it is now: a new verdict, said once.
                let fresh = self.store.get_request(&record.id).await?;
                self.evaluate_current(*pr, fresh, None, None, false).await
            }
            Stop::Pushed(pr, pushed) => {
                let (head, fresh) = self.before_deciding_again(&record, &pr).await?;
                let version = fresh.version;
                self.decide_after_unheard_push(*pr, fresh, pushed).await?;
                self.refuse_if_undecided(&record.id, head, version).await
            }
            Stop::Moved(pr) => {
                let (head, fresh) = self.before_deciding_again(&record, &pr).await?;
                let version = fresh.version;
                self.evaluate_current(*pr, Some(fresh), None, None, false)
                    .await?;
                self.refuse_if_undecided(&record.id, head, version).await
            }
            Stop::Refuse(why) => self.refuse_merge(record, &why).await,
        }
    }

    /// The PR's head as read and the request as stored, before a stopped merge decides it again.
    async fn before_deciding_again(
        &self,
        record: &RequestRecord,
        pr: &PullRequestState,
    ) -> anyhow::Result<(String, RequestRecord)> {
        let fresh = self.store.get_request(&record.id).await?;
        let fresh = fresh.context("a request being merged is recorded")?;
        Ok((pr.info.head_sha.clone(), fresh))
    }

    /// After a merge stopped to decide the PR's head `head` again: a head that could not be
    /// decided (a file that does not parse, a merge commit from "Update branch", another base)
    /// stores no decision, and the request would stay approved on a head it no longer has, for
    /// good (reconciliation re-queues its merge, which stops the same way). Refused instead, as
    /// the merge guard refuses a moved head: pending again, said once, decided at the next push.
    /// Only while the record is as it was read before deciding (`version`): a newer head that
    /// another worker decided and approved meanwhile is not this one's to refuse.
    async fn refuse_if_undecided(
        &self,
        id: &RequestId,
        head: String,
        version: i64,
    ) -> anyhow::Result<()> {
        match self.store.get_request(id).await? {
            Some(stored)
                if stored.version == version
                    && stored.state == RequestState::Approved
                    && stored.head_sha != head =>
            {
                let why = Refusal::HeadMoved { found: head }.to_string();
                self.refuse_merge(stored, &why).await
            }
            _ => Ok(()),
        }
    }

    /// The grant time, expiry and review deadline, fixed on the bot's clock before the merge
    /// (and kept when the merge job runs again), so that the trailer and the stored expiry agree.
    /// Fixed again when the PR is known `unmerged` and they are [`GRANT_TIME_KEPT`] old: a merge
    /// that lands after a long outage must not start with an expiry already past.
    async fn fix_grant_time(
        &self,
        record: &mut RequestRecord,
        unmerged: bool,
    ) -> anyhow::Result<DateTime<Utc>> {
        let stale = record
            .granted_at
            .is_some_and(|at| self.now() - at >= GRANT_TIME_KEPT);
        if record.granted_at.is_none() || unmerged && stale {
            let now = self.now();
            record.granted_at = Some(now);
            record.expires_at = Some(now + chrono::TimeDelta::seconds(record.duration_secs as i64));
            record.review_due_at = review_within(record).map(|within| now + within.to_chrono());
            self.store.update_request(record, now).await?;
        }
        record.expires_at.context("set above")
    }

    /// What the grant applies, fixed now as checked (revoke reads this record, never the
    /// policy), with the expiry stamped into its grant files: the files the merge must hold,
    /// or why the merge cannot go on.
    async fn plan_grant_files(
        &self,
        record: &mut RequestRecord,
        ready: Ready,
        expires_at: DateTime<Utc>,
    ) -> anyhow::Result<Result<Vec<RenderedFile>, String>> {
        let Ready::Checked {
            role,
            mut spec,
            staged,
            request_blob,
        } = ready
        else {
            return Ok(Ok(Vec::new()));
        };
        spec.expires_at = crate::clock::iso(expires_at);
        let files = match self.stamp_expiry(record, &role, &spec, &staged).await? {
            Ok(files) => files,
            Err(why) => return Ok(Err(why)),
        };
        self.store
            .plan_grant(&AppliedGrant {
                request_id: record.id.clone(),
                provider: role.provider.clone(),
                role,
                files: files.clone(),
                request_blob,
                applied_at: self.now(),
            })
            .await?;
        Ok(Ok(files))
    }

    /// The steps after a request's merge: the log and the timers of its grant. Each
    /// is idempotent: a crash in between runs them again.
    async fn after_merge(&self, record: RequestRecord) -> anyhow::Result<()> {
        let id = &record.id;
        let expires_at = record
            .expires_at
            .context("a merged request has an expiry")?;
        self.log_merge(&record).await?;
        self.schedule(JobKind::Revoke, id, expires_at).await?;
        if let Some(due) = record.review_due_at {
            self.schedule(JobKind::ReviewDue, id, due).await?;
        }
        let remind_at = expires_at
            - chrono::TimeDelta::from_std(self.settings.reminder_before).unwrap_or_default();
        if remind_at > self.now() {
            self.schedule(JobKind::Remind, id, remind_at).await?;
        }
        self.store.cancel_job(JobKind::Expire, id).await?;
        self.schedule(JobKind::Grant, id, self.now()).await
    }

    /// The request's `merge` event, once.
    async fn log_merge(&self, record: &RequestRecord) -> anyhow::Result<()> {
        let data = serde_json::json!({
            "pr": record.pr_number,
            "merge_sha": record.merge_sha,
            "approved_by": trailers::approved_by(record),
            "granted_at": record.granted_at.map(crate::clock::iso),
            "expires_at": record.expires_at.map(crate::clock::iso),
        });
        self.record_event_once(EventKind::Merge, &record.id, None, data)
            .await?;
        Ok(())
    }

    /// Everything checked before a merge: the role still in the policy and the approvals still
    /// live. `None` when the merge was refused (with its one comment). After a crash right after
    /// the merge, the merge stands: nothing is re-judged, and the applied record was written
    /// before it.
    async fn prepare_merge(&self, record: &mut RequestRecord) -> anyhow::Result<Option<Ready>> {
        // What a grant applies is recorded right before its merge: without that record, no
        // merge of the bot's happened yet, and the forge need not be asked.
        if self.store.applied_grant(&record.id).await?.is_some() {
            let pr = self.forge.change(record.pr_number).await?;
            if pr.info.merged {
                if self.is_own_merge(pr.merged_by.as_ref()) {
                    // Set back to pending when the merge call's answer was lost.
                    let status = merge_status(record);
                    self.set_status_on(&record.head_sha, StatusState::Success, &status)
                        .await?;
                }
                return Ok(Some(Ready::AlreadyMerged)); // the guard returns the merge as it happened
            }
        }
        let Some(ready) = self.grant_plan(record).await? else {
            let why = "the role is not in the default branch's policy any more";
            self.refuse_merge(record.clone(), why).await?;
            return Ok(None);
        };
        Ok(Some(ready))
    }

    /// The round trip right before a request's merge, its calls made together: the PR read
    /// for the merge guard, the `breakglass/policy` status the merge needs (a required status
    /// check), the requester's teams for the policy's re-check, and for approvals, that they
    /// are still there and that the head did not move and come back unheard since they were
    /// given (see [`super::unheard`]).
    async fn merge_round(&self, record: &mut RequestRecord) -> anyhow::Result<LastReads> {
        let fast_path = record.fast_path_rule.is_some();
        let status = merge_status(record);
        let head = record.head_sha.clone();
        let number = record.pr_number;
        let check = HeadCheck::of(record)?;
        let asked = record.clone(); // `live_approvals` holds the record meanwhile
        let (pr, set, requester, live, moved) = tokio::join!(
            self.forge.change(number),
            self.set_status_on(&head, StatusState::Success, &status),
            self.requester_at_merge(&asked),
            async {
                if fast_path {
                    Ok(None) // approved by its rule, reviewed after the fact
                } else {
                    self.live_approvals(record).await
                }
            },
            async {
                if fast_path {
                    Ok(None) // counts no approval
                } else {
                    self.unheard_move(&check).await // reads nothing when none is needed
                }
            }
        );
        set?;
        Ok(LastReads {
            pr: pr?,
            withdrawn: live?,
            moved: moved?,
            requester: requester?,
        })
    }

    /// Merges through the guard (on `read`, the PR as just read, when given). A bot-built PR
    /// whose head someone else moved is put back to the bot's own commit (recorded as
    /// tampering) and tried once more.
    pub(super) async fn merge_own_or_theirs(
        &self,
        plan: &MergePlan,
        read: Option<PullRequestState>,
    ) -> anyhow::Result<Result<Merged, Refusal>> {
        let first = self.guarded_merge(plan, read).await?;
        let Err(Refusal::HeadMoved { found }) = &first else {
            return Ok(first);
        };
        let Some(change) = self.store.change_of_pr(plan.pr).await? else {
            return Ok(first);
        };
        if change.head_sha.as_deref() != Some(plan.head_sha.as_str()) {
            return Ok(first);
        }
        let Some(head) = self.tampered(&change, None, found).await? else {
            return Ok(first);
        };
        // On GitLab the restored branch is a new commit with the bot's own content.
        let plan = MergePlan {
            head_sha: head,
            ..plan.clone()
        };
        self.guarded_merge(&plan, None).await
    }

    /// The role, the grant's values (from the request file at the head), the grant files as
    /// rendered before the merge and the request file's blob, as the default branch's policy
    /// defines them now (`None` when the role is gone): what the PR must hold.
    pub(super) async fn grant_plan(&self, record: &RequestRecord) -> anyhow::Result<Option<Ready>> {
        let Some(role) = self.current_role(record).await? else {
            return Ok(None);
        };
        let request_path = Self::request_path(record);
        if self.is_own_head(record).await? {
            // The bot wrote the request file from this record's values; grant files are
            // checked against the head as written (their rendering depends on the file's text).
            let spec = GrantSpec {
                expires_at: crate::grant::NOT_YET_GRANTED.to_owned(),
                ..Self::spec(record)
            };
            let staged = self.providers.rendered_files(&role, &spec)?;
            if staged.is_empty() {
                let written = self
                    .store
                    .get_change(record.id.as_str(), ChangeKind::Request)
                    .await?;
                let request_blob = written.and_then(|c| c.blobs.get(&request_path).cloned());
                return Ok(Some(Ready::Checked {
                    role,
                    spec,
                    staged,
                    request_blob,
                }));
            }
        }
        let kept = self.caches.request_text(&record.head_sha, &request_path);
        let text = match kept {
            Some(text) => Some(text),
            None => self
                .forge
                .read_file(&record.head_sha, &request_path)
                .await?
                .map(|f| f.text),
        };
        let Some(text) = text else {
            return Ok(Some(Ready::Checked {
                role,
                spec: Self::spec(record),
                staged: Vec::new(),
                request_blob: None,
            }));
        };
        let request = AccessRequest::from_yaml(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
        // The file as the merge will bring it (the guard merges this head only).
        let request_blob = super::change::blob_id(&text)?;
        self.caches
            .keep_request_blob(record.id.as_str(), &request_blob);
        let path = RequestPath {
            environment: record.environment.clone(),
            id: record.id.clone(),
        };
        // The duration the request was decided with (the policy's default when it names none).
        let decided = crate::duration::HumanDuration::from_secs(record.duration_secs);
        let spec =
            super::pull_request::grant_spec(&request, &path, &record.requester_login, decided);
        let staged = self.providers.rendered_files(&role, &spec)?;
        Ok(Some(Ready::Checked {
            role,
            spec,
            staged,
            request_blob: Some(request_blob),
        }))
    }

    /// Whether the request's head is the bot's own commit on the branch it built for it.
    async fn is_own_head(&self, record: &RequestRecord) -> anyhow::Result<bool> {
        Ok(self
            .store
            .change_of_pr(record.pr_number)
            .await?
            .is_some_and(|c| {
                c.kind == ChangeKind::Request
                    && c.head_sha.as_deref() == Some(record.head_sha.as_str())
            }))
    }

    /// The bot's merge went into `base`, not the default branch (a member retargeted the PR
    /// between the guard's read and the merge; GitLab's answer names the branch). Never granted,
    /// and never to be merged again: the request is closed, as the bot's doing, with one
    /// comment. Its merge webhook then finds it closed, not a hand merge to report.
    async fn closed_merged_elsewhere(
        &self,
        mut record: RequestRecord,
        base: &str,
    ) -> anyhow::Result<()> {
        let why = Refusal::MergedElsewhere(base.to_owned()).to_string();
        let text = with_fast_path_verdict(&record, comment::retargeted_merge_comment(&why));
        self.forge
            .note(Thread::Change(record.pr_number), &text)
            .await?;
        let data = serde_json::json!({ "merged_by_hand": false, "merged_into": base });
        self.close_request(&mut record, data, None).await
    }

    /// The merge call failed and the job will try again: the check the merge set green goes
    /// back to pending meanwhile, so that a required status check stops a hand merge of what
    /// the retry may no longer merge (an approval withdrawn, a policy tightened). Best effort:
    /// the forge may be what failed, and a hand merge is never taken for the bot's anyway.
    async fn hold_status_for_retry(&self, record: &RequestRecord) {
        let held = self
            .set_status_on(
                &record.head_sha,
                StatusState::Pending,
                "approved: breakglass merges it once the forge answers",
            )
            .await;
        if let Err(err) = held {
            tracing::warn!(request = %record.id, error = %format!("{err:#}"), "cannot set the check back to pending");
        }
    }

    /// Says on the request's PR why it was not merged (with the fast path's verdict, which a
    /// fast path says with its grant or its refusal).
    async fn say_not_merged(&self, record: &RequestRecord, why: &str) -> anyhow::Result<()> {
        let text =
            with_fast_path_verdict(record, comment::not_merged_comment(why, self.forge.kind()));
        self.forge
            .note(Thread::Change(record.pr_number), &text)
            .await?;
        Ok(())
    }

    /// The merge did not happen: one comment, back to pending, and no retry on its own. Only a
    /// push (a new head) or a new approval moves the request again: a refused merge must not
    /// loop.
    pub(super) async fn refuse_merge(
        &self,
        mut record: RequestRecord,
        why: &str,
    ) -> anyhow::Result<()> {
        // First, so that a forge failing here leaves the step to try again as it was.
        self.take_back_stamp(&mut record).await?;
        self.say_not_merged(&record, why).await?;
        let mut stored = stored_decision(&record)?.clone();
        stored.merge_refused = Some(why.to_owned());
        record.decision = Some(stored.clone());
        record.state = RequestState::Pending;
        super::clear_grant_plan(&mut record);
        self.store.update_request(&mut record, self.now()).await?;
        self.set_status_on(
            &record.head_sha,
            StatusState::Pending,
            &format!("not merged: {why}"),
        )
        .await?;
        if stored.decision.approvals_required > 0 {
            self.schedule(JobKind::Poll, &record.id, self.now()).await?;
        }
        Ok(())
    }

    /// What the grant of `record` applies: the record made at merge time; for grants merged
    /// before that record existed, the role as the policy defines it now.
    pub(super) async fn applied(
        &self,
        record: &RequestRecord,
    ) -> anyhow::Result<Option<AppliedGrant>> {
        if let Some(applied) = self.store.applied_grant(&record.id).await? {
            return Ok(Some(applied));
        }
        Ok(self.current_role(record).await?.map(|role| AppliedGrant {
            request_id: record.id.clone(),
            provider: role.provider.clone(),
            role,
            files: Vec::new(),
            request_blob: None,
            applied_at: self.now(),
        }))
    }

    /// Applies the grant, opens the revert PR and posts the expiry comment.
    pub(super) async fn job_grant(&self, id: &RequestId) -> anyhow::Result<()> {
        let Some(mut record) = self.store.get_request(id).await? else {
            return Ok(());
        };
        if record.state != RequestState::Active {
            // Revoked before the grant step ran: nothing to give. Unless this is the step run
            // again after a crash that followed the grant: what was given is still announced.
            let logged = self.store.events_for_request(id).await?;
            if logged.iter().any(|e| e.kind == EventKind::Grant) {
                self.announce_grant(&record, false).await?;
            }
            return Ok(());
        }
        let Some(applied) = self.applied(&record).await? else {
            // Nothing says what to apply: fail closed.
            record.state = RequestState::Revoking;
            record.revoke_reason = Some(RevokeReason::Reconcile);
            self.store.update_request(&mut record, self.now()).await?;
            return self.schedule(JobKind::Revoke, id, self.now()).await;
        };
        if let Err(err) = self
            .providers
            .apply(&applied.role, &Self::spec(&record))
            .await
        {
            if err.is_retryable() {
                return Err(err.into());
            }
            // Retrying changes nothing (misconfigured, denied, unavailable): say so and end the
            // request cleanly instead of retrying forever.
            tracing::error!(request = %id, error = %err, "the grant cannot be applied; revoking");
            let text =
                with_fast_path_verdict(&record, comment::grant_failed_comment(&err.to_string()));
            self.forge
                .note(Thread::Change(record.pr_number), &text)
                .await?;
            record.state = RequestState::Revoking;
            record.revoke_reason = Some(RevokeReason::Reconcile);
            self.store.update_request(&mut record, self.now()).await?;
            return self.schedule(JobKind::Revoke, id, self.now()).await;
        }
        if self.taken_back_if_ended(id).await? {
            return Ok(());
        }
        // Applied again when the step runs again (providers are idempotent), logged once.
        let first = self
            .record_event_once(
                EventKind::Grant,
                id,
                super::events::requester(&record),
                serde_json::json!({ "provider": applied.provider, "role": record.role, "expires_at": record.expires_at.map(crate::clock::iso) }),
            )
            .await?;
        if first {
            self.metrics.inc(
                "breakglass_grants_total",
                format!("provider=\"{}\"", applied.provider),
            );
        }
        // Logged just now: no earlier run of this step can have announced it.
        self.announce_grant(&record, first).await?;
        self.schedule(JobKind::OpenRevert, id, self.now()).await
    }

    /// Whether request `id` ended (or began to) while its grant was being applied (by the
    /// grant step, or again by an extension); if so, what was just applied is taken back at
    /// the provider. A due revoke waits for the grant
    /// step only briefly (the step may hang on the forge), and another replica's never does:
    /// its provider revoke may have come before this apply. It marked the request `Revoking`
    /// before that revoke, so reading the request after the apply sees it.
    pub(super) async fn taken_back_if_ended(&self, id: &RequestId) -> anyhow::Result<bool> {
        let found = self.store.granted_by_ids(std::slice::from_ref(id)).await?;
        let Some(mut granted) = found.into_iter().next() else {
            return Ok(true);
        };
        if granted.record.state == RequestState::Active {
            return Ok(false);
        }
        tracing::warn!(request = %id, state = %granted.record.state, "ended while its grant was applied; taking it back");
        self.provider_revoke(&mut granted).await?;
        Ok(true)
    }

    /// The granted note on the request PR, said once: `unsaid` when the grant was logged by this
    /// very run (the note follows the log), else the thread is read first.
    async fn announce_grant(&self, record: &RequestRecord, unsaid: bool) -> anyhow::Result<()> {
        let text = self.granted_text(record)?;
        let thread = Thread::Change(record.pr_number);
        if unsaid {
            self.forge.note(thread, &text).await?;
            return Ok(());
        }
        self.note_once(thread, super::once::GRANTED, &text).await
    }

    /// The granted note of `record`.
    pub(super) fn granted_text(&self, record: &RequestRecord) -> anyhow::Result<String> {
        let expires_at = record
            .expires_at
            .context("a granted request has an expiry")?;
        // Approvers are mentioned; `fast-path:<rule>` and `self-service` read as they are.
        let approved_by = match (&record.fast_path_rule, &record.approved_by) {
            (None, Some(by)) if !by.is_empty() => by
                .iter()
                .map(|login| comment::mention(login.as_str()))
                .collect::<Vec<_>>()
                .join(", "),
            _ => trailers::approved_by(record),
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
            self.forge.kind().change_word(),
        );
        match fast_path_verdict(record) {
            Some(verdict) => Ok(format!("{text}\n\n{verdict}")),
            None => Ok(text),
        }
    }

    /// After the expiry comment: the fast-path label (and the poll for its review) and the
    /// revert PR.
    pub(super) async fn job_open_revert(&self, id: &RequestId) -> anyhow::Result<()> {
        let Some(mut record) = self.store.get_request(id).await? else {
            return Ok(());
        };
        if record.state != RequestState::Active {
            return Ok(()); // revoked meanwhile: the revoke removes the files itself
        }
        let Some(applied) = self.applied(&record).await? else {
            return Ok(()); // the grant step revokes a grant with no record
        };
        if record.fast_path_rule.is_some() && record.reviewed_at.is_none() {
            self.forge
                .add_label(record.pr_number, super::NEEDS_REVIEW_LABEL)
                .await?;
            self.schedule(JobKind::Poll, id, self.now()).await?;
        }
        if let Err(err) = self.ensure_revert_pr(&mut record, &applied).await {
            // Revoked while the revert PR was being built: the revert job took the change over
            // (abandoning this half-built one, its branch deleted under it) and removes the
            // files itself; nothing is left for this step to do.
            let now = self.store.get_request(id).await?.map(|r| r.state);
            if now != Some(RequestState::Active) {
                tracing::info!(request = %id, error = %format!("{err:#}"), "revoked while its revert PR was built; the revert takes over");
                return Ok(());
            }
            return Err(err);
        }
        Ok(())
    }

    /// The files a revert deletes: the request file and the grant files applied with it, each
    /// with the blob the bot knows it by without a read: the request file as the bot wrote it
    /// on its own branch (`written`), the grant files as they were applied (the merge guard
    /// checked that the PR held exactly those).
    fn revert_writes(
        record: &RequestRecord,
        applied: Option<&AppliedGrant>,
        written: &BTreeMap<String, String>,
    ) -> anyhow::Result<Vec<Write>> {
        let request_path = Self::request_path(record);
        let mut writes = vec![Write::Delete {
            blob: written.get(&request_path).cloned(),
            path: request_path,
        }];
        for file in applied.iter().flat_map(|a| a.files.iter()) {
            writes.push(Write::Delete {
                path: file.path.clone(),
                blob: Some(super::change::blob_id(&file.content)?),
            });
        }
        Ok(writes)
    }

    /// The bot-built PR that removes the request (and its grant files) from the default branch;
    /// built once, rebuilt when it is gone. `None` when nothing is left to remove.
    async fn ensure_revert_pr(
        &self,
        record: &mut RequestRecord,
        applied: &AppliedGrant,
    ) -> anyhow::Result<Option<u64>> {
        if let Some(change) = self
            .store
            .get_change(record.id.as_str(), ChangeKind::Revert)
            .await?
            && let (Some(number), Some(_)) = (change.pr_number, &change.head_sha)
        {
            let pr = self.forge.change(number).await?;
            if pr.open || pr.info.merged {
                return Ok(Some(number));
            }
        }
        self.build_revert(record, Some(applied)).await
    }

    pub(super) async fn build_revert(
        &self,
        record: &mut RequestRecord,
        applied: Option<&AppliedGrant>,
    ) -> anyhow::Result<Option<u64>> {
        let expires_at = record
            .expires_at
            .context("an active request has an expiry")?;
        let mut written = self
            .store
            .get_change(record.id.as_str(), ChangeKind::Request)
            .await?
            .map(|change| change.blobs)
            .unwrap_or_default();
        // A requester's own file: its blob as checked at the merge, when kept.
        if let Some(blob) = self.caches.request_blob(record.id.as_str()) {
            written.entry(Self::request_path(record)).or_insert(blob);
        }
        let change = self
            .build_change(
                record.id.as_str(),
                ChangeKind::Revert,
                &Self::revert_writes(record, applied, &written)?,
                &comment::revert_pr_title(record.id.as_str(), expires_at),
                &comment::revert_pr_body(
                    record.id.as_str(),
                    &self.forge.change_ref(record.pr_number),
                    expires_at,
                    self.forge.kind(),
                ),
            )
            .await?;
        let number = change.map(|built| built.pr.info.number);
        if number.is_some() {
            record.revert_pr_number = number;
            self.store.update_request(record, self.now()).await?;
        }
        Ok(number)
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
                let said = self
                    .forge
                    .note(Thread::Change(record.pr_number), &text)
                    .await
                    .map(|_| ())
                    .map_err(anyhow::Error::from);
                gone_is_said(&record, said)
            }
            _ => Ok(()),
        }
    }

    /// A push. To a bot branch: tampering unless the bot pushed. To the default branch by
    /// anyone but the bot (a direct push, a PR merged by hand): every request file and grant file
    /// it adds is removed again in full, so that `requests/` lists only grants the bot made.
    /// Nothing was granted, so no provider is involved. A request file removed by hand ends
    /// its grant (reconcile). What a push changed is read from its listed commits, or, when
    /// the listing may leave commits out, from the forge's comparison of its two ends.
    pub(super) async fn handle_push(
        &self,
        git_ref: &str,
        (before, after): (&str, &str),
        commits: &PushedCommits,
        pusher: &Actor,
        said_default: Option<&str>,
    ) -> anyhow::Result<()> {
        let Some(branch) = git_ref.strip_prefix("refs/heads/") else {
            return Ok(());
        };
        if branch.starts_with(BOT_BRANCH_PREFIX) {
            return self.handle_bot_branch_push(branch, after, pusher).await;
        }
        let default = match said_default {
            Some(name) => {
                self.default_branch_named(name);
                name.to_owned()
            }
            None => self.default_branch().await?,
        };
        if branch != default {
            return Ok(());
        }
        let by_bot = pusher.id == self.bot.id;
        let maybe_cut = listing_may_be_cut(commits);
        // Anyone else's push is compared from its two ends: its listing may be cut, and a
        // force push lists only the commits new to it, not what it brought back from older
        // history (a revoked request file, say). The bot's own merges list their one or two
        // commits and went through the merge guard: they never cost a comparison.
        let changed = if !by_bot {
            Cow::Owned(self.compared_push(before, after, commits).await?)
        } else {
            Cow::Borrowed(&**commits)
        };
        self.follow_default_push(after, &changed, maybe_cut).await?;
        // Handled: what it removed is reconciled (an error before this leaves a gap).
        self.caches.push_handled(&super::cache::HandledPush {
            before,
            after,
            by_bot,
            commits: commits.len(),
        });
        if by_bot {
            return Ok(());
        }
        let removed = self.remove_landed_without_bot(&changed, pusher).await;
        let revoked = self.revoke_tampered_grants(&changed, pusher).await;
        removed.and(revoked)
    }

    /// What a push by anyone but the bot changed on the default branch, as one
    /// commit-like summary compared from its two ends by the forge (the listing is never
    /// trusted alone: an attacker picks how many commits bury the one that matters). The
    /// listed commits are kept beside it only when the comparison cannot be whole, and stand
    /// alone when there is nothing to compare (a created or deleted branch, a history the
    /// forge cannot compare): the reconciliation that follows such a push covers the rest.
    async fn compared_push(
        &self,
        before: &str,
        after: &str,
        listed: &[PushedCommit],
    ) -> anyhow::Result<Vec<PushedCommit>> {
        let mut changed = listed.to_vec();
        if is_zero_sha(before) || is_zero_sha(after) {
            return Ok(changed);
        }
        // Both ways, as each diffs from the merge base: `before...after` alone misses what a
        // push that rewrote history brought back from before `before`.
        let (forward, backward) = match tokio::try_join!(
            self.forge.compare_commits(before, after),
            self.forge.compare_commits(after, before)
        ) {
            Ok(both) => both,
            Err(err) if err.status() == Some(404) => {
                tracing::warn!(%before, %after, %err, "cannot compare the ends of a push that may list only some of its commits; going by the listed ones");
                return Ok(changed);
            }
            Err(err) => return Err(err.into()),
        };
        if comparisons_are_whole(&forward, &backward) {
            changed.clear();
        } else {
            tracing::warn!(%before, %after, "the comparison of a push's ends is cut short or ambiguous; going by it and the listed commits");
        }
        changed.push(net_change(after, &forward.files, &backward.files));
        Ok(changed)
    }

    /// What a push to the default branch changes for the bot: its head for the next bot
    /// change, the cached policies when they may have changed, and the grants whose request
    /// file it removed or whose role a policy change may have taken away (reconciled now).
    async fn follow_default_push(
        &self,
        after: &str,
        commits: &[PushedCommit],
        maybe_cut: bool,
    ) -> anyhow::Result<()> {
        let removed: Vec<RequestPath> = commits
            .iter()
            .flat_map(|c| c.removed.iter())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter_map(|path| RequestPath::parse(path))
            .collect();
        // A policy changed: a role taken out of it ends the grants that hold it, now.
        let policies = format!("{}/", self.settings.policies_path.trim_end_matches('/'));
        let policy_changed = commits
            .iter()
            .flat_map(|c| c.added.iter().chain(&c.modified).chain(&c.removed))
            .any(|path| path.starts_with(&policies));
        // A push whose webhook may leave commits out may have changed anything: the cached
        // policies go too.
        let policy_changed = policy_changed || maybe_cut;
        if policy_changed {
            self.policies_changed().await?;
        }
        // The branch's head for the next bot change (an all-zero `after` is a deleted branch).
        if !is_zero_sha(after) {
            self.default_head_moved(after).await?;
        } else {
            self.forget_default_head();
        }
        if !removed.is_empty() || policy_changed {
            let baseline = self.baseline().await?;
            for request in &removed {
                self.reconcile(&request.id, &baseline, false).await?;
            }
            if policy_changed {
                self.reconcile_active(&baseline).await?;
            }
        }
        if policy_changed {
            // Last: a PR that cannot be decided now must not hold the rest of the push back.
            self.decide_awaiting_policies().await?;
        }
        Ok(())
    }

    /// Request and grant files that a push by anyone but the bot added to the default branch:
    /// never granted, so removed in full by guarded bot changes, one per request.
    async fn remove_landed_without_bot(
        &self,
        commits: &[PushedCommit],
        pusher: &Actor,
    ) -> anyhow::Result<()> {
        // A merge's push lists a file under several commits: look at each path once.
        let added: BTreeSet<&String> = commits.iter().flat_map(|c| c.added.iter()).collect();
        let roots = self.grant_roots().await?;
        let is_grant = |path: &str| roots.iter().any(|root| path.starts_with(root.as_str()));
        let unauthorized: Vec<&String> = added
            .into_iter()
            .filter(|p| p.starts_with("requests/") || is_grant(p))
            .collect();
        self.remove_in_groups(&unauthorized, &pusher.login, None)
            .await
    }

    /// Removes `unauthorized` files from the default branch, one guarded bot change per
    /// request: a push's (by `pusher`) or what reconciliation's listing (read at `listed_at`)
    /// found no request holds; a file whose removal was built since is left to that removal.
    pub(super) async fn remove_in_groups(
        &self,
        unauthorized: &[&String],
        pusher: &str,
        listed_at: Option<DateTime<Utc>>,
    ) -> anyhow::Result<()> {
        // One at a time, each file read again first: a push's handler and a reconciliation
        // pass may find the same files, and the second must neither remove nor count them again.
        let _one_at_a_time = self.store.removal_lock().await?;
        let default = self.default_branch().await?;
        let mut present = Vec::new();
        for path in unauthorized {
            let since = match listed_at {
                Some(at) => self.removal_since(path, at).await?,
                None => false,
            };
            if !since
                && self
                    .forge
                    .read_default_file(&default, path)
                    .await?
                    .is_some()
            {
                present.push(*path);
            }
        }
        // Each request's files on their own: one removal that fails (and is tried again with
        // the delivery or the next pass) must not keep the others on the default branch.
        let mut failed = None;
        for (subject, paths) in group_by_request(&present) {
            tracing::warn!(%subject, ?paths, %pusher, "files reached the default branch without breakglass; removing them");
            self.metrics
                .inc("breakglass_anomalies_total", "kind=\"landed_without_bot\"");
            if let Err(err) = self.remove_unauthorized(&subject, &paths).await {
                tracing::error!(%subject, error = %format!("{err:#}"), "removing files that landed without breakglass failed; tried again");
                failed.get_or_insert(err);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Where grant files live: the fixed part of every `iac` role's `output` (and `grants/`),
    /// as the audit computes them too (see [`crate::grant::iac::grant_roots`]).
    pub(super) async fn grant_roots(&self) -> anyhow::Result<BTreeSet<String>> {
        let (_, policies) = self.load_policies().await?;
        Ok(crate::grant::iac::grant_roots(policies.as_ref().ok()))
    }

    /// Whether a removal of `path` was built at or after `since` (a push's handler, or a
    /// removal merged elsewhere made good, got there first).
    async fn removal_since(&self, path: &str, since: DateTime<Utc>) -> anyhow::Result<bool> {
        for subject in named_ids(path) {
            let change = self.store.get_change(subject.as_str(), ChangeKind::Removal);
            if change
                .await?
                .is_some_and(|c| c.updated_at >= since && c.paths.iter().any(|p| p == path))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Removes files that landed without the bot, through a bot change and the merge guard.
    pub(super) async fn remove_unauthorized(
        &self,
        subject: &str,
        paths: &[String],
    ) -> anyhow::Result<()> {
        let mut readded = false;
        for request in paths.iter().filter_map(|p| RequestPath::parse(p)) {
            let known = self.store.get_request(&request.id).await?;
            readded |= known
                .is_some_and(|r| matches!(r.state, RequestState::Revoked | RequestState::Closed));
        }
        let mut body = comment::direct_push_comment(paths);
        if readded {
            body = format!("{body}\n\n{}", comment::readded_comment(subject));
            self.metrics.inc(
                "breakglass_anomalies_total",
                "kind=\"readded_after_revoke\"",
            );
        }
        let title = format!("breakglass: remove {subject} (landed without breakglass)");
        let removal = Removal {
            subject,
            paths,
            title: &title,
            body: &body,
            readded,
            granted: false,
        };
        self.land_removal(&removal).await
    }

    /// The files of a revoked request whose revert PR was merged into another branch (GitHub
    /// retargeted it between the guard's read and the merge; its merge answer does not say
    /// where): removed from the default branch by a fresh change, as files that landed there.
    pub(super) async fn remove_left_behind(
        &self,
        record: &RequestRecord,
        base: &str,
    ) -> anyhow::Result<()> {
        match self
            .store
            .get_change(record.id.as_str(), ChangeKind::Revert)
            .await?
        {
            Some(revert) => self.remove_again(&revert, base).await,
            None => Ok(()),
        }
    }

    /// The files a revert or removal PR was to delete, when it was merged into another branch
    /// (retargeted while the bot merged it): deleted from the default branch by a fresh change.
    pub(super) async fn remove_again(
        &self,
        merged_elsewhere: &crate::store::Change,
        base: &str,
    ) -> anyhow::Result<()> {
        // Not beside a reconciliation pass's removal of the same files (see `remove_in_groups`).
        let _one_at_a_time = self.store.removal_lock().await?;
        let (subject, paths) = (merged_elsewhere.subject.as_str(), &merged_elsewhere.paths);
        let kind = merged_elsewhere.kind;
        let title = format!("breakglass: remove {subject} (its {kind} was merged into {base})");
        let body = match kind {
            ChangeKind::Revert => comment::revert_elsewhere_comment(base, paths),
            _ => comment::removal_elsewhere_comment(base, paths),
        };
        let removal = Removal {
            subject,
            paths,
            title: &title,
            body: &body,
            readded: false,
            granted: kind == ChangeKind::Revert,
        };
        self.land_removal(&removal).await
    }

    /// Builds and merges (through the guard) a change that deletes `removal.paths` from the
    /// default branch, said on its PR, logged as a `remove` event.
    async fn land_removal(&self, removal: &Removal<'_>) -> anyhow::Result<()> {
        let Removal {
            subject,
            paths,
            title,
            body,
            readded,
            granted,
        } = *removal;
        let default = self.default_branch().await?;
        let request = paths.iter().find_map(|p| RequestPath::parse(p));
        let writes: Vec<Write> = paths
            .iter()
            .map(|path| Write::Delete {
                path: path.clone(),
                blob: None,
            })
            .collect();
        let request_id = request.as_ref().map(|r| &r.id);
        // The files of a grant whose revert went elsewhere end that grant on this branch: a
        // revoke in its history. Any other removal's files were never granted.
        let (verb, message) = match request_id {
            Some(id) if granted => ("revoke", trailers::revoked_elsewhere_message(paths, id)),
            _ => (
                "remove",
                trailers::removal_message(paths, &default, request_id),
            ),
        };
        let mut last = None;
        for _ in 0..2 {
            let Some(super::change::Built { change, pr, .. }) = self
                .build_change(subject, ChangeKind::Removal, &writes, title, body)
                .await?
            else {
                return Ok(()); // already removed (a redelivery, or a later push)
            };
            let number = pr.info.number;
            if last.is_none() {
                self.forge.note(Thread::Change(number), body).await?;
            }
            let plan = MergePlan::deletion(
                &change,
                format!("breakglass: {verb} {subject} (reconcile)"),
                message.clone(),
            )?;
            match self.merge_own_or_theirs(&plan, None).await? {
                Ok(merged) => {
                    self.record_event(
                        EventKind::Remove,
                        request.as_ref().map(|r| &r.id),
                        None,
                        serde_json::json!({ "paths": paths, "reason": "reconcile", "readded": readded, "revert_sha": merged.sha }),
                    )
                    .await?;
                    self.forge.delete_branch(&change.branch).await?;
                    return Ok(());
                }
                Err(why) => last = Some(why),
            }
        }
        let why = last.context("two attempts failed")?;
        tracing::error!(%subject, %why, "the removal of files that landed without breakglass cannot be merged");
        anyhow::bail!("cannot merge the removal of {subject}: {why}")
    }
}

/// Whether a push's webhook may not list every commit of the push: the forge said it left
/// some out, it lists as many as GitLab lists at most (its oldest dropped), or none (a branch
/// moved back, replaced, created or deleted).
fn listing_may_be_cut(commits: &PushedCommits) -> bool {
    commits.is_empty()
        || commits.len() >= super::cache::PUSH_COMMITS_CUT_AT
        || commits.left_some_out()
}

/// The all-zero id a push gives the missing end of a created or deleted branch.
fn is_zero_sha(sha: &str) -> bool {
    sha.bytes().all(|b| b == b'0')
}

/// Whether the two comparisons of a push's ends say all it changed: neither cut short, and
/// (unless `before` is an ancestor of `after`, when the backward one is empty) without merge
/// commits, which can give the two directions different merge bases.
fn comparisons_are_whole(forward: &ChangedFiles, backward: &ChangedFiles) -> bool {
    let one_base = backward.files.is_empty() || !(forward.merge_commits || backward.merge_commits);
    forward.complete && backward.complete && one_base
}

/// Whether a path is there at the merge base and at the compared commit.
#[derive(Clone, Copy)]
struct Ends {
    at_base: bool,
    at_tip: bool,
}

/// The paths a comparison touches, with where each is (a rename leaves its old path).
fn ends_of(files: &[ChangedFile]) -> BTreeMap<&str, Ends> {
    let mut ends: BTreeMap<&str, Ends> = BTreeMap::new();
    // A path listed twice (a file turned into a symbolic link: removed, and added) is at an
    // end when either entry says so: a link in an active grant's place is a modified file.
    let mut at = |path, at_base, at_tip| {
        let end = ends.entry(path).or_insert(Ends {
            at_base: false,
            at_tip: false,
        });
        end.at_base |= at_base;
        end.at_tip |= at_tip;
    };
    for file in files {
        let (at_base, at_tip) = match file.change {
            FileChange::Removed => (true, false),
            FileChange::Modified => (true, true),
            // A copy, or a status the bot does not know: taken as new, so that a request file
            // in it is never let through as unchanged.
            FileChange::Added | FileChange::Renamed | FileChange::Other => (false, true),
        };
        if let Some(old) = file.previous_path.as_deref() {
            at(old, true, false);
        }
        at(file.path.as_str(), at_base, at_tip);
    }
    ends
}

/// What a push changed on its branch, as one commit: from the comparisons `base...after`
/// (`forward`) and `base...before` (`backward`) of one merge base, where a path is at each end
/// as it is at the base unless that side's diff says otherwise. After a fast-forward
/// `backward` is empty and this is `forward`. A path at both ends that either side touched is
/// modified: its two versions may differ.
fn net_change(after: &str, forward: &[ChangedFile], backward: &[ChangedFile]) -> PushedCommit {
    let (forward, backward) = (ends_of(forward), ends_of(backward));
    let mut change = PushedCommit {
        id: after.to_owned(),
        message: String::new(),
        added: Vec::new(),
        removed: Vec::new(),
        modified: Vec::new(),
    };
    let paths: BTreeSet<&str> = forward.keys().chain(backward.keys()).copied().collect();
    for path in paths {
        let (ahead, behind) = (forward.get(path), backward.get(path));
        let at_base = ahead.or(behind).is_some_and(|e| e.at_base);
        let at_before = behind.map_or(at_base, |e| e.at_tip);
        let at_after = ahead.map_or(at_base, |e| e.at_tip);
        let list = match (at_before, at_after) {
            (false, true) => &mut change.added,
            (true, false) => &mut change.removed,
            (true, true) => &mut change.modified,
            (false, false) => continue,
        };
        list.push(path.to_owned());
    }
    change
}

/// A change that deletes files from the default branch, and what it says.
#[derive(Clone, Copy)]
struct Removal<'a> {
    subject: &'a str,
    paths: &'a [String],
    title: &'a str,
    body: &'a str,
    /// The files are an already revoked request's, added again.
    readded: bool,
    /// The files are a granted request's, whose revert was merged into another branch.
    granted: bool,
}

/// Whether `err` comes from a forge call answered 404.
/// A note to a request's PR that the forge says is gone (a GitLab owner deleted the merge
/// request): nowhere to say it, and nothing to try again. The grant's own steps go on.
pub(super) fn gone_is_said(record: &RequestRecord, said: anyhow::Result<()>) -> anyhow::Result<()> {
    match said {
        Err(err) if not_found(&err) => {
            tracing::warn!(request = %record.id, pr = record.pr_number, error = %format!("{err:#}"), "the request's PR is gone: nothing said on it");
            Ok(())
        }
        said => said,
    }
}

pub(super) fn not_found(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<crate::forge::ForgeError>()
            .is_some_and(|e| e.status() == Some(404))
    })
}

/// The request ids a path may belong to: a request file's own id; for any other file, each
/// of its path's parts that is an id, as is or without its extension (a grant file is rendered
/// at a path that names its request, as `grants/{{ environment }}/{{ id }}.tf`).
pub(super) fn named_ids(path: &str) -> Vec<RequestId> {
    if let Some(request) = RequestPath::parse(path) {
        return vec![request.id];
    }
    let parts = path.split('/').flat_map(|part| {
        let stem = part.rsplit_once('.').map(|(stem, _)| stem);
        std::iter::once(part).chain(stem)
    });
    parts
        .filter_map(|part| RequestId::try_from(part.to_owned()).ok())
        .collect()
}

/// Files that landed without the bot, one group per request id: a request file goes with its
/// own id, a grant file with a request among them that its path names (see [`named_ids`]),
/// else with its own file stem.
fn group_by_request(paths: &[&String]) -> BTreeMap<String, Vec<String>> {
    let ids: BTreeSet<RequestId> = paths
        .iter()
        .filter_map(|p| RequestPath::parse(p))
        .map(|r| r.id)
        .collect();
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in paths {
        let stem = path
            .rsplit('/')
            .next()
            .and_then(|f| f.split('.').next())
            .unwrap_or(path);
        // A file name is anyone's text: its subject, which titles the removal, keeps only
        // characters that cannot change the shape of a commit message or a branch name.
        let subject = named_ids(path)
            .into_iter()
            .find(|id| ids.contains(id))
            .map_or_else(|| crate::names::plain_name(stem, 60), |id| id.to_string());
        groups.entry(subject).or_default().push((*path).clone());
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::{group_by_request, net_change};
    use crate::forge::{ChangedFile, EntryKind, FileChange};

    fn file(path: &str, change: FileChange) -> ChangedFile {
        ChangedFile {
            path: path.to_owned(),
            change,
            previous_path: None,
            kind: EntryKind::File,
            blob: None,
        }
    }

    #[test]
    fn a_fast_forward_changed_what_its_comparison_lists() {
        let forward = [
            file("requests/prod/sneaky.yaml", FileChange::Added),
            file("README.md", FileChange::Modified),
            file("requests/dev/old.yaml", FileChange::Removed),
            ChangedFile {
                previous_path: Some("notes/r.yaml".to_owned()),
                ..file("requests/prod/renamed.yaml", FileChange::Renamed)
            },
        ];
        let change = net_change("after", &forward, &[]);
        assert_eq!(
            change.added,
            ["requests/prod/renamed.yaml", "requests/prod/sneaky.yaml"]
        );
        assert_eq!(change.removed, ["notes/r.yaml", "requests/dev/old.yaml"]);
        assert_eq!(change.modified, ["README.md"]);
    }

    #[test]
    fn a_push_that_rewrote_history_changed_what_differs_between_its_two_ends() {
        // From the merge base: `after` adds `new` and keeps `kept`; `before` had added `kept`
        // too, and removed `revived` (a revert), which `after` still has from the base.
        let forward = [
            file("requests/prod/new.yaml", FileChange::Added),
            file("requests/prod/kept.yaml", FileChange::Added),
        ];
        let backward = [
            file("requests/prod/kept.yaml", FileChange::Added),
            file("requests/prod/revived.yaml", FileChange::Removed),
            file("requests/prod/dropped.yaml", FileChange::Added),
        ];
        let change = net_change("after", &forward, &backward);
        assert_eq!(
            change.added,
            ["requests/prod/new.yaml", "requests/prod/revived.yaml"]
        );
        assert_eq!(change.removed, ["requests/prod/dropped.yaml"]);
        assert_eq!(change.modified, ["requests/prod/kept.yaml"]);
    }

    #[test]
    fn files_that_landed_without_the_bot_are_removed_one_request_at_a_time() {
        let paths: Vec<String> = [
            "requests/prod/r1.yaml",
            "grants/prod/r1.tf",
            "requests/dev/r2.yaml",
            "grants/network/orphan.tf",
        ]
        .map(String::from)
        .into();
        let refs: Vec<&String> = paths.iter().collect();
        let groups = group_by_request(&refs);
        assert_eq!(
            groups.into_iter().collect::<Vec<_>>(),
            vec![
                (
                    "orphan".to_owned(),
                    vec!["grants/network/orphan.tf".to_owned()]
                ),
                (
                    "r1".to_owned(),
                    vec![
                        "requests/prod/r1.yaml".to_owned(),
                        "grants/prod/r1.tf".to_owned()
                    ]
                ),
                ("r2".to_owned(), vec!["requests/dev/r2.yaml".to_owned()]),
            ]
        );
    }
}
