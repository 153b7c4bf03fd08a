//! The reaction lists the bot polls (GitHub sends no webhook for reactions): their ETags, and
//! which of the bot's comments on each pull request is polled beside it.
//!
//! A poll with the ETag of the last answer costs nothing against the rate limit when nothing
//! changed. A list polled for the first time has no answer of its own yet, but most have no
//! reaction, and GitHub's ETag is a hash of the answer's body for the token that asked (the
//! same empty list, the same ETag): the first poll offers the ETag of an empty list seen on
//! another list. A `304` then says the list is empty, which is an answer in full, not
//! "unchanged"; any other list has another ETag and is answered `200` in full, as without it.
//!
//! GitHub lists reactions oldest first, 100 a page at most, and gives each page its own ETag:
//! a list longer than a page is polled at its last page ([`Tail`]), which every added or
//! removed reaction changes, and read in full when it changed.
//!
//! The bot's latest comment on a pull request is polled too: an approver who reacts on it
//! (its verdict says "Needs 1 approval", and the emoji goes on the nearest post) is told
//! where an emoji counts instead of waiting in silence. That comment is known only to the
//! replica that posted it, until it restarts: elsewhere nothing is polled but the pull request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How many pull requests' latest comments are kept at most (16 bytes each, and the map's own).
const MAX_COMMENTS_KEPT: usize = 200_000;

/// How many polls a list of more than one page is answered from its last page's ETag before
/// it is read in full again anyway: a backstop (about an hour at the default interval) should
/// a page asked again have been answered from a replica that had not seen a removal yet.
const POLLS_BETWEEN_FULL_READS: u8 = 120;

/// The page of a list that a poll asks for: its last, chosen partly filled, so that a reaction
/// added (it lands there, GitHub lists oldest first) or removed (the pages after it shift)
/// changes that page and its ETag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tail {
    pub(crate) per_page: usize,
    pub(crate) page: usize,
}

impl Tail {
    /// A list of one page: page one of 100.
    pub(crate) const FIRST: Tail = Tail {
        per_page: 100,
        page: 1,
    };

    /// The page to poll a list of `len` reactions at: the last of 100, or, when 100 divides
    /// `len` (the last page is full and a new reaction would start another), the last of 99.
    pub(crate) fn of(len: usize) -> Tail {
        if len < 100 {
            return Tail::FIRST;
        }
        let per_page = if len.is_multiple_of(100) { 99 } else { 100 };
        Tail {
            per_page,
            page: len.div_ceil(per_page),
        }
    }
}

/// A list of reactions: on a pull request (its description), or on one comment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Listed {
    Change(u64),
    Comment(u64),
}

/// The ETag to poll a list with, and what a `304` to it means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Validator {
    /// The ETag of this list's last answer at `tail`: a `304` means unchanged since then.
    Own { etag: String, tail: Tail },
    /// The ETag of an empty list elsewhere: a `304` to page one means the list is empty.
    Empty(String),
}

/// What the last answer for a list left to poll it with.
#[derive(Debug)]
struct Kept {
    etag: String,
    tail: Tail,
    /// Polls left before a list of more than one page is read in full again.
    polls_left: u8,
}

/// Shared by the clones of one client.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReactionEtags {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    by_list: HashMap<Listed, Kept>,
    /// The ETag of the last empty list answered, whichever list it was.
    empty: Option<String>,
    /// The bot's latest comment on each pull request (or issue) it commented on.
    latest_comment: HashMap<u64, u64>,
}

impl ReactionEtags {
    /// What to poll `list` with, if anything (`None`: read it in full). Counts a poll of a
    /// list of more than one page.
    pub(crate) fn validator(&self, list: Listed) -> Option<Validator> {
        let mut inner = self.lock();
        let empty = inner.empty.clone();
        match inner.by_list.get_mut(&list) {
            Some(kept) if kept.tail != Tail::FIRST && kept.polls_left == 0 => None,
            Some(kept) => {
                if kept.tail != Tail::FIRST {
                    kept.polls_left -= 1;
                }
                Some(Validator::Own {
                    etag: kept.etag.clone(),
                    tail: kept.tail,
                })
            }
            None => empty.map(Validator::Empty),
        }
    }

    /// Keeps the ETag of an answer for `list` at `tail` (`None`: the answer had none, so the
    /// next poll reads in full); `empty` when the answer listed no reaction.
    pub(crate) fn answered(&self, list: Listed, etag: Option<&str>, tail: Tail, empty: bool) {
        let mut inner = self.lock();
        match etag {
            Some(etag) => {
                if empty {
                    inner.empty = Some(etag.to_owned());
                }
                let kept = Kept {
                    etag: etag.to_owned(),
                    tail,
                    polls_left: POLLS_BETWEEN_FULL_READS,
                };
                inner.by_list.insert(list, kept);
            }
            None => {
                inner.by_list.remove(&list);
            }
        };
    }

    /// Forgets `list`'s own ETag: its next poll gets an answer in full (an empty list's
    /// `304` is one).
    pub(crate) fn forget(&self, list: Listed) {
        self.lock().by_list.remove(&list);
    }

    /// The bot just posted comment `id` on `number`: it is the one polled from now on.
    pub(crate) fn commented(&self, number: u64, id: u64) {
        let mut inner = self.lock();
        // Bounded (issues and reverts are commented on and never polled): past the bound the
        // comments known so far are forgotten, as by a restart.
        if inner.latest_comment.len() >= MAX_COMMENTS_KEPT {
            let forgotten: Vec<u64> = inner.latest_comment.drain().map(|(_, id)| id).collect();
            for id in forgotten {
                inner.by_list.remove(&Listed::Comment(id));
            }
        }
        if let Some(before) = inner.latest_comment.insert(number, id) {
            inner.by_list.remove(&Listed::Comment(before));
        }
    }

    /// The bot's latest comment on `number`, as far as this replica knows.
    pub(crate) fn latest_comment(&self, number: u64) -> Option<u64> {
        self.lock().latest_comment.get(&number).copied()
    }

    /// Comment `id` on `number` is gone: it is polled no more.
    pub(crate) fn done_with_comment(&self, number: u64, id: u64) {
        let mut inner = self.lock();
        if inner.latest_comment.get(&number) == Some(&id) {
            inner.latest_comment.remove(&number);
        }
        inner.by_list.remove(&Listed::Comment(id));
    }

    /// Nothing on `number` is polled any more: what was kept for it goes.
    pub(crate) fn done_with(&self, number: u64) {
        let mut inner = self.lock();
        inner.by_list.remove(&Listed::Change(number));
        if let Some(comment) = inner.latest_comment.remove(&number) {
            inner.by_list.remove(&Listed::Comment(comment));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_poll_offers_the_etag_of_an_empty_list_seen_elsewhere() {
        let etags = ReactionEtags::default();
        let (one, two, three) = (Listed::Change(1), Listed::Change(2), Listed::Change(3));
        assert_eq!(etags.validator(one), None);
        etags.answered(one, Some("\"e1\""), Tail::FIRST, false);
        assert_eq!(
            etags.validator(two),
            None,
            "a list with reactions is no seed"
        );
        etags.answered(three, Some("\"empty\""), Tail::FIRST, true);
        assert_eq!(
            etags.validator(two),
            Some(Validator::Empty("\"empty\"".into()))
        );
        assert_eq!(
            etags.validator(Listed::Comment(2)),
            Some(Validator::Empty("\"empty\"".into())),
            "a comment's empty list is the same list"
        );
        assert_eq!(
            etags.validator(one),
            Some(Validator::Own {
                etag: "\"e1\"".into(),
                tail: Tail::FIRST
            })
        );
        etags.forget(one);
        assert_eq!(
            etags.validator(one),
            Some(Validator::Empty("\"empty\"".into()))
        );
        etags.answered(three, None, Tail::FIRST, true);
        assert_eq!(
            etags.validator(three),
            Some(Validator::Empty("\"empty\"".into()))
        );
    }

    #[test]
    fn the_latest_comment_replaces_the_one_before_and_goes_with_its_pull_request() {
        let etags = ReactionEtags::default();
        assert_eq!(etags.latest_comment(7), None);
        etags.commented(7, 100);
        etags.answered(Listed::Comment(100), Some("\"c100\""), Tail::FIRST, false);
        etags.answered(Listed::Change(7), Some("\"pr7\""), Tail::FIRST, false);
        etags.commented(7, 101);
        assert_eq!(etags.latest_comment(7), Some(101));
        assert_eq!(
            etags.validator(Listed::Comment(100)),
            None,
            "its ETag went with it"
        );
        etags.answered(Listed::Comment(101), Some("\"c101\""), Tail::FIRST, false);
        etags.done_with(7);
        assert_eq!(etags.latest_comment(7), None);
        assert_eq!(etags.validator(Listed::Comment(101)), None);
        assert_eq!(etags.validator(Listed::Change(7)), None);
    }

    #[test]
    fn a_list_is_polled_at_a_last_page_that_one_more_reaction_would_change() {
        let tail = |per_page, page| Tail { per_page, page };
        assert_eq!(Tail::of(0), Tail::FIRST);
        assert_eq!(Tail::of(99), Tail::FIRST);
        assert_eq!(Tail::of(100), tail(99, 2), "page one of 100 is full");
        assert_eq!(Tail::of(101), tail(100, 2));
        assert_eq!(Tail::of(250), tail(100, 3));
        assert_eq!(Tail::of(300), tail(99, 4));
        for len in 100..=5_000 {
            let Tail { per_page, page } = Tail::of(len);
            let on_last = len - (page - 1) * per_page;
            assert!(
                (1..per_page).contains(&on_last),
                "{len}: {on_last} of {per_page}"
            );
        }
    }

    #[test]
    fn a_list_of_more_than_one_page_is_read_in_full_now_and_then() {
        let etags = ReactionEtags::default();
        let long = Listed::Change(1);
        let tail = Tail::of(150);
        etags.answered(long, Some("\"p2\""), tail, false);
        let own = Some(Validator::Own {
            etag: "\"p2\"".into(),
            tail,
        });
        for _ in 0..POLLS_BETWEEN_FULL_READS {
            assert_eq!(etags.validator(long), own);
        }
        assert_eq!(etags.validator(long), None, "read in full");
        etags.answered(long, Some("\"p2\""), tail, false);
        assert_eq!(
            etags.validator(long),
            own,
            "counted again from the full read"
        );
        let short = Listed::Change(2);
        etags.answered(short, Some("\"s\""), Tail::FIRST, false);
        for _ in 0..=POLLS_BETWEEN_FULL_READS {
            assert!(
                etags.validator(short).is_some(),
                "one page is read whole at every 200"
            );
        }
    }
}
