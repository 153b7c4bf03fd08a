//! Failures of the service's background work (a webhook delivery, a job, a reconciliation
//! pass), kept in memory as they happen.
//!
//! The store keeps only the last error of work that is still pending: a job that fails and
//! then succeeds on a retry is deleted with its error, so the failure leaves no trace there.
//! This log keeps the most recent failures, and counts all of them, so that a retry can never
//! hide one (the scenario tests fail on any failure they did not expect).
//!
//! It also counts the jobs running now: a job may delete its own row before it ends (closing
//! a request cancels its timers, the running one among them), so the store cannot tell that
//! it still runs, and a test waiting for the service to be idle must.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};

/// How many failures are kept; older ones are dropped (and still counted).
const KEEP: usize = 1000;

/// What failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// Handling a stored webhook delivery (its id).
    Delivery(String),
    /// A job (its kind, e.g. `merge`) of a request (its id).
    Job { kind: String, request: String },
    /// A reconciliation pass.
    Reconciliation,
    /// The start-up look for change requests opened or pushed while the service was down.
    CatchUp,
    /// Claiming work from a queue (`deliveries`, or a lane's jobs): the database refused.
    Claim(&'static str),
}

impl fmt::Display for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Work::Delivery(id) => write!(f, "delivery {id}"),
            Work::Job { kind, request } => write!(f, "{kind} job of {request}"),
            Work::Reconciliation => f.write_str("reconciliation"),
            Work::CatchUp => f.write_str("start-up catch-up"),
            Work::Claim(queue) => write!(f, "claiming {queue}"),
        }
    }
}

/// One failed run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub work: Work,
    /// The error with its causes (`{:#}`).
    pub error: String,
    /// The service's clock when it failed.
    pub at: DateTime<Utc>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed at {}: {}", self.work, self.at, self.error)
    }
}

/// The log of failures of one running service, and how many of its jobs run now.
#[derive(Debug, Default)]
pub struct Failures {
    inner: Mutex<Log>,
    jobs_running: AtomicUsize,
}

/// A job counted as running until this is dropped.
pub struct JobRunning<'a>(&'a AtomicUsize);

impl Drop for JobRunning<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Default)]
struct Log {
    recent: VecDeque<Failure>,
    total: u64,
}

impl Failures {
    /// Records a failure.
    pub fn record(&self, work: Work, error: &anyhow::Error, at: DateTime<Utc>) {
        let failure = Failure {
            work,
            error: format!("{error:#}"),
            at,
        };
        let mut log = self.lock();
        if log.recent.len() == KEEP {
            log.recent.pop_front();
        }
        log.recent.push_back(failure);
        log.total = log.total.saturating_add(1);
    }

    /// Counts a job as running until the answer is dropped.
    pub fn job_running(&self) -> JobRunning<'_> {
        self.jobs_running.fetch_add(1, Ordering::SeqCst);
        JobRunning(&self.jobs_running)
    }

    /// How many jobs run now.
    pub fn jobs_running(&self) -> usize {
        self.jobs_running.load(Ordering::SeqCst)
    }

    /// The kept failures, oldest first, and how many happened in all (more than kept when
    /// old ones were dropped).
    pub fn snapshot(&self) -> (Vec<Failure>, u64) {
        let log = self.lock();
        (log.recent.iter().cloned().collect(), log.total)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        // A panic while holding the lock cannot leave the log inconsistent: keep using it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn keeps_the_most_recent_and_counts_all() {
        let log = Failures::default();
        let at = Utc.with_ymd_and_hms(2026, 11, 26, 2, 14, 0).unwrap();
        for n in 0..=KEEP {
            log.record(Work::Reconciliation, &anyhow::anyhow!("boom {n}"), at);
        }
        let (kept, total) = log.snapshot();
        assert_eq!(total, KEEP as u64 + 1);
        assert_eq!(kept.len(), KEEP);
        assert_eq!(kept[0].error, "boom 1");
        assert_eq!(kept[KEEP - 1].error, format!("boom {KEEP}"));
    }

    #[test]
    fn counts_a_job_as_running_while_it_runs() {
        let log = Failures::default();
        let first = log.job_running();
        let second = log.job_running();
        assert_eq!(log.jobs_running(), 2);
        drop(first);
        assert_eq!(log.jobs_running(), 1);
        drop(second);
        assert_eq!(log.jobs_running(), 0);
    }

    #[test]
    fn keeps_the_causes_of_an_error() {
        let log = Failures::default();
        let at = Utc.with_ymd_and_hms(2026, 11, 26, 2, 14, 0).unwrap();
        let err = anyhow::anyhow!("502 Bad Gateway").context("merging the revert PR");
        let work = Work::Job {
            kind: "revoke".into(),
            request: "r-1".into(),
        };
        log.record(work, &err, at);
        let (kept, _) = log.snapshot();
        assert_eq!(
            kept[0].to_string(),
            "revoke job of r-1 failed at 2026-11-26 02:14:00 UTC: merging the revert PR: 502 Bad Gateway"
        );
    }
}
