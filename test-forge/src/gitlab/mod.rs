//! The GitLab dialect: the same model served as GitLab's REST v4 under `/api/v4`, and the same
//! changes sent as GitLab-shaped webhooks to hooks registered with
//! [`TestForge::add_gitlab_webhook`](crate::TestForge::add_gitlab_webhook).
//!
//! Nothing here owns state of its own. GitLab's separate iid spaces live on the model
//! (`IssueRec::gl_iid`), award names are stored under GitHub's reaction names where the two
//! forges agree, and GitLab approvals are the model's approving reviews, so a scenario written
//! against one API reads back consistently through the other.

pub(crate) mod hooks;
mod http;
mod json;
mod ops;
mod routes;
mod scenario;

pub(crate) use routes::router;

use chrono::{DateTime, Utc};

use crate::error::{ApiError, ApiResult};
use crate::state::{IssueRec, RepoRec};

/// What a note, an award or an iid belongs to: GitLab counts issues and merge requests
/// separately, so an iid alone is ambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Noteable {
    /// Issue `#iid`.
    Issue(u64),
    /// Merge request `!iid`.
    MergeRequest(u64),
}

impl Noteable {
    /// The iid.
    pub fn iid(self) -> u64 {
        match self {
            Noteable::Issue(i) | Noteable::MergeRequest(i) => i,
        }
    }

    /// GitLab's `noteable_type` / `awardable_type`.
    pub fn type_name(self) -> &'static str {
        match self {
            Noteable::Issue(_) => "Issue",
            Noteable::MergeRequest(_) => "MergeRequest",
        }
    }

    fn is_mr(self) -> bool {
        matches!(self, Noteable::MergeRequest(_))
    }
}

/// GitLab's REST timestamps: milliseconds and `Z` (`2026-12-02T03:25:13.000Z`).
pub(crate) fn api_ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// GitLab's webhook object timestamps (`2026-12-02 03:25:13 UTC`).
pub(crate) fn hook_ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Pairs of (GitHub reaction content, GitLab award name) for the emoji both forges know.
const EMOJI: &[(&str, &str)] = &[
    ("+1", "thumbsup"),
    ("-1", "thumbsdown"),
    ("laugh", "laughing"),
    ("confused", "confused"),
    ("heart", "heart"),
    ("hooray", "tada"),
    ("rocket", "rocket"),
    ("eyes", "eyes"),
];

/// The model's name for a GitLab award: GitHub's content when GitHub has that emoji (so
/// GitHub's reactions API shows the same award as `+1`), else the GitLab name itself.
pub(crate) fn award_to_model(name: &str) -> String {
    EMOJI
        .iter()
        .find(|(_, gl)| *gl == name)
        .map_or(name, |(gh, _)| gh)
        .to_owned()
}

/// GitLab's name for a reaction stored in the model.
pub(crate) fn award_name(content: &str) -> &str {
    EMOJI
        .iter()
        .find(|(gh, _)| *gh == content)
        .map_or(content, |(_, gl)| gl)
}

/// The issue or merge request with that GitLab iid.
pub(crate) fn by_iid(r: &RepoRec, of: Noteable) -> ApiResult<&IssueRec> {
    r.issues
        .values()
        .find(|i| i.pr.is_some() == of.is_mr() && i.gl_iid == of.iid())
        .ok_or_else(|| not_found_of(of))
}

/// The model number of the issue or merge request with that iid.
pub(crate) fn number_of(r: &RepoRec, of: Noteable) -> ApiResult<u64> {
    by_iid(r, of).map(|i| i.number)
}

/// The noteable an issue record is, in GitLab's terms.
pub(crate) fn noteable_of(i: &IssueRec) -> Noteable {
    if i.pr.is_some() {
        Noteable::MergeRequest(i.gl_iid)
    } else {
        Noteable::Issue(i.gl_iid)
    }
}

fn not_found_of(of: Noteable) -> ApiError {
    match of {
        Noteable::Issue(_) => ApiError::not_found_msg("404 Issue Not Found"),
        Noteable::MergeRequest(_) => ApiError::not_found_msg("404 Merge Request Not Found"),
    }
}

/// The stable numeric id of a group path (a team `org/slug`, its subgroups and ancestors).
pub(crate) fn group_id(path: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    100_000 + h % 900_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn award_names_round_trip_through_github_contents() {
        assert_eq!(award_to_model("thumbsup"), "+1");
        assert_eq!(award_to_model("tada"), "hooray");
        assert_eq!(award_to_model("white_check_mark"), "white_check_mark");
        assert_eq!(award_name("+1"), "thumbsup");
        assert_eq!(award_name("-1"), "thumbsdown");
        assert_eq!(award_name("white_check_mark"), "white_check_mark");
    }

    #[test]
    fn timestamps_have_gitlab_shapes() {
        let t = DateTime::from_timestamp(1_796_181_913, 0).unwrap();
        assert_eq!(api_ts(t), "2026-12-02T03:25:13.000Z");
        assert_eq!(hook_ts(t), "2026-12-02 03:25:13 UTC");
    }
}
