//! A whole break-glass lifecycle driven the way the bot drives it (octocrab, bot token), proving
//! that the forge's git history ends up as the audit trail the product promises.

mod common;

use common::*;
use octocrab::params::pulls::MergeMethod;
use octocrab::params::repos::Reference;

#[tokio::test]
async fn grant_and_revert_leave_two_merge_commits_and_an_empty_requests_dir() {
    let w = world().await;
    let carol = w.forge.user("carol");
    let n = alice_opens_request(&w, "req-1");

    // The bot reads policy from the default branch, never from the PR head.
    let policy = w
        .octo
        .repos(OWNER, NAME)
        .get_content()
        .path("policies/prod.yaml")
        .r#ref("main")
        .send()
        .await
        .unwrap();
    assert!(
        policy.items[0]
            .decoded_content()
            .unwrap()
            .contains("max_duration")
    );

    // An approver reacts; the bot sees it by polling.
    w.forge.react(REPO, n, &carol, "+1");
    let reactions = w
        .octo
        .issues(OWNER, NAME)
        .list_reactions(n)
        .send()
        .await
        .unwrap();
    assert_eq!(reactions.items[0].user.login, "carol");

    // Grant: merge with trailers, guarded by the head sha.
    let head = w.octo.pulls(OWNER, NAME).get(n).await.unwrap().head.sha;
    let grant = w
        .octo
        .pulls(OWNER, NAME)
        .merge(n)
        .sha(head)
        .method(MergeMethod::Merge)
        .title("Break-glass: prod admin for alice (#1)")
        .message(
            "Breakglass-Request: req-1\nBreakglass-Requester: alice\nBreakglass-Approved-By: carol",
        )
        .send()
        .await
        .unwrap()
        .sha
        .unwrap();

    // Revert PR: a branch from main that deletes the request file.
    let repos = w.octo.repos(OWNER, NAME);
    repos
        .create_ref(
            &Reference::Branch("breakglass/revoke/req-1".into()),
            grant.clone(),
        )
        .await
        .unwrap();
    let file = repos
        .get_content()
        .path("requests/prod/req-1.yaml")
        .r#ref("breakglass/revoke/req-1")
        .send()
        .await
        .unwrap();
    repos
        .delete_file(
            "requests/prod/req-1.yaml",
            "Revoke req-1",
            file.items[0].sha.clone(),
        )
        .branch("breakglass/revoke/req-1")
        .send()
        .await
        .unwrap();
    let revert = w
        .octo
        .pulls(OWNER, NAME)
        .create(
            "Revoke req-1 at 2026-11-27T03:14:00Z",
            "breakglass/revoke/req-1",
            "main",
        )
        .send()
        .await
        .unwrap();
    let files = w
        .octo
        .pulls(OWNER, NAME)
        .list_files(revert.number)
        .await
        .unwrap();
    assert_eq!(files.items.len(), 1);
    assert!(matches!(
        files.items[0].status,
        octocrab::models::repos::DiffEntryStatus::Removed
    ));
    let revoke = w
        .octo
        .pulls(OWNER, NAME)
        .merge(revert.number)
        .sha(revert.head.sha.clone())
        .title("Revoke req-1 (#2)")
        .message("Breakglass-Revokes: req-1\nBreakglass-Revoked-Reason: ttl")
        .send()
        .await
        .unwrap()
        .sha
        .unwrap();

    // requests/ on main lists exactly the active grants: none.
    assert!(
        !w.forge
            .files_on(REPO, "main")
            .iter()
            .any(|p| p.starts_with("requests/"))
    );
    // And git log keeps every grant that ever was, as merge commits with trailers.
    let log = w.forge.log(REPO, "main");
    let merges: Vec<_> = log.iter().filter(|c| c.parents.len() == 2).collect();
    assert_eq!(merges.len(), 2);
    assert_eq!(merges[0].sha, revoke);
    assert_eq!(merges[1].sha, grant);
    assert!(merges[0].message.contains("Breakglass-Revoked-Reason: ttl"));
    assert!(merges[1].message.contains("Breakglass-Approved-By: carol"));

    let repo = git2::Repository::open_bare(w.forge.repo_path(REPO)).unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push_ref("refs/heads/main").unwrap();
    assert_eq!(walk.count(), log.len());
}
