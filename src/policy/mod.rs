//! Policies: `policies/<environment>.yaml` in the requests repo, read from its default branch.
//!
//! - [`model`]: the file format.
//! - [`lint`](mod@lint): every problem in a set of policy files, at once.
//! - [`decision`]: whether a request is allowed, and why or why not.

pub mod decision;
pub mod lint;
pub mod model;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use decision::{Decision, Requester, evaluate};
pub use lint::{Problem, lint};
pub use model::{FastPathRule, Policy, ProviderKind, Role};

use crate::names::Name;

/// A policy file's repo-relative path and its text, however it was read (disk or forge).
#[derive(Clone, Debug)]
pub struct PolicyFile {
    pub path: PathBuf,
    pub text: String,
}

/// All policies of a requests repo, by environment, known to be lint-clean.
#[derive(Clone, Debug, Default)]
pub struct PolicySet {
    policies: BTreeMap<Name, Policy>,
}

impl PolicySet {
    /// Builds the set from policy files; fails closed with every problem when any file is
    /// invalid, so that a broken policy never lets a request through.
    pub fn from_files(files: &[PolicyFile]) -> Result<Self, Vec<Problem>> {
        let (policies, problems) = lint::check_files(files);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            policies: policies
                .into_iter()
                .map(|p| (p.environment.clone(), p))
                .collect(),
        })
    }

    /// Reads every `*.yaml`/`*.yml` file of a directory (not recursive) and builds the set.
    pub fn load_dir(dir: &Path) -> Result<Self, Vec<Problem>> {
        Self::from_files(&read_dir(dir)?)
    }

    pub fn get(&self, environment: &str) -> Option<&Policy> {
        self.policies
            .iter()
            .find(|(name, _)| name.as_str() == environment)
            .map(|(_, p)| p)
    }

    /// Every policy, by environment name.
    pub fn iter(&self) -> impl Iterator<Item = &Policy> {
        self.policies.values()
    }

    /// Environment names, sorted.
    pub fn environments(&self) -> impl Iterator<Item = &Name> {
        self.policies.keys()
    }
}

/// Reads the policy files of a directory, sorted by name.
pub fn read_dir(dir: &Path) -> Result<Vec<PolicyFile>, Vec<Problem>> {
    let unreadable = |err: std::io::Error| {
        vec![Problem::file(
            dir,
            format!("cannot read the policy directory: {err}"),
        )]
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        let is_yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        if !is_yaml || !path.is_file() {
            continue;
        }
        let text = read_capped(&path).map_err(|message| vec![Problem::file(&path, message)])?;
        files.push(PolicyFile { path, text });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    if files.is_empty() {
        return Err(vec![Problem::file(
            dir,
            "no policy files (*.yaml) found".to_owned(),
        )]);
    }
    Ok(files)
}

/// Reads a file that should be small YAML without loading a huge one into memory.
pub fn read_capped(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|err| format!("cannot read: {err}"))?;
    let mut text = String::new();
    let limit = crate::yaml::MAX_BYTES as u64 + 1;
    file.take(limit)
        .read_to_string(&mut text)
        .map_err(|err| format!("cannot read: {err}"))?;
    if text.len() > crate::yaml::MAX_BYTES {
        return Err(format!(
            "the file is larger than {} bytes; breakglass reads YAML files of at most that size",
            crate::yaml::MAX_BYTES
        ));
    }
    Ok(text)
}
