//! The REST API through octocrab: routes and JSON shapes must fit octocrab's models exactly as
//! api.github.com's do.

mod common;

use breakglass_test_forge::ReviewState;
use common::*;
use octocrab::models::reactions::ReactionContent;
use octocrab::params::pulls::MergeMethod;
use octocrab::params::repos::Reference;

#[tokio::test]
async fn repository_reports_default_branch_owner_and_id() {
    let w = world().await;
    let repo = w.octo.repos(OWNER, NAME).get().await.unwrap();
    assert_eq!(repo.default_branch.as_deref(), Some("main"));
    assert_eq!(repo.full_name.as_deref(), Some(REPO));
    assert_eq!(repo.owner.unwrap().login, OWNER);
}

#[tokio::test]
async fn bot_creates_branch_writes_file_and_opens_pr() {
    let w = world().await;
    let repos = w.octo.repos(OWNER, NAME);
    let main = repos
        .get_ref(&Reference::Branch("main".into()))
        .await
        .unwrap();
    let main_sha = match main.object {
        octocrab::models::repos::Object::Commit { sha, .. } => sha,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(Some(main_sha.clone()), w.forge.branch_sha(REPO, "main"));

    repos
        .create_ref(
            &Reference::Branch("breakglass/alice/req-1".into()),
            main_sha.clone(),
        )
        .await
        .unwrap();
    let written = repos
        .create_file("requests/prod/req-1.yaml", "Add request", "role: admin\n")
        .branch("breakglass/alice/req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(written.content.path, "requests/prod/req-1.yaml");

    // The write is a real commit on the branch, by the bot, on top of main.
    let log = w.forge.log(REPO, "breakglass/alice/req-1");
    assert_eq!(log[0].message, "Add request");
    assert_eq!(log[0].author, "breakglass[bot]");
    assert_eq!(log[0].parents, vec![main_sha]);
    assert_eq!(
        w.forge
            .file_on(REPO, "breakglass/alice/req-1", "requests/prod/req-1.yaml")
            .as_deref(),
        Some("role: admin\n")
    );

    let pr = w
        .octo
        .pulls(OWNER, NAME)
        .create("Break-glass: prod admin", "breakglass/alice/req-1", "main")
        .body("Requested by @alice")
        .send()
        .await
        .unwrap();
    assert_eq!(pr.number, 1);
    assert_eq!(pr.head.ref_field, "breakglass/alice/req-1");
    assert_eq!(pr.base.ref_field, "main");
    assert_eq!(pr.user.unwrap().login, "breakglass[bot]");

    let files = w.octo.pulls(OWNER, NAME).list_files(1).await.unwrap();
    assert_eq!(files.items.len(), 1);
    assert_eq!(files.items[0].filename, "requests/prod/req-1.yaml");
    assert!(matches!(
        files.items[0].status,
        octocrab::models::repos::DiffEntryStatus::Added
    ));
}

#[tokio::test]
async fn contents_of_file_and_directory_and_missing_path() {
    let w = world().await;
    let repos = w.octo.repos(OWNER, NAME);
    let file = repos
        .get_content()
        .path("policies/prod.yaml")
        .r#ref("main")
        .send()
        .await
        .unwrap();
    assert_eq!(file.items.len(), 1);
    assert_eq!(
        file.items[0].decoded_content().as_deref(),
        Some("environment: prod\nmax_duration: 4h\n")
    );
    let dir = repos.get_content().path("policies").send().await.unwrap();
    assert_eq!(dir.items.len(), 1);
    assert_eq!(dir.items[0].r#type, "file");
    let err = repos
        .get_content()
        .path("nope.yaml")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(err), 404);
}

#[tokio::test]
async fn file_update_needs_the_current_blob_sha() {
    let w = world().await;
    let repos = w.octo.repos(OWNER, NAME);
    let current = repos
        .get_content()
        .path("README.md")
        .send()
        .await
        .unwrap()
        .items[0]
        .sha
        .clone();
    let stale = repos
        .update_file(
            "README.md",
            "Edit",
            "new\n",
            "0123456789012345678901234567890123456789",
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(stale), 409);
    // Without a sha GitHub refuses to overwrite an existing file.
    let missing = repos
        .create_file("README.md", "Edit", "new\n")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(missing), 422);
    repos
        .update_file("README.md", "Edit", "new\n", current.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        w.forge.file_on(REPO, "main", "README.md").as_deref(),
        Some("new\n")
    );

    let now = repos
        .get_content()
        .path("README.md")
        .send()
        .await
        .unwrap()
        .items[0]
        .sha
        .clone();
    repos
        .delete_file("README.md", "Remove readme", now)
        .send()
        .await
        .unwrap();
    assert_eq!(w.forge.file_on(REPO, "main", "README.md"), None);
    assert_eq!(w.forge.log(REPO, "main")[0].message, "Remove readme");
}

#[tokio::test]
async fn pr_is_read_with_head_sha_labels_and_mergeable() {
    let w = world().await;
    let n = alice_opens_request(&w, "req-1");
    w.forge.label(REPO, n, &w.alice, "sev1");
    let pr = w.octo.pulls(OWNER, NAME).get(n).await.unwrap();
    assert_eq!(pr.head.sha, w.forge.pr(REPO, n).head_sha);
    assert_eq!(pr.mergeable, Some(true));
    assert_eq!(pr.merged_at, None);
    let labels: Vec<String> = pr.labels.unwrap().into_iter().map(|l| l.name).collect();
    assert_eq!(labels, vec!["sev1"]);

    let open = w
        .octo
        .pulls(OWNER, NAME)
        .list()
        .state(octocrab::params::State::Open)
        .send()
        .await
        .unwrap();
    assert_eq!(open.items.len(), 1);
}

#[tokio::test]
async fn pr_and_issue_numbers_share_one_sequence() {
    let w = world().await;
    let issue = w.forge.open_issue(REPO, &w.alice, "Need access", "please");
    let pr = alice_opens_request(&w, "req-1");
    assert_eq!((issue, pr), (1, 2));
    let as_issue = w.octo.issues(OWNER, NAME).get(pr).await.unwrap();
    assert!(as_issue.pull_request.is_some());
    let plain = w.octo.issues(OWNER, NAME).get(issue).await.unwrap();
    assert!(plain.pull_request.is_none());
    let err = w.octo.pulls(OWNER, NAME).get(issue).await.unwrap_err();
    assert_eq!(status_of(err), 404);
}

#[tokio::test]
async fn comments_are_created_edited_with_post_and_listed() {
    let w = world().await;
    let n = alice_opens_request(&w, "req-1");
    let issues = w.octo.issues(OWNER, NAME);
    let c = issues.create_comment(n, "Checking policy…").await.unwrap();
    // octocrab edits with POST where GitHub documents PATCH.
    issues
        .update_comment(c.id, "Policy check passed")
        .await
        .unwrap();
    w.forge.comment(REPO, n, &w.alice, "/breakglass status");
    let listed = issues.list_comments(n).send().await.unwrap();
    let bodies: Vec<_> = listed
        .items
        .iter()
        .map(|c| c.body.clone().unwrap())
        .collect();
    assert_eq!(bodies, vec!["Policy check passed", "/breakglass status"]);
    let seen = w.forge.comments(REPO, n);
    assert_eq!(seen[0].user, "breakglass[bot]");
    assert_eq!(seen[1].user_id, w.alice.id);
    issues.delete_comment(c.id).await.unwrap();
    assert_eq!(w.forge.comments(REPO, n).len(), 1);
}

#[tokio::test]
async fn reactions_are_listed_and_filtered_by_content() {
    let w = world().await;
    let n = alice_opens_request(&w, "req-1");
    let carol = w.forge.user("carol");
    w.forge.react(REPO, n, &carol, "+1");
    w.forge.react(REPO, n, &w.alice, "eyes");
    let issues = w.octo.issues(OWNER, NAME);
    let all = issues.list_reactions(n).send().await.unwrap();
    assert_eq!(all.items.len(), 2);
    assert_eq!(all.items[0].user.login, "carol");
    assert_eq!(all.items[0].user.id.0, carol.id);
    assert!(matches!(all.items[0].content, ReactionContent::PlusOne));
    let plus: serde_json::Value = w
        .octo
        .get(
            format!("/repos/{REPO}/issues/{n}/reactions?content=%2B1&per_page=100"),
            None::<&()>,
        )
        .await
        .unwrap();
    assert_eq!(plus.as_array().unwrap().len(), 1);

    let c = w.forge.comment(REPO, n, &w.alice, "please approve");
    let r = issues
        .create_comment_reaction(c, ReactionContent::Rocket)
        .await
        .unwrap();
    assert_eq!(w.forge.comment_reactions(REPO, c)[0].id, r.id.0);
    let err = w
        .octo
        ._post(
            format!("/repos/{REPO}/issues/{n}/reactions"),
            Some(&serde_json::json!({"content": "thumbsup"})),
        )
        .await
        .unwrap();
    assert_eq!(err.status().as_u16(), 422);
}

async fn get_reactions(w: &World, n: u64, etag: Option<&str>) -> (u16, Option<String>, String) {
    let mut headers = http::HeaderMap::new();
    if let Some(e) = etag {
        headers.insert(http::header::IF_NONE_MATCH, e.parse().unwrap());
    }
    let resp = w
        .octo
        ._get_with_headers(
            format!("/repos/{REPO}/issues/{n}/reactions?per_page=100"),
            Some(headers),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let tag = resp
        .headers()
        .get(http::header::ETAG)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = w.octo.body_to_string(resp).await.unwrap();
    (status, tag, body)
}

#[tokio::test]
async fn reactions_etag_gives_304_until_a_new_reaction() {
    let w = world().await;
    let n = alice_opens_request(&w, "req-1");
    let carol = w.forge.user("carol");
    w.forge.react(REPO, n, &carol, "eyes");

    let (status, etag, _) = get_reactions(&w, n, None).await;
    assert_eq!(status, 200);
    let etag = etag.expect("an ETag");
    assert!(
        etag.starts_with('"') && !etag.starts_with("W/"),
        "strong ETag: {etag}"
    );

    w.forge.reset_calls();
    let (status, again, body) = get_reactions(&w, n, Some(&etag)).await;
    assert_eq!(status, 304);
    assert_eq!(again.as_deref(), Some(etag.as_str()));
    assert!(body.is_empty());
    let calls = w.forge.calls();
    assert_eq!(
        (calls.total, calls.not_modified, calls.rate_limited_cost),
        (1, 1, 0)
    );

    w.forge.react(REPO, n, &carol, "+1");
    let (status, newer, body) = get_reactions(&w, n, Some(&etag)).await;
    assert_eq!(status, 200);
    assert_ne!(newer.as_deref(), Some(etag.as_str()));
    assert!(body.contains("\"+1\""));
    let calls = w.forge.calls();
    let route = "/repos/{owner}/{repo}/issues/{number}/reactions";
    assert_eq!(
        (calls.count("GET", route), calls.rate_limited("GET", route)),
        (2, 1),
        "per route: the 304 is free, the 200 after the new reaction is not"
    );
}

#[tokio::test]
async fn labels_are_added_removed_and_replaced() {
    let w = world().await;
    let n = alice_opens_request(&w, "req-1");
    let issues = w.octo.issues(OWNER, NAME);
    let labels = issues
        .add_labels(n, &["breakglass/pending".to_owned(), "sev1".to_owned()])
        .await
        .unwrap();
    assert_eq!(labels.len(), 2);
    issues.remove_label(n, "breakglass/pending").await.unwrap();
    assert_eq!(w.forge.labels(REPO, n), vec!["sev1"]);
    let err = issues.remove_label(n, "absent").await.unwrap_err();
    assert_eq!(status_of(err), 404);
    issues
        .replace_all_labels(n, &["breakglass/needs-review".to_owned()])
        .await
        .unwrap();
    assert_eq!(w.forge.labels(REPO, n), vec!["breakglass/needs-review"]);
    // A bare array body is accepted too.
    let resp = w
        .octo
        ._post(
            format!("/repos/{REPO}/issues/{n}/labels"),
            Some(&serde_json::json!(["x"])),
        )
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        w.forge.labels(REPO, n),
        vec!["breakglass/needs-review", "x"]
    );
}

#[tokio::test]
async fn commit_status_and_check_run_are_recorded_on_the_head() {
    let w = world().await;
    let n = alice_opens_request(&w, "req-1");
    let head = w.forge.pr(REPO, n).head_sha;
    w.octo
        .repos(OWNER, NAME)
        .create_status(head.clone(), octocrab::models::StatusState::Failure)
        .context("breakglass/policy".to_owned())
        .description("role admin needs 1 approval".to_owned())
        .send()
        .await
        .unwrap();
    let statuses = w.forge.statuses(REPO, &head);
    assert_eq!(statuses.len(), 1);
    assert_eq!(
        (statuses[0].state.as_str(), statuses[0].context.as_str()),
        ("failure", "breakglass/policy")
    );
    assert_eq!(statuses[0].creator, "breakglass[bot]");
    let listed: serde_json::Value = w
        .octo
        .get(format!("/repos/{REPO}/commits/req-1/statuses"), None::<&()>)
        .await
        .unwrap();
    assert_eq!(listed[0]["context"], "breakglass/policy");

    let checks = w.octo.checks(OWNER, NAME);
    let run = checks
        .create_check_run("breakglass/policy", head.clone())
        .status(octocrab::params::checks::CheckRunStatus::InProgress)
        .send()
        .await
        .unwrap();
    checks
        .update_check_run(run.id)
        .conclusion(octocrab::params::checks::CheckRunConclusion::Success)
        .send()
        .await
        .unwrap();
    let runs = w.forge.check_runs(REPO, &head);
    assert_eq!(runs[0].status, "completed");
    assert_eq!(runs[0].conclusion.as_deref(), Some("success"));
    let listed = checks
        .list_check_runs_for_git_ref(octocrab::params::repos::Commitish(head.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.total_count, 1);
}

#[tokio::test]
async fn merge_with_a_stale_sha_is_409() {
    let w = world().await;
    let n = alice_opens_request(&w, "req-1");
    let stale = w.forge.pr(REPO, n).head_sha;
    w.forge.push_files(
        REPO,
        "req-1",
        &w.alice,
        &[("requests/prod/req-1.yaml", "role: root\n")],
        "sneaky",
    );
    let err = w
        .octo
        .pulls(OWNER, NAME)
        .merge(n)
        .sha(stale)
        .method(MergeMethod::Merge)
        .send()
        .await
        .unwrap_err();
    match err {
        octocrab::Error::GitHub { source, .. } => {
            assert_eq!(source.status_code.as_u16(), 409);
            assert_eq!(
                source.message,
                "Head branch was modified. Review and try the merge again."
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!w.forge.pr(REPO, n).merged);
}

#[tokio::test]
async fn merge_makes_a_real_two_parent_merge_commit() {
    let w = world().await;
    let n = alice_opens_request(&w, "req-1");
    let head = w.forge.pr(REPO, n).head_sha;
    let base_before = w.forge.branch_sha(REPO, "main").unwrap();
    let merged = w
        .octo
        .pulls(OWNER, NAME)
        .merge(n)
        .sha(head.clone())
        .method(MergeMethod::Merge)
        .title("Grant prod admin to alice (#1)")
        .message("Breakglass-Request: req-1\nBreakglass-Requester: alice")
        .send()
        .await
        .unwrap();
    assert!(merged.merged);
    let sha = merged.sha.unwrap();

    let repo = git2::Repository::open_bare(w.forge.repo_path(REPO)).unwrap();
    let commit = repo
        .find_commit(git2::Oid::from_str(&sha).unwrap())
        .unwrap();
    let parents: Vec<String> = commit.parent_ids().map(|p| p.to_string()).collect();
    assert_eq!(parents, vec![base_before, head]);
    assert_eq!(
        commit.message().unwrap(),
        "Grant prod admin to alice (#1)\n\nBreakglass-Request: req-1\nBreakglass-Requester: alice"
    );
    assert_eq!(
        repo.find_reference("refs/heads/main")
            .unwrap()
            .target()
            .unwrap()
            .to_string(),
        sha
    );
    let log = w.forge.log(REPO, "main");
    assert_eq!(log[0].sha, sha);
    assert_eq!(log[0].parents.len(), 2);
    assert_eq!(log[0].author, "breakglass[bot]");

    let pr = w.forge.pr(REPO, n);
    assert!(pr.merged);
    assert_eq!(pr.state, "closed");
    assert_eq!(pr.merge_commit_sha.as_deref(), Some(sha.as_str()));
    let via_api = w.octo.pulls(OWNER, NAME).get(n).await.unwrap();
    assert_eq!(via_api.merge_commit_sha.as_deref(), Some(sha.as_str()));
    assert!(via_api.merged_at.is_some());
    assert_eq!(
        w.forge
            .file_on(REPO, "main", "requests/prod/req-1.yaml")
            .as_deref(),
        Some("environment: prod\nrole: admin\nduration: 1h\n")
    );
}

#[tokio::test]
async fn merging_twice_is_405() {
    let w = world().await;
    let n = alice_opens_request(&w, "req-1");
    w.octo.pulls(OWNER, NAME).merge(n).send().await.unwrap();
    let err = w.octo.pulls(OWNER, NAME).merge(n).send().await.unwrap_err();
    assert_eq!(status_of(err), 405);
}

#[tokio::test]
async fn conflicting_pr_is_not_mergeable() {
    let w = world().await;
    let n = alice_opens_request(&w, "req-1");
    w.forge.push_direct(
        REPO,
        &w.alice,
        &[("requests/prod/req-1.yaml", "something else\n")],
        "conflict",
    );
    let pr = w.octo.pulls(OWNER, NAME).get(n).await.unwrap();
    assert_eq!(pr.mergeable, Some(false));
    let err = w.octo.pulls(OWNER, NAME).merge(n).send().await.unwrap_err();
    assert_eq!(status_of(err), 405);
}

#[tokio::test]
async fn squash_merge_has_one_parent() {
    let w = world().await;
    let n = alice_opens_request(&w, "req-1");
    w.octo
        .pulls(OWNER, NAME)
        .merge(n)
        .method(MergeMethod::Squash)
        .send()
        .await
        .unwrap();
    let log = w.forge.log(REPO, "main");
    assert_eq!(log[0].parents.len(), 1);
    assert_eq!(log[0].message, "Break-glass: prod admin (#1)");
}

#[tokio::test]
async fn reviews_carry_commit_id_and_author_cannot_approve() {
    let w = world().await;
    let n = alice_opens_request(&w, "req-1");
    let carol = w.forge.user("carol");
    w.forge.review(REPO, n, &carol, ReviewState::Approved);
    let reviews = w
        .octo
        .pulls(OWNER, NAME)
        .list_reviews(n)
        .send()
        .await
        .unwrap();
    assert_eq!(reviews.items.len(), 1);
    assert_eq!(
        reviews.items[0].commit_id.as_deref(),
        Some(w.forge.pr(REPO, n).head_sha.as_str())
    );
    assert!(matches!(
        reviews.items[0].state,
        Some(octocrab::models::pulls::ReviewState::Approved)
    ));
    let alice_octo = octocrab_with(&w.forge, &w.forge.token_for(&w.alice));
    let resp = alice_octo
        ._post(
            format!("/repos/{REPO}/pulls/{n}/reviews"),
            Some(&serde_json::json!({"event": "APPROVE"})),
        )
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
}

#[tokio::test]
async fn compare_tree_and_commit_show_the_real_history() {
    let w = world().await;
    let n = alice_opens_request(&w, "req-1");
    let head = w.forge.pr(REPO, n).head_sha;
    let main = w.forge.branch_sha(REPO, "main").unwrap();
    let cmp = w
        .octo
        .commits(OWNER, NAME)
        .compare("main", "req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(cmp.merge_base_commit.sha, main);
    let files = cmp.files.unwrap();
    assert_eq!(files[0].filename, "requests/prod/req-1.yaml");

    let commit = w.octo.commits(OWNER, NAME).get(head.clone()).await.unwrap();
    assert_eq!(commit.commit.message, "Request prod admin");
    assert_eq!(commit.parents[0].sha.as_deref(), Some(main.as_str()));

    let tree: serde_json::Value = w
        .octo
        .get(
            format!("/repos/{REPO}/git/trees/{head}?recursive=1"),
            None::<&()>,
        )
        .await
        .unwrap();
    let paths: Vec<&str> = tree["tree"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "blob")
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        vec![
            "README.md",
            "policies/prod.yaml",
            "requests/prod/req-1.yaml"
        ]
    );
}

#[tokio::test]
async fn ref_update_and_delete_move_real_branches() {
    let w = world().await;
    let main = w.forge.branch_sha(REPO, "main").unwrap();
    w.octo
        .repos(OWNER, NAME)
        .create_ref(&Reference::Branch("feature/x".into()), main.clone())
        .await
        .unwrap();
    let dup = w
        .octo
        .repos(OWNER, NAME)
        .create_ref(&Reference::Branch("feature/x".into()), main.clone())
        .await
        .unwrap_err();
    assert_eq!(status_of(dup), 422);
    let branch: serde_json::Value = w
        .octo
        .get(format!("/repos/{REPO}/branches/feature/x"), None::<&()>)
        .await
        .unwrap();
    assert_eq!(branch["commit"]["sha"], main.as_str());
    let resp = w
        .octo
        ._delete(
            format!("/repos/{REPO}/git/refs/heads/feature/x"),
            None::<&()>,
        )
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(w.forge.branch_sha(REPO, "feature/x"), None);
}

#[tokio::test]
async fn unknown_token_is_401_with_a_github_error_body() {
    let w = world().await;
    let stranger = octocrab_with(&w.forge, "ghp_not_a_real_token");
    let err = stranger.repos(OWNER, NAME).get().await.unwrap_err();
    match err {
        octocrab::Error::GitHub { source, .. } => {
            assert_eq!(source.status_code.as_u16(), 401);
            assert_eq!(source.message, "Bad credentials");
            assert!(source.documentation_url.is_some());
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bad_input_is_a_4xx_json_error_not_a_crash() {
    let w = world().await;
    for (method, path, body) in [
        ("POST", format!("/repos/{REPO}/pulls"), "{not json"),
        ("POST", format!("/repos/{REPO}/pulls"), "{\"title\": 1}"),
        ("PUT", format!("/repos/{REPO}/pulls/abc/merge"), "{}"),
        (
            "PUT",
            format!("/repos/{REPO}/contents/x.txt"),
            "{\"message\":\"m\",\"content\":\"%%%\"}",
        ),
        (
            "POST",
            format!("/repos/{REPO}/statuses/main"),
            "{\"state\":\"bogus\"}",
        ),
        (
            "POST",
            format!("/repos/{REPO}/issues/99/comments"),
            "{\"body\":\"x\"}",
        ),
        ("GET", format!("/repos/{REPO}/contents/x?ref=nope"), ""),
        (
            "PUT",
            format!("/repos/{REPO}/contents/a/../b"),
            "{\"message\":\"m\",\"content\":\"eA==\"}",
        ),
        (
            "PUT",
            format!("/repos/{REPO}/contents/a//b"),
            "{\"message\":\"m\",\"content\":\"eA==\"}",
        ),
        (
            "PUT",
            format!("/repos/{REPO}/contents/.git/config"),
            "{\"message\":\"m\",\"content\":\"eA==\"}",
        ),
        (
            "POST",
            format!("/repos/{REPO}/git/refs"),
            "{\"ref\":\"refs/heads/a..b\",\"sha\":\"x\"}",
        ),
        (
            "POST",
            format!("/repos/{REPO}/git/refs"),
            "{\"ref\":\"main\",\"sha\":\"x\"}",
        ),
        (
            "PATCH",
            format!("/repos/{REPO}/git/refs/heads/main"),
            "{\"sha\":\"0000000000000000000000000000000000000000\"}",
        ),
        ("DELETE", format!("/repos/{REPO}/git/refs/heads/main"), ""),
        (
            "POST",
            format!("/repos/{REPO}/check-runs"),
            "{\"name\":\"x\",\"head_sha\":\"nope\"}",
        ),
        ("PATCH", format!("/repos/{REPO}/check-runs/999"), "{}"),
        (
            "POST",
            format!("/repos/{REPO}/pulls/1/reviews"),
            "{\"event\":\"APPROVE\"}",
        ),
        (
            "POST",
            format!("/repos/{REPO}/issues/comments/5/reactions"),
            "{\"content\":\"+1\"}",
        ),
        ("GET", format!("/repos/{REPO}/compare/main...nope"), ""),
        ("GET", format!("/repos/{REPO}/git/trees/nope"), ""),
        ("POST", "/app/installations/1/access_tokens".to_owned(), ""),
        ("GET", "/repos/nobody/nothing".to_owned(), ""),
    ] {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", w.forge.api_url()))
            .header(
                "authorization",
                format!("Bearer {}", w.forge.token_for(&w.bot)),
            )
            .body(octocrab::OctoBody::from(body.to_owned()))
            .unwrap();
        let resp = w.octo.execute(req).await.unwrap();
        let status = resp.status().as_u16();
        let text = w.octo.body_to_string(resp).await.unwrap();
        assert!(
            (400..500).contains(&status),
            "{method} {path}: {status} {text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(
            v["message"].is_string() && v["documentation_url"].is_string(),
            "{text}"
        );
    }
}

#[tokio::test]
async fn every_response_carries_rate_limit_headers() {
    let w = world().await;
    let resp = w.octo._get(format!("/repos/{REPO}")).await.unwrap();
    for h in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-ratelimit-used",
        "x-ratelimit-resource",
    ] {
        assert!(resp.headers().contains_key(h), "missing {h}");
    }
    let err = w
        .octo
        ._get(format!("/repos/{REPO}/issues/42"))
        .await
        .unwrap();
    assert_eq!(err.status().as_u16(), 404);
    assert!(err.headers().contains_key("x-ratelimit-remaining"));
}

#[tokio::test]
async fn team_membership_is_active_for_members_and_404_otherwise() {
    let w = world().await;
    w.forge.add_team_member("acme/sre", &w.alice);
    let member: serde_json::Value = w
        .octo
        .get("/orgs/acme/teams/sre/memberships/alice", None::<&()>)
        .await
        .unwrap();
    assert_eq!(member["state"], "active");
    assert_eq!(member["role"], "member");
    let resp = w
        .octo
        ._get("/orgs/acme/teams/sre/memberships/mallory")
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);

    let user = w.octo.users("alice").profile().await.unwrap();
    assert_eq!(user.id.0, w.alice.id);
    let me = w.octo.current().user().await.unwrap();
    assert_eq!(me.login, "breakglass[bot]");
    assert_eq!(me.r#type, "Bot");
}

#[tokio::test]
async fn installation_token_flow_issues_expiring_tokens() {
    let w = world().await;
    w.forge.configure_app(breakglass_test_forge::AppConfig {
        app_id: 4242,
        installation_id: 77,
        bot_login: "breakglass[bot]".into(),
        token_ttl: chrono::Duration::seconds(2),
    });
    let app = octocrab_with(&w.forge, &jwt(4242));
    let inst: serde_json::Value = app
        .get(format!("/repos/{REPO}/installation"), None::<&()>)
        .await
        .unwrap();
    assert_eq!(inst["id"], 77);
    let token: octocrab::models::InstallationToken = app
        .post("/app/installations/77/access_tokens", None::<&()>)
        .await
        .unwrap();
    assert!(token.token.starts_with("ghs_"));
    assert!(token.expires_at.is_some());

    let as_bot = octocrab_with(&w.forge, &token.token);
    let c = as_bot
        .issues(OWNER, NAME)
        .create_comment(w.forge.open_issue(REPO, &w.alice, "t", ""), "hello")
        .await
        .unwrap();
    assert_eq!(c.user.login, "breakglass[bot]");

    // Wrong issuer and user tokens cannot mint installation tokens.
    let wrong = octocrab_with(&w.forge, &jwt(1));
    let resp = wrong
        ._post("/app/installations/77/access_tokens", None::<&()>)
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = w
        .octo
        ._post("/app/installations/77/access_tokens", None::<&()>)
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    // The forge's clock, not a sleep, runs the token out.
    w.forge.advance_clock(chrono::Duration::seconds(3));
    let expired = as_bot._get(format!("/repos/{REPO}")).await.unwrap();
    assert_eq!(expired.status().as_u16(), 401);
}

#[tokio::test]
async fn advancing_the_clock_stamps_later_events_later() {
    let w = world().await;
    let n = alice_opens_request(&w, "req-1");
    let carol = w.forge.user("carol");
    // GitHub's timestamps have whole seconds.
    let before = w.forge.now() - chrono::Duration::seconds(1);
    w.forge.advance_clock(chrono::Duration::hours(2));
    w.forge.react(REPO, n, &carol, "+1");
    let c = w.forge.comment(REPO, n, &carol, "late");
    let reaction = &w.forge.reactions(REPO, n)[0];
    assert!(reaction.created_at >= before + chrono::Duration::hours(2));
    let comment = w
        .octo
        .issues(OWNER, NAME)
        .get_comment(c.into())
        .await
        .unwrap();
    assert!(comment.created_at >= before + chrono::Duration::hours(2));
    let sha = w
        .forge
        .push_files(REPO, "req-1", &w.alice, &[("a.txt", "a")], "later");
    let commit = w.octo.commits(OWNER, NAME).get(sha).await.unwrap();
    let date = commit.commit.author.unwrap().date.unwrap();
    assert!(date >= before + chrono::Duration::hours(2));
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo` (what jsonwebtoken wants).
fn pkcs1_from_pkcs8(der: &[u8]) -> Vec<u8> {
    fn header(der: &[u8], i: &mut usize, tag: u8) -> usize {
        assert_eq!(der[*i], tag, "unexpected DER tag");
        *i += 1;
        let first = der[*i];
        *i += 1;
        if first < 0x80 {
            return usize::from(first);
        }
        let mut len = 0;
        for _ in 0..(first & 0x7f) {
            len = (len << 8) | usize::from(der[*i]);
            *i += 1;
        }
        len
    }
    let mut i = 0;
    header(der, &mut i, 0x30);
    let version = header(der, &mut i, 0x02);
    i += version;
    let algorithm = header(der, &mut i, 0x30);
    i += algorithm;
    let key = header(der, &mut i, 0x04);
    der[i..i + key].to_vec()
}

#[tokio::test]
async fn octocrab_app_auth_gets_an_installation_token_and_acts_as_the_bot() {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    let w = world().await;
    w.forge.configure_app(breakglass_test_forge::AppConfig {
        app_id: 4242,
        installation_id: 77,
        bot_login: "breakglass[bot]".into(),
        token_ttl: chrono::Duration::hours(1),
    });
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let pkcs8: Pkcs8V1Der<'static> = pair.as_der().unwrap();
    let key = octocrab::EncodingKey::from_rsa_der(&pkcs1_from_pkcs8(pkcs8.as_ref()));
    let app = octocrab::Octocrab::builder()
        .base_uri(w.forge.api_url())
        .unwrap()
        .app(octocrab::models::AppId(4242), key)
        .build()
        .unwrap();
    let installation = app
        .installation(octocrab::models::InstallationId(77))
        .unwrap();
    let n = alice_opens_request(&w, "req-1");
    let comment = installation
        .issues(OWNER, NAME)
        .create_comment(n, "Request received")
        .await
        .unwrap();
    assert_eq!(comment.user.login, "breakglass[bot]");
    assert_eq!(comment.user.r#type, "Bot");
    assert_eq!(
        w.forge
            .calls()
            .count("POST", "/app/installations/{id}/access_tokens"),
        1
    );
}

#[tokio::test]
async fn git_data_api_writes_several_files_in_one_commit() {
    let w = world().await;
    let n = alice_opens_request(&w, "req-1");
    let head = w.forge.pr(REPO, n).head_sha;
    let post = |path: String, body: serde_json::Value| {
        let octo = w.octo.clone();
        async move {
            octo.post::<_, serde_json::Value>(path, Some(&body))
                .await
                .unwrap()
        }
    };
    let blob = post(
        format!("/repos/{REPO}/git/blobs"),
        serde_json::json!({"content": "cHJpbmNpcGFsOiBhbGljZQo=", "encoding": "base64"}),
    )
    .await;
    let tree = post(
        format!("/repos/{REPO}/git/trees"),
        serde_json::json!({
            "base_tree": head,
            "tree": [
                {"path": "grants/prod/req-1.json", "mode": "100644", "type": "blob", "sha": blob["sha"]},
                {"path": "grants/prod/req-1.tf", "mode": "100644", "type": "blob", "content": "# rendered\n"},
                {"path": "README.md", "mode": "100644", "type": "blob", "sha": null},
            ],
        }),
    )
    .await;
    let commit = post(
        format!("/repos/{REPO}/git/commits"),
        serde_json::json!({"message": "Render grant files", "tree": tree["sha"], "parents": [head]}),
    )
    .await;
    let sha = commit["sha"].as_str().unwrap().to_owned();
    assert_eq!(commit["parents"][0]["sha"], head.as_str());
    // Nothing moved until the ref is updated.
    assert_eq!(w.forge.pr(REPO, n).head_sha, head);
    let resp = w
        .octo
        ._patch(
            format!("/repos/{REPO}/git/refs/heads/req-1"),
            Some(&serde_json::json!({"sha": sha})),
        )
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(w.forge.pr(REPO, n).head_sha, sha);
    assert_eq!(
        w.forge
            .file_on(REPO, "req-1", "grants/prod/req-1.json")
            .as_deref(),
        Some("principal: alice\n")
    );
    assert_eq!(w.forge.file_on(REPO, "req-1", "README.md"), None);
    let log = w.forge.log(REPO, "req-1");
    assert_eq!(
        (log[0].message.as_str(), log[0].author.as_str()),
        ("Render grant files", "breakglass[bot]")
    );
    let files = w.octo.pulls(OWNER, NAME).list_files(n).await.unwrap();
    let mut names: Vec<_> = files.items.iter().map(|f| f.filename.clone()).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "README.md",
            "grants/prod/req-1.json",
            "grants/prod/req-1.tf",
            "requests/prod/req-1.yaml"
        ]
    );
    // A non-fast-forward move needs force.
    let back = w
        .octo
        ._patch(
            format!("/repos/{REPO}/git/refs/heads/req-1"),
            Some(&serde_json::json!({"sha": head})),
        )
        .await
        .unwrap();
    assert_eq!(back.status().as_u16(), 422);
}

#[tokio::test]
async fn long_lists_are_paginated_with_link_headers() {
    let w = world().await;
    let n = alice_opens_request(&w, "req-1");
    for i in 0..5 {
        let u = w.forge.user(&format!("user{i}"));
        w.forge.react(REPO, n, &u, "+1");
    }
    let first = w
        .octo
        .issues(OWNER, NAME)
        .list_reactions(n)
        .per_page(2)
        .send()
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    let next = first.next.clone().expect("a next link");
    assert!(next.to_string().contains("page=2"), "{next}");
    let all = w.octo.all_pages(first).await.unwrap();
    let users: Vec<_> = all.iter().map(|r| r.user.login.clone()).collect();
    assert_eq!(users, vec!["user0", "user1", "user2", "user3", "user4"]);

    // The `content` filter survives into the next link, `+` encoded.
    let resp = w
        .octo
        ._get(format!(
            "/repos/{REPO}/issues/{n}/reactions?content=%2B1&per_page=2"
        ))
        .await
        .unwrap();
    let link = resp.headers()["link"].to_str().unwrap().to_owned();
    assert!(link.contains("content=%2B1"), "{link}");
}

/// The `rel="next"` target of a `Link` header, as a path on the forge.
fn next_link(resp: &http::Response<impl Sized>, base: &str) -> Option<String> {
    let link = resp.headers().get("link")?.to_str().ok()?;
    link.split(", ")
        .find(|l| l.ends_with("rel=\"next\""))
        .and_then(|l| l.strip_prefix('<'))
        .and_then(|l| l.split_once('>'))
        .map(|(url, _)| url.trim_start_matches(base).to_owned())
}

#[tokio::test]
async fn a_hundred_and_fifty_reactions_and_reviews_come_in_pages_of_at_most_a_hundred() {
    let w = world().await;
    let n = alice_opens_request(&w, "req-1");
    for i in 0..150 {
        let u = w.forge.user(&format!("reactor{i:03}"));
        w.forge.react(REPO, n, &u, "+1");
    }
    let carol = w.forge.user("carol");
    for _ in 0..150 {
        w.forge.review(REPO, n, &carol, ReviewState::Commented);
    }
    for route in [
        format!("/repos/{REPO}/issues/{n}/reactions"),
        format!("/repos/{REPO}/pulls/{n}/reviews"),
    ] {
        // per_page above GitHub's maximum is served as 100.
        let first = w.octo._get(format!("{route}?per_page=500")).await.unwrap();
        assert_eq!(first.status().as_u16(), 200);
        let next = next_link(&first, &w.forge.api_url()).expect("a next link");
        assert!(next.contains("page=2"), "{next}");
        let page1: serde_json::Value =
            serde_json::from_str(&w.octo.body_to_string(first).await.unwrap()).unwrap();
        let second = w.octo._get(next).await.unwrap();
        assert_eq!(next_link(&second, &w.forge.api_url()), None, "{route}");
        let page2: serde_json::Value =
            serde_json::from_str(&w.octo.body_to_string(second).await.unwrap()).unwrap();
        let ids: Vec<u64> = page1
            .as_array()
            .unwrap()
            .iter()
            .chain(page2.as_array().unwrap())
            .map(|x| x["id"].as_u64().unwrap())
            .collect();
        assert_eq!(page1.as_array().unwrap().len(), 100, "{route}");
        assert_eq!(ids.len(), 150, "{route}");
        // Oldest first, each once.
        assert!(ids.windows(2).all(|p| p[0] < p[1]), "{route}");
    }
    // octocrab's own paging walks the same links.
    let first = w
        .octo
        .issues(OWNER, NAME)
        .list_reactions(n)
        .per_page(100)
        .send()
        .await
        .unwrap();
    assert_eq!(first.items.len(), 100);
    assert_eq!(w.octo.all_pages(first).await.unwrap().len(), 150);
    let reviews = w
        .octo
        .pulls(OWNER, NAME)
        .list_reviews(n)
        .per_page(100)
        .send()
        .await
        .unwrap();
    assert_eq!(w.octo.all_pages(reviews).await.unwrap().len(), 150);
}

#[tokio::test]
async fn compare_lists_at_most_300_files_as_github_does() {
    let w = world().await;
    let names: Vec<String> = (0..301).map(|i| format!("many/f{i:03}.txt")).collect();
    let files: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "x\n")).collect();
    w.forge
        .push_files(REPO, "many", &w.alice, &files, "301 files");
    let cmp = get_json(&w.octo, &format!("/repos/{REPO}/compare/main...many")).await;
    assert_eq!(cmp["files"].as_array().map(Vec::len), Some(300));
    assert_eq!(cmp["ahead_by"], 1);
    assert_eq!(cmp["files"][0]["filename"], "many/f000.txt");
}
