//! Webhook deliveries: signed like GitHub's, in order, recorded, redeliverable; none for reactions.

mod common;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use breakglass_test_forge::ReviewState;
use common::*;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

const SECRET: &str = "It's a Secret to Everybody";

/// One delivery as the receiver saw it.
#[derive(Clone, Debug)]
struct Seen {
    event: String,
    guid: String,
    payload: Value,
}

/// A tiny receiver that verifies each signature in constant time (answering 401 when it does
/// not match, like the bot must) and records what it accepted.
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn receiver() -> Receiver {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let log = log.clone();
            async move {
                let header = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                assert!(header("user-agent").starts_with("GitHub-Hookshot/"));
                assert_eq!(header("content-type"), "application/json");
                let sig = header("x-hub-signature-256");
                let Some(hex_sig) = sig.strip_prefix("sha256=") else {
                    return StatusCode::UNAUTHORIZED;
                };
                let Ok(raw) = hex::decode(hex_sig) else {
                    return StatusCode::UNAUTHORIZED;
                };
                let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
                mac.update(&body);
                if mac.verify_slice(&raw).is_err() {
                    return StatusCode::UNAUTHORIZED;
                }
                log.lock().unwrap().push(Seen {
                    event: header("x-github-event"),
                    guid: header("x-github-delivery"),
                    payload: serde_json::from_slice(&body).unwrap(),
                });
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver {
        url: format!("http://{addr}/hook"),
        seen,
    }
}

impl Receiver {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn kinds(&self) -> Vec<String> {
        self.seen()
            .iter()
            .map(|s| match s.payload["action"].as_str() {
                Some(a) => format!("{}.{a}", s.event),
                None => s.event.clone(),
            })
            .collect()
    }
}

async fn hooked_world() -> (World, Receiver) {
    let w = world().await;
    let rx = receiver().await;
    w.forge.add_webhook(&rx.url, SECRET);
    (w, rx)
}

#[test]
fn signature_matches_githubs_documented_test_vector() {
    assert_eq!(
        breakglass_test_forge::sign_webhook(SECRET, b"Hello, World!"),
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
}

#[tokio::test]
async fn user_actions_arrive_signed_and_in_order() {
    let (w, rx) = hooked_world().await;
    let carol = w.forge.user("carol");
    let n = alice_opens_request(&w, "req-1");
    let c = w.forge.comment(REPO, n, &w.alice, "/breakglass status");
    w.forge.edit_comment(REPO, c, &w.alice, "/breakglass help");
    w.forge.label(REPO, n, &w.alice, "sev1");
    w.forge.review(REPO, n, &carol, ReviewState::Approved);
    w.forge.push_files(
        REPO,
        "req-1",
        &w.alice,
        &[("requests/prod/req-1.yaml", "role: admin\n")],
        "fix",
    );
    w.forge.unlabel(REPO, n, &w.alice, "sev1");
    w.forge.edit_pr(REPO, n, &w.alice, Some("New title"), None);
    w.forge.delete_comment(REPO, c, &w.alice);
    w.forge.close_pr(REPO, n, &w.alice);
    w.forge.reopen_pr(REPO, n, &w.alice);
    w.forge.open_issue(REPO, &w.alice, "Access please", "");
    w.forge.settle().await;
    assert_eq!(
        rx.kinds(),
        vec![
            "push",
            "pull_request.opened",
            "issue_comment.created",
            "issue_comment.edited",
            "pull_request.labeled",
            "pull_request_review.submitted",
            "push",
            "pull_request.synchronize",
            "pull_request.unlabeled",
            "pull_request.edited",
            "issue_comment.deleted",
            "pull_request.closed",
            "pull_request.reopened",
            "issues.opened",
        ]
    );
    let seen = rx.seen();
    let guids: std::collections::HashSet<_> = seen.iter().map(|s| s.guid.clone()).collect();
    assert_eq!(guids.len(), seen.len(), "every delivery has its own GUID");

    let comment = &seen[2].payload;
    assert_eq!(comment["comment"]["body"], "/breakglass status");
    assert_eq!(comment["comment"]["user"]["id"], w.alice.id);
    assert!(
        comment["issue"]["pull_request"].is_object(),
        "a PR comment has issue.pull_request"
    );
    assert_eq!(
        seen[3].payload["changes"]["body"]["from"],
        "/breakglass status"
    );
    assert_eq!(seen[4].payload["label"]["name"], "sev1");
    let review = &seen[5].payload["review"];
    assert_eq!(review["state"], "approved");
    assert_eq!(review["user"]["login"], "carol");
    assert_eq!(
        review["commit_id"],
        seen[1].payload["pull_request"]["head"]["sha"]
    );
    let sync = &seen[7].payload;
    assert_eq!(
        sync["before"],
        seen[1].payload["pull_request"]["head"]["sha"]
    );
    assert_eq!(sync["after"], sync["pull_request"]["head"]["sha"]);
    assert_eq!(seen[6].payload["ref"], "refs/heads/req-1");
    assert_eq!(seen[6].payload["commits"][0]["message"], "fix");
    assert_eq!(
        seen[9].payload["changes"]["title"]["from"],
        "Break-glass: prod admin"
    );
    assert!(seen[13].payload["issue"].get("pull_request").is_none());
}

#[tokio::test]
async fn bot_api_writes_send_webhooks_with_a_bot_sender() {
    let (w, rx) = hooked_world().await;
    let n = alice_opens_request(&w, "req-1");
    w.octo
        .issues(OWNER, NAME)
        .create_comment(n, "Request received")
        .await
        .unwrap();
    w.octo.pulls(OWNER, NAME).merge(n).send().await.unwrap();
    w.forge.settle().await;
    let kinds = rx.kinds();
    assert_eq!(
        kinds[2..],
        ["issue_comment.created", "push", "pull_request.closed"]
    );
    let seen = rx.seen();
    assert_eq!(seen[2].payload["sender"]["login"], "breakglass[bot]");
    assert_eq!(seen[2].payload["sender"]["type"], "Bot");
    assert_eq!(seen[2].payload["sender"]["id"], w.bot.id);
    let closed = &seen[4].payload["pull_request"];
    assert_eq!(closed["merged"], true);
    assert_eq!(closed["state"], "closed");
    assert_eq!(closed["merge_commit_sha"], seen[3].payload["after"]);
    assert_eq!(seen[3].payload["ref"], "refs/heads/main");
}

#[tokio::test]
async fn reactions_send_no_webhook() {
    let (w, rx) = hooked_world().await;
    let n = alice_opens_request(&w, "req-1");
    w.forge.settle().await;
    let before = w.forge.deliveries().len();
    let carol = w.forge.user("carol");
    w.forge.react(REPO, n, &carol, "+1");
    let c = w.forge.comment(REPO, n, &w.alice, "hi");
    w.forge.react_comment(REPO, c, &carol, "heart");
    w.octo
        .issues(OWNER, NAME)
        .create_reaction(n, octocrab::models::reactions::ReactionContent::Eyes)
        .await
        .unwrap();
    w.forge.settle().await;
    // Only the comment produced a delivery.
    assert_eq!(w.forge.deliveries().len(), before + 1);
    assert_eq!(
        rx.kinds().last().map(String::as_str),
        Some("issue_comment.created")
    );
}

#[tokio::test]
async fn redelivery_keeps_the_guid_and_the_body() {
    let (w, rx) = hooked_world().await;
    let n = alice_opens_request(&w, "req-1");
    w.forge.comment(REPO, n, &w.alice, "/breakglass approve");
    w.forge.settle().await;
    let original = w.forge.deliveries().last().cloned().unwrap();
    assert_eq!(original.status, Some(200));
    assert_eq!(original.attempts, 1);
    assert!(w.forge.redeliver(&original.id));
    w.forge.settle().await;
    let seen = rx.seen();
    let (a, b) = (&seen[seen.len() - 2], &seen[seen.len() - 1]);
    assert_eq!(a.guid, b.guid);
    assert_eq!(a.payload, b.payload);
    assert_eq!(b.guid, original.id);
    assert_eq!(w.forge.deliveries().last().unwrap().attempts, 2);
    assert!(!w.forge.redeliver("no-such-delivery"));
}

#[tokio::test]
async fn paused_deliveries_are_recorded_and_sent_when_flushed() {
    let (w, rx) = hooked_world().await;
    w.forge.set_webhooks_paused(true);
    let n = alice_opens_request(&w, "req-1");
    w.forge.comment(REPO, n, &w.alice, "hello");
    w.forge.settle().await;
    assert!(rx.seen().is_empty());
    let recorded = w.forge.deliveries();
    assert_eq!(recorded.len(), 3);
    assert!(
        recorded
            .iter()
            .all(|d| d.attempts == 0 && d.status.is_none())
    );
    w.forge.set_webhooks_paused(false);
    assert_eq!(w.forge.flush_webhooks(), 3);
    w.forge.settle().await;
    assert_eq!(
        rx.kinds(),
        vec!["push", "pull_request.opened", "issue_comment.created"]
    );
}

#[tokio::test]
async fn raw_delivery_with_a_wrong_secret_is_refused_by_the_receiver() {
    let (w, rx) = hooked_world().await;
    let body = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    assert_eq!(
        w.forge
            .send_raw_delivery(&rx.url, "ping", body, "wrong")
            .await,
        Some(401)
    );
    assert_eq!(
        w.forge
            .send_raw_delivery(&rx.url, "ping", body, SECRET)
            .await,
        Some(200)
    );
    assert_eq!(rx.kinds(), vec!["ping"]);
}

#[tokio::test]
async fn deliveries_record_the_receivers_status() {
    let w = world().await;
    // Nobody listens on this hook: the delivery fails and is kept for redelivery. The port
    // stays bound (never listening) for the whole test, so that no test running beside this
    // one can be given it and answer.
    let dead = tokio::net::TcpSocket::new_v4().unwrap();
    dead.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("http://{}/hook", dead.local_addr().unwrap());
    w.forge.add_webhook(&url, SECRET);
    w.forge.open_issue(REPO, &w.alice, "x", "");
    w.forge.settle().await;
    let d = w.forge.deliveries();
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].status, d[0].attempts), (None, 1));
    assert_eq!(d[0].event, "issues");
    assert_eq!(d[0].action.as_deref(), Some("opened"));
    assert_eq!(d[0].payload()["issue"]["title"], "x");
}

#[tokio::test]
async fn deleting_a_pr_branch_closes_the_pr() {
    let (w, rx) = hooked_world().await;
    let n = alice_opens_request(&w, "req-1");
    w.forge.delete_branch(REPO, "req-1", &w.alice);
    w.forge.settle().await;
    assert_eq!(w.forge.pr(REPO, n).state, "closed");
    assert_eq!(rx.kinds()[2..], ["push", "pull_request.closed"]);
    assert_eq!(rx.seen()[2].payload["deleted"], true);
}

#[tokio::test]
async fn a_push_to_a_pr_branch_sends_push_and_synchronize_from_the_pusher() {
    let (w, rx) = hooked_world().await;
    let n = alice_opens_request(&w, "req-1");
    let old_head = w.forge.pr(REPO, n).head_sha;
    let mallory = w.forge.user("mallory");
    w.forge.settle().await;
    let before = rx.seen().len();
    let sha = w.forge.push_files(
        REPO,
        "req-1",
        &mallory,
        &[("requests/prod/req-1.yaml", "role: root\n")],
        "widen",
    );
    w.forge
        .push_files(REPO, "unrelated", &mallory, &[("x", "x")], "x");
    w.forge.settle().await;
    assert_eq!(
        rx.kinds()[before..],
        ["push", "pull_request.synchronize", "push"]
    );
    let seen = rx.seen();
    let push = &seen[before].payload;
    assert_eq!(push["ref"], "refs/heads/req-1");
    assert_eq!(push["sender"]["login"], "mallory");
    assert_eq!(push["sender"]["id"], mallory.id);
    assert_eq!(push["pusher"]["name"], "mallory");
    assert_eq!(push["forced"], false);
    assert_eq!(push["before"], old_head.as_str());
    assert_eq!(push["after"], sha.as_str());
    assert_eq!(push["head_commit"]["id"], sha.as_str());
    assert_eq!(push["head_commit"]["author"]["username"], "mallory");
    let sync = &seen[before + 1].payload;
    assert_eq!(sync["sender"]["login"], "mallory");
    assert_eq!(sync["number"], n);
    assert_eq!(sync["before"], old_head.as_str());
    assert_eq!(sync["after"], sha.as_str());
    assert_eq!(sync["pull_request"]["head"]["sha"], sha.as_str());
    // The PR's author is still alice: a push does not change who asked.
    assert_eq!(sync["pull_request"]["user"]["login"], "alice");
}

#[tokio::test]
async fn force_moving_a_pr_branch_sends_a_forced_push_and_synchronize_from_the_caller() {
    let (w, rx) = hooked_world().await;
    let n = alice_opens_request(&w, "req-1");
    let first = w.forge.pr(REPO, n).head_sha;
    let second = w.forge.push_files(
        REPO,
        "req-1",
        &w.alice,
        &[("requests/prod/req-1.yaml", "role: root\n")],
        "widen",
    );
    w.forge.settle().await;
    let before = rx.seen().len();

    // Without force, going back is refused and nothing is sent.
    let refused = w
        .octo
        ._patch(
            format!("/repos/{REPO}/git/refs/heads/req-1"),
            Some(&serde_json::json!({"sha": first})),
        )
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 422);
    let moved: serde_json::Value = w
        .octo
        .patch(
            format!("/repos/{REPO}/git/refs/heads/req-1"),
            Some(&serde_json::json!({"sha": first, "force": true})),
        )
        .await
        .unwrap();
    assert_eq!(moved["object"]["sha"], first.as_str());
    assert_eq!(
        w.forge.branch_sha(REPO, "req-1").as_deref(),
        Some(first.as_str())
    );
    assert_eq!(w.forge.pr(REPO, n).head_sha, first);

    // Any commit of the repository will do, e.g. main's tip.
    let main = w.forge.branch_sha(REPO, "main").unwrap();
    let resp = w
        .octo
        ._patch(
            format!("/repos/{REPO}/git/refs/heads/req-1"),
            Some(&serde_json::json!({"sha": main, "force": true})),
        )
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    w.forge.settle().await;

    assert_eq!(
        rx.kinds()[before..],
        [
            "push",
            "pull_request.synchronize",
            "push",
            "pull_request.synchronize"
        ]
    );
    let seen = rx.seen();
    for (i, (from, to)) in [(&second, &first), (&first, &main)].into_iter().enumerate() {
        let push = &seen[before + 2 * i].payload;
        assert_eq!(push["forced"], true);
        assert_eq!(push["before"], from.as_str());
        assert_eq!(push["after"], to.as_str());
        assert_eq!(push["sender"]["login"], "breakglass[bot]");
        assert_eq!(push["pusher"]["name"], "breakglass[bot]");
        let sync = &seen[before + 2 * i + 1].payload;
        assert_eq!(sync["sender"]["login"], "breakglass[bot]");
        assert_eq!(sync["before"], from.as_str());
        assert_eq!(sync["after"], to.as_str());
        assert_eq!(sync["pull_request"]["head"]["sha"], to.as_str());
    }
}
