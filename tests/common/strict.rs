//! The strict part of the harness. A scenario fails, when it is dropped at the end of its test,
//! if the bot's background work failed in a way the test did not declare up front
//! ([`Scenario::expect_job_error`] and friends), if a declared failure never happened, or if a
//! bot comment was left unread ([`Scenario::next_bot_comment`] consumes them one by one).
//!
//! Failures are read from each service's in-memory log ([`breakglass::failures`]): the store
//! forgets a job's error once a retry succeeds, the log does not. The check runs in `Drop`, so
//! no test can forget it; `Drop` cannot await, so it settles the bot with `block_in_place`,
//! which is safe on the multi-thread runtime every scenario test uses (it hands this thread's
//! other work to the runtime's workers while it waits).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use breakglass::failures::{Failure, Failures, Work};
use breakglass::forge::unmarked;
use breakglass::store::JobKind;
use breakglass_test_forge::Noteable;

use super::{Dialect, REPO, Scenario};

/// Where an expected failure happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A job of this kind.
    Job(JobKind),
    /// Handling a webhook delivery.
    Delivery,
    /// A reconciliation pass.
    Reconciliation,
}

impl Source {
    fn matches(self, work: &Work) -> bool {
        match (self, work) {
            (Source::Job(kind), Work::Job { kind: failed, .. }) => kind.as_str() == failed,
            (Source::Delivery, Work::Delivery(_)) => true,
            (Source::Reconciliation, Work::Reconciliation) => true,
            _ => false,
        }
    }
}

/// A failure the test declared: `source` failing with an error that contains `needle`.
#[derive(Debug)]
struct Expected {
    source: Source,
    needle: String,
    seen: bool,
    /// Whether the failure must happen (else it only may: a race the test cannot steer).
    required: bool,
}

/// What the strict checks remember during a scenario.
#[derive(Debug, Default)]
pub struct Strict {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The ids of the bot comments the test has read (or skipped by name).
    read: HashSet<u64>,
    expected: Vec<Expected>,
    /// The failure logs of every service started in the scenario, crashed ones included.
    logs: Vec<Arc<Failures>>,
    /// Set by [`Scenario::lenient`]: nothing is checked at the end.
    off: bool,
}

impl Strict {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Watches the failures of one more service.
    pub fn watch(&self, log: Arc<Failures>) {
        self.state().logs.push(log);
    }

    /// Every failure that no expectation covers, and every expectation that nothing met.
    fn failure_problems(&self) -> Vec<String> {
        let mut state = self.state();
        let mut failures: Vec<Failure> = Vec::new();
        let mut problems = Vec::new();
        for log in &state.logs {
            let (kept, total) = log.snapshot();
            if total > kept.len() as u64 {
                problems.push(format!("{total} failures, more than the log keeps"));
            }
            failures.extend(kept);
        }
        for failure in failures {
            let covering = state
                .expected
                .iter_mut()
                .filter(|e| e.source.matches(&failure.work) && failure.error.contains(&e.needle));
            let mut covered = false;
            for expected in covering {
                expected.seen = true;
                covered = true;
            }
            if !covered {
                problems.push(format!("unexpected failure: {failure}"));
            }
        }
        for expected in state.expected.iter().filter(|e| e.required && !e.seen) {
            problems.push(format!(
                "an expected failure never happened: {:?} with an error containing {:?}",
                expected.source, expected.needle
            ));
        }
        problems
    }
}

impl Scenario {
    /// Declares that `kind` jobs will fail (at least once) with an error containing `needle`;
    /// any other failure fails the test.
    #[track_caller]
    pub fn expect_job_error(&self, kind: JobKind, needle: &str) {
        self.expect_error(Source::Job(kind), needle);
    }

    /// Declares that handling a delivery will fail (at least once) with an error containing
    /// `needle`.
    #[track_caller]
    pub fn expect_delivery_error(&self, needle: &str) {
        self.expect_error(Source::Delivery, needle);
    }

    /// Declares that `source` will fail (at least once) with an error containing `needle`.
    #[track_caller]
    pub fn expect_error(&self, source: Source, needle: &str) {
        self.strict.state().expected.push(Expected {
            source,
            needle: needle.to_owned(),
            seen: false,
            required: true,
        });
    }

    /// Declares that handling a delivery may fail with an error containing `needle`, depending
    /// on a race that the test cannot steer (between replicas, or a webhook and a job).
    #[track_caller]
    pub fn allow_delivery_error(&self, needle: &str) {
        self.strict.state().expected.push(Expected {
            source: Source::Delivery,
            needle: needle.to_owned(),
            seen: false,
            required: false,
        });
    }

    /// The failures of the bot's background work so far, as `what failed: error`.
    pub fn failures(&self) -> Vec<String> {
        let logs = self.strict.state().logs.clone();
        logs.iter()
            .flat_map(|log| log.snapshot().0)
            .map(|f| f.to_string())
            .collect()
    }

    /// The oldest bot comment on change request `number` that the test has not read yet; fails
    /// the test when there is none.
    #[track_caller]
    pub fn next_bot_comment(&self, number: u64) -> String {
        let thread = self.internal(number);
        match self.take_bot_comment(thread) {
            Some(body) => body,
            None => panic!(
                "no unread bot comment on {}; all of the bot's comments there: {:#?}",
                self.thread_name(thread),
                self.bot_comments(number)
            ),
        }
    }

    /// [`Scenario::next_bot_comment`] on issue `number`.
    #[track_caller]
    pub fn next_bot_issue_comment(&self, number: u64) -> String {
        let thread = self.internal_issue(number);
        match self.take_bot_comment(thread) {
            Some(body) => body,
            None => panic!(
                "no unread bot comment on {}; all of the bot's comments there: {:#?}",
                self.thread_name(thread),
                self.bot_issue_comments(number)
            ),
        }
    }

    /// Reads the bot's next comments on change request `number`, one per prefix, each of which
    /// must start with its prefix: the sequence of comments a user sees on that thread.
    #[track_caller]
    pub fn expect_bot_comments(&self, number: u64, prefixes: &[&str]) {
        for prefix in prefixes {
            let comment = self.next_bot_comment(number);
            assert!(
                comment.starts_with(prefix),
                "the bot's next comment on {} should start with {prefix:?}: {comment}",
                self.thread_name(self.internal(number))
            );
        }
    }

    /// [`Scenario::expect_bot_comments`] on issue `number`.
    #[track_caller]
    pub fn expect_bot_issue_comments(&self, number: u64, prefixes: &[&str]) {
        for prefix in prefixes {
            let comment = self.next_bot_issue_comment(number);
            assert!(
                comment.starts_with(prefix),
                "the bot's next comment on issue #{number} should start with {prefix:?}: {comment}"
            );
        }
    }

    /// `text` in GitHub's words: on GitLab, `MR !3` and `!3` become `PR #3` and `#3`, so that
    /// one inline snapshot pins a comment on both forges.
    pub fn github_words(&self, text: &str) -> String {
        if self.dialect == Dialect::GitHub {
            return text.to_owned();
        }
        let text = text
            .replace("MR !", "PR #")
            .replace("revert MR", "revert PR");
        let mut out = String::with_capacity(text.len());
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            let before_digit = chars.peek().is_some_and(char::is_ascii_digit);
            out.push(if c == '!' && before_digit { '#' } else { c });
        }
        out
    }

    /// Fails the test if the bot wrote a comment on change request `number` that the test has
    /// not read.
    #[track_caller]
    pub fn expect_no_bot_comment(&self, number: u64) {
        let thread = self.internal(number);
        let unread = self.unread_bot_comments(Some(thread));
        assert!(
            unread.is_empty(),
            "unexpected bot comments on {}: {unread:#?}",
            self.thread_name(thread)
        );
    }

    /// [`Scenario::expect_no_bot_comment`] on issue `number`.
    #[track_caller]
    pub fn expect_no_bot_issue_comment(&self, number: u64) {
        let thread = self.internal_issue(number);
        let unread = self.unread_bot_comments(Some(thread));
        assert!(
            unread.is_empty(),
            "unexpected bot comments on issue #{number}: {unread:#?}"
        );
    }

    /// Reads all the bot's unread comments on change request `number`, oldest first (for a
    /// transcript that a snapshot pins whole).
    #[track_caller]
    pub fn take_bot_comments(&self, number: u64) -> Vec<String> {
        let thread = self.internal(number);
        std::iter::from_fn(|| self.take_bot_comment(thread)).collect()
    }

    /// [`Scenario::take_bot_comments`] on issue `number`.
    #[track_caller]
    pub fn take_bot_issue_comments(&self, number: u64) -> Vec<String> {
        let thread = self.internal_issue(number);
        std::iter::from_fn(|| self.take_bot_comment(thread)).collect()
    }

    /// Marks the bot's comments on change request `number` read without looking at them, for
    /// a test about something else; their number. Never use it to hide a duplicate.
    #[track_caller]
    pub fn skip_bot_comments(&self, number: u64) -> usize {
        self.take_bot_comments(number).len()
    }

    /// Turns the strict checks off for a scenario that must end in a state they would refuse
    /// (the bot left stuck on purpose). Say why at the call.
    pub fn lenient(&self) {
        self.strict.state().off = true;
    }

    /// The forge's own number of issue `number`.
    fn internal_issue(&self, number: u64) -> u64 {
        match self.dialect {
            Dialect::GitHub => number,
            Dialect::GitLab => self.forge.gl_number(REPO, Noteable::Issue(number)),
        }
    }

    fn take_bot_comment(&self, thread: u64) -> Option<String> {
        let comments = self.forge.comments(REPO, thread);
        let mut state = self.strict.state();
        let next = comments
            .into_iter()
            .find(|c| c.user == self.people.bot.login && !state.read.contains(&c.id))?;
        state.read.insert(next.id);
        Some(unmarked(&next.body).to_owned())
    }

    /// The bot's unread comments (on one thread, or everywhere), as `<thread>: <body>`.
    fn unread_bot_comments(&self, thread: Option<u64>) -> Vec<String> {
        let comments = self.forge.all_comments(REPO);
        let state = self.strict.state();
        let unread: Vec<(u64, String)> = comments
            .into_iter()
            .filter(|(on, c)| {
                c.user == self.people.bot.login
                    && !state.read.contains(&c.id)
                    && thread.is_none_or(|t| t == *on)
            })
            .map(|(on, c)| (on, unmarked(&c.body).to_owned()))
            .collect();
        drop(state);
        unread
            .into_iter()
            .map(|(on, body)| format!("{}: {body}", self.thread_name(on)))
            .collect()
    }

    /// How users see the thread with the forge's own `number`: `#3`, or on GitLab `!3` or `#3`.
    fn thread_name(&self, number: u64) -> String {
        match self.dialect {
            Dialect::GitHub => format!("#{number}"),
            Dialect::GitLab => match self.forge.gl_iid(REPO, number) {
                Noteable::MergeRequest(iid) => format!("!{iid}"),
                Noteable::Issue(iid) => format!("issue #{iid}"),
            },
        }
    }

    /// Lets the bot finish what it is doing (when a service runs), then checks everything.
    fn strict_problems(&self) -> Vec<String> {
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .filter(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if let Some(handle) = runtime
            && self.service.is_some()
        {
            tokio::task::block_in_place(|| handle.block_on(self.settle()));
        }
        let mut problems = self.strict.failure_problems();
        for comment in self.unread_bot_comments(None) {
            problems.push(format!("unread bot comment on {comment}"));
        }
        problems
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if std::thread::panicking() || self.strict.state().off {
            return;
        }
        let problems = self.strict_problems();
        assert!(
            problems.is_empty(),
            "the strict harness found:\n- {}",
            problems.join("\n- ")
        );
    }
}
