//! From raw history facts to the audit report: each grant paired with its revoke, one row per
//! grant, and every anomaly flagged. Pure: no git, no clock (`now` is an input), no I/O.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use git2::Oid;

use super::history::{
    Claim, Event, EventKind, ForgedFact, GrantFact, History, LandedFact, LandedFile, OffLineFact,
    RemovalFact, RevokeFact, TrailerTime,
};
use super::trailers::TrailerKey;
use crate::clock::iso;
use crate::duration::HumanDuration;

/// What to report on and as of when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportOptions {
    /// "Now", for what is active, expired or overdue (injected so reports are reproducible).
    pub now: DateTime<Utc>,
    /// How late a revoke may be before it is an anomaly (the bot's timers and the forge take
    /// a moment).
    pub grace: TimeDelta,
    /// Only grants granted at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only grants granted at or before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only grants of this environment.
    pub environment: Option<String>,
}

impl ReportOptions {
    /// No filters, the default 5 minute grace.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            now,
            grace: TimeDelta::minutes(5),
            since: None,
            until: None,
            environment: None,
        }
    }

    fn in_period(&self, at: DateTime<Utc>) -> bool {
        self.since.is_none_or(|since| at >= since) && self.until.is_none_or(|until| at <= until)
    }

    /// Whether something that began at `from` and lasted until `to` (still there: `None`)
    /// was there at any time in the period: a grant made before `--since` and revoked in it,
    /// or never revoked, belongs to a report of the period.
    fn overlaps(&self, from: DateTime<Utc>, to: Option<DateTime<Utc>>) -> bool {
        let began = self.until.is_none_or(|until| from <= until);
        began
            && self
                .since
                .is_none_or(|since| to.is_none_or(|to| to >= since))
    }

    fn in_environment(&self, environment: &str) -> bool {
        self.environment.as_deref().is_none_or(|e| e == environment)
    }
}

/// The audit report: one row per grant, oldest first, and the list of anomalies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The path or URL of the requests repo, as given (credentials removed).
    pub repository: String,
    /// The branch whose first-parent history was read.
    pub branch: String,
    /// Its tip when it was read (`None` for an empty branch).
    pub head: Option<Oid>,
    /// What the report was made with; `options.now` is when it was generated.
    pub options: ReportOptions,
    pub grants: Vec<GrantRow>,
    /// Every anomaly in history order, those of the rows included.
    pub anomalies: Vec<Anomaly>,
}

impl Report {
    /// `breakglass audit`'s exit code: 0 when nothing is wrong, 1 when there is an anomaly.
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.anomalies.is_empty())
    }
}

/// One grant: what the grant merge says, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRow {
    pub request_id: String,
    /// The requester's login (empty when the trailer is missing: a `malformed_trailers`
    /// anomaly says so, as for every other missing trailer).
    pub requester: String,
    pub environment: String,
    pub role: String,
    pub reason: String,
    pub ticket: Option<String>,
    /// `Breakglass-Approved-By` as written: `carol, dave`, `fast-path:<rule>` or
    /// `self-service`.
    pub approved_by: String,
    /// The grant merge's committer time.
    pub granted_at: DateTime<Utc>,
    /// `None` when the trailer is missing or unreadable.
    pub expires_at: Option<DateTime<Utc>>,
    /// The revoke merge's committer time; `None` while there is no revoke merge.
    pub revoked_at: Option<DateTime<Utc>>,
    /// `ttl`, `early` or `reconcile`, from the revoke merge.
    pub revoked_how: Option<String>,
    /// Who asked for an early revoke (`Breakglass-Revoked-By`).
    pub revoked_by: Option<String>,
    pub review: Review,
    pub grant_commit: Oid,
    pub revoke_commit: Option<Oid>,
    /// This row's anomalies (also in [`Report::anomalies`], with details).
    pub anomalies: Vec<AnomalyKind>,
}

impl GrantRow {
    /// The approvers' logins; none for a fast-path or self-service grant.
    pub fn approvers(&self) -> impl Iterator<Item = &str> {
        let listed = self.fast_path_rule().is_none() && self.approved_by != SELF_SERVICE;
        self.approved_by
            .split(',')
            .map(str::trim)
            .filter(move |login| listed && !login.is_empty())
    }

    /// The fast-path rule that let it merge without approval, if one did.
    pub fn fast_path_rule(&self) -> Option<&str> {
        self.approved_by.strip_prefix(FAST_PATH)
    }
}

const FAST_PATH: &str = "fast-path:";
const SELF_SERVICE: &str = "self-service";

/// Where a grant's after-the-fact review stands. Git records a review only on the revoke
/// merge (`Breakglass-Reviewed-By`), so a review done after the revocation shows as overdue
/// here; the service's event log has the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Review {
    /// Not a fast-path grant.
    NotNeeded,
    /// Not reviewed yet and not due yet (`due` is `None` when the grant merge records none).
    Pending { due: Option<DateTime<Utc>> },
    /// Not reviewed, and the due time has passed.
    Overdue { due: DateTime<Utc> },
    /// Reviewed by this login.
    Done { by: String },
}

impl Review {
    /// The machine-readable status: `not_needed`, `pending`, `overdue` or `done`.
    pub fn status(&self) -> &'static str {
        match self {
            Self::NotNeeded => "not_needed",
            Self::Pending { .. } => "pending",
            Self::Overdue { .. } => "overdue",
            Self::Done { .. } => "done",
        }
    }

    /// When the review is (or was) due, when known and not done.
    pub fn due(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Pending { due } => *due,
            Self::Overdue { due } => Some(*due),
            _ => None,
        }
    }

    /// Who reviewed it.
    pub fn reviewed_by(&self) -> Option<&str> {
        match self {
            Self::Done { by } => Some(by),
            _ => None,
        }
    }
}

impl fmt::Display for Review {
    /// `not needed`, `pending (due …)`, `overdue (due …)`, `done by <login>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotNeeded => f.write_str("not needed"),
            Self::Pending { due: Some(due) } => write!(f, "pending (due {})", iso(*due)),
            Self::Pending { due: None } => f.write_str("pending (no due date recorded)"),
            Self::Overdue { due } => write!(f, "overdue (due {})", iso(*due)),
            Self::Done { by } => write!(f, "done by {by}"),
        }
    }
}

/// What can be wrong in the history. The order is the order rows list them in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AnomalyKind {
    /// Expired more than the grace ago, and no revoke merge.
    GrantWithoutRevert,
    /// The revoke merge came later than expiry + grace.
    LateRevert,
    /// The requester is among the approvers.
    SelfApproved,
    /// A fast-path review whose due time has passed without a recorded review.
    ReviewOverdue,
    /// A `Breakglass-Revokes` for an id without a grant merge (and not a reconcile removal).
    RevertWithoutGrant,
    /// Trailers that claim a grant (or a revoke) on a commit that does not add (or remove)
    /// that request file: the commit counts as neither.
    ForgedTrailers,
    /// A request file added by a commit that is not the bot's (direct push, hand merge).
    LandedWithoutBot,
    /// A grant merge whose trailers are missing or unreadable.
    MalformedTrailers,
    /// A commit with a grant's or a revoke's trailers that is not on the branch's
    /// first-parent history: only a merge that is not the bot's reaches it, through another
    /// parent (a push that put an older line first).
    OffFirstParent,
}

impl AnomalyKind {
    /// Every kind, in order.
    pub const ALL: [Self; 9] = [
        Self::GrantWithoutRevert,
        Self::LateRevert,
        Self::SelfApproved,
        Self::ReviewOverdue,
        Self::RevertWithoutGrant,
        Self::ForgedTrailers,
        Self::LandedWithoutBot,
        Self::MalformedTrailers,
        Self::OffFirstParent,
    ];

    /// The stable name used in every output format.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GrantWithoutRevert => "grant_without_revert",
            Self::LateRevert => "late_revert",
            Self::SelfApproved => "self_approved",
            Self::ReviewOverdue => "review_overdue",
            Self::RevertWithoutGrant => "revert_without_grant",
            Self::ForgedTrailers => "forged_trailers",
            Self::LandedWithoutBot => "landed_without_bot",
            Self::MalformedTrailers => "malformed_trailers",
            Self::OffFirstParent => "off_first_parent",
        }
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One anomaly, with the commit that shows it and a sentence for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    pub request_id: String,
    /// The grant merge, or the revoke merge for `late_revert` and `revert_without_grant`,
    /// or the commit that added the file for `landed_without_bot`, or the commit whose
    /// trailers are forged for `forged_trailers`.
    pub commit: Oid,
    pub detail: String,
    /// The commit's place on the first-parent line, for history order.
    position: usize,
}

/// A revoke merge, as the rows and the anomalies need it.
struct Revoke {
    position: usize,
    commit: Oid,
    at: DateTime<Utc>,
    fact: RevokeFact,
}

/// A commit whose trailers claim what its files do not show.
struct Forged {
    position: usize,
    commit: Oid,
    at: DateTime<Utc>,
    fact: ForgedFact,
}

/// A trailer-bearing commit off the first-parent line.
struct OffLine {
    position: usize,
    commit: Oid,
    at: DateTime<Utc>,
    fact: OffLineFact,
}

/// A request or grant file that landed without the bot.
struct Landed {
    position: usize,
    commit: Oid,
    at: DateTime<Utc>,
    fact: LandedFact,
}

/// A reconcile removal's deleted grant files.
struct Removal {
    position: usize,
    commit: Oid,
    at: DateTime<Utc>,
    fact: RemovalFact,
}

/// Builds the report from the whole history: pairing always sees everything (a grant before
/// `--since` may be revoked inside the period and the reverse), then rows and anomalies are
/// filtered.
pub fn build(history: History, repository: String, options: ReportOptions) -> Report {
    let Sorted {
        mut grants,
        unpaired,
        landed,
        grant_removals,
        forged,
        off_line,
    } = sort_events(placed_on_the_line(history.events));
    borrow_offsets(&mut grants);
    let mut anomalies = Vec::new();
    let mut rows = Vec::with_capacity(grants.len());
    let mut paired: Vec<(String, Oid, usize)> = Vec::new();
    for mut pending in grants {
        if !unpaired.is_empty()
            && let Some(revoke) = &pending.revoke
        {
            paired.push((
                pending.row.request_id.clone(),
                revoke.commit,
                revoke.position,
            ));
        }
        let row = &pending.row;
        let ended = pending.revoke.as_ref().map(|revoke| revoke.at);
        if !(options.overlaps(row.granted_at, ended) && options.in_environment(&row.environment)) {
            continue;
        }
        if let Some(anomaly) = disowned(&pending) {
            anomalies.push(anomaly);
            continue;
        }
        finish_row(&mut pending, &history.branch, &options, &mut anomalies);
        rows.push(pending.row);
    }
    // A reconcile removal is the bot cleaning up after a direct push: not an anomaly by
    // itself (the push is), but it tells what became of the file.
    let (removals, strays): (Vec<Revoke>, Vec<Revoke>) = unpaired
        .into_iter()
        .partition(|r| r.fact.removal && r.fact.reason.as_deref() == Some("reconcile"));
    flag_strays(&strays, &paired, &history.branch, &options, &mut anomalies);
    let removals = Removals {
        requests: &removals,
        grant_files: &grant_removals,
    };
    flag_landed(landed, &removals, &options, &mut anomalies);
    flag_forged(forged, &options, &mut anomalies);
    flag_off_line(off_line, &history.branch, &options, &mut anomalies);
    anomalies.sort_by_key(|a| (a.position, a.kind));
    Report {
        repository,
        branch: history.branch,
        head: history.head,
        options,
        grants: rows,
        anomalies,
    }
}

/// The history's facts sorted out: each grant with its revoke, and what pairs with nothing.
struct Sorted {
    grants: Vec<Pending>,
    /// Revokes of no open grant.
    unpaired: Vec<Revoke>,
    landed: Vec<Landed>,
    /// Reconcile removals that delete grant files.
    grant_removals: Vec<Removal>,
    forged: Vec<Forged>,
    off_line: Vec<OffLine>,
}

/// The time of a first-parent commit that is not a genuine bot merge (a landing, forged
/// trailers) is whatever its author set: a push dated 2015, or 2099, fell out of every
/// `--since`/`--until` report it belongs to. It landed after the genuine merge before it on
/// the line (its ancestor) and before the one after it (its descendant), whose times the forge
/// set, so its time is kept between those two.
fn placed_on_the_line(mut events: Vec<Event>) -> Vec<Event> {
    let mut genuine: Vec<(usize, DateTime<Utc>)> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Grant(_) | EventKind::Revoke(_)))
        .map(|e| (e.position, e.at))
        .collect();
    genuine.sort_unstable_by_key(|&(position, _)| position);
    for event in &mut events {
        if !matches!(event.kind, EventKind::Landed(_) | EventKind::Forged(_)) {
            continue;
        }
        let older = genuine.partition_point(|&(p, _)| p < event.position);
        if let Some(&(_, before)) = older.checked_sub(1).and_then(|i| genuine.get(i)) {
            event.at = event.at.max(before);
        }
        if let Some(&(_, after)) = genuine[older..].iter().find(|&&(p, _)| p > event.position) {
            event.at = event.at.min(after);
        }
    }
    events
}

fn sort_events(events: Vec<Event>) -> Sorted {
    let mut sorted = Sorted {
        grants: Vec::with_capacity(events.len() / 2 + 1),
        unpaired: Vec::new(),
        landed: Vec::new(),
        grant_removals: Vec::new(),
        forged: Vec::new(),
        off_line: Vec::new(),
    };
    let grants = &mut sorted.grants;
    // Request id → the latest grant still waiting for its revoke. Ids are unique, but should
    // one repeat while its grant is open, `Pending::previous_open` keeps the older one.
    let mut open: HashMap<String, usize> = HashMap::new();
    for event in events {
        match event.kind {
            EventKind::Grant(fact) => {
                let index = grants.len();
                let previous_open = open.insert(fact.request_id.clone(), index);
                grants.push(Pending::new(event.position, event.commit, event.at, fact));
                grants[index].previous_open = previous_open;
            }
            EventKind::Revoke(fact) => {
                let revoke = Revoke {
                    position: event.position,
                    commit: event.commit,
                    at: event.at,
                    fact,
                };
                let grant = open.get(&revoke.fact.request_id).copied();
                let Some(index) = grant.filter(|&i| ends(&grants[i], &revoke.fact)) else {
                    sorted.unpaired.push(revoke);
                    continue;
                };
                match grants[index].previous_open {
                    Some(previous) => {
                        open.insert(revoke.fact.request_id.clone(), previous);
                    }
                    None => {
                        open.remove(&revoke.fact.request_id);
                    }
                }
                grants[index].revoke = Some(revoke);
            }
            EventKind::Landed(fact) => sorted.landed.push(Landed {
                position: event.position,
                commit: event.commit,
                at: event.at,
                fact,
            }),
            EventKind::Removal(fact) => sorted.grant_removals.push(Removal {
                position: event.position,
                commit: event.commit,
                at: event.at,
                fact,
            }),
            // Counted as neither a grant nor a revoke: a forged revoke closes nothing.
            EventKind::Forged(fact) => sorted.forged.push(Forged {
                position: event.position,
                commit: event.commit,
                at: event.at,
                fact,
            }),
            // Off the line: no grant, no revoke; the anomaly says where it is.
            EventKind::OffLine(fact) => sorted.off_line.push(OffLine {
                position: event.position,
                commit: event.commit,
                at: event.at,
                fact,
            }),
        }
    }
    sorted
}

/// Whether `revoke` ends `grant`: it removes that grant's request file, in its environment
/// (where the revoke says which).
fn ends(grant: &Pending, revoke: &RevokeFact) -> bool {
    revoke
        .environment
        .as_ref()
        .is_none_or(|e| *e == grant.row.environment)
}

/// One `revert_without_grant` anomaly per revoke in the period that closes no grant; a second
/// revoke of a revoked grant names the first (`paired`: each revoked grant's id and revoke).
fn flag_strays(
    strays: &[Revoke],
    paired: &[(String, Oid, usize)],
    branch: &str,
    options: &ReportOptions,
    anomalies: &mut Vec<Anomaly>,
) {
    if strays.is_empty() {
        return; // rare: the map below is built only for them
    }
    let revoked_by: HashMap<&str, (Oid, usize)> = paired
        .iter()
        .map(|(id, commit, position)| (id.as_str(), (*commit, *position)))
        .collect();
    for revoke in strays {
        if !options.in_period(revoke.at) {
            continue; // the environment is unknown: a revoke names only the request
        }
        let id = &revoke.fact.request_id;
        let why = match revoked_by.get(id.as_str()) {
            Some(&(first, at)) if at < revoke.position => {
                format!("{id} was already revoked by {}", short(first))
            }
            _ => format!("no grant merge for {id} on {branch} before it"),
        };
        anomalies.push(Anomaly {
            kind: AnomalyKind::RevertWithoutGrant,
            detail: format!(
                "{}: {id} ({}) but {why}",
                TrailerKey::Revokes,
                revoke.fact.reason.as_deref().unwrap_or("no reason"),
            ),
            request_id: id.clone(),
            commit: revoke.commit,
            position: revoke.position,
        });
    }
}

/// The bot's reconcile removals, which tell what became of a file that landed without it.
struct Removals<'r> {
    /// Those that remove a request file (`Breakglass-Revokes`, reason `reconcile`).
    requests: &'r [Revoke],
    /// Those that delete grant files, with or without trailers.
    grant_files: &'r [Removal],
}

impl Removals<'_> {
    /// The first reconcile removal after the landing that took the file out again: a request
    /// file by its id in its environment (what the removal's trailer and file say), a grant
    /// file by its exact path (the bot groups grant files by request, so a removal's subject
    /// need not be the file's name).
    fn of(&self, landed: &Landed) -> Option<(Oid, DateTime<Utc>)> {
        let Landed { position, fact, .. } = landed;
        let by_path = || {
            self.grant_files
                .iter()
                .find(|r| r.position > *position && r.fact.paths.contains(&fact.path))
                .map(|r| (r.commit, r.at))
        };
        match fact.file {
            // A request file by its id in its environment (what the removal's trailer and file
            // say); else by its path, as a `.yml` one, which the bot removes without trailers.
            LandedFile::Request => self
                .requests
                .iter()
                .find(|r| {
                    r.position > *position
                        && r.fact.request_id == fact.request_id
                        && r.fact
                            .environment
                            .as_ref()
                            .is_none_or(|e| Some(e) == fact.environment.as_ref())
                })
                .map(|r| (r.commit, r.at))
                .or_else(by_path),
            LandedFile::Grant | LandedFile::Stray => by_path(),
        }
    }
}

/// A grant merge that the bot's own removal disowns: the request file it added was taken out
/// by a reconcile *removal* (`breakglass: remove …`), which the bot makes only for files that
/// reached the branch without it, never to end a grant it made. So the merge commit is not the
/// bot's (a member's hand-made merge, or a hand merge whose message carries the trailers), and
/// it is no grant: a `landed_without_bot` anomaly instead of a row.
fn disowned(pending: &Pending) -> Option<Anomaly> {
    let revoke = pending.revoke.as_ref()?;
    let removal = revoke.fact.removal && revoke.fact.reason.as_deref() == Some("reconcile");
    if !removal {
        return None;
    }
    let row = &pending.row;
    Some(Anomaly {
        kind: AnomalyKind::LandedWithoutBot,
        request_id: row.request_id.clone(),
        commit: row.grant_commit,
        detail: format!(
            "a merge carrying grant trailers for {} that breakglass did not make: its removal {} at {} (reconcile) says it was never granted",
            row.request_id,
            short(revoke.commit),
            iso(revoke.at)
        ),
        position: pending.position,
    })
}

/// One `landed_without_bot` anomaly per file that reached the branch without the bot and was
/// there at some time in the period, saying which reconcile removal (if any) took it out again.
/// Its stay is judged, not its commit's time alone: that time is whatever its author set (a
/// push dated 2015 is still there in a report of the last 30 days). A grant file whose path
/// names no environment is kept under every `--environment` (see [`LandedFact::environment`]).
fn flag_landed(
    landed: Vec<Landed>,
    removals: &Removals<'_>,
    options: &ReportOptions,
    anomalies: &mut Vec<Anomaly>,
) {
    for landed in landed {
        let in_environment = landed
            .fact
            .environment
            .as_deref()
            .is_none_or(|environment| options.in_environment(environment));
        let removed = removals.of(&landed);
        if !(options.overlaps(landed.at, removed.map(|(_, at)| at)) && in_environment) {
            continue;
        }
        let fate = match removed {
            Some((commit, at)) => {
                format!("removed by {} at {} (reconcile)", short(commit), iso(at))
            }
            None => "no reconcile removal on the branch".to_owned(),
        };
        anomalies.push(Anomaly {
            kind: AnomalyKind::LandedWithoutBot,
            detail: format!(
                "{} was {} without breakglass; {fate}",
                landed.fact.path,
                if landed.fact.modified {
                    "changed"
                } else {
                    "added"
                }
            ),
            request_id: landed.fact.request_id,
            commit: landed.commit,
            position: landed.position,
        });
    }
}

/// One `forged_trailers` anomaly per forged commit in the period. The environment filter
/// never hides one: its only environment is a trailer that the files contradict.
fn flag_forged(forged: Vec<Forged>, options: &ReportOptions, anomalies: &mut Vec<Anomaly>) {
    for Forged {
        position,
        commit,
        at,
        fact,
    } in forged
    {
        if !options.in_period(at) {
            continue;
        }
        let claim = match fact.claim {
            Claim::Grant => "grant",
            Claim::Revoke => "revoke",
        };
        anomalies.push(Anomaly {
            kind: AnomalyKind::ForgedTrailers,
            detail: format!("not counted as a {claim}: {}", fact.detail),
            request_id: fact.request_id,
            commit,
            position,
        });
    }
}

/// One `off_first_parent` anomaly per trailer-bearing commit off the line, dated by its own
/// committer time. Like a forged commit, it has no environment the filter could trust.
fn flag_off_line(
    off_line: Vec<OffLine>,
    branch: &str,
    options: &ReportOptions,
    anomalies: &mut Vec<Anomaly>,
) {
    for OffLine {
        position,
        commit,
        at,
        fact,
    } in off_line
    {
        if !options.in_period(at) {
            continue;
        }
        let (key, claim) = match fact.claim {
            Claim::Grant => (TrailerKey::Request, "grant"),
            Claim::Revoke => (TrailerKey::Revokes, "revoke"),
        };
        anomalies.push(Anomaly {
            kind: AnomalyKind::OffFirstParent,
            detail: format!(
                "not counted as a {claim}: {key}: {} on a commit that is not on {branch}'s first-parent history; merge {} (not breakglass's) reaches it through another parent, as after a push that put an older line first; `breakglass audit verify` compares the bot's event log with git",
                fact.request_id,
                short(fact.merge),
            ),
            request_id: fact.request_id,
            commit,
            position,
        });
    }
}

/// A grant while the history is read: its row so far, what the row does not keep, and its
/// place among the open grants.
struct Pending {
    position: usize,
    row: GrantRow,
    review_due: TrailerTime,
    /// The forge's clock less the bot's, as [`forge_offset`] reads it from this grant merge,
    /// else (see [`borrow_offsets`]) from the nearest grant merge that shows it.
    forge_offset: Option<TimeDelta>,
    /// What is missing or unreadable in the trailers.
    problems: Vec<String>,
    revoke: Option<Revoke>,
    previous_open: Option<usize>,
}

impl Pending {
    /// The columns a grant merge fixes on its own; the fact's strings move into the row.
    fn new(position: usize, commit: Oid, at: DateTime<Utc>, fact: GrantFact) -> Self {
        let problems = malformed(&fact);
        let forge_offset = forge_offset(at, &fact);
        Self {
            position,
            row: GrantRow {
                request_id: fact.request_id,
                requester: fact.requester.unwrap_or_default(),
                environment: fact.environment.unwrap_or_default(),
                role: fact.role.unwrap_or_default(),
                reason: fact.reason,
                ticket: fact.ticket,
                approved_by: fact.approved_by.unwrap_or_default(),
                granted_at: at,
                expires_at: fact.expires.at(),
                revoked_at: None,
                revoked_how: None,
                revoked_by: None,
                review: Review::NotNeeded,
                grant_commit: commit,
                revoke_commit: None,
                anomalies: Vec::new(),
            },
            review_due: fact.review_due,
            forge_offset,
            problems,
            revoke: None,
            previous_open: None,
        }
    }
}

/// Adds the revoke, the review status and the anomalies of one row.
fn finish_row(
    pending: &mut Pending,
    branch: &str,
    options: &ReportOptions,
    anomalies: &mut Vec<Anomaly>,
) {
    let revoke = pending.revoke.as_ref();
    let row = &mut pending.row;
    if let Some(revoke) = revoke {
        // An extension moved the expiry; the revoke merge says where to.
        if let Some(extended) = revoke.fact.expires.at() {
            row.expires_at = Some(extended);
        }
        row.revoked_at = Some(revoke.at);
        row.revoked_how = revoke.fact.reason.clone();
        row.revoked_by = revoke.fact.revoked_by.clone();
        row.revoke_commit = Some(revoke.commit);
    }
    row.review = review(row, &pending.review_due, revoke, options.now);
    let at_grant = (row.grant_commit, pending.position);
    let mut found = timing_anomalies(row, revoke, pending.forge_offset, at_grant, branch, options);
    found.extend(content_anomalies(
        row,
        revoke,
        at_grant,
        &pending.problems,
        options.now,
    ));
    for Found {
        kind,
        at: (commit, position),
        detail,
    } in found
    {
        row.anomalies.push(kind);
        anomalies.push(Anomaly {
            kind,
            request_id: row.request_id.clone(),
            commit,
            detail,
            position,
        });
    }
}

/// An anomaly of one row before it is recorded: what, at which commit (and its place on the
/// first-parent line), and why.
struct Found {
    kind: AnomalyKind,
    at: (Oid, usize),
    detail: String,
}

/// A grant never revoked past its expiry, or revoked late.
///
/// One clock per comparison. The expiry is the bot's (`Breakglass-Expires`, fixed on its
/// clock); the revoke merge's time is its committer time, the forge's clock (the forge makes
/// that commit), and a revoke merge carries no time of the bot's. So a revoke is judged on the
/// bot's clock by moving its commit time by `forge_offset`, the forge's clock less the bot's as
/// the grant merge shows it (see [`forge_offset`]): the forge an hour ahead no longer makes
/// every revoke late, nor an hour behind hides a late one. The same is the forge's time from
/// the grant merge to the revoke merge (one clock) against the bot's from its grant time to the
/// expiry (the other). Without an offset the lateness is not judged at all rather than judged
/// across the two clocks. "Now" is the auditor's, against the expiry: wall clock against
/// wall clock, no forge involved.
fn timing_anomalies(
    row: &GrantRow,
    revoke: Option<&Revoke>,
    forge_offset: Option<TimeDelta>,
    at_grant: (Oid, usize),
    branch: &str,
    options: &ReportOptions,
) -> Vec<Found> {
    let grace = HumanDuration::from_secs(options.grace.num_seconds().max(0).unsigned_abs());
    match (row.expires_at, revoke) {
        (Some(expires), None) if options.now > expires + options.grace => vec![Found {
            kind: AnomalyKind::GrantWithoutRevert,
            at: at_grant,
            detail: format!(
                "expired at {}, {} ago; no revoke merge on {branch} (grace {grace})",
                iso(expires),
                span(options.now - expires)
            ),
        }],
        (Some(expires), Some(revoke)) => {
            // The revoke merge's time on the bot's clock.
            let Some(revoked) = forge_offset.map(|offset| revoke.at - offset) else {
                return Vec::new();
            };
            if revoked <= expires + options.grace {
                return Vec::new();
            }
            vec![Found {
                kind: AnomalyKind::LateRevert,
                at: (revoke.commit, revoke.position),
                detail: format!(
                    "revoked at {}, {} after the expiry {} (grace {grace})",
                    iso(revoked),
                    span(revoked - expires),
                    iso(expires)
                ),
            }]
        }
        _ => Vec::new(),
    }
}

/// The forge's clock less the bot's, from the two times a grant merge holds: its committer
/// time (the forge made the merge commit) and the grant time the bot fixed on its own clock
/// right before merging, which is its `Breakglass-Expires` less the duration it granted.
/// Both are the same moment give or take the merge's round trip (seconds; longer only when
/// the bot stopped between fixing the time and merging, which makes a revoke look earlier by
/// that much). `None` when the merge lacks the expiry or the duration.
fn forge_offset(granted_at: DateTime<Utc>, fact: &GrantFact) -> Option<TimeDelta> {
    let granted_by_the_bot = fact.expires.at()? - fact.duration?;
    Some(granted_at - granted_by_the_bot)
}

/// Gives a grant merge that does not show the forge's offset (its expiry unreadable, no
/// duration in its title or file) the offset of the nearest grant merge in history order that
/// does: the forge and the bot are the same two clocks all along, and the nearest reading is
/// the one least drifted. With none in the whole history, lateness is not judged.
fn borrow_offsets(grants: &mut [Pending]) {
    let mut before: Vec<Option<(usize, TimeDelta)>> = Vec::with_capacity(grants.len());
    let mut last = None;
    for grant in grants.iter() {
        if let Some(offset) = grant.forge_offset {
            last = Some((grant.position, offset));
        }
        before.push(last);
    }
    let mut after = None;
    for (grant, before) in grants.iter_mut().zip(before).rev() {
        if let Some(offset) = grant.forge_offset {
            after = Some((grant.position, offset));
            continue;
        }
        let distance = |(position, _): &(usize, TimeDelta)| position.abs_diff(grant.position);
        grant.forge_offset = [before, after]
            .into_iter()
            .flatten()
            .min_by_key(distance)
            .map(|(_, offset)| offset);
    }
}

/// A requester among the approvers, a review overdue, trailers missing or not the bot's.
fn content_anomalies(
    row: &GrantRow,
    revoke: Option<&Revoke>,
    at_grant: (Oid, usize),
    problems: &[String],
    now: DateTime<Utc>,
) -> Vec<Found> {
    let mut found = Vec::new();
    let self_approved = !row.requester.is_empty()
        && row
            .approvers()
            .any(|login| login.eq_ignore_ascii_case(&row.requester));
    if self_approved {
        found.push(Found {
            kind: AnomalyKind::SelfApproved,
            at: at_grant,
            detail: format!(
                "requester {} is among the approvers ({})",
                row.requester, row.approved_by
            ),
        });
    }
    if let Review::Overdue { due } = row.review {
        found.push(Found {
            kind: AnomalyKind::ReviewOverdue,
            at: at_grant,
            detail: format!(
                "fast-path review was due at {}, {} ago, and none is recorded",
                iso(due),
                span(now - due)
            ),
        });
    }
    if !problems.is_empty() {
        found.push(Found {
            kind: AnomalyKind::MalformedTrailers,
            at: at_grant,
            detail: problems.join("; "),
        });
    }
    // The bot revokes for three reasons only; any other was not written by it.
    if let Some(revoke) = revoke
        && let Some(reason) = &revoke.fact.reason
        && reason.parse::<crate::store::RevokeReason>().is_err()
    {
        found.push(Found {
            kind: AnomalyKind::MalformedTrailers,
            at: (revoke.commit, revoke.position),
            detail: format!(
                "Breakglass-Revoked-Reason `{reason}` is none of ttl, early, reconcile"
            ),
        });
    }
    found
}

fn review(
    row: &GrantRow,
    review_due: &TrailerTime,
    revoke: Option<&Revoke>,
    now: DateTime<Utc>,
) -> Review {
    if let Some(by) = revoke.and_then(|r| r.fact.reviewed_by.as_deref()) {
        return Review::Done { by: by.to_owned() };
    }
    match review_due {
        TrailerTime::At(due) if now > *due => Review::Overdue { due: *due },
        TrailerTime::At(due) => Review::Pending { due: Some(*due) },
        TrailerTime::Invalid(_) => Review::Pending { due: None },
        TrailerTime::Missing if row.fast_path_rule().is_some() => Review::Pending { due: None },
        TrailerTime::Missing => Review::NotNeeded,
    }
}

/// What is missing or unreadable in a grant merge's trailers.
fn malformed(fact: &GrantFact) -> Vec<String> {
    let mut problems = Vec::new();
    let missing: Vec<&str> = [
        (TrailerKey::Requester, fact.requester.is_none()),
        (TrailerKey::Environment, fact.environment.is_none()),
        (TrailerKey::Role, fact.role.is_none()),
        (TrailerKey::ApprovedBy, fact.approved_by.is_none()),
        (
            TrailerKey::Expires,
            matches!(fact.expires, TrailerTime::Missing),
        ),
    ]
    .into_iter()
    .filter_map(|(key, missing)| missing.then_some(key.as_str()))
    .collect();
    if !missing.is_empty() {
        problems.push(format!("missing {}", missing.join(", ")));
    }
    if fact.role.is_none()
        && let Some(why) = &fact.role_unreadable
    {
        problems.push(why.clone());
    }
    for (key, time) in [
        (TrailerKey::Expires, &fact.expires),
        (TrailerKey::ReviewDue, &fact.review_due),
    ] {
        if let TrailerTime::Invalid(text) = time {
            problems.push(format!("{key} `{text}` is not an ISO 8601 time"));
        }
    }
    problems
}

/// A span for a sentence, rounded down to the second (`1h5m`).
fn span(delta: TimeDelta) -> HumanDuration {
    HumanDuration::from_secs(delta.num_seconds().max(0).unsigned_abs())
}

/// The 12-character abbreviation of a commit id used in sentences and terminal tables.
pub fn short(commit: Oid) -> String {
    let mut hex = commit.to_string();
    hex.truncate(12);
    hex
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::audit::history::Event;

    fn t(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap() + TimeDelta::minutes(minutes)
    }

    fn oid(n: usize) -> Oid {
        let mut bytes = [0u8; 20];
        bytes[12..].copy_from_slice(&(n as u64).to_be_bytes());
        Oid::from_bytes(&bytes).unwrap()
    }

    /// A history builder: each call is the next first-parent commit, `at` in minutes.
    #[derive(Default)]
    struct Builder(Vec<Event>);

    impl Builder {
        fn push(&mut self, at: i64, kind: EventKind) -> &mut Self {
            let position = self.0.len();
            self.0.push(Event {
                position,
                commit: oid(position + 1),
                at: t(at),
                kind,
            });
            self
        }

        fn grant(&mut self, at: i64, id: &str, approved_by: &str, minutes: i64) -> &mut Self {
            self.push(
                at,
                EventKind::Grant(GrantFact {
                    request_id: id.into(),
                    requester: Some("alice".into()),
                    environment: Some("prod".into()),
                    role: Some("admin".into()),
                    role_unreadable: None,
                    reason: "incident: INC-1".into(),
                    ticket: Some("INC-1".into()),
                    approved_by: Some(approved_by.into()),
                    expires: TrailerTime::At(t(at + minutes)),
                    review_due: if approved_by.starts_with(FAST_PATH) {
                        TrailerTime::At(t(at + 24 * 60))
                    } else {
                        TrailerTime::Missing
                    },
                    duration: Some(TimeDelta::minutes(minutes)),
                }),
            )
        }

        fn revoke(&mut self, at: i64, id: &str, reason: &str, reviewer: Option<&str>) -> &mut Self {
            self.push(
                at,
                EventKind::Revoke(RevokeFact {
                    request_id: id.into(),
                    reason: Some(reason.into()),
                    revoked_by: None,
                    reviewed_by: reviewer.map(Into::into),
                    expires: TrailerTime::Missing,
                    removal: false,
                    environment: Some("prod".into()),
                }),
            )
        }

        fn forged(&mut self, at: i64, id: &str, claim: Claim) -> &mut Self {
            self.push(
                at,
                EventKind::Forged(ForgedFact {
                    request_id: id.into(),
                    claim,
                    detail: format!("the commit does not touch {id}"),
                }),
            )
        }

        fn report(&self, now: i64) -> Report {
            self.report_with(ReportOptions::new(t(now)))
        }

        fn report_with(&self, options: ReportOptions) -> Report {
            let history = History {
                branch: "main".into(),
                head: self.0.last().map(|e| e.commit),
                events: self.0.clone(),
            };
            build(history, "repo".into(), options)
        }
    }

    fn kinds(report: &Report) -> Vec<(String, AnomalyKind)> {
        report
            .anomalies
            .iter()
            .map(|a| (a.request_id.clone(), a.kind))
            .collect()
    }

    #[test]
    fn a_revoke_reason_the_bot_never_writes_is_malformed() {
        let report = Builder::default()
            .grant(0, "r-1", "carol", 60)
            .revoke(61, "r-1", "bogus", None)
            .report(600);
        assert_eq!(
            kinds(&report),
            [("r-1".into(), AnomalyKind::MalformedTrailers)]
        );
        assert_eq!(report.anomalies[0].commit, oid(2), "the revoke's commit");
        assert!(report.anomalies[0].detail.contains("`bogus`"));
    }

    #[test]
    fn a_grant_revoked_on_time_is_clean() {
        let report = Builder::default()
            .grant(0, "r-1", "carol", 60)
            .revoke(61, "r-1", "ttl", None)
            .report(600);
        assert_eq!(report.anomalies, []);
        assert_eq!(report.exit_code(), 0);
        let row = &report.grants[0];
        assert_eq!(row.revoked_at, Some(t(61)));
        assert_eq!(row.revoked_how.as_deref(), Some("ttl"));
        assert_eq!(row.revoke_commit, Some(oid(2)));
        assert_eq!(row.review, Review::NotNeeded);
        assert_eq!(row.approvers().collect::<Vec<_>>(), ["carol"]);
    }

    #[test]
    fn an_active_grant_is_not_an_anomaly_until_expiry_plus_grace() {
        let mut b = Builder::default();
        b.grant(0, "r-1", "carol", 60);
        assert_eq!(b.report(30).anomalies, []);
        assert_eq!(b.report(65).anomalies, [], "within the 5m grace");
        let report = b.report(66);
        assert_eq!(
            kinds(&report),
            [("r-1".into(), AnomalyKind::GrantWithoutRevert)]
        );
        assert_eq!(
            report.anomalies[0].detail,
            "expired at 2026-11-26T01:00:00Z, 6m ago; no revoke merge on main (grace 5m)"
        );
        assert_eq!(report.exit_code(), 1);
    }

    #[test]
    fn a_revoke_after_expiry_plus_grace_is_late() {
        let report = Builder::default()
            .grant(0, "r-1", "carol", 60)
            .revoke(125, "r-1", "ttl", None)
            .report(600);
        assert_eq!(kinds(&report), [("r-1".into(), AnomalyKind::LateRevert)]);
        assert_eq!(report.anomalies[0].commit, oid(2), "the revoke merge");
        assert_eq!(
            report.anomalies[0].detail,
            "revoked at 2026-11-26T02:05:00Z, 1h5m after the expiry 2026-11-26T01:00:00Z (grace 5m)"
        );
        let on_time = Builder::default()
            .grant(0, "r-1", "carol", 60)
            .revoke(65, "r-1", "ttl", None)
            .report(600);
        assert_eq!(on_time.anomalies, []);
    }

    #[test]
    fn the_requester_never_approves() {
        let report = Builder::default()
            .grant(0, "r-1", "carol, Alice", 60)
            .revoke(10, "r-1", "early", None)
            .report(600);
        assert_eq!(kinds(&report), [("r-1".into(), AnomalyKind::SelfApproved)]);
        assert_eq!(
            report.anomalies[0].detail,
            "requester alice is among the approvers (carol, Alice)"
        );
        for approved_by in ["self-service", "fast-path:alice"] {
            let report = Builder::default()
                .grant(0, "r-1", approved_by, 60)
                .revoke(10, "r-1", "early", Some("carol"))
                .report(600);
            assert_eq!(report.anomalies, [], "{approved_by}");
        }
    }

    #[test]
    fn fast_path_reviews() {
        let mut b = Builder::default();
        b.grant(0, "r-done", "fast-path:sev1", 60)
            .revoke(60, "r-done", "ttl", Some("carol"))
            .grant(100, "r-open", "fast-path:sev1", 60)
            .revoke(160, "r-open", "ttl", None);
        let report = b.report(200);
        assert_eq!(report.grants[0].review, Review::Done { by: "carol".into() });
        assert_eq!(report.grants[0].review.to_string(), "done by carol");
        assert_eq!(
            report.grants[1].review.to_string(),
            "pending (due 2026-11-27T01:40:00Z)"
        );
        assert_eq!(report.anomalies, []);
        let later = b.report(100 + 24 * 60 + 1);
        assert_eq!(
            later.grants[1].review,
            Review::Overdue {
                due: t(100 + 24 * 60)
            }
        );
        assert_eq!(
            kinds(&later),
            [("r-open".into(), AnomalyKind::ReviewOverdue)]
        );
        assert_eq!(later.grants[1].anomalies, [AnomalyKind::ReviewOverdue]);
    }

    #[test]
    fn reverts_without_grants_and_reconcile_removals() {
        let report = Builder::default()
            .revoke(0, "ghost", "ttl", None)
            .push(
                10,
                EventKind::Landed(LandedFact {
                    file: LandedFile::Request,
                    environment: Some("prod".into()),
                    request_id: "pushed".into(),
                    path: "requests/prod/pushed.yaml".into(),
                    modified: false,
                }),
            )
            .push(11, reconcile_removal("pushed", "prod"))
            .revoke(12, "other", "reconcile", None)
            .report(600);
        assert_eq!(
            kinds(&report),
            [
                ("ghost".into(), AnomalyKind::RevertWithoutGrant),
                ("pushed".into(), AnomalyKind::LandedWithoutBot),
                ("other".into(), AnomalyKind::RevertWithoutGrant),
            ]
        );
        assert_eq!(
            report.anomalies[1].detail,
            format!(
                "requests/prod/pushed.yaml was added without breakglass; removed by {} at 2026-11-26T00:11:00Z (reconcile)",
                short(oid(3))
            )
        );
        assert!(report.grants.is_empty());
    }

    #[test]
    fn a_removal_of_the_same_id_in_another_environment_ends_no_grant() {
        let report = Builder::default()
            .grant(0, "r-1", "carol", 240)
            .push(
                4,
                EventKind::Landed(LandedFact {
                    file: LandedFile::Request,
                    environment: Some("staging".into()),
                    request_id: "r-1".into(),
                    path: "requests/staging/r-1.yaml".into(),
                    modified: false,
                }),
            )
            .push(5, reconcile_removal("r-1", "staging"))
            .revoke(240, "r-1", "ttl", None)
            .report(600);
        // Before, the staging removal was taken as prod's revoke (at 5 minutes, "reconcile"),
        // and the real one at the expiry as a second revoke.
        assert_eq!(report.grants[0].revoked_at, Some(t(240)));
        assert_eq!(report.grants[0].revoked_how.as_deref(), Some("ttl"));
        assert_eq!(
            kinds(&report),
            [("r-1".into(), AnomalyKind::LandedWithoutBot)]
        );
        assert!(
            report.anomalies[0].detail.contains("removed by"),
            "{}",
            report.anomalies[0].detail
        );
    }

    // A member's hand-made merge commit with a grant's trailers and its request file reads
    // like the bot's grant; the bot then removes the file as one that landed without it
    // (`breakglass: remove …`, "never granted"). That removal disowns the merge: no grant row,
    // a `landed_without_bot` anomaly on the merge commit (a review of the helper round).
    #[test]
    fn a_grant_merge_the_bots_removal_disowns_is_no_grant() {
        let report = Builder::default()
            .grant(0, "ghost", "carol", 60)
            .push(2, reconcile_removal("ghost", "prod"))
            .report(600);
        assert!(report.grants.is_empty(), "{:?}", report.grants);
        assert_eq!(
            kinds(&report),
            [("ghost".into(), AnomalyKind::LandedWithoutBot)]
        );
        assert_eq!(report.anomalies[0].commit, oid(1));
        assert_eq!(
            report.anomalies[0].detail,
            format!(
                "a merge carrying grant trailers for ghost that breakglass did not make: its removal {} at 2026-11-26T00:02:00Z (reconcile) says it was never granted",
                short(oid(2))
            )
        );
        // A grant the bot revoked by reconciliation (a revoke, not a removal) stays a grant.
        let revoked = Builder::default()
            .grant(0, "r-1", "carol", 60)
            .revoke(2, "r-1", "reconcile", None)
            .report(600);
        assert_eq!(revoked.grants.len(), 1);
        assert!(revoked.anomalies.is_empty(), "{:?}", revoked.anomalies);
    }

    /// The bot's reconcile removal (`breakglass: remove …`) of request `id` in `environment`.
    fn reconcile_removal(id: &str, environment: &str) -> EventKind {
        EventKind::Revoke(RevokeFact {
            request_id: id.into(),
            reason: Some("reconcile".into()),
            revoked_by: None,
            reviewed_by: None,
            expires: TrailerTime::Missing,
            removal: true,
            environment: Some(environment.into()),
        })
    }

    fn landed_grant(path: &str, environment: Option<&str>) -> EventKind {
        let stem = path.rsplit('/').next().unwrap().split('.').next().unwrap();
        EventKind::Landed(LandedFact {
            file: LandedFile::Grant,
            environment: environment.map(Into::into),
            request_id: stem.into(),
            path: path.into(),
            modified: false,
        })
    }

    fn grant_removal(paths: &[&str]) -> EventKind {
        EventKind::Removal(RemovalFact {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        })
    }

    #[test]
    fn a_landed_grant_file_is_paired_with_the_removal_of_its_exact_path() {
        let report = Builder::default()
            .push(10, landed_grant("grants/network/evil.tf", None))
            .push(11, landed_grant("grants/prod/evil.tf", None))
            // Same name, another directory: not the removal of either file above.
            .push(12, grant_removal(&["grants/staging/evil.tf"]))
            .push(13, grant_removal(&["grants/network/evil.tf"]))
            .report(600);
        assert_eq!(
            kinds(&report),
            [
                ("evil".into(), AnomalyKind::LandedWithoutBot),
                ("evil".into(), AnomalyKind::LandedWithoutBot),
            ]
        );
        assert_eq!(
            report.anomalies[0].detail,
            format!(
                "grants/network/evil.tf was added without breakglass; removed by {} at 2026-11-26T00:13:00Z (reconcile)",
                short(oid(4))
            )
        );
        assert_eq!(report.anomalies[0].commit, oid(1));
        assert_eq!(
            report.anomalies[1].detail,
            "grants/prod/evil.tf was added without breakglass; no reconcile removal on the branch"
        );
        let before = Builder::default()
            .push(10, grant_removal(&["grants/network/evil.tf"]))
            .push(11, landed_grant("grants/network/evil.tf", None))
            .report(600);
        assert!(
            before.anomalies[0]
                .detail
                .ends_with("no reconcile removal on the branch"),
            "a removal before the landing is not its fate"
        );
    }

    #[test]
    fn a_grant_file_without_an_environment_is_shown_under_every_environment() {
        let mut b = Builder::default();
        b.push(10, landed_grant("grants/evil.tf", None))
            .push(11, grant_removal(&["grants/evil.tf"]))
            .push(12, landed_grant("grants/staging/quiet.tf", Some("staging")));
        let mut options = ReportOptions::new(t(600));
        options.environment = Some("prod".into());
        assert_eq!(
            kinds(&b.report_with(options.clone())),
            [("evil".into(), AnomalyKind::LandedWithoutBot)]
        );
        options.environment = Some("staging".into());
        assert_eq!(b.report_with(options.clone()).anomalies.len(), 2);
        options.since = Some(t(12));
        assert_eq!(
            kinds(&b.report_with(options.clone())),
            [("quiet".into(), AnomalyKind::LandedWithoutBot)],
            "the period still applies: evil was removed before it"
        );
        options.since = Some(t(11));
        assert_eq!(
            b.report_with(options).anomalies.len(),
            2,
            "evil was still there at the period's start"
        );
    }

    #[test]
    fn a_second_revoke_of_the_same_grant_is_flagged() {
        let report = Builder::default()
            .grant(0, "r-1", "carol", 60)
            .revoke(60, "r-1", "ttl", None)
            .revoke(61, "r-1", "ttl", None)
            .report(600);
        assert_eq!(
            kinds(&report),
            [("r-1".into(), AnomalyKind::RevertWithoutGrant)]
        );
        assert_eq!(
            report.anomalies[0].detail,
            format!(
                "Breakglass-Revokes: r-1 (ttl) but r-1 was already revoked by {}",
                short(oid(2))
            )
        );
        assert_eq!(report.grants[0].revoke_commit, Some(oid(2)));
    }

    #[test]
    fn a_revoke_before_its_grant_pairs_with_nothing() {
        let report = Builder::default()
            .revoke(0, "r-1", "ttl", None)
            .grant(10, "r-1", "carol", 60)
            .revoke(70, "r-1", "ttl", None)
            .report(600);
        assert_eq!(
            kinds(&report),
            [("r-1".into(), AnomalyKind::RevertWithoutGrant)]
        );
        assert_eq!(
            report.anomalies[0].detail,
            "Breakglass-Revokes: r-1 (ttl) but no grant merge for r-1 on main before it"
        );
        assert_eq!(report.grants[0].revoke_commit, Some(oid(3)));
    }

    #[test]
    fn a_repeated_id_pairs_with_its_latest_open_grant() {
        let report = Builder::default()
            .grant(0, "r-1", "carol", 600)
            .grant(10, "r-1", "carol", 60)
            .revoke(70, "r-1", "ttl", None)
            .revoke(600, "r-1", "ttl", None)
            .report(700);
        assert_eq!(report.anomalies, []);
        assert_eq!(report.grants[0].revoke_commit, Some(oid(4)));
        assert_eq!(report.grants[1].revoke_commit, Some(oid(3)));
    }

    #[test]
    fn malformed_grants_are_reported_not_dropped() {
        let mut b = Builder::default();
        b.push(
            0,
            EventKind::Grant(GrantFact {
                request_id: "r-bad".into(),
                expires: TrailerTime::Invalid("tomorrow".into()),
                review_due: TrailerTime::Invalid("soon".into()),
                ..GrantFact::default()
            }),
        );
        let report = b.report(6000);
        assert_eq!(
            kinds(&report),
            [("r-bad".into(), AnomalyKind::MalformedTrailers)]
        );
        assert_eq!(
            report.anomalies[0].detail,
            "missing Breakglass-Requester, Breakglass-Environment, Breakglass-Role, Breakglass-Approved-By; Breakglass-Expires `tomorrow` is not an ISO 8601 time; Breakglass-Review-Due `soon` is not an ISO 8601 time"
        );
        assert_eq!(report.grants[0].expires_at, None);
        assert_eq!(report.grants[0].review, Review::Pending { due: None });
    }

    #[test]
    fn a_forged_revoke_closes_nothing_and_a_forged_grant_opens_nothing() {
        let mut b = Builder::default();
        b.grant(0, "r-1", "carol", 60)
            .forged(30, "r-1", Claim::Revoke)
            .forged(40, "r-2", Claim::Grant)
            .revoke(50, "r-2", "ttl", None);
        let active = b.report(60);
        assert_eq!(active.grants.len(), 1, "the forged grant has no row");
        assert_eq!(active.grants[0].revoked_at, None, "still active");
        assert_eq!(
            kinds(&active),
            [
                ("r-1".into(), AnomalyKind::ForgedTrailers),
                ("r-2".into(), AnomalyKind::ForgedTrailers),
                ("r-2".into(), AnomalyKind::RevertWithoutGrant),
            ]
        );
        assert_eq!(
            active.anomalies[0].detail,
            "not counted as a revoke: the commit does not touch r-1"
        );
        assert_eq!(active.anomalies[0].commit, oid(2));
        assert_eq!(
            active.anomalies[1].detail,
            "not counted as a grant: the commit does not touch r-2"
        );
        let expired = b.report(600);
        assert!(
            kinds(&expired).contains(&("r-1".into(), AnomalyKind::GrantWithoutRevert)),
            "{:?}",
            kinds(&expired)
        );
    }

    #[test]
    fn forged_trailers_are_filtered_by_period_never_by_environment() {
        let mut b = Builder::default();
        b.forged(100, "r-1", Claim::Grant);
        let mut options = ReportOptions::new(t(600));
        options.environment = Some("staging".into());
        assert_eq!(
            kinds(&b.report_with(options.clone())),
            [("r-1".into(), AnomalyKind::ForgedTrailers)]
        );
        options.since = Some(t(101));
        assert_eq!(b.report_with(options).anomalies, []);
    }

    #[test]
    fn a_role_the_request_file_cannot_give_is_malformed() {
        let mut b = Builder::default();
        b.grant(0, "r-1", "carol", 60)
            .revoke(10, "r-1", "early", None);
        let EventKind::Grant(fact) = &mut b.0[0].kind else {
            unreachable!()
        };
        fact.role = None;
        fact.role_unreadable = Some("requests/prod/r-1.yaml names no role (bad)".into());
        let report = b.report(600);
        assert_eq!(
            kinds(&report),
            [("r-1".into(), AnomalyKind::MalformedTrailers)]
        );
        assert_eq!(
            report.anomalies[0].detail,
            "missing Breakglass-Role; requests/prod/r-1.yaml names no role (bad)"
        );
        assert_eq!(report.grants[0].role, "");
    }

    #[test]
    fn filters_apply_after_pairing() {
        let mut b = Builder::default();
        b.grant(0, "r-1", "carol", 60)
            .revoke(90, "r-1", "ttl", None) // late, but over before --since
            .grant(300, "r-2", "carol", 60)
            .revoke(360, "r-2", "ttl", None)
            .revoke(400, "ghost", "ttl", None);
        let mut options = ReportOptions::new(t(1000));
        options.since = Some(t(100));
        let report = b.report_with(options.clone());
        assert_eq!(
            report
                .grants
                .iter()
                .map(|g| g.request_id.as_str())
                .collect::<Vec<_>>(),
            ["r-2"]
        );
        assert_eq!(
            kinds(&report),
            [("ghost".into(), AnomalyKind::RevertWithoutGrant)],
            "r-2's revoke paired although r-1's late revoke is outside the period"
        );
        options.until = Some(t(399));
        assert_eq!(b.report_with(options.clone()).anomalies, []);
        options.since = None;
        options.environment = Some("staging".into());
        assert_eq!(b.report_with(options).grants, []);
    }

    #[test]
    fn anomalies_are_in_history_order() {
        let report = Builder::default()
            .grant(0, "r-1", "alice", 60) // self-approved at position 0, late revoke at 2
            .revoke(10, "ghost", "early", None)
            .revoke(500, "r-1", "ttl", None)
            .report(600);
        assert_eq!(
            kinds(&report),
            [
                ("r-1".into(), AnomalyKind::SelfApproved),
                ("ghost".into(), AnomalyKind::RevertWithoutGrant),
                ("r-1".into(), AnomalyKind::LateRevert),
            ]
        );
        assert_eq!(
            report.grants[0].anomalies,
            [AnomalyKind::LateRevert, AnomalyKind::SelfApproved]
        );
    }

    #[test]
    fn every_kind_has_a_distinct_name() {
        let names: std::collections::BTreeSet<_> =
            AnomalyKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), AnomalyKind::ALL.len());
    }
}
