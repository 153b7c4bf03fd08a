//! A head that went away and came back while the bot was not listening.
//!
//! Approvals are timed against the push of the head they approve. A push the bot did not hear
//! (it was down, refused the delivery, or the delivery was lost on the way) leaves that time as
//! it was: a branch pushed from A to B and back to A meanwhile still shows A's first push, and
//! an approval given while it showed B would count for A. So before approvals merge a request,
//! the forge's own record of the head's moves is read (one call per approved request, in the
//! merge's last round beside the guard's read of the PR: no round trip on the way to access): a
//! move after the head's time stops the merge and decides the request again from it.

use chrono::{DateTime, TimeDelta, Utc};

use super::{Workflow, stored_decision};
use crate::forge::{HeadMove, PullRequestInfo};
use crate::store::RequestRecord;

/// What the check of one request's head needs, taken from its record (so that the check runs
/// beside work that holds the record).
pub(super) struct HeadCheck {
    pr: u64,
    head: String,
    /// The head's time; `None` when no timed approval counts (none needed, or none timed):
    /// nothing to check.
    since: Option<DateTime<Utc>>,
    /// Whether `since` is only a bound on the head's push (see [`unheard`]).
    is_bound: bool,
}

impl HeadCheck {
    pub(super) fn of(record: &RequestRecord) -> anyhow::Result<Self> {
        let stored = stored_decision(record)?;
        // The expiry's commit is the bot's own, made in the merge step after the version it
        // continues was checked for unheard moves: a push to its branch since is tampering,
        // which the merge guard's pinned head refuses.
        let counts_approvals =
            stored.decision.approvals_required > 0 && stored.stamp_at(&record.head_sha).is_none();
        Ok(Self {
            pr: record.pr_number,
            head: record.head_sha.clone(),
            since: stored.head_since.filter(|_| counts_approvals),
            is_bound: stored.head_since_is_bound,
        })
    }
}

/// A move of a request's head the bot did not hear (see [`Workflow::unheard_move`]).
pub(super) struct Unheard {
    /// The head it moved to, when the forge says (GitLab); empty when not.
    sha: String,
    at: DateTime<Utc>,
    since: DateTime<Utc>,
}

impl Unheard {
    /// The push to decide the request again from, given its PR as read with (or after) the
    /// history: at the move's time to the head the forge names; else (GitHub, which does not
    /// say which head came back when) at the PR's latest update at the latest. `None` when the
    /// PR was not updated since the head's time: it was not pushed since (a push updates it).
    pub(super) fn push(self, pr: &PullRequestInfo) -> Option<(String, DateTime<Utc>)> {
        if !self.sha.is_empty() {
            return Some((self.sha, self.at));
        }
        match pr.updated_at {
            Some(u) if u.timestamp() <= self.since.timestamp() => None,
            Some(u) => Some((self.sha, u.max(self.at))),
            None => Some((self.sha, self.at)),
        }
    }
}

impl Workflow {
    /// Whether the head `check` is about moved after its time without the bot hearing it, by
    /// the forge's own record of the head's moves (one call; none when no timed approval
    /// counts). Read right before approvals merge a request, in the merge's last round.
    pub(super) async fn unheard_move(&self, check: &HeadCheck) -> anyhow::Result<Option<Unheard>> {
        let Some(since) = check.since else {
            return Ok(None);
        };
        let moved = self.forge.latest_head_move(check.pr).await?;
        let found = moved.and_then(|m| unheard(&m, &check.head, since, check.is_bound));
        Ok(found.map(|(sha, at)| Unheard { sha, at, since }))
    }

    /// Decides `record` again as the unheard push to `pushed` would have had it: its head came
    /// back then, approvals given before no longer count, and their approvers are asked again.
    pub(super) async fn decide_after_unheard_push(
        &self,
        pr: crate::forge::PullRequestState,
        record: RequestRecord,
        pushed: (String, DateTime<Utc>),
    ) -> anyhow::Result<()> {
        tracing::warn!(request = %record.id, pr = record.pr_number, moved_at = %pushed.1, "the head moved unheard: approvals given before it came back do not count");
        self.evaluate_current(pr, Some(record), Some(pushed), None, true)
            .await
    }
}

/// Whether `moved` (the forge's newest move of a PR's head) is one the bot did not hear since
/// `head`'s time `since`, as the push to announce: at `moved`'s time, to `head` when the forge
/// says so (GitLab), else to a head not known (GitHub: the PR's latest update bounds when `head`
/// came back). Whole seconds on both sides. A rewrite GitHub dates in `since`'s own second is
/// taken for the push of `head` itself when `since` is that push's time as heard, and for a
/// move when `since` is only a bound on it (`is_bound`).
pub(super) fn unheard(
    moved: &HeadMove,
    head: &str,
    since: DateTime<Utc>,
    is_bound: bool,
) -> Option<(String, DateTime<Utc>)> {
    // Later than `since`, so that the decision takes it as a move back to this head.
    let after_since = |at: DateTime<Utc>| at.max(since + TimeDelta::seconds(1));
    let later = |at: DateTime<Utc>| at.timestamp() > since.timestamp();
    match (&moved.sha, moved.at) {
        (Some(sha), Some(at)) if sha == head => later(at).then(|| (sha.clone(), at)),
        // The forge's newest head is another one: a push right now (its webhook on the way).
        (Some(sha), Some(at)) => Some((sha.clone(), after_since(at))),
        (None, Some(at)) => {
            let same_second = at.timestamp() == since.timestamp();
            (later(at) || (same_second && is_bound)).then(|| (String::new(), after_since(at)))
        }
        (_, None) => Some((String::new(), after_since(since))),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(millis: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, 2, 0, 0).unwrap() + TimeDelta::milliseconds(millis)
    }

    fn moved(sha: Option<&str>, at: Option<DateTime<Utc>>) -> HeadMove {
        HeadMove {
            at,
            sha: sha.map(str::to_owned),
        }
    }

    #[test]
    fn a_named_head_counts_as_moved_only_when_pushed_in_a_later_second() {
        let since = t(10_000);
        let named = |at| unheard(&moved(Some("a"), Some(at)), "a", since, false);
        assert_eq!(named(t(10_900)), None);
        assert_eq!(named(t(9_000)), None);
        assert_eq!(named(t(11_000)), Some(("a".into(), t(11_000))));
    }

    #[test]
    fn an_unnamed_rewrite_counts_when_later_or_in_the_second_of_a_bound() {
        let since = t(10_000);
        let unnamed = |at, bound| unheard(&moved(None, Some(at)), "a", since, bound);
        assert_eq!(unnamed(t(9_999), true), None);
        // The push heard in that second was this rewrite.
        assert_eq!(unnamed(t(10_500), false), None);
        let bound = unnamed(t(10_500), true).unwrap();
        assert_eq!(bound.0, "");
        assert!(bound.1 > since, "later than the head's time: {bound:?}");
        assert_eq!(unnamed(t(40_000), false), Some((String::new(), t(40_000))));
    }

    #[test]
    fn another_head_or_an_unknown_time_counts_as_a_move() {
        let since = t(10_000);
        let other = unheard(&moved(Some("b"), Some(t(12_000))), "a", since, false);
        assert_eq!(other, Some(("b".into(), t(12_000))));
        let unknown = unheard(&moved(None, None), "a", since, false).unwrap();
        assert_eq!(unknown.0, "");
        assert!(unknown.1 > since);
    }
}
