//! A head that went away and came back while the bot was not listening.
//!
//! Approvals are timed against the push of the head they approve. A push the bot did not hear
//! (it was down, or refused the delivery) leaves that time as it was: a branch pushed from A to
//! B and back to A meanwhile still shows A's first push, and an approval given while it showed
//! B would count for A. So before approvals merge a request whose head time was learnt in an
//! earlier watch epoch ([`WATCH`]: moved by every catch-up), the forge's own record of the
//! head's moves is asked (one read). While the bot has heard every push since, it is not.

use chrono::{DateTime, TimeDelta, Utc};

use super::{Workflow, stored_decision};
use crate::forge::HeadMove;
use crate::store::RequestRecord;
use crate::store::epochs::WATCH;

impl Workflow {
    /// The move of `record`'s head that the bot may not have heard, as the push an event
    /// would have announced (see [`unheard`]); `None` when every push since its head time was
    /// heard, or the forge shows none after it.
    pub(super) async fn unheard_move(
        &self,
        record: &RequestRecord,
    ) -> anyhow::Result<Option<(String, DateTime<Utc>)>> {
        let stored = stored_decision(record)?;
        let Some(since) = stored.head_since else {
            return Ok(None); // no timed approval counts anyway
        };
        if stored.watch == Some(self.store.cache_epoch(WATCH).await?) {
            return Ok(None);
        }
        let moved = self.forge.latest_head_move(record.pr_number).await?;
        Ok(moved.and_then(|m| unheard(&m, &record.head_sha, since)))
    }

    /// Decides `record` again as the push `pushed` would have had it: its head came back then
    /// (or at the PR's latest update, when the forge does not say to which head), approvals
    /// given before no longer count, and their approvers are asked again.
    pub(super) async fn decide_after_unheard_move(
        &self,
        record: RequestRecord,
        pushed: (String, DateTime<Utc>),
    ) -> anyhow::Result<()> {
        tracing::warn!(request = %record.id, pr = record.pr_number, moved_at = %pushed.1, "the head moved while the bot was not listening: approvals given before it came back do not count");
        let watch = self.store.cache_epoch(WATCH).await?;
        let current = self.forge.change(record.pr_number).await?;
        // Boxed: deciding may count approvals, which may come back here.
        let decide = self.evaluate_current(
            current,
            Some(record),
            Some(pushed),
            (None, Some(watch)),
            true,
        );
        Box::pin(decide).await
    }
}

/// Whether `moved` (the forge's newest move of a PR's head) may be one the bot did not hear
/// since `head`'s time `since`, as the push to announce: at `moved`'s time, to `head` when the
/// forge says so (GitLab), else to a head not known (GitHub: the PR's latest update bounds
/// when `head` came back). Whole seconds on both sides; a move in `since`'s own second cannot
/// be told from the push of `head` itself unless the forge names `head`, and counts as one.
pub(super) fn unheard(
    moved: &HeadMove,
    head: &str,
    since: DateTime<Utc>,
) -> Option<(String, DateTime<Utc>)> {
    // Later than `since`, so that the decision takes it as a move back to this head.
    let after_since = |at: DateTime<Utc>| at.max(since + TimeDelta::seconds(1));
    match (&moved.sha, moved.at) {
        (Some(sha), Some(at)) if sha == head => {
            (at.timestamp() > since.timestamp()).then(|| (sha.clone(), at))
        }
        // The forge's newest head is another one: a push right now, or an answer out of date.
        (Some(_), Some(at)) => Some((String::new(), after_since(at))),
        (None, Some(at)) => {
            (at.timestamp() >= since.timestamp()).then(|| (String::new(), after_since(at)))
        }
        (_, None) => Some((String::new(), after_since(since))),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, 2, 0, 0).unwrap() + TimeDelta::milliseconds(secs)
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
        assert_eq!(
            unheard(&moved(Some("a"), Some(t(10_900))), "a", since),
            None
        );
        assert_eq!(unheard(&moved(Some("a"), Some(t(9_000))), "a", since), None);
        assert_eq!(
            unheard(&moved(Some("a"), Some(t(11_000))), "a", since),
            Some(("a".into(), t(11_000)))
        );
    }

    #[test]
    fn an_unnamed_rewrite_in_the_heads_own_second_or_later_counts_as_a_move() {
        let since = t(10_000);
        assert_eq!(unheard(&moved(None, Some(t(9_999))), "a", since), None);
        let same_second = unheard(&moved(None, Some(t(10_500))), "a", since).unwrap();
        assert_eq!(same_second.0, "");
        assert!(
            same_second.1 > since,
            "later than the head's time: {same_second:?}"
        );
        assert_eq!(
            unheard(&moved(None, Some(t(40_000))), "a", since),
            Some((String::new(), t(40_000)))
        );
    }

    #[test]
    fn another_head_or_an_unknown_time_counts_as_a_move() {
        let since = t(10_000);
        assert!(unheard(&moved(Some("b"), Some(t(1_000))), "a", since).is_some());
        let unknown = unheard(&moved(None, None), "a", since).unwrap();
        assert_eq!(unknown.0, "");
        assert!(unknown.1 > since);
    }
}
