//! The scenario harness: the real service (HTTP, store, workers) against the test forge over
//! loopback, with signed webhooks, a manual clock shared by both, and helpers that read like the
//! story they tell.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod late;
mod person;
mod strict;

#[allow(unused_imports)] // not every test binary names them
pub use {person::Person, strict::Source};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use breakglass::clock::{Clock, ManualClock};
use breakglass::config::{Config, GithubConfig, GitlabConfig};
use breakglass::forge::unmarked;
use breakglass::service::{self, Options, Running};
use breakglass::store::Store;
use breakglass_test_forge::{Noteable, PullRequest, TestForge, User};
use chrono::{TimeDelta, TimeZone, Utc};

pub const REPO: &str = "acme/access-requests";
pub const SECRET: &str = "webhook-secret-for-tests";

/// Which database a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database of one scenario; dropped (and deleted) with it.
pub enum Database {
    Sqlite(breakglass::store::testing::TempDir),
    Postgres(breakglass::store::testing::PostgresDatabase),
}

impl Database {
    pub async fn create(backend: Backend) -> Option<(Database, String)> {
        match backend {
            Backend::Sqlite => {
                let dir = breakglass::store::testing::TempDir::new().expect("temp dir");
                let url = breakglass::store::testing::sqlite_url(dir.path());
                Some((Database::Sqlite(dir), url))
            }
            Backend::Postgres => {
                let (store, db) = breakglass::store::testing::postgres_store().await?;
                store.close().await;
                let url = db.url().to_owned();
                Some((Database::Postgres(db), url))
            }
        }
    }
}

/// People of the story. Teams: acme/sre (alice, erin), acme/sre-leads (carol, dan),
/// acme/oncall (bob, erin).
pub struct People {
    pub alice: User,
    pub bob: User,
    pub carol: User,
    pub dan: User,
    pub erin: User,
    pub mallory: User,
    pub bot: User,
}

pub struct Scenario {
    pub forge: TestForge,
    pub dialect: Dialect,
    pub clock: ManualClock,
    pub people: People,
    pub store: Store,
    pub config: Config,
    pub service: Option<Running>,
    /// More services on the same database (several replicas).
    pub replicas: Vec<Running>,
    /// Each forge call's timeout in every service of the scenario.
    pub forge_timeout: Duration,
    /// How long each service's first retry of a failed forge call waits.
    pub forge_backoff: Duration,
    /// Each service's grace for a graceful stop.
    pub shutdown_grace: Duration,
    strict: strict::Strict,
    /// The addresses of stopped services, kept bound (never listening) until the scenario ends:
    /// the forge still sends their webhooks there, and a test running beside this one must
    /// not be handed the port and receive them.
    stopped_addrs: Vec<tokio::net::TcpSocket>,
    _database: Database,
    _secrets: tempfile::TempDir,
}

/// How often each service of a scenario looks for work nothing woke it for (work of another
/// replica's, a retry at once); a move of the scenario's clock wakes its workers at once.
/// Each look is a few queries: at 20 ms, idle services kept PostgreSQL busy.
const TICK: Duration = Duration::from_millis(100);

fn policies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// A route of the bot's, named the same on both forges (see [`Scenario::fail_next`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Opening change requests.
    Changes,
    /// Reading one.
    Change,
    /// Merging one.
    Merge,
    /// Notes on a change request.
    Notes,
    /// Creating branches.
    Branches,
    /// Writing a file on a branch as a commit (GitHub: `PUT` one, `DELETE` one; GitLab: `POST`
    /// a commit).
    Files,
}

/// Which forge a scenario's requests repo lives on. The test forge speaks both, over the same
/// git repositories; the bot talks to it through that forge's own API and webhooks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dialect {
    #[default]
    GitHub,
    GitLab,
}

/// The scenarios' first retry backoff: a failed forge call is retried as in production
/// (the same attempts, doubling waits), but its waits cost the suite no real seconds while the
/// scenario's clocks stand still (production waits 200 ms, 400 ms and 800 ms).
pub const TEST_BACKOFF: Duration = Duration::from_millis(10);

/// How a scenario's world is set up beyond the defaults.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// The forge of the requests repo.
    pub dialect: Dialect,
    /// How far the forge's clock runs ahead of the bot's (negative: behind). Real clocks never
    /// agree; the bot must compare forge times only with forge times.
    pub forge_skew_secs: i64,
    /// The bot acts through a plain token account (GitHub type `User`, not `Bot`).
    pub bot_is_user: bool,
    /// `[aws]` for the aws-iam provider (a local moto endpoint).
    pub aws: Option<breakglass::config::AwsConfig>,
    /// How long each forge call may hang (`Options::forge_timeout`); the production 10 s when
    /// `None`. A hang costs real time while the scenario's clocks stand still.
    pub forge_timeout: Option<Duration>,
    /// How long the first retry of a failed forge call waits (`Options::forge_backoff`);
    /// [`TEST_BACKOFF`] when `None`, the production 200 ms when asked for.
    pub forge_backoff: Option<Duration>,
    /// How long a graceful stop waits for work in flight (`Options::shutdown_grace`); the
    /// production 10 s when `None`.
    pub shutdown_grace: Option<Duration>,
    /// Where the requests repo keeps its policies (the config's `policies_path`); `policies`
    /// when `None`.
    pub policies_path: Option<&'static str>,
}

impl Scenario {
    /// A requests repo with the example policies, the people, and the service running.
    /// `None` when the backend is not available (PostgreSQL without its URL).
    pub async fn start(backend: Backend) -> Option<Scenario> {
        Self::start_with(backend, Setup::default()).await
    }

    /// [`Scenario::start`] on the embedded SQLite with the test forge speaking GitLab's API.
    pub async fn on_gitlab() -> Scenario {
        let setup = Setup {
            dialect: Dialect::GitLab,
            ..Setup::default()
        };
        Self::start_with(Backend::Sqlite, setup)
            .await
            .expect("SQLite is always there")
    }

    /// [`Scenario::start`] with a [`Setup`].
    pub async fn start_with(backend: Backend, setup: Setup) -> Option<Scenario> {
        log_to_the_test();
        let Some((database, url)) = Database::create(backend).await else {
            eprintln!("SKIPPED postgres scenario: BREAKGLASS_TEST_DATABASE_URL is not set");
            return None;
        };
        let forge = TestForge::start().await;
        let people = People {
            alice: forge.user("alice"),
            bob: forge.user("bob"),
            carol: forge.user("carol"),
            dan: forge.user("dan"),
            erin: forge.user("erin"),
            mallory: forge.user("mallory"),
            bot: if setup.bot_is_user {
                forge.user("breakglass-bot")
            } else {
                forge.bot_user("breakglass[bot]")
            },
        };
        let prod = std::fs::read_to_string(policies_dir().join("prod.yaml")).unwrap();
        let staging = std::fs::read_to_string(policies_dir().join("staging.yaml")).unwrap();
        let network = std::fs::read_to_string(policies_dir().join("network.yaml")).unwrap();
        let policies_path = setup.policies_path.unwrap_or("policies");
        let policy = |env: &str| format!("{policies_path}/{env}.yaml");
        forge.create_repo(
            REPO,
            &[
                ("README.md", "# access requests\n"),
                (&policy("prod"), &prod),
                (&policy("staging"), &staging),
                (&policy("network"), &network),
            ],
        );
        for (team, user) in [
            ("acme/sre", &people.alice),
            ("acme/sre", &people.erin),
            ("acme/sre-leads", &people.carol),
            ("acme/sre-leads", &people.dan),
            ("acme/oncall", &people.bob),
            ("acme/oncall", &people.erin),
        ] {
            forge.add_team_member(team, user);
        }
        let secrets = tempfile::tempdir().unwrap();
        std::fs::write(secrets.path().join("token"), forge.token_for(&people.bot)).unwrap();
        std::fs::write(secrets.path().join("webhook"), SECRET).unwrap();
        let github = GithubConfig {
            api_url: forge.api_url(),
            repository: REPO.into(),
            token_file: Some(secrets.path().join("token")),
            webhook_secret_file: Some(secrets.path().join("webhook")),
            ..GithubConfig::default()
        };
        let gitlab = GitlabConfig {
            api_url: forge.gitlab_api_url(),
            project: REPO.into(),
            token_file: Some(secrets.path().join("token")),
            webhook_token_file: Some(secrets.path().join("webhook")),
            ..GitlabConfig::default()
        };
        let (github, gitlab) = match setup.dialect {
            Dialect::GitHub => (Some(github), None),
            Dialect::GitLab => (None, Some(gitlab)),
        };
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: url.clone(),
            github,
            gitlab,
            aws: setup.aws.clone(),
            policies_path: policies_path.to_owned(),
            ..Config::default()
        };
        // Both clocks start together (or `forge_skew_secs` apart); `advance` moves both.
        let start = Utc.with_ymd_and_hms(2026, 11, 26, 2, 14, 0).unwrap();
        let clock = ManualClock::new(start);
        forge.advance_clock(start + TimeDelta::seconds(setup.forge_skew_secs) - forge.now());
        let store = Store::connect(&url).await.expect("the test database opens");
        let mut scenario = Scenario {
            forge,
            dialect: setup.dialect,
            clock,
            people,
            store,
            config,
            service: None,
            replicas: Vec::new(),
            stopped_addrs: Vec::new(),
            forge_timeout: setup.forge_timeout.unwrap_or(service::FORGE_TIMEOUT),
            forge_backoff: setup.forge_backoff.unwrap_or(TEST_BACKOFF),
            shutdown_grace: setup.shutdown_grace.unwrap_or(service::SHUTDOWN_GRACE),
            strict: strict::Strict::default(),
            _database: database,
            _secrets: secrets,
        };
        scenario.start_service().await;
        // The start-up reconciliation pass lists the whole branch: settled first, so that it
        // never races what a test does next.
        scenario.settle().await;
        Some(scenario)
    }

    /// Starts (or restarts) the service on the same database.
    pub async fn start_service(&mut self) {
        let running = self.spawn_service().await;
        self.strict.watch(running.failures.clone());
        match self.dialect {
            Dialect::GitHub => self
                .forge
                .add_webhook(&format!("http://{}/webhooks/github", running.addr), SECRET),
            Dialect::GitLab => self
                .forge
                .add_gitlab_webhook(&format!("http://{}/webhooks/gitlab", running.addr), SECRET),
        }
        self.service = Some(running);
    }

    /// Starts one more replica on the same database. Webhooks still reach the first one (as
    /// through a load balancer), but every replica's workers claim deliveries and jobs from
    /// the shared database, so they race for all the work.
    pub async fn add_replica(&mut self) {
        let running = self.spawn_service().await;
        self.strict.watch(running.failures.clone());
        self.replicas.push(running);
    }

    async fn spawn_service(&self) -> Running {
        let options = Options {
            clock: Arc::new(self.clock.clone()) as Arc<dyn Clock>,
            database_clock: false,
            tick: TICK,
            templates_dir: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates")),
            env: |_| None,
            forge_timeout: self.forge_timeout,
            forge_backoff: self.forge_backoff,
            shutdown_grace: self.shutdown_grace,
        };
        service::start(&self.config, options)
            .await
            .expect("the service starts")
    }

    /// A crash: the service's tasks die where they stand, nothing is shut down cleanly.
    pub async fn crash(&mut self) {
        if let Some(running) = self.service.take() {
            let addr = running.addr;
            running.kill().await;
            self.keep_bound(addr);
        }
    }

    /// A graceful stop of the service (the signal's path).
    pub async fn stop(&mut self) {
        let running = self.service.take().expect("a running service");
        let addr = running.addr;
        running.shutdown().await;
        self.keep_bound(addr);
    }

    /// Holds a stopped service's port. SO_REUSEADDR lets the bind succeed beside the
    /// connections still in TIME_WAIT there, and the kernel then never hands the port to
    /// another socket that asks for any free one.
    fn keep_bound(&mut self, addr: std::net::SocketAddr) {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        if socket.bind(addr).is_ok() {
            self.stopped_addrs.push(socket);
        }
    }

    #[track_caller]
    pub fn webhook_url(&self) -> String {
        let route = match self.dialect {
            Dialect::GitHub => "github",
            Dialect::GitLab => "gitlab",
        };
        format!(
            "http://{}/webhooks/{route}",
            self.service.as_ref().expect("running").addr
        )
    }

    /// One reconciliation pass of the running service, now (besides its own every
    /// `reconcile_interval`), and what it started settled.
    pub async fn reconcile_now(&self) {
        let workflows = self.service.as_ref().expect("running").workflows.clone();
        workflows.shared().reconcile_all().await.unwrap();
        self.settle().await;
    }

    /// Moves both clocks forward.
    /// mallory pushes a 4h prod request `sneaky` straight to the default branch, past the bot:
    /// the direct push that reconciliation must remove and never grant.
    pub fn mallory_pushes_a_request_to_main(&self) {
        self.forge.push_direct(
            REPO,
            &self.people.mallory,
            &[("requests/prod/sneaky.yaml", &prod_request("4h"))],
            "grant myself",
        );
    }

    /// Moves both clocks: the forge's first, since the bot's move wakes the bot at once.
    pub fn advance(&self, by: TimeDelta) {
        self.forge.advance_clock(by);
        self.clock.advance(by);
    }

    /// Waits until the forge sent everything, the bot stored and handled every delivery, no
    /// job is due and no reconciliation pass is running (the first one, at start, finished);
    /// panics after 20 s (the bot is stuck).
    pub async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut quiet = 0;
        while quiet < 3 {
            assert!(
                Instant::now() < deadline,
                "the bot did not settle: {}",
                self.pending_work().await
            );
            self.forge.settle().await;
            let busy = !self.pending_work().await.is_empty();
            quiet = if busy { 0 } else { quiet + 1 };
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn pending_work(&self) -> String {
        let jobs = self.store.overdue_jobs(self.clock.now()).await.unwrap();
        let stuck: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT id, last_error FROM deliveries WHERE state = 'pending'")
                .fetch_all(self.store.pool())
                .await
                .unwrap();
        // A pass running, or due because the clock moved past it (a move wakes its worker),
        // is work still to come.
        let reconciling = self
            .service
            .iter()
            .chain(&self.replicas)
            .any(|running| !running.reconciliation.caught_up(self.clock.now()));
        // A job that cancelled its own row (closing a request) runs on unseen by the store.
        let running: usize = self
            .service
            .iter()
            .chain(&self.replicas)
            .map(|running| running.failures.jobs_running())
            .sum();
        if stuck.is_empty() && jobs.is_empty() && !reconciling && running == 0 {
            return String::new();
        }
        format!(
            "reconciling: {reconciling}, jobs running: {running}, pending deliveries: {stuck:?}, due jobs: {:?}",
            jobs.iter()
                .map(|j| (j.kind.to_string(), j.attempts, j.last_error.clone()))
                .collect::<Vec<_>>()
        )
    }

    /// Opens a request change (a GitHub PR, a GitLab MR) as `user` adding
    /// `requests/<env>/<id>.yaml`; its number as the bot sees it (a PR number, an MR iid).
    #[track_caller]
    pub fn open_request(&self, user: &User, env: &str, id: &str, yaml: &str) -> u64 {
        let branch = format!("request-{id}");
        let path = format!("requests/{env}/{id}.yaml");
        self.forge.push_files(
            REPO,
            &branch,
            user,
            &[(&path, yaml)],
            &format!("request {id}"),
        );
        let title = format!("Access request {id}");
        match self.dialect {
            Dialect::GitHub => self.forge.open_pr(REPO, user, &branch, &title, ""),
            Dialect::GitLab => self.forge.gl_open_mr(REPO, user, &branch, &title, ""),
        }
    }

    /// A change request (PR or MR) by the number the bot knows it by.
    #[track_caller]
    pub fn change(&self, number: u64) -> PullRequest {
        match self.dialect {
            Dialect::GitHub => self.forge.pr(REPO, number),
            Dialect::GitLab => {
                let mut mr = self.forge.gl_mr(REPO, number);
                mr.number = number; // the iid, as the bot knows it
                mr
            }
        }
    }

    /// Every change request of the repo, as the bot numbers them.
    #[track_caller]
    pub fn changes(&self) -> Vec<PullRequest> {
        let all = self.forge.prs(REPO);
        match self.dialect {
            Dialect::GitHub => all,
            Dialect::GitLab => all
                .into_iter()
                .filter_map(|pr| match self.forge.gl_iid(REPO, pr.number) {
                    Noteable::MergeRequest(iid) => Some(self.change(iid)),
                    Noteable::Issue(_) => None,
                })
                .collect(),
        }
    }

    /// The first change request the bot opened (a request asked for by comment); its number.
    #[track_caller]
    pub fn first_bot_change(&self) -> u64 {
        self.changes()
            .into_iter()
            .find(|p| p.user == self.people.bot.login)
            .expect("the bot opened a change request")
            .number
    }

    /// Opens a change request from `branch` as `user`; its number as the bot sees it.
    #[track_caller]
    pub fn open_change(&self, user: &User, branch: &str, title: &str) -> u64 {
        self.open_change_with(user, branch, title, "")
    }

    /// Opens a change request from `branch` as `user`, with a description; its number.
    #[track_caller]
    pub fn open_change_with(&self, user: &User, branch: &str, title: &str, body: &str) -> u64 {
        match self.dialect {
            Dialect::GitHub => self.forge.open_pr(REPO, user, branch, title, body),
            Dialect::GitLab => self.forge.gl_open_mr(REPO, user, branch, title, body),
        }
    }

    /// A change request opened by `user` and labelled `label` before the bot hears of either,
    /// as when the label is put on at once: the bot decides it labelled, whatever the machine's
    /// load makes of the time between the two calls.
    pub fn open_labelled_change(&self, user: &User, branch: &str, title: &str, label: &str) -> u64 {
        self.before_the_bot_hears(|| {
            let number = self.open_change(user, branch, title);
            self.label(number, user, label);
            number
        })
    }

    /// bob (on call) asks for `prod/admin` for 45m as `r-sev1` in a PR labelled `sev1`, opened
    /// from branch `sev1-request`: the `sev1` fast path applies. Its number.
    pub fn open_bob_sev1_change(&self) -> u64 {
        let bob = &self.people.bob;
        let yaml = "environment: prod\nrole: admin\nduration: 45m\nreason: incident INC-9 payments down\nticket: INC-9\n";
        self.forge.push_files(
            REPO,
            "sev1-request",
            bob,
            &[("requests/prod/r-sev1.yaml", yaml)],
            "request",
        );
        self.open_labelled_change(bob, "sev1-request", "sev1 access", "sev1")
    }

    /// alice opens an issue "checkout is down" and asks there for 1h of `prod/admin` by a
    /// `/breakglass` comment; the issue's number.
    pub fn alice_asks_by_comment(&self) -> u64 {
        let issue = self.open_issue(&self.people.alice, "checkout is down");
        self.note_on_issue(
            issue,
            &self.people.alice,
            "/breakglass prod 1h admin -- incident: INC-77 checkout DB failover",
        );
        issue
    }

    /// The numbers of the change requests breakglass opened, oldest first.
    pub fn bot_changes(&self) -> Vec<u64> {
        self.changes()
            .into_iter()
            .filter(|change| change.user == self.people.bot.login)
            .map(|change| change.number)
            .collect()
    }

    /// Runs `steps` on the forge with its webhooks held, then sends them: the bot hears of
    /// them only once all are done, as of a change opened as a draft or labelled at once,
    /// whatever the machine's load makes of the time between the calls.
    pub fn before_the_bot_hears<T>(&self, steps: impl FnOnce() -> T) -> T {
        self.forge.set_webhooks_paused(true);
        let done = steps();
        self.forge.set_webhooks_paused(false);
        self.forge.flush_webhooks();
        done
    }

    /// The test forge's own number of change request `number` (its shared helpers take it).
    #[track_caller]
    pub fn internal(&self, number: u64) -> u64 {
        match self.dialect {
            Dialect::GitHub => number,
            Dialect::GitLab => self.forge.gl_number(REPO, Noteable::MergeRequest(number)),
        }
    }

    /// `user` labels change request `number`.
    #[track_caller]
    pub fn label(&self, number: u64, user: &User, name: &str) {
        self.forge.label(REPO, self.internal(number), user, name);
    }

    /// `user` takes label `name` off change request `number`.
    #[track_caller]
    pub fn unlabel(&self, number: u64, user: &User, name: &str) {
        self.forge.unlabel(REPO, self.internal(number), user, name);
    }

    /// The labels of change request `number`.
    #[track_caller]
    pub fn labels(&self, number: u64) -> Vec<String> {
        self.forge.labels(REPO, self.internal(number))
    }

    /// `user` closes change request `number`.
    #[track_caller]
    pub fn close_change(&self, number: u64, user: &User) {
        self.forge.close_pr(REPO, self.internal(number), user);
    }

    /// Marks change request `number` a draft, or ready.
    #[track_caller]
    pub fn set_draft(&self, number: u64, user: &User, draft: bool) {
        self.forge
            .set_draft(REPO, self.internal(number), user, draft);
    }

    /// The next `count` calls of `method` on the route the bot uses for `what` fail with
    /// `kind`, in this forge's dialect.
    #[track_caller]
    pub fn fail_next(
        &self,
        what: Route,
        method: http::Method,
        count: u32,
        kind: breakglass_test_forge::FailureKind,
    ) {
        self.forge.fail_next(breakglass_test_forge::FailureSpec {
            route: breakglass_test_forge::RouteMatcher::Route {
                method: Some(method),
                template: self.route(what).to_owned(),
            },
            count,
            kind,
        });
    }

    /// The route template (as the test forge counts calls) of `what` in this dialect.
    pub fn route(&self, what: Route) -> &'static str {
        match (self.dialect, what) {
            (Dialect::GitHub, Route::Changes) => "/repos/{owner}/{repo}/pulls",
            (Dialect::GitHub, Route::Change) => "/repos/{owner}/{repo}/pulls/{number}",
            (Dialect::GitHub, Route::Merge) => "/repos/{owner}/{repo}/pulls/{number}/merge",
            (Dialect::GitHub, Route::Notes) => "/repos/{owner}/{repo}/issues/{number}/comments",
            (Dialect::GitLab, Route::Changes) => "/api/v4/projects/{id}/merge_requests",
            (Dialect::GitLab, Route::Change) => "/api/v4/projects/{id}/merge_requests/{iid}",
            (Dialect::GitLab, Route::Merge) => "/api/v4/projects/{id}/merge_requests/{iid}/merge",
            (Dialect::GitLab, Route::Notes) => "/api/v4/projects/{id}/merge_requests/{iid}/notes",
            (Dialect::GitHub, Route::Branches) => "/repos/{owner}/{repo}/git/refs",
            (Dialect::GitHub, Route::Files) => "/repos/{owner}/{repo}/contents/{*path}",
            (Dialect::GitLab, Route::Branches) => "/api/v4/projects/{id}/repository/branches",
            (Dialect::GitLab, Route::Files) => "/api/v4/projects/{id}/repository/commits",
        }
    }

    /// `user` comments `body` on change request `number`; the comment's id.
    #[track_caller]
    pub fn note(&self, number: u64, user: &User, body: &str) -> u64 {
        match self.dialect {
            Dialect::GitHub => self.forge.comment(REPO, number, user, body),
            Dialect::GitLab => self.forge.gl_comment_mr(REPO, number, user, body),
        }
    }

    /// Opens an issue as `user`; its number.
    #[track_caller]
    pub fn open_issue(&self, user: &User, title: &str) -> u64 {
        self.open_issue_with(user, title, "")
    }

    /// Opens an issue with a description as `user`; its number.
    #[track_caller]
    pub fn open_issue_with(&self, user: &User, title: &str, body: &str) -> u64 {
        match self.dialect {
            Dialect::GitHub => self.forge.open_issue(REPO, user, title, body),
            Dialect::GitLab => self.forge.gl_open_issue(REPO, user, title, body),
        }
    }

    /// `user` comments `body` on issue `number`.
    #[track_caller]
    pub fn note_on_issue(&self, number: u64, user: &User, body: &str) -> u64 {
        match self.dialect {
            Dialect::GitHub => self.forge.comment(REPO, number, user, body),
            Dialect::GitLab => self.forge.gl_comment_issue(REPO, number, user, body),
        }
    }

    /// The bot's comments on issue `number`, oldest first.
    #[track_caller]
    pub fn bot_issue_comments(&self, number: u64) -> Vec<String> {
        self.issue_comments(number)
            .into_iter()
            .filter(|(who, _)| *who == self.people.bot.login)
            .map(|(_, body)| body)
            .collect()
    }

    /// What the bot calls a change request in its comments: `PR` on GitHub, `MR` on GitLab.
    pub fn pr(&self) -> &'static str {
        match self.dialect {
            Dialect::GitHub => "PR",
            Dialect::GitLab => "MR",
        }
    }

    /// How the bot links change request `number` in its comments.
    pub fn change_ref(&self, number: u64) -> String {
        match self.dialect {
            Dialect::GitHub => format!("#{number}"),
            Dialect::GitLab => format!("!{number}"),
        }
    }

    /// The comments on issue `number`, oldest first, as `(author, body)`.
    #[track_caller]
    pub fn issue_comments(&self, number: u64) -> Vec<(String, String)> {
        let list = match self.dialect {
            Dialect::GitHub => self.forge.comments(REPO, number),
            Dialect::GitLab => self.forge.gl_notes(REPO, Noteable::Issue(number)),
        };
        list.into_iter()
            .map(|c| (c.user, unmarked(&c.body).to_owned()))
            .collect()
    }

    /// `user` puts emoji `name` (GitHub's names: `+1`, `-1`, `hooray`…) on change `number`, a
    /// second after whatever came before on the forge's clock; the emoji's id.
    #[track_caller]
    pub fn emoji(&self, number: u64, user: &User, name: &str) -> u64 {
        self.forge.advance_clock(TimeDelta::seconds(1));
        self.emoji_now(number, user, name)
    }

    /// [`Scenario::emoji`] at the forge's current second (which may be the push's).
    #[track_caller]
    pub fn emoji_now(&self, number: u64, user: &User, name: &str) -> u64 {
        match self.dialect {
            Dialect::GitHub => self.forge.react(REPO, number, user, name),
            Dialect::GitLab => {
                let gitlab = match name {
                    "+1" => "thumbsup",
                    "-1" => "thumbsdown",
                    "hooray" => "tada",
                    "laugh" => "laughing",
                    other => other,
                };
                self.forge.gl_award_mr(REPO, number, user, gitlab)
            }
        }
    }

    /// Takes emoji `id` off change `number` again.
    #[track_caller]
    pub fn remove_emoji(&self, number: u64, id: u64) {
        match self.dialect {
            Dialect::GitHub => self.forge.unreact(REPO, number, id),
            Dialect::GitLab => self
                .forge
                .gl_revoke_award(REPO, Noteable::MergeRequest(number), id),
        }
    }

    /// `user` approves change `number` with the forge's own button (a GitHub approving review,
    /// GitLab's Approve), a second after whatever came before.
    #[track_caller]
    pub fn approve_button(&self, number: u64, user: &User) {
        self.forge.advance_clock(TimeDelta::seconds(1));
        match self.dialect {
            Dialect::GitHub => {
                self.forge.review(
                    REPO,
                    number,
                    user,
                    breakglass_test_forge::ReviewState::Approved,
                );
            }
            Dialect::GitLab => self.forge.gl_approve(REPO, number, user),
        }
    }

    /// Takes `user`'s approval of change `number` back (GitLab's Revoke approval; on GitHub the
    /// review is dismissed, by `user`).
    #[track_caller]
    pub fn unapprove_button(&self, number: u64, user: &User) {
        match self.dialect {
            Dialect::GitHub => {
                let review = self
                    .forge
                    .reviews(REPO, number)
                    .into_iter()
                    .rfind(|r| r.user == user.login)
                    .expect("a review to dismiss");
                self.forge.dismiss_review(REPO, number, review.id, user);
            }
            Dialect::GitLab => self.forge.gl_unapprove(REPO, number, user),
        }
    }

    /// `user` comments `/breakglass approve` on `pr`, a second after whatever came before on
    /// the forge's clock (an approval in the same second as the push is ambiguous, and the bot
    /// asks again). Only the forge's clock moves: the bot's stays behind, as real clocks do.
    #[track_caller]
    pub fn approve(&self, pr: u64, user: &User) -> u64 {
        self.forge.advance_clock(TimeDelta::seconds(1));
        self.note(pr, user, "/breakglass approve")
    }

    /// alice's `network/dns-admin` request `id` (2h, an `iac` role), re-opened by the bot with
    /// its grant file, approved by carol and merged; the grant file's path.
    pub async fn iac_granted(&self, id: &str) -> String {
        let yaml =
            "environment: network\nrole: dns-admin\nduration: 2h\nreason: move the apex record\n";
        let pr = self.open_request(&self.people.alice, "network", id, yaml);
        self.settle().await;
        let bot_pr = self.reopened_pr(pr);
        self.approve(bot_pr, &self.people.carol);
        self.settle().await;
        assert_eq!(self.request(id).await.state.to_string(), "active");
        format!("grants/network/{id}.tf")
    }

    /// The PR breakglass opened from its own branch for the request first asked for in
    /// `original` (an iac role's), as its next comment on `original` says; `original` closed.
    #[track_caller]
    pub fn reopened_pr(&self, original: u64) -> u64 {
        let said = self.next_bot_comment(original);
        let number = said
            .split("re-opened the request as ")
            .nth(1)
            .map(|rest| rest.trim_start_matches(['#', '!']))
            .and_then(|rest| rest.split('.').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not re-opened: {said}"));
        assert_eq!(self.forge.pr(REPO, original).state, "closed");
        number
    }

    /// alice's prod request `id` for `duration`, approved by carol and merged; its PR number.
    pub async fn granted(&self, id: &str, duration: &str) -> u64 {
        let pr = self.open_request(&self.people.alice, "prod", id, &prod_request(duration));
        self.settle().await;
        self.approve(pr, &self.people.carol);
        self.settle().await;
        assert!(
            self.change(pr).merged,
            "{id} was not granted: {:#?}",
            self.bot_comments(pr)
        );
        let verdict = self.next_bot_comment(pr);
        assert!(verdict.starts_with("✅ **Request"), "{verdict}");
        let granted = self.next_bot_comment(pr);
        assert!(granted.starts_with("🔓 **Access granted.**"), "{granted}");
        pr
    }

    /// The merge commit of a merged PR, as `git log` of the default branch shows it.
    #[track_caller]
    pub fn merge_commit(&self, number: u64) -> breakglass_test_forge::CommitInfo {
        let sha = self
            .change(number)
            .merge_commit_sha
            .unwrap_or_else(|| panic!("#{number} is not merged"));
        self.forge
            .log(REPO, "main")
            .into_iter()
            .find(|c| c.sha == sha)
            .unwrap_or_else(|| panic!("{sha} is not on main"))
    }

    /// The bot's comments on a PR, oldest first, read or not (to look; tests read them with
    /// [`Scenario::next_bot_comment`]).
    #[track_caller]
    pub fn bot_comments(&self, number: u64) -> Vec<String> {
        let comments = match self.dialect {
            Dialect::GitHub => self.forge.comments(REPO, number),
            Dialect::GitLab => self.forge.gl_notes(REPO, Noteable::MergeRequest(number)),
        };
        comments
            .into_iter()
            .filter(|c| c.user == self.people.bot.login)
            .map(|c| unmarked(&c.body).to_owned())
            .collect()
    }

    /// The policy status of a commit.
    #[track_caller]
    pub fn policy_status(&self, sha: &str) -> Option<(String, String)> {
        self.forge
            .statuses(REPO, sha)
            .into_iter()
            .rfind(|s| s.context == "breakglass/policy")
            .map(|s| (s.state, s.description.unwrap_or_default()))
    }

    /// The revert PR of request `id`.
    pub async fn revert_pr(&self, id: &str) -> u64 {
        self.request(id)
            .await
            .revert_pr_number
            .unwrap_or_else(|| panic!("{id} has no revert PR"))
    }

    /// The event log entries of request `id` of one kind, oldest first.
    pub async fn events(&self, id: &str, kind: &str) -> Vec<breakglass::store::EventRecord> {
        self.store
            .events_for_request(&id.to_owned().try_into().unwrap())
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind.as_str() == kind)
            .collect()
    }

    /// Rewrites a policy on the default branch (as `user`, a direct push).
    #[track_caller]
    /// `user` pushes `edit` of `env`'s policy to the default branch; the commit's sha.
    pub fn edit_policy(&self, user: &User, env: &str, edit: impl Fn(String) -> String) -> String {
        let path = format!("{}/{env}.yaml", self.config.policies_path);
        let text = edit(self.forge.file_on(REPO, "main", &path).unwrap());
        self.forge
            .push_direct(REPO, user, &[(&path, &text)], "edit policy")
    }

    /// Waits (real time, 20 s at most) until a delivery's handling has failed once: its retry
    /// then comes due on the bot's clock (a pending delivery keeps [`Self::settle`] waiting).
    pub async fn until_a_delivery_failed(&self) {
        self.until_a_delivery_failed_with("").await;
    }

    /// [`Self::until_a_delivery_failed`] with an error that contains `needle`.
    pub async fn until_a_delivery_failed_with(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let tried = "SELECT COUNT(*) FROM deliveries WHERE last_error LIKE $1";
        loop {
            let (failed,): (i64,) = sqlx::query_as(tried)
                .bind(format!("%{needle}%"))
                .fetch_one(self.store.pool())
                .await
                .unwrap();
            if failed > 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no delivery failed with {needle:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits (real time, 20 s at most) until the bot has handled the push webhook of commit
    /// `sha`: for a step that must be heard before the next while other work keeps the bot
    /// from settling (a merge step puts off that PR's deliveries until it is over).
    pub async fn heard_push_of(&self, sha: &str) {
        self.forge.settle().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        let query = "SELECT COUNT(*), COUNT(CASE WHEN state = 'done' THEN 1 END) FROM deliveries \
                     WHERE event IN ('push', 'Push Hook') AND payload LIKE $1";
        loop {
            let (all, done): (i64, i64) = sqlx::query_as(query)
                .bind(format!("%{sha}%"))
                .fetch_one(self.store.pool())
                .await
                .unwrap();
            if all > 0 && done == all {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the push of {sha} was not handled"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// prod's policy on the default branch asks for two approvals (a direct push by erin,
    /// an admin of the requests repo), and the bot has taken it in.
    pub async fn prod_needs_two_approvals(&self) {
        self.edit_policy(&self.people.erin, "prod", |p| {
            p.replace("approvals: 1", "approvals: 2")
        });
        self.settle().await;
    }

    pub async fn request(&self, id: &str) -> breakglass::store::RequestRecord {
        self.store
            .get_request(&id.to_owned().try_into().unwrap())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no request {id}"))
    }

    /// Asserts that prod request `id` is revoked and its request file gone from main.
    pub async fn expect_revoked_and_removed(&self, id: &str) {
        assert_eq!(self.request(id).await.state.to_string(), "revoked");
        let path = format!("requests/prod/{id}.yaml");
        assert!(
            self.forge.file_on(REPO, "main", &path).is_none(),
            "{path} is still on main"
        );
    }
}

/// A valid prod request for alice (1h).
pub fn prod_request(duration: &str) -> String {
    format!(
        "environment: prod\nrole: admin\nduration: {duration}\nreason: \"incident: INC-1234 checkout DB failover\"\nticket: INC-1234\n"
    )
}

/// Runs a scenario body with the forge's clock 7 s ahead of the bot's and 7 s behind it (on
/// SQLite), and ahead on PostgreSQL: approval timing must not depend on the bot's clock.
#[macro_export]
macro_rules! on_skewed_clocks {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            async fn run(backend: Backend, skew: i64) {
                let setup = Setup {
                    forge_skew_secs: skew,
                    ..Setup::default()
                };
                if let Some(s) = Scenario::start_with(backend, setup).await {
                    ($body)(s).await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_forge_ahead() {
                run(Backend::Sqlite, 7).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_forge_behind() {
                run(Backend::Sqlite, -7).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_forge_ahead() {
                run(Backend::Postgres, 7).await;
            }
        }
    };
}

/// The bot's log, warnings and errors (or `BREAKGLASS_LOG`'s filter), into the test's own
/// output: the test runner shows it for a test that fails, so that a failure seen once (a CI
/// run) tells what the bot was doing.
fn log_to_the_test() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BREAKGLASS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,sqlx=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_test_writer()
        .try_init();
}

/// Runs a scenario body on SQLite and, when configured, on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(s) = Scenario::start(Backend::Sqlite).await {
                    ($body)(s).await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(s) = Scenario::start(Backend::Postgres).await {
                    ($body)(s).await;
                }
            }
        }
    };
}

/// Runs a scenario body on each forge (GitHub, GitLab) and each database (SQLite, and
/// PostgreSQL when configured): one story, four runs; optionally on a [`Setup`] of its own
/// (its dialect is each forge's in turn).
#[macro_export]
macro_rules! on_both_forges {
    ($name:ident, $body:expr) => {
        $crate::on_both_forges!($name, Setup::default(), $body);
    };
    ($name:ident, $setup:expr, $body:expr) => {
        mod $name {
            use super::*;
            async fn run(dialect: Dialect, backend: Backend) {
                let setup = Setup { dialect, ..$setup };
                if let Some(s) = Scenario::start_with(backend, setup).await {
                    ($body)(s).await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn github_sqlite() {
                run(Dialect::GitHub, Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn github_postgres() {
                run(Dialect::GitHub, Backend::Postgres).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn gitlab_sqlite() {
                run(Dialect::GitLab, Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn gitlab_postgres() {
                run(Dialect::GitLab, Backend::Postgres).await;
            }
        }
    };
}

/// Runs a scenario body on each forge with the forge's clock 7 s ahead of the bot's and 7 s
/// behind it (SQLite): approval timing must not depend on the bot's clock, on either forge.
#[macro_export]
macro_rules! on_both_forges_skewed {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            async fn run(dialect: Dialect, skew: i64) {
                let setup = Setup {
                    dialect,
                    forge_skew_secs: skew,
                    ..Setup::default()
                };
                if let Some(s) = Scenario::start_with(Backend::Sqlite, setup).await {
                    ($body)(s).await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn github_forge_ahead() {
                run(Dialect::GitHub, 7).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn github_forge_behind() {
                run(Dialect::GitHub, -7).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn gitlab_forge_ahead() {
                run(Dialect::GitLab, 7).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn gitlab_forge_behind() {
                run(Dialect::GitLab, -7).await;
            }
        }
    };
}
