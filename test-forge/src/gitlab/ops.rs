//! What GitLab's API can do that GitHub's cannot, as operations on the shared model: one commit
//! of several file actions, approvals, awards of any emoji and GitLab's commit-status states.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use git2::{Oid, Repository, Sort};
use serde_json::Value;

use super::http::{GlError, GlResult};
use super::{Noteable, award_to_model, by_iid};
use crate::git;
use crate::model::ReviewState;
use crate::ops::ReactionTarget;
use crate::state::{ForgeState, ReactionRec};

/// One entry of `actions` of `POST /repository/commits`.
pub(crate) struct FileAction {
    pub action: String,
    pub file_path: String,
    pub previous_path: Option<String>,
    pub content: Option<Vec<u8>>,
    pub last_commit_id: Option<String>,
}

impl FileAction {
    /// Reads one action; `index` names it in Grape's errors.
    pub fn parse(index: usize, v: &Value) -> GlResult<FileAction> {
        let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let action = field("action")
            .ok_or_else(|| GlError::missing(&format!("actions[{index}][action]")))?;
        if !matches!(
            action.as_str(),
            "create" | "update" | "delete" | "move" | "chmod"
        ) {
            return Err(GlError {
                status: axum::http::StatusCode::BAD_REQUEST,
                body: serde_json::json!({
                    "error": format!("actions[{index}][action] does not have a valid value")
                }),
            });
        }
        let file_path = field("file_path")
            .filter(|p| !p.is_empty())
            .ok_or_else(|| GlError::missing(&format!("actions[{index}][file_path]")))?;
        let content = match (field("content"), field("encoding").as_deref()) {
            (Some(c), Some("base64")) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(c.replace(['\n', '\r'], ""))
                    .map_err(|_| GlError::bad_request("Invalid base64 content"))?,
            ),
            (Some(c), _) => Some(c.into_bytes()),
            (None, _) => None,
        };
        Ok(FileAction {
            action,
            file_path,
            previous_path: field("previous_path"),
            content,
            last_commit_id: field("last_commit_id"),
        })
    }
}

/// What `POST /repository/commits` asks for.
pub(crate) struct NewCommit {
    pub branch: String,
    pub message: String,
    pub start_branch: Option<String>,
    pub start_sha: Option<String>,
    /// GitLab's `force`: the commit goes on top of `start_branch`/`start_sha` even when the
    /// branch exists, and the branch is overwritten with it.
    pub force: bool,
    pub actions: Vec<FileAction>,
}

/// The newest commit reachable from `tip` that changed `path` (GitLab's `last_commit_id`).
pub(crate) fn last_commit_for(repo: &Repository, tip: Oid, path: &str) -> Option<Oid> {
    let blob_at = |c: &git2::Commit<'_>| {
        c.tree()
            .ok()
            .and_then(|t| t.get_path(Path::new(path)).ok())
            .map(|e| e.id())
    };
    let mut walk = repo.revwalk().ok()?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME).ok()?;
    walk.push(tip).ok()?;
    for oid in walk.flatten() {
        let c = repo.find_commit(oid).ok()?;
        let here = blob_at(&c);
        if here.is_none() {
            continue;
        }
        if c.parent_count() == 0 || c.parents().all(|p| blob_at(&p) != here) {
            return Some(oid);
        }
    }
    None
}

impl ForgeState {
    /// One commit of `actions` on `branch` (created from `start_branch`/`start_sha` when
    /// missing), authored and committed by `actor`, validated as GitLab validates each action
    /// against the files before it. Sends the push and MR updates. Returns the commit sha.
    pub(crate) fn gl_commit(&mut self, full: &str, actor: &str, new: NewCommit) -> GlResult<Oid> {
        if new.actions.is_empty() {
            return Err(GlError {
                status: axum::http::StatusCode::BAD_REQUEST,
                body: serde_json::json!({"error": "actions is empty"}),
            });
        }
        let now = self.now();
        let actor_id = self.user_id(actor);
        let (before, after) = {
            let r = self.repo(full).map_err(|_| GlError::not_found("Project"))?;
            let before = git::branch_tip(&r.git, &new.branch);
            let start = match (&new.start_branch, &new.start_sha) {
                (Some(b), _) if *b != new.branch && before.is_some() && !new.force => {
                    return Err(GlError::bad_request(format!(
                        "A branch called '{}' already exists. Switch to that branch in order to make changes",
                        new.branch
                    )));
                }
                (Some(b), _) => {
                    Some(git::branch_tip(&r.git, b).ok_or_else(|| {
                        GlError::bad_request(format!("Invalid reference name: {b}"))
                    })?)
                }
                (None, Some(sha)) => Some(
                    Oid::from_str(sha)
                        .ok()
                        .filter(|o| git::commit_exists(&r.git, *o))
                        .ok_or_else(|| {
                            GlError::bad_request(format!("Invalid reference name: {sha}"))
                        })?,
                ),
                (None, None) => None,
            };
            let parent = if new.force {
                start.or(before)
            } else {
                before.or(start)
            };
            let parent = parent.ok_or_else(|| {
                GlError::bad_request("You can only create or edit files when you are on a branch")
            })?;
            if !crate::ops::valid_branch(&new.branch) {
                return Err(GlError::bad_request(format!(
                    "Branch name is invalid: {}",
                    new.branch
                )));
            }
            let changes = plan(&r.git, parent, &new.actions)?;
            let sig = git::user_signature(actor, actor_id, now)?;
            let after = git::commit_changes(
                &r.git,
                &new.branch,
                Some(parent),
                &changes,
                &new.message,
                &sig,
                &sig,
            )?;
            (before, after)
        };
        self.branch_moved(full, &new.branch, before, Some(after), actor);
        Ok(after)
    }

    /// Approves MR `iid` as `actor` (optionally only while its head is `sha`): the model's
    /// approving review. GitLab refuses the author and a second approval with 401.
    pub(crate) fn gl_approve(
        &mut self,
        full: &str,
        iid: u64,
        actor: &str,
        sha: Option<&str>,
    ) -> GlResult<()> {
        let now = self.now();
        let (number, head) = {
            let r = self.repo(full).map_err(|_| GlError::not_found("Project"))?;
            let i = by_iid(r, Noteable::MergeRequest(iid))?;
            let pr =
                i.pr.as_ref()
                    .ok_or_else(|| GlError::not_found("Merge Request"))?;
            if i.user == actor || super::hooks::approvers(pr).iter().any(|(u, _)| u == actor) {
                return Err(GlError::unauthorized());
            }
            if sha.is_some_and(|s| s != pr.head_sha) {
                return Err(GlError::message(
                    axum::http::StatusCode::CONFLICT,
                    format!("SHA does not match HEAD of source branch: {}", pr.head_sha),
                ));
            }
            (i.number, pr.head_sha.clone())
        };
        self.submit_review(full, number, actor, ReviewState::Approved, "", Some(&head))?;
        self.repo_mut(full)?.issue_mut(number)?.updated_at = now;
        Ok(())
    }

    /// Withdraws `actor`'s approval of MR `iid` (the model dismisses their approving review);
    /// 404 when they had not approved.
    pub(crate) fn gl_unapprove(&mut self, full: &str, iid: u64, actor: &str) -> GlResult<()> {
        let now = self.now();
        let (number, review_id) = {
            let r = self.repo(full).map_err(|_| GlError::not_found("Project"))?;
            let i = by_iid(r, Noteable::MergeRequest(iid))?;
            let pr =
                i.pr.as_ref()
                    .ok_or_else(|| GlError::not_found("Merge Request"))?;
            let approving = super::hooks::approvers(pr).iter().any(|(u, _)| u == actor);
            let review = pr
                .reviews
                .iter()
                .rev()
                .find(|x| x.user == actor && x.state == ReviewState::Approved)
                .filter(|_| approving)
                .ok_or_else(|| {
                    GlError::message(axum::http::StatusCode::NOT_FOUND, "404 Not found")
                })?;
            (i.number, review.id)
        };
        self.dismiss_review(full, number, review_id, actor)?;
        self.repo_mut(full)?.issue_mut(number)?.updated_at = now;
        Ok(())
    }

    /// Awards emoji `name` (GitLab's name) on `target` as `actor`; 404 "Award Emoji Name has
    /// already been taken" for a second identical award, as GitLab answers.
    pub(crate) fn gl_award(
        &mut self,
        full: &str,
        target: ReactionTarget,
        actor: &str,
        name: &str,
    ) -> GlResult<ReactionRec> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '+')
        {
            return Err(GlError::not_found(
                "Award Emoji Name is not a valid emoji name",
            ));
        }
        let (rec, created) = self.insert_reaction(full, target, actor, &award_to_model(name))?;
        if !created {
            return Err(GlError::message(
                axum::http::StatusCode::NOT_FOUND,
                "404 Award Emoji Name has already been taken Not Found",
            ));
        }
        Ok(rec)
    }

    /// Removes award `id` from `target`; only the user who awarded it may (401 otherwise).
    pub(crate) fn gl_revoke(
        &mut self,
        full: &str,
        target: ReactionTarget,
        id: u64,
        actor: Option<&str>,
    ) -> GlResult<()> {
        let owner = self
            .reactions(full, target)?
            .iter()
            .find(|x| x.id == id)
            .map(|x| x.user.clone())
            .ok_or_else(|| GlError::not_found("Award Emoji"))?;
        if actor.is_some_and(|a| a != owner) {
            return Err(GlError::unauthorized());
        }
        self.delete_reaction(full, target, id)?;
        Ok(())
    }

    /// A commit status in GitLab's states, stored under the GitHub state it counts as for
    /// protection checks. Posting the state a status already has is GitLab's 400.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gl_status(
        &mut self,
        full: &str,
        sha: &str,
        actor: &str,
        state: &str,
        name: &str,
        description: Option<&str>,
        target_url: Option<&str>,
    ) -> GlResult<u64> {
        let (github, event) = match state {
            "pending" => ("pending", "enqueue"),
            "running" => ("pending", "run"),
            "success" => ("success", "success"),
            "failed" => ("failure", "drop"),
            "canceled" => ("error", "cancel"),
            "skipped" => ("success", "skip"),
            _ => {
                return Err(GlError {
                    status: axum::http::StatusCode::BAD_REQUEST,
                    body: serde_json::json!({"error": "state does not have a valid value"}),
                });
            }
        };
        let oid = {
            let r = self.repo(full).map_err(|_| GlError::not_found("Project"))?;
            let oid = Oid::from_str(sha)
                .ok()
                .filter(|o| git::commit_exists(&r.git, *o))
                .or_else(|| git::resolve(&r.git, sha))
                .ok_or_else(|| GlError::not_found("Commit"))?;
            let current = r
                .statuses
                .iter()
                .rev()
                .find(|s| s.sha == oid.to_string() && s.context == name)
                .map(super::json::status_state);
            if current.as_deref() == Some(state) {
                return Err(GlError::bad_request(format!(
                    "Cannot transition status via :{event} from :{state}"
                )));
            }
            oid
        };
        let id = self.create_status(
            full,
            &oid.to_string(),
            actor,
            github,
            Some(name),
            description,
            target_url,
        )?;
        if let Some(s) = self
            .repo_mut(full)?
            .statuses
            .iter_mut()
            .find(|s| s.id == id)
        {
            s.gl_state = Some(state.to_owned());
        }
        Ok(id)
    }
}

/// Checks every action against the tree of `parent` as changed by the actions before it, and
/// turns them into the model's file changes (a move is a delete plus a write).
fn plan(repo: &Repository, parent: Oid, actions: &[FileAction]) -> GlResult<Vec<git::Change>> {
    // What each touched path holds after the actions so far: Some(bytes) or deleted.
    let mut seen: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    let current =
        |seen: &BTreeMap<String, Option<Vec<u8>>>, path: &str| -> GlResult<Option<Vec<u8>>> {
            if let Some(v) = seen.get(path) {
                return Ok(v.clone());
            }
            // A symbolic link is a blob to GitLab too (`blob_at`, mode 120000): it exists for
            // the actions, so a commit can update or delete it.
            Ok(match git::read_path(repo, parent, path)? {
                Some(git::PathEntry::File { bytes, .. }) => Some(bytes),
                Some(git::PathEntry::Symlink { target, .. }) => Some(target),
                _ => None,
            })
        };
    for a in actions {
        if !crate::ops::valid_path(&a.file_path) {
            return Err(GlError::bad_request(format!(
                "Your changes could not be committed, because the file path {} is invalid",
                a.file_path
            )));
        }
        let exists = current(&seen, &a.file_path)?.is_some();
        if let Some(expected) = &a.last_commit_id
            && exists
            && last_commit_for(repo, parent, &a.file_path)
                .map(|o| o.to_string())
                .as_deref()
                != Some(expected.as_str())
        {
            return Err(GlError::bad_request(format!(
                "The file has changed since you started editing it: {}",
                a.file_path
            )));
        }
        match a.action.as_str() {
            "create" if exists => {
                return Err(GlError::bad_request("A file with this name already exists"));
            }
            "create" | "update" => {
                if a.action == "update" && !exists {
                    return Err(GlError::bad_request("A file with this name doesn't exist"));
                }
                let bytes = a.content.clone().unwrap_or_default();
                seen.insert(a.file_path.clone(), Some(bytes));
            }
            "delete" if !exists => {
                return Err(GlError::bad_request("A file with this name doesn't exist"));
            }
            "delete" => {
                seen.insert(a.file_path.clone(), None);
            }
            "move" => {
                let from = a
                    .previous_path
                    .clone()
                    .ok_or_else(|| GlError::missing("previous_path"))?;
                let old = current(&seen, &from)?.ok_or_else(|| {
                    GlError::bad_request("The file you're trying to move doesn't exist")
                })?;
                if exists && from != a.file_path {
                    return Err(GlError::bad_request("A file with this name already exists"));
                }
                seen.insert(from, None);
                seen.insert(a.file_path.clone(), Some(a.content.clone().unwrap_or(old)));
            }
            // chmod: the forge keeps every file 100644; accepted, nothing changes.
            _ if !exists => {
                return Err(GlError::bad_request("A file with this name doesn't exist"));
            }
            _ => {}
        }
    }
    Ok(seen
        .into_iter()
        .map(|(path, bytes)| (path, bytes.map(git::Written::File)))
        .collect())
}
