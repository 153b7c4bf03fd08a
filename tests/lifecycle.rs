//! The lifecycle as users live it: a request PR, an approval, the merge with trailers, the
//! grant, the expiry comment, the revert PR, and its merge at the TTL.

mod common;

use breakglass_test_forge::{FileChange, Noteable};
use chrono::TimeDelta;
use common::*;

on_both_forges!(
    reaction_approval_grants_and_revokes_at_ttl,
    |s: Scenario| async move {
        let alice = &s.people.alice;
        let pr = s.open_request(
            alice,
            "prod",
            "20261126-0214-alice-prod",
            &prod_request("1h"),
        );
        s.settle().await;
        // Each forge's own words: GitLab's award is `thumbsup`, its approval the Approve button.
        let ways = match s.dialect {
            Dialect::GitHub => {
                "a `:+1:` reaction on the PR itself (its description at the top, not this comment), an approving review"
            }
            Dialect::GitLab => {
                "a `:thumbsup:` emoji on the MR itself (below its description, not on this comment), the **Approve** button"
            }
        };
        assert_eq!(
            s.next_bot_comment(pr),
            format!(
                "✅ **Request `20261126-0214-alice-prod` is allowed** by the `prod` policy: @alice asks for `prod/admin` for 1h.\n\nNeeds **1** approval(s) from @acme/sre-leads, @carol. Approve with {ways}, or `/breakglass approve`. The requester's own approval never counts, and a push voids earlier approvals."
            )
        );
        let head = s.change(pr).head_sha;
        // Pending until approved, so that a required status check stops a hand merge.
        assert_eq!(
            s.policy_status(&head),
            Some(("pending".into(), "allowed: needs 1 approval(s)".into()))
        );

        // carol approves with a 👍; GitHub sends no webhook for it, the poll finds it.
        s.advance(TimeDelta::seconds(5));
        s.emoji_now(pr, &s.people.carol, "+1");
        s.advance(TimeDelta::seconds(30));
        s.settle().await;

        let merged = s.change(pr);
        assert!(merged.merged, "the request PR is merged");
        let log = s.forge.log(REPO, "main");
        let merge = log
            .iter()
            .find(|c| Some(&c.sha) == merged.merge_commit_sha.as_ref())
            .expect("merge commit on main");
        assert_eq!(merge.parents.len(), 2, "a merge commit, never a squash");
        for trailer in [
            "Breakglass-Request: 20261126-0214-alice-prod",
            "Breakglass-Requester: alice",
            "Breakglass-Approved-By: carol",
            "Breakglass-Expires: 2026-11-26T03:14:35Z",
        ] {
            assert!(
                merge.message.contains(trailer),
                "missing {trailer} in {}",
                merge.message
            );
        }
        let record = s.request("20261126-0214-alice-prod").await;
        let revert = record.revert_pr_number.expect("a revert PR");
        assert_eq!(revert, 2, "the revert PR");
        insta::allow_duplicates! {
        insta::assert_snapshot!(s.github_words(&s.next_bot_comment(pr)), @"
        🔓 **Access granted.** @alice has `prod/admin` until **2026-11-26T03:14:35Z** (in 1h).

        | | |
        |---|---|
        | request | `20261126-0214-alice-prod` |
        | approved by | @carol |
        | reason | `incident: INC-1234 checkout DB failover` |
        | ticket | INC-1234 |
        | revert | a revert PR follows this comment; breakglass merges it at expiry |

        `/breakglass revoke` ends it now · `/breakglass extend 30m` asks for more time · `/breakglass status`
        ")
        }
        // The revert, opened right after that comment, names the request it ends.
        assert!(s.change(revert).body.contains(&s.change_ref(pr)));
        let revert_pr = s.change(revert);
        assert_eq!(
            revert_pr.title,
            "breakglass: revoke 20261126-0214-alice-prod at 2026-11-26T03:14:35Z"
        );
        assert_eq!(revert_pr.state, "open");
        assert!(
            s.forge
                .file_on(REPO, "main", "requests/prod/20261126-0214-alice-prod.yaml")
                .is_some(),
            "active grants are listed on main"
        );

        // One minute before the TTL nothing happens; at the TTL the revert is merged.
        s.advance(TimeDelta::minutes(59));
        s.settle().await;
        assert!(!s.change(revert).merged);
        insta::allow_duplicates! {
        insta::assert_snapshot!(s.next_bot_comment(pr), @"⏰ @alice, your `prod/admin` access expires at **2026-11-26T03:14:35Z** (in 1m). `/breakglass extend 30m` asks for more time; `/breakglass revoke` ends it now.")
        }
        s.advance(TimeDelta::minutes(1));
        s.settle().await;
        let revert_pr = s.change(revert);
        assert!(revert_pr.merged, "the revert PR is merged at the TTL");
        let log = s.forge.log(REPO, "main");
        let revert_merge = log
            .iter()
            .find(|c| Some(&c.sha) == revert_pr.merge_commit_sha.as_ref())
            .unwrap();
        assert!(
            revert_merge
                .message
                .contains("Breakglass-Revokes: 20261126-0214-alice-prod"),
            "{}",
            revert_merge.message
        );
        assert!(
            revert_merge
                .message
                .contains("Breakglass-Revoked-Reason: ttl"),
            "{}",
            revert_merge.message
        );
        assert!(
            s.forge
                .files_on(REPO, "main")
                .iter()
                .all(|f| !f.starts_with("requests/")),
            "requests/ lists exactly the active grants: none"
        );
        insta::allow_duplicates! {
        insta::assert_snapshot!(s.github_words(&s.next_bot_comment(pr)), @"🔒 **Access revoked** at 2026-11-26T03:14:35Z: @alice no longer has `prod/admin` (it expired). Revert PR #2 merged.")
        }
    }
);

on_both_forges!(
    slash_command_opens_the_pr_and_approve_comment_merges,
    |s: Scenario| async move {
        let carol = &s.people.carol;
        let issue = s.alice_asks_by_comment();
        s.settle().await;
        let reply = s.next_bot_issue_comment(issue);
        assert!(reply.starts_with("📝 @alice, your request is "), "{reply}");
        let pr = s
            .changes()
            .into_iter()
            .find(|p| p.user == s.people.bot.login)
            .expect("the bot opened a PR");
        let file = s
            .forge
            .file_on(
                REPO,
                &pr.head_ref,
                "requests/prod/20261126-0214-alice-prod.yaml",
            )
            .expect("the request file");
        assert!(file.contains("requester: alice"), "{file}");
        assert!(
            file.contains("ticket: INC-77"),
            "the ticket is picked out of the reason: {file}"
        );
        assert!(
            s.next_bot_comment(pr.number)
                .starts_with("✅ **Request `20261126-0214-alice-prod` is allowed**")
        );

        s.approve(pr.number, carol);
        s.settle().await;
        let pr = s.change(pr.number);
        assert!(pr.merged, "merged on carol's approval");
        let merge = s.merge_commit(pr.number);
        assert!(
            merge.message.contains("Breakglass-Requester: alice"),
            "the commenter is the requester: {}",
            merge.message
        );
        assert!(
            merge.message.contains("Breakglass-Approved-By: carol"),
            "{}",
            merge.message
        );
        s.expect_bot_comments(pr.number, &["🔓 **Access granted.** @alice"]);
    }
);

on_both_forges!(approving_review_merges, |s: Scenario| async move {
    let pr = s.open_request(&s.people.alice, "prod", "r-review", &prod_request("30m"));
    s.settle().await;
    s.by(&s.people.dan).approve_button(pr);
    s.settle().await;
    assert!(s.change(pr).merged);
    s.expect_bot_comments(
        pr,
        &[
            "✅ **Request `r-review` is allowed**",
            "🔓 **Access granted.**",
        ],
    );
    assert_eq!(
        s.request("r-review")
            .await
            .approved_by
            .unwrap()
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>(),
        ["dan"]
    );
});

on_both_forges!(
    fast_path_merges_at_once_and_is_reviewed_after,
    |s: Scenario| async move {
        let bob = &s.people.bob;
        let yaml = "environment: prod\nrole: admin\nduration: 45m\nreason: incident INC-9 payments down\nticket: INC-9\n";
        let branch = "sev1-request";
        s.forge.push_files(
            REPO,
            branch,
            bob,
            &[("requests/prod/r-sev1.yaml", yaml)],
            "request",
        );
        let pr = s.open_labelled_change(bob, branch, "sev1 access", "sev1");
        s.settle().await;
        let merged = s.change(pr);
        assert!(merged.merged, "merged without waiting for approval");
        assert!(
            merged
                .labels
                .contains(&"breakglass/needs-review".to_owned()),
            "{:?}",
            merged.labels
        );
        let merge = s.merge_commit(merged.number);
        assert!(
            merge
                .message
                .contains("Breakglass-Approved-By: fast-path:sev1"),
            "{}",
            merge.message
        );
        // One comment: the grant, and the verdict that let it through without waiting.
        let granted = s.next_bot_comment(pr);
        assert!(
            granted.starts_with("🔓 **Access granted.** @bob"),
            "{granted}"
        );
        let emoji = match s.dialect {
            Dialect::GitHub => "`:+1:`",
            Dialect::GitLab => "`:thumbsup:`",
        };
        assert!(
            granted.ends_with(&format!("⚡ Fast path `sev1` of the `prod` policy applied: merged without waiting for approval. An approver must review this grant within 24h (react with {emoji} on the {} itself, not on a comment, or comment `/breakglass reviewed`).", s.pr())),
            "{granted}"
        );
        let record = s.request("r-sev1").await;
        assert_eq!(
            record.review_due_at,
            Some(record.granted_at.unwrap() + TimeDelta::hours(24))
        );

        // The requester cannot review their own grant; an approver can.
        s.by(bob).command(pr, "reviewed");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(said.contains("your own approval does not count"), "{said}");
        // Anyone may ask how it was let through.
        s.by(&s.people.mallory).command(pr, "status");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        let due = "2026-11-27T02:14:00Z";
        assert!(
            said.starts_with("ℹ️ Request `r-sev1`: **active**. `bob` has `prod/admin` until ")
                && said.ends_with(&format!(" Granted on the fast path (rule `sev1`); its review after the fact is not done yet (due {due}).")),
            "{said}"
        );
        s.by(&s.people.carol).command(pr, "reviewed");
        s.settle().await;
        s.expect_bot_comments(pr, &["✔️ After-the-fact review by @carol recorded"]);
        assert!(
            !s.change(pr)
                .labels
                .contains(&"breakglass/needs-review".to_owned())
        );
        let reviewed_at = breakglass::clock::iso(s.request("r-sev1").await.reviewed_at.unwrap());
        s.by(&s.people.dan).command(pr, "reviewed");
        s.by(&s.people.mallory).command(pr, "status");
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(pr),
            format!("ℹ️ Request `r-sev1` was already reviewed by `carol` at {reviewed_at}.")
        );
        let said = s.next_bot_comment(pr);
        assert!(
            said.ends_with(&format!(" Granted on the fast path (rule `sev1`); reviewed after the fact by `carol` at {reviewed_at}.")),
            "{said}"
        );
        assert_eq!(
            s.request("r-sev1")
                .await
                .reviewed_by
                .map(|l| l.to_string())
                .as_deref(),
            Some("carol")
        );
    }
);

// The incident issue is labelled `sev1` and bob, on call, asks there by comment: the PR the
// bot opens for him carries the issue's labels that a fast-path rule names, so it merges at
// once. Only those: another label of the issue stays off the PR, and alice (not on call) on
// the same issue waits for approval.
on_both_forges!(
    a_request_by_comment_on_a_sev1_issue_takes_the_fast_path,
    |s: Scenario| async move {
        let (alice, bob) = (&s.people.alice, &s.people.bob);
        let issue = s.open_issue(bob, "checkout down");
        let internal = match s.dialect {
            Dialect::GitHub => issue,
            Dialect::GitLab => s.forge.gl_number(REPO, Noteable::Issue(issue)),
        };
        for label in ["SEV1", "customer-facing"] {
            s.forge.label(REPO, internal, bob, label);
        }
        s.note_on_issue(
            issue,
            bob,
            "/breakglass prod 30m admin -- incident: INC-9 checkout down",
        );
        s.settle().await;
        s.expect_bot_issue_comments(issue, &["📝 @bob, your request is "]);
        let pr = s.change(s.first_bot_change());
        assert!(pr.merged, "fast path: {:#?}", s.bot_comments(pr.number));
        let mut labels = pr.labels.clone();
        labels.sort();
        assert_eq!(labels, ["SEV1", "breakglass/needs-review"]);
        let merge = s.merge_commit(pr.number);
        assert!(
            merge
                .message
                .contains("Breakglass-Approved-By: fast-path:sev1"),
            "{}",
            merge.message
        );
        s.expect_bot_comments(pr.number, &["🔓 **Access granted.** @bob"]);

        s.note_on_issue(
            issue,
            alice,
            "/breakglass prod 30m admin -- incident: INC-9 checkout down",
        );
        s.settle().await;
        s.expect_bot_issue_comments(issue, &["📝 @alice, your request is "]);
        let theirs = s
            .changes()
            .into_iter()
            .find(|p| p.user == s.people.bot.login && p.title.contains("(alice)"))
            .expect("alice's request PR");
        assert!(!theirs.merged);
        assert!(theirs.labels.is_empty(), "{:?}", theirs.labels);
        s.expect_bot_comments(theirs.number, &["✅ **Request `"]);
    }
);

on_both_forges!(
    a_reaction_closes_the_fast_path_review,
    |s: Scenario| async move {
        let bob = &s.people.bob;
        let yaml = "environment: prod\nrole: admin\nduration: 1h\nreason: incident INC-9 payments down\nticket: INC-9\n";
        s.forge.push_files(
            REPO,
            "b",
            bob,
            &[("requests/prod/r-react.yaml", yaml)],
            "request",
        );
        let pr = s.open_labelled_change(bob, "b", "sev1 access", "sev1");
        s.settle().await;
        assert!(s.change(pr).merged);
        s.emoji_now(pr, bob, "+1"); // the requester's own reaction does not count
        s.emoji(pr, &s.people.dan, "+1"); // a second after the merged head's push
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        assert_eq!(
            s.request("r-react")
                .await
                .reviewed_by
                .map(|l| l.to_string())
                .as_deref(),
            Some("dan")
        );
        s.expect_bot_comments(
            pr,
            &[
                "🔓 **Access granted.**",
                "✔️ After-the-fact review by @dan recorded; `breakglass/needs-review` removed.",
            ],
        );
    }
);

// A review is of what was merged: an approver's emoji left on an earlier version (here one the
// policy denied) must not close the review of the version the fast path then merged.
on_both_forges!(
    an_emoji_on_an_older_version_does_not_close_the_fast_path_review,
    |s: Scenario| async move {
        let bob = &s.people.bob;
        let five_hours = "environment: prod\nrole: admin\nduration: 5h\nreason: incident INC-9 payments down\nticket: INC-9\n";
        let pr = s.open_request(bob, "prod", "r-old", five_hours);
        s.settle().await;
        s.take_bot_comments(pr); // denied: above max_duration
        s.emoji(pr, &s.people.dan, "+1");
        s.settle().await;
        if s.dialect == Dialect::GitLab {
            // GitLab's emoji webhook on a denied request is answered (GitHub polls only
            // pending requests).
            s.expect_bot_comments(
                pr,
                &["ℹ️ `/breakglass approve` does not apply: request `r-old` is denied"],
            );
        }
        s.forge.advance_clock(TimeDelta::seconds(2));
        let yaml = five_hours.replace("5h", "45m");
        s.before_the_bot_hears(|| {
            s.forge.push_files(
                REPO,
                "request-r-old",
                bob,
                &[("requests/prod/r-old.yaml", &yaml)],
                "45m",
            );
            s.label(pr, bob, "sev1");
        });
        s.settle().await;
        assert!(s.change(pr).merged);
        s.emoji(pr, bob, "hooray"); // changes what a poll sees
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        assert_eq!(s.request("r-old").await.reviewed_by, None);
        assert!(
            s.labels(pr).iter().any(|l| l == "breakglass/needs-review"),
            "{:?}",
            s.labels(pr)
        );
        s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
        s.emoji(pr, &s.people.carol, "+1");
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        assert_eq!(
            s.request("r-old")
                .await
                .reviewed_by
                .map(|l| l.to_string())
                .as_deref(),
            Some("carol")
        );
        s.expect_bot_comments(pr, &["✔️ After-the-fact review by @carol recorded"]);
    }
);

on_both_forges!(self_service_needs_no_approval, |s: Scenario| async move {
    let yaml = "environment: staging\nrole: admin\nduration: 2h\nreason: load test\n";
    let pr = s.open_request(&s.people.alice, "staging", "r-staging", yaml);
    s.settle().await;
    let merged = s.change(pr);
    assert!(merged.merged);
    let merge = s.merge_commit(merged.number);
    assert!(
        merge
            .message
            .contains("Breakglass-Approved-By: self-service"),
        "{}",
        merge.message
    );
    s.expect_bot_comments(
        pr,
        &[
            "✅ **Request `r-staging` is allowed** by the `staging` policy: @alice asks for `staging/admin` for 2h.\n\nSelf-service environment: merging now, no approval needed.",
            "🔓 **Access granted.** @alice has `staging/admin` until **2026-11-26T04:14:00Z** (in 2h).",
        ],
    );
});

on_both_forges!(revoke_command_ends_access_early, |s: Scenario| async move {
    let pr = s.open_request(&s.people.alice, "prod", "r-early", &prod_request("2h"));
    s.settle().await;
    s.approve(pr, &s.people.carol);
    s.settle().await;
    assert!(s.change(pr).merged);
    s.expect_bot_comments(pr, &["✅", "🔓 **Access granted.**"]);
    s.advance(TimeDelta::minutes(10));
    s.by(&s.people.mallory).revoke(pr);
    s.settle().await;
    let said = s.next_bot_comment(pr);
    assert!(
        said.contains("only the requester or an approver can revoke"),
        "{said}"
    );
    s.note(pr, &s.people.alice, "/breakglass done");
    s.settle().await;
    let record = s.request("r-early").await;
    let revert = s.change(record.revert_pr_number.unwrap());
    assert!(revert.merged);
    let merge = s.merge_commit(revert.number);
    assert!(
        merge
            .message
            .contains("Breakglass-Revoked-Reason: early\nBreakglass-Revoked-By: alice\n"),
        "{}",
        merge.message
    );
    let said = s.next_bot_comment(pr);
    assert!(said.contains("(@alice revoked it early)"), "{said}");
    // Every action is linked to a person: the log says who ended the access.
    let revoked = s.events("r-early", "revoke").await;
    let by = revoked[0].actor.as_ref().map(|a| a.login.as_str());
    assert_eq!(by, Some("alice"), "{revoked:?}");
});

// An approver ends someone else's access: the log, the note, the revert's merge and the audit
// all name the approver, not the requester.
on_both_forges!(
    an_early_revoke_by_an_approver_names_the_approver,
    |s: Scenario| async move {
        let pr = s.granted("r-ended", "2h").await;
        s.advance(TimeDelta::minutes(10));
        s.note(pr, &s.people.carol, "/breakglass revoke");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(
            said.contains("@alice no longer has `prod/admin` (@carol revoked it early)"),
            "{said}"
        );
        let revoked = s.events("r-ended", "revoke").await;
        let by = revoked[0].actor.as_ref().map(|a| a.login.as_str());
        assert_eq!(by, Some("carol"), "{revoked:?}");
        s.note(pr, &s.people.bob, "/breakglass status");
        s.settle().await;
        let status = s.next_bot_comment(pr);
        assert!(status.ends_with("(early, by `carol`)."), "{status}");
        let revert = s.request("r-ended").await.revert_pr_number.unwrap();
        let merge = s.merge_commit(revert);
        assert!(
            merge.message.contains("ended, revoked early by carol.")
                && merge.message.contains("Breakglass-Revoked-By: carol\n"),
            "{}",
            merge.message
        );
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_breakglass"))
            .args(["audit", "--format", "json", "--branch", "main", "--repo"])
            .arg(s.forge.repo_path(REPO))
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let grant = &report["grants"][0];
        assert_eq!(grant["revoked_how"], "early", "{report:#}");
        assert_eq!(grant["revoked_by"], "carol", "{report:#}");
    }
);

on_both_forges!(
    extend_moves_the_expiry_within_max_duration,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-extend", &prod_request("3h"));
        s.settle().await;
        s.approve(pr, &s.people.carol);
        s.settle().await;
        let before = s.request("r-extend").await.expires_at.unwrap();
        s.expect_bot_comments(pr, &["✅", "🔓 **Access granted.**"]);
        // The requester alone cannot extend without a fast path: it needs an approver.
        s.note(pr, &s.people.alice, "/breakglass extend 30m");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(said.contains("It needs approval"), "{said}");
        s.note(pr, &s.people.carol, "/breakglass extend 2h");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(
            said.contains("above the policy's max_duration 4h"),
            "{said}"
        );
        s.note(pr, &s.people.carol, "/breakglass extend 30m");
        s.settle().await;
        let after = s.request("r-extend").await.expires_at.unwrap();
        assert_eq!(after - before, TimeDelta::minutes(30));
        let said = s.next_bot_comment(pr);
        assert!(said.starts_with("⏳ Extended"), "{said}");
        // Not revoked at the old expiry, revoked at the new one.
        s.advance(TimeDelta::hours(3) + TimeDelta::minutes(1));
        s.settle().await;
        assert_eq!(s.request("r-extend").await.state.to_string(), "active");
        s.advance(TimeDelta::minutes(30));
        s.settle().await;
        assert_eq!(s.request("r-extend").await.state.to_string(), "revoked");
        s.expect_bot_comments(pr, &["🔒 **Access revoked** at 2026-11-26T05:45:00Z"]);
    }
);

on_both_forges!(
    status_help_and_unknown_commands_are_answered,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-status", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r-status` is allowed**"]);
        s.by(&s.people.alice).command(pr, "status");
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(pr),
            "ℹ️ Request `r-status`: **pending**. `alice` asks for `prod/admin` for 1h. Waiting for approval: 0 of 1."
        );
        // Granted, asked by an outsider: the requester is named, not pinged.
        s.approve(pr, &s.people.carol);
        s.settle().await;
        s.take_bot_comments(pr);
        s.note(pr, &s.people.mallory, "/breakglass status");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(
            said.starts_with("ℹ️ Request `r-status`: **active**. `alice` has `prod/admin` until ")
                && said.ends_with(" (in 1h). Approved by `carol`."),
            "{said}"
        );
        s.note(pr, &s.people.alice, "/breakglass aprove");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(
            said.contains("did you mean `/breakglass approve`?"),
            "{said}"
        );
        s.note(pr, &s.people.alice, "/breakglass help");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(said.contains("/breakglass extend"), "{said}");
    }
);

/// alice asks for prod access by a comment on `issue`: her request and its PR's reference (the
/// reply on the issue read).
async fn asked_on(s: &Scenario, issue: u64) -> (breakglass::store::RequestRecord, String) {
    s.note_on_issue(
        issue,
        &s.people.alice,
        "/breakglass prod 1h admin -- incident: INC-77 checkout DB failover",
    );
    s.settle().await;
    s.take_bot_issue_comments(issue);
    let record = s.store.list_requests(None).await.unwrap().pop().unwrap();
    let pr = s.change_ref(record.pr_number);
    (record, pr)
}

on_both_forges!(
    status_on_the_issue_a_request_was_asked_on_answers_for_it,
    |s: Scenario| async move {
        let issue = s.open_issue(&s.people.alice, "checkout is down");
        s.note_on_issue(issue, &s.people.mallory, "/breakglass status");
        s.settle().await;
        assert_eq!(
            s.next_bot_issue_comment(issue),
            format!(
                "`/breakglass status` works on a breakglass request {pr}; this is not one (or it is not in a state where it applies).",
                pr = s.pr()
            )
        );
        let (record, pr) = asked_on(&s, issue).await;
        // Asked by anyone on the incident issue: the request asked for there, with its PR.
        s.note_on_issue(issue, &s.people.mallory, "/breakglass status");
        s.settle().await;
        assert_eq!(
            s.next_bot_issue_comment(issue),
            format!(
                "ℹ️ Request `{}` ({pr}): **pending**. `alice` asks for `prod/admin` for 1h. Waiting for approval: 0 of 1.",
                record.id
            )
        );
        s.approve(record.pr_number, &s.people.carol);
        s.settle().await;
        s.note_on_issue(issue, &s.people.mallory, "/breakglass status");
        s.settle().await;
        let said = s.next_bot_issue_comment(issue);
        let active = format!(
            "ℹ️ Request `{}` ({pr}): **active**. `alice` has `prod/admin` until ",
            record.id
        );
        assert!(
            said.starts_with(&active) && said.ends_with(" Approved by `carol`."),
            "{said}"
        );
        // Another issue knows nothing of it.
        let other = s.open_issue(&s.people.mallory, "unrelated");
        s.note_on_issue(other, &s.people.mallory, "/breakglass status");
        s.settle().await;
        assert!(s.next_bot_issue_comment(other).starts_with(&format!(
            "`/breakglass status` works on a breakglass request {pr}",
            pr = s.pr()
        )),);
        s.take_bot_comments(record.pr_number);
    }
);

// `/breakglass revoke` and `/breakglass extend` on the issue where a request was asked for
// are given on the request's PR: the reply names it (each of them, when there are several),
// and nothing is revoked or extended.
on_both_forges!(
    revoke_and_extend_on_the_issue_a_request_was_asked_on_point_at_its_pr,
    |s: Scenario| async move {
        let issue = s.open_issue(&s.people.alice, "checkout is down");
        s.note_on_issue(issue, &s.people.alice, "/breakglass revoke");
        s.settle().await;
        assert_eq!(
            s.next_bot_issue_comment(issue),
            format!(
                "`/breakglass revoke` works on a breakglass request {pr}; this is not one (or it is not in a state where it applies).",
                pr = s.pr()
            )
        );
        let (record, pr) = asked_on(&s, issue).await;
        let number = record.pr_number;
        s.approve(number, &s.people.carol);
        s.settle().await;
        s.take_bot_comments(number);
        let expires_at = s.request(record.id.as_str()).await.expires_at;
        for (command, verb) in [
            ("/breakglass revoke", "revoke"),
            ("/breakglass extend 30m", "extend"),
        ] {
            s.note_on_issue(issue, &s.people.alice, command);
            s.settle().await;
            assert_eq!(
                s.next_bot_issue_comment(issue),
                format!(
                    "ℹ️ `/breakglass {verb}` works on a request's {}, not here. Request `{}`, asked for here, is {pr} (**active**): comment it there.",
                    s.pr(),
                    record.id
                )
            );
        }
        let now = s.request(record.id.as_str()).await;
        assert_eq!(now.state.to_string(), "active");
        assert_eq!(now.expires_at, expires_at);
        // A second request asked for there: both are named.
        s.note_on_issue(
            issue,
            &s.people.alice,
            "/breakglass prod 30m admin -- incident: INC-77 one more look",
        );
        s.settle().await;
        s.take_bot_issue_comments(issue);
        let second = s
            .store
            .list_requests(None)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.id != record.id)
            .unwrap();
        s.note_on_issue(issue, &s.people.carol, "/breakglass approve");
        s.settle().await;
        let said = s.next_bot_issue_comment(issue);
        assert!(
            said.starts_with(&format!(
                "ℹ️ `/breakglass approve` works on a request's {}, not here. Requests asked for here:\n\n",
                s.pr()
            ))
                && said.contains(&format!("- `{}` {pr} (**active**)", record.id))
                && said.contains(&format!(
                    "- `{}` {} (**pending**)",
                    second.id,
                    s.change_ref(second.pr_number)
                ))
                && said.ends_with(&format!(
                    "\n\nComment it on the {} of the request it is for.",
                    s.pr()
                )),
            "{said}"
        );
        assert!(!s.change(second.pr_number).merged);
        s.take_bot_comments(second.pr_number);
        s.lenient(); // the revert PR and reminders are not what this is about
    }
);

// One comment of many commands is answered in one note, the replies in command order: an
// outsider's comment costs one of the forge's content-creation calls (a secondary rate limit
// that grants and revokes need too), not one per command. Each command does what it does
// alone, and what is said as the note of an effect, or on another thread, is said as before.
on_both_forges!(
    one_comment_of_many_commands_is_answered_in_one_note,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r1", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r1` is allowed**"]);
        s.note(
            pr,
            &s.people.mallory,
            "/breakglass help\n/breakglass status\n/breakglass approve\n/breakglass deny\n/breakglass revoke\n/breakglass reviewed\n/breakglass extend 30m\n/breakglass aprove",
        );
        s.settle().await;
        let said = s.next_bot_comment(pr);
        let replies: Vec<&str> = said.split("\n\n---\n\n").collect();
        let starts = [
            "**breakglass commands.**",
            "ℹ️ Request `r1`: **pending**.",
            "🙅 @mallory is not an approver",
            "🙅 @mallory, only an approver (or the requester, to withdraw) can deny a request.",
            "ℹ️ `/breakglass revoke` does not apply: request `r1` is waiting for approval",
            "ℹ️ `/breakglass reviewed` does not apply: request `r1` is waiting for approval",
            "ℹ️ `/breakglass extend` does not apply: request `r1` is waiting for approval",
            "⚠️ unknown command `aprove`; did you mean `/breakglass approve`?",
        ];
        assert_eq!(replies.len(), starts.len(), "{said}");
        for (reply, start) in replies.iter().zip(starts) {
            assert!(reply.starts_with(start), "{start:?} in {said}");
        }
        assert_eq!(s.change(pr).state, "open");

        // An approver's comment: the approval merges and grants (its note is its own), and the
        // replies to the other commands come together.
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(
            pr,
            &s.people.carol,
            "/breakglass status\n/breakglass approve\n/breakglass aprove",
        );
        s.settle().await;
        assert!(s.change(pr).merged);
        let mut said = s.take_bot_comments(pr);
        said.sort_by_key(|c| !c.starts_with("🔓"));
        assert_eq!(said.len(), 2, "{said:#?}");
        assert!(said[0].starts_with("🔓 **Access granted.**"), "{said:#?}");
        let replies: Vec<&str> = said[1].split("\n\n---\n\n").collect();
        assert_eq!(replies.len(), 2, "{said:#?}");
        assert!(
            replies[0].starts_with("ℹ️ Request `r1`: **pending**."),
            "{said:#?}"
        );
        assert!(
            replies[1].starts_with("⚠️ unknown command `aprove`"),
            "{said:#?}"
        );

        // On an issue, with requests among the commands: one opens, its link is said on its
        // own, and the other replies go together.
        let issue = s.open_issue(&s.people.bob, "checkout is down");
        s.note_on_issue(
            issue,
            &s.people.bob,
            "/breakglass help\n/breakglass prod 1h admin -- incident: INC-77 checkout\n/breakglass staging 1h -- y\n/breakglass aprove",
        );
        s.settle().await;
        let requests = s.store.list_requests(None).await.unwrap();
        assert_eq!(requests.len(), 2, "{:#?}", s.bot_issue_comments(issue));
        let opened = requests.iter().find(|r| r.id.as_str() != "r1").unwrap();
        let said = s.take_bot_issue_comments(issue);
        assert_eq!(said.len(), 2, "{said:#?}");
        assert!(
            said[0].contains(&s.change_ref(opened.pr_number)),
            "{said:#?}"
        );
        let replies: Vec<&str> = said[1].split("\n\n---\n\n").collect();
        assert_eq!(replies.len(), 3, "{said:#?}");
        assert!(
            replies[0].starts_with("**breakglass commands.**"),
            "{said:#?}"
        );
        assert!(
            replies[1].starts_with("⚠️ unknown command `aprove`"),
            "{said:#?}"
        );
        assert_eq!(
            replies[2],
            "⚠️ One comment opens at most one request: only the first `/breakglass <environment> [duration] [role] [-- reason]` line was taken."
        );
        s.take_bot_comments(opened.pr_number);
    }
);

// `/breakglass reviewed` on a request PR with no review to close says why, as what it is: not
// granted yet, approved before its merge, or reviewed already (by whom, when).
on_both_forges!(
    reviewed_on_a_request_without_a_review_to_close_says_why,
    |s: Scenario| async move {
        let pending = s.open_request(&s.people.alice, "prod", "r-pending", &prod_request("1h"));
        s.settle().await;
        s.take_bot_comments(pending);
        s.by(&s.people.carol).command(pending, "reviewed");
        s.settle().await;
        let said = s.next_bot_comment(pending);
        assert!(
            said.starts_with("ℹ️ `/breakglass reviewed` does not apply: request `r-pending` is waiting for approval (**pending**)."),
            "{said}"
        );
        s.by(&s.people.alice).command(pending, "deny");
        s.settle().await;
        s.take_bot_comments(pending);

        let pr = s.granted("r-approved", "1h").await;
        s.by(&s.people.carol).command(pr, "reviewed");
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(pr),
            "ℹ️ Nothing to review: request `r-approved` was not granted on the fast path. It was approved before its merge, so it has no after-the-fact review."
        );
        assert!(s.request("r-approved").await.reviewed_at.is_none());
    }
);

// A request closed without a grant fails its `breakglass/policy` check, saying why: a
// required check does not stay `pending` on a PR that will never be merged.
on_both_forges!(
    a_request_closed_without_a_grant_fails_its_check_saying_why,
    |s: Scenario| async move {
        let alice = &s.people.alice;
        let check = |pr: u64| s.policy_status(&s.change(pr).head_sha).unwrap();
        let denied = s.open_request(alice, "prod", "r-denied", &prod_request("1h"));
        s.settle().await;
        assert_eq!(check(denied).0, "pending");
        s.by(&s.people.carol).command(denied, "deny -- no incident");
        s.settle().await;
        assert_eq!(
            check(denied),
            ("failure".to_owned(), "denied by @carol".to_owned())
        );
        s.take_bot_comments(denied);

        let withdrawn = s.open_request(alice, "prod", "r-withdrawn", &prod_request("1h"));
        s.settle().await;
        s.by(alice).command(withdrawn, "deny");
        s.settle().await;
        assert_eq!(
            check(withdrawn),
            (
                "failure".to_owned(),
                "withdrawn by the requester".to_owned()
            )
        );
        s.take_bot_comments(withdrawn);

        let expired = s.open_request(alice, "prod", "r-expired", &prod_request("1h"));
        s.settle().await;
        s.advance(TimeDelta::hours(24));
        s.settle().await;
        assert_eq!(s.change(expired).state, "closed");
        assert_eq!(
            check(expired),
            (
                "failure".to_owned(),
                "expired unapproved after 24h".to_owned()
            )
        );
        s.take_bot_comments(expired);
    }
);

// A request PR reopened after its request was closed without a grant is answered, never
// silently left open: why it was closed, that it is not decided again, and how to ask anew.
// Nothing reopened is decided or merged, and its check stays `failure`, on a head pushed
// while it was closed too.
on_both_forges!(
    a_reopened_closed_request_is_answered_and_never_decided_again,
    |s: Scenario| async move {
        let alice = &s.people.alice;
        let anew = &format!(
            "breakglass does not decide it again, so reopening this {pr} grants nothing. To ask again, open a new request: a new file `requests/<environment>/<new id>.yaml` in a new {pr}, or a `/breakglass <environment> [duration] [role] [-- reason]` comment.",
            pr = s.pr()
        );
        let reopen = |pr: u64| {
            s.forge.reopen_pr(REPO, s.internal(pr), alice);
        };

        let expired = s.open_request(alice, "prod", "r-expired", &prod_request("1h"));
        s.settle().await;
        s.advance(TimeDelta::hours(24));
        s.settle().await;
        s.expect_bot_comments(expired, &["✅ **Request `r-expired` is allowed**", "⌛"]);
        assert_eq!(s.change(expired).state, "closed");
        reopen(expired);
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(expired),
            format!("🔒 Request `r-expired` is closed (nobody approved it within 24h): {anew}")
        );
        assert_eq!(s.change(expired).state, "open");
        assert_eq!(s.request("r-expired").await.state.to_string(), "closed");
        assert_eq!(
            s.policy_status(&s.change(expired).head_sha).unwrap().0,
            "failure"
        );
        // Approved now, it is still not merged.
        s.approve(expired, &s.people.carol);
        s.settle().await;
        assert!(!s.change(expired).merged);
        s.expect_bot_comments(expired, &["ℹ️ `/breakglass approve` does not apply: request `r-expired` is closed without a grant"]);

        let denied = s.open_request(alice, "prod", "r-denied", &prod_request("1h"));
        s.settle().await;
        s.by(&s.people.carol).command(denied, "deny -- no incident");
        s.settle().await;
        s.expect_bot_comments(denied, &["✅", "🚫 Request denied by @carol"]);
        // A push while it is closed brings a head that the reopened PR shows.
        let closed_head = s.change(denied).head_sha;
        s.forge.push_files(
            REPO,
            "request-r-denied",
            alice,
            &[("requests/prod/r-denied.yaml", &prod_request("30m"))],
            "shorter",
        );
        reopen(denied);
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(denied),
            format!("🔒 Request `r-denied` is closed (denied by carol: `no incident`): {anew}")
        );
        assert_ne!(s.change(denied).head_sha, closed_head);
        assert_eq!(
            s.policy_status(&s.change(denied).head_sha),
            Some(("failure".to_owned(), "denied by @carol".to_owned()))
        );
        assert_eq!(s.request("r-denied").await.state.to_string(), "closed");

        // Closed by hand: the status and the reopened PR say by whom.
        let by_hand = s.open_request(alice, "prod", "r-by-hand", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(by_hand, &["✅"]);
        s.close_change(by_hand, alice);
        s.settle().await;
        assert_eq!(
            s.policy_status(&s.change(by_hand).head_sha),
            Some((
                "failure".to_owned(),
                "closed by @alice without a grant".to_owned()
            ))
        );
        s.by(&s.people.mallory).command(by_hand, "status");
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(by_hand),
            "ℹ️ Request `r-by-hand`: **closed**. Closed by alice."
        );
        let closed = s.events("r-by-hand", "close").await;
        assert_eq!(
            closed[0].actor.as_ref().map(|a| a.login.to_string()),
            Some("alice".to_owned())
        );
        reopen(by_hand);
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(by_hand),
            format!(
                "🔒 Request `r-by-hand` is closed (its {} was closed by alice): {anew}",
                s.pr()
            )
        );
        for pr in [expired, denied, by_hand] {
            assert!(!s.change(pr).merged);
        }
    }
);

/// Everything the bot says in the main story, pinned (tests/snapshots/): a change of wording
/// shows up in review.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_story_in_the_bots_words() {
    let Some(s) = Scenario::start(Backend::Sqlite).await else {
        return;
    };
    let issue = s.alice_asks_by_comment();
    s.settle().await;
    let pr = s.first_bot_change();
    s.approve(pr, &s.people.alice);
    s.approve(pr, &s.people.mallory);
    s.note(pr, &s.people.carol, "/breakglass aprove");
    s.settle().await;
    s.emoji_now(pr, &s.people.carol, "+1");
    s.advance(TimeDelta::seconds(30));
    s.settle().await;
    s.note(pr, &s.people.alice, "/breakglass status");
    s.settle().await;
    s.advance(TimeDelta::minutes(60));
    s.settle().await;
    // Every comment, in order: a duplicate or a stray one changes the snapshot.
    let transcript = |number: u64, comments: Vec<String>| {
        comments
            .iter()
            .map(|c| format!("--- #{number}\n{c}\n"))
            .collect::<String>()
    };
    insta::assert_snapshot!(
        "story_issue",
        transcript(issue, s.take_bot_issue_comments(issue))
    );
    insta::assert_snapshot!("story_request_pr", transcript(pr, s.take_bot_comments(pr)));
    let record = s.request("20261126-0214-alice-prod").await;
    let revert = s.change(record.revert_pr_number.unwrap());
    insta::assert_snapshot!(
        "story_revert_pr",
        format!("{}\n\n{}", revert.title, revert.body)
    );
}

// A draft approved while it is a draft and then marked ready is merged at once; the verdict
// said on the ready PR names the approval it merges on, and never asks for approvals it has.
on_both_forges!(
    a_draft_approved_then_marked_ready_is_merged_without_asking_for_approval_again,
    |s: Scenario| async move {
        let alice = &s.people.alice;
        let pr = s.before_the_bot_hears(|| {
            let pr = s.open_request(alice, "prod", "r-draft", &prod_request("1h"));
            s.set_draft(pr, alice, true);
            pr
        });
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(
            said.contains("Needs **1** approval(s)")
                && said.contains(&format!("This {pr} is a draft", pr = s.pr())),
            "{said}"
        );
        s.approve(pr, &s.people.carol);
        s.settle().await;
        s.expect_bot_comments(pr, &["👍 Approval by @carol recorded (1 of 1)."]);
        assert!(!s.change(pr).merged, "a draft is never merged");
        // Decided again while still a draft (labelled for a fast path alice is not on call
        // for): approved, but a draft is not merged, so the verdict does not say it merges.
        s.label(pr, alice, "sev1");
        s.settle().await;
        let again = s.next_bot_comment(pr);
        assert!(
            !again.contains("merging now")
                && again.contains(&format!("This {} is a draft", s.pr())),
            "{again}"
        );
        assert!(!s.change(pr).merged, "a draft is never merged");
        s.set_draft(pr, alice, false);
        s.settle().await;
        assert!(s.change(pr).merged);
        assert_eq!(
            s.next_bot_comment(pr),
            "✅ **Request `r-draft` is allowed** by the `prod` policy: @alice asks for `prod/admin` for 1h.\n\nApproved by `carol` (1 of 1): merging now.\n\nFast path `sev1` does not apply: `alice` is not one of @\u{2060}acme/oncall, bob."
        );
        s.expect_bot_comments(pr, &["🔓 **Access granted.** @alice has `prod/admin`"]);
    }
);

// The same for bob, whom the `sev1` fast path does apply to: approved on the draft, marked
// ready, it merges as approved by carol (the audit says who approved), not as a fast path whose
// after-the-fact review carol's earlier approval would then close in the same second.
on_both_forges!(
    a_draft_approved_before_it_is_marked_ready_merges_as_approved_even_on_a_fast_path,
    |s: Scenario| async move {
        let bob = &s.people.bob;
        let pr = s.before_the_bot_hears(|| {
            let pr = s.open_request(bob, "prod", "r-draft", &prod_request("30m"));
            s.set_draft(pr, bob, true);
            s.label(pr, bob, "sev1");
            pr
        });
        s.settle().await;
        s.take_bot_comments(pr);
        s.approve(pr, &s.people.carol);
        s.settle().await;
        s.take_bot_comments(pr);
        assert!(!s.change(pr).merged, "a draft is never merged");
        s.set_draft(pr, bob, false);
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        let record = s.request("r-draft").await;
        assert_eq!(record.fast_path_rule, None);
        assert_eq!(record.review_due_at, None);
        let approved_by: Vec<String> = record
            .approved_by
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(approved_by, ["carol"]);
        let merge = s.merge_commit(pr).message;
        assert!(merge.contains("Breakglass-Approved-By: carol"), "{merge}");
        assert!(!s.labels(pr).iter().any(|l| l == "breakglass/needs-review"));
        let said = s.take_bot_comments(pr);
        assert!(
            said.iter().any(|c| c.starts_with("🔓 **Access granted.**")),
            "{said:#?}"
        );
        assert!(!said.iter().any(|c| c.contains("review")), "{said:#?}");
    }
);

on_both_forges!(
    two_approvals_need_two_distinct_approvers,
    |s: Scenario| async move {
        let policy = s
            .forge
            .file_on(REPO, "main", "policies/prod.yaml")
            .unwrap()
            .replace("approvals: 1", "approvals: 2");
        s.forge.push_direct(
            REPO,
            &s.people.carol,
            &[("policies/prod.yaml", &policy)],
            "prod needs two approvals",
        );
        let pr = s.open_request(&s.people.alice, "prod", "r-two", &prod_request("1h"));
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(said.contains("Needs **2** approval(s)"), "{said}");
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(pr),
            "👍 Approval by @carol recorded (1 of 2)."
        );
        s.emoji_now(pr, &s.people.carol, "+1"); // the same approver twice is still one
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        assert!(!s.change(pr).merged);
        s.approve(pr, &s.people.dan);
        s.settle().await;
        let merged = s.change(pr);
        assert!(merged.merged);
        let merge = s.merge_commit(merged.number);
        assert!(
            merge.message.contains("Breakglass-Approved-By: carol, dan"),
            "{}",
            merge.message
        );
        s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
    }
);

// Without a reason, the issue's name stood in for it and the policy's reason codes denied it,
// quoting "requested with /breakglass on #1" as the reason the requester had written.
on_both_forges!(
    a_command_without_the_reason_code_its_policy_asks_for_is_asked_for_one,
    |s: Scenario| async move {
        let issue = s.open_issue(&s.people.alice, "db down");
        s.note_on_issue(issue, &s.people.alice, "/breakglass prod 2h admin");
        s.settle().await;
        assert_eq!(
            s.next_bot_issue_comment(issue),
            "⚠️ `prod` asks for a reason that starts with a reason code (`incident`, `maintenance`): write it after `--`, e.g. `/breakglass prod 2h admin -- incident: INC-1234 what broke`. Nothing was opened."
        );
        assert!(s.changes().is_empty(), "nothing opened");
        // Denied for more than the reason (not a requester, longer than the policy allows):
        // the denial says why, rather than asking for a reason that would not help.
        s.note_on_issue(issue, &s.people.mallory, "/breakglass prod 1h admin");
        s.note_on_issue(issue, &s.people.alice, "/breakglass prod 8h admin");
        s.settle().await;
        for _ in 0..2 {
            let said = s.next_bot_issue_comment(issue);
            assert!(!said.contains("asks for a reason"), "{said}");
        }
        assert!(s.changes().is_empty(), "nothing opened");
        s.note_on_issue(
            issue,
            &s.people.alice,
            "/breakglass prod 2h admin -- incident: INC-1234 db down",
        );
        s.settle().await;
        s.expect_bot_issue_comments(issue, &["📝 @alice, your request is "]);
        let pr = s.first_bot_change();
        s.expect_bot_comments(
            pr,
            &["✅ **Request `20261126-0214-alice-prod` is allowed**"],
        );
    }
);

on_both_forges!(
    a_bare_command_opens_the_request_with_the_policy_defaults,
    |s: Scenario| async move {
        // staging has one role and no reason codes: `/breakglass staging 1h` is enough.
        let issue = s.open_issue(&s.people.bob, "load test");
        s.note_on_issue(issue, &s.people.bob, "/breakglass staging 1h");
        s.settle().await;
        let pr = s.first_bot_change();
        s.expect_bot_issue_comments(issue, &["📝 @bob, your request is "]);
        s.expect_bot_comments(
            pr,
            &[
                "✅ **Request `20261126-0214-bob-staging` is allowed**",
                "🔓 **Access granted.**",
            ],
        );
        let record = s.request("20261126-0214-bob-staging").await;
        assert_eq!(record.role.as_str(), "admin");
        assert_eq!(record.reason.as_str(), "requested with /breakglass on #1");
        assert!(
            s.change(pr).merged,
            "self-service: granted at once: {:#?}",
            s.bot_comments(pr)
        );
        // prod has two roles: the bot asks which one instead of guessing.
        s.note_on_issue(issue, &s.people.alice, "/breakglass prod 1h");
        s.settle().await;
        // The placeholder and the roles are code: a raw `<role>` would be HTML, which the
        // forge strips.
        assert_eq!(
            s.next_bot_issue_comment(issue),
            "⚠️ `prod` has several roles; name one: `/breakglass prod 1h <role> -- reason` with `<role>` one of `admin`, `readonly`."
        );
    }
);

// The bot's branches do not outlive their request: GitLab drops each as the bot merges it (the
// bot asks only for its own branches), GitHub's are deleted by the bot after the revert.
on_both_forges!(
    the_bots_branches_are_gone_after_the_revert,
    |s: Scenario| async move {
        let expected = match s.dialect {
            Dialect::GitHub => 2,
            Dialect::GitLab => 0,
        };
        branches_gone_after_the_revert(&s, expected).await;
    }
);

// A GitHub repository that deletes head branches on merge does the bot's deletions for it.
on_both_backends!(
    a_github_repository_that_deletes_merged_branches_saves_the_bots_deletions,
    |s: Scenario| async move {
        s.forge.set_delete_branch_on_merge(REPO, true);
        branches_gone_after_the_revert(&s, 0).await;
    }
);

// Turned on while the bot runs: no webhook says so (PR reads and pushes say the default
// branch's name, never this), so the bot reads the repository's settings again once they
// are an hour old.
on_both_backends!(
    a_repository_that_starts_deleting_merged_branches_is_noticed_within_the_hour,
    |s: Scenario| async move {
        branches_gone_after_the_revert(&s, 2).await;
        s.forge.set_delete_branch_on_merge(REPO, true);
        s.forge.reset_calls();
        let issue = s.open_issue(&s.people.alice, "staging is broken again");
        s.note_on_issue(issue, &s.people.alice, "/breakglass staging 1h -- again");
        s.settle().await;
        s.expect_bot_issue_comments(issue, &["📝 @alice, your request is "]);
        // carol's pushes say the default branch's name all along: it never gets old.
        for i in 0..6 {
            let notes = format!("{i}\n");
            s.forge.push_files(
                REPO,
                "main",
                &s.people.carol,
                &[("NOTES.md", &notes)],
                "notes",
            );
            s.advance(TimeDelta::minutes(10));
            s.settle().await;
        }
        let changes = s.changes();
        let second: Vec<_> = changes.iter().skip(2).collect();
        assert_eq!(second.len(), 2, "the second request and its revert");
        for change in second {
            assert!(change.merged);
            assert_eq!(s.forge.branch_sha(REPO, &change.head_ref), None);
            s.take_bot_comments(change.number);
        }
        let calls = s.forge.calls();
        assert_eq!(
            calls.count("DELETE", "/repos/{owner}/{repo}/git/refs/{*ref}"),
            0
        );
        assert_eq!(
            calls.count("GET", "/repos/{owner}/{repo}"),
            1,
            "read again once"
        );
    }
);

/// alice's self-service request by comment, granted and revoked at its TTL: its request and
/// revert branches are gone, after `deletions` branch deletions by the bot.
async fn branches_gone_after_the_revert(s: &Scenario, deletions: u64) {
    let issue = s.open_issue(&s.people.alice, "staging is broken");
    s.by(&s.people.alice)
        .note_on_issue(issue, "/breakglass staging 1h -- debugging");
    s.settle().await;
    s.expect_bot_issue_comments(issue, &["📝 @alice, your request is "]);
    let pr = s.changes().first().unwrap().number;
    let request_branch = s.change(pr).head_ref;
    let path = s
        .forge
        .files_on(REPO, "main")
        .into_iter()
        .find(|p| p.starts_with("requests/staging/"))
        .unwrap();
    let id = path.rsplit('/').next().unwrap().trim_end_matches(".yaml");
    let revert = s.revert_pr(id).await;
    let revert_branch = s.change(revert).head_ref;
    s.advance(TimeDelta::hours(1));
    s.settle().await;
    assert_eq!(s.request(id).await.state.to_string(), "revoked");
    assert!(s.change(revert).merged);
    for branch in [&request_branch, &revert_branch] {
        assert!(branch.starts_with("breakglass/"), "{branch}");
        assert_eq!(s.forge.branch_sha(REPO, branch), None, "{branch} is gone");
    }
    let asked: u64 = s
        .forge
        .calls()
        .by_route
        .iter()
        .filter(|((method, route), _)| {
            method == "DELETE" && (route.contains("/git/refs/") || route.contains("/branches/"))
        })
        .map(|(_, n)| n)
        .sum();
    assert_eq!(asked, deletions, "branch deletions the bot asked for");
    s.expect_bot_comments(
        pr,
        &[
            "✅ **Request",
            "🔓 **Access granted.**",
            "🔒 **Access revoked**",
        ],
    );
}

/// alice's network request by comment (its request file and its grant file written by the
/// bot), approved by carol and merged; the request's id and its PR.
async fn network_request_by_comment(s: &Scenario) -> (String, u64) {
    let issue = s.open_issue(&s.people.alice, "the apex record moves");
    s.by(&s.people.alice).note_on_issue(
        issue,
        "/breakglass network 1h dns-admin -- move the apex record",
    );
    s.settle().await;
    s.expect_bot_issue_comments(issue, &["📝 @alice, your request is "]);
    let pr = s.changes().first().unwrap().number;
    s.approve(pr, &s.people.carol);
    s.settle().await;
    assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    let path = s
        .forge
        .files_on(REPO, "main")
        .into_iter()
        .find(|p| p.starts_with("requests/network/"))
        .unwrap();
    let id = path.rsplit('/').next().unwrap().trim_end_matches(".yaml");
    assert!(
        s.forge
            .file_on(REPO, "main", &format!("grants/network/{id}.tf"))
            .is_some()
    );
    (id.to_owned(), pr)
}

/// The API calls of the timeline, as (method, path).
fn api_calls(spans: &[breakglass_test_forge::Span]) -> Vec<(String, String)> {
    spans
        .iter()
        .filter_map(|span| match &span.kind {
            breakglass_test_forge::SpanKind::Api { method, path, .. } => {
                Some((method.clone(), path.clone()))
            }
            _ => None,
        })
        .collect()
}

/// Whether `path` reads one of the files of request `id` (its request or grant file).
fn reads_a_file_of(method: &str, path: &str, id: &str) -> bool {
    method == "GET" && path.contains(id) && (path.contains(".yaml") || path.contains(".tf"))
}

/// The reads of request `id`'s files after its merge, in the timeline recorded so far.
fn file_reads_after_the_merge(s: &Scenario, id: &str) -> Vec<(String, String)> {
    let calls = api_calls(&s.forge.take_timeline());
    let merge = calls
        .iter()
        .position(|(method, path)| method == "PUT" && path.ends_with("/merge"))
        .expect("the request's merge");
    calls[merge..]
        .iter()
        .filter(|(method, path)| reads_a_file_of(method, path, id))
        .cloned()
        .collect()
}

on_both_forges!(
    the_revert_deletes_the_files_the_bot_wrote_without_reading_them,
    |s: Scenario| async move {
        s.forge.record_timeline(true);
        let (id, pr) = network_request_by_comment(&s).await;
        s.forge.record_timeline(false);
        // The revert PR is built right after the merge: the bot knows both files' blobs.
        let read = file_reads_after_the_merge(&s, &id);
        assert!(read.is_empty(), "read before the revert: {read:#?}");
        let revert = s.revert_pr(&id).await;
        assert_eq!(s.change(revert).state, "open");
        s.advance(TimeDelta::hours(1));
        s.settle().await;
        assert_eq!(s.request(&id).await.state.to_string(), "revoked");
        assert!(s.change(revert).merged);
        let main = s.forge.files_on(REPO, "main");
        assert!(
            !main.iter().any(|p| p.contains(&id)),
            "the revert removed both files: {main:#?}"
        );
        s.expect_bot_comments(
            pr,
            &[
                "✅ **Request",
                "🔓 **Access granted.**",
                "🔒 **Access revoked**",
            ],
        );
    }
);

// A requester's own PR: the bot did not write the file, but read it at the merge.
on_both_forges!(
    the_revert_deletes_a_requesters_own_file_without_reading_it_again,
    |s: Scenario| async move {
        s.forge.record_timeline(true);
        let pr = s.granted("r-own", "1h").await;
        let revert = s.revert_pr("r-own").await;
        s.forge.record_timeline(false);
        let read = file_reads_after_the_merge(&s, "r-own");
        assert!(read.is_empty(), "read for the revert: {read:#?}");
        s.advance(TimeDelta::hours(1));
        s.settle().await;
        assert_eq!(s.request("r-own").await.state.to_string(), "revoked");
        assert!(s.change(revert).merged);
        assert_eq!(
            s.forge.file_on(REPO, "main", "requests/prod/r-own.yaml"),
            None
        );
        s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
    }
);

// The text of a commit's file never changes: the decisions and the merge share one copy.
on_both_forges!(
    a_requesters_own_request_file_is_read_at_most_once_in_its_whole_lifecycle,
    |s: Scenario| async move {
        s.forge.record_timeline(true);
        let pr = s.granted("r-own", "1h").await;
        s.advance(TimeDelta::hours(1));
        s.settle().await;
        s.forge.record_timeline(false);
        assert_eq!(s.request("r-own").await.state.to_string(), "revoked");
        s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
        let reads: Vec<_> = api_calls(&s.forge.take_timeline())
            .into_iter()
            .filter(|(method, path)| reads_a_file_of(method, path, "r-own"))
            .collect();
        // Read once on both forges. GitHub's comparison does not give a file's mode: its
        // contents API tells a file from a symbolic link, so the file is read there too.
        assert_eq!(reads.len(), 1, "{reads:#?}");
    }
);

on_both_forges!(
    a_revert_rebuilt_after_someone_changed_the_request_file_on_main_reads_it_again,
    |s: Scenario| async move {
        let (id, pr) = network_request_by_comment(&s).await;
        let request_path = format!("requests/network/{id}.yaml");
        // mallory edits the request file on main (the blob the bot wrote is stale now) and
        // closes the revert PR, so that the revert is built again; the edit itself revokes
        // the grant at once (only the bot's merges change a grant).
        let text = s.forge.file_on(REPO, "main", &request_path).unwrap();
        s.forge.push_changes(
            REPO,
            "main",
            &s.people.mallory,
            &[FileChange::Write(
                request_path.clone(),
                format!("{text}# edited on main\n"),
            )],
            "tweak the request",
        );
        let revert = s.revert_pr(&id).await;
        s.close_change(revert, &s.people.mallory);
        s.settle().await;
        s.advance(TimeDelta::hours(1));
        s.settle().await;
        let record = s.request(&id).await;
        assert_eq!(record.state.to_string(), "revoked");
        let rebuilt = record.revert_pr_number.unwrap();
        assert_ne!(rebuilt, revert, "a fresh revert change");
        assert!(s.change(rebuilt).merged);
        let main = s.forge.files_on(REPO, "main");
        assert!(
            !main.iter().any(|p| p.contains(&id)),
            "the edited request file is removed too: {main:#?}"
        );
        assert_eq!(
            record.revoke_reason.map(|r| r.to_string()).as_deref(),
            Some("reconcile")
        );
        s.expect_bot_comments(
            pr,
            &[
                "✅ **Request",
                "🔓 **Access granted.**",
                "🚨 **Grant files changed without breakglass**: @mallory",
                "🔒 **Access revoked**",
            ],
        );
    }
);

// bob, on call, asks on a `sev1` incident issue and gets 30 minutes by the fast path; his own
// extension is judged by the fast path as the incident is now. While the issue is open and
// labelled he extends alone; once it is closed (or its label is taken off) he cannot, though
// the bot's PR still carries the `sev1` label it was opened with.
on_both_forges!(
    a_fast_path_grant_asked_on_an_incident_is_extended_alone_only_while_the_incident_lasts,
    |s: Scenario| async move {
        let bob = &s.people.bob;
        let issue = s.open_issue(bob, "payments down");
        let internal = match s.dialect {
            Dialect::GitHub => issue,
            Dialect::GitLab => s.forge.gl_number(REPO, Noteable::Issue(issue)),
        };
        s.forge.label(REPO, internal, bob, "sev1");
        s.note_on_issue(
            issue,
            bob,
            "/breakglass prod 20m admin -- incident: INC-9 payments down",
        );
        s.settle().await;
        s.take_bot_issue_comments(issue);
        let pr = s.first_bot_change();
        assert!(s.change(pr).merged);
        s.take_bot_comments(pr);
        let id = s
            .forge
            .files_on(REPO, "main")
            .into_iter()
            .find_map(|f| {
                Some(
                    f.strip_prefix("requests/prod/")?
                        .trim_end_matches(".yaml")
                        .to_owned(),
                )
            })
            .expect("the grant's request file");
        let granted = s.request(&id).await.expires_at.unwrap();
        s.by(bob).command(pr, "extend 10m");
        s.settle().await;
        let extended = s.request(&id).await.expires_at.unwrap();
        assert_eq!(
            extended,
            granted + TimeDelta::minutes(10),
            "{:#?}",
            s.bot_comments(pr)
        );
        s.take_bot_comments(pr);
        // The incident is resolved: its issue closed. The PR keeps `sev1`.
        s.forge.close_pr(REPO, internal, &s.people.carol);
        s.settle().await;
        assert!(s.change(pr).labels.iter().any(|l| l == "sev1"));
        s.by(bob).command(pr, "extend 10m");
        s.settle().await;
        assert_eq!(s.request(&id).await.expires_at.unwrap(), extended);
        let said = s.next_bot_comment(pr);
        assert!(
            said.contains("sev1"),
            "the reply names the rule that no longer applies: {said}"
        );
        s.take_bot_comments(pr);
    }
);
