//! Grant providers: how a role's access is given and taken back.
//!
//! - `noop` records only (the event log and git history say who had what, when).
//! - `iac` renders a grant file from a template into the request PR; the requests repo's own
//!   IaC pipeline applies what is merged, and the revert PR removes the file again.
//! - `aws-iam` (STS + IAM, [`aws_iam`]) writes the grant into IAM with its expiry inside the
//!   policy, and takes it back at revoke; it needs the `[aws]` section of the configuration.
//!
//! Every operation is idempotent: after a crash the lifecycle simply runs the step again.

pub mod aws_iam;
pub mod escape;
pub mod iac;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::policy::{ProviderKind, Role};

/// The `expires_at` of a grant file rendered before the merge: an instant long past, so that a
/// grant file carrying its expiry (an `aws:CurrentTime` condition, a GCP IAM condition, an
/// Azure PIM schedule) grants nothing until breakglass merges it, which it does only after
/// writing the real expiry into the file (see `workflow::lifecycle`).
pub const NOT_YET_GRANTED: &str = "1970-01-01T00:00:00Z";

/// Everything a provider may need to know about one grant.
#[derive(Clone, Debug, Serialize)]
pub struct GrantSpec {
    pub id: String,
    pub environment: String,
    pub role: String,
    pub requester: String,
    pub reason: String,
    pub ticket: Option<String>,
    pub duration: String,
    /// UTC ISO 8601; [`NOT_YET_GRANTED`] until the merge fixes it.
    pub expires_at: String,
}

/// A file the bot adds to the request PR (and removes in the revert PR).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RenderedFile {
    pub path: String,
    pub content: String,
}

/// Why a provider could not do its part, sorted by what the caller should do: retry
/// ([`GrantError::is_retryable`]) or stop and tell someone.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The role's configuration is wrong (a template missing or failing, a principal that does
    /// not exist, a policy over IAM's quota): fix the policy; retrying changes nothing.
    #[error("role misconfigured: {0}")]
    Misconfigured(String),
    /// The provider is not available in this build or configuration.
    #[error("provider {0} is not available: {1}")]
    Unavailable(ProviderKind, String),
    /// A transient failure; the step is retried.
    #[error("{0}")]
    Transient(String),
    /// The cloud refused the bot's own credentials (missing permission, untrusted role): fix
    /// the bot's setup. A grant stops; a revoke is still retried until it goes through.
    #[error("denied: {0}")]
    Denied(String),
    /// The cloud asked the bot to slow down; the step is retried with backoff.
    #[error("throttled: {0}")]
    Throttled(String),
}

impl GrantError {
    /// Whether trying the same step again later can succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient(_) | Self::Throttled(_))
    }
}

/// The providers, configured.
#[derive(Clone, Debug)]
pub struct Providers {
    /// Directory of the grant templates of `iac` roles.
    pub templates_dir: PathBuf,
    /// The `aws-iam` provider, when `[aws]` is configured.
    aws: Option<aws_iam::AwsProvider>,
}

impl Providers {
    pub fn new(templates_dir: PathBuf) -> Self {
        Self {
            templates_dir,
            aws: None,
        }
    }

    /// These providers, with `aws-iam` served by `aws`.
    pub fn with_aws(mut self, aws: aws_iam::AwsProvider) -> Self {
        self.aws = Some(aws);
        self
    }

    /// The `aws-iam` provider, or why roles of it cannot be served.
    fn aws(&self) -> Result<&aws_iam::AwsProvider, GrantError> {
        self.aws.as_ref().ok_or_else(|| {
            GrantError::Unavailable(
                ProviderKind::AwsIam,
                "breakglass.toml has no [aws] section".into(),
            )
        })
    }

    /// The managed-policy attachment an `aws-iam` grant shares with other grants of the same
    /// principal and policy, as `(principal ARN, policy ARN)`; `None` for every other grant.
    /// The workflow passes the ids of the other active grants with an equal attachment to
    /// [`Providers::revoke_with`].
    pub fn aws_attachment(role: &Role, spec: &GrantSpec) -> Option<(String, String)> {
        if role.provider_kind() != Some(ProviderKind::AwsIam) {
            return None;
        }
        let grant = aws_iam::AwsGrant::resolve(role, spec).ok()?;
        grant
            .attachment()
            .map(|(principal, policy)| (principal.to_owned(), policy.to_owned()))
    }

    /// The principal an `aws-iam` grant is placed on (its role ARN); `None` for other providers.
    pub fn aws_principal(role: &Role, spec: &GrantSpec) -> Option<String> {
        if role.provider_kind() != Some(ProviderKind::AwsIam) {
            return None;
        }
        let grant = aws_iam::AwsGrant::resolve(role, spec).ok()?;
        Some(grant.principal.arn().to_owned())
    }

    /// The request ids with breakglass pieces on the principal of an `aws-iam` grant of `role`
    /// for `spec` (empty for providers without state of their own).
    pub async fn placed(&self, role: &Role, spec: &GrantSpec) -> Result<Vec<String>, GrantError> {
        match role.provider_kind() {
            Some(ProviderKind::AwsIam) => {
                let grant = aws_iam::AwsGrant::resolve(role, spec)?;
                self.aws()?.placed_ids(&grant).await
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Revokes a grant that no request holds (found by [`Providers::placed`]).
    pub async fn revoke_orphan(
        &self,
        role: &Role,
        spec: &GrantSpec,
        others: &[String],
    ) -> Result<(), GrantError> {
        match role.provider_kind() {
            Some(ProviderKind::AwsIam) => {
                let grant = aws_iam::AwsGrant::resolve(role, spec)?;
                self.aws()?.revoke_orphan(&grant, others).await
            }
            _ => Ok(()),
        }
    }

    /// The files a grant for `role` adds to the request PR (empty for most providers). Before the
    /// merge they are rendered with `expires_at` = [`NOT_YET_GRANTED`]; the merge renders them
    /// again with the real expiry.
    pub fn rendered_files(
        &self,
        role: &Role,
        spec: &GrantSpec,
    ) -> Result<Vec<RenderedFile>, GrantError> {
        match role.provider_kind() {
            Some(ProviderKind::Iac) => {
                iac::render(&self.templates_dir, role, spec).map(|f| vec![f])
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Gives the access. For `noop` and `iac` the merge itself is the grant.
    pub async fn apply(&self, role: &Role, spec: &GrantSpec) -> Result<(), GrantError> {
        match role.provider_kind() {
            Some(ProviderKind::Noop | ProviderKind::Iac) => {
                tracing::info!(request = %spec.id, role = %spec.role, provider = %role.provider, "grant applied");
                Ok(())
            }
            Some(ProviderKind::AwsIam) => {
                let grant = aws_iam::AwsGrant::resolve(role, spec)?;
                self.aws()?.apply(&grant).await
            }
            None => Err(unknown_provider(role)),
        }
    }

    /// Puts back a shared managed-policy attachment of an applied grant where its expiry is in
    /// place, writing nothing else (see `AwsProvider::reattach`); other providers share none.
    pub async fn reattach(&self, role: &Role, spec: &GrantSpec) -> Result<(), GrantError> {
        match role.provider_kind() {
            Some(ProviderKind::Noop | ProviderKind::Iac) => Ok(()),
            Some(ProviderKind::AwsIam) => {
                let grant = aws_iam::AwsGrant::resolve(role, spec)?;
                self.aws()?.reattach(&grant).await
            }
            None => Err(unknown_provider(role)),
        }
    }

    /// Moves the expiry of an applied grant (an extension). Only `aws-iam` carries its expiry
    /// at the provider; it rewrites that and nothing else (see `AwsProvider::extend`).
    pub async fn extend(&self, role: &Role, spec: &GrantSpec) -> Result<(), GrantError> {
        match role.provider_kind() {
            Some(ProviderKind::Noop | ProviderKind::Iac) => Ok(()),
            Some(ProviderKind::AwsIam) => {
                let grant = aws_iam::AwsGrant::resolve(role, spec)?;
                self.aws()?.extend(&grant).await
            }
            None => Err(unknown_provider(role)),
        }
    }

    /// Takes the access back. Must succeed when the access is already gone. For `aws-iam`
    /// this detaches a managed policy even if another grant shares it: callers that know the
    /// other active grants use [`Providers::revoke_with`].
    pub async fn revoke(&self, role: &Role, spec: &GrantSpec) -> Result<(), GrantError> {
        self.revoke_with(role, spec, &[]).await
    }

    /// [`Providers::revoke`], knowing `others`: the ids of the other active grants with the
    /// same [`Providers::aws_attachment`], which keep a shared managed policy attached.
    pub async fn revoke_with(
        &self,
        role: &Role,
        spec: &GrantSpec,
        others: &[String],
    ) -> Result<(), GrantError> {
        match role.provider_kind() {
            // The revert PR removes the grant file; nothing else holds the access.
            Some(ProviderKind::Noop | ProviderKind::Iac) => {
                tracing::info!(request = %spec.id, role = %spec.role, provider = %role.provider, "grant revoked");
                Ok(())
            }
            Some(ProviderKind::AwsIam) => {
                let grant = aws_iam::AwsGrant::resolve(role, spec)?;
                self.aws()?.revoke(&grant, others).await
            }
            None => Err(unknown_provider(role)),
        }
    }
}

fn unknown_provider(role: &Role) -> GrantError {
    GrantError::Misconfigured(format!("unknown provider `{}`", role.provider))
}

impl Providers {
    /// Whether a grant of `role` for `spec` can be served at all, without calling any cloud:
    /// for deciding a request before it is merged, so that a role nobody can grant is denied
    /// with the reason instead of merged and then stuck.
    pub fn check(&self, role: &Role, spec: &GrantSpec) -> Result<(), GrantError> {
        match role.provider_kind() {
            Some(ProviderKind::Noop) => Ok(()),
            Some(ProviderKind::Iac) => self.rendered_files(role, spec).map(drop),
            Some(ProviderKind::AwsIam) => {
                let grant = aws_iam::AwsGrant::resolve(role, spec)?;
                self.aws()?.check(&grant)
            }
            None => Err(unknown_provider(role)),
        }
    }

    /// How an `aws-iam` grant in the cloud differs from what breakglass applied, one sentence
    /// each, for a comment on the request; empty when it is as applied, and for providers
    /// whose grant is the merged file itself.
    pub async fn drift(&self, role: &Role, spec: &GrantSpec) -> Result<Vec<String>, GrantError> {
        match role.provider_kind() {
            Some(ProviderKind::AwsIam) => {
                let grant = aws_iam::AwsGrant::resolve(role, spec)?;
                self.aws()?.drift(&grant).await
            }
            Some(ProviderKind::Noop | ProviderKind::Iac) => Ok(Vec::new()),
            None => Err(unknown_provider(role)),
        }
    }

    /// Whether the access is still held, for reconciliation. `listed` says whether git still
    /// lists the request on the default branch: for `noop` and `iac` that *is* the grant (the
    /// IaC pipeline applies what is on the branch); `aws-iam` also needs its pieces in IAM as
    /// it wrote them.
    pub async fn verify(
        &self,
        role: &Role,
        spec: &GrantSpec,
        listed: bool,
    ) -> Result<bool, GrantError> {
        match role.provider_kind() {
            Some(ProviderKind::Noop | ProviderKind::Iac) => Ok(listed),
            // Unlisted is not held, whatever AWS says: the revoke that follows cleans up.
            Some(ProviderKind::AwsIam) if !listed => Ok(false),
            Some(ProviderKind::AwsIam) => {
                let grant = aws_iam::AwsGrant::resolve(role, spec)?;
                self.aws()?.verify(&grant, listed).await
            }
            None => Err(unknown_provider(role)),
        }
    }
}

/// When a grant file was rendered, for templates that want it.
pub fn rendered_at(now: DateTime<Utc>) -> String {
    crate::clock::iso(now)
}
