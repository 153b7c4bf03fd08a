//! The GitLab dialect through plain HTTP: routes under `/api/v4`, their status codes and
//! headers, and the webhooks they cause, as a GitLab client sees them.

mod common;

use std::sync::{Arc, Mutex};

use breakglass_test_forge::{
    BranchDetour, FailureKind, FailureSpec, Noteable, Protection, RouteMatcher, TestForge, User,
};
use common::REPO;
use serde_json::{Value, json};

const PROJECT: &str = "acme%2Faccess-requests";

struct World {
    forge: TestForge,
    alice: User,
    bob: User,
    bot: User,
    http: reqwest::Client,
}

async fn world() -> World {
    let forge = TestForge::start().await;
    let alice = forge.user("alice");
    let bob = forge.user("bob");
    let bot = forge.bot_user("breakglass-bot");
    forge.create_repo(
        REPO,
        &[
            ("README.md", "# Access requests\n"),
            ("policies/prod.yaml", "environment: prod\n"),
        ],
    );
    World {
        forge,
        alice,
        bob,
        bot,
        http: reqwest::Client::new(),
    }
}

/// A GitLab answer: status, headers and JSON body (`Null` when empty or not JSON).
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    json: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl World {
    /// `method /api/v4{path}` as `user` with `PRIVATE-TOKEN`, a JSON body when given.
    async fn call(&self, user: &User, method: &str, path: &str, body: Option<Value>) -> Answer {
        let url = format!("{}{path}", self.forge.gitlab_api_url());
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(method, url)
            .header("PRIVATE-TOKEN", self.forge.token_for(user));
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(&b).expect("json"));
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            json,
        }
    }

    async fn get(&self, user: &User, path: &str) -> Answer {
        self.call(user, "GET", path, None).await
    }

    /// alice pushes a request file on `branch` and opens an MR through the API; returns its iid.
    async fn open_request(&self, branch: &str) -> u64 {
        self.forge.push_files(
            REPO,
            branch,
            &self.alice,
            &[("requests/prod/req-1.yaml", "role: admin\n")],
            "Request prod admin",
        );
        let a = self
            .call(
                &self.alice,
                "POST",
                &format!("/projects/{PROJECT}/merge_requests"),
                Some(json!({"source_branch": branch, "target_branch": "main", "title": "Access: prod admin", "description": "INC-1"})),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.json);
        a.json["iid"].as_u64().expect("iid")
    }
}

/// A webhook receiver on loopback that keeps every request's headers and body.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(axum::http::HeaderMap, Value)>>>,
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let rx = Receiver::default();
        let kept = rx.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let kept = kept.clone();
                    async move {
                        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        kept.got.lock().unwrap().push((headers, json));
                        "ok"
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        (rx, url)
    }

    fn events(&self, event: &str) -> Vec<(axum::http::HeaderMap, Value)> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(h, _)| h.get("x-gitlab-event").is_some_and(|v| v == event))
            .cloned()
            .collect()
    }
}

#[tokio::test]
async fn tokens_are_checked_and_rate_limit_headers_sent() {
    let w = world().await;
    let me = w.get(&w.bot, "/user").await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json["username"], "breakglass-bot");
    assert_eq!(me.json["bot"], true);
    assert_eq!(me.json["id"], w.bot.id);
    assert!(me.header("ratelimit-limit").is_some());
    assert!(me.header("ratelimit-remaining").is_some());
    assert!(me.header("ratelimit-reset").is_some());

    let bearer = w
        .http
        .get(format!("{}/user", w.forge.gitlab_api_url()))
        .header(
            "Authorization",
            format!("Bearer {}", w.forge.token_for(&w.alice)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    let bad = w
        .http
        .get(format!("{}/user", w.forge.gitlab_api_url()))
        .header("PRIVATE-TOKEN", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let body: Value = serde_json::from_slice(&bad.bytes().await.unwrap()).unwrap();
    assert_eq!(body, json!({"message": "401 Unauthorized"}));

    let users = w.get(&w.bot, "/users?username=alice").await;
    assert_eq!(users.json.as_array().map(Vec::len), Some(1));
    assert_eq!(users.json[0]["id"], w.alice.id);
    let project = w.get(&w.bot, &format!("/projects/{PROJECT}")).await;
    assert_eq!(project.json["path_with_namespace"], REPO);
    assert_eq!(project.json["default_branch"], "main");
    let by_id = w
        .get(
            &w.bot,
            &format!("/projects/{}", w.forge.gl_project_id(REPO)),
        )
        .await;
    assert_eq!(by_id.json["id"], project.json["id"]);
    assert_eq!(w.get(&w.bot, "/projects/acme%2Fnope").await.status, 404);
}

#[tokio::test]
async fn files_are_read_and_several_actions_make_one_commit() {
    let w = world().await;
    let file = w
        .get(
            &w.bot,
            &format!("/projects/{PROJECT}/repository/files/policies%2Fprod.yaml?ref=main"),
        )
        .await;
    assert_eq!(file.status, 200, "{}", file.json);
    assert_eq!(file.json["file_path"], "policies/prod.yaml");
    assert_eq!(file.json["file_name"], "prod.yaml");
    assert_eq!(file.json["encoding"], "base64");
    assert_eq!(file.json["content"], "ZW52aXJvbm1lbnQ6IHByb2QK");
    let main = w.forge.branch_sha(REPO, "main").unwrap();
    assert_eq!(file.json["commit_id"], main.as_str());
    assert_eq!(file.json["last_commit_id"], main.as_str());
    let missing = w
        .get(
            &w.bot,
            &format!("/projects/{PROJECT}/repository/files/nope.yaml?ref=main"),
        )
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json, json!({"message": "404 File Not Found"}));

    let commit = w
        .call(
            &w.bot,
            "POST",
            &format!("/projects/{PROJECT}/repository/commits"),
            Some(json!({
                "branch": "breakglass/req-1",
                "start_branch": "main",
                "commit_message": "Request req-1\n\nBreakglass-Request: req-1",
                "actions": [
                    {"action": "create", "file_path": "requests/prod/req-1.yaml", "content": "role: admin\n"},
                    {"action": "create", "file_path": "grants/prod/req-1.tf", "content": "cmVzb3VyY2Uge30K", "encoding": "base64"},
                    {"action": "update", "file_path": "README.md", "content": "# changed\n"},
                    {"action": "move", "file_path": "policies/prod-old.yaml", "previous_path": "policies/prod.yaml"},
                ],
            })),
        )
        .await;
    assert_eq!(commit.status, 201, "{}", commit.json);
    let sha = commit.json["id"].as_str().unwrap().to_owned();
    assert_eq!(commit.json["parent_ids"], json!([main]));
    assert_eq!(commit.json["title"], "Request req-1");
    assert_eq!(
        w.forge.branch_sha(REPO, "breakglass/req-1").as_deref(),
        Some(sha.as_str())
    );
    assert_eq!(
        w.forge.files_on(REPO, "breakglass/req-1"),
        vec![
            "README.md",
            "grants/prod/req-1.tf",
            "policies/prod-old.yaml",
            "requests/prod/req-1.yaml"
        ]
    );
    assert_eq!(
        w.forge
            .file_on(REPO, "breakglass/req-1", "grants/prod/req-1.tf")
            .as_deref(),
        Some("resource {}\n")
    );
    let log = w.forge.log(REPO, "breakglass/req-1");
    assert_eq!(log[0].author, "breakglass-bot");
    assert!(log[0].message.contains("Breakglass-Request: req-1"));

    // GitLab's 400s: create of an existing file, update or delete of a missing one.
    for (action, path, msg) in [
        (
            "create",
            "README.md",
            "A file with this name already exists",
        ),
        ("update", "nope.txt", "A file with this name doesn't exist"),
        ("delete", "nope.txt", "A file with this name doesn't exist"),
    ] {
        let a = w
            .call(
                &w.bot,
                "POST",
                &format!("/projects/{PROJECT}/repository/commits"),
                Some(json!({"branch": "breakglass/req-1", "commit_message": "x", "actions": [{"action": action, "file_path": path, "content": "x"}]})),
            )
            .await;
        assert_eq!(
            (a.status, a.json["message"].as_str()),
            (400, Some(msg)),
            "{action} {path}"
        );
    }
    assert_eq!(
        w.forge.branch_sha(REPO, "breakglass/req-1").as_deref(),
        Some(sha.as_str())
    );

    let tree = w
        .get(
            &w.bot,
            &format!("/projects/{PROJECT}/repository/tree?path=requests/prod&ref=breakglass/req-1"),
        )
        .await;
    assert_eq!(tree.status, 200);
    assert_eq!(tree.json[0]["path"], "requests/prod/req-1.yaml");
    assert_eq!(tree.json[0]["type"], "blob");
    let no_tree = w
        .get(
            &w.bot,
            &format!("/projects/{PROJECT}/repository/tree?path=requests/dev&ref=main"),
        )
        .await;
    assert_eq!(no_tree.status, 404);
}

#[tokio::test]
async fn branches_are_created_and_deleted() {
    let w = world().await;
    let main = w.forge.branch_sha(REPO, "main").unwrap();
    let made = w
        .call(
            &w.bot,
            "POST",
            &format!("/projects/{PROJECT}/repository/branches"),
            Some(json!({"branch": "breakglass/x", "ref": "main"})),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.json);
    assert_eq!(made.json["commit"]["id"], main.as_str());
    let again = w
        .call(
            &w.bot,
            "POST",
            &format!("/projects/{PROJECT}/repository/branches"),
            Some(json!({"branch": "breakglass/x", "ref": main})),
        )
        .await;
    assert_eq!(
        (again.status, again.json["message"].as_str()),
        (400, Some("Branch already exists"))
    );
    let got = w
        .get(
            &w.bot,
            &format!("/projects/{PROJECT}/repository/branches/breakglass%2Fx"),
        )
        .await;
    assert_eq!(got.json["commit"]["id"], main.as_str());
    let gone = w
        .call(
            &w.bot,
            "DELETE",
            &format!("/projects/{PROJECT}/repository/branches/breakglass%2Fx"),
            None,
        )
        .await;
    assert_eq!(gone.status, 204);
    assert!(w.forge.branch_sha(REPO, "breakglass/x").is_none());
    let twice = w
        .call(
            &w.bot,
            "DELETE",
            &format!("/projects/{PROJECT}/repository/branches/breakglass%2Fx"),
            None,
        )
        .await;
    assert_eq!(twice.status, 404);
    assert_eq!(twice.json, json!({"message": "404 Branch Not Found"}));
}

#[tokio::test]
async fn merge_requests_open_read_and_diff() {
    let w = world().await;
    let iid = w.open_request("req").await;
    assert_eq!(iid, 1);
    let mr = w
        .get(&w.bot, &format!("/projects/{PROJECT}/merge_requests/{iid}"))
        .await;
    assert_eq!(mr.status, 200);
    for (key, want) in [
        ("state", json!("opened")),
        ("source_branch", json!("req")),
        ("target_branch", json!("main")),
        ("title", json!("Access: prod admin")),
        ("description", json!("INC-1")),
        ("draft", json!(false)),
        ("work_in_progress", json!(false)),
        ("detailed_merge_status", json!("mergeable")),
        ("merge_commit_sha", Value::Null),
        ("source_project_id", json!(w.forge.gl_project_id(REPO))),
        ("target_project_id", json!(w.forge.gl_project_id(REPO))),
    ] {
        assert_eq!(mr.json[key], want, "{key}");
    }
    assert_eq!(
        mr.json["sha"],
        w.forge.branch_sha(REPO, "req").unwrap().as_str()
    );
    assert_eq!(mr.json["author"]["username"], "alice");
    let ts = mr.json["created_at"].as_str().unwrap();
    assert!(ts.ends_with(".000Z") && ts.len() == 24, "{ts}");

    let dup = w
        .call(
            &w.alice,
            "POST",
            &format!("/projects/{PROJECT}/merge_requests"),
            Some(json!({"source_branch": "req", "target_branch": "main", "title": "again"})),
        )
        .await;
    assert_eq!(dup.status, 409, "{}", dup.json);

    let diffs = w
        .get(
            &w.bot,
            &format!("/projects/{PROJECT}/merge_requests/{iid}/diffs"),
        )
        .await;
    assert_eq!(diffs.status, 200);
    assert_eq!(diffs.json[0]["new_path"], "requests/prod/req-1.yaml");
    assert_eq!(diffs.json[0]["new_file"], true);
    assert_eq!(diffs.json[0]["deleted_file"], false);
    assert!(
        diffs.json[0]["diff"]
            .as_str()
            .unwrap()
            .contains("+role: admin")
    );
    let commits = w
        .get(
            &w.bot,
            &format!("/projects/{PROJECT}/merge_requests/{iid}/commits"),
        )
        .await;
    assert_eq!(commits.json.as_array().map(Vec::len), Some(1));

    let listed = w
        .get(
            &w.bot,
            &format!("/projects/{PROJECT}/merge_requests?state=opened&source_branch=req"),
        )
        .await;
    assert_eq!(listed.json[0]["iid"], iid);

    let edited = w
        .call(
            &w.bot,
            "PUT",
            &format!("/projects/{PROJECT}/merge_requests/{iid}"),
            Some(json!({"add_labels": "breakglass,sev1", "title": "Draft: Access"})),
        )
        .await;
    assert_eq!(edited.json["labels"], json!(["breakglass", "sev1"]));
    assert_eq!(edited.json["draft"], true);
    assert_eq!(edited.json["title"], "Draft: Access");
    assert!(w.forge.gl_mr(REPO, iid).draft);
    let closed = w
        .call(
            &w.bot,
            "PUT",
            &format!("/projects/{PROJECT}/merge_requests/{iid}"),
            Some(json!({"state_event": "close", "remove_labels": "sev1"})),
        )
        .await;
    assert_eq!(closed.json["state"], "closed");
    assert_eq!(closed.json["labels"], json!(["breakglass"]));
}

#[tokio::test]
async fn merge_refuses_a_stale_sha_and_makes_a_real_merge_commit() {
    let w = world().await;
    let iid = w.open_request("req").await;
    let stale = w.forge.branch_sha(REPO, "req").unwrap();
    w.forge.push_files(
        REPO,
        "req",
        &w.alice,
        &[("requests/prod/req-1.yaml", "role: dns\n")],
        "fix",
    );
    let head = w.forge.branch_sha(REPO, "req").unwrap();
    let path = format!("/projects/{PROJECT}/merge_requests/{iid}/merge");
    let refused = w
        .call(
            &w.bot,
            "PUT",
            &path,
            Some(json!({"sha": stale, "merge_commit_message": "m"})),
        )
        .await;
    assert_eq!(refused.status, 409);
    assert!(
        refused.json["message"]
            .as_str()
            .unwrap()
            .starts_with("SHA does not match HEAD of source branch"),
        "{}",
        refused.json
    );
    assert!(!w.forge.gl_mr(REPO, iid).merged);

    let main_before = w.forge.branch_sha(REPO, "main").unwrap();
    let message = "Grant req-1\n\nBreakglass-Request: req-1\nBreakglass-Requester: alice";
    let merged = w
        .call(
            &w.bot,
            "PUT",
            &path,
            Some(json!({"sha": head, "merge_commit_message": message, "should_remove_source_branch": true})),
        )
        .await;
    assert_eq!(merged.status, 200, "{}", merged.json);
    assert_eq!(merged.json["state"], "merged");
    let merge_sha = merged.json["merge_commit_sha"].as_str().unwrap().to_owned();
    let log = w.forge.log(REPO, "main");
    assert_eq!(log[0].sha, merge_sha);
    assert_eq!(log[0].parents, vec![main_before, head]);
    assert_eq!(log[0].message, message);
    assert!(
        w.forge.branch_sha(REPO, "req").is_none(),
        "source branch removed"
    );

    let again = w
        .call(&w.bot, "PUT", &path, Some(json!({"sha": merge_sha})))
        .await;
    assert_eq!(again.status, 405);
}

#[tokio::test]
async fn merge_maps_drafts_conflicts_and_protection_to_gitlabs_codes() {
    let w = world().await;
    let iid = w.open_request("req").await;
    let number = w.forge.gl_number(REPO, Noteable::MergeRequest(iid));
    let path = format!("/projects/{PROJECT}/merge_requests/{iid}/merge");
    w.forge.set_draft(REPO, number, &w.alice, true);
    assert_eq!(w.call(&w.bot, "PUT", &path, None).await.status, 405);
    w.forge.set_draft(REPO, number, &w.alice, false);
    w.forge.set_conflicting(REPO, number, true);
    let conflict = w.call(&w.bot, "PUT", &path, None).await;
    assert_eq!(
        (conflict.status, conflict.json["message"].as_str()),
        (406, Some("Branch cannot be merged"))
    );
    w.forge.set_conflicting(REPO, number, false);
    w.forge.fail_next(FailureSpec::gitlab_merge_conflict());
    assert_eq!(
        w.call(&w.bot, "PUT", &path, None).await.status,
        406,
        "injected"
    );
    w.forge.protect_branch(
        REPO,
        "main",
        Protection {
            required_approving_reviews: 1,
            ..Default::default()
        },
    );
    assert_eq!(
        w.call(&w.bob, "PUT", &path, None).await.status,
        401,
        "read access only"
    );
    w.forge.add_team_member("acme/sre", &w.bob);
    assert_eq!(
        w.call(&w.bob, "PUT", &path, None).await.status,
        405,
        "approval missing"
    );
    let approvals = w
        .get(
            &w.bob,
            &format!("/projects/{PROJECT}/merge_requests/{iid}/approvals"),
        )
        .await;
    assert_eq!(
        (
            approvals.json["approvals_required"].as_u64(),
            approvals.json["approvals_left"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let mr = w
        .get(&w.bob, &format!("/projects/{PROJECT}/merge_requests/{iid}"))
        .await;
    assert_eq!(mr.json["detailed_merge_status"], "not_approved");
    w.forge.gl_approve(REPO, iid, &w.bob);
    let done = w.call(&w.bob, "PUT", &path, None).await;
    assert_eq!(done.status, 200, "{}", done.json);
    let log = w.forge.log(REPO, "main");
    assert!(
        log[0].message.starts_with("Merge branch 'req' into 'main'"),
        "{}",
        log[0].message
    );
    assert_eq!(log[0].parents.len(), 2);
}

#[tokio::test]
async fn notes_on_an_issue_and_a_merge_request_with_the_same_iid_stay_apart() {
    let w = world().await;
    let mr = w.open_request("req").await;
    let issue = w.forge.gl_open_issue(REPO, &w.bob, "Need access", "please");
    assert_eq!((mr, issue), (1, 1));
    let (rx, url) = Receiver::start().await;
    w.forge.add_gitlab_webhook(&url, "s3cret");

    let on_issue = w
        .call(
            &w.bob,
            "POST",
            &format!("/projects/{PROJECT}/issues/1/notes"),
            Some(json!({"body": "/breakglass prod 1h admin -- on issue"})),
        )
        .await;
    assert_eq!(on_issue.status, 201, "{}", on_issue.json);
    assert_eq!(on_issue.json["noteable_type"], "Issue");
    assert_eq!(on_issue.json["noteable_iid"], 1);
    let on_mr = w
        .call(
            &w.bob,
            "POST",
            &format!("/projects/{PROJECT}/merge_requests/1/notes"),
            Some(json!({"body": "on the MR"})),
        )
        .await;
    assert_eq!(on_mr.json["noteable_type"], "MergeRequest");

    let issue_notes = w
        .get(
            &w.bot,
            &format!("/projects/{PROJECT}/issues/1/notes?sort=asc"),
        )
        .await;
    let mr_notes = w
        .get(
            &w.bot,
            &format!("/projects/{PROJECT}/merge_requests/1/notes?sort=asc"),
        )
        .await;
    let bodies = |a: &Answer| -> Vec<String> {
        a.json
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["body"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        bodies(&issue_notes),
        vec!["/breakglass prod 1h admin -- on issue"]
    );
    assert_eq!(bodies(&mr_notes), vec!["on the MR"]);
    assert_eq!(w.forge.gl_notes(REPO, Noteable::Issue(1)).len(), 1);

    // A note id read through the other thread is not found.
    let note_id = on_mr.json["id"].as_u64().unwrap();
    assert_eq!(
        w.get(
            &w.bot,
            &format!("/projects/{PROJECT}/issues/1/notes/{note_id}")
        )
        .await
        .status,
        404
    );
    let edited = w
        .call(
            &w.bob,
            "PUT",
            &format!("/projects/{PROJECT}/merge_requests/1/notes/{note_id}"),
            Some(json!({"body": "edited"})),
        )
        .await;
    assert_eq!(edited.json["body"], "edited");

    w.forge.settle().await;
    let notes = rx.events("Note Hook");
    assert_eq!(notes.len(), 3);
    assert_eq!(notes[0].1["issue"]["iid"], 1);
    assert_eq!(notes[0].1["object_attributes"]["noteable_type"], "Issue");
    assert_eq!(notes[1].1["merge_request"]["iid"], 1);
    assert_eq!(notes[2].1["object_attributes"]["action"], "update");
    let (headers, _) = &notes[0];
    assert_eq!(headers["x-gitlab-token"], "s3cret");
    assert!(headers.contains_key("x-gitlab-event-uuid"));
    assert!(headers.contains_key("x-gitlab-webhook-uuid"));
    assert!(headers.get("x-hub-signature-256").is_none());
    let key = headers["idempotency-key"].to_str().unwrap().to_owned();

    // A redelivery keeps the idempotency key.
    assert!(w.forge.redeliver(&key));
    w.forge.settle().await;
    let again = rx.events("Note Hook");
    assert_eq!(again.len(), 4);
    assert_eq!(again[3].0["idempotency-key"], key.as_str());
    assert_eq!(again[3].1, notes[0].1);
}

#[tokio::test]
async fn awards_and_revokes_send_emoji_hooks_and_show_as_github_reactions() {
    let w = world().await;
    let iid = w.open_request("req").await;
    let (rx, url) = Receiver::start().await;
    w.forge.add_gitlab_webhook(&url, "t");
    let path = format!("/projects/{PROJECT}/merge_requests/{iid}/award_emoji");
    let award = w
        .call(&w.bob, "POST", &path, Some(json!({"name": "thumbsup"})))
        .await;
    assert_eq!(award.status, 201, "{}", award.json);
    assert_eq!(award.json["name"], "thumbsup");
    assert_eq!(award.json["awardable_type"], "MergeRequest");
    assert_eq!(award.json["user"]["username"], "bob");
    let twice = w
        .call(&w.bob, "POST", &path, Some(json!({"name": "thumbsup"})))
        .await;
    assert_eq!(twice.status, 404);
    let id = award.json["id"].as_u64().unwrap();

    // The same award through GitHub's API is a `+1`.
    let number = w.forge.gl_number(REPO, Noteable::MergeRequest(iid));
    let reactions = w.forge.reactions(REPO, number);
    assert_eq!((reactions[0].id, reactions[0].content.as_str()), (id, "+1"));
    assert_eq!(w.get(&w.bot, &path).await.json[0]["id"], id);

    // Only the awarder may revoke.
    assert_eq!(
        w.call(&w.alice, "DELETE", &format!("{path}/{id}"), None)
            .await
            .status,
        401
    );
    assert_eq!(
        w.call(&w.bob, "DELETE", &format!("{path}/{id}"), None)
            .await
            .status,
        204
    );
    assert!(w.forge.reactions(REPO, number).is_empty());

    w.forge.settle().await;
    let hooks = rx.events("Emoji Hook");
    assert_eq!(hooks.len(), 2);
    assert_eq!(hooks[0].1["object_attributes"]["action"], "award");
    assert_eq!(hooks[0].1["object_attributes"]["name"], "thumbsup");
    assert_eq!(hooks[0].1["merge_request"]["iid"], iid);
    assert_eq!(hooks[1].1["object_attributes"]["action"], "revoke");
    assert_eq!(hooks[1].1["object_attributes"]["id"], id);
    assert_eq!(hooks[1].1["user"]["username"], "bob");
}

#[tokio::test]
async fn approvals_send_merge_request_hooks() {
    let w = world().await;
    let iid = w.open_request("req").await;
    let (rx, url) = Receiver::start().await;
    w.forge.add_gitlab_webhook(&url, "t");
    let base = format!("/projects/{PROJECT}/merge_requests/{iid}");
    let head = w.forge.branch_sha(REPO, "req").unwrap();

    let own = w
        .call(&w.alice, "POST", &format!("{base}/approve"), None)
        .await;
    assert_eq!(own.status, 401, "the author does not approve");
    let stale = w
        .call(
            &w.bob,
            "POST",
            &format!("{base}/approve"),
            Some(json!({"sha": "0".repeat(40)})),
        )
        .await;
    assert_eq!(stale.status, 409);
    let ok = w
        .call(
            &w.bob,
            "POST",
            &format!("{base}/approve"),
            Some(json!({"sha": head})),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.json);
    assert_eq!(ok.json["approved_by"][0]["user"]["username"], "bob");
    assert!(ok.json["approved_by"][0]["approved_at"].is_string());
    let carol = w.forge.user("carol");
    w.forge.gl_approve(REPO, iid, &carol);
    assert_eq!(w.forge.gl_approvers(REPO, iid), vec!["bob", "carol"]);
    let un = w
        .call(&w.bob, "POST", &format!("{base}/unapprove"), None)
        .await;
    assert_eq!(un.status, 201);
    assert_eq!(
        w.call(&w.bob, "POST", &format!("{base}/unapprove"), None)
            .await
            .status,
        404
    );
    w.forge.gl_unapprove(REPO, iid, &carol);
    let state = w.get(&w.bot, &format!("{base}/approvals")).await;
    assert_eq!(state.json["approved_by"], json!([]));

    w.forge.settle().await;
    let actions: Vec<(String, String)> = rx
        .events("Merge Request Hook")
        .iter()
        .map(|(_, p)| {
            (
                p["object_attributes"]["action"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                p["user"]["username"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("approved", "bob"),
        ("approval", "carol"),
        ("unapproval", "bob"),
        ("unapproved", "carol"),
    ]
    .iter()
    .map(|(a, u)| ((*a).to_owned(), (*u).to_owned()))
    .collect();
    assert_eq!(actions, want);
    let approved = &rx.events("Merge Request Hook")[0].1;
    assert_eq!(
        approved["object_attributes"]["last_commit"]["id"],
        head.as_str()
    );
    // The GitHub side sees the same approval as a review.
    let number = w.forge.gl_number(REPO, Noteable::MergeRequest(iid));
    assert_eq!(w.forge.reviews(REPO, number).len(), 2);
}

#[tokio::test]
async fn lists_carry_gitlabs_pagination_headers() {
    let w = world().await;
    let iid = w.open_request("req").await;
    for n in 0..5 {
        w.forge
            .gl_comment_mr(REPO, iid, &w.alice, &format!("note {n}"));
    }
    let path = format!("/projects/{PROJECT}/merge_requests/{iid}/notes?sort=asc&per_page=2");
    let first = w.get(&w.bot, &path).await;
    assert_eq!(first.json.as_array().map(Vec::len), Some(2));
    assert_eq!(first.json[0]["body"], "note 0");
    assert_eq!(first.header("x-page"), Some("1"));
    assert_eq!(first.header("x-per-page"), Some("2"));
    assert_eq!(first.header("x-next-page"), Some("2"));
    assert_eq!(first.header("x-total"), Some("5"));
    assert_eq!(first.header("x-total-pages"), Some("3"));
    let link = first.header("link").unwrap();
    assert!(
        link.contains("rel=\"next\"") && link.contains("page=2"),
        "{link}"
    );
    let last = w.get(&w.bot, &format!("{path}&page=3")).await;
    assert_eq!(last.json[0]["body"], "note 4");
    assert_eq!(last.header("x-next-page"), Some(""));
    assert!(!last.header("link").unwrap().contains("rel=\"next\""));
    let default = w
        .get(
            &w.bot,
            &format!("/projects/{PROJECT}/merge_requests/{iid}/notes"),
        )
        .await;
    assert_eq!(default.header("x-per-page"), Some("20"));
    assert_eq!(default.json[0]["body"], "note 4", "newest first by default");
}

#[tokio::test]
async fn injected_rate_limits_answer_429_with_retry_after_and_are_counted() {
    let w = world().await;
    w.forge.reset_calls();
    w.forge.fail_next(FailureSpec::new(
        reqwest::Method::GET,
        "/api/v4/projects",
        1,
        FailureKind::SecondaryRateLimit429 { retry_after: 7 },
    ));
    let path = format!("/projects/{PROJECT}");
    let limited = w.get(&w.bot, &path).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("7"));
    assert_eq!(limited.header("ratelimit-remaining"), Some("0"));
    let fine = w.get(&w.bot, &path).await;
    assert_eq!(fine.status, 200);
    let calls = w.forge.calls();
    assert_eq!(calls.count("GET", "/api/v4/projects/{id}"), 2);
    assert_eq!(calls.total, 2);

    w.forge
        .fail_next(FailureSpec::any(1, FailureKind::Status(502)));
    let bad = w.get(&w.bot, &path).await;
    assert_eq!(bad.status, 502);
    assert_eq!(bad.json["message"], "502 Bad Gateway");
}

#[tokio::test]
async fn statuses_and_group_membership() {
    let w = world().await;
    let sha = w.forge.branch_sha(REPO, "main").unwrap();
    let path = format!("/projects/{PROJECT}/statuses/{sha}");
    let made = w
        .call(
            &w.bot,
            "POST",
            &path,
            Some(
                json!({"state": "running", "name": "breakglass/policy", "description": "checking"}),
            ),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.json);
    assert_eq!(made.json["status"], "running");
    let same = w
        .call(
            &w.bot,
            "POST",
            &path,
            Some(json!({"state": "running", "name": "breakglass/policy"})),
        )
        .await;
    assert_eq!(same.status, 400);
    w.call(
        &w.bot,
        "POST",
        &path,
        Some(json!({"state": "success", "name": "breakglass/policy"})),
    )
    .await;
    let list = w
        .get(
            &w.bot,
            &format!("/projects/{PROJECT}/repository/commits/{sha}/statuses"),
        )
        .await;
    assert_eq!(list.json.as_array().map(Vec::len), Some(1));
    assert_eq!(list.json[0]["status"], "success");
    // GitHub's API shows the same status in GitHub's words.
    assert_eq!(
        w.forge.statuses(REPO, &sha).last().unwrap().state,
        "success"
    );

    w.forge.add_team_member("acme/sre", &w.alice);
    w.forge.add_team_member("acme/sre/oncall", &w.bob);
    let member = |group: &str, user: &User| {
        format!(
            "/groups/{}/members/all/{}",
            group.replace('/', "%2F"),
            user.id
        )
    };
    let yes = w.get(&w.bot, &member("acme/sre/oncall", &w.alice)).await;
    assert_eq!(yes.status, 200, "inherited from acme/sre");
    assert_eq!(yes.json["username"], "alice");
    assert_eq!(yes.json["access_level"], 30);
    assert_eq!(
        w.get(&w.bot, &member("acme/sre/oncall", &w.bob))
            .await
            .status,
        200
    );
    assert_eq!(w.get(&w.bot, &member("acme/sre", &w.bob)).await.status, 404);
    assert_eq!(
        w.get(&w.bot, &member("acme/nope", &w.bob)).await.status,
        404
    );
}

#[tokio::test]
async fn github_hooks_are_unaffected_by_gitlab_ones() {
    let w = world().await;
    w.forge.set_webhooks_paused(true);
    w.forge.add_webhook("http://127.0.0.1:9/github", "s");
    w.forge.add_gitlab_webhook("http://127.0.0.1:9/gitlab", "t");
    let iid = w.open_request("req").await;
    w.forge.gl_award_mr(REPO, iid, &w.bob, "thumbsup");
    let events: Vec<(String, String)> = w
        .forge
        .deliveries()
        .iter()
        .map(|d| {
            (
                d.url.rsplit('/').next().unwrap().to_owned(),
                d.event.clone(),
            )
        })
        .collect();
    let of = |url: &str| -> Vec<&str> {
        events
            .iter()
            .filter(|(u, _)| u == url)
            .map(|(_, e)| e.as_str())
            .collect()
    };
    assert_eq!(
        of("github"),
        vec!["push", "pull_request"],
        "no GitHub event for an award"
    );
    assert_eq!(
        of("gitlab"),
        vec!["Push Hook", "Merge Request Hook", "Emoji Hook"]
    );
}

#[tokio::test]
async fn branch_detour_shows_another_source_head_to_the_matching_call_only() {
    let w = world().await;
    common::record_webhooks(&w.forge);
    let iid = w.open_request("req").await;
    let head = w.forge.branch_sha(REPO, "req").unwrap();
    let other = w.forge.push_files(
        REPO,
        "other",
        &w.alice,
        &[("requests/prod/other.yaml", "role: root\n")],
        "Something else",
    );
    let sent = w.forge.deliveries().len();
    assert!(sent > 0, "webhooks are recorded");
    w.forge.detour_branch(BranchDetour {
        route: RouteMatcher::Route {
            method: Some(reqwest::Method::GET),
            template: "/api/v4/projects/{id}/merge_requests/{iid}/diffs".into(),
        },
        count: 1,
        repo: REPO.into(),
        branch: "req".into(),
        sha: other,
    });
    let mr = format!("/projects/{PROJECT}/merge_requests/{iid}");
    let diffs = format!("{mr}/diffs");
    assert_eq!(w.get(&w.bot, &mr).await.json["sha"], head.as_str());
    let during = w.get(&w.bot, &diffs).await;
    assert_eq!(during.json.as_array().map(Vec::len), Some(1));
    assert_eq!(during.json[0]["new_path"], "requests/prod/other.yaml");
    assert_eq!(w.get(&w.bot, &mr).await.json["sha"], head.as_str());
    assert_eq!(w.forge.branch_sha(REPO, "req").as_deref(), Some(&*head));
    let after = w.get(&w.bot, &diffs).await;
    assert_eq!(after.json[0]["new_path"], "requests/prod/req-1.yaml");
    assert_eq!(w.forge.deliveries().len(), sent, "no webhooks either way");
}

/// `GET /projects/:id/repository/compare` with these query parameters.
async fn compare(w: &World, query: &str) -> Answer {
    w.get(
        &w.bot,
        &format!("/projects/{PROJECT}/repository/compare?{query}"),
    )
    .await
}

#[tokio::test]
async fn compare_lists_commits_and_diffs_of_a_branch() {
    let w = world().await;
    let sha = w.forge.push_files(
        REPO,
        "two",
        &w.alice,
        &[("a.txt", "alpha\n"), ("b/c.txt", "gamma\n")],
        "Two files",
    );
    let cmp = compare(&w, "from=main&to=two").await;
    assert_eq!(cmp.status, 200, "{}", cmp.json);
    assert_eq!(cmp.json["commit"]["id"], sha.as_str());
    assert_eq!(cmp.json["commits"].as_array().map(Vec::len), Some(1));
    assert_eq!(cmp.json["compare_timeout"], false);
    assert_eq!(cmp.json["compare_same_ref"], false);
    let diffs = cmp.json["diffs"].as_array().unwrap();
    assert_eq!(diffs.len(), 2);
    for (d, (path, line)) in diffs
        .iter()
        .zip([("a.txt", "+alpha"), ("b/c.txt", "+gamma")])
    {
        assert_eq!(d["new_path"], path);
        assert_eq!(d["new_file"], true);
        assert!(d["diff"].as_str().unwrap().contains(line), "{d}");
    }
    let main = w.forge.branch_sha(REPO, "main").unwrap();
    assert!(
        cmp.json["web_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/-/compare/{main}...{sha}"))
    );

    let same = compare(&w, "from=two&to=two").await;
    assert_eq!(same.json["compare_same_ref"], true);
    assert_eq!(same.json["commit"], Value::Null);
    assert_eq!(same.json["diffs"], json!([]));

    let missing = compare(&w, "from=main").await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.json, json!({"error": "to is missing"}));
    let unknown = compare(&w, "from=main&to=nope").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json, json!({"message": "404 Ref Not Found"}));
}

#[tokio::test]
async fn compare_diffs_from_the_merge_base_unless_straight() {
    let w = world().await;
    w.forge
        .push_files(REPO, "feature", &w.alice, &[("f.txt", "f\n")], "Feature");
    w.forge
        .push_direct(REPO, &w.alice, &[("m.txt", "m\n")], "Main moves on");
    let paths = |a: &Answer| -> Vec<(String, bool)> {
        a.json["diffs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["new_path"].as_str().unwrap().to_owned(),
                    d["deleted_file"] == true,
                )
            })
            .collect()
    };
    let merge_base = compare(&w, "from=main&to=feature").await;
    assert_eq!(paths(&merge_base), [("f.txt".to_owned(), false)]);
    let straight = compare(&w, "from=main&to=feature&straight=true").await;
    assert_eq!(
        paths(&straight),
        [("f.txt".to_owned(), false), ("m.txt".to_owned(), true)]
    );
    assert_eq!(
        straight.json["commits"].as_array().map(Vec::len),
        Some(1),
        "the commits are the same either way"
    );
}

#[tokio::test]
async fn compare_past_1000_files_cuts_the_diffs_and_says_so() {
    let w = world().await;
    let names: Vec<String> = (0..1001).map(|i| format!("many/f{i:04}.txt")).collect();
    let files: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "x\n")).collect();
    w.forge
        .push_files(REPO, "many", &w.alice, &files, "1001 files");
    let cmp = compare(&w, "from=main&to=many").await;
    assert_eq!(cmp.json["diffs"].as_array().map(Vec::len), Some(1000));
    assert_eq!(cmp.json["compare_timeout"], true);
}
