//! The lifecycle of a request: from webhook events and timers to decisions, approvals, merges,
//! grants and revocations. Each handler has one job (`handle_<event>`, `command_<verb>`,
//! `job_<kind>`); every step is idempotent and driven by durable state, so a crash anywhere
//! is repaired by running the step again.
//!
//! The workflow sees forge events through [`crate::forge::ForgeEvent`] only, and talks to the
//! forge through [`crate::forge::Forge`], in its own words.

mod approval;
mod cache;
mod catch_up;
mod change;
mod commands;
mod evaluate;
pub use evaluate::DefaultBranchMoved;
mod events;
mod expiry;
mod extend;
mod forges;
pub mod gauges;
pub use forges::Workflows;
mod guard;
mod lifecycle;
mod once;
mod ordering;
mod pr_lock;
mod pull_request;
#[cfg(test)]
pub(crate) use pull_request::sample_record;
mod recheck;
mod reconcile;
mod revocation;
pub use revocation::RevokeOutcome;
mod tampered;
mod trailers;
mod unheard;
mod verdict;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::command::parse_commands;
use crate::forge::{
    Actor, CommentAction, Delivery, Forge, ForgeEvent, ReactionAction, ReviewState, Thread,
};
use crate::grant::Providers;
use crate::metrics::Metrics;
use crate::store::{ForgeKind, Store};
use crate::store::{Job, JobKind, Lane};

/// The last decision on `record`. A request the workflow acts on past its first evaluation
/// always has one, so a missing decision is an error, never a default.
fn stored_decision(
    record: &crate::store::RequestRecord,
) -> anyhow::Result<&crate::store::StoredDecision> {
    record.decision.as_ref().context("stored decision")
}

/// The commit status (check) the bot sets on request PRs.
pub const STATUS_CONTEXT: &str = "breakglass/policy";
/// The label on fast-path grants until an approver reviews them.
pub const NEEDS_REVIEW_LABEL: &str = "breakglass/needs-review";
/// The label on fast-path grants whose review is overdue.
pub const REVIEW_OVERDUE_LABEL: &str = "breakglass/review-overdue";

/// Wakes the job workers, one per lane: a job scheduled to run now is picked up at once by
/// the worker of its lane (a wake-up given while it is busy is kept for its next wait).
#[derive(Debug, Default)]
pub struct JobWakes {
    revocation: Notify,
    forge: Notify,
}

impl JobWakes {
    /// Wakes the worker of `lane`.
    pub fn wake(&self, lane: Lane) {
        self.of(lane).notify_one();
    }

    /// What the worker of `lane` waits on.
    pub fn of(&self, lane: Lane) -> &Notify {
        match lane {
            Lane::Revocation => &self.revocation,
            Lane::Forge => &self.forge,
        }
    }
}

/// Knobs of the lifecycle.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `owner/name` of the requests repo.
    pub repository: String,
    /// Directory of the policy files on the default branch.
    pub policies_path: String,
    /// Remind this long before expiry.
    pub reminder_before: Duration,
    /// How often polled PRs' reactions are polled (see `approval::Awaiting`).
    pub poll_interval: Duration,
    /// Reaction reads a minute that every polled PR's polls may make together (see
    /// `approval::poll_spacing`).
    pub poll_budget: std::num::NonZeroU32,
    /// A pending request nobody approved within this time is closed.
    pub pending_timeout: Duration,
    /// Open requests one person may have at once.
    pub max_open_requests: u32,
}

/// Everything the lifecycle needs. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Workflow {
    pub store: Store,
    pub forge: Forge,
    /// The account the bot acts as: its comments and pushes are recognised by this id (a token
    /// account is a `User`, not a `Bot`).
    pub bot: Actor,
    pub clock: Arc<dyn Clock>,
    pub providers: Providers,
    pub metrics: Arc<Metrics>,
    pub settings: Arc<Settings>,
    /// Wakes the job workers when a job is scheduled to run now.
    pub wake_jobs: Arc<JobWakes>,
    /// Serializes the work on one PR within this process (a webhook and a timer for the same
    /// request would otherwise race); across replicas, `pr_lock`'s rows on PostgreSQL.
    stripes: Arc<[Arc<tokio::sync::Mutex<()>>; STRIPES]>,
    /// Policies and memberships kept in memory (see [`cache`]).
    caches: Arc<cache::Caches>,
    /// Verdict comments being posted, which their merges wait for (see [`ordering`]).
    verdicts: Arc<ordering::Verdicts>,
}

/// Many, so that unrelated PRs rarely share one: a due revoke whose stripe is taken waits for
/// that work (a revert in the forge lane holds its stripe for seconds); with 64 stripes that
/// was 1 revoke in 64 while the forge lane worked.
const STRIPES: usize = 1024;

/// How long a due revoke waits for other work on its PR before it runs without the PR's lock.
const REVOKE_LOCK_WAIT: Duration = Duration::from_secs(1);

/// Forgets what a merge step planned (who approved it or which fast path, the grant time,
/// expiry and review deadline): for a request that goes back to pending, closes or moves.
fn clear_grant_plan(record: &mut crate::store::RequestRecord) {
    record.approved_by = None;
    record.fast_path_rule = None;
    record.granted_at = None;
    record.expires_at = None;
    record.review_due_at = None;
}

impl Workflow {
    pub fn new(
        store: Store,
        forge: Forge,
        bot: Actor,
        clock: Arc<dyn Clock>,
        providers: Providers,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        Self {
            store,
            forge,
            bot,
            clock,
            providers,
            metrics,
            settings: Arc::new(settings),
            wake_jobs: Arc::new(JobWakes::default()),
            stripes: Arc::new(std::array::from_fn(|_| Arc::default())),
            caches: Arc::default(),
            verdicts: Arc::default(),
        }
    }

    /// This workflow acting as `bot`: the same store, locks, caches and wake-ups (a service
    /// that started before the forge said who the bot is).
    pub fn with_bot(&self, bot: Actor) -> Self {
        Self {
            bot,
            ..self.clone()
        }
    }

    /// Holds the lock of PR `number`: this process's (striped: unrelated PRs rarely share
    /// one), then on PostgreSQL the replicas' (`pr_lock`); an error if the database cannot
    /// be asked for the latter.
    async fn lock_pr(&self, number: u64) -> anyhow::Result<pr_lock::PrGuard> {
        let local = self.stripes[(number % STRIPES as u64) as usize]
            .clone()
            .lock_owned()
            .await;
        let key = crate::store::PrKey {
            forge: self.forge_kind(),
            repository: self.settings.repository.clone(),
            number,
        };
        let shared = pr_lock::across_replicas(&self.store, &self.clock, key)
            .await
            .with_context(|| format!("taking the lock of PR {number} across replicas"))?;
        Ok(pr_lock::PrGuard::new(local, shared))
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The requests of this workflow's forge and repository (one store may serve several), in
    /// `state` or all.
    async fn own_requests(
        &self,
        state: Option<crate::store::RequestState>,
    ) -> anyhow::Result<Vec<crate::store::RequestRecord>> {
        let mut list = self.store.list_requests(state).await?;
        list.retain(|r| self.owns(r));
        Ok(list)
    }

    /// Whether `record` belongs to this workflow's forge and repository.
    pub fn owns(&self, record: &crate::store::RequestRecord) -> bool {
        record.forge == self.forge_kind()
            && record
                .repository
                .eq_ignore_ascii_case(&self.settings.repository)
    }

    fn forge_kind(&self) -> ForgeKind {
        self.forge.kind()
    }

    /// Schedules a job; one due now wakes the job worker.
    async fn schedule(
        &self,
        kind: JobKind,
        request: &crate::names::RequestId,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        self.store
            .schedule_job(kind, request, at, self.now())
            .await
            .with_context(|| format!("scheduling {kind} for {request}"))?;
        if at <= self.now() {
            self.wake_jobs.wake(kind.lane());
        }
        Ok(())
    }

    /// Acts on one stored webhook delivery.
    pub async fn handle_delivery(&self, delivery: &Delivery) -> anyhow::Result<()> {
        events::DELIVERY
            .scope(delivery.id.clone(), self.dispatch(delivery))
            .await
    }

    /// Whether handling `delivery` does nothing, whatever the bot's state: an event `dispatch`
    /// drops by its content alone (an ordinary comment, an edit, a review that neither approves
    /// nor is dismissed, an emoji on an issue, a ping). Handling it twice after a crash changes
    /// nothing, so its done mark may wait for its batch's instead of taking a commit of its own.
    /// Kept beside `dispatch`, whose cases it must follow.
    pub fn is_inert(delivery: &Delivery) -> bool {
        match &delivery.event {
            ForgeEvent::Comment {
                action: CommentAction::Created,
                body,
                ..
            } => parse_commands(body).is_empty(),
            ForgeEvent::Comment {
                action: CommentAction::Edited | CommentAction::Deleted,
                ..
            } => false,
            ForgeEvent::Review {
                state,
                holds_command,
                ..
            } => *state == ReviewState::Commented && !holds_command,
            ForgeEvent::Reaction {
                on_pull_request, ..
            } => !on_pull_request,
            ForgeEvent::Ping | ForgeEvent::Ignored { .. } => true,
            ForgeEvent::PullRequest { .. }
            | ForgeEvent::IssueDescribedCommand { .. }
            | ForgeEvent::Push { .. }
            | ForgeEvent::NoteReaction { .. }
            | ForgeEvent::MissedChange { .. }
            | ForgeEvent::MissedReview { .. } => false,
        }
    }

    async fn dispatch(&self, delivery: &Delivery) -> anyhow::Result<()> {
        if delivery
            .repository
            .as_deref()
            .is_some_and(|r| !r.eq_ignore_ascii_case(&self.settings.repository))
        {
            return Ok(());
        }
        let number = match &delivery.event {
            ForgeEvent::PullRequest { pull_request, .. }
            | ForgeEvent::Review { pull_request, .. } => Some(pull_request.number),
            ForgeEvent::Comment { number, .. }
            | ForgeEvent::Reaction { number, .. }
            | ForgeEvent::NoteReaction { number, .. }
            | ForgeEvent::MissedChange { number }
            | ForgeEvent::MissedReview { number, .. } => Some(*number),
            _ => None,
        };
        let guard = match number {
            Some(number) => Some(self.lock_pr(number).await?),
            None => None,
        };
        pr_lock::while_held(guard.as_ref(), self.dispatch_event(delivery)).await
    }

    /// Acts on `delivery`'s event, under its PR's lock if it has one.
    async fn dispatch_event(&self, delivery: &Delivery) -> anyhow::Result<()> {
        match &delivery.event {
            ForgeEvent::PullRequest {
                action,
                pull_request,
                sender,
                holds_command,
            } => {
                self.handle_pull_request(*action, pull_request, sender, &delivery.id)
                    .await?;
                if *holds_command {
                    let thread = Thread::Change(pull_request.number);
                    self.answer_described_command(thread, sender, false).await?;
                }
                Ok(())
            }
            ForgeEvent::IssueDescribedCommand {
                number,
                author,
                confidential,
            } => {
                self.answer_described_command(Thread::Issue(*number), author, *confidential)
                    .await
            }
            ForgeEvent::Comment { .. } => self.dispatch_comment(delivery).await,
            ForgeEvent::Review { .. } => self.dispatch_review(&delivery.event).await,
            ForgeEvent::Reaction { .. } => self.dispatch_reaction(&delivery.event).await,
            ForgeEvent::NoteReaction {
                number,
                note_author_id,
                content,
                user,
            } => {
                self.emoji_on_a_note(*number, *note_author_id, content, user)
                    .await
            }
            ForgeEvent::Push {
                git_ref,
                before,
                after,
                commits,
                sender,
                default_branch,
            } => {
                let shas = (before.as_str(), after.as_str());
                self.handle_push(git_ref, shas, commits, sender, default_branch.as_deref())
                    .await
            }
            ForgeEvent::MissedChange { number } => self.handle_missed_change(*number).await,
            ForgeEvent::MissedReview {
                number,
                review_id,
                author,
                commit_id,
                submitted_at,
            } => {
                self.handle_missed_review(
                    *number,
                    *review_id,
                    author,
                    commit_id.as_deref(),
                    *submitted_at,
                )
                .await
            }
            ForgeEvent::Ping | ForgeEvent::Ignored { .. } => Ok(()),
        }
    }

    /// A comment created, deleted or edited.
    async fn dispatch_comment(&self, delivery: &Delivery) -> anyhow::Result<()> {
        match &delivery.event {
            ForgeEvent::Comment {
                action: CommentAction::Created,
                number,
                on_pull_request,
                comment_id,
                body,
                author,
                created_at,
                internal,
            } => {
                let thread = Thread::of(*number, *on_pull_request);
                if *internal {
                    return self
                        .refuse_internal_note(thread, *comment_id, body, author)
                        .await;
                }
                // Bots never command the bot: its own comments quote commands in their help.
                if author.is_bot || author.id == self.bot.id {
                    return Ok(());
                }
                self.handle_comment(thread, *comment_id, body, author, *created_at, &delivery.id)
                    .await
            }
            // A deleted comment approves nothing any more.
            ForgeEvent::Comment {
                action: CommentAction::Deleted,
                number,
                comment_id,
                ..
            } => {
                self.withdraw_signal(*number, &format!("comment:{comment_id}"))
                    .await
            }
            // An edit must never add a command (or an approval under an old timestamp), but an
            // approval edited away is withdrawn, as if deleted; an edit that holds a command is
            // told that edits are not read.
            ForgeEvent::Comment {
                action: CommentAction::Edited,
                number,
                on_pull_request,
                comment_id,
                body,
                author,
                ..
            } => {
                let thread = Thread::of(*number, *on_pull_request);
                self.withdraw_edited_away(thread, *comment_id, body).await?;
                self.answer_edited_command(thread, body, author).await
            }
            _ => Ok(()),
        }
    }

    /// An issue or PR opened by `author` with a `/breakglass` command in its description: not
    /// a command (the bot reads comments only), which is said once (a redelivery or a replay
    /// after a crash reads the thread first). On a confidential issue, what its notes would get.
    async fn answer_described_command(
        &self,
        thread: Thread,
        author: &Actor,
        confidential: bool,
    ) -> anyhow::Result<()> {
        if author.is_bot || author.id == self.bot.id {
            return Ok(()); // the bot's own PRs quote the command they were opened for
        }
        if confidential {
            let text = crate::comment::internal_note_comment(&author.login);
            return self.note_once(thread, &text, &text).await;
        }
        let on_change = matches!(thread, Thread::Change(_));
        let text = crate::comment::description_command_comment(
            &author.login,
            self.forge.kind(),
            on_change,
        );
        self.note_once(thread, crate::comment::DESCRIPTION_COMMAND_MARK, &text)
            .await
    }

    /// A review submitted or dismissed.
    async fn dispatch_review(&self, event: &ForgeEvent) -> anyhow::Result<()> {
        let ForgeEvent::Review {
            state,
            pull_request,
            review_id,
            author,
            commit_id,
            holds_command,
            submitted_at,
        } = event
        else {
            return Ok(());
        };
        if *holds_command && !author.is_bot && author.id != self.bot.id {
            let thread = Thread::Change(pull_request.number);
            self.reply(
                thread,
                &crate::comment::review_text_command_comment(&author.login, self.forge.kind()),
            )
            .await?;
        }
        match state {
            ReviewState::Approved => {
                self.handle_review_approval(
                    pull_request,
                    *review_id,
                    author,
                    commit_id.as_deref(),
                    *submitted_at,
                )
                .await
            }
            ReviewState::Dismissed => {
                self.withdraw_signal(pull_request.number, &format!("review:{review_id}"))
                    .await
            }
            // GitHub counts a reviewer's latest review only: asking for changes takes back
            // the approving reviews they gave before.
            ReviewState::ChangesRequested => {
                self.withdraw_reviews_of(pull_request.number, author.id)
                    .await
            }
            ReviewState::Commented => Ok(()),
        }
    }

    /// An emoji put on or taken off (GitLab sends these; GitHub's are polled).
    async fn dispatch_reaction(&self, event: &ForgeEvent) -> anyhow::Result<()> {
        match event {
            ForgeEvent::Reaction {
                action: ReactionAction::Added,
                number,
                on_pull_request: true,
                reaction_id,
                content,
                user,
                created_at,
            } => {
                let reaction = crate::forge::Reaction {
                    id: *reaction_id,
                    user: user.clone(),
                    content: content.clone(),
                    created_at: *created_at,
                };
                self.handle_reaction_added(*number, &reaction).await
            }
            // A removed emoji approves nothing any more.
            ForgeEvent::Reaction {
                action: ReactionAction::Removed,
                number,
                on_pull_request: true,
                reaction_id,
                ..
            } => {
                self.withdraw_signal(*number, &format!("reaction:{reaction_id}"))
                    .await
            }
            // An emoji on an issue approves nothing.
            _ => Ok(()),
        }
    }

    /// Runs one due job.
    pub async fn run_job(&self, job: &Job) -> anyhow::Result<()> {
        let id = &job.request_id;
        let Some(record) = self.store.get_request(id).await? else {
            return Ok(());
        };
        let guard = match job.kind {
            // The expiry does not wait for the forge: other work on the PR (a webhook, a forge
            // job) may be stuck in a call that hangs, so a revoke waits for it only briefly,
            // then goes ahead (as when the lock cannot be had at all); the store's optimistic
            // lock orders the two, as it does across replicas, and a grant applied meanwhile
            // is taken back (`job_grant`).
            JobKind::Revoke => {
                tokio::time::timeout(REVOKE_LOCK_WAIT, self.lock_pr(record.pr_number))
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            _ => Some(self.lock_pr(record.pr_number).await?),
        };
        // A revoke goes ahead without the lock (above), so it is never stopped for losing it.
        let stoppable = guard.as_ref().filter(|_| job.kind != JobKind::Revoke);
        pr_lock::while_held(stoppable, self.run_job_of_kind(job.kind, id)).await
    }

    /// Runs the step of `kind` for request `id`, under its PR's lock.
    async fn run_job_of_kind(
        &self,
        kind: JobKind,
        id: &crate::names::RequestId,
    ) -> anyhow::Result<()> {
        match kind {
            JobKind::Merge => self.job_merge(id).await,
            JobKind::Grant => self.job_grant(id).await,
            JobKind::OpenRevert => self.job_open_revert(id).await,
            JobKind::Revoke => self.job_revoke(id).await,
            JobKind::Revert => self.job_revert(id).await,
            JobKind::Remind => self.job_remind(id).await,
            JobKind::Poll => self.job_poll(id).await,
            JobKind::ReviewDue => self.job_review_due(id).await,
            JobKind::Expire => self.job_expire(id).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(event: ForgeEvent) -> Delivery {
        Delivery {
            id: "d".into(),
            repository: Some("acme/access-requests".into()),
            event,
        }
    }

    fn comment(action: CommentAction, body: &str) -> Delivery {
        delivery(ForgeEvent::Comment {
            action,
            number: 7,
            on_pull_request: true,
            comment_id: 1,
            body: body.into(),
            author: Actor {
                id: 2,
                login: "bob".into(),
                is_bot: false,
            },
            created_at: DateTime::UNIX_EPOCH,
            internal: false,
        })
    }

    #[test]
    fn only_what_dispatch_drops_by_content_is_inert() {
        assert!(Workflow::is_inert(&comment(
            CommentAction::Created,
            "any news?"
        )));
        assert!(Workflow::is_inert(&delivery(ForgeEvent::Ping)));
        for acting in [
            comment(CommentAction::Created, "/breakglass approve"),
            comment(CommentAction::Created, "/breakglass frobnicate"),
            comment(CommentAction::Deleted, "any news?"),
            // May be an approval edited away.
            comment(CommentAction::Edited, "I do not approve this"),
            // Told that edits are not read.
            comment(CommentAction::Edited, "/breakglass approve"),
        ] {
            assert!(!Workflow::is_inert(&acting), "{acting:?}");
        }
    }
}
