//! The forge's clock: every stamp in REST answers and webhook payloads is the forge's own clock
//! truncated to whole seconds (as on GitHub), and a pull request's `updated_at` follows it.

mod common;

use breakglass_test_forge::ReviewState;
use chrono::{DateTime, Duration, TimeZone, Utc};
use common::*;
use serde_json::Value;

/// 2026-11-26T02:14:07.750Z: the fraction shows whether stamps are truncated or rounded.
fn odd_instant() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 2, 14, 7).unwrap() + Duration::milliseconds(750)
}

const TRUNCATED: &str = "2026-11-26T02:14:07Z";

/// The keys that carry a time on GitHub.
const STAMP_KEYS: &[&str] = &[
    "created_at",
    "updated_at",
    "submitted_at",
    "closed_at",
    "merged_at",
    "started_at",
    "completed_at",
];

/// Every stamp in `v` as (JSON path, value), leaving out repositories: their stamps are the
/// repository's own (created before the test froze the clock).
fn stamps(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "repository" || k == "repo" {
                    continue;
                }
                let here = format!("{path}/{k}");
                match x {
                    Value::String(s) if STAMP_KEYS.contains(&k.as_str()) => {
                        out.push((here, s.clone()))
                    }
                    _ => stamps(x, &here, out),
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                stamps(x, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn all_stamps(values: &[Value]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        stamps(v, &format!("#{i}"), &mut out);
    }
    out
}

#[tokio::test]
async fn every_rest_and_webhook_stamp_is_the_forge_clock_truncated_to_whole_seconds() {
    let w = world().await;
    record_webhooks(&w.forge);
    w.forge.freeze_clock(odd_instant());
    let carol = w.forge.user("carol");
    let n = alice_opens_request(&w, "req-1");
    let c = w.forge.comment(REPO, n, &carol, "/breakglass approve");
    w.forge
        .edit_comment(REPO, c, &carol, "/breakglass approve please");
    w.forge.react(REPO, n, &carol, "+1");
    w.forge.react_comment(REPO, c, &w.alice, "eyes");
    w.forge.review(REPO, n, &carol, ReviewState::Approved);
    w.forge.label(REPO, n, &w.alice, "sev1");
    let head = w.forge.pr(REPO, n).head_sha;
    let (status, _) = call(
        &w.octo,
        "POST",
        &format!("/repos/{REPO}/statuses/{head}"),
        Some(serde_json::json!({"state": "pending", "context": "breakglass/policy"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = call(
        &w.octo,
        "POST",
        &format!("/repos/{REPO}/check-runs"),
        Some(serde_json::json!({"name": "ci", "head_sha": head, "status": "completed", "conclusion": "success"})),
    )
    .await;
    assert_eq!(status, 201);
    w.forge.open_issue(REPO, &w.alice, "Access", "");
    w.forge.close_pr(REPO, n, &w.alice);

    let mut rest = Vec::new();
    for path in [
        format!("/repos/{REPO}/pulls/{n}"),
        format!("/repos/{REPO}/pulls?state=all"),
        format!("/repos/{REPO}/issues/{n}"),
        format!("/repos/{REPO}/issues/{n}/comments"),
        format!("/repos/{REPO}/issues/comments/{c}"),
        format!("/repos/{REPO}/issues/{n}/reactions"),
        format!("/repos/{REPO}/issues/comments/{c}/reactions"),
        format!("/repos/{REPO}/pulls/{n}/reviews"),
        format!("/repos/{REPO}/commits/{head}/statuses"),
        format!("/repos/{REPO}/commits/{head}/check-runs"),
        "/user".to_owned(),
    ] {
        rest.push(get_json(&w.octo, &path).await);
    }
    let rest_stamps = all_stamps(&rest);
    // alice's PR, comment, both reactions, review, status and check all have stamps here.
    assert!(rest_stamps.len() >= 15, "{rest_stamps:?}");
    let wrong: Vec<_> = rest_stamps
        .iter()
        .filter(|(path, v)| v != TRUNCATED && !path.starts_with("#10/"))
        .collect();
    assert!(
        wrong.is_empty(),
        "REST stamps off the forge clock: {wrong:?}"
    );

    let hooks: Vec<Value> = w.forge.deliveries().iter().map(|d| d.payload()).collect();
    let hook_stamps = all_stamps(&hooks);
    for needed in [
        "/pull_request/updated_at",
        "/comment/created_at",
        "/comment/updated_at",
        "/review/submitted_at",
        "/issue/created_at",
        "/pull_request/closed_at",
    ] {
        assert!(
            hook_stamps.iter().any(|(p, _)| p.ends_with(needed)),
            "no {needed} in any payload"
        );
    }
    let wrong: Vec<_> = hook_stamps.iter().filter(|(_, v)| v != TRUNCATED).collect();
    assert!(
        wrong.is_empty(),
        "webhook stamps off the forge clock: {wrong:?}"
    );
    let pushed = &payloads(&w.forge, "push", None)[0]["head_commit"]["timestamp"];
    let pushed = DateTime::parse_from_rfc3339(pushed.as_str().unwrap()).unwrap();
    assert_eq!(pushed, odd_instant() - Duration::milliseconds(750));

    // What a test reads back is the same whole second, not the fraction the clock stood at.
    let stamp = Utc.with_ymd_and_hms(2026, 11, 26, 2, 14, 7).unwrap();
    assert_eq!(w.forge.now(), stamp);
    assert_eq!(w.forge.comments(REPO, n)[0].created_at, stamp);
    assert_eq!(w.forge.reviews(REPO, n)[0].submitted_at, stamp);
    assert_eq!(w.forge.reactions(REPO, n)[0].created_at, stamp);
}

#[tokio::test]
async fn pr_updated_at_follows_the_forge_clock_on_open_and_on_every_push() {
    let w = world().await;
    record_webhooks(&w.forge);
    let t0 = Utc.with_ymd_and_hms(2026, 11, 26, 2, 14, 0).unwrap();
    w.forge.freeze_clock(t0);
    let n = alice_opens_request(&w, "req-1");
    let opened = &payloads(&w.forge, "pull_request", Some("opened"))[0]["pull_request"];
    assert_eq!(opened["created_at"], "2026-11-26T02:14:00Z");
    assert_eq!(opened["updated_at"], "2026-11-26T02:14:00Z");

    // A human push moves it.
    w.forge.advance_clock(Duration::seconds(90));
    w.forge.push_files(
        REPO,
        "req-1",
        &w.alice,
        &[("requests/prod/req-1.yaml", "role: root\n")],
        "widen",
    );
    let rest = get_json(&w.octo, &format!("/repos/{REPO}/pulls/{n}")).await;
    assert_eq!(rest["updated_at"], "2026-11-26T02:15:30Z");
    assert_eq!(rest["created_at"], "2026-11-26T02:14:00Z");
    let sync = payloads(&w.forge, "pull_request", Some("synchronize"));
    assert_eq!(
        sync[0]["pull_request"]["updated_at"],
        "2026-11-26T02:15:30Z"
    );
    assert_eq!(
        sync[0]["pull_request"]["created_at"],
        "2026-11-26T02:14:00Z"
    );

    // So does a write through the API (the contents endpoint commits on the head branch).
    w.forge.advance_clock(Duration::seconds(45));
    let sha = get_json(
        &w.octo,
        &format!("/repos/{REPO}/contents/requests/prod/req-1.yaml?ref=req-1"),
    )
    .await["sha"]
        .clone();
    let (status, _) = call(
        &w.octo,
        "PUT",
        &format!("/repos/{REPO}/contents/requests/prod/req-1.yaml"),
        Some(serde_json::json!({
            "message": "narrow", "content": "cm9sZTogYWRtaW4K", "branch": "req-1", "sha": sha,
        })),
    )
    .await;
    assert_eq!(status, 200);
    let rest = get_json(&w.octo, &format!("/repos/{REPO}/pulls/{n}")).await;
    assert_eq!(rest["updated_at"], "2026-11-26T02:16:15Z");
    let sync = payloads(&w.forge, "pull_request", Some("synchronize"));
    assert_eq!(
        sync[1]["pull_request"]["updated_at"],
        "2026-11-26T02:16:15Z"
    );
    assert_eq!(sync[1]["sender"]["login"], "breakglass[bot]");
}

#[tokio::test]
async fn a_frozen_clock_moves_only_when_advanced() {
    let w = world().await;
    w.forge.freeze_clock(odd_instant());
    let whole = Utc.with_ymd_and_hms(2026, 11, 26, 2, 14, 7).unwrap();
    assert_eq!(w.forge.now(), whole);
    w.forge.advance_clock(Duration::minutes(5));
    // Still frozen: exactly five minutes later, not the wall clock.
    assert_eq!(w.forge.now(), whole + Duration::minutes(5));
    let c = w.forge.comment(
        REPO,
        w.forge.open_issue(REPO, &w.alice, "t", ""),
        &w.alice,
        "hi",
    );
    let rest = get_json(&w.octo, &format!("/repos/{REPO}/issues/comments/{c}")).await;
    assert_eq!(rest["created_at"], "2026-11-26T02:19:07Z");
}

#[tokio::test]
async fn set_clock_runs_on_from_the_given_instant() {
    let w = world().await;
    let start = Utc.with_ymd_and_hms(2031, 1, 2, 3, 4, 5).unwrap();
    w.forge.freeze_clock(start - Duration::days(400));
    w.forge.set_clock(start);
    let now = w.forge.now();
    // Running again, from `start` (a test takes far less than a minute to get here).
    assert!(now >= start && now < start + Duration::minutes(1), "{now}");
    let n = w.forge.open_issue(REPO, &w.alice, "t", "");
    let issue = get_json(&w.octo, &format!("/repos/{REPO}/issues/{n}")).await;
    let created: DateTime<Utc> = issue["created_at"].as_str().unwrap().parse().unwrap();
    assert!(created >= start && created < start + Duration::minutes(1));
    w.forge.advance_clock(Duration::hours(1));
    assert!(w.forge.now() >= start + Duration::hours(1));
}
