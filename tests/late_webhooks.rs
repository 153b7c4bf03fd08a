//! Webhooks that arrive late or out of order, and forge clocks far from the bot's. An approval
//! given after a push but heard before that push's webhook is meant for the pushed version and
//! counts for it (SPEC: only approvals given before the latest push do not count, judged on the
//! forge's own timestamps, and none is dropped in silence); a pending request's last reactions
//! are read before it expires; approval timing holds with the forge's clock an hour off.

mod common;

use chrono::TimeDelta;
use common::late::*;
use common::*;

// An approving review (GitHub) or the Approve button (GitLab) of the new head, heard before the
// push's webhook: the push is caught up with, and the approval merges the version it approved.
on_both_forges!(
    an_approval_of_the_new_head_heard_before_its_push_counts,
    |s: Scenario| async move { approve_button_after_a_push_heard_first(&s).await }
);

// `/breakglass approve` written after a push and handled before its webhook; with two
// approvals needed, carol's (told "1 of 2") and dan's later one merge the pushed version.
on_both_forges!(
    an_approve_comment_written_after_a_push_and_heard_before_it_counts,
    |s: Scenario| async move { approve_comment_after_a_push_heard_first(&s).await }
);

// An approval given after a push, then a label event that shows the new head before the push's
// webhook: the label's `updated_at` only bounds when the push came, so the approval cannot be
// told from one of the old version. It never counts in silence either way: its approver is
// asked to approve again (before, it was dropped without a word, "1 of 2" standing).
on_both_forges!(
    an_approval_older_than_the_label_that_first_showed_a_push_is_asked_again,
    |s: Scenario| async move {
        s.prod_needs_two_approvals().await;
        let pr = requested(&s, "r1").await;
        s.forge.set_webhooks_paused(true);
        push_new_version(&s, "r1");
        s.approve(pr, &s.people.carol); // a second after the push, by the forge's clock
        deliver_first(&s, is_approve_comment).await;
        let first = s.take_bot_comments(pr);
        assert_eq!(first, ["👍 Approval by @carol recorded (1 of 2)."]);
        s.forge.advance_clock(TimeDelta::seconds(2));
        s.label(pr, &s.people.alice, "urgent");
        deliver_first(&s, is_label_event).await;
        let asked = s.take_bot_comments(pr);
        assert!(
            asked.iter().any(|c| c.starts_with(
                "⏱️ @carol, your approval came within the same second as the latest push (or before breakglass heard when that push came)"
            )),
            "{asked:#?}"
        );
        release_and_poll(&s).await;
        s.approve(pr, &s.people.dan);
        s.settle().await;
        assert!(
            !s.change(pr).merged,
            "carol's approval is not counted unseen"
        );
        s.forge.advance_clock(TimeDelta::seconds(2));
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.take_bot_comments(pr);
    }
);

// A 👍 given after a push and seen (GitHub's poll, GitLab's Emoji Hook) before the push's
// webhook counts for the pushed version, though GitHub's reaction list is unchanged (a 304)
// once the push is handled.
on_both_forges!(
    an_emoji_given_after_a_push_and_seen_before_it_counts,
    |s: Scenario| async move { emoji_after_a_push_seen_first(&s).await }
);

// A 👍 given before a push does not count for the pushed version: with two approvals needed,
// carol's 👍 on the first version and dan's approval of the second are one approval each.
on_both_forges!(
    an_emoji_given_before_a_push_does_not_count_for_it,
    |s: Scenario| async move {
        s.prod_needs_two_approvals().await;
        let pr = requested(&s, "r1").await;
        s.emoji(pr, &s.people.carol, "+1");
        poll(&s).await;
        assert_eq!(
            s.events("r1", "approval").await.len(),
            1,
            "carol's 👍 counted"
        );
        push_new_version(&s, "r1");
        s.settle().await;
        s.take_bot_comments(pr);
        s.forge.advance_clock(TimeDelta::seconds(2));
        s.approve(pr, &s.people.dan);
        s.settle().await;
        assert_eq!(
            s.take_bot_comments(pr),
            ["👍 Approval by @dan recorded (1 of 2)."]
        );
        assert!(!s.change(pr).merged);
    }
);

// GitHub: carol's 👍 comes 19 s before the pending deadline, and the next reaction poll would
// come after the expiry: the expiry reads the reactions once more and merges instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_given_before_the_pending_deadline_is_not_expired_away() {
    let s = Scenario::start(Backend::Sqlite).await.unwrap();
    let pr = requested(&s, "r1").await;
    s.advance(TimeDelta::hours(24) - TimeDelta::seconds(20));
    s.settle().await; // a poll runs now; the next one is 30 s away
    s.emoji(pr, &s.people.carol, "+1");
    s.advance(TimeDelta::seconds(25));
    s.settle().await;
    assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    s.take_bot_comments(pr);
}

// Approval timing with the forge's clock 90 s or an hour ahead of the bot's or behind it: a 👍
// a second after the push approves; a same-second one is asked again; a fast-path grant's 👍
// review a second after its merge closes the review.
async fn skewed_story(dialect: Dialect, skew: i64) {
    let setup = Setup {
        dialect,
        forge_skew_secs: skew,
        ..Setup::default()
    };
    let s = Scenario::start_with(Backend::Sqlite, setup).await.unwrap();
    let pr = requested(&s, "r1").await;
    s.emoji(pr, &s.people.carol, "+1");
    poll(&s).await;
    assert!(
        s.change(pr).merged,
        "skew {skew}: {:#?}",
        s.bot_comments(pr)
    );
    s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
    // Same second as the push: asked again.
    let now = s.forge.now();
    s.forge.freeze_clock(now);
    let pr2 = s.open_request(&s.people.alice, "prod", "r2", &prod_request("1h"));
    s.settle().await;
    s.emoji_now(pr2, &s.people.carol, "+1");
    poll(&s).await;
    assert!(!s.change(pr2).merged, "skew {skew}");
    s.expect_bot_comments(pr2, &["✅", "⏱️ @carol"]);
    s.forge.set_clock(now + TimeDelta::seconds(5));
    // Fast path, then a review by 👍.
    let pr3 = s.open_bob_sev1_change();
    s.settle().await;
    assert!(
        s.change(pr3).merged,
        "skew {skew}: {:#?}",
        s.bot_comments(pr3)
    );
    s.expect_bot_comments(pr3, &["🔓 **Access granted.**"]);
    s.emoji(pr3, &s.people.carol, "+1");
    poll(&s).await;
    assert!(
        s.request("r-sev1").await.reviewed_at.is_some(),
        "skew {skew}: {:#?}",
        s.bot_comments(pr3)
    );
    let _ = s.take_bot_comments(pr3);
    let _ = s.take_bot_comments(pr2);
    let _ = s.take_bot_comments(pr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_timing_holds_with_the_forge_clock_an_hour_off() {
    for dialect in [Dialect::GitHub, Dialect::GitLab] {
        for skew in [90, -90, 3600, -3600] {
            skewed_story(dialect, skew).await;
        }
    }
}

// An approval withdrawn by editing the comment (SPEC: an approval withdrawn before the merge no
// longer counts): the edit's webhook withdraws it; with that webhook lost, the check of every
// approval's source right before the merge reads the comment as it is now.
on_both_forges!(
    an_approve_comment_edited_away_no_longer_counts_with_or_without_its_webhook,
    |s: Scenario| async move {
        s.prod_needs_two_approvals().await;
        for (id, webhook_heard) in [("r1", true), ("r2", false)] {
            let pr = requested(&s, id).await;
            let comment = s.approve(pr, &s.people.carol);
            s.settle().await;
            s.forge.set_webhooks_paused(!webhook_heard);
            s.forge.edit_comment(
                REPO,
                comment,
                &s.people.carol,
                "On second thought, I do not.",
            );
            s.forge.set_webhooks_paused(false);
            s.settle().await;
            s.approve(pr, &s.people.dan);
            s.settle().await;
            assert!(!s.change(pr).merged, "{id}: {:#?}", s.bot_comments(pr));
            assert_eq!(s.request(id).await.state.to_string(), "pending", "{id}");
            s.take_bot_comments(pr);
        }
    }
);

// An approval of the old head whose webhook comes after the push's was handled: its event
// still names the old head as the change's head, and the bot, having decided the new one,
// answers it (approve again) instead of dropping it in silence.
on_both_forges!(
    an_approval_of_the_old_head_heard_after_the_push_is_answered,
    |s: Scenario| async move {
        let pr = requested(&s, "r1").await;
        s.forge.set_webhooks_paused(true);
        s.approve_button(pr, &s.people.carol); // of the head before the push
        push_new_version(&s, "r1");
        deliver_first(&s, |d| !is_approval_event(d)).await;
        release_and_poll(&s).await;
        assert!(!s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        let said = s.take_bot_comments(pr);
        assert!(
            said.iter().any(
                |c| c.starts_with("⏱️ @carol, your approval was given before the latest push.")
            ),
            "{said:#?}"
        );
    }
);

// A request PR whose webhooks were all lost while the bot was up (the forge could not reach it
// for a moment, and does not send again): the first command anyone gives on it decides it
// first, so that `/breakglass status` answers with its verdict and `/breakglass approve` counts
// instead of being told there is no request here.
on_both_forges!(
    a_command_on_a_request_pr_whose_opening_was_never_heard_decides_it_first,
    |s: Scenario| async move {
        s.forge.set_webhooks_paused(true);
        let pr = s.open_request(&s.people.alice, "prod", "r-unheard", &prod_request("1h"));
        s.forge.set_webhooks_paused(false); // never flushed: lost
        s.settle().await;
        s.expect_no_bot_comment(pr);
        s.note(pr, &s.people.alice, "/breakglass status");
        s.settle().await;
        let said = s.take_bot_comments(pr);
        assert!(
            said.iter().any(|c| c.starts_with("✅ **Request")),
            "no verdict: {said:#?}"
        );
        assert!(
            said.iter()
                .any(|c| c.contains("r-unheard") && c.contains("pending")),
            "the status does not name the request: {said:#?}"
        );
        assert_eq!(s.request("r-unheard").await.state.to_string(), "pending");
        s.forge.advance_clock(TimeDelta::seconds(2));
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
    }
);

// The same with the approver's `/breakglass approve` as the first command: decided, then the
// approval is never answered "no request here". On GitHub, which does not date a plain push,
// it cannot be told from one given before the head's push (the bot never heard when that came)
// and is asked for again in the forge's own words; approving again merges it. On GitLab the MR
// versions date the push, so the approval two seconds after it counts at once.
on_both_forges!(
    an_approve_on_a_request_pr_whose_opening_was_never_heard_is_never_lost,
    |s: Scenario| async move {
        s.forge.set_webhooks_paused(true);
        let pr = s.open_request(&s.people.alice, "prod", "r-unheard", &prod_request("1h"));
        s.forge.set_webhooks_paused(false); // never flushed: lost
        s.forge.advance_clock(TimeDelta::seconds(2));
        s.approve(pr, &s.people.carol);
        s.settle().await;
        let verdict = s.next_bot_comment(pr);
        assert!(verdict.starts_with("✅ **Request"), "{verdict}");
        if s.dialect == Dialect::GitHub {
            let again = s.next_bot_comment(pr);
            assert!(
                again.starts_with("⏱️ @carol, your approval came within the same second"),
                "{again}"
            );
            assert!(again.contains("an approving review,"), "{again}");
            assert!(!s.change(pr).merged);
            s.forge.advance_clock(TimeDelta::seconds(2));
            s.approve(pr, &s.people.carol);
            s.settle().await;
        }
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
    }
);

// What an insider could try with it: a PR that changes a policy beside its request, opened
// while its webhooks were lost, then `/breakglass approve`d. Decided first, it is refused as
// its opening would have been (it changes more than its request file), and never merged.
on_both_forges!(
    an_approve_on_an_unheard_pr_that_changes_a_policy_never_merges_it,
    |s: Scenario| async move {
        s.forge.set_webhooks_paused(true);
        let policy = s
            .forge
            .file_on(REPO, "main", "policies/prod.yaml")
            .unwrap()
            .replace("approvals: 1", "approvals: 0");
        s.forge.push_files(
            REPO,
            "bob-request",
            &s.people.bob,
            &[
                ("policies/prod.yaml", &policy),
                ("requests/prod/r-policy.yaml", &prod_request("1h")),
            ],
            "request",
        );
        let pr = s.open_change(&s.people.bob, "bob-request", "access");
        s.forge.set_webhooks_paused(false); // never flushed: lost
        s.forge.advance_clock(TimeDelta::seconds(2));
        s.approve(pr, &s.people.carol);
        s.settle().await;
        s.forge.advance_clock(TimeDelta::seconds(2));
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(!s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        assert_eq!(
            s.policy_status(&s.change(pr).head_sha)
                .map(|(state, _)| state),
            Some("failure".to_owned())
        );
        let said = s.take_bot_comments(pr);
        assert!(
            said.iter().any(|c| c.contains("policies/prod.yaml")),
            "the refusal does not name the policy file: {said:#?}"
        );
    }
);

// GitLab builds its approval hook late: the approval service records the approval, and a
// Sidekiq worker (`ExecuteApprovalHooksWorker`) builds the `Merge Request Hook` when it runs,
// from the merge request as it is then. So the hook names the head at that time, not the one
// approved: an approval of the 1h version whose hook is built after a push of the 2h version
// names the 2h one. It is timed by GitLab's own `approved_at` against the push, as an emoji
// is, and asked for again; never counted for the version it did not approve.
async fn gitlab(skew: i64) -> Scenario {
    let setup = Setup {
        dialect: Dialect::GitLab,
        forge_skew_secs: skew,
        ..Setup::default()
    };
    Scenario::start_with(Backend::Sqlite, setup).await.unwrap()
}

fn is_gitlab_approval(d: &breakglass_test_forge::Delivery) -> bool {
    d.event == "Merge Request Hook" && matches!(d.action.as_deref(), Some("approval" | "approved"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_approval_hook_built_after_a_push_never_counts_for_the_pushed_version() {
    for skew in [0, 90, -90] {
        let s = gitlab(skew).await;
        let pr = requested(&s, "r1").await;
        s.forge.gl_build_approval_hooks_later(true);
        s.approve_button(pr, &s.people.carol); // of the 1h version
        push_new_version(&s, "r1"); // 2h, two seconds later
        s.settle().await;
        assert_eq!(s.request("r1").await.head_sha, s.change(pr).head_sha);
        assert_eq!(s.forge.gl_run_approval_hook_worker(), 1);
        s.settle().await;
        poll(&s).await;
        expect_not_counted_but_asked_again(&s, pr, skew);
    }
}

// The same hook heard before the push's own webhook: the bot catches up with the push the hook
// shows, then times the approval against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_approval_hook_built_after_a_push_and_heard_before_it_never_counts() {
    for skew in [0, 90, -90] {
        let s = gitlab(skew).await;
        let pr = requested(&s, "r1").await;
        s.forge.gl_build_approval_hooks_later(true);
        s.forge.set_webhooks_paused(true);
        s.approve_button(pr, &s.people.carol);
        push_new_version(&s, "r1");
        assert_eq!(s.forge.gl_run_approval_hook_worker(), 1);
        deliver_first(&s, is_gitlab_approval).await;
        release_and_poll(&s).await;
        expect_not_counted_but_asked_again(&s, pr, skew);
    }
}

// An approval given after the push, its hook built late too, counts: the button still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_approval_of_the_pushed_version_counts_when_its_hook_is_built_late() {
    for skew in [0, 90, -90] {
        let s = gitlab(skew).await;
        let pr = requested(&s, "r1").await;
        push_new_version(&s, "r1");
        s.settle().await;
        s.take_bot_comments(pr);
        s.forge.gl_build_approval_hooks_later(true);
        s.forge.advance_clock(TimeDelta::seconds(2));
        s.approve_button(pr, &s.people.carol); // of the 2h version
        assert_eq!(s.forge.gl_run_approval_hook_worker(), 1);
        s.settle().await;
        assert!(
            s.change(pr).merged,
            "skew {skew}: {:#?}",
            s.bot_comments(pr)
        );
        assert_eq!(s.request("r1").await.duration_secs, 7200);
        s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
    }
}

/// carol's approval of the 1h version did not merge the 2h one, and she is asked again.
fn expect_not_counted_but_asked_again(s: &Scenario, pr: u64, skew: i64) {
    assert!(
        !s.change(pr).merged,
        "skew {skew}: the 1h approval merged the 2h version: {:#?}",
        s.bot_comments(pr)
    );
    let said = s.take_bot_comments(pr);
    assert!(
        said.iter()
            .any(|c| c.starts_with("⏱️ @carol, your approval")),
        "skew {skew}: carol is not asked again: {said:#?}"
    );
}

// A GitLab that does not say when an approval was given (its approvals API before
// `approved_at`): the button's approval cannot be timed against a push, so it is not counted
// and its approver is told to approve by emoji or command, which carry their own time; those
// still merge the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_approval_without_its_time_is_answered_and_other_ways_still_approve() {
    let s = gitlab(0).await;
    s.forge.gl_set_approvals_untimed(true);
    let pr = requested(&s, "r1").await;
    s.approve_button(pr, &s.people.carol);
    s.settle().await;
    assert!(!s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    let said = s.next_bot_comment(pr);
    assert!(
        said.starts_with("⏱️ @carol, your approval is not counted: this GitLab does not say when"),
        "{said}"
    );
    s.approve(pr, &s.people.carol);
    s.settle().await;
    assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
}

// The same GitLab, with the approval given while the bot was down: the start-up catch-up finds
// it and answers it as its webhook would have been, never as "given before the latest push".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_approval_without_its_time_found_at_start_is_answered_as_untimed() {
    let mut s = gitlab(0).await;
    s.forge.gl_set_approvals_untimed(true);
    let pr = requested(&s, "r1").await;
    s.crash().await;
    s.forge.advance_clock(TimeDelta::seconds(5));
    s.approve_button(pr, &s.people.carol);
    s.forge.settle().await;
    s.start_service().await;
    s.settle().await;
    assert!(!s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    let said = s.next_bot_comment(pr);
    assert!(
        said.starts_with("⏱️ @carol, your approval is not counted: this GitLab does not say when"),
        "{said}"
    );
    s.expect_no_bot_comment(pr);
}

// The Approve button on a version the branch then left, the pushes' webhooks lost: carol
// approves the 2h version, alice forces the branch back to the 1h one, and only the approval's
// hook arrives. GitLab's approval stays on the MR, but it was given while the head was the 2h
// version: the MR versions read before the merge say the 1h head came back after it, so it
// never counts for the 1h head (an approval that names no commit is timed, as an emoji is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_approval_of_a_version_the_branch_left_unheard_never_counts_for_the_return() {
    for skew in [0, 90, -90] {
        let s = gitlab(skew).await;
        let pr = requested(&s, "r1").await;
        let first = s.change(pr).head_sha;
        s.forge.set_webhooks_paused(true);
        push_new_version(&s, "r1");
        s.forge.advance_clock(TimeDelta::seconds(2));
        s.approve_button(pr, &s.people.carol); // of the 2h version
        s.forge.advance_clock(TimeDelta::seconds(2));
        s.forge
            .force_branch(REPO, "request-r1", &s.people.alice, &first);
        deliver_first(&s, is_gitlab_approval).await;
        s.forge.set_webhooks_paused(false); // the pushes' webhooks: lost
        s.settle().await;
        poll(&s).await;
        assert_eq!(s.change(pr).head_sha, first);
        assert!(
            !s.change(pr).merged,
            "skew {skew}: the 2h approval merged the 1h version: {:#?}",
            s.bot_comments(pr)
        );
        let said = s.take_bot_comments(pr);
        let button = "the **Approve** button (after revoking your earlier approval)";
        assert!(
            said.iter()
                .any(|c| c.starts_with("⏱️ @carol, your approval") && c.contains(button)),
            "skew {skew}: carol is not asked again in GitLab's words: {said:#?}"
        );
        assert_eq!(
            s.request("r1").await.state,
            breakglass::store::RequestState::Pending
        );
    }
}
