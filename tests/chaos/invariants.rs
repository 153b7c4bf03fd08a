//! What must hold, read from the three records: git (the forge's repository), the forge's
//! comments (on GitLab an MR's notes, found by its iid), and the store (requests and the event
//! log). Each check returns the violations it found, in words; the driver prefixes them with
//! the seed.

use std::collections::{BTreeMap, BTreeSet};

use breakglass::store::{EventKind, EventRecord, RequestRecord, RequestState, RevokeReason};
use chrono::{DateTime, TimeDelta, Utc};

use super::clock::ChaosClock;
use super::world::{AwsWorld, REPO, World, iam_role};

/// How late a revocation may be, after the expiry or the service's return, whichever is later,
/// in the clock's running time (its jumps not counted).
pub const REVOKE_GRACE: TimeDelta = TimeDelta::seconds(5);

/// Everything read once per check.
pub struct Snapshot {
    pub records: Vec<RequestRecord>,
    pub events: Vec<EventRecord>,
    /// Merge commits on the default branch, by message.
    pub merges: Vec<String>,
    pub files: Vec<String>,
}

impl Snapshot {
    pub async fn read(world: &World) -> Snapshot {
        let records = world.store.list_requests(None).await.expect("requests");
        let mut events = Vec::new();
        loop {
            let after = events.last().map_or(0, |e: &EventRecord| e.seq);
            let page = world.store.events(after, 1000).await.expect("events");
            if page.is_empty() {
                break;
            }
            events.extend(page);
        }
        let merges = world
            .forge
            .log(REPO, "main")
            .into_iter()
            .filter(|c| c.parents.len() == 2)
            .map(|c| c.message)
            .collect();
        let files = world
            .forge
            .files_on(REPO, "main")
            .into_iter()
            .filter(|f| f.starts_with("requests/"))
            .collect();
        Snapshot {
            records,
            events,
            merges,
            files,
        }
    }

    fn events_of(&self, id: &str, kind: EventKind) -> usize {
        self.events
            .iter()
            .filter(|e| e.kind == kind && e.request_id.as_ref().is_some_and(|r| r.as_str() == id))
            .count()
    }

    fn merges_with(&self, trailer: &str, id: &str) -> usize {
        let line = format!("{trailer}: {id}");
        self.merges
            .iter()
            .filter(|m| m.lines().any(|l| l.trim() == line))
            .count()
    }
}

fn path_of(r: &RequestRecord) -> String {
    format!("requests/{}/{}.yaml", r.environment, r.id)
}

/// Nothing happened twice: per request at most one merge, grant and revoke in the event log,
/// one grant merge and one revert merge in git, one "granted" and one "revoked" comment.
/// With `complete`, everything that was granted happened exactly once, and a grant that was
/// applied was announced.
pub fn exactly_once(snap: &Snapshot, world: &World, complete: bool) -> Vec<String> {
    let mut found = Vec::new();
    let bot = &world.people.bot.login;
    for r in &snap.records {
        let id = r.id.as_str();
        let granted = r.granted_at.is_some();
        // The record's number is the one the bot knows: an MR's iid on GitLab.
        let comments = world.change_comments(r.pr_number);
        let said = |prefix: &str| {
            comments
                .iter()
                .filter(|c| &c.user == bot && c.body.starts_with(prefix))
                .count()
        };
        let counts = [
            ("merge events", snap.events_of(id, EventKind::Merge)),
            ("grant events", snap.events_of(id, EventKind::Grant)),
            ("revoke events", snap.events_of(id, EventKind::Revoke)),
            (
                "grant merges in git",
                snap.merges_with("Breakglass-Request", id),
            ),
            (
                "revert merges in git",
                snap.merges_with("Breakglass-Revokes", id),
            ),
            ("granted comments", said("🔓 **Access granted")),
            ("revoked comments", said("🔒 **Access revoked")),
        ];
        // A grant whose expiry passed before its grant step ran (the service down meanwhile)
        // is revoked first and never applied: neither logged nor announced.
        let applied = snap.events_of(id, EventKind::Grant).min(1);
        for (what, n) in counts {
            let expected = match what {
                "grant events" => applied,
                "granted comments" if complete => applied,
                _ if complete && granted => 1,
                _ => n.min(1),
            };
            if n != expected {
                found.push(format!("{id}: {n} {what}, expected {expected}"));
            }
        }
    }
    found
}

/// `requests/` on the default branch lists exactly the active grants (read when settled).
pub fn files_match_active(snap: &Snapshot) -> Vec<String> {
    let active: BTreeSet<String> = snap
        .records
        .iter()
        .filter(|r| r.state == RequestState::Active)
        .map(path_of)
        .collect();
    let files: BTreeSet<String> = snap.files.iter().cloned().collect();
    let mut found = Vec::new();
    for missing in active.difference(&files) {
        found.push(format!("active grant without its file on main: {missing}"));
    }
    for extra in files.difference(&active) {
        found.push(format!("file on main without an active grant: {extra}"));
    }
    found
}

/// No request is stored twice (one ticket, one request) and none is stuck half-way.
pub fn no_duplicates(snap: &Snapshot) -> Vec<String> {
    let mut by_ticket: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for r in &snap.records {
        if let Some(t) = &r.ticket {
            by_ticket
                .entry(t.to_string())
                .or_default()
                .push(r.id.as_str());
        }
    }
    by_ticket
        .into_iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(ticket, ids)| format!("{ticket} was stored {} times: {ids:?}", ids.len()))
        .collect()
}

/// When the services were up, on the chaos clock: (ready, killed).
#[derive(Default)]
pub struct Uptime(pub Vec<(DateTime<Utc>, Option<DateTime<Utc>>)>);

impl Uptime {
    /// The first instant at or after `t` at which some replica was serving.
    pub fn first_up(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.0
            .iter()
            .filter(|(_, end)| end.is_none_or(|end| end > t))
            .map(|(start, _)| (*start).max(t))
            .min()
    }
}

/// From when a TTL revocation of a grant expiring at `expires` is owed: the expiry as the
/// clock first showed it, or the service's return if none was up then.
pub fn revoke_owed_from(
    expires: DateTime<Utc>,
    clock: &ChaosClock,
    uptime: &Uptime,
) -> Option<DateTime<Utc>> {
    uptime.first_up(clock.first_seen(expires))
}

/// TTL revocations on time: each within [`REVOKE_GRACE`] of the clock's running time after it
/// was owed. A jump is no time the service had: a jump of twenty minutes that starts a few
/// milliseconds after an expiry leaves the service those milliseconds, not twenty minutes.
/// Returns violations and, for the figures, the latest lateness seen (running time from owed
/// to revoked).
pub fn revocations_on_time(
    snap: &Snapshot,
    clock: &ChaosClock,
    uptime: &Uptime,
) -> (Vec<String>, TimeDelta) {
    let now = clock.now();
    let mut found = Vec::new();
    let mut worst = TimeDelta::zero();
    for r in &snap.records {
        let Some(expires) = r.expires_at else {
            continue;
        };
        if r.revoke_reason.is_some_and(|why| why != RevokeReason::Ttl) || expires > now {
            continue;
        }
        let Some(owed) = revoke_owed_from(expires, clock, uptime) else {
            continue;
        };
        match (r.state, r.revoked_at) {
            (RequestState::Revoked, Some(at)) => {
                let took = clock.running_between(owed, at);
                worst = worst.max(took);
                if took > REVOKE_GRACE {
                    found.push(format!(
                        "{}: revoked at {at}, {} s of running clock after it was owed at {owed}",
                        r.id,
                        took.num_milliseconds() as f64 / 1000.0
                    ));
                }
            }
            _ if clock.running_between(owed, now) > REVOKE_GRACE => found.push(format!(
                "{}: still {} at {now}, owed its revocation since {owed}",
                r.id, r.state
            )),
            _ => {}
        }
    }
    (found, worst)
}

/// The provider agrees with the store (read when settled): a person's IAM role holds prod's
/// `admin` policy exactly while one of their prod `admin` grants is active. Overlapping grants
/// of one person share the attachment; the last one to end takes it away. Also returns how
/// many roles hold the policy.
pub async fn iam_matches_active(snap: &Snapshot, aws: &AwsWorld) -> (Vec<String>, usize) {
    let mut holders: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in &snap.records {
        if r.environment.as_str() == "prod" && r.role.as_str() == "admin" {
            let active = holders.entry(r.requester_login.as_str()).or_default();
            if r.state == RequestState::Active {
                active.push(r.id.as_str());
            }
        }
    }
    let (mut found, mut holding) = (Vec::new(), 0);
    for (login, active) in holders {
        let attached = aws.attached(login).await;
        holding += usize::from(attached);
        if attached && active.is_empty() {
            found.push(format!(
                "IAM role {} holds the prod admin policy with no active grant",
                iam_role(login)
            ));
        }
        if !attached && !active.is_empty() {
            found.push(format!(
                "IAM role {} lacks the prod admin policy of active grant(s) {active:?}",
                iam_role(login)
            ));
        }
    }
    (found, holding)
}
