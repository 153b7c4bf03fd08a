//! The forge's answer to opening a bot request PR, kept for the merge that follows at once.
//!
//! A fast-path request by comment is opened by the bot and merged a moment later. The merge
//! guard needs the PR as it is (open, not a draft, into the default branch, at the bot's
//! head), and the answer to the opening says exactly that. Reading the PR again a few round
//! trips later would cost one rate-limited call per request for a state nobody else has had
//! time to change; the window in which a member could retarget or close it is of the same
//! order either way (no forge guards a merge by its base, see [`super::guard`]).
//!
//! So the answer is kept here, on the bot's own monotonic clock, and given out **once**, only
//! for the head it was opened at, and only within [`MAX_AGE`]. Anything else reads the PR: a
//! merge after an approval (minutes or hours later), a merge job run again, a second replica.
//! Any `pull_request` webhook about the PR other than its opening drops the answer, so an
//! edit that the forge has already announced is never merged past.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::forge::PullRequestState;

/// How long after the opening its answer stands in for a read. The merge that uses it runs
/// within the same second or two (the verdict's status and the requester's on-call check come
/// between); past this, something slowed the bot and the PR is read.
pub(super) const MAX_AGE: Duration = Duration::from_secs(5);

/// Opening answers not yet used, by PR number.
#[derive(Debug, Default)]
pub(super) struct JustOpened {
    kept: Mutex<HashMap<u64, (PullRequestState, Instant)>>,
}

impl JustOpened {
    /// Keeps the answer to opening `pr`.
    pub(super) fn keep(&self, pr: &PullRequestState) {
        self.keep_at(pr, Instant::now());
    }

    /// The answer to opening PR `number`, once, if it is recent and still at `head_sha`.
    pub(super) fn take(&self, number: u64, head_sha: &str) -> Option<PullRequestState> {
        self.take_at(number, head_sha, Instant::now())
    }

    fn keep_at(&self, pr: &PullRequestState, now: Instant) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|_, (_, at)| now.saturating_duration_since(*at) <= MAX_AGE);
        kept.insert(pr.info.number, (pr.clone(), now));
    }

    fn take_at(&self, number: u64, head_sha: &str, now: Instant) -> Option<PullRequestState> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let (pr, at) = kept.remove(&number)?;
        (now.saturating_duration_since(at) <= MAX_AGE && pr.info.head_sha == head_sha).then_some(pr)
    }

    /// Drops what is kept of PR `number`: the forge said it changed.
    pub(super) fn forget(&self, number: u64) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.remove(&number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::{Actor, PullRequestInfo};

    fn opened(number: u64, head_sha: &str) -> PullRequestState {
        PullRequestState {
            info: PullRequestInfo {
                number,
                author: Actor {
                    id: 1,
                    login: "breakglass-bot".into(),
                    is_bot: true,
                },
                head_sha: head_sha.into(),
                head_ref: "breakglass/request/r1".into(),
                base_ref: "main".into(),
                head_repo: Some("acme/access-requests".into()),
                labels: Vec::new(),
                merged: false,
                draft: false,
                updated_at: None,
            },
            title: "breakglass: prod/admin".into(),
            body: String::new(),
            open: true,
            merge_sha: None,
            merged_at: None,
            changed_files: Some(1),
            merge_base: None,
            default_branch: Some("main".into()),
        }
    }

    #[test]
    fn the_answer_is_given_once_and_only_for_the_head_it_was_opened_at() {
        let kept = JustOpened::default();
        let now = Instant::now();
        kept.keep_at(&opened(7, "a1"), now);
        assert_eq!(kept.take_at(7, "a1", now), Some(opened(7, "a1")));
        assert_eq!(kept.take_at(7, "a1", now), None, "used once");
        kept.keep_at(&opened(7, "a1"), now);
        assert_eq!(kept.take_at(7, "b2", now), None, "another head");
        assert_eq!(kept.take_at(7, "a1", now), None, "and then gone");
        assert_eq!(kept.take_at(8, "a1", now), None, "never opened");
    }

    #[test]
    fn an_answer_past_its_age_or_forgotten_is_not_given() {
        let kept = JustOpened::default();
        let then = Instant::now();
        kept.keep_at(&opened(7, "a1"), then);
        let late = then + MAX_AGE + Duration::from_millis(1);
        assert_eq!(kept.take_at(7, "a1", late), None, "too old");
        kept.keep_at(&opened(7, "a1"), then);
        assert!(
            kept.take_at(7, "a1", then + MAX_AGE).is_some(),
            "just in time"
        );
        kept.keep_at(&opened(7, "a1"), then);
        kept.forget(7);
        assert_eq!(
            kept.take_at(7, "a1", then),
            None,
            "a webhook said it changed"
        );
    }

    #[test]
    fn old_answers_are_dropped_when_a_new_one_is_kept() {
        let kept = JustOpened::default();
        let then = Instant::now();
        kept.keep_at(&opened(7, "a1"), then);
        kept.keep_at(&opened(8, "b2"), then + MAX_AGE * 2);
        let held = kept.kept.lock().unwrap();
        assert_eq!(held.keys().collect::<Vec<_>>(), vec![&8]);
    }
}
