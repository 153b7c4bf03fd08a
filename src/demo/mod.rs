//! `breakglass demo`: the whole story on one machine, in seconds.
//!
//! It starts the test forge (a GitHub-compatible API backed by real git repositories) and the
//! real service on loopback, with SQLite in a temporary directory, and plays the people of the
//! story against them: alice asks for access with a comment, fails to approve herself, carol
//! approves with a 👍, the bot merges, grants, and revokes at the TTL; then bob takes the sev1
//! fast path and carol reviews it after the fact.
//!
//! Time is fast-forwarded: the bot and the forge share a [`ManualClock`] that the demo moves
//! past poll intervals and expiries, so a two-minute grant ends without waiting two minutes.
//!
//! The demo doubles as a smoke test of a build: after each step it checks that the bot did
//! what the step is about, and when it did not, it says what it expected and the binary exits
//! with code 1.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use breakglass_test_forge::{CallStats, TestForge, User};

mod stage;

use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};
use serde_json::Value;
pub use stage::DemoForge;
use stage::Stage;

use crate::audit::trailers::TrailerKey;
use crate::clock::{Clock, ManualClock, iso};
use crate::comment;
use crate::config::{Config, GithubConfig, GitlabConfig};
use crate::duration::HumanDuration;
use crate::service::{self, Options, Running};
use crate::store::{DeliveryState, ForgeKind, RequestRecord, RequestState, Store};
use crate::workflow::NEEDS_REVIEW_LABEL;

/// `println!` that ignores a closed stdout (`breakglass demo | head`): the story still runs
/// to its end, shuts the service down cleanly and reports through its exit code.
macro_rules! out {
    () => {
        out!("")
    };
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// The requests repo of the story.
const REPO: &str = "acme/access-requests";

// Embedded, so that the binary plays the demo from any directory.
const PROD_POLICY: &str = include_str!("../../policies/prod.yaml");
const STAGING_POLICY: &str = include_str!("../../policies/staging.yaml");

/// How long the demo waits for the bot to finish one step before calling it stuck. The bot
/// needs well under a second per step; the margin is for slow CI machines.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);

/// What `breakglass demo` was asked for.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// How long alice's access lasts (the `/breakglass prod <ttl>` of step 1).
    pub ttl: HumanDuration,
    /// The database; `None` for a throwaway SQLite file. It must hold no requests yet,
    /// because the forge is new on every run and reuses PR numbers.
    pub database_url: Option<String>,
    /// Which forge the story plays on.
    pub forge: DemoForge,
}

/// Plays the story, prints its timeline, the requests repo's history and the API calls.
///
/// `Ok(ExitCode::FAILURE)` when a step did not do what it should (after printing what was
/// expected); `Err` when the demo itself could not run (no loopback port, database refused).
pub async fn run(options: DemoOptions) -> anyhow::Result<ExitCode> {
    let wall = Instant::now();
    let mut demo = Demo::start(&options).await?;
    out!(
        "breakglass demo: the bot and a {}-compatible test forge on loopback, {}.",
        options.forge.name(),
        if options.database_url.is_some() {
            "on the database given by --database-url"
        } else {
            "SQLite in a temporary directory"
        }
    );
    out!(
        "Time is fast-forwarded: the bot and the forge share a manual clock that the demo moves \
         on, so the story below takes seconds. Times are UTC; the story starts at {}.",
        iso(demo.clock.now())
    );
    let outcome = demo.play(&options).await;
    if let Err(Failure::Unexpected(expected)) = &outcome {
        out!();
        out!("✗ expected {expected}");
        for error in demo.bot_errors().await {
            out!("  the bot's last error: {error}");
        }
    }
    demo.print_history();
    demo.print_calls();
    out!();
    let code = match outcome {
        Ok(()) => {
            out!(
                "demo finished in {:.1} s of wall time: every step did what it should.",
                wall.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(Failure::Unexpected(_)) => {
            out!(
                "demo FAILED after {:.1} s: see the expectation above.",
                wall.elapsed().as_secs_f64()
            );
            ExitCode::FAILURE
        }
        Err(Failure::Broken(err)) => {
            demo.stop().await;
            return Err(err);
        }
    };
    demo.stop().await;
    Ok(code)
}

/// Why the story stopped.
#[derive(Debug)]
enum Failure {
    /// The bot did not do what the step expects: the smoke test fails (exit code 1).
    Unexpected(String),
    /// The demo's own machinery failed (the database, the forge's HTTP): an error (exit code 2).
    Broken(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(err: E) -> Self {
        Failure::Broken(err.into())
    }
}

/// Fails the step with what it expected unless `ok`.
fn expect(ok: bool, expected: impl FnOnce() -> String) -> Result<(), Failure> {
    if ok {
        Ok(())
    } else {
        Err(Failure::Unexpected(expected()))
    }
}

/// The people of the story. Teams: acme/sre (alice), acme/sre-leads (carol), acme/oncall (bob).
struct People {
    alice: User,
    bob: User,
    carol: User,
    bot: User,
}

/// API calls at one point of the story, to count what a part of it cost.
#[derive(Clone, Copy, Debug, Default)]
struct Calls {
    total: u64,
    not_modified: u64,
    writes: u64,
}

impl Calls {
    fn of(stats: &CallStats) -> Self {
        Self {
            total: stats.total,
            not_modified: stats.not_modified,
            writes: stats.writes(),
        }
    }

    fn since(self, earlier: Calls) -> Calls {
        Calls {
            total: self.total - earlier.total,
            not_modified: self.not_modified - earlier.not_modified,
            writes: self.writes - earlier.writes,
        }
    }
}

impl fmt::Display for Calls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} calls, {} of them answered 304 Not Modified (free of rate limit), {} writes",
            self.total, self.not_modified, self.writes
        )
    }
}

/// The requests repo with its policies, the people of the story and their teams.
fn seed_forge(forge: &TestForge) -> People {
    let people = People {
        alice: forge.user("alice"),
        bob: forge.user("bob"),
        carol: forge.user("carol"),
        bot: forge.bot_user("breakglass[bot]"),
    };
    forge.create_repo(
        REPO,
        &[
            (
                "README.md",
                "# access requests\n\nBreak-glass access requests, granted and revoked by breakglass.\n",
            ),
            ("policies/prod.yaml", PROD_POLICY),
            ("policies/staging.yaml", STAGING_POLICY),
        ],
    );
    for (team, user) in [
        ("acme/sre", &people.alice),
        ("acme/sre-leads", &people.carol),
        ("acme/oncall", &people.bob),
    ] {
        forge.add_team_member(team, user);
    }
    people
}

/// The service's configuration for one forge of the test forge, its secrets read from files.
fn demo_config(
    dialect: DemoForge,
    forge: &TestForge,
    database_url: String,
    token_file: PathBuf,
    secret_file: PathBuf,
) -> anyhow::Result<Config> {
    let (github, gitlab) = match dialect {
        DemoForge::Github => (
            Some(GithubConfig {
                api_url: forge.api_url(),
                repository: REPO.into(),
                token_file: Some(token_file),
                webhook_secret_file: Some(secret_file),
                ..GithubConfig::default()
            }),
            None,
        ),
        DemoForge::Gitlab => (
            None,
            Some(GitlabConfig {
                api_url: forge.gitlab_api_url(),
                project: REPO.into(),
                token_file: Some(token_file),
                webhook_token_file: Some(secret_file),
                ..GitlabConfig::default()
            }),
        ),
    };
    Ok(Config {
        listen: "127.0.0.1:0".parse()?,
        database_url,
        github,
        gitlab,
        ..Config::default()
    })
}

/// The demo's database, migrated, or an error when it already holds requests.
async fn open_empty_store(database_url: &str) -> anyhow::Result<Store> {
    let store = Store::connect(database_url)
        .await
        .context("opening the database")?;
    store.migrate().await.context("migrating the database")?;
    // The forge is new on every run and numbers its PRs from 1 again; old requests keyed
    // by those numbers would be taken for the new ones.
    let existing = store.list_requests(None).await?;
    anyhow::ensure!(
        existing.is_empty(),
        "the database given by --database-url already holds {} request(s); the demo needs \
         an empty one (or none: without --database-url it uses a throwaway SQLite file)",
        existing.len()
    );
    Ok(store)
}

/// The bot's token and the webhook secret, written to files in the demo's directory.
struct Secrets {
    token_file: PathBuf,
    secret_file: PathBuf,
    webhook_secret: String,
}

impl Secrets {
    /// A fresh webhook secret and the bot's token on the forge, each written to its file.
    fn write(
        dir: &crate::store::testing::TempDir,
        forge: &TestForge,
        bot: &User,
    ) -> anyhow::Result<Secrets> {
        // Secrets go through files, as in production: never on a command line or in a log.
        let webhook_secret = format!(
            "{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        let token_file = dir.path().join("github-token");
        let secret_file = dir.path().join("webhook-secret");
        std::fs::write(&token_file, forge.token_for(bot))?;
        std::fs::write(&secret_file, &webhook_secret)?;
        Ok(Secrets {
            token_file,
            secret_file,
            webhook_secret,
        })
    }
}

/// The clock the bot and the forge share, set on the forge's clock too.
fn shared_clock(forge: &TestForge) -> anyhow::Result<ManualClock> {
    // Both clocks start together, on a whole minute so that the timeline reads cleanly;
    // `advance` moves both.
    let start = Utc::now().duration_trunc(TimeDelta::minutes(1))?;
    let clock = ManualClock::new(start);
    forge.advance_clock(start - forge.now());
    Ok(clock)
}

/// The real service on loopback, on the demo's clock and the repository's templates.
async fn start_service(config: &Config, clock: &ManualClock) -> anyhow::Result<Running> {
    service::start(
        config,
        Options {
            clock: Arc::new(clock.clone()) as Arc<dyn Clock>,
            database_clock: false,
            // A move of the clock wakes the bot; the tick paces only what nothing woke it for.
            tick: Duration::from_millis(100),
            templates_dir: Some(PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/templates"
            ))),
            env: |_| None,
            ..Options::default()
        },
    )
    .await
    .context("starting the service")
}

/// Points the forge's webhook of the demo's dialect at the running service.
fn wire_webhook(forge: &TestForge, dialect: DemoForge, running: &Running, secret: &str) {
    match dialect {
        DemoForge::Github => {
            forge.add_webhook(&format!("http://{}/webhooks/github", running.addr), secret);
        }
        DemoForge::Gitlab => {
            forge.add_gitlab_webhook(&format!("http://{}/webhooks/gitlab", running.addr), secret)
        }
    }
}

/// The running demo: forge, service, the shared clock, and what the timeline has shown so far.
struct Demo {
    stage: Stage,
    clock: ManualClock,
    people: People,
    store: Store,
    service: Option<Running>,
    poll_interval: TimeDelta,
    reminder_before: TimeDelta,
    /// Webhook deliveries already turned into timeline lines.
    shown_deliveries: usize,
    /// API calls per part of the story, filled in as the parts end.
    parts: Vec<(&'static str, Calls)>,
    // Dropped last: the SQLite file and the secret files live here.
    _dir: crate::store::testing::TempDir,
}

/// Bob's sev1 request of step 5: its PR, its id and its file on the request branch.
struct FastPathRequest {
    pr: u64,
    id: String,
    path: String,
}

impl Demo {
    /// Sets up the requests repo, the people and the service, and wires the forge's webhook to it.
    async fn start(options: &DemoOptions) -> anyhow::Result<Demo> {
        // The store's throwaway directory serves the demo well: it is deleted on drop.
        let dir =
            crate::store::testing::TempDir::new().context("creating a temporary directory")?;
        let database_url = options
            .database_url
            .clone()
            .unwrap_or_else(|| crate::store::testing::sqlite_url(dir.path()));
        let store = open_empty_store(&database_url).await?;

        let forge = TestForge::start().await;
        let people = seed_forge(&forge);
        let secrets = Secrets::write(&dir, &forge, &people.bot)?;
        let config = demo_config(
            options.forge,
            &forge,
            database_url,
            secrets.token_file,
            secrets.secret_file,
        )?;
        let poll_interval = GithubConfig::default().reaction_poll_interval.to_chrono();
        let reminder_before = config.reminder_before.to_chrono();

        let clock = shared_clock(&forge)?;
        let running = start_service(&config, &clock).await?;
        wire_webhook(&forge, options.forge, &running, &secrets.webhook_secret);

        Ok(Demo {
            stage: Stage {
                forge,
                dialect: options.forge,
            },
            clock,
            people,
            store,
            service: Some(running),
            poll_interval,
            reminder_before,
            shown_deliveries: 0,
            parts: Vec::new(),
            _dir: dir,
        })
    }

    async fn stop(&mut self) {
        if let Some(running) = self.service.take() {
            running.shutdown().await;
        }
        self.store.close().await;
    }

    /// The story, step by step, each checked.
    async fn play(&mut self, options: &DemoOptions) -> Result<(), Failure> {
        let before = Calls::of(&self.stage.forge.calls());
        self.lifecycle(options.ttl).await?;
        let after_lifecycle = Calls::of(&self.stage.forge.calls());
        self.parts.push((
            "steps 1-4, one lifecycle (request, approval, grant, revocation)",
            after_lifecycle.since(before),
        ));
        self.fast_path().await?;
        self.parts.push((
            "step 5, the fast path and its review",
            Calls::of(&self.stage.forge.calls()).since(after_lifecycle),
        ));
        Ok(())
    }

    /// Steps 1-4: a request by comment, a refused self-approval, an approval by reaction, the
    /// grant, and the revocation at the TTL.
    async fn lifecycle(&mut self, ttl: HumanDuration) -> Result<(), Failure> {
        let (pr, id) = self.request_by_comment(ttl).await?;
        self.refused_self_approval(pr).await?;
        let (expires_at, revert) = self.approval_by_reaction(pr, &id).await?;
        self.revocation_at_the_ttl(ttl, pr, &id, expires_at, revert)
            .await
    }

    /// Step 1: alice's comment on an issue becomes a request PR the bot opens, pending.
    async fn request_by_comment(&mut self, ttl: HumanDuration) -> Result<(u64, String), Failure> {
        let alice = self.people.alice.clone();
        self.heading("1. alice (@acme/sre) asks for prod access with a comment on an issue");
        let issue = self.stage.open_issue(&alice, "Checkout DB is failing over");
        self.say(
            "alice",
            format!("opened issue #{issue} \"Checkout DB is failing over\""),
        );
        // prod has two roles (admin, readonly), so the command names one.
        let command = format!("/breakglass prod {ttl} admin -- incident: INC-1 db failover");
        self.stage.comment_on_issue(issue, &alice, &command);
        self.say("alice", format!("on #{issue}: {command}"));
        self.settle().await?;
        let requests = self.store.list_requests(None).await?;
        let pr = match requests
            .iter()
            .find(|r| r.requester_login.as_str() == "alice")
        {
            Some(record) if self.stage.change(record.pr_number).user == self.people.bot.login => {
                record.pr_number
            }
            _ => {
                let said = self
                    .stage
                    .issue_comments(issue)
                    .last()
                    .map_or_else(|| "(nothing)".to_owned(), |(_, body)| gist(body));
                return Err(Failure::Unexpected(format!(
                    "the bot to open a request {} for alice's comment on #{issue}; it said: {said}",
                    self.stage.dialect.change()
                )));
            }
        };
        let record = self.request_on(pr).await?;
        expect(
            record.requester_login.as_str() == "alice" && record.state == RequestState::Pending,
            || {
                format!(
                    "{} {} to be alice's request, allowed and waiting for approval; it is {}'s, {}: {}",
                    self.stage.dialect.change(),
                    self.stage.dialect.change_ref(pr),
                    record.requester_login,
                    record.state,
                    self.last_bot_comment(pr)
                )
            },
        )?;
        Ok((pr, record.id.to_string()))
    }

    /// Step 2: the requester's own approval is refused and merges nothing.
    async fn refused_self_approval(&mut self, pr: u64) -> Result<(), Failure> {
        let alice = self.people.alice.clone();
        let pr_ref = self.stage.dialect.change_ref(pr);
        self.advance(TimeDelta::seconds(10), "alice is in a hurry")
            .await?;
        self.heading("2. alice tries to approve her own request");
        self.stage
            .comment_on_change(pr, &alice, "/breakglass approve");
        self.say("alice", format!("on {pr_ref}: /breakglass approve"));
        self.settle().await?;
        let refusal = comment::self_approval_comment("alice");
        expect(self.bot_comments(pr).contains(&refusal), || {
            format!(
                "the bot to refuse alice's own approval on {pr_ref} with \"{refusal}\"; its last comment: {}",
                self.last_bot_comment(pr)
            )
        })?;
        expect(!self.stage.change(pr).merged, || {
            format!(
                "{} {pr_ref} to stay unmerged after alice approved it herself",
                self.stage.dialect.change()
            )
        })
    }

    /// Step 3: carol's 👍 merges the request with its trailers, and the bot comments the grant.
    /// Returns the expiry and the revert PR.
    async fn approval_by_reaction(
        &mut self,
        pr: u64,
        id: &str,
    ) -> Result<(DateTime<Utc>, u64), Failure> {
        let carol = self.people.carol.clone();
        let (noun, pr_ref) = (
            self.stage.dialect.change(),
            self.stage.dialect.change_ref(pr),
        );
        self.advance(TimeDelta::seconds(50), "carol, an SRE lead, is paged")
            .await?;
        self.heading(&match self.stage.dialect {
            DemoForge::Github => format!(
                "3. carol approves with a 👍; GitHub sends no webhook for reactions, so the bot polls them every {}",
                HumanDuration::from_secs(self.poll_interval.num_seconds().unsigned_abs())
            ),
            DemoForge::Gitlab => {
                "3. carol approves with a 👍; GitLab sends it as an Emoji Hook event".to_owned()
            }
        });
        self.stage.thumbs_up(pr, &carol);
        let name = match self.stage.dialect {
            DemoForge::Github => "+1",
            DemoForge::Gitlab => "thumbsup", // GitLab's name of the award
        };
        self.say("carol", format!("reacted 👍 ({name}) on {noun} {pr_ref}"));
        self.settle().await?;
        if self.stage.dialect == DemoForge::Github {
            self.advance(self.poll_interval, "the next reaction poll is due")
                .await?;
        }
        let merge_sha = self.merge_commit(
            pr,
            format!("{noun} {pr_ref} to be merged one poll interval after carol's 👍"),
        )?;
        self.expect_trailers(
            &merge_sha,
            &[
                (TrailerKey::Request, id),
                (TrailerKey::Requester, "alice"),
                (TrailerKey::ApprovedBy, "carol"),
                (TrailerKey::Expires, ""),
            ],
        )?;
        let record = self.request_on(pr).await?;
        let (Some(expires_at), Some(revert)) = (record.expires_at, record.revert_pr_number) else {
            return Err(Failure::Unexpected(format!(
                "request {id} to be active with an expiry and a revert PR after the merge; it is {}: {}",
                record.state,
                self.last_bot_comment(pr)
            )));
        };
        expect(
            self.bot_comments(pr)
                .iter()
                .any(|c| c.starts_with("🔓 **Access granted.**")),
            || format!("the bot to comment the grant and its expiry on {pr_ref}"),
        )?;
        Ok((expires_at, revert))
    }

    /// Step 4: at the TTL the bot revokes, merges the revert with its trailers, comments, and
    /// the request file is gone from main.
    async fn revocation_at_the_ttl(
        &mut self,
        ttl: HumanDuration,
        pr: u64,
        id: &str,
        expires_at: DateTime<Utc>,
        revert: u64,
    ) -> Result<(), Failure> {
        let (noun, pr_ref) = (
            self.stage.dialect.change(),
            self.stage.dialect.change_ref(pr),
        );
        let revert_ref = self.stage.dialect.change_ref(revert);
        self.heading(&format!(
            "4. time runs to the TTL ({ttl}): the bot revokes, then merges the revert {noun} {revert_ref}"
        ));
        let remind_at = expires_at - self.reminder_before;
        if remind_at > self.clock.now() {
            let by = remind_at - self.clock.now();
            self.advance(by, "the reminder is due").await?;
        }
        let by = expires_at - self.clock.now();
        self.advance(by, "the grant expires").await?;
        let revert_sha = self.merge_commit(
            revert,
            format!(
                "the revert {noun} {revert_ref} to be merged at the TTL {}",
                iso(expires_at)
            ),
        )?;
        self.expect_trailers(
            &revert_sha,
            &[
                (TrailerKey::Revokes, id),
                (TrailerKey::RevokedReason, "ttl"),
            ],
        )?;
        let record = self.request_on(pr).await?;
        expect(record.state == RequestState::Revoked, || {
            format!(
                "request {id} to be revoked at the TTL; it is {}",
                record.state
            )
        })?;
        expect(
            self.bot_comments(pr)
                .iter()
                .any(|c| c.starts_with("🔒 **Access revoked**")),
            || format!("the bot to comment the revocation on {pr_ref}"),
        )?;
        expect(
            self.stage
                .forge
                .file_on(REPO, "main", &format!("requests/prod/{id}.yaml"))
                .is_none(),
            || format!("requests/prod/{id}.yaml to be gone from main after the revocation"),
        )
    }

    /// Step 5: bob's sev1 request is merged at once and reviewed after the fact by carol.
    async fn fast_path(&mut self) -> Result<(), Failure> {
        self.advance(TimeDelta::minutes(10), "a quiet night, until a sev1")
            .await?;
        self.heading(
            "5. fast path: bob (@acme/oncall) opens a request PR himself and labels it sev1",
        );
        let request = self.open_sev1_request();
        self.settle().await?;
        self.expect_fast_path_merge(&request)?;
        let record = self.review_after_the_fact(&request).await?;
        self.expect_only_active_grant(&request, &record)
    }

    /// Bob pushes his request file, opens its PR himself and labels it sev1.
    fn open_sev1_request(&self) -> FastPathRequest {
        let bob = self.people.bob.clone();
        let id = format!("{}-bob-prod", self.clock.now().format("%Y%m%d-%H%M"));
        let path = format!("requests/prod/{id}.yaml");
        let branch = format!("request-{id}");
        let yaml = "environment: prod\nrole: admin\nduration: 45m\nreason: \"incident: INC-2 checkout API returns 5xx\"\nticket: INC-2\n";
        self.stage.forge.push_files(
            REPO,
            &branch,
            &bob,
            &[(&path, yaml)],
            &format!("request {id}"),
        );
        self.say(
            "bob",
            format!("pushed {path} (45m, ticket INC-2) to {branch}"),
        );
        let title = format!("Access request {id}");
        let pr = self.stage.open_change(&bob, &branch, &title);
        let (noun, pr_ref) = (
            self.stage.dialect.change(),
            self.stage.dialect.change_ref(pr),
        );
        self.say("bob", format!("opened {noun} {pr_ref} \"{title}\""));
        self.stage.label(pr, &bob, "sev1");
        self.say("bob", format!("labeled {noun} {pr_ref} sev1"));
        FastPathRequest { pr, id, path }
    }

    /// The sev1 request is merged at once with the fast path as its approval, and labeled
    /// for review.
    fn expect_fast_path_merge(&self, request: &FastPathRequest) -> Result<(), Failure> {
        let (pr, id) = (request.pr, &request.id);
        let (noun, pr_ref) = (
            self.stage.dialect.change(),
            self.stage.dialect.change_ref(pr),
        );
        let merge_sha = self.merge_commit(
            pr,
            format!("the sev1 {noun} {pr_ref} to be merged at once on the fast path"),
        )?;
        self.expect_trailers(
            &merge_sha,
            &[
                (TrailerKey::Request, id.as_str()),
                (TrailerKey::Requester, "bob"),
                (TrailerKey::ApprovedBy, "fast-path:sev1"),
            ],
        )?;
        expect(
            self.stage
                .labels(pr)
                .iter()
                .any(|l| l == NEEDS_REVIEW_LABEL),
            || {
                format!(
                    "{noun} {pr_ref} to be labeled {NEEDS_REVIEW_LABEL} until an approver reviews it"
                )
            },
        )
    }

    /// Carol's `/breakglass reviewed` closes the review and removes the review label.
    /// Returns the request as recorded after the review.
    async fn review_after_the_fact(
        &mut self,
        request: &FastPathRequest,
    ) -> Result<RequestRecord, Failure> {
        let carol = self.people.carol.clone();
        let (pr, id) = (request.pr, &request.id);
        let (noun, pr_ref) = (
            self.stage.dialect.change(),
            self.stage.dialect.change_ref(pr),
        );
        self.advance(TimeDelta::minutes(5), "carol looks at what happened")
            .await?;
        self.stage
            .comment_on_change(pr, &carol, "/breakglass reviewed");
        self.say("carol", format!("on {pr_ref}: /breakglass reviewed"));
        self.settle().await?;
        let record = self.request_on(pr).await?;
        expect(
            record.reviewed_by.as_ref().map(|l| l.as_str()) == Some("carol"),
            || {
                format!(
                    "carol's /breakglass reviewed to close the review of {id}; the bot's last comment is: {}",
                    self.last_bot_comment(pr)
                )
            },
        )?;
        expect(
            !self
                .stage
                .labels(pr)
                .iter()
                .any(|l| l == NEEDS_REVIEW_LABEL),
            || format!("{NEEDS_REVIEW_LABEL} to be removed from {noun} {pr_ref} after the review"),
        )?;
        Ok(record)
    }

    /// requests/ on main lists bob's grant and nothing else; the timeline ends with it.
    fn expect_only_active_grant(
        &self,
        request: &FastPathRequest,
        record: &RequestRecord,
    ) -> Result<(), Failure> {
        let path = &request.path;
        let active: Vec<String> = self
            .stage
            .forge
            .files_on(REPO, "main")
            .into_iter()
            .filter(|f| f.starts_with("requests/"))
            .collect();
        expect(active == [path.clone()], || {
            format!(
                "requests/ on main to list exactly bob's active grant {path}; it lists {active:?}"
            )
        })?;
        out!();
        out!(
            "Active grants, as requests/ on main lists them: {} (until {}).",
            active.join(", "),
            record.expires_at.map(iso).unwrap_or_default()
        );
        Ok(())
    }

    // ---- the timeline ----

    fn heading(&self, text: &str) {
        out!();
        out!("{text}");
    }

    /// One line of the timeline: the (fast-forwarded) time, who, what.
    fn say(&self, who: &str, what: impl fmt::Display) {
        out!("{}  {who:<11}  {what}", self.clock.now().format("%H:%M:%S"));
    }

    /// Moves both clocks forward, says so, and lets the bot do what became due.
    async fn advance(&mut self, by: TimeDelta, why: &str) -> Result<(), Failure> {
        // The forge's first: the bot's move wakes the bot at once.
        self.stage.forge.advance_clock(by);
        self.clock.advance(by);
        let span = HumanDuration::from_secs(by.num_seconds().unsigned_abs());
        self.say("clock", format!("⏩ +{span}: {why}"));
        self.settle().await
    }

    /// Waits until the forge sent every webhook, the bot handled every delivery and no job is
    /// due (three quiet looks in a row, as work may be handed from one worker to the other),
    /// then shows what the bot did. The same logic as the scenario tests' harness.
    async fn settle(&mut self) -> Result<(), Failure> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let mut quiet = 0;
        while quiet < 3 {
            if Instant::now() >= deadline {
                let pending = self.pending_work().await?;
                return Err(Failure::Unexpected(format!(
                    "the bot to finish its work within {} s; still pending: {pending}",
                    SETTLE_TIMEOUT.as_secs()
                )));
            }
            self.stage.forge.settle().await;
            let busy = !self.pending_work().await?.is_empty();
            quiet = if busy { 0 } else { quiet + 1 };
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.show_bot_events();
        Ok(())
    }

    /// Undelivered webhooks and due jobs, described; empty when there are none.
    async fn pending_work(&self) -> anyhow::Result<String> {
        let pending = self
            .store
            .count_deliveries_by_state()
            .await?
            .iter()
            .find(|(state, _)| *state == DeliveryState::Pending)
            .map_or(0, |(_, n)| *n);
        let jobs = self.store.overdue_jobs(self.clock.now()).await?;
        if pending == 0 && jobs.is_empty() {
            return Ok(String::new());
        }
        Ok(format!(
            "{pending} webhook deliveries, due jobs: {}",
            jobs.iter()
                .map(|j| format!(
                    "{} of {} (attempts {}{})",
                    j.kind,
                    j.request_id,
                    j.attempts,
                    j.last_error
                        .as_deref()
                        .map(|e| format!(", last error: {e}"))
                        .unwrap_or_default()
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ))
    }

    /// Turns the bot's new webhook events into timeline lines. The forge sends a webhook for
    /// every change, in order, so they are the bot's actions as GitHub would show them.
    fn show_bot_events(&mut self) {
        let deliveries = self.stage.forge.deliveries();
        for delivery in deliveries.iter().skip(self.shown_deliveries) {
            let payload = delivery.payload();
            if self.stage.sender(&payload).as_deref() != Some(self.people.bot.login.as_str()) {
                continue; // the people's actions are shown as they happen
            }
            let line = match self.stage.dialect {
                DemoForge::Github => describe(&delivery.event, &payload),
                DemoForge::Gitlab => stage::describe_gitlab(&delivery.event, &payload),
            };
            if let Some(line) = line {
                self.say("breakglass", line);
            }
        }
        self.shown_deliveries = deliveries.len();
    }

    // ---- reading back ----

    async fn request_on(&self, pr: u64) -> Result<RequestRecord, Failure> {
        self.store
            .find_request_by_pr(
                match self.stage.dialect {
                    DemoForge::Github => ForgeKind::GitHub,
                    DemoForge::Gitlab => ForgeKind::GitLab,
                },
                REPO,
                pr,
            )
            .await?
            .ok_or_else(|| {
                Failure::Unexpected(format!(
                    "the bot to record {} as a request; its last comment is: {}",
                    self.stage.dialect.change_ref(pr),
                    self.last_bot_comment(pr)
                ))
            })
    }

    fn bot_comments(&self, number: u64) -> Vec<String> {
        self.stage
            .change_comments(number)
            .into_iter()
            .filter(|(user, _)| *user == self.people.bot.login)
            .map(|(_, body)| body)
            .collect()
    }

    /// The gist of the bot's latest comment on `number`, for failure messages.
    fn last_bot_comment(&self, number: u64) -> String {
        self.bot_comments(number)
            .last()
            .map_or_else(|| "(none)".to_owned(), |body| gist(body))
    }

    /// The merge commit of `number`, or a failure saying what was expected, the change's state
    /// and the bot's last comment on it.
    fn merge_commit(&self, number: u64, expected: String) -> Result<String, Failure> {
        let change = self.stage.change(number);
        match (change.merged, change.merge_commit_sha) {
            (true, Some(sha)) => Ok(sha),
            _ => Err(Failure::Unexpected(format!(
                "{expected}; it is {}, and the bot's last comment on it is: {}",
                change.state,
                self.last_bot_comment(number)
            ))),
        }
    }

    /// Checks that the commit `sha` of main carries every trailer of `expected` (a prefix each).
    /// `expected` trailers, each a key and the start of its value (`""`: any value).
    fn expect_trailers(&self, sha: &str, expected: &[(TrailerKey, &str)]) -> Result<(), Failure> {
        let log = self.stage.forge.log(REPO, "main");
        let Some(commit) = log.iter().find(|c| c.sha == sha) else {
            return Err(Failure::Unexpected(format!(
                "the merge commit {} on main",
                short(sha)
            )));
        };
        expect(commit.parents.len() == 2, || {
            format!(
                "{} to be a merge commit (never a squash); it has {} parent(s)",
                short(sha),
                commit.parents.len()
            )
        })?;
        for (key, value) in expected {
            let trailer = format!("{key}: {value}");
            expect(
                commit.message.lines().any(|l| l.starts_with(&trailer)),
                || {
                    format!(
                        "the trailer `{trailer}` in merge commit {}; its message is:\n{}",
                        short(sha),
                        commit.message
                    )
                },
            )?;
        }
        Ok(())
    }

    /// The bot's latest error on each request, if any: with logging off, a failing job is
    /// otherwise silent (it is retried with backoff on the stopped clock).
    async fn bot_errors(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let Ok(requests) = self.store.list_requests(None).await else {
            return errors;
        };
        for request in requests {
            if let Ok(jobs) = self.store.jobs_for_request(&request.id).await {
                for job in jobs {
                    if let Some(error) = job.last_error {
                        errors.push(format!(
                            "{} of {} (attempt {}): {error}",
                            job.kind, request.id, job.attempts
                        ));
                    }
                }
            }
        }
        errors
    }

    /// `git log --first-parent main` of the requests repo: the audit trail.
    fn print_history(&self) {
        out!();
        out!("git log --first-parent main of {REPO} (newest first):");
        let log = self.stage.forge.log(REPO, "main");
        let by_sha: HashMap<&str, _> = log.iter().map(|c| (c.sha.as_str(), c)).collect();
        let mut next = self.stage.forge.branch_sha(REPO, "main");
        while let Some(commit) = next.as_deref().and_then(|sha| by_sha.get(sha)) {
            out!("  {}  {}", short(&commit.sha), first_line(&commit.message));
            for trailer in commit
                .message
                .lines()
                .filter(|l| l.starts_with(TrailerKey::PREFIX))
            {
                out!("           {trailer}");
            }
            next = commit.parents.first().cloned();
        }
    }

    fn print_calls(&self) {
        out!();
        out!(
            "Forge API calls by the bot, whole demo: {}.",
            Calls::of(&self.stage.forge.calls())
        );
        for (part, calls) in &self.parts {
            out!("  {part}: {calls}");
        }
    }
}

/// One timeline line for a webhook event the bot caused; `None` for noise (its branch pushes,
/// which the PRs and merges already show).
fn describe(event: &str, payload: &Value) -> Option<String> {
    let action = payload["action"].as_str().unwrap_or_default();
    match (event, action) {
        ("pull_request", _) => {
            let number = payload["number"].as_u64()?;
            let pr = &payload["pull_request"];
            match action {
                "opened" => Some(format!(
                    "opened PR #{number} \"{}\"",
                    pr["title"].as_str().unwrap_or_default()
                )),
                "closed" if pr["merged"].as_bool() == Some(true) => Some(format!(
                    "merged PR #{number} with merge commit {}",
                    short(pr["merge_commit_sha"].as_str().unwrap_or_default())
                )),
                "closed" => Some(format!("closed PR #{number}")),
                "labeled" => Some(format!(
                    "labeled PR #{number} {}",
                    payload["label"]["name"].as_str().unwrap_or_default()
                )),
                "unlabeled" => Some(format!(
                    "removed label {} from PR #{number}",
                    payload["label"]["name"].as_str().unwrap_or_default()
                )),
                _ => None,
            }
        }
        ("issue_comment", "created") => Some(format!(
            "on #{}: {}",
            payload["issue"]["number"].as_u64()?,
            gist(payload["comment"]["body"].as_str().unwrap_or_default())
        )),
        _ => None,
    }
}

/// What a comment of the bot says, in one line: its first line, and for a verdict also the
/// first sentence of what comes next (the approvals it needs, the fast path that applies, or
/// the first rule that denies), which is what tells two verdicts on one PR apart.
fn gist(body: &str) -> String {
    let head = first_line(body);
    if !head.starts_with(['✅', '❌']) {
        return head;
    }
    let next = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .nth(1)
        .map(|l| {
            let l = l.trim_start_matches("- ").replace("**", "");
            match l.find(". ") {
                Some(end) => l[..=end].to_owned(),
                None => l,
            }
        });
    match next {
        Some(next) => format!("{head} {next}"),
        None => head,
    }
}

/// The first non-empty line of a comment or commit message, without bold markers: the bot's
/// comments lead with their gist.
fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
        .replace("**", "")
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// For tests of the timeline's wording without running the story.
#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bot_comments_show_their_first_line_without_bold() {
        assert_eq!(
            first_line("\n🔓 **Access granted.** @alice has `prod/admin`.\n\n| | |"),
            "🔓 Access granted. @alice has `prod/admin`."
        );
    }

    #[test]
    fn verdicts_say_what_comes_next() {
        let body = "✅ **Request `r` is allowed** by the `prod` policy: @bob asks for `prod/admin` for 45m.\n\n⚡ Fast path `sev1` applies: merging now. An approver must review this grant within 24h.";
        assert_eq!(
            gist(body),
            "✅ Request `r` is allowed by the `prod` policy: @bob asks for `prod/admin` for 45m. ⚡ Fast path `sev1` applies: merging now."
        );
        assert_eq!(gist("🙅 @alice, no.\n\nmore"), "🙅 @alice, no.");
    }

    #[test]
    fn merges_name_their_commit_and_pushes_are_left_out() {
        let merged = json!({"action": "closed", "number": 2,
            "pull_request": {"merged": true, "merge_commit_sha": "0123456789abcdef"}});
        assert_eq!(
            describe("pull_request", &merged).as_deref(),
            Some("merged PR #2 with merge commit 0123456")
        );
        assert_eq!(describe("push", &json!({"ref": "refs/heads/x"})), None);
    }
}
