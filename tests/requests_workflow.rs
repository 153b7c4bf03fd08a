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
