//! The strict harness itself: a scenario fails when the bot said something the test did not
//! read, when background work failed unexpectedly (even if a retry fixed it), and when a
//! declared failure never happened.

mod common;

use breakglass::store::JobKind;
use breakglass_test_forge::FailureKind;
use chrono::TimeDelta;
use common::*;
use http::Method;

async fn scenario() -> Scenario {
    Scenario::start(Backend::Sqlite)
        .await
        .expect("SQLite is always there")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "unread bot comment on #1: ✅ **Request `r1` is allowed**")]
async fn an_unread_bot_comment_fails_the_scenario() {
    let s = scenario().await;
    s.by(&s.people.alice)
        .open_request("prod", "r1", &prod_request("1h"));
    s.settle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "no unread bot comment on #1")]
async fn reading_a_comment_the_bot_did_not_write_fails() {
    let s = scenario().await;
    let pr = s
        .by(&s.people.alice)
        .open_request("prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
    s.next_bot_comment(pr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "unexpected failure: revert job of r1")]
async fn a_job_failure_that_a_retry_fixed_still_fails_the_scenario() {
    let s = scenario().await;
    let pr = s.granted("r1", "1h").await;
    s.fail_next(Route::Merge, Method::PUT, 4, FailureKind::Status(502));
    s.advance(TimeDelta::hours(1));
    s.settle().await;
    s.advance(TimeDelta::minutes(1));
    s.settle().await;
    assert_eq!(s.request("r1").await.state.to_string(), "revoked");
    s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "an expected failure never happened: Job(Revoke)")]
async fn a_declared_failure_that_never_happens_fails_the_scenario() {
    let s = scenario().await;
    s.expect_job_error(JobKind::Revoke, "HTTP 502");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_failure_passes_and_is_listed() {
    let s = scenario().await;
    let pr = s.granted("r1", "1h").await;
    s.fail_next(Route::Merge, Method::PUT, 4, FailureKind::Status(502));
    s.expect_job_error(JobKind::Revert, "HTTP 502");
    s.advance(TimeDelta::hours(1));
    s.settle().await;
    s.advance(TimeDelta::minutes(1));
    s.settle().await;
    assert_eq!(s.request("r1").await.state.to_string(), "revoked");
    s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
    let failures = s.failures();
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert!(
        failures[0].starts_with("revert job of r1 failed at ") && failures[0].ends_with("HTTP 502"),
        "{failures:#?}"
    );
}

// `settle()` waits for a job that deleted its own row before it ended: the poll that sees an
// approver's 👍 on a fast-path grant cancels the request's timers (itself among them), then
// takes the review label off and says so. With 100 ms per forge call that tail outlasts the
// quiet checks, so a harness that looked only at the jobs table returned before the comment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settle_waits_for_a_job_that_cancelled_its_own_row() {
    let s = scenario().await;
    let pr = s.open_bob_sev1_change();
    s.settle().await;
    s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
    s.forge.set_latency(std::time::Duration::from_millis(100));
    s.emoji(pr, &s.people.carol, "+1");
    s.advance(TimeDelta::seconds(30));
    s.settle().await;
    s.expect_bot_comments(pr, &["✔️ After-the-fact review by @carol recorded"]);
    s.forge.set_latency(std::time::Duration::ZERO);
}
