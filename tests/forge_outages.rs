//! Long forge outages (issue 11): for five minutes of the bot's clock every API call fails
//! (5xx, or 429 with `Retry-After`) while grants expire one a minute. The revokes need no forge
//! call and happen on time; the reverts wait, retry no faster than the forge asked, and all
//! land once the forge is back, each requester told once.

mod common;

use breakglass::store::JobKind;
use breakglass_test_forge::{FailureKind, FailureSpec};
use chrono::TimeDelta;
use common::*;

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
