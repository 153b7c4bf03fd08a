//! A verdict said before its merge. A request that merges at once (fast path, self-service)
//! has its verdict comment posted while the merge job makes its last reads before the merge,
//! so that the comment costs no round trip on the way to access; the merge waits for the
//! comment, so that the PR's thread reads verdict, then grant.
//!
//! This holds within one process (the replica that decided also wakes its own merge job); a
//! merge job another replica took does not wait, and at worst the two notes change places.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;

/// The longest a merge waits for its verdict comment (a forge call has its own timeouts).
const LONGEST_WAIT: Duration = Duration::from_secs(10);

type Inflight = Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>;

/// The verdict comments being posted in this process, by request id.
#[derive(Debug, Default)]
pub(super) struct Verdicts {
    inflight: Inflight,
}

/// A verdict comment being posted: until it drops, the request's merge waits.
pub(super) struct Saying {
    inflight: Inflight,
    id: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    _held: OwnedMutexGuard<()>,
}

fn map(
    inflight: &Inflight,
) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
    inflight.lock().unwrap_or_else(|e| e.into_inner())
}

impl Verdicts {
    /// The verdict of request `id` is being said from now until the returned value drops.
    pub fn saying(&self, id: &str) -> Saying {
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        let held = Arc::clone(&lock)
            .try_lock_owned()
            .unwrap_or_else(|_| unreachable!("a new lock is free"));
        map(&self.inflight).insert(id.to_owned(), Arc::clone(&lock));
        Saying {
            inflight: Arc::clone(&self.inflight),
            id: id.to_owned(),
            lock,
            _held: held,
        }
    }

    /// Returns once the verdict of request `id` being said in this process (if any) is said,
    /// or after [`LONGEST_WAIT`].
    pub async fn said(&self, id: &str) {
        let lock = map(&self.inflight).get(id).cloned();
        if let Some(lock) = lock {
            let _ = tokio::time::timeout(LONGEST_WAIT, lock.lock()).await;
        }
    }
}

impl Drop for Saying {
    fn drop(&mut self) {
        let mut inflight = map(&self.inflight);
        // A later verdict of the same request may have taken the entry: it stays.
        if inflight
            .get(&self.id)
            .is_some_and(|lock| Arc::ptr_eq(lock, &self.lock))
        {
            inflight.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_merge_waits_for_the_verdict_being_said_and_no_longer() {
        let verdicts = Arc::new(Verdicts::default());
        verdicts.said("r1").await; // nothing being said: no wait
        let saying = verdicts.saying("r1");
        let waiter = {
            let verdicts = Arc::clone(&verdicts);
            tokio::spawn(async move { verdicts.said("r1").await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "waits while the verdict is said");
        verdicts.said("r2").await; // another request does not wait
        drop(saying);
        waiter.await.unwrap();
        assert!(map(&verdicts.inflight).is_empty(), "nothing left behind");
    }
}
