//! The states that stop a merge: drafts, PRs that conflict for good, and protected branches,
//! seen through REST (status, message, `draft`, `mergeable_state`) and webhooks, as on GitHub.

mod common;

use breakglass_test_forge::{Protection, ReviewState};
use common::*;
use serde_json::json;

/// `PUT /pulls/{n}/merge` as `octo`; returns the status and GitHub's `message`.
async fn merge_as(octo: &octocrab::Octocrab, n: u64) -> (u16, String) {
    let (status, body) = call(
        octo,
        "PUT",
        &format!("/repos/{REPO}/pulls/{n}/merge"),
        Some(json!({"merge_method": "merge"})),
    )
    .await;
    (
        status,
        body["message"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn pull_json(w: &World, n: u64) -> serde_json::Value {
    get_json(&w.octo, &format!("/repos/{REPO}/pulls/{n}")).await
}

fn protect(w: &World, rule: Protection) {
    w.forge.protect_branch(REPO, "main", rule);
}

// ---- drafts ----

#[tokio::test]
async fn a_draft_is_opened_as_draft_and_refused_at_merge() {
    let w = world().await;
    record_webhooks(&w.forge);
    w.forge.push_files(
        REPO,
        "req-1",
        &w.alice,
        &[("requests/prod/req-1.yaml", "role: admin\n")],
        "Request",
    );
    let main_before = w.forge.branch_sha(REPO, "main");
    let n = w
        .forge
        .open_pr_draft(REPO, &w.alice, "req-1", "Break-glass", "INC-1");
    assert!(w.forge.pr(REPO, n).draft);
    let opened = &payloads(&w.forge, "pull_request", Some("opened"))[0];
    assert_eq!(opened["pull_request"]["draft"], true);

    let pr = pull_json(&w, n).await;
    assert_eq!(pr["draft"], true);
    assert_eq!(pr["mergeable_state"], "draft");
    let issue = get_json(&w.octo, &format!("/repos/{REPO}/issues/{n}")).await;
    assert_eq!(issue["draft"], true);

    assert_eq!(
        merge_as(&w.octo, n).await,
        (405, "Pull Request is still a draft".to_owned())
    );
    assert!(!w.forge.pr(REPO, n).merged);
    assert_eq!(w.forge.branch_sha(REPO, "main"), main_before);
}

#[tokio::test]
async fn converting_to_draft_and_back_sends_githubs_actions_once_each() {
    let w = world().await;
    record_webhooks(&w.forge);
    let carol = w.forge.user("carol");
    let n = alice_opens_request(&w, "req-1");
    w.forge.set_draft(REPO, n, &carol, true);
    // Already a draft: GitHub sends nothing.
    w.forge.set_draft(REPO, n, &carol, true);
    let drafted = payloads(&w.forge, "pull_request", Some("converted_to_draft"));
    assert_eq!(drafted.len(), 1);
    assert_eq!(drafted[0]["pull_request"]["draft"], true);
    assert_eq!(drafted[0]["sender"]["login"], "carol");
    assert_eq!(pull_json(&w, n).await["draft"], true);
    assert_eq!(merge_as(&w.octo, n).await.0, 405);

    w.forge.set_draft(REPO, n, &w.alice, false);
    let ready = payloads(&w.forge, "pull_request", Some("ready_for_review"));
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0]["pull_request"]["draft"], false);
    assert_eq!(ready[0]["sender"]["login"], "alice");
    assert_eq!(pull_json(&w, n).await["mergeable_state"], "clean");
    assert_eq!(merge_as(&w.octo, n).await.0, 200);
    assert!(w.forge.pr(REPO, n).merged);
}

#[tokio::test]
async fn rest_create_accepts_draft_true() {
    let w = world().await;
    w.forge.push_files(
        REPO,
        "req-1",
        &w.alice,
        &[("requests/prod/req-1.yaml", "role: admin\n")],
        "Request",
    );
    let (status, pr) = call(
        &w.octo,
        "POST",
        &format!("/repos/{REPO}/pulls"),
        Some(json!({"title": "Break-glass", "head": "req-1", "base": "main", "draft": true})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(pr["draft"], true);
    let n = pr["number"].as_u64().unwrap();
    assert!(w.forge.pr(REPO, n).draft);
    // octocrab reads the flag too.
    let typed = w.octo.pulls(OWNER, NAME).get(n).await.unwrap();
    assert_eq!(typed.draft, Some(true));
}

// ---- conflicts that last ----

#[tokio::test]
async fn a_pr_set_conflicting_stays_unmergeable_until_cleared() {
    let w = world().await;
    record_webhooks(&w.forge);
    let n = alice_opens_request(&w, "req-1");
    let before = w.forge.deliveries().len();
    w.forge.set_conflicting(REPO, n, true);
    assert_eq!(w.forge.deliveries().len(), before, "no webhook");
    let pr = pull_json(&w, n).await;
    assert_eq!(pr["mergeable"], false);
    assert_eq!(pr["mergeable_state"], "dirty");
    for _ in 0..2 {
        assert_eq!(
            merge_as(&w.octo, n).await,
            (405, "Pull Request is not mergeable".to_owned())
        );
    }
    assert!(!w.forge.pr(REPO, n).merged);

    w.forge.set_conflicting(REPO, n, false);
    assert_eq!(pull_json(&w, n).await["mergeable"], true);
    assert_eq!(merge_as(&w.octo, n).await.0, 200);
}

// ---- branch protection ----

#[tokio::test]
async fn branches_show_their_protection() {
    let w = world().await;
    w.forge
        .push_files(REPO, "feature", &w.alice, &[("a", "a")], "a");
    protect(
        &w,
        Protection {
            required_approving_reviews: 1,
            required_status_checks: vec!["ci".into()],
            bypass: vec![],
        },
    );
    let main = get_json(&w.octo, &format!("/repos/{REPO}/branches/main")).await;
    assert_eq!(main["protected"], true);
    assert_eq!(main["protection"]["enabled"], true);
    assert_eq!(
        main["protection"]["required_status_checks"]["contexts"],
        json!(["ci"])
    );
    let feature = get_json(&w.octo, &format!("/repos/{REPO}/branches/feature")).await;
    assert_eq!(feature["protected"], false);
    let list = get_json(&w.octo, &format!("/repos/{REPO}/branches")).await;
    let flags: Vec<(String, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_owned(),
                b["protected"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        flags,
        vec![("feature".to_owned(), false), ("main".to_owned(), true)]
    );

    w.forge.unprotect_branch(REPO, "main");
    let main = get_json(&w.octo, &format!("/repos/{REPO}/branches/main")).await;
    assert_eq!(main["protected"], false);
}

#[tokio::test]
async fn a_protected_branch_needs_an_approval_from_someone_with_write_access() {
    let w = world().await;
    let carol = w.forge.user("carol");
    let n = alice_opens_request(&w, "req-1");
    protect(
        &w,
        Protection {
            required_approving_reviews: 1,
            ..Protection::default()
        },
    );
    let refusal = "At least 1 approving review is required by reviewers with write access.";
    assert_eq!(merge_as(&w.octo, n).await, (405, refusal.to_owned()));
    assert_eq!(pull_json(&w, n).await["mergeable_state"], "blocked");

    // carol may read only: her approval does not count.
    w.forge.review(REPO, n, &carol, ReviewState::Approved);
    assert_eq!(merge_as(&w.octo, n).await, (405, refusal.to_owned()));

    // A writer's approval counts until it is withdrawn by a later "changes requested".
    let dan = w.forge.user("dan");
    w.forge.add_team_member("acme/sre-leads", &dan);
    w.forge.review(REPO, n, &dan, ReviewState::Approved);
    w.forge.review(REPO, n, &dan, ReviewState::ChangesRequested);
    assert_eq!(merge_as(&w.octo, n).await, (405, refusal.to_owned()));
    w.forge.review(REPO, n, &dan, ReviewState::Approved);
    assert_eq!(pull_json(&w, n).await["mergeable_state"], "clean");
    assert_eq!(merge_as(&w.octo, n).await.0, 200);
    assert!(w.forge.pr(REPO, n).merged);
}

#[tokio::test]
async fn a_required_status_check_must_be_green_on_the_current_head() {
    let w = world().await;
    let n = alice_opens_request(&w, "req-1");
    protect(
        &w,
        Protection {
            required_status_checks: vec!["ci".into(), "lint".into()],
            ..Protection::default()
        },
    );
    let status = |sha: String, state: &'static str| {
        let octo = w.octo.clone();
        async move {
            let (code, _) = call(
                &octo,
                "POST",
                &format!("/repos/{REPO}/statuses/{sha}"),
                Some(json!({"state": state, "context": "ci"})),
            )
            .await;
            assert_eq!(code, 201);
        }
    };
    let expected = |c: &str| (405, format!("Required status check \"{c}\" is expected."));
    assert_eq!(merge_as(&w.octo, n).await, expected("ci"));
    let head = w.forge.pr(REPO, n).head_sha;
    status(head.clone(), "pending").await;
    assert_eq!(merge_as(&w.octo, n).await, expected("ci"));
    status(head.clone(), "failure").await;
    assert_eq!(
        merge_as(&w.octo, n).await,
        (405, "Required status check \"ci\" is failing.".to_owned())
    );
    status(head.clone(), "success").await;
    // `lint` is a check run: in progress is still expected.
    let (code, run) = call(
        &w.octo,
        "POST",
        &format!("/repos/{REPO}/check-runs"),
        Some(json!({"name": "lint", "head_sha": head, "status": "in_progress"})),
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(merge_as(&w.octo, n).await, expected("lint"));
    let (code, _) = call(
        &w.octo,
        "PATCH",
        &format!("/repos/{REPO}/check-runs/{}", run["id"]),
        Some(json!({"status": "completed", "conclusion": "success"})),
    )
    .await;
    assert_eq!(code, 200);

    // Green on an old head says nothing about a new one.
    let new_head = w.forge.push_files(
        REPO,
        "req-1",
        &w.alice,
        &[("requests/prod/req-1.yaml", "role: root\n")],
        "widen",
    );
    assert_eq!(merge_as(&w.octo, n).await, expected("ci"));
    status(new_head.clone(), "success").await;
    assert_eq!(merge_as(&w.octo, n).await, expected("lint"));
    call(
        &w.octo,
        "POST",
        &format!("/repos/{REPO}/check-runs"),
        Some(json!({"name": "lint", "head_sha": new_head, "status": "completed", "conclusion": "neutral"})),
    )
    .await;
    assert_eq!(merge_as(&w.octo, n).await.0, 200);
}

#[tokio::test]
async fn only_bypass_actors_merge_past_protection() {
    let w = world().await;
    let alice_octo = octocrab_with(&w.forge, &w.forge.token_for(&w.alice));
    let n = alice_opens_request(&w, "req-1");
    protect(
        &w,
        Protection {
            required_approving_reviews: 2,
            required_status_checks: vec!["ci".into()],
            bypass: vec!["breakglass[bot]".into()],
        },
    );
    assert_eq!(
        merge_as(&alice_octo, n).await,
        (
            405,
            "At least 2 approving reviews are required by reviewers with write access.".to_owned()
        )
    );
    assert!(!w.forge.pr(REPO, n).merged);
    assert_eq!(merge_as(&w.octo, n).await.0, 200);
    assert!(w.forge.pr(REPO, n).merged);
    assert_eq!(w.forge.log(REPO, "main")[0].author, "breakglass[bot]");
}
