//! The `aws-iam` provider against a real `moto_server` on loopback, through a recording
//! proxy (see `common/moto.rs`). moto evaluates no condition and enforces no quota, so these
//! tests assert the exact documents breakglass writes, their instants, their sizes against
//! IAM's quotas, and the calls it makes (the AssumeRole parameters moto ignores included).

#[path = "common/moto.rs"]
mod moto;

use std::sync::Arc;

use aws_sdk_iam::config::{BehaviorVersion, Credentials, Region};
use breakglass::clock::ManualClock;
use breakglass::config::AwsConfig;
use breakglass::grant::aws_iam::document::{self, PolicyDocument, ROLE_INLINE_QUOTA};
use breakglass::grant::aws_iam::{AwsGrant, AwsProvider, Permissions, REVOKED_SESSIONS};
use breakglass::grant::{GrantError, GrantSpec, NOT_YET_GRANTED, Providers};
use breakglass::policy::{PolicySet, Role};
use chrono::{DateTime, TimeDelta, Utc};
use moto::{Moto, Recorder, fake_credentials};
use serde_json::{Value, json};

const ACCOUNT: &str = "123456789012";
const PRINCIPAL: &str = "breakglass-alice";
const PRINCIPAL_ARN: &str = "arn:aws:iam::123456789012:role/breakglass-alice";
const MANAGEMENT_ROLE: &str = "arn:aws:iam::123456789012:role/breakglass-bot";
const GRANTED_AT: &str = "2026-11-26T02:14:00Z";
const EXPIRES_AT: &str = "2026-11-26T03:14:00Z";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

/// moto, the proxy the bot talks through, an IAM client of the test's own straight to moto,
/// and the clock the provider reads.
struct Aws {
    proxy: Recorder,
    admin: aws_sdk_iam::Client,
    clock: ManualClock,
    /// Kept to be stopped last, on drop.
    _moto: Moto,
}

impl Aws {
    /// Everything started, with the principal role `breakglass-alice` created; `None` when
    /// moto cannot run here (no Python).
    async fn start() -> Option<Aws> {
        fake_credentials();
        let moto = Moto::start().await?;
        let proxy = Recorder::start(&moto.url).await;
        let config = aws_sdk_iam::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&moto.url)
            .credentials_provider(Credentials::new("admin", "admin", None, None, "test"))
            .build();
        let clock = ManualClock::new(at(GRANTED_AT));
        proxy.date_answers(&clock, 0); // AWS's clock is the bot's, unless a test skews it
        let aws = Aws {
            proxy,
            admin: aws_sdk_iam::Client::from_conf(config),
            clock,
            _moto: moto,
        };
        aws.create_role(PRINCIPAL).await;
        Some(aws)
    }

    /// The provider as `serve` builds it from `[aws]`, talking through the proxy.
    async fn provider(&self, assume_role_arn: &str) -> AwsProvider {
        let config = AwsConfig {
            region: "us-east-1".into(),
            endpoint_url: self.proxy.url.clone(),
            assume_role_arn: assume_role_arn.into(),
        };
        AwsProvider::from_config(&config)
            .await
            .with_clock(Arc::new(self.clock.clone()))
    }

    async fn providers(&self) -> Providers {
        Providers::new("templates".into()).with_aws(self.provider("").await)
    }

    async fn create_role(&self, name: &str) {
        self.admin
            .create_role()
            .role_name(name)
            .assume_role_policy_document(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:AssumeRole"}]}"#,
            )
            .send()
            .await
            .unwrap();
    }

    /// A customer managed policy (moto does not load AWS's own by default), by ARN.
    async fn managed_policy(&self, name: &str) -> String {
        let created = self
            .admin
            .create_policy()
            .policy_name(name)
            .policy_document(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
            )
            .send()
            .await
            .unwrap();
        created.policy().unwrap().arn().unwrap().to_owned()
    }

    /// The principal's inline policy names, sorted.
    async fn inline_names(&self) -> Vec<String> {
        let mut names = self
            .admin
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

    /// An inline policy of the principal, as IAM returns it (URL-encoded), decoded.
    async fn inline(&self, name: &str) -> Value {
        let got = self
            .admin
            .get_role_policy()
            .role_name(PRINCIPAL)
            .policy_name(name)
            .send()
            .await
            .unwrap();
        document::decode(got.policy_document()).unwrap()
    }

    async fn put_inline(&self, name: &str, json: &str) {
        self.admin
            .put_role_policy()
            .role_name(PRINCIPAL)
            .policy_name(name)
            .policy_document(json)
            .send()
            .await
            .unwrap();
    }

    async fn attached(&self) -> Vec<String> {
        self.admin
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

    /// moto enforces no quota, so every test checks what IAM would: the principal's inline
    /// policies together, whitespace not counted, within 10,240 characters.
    async fn assert_within_quota(&self) {
        let mut total = 0;
        for name in self.inline_names().await {
            total += document::quota_size(&self.inline(&name).await.to_string());
        }
        assert!(
            total <= ROLE_INLINE_QUOTA,
            "{total} characters of inline policies on {PRINCIPAL}"
        );
    }

    /// The actions sent through the proxy that change something in IAM.
    fn writes(&self) -> Vec<String> {
        self.proxy
            .actions()
            .into_iter()
            .filter(|a| !a.starts_with("List") && !a.starts_with("Get"))
            .collect()
    }
}

fn spec(id: &str, expires_at: &str) -> GrantSpec {
    GrantSpec {
        id: id.into(),
        environment: "prod".into(),
        role: "admin".into(),
        requester: "alice".into(),
        reason: "incident: INC-1 checkout down".into(),
        ticket: Some("INC-1".into()),
        duration: "1h".into(),
        expires_at: expires_at.into(),
    }
}

fn role(policy_arn: &str) -> Role {
    Role {
        provider: "aws-iam".into(),
        description: None,
        account: Some(ACCOUNT.into()),
        principal: Some("arn:aws:iam::{{ account }}:role/breakglass-{{ requester }}".into()),
        policy_arn: Some(policy_arn.into()),
        policy: None,
        template: None,
        output: None,
    }
}

fn expiry_deny(at: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "BreakglassExpiry", "Effect": "Deny", "Action": "*", "Resource": "*",
        "Condition": {"DateGreaterThan": {"aws:CurrentTime": at}}
    }]})
}

fn revoked_sessions(at: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "BreakglassRevokedSessions", "Effect": "Deny", "Action": "*", "Resource": "*",
        "Condition": {"DateLessThan": {"aws:TokenIssueTime": at}}
    }]})
}

const S3_READ: &str = r#"
Version: "2012-10-17"
Statement:
  - Sid: Read
    Effect: Allow
    Action: ["s3:GetObject", "s3:ListBucket"]
    Resource: ["arn:aws:s3:::orders", "arn:aws:s3:::orders/*"]
  - Sid: NoDelete
    Effect: Deny
    Action: s3:DeleteObject
    Resource: "*"
"#;

/// An inline-document grant for `spec` (the policy model names managed policies only, so the
/// document is given to the provider directly).
fn inline_grant(spec: &GrantSpec, yaml: &str) -> AwsGrant {
    let doc: PolicyDocument = serde_saphyr::from_str(yaml).unwrap();
    let mut role = role("arn:aws:iam::aws:policy/unused");
    role.policy_arn = None;
    AwsGrant::new(&role, spec, Permissions::Inline(Box::new(doc))).unwrap()
}

#[tokio::test]
async fn a_managed_policy_grant_attaches_it_next_to_a_deny_from_the_expiry() {
    let Some(aws) = Aws::start().await else {
        return;
    };
    let admin = aws.managed_policy("breakglass-admin").await;
    let providers = aws.providers().await;

    providers
        .apply(&role(&admin), &spec("r-1", EXPIRES_AT))
        .await
        .unwrap();

    assert_eq!(aws.attached().await, [admin.as_str()]);
    assert_eq!(aws.inline_names().await, ["breakglass-r-1-expiry"]);
    assert_eq!(
        aws.inline("breakglass-r-1-expiry").await,
        expiry_deny(EXPIRES_AT)
    );
    // The Deny is written before the attachment, so no crash leaves it attached unbounded.
    assert_eq!(aws.writes(), ["PutRolePolicy", "AttachRolePolicy"]);
    aws.assert_within_quota().await;
}

#[tokio::test]
async fn an_inline_policy_grant_bounds_every_allow_statement_by_the_expiry() {
    let Some(aws) = Aws::start().await else {
        return;
    };
    let provider = aws.provider("").await;
    let grant = inline_grant(&spec("r-1", EXPIRES_AT), S3_READ);

    provider.apply(&grant).await.unwrap();

    assert_eq!(aws.inline_names().await, ["breakglass-r-1"]);
    assert_eq!(
        aws.inline("breakglass-r-1").await,
        json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "Read", "Effect": "Allow",
             "Action": ["s3:GetObject", "s3:ListBucket"],
             "Resource": ["arn:aws:s3:::orders", "arn:aws:s3:::orders/*"],
             "Condition": {"DateLessThan": {"aws:CurrentTime": EXPIRES_AT}}},
            {"Sid": "NoDelete", "Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}
        ]})
    );
    assert!(aws.attached().await.is_empty());
    aws.assert_within_quota().await;
}

#[tokio::test]
async fn applying_twice_is_applying_once_and_an_extension_rewrites_the_expiry() {
    let Some(aws) = Aws::start().await else {
        return;
    };
    let admin = aws.managed_policy("breakglass-admin").await;
    let providers = aws.providers().await;
    let role = role(&admin);

    providers
        .apply(&role, &spec("r-1", EXPIRES_AT))
        .await
        .unwrap();
    providers
        .apply(&role, &spec("r-1", EXPIRES_AT))
        .await
        .unwrap();
    assert_eq!(aws.attached().await, [admin.as_str()]);
    assert_eq!(aws.inline_names().await, ["breakglass-r-1-expiry"]);
    assert_eq!(
        aws.inline("breakglass-r-1-expiry").await,
        expiry_deny(EXPIRES_AT)
    );

    let extended = "2026-11-26T03:44:00Z";
    providers
        .apply(&role, &spec("r-1", extended))
        .await
        .unwrap();
    assert_eq!(aws.inline_names().await, ["breakglass-r-1-expiry"]);
    assert_eq!(
        aws.inline("breakglass-r-1-expiry").await,
        expiry_deny(extended)
    );
    assert!(
        providers
            .verify(&role, &spec("r-1", extended), true)
            .await
            .unwrap()
    );
}

// IAM compares the cut with `aws:TokenIssueTime`, on AWS's clock: with AWS 7 s ahead of the
// bot, a session AWS issued in the seconds before the revocation (by its clock) would outlive
// a cut at the bot's time, so the cut is the second after AWS's latest answer (one clock per
// comparison); with AWS behind, the bot's own second stands.
#[tokio::test]
async fn the_revoked_sessions_cut_follows_awss_clock_where_it_is_ahead() {
    let Some(aws) = Aws::start().await else {
        return;
    };
    let provider = aws.provider("").await;
    let first = inline_grant(&spec("r-1", EXPIRES_AT), S3_READ);
    provider.apply(&first).await.unwrap();
    aws.proxy.date_answers(&aws.clock, 7);
    aws.clock.advance(TimeDelta::minutes(20)); // 02:34:00, on the bot's clock
    provider.revoke(&first, &[]).await.unwrap();
    assert_eq!(
        aws.inline(REVOKED_SESSIONS).await,
        revoked_sessions("2026-11-26T02:34:08Z")
    );
    // AWS 7 s behind: the bot's second, the later one.
    let second = inline_grant(&spec("r-2", EXPIRES_AT), S3_READ);
    provider.apply(&second).await.unwrap();
    aws.proxy.date_answers(&aws.clock, -7);
    aws.clock.advance(TimeDelta::minutes(10)); // 02:44:00
    provider.revoke(&second, &[]).await.unwrap();
    assert_eq!(
        aws.inline(REVOKED_SESSIONS).await,
        revoked_sessions("2026-11-26T02:44:00Z")
    );
}

#[tokio::test]
async fn revoke_leaves_nothing_granting_and_denies_sessions_issued_before_it() {
    let Some(aws) = Aws::start().await else {
        return;
    };
    let admin = aws.managed_policy("breakglass-admin").await;
    let providers = aws.providers().await;
    let provider = aws.provider("").await;
    let managed = spec("r-1", EXPIRES_AT);
    let inline = inline_grant(&spec("r-2", EXPIRES_AT), S3_READ);
    providers.apply(&role(&admin), &managed).await.unwrap();
    provider.apply(&inline).await.unwrap();

    // Revoked early, 20 minutes and half a second into the grant.
    aws.clock
        .advance(TimeDelta::milliseconds(20 * 60 * 1000 + 500));
    providers.revoke(&role(&admin), &managed).await.unwrap();
    provider.revoke(&inline, &[]).await.unwrap();

    assert!(aws.attached().await.is_empty());
    assert_eq!(aws.inline_names().await, [REVOKED_SESSIONS]);
    // Sessions whose token was issued before the revocation are denied (the instant rounded
    // up, so one issued in the same second is too); `DateLessThan` leaves later ones alone.
    assert_eq!(
        aws.inline(REVOKED_SESSIONS).await,
        revoked_sessions("2026-11-26T02:34:01Z")
    );
    assert!(
        !providers
            .verify(&role(&admin), &managed, true)
            .await
            .unwrap()
    );
    aws.assert_within_quota().await;
}

#[tokio::test]
async fn revoking_again_or_what_was_never_applied_succeeds() {
    let Some(aws) = Aws::start().await else {
        return;
    };
    let admin = aws.managed_policy("breakglass-admin").await;
    let providers = aws.providers().await;
    let role = role(&admin);
    providers
        .apply(&role, &spec("r-1", EXPIRES_AT))
        .await
        .unwrap();

    providers
        .revoke(&role, &spec("r-1", EXPIRES_AT))
        .await
        .unwrap();
    providers
        .revoke(&role, &spec("r-1", EXPIRES_AT))
        .await
        .unwrap();
    providers
        .revoke(&role, &spec("never-applied", EXPIRES_AT))
        .await
        .unwrap();
    assert!(aws.attached().await.is_empty());
    assert_eq!(aws.inline_names().await, [REVOKED_SESSIONS]);

    // A principal deleted by hand holds nothing any more: that too is revoked.
    let mut gone = spec("r-3", EXPIRES_AT);
    gone.requester = "bob".into();
    providers.revoke(&role, &gone).await.unwrap();
}

#[tokio::test]
async fn the_revocation_deny_never_moves_back_in_time() {
    let Some(aws) = Aws::start().await else {
        return;
    };
    let admin = aws.managed_policy("breakglass-admin").await;
    let providers = aws.providers().await;
    let role = role(&admin);

    aws.clock.set(at("2026-11-26T03:00:00Z"));
    providers
        .revoke(&role, &spec("r-1", EXPIRES_AT))
        .await
        .unwrap();
    // Another replica, its clock behind, revokes a grant still in place.
    providers
        .apply(&role, &spec("r-2", EXPIRES_AT))
        .await
        .unwrap();
    aws.clock.set(at("2026-11-26T02:59:00Z"));
    providers
        .revoke(&role, &spec("r-2", EXPIRES_AT))
        .await
        .unwrap();
    // The second of AWS's answer to the first revoke (AWS's clock is the test's) is cut too.
    assert_eq!(
        aws.inline(REVOKED_SESSIONS).await,
        revoked_sessions("2026-11-26T03:00:01Z")
    );
    providers
        .apply(&role, &spec("r-3", EXPIRES_AT))
        .await
        .unwrap();
    aws.clock.set(at("2026-11-26T03:10:00Z"));
    providers
        .revoke(&role, &spec("r-3", EXPIRES_AT))
        .await
        .unwrap();
    assert_eq!(
        aws.inline(REVOKED_SESSIONS).await,
        revoked_sessions("2026-11-26T03:10:01Z")
    );
}

/// A revoke that runs again once its grant is gone (a retried job, reconciliation's orphan
/// revoke) leaves the session cut where it was: moving it to now would deny the sessions of a
/// later grant of the same person.
#[tokio::test]
async fn a_revoke_run_again_does_not_cut_the_sessions_of_a_later_grant() {
    let Some(aws) = Aws::start().await else {
        return;
    };
    let admin = aws.managed_policy("breakglass-admin").await;
    let providers = aws.providers().await;
    let role = role(&admin);
    let first = spec("r-first", EXPIRES_AT);
    providers.apply(&role, &first).await.unwrap();
    aws.clock.set(at("2026-11-26T02:30:00Z"));
    aws.proxy.clear();
    providers.revoke_with(&role, &first, &[]).await.unwrap();
    // The cut is written before anything is removed, so a run that fails half-way leaves
    // either the cut or something for the next run to find.
    assert_eq!(
        aws.writes(),
        ["PutRolePolicy", "DetachRolePolicy", "DeleteRolePolicy"]
    );

    // alice is granted again at 02:40 and takes a session; the first revoke runs again at
    // 02:45, with the second grant active.
    aws.clock.set(at("2026-11-26T02:40:00Z"));
    let second = spec("r-second", "2026-11-26T03:40:00Z");
    providers.apply(&role, &second).await.unwrap();
    aws.clock.set(at("2026-11-26T02:45:00Z"));
    aws.proxy.clear();
    providers
        .revoke_with(&role, &first, std::slice::from_ref(&second.id))
        .await
        .unwrap();
    providers
        .revoke_orphan(&role, &first, std::slice::from_ref(&second.id))
        .await
        .unwrap();

    // Where the first revoke put it: the second after AWS's answer at 02:30:00.
    assert_eq!(
        aws.inline(REVOKED_SESSIONS).await,
        revoked_sessions("2026-11-26T02:30:01Z")
    );
    assert!(
        !aws.writes().contains(&"PutRolePolicy".to_owned()),
        "{:?}",
        aws.writes()
    );
    assert!(providers.verify(&role, &second, true).await.unwrap());
    // The second grant's own revoke cuts its sessions.
    aws.clock.set(at("2026-11-26T03:00:00Z"));
    providers.revoke_with(&role, &second, &[]).await.unwrap();
    assert_eq!(
        aws.inline(REVOKED_SESSIONS).await,
        revoked_sessions("2026-11-26T03:00:01Z")
    );
    assert!(aws.attached().await.is_empty());
}

/// Two grants of the same managed policy to alice, the second made while the first is on.
async fn two_overlapping_managed_grants(aws: &Aws) -> (Providers, Role, GrantSpec, GrantSpec) {
    let admin = aws.managed_policy("breakglass-admin").await;
    let providers = aws.providers().await;
    let role = role(&admin);
    let earlier = spec("r-early", EXPIRES_AT);
    let later = spec("r-late", "2026-11-26T04:14:00Z");
    providers.apply(&role, &earlier).await.unwrap();
    aws.clock.advance(TimeDelta::minutes(30));
    providers.apply(&role, &later).await.unwrap();
    assert_eq!(
        Providers::aws_attachment(&role, &earlier),
        Providers::aws_attachment(&role, &later)
    );
    aws.assert_within_quota().await;
    (providers, role, earlier, later)
}

#[tokio::test]
async fn overlapping_grants_revoking_the_earlier_leaves_the_later_working() {
    let Some(aws) = Aws::start().await else {
        return;
    };
    let (providers, role, earlier, later) = two_overlapping_managed_grants(&aws).await;
    let admin = role.policy_arn.clone().unwrap();

    providers
        .revoke_with(&role, &earlier, std::slice::from_ref(&later.id))
        .await
        .unwrap();

    assert_eq!(aws.attached().await, [admin]);
    assert_eq!(
        aws.inline_names().await,
        ["breakglass-r-late-expiry", REVOKED_SESSIONS]
    );
    assert_eq!(
        aws.inline("breakglass-r-late-expiry").await,
        expiry_deny("2026-11-26T04:14:00Z")
    );
    assert!(providers.verify(&role, &later, true).await.unwrap());

    providers.revoke_with(&role, &later, &[]).await.unwrap();
    assert!(aws.attached().await.is_empty());
    assert_eq!(aws.inline_names().await, [REVOKED_SESSIONS]);
}

#[tokio::test]
async fn overlapping_grants_revoking_the_later_leaves_the_earlier_working() {
    let Some(aws) = Aws::start().await else {
        return;
    };
    let (providers, role, earlier, later) = two_overlapping_managed_grants(&aws).await;
    let admin = role.policy_arn.clone().unwrap();

    providers
        .revoke_with(&role, &later, std::slice::from_ref(&earlier.id))
        .await
        .unwrap();

    assert_eq!(aws.attached().await, [admin]);
    assert_eq!(
        aws.inline_names().await,
        ["breakglass-r-early-expiry", REVOKED_SESSIONS]
    );
    assert_eq!(
        aws.inline("breakglass-r-early-expiry").await,
        expiry_deny(EXPIRES_AT)
    );
    assert!(providers.verify(&role, &earlier, true).await.unwrap());
}

#[tokio::test]
async fn a_grant_named_as_sharing_but_absent_from_the_principal_keeps_nothing_attached() {
    let Some(aws) = Aws::start().await else {
        return;
    };
    let admin = aws.managed_policy("breakglass-admin").await;
    let providers = aws.providers().await;
    let role = role(&admin);
    providers
        .apply(&role, &spec("r-1", EXPIRES_AT))
        .await
        .unwrap();

    providers
        .revoke_with(
            &role,
            &spec("r-1", EXPIRES_AT),
            &["r-elsewhere".into(), "r-1".into()],
        )
        .await
        .unwrap();

    assert!(aws.attached().await.is_empty());
}

#[tokio::test]
async fn overlapping_inline_grants_are_independent() {
    let Some(aws) = Aws::start().await else {
        return;
    };
    let provider = aws.provider("").await;
    let earlier = inline_grant(&spec("r-early", EXPIRES_AT), S3_READ);
    let later = inline_grant(&spec("r-late", "2026-11-26T04:14:00Z"), S3_READ);
    provider.apply(&earlier).await.unwrap();
    provider.apply(&later).await.unwrap();
    let later_doc = aws.inline("breakglass-r-late").await;

    provider.revoke(&earlier, &[]).await.unwrap();

    assert_eq!(
        aws.inline_names().await,
        ["breakglass-r-late", REVOKED_SESSIONS]
    );
    assert_eq!(aws.inline("breakglass-r-late").await, later_doc);
    assert_eq!(
        later_doc["Statement"][0]["Condition"]["DateLessThan"]["aws:CurrentTime"],
        "2026-11-26T04:14:00Z"
    );
    assert!(provider.verify(&later, true).await.unwrap());
    assert!(!provider.verify(&earlier, true).await.unwrap());
}

#[tokio::test]
async fn a_document_over_the_quota_is_refused_before_any_call_to_aws() {
    let Some(aws) = Aws::start().await else {
        return;
    };
    let provider = aws.provider(MANAGEMENT_ROLE).await;
    let actions: Vec<String> = (0..700).map(|i| format!("\"s3:Action{i:05}\"")).collect();
    let yaml = format!(
        "Version: \"2012-10-17\"\nStatement:\n  - Effect: Allow\n    Action: [{}]\n    Resource: \"*\"\n",
        actions.join(", ")
    );
    let grant = inline_grant(&spec("r-1", EXPIRES_AT), &yaml);

    let err = provider.apply(&grant).await.unwrap_err();

    assert!(
        matches!(&err, GrantError::Misconfigured(m) if m.contains("IAM allows 10240 per role")),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert_eq!(aws.proxy.actions(), Vec::<String>::new());
    assert!(aws.inline_names().await.is_empty());
}

#[tokio::test]
async fn a_grant_that_would_overflow_the_roles_inline_quota_writes_nothing() {
    let Some(aws) = Aws::start().await else {
        return;
    };
    let admin = aws.managed_policy("breakglass-admin").await;
    // Someone else's inline policy, close to the quota on its own.
    let actions: Vec<String> = (0..830).map(|i| format!("\"s3:A{i:05}\"")).collect();
    let big = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":[{}],"Resource":"*"}}]}}"#,
        actions.join(",")
    );
    let big_size = document::quota_size(&big);
    assert!(
        big_size < ROLE_INLINE_QUOTA && big_size > ROLE_INLINE_QUOTA - 300,
        "{big_size}"
    );
    aws.put_inline("team-policy", &big).await;
    let providers = aws.providers().await;

    let err = providers
        .apply(&role(&admin), &spec("r-1", EXPIRES_AT))
        .await
        .unwrap_err();

    assert!(matches!(err, GrantError::Misconfigured(_)), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("{big_size} already there")),
        "{err}"
    );
    assert!(aws.writes().is_empty(), "{:?}", aws.writes());
    assert!(aws.attached().await.is_empty());
}

#[tokio::test]
async fn the_management_role_session_carries_the_requester_and_the_request() {
    let Some(aws) = Aws::start().await else {
        return;
    };
    let admin = aws.managed_policy("breakglass-admin").await;
    let providers =
        Providers::new("templates".into()).with_aws(aws.provider(MANAGEMENT_ROLE).await);

    providers
        .apply(&role(&admin), &spec("r-1", EXPIRES_AT))
        .await
        .unwrap();

    let calls = aws.proxy.calls();
    let assume = &calls[0];
    assert_eq!(assume.action, "AssumeRole");
    assert_eq!(assume.status, 200);
    assert_eq!(assume.param("RoleArn"), Some(MANAGEMENT_ROLE));
    assert_eq!(assume.param("RoleSessionName"), Some("breakglass-r-1"));
    assert_eq!(assume.param("SourceIdentity"), Some("alice"));
    assert_eq!(assume.param("DurationSeconds"), Some("900"));
    assert_eq!(
        assume.param("Tags.member.1.Key"),
        Some("breakglass-request")
    );
    assert_eq!(assume.param("Tags.member.1.Value"), Some("r-1"));
    assert_eq!(
        assume.param("Tags.member.2.Key"),
        Some("breakglass-requester")
    );
    assert_eq!(assume.param("Tags.member.2.Value"), Some("alice"));
    // The ambient credentials sign only the AssumeRole; every IAM call is made in the
    // session it returned.
    assert_eq!(assume.access_key_id, "testing");
    let session_key = between(&assume.response, "<AccessKeyId>", "</AccessKeyId>");
    assert_ne!(session_key, "testing");
    let iam: Vec<_> = calls[1..].iter().collect();
    assert!(iam.iter().any(|c| c.action == "PutRolePolicy"));
    assert!(iam.iter().any(|c| c.action == "AttachRolePolicy"));
    for call in iam {
        assert_eq!(call.access_key_id, session_key, "{}", call.action);
    }

    // The revoke runs in a session of its own, linked to the same person and request.
    aws.proxy.clear();
    providers
        .revoke(&role(&admin), &spec("r-1", EXPIRES_AT))
        .await
        .unwrap();
    let calls = aws.proxy.calls();
    assert_eq!(calls[0].action, "AssumeRole");
    assert_eq!(calls[0].param("SourceIdentity"), Some("alice"));
    assert_eq!(calls[0].param("Tags.member.1.Value"), Some("r-1"));
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).expect(start) + start.len();
    let to = text[from..].find(end).expect(end) + from;
    &text[from..to]
}

#[tokio::test]
async fn verify_finds_this_grants_pieces_and_reports_drift() {
    let Some(aws) = Aws::start().await else {
        return;
    };
    let admin = aws.managed_policy("breakglass-admin").await;
    let providers = aws.providers().await;
    let provider = aws.provider("").await;
    let role = role(&admin);
    let spec = spec("r-1", EXPIRES_AT);
    let grant = AwsGrant::resolve(&role, &spec).unwrap();
    providers.apply(&role, &spec).await.unwrap();

    assert!(providers.verify(&role, &spec, true).await.unwrap());
    assert!(provider.drift(&grant).await.unwrap().is_empty());
    // Git no longer lists it: not held, whatever is in AWS (the revoke cleans up).
    assert!(!providers.verify(&role, &spec, false).await.unwrap());

    // Someone removed the expiry Deny by hand: the attachment would never end by itself.
    aws.admin
        .delete_role_policy()
        .role_name(PRINCIPAL)
        .policy_name("breakglass-r-1-expiry")
        .send()
        .await
        .unwrap();
    assert_eq!(
        provider.drift(&grant).await.unwrap(),
        [format!(
            "breakglass-r-1-expiry is missing from {PRINCIPAL_ARN}"
        )]
    );
    assert!(!providers.verify(&role, &spec, true).await.unwrap());

    // Someone loosened it.
    aws.put_inline(
        "breakglass-r-1-expiry",
        &expiry_deny("2099-01-01T00:00:00Z").to_string(),
    )
    .await;
    let drift = provider.drift(&grant).await.unwrap();
    assert!(
        drift.len() == 1
            && drift[0].contains("is not what breakglass wrote")
            && drift[0].contains("2099"),
        "{drift:?}"
    );

    // Someone detached the policy: the grant is gone, and verify says so.
    providers.apply(&role, &spec).await.unwrap();
    aws.admin
        .detach_role_policy()
        .role_name(PRINCIPAL)
        .policy_arn(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(
        providers.drift(&role, &spec).await.unwrap(),
        [format!("{admin} is not attached to {PRINCIPAL_ARN}")]
    );
    assert!(!providers.verify(&role, &spec, true).await.unwrap());
}

#[tokio::test]
async fn aws_errors_are_typed_by_what_the_caller_should_do() {
    let Some(aws) = Aws::start().await else {
        return;
    };
    let admin = aws.managed_policy("breakglass-admin").await;
    let providers = aws.providers().await;
    let role = role(&admin);
    let spec = spec("r-1", EXPIRES_AT);

    aws.proxy.fail_next("PutRolePolicy", 400, "Throttling");
    let err = providers.apply(&role, &spec).await.unwrap_err();
    assert!(
        matches!(err, GrantError::Throttled(_)) && err.is_retryable(),
        "{err}"
    );
    // The retry (by the job queue) goes through.
    providers.apply(&role, &spec).await.unwrap();
    assert_eq!(aws.attached().await, [admin.as_str()]);

    aws.proxy.fail_next("DetachRolePolicy", 403, "AccessDenied");
    let err = providers.revoke(&role, &spec).await.unwrap_err();
    assert!(
        matches!(err, GrantError::Denied(_)) && !err.is_retryable(),
        "{err}"
    );
    assert!(err.to_string().contains("DetachRolePolicy"), "{err}");

    aws.proxy
        .fail_next("ListRolePolicies", 500, "ServiceFailure");
    let err = providers.revoke(&role, &spec).await.unwrap_err();
    assert!(
        matches!(err, GrantError::Transient(_)) && err.is_retryable(),
        "{err}"
    );
    providers.revoke(&role, &spec).await.unwrap();
    assert!(aws.attached().await.is_empty());

    // A principal that does not exist is the policy's mistake: no retry will fix it.
    let mut nobody = spec.clone();
    nobody.requester = "nobody".into();
    let err = providers.apply(&role, &nobody).await.unwrap_err();
    assert!(
        matches!(&err, GrantError::Misconfigured(m) if m.contains("breakglass-nobody does not exist")),
        "{err}"
    );

    // A managed policy that does not exist: AWS's NoSuchEntity, misconfigured too.
    let missing = format!("arn:aws:iam::{ACCOUNT}:policy/not-there");
    let err = providers
        .apply(&self::role(&missing), &spec)
        .await
        .unwrap_err();
    assert!(matches!(err, GrantError::Misconfigured(_)), "{err}");
}

#[tokio::test]
async fn aws_out_of_reach_is_transient_and_an_unconfigured_provider_is_unavailable() {
    fake_credentials();
    // Bound but never listening, for the whole test: connections are refused, and no test
    // running beside this one can be given the port and answer.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = socket.local_addr().unwrap().port();
    let provider = AwsProvider::from_config(&AwsConfig {
        region: "us-east-1".into(),
        endpoint_url: format!("http://127.0.0.1:{closed}"),
        assume_role_arn: String::new(),
    })
    .await;
    let providers = Providers::new("templates".into()).with_aws(provider);
    let role = role("arn:aws:iam::123456789012:policy/breakglass-admin");
    let err = providers
        .apply(&role, &spec("r-1", EXPIRES_AT))
        .await
        .unwrap_err();
    assert!(matches!(err, GrantError::Transient(_)), "{err}");

    let unconfigured = Providers::new("templates".into());
    let err = unconfigured
        .revoke(&role, &spec("r-1", EXPIRES_AT))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GrantError::Unavailable(_, m) if m.contains("[aws]")),
        "{err}"
    );
}

#[test]
fn the_example_aws_policy_is_lint_clean_and_names_a_role_per_requester() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policies");
    let policies = PolicySet::load_dir(&dir).unwrap();
    let policy = policies.get("aws").unwrap();
    assert_eq!(policy.roles.len(), 2);
    for role in policy.roles.values() {
        let grant = AwsGrant::resolve(role, &spec("r-1", EXPIRES_AT)).unwrap();
        assert_eq!(
            grant.principal.arn(),
            "arn:aws:iam::123456789012:role/breakglass/breakglass-alice"
        );
        assert_eq!(grant.principal.name(), "breakglass-alice");
        assert!(grant.attachment().is_some());
    }
}

#[tokio::test]
async fn a_grant_nobody_can_serve_fails_the_check_made_before_merge() {
    fake_credentials();
    let role = role("arn:aws:iam::123456789012:policy/breakglass-admin");
    let spec = spec("r-1", "");

    let unconfigured = Providers::new("templates".into());
    assert!(matches!(
        unconfigured.check(&role, &spec),
        Err(GrantError::Unavailable(..))
    ));

    // Checked without calling AWS: the endpoint does not even exist.
    let provider = AwsProvider::from_config(&AwsConfig {
        region: "us-east-1".into(),
        endpoint_url: "http://127.0.0.1:9".into(),
        assume_role_arn: MANAGEMENT_ROLE.into(),
    })
    .await;
    let providers = Providers::new("templates".into()).with_aws(provider);
    providers.check(&role, &spec).unwrap();

    let mut unlinkable = spec.clone();
    unlinkable.requester = "a".into();
    let err = providers.check(&role, &unlinkable).unwrap_err();
    assert!(err.to_string().contains("SourceIdentity"), "{err}");

    let mut outside = spec.clone();
    outside.requester = "al/ice".into();
    let err = providers.check(&role, &outside).unwrap_err();
    assert!(
        err.to_string()
            .contains("may not be part of an IAM role ARN"),
        "{err}"
    );

    let mut no_principal = role.clone();
    no_principal.principal = None;
    assert!(matches!(
        providers.check(&no_principal, &spec),
        Err(GrantError::Misconfigured(_))
    ));

    let mut noop = role.clone();
    noop.provider = "noop".into();
    providers.check(&noop, &spec).unwrap();
}

/// An inline `policy` document, far over IAM's quota, on a role of the policy model.
fn oversized_role() -> Role {
    let actions: Vec<String> = (0..700).map(|i| format!("\"s3:Action{i:05}\"")).collect();
    let yaml = format!(
        "Version: \"2012-10-17\"\nStatement:\n  - Effect: Allow\n    Action: [{}]\n    Resource: \"*\"\n",
        actions.join(", ")
    );
    let mut role = role("arn:aws:iam::aws:policy/unused");
    role.policy_arn = None;
    role.policy = Some(serde_saphyr::from_str(&yaml).unwrap());
    role
}

/// Before the merge a request has no expiry yet; its document's size does not depend on it
/// (the instant is fixed-width), so a document that can never fit is refused then, not merged
/// and then stuck at apply.
#[tokio::test]
async fn a_document_over_the_quota_is_refused_by_the_check_made_before_merge() {
    let Some(aws) = Aws::start().await else {
        return;
    };
    let providers = aws.providers().await;
    let oversized = oversized_role();

    for expires_at in [NOT_YET_GRANTED, "", EXPIRES_AT] {
        let err = providers
            .check(&oversized, &spec("r-1", expires_at))
            .unwrap_err();
        assert!(
            matches!(&err, GrantError::Misconfigured(m) if m.contains("IAM allows 10240 per role")),
            "{expires_at}: {err}"
        );
    }
    // A document that fits passes, unmerged or merged.
    let mut fits = oversized.clone();
    fits.policy = Some(serde_saphyr::from_str(S3_READ).unwrap());
    providers
        .check(&fits, &spec("r-1", NOT_YET_GRANTED))
        .unwrap();
    providers.check(&fits, &spec("r-1", EXPIRES_AT)).unwrap();
    assert_eq!(aws.proxy.actions(), Vec::<String>::new());
}

/// IAM's role APIs take a role name and act in the caller's account: a role of account
/// 222222222222, served by a bot whose credentials are in moto's 123456789012, would be granted
/// on (and revoked from, and verified against) `arn:aws:iam::123456789012:role/breakglass-alice`.
#[tokio::test]
async fn a_role_of_another_account_than_the_bots_is_refused_and_never_touched() {
    let Some(aws) = Aws::start().await else {
        return;
    };
    let admin = aws.managed_policy("breakglass-admin").await;
    let providers = aws.providers().await;
    let mut elsewhere = role(&admin);
    elsewhere.account = Some("222222222222".into());
    let spec = spec("r-1", EXPIRES_AT);

    let err = providers.apply(&elsewhere, &spec).await.unwrap_err();
    assert!(
        matches!(&err, GrantError::Misconfigured(m)
            if m.contains("arn:aws:iam::222222222222:role/breakglass-alice")
                && m.contains("acts in AWS account 123456789012")
                && m.contains("sts:GetCallerIdentity")
                && m.contains("Set the role's `account` to 123456789012")),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert!(aws.inline_names().await.is_empty());
    assert!(aws.attached().await.is_empty());

    // The same-named grant of the bot's own account is served as before...
    providers.apply(&role(&admin), &spec).await.unwrap();
    // ...and the other account's revoke and verify never act on it.
    let err = providers.revoke(&elsewhere, &spec).await.unwrap_err();
    assert!(matches!(err, GrantError::Misconfigured(_)), "{err}");
    let err = providers.verify(&elsewhere, &spec, true).await.unwrap_err();
    assert!(matches!(err, GrantError::Misconfigured(_)), "{err}");
    assert_eq!(aws.attached().await, [admin.as_str()]);
    assert_eq!(aws.inline_names().await, ["breakglass-r-1-expiry"]);
    assert_eq!(aws.writes(), ["PutRolePolicy", "AttachRolePolicy"]);

    // Once learned, the account refuses the request before the merge too.
    let err = providers
        .check(&elsewhere, &self::spec("r-2", NOT_YET_GRANTED))
        .unwrap_err();
    assert!(matches!(err, GrantError::Misconfigured(_)), "{err}");
    providers
        .check(&role(&admin), &self::spec("r-2", NOT_YET_GRANTED))
        .unwrap();

    providers.revoke(&role(&admin), &spec).await.unwrap();
    assert!(aws.attached().await.is_empty());
    let asked = aws.proxy.actions();
    assert_eq!(
        asked.iter().filter(|a| *a == "GetCallerIdentity").count(),
        1,
        "the account is asked once: {asked:?}"
    );
}

/// With a management role the bot acts in that role's account, known from its ARN: a role
/// of another account is refused before the merge and at apply, without any call to AWS.
#[tokio::test]
async fn a_management_role_of_another_account_refuses_the_grant_without_calling_aws() {
    let Some(aws) = Aws::start().await else {
        return;
    };
    let admin = aws.managed_policy("breakglass-admin").await;
    let elsewhere = "arn:aws:iam::222222222222:role/breakglass-bot";
    let providers = Providers::new("templates".into()).with_aws(aws.provider(elsewhere).await);

    let err = providers
        .check(&role(&admin), &spec("r-1", NOT_YET_GRANTED))
        .unwrap_err();
    assert!(
        matches!(&err, GrantError::Misconfigured(m)
            if m.contains("acts in AWS account 222222222222") && m.contains(elsewhere)),
        "{err}"
    );
    let err = providers
        .apply(&role(&admin), &spec("r-1", EXPIRES_AT))
        .await
        .unwrap_err();
    assert!(matches!(err, GrantError::Misconfigured(_)), "{err}");
    assert_eq!(aws.proxy.actions(), Vec::<String>::new());
    assert!(aws.inline_names().await.is_empty());
}
