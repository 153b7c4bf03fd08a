//! The ETags of the reaction lists the bot polls (GitHub sends no webhook for reactions).
//!
//! A poll with the ETag of the last answer costs nothing against the rate limit when nothing
//! changed. A pull request polled for the first time has no answer of its own yet, but most
//! have no reaction, and GitHub's ETag is a hash of the answer's body for the token that asked
//! (the same empty list, the same ETag): the first poll offers the ETag of an empty list seen on
//! another pull request. A `304` then says the list is empty, which is an answer in full, not
//! "unchanged"; any other list has another ETag and is answered `200` in full, as without it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The ETag to poll a pull request's reactions with, and what a `304` to it means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Validator {
    /// The ETag of this pull request's last answer: a `304` means unchanged since then.
    Own(String),
    /// The ETag of an empty list on another pull request: a `304` means the list is empty.
    Empty(String),
}

/// Shared by the clones of one client.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReactionEtags {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    by_number: HashMap<u64, String>,
    /// The ETag of the last empty list answered, whichever pull request it was.
    empty: Option<String>,
}

impl ReactionEtags {
    /// What to poll pull request `number`'s reactions with, if anything.
    pub(crate) fn validator(&self, number: u64) -> Option<Validator> {
        let inner = self.lock();
        match inner.by_number.get(&number) {
            Some(etag) => Some(Validator::Own(etag.clone())),
            None => inner.empty.clone().map(Validator::Empty),
        }
    }

    /// Keeps the ETag of an answer for `number` (`None`: the answer had none, so the next
    /// poll reads in full); `empty` when the answer listed no reaction.
    pub(crate) fn answered(&self, number: u64, etag: Option<&str>, empty: bool) {
        let mut inner = self.lock();
        match etag {
            Some(etag) => {
                if empty {
                    inner.empty = Some(etag.to_owned());
                }
                inner.by_number.insert(number, etag.to_owned())
            }
            None => inner.by_number.remove(&number),
        };
    }

    /// Forgets `number`'s own ETag: its next poll gets an answer in full (an empty list's
    /// `304` is one).
    pub(crate) fn forget(&self, number: u64) {
        self.lock().by_number.remove(&number);
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
        assert_eq!(etags.validator(1), None);
        etags.answered(1, Some("\"e1\""), false);
        assert_eq!(etags.validator(2), None, "a list with reactions is no seed");
        etags.answered(3, Some("\"empty\""), true);
        assert_eq!(
            etags.validator(2),
            Some(Validator::Empty("\"empty\"".into()))
        );
        assert_eq!(etags.validator(1), Some(Validator::Own("\"e1\"".into())));
        etags.forget(1);
        assert_eq!(
            etags.validator(1),
            Some(Validator::Empty("\"empty\"".into()))
        );
        etags.answered(3, None, true);
        assert_eq!(
            etags.validator(3),
            Some(Validator::Empty("\"empty\"".into()))
        );
    }
}
