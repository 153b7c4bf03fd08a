//! `breakglass-test-forge`: a GitHub- and GitLab-compatible forge on loopback, backed by real git
//! repositories.
//!
//! The bot's scenario tests, its `breakglass demo` and its benchmarks talk to this forge through
//! octocrab exactly as they would talk to `api.github.com`; the test itself plays the humans
//! through the scenario API ([`TestForge::comment`], [`TestForge::react`], …) and reads back what
//! the bot did ([`TestForge::comments`], [`TestForge::pr`], [`TestForge::log`], …).
//!
//! - Repositories are bare git repos in a temporary directory. Every file write is a real commit
//!   and every merge a real two-parent merge commit, so `git log` of
//!   [`TestForge::repo_path`] is the true history.
//! - Every change a user or the bot makes is sent as a signed webhook
//!   (`X-Hub-Signature-256`) to each registered URL, in order, shaped like GitHub's payloads.
//!   Reactions send none, as on GitHub. [`TestForge::settle`] waits for the queue to drain.
//! - Every API response carries rate-limit headers; `GET`s carry a strong `ETag` and answer
//!   `If-None-Match` with an empty `304` that costs nothing, counted in [`CallStats`].
//! - [`TestForge::fail_next`] makes the next matching calls fail with 5xx, rate limits,
//!   timeouts or merge conflicts.
//! - [`TestForge::detour_branch`] moves a branch (and its pull requests' heads) for the next
//!   matching calls only, without webhooks: a force-push race on demand.
//! - What stops a merge on GitHub stops it here, with GitHub's 405 messages: drafts
//!   ([`TestForge::open_pr_draft`], [`TestForge::set_draft`]), lasting conflicts
//!   ([`TestForge::set_conflicting`]) and protected branches ([`TestForge::protect_branch`]).
//! - Pull requests from forks ([`TestForge::open_fork_pr`]): `head.repo` is the fork and its
//!   head commit sits in the base repository under `refs/pull/<n>/head`, on no branch.
//! - Time: the forge stamps everything with its own clock, the wall clock plus
//!   [`TestForge::advance_clock`] (or [`TestForge::set_clock`], or stopped with
//!   [`TestForge::freeze_clock`]), truncated to whole seconds as on GitHub, so a test can order
//!   events by whole seconds and expire installation tokens without sleeping.
//!
//! # Routes
//!
//! Every route answers GitHub's JSON shapes (octocrab's models parse them) and requires
//! `Authorization: Bearer|token <token>`; unknown or expired tokens get 401 "Bad credentials".
//! Wherever GitHub documents `PATCH`, `POST` works too (octocrab edits comments with `POST`).
//! Errors are `{"message", "documentation_url"}` with GitHub's status codes.
//!
//! | area | routes under `/repos/{owner}/{repo}` |
//! |---|---|
//! | repository | `GET ` (root), `GET /installation` (app JWT), `GET /collaborators/{user}/permission` |
//! | refs | `GET /git/ref/heads/{branch}`, `GET /git/matching-refs/heads/{prefix}`, `POST /git/refs`, `GET\|PATCH\|DELETE /git/refs/heads/{branch}`, `GET /branches[/{branch}]` |
//! | contents | `GET /contents[/{path}]?ref=`, `PUT /contents/{path}` (sha rules: 422 without, 409 stale), `DELETE /contents/{path}` |
//! | git data | `POST /git/blobs`, `GET /git/blobs/{sha}`, `POST /git/trees` (`base_tree`; `sha: null` deletes), `POST /git/commits` (no ref moves until `PATCH /git/refs`) |
//! | git | `GET /git/trees/{sha}?recursive=1`, `GET /git/commits/{sha}`, `GET /commits?sha=&path=`, `GET /commits/{ref}`, `GET /compare/{base}...{head}` (`files`: at most 300, as on GitHub) |
//! | pulls | `GET\|POST /pulls` (`draft`; `head=owner:branch` tells forks apart), `GET\|PATCH /pulls/{n}`, `GET /pulls/{n}/files`, `GET /pulls/{n}/commits`, `GET\|PUT /pulls/{n}/merge`, `GET\|POST /pulls/{n}/reviews`, `PUT /pulls/{n}/reviews/{id}/dismissals` |
//! | issues | `GET\|POST /issues`, `GET\|PATCH /issues/{n}`, `GET\|POST /issues/{n}/comments`, `GET\|PATCH\|DELETE /issues/comments/{id}`, `GET\|POST\|PUT\|DELETE /issues/{n}/labels`, `DELETE /issues/{n}/labels/{name}` |
//! | reactions | `GET\|POST /issues/{n}/reactions`, `GET\|POST /issues/comments/{id}/reactions` (`per_page`, `page`, `content`), `DELETE …/reactions/{id}` |
//! | checks | `POST /statuses/{sha}`, `GET /commits/{ref}/statuses`, `GET /commits/{ref}/status`, `POST /check-runs`, `GET\|PATCH /check-runs/{id}`, `GET /commits/{ref}/check-runs` |
//!
//! Outside repositories: `GET /user` (the token's account; 403 "Resource not accessible by
//! integration" with an installation token), `GET /users/{login}` (also `{slug}[bot]`),
//! `GET /orgs/{org}/teams/{slug}/memberships/{login}` (200 active member or 404),
//! `GET /orgs/{org}/teams/{slug}/members`, `GET /app` and
//! `POST /app/installations/{id}/access_tokens` (a JWT whose numeric `iss` is the configured app
//! id; the RSA signature is not verified), `GET /rate_limit`.
//!
//! Every response carries `x-ratelimit-{limit,remaining,reset,used,resource}`; the limit is
//! advertised, never enforced (inject [`FailureKind::RateLimited403`] for that). Every `GET`
//! answering 200 carries a strong `ETag` (sha256 of the body); a matching `If-None-Match` gets
//! an empty 304 that is counted in [`CallStats::not_modified`] and not in the rate limit.
//!
//! # Webhooks
//!
//! `pull_request` (opened, edited, closed, reopened, synchronize, labeled, unlabeled,
//! converted_to_draft, ready_for_review),
//! `issue_comment` (created, edited, deleted), `pull_request_review` (submitted, dismissed),
//! `issues` (opened, edited, closed, reopened, labeled, unlabeled) and `push`, with GitHub's
//! headers and payload keys (checked against GitHub's own examples in the conformance test).
//! Org-owned repositories add `organization`; a configured app adds `installation`. No `ping`
//! is sent when a hook is added, so a test sees only the events it caused.
//!
//! # Hunting races
//!
//! A test that makes several changes in a row (open a PR, mark it a draft, label it) and
//! expects the bot to hear them together races the bot: under load it may handle the first
//! before the second is made. Two knobs, read from the environment, widen such windows so
//! that a run finds them; neither is set in normal runs:
//!
//! - `BREAKGLASS_TEST_FORGE_LINGER_MS`: after each change the test makes that sends a webhook,
//!   the test waits this long, so that the bot handles each change on its own. A test that
//!   means its changes to be heard together makes them with webhooks paused.
//! - `BREAKGLASS_TEST_FORGE_DELIVERY_DELAY_MS`: each delivery waits this long before it is
//!   sent, so that the test's next changes come first.
//!
//! # GitLab dialect
//!
//! Every project is also served as GitLab's REST v4 under [`TestForge::gitlab_api_url`]
//! (`/api/v4`), over the same model: the same bare repos, clock, failure injection
//! ([`TestForge::fail_next`] matches `/api/v4/…` paths and route templates too) and call counting
//! ([`TestForge::calls`] counts both dialects). GitLab's separate iid spaces are modelled: issue
//! `#1` and merge request `!1` coexist ([`Noteable`] says which), each mapped to the forge's
//! internal number ([`TestForge::gl_number`], [`TestForge::gl_iid`]).
//!
//! Requests authenticate with `PRIVATE-TOKEN: <token>` or `Authorization: Bearer <token>` (the
//! tokens of [`TestForge::token_for`]); anything else is 401 `{"message":"401 Unauthorized"}`.
//! Projects are addressed by URL-encoded path (`acme%2Faccess-requests`) or numeric id
//! ([`TestForge::gl_project_id`]); parameters may come as JSON, form (Rails' `actions[][f]=`
//! arrays included) or query string. Errors have GitLab's bodies (`{"message": "404 File Not
//! Found"}`, Grape's `{"error": "branch is missing"}`). API timestamps are
//! `2026-12-02T03:25:13.000Z`.
//!
//! | area | routes under `/api/v4` |
//! |---|---|
//! | accounts | `GET /user` (`bot: true` for bot accounts), `GET /users?username=`, `GET /users/:id`, `GET /groups/:id`, `GET /groups/:id/members/all/:user_id` (teams are groups: `acme/sre`, subgroups `acme/sre/oncall`; members of a parent group are members of its subgroups; 404 otherwise) |
//! | project | `GET /projects/:id` (also a fork an MR comes from, by its id) |
//! | branches | `GET\|POST /projects/:id/repository/branches` (`branch`, `ref`: branch or sha; 400 "Branch already exists"), `GET\|DELETE …/branches/:branch` (204; 404 "404 Branch Not Found") |
//! | files | `GET …/repository/files/:file_path?ref=` (base64 `content`, `blob_id`, `commit_id`, `last_commit_id`, `content_sha256`; 404 "404 File Not Found"), `GET …/files/:file_path/raw`, `GET …/repository/tree?path=&ref=&recursive=` (404 "404 Tree Not Found") |
//! | commits | `POST …/repository/commits` (`branch`, `commit_message`, `start_branch`/`start_sha`, `actions` create/update/delete/move/chmod with `content`, `encoding`, `previous_path`, `last_commit_id`; one commit by the token's user; 400 "A file with this name already exists" / "… doesn't exist"), `GET …/repository/commits/:sha` |
//! | compare | `GET …/repository/compare?from=&to=&straight=` (branches or shas; `commits` oldest first, `commit` the last; `diffs` from the merge base, or from `from` with `straight=true`; past 1000 files, GitLab's `diff_max_files`, `diffs` is cut there and `compare_timeout` is true; 400 "from is missing", 404 "404 Ref Not Found") |
//! | merge requests | `GET\|POST /projects/:id/merge_requests` (`state`, `source_branch`, `target_branch`, `labels`, `author_username`; 409 when an open MR exists for the branch; a `Draft:` title opens a draft), `GET\|PUT …/merge_requests/:iid` (`title`, `description`, `target_branch`, `labels`, `add_labels`, `remove_labels`, `state_event` close/reopen), `GET …/:iid/diffs`, `GET …/:iid/commits` |
//! | merge | `PUT …/merge_requests/:iid/merge` (`sha`, `merge_commit_message` verbatim, `should_remove_source_branch`): a two-parent merge commit; 401 when the user has read access only to a protected target, 405 closed/merged/draft/protection unmet, 406 "Branch cannot be merged" (conflict, also [`FailureKind::MergeConflict`]), 409 "SHA does not match HEAD of source branch: `<sha>`" |
//! | approvals | `POST …/:iid/approve` (`sha`; 401 for the author or a second approval, 409 stale sha), `POST …/:iid/unapprove` (404 when not approving), `GET …/:iid/approvals` (`approved_by[{user, approved_at}]`, without `approved_at` after `gl_set_approvals_untimed`; approval hooks built late, as GitLab's worker does, after `gl_build_approval_hooks_later`, `approvals_required` = the target's [`Protection::required_approving_reviews`], `approvals_left`). An approval is the model's approving review, so GitHub's reviews API shows it too |
//! | notes | `GET\|POST …/merge_requests/:iid/notes` and `…/issues/:iid/notes` (newest first unless `sort=asc`), `GET\|PUT\|DELETE …/notes/:note_id` |
//! | award emoji | `GET\|POST …/merge_requests/:iid/award_emoji`, `…/issues/:iid/award_emoji`, `…/notes/:note_id/award_emoji`, `GET\|DELETE …/award_emoji/:award_id` (only the awarder deletes; a repeated award is 404). `thumbsup`, `thumbsdown`, `laughing`, `confused`, `heart`, `tada`, `rocket`, `eyes` are stored as GitHub's `+1`, `-1`, `laugh`, …, `hooray`, … so GitHub's reactions API shows the same award; other names are GitLab-only |
//! | issues | `GET\|POST /projects/:id/issues`, `GET\|PUT …/issues/:iid` (labels, `state_event`) |
//! | statuses | `POST /projects/:id/statuses/:sha` (`state` pending, running, success, failed, canceled, skipped; `name`; posting the state it has is 400 "Cannot transition status via …"), `GET …/repository/commits/:sha/statuses` (latest per name unless `all=true`) |
//!
//! Lists paginate as GitLab: `per_page` (default 20, at most 100) and `page`, with `X-Page`,
//! `X-Per-Page`, `X-Next-Page` (empty on the last page), `X-Prev-Page`, `X-Total`,
//! `X-Total-Pages` and `Link`. Every response carries `RateLimit-Limit`, `RateLimit-Remaining`,
//! `RateLimit-Reset` (and `RateLimit-Observed`, `RateLimit-ResetTime`); both rate-limit failure
//! kinds answer GitLab's 429 with `Retry-After` and `RateLimit-Remaining: 0`. `GET`s carry ETags
//! as on the GitHub side.
//!
//! Webhooks: a hook added with [`TestForge::add_gitlab_webhook`] gets GitLab's events instead of
//! GitHub's, with `X-Gitlab-Event`, `X-Gitlab-Token` (verbatim), `X-Gitlab-Event-UUID`,
//! `X-Gitlab-Webhook-UUID` and `Idempotency-Key` (= [`Delivery::id`]; a redelivery keeps it):
//! `Merge Request Hook` (`open`, `update` with `oldrev` after a push to the source branch or with
//! `changes` for title/description, draft and labels, `close`, `reopen`, `merge`, `approved`,
//! `approval`, `unapproved`, `unapproval`), `Note Hook` (`create`, `update`, on MRs and issues),
//! `Emoji Hook` (`award`, `revoke`, on MRs, issues and notes), `Issue Hook` (`open` only) and
//! `Push Hook`, shaped like GitLab's
//! documented examples (object timestamps `2026-12-02 03:25:13 UTC`). Changes made through either
//! API or the scenario helpers reach both kinds of hooks.
//!
//! GitLab scenario helpers take and return iids: [`TestForge::gl_open_mr`] (a `Draft:` title
//! opens a draft), [`TestForge::gl_open_issue`], [`TestForge::gl_comment`] /
//! [`TestForge::gl_comment_mr`] / [`TestForge::gl_comment_issue`], [`TestForge::gl_award`] /
//! [`TestForge::gl_award_mr`] / [`TestForge::gl_award_note`], [`TestForge::gl_revoke_award`],
//! [`TestForge::gl_approve`], [`TestForge::gl_unapprove`], [`TestForge::gl_merge_mr`], and the
//! readers [`TestForge::gl_notes`], [`TestForge::gl_awards`], [`TestForge::gl_approvers`],
//! [`TestForge::gl_mr`]. The GitHub helpers work on GitLab projects through
//! [`TestForge::gl_number`] (e.g. `forge.set_draft(repo, forge.gl_number(repo,
//! Noteable::MergeRequest(1)), &alice, true)`).
//!
//! Not modelled: Issue Hooks other than an opening, system notes, approval rules beyond the protection's count,
//! pipelines, discussions/threads, `squash` and the `merge_when_pipeline_succeeds` queue, and
//! one GitLab `PUT` that changes several things sends one `update` hook per change.
//!
//! ```no_run
//! # async fn demo() {
//! use breakglass_test_forge::TestForge;
//! let forge = TestForge::start().await;
//! let alice = forge.user("alice");
//! forge.create_repo("acme/access-requests", &[("README.md", "# requests\n")]);
//! forge.push_files("acme/access-requests", "req", &alice, &[("requests/prod/x.yaml", "role: admin\n")], "request");
//! let n = forge.open_pr("acme/access-requests", &alice, "req", "Access", "");
//! let bot = forge.bot_user("breakglass[bot]");
//! let octo = octocrab::Octocrab::builder()
//!     .base_uri(forge.api_url()).unwrap()
//!     .personal_token(forge.token_for(&bot))
//!     .build().unwrap();
//! octo.issues("acme", "access-requests").create_comment(n, "Request received").await.unwrap();
//! # }
//! ```

// The `json!` literals of GitHub's larger objects nest deeper than the default limit.
#![recursion_limit = "256"]
#![warn(missing_docs)]

mod error;
mod failures;
mod git;
mod gitlab;
mod json;
mod model;
mod ops;
mod routes;
mod scenario;
mod server;
mod state;
mod timeline;
mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use failures::{
    BranchDetour, CallStats, FailureKind, FailureSpec, ForkPullBefore, PushBefore, RetargetBefore,
    RouteMatcher, RoutePredicate, UnreactBefore,
};
pub use gitlab::Noteable;
pub use model::{
    AppConfig, CheckRun, Comment, CommitInfo, CommitStatus, Delivery, FileChange, Protection,
    PullRequest, Reaction, Review, ReviewState, User, UserKind,
};
pub use timeline::{Span, SpanKind, sequential_round_trips};
pub use webhooks::sign as sign_webhook;

use server::Shared;
use state::ForgeState;
use webhooks::WebhookHub;

/// A running forge. Dropping it stops the server; the repositories live until then.
pub struct TestForge {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestForge {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestForge {
    /// Starts a forge on `127.0.0.1:0` in the current tokio runtime.
    ///
    /// # Panics
    /// If no loopback port or temporary directory can be had: the test cannot run then.
    pub async fn start() -> TestForge {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("test-forge: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("test-forge: local address");
        let dir = tempfile::tempdir().expect("test-forge: temporary directory");
        let timeline = Arc::new(timeline::Timeline::default());
        let hub = WebhookHub::start(timeline.clone());
        let state = ForgeState::new(
            format!("http://{addr}"),
            dir.path().to_path_buf(),
            hub.clone(),
        );
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            hub,
            failures: Mutex::new(Vec::new()),
            detours: Mutex::new(Vec::new()),
            retargets: Mutex::new(Vec::new()),
            pushes: Mutex::new(Vec::new()),
            fork_pulls: Mutex::new(Vec::new()),
            unreacts: Mutex::new(Vec::new()),
            calls: Mutex::new(CallStats::default()),
            rate: Mutex::new(Default::default()),
            timeline,
            _dir: dir,
        });
        let router = routes::router(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, router).await {
                tracing::error!(%err, "test-forge: server stopped");
            }
        });
        TestForge {
            shared,
            addr,
            server,
        }
    }

    /// The API base URL to give octocrab (`Octocrab::builder().base_uri(forge.api_url())`),
    /// e.g. `http://127.0.0.1:41234`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address the forge listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The path of the bare git repository of `owner/name`, to open with git2.
    pub fn repo_path(&self, full_name: &str) -> PathBuf {
        self.shared.lock().root.join(format!("{full_name}.git"))
    }

    /// Registers a webhook: every later change is POSTed to `url`, signed with `secret`
    /// (no signature header when `secret` is empty).
    pub fn add_webhook(&self, url: &str, secret: &str) {
        self.shared.hub.add_hook(url, secret);
    }

    /// Registers a GitLab-dialect webhook: every later change is POSTed to `url` as GitLab's
    /// event (`X-Gitlab-Event`: `Merge Request Hook`, `Note Hook`, `Emoji Hook`, `Push Hook`)
    /// with `X-Gitlab-Token: <token>` verbatim (no header when `token` is empty),
    /// `X-Gitlab-Event-UUID`, this hook's `X-Gitlab-Webhook-UUID` and an `Idempotency-Key`
    /// (the [`Delivery::id`], kept by [`TestForge::redeliver`]). GitHub hooks are unaffected.
    pub fn add_gitlab_webhook(&self, url: &str, token: &str) {
        self.shared.hub.add_gitlab_hook(url, token);
    }

    /// Pauses (or resumes) automatic delivery. Paused deliveries are recorded with
    /// `attempts == 0`; send them later with [`TestForge::flush_webhooks`] or
    /// [`TestForge::redeliver`].
    pub fn set_webhooks_paused(&self, paused: bool) {
        self.shared.hub.set_paused(paused);
    }

    /// Queues every recorded delivery that was never sent; returns how many.
    pub fn flush_webhooks(&self) -> usize {
        self.shared.hub.flush_unsent()
    }

    /// Sends a recorded delivery again with the same GUID and body, as GitHub's "Redeliver".
    /// Returns false when no delivery has that id.
    pub fn redeliver(&self, delivery_id: &str) -> bool {
        self.shared.hub.redeliver(delivery_id)
    }

    /// Every delivery recorded so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.hub.deliveries()
    }

    /// Waits until every queued delivery has been sent (and answered or failed).
    pub async fn settle(&self) {
        self.shared.hub.settle().await;
    }

    /// Sends one arbitrary delivery right now with a fresh GUID, signed with `secret` (e.g. a
    /// wrong one; no signature header at all when `secret` is empty), and returns the
    /// receiver's status (`None` if the connection failed). It is not recorded.
    pub async fn send_raw_delivery(
        &self,
        url: &str,
        event: &str,
        body: &[u8],
        secret: &str,
    ) -> Option<u16> {
        let guid = uuid::Uuid::new_v4().to_string();
        self.send_raw_delivery_with_id(url, event, &guid, body, secret)
            .await
    }

    /// Like [`TestForge::send_raw_delivery`] with a chosen `X-GitHub-Delivery` GUID, e.g. to
    /// replay a fixture twice under one id.
    pub async fn send_raw_delivery_with_id(
        &self,
        url: &str,
        event: &str,
        delivery_id: &str,
        body: &[u8],
        secret: &str,
    ) -> Option<u16> {
        webhooks::post(
            &webhooks::client(),
            url,
            event,
            delivery_id,
            secret,
            body.to_vec(),
        )
        .await
    }

    /// Moves the forge's clock forward: later comments, reactions, reviews, commits and token
    /// expiries are stamped that much later. Lets a test put a push and an approval in distinct
    /// seconds (GitHub timestamps have second resolution) and expire installation tokens
    /// without sleeping, in step with the bot's injected clock. A frozen clock
    /// ([`TestForge::freeze_clock`]) moves and stays frozen.
    pub fn advance_clock(&self, by: chrono::Duration) {
        self.shared.lock().advance_clock(by);
    }

    /// Sets the forge's clock: it reads `at` now and runs on with the wall clock from there
    /// (a frozen clock starts running again). E.g. `forge.set_clock(start)` to start the forge
    /// and the bot's injected clock together, or to skew them apart.
    pub fn set_clock(&self, at: chrono::DateTime<chrono::Utc>) {
        self.shared.lock().set_clock(at);
    }

    /// Stops the forge's clock at `at`: everything is stamped with that very second until
    /// [`TestForge::advance_clock`] moves it or [`TestForge::set_clock`] starts it again. Lets a
    /// test put a push and an approval in the same second on purpose, without racing the wall
    /// clock.
    pub fn freeze_clock(&self, at: chrono::DateTime<chrono::Utc>) {
        self.shared.lock().frozen_at = Some(at);
    }

    /// The forge's current time (the wall clock plus every [`TestForge::advance_clock`], or the
    /// frozen instant), truncated to whole seconds like every stamp the forge makes.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.shared.lock().now()
    }

    /// Makes the next matching API calls fail.
    pub fn fail_next(&self, spec: FailureSpec) {
        self.shared.add_failure(spec);
    }

    /// Moves a branch for the next matching API calls only (both dialects): while each is
    /// served, `detour.branch` and its open pull requests' heads point at `detour.sha`, and
    /// afterwards they are back, with no webhook for either move. A force-push race, made
    /// deterministic. The detour is used up by matching calls that reach their handler (not by
    /// ones an injected failure or a bad token answers). Panics when the repository or commit
    /// does not exist or the branch name is invalid: that is a bug in the test.
    #[track_caller]
    pub fn detour_branch(&self, detour: BranchDetour) {
        let target = self
            .shared
            .lock()
            .detour_target(&detour.repo, &detour.branch, &detour.sha);
        match target {
            Ok(sha) => self.shared.add_detour(BranchDetour { sha, ..detour }),
            Err(e) => panic!("test-forge: detour_branch failed: {e}"),
        }
    }

    /// `user` points pull request `number` at `base` (with its `edited` webhook) right before
    /// the next API call `route` matches is served, in either dialect: a member's retarget
    /// landing between the bot's read of the PR and its merge.
    pub fn retarget_before(
        &self,
        route: RouteMatcher,
        repo: &str,
        number: u64,
        user: &User,
        base: &str,
    ) {
        self.shared.add_retarget(RetargetBefore {
            route,
            repo: repo.to_owned(),
            number,
            login: user.login.clone(),
            base: base.to_owned(),
        });
    }

    /// `user` pushes `files` to `branch` (with its webhooks) right before the next API call
    /// `route` matches is served, in either dialect: a member's push landing between the bot's
    /// read of its branch and its write there.
    pub fn push_before(
        &self,
        route: RouteMatcher,
        repo: &str,
        branch: &str,
        user: &User,
        files: &[(&str, &str)],
    ) {
        self.shared.add_push(PushBefore {
            route,
            repo: repo.to_owned(),
            branch: branch.to_owned(),
            login: user.login.clone(),
            files: files
                .iter()
                .map(|(p, c)| ((*p).to_owned(), (*c).to_owned()))
                .collect(),
        });
    }

    /// Reaction `reaction_id` on issue or pull request `number` is taken back right before the
    /// next API call `route` matches is served (GitHub dialect): a reaction removed while the
    /// bot reads the list page by page.
    pub fn unreact_before(&self, route: RouteMatcher, repo: &str, number: u64, reaction_id: u64) {
        self.shared.add_unreact(UnreactBefore {
            route,
            repo: repo.to_owned(),
            number,
            reaction_id,
        });
    }

    /// `user` opens a pull request (a merge request on GitLab) from branch `head_branch` of the
    /// fork `fork` (`owner/name`), writing `files`, right before the next API call `route`
    /// matches is served, in either dialect; see `open_fork_pr` for what it makes.
    pub fn open_fork_pr_before(
        &self,
        route: RouteMatcher,
        repo: &str,
        user: &User,
        fork: &str,
        head_branch: &str,
        files: &[(&str, &str)],
    ) {
        self.shared.add_fork_pull(ForkPullBefore {
            route,
            repo: repo.to_owned(),
            fork: fork.to_owned(),
            head_branch: head_branch.to_owned(),
            login: user.login.clone(),
            files: files
                .iter()
                .map(|(p, c)| ((*p).to_owned(), (*c).to_owned()))
                .collect(),
        });
    }

    /// Ends every injected failure not used up yet (an outage is over).
    pub fn clear_failures(&self) {
        self.shared.clear_failures();
    }

    /// The API calls made so far.
    pub fn calls(&self) -> CallStats {
        self.shared.calls()
    }

    /// Adds `latency` before every API call is handled (both dialects), as a forge far away.
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.shared.timeline.set_latency(latency);
    }

    /// Starts (or stops) recording a [`Span`] per API call and webhook send.
    pub fn record_timeline(&self, on: bool) {
        self.shared.timeline.set_recording(on);
    }

    /// The spans recorded since the last call, oldest first by their end.
    pub fn take_timeline(&self) -> Vec<Span> {
        self.shared.timeline.take()
    }

    /// Starts counting calls from zero.
    pub fn reset_calls(&self) {
        self.shared.reset_calls();
    }

    /// Spends `calls` of the rate-limit window (both dialects share it), as other clients of
    /// the same token would: past the limit every answer says none remain
    /// (`x-ratelimit-remaining: 0`, `RateLimit-Remaining: 0`) until the window resets an hour
    /// after it began. The forge still answers each call as it would (it throttles only through
    /// [`TestForge::fail_next`]), as a real forge answers the call that spends the last one.
    pub fn spend_rate_limit(&self, calls: u64) {
        self.shared.spend_rate(calls);
    }
}
