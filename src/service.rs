//! `breakglass serve`: wires the store, the forge client, the HTTP server and the workers
//! (webhook deliveries; due jobs in two lanes, revokes apart from forge work; reconciliation),
//! and shuts them down gracefully: stop claiming, finish
//! what is in flight, then exit. Everything in flight is durable, so even a hard stop loses
//! nothing: leases lapse and the next start picks the work up.

pub mod standalone;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{Config, GithubConfig, GitlabConfig, read_secrets};
use crate::database_clock;
use crate::failures::{Failures, Work};
use crate::forge::github::{GithubAuth, GithubClient};
use crate::forge::gitlab::{GitlabAuth, GitlabClient};
use crate::forge::retry::RetryPolicy;
use crate::forge::{Delivery, Forge, ForgeError};
use crate::grant::Providers;
use crate::grant::aws_iam::AwsProvider;
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::server::{AppState, Gaps, Intake, Recorder, router};
use crate::store::{Job, JobId, JobKind, Lane, Store, StoreError, StoredDelivery};
use crate::workflow::{RevokeOutcome, Settings, Workflow, Workflows};

/// How long a claimed delivery or job stays ours without a heartbeat: a worker that dies
/// (`kill -9`, a lost node) frees its work this soon, so an expiry it held still fires within
/// seconds of the service being back (issue 11: "no later than expiry + 5 s").
const LEASE: Duration = Duration::from_secs(2);
/// A live worker renews its leases this often while it works…
const HEARTBEAT: Duration = Duration::from_millis(500);
/// …for at most this long: a worker stuck on its work lets another take it over.
const MAX_HOLD: Duration = Duration::from_secs(120);

/// Runs `work` while renewing its leases every [`HEARTBEAT`] (up to [`MAX_HOLD`]). The
/// heartbeat is polled beside the work, never instead of it: a renewal waiting for the
/// database must not stall the work that holds it (SQLite has one writer). A failed renewal is
/// only logged: the lease then lapses and the work may run twice, which every step tolerates.
async fn renewing<T, R>(work: impl Future<Output = T>, renew: impl Fn() -> R) -> T
where
    R: Future<Output = Result<u64, StoreError>>,
{
    let heartbeat = async {
        let started = std::time::Instant::now();
        let mut ticks = tokio::time::interval(HEARTBEAT);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is immediate; the claim itself is fresh
        loop {
            ticks.tick().await;
            if started.elapsed() >= MAX_HOLD {
                return;
            }
            if let Err(err) = renew().await {
                tracing::warn!(%err, "cannot renew leases");
            }
        }
    };
    tokio::pin!(work, heartbeat);
    tokio::select! {
        out = &mut work => return out,
        () = &mut heartbeat => {}
    }
    work.await
}

/// Everything `serve` needs that does not come from the config file.
#[derive(Debug)]
pub struct Options {
    /// This host's clock.
    pub clock: Arc<dyn Clock>,
    /// On PostgreSQL, keep time by the database server's clock (`clock` plus a measured
    /// offset; see `database_clock`), so that replicas on hosts whose clocks disagree still
    /// agree on leases and due times. Not a config key: on in production; off where `clock`
    /// is a test's manual clock, which the database's would override.
    pub database_clock: bool,
    /// How often idle workers look for work (due jobs are found at most this late).
    pub tick: Duration,
    /// Where grant templates live; `None` takes `templates_path` from the config.
    pub templates_dir: Option<std::path::PathBuf>,
    /// Reads an environment variable (tests pass their own).
    pub env: fn(&str) -> Option<String>,
    /// How long each attempt of a forge API call may take before it is abandoned (then
    /// retried, at most [`RetryPolicy::attempts`] times in all; see `forge::retry`): a forge
    /// that accepts the connection and never answers costs a call this long, and holds the
    /// PR it is for no longer. Not a config key: [`FORGE_TIMEOUT`] in production; tests of
    /// hanging forges set it short.
    pub forge_timeout: Duration,
    /// How long the first retry of a failed forge call waits (doubling for each next one).
    /// Not a config key: [`FORGE_BACKOFF`] in production; tests of long outages set it short,
    /// as each failed call's retries cost them real time while their clocks stand still.
    pub forge_backoff: Duration,
    /// How long a graceful stop waits for the work in flight; what is still running then is
    /// dropped where it stands, as in a crash (its leases lapse and it runs again on the next
    /// start or on another replica). Not a config key: [`SHUTDOWN_GRACE`] in production.
    pub shutdown_grace: Duration,
}

/// The production [`Options::forge_timeout`].
pub const FORGE_TIMEOUT: Duration = crate::forge::retry::DEFAULT_TIMEOUT;

/// The production [`Options::forge_backoff`].
pub const FORGE_BACKOFF: Duration = crate::forge::retry::FIRST_BACKOFF;

/// The production [`Options::shutdown_grace`]: work against a forge that does not answer
/// would otherwise hold a stop for minutes (each call's attempts and backoff), well past the
/// 30 s a Kubernetes pod or a systemd unit is given before it is killed anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

impl Default for Options {
    fn default() -> Self {
        Self {
            clock: Arc::new(crate::clock::SystemClock),
            database_clock: true,
            tick: Duration::from_secs(1),
            templates_dir: None,
            env: |name| std::env::var(name).ok(),
            forge_timeout: FORGE_TIMEOUT,
            forge_backoff: FORGE_BACKOFF,
            shutdown_grace: SHUTDOWN_GRACE,
        }
    }
}

/// A running service.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    /// The workflows as started: on a forge that did not answer at start, without the bot's
    /// account (the workers that need it get it once the forge answers).
    pub workflows: Workflows,
    /// Where reconciliation stands (it runs beside the queues, so an empty queue says nothing
    /// about it).
    pub reconciliation: Arc<Reconciliation>,
    /// Every failed delivery, job and reconciliation pass, even those a retry fixed later.
    pub failures: Arc<Failures>,
    shutdown: watch::Sender<bool>,
    grace: Duration,
    tasks: Vec<JoinHandle<()>>,
}

/// How far reconciliation got: a pass runs at start and every `reconcile_interval`; and
/// whether the catch-up (see [`Workflow::catch_up`]) has looked at every gap.
#[derive(Debug, Default)]
pub struct Reconciliation {
    running: AtomicBool,
    passes: AtomicU64,
    /// When the next pass is due by the service's clock, in milliseconds since the epoch.
    next_due: AtomicI64,
    gaps: Arc<Gaps>,
}

impl Reconciliation {
    /// Whether no pass is running, at least one has finished since the service started, and
    /// the catch-up has looked at every gap.
    pub fn idle(&self) -> bool {
        self.passes.load(Ordering::SeqCst) > 0
            && !self.running.load(Ordering::SeqCst)
            && self.gaps.all_closed()
    }

    /// [`Self::idle`], and the next pass is not due at `now` either: a clock moved past it
    /// leaves a pass to come, which `idle` alone does not show.
    pub fn caught_up(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.idle() && self.next_due.load(Ordering::SeqCst) > now.timestamp_millis()
    }
}

impl Running {
    /// Graceful stop: no new work is claimed, work in flight finishes within
    /// [`Options::shutdown_grace`]; what is left then is dropped as in a crash.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + self.grace;
        for mut task in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::warn!(grace = ?self.grace, "work still in flight at the end of the grace period is stopped; it runs again after its lease");
                task.abort();
                let _ = task.await; // gone before the stop returns (its socket, its leases' renewals)
            }
        }
    }

    /// A crash: every task is dropped where it stands (tests of crash safety use this). An
    /// abort takes effect at a task's next await, so the crash is over (its socket closed, no
    /// webhook accepted any more, as a process's death closes them at once) only when the
    /// returned future is.
    pub fn kill(self) -> impl Future<Output = ()> {
        for task in &self.tasks {
            task.abort();
        }
        async move {
            for task in self.tasks {
                let _ = task.await;
            }
        }
    }
}

/// Starts the service and returns once it listens.
pub async fn start(config: &Config, mut options: Options) -> anyhow::Result<Running> {
    anyhow::ensure!(
        config.github.is_some() || config.gitlab.is_some(),
        "breakglass serve needs a [github] or a [gitlab] section (or both)"
    );
    let store = open_store(&config.database_url).await?;
    let (clock, database_clock) =
        database_clock::service_clock(&store, options.clock.clone(), options.database_clock)
            .await
            .context("reading the database's clock")?;
    options.clock = clock;
    let metrics = Arc::new(Metrics::default());
    let providers = providers(config, &options).await;
    let common = Common {
        store: &store,
        config,
        options: &options,
        providers: &providers,
        metrics: &metrics,
    };
    let (workflows, intakes) = common.workflows().await?;
    let wake_deliveries = Arc::new(Notify::new());
    let gaps = Arc::new(Gaps::at_start());
    let served: Vec<String> = workflows
        .iter()
        .map(|w| format!("{} {}", w.forge.kind(), w.settings.repository))
        .collect();
    let state = AppState {
        store: store.clone(),
        recorder: Recorder::start(store.clone()),
        github: intakes.github,
        gitlab: intakes.gitlab,
        metrics,
        clock: options.clock.clone(),
        database_clock: database_clock.clone(),
        wake: wake_deliveries.clone(),
        gaps: gaps.clone(),
    };
    let (shutdown, watcher) = watch::channel(false);
    let (addr, server) = serve_http(config.listen, state, watcher.clone()).await?;
    let failures = Arc::new(Failures::default());
    let clock_task = database_clock.map(|clock| clock.keep_in_step(store.clone(), watcher.clone()));
    let (reconciliation, [revokes, forge_side]) = spawn_workers(
        &workflows,
        (wake_deliveries, gaps),
        config.reconcile_interval.as_std(),
        Worker {
            stop: watcher,
            tick: options.tick,
            clock_moves: options.clock.moves(),
            failures: failures.clone(),
        },
    );
    let mut tasks = vec![server, revokes, forge_side];
    tasks.extend(clock_task);
    tracing::info!(%addr, serving = ?served, "breakglass is serving");
    Ok(Running {
        addr,
        workflows,
        reconciliation,
        failures,
        shutdown,
        grace: options.shutdown_grace,
        tasks,
    })
}

/// The store, migrated to this version's schema.
async fn open_store(database_url: &str) -> anyhow::Result<Store> {
    let store = Store::connect(database_url)
        .await
        .context("opening the database")?;
    store.migrate().await.context("migrating the database")?;
    Ok(store)
}

/// The HTTP server on `listen`, serving until `watcher` says stop; returns the address it
/// listens on (the port chosen when `listen` asks for port 0).
async fn serve_http(
    listen: SocketAddr,
    state: AppState,
    watcher: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(crate::server::listen::serve(
        listener,
        router(state),
        watcher,
    ));
    Ok((addr, server))
}

/// The two lanes of background work: the revocation lane, and the forge side (deliveries,
/// forge jobs, reconciliation). Returns where reconciliation stands and both tasks.
fn spawn_workers(
    workflows: &Workflows,
    (wake_deliveries, gaps): (Arc<Notify>, Arc<Gaps>),
    reconcile_every: Duration,
    this: Worker,
) -> (Arc<Reconciliation>, [JoinHandle<()>; 2]) {
    let worker = worker_name();
    // Revokes need no forge call: they run from the start, even while the forge does not
    // answer and the bot cannot learn who it is there.
    let (revokes_caught_up, caught_up) = watch::channel(false);
    let revokes = tokio::spawn(revocation_worker(
        workflows.clone(),
        format!("{worker}-revokes"),
        revokes_caught_up,
        this.another(),
    ));
    let reconciliation = Arc::new(Reconciliation {
        gaps,
        ..Reconciliation::default()
    });
    let forge_side = tokio::spawn(forge_workers(
        workflows.clone(),
        ForgeSide {
            worker,
            wake_deliveries,
            reconciliation: reconciliation.clone(),
            reconcile_every,
            revokes_caught_up: caught_up,
        },
        this,
    ));
    (reconciliation, [revokes, forge_side])
}

/// Who the bot is on `forge`; `None` while the forge does not answer (a refusal, such as a
/// bad token, is an error: the service does not start).
async fn identify(forge: &Forge) -> anyhow::Result<Option<crate::forge::Actor>> {
    match forge.me().await {
        Ok(bot) => Ok(Some(bot)),
        Err(err) if err.is_retryable() => {
            tracing::warn!(forge = %forge.kind(), error = %err, "cannot learn the bot's own account yet; revoking meanwhile, the rest waits for the forge");
            Ok(None)
        }
        Err(err) => Err(err)
            .with_context(|| format!("looking up the bot's own account on {}", forge.kind())),
    }
}

/// The account of a workflow whose forge has not said yet who the bot is. Only the revocation
/// lane runs with it, and it never looks at the bot's account.
fn unidentified() -> crate::forge::Actor {
    crate::forge::Actor {
        id: 0,
        login: String::new(),
        is_bot: true,
    }
}

/// The workflows with the bot's account on every forge, asked again every few seconds until
/// each forge has answered; `None` on shutdown.
async fn identified(workflows: Workflows, this: &mut Worker) -> Option<Workflows> {
    let mut list: Vec<Workflow> = workflows.iter().cloned().collect();
    loop {
        for workflow in list.iter_mut().filter(|w| w.bot == unidentified()) {
            match identify(&workflow.forge).await {
                Ok(Some(bot)) => *workflow = workflow.with_bot(bot),
                Ok(None) => {}
                Err(err) => {
                    tracing::error!(error = %format!("{err:#}"), "cannot learn the bot's own account")
                }
            }
        }
        if list.iter().all(|w| w.bot != unidentified()) {
            return Workflows::new(list).ok();
        }
        let wait = this.tick.max(IDENTIFY_EVERY);
        if !this.idle_for(None, wait).await {
            return None;
        }
    }
}

/// How often a service that started while the forge did not answer asks who the bot is.
const IDENTIFY_EVERY: Duration = Duration::from_secs(2);

/// How long the start waits for each forge to say who the bot is (a refusal, such as a bad
/// token, comes back well within it and stops the start).
const IDENTIFY_AT_START: Duration = Duration::from_secs(3);

/// What the forge side of the service (deliveries, forge jobs, reconciliation) is given.
struct ForgeSide {
    worker: String,
    wake_deliveries: Arc<Notify>,
    reconciliation: Arc<Reconciliation>,
    reconcile_every: Duration,
    /// Says when the revocation lane has worked off the revokes due at start.
    revokes_caught_up: watch::Receiver<bool>,
}

/// The workers that need the forge and the bot's account there, started once it is known;
/// they end with this task (a crash drops them all).
async fn forge_workers(workflows: Workflows, side: ForgeSide, mut this: Worker) {
    let Some(workflows) = identified(workflows, &mut this).await else {
        return;
    };
    let mut workers = tokio::task::JoinSet::new();
    workers.spawn(catch_up_worker(
        workflows.clone(),
        side.wake_deliveries.clone(),
        side.reconciliation.gaps.clone(),
        this.another(),
    ));
    workers.spawn(delivery_worker(
        workflows.clone(),
        format!("{}-deliveries", side.worker),
        side.wake_deliveries,
        this.another(),
    ));
    workers.spawn(reconcile_worker(
        workflows.clone(),
        side.reconciliation,
        side.reconcile_every,
        side.revokes_caught_up,
        this.another(),
    ));
    workers.spawn(forge_worker(
        workflows,
        format!("{}-jobs", side.worker),
        this,
    ));
    while workers.join_next().await.is_some() {}
}

/// What every forge's workflow shares.
struct Common<'a> {
    store: &'a Store,
    config: &'a Config,
    options: &'a Options,
    providers: &'a Providers,
    metrics: &'a Arc<Metrics>,
}

/// The webhook intake of each configured forge.
struct Intakes {
    github: Option<Intake>,
    gitlab: Option<Intake>,
}

impl Common<'_> {
    /// The workflow of each configured forge, and the intakes of their webhook routes.
    async fn workflows(&self) -> anyhow::Result<(Workflows, Intakes)> {
        let mut workflows = Vec::new();
        let mut intakes = Intakes {
            github: None,
            gitlab: None,
        };
        if let Some(github) = &self.config.github {
            let (workflow, intake) = github_workflow(self, github).await?;
            workflows.push(workflow);
            intakes.github = Some(intake);
        }
        if let Some(gitlab) = &self.config.gitlab {
            let (workflow, intake) = gitlab_workflow(self, gitlab).await?;
            workflows.push(workflow);
            intakes.gitlab = Some(intake);
        }
        Ok((Workflows::new(workflows)?, intakes))
    }

    /// The workflow of `forge` serving `repository`, once the bot knows who it is there.
    async fn workflow(
        &self,
        forge: Forge,
        repository: &str,
        (poll_interval, poll_budget): (Duration, std::num::NonZeroU32),
    ) -> anyhow::Result<Workflow> {
        // Who the bot is, by id: its own comments and pushes are recognised by it. A forge
        // that hangs must not hold the start back (its retries take a minute): the listener
        // and the revocation lane need no forge, and the rest asks again once started.
        let bot = match tokio::time::timeout(IDENTIFY_AT_START, identify(&forge)).await {
            Ok(bot) => bot?,
            Err(_) => {
                tracing::warn!(forge = %forge.kind(), waited = ?IDENTIFY_AT_START, "the forge does not answer who the bot is; revoking meanwhile, the rest waits for the forge");
                None
            }
        }
        .unwrap_or_else(unidentified);
        let settings = Settings {
            repository: repository.to_owned(),
            policies_path: self.config.policies_path.clone(),
            reminder_before: self.config.reminder_before.as_std(),
            poll_interval,
            poll_budget,
            pending_timeout: self.config.pending_timeout.as_std(),
            max_open_requests: self.config.max_open_requests,
        };
        Ok(Workflow::new(
            self.store.clone(),
            forge,
            bot,
            self.options.clock.clone(),
            self.providers.clone(),
            self.metrics.clone(),
            settings,
        ))
    }

    /// The one retry policy of this service's forge clients.
    fn forge_retry(&self) -> RetryPolicy {
        RetryPolicy {
            timeout: self.options.forge_timeout,
            first_backoff: self.options.forge_backoff,
            ..RetryPolicy::default()
        }
    }

    fn secrets(&self, env: &str, file: Option<&std::path::Path>) -> anyhow::Result<Vec<Secret>> {
        let read = self.options.env;
        Ok(read_secrets(env, file, &|n| read(n))?)
    }
}

/// The GitHub App's private key, from its file or its environment variable (read whole: a
/// PEM spans lines), when either is configured.
fn app_key(
    github: &GithubConfig,
    env: fn(&str) -> Option<String>,
) -> anyhow::Result<Option<Secret>> {
    let pem = match (&github.private_key_path, &github.private_key_env) {
        (Some(_), Some(_)) => {
            anyhow::bail!("[github] sets both private_key_path and private_key_env; keep one")
        }
        (Some(path), None) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the GitHub App key {}", path.display()))?,
        (None, Some(name)) => env(name)
            .filter(|pem| !pem.trim().is_empty())
            .with_context(|| {
                format!("the environment variable {name} (the GitHub App key) is not set")
            })?,
        (None, None) => return Ok(None),
    };
    Ok(Some(Secret::new(pem)))
}

/// The GitHub App's credentials when `[github]` configures an App (`app_id` and its key);
/// `None` for a token. Half an App is refused: falling back to the token would blame a
/// variable nobody meant to set.
fn app_auth(
    github: &GithubConfig,
    env: fn(&str) -> Option<String>,
) -> anyhow::Result<Option<GithubAuth>> {
    match (github.app_id, app_key(github, env)?) {
        (Some(app_id), Some(private_key_pem)) => Ok(Some(GithubAuth::App {
            app_id,
            private_key_pem,
            installation_id: github.installation_id,
        })),
        (None, None) if github.installation_id.is_some() => anyhow::bail!(
            "[github] sets installation_id but no App; add app_id and private_key_path or private_key_env, or remove installation_id to use a token"
        ),
        (None, None) => Ok(None),
        (Some(_), None) => anyhow::bail!(
            "[github] sets app_id but no App key; add private_key_path or private_key_env, or remove app_id to use a token"
        ),
        (None, Some(_)) => anyhow::bail!(
            "[github] sets an App key but no app_id; add app_id, or remove the key to use a token"
        ),
    }
}

async fn github_workflow(
    common: &Common<'_>,
    github: &GithubConfig,
) -> anyhow::Result<(Workflow, Intake)> {
    let secrets = common.secrets(
        &github.webhook_secret_env,
        github.webhook_secret_file.as_deref(),
    )?;
    let auth = match app_auth(github, common.options.env)? {
        Some(app) => app,
        None => GithubAuth::Token(
            common
                .secrets(&github.token_env, github.token_file.as_deref())?
                .remove(0),
        ),
    };
    let client = GithubClient::connect(&github.api_url, &github.repository, auth).await?;
    let forge = Forge::GitHub(client.with_retry(common.forge_retry()));
    let workflow = common
        .workflow(
            forge,
            &github.repository,
            (
                github.reaction_poll_interval.as_std(),
                github.reaction_poll_budget,
            ),
        )
        .await?;
    let intake = Intake {
        secrets: Arc::new(secrets),
        repository: github.repository.clone().into(),
    };
    Ok((workflow, intake))
}

/// GitLab sends every emoji award and revocation as an event; pending requests are still
/// polled this often, as a safety net for a lost delivery.
const GITLAB_POLL_INTERVAL: Duration = Duration::from_secs(300);

async fn gitlab_workflow(
    common: &Common<'_>,
    gitlab: &GitlabConfig,
) -> anyhow::Result<(Workflow, Intake)> {
    let tokens = common.secrets(
        &gitlab.webhook_token_env,
        gitlab.webhook_token_file.as_deref(),
    )?;
    let token = common
        .secrets(&gitlab.token_env, gitlab.token_file.as_deref())?
        .remove(0);
    let client = GitlabClient::connect(
        &gitlab.api_url,
        &gitlab.project,
        GitlabAuth::PrivateToken(token),
    )
    .await?
    .with_retry(common.forge_retry());
    let workflow = common
        .workflow(
            Forge::GitLab(client),
            &gitlab.project,
            (GITLAB_POLL_INTERVAL, crate::config::DEFAULT_POLL_BUDGET),
        )
        .await?;
    let intake = Intake {
        secrets: Arc::new(tokens),
        repository: gitlab.project.clone().into(),
    };
    Ok((workflow, intake))
}

/// The grant providers; `aws-iam` only when `[aws]` is configured (its roles are otherwise
/// refused as unavailable). The AWS provider reads the service's clock, like everything else.
async fn providers(config: &Config, options: &Options) -> Providers {
    let providers = Providers::new(
        options
            .templates_dir
            .clone()
            .unwrap_or_else(|| config.templates_path.clone()),
    );
    match &config.aws {
        Some(aws) => {
            let aws = AwsProvider::from_config(aws)
                .await
                .with_clock(options.clock.clone());
            // In the background: AWS not answering must not hold the start back.
            let learning = aws.clone();
            tokio::spawn(async move { learning.learn_account().await });
            providers.with_aws(aws)
        }
        None => providers,
    }
}

/// This start's name on the leases it takes: the host and process, which say where it runs,
/// and a random part that tells it from every other start. In a container every process is
/// pid 1 of its pod, so a container restarted in place had its dead predecessor's name, and the
/// heartbeat of its own work (which renews every lease the name holds) kept the dead one's
/// claimed jobs leased while it stayed busy, instead of letting them lapse within the lease.
fn worker_name() -> String {
    format!(
        "{}-{}-{:08x}",
        hostname(),
        std::process::id(),
        rand::random::<u32>()
    )
}

fn hostname() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "breakglass".into())
}

/// The longest a revoke that failed for a passing reason (throttling, a timeout, a 5xx)
/// waits before it is tried again: the grant is live at the provider until it goes through,
/// so it backs off no further than this (AWS throttling or an outage of minutes must not add
/// minutes of access once it is over).
const REVOKE_RETRY_CAP: chrono::TimeDelta = chrono::TimeDelta::seconds(15);

/// The longest a forge's rate limit may put failed work off.
const MAX_ASKED_WAIT: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// When to try failed work again: at once after losing an optimistic-lock race (another
/// worker changed the request; the retry reads the new state), else exponential backoff from
/// 1 s to 256 s: fast recovery from a blip, no hammering in an outage; never sooner than a
/// forge's rate limit asked (`Retry-After`, or its reset time), up to an hour.
fn retry_delay(err: &anyhow::Error, attempts: u32) -> chrono::TimeDelta {
    // A race lost again and again is no race (a tag shadowing the branch): backed off.
    if lost_a_race(err) && attempts < RACES_BEFORE_FAILURE {
        return chrono::TimeDelta::zero();
    }
    let backoff = chrono::TimeDelta::seconds(1i64 << attempts.min(8));
    let asked = err
        .chain()
        .find_map(|e| match e.downcast_ref::<ForgeError>() {
            Some(ForgeError::RateLimited { retry_after, .. }) => {
                chrono::TimeDelta::from_std(*retry_after).ok()
            }
            _ => None,
        });
    // At most an hour whatever was asked: a wait beyond the calendar's end would panic where
    // it is added to now.
    asked.map_or(backoff, |asked| asked.max(backoff).min(MAX_ASKED_WAIT))
}

/// Whether `err` is one that only a person can end (a role misconfigured, a provider missing,
/// a stored record that cannot be read): retried with the usual backoff, not every few
/// seconds. A denied call is not among them: IAM permissions and fresh credentials take a
/// while to reach every AWS endpoint, and the grant is live until the revoke goes through.
fn needs_a_person(err: &anyhow::Error) -> bool {
    use crate::grant::GrantError;
    err.chain().any(|e| {
        matches!(
            e.downcast_ref::<GrantError>(),
            Some(GrantError::Misconfigured(_) | GrantError::Unavailable(..))
        )
    }) || StoreError::is_unreadable_record(err)
}

/// Whether `err` is a lost optimistic-lock race: another worker or replica changed the request
/// first, and the retry, made at once, reads what it did.
fn lost_a_race(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        matches!(
            e.downcast_ref::<StoreError>(),
            Some(StoreError::Conflict { .. })
        ) || e
            .downcast_ref::<crate::workflow::DefaultBranchMoved>()
            .is_some()
    })
}

/// How many lost races a piece of work may have before each further one is recorded as a
/// failure: a race is how the store orders two writers (a revoke that stopped waiting for a
/// slow forge call, two replicas); a run of them would be a bug, and is reported as one.
const RACES_BEFORE_FAILURE: u32 = 3;

/// Whether a failed attempt after `earlier` failed ones is a failure to record, rather than a
/// lost race that is retried at once and only counted.
fn is_a_failure(err: &anyhow::Error, earlier: u32) -> bool {
    !lost_a_race(err) || earlier >= RACES_BEFORE_FAILURE
}

/// What every background worker of a service is given: when to stop, how often to look for
/// work, and where to record its failures.
struct Worker {
    stop: watch::Receiver<bool>,
    tick: Duration,
    /// The moves of a clock moved by hand (a test's, the demo's): each is a wake-up, so that
    /// what the move made due runs at once rather than at the next tick.
    clock_moves: Option<watch::Receiver<()>>,
    failures: Arc<Failures>,
}

impl Worker {
    /// One more worker of the same service.
    fn another(&self) -> Self {
        Self {
            stop: self.stop.clone(),
            tick: self.tick,
            clock_moves: self.clock_moves.clone(),
            failures: self.failures.clone(),
        }
    }

    /// Waits for a wake-up, a tick, a move of the clock or shutdown; `false` when shutting down.
    async fn idle(&mut self, wake: Option<&Notify>) -> bool {
        self.idle_for(wake, self.tick).await
    }

    /// [`Worker::idle`] with a wait of `at_most` for the tick.
    async fn idle_for(&mut self, wake: Option<&Notify>, at_most: Duration) -> bool {
        self.wait_for(wake, at_most).await != Woke::Stopping
    }

    /// [`Worker::idle_for`], saying what ended the wait.
    async fn wait_for(&mut self, wake: Option<&Notify>, at_most: Duration) -> Woke {
        let Worker {
            stop, clock_moves, ..
        } = self;
        if *stop.borrow() {
            return Woke::Stopping;
        }
        let woken = async {
            match wake {
                Some(wake) => wake.notified().await,
                None => std::future::pending().await,
            }
        };
        let moved = async {
            let moved = match clock_moves {
                Some(moves) => moves.changed().await.is_ok(),
                None => false,
            };
            if !moved {
                // No clock moved by hand, or one dropped: it never moves again.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = stop.changed() => Woke::Stopping,
            () = woken => Woke::Called,
            () = moved => Woke::Called,
            () = tokio::time::sleep(at_most) => Woke::Timeout,
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

/// What ended a worker's wait.
#[derive(Debug, PartialEq, Eq)]
enum Woke {
    Stopping,
    /// A wake-up (work stored or scheduled here) or a move of a clock moved by hand.
    Called,
    /// The wait ran out: only a look tells whether there is work (another replica's, a retry).
    Timeout,
}

/// Deliveries claimed (and marked done) together.
const DELIVERY_BATCH: u32 = 64;

async fn delivery_worker(
    workflows: Workflows,
    worker: String,
    wake: Arc<Notify>,
    mut this: Worker,
) {
    let workflow = workflows.shared();
    while deliveries_to_claim(&workflow.store, &*workflow.clock, &wake, &mut this).await {
        loop {
            let now = workflow.clock.now();
            let batch = match workflow
                .store
                .claim_deliveries(&worker, now, LEASE, DELIVERY_BATCH)
                .await
            {
                Ok(batch) => batch,
                Err(err) => {
                    // Tried again once `deliveries_to_claim` waited (a tick, or a wake-up).
                    tracing::error!(%err, "cannot claim deliveries");
                    let work = Work::Claim("deliveries");
                    this.failures.record(work, &err.into(), now);
                    break;
                }
            };
            if batch.is_empty() {
                break;
            }
            let renew = || {
                let now = workflow.clock.now();
                workflow.store.renew_delivery_leases(&worker, now, LEASE)
            };
            renewing(handle_deliveries(&workflows, batch, &this.failures), renew).await;
            if this.stopping() {
                return;
            }
        }
    }
}

/// Waits until there may be deliveries to claim: one stored here (a wake-up), a move of a
/// clock moved by hand, or one a look at a tick finds (another replica's intake, a retry fallen
/// due); `false` when shutting down. The look only reads, so an idle tick writes nothing.
async fn deliveries_to_claim(
    store: &Store,
    clock: &dyn Clock,
    wake: &Notify,
    this: &mut Worker,
) -> bool {
    loop {
        let tick = this.tick;
        match this.wait_for(Some(wake), tick).await {
            Woke::Stopping => return false,
            Woke::Called => return true,
            Woke::Timeout => match store.deliveries_due(clock.now()).await {
                Ok(false) => {}
                Ok(true) => return true,
                // The claim meets the same database and says what failed.
                Err(_) => return true,
            },
        }
    }
}

/// Looks, at start and after intake refused a delivery, for what came meanwhile (see
/// [`Workflow::catch_up`]). A look that fails (the forge or the database not answering) is
/// tried again after a backoff on the service's clock, as long as a rate limit asks.
async fn catch_up_worker(
    workflows: Workflows,
    wake: Arc<Notify>,
    gaps: Arc<Gaps>,
    mut this: Worker,
) {
    let clock = workflows.shared().clock.clone();
    let (mut failed, mut next_try) = (0, clock.now());
    loop {
        if !gaps.all_closed() && clock.now() >= next_try {
            let opened = gaps.opened();
            match catch_up(&workflows, &wake).await {
                Ok(()) => {
                    gaps.close(opened);
                    failed = 0;
                }
                Err(err) => {
                    tracing::warn!(error = %format!("{err:#}"), "cannot catch up with what came while the bot was down; will try again");
                    this.failures.record(Work::CatchUp, &err, clock.now());
                    failed += 1;
                    next_try = clock.now() + retry_delay(&err, failed);
                }
            }
        }
        if !this.idle(None).await {
            return;
        }
    }
}

/// One look of every workflow.
async fn catch_up(workflows: &Workflows, wake: &Notify) -> anyhow::Result<()> {
    for workflow in workflows.iter() {
        if workflow.catch_up().await? > 0 {
            wake.notify_one();
        }
    }
    Ok(())
}

/// Handles a claimed batch of deliveries in order, recording each outcome. A delivery that
/// acted is marked done on its own before the next is handled (a crash then repeats at most
/// it); inert ones (see [`Workflow::is_inert`]) are marked done together after the batch, so
/// that a stream of ordinary comments costs one write per batch, not one each, while intake
/// needs the same connection.
async fn handle_deliveries(workflows: &Workflows, batch: Vec<StoredDelivery>, failures: &Failures) {
    let workflow = workflows.shared();
    let mut inert = Vec::new();
    for delivery in batch {
        // Stored as the extractor parsed it: read back, never parsed again.
        let result = match serde_json::from_str::<Delivery>(&delivery.payload) {
            Ok(parsed) if Workflow::is_inert(&parsed) => {
                match workflows.handle_delivery(&delivery.id, &parsed).await {
                    Ok(()) => {
                        inert.push(delivery.id);
                        continue;
                    }
                    failed => failed,
                }
            }
            Ok(parsed) => workflows.handle_delivery(&delivery.id, &parsed).await,
            Err(err) => Err(anyhow::Error::new(err).context("a stored delivery")),
        };
        let stored = match result {
            Ok(()) => workflow.store.finish_delivery(&delivery.id).await.map(drop),
            Err(err) if !is_a_failure(&err, delivery.attempts) => {
                tracing::info!(delivery = %delivery.id, error = %format!("{err:#}"), "delivery lost a race; retrying at once");
                workflow
                    .store
                    .retry_delivery(&delivery.id, &format!("{err:#}"), workflow.clock.now())
                    .await
                    .map(drop)
            }
            Err(err) => {
                tracing::warn!(delivery = %delivery.id, error = %format!("{err:#}"), "delivery failed; will retry");
                let work = Work::Delivery(delivery.id.to_string());
                failures.record(work, &err, workflow.clock.now());
                let next = workflow.clock.now() + retry_delay(&err, delivery.attempts);
                workflow
                    .store
                    .retry_delivery(&delivery.id, &format!("{err:#}"), next)
                    .await
                    .map(drop)
            }
        };
        if let Err(err) = stored {
            tracing::error!(%err, delivery = %delivery.id, "cannot record the delivery's outcome");
        }
    }
    if let Err(err) = workflow.store.finish_deliveries(&inert).await {
        // Handled again once their leases lapse, which changes nothing.
        tracing::error!(%err, count = inert.len(), "cannot mark handled deliveries done");
    }
}

/// Every active grant checked against git and its provider at start, then every
/// `reconcile_interval` by the service's clock (so tests move it like every other timer).
///
/// The first pass waits until the revocation lane has worked off the revokes that fell due
/// while the service was down (at most [`FIRST_PASS_WAIT`]): both read every grant, and on a
/// small machine the pass, the slower safety net, would otherwise delay the revokes.
async fn reconcile_worker(
    workflows: Workflows,
    status: Arc<Reconciliation>,
    every: Duration,
    mut revokes_caught_up: watch::Receiver<bool>,
    mut this: Worker,
) {
    let every = chrono::TimeDelta::from_std(every).unwrap_or(chrono::TimeDelta::minutes(5));
    if !revokes_first(&mut revokes_caught_up, &mut this.stop, FIRST_PASS_WAIT).await {
        return;
    }
    loop {
        status.running.store(true, Ordering::SeqCst);
        for workflow in workflows.iter() {
            if let Err(err) = workflow.reconcile_all().await {
                tracing::warn!(forge = %workflow.forge.kind(), error = %format!("{err:#}"), "reconciliation failed; will try again");
                let at = workflow.clock.now();
                this.failures.record(Work::Reconciliation, &err, at);
            }
        }
        let clock = &workflows.shared().clock;
        let next = clock.now() + every;
        status
            .next_due
            .store(next.timestamp_millis(), Ordering::SeqCst);
        status.passes.fetch_add(1, Ordering::SeqCst);
        status.running.store(false, Ordering::SeqCst);
        release_freed_memory();
        while clock.now() < next {
            if !this.idle(None).await {
                return;
            }
        }
    }
}

/// Gives the memory a pass freed back to the operating system. A pass over many grants
/// allocates and frees tens of megabytes; glibc keeps freed memory in its heap unless it is
/// at the top, so without this the service's RSS stays at the pass's peak.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only returns free pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Waits until the revocation lane says it caught up, or `at_most` passed; `false` when
/// shutting down.
async fn revokes_first(
    caught_up: &mut watch::Receiver<bool>,
    stop: &mut watch::Receiver<bool>,
    at_most: Duration,
) -> bool {
    let caught_up = tokio::time::timeout(at_most, caught_up.wait_for(|done| *done));
    tokio::select! {
        _ = caught_up => true,
        _ = stop.wait_for(|stop| *stop) => false,
    }
}

/// Due revokes claimed and ended together: a batch costs three commits (claim, `Revoking`,
/// the ends) whatever its size, where one revoke at a time cost three each, and each commit
/// is an fsync on SQLite.
const REVOKE_BATCH: usize = 256;

/// How long reconciliation's first pass waits for the revocation lane to catch up.
const FIRST_PASS_WAIT: Duration = Duration::from_secs(30);

/// Jobs claimed at once in the forge lane, run one after the other in the order they fell due.
const FORGE_BATCH: u32 = 10;

/// The revocation lane: every due revoke (up to [`REVOKE_BATCH`] at once) claimed and ended
/// as one batch, then the next. A revoke whose PR is busy with other work runs on its own
/// beside the batches. On shutdown it stops claiming and lets the work in hand finish.
async fn revocation_worker(
    workflows: Workflows,
    worker: String,
    caught_up: watch::Sender<bool>,
    mut this: Worker,
) {
    let lane = Lane::Revocation;
    let mut alone = tokio::task::JoinSet::new();
    while !this.stopping() {
        while alone.try_join_next().is_some() {}
        let batch = claim(&workflows, lane, &worker, REVOKE_BATCH, &mut this).await;
        if !batch.is_empty() {
            // The whole batch's leases are renewed while it runs (a batch may outlast one).
            let renew = job_heartbeat(&workflows, &worker, None);
            let ended = revoke_batch(&workflows, &batch, &worker, &this.failures);
            for job in renewing(ended, renew).await {
                let failures = this.failures.clone();
                let renew = job_heartbeat(&workflows, &worker, Some(job.id));
                let job = run_job(workflows.clone(), job, worker.clone(), failures);
                alone.spawn(renewing(job, renew));
            }
        }
        if batch.len() < REVOKE_BATCH {
            // Whatever was due is done: the backlog of a restart is worked off.
            caught_up.send_replace(true);
            if !until_due(&workflows, lane, &mut this).await {
                break;
            }
        }
    }
    while alone.join_next().await.is_some() {}
}

/// Ends a claimed batch of revokes and settles each job: a revoked grant's job went with its
/// end; the others are done or retried on their own. Returns the jobs whose PR was busy.
async fn revoke_batch(
    workflows: &Workflows,
    jobs: &[Job],
    worker: &str,
    failures: &Failures,
) -> Vec<Job> {
    let ids: Vec<_> = jobs.iter().map(|job| job.request_id.clone()).collect();
    let _running: Vec<_> = jobs.iter().map(|_| failures.job_running()).collect();
    let outcomes = workflows.revoke_due(&ids).await;
    let mut busy = Vec::new();
    for (job, outcome) in jobs.iter().zip(outcomes) {
        let result = match outcome {
            RevokeOutcome::Revoked => {
                count_job(workflows.shared(), job, "ok");
                continue;
            }
            RevokeOutcome::Busy => {
                busy.push(job.clone());
                continue;
            }
            RevokeOutcome::Nothing => Ok(()),
            RevokeOutcome::Failed(err) => Err(err),
        };
        settle_job(workflows.shared(), job, worker, failures, result).await;
    }
    busy
}

/// The forge lane: the rest of the jobs, in the order they fell due, one at a time (forge
/// writes are rate-limited; a PR's steps keep their order).
async fn forge_worker(workflows: Workflows, worker: String, mut this: Worker) {
    let lane = Lane::Forge;
    loop {
        let batch = claim(&workflows, lane, &worker, FORGE_BATCH as usize, &mut this).await;
        let full = batch.len() == FORGE_BATCH as usize;
        let run = async {
            for job in batch {
                if !still_ours(&workflows, &worker, job.id).await {
                    continue;
                }
                let failures = this.failures.clone();
                // Renewed for its own run too: the batch's renewal ends 2 minutes after the
                // batch began.
                let renew = job_heartbeat(&workflows, &worker, Some(job.id));
                let job = run_job(workflows.clone(), job, worker.clone(), failures);
                renewing(job, renew).await;
            }
        };
        // The whole batch is renewed: the jobs waiting their turn stay ours too.
        let renew = job_heartbeat(&workflows, &worker, None);
        renewing(run, renew).await;
        if this.stopping() || !full && !until_due(&workflows, lane, &mut this).await {
            return;
        }
    }
}

/// Whether `worker` still holds job `id`, renewing its lease if so. A job of a batch waits its
/// turn; if the forge was slow, its lease may have lapsed meanwhile and another replica run
/// it (a reminder posted, a revert opened), and it must not run again here. Not known (the
/// database did not answer): left to lapse and be claimed again.
async fn still_ours(workflows: &Workflows, worker: &str, id: JobId) -> bool {
    let workflow = workflows.shared();
    let now = workflow.clock.now();
    match workflow
        .store
        .renew_job_leases(worker, Some(id), now, LEASE)
        .await
    {
        Ok(renewed) => renewed == 1,
        Err(err) => {
            tracing::warn!(%err, "cannot renew a job's lease; it is left to be claimed again");
            false
        }
    }
}

/// A lease renewal of job `only`, or of every job `worker` holds (`None`), for [`renewing`].
fn job_heartbeat(
    workflows: &Workflows,
    worker: &str,
    only: Option<JobId>,
) -> impl Fn() -> Pin<Box<dyn Future<Output = Result<u64, StoreError>> + Send>> + Send + 'static {
    let workflow = workflows.shared();
    let (store, clock, worker) = (
        workflow.store.clone(),
        workflow.clock.clone(),
        worker.to_owned(),
    );
    move || {
        let (store, worker, now) = (store.clone(), worker.clone(), clock.now());
        Box::pin(async move { store.renew_job_leases(&worker, only, now, LEASE).await })
    }
}

/// Leases up to `limit` due jobs of `lane`. None when the store fails: logged and recorded,
/// and tried again after a tick, not at once. A database that answers reads but refuses
/// writes (a standby after a failover, a full disk) would otherwise send the worker straight
/// back: the next-due read still says a job is due.
async fn claim(
    workflows: &Workflows,
    lane: Lane,
    worker: &str,
    limit: usize,
    this: &mut Worker,
) -> Vec<Job> {
    let workflow = workflows.shared();
    claim_jobs(&workflow.store, &*workflow.clock, lane, worker, limit, this).await
}

/// [`claim`], from the parts it uses.
async fn claim_jobs(
    store: &Store,
    clock: &dyn Clock,
    lane: Lane,
    worker: &str,
    limit: usize,
    this: &mut Worker,
) -> Vec<Job> {
    let limit = u32::try_from(limit).unwrap_or(u32::MAX);
    let now = clock.now();
    match store.claim_lane_jobs(lane, worker, now, LEASE, limit).await {
        Ok(jobs) => jobs,
        Err(err) => {
            tracing::error!(%err, ?lane, "cannot claim jobs");
            let queue = match lane {
                Lane::Revocation => "revocation jobs",
                Lane::Forge => "forge jobs",
            };
            this.failures.record(Work::Claim(queue), &err.into(), now);
            this.idle(None).await;
            Vec::new()
        }
    }
}

/// Waits until the lane's next job is due (by the service's clock), a job is scheduled to run
/// now, the clock is moved by hand, or shutdown; `false` when shutting down. At each tick
/// with nothing due it reads again when the next job is (another replica may have scheduled
/// one) rather than claiming: an idle tick writes nothing. A read that fails lets the claim go
/// ahead after a tick, and the claim says what failed.
async fn until_due(workflows: &Workflows, lane: Lane, this: &mut Worker) -> bool {
    let workflow = workflows.shared();
    let wake = workflow.wake_jobs.of(lane);
    until_job_due(&workflow.store, &*workflow.clock, lane, wake, this).await
}

/// [`until_due`], from the parts it uses.
async fn until_job_due(
    store: &Store,
    clock: &dyn Clock,
    lane: Lane,
    wake: &Notify,
    this: &mut Worker,
) -> bool {
    loop {
        let tick = this.tick;
        let (wait, due_by_then) = match store.next_lane_job_due(lane).await {
            Ok(Some(due)) => {
                let left = (due - clock.now()).to_std().unwrap_or_default();
                (left.clamp(MIN_WAIT, tick.max(MIN_WAIT)), left <= tick)
            }
            Ok(None) => (tick, false),
            Err(err) => {
                tracing::error!(%err, ?lane, "cannot read when the next job is due");
                (tick, true)
            }
        };
        match this.wait_for(Some(wake), wait).await {
            Woke::Stopping => return false,
            Woke::Called => return true,
            Woke::Timeout if due_by_then => return true,
            Woke::Timeout => {}
        }
    }
}

/// The shortest wait between two claims: a job due "now" that another worker holds must not
/// make this one spin.
const MIN_WAIT: Duration = Duration::from_millis(5);

/// Runs one claimed job and records its outcome (done, or failed and due again later).
async fn run_job(workflows: Workflows, job: Job, worker: String, failures: Arc<Failures>) {
    let _running = failures.job_running();
    let result = workflows.run_job(&job).await;
    settle_job(workflows.shared(), &job, &worker, &failures, result).await;
}

/// Records how a job ran: done (deleted), or failed and due again after its backoff.
async fn settle_job(
    workflow: &Workflow,
    job: &Job,
    worker: &str,
    failures: &Failures,
    result: anyhow::Result<()>,
) {
    let kind = job.kind.to_string();
    let stored = match result {
        Ok(()) => {
            count_job(workflow, job, "ok");
            workflow.store.complete_job(job.id, worker).await.map(drop)
        }
        Err(err) if !is_a_failure(&err, job.attempts) => {
            count_job(workflow, job, "conflict");
            tracing::info!(job = %kind, request = %job.request_id, attempts = job.attempts, error = %format!("{err:#}"), "job lost a race; retrying at once");
            workflow
                .store
                .retry_job(job.id, worker, &format!("{err:#}"), workflow.clock.now())
                .await
                .map(drop)
        }
        Err(err) => {
            count_job(workflow, job, "error");
            tracing::warn!(job = %kind, request = %job.request_id, attempts = job.attempts, error = %format!("{err:#}"), "job failed; will retry");
            let work = Work::Job {
                kind: kind.clone(),
                request: job.request_id.to_string(),
            };
            failures.record(work, &err, workflow.clock.now());
            let mut delay = retry_delay(&err, job.attempts);
            if job.kind == JobKind::Revoke && !needs_a_person(&err) && delay > REVOKE_RETRY_CAP {
                // Spread over the last third, so that a batch throttled together does not
                // come back together.
                let cap = REVOKE_RETRY_CAP.num_milliseconds();
                let spread = rand::Rng::random_range(&mut rand::rng(), cap * 2 / 3..=cap);
                delay = chrono::TimeDelta::milliseconds(spread);
            }
            let next = workflow.clock.now() + delay;
            workflow
                .store
                .retry_job(job.id, worker, &format!("{err:#}"), next)
                .await
                .map(drop)
        }
    };
    if let Err(err) = stored {
        tracing::error!(%err, "cannot record a job's outcome");
    }
}

fn count_job(workflow: &Workflow, job: &Job, result: &str) {
    workflow.metrics.inc(
        "breakglass_jobs_total",
        format!("kind=\"{}\",result=\"{result}\"", job.kind),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\nAAAA\n-----END PRIVATE KEY-----\n";

    /// A worker waiting out an hour's tick on a clock moved by hand wakes at its move (an
    /// advance or a set), also at one made while it was busy (before it began to wait); once
    /// the clock is gone, a worker waits for its tick rather than spinning; a clock that runs
    /// by itself has no moves to wait on.
    #[tokio::test]
    async fn a_move_of_a_clock_moved_by_hand_wakes_an_idle_worker() {
        use crate::clock::{Clock as _, ManualClock, SystemClock};
        let clock = ManualClock::new(chrono::DateTime::UNIX_EPOCH);
        let worker_of = |tick, clock_moves| {
            let (stop_sender, stop) = watch::channel(false);
            let failures = Arc::new(Failures::default());
            let worker = Worker {
                stop,
                tick,
                clock_moves,
                failures,
            };
            (stop_sender, worker)
        };
        let (_stop, mut worker) = worker_of(Duration::from_secs(3600), clock.moves());
        let mut other = worker.another();
        let woken = tokio::spawn(async move { worker.idle(None).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!woken.is_finished(), "nothing moved yet");
        clock.advance(chrono::TimeDelta::seconds(1));
        let within = Duration::from_secs(10);
        let woken = tokio::time::timeout(within, woken).await;
        assert!(matches!(woken, Ok(Ok(true))), "{woken:?}");
        // `other` was busy at the move: its wait ends at once.
        let woken = tokio::time::timeout(within, other.idle(None)).await;
        assert_eq!(woken, Ok(true));
        // Setting the clock is a move too.
        let waiting = tokio::spawn(async move { other.idle(None).await });
        clock.set(chrono::DateTime::UNIX_EPOCH);
        let woken = tokio::time::timeout(within, waiting).await;
        assert!(matches!(woken, Ok(Ok(true))), "{woken:?}");
        // A clock gone never moves again: the wait is the tick's, not a spin.
        let (_stop_orphan, mut orphan) = worker_of(Duration::from_millis(200), clock.moves());
        drop(clock);
        let began = std::time::Instant::now();
        assert!(orphan.idle(None).await);
        assert!(
            began.elapsed() >= Duration::from_millis(200),
            "{:?}",
            began.elapsed()
        );
        assert!(SystemClock.moves().is_none());
    }

    /// A worker with a 20 ms tick, and the sender that stops it.
    fn ticking_worker() -> (watch::Sender<bool>, Worker) {
        let (stop_sender, stop) = watch::channel(false);
        let worker = Worker {
            stop,
            tick: Duration::from_millis(20),
            clock_moves: None,
            failures: Arc::new(Failures::default()),
        };
        (stop_sender, worker)
    }

    /// Ten ticks of [`ticking_worker`]: long enough for a wait that ends at a tick to end.
    const TEN_TICKS: Duration = Duration::from_millis(200);

    /// An idle job worker's tick only reads when the next job is due, and its loop claims only
    /// once one is: a job due in an hour lets it wait on, while a job another replica
    /// scheduled for now (no wake-up here) is found at a tick; a wake-up ends the wait at once.
    #[tokio::test]
    async fn an_idle_job_worker_claims_only_once_a_job_is_due() {
        use crate::clock::{Clock as _, ManualClock};
        crate::store::testing::for_each_backend(|store| async move {
            let clock = ManualClock::new(chrono::DateTime::UNIX_EPOCH);
            let (_stop, mut worker) = ticking_worker();
            let (wake, lane) = (Notify::new(), Lane::Forge);
            let waited = tokio::time::timeout(
                TEN_TICKS,
                until_job_due(&store, &clock, lane, &wake, &mut worker),
            )
            .await;
            anyhow::ensure!(waited.is_err(), "nothing is due: {waited:?}");

            let yaml = "environment: prod\nrole: admin\nduration: 1h\nreason: incident\n";
            let record = crate::workflow::sample_record(yaml, clock.now());
            store.insert_request(&record).await?;
            let in_an_hour = clock.now() + chrono::TimeDelta::hours(1);
            let id = &record.id;
            store
                .schedule_job(JobKind::Remind, id, in_an_hour, clock.now())
                .await?;
            let waited = tokio::time::timeout(
                TEN_TICKS,
                until_job_due(&store, &clock, lane, &wake, &mut worker),
            )
            .await;
            anyhow::ensure!(waited.is_err(), "the job is due in an hour: {waited:?}");

            // Scheduled while the worker waits, by another replica: no wake-up here.
            let (waited, scheduled) = tokio::join!(
                tokio::time::timeout(
                    Duration::from_secs(10),
                    until_job_due(&store, &clock, lane, &wake, &mut worker),
                ),
                async {
                    tokio::time::sleep(TEN_TICKS / 3).await;
                    let now = clock.now();
                    store.schedule_job(JobKind::Expire, id, now, now).await
                }
            );
            scheduled?;
            anyhow::ensure!(waited == Ok(true), "a job is due: {waited:?}");

            // With nothing due in its lane, a wake-up (work scheduled here) ends the wait at
            // once, long before its hour's tick.
            let (_stop, mut worker) = ticking_worker();
            worker.tick = Duration::from_secs(3600);
            wake.notify_one();
            let waited = until_job_due(&store, &clock, Lane::Revocation, &wake, &mut worker);
            let waited = tokio::time::timeout(Duration::from_secs(10), waited).await;
            anyhow::ensure!(waited == Ok(true), "woken: {waited:?}");
            Ok(())
        })
        .await;
    }

    /// An idle delivery worker's tick only reads whether a delivery waits, and its loop claims
    /// only once one does: none, one leased to another replica or one whose retry is not due
    /// yet lets it wait on; a lease that lapsed, or one another replica stored while it waited
    /// (no wake-up here), is found at a tick.
    #[tokio::test]
    async fn an_idle_delivery_worker_claims_only_once_a_delivery_waits() {
        use crate::clock::{Clock as _, ManualClock};
        use crate::store::{DeliveryId, ForgeKind, NewDelivery};
        crate::store::testing::for_each_backend(|store| async move {
            let clock = ManualClock::new(chrono::DateTime::UNIX_EPOCH);
            let (_stop, mut worker) = ticking_worker();
            let wake = Notify::new();
            let waited = tokio::time::timeout(
                TEN_TICKS,
                deliveries_to_claim(&store, &clock, &wake, &mut worker),
            )
            .await;
            anyhow::ensure!(waited.is_err(), "nothing waits: {waited:?}");

            let delivery = |key: &str| NewDelivery {
                id: DeliveryId::new(ForgeKind::GitHub, key).expect("a delivery id"),
                event: "ping".into(),
                payload: "{}".into(),
                received_at: clock.now(),
            };
            let (elsewhere, later) = (delivery("elsewhere"), delivery("later"));
            store.record_deliveries(&[elsewhere, later.clone()]).await?;
            let taken = store
                .claim_deliveries("other-replica", clock.now(), LEASE, 10)
                .await?;
            anyhow::ensure!(taken.len() == 2, "{taken:?}");
            let in_an_hour = clock.now() + chrono::TimeDelta::hours(1);
            store.retry_delivery(&later.id, "502", in_an_hour).await?;
            let waited = tokio::time::timeout(
                TEN_TICKS,
                deliveries_to_claim(&store, &clock, &wake, &mut worker),
            )
            .await;
            anyhow::ensure!(waited.is_err(), "leased elsewhere, or later: {waited:?}");

            // The other replica died: its lease lapses (a clock this worker does not wait on).
            clock.advance(chrono::TimeDelta::from_std(LEASE)? + chrono::TimeDelta::seconds(1));
            let waited = tokio::time::timeout(
                Duration::from_secs(10),
                deliveries_to_claim(&store, &clock, &wake, &mut worker),
            )
            .await;
            anyhow::ensure!(waited == Ok(true), "a lease lapsed: {waited:?}");

            let taken = store
                .claim_deliveries("here", clock.now(), LEASE, 10)
                .await?;
            anyhow::ensure!(taken.len() == 1, "only the lapsed one: {taken:?}");
            let (waited, stored) = tokio::join!(
                tokio::time::timeout(
                    Duration::from_secs(10),
                    deliveries_to_claim(&store, &clock, &wake, &mut worker),
                ),
                async {
                    tokio::time::sleep(TEN_TICKS / 3).await;
                    store.record_delivery(&delivery("stored-elsewhere")).await
                }
            );
            stored?;
            anyhow::ensure!(waited == Ok(true), "a delivery waits: {waited:?}");
            Ok(())
        })
        .await;
    }

    /// A database that answers reads but refuses writes (a standby after a failover, a full
    /// disk; here opened read-only): a job lane's failed claim is recorded and tried again
    /// after a tick, not at once, although its next-due read keeps saying a job is due.
    #[tokio::test]
    async fn a_claim_the_database_refuses_is_recorded_and_tried_again_after_a_tick() {
        use crate::store::testing::{postgres_store, sqlite_store, sqlite_url};
        let (store, dir) = sqlite_store().await;
        let read_only = sqlite_url(dir.path()).replace("mode=rwc", "mode=ro");
        claims_refused_wait_a_tick(&store, &read_only).await;
        if let Some((store, database)) = postgres_store().await {
            let url = database.url();
            let joint = if url.contains('?') { '&' } else { '?' };
            let read_only = format!("{url}{joint}options=-c%20default_transaction_read_only%3Don");
            claims_refused_wait_a_tick(&store, &read_only).await;
        }
    }

    async fn claims_refused_wait_a_tick(store: &Store, read_only: &str) {
        use crate::clock::{Clock as _, ManualClock};
        let clock = ManualClock::new(chrono::DateTime::UNIX_EPOCH);
        let yaml = "environment: prod\nrole: admin\nduration: 1h\nreason: incident\n";
        let record = crate::workflow::sample_record(yaml, clock.now());
        store.insert_request(&record).await.expect("a request");
        let now = clock.now();
        let due = store.schedule_job(JobKind::Expire, &record.id, now, now);
        due.await.expect("a job due now");
        let refusing = Store::connect(read_only).await.expect("a read-only store");
        let (_stop, mut worker) = ticking_worker();
        worker.tick = Duration::from_millis(100);
        let (wake, lane) = (Notify::new(), Lane::Forge);
        let forge_lane = async {
            loop {
                let batch = claim_jobs(&refusing, &clock, lane, "w", 10, &mut worker).await;
                assert!(batch.is_empty(), "{batch:?}");
                until_job_due(&refusing, &clock, lane, &wake, &mut worker).await;
            }
        };
        let ten_ticks = Duration::from_secs(1);
        let _ = tokio::time::timeout(ten_ticks, forge_lane).await;
        let (failures, total) = worker.failures.snapshot();
        // Ten ticks, and a claim after each: at once, it would be one every few milliseconds.
        assert!((2..=12).contains(&total), "{total} claims: {failures:?}");
        for failure in &failures {
            assert_eq!(failure.work, Work::Claim("forge jobs"), "{failure}");
        }
        refusing.close().await;
    }

    /// A restart in the same pod (same host name, pid 1 again) must not take its dead
    /// predecessor's leases for its own: its heartbeat would keep them from lapsing.
    #[test]
    fn each_start_takes_leases_under_a_name_of_its_own() {
        let (first, second) = (worker_name(), worker_name());
        assert_ne!(first, second);
        let this_process = format!("{}-{}-", hostname(), std::process::id());
        assert!(first.starts_with(&this_process), "{first}");
        assert!(second.starts_with(&this_process), "{second}");
    }

    fn env(name: &str) -> Option<String> {
        (name == "APP_KEY").then(|| PEM.to_owned())
    }

    #[test]
    fn the_github_app_key_comes_from_its_file_or_its_environment_variable_whole() {
        let mut github = GithubConfig::default();
        assert!(app_key(&github, env).unwrap().is_none(), "a token, then");
        github.private_key_env = Some("APP_KEY".into());
        assert_eq!(app_key(&github, env).unwrap().unwrap().expose(), PEM);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), PEM).unwrap();
        github.private_key_path = Some(file.path().to_owned());
        let both = app_key(&github, env).unwrap_err().to_string();
        assert!(both.contains("keep one"), "{both}");
        github.private_key_env = None;
        assert_eq!(app_key(&github, env).unwrap().unwrap().expose(), PEM);
        github.private_key_path = None;
        github.private_key_env = Some("UNSET".into());
        let unset = app_key(&github, env).unwrap_err().to_string();
        assert!(
            unset.contains("UNSET") && unset.contains("not set"),
            "{unset}"
        );
    }

    #[test]
    fn half_a_github_app_is_refused_rather_than_taken_for_a_token() {
        let mut github = GithubConfig::default();
        assert!(app_auth(&github, env).unwrap().is_none(), "a token");
        github.app_id = Some(42);
        let no_key = app_auth(&github, env).unwrap_err().to_string();
        assert!(no_key.contains("sets app_id but no App key"), "{no_key}");
        github.private_key_env = Some("APP_KEY".into());
        let app = app_auth(&github, env).unwrap();
        assert!(
            matches!(app, Some(GithubAuth::App { app_id: 42, .. })),
            "an App"
        );
        github.app_id = None;
        let no_id = app_auth(&github, env).unwrap_err().to_string();
        assert!(no_id.contains("no app_id"), "{no_id}");
        github.private_key_env = None;
        github.installation_id = Some(7);
        let no_app = app_auth(&github, env).unwrap_err().to_string();
        assert!(no_app.contains("installation_id but no App"), "{no_app}");
    }

    #[test]
    fn a_lost_race_is_retried_at_once_and_only_a_run_of_them_is_a_failure() {
        let race = anyhow::Error::new(StoreError::Conflict {
            id: "r1".into(),
            expected: 7,
            found: 8,
        })
        .context("revoke");
        assert_eq!(retry_delay(&race, 0), chrono::TimeDelta::zero());
        assert!(!is_a_failure(&race, 0));
        assert!(!is_a_failure(&race, RACES_BEFORE_FAILURE - 1));
        assert!(is_a_failure(&race, RACES_BEFORE_FAILURE));
        // A run of them backs off: it is no race, and must not spin.
        let backoff = chrono::TimeDelta::seconds(1 << RACES_BEFORE_FAILURE);
        assert_eq!(retry_delay(&race, RACES_BEFORE_FAILURE), backoff);
        let other = anyhow::anyhow!("the forge answered 500");
        assert!(is_a_failure(&other, 0));
    }

    /// Another replica's merge moving the default branch between a merge's comparison and its
    /// read of the head is a lost race: tried again at once, not a second later.
    #[test]
    fn a_default_branch_moved_under_a_merge_is_a_race_lost() {
        let moved = anyhow::Error::new(crate::workflow::DefaultBranchMoved::for_tests())
            .context("merging r1");
        assert_eq!(retry_delay(&moved, 0), chrono::TimeDelta::zero());
        assert!(!is_a_failure(&moved, 0));
        assert!(is_a_failure(&moved, RACES_BEFORE_FAILURE));
    }

    #[test]
    fn only_passing_errors_are_retried_within_the_revoke_cap() {
        use crate::grant::GrantError;
        let passing = anyhow::Error::new(GrantError::Throttled("Rate exceeded".into()))
            .context("revoking r1");
        assert!(!needs_a_person(&passing));
        assert!(!needs_a_person(&anyhow::anyhow!("connection reset")));
        let misconfigured = anyhow::Error::new(GrantError::Misconfigured("no principal".into()));
        assert!(needs_a_person(&misconfigured.context("revoking r1")));
        let denied = anyhow::Error::new(GrantError::Denied("iam:DetachRolePolicy".into()));
        assert!(
            !needs_a_person(&denied),
            "permissions take a while to propagate"
        );
        let unreadable = anyhow::Error::new(StoreError::Decode {
            table: "requests",
            key: "r1".into(),
            reason: "column `reason`: reason is empty".into(),
        });
        assert!(needs_a_person(&unreadable));
    }

    #[test]
    fn failed_work_waits_as_long_as_a_rate_limit_asked_and_backs_off_otherwise() {
        let transient = anyhow::Error::new(ForgeError::Transient {
            call: "merge".into(),
            detail: "HTTP 503".into(),
        });
        assert_eq!(retry_delay(&transient, 0), chrono::TimeDelta::seconds(1));
        assert_eq!(retry_delay(&transient, 3), chrono::TimeDelta::seconds(8));
        assert_eq!(retry_delay(&transient, 30), chrono::TimeDelta::seconds(256));
        let limited = anyhow::Error::new(ForgeError::RateLimited {
            call: "merge".into(),
            retry_after: Duration::from_secs(120),
        })
        .context("merging the revert");
        assert_eq!(retry_delay(&limited, 0), chrono::TimeDelta::seconds(120));
        assert_eq!(
            retry_delay(&limited, 8),
            chrono::TimeDelta::seconds(256),
            "backoff beyond the ask"
        );
        let endless = anyhow::Error::new(ForgeError::RateLimited {
            call: "merge".into(),
            retry_after: Duration::from_secs(9_000_000_000_000),
        });
        assert_eq!(retry_delay(&endless, 0), chrono::TimeDelta::hours(1));
    }

    /// A renewal that waits (for SQLite's write lock, say) must not stop the work it renews
    /// for: the work may hold that very lock (found by the long chaos run: every heartbeat
    /// stalled the worker for the database's busy timeout).
    #[test]
    fn reconciliation_is_caught_up_only_when_no_pass_runs_or_is_due() {
        let at = |secs: i64| chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap();
        let status = Reconciliation::default();
        assert!(!status.caught_up(at(0)), "no pass yet");
        status
            .next_due
            .store(at(300).timestamp_millis(), Ordering::SeqCst);
        status.passes.store(1, Ordering::SeqCst);
        status.gaps.open();
        assert!(!status.caught_up(at(299)), "a delivery may have been lost");
        status.gaps.close(status.gaps.opened());
        assert!(status.caught_up(at(299)));
        assert!(!status.caught_up(at(300)), "a pass is due");
        assert!(status.idle(), "which idle alone does not show");
        status.running.store(true, Ordering::SeqCst);
        assert!(!status.caught_up(at(0)), "a pass runs");
    }

    #[tokio::test]
    async fn reconciliation_waits_for_the_revokes_due_at_start_but_not_forever() {
        let long = Duration::from_secs(600);
        let (_stop_tx, mut stop) = watch::channel(false);
        let (caught_up_tx, mut caught_up) = watch::channel(false);
        let gate =
            tokio::spawn(async move { revokes_first(&mut caught_up, &mut stop, long).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!gate.is_finished(), "the pass must wait for the revokes");
        caught_up_tx.send_replace(true);
        assert!(gate.await.unwrap());

        // A lane that never says it caught up holds the pass back `at_most`, no longer.
        let (_stop_tx, mut stop) = watch::channel(false);
        let (_never, mut caught_up) = watch::channel(false);
        let start = std::time::Instant::now();
        let at_most = Duration::from_millis(50);
        assert!(revokes_first(&mut caught_up, &mut stop, at_most).await);
        assert!(start.elapsed() >= at_most);

        // Shutdown ends the wait at once.
        let (stop_tx, mut stop) = watch::channel(false);
        stop_tx.send_replace(true);
        assert!(!revokes_first(&mut caught_up, &mut stop, long).await);
    }

    #[tokio::test]
    async fn a_waiting_renewal_does_not_stall_the_work() {
        let work = async {
            tokio::time::sleep(HEARTBEAT * 3).await;
            42
        };
        let stuck_renewal = || std::future::pending::<Result<u64, StoreError>>();
        let out = tokio::time::timeout(Duration::from_secs(30), renewing(work, stuck_renewal))
            .await
            .expect("the work finished while the renewal waited");
        assert_eq!(out, 42);
    }

    /// The heartbeat renews while the work runs, and stops with it.
    #[tokio::test]
    async fn the_heartbeat_renews_while_the_work_runs() {
        let renewals = Arc::new(AtomicU64::new(0));
        let counted = renewals.clone();
        let renew = move || {
            counted.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok::<u64, StoreError>(1))
        };
        renewing(tokio::time::sleep(HEARTBEAT * 3), renew).await;
        let during = renewals.load(Ordering::SeqCst);
        assert!(during >= 1, "renewed {during} times while working");
        tokio::time::sleep(HEARTBEAT * 2).await;
        assert_eq!(
            renewals.load(Ordering::SeqCst),
            during,
            "renewed after the work"
        );
    }
}
