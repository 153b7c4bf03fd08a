//! `breakglass audit verify` against a real lifecycle: the event log and the requests repo's
//! history agree; an edited, deleted or reordered log row, or a rewritten history, is named.

mod common;

use std::process::Command;

use breakglass::store::Backend as StoreBackend;
use chrono::TimeDelta;
use common::*;

/// Runs a grant to its revocation, so the log and git both hold a merge and a revert.
async fn lived(s: &Scenario) {
    let pr = s.granted("r-audit", "1h").await;
    s.advance(TimeDelta::hours(1));
    s.settle().await;
    s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
}

fn verify(s: &Scenario) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_breakglass"))
        .args(["audit", "verify", "--repo"])
        .arg(s.forge.repo_path(REPO))
        .args(["--branch", "main", "--database-url", &s.config.database_url])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn allow_tampering(s: &Scenario) {
    let statements: &[&'static str] = match s.store.backend() {
        StoreBackend::Sqlite => &[
            "DROP TRIGGER events_append_only_update",
            "DROP TRIGGER events_append_only_delete",
        ],
        StoreBackend::Postgres => &["DROP TRIGGER events_append_only ON events"],
    };
    for sql in statements {
        sqlx::query(*sql).execute(s.store.pool()).await.unwrap();
    }
}

on_both_backends!(
    the_log_and_git_agree_after_a_lifecycle,
    |s: Scenario| async move {
        lived(&s).await;
        let (code, out) = verify(&s);
        assert_eq!(code, 0, "{out}");
        assert!(out.starts_with("ok: 6 events in an intact hash chain; 1 grant merge(s) and 1 revocation merge(s) match git"), "{out}");
    }
);

on_both_backends!(an_edited_event_row_is_named, |s: Scenario| async move {
    lived(&s).await;
    allow_tampering(&s).await;
    sqlx::query(
        "UPDATE events SET data = '{\"source\":\"comment\",\"head_sha\":\"forged\"}' WHERE seq = 2",
    )
    .execute(s.store.pool())
    .await
    .unwrap();
    let (code, out) = verify(&s);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("event log row 2:"), "{out}");
});

on_both_backends!(a_deleted_event_row_is_named, |s: Scenario| async move {
    lived(&s).await;
    allow_tampering(&s).await;
    sqlx::query("DELETE FROM events WHERE seq = 3")
        .execute(s.store.pool())
        .await
        .unwrap();
    let (code, out) = verify(&s);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("event log row 4:") || out.contains("event log row 3:"),
        "{out}"
    );
    assert!(
        out.contains("commit")
            && out.contains("grants `r-audit` but the event log has no merge for it"),
        "{out}"
    );
});

on_both_backends!(reordered_event_rows_are_named, |s: Scenario| async move {
    lived(&s).await;
    allow_tampering(&s).await;
    let swap: [&'static str; 3] = [
        "UPDATE events SET seq = 100 WHERE seq = 2",
        "UPDATE events SET seq = 2 WHERE seq = 3",
        "UPDATE events SET seq = 3 WHERE seq = 100",
    ];
    for sql in swap {
        sqlx::query(sql).execute(s.store.pool()).await.unwrap();
    }
    let (code, out) = verify(&s);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("event log row 2:"), "{out}");
});

on_both_backends!(a_rewritten_history_is_named, |s: Scenario| async move {
    lived(&s).await;
    // Someone force-pushes main back to before the grant.
    let repo = git2::Repository::open_bare(s.forge.repo_path(REPO)).unwrap();
    let first = s.forge.log(REPO, "main").last().unwrap().sha.clone();
    repo.reference(
        "refs/heads/main",
        git2::Oid::from_str(&first).unwrap(),
        true,
        "rewrite",
    )
    .unwrap();
    let (code, out) = verify(&s);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("of `r-audit` is not on main's first-parent history (history rewritten?)"),
        "{out}"
    );
});

on_both_backends!(
    an_extended_grant_audits_clean_with_its_extended_expiry,
    |s: Scenario| async move {
        let pr = s.open_request(&s.people.alice, "prod", "r-ext", &prod_request("1h"));
        s.settle().await;
        s.by(&s.people.carol).approve(pr);
        s.settle().await;
        s.by(&s.people.carol).command(pr, "extend 30m");
        s.settle().await;
        s.advance(TimeDelta::minutes(90));
        s.settle().await;
        s.expect_bot_comments(
            pr,
            &[
                "✅ **Request `r-ext` is allowed**",
                "🔓 **Access granted.**",
                "⏳ Extended: @alice's access now expires at **2026-11-26T03:44:00Z**",
                "🔒 **Access revoked** at 2026-11-26T03:44:00Z",
            ],
        );
        let out = Command::new(env!("CARGO_BIN_EXE_breakglass"))
            .args([
                "audit",
                "--format",
                "json",
                "--branch",
                "main",
                "--now",
                "2026-11-26T05:00:00Z",
                "--repo",
            ])
            .arg(s.forge.repo_path(REPO))
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{report:#}");
        let grant = &report["grants"][0];
        assert_eq!(grant["request_id"], "r-ext");
        assert_eq!(grant["expires_at"], "2026-11-26T03:44:00Z", "{grant:#}");
        assert_eq!(grant["revoked_how"], "ttl");
        assert_eq!(report["anomalies"], serde_json::json!([]));
        let (code, verified) = verify(&s);
        assert_eq!(code, 0, "{verified}");
    }
);

// The bot's removal of a grant file that landed without it (no request file among them, so no
// trailers) is logged with its merge, and that merge is on the branch: no problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_of_grant_files_alone_verifies_clean() {
    let s = Scenario::start(Backend::Sqlite)
        .await
        .expect("SQLite is always there");
    let evil = "resource \"aws_iam_role_policy_attachment\" \"mallory\" {}\n";
    s.forge.push_direct(
        REPO,
        &s.people.mallory,
        &[("grants/network/evil.tf", evil)],
        "direct push",
    );
    s.settle().await;
    assert!(
        s.forge
            .file_on(REPO, "main", "grants/network/evil.tf")
            .is_none()
    );
    let removal = s.changes().last().unwrap().number;
    assert!(s.change(removal).merged);
    s.expect_bot_comments(removal, &["🚨 **Request files reached the default branch"]);
    let (code, out) = verify(&s);
    assert_eq!(code, 0, "{out}");
}

// A repo that keeps its policies elsewhere (`policies_path = "infra/policies"`) and renders
// grant files under `k8s/`: the bot's removal of a grant file pushed there is a removal only to
// a verify that reads the same policies, from `--policies` or from the configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reads_the_policies_where_the_configuration_keeps_them() {
    let setup = Setup {
        policies_path: Some("infra/policies"),
        ..Setup::default()
    };
    let s = Scenario::start_with(Backend::Sqlite, setup)
        .await
        .expect("SQLite is always there");
    s.edit_policy(&s.people.erin, "network", |p| {
        p.replace("output: \"grants/", "output: \"k8s/")
    });
    s.settle().await;
    s.forge.push_direct(
        REPO,
        &s.people.mallory,
        &[(
            "k8s/network/evil.tf",
            "resource \"aws_iam_role\" \"mallory\" {}\n",
        )],
        "direct push",
    );
    s.settle().await;
    assert!(
        s.forge
            .file_on(REPO, "main", "k8s/network/evil.tf")
            .is_none()
    );
    let removal = s.changes().last().unwrap().number;
    s.expect_bot_comments(removal, &["🚨 **Request files reached the default branch"]);
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!(
            "database_url = \"{}\"\npolicies_path = \"infra/policies\"\n",
            s.config.database_url
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_breakglass"))
            .args(["audit", "verify", "--branch", "main", "--repo"])
            .arg(s.forge.repo_path(REPO))
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let url = s.config.database_url.as_str();
    let by_flag = run(&["--database-url", url, "--policies", "infra/policies"]);
    assert_eq!(by_flag.0, Some(0), "{}", by_flag.1);
    let by_config = run(&["--config", config.path().to_str().unwrap()]);
    assert_eq!(by_config.0, Some(0), "{}", by_config.1);
    let blind = run(&["--database-url", url]);
    assert_eq!(blind.0, Some(1), "policies/ holds none here: {}", blind.1);
    assert!(
        blind.1.contains("is not on main's first-parent history"),
        "{}",
        blind.1
    );
}
