//! The requests repo's CI step (`.github/workflows/requests-check.yml`), run for real: its
//! shell script, in a real git repository with a default branch and a PR branch, calling the
//! real binary. It must judge by the default branch's policies, not the PR's.

use std::path::Path;
use std::process::{Command, Output};

use serde::Deserialize;

#[derive(Deserialize)]
struct Workflow {
    jobs: std::collections::BTreeMap<String, Job>,
}

#[derive(Deserialize)]
struct Job {
    steps: Vec<Step>,
}

#[derive(Deserialize)]
struct Step {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    run: Option<String>,
}

fn check_script() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".github/workflows/requests-check.yml");
    let text = std::fs::read_to_string(path).unwrap();
    let workflow: Workflow = serde_saphyr::from_str(&text).expect("the workflow is valid YAML");
    workflow.jobs["check"]
        .steps
        .iter()
        .find(|s| s.id.as_deref() == Some("check"))
        .and_then(|s| s.run.clone())
        .expect("a step with id `check` and a script")
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A requests repo: `origin` (bare) has main with the example policies; the work tree is on a
/// PR branch that adds `files`.
fn requests_repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin.git");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(
        dir.path(),
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            origin.to_str().unwrap(),
        ],
    );
    git(&work, &["init", "-q", "-b", "main"]);
    for args in [
        &["config", "user.email", "t@example.com"][..],
        &["config", "user.name", "t"],
        &["config", "commit.gpgsign", "false"],
    ] {
        git(&work, args);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(work.join("policies")).unwrap();
    for policy in ["prod.yaml", "staging.yaml"] {
        std::fs::copy(
            root.join("policies").join(policy),
            work.join("policies").join(policy),
        )
        .unwrap();
    }
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "policies"]);
    git(
        &work,
        &["remote", "add", "origin", origin.to_str().unwrap()],
    );
    git(&work, &["push", "-q", "origin", "main"]);
    git(&work, &["checkout", "-q", "-b", "request"]);
    for (path, text) in files {
        let path = work.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "request"]);
    dir
}

fn run_check(repo: &tempfile::TempDir, requester: &str, labels: &str) -> Output {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_breakglass"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .arg("-c")
        .arg(check_script())
        .current_dir(repo.path().join("work"))
        .env("PATH", path)
        .env("BASE_REF", "main")
        .env("DEFAULT_BRANCH", "main")
        .env("REQUESTER", requester)
        .env("LABELS", labels)
        .env("POLICIES_PATH", "policies")
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .unwrap()
}

const ALLOWED: &str = "environment: prod\nrole: admin\nduration: 1h\nreason: incident INC-1 db failover\nticket: INC-1\n";

#[test]
fn an_allowed_request_passes() {
    let repo = requests_repo(&[("requests/prod/a.yaml", ALLOWED)]);
    let out = run_check(&repo, "alice", "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("requests/prod/a.yaml: allowed"), "{stdout}");
}

#[test]
fn a_denied_request_fails_the_pr_with_the_reason() {
    let repo = requests_repo(&[("requests/prod/a.yaml", &ALLOWED.replace("1h", "6h"))]);
    let out = run_check(&repo, "alice", "sev1,urgent");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("duration 6h is above the max_duration of `prod` (4h)"),
        "{stdout}"
    );
}

#[test]
fn a_policy_loosened_in_the_pr_does_not_count() {
    let loosened =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/prod.yaml"))
            .unwrap()
            .replace("max_duration: 4h", "max_duration: 12h");
    let repo = requests_repo(&[
        ("requests/prod/a.yaml", &ALLOWED.replace("1h", "6h")),
        ("policies/prod.yaml", &loosened),
    ]);
    let out = run_check(&repo, "alice", "");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_pr_without_request_files_passes_quietly() {
    let repo = requests_repo(&[("README.md", "hello\n")]);
    let out = run_check(&repo, "alice", "");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("No request files changed."));
}

// ---------------------------------------------------------------- the fast path, by comment
//
// The requests repo as the bot lives it: `/breakglass` comments on incident issues and the
// `sev1` fast path of `policies/prod.yaml` (bob is on call, at most 1h without approval).

mod common;

use breakglass_test_forge::Noteable;
use chrono::TimeDelta;
use common::*;

const ASK_1H: &str = "/breakglass prod 1h admin -- incident: INC-9 checkout down";

/// The forge's own number of issue `issue`.
fn issue_internal(s: &Scenario, issue: u64) -> u64 {
    match s.dialect {
        Dialect::GitHub => issue,
        Dialect::GitLab => s.forge.gl_number(REPO, Noteable::Issue(issue)),
    }
}

/// An incident issue carol opens and labels `sev1`.
fn sev1_issue(s: &Scenario, title: &str) -> u64 {
    let issue = s.open_issue(&s.people.carol, title);
    s.forge
        .label(REPO, issue_internal(s, issue), &s.people.carol, "sev1");
    issue
}

/// The newest request PR the bot opened for a `/breakglass` comment.
fn newest_request_pr(s: &Scenario) -> u64 {
    s.changes()
        .into_iter()
        .filter(|p| {
            p.user == s.people.bot.login
                && p.title.starts_with("breakglass: ")
                && !p.title.starts_with("breakglass: revoke")
        })
        .map(|p| p.number)
        .max()
        .expect("a request PR was opened")
}

/// bob asks for 1h of prod/admin on issue `issue`; the PR it opens.
async fn bob_asks_on_issue(s: &Scenario, issue: u64) -> u64 {
    s.note_on_issue(issue, &s.people.bob, ASK_1H);
    s.settle().await;
    s.take_bot_issue_comments(issue);
    newest_request_pr(s)
}

/// The honest fast path: bob, on call, asks for 1h on an open incident issue labelled `sev1`,
/// and it is merged at once.
async fn honest_fast_path(s: &Scenario) -> u64 {
    let issue = sev1_issue(s, "payments down");
    let pr = bob_asks_on_issue(s, issue).await;
    assert!(
        s.change(pr).merged,
        "the honest fast path: {:#?}",
        s.bot_comments(pr)
    );
    s.take_bot_comments(pr);
    pr
}

on_both_forges!(
    fast_path_grants_back_to_back_or_at_once_are_refused_past_the_rules_max_duration,
    |s: Scenario| async move {
        let issue = sev1_issue(&s, "checkout down");
        let first = bob_asks_on_issue(&s, issue).await;
        assert!(
            s.change(first).merged,
            "the honest fast path: {:#?}",
            s.bot_comments(first)
        );
        s.take_bot_comments(first);
        // At once: a second 1h on top of the first is 2h without approval.
        let at_once = bob_asks_on_issue(&s, issue).await;
        // Back to back: 50 minutes in, 10m left and 1h more is 1h10m.
        s.advance(TimeDelta::minutes(50));
        s.settle().await;
        let back_to_back = bob_asks_on_issue(&s, issue).await;
        for pr in [at_once, back_to_back] {
            assert!(!s.change(pr).merged, "a second fast-path grant for bob");
            let said = s.take_bot_comments(pr).join("\n");
            assert!(
                said.contains("Fast path `sev1` does not apply")
                    && said.contains("already holds `prod` access")
                    && said.contains("above its max_duration 1h"),
                "{said}"
            );
            assert_eq!(
                s.policy_status(&s.change(pr).head_sha),
                Some(("pending".into(), "allowed: needs 1 approval(s)".into()))
            );
        }
        for pr in [first, at_once, back_to_back] {
            s.take_bot_comments(pr);
        }
        s.lenient(); // revert PRs and reminders are not what this is about
    }
);

on_both_forges!(
    a_comment_on_a_closed_sev1_issue_is_refused_the_fast_path,
    |s: Scenario| async move {
        let closed = sev1_issue(&s, "checkout down (resolved)");
        s.forge
            .close_pr(REPO, issue_internal(&s, closed), &s.people.carol);
        s.settle().await;
        let pr = bob_asks_on_issue(&s, closed).await;
        assert!(
            !s.change(pr).merged,
            "a closed sev1 issue gave the fast path"
        );
        assert!(s.labels(pr).is_empty(), "labels {:?}", s.labels(pr));
        s.take_bot_comments(pr);
        s.close_change(pr, &s.people.bob);
        s.settle().await;
        s.take_bot_comments(pr);
        honest_fast_path(&s).await;
        s.lenient(); // revert PRs and reminders are not what this is about
    }
);

on_both_forges!(
    a_comment_on_an_old_merged_sev1_pr_is_refused_the_fast_path,
    |s: Scenario| async move {
        let old = honest_fast_path(&s).await;
        // The grant expires and is reviewed; its PR keeps `sev1` forever.
        s.by(&s.people.carol).command(old, "reviewed");
        for _ in 0..4 {
            s.advance(TimeDelta::minutes(31));
            s.settle().await;
        }
        assert!(s.labels(old).iter().any(|l| l == "sev1"));
        s.note(old, &s.people.bob, ASK_1H);
        s.settle().await;
        let pr = newest_request_pr(&s);
        assert_ne!(pr, old);
        assert!(
            !s.change(pr).merged,
            "an old grant PR's `sev1` gave a new fast path"
        );
        assert!(s.labels(pr).is_empty(), "labels {:?}", s.labels(pr));
        // Then an open incident: the fast path as ever.
        honest_fast_path(&s).await;
        s.lenient(); // revert PRs and reminders are not what this is about
    }
);

/// erin is on call only through @acme/oncall: taken off it a moment ago, her draft marked
/// ready is not merged on the fast path (the merge asks the team now, not its answer of the
/// last minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_path_for_someone_off_call_a_moment_ago_is_refused_at_the_merge() {
    let Some(s) = Scenario::start_with(Backend::Sqlite, Setup::default()).await else {
        return;
    };
    let erin = &s.people.erin;
    honest_fast_path(&s).await;
    let yaml = "environment: prod\nrole: admin\nduration: 45m\nreason: incident INC-9 payments down\nticket: INC-9\n";
    s.forge.push_files(
        REPO,
        "draft-erin",
        erin,
        &[("requests/prod/r-erin.yaml", yaml)],
        "request",
    );
    let pr = s.forge.open_pr_draft(REPO, erin, "draft-erin", "sev1", "");
    s.label(pr, erin, "sev1");
    s.settle().await;
    assert!(!s.change(pr).merged, "a draft is never merged");
    s.forge.remove_team_member("acme/oncall", erin);
    s.set_draft(pr, erin, false);
    s.settle().await;
    assert!(
        !s.change(pr).merged,
        "merged on a fast path on a membership cached from before erin went off call"
    );
    s.lenient(); // revert PRs and reminders are not what this is about
}
