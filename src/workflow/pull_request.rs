//! `pull_request` events: a request PR is checked against the default branch's policies, gets
//! the `breakglass/policy` status and a comment with the verdict, and moves on to approval,
//! or straight to merge on a fast path.

use std::collections::BTreeSet;

use anyhow::Context as _;

use super::Workflow;
use super::evaluate::StoredDecision;
use crate::comment;
use crate::forge::{
    Actor, ChangedFile, FileChange, PullRequestAction, PullRequestInfo, PullRequestState,
    StatusState,
};
use crate::grant::GrantSpec;
use crate::names::Login;
use crate::policy::decision::{Context, FastPathMiss};
use crate::policy::evaluate;
use crate::request::{AccessRequest, RequestPath};
use crate::store::JobKind;
use crate::store::{EventKind, StoreError};
use crate::store::{RequestRecord, RequestState};

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
        match action {
            PullRequestAction::Closed => self.request_pr_closed(existing, pr).await,
            // The bot evaluates the PRs it opens itself, right after opening them.
            PullRequestAction::Opened if existing.is_none() && pr.author.is_bot => Ok(()),
            _ => match existing {
                Some(record) if !decides_again(record.state, action) => Ok(()),
                existing => self.evaluate_pr(pr.number, existing).await,
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
        if matches!(record.state, RequestState::Pending | RequestState::Denied) {
            if pr.merged {
                // Merged by a person, not by the bot: never granted; flagged and removed.
                tracing::warn!(request = %record.id, pr = pr.number, "request PR merged without breakglass");
                self.metrics
                    .inc("breakglass_anomalies_total", "kind=\"merged_without_bot\"");
            }
            record.state = RequestState::Closed;
            self.store.update_request(&mut record, self.now()).await?;
            self.record_event(
                EventKind::CLOSE,
                Some(&record.id),
                None,
                serde_json::json!({ "merged_by_hand": pr.merged }),
            )
            .await?;
            self.store.cancel_job(JobKind::Poll, &record.id).await?;
        }
        Ok(())
    }

    /// Checks request PR `number` as it is now and records the verdict. Webhooks can arrive
    /// (or be processed) out of order: the decision is on the PR's current labels and head,
    /// not on what an older event saw.
    pub(super) async fn evaluate_pr(
        &self,
        number: u64,
        existing: Option<RequestRecord>,
    ) -> anyhow::Result<()> {
        let current = self.forge.pull_request(number).await?;
        self.evaluate_current(current, existing).await
    }

    /// [`Self::evaluate_pr`] on a PR state the caller has just read.
    pub(super) async fn evaluate_current(
        &self,
        current: PullRequestState,
        existing: Option<RequestRecord>,
    ) -> anyhow::Result<()> {
        if !current.open {
            return Ok(());
        }
        let pr = &current.info;
        let files = self.forge.pull_request_files(pr.number).await?;
        let requests: Vec<(&ChangedFile, RequestPath)> = files
            .iter()
            .filter(|f| {
                matches!(
                    f.change,
                    FileChange::Added | FileChange::Modified | FileChange::Renamed
                )
            })
            .filter_map(|f| RequestPath::parse(&f.path).map(|p| (f, p)))
            .collect();
        let (file, path) = match requests.as_slice() {
            [] => return Ok(()), // not a request PR
            [(file, path)] => (*file, path.clone()),
            several => {
                let paths: Vec<String> = several.iter().map(|(f, _)| f.path.clone()).collect();
                self.forge
                    .comment(pr.number, &comment::several_requests_comment(&paths))
                    .await?;
                self.set_status(pr, StatusState::Failure, "one request per PR")
                    .await?;
                return Ok(());
            }
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
                self.forge
                    .comment(
                        pr.number,
                        &comment::invalid_request_comment(&file.path, &err.to_string()),
                    )
                    .await?;
                self.set_status(
                    pr,
                    StatusState::Failure,
                    &format!("invalid request file: {err}"),
                )
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
                    .comment(pr.number, &format!("⚠️ The policies on `{default_branch}` are invalid, so no request can be decided:\n\n- {}", list.join("\n- ")))
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

        // The bot merges nothing but the request file and the grant files it renders itself.
        let mut allowed_paths = BTreeSet::from([file.path.clone()]);
        if let Some(role) = policy.and_then(|p| p.roles.get(&request.role))
            && decision.allowed
        {
            let spec = grant_spec(&request, &path, &login);
            for rendered in self
                .providers
                .rendered_files(role, &spec)
                .context("rendering grant files")?
            {
                let current = self.forge.read_file(&pr.head_sha, &rendered.path).await?;
                if current.as_ref().map(|f| f.text.as_str()) != Some(rendered.content.as_str()) {
                    // Add (or fix) the rendered file on the PR branch; the push re-triggers the check.
                    let message = format!("breakglass: render grant file for {}", path.id);
                    self.forge
                        .put_file(
                            &pr.head_ref,
                            &rendered.path,
                            &rendered.content,
                            &message,
                            current.as_ref().map(|f| f.blob_sha.as_str()),
                        )
                        .await?;
                    return Ok(());
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
        let allowed = decision.allowed && extra.is_empty();
        let head_seen_at = match &existing {
            Some(record) if record.head_sha == pr.head_sha => {
                serde_json::from_value::<StoredDecision>(record.decision.clone())
                    .map(|d| d.head_seen_at)
                    .unwrap_or(now)
            }
            _ => now,
        };
        let stored = StoredDecision {
            decision: decision.clone(),
            head_seen_at,
            scope_problems: extra.clone(),
        };
        let unchanged = existing.as_ref().is_some_and(|r| {
            r.head_sha == pr.head_sha
                && serde_json::from_value::<StoredDecision>(r.decision.clone())
                    .is_ok_and(|old| same_verdict(&old, &stored))
        });
        let state = if allowed {
            RequestState::Pending
        } else {
            RequestState::Denied
        };
        let mut record = match existing {
            Some(mut record) => {
                record.environment = request.environment.clone();
                record.role = request.role.clone();
                record.duration_secs = decision
                    .duration
                    .map_or(record.duration_secs, |d| d.as_secs());
                record.reason = request.reason.clone();
                record.ticket = request.ticket.clone();
                record.head_sha = pr.head_sha.clone();
                record.state = state;
                record.approved_by = None;
                record.fast_path_rule = None;
                record.decision = serde_json::to_value(&stored)?;
                self.store.update_request(&mut record, now).await?;
                record
            }
            None => {
                let record = RequestRecord {
                    id: path.id.clone(),
                    forge: self.forge_kind(),
                    repository: self.settings.repository.clone(),
                    pr_number: pr.number,
                    environment: request.environment.clone(),
                    role: request.role.clone(),
                    requester_login: login.clone(),
                    requester_id,
                    duration_secs: decision.duration.map_or(3600, |d| d.as_secs()),
                    reason: request.reason.clone(),
                    ticket: request.ticket.clone(),
                    state,
                    head_sha: pr.head_sha.clone(),
                    decision: serde_json::to_value(&stored)?,
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
                };
                match self.store.insert_request(&record).await {
                    Ok(()) => record,
                    Err(StoreError::Duplicate { .. }) => {
                        self.forge
                            .comment(pr.number, &format!("⛔ Request id {} is already used by another request; rename the file.", comment::code(path.id.as_str())))
                            .await?;
                        self.set_status(pr, StatusState::Failure, "request id already used")
                            .await?;
                        return Ok(());
                    }
                    Err(err) => return Err(err.into()),
                }
            }
        };
        self.record_event(
            EventKind::DECISION,
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
        let description = if allowed {
            match (&decision.fast_path, decision.approvals_required) {
                (Some(fast), _) => format!("allowed: fast path {}", fast.rule),
                (None, 0) => "allowed: self-service".to_owned(),
                (None, n) => format!("allowed: needs {n} approval(s)"),
            }
        } else if !decision.allowed {
            format!(
                "denied: {}",
                decision
                    .violations
                    .iter()
                    .map(|v| v.rule.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            "denied: the PR changes files beyond its request".to_owned()
        };
        self.set_status(
            pr,
            if allowed {
                StatusState::Success
            } else {
                StatusState::Failure
            },
            &description,
        )
        .await?;
        if !unchanged {
            let text = match (extra.is_empty(), decision.allowed) {
                (true, _) => comment::decision_comment(record.id.as_str(), &decision),
                (false, true) => comment::out_of_scope_comment(&extra),
                (false, false) => format!(
                    "{}\n\n{}",
                    comment::out_of_scope_comment(&extra),
                    comment::decision_comment(record.id.as_str(), &decision)
                ),
            };
            self.forge.comment(pr.number, &text).await?;
        }
        if !allowed {
            self.store.cancel_job(JobKind::Poll, &record.id).await?;
            return Ok(());
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

    pub(super) async fn set_status(
        &self,
        pr: &PullRequestInfo,
        state: StatusState,
        description: &str,
    ) -> anyhow::Result<()> {
        self.forge
            .set_status(&pr.head_sha, super::STATUS_CONTEXT, state, description)
            .await?;
        Ok(())
    }
}

/// Whether a PR event makes the bot decide again on a request in `state`: pending and denied
/// requests on any change; an approved one (merge not done yet) only on a push, which voids
/// the approvals.
fn decides_again(state: RequestState, action: PullRequestAction) -> bool {
    match state {
        RequestState::Pending | RequestState::Denied => true,
        RequestState::Approved => action == PullRequestAction::Synchronized,
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
}

/// What a provider gets to render a request's grant files (before the merge, so no expiry).
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
        expires_at: String::new(),
    }
}
