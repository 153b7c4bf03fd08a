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
        s.edit_policy(&s.people.carol, "staging", |p| {
            p.replace(
                "requesters: [\"@acme/engineering\", alice, bob, dave]",
                "requesters: [bob]",
            )
        });
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
