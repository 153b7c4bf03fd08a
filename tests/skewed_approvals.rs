//! One clock per comparison, for every way an approval reaches the bot: each scenario runs on
//! both forges with the forge's clock 7 s and an hour ahead of the bot's and behind it. The
//! bot compares a forge time only with another forge time (a comment's or emoji's against the
//! push's), so none of these may change with the skew; a bug that compared one with the bot's
//! own clock would approve stale versions one way and drop fresh approvals the other.

mod common;

use chrono::TimeDelta;
use common::late::*;
use common::*;

fn is_push_side(d: &breakglass_test_forge::Delivery) -> bool {
    !is_approve_comment(d)
}

/// Runs a scenario body on each forge with the forge's clock 7 s and an hour ahead of the bot's
/// and behind it (SQLite).
macro_rules! on_every_skew {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            async fn run(dialect: Dialect, skew: i64) {
                let setup = Setup {
                    dialect,
                    forge_skew_secs: skew,
                    ..Setup::default()
                };
                let s = Scenario::start_with(Backend::Sqlite, setup)
                    .await
                    .expect("SQLite is always there");
                ($body)(s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn github_ahead_7s() {
                run(Dialect::GitHub, 7).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn github_behind_7s() {
                run(Dialect::GitHub, -7).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn github_ahead_1h() {
                run(Dialect::GitHub, 3600).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn github_behind_1h() {
                run(Dialect::GitHub, -3600).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn gitlab_ahead_7s() {
                run(Dialect::GitLab, 7).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn gitlab_behind_7s() {
                run(Dialect::GitLab, -7).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn gitlab_ahead_1h() {
                run(Dialect::GitLab, 3600).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn gitlab_behind_1h() {
                run(Dialect::GitLab, -3600).await;
            }
        }
    };
}

on_every_skew!(
    skew_approve_comment_a_second_after_the_push_merges,
    |s: Scenario| async move {
        let pr = requested(&s, "r1").await;
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
    }
);

on_every_skew!(
    skew_approve_comment_in_the_push_second_is_asked_again,
    |s: Scenario| async move {
        let now = s.forge.now();
        s.forge.freeze_clock(now);
        let pr = requested(&s, "r1").await;
        s.note(pr, &s.people.carol, "/breakglass approve");
        s.settle().await;
        assert!(!s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        let said = s.next_bot_comment(pr);
        assert!(
            said.starts_with("⏱️ @carol, your approval came within the same second"),
            "{said}"
        );
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
    }
);

on_every_skew!(skew_approve_button_merges, |s: Scenario| async move {
    let pr = requested(&s, "r1").await;
    s.approve_button(pr, &s.people.dan);
    s.settle().await;
    assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
});

on_every_skew!(
    skew_approve_comment_written_after_a_push_and_heard_before_it_counts,
    |s: Scenario| async move { approve_comment_after_a_push_heard_first(&s).await }
);

on_every_skew!(
    skew_approve_button_of_the_new_head_heard_before_its_push_counts,
    |s: Scenario| async move { approve_button_after_a_push_heard_first(&s).await }
);

on_every_skew!(
    skew_emoji_given_after_a_push_and_seen_before_it_counts,
    |s: Scenario| async move { emoji_after_a_push_seen_first(&s).await }
);

// "Approval must come after the last push": a `/breakglass approve` written before a push and
// heard only after it is answered (given before the latest push), never counted.
on_every_skew!(
    skew_approve_comment_written_before_a_push_and_heard_after_it_is_answered_stale,
    |s: Scenario| async move {
        let pr = requested(&s, "r1").await;
        s.forge.set_webhooks_paused(true);
        s.approve(pr, &s.people.carol);
        push_new_version(&s, "r1");
        deliver_first(&s, is_push_side).await;
        release_and_poll(&s).await;
        assert!(!s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        let said = s.take_bot_comments(pr);
        assert!(
            said.iter()
                .any(|c| c.starts_with("⏱️ @carol, your approval was given before the latest push")),
            "{said:#?}"
        );
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        assert_eq!(s.request("r1").await.duration_secs, 7200);
        s.take_bot_comments(pr);
    }
);

on_every_skew!(
    skew_emoji_given_before_a_push_does_not_approve_the_new_head,
    |s: Scenario| async move {
        let pr = requested(&s, "r1").await;
        s.forge.set_webhooks_paused(true);
        s.emoji(pr, &s.people.carol, "+1");
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.forge.push_files(
            REPO,
            "request-r1",
            &s.people.alice,
            &[("requests/prod/r1.yaml", &prod_request("2h"))],
            "longer",
        );
        s.forge.set_webhooks_paused(false);
        s.forge.flush_webhooks();
        poll(&s).await;
        assert!(!s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.emoji(pr, &s.people.dan, "+1");
        poll(&s).await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        let merge = s.merge_commit(pr);
        assert!(
            merge.message.contains("Breakglass-Approved-By: dan"),
            "{}",
            merge.message
        );
        s.take_bot_comments(pr);
    }
);

on_every_skew!(skew_deny_by_an_approver_closes, |s: Scenario| async move {
    let pr = requested(&s, "r1").await;
    s.forge.advance_clock(TimeDelta::seconds(1));
    s.note(pr, &s.people.carol, "/breakglass deny -- nope");
    s.settle().await;
    assert_eq!(
        s.next_bot_comment(pr),
        "🚫 Request denied by @carol: `nope`. Closing."
    );
    assert_eq!(s.request("r1").await.state.to_string(), "closed");
    assert!(!s.change(pr).merged);
});

// Extension: the requester asks, an approver's `/breakglass approve` a second later extends
// (ask before approval, forge time on both sides); then an approver's own `/breakglass extend`
// a second after the bot's "Extended" note extends again (of_current_expiry: forge vs forge).
on_every_skew!(
    skew_extension_approved_by_comment_then_extended_again_by_an_approver,
    |s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        let granted = s.request("r1").await.expires_at.unwrap();
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(pr, &s.people.alice, "/breakglass extend 30m");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(said.starts_with("⏳ @alice asks for 30m more"), "{said}");
        s.approve(pr, &s.people.carol);
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(said.starts_with("⏳ Extended"), "{said}");
        let extended = s.request("r1").await.expires_at.unwrap();
        assert_eq!(extended - granted, TimeDelta::minutes(30));
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(pr, &s.people.carol, "/breakglass extend 30m");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(said.starts_with("⏳ Extended"), "{said}");
        let again = s.request("r1").await.expires_at.unwrap();
        assert_eq!(again - granted, TimeDelta::minutes(60));
    }
);

// Extension by emoji: carol's emoji from before the ask approves nothing; dan's in the ask's
// own second is asked again; carol's put on again a second after it extends (forge time on
// both sides, and the poll or the Emoji Hook at the bot's own times).
on_every_skew!(
    skew_extension_approved_by_an_emoji_put_on_after_the_ask,
    |s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        let granted = s.request("r1").await.expires_at.unwrap();
        let carols = s.emoji(pr, &s.people.carol, "+1");
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(pr, &s.people.alice, "/breakglass extend 30m");
        s.emoji_now(pr, &s.people.dan, "+1");
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(said.starts_with("⏳ @alice asks for 30m more"), "{said}");
        let said = s.next_bot_comment(pr);
        assert!(
            said.starts_with("⏱️ @dan, your approval came within the same second"),
            "{said}"
        );
        s.expect_no_bot_comment(pr);
        assert_eq!(s.request("r1").await.expires_at.unwrap(), granted);
        s.remove_emoji(pr, carols);
        s.emoji(pr, &s.people.carol, "+1");
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(said.starts_with("⏳ Extended"), "{said}");
        let extended = s.request("r1").await.expires_at.unwrap();
        assert_eq!(extended - granted, TimeDelta::minutes(30));
    }
);

/// bob's 45-minute prod request on branch `sev1-request`, not opened yet.
fn push_sev1_branch(s: &Scenario) {
    let yaml = "environment: prod\nrole: admin\nduration: 45m\nreason: incident INC-9 payments down\nticket: INC-9\n";
    s.forge.push_files(
        REPO,
        "sev1-request",
        &s.people.bob,
        &[("requests/prod/r-sev1.yaml", yaml)],
        "request",
    );
}

async fn sev1_fast_path(s: &Scenario) -> u64 {
    let bob = &s.people.bob;
    push_sev1_branch(s);
    let pr = s.open_labelled_change(bob, "sev1-request", "sev1 access", "sev1");
    s.settle().await;
    assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
    pr
}

on_every_skew!(
    skew_fast_path_reviewed_by_command,
    |s: Scenario| async move {
        let pr = sev1_fast_path(&s).await;
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.by(&s.people.carol).command(pr, "reviewed");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(
            said.starts_with("✔️ After-the-fact review by @carol"),
            "{said}"
        );
        assert!(s.request("r-sev1").await.reviewed_at.is_some());
    }
);

on_every_skew!(skew_fast_path_reviewed_by_emoji, |s: Scenario| async move {
    let pr = sev1_fast_path(&s).await;
    s.emoji(pr, &s.people.carol, "+1");
    poll(&s).await;
    assert!(
        s.request("r-sev1").await.reviewed_at.is_some(),
        "{:#?}",
        s.bot_comments(pr)
    );
    let said = s.next_bot_comment(pr);
    assert!(
        said.starts_with("✔️ After-the-fact review by @carol"),
        "{said}"
    );
});

// GitHub binds a review to its commit: carol approves A, alice pushes B (approvals forgotten)
// and then A back. carol's review was given before the latest push; handed over again after a
// restart (the catch-up's missed review), it must not count for A (a review found it counted).
on_both_forges_skewed!(
    a_review_given_before_the_head_went_away_and_came_back_does_not_count_after_a_restart,
    |mut s: Scenario| async move {
        s.prod_needs_two_approvals().await;
        let pr = requested(&s, "r1").await;
        let a = s.change(pr).head_sha;
        s.approve_button(pr, &s.people.carol);
        s.settle().await;
        assert!(!s.change(pr).merged);
        push_new_version(&s, "r1");
        s.settle().await;
        s.forge.advance_clock(TimeDelta::seconds(2));
        s.forge
            .force_branch(REPO, "request-r1", &s.people.alice, &a);
        s.settle().await;
        assert_eq!(s.request("r1").await.head_sha, a, "the bot heard it");
        s.take_bot_comments(pr);
        s.crash().await;
        s.start_service().await;
        s.settle().await;
        s.take_bot_comments(pr);
        s.approve(pr, &s.people.dan);
        s.settle().await;
        assert!(!s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.take_bot_comments(pr);
    }
);

// A push whose webhook never came (a proxy's 502, GitHub's timeline dating no plain push): the
// approval's merge finds the new head at its last read and decides it. Before, every approval
// was answered "⚠️ Not merged: the pull request's head moved" and the request was stuck for
// good, the new head never decided.
on_every_skew!(
    skew_an_approval_after_a_push_whose_webhook_was_lost_is_judged_on_the_new_head,
    |s: Scenario| async move {
        let pr = requested(&s, "r1").await;
        s.forge.set_webhooks_paused(true);
        push_new_version(&s, "r1");
        s.forge.set_webhooks_paused(false); // the push's webhook stays unsent
        s.approve(pr, &s.people.carol);
        s.settle().await;
        let mut said = s.take_bot_comments(pr);
        if !s.change(pr).merged {
            // Timed by the PR's latest update, a bound on the push: asked again, never dropped.
            assert!(said.iter().any(|c| c.starts_with("⏱️ @carol")), "{said:#?}");
            s.approve(pr, &s.people.carol);
            s.settle().await;
            said.extend(s.take_bot_comments(pr));
        }
        assert!(s.change(pr).merged, "{said:#?}");
        assert_eq!(s.request("r1").await.duration_secs, 7200, "{said:#?}");
        let merge = s.merge_commit(pr);
        assert!(merge.message.contains("for 2h"), "{}", merge.message);
        assert!(
            !said.iter().any(|c| c.starts_with("⚠️ Not merged")),
            "{said:#?}"
        );
        assert!(
            said.iter()
                .any(|c| c.starts_with("✅ **Request `r1` is allowed**") && c.contains("2h")),
            "the new head is decided: {said:#?}"
        );
    }
);

// An approver's 👍 on a fast-path PR in the second of its push, seen after the merge: which
// version it reviews cannot be told. The reply names what closes a review (before, it named
// the approval ways, and `/breakglass approve` was then answered "nothing to approve").
on_every_skew!(
    skew_an_emoji_in_the_push_second_of_a_fast_path_is_asked_to_review_again,
    |s: Scenario| async move {
        let now = s.forge.now();
        s.forge.freeze_clock(now);
        let bob = &s.people.bob;
        push_sev1_branch(&s);
        let pr = s.before_the_bot_hears(|| {
            let pr = s.open_change(bob, "sev1-request", "sev1 access");
            s.label(pr, bob, "sev1");
            s.emoji_now(pr, &s.people.carol, "+1");
            pr
        });
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.forge.set_clock(now + TimeDelta::seconds(5));
        poll(&s).await;
        let asked = s.take_bot_comments(pr);
        let ask = asked
            .iter()
            .find(|c| c.starts_with("⏱️ @carol"))
            .unwrap_or_else(|| panic!("{asked:#?}"));
        assert!(ask.contains("`/breakglass reviewed`"), "{ask}");
        assert!(!ask.contains("`/breakglass approve`"), "{ask}");
        s.note(pr, &s.people.carol, "/breakglass reviewed");
        s.settle().await;
        let reviewed = s.request("r-sev1").await;
        assert_eq!(
            reviewed.reviewed_by.as_ref().map(|l| l.as_str()),
            Some("carol")
        );
        s.expect_bot_comments(pr, &["✔️ After-the-fact review by @carol recorded"]);
    }
);
