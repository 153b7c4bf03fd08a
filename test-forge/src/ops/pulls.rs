//! Pull requests: open, edit, close/reopen, merge, review.

use git2::Oid;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::git::{self, MergeOutcome};
use crate::json;
use crate::model::ReviewState;
use crate::ops::protection;
use crate::state::{ForgeState, HeadMoveRec, IssueRec, PrRec, RepoRec, ReviewRec};

/// What `PUT /pulls/{n}/merge` asks for.
pub(crate) struct MergeRequest<'a> {
    pub sha: Option<&'a str>,
    pub method: &'a str,
    pub title: Option<&'a str>,
    pub message: Option<&'a str>,
}

/// What a new pull request is made of.
pub(crate) struct NewPull<'a> {
    /// The head branch (`owner:branch` is accepted for a branch of this repository).
    pub head: &'a str,
    /// The base branch; the default branch when `None`.
    pub base: Option<&'a str>,
    pub title: &'a str,
    pub body: &'a str,
    pub draft: bool,
}

/// What `PATCH /pulls/{n}` (or `/issues/{n}`) changes.
#[derive(Default)]
pub(crate) struct IssueEdit<'a> {
    pub title: Option<&'a str>,
    pub body: Option<&'a str>,
    pub state: Option<&'a str>,
}

impl ForgeState {
    /// Sends a `pull_request` event for PR `number` with extra top-level keys.
    pub(crate) fn emit_pull(
        &self,
        full: &str,
        number: u64,
        action: &str,
        sender: &str,
        extra: Vec<(&str, Value)>,
    ) {
        let Ok(r) = self.repo(full) else {
            return;
        };
        let Ok((i, pr)) = r.pull(number) else {
            return;
        };
        let mut p = Map::new();
        p.insert("action".into(), json!(action));
        p.insert("number".into(), json!(number));
        p.insert("pull_request".into(), json::pull(self, r, i, pr));
        crate::gitlab::hooks::on_pull(self, full, number, action, sender, &extra);
        for (k, v) in extra {
            p.insert(k.into(), v);
        }
        self.emit(full, "pull_request", p, sender);
    }

    /// Sends an `issues` event for issue `number`.
    pub(crate) fn emit_issue(
        &self,
        full: &str,
        number: u64,
        action: &str,
        sender: &str,
        extra: Vec<(&str, Value)>,
    ) {
        let Ok(r) = self.repo(full) else {
            return;
        };
        let Ok(i) = r.issue(number) else {
            return;
        };
        crate::gitlab::hooks::on_issue(self, full, number, action, sender);
        let mut p = Map::new();
        p.insert("action".into(), json!(action));
        p.insert("issue".into(), json::issue(self, r, i));
        for (k, v) in extra {
            p.insert(k.into(), v);
        }
        self.emit(full, "issues", p, sender);
    }

    /// Opens a pull request from the branch `new.head` of this repository.
    pub(crate) fn open_pull(
        &mut self,
        full: &str,
        actor: &str,
        new: NewPull<'_>,
    ) -> ApiResult<u64> {
        // `owner:branch` is how GitHub names a head; forks of the forge's own repos are not
        // repositories here (see `open_fork_pull`).
        let head = new.head.split_once(':').map_or(new.head, |(_, b)| b);
        let tip = {
            let r = self.repo(full)?;
            git::branch_tip(&r.git, head).ok_or_else(|| {
                ApiError::unprocessable(format!("Validation Failed: head {head} is invalid"))
            })?
        };
        self.insert_pull(full, actor, &new, head, None, tip)
    }

    /// Opens a pull request from `head_branch` of the fork `fork` (`owner/name`). The fork is
    /// not a repository of the forge: its head commit (`files` on top of the base branch) is
    /// written into this repository's object database and kept under `refs/pull/<n>/head`, as
    /// GitHub does, and no branch of this repository is created or moved.
    pub(crate) fn open_fork_pull(
        &mut self,
        full: &str,
        actor: &str,
        fork: &str,
        new: NewPull<'_>,
        files: &[git::Change],
    ) -> ApiResult<u64> {
        if fork == full || fork.split('/').filter(|p| !p.is_empty()).count() != 2 {
            return Err(ApiError::unprocessable(format!(
                "Validation Failed: {fork} is not a fork of {full}"
            )));
        }
        if !super::valid_branch(new.head) {
            return Err(ApiError::unprocessable(format!(
                "Validation Failed: head {} is invalid",
                new.head
            )));
        }
        let author = git::user_signature(actor, self.user_id(actor), self.now())?;
        let tip = {
            let r = self.repo(full)?;
            let base = new.base.unwrap_or(&r.default_branch);
            let parent = git::branch_tip(&r.git, base).ok_or_else(|| {
                ApiError::unprocessable(format!("Validation Failed: base {base} is invalid"))
            })?;
            git::commit_detached(&r.git, Some(parent), files, new.title, &author, &author)?
        };
        self.insert_pull(full, actor, &new, new.head, Some(fork), tip)
    }

    /// Records a new pull request whose head is `head_tip` and announces it (`opened`).
    fn insert_pull(
        &mut self,
        full: &str,
        actor: &str,
        new: &NewPull<'_>,
        head: &str,
        fork: Option<&str>,
        head_tip: Oid,
    ) -> ApiResult<u64> {
        let now = self.now();
        let pr_id = self.next_id();
        let issue_id = self.next_id();
        let r = self.repo_mut(full)?;
        let base = new.base.unwrap_or(&r.default_branch).to_owned();
        if new.title.trim().is_empty() {
            return Err(ApiError::unprocessable(
                "Validation Failed: title is missing",
            ));
        }
        let base_tip = git::branch_tip(&r.git, &base).ok_or_else(|| {
            ApiError::unprocessable(format!("Validation Failed: base {base} is invalid"))
        })?;
        let ahead = match git::merge_base(&r.git, base_tip, head_tip) {
            Some(mb) => git::commits_between(&r.git, mb, head_tip)?.len(),
            None => 1,
        };
        if ahead == 0 {
            return Err(ApiError::unprocessable(format!(
                "Validation Failed: No commits between {base} and {head}"
            )));
        }
        let duplicate = r.issues.values().any(|i| {
            i.open
                && i.pr.as_ref().is_some_and(|p| {
                    p.head_ref == head && p.base_ref == base && p.head_repo.as_deref() == fork
                })
        });
        if duplicate {
            let owner = fork.map_or(r.owner.as_str(), |f| f.split('/').next().unwrap_or(f));
            return Err(ApiError::unprocessable(format!(
                "Validation Failed: A pull request already exists for {owner}:{head}."
            )));
        }
        let number = r.next_number;
        r.next_number += 1;
        let gl_iid = r.take_gl_iid(true);
        if fork.is_some() {
            // Keeps the fork's head reachable in this repository, as GitHub does.
            r.git.reference(
                &format!("refs/pull/{number}/head"),
                head_tip,
                true,
                "test-forge: fork pull request head",
            )?;
        }
        r.issues.insert(
            number,
            IssueRec {
                id: issue_id,
                number,
                title: new.title.to_owned(),
                body: new.body.to_owned(),
                user: actor.to_owned(),
                open: true,
                labels: Vec::new(),
                created_at: now,
                updated_at: now,
                closed_at: None,
                reactions: Vec::new(),
                pr: Some(PrRec {
                    id: pr_id,
                    head_ref: head.to_owned(),
                    base_ref: base,
                    head_sha: head_tip.to_string(),
                    merged_at: None,
                    merged_by: None,
                    merge_commit_sha: None,
                    reviews: Vec::new(),
                    draft: new.draft,
                    conflicting: false,
                    fork_deleted: false,
                    head_repo: fork.map(str::to_owned),
                    head_moves: vec![HeadMoveRec {
                        sha: head_tip.to_string(),
                        at: now,
                        forced: false,
                    }],
                }),
                gl_iid,
            },
        );
        self.emit_pull(full, number, "opened", actor, vec![]);
        Ok(number)
    }

    /// Marks a pull request as draft or ready for review, as the web UI (GraphQL) does: sends
    /// `converted_to_draft` / `ready_for_review`; nothing when the flag does not change.
    /// Points an open PR at another base branch (GitHub's `PATCH /pulls/{n}` with `base`),
    /// sending `pull_request.edited`.
    pub(crate) fn retarget(
        &mut self,
        full: &str,
        number: u64,
        actor: &str,
        base: &str,
    ) -> ApiResult<()> {
        let now = self.now();
        if crate::git::branch_tip(&self.repo(full)?.git, base).is_none() {
            return Err(ApiError::unprocessable(format!(
                "Validation Failed: base {base} does not exist"
            )));
        }
        let i = self.repo_mut(full)?.pull_mut(number)?;
        let Some(pr) = i.pr.as_mut() else {
            return Err(ApiError::not_found());
        };
        pr.base_ref = base.to_owned();
        i.updated_at = now;
        self.emit_pull(full, number, "edited", actor, vec![]);
        Ok(())
    }

    pub(crate) fn set_draft(
        &mut self,
        full: &str,
        number: u64,
        actor: &str,
        draft: bool,
    ) -> ApiResult<()> {
        let now = self.now();
        let i = self.repo_mut(full)?.pull_mut(number)?;
        if !i.open {
            return Err(ApiError::unprocessable(
                "Validation Failed: the pull request is closed",
            ));
        }
        let Some(pr) = i.pr.as_mut() else {
            return Err(ApiError::not_found());
        };
        if pr.draft == draft {
            return Ok(());
        }
        pr.draft = draft;
        i.updated_at = now;
        let action = if draft {
            "converted_to_draft"
        } else {
            "ready_for_review"
        };
        self.emit_pull(full, number, action, actor, vec![]);
        Ok(())
    }

    /// Makes a pull request conflict with its base (or stop conflicting) whatever git says.
    /// GitHub sends no webhook when mergeability changes.
    pub(crate) fn set_conflicting(
        &mut self,
        full: &str,
        number: u64,
        conflicting: bool,
    ) -> ApiResult<()> {
        let i = self.repo_mut(full)?.pull_mut(number)?;
        if let Some(pr) = i.pr.as_mut() {
            pr.conflicting = conflicting;
        }
        Ok(())
    }

    /// The fork a pull request came from is deleted (no webhook, as on GitHub).
    pub(crate) fn delete_fork(&mut self, full: &str, number: u64) -> ApiResult<()> {
        let i = self.repo_mut(full)?.pull_mut(number)?;
        match i.pr.as_mut() {
            Some(pr) if pr.head_repo.is_some() => {
                pr.fork_deleted = true;
                Ok(())
            }
            _ => Err(ApiError::unprocessable("not a pull request from a fork")),
        }
    }

    /// Opens a plain issue.
    pub(crate) fn open_issue(
        &mut self,
        full: &str,
        actor: &str,
        title: &str,
        body: &str,
    ) -> ApiResult<u64> {
        let now = self.now();
        let id = self.next_id();
        let r = self.repo_mut(full)?;
        if title.trim().is_empty() {
            return Err(ApiError::unprocessable(
                "Validation Failed: title is missing",
            ));
        }
        let number = r.next_number;
        r.next_number += 1;
        let gl_iid = r.take_gl_iid(false);
        r.issues.insert(
            number,
            IssueRec {
                id,
                number,
                title: title.to_owned(),
                body: body.to_owned(),
                user: actor.to_owned(),
                open: true,
                labels: Vec::new(),
                created_at: now,
                updated_at: now,
                closed_at: None,
                reactions: Vec::new(),
                pr: None,
                gl_iid,
            },
        );
        self.emit_issue(full, number, "opened", actor, vec![]);
        Ok(number)
    }

    /// Edits title/body and closes or reopens an issue or pull request.
    pub(crate) fn edit_issue(
        &mut self,
        full: &str,
        number: u64,
        actor: &str,
        edit: IssueEdit<'_>,
    ) -> ApiResult<()> {
        let now = self.now();
        let r = self.repo_mut(full)?;
        let repo_git = &r.git;
        let i = r.issues.get_mut(&number).ok_or_else(ApiError::not_found)?;
        let is_pr = i.pr.is_some();
        let mut changes = Map::new();
        if let Some(t) = edit.title
            && t != i.title
        {
            changes.insert("title".into(), json!({"from": i.title}));
            i.title = t.to_owned();
        }
        if let Some(b) = edit.body
            && b != i.body
        {
            changes.insert("body".into(), json!({"from": i.body}));
            i.body = b.to_owned();
        }
        let state_action = match edit.state {
            None => None,
            Some("closed") if i.open => {
                i.open = false;
                i.closed_at = Some(now);
                Some("closed")
            }
            Some("open") if !i.open => {
                if i.pr.as_ref().is_some_and(|p| p.merged_at.is_some()) {
                    return Err(ApiError::unprocessable(
                        "Validation Failed: state cannot be changed. The pull request is merged.",
                    ));
                }
                if let Some(pr) = i.pr.as_mut().filter(|p| p.head_is_local()) {
                    let tip = git::branch_tip(repo_git, &pr.head_ref).ok_or_else(|| {
                        ApiError::unprocessable("Validation Failed: state cannot be changed. The head branch was deleted.")
                    })?;
                    pr.head_sha = tip.to_string();
                }
                i.open = true;
                i.closed_at = None;
                Some("reopened")
            }
            Some("open") | Some("closed") => None,
            Some(other) => {
                return Err(ApiError::unprocessable(format!(
                    "Validation Failed: state {other} is not valid"
                )));
            }
        };
        if !changes.is_empty() || state_action.is_some() {
            i.updated_at = now;
        }
        let edited = !changes.is_empty();
        let emit = |st: &ForgeState, action: &str, extra: Vec<(&str, Value)>| {
            if is_pr {
                st.emit_pull(full, number, action, actor, extra);
            } else {
                st.emit_issue(full, number, action, actor, extra);
            }
        };
        if edited {
            emit(self, "edited", vec![("changes", Value::Object(changes))]);
        }
        if let Some(action) = state_action {
            emit(self, action, vec![]);
        }
        Ok(())
    }

    /// Merges a pull request with GitHub's guards. Returns the new commit sha.
    pub(crate) fn merge_pull(
        &mut self,
        full: &str,
        number: u64,
        actor: &str,
        req: MergeRequest<'_>,
    ) -> ApiResult<String> {
        let now = self.now();
        let actor_id = self.user_id(actor);
        let (base_ref, before, outcome) = {
            let r = self.repo(full)?;
            let (i, pr) = r.pull(number)?;
            self.check_mergeable(r, i, pr, actor, req.sha)?;
            let owner = pr.head_owner(&r.owner).to_owned();
            let head = Oid::from_str(&pr.head_sha).map_err(ApiError::internal)?;
            let before = git::branch_tip(&r.git, &pr.base_ref)
                .ok_or_else(|| ApiError::not_mergeable("Pull Request is not mergeable"))?;
            let author = git::user_signature(actor, actor_id, now)?;
            let outcome = match req.method {
                "merge" => {
                    let title = req.title.map(str::to_owned).unwrap_or_else(|| {
                        format!("Merge pull request #{number} from {owner}/{}", pr.head_ref)
                    });
                    let message = req.message.unwrap_or(&i.title);
                    let full_message = format!("{title}\n\n{message}");
                    git::merge_into(
                        &r.git,
                        &pr.base_ref,
                        head,
                        full_message.trim_end(),
                        &author,
                        false,
                    )?
                }
                "squash" => {
                    let title = req
                        .title
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("{} (#{number})", i.title));
                    let full_message = match req.message {
                        Some(m) => format!("{title}\n\n{m}"),
                        None => title,
                    };
                    git::merge_into(
                        &r.git,
                        &pr.base_ref,
                        head,
                        full_message.trim_end(),
                        &author,
                        true,
                    )?
                }
                "rebase" => {
                    let from = git::merge_base(&r.git, before, head)
                        .ok_or_else(|| ApiError::not_mergeable("Pull Request is not mergeable"))?;
                    git::rebase_onto(&r.git, &pr.base_ref, from, head, now)?
                }
                other => {
                    return Err(ApiError::unprocessable(format!(
                        "Validation Failed: merge_method {other} is not one of merge, squash, rebase"
                    )));
                }
            };
            (pr.base_ref.clone(), before, outcome)
        };
        let merged = match outcome {
            MergeOutcome::Merged(oid) => oid,
            MergeOutcome::Conflict => {
                return Err(ApiError::not_mergeable("Pull Request is not mergeable"));
            }
        };
        {
            let r = self.repo_mut(full)?;
            let i = r.issue_mut(number)?;
            i.open = false;
            i.closed_at = Some(now);
            i.updated_at = now;
            if let Some(pr) = &mut i.pr {
                pr.merged_at = Some(now);
                pr.merged_by = Some(actor.to_owned());
                pr.merge_commit_sha = Some(merged.to_string());
            }
        }
        self.branch_moved(full, &base_ref, Some(before), Some(merged), actor);
        self.emit_pull(full, number, "closed", actor, vec![]);
        // "Automatically delete head branches": only a head branch of this repository.
        let head_branch = {
            let r = self.repo(full)?;
            let (_, pr) = r.pull(number)?;
            (r.delete_branch_on_merge && pr.head_repo.is_none())
                .then(|| pr.head_ref.clone())
                .filter(|b| git::branch_tip(&r.git, b).is_some())
        };
        if let Some(branch) = head_branch {
            self.delete_branch(full, &branch, actor)?;
        }
        Ok(merged.to_string())
    }

    /// GitHub's refusals before it tries a merge, in its order: closed, draft, moved head,
    /// conflicting, then the base branch's protection (unless `actor` may bypass it).
    fn check_mergeable(
        &self,
        r: &RepoRec,
        i: &IssueRec,
        pr: &PrRec,
        actor: &str,
        sha: Option<&str>,
    ) -> ApiResult<()> {
        if !i.open || pr.merged_at.is_some() {
            return Err(ApiError::not_mergeable("Pull Request is not mergeable"));
        }
        if pr.draft {
            return Err(ApiError::not_mergeable("Pull Request is still a draft"));
        }
        if sha.is_some_and(|s| s != pr.head_sha) {
            return Err(ApiError::conflict(
                "Head branch was modified. Review and try the merge again.",
            ));
        }
        if pr.conflicting {
            return Err(ApiError::not_mergeable("Pull Request is not mergeable"));
        }
        match protection::unmet(self, r, pr, Some(actor)) {
            Some(why) => Err(ApiError::not_mergeable(why)),
            None => Ok(()),
        }
    }

    /// Submits a review; the author may comment on but not approve or reject their own PR.
    pub(crate) fn submit_review(
        &mut self,
        full: &str,
        number: u64,
        actor: &str,
        state: ReviewState,
        body: &str,
        commit_id: Option<&str>,
    ) -> ApiResult<u64> {
        let now = self.now();
        let id = self.next_id();
        let approvers_before = crate::gitlab::hooks::approver_count(self, full, number);
        let r = self.repo_mut(full)?;
        let i = r.pull_mut(number)?;
        if i.user == actor && state != ReviewState::Commented {
            let what = if state == ReviewState::Approved {
                "approve"
            } else {
                "request changes on"
            };
            return Err(ApiError::unprocessable(format!(
                "Unprocessable Entity: Can not {what} your own pull request"
            )));
        }
        if state == ReviewState::ChangesRequested && body.trim().is_empty() {
            return Err(ApiError::unprocessable(
                "Unprocessable Entity: Review body is required for REQUEST_CHANGES",
            ));
        }
        let Some(pr) = i.pr.as_mut() else {
            return Err(ApiError::not_found());
        };
        let commit_id = commit_id.unwrap_or(&pr.head_sha).to_owned();
        i.updated_at = now;
        let Some(pr) = i.pr.as_mut() else {
            return Err(ApiError::not_found());
        };
        pr.reviews.push(ReviewRec {
            id,
            user: actor.to_owned(),
            state,
            body: body.to_owned(),
            commit_id,
            submitted_at: now,
        });
        self.emit_review(full, number, id, "submitted", actor);
        crate::gitlab::hooks::on_approvals(self, full, number, actor, approvers_before);
        Ok(id)
    }

    /// Dismisses a review.
    pub(crate) fn dismiss_review(
        &mut self,
        full: &str,
        number: u64,
        review_id: u64,
        actor: &str,
    ) -> ApiResult<()> {
        let approvers_before = crate::gitlab::hooks::approver_count(self, full, number);
        let r = self.repo_mut(full)?;
        let i = r.pull_mut(number)?;
        let review =
            i.pr.as_mut()
                .and_then(|p| p.reviews.iter_mut().find(|x| x.id == review_id))
                .ok_or_else(ApiError::not_found)?;
        if review.state == ReviewState::Commented {
            return Err(ApiError::unprocessable(
                "Can not dismiss a commented pull request review",
            ));
        }
        review.state = ReviewState::Dismissed;
        self.emit_review(full, number, review_id, "dismissed", actor);
        crate::gitlab::hooks::on_approvals(self, full, number, actor, approvers_before);
        Ok(())
    }

    fn emit_review(&self, full: &str, number: u64, review_id: u64, action: &str, sender: &str) {
        let Ok(r) = self.repo(full) else {
            return;
        };
        let Ok((i, pr)) = r.pull(number) else {
            return;
        };
        let Some(review) = pr.reviews.iter().find(|x| x.id == review_id) else {
            return;
        };
        let mut p = Map::new();
        p.insert("action".into(), json!(action));
        p.insert("review".into(), json::review(self, r, number, review, true));
        p.insert("pull_request".into(), json::pull(self, r, i, pr));
        self.emit(full, "pull_request_review", p, sender);
    }
}
