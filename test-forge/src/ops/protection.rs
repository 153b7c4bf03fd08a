//! Branch protection: which merges a protected branch refuses, with GitHub's messages, and who
//! counts as a reviewer with write access.

use std::collections::BTreeMap;

use crate::error::ApiResult;
use crate::model::{Protection, ReviewState};
use crate::state::{ForgeState, PrRec, RepoRec};

impl ForgeState {
    /// Protects `branch` (replacing an earlier rule).
    pub(crate) fn protect_branch(
        &mut self,
        full: &str,
        branch: &str,
        rule: Protection,
    ) -> ApiResult<()> {
        self.repo_mut(full)?
            .protections
            .insert(branch.to_owned(), rule);
        Ok(())
    }

    /// Removes the protection of `branch`, if any.
    pub(crate) fn unprotect_branch(&mut self, full: &str, branch: &str) -> ApiResult<()> {
        self.repo_mut(full)?.protections.remove(branch);
        Ok(())
    }

    /// The permission of `login` on the repository: `admin` for its owner and the app's bot,
    /// `write` for members of a team of the owning organization, `read` for everyone else.
    pub(crate) fn permission(&self, r: &RepoRec, login: &str) -> &'static str {
        if login == r.owner || self.app.as_ref().is_some_and(|a| a.bot_login == login) {
            return "admin";
        }
        let prefix = format!("{}/", r.owner);
        let member = self
            .teams
            .iter()
            .any(|(team, members)| team.starts_with(&prefix) && members.contains(login));
        if member { "write" } else { "read" }
    }
}

/// Why the protection of its base branch refuses to merge `pr`, in GitHub's words; `None` when
/// it allows the merge (or the base is not protected). An `actor` in the rule's bypass list is
/// always allowed; with no actor the rule is judged for nobody in particular (as
/// `mergeable_state` is).
pub(crate) fn unmet(
    st: &ForgeState,
    r: &RepoRec,
    pr: &PrRec,
    actor: Option<&str>,
) -> Option<String> {
    let rule = r.protections.get(&pr.base_ref)?;
    if actor.is_some_and(|a| rule.bypass.iter().any(|b| b == a)) {
        return None;
    }
    let needed = rule.required_approving_reviews as usize;
    if approvals(st, r, pr) < needed {
        return Some(reviews_message(needed));
    }
    rule.required_status_checks
        .iter()
        .find_map(|context| check_message(r, &pr.head_sha, context))
}

fn reviews_message(needed: usize) -> String {
    if needed == 1 {
        "At least 1 approving review is required by reviewers with write access.".to_owned()
    } else {
        format!("At least {needed} approving reviews are required by reviewers with write access.")
    }
}

/// Distinct reviewers with write access whose latest review (comments aside) approves: a later
/// "changes requested" or a dismissal withdraws an earlier approval, as on GitHub.
fn approvals(st: &ForgeState, r: &RepoRec, pr: &PrRec) -> usize {
    let mut latest: BTreeMap<&str, ReviewState> = BTreeMap::new();
    for review in &pr.reviews {
        if review.state != ReviewState::Commented {
            latest.insert(&review.user, review.state);
        }
    }
    latest
        .iter()
        .filter(|(user, state)| {
            **state == ReviewState::Approved && st.permission(r, user) != "read"
        })
        .count()
}

/// GitHub's refusal for a required context that is not green on `sha`: missing or pending is
/// "expected", a red status or a completed run that did not pass is "failing".
fn check_message(r: &RepoRec, sha: &str, context: &str) -> Option<String> {
    let status = r
        .statuses
        .iter()
        .rev()
        .find(|s| s.sha == sha && s.context == context)
        .map(|s| s.state.as_str());
    let run = r
        .check_runs
        .iter()
        .rev()
        .find(|c| c.head_sha == sha && c.name == context);
    let run_done = run.filter(|c| c.status == "completed");
    let run_passed = run_done.is_some_and(|c| {
        matches!(
            c.conclusion.as_deref(),
            Some("success" | "neutral" | "skipped")
        )
    });
    if status == Some("success") || run_passed {
        return None;
    }
    if matches!(status, Some("failure" | "error")) || run_done.is_some() {
        return Some(format!("Required status check \"{context}\" is failing."));
    }
    Some(format!("Required status check \"{context}\" is expected."))
}
