//! The decision engine: is this request allowed by its environment's policy, who must approve
//! it, does a fast path apply, and when would it expire?
//!
//! Pure functions of their inputs (the clock and team memberships are passed in), so that every
//! rule is table-tested and the service, `breakglass check` and the CI workflow all decide alike.
//! A decision lists *every* failed rule with the value found and what would be allowed.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::PolicySet;
use super::model::{FastPathRule, Policy};
use crate::duration::HumanDuration;
use crate::names::{Login, Name, Principal, Team, shorten};
use crate::request::{AccessRequest, RequestPath};

/// The person asking, as far as the caller knows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requester {
    pub login: Login,
    /// The teams the requester belongs to, among those the policy names; `None` when
    /// memberships are not known (offline checks), in which case team rules are reported as
    /// unchecked rather than guessed.
    pub teams: Option<BTreeSet<Team>>,
}

impl Requester {
    pub fn new(login: Login, teams: Option<BTreeSet<Team>>) -> Self {
        Self { login, teams }
    }
}

/// What surrounds the request: who asks, the PR's labels, the time, and the file's path.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub requester: Option<&'a Requester>,
    pub labels: &'a [String],
    pub now: DateTime<Utc>,
    pub path: Option<&'a RequestPath>,
}

/// The policy rule a violation is about; its name is the policy key (or request field) to look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, strum::Display)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Rule {
    Environment,
    Path,
    Role,
    MaxDuration,
    Requesters,
    Requester,
    ReasonCodes,
    TicketPattern,
}

/// One failed rule: which rule, which value, what would be allowed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub rule: Rule,
    pub found: String,
    pub allowed: String,
    /// The sentence shown to people.
    pub message: String,
}

/// A fast-path rule that applies to the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FastPathMatch {
    pub rule: String,
    pub review_within: HumanDuration,
    /// When the after-the-fact review is due, if granted now.
    pub review_due_at: DateTime<Utc>,
    pub block_until_reviewed: bool,
}

/// A fast-path rule that does not apply, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FastPathMiss {
    pub rule: String,
    pub reasons: Vec<String>,
}

impl FastPathMiss {
    /// Whether the change carries a label the rule asks for (or the rule asks for none): a
    /// miss the verdict explains, since someone meant that fast path.
    pub fn labelled_for(&self) -> bool {
        !self
            .reasons
            .iter()
            .any(|r| r.starts_with("needs one of the labels"))
    }
}

/// The verdict on one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allowed: bool,
    pub environment: String,
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    /// The duration granted: the request's, or the policy default when it names none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<HumanDuration>,
    pub duration_defaulted: bool,
    /// When the grant would expire if granted now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    pub violations: Vec<Violation>,
    /// Rules that could not be checked with what the caller knows (e.g. team membership offline).
    pub unchecked: Vec<String>,
    /// How many distinct approvers must approve (0: self-service).
    pub approvals_required: u32,
    /// Who can approve (the requester never counts).
    pub approvers: Vec<String>,
    /// Reactions that count as approval.
    pub approval_reactions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fast_path: Option<FastPathMatch>,
    pub fast_path_misses: Vec<FastPathMiss>,
}

/// Membership of a requester in a list of principals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    Yes,
    No,
    /// Only a team could match, and the requester's teams are not known.
    Unknown,
}

/// Whether `who` is one of `principals`, directly or through a team.
pub fn membership(principals: &[Principal], who: &Requester) -> Membership {
    let mut unknown = false;
    for principal in principals {
        match principal {
            Principal::User(login) if login.matches(&who.login) => return Membership::Yes,
            Principal::User(_) => {}
            Principal::Team(team) => match &who.teams {
                Some(teams) if teams.iter().any(|t| same_team(t, team)) => return Membership::Yes,
                Some(_) => {}
                None => unknown = true,
            },
        }
    }
    if unknown {
        Membership::Unknown
    } else {
        Membership::No
    }
}

/// Whether `who` is one of `policy`'s requesters: the rule a request is decided by, asked
/// again when its grant is extended (a grant is extended only for someone who may ask now).
pub fn requester_membership(policy: &Policy, who: &Requester) -> Membership {
    membership(&policy.requesters, who)
}

fn same_team(a: &Team, b: &Team) -> bool {
    a.org.eq_ignore_ascii_case(&b.org) && a.slug.eq_ignore_ascii_case(&b.slug)
}

/// A grant the requester holds now in the request's environment, by the bot's own records
/// (merging, active or being revoked): a fast path holds its remaining time and the new
/// request's duration together to the rule's `max_duration`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldGrant {
    /// The request id of the grant.
    pub id: String,
    /// When it ends (moved by extensions).
    pub until: DateTime<Utc>,
}

/// Decides on `request` under `policies`, with no grants held (see [`evaluate_holding`]).
pub fn evaluate(policies: &PolicySet, request: &AccessRequest, ctx: &Context) -> Decision {
    evaluate_holding(policies, request, ctx, &[])
}

/// Decides on `request` under `policies` for a requester who holds `held` in its environment:
/// a fast path never gives more than its rule's `max_duration` in total, back to back or at
/// once (as an extension is held to), so one whose held time and this request together go
/// past it misses, and the request waits for approval.
pub fn evaluate_holding(
    policies: &PolicySet,
    request: &AccessRequest,
    ctx: &Context,
    held: &[HeldGrant],
) -> Decision {
    let mut decision = undecided(request, ctx);
    check_path(request, ctx, &mut decision.violations);
    let Some(policy) = policies.get(request.environment.as_str()) else {
        decision
            .violations
            .push(unknown_environment(policies, request));
        return decision;
    };
    decision.approvals_required = policy.approvals;
    decision.approvers = policy.approvers.iter().map(ToString::to_string).collect();
    decision.approval_reactions = policy.approval_reactions.clone();

    let duration = request.duration.unwrap_or_else(|| {
        decision.duration_defaulted = true;
        policy.effective_default_duration()
    });
    decision.duration = Some(duration);
    decision.expires_at = Some(ctx.now + duration.to_chrono());

    check_role(policy, request, &mut decision.violations);
    check_duration(policy, duration, &mut decision.violations);
    check_requester(policy, request, ctx, &mut decision);
    check_reason(policy, request, &mut decision.violations);
    check_ticket(policy, request, &mut decision.violations);

    decision.allowed = decision.violations.is_empty();
    if decision.allowed {
        choose_fast_path(policy, request, duration, ctx, held, &mut decision);
    }
    decision
}

/// The decision before any policy is read: not allowed, nothing required yet.
fn undecided(request: &AccessRequest, ctx: &Context) -> Decision {
    Decision {
        allowed: false,
        environment: request.environment.to_string(),
        role: request.role.to_string(),
        requester: ctx.requester.map(|r| r.login.to_string()),
        duration: request.duration,
        duration_defaulted: false,
        expires_at: None,
        violations: Vec::new(),
        unchecked: Vec::new(),
        approvals_required: 0,
        approvers: Vec::new(),
        approval_reactions: Vec::new(),
        fast_path: None,
        fast_path_misses: Vec::new(),
    }
}

/// A request file must sit under the directory of the environment it asks for.
fn check_path(request: &AccessRequest, ctx: &Context, violations: &mut Vec<Violation>) {
    let Some(path) = ctx.path else {
        return;
    };
    if path.environment == request.environment {
        return;
    }
    violations.push(Violation {
        rule: Rule::Path,
        found: path.to_repo_path(),
        allowed: format!("requests/{}/", request.environment),
        message: format!(
            "the file is under `requests/{}/` but asks for environment `{}`; move it to `requests/{}/{}.yaml`",
            path.environment, request.environment, request.environment, path.id
        ),
    });
}

/// The violation of a request for an environment that no policy of `policies` names.
fn unknown_environment(policies: &PolicySet, request: &AccessRequest) -> Violation {
    let known: Vec<String> = policies.environments().map(ToString::to_string).collect();
    Violation {
        rule: Rule::Environment,
        found: request.environment.to_string(),
        allowed: known.join(", "),
        message: format!(
            "environment `{}` has no policy; known environments: {}",
            request.environment,
            list_or_none(&known)
        ),
    }
}

/// The first fast-path rule of `policy` that applies to the allowed `request`, into
/// `decision.fast_path`; each rule tried before it, with why it missed, into
/// `decision.fast_path_misses`.
fn choose_fast_path(
    policy: &Policy,
    request: &AccessRequest,
    duration: HumanDuration,
    ctx: &Context,
    held: &[HeldGrant],
    decision: &mut Decision,
) {
    for rule in &policy.fast_path {
        let mut reasons = fast_path_misses(rule, policy, &request.role, duration, ctx);
        reasons.extend(held_past_the_rule(rule, policy, duration, ctx, held));
        match reasons {
            reasons if reasons.is_empty() => {
                decision.fast_path = Some(FastPathMatch {
                    rule: rule.name.to_string(),
                    review_within: rule.review_within,
                    review_due_at: ctx.now + rule.review_within.to_chrono(),
                    block_until_reviewed: rule.block_until_reviewed,
                });
                break;
            }
            reasons => decision.fast_path_misses.push(FastPathMiss {
                rule: rule.name.to_string(),
                reasons,
            }),
        }
    }
}

fn check_role(policy: &Policy, request: &AccessRequest, violations: &mut Vec<Violation>) {
    if policy.roles.contains_key(&request.role) {
        return;
    }
    let roles: Vec<String> = policy.roles.keys().map(ToString::to_string).collect();
    violations.push(Violation {
        rule: Rule::Role,
        found: request.role.to_string(),
        allowed: roles.join(", "),
        message: format!(
            "role `{}` is not a role of environment `{}`; ask for one of: {}",
            request.role,
            policy.environment,
            list_or_none(&roles)
        ),
    });
}

fn check_duration(policy: &Policy, duration: HumanDuration, violations: &mut Vec<Violation>) {
    if duration <= policy.max_duration {
        return;
    }
    violations.push(Violation {
        rule: Rule::MaxDuration,
        found: duration.to_string(),
        allowed: format!("at most {}", policy.max_duration),
        message: format!(
            "duration {duration} is above the max_duration of `{}` ({}); ask for {} or less",
            policy.environment, policy.max_duration, policy.max_duration
        ),
    });
}

fn check_requester(
    policy: &Policy,
    request: &AccessRequest,
    ctx: &Context,
    decision: &mut Decision,
) {
    let Some(requester) = ctx.requester else {
        decision
            .unchecked
            .push("requesters: no requester known, so who may ask was not checked".into());
        return;
    };
    if let Some(declared) = &request.requester
        && !declared.matches(&requester.login)
    {
        decision.violations.push(Violation {
            rule: Rule::Requester,
            found: declared.to_string(),
            allowed: requester.login.to_string(),
            message: format!(
                "the file names requester `{declared}` but the request comes from `{}`; a request can only be made for yourself",
                requester.login
            ),
        });
    }
    let allowed: Vec<String> = policy.requesters.iter().map(ToString::to_string).collect();
    match requester_membership(policy, requester) {
        Membership::Yes => {}
        Membership::Unknown => decision.unchecked.push(format!(
            "requesters: `{}` is not listed by name; membership in {} was not checked",
            requester.login,
            teams_of(&policy.requesters).join(", ")
        )),
        Membership::No => decision.violations.push(Violation {
            rule: Rule::Requesters,
            found: requester.login.to_string(),
            allowed: allowed.join(", "),
            message: format!(
                "`{}` may not request access to `{}`; requesters are: {}",
                requester.login,
                policy.environment,
                list_or_none(&allowed)
            ),
        }),
    }
}

fn check_reason(policy: &Policy, request: &AccessRequest, violations: &mut Vec<Violation>) {
    if policy.reason_codes.is_empty()
        || reason_code(&policy.reason_codes, request.reason.as_str()).is_some()
    {
        return;
    }
    let codes = policy.reason_codes.join(", ");
    violations.push(Violation {
        rule: Rule::ReasonCodes,
        found: shorten(request.reason.as_str()),
        allowed: codes.clone(),
        message: format!(
            "reason `{}` does not start with a reason code; start it with one of: {codes} (e.g. `{}: {}`)",
            shorten(request.reason.as_str()),
            policy.reason_codes[0],
            shorten(request.reason.as_str())
        ),
    });
}

/// The reason code a reason starts with: the code, then a non-alphanumeric character or the end
/// (`incident: db down`, `incident INC-1`, `Incident`), case-insensitively.
pub fn reason_code<'a>(codes: &'a [String], reason: &str) -> Option<&'a str> {
    codes.iter().map(String::as_str).find(|code| {
        let Some(head) = reason.get(..code.len()) else {
            return false;
        };
        head.eq_ignore_ascii_case(code)
            && reason[code.len()..]
                .chars()
                .next()
                .is_none_or(|c| !c.is_alphanumeric())
    })
}

fn check_ticket(policy: &Policy, request: &AccessRequest, violations: &mut Vec<Violation>) {
    let Some(pattern) = &policy.ticket_pattern else {
        return;
    };
    let violation = |found: String, message: String| Violation {
        rule: Rule::TicketPattern,
        found,
        allowed: pattern.clone(),
        message,
    };
    let Ok(re) = Regex::new(pattern) else {
        // Lint refuses such a policy; should one get here anyway, fail closed.
        violations.push(violation(
            String::new(),
            format!(
                "the policy's ticket_pattern `{pattern}` is invalid, so no ticket can be accepted"
            ),
        ));
        return;
    };
    match &request.ticket {
        None => violations.push(violation(
            String::new(),
            format!(
                "`{}` requires a ticket matching `{pattern}`; add e.g. `ticket: INC-1234` to the request file (in a `/breakglass` comment, name the ticket in the reason after `--`)",
                policy.environment
            ),
        )),
        Some(ticket) if !re.is_match(ticket.as_str()) => violations.push(violation(
            ticket.to_string(),
            format!(
                "ticket `{ticket}` does not match the ticket_pattern `{pattern}` of `{}`",
                policy.environment
            ),
        )),
        Some(_) => {}
    }
}

/// Why `rule` does not let a request for `role` of `duration` skip approval (empty: it does).
/// Also asked again when a fast-path grant is extended: the rule must still apply.
pub fn fast_path_misses(
    rule: &FastPathRule,
    policy: &Policy,
    role: &Name,
    duration: HumanDuration,
    ctx: &Context,
) -> Vec<String> {
    let mut reasons = Vec::new();
    if !rule.labels_any.is_empty()
        && !rule.labels_any.iter().any(|want| {
            ctx.labels
                .iter()
                .any(|have| have.eq_ignore_ascii_case(want))
        })
    {
        reasons.push(format!(
            "needs one of the labels {}",
            rule.labels_any.join(", ")
        ));
    }
    if !rule.requesters.is_empty() {
        match ctx.requester.map(|r| (r, membership(&rule.requesters, r))) {
            Some((_, Membership::Yes)) => {}
            Some((who, Membership::No)) => reasons.push(format!(
                "`{}` is not one of {}",
                who.login,
                rule.requesters
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Some((_, Membership::Unknown)) | None => reasons.push(format!(
                "membership in {} could not be checked",
                rule.requesters
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
    if !rule.roles.is_empty() && !rule.roles.contains(role) {
        reasons.push(format!(
            "only for roles {}",
            rule.roles
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let rule_max = rule.max_duration.unwrap_or(policy.max_duration);
    if duration > rule_max {
        reasons.push(format!("{duration} is above its max_duration {rule_max}"));
    }
    reasons
}

/// Why `held` and a new grant of `duration` together go past `rule`'s `max_duration` (the
/// remaining time of each held grant, from `ctx.now`, plus `duration`); `None` when they do not.
pub fn held_past_the_rule(
    rule: &FastPathRule,
    policy: &Policy,
    duration: HumanDuration,
    ctx: &Context,
    held: &[HeldGrant],
) -> Option<String> {
    let remaining: Vec<(&HeldGrant, u64)> = held
        .iter()
        .map(|grant| {
            let left = (grant.until - ctx.now).num_seconds().max(0);
            (grant, u64::try_from(left).unwrap_or(0))
        })
        .filter(|(_, left)| *left > 0)
        .collect();
    if remaining.is_empty() {
        return None;
    }
    let rule_max = rule.max_duration.unwrap_or(policy.max_duration);
    let held_secs = remaining
        .iter()
        .fold(0u64, |sum, (_, left)| sum.saturating_add(*left));
    let total = held_secs.saturating_add(duration.as_secs());
    if total <= rule_max.as_secs() {
        return None;
    }
    let grants = remaining
        .iter()
        .map(|(grant, left)| format!("`{}` ({} left)", grant.id, HumanDuration::from_secs(*left)))
        .collect::<Vec<_>>()
        .join(", ");
    let who = ctx
        .requester
        .map_or_else(|| "the requester".to_owned(), |r| format!("`{}`", r.login));
    Some(format!(
        "{who} already holds `{}` access: {grants}; with this {duration} that is {} in total, above its max_duration {rule_max}",
        policy.environment,
        HumanDuration::from_secs(total)
    ))
}

fn teams_of(principals: &[Principal]) -> Vec<String> {
    principals
        .iter()
        .filter(|p| matches!(p, Principal::Team(_)))
        .map(ToString::to_string)
        .collect()
}

/// `items` as code spans (`@acme/sre`, `alice`): quoted as written, and a team or a person
/// named in a denial is never pinged by it.
fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
        quoted.join(", ")
    }
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
