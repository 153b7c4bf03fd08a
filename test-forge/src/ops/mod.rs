//! The forge's operations: one function per change a user or the bot can make. REST handlers
//! and the scenario API both call these, so both produce the same git history and the same
//! webhooks.

mod checks;
mod issues;
pub(crate) mod protection;
mod pulls;

pub(crate) use checks::CheckRunInput;
pub(crate) use issues::ReactionTarget;
pub(crate) use pulls::{IssueEdit, MergeRequest, NewPull};

use git2::Oid;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::git::{self, Change};
use crate::json;
use crate::state::{ForgeState, HeadMoveRec, IssueRec};

/// Where a branch detour found a branch and its pull requests' heads, to put them back.
pub(crate) struct DetourUndo {
    repo: String,
    branch: String,
    /// The branch's tip before the detour; `None` when the detour created it.
    tip: Option<Oid>,
    /// (number, head before the detour) of each pull request the detour moved.
    heads: Vec<(u64, String)>,
}

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// Who is on the other side of a commit: the web UI / API (committer GitHub) or a `git push`
/// (committer = author).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    Api,
    Push,
}

/// Whether `path` is a file path git and GitHub accept: no empty, `.`, `..` or `.git` parts.
pub(crate) fn valid_path(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\0')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.eq_ignore_ascii_case(".git"))
}

/// Whether `branch` is a valid branch name for git.
pub(crate) fn valid_branch(branch: &str) -> bool {
    git2::Reference::is_valid_name(&format!("refs/heads/{branch}"))
}

impl ForgeState {
    /// Sends `event` to every webhook, adding `repository`, `sender` and (for an app)
    /// `installation` like GitHub does.
    pub(crate) fn emit(
        &self,
        full: &str,
        event: &str,
        mut payload: Map<String, Value>,
        sender: &str,
    ) {
        let Ok(r) = self.repo(full) else {
            return;
        };
        if !payload.contains_key("repository") {
            payload.insert("repository".into(), json::repo(self, r));
        }
        if !self.users.contains_key(&r.owner) {
            payload.insert("organization".into(), json::organization(self, &r.owner));
        }
        payload.insert("sender".into(), json::account(self, sender));
        if let Some(app) = &self.app {
            payload.insert(
                "installation".into(),
                json!({"id": app.installation_id, "node_id": format!("MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u{}", app.installation_id)}),
            );
        }
        self.hub.enqueue(event, &Value::Object(payload));
    }

    /// Commits `changes` on `branch` (created from the default branch when missing) and
    /// announces the push.
    pub(crate) fn commit_files(
        &mut self,
        full: &str,
        branch: &str,
        actor: &str,
        changes: &[Change],
        message: &str,
        via: Via,
    ) -> ApiResult<String> {
        let now = self.now();
        let actor_id = self.user_id(actor);
        let (before, after) = {
            let r = self.repo(full)?;
            let before = git::branch_tip(&r.git, branch);
            let parent = match before {
                Some(tip) => Some(tip),
                None => git::resolve(&r.git, &r.default_branch),
            };
            let author = git::user_signature(actor, actor_id, now)?;
            let committer = match via {
                Via::Api => git::web_flow(now)?,
                Via::Push => author.clone(),
            };
            let after = git::commit_changes(
                &r.git, branch, parent, changes, message, &author, &committer,
            )?;
            (before, after)
        };
        self.branch_moved(full, branch, before, Some(after), actor);
        Ok(after.to_string())
    }

    /// Announces that `branch` moved: a `push`, then `synchronize` for its open pull requests
    /// (or `closed` when the branch was deleted).
    pub(crate) fn branch_moved(
        &mut self,
        full: &str,
        branch: &str,
        before: Option<Oid>,
        after: Option<Oid>,
        actor: &str,
    ) {
        let now = self.now();
        self.emit_push(full, branch, before, after, actor);
        let forced = self.is_forced(full, before, after);
        let affected: Vec<(u64, String)> = match after {
            Some(a) => self.set_pr_heads(full, branch, &a.to_string()),
            // GitHub closes a pull request whose head branch is deleted.
            None => self
                .prs_headed_by(full, branch)
                .map(|i| {
                    i.open = false;
                    i.closed_at = Some(now);
                    (i.number, String::new())
                })
                .collect(),
        };
        for (number, old) in affected {
            if let Ok(i) = self.repo_mut(full).and_then(|r| r.issue_mut(number)) {
                i.updated_at = now;
                if let (Some(pr), Some(a)) = (i.pr.as_mut(), after) {
                    pr.head_moves.push(HeadMoveRec {
                        sha: a.to_string(),
                        at: now,
                        forced,
                    });
                }
            }
            match after {
                Some(a) => self.emit_pull(
                    full,
                    number,
                    "synchronize",
                    actor,
                    vec![("before", json!(old)), ("after", json!(a.to_string()))],
                ),
                None => self.emit_pull(full, number, "closed", actor, vec![]),
            }
        }
    }

    /// Whether moving a branch from `before` to `after` rewrote it: `before` is not an
    /// ancestor of `after` (GitHub's `forced`).
    fn is_forced(&self, full: &str, before: Option<Oid>, after: Option<Oid>) -> bool {
        let (Some(b), Some(a), Ok(r)) = (before, after, self.repo(full)) else {
            return false;
        };
        b != a && !r.git.graph_descendant_of(a, b).unwrap_or(false)
    }

    /// The open pull requests whose head is `branch` of `full` itself: a fork's branch of the
    /// same name is another branch, and does not move with this one.
    fn prs_headed_by<'a>(
        &'a mut self,
        full: &str,
        branch: &'a str,
    ) -> impl Iterator<Item = &'a mut IssueRec> + 'a {
        self.repos
            .get_mut(full)
            .into_iter()
            .flat_map(|r| r.issues.values_mut())
            .filter(move |i| {
                i.open
                    && i.pr
                        .as_ref()
                        .is_some_and(|pr| pr.head_ref == branch && pr.head_is_local())
            })
    }

    /// Points the open pull requests headed by `branch` at `sha`; returns (number, old head)
    /// of each. Only the heads change: no webhook, no `updated_at` (callers that announce a
    /// push do both).
    fn set_pr_heads(&mut self, full: &str, branch: &str, sha: &str) -> Vec<(u64, String)> {
        self.prs_headed_by(full, branch)
            .filter_map(|i| {
                let pr = i.pr.as_mut()?;
                let old = std::mem::replace(&mut pr.head_sha, sha.to_owned());
                Some((i.number, old))
            })
            .collect()
    }

    /// Checks a branch detour before it is stored, so a wrong one fails the test that sets it
    /// up rather than some later call; returns the full sha it points at.
    pub(crate) fn detour_target(&self, full: &str, branch: &str, sha: &str) -> ApiResult<String> {
        if !valid_branch(branch) {
            return Err(ApiError::unprocessable(format!(
                "Reference refs/heads/{branch} is not a valid ref name"
            )));
        }
        let r = self.repo(full)?;
        git::resolve(&r.git, sha)
            .filter(|o| git::commit_exists(&r.git, *o))
            .map(|o| o.to_string())
            .ok_or_else(|| ApiError::unprocessable("Object does not exist"))
    }

    /// Moves `branch` of `full` and its open pull requests' heads to `sha` silently (no
    /// webhooks: the detour's pushes are announced after everything else, i.e. never), and
    /// returns what [`ForgeState::end_detour`] needs to put them back.
    pub(crate) fn begin_detour(
        &mut self,
        full: &str,
        branch: &str,
        sha: &str,
    ) -> ApiResult<DetourUndo> {
        let tip = {
            let r = self.repo(full)?;
            let oid = Oid::from_str(sha)
                .ok()
                .filter(|o| git::commit_exists(&r.git, *o))
                .ok_or_else(|| ApiError::unprocessable("Object does not exist"))?;
            let tip = git::branch_tip(&r.git, branch);
            git::set_branch(&r.git, branch, oid)?;
            tip
        };
        let heads = self.set_pr_heads(full, branch, sha);
        Ok(DetourUndo {
            repo: full.to_owned(),
            branch: branch.to_owned(),
            tip,
            heads,
        })
    }

    /// Puts a detoured branch back where it was (deleting it if it did not exist) and the
    /// heads of its pull requests with it, silently. A pull request closed or merged during
    /// the detour keeps the head it closed with, as a real one would.
    pub(crate) fn end_detour(&mut self, undo: DetourUndo) {
        if let Ok(r) = self.repo(&undo.repo) {
            let restored = match undo.tip {
                Some(tip) => git::set_branch(&r.git, &undo.branch, tip),
                None => git::delete_branch(&r.git, &undo.branch).map(|_| ()),
            };
            if let Err(err) = restored {
                tracing::warn!(%err, branch = undo.branch, "test-forge: detour not undone");
            }
        }
        for (number, head) in undo.heads {
            if let Ok(i) = self.repo_mut(&undo.repo).and_then(|r| r.issue_mut(number))
                && i.open
                && let Some(pr) = i.pr.as_mut()
            {
                pr.head_sha = head;
            }
        }
    }

    fn emit_push(
        &self,
        full: &str,
        branch: &str,
        before: Option<Oid>,
        after: Option<Oid>,
        actor: &str,
    ) {
        let Ok(r) = self.repo(full) else {
            return;
        };
        let b = &self.base_url;
        let mut commits = Vec::new();
        if let Some(a) = after {
            let list = match before {
                Some(bf) => git::commits_between(&r.git, bf, a).unwrap_or_default(),
                None => {
                    // A new branch: the commits not on the default branch.
                    match git::branch_tip(&r.git, &r.default_branch) {
                        Some(d) if d != a => git::commits_between(&r.git, d, a).unwrap_or_default(),
                        _ => vec![a],
                    }
                }
            };
            for oid in list.iter().rev().take(20).rev() {
                commits.push(self.push_commit(r, *oid));
            }
        }
        let forced = match (before, after) {
            (Some(bf), Some(a)) => !r.git.graph_descendant_of(a, bf).unwrap_or(false) && bf != a,
            _ => false,
        };
        let before_s = before
            .map(|o| o.to_string())
            .unwrap_or_else(|| ZERO_SHA.into());
        let after_s = after
            .map(|o| o.to_string())
            .unwrap_or_else(|| ZERO_SHA.into());
        let id = self.user_id(actor);
        let mut p = Map::new();
        p.insert("ref".into(), json!(format!("refs/heads/{branch}")));
        p.insert("before".into(), json!(before_s));
        p.insert("after".into(), json!(after_s));
        p.insert("created".into(), json!(before.is_none()));
        p.insert("deleted".into(), json!(after.is_none()));
        p.insert("forced".into(), json!(forced));
        p.insert("base_ref".into(), Value::Null);
        p.insert(
            "compare".into(),
            json!(format!(
                "{b}/{full}/compare/{}...{}",
                &before_s[..12],
                &after_s[..12]
            )),
        );
        p.insert(
            "head_commit".into(),
            commits.last().cloned().unwrap_or(Value::Null),
        );
        p.insert("commits".into(), Value::Array(commits));
        p.insert("repository".into(), push_repository(self, r));
        p.insert(
            "pusher".into(),
            json!({"name": actor, "email": format!("{id}+{actor}@users.noreply.github.com")}),
        );
        self.emit(full, "push", p, actor);
        crate::gitlab::hooks::on_push(self, full, branch, before, after, actor);
    }

    /// The commit of a push payload.
    fn push_commit(&self, r: &crate::state::RepoRec, oid: Oid) -> Value {
        let b = &self.base_url;
        let full = r.full_name();
        let Some(d) = git::commit_detail(&r.git, oid) else {
            return Value::Null;
        };
        let (mut added, mut removed, mut modified) = (vec![], vec![], vec![]);
        let parent = d.parents.first().and_then(|p| Oid::from_str(p).ok());
        let files = match parent {
            Some(p) => git::diff(&r.git, p, oid).unwrap_or_default(),
            None => Vec::new(),
        };
        for f in files {
            match f.status {
                "added" => added.push(f.filename),
                "removed" => removed.push(f.filename),
                _ => modified.push(f.filename),
            }
        }
        let who = |name: &str, email: &str| json!({"name": name, "email": email, "username": name});
        json!({
            "id": d.sha,
            "tree_id": d.tree,
            "distinct": true,
            "message": d.message,
            "timestamp": d.committer_time.to_rfc3339(),
            "url": format!("{b}/{full}/commit/{}", d.sha),
            "author": who(&d.author_name, &d.author_email),
            "committer": who(&d.committer_name, &d.committer_email),
            "added": added,
            "removed": removed,
            "modified": modified,
        })
    }

    /// Creates `refs/heads/{branch}` at `sha`.
    pub(crate) fn create_branch(
        &mut self,
        full: &str,
        branch: &str,
        sha: &str,
        actor: &str,
    ) -> ApiResult<()> {
        if !valid_branch(branch) {
            return Err(ApiError::unprocessable(format!(
                "Reference refs/heads/{branch} is not a valid ref name"
            )));
        }
        let oid = {
            let r = self.repo(full)?;
            if git::branch_tip(&r.git, branch).is_some() {
                return Err(ApiError::unprocessable("Reference already exists"));
            }
            let oid = Oid::from_str(sha)
                .ok()
                .filter(|o| git::commit_exists(&r.git, *o))
                .ok_or_else(|| ApiError::unprocessable("Object does not exist"))?;
            git::set_branch(&r.git, branch, oid)?;
            oid
        };
        self.branch_moved(full, branch, None, Some(oid), actor);
        Ok(())
    }

    /// Moves `branch` to `sha`; without `force` only fast-forwards.
    pub(crate) fn update_branch(
        &mut self,
        full: &str,
        branch: &str,
        sha: &str,
        force: bool,
        actor: &str,
    ) -> ApiResult<()> {
        let (before, oid) = {
            let r = self.repo(full)?;
            let before = git::branch_tip(&r.git, branch)
                .ok_or_else(|| ApiError::unprocessable("Reference does not exist"))?;
            let oid = Oid::from_str(sha)
                .ok()
                .filter(|o| git::commit_exists(&r.git, *o))
                .ok_or_else(|| ApiError::unprocessable("Object does not exist"))?;
            if !force && oid != before && !r.git.graph_descendant_of(oid, before).unwrap_or(false) {
                return Err(ApiError::unprocessable("Update is not a fast forward"));
            }
            git::set_branch(&r.git, branch, oid)?;
            (before, oid)
        };
        if before != oid {
            self.branch_moved(full, branch, Some(before), Some(oid), actor);
        }
        Ok(())
    }

    /// Deletes `branch`.
    pub(crate) fn delete_branch(&mut self, full: &str, branch: &str, actor: &str) -> ApiResult<()> {
        let before = {
            let r = self.repo(full)?;
            let before = git::branch_tip(&r.git, branch)
                .ok_or_else(|| ApiError::unprocessable("Reference does not exist"))?;
            if branch == r.default_branch {
                return Err(ApiError::unprocessable("Cannot delete the default branch"));
            }
            git::delete_branch(&r.git, branch)?;
            before
        };
        self.branch_moved(full, branch, Some(before), None, actor);
        Ok(())
    }

    /// `PUT /contents/{path}`: creates or updates one file with GitHub's sha rules.
    /// Returns (commit sha, blob sha, created).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn put_file(
        &mut self,
        full: &str,
        path: &str,
        actor: &str,
        message: &str,
        content: Vec<u8>,
        branch: Option<&str>,
        sha: Option<&str>,
    ) -> ApiResult<(String, bool)> {
        let (branch, existing) = self.file_sha(full, branch, path)?;
        match (&existing, sha) {
            (Some(_), None) => {
                return Err(ApiError::unprocessable(
                    "Invalid request.\n\n\"sha\" wasn't supplied.",
                ));
            }
            (Some(cur), Some(given)) if cur != given => {
                return Err(ApiError::conflict(format!("{path} does not match {given}")));
            }
            _ => {}
        }
        let commit = self.commit_files(
            full,
            &branch,
            actor,
            &[(path.to_owned(), Some(git::Written::File(content)))],
            message,
            Via::Api,
        )?;
        Ok((commit, existing.is_none()))
    }

    /// `DELETE /contents/{path}`: deletes one file; `sha` must name its current blob.
    pub(crate) fn delete_file(
        &mut self,
        full: &str,
        path: &str,
        actor: &str,
        message: &str,
        branch: Option<&str>,
        sha: Option<&str>,
    ) -> ApiResult<String> {
        let (branch, existing) = self.file_sha(full, branch, path)?;
        let Some(cur) = existing else {
            return Err(ApiError::not_found());
        };
        match sha {
            None => {
                return Err(ApiError::unprocessable(
                    "Invalid request.\n\n\"sha\" wasn't supplied.",
                ));
            }
            Some(given) if given != cur => {
                return Err(ApiError::conflict(format!("{path} does not match {given}")));
            }
            _ => {}
        }
        self.commit_files(
            full,
            &branch,
            actor,
            &[(path.to_owned(), None)],
            message,
            Via::Api,
        )
    }

    /// The branch a contents write goes to and the blob sha of `path` on it, if the file exists.
    fn file_sha(
        &self,
        full: &str,
        branch: Option<&str>,
        path: &str,
    ) -> ApiResult<(String, Option<String>)> {
        if !valid_path(path) {
            return Err(ApiError::unprocessable(format!(
                "path {path:?} contains a malformed path component"
            )));
        }
        let r = self.repo(full)?;
        let branch = branch.unwrap_or(&r.default_branch).to_owned();
        let tip = git::branch_tip(&r.git, &branch);
        let existing = match tip {
            Some(tip) => match git::read_path(&r.git, tip, path)? {
                Some(
                    git::PathEntry::File { sha, .. }
                    | git::PathEntry::Symlink { sha, .. }
                    | git::PathEntry::Submodule { sha },
                ) => Some(sha),
                Some(git::PathEntry::Dir(_)) => {
                    return Err(ApiError::unprocessable(format!("{path} is a directory")));
                }
                None => None,
            },
            None if git::branch_tip(&r.git, &r.default_branch).is_none() => None,
            None => {
                return Err(ApiError::not_found_msg(format!(
                    "Branch {branch} not found"
                )));
            }
        };
        Ok((branch, existing))
    }
}

/// The `repository` of a push payload differs from all others: timestamps are epoch seconds,
/// the owner has `name`/`email`, and it carries `stargazers` and `master_branch`.
fn push_repository(st: &ForgeState, r: &crate::state::RepoRec) -> Value {
    let mut repo = json::repo(st, r);
    if let Value::Object(m) = &mut repo {
        for key in ["created_at", "pushed_at"] {
            let epoch = m
                .get(key)
                .and_then(Value::as_str)
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|d| d.timestamp())
                .unwrap_or_default();
            m.insert(key.into(), json!(epoch));
        }
        m.insert("stargazers".into(), json!(0));
        m.insert("master_branch".into(), json!(r.default_branch));
        if let Some(Value::Object(owner)) = m.get_mut("owner") {
            let id = owner.get("id").cloned().unwrap_or(Value::Null);
            owner.insert("name".into(), json!(r.owner));
            owner.insert(
                "email".into(),
                json!(format!("{id}+{}@users.noreply.github.com", r.owner)),
            );
        }
    }
    repo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_empty_dot_or_git_parts_are_rejected() {
        assert!(valid_path("requests/prod/a.yaml"));
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "a/./b",
            "../a",
            "a/..",
            ".git/config",
            "x/.GIT/y",
        ] {
            assert!(!valid_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn branch_names_follow_git_rules() {
        assert!(valid_branch("breakglass/alice/req-1"));
        for bad in ["a..b", "a b", "a~1", "a:b", "a/", "a.lock", ""] {
            assert!(!valid_branch(bad), "{bad:?}");
        }
    }
}
