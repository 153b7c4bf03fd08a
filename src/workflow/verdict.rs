//! The pure half of deciding a request PR: from what the bot read about it ([`Inputs`]) to
//! everything it then does ([`Verdict`]). No forge, no store, no clock and no `async`, so
//! that every branch of the decision is a unit test here; gathering the inputs
//! (`Workflow::gather`) and applying the verdict (`Workflow::apply_verdict`) are the small
//! steps around it.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::comment;
use crate::forge::{ChangedFile, FileChange, PullRequestInfo, StatusState};
use crate::grant::RenderedFile;
use crate::names::{Login, RequestId};
use crate::policy::decision::{Context, FastPathMiss, HeldGrant, evaluate_holding};
use crate::policy::{Decision, PolicySet, Requester};
use crate::request::{AccessRequest, RequestPath};
use crate::store::{ForgeKind, RequestRecord, RequestState, StoredDecision};

/// Everything the decision on a request PR depends on, as read from the forge and the store.
#[derive(Clone, Debug)]
pub(super) struct Inputs {
    /// The forge the verdict is said on (its words for a change, its emoji names).
    pub forge: ForgeKind,
    /// The PR as it is now (labels, head, draft, author).
    pub pr: PullRequestInfo,
    /// The bot's account: grant files on its own branches are taken as they are.
    pub bot_id: u64,
    /// The request as recorded before this decision, if it was.
    pub existing: Option<RequestRecord>,
    /// The push an event announced (head and the forge's time of it), when one did.
    pub pushed: Option<(String, DateTime<Utc>)>,
    /// Every file the PR changes.
    pub files: Vec<ChangedFile>,
    /// The PR's one request file: its repo path, its text at the head, and both parsed.
    pub file_path: String,
    pub text: String,
    pub path: RequestPath,
    pub request: AccessRequest,
    /// The policies of the default branch (never the PR's own).
    pub policies: PolicySet,
    /// The requester with the teams the policy names resolved.
    pub requester: Requester,
    /// The requester's forge id: the person the record and approvals are about.
    pub requester_id: u64,
    pub now: DateTime<Utc>,
    /// A fast-path grant of the requester's whose review is overdue; looked up only when
    /// [`Needs::overdue_review`].
    pub overdue_review: Option<RequestId>,
    /// The requester's other grants in the request's environment (merging, active or being
    /// revoked, by the bot's records): a fast path holds them and this request together to its
    /// `max_duration`. Looked up only when [`Needs::held`].
    pub held: Vec<HeldGrant>,
    /// What the role's provider says, when the policy defines the role and [`Needs::grant`].
    pub grant: Option<GrantFacts>,
}

/// What the decision needs read beyond the request, the policies and the requester's teams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Needs {
    /// Whether the requester's overdue reviews matter: a fast path that blocks until reviewed
    /// applies. (The lookup reads every past grant, so it is not made for every request.)
    pub overdue_review: bool,
    /// Whether the requester's current grants matter: a fast path applies (without them).
    pub held: bool,
    /// Whether the provider's check and the grant files matter: the policy allows the request.
    /// A denied request reads none of them (the head's copies are forge calls).
    pub grant: bool,
}

/// What [`decide`] will need read, from the engine's verdict on what is known so far (a pure,
/// cheap call that `decide` makes again).
pub(super) fn needs(
    policies: &PolicySet,
    request: &AccessRequest,
    requester: &Requester,
    labels: &[String],
    now: DateTime<Utc>,
    path: &RequestPath,
) -> Needs {
    let decision = judge(policies, request, requester, labels, now, path, &[]);
    Needs {
        overdue_review: decision
            .fast_path
            .as_ref()
            .is_some_and(|fast| fast.block_until_reviewed),
        held: decision.fast_path.is_some(),
        grant: decision.allowed,
    }
}

/// The policy engine's decision on the request, before the workflow's own checks.
fn judge(
    policies: &PolicySet,
    request: &AccessRequest,
    requester: &Requester,
    labels: &[String],
    now: DateTime<Utc>,
    path: &RequestPath,
    held: &[HeldGrant],
) -> Decision {
    evaluate_holding(
        policies,
        request,
        &Context {
            requester: Some(requester),
            labels,
            now,
            path: Some(path),
        },
        held,
    )
}

/// The role's provider on this request: can it serve it, and which files it renders.
#[derive(Clone, Debug, Default)]
pub(super) struct GrantFacts {
    /// Why the provider cannot grant the role (not configured, principal unresolved, a
    /// template that fails); `None` when it can.
    pub unservable: Option<String>,
    /// The grant files it renders (only when it can serve the role), each with the PR head's
    /// copy of that path, up to the first copy that differs.
    pub staged: Vec<Staged>,
}

/// A grant file as the bot renders it, and as the PR head holds it.
#[derive(Clone, Debug)]
pub(super) struct Staged {
    pub rendered: RenderedFile,
    /// The head's text at `rendered.path`, `None` when the head has no such file.
    pub at_head: Option<String>,
}

/// What the handler does with a request PR.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // one short-lived value per evaluation
pub(super) enum Verdict {
    /// The role needs grant files that the PR does not hold as the bot renders them, and the
    /// bot writes only to its own branches: it opens the same request there and closes this PR.
    Reopen,
    /// Record the decision and act on it.
    Record(Decided),
}

/// A decision to record, and what follows from it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Decided {
    /// What is stored as the request's decision.
    pub stored: StoredDecision,
    /// `Pending` when allowed (policy, scope and provider), else `Denied`.
    pub state: RequestState,
    /// The `breakglass/policy` status and its description.
    pub status: (StatusState, String),
    /// The verdict comment; `None` when the last one on this head said the same.
    pub comment: Option<String>,
    pub next: Next,
}

impl Decided {
    /// Whether the request may go on to approval (or merge).
    pub fn allowed(&self) -> bool {
        self.state == RequestState::Pending
    }
}

/// What the request waits for after the decision is recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Nothing: denied, or a draft. No more polling.
    Stop,
    /// The merge of this head was refused: only a push or a new approval moves it again, so
    /// it is polled when it needs approvals and otherwise left alone.
    AfterRefusedMerge,
    /// The fast-path rule of that name merges it now.
    FastPath(String),
    /// No approval needed (`approvals: 0`): merged now.
    SelfService,
    /// Approvals are needed: poll, and count those already given.
    Approvals,
}

/// Decides a request PR from its inputs.
pub(super) fn decide(inputs: &Inputs) -> Verdict {
    let pr = &inputs.pr;
    let mut decision = judge(
        &inputs.policies,
        &inputs.request,
        &inputs.requester,
        &pr.labels,
        inputs.now,
        &inputs.path,
        &inputs.held,
    );
    block_if_review_overdue(
        &mut decision,
        &inputs.requester.login,
        inputs.overdue_review.as_ref(),
    );
    // A role the bot could not serve is denied now, never merged and then stuck.
    let unservable = inputs
        .grant
        .as_ref()
        .filter(|_| decision.allowed)
        .and_then(|grant| grant.unservable.clone());
    let Some(allowed_paths) = allowed_paths(inputs, decision.allowed && unservable.is_none())
    else {
        return Verdict::Reopen;
    };
    // Files the PR changes beyond its request file and the grant files the bot rendered.
    let beyond_request = beyond(&inputs.files, &allowed_paths);
    let allowed = decision.allowed && beyond_request.is_empty() && unservable.is_none();
    let existing = inputs.existing.as_ref();
    let same_head = existing.is_some_and(|r| r.head_sha == pr.head_sha);
    let old = existing.and_then(|r| r.decision.as_ref());
    let (head_since, head_since_is_bound) = head_since(old, same_head, inputs.pushed.as_ref(), pr);
    let stored = StoredDecision {
        decision,
        head_since,
        head_since_is_bound,
        scope_problems: beyond_request,
        merge_refused: old
            .filter(|_| same_head)
            .and_then(|o| o.merge_refused.clone()),
        draft: pr.draft,
        unservable,
        labels: pr.labels.clone(),
        review_since: None,
        extension_hold: None,
        stamp: old.filter(|_| same_head).and_then(|o| o.stamp.clone()),
    };
    let unchanged = same_head && old.is_some_and(|old| same_verdict(old, &stored));
    let id = existing.map_or(&inputs.path.id, |r| &r.id);
    let comment = (!unchanged).then(|| verdict_comment(id, inputs, &stored));
    Verdict::Record(Decided {
        status: verdict_status(&stored, allowed),
        next: next(&stored, allowed),
        state: if allowed {
            RequestState::Pending
        } else {
            RequestState::Denied
        },
        comment,
        stored,
    })
}

/// `block_until_reviewed`: someone with an overdue fast-path review waits for approval.
fn block_if_review_overdue(decision: &mut Decision, login: &Login, overdue: Option<&RequestId>) {
    let Some(overdue) = overdue else {
        return;
    };
    if let Some(fast) = decision.fast_path.take_if(|fast| fast.block_until_reviewed) {
        decision.fast_path_misses.push(FastPathMiss {
            rule: fast.rule,
            reasons: vec![format!(
                "`{login}` has an overdue review of `{overdue}` (block_until_reviewed)"
            )],
        });
    }
}

/// The paths the bot may merge: the request file, and the grant files it rendered when the
/// request is `servable` (allowed, and its role can be granted) and the head holds them as
/// rendered. `None` when the bot must write them itself (see [`Verdict::Reopen`]).
fn allowed_paths(inputs: &Inputs, servable: bool) -> Option<BTreeSet<String>> {
    let mut paths = BTreeSet::from([inputs.file_path.clone()]);
    let staged = match &inputs.grant {
        Some(grant) if servable => grant.staged.as_slice(),
        _ => &[],
    };
    for file in staged {
        if file.at_head.as_deref() != Some(file.rendered.content.as_str()) {
            if inputs.pr.author.id != inputs.bot_id {
                return None;
            }
            // A bot branch rendered with an older policy: not merged as it is.
            break;
        }
        paths.insert(file.rendered.path.clone());
    }
    Some(paths)
}

/// The files (old and new names of renames) that the PR changes beyond `allowed`, and those of
/// `allowed` it does not simply add (the merge guard refuses both: a request already on the
/// default branch is a grant, never edited by a PR), sorted.
fn beyond(files: &[ChangedFile], allowed: &BTreeSet<String>) -> Vec<String> {
    files
        .iter()
        .flat_map(|f| {
            let added = f.change == FileChange::Added && f.previous_path.is_none();
            let path = Some(&f.path).filter(|p| !added || !allowed.contains(*p));
            let previous = f.previous_path.as_ref().filter(|p| !allowed.contains(*p));
            path.into_iter().chain(previous)
        })
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// When the head arrived, by the forge's clock, and whether that is only a bound (see
/// [`StoredDecision::head_since_is_bound`]): kept from the last decision on the same head (a
/// label event's `updated_at` is not a push), else the push the event announced when it is
/// still the head, else the PR's `updated_at` (a bound).
///
/// On the same head, a push announced after it arrived means the branch went away and came
/// back (A, then B, then A again, heard late): the head arrived again at that push when the
/// event names it, or at an unknown time after the push to another head, taken as the PR's
/// latest `updated_at`. An approval given meanwhile may have been of B and does not count.
fn head_since(
    old: Option<&StoredDecision>,
    same_head: bool,
    pushed: Option<&(String, DateTime<Utc>)>,
    pr: &PullRequestInfo,
) -> (Option<DateTime<Utc>>, bool) {
    match old {
        Some(old) if same_head && old.head_since.is_some() => match pushed {
            Some((sha, at)) if Some(*at) > old.head_since => {
                tracing::warn!(pr = pr.number, head = %pr.head_sha, "the branch went away and came back to the same head: approvals before its return do not count");
                // Not a bound here: an approval before the PR's latest time may have been of
                // the other head, and is stale (its approver is told, as after any push).
                let back_at = if *sha == pr.head_sha {
                    Some(*at)
                } else {
                    pr.updated_at.max(Some(*at))
                };
                (back_at, false)
            }
            _ => (old.head_since, old.head_since_is_bound),
        },
        _ => match pushed {
            Some((sha, at)) if *sha == pr.head_sha => (Some(*at), false),
            _ => (pr.updated_at, true),
        },
    }
}

/// Whether a re-evaluation says the same thing, so that label changes do not repeat comments.
fn same_verdict(old: &StoredDecision, new: &StoredDecision) -> bool {
    old.decision.allowed == new.decision.allowed
        && old.decision.violations == new.decision.violations
        && old.decision.approvals_required == new.decision.approvals_required
        && old.decision.approvers == new.decision.approvers
        && old.decision.fast_path.as_ref().map(|f| &f.rule)
            == new.decision.fast_path.as_ref().map(|f| &f.rule)
        && said_misses(old) == said_misses(new)
        && old.scope_problems == new.scope_problems
        && old.draft == new.draft
        && old.unservable == new.unservable
}

/// The fast-path misses a verdict explains: a label added for a rule that does not apply is
/// answered with why.
fn said_misses(stored: &StoredDecision) -> Vec<&FastPathMiss> {
    let misses = &stored.decision.fast_path_misses;
    misses.iter().filter(|m| m.labelled_for()).collect()
}

/// The verdict comment: the decision, the files beyond the request before it, or why the role
/// cannot be granted instead; a draft is told it will not be merged.
fn verdict_comment(id: &RequestId, inputs: &Inputs, stored: &StoredDecision) -> String {
    let decision = &stored.decision;
    let extra = &stored.scope_problems;
    let mut text = match (extra.is_empty(), decision.allowed) {
        (true, _) => comment::decision_comment(id.as_str(), decision, inputs.forge),
        (false, true) => comment::out_of_scope_comment(extra, &inputs.file_path, inputs.forge),
        (false, false) => format!(
            "{}\n\n{}",
            comment::out_of_scope_comment(extra, &inputs.file_path, inputs.forge),
            comment::decision_comment(id.as_str(), decision, inputs.forge)
        ),
    };
    if let Some(why) = &stored.unservable {
        text = comment::role_unservable_comment(
            inputs.request.environment.as_str(),
            inputs.request.role.as_str(),
            why,
        );
    }
    if stored.draft {
        text = format!("{text}\n\n{}", comment::draft_note(inputs.forge));
    }
    text
}

/// The `breakglass/policy` status of a verdict: `pending` until the request is approved (so a
/// required status check stops a hand merge), `success` only where no approval is needed.
fn verdict_status(stored: &StoredDecision, allowed: bool) -> (StatusState, String) {
    let decision = &stored.decision;
    if !allowed {
        let description = if stored.unservable.is_some() {
            "denied: the role cannot be granted".to_owned()
        } else if decision.allowed {
            "denied: the PR changes files beyond its request".to_owned()
        } else {
            format!(
                "denied: {}",
                decision
                    .violations
                    .iter()
                    .map(|v| v.rule.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return (StatusState::Failure, description);
    }
    if stored.draft {
        return (
            StatusState::Pending,
            "allowed; a draft is never merged".into(),
        );
    }
    if let Some(why) = &stored.merge_refused {
        return (StatusState::Pending, format!("not merged: {why}"));
    }
    match (&decision.fast_path, decision.approvals_required) {
        (Some(fast), _) => (
            StatusState::Success,
            format!("allowed: fast path {}", fast.rule),
        ),
        (None, 0) => (StatusState::Success, "allowed: self-service".to_owned()),
        (None, n) => (
            StatusState::Pending,
            format!("allowed: needs {n} approval(s)"),
        ),
    }
}

/// What the request waits for once the decision is recorded.
fn next(stored: &StoredDecision, allowed: bool) -> Next {
    let decision = &stored.decision;
    if !allowed || stored.draft {
        return Next::Stop;
    }
    if stored.merge_refused.is_some() {
        return Next::AfterRefusedMerge;
    }
    match (&decision.fast_path, decision.approvals_required) {
        (Some(fast), _) => Next::FastPath(fast.rule.clone()),
        (None, 0) => Next::SelfService,
        _ => Next::Approvals,
    }
}

#[cfg(test)]
#[path = "verdict_tests.rs"]
mod tests;
