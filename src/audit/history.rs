//! The first-parent history of the requests repo's default branch, read with git2 into raw
//! facts: grant merges, revoke (and removal) merges, and request files that landed without
//! the bot. No judgement here; [`super::report`] pairs and flags.
//!
//! Speed matters (the issue asks for no more than twice the time of `git log --first-parent
//! --format=%H%n%B`), so the walk follows first parents by hand instead of a `Revwalk` (which
//! parses and sorts every commit on top of our own read), reads raw commit objects and picks
//! the three header fields it needs instead of having libgit2 parse (and copy) each one, reads
//! nothing but the commit object of a bot merge (its trailers say everything, and the bot
//! checked its tree when it merged it), and loads trees only for the rare other commits.
//!
//! git2 is blocking: async callers run this in `spawn_blocking`.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use git2::{Commit, ObjectType, Oid, Repository, Tree};

use super::AuditError;
use super::trailers::{BotTrailers, Message};

/// Where request files live: `requests/<environment>/<id>.yaml`.
const REQUESTS_DIR: &str = "requests";

/// What the walk found, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    /// The branch that was walked (short name, e.g. `main`).
    pub branch: String,
    /// Its tip; `None` for a branch without commits.
    pub head: Option<Oid>,
    /// Facts in first-parent order, oldest first.
    pub events: Vec<Event>,
}

/// One fact, tied to the first-parent commit it was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The commit's place on the first-parent line, 0 for the oldest: history order even
    /// when committer times go backwards.
    pub position: usize,
    pub commit: Oid,
    /// The commit's committer time (when the merge happened, for the bot's merges).
    pub at: DateTime<Utc>,
    pub kind: EventKind,
}

/// What a first-parent commit says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A merge with a `Breakglass-Request` trailer.
    Grant(GrantFact),
    /// A merge with a `Breakglass-Revokes` trailer.
    Revoke(RevokeFact),
    /// A request file added by a commit that is not the bot's.
    Landed(LandedFact),
}

/// A grant merge's trailers and reason, as written. `None` means the trailer is missing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrantFact {
    pub request_id: String,
    pub requester: Option<String>,
    pub environment: Option<String>,
    pub role: Option<String>,
    /// The body between the title and the trailers, on one line.
    pub reason: String,
    pub ticket: Option<String>,
    pub approved_by: Option<String>,
    pub expires: TrailerTime,
    /// Only fast-path grants have one.
    pub review_due: TrailerTime,
}

/// A revoke or removal merge's trailers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevokeFact {
    pub request_id: String,
    /// `ttl`, `early` or `reconcile` (as written; `None` when missing).
    pub reason: Option<String>,
    pub reviewed_by: Option<String>,
    /// `Breakglass-Expires` on the revoke merge: the expiry in force at the end, after any
    /// `/breakglass extend` (the grant merge only knows the first one).
    pub expires: TrailerTime,
    /// Titled `breakglass: remove …`: the bot removing a request file that landed without it,
    /// rather than ending a grant.
    pub removal: bool,
}

/// A `requests/<environment>/<id>.yaml` file added by a first-parent commit without the bot's
/// trailers (a direct push or a hand merge).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LandedFact {
    pub environment: String,
    pub request_id: String,
    /// The repo-relative path, e.g. `requests/prod/r-1.yaml`.
    pub path: String,
}

/// A time trailer: missing, unreadable (kept as written, for the report), or a UTC time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TrailerTime {
    #[default]
    Missing,
    Invalid(String),
    At(DateTime<Utc>),
}

impl TrailerTime {
    /// Reads an RFC 3339 / ISO 8601 time (the bot writes UTC with a `Z`; any offset is
    /// accepted and converted).
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            None => Self::Missing,
            Some(text) => match DateTime::parse_from_rfc3339(text) {
                Ok(at) => Self::At(at.with_timezone(&Utc)),
                Err(_) => Self::Invalid(text.to_owned()),
            },
        }
    }

    /// The time, when there is a readable one.
    pub fn at(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::At(at) => Some(*at),
            _ => None,
        }
    }
}

/// The branch `HEAD` points to (`main` for `refs/heads/main`).
pub fn head_branch(repo: &Repository) -> Result<String, AuditError> {
    let head = repo.find_reference("HEAD").map_err(AuditError::git)?;
    let target = head.symbolic_target().ok().flatten().ok_or_else(|| {
        AuditError::Branch("HEAD is detached; name the branch with --branch".into())
    })?;
    Ok(target
        .strip_prefix("refs/heads/")
        .or_else(|| target.strip_prefix("refs/remotes/"))
        .unwrap_or(target)
        .to_owned())
}

/// The tip of `branch`: a local branch, else `origin/<branch>`, else a full ref name.
pub fn branch_tip(repo: &Repository, branch: &str) -> Result<Option<Oid>, AuditError> {
    let candidates = [
        format!("refs/heads/{branch}"),
        format!("refs/remotes/origin/{branch}"),
        format!("refs/remotes/{branch}"),
        branch.to_owned(),
    ];
    for name in &candidates {
        match repo.find_reference(name) {
            Ok(reference) => {
                let commit = reference.peel_to_commit().map_err(AuditError::git)?;
                return Ok(Some(commit.id()));
            }
            Err(err) if err.code() == git2::ErrorCode::NotFound => {}
            Err(err) if err.code() == git2::ErrorCode::InvalidSpec => {}
            Err(err) => return Err(AuditError::git(err)),
        }
    }
    // An unborn HEAD branch (a fresh repo) has no commits rather than being missing.
    if let Ok(head) = head_branch(repo)
        && head == branch
        && repo.head().is_err()
    {
        return Ok(None);
    }
    Err(AuditError::Branch(format!(
        "branch `{branch}` not found (looked for {})",
        candidates.join(", ")
    )))
}

/// Walks the first-parent history of `branch`, oldest fact first.
pub fn read(repo: &Repository, branch: &str) -> Result<History, AuditError> {
    if repo.is_shallow() {
        // Missing history would turn every revoke of an old grant into an anomaly.
        return Err(AuditError::Shallow);
    }
    let head = branch_tip(repo, branch)?;
    let odb = repo.odb().map_err(AuditError::git)?;
    let mut events = Vec::new();
    let mut next = head;
    let mut walked = 0usize;
    while let Some(oid) = next {
        // The raw object rather than `find_commit`: libgit2's commit parser copies the
        // header, the message and both signatures into new allocations for every commit,
        // and the walk needs three fields.
        let object = odb.read(oid).map_err(AuditError::git)?;
        if object.kind() != ObjectType::Commit {
            return Err(AuditError::Malformed {
                commit: oid.to_string(),
                what: "not a commit",
            });
        }
        let raw = RawCommit::parse(object.data()).ok_or_else(|| AuditError::Malformed {
            commit: oid.to_string(),
            what: "unreadable commit header",
        })?;
        let before = events.len();
        read_commit(repo, oid, &raw, walked, &mut events)?;
        // A commit may add several request files; keep them in path order once reversed.
        events[before..].reverse();
        next = raw.first_parent;
        walked += 1;
    }
    events.reverse();
    for event in &mut events {
        // Positions were counted from the tip; turn them around so the oldest is 0.
        event.position = walked - 1 - event.position;
    }
    Ok(History {
        branch: branch.to_owned(),
        head,
        events,
    })
}

/// The three things the walk needs from a commit object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RawCommit<'a> {
    first_parent: Option<Oid>,
    /// Committer time, seconds since the epoch.
    committer_time: i64,
    message: &'a [u8],
}

impl<'a> RawCommit<'a> {
    /// Reads a commit object's header (`tree`, `parent`…, `author`, `committer`, and extra
    /// headers such as `gpgsig` whose continuation lines start with a space) and finds the
    /// message after the blank line. `None` when there is no `committer` line.
    fn parse(data: &'a [u8]) -> Option<Self> {
        let mut first_parent = None;
        let mut committer_time = None;
        let mut rest = data;
        loop {
            let (line, after) = match rest.iter().position(|&b| b == b'\n') {
                Some(end) => (&rest[..end], &rest[end + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            rest = after;
            if line.is_empty() {
                break; // the blank line before the message, or the end of the object
            }
            if let Some(hex) = line.strip_prefix(b"parent ") {
                if first_parent.is_none() {
                    first_parent = Some(Oid::from_str(std::str::from_utf8(hex).ok()?).ok()?);
                }
            } else if let Some(signature) = line.strip_prefix(b"committer ") {
                // `Name <email> 1700000000 +0000`: the time follows the last `>`.
                let end_of_email = signature.iter().rposition(|&b| b == b'>')?;
                let tail = std::str::from_utf8(&signature[end_of_email + 1..]).ok()?;
                committer_time = Some(tail.split_whitespace().next()?.parse().ok()?);
            }
            if rest.is_empty() {
                break;
            }
        }
        Some(Self {
            first_parent,
            committer_time: committer_time?,
            message: rest,
        })
    }
}

fn read_commit(
    repo: &Repository,
    oid: Oid,
    commit: &RawCommit<'_>,
    from_tip: usize,
    events: &mut Vec<Event>,
) -> Result<(), AuditError> {
    let text = match std::str::from_utf8(commit.message) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(commit.message),
    };
    let message = Message::parse(&text);
    let bot = BotTrailers::from_message(&message);
    let at = DateTime::from_timestamp(commit.committer_time, 0).unwrap_or(DateTime::UNIX_EPOCH);
    let event = |kind| Event {
        position: from_tip,
        commit: oid,
        at,
        kind,
    };
    let owned = |value: Option<Cow<'_, str>>| value.map(Cow::into_owned);
    if let Some(request_id) = bot.request {
        events.push(event(EventKind::Grant(GrantFact {
            request_id: request_id.into_owned(),
            requester: owned(bot.requester),
            environment: owned(bot.environment),
            role: owned(bot.role),
            reason: message.body().into_owned(),
            ticket: owned(bot.ticket),
            approved_by: owned(bot.approved_by),
            expires: TrailerTime::parse(bot.expires.as_deref()),
            review_due: TrailerTime::parse(bot.review_due.as_deref()),
        })));
    } else if let Some(request_id) = bot.revokes {
        events.push(event(EventKind::Revoke(RevokeFact {
            request_id: request_id.into_owned(),
            reason: owned(bot.revoked_reason),
            reviewed_by: owned(bot.reviewed_by.clone()),
            expires: TrailerTime::parse(bot.expires.as_deref()),
            removal: message.subject().starts_with("breakglass: remove "),
        })));
    } else {
        // Not a bot merge (a partial set of Breakglass- trailers does not make one): look
        // for request files it added. Only these commits cost a commit parse and tree reads.
        let commit = repo.find_commit(oid).map_err(AuditError::git)?;
        for landed in added_request_files(repo, &commit)? {
            events.push(event(EventKind::Landed(landed)));
        }
    }
    Ok(())
}

/// Request files that `commit` adds compared with its first parent (all of them for a root
/// commit). Only `requests/` is compared, subtree by subtree, so an unchanged `requests/`
/// costs two tree reads.
fn added_request_files(
    repo: &Repository,
    commit: &Commit<'_>,
) -> Result<Vec<LandedFact>, AuditError> {
    let git = AuditError::git;
    let Some(new) = subtree(repo, &commit.tree().map_err(git)?, REQUESTS_DIR)? else {
        return Ok(Vec::new());
    };
    let old = match commit.parent(0) {
        Ok(parent) => subtree(repo, &parent.tree().map_err(git)?, REQUESTS_DIR)?,
        Err(_) => None,
    };
    if old.as_ref().is_some_and(|old| old.id() == new.id()) {
        return Ok(Vec::new());
    }
    let mut added = Vec::new();
    for env_entry in new.iter() {
        let Ok(environment) = env_entry.name() else {
            continue;
        };
        if env_entry.kind() != Some(ObjectType::Tree) {
            continue;
        }
        let old_env = match &old {
            Some(old) => subtree(repo, old, environment)?,
            None => None,
        };
        if old_env.as_ref().map(Tree::id) == Some(env_entry.id()) {
            continue;
        }
        let files = repo.find_tree(env_entry.id()).map_err(git)?;
        for file in files.iter() {
            let (Ok(name), Some(ObjectType::Blob)) = (file.name(), file.kind()) else {
                continue;
            };
            // Any YAML file counts, valid request name or not: an audit flags more, not less.
            let Some(id) = name
                .strip_suffix(".yaml")
                .or_else(|| name.strip_suffix(".yml"))
                .filter(|id| !id.is_empty())
            else {
                continue;
            };
            if old_env
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

    const TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
    const P1: &str = "1111111111111111111111111111111111111111";
    const P2: &str = "2222222222222222222222222222222222222222";

    #[test]
    fn reads_a_merge_commit_header() {
        let data = format!(
            "tree {TREE}\nparent {P1}\nparent {P2}\nauthor A <a@x> 1 +0000\ncommitter GitHub <noreply@github.com> 1764123240 +0100\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n abc\n -----END PGP SIGNATURE-----\n\ntitle\n\nbody\n"
        );
        let raw = RawCommit::parse(data.as_bytes()).unwrap();
        assert_eq!(raw.first_parent, Some(Oid::from_str(P1).unwrap()));
        assert_eq!(raw.committer_time, 1_764_123_240);
        assert_eq!(raw.message, b"title\n\nbody\n");
    }

    #[test]
    fn root_commits_and_odd_headers() {
        let data = format!("tree {TREE}\nauthor A <a@x> 1 +0000\ncommitter C <c@x> 7 +0000\n\n");
        let raw = RawCommit::parse(data.as_bytes()).unwrap();
        assert_eq!((raw.first_parent, raw.committer_time), (None, 7));
        assert_eq!(raw.message, b"");
        let no_message = format!("tree {TREE}\ncommitter C <c@x> 7 +0000");
        assert_eq!(
            RawCommit::parse(no_message.as_bytes()).unwrap().message,
            b""
        );
        // A `>` in the name does not confuse the time.
        let data = "committer A>B <c@x> 9 +0000\n\nm";
        assert_eq!(RawCommit::parse(data.as_bytes()).unwrap().committer_time, 9);
        for broken in [
            "",
            "tree x\n\nmessage",
            "committer C <c@x> soon +0000\n\n",
            "parent nothex\ncommitter C <c@x> 7 +0000\n\n",
            "committer no email 7\n\n",
        ] {
            assert_eq!(RawCommit::parse(broken.as_bytes()), None, "{broken:?}");
        }
    }
}
