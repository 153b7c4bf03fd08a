//! The whole lifecycle with an `aws-iam` role: the bot merges, grants in IAM (moto on loopback,
//! reached through a recording proxy that can fail calls), and revokes at the TTL — also after
//! a crash, through IAM errors, and with two overlapping grants of the same person.

mod common;
#[path = "common/moto.rs"]
mod moto;

use breakglass::clock::Clock as _;
use breakglass::config::AwsConfig;
use breakglass::store::JobKind;
use chrono::TimeDelta;
use common::*;
use moto::{Moto, Recorder, create_admin_policy, create_role, fake_credentials, iam_client};

const PRINCIPAL: &str = "breakglass-alice";

/// Waits (at most 10 s) until `done` holds: reconciliation runs beside the workers, so an
/// empty queue says nothing about it. The assertions after it say what was expected.
async fn eventually<F, Fut>(mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done().await && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A scenario whose prod `admin` role is granted by aws-iam in moto.
struct World {
    s: Scenario,
    iam: aws_sdk_iam::Client,
    policy_arn: String,
    proxy: Recorder,
    _moto: Moto,
}

impl World {
    async fn start(backend: Backend) -> Option<World> {
        fake_credentials();
        let moto = Moto::start().await?;
        let proxy = Recorder::start(&moto.url).await;
        let iam = iam_client(&moto);
        create_role(&iam, PRINCIPAL).await;
        let policy_arn = create_admin_policy(&iam).await;
        let setup = Setup {
            aws: Some(AwsConfig {
                endpoint_url: proxy.url.clone(),
                ..AwsConfig::default()
            }),
            ..Setup::default()
        };
        let s = Scenario::start_with(backend, setup).await?;
        proxy.date_answers(&s.clock, 0); // AWS's clock is the bot's
        s.edit_policy(&s.people.carol, "prod", |p| {
            p.replace(
                "  admin:\n    provider: noop\n",
                &format!(
                    "  admin:\n    provider: aws-iam\n    account: \"123456789012\"\n    principal: \"arn:aws:iam::123456789012:role/breakglass-{{{{ requester }}}}\"\n    policy_arn: {policy_arn}\n"
                ),
            )
        });
        s.settle().await;
        Some(World {
            s,
            iam,
            policy_arn,
            proxy,
            _moto: moto,
        })
    }

    async fn attached(&self) -> Vec<String> {
        self.iam
            .list_attached_role_policies()
            .role_name(PRINCIPAL)
            .send()
            .await
            .unwrap()
            .attached_policies()
            .iter()
            .map(|p| p.policy_arn().unwrap().to_owned())
            .collect()
    }

    async fn inline_names(&self) -> Vec<String> {
        let mut names = self
            .iam
            .list_role_policies()
            .role_name(PRINCIPAL)
            .send()
            .await
            .unwrap()
            .policy_names()
            .to_vec();
        names.sort();
        names
    }

    /// Granted: the managed policy attached next to this grant's expiry deny.
    async fn assert_granted(&self, id: &str) {
        assert_eq!(
            self.attached().await,
            std::slice::from_ref(&self.policy_arn)
        );
        assert!(
            self.inline_names()
                .await
                .contains(&format!("breakglass-{id}-expiry")),
            "{:?}",
            self.inline_names().await
        );
    }

    /// Revoked: nothing attached, only the deny of older sessions left.
    async fn assert_nothing_granting(&self) {
        assert!(
            self.attached().await.is_empty(),
            "{:?}",
            self.attached().await
        );
        assert_eq!(self.inline_names().await, ["breakglass-revoked-sessions"]);
    }
}

macro_rules! with_aws {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(w) = World::start(Backend::Sqlite).await {
                    ($body)(w).await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(w) = World::start(Backend::Postgres).await {
                    ($body)(w).await;
                }
            }
        }
    };
}

with_aws!(
    an_aws_grant_is_applied_in_iam_and_revoked_at_the_ttl,
    |w: World| async move {
        let pr = w.s.granted("r1", "1h").await;
        w.assert_granted("r1").await;
        w.s.advance(TimeDelta::hours(1));
        w.s.settle().await;
        assert_eq!(w.s.request("r1").await.state.to_string(), "revoked");
        w.s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
        w.assert_nothing_granting().await;
    }
);

with_aws!(
    a_crash_between_grant_and_revoke_still_revokes_in_iam,
    |mut w: World| async move {
        let pr = w.s.granted("r1", "1h").await;
        w.assert_granted("r1").await;
        w.s.crash().await;
        w.s.advance(TimeDelta::hours(2));
        w.s.start_service().await;
        w.s.settle().await;
        assert_eq!(w.s.request("r1").await.state.to_string(), "revoked");
        w.s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
        w.assert_nothing_granting().await;
    }
);

with_aws!(
    iam_errors_during_the_revoke_are_retried_and_the_revoke_is_never_lost,
    |w: World| async move {
        let pr = w.s.granted("r1", "1h").await;
        for _ in 0..3 {
            w.proxy
                .fail_next("DetachRolePolicy", 503, "ServiceUnavailable");
        }
        w.s.expect_job_error(JobKind::Revoke, "DetachRolePolicy");
        w.s.advance(TimeDelta::hours(1));
        w.s.settle().await;
        for _ in 0..4 {
            w.s.advance(TimeDelta::seconds(30));
            w.s.settle().await;
        }
        assert_eq!(w.s.request("r1").await.state.to_string(), "revoked");
        w.assert_nothing_granting().await;
        let detaches = w
            .proxy
            .actions()
            .iter()
            .filter(|a| *a == "DetachRolePolicy")
            .count();
        assert!(
            detaches >= 4,
            "three failed tries, then one that went through: {detaches}"
        );
        w.s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
    }
);

with_aws!(
    two_overlapping_grants_of_one_person_end_independently,
    |w: World| async move {
        let first = w.s.granted("r1", "1h").await;
        w.s.advance(TimeDelta::minutes(10));
        let second = w.s.granted("r2", "2h").await;
        w.s.advance(TimeDelta::minutes(55));
        w.s.settle().await;
        assert_eq!(w.s.request("r1").await.state.to_string(), "revoked");
        w.s.expect_bot_comments(first, &["🔒 **Access revoked**"]);
        assert_eq!(w.s.request("r2").await.state.to_string(), "active");
        // r2 still holds the shared managed policy, bounded by its own expiry.
        w.assert_granted("r2").await;
        assert!(
            !w.inline_names()
                .await
                .contains(&"breakglass-r1-expiry".to_owned())
        );
        w.s.advance(TimeDelta::hours(2));
        w.s.settle().await;
        assert_eq!(w.s.request("r2").await.state.to_string(), "revoked");
        w.s.expect_bot_comments(second, &["🔒 **Access revoked**"]);
        w.assert_nothing_granting().await;
    }
);

with_aws!(
    an_inline_policy_grant_carries_its_expiry_and_leaves_with_the_revoke,
    |w: World| async move {
        w.s.edit_policy(&w.s.people.carol, "prod", |p| {
            p.replace(
                &format!("    policy_arn: {}\n", w.policy_arn),
                "    policy:\n      Version: \"2012-10-17\"\n      Statement:\n        - Effect: Allow\n          Action: [\"s3:GetObject\"]\n          Resource: \"*\"\n",
            )
        });
        w.s.settle().await;
        let pr = w.s.granted("r1", "1h").await;
        let expires = w.s.request("r1").await.expires_at.unwrap();
        assert!(w.attached().await.is_empty(), "nothing managed is attached");
        assert_eq!(w.inline_names().await, ["breakglass-r1"]);
        let written = w
            .iam
            .get_role_policy()
            .role_name(PRINCIPAL)
            .policy_name("breakglass-r1")
            .send()
            .await
            .unwrap();
        let document =
            breakglass::grant::aws_iam::document::decode(written.policy_document()).unwrap();
        assert_eq!(
            document["Statement"][0]["Condition"]["DateLessThan"]["aws:CurrentTime"],
            breakglass::clock::iso(expires),
            "{document}"
        );
        w.s.advance(TimeDelta::hours(1));
        w.s.settle().await;
        assert_eq!(w.s.request("r1").await.state.to_string(), "revoked");
        w.s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
        w.assert_nothing_granting().await;
    }
);

with_aws!(
    a_grant_in_iam_that_no_request_holds_is_found_and_removed,
    |w: World| async move {
        w.s.granted("r1", "1h").await;
        // Someone places a breakglass-looking grant by hand on the same principal.
        w.iam
            .put_role_policy()
            .role_name(PRINCIPAL)
            .policy_name("breakglass-ghost")
            .policy_document(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
            )
            .send()
            .await
            .unwrap();
        // Reconciliation runs at start and every `reconcile_interval` (5m) of the bot's clock;
        // it runs beside the workers, so wait for it (bounded), not for the queue.
        w.s.advance(TimeDelta::minutes(5));
        eventually(|| async {
            !w.inline_names()
                .await
                .contains(&"breakglass-ghost".to_owned())
        })
        .await;
        w.s.settle().await;
        let names = w.inline_names().await;
        assert!(!names.contains(&"breakglass-ghost".to_owned()), "{names:?}");
        // r1, which a request holds, is untouched.
        w.assert_granted("r1").await;
        assert_eq!(w.s.request("r1").await.state.to_string(), "active");
    }
);

with_aws!(
    a_grant_changed_in_iam_outside_breakglass_is_said_and_revoked,
    |w: World| async move {
        let pr = w.s.granted("r1", "1h").await;
        // Someone removes the grant's expiry in IAM: the access would no longer end by itself.
        w.iam
            .delete_role_policy()
            .role_name(PRINCIPAL)
            .policy_name("breakglass-r1-expiry")
            .send()
            .await
            .unwrap();
        w.s.advance(TimeDelta::minutes(5));
        eventually(|| async { w.s.request("r1").await.state.to_string() != "active" }).await;
        w.s.settle().await;
        assert_eq!(w.s.request("r1").await.state.to_string(), "revoked");
        let said = w.s.next_bot_comment(pr);
        assert!(
            said.starts_with("🚨 **This grant was changed outside breakglass**")
                && said.contains("breakglass-r1-expiry"),
            "{said}"
        );
        w.s.expect_bot_comments(pr, &["🔒 **Access revoked** at 2026-11-26T02:19:00Z: @alice no longer has `prod/admin` (reconciliation found it should not be active)."]);
        w.assert_nothing_granting().await;
    }
);

with_aws!(
    a_grant_that_ends_while_its_apply_is_in_flight_is_taken_back,
    |w: World| async move {
        // The grant step's attach waits at the proxy; meanwhile the expiry passes and the
        // revocation lane, which waits for the step's PR lock only briefly, ends the grant.
        let mut attach = w.proxy.hold_next("AttachRolePolicy");
        let pr =
            w.s.open_request(&w.s.people.alice, "prod", "r1", &prod_request("1h"));
        w.s.settle().await;
        w.s.approve(pr, &w.s.people.carol);
        attach.arrived().await;
        w.s.advance(TimeDelta::hours(1));
        eventually(|| async { w.s.request("r1").await.state.to_string() == "revoked" }).await;
        assert_eq!(w.s.request("r1").await.state.to_string(), "revoked");
        let before = w.proxy.actions();
        assert!(
            before.contains(&"DeleteRolePolicy".to_owned()),
            "the revoke ran while the attach was held: {before:?}"
        );
        // The attach lands after the revoke: without a take-back the managed policy would
        // stay attached with no expiry deny beside it, for good.
        attach.release();
        w.s.settle().await;
        let actions = w.proxy.actions();
        let attached_at = actions
            .iter()
            .rposition(|a| a == "AttachRolePolicy")
            .unwrap();
        assert!(
            actions[attached_at..].contains(&"DetachRolePolicy".to_owned()),
            "taken back after the late attach: {actions:?}"
        );
        w.assert_nothing_granting().await;
        assert_eq!(w.s.request("r1").await.state.to_string(), "revoked");
        w.s.expect_bot_comments(pr, &["✅ **Request", "🔒 **Access revoked**"]);
    }
);

with_aws!(
    a_leftover_grant_is_taken_back_as_it_was_applied_not_as_the_persons_other_grant_was,
    |w: World| async move {
        // One principal, two roles: `readonly` writes an inline policy, `admin` attaches the
        // managed one.
        w.s.edit_policy(&w.s.people.carol, "prod", |p| {
            p.replace(
                "  readonly:\n    provider: noop\n",
                "  readonly:\n    provider: aws-iam\n    account: \"123456789012\"\n    principal: \"arn:aws:iam::123456789012:role/breakglass-{{ requester }}\"\n    policy:\n      Version: \"2012-10-17\"\n      Statement:\n        - Effect: Allow\n          Action: [\"s3:GetObject\"]\n          Resource: \"*\"\n",
            )
        });
        w.s.settle().await;
        let readonly = prod_request("4h").replace("role: admin", "role: readonly");
        let first = w.s.open_request(&w.s.people.alice, "prod", "r1", &readonly);
        w.s.settle().await;
        w.s.approve(first, &w.s.people.carol);
        w.s.settle().await;
        w.s.expect_bot_comments(first, &["✅ **Request", "🔓 **Access granted.**"]);
        let second = w.s.granted("r2", "1h").await;
        w.s.advance(TimeDelta::hours(1));
        w.s.settle().await;
        w.s.expect_bot_comments(second, &["🔒 **Access revoked**"]);
        assert!(w.attached().await.is_empty());
        // r2's attachment and expiry deny come back, as a leftover would (a restore by hand,
        // a revoke that IAM lost): no live request holds them.
        w.iam
            .attach_role_policy()
            .role_name(PRINCIPAL)
            .policy_arn(&w.policy_arn)
            .send()
            .await
            .unwrap();
        w.iam
            .put_role_policy()
            .role_name(PRINCIPAL)
            .policy_name("breakglass-r2-expiry")
            .policy_document(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2026-11-26T03:13:00Z"}}}]}"#,
            )
            .send()
            .await
            .unwrap();
        // The pass reaches r2 through r1, the principal's live grant, and must take r2 back as
        // r2 was applied: detach the managed policy, not delete inline policies of r1's kind.
        w.s.advance(TimeDelta::minutes(5));
        eventually(|| async { w.attached().await.is_empty() }).await;
        w.s.settle().await;
        assert!(
            w.attached().await.is_empty(),
            "the leftover attachment is detached: {:?}",
            w.attached().await
        );
        let names = w.inline_names().await;
        assert!(
            !names.contains(&"breakglass-r2-expiry".to_owned()),
            "{names:?}"
        );
        assert!(
            names.contains(&"breakglass-r1".to_owned()),
            "r1 kept: {names:?}"
        );
        assert_eq!(w.s.request("r1").await.state.to_string(), "active");
    }
);

// AWS throttling the revoke for a while: it is tried again at least every 15 s however many
// times it was throttled (the grant is live until it goes through; a review found revokes
// backing off like forge work, up to 256 s, which would add minutes of access once the
// throttling is over).
with_aws!(
    a_throttled_revoke_is_tried_again_within_fifteen_seconds_however_often_it_failed,
    |w: World| async move {
        let pr = w.s.granted("r1", "1h").await;
        for _ in 0..8 {
            w.proxy.fail_next("DetachRolePolicy", 400, "Throttling");
        }
        w.s.expect_job_error(JobKind::Revoke, "DetachRolePolicy");
        let id = w.s.request("r1").await.id;
        let revoke_job = || async {
            let jobs = w.s.store.jobs_for_request(&id).await.unwrap();
            jobs.into_iter().find(|j| j.kind == JobKind::Revoke)
        };
        w.s.advance(TimeDelta::hours(1));
        for failed in 1..=8 {
            eventually(|| async { revoke_job().await.is_some_and(|j| j.attempts >= failed) }).await;
            let job = revoke_job().await.expect("the revoke job stays");
            // Backed off 1, 2, 4, 8 s, then between 10 and 15 s (spread, so that a batch
            // throttled together does not come back together).
            let wait = job.run_at - w.s.clock.now();
            assert!(
                wait <= TimeDelta::seconds(15),
                "after {failed} throttled tries the revoke waits {wait}"
            );
            w.s.advance(wait);
        }
        eventually(|| async { w.s.request("r1").await.state.to_string() == "revoked" }).await;
        w.assert_nothing_granting().await;
        w.s.settle().await;
        w.s.expect_bot_comments(pr, &["🔒 **Access revoked**"]);
    }
);

with_aws!(
    an_extension_that_loses_its_race_with_the_revoke_leaves_nothing_granting,
    |w: World| async move {
        let pr = w.s.granted("r1", "1h").await;
        w.proxy.clear();
        // The extension's write of the new expiry waits at the proxy; meanwhile the expiry
        // passes and the revoke, which waits for the extension's PR lock only briefly, runs.
        let mut put = w.proxy.hold_next("PutRolePolicy");
        w.s.note(pr, &w.s.people.carol, "/breakglass extend 30m");
        put.arrived().await;
        w.s.advance(TimeDelta::hours(1));
        eventually(|| async { w.s.request("r1").await.state.to_string() == "revoked" }).await;
        assert_eq!(w.s.request("r1").await.state.to_string(), "revoked");
        // The write lands after the revoke, and the take-back that follows it fails once.
        w.proxy
            .fail_next("DeleteRolePolicy", 503, "ServiceUnavailable");
        w.s.expect_delivery_error("DeleteRolePolicy");
        put.release();
        w.s.until_a_delivery_failed().await;
        // The comment's delivery is handled again: the request has ended, what the earlier
        // run wrote is taken back, and the extension is refused.
        w.s.advance(TimeDelta::minutes(1));
        w.s.settle().await;
        w.assert_nothing_granting().await;
        let actions = w.proxy.actions();
        assert!(
            !actions.contains(&"AttachRolePolicy".to_owned()),
            "an extension rewrites the expiry only, never the attachment: {actions:?}"
        );
        assert_eq!(w.s.request("r1").await.state.to_string(), "revoked");
        assert!(
            w.s.events("r1", "extend").await.is_empty(),
            "never extended"
        );
        let said = w.s.take_bot_comments(pr);
        assert!(
            said.iter().any(|c| c.starts_with("🔒 **Access revoked**")),
            "{said:?}"
        );
        assert!(
            said.iter()
                .any(|c| c.starts_with("ℹ️ `/breakglass extend` does not apply: request `r1` is")),
            "{said:?}"
        );
    }
);

with_aws!(
    a_revoke_whose_detach_lands_after_another_grant_attached_leaves_that_grant_working,
    |w: World| async move {
        // r1 ends at its TTL while r2, of the same person and managed policy, is granted. r1's
        // revoke found no other grant's expiry deny on the principal and detaches, but its
        // detach reaches IAM only after r2's grant attached the policy (a no-op, as it was
        // still attached): without a second look, r2 would be left without its access.
        let first = w.s.granted("r1", "1h").await;
        w.s.advance(TimeDelta::minutes(50));
        let second =
            w.s.open_request(&w.s.people.alice, "prod", "r2", &prod_request("1h"));
        w.s.settle().await;
        let mut detach = w.proxy.hold_next("DetachRolePolicy");
        w.s.advance(TimeDelta::minutes(10));
        detach.arrived().await;
        w.s.approve(second, &w.s.people.carol);
        eventually(|| async {
            w.s.bot_comments(second)
                .iter()
                .any(|c| c.starts_with("🔓 **Access granted.**"))
        })
        .await;
        assert!(
            w.inline_names()
                .await
                .contains(&"breakglass-r2-expiry".to_owned()),
            "r2 was applied while r1's detach was held: {:?}",
            w.proxy.actions()
        );
        detach.release();
        w.s.settle().await;
        assert_eq!(w.s.request("r1").await.state.to_string(), "revoked");
        w.s.expect_bot_comments(first, &["⏰", "🔒 **Access revoked**"]);
        assert_eq!(w.s.request("r2").await.state.to_string(), "active");
        w.assert_granted("r2").await;
        assert!(
            !w.inline_names()
                .await
                .contains(&"breakglass-r1-expiry".to_owned())
        );
        // Reconciliation finds r2 whole: no drift, no early end.
        w.s.advance(TimeDelta::minutes(5));
        w.s.settle().await;
        assert_eq!(w.s.request("r2").await.state.to_string(), "active");
        w.s.advance(TimeDelta::hours(1));
        w.s.settle().await;
        assert_eq!(w.s.request("r2").await.state.to_string(), "revoked");
        w.s.expect_bot_comments(
            second,
            &[
                "✅ **Request",
                "🔓 **Access granted.**",
                "🔒 **Access revoked**",
            ],
        );
        w.assert_nothing_granting().await;
    }
);

/// The expiry written on the principal for `id`'s expiry Deny.
async fn deny_expiry(w: &World, id: &str) -> String {
    let written = w
        .iam
        .get_role_policy()
        .role_name(PRINCIPAL)
        .policy_name(format!("breakglass-{id}-expiry"))
        .send()
        .await
        .unwrap();
    let document = breakglass::grant::aws_iam::document::decode(written.policy_document()).unwrap();
    document["Statement"][0]["Condition"]["DateGreaterThan"]["aws:CurrentTime"]
        .as_str()
        .unwrap_or_else(|| panic!("{document}"))
        .to_owned()
}

// alice holds r1 and r2 (one principal, one managed policy). r1 is revoked early, and its revoke
// puts back what r2 shares, from r2's record as read before; meanwhile carol extends r2 by 30m
// on r2's PR (another PR's lock). The put-back writes only the attachment, never r2's expiry
// Deny: IAM keeps the extended expiry the bot announced (helper review: the old one was
// written back over it, and reconciliation then ended r2 as "changed outside breakglass").
with_aws!(
    an_early_revoke_of_one_grant_never_undoes_an_extension_of_the_other,
    |w: World| async move {
        let first = w.s.granted("r1", "1h").await;
        w.s.advance(TimeDelta::minutes(5));
        let second = w.s.granted("r2", "2h").await;
        w.s.settle().await;
        w.s.skip_bot_comments(first);
        w.s.skip_bot_comments(second);
        let before = w.s.request("r2").await.expires_at.unwrap();
        assert_eq!(deny_expiry(&w, "r2").await, breakglass::clock::iso(before));
        let mut delete = w.proxy.hold_next("DeleteRolePolicy");
        w.s.forge.advance_clock(TimeDelta::seconds(1));
        w.s.note(first, &w.s.people.alice, "/breakglass revoke");
        delete.arrived().await; // r1's own expiry Deny, in r1's revoke
        let mut listing = w.proxy.hold_next("ListRolePolicies");
        delete.release();
        listing.arrived().await; // the put-back of r2, its record read already
        w.s.forge.advance_clock(TimeDelta::seconds(1));
        w.s.note(second, &w.s.people.carol, "/breakglass extend 30m");
        eventually(|| async { w.s.request("r2").await.expires_at != Some(before) }).await;
        let extended = w.s.request("r2").await.expires_at.unwrap();
        assert_eq!(extended, before + TimeDelta::minutes(30));
        listing.release();
        w.s.settle().await;
        assert_eq!(w.s.request("r1").await.state.to_string(), "revoked");
        w.s.expect_bot_comments(first, &["🔒 **Access revoked**"]);
        assert_eq!(
            deny_expiry(&w, "r2").await,
            breakglass::clock::iso(extended)
        );
        w.assert_granted("r2").await;
        // Reconciliation finds r2 as applied: it runs on to its extended expiry.
        w.s.advance(TimeDelta::minutes(5));
        w.s.settle().await;
        assert_eq!(w.s.request("r2").await.state.to_string(), "active");
        let said = w.s.take_bot_comments(second);
        assert!(
            !said
                .iter()
                .any(|c| c.contains("changed outside breakglass")),
            "{said:#?}"
        );
        assert!(
            said.iter().any(|c| c.starts_with("⏳ Extended")),
            "{said:#?}"
        );
    }
);
