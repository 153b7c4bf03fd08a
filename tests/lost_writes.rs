//! The forge clients' writes whose answer is lost: the forge did the work and a gateway
//! answered 504. Each is looked for before it is made again (made again, it would be refused:
//! the branch or the file is there already), and a commit or a merge request someone else put
//! there in the meantime is never taken for the bot's own.

use breakglass::forge::github::{GithubAuth, GithubClient};
use breakglass::forge::gitlab::{GitlabAuth, GitlabClient};
use breakglass::secret::Secret;
use breakglass_test_forge::{
    BranchDetour, FailureKind, FailureSpec, FileChange, RouteMatcher, TestForge,
};
use http::Method;

const REPO: &str = "acme/access-requests";
const PATH: &str = "requests/prod/r1.yaml";
const MESSAGE: &str = "breakglass: request r1: add requests/prod/r1.yaml";

async fn forge_and_client() -> (TestForge, GithubClient, String) {
    let forge = TestForge::start().await;
    forge.create_repo(REPO, &[("README.md", "# requests\n")]);
    let bot = forge.user("breakglass-bot");
    let token = Secret::new(forge.token_for(&bot));
    let client = GithubClient::connect(&forge.api_url(), REPO, GithubAuth::Token(token))
        .await
        .unwrap();
    let main = forge.branch_sha(REPO, "main").unwrap();
    (forge, client, main)
}

fn lose_the_answer(forge: &TestForge, method: Method, template: &str) {
    forge.fail_next(FailureSpec {
        route: RouteMatcher::Route {
            method: Some(method),
            template: template.to_owned(),
        },
        count: 1,
        kind: FailureKind::AnswerLost,
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_and_a_file_written_with_their_answers_lost_are_found_written_once() {
    let (forge, client, main) = forge_and_client().await;
    lose_the_answer(&forge, Method::POST, "/repos/{owner}/{repo}/git/refs");
    client.create_branch("bg/r1", &main).await.unwrap();
    assert_eq!(forge.branch_sha(REPO, "bg/r1").unwrap(), main);

    lose_the_answer(
        &forge,
        Method::PUT,
        "/repos/{owner}/{repo}/contents/{*path}",
    );
    let text = "environment: prod\n";
    let head = client
        .put_file("bg/r1", &main, PATH, text, MESSAGE, None)
        .await
        .unwrap();
    assert_eq!(forge.branch_sha(REPO, "bg/r1").unwrap(), head);
    assert_eq!(forge.file_on(REPO, "bg/r1", PATH).unwrap(), text);
    assert_eq!(forge.log(REPO, "bg/r1").len(), 2, "one commit on main's");

    lose_the_answer(
        &forge,
        Method::DELETE,
        "/repos/{owner}/{repo}/contents/{*path}",
    );
    let blob = git2::Oid::hash_object(git2::ObjectType::Blob, text.as_bytes()).unwrap();
    let removed = "breakglass: revert r1: remove requests/prod/r1.yaml";
    let after = client
        .delete_file("bg/r1", &head, PATH, removed, &blob.to_string())
        .await
        .unwrap();
    assert_eq!(forge.branch_sha(REPO, "bg/r1").unwrap(), after);
    assert_eq!(forge.file_on(REPO, "bg/r1", PATH), None);
}

/// mallory's commit `hers` (the bot's message, on `main`) is what the bot's branch shows while
/// the bot looks for its write of `text`, whose answer was lost: the look must not take it, so
/// the write is made again and refused, the bot's own being there: an error, never hers.
async fn a_look_meets(
    forge: &TestForge,
    client: &GithubClient,
    main: &str,
    hers: &str,
    text: &str,
) {
    assert_eq!(forge.log(REPO, hers)[0].parents, [main]);
    forge.detour_branch(BranchDetour {
        route: RouteMatcher::Route {
            method: Some(Method::GET),
            template: "/repos/{owner}/{repo}/git/ref/{*ref}".to_owned(),
        },
        count: 1,
        repo: REPO.to_owned(),
        branch: "bg/r1".to_owned(),
        sha: hers.to_owned(),
    });
    lose_the_answer(forge, Method::PUT, "/repos/{owner}/{repo}/contents/{*path}");
    let written = client
        .put_file("bg/r1", main, PATH, text, MESSAGE, None)
        .await;
    match written {
        Ok(sha) => assert_ne!(sha, hers, "her commit taken for the bot's"),
        Err(err) => assert_eq!(err.status(), Some(422), "{err}"),
    }
}

// mallory prepares a commit with the bot's message on the same parent but her own text: the
// look does not take it (it changes the file to another text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_look_for_a_lost_write_never_takes_anyone_elses_commit_for_it() {
    let (forge, client, main) = forge_and_client().await;
    client.create_branch("bg/r1", &main).await.unwrap();
    let mallory = forge.user("mallory");
    let hers = forge.push_files(
        REPO,
        "mallory",
        &mallory,
        &[(PATH, "environment: prod\nduration: 99h\n")],
        MESSAGE,
    );
    a_look_meets(&forge, &client, &main, &hers, "environment: prod\n").await;
}

// The same commit with the bot's very text, as a symbolic link whose link text it is: the
// comparison lists the same blob (it names no file mode), and the contents API tells the link
// from a file. Taken for the bot's, it would have put a link where breakglass checks files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_look_for_a_lost_write_never_takes_a_link_with_the_bots_text_for_its_file() {
    let (forge, client, main) = forge_and_client().await;
    client.create_branch("bg/r1", &main).await.unwrap();
    let text = "environment: prod\n";
    let mallory = forge.user("mallory");
    let hers = forge.push_changes(
        REPO,
        "mallory",
        &mallory,
        &[FileChange::Symlink(PATH.into(), text.into())],
        MESSAGE,
    );
    a_look_meets(&forge, &client, &main, &hers, text).await;
}

// GitLab: the bot's merge request is opened and the answer lost. Before the bot's look for it,
// mallory opens one from her fork's branch of the same name into the same target (GitLab
// allows it: the fork is another source). The look, which lists newest first, takes only a
// merge request from the project's own branch: the bot's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_gitlab_a_look_for_a_lost_opening_never_takes_a_forks_merge_request() {
    let forge = TestForge::start().await;
    forge.create_repo(REPO, &[("README.md", "# requests\n")]);
    let bot = forge.user("breakglass-bot");
    let mallory = forge.user("mallory");
    let token = Secret::new(forge.token_for(&bot));
    let client = GitlabClient::connect(
        &forge.gitlab_api_url(),
        REPO,
        GitlabAuth::PrivateToken(token),
    )
    .await
    .unwrap();
    let main = forge.branch_sha(REPO, "main").unwrap();
    client.create_branch("bg/r1", &main).await.unwrap();
    let head = client
        .put_file("bg/r1", &main, PATH, "environment: prod\n", MESSAGE, None)
        .await
        .unwrap();
    const MERGE_REQUESTS: &str = "/api/v4/projects/{id}/merge_requests";
    lose_the_answer(&forge, Method::POST, MERGE_REQUESTS);
    forge.open_fork_pr_before(
        RouteMatcher::Route {
            method: Some(Method::GET),
            template: MERGE_REQUESTS.to_owned(),
        },
        REPO,
        &mallory,
        "mallory/access-requests",
        "bg/r1",
        &[(PATH, "environment: prod\nduration: 99h\n")],
    );
    let opened = client
        .open_pull_request("bg/r1", "main", "request r1", "", &[])
        .await
        .unwrap();
    let hers = forge.gl_mr(REPO, 2);
    assert_eq!(
        (hers.user.as_str(), hers.head_repo.as_deref()),
        ("mallory", Some("mallory/access-requests")),
        "her merge request was opened before the look"
    );
    assert_eq!(opened.info.number, 1, "{opened:#?}");
    assert_eq!(opened.info.author.login, "breakglass-bot");
    assert_eq!(opened.info.head_sha, head);
}
