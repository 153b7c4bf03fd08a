//! GitLab webhook conformance: for each of GitLab's documented example payloads
//! (`../shared/fixtures/gitlab/` from the workspace root), the forge sends the same kind of
//! event with every key the example has in the objects a bot reads, and the key paths the bot
//! reads (listed below) with the example's JSON types.

mod common;

use std::path::PathBuf;

use breakglass_test_forge::{Noteable, TestForge, User};
use common::REPO;
use serde_json::Value;

fn fixtures_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/gitlab");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: GitLab webhook conformance needs the fixtures at {}, which are absent",
            dir.display()
        );
        None
    }
}

fn fixture(dir: &std::path::Path, name: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(name)).expect("fixture readable");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// Objects whose every key (of the example) our payload must have too.
const OBJECTS: &[&str] = &[
    "",
    "/user",
    "/project",
    "/repository",
    "/object_attributes",
    "/object_attributes/last_commit",
    "/object_attributes/source",
    "/object_attributes/target",
    "/merge_request",
    "/merge_request/last_commit",
    "/issue",
    "/note",
    "/commits/0",
    "/commits/0/author",
];

/// The key paths the bot's GitLab parser reads, per fixture (JSON pointers).
const PUSH_PATHS: &[&str] = &[
    "/object_kind",
    "/user_id",
    "/user_username",
    "/user_name",
    "/ref",
    "/before",
    "/after",
    "/project/path_with_namespace",
    "/project_id",
    "/commits/0/id",
    "/commits/0/added",
    "/commits/0/modified",
    "/commits/0/removed",
    "/total_commits_count",
];
const NOTE_MR_PATHS: &[&str] = &[
    "/object_kind",
    "/event_type",
    "/user/id",
    "/user/username",
    "/project/path_with_namespace",
    "/object_attributes/id",
    "/object_attributes/note",
    "/object_attributes/noteable_type",
    "/object_attributes/created_at",
    "/object_attributes/updated_at",
    "/object_attributes/action",
    "/merge_request/iid",
    "/merge_request/id",
    "/merge_request/source_branch",
    "/merge_request/target_branch",
    "/merge_request/last_commit/id",
];
const NOTE_ISSUE_PATHS: &[&str] = &[
    "/object_kind",
    "/event_type",
    "/user/id",
    "/user/username",
    "/project/path_with_namespace",
    "/object_attributes/id",
    "/object_attributes/note",
    "/object_attributes/noteable_type",
    "/object_attributes/created_at",
    "/object_attributes/action",
    "/issue/iid",
    "/issue/id",
];
const MR_PATHS: &[&str] = &[
    "/object_kind",
    "/event_type",
    "/user/id",
    "/user/username",
    "/project/path_with_namespace",
    "/object_attributes/iid",
    "/object_attributes/id",
    "/object_attributes/action",
    "/object_attributes/title",
    "/object_attributes/description",
    "/object_attributes/state",
    "/object_attributes/draft",
    "/object_attributes/work_in_progress",
    "/object_attributes/source_branch",
    "/object_attributes/target_branch",
    "/object_attributes/source_project_id",
    "/object_attributes/target_project_id",
    "/object_attributes/source/path_with_namespace",
    "/object_attributes/last_commit/id",
    "/object_attributes/created_at",
    "/object_attributes/updated_at",
    "/object_attributes/labels",
    "/labels",
    "/changes",
];
const EMOJI_PATHS: &[&str] = &[
    "/object_kind",
    "/event_type",
    "/user/id",
    "/user/username",
    "/project/path_with_namespace",
    "/object_attributes/id",
    "/object_attributes/name",
    "/object_attributes/action",
    "/object_attributes/awardable_type",
    "/object_attributes/awardable_id",
    "/object_attributes/created_at",
    "/object_attributes/user_id",
    "/note/id",
    "/note/noteable_type",
    "/issue/iid",
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

/// Every difference of `ours` from the example that matters.
fn compare(name: &str, fixture: &Value, ours: &Value, paths: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    for path in paths {
        let Some(expected) = fixture.pointer(path) else {
            problems.push(format!(
                "{name}: the example itself lacks {path} (fix the list)"
            ));
            continue;
        };
        match ours.pointer(path) {
            None => problems.push(format!("{name}: {path} is missing")),
            Some(actual) if !expected.is_null() && type_name(expected) != type_name(actual) => {
                problems.push(format!(
                    "{name}: {path} is {} (example: {})",
                    type_name(actual),
                    type_name(expected)
                ))
            }
            Some(_) => {}
        }
    }
    for pointer in OBJECTS {
        let Some(Value::Object(expected)) = fixture.pointer(pointer) else {
            continue;
        };
        let Some(Value::Object(actual)) = ours.pointer(pointer) else {
            problems.push(format!("{name}: object {pointer:?} is missing"));
            continue;
        };
        for key in expected.keys() {
            if !actual.contains_key(key) {
                problems.push(format!("{name}: {pointer}/{key} is missing"));
            }
        }
    }
    problems
}

#[test]
fn the_comparison_reports_missing_keys_and_wrong_types() {
    let example = serde_json::json!({"a": 1, "user": {"id": 1, "username": "x"}});
    let ours = serde_json::json!({"a": "1", "user": {"id": 2}});
    let problems = compare("t", &example, &ours, &["/a", "/user/username", "/b"]);
    assert_eq!(problems.len(), 4, "{problems:#?}");
}

struct World {
    forge: TestForge,
    alice: User,
    bob: User,
}

/// A forge with the requests repo that records GitLab deliveries without sending them.
async fn world() -> World {
    let forge = TestForge::start().await;
    let alice = forge.user("alice");
    let bob = forge.user("bob");
    forge.create_repo(REPO, &[("README.md", "# Access requests\n")]);
    forge.set_webhooks_paused(true);
    forge.add_gitlab_webhook("http://127.0.0.1:9/unused", "gl-token");
    World { forge, alice, bob }
}

/// The recorded GitLab payloads of `event` with `action` (any when `None`), oldest first.
fn sent(forge: &TestForge, event: &str, action: Option<&str>) -> Vec<Value> {
    forge
        .deliveries()
        .iter()
        .filter(|d| d.event == event && action.is_none_or(|a| d.action.as_deref() == Some(a)))
        .map(|d| d.payload())
        .collect()
}

fn last(forge: &TestForge, event: &str, action: Option<&str>) -> Value {
    sent(forge, event, action)
        .pop()
        .unwrap_or_else(|| panic!("no {event} {action:?} was sent"))
}

fn assert_conforms(problems: Vec<String>) {
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// alice pushes a request on `req` and opens MR !1.
fn open_mr(w: &World) -> u64 {
    w.forge.push_files(
        REPO,
        "req",
        &w.alice,
        &[("requests/prod/a.yaml", "role: admin\n")],
        "Request prod admin",
    );
    w.forge
        .gl_open_mr(REPO, &w.alice, "req", "Access: prod admin", "INC-1")
}

#[tokio::test]
async fn push_hook_has_the_examples_keys() {
    let Some(dir) = fixtures_dir() else { return };
    let w = world().await;
    w.forge.push_files(
        REPO,
        "req",
        &w.alice,
        &[
            ("requests/prod/a.yaml", "role: admin\n"),
            ("README.md", "changed\n"),
        ],
        "Request",
    );
    let ours = last(&w.forge, "Push Hook", None);
    assert_conforms(compare(
        "push",
        &fixture(&dir, "push.json"),
        &ours,
        PUSH_PATHS,
    ));
    assert_eq!(
        ours["commits"][0]["added"],
        serde_json::json!(["requests/prod/a.yaml"])
    );
    assert_eq!(
        ours["commits"][0]["modified"],
        serde_json::json!(["README.md"])
    );
    assert_eq!(ours["user_username"], "alice");
    assert_eq!(ours["project"]["path_with_namespace"], REPO);
}

#[tokio::test]
async fn merge_request_hooks_have_the_examples_keys_for_every_action() {
    let Some(dir) = fixtures_dir() else { return };
    let example = fixture(&dir, "merge_request.json");
    let w = world().await;
    let iid = open_mr(&w);
    let open = last(&w.forge, "Merge Request Hook", Some("open"));
    assert_conforms(compare("merge_request open", &example, &open, MR_PATHS));
    assert_eq!(open["object_attributes"]["iid"], iid);

    // A push to the source branch: `update` with `oldrev`.
    let before = w.forge.gl_mr(REPO, iid).head_sha;
    w.forge.push_files(
        REPO,
        "req",
        &w.alice,
        &[("requests/prod/a.yaml", "role: dns\n")],
        "fix",
    );
    let update = last(&w.forge, "Merge Request Hook", Some("update"));
    assert_conforms(compare("merge_request update", &example, &update, MR_PATHS));
    assert_eq!(update["object_attributes"]["oldrev"], before.as_str());

    // Draft and labels: `update` with `changes.draft` / `changes.labels`.
    let number = w.forge.gl_number(REPO, Noteable::MergeRequest(iid));
    w.forge.set_draft(REPO, number, &w.alice, true);
    let draft = last(&w.forge, "Merge Request Hook", Some("update"));
    assert_eq!(draft["changes"]["draft"]["current"], true);
    assert_eq!(draft["changes"]["draft"]["previous"], false);
    assert_eq!(draft["object_attributes"]["draft"], true);
    w.forge.set_draft(REPO, number, &w.alice, false);
    w.forge.label(REPO, number, &w.alice, "sev1");
    let labeled = last(&w.forge, "Merge Request Hook", Some("update"));
    assert_conforms(compare(
        "merge_request labels",
        &example,
        &labeled,
        &["/changes/labels/previous", "/changes/labels/current"],
    ));
    assert_eq!(labeled["changes"]["labels"]["current"][0]["title"], "sev1");

    // Approvals: `approved` (the first one, none required), `unapproved` when it is withdrawn.
    w.forge.gl_approve(REPO, iid, &w.bob);
    let approved = last(&w.forge, "Merge Request Hook", Some("approved"));
    assert_conforms(compare(
        "merge_request approved",
        &example,
        &approved,
        MR_PATHS,
    ));
    assert_eq!(approved["user"]["username"], "bob");
    w.forge.gl_unapprove(REPO, iid, &w.bob);
    let unapproved = last(&w.forge, "Merge Request Hook", Some("unapproved"));
    assert_conforms(compare(
        "merge_request unapproved",
        &example,
        &unapproved,
        MR_PATHS,
    ));

    // Close, reopen, merge.
    w.forge.close_pr(REPO, number, &w.alice);
    assert_eq!(
        last(&w.forge, "Merge Request Hook", Some("close"))["object_attributes"]["state"],
        "closed"
    );
    w.forge.reopen_pr(REPO, number, &w.alice);
    assert_eq!(
        last(&w.forge, "Merge Request Hook", Some("reopen"))["object_attributes"]["state"],
        "opened"
    );
    w.forge.gl_merge_mr(REPO, iid, &w.bob);
    let merged = last(&w.forge, "Merge Request Hook", Some("merge"));
    assert_conforms(compare("merge_request merge", &example, &merged, MR_PATHS));
    assert_eq!(merged["object_attributes"]["state"], "merged");
}

#[tokio::test]
async fn note_hooks_have_the_examples_keys_on_merge_requests_and_issues() {
    let Some(dir) = fixtures_dir() else { return };
    let w = world().await;
    let mr = open_mr(&w);
    let issue = w.forge.gl_open_issue(REPO, &w.bob, "Need access", "");
    assert_eq!((mr, issue), (1, 1), "issues and MRs count apart");

    w.forge
        .gl_comment_mr(REPO, mr, &w.bob, "/breakglass approve");
    let on_mr = last(&w.forge, "Note Hook", Some("create"));
    assert_conforms(compare(
        "note on a merge request",
        &fixture(&dir, "note_merge_request.json"),
        &on_mr,
        NOTE_MR_PATHS,
    ));
    assert_eq!(on_mr["object_attributes"]["noteable_type"], "MergeRequest");
    assert!(on_mr.get("issue").is_none());

    let note = w
        .forge
        .gl_comment_issue(REPO, issue, &w.bob, "/breakglass prod 1h admin -- x");
    let on_issue = last(&w.forge, "Note Hook", Some("create"));
    assert_conforms(compare(
        "note on an issue",
        &fixture(&dir, "note_issue.json"),
        &on_issue,
        NOTE_ISSUE_PATHS,
    ));
    assert_eq!(on_issue["object_attributes"]["noteable_type"], "Issue");
    assert!(on_issue.get("merge_request").is_none());

    w.forge.edit_comment(REPO, note, &w.bob, "edited");
    let edited = last(&w.forge, "Note Hook", Some("update"));
    assert_eq!(edited["object_attributes"]["note"], "edited");
}

#[tokio::test]
async fn emoji_hooks_have_the_examples_keys_for_notes_and_merge_requests() {
    let Some(dir) = fixtures_dir() else { return };
    let example = fixture(&dir, "emoji.json");
    let w = world().await;
    let issue = w.forge.gl_open_issue(REPO, &w.alice, "Need access", "");
    let note = w
        .forge
        .gl_comment_issue(REPO, issue, &w.alice, "Testing 123");
    w.forge.gl_award_note(REPO, note, &w.bob, "thumbsup");
    let on_note = last(&w.forge, "Emoji Hook", Some("award"));
    assert_conforms(compare("emoji on a note", &example, &on_note, EMOJI_PATHS));
    assert_eq!(on_note["object_attributes"]["awardable_type"], "Note");
    assert_eq!(on_note["object_attributes"]["awardable_id"], note);

    // The example awards a note of an issue; an award on the merge request itself has neither.
    let mut on_mr_example = example.clone();
    if let Some(m) = on_mr_example.as_object_mut() {
        m.remove("note");
        m.remove("issue");
    }
    let mr = open_mr(&w);
    let award = w.forge.gl_award_mr(REPO, mr, &w.bob, "thumbsup");
    let on_mr = last(&w.forge, "Emoji Hook", Some("award"));
    let mr_paths: Vec<&str> = EMOJI_PATHS
        .iter()
        .copied()
        .filter(|p| !p.starts_with("/note") && !p.starts_with("/issue"))
        .collect();
    assert_conforms(compare(
        "emoji on a merge request",
        &on_mr_example,
        &on_mr,
        &mr_paths,
    ));
    assert_eq!(on_mr["object_attributes"]["awardable_type"], "MergeRequest");
    assert_eq!(on_mr["merge_request"]["iid"], mr);
    assert_eq!(on_mr["object_attributes"]["name"], "thumbsup");
    assert_eq!(on_mr["object_attributes"]["id"], award);

    w.forge
        .gl_revoke_award(REPO, Noteable::MergeRequest(mr), award);
    let revoke = last(&w.forge, "Emoji Hook", Some("revoke"));
    assert_conforms(compare("emoji revoke", &on_mr_example, &revoke, &mr_paths));
    assert_eq!(revoke["event_type"], "revoke");
    assert_eq!(revoke["user"]["username"], "bob");
}
