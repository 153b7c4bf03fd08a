//! The git side: every repository is a real bare repo, every write a real commit, every merge a
//! real two-parent merge commit. These are blocking libgit2 calls on small repos; the forge runs
//! them under its state lock so that git and the model never disagree.

use std::path::Path;

use git2::build::TreeUpdateBuilder;
use git2::{FileMode, ObjectType, Oid, Repository, Signature, Sort};

use crate::model::CommitInfo;

/// One change of a commit: the entry written at a path, or `None` to delete.
pub(crate) type Change = (String, Option<Written>);

/// An entry a commit writes at a path. The APIs write files only; a `git push` can write any.
pub(crate) enum Written {
    /// A regular file (`100644`) with these bytes.
    File(Vec<u8>),
    /// An executable file (`100755`).
    Executable(Vec<u8>),
    /// A symbolic link (`120000`) whose link text (its target) is this.
    Symlink(String),
    /// A submodule (`160000`): a gitlink to this commit of another repository.
    Submodule(String),
}

/// What a path names at a commit.
pub(crate) enum PathEntry {
    /// A blob that is no symbolic link (executable or not).
    File {
        sha: String,
        bytes: Vec<u8>,
    },
    Dir(Vec<DirEntry>),
    /// A symbolic link, with its link text.
    Symlink {
        sha: String,
        target: Vec<u8>,
    },
    /// A gitlink to commit `sha` of another repository.
    Submodule {
        sha: String,
    },
}

/// What kind of entry a tree holds at a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryType {
    File,
    Dir,
    Symlink,
    Submodule,
}

impl EntryType {
    /// The kind of entry that git file mode `mode` makes.
    pub(crate) fn of_mode(mode: i32) -> Self {
        match mode {
            m if m == i32::from(FileMode::Tree) => EntryType::Dir,
            m if m == i32::from(FileMode::Link) => EntryType::Symlink,
            m if m == i32::from(FileMode::Commit) => EntryType::Submodule,
            _ => EntryType::File,
        }
    }

    /// GitHub's contents API's word for it (`type`).
    pub(crate) fn contents_type(self) -> &'static str {
        match self {
            EntryType::File => "file",
            EntryType::Dir => "dir",
            EntryType::Symlink => "symlink",
            EntryType::Submodule => "submodule",
        }
    }
}

/// One entry of a directory listing.
pub(crate) struct DirEntry {
    pub path: String,
    pub sha: String,
    pub kind: EntryType,
    pub size: usize,
}

/// One entry of a (possibly recursive) tree listing.
pub(crate) struct TreeItem {
    pub path: String,
    pub mode: String,
    pub is_tree: bool,
    pub sha: String,
    pub size: Option<usize>,
}

impl TreeItem {
    /// The git object type the tree APIs give it: a submodule is a `commit`.
    pub(crate) fn git_type(&self) -> &'static str {
        if self.is_tree {
            "tree"
        } else if self.mode == "160000" {
            "commit"
        } else {
            "blob"
        }
    }
}

/// A commit with the details the REST API shows.
pub(crate) struct CommitDetail {
    pub sha: String,
    pub tree: String,
    pub message: String,
    pub parents: Vec<String>,
    pub author_name: String,
    pub author_email: String,
    pub author_time: chrono::DateTime<chrono::Utc>,
    pub committer_name: String,
    pub committer_email: String,
    pub committer_time: chrono::DateTime<chrono::Utc>,
}

/// One changed file between two commits.
pub(crate) struct FileDiff {
    pub filename: String,
    pub previous_filename: Option<String>,
    pub status: &'static str,
    pub sha: String,
    /// The modes before and after, in octal as GitLab writes them (`0` where there is none).
    pub old_mode: String,
    pub new_mode: String,
    pub additions: usize,
    pub deletions: usize,
    pub patch: Option<String>,
}

/// Creates a bare repository whose HEAD points at the (unborn) default branch.
pub(crate) fn init(path: &Path, default_branch: &str) -> Result<Repository, git2::Error> {
    let repo = Repository::init_bare(path)?;
    repo.set_head(&format!("refs/heads/{default_branch}"))?;
    Ok(repo)
}

/// The author signature the forge uses for a user: GitHub's noreply address.
pub(crate) fn user_signature(
    login: &str,
    id: u64,
    when: chrono::DateTime<chrono::Utc>,
) -> Result<Signature<'static>, git2::Error> {
    Signature::new(
        login,
        &format!("{id}+{login}@users.noreply.github.com"),
        &git2::Time::new(when.timestamp(), 0),
    )
}

/// The committer of web-flow commits, as on GitHub.
pub(crate) fn web_flow(
    when: chrono::DateTime<chrono::Utc>,
) -> Result<Signature<'static>, git2::Error> {
    Signature::new(
        "GitHub",
        "noreply@github.com",
        &git2::Time::new(when.timestamp(), 0),
    )
}

/// The tip of a branch, if the branch exists.
pub(crate) fn branch_tip(repo: &Repository, branch: &str) -> Option<Oid> {
    repo.find_reference(&format!("refs/heads/{branch}"))
        .ok()
        .and_then(|r| r.target())
}

/// All branch names.
pub(crate) fn branches(repo: &Repository) -> Result<Vec<(String, Oid)>, git2::Error> {
    let mut out = Vec::new();
    for r in repo.references_glob("refs/heads/*")? {
        let r = r?;
        if let (Ok(name), Some(oid)) = (r.name(), r.target()) {
            out.push((name.trim_start_matches("refs/heads/").to_owned(), oid));
        }
    }
    Ok(out)
}

/// Resolves a tag or branch name (a tag first, as git does), `heads/x`, `refs/heads/x` or a
/// (possibly abbreviated) commit sha.
pub(crate) fn resolve(repo: &Repository, rev: &str) -> Option<Oid> {
    if rev.is_empty() {
        return None;
    }
    // As git's rev-parse does, a plain name is a tag before it is a branch.
    if let Ok(tag) = repo.find_reference(&format!("refs/tags/{rev}"))
        && let Ok(commit) = tag.peel_to_commit()
    {
        return Some(commit.id());
    }
    if let Some(oid) = branch_tip(repo, rev) {
        return Some(oid);
    }
    for prefix in ["refs/heads/", "heads/", "refs/tags/", "tags/"] {
        if let Some(rest) = rev.strip_prefix(prefix)
            && let Some(oid) = branch_tip(repo, rest)
        {
            return Some(oid);
        }
    }
    if rev.len() >= 4 && rev.chars().all(|c| c.is_ascii_hexdigit()) {
        return repo
            .revparse_single(rev)
            .ok()
            .and_then(|o| o.peel_to_commit().ok())
            .map(|c| c.id());
    }
    None
}

/// Points a branch at a commit (creating it if needed).
pub(crate) fn set_branch(repo: &Repository, branch: &str, oid: Oid) -> Result<(), git2::Error> {
    repo.reference(
        &format!("refs/heads/{branch}"),
        oid,
        true,
        "test-forge: update ref",
    )?;
    Ok(())
}

/// Deletes a branch; false if it did not exist.
pub(crate) fn delete_branch(repo: &Repository, branch: &str) -> Result<bool, git2::Error> {
    match repo.find_reference(&format!("refs/heads/{branch}")) {
        Ok(mut r) => {
            r.delete()?;
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

/// Whether the given commit exists in the repository.
pub(crate) fn commit_exists(repo: &Repository, oid: Oid) -> bool {
    repo.find_commit(oid).is_ok()
}

/// Commits `changes` on top of `parent` (or as a root commit) and moves `branch` to it.
pub(crate) fn commit_changes(
    repo: &Repository,
    branch: &str,
    parent: Option<Oid>,
    changes: &[Change],
    message: &str,
    author: &Signature<'_>,
    committer: &Signature<'_>,
) -> Result<Oid, git2::Error> {
    let oid = commit_detached(repo, parent, changes, message, author, committer)?;
    set_branch(repo, branch, oid)?;
    Ok(oid)
}

/// Commits `changes` on top of `parent` (or as a root commit) without moving any ref.
pub(crate) fn commit_detached(
    repo: &Repository,
    parent: Option<Oid>,
    changes: &[Change],
    message: &str,
    author: &Signature<'_>,
    committer: &Signature<'_>,
) -> Result<Oid, git2::Error> {
    let parent_commit = parent.map(|p| repo.find_commit(p)).transpose()?;
    let baseline = match &parent_commit {
        Some(c) => c.tree()?,
        None => {
            let empty = repo.treebuilder(None)?.write()?;
            repo.find_tree(empty)?
        }
    };
    let mut builder = TreeUpdateBuilder::new();
    for (path, content) in changes {
        match content {
            Some(written) => {
                let (oid, mode) = write_entry(repo, written)?;
                builder.upsert(path.as_str(), oid, mode);
            }
            None => {
                builder.remove(path.as_str());
            }
        }
    }
    let tree_id = builder.create_updated(repo, &baseline)?;
    let tree = repo.find_tree(tree_id)?;
    let parents: Vec<&git2::Commit<'_>> = parent_commit.iter().collect();
    repo.commit(None, author, committer, message, &tree, &parents)
}

/// The object and mode of an entry to write.
fn write_entry(repo: &Repository, written: &Written) -> Result<(Oid, FileMode), git2::Error> {
    Ok(match written {
        Written::File(bytes) => (repo.blob(bytes)?, FileMode::Blob),
        Written::Executable(bytes) => (repo.blob(bytes)?, FileMode::BlobExecutable),
        Written::Symlink(target) => (repo.blob(target.as_bytes())?, FileMode::Link),
        Written::Submodule(commit) => (Oid::from_str(commit)?, FileMode::Commit),
    })
}

/// What `path` names at `commit`: a file, a directory, or nothing. The empty path is the root.
pub(crate) fn read_path(
    repo: &Repository,
    commit: Oid,
    path: &str,
) -> Result<Option<PathEntry>, git2::Error> {
    let tree = repo.find_commit(commit)?.tree()?;
    let path = path.trim_matches('/');
    let (tree_id, prefix) = if path.is_empty() {
        (tree.id(), String::new())
    } else {
        let entry = match tree.get_path(Path::new(path)) {
            Ok(e) => e,
            Err(_) => return Ok(None),
        };
        let sha = entry.id().to_string();
        match EntryType::of_mode(entry.filemode()) {
            EntryType::Dir => (entry.id(), format!("{path}/")),
            EntryType::Submodule => return Ok(Some(PathEntry::Submodule { sha })),
            EntryType::Symlink => {
                let target = repo.find_blob(entry.id())?.content().to_vec();
                return Ok(Some(PathEntry::Symlink { sha, target }));
            }
            EntryType::File => {
                let bytes = repo.find_blob(entry.id())?.content().to_vec();
                return Ok(Some(PathEntry::File { sha, bytes }));
            }
        }
    };
    let dir = repo.find_tree(tree_id)?;
    let mut entries = Vec::new();
    for e in dir.iter() {
        let name = e.name().unwrap_or_default().to_owned();
        let kind = EntryType::of_mode(e.filemode());
        let size = match kind {
            EntryType::File | EntryType::Symlink => {
                repo.find_blob(e.id()).map(|b| b.size()).unwrap_or(0)
            }
            EntryType::Dir | EntryType::Submodule => 0,
        };
        entries.push(DirEntry {
            path: format!("{prefix}{name}"),
            sha: e.id().to_string(),
            kind,
            size,
        });
    }
    Ok(Some(PathEntry::Dir(entries)))
}

/// The regular file that symbolic link `link` (with link text `target`) points to at `commit`,
/// as its path, blob id and bytes: `None` when the target leaves the repository or is not a
/// regular file there (GitHub's contents API then serves the link itself).
pub(crate) fn link_target(
    repo: &Repository,
    commit: Oid,
    link: &str,
    target: &[u8],
) -> Result<Option<(String, String, Vec<u8>)>, git2::Error> {
    let Some(path) = std::str::from_utf8(target)
        .ok()
        .and_then(|target| resolve_link(link, target))
    else {
        return Ok(None);
    };
    Ok(match read_path(repo, commit, &path)? {
        Some(PathEntry::File { sha, bytes }) => Some((path, sha, bytes)),
        _ => None,
    })
}

/// The repository path that link text `target` of the link at `link` names, relative to the
/// link's directory; `None` for an absolute target or one that climbs out of the repository.
fn resolve_link(link: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop(); // the link's own name
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    Some(parts.join("/"))
}

/// Lists a tree (given a tree or commit sha), recursively when asked.
pub(crate) fn list_tree(
    repo: &Repository,
    oid: Oid,
    recursive: bool,
) -> Result<Option<(String, Vec<TreeItem>)>, git2::Error> {
    let tree = match repo.find_object(oid, None) {
        Ok(obj) => match obj.peel_to_tree() {
            Ok(t) => t,
            Err(_) => return Ok(None),
        },
        Err(_) => return Ok(None),
    };
    let mut items = Vec::new();
    let mut walk_err = None;
    tree.walk(git2::TreeWalkMode::PreOrder, |root, entry| {
        let name = entry.name().unwrap_or_default();
        let is_tree = entry.kind() == Some(ObjectType::Tree);
        // A submodule's commit is not in this repository.
        let size = if is_tree || entry.kind() == Some(ObjectType::Commit) {
            None
        } else {
            match repo.find_blob(entry.id()) {
                Ok(b) => Some(b.size()),
                Err(e) => {
                    walk_err = Some(e);
                    return git2::TreeWalkResult::Abort;
                }
            }
        };
        items.push(TreeItem {
            path: format!("{root}{name}"),
            mode: format!("{:06o}", entry.filemode()),
            is_tree,
            sha: entry.id().to_string(),
            size,
        });
        if recursive {
            git2::TreeWalkResult::Ok
        } else {
            git2::TreeWalkResult::Skip
        }
    })?;
    if let Some(e) = walk_err {
        return Err(e);
    }
    Ok(Some((tree.id().to_string(), items)))
}

fn to_utc(t: git2::Time) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(t.seconds(), 0).unwrap_or_default()
}

/// The details of one commit, if it exists.
pub(crate) fn commit_detail(repo: &Repository, oid: Oid) -> Option<CommitDetail> {
    let c = repo.find_commit(oid).ok()?;
    let author = c.author();
    let committer = c.committer();
    Some(CommitDetail {
        sha: c.id().to_string(),
        tree: c.tree_id().to_string(),
        message: c.message().unwrap_or_default().to_owned(),
        parents: c.parent_ids().map(|p| p.to_string()).collect(),
        author_name: author.name().unwrap_or_default().to_owned(),
        author_email: author.email().unwrap_or_default().to_owned(),
        author_time: to_utc(author.when()),
        committer_name: committer.name().unwrap_or_default().to_owned(),
        committer_email: committer.email().unwrap_or_default().to_owned(),
        committer_time: to_utc(committer.when()),
    })
}

/// The merge base of two commits.
pub(crate) fn merge_base(repo: &Repository, a: Oid, b: Oid) -> Option<Oid> {
    repo.merge_base(a, b).ok()
}

/// Commits reachable from `head` but not from `base`, oldest first.
pub(crate) fn commits_between(
    repo: &Repository,
    base: Oid,
    head: Oid,
) -> Result<Vec<Oid>, git2::Error> {
    let mut walk = repo.revwalk()?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)?;
    walk.push(head)?;
    walk.hide(base)?;
    walk.collect()
}

/// The files that differ between two commits (`base` → `head`).
pub(crate) fn diff(repo: &Repository, base: Oid, head: Oid) -> Result<Vec<FileDiff>, git2::Error> {
    let old = repo.find_commit(base)?.tree()?;
    let new = repo.find_commit(head)?.tree()?;
    let mut diff = repo.diff_tree_to_tree(Some(&old), Some(&new), None)?;
    diff.find_similar(None)?;
    let mut out = Vec::new();
    for idx in 0..diff.deltas().len() {
        let Some(delta) = diff.get_delta(idx) else {
            continue;
        };
        let status = match delta.status() {
            git2::Delta::Added => "added",
            git2::Delta::Deleted => "removed",
            git2::Delta::Renamed => "renamed",
            git2::Delta::Copied => "copied",
            _ => "modified",
        };
        let new_path = delta
            .new_file()
            .path()
            .map(|p| p.to_string_lossy().into_owned());
        let old_path = delta
            .old_file()
            .path()
            .map(|p| p.to_string_lossy().into_owned());
        let mode = |file: git2::DiffFile<'_>| format!("{:o}", u32::from(file.mode()));
        let (old_mode, new_mode) = (mode(delta.old_file()), mode(delta.new_file()));
        let (filename, sha) = if status == "removed" {
            (old_path.clone().unwrap_or_default(), delta.old_file().id())
        } else {
            (new_path.clone().unwrap_or_default(), delta.new_file().id())
        };
        let (mut additions, mut deletions, mut patch_text) = (0, 0, None);
        if let Ok(Some(mut patch)) = git2::Patch::from_diff(&diff, idx) {
            if let Ok((_, a, d)) = patch.line_stats() {
                additions = a;
                deletions = d;
            }
            if let Ok(buf) = patch.to_buf() {
                let text = String::from_utf8_lossy(&buf);
                // GitHub's `patch` starts at the first hunk header.
                patch_text = text.find("@@").map(|i| text[i..].to_owned());
            }
        }
        out.push(FileDiff {
            filename,
            previous_filename: if status == "renamed" { old_path } else { None },
            status,
            sha: sha.to_string(),
            old_mode,
            new_mode,
            additions,
            deletions,
            patch: patch_text,
        });
    }
    Ok(out)
}

/// Why a merge could not be made.
pub(crate) enum MergeOutcome {
    Merged(Oid),
    Conflict,
}

/// Whether `head` merges cleanly into `base`.
pub(crate) fn merges_cleanly(repo: &Repository, base: Oid, head: Oid) -> Result<bool, git2::Error> {
    let ours = repo.find_commit(base)?;
    let theirs = repo.find_commit(head)?;
    let index = repo.merge_commits(&ours, &theirs, None)?;
    Ok(!index.has_conflicts())
}

/// Merges `head` into the tip of `branch`. With `squash` the result has one parent, otherwise
/// it is a true merge commit with parents `[base tip, head]`.
pub(crate) fn merge_into(
    repo: &Repository,
    branch: &str,
    head: Oid,
    message: &str,
    author: &Signature<'_>,
    squash: bool,
) -> Result<MergeOutcome, git2::Error> {
    let when = chrono::DateTime::from_timestamp(author.when().seconds(), 0).unwrap_or_default();
    let Some(base) = branch_tip(repo, branch) else {
        return Err(git2::Error::from_str("base branch does not exist"));
    };
    let ours = repo.find_commit(base)?;
    let theirs = repo.find_commit(head)?;
    let mut index = repo.merge_commits(&ours, &theirs, None)?;
    if index.has_conflicts() {
        return Ok(MergeOutcome::Conflict);
    }
    let tree = repo.find_tree(index.write_tree_to(repo)?)?;
    let committer = web_flow(when)?;
    let parents: Vec<&git2::Commit<'_>> = if squash {
        vec![&ours]
    } else {
        vec![&ours, &theirs]
    };
    let oid = repo.commit(None, author, &committer, message, &tree, &parents)?;
    set_branch(repo, branch, oid)?;
    Ok(MergeOutcome::Merged(oid))
}

/// Re-applies the commits `base..head` one by one on top of `branch` (a "rebase" merge).
pub(crate) fn rebase_onto(
    repo: &Repository,
    branch: &str,
    base_of_pr: Oid,
    head: Oid,
    when: chrono::DateTime<chrono::Utc>,
) -> Result<MergeOutcome, git2::Error> {
    let Some(mut tip) = branch_tip(repo, branch) else {
        return Err(git2::Error::from_str("base branch does not exist"));
    };
    let committer = web_flow(when)?;
    for oid in commits_between(repo, base_of_pr, head)? {
        let commit = repo.find_commit(oid)?;
        if commit.parent_count() > 1 {
            continue;
        }
        let onto = repo.find_commit(tip)?;
        let mut index = repo.cherrypick_commit(&commit, &onto, 0, None)?;
        if index.has_conflicts() {
            return Ok(MergeOutcome::Conflict);
        }
        let tree = repo.find_tree(index.write_tree_to(repo)?)?;
        tip = repo.commit(
            None,
            &commit.author(),
            &committer,
            commit.message().unwrap_or_default(),
            &tree,
            &[&onto],
        )?;
    }
    set_branch(repo, branch, tip)?;
    Ok(MergeOutcome::Merged(tip))
}

/// The history reachable from `tip`, newest first, as `git log` prints it.
pub(crate) fn log(repo: &Repository, tip: Oid) -> Result<Vec<CommitInfo>, git2::Error> {
    let mut walk = repo.revwalk()?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME)?;
    walk.push(tip)?;
    let mut out = Vec::new();
    for oid in walk {
        let c = repo.find_commit(oid?)?;
        out.push(CommitInfo {
            sha: c.id().to_string(),
            parents: c.parent_ids().map(|p| p.to_string()).collect(),
            message: c.message().unwrap_or_default().to_owned(),
            author: c.author().name().unwrap_or_default().to_owned(),
        });
    }
    Ok(out)
}

/// One entry of a `POST /git/trees` request: `None` deletes the path.
pub(crate) struct NewTreeEntry {
    pub path: String,
    pub mode: FileMode,
    pub oid: Option<Oid>,
}

/// Writes a tree: `base` (a tree or commit) updated with `entries`, or a fresh tree.
pub(crate) fn write_tree(
    repo: &Repository,
    base: Option<Oid>,
    entries: &[NewTreeEntry],
) -> Result<Oid, git2::Error> {
    let baseline = match base {
        Some(oid) => repo.find_object(oid, None)?.peel_to_tree()?,
        None => repo.find_tree(repo.treebuilder(None)?.write()?)?,
    };
    let mut builder = TreeUpdateBuilder::new();
    for e in entries {
        match e.oid {
            Some(oid) => {
                builder.upsert(e.path.as_str(), oid, e.mode);
            }
            None => {
                builder.remove(e.path.as_str());
            }
        }
    }
    builder.create_updated(repo, &baseline)
}

/// Writes a commit object without moving any ref (`POST /git/commits`).
pub(crate) fn write_commit(
    repo: &Repository,
    message: &str,
    tree: Oid,
    parents: &[Oid],
    author: &Signature<'_>,
    committer: &Signature<'_>,
) -> Result<Oid, git2::Error> {
    let tree = repo.find_tree(tree)?;
    let parents = parents
        .iter()
        .map(|p| repo.find_commit(*p))
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
    repo.commit(None, author, committer, message, &tree, &refs)
}

#[cfg(test)]
mod tests {
    use super::resolve_link;

    #[test]
    fn a_link_target_is_resolved_from_the_links_directory() {
        let link = "requests/staging/r1.yaml";
        assert_eq!(
            resolve_link(link, "../../policies/prod.yaml").as_deref(),
            Some("policies/prod.yaml")
        );
        assert_eq!(
            resolve_link(link, "./r0.yaml").as_deref(),
            Some("requests/staging/r0.yaml")
        );
        assert_eq!(
            resolve_link(link, "../../../etc/passwd"),
            None,
            "out of the repository"
        );
        assert_eq!(resolve_link(link, "/etc/passwd"), None, "absolute");
    }
}
