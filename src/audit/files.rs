//! What a first-parent commit does to the request files (`requests/<environment>/<id>.yaml`),
//! compared with its first parent: the audit checks the files, not only the trailers.
//!
//! Speed matters here as in [`super::history`]: a bot merge is checked with path lookups in
//! its tree and its first parent's, and where the environment is not known, only the
//! environment directories whose tree id changed are looked into. Never a full diff. Trees go
//! through libgit2's object cache (`find_tree`), so the first parent's trees, read to check a
//! merge, are not read again when the walk reaches that parent.

use git2::{ObjectType, Oid, Repository, Tree, TreeEntry};

use super::AuditError;
use super::history::LandedFact;

/// Where request files live: `requests/<environment>/<id>.yaml`.
pub const REQUESTS_DIR: &str = "requests";

/// A request file that a commit adds or removes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestFile {
    /// The directory it is in.
    pub environment: String,
    /// The file name, e.g. `r-1.yaml`.
    pub name: String,
    /// Its blob (in the commit for an added file, in the first parent for a removed one).
    pub blob: Oid,
}

impl RequestFile {
    /// The repo-relative path, e.g. `requests/prod/r-1.yaml`.
    pub fn path(&self) -> String {
        format!("{REQUESTS_DIR}/{}/{}", self.environment, self.name)
    }
}

/// The `requests/` trees of a commit and of its first parent (`None` where there is no
/// `requests/`, or no parent).
pub struct RequestTrees<'r> {
    repo: &'r Repository,
    new: Option<Tree<'r>>,
    old: Option<Tree<'r>>,
}

impl<'r> RequestTrees<'r> {
    /// Reads the `requests/` subtree of the commit's root tree `new` and of its first
    /// parent's root tree `old`.
    pub fn read(repo: &'r Repository, new: Oid, old: Option<Oid>) -> Result<Self, AuditError> {
        let requests = |root: Oid| -> Result<Option<Tree<'r>>, AuditError> {
            let root = repo.find_tree(root).map_err(AuditError::git)?;
            subtree(repo, &root, REQUESTS_DIR)
        };
        Ok(Self {
            repo,
            new: requests(new)?,
            old: old.map(requests).transpose()?.flatten(),
        })
    }

    /// Whether `requests/` is the same tree on both sides (nothing added or removed there).
    pub fn unchanged(&self) -> bool {
        self.new.as_ref().map(Tree::id) == self.old.as_ref().map(Tree::id)
    }

    /// The first of `names` that the commit adds (present in it, absent from its first
    /// parent), in `environment` when given, else in any environment directory.
    pub fn added(
        &self,
        environment: Option<&str>,
        names: &[&str],
    ) -> Result<Option<RequestFile>, AuditError> {
        appearing(
            self.repo,
            self.old.as_ref(),
            self.new.as_ref(),
            environment,
            names,
        )
    }

    /// The first of `names` that the commit removes (present in its first parent, absent
    /// from it), in any environment directory.
    pub fn removed(&self, names: &[&str]) -> Result<Option<RequestFile>, AuditError> {
        appearing(self.repo, self.new.as_ref(), self.old.as_ref(), None, names)
    }

    /// Every YAML file the commit adds under `requests/<environment>/`: what landed, for a
    /// commit that is not the bot's.
    pub fn all_added(&self) -> Result<Vec<LandedFact>, AuditError> {
        let Some(new) = &self.new else {
            return Ok(Vec::new());
        };
        if self.unchanged() {
            return Ok(Vec::new());
        }
        let mut added = Vec::new();
        for env_entry in new.iter() {
            let Some(ChangedDir {
                environment,
                files,
                old_files,
            }) = self.changed_dir(&env_entry)?
            else {
                continue;
            };
            for file in files.iter() {
                let (Ok(name), Some(ObjectType::Blob)) = (file.name(), file.kind()) else {
                    continue;
                };
                // Any YAML file counts, valid request name or not: an audit flags more, not less.
                let Some(id) = yaml_stem(name) else {
                    continue;
                };
                if old_files
                    .as_ref()
                    .is_some_and(|old| old.get_name(name).is_some())
                {
                    continue; // changed, not added
                }
                added.push(LandedFact {
                    environment: environment.to_owned(),
                    request_id: id.to_owned(),
                    path: format!("{REQUESTS_DIR}/{environment}/{name}"),
                });
            }
        }
        Ok(added)
    }

    /// An environment directory of the commit whose tree differs from the first parent's.
    fn changed_dir<'e>(
        &self,
        env_entry: &'e TreeEntry<'_>,
    ) -> Result<Option<ChangedDir<'e, 'r>>, AuditError> {
        let (Ok(environment), Some(ObjectType::Tree)) = (env_entry.name(), env_entry.kind()) else {
            return Ok(None);
        };
        let old_entry = self.old.as_ref().and_then(|old| old.get_name(environment));
        if old_entry.as_ref().map(TreeEntry::id) == Some(env_entry.id()) {
            return Ok(None);
        }
        let files = self
            .repo
            .find_tree(env_entry.id())
            .map_err(AuditError::git)?;
        let old_files = match &self.old {
            Some(old) => subtree(self.repo, old, environment)?,
            None => None,
        };
        Ok(Some(ChangedDir {
            environment,
            files,
            old_files,
        }))
    }
}

/// An environment directory that a commit changed.
struct ChangedDir<'e, 'r> {
    environment: &'e str,
    /// Its tree in the commit.
    files: Tree<'r>,
    /// Its tree in the first parent, if it was there.
    old_files: Option<Tree<'r>>,
}

/// The first of `names` found in an environment directory of `to` and not in the same
/// directory of `from`; only directories whose tree id differs are looked into (or only
/// `environment`, when given).
fn appearing(
    repo: &Repository,
    from: Option<&Tree<'_>>,
    to: Option<&Tree<'_>>,
    environment: Option<&str>,
    names: &[&str],
) -> Result<Option<RequestFile>, AuditError> {
    let Some(to) = to else {
        return Ok(None);
    };
    if from.map(Tree::id) == Some(to.id()) {
        return Ok(None);
    }
    let dirs: Vec<TreeEntry<'_>> = match environment {
        // `get_name` matches one path component: an environment with a `/` finds nothing.
        Some(environment) => to.get_name(environment).into_iter().collect(),
        None => to.iter().collect(),
    };
    for dir in dirs {
        let (Ok(env), Some(ObjectType::Tree)) = (dir.name(), dir.kind()) else {
            continue;
        };
        let before = from.and_then(|from| from.get_name(env));
        if before.as_ref().map(TreeEntry::id) == Some(dir.id()) {
            continue;
        }
        let files = repo.find_tree(dir.id()).map_err(AuditError::git)?;
        let before = match before.filter(|entry| entry.kind() == Some(ObjectType::Tree)) {
            Some(entry) => Some(repo.find_tree(entry.id()).map_err(AuditError::git)?),
            None => None,
        };
        for name in names {
            let Some(file) = files
                .get_name(name)
                .filter(|f| f.kind() == Some(ObjectType::Blob))
            else {
                continue;
            };
            if before.as_ref().is_some_and(|b| b.get_name(name).is_some()) {
                continue; // on both sides: changed at most
            }
            return Ok(Some(RequestFile {
                environment: env.to_owned(),
                name: (*name).to_owned(),
                blob: file.id(),
            }));
        }
    }
    Ok(None)
}

/// The stem of a `.yaml` or `.yml` file name, when it has one.
fn yaml_stem(name: &str) -> Option<&str> {
    name.strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))
        .filter(|id| !id.is_empty())
}

/// The subtree `name` of `tree`, when it is there and is a tree.
fn subtree<'r>(
    repo: &'r Repository,
    tree: &Tree<'_>,
    name: &str,
) -> Result<Option<Tree<'r>>, AuditError> {
    match tree.get_name(name) {
        Some(entry) if entry.kind() == Some(ObjectType::Tree) => repo
            .find_tree(entry.id())
            .map(Some)
            .map_err(AuditError::git),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository and a way to write root trees from `(path, content)` pairs.
    struct Repo {
        _dir: tempfile::TempDir,
        repo: Repository,
    }

    impl Repo {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let repo = Repository::init_bare(dir.path()).unwrap();
            Self { _dir: dir, repo }
        }

        fn tree(&self, files: &[(&str, &str)]) -> Oid {
            let mut root = self.repo.treebuilder(None).unwrap();
            let mut dirs: std::collections::BTreeMap<&str, Vec<(&str, &str)>> = Default::default();
            for (path, content) in files {
                let (dir, name) = path.rsplit_once('/').unwrap();
                dirs.entry(dir).or_default().push((name, content));
            }
            let mut requests = self.repo.treebuilder(None).unwrap();
            for (dir, files) in dirs {
                let env = dir.strip_prefix("requests/").unwrap();
                let mut builder = self.repo.treebuilder(None).unwrap();
                for (name, content) in files {
                    let blob = self.repo.blob(content.as_bytes()).unwrap();
                    builder.insert(name, blob, 0o100_644).unwrap();
                }
                requests
                    .insert(env, builder.write().unwrap(), 0o040_000)
                    .unwrap();
            }
            root.insert(REQUESTS_DIR, requests.write().unwrap(), 0o040_000)
                .unwrap();
            root.write().unwrap()
        }

        fn trees(&self, new: Oid, old: Option<Oid>) -> RequestTrees<'_> {
            RequestTrees::read(&self.repo, new, old).unwrap()
        }
    }

    fn place(file: Option<RequestFile>) -> Option<String> {
        file.map(|f| f.path())
    }

    #[test]
    fn an_added_file_is_found_in_its_environment_only() {
        let r = Repo::new();
        let old = r.tree(&[("requests/staging/r-0.yaml", "a")]);
        let new = r.tree(&[
            ("requests/staging/r-0.yaml", "a"),
            ("requests/prod/r-1.yaml", "b"),
        ]);
        let trees = r.trees(new, Some(old));
        let added = trees.added(Some("prod"), &["r-1.yaml"]).unwrap().unwrap();
        assert_eq!(added.path(), "requests/prod/r-1.yaml");
        assert_eq!(added.blob, r.repo.blob(b"b").unwrap());
        assert_eq!(
            place(trees.added(Some("staging"), &["r-1.yaml"]).unwrap()),
            None
        );
        assert_eq!(
            place(trees.added(None, &["r-1.yaml"]).unwrap()).as_deref(),
            Some("requests/prod/r-1.yaml")
        );
        assert_eq!(
            place(trees.added(None, &["r-0.yaml"]).unwrap()),
            None,
            "not new"
        );
        assert_eq!(place(trees.removed(&["r-1.yaml"]).unwrap()), None);
        // One path component per name: `prod/../prod` or a nested path finds nothing.
        assert_eq!(
            place(trees.added(Some("prod/x"), &["r-1.yaml"]).unwrap()),
            None
        );
    }

    #[test]
    fn a_changed_file_is_neither_added_nor_removed() {
        let r = Repo::new();
        let old = r.tree(&[("requests/prod/r-1.yaml", "role: admin")]);
        let new = r.tree(&[("requests/prod/r-1.yaml", "role: read")]);
        let trees = r.trees(new, Some(old));
        assert!(!trees.unchanged());
        assert_eq!(
            place(trees.added(Some("prod"), &["r-1.yaml"]).unwrap()),
            None
        );
        assert_eq!(place(trees.removed(&["r-1.yaml"]).unwrap()), None);
        assert_eq!(trees.all_added().unwrap(), []);
    }

    #[test]
    fn a_removed_file_is_found_in_whichever_environment_lost_it() {
        let r = Repo::new();
        let old = r.tree(&[
            ("requests/prod/r-1.yaml", "a"),
            ("requests/staging/r-2.yml", "b"),
        ]);
        let new = r.tree(&[("requests/staging/r-2.yml", "b")]);
        let trees = r.trees(new, Some(old));
        assert_eq!(
            place(trees.removed(&["r-1.yaml"]).unwrap()).as_deref(),
            Some("requests/prod/r-1.yaml")
        );
        assert_eq!(
            place(trees.removed(&["r-2.yaml", "r-2.yml"]).unwrap()),
            None
        );
        let gone = r.trees(r.tree(&[("requests/prod/r-1.yaml", "a")]), Some(old));
        assert_eq!(
            place(gone.removed(&["r-2.yaml", "r-2.yml"]).unwrap()).as_deref(),
            Some("requests/staging/r-2.yml")
        );
    }

    #[test]
    fn a_root_commit_adds_every_file_it_has() {
        let r = Repo::new();
        let new = r.tree(&[
            ("requests/prod/r-1.yaml", "a"),
            ("requests/prod/notes.txt", "x"),
        ]);
        let trees = r.trees(new, None);
        assert_eq!(
            place(trees.added(Some("prod"), &["r-1.yaml"]).unwrap()).as_deref(),
            Some("requests/prod/r-1.yaml")
        );
        assert_eq!(
            trees.all_added().unwrap(),
            [LandedFact {
                environment: "prod".into(),
                request_id: "r-1".into(),
                path: "requests/prod/r-1.yaml".into(),
            }]
        );
        let same = r.trees(new, Some(new));
        assert!(same.unchanged());
        assert_eq!(place(same.added(None, &["r-1.yaml"]).unwrap()), None);
    }
}
