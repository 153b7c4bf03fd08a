//! The lifecycle as users live it: a request PR, an approval, the merge with trailers, the
//! grant, the expiry comment, the revert PR, and its merge at the TTL.

mod common;

use chrono::TimeDelta;
use common::*;

on_both_backends!(
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
        let verdict = s.last_bot_comment(pr);
        assert!(
            verdict.starts_with("✅ **Request `20261126-0214-alice-prod` is allowed**"),
            "{verdict}"
        );
        assert!(
            verdict.contains("Needs **1** approval(s) from @acme/sre-leads, @carol"),
            "{verdict}"
        );
        let head = s.forge.pr(REPO, pr).head_sha;
        assert_eq!(
            s.policy_status(&head),
            Some(("success".into(), "allowed: needs 1 approval(s)".into()))
        );

        // carol approves with a 👍; GitHub sends no webhook for it, the poll finds it.
        s.advance(TimeDelta::seconds(5));
        s.forge.react(REPO, pr, &s.people.carol, "+1");
        s.advance(TimeDelta::seconds(30));
        s.settle().await;

        let merged = s.forge.pr(REPO, pr);
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
        let granted = s.last_bot_comment(pr);
        assert!(granted.starts_with("🔓 **Access granted.** @alice has `prod/admin` until **2026-11-26T03:14:35Z** (in 1h)."), "{granted}");
        let record = s.request("20261126-0214-alice-prod").await;
        let revert = record.revert_pr_number.expect("a revert PR");
        assert!(granted.contains(&format!("#{revert}")), "{granted}");
        let revert_pr = s.forge.pr(REPO, revert);
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
        assert!(!s.forge.pr(REPO, revert).merged);
        assert!(
            s.bot_comments(pr).iter().any(|c| c.starts_with(
                "⏰ @alice, your `prod/admin` access expires at **2026-11-26T03:14:35Z**"
            )),
            "reminder"
        );
        s.advance(TimeDelta::minutes(1));
        s.settle().await;
        let revert_pr = s.forge.pr(REPO, revert);
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
        assert!(s.last_bot_comment(pr).starts_with("🔒 **Access revoked** at 2026-11-26T03:14:35Z: @alice no longer has `prod/admin` (it expired)."), "{}", s.last_bot_comment(pr));
    }
);
