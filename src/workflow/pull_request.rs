//! `pull_request` events: a request PR is checked against the default branch's policies, gets
//! the `breakglass/policy` status and a comment with the verdict, and moves on to approval,
//! or straight to merge on a fast path.

use std::collections::BTreeSet;

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use super::Workflow;
use super::change::Write;
use crate::comment;
use crate::forge::Thread;
use crate::forge::{
    Actor, ChangedFile, FileChange, PullRequestAction, PullRequestInfo, PullRequestState,
    StatusState,
};
use crate::grant::GrantSpec;
use crate::names::{Login, RequestId};
use crate::policy::decision::{Context, FastPathMiss};
use crate::policy::evaluate;
use crate::request::{AccessRequest, RequestPath};
use crate::store::{ChangeKind, EventKind, JobKind, StoreError};
use crate::store::{RequestRecord, RequestState, StoredDecision};

impl Workflow {
    pub(super) async fn handle_pull_request(
        &self,
        action: PullRequestAction,
        pr: &PullRequestInfo,
        _sender: &Actor,
        _delivery: &str,
    ) -> anyhow::Result<()> {
        let repo = &self.settings.repository;
        if self
            .store
            .find_request_by_revert_pr(self.forge_kind(), repo, pr.number)
            .await?
            .is_some()
        {
            return Ok(()); // our own revert PR
        }
        let existing = self
            .store
            .find_request_by_pr(self.forge_kind(), repo, pr.number)
            .await?;
        // The forge's time of the push, from the event that announces it.
        let pushed = matches!(
            action,
            PullRequestAction::Opened
                | PullRequestAction::Synchronized
                | PullRequestAction::Reopened
        )
        .then(|| pr.updated_at.map(|at| (pr.head_sha.clone(), at)))
        .flatten();
        match action {
            PullRequestAction::Closed => self.request_pr_closed(existing, pr).await,
            // The bot evaluates the PRs it opens itself, right after opening them.
            PullRequestAction::Opened if existing.is_none() && pr.author.id == self.bot.id => {
                Ok(())
            }
            _ => match existing {
                Some(record) if !decides_again(record.state, action) => Ok(()),
                existing => self.evaluate_pr(pr.number, existing, pushed).await,
            },
        }
    }

    async fn request_pr_closed(
        &self,
        existing: Option<RequestRecord>,
        pr: &PullRequestInfo,
    ) -> anyhow::Result<()> {
        let Some(mut record) = existing else {
            return Ok(());
        };
        if matches!(
            record.state,
            RequestState::Pending | RequestState::Denied | RequestState::Approved
        ) && record.merge_sha.is_none()
        {
            if pr.merged {
                // Merged by a person, not by the bot: never granted; the push removes it.
                tracing::warn!(request = %record.id, pr = pr.number, "request PR merged without breakglass");
                self.metrics
                    .inc("breakglass_anomalies_total", "kind=\"merged_without_bot\"");
            }
            self.close_request(
                &mut record,
                serde_json::json!({ "merged_by_hand": pr.merged }),
                None,
            )
            .await?;
        }
        Ok(())
    }

    /// Closes a request that will never be granted: state, event, no more polling.
    pub(super) async fn close_request(
        &self,
        record: &mut RequestRecord,
        data: serde_json::Value,
        actor: Option<&Actor>,
    ) -> anyhow::Result<()> {
        record.state = RequestState::Closed;
        record.approved_by = None;
        record.fast_path_rule = None;
        record.granted_at = None;
        record.expires_at = None;
        record.review_due_at = None;
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
        self.evaluate_current(current, existing, pushed).await
    }

    /// [`Self::evaluate_pr`] on a PR state the caller has just read.
    pub(super) async fn evaluate_current(
        &self,
        current: PullRequestState,
        existing: Option<RequestRecord>,
        pushed: Option<(String, DateTime<Utc>)>,
    ) -> anyhow::Result<()> {
        if !current.open {
            return Ok(());
        }
        let pr = &current.info;
        // Refusals that leave no record are said when a head arrives, not at every label.
        let announce = pushed.is_some();
        if let Some(repo) = pr.head_repo.as_deref()
            && !repo.eq_ignore_ascii_case(&self.settings.repository)
        {
            // Nothing from another repository is written to, decided or merged.
            return self.refuse_fork(pr, repo, announce).await;
        }
        if let Some(change) = self.store.change_of_pr(pr.number).await?
            && change.kind == ChangeKind::Request
            && change.head_sha.as_deref() != Some(pr.head_sha.as_str())
        {
            // Someone pushed to the branch the bot built for this request.
            return self.tampered(&change, None, &pr.head_sha).await.map(drop);
        }
        let files = self.forge.change_files(pr.number).await?;
        let Some((file, path)) = self.the_request_file(pr, &files, announce).await? else {
            return Ok(());
        };
        let text = self
            .forge
            .read_file(&pr.head_sha, &file.path)
            .await?
            .map(|f| f.text)
            .unwrap_or_default();
        let request = match AccessRequest::from_yaml(&text) {
            Ok(request) => request,
            Err(err) => {
                if announce || existing.is_some() {
                    self.forge
                        .note(
                            Thread::Change(pr.number),
                            &comment::invalid_request_comment(&file.path, &err.to_string()),
                        )
                        .await?;
                }
                self.set_status(pr, StatusState::Failure, "invalid request file")
                    .await?;
                self.metrics
                    .inc("breakglass_decisions_total", "outcome=\"invalid\"");
                return Ok(());
            }
        };
        let (default_branch, policies) = self.load_policies().await?;
        if pr.base_ref != default_branch {
            return Ok(());
        }
        let policies = match policies {
            Ok(policies) => policies,
            Err(problems) => {
                let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
                self.forge
                    .note(
                        Thread::Change(pr.number),
                        &comment::invalid_policies_comment(&default_branch, &list),
                    )
                    .await?;
                self.set_status(
                    pr,
                    StatusState::Error,
                    "the policies on the default branch are invalid",
                )
                .await?;
                return Ok(());
            }
        };
        let policy = policies.get(request.environment.as_str());
        // A PR the bot opened for a commenter is that commenter's request.
        let (login, requester_id) = match &existing {
            Some(record) => (record.requester_login.clone(), record.requester_id),
            None => (
                Login::try_from(pr.author.login.clone()).map_err(anyhow::Error::msg)?,
                pr.author.id,
            ),
        };
        let requester = self.resolve_requester(policy, &login).await?;
        let now = self.now();
        let mut decision = evaluate(
            &policies,
            &request,
            &Context {
                requester: Some(&requester),
                labels: &pr.labels,
                now,
                path: Some(&path),
            },
        );
        // `block_until_reviewed`: someone with an overdue fast-path review waits for approval.
        if let Some(fast) = decision
            .fast_path
            .clone()
            .filter(|f| f.block_until_reviewed)
            && let Some(overdue) = self.overdue_review_of(requester_id).await?
        {
            decision.fast_path = None;
            decision.fast_path_misses.push(FastPathMiss {
                rule: fast.rule,
                reasons: vec![format!(
                    "`{login}` has an overdue review of `{overdue}` (block_until_reviewed)"
                )],
            });
        }

        // A role the bot could not serve (provider not configured, principal unresolved, a
        // template that fails) is denied now, never merged and then stuck.
        let role = policy.and_then(|p| p.roles.get(&request.role));
        let unservable = match role {
            Some(role) if decision.allowed => self
                .providers
                .check(role, &grant_spec(&request, &path, &login))
                .err()
                .map(|err| err.to_string()),
            _ => None,
        };
        // The bot merges nothing but the request file and the grant files it renders itself.
        let mut allowed_paths = BTreeSet::from([file.path.clone()]);
        if let Some(role) = role
            && decision.allowed
            && unservable.is_none()
        {
            let spec = grant_spec(&request, &path, &login);
            for rendered in self
                .providers
                .rendered_files(role, &spec)
                .context("rendering grant files")?
            {
                let current = self.forge.read_file(&pr.head_sha, &rendered.path).await?;
                if current.as_ref().map(|f| f.text.as_str()) != Some(rendered.content.as_str()) {
                    if pr.author.id != self.bot.id {
                        // The bot writes only to its own branches: it re-opens the request there.
                        return self
                            .reopen_from_bot_branch(
                                pr,
                                &request,
                                &text,
                                &path,
                                existing,
                                requester_id,
                            )
                            .await;
                    }
                    // A bot branch rendered with an older policy: not merged as it is.
                    break;
                }
                allowed_paths.insert(rendered.path);
            }
        }
        let extra: Vec<String> = files
            .iter()
            .flat_map(|f| std::iter::once(&f.path).chain(f.previous_path.as_ref()))
            .filter(|p| !allowed_paths.contains(*p))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let allowed = decision.allowed && extra.is_empty() && unservable.is_none();
        let same_head = existing.as_ref().is_some_and(|r| r.head_sha == pr.head_sha);
        let old = existing.as_ref().and_then(|r| r.decision.clone());
        let head_since = match (&old, same_head) {
            (Some(old), true) if old.head_since.is_some() => old.head_since,
            _ => match &pushed {
                Some((sha, at)) if *sha == pr.head_sha => Some(*at),
                _ => pr.updated_at,
            },
        };
        let stored = StoredDecision {
            decision: decision.clone(),
            head_since,
            scope_problems: extra.clone(),
            merge_refused: old
                .as_ref()
                .filter(|_| same_head)
                .and_then(|o| o.merge_refused.clone()),
            draft: pr.draft,
            unservable: unservable.clone(),
        };
        let unchanged = same_head && old.as_ref().is_some_and(|old| same_verdict(old, &stored));
        let state = if allowed {
            RequestState::Pending
        } else {
            RequestState::Denied
        };
        let Some(mut record) = self
            .store_decision(
                existing,
                pr,
                &request,
                &path,
                &login,
                requester_id,
                state,
                &stored,
            )
            .await?
        else {
            return Ok(());
        };
        self.record_event(
            EventKind::Decision,
            Some(&record.id),
            super::events::requester(&record),
            serde_json::json!({
                "allowed": allowed,
                "head_sha": record.head_sha,
                "violations": decision.violations.iter().map(|v| v.rule.to_string()).collect::<Vec<_>>(),
                "beyond_request": extra,
                "approvals_required": decision.approvals_required,
                "fast_path": decision.fast_path.as_ref().map(|f| f.rule.clone()),
            }),
        )
        .await?;
        self.metrics.inc(
            "breakglass_decisions_total",
            format!("outcome=\"{}\"", if allowed { "allowed" } else { "denied" }),
        );
        let (status, description) = verdict_status(&stored, allowed);
        self.set_status(pr, status, &description).await?;
        if !unchanged {
            let mut text = match (extra.is_empty(), decision.allowed) {
                (true, _) => comment::decision_comment(record.id.as_str(), &decision),
                (false, true) => comment::out_of_scope_comment(&extra),
                (false, false) => format!(
                    "{}\n\n{}",
                    comment::out_of_scope_comment(&extra),
                    comment::decision_comment(record.id.as_str(), &decision)
                ),
            };
            if let Some(why) = &unservable {
                text = comment::role_unservable_comment(
                    request.environment.as_str(),
                    request.role.as_str(),
                    why,
                );
            }
            if pr.draft {
                text = format!("{text}\n\n{}", comment::draft_note());
            }
            self.forge.note(Thread::Change(pr.number), &text).await?;
        }
        if !allowed || pr.draft {
            self.store.cancel_job(JobKind::Poll, &record.id).await?;
            return Ok(());
        }
        if stored.merge_refused.is_some() {
            // Refused at this head: only a new approval (or a push) moves it again.
            return self.schedule_poll_if_needed(&record, &stored).await;
        }
        match (&decision.fast_path, decision.approvals_required) {
            (Some(fast), _) => {
                record.fast_path_rule = Some(fast.rule.parse().map_err(anyhow::Error::msg)?);
                self.approve(record, None).await
            }
            (None, 0) => self.approve(record, Some(Vec::new())).await,
            _ => {
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
    /// several request files, or a file under `requests/` that is not named like one).
    async fn the_request_file<'f>(
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
                self.forge
                    .note(
                        Thread::Change(pr.number),
                        &comment::bad_request_path_comment(&bad.path),
                    )
                    .await?;
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
            [(file, path)] => Ok(Some((*file, path.clone()))),
            several => {
                let paths: Vec<String> = several.iter().map(|(f, _)| f.path.clone()).collect();
                if announce {
                    self.forge
                        .note(
                            Thread::Change(pr.number),
                            &comment::several_requests_comment(&paths),
                        )
                        .await?;
                }
                self.set_status(pr, StatusState::Failure, "one request per PR")
                    .await?;
                Ok(None)
            }
        }
    }

    /// A PR from a fork: a failure status and, on its first sight, a comment. Nothing else.
    async fn refuse_fork(
        &self,
        pr: &PullRequestInfo,
        repo: &str,
        announce: bool,
    ) -> anyhow::Result<()> {
        tracing::info!(pr = pr.number, repo, "refusing a request PR from a fork");
        self.set_status(pr, StatusState::Failure, "requests from forks are refused")
            .await?;
        if announce {
            self.forge
                .note(
                    Thread::Change(pr.number),
                    &comment::fork_refused_comment(repo),
                )
                .await?;
        }
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
                let record = self.new_record(NewRequest {
                    path,
                    request,
                    requester: login,
                    requester_id,
                    pr_number: pr.number,
                    head_sha: &pr.head_sha,
                    duration_secs: duration,
                    seen_at: now,
                });
                match self.store.insert_request(&record).await {
                    Ok(()) => {
                        self.schedule_expiry(&record.id).await?;
                        record
                    }
                    Err(StoreError::Duplicate { .. }) => {
                        self.forge
                            .note(Thread::Change(pr.number), &format!("⛔ Request id {} is already used by another request; rename the file.", comment::code(path.id.as_str())))
                            .await?;
                        self.set_status(pr, StatusState::Failure, "request id already used")
                            .await?;
                        return Ok(None);
                    }
                    Err(err) => return Err(err.into()),
                }
            }
        };
        record.environment = request.environment.clone();
        record.role = request.role.clone();
        record.duration_secs = duration.unwrap_or(record.duration_secs);
        record.reason = request.reason.clone();
        record.ticket = request.ticket.clone();
        record.head_sha = pr.head_sha.clone();
        record.state = state;
        record.approved_by = None;
        record.fast_path_rule = None;
        record.granted_at = None;
        record.expires_at = None;
        record.review_due_at = None;
        record.decision = Some(stored.clone());
        self.store.update_request(&mut record, now).await?;
        Ok(Some(record))
    }

    /// The one way a request record is born: on this workflow's forge and repository, `Denied`
    /// and without a decision until its first evaluation says otherwise (a record exists
    /// before its decision when the bot opens the PR itself).
    fn new_record(&self, new: NewRequest<'_>) -> RequestRecord {
        let now = new.seen_at;
        RequestRecord {
            id: new.path.id.clone(),
            forge: self.forge_kind(),
            repository: self.settings.repository.clone(),
            pr_number: new.pr_number,
            environment: new.request.environment.clone(),
            role: new.request.role.clone(),
            requester_login: new.requester.clone(),
            requester_id: new.requester_id,
            // A row needs a duration; the decision sets the real one.
            duration_secs: new.duration_secs.unwrap_or(3600),
            reason: new.request.reason.clone(),
            ticket: new.request.ticket.clone(),
            state: RequestState::Denied,
            head_sha: new.head_sha.to_owned(),
            decision: None,
            fast_path_rule: None,
            approved_by: None,
            merge_sha: None,
            granted_at: None,
            expires_at: None,
            revert_pr_number: None,
            revoked_at: None,
            revoke_reason: None,
            review_due_at: None,
            reviewed_by: None,
            reviewed_at: None,
            total_secs: 0,
            created_at: now,
            updated_at: now,
            version: 0,
        }
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
        let new_pr = self
            .open_bot_request(
                &requester,
                request,
                text,
                path,
                Thread::Change(pr.number),
                existing,
            )
            .await?;
        self.forge
            .note(
                Thread::Change(pr.number),
                &comment::reopened_comment(&self.forge.change_ref(new_pr)),
            )
            .await?;
        self.forge.close_change(pr.number).await?;
        Ok(())
    }

    /// Opens a request PR from the bot's own branch (for a `/breakglass` comment, or to re-open
    /// a PR whose grant files the bot must write), records it and decides it. The request file
    /// is `text`; the grant files are rendered by the bot. Returns the PR number.
    pub(super) async fn open_bot_request(
        &self,
        requester: &Actor,
        request: &AccessRequest,
        text: &str,
        path: &RequestPath,
        origin: Thread,
        existing: Option<RequestRecord>,
    ) -> anyhow::Result<u64> {
        let login = Login::try_from(requester.login.clone()).map_err(anyhow::Error::msg)?;
        let (_, policies) = self.load_policies().await?;
        let mut writes = vec![Write::Put {
            path: path.to_repo_path(),
            content: text.to_owned(),
        }];
        if let Some(role) = policies
            .as_ref()
            .ok()
            .and_then(|p| p.get(request.environment.as_str()))
            .and_then(|p| p.roles.get(&request.role))
        {
            let spec = grant_spec(request, path, &login);
            for file in self.providers.rendered_files(role, &spec)? {
                writes.push(Write::Put {
                    path: file.path,
                    content: file.content,
                });
            }
        }
        let title = format!(
            "breakglass: {}/{} for {} ({login})",
            request.environment,
            request.role,
            request.duration.map(|d| d.to_string()).unwrap_or_default()
        );
        let change = self
            .build_change(
                path.id.as_str(),
                ChangeKind::Request,
                &writes,
                &title,
                &comment::request_pr_body(
                    path.id.as_str(),
                    login.as_str(),
                    &self.forge.thread_ref(origin),
                ),
            )
            .await?
            .context("a request change always writes its file")?;
        let pr_number = change.pr_number.context("a built change has a PR")?;
        let pr = self.forge.change(pr_number).await?;
        let now = self.now();
        let placeholder = match existing {
            // A request decided on the person's PR moves to the bot's PR, id and all.
            Some(mut record) => {
                record.pr_number = pr_number;
                record.head_sha = pr.info.head_sha.clone();
                record.state = RequestState::Denied;
                self.store.update_request(&mut record, now).await?;
                record
            }
            None => {
                let record = self.new_record(NewRequest {
                    path,
                    request,
                    requester: &login,
                    requester_id: requester.id,
                    pr_number,
                    head_sha: &pr.info.head_sha,
                    duration_secs: request.duration.map(|d| d.as_secs()),
                    seen_at: now,
                });
                self.store.insert_request(&record).await?;
                self.schedule_expiry(&record.id).await?;
                record
            }
        };
        let opened = pr.info.updated_at.map(|at| (pr.info.head_sha.clone(), at));
        // Boxed: deciding may re-open a request, which decides again.
        Box::pin(self.evaluate_current(pr, Some(placeholder), opened)).await?;
        Ok(pr_number)
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

    /// A request nobody approved in time: closed, with its PR, and no longer polled.
    pub(super) async fn job_expire(&self, id: &RequestId) -> anyhow::Result<()> {
        let Some(mut record) = self.store.get_request(id).await? else {
            return Ok(());
        };
        if !matches!(record.state, RequestState::Pending | RequestState::Denied) {
            return Ok(());
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

/// The `breakglass/policy` status of a verdict: `pending` until the request is approved (so a
/// required status check stops a hand merge), `success` only where no approval is needed.
fn verdict_status(stored: &StoredDecision, allowed: bool) -> (StatusState, String) {
    let decision = &stored.decision;
    if !allowed {
        let description = if stored.unservable.is_some() {
            "denied: the role cannot be granted".to_owned()
        } else if decision.allowed {
            "denied: the PR changes files beyond its request".to_owned()
        } else {
            format!(
                "denied: {}",
                decision
                    .violations
                    .iter()
                    .map(|v| v.rule.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return (StatusState::Failure, description);
    }
    if stored.draft {
        return (
            StatusState::Pending,
            "allowed; a draft is never merged".into(),
        );
    }
    if let Some(why) = &stored.merge_refused {
        return (StatusState::Pending, format!("not merged: {why}"));
    }
    match (&decision.fast_path, decision.approvals_required) {
        (Some(fast), _) => (
            StatusState::Success,
            format!("allowed: fast path {}", fast.rule),
        ),
        (None, 0) => (StatusState::Success, "allowed: self-service".to_owned()),
        (None, n) => (
            StatusState::Pending,
            format!("allowed: needs {n} approval(s)"),
        ),
    }
}

/// Who asks for what, on which PR head: what [`Workflow::new_record`] starts a record from.
struct NewRequest<'a> {
    path: &'a RequestPath,
    request: &'a AccessRequest,
    requester: &'a Login,
    requester_id: u64,
    pr_number: u64,
    head_sha: &'a str,
    /// Seconds asked for (or the policy's default); an hour when nothing says.
    duration_secs: Option<u64>,
    /// When the bot first saw the request: the record's creation and last write.
    seen_at: DateTime<Utc>,
}

/// Whether a PR event makes the bot decide again on a request in `state`: pending and denied
/// requests on any change; an approved one (merge not done yet) only on a push, which voids
/// the approvals.
fn decides_again(state: RequestState, action: PullRequestAction) -> bool {
    match state {
        RequestState::Pending | RequestState::Denied => true,
        RequestState::Approved => matches!(
            action,
            PullRequestAction::Synchronized | PullRequestAction::ConvertedToDraft
        ),
        _ => false,
    }
}

/// Whether a re-evaluation says the same thing, so that label changes do not repeat comments.
fn same_verdict(old: &StoredDecision, new: &StoredDecision) -> bool {
    old.decision.allowed == new.decision.allowed
        && old.decision.violations == new.decision.violations
        && old.decision.fast_path.as_ref().map(|f| &f.rule)
            == new.decision.fast_path.as_ref().map(|f| &f.rule)
        && old.scope_problems == new.scope_problems
        && old.draft == new.draft
        && old.unservable == new.unservable
}

/// What a provider gets to render a request's grant files before the merge: the expiry is not
/// known yet, so it is [`crate::grant::NOT_YET_GRANTED`] (a grant file that grants nothing).
pub(super) fn grant_spec(
    request: &AccessRequest,
    path: &RequestPath,
    requester: &Login,
) -> GrantSpec {
    GrantSpec {
        id: path.id.to_string(),
        environment: request.environment.to_string(),
        role: request.role.to_string(),
        requester: requester.to_string(),
        reason: request.reason.as_str().to_owned(),
        ticket: request.ticket.as_ref().map(ToString::to_string),
        duration: request.duration.map(|d| d.to_string()).unwrap_or_default(),
        expires_at: crate::grant::NOT_YET_GRANTED.to_owned(),
    }
}
