//! The commit messages of the bot's merges. Their trailers are the audit trail's keys:
//! `breakglass audit` pairs a grant with its revocation through them.

use chrono::{DateTime, Utc};

use crate::clock::iso;
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
    let mut message = format!("{}\n\n", record.reason.as_str().replace('\n', " "));
    message.push_str(&format!(
        "Breakglass-Request: {}\nBreakglass-Requester: {}\nBreakglass-Environment: {}\nBreakglass-Role: {}\n",
        record.id, record.requester_login, record.environment, record.role
    ));
    if let Some(ticket) = &record.ticket {
        message.push_str(&format!("Breakglass-Ticket: {ticket}\n"));
    }
    message.push_str(&format!(
        "Breakglass-Approved-By: {}\nBreakglass-Expires: {}\n",
        approved_by(record),
        iso(expires_at)
    ));
    if let Some(due) = review_due {
        message.push_str(&format!("Breakglass-Review-Due: {}\n", iso(due)));
    }
    (title, message)
}

/// Title and message of the revert's merge commit: `Breakglass-Revokes`,
/// `-Revoked-Reason`, `-Expires` (the expiry in force, extensions included), and
/// `-Reviewed-By` when the fast-path review is done by then.
pub fn revoke_message(record: &RequestRecord, reason: &str) -> (String, String) {
    let title = format!("breakglass: revoke {} ({reason})", record.id);
    let mut message = format!(
        "Access of {} to {}/{} ended.\n\nBreakglass-Revokes: {}\nBreakglass-Revoked-Reason: {reason}\n",
        record.requester_login, record.environment, record.role, record.id
    );
    if let Some(expires) = record.expires_at {
        message.push_str(&format!("Breakglass-Expires: {}\n", iso(expires)));
    }
    if let Some(reviewer) = &record.reviewed_by {
        message.push_str(&format!("Breakglass-Reviewed-By: {reviewer}\n"));
    }
    (title, message)
}
