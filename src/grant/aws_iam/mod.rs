//! The `aws-iam` provider: grants a role's permissions to the requester's IAM role with
//! `aws-sdk-iam`, optionally through a management role assumed with `aws-sdk-sts`.
//!
//! What one grant places on its principal, by deterministic names (so applying twice is
//! applying once, and revoke and verify find exactly this grant's pieces):
//!
//! | the role gives | apply writes | revoke removes |
//! |---|---|---|
//! | inline `policy` | `breakglass-<id>`: the document, every Allow bounded by `aws:CurrentTime` | `breakglass-<id>` |
//! | `policy_arn` | `breakglass-<id>-expiry` (Deny of everything after the expiry), then the attachment | the attachment (unless another active grant holds it), then `breakglass-<id>-expiry` |
//!
//! A revoke that still finds something of its grant on the principal first writes
//! `breakglass-revoked-sessions`, a Deny of every session issued before the revocation
//! (`aws:TokenIssueTime`), so credentials taken during the grant stop working too; sessions
//! issued later (another grant of the same person) are not hit by it, and a revoke that runs
//! again once everything is gone leaves it alone. The orders above are chosen so that a crash
//! between two calls never leaves a managed policy attached without its expiry.
//!
//! IAM's role APIs take a role name and act in the caller's account, so every operation is
//! refused (misconfigured) when the bot acts in another account than the grant's role.
//!
//! With `assume_role_arn` configured, each operation runs in a fresh 15-minute session of that
//! role whose `SourceIdentity` is the requester and whose tags name the request, so CloudTrail
//! links every IAM call to a person and a request. The session's credentials live in memory
//! only, for that one operation.

pub mod aws_time;
pub mod document;
pub mod error;
pub mod principal;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_iam::config::Credentials;
use aws_sdk_sts::types::Tag;
use chrono::{DateTime, Utc};
use tokio::sync::OnceCell;

use self::aws_time::AwsTime;
use self::document::{PolicyDocument, ROLE_INLINE_QUOTA, quota_size};
use self::error::{classify, is_no_such_entity};
pub use self::principal::RoleArn;
use super::{GrantError, GrantSpec};
use crate::clock::{Clock, SystemClock};
use crate::config::AwsConfig;
use crate::policy::Role;

/// The inline policy that denies sessions issued before the latest revocation.
pub const REVOKED_SESSIONS: &str = "breakglass-revoked-sessions";

/// How long the bot's own STS session lasts: STS's minimum, since one operation needs seconds.
const SESSION_SECONDS: i32 = 900;

/// The inline policy holding a grant's permissions (inline `policy` roles).
pub fn grant_policy_name(id: &str) -> String {
    format!("breakglass-{id}")
}

/// The inline Deny that ends a managed-policy grant at its expiry.
pub fn expiry_policy_name(id: &str) -> String {
    format!("breakglass-{id}-expiry")
}

/// What a grant gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Permissions {
    /// A managed policy, by ARN: attached, next to an inline Deny from the expiry on.
    Managed(String),
    /// An identity policy document, written inline with the expiry on every Allow.
    Inline(Box<PolicyDocument>),
}

/// One `aws-iam` grant, resolved from the role applied at merge time and the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsGrant {
    pub id: String,
    pub requester: String,
    pub principal: RoleArn,
    pub permissions: Permissions,
    /// Absent only for a request revoked before it was ever granted.
    pub expires_at: Option<DateTime<Utc>>,
}

impl AwsGrant {
    /// The grant `role` gives for `spec`.
    pub fn resolve(role: &Role, spec: &GrantSpec) -> Result<Self, GrantError> {
        let permissions = match (&role.policy_arn, &role.policy) {
            (Some(arn), None) => Permissions::Managed(arn.clone()),
            (None, Some(document)) => Permissions::Inline(Box::new(document.clone())),
            _ => {
                return Err(GrantError::Misconfigured(
                    "an aws-iam role needs exactly one of `policy_arn` and `policy`".into(),
                ));
            }
        };
        Self::new(role, spec, permissions)
    }

    /// The grant of `role`'s principal for `spec`, giving `permissions`.
    pub fn new(
        role: &Role,
        spec: &GrantSpec,
        permissions: Permissions,
    ) -> Result<Self, GrantError> {
        let account = role
            .account
            .as_deref()
            .ok_or_else(|| GrantError::Misconfigured("an aws-iam role needs `account`".into()))?;
        let template = role
            .principal
            .as_deref()
            .ok_or_else(|| GrantError::Misconfigured("an aws-iam role needs `principal`".into()))?;
        check_permissions(&permissions)?;
        check_id(&spec.id)?;
        Ok(Self {
            id: spec.id.clone(),
            requester: spec.requester.clone(),
            principal: principal::render(template, account, spec)?,
            permissions,
            expires_at: expiry_of(spec)?,
        })
    }

    /// The managed policy this grant attaches, and to which role: two grants with the same
    /// attachment share it, and only the last one revoked may detach it.
    pub fn attachment(&self) -> Option<(&str, &str)> {
        match &self.permissions {
            Permissions::Managed(arn) => Some((self.principal.arn(), arn)),
            Permissions::Inline(_) => None,
        }
    }

    /// The inline policy apply writes for this grant, by name, as IAM receives it.
    fn written(&self) -> Result<(String, String), GrantError> {
        let expires_at = self.expires_at.ok_or_else(|| {
            GrantError::Misconfigured(format!("{} has no expiry; it is never applied", self.id))
        })?;
        Ok(self.written_until(expires_at))
    }

    /// The inline policy this grant would write if it expired at `expires_at`.
    fn written_until(&self, expires_at: DateTime<Utc>) -> (String, String) {
        match &self.permissions {
            Permissions::Inline(doc) => (
                grant_policy_name(&self.id),
                document::with_expiry(doc, expires_at).to_json(),
            ),
            Permissions::Managed(_) => (
                expiry_policy_name(&self.id),
                document::expiry_deny(expires_at).to_json(),
            ),
        }
    }

    /// The account of the role this grant is placed on.
    fn account(&self) -> &str {
        role_account(self.principal.arn()).unwrap_or_default()
    }
}

/// The account of a role ARN (`arn:<partition>:iam::<account>:role/<name>`); `None` when `arn`
/// is not one.
fn role_account(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (arn_, _partition, iam, region) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let (account, resource) = (parts.next()?, parts.next()?);
    let valid = arn_ == "arn"
        && iam == "iam"
        && region.is_empty()
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && resource.starts_with("role/");
    valid.then_some(account)
}

/// Refuses `grant` when the bot acts in another account than the grant's role. IAM's role APIs
/// take a role *name* and act in the caller's own account, so the calls would otherwise land
/// on (or revoke, or read) a same-named role of the wrong account. Misconfigured: no retry
/// helps, a person must change the policy or the bot's credentials.
fn check_account(grant: &AwsGrant, acting: &str, how: &str) -> Result<(), GrantError> {
    let account = grant.account();
    if account == acting {
        return Ok(());
    }
    Err(GrantError::Misconfigured(format!(
        "{} is in account {account}, but breakglass acts in AWS account {acting} ({how}); IAM \
         names roles without their account, so every call for this grant would act on the \
         same-named role of account {acting}. Set the role's `account` to {acting}, or serve \
         account {account} with a breakglass whose credentials (or `[aws] assume_role_arn`) \
         are in that account",
        grant.principal
    )))
}

fn check_permissions(permissions: &Permissions) -> Result<(), GrantError> {
    match permissions {
        Permissions::Managed(arn) if !is_policy_arn(arn) => {
            Err(GrantError::Misconfigured(format!(
                "`{arn}` is not an IAM policy ARN (arn:aws:iam::<account or aws>:policy/<name>)"
            )))
        }
        Permissions::Inline(doc) => match doc.problem() {
            Some(problem) => Err(GrantError::Misconfigured(format!("`policy`: {problem}"))),
            None => Ok(()),
        },
        Permissions::Managed(_) => Ok(()),
    }
}

fn is_policy_arn(arn: &str) -> bool {
    ["arn:aws:iam::", "arn:aws-cn:iam::", "arn:aws-us-gov:iam::"]
        .iter()
        .any(|prefix| {
            arn.strip_prefix(prefix)
                .is_some_and(|rest| rest.contains(":policy/"))
        })
}

/// Ids whose policy names would be another grant's or the revocation's: a request `x-expiry`
/// would write `breakglass-x-expiry`, the Deny of request `x`, and a request
/// `revoked-sessions` could delete the revocation Deny with its own revoke.
fn check_id(id: &str) -> Result<(), GrantError> {
    let lower = id.to_ascii_lowercase();
    if lower.ends_with("-expiry") || lower == "revoked-sessions" {
        return Err(GrantError::Misconfigured(format!(
            "request id `{id}` would clash with breakglass's own IAM policy names; an aws-iam request id may not end in `-expiry` nor be `revoked-sessions`"
        )));
    }
    Ok(())
}

fn expiry_of(spec: &GrantSpec) -> Result<Option<DateTime<Utc>>, GrantError> {
    if spec.expires_at.is_empty() || spec.expires_at == super::NOT_YET_GRANTED {
        return Ok(None);
    }
    DateTime::parse_from_rfc3339(&spec.expires_at)
        .map(|at| Some(at.to_utc()))
        .map_err(|err| GrantError::Misconfigured(format!("expiry `{}`: {err}", spec.expires_at)))
}

/// The size of the revocation Deny, kept free in every role's inline quota so that a revoke
/// never fails for lack of room (its instant is fixed-width, so any instant gives the size).
fn revocation_reserve() -> usize {
    quota_size(&document::revoked_sessions(DateTime::UNIX_EPOCH).to_json())
}

/// Refuses `written` characters under `name` when the role's inline policies (`existing`, by
/// name and size; the one being replaced not counted) would pass IAM's quota.
fn check_quota(
    principal: &RoleArn,
    existing: &[(String, usize)],
    name: &str,
    written: usize,
) -> Result<(), GrantError> {
    let others: usize = existing
        .iter()
        .filter(|(n, _)| n != name)
        .map(|(_, size)| size)
        .sum();
    let reserve = if existing.iter().any(|(n, _)| n == REVOKED_SESSIONS) {
        0
    } else {
        revocation_reserve()
    };
    let total = others + written + reserve;
    if total <= ROLE_INLINE_QUOTA {
        return Ok(());
    }
    Err(GrantError::Misconfigured(format!(
        "{name} ({written} characters) would bring the inline policies of {principal} to {total} \
         characters ({others} already there, {reserve} kept for the revocation Deny); IAM allows \
         {ROLE_INLINE_QUOTA} per role, whitespace not counted"
    )))
}

/// The AWS side, configured: clients for STS and IAM, and the management role to assume.
#[derive(Clone)]
pub struct AwsProvider {
    sdk: SdkConfig,
    sts: aws_sdk_sts::Client,
    iam: aws_sdk_iam::Client,
    assume_role_arn: Option<String>,
    /// The account the IAM calls act in, learned once and shared by every clone (see
    /// [`AwsProvider::acting_account`]).
    account: Arc<OnceCell<String>>,
    clock: Arc<dyn Clock>,
    /// AWS's time as its IAM answers say it (see [`aws_time`]).
    aws_time: AwsTime,
}

impl std::fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The SDK config holds the credentials provider; only where the bot talks to is shown.
        f.debug_struct("AwsProvider")
            .field("region", &self.sdk.region())
            .field("endpoint_url", &self.sdk.endpoint_url())
            .field("assume_role_arn", &self.assume_role_arn)
            .finish_non_exhaustive()
    }
}

impl AwsProvider {
    /// The provider for `[aws]`: credentials from the standard AWS chain (environment, web
    /// identity, container or instance role, profile), in `region`, at `endpoint_url` when set.
    pub async fn from_config(config: &AwsConfig) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            // One retry layer: a failed operation fails its job, which the queue retries
            // with backoff; SDK retries underneath would hide throttling and double the wait.
            .retry_config(RetryConfig::disabled())
            // A hung call must not hold a worker (and a revoke) forever.
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_timeout(Duration::from_secs(30))
                    .build(),
            );
        if !config.endpoint_url.is_empty() {
            loader = loader.endpoint_url(&config.endpoint_url);
        }
        let assume = Some(config.assume_role_arn.clone()).filter(|arn| !arn.is_empty());
        Self::from_sdk_config(loader.load().await, assume)
    }

    /// The provider over an SDK configuration made elsewhere.
    pub fn from_sdk_config(sdk: SdkConfig, assume_role_arn: Option<String>) -> Self {
        // A management role's session is in that role's account: known without a call, so
        // the check made before the merge can already refuse a role of another account.
        let known = assume_role_arn
            .as_deref()
            .and_then(role_account)
            .map(str::to_owned);
        let aws_time = AwsTime::default();
        let iam = aws_sdk_iam::config::Builder::from(&sdk)
            .interceptor(aws_time.recorder())
            .build();
        Self {
            sts: aws_sdk_sts::Client::new(&sdk),
            iam: aws_sdk_iam::Client::from_conf(iam),
            sdk,
            assume_role_arn,
            account: Arc::new(OnceCell::new_with(known)),
            clock: Arc::new(SystemClock),
            aws_time,
        }
    }

    /// Reads "now" (the instant a revocation denies older sessions from) from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// What can be known about `grant` without calling AWS: the bot's session could carry
    /// its requester (when a management role is assumed), its role is in the account the bot
    /// acts in (once that is known) and its document fits IAM's quota.
    pub fn check(&self, grant: &AwsGrant) -> Result<(), GrantError> {
        if self.assume_role_arn.is_some() {
            principal::source_identity(&grant.requester)?;
        }
        if let Some(acting) = self.account.get() {
            check_account(grant, acting, &self.acting_how())?;
        }
        // Before the merge there is no expiry yet; an instant is written fixed-width, so any
        // placeholder gives the size the real one will have.
        let expires_at = grant.expires_at.unwrap_or(DateTime::UNIX_EPOCH);
        let (name, json) = grant.written_until(expires_at);
        check_quota(&grant.principal, &[], &name, quota_size(&json))
    }

    /// Gives the grant; applying it again changes nothing (or rewrites the expiry, after an
    /// extension). Fails with `Misconfigured` before any call to AWS when the document alone
    /// would not fit IAM's quota, and before writing anything when the role's would not.
    pub async fn apply(&self, grant: &AwsGrant) -> Result<(), GrantError> {
        let (name, json) = grant.written()?;
        let size = quota_size(&json);
        check_quota(&grant.principal, &[], &name, size)?;
        let iam = self.session(grant).await?;
        let existing = iam.inline_sizes().await?.ok_or_else(|| {
            GrantError::Misconfigured(format!("the principal {} does not exist", grant.principal))
        })?;
        check_quota(&grant.principal, &existing, &name, size)?;
        // The expiry first: the attachment below must never exist without it.
        iam.put(&name, &json).await?;
        if let Permissions::Managed(arn) = &grant.permissions {
            iam.attach(arn).await?;
        }
        tracing::info!(request = %grant.id, principal = %grant.principal, policy = %name, "aws-iam grant applied");
        Ok(())
    }

    /// Attaches a managed grant's policy again (another grant's revoke may have detached the
    /// policy they share) where the grant's expiry Deny is still on the principal; the Deny is
    /// never written here, so an extension's newer expiry written meanwhile stands. A grant
    /// whose Deny is gone (taken back, or not placed yet) gets nothing: the attachment never
    /// exists without it. An inline grant shares nothing and is left as it is.
    pub async fn reattach(&self, grant: &AwsGrant) -> Result<(), GrantError> {
        let Permissions::Managed(arn) = &grant.permissions else {
            return Ok(());
        };
        let iam = self.session(grant).await?;
        let Some(names) = iam.inline_names().await? else {
            return Ok(()); // the principal is gone: nothing to give back
        };
        if !names.contains(&expiry_policy_name(&grant.id)) {
            return Ok(());
        }
        iam.attach(arn).await?;
        tracing::info!(request = %grant.id, principal = %grant.principal, policy = %arn, "aws-iam attachment put back");
        Ok(())
    }

    /// Moves an applied grant's expiry: rewrites only the policy that carries it (the inline
    /// grant, or a managed grant's expiry Deny), never the attachment. An extension racing the
    /// revoke can then leave behind at most a policy bounded by the new expiry, named after
    /// its request (found by reconciliation), never an attachment without its Deny.
    pub async fn extend(&self, grant: &AwsGrant) -> Result<(), GrantError> {
        let (name, json) = grant.written()?;
        let iam = self.session(grant).await?;
        let existing = iam.inline_sizes().await?.ok_or_else(|| {
            GrantError::Misconfigured(format!("the principal {} does not exist", grant.principal))
        })?;
        check_quota(&grant.principal, &existing, &name, quota_size(&json))?;
        iam.put(&name, &json).await?;
        tracing::info!(request = %grant.id, principal = %grant.principal, policy = %name, "aws-iam grant extended");
        Ok(())
    }

    /// Takes the grant back and, while anything of it is still there (or no revocation Deny
    /// exists yet), denies every session issued before now. `others` are the ids
    /// of the other active grants with the same [`AwsGrant::attachment`]: the managed policy
    /// stays attached while one of them is in place on the principal. What is already gone
    /// (the policies, the attachment, the principal itself) counts as revoked.
    pub async fn revoke(&self, grant: &AwsGrant, others: &[String]) -> Result<(), GrantError> {
        let own = match &grant.permissions {
            Permissions::Inline(_) => grant_policy_name(&grant.id),
            Permissions::Managed(_) => expiry_policy_name(&grant.id),
        };
        self.take_back(grant, others, &[own]).await
    }

    /// Revokes pieces that no request holds: like [`AwsProvider::revoke`], and whatever the
    /// role's permissions are, both of the id's inline policies go (a hand-placed grant may
    /// have either).
    pub async fn revoke_orphan(
        &self,
        grant: &AwsGrant,
        others: &[String],
    ) -> Result<(), GrantError> {
        let both = [grant_policy_name(&grant.id), expiry_policy_name(&grant.id)];
        self.take_back(grant, others, &both).await
    }

    /// Revokes `grant`, whose inline policies are named `inline`: the session cut first, then
    /// the attachment (unless shared), then the inline policies, the expiry Deny last.
    ///
    /// The cut moves to now only while something of this grant is still on the principal (or
    /// no cut exists yet): a revoke that runs again after everything is gone (a retried job,
    /// reconciliation) must not move it past a later grant of the same person and deny that
    /// grant's sessions. Writing it before removing anything means that a run that failed
    /// half-way has left either its cut or something for the next run to find.
    async fn take_back(
        &self,
        grant: &AwsGrant,
        others: &[String],
        inline: &[String],
    ) -> Result<(), GrantError> {
        let iam = self.session(grant).await?;
        let Some(names) = iam.inline_names().await? else {
            tracing::warn!(request = %grant.id, principal = %grant.principal, "the principal no longer exists; nothing left to revoke");
            return Ok(());
        };
        let detach = match &grant.permissions {
            Permissions::Managed(arn) => unshared(grant, others, &names, arn),
            Permissions::Inline(_) => None,
        };
        let held = inline.iter().any(|name| names.contains(name))
            || match detach {
                Some(arn) => iam.attached().await?.iter().any(|a| a == arn),
                None => false,
            };
        let cut = names.iter().any(|n| n == REVOKED_SESSIONS);
        if held || !cut {
            self.deny_older_sessions(&iam, cut).await?;
        }
        // Detach before removing the Deny, so the policy is never attached unbounded.
        if let Some(arn) = detach {
            iam.detach(arn).await?;
        }
        for name in inline {
            iam.delete(name).await?;
        }
        tracing::info!(request = %grant.id, principal = %grant.principal, "aws-iam grant revoked");
        Ok(())
    }

    /// Writes the revocation Deny at now, rounded up to the next whole second so that a
    /// session issued in the same second as the revocation is cut too, and no earlier than
    /// the second after AWS's latest answer (IAM compares the cut with its own clock; see
    /// [`aws_time::session_cut`]); never earlier than the instant already there (another
    /// replica's clock may be ahead).
    async fn deny_older_sessions(
        &self,
        iam: &Principal<'_>,
        present: bool,
    ) -> Result<(), GrantError> {
        let mut at = aws_time::session_cut(self.clock.now(), self.aws_time.latest());
        if present
            && let Some(before) = iam
                .document(REVOKED_SESSIONS)
                .await?
                .as_ref()
                .and_then(document::revoked_before)
        {
            at = at.max(before);
        }
        iam.put(REVOKED_SESSIONS, &document::revoked_sessions(at).to_json())
            .await
    }

    /// How this grant's pieces on the principal differ from what apply writes, one sentence
    /// each; empty when they are all there as written.
    pub async fn drift(&self, grant: &AwsGrant) -> Result<Vec<String>, GrantError> {
        let (name, json) = grant.written()?;
        let iam = self.session(grant).await?;
        let Some(names) = iam.inline_names().await? else {
            return Ok(vec![format!(
                "the principal {} does not exist",
                grant.principal
            )]);
        };
        let mut drift = Vec::new();
        let expected: serde_json::Value =
            serde_json::from_str(&json).expect("breakglass writes valid JSON");
        match names.contains(&name) {
            false => drift.push(format!("{name} is missing from {}", grant.principal)),
            true => {
                if let Some(found) = iam.document(&name).await?
                    && found != expected
                {
                    drift.push(format!(
                        "{name} on {} is not what breakglass wrote: {found}",
                        grant.principal
                    ));
                }
            }
        }
        if let Permissions::Managed(arn) = &grant.permissions
            && !iam.attached().await?.contains(arn)
        {
            drift.push(format!("{arn} is not attached to {}", grant.principal));
        }
        Ok(drift)
    }

    /// The request ids breakglass has pieces of on `grant`'s principal (its `breakglass-<id>`
    /// and `breakglass-<id>-expiry` inline policies), for finding grants no request holds.
    pub async fn placed_ids(&self, grant: &AwsGrant) -> Result<Vec<String>, GrantError> {
        let iam = self.session(grant).await?;
        let names = iam.inline_names().await?.unwrap_or_default();
        let mut ids: Vec<String> = names
            .iter()
            .filter(|name| name.as_str() != REVOKED_SESSIONS)
            .filter_map(|name| name.strip_prefix("breakglass-"))
            .map(|id| id.strip_suffix("-expiry").unwrap_or(id).to_owned())
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Whether the grant is held as applied. `false` when git no longer lists the request
    /// (whatever is still in AWS, the revoke that follows removes it) or when AWS has drifted
    /// from what breakglass wrote (logged, so the revoke's reason can be traced).
    pub async fn verify(&self, grant: &AwsGrant, listed: bool) -> Result<bool, GrantError> {
        if !listed {
            return Ok(false);
        }
        let drift = self.drift(grant).await?;
        if !drift.is_empty() {
            tracing::warn!(request = %grant.id, drift = %drift.join("; "), "the aws-iam grant is not as applied");
        }
        Ok(drift.is_empty())
    }

    /// IAM for one operation on `grant`'s principal: through the management role when one is
    /// configured, else with the ambient credentials. Refused when those act in another
    /// account than the grant's role: every operation (apply, verify, revoke) comes here.
    async fn session<'g>(&self, grant: &'g AwsGrant) -> Result<Principal<'g>, GrantError> {
        check_account(grant, self.acting_account().await?, &self.acting_how())?;
        let client = match &self.assume_role_arn {
            Some(arn) => self.assumed_iam(arn, grant).await?,
            None => self.iam.clone(),
        };
        Ok(Principal {
            client,
            role: &grant.principal,
        })
    }

    /// The account the bot's IAM calls act in: the management role's, else the ambient
    /// credentials' as `sts:GetCallerIdentity` (no permission needed) tells it, asked once. A
    /// failed ask is not kept: the next operation asks again.
    async fn acting_account(&self) -> Result<&str, GrantError> {
        self.account
            .get_or_try_init(|| async {
                if let Some(arn) = &self.assume_role_arn {
                    return Err(GrantError::Misconfigured(format!(
                        "`[aws] assume_role_arn` `{arn}` is not an IAM role ARN \
                         (arn:aws:iam::<account>:role/<name>)"
                    )));
                }
                let identity = self
                    .sts
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|err| classify("GetCallerIdentity", err))?;
                identity.account().map(str::to_owned).ok_or_else(|| {
                    GrantError::Transient("GetCallerIdentity returned no account".into())
                })
            })
            .await
            .map(String::as_str)
    }

    /// Learns the account the bot acts in now, so that the check before a merge can refuse a
    /// role of another account from the start; a failure is only logged (the first grant
    /// asks again, and refuses then).
    pub async fn learn_account(&self) {
        if let Err(err) = self.acting_account().await {
            tracing::warn!(error = %err, "cannot learn the AWS account breakglass acts in yet");
        }
    }

    /// How the bot came to act in its account, for the refusal's message.
    fn acting_how(&self) -> String {
        match &self.assume_role_arn {
            Some(arn) => format!("the account of `[aws] assume_role_arn` {arn}"),
            None => "the account of its AWS credentials, per sts:GetCallerIdentity".into(),
        }
    }

    /// An IAM client in a fresh session of the management role `arn`, tagged with the grant.
    async fn assumed_iam(
        &self,
        arn: &str,
        grant: &AwsGrant,
    ) -> Result<aws_sdk_iam::Client, GrantError> {
        let output = self
            .sts
            .assume_role()
            .role_arn(arn)
            .role_session_name(principal::session_name(&grant.id))
            .source_identity(principal::source_identity(&grant.requester)?)
            .tags(tag("breakglass-request", &grant.id)?)
            .tags(tag("breakglass-requester", &grant.requester)?)
            .duration_seconds(SESSION_SECONDS)
            .send()
            .await
            .map_err(|err| classify(&format!("AssumeRole {arn}"), err))?;
        let session = output.credentials().ok_or_else(|| {
            GrantError::Transient(format!("AssumeRole {arn} returned no credentials"))
        })?;
        let credentials = Credentials::new(
            session.access_key_id(),
            session.secret_access_key(),
            Some(session.session_token().to_owned()),
            SystemTime::try_from(*session.expiration()).ok(),
            "breakglass-assume-role",
        );
        let config = aws_sdk_iam::config::Builder::from(&self.sdk)
            .credentials_provider(credentials)
            .interceptor(self.aws_time.recorder())
            .build();
        Ok(aws_sdk_iam::Client::from_conf(config))
    }
}

/// The managed policy `arn` of `grant` when no other active grant (`others`, found on the
/// principal by their expiry Deny among `names`) still holds it: that one the revoke detaches.
fn unshared<'a>(
    grant: &AwsGrant,
    others: &[String],
    names: &[String],
    arn: &'a str,
) -> Option<&'a str> {
    let sharing = others
        .iter()
        .filter(|other| **other != grant.id)
        .find(|other| names.contains(&expiry_policy_name(other)));
    match sharing {
        Some(other) => {
            tracing::info!(request = %grant.id, %arn, shared_with = %other, "the managed policy stays attached for another active grant");
            None
        }
        None => Some(arn),
    }
}

fn tag(key: &str, value: &str) -> Result<Tag, GrantError> {
    Tag::builder()
        .key(key)
        .value(value)
        .build()
        .map_err(|err| GrantError::Misconfigured(format!("session tag {key}: {err}")))
}

/// IAM calls on one role, with breakglass's reading of "already gone".
struct Principal<'g> {
    client: aws_sdk_iam::Client,
    role: &'g RoleArn,
}

impl Principal<'_> {
    /// How an error names the call: `PutRolePolicy breakglass-r-1 on arn:…`.
    fn what(&self, operation: &str, name: &str) -> String {
        match name {
            "" => format!("{operation} on {}", self.role),
            name => format!("{operation} {name} on {}", self.role),
        }
    }

    /// The names of the role's inline policies; `None` when the role does not exist.
    async fn inline_names(&self) -> Result<Option<Vec<String>>, GrantError> {
        let mut names = Vec::new();
        let mut marker = None;
        loop {
            let page = match self
                .client
                .list_role_policies()
                .role_name(self.role.name())
                .set_marker(marker)
                .send()
                .await
            {
                Ok(page) => page,
                Err(err) if is_no_such_entity(&err) => return Ok(None),
                Err(err) => return Err(classify(&self.what("ListRolePolicies", ""), err)),
            };
            names.extend(page.policy_names().iter().cloned());
            marker = page.marker().map(str::to_owned);
            if !page.is_truncated() || marker.is_none() {
                return Ok(Some(names));
            }
        }
    }

    /// Each inline policy of the role with its size as IAM's quota counts it; `None` when the
    /// role does not exist.
    async fn inline_sizes(&self) -> Result<Option<Vec<(String, usize)>>, GrantError> {
        let Some(names) = self.inline_names().await? else {
            return Ok(None);
        };
        let mut sizes = Vec::with_capacity(names.len());
        for name in names {
            if let Some(doc) = self.document(&name).await? {
                sizes.push((name, quota_size(&doc.to_string())));
            }
        }
        Ok(Some(sizes))
    }

    /// An inline policy of the role, decoded; `None` when it is not there.
    async fn document(&self, name: &str) -> Result<Option<serde_json::Value>, GrantError> {
        let output = match self
            .client
            .get_role_policy()
            .role_name(self.role.name())
            .policy_name(name)
            .send()
            .await
        {
            Ok(output) => output,
            Err(err) if is_no_such_entity(&err) => return Ok(None),
            Err(err) => return Err(classify(&self.what("GetRolePolicy", name), err)),
        };
        document::decode(output.policy_document())
            .map(Some)
            .map_err(|why| {
                GrantError::Transient(format!("{}: {why}", self.what("GetRolePolicy", name)))
            })
    }

    async fn put(&self, name: &str, json: &str) -> Result<(), GrantError> {
        self.client
            .put_role_policy()
            .role_name(self.role.name())
            .policy_name(name)
            .policy_document(json)
            .send()
            .await
            .map(drop)
            .map_err(|err| classify(&self.what("PutRolePolicy", name), err))
    }

    async fn delete(&self, name: &str) -> Result<(), GrantError> {
        match self
            .client
            .delete_role_policy()
            .role_name(self.role.name())
            .policy_name(name)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if is_no_such_entity(&err) => Ok(()),
            Err(err) => Err(classify(&self.what("DeleteRolePolicy", name), err)),
        }
    }

    /// The ARNs of the managed policies attached to the role.
    async fn attached(&self) -> Result<Vec<String>, GrantError> {
        let mut arns = Vec::new();
        let mut marker = None;
        loop {
            let page = self
                .client
                .list_attached_role_policies()
                .role_name(self.role.name())
                .set_marker(marker)
                .send()
                .await
                .map_err(|err| classify(&self.what("ListAttachedRolePolicies", ""), err))?;
            arns.extend(
                page.attached_policies()
                    .iter()
                    .filter_map(|p| p.policy_arn().map(str::to_owned)),
            );
            marker = page.marker().map(str::to_owned);
            if !page.is_truncated() || marker.is_none() {
                return Ok(arns);
            }
        }
    }

    async fn attach(&self, arn: &str) -> Result<(), GrantError> {
        self.client
            .attach_role_policy()
            .role_name(self.role.name())
            .policy_arn(arn)
            .send()
            .await
            .map(drop)
            .map_err(|err| classify(&self.what("AttachRolePolicy", arn), err))
    }

    async fn detach(&self, arn: &str) -> Result<(), GrantError> {
        match self
            .client
            .detach_role_policy()
            .role_name(self.role.name())
            .policy_arn(arn)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if is_no_such_entity(&err) => Ok(()),
            Err(err) => Err(classify(&self.what("DetachRolePolicy", arn), err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(policy_arn: Option<&str>) -> Role {
        Role {
            provider: "aws-iam".into(),
            description: None,
            account: Some("123456789012".into()),
            principal: Some("arn:aws:iam::123456789012:role/breakglass-{{ requester }}".into()),
            policy_arn: policy_arn.map(Into::into),
            policy: None,
            template: None,
            output: None,
        }
    }

    fn spec(id: &str) -> GrantSpec {
        GrantSpec {
            id: id.into(),
            environment: "prod".into(),
            role: "admin".into(),
            requester: "alice".into(),
            reason: "incident: x".into(),
            ticket: None,
            duration: "1h".into(),
            expires_at: "2026-11-26T03:14:00Z".into(),
        }
    }

    const ADMIN: &str = "arn:aws:iam::aws:policy/AdministratorAccess";

    #[test]
    fn a_managed_policy_role_resolves_to_its_principal_and_expiry() {
        let grant = AwsGrant::resolve(&role(Some(ADMIN)), &spec("r-1")).unwrap();
        assert_eq!(
            grant.principal.arn(),
            "arn:aws:iam::123456789012:role/breakglass-alice"
        );
        assert_eq!(
            grant.expires_at.map(crate::clock::iso).as_deref(),
            Some("2026-11-26T03:14:00Z")
        );
        assert_eq!(
            grant.attachment(),
            Some(("arn:aws:iam::123456789012:role/breakglass-alice", ADMIN))
        );
        let (name, json) = grant.written().unwrap();
        assert_eq!(name, "breakglass-r-1-expiry");
        assert!(
            json.contains(r#""DateGreaterThan":{"aws:CurrentTime":"2026-11-26T03:14:00Z"}"#),
            "{json}"
        );
    }

    #[test]
    fn a_role_without_what_it_grants_or_where_is_misconfigured() {
        let mut missing = role(None);
        let err = AwsGrant::resolve(&missing, &spec("r-1")).unwrap_err();
        assert!(
            matches!(&err, GrantError::Misconfigured(m) if m.contains("`policy_arn`")),
            "{err}"
        );
        missing.policy_arn = Some("arn:aws:s3:::bucket".into());
        let err = AwsGrant::resolve(&missing, &spec("r-1")).unwrap_err();
        assert!(err.to_string().contains("not an IAM policy ARN"), "{err}");
        let mut no_account = role(Some(ADMIN));
        no_account.account = None;
        assert!(AwsGrant::resolve(&no_account, &spec("r-1")).is_err());
    }

    #[test]
    fn ids_that_would_clash_with_breakglass_policy_names_are_refused() {
        for id in ["r-1-expiry", "R-1-EXPIRY", "revoked-sessions"] {
            let err = AwsGrant::resolve(&role(Some(ADMIN)), &spec(id)).unwrap_err();
            assert!(err.to_string().contains("would clash"), "{id}: {err}");
        }
        assert!(AwsGrant::resolve(&role(Some(ADMIN)), &spec("r-1-expiry-2")).is_ok());
    }

    #[test]
    fn a_grant_without_expiry_is_never_written() {
        let mut spec = spec("r-1");
        spec.expires_at.clear();
        let grant = AwsGrant::resolve(&role(Some(ADMIN)), &spec).unwrap();
        assert!(matches!(grant.written(), Err(GrantError::Misconfigured(_))));
        spec.expires_at = "tomorrow".into();
        assert!(AwsGrant::resolve(&role(Some(ADMIN)), &spec).is_err());
    }

    #[test]
    fn the_account_of_a_role_arn_is_read_from_it() {
        assert_eq!(
            role_account("arn:aws:iam::123456789012:role/breakglass-bot"),
            Some("123456789012")
        );
        assert_eq!(
            role_account("arn:aws-cn:iam::222222222222:role/ops/bot"),
            Some("222222222222")
        );
        for not_a_role in [
            "",
            "breakglass-bot",
            "arn:aws:iam::123456789012:user/bot",
            "arn:aws:sts::123456789012:assumed-role/bot/s",
            "arn:aws:iam::1234:role/bot",
            "arn:aws:iam:us-east-1:123456789012:role/bot",
        ] {
            assert_eq!(role_account(not_a_role), None, "{not_a_role}");
        }
    }

    #[test]
    fn a_grant_is_refused_when_the_bot_acts_in_another_account() {
        let grant = AwsGrant::resolve(&role(Some(ADMIN)), &spec("r-1")).unwrap();
        assert!(check_account(&grant, "123456789012", "how").is_ok());
        let err = check_account(&grant, "222222222222", "how").unwrap_err();
        assert!(
            matches!(&err, GrantError::Misconfigured(m)
                if m.contains("acts in AWS account 222222222222 (how)")
                    && m.contains("Set the role's `account` to 222222222222")),
            "{err}"
        );
    }

    #[test]
    fn the_quota_counts_the_other_inline_policies_and_keeps_room_for_the_revocation() {
        let grant = AwsGrant::resolve(&role(Some(ADMIN)), &spec("r-1")).unwrap();
        let reserve = revocation_reserve();
        let fits = ROLE_INLINE_QUOTA - reserve;
        assert!(check_quota(&grant.principal, &[], "p", fits).is_ok());
        let err = check_quota(&grant.principal, &[], "p", fits + 1).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("to {}", ROLE_INLINE_QUOTA + 1)),
            "{err}"
        );
        // The policy being replaced does not count twice; others do.
        let existing = [("p".to_owned(), 5_000), ("q".to_owned(), 100)];
        assert!(check_quota(&grant.principal, &existing, "p", fits - 100).is_ok());
        assert!(check_quota(&grant.principal, &existing, "p", fits - 99).is_err());
        // Once the revocation Deny is there, its room is already counted.
        let existing = [(REVOKED_SESSIONS.to_owned(), reserve)];
        assert!(check_quota(&grant.principal, &existing, "p", fits).is_ok());
        assert!(check_quota(&grant.principal, &existing, "p", fits + 1).is_err());
    }
}
