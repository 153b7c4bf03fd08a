//! Reading the policies from the default branch and resolving who is who: the inputs of the
//! decision engine, fetched from the forge.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Context as _;

use super::Workflow;
use crate::forge::Actor;
use crate::names::{Login, Principal, Team};
use crate::policy::decision::{Membership, membership};
use crate::policy::{Policy, PolicyFile, PolicySet, Problem, Requester};

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
