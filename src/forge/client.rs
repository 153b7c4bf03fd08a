//! [`Forge`]: the one forge client the workflow holds, in the workflow's own words. Each forge's
//! habits (GitHub's shared issue/PR numbers, its ETags, its status codes; GitLab's separate iid
//! spaces and its REST v4) stay behind this type: the workflow never sees an HTTP status, an
//! ETag or a payload type.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::github::GithubClient;
use super::gitlab::GitlabClient;
use super::{
    Actor, ChangedFiles, FileContent, ForgeError, HeadMove, Landed, ListedComment, MergeError,
    Note, OpenChange, PullRequestState, Reaction, Review, ReviewState, Served, StatusState,
    ThreadLabels,
};
use crate::store::ForgeKind;

/// Where a note goes: the forge keeps issues and change requests (pull / merge requests) apart.
/// GitHub numbers both from one sequence; GitLab numbers each from its own, so issue #3 and
/// merge request !3 are different threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Thread {
    Issue(u64),
    Change(u64),
}

impl Thread {
    /// The thread of a comment event: `on_change` when it was made on a pull / merge request.
    pub fn of(number: u64, on_change: bool) -> Self {
        if on_change {
            Self::Change(number)
        } else {
            Self::Issue(number)
        }
    }

    pub fn number(self) -> u64 {
        match self {
            Self::Issue(n) | Self::Change(n) => n,
        }
    }

    /// How the store names it: `issue:<n>` or `change:<n>` (GitLab numbers issues and merge
    /// requests apart, so the number alone is ambiguous).
    pub fn key(self) -> String {
        match self {
            Self::Issue(n) => format!("issue:{n}"),
            Self::Change(n) => format!("change:{n}"),
        }
    }

    /// The thread a [`Self::key`] names.
    pub fn from_key(key: &str) -> Option<Self> {
        let (kind, number) = key.split_once(':')?;
        let number = number.parse().ok()?;
        match kind {
            "issue" => Some(Self::Issue(number)),
            "change" => Some(Self::Change(number)),
            _ => None,
        }
    }
}

/// The forge of one requests repository.
#[derive(Clone, Debug)]
pub enum Forge {
    GitHub(GithubClient),
    GitLab(GitlabClient),
}

/// Runs the same call on whichever client this is.
macro_rules! on_client {
    ($forge:expr, $client:ident => $call:expr) => {
        match $forge {
            Forge::GitHub($client) => $call,
            Forge::GitLab($client) => $call,
        }
    };
}

impl Forge {
    /// Which forge this is, as the store records it.
    pub fn kind(&self) -> ForgeKind {
        match self {
            Forge::GitHub(_) => ForgeKind::GitHub,
            Forge::GitLab(_) => ForgeKind::GitLab,
        }
    }

    /// How a note links change request `number`: `#12` on GitHub, `!12` on GitLab (where
    /// `#12` is an issue).
    pub fn change_ref(&self, number: u64) -> String {
        match self {
            Forge::GitHub(_) => format!("#{number}"),
            Forge::GitLab(_) => format!("!{number}"),
        }
    }

    /// Change request `number` named and linked for a sentence: `PR #12`, `MR !12`.
    pub fn change_label(&self, number: u64) -> String {
        match self {
            Forge::GitHub(_) => format!("PR #{number}"),
            Forge::GitLab(_) => format!("MR !{number}"),
        }
    }

    /// How a note links a thread (an issue is `#n` on both forges).
    pub fn thread_ref(&self, thread: Thread) -> String {
        match thread {
            Thread::Change(n) => self.change_ref(n),
            Thread::Issue(n) => format!("#{n}"),
        }
    }

    /// `owner/name` (GitHub) or `group/…/project` (GitLab).
    pub fn repository(&self) -> String {
        on_client!(self, c => c.repository())
    }

    /// The account the bot's token acts as.
    pub async fn me(&self) -> Result<Actor, ForgeError> {
        on_client!(self, c => c.me().await)
    }

    pub async fn default_branch(&self) -> Result<String, ForgeError> {
        on_client!(self, c => c.default_branch().await)
    }

    pub async fn branch_head(&self, branch: &str) -> Result<String, ForgeError> {
        on_client!(self, c => c.branch_head(branch).await)
    }

    /// A file at a ref (a branch or a commit), `None` when it is not there. The returned
    /// version (`blob_sha`) is opaque: hand it back to [`Forge::put_file`] or
    /// [`Forge::delete_file`].
    pub async fn read_file(
        &self,
        git_ref: &str,
        path: &str,
    ) -> Result<Option<FileContent>, ForgeError> {
        on_client!(self, c => c.read_file(git_ref, path).await)
    }

    /// What the forge serves at `path` at a ref, `None` when nothing is there. Unlike
    /// [`Forge::read_file`], it says what it served: GitHub's contents API answers for a
    /// symbolic link with the file it points to, or with no text at all. GitLab serves a
    /// link's own text; its listings say the mode.
    pub async fn read_served(
        &self,
        git_ref: &str,
        path: &str,
    ) -> Result<Option<Served>, ForgeError> {
        match self {
            Forge::GitHub(c) => c.read_served(git_ref, path).await,
            Forge::GitLab(c) => Ok(c.read_file(git_ref, path).await?.map(Served::File)),
        }
    }

    /// The names of the files in a directory at a ref (empty when it is missing).
    pub async fn list_dir(&self, git_ref: &str, path: &str) -> Result<Vec<String>, ForgeError> {
        on_client!(self, c => c.list_dir(git_ref, path).await)
    }

    /// Whether reads of the default branch need its name: GitHub's contents API reads the
    /// default branch when given no ref, GitLab's repository API needs the branch.
    pub fn reads_default_branch_by_name(&self) -> bool {
        matches!(self, Forge::GitLab(_))
    }

    /// A file on the default branch: on GitHub whatever the branch is called now, on GitLab
    /// at `branch` (which the caller read just before).
    pub async fn read_default_file(
        &self,
        branch: &str,
        path: &str,
    ) -> Result<Option<FileContent>, ForgeError> {
        match self {
            Forge::GitHub(c) => c.read_default_file(path).await,
            Forge::GitLab(c) => c.read_file(branch, path).await,
        }
    }

    /// The files in a directory of the default branch, as [`Forge::read_default_file`] reads,
    /// by path with their blob ids.
    pub async fn list_default_dir(
        &self,
        branch: &str,
        path: &str,
    ) -> Result<BTreeMap<String, String>, ForgeError> {
        match self {
            Forge::GitHub(c) => c.list_default_dir(branch, path).await,
            Forge::GitLab(c) => Ok(c.list_dir_blobs(branch, path).await?.into_iter().collect()),
        }
    }

    /// Every file under any of `roots` on the default branch (at `branch`, as the caller read
    /// it), at any depth, by path with its blob id, and whether the listing is whole (GitHub's
    /// one recursive tree can be cut short; a file it leaves out is read on its own).
    pub async fn list_default_tree(
        &self,
        branch: &str,
        roots: &[String],
    ) -> Result<(BTreeMap<String, String>, bool), ForgeError> {
        match self {
            Forge::GitHub(c) => c.list_default_tree(branch, roots).await,
            Forge::GitLab(c) => {
                let mut files = BTreeMap::new();
                for root in roots {
                    files.extend(c.list_files_under(branch, root).await?);
                }
                Ok((files, true))
            }
        }
    }

    pub async fn create_branch(&self, branch: &str, sha: &str) -> Result<(), ForgeError> {
        on_client!(self, c => c.create_branch(branch, sha).await)
    }

    /// Deletes a branch; one that is gone already is fine.
    pub async fn delete_branch(&self, branch: &str) -> Result<(), ForgeError> {
        on_client!(self, c => c.delete_branch(branch).await)
    }

    /// Puts a branch back to commit `sha`'s content, whatever is on it now, and returns the
    /// branch's new head: `sha` itself on GitHub; on GitLab, which cannot move a branch back
    /// without closing its merge request, a new commit on top of `sha` with the same tree.
    /// `paths` are files the branch's commits touched (one that exists at `sha` carries the
    /// no-op commit).
    pub async fn restore_branch(
        &self,
        branch: &str,
        sha: &str,
        paths: &[String],
    ) -> Result<String, ForgeError> {
        match self {
            Forge::GitHub(c) => c.force_branch(branch, sha).await.map(|()| sha.to_owned()),
            Forge::GitLab(c) => {
                let mut candidates = paths.to_vec();
                candidates.extend(c.list_dir(sha, "").await?);
                for path in candidates {
                    if let Some(file) = c.read_file(sha, &path).await? {
                        let message = format!("breakglass: put {branch} back to {sha}");
                        return c
                            .restore_branch(branch, sha, &file.path, &file.text, &message)
                            .await;
                    }
                }
                Err(ForgeError::Decode {
                    call: "restore branch".into(),
                    detail: format!("commit {sha} holds no file to carry the restoring commit"),
                })
            }
        }
    }

    /// Writes a file as one commit on `branch`, the bot's own, whose head the bot left at
    /// `parent`; `version` is the file's current version when it exists. Returns the new
    /// commit. On GitLab the commit is made on `parent` and the branch overwritten with it, so
    /// a commit someone slipped onto the branch in between is dropped, never built on; GitHub's
    /// contents API names no parent, so the commit it made is checked to sit on `parent`, and
    /// one built on a slipped commit is a transient error (the retry puts the branch back).
    pub async fn put_file(
        &self,
        branch: &str,
        parent: &str,
        path: &str,
        text: &str,
        message: &str,
        version: Option<&str>,
    ) -> Result<String, ForgeError> {
        match self {
            Forge::GitHub(c) => {
                c.put_file(branch, parent, path, text, message, version)
                    .await
            }
            Forge::GitLab(c) => {
                c.put_file(branch, parent, path, text, message, version)
                    .await
            }
        }
    }

    /// Deletes a file as one commit on `branch`, made on `parent` (see [`Self::put_file`]).
    /// Returns the new commit.
    pub async fn delete_file(
        &self,
        branch: &str,
        parent: &str,
        path: &str,
        message: &str,
        version: &str,
    ) -> Result<String, ForgeError> {
        match self {
            Forge::GitHub(c) => c.delete_file(branch, parent, path, message, version).await,
            Forge::GitLab(c) => c.delete_file(branch, parent, path, message).await,
        }
    }

    /// Opens a change request from `head` into `base`, labelled `labels`; the change as the
    /// forge answered. GitLab takes the labels with the merge request; GitHub needs one more
    /// call, made only when there are labels (a failed one leaves the change unlabelled).
    pub async fn open_change(
        &self,
        head: &str,
        base: &str,
        title: &str,
        body: &str,
        labels: &[String],
    ) -> Result<PullRequestState, ForgeError> {
        on_client!(self, c => c.open_pull_request(head, base, title, body, labels).await)
    }

    /// The labels of an issue or a change request, and whether it is open, in one read.
    pub async fn labels(&self, thread: Thread) -> Result<ThreadLabels, ForgeError> {
        match (self, thread) {
            (Forge::GitHub(c), thread) => c.issue_labels(thread.number()).await,
            (Forge::GitLab(c), Thread::Issue(iid)) => c.issue_labels(iid).await,
            (Forge::GitLab(c), Thread::Change(iid)) => {
                let change = c.pull_request(iid).await?;
                Ok(ThreadLabels {
                    open: change.open,
                    labels: change.info.labels,
                })
            }
        }
    }

    /// A change request as it is now.
    pub async fn change(&self, number: u64) -> Result<PullRequestState, ForgeError> {
        on_client!(self, c => c.pull_request(number).await)
    }

    /// [`Self::change`], `None` when it does not exist (any more: a GitLab owner may delete a
    /// merge request).
    pub async fn change_if_any(&self, number: u64) -> Result<Option<PullRequestState>, ForgeError> {
        match self.change(number).await {
            Ok(state) => Ok(Some(state)),
            Err(err) if err.status() == Some(404) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Every open change request of the repository, newest first; `window` tells which were
    /// updated lately ([`OpenChange::recently_updated`]).
    pub async fn open_changes(
        &self,
        window: chrono::TimeDelta,
    ) -> Result<Vec<OpenChange>, ForgeError> {
        on_client!(self, c => c.open_pull_requests(window).await)
    }

    /// The newest move of change request `number`'s head branch the forge shows, `None` when
    /// it shows none since the opening. GitLab: its newest version (every push makes one,
    /// with its head). GitHub: its timeline's newest force push, or head branch deleted or
    /// restored, with no head: a plain push leaves no dated trace there, but going from a
    /// head to another and back to it takes at least one of those.
    ///
    /// A forge without that record (`404`: an older server, a compatible one) says no time:
    /// the head is then taken to have moved at an unknown time, never not to have moved.
    pub async fn latest_head_move(&self, number: u64) -> Result<Option<HeadMove>, ForgeError> {
        match on_client!(self, c => c.latest_head_move(number).await) {
            Err(err) if err.status() == Some(404) => {
                tracing::warn!(change = number, error = %err, "the forge keeps no record of the head's moves: taken as moved");
                Ok(Some(HeadMove {
                    at: None,
                    sha: None,
                }))
            }
            other => other,
        }
    }

    /// When change request `number`'s head `head` was pushed, by the forge's clock, where its
    /// record of the head's moves says (GitLab's newest MR version, when it is of `head`).
    /// `None` otherwise, and on GitHub without a call: its timeline dates no plain push.
    pub async fn head_pushed_at(
        &self,
        number: u64,
        head: &str,
    ) -> Result<Option<DateTime<Utc>>, ForgeError> {
        let Forge::GitLab(c) = self else {
            return Ok(None);
        };
        let moved = c.latest_head_move(number).await?;
        Ok(moved
            .filter(|m| m.sha.as_deref() == Some(head))
            .and_then(|m| m.at))
    }

    /// The comments made on the repository's issues and change requests within `window` before
    /// the forge's own time (its `Date`), oldest first; only those whose body `keep` takes are
    /// looked into further (GitLab: whether their issue is confidential). Empty when the
    /// forge does not say its time: the bot's clock is never compared with a forge's.
    pub async fn recent_comments(
        &self,
        window: chrono::TimeDelta,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<ListedComment>, ForgeError> {
        let mut listed = match self {
            Forge::GitHub(c) => c.recent_comments(window).await?,
            Forge::GitLab(c) => c.recent_notes(window, &keep).await?,
        };
        listed.retain(|c| keep(&c.body));
        listed.sort_by_key(|c| (c.created_at, c.id));
        Ok(listed)
    }

    /// The files that merging commit `head_sha` of change request `number` into branch `base`
    /// would change (see [`ChangedFiles`]).
    ///
    /// GitHub and GitLab both compare commits. A `404` means either that this head cannot be
    /// compared with the base (no common history: nothing the bot can check) or that the
    /// server has no comparison API at all (a compatible test server); comparing the base with
    /// itself tells which. Only the latter gets the request's own files listing, with a
    /// warning: that listing shows the request's head when it is served, so it is taken only
    /// while the request, read right after it, still shows `head_sha`.
    pub async fn changed_files_at(
        &self,
        number: u64,
        base: &str,
        head_sha: &str,
    ) -> Result<ChangedFiles, ForgeError> {
        match on_client!(self, c => c.compare_files(base, head_sha).await) {
            Err(err) if err.status() == Some(404) => {
                match on_client!(self, c => c.compare_files(base, base).await) {
                    Ok(_) => {
                        return Ok(ChangedFiles {
                            files: Vec::new(),
                            complete: false,
                            merge_commits: false,
                            base_sha: None,
                        });
                    }
                    // Only a server that knows no comparison at all gets the listing; any
                    // other failure of the probe is the error it is.
                    Err(probe) if probe.status() == Some(404) => {}
                    Err(probe) => return Err(probe),
                }
                tracing::warn!(%err, "no comparison of commits: listing the change request's files instead, which is not pinned to its head");
            }
            listed => return listed,
        }
        let files = on_client!(self, c => c.pull_request_files(number).await)?;
        let now = self.change(number).await?;
        if now.info.head_sha != head_sha {
            return Err(ForgeError::Transient {
                call: format!("listing the files of change request {number}"),
                detail: format!("its head moved from {head_sha} while they were listed"),
            });
        }
        Ok(ChangedFiles {
            files,
            complete: true,
            // Not known without a comparison: the merge commit is the forge's to check.
            merge_commits: false,
            base_sha: None,
        })
    }

    /// Sets a change request's title and body (description).
    pub async fn retitle_change(
        &self,
        number: u64,
        title: &str,
        body: &str,
    ) -> Result<(), ForgeError> {
        on_client!(self, c => c.retitle_pull_request(number, title, body).await)
    }

    pub async fn close_change(&self, number: u64) -> Result<(), ForgeError> {
        on_client!(self, c => c.close_pull_request(number).await)
    }

    /// Merges a change request with a merge commit, only while its head is `head_sha`.
    /// Returns the merge commit. With `drop_branch`, a forge that can delete the source branch
    /// as it merges does so (see [`Forge::drops_merged_branches`]).
    pub async fn merge(
        &self,
        number: u64,
        head_sha: &str,
        title: &str,
        message: &str,
        drop_branch: bool,
    ) -> Result<Landed, MergeError> {
        match self {
            Forge::GitHub(c) => c.merge(number, head_sha, title, message).await,
            // GitLab's merge commit message is one text: the title is its first line.
            Forge::GitLab(c) => {
                c.merge(
                    number,
                    head_sha,
                    &format!("{title}\n\n{message}"),
                    drop_branch,
                )
                .await
            }
        }
    }

    /// Whether a merge asked to drop its source branch deletes it: always on GitLab
    /// (`should_remove_source_branch`); on GitHub when the repository deletes head branches on
    /// merge, as its last read said (the bot reads it with the default branch). Then the bot
    /// need not delete its merged branches itself.
    pub fn drops_merged_branches(&self) -> bool {
        match self {
            Forge::GitHub(c) => c.deletes_merged_branches(),
            Forge::GitLab(_) => true,
        }
    }

    /// Posts a note; its id.
    pub async fn note(&self, thread: Thread, body: &str) -> Result<u64, ForgeError> {
        let marked = super::note_mark::mark(body);
        match self {
            Forge::GitHub(c) => c.comment(thread.number(), &marked).await,
            Forge::GitLab(c) => c.comment(thread, &marked).await,
        }
    }

    /// The notes on `thread`, oldest first.
    pub async fn notes(&self, thread: Thread) -> Result<Vec<Note>, ForgeError> {
        match self {
            Forge::GitHub(c) => c.comments(thread.number()).await,
            Forge::GitLab(c) => c.comments(thread).await,
        }
    }

    /// The forge's comparison `base...head` (from their merge base), pinned to the two commits.
    pub async fn compare_commits(
        &self,
        base: &str,
        head: &str,
    ) -> Result<ChangedFiles, ForgeError> {
        match self {
            Forge::GitHub(c) => c.compare_files(base, head).await,
            Forge::GitLab(c) => c.compare_files(base, head).await,
        }
    }

    /// The text of note `id` on `thread` as it reads now; `None` once deleted (a deleted or
    /// edited-away approval approves nothing).
    pub async fn note_body(&self, thread: Thread, id: u64) -> Result<Option<String>, ForgeError> {
        match self {
            // GitHub finds a comment by its id alone.
            Forge::GitHub(c) => c.comment_body(id).await,
            Forge::GitLab(c) => c.comment_body(thread, id).await,
        }
    }

    /// Sets the decision status `context` on commit `sha`.
    pub async fn set_status(
        &self,
        sha: &str,
        context: &str,
        state: StatusState,
        description: &str,
    ) -> Result<(), ForgeError> {
        match self {
            Forge::GitHub(c) => c.set_status(sha, context, state, description).await,
            Forge::GitLab(c) => c.set_status(sha, state, context, description).await,
        }
    }

    pub async fn add_label(&self, number: u64, label: &str) -> Result<(), ForgeError> {
        on_client!(self, c => c.add_label(number, label).await)
    }

    pub async fn remove_label(&self, number: u64, label: &str) -> Result<(), ForgeError> {
        on_client!(self, c => c.remove_label(number, label).await)
    }

    /// Every emoji on a change request, as approval signals.
    pub async fn reactions(&self, number: u64) -> Result<Vec<Reaction>, ForgeError> {
        match self {
            Forge::GitHub(c) => c.reactions(number).await,
            Forge::GitLab(c) => c.award_emoji(Thread::Change(number)).await,
        }
    }

    /// The emoji on a change request if they changed since the last call for it (`None`
    /// otherwise). For polling: on GitHub an unchanged list costs no rate limit.
    pub async fn reactions_if_changed(
        &self,
        number: u64,
    ) -> Result<Option<Vec<Reaction>>, ForgeError> {
        match self {
            Forge::GitHub(c) => c.reactions_if_changed(number).await,
            // GitLab sends each award and revocation as an event; a poll is only a safety net.
            Forge::GitLab(c) => c.award_emoji(Thread::Change(number)).await.map(Some),
        }
    }

    /// The emoji on the bot's latest note on change `number` if they changed since the last
    /// call for it; `None` otherwise, and on GitLab, which sends them as events.
    pub async fn latest_note_reactions_if_changed(
        &self,
        number: u64,
    ) -> Result<Option<Vec<Reaction>>, ForgeError> {
        match self {
            Forge::GitHub(c) => c.latest_comment_reactions_if_changed(number).await,
            Forge::GitLab(_) => Ok(None),
        }
    }

    /// Change `number`'s emoji are polled no more: what the polls kept for it goes.
    pub fn done_polling(&self, number: u64) {
        match self {
            Forge::GitHub(c) => c.done_polling(number),
            Forge::GitLab(_) => {}
        }
    }

    /// Makes the next [`Forge::reactions_if_changed`] of change `number` answer with every
    /// reaction, changed or not (those seen while they could not be judged).
    pub fn forget_reactions(&self, number: u64) {
        match self {
            Forge::GitHub(c) => c.forget_reactions(number),
            Forge::GitLab(_) => {} // read whole at every poll
        }
    }

    /// The reviews (approvals) submitted on a change request.
    pub async fn reviews(&self, number: u64) -> Result<Vec<Review>, ForgeError> {
        match self {
            Forge::GitHub(c) => c.reviews(number).await,
            // GitLab's MR approvals: one per person, identified by the approver's id.
            Forge::GitLab(c) => Ok(c
                .approvals(number)
                .await?
                .into_iter()
                .map(|(author, at)| Review {
                    id: author.id,
                    author,
                    state: ReviewState::Approved,
                    commit_id: None,
                    submitted_at: at,
                })
                .collect()),
        }
    }

    /// Whether `login` belongs to `group`: `org/team` on GitHub, a group path with subgroups
    /// on GitLab.
    pub async fn is_member(&self, group: &str, login: &str) -> Result<bool, ForgeError> {
        match self {
            Forge::GitHub(c) => match group.split_once('/') {
                Some((org, team)) if !team.contains('/') => {
                    c.is_team_member(org, team, login).await
                }
                _ => Ok(false), // GitHub teams are exactly `org/team`
            },
            Forge::GitLab(c) => match c.user(login).await? {
                Some(user) => c.is_group_member(group, user.id).await,
                None => Ok(false),
            },
        }
    }

    /// Whether `actor` is a bot account. GitHub says so in every event (`type: Bot`, a
    /// `[bot]` login); GitLab's events do not, so it is asked by the user's id.
    pub async fn is_bot(&self, actor: &Actor) -> Result<bool, ForgeError> {
        if actor.is_bot {
            return Ok(true);
        }
        match self {
            Forge::GitHub(_) => Ok(false),
            Forge::GitLab(c) => c.is_bot(actor.id).await,
        }
    }

    /// A user by login (`None` when there is none).
    pub async fn user(&self, login: &str) -> Result<Option<Actor>, ForgeError> {
        on_client!(self, c => c.user(login).await)
    }
}
