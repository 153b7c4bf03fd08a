//! The scenario API: what the humans of a test do (push, open a PR, comment, react, review,
//! label) and what a test reads back. These helpers panic with a clear message when the test
//! itself is wrong (unknown repo, PR number, …): that is a bug in the test, not input from the bot.

use git2::Oid;

use crate::TestForge;
use crate::error::ApiResult;
use crate::git;
use crate::model::{
    AppConfig, CheckRun, Comment, CommitInfo, CommitStatus, FileChange, Protection, PullRequest,
    Reaction, Review, ReviewState, User, UserKind,
};
use crate::ops::{IssueEdit, MergeRequest, NewPull, ReactionTarget, Via};
use crate::state::{ForgeState, RepoRec};

#[track_caller]
fn ok<T>(what: &str, r: ApiResult<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("test-forge: {what} failed: {e}"),
    }
}

fn writes(files: &[(&str, &str)]) -> Vec<git::Change> {
    files
        .iter()
        .map(|(p, c)| ((*p).to_owned(), Some(file(c))))
        .collect()
}

fn file(content: &str) -> git::Written {
    git::Written::File(content.as_bytes().to_vec())
}

fn changes(list: &[FileChange]) -> Vec<git::Change> {
    list.iter()
        .map(|c| match c {
            FileChange::Write(p, content) => (p.clone(), Some(file(content))),
            FileChange::Delete(p) => (p.clone(), None),
            FileChange::WriteExecutable(p, content) => (
                p.clone(),
                Some(git::Written::Executable(content.as_bytes().to_vec())),
            ),
            FileChange::Symlink(p, target) => {
                (p.clone(), Some(git::Written::Symlink(target.clone())))
            }
            FileChange::Submodule(p, commit) => {
                (p.clone(), Some(git::Written::Submodule(commit.clone())))
            }
        })
        .collect()
}

impl TestForge {
    fn with_state<T>(&self, f: impl FnOnce(&mut ForgeState) -> T) -> T {
        self.shared.test_side(f)
    }

    #[track_caller]
    fn read_repo<T>(&self, repo: &str, f: impl FnOnce(&ForgeState, &RepoRec) -> T) -> T {
        let st = self.shared.lock();
        let r = ok(&format!("repository {repo}"), st.repo(repo));
        f(&st, r)
    }

    /// The user `login`, created on first use with its stable numeric id.
    pub fn user(&self, login: &str) -> User {
        self.with_state(|st| st.ensure_user(login, UserKind::User))
    }

    /// A bot account (`"type": "Bot"`), e.g. `breakglass[bot]`.
    pub fn bot_user(&self, login: &str) -> User {
        self.with_state(|st| st.ensure_user(login, UserKind::Bot))
    }

    /// A personal access token acting as `user` (stable for the life of the forge).
    pub fn token_for(&self, user: &User) -> String {
        self.with_state(|st| st.personal_token(&user.login))
    }

    /// Registers a GitHub App: JWTs with `iss == app_id` may exchange
    /// `POST /app/installations/{installation_id}/access_tokens` for tokens that act as
    /// `bot_login` and expire after `token_ttl`. Webhook payloads then carry `installation`.
    /// Returns the bot user.
    pub fn configure_app(&self, config: AppConfig) -> User {
        self.with_state(|st| {
            let bot = st.ensure_user(&config.bot_login, UserKind::Bot);
            st.app = Some(config);
            bot
        })
    }

    /// Creates `owner/name` with one initial commit on `main` holding `files`.
    ///
    /// # Panics
    /// If the repository exists already or git fails.
    #[track_caller]
    pub fn create_repo(&self, full_name: &str, files: &[(&str, &str)]) {
        let result: Result<(), String> = self.with_state(|st| {
            let (owner, name) = full_name
                .split_once('/')
                .ok_or_else(|| format!("{full_name} is not owner/name"))?;
            if st.repos.contains_key(full_name) {
                return Err(format!("{full_name} exists already"));
            }
            let path = st.root.join(format!("{full_name}.git"));
            let repo = git::init(&path, "main").map_err(|e| e.to_string())?;
            let when = git2::Time::new(st.now().timestamp(), 0);
            let sig =
                git2::Signature::new(owner, &format!("{owner}@users.noreply.github.com"), &when)
                    .map_err(|e| e.to_string())?;
            git::commit_changes(
                &repo,
                "main",
                None,
                &writes(files),
                "Initial commit",
                &sig,
                &sig,
            )
            .map_err(|e| e.to_string())?;
            let id = st.next_id();
            st.repos.insert(
                full_name.to_owned(),
                RepoRec {
                    id,
                    owner: owner.to_owned(),
                    name: name.to_owned(),
                    default_branch: "main".to_owned(),
                    git: repo,
                    created_at: st.now(),
                    next_number: 1,
                    next_gl_mr_iid: 1,
                    next_gl_issue_iid: 1,
                    issues: Default::default(),
                    comments: Default::default(),
                    labels: Default::default(),
                    statuses: Vec::new(),
                    check_runs: Vec::new(),
                    protections: Default::default(),
                    delete_branch_on_merge: false,
                },
            );
            Ok(())
        });
        if let Err(e) = result {
            panic!("test-forge: create_repo: {e}");
        }
    }

    /// Sets the GitLab `expires_at` date of `user`'s membership of `team` (`None`: none).
    pub fn set_membership_expiry(&self, team: &str, user: &User, on: Option<chrono::NaiveDate>) {
        self.with_state(|st| {
            let key = (team.to_owned(), user.login.clone());
            match on {
                Some(day) => st.membership_expiry.insert(key, day),
                None => st.membership_expiry.remove(&key),
            };
        });
    }

    /// Adds `user` to the team `org/slug` (created on first use).
    pub fn add_team_member(&self, team: &str, user: &User) {
        self.with_state(|st| {
            st.teams
                .entry(team.to_owned())
                .or_default()
                .insert(user.login.clone());
        });
    }

    /// Removes `user` from the team `org/slug`.
    pub fn remove_team_member(&self, team: &str, user: &User) {
        self.with_state(|st| {
            if let Some(m) = st.teams.get_mut(team) {
                m.remove(&user.login);
            }
        });
    }

    /// `git push` of one commit writing `files` on `branch` (created from `main` if missing).
    /// Sends `push`, and `pull_request.synchronize` for open PRs of the branch. Returns the sha.
    #[track_caller]
    pub fn push_files(
        &self,
        repo: &str,
        branch: &str,
        user: &User,
        files: &[(&str, &str)],
        message: &str,
    ) -> String {
        self.push(repo, branch, user, writes(files), message)
    }

    /// Like [`TestForge::push_files`], with deletions too.
    #[track_caller]
    pub fn push_changes(
        &self,
        repo: &str,
        branch: &str,
        user: &User,
        list: &[FileChange],
        message: &str,
    ) -> String {
        self.push(repo, branch, user, changes(list), message)
    }

    /// A direct push to the default branch (no pull request).
    #[track_caller]
    pub fn push_direct(
        &self,
        repo: &str,
        user: &User,
        files: &[(&str, &str)],
        message: &str,
    ) -> String {
        let branch = self.read_repo(repo, |_, r| r.default_branch.clone());
        self.push(repo, &branch, user, writes(files), message)
    }

    #[track_caller]
    fn push(
        &self,
        repo: &str,
        branch: &str,
        user: &User,
        list: Vec<git::Change>,
        message: &str,
    ) -> String {
        ok(
            "push",
            self.with_state(|st| {
                st.commit_files(repo, branch, &user.login, &list, message, Via::Push)
            }),
        )
    }

    /// Moves `branch` to commit `sha` as `user`, whether or not that is a fast-forward (a force
    /// push: commits on the branch after `sha` leave it). Sends the `push` event.
    #[track_caller]
    pub fn force_branch(&self, repo: &str, branch: &str, user: &User, sha: &str) {
        ok(
            "force_branch",
            self.with_state(|st| st.update_branch(repo, branch, sha, true, &user.login)),
        );
    }

    /// Deletes a branch as `user` (closing its open pull requests, as GitHub does).
    #[track_caller]
    pub fn delete_branch(&self, repo: &str, branch: &str, user: &User) {
        ok(
            "delete_branch",
            self.with_state(|st| st.delete_branch(repo, branch, &user.login)),
        );
    }

    /// Opens a pull request from `branch` into the default branch; returns its number.
    #[track_caller]
    pub fn open_pr(&self, repo: &str, user: &User, branch: &str, title: &str, body: &str) -> u64 {
        self.open_pull_as(repo, user, branch, title, body, false)
    }

    /// Opens a draft pull request from `branch` into the default branch (`opened` with
    /// `draft: true`); returns its number. A draft is never merged: 405 "Pull Request is still
    /// a draft".
    #[track_caller]
    pub fn open_pr_draft(
        &self,
        repo: &str,
        user: &User,
        branch: &str,
        title: &str,
        body: &str,
    ) -> u64 {
        self.open_pull_as(repo, user, branch, title, body, true)
    }

    #[track_caller]
    fn open_pull_as(
        &self,
        repo: &str,
        user: &User,
        branch: &str,
        title: &str,
        body: &str,
        draft: bool,
    ) -> u64 {
        let new = NewPull {
            head: branch,
            base: None,
            title,
            body,
            draft,
        };
        ok(
            "open_pr",
            self.with_state(|st| st.open_pull(repo, &user.login, new)),
        )
    }

    /// Opens a pull request from the branch `head_branch` of the fork `fork_full_name`
    /// (`owner/name`) into the default branch, its head one commit by `user` writing `files`
    /// on top of the default branch; returns its number.
    ///
    /// As on GitHub, the head commit lands in this repository's object database (under
    /// `refs/pull/<n>/head`) but no branch here is created or moved: `head_branch` may well be
    /// called `main`, and `head.repo.full_name` (`fork: true`) is what tells the fork apart.
    /// Sends `pull_request.opened` and no `push`.
    #[track_caller]
    pub fn open_fork_pr(
        &self,
        repo: &str,
        user: &User,
        fork_full_name: &str,
        head_branch: &str,
        files: &[(&str, &str)],
        title: &str,
    ) -> u64 {
        let new = NewPull {
            head: head_branch,
            base: None,
            title,
            body: "",
            draft: false,
        };
        ok(
            "open_fork_pr",
            self.with_state(|st| {
                st.open_fork_pull(repo, &user.login, fork_full_name, new, &writes(files))
            }),
        )
    }

    /// Deletes the fork a pull request came from: GitHub then shows its `head.repo` as `null`
    /// (in REST and in webhooks); no webhook says so.
    #[track_caller]
    pub fn delete_fork(&self, repo: &str, number: u64) {
        ok(
            "delete_fork",
            self.with_state(|st| st.delete_fork(repo, number)),
        );
    }

    /// Converts a pull request to a draft (`draft: true`, webhook `converted_to_draft`) or
    /// marks it ready for review (`ready_for_review`), as `user`. Nothing happens when it is
    /// already so.
    #[track_caller]
    pub fn set_draft(&self, repo: &str, number: u64, user: &User, draft: bool) {
        ok(
            "set_draft",
            self.with_state(|st| st.set_draft(repo, number, &user.login, draft)),
        );
    }

    /// Points an open pull request at another base branch (`pull_request.edited`).
    #[track_caller]
    pub fn retarget_pr(&self, repo: &str, number: u64, user: &User, base: &str) {
        ok(
            "retarget_pr",
            self.with_state(|st| st.retarget(repo, number, &user.login, base)),
        );
    }

    /// Makes a pull request conflict with its base for good (or stop conflicting): merges
    /// answer 405 "Pull Request is not mergeable" and REST shows `mergeable: false`,
    /// `mergeable_state: "dirty"`. Unlike [`FailureSpec::merge_conflict`](crate::FailureSpec),
    /// which fails one call, this lasts until it is set back. No webhook, as on GitHub.
    #[track_caller]
    pub fn set_conflicting(&self, repo: &str, number: u64, conflicting: bool) {
        ok(
            "set_conflicting",
            self.with_state(|st| st.set_conflicting(repo, number, conflicting)),
        );
    }

    /// Protects `branch` (replacing an earlier rule): see [`Protection`] for what merges into
    /// it then need. `GET /branches/{branch}` shows `protected: true`.
    #[track_caller]
    pub fn protect_branch(&self, repo: &str, branch: &str, protection: Protection) {
        ok(
            "protect_branch",
            self.with_state(|st| st.protect_branch(repo, branch, protection)),
        );
    }

    /// Sets GitHub's "Automatically delete head branches" of `repo` (`delete_branch_on_merge`):
    /// a merged pull request's head branch in the repository is then deleted.
    #[track_caller]
    pub fn set_delete_branch_on_merge(&self, repo: &str, on: bool) {
        ok(
            "set_delete_branch_on_merge",
            self.with_state(|st| {
                st.repo_mut(repo)?.delete_branch_on_merge = on;
                Ok(())
            }),
        );
    }

    /// Makes `branch` (which must exist) the repository's default branch, as an admin does in
    /// the settings: no webhook is sent.
    #[track_caller]
    pub fn set_default_branch(&self, repo: &str, branch: &str) {
        ok(
            "set_default_branch",
            self.with_state(|st| {
                let r = st.repo_mut(repo)?;
                if crate::git::branch_tip(&r.git, branch).is_none() {
                    return Err(crate::error::ApiError::not_found_msg(format!(
                        "branch {branch}"
                    )));
                }
                r.default_branch = branch.to_owned();
                Ok(())
            }),
        );
    }

    /// Removes the protection of `branch`.
    #[track_caller]
    pub fn unprotect_branch(&self, repo: &str, branch: &str) {
        ok(
            "unprotect_branch",
            self.with_state(|st| st.unprotect_branch(repo, branch)),
        );
    }

    /// Opens a plain issue; returns its number (shared sequence with pull requests).
    #[track_caller]
    pub fn open_issue(&self, repo: &str, user: &User, title: &str, body: &str) -> u64 {
        ok(
            "open_issue",
            self.with_state(|st| st.open_issue(repo, &user.login, title, body)),
        )
    }

    /// Edits the title and/or body of an issue or pull request (`pull_request.edited`).
    #[track_caller]
    pub fn edit_pr(
        &self,
        repo: &str,
        number: u64,
        user: &User,
        title: Option<&str>,
        body: Option<&str>,
    ) {
        ok(
            "edit_pr",
            self.with_state(|st| {
                st.edit_issue(
                    repo,
                    number,
                    &user.login,
                    IssueEdit {
                        title,
                        body,
                        state: None,
                    },
                )
            }),
        );
    }

    /// Closes an issue or pull request without merging.
    #[track_caller]
    pub fn close_pr(&self, repo: &str, number: u64, user: &User) {
        ok(
            "close_pr",
            self.with_state(|st| {
                st.edit_issue(
                    repo,
                    number,
                    &user.login,
                    IssueEdit {
                        state: Some("closed"),
                        ..Default::default()
                    },
                )
            }),
        );
    }

    /// Reopens a closed issue or pull request.
    #[track_caller]
    pub fn reopen_pr(&self, repo: &str, number: u64, user: &User) {
        ok(
            "reopen_pr",
            self.with_state(|st| {
                st.edit_issue(
                    repo,
                    number,
                    &user.login,
                    IssueEdit {
                        state: Some("open"),
                        ..Default::default()
                    },
                )
            }),
        );
    }

    /// A human merges the pull request with a merge commit; returns the merge commit sha.
    #[track_caller]
    pub fn merge_pr(&self, repo: &str, number: u64, user: &User) -> String {
        ok(
            "merge_pr",
            self.with_state(|st| {
                st.merge_pull(
                    repo,
                    number,
                    &user.login,
                    MergeRequest {
                        sha: None,
                        method: "merge",
                        title: None,
                        message: None,
                    },
                )
            }),
        )
    }

    /// Comments on an issue or pull request; returns the comment id.
    #[track_caller]
    pub fn comment(&self, repo: &str, number: u64, user: &User, body: &str) -> u64 {
        ok(
            "comment",
            self.with_state(|st| st.add_comment(repo, number, &user.login, body)),
        )
    }

    /// Edits a comment (`issue_comment.edited` with `changes.body.from`).
    #[track_caller]
    pub fn edit_comment(&self, repo: &str, comment_id: u64, user: &User, body: &str) {
        ok(
            "edit_comment",
            self.with_state(|st| st.edit_comment(repo, comment_id, &user.login, body)),
        );
    }

    /// Deletes a comment.
    #[track_caller]
    pub fn delete_comment(&self, repo: &str, comment_id: u64, user: &User) {
        ok(
            "delete_comment",
            self.with_state(|st| st.delete_comment(repo, comment_id, &user.login)),
        );
    }

    /// Reacts on an issue or pull request (`+1`, `-1`, `laugh`, `confused`, `heart`, `hooray`,
    /// `rocket`, `eyes`). No webhook, as on GitHub. Returns the reaction id.
    #[track_caller]
    pub fn react(&self, repo: &str, number: u64, user: &User, content: &str) -> u64 {
        ok(
            "react",
            self.with_state(|st| {
                st.add_reaction(repo, ReactionTarget::Issue(number), &user.login, content)
            }),
        )
        .0
        .id
    }

    /// Reacts on a comment. No webhook. Returns the reaction id.
    #[track_caller]
    pub fn react_comment(&self, repo: &str, comment_id: u64, user: &User, content: &str) -> u64 {
        ok(
            "react_comment",
            self.with_state(|st| {
                st.add_reaction(
                    repo,
                    ReactionTarget::Comment(comment_id),
                    &user.login,
                    content,
                )
            }),
        )
        .0
        .id
    }

    /// Removes a reaction from an issue or pull request.
    #[track_caller]
    pub fn unreact(&self, repo: &str, number: u64, reaction_id: u64) {
        ok(
            "unreact",
            self.with_state(|st| {
                st.delete_reaction(repo, ReactionTarget::Issue(number), reaction_id)
            }),
        );
    }

    /// Submits a review on the PR's current head; returns the review id.
    #[track_caller]
    pub fn review(&self, repo: &str, number: u64, user: &User, state: ReviewState) -> u64 {
        let body = if state == ReviewState::ChangesRequested {
            "Please change this."
        } else {
            ""
        };
        self.review_with_body(repo, number, user, state, body)
    }

    /// Submits a review with a body.
    #[track_caller]
    pub fn review_with_body(
        &self,
        repo: &str,
        number: u64,
        user: &User,
        state: ReviewState,
        body: &str,
    ) -> u64 {
        ok(
            "review",
            self.with_state(|st| st.submit_review(repo, number, &user.login, state, body, None)),
        )
    }

    /// Submits an approving review naming `commit` (GitHub's `commit_id`: a reviewer whose
    /// page showed an older head); returns the review id.
    #[track_caller]
    pub fn approve_commit(&self, repo: &str, number: u64, user: &User, commit: &str) -> u64 {
        ok(
            "approve_commit",
            self.with_state(|st| {
                st.submit_review(
                    repo,
                    number,
                    &user.login,
                    ReviewState::Approved,
                    "",
                    Some(commit),
                )
            }),
        )
    }

    /// Dismisses a review (`pull_request_review.dismissed`).
    #[track_caller]
    pub fn dismiss_review(&self, repo: &str, number: u64, review_id: u64, user: &User) {
        ok(
            "dismiss_review",
            self.with_state(|st| st.dismiss_review(repo, number, review_id, &user.login)),
        );
    }

    /// Adds a label (`pull_request.labeled` / `issues.labeled`).
    #[track_caller]
    pub fn label(&self, repo: &str, number: u64, user: &User, name: &str) {
        ok(
            "label",
            self.with_state(|st| st.add_labels(repo, number, &user.login, &[name.to_owned()])),
        );
    }

    /// Removes a label (`unlabeled`).
    #[track_caller]
    pub fn unlabel(&self, repo: &str, number: u64, user: &User, name: &str) {
        ok(
            "unlabel",
            self.with_state(|st| st.remove_label(repo, number, &user.login, name)),
        );
    }

    // ---- inspection ----

    /// The comments of an issue or pull request, oldest first.
    #[track_caller]
    pub fn comments(&self, repo: &str, number: u64) -> Vec<Comment> {
        self.all_comments(repo)
            .into_iter()
            .filter(|(on, _)| *on == number)
            .map(|(_, comment)| comment)
            .collect()
    }

    /// Every comment of the repository (on issues and pull requests alike), oldest first, with
    /// the number of the issue or pull request it is on.
    #[track_caller]
    pub fn all_comments(&self, repo: &str) -> Vec<(u64, Comment)> {
        self.read_repo(repo, |st, r| {
            r.comments
                .values()
                .map(|c| {
                    let comment = Comment {
                        id: c.id,
                        user: c.user.clone(),
                        user_id: st.user_id(&c.user),
                        body: c.body.clone(),
                        created_at: c.created_at,
                        updated_at: c.updated_at,
                    };
                    (c.issue_number, comment)
                })
                .collect()
        })
    }

    /// A snapshot of pull request `number`.
    ///
    /// # Panics
    /// If there is no such pull request.
    #[track_caller]
    pub fn pr(&self, repo: &str, number: u64) -> PullRequest {
        self.read_repo(repo, |_, r| {
            let (i, pr) = ok(&format!("pull request #{number}"), r.pull(number));
            PullRequest {
                number,
                title: i.title.clone(),
                body: i.body.clone(),
                user: i.user.clone(),
                state: if i.open { "open" } else { "closed" }.to_owned(),
                merged: pr.merged_at.is_some(),
                merged_at: pr.merged_at,
                merge_commit_sha: pr.merge_commit_sha.clone(),
                head_ref: pr.head_ref.clone(),
                head_sha: pr.head_sha.clone(),
                base_ref: pr.base_ref.clone(),
                labels: i.labels.clone(),
                draft: pr.draft,
                head_repo: pr.head_repo.clone(),
            }
        })
    }

    /// Every pull request of the repository, by number.
    #[track_caller]
    pub fn prs(&self, repo: &str) -> Vec<PullRequest> {
        let numbers: Vec<u64> = self.read_repo(repo, |_, r| {
            r.issues
                .values()
                .filter(|i| i.pr.is_some())
                .map(|i| i.number)
                .collect()
        });
        numbers.into_iter().map(|n| self.pr(repo, n)).collect()
    }

    /// The labels of an issue or pull request.
    #[track_caller]
    pub fn labels(&self, repo: &str, number: u64) -> Vec<String> {
        self.read_repo(repo, |_, r| ok("labels", r.issue(number)).labels.clone())
    }

    fn to_reactions(list: &[crate::state::ReactionRec]) -> Vec<Reaction> {
        list.iter()
            .map(|x| Reaction {
                id: x.id,
                user: x.user.clone(),
                content: x.content.clone(),
                created_at: x.created_at,
            })
            .collect()
    }

    /// Reactions on an issue or pull request.
    #[track_caller]
    pub fn reactions(&self, repo: &str, number: u64) -> Vec<Reaction> {
        let st = self.shared.lock();
        Self::to_reactions(ok(
            "reactions",
            st.reactions(repo, ReactionTarget::Issue(number)),
        ))
    }

    /// Reactions on a comment.
    #[track_caller]
    pub fn comment_reactions(&self, repo: &str, comment_id: u64) -> Vec<Reaction> {
        let st = self.shared.lock();
        Self::to_reactions(ok(
            "reactions",
            st.reactions(repo, ReactionTarget::Comment(comment_id)),
        ))
    }

    /// Reviews of a pull request, oldest first.
    #[track_caller]
    pub fn reviews(&self, repo: &str, number: u64) -> Vec<Review> {
        self.read_repo(repo, |_, r| {
            let (_, pr) = ok("reviews", r.pull(number));
            pr.reviews
                .iter()
                .map(|x| Review {
                    id: x.id,
                    user: x.user.clone(),
                    state: x.state,
                    commit_id: x.commit_id.clone(),
                    body: x.body.clone(),
                    submitted_at: x.submitted_at,
                })
                .collect()
        })
    }

    /// Commit statuses on `sha` (a sha or branch name), oldest first.
    #[track_caller]
    pub fn statuses(&self, repo: &str, sha: &str) -> Vec<CommitStatus> {
        self.read_repo(repo, |_, r| {
            let sha = git::resolve(&r.git, sha)
                .map(|o| o.to_string())
                .unwrap_or_else(|| sha.to_owned());
            r.statuses
                .iter()
                .filter(|s| s.sha == sha)
                .map(|s| CommitStatus {
                    id: s.id,
                    sha: s.sha.clone(),
                    state: s.state.clone(),
                    context: s.context.clone(),
                    description: s.description.clone(),
                    target_url: s.target_url.clone(),
                    creator: s.creator.clone(),
                })
                .collect()
        })
    }

    /// Check runs on `sha` (a sha or branch name), oldest first.
    #[track_caller]
    pub fn check_runs(&self, repo: &str, sha: &str) -> Vec<CheckRun> {
        self.read_repo(repo, |_, r| {
            let sha = git::resolve(&r.git, sha)
                .map(|o| o.to_string())
                .unwrap_or_else(|| sha.to_owned());
            r.check_runs
                .iter()
                .filter(|c| c.head_sha == sha)
                .map(|c| CheckRun {
                    id: c.id,
                    name: c.name.clone(),
                    head_sha: c.head_sha.clone(),
                    status: c.status.clone(),
                    conclusion: c.conclusion.clone(),
                    title: c.title.clone(),
                    summary: c.summary.clone(),
                })
                .collect()
        })
    }

    /// The tip of `branch`, if it exists.
    #[track_caller]
    pub fn branch_sha(&self, repo: &str, branch: &str) -> Option<String> {
        self.read_repo(repo, |_, r| {
            git::branch_tip(&r.git, branch).map(|o| o.to_string())
        })
    }

    /// The names of `repo`'s branches, sorted.
    #[track_caller]
    pub fn branches(&self, repo: &str) -> Vec<String> {
        let mut names: Vec<String> = self.read_repo(repo, |_, r| {
            git::branches(&r.git)
                .expect("the repo's branches")
                .into_iter()
                .map(|(name, _)| name)
                .collect()
        });
        names.sort();
        names
    }

    /// The content of `path` on `branch` (or at a sha), if it exists and is UTF-8.
    #[track_caller]
    pub fn file_on(&self, repo: &str, branch: &str, path: &str) -> Option<String> {
        self.read_repo(repo, |_, r| {
            let tip = git::resolve(&r.git, branch)?;
            match git::read_path(&r.git, tip, path).ok()?? {
                // A symbolic link's blob is its link text.
                git::PathEntry::File { bytes, .. }
                | git::PathEntry::Symlink { target: bytes, .. } => String::from_utf8(bytes).ok(),
                git::PathEntry::Dir(_) | git::PathEntry::Submodule { .. } => None,
            }
        })
    }

    /// The paths of all files on `branch`, sorted.
    #[track_caller]
    pub fn files_on(&self, repo: &str, branch: &str) -> Vec<String> {
        self.read_repo(repo, |_, r| {
            let Some(tip) = git::resolve(&r.git, branch) else {
                return Vec::new();
            };
            let mut files: Vec<String> = git::list_tree(&r.git, tip, true)
                .ok()
                .flatten()
                .map(|(_, items)| {
                    items
                        .into_iter()
                        .filter(|i| !i.is_tree)
                        .map(|i| i.path)
                        .collect()
                })
                .unwrap_or_default();
            files.sort();
            files
        })
    }

    /// `git log` of `branch` (or from a sha), newest first.
    #[track_caller]
    pub fn log(&self, repo: &str, branch: &str) -> Vec<CommitInfo> {
        self.read_repo(repo, |_, r| {
            let Some(tip) = git::resolve(&r.git, branch).or_else(|| Oid::from_str(branch).ok())
            else {
                return Vec::new();
            };
            ok("log", git::log(&r.git, tip).map_err(Into::into))
        })
    }
}
