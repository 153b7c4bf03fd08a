//! No grant is ever left alive past its expiry: not after a crash, a forge outage or a restart.
//! Each story kills the service where it stands (no graceful shutdown), moves time, starts a
//! new service on the same database, and checks that the revocation happened.

mod common;

use std::time::{Duration, Instant};

use breakglass::store::JobKind;
use breakglass_test_forge::FailureKind;
use chrono::TimeDelta;
use common::*;
use http::Method;

/// Waits (real time) until the request is revoked and its revert is done (the revert is
/// forge work that follows the revoke), nudging the clock so that retries with backoff become
/// due; returns how long it took.
async fn until_revoked(s: &Scenario, id: &str) -> Duration {
    let started = Instant::now();
    for _ in 0..200 {
        if s.request(id).await.state.to_string() == "revoked"
            && !s.events(id, "revert").await.is_empty()
        {
            let took = started.elapsed();
            s.settle().await;
            return took;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        s.advance(TimeDelta::seconds(5));
    }
    panic!("{id} was never revoked: {:?}", s.request(id).await);
}

on_both_forges!(
    a_crash_after_the_merge_still_revokes_at_ttl,
    |mut s: Scenario| async move {
        let pr = s.granted("r-crash", "1h").await;
        s.crash();
        s.advance(TimeDelta::hours(2)); // the TTL passes while the bot is down
        s.start_service().await;
        let took = until_revoked(&s, "r-crash").await;
        assert!(
            took < Duration::from_secs(5),
            "overdue revocations fire at start ({took:?})"
        );
        let record = s.request("r-crash").await;
        assert!(s.change(record.revert_pr_number.unwrap()).merged);
        assert!(
            s.forge
                .files_on(REPO, "main")
                .iter()
                .all(|f| !f.starts_with("requests/"))
        );
        let revoked = s.next_bot_comment(pr);
        assert!(revoked.starts_with("🔒 **Access revoked**"), "{revoked}");
    }
);

on_both_forges!(
    a_crash_before_the_revert_pr_exists_still_revokes,
    |mut s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-norevert", &prod_request("1h"));
        s.settle().await;
        // The forge refuses to open PRs (every attempt of the revert step's one run), so the
        // revert PR does not exist when the bot dies.
        s.fail_next(Route::Changes, Method::POST, 4, FailureKind::Status(500));
        s.expect_job_error(JobKind::OpenRevert, "HTTP 500");
        s.by(&s.people.carol).approve(pr);
        s.settle().await;
        assert!(s.change(pr).merged);
        assert_eq!(
            s.request("r-norevert").await.revert_pr_number,
            None,
            "no revert PR yet"
        );
        s.crash();
        s.advance(TimeDelta::hours(2));
        s.start_service().await;
        until_revoked(&s, "r-norevert").await;
        let record = s.request("r-norevert").await;
        let revert = record.revert_pr_number.expect("created on restart");
        assert!(s.change(revert).merged);
        let verdict = s.next_bot_comment(pr);
        assert!(
            verdict.starts_with("✅ **Request `r-norevert` is allowed**"),
            "{verdict}"
        );
        // The expiry comment does not wait for the revert PR: it was said before the crash.
        let granted = s.next_bot_comment(pr);
        assert!(granted.starts_with("🔓 **Access granted.**"), "{granted}");
        assert!(s.change(revert).body.contains(&s.change_ref(pr)));
        let revoked = s.next_bot_comment(pr);
        assert!(revoked.starts_with("🔒 **Access revoked**"), "{revoked}");
    }
);

on_both_forges!(
    forge_errors_during_the_revoke_are_retried_until_it_succeeds,
    |s: Scenario| async move {
        let pr = s.granted("r-flaky", "1h").await;
        s.fail_next(Route::Merge, Method::PUT, 6, FailureKind::Status(502));
        s.expect_job_error(JobKind::Revert, "HTTP 502");
        s.fail_next(
            Route::Notes,
            Method::POST,
            2,
            FailureKind::SecondaryRateLimit429 { retry_after: 1 },
        );
        s.advance(TimeDelta::hours(1));
        until_revoked(&s, "r-flaky").await;
        let record = s.request("r-flaky").await;
        assert!(s.change(record.revert_pr_number.unwrap()).merged);
        // The failures did happen: six refused merges before the one that went through.
        assert!(s.forge.calls().count("PUT", s.route(Route::Merge)) >= 7);
        let revoked = s.next_bot_comment(pr);
        assert!(revoked.starts_with("🔒 **Access revoked**"), "{revoked}");
    }
);
