//! Stories of webhooks that arrive late or out of order: a request opened, a new version
//! pushed while the forge holds its webhooks, and chosen deliveries sent first.

use chrono::TimeDelta;

use super::{Dialect, REPO, Scenario, prod_request};

pub async fn poll(s: &Scenario) {
    s.advance(TimeDelta::seconds(30));
    s.settle().await;
}

pub async fn requested(s: &Scenario, id: &str) -> u64 {
    let pr = s.open_request(&s.people.alice, "prod", id, &prod_request("1h"));
    s.settle().await;
    let verdict = s.next_bot_comment(pr);
    assert!(verdict.starts_with("✅ **Request"), "{verdict}");
    pr
}

/// alice pushes a new version of request `id` while webhooks are held; returns nothing.
pub fn push_new_version(s: &Scenario, id: &str) {
    s.forge.advance_clock(TimeDelta::seconds(2));
    s.forge.push_files(
        REPO,
        &format!("request-{id}"),
        &s.people.alice,
        &[(&format!("requests/prod/{id}.yaml"), &prod_request("2h"))],
        "longer",
    );
}

/// The held deliveries matching `pick`, sent now (before every other held one).
pub async fn deliver_first(s: &Scenario, pick: impl Fn(&breakglass_test_forge::Delivery) -> bool) {
    let chosen: Vec<_> = s
        .forge
        .deliveries()
        .into_iter()
        .filter(|d| d.attempts == 0 && pick(d))
        .collect();
    assert!(!chosen.is_empty(), "no held delivery matched");
    for d in &chosen {
        assert!(s.forge.redeliver(&d.id));
    }
    s.settle().await;
}

pub fn is_approval_event(d: &breakglass_test_forge::Delivery) -> bool {
    d.event == "pull_request_review"
        || (d.event == "Merge Request Hook"
            && matches!(d.action.as_deref(), Some("approval" | "approved")))
}

/// Finishes the story: every held delivery sent, then a few polls (GitLab's safety-net poll
/// is 5 minutes).
pub async fn release_and_poll(s: &Scenario) {
    s.forge.set_webhooks_paused(false);
    s.forge.flush_webhooks();
    s.settle().await;
    for _ in 0..12 {
        poll(s).await;
    }
}

/// A label event (GitHub `labeled`; GitLab an MR `update` that is not a push).
pub fn is_label_event(d: &breakglass_test_forge::Delivery) -> bool {
    let body = String::from_utf8_lossy(&d.body);
    (d.event == "pull_request" && d.action.as_deref() == Some("labeled"))
        || (d.event == "Merge Request Hook"
            && d.action.as_deref() == Some("update")
            && !body.contains("\"oldrev\"")
            && body.contains("labels"))
}

pub fn is_approve_comment(d: &breakglass_test_forge::Delivery) -> bool {
    (d.event == "issue_comment" || d.event == "Note Hook")
        && String::from_utf8_lossy(&d.body).contains("/breakglass approve")
}

// The stories of an approval given after a push and heard before the push's webhook: each
// counts for the pushed version (2h), whatever the forge's clock says against the bot's.

/// An approving review (GitHub) or the Approve button (GitLab) of the new head, heard first.
pub async fn approve_button_after_a_push_heard_first(s: &Scenario) {
    let pr = requested(s, "r1").await;
    s.forge.set_webhooks_paused(true);
    push_new_version(s, "r1");
    s.approve_button(pr, &s.people.carol); // a second after the push, of the new head
    deliver_first(s, is_approval_event).await;
    release_and_poll(s).await;
    assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    assert_eq!(
        s.request("r1").await.duration_secs,
        7200,
        "the pushed version"
    );
    s.take_bot_comments(pr);
}

/// `/breakglass approve` handled first; with two approvals needed, carol's (told "1 of 2")
/// and dan's later one merge the pushed version.
pub async fn approve_comment_after_a_push_heard_first(s: &Scenario) {
    s.prod_needs_two_approvals().await;
    let pr = requested(s, "r1").await;
    s.forge.set_webhooks_paused(true);
    push_new_version(s, "r1");
    s.approve(pr, &s.people.carol);
    deliver_first(s, is_approve_comment).await;
    release_and_poll(s).await;
    s.approve(pr, &s.people.dan);
    s.settle().await;
    assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    assert_eq!(s.request("r1").await.duration_secs, 7200);
    s.take_bot_comments(pr);
}

/// A 👍 seen first (GitHub's poll, GitLab's Emoji Hook), though GitHub's reaction list is
/// unchanged (a 304) once the push is handled.
pub async fn emoji_after_a_push_seen_first(s: &Scenario) {
    let pr = requested(s, "r1").await;
    s.forge.set_webhooks_paused(true);
    push_new_version(s, "r1");
    s.emoji(pr, &s.people.carol, "+1"); // a second after the push
    match s.dialect {
        Dialect::GitHub => poll(s).await, // the poll sees it; the push webhook waits
        Dialect::GitLab => deliver_first(s, |d| d.event == "Emoji Hook").await,
    }
    release_and_poll(s).await;
    assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    assert_eq!(s.request("r1").await.duration_secs, 7200);
    s.take_bot_comments(pr);
}

/// The answers a request gets when the bot judges an emoji given before a push while that
/// push's webhook is still on its way, taken out of `said`: at most one refused merge for the
/// moved head (GitLab sends the award as an event at once), and at most one ask to approve
/// again (the bot sees the new head but not yet when it was pushed, so it cannot tell which
/// version the emoji approves). Which of them comes depends on the order the bot hears things in.
pub fn without_answers_to_a_late_push(mut said: Vec<String>) -> Vec<String> {
    for late in [
        "⚠️ Not merged: the pull request's head moved to ",
        "⏱️ @carol, your approval came within the same second as the latest push",
    ] {
        let before = said.len();
        said.retain(|c| !c.starts_with(late));
        assert!(
            before - said.len() <= 1,
            "{late} said more than once: {said:#?}"
        );
    }
    said
}
