//! Pull requests from forks: the head lives in another repository (`head.repo.fork`), its commit
//! in the base repository's objects under `refs/pull/<n>/head`, and its branch name means
//! nothing here: a write to `head.ref` by name lands on the base repository's branch.

mod common;

use common::*;
use serde_json::json;

const FORK: &str = "mallory/access-requests";
const FILE: &str = "requests/prod/mallory.yaml";

/// mallory opens a PR from the `main` branch of her fork; returns (forge world, PR number).
async fn fork_world() -> (World, u64) {
    let w = world().await;
    record_webhooks(&w.forge);
    let mallory = w.forge.user("mallory");
    let n = w.forge.open_fork_pr(
        REPO,
        &mallory,
        FORK,
        "main",
        &[(FILE, "environment: prod\nrole: admin\n")],
        "Break-glass: prod admin",
    );
    (w, n)
}

#[tokio::test]
async fn a_fork_pr_names_the_fork_as_its_head_in_rest_and_webhooks() {
    let (w, n) = fork_world().await;
    let rest = get_json(&w.octo, &format!("/repos/{REPO}/pulls/{n}")).await;
    let opened = payloads(&w.forge, "pull_request", Some("opened"));
    assert_eq!(opened.len(), 1);
    for pr in [&rest, &opened[0]["pull_request"]] {
        assert_eq!(pr["head"]["repo"]["full_name"], FORK);
        assert_eq!(pr["head"]["repo"]["fork"], true);
        assert_eq!(pr["head"]["repo"]["owner"]["login"], "mallory");
        assert_eq!(pr["head"]["ref"], "main");
        assert_eq!(pr["head"]["label"], "mallory:main");
        assert_eq!(pr["head"]["user"]["login"], "mallory");
        assert_eq!(pr["base"]["repo"]["full_name"], REPO);
        assert_eq!(pr["base"]["repo"]["fork"], false);
        assert_eq!(pr["base"]["label"], "acme:main");
        assert_ne!(pr["head"]["repo"]["id"], pr["base"]["repo"]["id"]);
    }
    // The push happened in the fork: the base repository hears of none.
    assert!(payloads(&w.forge, "push", None).is_empty());
    let snapshot = w.forge.pr(REPO, n);
    assert_eq!(snapshot.head_repo.as_deref(), Some(FORK));
    assert_eq!(snapshot.head_ref, "main");
    // octocrab reads the same.
    let typed = w.octo.pulls(OWNER, NAME).get(n).await.unwrap();
    let head_repo = typed.head.repo.unwrap();
    assert_eq!(head_repo.full_name.as_deref(), Some(FORK));
    assert_eq!(head_repo.fork, Some(true));
}

#[tokio::test]
async fn a_fork_head_is_in_the_base_objects_under_refs_pull_but_on_no_branch() {
    let w = world().await;
    let main_before = w.forge.branch_sha(REPO, "main").unwrap();
    let mallory = w.forge.user("mallory");
    let n = w.forge.open_fork_pr(
        REPO,
        &mallory,
        FORK,
        "main",
        &[(FILE, "role: admin\n")],
        "Access",
    );
    let head = w.forge.pr(REPO, n).head_sha;
    assert_eq!(w.forge.branch_sha(REPO, "main").unwrap(), main_before);
    let branches = get_json(&w.octo, &format!("/repos/{REPO}/branches")).await;
    assert_eq!(branches.as_array().unwrap().len(), 1, "{branches}");

    let git = git2::Repository::open_bare(w.forge.repo_path(REPO)).unwrap();
    let pull_ref = git
        .find_reference(&format!("refs/pull/{n}/head"))
        .unwrap()
        .target()
        .unwrap();
    assert_eq!(pull_ref.to_string(), head);
    let commit = git.find_commit(pull_ref).unwrap();
    assert_eq!(commit.parent_id(0).unwrap().to_string(), main_before);
    assert_eq!(commit.author().name().unwrap(), "mallory");

    let files = w.octo.pulls(OWNER, NAME).list_files(n).await.unwrap();
    let names: Vec<_> = files.items.iter().map(|f| f.filename.as_str()).collect();
    assert_eq!(names, vec![FILE]);
    let at_head = get_json(
        &w.octo,
        &format!("/repos/{REPO}/contents/{FILE}?ref={head}"),
    )
    .await;
    assert_eq!(at_head["path"], FILE);
    let on_main = call(
        &w.octo,
        "GET",
        &format!("/repos/{REPO}/contents/{FILE}?ref=main"),
        None,
    )
    .await;
    assert_eq!(on_main.0, 404);
    let commits = get_json(&w.octo, &format!("/repos/{REPO}/pulls/{n}/commits")).await;
    assert_eq!(commits.as_array().unwrap().len(), 1);
    assert_eq!(commits[0]["sha"], head.as_str());
}

#[tokio::test]
async fn writing_to_a_fork_prs_head_ref_by_name_writes_the_base_repos_branch() {
    let (w, n) = fork_world().await;
    let head = w.forge.pr(REPO, n).head_sha;
    let head_ref = get_json(&w.octo, &format!("/repos/{REPO}/pulls/{n}")).await["head"]["ref"]
        .as_str()
        .unwrap()
        .to_owned();
    // The naive bot: "update the PR's branch" by its name.
    let (status, body) = call(
        &w.octo,
        "PUT",
        &format!("/repos/{REPO}/contents/grants/prod/mallory.tf"),
        Some(json!({"message": "Render grant", "content": "IyBncmFudAo=", "branch": head_ref})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // It landed on the base repository's own main ...
    assert_eq!(
        w.forge
            .file_on(REPO, "main", "grants/prod/mallory.tf")
            .as_deref(),
        Some("# grant\n")
    );
    assert_eq!(w.forge.log(REPO, "main")[0].message, "Render grant");
    let push = payloads(&w.forge, "push", None);
    assert_eq!(push.len(), 1);
    assert_eq!(push[0]["ref"], "refs/heads/main");
    // ... and did nothing to the fork's PR.
    assert_eq!(w.forge.pr(REPO, n).head_sha, head);
    assert!(payloads(&w.forge, "pull_request", Some("synchronize")).is_empty());
    assert_eq!(w.forge.file_on(REPO, &head, "grants/prod/mallory.tf"), None);
}

#[tokio::test]
async fn fork_prs_are_found_by_owner_qualified_head_and_merge_from_the_fork() {
    let (w, n) = fork_world().await;
    let list = |head: &'static str| {
        let octo = w.octo.clone();
        async move {
            get_json(&octo, &format!("/repos/{REPO}/pulls?head={head}"))
                .await
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(list("mallory:main").await, 1);
    assert_eq!(list("acme:main").await, 0);

    // Closed and reopened, the fork PR keeps its head (no branch here to follow).
    let head = w.forge.pr(REPO, n).head_sha;
    w.forge.close_pr(REPO, n, &w.alice);
    w.forge.reopen_pr(REPO, n, &w.alice);
    assert_eq!(w.forge.pr(REPO, n).head_sha, head);

    let merged = w.octo.pulls(OWNER, NAME).merge(n).send().await.unwrap();
    assert!(merged.merged);
    let log = w.forge.log(REPO, "main");
    assert!(
        log[0]
            .message
            .starts_with(&format!("Merge pull request #{n} from mallory/main")),
        "{}",
        log[0].message
    );
    assert_eq!(log[0].parents[1], head);
    assert!(w.forge.file_on(REPO, "main", FILE).is_some());
}

#[tokio::test]
async fn a_fork_must_be_another_repository_with_a_valid_branch() {
    let w = world().await;
    let mallory = w.forge.user("mallory");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        w.forge
            .open_fork_pr(REPO, &mallory, REPO, "main", &[(FILE, "x")], "Access")
    }));
    assert!(result.is_err(), "a repository is not its own fork");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        w.forge
            .open_fork_pr(REPO, &mallory, FORK, "a..b", &[(FILE, "x")], "Access")
    }));
    assert!(result.is_err(), "a fork's branch needs a valid name");
    assert!(w.forge.prs(REPO).is_empty());
}
