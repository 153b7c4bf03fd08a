//! Failure injection and call counting.

mod common;

use std::time::Duration;

use axum::http::Method;
use breakglass_test_forge::{BranchDetour, FailureKind, FailureSpec, RouteMatcher};
use common::*;

#[tokio::test]
async fn injected_500_fails_once_then_the_call_succeeds() {
    let w = world().await;
    let n = alice_opens_request(&w, "req-1");
    w.forge.fail_next(FailureSpec::new(
        Method::POST,
        &format!("/repos/{REPO}/issues"),
        1,
        FailureKind::Status(500),
    ));
    let err = w
        .octo
        .issues(OWNER, NAME)
        .create_comment(n, "first try")
        .await
        .unwrap_err();
    assert_eq!(status_of(err), 500);
    assert!(
        w.forge.comments(REPO, n).is_empty(),
        "a failed call changes nothing"
    );
    w.octo
        .issues(OWNER, NAME)
        .create_comment(n, "second try")
        .await
        .unwrap();
    assert_eq!(w.forge.comments(REPO, n).len(), 1);
    let calls = w.forge.calls();
    assert_eq!(
        calls.count("POST", "/repos/{owner}/{repo}/issues/{number}/comments"),
        2
    );
}

#[tokio::test]
async fn octocrabs_default_retries_ride_over_a_502() {
    let w = world().await;
    let retrying = octocrab::Octocrab::builder()
        .base_uri(w.forge.api_url())
        .unwrap()
        .personal_token(w.forge.token_for(&w.bot))
        .build()
        .unwrap();
    w.forge
        .fail_next(FailureSpec::any(1, FailureKind::Status(502)));
    retrying.repos(OWNER, NAME).get().await.unwrap();
    assert_eq!(w.forge.calls().count("GET", "/repos/{owner}/{repo}"), 2);
}

#[tokio::test]
async fn primary_rate_limit_is_a_403_with_zero_remaining() {
    let w = world().await;
    w.forge
        .fail_next(FailureSpec::any(1, FailureKind::RateLimited403));
    let resp = w.octo._get(format!("/repos/{REPO}")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(resp.headers()["x-ratelimit-remaining"], "0");
    let reset: i64 = resp.headers()["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(reset > chrono::Utc::now().timestamp());
    let ok = w.octo._get(format!("/repos/{REPO}")).await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
}

#[tokio::test]
async fn secondary_rate_limit_is_a_429_with_retry_after() {
    let w = world().await;
    w.forge.fail_next(FailureSpec {
        route: RouteMatcher::Route {
            method: Some(Method::GET),
            template: "/repos/{owner}/{repo}".into(),
        },
        count: 2,
        kind: FailureKind::SecondaryRateLimit429 { retry_after: 7 },
    });
    for _ in 0..2 {
        let resp = w.octo._get(format!("/repos/{REPO}")).await.unwrap();
        assert_eq!(resp.status().as_u16(), 429);
        assert_eq!(resp.headers()["retry-after"], "7");
    }
    assert_eq!(
        w.octo
            ._get(format!("/repos/{REPO}"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}

#[tokio::test]
async fn timeout_hangs_then_answers_504() {
    let w = world().await;
    w.forge.fail_next(FailureSpec {
        route: RouteMatcher::Predicate(std::sync::Arc::new(|m, p| {
            m == Method::GET && p.ends_with("/reactions")
        })),
        count: 1,
        kind: FailureKind::Timeout(Duration::from_millis(300)),
    });
    let n = alice_opens_request(&w, "req-1");
    let started = std::time::Instant::now();
    let resp = w
        .octo
        ._get(format!("/repos/{REPO}/issues/{n}/reactions"))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 504);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn hang_never_answers_and_changes_nothing() {
    let w = world().await;
    let n = alice_opens_request(&w, "req-1");
    w.forge.fail_next(FailureSpec::any(1, FailureKind::Hang));
    let issues = w.octo.issues(OWNER, NAME);
    let call = issues.create_comment(n, "into the void");
    let waited = tokio::time::timeout(Duration::from_secs(2), call).await;
    assert!(waited.is_err(), "no answer within 2 s");
    assert!(w.forge.comments(REPO, n).is_empty(), "nothing was done");
    // Used up: the next call is answered.
    w.octo
        .issues(OWNER, NAME)
        .create_comment(n, "heard")
        .await
        .unwrap();
    assert_eq!(w.forge.comments(REPO, n).len(), 1);
}

#[tokio::test]
async fn injected_merge_conflict_is_405_and_leaves_the_pr_open() {
    let w = world().await;
    let n = alice_opens_request(&w, "req-1");
    w.forge.fail_next(FailureSpec::merge_conflict());
    let err = w.octo.pulls(OWNER, NAME).merge(n).send().await.unwrap_err();
    match err {
        octocrab::Error::GitHub { source, .. } => {
            assert_eq!(source.status_code.as_u16(), 405);
            assert_eq!(source.message, "Merge conflict");
        }
        other => panic!("{other:?}"),
    }
    assert!(!w.forge.pr(REPO, n).merged);
    w.octo.pulls(OWNER, NAME).merge(n).send().await.unwrap();
    assert!(w.forge.pr(REPO, n).merged);
}

#[tokio::test]
async fn calls_are_counted_per_route_template() {
    let w = world().await;
    let n = alice_opens_request(&w, "req-1");
    w.forge.reset_calls();
    for _ in 0..3 {
        w.octo
            .issues(OWNER, NAME)
            .list_reactions(n)
            .send()
            .await
            .unwrap();
    }
    w.octo.pulls(OWNER, NAME).get(n).await.unwrap();
    let calls = w.forge.calls();
    assert_eq!(calls.total, 4);
    assert_eq!(
        calls.count("GET", "/repos/{owner}/{repo}/issues/{number}/reactions"),
        3
    );
    assert_eq!(
        calls.count("GET", "/repos/{owner}/{repo}/pulls/{number}"),
        1
    );
    assert_eq!(calls.writes(), 0);
}

/// alice's request PR on `req-1` and a commit elsewhere (on `other`, adding `other.yaml`) that a
/// detour can point `req-1` at; returns (number, head, detour commit).
fn request_and_detour_commit(w: &World) -> (u64, String, String) {
    let n = alice_opens_request(w, "req-1");
    let head = w.forge.branch_sha(REPO, "req-1").unwrap();
    let other = w.forge.push_files(
        REPO,
        "other",
        &w.alice,
        &[("requests/prod/other.yaml", "role: root\n")],
        "Something else",
    );
    (n, head, other)
}

fn detour(route: RouteMatcher, count: u32, sha: &str) -> BranchDetour {
    BranchDetour {
        route,
        count,
        repo: REPO.into(),
        branch: "req-1".into(),
        sha: sha.into(),
    }
}

async fn pr_files(w: &World, n: u64) -> Vec<String> {
    let files = get_json(&w.octo, &format!("/repos/{REPO}/pulls/{n}/files")).await;
    files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["filename"].as_str().unwrap().to_owned())
        .collect()
}

async fn pr_head(w: &World, n: u64) -> String {
    let pr = get_json(&w.octo, &format!("/repos/{REPO}/pulls/{n}")).await;
    pr["head"]["sha"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn branch_detour_shows_another_head_to_the_matching_call_only() {
    let w = world().await;
    record_webhooks(&w.forge);
    let (n, head, other) = request_and_detour_commit(&w);
    let sent = w.forge.deliveries().len();
    w.forge.detour_branch(detour(
        RouteMatcher::Route {
            method: Some(Method::GET),
            template: "/repos/{owner}/{repo}/pulls/{number}/files".into(),
        },
        1,
        &other,
    ));

    assert_eq!(pr_head(&w, n).await, head, "not a matching call");
    assert_eq!(pr_files(&w, n).await, ["requests/prod/other.yaml"]);
    assert_eq!(pr_head(&w, n).await, head);
    assert_eq!(w.forge.branch_sha(REPO, "req-1").as_deref(), Some(&*head));
    assert_eq!(w.forge.pr(REPO, n).head_sha, head);
    assert_eq!(
        pr_files(&w, n).await,
        ["requests/prod/req-1.yaml"],
        "used up"
    );
    assert_eq!(w.forge.deliveries().len(), sent, "no webhooks either way");
}

#[tokio::test]
async fn branch_detour_moves_the_pr_head_for_count_matching_calls() {
    let w = world().await;
    let (n, head, other) = request_and_detour_commit(&w);
    w.forge.detour_branch(detour(
        RouteMatcher::Prefix {
            method: Some(Method::GET),
            prefix: format!("/repos/{REPO}/pulls/"),
        },
        2,
        &other[..12],
    ));
    w.octo.repos(OWNER, NAME).get().await.unwrap();
    let pr = get_json(&w.octo, &format!("/repos/{REPO}/pulls/{n}")).await;
    assert_eq!(pr["head"]["sha"], other.as_str());
    assert_eq!(pr["head"]["ref"], "req-1");
    assert_eq!(pr_files(&w, n).await, ["requests/prod/other.yaml"]);
    assert_eq!(pr_head(&w, n).await, head, "two matching calls used it up");
    assert_eq!(w.forge.branch_sha(REPO, "req-1").as_deref(), Some(&*head));
}

#[tokio::test]
async fn branch_detour_leaves_a_forks_branch_of_the_same_name_alone() {
    let w = world().await;
    let (_, _, other) = request_and_detour_commit(&w);
    let fork = w.forge.open_fork_pr(
        REPO,
        &w.alice,
        "alice/access-requests",
        "req-1",
        &[("requests/prod/fork.yaml", "role: admin\n")],
        "From a fork",
    );
    let fork_head = w.forge.pr(REPO, fork).head_sha;
    w.forge.detour_branch(detour(RouteMatcher::Any, 1, &other));
    assert_eq!(pr_head(&w, fork).await, fork_head);
}
