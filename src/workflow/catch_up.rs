//! Catching up with what the bot may not have heard while it was down.
//!
//! A forge does not send a webhook again after a failed delivery, so a request PR opened, or
//! pushed to, while the service was down would wait for its next event, and a `/breakglass`
//! comment would never be answered. At start (and after intake refused deliveries) the bot
//! lists the open change requests once and queues a [`ForgeEvent::MissedChange`] delivery for
//! each one whose head it has no record of (or that was marked ready or labelled otherwise
//! than its decision saw), then lists the comments of the last
//! [`COMMENTS_WITHIN`] and queues each one with a command it has not answered, as the comment
//! webhook it missed; a `revoke` or `deny` is looked for as far back as [`ENDINGS_WITHIN`].
//! The delivery worker handles them as it handles any webhook, with its locks, retries and
//! order.

use std::collections::BTreeSet;

use chrono::TimeDelta;
use sha2::{Digest as _, Sha256};

use super::Workflow;
use super::approval::standing_reviews;
use super::pull_request::{decides_again, merge_under_way, wait_for_merge};
use crate::command::parse_commands;
use crate::forge::{
    Actor, CommentAction, Delivery, ForgeEvent, ListedComment, OpenChange, PullRequestAction,
    Thread,
};
use crate::store::{DeliveryId, NewDelivery, Recorded, RequestState};

/// How far back (forge time) the catch-up looks for comments. A command older than this is
/// not acted on so late: whoever gave it has had no answer for an hour and moved on.
pub const COMMENTS_WITHIN: TimeDelta = TimeDelta::hours(1);

/// …except a comment whose every command ends something (`revoke`, `deny`), looked for this
/// far back: acting on it late is the safe way (access ends early, a request is closed), and
/// a revoke given while the bot was down must not leave the access until its expiry.
pub const ENDINGS_WITHIN: TimeDelta = TimeDelta::days(1);

impl Workflow {
    /// Queues a delivery for what the bot may have missed: a [`ForgeEvent::MissedChange`] for
    /// every open change request [`Self::may_have_missed`] names (one listing), then a comment
    /// event for every comment of the last [`COMMENTS_WITHIN`] (of the last [`ENDINGS_WITHIN`]
    /// for a revoke or deny) that holds a command the bot has not answered (one listing, more
    /// only when there were over 100 comments). Returns how many it queued. Keyed by what was seen, so that a second look (or a second
    /// replica) queues nothing twice.
    pub async fn catch_up(&self) -> anyhow::Result<usize> {
        // Nothing is listed that could not be stored.
        self.store.ping().await?;
        let queued = self.queue_missed_changes().await? + self.queue_missed_comments().await?;
        if queued > 0 {
            tracing::info!(forge = %self.forge_kind(), queued, "what came while the bot was down is handled now");
        }
        Ok(queued)
    }

    async fn queue_missed_changes(&self) -> anyhow::Result<usize> {
        let mut queued = 0;
        for change in self.forge.open_changes(COMMENTS_WITHIN).await? {
            if let Some(key) = self.may_have_missed(&change).await? {
                let event = ForgeEvent::MissedChange {
                    number: change.number,
                };
                queued += usize::from(self.queue_missed(key, "missed_change", event).await?);
            }
            queued += self.queue_missed_reviews(&change).await?;
        }
        Ok(queued)
    }

    /// Queues a [`ForgeEvent::MissedReview`] for each standing approving review (GitLab:
    /// approval) of `change` that the bot has not counted (one of an older version is answered
    /// "approve again", as its webhook would have been), when `change` was updated within
    /// [`COMMENTS_WITHIN`] and its request (if recorded yet) waits for approvals: one read of
    /// its reviews (GitLab: its approvals, each timed when handled, as its webhook is).
    async fn queue_missed_reviews(&self, change: &OpenChange) -> anyhow::Result<usize> {
        if !change.recently_updated {
            return Ok(0);
        }
        let repo = &self.settings.repository;
        let record = self
            .store
            .find_request_by_pr(self.forge_kind(), repo, change.number)
            .await?;
        let counted = match &record {
            Some(r) if r.state != RequestState::Pending => return Ok(0),
            Some(r) if r.head_sha == change.head_sha => {
                let subject = super::approval::approval_subject(r)?;
                self.store.approvals_for(&r.id, &subject).await?
            }
            Some(r) => self.store.approvals_for(&r.id, &change.head_sha).await?,
            // The bot's own changes (revert, removal) take no approvals; a request it
            // re-opened (bot-authored) does.
            None if change.author_id == self.bot.id => return Ok(0),
            None => Vec::new(),
        };
        let reviews = standing_reviews(self.forge.reviews(change.number).await?);
        let mut queued = 0;
        for review in reviews {
            let key = format!("review:{}", review.id);
            if review.author.is_bot || counted.iter().any(|a| a.signal == key) {
                continue;
            }
            let key = format!(
                "missed-review:{}:{}:{}",
                change.number, review.id, change.head_sha
            );
            let event = ForgeEvent::MissedReview {
                number: change.number,
                review_id: review.id,
                author: review.author,
                // A GitLab approval names no commit: its handler times it by GitLab's own
                // `approved_at`, as it does the approval's webhook.
                commit_id: review.commit_id,
                submitted_at: review.submitted_at,
            };
            queued += usize::from(self.queue_missed(key, "missed_review", event).await?);
        }
        Ok(queued)
    }

    async fn queue_missed_comments(&self) -> anyhow::Result<usize> {
        let has_command = |body: &str| !parse_commands(body).is_empty();
        let comments = self
            .forge
            .recent_comments(ENDINGS_WITHIN, has_command)
            .await?;
        let mut queued = 0;
        for comment in comments {
            // An edited comment is not taken: what it said first is not known, and an edit
            // never executes a command (nor adds an approval under an old timestamp).
            if comment.author.is_bot || comment.author.id == self.bot.id || comment.edited {
                continue;
            }
            if comment.age > COMMENTS_WITHIN && !only_endings(&comment.body) {
                continue;
            }
            if self
                .store
                .comment_answered(self.comment_key(comment.id))
                .await?
            {
                continue;
            }
            let key = format!("missed-comment:{}", comment.id);
            let event = missed_comment(comment);
            queued += usize::from(self.queue_missed(key, "missed_comment", event).await?);
        }
        Ok(queued)
    }

    /// Stores `event` as a delivery of this forge keyed `key`; `true` when it was new.
    async fn queue_missed(
        &self,
        key: String,
        name: &str,
        event: ForgeEvent,
    ) -> anyhow::Result<bool> {
        let id = DeliveryId::new(self.forge_kind(), &key).map_err(anyhow::Error::msg)?;
        let delivery = Delivery {
            id: key,
            repository: Some(self.settings.repository.clone()),
            event,
        };
        let new = NewDelivery {
            id,
            event: name.into(),
            payload: serde_json::to_string(&delivery)?,
            received_at: self.now(),
        };
        Ok(self.store.record_delivery(&new).await? == Recorded::New)
    }

    /// The key of a [`ForgeEvent::MissedChange`] for `change` when the bot may have missed
    /// news of it: either no request record at its head (not for the bot's own changes), or
    /// a request still being decided whose PR was marked ready (or as a draft) or labelled
    /// otherwise than its decision saw (a `sev1` label added during an incident, also on a
    /// request PR the bot opened for a `/breakglass` comment).
    async fn may_have_missed(&self, change: &OpenChange) -> anyhow::Result<Option<String>> {
        let repo = &self.settings.repository;
        let record = self
            .store
            .find_request_by_pr(self.forge_kind(), repo, change.number)
            .await?;
        let head = format!("missed:{}:{}", change.number, change.head_sha);
        let by_bot = change.author_id == self.bot.id;
        let Some(record) = record.filter(|r| r.head_sha == change.head_sha) else {
            // The bot's own branches (request, revert, removal): their jobs and guards watch
            // their heads.
            return Ok((!by_bot).then_some(head));
        };
        let Some(seen) = record.decision.as_ref() else {
            return Ok(None);
        };
        let labels = |list: &[String]| -> BTreeSet<String> {
            list.iter().map(|l| l.to_lowercase()).collect()
        };
        let changed = seen.draft != change.draft || labels(&seen.labels) != labels(&change.labels);
        if !changed || !decides_again(record.state, PullRequestAction::Labeled) {
            return Ok(None);
        }
        let now: Vec<String> = labels(&change.labels).into_iter().collect();
        let digest = Sha256::digest(format!("{}|{}", change.draft, now.join("\n")));
        Ok(Some(format!("{head}:{}", &hex::encode(digest)[..16])))
    }

    /// Before a command about the request on `thread` (`approve`, `deny`, `status`): a change
    /// request the bot has no record of is decided first, as the catch-up would
    /// ([`Self::handle_missed_change`]). Its webhooks may have been lost while the bot was up
    /// (a forge does not send a failed delivery again), and the first sign of it is someone
    /// asking: the command then finds the request instead of being told there is none. One
    /// read of the change; nothing when it is closed, the bot's own, or not a request.
    pub(super) async fn decide_if_never_heard(&self, thread: Thread) -> anyhow::Result<()> {
        let Thread::Change(number) = thread else {
            return Ok(());
        };
        if self.request_on(thread).await?.is_some() {
            return Ok(());
        }
        self.refusing_once(self.handle_missed_change(number)).await
    }

    /// A change request the catch-up found (see [`Self::may_have_missed`]): decided as it is
    /// now, like a PR just opened, pushed to, labelled or marked ready. A push's time is the
    /// forge's record of it where it keeps one (GitLab's MR versions), else not known (the
    /// PR's `updated_at` bounds it, so an approval given before it is asked for again). A
    /// refusal is said unless the bot's latest note on the PR already says it
    /// ([`Workflow::say_refusal`]).
    pub(super) async fn handle_missed_change(&self, number: u64) -> anyhow::Result<()> {
        let current = self.forge.change(number).await?;
        if !current.open {
            return Ok(());
        }
        let repo = &self.settings.repository;
        let existing = self
            .store
            .find_request_by_pr(self.forge_kind(), repo, number)
            .await?;
        let by_bot = current.info.author.id == self.bot.id;
        if by_bot
            && existing
                .as_ref()
                .is_none_or(|r| r.head_sha != current.info.head_sha)
        {
            // The bot's own branch at a head it did not decide: its jobs and guards see to it.
            return Ok(());
        }
        if let Some(record) = &existing {
            // On its head: labelled or marked ready meanwhile, decided again as that webhook
            // would have it; on another: pushed.
            let action = if record.head_sha == current.info.head_sha {
                PullRequestAction::Labeled
            } else {
                PullRequestAction::Synchronized
            };
            if !decides_again(record.state, action) {
                return Ok(()); // past deciding
            }
            if merge_under_way(record) {
                return Err(wait_for_merge(record, action));
            }
        }
        let head = current.info.head_sha.clone();
        let pushed = self.forge.head_pushed_at(number, &head).await?;
        let pushed = pushed.map(|at| (head, at));
        self.evaluate_current(current, existing, pushed, None, true)
            .await
    }
}

impl Workflow {
    /// An approving review the catch-up found (see [`Self::queue_missed_reviews`]): handled
    /// as its webhook would have been, against the PR as it is now.
    pub(super) async fn handle_missed_review(
        &self,
        number: u64,
        review_id: u64,
        author: &Actor,
        commit_id: Option<&str>,
        submitted_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> anyhow::Result<()> {
        if self.request_of_pr(number).await?.is_none() {
            // Opened while the bot was down too, and not decided yet (its own delivery failed
            // once, or another replica is at it): decided first, so the review is not lost.
            self.handle_missed_change(number).await?;
        }
        let current = self.forge.change(number).await?;
        if !current.open {
            return Ok(());
        }
        self.handle_review_approval(&current.info, review_id, author, commit_id, submitted_at)
            .await
    }
}

/// Whether every command of `body` ends something: a `revoke` or a `deny`.
fn only_endings(body: &str) -> bool {
    parse_commands(body).iter().all(|command| {
        matches!(
            command,
            Ok(crate::command::Command::Revoke | crate::command::Command::Deny { .. })
        )
    })
}

/// The comment webhook a listed comment would have come with.
fn missed_comment(comment: ListedComment) -> ForgeEvent {
    ForgeEvent::Comment {
        action: CommentAction::Created,
        number: comment.number,
        on_pull_request: comment.on_change,
        comment_id: comment.id,
        body: comment.body,
        author: comment.author,
        created_at: comment.created_at,
        internal: comment.internal,
    }
}
