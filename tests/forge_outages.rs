//! Long forge outages (issue 11): for five minutes of the bot's clock every API call fails
//! (5xx, 429 with `Retry-After`, or no answer at all) while grants expire one a minute. The
//! revokes need no forge call and happen on time; the reverts wait, retry no faster than the
//! forge asked, and all land once the forge is back, each requester told once.

mod common;

use std::time::{Duration, Instant};

use breakglass::clock::Clock as _;
use breakglass::store::JobKind;
use breakglass_test_forge::{FailureKind, FailureSpec, RouteMatcher};
use chrono::TimeDelta;
use common::*;
use http::Method;

/// A hanging forge costs real time while the scenario's clocks stand still: each forge call
/// of these stories gives up after this (production: 10 s).
const SHORT_TIMEOUT: Duration = Duration::from_millis(100);

/// The world of the hanging-forge stories.
fn short_timeouts() -> Setup {
    Setup {
        forge_timeout: Some(SHORT_TIMEOUT),
        ..Setup::default()
    }
}

const GRANTS: [&str; 4] = ["r1", "r2", "r3", "r4"];
const OUTAGE_MINUTES: i64 = 5;

/// What the outage cost: the API calls the bot made while it lasted.
struct Outage {
    calls: u64,
}

/// Four grants expiring a minute apart inside an outage of `kind`; checks each revoke happened
/// at its expiry and the reverts landed after, each once.
async fn grants_expiring_through(s: &Scenario, kind: FailureKind) -> Outage {
    let mut prs = Vec::new();
    for id in GRANTS {
        prs.push(s.granted(id, "1h").await);
        s.advance(TimeDelta::minutes(1));
    }
    // The first grant expires at +60 min; the outage starts a minute before.
    s.advance(TimeDelta::minutes(59 - GRANTS.len() as i64));
    s.settle().await;
    let before = s.forge.calls().total;
    s.forge.fail_next(FailureSpec::any(u32::MAX, kind));
    for _ in 0..OUTAGE_MINUTES {
        s.advance(TimeDelta::minutes(1));
        s.settle().await;
        for id in GRANTS {
            let record = s.request(id).await;
            let expiry = record.expires_at.unwrap();
            if expiry > breakglass::clock::Clock::now(&s.clock) {
                continue;
            }
            // One clock: the revoke's time and the expiry are both the bot's.
            let revoked = record.revoked_at.unwrap_or_else(|| {
                panic!("{id} expired at {expiry} and is not revoked during the outage")
            });
            assert!(
                revoked - expiry <= TimeDelta::seconds(5),
                "{id} revoked late"
            );
            assert!(
                s.events(id, "revert").await.is_empty(),
                "no revert can land"
            );
        }
    }
    let outage = Outage {
        calls: s.forge.calls().total - before,
    };
    s.forge.clear_failures();
    // Back: the reverts are retried at their next due time (5 min of backoff at most).
    for _ in 0..6 {
        s.advance(TimeDelta::minutes(1));
        s.settle().await;
    }
    for (id, pr) in GRANTS.into_iter().zip(prs) {
        let record = s.request(id).await;
        assert_eq!(record.state.to_string(), "revoked", "{id}");
        assert!(s.change(record.revert_pr_number.unwrap()).merged, "{id}");
        assert_eq!(s.events(id, "revoke").await.len(), 1, "{id} revoked once");
        assert_eq!(s.events(id, "revert").await.len(), 1, "{id} reverted once");
        let told = s
            .take_bot_comments(pr)
            .into_iter()
            .filter(|c| c.starts_with("🔒 **Access revoked**"))
            .count();
        assert_eq!(told, 1, "{id}: the requester is told once");
    }
    outage
}

on_both_forges!(
    five_minutes_of_server_errors_delay_no_revoke_and_every_revert_lands,
    |s: Scenario| async move {
        s.expect_job_error(JobKind::Revert, "HTTP 503");
        s.expect_error(Source::Reconciliation, "HTTP 503");
        let outage = grants_expiring_through(&s, FailureKind::Status(503)).await;
        assert!(outage.calls > 0, "the reverts were tried during the outage");
    }
);

on_both_forges!(
    a_five_minute_rate_limit_is_waited_out_as_retry_after_asks,
    |s: Scenario| async move {
        s.expect_job_error(JobKind::Revert, "rate limited, retry after 120s");
        s.expect_error(Source::Reconciliation, "rate limited");
        let outage =
            grants_expiring_through(&s, FailureKind::SecondaryRateLimit429 { retry_after: 120 })
                .await;
        // Each revert that fell due in the outage tried once, then no sooner than 120 s
        // later: at most 3 calls each in the 4 minutes after its expiry. Backoff alone (2 s,
        // 4 s, 8 s…) would have called 6 times or more. Reconciliation passes read once each.
        let reverts = GRANTS.len() as u64;
        assert!(
            outage.calls <= reverts * 3 + 2,
            "{} calls in a rate-limited outage",
            outage.calls
        );
    }
);

// A rate-limit budget spent to the end (by other clients of the bot's token) throttles
// nothing by itself: the forge still answers, and an answer that is not a throttle is acted on
// at once. On GitLab the bot took any failed answer with `RateLimit-Remaining: 0` for a rate
// limit and waited for the window's reset, up to an hour: the 404 of a membership check (here:
// is mallory in @acme/sre?), or GitLab's 400 for a status already set (chaos on GitLab, seed
// 20261205, after its first 2,000 calls of the hour).
on_both_forges!(
    a_spent_rate_limit_budget_does_not_hold_back_a_real_answer,
    |s: Scenario| async move {
        s.forge.spend_rate_limit(1_000_000);
        assert_eq!(
            remaining_rate_limit(&s).await,
            "0",
            "the budget reads spent"
        );
        let pr = s
            .by(&s.people.mallory)
            .open_request("prod", "intruder", &prod_request("1h"));
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(
            said.contains("`mallory` may not request access to `prod`"),
            "{said}"
        );
        assert_eq!(remaining_rate_limit(&s).await, "0", "still spent");
    }
);

// The forge merges the revert, but the answer to the merge call is lost (a gateway gives up on
// a slow forge); the retry is refused, the change being merged already. That is the bot's own
// merge: the revert is logged with its merge commit. Before, the refusal sent the bot to
// rebuild the revert, which found nothing left to remove and logged the revert without a
// commit, and `audit verify` reported the revert commit as one the log does not know (chaos on
// GitLab, seed 20261205: `commit b48704376633 revokes chaos-10 but the event log has no
// revocation for it`).
on_both_forges!(
    a_revert_merge_whose_answer_was_lost_is_logged_with_its_commit,
    |s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        s.fail_next(Route::Merge, Method::PUT, 1, FailureKind::AnswerLost);
        s.advance(TimeDelta::hours(1));
        s.settle().await;
        let revert = s.change(s.revert_pr("r1").await);
        let sha = revert.merge_commit_sha.expect("the revert is merged");
        let logged = s.events("r1", "revert").await;
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert_eq!(logged[0].data["revert_sha"], sha.as_str(), "{logged:?}");
        assert!(
            s.forge.log(REPO, "main").iter().any(|c| c.sha == sha),
            "the logged revert is on main"
        );
        let said = s.next_bot_comment(pr);
        assert!(said.starts_with("🔒 **Access revoked"), "{said}");
    }
);

// The forge opens the revert PR, but the answer is lost (a gateway gives up on a slow forge):
// the bot looks for it by its branch before opening it again, which the forge would refuse
// ("A pull request already exists"). Before, the refusal failed the step, and its next run
// built a second branch and PR.
on_both_forges!(
    a_pr_opening_whose_answer_was_lost_is_found_and_not_opened_again,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.fail_next(Route::Changes, Method::POST, 1, FailureKind::AnswerLost);
        s.by(&s.people.carol).approve(pr);
        s.settle().await;
        assert!(s.change(pr).merged);
        let revert = s.revert_pr("r1").await;
        assert_eq!(s.bot_changes(), [revert], "one revert, the one opened once");
        s.advance(TimeDelta::hours(1));
        s.settle().await;
        assert!(s.change(revert).merged);
        s.expect_bot_comments(
            pr,
            &[
                "✅ **Request `r1` is allowed**",
                "🔓 **Access granted.**",
                "🔒 **Access revoked**",
            ],
        );
    }
);

// The same for every write that builds a change: the branch, the file, the PR, each done by
// the forge with its answer lost, for the request asked by comment and for its revert. Each is
// found done and not made again (a branch or a file made again is refused as there already,
// a deletion made again as not found), so no step fails and no second change is built.
on_both_forges!(
    each_write_of_a_change_whose_answer_was_lost_is_found_done,
    |s: Scenario| async move {
        let lose_each_write = |file_method: Method| {
            for (route, method) in [
                (Route::Branches, Method::POST),
                (Route::Files, file_method),
                (Route::Changes, Method::POST),
            ] {
                s.fail_next(route, method, 1, FailureKind::AnswerLost);
            }
        };
        let (put, delete) = match s.dialect {
            Dialect::GitHub => (Method::PUT, Method::DELETE),
            Dialect::GitLab => (Method::POST, Method::POST),
        };
        lose_each_write(put);
        let issue = s.alice_asks_by_comment();
        s.settle().await;
        let reply = s.next_bot_issue_comment(issue);
        assert!(reply.starts_with("📝 @alice, your request is "), "{reply}");
        let [pr] = s.bot_changes()[..] else {
            panic!("one request PR: {:?}", s.bot_changes());
        };
        let verdict = s.next_bot_comment(pr);
        let id = verdict
            .strip_prefix("✅ **Request `")
            .and_then(|rest| rest.split('`').next())
            .unwrap_or_else(|| panic!("{verdict}"))
            .to_owned();
        lose_each_write(delete);
        s.by(&s.people.carol).approve(pr);
        s.settle().await;
        assert!(s.change(pr).merged);
        let revert = s.revert_pr(&id).await;
        assert_eq!(s.bot_changes(), [pr, revert], "one revert");
        s.advance(TimeDelta::hours(1));
        s.settle().await;
        assert!(s.change(revert).merged);
        s.expect_bot_comments(pr, &["🔓 **Access granted.**", "🔒 **Access revoked**"]);
    }
);

/// What the forge's rate-limit header says remains, read as the bot would on any call.
async fn remaining_rate_limit(s: &Scenario) -> String {
    let (url, header) = match s.dialect {
        Dialect::GitHub => (
            format!("{}/user", s.forge.api_url()),
            "x-ratelimit-remaining",
        ),
        Dialect::GitLab => (
            format!("{}/user", s.forge.gitlab_api_url()),
            "ratelimit-remaining",
        ),
    };
    let resp = reqwest::Client::new()
        .get(url)
        .bearer_auth(s.forge.token_for(&s.people.bot))
        .send()
        .await
        .expect("the forge answers");
    resp.headers()
        .get(header)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

on_both_forges!(
    five_minutes_of_a_forge_that_never_answers_delay_no_revoke_and_every_revert_lands,
    short_timeouts(),
    |s: Scenario| async move {
        s.expect_job_error(JobKind::Revert, "no answer within");
        s.expect_error(Source::Reconciliation, "no answer within");
        let outage = grants_expiring_through(&s, FailureKind::Hang).await;
        assert!(outage.calls > 0, "the reverts were tried during the outage");
    }
);

/// Waits (real time, up to 30 s) until `check` holds.
async fn until<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_both_forges!(
    a_forge_call_hanging_on_the_grants_own_pr_does_not_hold_its_revoke_back,
    Setup {
        // Long enough that the hung call holds its PR's lock past the 5 s promise: four
        // attempts of 2 s each, and the backoff between them.
        forge_timeout: Some(Duration::from_secs(2)),
        ..Setup::default()
    },
    |s: Scenario| async move {
        s.expect_delivery_error("no answer within 2s");
        let pr = s.granted("r1", "1h").await;
        // alice's question on the PR is handled under the PR's lock, and the reply's every
        // attempt hangs (the forge would answer after a minute).
        let hang = FailureKind::Timeout(Duration::from_secs(60));
        s.fail_next(Route::Notes, Method::POST, 4, hang);
        let replies = || s.forge.calls().count("POST", s.route(Route::Notes));
        let before = replies();
        s.note(pr, &s.people.alice, "/breakglass status");
        until("the reply hangs", || async { replies() > before }).await;
        s.advance(TimeDelta::hours(1));
        let expired = Instant::now();
        until("r1 is revoked", || async {
            s.request("r1").await.state.to_string() == "revoked"
        })
        .await;
        let took = expired.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "the revoke waited {took:?} for the hung work on its PR"
        );
        until("the hung reply gives up", || async {
            s.failures().iter().any(|f| f.contains("no answer within"))
        })
        .await;
        // The comment is handled again, the revert lands, each said once.
        s.advance(TimeDelta::minutes(1));
        s.settle().await;
        let record = s.request("r1").await;
        assert!(s.change(record.revert_pr_number.unwrap()).merged);
        assert_eq!(s.events("r1", "revoke").await.len(), 1);
        assert_eq!(s.events("r1", "revert").await.len(), 1);
        let said = s.take_bot_comments(pr);
        let count = |marker: &str| said.iter().filter(|c| c.starts_with(marker)).count();
        assert_eq!(
            (count("🔒 **Access revoked**"), said.len()),
            (1, 2),
            "the revoked note and the status reply: {said:#?}"
        );
    }
);

/// The forge answers again: within a few minutes the revert of r1 is merged.
async fn forge_answers_and_the_revert_is_merged(s: &Scenario) {
    s.forge.clear_failures();
    for _ in 0..3 {
        s.advance(TimeDelta::minutes(1));
        s.settle().await;
    }
    let record = s.request("r1").await;
    assert!(s.change(record.revert_pr_number.unwrap()).merged);
}

on_both_forges!(
    a_service_started_while_the_forge_is_down_revokes_on_time,
    short_timeouts(),
    |mut s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        s.crash().await;
        s.advance(TimeDelta::hours(2)); // the grant expires while the bot is down
        // The forge fails as the bot comes back: it cannot learn who it is there.
        s.forge
            .fail_next(FailureSpec::any(u32::MAX, FailureKind::Status(503)));
        s.start_service().await;
        let back = breakglass::clock::Clock::now(&s.clock);
        until("r1 is revoked", || async {
            s.request("r1").await.state.to_string() == "revoked"
        })
        .await;
        let record = s.request("r1").await;
        assert!(record.revoked_at.unwrap() <= back + TimeDelta::seconds(5));
        assert!(s.events("r1", "revert").await.is_empty(), "no revert yet");
        forge_answers_and_the_revert_is_merged(&s).await;
        assert_eq!(s.events("r1", "revert").await.len(), 1);
        s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
    }
);

on_both_forges!(
    a_graceful_stop_ends_within_its_grace_while_a_forge_call_hangs,
    Setup {
        // Without the grace, the stop would wait for the hung call's timeout and its retry.
        forge_timeout: Some(Duration::from_secs(5)),
        shutdown_grace: Some(Duration::from_millis(500)),
        ..Setup::default()
    },
    |mut s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        s.fail_next(
            Route::Notes,
            Method::POST,
            1,
            FailureKind::Timeout(Duration::from_secs(60)),
        );
        let replies = || s.forge.calls().count("POST", s.route(Route::Notes));
        let before = replies();
        s.note(pr, &s.people.alice, "/breakglass status");
        until("the reply hangs", || async { replies() > before }).await;
        let stopping = Instant::now();
        s.stop().await;
        let took = stopping.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "the stop waited {took:?} for a call that hangs for 5 s"
        );
        // Stopped where it stood, as in a crash: the comment is handled again after a start,
        // once the stopped worker's lease has lapsed, and answered once.
        s.start_service().await;
        s.advance(TimeDelta::minutes(2));
        s.settle().await;
        let said = s.take_bot_comments(pr);
        assert_eq!(said.len(), 1, "the status reply, once: {said:#?}");
    }
);

on_both_forges!(
    a_merge_whose_answer_is_lost_is_still_the_bots_own_merge,
    Setup {
        forge_timeout: Some(Duration::from_millis(300)),
        ..Setup::default()
    },
    |s: Scenario| async move {
        // The forge merges, then answers after the bot gave up on the call: merged again,
        // it would say "not mergeable", and the bot would take its own merge for a person's.
        s.fail_next(
            Route::Merge,
            Method::PUT,
            1,
            FailureKind::AnswerLate(Duration::from_secs(2)),
        );
        let pr = s.granted("r1", "1h").await;
        let record = s.request("r1").await;
        assert_eq!(record.state.to_string(), "active");
        assert_eq!(
            record.merge_sha.as_deref(),
            s.change(pr).merge_commit_sha.as_deref()
        );
        assert_eq!(s.events("r1", "merge").await.len(), 1);
        assert_eq!(
            s.forge.calls().count("PUT", s.route(Route::Merge)),
            1,
            "merged once, found on the PR after the lost answer"
        );
    }
);

on_both_forges!(
    a_note_whose_answer_is_lost_is_said_once,
    Setup {
        forge_timeout: Some(Duration::from_millis(300)),
        ..Setup::default()
    },
    |s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        s.fail_next(
            Route::Notes,
            Method::POST,
            1,
            FailureKind::AnswerLate(Duration::from_secs(2)),
        );
        let posts = || s.forge.calls().count("POST", s.route(Route::Notes));
        let before = posts();
        s.note(pr, &s.people.alice, "/breakglass status");
        s.settle().await;
        let said = s.take_bot_comments(pr);
        assert_eq!(said.len(), 1, "the status reply, once: {said:#?}");
        assert_eq!(posts() - before, 1, "the reply, posted once");
    }
);

// A forge that takes connections and never answers is worse than one that is down: each of the
// bot's calls waits its whole timeout, four times. The start must not wait for it (no
// listener and no revocation until then): it gives up on learning who the bot is after a few
// seconds, revokes at once, and learns it once the forge answers.
on_both_forges!(
    a_service_started_while_the_forge_hangs_listens_and_revokes_at_once,
    |mut s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        s.crash().await;
        s.advance(TimeDelta::hours(2)); // the grant expires while the bot is down
        s.forge.fail_next(FailureSpec::any(
            u32::MAX,
            FailureKind::Timeout(Duration::from_secs(600)),
        ));
        let starting = Instant::now();
        s.start_service().await;
        let took = starting.elapsed();
        assert!(
            took < Duration::from_secs(8),
            "the start waited {took:?} for a forge that hangs"
        );
        until("r1 is revoked", || async {
            s.request("r1").await.state.to_string() == "revoked"
        })
        .await;
        assert!(
            starting.elapsed() < Duration::from_secs(10),
            "revoked {:?} after the start began",
            starting.elapsed()
        );
        forge_answers_and_the_revert_is_merged(&s).await;
        s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
    }
);

/// alice's request r1 on GitHub awaiting an emoji, and the next `count` reads of `template`
/// (GET) failing with 502: each poll that makes one fails.
async fn a_poll_that_fails_its_read_of(template: &str, count: u32) -> (Scenario, u64) {
    let s = Scenario::start(Backend::Sqlite).await.unwrap();
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
    s.expect_job_error(JobKind::Poll, "HTTP 502");
    s.forge.fail_next(FailureSpec {
        route: RouteMatcher::Route {
            method: Some(Method::GET),
            template: template.to_owned(),
        },
        count,
        kind: FailureKind::Status(502),
    });
    (s, pr)
}

/// GitHub sends no event for emoji, so each poll reads the PR's and then those on the bot's
/// latest comment. When only the second read fails, for as long as it takes, the PR's own
/// emoji are still read every 30 s: an approver's 👍 there is noticed at the next poll, not
/// after a backoff grown by the failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_read_of_the_bots_comment_emoji_does_not_slow_the_polls_of_the_prs() {
    let (s, pr) = a_poll_that_fails_its_read_of(
        "/repos/{owner}/{repo}/issues/comments/{id}/reactions",
        u32::MAX,
    )
    .await;
    // Ten minutes of failed reads: a backoff would have grown past the interval by now.
    for _ in 0..20 {
        s.advance(TimeDelta::seconds(30));
        s.settle().await;
    }
    let failed = s.forge.calls().count(
        "GET",
        "/repos/{owner}/{repo}/issues/comments/{id}/reactions",
    );
    assert!(failed >= 20, "the comment was read at each poll: {failed}");
    s.emoji(pr, &s.people.carol, "+1");
    s.advance(TimeDelta::seconds(30));
    s.settle().await;
    assert!(s.change(pr).merged, "noticed at the next poll");
    s.forge.clear_failures();
    s.take_bot_comments(pr);
}

/// dan approves by emoji as a member of `@acme/sre-leads`; the poll that reads his 👍 cannot
/// read his team (502) and fails. The list it read is not kept: the next poll reads it in full
/// again (a `304` for the kept one would hide his emoji until the list changed) and merges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emoji_read_by_a_poll_that_failed_is_read_again_at_the_next() {
    let (s, pr) =
        a_poll_that_fails_its_read_of("/orgs/{org}/teams/{slug}/memberships/{username}", 20).await;
    s.emoji(pr, &s.people.dan, "+1");
    s.advance(TimeDelta::seconds(30));
    s.settle().await;
    s.forge.clear_failures();
    s.advance(TimeDelta::seconds(30));
    s.settle().await;
    assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    s.take_bot_comments(pr);
}

/// Waits (real time) until a run of request `id`'s merge job has failed and is over, so that
/// what the test does next meets its next run, not this one's retries.
async fn until_a_merge_run_failed(s: &Scenario, id: &str) {
    let id = id.to_owned().try_into().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let jobs = s.store.jobs_for_request(&id).await.unwrap();
        if jobs
            .iter()
            .any(|j| j.kind == JobKind::Merge && j.attempts > 0)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the merge never failed: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// Approved half a minute before its 24 h deadline, with the merge call failing (503) past it;
// then the approval is taken back: the merge is refused and the request is pending again,
// after its deadline. The expiry, which found the merge under way, looks again and closes it.
on_both_forges!(
    a_request_pending_again_after_its_deadline_still_expires,
    |s: Scenario| async move {
        s.lenient(); // the not-merged reply and the poll's output are not what this is about
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.advance(TimeDelta::hours(24) - TimeDelta::seconds(30));
        s.settle().await;
        s.fail_next(Route::Merge, Method::PUT, 1000, FailureKind::Status(503));
        s.approve_button(pr, &s.people.carol);
        until_a_merge_run_failed(&s, "r1").await;
        // Past the deadline while the merge job waits out its backoff.
        s.advance(TimeDelta::seconds(40));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(s.request("r1").await.state.to_string(), "approved");
        s.unapprove_button(pr, &s.people.carol);
        s.forge.clear_failures();
        s.advance(TimeDelta::minutes(10));
        s.settle().await;
        let record = s.request("r1").await;
        assert_eq!(
            record.state.to_string(),
            "closed",
            "{:#?}",
            s.bot_comments(pr)
        );
        assert!(!s.change(pr).merged);
        assert_eq!(s.change(pr).state, "closed");
        assert!(
            s.bot_comments(pr)
                .iter()
                .any(|c| c.starts_with("⌛ Nobody approved this request within 24h")),
            "{:#?}",
            s.bot_comments(pr)
        );
    }
);

// The merge call fails for two hours (the forge down) after the grant time was fixed: once the
// forge is back the merge lands with an expiry of its own time, the whole hour, not the first
// try's (over before it began).
on_both_forges!(
    a_merge_delayed_by_a_long_outage_grants_its_whole_duration,
    |s: Scenario| async move {
        s.expect_job_error(JobKind::Merge, "HTTP 503");
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        s.fail_next(Route::Merge, Method::PUT, 100_000, FailureKind::Status(503));
        s.approve(pr, &s.people.carol);
        until_a_merge_run_failed(&s, "r1").await;
        let first_fixed = s
            .request("r1")
            .await
            .expires_at
            .expect("fixed at the first try");
        for _ in 0..24 {
            s.advance(TimeDelta::minutes(5));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        s.forge.clear_failures();
        for _ in 0..20 {
            if s.change(pr).merged {
                break;
            }
            s.advance(TimeDelta::minutes(5));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        let record = s.request("r1").await;
        assert_eq!(record.state.to_string(), "active");
        let (granted, expires) = (record.granted_at.unwrap(), record.expires_at.unwrap());
        assert_eq!(expires - granted, TimeDelta::hours(1));
        assert!(
            expires > first_fixed + TimeDelta::hours(1),
            "{expires} {first_fixed}"
        );
        assert!(
            expires > s.clock.now() + TimeDelta::minutes(30),
            "{expires}"
        );
        let merge = s.merge_commit(pr);
        let trailer = format!("Breakglass-Expires: {}", breakglass::clock::iso(expires));
        assert!(merge.message.contains(&trailer), "{}", merge.message);
        s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
    }
);

// The same when the expiry's own last look at the emoji is what approves (GitHub: an emoji
// given after the last poll before the deadline): the expiry looks again later, and closes
// the request once the merge is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_approved_by_its_expirys_last_look_and_then_refused_still_expires() {
    let Some(s) = Scenario::start(Backend::Sqlite).await else {
        return;
    };
    s.lenient(); // the not-merged reply and the merge job's 503s are not what this is about
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.advance(TimeDelta::hours(24) - TimeDelta::seconds(5)); // a poll now, the next in 30 s
    s.settle().await;
    let emoji = s.emoji(pr, &s.people.carol, "+1");
    s.fail_next(Route::Merge, Method::PUT, 1000, FailureKind::Status(503));
    s.advance(TimeDelta::seconds(6)); // the expiry is due, the next poll is not
    // The merge job's run is over before the emoji goes: its next run's check finds it gone.
    until_a_merge_run_failed(&s, "r1").await;
    s.remove_emoji(pr, emoji);
    s.forge.clear_failures();
    s.advance(TimeDelta::minutes(10));
    s.settle().await;
    assert!(!s.change(pr).merged);
    assert_eq!(s.request("r1").await.state.to_string(), "closed");
    assert_eq!(s.change(pr).state, "closed");
}
