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

use std::collections::HashMap;
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
/// The longest a team membership is served without asking the forge again.
pub const MEMBERSHIP_MAX_AGE: TimeDelta = TimeDelta::seconds(60);

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

/// The caches of one workflow (one forge and repository). Cheap to share.
#[derive(Debug, Default)]
pub(super) struct Caches {
    policies: Mutex<Option<CachedPolicies>>,
    default_head: Mutex<Option<CachedHead>>,
    /// The default branch's name, and when the forge said it.
    branch_name: Mutex<Option<(String, DateTime<Utc>)>>,
    /// `(group, login)` → member or not, and when the forge said so.
    memberships: Mutex<HashMap<(String, String), Membership>>,
}

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
