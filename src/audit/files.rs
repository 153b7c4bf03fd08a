//! What a first-parent commit does to the request files (`requests/<environment>/<id>.yaml`)
//! and to the files under the grant roots, compared with its first parent: the audit checks
//! the files, not only the trailers.
//!
//! Speed matters here as in [`super::history`]: a bot merge is checked with path lookups in
//! its tree and its first parent's, and where the environment is not known, only the
//! environment directories whose tree id changed are looked into; under a grant root, only
//! the directories whose tree id changed (see [`files_appearing_under`]). Never a full diff. Trees
//! are read raw from the object database and scanned in place (`<mode> <name>\0<id>`
//! entries) rather than parsed into `git2::Tree`s: a tree is a few entries, and parsing and
//! wrapping each one cost more than the scan. A [`TreeReader`] keeps the last few trees it
//! read, so the first parent's trees, read to check a merge, are not read again when the
//! walk reaches that parent.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::rc::Rc;

use git2::{ObjectType, Odb, OdbObject, Oid};

use super::AuditError;
use super::history::{LandedFact, LandedFile};

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

/// How many trees a [`TreeReader`] keeps: the trees of a commit and of its first parent
/// (root, `requests/`, an environment or two each), with room to spare.
const RECENT_TREES: usize = 16;

/// Reads trees for one walk, keeping the last few (`RECENT_TREES`): a commit's trees are
/// read to check its child and again to check the commit itself, and a root tree often comes
/// back (the one with an empty `requests/`, after each revoke).
pub struct TreeReader<'a> {
    odb: &'a Odb<'a>,
    recent: RefCell<VecDeque<Rc<RawTree<'a>>>>,
}

impl<'a> TreeReader<'a> {
    /// A reader over `odb` that has read nothing yet.
    pub fn new(odb: &'a Odb<'a>) -> Self {
        Self {
            odb,
            recent: RefCell::new(VecDeque::with_capacity(RECENT_TREES)),
        }
    }

    /// The tree `id`, from the recent ones when it is there.
    fn read(&self, id: Oid) -> Result<Rc<RawTree<'a>>, AuditError> {
        let mut recent = self.recent.borrow_mut();
        if let Some(index) = recent.iter().position(|tree| tree.id == id) {
            let tree = recent.remove(index).expect("found at this index");
            recent.push_front(Rc::clone(&tree));
            return Ok(tree);
        }
        let tree = Rc::new(RawTree::read(self.odb, id)?);
        if recent.len() == RECENT_TREES {
            recent.pop_back();
        }
        recent.push_front(Rc::clone(&tree));
        Ok(tree)
    }

    /// The id of the tree at `path` (components) below the root tree `root`, when there is one.
    pub fn tree_at(&self, root: Oid, path: &[String]) -> Result<Option<Oid>, AuditError> {
        let mut id = root;
        for name in path {
            let tree = self.read(id)?;
            match tree.get(name) {
                Some(entry) if entry.kind == Kind::Tree => id = entry.id()?,
                _ => return Ok(None),
            }
        }
        Ok(Some(id))
    }

    /// The subtree `name` of `tree`, when it is there and is a tree.
    fn subtree(
        &self,
        tree: &RawTree<'_>,
        name: &str,
    ) -> Result<Option<Rc<RawTree<'a>>>, AuditError> {
        match tree.get(name) {
            Some(entry) if entry.kind == Kind::Tree => Ok(Some(self.read(entry.id()?)?)),
            _ => Ok(None),
        }
    }
}

/// The `requests/` trees of a commit and of its first parent (`None` where there is no
/// `requests/`, or no parent).
pub struct RequestTrees<'r, 'a> {
    trees: &'r TreeReader<'a>,
    new: Option<Rc<RawTree<'a>>>,
    old: Option<Rc<RawTree<'a>>>,
}

impl<'r, 'a> RequestTrees<'r, 'a> {
    /// Reads the `requests/` subtree of the commit's root tree `new` and of its first
    /// parent's root tree `old`.
    pub fn read(trees: &'r TreeReader<'a>, new: Oid, old: Option<Oid>) -> Result<Self, AuditError> {
        if old == Some(new) {
            // The same root tree on both sides (an empty merge): nothing added or removed.
            return Ok(Self {
                trees,
                new: None,
                old: None,
            });
        }
        let requests = |root: Oid| trees.subtree(&*trees.read(root)?, REQUESTS_DIR);
        let new = requests(new)?;
        let old = old.map(requests).transpose()?.flatten();
        Ok(Self { trees, new, old })
    }

    /// Whether `requests/` is the same tree on both sides (nothing added or removed there).
    pub fn unchanged(&self) -> bool {
        self.new.as_ref().map(|t| t.id) == self.old.as_ref().map(|t| t.id)
    }

    /// The first of `names` that the commit adds (present in it, absent from its first
    /// parent), in `environment` when given, else in any environment directory.
    pub fn added(
        &self,
        environment: Option<&str>,
        names: &[&str],
    ) -> Result<Option<RequestFile>, AuditError> {
        appearing(
            self.trees,
            self.old.as_deref(),
            self.new.as_deref(),
            environment,
            names,
        )
    }

    /// The first of `names` that the commit removes (present in its first parent, absent
    /// from it), in any environment directory.
    pub fn removed(&self, names: &[&str]) -> Result<Option<RequestFile>, AuditError> {
        appearing(
            self.trees,
            self.new.as_deref(),
            self.old.as_deref(),
            None,
            names,
        )
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
        let old = self.old.as_deref().map(Side::of).transpose()?;
        for dir in new.entries() {
            let dir = dir?;
            let Some(ChangedDir {
                environment,
                files,
                before,
            }) = changed_dir(self.trees, old.as_ref(), &dir)?
            else {
                continue;
            };
            // Names, not lookups per file: a directory of many files would cost their square.
            let before: HashSet<&[u8]> = match &before {
                Some(before) => before.names()?,
                None => HashSet::new(),
            };
            for file in files.entries() {
                let file = file?;
                let (Some(name), Kind::Blob) = (file.name(), file.kind) else {
                    continue;
                };
                // Any YAML file counts, valid request name or not: an audit flags more, not less.
                let Some(id) = yaml_stem(name) else {
                    continue;
                };
                if before.contains(name.as_bytes()) {
                    continue; // changed, not added
                }
                added.push(LandedFact {
                    file: LandedFile::Request,
                    environment: Some(environment.to_owned()),
                    request_id: id.to_owned(),
                    path: format!("{REQUESTS_DIR}/{environment}/{name}"),
                    modified: false,
                });
            }
        }
        Ok(added)
    }
}

/// The first of `names` (in their order, whatever the directory) found in an environment
/// directory of `to` and not in the same directory of `from`; only directories whose tree id
/// differs are looked into (or only `environment`, when given). The order of the names comes
/// first: a removal of `prod/r-1.yml` and `staging/r-1.yaml` together removes staging's
/// request file, never the `.yml` one in prod (taken for it, the removal ended the genuine
/// grant of `prod/r-1.yaml` and said it was never granted).
fn appearing(
    trees: &TreeReader<'_>,
    from: Option<&RawTree<'_>>,
    to: Option<&RawTree<'_>>,
    environment: Option<&str>,
    names: &[&str],
) -> Result<Option<RequestFile>, AuditError> {
    let Some(to) = to else {
        return Ok(None);
    };
    if from.map(|f| f.id) == Some(to.id) {
        return Ok(None);
    }
    let from = from.map(Side::of).transpose()?;
    let dirs: Vec<Entry<'_>> = match environment {
        // One path component: an environment with a `/` names no entry and finds nothing.
        Some(environment) => to.get(environment).into_iter().collect(),
        None => to.entries().collect::<Result<_, _>>()?,
    };
    let mut changed = Vec::new();
    for dir in &dirs {
        changed.extend(changed_dir(trees, from.as_ref(), dir)?);
    }
    for name in names {
        for ChangedDir {
            environment,
            files,
            before,
        } in &changed
        {
            let Some(file) = files.get(name).filter(|f| f.kind == Kind::Blob) else {
                continue;
            };
            if before.as_ref().is_some_and(|b| b.get(name).is_some()) {
                continue; // on both sides: changed at most
            }
            return Ok(Some(RequestFile {
                environment: (*environment).to_owned(),
                name: (*name).to_owned(),
                blob: file.id()?,
            }));
        }
    }
    Ok(None)
}

/// Every file under the directories `roots` (each as path components, `["grants"]`) that
/// is in the root tree `to` and not at the same path in the root tree `from`, by repo-relative
/// path, sorted. Called with the two sides of a commit it gives what the commit adds; swapped,
/// what it removes. Only directories whose tree id differs between the sides are read, so an
/// untouched root costs one lookup in each root tree.
pub fn files_appearing_under(
    trees: &TreeReader<'_>,
    from: Option<Oid>,
    to: Option<Oid>,
    roots: &[Vec<String>],
) -> Result<Vec<String>, AuditError> {
    Ok(files_differing_under(trees, from, to, roots)?.added)
}

/// The files under `roots` that differ between root trees `from` and `to`, by repo-relative
/// path, each list sorted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Differing {
    /// In `to` and not at the same path in `from` (see [`files_appearing_under`]).
    pub added: Vec<String>,
    /// At the same path on both sides, with another content or kind (a file's text edited, a
    /// file made a symbolic link).
    pub changed: Vec<String>,
}

/// [`files_appearing_under`], with the files changed in place too.
pub fn files_differing_under(
    trees: &TreeReader<'_>,
    from: Option<Oid>,
    to: Option<Oid>,
    roots: &[Vec<String>],
) -> Result<Differing, AuditError> {
    let mut found = Differing::default();
    let Some(to) = to.filter(|to| from != Some(*to)) else {
        return Ok(found);
    };
    let to = trees.read(to)?;
    let from = from.map(|from| trees.read(from)).transpose()?;
    for root in roots {
        if let Some(dir) = changed_subdir(trees, from.clone(), Rc::clone(&to), root)? {
            differing_files(trees, dir, &mut found)?;
        }
    }
    found.added.sort();
    found.changed.sort();
    Ok(found)
}

/// The paths of the files that differ between root trees `from` and `to` (added, removed,
/// changed, or turned from a file into a directory or back), at most `most` of them: read one
/// directory at a time, and never into a directory that is the same on both sides.
pub fn changed_files(
    trees: &TreeReader<'_>,
    from: Oid,
    to: Oid,
    most: usize,
) -> Result<Vec<String>, AuditError> {
    let mut found = Vec::new();
    let mut pending = vec![(String::new(), Some(from), Some(to))];
    while let Some((path, from, to)) = pending.pop() {
        let from = from.map(|from| trees.read(from)).transpose()?;
        let to = to.map(|to| trees.read(to)).transpose()?;
        let mut sides: BTreeMap<Vec<u8>, [Option<(Kind, Oid)>; 2]> = BTreeMap::new();
        for (side, tree) in [&from, &to].into_iter().enumerate() {
            let Some(tree) = tree else { continue };
            for entry in tree.entries() {
                let entry = entry?;
                let slot = sides.entry(entry.name_bytes.to_vec()).or_default();
                slot[side] = Some((entry.kind, entry.id()?));
            }
        }
        for (name, [old, new]) in sides {
            if old == new {
                continue;
            }
            let child = match path.as_str() {
                "" => String::from_utf8_lossy(&name).into_owned(),
                _ => format!("{path}/{}", String::from_utf8_lossy(&name)),
            };
            let dir = |side: Option<(Kind, Oid)>| side.filter(|(k, _)| *k == Kind::Tree);
            let (old_dir, new_dir) = (dir(old).map(|(_, id)| id), dir(new).map(|(_, id)| id));
            if old_dir.is_some() || new_dir.is_some() {
                pending.push((child.clone(), old_dir, new_dir));
            }
            let file = |side: Option<(Kind, Oid)>| side.is_some_and(|(k, _)| k != Kind::Tree);
            if file(old) || file(new) {
                found.push(child);
            }
            if found.len() >= most {
                found.sort();
                return Ok(found);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// A directory whose tree differs between two sides: its path, its tree on the side looked
/// into (`to`), and the tree at the same path on the other side, if there is one.
struct DirPair<'a> {
    path: String,
    to: Rc<RawTree<'a>>,
    from: Option<Rc<RawTree<'a>>>,
}

/// The directory at `components` below the root trees `to` and `from`, when it is a
/// directory in `to` and its tree differs from the one in `from`; read one level at a time,
/// stopping at the first level that is the same on both sides.
fn changed_subdir<'a>(
    trees: &TreeReader<'a>,
    mut from: Option<Rc<RawTree<'a>>>,
    mut to: Rc<RawTree<'a>>,
    components: &[String],
) -> Result<Option<DirPair<'a>>, AuditError> {
    for name in components {
        let Some(entry) = to.get(name).filter(|e| e.kind == Kind::Tree) else {
            return Ok(None);
        };
        let before = from.as_ref().and_then(|f| f.get(name));
        let before = before.filter(|b| b.kind == Kind::Tree);
        if before.is_some_and(|b| b.id_bytes == entry.id_bytes) {
            return Ok(None);
        }
        let (next, before) = (entry.id()?, before.map(|b| b.id()).transpose()?);
        to = trees.read(next)?;
        from = before.map(|id| trees.read(id)).transpose()?;
    }
    Ok(Some(DirPair {
        path: components.join("/"),
        to,
        from,
    }))
}

/// Adds to `found.added` every entry at any depth under `dir.to` that is not a directory (a
/// symbolic link or a submodule counts: the audit flags more, not less) and that `dir.from`
/// does not have at the same path, and to `found.changed` every such entry that `dir.from`
/// has with another content or kind. Subdirectories with the same tree on both sides are not
/// read; a stack, not recursion, so that no depth of directories can exhaust the call stack.
fn differing_files<'a>(
    trees: &TreeReader<'a>,
    dir: DirPair<'a>,
    found: &mut Differing,
) -> Result<(), AuditError> {
    let mut pending = vec![dir];
    while let Some(DirPair { path, to, from }) = pending.pop() {
        let before: HashMap<&[u8], Entry<'_>> = match &from {
            Some(from) => from
                .entries()
                .map(|e| e.map(|e| (e.name_bytes, e)))
                .collect::<Result<_, _>>()?,
            None => HashMap::new(),
        };
        for entry in to.entries() {
            let entry = entry?;
            let child = format!("{path}/{}", String::from_utf8_lossy(entry.name_bytes));
            let old = before.get(entry.name_bytes);
            match (entry.kind, old) {
                (Kind::Tree, Some(old)) if old.kind == Kind::Tree => {
                    if old.id_bytes != entry.id_bytes {
                        let (to, from) = (trees.read(entry.id()?)?, trees.read(old.id()?)?);
                        pending.push(DirPair {
                            path: child,
                            to,
                            from: Some(from),
                        });
                    }
                }
                (Kind::Tree, _) => pending.push(DirPair {
                    path: child,
                    to: trees.read(entry.id()?)?,
                    from: None,
                }),
                (kind, Some(old)) if old.kind != Kind::Tree => {
                    if old.kind != kind || old.id_bytes != entry.id_bytes {
                        found.changed.push(child);
                    }
                }
                _ => found.added.push(child),
            }
        }
    }
    Ok(())
}

/// An environment directory whose tree differs between the two sides of a commit.
struct ChangedDir<'e, 'a> {
    environment: &'e str,
    /// Its tree on the side being looked into.
    files: Rc<RawTree<'a>>,
    /// The tree of the same name on the other side, if there is one.
    before: Option<Rc<RawTree<'a>>>,
}

/// The other side's entries, looked up by name once per entry of this side: scanned in a
/// small tree (`requests/` with a few environments, on every bot merge: no index to build),
/// indexed in a large one (a scan per entry would cost the square of its size).
enum Side<'t, 'o> {
    Scanned(&'t RawTree<'o>),
    Indexed(HashMap<&'t [u8], Entry<'t>>),
}

/// The size of tree data scanned rather than indexed: about 30 entries.
const SCANNED_BYTES: usize = 1024;

impl<'t, 'o> Side<'t, 'o> {
    fn of(tree: &'t RawTree<'o>) -> Result<Self, AuditError> {
        if tree.object.data().len() <= SCANNED_BYTES {
            return Ok(Self::Scanned(tree));
        }
        Ok(Self::Indexed(tree.index()?))
    }

    fn get(&self, name: &str) -> Option<Entry<'t>> {
        match self {
            Self::Scanned(tree) => tree.get(name),
            Self::Indexed(index) => index.get(name.as_bytes()).copied(),
        }
    }
}

/// The environment directory `dir` of one side, when its tree differs from the one of the
/// same name in `from` (the other side's entries).
fn changed_dir<'e, 'a>(
    trees: &TreeReader<'a>,
    from: Option<&Side<'_, '_>>,
    dir: &Entry<'e>,
) -> Result<Option<ChangedDir<'e, 'a>>, AuditError> {
    let (Some(env), Kind::Tree) = (dir.name(), dir.kind) else {
        return Ok(None);
    };
    let before = from.and_then(|from| from.get(env));
    if before.as_ref().is_some_and(|b| b.id_bytes == dir.id_bytes) {
        return Ok(None);
    }
    let files = trees.read(dir.id()?)?;
    let before = match before.filter(|b| b.kind == Kind::Tree) {
        Some(before) => Some(trees.read(before.id()?)?),
        None => None,
    };
    Ok(Some(ChangedDir {
        environment: env,
        files,
        before,
    }))
}

/// A tree object as stored: entries `<octal mode> <name>\0<20-byte id>`, sorted by name.
struct RawTree<'o> {
    id: Oid,
    object: OdbObject<'o>,
}

impl<'o> RawTree<'o> {
    fn read(odb: &'o Odb<'o>, id: Oid) -> Result<Self, AuditError> {
        let object = odb.read(id).map_err(AuditError::git)?;
        if object.kind() != ObjectType::Tree {
            return Err(AuditError::MalformedTree {
                tree: id.to_string(),
            });
        }
        Ok(Self { id, object })
    }

    /// The entries in stored order; an error for bytes that are not a tree entry.
    fn entries(&self) -> impl Iterator<Item = Result<Entry<'_>, AuditError>> {
        let mut rest = self.object.data();
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let entry = Entry::parse(rest);
            let Some((entry, after)) = entry else {
                rest = &[];
                return Some(Err(AuditError::MalformedTree {
                    tree: self.id.to_string(),
                }));
            };
            rest = after;
            Some(Ok(entry))
        })
    }

    /// The names of its entries.
    fn names(&self) -> Result<HashSet<&[u8]>, AuditError> {
        self.entries()
            .map(|entry| entry.map(|entry| entry.name_bytes))
            .collect()
    }

    /// Its entries by name, for lookups in a loop (each [`RawTree::get`] reads the entries).
    fn index(&self) -> Result<HashMap<&[u8], Entry<'_>>, AuditError> {
        self.entries()
            .map(|entry| entry.map(|entry| (entry.name_bytes, entry)))
            .collect()
    }

    /// The entry called `name`. A malformed tree has none (reading its entries says why).
    fn get(&self, name: &str) -> Option<Entry<'_>> {
        self.entries()
            .map_while(Result::ok)
            .find(|entry| entry.name_bytes == name.as_bytes())
    }
}

/// What a tree entry's mode says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tree,
    Blob,
    /// A symbolic link or a submodule: never a request file.
    Other,
}

impl Kind {
    /// As git reads a mode: an octal number whose type bits decide, so that `040000` (zero
    /// padded) is a directory and `100600` a file, as git and the forges take them (git only
    /// warns of such modes), never a way to hide a directory or a request from the audit.
    fn of_mode(mode: &[u8]) -> Kind {
        let mode = std::str::from_utf8(mode)
            .ok()
            .and_then(|mode| u32::from_str_radix(mode, 8).ok());
        match mode.map(|mode| mode & 0o170_000) {
            Some(0o040_000) => Kind::Tree,
            Some(0o100_000) => Kind::Blob,
            _ => Kind::Other,
        }
    }
}

/// One entry of a [`RawTree`].
#[derive(Clone, Copy, Debug)]
struct Entry<'a> {
    kind: Kind,
    name_bytes: &'a [u8],
    id_bytes: &'a [u8],
}

impl<'a> Entry<'a> {
    /// The entry at the start of `data`, and what follows it.
    fn parse(data: &'a [u8]) -> Option<(Self, &'a [u8])> {
        let space = data.iter().position(|&b| b == b' ')?;
        let nul = space + 1 + data[space + 1..].iter().position(|&b| b == 0)?;
        let id_bytes = data.get(nul + 1..nul + 21)?;
        let kind = Kind::of_mode(&data[..space]);
        let entry = Self {
            kind,
            name_bytes: &data[space + 1..nul],
            id_bytes,
        };
        Some((entry, &data[nul + 21..]))
    }

    /// The name, when it is UTF-8 (request files and environments always are).
    fn name(&self) -> Option<&'a str> {
        std::str::from_utf8(self.name_bytes).ok()
    }

    fn id(&self) -> Result<Oid, AuditError> {
        Oid::from_bytes(self.id_bytes).map_err(AuditError::git)
    }
}

/// The stem of a `.yaml` or `.yml` file name, when it has one.
pub(crate) fn yaml_stem(name: &str) -> Option<&str> {
    name.strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))
        .filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository and a way to write root trees from `(path, content)` pairs.
    struct Repo {
        _dir: tempfile::TempDir,
        repo: git2::Repository,
    }

    impl Repo {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let repo = git2::Repository::init_bare(dir.path()).unwrap();
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

        fn odb(&self) -> Odb<'_> {
            self.repo.odb().unwrap()
        }

        /// A root tree with any `(path, content)` files.
        fn tree_of(&self, files: &[(&str, &str)]) -> Oid {
            let mut builder = self.repo.treebuilder(None).unwrap();
            let mut dirs: std::collections::BTreeMap<&str, Vec<(&str, &str)>> = Default::default();
            for &(path, content) in files {
                match path.split_once('/') {
                    Some((dir, rest)) => dirs.entry(dir).or_default().push((rest, content)),
                    None => {
                        let blob = self.repo.blob(content.as_bytes()).unwrap();
                        builder.insert(path, blob, 0o100_644).unwrap();
                    }
                }
            }
            for (dir, files) in dirs {
                builder
                    .insert(dir, self.tree_of(&files), 0o040_000)
                    .unwrap();
            }
            builder.write().unwrap()
        }
    }

    fn roots(roots: &[&str]) -> Vec<Vec<String>> {
        roots
            .iter()
            .map(|r| r.split('/').map(String::from).collect())
            .collect()
    }

    #[test]
    fn changed_files_are_every_file_added_removed_or_changed_at_any_depth() {
        let r = Repo::new();
        let old = r.tree_of(&[
            ("requests/prod/r-1.yaml", "kept"),
            ("policies/prod.yaml", "p"),
            ("gone/a/b.txt", "b"),
            ("was-a-file", "f"),
        ]);
        let new = r.tree_of(&[
            ("requests/prod/r-1.yaml", "kept"),
            ("requests/prod/r-2.yaml", "added"),
            ("policies/prod.yaml", "p2"),
            ("was-a-file/now.txt", "d"),
        ]);
        let odb = r.odb();
        let reader = TreeReader::new(&odb);
        let changed = changed_files(&reader, old, new, 100).unwrap();
        assert_eq!(
            changed,
            [
                "gone/a/b.txt",
                "policies/prod.yaml",
                "requests/prod/r-2.yaml",
                "was-a-file",
                "was-a-file/now.txt",
            ]
        );
        assert_eq!(changed_files(&reader, old, new, 2).unwrap().len(), 2);
        assert!(changed_files(&reader, old, old, 100).unwrap().is_empty());
    }

    #[test]
    fn files_appearing_under_the_roots_are_found_at_any_depth() {
        let r = Repo::new();
        let old = r.tree_of(&[
            ("grants/network/r-1.tf", "kept"),
            ("grants/prod/r-2.tf", "before"),
            ("infra/grants/x.tf", "x"),
            ("policies/prod.yaml", "p"),
        ]);
        let new = r.tree_of(&[
            ("grants/network/r-1.tf", "kept"),
            ("grants/network/evil.tf", "admin"),
            ("grants/prod/r-2.tf", "after"), // changed, not added
            ("grants/deep/a/b/c.tf", "deep"),
            ("infra/grants/x.tf", "x"),
            ("infra/grants/y.tf", "y"),
            ("infra/other.tf", "not under a root"),
            ("k8s/prod/r-3.yaml", "k"),
            ("policies/prod.yaml", "p2"),
        ]);
        let odb = r.odb();
        let reader = TreeReader::new(&odb);
        let under = roots(&["grants", "infra/grants", "k8s"]);
        let added = files_appearing_under(&reader, Some(old), Some(new), &under).unwrap();
        assert_eq!(
            added,
            [
                "grants/deep/a/b/c.tf",
                "grants/network/evil.tf",
                "infra/grants/y.tf",
                "k8s/prod/r-3.yaml",
            ]
        );
        let removed = files_appearing_under(&reader, Some(new), Some(old), &under).unwrap();
        assert_eq!(
            removed,
            Vec::<String>::new(),
            "nothing under a root went away"
        );
        let gone = r.tree_of(&[("grants/network/r-1.tf", "kept")]);
        assert_eq!(
            files_appearing_under(&reader, Some(gone), Some(new), &roots(&["grants"])).unwrap(),
            [
                "grants/deep/a/b/c.tf",
                "grants/network/evil.tf",
                "grants/prod/r-2.tf"
            ],
            "a directory that one side lacks is read in full"
        );
        assert_eq!(
            files_appearing_under(&reader, None, Some(gone), &roots(&["grants"])).unwrap(),
            ["grants/network/r-1.tf"]
        );
        assert_eq!(
            files_appearing_under(&reader, Some(new), Some(new), &under).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            files_appearing_under(&reader, Some(new), None, &under).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_file_replaced_by_a_directory_or_the_reverse_is_new() {
        let r = Repo::new();
        let old = r.tree_of(&[("grants/a", "file"), ("grants/b/x.tf", "x")]);
        let new = r.tree_of(&[("grants/a/y.tf", "y"), ("grants/b", "file")]);
        let odb = r.odb();
        let reader = TreeReader::new(&odb);
        let under = roots(&["grants"]);
        assert_eq!(
            files_appearing_under(&reader, Some(old), Some(new), &under).unwrap(),
            ["grants/a/y.tf", "grants/b"]
        );
        assert_eq!(
            files_appearing_under(&reader, Some(new), Some(old), &under).unwrap(),
            ["grants/a", "grants/b/x.tf"]
        );
    }

    /// A root whose tree id is the same on both sides is never read: here its tree is not even
    /// in the repository, and reading it would fail.
    #[test]
    fn an_untouched_root_is_not_read() {
        let r = Repo::new();
        let odb = r.odb();
        let missing = [0xab_u8; 20];
        let root = |grants: Oid| {
            let mut raw = b"40000 grants\0".to_vec();
            raw.extend_from_slice(grants.as_bytes());
            raw.extend_from_slice(b"40000 k8s\0");
            raw.extend_from_slice(&missing);
            odb.write(ObjectType::Tree, &raw).unwrap()
        };
        let old = root(r.tree_of(&[("r-1.tf", "a")]));
        let new = root(r.tree_of(&[("r-1.tf", "a"), ("evil.tf", "b")]));
        let reader = TreeReader::new(&odb);
        let under = roots(&["grants", "k8s"]);
        assert_eq!(
            files_appearing_under(&reader, Some(old), Some(new), &under).unwrap(),
            ["grants/evil.tf"]
        );
        assert!(
            files_appearing_under(&reader, None, Some(new), &under).is_err(),
            "the missing tree is read when the other side has no such root"
        );
    }

    /// Modes git takes for a directory or a file though they are not the ones it writes (zero
    /// padded, other permission bits): read as git reads them, they hide nothing.
    #[test]
    fn odd_modes_git_accepts_are_read_as_git_reads_them() {
        let r = Repo::new();
        let odb = r.odb();
        let entry = |mode: &str, name: &str, id: Oid| {
            let mut raw = format!("{mode} {name}\0").into_bytes();
            raw.extend_from_slice(id.as_bytes());
            odb.write(ObjectType::Tree, &raw).unwrap()
        };
        let blob = r.repo.blob(b"role: admin\n").unwrap();
        let prod = entry("100600", "evil.yaml", blob);
        let new = entry("040000", "requests", entry("040000", "prod", prod));
        let old = r.tree_of(&[("README.md", "x")]);
        let reader = TreeReader::new(&odb);
        let trees = RequestTrees::read(&reader, new, Some(old)).unwrap();
        let added: Vec<String> = trees
            .all_added()
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(added, ["requests/prod/evil.yaml"]);
        assert_eq!(
            files_appearing_under(&reader, Some(old), Some(new), &roots(&["requests"])).unwrap(),
            ["requests/prod/evil.yaml"]
        );
        for (mode, kind) in [
            ("40000", Kind::Tree),
            ("040000", Kind::Tree),
            ("100644", Kind::Blob),
            ("100755", Kind::Blob),
            ("100600", Kind::Blob),
            ("120000", Kind::Other),
            ("160000", Kind::Other),
            ("10064x", Kind::Other),
            ("", Kind::Other),
        ] {
            assert_eq!(Kind::of_mode(mode.as_bytes()), kind, "{mode}");
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
        let odb = r.odb();
        let reader = TreeReader::new(&odb);
        let trees = RequestTrees::read(&reader, new, Some(old)).unwrap();
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
        let odb = r.odb();
        let reader = TreeReader::new(&odb);
        let trees = RequestTrees::read(&reader, new, Some(old)).unwrap();
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
        let odb = r.odb();
        let reader = TreeReader::new(&odb);
        let trees = RequestTrees::read(&reader, new, Some(old)).unwrap();
        assert_eq!(
            place(trees.removed(&["r-1.yaml"]).unwrap()).as_deref(),
            Some("requests/prod/r-1.yaml")
        );
        assert_eq!(
            place(trees.removed(&["r-2.yaml", "r-2.yml"]).unwrap()),
            None
        );
        let gone = r.tree(&[("requests/prod/r-1.yaml", "a")]);
        let gone = RequestTrees::read(&reader, gone, Some(old)).unwrap();
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
        let odb = r.odb();
        let reader = TreeReader::new(&odb);
        let trees = RequestTrees::read(&reader, new, None).unwrap();
        assert_eq!(
            place(trees.added(Some("prod"), &["r-1.yaml"]).unwrap()).as_deref(),
            Some("requests/prod/r-1.yaml")
        );
        assert_eq!(
            trees.all_added().unwrap(),
            [LandedFact {
                file: LandedFile::Request,
                environment: Some("prod".into()),
                request_id: "r-1".into(),
                path: "requests/prod/r-1.yaml".into(),
                modified: false,
            }]
        );
        let same = RequestTrees::read(&reader, new, Some(new)).unwrap();
        assert!(same.unchanged());
        assert_eq!(place(same.added(None, &["r-1.yaml"]).unwrap()), None);
    }

    #[test]
    fn entries_are_read_by_mode_and_a_broken_tree_is_an_error() {
        let r = Repo::new();
        let odb = r.odb();
        let blob = r.repo.blob(b"x").unwrap();
        let mut builder = r.repo.treebuilder(None).unwrap();
        builder.insert("link.yaml", blob, 0o120_000).unwrap();
        builder.insert("run.yaml", blob, 0o100_755).unwrap();
        let dir = builder.write().unwrap();
        let tree = RawTree::read(&odb, dir).unwrap();
        let kinds: Vec<(&str, Kind)> = tree
            .entries()
            .map(|e| e.map(|e| (e.name().unwrap(), e.kind)).unwrap())
            .collect();
        assert_eq!(
            kinds,
            [("link.yaml", Kind::Other), ("run.yaml", Kind::Blob)]
        );
        assert_eq!(tree.get("run.yaml").unwrap().id().unwrap(), blob);
        assert!(tree.get("run").is_none());

        let broken = odb.write(ObjectType::Tree, b"100644 cut-short").unwrap();
        let broken = RawTree::read(&odb, broken).unwrap();
        assert!(matches!(
            broken.entries().next(),
            Some(Err(AuditError::MalformedTree { .. }))
        ));
        assert!(matches!(
            RawTree::read(&odb, blob),
            Err(AuditError::MalformedTree { .. })
        ));
    }

    #[test]
    fn the_reader_serves_a_recent_tree_again_and_forgets_old_ones() {
        let r = Repo::new();
        let odb = r.odb();
        let reader = TreeReader::new(&odb);
        let ids: Vec<Oid> = (0..=RECENT_TREES)
            .map(|n| r.tree(&[("requests/prod/r.yaml", &n.to_string())]))
            .collect();
        let first = reader.read(ids[0]).unwrap();
        assert!(Rc::ptr_eq(&first, &reader.read(ids[0]).unwrap()), "kept");
        for id in &ids[1..] {
            reader.read(*id).unwrap();
        }
        assert_eq!(reader.recent.borrow().len(), RECENT_TREES);
        let again = reader.read(ids[0]).unwrap();
        assert!(
            !Rc::ptr_eq(&first, &again),
            "the oldest was forgotten, read anew"
        );
        assert_eq!(again.id, ids[0]);
    }
}
