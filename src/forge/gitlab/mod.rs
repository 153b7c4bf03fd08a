//! GitLab: the REST v4 client, webhook token check and payload parsing.
//!
//! What the two halves share lives here: the REST route of a [`Thread`] (GitLab numbers issues
//! and merge requests in separate iid spaces, so "comment on #3" is ambiguous until it says which), GitLab's award
//! names in GitHub's words (policies use GitHub's for both forges), GitLab's two timestamp
//! formats, and how a bot account is recognised when GitLab does not say.

pub mod client;
pub mod webhook;

pub use client::{CommitAction, GitlabAuth, GitlabClient};

use chrono::{DateTime, NaiveDateTime, Utc};

use super::Thread;

/// The REST collection a thread lives in, with its iid: `issues/3`, `merge_requests/3`.
/// GitLab gives issues and merge requests separate iid spaces in a project, so every call that
/// takes a number says which one it means ([`Thread`]).
pub(crate) fn route(thread: Thread) -> String {
    match thread {
        Thread::Issue(iid) => format!("issues/{iid}"),
        Thread::Change(iid) => format!("merge_requests/{iid}"),
    }
}

/// `name` without a `_tone1` … `_tone5` suffix.
fn without_skin_tone(name: &str) -> &str {
    match name.rsplit_once("_tone") {
        Some((emoji, tone)) if !emoji.is_empty() && matches!(tone, "1" | "2" | "3" | "4" | "5") => {
            emoji
        }
        _ => name,
    }
}

/// GitLab's award (emoji) name in GitHub's reaction words, which policies use for both forges
/// (`approval_reactions: ["+1"]`). Names GitHub has no reaction for are kept as they are, so a
/// policy can still name them. A skin tone (`thumbsup_tone3`) is the same emoji: GitHub's
/// reactions have none, and a policy's word names the emoji in every tone.
pub fn reaction_name(gitlab: &str) -> String {
    let gitlab = without_skin_tone(gitlab);
    match gitlab {
        "thumbsup" => "+1",
        "thumbsdown" => "-1",
        "laughing" => "laugh",
        "tada" => "hooray",
        // Same word on both forges.
        "confused" | "heart" | "rocket" | "eyes" => gitlab,
        other => other,
    }
    .to_owned()
}

/// The GitLab award name of a reaction word of a policy (`+1` is `thumbsup`): what a GitLab
/// user is told to put on a merge request. The inverse of [`reaction_name`].
pub fn award_name(reaction: &str) -> &str {
    match reaction {
        "+1" => "thumbsup",
        "-1" => "thumbsdown",
        "laugh" => "laughing",
        "hooray" => "tada",
        other => other,
    }
}

/// A GitLab timestamp: RFC 3339 (`2013-12-03T17:23:34Z`, the REST API and newer hooks) or
/// the older hook format `2015-05-17 18:21:36 UTC` (also with a numeric offset).
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    if let Some(naive) = text.strip_suffix(" UTC") {
        return NaiveDateTime::parse_from_str(naive, "%Y-%m-%d %H:%M:%S%.f")
            .ok()
            .map(|at| at.and_utc());
    }
    DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f %z")
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

/// Whether a username is one of GitLab's bot accounts. Only `GET /user` says `"bot": true`;
/// webhook and most REST user objects do not, so the account kinds GitLab creates for
/// automation are recognised by name: project and group access token users
/// (`project_<id>_bot…`, `group_<id>_bot…`), service accounts (`service_account_…`) and the
/// instance's internal bots. The bot's own account is recognised by id elsewhere.
pub fn looks_like_bot(username: &str) -> bool {
    // GitLab's internal users, as their usernames read in lowercase.
    const INTERNAL: [&str; 8] = [
        "ghost",
        "support-bot",
        "alert-bot",
        "automation-bot",
        "suggested-reviewers-bot",
        "gitlab-security-bot",
        "gitlab-admin-bot",
        "gitlab-llm-bot",
    ];
    let name = username.to_ascii_lowercase();
    let token_user = ["project_", "group_"].iter().any(|kind| {
        name.strip_prefix(kind).is_some_and(|rest| {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            digits > 0 && rest[digits..].starts_with("_bot")
        })
    });
    token_user || name.starts_with("service_account_") || INTERNAL.contains(&name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn award_names_become_githubs_reactions() {
        for (gitlab, github) in [
            ("thumbsup", "+1"),
            ("thumbsdown", "-1"),
            ("laughing", "laugh"),
            ("confused", "confused"),
            ("heart", "heart"),
            ("tada", "hooray"),
            ("rocket", "rocket"),
            ("eyes", "eyes"),
            ("white_check_mark", "white_check_mark"),
            ("100", "100"),
        ] {
            assert_eq!(reaction_name(gitlab), github, "{gitlab}");
            assert_eq!(award_name(&reaction_name(gitlab)), gitlab, "{gitlab}");
        }
    }

    #[test]
    fn a_skin_tone_is_the_same_reaction() {
        for tone in 1..=5 {
            assert_eq!(reaction_name(&format!("thumbsup_tone{tone}")), "+1");
            assert_eq!(reaction_name(&format!("thumbsdown_tone{tone}")), "-1");
        }
        assert_eq!(reaction_name("thumbsup_tone6"), "thumbsup_tone6");
        assert_eq!(reaction_name("_tone1"), "_tone1");
    }

    #[test]
    fn both_timestamp_formats_parse() {
        let want = "2015-05-17T18:21:36Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(parse_time("2015-05-17 18:21:36 UTC"), Some(want));
        assert_eq!(parse_time("2015-05-17T18:21:36Z"), Some(want));
        assert_eq!(parse_time("2015-05-17T20:21:36+02:00"), Some(want));
        assert_eq!(parse_time("2015-05-17 20:21:36 +0200"), Some(want));
        assert_eq!(
            parse_time("2017-04-29T08:46:00.123Z"),
            Some("2017-04-29T08:46:00.123Z".parse().unwrap())
        );
        for bad in [
            "",
            "2015-04-08T21: 00:25-07:00",
            "yesterday",
            "2015-05-17 18:21:36",
        ] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bot_accounts_are_recognised_by_name() {
        for bot in [
            "project_42_bot_3f9a0c1d2e",
            "project_7_bot",
            "group_13_bot2",
            "service_account_group_9_abc",
            "ghost",
            "support-bot",
            "GitLab-Security-Bot",
        ] {
            assert!(looks_like_bot(bot), "{bot}");
        }
        for human in [
            "alice",
            "project_bot",
            "projectx_1_bot",
            "robot",
            "group_x_bot",
            "abbot",
        ] {
            assert!(!looks_like_bot(human), "{human}");
        }
    }

    #[test]
    fn threads_keep_their_iid_space() {
        assert_eq!(Thread::of(3, true), Thread::Change(3));
        assert_eq!(Thread::of(3, false), Thread::Issue(3));
        assert_ne!(Thread::Issue(3), Thread::Change(3));
        assert_eq!(route(Thread::Change(3)), "merge_requests/3");
        assert_eq!(route(Thread::Issue(3)), "issues/3");
        assert_eq!(Thread::Issue(3).number(), 3);
    }
}
