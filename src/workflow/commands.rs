//! `/breakglass …` comments: one `command_<verb>` per command. Permissions are checked first in
//! every handler, by numeric user id, failing closed.

use chrono::{DateTime, Utc};

use super::Workflow;
use super::approval::Signal;
use crate::command::{Command, parse_commands};
use crate::comment;
use crate::duration::HumanDuration;
use crate::forge::Actor;
use crate::forge::Thread;
use crate::names::{Login, Name, RequestId, Ticket};
use crate::policy::decision::Context;
use crate::policy::{Policy, PolicySet, Problem, evaluate};
use crate::request::{AccessRequest, Reason, RequestPath};
use crate::store::JobKind;
use crate::store::{ApprovalSource, CommentKey, Effect};
use crate::store::{RequestRecord, RequestState, RevokeReason};

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
        let mut requested = false;
        let mut extra_requests = 0;
        for command in parse_commands(body) {
            let command = match command {
                Ok(command) => command,
                Err(err) => {
                    self.forge
                        .note(thread, &comment::parse_error_comment(&err))
                        .await?;
                    continue;
                }
            };
            match command {
                Command::Help => self.reply(thread, &comment::help_comment()).await?,
                Command::Request { .. } if requested => extra_requests += 1,
                Command::Request {
                    environment,
                    duration,
                    role,
                    reason,
                } => {
                    requested = true;
                    self.command_request(
                        thread,
                        comment_id,
                        author,
                        &environment,
                        duration,
                        role.as_deref(),
                        reason.as_deref(),
                    )
                    .await?
                }
                Command::Approve => {
                    self.command_approve(thread, author, comment_id, created_at)
                        .await?
                }
                Command::Deny { reason } => {
                    self.command_deny(thread, author, reason.as_deref()).await?
                }
                Command::Revoke => self.command_revoke(thread, author).await?,
                Command::Extend { duration } => {
                    self.command_extend(thread, comment_id, author, duration, created_at)
                        .await?
                }
                Command::Status => self.command_status(thread).await?,
                Command::Reviewed => self.command_reviewed(thread, author).await?,
            }
        }
        if extra_requests > 0 {
            // One comment opens at most one request, and says so once.
            self.reply(thread, comment::one_request_per_comment())
                .await?;
        }
        Ok(())
    }

    /// Answers on the thread the command came from.
    pub(super) async fn reply(&self, thread: Thread, text: &str) -> anyhow::Result<()> {
        self.forge.note(thread, text).await?;
        Ok(())
    }

    /// The request on `thread` if it is in one of `states`; otherwise says that `verb` does
    /// not apply here and gives `None`.
    async fn request_for(
        &self,
        thread: Thread,
        verb: &str,
        states: &[RequestState],
    ) -> anyhow::Result<Option<RequestRecord>> {
        match self.request_on(thread).await? {
            Some(record) if states.contains(&record.state) => Ok(Some(record)),
            _ => {
                self.reply(thread, &comment::no_request_here_comment(verb))
                    .await?;
                Ok(None)
            }
        }
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
        duration: HumanDuration,
        role: Option<&str>,
        reason: Option<&str>,
    ) -> anyhow::Result<()> {
        // Without `-- reason` the request still opens: the issue it was asked on is the
        // reason, and a policy that wants reason codes or a ticket says so on the PR.
        let fallback = format!(
            "requested with /breakglass on {}",
            self.forge.thread_ref(thread)
        );
        let reason = reason.unwrap_or(&fallback);
        let reason = match Reason::try_from(reason.to_owned()) {
            Ok(reason) => reason,
            Err(err) => {
                return self.reply(thread, &format!("⚠️ {err}")).await;
            }
        };
        let (_, policies) = self.load_policies().await?;
        let policy = policies.as_ref().ok().and_then(|p| p.get(environment));
        let role = match chosen_role(role, policy, environment, duration) {
            Ok(role) => role,
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
        if let Some(refusal) = self
            .refuse_request(&policies, &request, author, &login)
            .await?
        {
            return self.reply(thread, &refusal).await;
        }
        let Some(id) = self.request_id_for(comment_id, &login, environment).await? else {
            return Ok(()); // opened by an earlier run of this comment's delivery
        };
        let path = RequestPath {
            environment: request.environment.clone(),
            id: id.clone(),
        };
        self.open_bot_request(
            author,
            &request,
            &request.to_yaml(),
            &path,
            thread,
            None,
            |pr| comment::request_pr_opened_comment(login.as_str(), pr),
        )
        .await?;
        Ok(())
    }

    /// Why a `/breakglass` request must not be opened, as a reply; `None` when it may. The
    /// policy decides on the request as it would on the PR (labels aside, which a comment has
    /// none of), and nobody keeps more than `max_open_requests` open.
    async fn refuse_request(
        &self,
        policies: &Result<PolicySet, Vec<Problem>>,
        request: &AccessRequest,
        author: &Actor,
        login: &Login,
    ) -> anyhow::Result<Option<String>> {
        let Ok(policies) = policies else {
            return Ok(Some(
                "⚠️ The policies on the default branch are invalid, so no request can be opened."
                    .into(),
            ));
        };
        let policy = policies.get(request.environment.as_str());
        let requester = self.resolve_requester(policy, login).await?;
        let decision = evaluate(
            policies,
            request,
            &Context {
                requester: Some(&requester),
                labels: &[],
                now: self.now(),
                path: None,
            },
        );
        if !decision.allowed {
            let what = format!("{}/{}", request.environment, request.role);
            return Ok(Some(comment::decision_comment(&what, &decision)));
        }
        if let Some(role) = policy.and_then(|p| p.roles.get(&request.role)) {
            let path = RequestPath {
                environment: request.environment.clone(),
                id: "unopened"
                    .to_owned()
                    .try_into()
                    .map_err(anyhow::Error::msg)?,
            };
            let spec = super::pull_request::grant_spec(request, &path, login);
            if let Err(err) = self.providers.check(role, &spec) {
                return Ok(Some(comment::role_unservable_comment(
                    request.environment.as_str(),
                    request.role.as_str(),
                    &err.to_string(),
                )));
            }
        }
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
                .add_comment_effect(comment, Effect::Request, &id, now)
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
        let Some(record) = self
            .request_for(thread, "approve", &[RequestState::Pending])
            .await?
        else {
            return Ok(());
        };
        let requester = record.requester_login.clone();
        let environment = record.environment.to_string();
        let signal = Signal {
            actor: author,
            source: ApprovalSource::Comment,
            key: format!("comment:{comment_id}"),
            at: Some(created_at),
        };
        let outcome = self.record_approval(record, signal).await?;
        self.reply_to_approval(thread, author, &requester, &environment, outcome)
            .await
    }

    async fn command_deny(
        &self,
        thread: Thread,
        author: &Actor,
        reason: Option<&str>,
    ) -> anyhow::Result<()> {
        let Some(mut record) = self
            .request_for(
                thread,
                "deny",
                &[RequestState::Pending, RequestState::Denied],
            )
            .await?
        else {
            return Ok(());
        };
        // The requester may withdraw; otherwise only an approver may deny.
        if author.id != record.requester_id && !self.approver_of(&record, author).await? {
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
        self.close_request(
            &mut record,
            serde_json::json!({ "denied": true, "reason": reason }),
            Some(author),
        )
        .await?;
        self.forge
            .note(
                Thread::Change(record.pr_number),
                &comment::denied_by_approver_comment(&author.login, reason),
            )
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
        if author.id != record.requester_id && !self.approver_of(&record, author).await? {
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
            self.store.update_request(&mut record, self.now()).await?;
        }
        // Due now, whatever was scheduled (the expiry's job, at the expiry): a revoke already
        // running is harmless to run again, the store's optimistic lock records it once.
        self.schedule(JobKind::Revoke, &record.id, self.now()).await
    }

    async fn command_status(&self, thread: Thread) -> anyhow::Result<()> {
        let Some(record) = self.request_on(thread).await? else {
            return self
                .reply(thread, &comment::no_request_here_comment("status"))
                .await;
        };
        let now = self.now();
        let detail = match record.state {
            RequestState::Pending => {
                // Counted as a merge counts them: each approver once, never the requester.
                let (approvers, need) = self.counted_approvers(&record).await?;
                format!("Waiting for approval: {} of {need}.", approvers.len())
            }
            RequestState::Active | RequestState::Revoking => match record.expires_at {
                Some(at) => format!(
                    "@{} has `{}/{}` until {} ({}).",
                    record.requester_login,
                    record.environment,
                    record.role,
                    crate::clock::iso(at),
                    crate::clock::relative(now, at)
                ),
                None => "Revoking.".into(),
            },
            RequestState::Revoked => format!(
                "Revoked at {} ({}).",
                record.revoked_at.map(crate::clock::iso).unwrap_or_default(),
                record
                    .revoke_reason
                    .map(|r| r.to_string())
                    .unwrap_or_default()
            ),
            RequestState::Approved => "Approved; merging.".into(),
            RequestState::Denied => "Denied by the policy; see the verdict above.".into(),
            RequestState::Closed => "Closed.".into(),
        };
        self.forge
            .note(
                thread,
                &comment::status_comment(record.id.as_str(), &record.state.to_string(), &detail),
            )
            .await?;
        Ok(())
    }

    async fn command_reviewed(&self, thread: Thread, author: &Actor) -> anyhow::Result<()> {
        let Some(record) = self.request_on(thread).await? else {
            return self
                .reply(thread, &comment::no_request_here_comment("reviewed"))
                .await;
        };
        if record.fast_path_rule.is_none()
            || record.reviewed_at.is_some()
            || record.merge_sha.is_none() && record.state != RequestState::Revoked
        {
            return self
                .reply(thread, &comment::no_request_here_comment("reviewed"))
                .await;
        }
        if author.id == record.requester_id {
            return self
                .reply(
                    thread,
                    &comment::self_approval_comment(record.requester_login.as_str()),
                )
                .await;
        }
        if !self.approver_of(&record, author).await? {
            return self
                .reply(
                    thread,
                    &comment::not_allowed_comment(
                        &author.login,
                        "an approver can review a fast-path grant",
                    ),
                )
                .await;
        }
        self.mark_reviewed(record, author).await
    }

    /// Whether `actor` is an approver of the request's environment (by the default branch's policy).
    async fn approver_of(&self, record: &RequestRecord, actor: &Actor) -> anyhow::Result<bool> {
        let (_, policies) = self.load_policies().await?;
        let Ok(policies) = policies else {
            return Ok(false);
        };
        match policies.get(record.environment.as_str()) {
            Some(policy) => self.is_approver(policy, actor).await,
            None => Ok(false),
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
            Err(format!(
                "⚠️ `{environment}` has several roles; name one: `/breakglass {environment} {duration} <role> -- reason` with <role> one of {}",
                roles.join(", ")
            ))
        }
        (None, None) => Ok("admin".to_owned()),
    }
}

/// The ticket a reason names, when the policy asks for one (`ticket_pattern`): the first word
/// of the reason that matches it.
fn ticket_in(reason: &Reason, policy: Option<&Policy>) -> Option<Ticket> {
    let pattern = policy?.ticket_pattern.as_deref()?;
    let re = regex::Regex::new(pattern).ok()?;
    let word = reason
        .as_str()
        .split(|c: char| c.is_whitespace() || c == ':' || c == ',')
        .find(|w| re.is_match(w))?;
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
    use super::{chosen_role, id_part, ticket_in};
    use crate::duration::HumanDuration;
    use crate::names::{Login, RequestId};
    use crate::policy::Policy;
    use crate::request::Reason;

    fn policy(extra: &str) -> Policy {
        crate::yaml::from_str(&format!(
            "environment: prod\nmax_duration: 4h\nrequesters: [alice]\napprovers: [carol]\nroles:\n  admin:\n    provider: noop\n{extra}"
        ))
        .expect("a policy")
    }

    fn reason(text: &str) -> Reason {
        Reason::try_from(text.to_owned()).expect("a reason")
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
                && asked.contains("admin, readonly"),
            "{asked}"
        );
        // No policy: the decision explains the unknown environment.
        assert_eq!(chosen_role(None, None, "nope", hour), Ok("admin".into()));
    }

    #[test]
    fn the_ticket_is_the_first_word_of_the_reason_matching_the_policys_pattern() {
        let wants = policy("ticket_pattern: \"^(INC|CHG)-[0-9]+$\"\n");
        let found = ticket_in(&reason("incident: CHG-7,INC-77 db failover"), Some(&wants));
        assert_eq!(found.map(|t| t.to_string()), Some("CHG-7".into()));
        assert!(ticket_in(&reason("incident: db failover"), Some(&wants)).is_none());
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
