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

/// Title and message of the request's merge commit.
pub fn grant_message(record: &RequestRecord, expires_at: DateTime<Utc>) -> (String, String) {
    let title = format!(
        "breakglass: grant {} ({}/{} for {} to {})",
        record.id,
        record.environment,
        record.role,
        crate::duration::HumanDuration::from_secs(record.duration_secs),
        record.requester_login
    );
    let mut message = format!("{}\n\n", record.reason.as_str());
    if let Some(ticket) = &record.ticket {
        message.push_str(&format!("Ticket: {ticket}\n\n"));
    }
    message.push_str(&format!(
        "Breakglass-Request: {}\nBreakglass-Requester: {}\nBreakglass-Approved-By: {}\nBreakglass-Expires: {}\n",
        record.id,
        record.requester_login,
        approved_by(record),
        iso(expires_at)
    ));
    (title, message)
}

/// Title and message of the revert's merge commit.
pub fn revoke_message(record: &RequestRecord, reason: &str) -> (String, String) {
    let title = format!("breakglass: revoke {} ({reason})", record.id);
    let message = format!(
        "Access of {} to {}/{} ended.\n\nBreakglass-Revokes: {}\nBreakglass-Revoked-Reason: {reason}\n",
        record.requester_login, record.environment, record.role, record.id
    );
    (title, message)
}
