//! Bodies of earlier GET answers with their ETags, so that asking again with `If-None-Match`
//! gets a `304` when nothing changed: on GitHub that costs nothing against the rate limit
//! (policies are read at every decision), on GitLab it saves the body.
//!
//! Bounded in bytes, not only in entries: a directory listing of thousands of request files is
//! megabytes of JSON, and keeping every such answer (and copying it out at every hit) held most
//! of the service's memory at 100k grants. Such answers are not kept; the small, often-read
//! ones (policies, the repository, a PR) are.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Largest body kept. A policy file or a PR is a few kilobytes; a listing of a thousand
/// request files is several hundred.
const MAX_BODY: usize = 64 * 1024;

/// All bodies kept together at most; past it the cache starts over.
const MAX_BYTES: usize = 4 * 1024 * 1024;

/// One kept answer.
#[derive(Clone, Debug)]
pub(crate) struct Cached {
    pub(crate) etag: String,
    /// Shared, so that a hit copies a pointer, not the body.
    pub(crate) body: Arc<str>,
}

/// The cache of one client (cheap to clone: clones share it).
#[derive(Clone, Debug, Default)]
pub(crate) struct EtagCache {
    entries: Arc<Mutex<Entries>>,
}

#[derive(Debug, Default)]
struct Entries {
    by_key: HashMap<String, Cached>,
    bytes: usize,
}

impl EtagCache {
    /// The kept answer for `key` (a route), if any.
    pub(crate) fn get(&self, key: &str) -> Option<Cached> {
        self.lock().by_key.get(key).cloned()
    }

    /// Keeps `body` under `key` with its `etag`; a body over [`MAX_BODY`] is not kept (and an
    /// older answer for `key` is dropped, since it is stale).
    pub(crate) fn put(&self, key: &str, etag: &str, body: &str) {
        let mut entries = self.lock();
        if let Some(old) = entries.by_key.remove(key) {
            entries.bytes -= old.body.len();
        }
        if body.len() > MAX_BODY {
            return;
        }
        if entries.bytes + body.len() > MAX_BYTES {
            entries.by_key.clear();
            entries.bytes = 0;
        }
        entries.bytes += body.len();
        let cached = Cached {
            etag: etag.to_owned(),
            body: Arc::from(body),
        };
        entries.by_key.insert(key.to_owned(), cached);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_answers_are_kept_and_replaced() {
        let cache = EtagCache::default();
        cache.put("/a", "\"1\"", "one");
        assert_eq!(cache.get("/a").unwrap().etag, "\"1\"");
        cache.put("/a", "\"2\"", "two!");
        let kept = cache.get("/a").unwrap();
        assert_eq!((kept.etag.as_str(), &*kept.body), ("\"2\"", "two!"));
        assert_eq!(cache.bytes(), 4);
        assert!(cache.get("/b").is_none());
    }

    #[test]
    fn a_large_answer_is_not_kept_and_drops_the_stale_one() {
        let cache = EtagCache::default();
        cache.put("/dir", "\"1\"", "[]");
        cache.put("/dir", "\"2\"", &"x".repeat(MAX_BODY + 1));
        assert!(
            cache.get("/dir").is_none(),
            "a stale body must not answer a 304"
        );
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn the_cache_never_holds_more_than_its_budget() {
        let cache = EtagCache::default();
        let body = "y".repeat(MAX_BODY);
        for i in 0..(2 * MAX_BYTES / MAX_BODY) {
            cache.put(&format!("/f{i}"), "\"e\"", &body);
            assert!(cache.bytes() <= MAX_BYTES);
        }
        let last = 2 * MAX_BYTES / MAX_BODY - 1;
        assert!(cache.get(&format!("/f{last}")).is_some());
    }
}
