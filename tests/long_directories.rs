//! GitHub's contents API lists at most 1,000 entries of a directory, silently. The test forge
//! does the same, so a directory of more request files than that must still be listed whole:
//! reconciliation compares every active grant with it, and a grant it does not see is read
//! file by file (a rate-limited call each).

use breakglass::forge::github::{GithubAuth, GithubClient};
use breakglass::secret::Secret;
use breakglass_test_forge::TestForge;

const REPO: &str = "acme/access-requests";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_longer_than_the_contents_api_lists_is_listed_whole() {
    let forge = TestForge::start().await;
    let files: Vec<(String, String)> = (0..1_205)
        .map(|i| (format!("requests/prod/r{i:05}.yaml"), format!("n: {i}\n")))
        .chain([
            ("requests/staging/s1.yaml".to_owned(), "n: 1\n".to_owned()),
            (
                "policies/prod.yaml".to_owned(),
                "environment: prod\n".to_owned(),
            ),
        ])
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    forge.create_repo(REPO, &refs);
    let bot = forge.user("breakglass-bot");
    let token = Secret::new(forge.token_for(&bot));
    let client = GithubClient::connect(&forge.api_url(), REPO, GithubAuth::Token(token))
        .await
        .unwrap();

    let before = forge.calls();
    let mut listed = client.list_dir("main", "requests/prod").await.unwrap();
    listed.sort();
    let expected: Vec<String> = (0..1_205)
        .map(|i| format!("requests/prod/r{i:05}.yaml"))
        .collect();
    assert_eq!(listed, expected, "every file, with its full path, once");
    let calls = forge.calls().total - before.total;
    assert_eq!(calls, 3, "the listing, the parent's listing, the tree");

    // A short directory costs one call, as before.
    let before = forge.calls();
    let short = client.list_dir("main", "requests/staging").await.unwrap();
    assert_eq!(short, ["requests/staging/s1.yaml"]);
    assert_eq!(forge.calls().total - before.total, 1);
    // A top-level directory's parent is the root.
    assert_eq!(
        client.list_dir("main", "policies").await.unwrap(),
        ["policies/prod.yaml"]
    );
    assert!(
        client
            .list_dir("main", "requests/none")
            .await
            .unwrap()
            .is_empty()
    );
}
