//! Failure injection and call accounting: the flags a scenario sets to make the next matching
//! API calls fail the way GitHub fails, and the counters it reads afterwards.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;

/// A predicate on a request's method and path.
pub type RoutePredicate = Arc<dyn Fn(&Method, &str) -> bool + Send + Sync>;

/// Which requests a failure applies to.
#[derive(Clone)]
pub enum RouteMatcher {
    /// Any request.
    Any,
    /// Requests with this method (any if `None`) whose path starts with `prefix`.
    Prefix {
        /// HTTP method, or any.
        method: Option<Method>,
        /// Path prefix, e.g. `/repos/acme/access-requests/pulls`.
        prefix: String,
    },
    /// Requests with this method whose axum route template equals `template`, e.g.
    /// `/repos/{owner}/{repo}/pulls/{number}/merge`.
    Route {
        /// HTTP method, or any.
        method: Option<Method>,
        /// The route template as listed in [`CallStats::by_route`].
        template: String,
    },
    /// Any predicate on method and path.
    Predicate(RoutePredicate),
}

impl fmt::Debug for RouteMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteMatcher::Any => write!(f, "Any"),
            RouteMatcher::Prefix { method, prefix } => write!(f, "Prefix({method:?} {prefix})"),
            RouteMatcher::Route { method, template } => write!(f, "Route({method:?} {template})"),
            RouteMatcher::Predicate(_) => write!(f, "Predicate(..)"),
        }
    }
}

impl RouteMatcher {
    pub(crate) fn matches(&self, method: &Method, path: &str, template: Option<&str>) -> bool {
        match self {
            RouteMatcher::Any => true,
            RouteMatcher::Prefix { method: m, prefix } => {
                m.as_ref().is_none_or(|m| m == method) && path.starts_with(prefix.as_str())
            }
            RouteMatcher::Route {
                method: m,
                template: t,
            } => m.as_ref().is_none_or(|m| m == method) && template == Some(t.as_str()),
            RouteMatcher::Predicate(p) => p(method, path),
        }
    }
}

/// How a matched request fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// Answer with this status (e.g. 500, 502, 503) and a GitHub error body.
    Status(u16),
    /// Primary rate limit: 403 with `x-ratelimit-remaining: 0` and a reset a minute ahead.
    RateLimited403,
    /// Secondary rate limit: 429 with `retry-after` (seconds).
    SecondaryRateLimit429 {
        /// The `retry-after` value in seconds.
        retry_after: u64,
    },
    /// Hang for the duration, then answer 504 (a client with a shorter timeout sees a timeout).
    Timeout(Duration),
    /// Accept the request and never answer: only the client's own timeout ends the call.
    Hang,
    /// Do the work, then hold the answer for the duration: a client with a shorter timeout
    /// sees no answer to a call that happened (a slow merge, a comment posted under load).
    AnswerLate(Duration),
    /// A merge that fails with 405 "Merge conflict" even though the branches merge cleanly.
    MergeConflict,
    /// The forge does what was asked, then its answer is lost: a gateway answers 504 instead
    /// (as a proxy that gave up on a slow backend). A retry finds the work done.
    AnswerLost,
}

/// One injected failure: the next `count` requests matching `route` fail with `kind`.
#[derive(Debug, Clone)]
pub struct FailureSpec {
    /// Which requests.
    pub route: RouteMatcher,
    /// How many of them (then the failure is used up).
    pub count: u32,
    /// How they fail.
    pub kind: FailureKind,
}

impl FailureSpec {
    /// The next `count` requests with `method` under path `prefix` fail with `kind`.
    pub fn new(method: Method, prefix: &str, count: u32, kind: FailureKind) -> FailureSpec {
        FailureSpec {
            route: RouteMatcher::Prefix {
                method: Some(method),
                prefix: prefix.to_owned(),
            },
            count,
            kind,
        }
    }

    /// The next `count` requests of any kind fail with `kind`.
    pub fn any(count: u32, kind: FailureKind) -> FailureSpec {
        FailureSpec {
            route: RouteMatcher::Any,
            count,
            kind,
        }
    }

    /// The next merge of any pull request fails with 405 "Merge conflict".
    pub fn merge_conflict() -> FailureSpec {
        FailureSpec {
            route: RouteMatcher::Route {
                method: Some(Method::PUT),
                template: "/repos/{owner}/{repo}/pulls/{number}/merge".to_owned(),
            },
            count: 1,
            kind: FailureKind::MergeConflict,
        }
    }
}

impl FailureSpec {
    /// The next merge of any GitLab merge request fails with 406 "Branch cannot be merged".
    pub fn gitlab_merge_conflict() -> FailureSpec {
        FailureSpec {
            route: RouteMatcher::Route {
                method: Some(Method::PUT),
                template: "/api/v4/projects/{id}/merge_requests/{iid}/merge".to_owned(),
            },
            count: 1,
            kind: FailureKind::MergeConflict,
        }
    }
}

/// A branch that is somewhere else while certain calls are served: for each of the next `count`
/// requests matching `route`, branch `branch` of `repo` points at `sha` (and so does every open
/// pull request headed by that branch of `repo` itself), then goes back once the answer is made.
///
/// It plays a force-push race without timing: someone force-pushes just before the call and
/// back right after it, and the webhooks of both pushes arrive after everything else, so none
/// are sent. A fork's branch of the same name is another branch and does not move.
#[derive(Debug, Clone)]
pub struct BranchDetour {
    /// Which requests see the detour.
    pub route: RouteMatcher,
    /// How many of them (then the detour is used up).
    pub count: u32,
    /// The repository, `owner/name`.
    pub repo: String,
    /// The branch that moves.
    pub branch: String,
    /// The commit it points at during those requests (a full or abbreviated sha).
    pub sha: String,
}

/// A pull request retargeted by a person right before the next request `route` matches is
/// served (see `TestForge::retarget_before`): the race between a read and a merge, made
/// deterministic.
#[derive(Debug, Clone)]
pub struct RetargetBefore {
    /// Which request sees the new base first.
    pub route: RouteMatcher,
    /// The repository, `owner/name`.
    pub repo: String,
    /// The pull request.
    pub number: u64,
    /// Who retargets it.
    pub login: String,
    /// The new base branch.
    pub base: String,
}

/// Files pushed to a branch by a person right before the next request `route` matches is
/// served (see `TestForge::push_before`): a push landing between the bot's read of a branch and
/// its write, made deterministic.
#[derive(Debug, Clone)]
pub struct PushBefore {
    /// Which request sees the push first.
    pub route: RouteMatcher,
    /// The repository, `owner/name`.
    pub repo: String,
    /// The branch pushed to.
    pub branch: String,
    /// Who pushes.
    pub login: String,
    /// The files written, `(path, content)`.
    pub files: Vec<(String, String)>,
}

/// A reaction on an issue or pull request taken back right before the next request `route`
/// matches is served (see `TestForge::unreact_before`): a reaction removed while the bot reads
/// a list of them page by page.
#[derive(Debug, Clone)]
pub struct UnreactBefore {
    /// Which request sees the list without it first.
    pub route: RouteMatcher,
    /// The repository, `owner/name`.
    pub repo: String,
    /// The issue or pull request.
    pub number: u64,
    /// The reaction's id.
    pub reaction_id: u64,
}

/// A pull request opened from a fork's branch by a person right before the next request
/// `route` matches is served (see `TestForge::open_fork_pr_before`): a fork's pull request from
/// a branch named like the bot's, landing between the bot's opening and its look for it.
#[derive(Debug, Clone)]
pub struct ForkPullBefore {
    /// Which request sees the pull request first.
    pub route: RouteMatcher,
    /// The repository it is opened on, `owner/name`.
    pub repo: String,
    /// The fork, `owner/name`.
    pub fork: String,
    /// The fork's branch.
    pub head_branch: String,
    /// Who opens it.
    pub login: String,
    /// The files its head commit writes, `(path, content)`.
    pub files: Vec<(String, String)>,
}

/// What the API was asked, for assertions on the bot's call pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Every API request, whatever its outcome (304s included).
    pub total: u64,
    /// Requests answered `304 Not Modified` (free on GitHub's primary rate limit).
    pub not_modified: u64,
    /// Requests that were counted against the rate limit (`total - not_modified`).
    pub rate_limited_cost: u64,
    /// Requests per `(method, route template)`, e.g. `("GET", "/repos/{owner}/{repo}/issues/{number}/reactions")`.
    pub by_route: BTreeMap<(String, String), u64>,
    /// The `304` answers among them, per `(method, route template)`.
    pub not_modified_by_route: BTreeMap<(String, String), u64>,
}

impl CallStats {
    /// How many requests hit this method and route template.
    pub fn count(&self, method: &str, template: &str) -> u64 {
        self.by_route
            .get(&(method.to_owned(), template.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// How many requests to this method and route template counted against the rate limit.
    pub fn rate_limited(&self, method: &str, template: &str) -> u64 {
        let key = (method.to_owned(), template.to_owned());
        self.count(method, template) - self.not_modified_by_route.get(&key).copied().unwrap_or(0)
    }

    /// How many mutating requests (POST, PUT, PATCH, DELETE) were made.
    pub fn writes(&self) -> u64 {
        self.by_route
            .iter()
            .filter(|((m, _), _)| m != "GET" && m != "HEAD")
            .map(|(_, n)| n)
            .sum()
    }
}
