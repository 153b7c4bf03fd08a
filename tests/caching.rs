//! What the bot keeps in memory must never outlive what it stands for: a policy pushed to the
//! default branch judges the very next request, and a person taken off a team loses that
//! team's rights within the membership cache's minute.

mod common;

use chrono::TimeDelta;
use common::*;

/// Every bot comment on every change request, read (these stories are about the issue).
fn read_change_comments(s: &Scenario) -> Vec<String> {
    s.changes()
        .iter()
        .flat_map(|change| s.take_bot_comments(change.number))
        .collect()
}

/// Staging's policy with alice no longer among its requesters.
fn staging_without_alice(policy: String) -> String {
    policy.replace(
        "requesters: [\"@acme/engineering\", alice, bob, dave]",
        "requesters: [bob]",
    )
}

/// alice asks for staging on a new issue and is granted (warming the bot's caches); the
/// issue, with every comment so far read.
async fn alice_granted_staging(s: &Scenario) -> u64 {
    let issue = s.open_issue(&s.people.alice, "staging is broken");
    s.note_on_issue(issue, &s.people.alice, "/breakglass staging 1h -- one");
    s.settle().await;
    assert!(s.next_bot_issue_comment(issue).contains("your request is"));
    read_change_comments(s);
    issue
}

on_both_forges!(
    a_policy_pushed_to_the_default_branch_judges_the_next_request_at_once,
    |s: Scenario| async move {
        let issue = s.open_issue(&s.people.alice, "staging is broken");
        s.by(&s.people.alice)
            .note_on_issue(issue, "/breakglass staging 1h -- debugging");
        s.settle().await;
        let reply = s.next_bot_issue_comment(issue);
        assert!(
            reply.contains("your request is"),
            "the first request opens (and warms the policy cache): {reply}"
        );
        assert!(read_change_comments(&s).iter().any(|c| c.starts_with("🔓")));
        // alice is no longer a staging requester; the push webhook must end the cached copy.
        s.edit_policy(&s.people.carol, "staging", staging_without_alice);
        s.settle().await;
        s.note_on_issue(issue, &s.people.alice, "/breakglass staging 1h -- again");
        s.settle().await;
        let reply = s.next_bot_issue_comment(issue);
        assert!(
            !reply.contains("your request is") && reply.contains("alice"),
            "the edited policy refuses alice at once: {reply}"
        );
        assert_eq!(
            s.changes().len(),
            2,
            "no second request PR (the first and its revert)"
        );
    }
);

// A push webhook lists at most the last 20 commits (GitLab's cut; the test forge makes it on
// both dialects): a policy edited in an earlier commit of a longer push is not listed, so such
// a push ends the cached policies whatever it lists.
on_both_forges!(
    a_policy_edit_beyond_a_pushs_listed_commits_judges_the_next_request,
    |s: Scenario| async move {
        let issue = alice_granted_staging(&s).await;
        let path = "policies/staging.yaml";
        let policy = staging_without_alice(s.forge.file_on(REPO, "main", path).unwrap());
        s.forge
            .push_files(REPO, "bulk", &s.people.carol, &[(path, &policy)], "staging");
        for n in 0..20 {
            let note = format!("note {n}\n");
            s.forge.push_files(
                REPO,
                "bulk",
                &s.people.carol,
                &[("NOTES.md", &note)],
                "note",
            );
        }
        let tip = s.forge.branch_sha(REPO, "bulk").unwrap();
        s.forge.force_branch(REPO, "main", &s.people.carol, &tip);
        s.settle().await;
        s.note_on_issue(issue, &s.people.alice, "/breakglass staging 1h -- again");
        s.settle().await;
        let reply = s.next_bot_issue_comment(issue);
        assert!(
            !reply.contains("your request is") && reply.contains("alice"),
            "the policy edited 21 commits back refuses alice at once: {reply}"
        );
        read_change_comments(&s);
    }
);

on_both_forges!(
    a_person_taken_off_a_team_loses_its_rights_within_a_minute,
    |s: Scenario| async move {
        // erin may ask for prod only as a member of @acme/sre.
        let issue = s.open_issue(&s.people.erin, "checkout is down");
        s.note_on_issue(
            issue,
            &s.people.erin,
            "/breakglass prod 1h admin -- incident: INC-1 db",
        );
        s.settle().await;
        let reply = s.next_bot_issue_comment(issue);
        assert!(reply.contains("your request is"), "{reply}");
        read_change_comments(&s);
        s.forge.remove_team_member("acme/sre", &s.people.erin);
        s.advance(TimeDelta::seconds(61));
        s.note_on_issue(
            issue,
            &s.people.erin,
            "/breakglass prod 1h admin -- incident: INC-2 db",
        );
        s.settle().await;
        let reply = s.next_bot_issue_comment(issue);
        assert!(
            !reply.contains("your request is") && reply.contains("erin"),
            "a minute after leaving the team, erin is refused: {reply}"
        );
    }
);

on_both_backends!(
    unchanged_policies_are_read_once_not_per_request,
    |s: Scenario| async move {
        let issue = s.open_issue(&s.people.alice, "staging is broken");
        s.note_on_issue(issue, &s.people.alice, "/breakglass staging 1h -- one");
        s.settle().await;
        let before = s.forge.calls();
        s.note_on_issue(issue, &s.people.bob, "/breakglass staging 1h -- two");
        s.settle().await;
        let after = s.forge.calls();
        let listed = |c: &breakglass_test_forge::CallStats| c.count("GET", "/repos/{owner}/{repo}");
        assert_eq!(
            listed(&after),
            listed(&before),
            "the second request read neither the repository nor its policies again"
        );
        let replies = s.take_bot_issue_comments(issue);
        assert_eq!(replies.len(), 2, "{replies:?}");
        assert!(replies.iter().all(|c| c.contains("your request is")));
        read_change_comments(&s);
    }
);

on_both_backends!(
    policies_past_their_age_are_checked_again_without_reading_the_repository,
    |s: Scenario| async move {
        let issue = s.open_issue(&s.people.alice, "staging is broken");
        s.note_on_issue(issue, &s.people.alice, "/breakglass staging 1h -- one");
        s.settle().await;
        read_change_comments(&s);
        let before = s.forge.calls();
        // The copy of the policies is older than its five minutes: it is asked for again,
        // conditionally; the repository (whose ETag every push changes) is not read for the
        // default branch's name, which the policy reads do not need on GitHub.
        s.advance(TimeDelta::minutes(6));
        s.note_on_issue(issue, &s.people.bob, "/breakglass staging 1h -- two");
        s.settle().await;
        let after = s.forge.calls();
        let repository =
            |c: &breakglass_test_forge::CallStats| c.count("GET", "/repos/{owner}/{repo}");
        assert_eq!(repository(&after), repository(&before), "{after:#?}");
        assert!(
            after.not_modified >= before.not_modified + 2,
            "the policy directory and file were asked for again and answered 304: {after:#?}"
        );
        let replies = s.take_bot_issue_comments(issue);
        assert_eq!(replies.len(), 2, "{replies:?}");
        assert!(replies.iter().all(|c| c.contains("your request is")));
        read_change_comments(&s);
    }
);

// An admin makes `trunk` the default branch (a copy of `main` where alice may no longer ask
// for staging). The settings change sends no webhook, so the bot still knows the branch as
// `main`; its policy reads name no branch and so read `trunk`'s.
on_both_backends!(
    policies_are_read_from_the_branch_an_admin_made_the_default,
    |s: Scenario| async move {
        let issue = alice_granted_staging(&s).await;
        let path = "policies/staging.yaml";
        let stricter = staging_without_alice(s.forge.file_on(REPO, "main", path).unwrap());
        s.forge.push_files(
            REPO,
            "trunk",
            &s.people.carol,
            &[(path, &stricter)],
            "trunk",
        );
        s.settle().await;
        s.forge.set_default_branch(REPO, "trunk");
        s.advance(TimeDelta::minutes(6));
        s.note_on_issue(issue, &s.people.alice, "/breakglass staging 1h -- two");
        s.settle().await;
        let reply = s.next_bot_issue_comment(issue);
        assert!(
            !reply.contains("your request is") && reply.contains("alice"),
            "trunk's policy refuses alice: {reply}"
        );
        assert_eq!(
            s.changes().len(),
            2,
            "no new request PR (the first and its revert)"
        );
    }
);

// The same switch while the bot still builds on `main`: the PR it opens targets `main`, and
// its merge guard, which checks the base against the name the PR's own read carries, does
// not merge it into a branch that is no longer the default.
on_both_backends!(
    the_bot_merges_nothing_into_a_branch_that_stopped_being_the_default,
    |s: Scenario| async move {
        let issue = alice_granted_staging(&s).await;
        s.forge.push_files(
            REPO,
            "trunk",
            &s.people.carol,
            &[("TRUNK.md", "x\n")],
            "trunk",
        );
        s.settle().await;
        s.forge.set_default_branch(REPO, "trunk");
        s.note_on_issue(issue, &s.people.bob, "/breakglass staging 1h -- two");
        s.settle().await;
        let second = s.changes().last().unwrap().clone();
        assert_eq!(second.base_ref, "main", "built on the name the bot knew");
        assert!(!second.merged, "never merged into `main`");
        let comments = s.take_bot_comments(second.number);
        assert!(
            comments
                .iter()
                .any(|c| c.contains("targets `main`, not the default branch")),
            "{comments:?}"
        );
        assert!(
            !comments.iter().any(|c| c.starts_with("🔓")),
            "{comments:?}"
        );
        s.take_bot_issue_comments(issue);
    }
);

// Reconciliation compares active grants with the request directories as a net for lost push
// webhooks; while every push since its last listing was the bot's own merge, one after the
// other, the webhooks said everything and the pass costs nothing. Anyone else's push lists
// again.
on_both_backends!(
    a_reconciliation_pass_after_only_the_bots_own_merges_costs_nothing,
    |s: Scenario| async move {
        let issue = alice_granted_staging(&s).await;
        s.reconcile_now().await;
        s.note_on_issue(issue, &s.people.bob, "/breakglass staging 1h -- two");
        s.settle().await;
        assert!(s.next_bot_issue_comment(issue).contains("your request is"));
        read_change_comments(&s);
        let before = s.forge.calls();
        s.reconcile_now().await;
        let after = s.forge.calls();
        assert_eq!(
            after.rate_limited_cost, before.rate_limited_cost,
            "the bot's own merges only: {after:#?}"
        );
        s.forge.push_files(
            REPO,
            "main",
            &s.people.carol,
            &[("README.md", "hi\n")],
            "docs",
        );
        s.settle().await;
        let before = s.forge.calls();
        s.reconcile_now().await;
        let after = s.forge.calls();
        assert!(
            after.rate_limited_cost > before.rate_limited_cost,
            "carol pushed: the directory is listed again: {after:#?}"
        );
    }
);
