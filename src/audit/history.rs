//! The first-parent history of the requests repo's default branch, read with git2 into raw
//! facts: grant merges, revoke (and removal) merges, and request and grant files that landed
//! without the bot. No judgement here; [`super::report`] pairs and flags.
//!
//! Trailers are only a claim: a grant merge must add its request file and a revoke merge
//! must remove it (see [`super::files`]), else the commit is a [`ForgedFact`] and counts as
//! neither. A grant merge that carries only the four trailers the spec fixes takes its
//! environment and role from the file it adds.
//!
//! Speed matters (the issue asks for no more than twice the time of `git log --first-parent
//! --format=%H%n%B`), so the walk follows first parents by hand instead of a `Revwalk` (which
//! parses and sorts every commit on top of our own read), reads raw commit objects and picks
//! the four header fields it needs instead of having libgit2 parse (and copy) each one, reads
//! each first parent once (it is both the next commit of the walk and the base a merge is
//! checked against), checks a bot merge with path lookups rather than a diff, and switches
//! libgit2's object cache off while it walks (it would keep all of the history in memory for
//! nothing: see `ObjectCacheOff`).
//!
//! git2 is blocking: async callers run this in `spawn_blocking`.

use std::borrow::Cow;
use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};
use git2::{ObjectType, Odb, OdbObject, Oid, Repository};

use super::AuditError;
use super::files::{
    REQUESTS_DIR, RequestFile, RequestTrees, TreeReader, changed_files, files_appearing_under,
    files_differing_under,
};
use super::grants::{GrantLayout, PolicyVersions};
use super::trailers::{BotTrailers, Message, TrailerKey};
use crate::duration::HumanDuration;
use crate::request::AccessRequest;

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
    /// A request or grant file added by a commit that is not the bot's.
    Landed(LandedFact),
    /// The grant files that a reconcile removal of the bot deletes (its request file, when
    /// there is one, makes it a [`EventKind::Revoke`] too).
    Removal(RemovalFact),
    /// A commit whose trailers claim a grant or a revoke that its files do not show.
    Forged(ForgedFact),
    /// A commit with a grant's or a revoke's trailers that only a hand merge on the line
    /// reaches (its position is that merge's): what a push putting another line first hides.
    OffLine(OffLineFact),
}

/// A grant merge's trailers and reason, as written. `None` means the trailer is missing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrantFact {
    pub request_id: String,
    pub requester: Option<String>,
    /// `Breakglass-Environment`, else the directory of the request file the merge adds.
    pub environment: Option<String>,
    /// `Breakglass-Role`, else the `role:` of the request file the merge adds.
    pub role: Option<String>,
    /// Why the role is unknown when neither the trailer nor the request file gives it (the
    /// file's path and its parse error).
    pub role_unreadable: Option<String>,
    /// Why access was asked for, on one line: the merge message's body (between the title and
    /// the trailers), where the bot writes the reason of the request it merges; when the
    /// message has none (a grant merge with only SPEC's four trailers), the `reason:` of the
    /// request file the merge adds, since that file is what was approved. When both exist the
    /// message's wins: on a bot merge they are the same text, written from that file, and
    /// reading every grant's file to compare them would cost a blob per grant.
    pub reason: String,
    pub ticket: Option<String>,
    pub approved_by: Option<String>,
    pub expires: TrailerTime,
    /// Only fast-path grants have one.
    pub review_due: TrailerTime,
    /// How long the grant was for, as the bot counted it: the `for <duration>` of the bot's
    /// title (`breakglass: grant <id> (<env>/<role> for 1h to <login>)`, the policy's default
    /// included), else the `duration:` of the request file the merge adds. With `expires`
    /// (both on the bot's clock) it says when the bot granted, which the audit needs to tell
    /// the forge's clock from the bot's (see [`super::report`]).
    pub duration: Option<TimeDelta>,
}

/// A revoke or removal merge's trailers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevokeFact {
    pub request_id: String,
    /// `ttl`, `early` or `reconcile` (as written; `None` when missing).
    pub reason: Option<String>,
    /// `Breakglass-Revoked-By`: who asked for an early revoke.
    pub revoked_by: Option<String>,
    pub reviewed_by: Option<String>,
    /// `Breakglass-Expires` on the revoke merge: the expiry in force at the end, after any
    /// `/breakglass extend` (the grant merge only knows the first one).
    pub expires: TrailerTime,
    /// Titled `breakglass: remove …`: the bot removing a request file that landed without it,
    /// rather than ending a grant.
    pub removal: bool,
    /// The directory of the request file the commit removes: a revoke ends the grant of that
    /// id in that environment only (a removal of `requests/staging/r1.yaml` ends no grant of
    /// `requests/prod/r1.yaml`).
    pub environment: Option<String>,
}

/// A `requests/<environment>/<id>.yaml` file, or a file under a grant root (see
/// [`super::grants`]), added or changed by a first-parent commit that is not a genuine bot
/// merge (a direct push, a hand merge, forged trailers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LandedFact {
    pub file: LandedFile,
    /// A request file's directory; the environment a grant file's path names, if any.
    pub environment: Option<String>,
    /// A request file's stem; a grant file's name up to its first `.`.
    pub request_id: String,
    /// The repo-relative path, e.g. `requests/prod/r-1.yaml` or `grants/network/evil.tf`.
    pub path: String,
    /// Changed in place rather than added: a granted file edited by hand (its role widened,
    /// a policy attached) is what the IaC pipeline then applies.
    pub modified: bool,
}

/// What kind of file landed without the bot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LandedFile {
    /// `requests/<environment>/<id>.yaml` (or `.yml`): what `requests/` says is granted.
    Request,
    /// A file under a grant root: what the repo's IaC pipeline applies.
    Grant,
    /// Any other file under `requests/` (at its top, one directory too deep, not YAML): no
    /// request, but the bot takes it out, as everything there that it did not put there.
    Stray,
}

/// A reconcile removal merge of the bot (titled `breakglass: remove …`): the files under the
/// grant roots it deletes. The bot groups files that landed without it by request and gives a
/// group without a request file no trailers, so this is how the audit tells what became of a
/// grant file that landed: by its exact path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemovalFact {
    /// Repo-relative paths, sorted.
    pub paths: Vec<String>,
}

/// A commit with `Breakglass-Request` that does not add that request file, or with
/// `Breakglass-Revokes` that does not remove it. It counts as neither a grant nor a revoke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForgedFact {
    pub request_id: String,
    /// What the trailers claim.
    pub claim: Claim,
    /// What the trailers say and what the files show, as a sentence.
    pub detail: String,
}

/// A commit whose `Breakglass-Request` or `Breakglass-Revokes` trailer claims a grant or a
/// revoke, off the first-parent line: a merge that is not the bot's reaches it through a
/// parent other than its first. The bot merges only into the default branch, so each of its
/// merges stays on that branch's first-parent line; one found elsewhere was put aside by a
/// push (a fast-forward to `merge(older line, main)`, a "foxtrot") or never landed through the
/// bot. It counts as neither a grant nor a revoke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffLineFact {
    pub request_id: String,
    pub claim: Claim,
    /// The merge on the line whose other parent reaches it.
    pub merge: Oid,
}

/// What a commit's trailers claim it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    Grant,
    Revoke,
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

/// Walks the first-parent history of `branch`, oldest fact first; the grant roots come from
/// the policies in `policies_dir` at its tip.
pub fn read(repo: &Repository, branch: &str, policies_dir: &str) -> Result<History, AuditError> {
    if repo.is_shallow() {
        // Missing history would turn every revoke of an old grant into an anomaly.
        return Err(AuditError::Shallow);
    }
    let head = branch_tip(repo, branch)?;
    let _cache_off = ObjectCacheOff::new();
    let odb = repo.odb().map_err(AuditError::git)?;
    let trees = TreeReader::new(&odb);
    let mut current = head.map(|oid| read_commit_object(&odb, oid)).transpose()?;
    // The tip's policies give the roots the walk looks under; the versions met on the way
    // are noted as it goes (the tip's again, read once).
    let mut policies = PolicyVersions::new(repo, policies_dir);
    let policies_path = policies.dir();
    if let Some((oid, object)) = &current
        && let Some(tree) = trees.tree_at(parse_commit(*oid, object)?.tree, &policies_path)?
    {
        policies.note(tree);
    }
    let grants = policies.layout();
    let walk = Walk {
        repo,
        trees: &trees,
        grants: &grants,
    };
    let mut events = Vec::new();
    let mut walked = 0usize;
    // The line, tip first, and its merges that are not the bot's: what they reach through
    // their other parents is read once the whole line is known.
    let mut line = Vec::new();
    let mut hand_merges = Vec::new();
    let mut by_hand = Vec::new();
    while let Some((oid, object)) = current.take() {
        let raw = parse_commit(oid, &object)?;
        // The first parent is both the base this commit is checked against and the next
        // commit of the walk: read once, for both.
        let parent = raw
            .first_parent
            .map(|parent| read_commit_object(&odb, parent))
            .transpose()?;
        let base = match &parent {
            Some((parent, object)) => Some(parse_commit(*parent, object)?.tree),
            None => None,
        };
        let before = events.len();
        let bots = read_commit(&walk, oid, &raw, base, walked, &mut events)?;
        // A commit may add several request files; keep them in path order once reversed.
        events[before..].reverse();
        if let Some(tree) = trees.tree_at(raw.tree, &policies_path)? {
            policies.note(tree);
        }
        if !bots {
            by_hand.push(ByHand {
                from_tip: walked,
                oid,
                tree: raw.tree,
                base,
                time: raw.committer_time,
            });
        }
        line.push(oid);
        if raw.merge && !bots {
            hand_merges.push((walked, oid));
        }
        current = parent;
        walked += 1;
    }
    events.reverse();
    events.extend(off_line_claims(&odb, &line, &hand_merges)?);
    events.extend(landed_under_dropped_roots(&walk, &policies, &by_hand)?);
    for event in &mut events {
        // Positions were counted from the tip; turn them around so the oldest is 0.
        event.position = walked - 1 - event.position;
    }
    // Stable: each commit's own facts keep their order, the off-line claims follow their merge's.
    events.sort_by_key(|event| event.position);
    Ok(History {
        branch: branch.to_owned(),
        head,
        events,
    })
}

/// libgit2's object cache, switched off for as long as this lives. It keeps every object
/// read until the repository is freed; the walk reads each commit once (it carries the first
/// parent over to the next step) and keeps the few trees it reads again itself, so the cache
/// would only cost time to fill and to free. The switch is process-wide and has no getter:
/// it goes back to libgit2's default, on, afterwards. Caching never changes what is read,
/// only how fast.
struct ObjectCacheOff;

impl ObjectCacheOff {
    fn new() -> Self {
        git2::opts::enable_caching(false);
        Self
    }
}

impl Drop for ObjectCacheOff {
    fn drop(&mut self) {
        git2::opts::enable_caching(true);
    }
}

/// The raw object of a commit. Raw rather than `find_commit`: libgit2's commit parser copies
/// the header, the message and both signatures into new allocations for every commit, and
/// the walk needs four fields.
fn read_commit_object<'o>(odb: &'o Odb<'_>, oid: Oid) -> Result<(Oid, OdbObject<'o>), AuditError> {
    let object = odb.read(oid).map_err(AuditError::git)?;
    if object.kind() != ObjectType::Commit {
        return Err(AuditError::Malformed {
            commit: oid.to_string(),
            what: "not a commit",
        });
    }
    Ok((oid, object))
}

/// [`RawCommit::parse`], with the tree a commit cannot do without.
fn parse_commit<'a>(oid: Oid, object: &'a OdbObject<'_>) -> Result<Commit<'a>, AuditError> {
    let malformed = |what| AuditError::Malformed {
        commit: oid.to_string(),
        what,
    };
    let raw =
        RawCommit::parse(object.data()).ok_or_else(|| malformed("unreadable commit header"))?;
    Ok(Commit {
        tree: raw.tree.ok_or_else(|| malformed("no tree"))?,
        first_parent: raw.first_parent,
        merge: raw.merge,
        committer_time: raw.committer_time,
        message: raw.message,
    })
}

/// What the walk needs from a commit object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Commit<'a> {
    tree: Oid,
    first_parent: Option<Oid>,
    /// It has a second parent: the bot's merges all do.
    merge: bool,
    /// Committer time, seconds since the epoch.
    committer_time: i64,
    message: &'a [u8],
}

/// A commit object's header fields as found, before the walk insists on a tree. Crate-visible
/// for [`crate::fuzzing`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawCommit<'a> {
    pub(crate) tree: Option<Oid>,
    pub(crate) first_parent: Option<Oid>,
    /// A second `parent` line follows the first.
    pub(crate) merge: bool,
    /// Committer time, seconds since the epoch.
    pub(crate) committer_time: i64,
    pub(crate) message: &'a [u8],
}

impl<'a> RawCommit<'a> {
    /// Reads a commit object's header (`tree`, `parent`…, `author`, `committer`, and extra
    /// headers such as `gpgsig` whose continuation lines start with a space) and finds the
    /// message after the blank line. `None` when there is no `committer` line.
    pub(crate) fn parse(data: &'a [u8]) -> Option<Self> {
        let mut tree = None;
        let mut first_parent = None;
        let mut merge = false;
        let mut committer_time = None;
        // Git reads parents only in the lines right after `tree`; a `parent` line further
        // down is an extra header it ignores (and fsck lets through), so it is no parent here
        // either: counted, it made a one-parent commit a "merge", or named a missing object.
        let mut parents_open = false;
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
            let parent = line.strip_prefix(b"parent ").filter(|_| parents_open);
            parents_open = false;
            if let Some(hex) = line.strip_prefix(b"tree ") {
                if tree.is_none() {
                    tree = Some(oid_of(hex)?);
                    parents_open = true;
                }
            } else if let Some(hex) = parent {
                parents_open = true;
                if first_parent.is_none() {
                    first_parent = Some(oid_of(hex)?);
                } else {
                    merge = true;
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
            tree,
            first_parent,
            merge,
            committer_time: committer_time?,
            message: rest,
        })
    }
}

fn oid_of(hex: &[u8]) -> Option<Oid> {
    Oid::from_str(std::str::from_utf8(hex).ok()?).ok()
}

/// What the walk reads with, besides the commits.
/// A first-parent commit that is not a genuine bot merge, as the walk met it.
struct ByHand {
    from_tip: usize,
    oid: Oid,
    tree: Oid,
    base: Option<Oid>,
    time: i64,
}

/// What commits not the bot's added or changed under the grant roots that only an older
/// version of the policies named (a role dropped since: its files may still be there, and the
/// pipeline may still apply them); the walk itself looked under the tip's roots.
fn landed_under_dropped_roots(
    walk: &Walk<'_, '_>,
    versions: &PolicyVersions<'_>,
    by_hand: &[ByHand],
) -> Result<Vec<Event>, AuditError> {
    let all = versions.layout();
    let tip = walk.grants.roots();
    let dropped: Vec<Vec<String>> = all
        .roots()
        .iter()
        .filter(|root| !tip.contains(root))
        .cloned()
        .collect();
    if dropped.is_empty() {
        return Ok(Vec::new());
    }
    // A dropped root may hold a root of the tip's, whose files the walk has flagged already.
    let under_the_tips = |path: &str| {
        let parts: Vec<&str> = path.split('/').collect();
        tip.iter()
            .any(|root| parts.len() > root.len() && root.iter().zip(&parts).all(|(r, p)| r == p))
    };
    let mut events = Vec::new();
    for commit in by_hand {
        let found = files_differing_under(walk.trees, commit.base, Some(commit.tree), &dropped)?;
        let at = DateTime::from_timestamp(commit.time, 0).unwrap_or(DateTime::UNIX_EPOCH);
        let added = found.added.into_iter().map(|path| (path, false));
        let files = added.chain(found.changed.into_iter().map(|path| (path, true)));
        for (path, modified) in files.filter(|(path, _)| !under_the_tips(path)) {
            events.push(Event {
                position: commit.from_tip,
                commit: commit.oid,
                at,
                kind: EventKind::Landed(LandedFact {
                    modified,
                    ..all.landed(path)
                }),
            });
        }
    }
    Ok(events)
}

struct Walk<'w, 'a> {
    repo: &'w Repository,
    trees: &'w TreeReader<'a>,
    /// Where grant files live, from the policies at the branch's tip.
    grants: &'w GrantLayout,
}

/// The facts of one first-parent commit: its grant or revoke when its files bear the
/// trailers out, else a forged claim; for every commit that is not a genuine bot merge, the
/// request and grant files it adds; and for a reconcile removal, the grant files it deletes.
/// `base` is its first parent's tree. `true` when it is a genuine grant or revoke merge (its
/// trailers borne out by its files), whose other parent the walk need not follow: the bot's
/// own branch or the requester's, checked when merged. A merge taken for the bot's removal by
/// its title alone is followed like any hand merge: a title is no proof (a "foxtrot" so titled
/// hid the grants behind it).
fn read_commit(
    walk: &Walk<'_, '_>,
    oid: Oid,
    commit: &Commit<'_>,
    base: Option<Oid>,
    from_tip: usize,
    events: &mut Vec<Event>,
) -> Result<bool, AuditError> {
    let text = match std::str::from_utf8(commit.message) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(commit.message),
    };
    let message = Message::parse(&text);
    let bot = BotTrailers::from_message(&message);
    let trailerless = !bot.any;
    let at = DateTime::from_timestamp(commit.committer_time, 0).unwrap_or(DateTime::UNIX_EPOCH);
    let event = |kind| Event {
        position: from_tip,
        commit: oid,
        at,
        kind,
    };
    let files = RequestTrees::read(walk.trees, commit.tree, base)?;
    let claimed = if bot.request.is_some() {
        Some(grant(walk.repo, &files, bot, &message)?)
    } else if bot.revokes.is_some() {
        Some(revoke(&files, bot, &message)?)
    } else {
        // A partial set of Breakglass- trailers does not make a bot merge.
        None
    };
    let claimed = claimed.map(|kind| merged_or_forged(kind, commit.merge));
    let claimed = match (claimed, base) {
        (Some(kind), Some(base)) => Some(beyond_its_files(walk, kind, base, commit.tree)?),
        (claimed, _) => claimed,
    };
    // Files added by a commit that is not a genuine bot merge landed without the bot, forged
    // trailers or not. A genuine merge is not diffed: the bot checked its files when merging.
    let genuine = matches!(claimed, Some(EventKind::Grant(_) | EventKind::Revoke(_)));
    let removal = match &claimed {
        Some(claim) => is_reconcile_removal(claim),
        None => trailerless && commit.merge && is_removal_title(message.subject()),
    };
    if let Some(kind) = claimed {
        events.push(event(kind));
    }
    if !genuine {
        let landed = landed_files(walk, &files, commit.tree, base)?;
        events.extend(
            landed
                .into_iter()
                .map(|fact| event(EventKind::Landed(fact))),
        );
    }
    if removal {
        let removed = removed_grant_files(walk, commit.tree, base)?;
        events.extend(removed.map(|fact| event(EventKind::Removal(fact))));
    }
    Ok(genuine)
}

/// The claims of the commits that only the hand merges reach: from each merge's other
/// parents, every ancestor that is not on the line, oldest merge first (a commit two of them
/// reach is told under the one that first put it aside), each merge's by committer time.
/// Positions count from the tip, as in the walk. Reads nothing when the line has no hand merge (every merge the bot's).
fn off_line_claims(
    odb: &Odb<'_>,
    line: &[Oid],
    hand_merges: &[(usize, Oid)],
) -> Result<Vec<Event>, AuditError> {
    let mut claims = Vec::new();
    if hand_merges.is_empty() {
        return Ok(claims);
    }
    let on_line: HashSet<Oid> = line.iter().copied().collect();
    let mut seen = HashSet::new();
    for &(from_tip, merge) in hand_merges.iter().rev() {
        let first = claims.len();
        let (_, object) = read_commit_object(odb, merge)?;
        let mut next: Vec<Oid> = parents(object.data()).skip(1).collect();
        while let Some(oid) = next.pop() {
            if on_line.contains(&oid) || !seen.insert(oid) {
                continue;
            }
            let (_, object) = read_commit_object(odb, oid)?;
            let commit = parse_commit(oid, &object)?;
            if let Some(fact) = off_line_claim(&commit, merge) {
                claims.push(Event {
                    position: from_tip,
                    commit: oid,
                    at: DateTime::from_timestamp(commit.committer_time, 0)
                        .unwrap_or(DateTime::UNIX_EPOCH),
                    kind: EventKind::OffLine(fact),
                });
            }
            next.extend(parents(object.data()));
        }
        // Found newest first, mostly; told oldest first.
        claims[first..].sort_by_key(|event| event.at);
    }
    Ok(claims)
}

/// What an off-line commit's trailers claim, if they claim a grant or a revoke.
fn off_line_claim(commit: &Commit<'_>, merge: Oid) -> Option<OffLineFact> {
    let text = String::from_utf8_lossy(commit.message);
    let message = Message::parse(&text);
    let bot = BotTrailers::from_message(&message);
    let (request_id, claim) = match (bot.request, bot.revokes) {
        (Some(id), _) => (id, Claim::Grant),
        (None, Some(id)) => (id, Claim::Revoke),
        (None, None) => return None,
    };
    Some(OffLineFact {
        request_id: request_id.into_owned(),
        claim,
        merge,
    })
}

/// Every `parent` of a commit object, in order (the header's `parent` lines).
fn parents(data: &[u8]) -> impl Iterator<Item = Oid> + '_ {
    // Only the lines right after `tree` (see `RawCommit::parse`).
    data.split(|&b| b == b'\n')
        .skip_while(|line| !line.starts_with(b"tree "))
        .skip(1)
        .map_while(|line| line.strip_prefix(b"parent "))
        .filter_map(oid_of)
}

/// The request files, then any other file under `requests/`, then the grant files, that the
/// commit of root tree `tree` adds; then those it changes in place, in the same order.
fn landed_files(
    walk: &Walk<'_, '_>,
    files: &RequestTrees<'_, '_>,
    tree: Oid,
    base: Option<Oid>,
) -> Result<Vec<LandedFact>, AuditError> {
    let mut landed = files.all_added()?;
    let requests = files_differing_under(walk.trees, base, Some(tree), &requests_root())?;
    let strays: Vec<String> = requests
        .added
        .into_iter()
        .filter(|path| !landed.iter().any(|fact| &fact.path == path))
        .collect();
    landed.extend(strays.into_iter().map(stray));
    let grants = files_differing_under(walk.trees, base, Some(tree), walk.grants.roots())?;
    landed.extend(
        grants
            .added
            .into_iter()
            .map(|path| walk.grants.landed(path)),
    );
    let changed = requests.changed.into_iter().map(under_requests);
    let changed = changed.chain(grants.changed.into_iter().map(|p| walk.grants.landed(p)));
    landed.extend(changed.map(|fact| LandedFact {
        modified: true,
        ..fact
    }));
    Ok(landed)
}

/// The fact of a file under `requests/`: a request file when it is
/// `requests/<environment>/<id>.yaml` (or `.yml`), else a stray.
fn under_requests(path: String) -> LandedFact {
    let parts: Vec<&str> = path.split('/').collect();
    match parts[..] {
        [_, environment, name] => match super::files::yaml_stem(name) {
            Some(id) => LandedFact {
                file: LandedFile::Request,
                environment: Some(environment.to_owned()),
                request_id: id.to_owned(),
                path: path.clone(),
                modified: false,
            },
            None => stray(path),
        },
        _ => stray(path),
    }
}

/// `requests/` as a root for [`files_appearing_under`].
fn requests_root() -> [Vec<String>; 1] {
    [vec![super::files::REQUESTS_DIR.to_owned()]]
}

/// The fact of a file under `requests/` that is not `requests/<environment>/<id>.yaml`: named
/// by its file name up to the first `.`, in no environment (an audit hides nothing it cannot
/// place).
fn stray(path: String) -> LandedFact {
    let name = path.rsplit('/').next().unwrap_or(&path);
    LandedFact {
        file: LandedFile::Stray,
        environment: None,
        request_id: name.split('.').next().unwrap_or(name).to_owned(),
        path,
        modified: false,
    }
}

/// The grant files, and the files under `requests/` other than request files, that the commit
/// of root tree `tree` deletes, when it deletes any.
fn removed_grant_files(
    walk: &Walk<'_, '_>,
    tree: Oid,
    base: Option<Oid>,
) -> Result<Option<RemovalFact>, AuditError> {
    let mut paths = files_appearing_under(walk.trees, Some(tree), base, walk.grants.roots())?;
    let requests = files_appearing_under(walk.trees, Some(tree), base, &requests_root())?;
    paths.extend(requests);
    paths.sort();
    Ok((!paths.is_empty()).then_some(RemovalFact { paths }))
}

/// The title of every removal merge of the bot, and what makes a revoke merge a removal.
const REMOVAL_TITLE: &str = "breakglass: remove ";

/// A genuine revoke merge that is a reconcile removal (it removed a request file that landed
/// without the bot, and may remove grant files with it).
fn is_reconcile_removal(claim: &EventKind) -> bool {
    matches!(claim, EventKind::Revoke(fact) if fact.removal && fact.reason.as_deref() == Some("reconcile"))
}

/// `breakglass: remove <subject> (reconcile)`: the bot's title for the merge that removes files
/// that landed without it. Only grant files, with no request file among them, get no
/// trailers, so a trailerless merge commit so titled is read as the bot's removal of them. Its
/// deletions are real whoever wrote the title; what it adds is still checked as any commit's.
fn is_removal_title(subject: &str) -> bool {
    subject.starts_with(REMOVAL_TITLE) && subject.ends_with(" (reconcile)")
}

/// How many of the files a claimed grant or revoke merge changes beyond its own are named.
const STRAY_NAMED: usize = 8;

/// A grant or revoke merge that changes files beyond its request's own (its request file and
/// the grant files named after it: all the bot's merge guard lets through) is no merge of the
/// bot's: its trailers are forged, and what it adds counts as landed without the bot. A
/// person's merge titled and trailed like the bot's can otherwise carry another request file
/// or a policy change past the audit.
fn beyond_its_files(
    walk: &Walk<'_, '_>,
    kind: EventKind,
    base: Oid,
    tree: Oid,
) -> Result<EventKind, AuditError> {
    let (request_id, claim, key) = match &kind {
        EventKind::Grant(fact) => (&fact.request_id, Claim::Grant, TrailerKey::Request),
        EventKind::Revoke(fact) => (&fact.request_id, Claim::Revoke, TrailerKey::Revokes),
        _ => return Ok(kind),
    };
    let removal = is_reconcile_removal(&kind);
    // One more than named, so that the detail can say there were more.
    let changed = changed_files(walk.trees, base, tree, 4 * STRAY_NAMED)?;
    let stray: Vec<String> = changed
        .into_iter()
        .filter(|path| {
            let own = is_own_file(walk.grants, request_id, path)
                || (removal && is_stray_named_after(request_id, path));
            !own
        })
        .collect();
    if stray.is_empty() {
        return Ok(kind);
    }
    let mut named: Vec<String> = stray
        .iter()
        .take(STRAY_NAMED)
        .map(|p| format!("`{}`", p.escape_debug()))
        .collect();
    if stray.len() > STRAY_NAMED {
        named.push("and more".into());
    }
    Ok(EventKind::Forged(ForgedFact {
        request_id: request_id.clone(),
        claim,
        detail: format!(
            "{key}: {request_id}, but the merge also changes {}: a merge of breakglass's changes only that request's files",
            named.join(", ")
        ),
    }))
}

/// Whether `path` is request `id`'s own: its request file (also as `.yml`, which the bot's
/// removal of one that landed without it deletes), or a file under a grant root named after
/// it (`<id>` and an extension, as `{{ id }}.tf` renders).
fn is_own_file(grants: &GrantLayout, id: &str, path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    if let [REQUESTS_DIR, _, file] = parts.as_slice()
        && [".yaml", ".yml"]
            .iter()
            .any(|ext| file.strip_suffix(ext) == Some(id))
    {
        return true;
    }
    // Below a grant root, a directory or file named after it (`{{ id }}.tf`, or
    // `{{ id }}/main.tf`): what the bot's removals take as the request's too.
    let named = |part: &&str| {
        part.strip_prefix(id)
            .is_some_and(|ext| ext.is_empty() || ext.starts_with('.'))
    };
    grants.roots().iter().any(|root| {
        parts.len() > root.len()
            && parts.iter().zip(root).all(|(part, dir)| part == dir)
            && parts[root.len()..].iter().any(named)
    })
}

/// Whether `path` is a file under `requests/` that is no request file but named after request
/// `id` (a directory or file so named up to its first `.`: `requests/r-1.yaml`,
/// `requests/prod/r-1.txt`, `requests/r-1/x.yaml`): the bot's removal of files that landed
/// without it takes such a file out with the request's own.
fn is_stray_named_after(id: &str, path: &str) -> bool {
    let Some(inside) = path
        .strip_prefix(REQUESTS_DIR)
        .and_then(|p| p.strip_prefix('/'))
    else {
        return false;
    };
    inside
        .split('/')
        .any(|part| part.split('.').next() == Some(id))
}

/// The bot lands every grant and revoke with a merge commit, never a squash or a direct
/// push: a commit with one parent whose trailers and files bear a claim out is still forged
/// (its request file then counts as landed without the bot).
fn merged_or_forged(kind: EventKind, merge: bool) -> EventKind {
    let (request_id, claim, key) = match &kind {
        _ if merge => return kind,
        EventKind::Grant(fact) => (&fact.request_id, Claim::Grant, TrailerKey::Request),
        EventKind::Revoke(fact) => (&fact.request_id, Claim::Revoke, TrailerKey::Revokes),
        EventKind::Landed(_)
        | EventKind::Forged(_)
        | EventKind::Removal(_)
        | EventKind::OffLine(_) => return kind,
    };
    EventKind::Forged(ForgedFact {
        request_id: request_id.clone(),
        claim,
        detail: format!(
            "{key}: {request_id} on a commit with one parent, but breakglass lands every grant and revoke with a merge commit"
        ),
    })
}

/// A commit with `Breakglass-Request`: a grant when it adds that request file (in the
/// `Breakglass-Environment` directory when the trailer is there), whose environment and role
/// default to the file's; forged otherwise.
fn grant(
    repo: &Repository,
    files: &RequestTrees<'_, '_>,
    bot: BotTrailers<'_>,
    message: &Message<'_>,
) -> Result<EventKind, AuditError> {
    let owned = |value: Option<Cow<'_, str>>| value.map(Cow::into_owned);
    let request_id = bot.request.as_deref().unwrap_or_default().to_owned();
    let name = format!("{request_id}.yaml");
    let Some(file) = files.added(bot.environment.as_deref(), &[&name])? else {
        let detail = forged_grant(files, &request_id, bot.environment.as_deref(), &name)?;
        return Ok(EventKind::Forged(ForgedFact {
            request_id,
            claim: Claim::Grant,
            detail,
        }));
    };
    // A merge with only the four trailers SPEC fixes: role, ticket and reason from its file,
    // as is the duration when the title does not give it.
    let body = message.body();
    let title_duration = duration_in_title(message.subject());
    let needs_file = bot.role.is_none() || body.is_empty() || title_duration.is_none();
    let from_file = if needs_file {
        read_request(repo, &file)?
    } else {
        FromFile::default()
    };
    let (role, role_unreadable) = match bot.role {
        Some(role) => (Some(role.into_owned()), None),
        None => (from_file.role, from_file.role_unreadable),
    };
    let reason = if body.is_empty() {
        from_file.reason.unwrap_or_default()
    } else {
        // The word joiners the bot puts in to keep references inert are not the reason's.
        body.replace(crate::comment::WORD_JOINER, "")
    };
    Ok(EventKind::Grant(GrantFact {
        request_id,
        requester: owned(bot.requester),
        environment: Some(owned(bot.environment).unwrap_or(file.environment)),
        role,
        role_unreadable,
        reason,
        ticket: owned(bot.ticket).or(from_file.ticket),
        approved_by: owned(bot.approved_by),
        expires: TrailerTime::parse(bot.expires.as_deref()),
        review_due: TrailerTime::parse(bot.review_due.as_deref()),
        duration: title_duration.or(from_file.duration),
    }))
}

/// The `<duration>` of the bot's grant title, `breakglass: grant <id> (<env>/<role> for
/// <duration> to <login>)` (`src/workflow/trailers.rs`): the duration the bot granted, a
/// policy's default included.
fn duration_in_title(subject: &str) -> Option<TimeDelta> {
    let rest = subject.strip_prefix("breakglass: grant ")?;
    let (_, inside) = rest.rsplit_once(" (")?;
    let (_, after) = inside.strip_suffix(')')?.split_once(" for ")?;
    let (duration, _login) = after.split_once(" to ")?;
    Some(HumanDuration::parse(duration).ok()?.to_chrono())
}

/// Why a grant's trailers are forged: the file is not added, or is added in another
/// environment than its `Breakglass-Environment`.
fn forged_grant(
    files: &RequestTrees<'_, '_>,
    request_id: &str,
    environment: Option<&str>,
    name: &str,
) -> Result<String, AuditError> {
    let claim = format!("{}: {request_id}", TrailerKey::Request);
    let Some(environment) = environment else {
        return Ok(format!(
            "{claim} but the commit adds no {REQUESTS_DIR}/<environment>/{name}"
        ));
    };
    let expected = format!("{REQUESTS_DIR}/{environment}/{name}");
    Ok(match files.added(None, &[name])? {
        Some(elsewhere) => format!(
            "{claim} and {}: {environment}, but the commit adds {}, not {expected}",
            TrailerKey::Environment,
            elsewhere.path()
        ),
        None => format!("{claim} but the commit does not add {expected}"),
    })
}

/// What a grant merge takes from the request file it adds when its message does not say it
/// (a merge with only SPEC's four trailers, or a title without the bot's duration).
#[derive(Default)]
struct FromFile {
    role: Option<String>,
    /// Why the file names no role.
    role_unreadable: Option<String>,
    ticket: Option<String>,
    /// The file's `reason:`, on one line.
    reason: Option<String>,
    duration: Option<TimeDelta>,
}

/// What a request file says (its role, or why it names none; its ticket, reason and
/// duration, when it has them).
fn read_request(repo: &Repository, file: &RequestFile) -> Result<FromFile, AuditError> {
    let blob = repo.find_blob(file.blob).map_err(AuditError::git)?;
    let request = std::str::from_utf8(blob.content())
        .map_err(|_| "it is not UTF-8".to_owned())
        .and_then(|text| AccessRequest::from_yaml(text).map_err(|err| err.to_string()));
    Ok(match request {
        Ok(request) => FromFile {
            role: Some(request.role.as_str().to_owned()),
            role_unreadable: None,
            ticket: request.ticket.map(|t| t.as_str().to_owned()),
            reason: Some(one_line(request.reason.as_str())),
            duration: request.duration.map(HumanDuration::to_chrono),
        },
        Err(why) => FromFile {
            role_unreadable: Some(format!("{} names no role ({why})", file.path())),
            ..FromFile::default()
        },
    })
}

/// A reason as the bot writes it into a merge message, and as [`Message::body`] reads it
/// back: its lines trimmed and joined with single spaces.
fn one_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A commit with `Breakglass-Revokes`: a revoke (or removal) when it removes that request
/// file, forged otherwise.
fn revoke(
    files: &RequestTrees<'_, '_>,
    bot: BotTrailers<'_>,
    message: &Message<'_>,
) -> Result<EventKind, AuditError> {
    let owned = |value: Option<Cow<'_, str>>| value.map(Cow::into_owned);
    let request_id = bot.revokes.as_deref().unwrap_or_default().to_owned();
    let removal = message.subject().starts_with(REMOVAL_TITLE);
    let yaml = format!("{request_id}.yaml");
    let yml = format!("{request_id}.yml");
    // The bot's own requests are `.yaml`; a removal takes away whatever landed, `.yml` too.
    let names: &[&str] = if removal { &[&yaml, &yml] } else { &[&yaml] };
    let Some(removed) = files.removed(names)? else {
        return Ok(EventKind::Forged(ForgedFact {
            detail: format!(
                "{}: {request_id} ({}) but the commit does not remove {REQUESTS_DIR}/<environment>/{yaml}",
                TrailerKey::Revokes,
                bot.revoked_reason.as_deref().unwrap_or("no reason")
            ),
            request_id,
            claim: Claim::Revoke,
        }));
    };
    Ok(EventKind::Revoke(RevokeFact {
        request_id,
        reason: owned(bot.revoked_reason),
        revoked_by: owned(bot.revoked_by),
        reviewed_by: owned(bot.reviewed_by),
        expires: TrailerTime::parse(bot.expires.as_deref()),
        removal,
        environment: Some(removed.environment),
    }))
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
        assert_eq!(raw.tree, Some(Oid::from_str(TREE).unwrap()));
        assert_eq!(raw.first_parent, Some(Oid::from_str(P1).unwrap()));
        assert_eq!(raw.committer_time, 1_764_123_240);
        assert_eq!(raw.message, b"title\n\nbody\n");
    }

    #[test]
    fn the_bots_removal_title_is_told_apart() {
        assert!(is_removal_title("breakglass: remove evil (reconcile)"));
        for other in [
            "breakglass: remove evil",
            "breakglass: revoke r-1 (reconcile)",
            "Remove grants/network/evil.tf (reconcile)",
        ] {
            assert!(!is_removal_title(other), "{other}");
        }
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
        let raw = RawCommit::parse(data.as_bytes()).unwrap();
        assert_eq!(
            (raw.committer_time, raw.tree),
            (9, None),
            "no tree: the walk refuses it"
        );
        let bad_parent = format!("tree {TREE}\nparent nothex\ncommitter C <c@x> 7 +0000\n\n");
        for broken in [
            "",
            "tree x\n\nmessage",
            "committer C <c@x> soon +0000\n\n",
            bad_parent.as_str(),
            "tree nothex\ncommitter C <c@x> 7 +0000\n\n",
            "committer no email 7\n\n",
        ] {
            assert_eq!(RawCommit::parse(broken.as_bytes()), None, "{broken:?}");
        }
    }

    /// Git takes as parents only the `parent` lines right after `tree`; one further down is
    /// an extra header that git ignores (and fsck lets through). It is no parent here either:
    /// not a second parent that makes a merge, nor one to walk to.
    #[test]
    fn a_parent_line_after_the_other_headers_is_no_parent() {
        let other = "1111111111111111111111111111111111111111";
        let one = format!(
            "tree {TREE}\nparent {TREE}\nauthor A <a@x> 1 +0000\ncommitter C <c@x> 7 +0000\nparent {other}\n\nm"
        );
        let raw = RawCommit::parse(one.as_bytes()).unwrap();
        assert_eq!(raw.first_parent, Some(Oid::from_str(TREE).unwrap()));
        assert!(!raw.merge, "one parent, as git reads it");
        assert_eq!(
            parents(one.as_bytes()).collect::<Vec<_>>(),
            [Oid::from_str(TREE).unwrap()]
        );
        let two =
            format!("tree {TREE}\nparent {TREE}\nparent {other}\ncommitter C <c@x> 7 +0000\n\nm");
        assert!(RawCommit::parse(two.as_bytes()).unwrap().merge);
        assert_eq!(parents(two.as_bytes()).count(), 2);
        let none = format!(
            "tree {TREE}\nauthor A <a@x> 1 +0000\nparent {other}\ncommitter C <c@x> 7 +0000\n\nm"
        );
        assert_eq!(
            RawCommit::parse(none.as_bytes()).unwrap().first_parent,
            None
        );
        assert_eq!(parents(none.as_bytes()).count(), 0);
    }
}
