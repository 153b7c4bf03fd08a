//! What the bot hears from a forge, in its own words.
//!
//! Each forge's payloads are parsed in its own module (`github`, later `gitlab`) into the
//! [`ForgeEvent`] enum below, so that the workflow code never sees a GitHub or GitLab type and
//! one lifecycle serves both forges.

mod client;
pub mod error;
mod etag_cache;
pub mod github;
pub mod gitlab;
mod note_mark;
pub mod retry;

pub use client::{Forge, Thread};
pub use error::ForgeError;
pub use note_mark::unmarked;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A forge account. Permissions are decided by `id` (logins can be renamed and reused).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub id: u64,
    pub login: String,
    /// Bots and apps; the bot ignores its own and other bots' comments.
    pub is_bot: bool,
}

/// A pull (merge) request as an event shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestInfo {
    pub number: u64,
    pub author: Actor,
    pub head_sha: String,
    pub head_ref: String,
    pub base_ref: String,
    /// `owner/name` of the repository the head branch lives in: a PR from a fork names the
    /// fork, and the bot never writes to (or merges from) a branch outside the requests repo.
    #[serde(default)]
    pub head_repo: Option<String>,
    pub labels: Vec<String>,
    pub merged: bool,
    /// A draft is decided but never merged.
    #[serde(default)]
    pub draft: bool,
    /// When the forge last updated the PR, by the forge's clock (on an `opened` or
    /// `synchronized` event: when the head was pushed).
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullRequestAction {
    Opened,
    /// New commits were pushed: approvals given before no longer count.
    Synchronized,
    Reopened,
    Closed,
    Labeled,
    Unlabeled,
    Edited,
    /// Marked as a draft: never merged while it is one.
    ConvertedToDraft,
    /// Marked ready for review: decided again (and merged if approved or on a fast path).
    ReadyForReview,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommentAction {
    Created,
    /// Edits never execute commands: an edit must not add an approval under an old timestamp.
    Edited,
    Deleted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReactionAction {
    Added,
    /// Taken back: an approval it gave is withdrawn.
    Removed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    Approved,
    ChangesRequested,
    Commented,
    Dismissed,
}

/// A file changed by a pushed commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedCommit {
    pub id: String,
    pub message: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub modified: Vec<String>,
}

/// The commits a push webhook lists, and how many the push has where the forge counts them:
/// GitLab lists at most the last 20 and gives the whole count in `total_commits_count`.
///
/// Flattened into the event, so that a stored delivery keeps its `commits` field as before
/// the count was kept (older ones still read), with `total_commits` beside it when known.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedCommits {
    #[serde(rename = "commits", default)]
    pub listed: Vec<PushedCommit>,
    #[serde(
        rename = "total_commits",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub total: Option<usize>,
}

impl PushedCommits {
    /// The forge said that the push has commits it did not list.
    pub fn left_some_out(&self) -> bool {
        self.total.is_some_and(|total| total > self.listed.len())
    }
}

impl std::ops::Deref for PushedCommits {
    type Target = [PushedCommit];

    fn deref(&self) -> &[PushedCommit] {
        &self.listed
    }
}

impl<'a> IntoIterator for &'a PushedCommits {
    type Item = &'a PushedCommit;
    type IntoIter = std::slice::Iter<'a, PushedCommit>;

    fn into_iter(self) -> Self::IntoIter {
        self.listed.iter()
    }
}

impl FromIterator<PushedCommit> for PushedCommits {
    /// Commits listed by a forge that does not count them apart.
    fn from_iter<I: IntoIterator<Item = PushedCommit>>(commits: I) -> Self {
        Self {
            listed: commits.into_iter().collect(),
            total: None,
        }
    }
}

/// One event, forge-independent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ForgeEvent {
    PullRequest {
        action: PullRequestAction,
        pull_request: PullRequestInfo,
        sender: Actor,
        /// Opened with a `/breakglass` command in its description: the bot takes commands
        /// from comments only (a description is no comment with a time of its own), and says so.
        #[serde(default)]
        holds_command: bool,
    },
    /// An issue opened with a `/breakglass` command in its description (other issues' events
    /// are [`ForgeEvent::Ignored`]): not taken as a command, and said so.
    IssueDescribedCommand {
        number: u64,
        author: Actor,
        /// A GitLab confidential issue, whose notes the bot takes no command from either.
        confidential: bool,
    },
    Comment {
        action: CommentAction,
        /// The issue or pull request number the comment is on.
        number: u64,
        on_pull_request: bool,
        comment_id: u64,
        body: String,
        author: Actor,
        created_at: DateTime<Utc>,
        /// A GitLab internal note, or a note on a confidential issue, which only some members
        /// see: the bot's replies and the request PR it would open are seen by more, so it
        /// takes no command from one (and quotes nothing of it).
        #[serde(default)]
        internal: bool,
    },
    Review {
        state: ReviewState,
        pull_request: PullRequestInfo,
        review_id: u64,
        author: Actor,
        /// The commit the review was given on: an approval binds to it. `None` for a GitLab
        /// approval, which names none (its hook shows the head when it was built, later).
        commit_id: Option<String>,
        submitted_at: Option<DateTime<Utc>>,
        /// Whether the review's text holds a `/breakglass` command: the bot does not take
        /// commands from review text (its id is no comment's), and says so.
        #[serde(default)]
        holds_command: bool,
    },
    /// An emoji put on or taken off an issue or a merge request, as it happens (GitLab's Emoji
    /// Hook; GitHub sends no event for reactions, so the bot polls them there). `content` is in
    /// GitHub's names (`+1`, `-1`, …), which policies use for both forges.
    Reaction {
        action: ReactionAction,
        /// The issue or merge request number (iid) the emoji is on.
        number: u64,
        on_pull_request: bool,
        /// The forge's id of the award: a removal names the same id.
        reaction_id: u64,
        content: String,
        user: Actor,
        created_at: DateTime<Utc>,
    },
    /// An emoji put on a note of a merge request (GitLab's Emoji Hook; GitHub sends nothing for
    /// reactions on comments, nor lists them with the PR's). Never an approval: an approver's
    /// approval emoji on the bot's own note is answered with where it counts.
    NoteReaction {
        /// The merge request's iid.
        number: u64,
        /// Who wrote the note.
        note_author_id: u64,
        content: String,
        user: Actor,
    },
    Push {
        /// Full ref, e.g. `refs/heads/main`.
        git_ref: String,
        before: String,
        after: String,
        #[serde(flatten)]
        commits: PushedCommits,
        sender: Actor,
        /// The repository's default branch as the forge said with the push (GitHub's
        /// `repository.default_branch`, GitLab's `project.default_branch`).
        #[serde(default)]
        default_branch: Option<String>,
    },
    /// A change request found open at start whose news the bot may have missed while it was
    /// down (a forge does not send a failed webhook again): decided as it is now. Made by the
    /// bot's start-up catch-up, never parsed from a webhook.
    MissedChange { number: u64 },
    /// An approving review (GitLab: an approval) of a waiting request's current head, given
    /// while the bot was down and found by the catch-up: handled as the review webhook it
    /// missed.
    MissedReview {
        number: u64,
        review_id: u64,
        author: Actor,
        /// `None` for a GitLab approval, which names no commit.
        commit_id: Option<String>,
        /// When the review was submitted, by the forge's clock.
        #[serde(default)]
        submitted_at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// The forge checking that the hook works.
    Ping,
    /// An event the bot does not act on; acknowledged and dropped.
    Ignored { event: String },
}

/// A verified, parsed webhook delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The forge's delivery id (`X-GitHub-Delivery`, GitLab's `Idempotency-Key`): a redelivery
    /// carries the same one, so it is the deduplication key.
    pub id: String,
    /// `owner/name` of the repository, when the event has one.
    pub repository: Option<String>,
    pub event: ForgeEvent,
}

/// A file read from the repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileContent {
    pub path: String,
    pub text: String,
    /// The blob id, needed to update or delete the file through the API.
    pub blob_sha: String,
}

/// What the forge serves when asked for the text at a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Served {
    /// A file: the one at the path or, on GitHub, the file of the repository that a symbolic
    /// link there points to (with that file's own path and blob id).
    File(FileContent),
    /// An entry the forge serves no text of: a symbolic link GitHub does not follow, a
    /// submodule.
    Other(EntryKind),
}

/// How a pull request changes a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileChange {
    Added,
    Modified,
    Removed,
    Renamed,
    Other,
}

/// What kind of git tree entry a path is. Only a regular file is a request or a grant file:
/// a symbolic link's text is its target, and the forges serve a link's target, not the link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A blob, executable or not (`100644`, `100755`).
    File,
    /// A symbolic link (`120000`).
    Symlink,
    /// A submodule, a commit of another repository (`160000`).
    Submodule,
    /// The forge did not say (GitHub's comparison gives no modes).
    #[default]
    Unknown,
}

impl EntryKind {
    /// The kind of entry a git file mode (as the forges write it, in octal) names.
    pub fn from_mode(mode: &str) -> Self {
        match mode {
            "100644" | "100755" => EntryKind::File,
            "120000" => EntryKind::Symlink,
            "160000" => EntryKind::Submodule,
            _ => EntryKind::Unknown,
        }
    }
}

/// A file a pull request touches. For renames, `previous_path` is where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedFile {
    pub path: String,
    pub change: FileChange,
    pub previous_path: Option<String>,
    /// What the path is at the head (for a removed file: what it was).
    #[serde(default)]
    pub kind: EntryKind,
    /// The blob id the listing gives for the path at the head, where it gives one (GitHub).
    #[serde(default)]
    pub blob: Option<String>,
}

/// What merging one head would change: the files from the merge base of the base branch and
/// that commit to the commit. Pinned to the commit, unlike a change request's own files
/// listing, which shows whatever head the request has when the listing is served (a head that
/// someone can push away and back between the bot's calls).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangedFiles {
    pub files: Vec<ChangedFile>,
    /// False when the forge cut the listing short (GitHub lists at most 300 files of a
    /// comparison, GitLab stops at its diff limits): what it left out cannot be checked.
    pub complete: bool,
    /// Whether a commit between the base and the head has several parents. The head may then
    /// have several merge bases with the base (a criss-cross): the comparison diffs from one
    /// of them, while the merge combines them all and can bring what the listing never shows.
    /// Without merge commits the head has one merge base, and the listing is what the merge
    /// brings.
    pub merge_commits: bool,
    /// The commit the forge took the base to be, where it says (GitHub's `base_commit`).
    pub base_sha: Option<String>,
}

/// The labels of an issue or a change request, and whether it is open, as one read gives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadLabels {
    pub open: bool,
    pub labels: Vec<String>,
}

/// A pull request as the API shows it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequestState {
    pub info: PullRequestInfo,
    pub title: String,
    pub body: String,
    pub open: bool,
    pub merge_sha: Option<String>,
    pub merged_at: Option<DateTime<Utc>>,
    /// Who merged it, when it is merged and the forge says (GitHub's `merged_by`, GitLab's
    /// `merge_user`): a merge at the bot's head is the bot's own only when this is the bot.
    pub merged_by: Option<Actor>,
    /// How many files the change request changes against its merge base, when the forge says
    /// (GitHub's `changed_files`).
    pub changed_files: Option<u64>,
    /// The merge base of the change request's diff, when the forge says (GitLab's
    /// `diff_refs.base_sha`).
    pub merge_base: Option<String>,
    /// The repository's default branch as the forge said with the change request, when it
    /// does (GitHub's `base.repo.default_branch`): as fresh as the read itself.
    pub default_branch: Option<String>,
}

/// An open change request as the forge lists them: enough to tell whether the bot has heard
/// of its head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenChange {
    pub number: u64,
    pub head_sha: String,
    pub author_id: u64,
    pub draft: bool,
    pub labels: Vec<String>,
    /// Updated within the listing's window before the forge's own time (its `Date`): a
    /// review or an approval given while the bot was down is looked for only on these.
    /// `false` when the forge says no time.
    pub recently_updated: bool,
}

/// The newest move of a change request's head branch that the forge shows (see
/// [`Forge::latest_head_move`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadMove {
    /// When, by the forge's clock; `None` when its history was too long to read to its end.
    pub at: Option<DateTime<Utc>>,
    /// The head it moved to, when the forge says (GitLab's versions do, GitHub's timeline
    /// does not).
    pub sha: Option<String>,
}

/// A comment as the repository-wide listing shows it (see [`Forge::recent_comments`]): what a
/// comment webhook would have said of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedComment {
    pub id: u64,
    /// The issue or change request it was made on.
    pub number: u64,
    pub on_change: bool,
    pub body: String,
    pub author: Actor,
    pub created_at: DateTime<Utc>,
    /// Seen by only some members (see [`ForgeEvent::Comment`]'s `internal`).
    pub internal: bool,
    /// Changed since it was made: what it said first is not known, and an edit never
    /// executes a command.
    pub edited: bool,
    /// How long before the listing it was made, both times the forge's.
    pub age: chrono::TimeDelta,
}

/// A note (comment) on an issue, pull request or merge request, as the forge lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub author_id: u64,
    pub body: String,
    /// The forge's time of the note.
    pub created_at: DateTime<Utc>,
}

/// A reaction (emoji) on an issue, pull request or comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reaction {
    pub id: u64,
    pub user: Actor,
    /// GitHub's names: `+1`, `-1`, `laugh`, `confused`, `heart`, `hooray`, `rocket`, `eyes`.
    pub content: String,
    pub created_at: DateTime<Utc>,
}

/// A submitted review.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Review {
    pub id: u64,
    pub author: Actor,
    pub state: ReviewState,
    pub commit_id: Option<String>,
    pub submitted_at: Option<DateTime<Utc>>,
}

/// The answer to a conditional request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Polled<T> {
    /// `304 Not Modified`: nothing changed since the ETag we sent (and it cost no rate limit).
    NotModified,
    Changed {
        etag: Option<String>,
        value: T,
    },
}

/// A commit status's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, strum::Display)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum StatusState {
    Pending,
    Success,
    Failure,
    Error,
}

/// A merge the forge made: its commit and, where the forge's answer says it, the branch it
/// landed on (GitLab's merge answer is the merge request, target branch included; GitHub's
/// says only the commit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Landed {
    /// The merge commit (the head itself where no merge commit was made).
    pub sha: String,
    /// The branch the merge went into, when the answer says.
    pub base: Option<String>,
    /// Who merged, when the merge was found by reading the change after the call's answer was
    /// lost (someone else may have merged it meanwhile); `None` for the call's own answer.
    pub found_merged_by: Option<Option<Actor>>,
}

/// Why a merge did not happen.
#[derive(Clone, Debug, thiserror::Error)]
pub enum MergeError {
    /// The head moved since we decided (GitHub 409): decide again on the new head.
    #[error("the pull request's head changed since it was checked")]
    HeadChanged,
    /// Closed, already merged, a draft, conflicting or blocked by branch protection (GitHub
    /// 405/422).
    #[error("the pull request cannot be merged: {0}")]
    NotMergeable(String),
    #[error(transparent)]
    Forge(#[from] ForgeError),
}
