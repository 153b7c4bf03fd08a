//! What the bot must refuse, each its own story: self-approval, approvals that do not count,
//! commands that are not commands, PRs that change too much, requests the policy denies, and
//! webhooks that are not from the forge.

mod common;

use breakglass::store::RequestState;
use chrono::TimeDelta;
use common::late::poll;
use common::*;

on_both_forges!(
    requester_cannot_approve_own_request,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        s.by(&s.people.alice).approve(pr);
        s.by(&s.people.alice).emoji_now(pr, "+1");
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        assert!(!s.change(pr).merged);
        assert_eq!(
            s.next_bot_comment(pr),
            "🙅 @alice, you requested this access: your own approval does not count. Ask an approver."
        );
    }
);

on_both_forges!(a_non_approver_does_not_count, |s: Scenario| async move {
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.emoji_now(pr, &s.people.mallory, "+1");
    s.emoji_now(pr, &s.people.erin, "+1"); // a requester-team member, not an approver
    s.advance(TimeDelta::seconds(31));
    s.settle().await;
    assert!(!s.change(pr).merged);
    s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
    s.by(&s.people.mallory).approve(pr);
    s.settle().await;
    assert_eq!(
        s.next_bot_comment(pr),
        "🙅 @mallory is not an approver for `prod`, so this does not count. Approvers: `@acme/sre-leads`, `@carol`."
    );
    assert!(!s.change(pr).merged);
    // Ten approve lines in one comment are one refusal, not ten replies pinging the approvers.
    s.note(pr, &s.people.mallory, &"/breakglass approve\n".repeat(10));
    s.settle().await;
    assert_eq!(
        s.take_bot_comments(pr).len(),
        1,
        "one reply to one comment's repeated command"
    );
    assert!(!s.change(pr).merged);
});

// A bot account in the approvers' team (a GitHub App, a GitLab group access token's user) is a
// token someone holds, not a person who looked: its approving review or Approve button counts
// for nothing, as its emoji and comments never did.
on_both_forges!(
    a_bot_in_the_approvers_team_does_not_approve,
    |s: Scenario| async move {
        let token = match s.dialect {
            Dialect::GitHub => s.forge.bot_user("deployer[bot]"),
            Dialect::GitLab => s.forge.user("group_12_bot_4f2a"),
        };
        s.forge.add_team_member("acme/sre-leads", &token);
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        s.approve_button(pr, &token);
        s.settle().await;
        assert!(!s.change(pr).merged);
        assert!(s.events("r1", "approval").await.is_empty());
        assert!(
            s.next_bot_comment(pr).contains("is not an approver"),
            "the bot says why it does not count"
        );
    }
);

// An approver taken off the policy after approving no longer counts when the merge is decided:
// the approvers are the default branch's policy's, now.
on_both_forges!(
    an_approver_taken_off_the_policy_no_longer_counts,
    |s: Scenario| async move {
        s.prod_needs_two_approvals().await;
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.take_bot_comments(pr);
        s.emoji(pr, &s.people.carol, "+1");
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        s.take_bot_comments(pr);
        s.edit_policy(&s.people.erin, "prod", |p| {
            p.replace(
                "approvers: [\"@acme/sre-leads\", carol]",
                "approvers: [dan, erin]",
            )
        });
        s.settle().await;
        s.emoji(pr, &s.people.dan, "+1");
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        let approvals = s.events("r1", "approval").await;
        assert_eq!(approvals.len(), 2, "carol's, then dan's: {approvals:#?}");
        assert!(!s.change(pr).merged, "carol no longer approves prod");
        s.take_bot_comments(pr);
        // A second approver named by the policy now completes it.
        s.emoji(pr, &s.people.erin, "+1");
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        assert!(s.change(pr).merged);
        s.take_bot_comments(pr);
    }
);

on_both_forges!(
    an_approval_before_a_new_push_does_not_count,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.advance(TimeDelta::seconds(2));
        s.emoji_now(pr, &s.people.carol, "+1");
        s.advance(TimeDelta::seconds(2));
        // alice changes the request after carol's 👍 and before the bot saw it.
        s.forge.push_files(
            REPO,
            "request-r1",
            &s.people.alice,
            &[("requests/prod/r1.yaml", &prod_request("4h"))],
            "longer",
        );
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        assert!(
            !s.change(pr).merged,
            "carol approved the 1h version, not the 4h one: {:#?}",
            s.bot_comments(pr)
        );
        s.by(&s.people.carol).approve(pr);
        s.settle().await;
        let merged = s.change(pr);
        assert!(merged.merged, "a fresh approval of the new head counts");
        let merge = s.merge_commit(merged.number);
        assert!(merge.message.contains("for 4h"), "{}", merge.message);
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
        assert!(
            said[1].contains("for 4h"),
            "the new head is decided again: {}",
            said[1]
        );
    }
);

on_both_forges!(
    a_comment_approval_binds_to_the_head_it_saw,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        // Two approvers needed? No: one. So push, then check an approval of the old head via review.
        let old_head = s.change(pr).head_sha;
        s.forge.push_files(
            REPO,
            "request-r1",
            &s.people.alice,
            &[("requests/prod/r1.yaml", &prod_request("2h"))],
            "longer",
        );
        s.settle().await;
        assert_ne!(s.change(pr).head_sha, old_head);
        assert_eq!(
            s.request("r1").await.head_sha,
            s.change(pr).head_sha,
            "the bot follows the new head"
        );
        assert!(!s.change(pr).merged);
        let said = s.take_bot_comments(pr);
        assert_eq!(said.len(), 2, "a verdict for each head: {said:#?}");
        assert!(
            said[0].contains("for 1h") && said[1].contains("for 2h"),
            "{said:#?}"
        );
    }
);

on_both_forges!(quoted_commands_are_not_commands, |s: Scenario| async move {
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
    for body in [
        "```\n/breakglass approve\n```",
        "> /breakglass approve",
        "`/breakglass approve`",
        "please /breakglass approve this",
        "[/breakglass approve](https://example.com)",
    ] {
        s.note(pr, &s.people.carol, body);
    }
    s.settle().await;
    assert!(!s.change(pr).merged);
    s.expect_no_bot_comment(pr); // no reply to prose
});

// An edited comment never approves, but it is told so: an approver who fixed a typo in
// `/breakglass aprove` must not wait on an approval that never counted.
on_both_forges!(an_edited_comment_never_approves, |s: Scenario| async move {
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
    let id = s.note(pr, &s.people.carol, "looking");
    s.settle().await;
    s.forge
        .edit_comment(REPO, id, &s.people.carol, "/breakglass approve");
    s.settle().await;
    assert!(!s.change(pr).merged);
    assert_eq!(
        s.take_bot_comments(pr),
        [
            "ℹ️ @carol, an edited comment is not read again: a command in it is not run (a request it opened stands as it was asked; an approval or an ask for more time that it no longer says is withdrawn). Post a new comment instead."
        ]
    );
    // Prose edited into more prose is no command, and gets nothing.
    s.forge
        .edit_comment(REPO, id, &s.people.carol, "looking, more slowly");
    s.settle().await;
    s.expect_no_bot_comment(pr);
    // Edited to a command again (and again): already said, and still the bot's latest word.
    for text in [
        "/breakglass approve",
        "/breakglass approve

lgtm",
    ] {
        s.forge.edit_comment(REPO, id, &s.people.carol, text);
        s.settle().await;
    }
    s.expect_no_bot_comment(pr);
});

// An ask for more time edited to another duration asks nothing any more, and the reply says
// so: an approver's `/breakglass approve` then extends nothing (neither the 30m first asked
// nor the 3h the edit shows, which the approver never saw asked). An edit that keeps the
// duration keeps the ask, which an approval then grants.
on_both_forges!(
    an_ask_for_more_time_edited_to_another_duration_is_withdrawn,
    |s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        let granted = s.request("r1").await.expires_at.unwrap();
        s.forge.advance_clock(TimeDelta::seconds(1));
        let ask = s.note(pr, &s.people.alice, "/breakglass extend 30m");
        s.settle().await;
        s.expect_bot_comments(pr, &["⏳ @alice asks for 30m more"]);
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.forge
            .edit_comment(REPO, ask, &s.people.alice, "/breakglass extend 3h");
        s.settle().await;
        s.expect_bot_comments(
            pr,
            &["ℹ️ @alice, an edited comment is not read again: a command in it is not run"],
        );
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.approve(pr, &s.people.carol);
        s.settle().await;
        s.expect_bot_comments(pr, &["ℹ️ Nothing to approve"]);
        assert_eq!(s.request("r1").await.expires_at, Some(granted));
        // Edited with the same duration, the ask stands.
        s.forge.advance_clock(TimeDelta::seconds(1));
        let ask = s.note(pr, &s.people.alice, "/breakglass extend 30m");
        s.settle().await;
        s.expect_bot_comments(pr, &["⏳ @alice asks for 30m more"]);
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.forge.edit_comment(
            REPO,
            ask,
            &s.people.alice,
            "/breakglass extend 30m\n\nThe failover is still running.",
        );
        s.settle().await;
        s.expect_bot_comments(pr, &["ℹ️ @alice, an edited comment is not read again"]);
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.approve(pr, &s.people.carol);
        s.settle().await;
        s.expect_bot_comments(pr, &["⏳ Extended"]);
        assert_eq!(
            s.request("r1").await.expires_at,
            Some(granted + TimeDelta::minutes(30))
        );
    }
);

on_both_forges!(
    a_pr_that_also_changes_policies_is_never_merged,
    |s: Scenario| async move {
        let alice = &s.people.alice;
        let loosened = s
            .forge
            .file_on(REPO, "main", "policies/prod.yaml")
            .unwrap()
            .replace("max_duration: 4h", "max_duration: 12h");
        s.forge.push_files(
            REPO,
            "sneaky",
            alice,
            &[
                ("requests/prod/r1.yaml", &prod_request("8h")),
                ("policies/prod.yaml", &loosened),
            ],
            "request",
        );
        let pr = s.open_change(alice, "sneaky", "request");
        s.settle().await;
        let verdict = s.next_bot_comment(pr);
        assert!(verdict.starts_with(&format!("⛔ **breakglass will not merge this {pr}**: it changes files beyond its request file: `policies/prod.yaml`.", pr = s.pr())), "{verdict}");
        // The default branch's policy decides, not the PR's loosened copy.
        assert!(
            verdict.contains("duration 8h is above the max_duration of `prod` (4h)"),
            "{verdict}"
        );
        let head = s.change(pr).head_sha;
        assert_eq!(s.policy_status(&head).unwrap().0, "failure");
        s.by(&s.people.carol).approve(pr);
        s.settle().await;
        assert!(!s.change(pr).merged);
        s.expect_bot_comments(pr, &[&format!("ℹ️ `/breakglass approve` does not apply: request `r1` is denied by the `prod` policy (`max_duration`) and as its {pr} changes files beyond its request, so no approval merges it and nothing is granted. Push a fix to this {pr} (its request file alone) and it is decided again.", pr = s.pr())]);
    }
);

on_both_forges!(
    a_pr_that_also_changes_another_request_is_never_merged,
    |s: Scenario| async move {
        let alice = &s.people.alice;
        s.forge.push_files(
            REPO,
            "two",
            alice,
            &[
                ("requests/prod/r1.yaml", &prod_request("1h")),
                ("README.md", "changed\n"),
            ],
            "request",
        );
        let pr = s.open_change(alice, "two", "request");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(said.contains("`README.md`"), "{said}");
        s.by(&s.people.carol).approve(pr);
        s.settle().await;
        assert!(!s.change(pr).merged);
        s.expect_bot_comments(pr, &[&format!("ℹ️ `/breakglass approve` does not apply: request `r1` is denied as its {pr} changes files beyond its request, so no approval merges it and nothing is granted. Push a fix to this {pr} (its request file alone) and it is decided again.", pr = s.pr())]);

        s.forge.push_files(
            REPO,
            "three",
            alice,
            &[
                ("requests/prod/r2.yaml", &prod_request("1h")),
                ("requests/prod/r3.yaml", &prod_request("1h")),
            ],
            "two requests",
        );
        let pr = s.open_change(alice, "three", "requests");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(
            said.starts_with(&format!("⛔ **One request per {}**", s.pr())),
            "{said}"
        );
    }
);

on_both_forges!(
    denials_explain_duration_role_and_requester,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "too-long", &prod_request("6h"));
        s.settle().await;
        let verdict = s.next_bot_comment(pr);
        assert!(
            verdict.starts_with("❌ **Request `too-long` is denied** by the `prod` policy."),
            "{verdict}"
        );
        assert!(verdict.contains("- **max_duration**: duration 6h is above the max_duration of `prod` (4h); ask for 4h or less"), "{verdict}");
        assert_eq!(
            s.policy_status(&s.change(pr).head_sha).unwrap(),
            ("failure".into(), "denied: max_duration".into())
        );

        let pr = s.open_request(
            &s.people.alice,
            "prod",
            "bad-role",
            &prod_request("1h").replace("role: admin", "role: root"),
        );
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(said.contains("- **role**: role `root` is not a role of environment `prod`; ask for one of: `admin`, `readonly`"), "{said}");

        let pr = s.open_request(&s.people.mallory, "prod", "intruder", &prod_request("1h"));
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(
            said.contains("`mallory` may not request access to `prod`"),
            "{said}"
        );

        let pr = s.open_request(
            &s.people.alice,
            "prod",
            "broken",
            "environment: prod\nrole: admin\nduration: 2 hours\nreason: x\n",
        );
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(pr),
            "❌ **`requests/prod/broken.yaml` is not a valid request**: line 3, column 11: duration `2 hours` is not a duration; write e.g. `90s`, `45m`, `2h` or `1h30m`\n\nSee the request format with `/breakglass help` or in the README."
        );
        // A fixed push is checked again.
        s.forge.push_files(
            REPO,
            "request-too-long",
            &s.people.alice,
            &[("requests/prod/too-long.yaml", &prod_request("2h"))],
            "shorter",
        );
        s.settle().await;
        assert!(
            s.next_bot_comment(s.request("too-long").await.pr_number)
                .starts_with("✅"),
            "re-evaluated on push"
        );
    }
);

// An approver's `/breakglass approve` on a request the policy denies is answered with what
// failed and what to do: no approval merges it, a push that fixes the file is decided again.
// A revoke or an extension there is answered the same way. Nothing is merged.
on_both_forges!(
    an_approve_on_a_request_the_policy_denies_says_why_and_what_to_do,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-big", &prod_request("6h"));
        s.settle().await;
        s.expect_bot_comments(
            pr,
            &["❌ **Request `r-big` is denied** by the `prod` policy."],
        );
        s.approve(pr, &s.people.carol);
        s.settle().await;
        let answer = &format!(
            "ℹ️ `/breakglass approve` does not apply: request `r-big` is denied by the `prod` policy (`max_duration`), so no approval merges it and nothing is granted. Push a fixed request file to this {pr} and it is decided again.",
            pr = s.pr()
        );
        assert_eq!(s.next_bot_comment(pr), *answer);
        // The forge's own approval (a review, GitLab's Approve button) is answered the same way.
        s.approve_button(pr, &s.people.dan);
        s.settle().await;
        assert_eq!(s.next_bot_comment(pr), *answer);
        s.by(&s.people.alice).command(pr, "revoke");
        s.settle().await;
        assert!(
            s.next_bot_comment(pr).starts_with(
                "ℹ️ `/breakglass revoke` does not apply: request `r-big` is denied by the `prod` policy (`max_duration`)"
            )
        );
        assert!(!s.change(pr).merged);
        assert_eq!(s.request("r-big").await.state, RequestState::Denied);
        // The push it asks for is decided again, and then an approval merges it.
        s.forge.push_files(
            REPO,
            "request-r-big",
            &s.people.alice,
            &[("requests/prod/r-big.yaml", &prod_request("2h"))],
            "shorter",
        );
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r-big` is allowed**"]);
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(s.change(pr).merged);
        s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
    }
);

// GitHub's signatures; GitLab's token check is in tests/forges.rs.
on_both_backends!(
    bad_signatures_and_replays_change_nothing,
    |s: Scenario| async move {
        let url = s.webhook_url();
        let body = br#"{"action":"created","issue":{"number":1},"comment":{"id":1,"body":"/breakglass help","user":{"id":1,"login":"x"},"created_at":"2026-11-26T02:14:00Z"},"repository":{"full_name":"acme/access-requests"}}"#;
        assert_eq!(
            s.forge
                .send_raw_delivery(&url, "issue_comment", body, "wrong-secret")
                .await,
            Some(401)
        );
        assert_eq!(
            s.forge
                .send_raw_delivery(&url, "issue_comment", body, "")
                .await,
            Some(401),
            "no signature"
        );
        assert_eq!(
            s.forge
                .send_raw_delivery(&url, "issue_comment", b"{not json", SECRET)
                .await,
            Some(400)
        );
        assert_eq!(
            s.forge
                .send_raw_delivery(&url, "issue_comment", &vec![b' '; 2 * 1024 * 1024], SECRET)
                .await,
            Some(413)
        );
        assert_eq!(
            s.forge
                .send_raw_delivery(&url, "star", br#"{"action":"created"}"#, SECRET)
                .await,
            Some(200)
        );

        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        let opened = s
            .forge
            .deliveries()
            .into_iter()
            .find(|d| d.event == "pull_request")
            .expect("a delivery");
        assert!(s.forge.redeliver(&opened.id));
        s.settle().await;
        s.expect_no_bot_comment(pr); // a replayed delivery changes nothing
        let replay = s
            .forge
            .deliveries()
            .into_iter()
            .rfind(|d| d.id == opened.id)
            .unwrap();
        assert_eq!(replay.status, Some(200));
    }
);

on_both_forges!(
    deny_closes_the_request_and_only_approvers_may_deny,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-deny", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r-deny` is allowed**"]);
        s.by(&s.people.mallory).command(pr, "deny not you");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(
            said.contains("only an approver (or the requester, to withdraw) can deny a request"),
            "{said}"
        );
        assert_eq!(s.change(pr).state, "open");
        s.note(
            pr,
            &s.people.carol,
            "/breakglass deny -- no incident on record",
        );
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(pr),
            "🚫 Request denied by @carol: `no incident on record`. Closing."
        );
        assert_eq!(s.change(pr).state, "closed");
        assert_eq!(s.request("r-deny").await.state.to_string(), "closed");
        // A closed request cannot be approved any more, and the bot says why.
        s.by(&s.people.dan).approve(pr);
        s.settle().await;
        assert!(!s.change(pr).merged);
        s.expect_bot_comments(pr, &["ℹ️ `/breakglass approve` does not apply: request `r-deny` is closed without a grant (**closed**). For access, ask anew with `/breakglass <environment> [duration] [role] [-- reason]`."]);
        // Status says it was denied, by whom and why; naming the approver pings nobody.
        s.by(&s.people.alice).command(pr, "status");
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(pr),
            "ℹ️ Request `r-deny`: **closed**. Denied by carol: `no incident on record`."
        );
    }
);

// A request by comment that the policy refuses opens nothing; the reply, on the issue, says
// to comment again (there is no PR to push a fix to).
on_both_forges!(
    a_refused_request_by_comment_is_answered_for_a_comment,
    |s: Scenario| async move {
        let issue = s.open_issue(&s.people.mallory, "help");
        s.note_on_issue(
            issue,
            &s.people.mallory,
            "/breakglass prod 1h admin -- incident: INC-1 checkout down",
        );
        s.settle().await;
        assert!(s.changes().is_empty(), "nothing opened");
        let said = s.next_bot_issue_comment(issue);
        assert!(
            said.starts_with("❌ **Request `prod/admin` is denied** by the `prod` policy."),
            "{said}"
        );
        assert!(
            said.ends_with("\n\nNothing was opened. Comment again with a corrected `/breakglass <environment> [duration] [role] [-- reason]` command."),
            "{said}"
        );
        assert!(!said.contains("this PR"), "{said}");
    }
);

// The requester's own `/breakglass deny` takes the request back: it is a withdrawal, and
// neither the closing comment nor the status calls it a denial.
on_both_forges!(
    the_requesters_deny_is_a_withdrawal,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        s.by(&s.people.alice).command(pr, "deny wrong env");
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(pr),
            "↩️ Request withdrawn by the requester, @alice: `wrong env`. Closing."
        );
        assert_eq!(s.change(pr).state, "closed");
        s.by(&s.people.carol).command(pr, "status");
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(pr),
            "ℹ️ Request `r1`: **closed**. Withdrawn by the requester: `wrong env`."
        );
    }
);

// A command that does not apply in the request's state names the state and the command that
// does: an approver's deny of a fast-path grant already active points at revoke.
on_both_forges!(
    a_command_out_of_its_state_names_the_state_and_what_applies,
    |s: Scenario| async move {
        let pr = s.before_the_bot_hears(|| {
            let pr = s.open_request(&s.people.bob, "prod", "r1", &prod_request("30m"));
            s.label(pr, &s.people.bob, "sev1");
            pr
        });
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.expect_bot_comments(pr, &["🔓 **Access granted.** @bob"]);
        s.by(&s.people.carol).command(pr, "deny -- not a sev1");
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(pr),
            "ℹ️ `/breakglass deny` does not apply: request `r1` is already granted (**active**). `/breakglass revoke` ends it now; `/breakglass extend <duration>` asks for more time."
        );
        assert_eq!(s.request("r1").await.state, RequestState::Active);
    }
);

// A requester extends a fast-path grant on their own only while the rule still applies as it
// did at the merge: the incident label still on the PR, the requester still on call.
on_both_forges!(
    a_fast_path_grant_is_not_extended_once_its_rule_no_longer_applies,
    |s: Scenario| async move {
        let erin = &s.people.erin;
        let (pr, granted) = erin_granted_sev1(&s, "r-lapse").await;

        // The incident is downgraded: the label comes off.
        s.unlabel(pr, &s.people.carol, "sev1");
        s.note(pr, erin, "/breakglass extend 15m");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(
            said.contains("Fast path `sev1` no longer applies: needs one of the labels sev1"),
            "{said}"
        );
        assert!(said.contains("It needs approval"), "{said}");
        assert_eq!(s.request("r-lapse").await.expires_at, Some(granted));

        // Labelled again, but erin is off call now (past the bot's minute of membership cache).
        s.label(pr, &s.people.carol, "sev1");
        s.forge.remove_team_member("acme/oncall", erin);
        s.advance(TimeDelta::minutes(2));
        s.note(pr, erin, "/breakglass extend 15m");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(said.contains("`erin` is not one of"), "{said}");
        assert_eq!(s.request("r-lapse").await.expires_at, Some(granted));

        // Back on call, the rule applies again and erin extends on her own.
        s.forge.add_team_member("acme/oncall", erin);
        s.advance(TimeDelta::minutes(2));
        extends(
            &s,
            pr,
            erin,
            "15m",
            "r-lapse",
            granted + TimeDelta::minutes(15),
        )
        .await;
    }
);

// A requester's own extension on the fast path is judged as a new fast path of theirs would
// be: with the other grants they hold in the environment. erin holds two 30m sev1 grants at
// once (1h in all, the rule's max_duration); extending one would make it 1h30 of prod/admin
// nobody approved (and k short grants, each extended, k hours).
on_both_forges!(
    a_fast_path_extension_counts_the_other_grants_the_requester_holds,
    |s: Scenario| async move {
        let erin = &s.people.erin;
        let (first, granted) = erin_granted_sev1(&s, "r-one").await;
        let (second, _) = erin_granted_sev1(&s, "r-two").await;
        assert!(s.change(second).merged, "{:#?}", s.bot_comments(second));
        s.advance(TimeDelta::minutes(1));
        s.note(first, erin, "/breakglass extend 30m");
        s.settle().await;
        let said = s.next_bot_comment(first);
        assert!(
            said.contains("Fast path `sev1` no longer applies: `erin` already holds `prod` access: `r-two` (29m left); with this 59m that is 1h28m in total, above its max_duration 1h"),
            "{said}"
        );
        assert_eq!(s.request("r-one").await.expires_at, Some(granted));
    }
);

// The extension asks the fast-path rule's teams afresh, as the merge does: erin, taken off
// call a moment ago (inside the bot's minute of membership cache), no longer extends alone.
on_both_forges!(
    a_fast_path_extension_right_after_going_off_call_is_refused,
    |s: Scenario| async move {
        let erin = &s.people.erin;
        let (pr, granted) = erin_granted_sev1(&s, "r-off").await;
        // A first extension while on call puts her teams in the bot's cache.
        let extended = granted + TimeDelta::minutes(5);
        extends(&s, pr, erin, "5m", "r-off", extended).await;
        s.forge.remove_team_member("acme/oncall", erin);
        s.advance(TimeDelta::seconds(20));
        s.note(pr, erin, "/breakglass extend 15m");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(said.contains("`erin` is not one of"), "{said}");
        assert_eq!(s.request("r-off").await.expires_at, Some(extended));
    }
);

// A grant is extended only for someone its policy still names among its requesters, as a new
// request of theirs is decided: alice, taken off staging's (self-service) requesters while her
// grant runs, keeps it to its expiry but extends it no more, alone or with an approver's word.
on_both_forges!(
    a_requester_taken_off_the_requesters_cannot_extend_their_grant,
    |s: Scenario| async move {
        let alice = &s.people.alice;
        let yaml = "environment: staging\nrole: admin\nduration: 2h\nreason: \"incident: INC-9 staging\"\n";
        let pr = s.open_request(alice, "staging", "st1", yaml);
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.take_bot_comments(pr);
        let granted = s.request("st1").await.expires_at.unwrap();
        // Still a requester: she extends on her own.
        let extended = granted + TimeDelta::minutes(30);
        extends(&s, pr, alice, "30m", "st1", extended).await;

        let named = "requesters: [\"@acme/engineering\", alice, bob, dave]";
        let unnamed = "requesters: [\"@acme/engineering\", bob, dave]";
        s.edit_policy(&s.people.erin, "staging", |p| p.replace(named, unnamed));
        s.settle().await;
        let refused = format!(
            "🙅 @alice is no longer among the requesters of the `staging` policy, so the grant cannot be extended; it ends at **{}** (in ",
            breakglass::clock::iso(extended)
        );
        extension_refused(&s, pr, &[alice, &s.people.carol], "30m", &refused).await;
        assert_eq!(s.request("st1").await.expires_at, Some(extended));

        // Named again, she extends on her own again.
        s.edit_policy(&s.people.erin, "staging", |p| p.replace(unnamed, named));
        s.settle().await;
        extends(
            &s,
            pr,
            alice,
            "30m",
            "st1",
            extended + TimeDelta::minutes(30),
        )
        .await;
    }
);

// The same for a fast-path grant: erin leaves @acme/sre (so prod's requesters no longer name
// her) but stays on call, so the sev1 rule alone would still let her extend. She does not,
// nor does an approver for her, and nothing is left asked for an approve to grant.
on_both_forges!(
    a_requester_out_of_the_requesters_team_cannot_extend_a_fast_path_grant,
    |s: Scenario| async move {
        let erin = &s.people.erin;
        let (pr, granted) = erin_granted_sev1(&s, "r-left").await;

        // Past the bot's minute of membership cache.
        s.forge.remove_team_member("acme/sre", erin);
        s.advance(TimeDelta::minutes(2));
        let refused = format!(
            "🙅 @erin is no longer among the requesters of the `prod` policy, so the grant cannot be extended; it ends at **{}** (in ",
            breakglass::clock::iso(granted)
        );
        extension_refused(&s, pr, &[erin, &s.people.carol], "15m", &refused).await;
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(s.next_bot_comment(pr).starts_with("ℹ️ Nothing to approve"));
        assert_eq!(s.request("r-left").await.expires_at, Some(granted));

        // Back in the team, the rule lets her extend on her own again.
        s.forge.add_team_member("acme/sre", erin);
        s.advance(TimeDelta::minutes(2));
        extends(
            &s,
            pr,
            erin,
            "15m",
            "r-left",
            granted + TimeDelta::minutes(15),
        )
        .await;
    }
);

// Approvals are of a head: a push voids them for good, even when the branch is put back on the
// head they were given on (A, then B, then A again).
on_both_forges!(
    an_approval_voided_by_a_push_stays_void_when_the_branch_goes_back,
    |s: Scenario| async move {
        let alice = &s.people.alice;
        let pr = s.before_the_bot_hears(|| {
            let pr = s.open_request(alice, "prod", "r-aba", &prod_request("1h"));
            s.set_draft(pr, alice, true);
            pr
        });
        s.settle().await;
        let head_a = s.forge.branch_sha(REPO, "request-r-aba").expect("branch");
        // carol approves A while it is a draft: counted for A, not merged.
        s.by(&s.people.carol).approve_button(pr);
        s.settle().await;
        s.advance(TimeDelta::seconds(2));
        s.forge.push_files(
            REPO,
            "request-r-aba",
            alice,
            &[("requests/prod/r-aba.yaml", &prod_request("4h"))],
            "longer",
        );
        s.settle().await;
        s.advance(TimeDelta::seconds(2));
        s.forge.force_branch(REPO, "request-r-aba", alice, &head_a);
        s.settle().await;
        s.set_draft(pr, alice, false);
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        assert!(
            !s.change(pr).merged,
            "carol's approval of A was voided by the push of B: {:#?}",
            s.bot_comments(pr)
        );
        s.take_bot_comments(pr);
        // A fresh approval of the head counts.
        s.by(&s.people.carol).approve(pr);
        s.settle().await;
        assert!(s.change(pr).merged);
        s.take_bot_comments(pr);
    }
);

// Only the requester or an approver extends a grant: a bystander's `/breakglass extend` is
// refused and moves nothing. Where the policy needs no approval, the requester extends alone.
on_both_forges!(
    only_the_requester_or_an_approver_extends_a_grant,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-more", &prod_request("1h"));
        s.settle().await;
        s.approve(pr, &s.people.carol);
        s.settle().await;
        s.expect_bot_comments(pr, &["✅", "🔓 **Access granted.**"]);
        let granted = s.request("r-more").await.expires_at.unwrap();
        s.note(pr, &s.people.mallory, "/breakglass extend 30m");
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(pr),
            "🙅 @mallory, only the requester or an approver can extend."
        );
        assert_eq!(s.request("r-more").await.expires_at.unwrap(), granted);
        // prod made self-service on the default branch: alice extends on her own.
        let self_service = s
            .forge
            .file_on(REPO, "main", "policies/prod.yaml")
            .unwrap()
            .replace("approvals: 1", "approvals: 0");
        s.forge.push_files(
            REPO,
            "main",
            &s.people.carol,
            &[("policies/prod.yaml", &self_service)],
            "prod needs no approval",
        );
        s.settle().await;
        s.note(pr, &s.people.alice, "/breakglass extend 30m");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(said.starts_with("⏳ Extended"), "{said}");
        let extended = s.request("r-more").await.expires_at.unwrap();
        assert_eq!(extended - granted, TimeDelta::minutes(30));
    }
);

// An extension is approved again as the grant was: with two approvals needed, one approver's
// `/breakglass extend` is one of two, each approver counts once, the requester never, the
// same duration must be asked for, and approvals of one extension do not carry to the next.
on_both_forges!(
    an_extension_needs_as_many_approvers_as_the_grant,
    |s: Scenario| async move {
        s.prod_needs_two_approvals().await;
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.approve(pr, &s.people.carol);
        s.settle().await;
        s.approve(pr, &s.people.dan);
        s.settle().await;
        assert!(s.change(pr).merged);
        s.take_bot_comments(pr);
        let granted = s.request("r1").await.expires_at.unwrap();
        let one_of_two = |who: &str, by: &str| {
            format!(
                "👍 @{who} approves an extension by {by} (1 of 2); another approver's `/breakglass approve` (or `/breakglass extend {by}`) extends it."
            )
        };
        for (who, by) in [
            (&s.people.carol, "1h"),
            (&s.people.carol, "1h"),
            (&s.people.dan, "30m"),
        ] {
            s.note(pr, who, &format!("/breakglass extend {by}"));
            s.settle().await;
            assert_eq!(s.next_bot_comment(pr), one_of_two(&who.login, by));
        }
        s.note(pr, &s.people.alice, "/breakglass extend 1h");
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(pr),
            format!(
                "⏳ @alice asks for 1h more. It needs approval: 2 approvers (@acme/sre-leads, @carol) comment `/breakglass approve` (or `/breakglass extend 1h`), {}",
                or_react(&s, pr, "react")
            )
        );
        assert_eq!(s.request("r1").await.expires_at.unwrap(), granted);
        s.note(pr, &s.people.dan, "/breakglass extend 1h");
        s.settle().await;
        assert!(s.next_bot_comment(pr).starts_with("⏳ Extended"));
        let extended = s.request("r1").await.expires_at.unwrap();
        assert_eq!(extended - granted, TimeDelta::hours(1));
        let event = s.events("r1", "extend").await.pop().unwrap();
        assert_eq!(
            event.data["approved_by"],
            serde_json::json!(["carol", "dan"])
        );
        // The next extension starts from nothing (asked after the bot said the new expiry,
        // by the forge's clock: in the same second it would be too close to tell).
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(pr, &s.people.carol, "/breakglass extend 1h");
        s.settle().await;
        assert_eq!(s.next_bot_comment(pr), one_of_two("carol", "1h"));
        assert_eq!(s.request("r1").await.expires_at.unwrap(), extended);
    }
);

// An extension is approved by approvers as the policy names them when it is granted, as a
// request is at its merge: carol approves, is then taken off prod's approvers (out of the team
// and off the list), and dan's approval is one of two, not two. An approver still named makes two.
on_both_forges!(
    an_extension_approval_by_someone_taken_off_the_approvers_does_not_count,
    |s: Scenario| async move {
        let pr = granted_by_two_approvers(&s).await;
        s.take_bot_comments(pr);
        let granted = s.request("r1").await.expires_at.unwrap();
        let one_of_two = |who: &str| {
            format!(
                "👍 @{who} approves an extension by 1h (1 of 2); another approver's `/breakglass approve` (or `/breakglass extend 1h`) extends it."
            )
        };
        s.note(pr, &s.people.carol, "/breakglass extend 1h");
        s.settle().await;
        assert_eq!(s.next_bot_comment(pr), one_of_two("carol"));

        s.forge
            .remove_team_member("acme/sre-leads", &s.people.carol);
        s.edit_policy(&s.people.erin, "prod", |p| {
            p.replace(
                "approvers: [\"@acme/sre-leads\", carol]",
                "approvers: [\"@acme/sre-leads\"]",
            )
        });
        s.advance(TimeDelta::minutes(2)); // past the bot's minute of membership cache
        s.settle().await;
        s.note(pr, &s.people.dan, "/breakglass extend 1h");
        s.settle().await;
        assert_eq!(s.next_bot_comment(pr), one_of_two("dan"));
        assert_eq!(s.request("r1").await.expires_at.unwrap(), granted);

        s.forge.add_team_member("acme/sre-leads", &s.people.bob);
        s.note(pr, &s.people.bob, "/breakglass extend 1h");
        s.settle().await;
        assert!(s.next_bot_comment(pr).starts_with("⏳ Extended"));
        let extended = s.request("r1").await.expires_at.unwrap();
        assert_eq!(extended - granted, TimeDelta::hours(1));
        let event = s.events("r1", "extend").await.pop().unwrap();
        let mut approved_by: Vec<&str> = event.data["approved_by"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|login| login.as_str())
            .collect();
        approved_by.sort_unstable();
        assert_eq!(approved_by, ["bob", "dan"]);
    }
);

// SPEC: an extension needs "approval again", and `/breakglass approve` is an approval. It
// approves the extension the requester asked for last on the grant's current expiry; asking
// again names the approvers without pinging them; once extended, nothing is asked any more,
// so a late approve extends nothing.
on_both_backends!(
    an_approve_comment_approves_the_extension_the_requester_asked_for,
    |s: Scenario| async move {
        let pr = granted_by_two_approvers(&s).await;
        s.take_bot_comments(pr);
        let granted = s.request("r1").await.expires_at.unwrap();
        let nothing_asked = "ℹ️ Nothing to approve: this grant is active and no extension is asked for. Its requester asks with `/breakglass extend <duration>`; a fast-path grant is reviewed with `/breakglass reviewed`.";
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert_eq!(s.next_bot_comment(pr), nothing_asked);
        s.note(pr, &s.people.alice, "/breakglass extend 1h");
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(pr),
            format!(
                "⏳ @alice asks for 1h more. It needs approval: 2 approvers (@acme/sre-leads, @carol) comment `/breakglass approve` (or `/breakglass extend 1h`), {}",
                or_react(&s, pr, "react")
            )
        );
        s.note(pr, &s.people.alice, "/breakglass extend 30m");
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(pr),
            format!(
                "⏳ @alice asks for 30m more. It needs approval: 2 approvers (`@acme/sre-leads`, `@carol`) comment `/breakglass approve` (or `/breakglass extend 30m`), {}",
                or_react(&s, pr, "react")
            ),
            "asked again: named, not pinged"
        );
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(pr),
            "👍 @carol approves an extension by 30m (1 of 2); another approver's `/breakglass approve` (or `/breakglass extend 30m`) extends it."
        );
        // The requester's own approve never counts.
        s.approve(pr, &s.people.alice);
        s.settle().await;
        assert!(
            s.next_bot_comment(pr).starts_with("🙅 @alice"),
            "the requester cannot approve"
        );
        assert_eq!(s.request("r1").await.expires_at.unwrap(), granted);
        s.approve(pr, &s.people.dan);
        s.settle().await;
        assert!(s.next_bot_comment(pr).starts_with("⏳ Extended"));
        let extended = s.request("r1").await.expires_at.unwrap();
        assert_eq!(extended - granted, TimeDelta::minutes(30));
        let event = s.events("r1", "extend").await.pop().unwrap();
        assert_eq!(
            event.data["approved_by"],
            serde_json::json!(["carol", "dan"])
        );
        // A late approve finds nothing asked on the new expiry.
        s.approve(pr, &s.people.erin);
        s.settle().await;
        assert_eq!(s.next_bot_comment(pr), nothing_asked);
        assert_eq!(s.request("r1").await.expires_at.unwrap(), extended);
    }
);

// An approver's `/breakglass approve` in the same forge second as the requester's
// `/breakglass extend`: whether carol read the ask cannot be told, so she is asked to approve
// again (not told that nothing is asked); her approve a second later extends.
on_both_forges!(
    an_approve_in_the_same_second_as_the_extension_ask_is_asked_again,
    |s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        s.take_bot_comments(pr);
        let granted = s.request("r1").await.expires_at.unwrap();
        s.forge.freeze_clock(s.forge.now() + TimeDelta::seconds(1));
        s.note(pr, &s.people.alice, "/breakglass extend 30m");
        s.settle().await;
        assert!(
            s.next_bot_comment(pr)
                .starts_with("⏳ @alice asks for 30m more")
        );
        s.note(pr, &s.people.carol, "/breakglass approve");
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(pr),
            "⏱️ @carol, your approval came within the same second as @alice's ask for 30m more, so breakglass cannot tell whether you saw it: nothing was approved. Please approve again with `/breakglass approve` (or `/breakglass extend 30m`)."
        );
        assert_eq!(s.request("r1").await.expires_at.unwrap(), granted);
        s.approve(pr, &s.people.carol); // a second later
        s.settle().await;
        assert!(s.next_bot_comment(pr).starts_with("⏳ Extended"));
        let extended = s.request("r1").await.expires_at.unwrap();
        assert_eq!(extended - granted, TimeDelta::minutes(30));
    }
);

/// Lets the bot see the emoji put on since its last look: GitHub's by the next poll (it sends
/// no webhook for them), GitLab's by their webhook.
async fn seen(s: &Scenario) {
    s.advance(TimeDelta::seconds(31));
    s.settle().await;
}

// An approver's approval emoji on the PR, put on after the requester's ask, approves the
// extension as `/breakglass approve` does (SPEC: an extension needs "approval again", and an
// emoji is an approval). Emoji that approve nothing get no answer: carol's from before the
// ask, the requester's own, and an outsider's.
on_both_forges!(
    an_approval_emoji_put_on_after_the_ask_approves_the_extension,
    |s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        let granted = s.request("r1").await.expires_at.unwrap();
        s.emoji(pr, &s.people.carol, "+1");
        seen(&s).await;
        s.expect_no_bot_comment(pr);
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(pr, &s.people.alice, "/breakglass extend 30m");
        s.settle().await;
        let asked = s.next_bot_comment(pr);
        assert!(asked.ends_with(&or_react(&s, pr, "reacts")), "{asked}");
        s.emoji(pr, &s.people.alice, "+1");
        s.emoji(pr, &s.people.mallory, "+1");
        seen(&s).await;
        s.expect_no_bot_comment(pr);
        assert_eq!(s.request("r1").await.expires_at.unwrap(), granted);
        s.emoji(pr, &s.people.dan, "+1");
        seen(&s).await;
        assert!(s.next_bot_comment(pr).starts_with("⏳ Extended"));
        s.expect_no_bot_comment(pr);
        let extended = s.request("r1").await.expires_at.unwrap();
        assert_eq!(extended - granted, TimeDelta::minutes(30));
        let event = s.events("r1", "extend").await.pop().unwrap();
        assert_eq!(event.data["approved_by"], serde_json::json!(["dan"]));
        // Nothing is asked on the new expiry: the same emoji, read again, extends nothing.
        s.emoji(pr, &s.people.erin, "+1");
        seen(&s).await;
        s.expect_no_bot_comment(pr);
        assert_eq!(s.request("r1").await.expires_at.unwrap(), extended);
    }
);

// With two approvals needed, one approver's emoji is counted once (the poll reads it again at
// every change of the PR's emoji) and taken back before the second approval, no longer counts.
on_both_forges!(
    an_extension_emoji_counts_once_and_not_after_it_is_taken_back,
    |s: Scenario| async move {
        let pr = granted_by_two_approvers(&s).await;
        s.take_bot_comments(pr);
        let granted = s.request("r1").await.expires_at.unwrap();
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(pr, &s.people.alice, "/breakglass extend 30m");
        s.settle().await;
        assert!(
            s.next_bot_comment(pr)
                .starts_with("⏳ @alice asks for 30m more")
        );
        let dans = s.emoji(pr, &s.people.dan, "+1");
        seen(&s).await;
        assert_eq!(
            s.next_bot_comment(pr),
            "👍 @dan approves an extension by 30m (1 of 2); another approver's `/breakglass approve` (or `/breakglass extend 30m`) extends it."
        );
        s.emoji(pr, &s.people.mallory, "eyes");
        seen(&s).await;
        s.expect_no_bot_comment(pr);
        s.remove_emoji(pr, dans);
        seen(&s).await;
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(s.next_bot_comment(pr).contains("(1 of 2)"));
        assert_eq!(s.request("r1").await.expires_at.unwrap(), granted);
        s.emoji(pr, &s.people.dan, "+1");
        seen(&s).await;
        assert!(s.next_bot_comment(pr).starts_with("⏳ Extended"));
        let event = s.events("r1", "extend").await.pop().unwrap();
        assert_eq!(
            event.data["approved_by"],
            serde_json::json!(["carol", "dan"])
        );
    }
);

// An emoji in the same forge second as the ask may or may not have been put on after reading
// it: the approver is asked to approve again, once, and nothing is extended.
on_both_forges!(
    an_extension_emoji_in_the_asks_second_is_asked_again,
    |s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        let granted = s.request("r1").await.expires_at.unwrap();
        s.forge.freeze_clock(s.forge.now() + TimeDelta::seconds(1));
        s.note(pr, &s.people.alice, "/breakglass extend 30m");
        s.settle().await;
        assert!(
            s.next_bot_comment(pr)
                .starts_with("⏳ @alice asks for 30m more")
        );
        s.emoji_now(pr, &s.people.carol, "+1");
        seen(&s).await;
        let again =
            "⏱️ @carol, your approval came within the same second as @alice's ask for 30m more";
        assert!(s.next_bot_comment(pr).starts_with(again));
        s.emoji_now(pr, &s.people.dan, "eyes");
        seen(&s).await;
        s.expect_no_bot_comment(pr);
        assert_eq!(s.request("r1").await.expires_at.unwrap(), granted);
    }
);

// GitHub: the poll read dan's 👍 before the bot heard of bob's ask (its webhook late), when it
// could only review the fast-path grant. Once the ask is stored, the next poll reads the emoji
// again (an unchanged list would not be read), and dan's, put on after the ask, approves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_github_an_emoji_read_before_the_ask_was_heard_of_approves_it_once_it_is() {
    let s = Scenario::start(Backend::Sqlite).await.unwrap();
    let pr = s.open_bob_sev1_change();
    s.settle().await;
    assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    s.take_bot_comments(pr);
    let granted = s.request("r-sev1").await.expires_at.unwrap();
    s.forge.set_webhooks_paused(true);
    s.forge.advance_clock(TimeDelta::seconds(1));
    s.note(pr, &s.people.bob, "/breakglass extend 30m");
    s.emoji(pr, &s.people.dan, "+1");
    seen(&s).await;
    assert!(
        s.next_bot_comment(pr)
            .starts_with("✔️ After-the-fact review by @dan recorded")
    );
    s.forge.set_webhooks_paused(false);
    s.forge.flush_webhooks();
    s.settle().await;
    assert!(
        s.next_bot_comment(pr)
            .starts_with("⏳ @bob asks for 30m more")
    );
    seen(&s).await;
    assert!(s.next_bot_comment(pr).starts_with("⏳ Extended"));
    let extended = s.request("r-sev1").await.expires_at.unwrap();
    assert_eq!(extended - granted, TimeDelta::minutes(30));
}

// GitHub: an emoji read while the policies are invalid cannot be judged; once they are fixed,
// the next poll reads it again, and it approves the extension it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_github_an_extension_emoji_read_while_the_policies_are_invalid_counts_once_fixed() {
    let s = Scenario::start(Backend::Sqlite).await.unwrap();
    let pr = s.granted("r1", "1h").await;
    let granted = s.request("r1").await.expires_at.unwrap();
    s.forge.advance_clock(TimeDelta::seconds(1));
    s.note(pr, &s.people.alice, "/breakglass extend 30m");
    s.settle().await;
    assert!(
        s.next_bot_comment(pr)
            .starts_with("⏳ @alice asks for 30m more")
    );
    let good = break_prod_policy(&s).await;
    s.emoji(pr, &s.people.dan, "+1");
    seen(&s).await;
    assert_eq!(s.request("r1").await.expires_at.unwrap(), granted);
    s.edit_policy(&s.people.erin, "prod", |_| good.clone());
    s.settle().await;
    seen(&s).await;
    assert!(s.next_bot_comment(pr).starts_with("⏳ Extended"));
    let extended = s.request("r1").await.expires_at.unwrap();
    assert_eq!(extended - granted, TimeDelta::minutes(30));
}

// An emoji that answers an extension that can no longer be given (its requester taken off
// the policy since the ask) is answered once, however often the poll reads it again: when an
// outsider's emoji changes the PR's list, and at GitLab's every poll.
on_both_forges!(
    an_extension_emoji_that_cannot_approve_is_answered_once,
    |s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(pr, &s.people.alice, "/breakglass extend 30m");
        s.settle().await;
        assert!(
            s.next_bot_comment(pr)
                .starts_with("⏳ @alice asks for 30m more")
        );
        s.edit_policy(&s.people.erin, "prod", |p| {
            p.replace(
                "requesters: [\"@acme/sre\", alice, bob]",
                "requesters: [bob]",
            )
        });
        s.settle().await;
        s.emoji(pr, &s.people.dan, "+1");
        seen(&s).await;
        assert!(s.next_bot_comment(pr).starts_with("🙅"), "refused");
        s.emoji(pr, &s.people.mallory, "eyes");
        for _ in 0..3 {
            s.advance(TimeDelta::minutes(5));
            s.settle().await;
        }
        s.expect_no_bot_comment(pr);
    }
);

/// alice's 1h prod grant `r1`, approved by dan (the bot has just looked his membership of
/// @acme/sre-leads up); its PR, its comments read.
async fn granted_by_dan(s: &Scenario) -> u64 {
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.approve(pr, &s.people.dan);
    s.settle().await;
    assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    s.take_bot_comments(pr);
    pr
}

// A review closes a grant nobody approved, so who reviews is asked of the forge then: dan,
// taken off @acme/sre-leads a moment after the bot last looked him up, reviews nothing, by
// command or by emoji.
on_both_forges!(
    an_approver_taken_off_the_team_a_moment_ago_reviews_no_fast_path_grant,
    |s: Scenario| async move {
        granted_by_dan(&s).await;
        s.forge.remove_team_member("acme/sre-leads", &s.people.dan);
        let fast = s.open_bob_sev1_change();
        s.settle().await;
        assert!(s.change(fast).merged, "{:#?}", s.bot_comments(fast));
        s.take_bot_comments(fast);
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(fast, &s.people.dan, "/breakglass reviewed");
        s.settle().await;
        assert!(s.next_bot_comment(fast).starts_with("🙅 @dan"));
        s.emoji(fast, &s.people.dan, "+1");
        seen(&s).await;
        s.expect_no_bot_comment(fast);
        assert!(s.request("r-sev1").await.reviewed_at.is_none());
    }
);

// With one approval needed, an approval extends at once, so who approves is asked of the
// forge then, as before a merge: dan, taken off @acme/sre-leads a moment after the bot last
// looked him up, no longer approves within the minute the bot keeps a membership, by command
// or by emoji.
on_both_forges!(
    an_approver_taken_off_the_team_a_moment_ago_approves_no_extension,
    |s: Scenario| async move {
        let pr = granted_by_dan(&s).await;
        let granted = s.request("r1").await.expires_at.unwrap();
        s.forge.remove_team_member("acme/sre-leads", &s.people.dan);
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(pr, &s.people.alice, "/breakglass extend 30m");
        s.settle().await;
        assert!(
            s.next_bot_comment(pr)
                .starts_with("⏳ @alice asks for 30m more")
        );
        s.approve(pr, &s.people.dan);
        s.settle().await;
        assert!(s.next_bot_comment(pr).starts_with("🙅 @dan"));
        // Nor by emoji, which is not answered: dan is no approver now.
        s.emoji(pr, &s.people.dan, "+1");
        seen(&s).await;
        s.expect_no_bot_comment(pr);
        assert_eq!(s.request("r1").await.expires_at.unwrap(), granted);
    }
);

// GitHub counts a reviewer's latest review only: carol approves, then asks for changes, so
// her approval is taken back. With two approvals needed, dan's alone merges nothing, whether
// the bot heard of carol's second review by its webhook or reads it right before the merge.
on_both_backends!(
    an_approving_review_taken_back_by_asking_for_changes_does_not_count,
    |s: Scenario| async move {
        s.prod_needs_two_approvals().await;
        for (id, webhook) in [("r1", true), ("r2", false)] {
            let pr = s.open_request(&s.people.alice, "prod", id, &prod_request("1h"));
            s.settle().await;
            s.take_bot_comments(pr);
            s.approve_button(pr, &s.people.carol);
            s.settle().await;
            assert_eq!(
                s.next_bot_comment(pr),
                "👍 Approval by @carol recorded (1 of 2)."
            );
            s.forge.advance_clock(TimeDelta::seconds(1));
            s.forge.set_webhooks_paused(!webhook);
            s.forge.review(
                REPO,
                pr,
                &s.people.carol,
                breakglass_test_forge::ReviewState::ChangesRequested,
            );
            s.forge.set_webhooks_paused(false);
            s.settle().await;
            s.approve_button(pr, &s.people.dan);
            s.settle().await;
            assert!(!s.change(pr).merged, "{id}: only dan approves now");
            let said = s.take_bot_comments(pr);
            assert!(
                said.iter().all(|c| !c.contains("Access granted")),
                "{id}: {said:#?}"
            );
            assert_eq!(s.request(id).await.state, RequestState::Pending, "{id}");
        }
    }
);

// Each approver counts once, in `/breakglass status` as in the merge: carol's command and her
// 👍 are one approval of two, not "2 of 2" (which would invite a hand merge).
on_both_forges!(status_counts_each_approver_once, |s: Scenario| async move {
    s.prod_needs_two_approvals().await;
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.take_bot_comments(pr);
    s.approve(pr, &s.people.carol);
    s.settle().await;
    s.emoji(pr, &s.people.carol, "+1");
    s.advance(TimeDelta::seconds(31));
    s.settle().await;
    assert_eq!(
        s.take_bot_comments(pr),
        ["👍 Approval by @carol recorded (1 of 2)."]
    );
    s.note(pr, &s.people.bob, "/breakglass status");
    s.settle().await;
    assert_eq!(
        s.next_bot_comment(pr),
        "ℹ️ Request `r1`: **pending**. `alice` asks for `prod/admin` for 1h. Waiting for approval: 1 of 2 (by `carol`)."
    );
    assert!(!s.change(pr).merged);
});

/// erin's 30m prod request `id`, opened as a PR labelled `sev1` and granted on the fast path:
/// the PR and the grant's expiry.
async fn erin_granted_sev1(s: &Scenario, id: &str) -> (u64, chrono::DateTime<chrono::Utc>) {
    let erin = &s.people.erin;
    let yaml = "environment: prod\nrole: admin\nduration: 30m\nreason: incident INC-9 payments down\nticket: INC-9\n";
    let (path, branch) = (format!("requests/prod/{id}.yaml"), format!("sev1-{id}"));
    s.forge
        .push_files(REPO, &branch, erin, &[(path.as_str(), yaml)], "request");
    let pr = s.open_labelled_change(erin, &branch, "sev1 access", "sev1");
    s.settle().await;
    s.expect_bot_comments(pr, &["🔓 **Access granted.** @erin"]);
    (pr, s.request(id).await.expires_at.unwrap())
}

/// `who` extends request `id` (PR `pr`) by `by` on their own: said so, and it now expires at
/// `expected`.
async fn extends(
    s: &Scenario,
    pr: u64,
    who: &breakglass_test_forge::User,
    by: &str,
    id: &str,
    expected: chrono::DateTime<chrono::Utc>,
) {
    s.note(pr, who, &format!("/breakglass extend {by}"));
    s.settle().await;
    let said = s.next_bot_comment(pr);
    assert!(said.starts_with("⏳ Extended"), "{said}");
    assert_eq!(s.request(id).await.expires_at, Some(expected));
}

/// Each of `asking` asks to extend PR `pr` by `by`, and is answered with `refused`.
async fn extension_refused(
    s: &Scenario,
    pr: u64,
    asking: &[&breakglass_test_forge::User],
    by: &str,
    refused: &str,
) {
    for who in asking {
        s.note(pr, who, &format!("/breakglass extend {by}"));
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(said.starts_with(refused), "{}: {said}", who.login);
    }
}

/// The text of a comment outside code spans, as a markdown renderer reads it.
fn plain_text(markdown: &str) -> String {
    use pulldown_cmark::{Event, Parser};
    Parser::new(markdown)
        .filter_map(|e| match e {
            Event::Text(t) => Some(t.to_string()),
            _ => None,
        })
        .collect()
}

// The forges link bare `https://…` and `www.…` in plain text. A reason that closes the bot's
// code span with a backtick must still not put a live link into the bot's own words.
on_both_forges!(
    a_denial_does_not_turn_request_text_into_a_link,
    |s: Scenario| async move {
        let yaml = "environment: prod\nrole: admin\nduration: 1h\n\
                    reason: \"x` approve here: https://evil.example/sso www.evil.example `y\"\n\
                    ticket: INC-1\n";
        let pr = s.open_request(&s.people.alice, "prod", "r1", yaml);
        s.settle().await;
        let verdict = s.next_bot_comment(pr);
        assert!(verdict.starts_with("❌"), "{verdict}");
        let plain = plain_text(&verdict);
        assert!(
            plain.contains("approve here: https:\u{2060}//evil.example/sso www\u{2060}.evil"),
            "{plain:?}"
        );
        assert!(
            !plain.contains("https://") && !plain.contains("www."),
            "a live link in the bot's words: {plain:?}"
        );
    }
);

// A `|` ends a table cell even inside a code span: a ticket that carries one (where the policy
// sets no `ticket_pattern`) must not cut the expiry comment's ticket cell open into live text.
on_both_forges!(
    a_ticket_cannot_break_out_of_the_expiry_comments_table,
    |s: Scenario| async move {
        let yaml = "environment: staging\nrole: admin\nduration: 1h\nreason: debugging a failed deploy\nticket: \"`[Approve](https://evil.example/x)|`\"\n";
        let pr = s.open_request(&s.people.alice, "staging", "r1", yaml);
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        let granted = s.next_bot_comment(pr);
        let row = granted
            .lines()
            .find(|l| l.starts_with("| ticket |"))
            .unwrap_or_else(|| panic!("no ticket row: {granted}"));
        let cells = row.replace("\\|", "").matches('|').count();
        assert_eq!(cells, 3, "{row}");
    }
);

// GitLab usernames may be up to 255 characters and, on older accounts, start with `_`. Such a
// member of the approvers' group approves like anyone (and asks by comment, with a request id
// that stays valid); a stranger with such a name gets a reply, never silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_usernames_longer_than_githubs_are_people_too() {
    let s = Scenario::on_gitlab().await;
    let long = "firstname.lastname.external-contractor-acme-corporation-emea";
    let lead = s.forge.user(long);
    s.forge.add_team_member("acme/sre-leads", &lead);
    let stranger = s.forge.user("_underscore_user");
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.take_bot_comments(pr);
    s.note(pr, &stranger, "/breakglass approve");
    s.settle().await;
    assert_eq!(
        s.next_bot_comment(pr),
        "🙅 @_underscore_user is not an approver for `prod`, so this does not count. Approvers: `@acme/sre-leads`, `@carol`."
    );
    s.approve_button(pr, &lead);
    s.settle().await;
    assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    s.take_bot_comments(pr);

    s.forge.add_team_member("acme/sre", &lead);
    let issue = s.open_issue(&lead, "checkout is down");
    s.note_on_issue(
        issue,
        &lead,
        "/breakglass prod 1h admin -- incident: INC-9 db",
    );
    s.settle().await;
    let reply = s.next_bot_issue_comment(issue);
    assert!(reply.contains("your request is"), "{reply}");
    let opened = s
        .changes()
        .into_iter()
        .find(|c| c.number != pr && c.title.contains("firstname.lastname"))
        .expect("the request opened for the long username");
    s.take_bot_comments(opened.number);
}

// A GitLab service account may have any username (not `project_N_bot…`), and GitLab's events
// do not say it is a bot: the user's own record does (`"bot": true`). Put among the
// approvers, it approves by button, comment or 👍 in vain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_bot_account_with_a_plain_username_never_approves() {
    let s = Scenario::on_gitlab().await;
    let helper = s.forge.bot_user("deploy-helper");
    s.forge.add_team_member("acme/sre-leads", &helper);
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.take_bot_comments(pr);
    s.approve_button(pr, &helper);
    s.settle().await;
    s.forge.advance_clock(TimeDelta::seconds(1));
    s.note(pr, &helper, "/breakglass approve");
    s.emoji(pr, &helper, "+1");
    s.settle().await;
    assert!(!s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    assert!(s.events("r1", "approval").await.is_empty());
    for said in s.take_bot_comments(pr) {
        assert!(said.contains("is not an approver"), "{said}");
    }
}

// Nor does such an account ask for access: GitLab's events do not say it is a bot, so the
// bot asks its user record once a comment holds a command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_bot_account_with_a_plain_username_never_asks_for_access() {
    let s = Scenario::on_gitlab().await;
    let helper = s.forge.bot_user("deploy-helper");
    s.forge.add_team_member("acme/engineering", &helper);
    let issue = s.open_issue(&s.people.alice, "deploys are failing");
    let before = s.changes().len();
    s.note_on_issue(
        issue,
        &helper,
        "/breakglass staging 1h -- debugging a failed deploy",
    );
    s.settle().await;
    assert_eq!(s.changes().len(), before, "{:#?}", s.changes());
    assert!(s.bot_issue_comments(issue).is_empty());
}

// A GitLab multi-line quote (`>>>` … `>>>`) is a quote: an approver quoting someone's
// `/breakglass approve` that way approves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_in_a_gitlab_multiline_quote_is_not_taken() {
    let s = Scenario::on_gitlab().await;
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
    s.forge.advance_clock(TimeDelta::seconds(1));
    let quoted = ">>>\n/breakglass approve\n>>>\n\ndan wrote that in chat; I have not looked yet.";
    s.note(pr, &s.people.carol, quoted);
    s.settle().await;
    assert!(!s.change(pr).merged);
    assert!(s.events("r1", "approval").await.is_empty());
    assert!(s.take_bot_comments(pr).is_empty());
}

/// Breaks the prod policy on the default branch (erin's push); returns its text before.
async fn break_prod_policy(s: &Scenario) -> String {
    let good = s.forge.file_on(REPO, "main", "policies/prod.yaml").unwrap();
    s.edit_policy(&s.people.erin, "prod", |p| {
        p.replace("approvals: 1", "approvals: [1")
    });
    s.settle().await;
    good
}

// Two denies in one comment close the request once and say it once; the second is answered.
on_both_forges!(
    two_denies_in_one_comment_close_once_and_say_it_once,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        s.note(
            pr,
            &s.people.carol,
            "/breakglass deny\n/breakglass deny -- wrong account",
        );
        s.settle().await;
        assert_eq!(s.request("r1").await.state.to_string(), "closed");
        s.expect_bot_comments(
            pr,
            &[
                "🚫 Request denied by @carol. Closing.",
                "⚠️ One comment denies once",
            ],
        );
    }
);

// Ending access is the safe way: while the policies on the default branch are invalid, an
// approver's `/breakglass revoke` still ends the grant, checked against the approvers its
// decision named (dan through his team). Someone who never was an approver is still refused.
on_both_forges!(
    an_approvers_revoke_while_the_policies_are_invalid_still_ends_the_grant,
    |s: Scenario| async move {
        let pr = s.granted("r1", "4h").await;
        break_prod_policy(&s).await;
        s.note(pr, &s.people.mallory, "/breakglass revoke");
        s.settle().await;
        s.expect_bot_comments(
            pr,
            &["🙅 @mallory, only the requester or an approver can revoke."],
        );
        assert_eq!(s.request("r1").await.state.to_string(), "active");
        s.note(pr, &s.people.dan, "/breakglass revoke");
        s.settle().await;
        let record = s.request("r1").await;
        assert_eq!(record.state.to_string(), "revoked");
        assert_eq!(
            record.revoke_reason.map(|r| r.to_string()).as_deref(),
            Some("early")
        );
        s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
        let revert = s.merge_commit(s.revert_pr("r1").await);
        assert!(
            revert.message.contains("Breakglass-Revoked-By: dan\n"),
            "{}",
            revert.message
        );
    }
);

// A fast-path review given while the policies are invalid cannot be checked: it is answered
// as such (not "only an approver can review"), and the review stays open.
on_both_forges!(
    a_review_while_the_policies_are_invalid_is_answered_and_closes_nothing,
    |s: Scenario| async move {
        let pr = s.open_bob_sev1_change();
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.take_bot_comments(pr);
        break_prod_policy(&s).await;
        s.note(pr, &s.people.carol, "/breakglass reviewed");
        s.settle().await;
        s.expect_bot_comments(
            pr,
            &["⚠️ @carol, your review is not counted: the policies on `main` are invalid"],
        );
        assert_eq!(s.request("r-sev1").await.reviewed_at, None);
    }
);

// The same for an approver's `/breakglass deny` of a pending request.
on_both_forges!(
    an_approvers_deny_while_the_policies_are_invalid_still_closes_the_request,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        break_prod_policy(&s).await;
        s.note(pr, &s.people.carol, "/breakglass deny -- wrong account");
        s.settle().await;
        assert_eq!(s.request("r1").await.state.to_string(), "closed");
        assert_eq!(s.change(pr).state, "closed");
        s.expect_bot_comments(pr, &["🚫 Request denied by @carol"]);
    }
);

// An approval given while the policies on the default branch are invalid cannot be checked:
// it is answered, counts for nothing (nothing is merged), and its webhook is not retried
// without end (the bot settles). Once they are fixed, an approval counts again.
on_both_forges!(
    an_approval_while_the_policies_are_invalid_is_answered_and_merges_nothing,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        let good = break_prod_policy(&s).await;
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(!s.change(pr).merged);
        assert_eq!(
            s.next_bot_comment(pr),
            "⚠️ @carol, your approval is not counted: the policies on `main` are invalid, so nobody can be checked as an approver. Nothing is merged until they are fixed; approve again then."
        );
        s.edit_policy(&s.people.erin, "prod", |_| good.clone());
        s.settle().await;
        assert!(
            !s.change(pr).merged,
            "the unchecked approval stays uncounted"
        );
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.take_bot_comments(pr);
    }
);

// A request opened while the policies are invalid is told so (status `error`) and decided as
// soon as a push makes them valid again: its requester need not push.
on_both_forges!(
    a_request_opened_while_the_policies_are_invalid_is_decided_once_they_are_fixed,
    |s: Scenario| async move {
        let good = break_prod_policy(&s).await;
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(
            said.starts_with("⚠️ The policies on `main` are invalid, so no request can be decided")
                && said.ends_with(&format!(
                    "This request is decided once they are fixed (push to this {pr} if it is not).",
                    pr = s.pr()
                )),
            "{said}"
        );
        let head = s.change(pr).head_sha;
        assert_eq!(s.policy_status(&head).unwrap().0, "error");
        s.edit_policy(&s.people.erin, "prod", |_| good.clone());
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        assert_eq!(s.policy_status(&head).unwrap().0, "pending");
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(s.change(pr).merged);
        s.take_bot_comments(pr);
    }
);

// A fast-path label put on after the verdict, for a rule that does not apply (bob is on call
// but asks for more than the rule's hour): the reply says why, as it would at the opening.
on_both_forges!(
    a_fast_path_label_added_later_that_does_not_apply_is_explained,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.bob, "prod", "r1", &prod_request("2h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        s.label(pr, &s.people.bob, "sev1");
        s.settle().await;
        assert!(!s.change(pr).merged);
        let said = s.next_bot_comment(pr);
        assert!(said.contains("Fast path `sev1` does not apply:"), "{said}");
        // Labelled again (a second label): nothing new to say.
        s.label(pr, &s.people.bob, "customer-facing");
        s.settle().await;
        assert_eq!(s.take_bot_comments(pr), Vec::<String>::new());
    }
);

// An approver who quotes someone's command with HTML (a `<blockquote>` line, the command, the
// closing tag), as the forges render it inside the quote, approves nothing: what the quote
// holds is someone else's words.
on_both_forges!(
    a_command_quoted_with_html_approves_nothing,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(
            pr,
            &s.people.carol,
            "<blockquote>\n\n/breakglass approve\n\n</blockquote>\n\nDan pasted that in chat; why admin?",
        );
        s.settle().await;
        s.expect_no_bot_comment(pr);
        assert_eq!(s.request("r1").await.state, RequestState::Pending);
        assert!(!s.change(pr).merged);
    }
);

// A command written in an issue's or a request's description is no command (the bot reads
// comments, each with its author and time), but it is answered where it was written, once even
// when the opening is delivered again; it opens nothing and approves nothing.
on_both_forges!(
    a_command_in_a_description_is_answered_once_and_does_nothing,
    |s: Scenario| async move {
        let issue = s.open_issue_with(
            &s.people.alice,
            "Prod is down",
            "The database is on fire.\n/breakglass prod 1h admin -- fix the db",
        );
        s.settle().await;
        let told = |on: &str| {
            format!(
                "ℹ️ Commands in a description are not read, @alice: comment the `/breakglass` command on this {on} to use it."
            )
        };
        assert_eq!(s.take_bot_issue_comments(issue), vec![told("issue")]);
        assert!(s.changes().is_empty(), "nothing opened from a description");
        let opened = s
            .forge
            .deliveries()
            .into_iter()
            .find(|d| d.event == "issues" || d.event == "Issue Hook")
            .expect("the issue's opening was delivered");
        assert!(s.forge.redeliver(&opened.id));
        s.settle().await;
        s.expect_no_bot_issue_comment(issue); // said once

        // An approval written into a request's own description, by its requester.
        s.forge.push_files(
            REPO,
            "request-r1",
            &s.people.alice,
            &[("requests/prod/r1.yaml", prod_request("1h").as_str())],
            "request r1",
        );
        let pr = s.open_change_with(
            &s.people.alice,
            "request-r1",
            "Access request r1",
            "/breakglass approve",
        );
        s.settle().await;
        s.expect_bot_comments(
            pr,
            &["✅ **Request `r1` is allowed**", told(s.pr()).as_str()],
        );
        assert_eq!(s.request("r1").await.state, RequestState::Pending);
        assert!(!s.change(pr).merged);
    }
);

// GitHub only (GitLab's approvals carry no text): a command written in a review's text is
// answered, never met with silence; the review's own state still does what it does.
on_both_backends!(
    a_command_in_a_reviews_text_is_answered,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        let unread = "ℹ️ @carol, commands in a review's text are not read. Comment the `/breakglass` command on this PR itself (an approving review approves by itself).";
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.forge.review_with_body(
            REPO,
            pr,
            &s.people.carol,
            breakglass_test_forge::ReviewState::Commented,
            "/breakglass deny -- not justified",
        );
        s.settle().await;
        assert_eq!(s.next_bot_comment(pr), unread);
        assert_eq!(s.request("r1").await.state, RequestState::Pending);
        s.forge.review_with_body(
            REPO,
            pr,
            &s.people.carol,
            breakglass_test_forge::ReviewState::Approved,
            "/breakglass approve",
        );
        s.settle().await;
        assert_eq!(s.next_bot_comment(pr), unread);
        assert!(s.change(pr).merged, "the approving review approves");
        s.take_bot_comments(pr);
    }
);

// The same for a comment on a line of the diff (GitHub's `pull_request_review_comment`, a
// review's part): answered, and no approval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_in_an_inline_review_comment_is_answered() {
    let s = Scenario::start(Backend::Sqlite)
        .await
        .expect("SQLite is always there");
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
    let head = s.change(pr).head_sha;
    let at = s.forge.now().to_rfc3339();
    let carol = serde_json::json!({"login": "carol", "id": s.people.carol.id, "type": "User"});
    let body = serde_json::json!({
        "action": "created",
        "comment": {
            "id": 880_001u64, "pull_request_review_id": 880_000u64, "body": "/breakglass approve",
            "path": "requests/prod/r1.yaml", "commit_id": head, "user": carol,
            "created_at": at, "updated_at": at
        },
        "pull_request": {
            "number": pr,
            "user": {"login": "alice", "id": s.people.alice.id, "type": "User"},
            "head": {"sha": head, "ref": "request-r1", "repo": {"full_name": REPO}},
            "base": {"sha": "0000000000000000000000000000000000000000", "ref": "main", "repo": {"full_name": REPO}}
        },
        "repository": {"full_name": REPO, "default_branch": "main"},
        "sender": carol
    });
    let body = serde_json::to_vec(&body).unwrap();
    let url = s.webhook_url();
    let status = s
        .forge
        .send_raw_delivery(&url, "pull_request_review_comment", &body, SECRET)
        .await;
    assert!(status.is_some_and(|c| c < 300), "{status:?}");
    s.settle().await;
    assert_eq!(
        s.take_bot_comments(pr),
        [
            "ℹ️ @carol, commands in a review's text are not read. Comment the `/breakglass` command on this PR itself (an approving review approves by itself)."
        ]
    );
    assert!(!s.change(pr).merged);
}

// Many malformed commands in one comment get one reply that lists them, not one reply each
// (an outsider's comment of a hundred bad lines would otherwise make a hundred comments).
on_both_forges!(
    the_malformed_commands_of_one_comment_get_one_reply,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.take_bot_comments(pr);
        let lines: Vec<String> = (0..10)
            .map(|i| format!("/breakglass approve x{i}"))
            .collect();
        s.note(pr, &s.people.mallory, &lines.join("\n"));
        s.settle().await;
        let said = s.take_bot_comments(pr);
        assert_eq!(said.len(), 1, "{said:#?}");
        assert!(
            said[0].starts_with("⚠️ 10 lines of this comment are not commands:\n\n- "),
            "{}",
            said[0]
        );
        assert_eq!(said[0].matches("\n- ").count(), 10, "{}", said[0]);
        assert_eq!(said[0].matches("Usage: ").count(), 1, "{}", said[0]);
        assert_eq!(s.request("r1").await.state, RequestState::Pending);
    }
);

// GitHub only (its emoji are polled): a 👍 given while the policies are invalid waits, the PR
// is told why once (not at every poll), and the 👍 counts once a push fixes the policies.
on_both_backends!(
    a_reaction_while_the_policies_are_invalid_waits_for_them_and_then_counts,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        let good = break_prod_policy(&s).await;
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.emoji_now(pr, &s.people.carol, "+1");
        for _ in 0..4 {
            s.advance(TimeDelta::seconds(31));
            s.settle().await;
        }
        assert!(!s.change(pr).merged);
        let said = s.take_bot_comments(pr);
        assert_eq!(said.len(), 1, "told once: {said:#?}");
        assert!(
            said[0].starts_with("⚠️ The policies on `main` are invalid"),
            "{said:#?}"
        );
        s.edit_policy(&s.people.erin, "prod", |_| good.clone());
        s.settle().await;
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.take_bot_comments(pr);
    }
);

// carol's `/breakglass approve` is written while the only ask is alice's 30m; alice asks for
// 3h seconds later, and that delivery is handled first. The approval is of what carol could
// read: 30m (forge time on both sides).
on_both_forges!(
    an_approve_approves_only_an_extension_asked_before_it,
    |s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        let granted = s.request("r1").await.expires_at.unwrap();
        s.note(pr, &s.people.alice, "/breakglass extend 30m");
        s.settle().await;
        let asked = s.next_bot_comment(pr);
        assert!(asked.starts_with("⏳ @alice asks for 30m more"), "{asked}");
        s.forge.set_webhooks_paused(true);
        s.approve(pr, &s.people.carol);
        s.forge.advance_clock(TimeDelta::seconds(5));
        s.note(pr, &s.people.alice, "/breakglass extend 3h");
        let later = s
            .forge
            .deliveries()
            .into_iter()
            .rev()
            .find(|d| d.event == "issue_comment" || d.event == "Note Hook")
            .unwrap();
        assert!(s.forge.redeliver(&later.id));
        s.settle().await;
        s.forge.set_webhooks_paused(false);
        s.forge.flush_webhooks();
        s.settle().await;
        let extended = s.request("r1").await.expires_at.unwrap();
        assert_eq!(
            extended - granted,
            TimeDelta::minutes(30),
            "carol approved the only ask when she wrote: {:#?}",
            s.bot_comments(pr)
        );
        s.take_bot_comments(pr);
    }
);

// An approval of an asked extension while the policies are invalid gets a reply and changes
// nothing; its delivery is not retried without end (the bot settles).
on_both_forges!(
    an_extension_approved_while_the_policies_are_invalid_is_answered,
    |s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        s.note(pr, &s.people.alice, "/breakglass extend 30m");
        s.settle().await;
        s.take_bot_comments(pr);
        s.edit_policy(&s.people.erin, "prod", |p| {
            p.replace("approvals: 1", "approvals: [1")
        });
        s.settle().await;
        s.take_bot_comments(pr);
        let before = s.request("r1").await.expires_at;
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert_eq!(
            s.take_bot_comments(pr),
            [
                "⚠️ The policies on `main` are invalid, so no extension can be checked. Nothing changed; ask (or approve) again once they are fixed."
            ]
        );
        assert_eq!(s.request("r1").await.expires_at, before);
    }
);

// Two PRs left undecided while the policies are invalid; the fixing push's handling fails on
// reading the first (a 404 once). The second is decided all the same, and the first when the
// push's delivery is tried again.
on_both_forges!(
    one_pr_that_cannot_be_decided_again_does_not_keep_the_others_waiting,
    |s: Scenario| async move {
        let good = s.forge.file_on(REPO, "main", "policies/prod.yaml").unwrap();
        s.edit_policy(&s.people.erin, "prod", |p| {
            p.replace("approvals: 1", "approvals: [1")
        });
        s.settle().await;
        let one = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        let two = s.open_request(&s.people.bob, "prod", "r2", &prod_request("1h"));
        s.settle().await;
        for pr in [one, two] {
            let said = s.next_bot_comment(pr);
            assert!(
                said.starts_with("⚠️ The policies on `main` are invalid"),
                "{said}"
            );
        }
        s.expect_delivery_error("HTTP 404");
        s.fail_next(
            Route::Change,
            http::Method::GET,
            1,
            breakglass_test_forge::FailureKind::Status(404),
        );
        s.edit_policy(&s.people.erin, "prod", |_| good.clone());
        // The failed push delivery is retried with backoff: let the clocks run.
        for _ in 0..15 {
            s.forge.settle().await;
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            s.advance(TimeDelta::minutes(1));
        }
        s.settle().await;
        for pr in [one, two] {
            let said = s.take_bot_comments(pr);
            assert!(
                said.iter().any(|c| c.starts_with("✅ **Request")),
                "PR {pr} was told it is decided once the policies are fixed, and never was: {said:#?}; failures {:#?}",
                s.failures()
            );
        }
    }
);

// SPEC: the revert PR is "titled with the expiry time"; after an extension, with the new one
// (its body too), so that nobody takes the old time for the end or merges it then by hand.
on_both_forges!(
    an_extension_retitles_the_revert_pr_with_the_new_expiry,
    |s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        s.note(pr, &s.people.carol, "/breakglass extend 30m");
        s.settle().await;
        assert!(s.next_bot_comment(pr).starts_with("⏳ Extended"));
        let expires = breakglass::clock::iso(s.request("r1").await.expires_at.unwrap());
        let revert = s.change(s.revert_pr("r1").await);
        assert_eq!(revert.title, format!("breakglass: revoke r1 at {expires}"));
        assert!(
            revert.body.contains(&format!("at **{expires}**")),
            "{}",
            revert.body
        );
    }
);

/// alice's 1h prod request `r1`, approved by carol and dan where prod needs two; its PR.
async fn granted_by_two_approvers(s: &Scenario) -> u64 {
    s.prod_needs_two_approvals().await;
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.approve(pr, &s.people.carol);
    s.approve(pr, &s.people.dan);
    s.settle().await;
    assert!(s.change(pr).merged);
    pr
}

/// carol's `/breakglass extend 30m` on alice's 1h prod grant, changed by `withdraw` (deleted,
/// or edited into prose) before the bot handles it (its webhooks come late): nothing is
/// extended, and the reply says why.
async fn an_extension_withdrawn_before_it_is_read(s: &Scenario, withdraw: impl Fn(&Scenario, u64)) {
    let pr = s.granted("r1", "1h").await;
    let before = s.request("r1").await.expires_at.unwrap();
    s.forge.set_webhooks_paused(true);
    s.forge.advance_clock(TimeDelta::seconds(1));
    let id = s.note(pr, &s.people.carol, "/breakglass extend 30m");
    s.forge.advance_clock(TimeDelta::seconds(1));
    withdraw(s, id);
    s.forge.set_webhooks_paused(false);
    s.forge.flush_webhooks();
    s.settle().await;
    assert_eq!(s.request("r1").await.expires_at.unwrap(), before);
    assert_eq!(
        s.take_bot_comments(pr),
        [
            "ℹ️ @carol's `/breakglass extend 30m` was deleted or edited before breakglass read it again: nothing was extended."
        ]
    );
}

// An approval withdrawn before it is acted on no longer counts, for an extension as for a
// merge: one approver's `/breakglass extend` is read again before it extends.
on_both_forges!(
    a_deleted_extension_approval_extends_nothing,
    |s: Scenario| async move {
        an_extension_withdrawn_before_it_is_read(&s, |s, id| {
            s.forge.delete_comment(REPO, id, &s.people.carol)
        })
        .await;
    }
);

on_both_forges!(
    an_extension_approval_edited_away_extends_nothing,
    |s: Scenario| async move {
        an_extension_withdrawn_before_it_is_read(&s, |s, id| {
            s.forge
                .edit_comment(REPO, id, &s.people.carol, "never mind, wrong PR")
        })
        .await;
    }
);

// A requester's ask deleted before an approver's `/breakglass approve` is not approved: on
// GitLab too, which sends no webhook when a note is deleted (the ask is read again).
on_both_forges!(
    a_deleted_extension_ask_is_not_approved_later,
    |s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        let before = s.request("r1").await.expires_at.unwrap();
        s.forge.advance_clock(TimeDelta::seconds(1));
        let ask = s.note(pr, &s.people.alice, "/breakglass extend 3h");
        s.settle().await;
        assert!(
            s.next_bot_comment(pr)
                .starts_with("⏳ @alice asks for 3h more.")
        );
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.forge.delete_comment(REPO, ask, &s.people.alice);
        s.settle().await;
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert_eq!(s.request("r1").await.expires_at.unwrap(), before);
        assert!(
            s.next_bot_comment(pr).starts_with("ℹ️ Nothing to approve"),
            "{:#?}",
            s.bot_comments(pr)
        );
    }
);

// Extension commands are taken on the revert PR too, and their approvals count there: on
// GitLab a note is found only on its own merge request, so they are read on the revert's.
on_both_forges!(
    extension_approvals_on_the_revert_pr_count,
    |s: Scenario| async move {
        let pr = granted_by_two_approvers(&s).await;
        let revert = s.revert_pr("r1").await;
        let before = s.request("r1").await.expires_at.unwrap();
        s.note(revert, &s.people.carol, "/breakglass extend 1h");
        s.settle().await;
        assert_eq!(
            s.take_bot_comments(revert),
            [
                "👍 @carol approves an extension by 1h (1 of 2); another approver's `/breakglass approve` (or `/breakglass extend 1h`) extends it."
            ]
        );
        s.note(revert, &s.people.dan, "/breakglass extend 1h");
        s.settle().await;
        assert_eq!(
            s.request("r1").await.expires_at.unwrap() - before,
            TimeDelta::hours(1)
        );
        let said = s.take_bot_comments(pr);
        assert!(said.last().unwrap().starts_with("⏳ Extended"), "{said:#?}");
    }
);

// One comment asks for at most one extension, and a second `/breakglass extend` in it is
// answered, not dropped in silence.
on_both_forges!(
    a_second_extend_in_one_comment_is_answered,
    |s: Scenario| async move {
        let staging = "environment: staging\nrole: admin\nduration: 2h\nreason: load test\n";
        let pr = s.open_request(&s.people.alice, "staging", "st1", staging);
        s.settle().await;
        s.take_bot_comments(pr);
        let before = s.request("st1").await.expires_at.unwrap();
        s.note(
            pr,
            &s.people.alice,
            "/breakglass extend 1h\n/breakglass extend 2h",
        );
        s.settle().await;
        assert_eq!(
            s.request("st1").await.expires_at.unwrap() - before,
            TimeDelta::hours(1)
        );
        let said = s.take_bot_comments(pr);
        assert!(
            said.iter().any(|c| c.starts_with("⏳ Extended")),
            "{said:#?}"
        );
        assert!(
            said.iter().any(
                |c| c.contains("only the first `/breakglass extend <duration>` line was taken")
            ),
            "{said:#?}"
        );
    }
);

// Two approvers answering one ask, as the bot's reply invites: the first extends it, the
// second (made before the bot said the new expiry) is of the expiry before and extends
// nothing; the reply says so. Judged on the forge's times of the comment and of that note.
on_both_forges!(
    two_approvers_answering_one_extension_ask_extend_it_once,
    |s: Scenario| async move {
        let pr = s.granted("r1", "1h").await;
        let before = s.request("r1").await.expires_at.unwrap();
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(pr, &s.people.alice, "/breakglass extend 1h");
        s.settle().await;
        assert!(
            s.next_bot_comment(pr)
                .starts_with("⏳ @alice asks for 1h more.")
        );
        s.forge.set_webhooks_paused(true);
        s.forge.advance_clock(TimeDelta::seconds(5));
        s.note(pr, &s.people.carol, "/breakglass extend 1h");
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(pr, &s.people.dan, "/breakglass extend 1h");
        s.forge.set_webhooks_paused(false);
        s.forge.flush_webhooks();
        s.settle().await;
        let extended = s.request("r1").await.expires_at.unwrap();
        assert_eq!(extended - before, TimeDelta::hours(1));
        let said = s.take_bot_comments(pr);
        assert!(said[0].starts_with("⏳ Extended"), "{said:#?}");
        assert_eq!(
            said[1..],
            [format!(
                "ℹ️ @dan's `/breakglass extend 1h` was made before breakglass said the grant now expires at **{}** (or too close to it to tell), so it was of the expiry before, which is extended already: it extends nothing. To extend further, comment it again.",
                breakglass::clock::iso(extended)
            )]
        );
        // Made after that note, it is an extension of its own.
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(pr, &s.people.dan, "/breakglass extend 1h");
        s.settle().await;
        assert_eq!(
            s.request("r1").await.expires_at.unwrap() - extended,
            TimeDelta::hours(1)
        );
        assert!(s.next_bot_comment(pr).starts_with("⏳ Extended"));
    }
);

// A request by comment without a duration takes the policy's `default_duration` (2h for
// staging), as a request file does, and says it in the file it writes; a word that is neither
// a command nor an environment is answered with the environments there are, and opens nothing.
on_both_forges!(
    a_request_by_comment_without_a_duration_takes_the_policy_default,
    |s: Scenario| async move {
        let issue = s.open_issue(&s.people.alice, "load test");
        s.note_on_issue(issue, &s.people.alice, "/breakglass frobnicate");
        s.settle().await;
        assert!(s.changes().is_empty(), "nothing opened");
        assert_eq!(
            s.next_bot_issue_comment(issue),
            "⚠️ `frobnicate` is neither a command nor an environment with a policy (environments: `network`, `prod`, `staging`). Write `/breakglass <environment> [duration] [role] [-- reason]` to ask for access, or `/breakglass help` to see every command."
        );
        s.note_on_issue(issue, &s.people.alice, "/breakglass qa 1h -- load test");
        s.settle().await;
        assert!(s.changes().is_empty(), "nothing opened");
        let said = s.next_bot_issue_comment(issue);
        assert!(
            said.starts_with(
                "❌ **Request `qa/admin` is denied**: no policy names its environment."
            ) && said.contains(
                "environment `qa` has no policy; known environments: `network`, `prod`, `staging`"
            ),
            "{said}"
        );
        s.note_on_issue(issue, &s.people.alice, "/breakglass staging -- load test");
        s.settle().await;
        let opened = s.next_bot_issue_comment(issue);
        assert!(
            opened.starts_with("📝 @alice, your request is "),
            "{opened}"
        );
        let record = s.request("20261126-0214-alice-staging").await;
        assert_eq!(record.duration_secs, 2 * 3600);
        let file = s
            .forge
            .file_on(
                REPO,
                "main",
                "requests/staging/20261126-0214-alice-staging.yaml",
            )
            .expect("self-service: merged at once");
        assert!(file.contains("duration: 2h\n"), "{file}");
        let pr = record.pr_number;
        s.expect_bot_comments(pr, &["✅", "🔓 **Access granted.**"]);
        assert_eq!(
            record.expires_at.zip(record.granted_at).map(|(e, g)| e - g),
            Some(chrono::TimeDelta::hours(2))
        );
    }
);

// SPEC step 7: an extension needs "approval again unless a fast-path rule allows it". An
// approved grant is extended by its requester alone while a fast-path rule of the policy
// applies to it now (the incident label on the PR, on call, within the rule's hours), and that
// extension is reviewed after the fact: an approver's emoji from before it does not review it.
on_both_forges!(
    an_approved_grant_is_extended_alone_on_a_fast_path_and_the_extension_is_reviewed_after_the_fact,
    |s: Scenario| async move {
        let erin = &s.people.erin;
        let yaml = "environment: prod\nrole: admin\nduration: 30m\nreason: incident INC-9 payments down\nticket: INC-9\n";
        let pr = s.open_request(erin, "prod", "r-approved", yaml);
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r-approved` is allowed**"]);
        // No sev1 label yet: carol approves with an emoji, and it is granted as approved.
        s.emoji(pr, &s.people.carol, "+1");
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        s.expect_bot_comments(pr, &["🔓 **Access granted.** @erin"]);
        let granted = s.request("r-approved").await;
        assert_eq!(granted.fast_path_rule, None);
        let expires = granted.expires_at.unwrap();

        // Without the incident label, still approval again.
        s.note(pr, erin, "/breakglass extend 15m");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(said.contains("It needs approval"), "{said}");
        assert_eq!(s.request("r-approved").await.expires_at, Some(expires));

        // The incident is declared: the sev1 rule allows erin 15m more on her own.
        s.label(pr, &s.people.carol, "sev1");
        s.note(pr, erin, "/breakglass extend 15m");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(said.starts_with("⏳ Extended"), "{said}");
        assert!(said.contains("Given on the fast path `sev1`"), "{said}");
        let extended = s.request("r-approved").await;
        assert_eq!(extended.expires_at, Some(expires + TimeDelta::minutes(15)));
        assert_eq!(
            extended.fast_path_rule.as_ref().map(|r| r.as_str()),
            Some("sev1")
        );
        assert!(extended.review_due_at.is_some() && extended.reviewed_at.is_none());
        assert!(
            s.labels(pr).iter().any(|l| l == "breakglass/needs-review"),
            "{:?}",
            s.labels(pr)
        );
        let logged = s.events("r-approved", "extend").await;
        assert_eq!(logged.last().unwrap().data["fast_path"], "sev1");

        // carol's emoji of the approval is older than the extension: it reviews nothing.
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        assert_eq!(s.request("r-approved").await.reviewed_at, None);
        s.note(pr, &s.people.carol, "/breakglass reviewed");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(said.contains("After-the-fact review by @carol"), "{said}");
        assert!(s.request("r-approved").await.reviewed_at.is_some());
        assert!(!s.labels(pr).iter().any(|l| l == "breakglass/needs-review"));
    }
);

/// Writes a hold of 20 more minutes on request `id`, as another replica judging an extension of
/// it does, at `at` (the bot's clock).
async fn hold_an_extension(s: &Scenario, id: &str, at: chrono::DateTime<chrono::Utc>) {
    let mut record = s.request(id).await;
    let mut decision = record.decision.clone().unwrap();
    decision.extension_hold = Some(breakglass::store::ExtensionHold { secs: 1200, at });
    record.decision = Some(decision);
    let now = record.updated_at;
    s.store.update_request(&mut record, now).await.unwrap();
}

/// erin's sev1 fast-path grant `id` for `duration`; its PR.
async fn erin_sev1_for(s: &Scenario, id: &str, duration: &str) -> u64 {
    let erin = &s.people.erin;
    let yaml = format!(
        "environment: prod\nrole: admin\nduration: {duration}\nreason: incident INC-9 payments down\nticket: INC-9\n"
    );
    let (path, branch) = (format!("requests/prod/{id}.yaml"), format!("sev1-{id}"));
    s.forge
        .push_files(REPO, &branch, erin, &[(path.as_str(), &yaml)], "request");
    let pr = s.open_labelled_change(erin, &branch, "sev1 access", "sev1");
    s.settle().await;
    s.expect_bot_comments(pr, &["🔓 **Access granted.** @erin"]);
    pr
}

// Two fast-path extensions of two of erin's grants judged at once (two replicas; a helper review
// got 80 minutes of sev1 access out of a 1h rule that way): each writes a hold on its grant
// before it is judged, and each judgment counts the other's hold. Here the other replica's
// judgment is the hold written on r1; erin's extension of r2 then counts r1 with it, and is
// refused as past the rule. A hold older than two minutes (a crash mid-judgment) counts no more.
on_both_forges!(
    an_extension_judged_beside_another_of_the_requesters_grants_counts_it,
    |s: Scenario| async move {
        use breakglass::clock::Clock as _;
        let erin = &s.people.erin;
        let _r1 = erin_sev1_for(&s, "r1", "20m").await;
        let r2 = erin_sev1_for(&s, "r2", "20m").await;
        hold_an_extension(&s, "r1", s.clock.now()).await;
        let before = s.request("r2").await.expires_at;
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(r2, erin, "/breakglass extend 20m");
        s.settle().await;
        let said = s.next_bot_comment(r2);
        assert!(said.contains("already holds `prod` access"), "{said}");
        assert_eq!(s.request("r2").await.expires_at, before);
        assert_eq!(s.request("r2").await.decision.unwrap().extension_hold, None);
        // The same hold, three minutes old: not counted, and the extension is given.
        hold_an_extension(&s, "r1", s.clock.now() - TimeDelta::minutes(3)).await;
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(r2, erin, "/breakglass extend 20m");
        s.settle().await;
        let said = s.next_bot_comment(r2);
        assert!(said.starts_with("⏳ Extended"), "{said}");
        assert_eq!(
            s.request("r2").await.expires_at,
            before.map(|at| at + TimeDelta::minutes(20))
        );
    }
);

// A fast-path grant whose review is still open, extended alone on the fast path: the review now
// covers the extension, so a review said before the ask closes nothing. An emoji the poll had
// not seen yet (helper review: carol's 👍 of the 30m grant closed the review of the hour), and
// a `/breakglass reviewed` whose delivery came after the extension's, which is answered. One
// said after the ask closes it.
on_both_forges!(
    an_open_review_covers_a_fast_path_extension_and_a_review_from_before_its_ask_closes_nothing,
    |s: Scenario| async move {
        let (erin, carol) = (&s.people.erin, &s.people.carol);
        let (pr, granted) = erin_granted_sev1(&s, "r-open").await;
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.emoji(pr, carol, "+1"); // of the 30m grant
        s.forge.set_webhooks_paused(true);
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(pr, carol, "/breakglass reviewed"); // of the 30m grant too, delivered late
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(pr, erin, "/breakglass extend 15m");
        // GitLab's emoji event, then the extension, then the command.
        common::late::deliver_first(&s, |d| {
            !String::from_utf8_lossy(&d.body).contains("/breakglass reviewed")
        })
        .await;
        s.forge.set_webhooks_paused(false);
        s.forge.flush_webhooks();
        s.settle().await;
        s.advance(TimeDelta::seconds(31)); // GitHub's reaction poll
        s.settle().await;
        let record = s.request("r-open").await;
        assert_eq!(record.expires_at, Some(granted + TimeDelta::minutes(15)));
        assert!(
            record.reviewed_at.is_none(),
            "a review from before the extension's ask closed its review: {:#?}",
            s.bot_comments(pr)
        );
        assert!(s.labels(pr).iter().any(|l| l == "breakglass/needs-review"));
        let said = s.take_bot_comments(pr);
        let noun = if s.dialect == Dialect::GitHub {
            "PR"
        } else {
            "MR"
        };
        let again = format!(
            "⏱️ @carol, your review came before this grant's latest extension was asked for (or within the same second), so it does not cover the extension. Please review it again: `/breakglass reviewed`, or a new approval emoji on this {noun}."
        );
        assert!(said.contains(&again), "{said:#?}");
        s.note(pr, carol, "/breakglass reviewed");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(said.contains("After-the-fact review by @carol"), "{said}");
        assert!(s.request("r-open").await.reviewed_at.is_some());
    }
);

// A fast-path grant whose review is closed, extended on the fast path again: the extension
// was not reviewed, so its review opens again.
on_both_forges!(
    a_reviewed_fast_path_grant_extended_alone_is_reviewed_again,
    |s: Scenario| async move {
        let erin = &s.people.erin;
        let (pr, granted) = erin_granted_sev1(&s, "r-again").await;
        s.note(pr, &s.people.carol, "/breakglass reviewed");
        s.settle().await;
        s.next_bot_comment(pr);
        assert!(s.request("r-again").await.reviewed_at.is_some());
        s.note(pr, erin, "/breakglass extend 15m");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(said.contains("Given on the fast path `sev1`"), "{said}");
        let record = s.request("r-again").await;
        assert_eq!(record.expires_at, Some(granted + TimeDelta::minutes(15)));
        assert!(record.reviewed_at.is_none() && record.reviewed_by.is_none());
        assert!(s.labels(pr).iter().any(|l| l == "breakglass/needs-review"));
    }
);

// A push of a request file that does not parse stores no decision: the request keeps the
// version it was decided on. An approval then finds another head at the merge's last read,
// which cannot be decided: the merge is refused and the request is pending again (before the
// fix that decides unheard pushes learned this, the request stayed approved on a head it no
// longer had, silently, decided again at every reconciliation pass).
on_both_forges!(
    an_approval_after_a_push_that_cannot_be_decided_is_refused_not_left_approved,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        s.forge.advance_clock(TimeDelta::seconds(2));
        s.forge.push_files(
            REPO,
            "request-r1",
            &s.people.alice,
            &[("requests/prod/r1.yaml", "environment: prod\nrole:admin\n")],
            "broken",
        );
        s.settle().await;
        s.take_bot_comments(pr); // the file's refusal
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(!s.change(pr).merged);
        let said = s.take_bot_comments(pr);
        assert!(
            said.iter()
                .any(|c| c.starts_with("⚠️ Not merged: the pull request's head moved to ")),
            "{said:#?}"
        );
        assert_eq!(s.request("r1").await.state, RequestState::Pending);
        s.advance(TimeDelta::minutes(10));
        s.reconcile_now().await;
        assert_eq!(s.request("r1").await.state, RequestState::Pending);
        s.expect_no_bot_comment(pr);
    }
);

// An approver whose one comment both approves and denies (a slip, or a quoted command left
// above their own) is told so; neither is taken: the request stays pending, nothing merges,
// and a later approval works.
on_both_forges!(
    a_comment_that_both_approves_and_denies_takes_neither_and_says_so,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(
            pr,
            &s.people.carol,
            "/breakglass approve\n/breakglass deny wrong env",
        );
        s.settle().await;
        s.expect_bot_comments(
            pr,
            &["⚠️ This comment both approves and denies (`/breakglass approve` and `/breakglass deny`), so breakglass took neither. Comment again with the one you mean."],
        );
        assert_eq!(s.request("r1").await.state, RequestState::Pending);
        assert!(!s.change(pr).merged);
        assert_eq!(s.change(pr).state, "open");
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(pr, &s.people.carol, "/breakglass approve");
        s.settle().await;
        s.expect_bot_comments(pr, &["🔓"]);
        assert!(s.change(pr).merged);
    }
);

// Commands on a request PR whose file the bot refused (here, a duration that does not parse)
// point to that refusal, and it is not said again: each command used to be told "this is not
// a request PR" after the refusal was posted once more.
on_both_forges!(
    commands_on_a_pr_whose_request_was_refused_point_to_the_refusal_once,
    |s: Scenario| async move {
        let pr = s.open_request(
            &s.people.alice,
            "prod",
            "broken",
            "environment: prod\nrole: admin\nduration: 2 hours\nreason: x\n",
        );
        s.settle().await;
        s.expect_bot_comments(
            pr,
            &["❌ **`requests/prod/broken.yaml` is not a valid request**"],
        );
        let noun = s.pr();
        let pointer = |verb: &str| {
            format!(
                "`/breakglass {verb}` needs a request breakglass could read, and this {noun}'s was refused: breakglass's comment above says why and what to do."
            )
        };
        for (who, verb) in [
            (&s.people.carol, "approve"),
            (&s.people.alice, "status"),
            (&s.people.carol, "approve"),
        ] {
            s.note(pr, who, &format!("/breakglass {verb}"));
            s.settle().await;
            assert_eq!(s.take_bot_comments(pr), [pointer(verb)]);
        }
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert_eq!(s.take_bot_comments(pr), [pointer("approve")]);
        assert!(!s.change(pr).merged);
    }
);

// GitLab: an approver's 👍 on breakglass's comment (its verdict) instead of on the MR approves
// nothing and is answered with where it counts; the requester's and an outsider's get nothing,
// so that nobody else's emoji makes the bot talk. (GitHub sends no event for a reaction on a
// comment; there the verdict says where to react.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approvers_emoji_on_the_bots_comment_is_answered_with_where_it_counts() {
    let s = Scenario::on_gitlab().await;
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
    let verdict = s
        .forge
        .gl_notes(REPO, breakglass_test_forge::Noteable::MergeRequest(pr))
        .into_iter()
        .find(|note| note.body.starts_with("✅"))
        .expect("the verdict note");
    for who in [&s.people.mallory, &s.people.alice] {
        s.forge.gl_award_note(REPO, verdict.id, who, "thumbsup");
    }
    s.settle().await;
    s.expect_no_bot_comment(pr);
    s.forge
        .gl_award_note(REPO, verdict.id, &s.people.carol, "thumbsup");
    s.settle().await;
    s.expect_bot_comments(
        pr,
        &["@carol, your `:thumbsup:` is on breakglass's comment, and an emoji there approves nothing. Put it on the MR itself (below its description), or use the **Approve** button, or `/breakglass approve`."],
    );
    assert_eq!(s.request("r1").await.state, RequestState::Pending);
    assert!(!s.change(pr).merged);
    s.approve(pr, &s.people.carol);
    s.settle().await;
    assert!(s.change(pr).merged, "an emoji on the MR itself approves");
    s.take_bot_comments(pr);
}

// GitHub sends no event for a reaction, so the poll reads those on breakglass's latest comment
// beside the PR's: an approver's 👍 there (on the verdict that asks for it, the nearest post)
// approves nothing and is answered once with where it counts; the requester's, an outsider's
// and another emoji get nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_github_an_approvers_emoji_on_the_bots_latest_comment_is_answered_with_where_it_counts()
{
    let s = Scenario::start(Backend::Sqlite).await.unwrap();
    let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
    s.settle().await;
    s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
    let verdict = latest_bot_comment_id(&s, pr);
    s.forge
        .react_comment(REPO, verdict, &s.people.mallory, "+1");
    s.forge.react_comment(REPO, verdict, &s.people.alice, "+1");
    s.forge
        .react_comment(REPO, verdict, &s.people.carol, "heart");
    poll(&s).await;
    s.expect_no_bot_comment(pr);
    s.forge.react_comment(REPO, verdict, &s.people.carol, "+1");
    poll(&s).await;
    s.expect_bot_comments(
        pr,
        &["@carol, your `:+1:` is on breakglass's comment, and an emoji there approves nothing. Put it on the PR itself (its description at the top), or use an approving review, or `/breakglass approve`."],
    );
    poll(&s).await;
    s.expect_no_bot_comment(pr); // said once
    assert_eq!(s.request("r1").await.state, RequestState::Pending);
    assert!(!s.change(pr).merged);
    s.emoji(pr, &s.people.carol, "+1");
    poll(&s).await;
    assert!(s.change(pr).merged, "a reaction on the PR itself approves");
    s.take_bot_comments(pr);
}

// The same for the after-the-fact review of a fast-path grant: a 👍 on the grant's comment
// reviews nothing, and the answer says what does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_github_an_approvers_emoji_on_the_grant_comment_is_answered_and_reviews_nothing() {
    let s = Scenario::start(Backend::Sqlite).await.unwrap();
    let (pr, _) = erin_granted_sev1(&s, "r-sev1").await;
    let granted = latest_bot_comment_id(&s, pr);
    s.forge.react_comment(REPO, granted, &s.people.carol, "+1");
    poll(&s).await;
    s.expect_bot_comments(
        pr,
        &["@carol, your `:+1:` is on breakglass's comment, and an emoji there reviews nothing. Put it on the PR itself (its description at the top), or use `/breakglass reviewed`."],
    );
    assert!(s.request("r-sev1").await.reviewed_at.is_none());
    s.emoji(pr, &s.people.carol, "+1");
    poll(&s).await;
    assert!(
        s.request("r-sev1").await.reviewed_at.is_some(),
        "an emoji on the PR reviews"
    );
    s.take_bot_comments(pr);
}

/// The id of breakglass's latest comment on `pr` (GitHub).
fn latest_bot_comment_id(s: &Scenario, pr: u64) -> u64 {
    s.forge
        .comments(REPO, pr)
        .into_iter()
        .rfind(|c| c.user_id == s.people.bot.id)
        .expect("a comment of the bot's")
        .id
}

// The requester's own deny (a withdrawal) written with an approve (which never counts for the
// requester) is clear: the request is withdrawn, and the approve answered as it always is.
on_both_forges!(
    a_requesters_deny_beside_an_approve_still_withdraws,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(
            pr,
            &s.people.alice,
            "/breakglass deny changed my mind\n/breakglass approve",
        );
        s.settle().await;
        let said = s.take_bot_comments(pr);
        assert!(
            !said.iter().any(|c| c.contains("took neither")),
            "{said:#?}"
        );
        assert_ne!(
            s.request("r1").await.state,
            RequestState::Pending,
            "{said:#?}"
        );
        assert!(!s.change(pr).merged);
    }
);

// A refusal is said again when the version refused comes back after another refusal: the
// requester pushes error B over error A, then A again with the push's webhook lost; a command
// decides the head again and says A's refusal (the latest above was B's), then points to it.
on_both_forges!(
    a_refusal_pushed_back_after_another_is_said_again_when_a_command_finds_it,
    |s: Scenario| async move {
        const BAD_A: &str = "environment: prod\nrole: admin\nduration: 2 hours\nreason: x\n";
        const BAD_B: &str = "environment: prod\nrole: admin\nduration: 7 weeks\nreason: x\n";
        let file = "requests/prod/broken.yaml";
        let pr = s.open_request(&s.people.alice, "prod", "broken", BAD_A);
        s.settle().await;
        let [refused_a] = <[String; 1]>::try_from(s.take_bot_comments(pr)).unwrap();
        assert!(refused_a.starts_with("❌"), "{refused_a}");
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.forge.push_files(
            REPO,
            "request-broken",
            &s.people.alice,
            &[(file, BAD_B)],
            "b",
        );
        s.settle().await;
        let [refused_b] = <[String; 1]>::try_from(s.take_bot_comments(pr)).unwrap();
        assert!(
            refused_b.starts_with("❌") && refused_b != refused_a,
            "{refused_b}"
        );
        s.forge.set_webhooks_paused(true);
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.forge.push_files(
            REPO,
            "request-broken",
            &s.people.alice,
            &[(file, BAD_A)],
            "a again",
        );
        s.forge.set_webhooks_paused(false); // that push's webhook was lost
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(pr, &s.people.carol, "/breakglass status");
        s.settle().await;
        let said = s.take_bot_comments(pr);
        assert_eq!(said.len(), 2, "{said:#?}");
        assert_eq!(said[0], refused_a);
        assert!(
            said[1].starts_with("`/breakglass status` needs a request"),
            "{said:#?}"
        );
    }
);

/// How an extension's ask ends: the emoji way to approve it, on the grant's change request
/// `pr` on this forge (`react` or `reacts`, as many approvers are needed).
fn or_react(s: &Scenario, pr: u64, verb: &str) -> String {
    let (emoji, change) = match s.dialect {
        Dialect::GitHub => ("+1", format!("PR #{pr}")),
        Dialect::GitLab => ("thumbsup", format!("MR !{pr}")),
    };
    format!(
        "or {verb} with `:{emoji}:` on {change} itself after this ask (an emoji put on before it approved something else)."
    )
}
