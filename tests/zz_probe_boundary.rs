//! Security-review probes of the trust boundary (SPEC "The flow" 5–8, "Trust boundary").
//! Each probe FAILS while the weakness it shows is there, and passes once it is fixed.

mod common;

use std::time::Duration;

use common::*;

/// Waits (up to ~8 s) until `done` holds; returns whether it did. Unlike `settle`, it does not
/// panic when a delivery keeps failing, so the probe can say what stayed behind.
async fn eventually(s: &Scenario, done: impl Fn(&Scenario) -> bool) -> bool {
    for _ in 0..80 {
        s.forge.settle().await;
        if done(s) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn failing_deliveries(s: &Scenario) -> Vec<(String, Option<String>)> {
    sqlx::query_as("SELECT id, last_error FROM deliveries WHERE state = 'pending'")
        .fetch_all(s.store.pool())
        .await
        .unwrap()
}

// P1. SPEC: "files that land anyway are removed in full" / "A request that lands on the default
// branch without the bot (direct push) is revoked/flagged." The removal branch is named after
// the file's stem verbatim (`breakglass/removal/<stem>-<nonce>`), so one file whose stem is not a
// valid ref name (a space) makes the branch creation fail; the groups are removed in sorted
// order with `?`, so every other file of the push (here a request file) stays on main too, and
// the push delivery fails forever.
on_both_forges!(
    probe_a_grant_file_with_a_space_in_its_name_blocks_every_removal_of_the_push,
    |s: Scenario| async move {
        let yaml = prod_request("4h");
        s.forge.push_direct(
            REPO,
            &s.people.mallory,
            &[
                ("requests/prod/r9.yaml", &yaml),
                ("grants/prod/a b.tf", "resource \"aws_iam_user_policy\" \"x\" {}\n"),
            ],
            "grant myself",
        );
        let removed = eventually(&s, |s| {
            let files = s.forge.files_on(REPO, "main");
            !files.contains(&"requests/prod/r9.yaml".to_owned())
                && !files.contains(&"grants/prod/a b.tf".to_owned())
        })
        .await;
        let stuck = failing_deliveries(&s).await;
        assert!(
            removed,
            "files pushed straight to main are still there: {:?}; failing deliveries: {stuck:?}",
            s.forge
                .files_on(REPO, "main")
                .into_iter()
                .filter(|f| f.starts_with("requests/") || f.starts_with("grants/"))
                .collect::<Vec<_>>()
        );
        s.settle().await;
        for c in s.changes() {
            s.take_bot_comments(c.number);
        }
    }
);
