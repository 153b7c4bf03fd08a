//! `/breakglass extend 30m`: more time for an active grant, never past the policy's
//! `max_duration` in total. The requester gets it at once when a fast-path rule (as it applies
//! now) or self-service allows the new total; otherwise it is approved again as the request
//! was: each approver's `/breakglass extend` with the same duration is one approval of it, and
//! the policy's `approvals` distinct approvers (never the requester) extend it. Both as the
//! default branch's policy has it now: a requester it no longer names gets no extension at all,
//! and an approver it no longer names no longer counts. Each refusal is a reply that says why.

use chrono::{DateTime, Utc};

use super::Workflow;
use crate::comment;
use crate::duration::HumanDuration;
use crate::forge::{Actor, Thread};
use crate::names::{Login, Name};
use crate::policy::Policy;
use crate::policy::decision::{
    Context, Membership, fast_path_misses, held_past_the_rule, requester_membership,
};
use crate::policy::model::FastPathRule;
use crate::store::{
    AppliedGrant, Approval, ApprovalSource, CommentKey, Effect, EventKind, JobKind,
};
use crate::store::{RequestRecord, RequestState};

/// An extension that passed every check, ready to be written.
struct Extension {
    expires_at: DateTime<Utc>,
    by: HumanDuration,
    total: HumanDuration,
    /// What a provider applied (aws-iam), which carries the expiry and gets the new one first.
    applied: Option<AppliedGrant>,
    /// The environment's policy on the default branch, as read for this command.
    policy: Policy,
}

/// The fast-path rule a requester's extension was given on alone: reviewed after the fact.
struct OnFastPath {
    rule: Name,
    review_within: HumanDuration,
    /// The forge's time of the requester's ask: a review is of what was granted since.
    asked_at: DateTime<Utc>,
}

/// A check's outcome: go on with `T`, or the reply that says why not.
type Checked<T> = Result<T, String>;

/// The comment (or an approver's emoji) that asks for an extension, or approves one.
struct ExtensionAsk {
    /// Where it was asked, which is where the answer goes.
    thread: Thread,
    /// The forge's id of the comment, or of the emoji.
    given: Given,
    /// The forge's time of the comment or emoji.
    created_at: DateTime<Utc>,
}

/// How an extension was asked for or approved: by a comment or by an emoji on the PR, each
/// with the forge's id of it.
#[derive(Clone, Copy, Debug)]
enum Given {
    Comment(u64),
    Reaction(u64),
}

impl Given {
    /// The approval signal it is stored as, and its source.
    fn signal(self) -> (String, ApprovalSource) {
        match self {
            Self::Comment(id) => (format!("comment:{id}"), ApprovalSource::Comment),
            Self::Reaction(id) => (format!("reaction:{id}"), ApprovalSource::Reaction),
        }
    }
}

/// What an approval of an extension is of, in place of the head commit a request's approval
/// is bound to: this duration more on this expiry. Once the grant is extended its expiry moves
/// on, so approvals of an earlier extension never count for the next one.
fn extension_subject(expires_at: DateTime<Utc>, by: HumanDuration) -> String {
    format!("extend:{}+{}s", expires_at.timestamp_millis(), by.as_secs())
}

/// The comment `ask` as one approval (or the requester's ask) of `extension`.
fn extension_approval(
    record: &RequestRecord,
    extension: &Extension,
    author: &Actor,
    login: Login,
    ask: &ExtensionAsk,
) -> Approval {
    let (signal, source) = ask.given.signal();
    Approval {
        request_id: record.id.clone(),
        signal,
        approver_id: author.id,
        approver_login: login,
        source,
        head_sha: extension_subject(extension.expires_at, extension.by),
        approved_at: ask.created_at,
    }
}

/// The seconds an extension subject asks for; `None` for a request's head commit.
pub(super) fn extension_secs(subject: &str) -> Option<u64> {
    let (_, secs) = subject.strip_prefix("extend:")?.split_once('+')?;
    secs.strip_suffix('s')?.parse().ok()
}

impl Workflow {
    pub(super) async fn command_extend(
        &self,
        thread: Thread,
        comment_id: u64,
        author: &Actor,
        by: HumanDuration,
        created_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let Some(record) = self.request_on(thread).await? else {
            let said = self.no_request_here(thread, "extend").await?;
            return self.reply(thread, &said).await;
        };
        let comment = self.comment_key(comment_id);
        if self
            .store
            .comment_effect(comment, Effect::Extend)
            .await?
            .is_some()
        {
            // Extended by an earlier run of this comment's delivery: its timers and its note
            // may be missing (a kill before them).
            self.extension_timers(&record).await?;
            return self.announce_extension(&record).await;
        }
        let extension = match self.extendable(&record, by).await? {
            Ok(extension) => extension,
            Err(reply) => return self.reply(thread, &reply).await,
        };
        if author.id != record.requester_id {
            let ask = ExtensionAsk {
                thread,
                given: Given::Comment(comment_id),
                created_at,
            };
            return match self
                .approve_extension(&record, &extension, author, ask)
                .await?
            {
                Ok(Some(approvers)) => {
                    let by = (comment, Effect::Extend);
                    self.extend_grant(record, extension, author, (&approvers, None), by)
                        .await
                }
                Ok(None) => Ok(()),
                Err(reply) => self.reply(thread, &reply).await,
            };
        }
        let first_ask = self.asks_on_expiry(&record).await?.is_empty();
        // Held before it is judged: an extension of another of the requester's grants judged
        // meanwhile (another replica) counts this one, and this one counts it.
        let mut record = record;
        set_extension_hold(&mut record, Some(extension.by.as_secs()), self.now())?;
        self.store.update_request(&mut record, self.now()).await?;
        let rule = match self
            .requester_may_extend(&record, &extension, author, first_ask)
            .await?
        {
            Ok(rule) => rule,
            Err(reply) => {
                set_extension_hold(&mut record, None, self.now())?;
                self.store.update_request(&mut record, self.now()).await?;
                self.keep_ask(&record, &extension, author, comment_id, created_at)
                    .await?;
                return self.reply(thread, &reply).await;
            }
        };
        let on_fast_path = rule.map(|(rule, review_within)| OnFastPath {
            rule,
            review_within,
            asked_at: created_at,
        });
        let given = (comment, Effect::Extend);
        self.extend_grant(record, extension, author, (&[], on_fast_path), given)
            .await
    }

    /// Keeps the requester's ask for `extension`, which needs approval, so that an approver's
    /// `/breakglass approve` or approval emoji can approve it. The requester never counts as an
    /// approver.
    async fn keep_ask(
        &self,
        record: &RequestRecord,
        extension: &Extension,
        author: &Actor,
        comment_id: u64,
        created_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let login = Login::try_from(author.login.clone()).map_err(anyhow::Error::msg)?;
        let asked = ExtensionAsk {
            thread: Thread::Change(record.pr_number),
            given: Given::Comment(comment_id),
            created_at,
        };
        let ask = extension_approval(record, extension, author, login, &asked);
        self.store.add_approval(&ask).await?;
        // An approver may approve it with an emoji on the PR, which GitHub only shows a poll.
        self.schedule(JobKind::Poll, &record.id, self.now()).await?;
        Ok(())
    }

    /// The requester's asks for an extension of the grant's current expiry, oldest first.
    async fn asks_on_expiry(&self, record: &RequestRecord) -> anyhow::Result<Vec<Approval>> {
        let Some(expires_at) = record.expires_at else {
            return Ok(Vec::new());
        };
        let prefix = format!("extend:{}+", expires_at.timestamp_millis());
        let mut asked = self
            .store
            .approvals_with_subject_prefix(&record.id, &prefix)
            .await?;
        asked.retain(|ask| ask.approver_id == record.requester_id);
        Ok(asked)
    }

    /// An approver's `/breakglass approve` on an active grant: an approval of the extension
    /// its requester asked for last, on the grant's current expiry (one granted since moved
    /// the expiry on, so it is not asked any more). Without such an ask, a reply says so.
    pub(super) async fn command_approve_extension(
        &self,
        thread: Thread,
        record: &RequestRecord,
        author: &Actor,
        comment_id: u64,
        created_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        if author.id == record.requester_id {
            let text = comment::self_approval_comment(record.requester_login.as_str());
            return self.reply(thread, &text).await;
        }
        // Only an ask the approver could have read: one made before the approval (forge time
        // on both sides, to the second: GitHub gives whole seconds), so a bigger ask posted
        // meanwhile is not approved unseen; and one still there (GitLab sends no webhook when a
        // note is deleted). The newest such ask is the one answered; one in the approval's own
        // second may or may not have been read, so the approver is asked to approve again.
        let Some(ask) = self.newest_ask_made_by(record, created_at).await? else {
            return self
                .reply(thread, &comment::no_extension_asked_comment())
                .await;
        };
        let Some(secs) = extension_secs(&ask.head_sha) else {
            return self
                .reply(thread, &comment::no_extension_asked_comment())
                .await;
        };
        let by = HumanDuration::from_secs(secs);
        if ask.approved_at.timestamp() == created_at.timestamp() {
            let text = comment::extension_approve_again_comment(
                author.login.as_str(),
                record.requester_login.as_str(),
                &by.to_string(),
            );
            return self.reply(thread, &text).await;
        }
        self.command_extend(thread, comment_id, author, by, created_at)
            .await
    }

    /// Whether an extension of active grant `record` waits for approval: its requester asked
    /// for more time on its current expiry, and no approval has given it yet.
    pub(super) async fn extension_asked(&self, record: &RequestRecord) -> anyhow::Result<bool> {
        Ok(record.state == RequestState::Active && !self.asks_on_expiry(record).await?.is_empty())
    }

    /// The signals of the asks [`Self::extension_asked`] finds (none: nothing asked).
    pub(super) async fn extension_ask_signals(
        &self,
        record: &RequestRecord,
    ) -> anyhow::Result<std::collections::BTreeSet<String>> {
        if record.state != RequestState::Active {
            return Ok(std::collections::BTreeSet::new());
        }
        let asks = self.asks_on_expiry(record).await?;
        Ok(asks.into_iter().map(|ask| ask.signal).collect())
    }

    /// The requester's newest ask for more time on `record`'s current expiry made no later
    /// than `at` (forge time, to the second) and still there, if any.
    async fn newest_ask_made_by(
        &self,
        record: &RequestRecord,
        at: DateTime<Utc>,
    ) -> anyhow::Result<Option<Approval>> {
        let asks = self.asks_made_by(record, at).await?;
        self.newest_still_there(record, asks).await
    }

    /// The requester's asks on `record`'s current expiry made no later than `at` (forge time,
    /// to the second), oldest first, as stored (one read of the store, none of the forge).
    async fn asks_made_by(
        &self,
        record: &RequestRecord,
        at: DateTime<Utc>,
    ) -> anyhow::Result<Vec<Approval>> {
        let mut asks = self.asks_on_expiry(record).await?;
        asks.retain(|ask| ask.approved_at.timestamp() <= at.timestamp());
        asks.sort_by_key(|ask| ask.approved_at);
        Ok(asks)
    }

    /// The newest of `asks` (oldest first) that the forge still shows.
    async fn newest_still_there(
        &self,
        record: &RequestRecord,
        mut asks: Vec<Approval>,
    ) -> anyhow::Result<Option<Approval>> {
        while let Some(ask) = asks.pop() {
            let alive = self
                .extension_signals_alive(record, std::slice::from_ref(&ask))
                .await?;
            if alive.contains_key(&ask.signal) {
                return Ok(Some(ask));
            }
        }
        Ok(None)
    }

    /// An approver's approval emoji (`reaction`) on active grant `record`'s PR, put on after
    /// its requester asked for more time: an approval of the newest ask made before it and
    /// still there, as `/breakglass approve` is (forge time on both sides, to the second). An
    /// emoji from before every ask (the request's own approval, a review) approves nothing
    /// here; one in the ask's own second may or may not have been put on after reading it, so
    /// the approver is asked to approve again. `true` when it extended the grant. Each answer
    /// is said once: the poll reads the same emoji again whenever the PR's list changes. The
    /// caller took only an approval emoji of someone neither the requester nor a bot.
    pub(super) async fn reaction_approves_extension(
        &self,
        record: &RequestRecord,
        policy: &Policy,
        reaction: &crate::forge::Reaction,
    ) -> anyhow::Result<bool> {
        // An emoji's id keys its effect as a comment's id does (under an effect of its own).
        let key = self.comment_key(reaction.id);
        let extended = self.store.comment_effect(key, Effect::ExtendByReaction);
        if extended.await?.as_ref() == Some(&record.id) {
            // Extended by an earlier run: its timers and its note may be missing (a kill
            // before them).
            self.extension_timers(record).await?;
            self.announce_extension(record).await?;
            return Ok(false);
        }
        // Asked of the forge now: the emoji is not read again unless the PR's emoji change, so
        // an approver added to a team a moment ago is not turned away for good.
        let asks = self.asks_made_by(record, reaction.created_at).await?;
        if asks.is_empty() || !self.is_approver_now(policy, &reaction.user).await? {
            return Ok(false);
        }
        let Some(ask) = self.newest_still_there(record, asks).await? else {
            return Ok(false);
        };
        let Some(by) = extension_secs(&ask.head_sha).map(HumanDuration::from_secs) else {
            return Ok(false);
        };
        let (signal, _) = Given::Reaction(reaction.id).signal();
        if ask.approved_at.timestamp() == reaction.created_at.timestamp() {
            let text = comment::extension_approve_again_comment(
                &reaction.user.login,
                record.requester_login.as_str(),
                &by.to_string(),
            );
            let answer = (EventKind::ApprovalAmbiguous, signal.as_str());
            self.answer_once(record, &reaction.user, answer, &text)
                .await?;
            return Ok(false);
        }
        // The ask's subject: this duration more on the current expiry.
        let approvals = self.store.approvals_for(&record.id, &ask.head_sha).await?;
        if approvals.iter().any(|approval| approval.signal == signal) {
            return Ok(false); // counted already; more approvers are needed
        }
        self.emoji_approves_extension(record, reaction, by).await
    }

    /// `reaction`, an approver's emoji put on after the ask for `by` more, as one approval of
    /// that extension; it extends `record` once the policy's approvals are in. A refusal (the
    /// grant can no longer have it) is said once per emoji.
    async fn emoji_approves_extension(
        &self,
        record: &RequestRecord,
        reaction: &crate::forge::Reaction,
        by: HumanDuration,
    ) -> anyhow::Result<bool> {
        let approver = &reaction.user;
        let given = Given::Reaction(reaction.id);
        let (signal, _) = given.signal();
        let refused = (EventKind::ApprovalRefused, signal.as_str());
        let extension = match self.extendable(record, by).await? {
            Ok(extension) => extension,
            Err(reply) => {
                self.answer_once(record, approver, refused, &reply).await?;
                return Ok(false);
            }
        };
        let ask = ExtensionAsk {
            thread: Thread::Change(record.pr_number),
            given,
            created_at: reaction.created_at,
        };
        match self
            .approve_extension(record, &extension, approver, ask)
            .await?
        {
            Ok(Some(approvers)) => {
                let by = (self.comment_key(reaction.id), Effect::ExtendByReaction);
                self.extend_grant(record.clone(), extension, approver, (&approvers, None), by)
                    .await?;
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(reply) => {
                self.answer_once(record, approver, refused, &reply).await?;
                Ok(false)
            }
        }
    }

    /// Whether `record` can have `by` more: an active grant before its expiry, whose access is
    /// not a merged file, of a requester its policy still names, within its policy's
    /// `max_duration` in total.
    async fn extendable(
        &self,
        record: &RequestRecord,
        by: HumanDuration,
    ) -> anyhow::Result<Checked<Extension>> {
        // Not granted (yet, or any more): its state, and what applies instead.
        let no_request = || {
            Ok(Err(comment::not_in_this_state_comment(
                "extend",
                record.id.as_str(),
                record.state,
                self.forge.kind(),
            )))
        };
        let (Some(expires_at), RequestState::Active) = (record.expires_at, record.state) else {
            // Ended: an earlier run of this comment may have lost its race with the revoke and
            // failed (or died) before taking back what it applied again. Taken back now.
            if matches!(record.state, RequestState::Revoking | RequestState::Revoked)
                && self.store.applied_grant(&record.id).await?.is_some()
            {
                self.taken_back_if_ended(&record.id).await?;
            }
            return no_request();
        };
        // Past its expiry, a grant whose revoke has not run yet (a restart, a backlog) is over:
        // more time would hand back access that should be gone. (Both are the bot's clock.)
        if expires_at <= self.now() {
            return Ok(Err(comment::extension_after_expiry_comment(expires_at)));
        }
        // A grant that is a merged file carries its expiry in the file: more time is a new file.
        let applied = self.store.applied_grant(&record.id).await?;
        if let Some(applied) = applied.as_ref().filter(|a| !a.files.is_empty()) {
            let paths: Vec<String> = applied.files.iter().map(|f| f.path.clone()).collect();
            return Ok(Err(comment::extension_in_files_comment(&paths, expires_at)));
        }
        let policy = match self.policy_of(record).await? {
            Ok(Some(policy)) => policy,
            Ok(None) => return no_request(),
            Err(reply) => return Ok(Err(reply)),
        };
        let total = match self.policy_allows(record, &policy, by, expires_at).await? {
            Ok(total) => total,
            Err(reply) => return Ok(Err(reply)),
        };
        Ok(Ok(Extension {
            expires_at,
            by,
            total,
            applied,
            policy,
        }))
    }

    /// Whether `policy` (the default branch's, now) allows `record` `by` more, whoever asks:
    /// its requester is still one of the policy's requesters, and the new total is within
    /// `max_duration`. The new total when it does.
    async fn policy_allows(
        &self,
        record: &RequestRecord,
        policy: &Policy,
        by: HumanDuration,
        expires_at: DateTime<Utc>,
    ) -> anyhow::Result<Checked<HumanDuration>> {
        if !self.still_a_requester(record, policy).await? {
            return Ok(Err(comment::extension_requester_removed_comment(
                record.requester_login.as_str(),
                record.environment.as_str(),
                expires_at,
                self.now(),
            )));
        }
        let total = HumanDuration::from_secs(record.total_secs + by.as_secs());
        if total > policy.max_duration {
            return Ok(Err(comment::extension_refused_comment(
                &total.to_string(),
                &policy.max_duration.to_string(),
            )));
        }
        Ok(Ok(total))
    }

    /// Whether `record`'s requester is still one of `policy`'s requesters, judged as a new
    /// request of theirs would be. More time is new access: no approval makes up for a
    /// requester the policy no longer names, as none would for their new request.
    async fn still_a_requester(
        &self,
        record: &RequestRecord,
        policy: &Policy,
    ) -> anyhow::Result<bool> {
        let requester = self
            .resolve_requester(Some(policy), &record.requester_login)
            .await?;
        Ok(requester_membership(policy, &requester) == Membership::Yes)
    }

    /// Whether the requester may have `extension` on their own: in an environment that needs
    /// no approval, or while a fast-path rule applies to the new total: the one that merged
    /// the grant (a grant it merged extends on no other), or for an approved grant any rule
    /// of the policy (SPEC: "approval again unless a fast-path rule allows it"). `Some` names
    /// that rule and its `review_within`.
    async fn requester_may_extend(
        &self,
        record: &RequestRecord,
        extension: &Extension,
        author: &Actor,
        first_ask: bool,
    ) -> anyhow::Result<Checked<Option<(Name, HumanDuration)>>> {
        let policy = &extension.policy;
        if policy.approvals == 0 {
            return Ok(Ok(None)); // self-service
        }
        let approvers: Vec<String> = policy.approvers.iter().map(ToString::to_string).collect();
        let by = format!("@{}", author.login);
        let duration = extension.by.to_string();
        let change = self.forge.change_label(record.pr_number);
        let ask = comment::ExtensionAsk {
            by: &by,
            duration: &duration,
            approvers: &approvers,
            ping: first_ask,
            reactions: &policy.approval_reactions,
            forge: self.forge_kind(),
            change: &change,
        };
        let review_within = |name: &Name| {
            let rule = policy.fast_path.iter().find(|r| r.name == *name);
            rule.map_or(HumanDuration::from_secs(86_400), |r| r.review_within)
        };
        Ok(
            match self.fast_path_misses_now(record, policy, extension).await? {
                Some((rule, misses)) if misses.is_empty() => {
                    let within = review_within(&rule);
                    Ok(Some((rule, within)))
                }
                Some((rule, misses)) => Err(comment::extension_fast_path_lapsed_comment(
                    &ask,
                    rule.as_str(),
                    &misses,
                )),
                None => match self.rule_allowing(record, policy, extension).await? {
                    Some(rule) => {
                        let within = review_within(&rule);
                        Ok(Some((rule, within)))
                    }
                    None => Err(comment::extension_needs_approval_comment(
                        &ask,
                        policy.approvals,
                    )),
                },
            },
        )
    }

    /// For a grant no fast path merged: the first of the policy's fast-path rules that allows
    /// `extension` now, judged as [`Self::fast_path_misses_now`] judges the merging rule.
    async fn rule_allowing(
        &self,
        record: &RequestRecord,
        policy: &Policy,
        extension: &Extension,
    ) -> anyhow::Result<Option<Name>> {
        for rule in &policy.fast_path {
            if self
                .rule_misses_now(record, policy, extension, rule)
                .await?
                .is_empty()
            {
                return Ok(Some(rule.name.clone()));
            }
        }
        Ok(None)
    }

    /// An approver's ask for `extension`, counted as one approval of it. `Some(approvers)`
    /// once the policy's `approvals` distinct approvers asked for this very extension (the same
    /// duration on the same expiry) and their comments are still there; `None` after saying
    /// how many there are so far.
    async fn approve_extension(
        &self,
        record: &RequestRecord,
        extension: &Extension,
        author: &Actor,
        ask: ExtensionAsk,
    ) -> anyhow::Result<Checked<Option<Vec<Login>>>> {
        let policy = &extension.policy;
        // Bots never approve: a bot account among the approvers is a token someone holds.
        // Asked of the forge now, as before a merge: with one approval needed, this one
        // extends at once, and an approver taken off a team a moment ago no longer counts.
        let may = !author.is_bot && author.id != self.bot.id;
        if !may || !self.is_approver_now(policy, author).await? {
            return Ok(Err(comment::not_allowed_comment(
                &author.login,
                "the requester or an approver can extend",
            )));
        }
        if !self
            .of_current_expiry(record, extension.expires_at, ask.created_at)
            .await?
        {
            let by = extension.by.to_string();
            return Ok(Err(comment::extension_of_an_earlier_expiry_comment(
                &author.login,
                &by,
                extension.expires_at,
            )));
        }
        let login = Login::try_from(author.login.clone()).map_err(anyhow::Error::msg)?;
        let need = policy.approvals.max(1);
        let approval = extension_approval(record, extension, author, login.clone(), &ask);
        if need == 1 {
            // Read again before it extends, as approvals are before a merge: a comment deleted
            // or edited since it was made (its webhook may come after this) asks for nothing.
            let alive = self
                .extension_signals_alive(record, std::slice::from_ref(&approval))
                .await?;
            if !alive.contains_key(&approval.signal) {
                let by = extension.by.to_string();
                return Ok(Err(comment::extension_comment_gone_comment(
                    &author.login,
                    &by,
                )));
            }
            return Ok(Ok(Some(vec![login])));
        }
        let subject = approval.head_sha.clone();
        let event = super::events::new_event(
            EventKind::Approval,
            Some(&record.id),
            super::events::actor(author),
            serde_json::json!({ "source": approval.source.as_str(), "signal": approval.signal, "extension": extension.by.to_string() }),
            self.forge_kind(),
        );
        self.store
            .add_approval_logged(&approval, &event, self.now())
            .await?;
        let approvers = self
            .counted_extension_approvers(record, policy, &subject)
            .await?;
        if approvers.len() >= need as usize {
            return Ok(Ok(Some(approvers.into_values().collect())));
        }
        self.reply(
            ask.thread,
            &comment::extension_approval_recorded_comment(
                &author.login,
                &extension.by.to_string(),
                approvers.len(),
                need,
            ),
        )
        .await?;
        Ok(Ok(None))
    }

    /// The distinct approvers (by user id, never the requester) of the extension `subject`
    /// whose comments are still there and whom `policy` still names as approvers, as at a
    /// request's merge (`live_approvals`): one taken off the policy since no longer counts.
    async fn counted_extension_approvers(
        &self,
        record: &RequestRecord,
        policy: &Policy,
        subject: &str,
    ) -> anyhow::Result<std::collections::BTreeMap<u64, Login>> {
        let asked = self.store.approvals_for(&record.id, subject).await?;
        let alive = self.extension_signals_alive(record, &asked).await?;
        let mut approvers = std::collections::BTreeMap::new();
        for approval in asked.into_iter().filter(|a| alive.contains_key(&a.signal)) {
            let approver = Actor {
                id: approval.approver_id,
                login: approval.approver_login.to_string(),
                is_bot: false,
            };
            if approval.approver_id != record.requester_id
                && self.is_approver_now(policy, &approver).await?
            {
                approvers.insert(approval.approver_id, approval.approver_login);
            }
        }
        Ok(approvers)
    }

    /// Whether an approver's comment made at `created_at` (forge time) is of the grant's
    /// current expiry `expires_at`: made after the bot's note that said it (the forge's time of
    /// that note). One made before it, or in the same second (too close to tell), was of an
    /// earlier expiry, which another approval extended since (two approvers answering one ask
    /// would otherwise extend it twice). A grant never extended has no earlier expiry.
    async fn of_current_expiry(
        &self,
        record: &RequestRecord,
        expires_at: DateTime<Utc>,
        created_at: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        if record.total_secs <= record.duration_secs {
            return Ok(true);
        }
        let marker = comment::extended_marker(record.requester_login.as_str(), expires_at);
        let notes = self.forge.notes(Thread::Change(record.pr_number)).await?;
        let said = notes
            .iter()
            .find(|note| note.author_id == self.bot.id && note.body.starts_with(&marker));
        match said {
            Some(note) => Ok(created_at > note.created_at),
            None => {
                // Not said yet (a crash right before the note), or deleted: said now; the
                // comment is asked for again, after it.
                self.announce_extension(record).await?;
                Ok(false)
            }
        }
    }

    /// Which of `approvals` of an extension (or asks for one) the forge still shows, by
    /// signal: on the request's PR, or on its revert PR, where extension commands are taken
    /// too (GitLab finds a note only on its own merge request; GitHub by its id alone).
    async fn extension_signals_alive(
        &self,
        record: &RequestRecord,
        approvals: &[Approval],
    ) -> anyhow::Result<std::collections::BTreeMap<String, Option<String>>> {
        let mut alive = self.signals_alive(record.pr_number, approvals).await?;
        if let Some(revert) = record.revert_pr_number {
            let rest: Vec<Approval> = approvals
                .iter()
                .filter(|a| !alive.contains_key(&a.signal))
                .cloned()
                .collect();
            if !rest.is_empty() {
                alive.extend(self.signals_alive(revert, &rest).await?);
            }
        }
        Ok(alive)
    }

    /// The policy of `record`'s environment on the default branch, if it still has one.
    /// `Err` with the reply when the policies are invalid: nothing can be checked then.
    async fn policy_of(&self, record: &RequestRecord) -> anyhow::Result<Checked<Option<Policy>>> {
        let (default_branch, policies) = self.load_policies().await?;
        Ok(match policies {
            Ok(policies) => Ok(policies.get(record.environment.as_str()).cloned()),
            Err(_) => Err(comment::extension_unchecked_comment(&default_branch)),
        })
    }

    /// The labels a fast-path rule sees for `record` now: its PR's; for a request asked for by
    /// comment, only those its thread still has while it is open (the bot's PR keeps the
    /// labels it was opened with, and a closed or downgraded incident opens no fast path).
    async fn fast_path_labels_now(&self, record: &RequestRecord) -> anyhow::Result<Vec<String>> {
        let on_pr = self.forge.change(record.pr_number).await?.info.labels;
        let asked_on = self
            .store
            .thread_asked_on(self.forge_kind(), &self.settings.repository, &record.id)
            .await?;
        let Some(thread) = asked_on.as_deref().and_then(Thread::from_key) else {
            return Ok(on_pr);
        };
        let on_thread = self.forge.labels(thread).await?;
        if !on_thread.open {
            return Ok(Vec::new());
        }
        let same = |a: &String, b: &String| a.eq_ignore_ascii_case(b);
        Ok(on_pr
            .into_iter()
            .filter(|label| on_thread.labels.iter().any(|l| same(l, label)))
            .collect())
    }

    /// The fast-path rule that merged `record`, with why it would not allow `extension` now
    /// (empty: it would); `None` when no fast path merged it. A requester extends on their own
    /// only while the rule still applies as at the merge: still one of its requesters (on
    /// call, asked now), the PR still labelled, no overdue review when it blocks on one, and
    /// the grant's new total within the rule, as well as what is left of it with the extension
    /// together with the requester's other grants in the environment (as a new request is
    /// judged: several short fast paths, each extended, must not add up to hours).
    async fn fast_path_misses_now(
        &self,
        record: &RequestRecord,
        policy: &Policy,
        extension: &Extension,
    ) -> anyhow::Result<Option<(Name, Vec<String>)>> {
        let Some(name) = record.fast_path_rule.clone() else {
            return Ok(None);
        };
        let Some(rule) = policy.fast_path.iter().find(|r| r.name == name) else {
            let gone = "the policy no longer has this rule".to_owned();
            return Ok(Some((name, vec![gone])));
        };
        let misses = self
            .rule_misses_now(record, policy, extension, rule)
            .await?;
        Ok(Some((name, misses)))
    }

    /// Why fast-path `rule` would not allow `extension` of `record` now (empty: it would).
    async fn rule_misses_now(
        &self,
        record: &RequestRecord,
        policy: &Policy,
        extension: &Extension,
        rule: &FastPathRule,
    ) -> anyhow::Result<Vec<String>> {
        let requester = self
            .resolve_requester_for_fast_path_now(Some(policy), &record.requester_login)
            .await?;
        let labels = if rule.labels_any.is_empty() {
            Vec::new()
        } else {
            self.fast_path_labels_now(record).await?
        };
        let ctx = Context {
            requester: Some(&requester),
            labels: &labels,
            now: self.now(),
            path: None,
        };
        let mut misses = fast_path_misses(rule, policy, &record.role, extension.total, &ctx);
        let held = self
            .held_grants(record.requester_id, &record.environment, &record.id)
            .await?;
        let left = (extension.expires_at - ctx.now).num_seconds().max(0);
        let with_extension =
            HumanDuration::from_secs(u64::try_from(left).unwrap_or(0) + extension.by.as_secs());
        misses.extend(held_past_the_rule(
            rule,
            policy,
            with_extension,
            &ctx,
            &held,
        ));
        if rule.block_until_reviewed
            && let Some(overdue) = self.overdue_review_of(record.requester_id).await?
        {
            misses.push(format!(
                "`{}` has an overdue review of `{overdue}` (block_until_reviewed)",
                record.requester_login
            ));
        }
        Ok(misses)
    }

    /// Writes an allowed extension: the provider first (a grant that carries its expiry gets
    /// the new one), then the new expiry together with the comment's effect, then the timers
    /// and the note.
    ///
    /// Given alone on a fast path (`on_fast_path`) to a grant that has no review open (it was
    /// approved, or reviewed already), the extension reopens the after-the-fact review.
    async fn extend_grant(
        &self,
        mut record: RequestRecord,
        extension: Extension,
        author: &Actor,
        (approvers, on_fast_path): (&[Login], Option<OnFastPath>),
        (given, effect): (CommentKey<'_>, Effect),
    ) -> anyhow::Result<()> {
        let Extension {
            expires_at,
            by,
            total,
            applied,
            ..
        } = extension;
        let new_expiry = expires_at + by.to_chrono();
        record.expires_at = Some(new_expiry);
        record.total_secs = total.as_secs();
        set_extension_hold(&mut record, None, self.now())?; // the extension itself counts now
        let rule = on_fast_path.as_ref().map(|f| f.rule.to_string());
        let reopened = match on_fast_path {
            Some(fast) if record.fast_path_rule.is_none() || record.reviewed_at.is_some() => {
                Some(self.reopen_review(&mut record, fast)?)
            }
            // Its review still open: it now covers the extension too, so only what an approver
            // says after the ask reviews it (an emoji the poll has not seen yet was of less).
            Some(fast) => {
                review_from(&mut record, fast.asked_at)?;
                None
            }
            None => None,
        };
        // Grants that carry their expiry (aws-iam) get the new one first: the store is written
        // only after the cloud agrees, so a retry never extends twice.
        let reapplied = applied.is_some();
        if let Some(applied) = applied {
            self.providers
                .extend(&applied.role, &Self::spec(&record))
                .await?;
        }
        let event = super::events::new_event(
            EventKind::Extend,
            Some(&record.id),
            super::events::actor(author),
            serde_json::json!({ "by": by.to_string(), "expires_at": crate::clock::iso(new_expiry), "total": total.to_string(), "approved_by": approvers, "fast_path": rule }),
            self.forge_kind(),
        );
        // The new expiry and the comment's effect in one write: a second run cannot extend again.
        let now = self.now();
        let stored = self
            .store
            .record_extension(given, effect, &mut record, &event, now)
            .await;
        if stored.is_err() && reapplied {
            // A revoke won the race (it waits for this PR's lock only briefly, and another
            // replica's not at all): what was just applied again with the new expiry is
            // taken back.
            self.taken_back_if_ended(&record.id).await?;
        }
        if !stored? {
            return match self.store.get_request(&record.id).await? {
                Some(stored) => {
                    self.extension_timers(&stored).await?;
                    self.announce_extension(&stored).await
                }
                None => Ok(()),
            };
        }
        self.extension_timers(&record).await?;
        let mut said =
            comment::extended_comment(record.requester_login.as_str(), new_expiry, self.now());
        if let Some(due) = reopened {
            self.review_timers(&record, due).await?;
            let rule = record.fast_path_rule.as_ref().map_or("", |r| r.as_str());
            said.push_str(&comment::extension_review_line(rule, due));
        }
        self.forge
            .note(Thread::Change(record.pr_number), &said)
            .await?;
        Ok(())
    }

    /// Marks `record` as granted more on fast path `fast`, its review open again and due
    /// `review_within` from now; returns when it is due.
    fn reopen_review(
        &self,
        record: &mut RequestRecord,
        fast: OnFastPath,
    ) -> anyhow::Result<DateTime<Utc>> {
        let due = self.now() + fast.review_within.to_chrono();
        record.fast_path_rule = Some(fast.rule);
        record.reviewed_at = None;
        record.reviewed_by = None;
        record.review_due_at = Some(due);
        review_from(record, fast.asked_at)?;
        Ok(due)
    }

    /// The label, the emoji poll and the deadline of a review reopened by an extension.
    async fn review_timers(
        &self,
        record: &RequestRecord,
        due: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        self.forge
            .add_label(record.pr_number, super::NEEDS_REVIEW_LABEL)
            .await?;
        self.schedule(JobKind::ReviewDue, &record.id, due).await?;
        self.schedule(JobKind::Poll, &record.id, self.now()).await
    }

    /// The note of the extension that set the stored expiry of an active grant, said once.
    pub(super) async fn announce_extension(&self, record: &RequestRecord) -> anyhow::Result<()> {
        let (Some(expires_at), RequestState::Active) = (record.expires_at, record.state) else {
            return Ok(());
        };
        let requester = record.requester_login.as_str();
        let marker = comment::extended_marker(requester, expires_at);
        let text = comment::extended_comment(requester, expires_at, self.now());
        self.note_once(Thread::Change(record.pr_number), &marker, &text)
            .await
    }

    /// The revoke and the reminder of an active grant at its stored expiry (idempotent).
    pub(super) async fn extension_timers(&self, record: &RequestRecord) -> anyhow::Result<()> {
        let (Some(expires_at), RequestState::Active) = (record.expires_at, record.state) else {
            return Ok(());
        };
        self.schedule(JobKind::Revoke, &record.id, expires_at)
            .await?;
        let remind_at = expires_at
            - chrono::TimeDelta::from_std(self.settings.reminder_before).unwrap_or_default();
        if remind_at > self.now() {
            self.schedule(JobKind::Remind, &record.id, remind_at)
                .await?;
        }
        self.retitle_revert(record, expires_at).await
    }

    /// The revert PR is titled with the expiry (SPEC): after an extension, with the new one,
    /// so that nobody reading it takes the old time for the end (or merges it then by hand).
    async fn retitle_revert(
        &self,
        record: &RequestRecord,
        expires_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let Some(number) = record.revert_pr_number else {
            return Ok(()); // opened later, with the new expiry
        };
        let id = record.id.as_str();
        let title = comment::revert_pr_title(id, expires_at);
        let original = self.forge.change_ref(record.pr_number);
        let body = comment::revert_pr_body(id, &original, expires_at, self.forge.kind());
        match self.forge.retitle_change(number, &title, &body).await {
            // Deleted (a GitLab owner may): the revoke builds a fresh one at the new expiry.
            Err(err) if err.status() == Some(404) => {
                tracing::warn!(
                    request = id,
                    pr = number,
                    "the revert PR is gone; not retitled"
                );
                Ok(())
            }
            answer => Ok(answer?),
        }
    }
}

/// Marks `record`'s after-the-fact review as covering what was granted at `asked_at` (forge
/// time): an approver's review given before it was of less.
fn review_from(record: &mut RequestRecord, asked_at: DateTime<Utc>) -> anyhow::Result<()> {
    let mut decision = super::stored_decision(record)?.clone();
    decision.review_since = Some(asked_at);
    record.decision = Some(decision);
    Ok(())
}

/// Writes (`Some(secs)`) or clears `record`'s [`crate::store::ExtensionHold`] in its decision.
fn set_extension_hold(
    record: &mut RequestRecord,
    secs: Option<u64>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let mut decision = super::stored_decision(record)?.clone();
    decision.extension_hold = secs.map(|secs| crate::store::ExtensionHold { secs, at: now });
    record.decision = Some(decision);
    Ok(())
}
