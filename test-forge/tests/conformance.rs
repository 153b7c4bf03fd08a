//! Webhook payload conformance: for each event the bot reads, the forge's payload has every key
//! that GitHub's real example payload (`../shared/fixtures/github/`) has, in the objects a bot
//! reads, with the same JSON types where the fixture's value is not null.

mod common;

use std::path::PathBuf;

use breakglass_test_forge::{AppConfig, Delivery, ReviewState};
use common::*;
use serde_json::Value;

fn fixtures_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/github");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: webhook conformance needs the fixtures at {}, which are absent",
            dir.display()
        );
        None
    }
}

/// The objects whose keys must match, as JSON pointers.
const OBJECTS: &[&str] = &[
    "",
    "/sender",
    "/repository",
    "/repository/owner",
    "/installation",
    "/pull_request",
    "/pull_request/head",
    "/pull_request/base",
    "/pull_request/user",
    "/pull_request/labels/0",
    "/pull_request/_links",
    "/issue",
    "/issue/user",
    "/issue/labels/0",
    "/issue/reactions",
    "/comment",
    "/comment/user",
    "/comment/reactions",
    "/review",
    "/review/user",
    "/review/_links",
    "/label",
    "/changes",
    "/pusher",
    "/commits/0",
    "/head_commit",
];

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every problem of `ours` against `fixture`.
fn compare(name: &str, fixture: &Value, ours: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for pointer in OBJECTS {
        let Some(Value::Object(expected)) = fixture.pointer(pointer) else {
            continue;
        };
        let Some(Value::Object(actual)) = ours.pointer(pointer) else {
            // An empty list here (no labels yet) has no element to compare.
            let empty_list = pointer
                .strip_suffix("/0")
                .and_then(|parent| ours.pointer(parent))
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty);
            if !empty_list {
                problems.push(format!("{name}: no object at {pointer:?}"));
            }
            continue;
        };
        for (key, value) in expected {
            match actual.get(key) {
                None => problems.push(format!("{name}: missing {pointer}/{key}")),
                Some(mine) => {
                    // A timestamp GitHub sends as a number in push payloads may be a string here
                    // only if the fixture's is a string too; nulls on either side say nothing.
                    if !value.is_null() && !mine.is_null() && type_name(value) != type_name(mine) {
                        problems.push(format!(
                            "{name}: {pointer}/{key} is {} but GitHub sends {}",
                            type_name(mine),
                            type_name(value)
                        ));
                    }
                }
            }
        }
    }
    problems
}

fn find<'a>(deliveries: &'a [Delivery], event: &str, action: Option<&str>) -> &'a Delivery {
    deliveries
        .iter()
        .find(|d| d.event == event && d.action.as_deref() == action)
        .unwrap_or_else(|| panic!("no {event}.{action:?} delivery"))
}

#[tokio::test]
async fn webhook_payloads_have_every_key_of_githubs_examples() {
    let Some(dir) = fixtures_dir() else {
        return;
    };
    let w = world().await;
    w.forge.configure_app(AppConfig {
        app_id: 1,
        installation_id: 2,
        bot_login: "breakglass[bot]".into(),
        token_ttl: chrono::Duration::hours(1),
    });
    // Recorded, never sent: the payloads are all this test needs.
    w.forge.set_webhooks_paused(true);
    w.forge.add_webhook("http://127.0.0.1:9/unused", "s");

    let carol = w.forge.user("carol");
    let n = alice_opens_request(&w, "req-1");
    w.forge.label(REPO, n, &w.alice, "sev1");
    let c = w.forge.comment(REPO, n, &w.alice, "/breakglass status");
    w.forge.edit_comment(REPO, c, &w.alice, "/breakglass help");
    w.forge.delete_comment(REPO, c, &w.alice);
    let r = w.forge.review(REPO, n, &carol, ReviewState::Approved);
    w.forge.dismiss_review(REPO, n, r, &w.alice);
    w.forge.push_files(
        REPO,
        "req-1",
        &w.alice,
        &[("requests/prod/req-1.yaml", "x: 1\n")],
        "edit",
    );
    w.forge.close_pr(REPO, n, &w.alice);
    w.forge.reopen_pr(REPO, n, &w.alice);
    w.forge.open_issue(REPO, &w.alice, "Access please", "");
    let deliveries = w.forge.deliveries();

    let cases: &[(&str, &str, Option<&str>)] = &[
        (
            "pull_request.opened.payload.json",
            "pull_request",
            Some("opened"),
        ),
        (
            "pull_request.labeled.payload.json",
            "pull_request",
            Some("labeled"),
        ),
        (
            "pull_request.synchronize.payload.json",
            "pull_request",
            Some("synchronize"),
        ),
        (
            "pull_request.closed.payload.json",
            "pull_request",
            Some("closed"),
        ),
        (
            "pull_request.reopened.payload.json",
            "pull_request",
            Some("reopened"),
        ),
        (
            "issue_comment.created.payload.json",
            "issue_comment",
            Some("created"),
        ),
        (
            "issue_comment.edited.payload.json",
            "issue_comment",
            Some("edited"),
        ),
        (
            "issue_comment.deleted.payload.json",
            "issue_comment",
            Some("deleted"),
        ),
        (
            "pull_request_review.submitted.payload.json",
            "pull_request_review",
            Some("submitted"),
        ),
        (
            "pull_request_review.dismissed.payload.json",
            "pull_request_review",
            Some("dismissed"),
        ),
        ("issues.opened.payload.json", "issues", Some("opened")),
        ("push.payload.json", "push", None),
    ];
    let mut problems = Vec::new();
    for (file, event, action) in cases {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let fixture: Value = serde_json::from_str(&text).unwrap();
        let ours = find(&deliveries, event, *action).payload();
        problems.extend(compare(file, &fixture, &ours));
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[tokio::test]
async fn bot_relevant_fields_match_the_model() {
    // Independent of the fixtures: the values the bot acts on are the forge's own truth.
    let w = world().await;
    w.forge.set_webhooks_paused(true);
    w.forge.add_webhook("http://127.0.0.1:9/unused", "s");
    let n = alice_opens_request(&w, "req-1");
    w.forge.label(REPO, n, &w.alice, "sev1");
    let d = w.forge.deliveries();
    let opened = find(&d, "pull_request", Some("opened")).payload();
    let pr = w.forge.pr(REPO, n);
    assert_eq!(opened["action"], "opened");
    assert_eq!(opened["pull_request"]["number"], n);
    assert_eq!(opened["pull_request"]["head"]["sha"], pr.head_sha.as_str());
    assert_eq!(opened["pull_request"]["head"]["ref"], "req-1");
    assert_eq!(opened["pull_request"]["base"]["ref"], "main");
    assert_eq!(opened["pull_request"]["user"]["login"], "alice");
    assert_eq!(opened["pull_request"]["state"], "open");
    assert_eq!(opened["pull_request"]["merged"], false);
    assert_eq!(opened["repository"]["full_name"], REPO);
    assert_eq!(opened["repository"]["name"], NAME);
    assert_eq!(opened["repository"]["owner"]["login"], OWNER);
    assert_eq!(opened["repository"]["default_branch"], "main");
    assert_eq!(opened["sender"]["type"], "User");
    let labeled = find(&d, "pull_request", Some("labeled")).payload();
    assert_eq!(labeled["label"]["name"], "sev1");
    assert_eq!(labeled["pull_request"]["labels"][0]["name"], "sev1");
}

#[tokio::test]
async fn octocrab_parses_every_webhook_payload() {
    let w = world().await;
    w.forge.configure_app(AppConfig {
        app_id: 1,
        installation_id: 2,
        bot_login: "breakglass[bot]".into(),
        token_ttl: chrono::Duration::hours(1),
    });
    w.forge.set_webhooks_paused(true);
    w.forge.add_webhook("http://127.0.0.1:9/unused", "s");
    let carol = w.forge.user("carol");
    let n = alice_opens_request(&w, "req-1");
    w.forge.label(REPO, n, &w.alice, "sev1");
    w.forge.unlabel(REPO, n, &w.alice, "sev1");
    w.forge.edit_pr(REPO, n, &w.alice, Some("t2"), Some("b2"));
    let c = w.forge.comment(REPO, n, &w.alice, "/breakglass status");
    w.forge.edit_comment(REPO, c, &w.alice, "/breakglass help");
    w.forge.delete_comment(REPO, c, &w.alice);
    let r = w.forge.review(REPO, n, &carol, ReviewState::Approved);
    w.forge.dismiss_review(REPO, n, r, &w.alice);
    w.forge
        .review(REPO, n, &carol, ReviewState::ChangesRequested);
    w.forge.push_files(
        REPO,
        "req-1",
        &w.alice,
        &[("requests/prod/req-1.yaml", "x: 1\n")],
        "edit",
    );
    w.forge.close_pr(REPO, n, &w.alice);
    w.forge.reopen_pr(REPO, n, &w.alice);
    w.forge.merge_pr(REPO, n, &carol);
    let i = w.forge.open_issue(REPO, &w.alice, "Access please", "");
    w.forge.label(REPO, i, &w.alice, "question");
    w.forge
        .comment(REPO, i, &w.alice, "/breakglass prod 1h admin -- INC-1");
    w.forge.close_pr(REPO, i, &w.alice);
    w.forge
        .push_files(REPO, "req-2", &w.alice, &[("b.txt", "b")], "b");
    let d = w.forge.open_pr_draft(REPO, &w.alice, "req-2", "Draft", "");
    w.forge.set_draft(REPO, d, &w.alice, false);
    w.forge.set_draft(REPO, d, &w.alice, true);
    let mallory = w.forge.user("mallory");
    w.forge.open_fork_pr(
        REPO,
        &mallory,
        "mallory/access-requests",
        "main",
        &[("c.txt", "c")],
        "From a fork",
    );

    let deliveries = w.forge.deliveries();
    assert!(deliveries.len() >= 25, "{}", deliveries.len());
    for action in ["ready_for_review", "converted_to_draft"] {
        find(&deliveries, "pull_request", Some(action));
    }
    for d in &deliveries {
        let parsed = octocrab::models::webhook_events::WebhookEvent::try_from_header_and_body(
            &d.event, &d.body,
        );
        assert!(
            parsed.is_ok(),
            "octocrab cannot parse {}.{:?}: {:?}",
            d.event,
            d.action,
            parsed.err()
        );
    }
}

#[tokio::test]
async fn draft_and_fork_payloads_have_every_key_of_githubs_pull_request_example() {
    let Some(dir) = fixtures_dir() else {
        return;
    };
    let w = world().await;
    w.forge.configure_app(AppConfig {
        app_id: 1,
        installation_id: 2,
        bot_login: "breakglass[bot]".into(),
        token_ttl: chrono::Duration::hours(1),
    });
    w.forge.set_webhooks_paused(true);
    w.forge.add_webhook("http://127.0.0.1:9/unused", "s");
    let n = alice_opens_request(&w, "req-1");
    w.forge.set_draft(REPO, n, &w.alice, true);
    w.forge.set_draft(REPO, n, &w.alice, false);
    let mallory = w.forge.user("mallory");
    w.forge.open_fork_pr(
        REPO,
        &mallory,
        "mallory/access-requests",
        "main",
        &[("c.txt", "c")],
        "From a fork",
    );
    let text = std::fs::read_to_string(dir.join("pull_request.opened.payload.json")).unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let deliveries = w.forge.deliveries();
    let fork_opened = deliveries
        .iter()
        .filter(|d| d.event == "pull_request" && d.action.as_deref() == Some("opened"))
        .nth(1)
        .expect("the fork PR's opened")
        .payload();
    assert_eq!(fork_opened["pull_request"]["head"]["repo"]["fork"], true);
    let mut problems = compare("fork opened", &fixture, &fork_opened);
    // The fork's repository object has every key GitHub's head repository has.
    if let (Some(expected), Some(actual)) = (
        fixture.pointer("/pull_request/head/repo"),
        fork_opened.pointer("/pull_request/head/repo"),
    ) {
        let wrapped = |v: &Value| serde_json::json!({ "repository": v });
        problems.extend(compare(
            "fork head.repo",
            &wrapped(expected),
            &wrapped(actual),
        ));
    }
    for action in ["converted_to_draft", "ready_for_review"] {
        let ours = find(&deliveries, "pull_request", Some(action)).payload();
        problems.extend(compare(action, &fixture, &ours));
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
