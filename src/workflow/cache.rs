//! What the bot reads again and again and what rarely changes, kept in memory: the default
//! branch's name and policies, and team memberships.
//!
//! - **Policies** are served until a push to the default branch touches the policies directory
//!   (whichever replica handles that push bumps the cache's epoch in the store, and every
//!   replica compares epochs before serving its copy: one local database read, no forge call),
//!   and at most [`POLICIES_MAX_AGE`] by the bot's clock, in case a push webhook never came.
//! - **The default branch's head** is served from the last push webhook to the default branch
//!   (or the bot's own last merge into it) at the policies' epoch, for at most
//!   [`DEFAULT_HEAD_MAX_AGE`]. An older head is harmless to build a change on (its PR's diff is
//!   still only the bot's files); a head that a force push removed from the branch is caught by
//!   the merge guard, which checks at merge time what the PR would bring in.
//! - **The default branch's name** is served for [`BRANCH_NAME_MAX_AGE`] on GitHub, where
//!   nothing that decides rests on it alone: policies are read from the default branch without
//!   naming it (GitHub's contents API reads the default branch when given no ref), the merge
//!   guard checks a PR's base against the name that PR's own read carries, and every such read
//!   and every push webhook says the name again. On GitLab, which reads by name, it is read
//!   with the policies (at most [`POLICIES_MAX_AGE`]).
//! - **Memberships** are served for [`MEMBERSHIP_MAX_AGE`]: the forge sends no repository
//!   webhook when a team changes, so a person taken off a team keeps that team's rights in
//!   the bot for at most this long.
//! - **The request directories' listing** is what reconciliation compares active grants with,
//!   as a net for a push whose webhook never came. It is skipped while the pushes to the
//!   default branch since the last listing are a [`PushChain`] without a gap: each push's
//!   `before` was the `after` of the one handled before it, each was the bot's own (a merge
//!   its guard checked), and each listed all its commits; so every file that left the branch
//!   left it in a push the bot handled. A gap (a lost webhook shows as the next push's
//!   `before` not matching), anyone else's push, or [`LISTING_MAX_AGE`] lists again: a lost
//!   webhook of the very last push is caught within that age at most.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

use crate::policy::{PolicySet, Problem};

/// The longest a copy of the policies is served without a push saying it is still current.
pub const POLICIES_MAX_AGE: TimeDelta = TimeDelta::minutes(5);
/// The longest a head of the default branch is built on without a push or merge saying it
/// again (an older one is harmless, see above; this bounds how far behind a change may start).
pub const DEFAULT_HEAD_MAX_AGE: TimeDelta = TimeDelta::hours(1);
/// The longest the default branch's name is served on GitHub without the forge saying it again.
pub const BRANCH_NAME_MAX_AGE: TimeDelta = TimeDelta::hours(1);
/// The longest the repository's settings (GitHub's "Automatically delete head branches") are
/// trusted without reading the repository again.
pub const REPOSITORY_SETTINGS_MAX_AGE: TimeDelta = TimeDelta::hours(1);
/// The longest a team membership is served without asking the forge again.
pub const MEMBERSHIP_MAX_AGE: TimeDelta = TimeDelta::seconds(60);
/// The longest reconciliation trusts the push webhooks instead of listing the request
/// directories (see above).
pub const LISTING_MAX_AGE: TimeDelta = TimeDelta::hours(1);
/// A push listing this many commits may have been cut short (GitLab sends at most 20).
pub(super) const PUSH_COMMITS_CUT_AT: usize = 20;

/// The default branch and its policies, as read at one epoch.
pub(super) type Policies = (String, Result<PolicySet, Vec<Problem>>);

#[derive(Debug)]
struct CachedPolicies {
    policies: Policies,
    epoch: i64,
    read_at: DateTime<Utc>,
}

/// A head of the default branch, as a push webhook or a merge said.
#[derive(Debug)]
struct CachedHead {
    sha: String,
    epoch: i64,
    seen_at: DateTime<Utc>,
}

/// A membership answer: member or not, and when the forge said so.
type Membership = (bool, DateTime<Utc>);

/// The pushes to the default branch this replica handled since it last listed the request
/// directories. (Each replica keeps its own: with several, a push another replica handled is a
/// gap, and the next pass lists.)
#[derive(Debug, Default)]
struct PushChain {
    /// The `after` of the last push handled.
    head: Option<String>,
    /// How many gaps were seen, ever: a listing is good only if none came while it was made.
    gaps: u64,
    /// Whether the pushes since the last good listing left no gap.
    unbroken: bool,
    listed_at: Option<DateTime<Utc>>,
}

/// One push to the default branch, as its webhook said.
#[derive(Debug)]
pub(super) struct HandledPush<'a> {
    pub before: &'a str,
    pub after: &'a str,
    /// The bot made it (its own merge).
    pub by_bot: bool,
    /// How many commits the webhook listed.
    pub commits: usize,
}

/// The caches of one workflow (one forge and repository). Cheap to share.
#[derive(Debug, Default)]
pub(super) struct Caches {
    policies: Mutex<Option<CachedPolicies>>,
    default_head: Mutex<Option<CachedHead>>,
    /// The default branch's name, and when the forge said it.
    branch_name: Mutex<Option<(String, DateTime<Utc>)>>,
    /// When the repository itself (with its settings) was last read.
    repository_read_at: Mutex<Option<DateTime<Utc>>>,
    /// `(group, login)` → member or not, and when the forge said so.
    memberships: Mutex<HashMap<(String, String), Membership>>,
    pushes: Mutex<PushChain>,
    /// Request id → the blob of its request file as checked at its merge (a requester's own
    /// file, which the bot did not write), so that its revert deletes it without a read.
    request_blobs: Mutex<HashMap<String, String>>,
    /// (head commit, path) → a request file's text at that commit, as its decision had it. A
    /// commit's file never changes, so the merge's check takes it from here without a read.
    request_texts: Mutex<HashMap<(String, String), String>>,
    /// PRs left undecided because the policies were invalid: decided once they are fixed.
    awaiting_policies: Mutex<BTreeSet<u64>>,
    /// PR → the extension asks (their signals) known at its last reaction poll here, while
    /// there are any.
    polled_asks: Mutex<HashMap<u64, BTreeSet<String>>>,
}

/// The most request blobs (and request texts) kept (a replica restarting, or holding more,
/// reads the file).
const REQUEST_BLOBS_KEPT: usize = 10_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The data is a cache: after a panic elsewhere it is still a valid (if stale) copy.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Caches {
    /// The policies read at `epoch`, unless older than [`POLICIES_MAX_AGE`] at `now`.
    pub fn policies(&self, epoch: i64, now: DateTime<Utc>) -> Option<Policies> {
        lock(&self.policies)
            .as_ref()
            .filter(|c| c.epoch == epoch && fresh(c.read_at, now, POLICIES_MAX_AGE))
            .map(|c| c.policies.clone())
    }

    /// Keeps `policies`, read from the forge at `epoch` (read before reading them, so that a
    /// push during the read makes this copy stale at once).
    pub fn keep_policies(&self, policies: &Policies, epoch: i64, read_at: DateTime<Utc>) {
        *lock(&self.policies) = Some(CachedPolicies {
            policies: policies.clone(),
            epoch,
            read_at,
        });
    }

    /// Notes that PR `number` was left undecided for invalid policies; `false` when it was
    /// noted already (and told so).
    pub fn await_valid_policies(&self, number: u64) -> bool {
        lock(&self.awaiting_policies).insert(number)
    }

    /// Notes the extension asks `asks` known at a reaction poll of PR `number`; `true` when
    /// they are not those of its last poll here (an ask stored since): emoji read before it
    /// could not approve it, and are to be read again.
    pub fn asks_changed(&self, number: u64, asks: BTreeSet<String>) -> bool {
        let mut polled = lock(&self.polled_asks);
        if asks.is_empty() {
            polled.remove(&number);
            return false;
        }
        polled.insert(number, asks.clone()).as_ref() != Some(&asks)
    }

    /// The PRs left undecided for invalid policies, forgotten here (those still undecided are
    /// noted again when decided).
    pub fn take_awaiting_policies(&self) -> Vec<u64> {
        std::mem::take(&mut *lock(&self.awaiting_policies))
            .into_iter()
            .collect()
    }

    /// Forgets the policies (this replica's copy; others compare epochs).
    pub fn forget_policies(&self) {
        *lock(&self.policies) = None;
    }

    /// The default branch's head seen at `epoch`, unless older than [`DEFAULT_HEAD_MAX_AGE`].
    pub fn default_head(&self, epoch: i64, now: DateTime<Utc>) -> Option<String> {
        lock(&self.default_head)
            .as_ref()
            .filter(|c| c.epoch == epoch && fresh(c.seen_at, now, DEFAULT_HEAD_MAX_AGE))
            .map(|c| c.sha.clone())
    }

    /// Keeps `sha` as the default branch's head, seen at `epoch` (read before the head was).
    pub fn keep_default_head(&self, sha: &str, epoch: i64, seen_at: DateTime<Utc>) {
        *lock(&self.default_head) = Some(CachedHead {
            sha: sha.to_owned(),
            epoch,
            seen_at,
        });
    }

    /// Forgets the default branch's head (this replica's copy).
    pub fn forget_default_head(&self) {
        *lock(&self.default_head) = None;
    }

    /// The default branch's name, unless older than `max_age` at `now`.
    pub fn branch_name(&self, now: DateTime<Utc>, max_age: TimeDelta) -> Option<String> {
        lock(&self.branch_name)
            .as_ref()
            .filter(|(_, at)| fresh(*at, now, max_age))
            .map(|(name, _)| name.clone())
    }

    /// Keeps `name` as the default branch's name, as the forge said at `at`.
    pub fn keep_branch_name(&self, name: &str, at: DateTime<Utc>) {
        *lock(&self.branch_name) = Some((name.to_owned(), at));
    }

    /// Keeps the blob of request `id`'s file as merged. A stale one costs nothing but a read:
    /// the forge refuses a deletion by a blob the file no longer is.
    pub fn keep_request_blob(&self, id: &str, blob: &str) {
        let mut blobs = lock(&self.request_blobs);
        if blobs.len() >= REQUEST_BLOBS_KEPT {
            blobs.clear();
        }
        blobs.insert(id.to_owned(), blob.to_owned());
    }

    /// The blob of request `id`'s file as merged, when this replica kept it.
    pub fn request_blob(&self, id: &str) -> Option<String> {
        lock(&self.request_blobs).get(id).cloned()
    }

    /// Keeps the text of request file `path` at commit `head`.
    pub fn keep_request_text(&self, head: &str, path: &str, text: &str) {
        let mut texts = lock(&self.request_texts);
        if texts.len() >= REQUEST_BLOBS_KEPT {
            texts.clear();
        }
        texts.insert((head.to_owned(), path.to_owned()), text.to_owned());
    }

    /// The text of request file `path` at commit `head`, when this replica kept it.
    pub fn request_text(&self, head: &str, path: &str) -> Option<String> {
        lock(&self.request_texts)
            .get(&(head.to_owned(), path.to_owned()))
            .cloned()
    }

    /// Whether the repository was read less than [`REPOSITORY_SETTINGS_MAX_AGE`] before `now`.
    pub fn repository_settings_fresh(&self, now: DateTime<Utc>) -> bool {
        lock(&self.repository_read_at).is_some_and(|at| fresh(at, now, REPOSITORY_SETTINGS_MAX_AGE))
    }

    /// The repository (its default branch and settings) was read at `at`.
    pub fn keep_repository_read(&self, at: DateTime<Utc>) {
        *lock(&self.repository_read_at) = Some(at);
    }

    /// Whether `login` is in `group`, as the forge said less than [`MEMBERSHIP_MAX_AGE`] ago.
    pub fn membership(&self, group: &str, login: &str, now: DateTime<Utc>) -> Option<bool> {
        lock(&self.memberships)
            .get(&(group.to_owned(), login.to_owned()))
            .filter(|(_, at)| fresh(*at, now, MEMBERSHIP_MAX_AGE))
            .map(|(member, _)| *member)
    }

    pub fn keep_membership(&self, group: &str, login: &str, member: bool, at: DateTime<Utc>) {
        let mut memberships = lock(&self.memberships);
        // Bounded: stale entries go whenever the map grows large.
        if memberships.len() >= 10_000 {
            memberships.retain(|_, (_, seen)| fresh(*seen, at, MEMBERSHIP_MAX_AGE));
        }
        memberships.insert((group.to_owned(), login.to_owned()), (member, at));
    }

    /// Whether reconciliation must list the request directories at `now` (see above).
    pub fn listing_needed(&self, now: DateTime<Utc>) -> bool {
        let chain = lock(&self.pushes);
        !chain.unbroken
            || chain
                .listed_at
                .is_none_or(|at| !fresh(at, now, LISTING_MAX_AGE))
    }

    /// A listing starts: what [`Caches::listing_done`] needs to know whether a gap came meanwhile.
    pub fn listing_started(&self) -> u64 {
        lock(&self.pushes).gaps
    }

    /// A listing that started at `started` (and at `at` by the bot's clock) compared every
    /// active grant.
    pub fn listing_done(&self, started: u64, at: DateTime<Utc>) {
        let mut chain = lock(&self.pushes);
        chain.unbroken = chain.gaps == started;
        chain.listed_at = Some(at);
    }

    /// A push to the default branch was handled in full (its removed files reconciled).
    pub fn push_handled(&self, push: &HandledPush<'_>) {
        let mut chain = lock(&self.pushes);
        let continues = chain.head.as_deref() == Some(push.before)
            && push.by_bot
            && push.commits > 0
            && push.commits < PUSH_COMMITS_CUT_AT;
        if !continues {
            chain.gaps += 1;
            chain.unbroken = false;
        }
        chain.head = Some(push.after.to_owned());
    }
}

/// Read at `read_at`, still young enough at `now` (a clock that went back is not trusted).
fn fresh(read_at: DateTime<Utc>, now: DateTime<Utc>, max_age: TimeDelta) -> bool {
    now >= read_at && now - read_at < max_age
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, 2, 0, 0).unwrap() + TimeDelta::seconds(secs)
    }

    fn policies() -> Policies {
        ("main".into(), Ok(PolicySet::default()))
    }

    #[test]
    fn policies_are_served_at_their_epoch_until_they_are_too_old() {
        let caches = Caches::default();
        assert!(caches.policies(0, at(0)).is_none());
        caches.keep_policies(&policies(), 3, at(0));
        assert_eq!(
            caches.policies(3, at(299)).map(|p| p.0),
            Some("main".into())
        );
        assert!(caches.policies(4, at(1)).is_none(), "a newer epoch");
        assert!(caches.policies(3, at(300)).is_none(), "too old");
        assert!(
            caches.policies(3, at(-1)).is_none(),
            "a clock that went back"
        );
        caches.forget_policies();
        assert!(caches.policies(3, at(1)).is_none());
    }

    #[test]
    fn the_default_head_is_served_at_its_epoch_until_it_is_too_old() {
        let caches = Caches::default();
        assert!(caches.default_head(0, at(0)).is_none());
        caches.keep_default_head("abc", 2, at(0));
        assert_eq!(caches.default_head(2, at(3599)).as_deref(), Some("abc"));
        assert!(caches.default_head(3, at(1)).is_none(), "a newer epoch");
        assert!(caches.default_head(2, at(3600)).is_none(), "too old");
        caches.keep_default_head("def", 2, at(10));
        assert_eq!(caches.default_head(2, at(11)).as_deref(), Some("def"));
        caches.forget_default_head();
        assert!(caches.default_head(2, at(11)).is_none());
    }

    #[test]
    fn the_branch_name_is_served_until_it_is_too_old() {
        let caches = Caches::default();
        let hour = BRANCH_NAME_MAX_AGE;
        assert!(caches.branch_name(at(0), hour).is_none());
        caches.keep_branch_name("main", at(0));
        assert_eq!(caches.branch_name(at(3599), hour).as_deref(), Some("main"));
        assert!(caches.branch_name(at(3600), hour).is_none(), "too old");
        assert!(caches.branch_name(at(299), POLICIES_MAX_AGE).is_some());
        assert!(caches.branch_name(at(300), POLICIES_MAX_AGE).is_none());
        caches.keep_branch_name("trunk", at(10));
        assert_eq!(caches.branch_name(at(11), hour).as_deref(), Some("trunk"));
    }

    fn push<'a>(before: &'a str, after: &'a str, by_bot: bool) -> HandledPush<'a> {
        HandledPush {
            before,
            after,
            by_bot,
            commits: 2,
        }
    }

    #[test]
    fn the_listing_is_skipped_only_after_the_bots_own_pushes_without_a_gap() {
        let caches = Caches::default();
        assert!(caches.listing_needed(at(0)), "never listed");
        let started = caches.listing_started();
        caches.listing_done(started, at(0));
        assert!(!caches.listing_needed(at(1)));
        // The first push after a start: where the chain began is unknown.
        caches.push_handled(&push("a", "b", true));
        assert!(caches.listing_needed(at(2)));
        caches.listing_done(caches.listing_started(), at(2));
        caches.push_handled(&push("b", "c", true));
        caches.push_handled(&push("c", "d", true));
        assert!(
            !caches.listing_needed(at(3)),
            "the bot's merges, one after the other"
        );
        caches.push_handled(&push("x", "y", true));
        assert!(
            caches.listing_needed(at(4)),
            "a push in between whose webhook was lost"
        );
        caches.listing_done(caches.listing_started(), at(4));
        caches.push_handled(&push("y", "z", false));
        assert!(caches.listing_needed(at(5)), "someone else's push");
        caches.listing_done(caches.listing_started(), at(5));
        let cut = HandledPush {
            commits: PUSH_COMMITS_CUT_AT,
            ..push("z", "w", true)
        };
        caches.push_handled(&cut);
        assert!(
            caches.listing_needed(at(6)),
            "a push whose commits may be cut short"
        );
        caches.listing_done(caches.listing_started(), at(6));
        let moved_back = HandledPush {
            commits: 0,
            ..push("w", "v", true)
        };
        caches.push_handled(&moved_back);
        assert!(caches.listing_needed(at(7)), "a push listing no commit");
        caches.listing_done(caches.listing_started(), at(7));
        assert!(!caches.listing_needed(at(7 + 3599)));
        assert!(caches.listing_needed(at(7 + 3600)), "too old");
    }

    #[test]
    fn a_gap_during_a_listing_makes_it_no_good() {
        let caches = Caches::default();
        caches.listing_done(caches.listing_started(), at(0));
        caches.push_handled(&push("a", "b", true));
        caches.listing_done(caches.listing_started(), at(1));
        let started = caches.listing_started();
        caches.push_handled(&push("q", "r", true));
        caches.listing_done(started, at(2));
        assert!(caches.listing_needed(at(3)));
    }

    #[test]
    fn memberships_are_served_for_a_minute_per_group_and_login() {
        let caches = Caches::default();
        caches.keep_membership("acme/oncall", "bob", true, at(0));
        caches.keep_membership("acme/oncall", "eve", false, at(0));
        assert_eq!(caches.membership("acme/oncall", "bob", at(59)), Some(true));
        assert_eq!(caches.membership("acme/oncall", "eve", at(59)), Some(false));
        assert_eq!(caches.membership("acme/sre", "bob", at(1)), None);
        assert_eq!(caches.membership("acme/oncall", "bob", at(60)), None);
    }
}
