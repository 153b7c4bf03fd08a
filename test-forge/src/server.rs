//! The running server: shared state behind the router, and its start-up on a loopback port.

use std::sync::{Mutex, MutexGuard};

use axum::http::Method;
use chrono::Utc;
use tempfile::TempDir;

use crate::failures::{
    BranchDetour, CallStats, FailureKind, FailureSpec, ForkPullBefore, PushBefore, RetargetBefore,
    UnreactBefore,
};
use crate::state::ForgeState;
use crate::webhooks::WebhookHub;

/// Rate-limit accounting for the advertised headers.
#[derive(Default)]
pub(crate) struct RateState {
    used: u64,
    window_start: i64,
}

/// Everything the server and the test handle share.
pub(crate) struct Shared {
    pub state: Mutex<ForgeState>,
    pub hub: std::sync::Arc<WebhookHub>,
    pub failures: Mutex<Vec<FailureSpec>>,
    /// Branch detours not used up yet (see `TestForge::detour_branch`).
    pub detours: Mutex<Vec<BranchDetour>>,
    /// Retargets waiting for their request (see `TestForge::retarget_before`).
    pub retargets: Mutex<Vec<RetargetBefore>>,
    pub pushes: Mutex<Vec<PushBefore>>,
    /// Fork pull requests waiting for their request (see `TestForge::open_fork_pr_before`).
    pub fork_pulls: Mutex<Vec<ForkPullBefore>>,
    /// Reactions to take back before their request (see `TestForge::unreact_before`).
    pub unreacts: Mutex<Vec<UnreactBefore>>,
    pub calls: Mutex<CallStats>,
    pub rate: Mutex<RateState>,
    /// Spans of calls and webhook sends, and the added latency (benchmarks).
    pub timeline: std::sync::Arc<crate::timeline::Timeline>,
    /// Keeps the bare repositories alive as long as the forge.
    pub _dir: TempDir,
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a test panicked mid-operation; the data is still usable for the
    // assertions that follow, and the forge must not turn one panic into many.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, ForgeState> {
        relock(&self.state)
    }

    /// A change made by the test (not through the API): `f` runs on the state, then, when
    /// `BREAKGLASS_TEST_FORGE_LINGER_MS` is set and the change sent a webhook, the test waits
    /// that long, lock released, so that the bot handles each step on its own (see the crate
    /// doc's "Hunting races").
    pub fn test_side<T>(&self, f: impl FnOnce(&mut ForgeState) -> T) -> T {
        let queued_before = self.hub.queued_so_far();
        let done = f(&mut self.lock());
        if let Some(linger) = crate::webhooks::knob("BREAKGLASS_TEST_FORGE_LINGER_MS")
            && self.hub.queued_so_far() > queued_before
        {
            std::thread::sleep(linger);
        }
        done
    }

    pub fn count_call(&self, method: &Method, route: &str) {
        let mut c = relock(&self.calls);
        c.total += 1;
        *c.by_route
            .entry((method.as_str().to_owned(), route.to_owned()))
            .or_insert(0) += 1;
    }

    pub fn count_not_modified(&self, method: &Method, route: &str) {
        let mut c = relock(&self.calls);
        c.not_modified += 1;
        *c.not_modified_by_route
            .entry((method.as_str().to_owned(), route.to_owned()))
            .or_insert(0) += 1;
    }

    /// Uses up one matching injected failure, if any.
    pub fn take_failure(
        &self,
        method: &Method,
        path: &str,
        route: Option<&str>,
    ) -> Option<FailureKind> {
        let mut failures = relock(&self.failures);
        let idx = failures
            .iter()
            .position(|f| f.count > 0 && f.route.matches(method, path, route))?;
        let kind = failures[idx].kind.clone();
        failures[idx].count -= 1;
        if failures[idx].count == 0 {
            failures.remove(idx);
        }
        Some(kind)
    }

    /// Uses up one request of every detour `route` matches and returns them, oldest first.
    pub fn take_detours(
        &self,
        method: &Method,
        path: &str,
        route: Option<&str>,
    ) -> Vec<BranchDetour> {
        let mut detours = relock(&self.detours);
        let mut taken = Vec::new();
        detours.retain_mut(|d| {
            if d.count == 0 || !d.route.matches(method, path, route) {
                return d.count > 0;
            }
            d.count -= 1;
            taken.push(d.clone());
            d.count > 0
        });
        taken
    }

    /// Takes the retargets waiting for this request.
    pub fn take_retargets(&self, method: &Method, path: &str, route: &str) -> Vec<RetargetBefore> {
        take_matching(&self.retargets, |r| {
            r.route.matches(method, path, Some(route))
        })
    }

    pub fn add_retarget(&self, retarget: RetargetBefore) {
        relock(&self.retargets).push(retarget);
    }

    /// Takes the pushes waiting for this request.
    pub fn take_pushes(&self, method: &Method, path: &str, route: &str) -> Vec<PushBefore> {
        take_matching(&self.pushes, |p| p.route.matches(method, path, Some(route)))
    }

    pub fn add_push(&self, push: PushBefore) {
        relock(&self.pushes).push(push);
    }

    /// Takes the fork pull requests waiting for this request.
    pub fn take_fork_pulls(&self, method: &Method, path: &str, route: &str) -> Vec<ForkPullBefore> {
        take_matching(&self.fork_pulls, |p| {
            p.route.matches(method, path, Some(route))
        })
    }

    pub fn add_fork_pull(&self, pull: ForkPullBefore) {
        relock(&self.fork_pulls).push(pull);
    }

    /// Takes the reactions to take back before this request.
    pub fn take_unreacts(&self, method: &Method, path: &str, route: &str) -> Vec<UnreactBefore> {
        take_matching(&self.unreacts, |u| {
            u.route.matches(method, path, Some(route))
        })
    }

    pub fn add_unreact(&self, unreact: UnreactBefore) {
        relock(&self.unreacts).push(unreact);
    }

    pub fn add_detour(&self, detour: BranchDetour) {
        relock(&self.detours).push(detour);
    }

    /// Counts a request against the hourly window (unless `costs` is false, as for a 304) and
    /// returns (used, reset epoch seconds).
    pub fn rate_tick(&self, costs: bool) -> (u64, i64) {
        let now = Utc::now().timestamp();
        let mut r = relock(&self.rate);
        if now >= r.window_start + 3600 {
            r.window_start = now;
            r.used = 0;
        }
        if costs {
            r.used += 1;
            relock(&self.calls).rate_limited_cost += 1;
        }
        (r.used, r.window_start + 3600)
    }

    /// Counts `calls` more against the current rate-limit window without serving them.
    pub fn spend_rate(&self, calls: u64) {
        self.rate_tick(false);
        relock(&self.rate).used += calls;
    }

    pub fn add_failure(&self, spec: FailureSpec) {
        relock(&self.failures).push(spec);
    }

    pub fn clear_failures(&self) {
        relock(&self.failures).clear();
    }

    pub fn calls(&self) -> CallStats {
        relock(&self.calls).clone()
    }

    pub fn reset_calls(&self) {
        *relock(&self.calls) = CallStats::default();
    }
}

/// Takes out of `waiting` the entries `now` picks, leaving the others in order.
fn take_matching<T>(waiting: &Mutex<Vec<T>>, now: impl Fn(&T) -> bool) -> Vec<T> {
    let mut waiting = relock(waiting);
    let (taken, later) = std::mem::take(&mut *waiting).into_iter().partition(now);
    *waiting = later;
    taken
}
