//! The policy file format (`policies/<environment>.yaml`).
//!
//! Parsing is strict (`deny_unknown_fields`) and typed, so that YAML's implicit typing never
//! turns `no` into `false` or an AWS account id into a number. Cross-field rules (defaults
//! within maxima, providers' keys) are checked by [`super::lint`](mod@super::lint).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;
use crate::names::{Name, Principal};

/// Reactions that count as approval when a policy does not say otherwise.
pub const DEFAULT_APPROVAL_REACTIONS: &[&str] = &["+1"];

/// The reactions GitHub knows; GitLab's award names are mapped onto these by the forge layer.
pub const KNOWN_REACTIONS: &[&str] = &[
    "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
];

/// Who may get which access to one environment, and under which conditions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "breakglass policy", extend("$id" = "https://breakglass.dev/schemas/policy.schema.json"))]
pub struct Policy {
    /// The environment this policy governs; must equal the file's stem.
    pub environment: Name,
    /// The longest grant, extensions included.
    pub max_duration: HumanDuration,
    /// The duration of a request that names none (at most `max_duration`); `1h` or
    /// `max_duration`, whichever is shorter, when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_duration: Option<HumanDuration>,
    /// Who may ask: users (`alice`) or teams (`@acme/sre`).
    pub requesters: Vec<Principal>,
    /// Who may approve: users or teams. The requester never counts, even when listed.
    pub approvers: Vec<Principal>,
    /// How many distinct approvers must approve. `0` makes the environment self-service:
    /// allowed requests are granted without approval.
    #[serde(default = "one")]
    pub approvals: u32,
    /// Reactions on the pull request that count as an approval (GitHub names: `+1`, `heart`,
    /// `hooray`, `rocket`, …).
    #[serde(default = "default_reactions")]
    pub approval_reactions: Vec<String>,
    /// When set, the reason must start with one of these codes, e.g. `incident: …`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reason_codes: Vec<String>,
    /// When set, a ticket is required and must match this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_pattern: Option<String>,
    /// The roles one can ask for, by name.
    pub roles: BTreeMap<Name, Role>,
    /// Rules under which a request is granted at once and reviewed afterwards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fast_path: Vec<FastPathRule>,
}

fn one() -> u32 {
    1
}

fn default_reactions() -> Vec<String> {
    DEFAULT_APPROVAL_REACTIONS
        .iter()
        .map(|r| (*r).to_owned())
        .collect()
}

impl Policy {
    /// The duration a request gets when it names none.
    pub fn effective_default_duration(&self) -> HumanDuration {
        self.default_duration
            .unwrap_or_else(|| HumanDuration::from_secs(3600).min(self.max_duration))
    }
}

/// The grant providers breakglass knows.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    JsonSchema,
    strum::EnumIter,
    strum::Display,
    strum::EnumString,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum ProviderKind {
    /// AWS: STS session plus an IAM policy that expires by itself.
    AwsIam,
    /// Infrastructure as code: a grant file rendered from a template into the request PR.
    Iac,
    /// Records the grant only; for trying breakglass out and for tests.
    Noop,
}

/// A role: what is granted, and by which provider. Keys other than `provider` and
/// `description` belong to one provider each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// `aws-iam`, `iac` or `noop`.
    #[schemars(extend("enum" = ["aws-iam", "iac", "noop"]))]
    pub provider: String,
    /// What the role gives, for people reading comments and audits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// aws-iam: the 12-digit AWS account id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// aws-iam: the IAM principal to grant to, as a template, e.g.
    /// `arn:aws:iam::{{ account }}:role/breakglass-{{ requester }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// aws-iam: the managed policy whose permissions the grant gives (or `policy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_arn: Option<String>,
    /// aws-iam: an inline IAM policy document (`Version`, `Statement`) the grant writes, each
    /// Allow bounded by the expiry (or `policy_arn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::grant::aws_iam::document::PolicyDocument>,
    /// iac: the template (under `templates/` of the bot) rendered into the grant file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// iac: where the rendered grant file goes in the requests repo, as a template, e.g.
    /// `grants/{{ environment }}/{{ id }}.tf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

impl Role {
    /// The provider, when its name is one breakglass knows (lint reports the others).
    pub fn provider_kind(&self) -> Option<ProviderKind> {
        self.provider.parse().ok()
    }
}

/// A rule under which the bot merges at once and asks for review afterwards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FastPathRule {
    /// Shown in comments, labels and the audit trail (`fast-path:<name>`).
    pub name: Name,
    /// The rule applies only when the PR has one of these labels (any label when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels_any: Vec<String>,
    /// The rule applies only to these requesters (any policy requester when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requesters: Vec<Principal>,
    /// The rule applies only to these roles (any role when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Name>,
    /// The longest grant the rule allows; the policy's `max_duration` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<HumanDuration>,
    /// How soon an approver must review the grant after the fact (24h when omitted).
    #[serde(default = "default_review_within")]
    pub review_within: HumanDuration,
    /// While the requester has an overdue review, their next fast-path request waits for
    /// normal approval instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub block_until_reviewed: bool,
}

fn default_review_within() -> HumanDuration {
    HumanDuration::from_secs(24 * 3600)
}
