//! GitHub webhooks: the `X-Hub-Signature-256` check and the payloads we act on, parsed into
//! [`ForgeEvent`]s through small private structs that hold only the fields we read (octocrab's
//! webhook types are beta and fail on fields GitHub adds).

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::command::holds_command;
use crate::forge::{
    Actor, CommentAction, Delivery, ForgeEvent, PullRequestAction, PullRequestInfo, PushedCommit,
    ReviewState,
};
use crate::secret::Secret;

/// Largest body we accept. GitHub allows 25 MB, but the events we act on are a few KiB; a
/// bigger body is refused (413) before any work.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Why a delivery's signature was refused (all become 401).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Hub-Signature-256 header is missing")]
    Missing,
    #[error("the X-Hub-Signature-256 header is not `sha256=` and 64 hex digits")]
    Malformed,
    #[error("the signature does not match the body under any configured secret")]
    Mismatch,
}

/// Checks `sha256=<hex>` against the HMAC-SHA256 of the exact body, in constant time, under
/// each configured secret (several during a rotation).
pub fn verify_signature(
    secrets: &[Secret],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    if hex_digest.len() != 64 {
        return Err(SignatureError::Malformed);
    }
    let signature = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    let matched = secrets
        .iter()
        .filter(|s| !s.expose().is_empty())
        .any(|secret| {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose().as_bytes())
                .expect("HMAC takes keys of any length");
            mac.update(body);
            mac.verify_slice(&signature).is_ok()
        });
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
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

/// Parses a verified delivery, reading the body once. Events and actions we do not act on
/// become [`ForgeEvent::Ignored`], never an error.
pub fn parse(delivery_id: &str, event: &str, body: &[u8]) -> Result<Delivery, PayloadError> {
    let ignored = |action: &str| ForgeEvent::Ignored {
        event: format!("{event}.{action}"),
    };
    let (repository, parsed) = match event {
        "pull_request" => {
            let p: PullRequestPayload = payload(event, body)?;
            let parsed = match pull_request_action(&p.action) {
                Some(action) => ForgeEvent::PullRequest {
                    action,
                    holds_command: action == PullRequestAction::Opened
                        && holds_command(p.pull_request.body.as_deref()),
                    pull_request: p.pull_request.into(),
                    sender: p.sender.into(),
                },
                None => ignored(&p.action),
            };
            (p.repository, parsed)
        }
        "issue_comment" => {
            let p: IssueCommentPayload = payload(event, body)?;
            let parsed = match comment_action(&p.action) {
                Some(action) => ForgeEvent::Comment {
                    action,
                    number: p.issue.number,
                    on_pull_request: p.issue.pull_request.is_some(),
                    comment_id: p.comment.id,
                    body: p.comment.body.unwrap_or_default(),
                    author: p.comment.user.into(),
                    created_at: p.comment.created_at,
                    internal: false,
                },
                None => ignored(&p.action),
            };
            (p.repository, parsed)
        }
        "issues" => {
            let p: IssuesPayload = payload(event, body)?;
            let parsed = if p.action == "opened" && holds_command(p.issue.body.as_deref()) {
                ForgeEvent::IssueDescribedCommand {
                    number: p.issue.number,
                    author: p.issue.user.into(),
                    confidential: false,
                }
            } else {
                ignored(&p.action)
            };
            (p.repository, parsed)
        }
        "pull_request_review" => {
            let p: ReviewPayload = payload(event, body)?;
            (
                p.repository,
                review_event(p.action, p.review, p.pull_request),
            )
        }
        "pull_request_review_comment" => {
            let p: ReviewCommentPayload = payload(event, body)?;
            let parsed = review_comment_event(&p.action, p.comment, p.pull_request);
            (p.repository, parsed)
        }
        "push" => {
            let p: PushPayload = payload(event, body)?;
            let default_branch = p.repository.as_ref().and_then(|r| r.default_branch.clone());
            let parsed = ForgeEvent::Push {
                git_ref: p.git_ref,
                before: p.before,
                after: p.after,
                commits: p
                    .commits
                    .into_iter()
                    .map(|c| PushedCommit {
                        id: c.id,
                        message: c.message,
                        added: c.added,
                        removed: c.removed,
                        modified: c.modified,
                    })
                    .collect(),
                sender: p.sender.into(),
                default_branch,
            };
            (p.repository, parsed)
        }
        _ => {
            let envelope: Envelope = payload(event, body)?;
            let parsed = match event {
                "ping" => ForgeEvent::Ping,
                _ => ForgeEvent::Ignored {
                    event: event.to_owned(),
                },
            };
            (envelope.repository, parsed)
        }
    };
    Ok(Delivery {
        id: delivery_id.to_owned(),
        repository: repository.map(|r| r.full_name),
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

/// A review submitted or dismissed; other actions and states are ignored.
fn review_event(action: String, review: Review, pull_request: PullRequest) -> ForgeEvent {
    let state = match (action.as_str(), review.state.to_ascii_lowercase().as_str()) {
        ("dismissed", _) => Some(ReviewState::Dismissed),
        ("submitted", "approved") => Some(ReviewState::Approved),
        ("submitted", "changes_requested") => Some(ReviewState::ChangesRequested),
        ("submitted", "commented") => Some(ReviewState::Commented),
        _ => None,
    };
    match state {
        Some(state) => ForgeEvent::Review {
            state,
            pull_request: pull_request.into(),
            review_id: review.id,
            author: review.user.into(),
            commit_id: review.commit_id,
            submitted_at: review.submitted_at,
            holds_command: holds_command(review.body.as_deref()),
        },
        None => ForgeEvent::Ignored {
            event: format!("pull_request_review.{action}"),
        },
    }
}

/// A comment on a line of a PR's diff, part of a review: never a command (its id is no issue
/// comment's), but one that holds a command is said so, as a review's own text is.
fn review_comment_event(
    action: &str,
    comment: ReviewComment,
    pull_request: PullRequest,
) -> ForgeEvent {
    if action != "created" || !holds_command(Some(&comment.body)) {
        return ForgeEvent::Ignored {
            event: format!("pull_request_review_comment.{action}"),
        };
    }
    ForgeEvent::Review {
        state: ReviewState::Commented,
        pull_request: pull_request.into(),
        review_id: comment.pull_request_review_id.unwrap_or(comment.id),
        author: comment.user.into(),
        commit_id: comment.commit_id,
        submitted_at: comment.created_at,
        holds_command: true,
    }
}

fn pull_request_action(action: &str) -> Option<PullRequestAction> {
    Some(match action {
        "opened" => PullRequestAction::Opened,
        "synchronize" => PullRequestAction::Synchronized,
        "reopened" => PullRequestAction::Reopened,
        "closed" => PullRequestAction::Closed,
        "labeled" => PullRequestAction::Labeled,
        "unlabeled" => PullRequestAction::Unlabeled,
        "edited" => PullRequestAction::Edited,
        "converted_to_draft" => PullRequestAction::ConvertedToDraft,
        "ready_for_review" => PullRequestAction::ReadyForReview,
        _ => return None,
    })
}

fn comment_action(action: &str) -> Option<CommentAction> {
    Some(match action {
        "created" => CommentAction::Created,
        "edited" => CommentAction::Edited,
        "deleted" => CommentAction::Deleted,
        _ => return None,
    })
}

/// What every event carries; the whole of an event we do not act on.
#[derive(Deserialize)]
struct Envelope {
    repository: Option<Repository>,
}

#[derive(Deserialize)]
struct Repository {
    full_name: String,
    #[serde(default)]
    default_branch: Option<String>,
}

#[derive(Deserialize)]
struct User {
    id: u64,
    login: String,
    #[serde(rename = "type", default)]
    kind: String,
}

impl From<User> for Actor {
    fn from(user: User) -> Self {
        Actor {
            id: user.id,
            is_bot: user.kind == "Bot" || user.login.ends_with("[bot]"),
            login: user.login,
        }
    }
}

#[derive(Deserialize)]
struct Label {
    name: String,
}

#[derive(Deserialize)]
struct BranchRef {
    sha: String,
    #[serde(rename = "ref")]
    git_ref: String,
    /// `null` when the fork was deleted.
    #[serde(default)]
    repo: Option<Repository>,
}

#[derive(Deserialize)]
struct PullRequest {
    number: u64,
    user: User,
    #[serde(default)]
    body: Option<String>,
    head: BranchRef,
    base: BranchRef,
    #[serde(default)]
    labels: Vec<Label>,
    #[serde(default)]
    merged: Option<bool>,
    #[serde(default)]
    draft: Option<bool>,
    #[serde(default)]
    updated_at: Option<DateTime<Utc>>,
}

impl From<PullRequest> for PullRequestInfo {
    fn from(pr: PullRequest) -> Self {
        PullRequestInfo {
            number: pr.number,
            author: pr.user.into(),
            head_sha: pr.head.sha,
            head_ref: pr.head.git_ref,
            base_ref: pr.base.git_ref,
            head_repo: pr.head.repo.map(|r| r.full_name),
            labels: pr.labels.into_iter().map(|l| l.name).collect(),
            merged: pr.merged.unwrap_or(false),
            draft: pr.draft.unwrap_or(false),
            updated_at: pr.updated_at,
        }
    }
}

#[derive(Deserialize)]
struct PullRequestPayload {
    action: String,
    pull_request: PullRequest,
    sender: User,
    repository: Option<Repository>,
}

#[derive(Deserialize)]
struct Issue {
    number: u64,
    #[serde(default)]
    pull_request: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Comment {
    id: u64,
    body: Option<String>,
    user: User,
    created_at: DateTime<Utc>,
}

/// An `issues` event: only an opened issue's description is read (for a command in it).
#[derive(Deserialize)]
struct IssuesPayload {
    action: String,
    issue: OpenedIssue,
    repository: Option<Repository>,
}

#[derive(Deserialize)]
struct OpenedIssue {
    number: u64,
    #[serde(default)]
    body: Option<String>,
    user: User,
}

#[derive(Deserialize)]
struct IssueCommentPayload {
    action: String,
    issue: Issue,
    comment: Comment,
    repository: Option<Repository>,
}

#[derive(Deserialize)]
struct Review {
    id: u64,
    user: User,
    state: String,
    commit_id: Option<String>,
    submitted_at: Option<DateTime<Utc>>,
    #[serde(default)]
    body: Option<String>,
}

#[derive(Deserialize)]
struct ReviewComment {
    id: u64,
    #[serde(default)]
    pull_request_review_id: Option<u64>,
    user: User,
    #[serde(default)]
    body: String,
    commit_id: Option<String>,
    created_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct ReviewCommentPayload {
    action: String,
    comment: ReviewComment,
    pull_request: PullRequest,
    repository: Option<Repository>,
}

#[derive(Deserialize)]
struct ReviewPayload {
    action: String,
    review: Review,
    pull_request: PullRequest,
    repository: Option<Repository>,
}

#[derive(Deserialize)]
struct Commit {
    id: String,
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
    commits: Vec<Commit>,
    sender: User,
    repository: Option<Repository>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn accepts_githubs_published_test_vector() {
        let secrets = [Secret::new("It's a Secret to Everybody")];
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            verify_signature(&secrets, b"Hello, World!", Some(header)),
            Ok(())
        );
    }

    #[test]
    fn refuses_missing_malformed_and_wrong_signatures() {
        let secrets = [Secret::new("s3cret")];
        let body = br#"{"zen":"hi"}"#;
        let good = sign("s3cret", body);
        assert_eq!(
            verify_signature(&secrets, body, None),
            Err(SignatureError::Missing)
        );
        for malformed in [
            "",
            "sha1=abc",
            "sha256=",
            "sha256=zz",
            &good.to_uppercase(),
            &format!("{good}00"),
            &good.replace("sha256=", ""),
        ] {
            assert_eq!(
                verify_signature(&secrets, body, Some(malformed)),
                Err(SignatureError::Malformed),
                "{malformed}"
            );
        }
        assert_eq!(
            verify_signature(&secrets, body, Some(&sign("other", body))),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&secrets, b"{\"zen\":\"ho\"}", Some(&good)),
            Err(SignatureError::Mismatch),
            "body changed"
        );
        assert_eq!(
            verify_signature(&[], body, Some(&good)),
            Err(SignatureError::Mismatch),
            "no secret configured"
        );
        assert_eq!(
            verify_signature(&[Secret::new("")], body, Some(&sign("", body))),
            Err(SignatureError::Mismatch),
            "an empty secret never verifies"
        );
    }

    #[test]
    fn any_secret_of_a_rotation_verifies() {
        let secrets = [Secret::new("new"), Secret::new("old")];
        let body = b"{}";
        assert_eq!(
            verify_signature(&secrets, body, Some(&sign("old", body))),
            Ok(())
        );
        assert_eq!(
            verify_signature(&secrets, body, Some(&sign("new", body))),
            Ok(())
        );
    }

    #[test]
    fn unknown_events_and_actions_are_ignored_not_errors() {
        let d = parse("d1", "star", br#"{"action":"created"}"#).unwrap();
        assert_eq!(
            d.event,
            ForgeEvent::Ignored {
                event: "star".into()
            }
        );
        let body = br#"{"action":"assigned","issue":{"number":1},"comment":{"id":1,"body":"x","user":{"id":1,"login":"a"},"created_at":"2026-01-01T00:00:00Z"}}"#;
        assert_eq!(
            parse("d2", "issue_comment", body).unwrap().event,
            ForgeEvent::Ignored {
                event: "issue_comment.assigned".into()
            }
        );
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(parse("d", "issue_comment", b"not json").is_err());
        assert!(parse("d", "issue_comment", br#"{"action":"created"}"#).is_err());
        let err = parse(
            "d",
            "pull_request",
            br#"{"action":"opened","pull_request":{"number":"x"}}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the body is not a valid `pull_request` payload"),
            "{err}"
        );
    }

    #[test]
    fn bots_are_recognised() {
        let body = br#"{"action":"created","issue":{"number":3,"pull_request":{}},"comment":{"id":9,"body":"/breakglass approve","user":{"id":5,"login":"breakglass[bot]","type":"Bot"},"created_at":"2026-01-01T00:00:00Z"}}"#;
        let ForgeEvent::Comment {
            author,
            on_pull_request,
            ..
        } = parse("d", "issue_comment", body).unwrap().event
        else {
            panic!("a comment")
        };
        assert!(author.is_bot);
        assert!(on_pull_request);
    }
}
