//! The forge's model: users, teams, tokens, repositories and everything that hangs off an issue.
//! One `ForgeState` behind one mutex; git lives in the bare repos each `RepoRec` owns.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::error::{ApiError, ApiResult};
use crate::model::{AppConfig, Protection, ReviewState, User, UserKind};
use crate::webhooks::WebhookHub;

/// A user account.
pub(crate) struct UserRec {
    pub login: String,
    pub id: u64,
    pub kind: UserKind,
    pub created_at: DateTime<Utc>,
}

impl UserRec {
    pub fn to_user(&self) -> User {
        User {
            login: self.login.clone(),
            id: self.id,
            kind: self.kind,
        }
    }
}

/// What a bearer token stands for.
pub(crate) struct TokenRec {
    pub login: String,
    pub expires_at: Option<DateTime<Utc>>,
    /// An app installation token (`ghs_…`), not a personal one: GitHub refuses it some
    /// user-only routes (`GET /user`).
    pub installation: bool,
}

/// A reaction on an issue or a comment.
#[derive(Clone)]
pub(crate) struct ReactionRec {
    pub id: u64,
    pub user: String,
    pub content: String,
    pub created_at: DateTime<Utc>,
}

/// An issue comment.
pub(crate) struct CommentRec {
    pub id: u64,
    pub issue_number: u64,
    pub user: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub reactions: Vec<ReactionRec>,
}

/// A pull request review.
pub(crate) struct ReviewRec {
    pub id: u64,
    pub user: String,
    pub state: ReviewState,
    pub body: String,
    pub commit_id: String,
    pub submitted_at: DateTime<Utc>,
}

/// The pull-request half of an issue.
pub(crate) struct PrRec {
    pub id: u64,
    pub head_ref: String,
    pub base_ref: String,
    /// Follows the head branch while the PR is open; frozen when it closes.
    pub head_sha: String,
    pub merged_at: Option<DateTime<Utc>>,
    pub merged_by: Option<String>,
    pub merge_commit_sha: Option<String>,
    pub reviews: Vec<ReviewRec>,
    /// A draft is never merged (405 "Pull Request is still a draft").
    pub draft: bool,
    /// Set by a test: the PR conflicts with its base whatever git says (405, `dirty`).
    pub conflicting: bool,
    /// `owner/name` of the fork the head lives in, for a PR from a fork. Its head commit is in
    /// this repository's object database (under `refs/pull/<n>/head`), never on a branch.
    pub head_repo: Option<String>,
    /// Set by a test: that fork was deleted, and GitHub shows `head.repo` as `null`.
    pub fork_deleted: bool,
    /// Every head the PR had while open, oldest first: GitLab's MR versions, and GitHub's
    /// `head_ref_force_pushed` timeline events for the moves that were not fast-forwards.
    pub head_moves: Vec<HeadMoveRec>,
}

/// One move of an open PR's head (its opening included).
#[derive(Clone)]
pub(crate) struct HeadMoveRec {
    pub sha: String,
    pub at: DateTime<Utc>,
    /// The head before is not an ancestor of this one: a force push.
    pub forced: bool,
}

impl PrRec {
    /// Whether the head is a branch of this repository (not of a fork): only then does a
    /// push to `head_ref` here move the PR.
    pub fn head_is_local(&self) -> bool {
        self.head_repo.is_none()
    }

    /// The owner of the head branch: the fork's owner, or the repository's.
    pub fn head_owner<'a>(&'a self, repo_owner: &'a str) -> &'a str {
        match &self.head_repo {
            Some(fork) => fork.split_once('/').map_or(fork.as_str(), |(o, _)| o),
            None => repo_owner,
        }
    }
}

/// An issue, or a pull request (which GitHub also treats as an issue).
pub(crate) struct IssueRec {
    pub id: u64,
    pub number: u64,
    pub title: String,
    pub body: String,
    pub user: String,
    pub open: bool,
    pub labels: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub reactions: Vec<ReactionRec>,
    pub pr: Option<PrRec>,
    /// GitLab's iid: issues and merge requests count separately (issue #1 and MR !1 coexist),
    /// while `number` is the one sequence GitHub shares between them.
    pub gl_iid: u64,
}

/// A repository label.
pub(crate) struct LabelRec {
    pub id: u64,
    pub color: String,
    pub description: Option<String>,
}

/// A commit status.
pub(crate) struct StatusRec {
    pub id: u64,
    pub sha: String,
    pub state: String,
    pub context: String,
    pub description: Option<String>,
    pub target_url: Option<String>,
    pub creator: String,
    pub created_at: DateTime<Utc>,
    /// The state as GitLab named it (`running`, `canceled`, …) when it came through the GitLab
    /// API; `state` holds the GitHub state it counts as for merge checks.
    pub gl_state: Option<String>,
}

/// A check run.
pub(crate) struct CheckRunRec {
    pub id: u64,
    pub name: String,
    pub head_sha: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub text: Option<String>,
    pub details_url: Option<String>,
    pub external_id: Option<String>,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A repository: a bare git repo plus its issues, comments, statuses and checks.
pub(crate) struct RepoRec {
    pub id: u64,
    pub owner: String,
    pub name: String,
    pub default_branch: String,
    pub git: git2::Repository,
    pub created_at: DateTime<Utc>,
    pub next_number: u64,
    /// The next GitLab iid of a merge request, and of an issue (two separate sequences).
    pub next_gl_mr_iid: u64,
    pub next_gl_issue_iid: u64,
    pub issues: BTreeMap<u64, IssueRec>,
    pub comments: BTreeMap<u64, CommentRec>,
    pub labels: BTreeMap<String, LabelRec>,
    pub statuses: Vec<StatusRec>,
    pub check_runs: Vec<CheckRunRec>,
    /// Branch protection rules by branch name.
    pub protections: BTreeMap<String, Protection>,
    /// GitHub's "Automatically delete head branches": a merged pull request's head branch (in
    /// this repository) is deleted.
    pub delete_branch_on_merge: bool,
}

impl RepoRec {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    pub fn issue(&self, number: u64) -> ApiResult<&IssueRec> {
        self.issues.get(&number).ok_or_else(ApiError::not_found)
    }

    pub fn issue_mut(&mut self, number: u64) -> ApiResult<&mut IssueRec> {
        self.issues.get_mut(&number).ok_or_else(ApiError::not_found)
    }

    /// A pull request (404 for plain issues, as GitHub answers on `/pulls/{n}`).
    pub fn pull(&self, number: u64) -> ApiResult<(&IssueRec, &PrRec)> {
        let issue = self.issue(number)?;
        let pr = issue.pr.as_ref().ok_or_else(ApiError::not_found)?;
        Ok((issue, pr))
    }

    /// Takes the next GitLab iid for a new merge request (`true`) or issue (`false`).
    pub fn take_gl_iid(&mut self, merge_request: bool) -> u64 {
        let next = if merge_request {
            &mut self.next_gl_mr_iid
        } else {
            &mut self.next_gl_issue_iid
        };
        let iid = *next;
        *next += 1;
        iid
    }

    pub fn pull_mut(&mut self, number: u64) -> ApiResult<&mut IssueRec> {
        let issue = self.issue_mut(number)?;
        if issue.pr.is_none() {
            return Err(ApiError::not_found());
        }
        Ok(issue)
    }
}

/// Everything the forge knows.
pub(crate) struct ForgeState {
    pub base_url: String,
    pub root: PathBuf,
    pub users: BTreeMap<String, UserRec>,
    pub teams: BTreeMap<String, BTreeSet<String>>,
    /// GitLab's `expires_at` of a team membership, by (team, login); none: no expiry.
    pub membership_expiry: BTreeMap<(String, String), chrono::NaiveDate>,
    pub repos: BTreeMap<String, RepoRec>,
    pub tokens: HashMap<String, TokenRec>,
    pub app: Option<AppConfig>,
    pub hub: Arc<WebhookHub>,
    /// How far the forge's clock runs ahead of the wall clock (see `TestForge::advance_clock`).
    pub clock_offset: chrono::Duration,
    /// Where the clock stands while it is frozen (see `TestForge::freeze_clock`).
    pub frozen_at: Option<DateTime<Utc>>,
    /// GitLab approval hooks waiting for their worker, as (project, number, action, actor),
    /// while approval hooks are built late (see `TestForge::gl_build_approval_hooks_later`).
    pub gl_approval_hooks_waiting: Option<Vec<(String, u64, String, String)>>,
    /// Whether GitLab's approvals API leaves out `approved_at`, as GitLab did before it was
    /// added (see `TestForge::gl_set_approvals_untimed`).
    /// GitLab's lag in linking a merge request's head pipeline (with "Pipelines must
    /// succeed"): the next this many merge calls are refused with 405 while the merge request
    /// reads `ci_still_running`.
    pub gl_pipeline_unlinked_merges: u32,
    pub gl_approvals_untimed: bool,
    next_id: u64,
}

/// `t` without its fraction of a second (truncated, as GitHub does, never rounded).
pub(crate) fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// A stable id for a login: the same login gets the same id in every forge, so snapshots of
/// payloads do not depend on the order a test creates its users in.
fn stable_id(login: &str) -> u64 {
    // FNV-1a, folded into a range that looks like real GitHub user ids.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in login.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    1_000_000 + h % 90_000_000
}

impl ForgeState {
    pub fn new(base_url: String, root: PathBuf, hub: Arc<WebhookHub>) -> Self {
        ForgeState {
            base_url,
            root,
            users: BTreeMap::new(),
            teams: BTreeMap::new(),
            membership_expiry: BTreeMap::new(),
            repos: BTreeMap::new(),
            tokens: HashMap::new(),
            app: None,
            hub,
            clock_offset: chrono::Duration::zero(),
            frozen_at: None,
            gl_approval_hooks_waiting: None,
            gl_approvals_untimed: false,
            gl_pipeline_unlinked_merges: 0,
            next_id: 1000,
        }
    }

    /// The forge's notion of now: the wall clock plus the test's offset (or the frozen
    /// instant), in whole seconds. GitHub stores and sends whole seconds; stamping the model
    /// the same way keeps what a test reads back equal to what the REST API and webhooks say.
    pub fn now(&self) -> DateTime<Utc> {
        whole_seconds(
            self.frozen_at
                .unwrap_or_else(|| Utc::now() + self.clock_offset),
        )
    }

    /// Moves the clock by `by`, frozen or running.
    pub fn advance_clock(&mut self, by: chrono::Duration) {
        match &mut self.frozen_at {
            Some(at) => *at += by,
            None => self.clock_offset += by,
        }
    }

    /// Makes the clock read `at` now and run on from there.
    pub fn set_clock(&mut self, at: DateTime<Utc>) {
        self.frozen_at = None;
        self.clock_offset = at - Utc::now();
    }

    /// A fresh id for comments, reactions, reviews, statuses, …
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Returns the user, creating it with its stable id on first use.
    pub fn ensure_user(&mut self, login: &str, kind: UserKind) -> User {
        if let Some(u) = self.users.get(login) {
            return u.to_user();
        }
        let mut id = stable_id(login);
        while self.users.values().any(|u| u.id == id) {
            id += 1;
        }
        let rec = UserRec {
            login: login.to_owned(),
            id,
            kind,
            created_at: self.now(),
        };
        let user = rec.to_user();
        self.users.insert(login.to_owned(), rec);
        user
    }

    pub fn user_id(&self, login: &str) -> u64 {
        self.users.get(login).map(|u| u.id).unwrap_or(0)
    }

    pub fn repo(&self, full: &str) -> ApiResult<&RepoRec> {
        self.repos.get(full).ok_or_else(ApiError::not_found)
    }

    pub fn repo_mut(&mut self, full: &str) -> ApiResult<&mut RepoRec> {
        self.repos.get_mut(full).ok_or_else(ApiError::not_found)
    }

    /// What a token stands for, if it is known and not expired.
    pub fn token(&self, token: &str) -> Option<&TokenRec> {
        let rec = self.tokens.get(token)?;
        if rec.expires_at.is_some_and(|e| e <= self.now()) {
            return None;
        }
        Some(rec)
    }

    /// A stable personal token for a user.
    pub fn personal_token(&mut self, login: &str) -> String {
        let id = self.user_id(login);
        let token = format!(
            "ghp_testforge_{id}_{}",
            login.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        self.tokens.insert(
            token.clone(),
            TokenRec {
                login: login.to_owned(),
                expires_at: None,
                installation: false,
            },
        );
        token
    }
}
