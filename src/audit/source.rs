//! Where the requests repo comes from: a local path (opened in place) or a URL (cloned, bare,
//! into a temporary directory that is removed when the [`Source`] is dropped).
//!
//! Clones go through the `git` command line because the vendored libgit2 is built without
//! HTTPS; the CLI also brings the user's credential helpers and SSH setup for free.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use git2::Repository;

use super::AuditError;

/// An opened requests repository.
pub struct Source {
    repo: Repository,
    /// How to name it in a report: the path or URL as given, credentials removed.
    name: String,
    /// Holds the clone's directory for as long as the repository is open.
    _clone: Option<TempDir>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("name", &self.name).finish()
    }
}

impl Source {
    /// Opens `location`: a URL (anything with `://`, or `git@host:path`) is cloned with
    /// `git clone --bare` (only `branch` when one is given, else only the remote's default
    /// branch); anything else is a path to a repository or a directory inside one.
    pub fn open(location: &str, branch: Option<&str>) -> Result<Self, AuditError> {
        if is_url(location) {
            return Self::clone_url(location, branch);
        }
        let repo = Repository::discover(location).map_err(|source| AuditError::Open {
            location: location.to_owned(),
            source,
        })?;
        Ok(Self {
            repo,
            name: location.to_owned(),
            _clone: None,
        })
    }

    fn clone_url(url: &str, branch: Option<&str>) -> Result<Self, AuditError> {
        let name = crate::secret::redact_url(url);
        let dir = TempDir::new().map_err(|err| AuditError::Clone {
            url: name.clone(),
            message: format!("cannot create a temporary directory: {err}"),
        })?;
        let target = dir.path().join("repo.git");
        let mut command = Command::new("git");
        command
            .args(["clone", "--bare", "--quiet", "--single-branch", "--no-tags"])
            .env("GIT_TERMINAL_PROMPT", "0") // fail rather than wait for a password
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(branch) = branch {
            command.args(["--branch", branch]);
        }
        // `--` so that no URL is ever read as an option.
        command.arg("--").arg(url).arg(&target);
        let output = command.output().map_err(|err| AuditError::Clone {
            url: name.clone(),
            message: format!("cannot run git: {err}"),
        })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr).replace(url, &name);
            return Err(AuditError::Clone {
                url: name,
                message: format!("git clone failed ({}): {}", output.status, stderr.trim()),
            });
        }
        let repo = Repository::open_bare(&target).map_err(|source| AuditError::Open {
            location: name.clone(),
            source,
        })?;
        Ok(Self {
            repo,
            name,
            _clone: Some(dir),
        })
    }

    /// The repository.
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// The path or URL as given, without credentials.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Whether `--repo` names a remote rather than a path.
pub fn is_url(location: &str) -> bool {
    location.contains("://") || location.contains("git@")
}

/// A directory under the system's temp dir, removed on drop. (`tempfile` is only a
/// dev-dependency; this is all the clone needs.)
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        for attempt in 0..100u64 {
            let path = base.join(format!(
                "breakglass-audit-{}-{nanos}-{}-{attempt}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed),
            ));
            // `create_dir` fails on an existing path, so two runs never share a directory.
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(Self(path)),
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(err),
            }
        }
        Err(std::io::Error::other("no free temporary directory name"))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths() {
        for url in [
            "https://github.com/acme/access-requests.git",
            "file:///tmp/x",
            "ssh://git@host/x",
            "git@github.com:acme/access-requests.git",
        ] {
            assert!(is_url(url), "{url}");
        }
        for path in [".", "/tmp/repo", "../requests", "C:\\repos\\x"] {
            assert!(!is_url(path), "{path}");
        }
    }

    #[test]
    fn temp_dirs_are_distinct_and_removed() {
        let a = TempDir::new().unwrap();
        let b = TempDir::new().unwrap();
        assert_ne!(a.path(), b.path());
        let path = a.path().to_owned();
        std::fs::write(path.join("f"), "x").unwrap();
        drop(a);
        assert!(!path.exists());
    }
}
