//! Where grant files live in the audited repo, and what a grant file that landed without the
//! bot is called in the report.
//!
//! The bot renders the grant files of `iac` roles under grant roots (`grants/`, and the fixed
//! directory of every role's `output`; see [`crate::grant::iac::grant_roots`], the one place
//! that computes them) and the repo's IaC pipeline applies whatever is there, so a file pushed
//! there is a grant nobody approved. The audit reads the policies (`policies/`, as the bot
//! reads them from the default branch) at the audited branch's tip, and every other version of
//! them its first-parent line had ([`PolicyVersions`]): a root only an older version named (a
//! role dropped since) still covers what landed under it. Policies that cannot be read or
//! parsed add `grants/` alone, as for the bot.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use git2::{ObjectType, Oid, Repository};

use super::history::{LandedFact, LandedFile};
use crate::grant::iac;
use crate::policy::{PolicyFile, PolicySet};

/// Where the policies are in the requests repo by default (`policies_path`'s default, and
/// `breakglass audit --policies`').
pub const POLICIES_DIR: &str = "policies";

/// The grant roots of the audited branch, and the environments its policies name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantLayout {
    /// Each root as its path components (`["infra", "grants"]` for `infra/grants/`), none
    /// inside another: a file is found once.
    roots: Vec<Vec<String>>,
    environments: BTreeSet<String>,
}

impl GrantLayout {
    /// The layout `policies` give; `None` for policies that cannot be read.
    pub fn new(policies: Option<&PolicySet>) -> Self {
        Self::of_all(policies.as_slice())
    }

    /// The layout of several versions of the policies together: every root and environment
    /// any of them names, and `grants/`.
    fn of_all(versions: &[&PolicySet]) -> Self {
        let mut roots = iac::grant_roots(None);
        for policies in versions {
            roots.extend(iac::grant_roots(Some(policies)));
        }
        let outermost = roots.iter().filter(|root| {
            !roots
                .iter()
                .any(|r| r != *root && root.starts_with(r.as_str()))
        });
        Self {
            roots: outermost
                .map(|root| {
                    let parts = root.split('/').filter(|c| !c.is_empty());
                    parts.map(String::from).collect::<Vec<_>>()
                })
                .collect(),
            environments: versions
                .iter()
                .flat_map(|policies| policies.environments())
                .map(|e| e.as_str().to_owned())
                .collect(),
        }
    }

    /// The roots, as path components.
    pub fn roots(&self) -> &[Vec<String>] {
        &self.roots
    }

    /// The report's fact for the grant file at `path` that landed without the bot.
    pub fn landed(&self, path: String) -> LandedFact {
        LandedFact {
            file: LandedFile::Grant,
            environment: self.environment_of(&path),
            request_id: subject_of(&path).to_owned(),
            path,
            modified: false,
        }
    }

    /// The environment a grant file's path names: `<root>/<environment>/…` with an environment
    /// of the policies (as `grants/{{ environment }}/{{ id }}.tf` renders). Otherwise none: a
    /// grant file need not belong to one, and such a file is shown whatever `--environment`
    /// asks for, since an audit hides nothing it cannot place.
    fn environment_of(&self, path: &str) -> Option<String> {
        let parts: Vec<&str> = path.split('/').collect();
        self.roots.iter().find_map(|root| {
            let inside = parts.len() > root.len() && root.iter().zip(&parts).all(|(r, p)| r == p);
            let under = parts.get(root.len()..).filter(|_| inside)?;
            // A directory, then at least the file: `grants/prod.tf` names no environment.
            let [environment, _, ..] = under else {
                return None;
            };
            self.environments
                .contains(*environment)
                .then(|| (*environment).to_owned())
        })
    }
}

/// What a grant file is called in the report: its name up to the first `.`, as the bot titles
/// the removal of a grant file that no request file came with (`evil` for
/// `grants/network/evil.tf`, and the request's id for a file rendered as `{{ id }}.tf`).
fn subject_of(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    match name.split('.').next() {
        Some(stem) if !stem.is_empty() => stem,
        _ => name,
    }
}

/// Every version of the policies a walk of the line meets, by the tree of their directory:
/// the roots of one that a later version no longer names (a role dropped) still cover what
/// landed under them.
pub struct PolicyVersions<'r> {
    repo: &'r Repository,
    dir: String,
    seen: HashSet<Oid>,
    versions: Vec<PolicySet>,
}

impl<'r> PolicyVersions<'r> {
    /// None met yet; `dir` is where the policies are (`policies`, `infra/policies`).
    pub fn new(repo: &'r Repository, dir: &str) -> Self {
        Self {
            repo,
            dir: dir.trim_matches('/').to_owned(),
            seen: HashSet::new(),
            versions: Vec::new(),
        }
    }

    /// The directory's path components, to find its tree in a commit's.
    pub fn dir(&self) -> Vec<String> {
        self.dir.split('/').map(str::to_owned).collect()
    }

    /// Notes the policies directory whose tree is `tree` (read once per tree).
    pub fn note(&mut self, tree: Oid) {
        if self.seen.insert(tree)
            && let Some(policies) = policies_in(self.repo, tree, &self.dir)
        {
            self.versions.push(policies);
        }
    }

    /// The layout of every version met together.
    pub fn layout(&self) -> GrantLayout {
        GrantLayout::of_all(&self.versions.iter().collect::<Vec<_>>())
    }
}

/// The lint-clean policies in the tree `tree` of the directory `dir`, when there are any.
fn policies_in(repo: &Repository, tree: Oid, dir: &str) -> Option<PolicySet> {
    let policies = repo.find_tree(tree).ok()?;
    let mut files = Vec::new();
    for entry in &policies {
        let Some(name) = entry
            .name()
            .ok()
            .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        else {
            continue;
        };
        if entry.kind() != Some(ObjectType::Blob) {
            continue;
        }
        let blob = repo.find_blob(entry.id()).ok()?;
        if blob.size() > crate::yaml::MAX_BYTES {
            return None; // the bot refuses such a policy set too
        }
        files.push(PolicyFile {
            path: PathBuf::from(format!("{dir}/{name}")),
            text: String::from_utf8(blob.content().to_vec()).ok()?,
        });
    }
    PolicySet::from_files(&files).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NETWORK: &str = "environment: network\nmax_duration: 2h\nrequesters: [alice]\napprovers: [carol]\nroles:\n  dns:\n    provider: iac\n    template: iac/t.tf.j2\n    output: \"grants/{{ environment }}/{{ id }}.tf\"\n  k8s:\n    provider: iac\n    template: iac/t.yaml.j2\n    output: \"k8s/{{ environment }}/{{ id }}.yaml\"\n  nested:\n    provider: iac\n    template: iac/t.tf.j2\n    output: \"grants/network/{{ id }}.tf\"\n";

    fn policies() -> PolicySet {
        let file = PolicyFile {
            path: "policies/network.yaml".into(),
            text: NETWORK.to_owned(),
        };
        PolicySet::from_files(&[file]).unwrap()
    }

    #[test]
    fn roots_come_from_the_policies_and_none_is_inside_another() {
        let layout = GrantLayout::new(Some(&policies()));
        assert_eq!(
            layout.roots(),
            [vec!["grants".to_owned()], vec!["k8s".to_owned()]],
            "grants/network/ is inside grants/"
        );
        assert_eq!(GrantLayout::new(None).roots(), [vec!["grants".to_owned()]]);
    }

    #[test]
    fn a_grant_file_names_an_environment_only_in_a_directory_the_policies_know() {
        let layout = GrantLayout::new(Some(&policies()));
        let fact = layout.landed("k8s/network/r-1.yaml".into());
        assert_eq!(
            (
                fact.file,
                fact.environment.as_deref(),
                fact.request_id.as_str()
            ),
            (LandedFile::Grant, Some("network"), "r-1")
        );
        for path in [
            "grants/elsewhere/evil.tf",
            "grants/network.tf",
            "grants/evil.tf",
        ] {
            assert_eq!(layout.landed(path.into()).environment, None, "{path}");
        }
        let blind = GrantLayout::new(None).landed("grants/network/evil.tf".into());
        assert_eq!(blind.environment, None, "no policies, no environments");
        assert_eq!(blind.request_id, "evil");
        assert_eq!(subject_of("grants/x/.hidden"), ".hidden");
        assert_eq!(subject_of("grants/x/evil.auto.tf"), "evil");
    }
}
