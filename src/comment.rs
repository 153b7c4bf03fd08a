//! Every sentence the bot writes on a pull request or issue, in one place.
//!
//! Constructor functions (`*_comment`) take plain values and return markdown; the long
//! expiry comment is a minijinja template under `templates/comments/`, compiled into the binary.
//! Nothing here may echo a secret.
//!
//! Text that users control (reasons, file paths, words of a command, messages about their YAML)
//! goes through [`code`] or [`inert`] before it reaches a comment, so that it cannot act there:
//! no line of it starts with `/breakglass` (a bot reading the comment would take it for a
//! command), no `@` in it pings anyone, and no markdown or HTML in it can dress up as the bot's
//! own words. Logins that come from the forge and are validated may stay mentions.

use chrono::{DateTime, Utc};

use crate::clock::{iso, relative};
use crate::command::{CommandKind, CommandParseError, help_text};
use crate::duration::HumanDuration;
use crate::forge::EntryKind;
use crate::policy::Decision;
use crate::store::{ForgeKind, RequestState};

/// What the forge calls a change: a pull request on GitHub, a merge request on GitLab.
fn noun(forge: ForgeKind) -> &'static str {
    match forge {
        ForgeKind::GitHub => "PR",
        ForgeKind::GitLab => "MR",
    }
}

/// How a request by comment is written, wherever a reply shows it.
const REQUEST_USAGE: &str = CommandKind::Request.usage();

const GRANTED_TEMPLATE: &str = include_str!("../templates/comments/granted.md.j2");

/// U+2060 WORD JOINER: invisible, and after an `@` it keeps the forge from reading a mention.
pub(crate) const WORD_JOINER: char = '\u{2060}';

/// How much of one piece of user text a comment shows.
const MAX_SHOWN: usize = 200;

/// Shows user text verbatim inside a code span that it cannot break out of: on one line, cut
/// to a readable length, fenced with more backticks than any run in it.
pub fn code(text: &str) -> String {
    let folded = fold(text);
    let mut shown: String = folded.chars().take(MAX_SHOWN).collect();
    if folded.chars().nth(MAX_SHOWN).is_some() {
        shown.push('…');
    }
    let longest_run = shown.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest_run + 1);
    // CommonMark strips one space from each side of a span and reads a backtick next to the
    // fence as part of it, so such edges get a space of padding.
    let pad = if shown.starts_with(['`', ' ']) || shown.ends_with(['`', ' ']) {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{shown}{pad}{fence}")
}

/// Makes a sentence that carries user text (an error message about a user's YAML or command,
/// a path list) inert, keeping its code spans: on one line, with no mention, and with every
/// markdown or HTML character outside code spans escaped, so it reads as plain text. The
/// result is inline text: put it after other text on a line, never at the start of one.
pub fn inert(text: &str) -> String {
    let folded = fold(text);
    let chars: Vec<char> = folded.chars().collect();
    let mut out = String::with_capacity(folded.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '`' {
            i = copy_backticks(&chars, i, &mut out);
            continue;
        }
        let before = i.checked_sub(1).map(|j| chars[j]);
        push_plain(&mut out, chars[i], before, chars.get(i + 1).copied());
        if starts_autolink(&chars, i) || starts_reference(&chars, i) {
            out.push(WORD_JOINER);
        }
        i += 1;
    }
    // Folding made one line; its start is the one place a command could still begin.
    if out.starts_with('/') {
        out.insert(0, '\\');
    }
    out
}

/// At a run of backticks at `start`: copies the code span it opens (to the next run of the
/// same length, as CommonMark reads it) verbatim, or, when nothing closes it, the run as
/// escaped literal backticks. Returns where to go on.
fn copy_backticks(chars: &[char], start: usize, out: &mut String) -> usize {
    let run = backtick_run(chars, start);
    let mut j = start + run;
    while j < chars.len() {
        if chars[j] != '`' {
            j += 1;
            continue;
        }
        let close = backtick_run(chars, j);
        if close == run {
            out.extend(&chars[start..j + close]);
            return j + close;
        }
        j += close;
    }
    out.push_str(&"\\`".repeat(run));
    start + run
}

fn backtick_run(chars: &[char], start: usize) -> usize {
    chars[start..].iter().take_while(|c| **c == '`').count()
}

/// Whether the character at `i` is where the forges' autolinking would start to read a link:
/// the `:` of `://` (any scheme: GitLab links more than `http`) or the last `w` of a `www.`
/// that starts a word. A word joiner after it keeps the text a text.
pub(crate) fn starts_autolink(chars: &[char], i: usize) -> bool {
    let at = |j: usize| chars.get(j).copied();
    match chars[i] {
        ':' => at(i + 1) == Some('/') && at(i + 2) == Some('/'),
        'w' | 'W' => {
            i >= 2
                && chars[i - 2..=i]
                    .iter()
                    .all(|c| c.eq_ignore_ascii_case(&'w'))
                && at(i + 1) == Some('.')
                && (i == 2 || !chars[i - 3].is_alphanumeric())
        }
        _ => false,
    }
}

/// Whether the character at `i` starts a reference the forges link and notify: an issue or
/// pull request (`#12`, GitLab's `!12`), a GitLab label, milestone, epic or snippet (`~x`,
/// `%x`, `&x`, `$x`). A word joiner after it keeps the text a text.
fn starts_reference(chars: &[char], i: usize) -> bool {
    matches!(chars[i], '#' | '!' | '~' | '%' | '&' | '$')
        && chars.get(i + 1).is_some_and(|c| c.is_alphanumeric())
        && (i == 0 || !chars[i - 1].is_alphanumeric())
}

/// One character outside code spans, backslash-escaped when markdown could read it as markup:
/// emphasis, links and images, HTML and entities, strikethrough, table cells, escapes. An `_`
/// inside a word (`max_duration`) is no markup and stays as it is.
fn push_plain(out: &mut String, c: char, before: Option<char>, after: Option<char>) {
    let inside_word = |x: Option<char>| x.is_some_and(char::is_alphanumeric);
    let escape = match c {
        '\\' | '*' | '[' | ']' | '<' | '>' | '&' | '~' | '|' | '!' => true,
        '_' => !(inside_word(before) && inside_word(after)),
        _ => false,
    };
    if escape {
        out.push('\\');
    }
    out.push(c);
}

/// User text on one line: line breaks and tabs become spaces, other control characters and
/// the bidirectional controls (which can make text read differently from what it is) go, and
/// every `@` is followed by a word joiner so that it mentions nobody.
fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\r' | '\t' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}' => {
                out.push(' ')
            }
            '@' => {
                out.push('@');
                out.push(WORD_JOINER);
            }
            c if c.is_control() || is_bidi_control(c) => {}
            c => out.push(c),
        }
    }
    out.trim().to_owned()
}

pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Text for a cell of a markdown table, where a `|` would end the cell even inside a code span
/// (GitHub reads `\|` there as the character).
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// [`inert`] text for a cell of a markdown table: `inert` escapes a `|` outside code spans, and
/// one inside a code span (which it keeps as written) would still end the cell, so it is
/// escaped too (GitHub and GitLab read `\|` there as the character).
fn inert_cell(text: &str) -> String {
    let inert = inert(text);
    let mut out = String::with_capacity(inert.len() + 4);
    let mut escaped = false;
    for c in inert.chars() {
        if c == '|' && !escaped {
            out.push('\\');
        }
        escaped = c == '\\' && !escaped;
        out.push(c);
    }
    out
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
pub fn decision_comment(id: &str, decision: &Decision, forge: ForgeKind) -> String {
    if !decision.allowed {
        return denial(
            id,
            decision,
            "Push a fixed request file to this PR and it is checked again.",
        );
    }
    verdict(id, decision, None, forge)
}

/// The verdict on an allowed request whose approvals (`approvers`, named without `@`) already
/// suffice: a draft marked ready after its approval, or a request decided again after it.
/// It is merged now, so it does not ask for approvals.
pub fn approved_decision_comment(
    id: &str,
    decision: &Decision,
    approvers: &[String],
    forge: ForgeKind,
) -> String {
    verdict(id, decision, Some(approvers), forge)
}

/// `/breakglass <environment> …` without a reason, where the policy asks for a reason code.
pub fn reason_code_needed_comment(
    environment: &str,
    duration: &HumanDuration,
    role: &str,
    codes: &[String],
) -> String {
    let listed: Vec<String> = codes.iter().map(|c| code(c)).collect();
    let first = codes.first().map_or("incident", String::as_str);
    format!(
        "⚠️ {} asks for a reason that starts with a reason code ({}): write it after `--`, e.g. `/breakglass {environment} {duration} {role} -- {first}: INC-1234 what broke`. Nothing was opened.",
        code(environment),
        listed.join(", ")
    )
}

/// `/breakglass <word>` where the word is neither a command nor an environment with a policy.
pub fn unknown_word_comment(word: &str, environments: &[String]) -> String {
    let known: Vec<String> = environments.iter().map(|e| code(e)).collect();
    format!(
        "⚠️ {} is neither a command nor an environment with a policy (environments: {}). Write `{}` to ask for access, or `/breakglass help` to see every command.",
        code(word),
        if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        },
        REQUEST_USAGE
    )
}

/// A `/breakglass` request while the policies on the default branch do not load.
pub fn policies_invalid_request_comment() -> &'static str {
    "⚠️ The policies on the default branch are invalid, so no request can be opened."
}

/// The policy's refusal of a request asked with a `/breakglass` comment. Nothing was opened,
/// so the way on is another comment, not a push.
pub fn comment_request_denied_comment(what: &str, decision: &Decision) -> String {
    denial(
        what,
        decision,
        &format!("Nothing was opened. Comment again with a corrected `{REQUEST_USAGE}` command."),
    )
}

/// A denial: which rule, which value; then `ending`, what to do about it.
fn denial(id: &str, decision: &Decision, ending: &str) -> String {
    let unknown = decision
        .violations
        .iter()
        .any(|v| v.rule == crate::policy::decision::Rule::Environment);
    let by = if unknown {
        ": no policy names its environment".to_owned()
    } else {
        format!(" by the `{}` policy", decision.environment)
    };
    let mut text = format!("❌ **Request {} is denied**{by}.\n\n", code(id));
    for v in &decision.violations {
        // The message may quote the request's own text (its reason, its ticket).
        text.push_str(&format!("- **{}**: {}\n", v.rule, inert(&v.message)));
    }
    text.push('\n');
    text.push_str(ending);
    text
}

/// The verdict on an allowed request; `approved`, the approvers when their approvals already
/// suffice.
fn verdict(id: &str, decision: &Decision, approved: Option<&[String]>, forge: ForgeKind) -> String {
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
    let mut text = format!(
        "✅ **Request {} is allowed** by the `{}` policy: @{who} asks for {what}.\n\n",
        code(id),
        decision.environment
    );
    match (&decision.fast_path, decision.approvals_required, approved) {
        (Some(fast), _, _) => text.push_str(&format!(
            "⚡ Fast path `{}` applies: merging now. An approver must review this grant within {} ({}).",
            fast.rule,
            fast.review_within,
            review_ways(&decision.approval_reactions, forge)
        )),
        (None, 0, _) => text.push_str("Self-service environment: merging now, no approval needed."),
        (None, n, Some(approvers)) => {
            let names: Vec<String> = approvers.iter().map(|a| code(a)).collect();
            text.push_str(&format!(
                "Approved by {} ({} of {n}): merging now.",
                names.join(", "),
                approvers.len()
            ));
        }
        (None, n, None) => text.push_str(&format!(
            "Needs **{n}** approval(s) from {}. Approve with {}, or `/breakglass approve`. The requester's own approval never counts, and a push voids earlier approvals.",
            mentions(&decision.approvers),
            approval_ways(&decision.approval_reactions, forge)
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
            inert(&miss.reasons.join("; "))
        ));
    }
    text
}

/// The emoji a policy takes, as the forge names them (`:+1:` on GitHub, `:thumbsup:` on
/// GitLab: policies use GitHub's words for both).
/// How an approver closes a fast-path grant's review: a reaction on the change request itself
/// (one on a comment is not read), or the command.
fn review_ways(names: &[String], forge: ForgeKind) -> String {
    format!(
        "react with {} on the {} itself, not on a comment, or comment `/breakglass reviewed`",
        reactions(names, forge),
        noun(forge)
    )
}

fn reactions(names: &[String], forge: ForgeKind) -> String {
    names
        .iter()
        .map(|r| match forge {
            ForgeKind::GitHub => format!("`:{r}:`"),
            ForgeKind::GitLab => format!("`:{}:`", crate::forge::gitlab::award_name(r)),
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

/// How an approver approves on `forge`, the command aside.
fn approval_ways(names: &[String], forge: ForgeKind) -> String {
    match forge {
        // Not on the bot's comment: an emoji there is not an approval (the poll sees one on
        // the bot's latest comment only, and answers it with where it counts).
        ForgeKind::GitHub => format!(
            "a {} reaction on the PR itself (its description at the top, not this comment), an approving review",
            reactions(names, forge)
        ),
        ForgeKind::GitLab => format!(
            "a {} emoji on the MR itself (below its description, not on this comment), the **Approve** button",
            reactions(names, forge)
        ),
    }
}

/// The request file does not parse.
/// The request file does not parse. The parser's message quotes the file, so it is made inert.
pub fn invalid_request_comment(path: &str, error: &str) -> String {
    format!(
        "❌ **{} is not a valid request**: {}\n\nSee the request format with `/breakglass help` or in the README.",
        code(path),
        inert(error)
    )
}

/// The policies on the default branch do not parse or check, so nothing can be decided.
pub fn invalid_policies_comment(branch: &str, problems: &[String], forge: ForgeKind) -> String {
    let pr = noun(forge);
    let list: Vec<String> = problems.iter().map(|p| format!("- {}", inert(p))).collect();
    format!(
        "⚠️ The policies on {} are invalid, so no request can be decided:\n\n{}\n\nThis request is decided once they are fixed (push to this {pr} if it is not).",
        code(branch),
        list.join("\n")
    )
}

/// The PR changes more than its request file (and the bot's own grant files).
pub fn out_of_scope_comment(extra: &[String], request_path: &str, forge: ForgeKind) -> String {
    let pr = noun(forge);
    let others: Vec<String> = extra
        .iter()
        .filter(|p| *p != request_path)
        .map(|p| code(p))
        .collect();
    let mut text = format!("⛔ **breakglass will not merge this {pr}**:");
    if others.len() < extra.len() {
        text += &format!(
            " it does not add {} as a new file. A request {pr} adds its request file; it never \
             edits or renames a request already on the default branch (a merged request is a \
             grant: ask for more time with `/breakglass extend`, or add a new request file).",
            code(request_path)
        );
    }
    if !others.is_empty() {
        let it = if others.len() < extra.len() {
            "It also"
        } else {
            "it"
        };
        text += &format!(
            " {it} changes files beyond its request file: {}.",
            others.join(", ")
        );
    }
    text + &format!(
        "\n\nA request {pr} may only add one `requests/<environment>/<id>.yaml` (plus the grant files breakglass renders itself). Move other changes to their own {pr}."
    )
}

/// A request file whose id another request (granted, past or pending) already has.
pub fn request_id_taken_comment(id: &str) -> String {
    format!(
        "⛔ Request id {} is already used by another request; rename the file.",
        code(id)
    )
}

/// What is wrong with a request or grant file that is not a regular file, as one of the
/// problems a merge refusal lists.
pub fn not_a_file_problem(path: &str, kind: EntryKind) -> String {
    let what = match kind {
        EntryKind::Symlink => "is a symbolic link, not a file",
        EntryKind::Submodule => "is a submodule, not a file",
        // GitHub served no text for it, or not the blob its comparison lists.
        EntryKind::File | EntryKind::Unknown => "is not a regular file",
    };
    format!("{} {what}", code(path))
}

/// A request file that is not a regular file: its text would be a link's target (or another
/// repository's commit), not what the PR shows.
pub fn not_a_file_comment(path: &str, kind: EntryKind, forge: ForgeKind) -> String {
    let pr = noun(forge);
    format!(
        "⛔ **breakglass will not merge this {pr}**: {}. A request {pr} adds its request file as a \
         regular file.",
        not_a_file_problem(path, kind)
    )
}

/// A PR that adds more than one request file.
pub fn several_requests_comment(paths: &[String], forge: ForgeKind) -> String {
    let pr = noun(forge);
    format!(
        "⛔ **One request per {pr}**: this {pr} adds {}. Open one {pr} per request.",
        paths.iter().map(|p| code(p)).collect::<Vec<_>>().join(", ")
    )
}

/// A PR that changes more files than the forge lists at once (`listed` of them shown).
pub fn too_many_files_comment(listed: usize, forge: ForgeKind) -> String {
    let pr = noun(forge);
    format!(
        "⛔ **Too many files to check**: the forge lists only {listed} of the files this {pr} \
         changes, so breakglass cannot check that it changes nothing beyond its request. A \
         request {pr} adds its request file and nothing else."
    )
}

/// A PR whose head the forge cannot compare with the default branch (no common history, or a
/// comparison too large to show).
pub fn uncomparable_comment(forge: ForgeKind) -> String {
    let pr = noun(forge);
    format!(
        "⛔ **Cannot check this {pr}**: the forge does not list what merging its head into the \
     default branch would change (they share no history, or the comparison is too large to \
     show), so breakglass cannot check it. Open the request from a branch of the default \
     branch, adding only the request file."
    )
}

/// A requester's PR whose branch holds merge commits.
pub fn merge_commits_comment(forge: ForgeKind) -> String {
    let pr = noun(forge);
    format!(
        "⛔ **Merge commits on this {pr}'s branch**: with a merge commit the head can have several \
     merge bases with the default branch, and then what the merge brings is not what a \
     comparison shows, so breakglass does not merge it. Rebase the branch onto the default \
     branch (or open the request again with one commit adding the request file)."
    )
}

pub fn approval_recorded_comment(approver: &str, have: usize, need: u32) -> String {
    format!("👍 Approval by @{approver} recorded ({have} of {need}).")
}

/// A `/breakglass` command written in a review's text, where the bot reads none.
pub fn review_text_command_comment(author: &str, forge: ForgeKind) -> String {
    let pr = noun(forge);
    format!(
        "ℹ️ @{author}, commands in a review's text are not read. Comment the `/breakglass` command on this {pr} itself (an approving review approves by itself)."
    )
}

/// The first words of [`description_command_comment`]: said once per issue or PR.
pub const DESCRIPTION_COMMAND_MARK: &str = "ℹ️ Commands in a description are not read";

/// Said to whoever opened an issue or PR with a `/breakglass` command in its description: the
/// bot takes commands from comments only. On an issue (`on_change` false), or on a PR/MR.
pub fn description_command_comment(author: &str, forge: ForgeKind, on_change: bool) -> String {
    let on = if on_change { noun(forge) } else { "issue" };
    format!(
        "{DESCRIPTION_COMMAND_MARK}, @{author}: comment the `/breakglass` command on this {on} to use it."
    )
}

pub fn self_approval_comment(requester: &str) -> String {
    format!(
        "🙅 @{requester}, you requested this access: your own approval does not count. Ask an approver."
    )
}

/// Names the approvers without mentioning them: anyone may comment `/breakglass approve`, and
/// each such comment must not page the approvers' team again.
pub fn not_an_approver_comment(login: &str, environment: &str, approvers: &[String]) -> String {
    let named: Vec<String> = approvers
        .iter()
        .map(|p| format!("`{}`", mention(p)))
        .collect();
    format!(
        "🙅 @{login} is not an approver for `{environment}`, so this does not count. Approvers: {}.",
        named.join(", ")
    )
}

/// A comment edited to hold a command: edits are not read again.
pub fn edited_command_comment(login: &str) -> String {
    format!(
        "ℹ️ @{login}, an edited comment is not read again: a command in it is not run (a request it opened stands as it was asked; an approval or an ask for more time that it no longer says is withdrawn). Post a new comment instead."
    )
}

/// A command written in a GitLab internal note, which only members see: not taken, as every
/// answer of the bot is public.
pub fn internal_note_comment(login: &str) -> String {
    format!(
        "🙈 @{login}, breakglass takes no command from an internal note or a confidential issue: its answers and the request it opens are seen by everyone in the project and would show what is written here. Write the command in a regular comment on a public issue or merge request."
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
    change_word: &str,
) -> String {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let context = minijinja::context! {
        id, requester, environment, role, approved_by, change_word,
        reason => cell(&code(reason)),
        ticket => ticket.map(inert_cell),
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

/// What a fast-path grant's expiry comment adds: the verdict, which on a fast path is said
/// with the grant instead of in a comment of its own (`None` when no fast path applied).
pub fn fast_path_verdict_note(decision: &Decision, forge: ForgeKind) -> Option<String> {
    let fast = decision.fast_path.as_ref()?;
    Some(format!(
        "⚡ Fast path `{}` of the `{}` policy applied: merged without waiting for approval. An approver must review this grant within {} ({}).",
        fast.rule,
        decision.environment,
        fast.review_within,
        review_ways(&decision.approval_reactions, forge)
    ))
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
    revoked_by: Option<&str>,
    revert: RevertNote<'_>,
) -> String {
    let why = match (reason, revoked_by) {
        ("ttl", _) => "it expired".to_owned(),
        ("early", Some(by)) => format!("@{by} revoked it early"),
        ("early", None) => "it was revoked early".to_owned(),
        _ => "reconciliation found it should not be active".to_owned(),
    };
    let revert = match revert {
        RevertNote::Merged(pr) => format!(" Revert {pr} merged."),
        RevertNote::FilesGone => {
            " Its files had already left the default branch: there was nothing to revert.".into()
        }
        RevertNote::Nothing => String::new(),
    };
    format!(
        "🔒 **Access revoked** at {}: @{requester} no longer has `{environment}/{role}` ({why}).{revert}",
        iso(at)
    )
}

/// An extension asked or approved while the policies on the default branch are invalid.
pub fn extension_unchecked_comment(default_branch: &str) -> String {
    format!(
        "⚠️ The policies on {} are invalid, so no extension can be checked. Nothing changed; ask (or approve) again once they are fixed.",
        code(default_branch)
    )
}

/// What the revoked note says of the files on the default branch.
pub enum RevertNote<'a> {
    /// The revert PR (named) was merged.
    Merged(&'a str),
    /// Nothing was left to remove (they were removed by hand, say).
    FilesGone,
    /// The grant never reached the default branch.
    Nothing,
}

/// The revert PR could not be merged (`why`); a fresh change of the bot's removed the files.
pub fn revert_replaced_comment(
    replaced: Option<&str>,
    why: &str,
    merged: &str,
    forge: ForgeKind,
) -> String {
    let pr = noun(forge);
    let old = replaced.map_or_else(|| format!("The revert {pr}"), |old| format!("Revert {old}"));
    format!(
        "↪️ {old} could not be merged ({}), so breakglass removed the grant's files through {merged} instead.",
        inert(why)
    )
}

pub fn revert_pr_title(id: &str, expires_at: DateTime<Utc>) -> String {
    format!("breakglass: revoke {id} at {}", iso(expires_at))
}

pub fn revert_pr_body(
    id: &str,
    original_pr: &str,
    expires_at: DateTime<Utc>,
    forge: ForgeKind,
) -> String {
    let pr = noun(forge);
    format!(
        "Removes the grant of {original_pr} (request `{id}`). breakglass merges this {pr} itself at **{}**, after revoking the access, or earlier on `/breakglass revoke`.\n\nDo not merge it by hand: the bot revokes first, then merges.",
        iso(expires_at)
    )
}

pub fn request_pr_body(id: &str, requester: &str, comment_url_or_issue: &str) -> String {
    format!(
        "Access request `{id}` opened by breakglass on behalf of @{requester} ({comment_url_or_issue})."
    )
}

pub fn request_pr_opened_comment(requester: &str, pr: &str) -> String {
    format!("📝 @{requester}, your request is {pr}. It is checked against the policy there.")
}

/// The requester took back their own request with `/breakglass deny`: a withdrawal, not a
/// denial.
pub fn withdrawn_comment(requester: &str, reason: Option<&str>) -> String {
    match reason {
        Some(reason) => format!(
            "↩️ Request withdrawn by the requester, @{requester}: {}. Closing.",
            code(reason)
        ),
        None => format!("↩️ Request withdrawn by the requester, @{requester}. Closing."),
    }
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
    reactions: &[String],
    forge: ForgeKind,
) -> String {
    let who = approvers
        .iter()
        .map(|a| mention(a))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "🚨 **Review overdue** since {}: the fast-path grant of `{environment}/{role}` to @{requester} has not been reviewed. {who}: after checking it, {}.",
        iso(due),
        review_ways(reactions, forge)
    )
}

pub fn reviewed_comment(reviewer: &str) -> String {
    format!("✔️ After-the-fact review by @{reviewer} recorded; `breakglass/needs-review` removed.")
}

pub fn extended_comment(requester: &str, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!(
        "{} ({}).",
        extended_marker(requester, expires_at),
        relative(now, expires_at)
    )
}

/// Appended to the note of an extension the requester got alone on fast path `rule`, after an
/// approval or a finished review: it is reviewed after the fact, by `due`.
pub fn extension_review_line(rule: &str, due: DateTime<Utc>) -> String {
    format!(
        "\n\nGiven on the fast path `{rule}` without approval: an approver reviews it after the fact (an approval emoji on this PR, or `/breakglass reviewed`), due **{}**.",
        crate::clock::iso(due)
    )
}

/// How the note of one extension starts (its new expiry names it): a step run again looks
/// for it before saying it.
pub fn extended_marker(requester: &str, expires_at: DateTime<Utc>) -> String {
    format!(
        "⏳ Extended: @{requester}'s access now expires at **{}**",
        iso(expires_at)
    )
}

pub fn extension_needs_approval_comment(ask: &ExtensionAsk<'_>, approvals: u32) -> String {
    format!(
        "⏳ {} asks for {} more. It needs approval: {}",
        ask.by,
        ask.duration,
        extension_approval_how(ask, approvals)
    )
}

/// An extension the requester asked for and approvers are to approve.
pub struct ExtensionAsk<'a> {
    /// `@login` of the requester.
    pub by: &'a str,
    /// The time asked for, as the command gave it (`30m`).
    pub duration: &'a str,
    pub approvers: &'a [String],
    /// Whether to ping the approvers: only at the first ask on the grant's current expiry, so
    /// that asking again does not page a team again.
    pub ping: bool,
    /// The policy's approval emoji (GitHub's names) and the forge, to say how to approve.
    pub reactions: &'a [String],
    pub forge: ForgeKind,
    /// The grant's own change request, named and linked (`PR #12`): its emoji count, also
    /// when the ask was made on the revert PR.
    pub change: &'a str,
}

/// Who approves an extension, and how.
fn extension_approval_how(ask: &ExtensionAsk<'_>, approvals: u32) -> String {
    let approvers = if ask.ping {
        mentions(ask.approvers)
    } else {
        let named: Vec<String> = ask
            .approvers
            .iter()
            .map(|p| format!("`{}`", mention(p)))
            .collect();
        named.join(", ")
    };
    let (who, react) = if approvals > 1 {
        (
            format!("{approvals} approvers ({approvers}) comment"),
            "react",
        )
    } else {
        (format!("an approver ({approvers}) comments"), "reacts")
    };
    format!(
        "{who} `/breakglass approve` (or `/breakglass extend {}`), or {react} with {} on {} itself after this ask (an emoji put on before it approved something else).",
        ask.duration,
        reactions(ask.reactions, ask.forge),
        ask.change
    )
}

/// One approver's `/breakglass extend` of a grant that needs more than one.
pub fn extension_approval_recorded_comment(
    approver: &str,
    by: &str,
    have: usize,
    need: u32,
) -> String {
    format!(
        "👍 @{approver} approves an extension by {by} ({have} of {need}); another approver's `/breakglass approve` (or `/breakglass extend {by}`) extends it."
    )
}

/// An extension the requester asked for on their own, under a fast-path rule that no longer
/// applies to them (off call, the label gone, an overdue review).
pub fn extension_fast_path_lapsed_comment(
    ask: &ExtensionAsk<'_>,
    rule: &str,
    reasons: &[String],
) -> String {
    format!(
        "⏳ {} asks for {} more. Fast path `{rule}` no longer applies: {}. It needs approval: {}",
        ask.by,
        ask.duration,
        inert(&reasons.join("; ")),
        extension_approval_how(ask, 1)
    )
}

pub fn extension_refused_comment(total: &str, max: &str) -> String {
    format!(
        "🙅 That would make {total} in total, above the policy's max_duration {max}. Ask for less, or open a new request."
    )
}

/// An extension of a grant whose requester the policy no longer names among its requesters
/// (off the list, or out of the team that named them): nobody can extend it, as nobody could
/// grant them that access anew. It ends at its expiry.
pub fn extension_requester_removed_comment(
    requester: &str,
    environment: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> String {
    format!(
        "🙅 @{requester} is no longer among the requesters of the {} policy, so the grant cannot be extended; it ends at **{}** ({}).",
        code(environment),
        iso(expires_at),
        relative(now, expires_at)
    )
}

/// An extension asked for after the grant's expiry, before its revoke ran.
pub fn extension_after_expiry_comment(expired_at: DateTime<Utc>) -> String {
    format!(
        "⌛ This grant expired at {}; it is being revoked and cannot be extended. Open a new request for more time.",
        crate::clock::iso(expired_at)
    )
}

/// An extension of a grant that is a merged grant file: its expiry is written in the file (and
/// enforced by the cloud for the shipped templates), so more time is a new reviewed change, that
/// is, a new request.
pub fn extension_in_files_comment(paths: &[String], expires_at: DateTime<Utc>) -> String {
    let files: Vec<String> = paths.iter().map(|p| code(p)).collect();
    format!(
        "🙅 This grant is its grant file ({}), merged with its expiry written in it ({}): it cannot be extended in place. Open a new request for more time.",
        files.join(", "),
        crate::clock::iso(expires_at)
    )
}

pub fn not_allowed_comment(login: &str, what: &str) -> String {
    format!("🙅 @{login}, only {what}.")
}

pub fn no_request_here_comment(command: &str, forge: ForgeKind) -> String {
    let pr = noun(forge);
    format!(
        "`/breakglass {command}` works on a breakglass request {pr}; this is not one (or it is not in a state where it applies)."
    )
}

/// `/breakglass <command>` on a PR whose request the bot refused without a record of it (a file
/// that does not parse or is misnamed, several request files, a fork…): what the refusal above
/// asks for comes first.
pub fn request_refused_here_comment(command: &str, forge: ForgeKind) -> String {
    let pr = noun(forge);
    format!(
        "`/breakglass {command}` needs a request breakglass could read, and this {pr}'s was refused: breakglass's comment above says why and what to do."
    )
}

/// Whether a note of the bot's refuses a PR's request (the ⛔ and ❌ notes).
pub fn is_refusal(note: &str) -> bool {
    note.starts_with('⛔') || note.starts_with('❌')
}

/// Why a request is denied, for a command on it that does not apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeniedBecause {
    /// Rules of the environment's policy that it fails.
    Rules {
        environment: String,
        rules: Vec<String>,
    },
    /// Its PR changes files beyond its request.
    BeyondRequest,
    /// Its role cannot be granted by its provider.
    Unservable,
}

/// `/breakglass <command>` on a request that has no verdict yet.
pub fn not_decided_yet_comment(command: &str, id: &str) -> String {
    format!(
        "⏳ `/breakglass {command}` came before request {} was decided, so it was not taken. See the verdict once it is posted, and give it again if it applies then.",
        code(id)
    )
}

/// `/breakglass <command>` (approve, revoke, …) on a request that is denied: what failed (when
/// known), that no approval merges it, and that a push fixing it is decided again.
pub fn denied_request_comment(
    command: &str,
    id: &str,
    why: &[DeniedBecause],
    forge: ForgeKind,
) -> String {
    let pr = noun(forge);
    let beyond = why.contains(&DeniedBecause::BeyondRequest);
    let why: Vec<String> = why
        .iter()
        .map(|because| match because {
            DeniedBecause::Rules { environment, rules } => {
                let rules: Vec<String> = rules.iter().map(|r| code(r)).collect();
                format!("by the {} policy ({})", code(environment), rules.join(", "))
            }
            DeniedBecause::BeyondRequest => format!("as its {pr} changes files beyond its request"),
            DeniedBecause::Unservable => "as its role cannot be granted".into(),
        })
        .collect();
    let why = if why.is_empty() {
        String::new()
    } else {
        format!(" {}", why.join(" and "))
    };
    let fix = if beyond {
        format!("Push a fix to this {pr} (its request file alone)")
    } else {
        format!("Push a fixed request file to this {pr}")
    };
    format!(
        "ℹ️ `/breakglass {command}` does not apply: request {} is denied{why}, so no approval merges it and nothing is granted. {fix} and it is decided again.",
        code(id)
    )
}

/// A request asked for by comment on a thread, for a reply there (its status, or where a
/// command about it is given).
pub struct AskedHere {
    pub id: String,
    /// Its PR, as the forge links it (`#12`, `!12`).
    pub pr: String,
    pub state: String,
}

/// `/breakglass <command>` on the issue (or other PR) where requests were asked for by
/// comment: it is given on a request's PR; which those are.
pub fn on_its_request_pr_comment(command: &str, asked: &[AskedHere], forge: ForgeKind) -> String {
    let pr = noun(forge);
    let start = format!("ℹ️ `/breakglass {command}` works on a request's {pr}, not here.");
    match asked {
        [one] => format!(
            "{start} Request {}, asked for here, is {} (**{}**): comment it there.",
            code(&one.id),
            one.pr,
            one.state
        ),
        _ => {
            let list: Vec<String> = asked
                .iter()
                .map(|a| format!("- {} {} (**{}**)", code(&a.id), a.pr, a.state))
                .collect();
            format!(
                "{start} Requests asked for here:\n\n{}\n\nComment it on the {pr} of the request it is for.",
                list.join("\n")
            )
        }
    }
}

/// `/breakglass <command>` on a request in a state where it does not apply: the state, and
/// what does apply now.
pub fn not_in_this_state_comment(
    command: &str,
    id: &str,
    state: RequestState,
    forge: ForgeKind,
) -> String {
    let pr = noun(forge);
    let ask_anew = |again: &str| format!(" For access{again}, ask anew with `{REQUEST_USAGE}`.");
    let (what, then): (&str, String) = match state {
        RequestState::Pending => (
            "waiting for approval",
            " An approver grants it with `/breakglass approve` or closes it with `/breakglass deny`; the requester can withdraw it with `/breakglass deny`.".into(),
        ),
        RequestState::Denied => (
            "denied by the policy",
            format!(" Push a fixed request file to its {pr} and it is checked again."),
        ),
        RequestState::Approved => (
            "approved and being merged",
            " Once it is granted, `/breakglass revoke` ends it.".into(),
        ),
        RequestState::Active => (
            "already granted",
            " `/breakglass revoke` ends it now; `/breakglass extend <duration>` asks for more time.".into(),
        ),
        RequestState::Revoking => ("being revoked now", String::new()),
        RequestState::Revoked => (
            "over: its access was revoked",
            ask_anew(" again"),
        ),
        RequestState::Closed => (
            "closed without a grant",
            ask_anew(""),
        ),
    };
    format!(
        "ℹ️ `/breakglass {command}` does not apply: request {} is {what} (**{state}**).{then}",
        code(id)
    )
}

/// An approval of an extension on a grant whose requester asked for none.
pub fn no_extension_asked_comment() -> String {
    "ℹ️ Nothing to approve: this grant is active and no extension is asked for. Its requester asks with `/breakglass extend <duration>`; a fast-path grant is reviewed with `/breakglass reviewed`.".into()
}

/// How a closed request was closed, as its record of the closing says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closing<'a> {
    /// `/breakglass deny` by an approver (`by`, when recorded).
    Denied {
        by: Option<&'a str>,
        reason: Option<&'a str>,
    },
    /// `/breakglass deny` by the requester.
    Withdrawn { reason: Option<&'a str> },
    /// Nobody approved it in time.
    Expired,
    /// Its PR was merged by hand (by `by`, when recorded), without breakglass: never granted.
    MergedByHand { by: Option<&'a str> },
    /// Its PR was closed (by `by`, when recorded), or anything else.
    Other { by: Option<&'a str> },
}

/// The detail of `/breakglass status` on a closed request. The denier is named without `@`:
/// asking for the status pings nobody.
pub fn closed_status_detail(closing: Closing<'_>) -> String {
    let because = |reason: Option<&str>| reason.map(|r| format!(": {}", code(r)));
    match closing {
        Closing::Denied { by, reason } => format!(
            "Denied{}{}.",
            by.map(|login| format!(" by {login}")).unwrap_or_default(),
            because(reason).unwrap_or_default()
        ),
        Closing::Withdrawn { reason } => format!(
            "Withdrawn by the requester{}.",
            because(reason).unwrap_or_default()
        ),
        Closing::Expired => "Closed: nobody approved it in time.".into(),
        Closing::MergedByHand { by } => format!(
            "Merged by hand{} without breakglass: never granted.",
            by.map(|login| format!(" by {login}")).unwrap_or_default()
        ),
        Closing::Other { by } => format!(
            "Closed{}.",
            by.map(|login| format!(" by {login}")).unwrap_or_default()
        ),
    }
}

/// An approved request whose PR someone merged by hand (`by`, when the forge says) before the
/// bot's own merge: nothing granted. Names go without `@`.
pub fn merged_by_hand_comment(by: Option<&str>, forge: ForgeKind) -> String {
    let pr = noun(forge);
    let by = by.map(|login| format!(" by {login}")).unwrap_or_default();
    format!(
        "🚫 This {pr} was merged by hand{by}, not by breakglass, so nothing was granted: a request is granted only by breakglass's own merge, checked at merge time. breakglass removes its request file from the default branch. To ask again, open a new request: a new file in a new {pr}, or a `{REQUEST_USAGE}` comment."
    )
}

/// Why a request was closed, for the reply to its PR reopened. Nobody is pinged: names go
/// without `@`. `pending_timeout` is how long a request waits for approval.
fn closing_why(closing: Closing<'_>, pending_timeout: &str, forge: ForgeKind) -> String {
    let pr = noun(forge);
    let by = |by: Option<&str>| by.map(|login| format!(" by {login}")).unwrap_or_default();
    let because =
        |reason: Option<&str>| reason.map(|r| format!(": {}", code(r))).unwrap_or_default();
    match closing {
        Closing::Denied { by: who, reason } => format!("denied{}{}", by(who), because(reason)),
        Closing::Withdrawn { reason } => {
            format!("withdrawn by the requester{}", because(reason))
        }
        Closing::Expired => format!("nobody approved it within {pending_timeout}"),
        Closing::MergedByHand { by: who } => {
            format!("merged by hand{} without breakglass", by(who))
        }
        Closing::Other { by: who } => format!("its {pr} was closed{}", by(who)),
    }
}

/// A request PR reopened after its request was closed without a grant: the request is not
/// decided again, and a new request is how to ask again.
pub fn reopened_closed_comment(
    id: &str,
    closing: Closing<'_>,
    pending_timeout: &str,
    forge: ForgeKind,
) -> String {
    let pr = noun(forge);
    format!(
        "🔒 Request {} is closed ({}): breakglass does not decide it again, so reopening this {pr} grants nothing. To ask again, open a new request: a new file `requests/<environment>/<new id>.yaml` in a new {pr}, or a `{}` comment.",
        code(id),
        closing_why(closing, pending_timeout, forge),
        REQUEST_USAGE
    )
}

/// The detail of `/breakglass status` on a pending request: who asks for what and for how
/// long, and the approvals so far. The requester is named, not mentioned: anyone may ask for
/// the status, and the answer must not page them each time.
pub fn pending_status_detail(
    requester: &str,
    what: &str,
    duration: &str,
    approved_by: &[String],
    need: u32,
) -> String {
    let have = approved_by.len();
    // Named, not pinged: anyone may ask for the status.
    let by = if approved_by.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = approved_by.iter().map(|login| code(login)).collect();
        format!(" (by {})", names.join(", "))
    };
    format!(
        "{} asks for {} for {duration}. Waiting for approval: {have} of {need}{by}.",
        code(requester),
        code(what)
    )
}

/// How a grant was let through, for `/breakglass status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantedBy<'a> {
    /// Approved before its merge by these approvers (none: the policy asks for no approval);
    /// `None` when the record does not say.
    Approvers(Option<&'a [String]>),
    /// Merged on the fast path by `rule`, with its review after the fact: who and when, once
    /// done; until then when it is due, if known.
    FastPath {
        rule: &'a str,
        reviewed: Option<(&'a str, DateTime<Utc>)>,
        due: Option<DateTime<Utc>>,
    },
}

/// The detail of `/breakglass status` on a granted request: who has what until when, and who
/// let it through. Everyone is named, not mentioned.
pub fn active_status_detail(
    requester: &str,
    what: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
    by: GrantedBy<'_>,
) -> String {
    let names = |logins: &[String]| {
        logins
            .iter()
            .map(|l| code(l))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let how = match by {
        GrantedBy::Approvers(None) => "Approved before its merge.".to_owned(),
        GrantedBy::Approvers(Some([])) => {
            "Granted without approval: the policy asks for none.".to_owned()
        }
        GrantedBy::Approvers(Some(approvers)) => format!("Approved by {}.", names(approvers)),
        GrantedBy::FastPath {
            rule,
            reviewed: Some((by, at)),
            ..
        } => format!(
            "Granted on the fast path (rule {}); reviewed after the fact by {} at {}.",
            code(rule),
            code(by),
            iso(at)
        ),
        GrantedBy::FastPath {
            rule,
            reviewed: None,
            due,
        } => format!(
            "Granted on the fast path (rule {}); its review after the fact is not done yet{}.",
            code(rule),
            due.map(|at| format!(" (due {})", iso(at)))
                .unwrap_or_default()
        ),
    };
    format!(
        "{} has {} until {} ({}). {how}",
        code(requester),
        code(what),
        iso(expires_at),
        relative(now, expires_at)
    )
}

/// The `breakglass/policy` status of a request closed without a grant (at most 140
/// characters, GitHub's limit for a status description). `pending_timeout` is how long a
/// request waits for approval.
pub fn closed_check_description(closing: Closing<'_>, pending_timeout: &str) -> String {
    let text = match closing {
        Closing::Denied { by: Some(by), .. } => format!("denied by @{by}"),
        Closing::Denied { by: None, .. } => "denied by an approver".to_owned(),
        Closing::Withdrawn { .. } => "withdrawn by the requester".to_owned(),
        Closing::Expired => format!("expired unapproved after {pending_timeout}"),
        Closing::MergedByHand { by: Some(by) } => format!("merged by hand by @{by}: never granted"),
        Closing::MergedByHand { by: None } => "merged by hand: never granted".to_owned(),
        Closing::Other { by: Some(by) } => format!("closed by @{by} without a grant"),
        Closing::Other { by: None } => "closed without a grant".to_owned(),
    };
    text.chars().take(140).collect()
}

/// `/breakglass reviewed` on a request that was approved before its merge: there is no review
/// after the fact to close.
pub fn not_fast_path_review_comment(id: &str) -> String {
    format!(
        "ℹ️ Nothing to review: request {} was not granted on the fast path. It was approved before its merge, so it has no after-the-fact review.",
        code(id)
    )
}

/// `/breakglass reviewed` said before the fast-path extension its review now covers was asked
/// for, or too close to it to tell.
pub fn review_again_comment(reviewer: &str, forge: ForgeKind) -> String {
    format!(
        "⏱️ @{reviewer}, your review came before this grant's latest extension was asked for (or within the same second), so it does not cover the extension. Please review it again: `/breakglass reviewed`, or a new approval emoji on this {}.",
        noun(forge)
    )
}

/// `/breakglass reviewed` on a fast-path grant whose review is done: by whom and when, if known.
pub fn already_reviewed_comment(id: &str, reviewed: Option<(&str, DateTime<Utc>)>) -> String {
    match reviewed {
        Some((by, at)) => format!(
            "ℹ️ Request {} was already reviewed by {} at {}.",
            code(id),
            code(by),
            iso(at)
        ),
        None => format!("ℹ️ Request {} was already reviewed.", code(id)),
    }
}

/// The replies to the commands of one comment, as one note, in command order: a comment of
/// many commands costs one of the forge's content-creation calls.
pub fn replies_comment(replies: &[String]) -> String {
    if let [one] = replies {
        return one.clone();
    }
    let replies: Vec<&str> = replies.iter().map(|r| r.trim_end()).collect();
    replies.join("\n\n---\n\n")
}

/// A request asked by comment names no role, and its environment has several.
pub fn name_a_role_comment(environment: &str, duration: &str, roles: &[String]) -> String {
    let roles: Vec<String> = roles.iter().map(|r| code(r)).collect();
    format!(
        "⚠️ {} has several roles; name one: `/breakglass {environment} {duration} <role> -- reason` with `<role>` one of {}.",
        code(environment),
        roles.join(", ")
    )
}

pub fn status_comment(id: &str, state: &str, detail: &str) -> String {
    format!("ℹ️ Request {}: **{state}**. {detail}", code(id))
}

/// `/breakglass status` on an issue (or another PR) where requests were asked for by comment:
/// each of them, with its PR.
/// Each line is a request and its status detail.
pub fn asked_here_status_comment(lines: &[(AskedHere, String)]) -> String {
    let line = |(asked, detail): &(AskedHere, String)| {
        format!(
            "Request {} ({}): **{}**. {detail}",
            code(&asked.id),
            asked.pr,
            asked.state
        )
    };
    match lines {
        [one] => format!("ℹ️ {}", line(one)),
        _ => {
            let list: Vec<String> = lines.iter().map(|l| format!("- {}", line(l))).collect();
            format!("ℹ️ Requests asked for here:\n\n{}", list.join("\n"))
        }
    }
}

pub fn help_comment() -> String {
    help_text()
}

/// A command the bot could not read.
pub fn parse_error_comment(err: &CommandParseError) -> String {
    match err.usage() {
        Some(usage) => format!("⚠️ {}\n\nUsage: `{usage}`", inert(&err.to_string())),
        None => format!("⚠️ {}\n\n{}", inert(&err.to_string()), help_text()),
    }
}

/// Every malformed command of one comment, in one reply: a comment of many bad lines gets one
/// answer, not one each.
pub fn parse_errors_comment(errors: &[CommandParseError]) -> String {
    if let [one] = errors {
        return parse_error_comment(one);
    }
    let mut text = format!(
        "⚠️ {} lines of this comment are not commands:\n",
        errors.len()
    );
    let mut usages = Vec::new();
    for err in errors {
        text.push_str(&format!("\n- {}", inert(&err.to_string())));
        let usage = err.usage().map(|u| format!("Usage: `{u}`"));
        if !usages.contains(&usage) {
            usages.push(usage);
        }
    }
    for usage in usages {
        text.push_str("\n\n");
        text.push_str(&usage.unwrap_or_else(help_text));
    }
    text
}

pub fn direct_push_comment(paths: &[String]) -> String {
    format!(
        "🚨 **Request files reached the default branch without breakglass**: {}. They were not granted; breakglass removes them.",
        paths.iter().map(|p| code(p)).collect::<Vec<_>>().join(", ")
    )
}

/// Someone changed an active grant's request or grant files on the default branch.
pub fn grant_files_changed_comment(pusher: &str, paths: &[String]) -> String {
    format!(
        "🚨 **Grant files changed without breakglass**: {} changed {} on the default branch. Only breakglass's own merges change a grant, so this one is revoked now (`reconcile`); its revert removes the changed files. Ask again if the access is still needed.",
        mention(pusher),
        paths.iter().map(|p| code(p)).collect::<Vec<_>>().join(", ")
    )
}

/// Someone else pushed to a branch the bot built.
pub fn tampering_comment(pusher: Option<&str>, branch: &str, found: &str) -> String {
    let who = pusher.map_or_else(|| "Someone".to_owned(), mention);
    format!(
        "🚨 **Tampering**: {who} {} breakglass's branch {}. breakglass merges only its own commits there: the branch was put back and the push is recorded in the audit log.",
        pushed(found),
        code(branch)
    )
}

/// What a push to a branch did: a commit pushed, or (the all-zero commit the forges name
/// then) the branch deleted.
fn pushed(found: &str) -> String {
    if !found.is_empty() && found.bytes().all(|b| b == b'0') {
        "deleted".to_owned()
    } else {
        format!("pushed {} to", code(found.get(..12).unwrap_or(found)))
    }
}

/// The pusher of a tampering found at merge time (said as "Someone"), once its webhook names
/// them.
pub fn tampering_pusher_comment(pusher: &str, branch: &str, found: &str) -> String {
    format!(
        "🚨 **Tampering**: {} {} breakglass's branch {} (found at merge time above). The push is recorded in the audit log under their name.",
        mention(pusher),
        pushed(found),
        code(branch)
    )
}

/// A request PR merged into another branch than the default branch (by a person, or by the
/// bot's merge after a retarget).
pub fn merged_elsewhere_comment(base: &str) -> String {
    format!(
        "⚠️ This pull request was merged into {}, not into the default branch: breakglass grants only what it merged there, so the request is closed and **nothing was granted**. Ask again with a new request.",
        code(base)
    )
}

/// A granted request whose merge went into another branch (the PR was retargeted while the
/// bot merged it): its access ends now.
pub fn granted_elsewhere_comment(base: &str) -> String {
    format!(
        "🚨 **Merged into the wrong branch**: this pull request was retargeted to {} while breakglass merged it, so the request file is not on the default branch. Any access granted for it is being **revoked now** (if the grant had not been applied yet, it never will be). Ask again with a new request.",
        code(base)
    )
}

/// A revert PR retargeted while breakglass merged it: its files are removed by a fresh change.
pub fn revert_elsewhere_comment(base: &str, paths: &[String]) -> String {
    format!(
        "🚨 **The revert was merged into {}, not into the default branch** (retargeted while breakglass merged it). The access was revoked through its provider already; this change removes {} from the default branch.",
        code(base),
        paths.iter().map(|p| code(p)).collect::<Vec<_>>().join(", ")
    )
}

/// A revert PR merged into another branch by someone while its grant runs: nothing ends early.
pub fn revert_merged_elsewhere_early_comment(by: &str, base: &str, forge: ForgeKind) -> String {
    let pr = noun(forge);
    format!(
        "⚠️ {} merged this grant's revert {pr} into {}, not into the default branch: that ends nothing. The access stays until its expiry (or `/breakglass revoke` by the requester or an approver), when breakglass removes the request file from the default branch with a fresh change.",
        mention(by),
        code(base)
    )
}

/// A removal PR retargeted while breakglass merged it: its files are removed by a fresh change.
pub fn removal_elsewhere_comment(base: &str, paths: &[String]) -> String {
    format!(
        "🚨 **The removal was merged into {}, not into the default branch** (retargeted while breakglass merged it). This change removes {} from the default branch.",
        code(base),
        paths.iter().map(|p| code(p)).collect::<Vec<_>>().join(", ")
    )
}

/// A merge that did not happen, and why (the forge's words or the files in the way); the
/// request waits for a push or a new approval.
pub fn not_merged_comment(why: &str, forge: ForgeKind) -> String {
    let pr = noun(forge);
    format!(
        "⚠️ Not merged: {}. breakglass will not try again until the {pr} changes or an approver approves again.",
        inert(why)
    )
}

/// A merge that went wrong for good: the request is closed, nothing was granted, and only a
/// new request asks again (a merged PR cannot change or be approved into a grant).
pub fn retargeted_merge_comment(why: &str) -> String {
    format!(
        "⚠️ Not merged: {}. The request is closed and **nothing was granted**; to ask again, open a new request.",
        inert(why)
    )
}

/// A revert could not be merged: the access itself is already revoked through the provider.
pub fn revert_blocked_comment(why: &str, branch: &str, protection: bool) -> String {
    let mut text = format!(
        "🚨 **The revert could not be merged**: {}. The access was revoked through its provider; the request file stays on {} until the revert lands, and breakglass keeps trying.",
        inert(why),
        code(branch)
    );
    if protection {
        text.push_str(" Branch protection refused the bot: allow it to bypass required reviews and status checks on the default branch (see \"Security model\" in the README).");
    }
    text
}

/// A merged request whose grant cannot be applied (and will not be, however often retried).
pub fn grant_failed_comment(why: &str) -> String {
    format!(
        "🚫 **The grant could not be applied**: {}. breakglass revokes the request now; fix the role or the bot's setup and ask again.",
        inert(why)
    )
}

/// A role the bot cannot serve, found before anything is merged.
pub fn role_unservable_comment(environment: &str, role: &str, why: &str) -> String {
    format!(
        "⛔ **`{environment}/{role}` cannot be granted**: {}. breakglass will not merge a request it could not serve; fix the policy or the bot's setup.",
        inert(why)
    )
}

/// The provider no longer holds a grant as it was applied (changed or removed outside breakglass).
pub fn drift_comment(drift: &[String]) -> String {
    let list: Vec<String> = drift.iter().map(|d| format!("- {}", inert(d))).collect();
    format!(
        "🚨 **This grant was changed outside breakglass**; breakglass revokes it now:\n\n{}",
        if list.is_empty() {
            "- it is no longer in place".to_owned()
        } else {
            list.join("\n")
        }
    )
}

/// A PR from another repository.
pub fn fork_refused_comment(repo: &str, forge: ForgeKind) -> String {
    let pr = noun(forge);
    format!(
        "⛔ breakglass does not take requests from forks ({}). Open the {pr} from a branch of this repository, or comment `{}`.",
        code(repo),
        REQUEST_USAGE
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
pub fn draft_note(forge: ForgeKind) -> String {
    let pr = noun(forge);
    format!(
        "📝 This {pr} is a draft: breakglass decides it but merges nothing until it is marked ready for review."
    )
}

/// An iac request PR re-opened from the bot's own branch (the bot writes only to its branches).
pub fn reopened_comment(new_pr: &str) -> String {
    format!(
        "🔁 This request needs a grant file rendered by breakglass, and breakglass writes only to its own branches: it re-opened the request as {new_pr}. Approve it there."
    )
}

/// What an approver's emoji on the PR would do now (see [`emoji_on_a_note_comment`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmojiAwaited {
    /// Approve the pending request.
    Approval,
    /// Approve the extension the grant's requester asked for.
    Extension,
    /// Review the fast-path grant after the fact.
    Review,
}

/// An approver's approval emoji on one of the bot's notes, while the request awaits what
/// `awaiting` says: it counts only on the PR or MR itself.
pub fn emoji_on_a_note_comment(
    approver: &str,
    emoji: &str,
    awaiting: EmojiAwaited,
    forge: ForgeKind,
) -> String {
    let (what, command) = match (awaiting, forge) {
        (EmojiAwaited::Review, _) => ("reviews", "`/breakglass reviewed`"),
        (EmojiAwaited::Extension, _) => ("approves", "`/breakglass approve`"),
        (EmojiAwaited::Approval, ForgeKind::GitHub) => {
            ("approves", "an approving review, or `/breakglass approve`")
        }
        (EmojiAwaited::Approval, ForgeKind::GitLab) => (
            "approves",
            "the **Approve** button, or `/breakglass approve`",
        ),
    };
    let (emoji, place) = match forge {
        ForgeKind::GitHub => (
            emoji.to_owned(),
            "the PR itself (its description at the top)",
        ),
        ForgeKind::GitLab => (
            crate::forge::gitlab::award_name(emoji).to_owned(),
            "the MR itself (below its description)",
        ),
    };
    format!(
        "@{approver}, your {} is on breakglass's comment, and an emoji there {what} nothing. Put it on {place}, or use {command}.",
        code(&format!(":{emoji}:"))
    )
}

/// An approval given while the policies on the default branch are invalid: nobody can be
/// checked as an approver, so it is not counted.
pub fn review_unchecked_comment(actor: &str, default_branch: &str) -> String {
    format!(
        "⚠️ @{actor}, your review is not counted: the policies on {} are invalid, so nobody can be checked as an approver. Review again once they are fixed.",
        code(default_branch)
    )
}

pub fn approval_unchecked_comment(actor: &str, default_branch: &str) -> String {
    format!(
        "⚠️ @{actor}, your approval is not counted: the policies on {} are invalid, so nobody can be checked as an approver. Nothing is merged until they are fixed; approve again then.",
        code(default_branch)
    )
}

/// An approval too close to the latest push to tell which version it approved, with the ways
/// to approve again that `forge` has.
pub fn approve_again_comment(approver: &str, stale: bool, forge: ForgeKind) -> String {
    let why = if stale {
        "was given before the latest push"
    } else {
        "came within the same second as the latest push (or before breakglass heard when that push came), so breakglass cannot tell which version it approves"
    };
    let button = match forge {
        ForgeKind::GitHub => "an approving review",
        ForgeKind::GitLab => "the **Approve** button (after revoking your earlier approval)",
    };
    format!(
        "⏱️ @{approver}, your approval {why}. Please approve the current version again (a new 👍 after removing the old one, {button}, or `/breakglass approve`)."
    )
}

/// An approver's emoji on a fast-path grant too close to the push of the merged version to
/// tell which version it reviews, with the two ways that close the review.
pub fn emoji_review_again_comment(approver: &str) -> String {
    format!(
        "⏱️ @{approver}, your emoji came within the same second as the push of the version that was merged (or before breakglass heard when that push came), so breakglass cannot tell which version it reviews. To close the after-the-fact review of what was merged, put a new approval emoji (after removing the old one) or comment `/breakglass reviewed`."
    )
}

/// A GitLab approval whose time GitLab does not give (its approvals API has no `approved_at`
/// before it was added): which version it approves cannot be told.
pub fn untimed_approval_comment(approver: &str) -> String {
    format!(
        "⏱️ @{approver}, your approval is not counted: this GitLab does not say when you approved, so breakglass cannot tell which version you approved. Please approve with a 👍 emoji or `/breakglass approve` instead."
    )
}

/// A request that nobody approved in time.
pub fn pending_expired_comment(after: &str) -> String {
    format!(
        "⌛ Nobody approved this request within {after}: breakglass closed it. Ask again if access is still needed."
    )
}

/// A comment asked for more than one request.
pub fn one_request_per_comment() -> String {
    format!(
        "⚠️ One comment opens at most one request: only the first `{REQUEST_USAGE}` line was taken."
    )
}

/// A comment held more than one `/breakglass extend`.
pub fn one_extension_per_comment() -> &'static str {
    "⚠️ One comment asks for at most one extension: only the first `/breakglass extend <duration>` line was taken. Comment again for more."
}

/// A comment held more than one `/breakglass deny`.
pub fn one_deny_per_comment() -> &'static str {
    "⚠️ One comment denies once: only the first `/breakglass deny` line was taken."
}

/// A comment held both `/breakglass approve` and `/breakglass deny`: which one is meant cannot
/// be told, so neither is taken.
pub fn approve_and_deny_comment() -> &'static str {
    "⚠️ This comment both approves and denies (`/breakglass approve` and `/breakglass deny`), so breakglass took neither. Comment again with the one you mean."
}

/// An approver's `/breakglass approve` in the same second as the requester's ask for `by` more
/// (forge time on both sides): whether they read that ask cannot be told.
pub fn extension_approve_again_comment(approver: &str, requester: &str, by: &str) -> String {
    format!(
        "⏱️ @{approver}, your approval came within the same second as @{requester}'s ask for {by} more, so breakglass cannot tell whether you saw it: nothing was approved. Please approve again with `/breakglass approve` (or `/breakglass extend {by}`)."
    )
}

/// An approver's extension comment was made before the grant's current expiry was said.
pub fn extension_of_an_earlier_expiry_comment(
    approver: &str,
    by: &str,
    expires_at: DateTime<Utc>,
) -> String {
    format!(
        "ℹ️ @{approver}'s `/breakglass extend {by}` was made before breakglass said the grant now expires at **{}** (or too close to it to tell), so it was of the expiry before, which is extended already: it extends nothing. To extend further, comment it again.",
        iso(expires_at)
    )
}

/// An approver's extension comment was deleted or edited before the bot read it again.
pub fn extension_comment_gone_comment(approver: &str, by: &str) -> String {
    format!(
        "ℹ️ @{approver}'s `/breakglass extend {by}` was deleted or edited before breakglass read it again: nothing was extended."
    )
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

    /// Every reply that names the change request says what the forge calls it: an `MR` on
    /// GitLab, never a `PR`.
    #[test]
    fn gitlab_replies_speak_of_merge_requests() {
        let gl = ForgeKind::GitLab;
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let asked = [AskedHere {
            id: "r1".into(),
            pr: "!3".into(),
            state: "active".into(),
        }];
        let said = [
            invalid_policies_comment("main", &["x".into()], gl),
            out_of_scope_comment(&["policies/prod.yaml".into()], "requests/prod/r1.yaml", gl),
            not_a_file_comment("requests/prod/r1.yaml", EntryKind::Symlink, gl),
            several_requests_comment(&["a".into(), "b".into()], gl),
            too_many_files_comment(300, gl),
            uncomparable_comment(gl),
            merge_commits_comment(gl),
            review_text_command_comment("carol", gl),
            revert_replaced_comment(None, "closed", "!9", gl),
            revert_pr_body("r1", "!3", at, gl),
            no_request_here_comment("approve", gl),
            denied_request_comment("approve", "r1", &[DeniedBecause::BeyondRequest], gl),
            on_its_request_pr_comment("revoke", &asked, gl),
            not_in_this_state_comment("extend", "r1", RequestState::Denied, gl),
            reopened_closed_comment("r1", Closing::Other { by: None }, "24h", gl),
            not_merged_comment("conflict", gl),
            fork_refused_comment("eve/fork", gl),
            draft_note(gl),
        ];
        for text in said {
            assert!(
                text.contains("MR")
                    && !text
                        .split(|c: char| !c.is_alphanumeric())
                        .any(|w| w == "PR"),
                "{text}"
            );
        }
    }

    use super::*;

    #[test]
    fn closings_and_withdrawals_keep_user_text_in_code() {
        let reason = Some("`x` @acme/sre-leads\n/breakglass approve");
        let denied = closed_status_detail(Closing::Denied {
            by: Some("carol"),
            reason,
        });
        assert_eq!(
            denied,
            "Denied by carol: `` `x` @\u{2060}acme/sre-leads /breakglass approve ``."
        );
        assert_eq!(
            closed_status_detail(Closing::Withdrawn { reason: None }),
            "Withdrawn by the requester."
        );
        assert_eq!(
            closed_status_detail(Closing::Denied {
                by: None,
                reason: None
            }),
            "Denied."
        );
        let withdrawn = withdrawn_comment("alice", reason);
        assert!(!withdrawn.contains("denied"), "{withdrawn}");
        assert!(!withdrawn.contains('\n'), "{withdrawn}");
        assert_eq!(
            closed_status_detail(Closing::Other { by: Some("alice") }),
            "Closed by alice."
        );
        assert_eq!(closed_status_detail(Closing::Other { by: None }), "Closed.");
        let reopened = reopened_closed_comment(
            "r1",
            Closing::Denied {
                by: Some("carol"),
                reason,
            },
            "1d",
            ForgeKind::GitHub,
        );
        assert!(
            reopened.starts_with(
                "🔒 Request `r1` is closed (denied by carol: `` `x` @\u{2060}acme/sre-leads /breakglass approve ``): "
            ),
            "{reopened}"
        );
        assert!(!reopened.contains('\n'), "{reopened}");
    }

    #[test]
    fn a_command_on_a_denied_request_says_what_failed_when_known() {
        let why = [
            DeniedBecause::Rules {
                environment: "prod".into(),
                rules: vec!["max_duration".into(), "ticket_pattern".into()],
            },
            DeniedBecause::BeyondRequest,
        ];
        assert_eq!(
            denied_request_comment("approve", "r1", &why, ForgeKind::GitHub),
            "ℹ️ `/breakglass approve` does not apply: request `r1` is denied by the `prod` policy (`max_duration`, `ticket_pattern`) and as its PR changes files beyond its request, so no approval merges it and nothing is granted. Push a fix to this PR (its request file alone) and it is decided again."
        );
        assert!(
            denied_request_comment("extend", "r1", &[], ForgeKind::GitHub)
                .starts_with("ℹ️ `/breakglass extend` does not apply: request `r1` is denied, so")
        );
    }

    #[test]
    fn a_role_is_asked_for_in_code_with_no_raw_html() {
        let text = name_a_role_comment("prod", "1h", &["admin".into(), "readonly".into()]);
        assert_eq!(
            text,
            "⚠️ `prod` has several roles; name one: `/breakglass prod 1h <role> -- reason` with `<role>` one of `admin`, `readonly`."
        );
    }

    #[test]
    fn a_command_out_of_its_state_names_the_state() {
        let text = not_in_this_state_comment("deny", "r1", RequestState::Active, ForgeKind::GitHub);
        assert!(text.contains("already granted (**active**)"), "{text}");
        assert!(text.contains("`/breakglass revoke` ends it now"), "{text}");
        assert!(!text.contains("this is not one"), "{text}");
    }

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
            "PR",
        );
        // The reason ends in a backtick, so its span is padded.
        insta::assert_snapshot!(text, @r"
        🔓 **Access granted.** @alice has `prod/admin` until **2026-11-26T03:14:00Z** (in 1h).

        | | |
        |---|---|
        | request | `r1` |
        | approved by | @carol |
        | reason | `` incident: db `x` `` |
        | ticket | INC-1 |
        | revert | a revert PR follows this comment; breakglass merges it at expiry |

        `/breakglass revoke` ends it now · `/breakglass extend 30m` asks for more time · `/breakglass status`
        ");
    }

    /// The user text of the brief: a second line that is a command, and a team mention.
    const HOSTILE: &str = "ok\n/breakglass approve @acme/everyone";

    /// Whether `text` would act in a comment: a line a bot reads as a command, or a mention
    /// of the `acme` org that the forge would notify.
    #[track_caller]
    fn assert_inert(text: &str) {
        for line in text.lines() {
            assert!(
                !line.trim_start().to_lowercase().starts_with("/breakglass"),
                "a line reads as a command: {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("@acme"), "a live mention in\n{text}");
        // Markdown as a renderer reads it: the bot writes bold, lists and code spans, never
        // HTML, links, images or emphasis, so any of those came from the user text.
        use pulldown_cmark::{Event, Parser, Tag};
        for event in Parser::new(text) {
            let injected = matches!(
                event,
                Event::Html(_)
                    | Event::InlineHtml(_)
                    | Event::Start(Tag::Link { .. } | Tag::Image { .. } | Tag::Emphasis)
            );
            assert!(!injected, "markup {event:?} in\n{text}");
        }
    }

    #[test]
    fn user_input_cannot_escape_its_code_span() {
        assert_eq!(code("a`@team`b\n"), "``a`@\u{2060}team`b``");
        assert_eq!(code("``x"), "``` ``x ```");
        assert_eq!(code("line\r\none\u{202E}"), "`line  one`");
        let long = "x".repeat(300);
        assert_eq!(code(&long), format!("`{}…`", "x".repeat(MAX_SHOWN)));
    }

    #[test]
    fn a_hostile_reason_neither_commands_nor_mentions() {
        assert_eq!(
            code(HOSTILE),
            "`ok /breakglass approve @\u{2060}acme/everyone`"
        );
        assert_inert(&code(HOSTILE));
        assert_eq!(
            inert(HOSTILE),
            "ok /breakglass approve @\u{2060}acme/everyone"
        );
        assert_inert(&inert(HOSTILE));
        assert_eq!(inert("/breakglass approve"), "\\/breakglass approve");
    }

    #[test]
    fn inert_keeps_the_bots_code_spans_and_escapes_the_rest() {
        // The bot's own messages read as before.
        for plain in [
            "unknown command `aprove`; did you mean `/breakglass approve`?",
            "duration 8h is above the max_duration of `prod` (4h); ask for 4h or less",
            "line 3, column 11: duration `2 hours` is not a duration; write e.g. `90s`",
        ] {
            assert_eq!(inert(plain), plain);
        }
        // A backtick in the quoted value ends the bot's span early: what follows is escaped.
        let message = format!(
            "reason `{}` does not start with a reason code",
            "x` <img src=x> **ok** [link](u) | _y_ \\`z"
        );
        assert_eq!(
            inert(&message),
            r"reason `x` \<img src=x\> \*\*ok\*\* \[link\](u) \| \_y\_ \\`z` does not start with a reason code"
        );
        // An unclosed run stays literal.
        assert_eq!(inert("a ``b"), r"a \`\`b");
    }

    #[test]
    fn inert_text_links_to_nothing() {
        let wj = WORD_JOINER;
        assert_eq!(
            inert("go to https://evil.example/sso or WWW.evil.example, ftp://x"),
            format!("go to https:{wj}//evil.example/sso or WWW{wj}.evil.example, ftp:{wj}//x")
        );
        // Inside a code span nothing is a link, and it is copied as it is.
        assert_eq!(inert("`https://x` and `www.x`"), "`https://x` and `www.x`");
        // Not a link: a word that ends in www, a lone colon.
        assert_eq!(inert("awww. 10:30 a:/b"), "awww. 10:30 a:/b");
    }

    #[test]
    fn inert_text_references_no_issue_label_or_milestone() {
        let wj = WORD_JOINER;
        // A user's backtick ends the message's code span: `#1` then stands outside it.
        let said = inert(
            &crate::duration::HumanDuration::parse("1`#1`")
                .unwrap_err()
                .to_string(),
        );
        assert!(said.contains(&format!("#{wj}1")), "{said}");
        let said = inert("see !2, ~ops and %v1");
        assert_eq!(said, format!("see \\!{wj}2, \\~{wj}ops and %{wj}v1"));
        // Not references: inside a word, or not before a word.
        assert_eq!(inert("C#1 a ! b 50%"), "C#1 a \\! b 50%");
    }

    #[test]
    fn a_denial_shows_hostile_request_text_inert() {
        let policies = crate::policy::PolicySet::from_files(&[crate::policy::PolicyFile {
            path: "policies/prod.yaml".into(),
            text: "environment: prod\nmax_duration: 4h\nrequesters: [alice]\napprovers: [carol]\n\
                   reason_codes: [incident]\nticket_pattern: \"^INC-[0-9]+$\"\n\
                   roles:\n  admin:\n    provider: noop\n"
                .into(),
        }])
        .unwrap();
        let request = crate::request::AccessRequest::from_yaml(
            "environment: prod\nrole: admin\nduration: 1h\n\
             reason: \"x` @acme/everyone <b>fake</b>\\n/breakglass approve\"\n\
             ticket: \"INC-1`@acme/ops\"\n",
        )
        .unwrap();
        let ctx = crate::policy::decision::Context {
            requester: None,
            labels: &[],
            now: Utc.with_ymd_and_hms(2026, 11, 26, 2, 14, 0).unwrap(),
            path: None,
        };
        let decision = crate::policy::evaluate(&policies, &request, &ctx);
        assert_eq!(decision.violations.len(), 2, "{decision:?}");
        let text = decision_comment("r1", &decision, ForgeKind::GitHub);
        assert_inert(&text);
        assert!(text.contains("- **reason_codes**: reason `x`"), "{text}");
    }

    #[test]
    fn parse_errors_and_yaml_errors_echo_inertly() {
        let errors = crate::command::parse_commands("/breakglass @acme/everyone now");
        let Some(Err(err)) = errors.first() else {
            panic!("{errors:?}");
        };
        let text = parse_error_comment(err);
        assert_inert(&text);
        assert!(text.contains("acme/everyone"), "{text}");
        let text = invalid_request_comment(
            "requests/prod/r\n/breakglass approve.yaml",
            "line 2: `ok`\n/breakglass approve @acme/everyone",
        );
        assert_inert(&text);
        let text = invalid_policies_comment("main", &[HOSTILE.to_owned()], ForgeKind::GitHub);
        assert_inert(&text);
        assert!(
            text.contains("\n\n- ok /breakglass approve @\u{2060}acme/everyone\n\n"),
            "{text}"
        );
        assert_inert(&not_merged_comment(
            "the PR changes files beyond its request: docs/@acme/x.md, a\n/breakglass approve",
            ForgeKind::GitHub,
        ));
        assert_eq!(
            not_merged_comment("the pull request is a draft", ForgeKind::GitHub),
            "⚠️ Not merged: the pull request is a draft. breakglass will not try again until the PR changes or an approver approves again."
        );
        assert_inert(&retargeted_merge_comment(HOSTILE));
        assert_inert(&revert_merged_elsewhere_early_comment(
            "mallory",
            HOSTILE,
            ForgeKind::GitLab,
        ));
        assert_inert(&revert_blocked_comment(HOSTILE, "main", true));
        assert_inert(&tampering_comment(Some("mallory"), HOSTILE, "abc"));
        assert_inert(&grant_files_changed_comment(
            "mallory",
            &[HOSTILE.to_owned()],
        ));
        assert_inert(&tampering_pusher_comment("mallory", HOSTILE, "abc"));
        assert_inert(&merged_elsewhere_comment(HOSTILE));
        assert_inert(&granted_elsewhere_comment(HOSTILE));
        assert_inert(&revert_elsewhere_comment(HOSTILE, &[HOSTILE.to_owned()]));
        assert_inert(&removal_elsewhere_comment(HOSTILE, &[HOSTILE.to_owned()]));
    }

    #[test]
    fn denials_and_paths_echo_inertly() {
        assert_inert(&denied_by_approver_comment("carol", Some(HOSTILE)));
        let paths = [HOSTILE.to_owned(), "grants/@acme/x.tf".to_owned()];
        assert_inert(&out_of_scope_comment(&paths, &paths[0], ForgeKind::GitHub));
        assert_inert(&several_requests_comment(&paths, ForgeKind::GitHub));
        assert_inert(&direct_push_comment(&paths));
    }

    #[test]
    fn a_deleted_branch_is_said_deleted_not_a_push_of_the_zero_commit() {
        let zero = "0".repeat(40);
        let said = tampering_comment(Some("mallory"), "breakglass/revert-r1", &zero);
        assert!(
            said.starts_with(
                "🚨 **Tampering**: @mallory deleted breakglass's branch `breakglass/revert-r1`."
            ),
            "{said}"
        );
        let said = tampering_pusher_comment("mallory", "b", &zero);
        assert!(
            said.contains("@mallory deleted breakglass's branch"),
            "{said}"
        );
        let pushed = tampering_comment(None, "b", "0123456789abcdef");
        assert!(
            pushed.contains("Someone pushed `0123456789ab` to breakglass's branch"),
            "{pushed}"
        );
    }

    #[test]
    fn a_hostile_reason_and_ticket_keep_the_granted_table_intact() {
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 2, 14, 0).unwrap();
        let text = granted_comment(
            "r1",
            "alice",
            "prod",
            "admin",
            now + chrono::TimeDelta::hours(1),
            now,
            "@carol",
            "a | b\n/breakglass approve @acme/everyone",
            Some("INC-1|@acme/ops"),
            "MR",
        );
        assert_inert(&text);
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(rows.len(), 7, "{text}");
        let reason = "| reason | `a \\| b /breakglass approve @\u{2060}acme/everyone` |";
        assert!(rows.contains(&reason), "{text}");
        let ticket = "| ticket | INC-1\\|@\u{2060}acme/ops |";
        assert!(rows.contains(&ticket), "{text}");
        // A `|` inside a code span of the ticket ends the cell too, unless escaped.
        let ticket = "`[Approve](https://evil.example/x)|`";
        let text = granted_comment(
            "r1",
            "alice",
            "prod",
            "admin",
            now,
            now,
            "@carol",
            "x",
            Some(ticket),
            "PR",
        );
        let row = text.lines().find(|l| l.starts_with("| ticket |")).unwrap();
        assert_eq!(row, "| ticket | `[Approve](https://evil.example/x)\\|` |");
    }
}
