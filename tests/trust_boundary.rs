//! The trust boundary, attack by attack. Each story is something a repo member who can push
//! branches, an outsider who can only comment, or a requester in a hurry did to the real binary
//! in a security review; each asserts that the attack's effect is gone (git, PRs, grants) and,
//! where natural, that the honest path still works afterwards.

mod common;

use breakglass::clock::Clock as _;
use breakglass::store::JobKind;
use breakglass_test_forge::{
    BranchDetour, FailureKind, FailureSpec, FileChange, Noteable, Protection, RouteMatcher,
};
use chrono::TimeDelta;
use common::*;
use http::Method;
use std::time::Duration;

fn loosened_prod_policy(s: &Scenario) -> String {
    s.forge
        .file_on(REPO, "main", "policies/prod.yaml")
        .unwrap()
        .replace("approvals: 1", "approvals: 0")
}

/// Bob's `branch`: a commit T that loosens prod's policy (no approval needed), then his request
/// on top of it; and a tag `main` at T, as a member who may push tags can make. The repository,
/// to take the tag away again.
fn request_over_a_looser_policy_tagged_main(s: &Scenario, branch: &str) -> git2::Repository {
    let loosened = s.forge.push_files(
        REPO,
        branch,
        &s.people.bob,
        &[("policies/prod.yaml", &loosened_prod_policy(s))],
        "a policy",
    );
    s.forge.push_files(
        REPO,
        branch,
        &s.people.bob,
        &[("requests/prod/r1.yaml", &prod_request("1h"))],
        "request",
    );
    let repo = git2::Repository::open_bare(s.forge.repo_path(REPO)).unwrap();
    let tag = git2::Oid::from_str(&loosened).unwrap();
    repo.reference("refs/tags/main", tag, false, "bob's tag")
        .unwrap();
    repo
}

/// The last signed `issue_comment` delivery whose body holds `needle`, as the forge sent it.
fn signed_comment(s: &Scenario, needle: &str) -> breakglass_test_forge::Delivery {
    s.forge
        .deliveries()
        .into_iter()
        .rfind(|d| d.event == "issue_comment" && String::from_utf8_lossy(&d.body).contains(needle))
        .expect("the signed comment delivery")
}

fn two_approvals(s: &Scenario) {
    s.edit_policy(&s.people.carol, "prod", |p| {
        p.replace("approvals: 1", "approvals: 2")
    });
}

async fn metrics(s: &Scenario) -> String {
    let url = format!("http://{}/metrics", s.service.as_ref().unwrap().addr);
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

fn merge_calls(s: &Scenario) -> u64 {
    let route = match s.dialect {
        Dialect::GitHub => "/repos/{owner}/{repo}/pulls/{number}/merge",
        Dialect::GitLab => "/api/v4/projects/{id}/merge_requests/{iid}/merge",
    };
    s.forge.calls().count("PUT", route)
}

// 1. The bot merges only its own commits on its branches.

// mallory opens a PR from the bot's new revert branch in the moment before the bot opens its
// own, while the bot's call hangs and ends without an answer: its look for the PR it may have
// opened finds hers. It is never taken for the bot's (she would own its title, description and
// base): that build is abandoned, her PR closed with the branch, and the revert built again.
on_both_forges!(
    a_pr_opened_from_the_bots_branch_by_someone_else_is_never_adopted,
    |s: Scenario| async move {
        s.expect_job_error(
            JobKind::OpenRevert,
            "was opened by mallory, not by breakglass",
        );
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        let hang = FailureKind::Timeout(Duration::from_secs(2));
        s.fail_next(Route::Changes, Method::POST, 1, hang);
        s.approve(pr, &s.people.carol);
        let branch = bots_written_branch(&s, "breakglass/revert/").await;
        let hers = s.open_change(&s.people.mallory, &branch, "revert r1");
        s.settle().await;
        // That build failed; the revert is built again when its step is tried again.
        s.advance(TimeDelta::minutes(1));
        s.settle().await;
        assert!(s.change(pr).merged);
        let revert = s.revert_pr("r1").await;
        assert_ne!(revert, hers, "her PR is not the bot's revert");
        assert_eq!(s.change(hers).state, "closed", "hers is closed");
        assert!(!s.change(hers).merged);
        assert_eq!(s.change(revert).user, s.people.bot.login);
        s.advance(TimeDelta::hours(1));
        s.settle().await;
        assert!(s.change(revert).merged);
        assert!(!s.change(hers).merged);
        assert_eq!(s.request("r1").await.state.to_string(), "revoked");
        s.expect_bot_comments(
            pr,
            &[
                "✅ **Request `r1` is allowed**",
                "🔓 **Access granted.**",
                "🔒 **Access revoked**",
            ],
        );
        s.expect_no_bot_comment(hers);
    }
);

// The same on GitHub for a request PR opened with a label: GitHub takes labels by a call after
// the opening, and the PR the look found is hers, so the bot labels nothing (a `sev1` put by
// the bot on a PR from its branch, which she could restore and reopen). The request goes on
// from a branch built again, on the bot's own PR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_github_a_pr_found_for_a_lost_opening_but_not_the_bots_is_never_labelled() {
    let s = Scenario::start(Backend::Sqlite).await.unwrap();
    s.lenient();
    let issue = s.open_issue(&s.people.carol, "payments down");
    s.forge.label(REPO, issue, &s.people.carol, "sev1");
    let hang = FailureKind::Timeout(Duration::from_secs(2));
    s.fail_next(Route::Changes, Method::POST, 1, hang);
    s.note_on_issue(
        issue,
        &s.people.bob,
        "/breakglass prod 45m admin -- incident: INC-9 checkout down",
    );
    let branch = bots_written_branch(&s, "breakglass/request/").await;
    let hers = s.open_change(&s.people.mallory, &branch, "sev1 access");
    s.until_a_delivery_failed().await;
    s.advance(TimeDelta::minutes(1));
    s.settle().await;
    assert!(s.labels(hers).is_empty(), "{:?}", s.labels(hers));
    assert_eq!(s.change(hers).state, "closed");
    assert!(!s.change(hers).merged);
    let pr = s.bot_changes()[0];
    assert_ne!(pr, hers);
    assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    assert!(
        s.labels(pr).iter().any(|l| l == "sev1"),
        "{:?}",
        s.labels(pr)
    );
}

/// The first branch starting with `prefix` once a commit of the bot's is on it, beyond the
/// default branch it starts from (real time, the bot unsettled: its next call hangs).
async fn bots_written_branch(s: &Scenario, prefix: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let main = s.forge.branch_sha(REPO, "main");
        let found = s.forge.branches(REPO).into_iter().find(|b| {
            b.starts_with(prefix)
                && s.forge.branch_sha(REPO, b) != main
                && s.forge.log(REPO, b)[0].message.starts_with("breakglass: ")
        });
        if let Some(branch) = found {
            return branch;
        }
        assert!(std::time::Instant::now() < deadline, "no {prefix} branch");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// GitHub only: the branch goes back to the very commit; GitLab's restore is a new commit (tests/forges.rs).
on_both_backends!(
    a_member_pushing_a_policy_to_the_revert_branch_is_undone_and_the_grant_still_ends,
    |s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        let revert = s.revert_pr("r1").await;
        let branch = s.change(revert).head_ref;
        assert!(
            branch.starts_with("breakglass/revert/r1-"),
            "an unguessable bot branch: {branch}"
        );
        let bot_head = s.change(revert).head_sha;
        let policy = s.forge.file_on(REPO, "main", "policies/prod.yaml").unwrap();
        s.forge.push_files(
            REPO,
            &branch,
            &s.people.mallory,
            &[
                ("policies/prod.yaml", &loosened_prod_policy(&s)),
                ("requests/prod/r1.yaml", &prod_request("1h")),
            ],
            "keep my access",
        );
        s.settle().await;
        assert_eq!(s.change(revert).head_sha, bot_head, "put back");
        let said = s.next_bot_comment(revert);
        assert!(
            said.starts_with("🚨 **Tampering**: @mallory pushed"),
            "{said}"
        );
        s.expect_bot_comments(pr, &["🚨 **Tampering**: @mallory pushed"]);
        let logged = s.events("r1", "tampering").await;
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0].actor.as_ref().unwrap().login.as_str(), "mallory");
        assert!(
            metrics(&s)
                .await
                .contains("breakglass_tampering_total{kind=\"revert\"} 1"),
            "{}",
            metrics(&s).await
        );

        s.advance(TimeDelta::hours(1));
        s.settle().await;
        assert_eq!(s.request("r1").await.state.to_string(), "revoked");
        assert_eq!(
            s.forge.file_on(REPO, "main", "policies/prod.yaml").unwrap(),
            policy,
            "main's policy is untouched"
        );
        assert!(
            s.forge
                .file_on(REPO, "main", "requests/prod/r1.yaml")
                .is_none()
        );
        s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
    }
);

on_both_forges!(
    the_same_commit_pushed_again_after_the_branch_was_put_back_is_put_back_again,
    |s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        let revert = s.revert_pr("r1").await;
        let branch = s.change(revert).head_ref;
        // The commit pushed (read from the branch afterwards, it may be the bot's already).
        let pushed = s.forge.push_files(
            REPO,
            &branch,
            &s.people.mallory,
            &[("requests/prod/r1.yaml", &prod_request("4h"))],
            "keep my access",
        );
        s.settle().await;
        let put_back = s.change(revert).head_sha;
        assert_ne!(put_back, pushed);
        let tampering = "🚨 **Tampering**: @mallory pushed";
        s.expect_bot_comments(revert, &[tampering]);
        s.expect_bot_comments(pr, &[tampering]);
        // The very same commit, pushed again.
        s.forge
            .force_branch(REPO, &branch, &s.people.mallory, &pushed);
        s.settle().await;
        let head = s.change(revert).head_sha;
        assert_ne!(head, pushed, "put back again");
        assert_eq!(s.events("r1", "tampering").await.len(), 2);
        s.expect_bot_comments(revert, &[tampering]);
        s.expect_bot_comments(pr, &[tampering]);
        s.advance(TimeDelta::hours(1));
        s.settle().await;
        assert_eq!(
            s.forge.file_on(REPO, "main", "requests/prod/r1.yaml"),
            None,
            "the revert merged the bot's own commit"
        );
        s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
    }
);

on_both_forges!(
    a_push_to_the_revert_branch_unseen_by_webhook_is_caught_at_merge_time,
    |s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        let revert = s.revert_pr("r1").await;
        let branch = s.change(revert).head_ref;
        let policy = s.forge.file_on(REPO, "main", "policies/prod.yaml").unwrap();
        s.forge.set_webhooks_paused(true);
        s.forge.push_files(
            REPO,
            &branch,
            &s.people.mallory,
            &[("policies/prod.yaml", &loosened_prod_policy(&s))],
            "loosen",
        );
        s.advance(TimeDelta::hours(1));
        s.settle().await;
        assert_eq!(s.request("r1").await.state.to_string(), "revoked");
        assert_eq!(
            s.forge.file_on(REPO, "main", "policies/prod.yaml").unwrap(),
            policy
        );
        assert_eq!(s.events("r1", "tampering").await.len(), 1);
        s.forge.set_webhooks_paused(false);
        s.expect_bot_comments(revert, &["🚨 **Tampering**: Someone pushed"]);
        s.expect_bot_comments(
            pr,
            &["🚨 **Tampering**: Someone pushed", "🔒 **Access revoked**"],
        );
        s.forge.flush_webhooks();
        s.settle().await;
        // The push's late webhook is the same tampering, put back already: only its pusher is
        // new, logged under their name and said where "someone" was.
        let logged = s.events("r1", "tampering").await;
        assert_eq!(logged.len(), 2, "{logged:?}");
        assert!(logged[0].actor.is_none());
        assert_eq!(
            logged[1].actor.as_ref().map(|a| a.id),
            Some(s.people.mallory.id)
        );
        let named = "🚨 **Tampering**: @mallory pushed";
        s.expect_bot_comments(revert, &[named]);
        s.expect_bot_comments(pr, &[named]);
        assert!(
            s.change(revert).merged,
            "merged once, at the bot's own commit"
        );
        s.expect_no_bot_comment(revert);
        s.expect_no_bot_comment(pr);
    }
);

on_both_forges!(
    a_squatted_branch_name_is_never_adopted,
    |s: Scenario| async move {
        // The ids are predictable, so mallory prepares the old revert branch name in advance.
        let loosened = loosened_prod_policy(&s);
        s.forge.push_files(
            REPO,
            "breakglass/revoke/r1",
            &s.people.mallory,
            &[("policies/prod.yaml", &loosened)],
            "waiting for r1",
        );
        let squat = s.forge.open_pr(
            REPO,
            &s.people.mallory,
            "breakglass/revoke/r1",
            "revoke r1",
            "",
        );
        let policy = s.forge.file_on(REPO, "main", "policies/prod.yaml").unwrap();
        let pr = s.granted("r1", "1h").await;
        s.advance(TimeDelta::hours(1));
        s.settle().await;
        assert_eq!(s.request("r1").await.state.to_string(), "revoked");
        assert!(!s.change(squat).merged);
        s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
        assert_ne!(s.revert_pr("r1").await, squat);
        assert_eq!(
            s.forge.file_on(REPO, "main", "policies/prod.yaml").unwrap(),
            policy
        );
    }
);

// GitHub only: the branch goes back to the very commit; GitLab's restore is a new commit (tests/forges.rs).
on_both_backends!(
    a_push_to_the_bots_request_branch_is_undone,
    |s: Scenario| async move {
        let issue = s.open_issue(&s.people.alice, "db down");
        s.note_on_issue(
            issue,
            &s.people.alice,
            "/breakglass prod 1h admin -- incident: INC-7 db down",
        );
        s.settle().await;
        let pr = s.changes().last().unwrap().number;
        let opened = s.change(pr);
        assert!(opened.head_ref.starts_with("breakglass/request/"));
        // mallory widens alice's request on the bot's branch.
        let path = s
            .forge
            .files_on(REPO, &opened.head_ref)
            .into_iter()
            .find(|p| p.starts_with("requests/prod/"))
            .unwrap();
        s.forge.push_files(
            REPO,
            &opened.head_ref,
            &s.people.mallory,
            &[(&path, &prod_request("4h").replace("admin", "readonly"))],
            "more",
        );
        s.settle().await;
        assert_eq!(s.change(pr).head_sha, opened.head_sha, "put back");
        s.expect_bot_issue_comments(issue, &["📝 @alice, your request is "]);
        s.expect_bot_comments(
            pr,
            &[
                "✅ **Request `20261126-0214-alice-prod` is allowed**",
                "🚨 **Tampering**: @mallory pushed",
            ],
        );
        s.by(&s.people.carol).approve(pr);
        s.settle().await;
        let merge = s.merge_commit(pr);
        assert!(merge.message.contains("for 1h"), "{}", merge.message);
        s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
    }
);

/// A branch `release` beside the default branch, for PRs retargeted to it.
fn add_release_branch(s: &Scenario) {
    s.forge.push_files(
        REPO,
        "release",
        &s.people.carol,
        &[("NOTES.md", "x\n")],
        "branch",
    );
}

/// The merge call of any PR or MR, in either dialect.
fn merge_call() -> RouteMatcher {
    RouteMatcher::Predicate(std::sync::Arc::new(|method, path: &str| {
        method == Method::PUT && path.ends_with("/merge")
    }))
}

/// The request PR the bot opened last, with the path of its request file.
fn bots_request(s: &Scenario, environment: &str) -> (u64, String) {
    let pr = s.changes().last().unwrap().number;
    let path = s
        .forge
        .files_on(REPO, &s.change(pr).head_ref)
        .into_iter()
        .find(|p| p.starts_with(&format!("requests/{environment}/")))
        .unwrap();
    (pr, path)
}

/// alice's `/breakglass staging 1h`, opened by the bot, its merge held up by a `503` to every
/// retry of one run of `method` on `held`: the issue, the PR, and the request file's path and
/// text as the bot wrote them.
async fn staging_request_held(
    s: &Scenario,
    held: Route,
    method: Method,
) -> (u64, u64, String, String) {
    s.fail_next(held, method, 4, FailureKind::Status(503));
    s.expect_job_error(JobKind::Merge, "HTTP 503");
    let issue = s.open_issue(&s.people.alice, "staging is broken");
    s.by(&s.people.alice)
        .note_on_issue(issue, "/breakglass staging 1h -- debugging");
    s.settle().await;
    let (pr, path) = bots_request(s, "staging");
    let opened = s.change(pr);
    assert!(!opened.merged, "the merge waits for its retry");
    let request = s.forge.file_on(REPO, &opened.head_ref, &path).unwrap();
    (issue, pr, path, request)
}

/// The request merged after mallory's unheard push to its branch: what the bot said, then the
/// push's late webhook, which names mallory once and redoes nothing.
async fn tampering_found_then_named(s: &Scenario, issue: u64, pr: u64, id: &str) {
    s.expect_bot_issue_comments(issue, &["📝 @alice, your request is "]);
    s.expect_bot_comments(
        pr,
        &[
            "✅ **Request",
            "🚨 **Tampering**: Someone pushed",
            "🔓 **Access granted.**",
        ],
    );
    s.forge.set_webhooks_paused(false);
    s.forge.flush_webhooks();
    s.settle().await;
    let logged = s.events(id, "tampering").await;
    assert_eq!(
        logged.len(),
        2,
        "the pusher named, nothing redone: {logged:?}"
    );
    assert_eq!(
        logged[1].actor.as_ref().map(|a| a.login.to_string()),
        Some("mallory".to_owned())
    );
    s.expect_bot_comments(pr, &["🚨 **Tampering**: @mallory pushed"]);
}

// The bot reads the PR once, right before its merge (in one round trip with the status): a
// push to the bot's branch between the PR's opening and the merge, which no webhook reported,
// is caught there, and only the bot's own commit is merged.
on_both_forges!(
    a_push_to_the_bots_branch_between_opening_and_merge_is_never_merged,
    |s: Scenario| async move {
        // The merge job's read of the PR fails: the merge waits.
        let (issue, pr, path, request) = staging_request_held(&s, Route::Change, Method::GET).await;
        let branch = s.change(pr).head_ref;
        let policy = s
            .forge
            .file_on(REPO, "main", "policies/staging.yaml")
            .unwrap();
        s.forge.set_webhooks_paused(true);
        s.forge.push_files(
            REPO,
            &branch,
            &s.people.mallory,
            &[
                (&path, &request.replace("1h", "8h")),
                (
                    "policies/staging.yaml",
                    &policy.replace("alice, ", "alice, mallory, "),
                ),
            ],
            "ride along",
        );
        s.advance(TimeDelta::minutes(5));
        s.settle().await;
        assert!(s.change(pr).merged, "the bot's own commit is merged");
        assert_eq!(
            s.forge.file_on(REPO, "main", &path).unwrap(),
            request,
            "the request as the bot wrote it"
        );
        assert_eq!(
            s.forge
                .file_on(REPO, "main", "policies/staging.yaml")
                .unwrap(),
            policy,
            "main's policy is untouched"
        );
        let id = path.rsplit('/').next().unwrap().trim_end_matches(".yaml");
        assert_eq!(s.events(id, "tampering").await.len(), 1);
        tampering_found_then_named(&s, issue, pr, id).await;
        assert_eq!(
            s.forge.file_on(REPO, "main", &path).unwrap(),
            request,
            "still the request as the bot wrote it"
        );
    }
);

// A push that lands between the guard's read and the merge call is refused by the merge
// call's `sha` (409). The bot reads the PR to learn the commit, so the tampering is logged
// under it once, and the push's late webhook only names the pusher.
on_both_forges!(
    a_push_the_merge_call_refuses_is_logged_once_under_its_commit,
    |s: Scenario| async move {
        let (issue, pr, path, request) = staging_request_held(&s, Route::Merge, Method::PUT).await;
        let opened = s.change(pr);
        s.forge.set_webhooks_paused(true);
        s.forge.push_files(
            REPO,
            &opened.head_ref,
            &s.people.mallory,
            &[(&path, &request.replace("1h", "8h"))],
            "ride along",
        );
        let pushed = s.change(pr).head_sha;
        // The retry's reads of the PR (was it merged before its answer was lost? the guard's
        // read) still show the bot's commit; the merge call meets the push.
        let reads = [format!("/pulls/{pr}"), format!("/merge_requests/{pr}")];
        s.forge.detour_branch(BranchDetour {
            route: RouteMatcher::Predicate(std::sync::Arc::new(move |method, path: &str| {
                method == Method::GET && reads.iter().any(|read| path.ends_with(read.as_str()))
            })),
            count: 2,
            repo: REPO.to_owned(),
            branch: opened.head_ref.clone(),
            sha: opened.head_sha.clone(),
        });
        s.advance(TimeDelta::minutes(5));
        s.settle().await;
        assert!(s.change(pr).merged, "the bot's own commit is merged");
        assert_eq!(s.forge.file_on(REPO, "main", &path).unwrap(), request);
        let id = path.rsplit('/').next().unwrap().trim_end_matches(".yaml");
        let logged = s.events(id, "tampering").await;
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert_eq!(logged[0].data["found_head"], pushed.as_str(), "{logged:?}");
        tampering_found_then_named(&s, issue, pr, id).await;
    }
);

// The bot builds its branches on the default branch's head as push webhooks reported it. A
// force push may have taken that head out of the branch before its webhook arrives: the PR
// would then bring those commits back, and the merge guard refuses it.
on_both_forges!(
    a_head_a_force_push_removed_never_comes_back_with_a_merge,
    |s: Scenario| async move {
        let before = s.forge.branch_sha(REPO, "main").unwrap();
        s.forge.push_files(
            REPO,
            "main",
            &s.people.carol,
            &[("notes/mistake.txt", "pushed by mistake\n")],
            "a mistake",
        );
        s.settle().await;
        // The mistake leaves main by a force push; its webhook comes late.
        s.forge.set_webhooks_paused(true);
        s.forge.force_branch(REPO, "main", &s.people.carol, &before);
        let issue = s.open_issue(&s.people.alice, "staging is broken");
        s.by(&s.people.alice)
            .note_on_issue(issue, "/breakglass staging 1h -- debugging");
        let comment = s
            .forge
            .deliveries()
            .into_iter()
            .rev()
            .find(|d| d.event == "issue_comment" || d.event == "Note Hook")
            .unwrap();
        assert!(s.forge.redeliver(&comment.id));
        s.settle().await;
        let (pr, path) = bots_request(&s, "staging");
        assert!(!s.change(pr).merged, "never merged");
        assert!(s.forge.file_on(REPO, "main", "notes/mistake.txt").is_none());
        let id = path.rsplit('/').next().unwrap().trim_end_matches(".yaml");
        assert_eq!(s.request(id).await.state.to_string(), "pending");
        s.expect_bot_issue_comments(issue, &["📝 @alice, your request is "]);
        let said = s.take_bot_comments(pr);
        assert!(said[0].starts_with("✅ **Request"), "{said:?}");
        assert!(
            said[1].starts_with("⚠️ Not merged") && said[1].contains("notes/mistake.txt"),
            "{said:?}"
        );
        assert_eq!(said.len(), 2, "{said:?}");
        s.forge.set_webhooks_paused(false);
        s.forge.flush_webhooks();
        s.settle().await;
        assert!(!s.change(pr).merged);
        assert!(s.forge.file_on(REPO, "main", "notes/mistake.txt").is_none());
        // Decided again on the late events, it says what the PR would bring in; never granted.
        let later = s.take_bot_comments(pr);
        assert!(later.iter().all(|c| !c.starts_with("🔓")), "{later:?}");
    }
);

// 2. Nothing done to the revert PR holds a revocation back.

async fn revoked_through_a_fresh_change(s: &Scenario, id: &str, blocked_pr: u64) {
    s.advance(TimeDelta::hours(1));
    s.settle().await;
    let record = s.request(id).await;
    assert_eq!(record.state.to_string(), "revoked");
    assert!(
        s.forge
            .file_on(REPO, "main", &format!("requests/prod/{id}.yaml"))
            .is_none(),
        "the request file is gone from main"
    );
    let revert = record.revert_pr_number.unwrap();
    assert_ne!(revert, blocked_pr, "a fresh revert change");
    assert!(s.change(revert).merged);
    assert!(!s.change(blocked_pr).merged);
    assert_eq!(s.change(blocked_pr).state, "closed");
    let merge = s.merge_commit(revert);
    assert!(
        merge.message.contains(&format!("Breakglass-Revokes: {id}")),
        "{}",
        merge.message
    );
    // Said why (SPEC: "removes the files through a fresh change of its own and says why").
    s.expect_bot_comments(record.pr_number, &["↪️ Revert ", "🔒 **Access revoked**"]);
}

on_both_forges!(
    a_revert_pr_turned_draft_still_revokes_on_time,
    |s: Scenario| async move {
        s.granted("r1", "1h").await;
        let revert = s.revert_pr("r1").await;
        s.set_draft(revert, &s.people.mallory, true);
        s.settle().await;
        revoked_through_a_fresh_change(&s, "r1", revert).await;
    }
);

on_both_forges!(
    a_closed_revert_pr_still_revokes_on_time,
    |s: Scenario| async move {
        s.granted("r1", "1h").await;
        let revert = s.revert_pr("r1").await;
        s.close_change(revert, &s.people.mallory);
        s.settle().await;
        revoked_through_a_fresh_change(&s, "r1", revert).await;
    }
);

on_both_forges!(
    a_conflicting_revert_pr_still_revokes_on_time,
    |s: Scenario| async move {
        s.granted("r1", "1h").await;
        let revert = s.revert_pr("r1").await;
        s.forge.set_conflicting(REPO, s.internal(revert), true);
        revoked_through_a_fresh_change(&s, "r1", revert).await;
    }
);

// A GitLab owner deletes the revert MR (GitLab lets owners and admins delete a merge request;
// every call on it then answers 404, as here). At the TTL the access is revoked and the files
// still leave the default branch through a fresh change, said on the request's MR; an
// extension meanwhile, which would retitle it, still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_revert_mr_still_revokes_on_time_through_a_fresh_change() {
    let s = Scenario::on_gitlab().await;
    let pr = s.granted("r1", "1h").await;
    let revert = s.revert_pr("r1").await;
    mr_deleted(&s, revert);
    // An extension retitles the revert MR with the new expiry: gone, it is not retitled, and
    // the extension still holds.
    s.forge.advance_clock(TimeDelta::seconds(1));
    s.note(pr, &s.people.alice, "/breakglass extend 30m");
    s.settle().await;
    s.expect_bot_comments(pr, &["⏳ @alice asks for 30m more"]);
    s.forge.advance_clock(TimeDelta::seconds(1));
    s.approve(pr, &s.people.carol);
    s.settle().await;
    s.expect_bot_comments(pr, &["⏳ Extended"]);
    s.advance(TimeDelta::minutes(89));
    s.settle().await;
    assert_eq!(s.request("r1").await.state.to_string(), "active");
    s.take_bot_comments(pr); // the reminder
    s.advance(TimeDelta::minutes(1));
    s.settle().await;
    let record = s.request("r1").await;
    assert_eq!(record.state.to_string(), "revoked");
    assert!(
        s.forge
            .file_on(REPO, "main", "requests/prod/r1.yaml")
            .is_none(),
        "the request file stays on main"
    );
    let fresh = record.revert_pr_number.unwrap();
    assert_ne!(fresh, revert, "a fresh revert change");
    assert!(s.change(fresh).merged);
    let said = s.take_bot_comments(pr);
    assert!(
        said.iter()
            .any(|c| c.starts_with("↪️ Revert MR !") && c.contains("no longer exists")),
        "{said:#?}"
    );
    assert!(
        said.iter().any(|c| c.starts_with("🔒 **Access revoked**")),
        "{said:#?}"
    );
}

// A pending request whose MR a GitLab owner deleted is closed at its next poll, instead of its
// poll and expiry failing forever and counting against its requester's open requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_request_whose_mr_was_deleted_is_closed() {
    let s = Scenario::on_gitlab().await;
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
    mr_deleted(&s, pr);
    s.advance(TimeDelta::minutes(6)); // GitLab's safety-net poll
    s.settle().await;
    let record = s.request("r1").await;
    assert_eq!(record.state.to_string(), "closed");
    let closed = s.events("r1", "close").await;
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].data["deleted"], true);
    s.advance(TimeDelta::hours(25)); // past the pending deadline: nothing left to fail
    s.settle().await;
}

// The same for an approved request whose MR is deleted between the approval and its merge:
// the merge job closes it instead of failing forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_request_whose_mr_was_deleted_before_its_merge_is_closed() {
    let mut s = Scenario::on_gitlab().await;
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
    // Approved, its merge job still to run, when the MR is deleted (the bot was down then).
    s.crash().await;
    let mut record = s.request("r1").await;
    let now = s.clock.now();
    record.state = breakglass::store::RequestState::Approved;
    record.approved_by = Some(vec!["carol".parse().unwrap()]);
    s.store.update_request(&mut record, now).await.unwrap();
    s.store
        .schedule_job(JobKind::Merge, &record.id, now, now)
        .await
        .unwrap();
    mr_deleted(&s, pr);
    s.start_service().await;
    s.settle().await;
    assert_eq!(s.request("r1").await.state.to_string(), "closed");
    assert!(!s.change(pr).merged);
    let closed = s.events("r1", "close").await;
    assert_eq!(closed[0].data["deleted"], true);
}

// An active grant whose request MR a GitLab owner deleted: the reminder and the revocation's
// notes have nowhere to go, and are not tried for ever; the grant is revoked at its expiry and
// its file removed all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_grant_whose_mr_was_deleted_is_revoked_and_no_job_fails_for_ever() {
    let s = Scenario::on_gitlab().await;
    let pr = s.granted("r1", "1h").await;
    s.take_bot_comments(pr);
    mr_deleted(&s, pr);
    s.advance(TimeDelta::minutes(55)); // the reminder, 10 minutes before
    s.settle().await;
    s.advance(TimeDelta::minutes(6));
    s.settle().await;
    s.expect_revoked_and_removed("r1").await;
    assert_eq!(s.events("r1", "revoke").await.len(), 1);
    let later = s.clock.now() + TimeDelta::days(30);
    let left = s.store.overdue_jobs(later).await.unwrap();
    assert!(
        left.is_empty(),
        "{:?}",
        left.iter()
            .map(|j| (j.kind.to_string(), j.last_error.clone()))
            .collect::<Vec<_>>()
    );
    s.lenient(); // its notes went nowhere
}

/// Every call on merge request `number` answers 404 from now on, as after an owner deleted it
/// (the test forge deletes nothing).
fn mr_deleted(s: &Scenario, number: u64) {
    let gone = format!("/merge_requests/{number}");
    s.forge.fail_next(FailureSpec {
        route: RouteMatcher::Predicate(std::sync::Arc::new(move |_, path: &str| {
            path.ends_with(&gone) || path.contains(&format!("{gone}/"))
        })),
        count: u32::MAX,
        kind: FailureKind::Status(404),
    });
}

// GitHub only: GitHub's protection message and its advice.
on_both_backends!(
    branch_protection_that_refuses_the_bot_is_said_once_and_the_revoke_is_retried,
    |s: Scenario| async move {
        s.granted("r1", "1h").await;
        let pr = s.request("r1").await.pr_number;
        s.forge.protect_branch(
            REPO,
            "main",
            Protection {
                required_approving_reviews: 1,
                required_status_checks: Vec::new(),
                bypass: Vec::new(),
            },
        );
        s.expect_job_error(
            breakglass::store::JobKind::Revert,
            "At least 1 approving review is required",
        );
        s.advance(TimeDelta::hours(1));
        s.settle().await;
        // The access ended on time; only the revert (forge work) waits for the admin.
        assert_eq!(s.request("r1").await.state.to_string(), "revoked");
        assert!(
            s.forge
                .file_on(REPO, "main", "requests/prod/r1.yaml")
                .is_some()
        );
        assert!(s.events("r1", "revert").await.is_empty());
        let blocked = s.next_bot_comment(pr);
        assert!(
            blocked.starts_with("🚨 **The revert could not be merged**")
                && blocked.contains("allow it to bypass required reviews"),
            "{blocked}"
        );
        // Retried with backoff, said once.
        for _ in 0..3 {
            s.advance(TimeDelta::seconds(30));
            s.settle().await;
        }
        s.expect_no_bot_comment(pr);
        // The admin lets the bot through: the revoke completes.
        s.forge.protect_branch(
            REPO,
            "main",
            Protection {
                required_approving_reviews: 1,
                required_status_checks: Vec::new(),
                bypass: vec![s.people.bot.login.clone()],
            },
        );
        s.advance(TimeDelta::minutes(6));
        s.settle().await;
        s.expect_revoked_and_removed("r1").await;
        s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
        assert_eq!(s.events("r1", "revoke").await.len(), 1, "revoked once");
        assert_eq!(s.events("r1", "revert").await.len(), 1);
    }
);

// 3. The bot writes only to its own branches, in the requests repo.

on_both_forges!(
    a_fork_pr_is_refused_and_nothing_is_written,
    |s: Scenario| async move {
        let main_before = s.forge.branch_sha(REPO, "main");
        let yaml = "environment: network\nrole: dns-admin\nduration: 1h\nreason: move the apex record\nrequester: mallory\n";
        let internal = s.forge.open_fork_pr(
            REPO,
            &s.people.mallory,
            "mallory/access-requests",
            "main",
            &[("requests/network/r-fork.yaml", yaml)],
            "dns",
        );
        let pr = match s.dialect {
            Dialect::GitHub => internal,
            Dialect::GitLab => match s.forge.gl_iid(REPO, internal) {
                breakglass_test_forge::Noteable::MergeRequest(iid) => iid,
                other => panic!("a fork PR is a merge request: {other:?}"),
            },
        };
        s.settle().await;
        assert_eq!(
            s.forge.branch_sha(REPO, "main"),
            main_before,
            "nothing was written to the base repo's main"
        );
        let said = s.next_bot_comment(pr);
        assert!(
            said.starts_with("⛔ breakglass does not take requests from forks"),
            "{said}"
        );
        let head = s.change(pr).head_sha;
        assert_eq!(s.policy_status(&head).unwrap().0, "failure");
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(!s.change(pr).merged);
        s.expect_bot_comments(pr, &[&format!("`/breakglass approve` needs a request breakglass could read, and this {pr}'s was refused: breakglass's comment above says why and what to do.", pr = s.pr())]);
        assert_eq!(s.forge.branch_sha(REPO, "main"), main_before);
    }
);

// GitHub shows a deleted fork's PR with `head.repo: null`: still not the requests repo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_pr_whose_fork_was_deleted_is_still_refused() {
    let s = Scenario::start(Backend::Sqlite).await.unwrap();
    let main_before = s.forge.branch_sha(REPO, "main");
    // bob may take prod's sev1 fast path: a request of his, from a fork.
    let yaml = "environment: prod\nrole: admin\nduration: 1h\nreason: \"incident: INC-1 db\"\nticket: INC-1\nrequester: bob\n";
    let pr = s.forge.open_fork_pr(
        REPO,
        &s.people.bob,
        "bob/access-requests",
        "main",
        &[("requests/prod/r-gone.yaml", yaml)],
        "prod",
    );
    s.settle().await;
    let said = s.next_bot_comment(pr);
    assert!(
        said.starts_with("⛔ breakglass does not take requests from forks"),
        "{said}"
    );
    s.forge.delete_fork(REPO, pr);
    s.forge.label(REPO, pr, &s.people.bob, "sev1");
    s.settle().await;
    assert!(!s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    assert_eq!(s.forge.branch_sha(REPO, "main"), main_before);
    let head = s.change(pr).head_sha;
    assert_eq!(s.policy_status(&head).unwrap().0, "failure");
}

// 4. An approval counts once, for what the approver saw, on the forge's clock.

on_skewed_clocks!(
    a_thumbs_up_a_second_after_the_push_counts_whatever_the_bots_clock_says,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.emoji_now(pr, &s.people.carol, "+1");
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.expect_bot_comments(pr, &["✅", "🔓 **Access granted.**"]);
    }
);

on_skewed_clocks!(
    an_approval_in_the_same_second_as_the_push_is_asked_again_never_dropped,
    |s: Scenario| async move {
        let now = s.forge.now();
        s.forge.freeze_clock(now);
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.emoji_now(pr, &s.people.carol, "+1");
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        assert!(!s.change(pr).merged);
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        let asked = s.next_bot_comment(pr);
        assert!(
            asked.starts_with("⏱️ @carol, your approval came within the same second"),
            "{asked}"
        );
        // Asked once, not at every poll.
        s.emoji_now(pr, &s.people.erin, "eyes");
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        s.expect_no_bot_comment(pr); // asked once
        s.by(&s.people.carol).approve(pr);
        s.settle().await;
        assert!(s.change(pr).merged);
        s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
    }
);

on_skewed_clocks!(
    a_replayed_approval_counts_once_and_never_for_a_later_push,
    |s: Scenario| async move {
        two_approvals(&s);
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        s.by(&s.people.carol).approve(pr);
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(pr),
            "👍 Approval by @carol recorded (1 of 2)."
        );
        let original = signed_comment(&s, "\"body\":\"/breakglass approve\"");
        let replay = |id: &'static str| {
            let body = original.body.clone();
            let url = s.webhook_url();
            let forge = &s.forge;
            async move {
                forge
                    .send_raw_delivery_with_id(&url, "issue_comment", id, &body, SECRET)
                    .await
            }
        };
        // The same signed comment under a new delivery id: still one approver.
        assert_eq!(
            replay("11111111-1111-1111-1111-111111111111").await,
            Some(202)
        );
        s.settle().await;
        assert!(!s.change(pr).merged, "carol does not count twice");
        s.expect_no_bot_comment(pr); // nor is she answered twice
        // alice pushes a new version; the old comment replayed again approves nothing.
        s.forge.advance_clock(TimeDelta::seconds(2));
        s.forge.push_files(
            REPO,
            "request-r1",
            &s.people.alice,
            &[("requests/prod/r1.yaml", &prod_request("4h"))],
            "longer",
        );
        s.settle().await;
        s.forge.advance_clock(TimeDelta::seconds(2));
        replay("22222222-2222-2222-2222-222222222222").await;
        s.settle().await;
        // The new version is decided again; carol's comment was answered already, and its
        // replay neither counts for the new version nor is answered again.
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed** by the `prod` policy: @alice asks for `prod/admin` for 4h."]);
        s.expect_no_bot_comment(pr);
        s.by(&s.people.dan).approve(pr);
        s.settle().await;
        assert!(!s.change(pr).merged, "1 of 2 for the new version");
        s.expect_bot_comments(pr, &["👍 Approval by @dan recorded (1 of 2)."]);
        s.approve(pr, &s.people.carol);
        s.settle().await;
        let merge = s.merge_commit(pr);
        assert!(merge.message.contains("for 4h"), "{}", merge.message);
        assert!(
            merge.message.contains("Breakglass-Approved-By: carol, dan"),
            "{}",
            merge.message
        );
        s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
    }
);

/// alice's request `r-swap` asks for 4h (version A); with the bot's webhooks lagging, she
/// pushes a 1h version (B), `approve` approves what the PR now shows, and she puts the branch
/// back on A. Then every webhook arrives, in order. The PR.
async fn approval_of_b_then_back_to_a(s: &Scenario, approve: impl Fn(u64)) -> u64 {
    let alice = &s.people.alice;
    let pr = s.open_request(alice, "prod", "r-swap", &prod_request("4h"));
    s.settle().await;
    s.expect_bot_comments(pr, &["✅ **Request `r-swap` is allowed**"]);
    let head_a = s.forge.branch_sha(REPO, "request-r-swap").unwrap();
    s.forge.set_webhooks_paused(true);
    s.forge.advance_clock(TimeDelta::seconds(2));
    s.forge.push_files(
        REPO,
        "request-r-swap",
        alice,
        &[("requests/prod/r-swap.yaml", &prod_request("1h"))],
        "make it 1h",
    );
    approve(pr);
    s.forge.advance_clock(TimeDelta::seconds(2));
    s.forge.force_branch(REPO, "request-r-swap", alice, &head_a);
    s.forge.set_webhooks_paused(false);
    s.forge.flush_webhooks();
    s.settle().await;
    pr
}

on_skewed_clocks!(
    an_approval_of_a_version_the_branch_then_left_never_merges_the_version_it_came_back_to,
    |s: Scenario| async move {
        let carol = &s.people.carol;
        let pr = approval_of_b_then_back_to_a(&s, |pr| {
            s.approve(pr, carol);
        })
        .await;
        // Before, A's head and the time it came were kept as they were: carol's approval of
        // the 1h version counted for the 4h one, which was merged under her name.
        assert!(!s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        let said = s.next_bot_comment(pr);
        assert!(
            said.starts_with("⏱️ @carol, your approval was given before the latest push"),
            "{said}"
        );
        s.expect_no_bot_comment(pr);
        // Approved again, on what the PR shows now: merged, for 4h.
        s.forge.advance_clock(TimeDelta::seconds(2));
        s.approve(pr, carol);
        s.settle().await;
        assert!(s.merge_commit(pr).message.contains("for 4h"));
        s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
    }
);

on_both_forges!(
    an_emoji_on_a_version_the_branch_then_left_never_merges_the_version_it_came_back_to,
    |s: Scenario| async move {
        let pr = approval_of_b_then_back_to_a(&s, |pr| {
            s.emoji(pr, &s.people.carol, "+1");
        })
        .await;
        for _ in 0..3 {
            s.advance(TimeDelta::seconds(31));
            s.settle().await;
        }
        // A reaction from before the latest push approved an older version, and is not
        // answered at every poll: the verdict says that a push voids earlier approvals.
        assert!(!s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.expect_no_bot_comment(pr);
        s.forge.advance_clock(TimeDelta::seconds(2));
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(s.change(pr).merged);
        s.expect_bot_comments(
            pr,
            &["🔓 **Access granted.** @alice has `prod/admin` until"],
        );
        let granted = s.request("r-swap").await;
        assert_eq!(
            granted.duration_secs,
            4 * 3600,
            "the version it came back to"
        );
    }
);

on_both_forges!(
    an_approval_in_a_pushs_second_heard_before_the_push_is_asked_again,
    |s: Scenario| async move {
        s.prod_needs_two_approvals().await;
        let pr = s.open_request(&s.people.alice, "prod", "r-ss", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r-ss` is allowed**"]);
        s.forge.set_webhooks_paused(true);
        s.forge.advance_clock(TimeDelta::seconds(2));
        let now = s.forge.now();
        s.forge.freeze_clock(now);
        s.forge.push_files(
            REPO,
            "request-r-ss",
            &s.people.alice,
            &[("requests/prod/r-ss.yaml", &prod_request("2h"))],
            "longer",
        );
        // carol approves in the push's very second, and her comment is heard first.
        s.note(pr, &s.people.carol, "/breakglass approve");
        let hers = s
            .forge
            .deliveries()
            .into_iter()
            .filter(|d| {
                d.attempts == 0 && String::from_utf8_lossy(&d.body).contains("/breakglass approve")
            })
            .map(|d| d.id)
            .collect::<Vec<_>>();
        assert_eq!(hers.len(), 1);
        assert!(s.forge.redeliver(&hers[0]));
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(pr),
            "👍 Approval by @carol recorded (1 of 2)."
        );
        s.forge.set_clock(now + TimeDelta::seconds(5));
        s.forge.set_webhooks_paused(false);
        s.forge.flush_webhooks();
        s.settle().await;
        // Before, the push forgot her approval without a word.
        let said = s.next_bot_comment(pr);
        assert!(
            said.starts_with("⏱️ @carol, your approval came within the same second"),
            "{said}"
        );
        s.expect_bot_comments(pr, &["✅ **Request `r-ss` is allowed**"]);
        s.expect_no_bot_comment(pr);
    }
);

on_both_forges!(
    an_approver_taken_off_the_team_a_moment_before_the_merge_no_longer_counts,
    |s: Scenario| async move {
        s.prod_needs_two_approvals().await;
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        // dan approves only through @acme/sre-leads, and is taken off it right after.
        s.approve(pr, &s.people.dan);
        s.settle().await;
        s.expect_bot_comments(pr, &["👍 Approval by @dan recorded (1 of 2)."]);
        s.forge.remove_team_member("acme/sre-leads", &s.people.dan);
        // Within the minute the bot keeps a membership: the merge asks the forge again.
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(!s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        let said = s.next_bot_comment(pr);
        assert!(said.contains("1 of 2"), "{said}");
        s.expect_no_bot_comment(pr);
    }
);

on_both_forges!(
    an_emoji_the_policy_stopped_taking_as_an_approval_does_not_count_at_the_merge,
    |s: Scenario| async move {
        let rocket_too = "approval_reactions: [\"+1\", \"rocket\"]";
        s.edit_policy(&s.people.erin, "prod", |p| {
            p.replace("approvals: 1", "approvals: 2")
                .replace("approval_reactions: [\"+1\"]", rocket_too)
        });
        s.settle().await;
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        s.emoji(pr, &s.people.dan, "rocket");
        for _ in 0..3 {
            s.advance(TimeDelta::seconds(31));
            s.settle().await;
        }
        // 🚀 stops being an approval; dan's stays on the PR.
        s.edit_policy(&s.people.erin, "prod", |p| {
            p.replace(rocket_too, "approval_reactions: [\"+1\"]")
        });
        s.settle().await;
        s.approve(pr, &s.people.carol);
        s.settle().await;
        // Before, dan's 🚀 was still counted at the merge: two of two.
        assert!(!s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.expect_bot_comments(pr, &["👍 Approval by @dan recorded (1 of 2).", "⚠️ Not merged: an approval no longer counts at the merge: withdrawn, or not one under the default branch's policy any more (1 of 2 remain)."]);
        s.expect_no_bot_comment(pr);
    }
);

on_both_backends!(
    a_replayed_deny_is_neither_done_nor_said_again,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        s.note(pr, &s.people.carol, "/breakglass deny -- nope");
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(pr),
            "🚫 Request denied by @carol: `nope`. Closing."
        );
        let original = signed_comment(&s, "/breakglass deny -- nope");
        let closes = |s: &Scenario| {
            s.forge
                .calls()
                .count("PATCH", "/repos/{owner}/{repo}/pulls/{number}")
        };
        let closed_before = closes(&s);
        // The same signed comment under a new delivery id, as a captured payload replayed.
        let url = s.webhook_url();
        let sent = s
            .forge
            .send_raw_delivery_with_id(
                &url,
                "issue_comment",
                "33333333-3333-3333-3333-333333333333",
                &original.body,
                SECRET,
            )
            .await;
        assert_eq!(sent, Some(202));
        s.settle().await;
        s.expect_no_bot_comment(pr);
        assert_eq!(closes(&s), closed_before, "the PR is not closed again");
        assert_eq!(s.events("r1", "close").await.len(), 1);
    }
);

// GitHub only: GitLab sends no event for a deleted note; its approval falls at the merge-time check instead.
on_both_backends!(
    a_withdrawn_approval_no_longer_counts,
    |s: Scenario| async move {
        two_approvals(&s);
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        // A reaction, removed.
        s.forge.advance_clock(TimeDelta::seconds(1));
        let thumbs = s.emoji_now(pr, &s.people.carol, "+1");
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        s.remove_emoji(pr, thumbs);
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        // A comment, deleted.
        let comment = s.approve(pr, &s.people.carol);
        s.settle().await;
        s.forge.delete_comment(REPO, comment, &s.people.carol);
        s.settle().await;
        s.approve(pr, &s.people.dan);
        s.settle().await;
        assert!(!s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        assert_eq!(s.events("r1", "approval_withdrawn").await.len(), 2);
        // A fresh approval by carol makes two.
        s.by(&s.people.carol).approve(pr);
        s.settle().await;
        assert!(s.change(pr).merged);
        s.expect_bot_comments(
            pr,
            &[
                "✅ **Request `r1` is allowed**",
                "👍 Approval by @carol recorded (1 of 2).", // her emoji, taken back
                "👍 Approval by @carol recorded (1 of 2).", // her comment, deleted
                "👍 Approval by @dan recorded (1 of 2).",
                "🔓 **Access granted.**",
            ],
        );
    }
);

// GitHub only: injects failures into GitHub's merge route.
on_both_backends!(
    an_approval_withdrawn_right_before_the_merge_stops_it,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        // The merge job's first run fails (502s through all four tries of the retry layer), so
        // the withdrawal lands between the approval and the merge.
        s.forge.fail_next(FailureSpec::new(
            Method::PUT,
            &format!("/repos/{REPO}/pulls/{pr}/merge"),
            4,
            FailureKind::Status(502),
        ));
        s.expect_job_error(breakglass::store::JobKind::Merge, "HTTP 502");
        s.forge.advance_clock(TimeDelta::seconds(1));
        let thumbs = s.emoji_now(pr, &s.people.carol, "+1");
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        assert!(!s.change(pr).merged);
        s.remove_emoji(pr, thumbs);
        s.advance(TimeDelta::seconds(5));
        s.settle().await;
        assert!(!s.change(pr).merged);
        // Said once: a refused merge has one comment.
        s.expect_bot_comments(
            pr,
            &[
                "✅ **Request `r1` is allowed**",
                "⚠️ Not merged: an approval no longer counts at the merge: withdrawn, or not one under the default branch's policy any more (0 of 1 remain).",
            ],
        );
    }
);

// GitHub only: GitHub's reaction pages (GitLab's emoji arrive as events).
on_both_backends!(
    an_approval_on_the_second_page_of_reactions_counts,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.forge.advance_clock(TimeDelta::seconds(1));
        for n in 0..110 {
            let watcher = s.forge.user(&format!("watcher{n}"));
            s.emoji_now(pr, &watcher, "eyes");
        }
        s.emoji_now(pr, &s.people.carol, "+1");
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        assert!(s.change(pr).merged);
        s.expect_bot_comments(pr, &["✅", "🔓 **Access granted.**"]);
    }
);

/// bob (on call) asks for prod on a sev1 fast path: a PR adding `path`, labelled `sev1`;
/// `before_label` runs between the opening and the label (the label makes the bot decide).
fn bob_sev1_pr(s: &Scenario, path: &str, draft: bool, before_label: impl Fn(u64)) -> u64 {
    let branch = "sev1-request";
    s.forge.push_files(
        REPO,
        branch,
        &s.people.bob,
        &[(path, &prod_request("1h"))],
        "request",
    );
    // Opened as it is meant (a draft, labelled): the bot decides it once, as it is.
    s.before_the_bot_hears(|| {
        let pr = s.open_change(&s.people.bob, branch, "r1");
        if draft {
            s.set_draft(pr, &s.people.bob, true);
        }
        before_label(pr);
        s.label(pr, &s.people.bob, "sev1");
        pr
    })
}

// 5. A refused merge does not loop.

on_both_forges!(
    a_yml_request_is_refused_once_and_never_merged,
    |s: Scenario| async move {
        let pr = bob_sev1_pr(&s, "requests/prod/r1.yml", false, |_| {});
        s.settle().await;
        s.advance(TimeDelta::minutes(2));
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(said.contains("is not a request file"), "{said}");
        s.expect_no_bot_comment(pr); // refused once
        assert!(!s.change(pr).merged);
        assert_eq!(merge_calls(&s), 0);
    }
);

on_both_forges!(
    a_draft_fast_path_request_is_decided_but_merged_only_when_ready,
    |s: Scenario| async move {
        let pr = bob_sev1_pr(&s, "requests/prod/r1.yaml", true, |_| {});
        s.settle().await;
        s.advance(TimeDelta::minutes(2));
        s.settle().await;
        assert!(!s.change(pr).merged);
        assert_eq!(merge_calls(&s), 0, "a draft is never tried");
        let said = s.next_bot_comment(pr);
        assert!(
            said.contains(&format!("This {pr} is a draft", pr = s.pr())),
            "{said}"
        );
        s.set_draft(pr, &s.people.bob, false);
        s.settle().await;
        assert!(s.change(pr).merged);
        // The fast path's verdict is said with the grant.
        let granted = s.next_bot_comment(pr);
        assert!(granted.starts_with("🔓 **Access granted.**"), "{granted}");
        assert!(granted.contains("⚡ Fast path `sev1`"), "{granted}");
    }
);

on_both_forges!(
    a_merge_the_forge_refuses_is_said_once_and_not_retried_until_something_changes,
    |s: Scenario| async move {
        let pr = bob_sev1_pr(&s, "requests/prod/r1.yaml", false, |pr| {
            s.forge.set_conflicting(REPO, s.internal(pr), true)
        });
        s.settle().await;
        for _ in 0..3 {
            s.advance(TimeDelta::minutes(1));
            s.settle().await;
        }
        // The fast path's verdict, never said on its own, comes with the refusal.
        let said = s.next_bot_comment(pr);
        assert!(said.starts_with("✅ **Request `r1` is allowed**"), "{said}");
        assert!(said.contains("⚡ Fast path `sev1` applies"), "{said}");
        assert!(
            said.contains("\n\n⚠️ Not merged: the forge refused the merge:"),
            "{said}"
        );
        s.expect_no_bot_comment(pr); // said once
        assert_eq!(merge_calls(&s), 1);
        assert_eq!(s.request("r1").await.state.to_string(), "pending");
        // Something changes: the conflict is resolved and an approver approves again.
        s.forge.set_conflicting(REPO, s.internal(pr), false);
        s.by(&s.people.carol).approve(pr);
        s.settle().await;
        assert!(s.change(pr).merged);
        s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
    }
);

// 6. Files that land without the bot are removed in full.

on_both_forges!(
    request_and_grant_files_pushed_to_main_are_removed_in_full,
    |s: Scenario| async move {
        let yaml =
            "environment: network\nrole: dns-admin\nduration: 1h\nreason: move the apex record\n";
        s.forge.push_direct(
            REPO,
            &s.people.mallory,
            &[
                ("requests/network/r-x.yaml", yaml),
                ("grants/network/r-x.tf", "resource \"x\" \"y\" {}\n"),
                ("grants/prod/evil.tf", "resource \"x\" \"z\" {}\n"),
            ],
            "grant myself",
        );
        s.settle().await;
        let files = s.forge.files_on(REPO, "main");
        for gone in [
            "requests/network/r-x.yaml",
            "grants/network/r-x.tf",
            "grants/prod/evil.tf",
        ] {
            assert!(!files.contains(&gone.to_owned()), "{gone} is still on main");
        }
        assert!(
            s.forge
                .log(REPO, "main")
                .iter()
                .any(|c| c.message.contains("Breakglass-Revokes: r-x")),
            "the removal of the request is a revoke merge"
        );
        // One removal change says so for the request with its grant file, one for the grant
        // file that belongs to no request.
        let mut said: Vec<String> = s
            .changes()
            .iter()
            .flat_map(|c| s.take_bot_comments(c.number))
            .collect();
        said.sort();
        let flagged = "🚨 **Request files reached the default branch without breakglass**: ";
        assert_eq!(
            said,
            [
                format!(
                    "{flagged}`grants/network/r-x.tf`, `requests/network/r-x.yaml`. They were not granted; breakglass removes them."
                ),
                format!(
                    "{flagged}`grants/prod/evil.tf`. They were not granted; breakglass removes them."
                ),
            ]
        );
    }
);

on_both_forges!(
    a_request_file_readded_after_its_revocation_is_removed_and_flagged,
    |s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        s.advance(TimeDelta::hours(1));
        s.settle().await;
        assert_eq!(s.request("r1").await.state.to_string(), "revoked");
        s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
        s.forge.push_direct(
            REPO,
            &s.people.mallory,
            &[("requests/prod/r1.yaml", &prod_request("1h"))],
            "back again",
        );
        s.settle().await;
        assert!(
            s.forge
                .file_on(REPO, "main", "requests/prod/r1.yaml")
                .is_none()
        );
        let removal = s
            .changes()
            .into_iter()
            .rfind(|p| p.title.starts_with("breakglass: remove r1"))
            .unwrap();
        assert!(removal.merged);
        let flagged = s.next_bot_comment(removal.number);
        assert!(
            flagged.starts_with("🚨 **Request files reached the default branch without breakglass**: `requests/prod/r1.yaml`.")
                && flagged.contains("🚨 Request `r1` was already revoked"),
            "{flagged}"
        );
        assert!(
            metrics(&s)
                .await
                .contains("breakglass_anomalies_total{kind=\"readded_after_revoke\"} 1")
        );
        assert_eq!(s.request("r1").await.state.to_string(), "revoked");
    }
);

// GitLab's push webhook lists only the last 20 commits of a push (the test forge does so on
// both forges): the request file added before them is not in it, yet it is found and removed.
on_both_forges!(
    a_request_file_buried_under_twenty_later_commits_of_one_push_is_removed,
    |s: Scenario| async move {
        let mallory = &s.people.mallory;
        let request = prod_request("4h");
        s.forge.push_files(
            REPO,
            "buried",
            mallory,
            &[("requests/prod/sneaky.yaml", &request)],
            "grant myself",
        );
        for i in 0..20 {
            let readme = format!("# access requests {i}\n");
            s.forge
                .push_files(REPO, "buried", mallory, &[("README.md", &readme)], "docs");
        }
        let tip = s.forge.branch_sha(REPO, "buried").unwrap();
        // A fast-forward of the default branch by 21 commits, in one push.
        s.forge.force_branch(REPO, "main", mallory, &tip);
        s.settle().await;
        assert!(
            s.forge
                .file_on(REPO, "main", "requests/prod/sneaky.yaml")
                .is_none(),
            "removed again"
        );
        let removal = s
            .changes()
            .into_iter()
            .find(|c| c.title.starts_with("breakglass: remove sneaky"))
            .expect("a removal change");
        assert!(removal.merged, "{removal:?}");
        s.expect_bot_comments(
            removal.number,
            &["🚨 **Request files reached the default branch without breakglass**: `requests/prod/sneaky.yaml`."],
        );
        assert!(
            metrics(&s)
                .await
                .contains("breakglass_anomalies_total{kind=\"landed_without_bot\"} 1")
        );
    }
);

// 7. Who may ask is checked before the bot writes anything.

on_both_forges!(
    an_outsiders_comment_opens_nothing,
    |s: Scenario| async move {
        let issue = s.open_issue(&s.people.mallory, "hi");
        s.settle().await;
        s.forge.reset_calls();
        let body = (0..10)
            .map(|n| format!("/breakglass prod 1h admin -- incident: INC-{n} let me in"))
            .collect::<Vec<_>>()
            .join("\n");
        s.note_on_issue(issue, &s.people.mallory, &body);
        s.settle().await;
        assert_eq!(s.changes().len(), 0, "no PR opened");
        // One note answers the whole comment: the refusal, then the rule.
        let replies = s.take_bot_issue_comments(issue);
        assert_eq!(replies.len(), 1, "{replies:#?}");
        let (refusal, rule) = replies[0]
            .split_once("⚠️ One comment opens at most one request")
            .expect("the rule is said");
        assert!(refusal.contains("requesters"), "{}", replies[0]);
        assert!(!rule.contains("requesters"), "refused once: {}", replies[0]);
        assert_eq!(s.forge.calls().writes(), 1, "one reply, nothing else");
    }
);

on_both_forges!(
    one_person_may_have_only_so_many_open_requests,
    |s: Scenario| async move {
        let issue = s.open_issue(&s.people.alice, "db down");
        for n in 0..4 {
            s.forge.advance_clock(TimeDelta::minutes(1));
            s.advance(TimeDelta::minutes(1));
            s.note_on_issue(
                issue,
                &s.people.alice,
                &format!("/breakglass prod 1h admin -- incident: INC-{n} db down"),
            );
            s.settle().await;
        }
        assert_eq!(s.changes().len(), 3, "the default limit is 3");
        for change in s.changes() {
            s.expect_bot_comments(change.number, &["✅ **Request `20261126-"]);
        }
        let mut said = s.take_bot_issue_comments(issue);
        assert_eq!(said.len(), 4, "{said:#?}");
        let said = said.pop().unwrap();
        assert!(
            s.take_bot_issue_comments(issue).is_empty(),
            "three requests opened"
        );
        assert!(
            said.starts_with("⛔ @alice already has 3 open request(s)"),
            "{said}"
        );
    }
);

// 8. Free text never adds a resource to a grant file.

on_both_forges!(
    a_reason_cannot_add_a_terraform_resource_to_a_grant_file,
    |s: Scenario| async move {
        let issue = s.open_issue(&s.people.alice, "dns");
        s.note_on_issue(issue,
            &s.people.alice,
            "/breakglass network 30m dns-admin -- x\" } resource \"aws_iam_user\" \"evil\" { name = \"m\" } # ${file(\"/etc/passwd\")} %{ if true }",
        );
        s.settle().await;
        let pr = s.changes().last().unwrap().clone();
        s.expect_bot_issue_comments(issue, &["📝 @alice, your request is "]);
        s.expect_bot_comments(
            pr.number,
            &["✅ **Request `20261126-0214-alice-network` is allowed**"],
        );
        let file = s
            .forge
            .files_on(REPO, &pr.head_ref)
            .into_iter()
            .find(|p| p.starts_with("grants/"))
            .unwrap();
        let text = s.forge.file_on(REPO, &pr.head_ref, &file).unwrap();
        let body: hcl::Body = hcl::from_str(&text).expect("the grant file is valid HCL");
        let resources = body
            .blocks()
            .filter(|b| b.identifier() == "resource")
            .count();
        let template = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/templates/iac/aws-role-policy.tf.j2"
        ))
        .unwrap();
        assert_eq!(
            resources,
            template.matches("resource \"").count(),
            "exactly the template's resources:\n{text}"
        );
        assert!(
            !text.contains("resource \"aws_iam_user\" \"evil\" {"),
            "{text}"
        );
    }
);

// 9. Revocation uses what was applied, never the current policy.

on_both_forges!(
    a_broken_policy_on_main_does_not_skip_the_provider_revoke,
    |s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        s.forge.push_direct(
            REPO,
            &s.people.carol,
            &[("policies/prod.yaml", "environment: prod\nroles: [\n")],
            "oops",
        );
        s.advance(TimeDelta::hours(1));
        s.settle().await;
        assert_eq!(s.request("r1").await.state.to_string(), "revoked");
        let revoke = s.events("r1", "revoke").await;
        assert_eq!(revoke.len(), 1);
        s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
        assert_eq!(revoke[0].data["provider"], "noop", "{:?}", revoke[0].data);
    }
);

on_both_forges!(
    a_role_deleted_from_the_policy_is_still_revoked_through_its_provider,
    |s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        s.edit_policy(&s.people.carol, "prod", |p| {
            p.replace(
                "  admin:\n    provider: noop\n    description: Full administrator access to the production account\n",
                "",
            )
        });
        s.settle().await;
        assert_eq!(s.request("r1").await.state.to_string(), "revoked");
        let revoke = s.events("r1", "revoke").await;
        assert_eq!(revoke[0].data["provider"], "noop", "{:?}", revoke[0].data);
        s.expect_bot_comments(
            pr,
            &["🔒 **Access revoked** at 2026-11-26T02:14:00Z: @alice no longer has `prod/admin` (reconciliation found it should not be active)."],
        );
    }
);

// 10. Smaller holes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_ignores_its_own_comments_by_user_id_even_as_a_plain_user() {
    let setup = Setup {
        bot_is_user: true,
        ..Setup::default()
    };
    let s = Scenario::start_with(Backend::Sqlite, setup).await.unwrap();
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
    s.forge.advance_clock(TimeDelta::seconds(1));
    s.note(pr, &s.people.bot, "/breakglass approve\n/breakglass help");
    s.settle().await;
    // Only its own comment: no reply to it.
    s.expect_bot_comments(pr, &["/breakglass approve\n/breakglass help"]);
    s.expect_no_bot_comment(pr);
    assert!(!s.change(pr).merged);
    // And the lifecycle works with such an account.
    s.by(&s.people.carol).approve(pr);
    s.settle().await;
    assert!(s.change(pr).merged);
    s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
}

// A merged request is a grant: a PR that edits its file on the default branch, to ask for more
// than was granted, is refused in its verdict and never merged; the grant keeps its expiry.
on_both_forges!(
    a_pr_editing_a_granted_request_is_refused_and_never_merged,
    |s: Scenario| async move {
        let first = bob_sev1_pr(&s, "requests/prod/r1.yaml", false, |_| {});
        s.settle().await;
        s.advance(TimeDelta::minutes(2));
        s.settle().await;
        assert!(s.change(first).merged);
        s.skip_bot_comments(first);
        let expires = s.request("r1").await.expires_at;
        s.forge.push_files(
            REPO,
            "longer",
            &s.people.bob,
            &[("requests/prod/r1.yaml", &prod_request("45m"))],
            "more time",
        );
        let pr = s.open_labelled_change(&s.people.bob, "longer", "r1 for longer", "sev1");
        s.settle().await;
        s.advance(TimeDelta::minutes(2));
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(
            said.contains("Request id `r1` is already used by another request"),
            "{said}"
        );
        s.expect_no_bot_comment(pr); // said once
        assert!(!s.change(pr).merged);
        assert_eq!(merge_calls(&s), 1, "only the first request's merge");
        assert_eq!(s.request("r1").await.expires_at, expires);
    }
);

on_both_forges!(
    a_request_nobody_approves_expires_and_is_closed,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.advance(TimeDelta::hours(23));
        s.settle().await;
        assert_eq!(s.change(pr).state, "open");
        s.advance(TimeDelta::hours(1));
        s.settle().await;
        assert_eq!(s.change(pr).state, "closed");
        assert_eq!(s.request("r1").await.state.to_string(), "closed");
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        let said = s.next_bot_comment(pr);
        assert!(
            said.starts_with("⌛ Nobody approved this request within 24h"),
            "{said}"
        );
        let jobs = s
            .store
            .jobs_for_request(&"r1".to_owned().try_into().unwrap())
            .await
            .unwrap();
        assert!(jobs.is_empty(), "polling stopped: {jobs:?}");
    }
);

on_both_forges!(
    a_pr_retargeted_after_its_approval_is_not_merged,
    |s: Scenario| async move {
        add_release_branch(&s);
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.emoji_now(pr, &s.people.carol, "+1");
        // alice points the approved PR at another branch; the bot hears of it only at merge time.
        s.forge.set_webhooks_paused(true);
        s.forge.retarget_pr(REPO, pr, &s.people.alice, "release");
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        assert!(!s.change(pr).merged);
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        let said = s.next_bot_comment(pr);
        assert!(
            said.starts_with(
                "⚠️ Not merged: the pull request targets `release`, not the default branch"
            ),
            "{said}"
        );
        s.forge.set_webhooks_paused(false);
        s.forge.flush_webhooks();
        s.settle().await;
        assert!(!s.change(pr).merged);
    }
);

// A PR merged by hand into another branch at the head the bot checked looks, to a bot that
// lost its merge's answer, like its own merge: it is one only into the default branch.
on_both_forges!(
    a_request_merged_by_hand_into_another_branch_is_never_granted,
    |s: Scenario| async move {
        add_release_branch(&s);
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        s.forge.set_webhooks_paused(true);
        s.forge.retarget_pr(REPO, pr, &s.people.mallory, "release");
        s.forge.merge_pr(REPO, pr, &s.people.mallory);
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.emoji_now(pr, &s.people.carol, "+1");
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        // GitHub's approval comes by a poll; GitLab's by its webhook, with the others.
        s.forge.set_webhooks_paused(false);
        s.forge.flush_webhooks();
        s.settle().await;
        // On GitHub the poll's approval meets the guard first ("Not merged: …"); on both, the
        // merge's webhook closes the request and says why.
        let said = s.take_bot_comments(pr);
        let told = "⚠️ This pull request was merged into `release`, not into the default branch: breakglass grants only what it merged there, so the request is closed and **nothing was granted**.";
        assert!(said.last().unwrap().starts_with(told), "{said:?}");
        assert!(
            said[..said.len() - 1].iter().all(|c| c.starts_with(
                "⚠️ Not merged: the pull request targets `release`, not the default branch"
            )),
            "{said:?}"
        );
        let record = s.request("r1").await;
        assert_eq!(record.state.to_string(), "closed", "{record:?}");
        assert!(s.events("r1", "grant").await.is_empty(), "never granted");
        assert!(
            s.forge
                .file_on(REPO, "main", "requests/prod/r1.yaml")
                .is_none()
        );
    }
);

/// alice's 1h grant `r1`, whose revert PR mallory retargets to `release` right before the
/// bot's merge call at the expiry; revoked then. Its request and revert PRs.
async fn revert_retargeted_at_its_merge(s: &Scenario) -> (u64, u64) {
    add_release_branch(s);
    let pr = s.granted("r1", "1h").await;
    let revert = s.revert_pr("r1").await;
    // A push by someone else makes the next pass list the branch, five minutes in: at the
    // expiry no listing is due, which would remove the file first (also safe, said otherwise).
    let readme = [("README.md", "# access requests, by hand\n")];
    let docs = s.forge.push_direct(REPO, &s.people.erin, &readme, "docs");
    // Heard before the pass is due, or the pass may run first and list nothing.
    s.heard_push_of(&docs).await;
    s.advance(TimeDelta::minutes(5));
    s.settle().await;
    let at = s.internal(revert);
    s.forge
        .retarget_before(merge_call(), REPO, at, &s.people.mallory, "release");
    s.advance(TimeDelta::minutes(55));
    s.settle().await;
    assert_eq!(s.request("r1").await.state.to_string(), "revoked");
    (pr, revert)
}

// GitLab: the revert retargeted between the guard's read and its merge, whose answer names
// `release`. The revert job builds it again, and the merge's webhook asks for a removal too:
// one after the other, so exactly one revoke lands on the default branch and the audit finds
// no commit whose trailers claim a removal it does not make (the two raced before: a second,
// empty revoke merge, read as forged trailers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_gitlab_a_revert_retargeted_between_the_guards_read_and_its_merge_is_revoked_once() {
    let s = Scenario::on_gitlab().await;
    s.lenient(); // the notes of the replacement are the GitHub test's business
    revert_retargeted_at_its_merge(&s).await;
    assert!(
        s.forge
            .file_on(REPO, "main", "requests/prod/r1.yaml")
            .is_none()
    );
    let revokes: Vec<String> = s
        .forge
        .log(REPO, "main")
        .into_iter()
        .filter(|c| c.message.contains("Breakglass-Revokes: r1"))
        .map(|c| c.message)
        .collect();
    assert_eq!(revokes.len(), 1, "{revokes:#?}");
    let path = s.forge.repo_path(REPO);
    let now = s.clock.now();
    let report = tokio::task::spawn_blocking(move || {
        let options = breakglass::audit::AuditOptions {
            branch: None,
            policies: None,
            report: breakglass::audit::ReportOptions::new(now),
        };
        breakglass::audit::run(path.to_str().unwrap(), &options).unwrap()
    })
    .await
    .unwrap();
    assert!(report.anomalies.is_empty(), "{:#?}", report.anomalies);
}

// A member who may not revoke (mallory: `/breakglass revoke` is refused to her) merges the
// grant's revert PR by hand into a branch of her own: that ends nothing early. Said on the
// request's PR; the grant runs to its expiry, when the revocation removes the file from the
// default branch by a fresh change.
on_both_forges!(
    a_revert_merged_by_hand_into_another_branch_ends_nothing_before_the_expiry,
    |s: Scenario| async move {
        let scratch = [("NOTES.md", "mine\n")];
        s.forge.push_files(
            REPO,
            "mallory-scratch",
            &s.people.mallory,
            &scratch,
            "scratch",
        );
        let pr = s.granted("r1", "2h").await;
        let revert = s.revert_pr("r1").await;
        s.forge.retarget_pr(
            REPO,
            s.internal(revert),
            &s.people.mallory,
            "mallory-scratch",
        );
        s.settle().await;
        match s.dialect {
            Dialect::GitHub => s.forge.merge_pr(REPO, revert, &s.people.mallory),
            Dialect::GitLab => s.forge.gl_merge_mr(REPO, revert, &s.people.mallory),
        };
        s.settle().await;
        s.expect_bot_comments(
            pr,
            &[&format!(
                "⚠️ @mallory merged this grant's revert {} into `mallory-scratch`, not into the default branch: that ends nothing.",
                s.pr()
            )],
        );
        // The state, and whether the request file is on the default branch, `minutes` later.
        let s = &s;
        let after = |minutes| async move {
            s.advance(TimeDelta::minutes(minutes));
            s.settle().await;
            let on_main = s.forge.file_on(REPO, "main", "requests/prod/r1.yaml");
            (s.request("r1").await.state.to_string(), on_main.is_some())
        };
        assert_eq!(after(30).await, ("active".into(), true), "still granted");
        assert_eq!(
            after(91).await,
            ("revoked".into(), false),
            "removed at the expiry by a fresh change"
        );
        s.lenient(); // the replacement's own notes are other tests' business
    }
);

// No forge guards a merge by its base: a member can retarget the PR between the guard's read
// and the merge call. GitLab's merge answer names the branch the merge went into.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_gitlab_a_request_retargeted_between_the_guards_read_and_its_merge_is_not_granted() {
    let s = Scenario::on_gitlab().await;
    add_release_branch(&s);
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
    s.forge
        .retarget_before(merge_call(), REPO, pr, &s.people.mallory, "release");
    s.forge.advance_clock(TimeDelta::seconds(1));
    s.emoji_now(pr, &s.people.carol, "+1");
    s.settle().await;
    assert!(s.change(pr).merged, "the forge merged it, into `release`");
    let said = s.take_bot_comments(pr);
    assert!(
        said[0].starts_with("⚠️ Not merged: the pull request was retargeted to `release` after it was checked, and the merge went there, not into the default branch"),
        "{said:?}"
    );
    assert!(
        said[0].contains(
            "The request is closed and **nothing was granted**; to ask again, open a new request."
        ) && !said[0].contains("will not try again"),
        "a closed request promises no retry: {said:?}"
    );
    // The merge's own webhook comes after: the bot's merge, not a person's, and said once.
    s.forge.flush_webhooks();
    s.settle().await;
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(s.take_bot_comments(pr).is_empty());
    let record = s.request("r1").await;
    assert_eq!(record.state.to_string(), "closed", "{record:?}");
    assert!(s.events("r1", "grant").await.is_empty(), "never granted");
    let closed = s.events("r1", "close").await;
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].data["merged_by_hand"], false, "{closed:?}");
    assert_eq!(closed[0].data["merged_into"], "release", "{closed:?}");
    let metrics = metrics(&s).await;
    assert!(metrics.contains("breakglass_anomalies_total{kind=\"merged_elsewhere\"} 1"));
    assert!(!metrics.contains("merged_without_bot"), "{metrics}");
}

// GitHub's merge answer does not say where the merge went; the PR's `closed` webhook does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_github_a_request_retargeted_between_the_guards_read_and_its_merge_is_revoked_at_once() {
    let s = Scenario::start(Backend::Sqlite).await.unwrap();
    add_release_branch(&s);
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
    s.forge
        .retarget_before(merge_call(), REPO, pr, &s.people.mallory, "release");
    s.approve(pr, &s.people.carol);
    s.settle().await;
    assert!(s.change(pr).merged, "the forge merged it, into `release`");
    // The grant step (a job the merge schedules) and the PR's `closed` webhook race: the grant
    // is applied and announced before the webhook is handled, or, handled first, the webhook
    // leaves the request revoking and the grant step gives nothing.
    let said = s.take_bot_comments(pr);
    let granted = said[0].starts_with("🔓 **Access granted.**");
    let after = if granted { &said[1..] } else { &said[..] };
    let expected = [
        "🚨 **Merged into the wrong branch**: this pull request was retargeted to `release`",
        "🔒 **Access revoked**",
    ];
    assert_eq!(after.len(), expected.len(), "{said:#?}");
    for (comment, prefix) in after.iter().zip(expected) {
        assert!(comment.starts_with(prefix), "{said:#?}");
    }
    // Either way, the warning claims no grant that may never have been applied.
    assert!(
        after[0].contains("Any access granted for it is being **revoked now**"),
        "{said:#?}"
    );
    let grants = s.events("r1", "grant").await;
    assert_eq!(grants.len(), usize::from(granted), "{grants:?}");
    let record = s.request("r1").await;
    assert_eq!(record.state.to_string(), "revoked", "{record:?}");
    assert_eq!(
        record.revoke_reason.map(|r| r.to_string()).as_deref(),
        Some("reconcile")
    );
    assert!(
        metrics(&s)
            .await
            .contains("breakglass_anomalies_total{kind=\"merged_elsewhere\"} 1")
    );
}

// The merge guard reads the PR right before the merge even when the bot opened it a moment
// before: the answer to opening it is not enough. A retarget or a label removed in between
// must be seen, and its webhook may wait behind the very comment that opened the PR (one
// delivery worker), or reach another replica. (A review found both when the bot once merged on
// the opening's answer to save the read; see docs/benchmarks.md.)

/// The forge's own number of issue `issue`.
fn issue_internal(s: &Scenario, issue: u64) -> u64 {
    match s.dialect {
        Dialect::GitHub => issue,
        Dialect::GitLab => s.forge.gl_number(REPO, Noteable::Issue(issue)),
    }
}

/// The bot's request PR, as soon as the forge holds it (polled from the test while the bot's
/// call that opened or labelled it is still waiting for its answer).
async fn wait_for_bots_pr(s: &Scenario) -> u64 {
    for _ in 0..400 {
        if let Some(pr) = s
            .changes()
            .into_iter()
            .filter(|p| p.user == s.people.bot.login && p.title.starts_with("breakglass: "))
            .map(|p| p.number)
            .max()
        {
            return pr;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the bot opened no PR");
}

/// The route of opening a change request, in either dialect.
fn opening_call() -> RouteMatcher {
    RouteMatcher::Predicate(std::sync::Arc::new(|method, path: &str| {
        method == Method::POST && (path.ends_with("/pulls") || path.ends_with("/merge_requests"))
    }))
}

// A member retargets the bot's request PR to another branch right after the forge opened it
// (while the answer to the opening is on its way back). The merge would bring the default
// branch's unchecked commits into that branch: never merged there.
on_both_forges!(
    a_retarget_right_after_the_bots_opening_is_never_merged_into_that_branch,
    |s: Scenario| async move {
        s.lenient();
        add_release_branch(&s);
        // A commit on the default branch that `release` does not have (yet).
        s.forge.push_files(
            REPO,
            "main",
            &s.people.carol,
            &[("deploy/only-on-main.txt", "not for release yet\n")],
            "main only",
        );
        s.settle().await;
        let issue = s.open_issue(&s.people.alice, "staging is broken");
        s.forge.fail_next(FailureSpec {
            route: opening_call(),
            count: 1,
            kind: FailureKind::AnswerLate(Duration::from_millis(1500)),
        });
        s.note_on_issue(
            issue,
            &s.people.alice,
            "/breakglass staging 1h -- debugging",
        );
        let pr = wait_for_bots_pr(&s).await;
        // mallory, a member, points it at `release` (the forge sends `edited` at once).
        s.forge
            .retarget_pr(REPO, s.internal(pr), &s.people.mallory, "release");
        s.settle().await;
        let now = s.change(pr);
        let carried = s
            .forge
            .file_on(REPO, "release", "deploy/only-on-main.txt")
            .is_some();
        assert!(
            !(now.merged && now.base_ref == "release"),
            "the bot merged its request into `{}` (and with it the default branch's unchecked commits: {carried}): {:#?}",
            now.base_ref,
            s.bot_comments(pr)
        );
    }
);

// The same, deterministic on GitHub with a fast path: GitHub takes labels in a second call
// after the PR is opened, and the retarget is served before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_github_a_retarget_before_the_label_call_is_never_merged_into_that_branch() {
    let s = Scenario::start(Backend::Sqlite).await.unwrap();
    s.lenient();
    add_release_branch(&s);
    let issue = s.open_issue(&s.people.carol, "payments down");
    s.forge.label(REPO, issue, &s.people.carol, "sev1");
    let pr = issue + 1; // GitHub numbers issues and PRs in one sequence
    let label_call = RouteMatcher::Predicate(std::sync::Arc::new(move |method, path: &str| {
        method == Method::POST && path.ends_with(&format!("/issues/{pr}/labels"))
    }));
    s.forge
        .retarget_before(label_call, REPO, pr, &s.people.mallory, "release");
    s.note_on_issue(
        issue,
        &s.people.bob,
        "/breakglass prod 1h admin -- incident: INC-9 checkout down",
    );
    s.settle().await;
    let now = s.change(pr);
    assert_eq!(now.user, s.people.bot.login, "the bot's PR");
    assert!(
        !(now.merged && now.base_ref == "release"),
        "the bot merged its request into `{}`: {:#?}",
        now.base_ref,
        s.bot_comments(pr)
    );
}

// A fast path decided on a label that a lead removed between the opening and the merge (its
// webhook late) is decided again at the merge, not granted on the label that is gone.
on_both_forges!(
    a_fast_path_label_removed_before_the_merge_is_not_granted,
    |s: Scenario| async move {
        s.lenient();
        let issue = s.open_issue(&s.people.carol, "payments down");
        s.forge
            .label(REPO, issue_internal(&s, issue), &s.people.carol, "sev1");
        // GitHub: the labels call (after the opening); GitLab: the opening itself (with labels).
        let labelled = RouteMatcher::Predicate(std::sync::Arc::new(|method, path: &str| {
            method == Method::POST
                && ((path.contains("/issues/") && path.ends_with("/labels"))
                    || path.ends_with("/merge_requests"))
        }));
        s.forge.fail_next(FailureSpec {
            route: labelled,
            count: 1,
            kind: FailureKind::AnswerLate(Duration::from_millis(1500)),
        });
        s.note_on_issue(
            issue,
            &s.people.bob,
            "/breakglass prod 1h admin -- incident: INC-9 checkout down",
        );
        let pr = wait_for_bots_pr(&s).await;
        for _ in 0..200 {
            if s.labels(pr).iter().any(|l| l == "sev1") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // carol, a lead, sees it is no sev1 and takes the label off at once. Its `unlabeled`
        // webhook is on its way (webhooks take their time; paused here so that the race with
        // the delivery worker does not decide the outcome).
        s.forge.set_webhooks_paused(true);
        s.unlabel(pr, &s.people.carol, "sev1");
        s.settle().await;
        s.forge.set_webhooks_paused(false);
        s.forge.flush_webhooks();
        s.settle().await;
        let now = s.change(pr);
        assert!(
            !now.merged,
            "granted on the fast path although `sev1` was removed before the merge (labels now {:?}): {:#?}",
            s.labels(pr),
            s.bot_comments(pr)
        );
    }
);

// The bot's removal of files pushed straight to the default branch, retargeted right before
// its merge, is made good the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_github_a_removal_retargeted_between_the_guards_read_and_its_merge_is_made_good() {
    let s = Scenario::start(Backend::Sqlite).await.unwrap();
    // The start-up reconciliation pass done first: a pass listing the branch between the two
    // removals would remove the file itself (as safe, but said as a plain removal).
    s.settle().await;
    add_release_branch(&s);
    s.forge
        .retarget_before(merge_call(), REPO, 1, &s.people.mallory, "release");
    s.mallory_pushes_a_request_to_main();
    s.settle().await;
    let first = s.change(1);
    assert!(first.merged && first.base_ref == "release", "{first:?}");
    assert!(
        s.forge
            .file_on(REPO, "main", "requests/prod/sneaky.yaml")
            .is_none(),
        "removed from the default branch by a fresh change"
    );
    s.expect_bot_comments(
        1,
        &["🚨 **Request files reached the default branch without breakglass**"],
    );
    let again = s.changes().last().unwrap().number;
    assert!(again > 1 && s.change(again).merged);
    s.expect_bot_comments(
        again,
        &["🚨 **The removal was merged into `release`, not into the default branch**"],
    );
}

// With two replicas, the merge's `closed` webhook may be handled by the other one while the
// merge step (its answer slow) has not yet recorded the grant: handled again, it still ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_github_a_retargeted_merge_told_to_another_replica_mid_step_is_still_revoked() {
    let mut s = Scenario::start(Backend::Sqlite).await.unwrap();
    s.add_replica().await;
    add_release_branch(&s);
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
    s.forge
        .retarget_before(merge_call(), REPO, pr, &s.people.mallory, "release");
    s.forge.fail_next(FailureSpec {
        route: merge_call(),
        count: 1,
        kind: FailureKind::AnswerLate(std::time::Duration::from_millis(500)),
    });
    // The replica that takes the webhook before the step recorded the grant fails it once.
    s.allow_delivery_error("while its merge step runs");
    s.approve(pr, &s.people.carol);
    // Until the merge step is over, no delivery waits but one that failed, to be retried
    // (the clock stands still, so its retry waits for the advance below), and no job is due
    // or running: a job running while the clock jumps a minute past its 2 s lease would be
    // taken over by the other replica midway, which the real clock never does.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let waiting = "SELECT COUNT(*), COUNT(last_error) FROM deliveries WHERE state <> 'done'";
    let busy = "SELECT COUNT(*) FROM jobs WHERE locked_by IS NOT NULL OR run_at <= $1";
    while std::time::Instant::now() < deadline {
        let record = s.request("r1").await;
        let step_over = !(record.state.to_string() == "approved" && record.granted_at.is_some());
        let (pending, failed): (i64, i64) = sqlx::query_as(waiting)
            .fetch_one(s.store.pool())
            .await
            .unwrap();
        let (jobs,): (i64,) = sqlx::query_as(busy)
            .bind(s.clock.now().timestamp_millis())
            .fetch_one(s.store.pool())
            .await
            .unwrap();
        if step_over && pending == failed && jobs == 0 && s.change(pr).merged {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    s.advance(TimeDelta::minutes(1));
    s.settle().await;
    // Safe either way, by which replica saw what first: granted and revoked at once, or
    // refused at the merge step's retry and closed, never granted.
    let record = s.request("r1").await;
    let said = s.take_bot_comments(pr);
    match record.state.to_string().as_str() {
        "revoked" => {
            assert_eq!(s.events("r1", "revoke").await.len(), 1);
            assert!(
                said.iter()
                    .any(|c| c.starts_with("🚨 **Merged into the wrong branch**")),
                "{said:?}"
            );
            assert!(
                said.last().unwrap().starts_with("🔒 **Access revoked**"),
                "{said:?}"
            );
        }
        "closed" => {
            assert!(s.events("r1", "grant").await.is_empty(), "never granted");
            assert!(
                said.last()
                    .unwrap()
                    .starts_with("⚠️ This pull request was merged into `release`"),
                "{said:?}"
            );
        }
        other => panic!("{other}: {record:?} {said:?}"),
    }
}

// A revert PR retargeted right before its merge lands elsewhere; GitHub's answer does not say
// where, its `closed` webhook does. The access is revoked already (the provider first); the
// request file left on the default branch is removed by a fresh change of the bot's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_github_a_revert_retargeted_between_the_guards_read_and_its_merge_is_made_good() {
    let s = Scenario::start(Backend::Sqlite).await.unwrap();
    let (pr, revert) = revert_retargeted_at_its_merge(&s).await;
    let landed = s.change(revert);
    assert!(landed.merged && landed.base_ref == "release", "{landed:?}");
    assert!(
        s.forge
            .file_on(REPO, "release", "requests/prod/r1.yaml")
            .is_none(),
        "the revert went to `release`"
    );
    assert!(
        metrics(&s)
            .await
            .contains("breakglass_anomalies_total{kind=\"merged_elsewhere\"} 1")
    );
    s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
    assert!(
        s.forge
            .file_on(REPO, "main", "requests/prod/r1.yaml")
            .is_none(),
        "removed from the default branch by a fresh change"
    );
    let removal = s.changes().last().unwrap().number;
    assert!(removal > revert && s.change(removal).merged);
    s.expect_bot_comments(
        removal,
        &["🚨 **The revert was merged into `release`, not into the default branch**"],
    );
    assert_eq!(s.events("r1", "remove").await.len(), 1);
}

on_both_forges!(
    a_request_stuck_revoking_is_revoked_by_reconciliation,
    |mut s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        // As after a crash that lost the revoke job half-way: the row says revoking, no job.
        s.crash().await;
        let mut record = s.request("r1").await;
        record.state = breakglass::store::RequestState::Revoking;
        record.revoke_reason = Some(breakglass::store::RevokeReason::Early);
        let at = record.updated_at;
        s.store.update_request(&mut record, at).await.unwrap();
        s.store
            .cancel_job(breakglass::store::JobKind::Revoke, &record.id)
            .await
            .unwrap();
        s.start_service().await;
        s.settle().await;
        s.expect_revoked_and_removed("r1").await;
        s.expect_bot_comments(
            pr,
            &["🔒 **Access revoked** at 2026-11-26T02:14:00Z: @alice no longer has `prod/admin` (it was revoked early)."],
        );
    }
);

on_both_forges!(
    a_request_that_becomes_an_iac_request_moves_to_the_bots_branch_with_its_record,
    |s: Scenario| async move {
        let pr = s.open_request(
            &s.people.alice,
            "network",
            "r1",
            "environment: network\nrole: nope\nduration: 1h\nreason: dns\n",
        );
        s.settle().await;
        assert_eq!(s.request("r1").await.state.to_string(), "denied");
        // alice fixes the role: now the request needs a grant file only the bot may write.
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.forge.push_files(
            REPO,
            "request-r1",
            &s.people.alice,
            &[(
                "requests/network/r1.yaml",
                "environment: network\nrole: dns-admin\nduration: 1h\nreason: dns\n",
            )],
            "fix role",
        );
        s.settle().await;
        let moved = s.request("r1").await;
        assert_ne!(moved.pr_number, pr, "the record follows the request");
        assert_eq!(s.change(pr).state, "closed");
        assert!(
            s.change(moved.pr_number)
                .head_ref
                .starts_with("breakglass/request/r1-")
        );
        s.by(&s.people.carol).approve(moved.pr_number);
        s.settle().await;
        assert!(s.change(moved.pr_number).merged);
        s.expect_bot_comments(
            pr,
            &[
                "❌ **Request `r1` is denied** by the `network` policy.",
                "🔁 This request needs a grant file rendered by breakglass",
            ],
        );
        s.expect_bot_comments(
            moved.pr_number,
            &["✅ **Request `r1` is allowed**", "🔓 **Access granted.**"],
        );
    }
);

// A role nobody can serve is denied before the merge, never merged and then stuck.

fn aws_admin_without_aws_config(s: &Scenario) {
    s.edit_policy(&s.people.carol, "prod", |p| {
        p.replace(
            "  admin:\n    provider: noop\n",
            "  admin:\n    provider: aws-iam\n    account: \"123456789012\"\n    principal: \"arn:aws:iam::123456789012:role/breakglass-{{ requester }}\"\n    policy_arn: arn:aws:iam::aws:policy/AdministratorAccess\n",
        )
    });
}

on_both_forges!(
    a_role_whose_provider_is_not_configured_is_denied_before_the_merge,
    |s: Scenario| async move {
        aws_admin_without_aws_config(&s);
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(
            said.starts_with("⛔ **`prod/admin` cannot be granted**"),
            "{said}"
        );
        assert!(said.contains("aws"), "{said}");
        let head = s.change(pr).head_sha;
        assert_eq!(
            s.policy_status(&head),
            Some((
                "failure".into(),
                "denied: the role cannot be granted".into()
            ))
        );
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(!s.change(pr).merged);
        assert_eq!(merge_calls(&s), 0);
        s.expect_bot_comments(pr, &[&format!("ℹ️ `/breakglass approve` does not apply: request `r1` is denied as its role cannot be granted, so no approval merges it and nothing is granted. Push a fixed request file to this {pr} and it is decided again.", pr = s.pr())]);

        let issue = s.open_issue(&s.people.alice, "db");
        s.note_on_issue(
            issue,
            &s.people.alice,
            "/breakglass prod 1h admin -- incident: INC-2 db",
        );
        s.settle().await;
        let said = s.next_bot_issue_comment(issue);
        assert!(
            said.starts_with("⛔ **`prod/admin` cannot be granted**"),
            "{said}"
        );
        assert_eq!(s.changes().len(), 1, "nothing opened for the comment");
    }
);

// 11. What the bot checks is the head it merges.

/// Whether `path` is one of the listings of what a change request changes, on either forge:
/// a PR's files, an MR's diffs, or a comparison of two commits.
/// Whether `path` is a GitHub comparison of a commit with itself (`/compare/X...X`): the probe
/// that tells a head the forge cannot compare from a forge without comparisons.
fn compares_a_commit_with_itself(path: &str) -> bool {
    path.split_once("/compare/")
        .and_then(|(_, basehead)| basehead.split_once("..."))
        .is_some_and(|(base, head)| base == head)
}

/// The branch of bob's own request in the stories below.
const BOBS_BRANCH: &str = "sev1-request";

/// bob pushes his request to `branch`, then a loosened prod policy on top; returns the
/// request-only commit.
fn request_then_a_policy(s: &Scenario, branch: &str) -> String {
    let only_request = s.forge.push_files(
        REPO,
        branch,
        &s.people.bob,
        &[("requests/prod/r1.yaml", &prod_request("1h"))],
        "request",
    );
    s.forge.push_files(
        REPO,
        branch,
        &s.people.bob,
        &[("policies/prod.yaml", &loosened_prod_policy(s))],
        "and a policy",
    );
    only_request
}

/// From now on, whenever the bot lists what a PR changes, `branch` is at `sha`: bob
/// force-pushes it just before each listing and back right after, and the webhooks of those
/// pushes come late.
fn push_away_and_back_around_each_listing(s: &Scenario, branch: &str, sha: String) {
    s.forge.detour_branch(BranchDetour {
        route: RouteMatcher::Predicate(std::sync::Arc::new(|_, path: &str| {
            is_a_listing_of_changes(path)
        })),
        count: u32::MAX,
        repo: REPO.to_owned(),
        branch: branch.to_owned(),
        sha,
    });
}

fn is_a_listing_of_changes(path: &str) -> bool {
    let pr_files = path.contains("/pulls/") && path.ends_with("/files");
    let mr_diffs = path.contains("/merge_requests/") && path.ends_with("/diffs");
    pr_files || mr_diffs || path.contains("/compare")
}

on_both_forges!(
    a_head_pushed_away_and_back_around_each_listing_does_not_sneak_a_policy_past_the_fast_path,
    |s: Scenario| async move {
        // bob (on call, who can push branches) prepares two heads of one branch: B holds only
        // his request, A adds a loosened policy on top. The PR shows A, but whenever the bot
        // lists what the PR changes, the branch is at B: he force-pushes B just before each
        // listing and A right after it, and the webhooks of those pushes come late.
        let only_request = request_then_a_policy(&s, BOBS_BRANCH);
        let policy = s.forge.file_on(REPO, "main", "policies/prod.yaml").unwrap();
        // Heard by the bot only once all is set: every listing it makes is detoured.
        let pr = s.before_the_bot_hears(|| {
            let pr = s.open_change(&s.people.bob, BOBS_BRANCH, "r1");
            push_away_and_back_around_each_listing(&s, BOBS_BRANCH, only_request);
            s.label(pr, &s.people.bob, "sev1");
            pr
        });
        s.settle().await;
        s.advance(TimeDelta::minutes(2));
        s.settle().await;

        assert!(!s.change(pr).merged, "the policy change is never merged");
        assert_eq!(merge_calls(&s), 0);
        assert_eq!(
            s.forge.file_on(REPO, "main", "policies/prod.yaml").unwrap(),
            policy
        );
        let said = s.next_bot_comment(pr);
        assert!(said.contains("`policies/prod.yaml`"), "{said}");
        let head = s.change(pr).head_sha;
        assert_eq!(
            s.policy_status(&head),
            Some((
                "failure".into(),
                "denied: the PR changes files beyond its request".into()
            ))
        );
    }
);

on_both_forges!(
    a_request_pr_with_more_files_than_the_forge_lists_is_refused_and_never_merged,
    |s: Scenario| async move {
        // One more than the forge lists in a comparison (GitHub 300, GitLab 1,000); named to
        // sort after the request file, so that the request is among those listed.
        let hidden = match s.dialect {
            Dialect::GitHub => 300,
            Dialect::GitLab => 1_000,
        };
        let extra: Vec<(String, String)> = (0..hidden)
            .map(|i| (format!("zz/filler-{i:04}.txt"), format!("{i}\n")))
            .collect();
        let mut files: Vec<(&str, &str)> = extra
            .iter()
            .map(|(path, text)| (path.as_str(), text.as_str()))
            .collect();
        let request = prod_request("1h");
        files.push(("requests/prod/r1.yaml", &request));
        let branch = "sev1-request";
        s.forge
            .push_files(REPO, branch, &s.people.bob, &files, "request");
        let pr = s.open_labelled_change(&s.people.bob, branch, "r1", "sev1");
        s.settle().await;
        s.advance(TimeDelta::minutes(2));
        s.settle().await;

        assert!(!s.change(pr).merged);
        assert_eq!(merge_calls(&s), 0);
        let said = s.next_bot_comment(pr);
        assert!(said.starts_with("⛔ **Too many files to check**"), "{said}");
        s.expect_no_bot_comment(pr); // said once
        let head = s.change(pr).head_sha;
        assert_eq!(
            s.policy_status(&head),
            Some(("failure".into(), "too many files to check".into()))
        );
    }
);

on_both_forges!(
    a_forge_without_commit_comparisons_still_has_request_prs_checked_from_their_files,
    |s: Scenario| async move {
        // A compatible server that does not implement the comparison API answers 404.
        s.forge.fail_next(FailureSpec {
            route: RouteMatcher::Predicate(std::sync::Arc::new(|_, path: &str| {
                path.contains("/compare")
            })),
            count: u32::MAX,
            kind: FailureKind::Status(404),
        });
        let honest = bob_sev1_pr(&s, "requests/prod/r1.yaml", false, |_| {});
        s.settle().await;
        assert!(s.change(honest).merged, "a bare request still goes through");
        s.expect_bot_comments(honest, &["🔓 **Access granted.**"]);

        let branch = "sev1-with-policy";
        s.forge.push_files(
            REPO,
            branch,
            &s.people.erin,
            &[
                ("requests/prod/r2.yaml", &prod_request("1h")),
                ("policies/prod.yaml", &loosened_prod_policy(&s)),
            ],
            "request and a policy",
        );
        let pr = s.open_labelled_change(&s.people.erin, branch, "r2", "sev1");
        s.settle().await;
        assert!(!s.change(pr).merged);
        let said = s.next_bot_comment(pr);
        assert!(said.contains("`policies/prod.yaml`"), "{said}");
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_the_forge_cannot_compare_with_the_default_branch_is_refused_never_guessed() {
    let s = Scenario::start(Backend::Sqlite).await.unwrap();
    // GitHub answers 404 to a comparison of histories with no common commit, while it still
    // compares the default branch's head with itself: the API is there, this head is not
    // comparable.
    s.forge.fail_next(FailureSpec {
        route: RouteMatcher::Predicate(std::sync::Arc::new(|_, path: &str| {
            path.contains("/compare/") && !compares_a_commit_with_itself(path)
        })),
        count: u32::MAX,
        kind: FailureKind::Status(404),
    });
    let pr = bob_sev1_pr(&s, "requests/prod/r1.yaml", false, |_| {});
    s.settle().await;
    assert!(!s.change(pr).merged);
    assert_eq!(merge_calls(&s), 0);
    let said = s.next_bot_comment(pr);
    assert!(said.starts_with("⛔ **Cannot check this PR**"), "{said}");
    let head = s.change(pr).head_sha;
    assert_eq!(
        s.policy_status(&head),
        Some((
            "failure".into(),
            "cannot compare with the default branch".into()
        ))
    );
}

fn staging_request() -> String {
    "environment: staging\nrole: admin\nduration: 1h\nreason: load test\n".to_owned()
}

/// The tree of commit `base` with `files` written over it, in the forge's repository.
fn tree_with(repo: &git2::Repository, base: git2::Oid, files: &[(&str, &str)]) -> git2::Oid {
    let base = repo.find_commit(base).unwrap().tree().unwrap();
    let mut update = git2::build::TreeUpdateBuilder::new();
    for (path, text) in files {
        let blob = repo.blob(text.as_bytes()).unwrap();
        update.upsert(*path, blob, git2::FileMode::Blob);
    }
    update.create_updated(repo, &base).unwrap()
}

/// A commit by bob with `parents` and `tree`, dated `when` (a committer sets their own dates).
fn commit_at(
    repo: &git2::Repository,
    parents: &[git2::Oid],
    tree: git2::Oid,
    message: &str,
    when: i64,
) -> git2::Oid {
    let sig = git2::Signature::new("bob", "bob@example.com", &git2::Time::new(when, 0)).unwrap();
    let tree = repo.find_tree(tree).unwrap();
    let parents: Vec<git2::Commit<'_>> = parents
        .iter()
        .map(|p| repo.find_commit(*p).unwrap())
        .collect();
    let parents: Vec<&git2::Commit<'_>> = parents.iter().collect();
    repo.commit(None, &sig, &sig, message, &tree, &parents)
        .unwrap()
}

// Found by a review of the comparison: a three-dot comparison diffs the head against ONE merge
// base (the newest by commit date, which the committer sets), while the merge combines ALL of
// them. With two merge bases (a criss-cross), bob, who approves nothing, could have a
// self-service staging request carry a loosened prod policy that no listing ever shows.
on_both_forges!(
    a_criss_cross_head_does_not_merge_a_policy_the_comparison_never_shows,
    |s: Scenario| async move {
        let repo = git2::Repository::open_bare(s.forge.repo_path(REPO)).unwrap();
        let policy = s.forge.file_on(REPO, "main", "policies/prod.yaml").unwrap();
        let loosened = loosened_prod_policy(&s);
        let main = git2::Oid::from_str(&s.forge.branch_sha(REPO, "main").unwrap()).unwrap();
        let t = s.forge.now().timestamp() - 3_600;
        // C loosens the policy; Y puts it back; X is C again, dated after Y.
        let loose = tree_with(&repo, main, &[("policies/prod.yaml", &loosened)]);
        let c = commit_at(&repo, &[main], loose, "c", t);
        let main_tree = repo.find_commit(main).unwrap().tree_id();
        let y = commit_at(&repo, &[c], main_tree, "y: put the policy back", t + 100);
        let x = commit_at(&repo, &[c], loose, "x", t + 200);

        // Stage 1: a merge of X and Y whose tree is main's plus a request file. Its net change
        // is the request alone; merging it would put X and Y on main.
        let r1_tree = tree_with(
            &repo,
            main,
            &[("requests/staging/r1.yaml", &staging_request())],
        );
        let r1 = commit_at(&repo, &[x, y], r1_tree, "request r1", t + 300);
        repo.reference("refs/heads/bob-r1", r1, true, "push")
            .unwrap();
        let first = s.open_change(&s.people.bob, "bob-r1", "r1");
        s.settle().await;
        assert!(!s.change(first).merged);
        let said = s.next_bot_comment(first);
        assert!(
            said.starts_with(&format!(
                "⛔ **Merge commits on this {pr}'s branch**",
                pr = s.pr()
            )),
            "{said}"
        );
        let head = s.change(first).head_sha;
        assert_eq!(
            s.policy_status(&head),
            Some(("failure".into(), "merge commits on the branch".into()))
        );

        // Stage 2, as if X and Y had reached main some other way (an admin's push): a merge of
        // X and Y again, with X's tree (the loosened policy) plus a request file. The merge
        // bases with main are X and Y; a comparison shows only the request file.
        let m_tree = repo.find_commit(main).unwrap().tree_id();
        let on_main = commit_at(&repo, &[main, x, y], m_tree, "admin merge", t + 350);
        repo.reference("refs/heads/main", on_main, true, "push")
            .unwrap();
        let r2_tree = tree_with(
            &repo,
            x,
            &[("requests/staging/r2.yaml", &staging_request())],
        );
        let r2 = commit_at(&repo, &[x, y], r2_tree, "request r2", t + 400);
        repo.reference("refs/heads/bob-r2", r2, true, "push")
            .unwrap();
        let second = s.open_change(&s.people.bob, "bob-r2", "r2");
        s.settle().await;
        s.advance(TimeDelta::minutes(2));
        s.settle().await;
        assert!(!s.change(second).merged);
        assert_eq!(merge_calls(&s), 0);
        assert_eq!(
            s.forge.file_on(REPO, "main", "policies/prod.yaml").unwrap(),
            policy
        );
        let said = s.next_bot_comment(second);
        assert!(
            said.starts_with(&format!("⛔ **Merge commits on this {}'s branch**", s.pr())),
            "{said}"
        );
    }
);

// Also found by the review: only a server without any comparison gets the unpinned files
// listing; a probe that fails otherwise is an error, retried, never a way back to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_probe_does_not_bring_back_the_unpinned_listing() {
    let s = Scenario::start(Backend::Sqlite).await.unwrap();
    let only_request = request_then_a_policy(&s, BOBS_BRANCH);
    // The head's comparison answers 404 (GitHub's answer for a head it cannot compare), and
    // the base-with-itself probe fails with 502 on every retry of one call.
    s.forge.fail_next(FailureSpec {
        route: RouteMatcher::Predicate(std::sync::Arc::new(|_, path: &str| {
            path.contains("/compare/") && !compares_a_commit_with_itself(path)
        })),
        count: u32::MAX,
        kind: FailureKind::Status(404),
    });
    s.forge.fail_next(FailureSpec {
        route: RouteMatcher::Predicate(std::sync::Arc::new(|_, path: &str| {
            compares_a_commit_with_itself(path)
        })),
        count: breakglass::forge::retry::RetryPolicy::default().attempts,
        kind: FailureKind::Status(502),
    });
    push_away_and_back_around_each_listing(&s, BOBS_BRANCH, only_request);
    let policy = s.forge.file_on(REPO, "main", "policies/prod.yaml").unwrap();
    // Deciding fails on the probe's 502 and is retried later: that is the point.
    s.expect_delivery_error("HTTP 502");
    let pr = s.open_change(&s.people.bob, BOBS_BRANCH, "r1");
    for _ in 0..400 {
        if !s.failures().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    s.advance(TimeDelta::seconds(10));
    s.settle().await;
    s.label(pr, &s.people.bob, "sev1");
    s.settle().await;
    assert!(!s.change(pr).merged);
    assert_eq!(merge_calls(&s), 0);
    assert_eq!(
        s.forge.file_on(REPO, "main", "policies/prod.yaml").unwrap(),
        policy
    );
    assert_eq!(
        s.forge
            .calls()
            .count("GET", "/repos/{owner}/{repo}/pulls/{number}/files"),
        0,
        "the unpinned listing was used"
    );
    // Once the probe answers, the head is known not to be comparable, and said so.
    s.expect_bot_comments(pr, &["⛔ **Cannot check this PR**"]);
}

// Git resolves a tag before a branch of the same name (the test forge does too): a member's tag
// `main` must not stand in for the default branch in what the bot compares.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_named_like_the_default_branch_does_not_stand_in_for_it() {
    let s = Scenario::start(Backend::Sqlite).await.unwrap();
    let branch = "sev1-request";
    let policy = s.forge.file_on(REPO, "main", "policies/prod.yaml").unwrap();
    let repo = request_over_a_looser_policy_tagged_main(&s, branch);
    // Compared with the tag, the PR adds only its request; the bot sees the forge compared
    // with another commit than the branch's head, and decides nothing.
    s.expect_delivery_error("a tag named `main` shadows it");
    let pr = s.open_labelled_change(&s.people.bob, branch, "r1", "sev1");
    for _ in 0..400 {
        if !s.failures().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(!s.change(pr).merged);
    assert_eq!(merge_calls(&s), 0);
    // Without the tag, the PR shows what it is.
    repo.find_reference("refs/tags/main")
        .unwrap()
        .delete()
        .unwrap();
    // A delivery that failed while the tag was there is retried after its backoff.
    for _ in 0..100 {
        s.advance(TimeDelta::minutes(1));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if !s.bot_comments(pr).is_empty() {
            break;
        }
    }
    s.advance(TimeDelta::minutes(5));
    s.settle().await;
    assert!(!s.change(pr).merged);
    assert_eq!(
        s.forge.file_on(REPO, "main", "policies/prod.yaml").unwrap(),
        policy
    );
    let said = s.next_bot_comment(pr);
    assert!(said.contains("`policies/prod.yaml`"), "{said}");
}

/// GitLab's comparison does not say which commit it took `main` to be, so on GitLab every read
/// of the default branch names it in full (`refs/heads/main`): a tag `main` that a member
/// pushed, pointing at a looser policy, is neither the policy read nor the base compared with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_gitlab_a_tag_named_like_the_default_branch_is_never_read_for_it() {
    let s = Scenario::on_gitlab().await;
    let branch = "sev1-request";
    let policy = s.forge.file_on(REPO, "main", "policies/prod.yaml").unwrap();
    request_over_a_looser_policy_tagged_main(&s, branch);
    let pr = s.open_change(&s.people.bob, branch, "r1");
    s.settle().await;
    assert!(!s.change(pr).merged);
    assert_eq!(merge_calls(&s), 0);
    let said = s.next_bot_comment(pr);
    assert!(said.contains("`policies/prod.yaml`"), "{said}");
    // (A plain `main` would read the tag here too.)
    assert_eq!(
        s.forge
            .file_on(REPO, "refs/heads/main", "policies/prod.yaml")
            .unwrap(),
        policy
    );
}

/// On GitLab the bot's commits on its own branches name their parent (`start_sha`, `force`): a
/// commit a member slips onto the branch between the bot's branch creation and its first
/// commit (a policy change, say) is dropped, never built on and merged under the bot's commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_gitlab_a_commit_slipped_under_the_bots_commit_is_dropped() {
    use breakglass::forge::gitlab::{GitlabAuth, GitlabClient};
    let s = Scenario::on_gitlab().await;
    let token = breakglass::secret::Secret::new(s.forge.token_for(&s.people.bot));
    let client = GitlabClient::connect(
        &s.forge.gitlab_api_url(),
        REPO,
        GitlabAuth::PrivateToken(token),
    )
    .await
    .expect("client");
    let base = s.forge.branch_sha(REPO, "main").expect("main");
    let branch = "breakglass/revert/r1-0123456789abcdef";
    client.create_branch(branch, &base).await.expect("branch");
    // mallory races the bot's first commit.
    let slipped = s.forge.push_files(
        REPO,
        branch,
        &s.people.mallory,
        &[("policies/prod.yaml", "approvals: 0\n")],
        "loosen",
    );
    let head = client
        .put_file(
            branch,
            &base,
            "requests/prod/r1.yaml",
            "x: 1\n",
            "add",
            None,
        )
        .await
        .expect("commit");
    let log = s.forge.log(REPO, branch);
    assert_eq!(log[0].sha, head);
    assert_eq!(
        log[0].parents.as_slice(),
        std::slice::from_ref(&base),
        "the bot's commit sits on its own parent"
    );
    assert!(log.iter().all(|c| c.sha != slipped), "{log:#?}");
    assert_eq!(
        s.forge.file_on(REPO, branch, "policies/prod.yaml"),
        s.forge.file_on(REPO, "main", "policies/prod.yaml")
    );
}

// A request waits up to a day for its approval; a policy tightened on the default branch
// meanwhile holds for it too: the approval that comes after does not merge what the new policy
// denies, and the bot says the new verdict.
on_both_forges!(
    a_policy_tightened_while_a_request_waits_holds_at_its_merge,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-wait", &prod_request("4h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r-wait` is allowed**"]);
        let prod = s.forge.file_on(REPO, "main", "policies/prod.yaml").unwrap();
        let tightened = prod.replace("max_duration: 4h", "max_duration: 2h");
        assert_ne!(prod, tightened);
        s.forge.push_direct(
            REPO,
            &s.people.dan,
            &[("policies/prod.yaml", &tightened)],
            "prod: at most 2h",
        );
        s.settle().await;
        s.by(&s.people.carol).approve(pr);
        s.settle().await;
        assert!(!s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        let said = s.take_bot_comments(pr).join("\n---\n");
        assert!(said.contains("4h") && said.contains("2h"), "{said}");
        assert_eq!(s.request("r-wait").await.state.to_string(), "denied");
    }
);

// The same when the policy asks for more approvals meanwhile: the request waits for them.
on_both_forges!(
    more_approvals_asked_while_a_request_waits_are_needed_at_its_merge,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-two", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r-two` is allowed**"]);
        let prod = s.forge.file_on(REPO, "main", "policies/prod.yaml").unwrap();
        let two = prod.replace("approvals: 1", "approvals: 2");
        assert_ne!(prod, two);
        s.forge
            .push_direct(REPO, &s.people.dan, &[("policies/prod.yaml", &two)], "two");
        s.settle().await;
        s.by(&s.people.carol).approve(pr);
        s.settle().await;
        assert!(!s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        let said = s.take_bot_comments(pr).join("\n---\n");
        assert!(said.contains("Needs **2** approval(s)"), "{said}");
        assert_eq!(s.request("r-two").await.state.to_string(), "pending");
        s.by(&s.people.dan).approve(pr);
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.take_bot_comments(pr);
    }
);

// File names are anyone's text. A push straight to main of a request file with grant files
// named with a space, a `#`, or line breaks that spell the bot's trailers: every file is
// removed (a name git allows is a path like any other, and one removal that fails would not
// keep the others), and no file name reaches the trailer block of the bot's removal merge.
on_both_forges!(
    files_with_any_name_that_land_without_the_bot_are_removed_and_forge_nothing,
    |s: Scenario| async move {
        let granted = s.granted("r1", "1h").await;
        let forged = "grants/prod/z.\n\nBreakglass-Revokes: r1\nBreakglass-Revoked-Reason: ttl";
        let files = [
            ("requests/prod/r9.yaml", prod_request("4h")),
            ("grants/prod/a b.tf", "resource \"x\" \"a\" {}\n".to_owned()),
            ("grants/prod/x#y.tf", "resource \"x\" \"b\" {}\n".to_owned()),
            (forged, "resource \"x\" \"c\" {}\n".to_owned()),
        ];
        let pushed: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
        s.forge
            .push_direct(REPO, &s.people.mallory, &pushed, "grant myself");
        s.settle().await;
        let left: Vec<String> = s
            .forge
            .files_on(REPO, "main")
            .into_iter()
            .filter(|f| files.iter().any(|(p, _)| p == f))
            .collect();
        assert_eq!(left, Vec::<String>::new(), "still on main");
        for commit in s.forge.log(REPO, "main") {
            let trailers = breakglass::audit::trailers::BotTrailers::parse(&commit.message);
            assert!(
                trailers.revokes.is_none() || commit.message.contains("Revokes: r9"),
                "a removal merge claims a revoke because of a file name:\n{}",
                commit.message
            );
        }
        assert_eq!(s.request("r1").await.state.to_string(), "active");
        for change in s.changes() {
            if change.number != granted {
                s.take_bot_comments(change.number);
            }
        }
    }
);

// For `iac` the grant file on main is the grant. A member who rewrites an active grant's file
// there (an AdministratorAccess attachment for themselves) gets nothing from it: only the
// bot's merges change a grant, so the grant is revoked at once (reconcile), its revert removes
// the changed file, and the comment names the pusher.
on_both_forges!(
    an_active_grant_file_changed_on_main_revokes_the_grant,
    |s: Scenario| async move {
        let issue = s.open_issue(&s.people.alice, "dns");
        s.note_on_issue(
            issue,
            &s.people.alice,
            "/breakglass network 30m dns-admin -- move the apex",
        );
        s.settle().await;
        s.expect_bot_issue_comments(issue, &["📝 @alice, your request is "]);
        let pr = s.changes().last().unwrap().number;
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(s.change(pr).merged);
        s.take_bot_comments(pr);
        let grant = s
            .forge
            .files_on(REPO, "main")
            .into_iter()
            .find(|p| p.starts_with("grants/network/"))
            .expect("the grant file is on main");
        let id = grant
            .rsplit('/')
            .next()
            .unwrap()
            .trim_end_matches(".tf")
            .to_owned();
        let text = s.forge.file_on(REPO, "main", &grant).unwrap();
        let rewritten = format!(
            "{text}\nresource \"aws_iam_user_policy_attachment\" \"m\" {{\n  user       = \"mallory\"\n  policy_arn = \"arn:aws:iam::aws:policy/AdministratorAccess\"\n}}\n"
        );
        s.forge
            .push_direct(REPO, &s.people.mallory, &[(&grant, &rewritten)], "tweak");
        s.settle().await;
        let record = s.request(&id).await;
        assert_eq!(record.state.to_string(), "revoked");
        assert_eq!(
            record.revoke_reason.map(|r| r.to_string()).as_deref(),
            Some("reconcile")
        );
        assert_eq!(
            s.forge.file_on(REPO, "main", &grant),
            None,
            "removed in full"
        );
        assert_eq!(s.events(&id, "tampering").await.len(), 1);
        let said = s.take_bot_comments(pr);
        assert!(
            said.iter().any(|c| c
                .starts_with("🚨 **Grant files changed without breakglass**: @mallory changed")),
            "{said:#?}"
        );
        assert!(
            said.iter().any(|c| c.starts_with("🔒 **Access revoked**")),
            "{said:#?}"
        );
        let revert = record.revert_pr_number.unwrap();
        s.take_bot_comments(revert);
    }
);

// A force push that rewinds the default branch to before a revert, plus one new commit: its
// webhook lists only that commit, and what came back from older history (the revoked request
// file) shows only when the push is compared from both ends. It is removed like any request
// that lands without the bot.
on_both_forges!(
    a_force_push_that_brings_back_a_revoked_request_file_is_compared_and_undone,
    |s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        let granted_at = s.merge_commit(pr).sha;
        s.advance(TimeDelta::hours(1));
        s.settle().await;
        s.expect_revoked_and_removed("r1").await;
        let m = &s.people.mallory;
        // A side branch at the grant's merge (the request file is there), one commit on top.
        s.forge
            .push_files(REPO, "rewind", m, &[("notes/x.txt", "x\n")], "start");
        s.forge.force_branch(REPO, "rewind", m, &granted_at);
        s.forge.push_files(
            REPO,
            "rewind",
            m,
            &[("README.md", "# access requests (typo fixed)\n")],
            "fix a typo",
        );
        let tip = s.forge.branch_sha(REPO, "rewind").unwrap();
        s.forge.force_branch(REPO, "main", m, &tip);
        s.settle().await;
        assert!(
            s.forge
                .file_on(REPO, "main", "requests/prod/r1.yaml")
                .is_none(),
            "a revoked request file brought back by a force push is still on main: {:?}",
            s.forge.files_on(REPO, "main")
        );
        s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
        let flagged: Vec<String> = s
            .changes()
            .iter()
            .flat_map(|c| s.take_bot_comments(c.number))
            .collect();
        assert!(
            flagged.iter().any(|c| c.contains("`requests/prod/r1.yaml`")
                && c.contains(
                    "was already revoked; its file was added to the default branch again"
                )),
            "{flagged:#?}"
        );
    }
);

// Found by a review of file modes: the merge check never looked at what kind of entry a file
// is. A request file that is a symbolic link (mode 120000) whose link text is a valid request
// was taken for that request and merged (GitHub rebuilt the text from the comparison's patch,
// which for a link is its text; GitLab read the link's blob), so the default branch held a
// symbolic link as a request file. GitHub's comparison gives no modes: its contents API, which
// serves a link's target or no text at all, tells.

/// Bob's self-service staging request `r1` whose file is `entry`, opened and settled.
async fn bob_requests_with(s: &Scenario, entry: FileChange) -> u64 {
    s.forge
        .push_changes(REPO, "bob-r1", &s.people.bob, &[entry], "request r1");
    let pr = s.open_change(&s.people.bob, "bob-r1", "r1");
    s.settle().await;
    pr
}

/// `pr` was refused for a request file that is `what`, said once, and nothing reached main.
#[track_caller]
fn refused_as_not_a_file(s: &Scenario, pr: u64, what: &str) {
    assert!(!s.change(pr).merged);
    assert_eq!(merge_calls(s), 0);
    assert_eq!(
        s.forge.file_on(REPO, "main", "requests/staging/r1.yaml"),
        None
    );
    s.expect_bot_comments(
        pr,
        &[&format!(
            "⛔ **breakglass will not merge this {pr}**: `requests/staging/r1.yaml` {what}. A \
             request {pr} adds its request file as a regular file.",
            pr = s.pr()
        )],
    );
    let head = s.change(pr).head_sha;
    assert_eq!(
        s.policy_status(&head),
        Some((
            "failure".into(),
            "the request file is not a regular file".into()
        ))
    );
}

on_both_forges!(
    a_symlink_request_file_whose_link_text_is_a_request_is_never_merged,
    |s: Scenario| async move {
        let pr = bob_requests_with(
            &s,
            FileChange::Symlink("requests/staging/r1.yaml".into(), staging_request()),
        )
        .await;
        refused_as_not_a_file(&s, pr, "is a symbolic link, not a file");
    }
);

// GitHub's contents API follows a link to a regular file of the repository and serves that
// file: its blob is not the one the comparison lists for the link.
on_both_forges!(
    a_symlink_request_file_pointing_at_a_policy_is_never_merged,
    |s: Scenario| async move {
        let pr = bob_requests_with(
            &s,
            FileChange::Symlink(
                "requests/staging/r1.yaml".into(),
                "../../policies/prod.yaml".into(),
            ),
        )
        .await;
        refused_as_not_a_file(&s, pr, "is a symbolic link, not a file");
    }
);

on_both_forges!(
    a_submodule_request_file_is_never_merged,
    |s: Scenario| async move {
        let main = s.forge.branch_sha(REPO, "main").unwrap();
        let pr = bob_requests_with(
            &s,
            FileChange::Submodule("requests/staging/r1.yaml".into(), main),
        )
        .await;
        refused_as_not_a_file(&s, pr, "is a submodule, not a file");
    }
);

// An executable file is a file: its text is what the forges serve and what the PR shows.
on_both_forges!(
    an_executable_request_file_is_decided_and_granted_as_any_other,
    |s: Scenario| async move {
        let pr = bob_requests_with(
            &s,
            FileChange::WriteExecutable("requests/staging/r1.yaml".into(), staging_request()),
        )
        .await;
        assert!(s.change(pr).merged);
        assert_eq!(
            s.forge.file_on(REPO, "main", "requests/staging/r1.yaml"),
            Some(staging_request())
        );
        s.expect_bot_comments(
            pr,
            &["✅ **Request `r1` is allowed**", "🔓 **Access granted.**"],
        );
        assert_eq!(s.request("r1").await.state.to_string(), "active");
    }
);

// A GitLab internal note is seen by project members only, and every answer of the bot is
// public: a deny written in one (its reason naming a suspected compromise) is not taken, and
// the reply quotes nothing of it. (GitLab sends it as `Confidential Note Hook`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_in_a_gitlab_internal_note_is_not_taken_nor_quoted() {
    let s = Scenario::on_gitlab().await;
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
    let mut note = gitlab_note(
        &s,
        &s.people.carol,
        "/breakglass deny SEC-99 alice's laptop is suspected compromised",
        "MergeRequest",
        serde_json::json!({"iid": pr}),
    );
    note["event_type"] = "confidential_note".into();
    note["object_attributes"]["internal"] = true.into();
    delivered_twice(&s, "Confidential Note Hook", &note).await;
    assert_eq!(
        s.take_bot_comments(pr),
        [
            "🙈 @carol, breakglass takes no command from an internal note or a confidential issue: its answers and the request it opens are seen by everyone in the project and would show what is written here. Write the command in a regular comment on a public issue or merge request."
        ]
    );
    assert_eq!(s.request("r1").await.state.to_string(), "pending");
}

/// A GitLab `Note Hook` payload: `user` wrote `body` just now on the `noteable_type`
/// (`Issue`, `MergeRequest`) that `noteable` describes.
fn gitlab_note(
    s: &Scenario,
    user: &breakglass_test_forge::User,
    body: &str,
    noteable_type: &str,
    noteable: serde_json::Value,
) -> serde_json::Value {
    let at = s.forge.now().format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let on = if noteable_type == "Issue" {
        "issue"
    } else {
        "merge_request"
    };
    serde_json::json!({
        "object_kind": "note",
        "event_type": "note",
        "user": {"id": user.id, "name": user.login, "username": user.login},
        "project_id": s.forge.gl_project_id(REPO),
        "project": {"path_with_namespace": REPO, "default_branch": "main"},
        "object_attributes": {
            "id": 990_001u64, "note": body,
            "noteable_type": noteable_type, "created_at": at, "updated_at": at,
            "action": "create", "internal": false, "system": false
        },
        on: noteable
    })
}

/// GitLab's webhook `event` with `payload`, delivered twice under two delivery ids (a replay
/// must say nothing more), each handled before the next.
async fn delivered_twice(s: &Scenario, event: &str, payload: &serde_json::Value) {
    for delivery in ["delivery-1", "delivery-2"] {
        let status = reqwest::Client::new()
            .post(s.webhook_url())
            .header("X-Gitlab-Event", event)
            .header("X-Gitlab-Token", SECRET)
            .header("Idempotency-Key", delivery)
            .json(payload)
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "{status}");
        s.settle().await;
    }
}

// A note on a GitLab confidential issue is a regular `Note Hook`, but the issue says
// `confidential`: a request asked there would put the reason, written for the few who see the
// issue, into a request MR everyone in the project sees. It is not taken, and answered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_asked_on_a_gitlab_confidential_issue_is_not_opened_in_public() {
    let s = Scenario::on_gitlab().await;
    let issue = s.open_issue(&s.people.alice, "INC-7: suspected credential leak");
    let note = gitlab_note(
        &s,
        &s.people.alice,
        "/breakglass staging 1h -- rotating the keys bob leaked in INC-7",
        "Issue",
        serde_json::json!({"iid": issue, "confidential": true}),
    );
    delivered_twice(&s, "Note Hook", &note).await;
    let said = s.take_bot_issue_comments(issue);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].starts_with(
            "🙈 @alice, breakglass takes no command from an internal note or a confidential issue"
        ),
        "{said:?}"
    );
    assert!(!said[0].contains("INC-7"), "{said:?}");
    assert!(s.changes().is_empty(), "no request MR");
}

// What the approver reads is what the bot grants: a file whose role comes from a merge key (two
// of them: tools disagree on which wins), a `!!binary` tag (base64 of `admin`) or an escape
// (`"\x61dmin"`) is not a request, whoever approves it.
on_both_forges!(
    a_request_file_whose_role_hides_in_a_merge_key_or_a_tag_is_never_merged,
    |s: Scenario| async move {
        let tail = "duration: 1h\nreason: \"incident: INC-1234 read the logs\"\nticket: INC-1234\n";
        let files = [
            (
                "r-merge",
                format!("environment: prod\n<<: {{role: admin}}\n{tail}<<: {{role: readonly}}\n"),
                "line 2, column 1: merge keys (`<<`) are not allowed",
            ),
            (
                "r-binary",
                format!("environment: prod\nrole: !!binary YWRtaW4=\n{tail}"),
                "line 2, column 16: tags such as `!!binary` are not allowed",
            ),
            (
                "r-escape",
                format!("environment: prod\nrole: \"\\x61dmin\" # readonly\n{tail}"),
                "line 2, column 7: escapes such as",
            ),
        ];
        for (id, yaml, why) in files {
            let pr = s.open_request(&s.people.alice, "prod", id, &yaml);
            s.settle().await;
            let said = s.next_bot_comment(pr);
            assert!(
                said.contains("is not a valid request") && said.contains(why),
                "{said}"
            );
            s.approve(pr, &s.people.carol);
            s.settle().await;
            assert!(!s.change(pr).merged, "{id} was merged");
            assert!(
                s.store
                    .get_request(&id.to_owned().try_into().unwrap())
                    .await
                    .unwrap()
                    .is_none()
            );
            s.next_bot_comment(pr);
        }
    }
);

/// alice's prod request `r1`, its verdict read, with the bot's next four merge calls (one
/// merge job's attempts) answered 502; its PR.
async fn r1_whose_merge_calls_fail(s: &Scenario) -> u64 {
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.take_bot_comments(pr);
    s.fail_next(Route::Merge, Method::PUT, 4, FailureKind::Status(502));
    s.expect_job_error(JobKind::Merge, "HTTP 502");
    pr
}

/// mallory merges PR `pr` by hand; then three minutes pass, the bot's merge job retried.
async fn mallory_merges_by_hand(s: &Scenario, pr: u64) {
    s.forge.merge_pr(REPO, s.internal(pr), &s.people.mallory);
    s.settle().await;
    for _ in 0..6 {
        s.advance(TimeDelta::seconds(30));
        s.settle().await;
    }
}

/// Request `r1` on PR `pr`, merged by mallory's hand while the bot's merge was to come: closed,
/// never granted, its file removed from the default branch (said on the removal's PR), and
/// its requester told on `pr`.
async fn merged_by_hand_by_mallory(s: &Scenario, pr: u64) {
    let record = s.request("r1").await;
    assert_eq!(record.state.to_string(), "closed");
    assert!(record.granted_at.is_none());
    assert!(s.events("r1", "grant").await.is_empty(), "nothing granted");
    assert_eq!(s.forge.file_on(REPO, "main", "requests/prod/r1.yaml"), None);
    let removal = s.next_bot_comment(pr + 1);
    assert!(
        removal.starts_with("🚨 **Request files reached the default branch without breakglass**: `requests/prod/r1.yaml`. They were not granted"),
        "{removal}"
    );
    s.expect_bot_comments(
        pr,
        &[&format!(
            "🚫 This {} was merged by hand by mallory, not by breakglass, so nothing was granted: a request is granted only by breakglass's own merge, checked at merge time.",
            s.pr()
        )],
    );
}

// The bot's merge call fails (a 502, to be tried again) after it set `breakglass/policy`
// green; the approver takes her 👍 back, and a member merges the PR by hand. The merged PR is
// not the bot's merge: nothing is granted, the request is closed as merged by hand, its file
// leaves the default branch, and the check went back to pending when the merge call failed.
on_both_forges!(
    a_hand_merge_while_the_bots_merge_waits_for_a_retry_is_never_granted,
    |s: Scenario| async move {
        let pr = r1_whose_merge_calls_fail(&s).await;
        let emoji = s.emoji(pr, &s.people.carol, "+1");
        s.advance(TimeDelta::seconds(31)); // GitHub's reaction poll
        s.settle().await;
        assert!(!s.change(pr).merged, "the bot's merge was to fail");
        let head = s.change(pr).head_sha;
        assert_eq!(
            s.policy_status(&head).map(|(state, _)| state).as_deref(),
            Some("pending"),
            "a failed merge call leaves no green check behind"
        );
        s.remove_emoji(pr, emoji);
        s.settle().await;
        mallory_merges_by_hand(&s, pr).await;
        merged_by_hand_by_mallory(&s, pr).await;
        let closed = s.events("r1", "close").await;
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].data["merged_by_hand"], true);
    }
);

// The same with the policy tightened to two approvals meanwhile: the hand merge does not
// become a grant on the one approval the bot saw before its merge call failed.
on_both_forges!(
    a_hand_merge_after_the_policy_was_tightened_while_the_merge_waits_is_never_granted,
    |s: Scenario| async move {
        let pr = r1_whose_merge_calls_fail(&s).await;
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(!s.change(pr).merged, "the bot's merge was to fail");
        s.prod_needs_two_approvals().await;
        mallory_merges_by_hand(&s, pr).await;
        merged_by_hand_by_mallory(&s, pr).await;
    }
);

// Approved, the bot's merge call failing (a 502, to be tried again): the merge step has begun,
// and an approver's deny can no longer stop a merge call that may be on its way (from another
// replica too). It is answered, the retried merge grants, and `/breakglass revoke` ends it.
on_both_forges!(
    a_deny_while_the_approved_merge_waits_for_a_retry_is_answered_and_revoke_ends_the_grant,
    |s: Scenario| async move {
        let pr = in_the_merge_step(&s).await;
        s.by(&s.people.dan).command(pr, "deny wrong account");
        s.settle().await;
        for _ in 0..6 {
            s.advance(TimeDelta::seconds(30));
            s.settle().await;
        }
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        assert_eq!(s.request("r1").await.state.to_string(), "active");
        let said = s.take_bot_comments(pr);
        assert!(
            said.iter().any(|c| c.starts_with(
                "ℹ️ `/breakglass deny` does not apply: request `r1` is approved and being merged"
            )),
            "{said:#?}"
        );
        assert!(said.iter().any(|c| c.starts_with("🔓 **Access granted.**")));
        s.by(&s.people.dan).command(pr, "revoke");
        s.settle().await;
        assert_eq!(s.request("r1").await.state.to_string(), "revoked");
        s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
    }
);

/// Waits (real time) until the bot has called the merge route `n` times.
async fn merge_called(s: &Scenario, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while s.forge.calls().count("PUT", s.route(Route::Merge)) < n {
        assert!(
            std::time::Instant::now() < deadline,
            "the bot never called merge"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// The bot's merge call hangs (a slow forge: timed out and retried within the same call), and
// meanwhile mallory merges the PR by hand at the very head the bot checked. The retry's look
// finds it merged, by mallory: a hand merge, never taken for the bot's. Nothing is granted,
// and the request file leaves the default branch.
on_both_forges!(
    a_hand_merge_while_the_bots_merge_call_hangs_is_never_granted,
    Setup {
        forge_timeout: Some(Duration::from_millis(1500)),
        ..Setup::default()
    },
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.take_bot_comments(pr);
        s.fail_next(Route::Merge, Method::PUT, 1, FailureKind::Hang);
        s.approve(pr, &s.people.carol);
        merge_called(&s, 1).await;
        mallory_merges_by_hand(&s, pr).await;
        merged_by_hand_by_mallory(&s, pr).await;
    }
);

// The bot's merge lands but its answer is lost, and every read of the PR fails until the merge
// job has failed once. The check is not left pending on the merged head, and an approver's
// `/breakglass deny` then does not close a request the bot has merged: it is answered, and the
// merge job carries on to the grant.
on_both_forges!(
    a_deny_after_the_bots_merge_landed_unheard_is_answered_and_the_grant_goes_on,
    |s: Scenario| async move {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.take_bot_comments(pr);
        let read = if s.route(Route::Change).contains("merge_requests") {
            format!("/merge_requests/{}", s.internal(pr))
        } else {
            format!("/pulls/{}", s.internal(pr))
        };
        let (merging, reads_fail) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(true)),
        );
        let (seen, failing) = (merging.clone(), reads_fail.clone());
        s.forge.fail_next(FailureSpec {
            route: RouteMatcher::Predicate(Arc::new(move |method: &Method, path: &str| {
                if method == Method::PUT && path.ends_with("/merge") {
                    seen.store(true, Ordering::SeqCst);
                    return false;
                }
                method == Method::GET
                    && path.ends_with(&read)
                    && seen.load(Ordering::SeqCst)
                    && failing.load(Ordering::SeqCst)
            })),
            count: 1000,
            kind: FailureKind::Status(502),
        });
        s.fail_next(Route::Merge, Method::PUT, 1, FailureKind::AnswerLost);
        s.expect_job_error(JobKind::Merge, "502");
        s.approve(pr, &s.people.carol);
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !s.failures().iter().any(|f| f.contains("502")) {
            assert!(
                std::time::Instant::now() < deadline,
                "the merge job never failed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(s.change(pr).merged, "the bot's merge landed");
        s.by(&s.people.dan).command(pr, "deny wrong account");
        reads_fail.store(false, Ordering::SeqCst);
        s.settle().await;
        for _ in 0..3 {
            s.advance(TimeDelta::seconds(60));
            s.settle().await;
        }
        let record = s.request("r1").await;
        assert_eq!(record.state.to_string(), "active");
        assert_eq!(s.events("r1", "grant").await.len(), 1);
        let head = s.change(pr).head_sha;
        assert_eq!(s.policy_status(&head).unwrap().0, "success");
        let said = s.take_bot_comments(pr);
        assert!(
            said.iter().any(|c| c.starts_with(
                "ℹ️ `/breakglass deny` does not apply: request `r1` is approved and being merged"
            )),
            "{said:#?}"
        );
        assert!(
            said.iter().any(|c| c.starts_with("🔓 **Access granted.**")),
            "{said:#?}"
        );
    }
);

// The merge step has begun (the grant time is fixed) and its merge call failed, to be tried
// again: the requester's `/breakglass deny` cannot take back a merge call that may be on its way
// (another replica's, in the helper review's race: the merge landed for a request closed
// meanwhile, a grant's trailers and files on the default branch and nothing said). It is
// answered, and the retried merge grants as approved.
/// The end of a merge step that went through: PR `pr` merged, `r1` granted once and said so.
async fn granted_as_approved(s: &Scenario, pr: u64) {
    assert!(s.change(pr).merged);
    assert_eq!(s.request("r1").await.state.to_string(), "active");
    assert_eq!(s.events("r1", "grant").await.len(), 1);
    s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
}

/// Waits (real time) until a delivery was put off for a merge step (see `merge_under_way`).
async fn put_off_for_the_merge_step(s: &Scenario) {
    s.until_a_delivery_failed_with("is in its merge step").await;
}

/// Two minutes in 10 s steps (real time between them for the bot's workers: the merge job and
/// the put-off delivery retry as each comes due), then settled.
async fn through_the_merge_step(s: &Scenario) {
    for _ in 0..12 {
        s.advance(TimeDelta::seconds(10));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    s.settle().await;
}

/// alice's request `r1`, approved by carol, in its merge step: the grant time fixed and the
/// merge call failed (every attempt of the job's first run), to be tried again a minute later.
async fn in_the_merge_step(s: &Scenario) -> u64 {
    let pr = r1_whose_merge_calls_fail(s).await;
    s.approve(pr, &s.people.carol);
    s.settle().await;
    assert!(!s.change(pr).merged);
    let record = s.request("r1").await;
    assert_eq!(record.state.to_string(), "approved");
    assert!(record.granted_at.is_some(), "the merge step began");
    pr
}

on_both_forges!(
    a_withdrawal_after_the_merge_step_began_is_answered_and_never_races_the_merge,
    |s: Scenario| async move {
        let pr = in_the_merge_step(&s).await;
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(pr, &s.people.alice, "/breakglass deny -- never mind");
        s.settle().await;
        let said = s.take_bot_comments(pr);
        assert!(
            said.iter().any(|c| c.starts_with(
                "ℹ️ `/breakglass deny` does not apply: request `r1` is approved and being merged (**approved**). Once it is granted, `/breakglass revoke` ends it."
            )),
            "{said:#?}"
        );
        for _ in 0..5 {
            s.advance(TimeDelta::seconds(60));
            s.settle().await;
        }
        granted_as_approved(&s, pr).await;
    }
);

// The same merge step, and a member closes the PR and opens it again (a helper review's race on
// two replicas: the close was handled on the other one while the merge call hung, then the
// reopened PR was merged with a grant's trailers for a request the bot held as closed). The
// close waits for the merge step: the reopened PR is merged and granted as approved.
on_both_forges!(
    a_pr_closed_and_reopened_in_the_merge_step_waits_for_it_and_is_granted_as_approved,
    |s: Scenario| async move {
        let pr = in_the_merge_step(&s).await;
        s.expect_delivery_error("is in its merge step");
        s.forge.close_pr(REPO, s.internal(pr), &s.people.mallory);
        put_off_for_the_merge_step(&s).await;
        assert_eq!(s.request("r1").await.state.to_string(), "approved");
        s.forge.reopen_pr(REPO, s.internal(pr), &s.people.mallory);
        s.forge.settle().await;
        through_the_merge_step(&s).await;
        granted_as_approved(&s, pr).await;
    }
);

// Closed for good in the merge step: the merge is refused (the PR is closed), and the close,
// handled after it, closes the request; nothing is merged or granted.
on_both_forges!(
    a_pr_closed_in_the_merge_step_closes_its_request_once_the_step_is_over,
    |s: Scenario| async move {
        let pr = in_the_merge_step(&s).await;
        s.expect_delivery_error("is in its merge step");
        s.forge.close_pr(REPO, s.internal(pr), &s.people.mallory);
        put_off_for_the_merge_step(&s).await;
        through_the_merge_step(&s).await;
        assert!(!s.change(pr).merged);
        assert_eq!(s.request("r1").await.state.to_string(), "closed");
        assert!(s.events("r1", "grant").await.is_empty());
        s.take_bot_comments(pr);
    }
);

// A push away and back in the merge step (B, then A again): decided again only once the merge
// step is over, never while its merge call may be on its way (the helper review's race on two
// replicas: the bot merged A while it held the request as pending, then took its own merge for
// a hand merge). The merge job finds the head moved unheard (the forge's record of its moves)
// and decides again from A's return: carol's approval, given before it, is asked for again.
on_both_forges!(
    a_push_away_and_back_in_the_merge_step_waits_for_it,
    |s: Scenario| async move {
        let pr = in_the_merge_step(&s).await;
        let approved = s.change(pr).head_sha;
        s.expect_delivery_error("is in its merge step");
        s.forge.advance_clock(TimeDelta::seconds(2));
        s.forge.push_files(
            REPO,
            "request-r1",
            &s.people.alice,
            &[("requests/prod/r1.yaml", &prod_request("4h"))],
            "longer",
        );
        s.forge.advance_clock(TimeDelta::seconds(2));
        s.forge
            .force_branch(REPO, "request-r1", &s.people.alice, &approved);
        put_off_for_the_merge_step(&s).await;
        assert_eq!(s.request("r1").await.state.to_string(), "approved");
        s.forge.settle().await;
        through_the_merge_step(&s).await;
        let record = s.request("r1").await;
        assert!(!s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        assert_eq!(record.state.to_string(), "pending");
        assert_eq!(record.head_sha, approved);
        assert!(s.events("r1", "close").await.is_empty());
        let said = s.take_bot_comments(pr);
        assert!(
            said.iter()
                .any(|c| c.starts_with("⏱️ @carol, your approval")),
            "{said:#?}"
        );
        s.forge.advance_clock(TimeDelta::seconds(2));
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        assert_eq!(s.request("r1").await.duration_secs, 3600);
        s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
    }
);
