//! The audit trail kept by the service: the hash-chained event log of every step, and the
//! after-the-fact review of fast-path grants with its escalation.

mod common;

use chrono::TimeDelta;
use common::*;

fn sev1_request(s: &Scenario, id: &str) -> u64 {
    let yaml = "environment: prod\nrole: admin\nduration: 45m\nreason: incident INC-9 payments down\nticket: INC-9\n";
    let branch = format!("b-{id}");
    s.forge.push_files(
        REPO,
        &branch,
        &s.people.bob,
        &[(&format!("requests/prod/{id}.yaml"), yaml)],
        "request",
    );
    s.before_the_bot_hears(|| {
        let pr = s.forge.open_pr(REPO, &s.people.bob, &branch, "sev1", "");
        s.forge.label(REPO, pr, &s.people.bob, "sev1");
        pr
    })
}

on_both_backends!(
    every_step_is_in_the_hash_chained_event_log,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-log", &prod_request("1h"));
        s.settle().await;
        s.approve(pr, &s.people.carol);
        s.settle().await;
        s.advance(TimeDelta::hours(1));
        s.settle().await;
        s.expect_bot_comments(
            pr,
            &[
                "✅ **Request `r-log` is allowed**",
                "🔓 **Access granted.**",
                "🔒 **Access revoked**",
            ],
        );
        let events = s
            .store
            .events_for_request(&"r-log".to_owned().try_into().unwrap())
            .await
            .unwrap();
        let kinds: Vec<String> = events.iter().map(|e| e.kind.to_string()).collect();
        assert_eq!(
            kinds,
            ["decision", "approval", "merge", "grant", "revoke", "revert"],
            "{events:#?}"
        );
        let approval = &events[1];
        assert_eq!(
            approval.actor.as_ref().map(|a| (a.id, a.login.to_string())),
            Some((s.people.carol.id, "carol".into()))
        );
        assert!(
            approval.delivery_id.is_some(),
            "the approval names the webhook delivery that carried it"
        );
        let merge_sha = s.forge.pr(REPO, pr).merge_commit_sha.unwrap();
        assert_eq!(events[2].data["merge_sha"], merge_sha.as_str());
        assert_eq!(events[4].data["reason"], "ttl");
        let revert_sha = s
            .forge
            .pr(REPO, s.revert_pr("r-log").await)
            .merge_commit_sha;
        assert_eq!(events[5].data["revert_sha"], revert_sha.unwrap().as_str());
        assert!(s.store.verify_chain().await.unwrap() >= 6);
        for pair in events.windows(2) {
            assert!(pair[0].seq < pair[1].seq);
        }
    }
);

on_both_backends!(
    an_overdue_fast_path_review_is_escalated_and_blocks_the_next_fast_path,
    |s: Scenario| async move {
        let first = sev1_request(&s, "r-sev1-a");
        s.settle().await;
        assert!(s.forge.pr(REPO, first).merged);
        s.advance(TimeDelta::hours(1)); // revoked at 45m
        s.settle().await;
        s.advance(TimeDelta::hours(24)); // review due at 24h
        s.settle().await;
        let labels = s.forge.pr(REPO, first).labels;
        assert!(
            labels.contains(&"breakglass/review-overdue".to_owned()),
            "{labels:?}"
        );
        s.expect_bot_comments(
            first,
            &[
                "🔓 **Access granted.**", // with the fast path's verdict
                "🔒 **Access revoked**",
            ],
        );
        let escalation = s.next_bot_comment(first);
        assert!(
            escalation.starts_with("🚨 **Review overdue**")
                && escalation.ends_with(
                    "after checking it, react with `:+1:` on the PR itself, not on a comment, or comment `/breakglass reviewed`."
                ),
            "{escalation}"
        );
        assert!(
            escalation.contains("@acme/sre-leads @carol"),
            "{escalation}"
        );

        // bob's next sev1 request must wait for a normal approval.
        let second = sev1_request(&s, "r-sev1-b");
        s.settle().await;
        assert!(
            !s.forge.pr(REPO, second).merged,
            "blocked from the fast path"
        );
        assert_eq!(s.request("r-sev1-b").await.state.to_string(), "pending");
        let verdict = s.next_bot_comment(second);
        assert!(
            verdict.ends_with("Fast path `sev1` does not apply: `bob` has an overdue review of `r-sev1-a` (block_until_reviewed)."),
            "{verdict}"
        );

        // Once the first grant is reviewed, the block is lifted for later requests.
        s.by(&s.people.carol).command(first, "reviewed");
        s.settle().await;
        s.expect_bot_comments(first, &["✔️ After-the-fact review by @carol recorded"]);
        assert!(
            !s.forge
                .pr(REPO, first)
                .labels
                .contains(&"breakglass/review-overdue".to_owned())
        );
        let third = sev1_request(&s, "r-sev1-c");
        s.settle().await;
        assert!(
            s.forge.pr(REPO, third).merged,
            "fast path again after the review"
        );
        s.expect_bot_comments(
            third,
            &["🔓 **Access granted.**"], // with the fast path's verdict
        );
    }
);
