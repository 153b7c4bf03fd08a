//! Conformance: GitHub's own published webhook examples (`../shared/fixtures/github`, from
//! octokit/webhooks) parse into the events we expect. Skips loudly when the fixtures are absent.

use std::path::PathBuf;

use breakglass::forge::github::webhook::parse;
use breakglass::forge::{CommentAction, ForgeEvent, PullRequestAction, ReviewState};
use serde_json::{Value, json};

fn fixture(name: &str) -> Option<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/github");
    if !dir.is_dir() {
        eprintln!(
            "SKIPPED: {} is missing; GitHub fixture conformance not checked",
            dir.display()
        );
        return None;
    }
    Some(
        std::fs::read(dir.join(format!("{name}.payload.json")))
            .unwrap_or_else(|e| panic!("{name}: {e}")),
    )
}

fn event_of(name: &str) -> Option<ForgeEvent> {
    let body = fixture(name)?;
    let header = name.split('.').next().unwrap();
    let delivery = parse("fixture", header, &body).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        delivery.repository.as_deref(),
        Some("Codertocat/Hello-World"),
        "{name}"
    );
    Some(delivery.event)
}

#[test]
fn pull_request_events_parse() {
    for (name, want) in [
        ("pull_request.opened", PullRequestAction::Opened),
        ("pull_request.synchronize", PullRequestAction::Synchronized),
        ("pull_request.reopened", PullRequestAction::Reopened),
        ("pull_request.closed", PullRequestAction::Closed),
        ("pull_request.labeled", PullRequestAction::Labeled),
    ] {
        let Some(event) = event_of(name) else { return };
        let ForgeEvent::PullRequest {
            action,
            pull_request,
            sender,
            holds_command,
        } = event
        else {
            panic!("{name}: {event:?}")
        };
        assert!(!holds_command, "{name}");
        assert_eq!(action, want, "{name}");
        assert_eq!(pull_request.number, 2, "{name}");
        assert_eq!(pull_request.author.login, "Codertocat", "{name}");
        assert_eq!(pull_request.author.id, 21031067, "{name}");
        assert_eq!(pull_request.base_ref, "master", "{name}");
        assert_eq!(pull_request.head_sha.len(), 40, "{name}");
        assert!(!sender.is_bot, "{name}");
        assert!(
            !pull_request.merged,
            "{name}: the published closed example is not merged"
        );
    }
}

#[test]
fn labeled_event_carries_the_labels() {
    let Some(ForgeEvent::PullRequest { pull_request, .. }) = event_of("pull_request.labeled")
    else {
        return;
    };
    assert!(!pull_request.labels.is_empty());
}

#[test]
fn comment_events_parse_with_their_action() {
    for (name, want) in [
        ("issue_comment.created", CommentAction::Created),
        (
            "issue_comment.created.with-installation",
            CommentAction::Created,
        ),
        ("issue_comment.edited", CommentAction::Edited),
        ("issue_comment.deleted", CommentAction::Deleted),
    ] {
        let Some(event) = event_of(name) else { return };
        let ForgeEvent::Comment {
            action,
            number,
            on_pull_request,
            comment_id,
            author,
            ..
        } = event
        else {
            panic!("{name}: {event:?}")
        };
        assert_eq!(action, want, "{name}");
        assert_eq!(number, 1, "{name}");
        assert!(
            !on_pull_request,
            "{name}: the published examples are on issues"
        );
        assert!(comment_id > 0, "{name}");
        assert_eq!(author.login, "Codertocat", "{name}");
    }
}

#[test]
fn review_events_parse() {
    let Some(event) = event_of("pull_request_review.submitted") else {
        return;
    };
    let ForgeEvent::Review {
        state,
        pull_request,
        author,
        commit_id,
        ..
    } = event
    else {
        panic!("{event:?}")
    };
    assert_eq!(state, ReviewState::Commented);
    assert_eq!(pull_request.number, 2);
    assert_eq!(author.login, "Codertocat");
    assert_eq!(
        commit_id.as_deref(),
        Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821")
    );
    let Some(event) = event_of("pull_request_review.dismissed") else {
        return;
    };
    assert!(
        matches!(
            event,
            ForgeEvent::Review {
                state: ReviewState::Dismissed,
                ..
            }
        ),
        "{event:?}"
    );
}

#[test]
fn push_and_ping_parse_and_the_rest_is_ignored() {
    let Some(event) = event_of("push") else {
        return;
    };
    let ForgeEvent::Push {
        git_ref,
        before,
        after,
        default_branch,
        ..
    } = event
    else {
        panic!("{event:?}")
    };
    assert_eq!(git_ref, "refs/tags/simple-tag");
    assert_eq!(
        default_branch.as_deref(),
        Some("master"),
        "repository.default_branch"
    );
    assert_eq!(before, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    assert_eq!(after, "0000000000000000000000000000000000000000");
    let Some(body) = fixture("ping") else { return };
    assert_eq!(parse("p", "ping", &body).unwrap().event, ForgeEvent::Ping);
    for name in [
        "issues.opened",
        "check_suite.requested",
        "installation.created",
    ] {
        let body = fixture(name).unwrap();
        let header = name.split('.').next().unwrap();
        let event = parse("x", header, &body).unwrap().event;
        assert!(
            matches!(event, ForgeEvent::Ignored { .. }),
            "{name}: {event:?}"
        );
    }
}

// An issue or PR opened with a `/breakglass` line in its description: no command (the bot reads
// comments), but an event the bot answers, naming who opened it.
#[test]
fn an_issue_or_pr_opened_with_a_command_in_its_description_is_told_apart() {
    let Some(issue) = fixture("issues.opened") else {
        return;
    };
    let mut issue: Value = serde_json::from_slice(&issue).unwrap();
    issue["issue"]["body"] = json!("Prod is down.\r\n/breakglass prod 1h admin -- db");
    let event = parse("x", "issues", issue.to_string().as_bytes())
        .unwrap()
        .event;
    let ForgeEvent::IssueDescribedCommand {
        number,
        author,
        confidential,
    } = event
    else {
        panic!("{event:?}")
    };
    assert_eq!(
        (number, author.login.as_str(), confidential),
        (1, "Codertocat", false)
    );
    issue["action"] = json!("edited");
    let edited = parse("x", "issues", issue.to_string().as_bytes()).unwrap();
    assert!(
        matches!(edited.event, ForgeEvent::Ignored { .. }),
        "{edited:?}"
    );

    let pr = fixture("pull_request.opened").unwrap();
    let mut pr: Value = serde_json::from_slice(&pr).unwrap();
    let holds = |pr: &Value| match parse("x", "pull_request", pr.to_string().as_bytes())
        .unwrap()
        .event
    {
        ForgeEvent::PullRequest { holds_command, .. } => holds_command,
        other => panic!("{other:?}"),
    };
    assert!(!holds(&pr), "the published example holds no command");
    pr["pull_request"]["body"] = json!("/breakglass approve");
    assert!(holds(&pr));
    pr["action"] = json!("reopened");
    assert!(!holds(&pr), "only an opening is answered");
}
