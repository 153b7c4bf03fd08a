//! `breakglass demo` as a user runs it: the real binary plays the whole story (request by
//! comment, refused self-approval, approval by reaction, grant, revocation at the TTL, fast
//! path and its review) in seconds, and its output is the audit trail we check.

use std::process::Command;
use std::time::{Duration, Instant};

/// The demo's whole run must stay interactive; it takes a few seconds on a laptop. The bound is
/// generous so that a loaded CI machine does not make the test flaky.
const WALL_TIME_LIMIT: Duration = Duration::from_secs(120);

/// Runs `breakglass demo` with `args`; returns its stdout, stderr and exit code.
fn demo(args: &[&str]) -> (String, String, Option<i32>, Duration) {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_breakglass"))
        .arg("demo")
        .args(args)
        // The timeline must be clean: no log lines unless asked for.
        .env_remove("BREAKGLASS_LOG")
        .output()
        .expect("the breakglass binary runs");
    let took = started.elapsed();
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.code(),
        took,
    )
}

#[track_caller]
fn assert_line(stdout: &str, wanted: &str) {
    assert!(
        stdout.lines().any(|l| l.contains(wanted)),
        "no line with {wanted:?} in the demo's output:\n{stdout}"
    );
}

#[test]
fn demo_plays_the_whole_story_and_shows_the_audit_trail() {
    let (stdout, stderr, code, took) = demo(&["--ttl", "2m"]);
    eprintln!(
        "breakglass demo took {:.1} s of wall time",
        took.as_secs_f64()
    );
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        took < WALL_TIME_LIMIT,
        "the demo took {took:?}, expected seconds"
    );
    assert!(
        stderr.is_empty(),
        "no log lines without BREAKGLASS_LOG: {stderr}"
    );
    assert_line(&stdout, "fast-forwarded");

    // 1. The comment becomes a request PR for alice.
    assert_line(
        &stdout,
        "alice        on #1: /breakglass prod 2m admin -- incident: INC-1 db failover",
    );
    assert_line(
        &stdout,
        "breakglass   opened PR #2 \"breakglass: prod/admin for 2m (alice)\"",
    );
    // 2. Her own approval is refused, in the bot's words.
    assert_line(
        &stdout,
        "breakglass   on #2: 🙅 @alice, you requested this access: your own approval does not count.",
    );
    // 3. carol's 👍 is found by the poll; the bot merges and grants.
    assert_line(&stdout, "carol        reacted 👍 (+1) on PR #2");
    assert_line(&stdout, "breakglass   merged PR #2 with merge commit");
    assert_line(
        &stdout,
        "on #2: 🔓 Access granted. @alice has `prod/admin` until",
    );
    // 4. At the TTL the revert PR is merged.
    assert_line(&stdout, "breakglass   merged PR #3 with merge commit");
    assert_line(&stdout, "(it expired). Revert PR #3 merged.");
    // 5. The fast path merges at once and carol closes the review.
    assert_line(&stdout, "labeled PR #4 breakglass/needs-review");
    assert_line(&stdout, "After-the-fact review by @carol recorded");

    // The history of main carries every trailer of both grants and the revocation.
    let (_, history) = stdout
        .split_once("git log --first-parent main")
        .expect("the demo prints the requests repo's history");
    for trailer in [
        "Breakglass-Request: ",
        "Breakglass-Requester: alice",
        "Breakglass-Approved-By: carol",
        "Breakglass-Expires: ",
        "Breakglass-Revokes: ",
        "Breakglass-Revoked-Reason: ttl",
        "Breakglass-Requester: bob",
        "Breakglass-Approved-By: fast-path:sev1",
    ] {
        assert_line(history, trailer);
    }
    assert_line(&stdout, "Forge API calls by the bot, whole demo: ");
}

#[test]
fn demo_plays_the_same_story_on_gitlab() {
    let (stdout, stderr, code, took) = demo(&["--ttl", "2m", "--forge", "gitlab"]);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        took < WALL_TIME_LIMIT,
        "the demo took {took:?}, expected seconds"
    );
    assert_line(&stdout, "GitLab-compatible test forge");
    // GitLab numbers issues and merge requests apart: issue #1 becomes merge request !1.
    assert_line(
        &stdout,
        "alice        on #1: /breakglass prod 2m admin -- incident: INC-1 db failover",
    );
    assert_line(
        &stdout,
        "breakglass   opened MR !1 \"breakglass: prod/admin for 2m (alice)\"",
    );
    assert_line(
        &stdout,
        "breakglass   on #1: 📝 @alice, your request is !1.",
    );
    assert_line(
        &stdout,
        "breakglass   on !1: 🙅 @alice, you requested this access: your own approval does not count.",
    );
    // carol's 👍 arrives as an Emoji Hook: merged in the same second, no poll.
    assert_line(&stdout, "GitLab sends it as an Emoji Hook event");
    assert_line(&stdout, "carol        reacted 👍 (thumbsup) on MR !1");
    let reacted = stdout
        .lines()
        .find(|l| l.contains("reacted 👍"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert_line(
        &stdout,
        &format!("{reacted}  breakglass   merged MR !1 with merge commit"),
    );
    assert_line(&stdout, "(it expired). Revert MR !2 merged.");
    assert_line(&stdout, "After-the-fact review by @carol recorded");
    let (_, history) = stdout
        .split_once("git log --first-parent main")
        .expect("the demo prints the requests repo's history");
    for trailer in [
        "Breakglass-Requester: alice",
        "Breakglass-Approved-By: carol",
        "Breakglass-Revoked-Reason: ttl",
        "Breakglass-Approved-By: fast-path:sev1",
    ] {
        assert_line(history, trailer);
    }
}

#[test]
fn a_step_that_fails_says_what_it_expected_and_exits_non_zero() {
    // 5h is above the prod policy's max_duration of 4h: the bot refuses to open the request
    // at all (who may ask is checked before it writes anything), and the smoke test fails.
    let (stdout, _, code, _) = demo(&["--ttl", "5h"]);
    assert_eq!(code, Some(1), "stdout:\n{stdout}");
    assert_line(&stdout, "❌ Request");
    assert_line(&stdout, "max_duration");
    assert_line(
        &stdout,
        "✗ expected the bot to open a request PR for alice's comment on #1",
    );
    assert_line(&stdout, "demo FAILED");
}
