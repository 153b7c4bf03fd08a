//! The same stories on both forges: each scenario runs against the test forge's GitHub dialect
//! and its GitLab dialect (same git repos, each forge's own API and webhooks), on SQLite and
//! PostgreSQL. Where the forges differ (GitHub has no emoji webhook, so the bot polls; GitLab
//! numbers issues and merge requests apart), the story says so.

mod common;

use chrono::TimeDelta;
use common::*;

/// GitHub's list of a PR's reactions, as the test forge counts its calls.
const PR_REACTIONS: &str = "/repos/{owner}/{repo}/issues/{number}/reactions";

/// Lets the bot notice what only a poll finds on GitHub (emoji), and settles.
async fn poll(s: &Scenario) {
    s.advance(TimeDelta::seconds(30));
    s.settle().await;
}

on_both_forges!(
    an_emoji_approval_grants_and_the_ttl_revokes,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        assert!(
            s.next_bot_comment(pr)
                .starts_with("✅ **Request `r1` is allowed**"),
            "{:#?}",
            s.bot_comments(pr)
        );
        s.emoji(pr, &s.people.carol, "+1");
        poll(&s).await;
        let merged = s.change(pr);
        assert!(merged.merged, "{:#?}", s.bot_comments(pr));
        let merge = s.merge_commit(pr);
        assert_eq!(merge.parents.len(), 2, "a merge commit, never a squash");
        let record = s.request("r1").await;
        let expires = breakglass::clock::iso(record.expires_at.unwrap());
        for trailer in [
            "Breakglass-Request: r1".to_owned(),
            "Breakglass-Requester: alice".to_owned(),
            "Breakglass-Approved-By: carol".to_owned(),
            format!("Breakglass-Expires: {expires}"),
        ] {
            assert!(
                merge.message.contains(&trailer),
                "{trailer}: {}",
                merge.message
            );
        }
        let granted = s.next_bot_comment(pr);
        let revert = record.revert_pr_number.expect("a revert change");
        let word = match s.dialect {
            Dialect::GitHub => "a revert PR follows",
            Dialect::GitLab => "a revert MR follows",
        };
        assert!(
            granted.starts_with("🔓 **Access granted.** @alice has `prod/admin`")
                && granted.contains(word),
            "{granted}"
        );
        // The revert, opened right after that comment, names the request it ends.
        assert!(
            s.change(revert).body.contains(&s.change_ref(pr)),
            "{}",
            s.change(revert).body
        );
        assert!(
            s.forge
                .file_on(REPO, "main", "requests/prod/r1.yaml")
                .is_some()
        );
        s.advance(TimeDelta::hours(1));
        s.settle().await;
        assert_eq!(s.request("r1").await.state.to_string(), "revoked");
        assert!(s.change(revert).merged);
        s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
        assert!(
            s.forge
                .file_on(REPO, "main", "requests/prod/r1.yaml")
                .is_none()
        );
        let revoke = s.merge_commit(revert);
        assert!(
            revoke.message.contains("Breakglass-Revokes: r1")
                && revoke.message.contains("Breakglass-Revoked-Reason: ttl"),
            "{}",
            revoke.message
        );
    }
);

/// alice's prod request `id`, opened and decided; its change number.
async fn requested(s: &Scenario, id: &str) -> u64 {
    let pr = s.open_request(&s.people.alice, "prod", id, &prod_request("1h"));
    s.settle().await;
    pr
}

/// The policy for prod, asking for two approvals.
fn two_approvals(s: &Scenario) {
    s.edit_policy(&s.people.carol, "prod", |p| {
        p.replace("approvals: 1", "approvals: 2")
    });
}

// An approver who takes an emoji back and puts it on again, over and over, is answered once:
// the bot's comments are not theirs to multiply.
on_both_forges!(
    an_emoji_put_back_again_and_again_is_answered_once,
    |s: Scenario| async move {
        two_approvals(&s);
        s.settle().await;
        let pr = requested(&s, "r1").await;
        for _ in 0..3 {
            let thumbs = s.emoji(pr, &s.people.carol, "+1");
            poll(&s).await;
            s.remove_emoji(pr, thumbs);
            poll(&s).await;
        }
        assert_eq!(s.events("r1", "approval_withdrawn").await.len(), 3);
        s.expect_bot_comments(pr, &["✅", "👍 Approval by @carol recorded (1 of 2)."]);
        s.expect_no_bot_comment(pr);
        // dan's is the first of his: answered.
        s.emoji(pr, &s.people.dan, "+1");
        poll(&s).await;
        s.expect_bot_comments(pr, &["👍 Approval by @dan recorded (1 of 2)."]);
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_gitlab_an_emoji_approval_arrives_by_webhook_without_any_poll() {
    let s = Scenario::on_gitlab().await;
    let pr = requested(&s, "r1").await;
    let award = s.emoji(pr, &s.people.carol, "+1");
    // The bot's clock does not move: no poll is due, only the Emoji Hook can tell it.
    s.settle().await;
    assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    s.expect_bot_comments(pr, &["✅", "🔓 **Access granted.**"]);
    let approvals = s.events("r1", "approval").await;
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0].data["signal"], format!("reaction:{award}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_gitlab_a_merge_refused_while_the_pipeline_settles_is_tried_again_and_granted() {
    let s = Scenario::on_gitlab().await;
    let pr = requested(&s, "r1").await;
    // "Pipelines must succeed": GitLab links the bot's `breakglass/policy` status a moment
    // late and refuses the first two merges with 405 meanwhile.
    s.forge.gl_link_pipelines_late(2);
    s.approve(pr, &s.people.carol);
    s.settle().await;
    assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    s.expect_bot_comments(pr, &["✅", "🔓 **Access granted.**"]);
    assert_eq!(s.request("r1").await.state.to_string(), "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_gitlab_a_merge_still_refused_after_the_settling_retries_says_why_and_grants_nothing() {
    let s = Scenario::on_gitlab().await;
    let pr = requested(&s, "r1").await;
    s.forge.gl_link_pipelines_late(10);
    s.approve(pr, &s.people.carol);
    s.settle().await;
    assert!(!s.change(pr).merged);
    s.expect_bot_comments(pr, &["✅"]);
    let said = s.next_bot_comment(pr);
    assert!(
        said.starts_with("⚠️ Not merged")
            && said.contains("HTTP 405: GitLab says the merge request is `ci_still_running`"),
        "{said}"
    );
    assert_ne!(s.request("r1").await.state.to_string(), "active");
}

on_both_forges!(
    a_removed_emoji_withdraws_its_approval,
    |s: Scenario| async move {
        two_approvals(&s);
        s.settle().await;
        let pr = requested(&s, "r1").await;
        let first = s.emoji(pr, &s.people.carol, "+1");
        poll(&s).await;
        assert_eq!(s.events("r1", "approval").await.len(), 1);
        assert!(!s.change(pr).merged, "one of two");
        s.expect_bot_comments(pr, &["✅", "👍 Approval by @carol recorded (1 of 2)."]);
        s.remove_emoji(pr, first);
        poll(&s).await;
        assert_eq!(s.events("r1", "approval_withdrawn").await.len(), 1);
        // dan's approval is one of two again: carol's no longer counts.
        s.emoji(pr, &s.people.dan, "+1");
        poll(&s).await;
        assert!(!s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.expect_bot_comments(pr, &["👍 Approval by @dan recorded (1 of 2)."]);
        s.emoji(pr, &s.people.carol, "+1");
        poll(&s).await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
        let merge = s.merge_commit(pr);
        assert!(
            merge.message.contains("Breakglass-Approved-By: carol, dan")
                || merge.message.contains("Breakglass-Approved-By: dan, carol"),
            "{}",
            merge.message
        );
    }
);

on_both_forges!(
    the_forges_own_approve_button_counts_and_its_withdrawal_too,
    |s: Scenario| async move {
        two_approvals(&s);
        s.settle().await;
        let pr = requested(&s, "r1").await;
        s.approve_button(pr, &s.people.carol);
        s.settle().await;
        assert!(!s.change(pr).merged);
        s.unapprove_button(pr, &s.people.carol);
        s.settle().await;
        assert_eq!(s.events("r1", "approval_withdrawn").await.len(), 1);
        s.approve_button(pr, &s.people.dan);
        s.settle().await;
        assert!(
            !s.change(pr).merged,
            "carol's withdrawn approval does not count"
        );
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.expect_bot_comments(
            pr,
            &[
                "✅ **Request `r1` is allowed**",
                "👍 Approval by @carol recorded (1 of 2).",
                "👍 Approval by @dan recorded (1 of 2).",
                "🔓 **Access granted.**",
            ],
        );
    }
);

on_both_forges!(
    the_requester_never_approves_her_own_request,
    |s: Scenario| async move {
        let pr = requested(&s, "r1").await;
        // (Both forges refuse their own Approve button to the author.)
        s.emoji(pr, &s.people.alice, "+1");
        s.approve(pr, &s.people.alice);
        poll(&s).await;
        assert!(!s.change(pr).merged);
        s.expect_bot_comments(
            pr,
            &[
                "✅ **Request `r1` is allowed**",
                "🙅 @alice, you requested this access: your own approval does not count.",
            ],
        );
        assert!(s.events("r1", "approval").await.is_empty());
    }
);

on_both_forges!(
    a_request_by_comment_on_an_issue_opens_a_change_and_answers_on_the_issue,
    |s: Scenario| async move {
        let issue = s.alice_asks_by_comment();
        s.settle().await;
        let said = s.next_bot_issue_comment(issue);
        let record = s.store.list_requests(None).await.unwrap().pop().unwrap();
        let link = match s.dialect {
            Dialect::GitHub => format!("#{}", record.pr_number),
            Dialect::GitLab => format!("!{}", record.pr_number),
        };
        assert!(said.contains(&link), "{said}");
        let pr = record.pr_number;
        assert!(s.change(pr).head_ref.starts_with("breakglass/request/"));
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.expect_bot_comments(pr, &["✅", "🔓 **Access granted.**"]);
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_gitlab_an_issue_with_the_number_of_a_request_mr_is_not_that_request() {
    let s = Scenario::on_gitlab().await;
    let pr = requested(&s, "r1").await;
    s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
    let issue = s.open_issue(&s.people.mallory, "unrelated");
    assert_eq!(
        issue, pr,
        "GitLab numbers issues and merge requests apart: #1 and !1"
    );
    // carol's approve on issue #1 is not an approval of merge request !1.
    s.forge.advance_clock(TimeDelta::seconds(1));
    s.note_on_issue(issue, &s.people.carol, "/breakglass approve");
    s.settle().await;
    assert!(!s.change(pr).merged);
    assert!(s.events("r1", "approval").await.is_empty());
    s.expect_bot_issue_comments(issue, &[&format!("`/breakglass approve` works on a breakglass request {pr}; this is not one (or it is not in a state where it applies).", pr = s.pr())]);
    s.expect_no_bot_comment(pr); // nothing said on !1
}

on_both_forges!(
    a_request_that_also_changes_a_policy_is_never_merged,
    |s: Scenario| async move {
        s.forge.push_files(
            REPO,
            "request-r1",
            &s.people.alice,
            &[
                ("requests/prod/r1.yaml", &prod_request("1h")),
                ("policies/prod.yaml", "environment: prod\napprovals: 0\n"),
            ],
            "request r1 (and a small policy fix)",
        );
        let pr = s.open_change(&s.people.alice, "request-r1", "r1");
        s.settle().await;
        s.approve(pr, &s.people.carol);
        s.emoji(pr, &s.people.carol, "+1");
        poll(&s).await;
        assert!(!s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.expect_bot_comments(
            pr,
            &[
                &format!("⛔ **breakglass will not merge this {pr}**: it changes files beyond its request file: `policies/prod.yaml`.", pr = s.pr()),
                &format!("ℹ️ `/breakglass approve` does not apply: request `r1` is denied as its {pr} changes files beyond its request, so no approval merges it and nothing is granted. Push a fix to this {pr} (its request file alone) and it is decided again.", pr = s.pr()),
            ],
        );
    }
);

on_both_forges!(
    a_push_to_the_bots_branch_is_put_back_and_never_merged,
    |s: Scenario| async move {
        let issue = s.open_issue(&s.people.alice, "db down");
        s.note_on_issue(
            issue,
            &s.people.alice,
            "/breakglass prod 1h admin -- incident: INC-77 checkout DB failover",
        );
        s.settle().await;
        let record = s.store.list_requests(None).await.unwrap().pop().unwrap();
        let pr = record.pr_number;
        let branch = s.change(pr).head_ref;
        let bot_files = s.forge.files_on(REPO, &branch);
        s.forge.push_files(
            REPO,
            &branch,
            &s.people.mallory,
            &[("policies/prod.yaml", "environment: prod\napprovals: 0\n")],
            "sneak a policy in",
        );
        s.settle().await;
        // Put back: the same commit on GitHub; on GitLab, which cannot move a branch back without
        // closing its merge request, a new commit of the bot's with the same files.
        assert_eq!(
            s.forge.files_on(REPO, &branch),
            bot_files,
            "the branch is put back"
        );
        assert_eq!(
            s.forge.file_on(REPO, &branch, "policies/prod.yaml"),
            s.forge.file_on(REPO, "main", "policies/prod.yaml")
        );
        assert_eq!(s.change(pr).state, "open");
        assert_eq!(
            s.request(record.id.as_str()).await.head_sha,
            s.change(pr).head_sha,
            "the request follows the restored head"
        );
        assert_eq!(s.events(record.id.as_str(), "tampering").await.len(), 1);
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(s.change(pr).merged);
        s.expect_bot_issue_comments(issue, &["📝 @alice, your request is "]);
        s.expect_bot_comments(
            pr,
            &[
                "✅ **Request `20261126-0214-alice-prod` is allowed**",
                "🚨 **Tampering**: @mallory pushed",
                "🔓 **Access granted.**",
            ],
        );
        let shipped =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/prod.yaml"))
                .unwrap();
        assert_eq!(
            s.forge
                .file_on(REPO, "main", "policies/prod.yaml")
                .as_deref(),
            Some(shipped.as_str()),
            "main's policy is untouched"
        );
    }
);

on_both_forges!(
    a_crash_between_merge_and_grant_still_grants_and_revokes_on_time,
    |mut s: Scenario| async move {
        let pr = requested(&s, "r1").await;
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(s.change(pr).merged);
        s.crash().await;
        s.advance(TimeDelta::hours(1));
        s.start_service().await;
        s.settle().await;
        s.expect_revoked_and_removed("r1").await;
        assert_eq!(s.events("r1", "revoke").await.len(), 1, "revoked once");
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

on_both_forges_skewed!(
    an_emoji_a_second_after_the_push_counts_whatever_the_bots_clock_says,
    |s: Scenario| async move {
        let pr = requested(&s, "r1").await;
        s.emoji(pr, &s.people.carol, "+1");
        poll(&s).await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.expect_bot_comments(pr, &["✅", "🔓 **Access granted.**"]);
    }
);

on_both_forges_skewed!(
    an_emoji_in_the_same_second_as_the_push_is_asked_again_never_dropped,
    |s: Scenario| async move {
        let now = s.forge.now();
        s.forge.freeze_clock(now);
        let pr = requested(&s, "r1").await;
        s.emoji_now(pr, &s.people.carol, "+1");
        poll(&s).await;
        assert!(!s.change(pr).merged);
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        assert!(
            s.next_bot_comment(pr)
                .starts_with("⏱️ @carol, your approval came within the same second"),
            "{:#?}",
            s.bot_comments(pr)
        );
        s.by(&s.people.carol).approve(pr);
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
    }
);

on_both_forges_skewed!(
    an_emoji_given_before_a_push_does_not_approve_the_new_head,
    |s: Scenario| async move {
        let pr = requested(&s, "r1").await;
        // carol's 👍 and alice's push, on the forge's clock in that order; the bot hears of
        // the emoji only after the push (GitHub: at the next poll).
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
        let said = common::late::without_answers_to_a_late_push(s.take_bot_comments(pr));
        let expected = [
            "✅ **Request `r1` is allowed**",
            "✅ **Request `r1` is allowed**",
            "🔓 **Access granted.**",
        ];
        assert!(
            said.len() == expected.len()
                && said.iter().zip(expected).all(|(c, p)| c.starts_with(p)),
            "{said:#?}"
        );
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_gitlab_approvers_may_be_a_subgroup_whose_direct_members_alone_count() {
    let s = Scenario::on_gitlab().await;
    // Only the night shift, a subgroup of the SRE leads, approves prod now.
    s.edit_policy(&s.people.carol, "prod", |p| {
        p.replace(
            r#"approvers: ["@acme/sre-leads", carol]"#,
            r#"approvers: ["@acme/sre-leads/night"]"#,
        )
    });
    s.forge
        .add_team_member("acme/sre-leads/night", &s.people.erin);
    s.settle().await;
    let pr = requested(&s, "r1").await;
    // mallory is in no group: her 👍 does not count.
    s.emoji(pr, &s.people.mallory, "+1");
    s.settle().await;
    assert!(!s.change(pr).merged);
    // erin is in the subgroup itself.
    s.emoji(pr, &s.people.erin, "+1");
    s.settle().await;
    assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    assert!(
        s.merge_commit(pr)
            .message
            .contains("Breakglass-Approved-By: erin")
    );
    // dan, a member of the parent group @acme/sre-leads, inherits a membership of its
    // subgroups on GitLab; it does not make him a night-shift approver (with inherited members,
    // every member of `acme` would be one).
    let second = s.open_request(&s.people.alice, "prod", "r2", &prod_request("1h"));
    s.settle().await;
    s.emoji(second, &s.people.dan, "+1");
    s.settle().await;
    assert!(!s.change(second).merged, "{:#?}", s.bot_comments(second));
    s.emoji(second, &s.people.erin, "+1");
    s.settle().await;
    assert!(s.change(second).merged, "{:#?}", s.bot_comments(second));
    for request in [pr, second] {
        s.expect_bot_comments(request, &["✅", "🔓 **Access granted.**"]);
    }
}

/// GitLab ends a membership with an expiration date ON that day, by GitLab's own date (the
/// members answer's `Date` header: the forge's clock, which in the story is days behind the
/// machine's): dan's membership of @acme/sre-leads expiring today does not make him an
/// approver any more; one expiring tomorrow does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_membership_counts_until_its_expiry_day_by_gitlabs_date() {
    let s = Scenario::on_gitlab().await;
    let dan = &s.people.dan;
    let today = s.forge.now().date_naive();
    s.forge
        .set_membership_expiry("acme/sre-leads", dan, Some(today));
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.approve(pr, dan);
    s.settle().await;
    assert!(!s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    s.forge
        .set_membership_expiry("acme/sre-leads", dan, Some(today + chrono::Days::new(1)));
    s.advance(TimeDelta::minutes(2)); // past the bot's minute of membership cache
    let second = s.open_request(&s.people.alice, "prod", "r2", &prod_request("1h"));
    s.settle().await;
    s.approve(second, dan);
    s.settle().await;
    assert!(s.change(second).merged, "{:#?}", s.bot_comments(second));
    s.lenient();
}

/// POSTs `body` to the GitLab webhook route with the given headers; the status code.
async fn post_gitlab(url: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    let mut request = reqwest::Client::new().post(url).body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .send()
        .await
        .expect("the service answers")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_deliveries_are_checked_stored_once_and_answered_like_githubs() {
    let s = Scenario::on_gitlab().await;
    let url = s.webhook_url();
    let note = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/gitlab/note_merge_request.json"
    ));
    let Ok(note) = note else {
        eprintln!("SKIPPED gitlab intake: ../shared/fixtures/gitlab is absent");
        return;
    };
    // The fixture's project is another one: point it at ours, as GitLab would send it.
    let mut event: serde_json::Value = serde_json::from_slice(&note).unwrap();
    event["project"]["path_with_namespace"] = REPO.into();
    let ours = serde_json::to_vec(&event).unwrap();
    let note_hook = ("X-Gitlab-Event", "Note Hook");
    let good = ("X-Gitlab-Token", SECRET);
    let key = ("Idempotency-Key", "5f0e1a2b-0000-4000-8000-000000000001");
    assert_eq!(
        post_gitlab(&url, &[note_hook, key], &ours).await,
        401,
        "no token"
    );
    assert_eq!(
        post_gitlab(&url, &[note_hook, ("X-Gitlab-Token", "wrong"), key], &ours).await,
        401
    );
    // The token is checked before the body is read: a caller without it cannot make the
    // service read megabytes.
    let oversized = vec![b' '; 1024 * 1024 + 1]; // one byte over the limit
    assert_eq!(
        post_gitlab(
            &url,
            &[note_hook, ("X-Gitlab-Token", "wrong"), key],
            &oversized
        )
        .await,
        401,
        "a wrong token with an oversized body"
    );
    assert_eq!(
        post_gitlab(&url, &[note_hook, good, key], &oversized).await,
        413
    );
    assert_eq!(
        post_gitlab(&url, &[good, key], &ours).await,
        400,
        "no event header"
    );
    assert_eq!(
        post_gitlab(&url, &[note_hook, good, key], b"{not json").await,
        400
    );
    assert_eq!(
        post_gitlab(
            &url,
            &[("X-Gitlab-Event", "Wiki Page Hook"), good, key],
            b"{}"
        )
        .await,
        200,
        "an event breakglass does not act on"
    );
    assert_eq!(
        post_gitlab(&url, &[note_hook, good, key], &note).await,
        200,
        "another project"
    );
    assert_eq!(
        post_gitlab(&url, &[note_hook, good, key], &ours).await,
        202,
        "stored"
    );
    assert_eq!(
        post_gitlab(&url, &[note_hook, good, key], &ours).await,
        200,
        "a redelivery"
    );
    // Without an Idempotency-Key (before GitLab 17.4) the event's own ids make the key.
    assert_eq!(post_gitlab(&url, &[note_hook, good], &ours).await, 202);
    assert_eq!(post_gitlab(&url, &[note_hook, good], &ours).await, 200);
    s.settle().await;
    let stored: Vec<(String,)> = sqlx::query_as("SELECT id FROM deliveries")
        .fetch_all(s.store.pool())
        .await
        .unwrap();
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(
        stored.iter().all(|(id,)| id.starts_with("gitlab:")),
        "{stored:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_service_serves_a_github_repo_and_a_gitlab_project_at_once() {
    const GL_REPO: &str = "acme/gl-requests";
    let Some(mut s) = Scenario::start(Backend::Sqlite).await else {
        return;
    };
    let prod = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/prod.yaml"))
        .unwrap();
    s.forge.create_repo(
        GL_REPO,
        &[("README.md", "# requests\n"), ("policies/prod.yaml", &prod)],
    );
    // The same service, now with both sections: each forge's webhooks on its own route.
    let github = s.config.github.clone().unwrap();
    s.config.gitlab = Some(breakglass::config::GitlabConfig {
        api_url: s.forge.gitlab_api_url(),
        project: GL_REPO.into(),
        token_file: github.token_file.clone(),
        webhook_token_file: github.webhook_secret_file.clone(),
        ..breakglass::config::GitlabConfig::default()
    });
    s.crash().await;
    s.start_service().await;
    let addr = s.service.as_ref().unwrap().addr;
    s.forge
        .add_gitlab_webhook(&format!("http://{addr}/webhooks/gitlab"), SECRET);

    let pr = s.open_request(&s.people.alice, "prod", "r-gh", &prod_request("1h"));
    s.forge.push_files(
        GL_REPO,
        "request-r-gl",
        &s.people.alice,
        &[("requests/prod/r-gl.yaml", &prod_request("1h"))],
        "request r-gl",
    );
    let mr = s
        .forge
        .gl_open_mr(GL_REPO, &s.people.alice, "request-r-gl", "r-gl", "");
    s.settle().await;
    s.approve(pr, &s.people.carol);
    s.forge.advance_clock(TimeDelta::seconds(1));
    s.forge
        .gl_award_mr(GL_REPO, mr, &s.people.carol, "thumbsup");
    s.settle().await;
    assert!(s.forge.pr(REPO, pr).merged, "{:#?}", s.bot_comments(pr));
    assert!(s.forge.gl_mr(GL_REPO, mr).merged);
    let (gh, gl) = (s.request("r-gh").await, s.request("r-gl").await);
    assert_eq!(
        (gh.forge.as_str(), gh.repository.as_str()),
        ("github", REPO)
    );
    assert_eq!(
        (gl.forge.as_str(), gl.repository.as_str()),
        ("gitlab", GL_REPO)
    );
    s.advance(TimeDelta::hours(1));
    s.settle().await;
    assert_eq!(s.request("r-gh").await.state.to_string(), "revoked");
    assert_eq!(s.request("r-gl").await.state.to_string(), "revoked");
    assert!(
        s.forge
            .file_on(REPO, "main", "requests/prod/r-gh.yaml")
            .is_none()
    );
    assert!(
        s.forge
            .file_on(GL_REPO, "main", "requests/prod/r-gl.yaml")
            .is_none()
    );
    s.expect_bot_comments(
        pr,
        &["✅", "🔓 **Access granted.**", "🔒 **Access revoked**"],
    );
    // Each request's notes went to its own forge only.
    assert!(
        s.forge
            .gl_notes(GL_REPO, breakglass_test_forge::Noteable::MergeRequest(mr))
            .iter()
            .any(|n| n.body.starts_with("🔓 **Access granted.**"))
    );
}

/// A PR with more reactions than a page is polled at its last page, with that page's ETag
/// (GitHub lists oldest first): an unchanged list costs no rate-limited call, yet a reaction
/// taken back is read at the next poll and a 👍 added is seen and approves. With 200 the last
/// page of 100 is full (a new reaction would start page three): it is polled by pages of 99.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pr_with_pages_of_reactions_is_polled_at_its_last_page_for_free() {
    let Some(s) = Scenario::start(Backend::Sqlite).await else {
        return;
    };
    for (id, fans) in [("r1", 150), ("r2", 200)] {
        let pr = s.open_request(&s.people.alice, "prod", id, &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅"]);
        let fan = |n: usize| s.forge.user(&format!("fan-{n}"));
        let hearts: Vec<u64> = (0..fans)
            .map(|n| s.forge.react(REPO, pr, &fan(n), "heart"))
            .collect();
        poll(&s).await;
        s.forge.reset_calls();
        for _ in 0..3 {
            poll(&s).await;
        }
        let calls = s.forge.calls();
        assert!(
            calls.count("GET", PR_REACTIONS) >= 3,
            "{id}: {:?}",
            calls.by_route
        );
        assert_eq!(
            calls.rate_limited("GET", PR_REACTIONS),
            0,
            "{id}: unchanged"
        );
        // One taken back and another given: the list is as long as before, and read again.
        s.forge.unreact(REPO, pr, hearts[3]);
        s.forge.react(REPO, pr, &fan(fans), "heart");
        s.forge.reset_calls();
        poll(&s).await;
        assert!(
            s.forge.calls().rate_limited("GET", PR_REACTIONS) >= 2,
            "{id}: the change is seen and the list read again"
        );
        poll(&s).await;
        s.emoji(pr, &s.people.carol, "+1");
        poll(&s).await;
        assert!(s.change(pr).merged, "{id}: {:#?}", s.bot_comments(pr));
        s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
    }
}

/// A reaction taken back on page one while the poll reads page two shifts carol's 👍 from page
/// two to page one between the reads: the list read misses it, under page two's up-to-date
/// ETag. Page one, asked again with its ETag, says the list moved, so the next poll reads it
/// whole and the approval is seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reaction_taken_back_while_the_pages_are_read_misses_no_approval() {
    let Some(s) = Scenario::start(Backend::Sqlite).await else {
        return;
    };
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.expect_bot_comments(pr, &["✅"]);
    let fan = |n: usize| s.forge.user(&format!("fan-{n}"));
    let hearts: Vec<u64> = (0..100)
        .map(|n| s.forge.react(REPO, pr, &fan(n), "heart"))
        .collect();
    s.emoji(pr, &s.people.carol, "+1"); // the 101st: first on page two
    for n in 100..150 {
        s.forge.react(REPO, pr, &fan(n), "heart");
    }
    // Right before the poll's second call to the list (its page two), a heart on page one goes.
    let path = format!("/repos/{REPO}/issues/{}/reactions", s.internal(pr));
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let second_read =
        breakglass_test_forge::RouteMatcher::Predicate(std::sync::Arc::new(move |method, at| {
            *method == http::Method::GET
                && at == path
                && calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1
        }));
    s.forge
        .unreact_before(second_read, REPO, s.internal(pr), hearts[5]);
    poll(&s).await;
    assert_eq!(s.forge.reactions(REPO, pr).len(), 150, "the heart went");
    assert!(!s.change(pr).merged, "carol's 👍 was missed by this read");
    poll(&s).await;
    assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
}

/// How long until request `id`'s next reaction poll, by the bot's clock.
async fn next_poll_in(s: &Scenario, id: &str) -> TimeDelta {
    let id = breakglass::names::RequestId::try_from(id.to_owned()).unwrap();
    let jobs = s.store.jobs_for_request(&id).await.unwrap();
    let poll = jobs
        .iter()
        .find(|job| job.kind == breakglass::store::JobKind::Poll);
    poll.expect("a poll job").run_at - breakglass::clock::Clock::now(&s.clock)
}

/// The polls of every polled PR together stay within `github.reaction_poll_budget` reads a
/// minute (each poll reads two lists: the PR's emoji and those on the bot's latest comment;
/// GitHub counts a free `304` towards its secondary limit too). With a budget of 8, two PRs
/// (4 reads a round) are polled every 30 s, the interval; with six (12 reads), every 90 s on
/// average, each turn drawn between 45 s and 135 s so that polls due together spread out; and
/// an emoji is noticed at its PR's next poll, not 30 s on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_polls_of_many_prs_stay_within_the_reaction_poll_budget() {
    let Some(mut s) = Scenario::start(Backend::Sqlite).await else {
        return;
    };
    s.stop().await;
    let budget = std::num::NonZeroU32::new(8).unwrap();
    s.config.github.as_mut().unwrap().reaction_poll_budget = budget;
    s.start_service().await;
    let ids = ["r1", "r2", "r3", "r4", "r5", "r6"];
    let mut prs = Vec::new();
    for id in &ids[..2] {
        prs.push(s.open_request(&s.people.alice, "prod", id, &prod_request("1h")));
    }
    s.settle().await;
    poll(&s).await;
    for id in &ids[..2] {
        assert_eq!(next_poll_in(&s, id).await, TimeDelta::seconds(30), "{id}");
    }

    for id in &ids[2..] {
        prs.push(s.open_request(&s.people.alice, "prod", id, &prod_request("1h")));
    }
    s.settle().await;
    // r1 and r2 are polled again with all six polled (the others' first polls, as each
    // opened, saw fewer).
    poll(&s).await;
    let (soonest, latest) = (TimeDelta::seconds(45), TimeDelta::seconds(135));
    let mut next = Vec::new();
    for id in &ids[..2] {
        let at = next_poll_in(&s, id).await;
        assert!(soonest <= at && at <= latest, "{id}: {at}");
        next.push(at);
    }

    s.emoji(prs[0], &s.people.carol, "+1");
    poll(&s).await;
    assert!(
        !s.change(prs[0]).merged,
        "r1's next poll is 45 s or more away"
    );
    s.advance(next[0] - TimeDelta::seconds(30));
    s.settle().await;
    assert!(s.change(prs[0]).merged, "{:#?}", s.bot_comments(prs[0]));
    for pr in prs {
        s.take_bot_comments(pr);
    }
}

/// Fast-path grants awaiting their review are polled too, and unreviewed ones pile up; they
/// must not slow the notice of an approval. With a budget of 12 reads a minute, two pending
/// requests (8 reads a minute at 30 s) keep the interval, and six grants awaiting review share
/// the other 4: every 180 s on average, each turn drawn between 90 s and 270 s. Shared
/// equally, all eight would wait 80 s on average.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_requests_are_polled_before_grants_awaiting_their_review() {
    let Some(mut s) = Scenario::start(Backend::Sqlite).await else {
        return;
    };
    s.stop().await;
    s.config.github.as_mut().unwrap().reaction_poll_budget = std::num::NonZeroU32::new(12).unwrap();
    s.start_service().await;
    let bob = &s.people.bob;
    let reviews = ["f1", "f2", "f3", "f4", "f5", "f6"];
    let mut fast = Vec::new();
    for id in reviews {
        let yaml = "environment: prod\nrole: admin\nduration: 5m\nreason: incident INC-9 payments down\nticket: INC-9\n";
        let (branch, path) = (format!("sev1-{id}"), format!("requests/prod/{id}.yaml"));
        s.forge
            .push_files(REPO, &branch, bob, &[(path.as_str(), yaml)], "request");
        fast.push(s.open_labelled_change(bob, &branch, "sev1 access", "sev1"));
        s.settle().await;
    }
    for pr in &fast {
        assert!(s.change(*pr).merged, "{:#?}", s.bot_comments(*pr));
    }
    let pending = ["r1", "r2"];
    let mut prs = fast.clone();
    for id in pending {
        prs.push(s.open_request(&s.people.alice, "prod", id, &prod_request("1h")));
    }
    s.settle().await;
    // Each grant's next poll was at most 90 s away (six polled, 12 reads a minute for them):
    // one step past it polls every PR once with all eight polled.
    s.advance(TimeDelta::seconds(100));
    s.settle().await;
    for id in pending {
        assert_eq!(next_poll_in(&s, id).await, TimeDelta::seconds(30), "{id}");
    }
    for id in reviews {
        let at = next_poll_in(&s, id).await;
        let (soonest, latest) = (TimeDelta::seconds(90), TimeDelta::seconds(270));
        assert!(soonest <= at && at <= latest, "{id}: {at}");
    }
    for pr in prs {
        s.take_bot_comments(pr);
    }
}

/// GitHub's ETag is a hash of the answer's body (for the token that asked), so the first poll
/// of a new PR offers the ETag of an empty reaction list seen on another PR: free when the new
/// PR has no emoji yet, and an emoji already there is still read in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_prs_first_reaction_poll_is_free_and_still_sees_an_emoji_already_there() {
    let Some(s) = Scenario::start(Backend::Sqlite).await else {
        return;
    };
    let first = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    poll(&s).await;
    assert!(
        s.forge.calls().rate_limited("GET", PR_REACTIONS) >= 1,
        "the first empty list is read in full"
    );
    s.forge.reset_calls();
    let second = s.open_request(&s.people.alice, "prod", "r2", &prod_request("1h"));
    s.settle().await;
    poll(&s).await;
    let calls = s.forge.calls();
    assert!(
        calls.count("GET", PR_REACTIONS) >= 3,
        "r1 polled, r2 polled twice: {:?}",
        calls.by_route
    );
    assert_eq!(
        calls.rate_limited("GET", PR_REACTIONS),
        0,
        "r2's first poll is answered 304 with the empty list's ETag"
    );
    // An emoji on r2 after its free first poll, and one on a third PR before its first poll:
    // both are read in full and approve.
    s.emoji(second, &s.people.carol, "+1");
    let third = s.open_request(&s.people.alice, "prod", "r3", &prod_request("1h"));
    s.settle().await;
    s.emoji(third, &s.people.carol, "+1");
    poll(&s).await;
    assert!(s.change(second).merged, "{:#?}", s.bot_comments(second));
    assert!(s.change(third).merged, "{:#?}", s.bot_comments(third));
    assert!(!s.change(first).merged);
    for pr in [first, second, third] {
        s.take_bot_comments(pr);
    }
}

// GitLab sends emoji by webhook: an approver's 👍 (in any skin tone) on a request the policy
// denies is answered once, as the command and the Approve button are; the award put back
// again is not answered again. (GitHub polls only pending requests' reactions.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_gitlab_an_approvers_emoji_on_a_denied_request_is_answered_once() {
    let s = Scenario::on_gitlab().await;
    let pr = s.open_request(&s.people.alice, "prod", "r-den", &prod_request("5h"));
    s.settle().await;
    assert_eq!(s.request("r-den").await.state.to_string(), "denied");
    s.take_bot_comments(pr);
    let award = s.emoji(pr, &s.people.carol, "thumbsup_tone3");
    s.settle().await;
    s.expect_bot_comments(
        pr,
        &["ℹ️ `/breakglass approve` does not apply: request `r-den` is denied by the `prod` policy (`max_duration`)"],
    );
    s.remove_emoji(pr, award);
    s.emoji(pr, &s.people.carol, "thumbsup");
    s.settle().await;
    assert!(!s.change(pr).merged);
    assert_eq!(s.request("r-den").await.state.to_string(), "denied");
}

/// GitHub lists reactions oldest first, 100 a page. Once a PR has 100 of them, a new 👍 lands
/// on the second page and leaves the first page (and its ETag) as it was: the poll must not
/// take the first page's `304` for "nothing changed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_behind_a_full_first_page_of_reactions_is_still_seen() {
    let Some(s) = Scenario::start(Backend::Sqlite).await else {
        return;
    };
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
    for n in 0..100 {
        let fan = s.forge.user(&format!("fan-{n}"));
        s.forge.react(REPO, pr, &fan, "heart");
    }
    poll(&s).await;
    poll(&s).await; // the poll's ETag is of the list as it is now
    assert!(!s.change(pr).merged);
    s.emoji(pr, &s.people.carol, "+1");
    poll(&s).await;
    assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
}
