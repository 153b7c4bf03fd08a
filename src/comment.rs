//! Every sentence the bot writes on a pull request or issue, in one place.
//!
//! Constructor functions (`*_comment`) take plain values and return markdown; the long
//! expiry comment is a minijinja template under `templates/comments/`, compiled into the binary.
//! Nothing here may echo a secret, and user input is shown in code spans so it cannot ping or
//! format.

use chrono::{DateTime, Utc};

use crate::clock::{iso, relative};
use crate::command::{CommandParseError, help_text};
use crate::policy::Decision;

const GRANTED_TEMPLATE: &str = include_str!("../templates/comments/granted.md.j2");

/// Shows user input inside a code span that it cannot break out of.
pub fn code(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .filter(|c| *c != '`' && !c.is_control())
        .take(200)
        .collect();
    format!("`{cleaned}`")
}

/// `@alice` or `@acme/sre`: how a user or team from a policy is named in a comment.
pub fn mention(principal: &str) -> String {
    if principal.starts_with('@') {
        principal.to_owned()
    } else {
        format!("@{principal}")
    }
}

fn mentions(principals: &[String]) -> String {
    principals
        .iter()
        .map(|p| mention(p))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The verdict on a request PR.
pub fn decision_comment(id: &str, decision: &Decision) -> String {
    let who = decision.requester.as_deref().unwrap_or("the requester");
    let what = format!(
        "`{}/{}` for {}",
        decision.environment,
        decision.role,
        decision
            .duration
            .map(|d| d.to_string())
            .unwrap_or_else(|| "?".into())
    );
    if !decision.allowed {
        let mut text = format!(
            "❌ **Request {} is denied** by the `{}` policy.\n\n",
            code(id),
            decision.environment
        );
        for v in &decision.violations {
            text.push_str(&format!("- **{}**: {}\n", v.rule, v.message));
        }
        text.push_str("\nPush a fixed request file to this PR and it is checked again.");
        return text;
    }
    let mut text = format!(
        "✅ **Request {} is allowed** by the `{}` policy: @{who} asks for {what}.\n\n",
        code(id),
        decision.environment
    );
    match (&decision.fast_path, decision.approvals_required) {
        (Some(fast), _) => text.push_str(&format!(
            "⚡ Fast path `{}` applies: merging now. An approver must review this grant within {} (react with {} or comment `/breakglass reviewed`).",
            fast.rule,
            fast.review_within,
            reactions(&decision.approval_reactions)
        )),
        (None, 0) => text.push_str("Self-service environment: merging now, no approval needed."),
        (None, n) => text.push_str(&format!(
            "Needs **{n}** approval(s) from {}. Approve with a {} reaction on this PR, an approving review, or `/breakglass approve`. The requester's own approval never counts, and a push voids earlier approvals.",
            mentions(&decision.approvers),
            reactions(&decision.approval_reactions)
        )),
    }
    // Say why a fast path the PR was labelled for did not apply (on-call wants to know).
    for miss in decision.fast_path_misses.iter().filter(|m| {
        !m.reasons
            .iter()
            .any(|r| r.starts_with("needs one of the labels"))
    }) {
        text.push_str(&format!(
            "\n\nFast path `{}` does not apply: {}.",
            miss.rule,
            miss.reasons.join("; ")
        ));
    }
    text
}

fn reactions(names: &[String]) -> String {
    names
        .iter()
        .map(|r| format!("`:{r}:`"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The request file does not parse.
pub fn invalid_request_comment(path: &str, error: &str) -> String {
    format!(
        "❌ **{} is not a valid request**: {error}\n\nSee the request format with `/breakglass help` or in the README.",
        code(path)
    )
}

/// The PR changes more than its request file (and the bot's own grant files).
pub fn out_of_scope_comment(extra: &[String]) -> String {
    format!(
        "⛔ **breakglass will not merge this PR**: it changes files beyond its request file: {}.\n\nA request PR may only add one `requests/<environment>/<id>.yaml` (plus the grant files breakglass renders itself). Move other changes to their own PR.",
        extra.iter().map(|p| code(p)).collect::<Vec<_>>().join(", ")
    )
}

/// A PR that adds more than one request file.
pub fn several_requests_comment(paths: &[String]) -> String {
    format!(
        "⛔ **One request per PR**: this PR adds {}. Open one PR per request.",
        paths.iter().map(|p| code(p)).collect::<Vec<_>>().join(", ")
    )
}

pub fn approval_recorded_comment(approver: &str, have: usize, need: u32) -> String {
    format!("👍 Approval by @{approver} recorded ({have} of {need}).")
}

pub fn self_approval_comment(requester: &str) -> String {
    format!(
        "🙅 @{requester}, you requested this access: your own approval does not count. Ask an approver."
    )
}

pub fn not_an_approver_comment(login: &str, environment: &str, approvers: &[String]) -> String {
    format!(
        "🙅 @{login} is not an approver for `{environment}`, so this does not count. Approvers: {}.",
        mentions(approvers)
    )
}

/// The expiry comment, rendered from `templates/comments/granted.md.j2`.
#[allow(clippy::too_many_arguments)]
pub fn granted_comment(
    id: &str,
    requester: &str,
    environment: &str,
    role: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
    approved_by: &str,
    reason: &str,
    ticket: Option<&str>,
    revert_pr: u64,
) -> String {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let context = minijinja::context! {
        id, requester, environment, role, approved_by, ticket, revert_pr,
        reason => code(reason),
        expires_at => iso(expires_at),
        expires_in => relative(now, expires_at),
    };
    env.render_str(GRANTED_TEMPLATE, context)
        .unwrap_or_else(|err| {
            // The template ships inside the binary and a test renders it; this is a last resort.
            tracing::error!(%err, "granted comment template failed");
            format!(
                "🔓 Access granted to @{requester} for `{environment}/{role}` until {} ({}).",
                iso(expires_at),
                relative(now, expires_at)
            )
        })
}

pub fn reminder_comment(
    requester: &str,
    environment: &str,
    role: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> String {
    format!(
        "⏰ @{requester}, your `{environment}/{role}` access expires at **{}** ({}). `/breakglass extend 30m` asks for more time; `/breakglass revoke` ends it now.",
        iso(expires_at),
        relative(now, expires_at)
    )
}

/// Why access ended, as the trailer `Breakglass-Revoked-Reason` says it.
pub fn revoked_comment(
    requester: &str,
    environment: &str,
    role: &str,
    at: DateTime<Utc>,
    reason: &str,
    revert_pr: Option<u64>,
) -> String {
    let why = match reason {
        "ttl" => "it expired",
        "early" => "it was revoked early",
        _ => "reconciliation found it should not be active",
    };
    let revert = revert_pr
        .map(|n| format!(" Revert PR #{n} merged."))
        .unwrap_or_default();
    format!(
        "🔒 **Access revoked** at {}: @{requester} no longer has `{environment}/{role}` ({why}).{revert}",
        iso(at)
    )
}

pub fn revert_pr_title(id: &str, expires_at: DateTime<Utc>) -> String {
    format!("breakglass: revoke {id} at {}", iso(expires_at))
}

pub fn revert_pr_body(id: &str, original_pr: u64, expires_at: DateTime<Utc>) -> String {
    format!(
        "Removes the grant of #{original_pr} (request `{id}`). breakglass merges this PR itself at **{}**, after revoking the access, or earlier on `/breakglass revoke`.\n\nDo not merge it by hand: the bot revokes first, then merges.",
        iso(expires_at)
    )
}

pub fn request_pr_body(id: &str, requester: &str, comment_url_or_issue: &str) -> String {
    format!(
        "Access request `{id}` opened by breakglass on behalf of @{requester} ({comment_url_or_issue})."
    )
}

pub fn request_pr_opened_comment(requester: &str, pr: u64) -> String {
    format!("📝 @{requester}, your request is #{pr}. It is checked against the policy there.")
}

pub fn denied_by_approver_comment(approver: &str, reason: Option<&str>) -> String {
    match reason {
        Some(reason) => format!(
            "🚫 Request denied by @{approver}: {}. Closing.",
            code(reason)
        ),
        None => format!("🚫 Request denied by @{approver}. Closing."),
    }
}

/// Escalation of a fast-path grant nobody reviewed in time.
pub fn review_overdue_comment(
    requester: &str,
    environment: &str,
    role: &str,
    due: DateTime<Utc>,
    approvers: &[String],
) -> String {
    let who = approvers
        .iter()
        .map(|a| mention(a))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "🚨 **Review overdue** since {}: the fast-path grant of `{environment}/{role}` to @{requester} has not been reviewed. {who}: react with 👍 or comment `/breakglass reviewed` after checking it.",
        iso(due)
    )
}

pub fn reviewed_comment(reviewer: &str) -> String {
    format!("✔️ After-the-fact review by @{reviewer} recorded; `breakglass/needs-review` removed.")
}

pub fn extended_comment(requester: &str, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!(
        "⏳ Extended: @{requester}'s access now expires at **{}** ({}).",
        iso(expires_at),
        relative(now, expires_at)
    )
}

pub fn extension_needs_approval_comment(by: &str, approvers: &[String]) -> String {
    format!(
        "⏳ Extension by {by} asked. It needs approval: an approver ({}) comments `/breakglass extend` with the same duration.",
        mentions(approvers)
    )
}

pub fn extension_refused_comment(total: &str, max: &str) -> String {
    format!(
        "🙅 That would make {total} in total, above the policy's max_duration {max}. Ask for less, or open a new request."
    )
}

pub fn not_allowed_comment(login: &str, what: &str) -> String {
    format!("🙅 @{login}, only {what}.")
}

pub fn no_request_here_comment(command: &str) -> String {
    format!(
        "`/breakglass {command}` works on a breakglass request PR; this is not one (or it is not in a state where it applies)."
    )
}

pub fn status_comment(id: &str, state: &str, detail: &str) -> String {
    format!("ℹ️ Request {}: **{state}**. {detail}", code(id))
}

pub fn help_comment() -> String {
    help_text()
}

/// A command the bot could not read.
pub fn parse_error_comment(err: &CommandParseError) -> String {
    match err.usage() {
        Some(usage) => format!("⚠️ {err}\n\nUsage: `{usage}`"),
        None => format!("⚠️ {err}\n\n{}", help_text()),
    }
}

pub fn direct_push_comment(paths: &[String]) -> String {
    format!(
        "🚨 **Request files reached the default branch without breakglass**: {}. They were not granted; breakglass removes them.",
        paths.iter().map(|p| code(p)).collect::<Vec<_>>().join(", ")
    )
}

/// Someone else pushed to a branch the bot built.
pub fn tampering_comment(pusher: Option<&str>, branch: &str, found: &str) -> String {
    let who = pusher.map_or_else(|| "Someone".to_owned(), mention);
    format!(
        "🚨 **Tampering**: {who} pushed {} to breakglass's branch {}. breakglass merges only its own commits there: the branch was put back and the push is recorded in the audit log.",
        code(found.get(..12).unwrap_or(found)),
        code(branch)
    )
}

/// The bot refused to merge a request PR; it waits for a push or a new approval.
pub fn not_merged_comment(why: &str) -> String {
    format!(
        "⚠️ Not merged: {why}. breakglass will not try again until the PR changes or an approver approves again."
    )
}

/// A revert could not be merged: the access itself is already revoked through the provider.
pub fn revert_blocked_comment(why: &str, branch: &str, protection: bool) -> String {
    let mut text = format!(
        "🚨 **The revert could not be merged**: {why}. The access was revoked through its provider; the request file stays on {} until the revert lands, and breakglass keeps trying.",
        code(branch)
    );
    if protection {
        text.push_str(" Branch protection refused the bot: allow it to bypass required reviews and status checks on the default branch (see the README's *Security model*).");
    }
    text
}

/// A PR from another repository.
pub fn fork_refused_comment(repo: &str) -> String {
    format!(
        "⛔ breakglass does not take requests from forks ({}). Open the PR from a branch of this repository, or comment `/breakglass <env> <duration> [role] -- reason`.",
        code(repo)
    )
}

/// A file under `requests/` that is not `requests/<environment>/<id>.yaml`.
pub fn bad_request_path_comment(path: &str) -> String {
    format!(
        "⛔ {} is not a request file: requests are named `requests/<environment>/<id>.yaml` (lowercase environment, `.yaml`).",
        code(path)
    )
}

/// A draft request: decided, never merged until marked ready.
pub fn draft_note() -> &'static str {
    "📝 This PR is a draft: breakglass decides it but merges nothing until it is marked ready for review."
}

/// An iac request PR re-opened from the bot's own branch (the bot writes only to its branches).
pub fn reopened_comment(new_pr: u64) -> String {
    format!(
        "🔁 This request needs a grant file rendered by breakglass, and breakglass writes only to its own branches: it re-opened the request as #{new_pr}. Approve it there."
    )
}

/// An approval too close to the latest push to tell which version it approved.
pub fn approve_again_comment(approver: &str, stale: bool) -> String {
    let why = if stale {
        "was given before the latest push"
    } else {
        "came within the same second as the latest push, so breakglass cannot tell which version it approves"
    };
    format!(
        "⏱️ @{approver}, your approval {why}. Please approve the current version again (a new 👍 after removing the old one, an approving review, or `/breakglass approve`)."
    )
}

/// An approval was withdrawn before the merge.
pub fn approval_withdrawn_comment(have: usize, need: u32) -> String {
    format!("↩️ An approval was withdrawn before the merge: {have} of {need} remain. Not merged.")
}

/// A request that nobody approved in time.
pub fn pending_expired_comment(after: &str) -> String {
    format!(
        "⌛ Nobody approved this request within {after}: breakglass closed it. Ask again if access is still needed."
    )
}

/// A comment asked for more than one request.
pub fn one_request_per_comment() -> &'static str {
    "⚠️ One comment opens at most one request: only the first `/breakglass <env> <duration>` line was taken."
}

/// The requester has too many open requests.
pub fn too_many_open_requests_comment(requester: &str, max: u32) -> String {
    format!(
        "⛔ @{requester} already has {max} open request(s), the most one person may have. Close or finish one first."
    )
}

/// A request or grant file re-added after it was revoked.
pub fn readded_comment(id: &str) -> String {
    format!(
        "🚨 Request {} was already revoked; its file was added to the default branch again without breakglass and is removed.",
        code(id)
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_granted_template_renders_who_what_until_when() {
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 2, 14, 0).unwrap();
        let text = granted_comment(
            "r1",
            "alice",
            "prod",
            "admin",
            now + chrono::TimeDelta::hours(1),
            now,
            "@carol",
            "incident: db `x`",
            Some("INC-1"),
            12,
        );
        insta::assert_snapshot!(text, @r"
        🔓 **Access granted.** @alice has `prod/admin` until **2026-11-26T03:14:00Z** (in 1h).

        | | |
        |---|---|
        | request | `r1` |
        | approved by | @carol |
        | reason | `incident: db x` |
        | ticket | INC-1 |
        | revert PR | #12 (merged automatically at expiry) |

        `/breakglass revoke` ends it now · `/breakglass extend 30m` asks for more time · `/breakglass status`
        ");
    }

    #[test]
    fn user_input_cannot_escape_its_code_span() {
        assert_eq!(code("a`@team`b\n"), "`a@teamb`");
    }
}
