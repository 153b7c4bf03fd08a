//! The public value types a test reads back from the forge: snapshots, never live handles.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A forge account, as a test names it. The numeric `id` is stable for the life of the forge and
/// is what GitHub sends as `user.id`, so a bot can check permissions by id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct User {
    /// The login, e.g. `alice` or `breakglass[bot]`.
    pub login: String,
    /// The numeric id GitHub would send as `user.id`.
    pub id: u64,
    /// Whether GitHub would report this account as `User` or `Bot`.
    pub kind: UserKind,
}

/// The `type` of a GitHub account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum UserKind {
    /// A person (`"type": "User"`).
    User,
    /// An app's bot account (`"type": "Bot"`).
    Bot,
}

impl UserKind {
    /// The string GitHub puts in `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            UserKind::User => "User",
            UserKind::Bot => "Bot",
        }
    }
}

/// A conversation comment on an issue or pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comment {
    /// The comment id (global, like GitHub's).
    pub id: u64,
    /// Login of the author.
    pub user: String,
    /// Numeric id of the author.
    pub user_id: u64,
    /// The Markdown body.
    pub body: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last edited (equal to `created_at` if never edited).
    pub updated_at: DateTime<Utc>,
}

/// An emoji reaction on an issue, pull request or comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reaction {
    /// The reaction id.
    pub id: u64,
    /// Login of the user who reacted.
    pub user: String,
    /// One of `+1 -1 laugh confused heart hooray rocket eyes`.
    pub content: String,
    /// When the reaction was added.
    pub created_at: DateTime<Utc>,
}

/// The state of a submitted review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ReviewState {
    /// `APPROVED`.
    Approved,
    /// `CHANGES_REQUESTED`.
    ChangesRequested,
    /// `COMMENTED`.
    Commented,
    /// `DISMISSED` (an earlier review that was dismissed).
    Dismissed,
}

impl ReviewState {
    /// The upper-case string of the REST API (`APPROVED`, …).
    pub fn as_rest(self) -> &'static str {
        match self {
            ReviewState::Approved => "APPROVED",
            ReviewState::ChangesRequested => "CHANGES_REQUESTED",
            ReviewState::Commented => "COMMENTED",
            ReviewState::Dismissed => "DISMISSED",
        }
    }

    /// The lower-case string of webhook payloads (`approved`, …).
    pub fn as_webhook(self) -> &'static str {
        match self {
            ReviewState::Approved => "approved",
            ReviewState::ChangesRequested => "changes_requested",
            ReviewState::Commented => "commented",
            ReviewState::Dismissed => "dismissed",
        }
    }

    /// Parses the REST `event` of a review submission (`APPROVE`, `REQUEST_CHANGES`, `COMMENT`).
    pub(crate) fn from_event(event: &str) -> Option<ReviewState> {
        match event {
            "APPROVE" => Some(ReviewState::Approved),
            "REQUEST_CHANGES" => Some(ReviewState::ChangesRequested),
            "COMMENT" => Some(ReviewState::Commented),
            _ => None,
        }
    }
}

/// A review of a pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Review {
    /// The review id.
    pub id: u64,
    /// Login of the reviewer.
    pub user: String,
    /// Its state.
    pub state: ReviewState,
    /// The head sha the review applies to.
    pub commit_id: String,
    /// The review body.
    pub body: String,
    /// When it was submitted.
    pub submitted_at: DateTime<Utc>,
}

/// A snapshot of a pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullRequest {
    /// The number (shared sequence with issues).
    pub number: u64,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Login of the author.
    pub user: String,
    /// `open` or `closed`.
    pub state: String,
    /// Whether it was merged.
    pub merged: bool,
    /// When it was merged.
    pub merged_at: Option<DateTime<Utc>>,
    /// The merge commit on the base branch, once merged.
    pub merge_commit_sha: Option<String>,
    /// The head branch name.
    pub head_ref: String,
    /// The head commit.
    pub head_sha: String,
    /// The base branch name.
    pub base_ref: String,
    /// Label names, in the order they were added.
    pub labels: Vec<String>,
    /// Whether it is a draft.
    pub draft: bool,
    /// `owner/name` of the fork the head comes from; `None` for a branch of this repository.
    pub head_repo: Option<String>,
}

/// A commit status (`POST /repos/{o}/{r}/statuses/{sha}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommitStatus {
    /// Status id.
    pub id: u64,
    /// The commit it is attached to.
    pub sha: String,
    /// `error`, `failure`, `pending` or `success`.
    pub state: String,
    /// The context, e.g. `breakglass/policy`.
    pub context: String,
    /// Short description.
    pub description: Option<String>,
    /// Link target.
    pub target_url: Option<String>,
    /// Login of the creator.
    pub creator: String,
}

/// A check run (`POST /repos/{o}/{r}/check-runs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRun {
    /// Check run id.
    pub id: u64,
    /// The check's name.
    pub name: String,
    /// The commit it is attached to.
    pub head_sha: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    /// The conclusion once completed.
    pub conclusion: Option<String>,
    /// `output.title`.
    pub title: Option<String>,
    /// `output.summary`.
    pub summary: Option<String>,
}

/// One commit of a branch's history, as `git log` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommitInfo {
    /// The commit id.
    pub sha: String,
    /// Parent commit ids, first parent first.
    pub parents: Vec<String>,
    /// The full message.
    pub message: String,
    /// The author's name (the login for commits the forge makes).
    pub author: String,
}

/// A change to one file in a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileChange {
    /// Create or overwrite the file with this content.
    Write(String, String),
    /// Delete the file.
    Delete(String),
    /// Create or overwrite the file as an executable (mode `100755`).
    WriteExecutable(String, String),
    /// A symbolic link (mode `120000`) at the path, with this link text (its target).
    Symlink(String, String),
    /// A submodule (mode `160000`) at the path: a gitlink to this commit sha.
    Submodule(String, String),
}

/// One recorded webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// The `X-GitHub-Delivery` GUID; a redelivery keeps it.
    pub id: String,
    /// The `X-GitHub-Event` value.
    pub event: String,
    /// The payload's `action`, when it has one.
    pub action: Option<String>,
    /// The URL it was (or will be) sent to.
    pub url: String,
    /// The exact body bytes that were signed.
    pub body: Vec<u8>,
    /// The receiver's HTTP status of the latest attempt; `None` if not sent yet or the
    /// connection failed.
    pub status: Option<u16>,
    /// How many times it was sent.
    pub attempts: u32,
}

impl Delivery {
    /// The body parsed as JSON (`Null` if it is not JSON, which only raw test deliveries can be).
    pub fn payload(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A GitHub App registration: the app id that JWTs must name in `iss`, its installation and its
/// bot account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    /// The numeric app id (`iss` of the JWT).
    pub app_id: u64,
    /// The installation id the bot exchanges its JWT for tokens of.
    pub installation_id: u64,
    /// The bot account the installation acts as, e.g. `breakglass[bot]`.
    pub bot_login: String,
    /// How long an installation token lives (GitHub: one hour).
    pub token_ttl: chrono::Duration,
}

/// A branch protection rule (GitHub's classic protection, reduced to what merges check).
///
/// While a branch is protected, `PUT /pulls/{n}/merge` into it by anyone not in `bypass`
/// answers 405 until the pull request has `required_approving_reviews` approvals (each
/// reviewer's latest review counts, only from accounts with write access: members of a team of
/// the owning organization, the repository's owner, the app's bot) and every context in
/// `required_status_checks` is green on the head (a commit status `success`, or a completed check
/// run `success`, `neutral` or `skipped`). Direct pushes are not refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Protection {
    /// How many approving reviews a merge needs.
    pub required_approving_reviews: u32,
    /// Status contexts (or check run names) that must be green on the head.
    pub required_status_checks: Vec<String>,
    /// Logins that may merge regardless.
    pub bypass: Vec<String>,
}
