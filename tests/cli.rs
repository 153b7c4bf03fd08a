//! `breakglass check` and `breakglass policy lint` as a user runs them: the real binary, real
//! files, exit codes and the exact words printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NOW: &str = "2026-11-26T02:14:00Z";

fn breakglass(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_breakglass"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}

/// A requests-repo-shaped temp dir holding one request file.
fn request_file(dir: &tempfile::TempDir, env: &str, id: &str, yaml: &str) -> PathBuf {
    let path = dir
        .path()
        .join("requests")
        .join(env)
        .join(format!("{id}.yaml"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, yaml).unwrap();
    path
}

fn check(extra: &[&str], file: &Path) -> Output {
    let mut args = vec!["check", "--policies", "policies", "--now", NOW];
    args.extend_from_slice(extra);
    args.push(file.to_str().unwrap());
    breakglass(&args)
}

/// Replaces the temp dir prefix so snapshots are stable.
fn scrub(text: &str, dir: &tempfile::TempDir) -> String {
    text.replace(&dir.path().display().to_string(), "$TMP")
}

#[test]
fn request_files_given_together_that_share_an_id_are_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let request = "environment: prod\nrole: admin\nduration: 1h\nreason: \"incident: INC-1234 x\"\nticket: INC-1234\nrequester: alice\n";
    let first = request_file(&dir, "prod", "same", request);
    let other = request_file(&dir, "prod", "other", request);
    let staging = "environment: staging\nrole: admin\nduration: 1h\nreason: \"incident: INC-1234 x\"\nrequester: alice\n";
    let second = request_file(&dir, "staging", "same", staging);
    let out = check(
        &[
            "--requester",
            "alice",
            first.to_str().unwrap(),
            other.to_str().unwrap(),
        ],
        &second,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let said = scrub(&stdout(&out), &dir);
    assert!(
        said.contains("$TMP/requests/prod/same.yaml: invalid\n  request id `same` is also used by $TMP/requests/staging/same.yaml"),
        "{said}"
    );
    assert!(
        said.contains("$TMP/requests/prod/other.yaml: allowed"),
        "{said}"
    );
    assert!(
        said.contains("$TMP/requests/staging/same.yaml: invalid"),
        "{said}"
    );
}

// The bot never takes a link as a request file; CI says so too (exit 2), and reads nothing the
// link points at, in the repository or outside it.
#[cfg(unix)]
#[test]
fn a_request_file_that_is_a_link_is_invalid_and_its_target_unread() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("elsewhere.yaml");
    std::fs::write(
        &outside,
        "environment: prod\nrole: admin\nduration: 1h\nreason: SECRET-LOOKING-TARGET\n",
    )
    .unwrap();
    let link = dir.path().join("requests/prod/r-link.yaml");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let out = check(&["--requester", "alice"], &link);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let said = stdout(&out);
    assert!(said.contains("a symbolic link, not a file"), "{said}");
    assert!(!said.contains("SECRET-LOOKING-TARGET"), "{said}");
}

#[test]
fn an_allowed_request_exits_0_and_says_who_can_approve() {
    let out = check(
        &["--requester", "alice"],
        Path::new("examples/requests/prod/20261126-0214-alice-prod.yaml"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    insta::assert_snapshot!(stdout(&out), @r"
    examples/requests/prod/20261126-0214-alice-prod.yaml: allowed
      prod/admin for 1h; would expire at 2026-11-26T03:14:00Z if granted now
      needs 1 approval(s) from @acme/sre-leads, carol (never the requester): an approving review, `/breakglass approve`, or a +1 reaction
      fast path `sev1` does not apply: needs one of the labels sev1; membership in @acme/oncall, bob could not be checked
    ");
}

#[test]
fn a_denied_request_exits_1_and_lists_every_reason() {
    let out = check(
        &["--requester", "mallory", "--team", "@acme/interns"],
        Path::new("examples/requests/prod/20261126-0300-mallory-prod.yaml"),
    );
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(stdout(&out), @r"
    examples/requests/prod/20261126-0300-mallory-prod.yaml: denied
      - max_duration: duration 8h is above the max_duration of `prod` (4h); ask for 4h or less
      - requesters: `mallory` may not request access to `prod`; requesters are: `@acme/sre`, `alice`, `bob`
      - reason_codes: reason `need to look at something` does not start with a reason code; start it with one of: incident, maintenance (e.g. `incident: need to look at something`)
      - ticket_pattern: `prod` requires a ticket matching `^(INC|CHG)-[0-9]+$`; add e.g. `ticket: INC-1234` to the request file (in a `/breakglass` comment, name the ticket in the reason after `--`)
      prod/admin for 8h; would expire at 2026-11-26T10:14:00Z if granted now
    ");
}

#[test]
fn the_fast_path_shows_when_label_and_on_call_team_match() {
    let out = check(
        &[
            "--requester",
            "erin",
            "--team",
            "@acme/oncall",
            "--team",
            "@acme/sre",
            "--label",
            "sev1",
        ],
        Path::new("examples/requests/prod/20261126-0214-alice-prod.yaml"),
    );
    // The file says `requester: alice`, but erin asks: that alone denies it.
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("the file names requester `alice` but the request comes from `erin`"),
        "{}",
        stdout(&out)
    );

    let dir = tempfile::tempdir().unwrap();
    let file = request_file(
        &dir,
        "prod",
        "sev1",
        "environment: prod\nrole: admin\nduration: 45m\nreason: incident INC-9 outage\nticket: INC-9\n",
    );
    let out = check(
        &[
            "--requester",
            "erin",
            "--team",
            "@acme/oncall",
            "--team",
            "@acme/sre",
            "--label",
            "sev1",
        ],
        &file,
    );
    assert_eq!(out.status.code(), Some(0));
    insta::assert_snapshot!(scrub(&stdout(&out), &dir), @r"
    $TMP/requests/prod/sev1.yaml: allowed
      prod/admin for 45m; would expire at 2026-11-26T02:59:00Z if granted now
      fast path `sev1`: granted at once, to be reviewed by an approver within 24h
    ");
}

// The requests repo's CI prints the report into its log, where a line that starts with `::`
// is a command to the runner (`::add-mask::`, `::stop-commands::`) and escape bytes restyle
// the terminal. A value in a request file shows on its own line's text, escaped.
#[test]
fn request_text_cannot_start_a_line_of_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let file = request_file(
        &dir,
        "prod",
        "20261126-0214-alice-prod",
        "environment: prod\nrole: admin\nduration: 1h\n\
         reason: \"bad\\n::error file=x::pwned\\n::add-mask::alice red\u{202e}\"\n\
         ticket: INC-1\n",
    );
    let out = check(&["--requester", "alice"], &file);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let report = stdout(&out);
    assert!(
        report.lines().all(|l| !l.trim_start().starts_with("::")),
        "{report}"
    );
    assert!(!report.contains(['\r', '\u{202e}']), "{report:?}");
    assert!(
        report.contains(r"reason `bad\n::error file=x::pwned\n::add-mask::alice red\u{202e}`"),
        "{report}"
    );
    // A terminal escape in the reason makes the file invalid, and the report says so plainly
    // (written as YAML's `\e`, it is refused as an escape that hides what the text is).
    let file = request_file(
        &dir,
        "prod",
        "20261126-0215-alice-prod",
        "environment: prod\nrole: admin\nduration: 1h\nreason: \"bad \\e[31mred\"\nticket: INC-1\n",
    );
    let out = check(&["--requester", "alice"], &file);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let report = stdout(&out);
    assert!(!report.contains('\u{1b}'), "{report:?}");
    assert!(
        report.contains("line 4, column 9: escapes such as `\\x61`"),
        "{report}"
    );
}

#[test]
fn malformed_files_exit_2_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "duration",
            "environment: prod\nrole: admin\nduration: 2 hours\nreason: x\n",
            "line 3, column 11: duration `2 hours` is not a duration; write e.g. `90s`, `45m`, `2h` or `1h30m`",
        ),
        (
            "tabs",
            "environment: prod\n\trole: admin\n",
            "line 2, column 1: indentation uses a tab; YAML indents with spaces",
        ),
        (
            "unknown-key",
            "environment: prod\nrole: admin\nreason: x\nsudo: true\n",
            "line 4, column 1: unknown field `sudo`, expected one of environment, role, duration, reason, ticket, requester",
        ),
        (
            "wrong-type",
            "environment: prod\nrole: [admin]\nreason: x\n",
            "line 2, column 7: ",
        ),
        (
            "bad-name",
            "environment: Prod!\nrole: admin\nreason: x\n",
            "line 1, column 14: `Prod!` is not a valid name",
        ),
        (
            "not-yaml",
            "environment: prod\nrole: admin\nreason: \"unterminated\n",
            "line ",
        ),
    ];
    for (id, yaml, message) in cases {
        let out = check(&[], &request_file(&dir, "prod", id, yaml));
        assert_eq!(out.status.code(), Some(2), "{id}");
        let text = stdout(&out);
        assert!(text.contains(": invalid\n"), "{id}: {text}");
        assert!(text.contains(&format!("  {message}")), "{id}: {text}");
    }
}

#[test]
fn oversize_files_are_refused_without_reading_them_whole() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "environment: prod\nrole: admin\nreason: x\n# {}\n",
        "x".repeat(200_000)
    );
    let out = check(&[], &request_file(&dir, "prod", "huge", &yaml));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stdout(&out).contains("the file is larger than 65536 bytes"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_worst_file_decides_the_exit_code() {
    let out = breakglass(&[
        "check",
        "--now",
        NOW,
        "examples/requests/prod/20261126-0214-alice-prod.yaml",
        "examples/requests/staging/20261126-1000-dave-staging.yaml",
        "examples/requests/prod/20261126-0300-mallory-prod.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let out = breakglass(&[
        "check",
        "examples/requests/prod/20261126-0214-alice-prod.yaml",
        "no/such/file.yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stdout(&out).contains("no/such/file.yaml: invalid\n  cannot read:"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn json_output_carries_the_whole_decision() {
    let out = check(
        &["--requester", "mallory", "--format", "json"],
        Path::new("examples/requests/prod/20261126-0300-mallory-prod.yaml"),
    );
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(report["status"], "denied");
    let file = &report["files"][0];
    assert_eq!(file["status"], "denied");
    assert_eq!(file["request"]["duration"], "8h");
    let decision = &file["decision"];
    assert_eq!(decision["allowed"], false);
    assert_eq!(decision["expires_at"], "2026-11-26T10:14:00Z");
    let rules: Vec<&str> = decision["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["max_duration", "reason_codes", "ticket_pattern"]);
    assert_eq!(decision["violations"][0]["found"], "8h");
    assert_eq!(decision["violations"][0]["allowed"], "at most 4h");
    assert_eq!(
        decision["unchecked"][0],
        "requesters: `mallory` is not listed by name; membership in @acme/sre was not checked"
    );
}

#[test]
fn invalid_policies_stop_the_check_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("prod.yaml"),
        "environment: prod\nmax_duration: 1h\n",
    )
    .unwrap();
    let out = breakglass(&[
        "check",
        "--policies",
        dir.path().to_str().unwrap(),
        "examples/requests/prod/20261126-0214-alice-prod.yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stdout(&out).starts_with("the policies are invalid, so no request was checked:\n"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("prod.yaml:"), "{}", stdout(&out));
}

#[test]
fn policy_lint_passes_the_examples_and_reports_all_problems() {
    let out = breakglass(&["policy", "lint"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(stdout(&out), "3 policy file(s) in policies: no problems\n");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prod.yaml"), "environment: prod\nmax_duration: 1h\nrequesters: []\napprovers: []\nroles:\n  admin:\n    provider: gcp\n").unwrap();
    std::fs::write(
        dir.path().join("qa.yaml"),
        "environment: qa\nmax_duration: 1 hour\n",
    )
    .unwrap();
    let out = breakglass(&["policy", "lint", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(scrub(&stdout(&out), &dir), @r"
    $TMP/prod.yaml: requesters is empty: nobody could ask for access; list users or `@org/team`
    $TMP/prod.yaml: approvers is empty: nobody could approve or review; list users or `@org/team`
    $TMP/prod.yaml: approvals is 1 but only 0 approver(s) are listed: no request could ever be approved
    $TMP/prod.yaml: role `admin`: unknown provider `gcp`; use aws-iam, iac or noop
    $TMP/qa.yaml:2:15: duration `1 hour` is not a duration; write e.g. `90s`, `45m`, `2h` or `1h30m`
    $TMP/qa.yaml: missing field `requesters`
    $TMP/qa.yaml: missing field `approvers`
    $TMP/qa.yaml: missing field `roles`
    8 problem(s)
    ");
}

#[test]
fn policy_lint_with_the_bots_templates_renders_each_iac_template() {
    // The shipped policies' iac templates are all in the shipped templates directory.
    let out = breakglass(&["policy", "lint", "--templates", "templates"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // A template that is not there, or that does not render, makes its role ungrantable.
    let dir = tempfile::tempdir().unwrap();
    let policy = |template: &str| {
        format!(
            "environment: prod\nmax_duration: 1h\nrequesters: [alice]\napprovers: [carol]\nroles:\n  dns:\n    provider: iac\n    template: {template}\n    output: \"grants/{{{{ environment }}}}/{{{{ id }}}}.json\"\n"
        )
    };
    std::fs::write(dir.path().join("prod.yaml"), policy("iac/missing.json.j2")).unwrap();
    let path = dir.path().to_str().unwrap();
    let out = breakglass(&["policy", "lint", path]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "without --templates nothing is read"
    );
    let out = breakglass(&["policy", "lint", path, "--templates", "templates"]);
    assert_eq!(out.status.code(), Some(1));
    let said = stdout(&out);
    assert!(
        said.contains("prod.yaml: role `dns`: cannot read template `iac/missing.json.j2`"),
        "{said}"
    );
    let templates = tempfile::tempdir().unwrap();
    std::fs::create_dir(templates.path().join("iac")).unwrap();
    std::fs::write(
        templates.path().join("iac/broken.json.j2"),
        "{\"a\": {{ nope(1) }}}",
    )
    .unwrap();
    std::fs::write(dir.path().join("prod.yaml"), policy("iac/broken.json.j2")).unwrap();
    let out = breakglass(&[
        "policy",
        "lint",
        path,
        "--templates",
        templates.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("cannot render template `iac/broken.json.j2`"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn serve_without_a_forge_section_explains_itself() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("breakglass.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = \"sqlite://{}/db.sqlite\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = breakglass(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs a [github] or a [gitlab] section"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// A database that refuses connections is named at once, with its cause said once, and
// without the password of its URL.
#[test]
fn a_database_that_refuses_is_said_at_once_without_its_password() {
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_breakglass"))
        .arg("migrate")
        .env(
            "BREAKGLASS_DATABASE_URL",
            "postgres://app:PGPASSWORD123@127.0.0.1:1/db?password=HUNTER2",
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(stderr.matches("Connection refused").count(), 1, "{stderr}");
    assert!(
        !stderr.contains("PGPASSWORD123") && !stderr.contains("HUNTER2"),
        "{stderr}"
    );
}

#[test]
fn migrate_creates_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("breakglass.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = \"sqlite://{}/db.sqlite\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = breakglass(&["migrate", "--config", config.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).contains("is up to date"), "{}", stdout(&out));
    assert!(dir.path().join("db.sqlite").exists());
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["check", "--help"],
        &["policy", "lint", "--help"],
        &["audit", "--help"],
        &["migrate", "--help"],
    ] {
        let out = breakglass(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(stdout(&out).contains("Usage: breakglass"), "{args:?}");
    }
}

#[test]
fn a_yml_request_file_is_invalid_as_the_bot_would_refuse_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("requests/prod/r1.yml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        &path,
        "environment: prod\nrole: admin\nduration: 1h\nreason: \"incident: x\"\nticket: INC-1\nrequester: alice\n",
    )
    .unwrap();
    let out = check(&[], &path);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(
            "not a request file name: requests are named requests/<environment>/<id>.yaml"
        ),
        "{}",
        stdout(&out)
    );
}

/// `breakglass check … | head -1` in a CI script: the reader stops early, and the exit code
/// must still be the verdict's (here 0), not a panic's 101.
#[test]
fn a_reader_that_stops_early_does_not_change_the_exit_code() {
    use std::io::Read as _;
    let file = "examples/requests/prod/20261126-0214-alice-prod.yaml";
    let mut args = vec!["check", "--now", NOW, "--format", "json"];
    args.extend(std::iter::repeat_n(file, 400)); // far more than a pipe holds
    let mut child = Command::new(env!("CARGO_BIN_EXE_breakglass"))
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut first = [0u8; 1];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The pipe's read end is closed here: the rest of the output meets a broken pipe.
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `listen` may name a host (`localhost:8080`), not only an IP address.
#[test]
fn listen_may_be_a_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_breakglass"))
        .arg("migrate")
        .env("BREAKGLASS_LISTEN", "localhost:18080")
        .env("BREAKGLASS_DATABASE_URL", "sqlite://x.db")
        .current_dir(dir.path())
        .output()
        .expect("the binary runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A typo in `--config` must not start anything on defaults (which would create
/// `./breakglass.db` and serve nothing the operator configured).
#[test]
fn a_config_file_named_but_missing_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("breakglas.toml");
    for command in ["migrate", "serve"] {
        let out = Command::new(env!("CARGO_BIN_EXE_breakglass"))
            .args([command, "--config", missing.to_str().unwrap()])
            .current_dir(dir.path())
            .output()
            .expect("the binary runs");
        assert_eq!(out.status.code(), Some(2), "{command}");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains("cannot read") && said.contains("breakglas.toml"),
            "{command}: {said}"
        );
        assert!(!dir.path().join("breakglass.db").exists(), "{command}");
    }
}
