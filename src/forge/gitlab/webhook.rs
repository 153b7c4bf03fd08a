//! GitLab webhooks: the `X-Gitlab-Token` check, the delivery id, and the payloads we act on,
//! parsed into [`ForgeEvent`]s through small private structs that hold only the fields we
//! read. GitLab's own examples carry odd values in fields we never need (a `"timestamp":
//! "2015-04-08T21: 00:25-07:00"` in a merge request's `last_commit`), so nothing is parsed that
//! the bot does not use: an event is never dropped over a field it ignores.
//!
//! | `X-Gitlab-Event` | becomes |
//! |---|---|
//! | `Note Hook` (and `Confidential Note Hook`) on an issue or merge request | [`ForgeEvent::Comment`] |
//! | `Merge Request Hook` | [`ForgeEvent::PullRequest`], or [`ForgeEvent::Review`] for approvals |
//! | `Emoji Hook` on an issue or merge request | [`ForgeEvent::Reaction`] |
//! | `Push Hook` | [`ForgeEvent::Push`] |
//! | `Issue Hook` (and `Confidential Issue Hook`) opening an issue with a command in its description | [`ForgeEvent::IssueDescribedCommand`] |
//! | anything else, notes on commits and snippets, awards on notes, system notes | [`ForgeEvent::Ignored`] |

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::{looks_like_bot, parse_time, reaction_name};
use crate::command::holds_command;
use crate::forge::{
    Actor, CommentAction, Delivery, ForgeEvent, PullRequestAction, PullRequestInfo, PushedCommit,
    PushedCommits, ReactionAction, ReviewState,
};
use crate::secret::Secret;

/// Why a delivery's token was refused (both become 401).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the X-Gitlab-Token header is missing")]
    Missing,
    #[error("the X-Gitlab-Token header matches no configured token")]
    Mismatch,
}

/// Checks `X-Gitlab-Token` against each configured token (several during a rotation), in
/// constant time. GitLab signs nothing: it echoes the webhook's secret token verbatim, so this
/// comparison is the whole authentication. An empty configured token never matches.
pub fn verify_token(tokens: &[Secret], header: Option<&str>) -> Result<(), TokenError> {
    let header = header
        .filter(|h| !h.is_empty())
        .ok_or(TokenError::Missing)?;
    // Every token is compared (no early exit), so timing says nothing about which matched;
    // and as digests of one length, since comparing slices ends at once when the lengths
    // differ, which would tell a token's length.
    let offered = Sha256::digest(header.as_bytes());
    let matched =
        tokens
            .iter()
            .filter(|t| !t.expose().is_empty())
            .fold(Choice::from(0), |acc, token| {
                acc | Sha256::digest(token.expose().as_bytes())
                    .as_slice()
                    .ct_eq(offered.as_slice())
            });
    if bool::from(matched) {
        Ok(())
    } else {
        Err(TokenError::Mismatch)
    }
}

/// A body that does not parse as the event its header names (a 400).
#[derive(Debug, thiserror::Error)]
#[error("the body is not a valid `{event}` payload: {source}")]
pub struct PayloadError {
    pub event: String,
    #[source]
    pub source: serde_json::Error,
}

/// The parts of a payload that tell one event from another, for [`delivery_id`].
const IDENTITY: [&str; 19] = [
    "/object_kind",
    "/event_name",
    "/event_type",
    "/project/id",
    "/project_id",
    "/user/id",
    "/user_id",
    "/object_attributes/id",
    "/object_attributes/iid",
    "/object_attributes/action",
    "/object_attributes/updated_at",
    "/object_attributes/oldrev",
    "/object_attributes/awardable_type",
    "/object_attributes/awardable_id",
    "/changes",
    "/ref",
    "/before",
    "/after",
    "/checkout_sha",
];

/// The deduplication key of a delivery: GitLab's `Idempotency-Key` (17.4+, the same on every
/// retry and on "Resend request"), else a hash of what identifies the event in its body (kind,
/// project, object ids, action, acting user, `updated_at`, changes, push revisions). Older
/// GitLab resends the same body, so a redelivery hashes the same; two different events differ
/// in at least one of those fields.
pub fn delivery_id(idempotency_key: Option<&str>, body: &[u8]) -> String {
    if let Some(key) = idempotency_key.map(str::trim).filter(|k| !k.is_empty()) {
        return key.to_owned();
    }
    let mut hasher = Sha256::new();
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => {
            for pointer in IDENTITY {
                if let Some(field) = value.pointer(pointer).filter(|v| !v.is_null()) {
                    hasher.update(format!("{pointer}={field}\n").as_bytes());
                }
            }
        }
        // Not JSON: `parse` refuses it anyway; any stable key will do.
        Err(_) => hasher.update(body),
    }
    format!("body-sha256:{}", hex::encode(hasher.finalize()))
}

/// Parses a verified delivery. Events and actions we do not act on become
/// [`ForgeEvent::Ignored`], never an error; a body that is not the JSON its event needs is a
/// [`PayloadError`].
pub fn parse(delivery_id: &str, event: &str, body: &[u8]) -> Result<Delivery, PayloadError> {
    // Each payload is read once; the project comes with it.
    let (project, parsed) = match event {
        "Note Hook" | "Confidential Note Hook" => {
            let mut p: NotePayload = payload(event, body)?;
            (p.project.take(), note_event(p, event))
        }
        "Merge Request Hook" => {
            let mut p: MergeRequestPayload = payload(event, body)?;
            (p.project.take(), merge_request_event(p))
        }
        "Emoji Hook" => {
            let mut p: EmojiPayload = payload(event, body)?;
            (p.project.take(), emoji_event(p, event))
        }
        "Push Hook" => {
            let p: PushPayload = payload(event, body)?;
            (p.project.clone(), push_event(p))
        }
        "Issue Hook" | "Confidential Issue Hook" => {
            let mut p: IssuePayload = payload(event, body)?;
            (p.project.take(), issue_event(p, event))
        }
        _ => {
            let envelope: Envelope = payload(event, body)?;
            let ignored = ForgeEvent::Ignored {
                event: event.to_owned(),
            };
            (envelope.project, ignored)
        }
    };
    Ok(Delivery {
        id: delivery_id.to_owned(),
        repository: project.map(|p| p.path_with_namespace),
        event: parsed,
    })
}

/// `body` read as the payload of `event`.
fn payload<T: serde::de::DeserializeOwned>(event: &str, body: &[u8]) -> Result<T, PayloadError> {
    serde_json::from_slice(body).map_err(|source| PayloadError {
        event: event.to_owned(),
        source,
    })
}

fn ignored(event: &str, detail: &str) -> ForgeEvent {
    ForgeEvent::Ignored {
        event: format!("{event}.{detail}"),
    }
}

/// A comment. System notes ("changed the title to …", "added 1 commit") are GitLab's words,
/// not the user's, even though they name the user as author: they never carry a command.
fn note_event(p: NotePayload, event: &str) -> ForgeEvent {
    let note = p.object_attributes;
    if note.system {
        return ignored(event, "system");
    }
    let action = match note.action.as_deref() {
        // Before 16.11 GitLab sent no action: only creations triggered the hook then.
        None | Some("create") => CommentAction::Created,
        Some("update") => CommentAction::Edited,
        Some(other) => return ignored(event, other),
    };
    let (number, on_pull_request, on_confidential) =
        match (note.noteable_type.as_str(), p.merge_request, p.issue) {
            ("MergeRequest", Some(mr), _) => (mr.iid, true, false),
            ("Issue", _, Some(issue)) => (issue.iid, false, issue.confidential),
            (other, _, _) => return ignored(event, other),
        };
    ForgeEvent::Comment {
        action,
        number,
        on_pull_request,
        comment_id: note.id,
        body: note.note.unwrap_or_default(),
        author: p.user.into(),
        created_at: note.created_at,
        internal: event == "Confidential Note Hook"
            || note.internal
            || note.confidential
            || on_confidential,
    }
}

fn merge_request_event(p: MergeRequestPayload) -> ForgeEvent {
    let action = p.object_attributes.action.clone().unwrap_or_default();
    let sender: Actor = p.user.clone().into();
    // An approval names no commit. GitLab builds its approval hook later, in a worker
    // (`ExecuteApprovalHooksWorker`) that loads the merge request when it runs: the head the hook
    // shows may be one pushed after the approval. The approval is timed by GitLab's own
    // `approved_at` instead (see `Workflow::handle_review_approval`).
    let review = |state| ForgeEvent::Review {
        state,
        review_id: p.user.id,
        author: sender.clone(),
        commit_id: None,
        submitted_at: p.object_attributes.updated_at,
        pull_request: p.object_attributes.info(&p.user),
        holds_command: false, // GitLab's approvals carry no text
    };
    // GitLab keeps one approval per user per merge request, so the approving user's id is the
    // approval's identity: an `unapproval` withdraws exactly what that user's `approval` gave.
    // `approved`/`unapproved` (the merge request became, or stopped being, fully approved)
    // also name the user whose approval did it, so they map the same way.
    let pr_action = match action.as_str() {
        "approval" | "approved" => return review(ReviewState::Approved),
        "unapproval" | "unapproved" => return review(ReviewState::Dismissed),
        "open" => PullRequestAction::Opened,
        "reopen" => PullRequestAction::Reopened,
        "close" | "merge" => PullRequestAction::Closed,
        "update" => update_action(&p),
        other => return ignored("Merge Request Hook", other),
    };
    let mut pull_request = p.object_attributes.info(&p.user);
    pull_request.merged |= action == "merge";
    ForgeEvent::PullRequest {
        action: pr_action,
        holds_command: pr_action == PullRequestAction::Opened
            && holds_command(p.object_attributes.description.as_deref()),
        pull_request,
        sender,
    }
}

/// An issue opened with a `/breakglass` command in its description; any other issue event is
/// ignored. The opener is the hook's `user`.
fn issue_event(p: IssuePayload, event: &str) -> ForgeEvent {
    let issue = p.object_attributes;
    let action = issue.action.as_deref().unwrap_or_default();
    if action != "open" || !holds_command(issue.description.as_deref()) {
        return ignored(event, action);
    }
    ForgeEvent::IssueDescribedCommand {
        number: issue.iid,
        author: p.user.into(),
        confidential: event == "Confidential Issue Hook" || issue.confidential,
    }
}

/// What an `update` changed: new commits (`oldrev` is set only then), the draft flag, labels,
/// or something else (title, description, assignees…).
fn update_action(p: &MergeRequestPayload) -> PullRequestAction {
    if p.object_attributes
        .oldrev
        .as_deref()
        .is_some_and(|rev| !rev.is_empty())
    {
        return PullRequestAction::Synchronized;
    }
    let draft = p
        .changes
        .draft
        .as_ref()
        .or(p.changes.work_in_progress.as_ref());
    if let Some(change) = draft.filter(|c| c.previous != c.current) {
        return if change.current == Some(true) {
            PullRequestAction::ConvertedToDraft
        } else {
            PullRequestAction::ReadyForReview
        };
    }
    if let Some(labels) = &p.changes.labels {
        let titles = |list: &[Label]| list.iter().map(|l| l.title.clone()).collect::<Vec<_>>();
        let (before, after) = (titles(&labels.previous), titles(&labels.current));
        if after.iter().any(|l| !before.contains(l)) {
            return PullRequestAction::Labeled;
        }
        if before.iter().any(|l| !after.contains(l)) {
            return PullRequestAction::Unlabeled;
        }
    }
    PullRequestAction::Edited
}

/// An award on an issue or merge request. The bot counts emoji on the merge request itself; an
/// award put on a merge request's note is told apart (see [`ForgeEvent::NoteReaction`]), and
/// others on notes are ignored.
fn emoji_event(p: EmojiPayload, event: &str) -> ForgeEvent {
    let award = p.object_attributes;
    let action = match award.action.as_deref().or(p.event_type.as_deref()) {
        Some("award") => ReactionAction::Added,
        Some("revoke") => ReactionAction::Removed,
        other => return ignored(event, other.unwrap_or("")),
    };
    let (number, on_pull_request) = match (award.awardable_type.as_str(), p.merge_request, p.issue)
    {
        ("MergeRequest", Some(mr), _) => (mr.iid, true),
        ("Issue", _, Some(issue)) => (issue.iid, false),
        ("Note", Some(mr), _) if action == ReactionAction::Added => {
            let Some(note) = p.note else {
                return ignored(event, "Note");
            };
            return ForgeEvent::NoteReaction {
                number: mr.iid,
                note_author_id: note.author_id,
                content: reaction_name(&award.name),
                user: p.user.into(),
            };
        }
        (other, _, _) => return ignored(event, other),
    };
    ForgeEvent::Reaction {
        action,
        number,
        on_pull_request,
        reaction_id: award.id,
        content: reaction_name(&award.name),
        user: p.user.into(),
        created_at: award.created_at,
    }
}

fn push_event(p: PushPayload) -> ForgeEvent {
    let listed = p
        .commits
        .into_iter()
        .map(|c| PushedCommit {
            id: c.id,
            message: c.message,
            added: c.added,
            removed: c.removed,
            modified: c.modified,
        })
        .collect();
    ForgeEvent::Push {
        git_ref: p.git_ref,
        before: p.before,
        after: p.after,
        // Kept so that the workflow knows when the listing left commits out (GitLab lists
        // at most the last 20): their files are then read from a comparison instead.
        commits: PushedCommits {
            listed,
            total: p.total_commits_count,
        },
        sender: Actor {
            id: p.user_id,
            is_bot: looks_like_bot(&p.user_username),
            login: p.user_username,
        },
        default_branch: p.project.and_then(|p| p.default_branch),
    }
}

/// A GitLab timestamp in either of its formats (see [`parse_time`]).
fn gitlab_time<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(d)?;
    parse_time(&text).ok_or_else(|| de::Error::custom(format!("`{text}` is not a timestamp")))
}

fn gitlab_time_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(text) => parse_time(&text)
            .map(Some)
            .ok_or_else(|| de::Error::custom(format!("`{text}` is not a timestamp"))),
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    project: Option<Project>,
}

#[derive(Clone, Deserialize)]
struct Project {
    path_with_namespace: String,
    #[serde(default)]
    default_branch: Option<String>,
}

#[derive(Clone, Deserialize)]
struct User {
    id: u64,
    username: String,
}

impl From<User> for Actor {
    fn from(user: User) -> Self {
        Actor {
            id: user.id,
            is_bot: looks_like_bot(&user.username),
            login: user.username,
        }
    }
}

/// An issue or merge request as a note or award names it: its iid, and whether it is a
/// confidential issue (which only some members see).
#[derive(Deserialize)]
struct Iid {
    iid: u64,
    #[serde(default)]
    confidential: bool,
}

#[derive(Deserialize)]
struct Note {
    id: u64,
    #[serde(default)]
    note: Option<String>,
    noteable_type: String,
    #[serde(deserialize_with = "gitlab_time")]
    created_at: DateTime<Utc>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    system: bool,
    /// An internal note (GitLab 15.0 on; `confidential` before).
    #[serde(default)]
    internal: bool,
    #[serde(default)]
    confidential: bool,
}

#[derive(Deserialize)]
struct NotePayload {
    user: User,
    object_attributes: Note,
    #[serde(default)]
    merge_request: Option<Iid>,
    #[serde(default)]
    issue: Option<Iid>,
    #[serde(default)]
    project: Option<Project>,
}

/// An `Issue Hook`: only an opened issue's description is read (for a command in it).
#[derive(Deserialize)]
struct IssuePayload {
    user: User,
    object_attributes: OpenedIssue,
    #[serde(default)]
    project: Option<Project>,
}

#[derive(Deserialize)]
struct OpenedIssue {
    iid: u64,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    confidential: bool,
    #[serde(default)]
    action: Option<String>,
}

#[derive(Clone, Deserialize)]
struct Label {
    title: String,
}

#[derive(Deserialize)]
struct Commit {
    id: String,
}

#[derive(Deserialize)]
struct MergeRequest {
    iid: u64,
    #[serde(default)]
    description: Option<String>,
    source_branch: String,
    target_branch: String,
    source_project_id: u64,
    target_project_id: u64,
    author_id: u64,
    #[serde(default)]
    state: String,
    #[serde(default)]
    draft: Option<bool>,
    #[serde(default)]
    work_in_progress: Option<bool>,
    #[serde(default)]
    labels: Vec<Label>,
    #[serde(default)]
    last_commit: Option<Commit>,
    #[serde(default)]
    source: Option<Project>,
    #[serde(default)]
    target: Option<Project>,
    #[serde(default, deserialize_with = "gitlab_time_opt")]
    updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    oldrev: Option<String>,
}

impl MergeRequest {
    /// The merge request in forge-independent words. GitLab's hook names the author by
    /// `author_id` only; the login is known when the author is the one acting (`user`), and
    /// left empty otherwise: the workflow reads the merge request from the API before it
    /// decides anything, and that names the author in full.
    fn info(&self, acting: &User) -> PullRequestInfo {
        let author_login = if acting.id == self.author_id {
            acting.username.clone()
        } else {
            String::new()
        };
        PullRequestInfo {
            number: self.iid,
            author: Actor {
                id: self.author_id,
                is_bot: looks_like_bot(&author_login),
                login: author_login,
            },
            head_sha: self
                .last_commit
                .as_ref()
                .map(|c| c.id.clone())
                .unwrap_or_default(),
            head_ref: self.source_branch.clone(),
            base_ref: self.target_branch.clone(),
            head_repo: self.head_repo(),
            labels: self.labels.iter().map(|l| l.title.clone()).collect(),
            merged: self.state == "merged",
            draft: self.draft.or(self.work_in_progress).unwrap_or(false),
            updated_at: self.updated_at,
        }
    }

    /// The source project's path. A fork whose path the hook does not give is still named as
    /// something other than the target, so it is refused rather than taken for the requests repo.
    fn head_repo(&self) -> Option<String> {
        match (&self.source, &self.target) {
            (Some(source), _) => Some(source.path_with_namespace.clone()),
            _ if self.source_project_id != self.target_project_id => {
                Some(format!("gitlab project {}", self.source_project_id))
            }
            (None, target) => target.as_ref().map(|t| t.path_with_namespace.clone()),
        }
    }
}

#[derive(Deserialize)]
struct Change<T> {
    #[serde(default)]
    previous: Option<T>,
    #[serde(default)]
    current: Option<T>,
}

#[derive(Deserialize)]
struct LabelChange {
    #[serde(default)]
    previous: Vec<Label>,
    #[serde(default)]
    current: Vec<Label>,
}

#[derive(Default, Deserialize)]
struct Changes {
    #[serde(default)]
    draft: Option<Change<bool>>,
    #[serde(default)]
    work_in_progress: Option<Change<bool>>,
    #[serde(default)]
    labels: Option<LabelChange>,
}

#[derive(Deserialize)]
struct MergeRequestPayload {
    user: User,
    object_attributes: MergeRequest,
    #[serde(default)]
    changes: Changes,
    #[serde(default)]
    project: Option<Project>,
}

#[derive(Deserialize)]
struct Award {
    id: u64,
    name: String,
    awardable_type: String,
    #[serde(deserialize_with = "gitlab_time")]
    created_at: DateTime<Utc>,
    #[serde(default)]
    action: Option<String>,
}

#[derive(Deserialize)]
struct EmojiPayload {
    #[serde(default)]
    event_type: Option<String>,
    user: User,
    object_attributes: Award,
    /// The note an award on a note is on.
    #[serde(default)]
    note: Option<AwardedNote>,
    #[serde(default)]
    merge_request: Option<Iid>,
    #[serde(default)]
    issue: Option<Iid>,
    #[serde(default)]
    project: Option<Project>,
}

#[derive(Deserialize)]
struct AwardedNote {
    author_id: u64,
}

#[derive(Deserialize)]
struct PushCommit {
    id: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    added: Vec<String>,
    #[serde(default)]
    removed: Vec<String>,
    #[serde(default)]
    modified: Vec<String>,
}

#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: String,
    before: String,
    after: String,
    #[serde(default)]
    commits: Vec<PushCommit>,
    /// Every commit of the push, also those `commits` leaves out.
    #[serde(default)]
    total_commits_count: Option<usize>,
    user_id: u64,
    user_username: String,
    #[serde(default)]
    project: Option<Project>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_configured_token_verifies() {
        let tokens = [Secret::new("new-token"), Secret::new("old-token")];
        assert_eq!(verify_token(&tokens, Some("new-token")), Ok(()));
        assert_eq!(verify_token(&tokens, Some("old-token")), Ok(()));
    }

    #[test]
    fn missing_wrong_and_empty_tokens_are_refused() {
        let tokens = [Secret::new("s3cret")];
        assert_eq!(verify_token(&tokens, None), Err(TokenError::Missing));
        assert_eq!(verify_token(&tokens, Some("")), Err(TokenError::Missing));
        for wrong in ["s3cre", "s3cret ", "S3CRET", "s3cret\0", "other"] {
            assert_eq!(
                verify_token(&tokens, Some(wrong)),
                Err(TokenError::Mismatch),
                "{wrong:?}"
            );
        }
        assert_eq!(
            verify_token(&[], Some("s3cret")),
            Err(TokenError::Mismatch),
            "no token configured"
        );
        assert_eq!(
            verify_token(&[Secret::new("")], Some("x")),
            Err(TokenError::Mismatch),
            "an empty token never verifies"
        );
    }

    #[test]
    fn the_idempotency_key_is_the_delivery_id_when_gitlab_sends_one() {
        let body = br#"{"object_kind":"push","after":"a"}"#;
        assert_eq!(
            delivery_id(Some("6f2b1c1e-1b43-4b33-8d64-0a4e6f4b1d21"), body),
            "6f2b1c1e-1b43-4b33-8d64-0a4e6f4b1d21"
        );
        assert_eq!(delivery_id(Some("  "), body), delivery_id(None, body));
    }

    #[test]
    fn derived_delivery_ids_are_stable_and_tell_events_apart() {
        let award = br#"{"object_kind":"emoji","project":{"id":6},"user":{"id":1,"name":"A"},
            "object_attributes":{"id":9,"action":"award","awardable_type":"MergeRequest","awardable_id":3,"updated_at":"2023-07-04 20:44:11 UTC"}}"#;
        let id = delivery_id(None, award);
        assert!(
            id.starts_with("body-sha256:") && id.len() == 12 + 64,
            "{id}"
        );
        // A redelivery re-serialised with other whitespace and an unrelated field changed.
        let again = br#"{"object_kind":"emoji","project":{"id":6},"user":{"id":1,"name":"B"},"object_attributes":{"id":9,"action":"award","awardable_type":"MergeRequest","awardable_id":3,"updated_at":"2023-07-04 20:44:11 UTC"}}"#;
        assert_eq!(delivery_id(None, again), id);
        let revoke = String::from_utf8_lossy(award).replace("\"award\"", "\"revoke\"");
        assert_ne!(delivery_id(None, revoke.as_bytes()), id);
        let other_user = String::from_utf8_lossy(award).replace("\"id\":1", "\"id\":2");
        assert_ne!(delivery_id(None, other_user.as_bytes()), id);
        assert_eq!(
            delivery_id(None, b"not json"),
            delivery_id(None, b"not json")
        );
    }

    #[test]
    fn unknown_events_are_ignored_and_malformed_bodies_are_errors() {
        let d = parse("d", "Pipeline Hook", br#"{"object_kind":"pipeline"}"#).unwrap();
        assert_eq!(
            d.event,
            ForgeEvent::Ignored {
                event: "Pipeline Hook".into()
            }
        );
        assert!(parse("d", "Note Hook", b"not json").is_err());
        assert!(parse("d", "Note Hook", br#"{"object_kind":"note"}"#).is_err());
        let err = parse("d", "Push Hook", br#"{"ref":1}"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the body is not a valid `Push Hook` payload"),
            "{err}"
        );
    }

    #[test]
    fn a_push_keeps_how_many_commits_gitlab_left_out_of_its_listing() {
        let body = br#"{"ref":"refs/heads/main","before":"a","after":"b","user_id":1,
            "user_username":"m","commits":[{"id":"b","added":["x"]}],"total_commits_count":21}"#;
        let event = parse("d", "Push Hook", body).unwrap().event;
        let ForgeEvent::Push { commits, .. } = &event else {
            panic!("{event:?}")
        };
        assert_eq!((commits.len(), commits.left_some_out()), (1, true));
        let stored = serde_json::to_value(&event).unwrap();
        assert_eq!(stored["total_commits"], 21);
        assert_eq!(serde_json::from_value::<ForgeEvent>(stored).unwrap(), event);
        // A delivery stored before the count was kept still reads, as a listing of them all.
        let older = serde_json::json!({"kind": "push", "git_ref": "refs/heads/main",
            "before": "a", "after": "b", "commits": [],
            "sender": {"id": 1, "login": "m", "is_bot": false}});
        let ForgeEvent::Push { commits, .. } = serde_json::from_value(older).unwrap() else {
            panic!("not a push")
        };
        assert!(commits.is_empty() && !commits.left_some_out());
    }

    #[test]
    fn a_malformed_note_time_is_an_error_not_a_guess() {
        let body = br#"{"user":{"id":1,"username":"a"},"issue":{"iid":2},
            "object_attributes":{"id":3,"note":"x","noteable_type":"Issue","created_at":"2015-04-08T21: 00:25-07:00"}}"#;
        let err = parse("d", "Note Hook", body).unwrap_err();
        assert!(err.to_string().contains("is not a timestamp"), "{err}");
    }
}
