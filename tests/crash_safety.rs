//! No grant is ever left alive past its expiry: not after a crash, a forge outage or a restart.
//! Each story kills the service where it stands (no graceful shutdown), moves time, starts a
//! new service on the same database, and checks that the revocation happened. And nothing is
//! lost while the service is down: a request opened or pushed to meanwhile is decided at start.

mod common;

use std::time::{Duration, Instant};

use breakglass::clock::Clock;
use breakglass::store::{Approval, ApprovalSource, JobKind, RequestRecord, RequestState};
use breakglass_test_forge::FailureKind;
use chrono::TimeDelta;
use common::*;
use http::Method;

/// Waits (real time) until the request is revoked and its revert is done (the revert is
/// forge work that follows the revoke), nudging the clock so that retries with backoff become
/// due; returns how long it took.
async fn until_revoked(s: &Scenario, id: &str) -> Duration {
    let started = Instant::now();
    for _ in 0..200 {
        if s.request(id).await.state.to_string() == "revoked"
            && !s.events(id, "revert").await.is_empty()
        {
            let took = started.elapsed();
            s.settle().await;
            return took;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        s.advance(TimeDelta::seconds(5));
    }
    panic!("{id} was never revoked: {:?}", s.request(id).await);
}

on_both_forges!(
    a_crash_after_the_merge_still_revokes_at_ttl,
    |mut s: Scenario| async move {
        let pr = s.granted("r-crash", "1h").await;
        s.crash().await;
        s.advance(TimeDelta::hours(2)); // the TTL passes while the bot is down
        s.start_service().await;
        let took = until_revoked(&s, "r-crash").await;
        assert!(
            took < Duration::from_secs(5),
            "overdue revocations fire at start ({took:?})"
        );
        let record = s.request("r-crash").await;
        assert!(s.change(record.revert_pr_number.unwrap()).merged);
        assert!(
            s.forge
                .files_on(REPO, "main")
                .iter()
                .all(|f| !f.starts_with("requests/"))
        );
        let revoked = s.next_bot_comment(pr);
        assert!(revoked.starts_with("🔒 **Access revoked**"), "{revoked}");
    }
);

on_both_forges!(
    a_crash_before_the_revert_pr_exists_still_revokes,
    |mut s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-norevert", &prod_request("1h"));
        s.settle().await;
        // The forge refuses to open PRs (every attempt of the revert step's one run), so the
        // revert PR does not exist when the bot dies.
        s.fail_next(Route::Changes, Method::POST, 4, FailureKind::Status(500));
        s.expect_job_error(JobKind::OpenRevert, "HTTP 500");
        s.by(&s.people.carol).approve(pr);
        s.settle().await;
        assert!(s.change(pr).merged);
        assert_eq!(
            s.request("r-norevert").await.revert_pr_number,
            None,
            "no revert PR yet"
        );
        s.crash().await;
        s.advance(TimeDelta::hours(2));
        s.start_service().await;
        until_revoked(&s, "r-norevert").await;
        let record = s.request("r-norevert").await;
        let revert = record.revert_pr_number.expect("created on restart");
        assert!(s.change(revert).merged);
        let verdict = s.next_bot_comment(pr);
        assert!(
            verdict.starts_with("✅ **Request `r-norevert` is allowed**"),
            "{verdict}"
        );
        // The expiry comment does not wait for the revert PR: it was said before the crash.
        let granted = s.next_bot_comment(pr);
        assert!(granted.starts_with("🔓 **Access granted.**"), "{granted}");
        assert!(s.change(revert).body.contains(&s.change_ref(pr)));
        let revoked = s.next_bot_comment(pr);
        assert!(revoked.starts_with("🔒 **Access revoked**"), "{revoked}");
    }
);

on_both_forges!(
    forge_errors_during_the_revoke_are_retried_until_it_succeeds,
    |s: Scenario| async move {
        let pr = s.granted("r-flaky", "1h").await;
        s.fail_next(Route::Merge, Method::PUT, 6, FailureKind::Status(502));
        s.expect_job_error(JobKind::Revert, "HTTP 502");
        s.fail_next(
            Route::Notes,
            Method::POST,
            2,
            FailureKind::SecondaryRateLimit429 { retry_after: 1 },
        );
        s.advance(TimeDelta::hours(1));
        until_revoked(&s, "r-flaky").await;
        let record = s.request("r-flaky").await;
        assert!(s.change(record.revert_pr_number.unwrap()).merged);
        // The failures did happen: six refused merges before the one that went through.
        assert!(s.forge.calls().count("PUT", s.route(Route::Merge)) >= 7);
        let revoked = s.next_bot_comment(pr);
        assert!(revoked.starts_with("🔒 **Access revoked**"), "{revoked}");
    }
);

/// The state a crash leaves when it strikes inside a step: the step's job is still there and
/// runs again at the next start. Found by the chaos runs (tests/chaos.rs).
async fn run_again(s: &Scenario, kind: JobKind, id: &str) {
    let id = id.to_owned().try_into().unwrap();
    let now = s.clock.now();
    s.store.schedule_job(kind, &id, now, now).await.unwrap();
    s.settle().await;
}

/// Reads every unread bot comment on `pr` and counts those that start with `marker`.
fn said(s: &Scenario, pr: u64, marker: &str) -> usize {
    let comments = s.take_bot_comments(pr);
    comments.iter().filter(|c| c.starts_with(marker)).count()
}

on_both_forges!(
    a_crash_between_the_merge_and_its_timers_still_revokes_at_ttl,
    |s: Scenario| async move {
        let pr = s.granted("r-midmerge", "1h").await;
        // Killed after the merge was stored as active, before the revoke job was written:
        // the merge job runs again and finds the request active.
        let id = "r-midmerge".to_owned().try_into().unwrap();
        s.store.cancel_job(JobKind::Revoke, &id).await.unwrap();
        run_again(&s, JobKind::Merge, "r-midmerge").await;
        s.expect_no_bot_comment(pr);
        s.advance(TimeDelta::hours(1));
        until_revoked(&s, "r-midmerge").await;
        assert_eq!(s.events("r-midmerge", "merge").await.len(), 1);
        assert_eq!(s.events("r-midmerge", "grant").await.len(), 1);
        let revoked = s.next_bot_comment(pr);
        assert!(revoked.starts_with("🔒 **Access revoked**"), "{revoked}");
    }
);

on_both_backends!(
    reconciliation_gives_an_active_grant_without_a_revoke_job_one_at_its_expiry,
    |s: Scenario| async move {
        let pr = s.granted("r-norevoke", "1h").await;
        // A crash, or a bug, lost the revoke job; the merge job is gone too.
        let id = "r-norevoke".to_owned().try_into().unwrap();
        s.store.cancel_job(JobKind::Revoke, &id).await.unwrap();
        let workflows = s.service.as_ref().unwrap().workflows.clone();
        workflows.shared().reconcile_all().await.unwrap();
        let jobs = s.store.jobs_for_request(&id).await.unwrap();
        let revoke = jobs.iter().find(|j| j.kind == JobKind::Revoke);
        let expires_at = s.request("r-norevoke").await.expires_at;
        assert_eq!(revoke.map(|j| j.run_at), expires_at, "{jobs:?}");
        s.advance(TimeDelta::hours(1));
        until_revoked(&s, "r-norevoke").await;
        let revoked = s.next_bot_comment(pr);
        assert!(revoked.starts_with("🔒 **Access revoked**"), "{revoked}");
    }
);

on_both_forges!(
    a_grant_step_run_again_grants_and_says_it_once,
    |s: Scenario| async move {
        let pr = s.granted("r-regrant", "1h").await;
        run_again(&s, JobKind::Grant, "r-regrant").await;
        assert_eq!(s.events("r-regrant", "grant").await.len(), 1);
        s.expect_no_bot_comment(pr);
    }
);

on_both_forges!(
    a_revert_step_run_again_says_revoked_once,
    |s: Scenario| async move {
        let pr = s.granted("r-rerevert", "1h").await;
        s.advance(TimeDelta::hours(1));
        until_revoked(&s, "r-rerevert").await;
        assert_eq!(said(&s, pr, "🔒"), 1);
        // What a revert step killed after its note, before its job was done, leaves: the
        // step runs again, finds the revert logged and the note on the thread.
        run_again(&s, JobKind::Revert, "r-rerevert").await;
        assert_eq!(s.events("r-rerevert", "revert").await.len(), 1);
        assert_eq!(said(&s, pr, "🔒"), 0, "said twice");
    }
);

on_both_forges!(
    a_revert_step_cut_off_between_its_log_and_its_note_still_says_revoked_once,
    |s: Scenario| async move {
        let pr = s.granted("r-cutnote", "1h").await;
        // The revert is logged, then its note fails (each of the run's attempts): the step
        // is left as a kill between the log and the note leaves it, due again later.
        s.fail_next(Route::Notes, Method::POST, 4, FailureKind::Status(500));
        s.expect_job_error(JobKind::Revert, "HTTP 500");
        s.advance(TimeDelta::hours(1));
        until_revoked(&s, "r-cutnote").await;
        assert_eq!(s.events("r-cutnote", "revert").await.len(), 1);
        // The step runs again (its backoff passes) and says it: never zero times, never twice.
        for _ in 0..20 {
            s.advance(TimeDelta::minutes(1));
            s.settle().await;
        }
        assert_eq!(said(&s, pr, "🔒 **Access revoked**"), 1);
        assert_eq!(s.events("r-cutnote", "revert").await.len(), 1);
    }
);

// dan's emoji approves alice's extension, and the step fails after the new expiry is stored,
// before its note (each attempt of the run): nothing is asked on the new expiry any more, yet
// the step run again (GitHub's poll, GitLab's emoji delivery) still says it, once, and the
// reminder moves to the new expiry.
on_both_forges!(
    an_extension_by_emoji_cut_off_before_its_note_still_says_it_once,
    |s: Scenario| async move {
        let pr = s.granted("r-extnote", "1h").await;
        let granted = s.request("r-extnote").await.expires_at.unwrap();
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(pr, &s.people.alice, "/breakglass extend 30m");
        s.settle().await;
        assert_eq!(said(&s, pr, "⏳ @alice asks for 30m more"), 1);
        s.fail_next(Route::Notes, Method::POST, 4, FailureKind::Status(500));
        match s.dialect {
            Dialect::GitHub => s.expect_job_error(JobKind::Poll, "HTTP 500"),
            Dialect::GitLab => s.expect_delivery_error("HTTP 500"),
        }
        s.emoji(pr, &s.people.dan, "+1");
        match s.dialect {
            Dialect::GitHub => {
                s.advance(TimeDelta::seconds(31));
                s.settle().await;
            }
            Dialect::GitLab => s.until_a_delivery_failed().await,
        }
        let extended = s.request("r-extnote").await.expires_at.unwrap();
        assert_eq!(extended - granted, TimeDelta::minutes(30));
        for _ in 0..10 {
            s.advance(TimeDelta::minutes(1));
            s.settle().await;
        }
        assert_eq!(said(&s, pr, "⏳ Extended"), 1);
        let id = "r-extnote".to_owned().try_into().unwrap();
        let jobs = s.store.jobs_for_request(&id).await.unwrap();
        let remind = jobs.iter().find(|job| job.kind == JobKind::Remind).unwrap();
        assert_eq!(remind.run_at, extended - TimeDelta::minutes(10), "{jobs:?}");
    }
);

/// Stores carol's approval by comment `comment` of `record`, as the approval step does.
async fn store_carols_comment_approval(s: &Scenario, record: &RequestRecord, comment: u64) {
    s.store
        .add_approval(&Approval {
            request_id: record.id.clone(),
            signal: format!("comment:{comment}"),
            approver_id: s.people.carol.id,
            approver_login: "carol".to_owned().try_into().unwrap(),
            source: ApprovalSource::Comment,
            head_sha: record.head_sha.clone(),
            approved_at: s.forge.now(),
        })
        .await
        .unwrap();
}

/// carol's `/breakglass approve` on `pr`, stored with the request approved, as a kill right
/// after the approval step's store write leaves it: the service down, the comment's webhook
/// not handled (paused: it reaches the bot when the test resumes the webhooks).
/// The bot's comments on `pr` start with `prefixes`, in order, besides a reply to carol's
/// `/breakglass approve`: the killed run counted it without answering, and the catch-up at
/// start hands it over again, answered by the request's state then ("approved and being
/// merged", or, once granted, that no extension is asked for).
#[track_caller]
fn assert_said_besides_the_approve_reply(s: &Scenario, pr: u64, prefixes: &[&str]) {
    let approve_reply = |c: &String| {
        c.starts_with("ℹ️ `/breakglass approve` does not apply")
            || c.starts_with("ℹ️ Nothing to approve: this grant is active")
    };
    let said: Vec<String> = s
        .take_bot_comments(pr)
        .into_iter()
        .filter(|c| !approve_reply(c))
        .collect();
    assert_eq!(said.len(), prefixes.len(), "{said:#?}");
    for (comment, prefix) in said.iter().zip(prefixes) {
        assert!(
            comment.starts_with(prefix),
            "{comment} should start with {prefix}"
        );
    }
}

async fn approved_then_killed(s: &mut Scenario, pr: u64, id: &str) -> RequestRecord {
    s.forge.set_webhooks_paused(true);
    s.forge.advance_clock(TimeDelta::seconds(1));
    let comment = s.note(pr, &s.people.carol, "/breakglass approve");
    s.crash().await;
    let now = s.clock.now();
    let mut record = s.request(id).await;
    store_carols_comment_approval(s, &record, comment).await;
    record.state = RequestState::Approved;
    record.approved_by = Some(vec!["carol".to_owned().try_into().unwrap()]);
    s.store.update_request(&mut record, now).await.unwrap();
    record
}

on_both_backends!(
    a_crash_right_after_the_bots_own_merge_is_not_taken_for_a_hand_merge,
    |mut s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-cutoff", &prod_request("1h"));
        s.settle().await;
        let mut record = approved_then_killed(&mut s, pr, "r-cutoff").await;
        // Killed between the bot's merge call and its store write: the grant time fixed (it
        // is, right before the merge), the merge job still queued.
        let now = s.clock.now();
        record.granted_at = Some(now);
        record.expires_at = Some(now + TimeDelta::hours(1));
        s.store.update_request(&mut record, now).await.unwrap();
        s.store
            .schedule_job(JobKind::Merge, &record.id, now + TimeDelta::minutes(1), now)
            .await
            .unwrap();
        s.start_service().await;
        s.forge.set_webhooks_paused(false);
        s.forge.flush_webhooks();
        // The forge's "closed, merged" webhook reaches the restarted bot before its merge job.
        s.forge.merge_pr(REPO, pr, &s.people.bot);
        s.settle().await;
        s.advance(TimeDelta::minutes(1));
        s.settle().await;
        let record = s.request("r-cutoff").await;
        assert_eq!(record.state, RequestState::Active, "{record:?}");
        assert_eq!(s.events("r-cutoff", "grant").await.len(), 1);
        s.advance(TimeDelta::hours(1));
        until_revoked(&s, "r-cutoff").await;
        assert!(
            s.forge
                .files_on(REPO, "main")
                .iter()
                .all(|f| !f.starts_with("requests/"))
        );
        assert_said_besides_the_approve_reply(
            &s,
            pr,
            &[
                "✅ **Request",
                "🔓 **Access granted.**",
                "🔒 **Access revoked**",
            ],
        );
    }
);

on_both_backends!(
    a_crash_between_the_approval_and_the_merge_job_still_merges,
    |mut s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-nomerge", &prod_request("1h"));
        s.settle().await;
        // Killed after the approval was stored, before the merge job was written: the
        // delivery runs again, finds the request no longer pending and does nothing; the
        // reconciliation at start approves it again.
        approved_then_killed(&mut s, pr, "r-nomerge").await;
        s.start_service().await;
        s.forge.set_webhooks_paused(false);
        s.forge.flush_webhooks();
        s.settle().await;
        let record = s.request("r-nomerge").await;
        assert_eq!(record.state, RequestState::Active, "{record:?}");
        assert!(s.change(pr).merged);
        assert_eq!(s.events("r-nomerge", "merge").await.len(), 1);
        assert_said_besides_the_approve_reply(&s, pr, &["✅ **Request", "🔓 **Access granted.**"]);
    }
);

on_both_forges!(
    a_grant_revoked_early_before_its_grant_step_finished_is_still_announced,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-early", &prod_request("1h"));
        s.settle().await;
        // The grant is applied and logged, then its note fails (each of the run's attempts):
        // the step is due again later.
        s.fail_next(Route::Notes, Method::POST, 4, FailureKind::Status(500));
        s.expect_job_error(JobKind::Grant, "HTTP 500");
        s.by(&s.people.carol).approve(pr);
        s.settle().await;
        assert_eq!(s.events("r-early", "grant").await.len(), 1);
        // Revoked before the grant step runs again.
        s.note(pr, &s.people.alice, "/breakglass revoke");
        until_revoked(&s, "r-early").await;
        s.advance(TimeDelta::minutes(1));
        s.settle().await;
        let comments = s.take_bot_comments(pr);
        let count = |marker: &str| comments.iter().filter(|c| c.starts_with(marker)).count();
        assert_eq!(
            (
                count("🔓 **Access granted.**"),
                count("🔒 **Access revoked**")
            ),
            (1, 1),
            "{comments:#?}"
        );
        // In that order: "granted" after "revoked" would tell the requester they have access.
        let at = |marker: &str| comments.iter().position(|c| c.starts_with(marker));
        assert!(at("🔓") < at("🔒"), "granted after revoked: {comments:#?}");
    }
);

/// The state a kill leaves when it strikes after a delivery's work and before the delivery was
/// marked done: the delivery (here, each whose payload holds `text`) is pending again and is
/// handled again.
async fn handled_again(s: &Scenario, text: &str) {
    let pattern = format!("%{text}%");
    let reopened = sqlx::query(
        "UPDATE deliveries SET state = 'pending', locked_by = NULL, locked_until = NULL \
         WHERE payload LIKE $1",
    )
    .bind(&pattern)
    .execute(s.store.pool())
    .await
    .unwrap();
    assert!(reopened.rows_affected() >= 1, "no delivery holds {text:?}");
    s.settle().await;
}

on_both_forges!(
    a_breakglass_comment_handled_again_opens_one_request,
    |s: Scenario| async move {
        let issue = s.open_issue(&s.people.alice, "staging is broken");
        s.note_on_issue(
            issue,
            &s.people.alice,
            "/breakglass staging 1h -- handled twice",
        );
        s.settle().await;
        handled_again(&s, "handled twice").await;
        let requests = s.store.list_requests(None).await.unwrap();
        assert_eq!(requests.len(), 1, "{requests:#?}");
        // The request PR and its revert PR, once each.
        assert_eq!(s.changes().len(), 2);
        let replies = s.take_bot_issue_comments(issue);
        assert_eq!(replies.len(), 1, "{replies:#?}");
        assert!(replies[0].contains("your request is"), "{replies:#?}");
        let pr = requests[0].pr_number;
        let said = s.take_bot_comments(pr);
        let granted = said.iter().filter(|c| c.starts_with("🔓")).count();
        assert_eq!(granted, 1, "{said:#?}");
    }
);

on_both_forges!(
    an_extend_comment_handled_again_extends_once,
    |s: Scenario| async move {
        let pr = s.granted("r-twice", "3h").await;
        s.note(pr, &s.people.carol, "/breakglass extend 30m");
        s.settle().await;
        let extended = s.request("r-twice").await.expires_at;
        let said = s.next_bot_comment(pr);
        assert!(said.starts_with("⏳ Extended"), "{said}");
        handled_again(&s, "/breakglass extend 30m").await;
        assert_eq!(s.request("r-twice").await.expires_at, extended);
        assert_eq!(s.events("r-twice", "extend").await.len(), 1);
        s.expect_no_bot_comment(pr);
        // The revoke follows the one extension.
        s.advance(TimeDelta::hours(3) + TimeDelta::minutes(30));
        until_revoked(&s, "r-twice").await;
        let record = s.request("r-twice").await;
        let late = record.revoked_at.unwrap() - extended.unwrap();
        assert!(
            late < TimeDelta::minutes(1),
            "revoked {late} after the expiry"
        );
        s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
    }
);

on_both_backends!(
    an_approval_stored_before_a_kill_is_acted_on_when_its_comment_is_handled_again,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-unacted", &prod_request("1h"));
        s.settle().await;
        s.forge.set_webhooks_paused(true);
        s.forge.advance_clock(TimeDelta::seconds(1));
        let comment = s.note(pr, &s.people.carol, "/breakglass approve");
        // What a kill after the approval step stored the approval, before it acted on it,
        // leaves: the approval stored, the request pending, the comment's delivery to handle.
        let record = s.request("r-unacted").await;
        store_carols_comment_approval(&s, &record, comment).await;
        s.forge.set_webhooks_paused(false);
        s.forge.flush_webhooks();
        s.settle().await;
        let record = s.request("r-unacted").await;
        assert_eq!(record.state, RequestState::Active, "{record:?}");
        assert!(s.change(pr).merged);
        // The kill came before the approval's event was logged: handled again, it is logged
        // (once), so the audit log knows who approved.
        let logged = s.events("r-unacted", "approval").await;
        assert_eq!(logged.len(), 1, "{logged:#?}");
        assert_eq!(logged[0].data["signal"], format!("comment:{comment}"));
        s.expect_bot_comments(pr, &["✅ **Request", "🔓 **Access granted.**"]);
    }
);

on_both_backends!(
    a_merge_job_run_again_after_its_grant_was_ended_still_logs_the_merge,
    |mut s: Scenario| async move {
        let pr = s.granted("r-endfirst", "1h").await;
        let merged = s.request("r-endfirst").await;
        s.advance(TimeDelta::hours(1));
        until_revoked(&s, "r-endfirst").await;
        s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
        // The logged merge of a request stored merged, then revoked before the merge job ran
        // again (the kill came between the merge's store write and its log entry): that run
        // must log it. Replayed on a second request with the same history, minus its event.
        s.crash().await;
        let now = s.clock.now();
        let mut record = s.request("r-endfirst").await;
        record.id = "r-endfirst-2".to_owned().try_into().unwrap();
        record.pr_number = pr + 1000;
        s.store.insert_request(&record).await.unwrap();
        s.store
            .schedule_job(JobKind::Merge, &record.id, now, now)
            .await
            .unwrap();
        s.start_service().await;
        s.settle().await;
        let logged = s.events("r-endfirst-2", "merge").await;
        assert_eq!(logged.len(), 1, "{logged:#?}");
        assert_eq!(
            logged[0].data["merge_sha"],
            serde_json::json!(merged.merge_sha)
        );
        assert_eq!(s.request("r-endfirst-2").await.state, RequestState::Revoked);
    }
);

on_both_forges!(
    an_extend_cut_off_before_its_note_says_it_when_handled_again,
    |s: Scenario| async move {
        let pr = s.granted("r-quiet", "3h").await;
        // The extension is stored, then its note fails (each attempt of the call): the
        // delivery is handled again later, as after a kill between the two.
        s.fail_next(Route::Notes, Method::POST, 4, FailureKind::Status(500));
        s.expect_delivery_error("HTTP 500");
        s.note(pr, &s.people.carol, "/breakglass extend 30m");
        s.until_a_delivery_failed().await;
        assert_eq!(s.events("r-quiet", "extend").await.len(), 1);
        s.advance(TimeDelta::minutes(1));
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(said.starts_with("⏳ Extended"), "{said}");
        s.expect_no_bot_comment(pr);
        assert_eq!(
            s.events("r-quiet", "extend").await.len(),
            1,
            "extended once"
        );
    }
);

on_both_forges!(
    a_deny_cut_off_before_its_note_says_it_and_closes_the_pr_when_handled_again,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-deny", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r-deny` is allowed**"]);
        // The close is stored, then its note fails (each attempt of the call): the delivery
        // is handled again later, as after a kill between the two. Before, the request was
        // closed already, so the retry said the deny did not apply, and the PR stayed open.
        s.fail_next(Route::Notes, Method::POST, 4, FailureKind::Status(500));
        s.expect_delivery_error("HTTP 500");
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(pr, &s.people.carol, "/breakglass deny -- nope");
        s.until_a_delivery_failed().await;
        assert_eq!(s.request("r-deny").await.state, RequestState::Closed);
        s.advance(TimeDelta::minutes(1));
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(pr),
            "🚫 Request denied by @carol: `nope`. Closing."
        );
        s.expect_no_bot_comment(pr);
        assert_eq!(s.change(pr).state, "closed", "the denied PR is closed");
    }
);

on_both_forges!(
    an_approval_whose_reply_failed_says_its_count_when_handled_again,
    |s: Scenario| async move {
        s.prod_needs_two_approvals().await;
        let pr = s.open_request(&s.people.alice, "prod", "r-count", &prod_request("1h"));
        s.settle().await;
        s.expect_bot_comments(pr, &["✅ **Request `r-count` is allowed**"]);
        // The approval is stored, then its reply fails (each attempt of the call). Before,
        // the retry found the approval stored and said nothing: carol never learnt that it
        // counted.
        s.fail_next(Route::Notes, Method::POST, 4, FailureKind::Status(500));
        s.expect_delivery_error("HTTP 500");
        s.forge.advance_clock(TimeDelta::seconds(1));
        s.note(pr, &s.people.carol, "/breakglass approve");
        s.until_a_delivery_failed().await;
        s.advance(TimeDelta::minutes(1));
        s.settle().await;
        assert_eq!(
            s.next_bot_comment(pr),
            "👍 Approval by @carol recorded (1 of 2)."
        );
        s.expect_no_bot_comment(pr);
        assert!(!s.change(pr).merged, "one approval of two");
        assert_eq!(s.events("r-count", "approval").await.len(), 1);
    }
);

on_both_forges!(
    a_request_comment_whose_reply_failed_names_its_pr_when_handled_again,
    |s: Scenario| async move {
        let issue = s.open_issue(&s.people.alice, "staging is broken");
        // The request is opened, then its reply on the issue fails (each attempt). Before,
        // the retry found the request opened and said nothing where alice asked.
        // GitHub's `/issues/{n}/comments`, GitLab's `/issues/{iid}/notes`.
        let on_issue = format!("/issues/{issue}/");
        let reply_on_issue =
            move |method: &Method, path: &str| method == Method::POST && path.contains(&on_issue);
        s.forge.fail_next(breakglass_test_forge::FailureSpec {
            route: breakglass_test_forge::RouteMatcher::Predicate(std::sync::Arc::new(
                reply_on_issue,
            )),
            count: 4,
            kind: FailureKind::Status(500),
        });
        s.expect_delivery_error("HTTP 500");
        s.note_on_issue(issue, &s.people.alice, "/breakglass staging 1h -- one");
        s.until_a_delivery_failed().await;
        s.advance(TimeDelta::minutes(1));
        s.settle().await;
        let reply = s.next_bot_issue_comment(issue);
        assert!(reply.starts_with("📝 @alice, your request is "), "{reply}");
        s.expect_no_bot_issue_comment(issue);
        let opened: Vec<_> = s
            .changes()
            .into_iter()
            .filter(|p| p.head_ref.starts_with("breakglass/request/"))
            .collect();
        assert_eq!(opened.len(), 1, "one request opened: {opened:#?}");
        s.expect_bot_comments(
            opened[0].number,
            &["✅ **Request", "🔓 **Access granted.**"],
        );
    }
);

/// Installs trigger `name` on `table` (`event`: `BEFORE INSERT`, `AFTER INSERT`), which runs
/// `body` (SQL statements; `NEW` is the row) on SQLite and PostgreSQL alike: a fault injected
/// into the bot's own writes, at a point no forge call reaches.
async fn add_trigger(s: &Scenario, name: &str, event: &str, table: &str, body: &str) {
    let statements = match s.store.backend() {
        breakglass::store::Backend::Sqlite => {
            vec![format!(
                "CREATE TRIGGER {name} {event} ON {table} BEGIN {body} END"
            )]
        }
        breakglass::store::Backend::Postgres => vec![
            format!(
                "CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN {body} RETURN NEW; END $$ \
                 LANGUAGE plpgsql"
            ),
            format!(
                "CREATE TRIGGER {name} {event} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()"
            ),
        ],
    };
    for statement in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(s.store.pool())
            .await
            .unwrap();
    }
}

async fn drop_trigger(s: &Scenario, name: &str, table: &str) {
    let statement = match s.store.backend() {
        breakglass::store::Backend::Sqlite => format!("DROP TRIGGER {name}"),
        breakglass::store::Backend::Postgres => format!("DROP TRIGGER {name} ON {table}"),
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(s.store.pool())
        .await
        .unwrap();
}

/// Every new request row fails to store until the trigger is dropped: a run of a `/breakglass`
/// comment then stops after opening its PR and before recording its request, as when it is
/// killed there, or while another replica's run of the same delivery goes on.
async fn refuse_request_rows(s: &Scenario) {
    let body = match s.store.backend() {
        breakglass::store::Backend::Sqlite => {
            "SELECT RAISE(ABORT, 'injected: no request rows now');"
        }
        breakglass::store::Backend::Postgres => "RAISE EXCEPTION 'injected: no request rows now';",
    };
    add_trigger(s, "refuse_requests", "BEFORE INSERT", "requests", body).await;
}

on_both_forges!(
    a_comment_request_stopped_before_its_record_keeps_the_pr_it_opened,
    |s: Scenario| async move {
        let issue = s.open_issue(&s.people.alice, "staging is broken");
        refuse_request_rows(&s).await;
        s.expect_delivery_error("injected: no request rows now");
        s.note_on_issue(issue, &s.people.alice, "/breakglass staging 1h -- one");
        s.until_a_delivery_failed().await;
        drop_trigger(&s, "refuse_requests", "requests").await;
        s.advance(TimeDelta::minutes(1));
        s.settle().await;
        // Before, the comment handled again closed the PR its first run had opened and opened
        // another: with two runs at once (two replicas), the first run went on to decide and
        // merge a PR that the second had closed, and the request never got its access.
        one_request_pr_granted(&s, issue).await;
    }
);

on_both_forges!(
    a_request_build_another_run_took_over_stops_and_takes_back_its_branch,
    |s: Scenario| async move {
        let issue = s.open_issue(&s.people.alice, "staging is broken");
        // Right after this run claims the build, another run (one delivery handled by two
        // replicas at once) takes it over, as its claim of the subject would.
        let taken = "UPDATE changes SET branch = 'breakglass/request/taken-over' \
                     WHERE subject = NEW.subject AND kind = NEW.kind;";
        add_trigger(&s, "take_over", "AFTER INSERT", "changes", taken).await;
        s.expect_delivery_error("another run is building the request change");
        s.note_on_issue(issue, &s.people.alice, "/breakglass staging 1h -- one");
        s.until_a_delivery_failed().await;
        drop_trigger(&s, "take_over", "changes").await;
        // Before, the run went on writing its own build over the other's record.
        let repo = git2::Repository::open_bare(s.forge.repo_path(REPO)).unwrap();
        let left: Vec<String> = repo
            .branches(Some(git2::BranchType::Local))
            .unwrap()
            .filter_map(|b| b.unwrap().0.name().unwrap().map(str::to_owned))
            .filter(|name| name.starts_with("breakglass/request/"))
            .collect();
        assert!(
            left.is_empty(),
            "the stopped run took back its branch: {left:?}"
        );
        assert!(
            s.changes()
                .iter()
                .all(|p| !p.head_ref.starts_with("breakglass/request/"))
        );
        s.advance(TimeDelta::minutes(1));
        s.settle().await;
        one_request_pr_granted(&s, issue).await;
    }
);

/// The `/breakglass staging 1h` asked on `issue` opened one request PR, answered once where it
/// was asked, and granted it.
async fn one_request_pr_granted(s: &Scenario, issue: u64) {
    let opened: Vec<_> = s
        .changes()
        .into_iter()
        .filter(|p| p.head_ref.starts_with("breakglass/request/"))
        .collect();
    assert_eq!(opened.len(), 1, "one request PR: {opened:#?}");
    assert!(opened[0].merged, "{:#?}", opened[0]);
    let reply = s.next_bot_issue_comment(issue);
    assert!(reply.starts_with("📝 @alice, your request is "), "{reply}");
    s.expect_no_bot_issue_comment(issue);
    s.expect_bot_comments(
        opened[0].number,
        &["✅ **Request", "🔓 **Access granted.**"],
    );
}

/// More grants than a reconciliation page (1,000) without a revoke job.
const BACKLOG: usize = 1_100;

on_both_backends!(
    one_reconciliation_pass_repairs_a_backlog_larger_than_a_page,
    |mut s: Scenario| async move {
        s.granted("r-model", "2h").await;
        // A backlog of active grants whose revoke jobs were lost (a restore, a bug), their
        // files on the default branch so that reconciliation keeps them.
        let workflows = s.service.as_ref().unwrap().workflows.clone();
        s.crash().await;
        let model = s.request("r-model").await;
        let mut files = Vec::new();
        for i in 0..BACKLOG {
            let mut record = model.clone();
            record.id = format!("r-backlog-{i:04}").try_into().unwrap();
            record.pr_number = 10_000 + i as u64;
            s.store.insert_request(&record).await.unwrap();
            files.push((
                format!("requests/prod/{}.yaml", record.id),
                prod_request("2h"),
            ));
        }
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        s.forge
            .push_direct(REPO, &s.people.alice, &files, "restore");
        workflows.shared().reconcile_all().await.unwrap();
        let (jobs,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM jobs WHERE kind = 'revoke' AND request_id LIKE 'r-backlog-%'",
        )
        .fetch_one(s.store.pool())
        .await
        .unwrap();
        assert_eq!(
            jobs, BACKLOG as i64,
            "one pass gives every grant its revoke"
        );
        let active = s
            .store
            .list_requests(Some(RequestState::Active))
            .await
            .unwrap();
        assert_eq!(active.len(), BACKLOG + 1, "reconciliation kept them all");
    }
);

on_both_forges!(
    a_revoke_command_cut_off_between_its_two_writes_still_revokes_at_once,
    |mut s: Scenario| async move {
        let pr = s.granted("r-early", "1h").await;
        s.crash().await;
        // Killed after the command's first write (the request revoking) and before its
        // second (moving the revoke job from the expiry to now). The pass at start gives a
        // request stuck in `Revoking` its revoke job now, also one still at the expiry.
        let now = s.clock.now();
        let mut record = s.request("r-early").await;
        record.state = RequestState::Revoking;
        record.revoke_reason = Some(breakglass::store::RevokeReason::Early);
        s.store.update_request(&mut record, now).await.unwrap();
        s.start_service().await;
        // No clock moves: the expiry (an hour away) is not what revokes it.
        s.settle().await;
        let record = s.request("r-early").await;
        assert_eq!(
            record.state,
            RequestState::Revoked,
            "said: {:#?}, failures: {:#?}",
            s.bot_comments(pr),
            s.failures()
        );
        assert_eq!(s.events("r-early", "revoke").await.len(), 1);
        assert!(s.change(record.revert_pr_number.unwrap()).merged);
        s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
    }
);

// A grant past its expiry whose revoke has not run yet (a restart, a backlog of jobs) is over:
// an extension then would hand back access that should be gone. Stored as a late revoke
// leaves it: the expiry passed, the revoke job not yet due.
on_both_backends!(
    a_grant_past_its_expiry_is_not_extended_while_its_revoke_is_late,
    |s: Scenario| async move {
        let pr = s.granted("r-late", "1h").await;
        let now = s.clock.now();
        let expired_at = now - TimeDelta::minutes(1);
        sqlx::query("UPDATE jobs SET run_at = $1 WHERE request_id = 'r-late' AND kind = 'revoke'")
            .bind((now + TimeDelta::days(1)).timestamp_millis())
            .execute(s.store.pool())
            .await
            .unwrap();
        sqlx::query("UPDATE requests SET granted_at = $1, expires_at = $2 WHERE id = 'r-late'")
            .bind((expired_at - TimeDelta::hours(1)).timestamp_millis())
            .bind(expired_at.timestamp_millis())
            .execute(s.store.pool())
            .await
            .unwrap();
        s.note(pr, &s.people.carol, "/breakglass extend 30m");
        s.settle().await;
        let said = s.next_bot_comment(pr);
        assert!(said.starts_with("⌛ This grant expired"), "{said}");
        let record = s.request("r-late").await;
        assert_eq!(record.expires_at, Some(expired_at));
        assert!(s.events("r-late", "extend").await.is_empty());
    }
);

// What happened while the bot was down. A forge does not send a failed webhook again, so the
// bot lists the open change requests at start and decides those it has no record of.

on_both_forges!(
    a_request_opened_while_the_bot_is_down_is_decided_when_it_starts,
    |mut s: Scenario| async move {
        s.crash().await;
        let pr = s.open_request(&s.people.alice, "prod", "r-down", &prod_request("1h"));
        s.forge.settle().await; // its webhook found nobody listening
        s.start_service().await;
        s.settle().await;
        let verdict = s.next_bot_comment(pr);
        assert!(
            verdict.starts_with("✅ **Request `r-down` is allowed**"),
            "{verdict}"
        );
        let record = s.request("r-down").await;
        assert_eq!(record.state, RequestState::Pending);
        let head = s.change(pr).head_sha;
        assert_eq!(record.head_sha, head);
        assert_eq!(s.policy_status(&head).unwrap().0, "pending");
        // A live request like any other: an approval merges and grants it.
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(s.change(pr).merged);
        let granted = s.next_bot_comment(pr);
        assert!(granted.contains("Access granted"), "{granted}");
    }
);

on_both_forges!(
    a_push_while_the_bot_is_down_is_decided_when_it_starts,
    |mut s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-pushed", &prod_request("1h"));
        s.settle().await;
        s.next_bot_comment(pr); // allowed, waiting for an approval
        s.crash().await;
        // Past the policy's 4h: denied once the bot hears of it.
        s.forge.push_files(
            REPO,
            "request-r-pushed",
            &s.people.alice,
            &[("requests/prod/r-pushed.yaml", &prod_request("8h"))],
            "longer",
        );
        s.forge.settle().await;
        s.start_service().await;
        s.settle().await;
        let head = s.change(pr).head_sha;
        let record = s.request("r-pushed").await;
        assert_eq!(
            record.head_sha, head,
            "decided at the head pushed meanwhile"
        );
        assert_eq!(record.state, RequestState::Denied);
        assert_eq!(s.policy_status(&head).unwrap().0, "failure");
        let verdict = s.next_bot_comment(pr);
        assert!(verdict.contains("denied"), "{verdict}");
        // An approval of the new head is not one of the old: nothing is merged.
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(!s.change(pr).merged);
        s.take_bot_comments(pr);
    }
);

on_both_forges!(
    a_refusal_the_bot_said_before_a_restart_is_not_said_again,
    |mut s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-bad", "environment: prod\n");
        s.settle().await;
        let refusal = s.next_bot_comment(pr);
        assert!(refusal.contains("is not a valid request"), "{refusal}");
        // Nothing is recorded for an invalid file: the start-up finds the PR without a record,
        // and the check the bot set on its head says it was answered.
        s.crash().await;
        s.start_service().await;
        s.settle().await;
        s.expect_no_bot_comment(pr);
        // Opened while the bot was down, the same file is answered once it starts.
        s.crash().await;
        let other = s.open_request(&s.people.alice, "prod", "r-bad2", "environment: prod\n");
        s.forge.settle().await;
        s.start_service().await;
        s.settle().await;
        let refusal = s.next_bot_comment(other);
        assert!(refusal.contains("is not a valid request"), "{refusal}");
        s.expect_no_bot_comment(pr);
    }
);

on_skewed_clocks!(
    an_emoji_given_while_the_bot_was_down_counts_when_it_starts,
    |mut s: Scenario| async move {
        s.crash().await;
        let pr = s.open_request(&s.people.alice, "prod", "r-emoji", &prod_request("1h"));
        s.emoji(pr, &s.people.carol, "+1"); // a second after the push, forge time
        s.forge.settle().await;
        s.start_service().await;
        s.settle().await;
        s.advance(TimeDelta::seconds(31)); // the reaction poll
        s.settle().await;
        assert!(s.change(pr).merged);
        s.expect_bot_comments(pr, &["✅ **Request", "🔓 **Access granted.**"]);
    }
);

on_skewed_clocks!(
    an_emoji_given_while_the_bot_was_down_before_a_push_is_asked_for_again,
    |mut s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-stale", &prod_request("1h"));
        s.settle().await;
        s.next_bot_comment(pr);
        s.crash().await;
        s.emoji(pr, &s.people.carol, "+1");
        s.forge.advance_clock(TimeDelta::seconds(5));
        s.forge.push_files(
            REPO,
            "request-r-stale",
            &s.people.alice,
            &[("requests/prod/r-stale.yaml", &prod_request("2h"))],
            "longer",
        );
        s.forge.settle().await;
        s.start_service().await;
        s.settle().await;
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        assert!(
            !s.change(pr).merged,
            "an approval of the old version merged the new one"
        );
        let record = s.request("r-stale").await;
        assert_eq!(record.head_sha, s.change(pr).head_sha);
        assert_eq!(record.state, RequestState::Pending);
        expect_asked_again(&s, pr, "carol");
    }
);

/// The bot's request PRs (not its reverts), newest last.
fn bot_request_prs(s: &Scenario) -> Vec<u64> {
    s.changes()
        .into_iter()
        .filter(|p| p.user == s.people.bot.login && !p.title.starts_with("breakglass: revoke"))
        .map(|p| p.number)
        .collect()
}

const ASK_WHILE_DOWN: &str = "/breakglass prod 1h admin -- incident: INC-7 checkout down";

on_both_forges!(
    a_breakglass_comment_made_while_the_bot_is_down_is_answered_when_it_starts,
    |mut s: Scenario| async move {
        let issue = s.open_issue(&s.people.alice, "checkout down");
        s.crash().await;
        s.note_on_issue(issue, &s.people.alice, ASK_WHILE_DOWN);
        s.note_on_issue(issue, &s.people.bob, "any news?"); // no command: nothing to answer
        s.forge.settle().await;
        s.start_service().await;
        s.settle().await;
        let opened = s.next_bot_issue_comment(issue);
        assert!(opened.starts_with("📝 @alice, your request is"), "{opened}");
        let prs = bot_request_prs(&s);
        assert_eq!(prs.len(), 1, "one request for one comment");
        let verdict = s.next_bot_comment(prs[0]);
        assert!(verdict.starts_with("✅ **Request"), "{verdict}");
        // Started again, the comment answered is not answered twice.
        s.crash().await;
        s.start_service().await;
        s.settle().await;
        s.expect_no_bot_issue_comment(issue);
        assert_eq!(bot_request_prs(&s).len(), 1);
    }
);

// A crash ends the service's connections where they stand, a request half received among them:
// its sender is never answered, as by a process that is gone. Before, the connections outlived
// the crash, shut down gracefully: a delivery under way was read to its end and stored, and
// acted on at the next start however late (the next story, now and then: a comment older than
// the catch-up window opened a request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_ends_a_delivery_under_way_unanswered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = Scenario::start(Backend::Sqlite).await.unwrap();
    let addr = s.service.as_ref().unwrap().addr;
    let mut sender = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = br#"{"zen": "Keep it logically awesome."}"#;
    let head = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: breakglass\r\nContent-Type: application/json\r\n\
         X-GitHub-Event: ping\r\nX-GitHub-Delivery: 1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    sender.write_all(head.as_bytes()).await.unwrap();
    sender.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await; // the service is reading the body
    s.crash().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = sender.write_all(&body[10..]).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), sender.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection outlived the crash");
    assert!(
        answer.is_empty(),
        "answered after the crash: {}",
        String::from_utf8_lossy(&answer)
    );
}

on_both_forges!(
    a_comment_older_than_the_catch_up_window_is_not_acted_on_late,
    |mut s: Scenario| async move {
        let issue = s.open_issue(&s.people.alice, "checkout down");
        s.crash().await;
        s.note_on_issue(issue, &s.people.alice, ASK_WHILE_DOWN);
        s.forge.settle().await;
        s.advance(TimeDelta::minutes(61)); // down for more than an hour
        s.start_service().await;
        s.settle().await;
        s.expect_no_bot_issue_comment(issue);
        assert!(
            bot_request_prs(&s).is_empty(),
            "a request opened an hour late"
        );
    }
);

// A revoke given while the bot was down for hours is still done when it starts (ending access
// late is the safe way); a comment that also asks for more is not acted on so late.
on_both_forges!(
    a_revoke_given_while_the_bot_was_down_for_hours_is_done_when_it_starts,
    |mut s: Scenario| async move {
        let pr = s.granted("r1", "4h").await;
        let other = s.granted("r2", "4h").await;
        s.crash().await;
        s.note(pr, &s.people.carol, "/breakglass revoke");
        s.note(
            other,
            &s.people.alice,
            "/breakglass revoke\n/breakglass extend 1h",
        );
        s.forge.settle().await;
        s.advance(TimeDelta::hours(2)); // down for two hours
        s.start_service().await;
        s.settle().await;
        let record = s.request("r1").await;
        assert_eq!(
            record.state.to_string(),
            "revoked",
            "{:#?}",
            s.bot_comments(pr)
        );
        assert_eq!(
            record.revoke_reason.map(|r| r.to_string()).as_deref(),
            Some("early")
        );
        s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
        assert_eq!(s.request("r2").await.state.to_string(), "active");
        assert!(
            s.bot_comments(other).len() == 2,
            "{:#?}",
            s.bot_comments(other)
        );
    }
);

on_skewed_clocks!(
    an_approval_comment_made_while_the_bot_was_down_counts_when_it_starts,
    |mut s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-approve", &prod_request("1h"));
        s.settle().await;
        s.next_bot_comment(pr);
        s.crash().await;
        s.approve(pr, &s.people.carol);
        s.forge.settle().await;
        s.start_service().await;
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        let granted = s.next_bot_comment(pr);
        assert!(granted.starts_with("🔓 **Access granted.**"), "{granted}");
    }
);

on_both_forges!(
    a_comment_edited_into_a_command_while_the_bot_is_down_is_not_taken,
    |mut s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-edited", &prod_request("1h"));
        s.settle().await;
        s.next_bot_comment(pr);
        s.crash().await;
        let comment = s.note(pr, &s.people.carol, "looking");
        s.forge.advance_clock(TimeDelta::seconds(30));
        s.forge
            .edit_comment(REPO, comment, &s.people.carol, "/breakglass approve");
        s.forge.settle().await;
        s.start_service().await;
        s.settle().await;
        assert!(!s.change(pr).merged, "an edit approved the request");
        assert!(
            s.store
                .approvals_for(&s.request("r-edited").await.id, &s.change(pr).head_sha)
                .await
                .unwrap()
                .is_empty()
        );
        s.expect_no_bot_comment(pr);
    }
);

on_both_backends!(
    a_refusal_whose_delivery_was_cut_short_by_a_crash_is_said_once,
    |mut s: Scenario| async move {
        // The PR's read hangs: its delivery is claimed, and the bot dies before answering.
        s.fail_next(Route::Change, Method::GET, 1, FailureKind::Hang);
        let pr = s.open_request(&s.people.alice, "prod", "r-hang", "environment: prod\n");
        s.forge.settle().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        s.crash().await;
        s.forge.clear_failures();
        // At start the catch-up answers the PR; then the dead worker's lease lapses and the
        // delivery runs again: the refusal the thread already ends with is not said again.
        s.start_service().await;
        for _ in 0..4 {
            s.advance(TimeDelta::minutes(5));
            s.settle().await;
        }
        let refusal = s.next_bot_comment(pr);
        assert!(refusal.contains("is not a valid request"), "{refusal}");
        s.expect_no_bot_comment(pr);
    }
);

on_both_backends!(
    a_second_pr_of_a_refused_head_opened_while_the_bot_is_down_is_told_too,
    |mut s: Scenario| async move {
        let first = s.open_request(&s.people.alice, "prod", "r-again", "environment: prod\n");
        s.settle().await;
        s.next_bot_comment(first);
        s.close_change(first, &s.people.alice);
        s.settle().await;
        s.take_bot_comments(first);
        s.crash().await;
        let second = s.forge.open_pr(
            REPO,
            &s.people.alice,
            "request-r-again",
            "Access request r-again",
            "",
        );
        s.forge.settle().await;
        s.start_service().await;
        s.settle().await;
        let refusal = s.next_bot_comment(second);
        assert!(refusal.contains("is not a valid request"), "{refusal}");
    }
);

on_both_forges!(
    an_approved_draft_marked_ready_while_the_bot_is_down_is_merged_when_it_starts,
    |mut s: Scenario| async move {
        let alice = &s.people.alice;
        let pr = s.before_the_bot_hears(|| {
            let pr = s.open_request(alice, "prod", "r-ready", &prod_request("1h"));
            s.set_draft(pr, alice, true);
            pr
        });
        s.settle().await;
        s.next_bot_comment(pr);
        s.approve(pr, &s.people.carol);
        s.settle().await;
        s.next_bot_comment(pr); // approval recorded
        assert!(!s.change(pr).merged, "a draft is never merged");
        s.crash().await;
        s.set_draft(pr, &s.people.alice, false);
        s.forge.settle().await;
        s.start_service().await;
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.expect_bot_comments(
            pr,
            &[
                "✅ **Request `r-ready` is allowed**",
                "🔓 **Access granted.**",
            ],
        );
    }
);

on_both_forges!(
    a_fast_path_label_added_while_the_bot_is_down_is_decided_when_it_starts,
    |mut s: Scenario| async move {
        let bob = &s.people.bob; // on call
        let pr = s.open_request(bob, "prod", "r-sev1", &prod_request("1h"));
        s.settle().await;
        s.next_bot_comment(pr); // waits for an approval
        let bob = s.people.bob.clone();
        labelled_sev1_while_down(&mut s, pr, &bob).await;
    }
);

/// `pr`, waiting for an approval, is labelled `sev1` by `who` while the bot is down: decided
/// when it starts (merged on the fast path, granted), and only then: another start finds the
/// label decided, and nothing is said or done again.
async fn labelled_sev1_while_down(s: &mut Scenario, pr: u64, who: &breakglass_test_forge::User) {
    s.crash().await;
    s.label(pr, who, "sev1");
    s.forge.settle().await;
    s.start_service().await;
    s.settle().await;
    assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
    s.expect_bot_comments(pr, &["🔓 **Access granted.**"]);
    s.crash().await;
    s.start_service().await;
    s.settle().await;
    s.expect_no_bot_comment(pr);
}

on_both_forges!(
    a_fast_path_label_put_on_the_bots_request_pr_while_it_is_down_is_decided_when_it_starts,
    |mut s: Scenario| async move {
        let issue = s.open_issue(&s.people.carol, "checkout down");
        s.note_on_issue(issue, &s.people.bob, ASK_WHILE_DOWN); // bob is on call
        s.settle().await;
        s.take_bot_issue_comments(issue);
        let pr = bot_request_prs(&s)[0];
        assert!(!s.change(pr).merged, "no sev1 label yet");
        s.take_bot_comments(pr); // waits for an approval
        let carol = s.people.carol.clone();
        labelled_sev1_while_down(&mut s, pr, &carol).await;
    }
);

// A branch pushed away and back while the bot is down: the head it comes back to is the one the
// bot decided, with the time of its first push. The forge's own record of the head's moves
// (GitHub's timeline, GitLab's MR versions) is asked before approvals from that time merge it.

/// `who` was asked to approve again on `pr`, among the bot's comments not read yet (all read).
fn expect_asked_again(s: &Scenario, pr: u64, who: &str) {
    let asked = s.take_bot_comments(pr);
    let ask = format!("⏱️ @{who}, your approval");
    assert!(asked.iter().any(|c| c.starts_with(&ask)), "{asked:#?}");
}

/// Reads of a change's head history (GitHub's timeline, GitLab's MR versions).
fn head_history_reads(s: &Scenario) -> u64 {
    let calls = s.forge.calls();
    calls.count("GET", "/repos/{owner}/{repo}/issues/{number}/timeline")
        + calls.count("GET", "/api/v4/projects/{id}/merge_requests/{iid}/versions")
}

/// While the bot is down, request `id` (4h, decided) is pushed to a 30m version, `approve`d
/// there by carol, and forced back to the 4h one. Once the bot has started and polled: nothing
/// merged, the request waits, and carol is asked to approve again. Returns the PR.
async fn approved_while_pushed_away_and_back(
    s: &mut Scenario,
    id: &str,
    approve: fn(&Scenario, u64, &breakglass_test_forge::User),
) -> u64 {
    let (branch, path) = (format!("request-{id}"), format!("requests/prod/{id}.yaml"));
    let pr = s.open_request(&s.people.alice, "prod", id, &prod_request("4h"));
    s.settle().await;
    s.next_bot_comment(pr);
    let four_hours = s.change(pr).head_sha;
    s.crash().await;
    s.forge.advance_clock(TimeDelta::seconds(5));
    let shorter = prod_request("30m");
    s.forge.push_files(
        REPO,
        &branch,
        &s.people.alice,
        &[(&path, &shorter)],
        "shorter",
    );
    approve(s, pr, &s.people.carol);
    s.forge.advance_clock(TimeDelta::seconds(5));
    s.forge
        .force_branch(REPO, &branch, &s.people.alice, &four_hours);
    s.forge.settle().await;
    s.start_service().await;
    s.settle().await;
    s.advance(TimeDelta::seconds(31));
    s.settle().await;
    assert_eq!(s.change(pr).head_sha, four_hours);
    assert!(
        !s.change(pr).merged,
        "an approval of the 30m version merged the 4h one: {:#?}",
        s.bot_comments(pr)
    );
    assert_eq!(s.request(id).await.state, RequestState::Pending);
    expect_asked_again(s, pr, "carol");
    pr
}

on_both_forges!(
    an_approval_given_while_the_bot_was_down_to_a_head_pushed_away_and_back_does_not_merge_it,
    |mut s: Scenario| async move {
        let approve = |s: &Scenario, pr, who: &breakglass_test_forge::User| {
            s.approve(pr, who);
        };
        let pr = approved_while_pushed_away_and_back(&mut s, "r-back", approve).await;
        // Approved again now, it merges, after one more read of the head's history.
        let reads = head_history_reads(&s);
        assert_eq!(
            reads, 1,
            "the head's history is read once per approval that merges"
        );
        s.forge.advance_clock(TimeDelta::seconds(5));
        s.approve(pr, &s.people.carol);
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        let granted = s.next_bot_comment(pr);
        assert!(granted.starts_with("🔓 **Access granted.**"), "{granted}");
        assert_eq!(head_history_reads(&s), reads + 1);
    }
);

on_skewed_clocks!(
    an_emoji_given_while_the_bot_was_down_to_a_rewound_head_does_not_merge_it_when_pushed_back,
    |mut s: Scenario| async move {
        // Two commits: 30m, then 4h. The bot decides the 4h one.
        let pr = s.open_request(&s.people.alice, "prod", "r-rewound", &prod_request("30m"));
        s.settle().await;
        let thirty_minutes = s.change(pr).head_sha;
        s.forge.advance_clock(TimeDelta::seconds(5));
        let four_hours = s.forge.push_files(
            REPO,
            "request-r-rewound",
            &s.people.alice,
            &[("requests/prod/r-rewound.yaml", &prod_request("4h"))],
            "longer",
        );
        s.settle().await;
        assert_eq!(s.request("r-rewound").await.head_sha, four_hours);
        s.take_bot_comments(pr);
        s.crash().await;
        // Rewound to 30m (a force push), approved, and pushed forward to 4h again: a plain
        // push that GitHub's timeline does not date.
        s.forge.advance_clock(TimeDelta::seconds(5));
        s.forge
            .force_branch(REPO, "request-r-rewound", &s.people.alice, &thirty_minutes);
        s.forge.advance_clock(TimeDelta::seconds(5));
        s.emoji(pr, &s.people.carol, "+1");
        s.forge.advance_clock(TimeDelta::seconds(5));
        s.forge
            .force_branch(REPO, "request-r-rewound", &s.people.alice, &four_hours);
        s.forge.settle().await;
        s.start_service().await;
        s.settle().await;
        s.advance(TimeDelta::seconds(31)); // the reaction poll
        s.settle().await;
        assert!(
            !s.change(pr).merged,
            "an emoji given to the 30m version merged the 4h one"
        );
        let record = s.request("r-rewound").await;
        assert_eq!(record.state, RequestState::Pending);
        assert!(
            s.store
                .approvals_for(&record.id, &four_hours)
                .await
                .unwrap()
                .is_empty()
        );
        expect_asked_again(&s, pr, "carol");
    }
);

// Approving reviews (GitLab: the Approve button) given while the bot was down: read from the
// forge at start for the requests updated within the hour that wait for approvals.

on_both_forges!(
    an_approving_review_given_while_the_bot_was_down_counts_when_it_starts,
    |mut s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-review", &prod_request("1h"));
        s.settle().await;
        s.next_bot_comment(pr);
        // Waiting for two hours: only the review makes the PR one updated within the hour.
        s.advance(TimeDelta::hours(2));
        s.settle().await;
        s.crash().await;
        s.approve_button(pr, &s.people.carol);
        s.forge.settle().await;
        s.start_service().await;
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        let granted = s.next_bot_comment(pr);
        assert!(granted.starts_with("🔓 **Access granted.**"), "{granted}");
        assert_eq!(
            s.request("r-review").await.approved_by,
            Some(vec![s.people.carol.login.parse().unwrap()])
        );
    }
);

on_both_forges!(
    a_request_opened_and_approved_by_review_while_the_bot_was_down_is_merged_when_it_starts,
    |mut s: Scenario| async move {
        s.crash().await;
        let pr = s.open_request(&s.people.alice, "prod", "r-both", &prod_request("1h"));
        s.approve_button(pr, &s.people.carol);
        s.forge.settle().await;
        s.start_service().await;
        s.settle().await;
        assert!(s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        s.expect_bot_comments(pr, &["✅ **Request", "🔓 **Access granted.**"]);
    }
);

on_both_forges!(
    an_approving_review_of_a_version_pushed_over_while_the_bot_was_down_does_not_count,
    |mut s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-over", &prod_request("1h"));
        s.settle().await;
        s.next_bot_comment(pr);
        s.crash().await;
        s.approve_button(pr, &s.people.carol);
        s.forge.advance_clock(TimeDelta::seconds(5));
        s.forge.push_files(
            REPO,
            "request-r-over",
            &s.people.alice,
            &[("requests/prod/r-over.yaml", &prod_request("4h"))],
            "longer",
        );
        s.forge.settle().await;
        s.start_service().await;
        s.settle().await;
        assert!(!s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        let record = s.request("r-over").await;
        assert_eq!(record.head_sha, s.change(pr).head_sha);
        assert_eq!(record.state, RequestState::Pending);
        assert!(
            s.store
                .approvals_for(&record.id, &record.head_sha)
                .await
                .unwrap()
                .is_empty()
        );
        s.take_bot_comments(pr);
    }
);

on_both_forges!(
    an_approving_review_older_than_the_catch_up_window_is_not_taken_late,
    |mut s: Scenario| async move {
        let pr = s.open_request(
            &s.people.alice,
            "prod",
            "r-late-review",
            &prod_request("1h"),
        );
        s.settle().await;
        s.next_bot_comment(pr);
        s.crash().await;
        s.approve_button(pr, &s.people.carol);
        s.forge.settle().await;
        s.advance(TimeDelta::minutes(61)); // down for more than an hour
        s.start_service().await;
        s.settle().await;
        assert!(!s.change(pr).merged, "an approval taken an hour late");
        s.expect_no_bot_comment(pr);
    }
);

// From the attack round on the above (each failed before its fix).

// A force push the bot heard gave its head an exact time; GitHub's timeline dates the push in
// that same second. After a restart, an approval a minute later merges: that rewrite was the
// push heard, not a move unheard.
on_both_backends!(
    an_approval_after_a_restart_of_a_head_whose_force_push_was_heard_merges,
    |mut s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-amend", &prod_request("4h"));
        s.settle().await;
        s.next_bot_comment(pr);
        let first = s.change(pr).head_sha;
        s.forge.advance_clock(TimeDelta::seconds(5));
        s.forge.push_files(
            REPO,
            "request-r-amend",
            &s.people.alice,
            &[("requests/prod/r-amend.yaml", &prod_request("30m"))],
            "shorter",
        );
        s.settle().await;
        s.forge.advance_clock(TimeDelta::seconds(5));
        s.forge
            .force_branch(REPO, "request-r-amend", &s.people.alice, &first);
        s.settle().await;
        assert_eq!(s.request("r-amend").await.head_sha, first);
        s.take_bot_comments(pr);
        s.crash().await;
        s.start_service().await;
        s.settle().await;
        s.forge.advance_clock(TimeDelta::seconds(60));
        s.approve(pr, &s.people.carol);
        s.settle().await;
        let said = s.take_bot_comments(pr);
        assert!(s.change(pr).merged, "{said:#?}");
        assert_eq!(s.request("r-amend").await.state, RequestState::Active);
    }
);

// A review (GitLab: Approve) given while the bot was down to a version the branch has left by
// the time it starts is answered, as its webhook would have been; it never counts.
on_both_forges!(
    a_review_given_while_the_bot_was_down_to_a_version_since_left_is_answered,
    |mut s: Scenario| async move {
        let approve = |s: &Scenario, pr, who: &breakglass_test_forge::User| {
            s.approve_button(pr, who);
        };
        approved_while_pushed_away_and_back(&mut s, "r-left", approve).await;
    }
);

// Opened and approved by review while the bot was down, and deciding it fails at first: the
// review waits for the decision instead of being handled against no request and lost.
on_both_backends!(
    a_review_given_while_down_counts_even_if_deciding_its_pr_failed_at_first,
    |mut s: Scenario| async move {
        s.lenient(); // the forge's 500s fail deliveries before they pass
        s.crash().await;
        let pr = s.open_request(&s.people.alice, "prod", "r-late", &prod_request("1h"));
        s.approve_button(pr, &s.people.carol);
        s.forge.settle().await;
        s.forge.fail_next(breakglass_test_forge::FailureSpec {
            route: breakglass_test_forge::RouteMatcher::Route {
                method: Some(Method::GET),
                template: "/repos/{owner}/{repo}/compare/{*basehead}".to_owned(),
            },
            count: 4,
            kind: FailureKind::Status(500),
        });
        s.start_service().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        for _ in 0..8 {
            s.advance(TimeDelta::seconds(40));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        s.settle().await;
        let said = s.take_bot_comments(pr);
        assert!(s.change(pr).merged, "{said:#?}");
    }
);

// The force push back lands on the second page of a long timeline (150 comments first): read to
// its end, it still counts.
on_both_backends!(
    a_push_away_and_back_past_the_first_page_of_the_timeline_is_found,
    |mut s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-long", &prod_request("4h"));
        s.settle().await;
        s.next_bot_comment(pr);
        let four_hours = s.change(pr).head_sha;
        s.crash().await;
        for n in 0..150 {
            s.note(pr, &s.people.bob, &format!("status update {n}"));
        }
        s.forge.advance_clock(TimeDelta::seconds(5));
        s.forge.push_files(
            REPO,
            "request-r-long",
            &s.people.alice,
            &[("requests/prod/r-long.yaml", &prod_request("30m"))],
            "shorter",
        );
        s.emoji(pr, &s.people.carol, "+1");
        s.forge.advance_clock(TimeDelta::seconds(5));
        s.forge
            .force_branch(REPO, "request-r-long", &s.people.alice, &four_hours);
        s.forge.settle().await;
        s.start_service().await;
        s.settle().await;
        s.advance(TimeDelta::seconds(31));
        s.settle().await;
        assert!(!s.change(pr).merged, "{:#?}", s.bot_comments(pr));
        let timeline = "/repos/{owner}/{repo}/issues/{number}/timeline";
        assert!(s.forge.calls().count("GET", timeline) >= 2, "one page read");
        expect_asked_again(&s, pr, "carol");
    }
);

// An approving review of a request breakglass re-opened from its own branch (an iac role's),
// given while the bot was down: the catch-up at start hands it over like any other review (a
// review found the bot's own PRs passed over, and the approval lost without a word).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_of_a_reopened_request_given_while_the_bot_was_down_counts_at_start() {
    let mut s = Scenario::start(Backend::Sqlite).await.unwrap();
    s.lenient();
    let yaml =
        "environment: network\nrole: dns-admin\nduration: 1h\nreason: move the apex record\n";
    let pr = s.open_request(&s.people.alice, "network", "r-dns", yaml);
    s.settle().await;
    let bot_pr = s.reopened_pr(pr);
    s.crash().await;
    s.approve_button(bot_pr, &s.people.carol);
    s.start_service().await;
    s.settle().await;
    for _ in 0..12 {
        s.advance(TimeDelta::seconds(10));
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    s.settle().await;
    assert!(s.change(bot_pr).merged, "{:#?}", s.bot_comments(bot_pr));
    assert_eq!(s.request("r-dns").await.state.to_string(), "active");
}
