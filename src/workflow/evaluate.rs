//! Reading the policies from the default branch and resolving who is who: the inputs of the
//! decision engine, fetched from the forge.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Workflow;
use crate::forge::Actor;
use crate::names::{Login, Principal, Team};
use crate::policy::decision::{Membership, membership};
use crate::policy::{Decision, Policy, PolicyFile, PolicySet, Problem, Requester};

/// What is stored as a request's `decision`: the engine's verdict, when the head it was made on
/// was pushed by the forge's clock, and whether a merge of that head was refused.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredDecision {
    pub decision: Decision,
    /// When the forge says the current head arrived (the PR's `updated_at` on the event or read
    /// that first showed this head). Approvals are compared with it on the forge's clock, never
    /// the bot's; `None` when the forge did not say, and then every timed approval is
    /// ambiguous.
    #[serde(default)]
    pub head_since: Option<DateTime<Utc>>,
    /// Problems outside the policy rules (files beyond the request), shown with the decision.
    #[serde(default)]
    pub scope_problems: Vec<String>,
    /// Why the merge of this head was refused: the request waits for a push or a new approval
    /// instead of trying again by itself.
    #[serde(default)]
    pub merge_refused: Option<String>,
    /// The PR is a draft: decided, never merged.
    #[serde(default)]
    pub draft: bool,
    /// Why the role cannot be granted by its provider (checked before any merge).
    #[serde(default)]
    pub unservable: Option<String>,
}

impl Workflow {
    /// The default branch and its policies. Policies are never read from a PR head: a PR
    /// cannot loosen the policy that judges it.
    pub(super) async fn load_policies(
        &self,
    ) -> anyhow::Result<(String, Result<PolicySet, Vec<Problem>>)> {
        let branch = self
            .forge
            .default_branch()
            .await
            .context("reading the default branch")?;
        let dir = self.settings.policies_path.trim_end_matches('/');
        let mut files = Vec::new();
        for path in self
            .forge
            .list_dir(&branch, dir)
            .await
            .context("listing policies")?
        {
            if !(path.ends_with(".yaml") || path.ends_with(".yml")) {
                continue;
            }
            if let Some(file) = self
                .forge
                .read_file(&branch, &path)
                .await
                .context("reading a policy")?
            {
                files.push(PolicyFile {
                    path: PathBuf::from(file.path),
                    text: file.text,
                });
            }
        }
        if files.is_empty() {
            return Ok((
                branch,
                Err(vec![Problem {
                    file: PathBuf::from(dir),
                    line: None,
                    column: None,
                    message: "no policy files on the default branch".into(),
                }]),
            ));
        }
        Ok((branch, PolicySet::from_files(&files)))
    }

    /// `login` with their membership in every team `principals` name (fail closed: a team we
    /// cannot check is a team they are not in... unless the forge is down, which is an error).
    pub(super) async fn resolve(
        &self,
        login: &Login,
        principals: &[&Principal],
    ) -> anyhow::Result<Requester> {
        let mut teams = BTreeSet::new();
        for principal in principals {
            if let Principal::Team(team) = principal
                && !teams.contains(team)
                && self
                    .forge
                    .is_member(&format!("{}/{}", team.org, team.slug), login.as_str())
                    .await
                    .context("checking team membership")?
            {
                teams.insert(Team {
                    org: team.org.clone(),
                    slug: team.slug.clone(),
                });
            }
        }
        Ok(Requester::new(login.clone(), Some(teams)))
    }

    /// The requester, with the teams of the policy's requesters and fast-path rules resolved.
    pub(super) async fn resolve_requester(
        &self,
        policy: Option<&Policy>,
        login: &Login,
    ) -> anyhow::Result<Requester> {
        let Some(policy) = policy else {
            return Ok(Requester::new(login.clone(), Some(BTreeSet::new())));
        };
        let principals: Vec<&Principal> = policy
            .requesters
            .iter()
            .chain(
                policy
                    .fast_path
                    .iter()
                    .flat_map(|rule| rule.requesters.iter()),
            )
            .collect();
        self.resolve(login, &principals).await
    }

    /// Whether `actor` may approve (or review) requests under `policy`.
    pub(super) async fn is_approver(&self, policy: &Policy, actor: &Actor) -> anyhow::Result<bool> {
        let login = Login::try_from(actor.login.clone()).map_err(anyhow::Error::msg)?;
        let principals: Vec<&Principal> = policy.approvers.iter().collect();
        let who = self.resolve(&login, &principals).await?;
        Ok(membership(&policy.approvers, &who) == Membership::Yes)
    }
}
