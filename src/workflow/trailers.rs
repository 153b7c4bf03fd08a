//! The commit messages of the bot's merges. Their trailers are the audit trail's keys:
//! `breakglass audit` pairs a grant with its revocation through them, reading the same
//! [`TrailerKey`]s that are written here.

use chrono::{DateTime, Utc};

use crate::audit::trailers::TrailerKey;
use crate::clock::iso;
use crate::names::RequestId;
use crate::store::RequestRecord;

/// How a request was approved, as the `Breakglass-Approved-By` trailer says it.
pub fn approved_by(record: &RequestRecord) -> String {
    match (&record.fast_path_rule, &record.approved_by) {
        (Some(rule), _) => format!("fast-path:{rule}"),
        (None, Some(by)) if !by.is_empty() => by
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        _ => "self-service".to_owned(),
    }
}

/// Title and message of the request's merge commit: the reason as the body, then the
/// trailers. `breakglass audit` reads a report row from these, and checks in the tree that the
/// merge really adds the request file (else `forged_trailers`): `Breakglass-Request`, `-Requester`, `-Environment`, `-Role`,
/// `-Ticket` (when there is one), `-Approved-By`, `-Expires`, `-Review-Due` (fast path).
pub fn grant_message(
    record: &RequestRecord,
    expires_at: DateTime<Utc>,
    review_due: Option<DateTime<Utc>>,
) -> (String, String) {
    let title = format!(
        "breakglass: grant {} ({}/{} for {} to {})",
        record.id,
        record.environment,
        record.role,
        crate::duration::HumanDuration::from_secs(record.duration_secs),
        record.requester_login
    );
    let mut message = format!("{}\n\n", inert_reason(record.reason.as_str()));
    message.push_str(&TrailerKey::Request.line(&record.id));
    message.push_str(&TrailerKey::Requester.line(&record.requester_login));
    message.push_str(&TrailerKey::Environment.line(&record.environment));
    message.push_str(&TrailerKey::Role.line(&record.role));
    if let Some(ticket) = &record.ticket {
        message.push_str(&TrailerKey::Ticket.line(ticket));
    }
    message.push_str(&TrailerKey::ApprovedBy.line(approved_by(record)));
    message.push_str(&TrailerKey::Expires.line(iso(expires_at)));
    if let Some(due) = review_due {
        message.push_str(&TrailerKey::ReviewDue.line(iso(due)));
    }
    (title, message)
}

/// The request's reason as the grant merge's body: one line, and nothing the forge acts on
/// in a commit message that lands on the default branch. There `fixes #7` closes issue 7 in
/// the bot's name (GitHub), and `#7`, `acme/app#7`, `!7` or a URL reference what they name.
/// A word joiner (invisible) after each `#` or `!` before a word and after the `:` of `://`
/// keeps the text as written and breaks the reference; `breakglass audit` takes it out again.
fn inert_reason(reason: &str) -> String {
    let chars: Vec<char> = reason.chars().collect();
    let mut out = String::with_capacity(reason.len() + 8);
    for (i, c) in chars.iter().enumerate() {
        out.push(if *c == '\n' { ' ' } else { *c });
        let reference =
            matches!(c, '#' | '!') && chars.get(i + 1).is_some_and(|next| next.is_alphanumeric());
        if reference || crate::comment::starts_autolink(&chars, i) {
            out.push(crate::comment::WORD_JOINER);
        }
    }
    out
}

/// Title and message of the revert's merge commit: `Breakglass-Revokes`,
/// `-Revoked-Reason`, `-Revoked-By` for an early revoke, `-Expires` (the expiry in force,
/// extensions included), and `-Reviewed-By` when the fast-path review is done by then.
pub fn revoke_message(record: &RequestRecord, reason: &str) -> (String, String) {
    let title = format!("breakglass: revoke {} ({reason})", record.id);
    let by = record.revoked_by.as_ref().map(|by| &by.login);
    let mut message = format!(
        "Access of {} to {}/{} ended{}.\n\n",
        record.requester_login,
        record.environment,
        record.role,
        by.map(|by| format!(", revoked early by {by}"))
            .unwrap_or_default()
    );
    message.push_str(&TrailerKey::Revokes.line(&record.id));
    message.push_str(&TrailerKey::RevokedReason.line(reason));
    if let Some(by) = by {
        message.push_str(&TrailerKey::RevokedBy.line(by));
    }
    if let Some(expires) = record.expires_at {
        message.push_str(&TrailerKey::Expires.line(iso(expires)));
    }
    if let Some(reviewer) = &record.reviewed_by {
        message.push_str(&TrailerKey::ReviewedBy.line(reviewer));
    }
    (title, message)
}

/// The message of the merge that removes `paths`, which reached `default_branch` without the
/// bot. When they are a request's files it is revoked by reconciliation (`Breakglass-Revokes`
/// with reason `reconcile`): the audit then sees the request end, though it was never granted.
pub fn removal_message(
    paths: &[String],
    default_branch: &str,
    request: Option<&RequestId>,
) -> String {
    // A path is anyone's text (a file name may hold a line break and `Breakglass-Revokes: …`):
    // each is shown escaped on the bot's own line, which no trailer block can start from.
    let shown: Vec<String> = paths
        .iter()
        .map(|p| format!("`{}`", p.escape_default()))
        .collect();
    let files = format!(
        "Files that reached {default_branch} without breakglass: {}.",
        shown.join(", ")
    );
    match request {
        Some(id) => format!(
            "{files} It was never granted.\n\n{}{}",
            TrailerKey::Revokes.line(id),
            TrailerKey::RevokedReason.line("reconcile"),
        ),
        None => format!("{files}\n"),
    }
}

/// The message of the merge that removes `paths`, the files of request `id`, from the default
/// branch after its revert was merged into another branch: the grant ends here too, so the
/// audit reads a revoke (`reconcile`), never a removal of files that were never granted.
pub fn revoked_elsewhere_message(paths: &[String], id: &RequestId) -> String {
    let shown: Vec<String> = paths
        .iter()
        .map(|p| format!("`{}`", p.escape_default()))
        .collect();
    format!(
        "The revert of this grant was merged into another branch; its files leave this one: {}.\n\n{}{}",
        shown.join(", "),
        TrailerKey::Revokes.line(id),
        TrailerKey::RevokedReason.line("reconcile"),
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::names::Login;

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, hour, 14, 0).unwrap()
    }

    fn record() -> RequestRecord {
        let mut record = crate::workflow::pull_request::sample_record(
            "environment: prod\nrole: admin\nduration: 1h\nreason: \"incident:\\nINC-1 db down\"\nticket: INC-1\n",
            at(2),
        );
        record.approved_by = Some(vec![
            Login::try_from("carol".to_owned()).unwrap(),
            Login::try_from("dave".to_owned()).unwrap(),
        ]);
        record
    }

    /// A reason can close no issue and reference nothing when its merge lands.
    #[test]
    fn a_reason_with_a_closing_keyword_closes_no_issue() {
        let mut record = record();
        record.reason = "incident: fixes #7, closes acme/x#3, resolves https://github.com/acme/x/issues/9 and !4\nnext"
            .to_owned()
            .try_into()
            .unwrap();
        let (_, message) = grant_message(&record, at(3), None);
        let body = message.lines().next().unwrap();
        let j = crate::comment::WORD_JOINER;
        assert_eq!(
            body,
            format!(
                "incident: fixes #{j}7, closes acme/x#{j}3, resolves https:{j}//github.com/acme/x/issues/9 and !{j}4 next"
            )
        );
        let trailers = crate::audit::trailers::BotTrailers::parse(&message);
        assert_eq!(trailers.request.as_deref(), Some("r-1"), "{message}");
    }

    /// The wire format the audit reads: byte for byte.
    #[test]
    fn merge_messages_carry_the_trailers_the_audit_reads() {
        let mut record = record();
        let (title, message) = grant_message(&record, at(3), Some(at(4)));
        assert_eq!(title, "breakglass: grant r-1 (prod/admin for 1h to alice)");
        assert_eq!(
            message,
            "incident: INC-1 db down\n\nBreakglass-Request: r-1\nBreakglass-Requester: alice\nBreakglass-Environment: prod\nBreakglass-Role: admin\nBreakglass-Ticket: INC-1\nBreakglass-Approved-By: carol, dave\nBreakglass-Expires: 2026-11-26T03:14:00Z\nBreakglass-Review-Due: 2026-11-26T04:14:00Z\n"
        );
        record.expires_at = Some(at(3));
        record.reviewed_by = Some(Login::try_from("erin".to_owned()).unwrap());
        let (title, message) = revoke_message(&record, "ttl");
        assert_eq!(title, "breakglass: revoke r-1 (ttl)");
        assert_eq!(
            message,
            "Access of alice to prod/admin ended.\n\nBreakglass-Revokes: r-1\nBreakglass-Revoked-Reason: ttl\nBreakglass-Expires: 2026-11-26T03:14:00Z\nBreakglass-Reviewed-By: erin\n"
        );
        let paths = ["requests/prod/r-1.yaml".to_owned()];
        assert_eq!(
            removal_message(&paths, "main", Some(&record.id)),
            "Files that reached main without breakglass: `requests/prod/r-1.yaml`. It was never granted.\n\nBreakglass-Revokes: r-1\nBreakglass-Revoked-Reason: reconcile\n"
        );
        assert_eq!(
            removal_message(&paths, "main", None),
            "Files that reached main without breakglass: `requests/prod/r-1.yaml`.\n"
        );
    }

    #[test]
    fn a_file_name_cannot_write_trailers_into_a_removal() {
        let hostile = [
            "grants/prod/z.\n\nBreakglass-Revokes: r1\nBreakglass-Revoked-Reason: ttl".to_owned(),
        ];
        // As git reads the whole merge message: a title, then the body.
        let merge = |body: &str| format!("breakglass: remove z (reconcile)\n\n{body}");
        let reads_trailers =
            |body: &str| crate::audit::trailers::BotTrailers::parse(&merge(body)).any;
        let message = removal_message(&hostile, "main", None);
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(!reads_trailers(&message), "{message}");
        let message = removal_message(&["Breakglass-Revokes: r1".to_owned()], "main", None);
        assert!(!reads_trailers(&message), "{message}");
        // The old form, a path at the start of the body, did make a trailer of it.
        assert!(reads_trailers(
            "Breakglass-Revokes: r1 reached main without breakglass.\n"
        ));
    }
}
