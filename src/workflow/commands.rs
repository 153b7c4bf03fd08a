//! `/breakglass …` comments: one `command_<verb>` per command. Permissions are checked first in
//! every handler, by numeric user id, failing closed.

use std::cell::RefCell;

use chrono::{DateTime, Utc};

use super::Workflow;
use super::approval::{ApprovalOutcome, Signal};
use super::evaluate::Asked;
use crate::command::{Command, CommandKind, parse_commands};
use crate::comment;
use crate::duration::HumanDuration;
use crate::forge::Actor;
use crate::forge::{Thread, unmarked};
use crate::names::{Login, Name, Principal, RequestId, Ticket};
use crate::policy::decision::{Context, Rule};
use crate::policy::{Decision, Policy, PolicySet, Problem, evaluate};
use crate::request::{AccessRequest, Reason, RequestPath};
use crate::store::JobKind;
use crate::store::{ApprovalSource, CommentKey, Effect, EventKind};
use crate::store::{RequestRecord, RequestState, RevokeReason};

/// `/breakglass status` on an issue answers for at most this many of the requests asked for
/// there (the newest).
const STATUS_LIMIT: u32 = 10;

tokio::task_local! {
    /// The replies of the comment whose commands this task is running (see
    /// [`Workflow::reply`]). Work spawned onto other tasks replies at once.
    static REPLIES: RefCell<Replies>;
}

/// The replies to one comment's commands, in command order, to be posted as one note.
#[derive(Default)]
struct Replies {
    /// The comment's thread: only replies there are gathered.
    thread: Option<Thread>,
    said: Vec<String>,
}

impl Replies {
    fn to(thread: Thread) -> Self {
        Self {
            thread: Some(thread),
            said: Vec::new(),
        }
    }

    /// Keeps `text` for the one note, if it is said on the comment's thread.
    fn gather(&mut self, thread: Thread, text: &str) -> bool {
        let here = self.thread == Some(thread);
        if here {
            self.said.push(text.to_owned());
        }
        here
    }
}

impl Workflow {
    pub(super) async fn handle_comment(
        &self,
        thread: Thread,
        comment_id: u64,
        body: &str,
        author: &Actor,
        created_at: DateTime<Utc>,
        _delivery: &str,
    ) -> anyhow::Result<()> {
        let key = self.comment_key(comment_id);
        if self.store.comment_answered(key).await? {
            // A captured payload replayed under a new delivery id: its commands were handled
            // and answered, and nothing is done or said twice.
            tracing::info!(
                comment_id,
                "a comment answered already; its webhook again is ignored"
            );
            return Ok(());
        }
        let (handled, replies) = REPLIES
            .scope(RefCell::new(Replies::to(thread)), async {
                let handled = self
                    .run_commands(thread, comment_id, body, author, created_at)
                    .await;
                (handled, REPLIES.with(|r| r.take().said))
            })
            .await;
        if !replies.is_empty() {
            // Said even when a later command failed, so that nothing gathered is lost; the
            // delivery is then handled again and may say some of it twice, never nothing.
            let said = self
                .forge
                .note(thread, &comment::replies_comment(&replies))
                .await;
            handled?;
            said?;
        } else {
            handled?;
        }
        // Until this mark, the comment handled again (after a failure, a kill, a lost note)
        // says its answers again: an approval counted the first time repeats its count.
        self.store.mark_comment_answered(key, self.now()).await?;
        Ok(())
    }

    /// A GitLab internal note that holds a command: not taken, since the bot's replies (and its
    /// request files, PRs and status answers) are public and would show what the note says.
    /// Said once, quoting nothing of it.
    pub(super) async fn refuse_internal_note(
        &self,
        thread: Thread,
        comment_id: u64,
        body: &str,
        author: &Actor,
    ) -> anyhow::Result<()> {
        if !self.holds_a_persons_command(body, author) {
            return Ok(());
        }
        let key = self.comment_key(comment_id);
        if self.store.comment_answered(key).await? {
            return Ok(());
        }
        let said = comment::internal_note_comment(&author.login);
        self.forge.note(thread, &said).await?;
        self.store.mark_comment_answered(key, self.now()).await?;
        Ok(())
    }

    /// Whether `body` holds a command written by a person (bots never command the bot, and its
    /// own comments quote commands in their help).
    fn holds_a_persons_command(&self, body: &str, author: &Actor) -> bool {
        let a_bot = author.is_bot || author.id == self.bot.id;
        !a_bot && !parse_commands(body).is_empty()
    }

    /// A comment edited to hold a command: edits are never read as commands (an edit would
    /// carry an old timestamp past a push), which is said (not again while it is the bot's
    /// latest note there), so that nobody waits on it.
    pub(super) async fn answer_edited_command(
        &self,
        thread: Thread,
        body: &str,
        author: &Actor,
    ) -> anyhow::Result<()> {
        if !self.holds_a_persons_command(body, author) {
            return Ok(());
        }
        // Edits in a row are no news each time: said again only after something else was.
        let said = comment::edited_command_comment(&author.login);
        self.note_unless_latest(thread, &said).await
    }

    /// The commands of one comment, in order. What they reply on `thread` is gathered (see
    /// [`Self::reply`]); what they say elsewhere, or as the note of an effect, is said at once.
    async fn run_commands(
        &self,
        thread: Thread,
        comment_id: u64,
        body: &str,
        author: &Actor,
        created_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let mut requested = false;
        let mut extra_requests = 0;
        let mut extended = false;
        let mut extra_extensions = 0;
        let (mut denied, mut extra_denies) = (false, 0);
        let mut malformed = Vec::new();
        let commands = parse_commands(body);
        // Bots never command the bot. A GitLab service account may have any username, and
        // only its user record says it is a bot: asked once a comment holds a command.
        if !commands.is_empty() && self.forge.is_bot(author).await? {
            tracing::info!(author = %author.login, "a bot account's commands are not taken");
            return Ok(());
        }
        let about_a_pending_request = commands.iter().flatten().any(|c| {
            matches!(
                c.kind(),
                CommandKind::Approve | CommandKind::Deny | CommandKind::Status
            )
        });
        if about_a_pending_request {
            self.decide_if_never_heard(thread).await?;
        }
        let contradicts = self.contradicts(&commands, thread, author).await?;
        for command in commands {
            match command {
                Err(err) => malformed.push(err),
                Ok(Command::Approve | Command::Deny { .. }) if contradicts => {}
                Ok(Command::Request { .. }) if requested => extra_requests += 1,
                // A comment's extension is its one effect (kept by comment id): a second one
                // would find it done and say nothing.
                Ok(Command::Extend { .. }) if extended => extra_extensions += 1,
                // Likewise a deny: a second one would close the closed request again, and
                // say so with a reason the event log does not have.
                Ok(Command::Deny { .. }) if denied => extra_denies += 1,
                Ok(command) => {
                    requested |= matches!(command, Command::Request { .. });
                    extended |= matches!(command, Command::Extend { .. });
                    denied |= matches!(command, Command::Deny { .. });
                    self.run_command(command, thread, comment_id, author, created_at)
                        .await?;
                }
            }
        }
        if contradicts {
            self.reply(thread, comment::approve_and_deny_comment())
                .await?;
        }
        if !malformed.is_empty() {
            self.reply(thread, &comment::parse_errors_comment(&malformed))
                .await?;
        }
        if extra_requests > 0 {
            // One comment opens at most one request, and says so once.
            self.reply(thread, &comment::one_request_per_comment())
                .await?;
        }
        if extra_extensions > 0 {
            self.reply(thread, comment::one_extension_per_comment())
                .await?;
        }
        if extra_denies > 0 {
            self.reply(thread, comment::one_deny_per_comment()).await?;
        }
        Ok(())
    }

    /// One command of comment `comment_id`, by its `command_<verb>`.
    async fn run_command(
        &self,
        command: Command,
        thread: Thread,
        comment_id: u64,
        author: &Actor,
        created_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        match command {
            Command::Help => self.reply(thread, &comment::help_comment()).await,
            Command::Request {
                environment,
                duration,
                role,
                reason,
            } => {
                self.command_request(
                    thread,
                    comment_id,
                    author,
                    &environment,
                    duration,
                    role.as_deref(),
                    reason.as_deref(),
                )
                .await
            }
            Command::Approve => {
                self.command_approve(thread, author, comment_id, created_at)
                    .await
            }
            Command::Deny { reason } => {
                self.command_deny(thread, comment_id, author, reason.as_deref())
                    .await
            }
            Command::Revoke => self.command_revoke(thread, author).await,
            Command::Extend { duration } => {
                self.command_extend(thread, comment_id, author, duration, created_at)
                    .await
            }
            Command::Status => self.command_status(thread).await,
            Command::Reviewed => self.command_reviewed(thread, author, created_at).await,
        }
    }

    /// Answers on the thread the command came from. Within a comment's commands the answer is
    /// gathered, and all of them go out as one note after the last command: a comment of ten
    /// commands costs one of the forge's content-creation calls, not ten (the secondary rate
    /// limit that grants and revokes need too).
    pub(super) async fn reply(&self, thread: Thread, text: &str) -> anyhow::Result<()> {
        let gathered = REPLIES
            .try_with(|r| r.borrow_mut().gather(thread, text))
            .unwrap_or(false);
        if !gathered {
            self.forge.note(thread, text).await?;
        }
        Ok(())
    }

    /// The request on `thread` if it is in one of `states`; otherwise says that `verb` does
    /// not apply here (in the request's state: which it is, and what applies instead) and
    /// gives `None`.
    async fn request_for(
        &self,
        thread: Thread,
        verb: &str,
        states: &[RequestState],
    ) -> anyhow::Result<Option<RequestRecord>> {
        let said = match self.request_on(thread).await? {
            Some(record) if states.contains(&record.state) => return Ok(Some(record)),
            // Denied by the policy: what failed, and that a push is decided again.
            Some(record) if record.state == RequestState::Denied => {
                denied_request_reply(verb, &record, self.forge.kind())
            }
            Some(record) => comment::not_in_this_state_comment(
                verb,
                record.id.as_str(),
                record.state,
                self.forge.kind(),
            ),
            None => self.no_request_here(thread, verb).await?,
        };
        self.reply(thread, &said).await?;
        Ok(None)
    }

    /// The reply to `/breakglass <verb>` on a thread that is not a request PR: on the issue (or
    /// other PR) where requests were asked for by comment, the PRs of those requests (the
    /// newest ten), where the command is given; elsewhere the general answer.
    pub(super) async fn no_request_here(
        &self,
        thread: Thread,
        verb: &str,
    ) -> anyhow::Result<String> {
        let here: Vec<comment::AskedHere> = self
            .requests_asked_on(thread)
            .await?
            .iter()
            .map(|record| self.asked_here(record))
            .collect();
        if here.is_empty() {
            return self.nothing_asked_here(thread, verb).await;
        }
        Ok(comment::on_its_request_pr_comment(
            verb,
            &here,
            self.forge.kind(),
        ))
    }

    /// The reply to `/breakglass <verb>` on a thread with no request, where none was asked
    /// for by comment either: the refusal's pointer on a refused request PR, else the
    /// general answer.
    async fn nothing_asked_here(&self, thread: Thread, verb: &str) -> anyhow::Result<String> {
        Ok(if self.refused_here(thread).await? {
            comment::request_refused_here_comment(verb, self.forge.kind())
        } else {
            comment::no_request_here_comment(verb, self.forge.kind())
        })
    }

    /// Whether the bot refused a request on PR `thread` (one read of its notes): on a PR
    /// without a request record, the refusal is why.
    async fn refused_here(&self, thread: Thread) -> anyhow::Result<bool> {
        if !matches!(thread, Thread::Change(_)) {
            return Ok(false);
        }
        let notes = self.forge.notes(thread).await?;
        Ok(notes
            .iter()
            .any(|note| note.author_id == self.bot.id && comment::is_refusal(unmarked(&note.body))))
    }

    /// How closed request `record` was closed, from its last closing event.
    pub(super) async fn closing_of(&self, record: &RequestRecord) -> anyhow::Result<ClosingEvent> {
        let events = self.store.events_for_request(&record.id).await?;
        Ok(events
            .into_iter()
            .rev()
            .find(|e| e.kind == EventKind::Close)
            .map(|e| ClosingEvent {
                by: e.actor.map(|a| a.login.to_string()),
                data: e.data,
            })
            .unwrap_or_default())
    }

    /// The request a comment on `thread` is about (its PR, or its revert PR).
    pub(super) async fn request_on(&self, thread: Thread) -> anyhow::Result<Option<RequestRecord>> {
        // An issue is never a request (on GitLab its number may equal a merge request's).
        let Thread::Change(number) = thread else {
            return Ok(None);
        };
        let repo = &self.settings.repository;
        if let Some(record) = self
            .store
            .find_request_by_pr(self.forge_kind(), repo, number)
            .await?
        {
            return Ok(Some(record));
        }
        Ok(self
            .store
            .find_request_by_revert_pr(self.forge_kind(), repo, number)
            .await?)
    }

    /// `/breakglass prod 1h [role] -- reason`: writes the request file on a branch and opens
    /// the PR, with the commenter as requester.
    #[allow(clippy::too_many_arguments)]
    async fn command_request(
        &self,
        thread: Thread,
        comment_id: u64,
        author: &Actor,
        environment: &str,
        duration: Option<HumanDuration>,
        role: Option<&str>,
        reason: Option<&str>,
    ) -> anyhow::Result<()> {
        let (_, policies) = self.load_policies().await?;
        let policy = policies.as_ref().ok().and_then(|p| p.get(environment));
        // Without a duration the policy's default applies; without a policy either, the word
        // was no environment (`/breakglass frobnicate`): a mistaken command, said as one.
        let default = policy.map(Policy::effective_default_duration);
        let Some(duration) = duration.or(default) else {
            let reply = match &policies {
                Ok(policies) => {
                    let known: Vec<String> =
                        policies.environments().map(ToString::to_string).collect();
                    comment::unknown_word_comment(environment, &known)
                }
                Err(_) => comment::policies_invalid_request_comment().to_owned(),
            };
            return self.reply(thread, &reply).await;
        };
        let role = match chosen_role(role, policy, environment, duration) {
            Ok(role) => role,
            Err(reply) => return self.reply(thread, &reply).await,
        };
        let reason_given = reason.is_some();
        let reason = match self.reason_or_thread(reason, thread) {
            Ok(reason) => reason,
            Err(reply) => return self.reply(thread, &reply).await,
        };
        let ticket = ticket_in(&reason, policy);
        let login = Login::try_from(author.login.clone()).map_err(anyhow::Error::msg)?;
        let request = AccessRequest {
            environment: Name::try_from(environment.to_owned()).map_err(anyhow::Error::msg)?,
            role: Name::try_from(role).map_err(anyhow::Error::msg)?,
            duration: Some(duration),
            reason,
            ticket,
            requester: Some(login.clone()),
        };
        // Who may ask is checked before the bot writes anything.
        let labels = match self
            .refuse_request(&policies, &request, reason_given, author, &login, thread)
            .await?
        {
            Ok(labels) => labels,
            Err(refusal) => return self.reply(thread, &refusal).await,
        };
        let Some(id) = self
            .request_id_for(comment_id, thread, &login, environment)
            .await?
        else {
            // Opened by an earlier run of this comment, whose answer may not have been said.
            return self.say_opened_again(thread, comment_id, &login).await;
        };
        self.open_comment_request(author, &request, id, thread, &labels, &login)
            .await
    }

    /// The reason of a `/breakglass` request: the one given, else the thread it was asked on;
    /// `Err` with the reply when it is not a valid reason.
    fn reason_or_thread(&self, reason: Option<&str>, thread: Thread) -> Result<Reason, String> {
        // Without `-- reason` the request still opens: the issue it was asked on is the
        // reason, and a policy that wants reason codes or a ticket says so on the PR.
        let fallback = format!(
            "requested with /breakglass on {}",
            self.forge.thread_ref(thread)
        );
        let reason = reason.map_or(fallback, plain_reason);
        Reason::try_from(reason).map_err(|err| format!("⚠️ {err}"))
    }

    /// Opens the PR of a `/breakglass` request as `id`, and says so on `thread`.
    async fn open_comment_request(
        &self,
        author: &Actor,
        request: &AccessRequest,
        id: RequestId,
        thread: Thread,
        labels: &[String],
        login: &Login,
    ) -> anyhow::Result<()> {
        let path = RequestPath {
            environment: request.environment.clone(),
            id,
        };
        self.open_bot_request(
            author,
            request,
            &request.to_yaml(),
            &path,
            thread,
            None,
            labels,
            |pr| comment::request_pr_opened_comment(login.as_str(), pr),
        )
        .await?;
        Ok(())
    }

    /// Says again on `thread` which PR comment `comment_id` opened (see `request_id_for`).
    async fn say_opened_again(
        &self,
        thread: Thread,
        comment_id: u64,
        login: &Login,
    ) -> anyhow::Result<()> {
        let comment = self.comment_key(comment_id);
        let Some(id) = self.store.comment_effect(comment, Effect::Request).await? else {
            return Ok(());
        };
        let Some(record) = self.store.get_request(&id).await? else {
            return Ok(());
        };
        let pr = self.forge.change_ref(record.pr_number);
        self.reply(
            thread,
            &comment::request_pr_opened_comment(login.as_str(), &pr),
        )
        .await
    }

    /// Whether a `/breakglass` request asked on `thread` may be opened: `Ok` with the labels its
    /// PR is to carry, or `Err` with the reply that says why not. The policy decides on the
    /// request as it will on the PR, which carries the labels of `thread` that a fast-path rule
    /// of the policy names (an open incident issue labelled `sev1`; never those of a closed
    /// thread or of a request or revert PR), and nobody keeps more than `max_open_requests`
    /// open.
    #[allow(clippy::too_many_arguments)]
    async fn refuse_request(
        &self,
        policies: &Result<PolicySet, Vec<Problem>>,
        request: &AccessRequest,
        reason_given: bool,
        author: &Actor,
        login: &Login,
        thread: Thread,
    ) -> anyhow::Result<Result<Vec<String>, String>> {
        let Ok(policies) = policies else {
            return Ok(Err(comment::policies_invalid_request_comment().into()));
        };
        let (decision, labels) = self
            .decide_with_thread_labels(policies, request, login, thread)
            .await?;
        let policy = policies.get(request.environment.as_str());
        if !decision.allowed {
            // Without a reason the name stands in for it; denied only for the code
            // (and the ticket) it lacks, the requester is asked for a reason, not told that
            // one they never wrote is wrong.
            let only_the_reason = decision
                .violations
                .iter()
                .all(|v| matches!(v.rule, Rule::ReasonCodes | Rule::TicketPattern));
            if let Some(policy) =
                policy.filter(|p| !reason_given && only_the_reason && !p.reason_codes.is_empty())
            {
                return Ok(Err(comment::reason_code_needed_comment(
                    request.environment.as_str(),
                    request
                        .duration
                        .as_ref()
                        .unwrap_or(&policy.effective_default_duration()),
                    request.role.as_str(),
                    &policy.reason_codes,
                )));
            }
            let what = format!("{}/{}", request.environment, request.role);
            return Ok(Err(comment::comment_request_denied_comment(
                &what, &decision,
            )));
        }
        if let Some(refusal) = self.role_unservable(policy, request, login)? {
            return Ok(Err(refusal));
        }
        if let Some(refusal) = self.too_many_open_requests(author, login).await? {
            return Ok(Err(refusal));
        }
        Ok(Ok(labels))
    }

    /// The policy's decision on a `/breakglass` request, and the labels its PR is to carry:
    /// those of `thread` that open a fast path (see [`Self::refuse_request`]).
    async fn decide_with_thread_labels(
        &self,
        policies: &PolicySet,
        request: &AccessRequest,
        login: &Login,
        thread: Thread,
    ) -> anyhow::Result<(Decision, Vec<String>)> {
        let policy = policies.get(request.environment.as_str());
        let requester = self.resolve_requester(policy, login).await?;
        let now = self.now();
        let decide = |labels: &[String]| {
            evaluate(
                policies,
                request,
                &Context {
                    requester: Some(&requester),
                    labels,
                    now,
                    path: None,
                },
            )
        };
        let mut decision = decide(&[]);
        let mut labels = Vec::new();
        let named = fast_path_labels(policy, None);
        // The thread's labels are read only when one of them could open a fast path that is
        // closed without: most requests cost no call for them. They count only on an open
        // issue or PR that is not itself a request or revert PR: a closed incident, or an old
        // grant PR that keeps its `sev1` label forever, opens no fast path.
        if decision.allowed
            && decision.fast_path.is_none()
            && decide(&named).fast_path.is_some()
            && self.request_on(thread).await?.is_none()
        {
            let on_thread = self.forge.labels(thread).await?;
            if on_thread.open {
                labels = fast_path_labels(policy, Some(&on_thread.labels));
                decision = decide(&labels);
            }
        }
        Ok((decision, labels))
    }

    /// The reply refusing a request whose role its provider cannot serve; `None` when it can
    /// (or the policy has no such role).
    fn role_unservable(
        &self,
        policy: Option<&Policy>,
        request: &AccessRequest,
        login: &Login,
    ) -> anyhow::Result<Option<String>> {
        let Some((policy, role)) =
            policy.and_then(|p| p.roles.get(&request.role).map(|role| (p, role)))
        else {
            return Ok(None);
        };
        let path = RequestPath {
            environment: request.environment.clone(),
            id: "unopened"
                .to_owned()
                .try_into()
                .map_err(anyhow::Error::msg)?,
        };
        let default = policy.effective_default_duration();
        let spec = super::pull_request::grant_spec(request, &path, login, default);
        Ok(self.providers.check(role, &spec).err().map(|err| {
            comment::role_unservable_comment(
                request.environment.as_str(),
                request.role.as_str(),
                &err.to_string(),
            )
        }))
    }

    /// The reply refusing a request of `author`'s who keeps `max_open_requests` open already;
    /// `None` below it.
    async fn too_many_open_requests(
        &self,
        author: &Actor,
        login: &Login,
    ) -> anyhow::Result<Option<String>> {
        let mut open = 0;
        for state in [
            RequestState::Pending,
            RequestState::Denied,
            RequestState::Approved,
        ] {
            open += self
                .own_requests(Some(state))
                .await?
                .iter()
                .filter(|r| r.requester_id == author.id)
                .count();
        }
        if open >= self.settings.max_open_requests as usize {
            return Ok(Some(comment::too_many_open_requests_comment(
                login.as_str(),
                self.settings.max_open_requests,
            )));
        }
        Ok(None)
    }

    /// Which comment `comment_id` is, for its effects.
    pub(super) fn comment_key(&self, comment_id: u64) -> CommentKey<'_> {
        CommentKey {
            forge: self.forge_kind(),
            repository: &self.settings.repository,
            comment_id,
        }
    }

    /// The id of the request that comment `comment_id` opens, reserved for the comment before
    /// anything is built: the comment's delivery handled again (killed before it was marked
    /// done, or taken over by another replica) opens that same request, never a second one.
    /// `None` when the request exists already.
    async fn request_id_for(
        &self,
        comment_id: u64,
        thread: Thread,
        login: &Login,
        environment: &str,
    ) -> anyhow::Result<Option<RequestId>> {
        let comment = self.comment_key(comment_id);
        // Each round either finds the comment's id or reserves a fresh one; it loses only to a
        // comment that reserved that very id meanwhile, and the next id skips it.
        for _ in 0..100 {
            if let Some(id) = self.store.comment_effect(comment, Effect::Request).await? {
                let opened = self.store.get_request(&id).await?.is_some();
                return Ok((!opened).then_some(id));
            }
            let id = self.fresh_request_id(login, environment).await?;
            let now = self.now();
            if self
                .store
                .add_request_effect(comment, &thread.key(), &id, now)
                .await?
            {
                return Ok(Some(id));
            }
        }
        anyhow::bail!("no request id could be reserved for comment {comment_id}")
    }

    /// `<yyyymmdd-hhmm>-<login>-<env>`, with `-2`, `-3`… when taken.
    async fn fresh_request_id(
        &self,
        login: &Login,
        environment: &str,
    ) -> anyhow::Result<RequestId> {
        let base_id = format!(
            "{}-{}-{}",
            self.now().format("%Y%m%d-%H%M"),
            id_part(login, environment),
            environment
        );
        let mut id: RequestId = base_id.clone().try_into().map_err(anyhow::Error::msg)?;
        for n in 2.. {
            if self.store.get_request(&id).await?.is_none()
                && !self.store.request_id_reserved(&id).await?
            {
                break;
            }
            id = format!("{base_id}-{n}")
                .try_into()
                .map_err(anyhow::Error::msg)?;
        }
        Ok(id)
    }

    async fn command_approve(
        &self,
        thread: Thread,
        author: &Actor,
        comment_id: u64,
        created_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let states = [RequestState::Pending, RequestState::Active];
        let Some(record) = self.request_for(thread, "approve", &states).await? else {
            return Ok(());
        };
        if record.state == RequestState::Active {
            // On an active grant, an approval is one of the extension its requester asked.
            return self
                .command_approve_extension(thread, &record, author, comment_id, created_at)
                .await;
        }
        let requester = record.requester_login.clone();
        let environment = record.environment.to_string();
        let signal = Signal {
            actor: author,
            source: ApprovalSource::Comment,
            key: format!("comment:{comment_id}"),
            at: Some(created_at),
        };
        let outcome = match self.record_approval(record, signal).await? {
            // Counted by this comment's earlier run, whose answer was not said in full (the
            // comment is not marked answered): said again.
            ApprovalOutcome::Repeated { have, need } => ApprovalOutcome::Counted { have, need },
            outcome => outcome,
        };
        self.reply_to_approval(thread, author, &requester, &environment, outcome)
            .await
    }

    async fn command_deny(
        &self,
        thread: Thread,
        comment_id: u64,
        author: &Actor,
        reason: Option<&str>,
    ) -> anyhow::Result<()> {
        // This very comment closed the request, and its delivery is handled again: the note
        // or the PR's closing failed after the close was stored. Those two are done again.
        if let Some(record) = self.request_on(thread).await?
            && record.state == RequestState::Closed
        {
            let closing = self.closing_of(&record).await?;
            if closing
                .data
                .get("comment")
                .and_then(serde_json::Value::as_u64)
                == Some(comment_id)
            {
                let said = denial_note(author, closing.as_closing(), reason);
                return self.say_closed(&record, &said).await;
            }
        }
        // Approved but its merge step not begun is still stopped: the merge job finds the
        // request closed, or loses its write of the grant time to this one.
        let Some(mut record) = self
            .request_for(
                thread,
                "deny",
                &[
                    RequestState::Pending,
                    RequestState::Denied,
                    RequestState::Approved,
                ],
            )
            .await?
        else {
            return Ok(());
        };
        // Approved and its merge step begun (the grant time is fixed, the step's last write
        // before the merge call, kept while a failed call is tried again): that call may be on
        // its way now, from another replica too, and a close cannot take it back; the merge
        // commit would land a grant's trailers for a closed request. Or merged already (the
        // merge's answer lost, its job to run again). Either way the merge stands and the grant
        // follows; `/breakglass revoke` ends it.
        if super::pull_request::merge_under_way(&record)
            || (record.state == RequestState::Approved
                && self.forge.change(record.pr_number).await?.info.merged)
        {
            let said = comment::not_in_this_state_comment(
                "deny",
                record.id.as_str(),
                record.state,
                self.forge.kind(),
            );
            return self.reply(thread, &said).await;
        }
        // The requester may withdraw; otherwise only an approver may deny.
        if author.id != record.requester_id && !self.may_end_as_approver(&record, author).await? {
            return self
                .reply(
                    thread,
                    &comment::not_allowed_comment(
                        &author.login,
                        "an approver (or the requester, to withdraw) can deny a request",
                    ),
                )
                .await;
        }
        // The requester's own deny takes the request back: said (and recorded) as that.
        let withdrawn = author.id == record.requester_id;
        let data = if withdrawn {
            serde_json::json!({ "withdrawn": true, "reason": reason, "comment": comment_id })
        } else {
            serde_json::json!({ "denied": true, "reason": reason, "comment": comment_id })
        };
        let closing = ClosingEvent {
            by: Some(author.login.clone()),
            data: data.clone(),
        };
        let said = denial_note(author, closing.as_closing(), reason);
        self.close_request(&mut record, data, Some(author)).await?;
        self.say_closed(&record, &said).await
    }

    /// After a deny is stored: its note on the PR, and the PR closed.
    async fn say_closed(&self, record: &RequestRecord, said: &str) -> anyhow::Result<()> {
        self.forge
            .note(Thread::Change(record.pr_number), said)
            .await?;
        self.forge.close_change(record.pr_number).await?;
        Ok(())
    }

    async fn command_revoke(&self, thread: Thread, author: &Actor) -> anyhow::Result<()> {
        // `Revoking` too: the comment handled again after a crash between the two writes below
        // finds the request revoking with only its expiry's job, which would keep the access
        // until the expiry.
        let states = [RequestState::Active, RequestState::Revoking];
        let Some(mut record) = self.request_for(thread, "revoke", &states).await? else {
            return Ok(());
        };
        if author.id != record.requester_id && !self.may_end_as_approver(&record, author).await? {
            return self
                .reply(
                    thread,
                    &comment::not_allowed_comment(
                        &author.login,
                        "the requester or an approver can revoke",
                    ),
                )
                .await;
        }
        if record.state == RequestState::Active {
            record.state = RequestState::Revoking;
            record.revoke_reason = Some(RevokeReason::Early);
            record.revoked_by = super::events::actor(author);
            self.store.update_request(&mut record, self.now()).await?;
        }
        // Due now, whatever was scheduled (the expiry's job, at the expiry): a revoke already
        // running is harmless to run again, the store's optimistic lock records it once.
        self.schedule(JobKind::Revoke, &record.id, self.now()).await
    }

    async fn command_status(&self, thread: Thread) -> anyhow::Result<()> {
        if let Some(record) = self.request_on(thread).await? {
            let detail = self.status_detail(&record).await?;
            let said =
                comment::status_comment(record.id.as_str(), &record.state.to_string(), &detail);
            return self.reply(thread, &said).await;
        }
        // Asked on an incident issue: the requests asked for there, each with its PR.
        let mut lines = Vec::new();
        for record in self.requests_asked_on(thread).await? {
            let detail = self.status_detail(&record).await?;
            lines.push((self.asked_here(&record), detail));
        }
        if lines.is_empty() {
            let said = self.nothing_asked_here(thread, "status").await?;
            return self.reply(thread, &said).await;
        }
        self.reply(thread, &comment::asked_here_status_comment(&lines))
            .await
    }

    /// `record`, asked for by comment on another thread, as a reply there names it.
    fn asked_here(&self, record: &RequestRecord) -> comment::AskedHere {
        comment::AskedHere {
            id: record.id.to_string(),
            pr: self.forge.thread_ref(Thread::Change(record.pr_number)),
            state: record.state.to_string(),
        }
    }

    /// The requests asked for by comment on `thread` (the newest [`STATUS_LIMIT`]), as stored.
    async fn requests_asked_on(&self, thread: Thread) -> anyhow::Result<Vec<RequestRecord>> {
        let repo = &self.settings.repository;
        let asked = self
            .store
            .requests_asked_on(self.forge_kind(), repo, &thread.key(), STATUS_LIMIT)
            .await?;
        let mut records = Vec::new();
        for id in asked {
            // An id reserved for a request never opened has no record.
            if let Some(record) = self.store.get_request(&id).await? {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// What `/breakglass status` says of `record` after its state.
    async fn status_detail(&self, record: &RequestRecord) -> anyhow::Result<String> {
        let now = self.now();
        let what = format!("{}/{}", record.environment, record.role);
        let detail = match record.state {
            RequestState::Pending => {
                // Counted as a merge counts them: each approver once, never the requester.
                let (approvers, need) = self.counted_approvers(record).await?;
                let approvers: Vec<String> = approvers.iter().map(ToString::to_string).collect();
                comment::pending_status_detail(
                    record.requester_login.as_str(),
                    &what,
                    &HumanDuration::from_secs(record.duration_secs).to_string(),
                    &approvers,
                    need,
                )
            }
            RequestState::Active | RequestState::Revoking => match record.expires_at {
                Some(at) => {
                    let approvers: Option<Vec<String>> = record
                        .approved_by
                        .as_ref()
                        .map(|all| all.iter().map(ToString::to_string).collect());
                    let by = match &record.fast_path_rule {
                        Some(rule) => comment::GrantedBy::FastPath {
                            rule: rule.as_str(),
                            reviewed: record
                                .reviewed_by
                                .as_ref()
                                .zip(record.reviewed_at)
                                .map(|(by, at)| (by.as_str(), at)),
                            due: record.review_due_at,
                        },
                        None => comment::GrantedBy::Approvers(approvers.as_deref()),
                    };
                    comment::active_status_detail(
                        record.requester_login.as_str(),
                        &what,
                        at,
                        now,
                        by,
                    )
                }
                None => "Revoking.".into(),
            },
            RequestState::Revoked => format!(
                "Revoked at {} ({}{}).",
                record.revoked_at.map(crate::clock::iso).unwrap_or_default(),
                record
                    .revoke_reason
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
                record
                    .revoked_by
                    .as_ref()
                    .map(|by| format!(", by {}", comment::code(by.login.as_str())))
                    .unwrap_or_default()
            ),
            RequestState::Approved => "Approved; merging.".into(),
            RequestState::Denied => "Denied by the policy; see the verdict above.".into(),
            RequestState::Closed => {
                let closing = self.closing_of(record).await?;
                comment::closed_status_detail(closing.as_closing())
            }
        };
        Ok(detail)
    }

    async fn command_reviewed(
        &self,
        thread: Thread,
        author: &Actor,
        created_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let Some(record) = self.request_on(thread).await? else {
            let said = self.no_request_here(thread, "reviewed").await?;
            return self.reply(thread, &said).await;
        };
        // A request PR, but nothing to review on it: said as what it is.
        let id = record.id.as_str();
        let said = if record.merge_sha.is_none() && record.state != RequestState::Revoked {
            // Not merged (yet): its state says what applies instead.
            Some(comment::not_in_this_state_comment(
                "reviewed",
                id,
                record.state,
                self.forge.kind(),
            ))
        } else if record.fast_path_rule.is_none() {
            Some(comment::not_fast_path_review_comment(id))
        } else if record.reviewed_at.is_some() {
            let reviewed = record
                .reviewed_by
                .as_ref()
                .zip(record.reviewed_at)
                .map(|(by, at)| (by.as_str(), at));
            Some(comment::already_reviewed_comment(id, reviewed))
        } else {
            None
        };
        if let Some(said) = said {
            return self.reply(thread, &said).await;
        }
        if author.id == record.requester_id {
            return self
                .reply(
                    thread,
                    &comment::self_approval_comment(record.requester_login.as_str()),
                )
                .await;
        }
        let said = match self.approver_of(&record, author).await? {
            Ok(true) => None,
            Ok(false) => Some(comment::not_allowed_comment(
                &author.login,
                "an approver can review a fast-path grant",
            )),
            Err(default_branch) => Some(comment::review_unchecked_comment(
                &author.login,
                &default_branch,
            )),
        };
        if let Some(said) = said {
            return self.reply(thread, &said).await;
        }
        // After a fast-path extension the review covers it too: a comment from before its ask
        // (delivered after it, or handled by another replica first) was of less. (It is not
        // timed against the merged head's push: a comment made before the merge is handled
        // before it, in the order of deliveries, and answered "not merged yet".)
        let asked = super::stored_decision(&record)?.review_since;
        if asked.is_some()
            && super::approval::timing(created_at, asked, false) != super::approval::Timing::Current
        {
            let said = comment::review_again_comment(&author.login, self.forge.kind());
            return self.reply(thread, &said).await;
        }
        self.mark_reviewed(record, author).await
    }

    /// Whether a comment's commands approve and deny one request by one of its approvers (as a
    /// deny checks them): both cannot be meant. (The requester's deny is a withdrawal and their approve never counts;
    /// anyone else may do neither and is told so for each: those comments are clear.)
    async fn contradicts(
        &self,
        commands: &[Result<Command, crate::command::CommandParseError>],
        thread: Thread,
        author: &Actor,
    ) -> anyhow::Result<bool> {
        let has = |kind| commands.iter().flatten().any(|c| c.kind() == kind);
        if !(has(CommandKind::Approve) && has(CommandKind::Deny)) {
            return Ok(false);
        }
        match self.request_on(thread).await? {
            Some(record) if record.requester_id != author.id => {
                self.may_end_as_approver(&record, author).await
            }
            _ => Ok(false),
        }
    }

    /// Whether `actor` may end `record` as an approver (`revoke`, `deny`): as the policy on the
    /// default branch says; while that policy cannot be read (the policies do not load, or the
    /// environment's file is gone), as the approvers its stored decision named. Ending access
    /// or a request is the safe way, and must not wait for an unrelated fix.
    async fn may_end_as_approver(
        &self,
        record: &RequestRecord,
        actor: &Actor,
    ) -> anyhow::Result<bool> {
        let (_, policies) = self.load_policies().await?;
        if let Ok(policies) = &policies
            && let Some(policy) = policies.get(record.environment.as_str())
        {
            return self.is_approver(policy, actor).await;
        }
        let Some(stored) = &record.decision else {
            return Ok(false);
        };
        let approvers: Vec<Principal> = (stored.decision.approvers.iter())
            .filter_map(|approver| Principal::try_from(approver.clone()).ok())
            .collect();
        self.is_among(&approvers, actor, Asked::WithinAMinute).await
    }

    /// Whether `actor` is an approver of the request's environment by the default branch's
    /// policy, asked of the forge now (a review closes what nobody approved: an approver taken
    /// off a team a moment ago no longer can); the branch's name when its policies do not load
    /// (nobody can be checked).
    async fn approver_of(
        &self,
        record: &RequestRecord,
        actor: &Actor,
    ) -> anyhow::Result<Result<bool, String>> {
        let (default_branch, policies) = self.load_policies().await?;
        let Ok(policies) = policies else {
            return Ok(Err(default_branch));
        };
        Ok(Ok(match policies.get(record.environment.as_str()) {
            Some(policy) => self.is_approver_now(policy, actor).await?,
            None => false,
        }))
    }
}

/// `/breakglass <verb>` on a request the policy denies: what failed, as its stored decision
/// says (nothing when it was not decided yet).
pub(super) fn denied_request_reply(
    verb: &str,
    record: &RequestRecord,
    forge: crate::store::ForgeKind,
) -> String {
    let Some(stored) = &record.decision else {
        // Stored as denied until its first verdict (a request the bot just opened for a
        // comment, or whose decision failed and is tried again): not denied yet.
        return comment::not_decided_yet_comment(verb, record.id.as_str());
    };
    let mut why = Vec::new();
    let rules: Vec<String> = stored
        .decision
        .violations
        .iter()
        .map(|v| v.rule.to_string())
        .collect();
    if !rules.is_empty() {
        why.push(comment::DeniedBecause::Rules {
            environment: record.environment.to_string(),
            rules,
        });
    }
    if !stored.scope_problems.is_empty() {
        why.push(comment::DeniedBecause::BeyondRequest);
    }
    if stored.unservable.is_some() {
        why.push(comment::DeniedBecause::Unservable);
    }
    comment::denied_request_comment(verb, record.id.as_str(), &why, forge)
}

/// The note of a deny by `author`: a withdrawal when the closing says so.
fn denial_note(author: &Actor, closing: comment::Closing<'_>, reason: Option<&str>) -> String {
    match closing {
        comment::Closing::Withdrawn { .. } => comment::withdrawn_comment(&author.login, reason),
        _ => comment::denied_by_approver_comment(&author.login, reason),
    }
}

/// A request's closing as its event log recorded it (see [`Workflow::close_request`]).
#[derive(Default)]
pub(super) struct ClosingEvent {
    pub by: Option<String>,
    pub data: serde_json::Value,
}

impl ClosingEvent {
    pub(super) fn as_closing(&self) -> comment::Closing<'_> {
        let flag =
            |key: &str| self.data.get(key).and_then(serde_json::Value::as_bool) == Some(true);
        let reason = self.data.get("reason").and_then(serde_json::Value::as_str);
        if flag("withdrawn") {
            comment::Closing::Withdrawn { reason }
        } else if flag("denied") {
            comment::Closing::Denied {
                by: self.by.as_deref(),
                reason,
            }
        } else if flag("expired") {
            comment::Closing::Expired
        } else if flag("merged_by_hand") {
            comment::Closing::MergedByHand {
                by: self.by.as_deref(),
            }
        } else {
            comment::Closing::Other {
                by: self.by.as_deref(),
            }
        }
    }
}

/// The role a `/breakglass` request asks for: the one named, else the policy's only role; a
/// policy with several wants one named (`Err`: the reply that says so). An unknown
/// environment gets `admin`, which the policy check then explains.
fn chosen_role(
    role: Option<&str>,
    policy: Option<&Policy>,
    environment: &str,
    duration: HumanDuration,
) -> Result<String, String> {
    match (role, policy) {
        (Some(role), _) => Ok(role.to_owned()),
        (None, Some(policy)) if policy.roles.len() == 1 => Ok(policy
            .roles
            .keys()
            .next()
            .map(ToString::to_string)
            .unwrap_or_default()),
        (None, Some(policy)) => {
            let roles: Vec<String> = policy.roles.keys().map(ToString::to_string).collect();
            Err(comment::name_a_role_comment(
                environment,
                &duration.to_string(),
                &roles,
            ))
        }
        (None, None) => Ok("admin".to_owned()),
    }
}

/// The labels that a fast-path rule of `policy` names (`labels_any`): of `on_thread`, those
/// labels (as the thread spells them; rules match labels in any case), or without it every
/// label named. No other label of the thread is ever copied onto a request PR.
pub(super) fn fast_path_labels(
    policy: Option<&Policy>,
    on_thread: Option<&[String]>,
) -> Vec<String> {
    let named: Vec<&String> = policy
        .map(|p| {
            p.fast_path
                .iter()
                .flat_map(|rule| &rule.labels_any)
                .collect()
        })
        .unwrap_or_default();
    let mut labels: Vec<String> = Vec::new();
    let candidates: Vec<&String> = match on_thread {
        Some(on_thread) => on_thread
            .iter()
            .filter(|have| named.iter().any(|want| have.eq_ignore_ascii_case(want)))
            .collect(),
        None => named,
    };
    for label in candidates {
        if !labels.iter().any(|l| l.eq_ignore_ascii_case(label)) {
            labels.push(label.clone());
        }
    }
    labels
}

/// A comment's reason as the request file holds it: without the invisible U+FEFF that pasting
/// from chat brings along (nor the noncharacters U+FFFE and U+FFFF), and with the line and
/// paragraph separators (U+2028, U+2029) as spaces. The file writer would escape those
/// (`"\uFEFF"`: YAML cannot print them), and a request file with escapes is refused: the bot
/// would open a PR on its own branch that the requester cannot fix.
fn plain_reason(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, '\u{FEFF}' | '\u{FFFE}' | '\u{FFFF}'))
        .map(|c| {
            if matches!(c, '\u{2028}' | '\u{2029}') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// The ticket a reason names, when the policy asks for one (`ticket_pattern`): the first word
/// of the reason that matches it, as written or without the punctuation around it (people
/// write `(INC-1234)` and end a sentence with `INC-1234.`).
fn ticket_in(reason: &Reason, policy: Option<&Policy>) -> Option<Ticket> {
    let pattern = policy?.ticket_pattern.as_deref()?;
    let re = regex::Regex::new(pattern).ok()?;
    let word = reason
        .as_str()
        .split(|c: char| c.is_whitespace() || c == ':' || c == ',')
        .flat_map(|w| [w, w.trim_matches(|c: char| c.is_ascii_punctuation())])
        .find(|w| !w.is_empty() && re.is_match(w))?;
    Ticket::try_from(word.to_owned()).ok()
}

/// The login as it goes into a request id `<yyyymmdd-hhmm>-<login>-<environment>[-n]`: lower
/// case, no two dots in a row, and cut so that the id stays within its 100 characters with
/// a long GitLab username or environment name (an id that comes out the same for two people
/// gets the next free number).
fn id_part(login: &Login, environment: &str) -> String {
    const ROOM: usize = 100 - "20261126-0214--".len() - "-999".len();
    let mut part = String::new();
    for c in login.as_str().to_lowercase().chars() {
        if !(c == '.' && part.ends_with('.')) {
            part.push(c);
        }
    }
    part.chars()
        .take(ROOM.saturating_sub(environment.len()).max(1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{chosen_role, fast_path_labels, id_part, plain_reason, ticket_in};
    use crate::duration::HumanDuration;
    use crate::names::{Login, Name, RequestId};
    use crate::policy::Policy;
    use crate::request::{AccessRequest, Reason};

    fn policy(extra: &str) -> Policy {
        crate::yaml::from_str(&format!(
            "environment: prod\nmax_duration: 4h\nrequesters: [alice]\napprovers: [carol]\nroles:\n  admin:\n    provider: noop\n{extra}"
        ))
        .expect("a policy")
    }

    fn reason(text: &str) -> Reason {
        Reason::try_from(text.to_owned()).expect("a reason")
    }

    /// A request the bot just opened is stored as denied until its first verdict: a command
    /// given before it is told that, not that the request is denied.
    #[test]
    fn a_command_before_the_first_verdict_is_not_told_the_request_is_denied() {
        let record = crate::workflow::pull_request::sample_record(
            "environment: prod\nrole: admin\nduration: 1h\nreason: incident\n",
            chrono::DateTime::UNIX_EPOCH,
        );
        assert!(record.decision.is_none());
        let said = super::denied_request_reply("approve", &record, crate::store::ForgeKind::GitHub);
        assert_eq!(
            said,
            "⏳ `/breakglass approve` came before request `r-1` was decided, so it was not taken. See the verdict once it is posted, and give it again if it applies then."
        );
    }

    /// Whatever a comment's reason holds, the file the bot writes from it reads back as the
    /// same request, or the reason is refused with a reply before anything is written.
    #[test]
    fn a_comment_reason_is_written_so_that_it_reads_back() {
        // Around every edge of what YAML may print (U+0085, U+00A0–D7FF, U+E000–FFFD, the
        // planes above), and the separators and invisible characters between.
        let candidates = (0x7Fu32..0x100)
            .chain(0x2000..0x2070)
            .chain(0xD7F0..0xD800)
            .chain(0xE000..0xE010)
            .chain(0xFDC0..0x10000)
            .chain([
                0x1F600, 0x1F4A9, 0xE0001, 0xE007F, 0xF0000, 0x10FFFD, 0x10FFFF,
            ]);
        for code in candidates {
            let Some(c) = char::from_u32(code) else {
                continue;
            };
            let text = plain_reason(&format!("incident: INC-1 {c} db down{c}"));
            let Ok(reason) = Reason::try_from(text) else {
                continue;
            };
            let request = AccessRequest {
                environment: Name::try_from("prod".to_owned()).unwrap(),
                role: Name::try_from("admin".to_owned()).unwrap(),
                duration: Some(HumanDuration::from_secs(3600)),
                reason,
                ticket: None,
                requester: None,
            };
            let read = AccessRequest::from_yaml(&request.to_yaml());
            assert_eq!(
                read.as_ref().ok(),
                Some(&request),
                "U+{code:04X}: {read:?}\n{}",
                request.to_yaml()
            );
        }
    }

    #[test]
    fn a_request_by_comment_takes_the_named_role_else_the_only_one() {
        let hour = HumanDuration::from_secs(3600);
        let one = policy("");
        assert_eq!(
            chosen_role(Some("dns"), Some(&one), "prod", hour),
            Ok("dns".into())
        );
        assert_eq!(
            chosen_role(None, Some(&one), "prod", hour),
            Ok("admin".into())
        );
        let two = policy("  readonly:\n    provider: noop\n");
        let asked = chosen_role(None, Some(&two), "prod", hour).unwrap_err();
        assert!(
            asked.contains("`/breakglass prod 1h <role> -- reason`")
                && asked.contains("with `<role>` one of `admin`, `readonly`."),
            "{asked}"
        );
        // No policy: the decision explains the unknown environment.
        assert_eq!(chosen_role(None, None, "nope", hour), Ok("admin".into()));
    }

    #[test]
    fn only_labels_a_fast_path_rule_names_are_carried_to_the_request_pr() {
        let rules = policy(
            "fast_path:\n  - name: sev1\n    labels_any: [sev1, SEV0]\n  - name: any\n    requesters: [alice]\n  - name: dr\n    labels_any: [sev0, dr-drill]\n",
        );
        let on = |labels: &[&str]| {
            let labels: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
            fast_path_labels(Some(&rules), Some(&labels))
        };
        assert_eq!(
            fast_path_labels(Some(&rules), None),
            ["sev1", "SEV0", "dr-drill"]
        );
        // As the thread spells them, once each; any other label stays behind.
        assert_eq!(
            on(&["customer-facing", "Sev1", "sev0", "breakglass/needs-review"]),
            ["Sev1", "sev0"]
        );
        assert!(on(&["approved", "sev1x"]).is_empty());
        assert!(fast_path_labels(Some(&policy("")), Some(&["sev1".to_owned()])).is_empty());
        assert!(fast_path_labels(None, Some(&["sev1".to_owned()])).is_empty());
    }

    #[test]
    fn the_ticket_is_the_first_word_of_the_reason_matching_the_policys_pattern() {
        let wants = policy("ticket_pattern: \"^(INC|CHG)-[0-9]+$\"\n");
        let found = ticket_in(&reason("incident: CHG-7,INC-77 db failover"), Some(&wants));
        assert_eq!(found.map(|t| t.to_string()), Some("CHG-7".into()));
        assert!(ticket_in(&reason("incident: db failover"), Some(&wants)).is_none());
        for written in [
            "incident: INC-1234.",
            "incident (INC-1234) db",
            "incident: INC-1234; db",
            "incident: \"INC-1234\"",
        ] {
            let found = ticket_in(&reason(written), Some(&wants));
            assert_eq!(
                found.map(|t| t.to_string()),
                Some("INC-1234".into()),
                "{written}"
            );
        }
        // Without a pattern the reason is not searched.
        assert!(ticket_in(&reason("incident: INC-77"), Some(&policy(""))).is_none());
        assert!(ticket_in(&reason("incident: INC-77"), None).is_none());
    }

    #[test]
    fn a_request_id_holds_any_login_and_environment() {
        let id = |login: &str, environment: &str| {
            let login: Login = login.parse().unwrap();
            let id = format!(
                "20261126-0214-{}-{environment}-999",
                id_part(&login, environment)
            );
            RequestId::try_from(id).map(|id| id.as_str().len())
        };
        assert_eq!(
            id("Alice", "prod"),
            Ok("20261126-0214-alice-prod-999".len())
        );
        let gitlab = format!("_{}", "a.b".repeat(80));
        assert_eq!(id(&gitlab, "prod"), Ok(100));
        assert_eq!(id(&"x".repeat(39), &"e".repeat(63)), Ok(100));
        assert_eq!(id("a..b", "prod"), Ok("20261126-0214-a.b-prod-999".len()));
    }
}
