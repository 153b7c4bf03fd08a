//! Grant providers: how a role's access is given and taken back.
//!
//! - `noop` records only (the event log and git history say who had what, when).
//! - `iac` renders a grant file from a template into the request PR; the requests repo's own
//!   IaC pipeline applies what is merged, and the revert PR removes the file again.
//! - `aws-iam` (STS + IAM) comes with its own module.
//!
//! Every operation is idempotent: after a crash the lifecycle simply runs the step again.

pub mod escape;
pub mod iac;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::policy::{ProviderKind, Role};

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
    pub expires_at: String,
}

/// A file the bot adds to the request PR (and removes in the revert PR).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RenderedFile {
    pub path: String,
    pub content: String,
}

/// Why a provider could not do its part.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The role's configuration is wrong (a template missing or failing): fix the policy.
    #[error("role misconfigured: {0}")]
    Misconfigured(String),
    /// The provider is not available in this build or configuration.
    #[error("provider {0} is not available: {1}")]
    Unavailable(ProviderKind, String),
    /// A transient failure; the step is retried.
    #[error("{0}")]
    Transient(String),
}

/// The providers, configured.
#[derive(Clone, Debug)]
pub struct Providers {
    /// Directory of the grant templates of `iac` roles.
    pub templates_dir: PathBuf,
}

impl Providers {
    pub fn new(templates_dir: PathBuf) -> Self {
        Self { templates_dir }
    }

    /// The files a grant for `role` adds to the request PR (empty for most providers).
    /// `expires_at` is not known before the merge, so templates should not depend on it.
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
            Some(kind @ ProviderKind::AwsIam) => Err(GrantError::Unavailable(
                kind,
                "the aws-iam provider is not in this version yet".into(),
            )),
            None => Err(GrantError::Misconfigured(format!(
                "unknown provider `{}`",
                role.provider
            ))),
        }
    }

    /// Takes the access back. Must succeed when the access is already gone.
    pub async fn revoke(&self, role: &Role, spec: &GrantSpec) -> Result<(), GrantError> {
        match role.provider_kind() {
            // The revert PR removes the grant file; nothing else holds the access.
            Some(ProviderKind::Noop | ProviderKind::Iac) => {
                tracing::info!(request = %spec.id, role = %spec.role, provider = %role.provider, "grant revoked");
                Ok(())
            }
            Some(kind @ ProviderKind::AwsIam) => Err(GrantError::Unavailable(
                kind,
                "the aws-iam provider is not in this version yet".into(),
            )),
            None => Err(GrantError::Misconfigured(format!(
                "unknown provider `{}`",
                role.provider
            ))),
        }
    }
}

impl Providers {
    /// Whether the access is still held, for reconciliation. `listed` says whether git still
    /// lists the request on the default branch: for `noop` and `iac` that *is* the grant (the
    /// IaC pipeline applies what is on the branch); providers with state of their own (aws-iam)
    /// will look at it.
    pub async fn verify(
        &self,
        role: &Role,
        spec: &GrantSpec,
        listed: bool,
    ) -> Result<bool, GrantError> {
        match role.provider_kind() {
            Some(ProviderKind::Noop | ProviderKind::Iac) => Ok(listed),
            Some(kind @ ProviderKind::AwsIam) => Err(GrantError::Unavailable(
                kind,
                format!(
                    "cannot verify {} yet: the aws-iam provider is not in this version",
                    spec.id
                ),
            )),
            None => Err(GrantError::Misconfigured(format!(
                "unknown provider `{}`",
                role.provider
            ))),
        }
    }
}

/// When a grant file was rendered, for templates that want it.
pub fn rendered_at(now: DateTime<Utc>) -> String {
    crate::clock::iso(now)
}
