//! `cargo bench --bench access`: time to access on the bot's side, and what a lifecycle costs
//! in forge calls. The real service (SQLite file; PostgreSQL too, below) against the test forge on loopback, GitHub
//! dialect, one shared manual clock that only the lifecycle part moves.
//!
//! - **Time to access**: an on-call engineer comments `/breakglass oncall 1h -- …` on an issue;
//!   a fast-path rule grants it. Measured from the start of the `issue_comment` webhook's POST
//!   to the end of the first comment on the request PR after its merge (the expiry comment),
//!   one request at a time, with zero added forge latency and with 50 ms per API call. Also the
//!   **sequential** forge round trips in that window (calls made concurrently count once), and
//!   how many of them come before the merge.
//! - **Time from an approval**: a request that needs an approver (2h, past the fast path's
//!   1h) is open; an approver submits an approving review. Measured from the start of the
//!   `pull_request_review` webhook's POST to the end of the expiry comment, with the same
//!   sequential round trips (target ≤ 3: merge, grant, comment).
//! - **API cost**: one full lifecycle (comment → grant → expiry → revert merged), calls counted
//!   by the forge, split into rate-limited and free (304); once as a repository comes, once
//!   with GitHub's "Automatically delete head branches" on.
//!
//! - **Polling cost**: pending requests awaiting an emoji approval on GitHub (which sends no
//!   webhook for reactions), one simulated hour at the default poll interval: rate-limited
//!   requests per hour, and how long after a 👍 the bot noticed it (simulated time, 1 s steps).
//!
//! `BREAKGLASS_BENCH_REQUESTS` (default 1000; 10 under `cargo test --benches`),
//! `BREAKGLASS_BENCH_SLOW_REQUESTS` (default 1000, about six minutes at 50 ms a call; 2) and `BREAKGLASS_BENCH_PENDING` (default
//! 1000; 10) set the sample sizes;
//! `BREAKGLASS_BENCH_PARTS=access,lifecycle,polling` (the default) chooses the parts;
//! `BREAKGLASS_BENCH_TRACE=1` prints every critical-path call of every request.
//!
//! With `BREAKGLASS_TEST_DATABASE_URL` set (a PostgreSQL server, as for the tests), the time
//! to access is measured on PostgreSQL as well, right after SQLite in the same run: there the
//! service also takes each PR's lock row across replicas.

use std::sync::Arc;
use std::time::{Duration, Instant};

use breakglass::clock::{Clock, ManualClock};
use breakglass::service::standalone::{REPO, SECRET, Setup, Standalone};
use breakglass::store::Store;
use breakglass::store::testing::{PostgresDatabase, postgres_store};
use breakglass_test_forge::{Span, SpanKind, TestForge, User, sequential_round_trips};
use chrono::{TimeDelta, TimeZone, Utc};

/// How a request of the steady stream is asked for (the flow's two forms).
#[derive(Clone, Copy)]
enum RequestForm {
    /// `/breakglass oncall 1h -- …` on an issue: the bot opens the PR.
    Comment,
    /// The requester opens a PR adding the request file.
    PullRequest,
}

/// Requesters take turns, so no one hits `max_open_requests`, and in the steady stream each
/// one's grant has ended when their turn comes again (13 × `STEADY_EVERY` > `STEADY_GRANT`):
/// a fast path is never given to someone still holding access past the rule's `max_duration`
/// in total.
const REQUESTERS: usize = 13;

/// How long each grant of the steady stream lasts.
const STEADY_GRANT: &str = "1h";

/// The steady stream of the API cost part: this many lifecycles, one every `STEADY_EVERY`.
const STEADY_LIFECYCLES: usize = 24;
const STEADY_EVERY: TimeDelta = TimeDelta::minutes(5);

const POLICY: &str = "\
environment: oncall
max_duration: 8h
requesters: [\"@acme/oncall\"]
approvers: [\"@acme/sre\"]
approvals: 1
roles:
  admin:
    provider: noop
    description: Administrator access for the on-call engineer
fast_path:
  - name: oncall
    requesters: [\"@acme/oncall\"]
    max_duration: 1h
";

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let requests: usize = env_or(
        "BREAKGLASS_BENCH_REQUESTS",
        if benching { 1000 } else { 10 },
    );
    let slow: usize = env_or(
        "BREAKGLASS_BENCH_SLOW_REQUESTS",
        if benching { 1000 } else { 2 },
    );
    let pending: usize = env_or("BREAKGLASS_BENCH_PENDING", if benching { 1000 } else { 10 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let parts = std::env::var("BREAKGLASS_BENCH_PARTS")
        .unwrap_or_else(|_| "access,lifecycle,polling".into());
    let part = |name: &str| parts.split(',').any(|p| p.trim() == name);
    runtime.block_on(async {
        if part("access") {
            time_to_access(requests, slow).await;
        }
        if part("lifecycle") {
            // As GitHub repositories come, and with "Automatically delete head branches" on.
            for deletes_merged in [false, true] {
                let world = World::start(Duration::ZERO).await;
                world
                    .forge()
                    .set_delete_branch_on_merge(REPO, deletes_merged);
                world.lifecycle_cost(deletes_merged).await;
            }
            for form in [RequestForm::Comment, RequestForm::PullRequest] {
                let world = World::start(Duration::ZERO).await;
                world.forge().set_delete_branch_on_merge(REPO, true);
                world.steady_cost(STEADY_LIFECYCLES, form).await;
            }
        }
        if part("polling") {
            World::start(Duration::ZERO)
                .await
                .polling_cost(pending)
                .await;
        }
    });
}

/// Where the service keeps its records.
#[derive(Clone, Copy, PartialEq)]
enum Database {
    Sqlite,
    Postgres,
}

/// The first part: time to access with no added latency and with 50 ms per call, on SQLite
/// and, when a server is given, on PostgreSQL.
async fn time_to_access(requests: usize, slow: usize) {
    time_to_access_on(Database::Sqlite, requests, slow).await;
    if std::env::var_os(breakglass::store::testing::DATABASE_URL_VAR).is_some() {
        time_to_access_on(Database::Postgres, requests, slow).await;
    }
}

async fn time_to_access_on(database: Database, requests: usize, slow: usize) {
    let name = match database {
        Database::Sqlite => "SQLite",
        Database::Postgres => "PostgreSQL",
    };
    println!("time to access (fast path, /breakglass comment → expiry comment), {name}:");
    for (latency, count) in [
        (Duration::ZERO, requests),
        (Duration::from_millis(50), slow),
    ] {
        let world = World::start_on(database, latency).await;
        // A first request of each requester warms the bot's caches (policies, the default
        // branch's head, each requester's team membership for its minute).
        for i in 0..REQUESTERS {
            world.request(i).await;
        }
        let mut samples = Vec::new();
        for i in REQUESTERS..REQUESTERS + count {
            samples.push(world.request(i).await);
        }
        report(latency, &samples);
    }
    println!("time from an approving review to the expiry comment, {name}:");
    for (latency, count) in [
        (Duration::ZERO, requests.div_ceil(10)),
        (Duration::from_millis(50), slow.div_ceil(10)),
    ] {
        let world = World::start_on(database, latency).await;
        world.approved_request(0).await;
        let mut samples = Vec::new();
        for i in 1..=count {
            samples.push(world.approved_request(i).await);
        }
        report(latency, &samples);
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one request measured.
struct Sample {
    elapsed: Duration,
    round_trips: usize,
    before_merge: usize,
}

fn report(latency: Duration, samples: &[Sample]) {
    let mut times: Vec<Duration> = samples.iter().map(|s| s.elapsed).collect();
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    let trips: Vec<usize> = samples.iter().map(|s| s.round_trips).collect();
    let before: Vec<usize> = samples.iter().map(|s| s.before_merge).collect();
    println!(
        "  {:>3} ms added per call: p50 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms  ({} requests); sequential round trips {}–{} ({}–{} before the merge)",
        latency.as_millis(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        samples.len(),
        trips.iter().min().unwrap(),
        trips.iter().max().unwrap(),
        before.iter().min().unwrap(),
        before.iter().max().unwrap(),
    );
}

/// The forge, the service and the people.
struct World {
    service: Standalone,
    clock: ManualClock,
    store: Store,
    requesters: Vec<User>,
    issue: u64,
    /// The PostgreSQL database, given back when the world ends.
    _database: Option<PostgresDatabase>,
}

impl World {
    async fn start(latency: Duration) -> World {
        World::start_on(Database::Sqlite, latency).await
    }

    async fn start_on(database: Database, latency: Duration) -> World {
        let start = Utc.with_ymd_and_hms(2026, 12, 2, 2, 0, 0).unwrap();
        let clock = ManualClock::new(start);
        let postgres = match database {
            Database::Sqlite => None,
            Database::Postgres => {
                let (store, database) = postgres_store().await.expect("a PostgreSQL server");
                store.close().await;
                Some(database)
            }
        };
        let setup = Setup {
            database_url: postgres.as_ref().map(|db| db.url().to_owned()),
            files: &[("policies/oncall.yaml", POLICY)],
            // The polling part keeps a thousand requests open from a few people.
            configure: |config| config.max_open_requests = 100_000,
            ..Setup::default()
        };
        let shared = Arc::new(clock.clone()) as Arc<dyn Clock>;
        let service = Standalone::start_with(setup, shared, Duration::from_millis(20)).await;
        let forge = &service.forge;
        forge.advance_clock(start - forge.now());
        let requesters: Vec<User> = (0..REQUESTERS)
            .map(|i| forge.user(&format!("oncall-{i}")))
            .collect();
        for user in &requesters {
            forge.add_team_member("acme/oncall", user);
        }
        forge.add_team_member("acme/sre", &forge.user("carol"));
        forge.add_webhook(
            &format!("http://{}/webhooks/github", service.addr()),
            SECRET,
        );
        let issue = forge.open_issue(REPO, &requesters[0], "prod is on fire", "");
        let store = Store::connect(&service.database_url())
            .await
            .expect("the store opens");
        let world = World {
            service,
            clock,
            store,
            requesters,
            issue,
            _database: postgres,
        };
        world.settle().await;
        world.forge().set_latency(latency);
        world
    }

    fn forge(&self) -> &TestForge {
        &self.service.forge
    }

    /// The most recently opened PR.
    fn latest_pr(&self) -> u64 {
        self.forge()
            .prs(REPO)
            .into_iter()
            .map(|p| p.number)
            .max()
            .expect("a PR")
    }

    /// Request number `i`, from the comment to the expiry comment; waits for the bot to finish
    /// everything that follows (the revert PR) before returning, so requests do not overlap.
    async fn request(&self, i: usize) -> Sample {
        let user = &self.requesters[i % REQUESTERS];
        self.forge().take_timeline();
        self.forge().record_timeline(true);
        self.forge().comment(
            REPO,
            self.issue,
            user,
            &format!("/breakglass oncall 1h -- incident {i}"),
        );
        self.settle().await;
        self.forge().record_timeline(false);
        let spans = self.forge().take_timeline();
        let sample =
            measure(&spans, "issue_comment").unwrap_or_else(|why| panic!("request {i}: {why}"));
        // Revoke it now, off the clock, so the requester can ask again.
        let pr = self.latest_pr();
        self.forge().comment(REPO, pr, user, "/breakglass revoke");
        self.settle().await;
        sample
    }

    /// Request number `i` asked for longer than the fast path allows, opened and pending
    /// (off the clock); then measured from the approver's review to the expiry comment.
    async fn approved_request(&self, i: usize) -> Sample {
        let user = &self.requesters[i % REQUESTERS];
        self.forge().comment(
            REPO,
            self.issue,
            user,
            &format!("/breakglass oncall 2h -- incident {i}"),
        );
        self.settle().await;
        let pr = self.latest_pr();
        assert!(!self.forge().pr(REPO, pr).merged, "pending until approved");
        self.forge().take_timeline();
        self.forge().record_timeline(true);
        let carol = self.forge().user("carol");
        self.forge().review(
            REPO,
            pr,
            &carol,
            breakglass_test_forge::ReviewState::Approved,
        );
        self.settle().await;
        self.forge().record_timeline(false);
        let spans = self.forge().take_timeline();
        let sample = measure(&spans, "pull_request_review")
            .unwrap_or_else(|why| panic!("approved request {i}: {why}"));
        self.forge().comment(REPO, pr, user, "/breakglass revoke");
        self.settle().await;
        sample
    }

    /// One request from comment to revert merged at expiry, calls counted; `deletes_merged`:
    /// the repository deletes merged head branches.
    async fn lifecycle_cost(&self, deletes_merged: bool) {
        let user = &self.requesters[0];
        let trace = std::env::var_os("BREAKGLASS_BENCH_TRACE").is_some();
        self.forge().take_timeline();
        self.forge().record_timeline(trace);
        self.forge().reset_calls();
        self.forge()
            .comment(REPO, self.issue, user, "/breakglass oncall 1h -- incident");
        self.settle().await;
        let granted = self.forge().calls();
        self.advance(TimeDelta::minutes(61));
        self.settle().await;
        let total = self.forge().calls();
        let pr = self.latest_pr();
        assert!(self.forge().pr(REPO, pr).merged, "the revert PR was merged");
        println!(
            "forge API cost of one lifecycle (/breakglass comment → revert merged at expiry){}:",
            if deletes_merged {
                ", the repository deleting merged head branches"
            } else {
                ""
            }
        );
        println!(
            "  {} calls: {} rate-limited, {} free (304); {} of them up to the grant",
            total.total, total.rate_limited_cost, total.not_modified, granted.total
        );
        self.forge().record_timeline(false);
        for span in self.forge().take_timeline() {
            if let SpanKind::Api { method, path, .. } = &span.kind {
                println!("      {} {method} {path}", span.status);
            }
        }
        let mut routes: Vec<_> = total.by_route.iter().collect();
        routes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for ((method, route), n) in routes {
            println!("    {n:>3} {method} {route}");
        }
    }

    /// `lifecycles` requests, one every [`STEADY_EVERY`] of simulated time, each granted for
    /// [`STEADY_GRANT`] on the fast path and revoked at its expiry (the repository deleting merged
    /// branches): every call of the whole stretch, periodic passes included, per lifecycle.
    /// What a lone lifecycle pays once for a cold start or for an hour of clock (the team
    /// membership, the default branch's head and name, the hourly passes) is shared here as
    /// a steady stream of requests shares it.
    async fn steady_cost(&self, lifecycles: usize, form: RequestForm) {
        self.forge().reset_calls();
        let before = self.forge().prs(REPO).len();
        for i in 0..lifecycles {
            let user = &self.requesters[i % REQUESTERS];
            match form {
                RequestForm::Comment => {
                    let body = format!("/breakglass oncall {STEADY_GRANT} -- steady {i}");
                    self.forge().comment(REPO, self.issue, user, &body);
                }
                RequestForm::PullRequest => self.open_request_pr(user, i),
            }
            self.settle().await;
            self.advance(STEADY_EVERY);
            self.settle().await;
        }
        // The stream ends but the clock goes on as it did: every grant reminded and revoked
        // at its own time (one jump past them all would skip the reminders that fall in it).
        let mut waited = TimeDelta::zero();
        while waited <= TimeDelta::minutes(60) {
            self.advance(STEADY_EVERY);
            self.settle().await;
            waited += STEADY_EVERY;
        }
        let prs = self.forge().prs(REPO);
        let merged = prs[before..].iter().filter(|p| p.merged).count();
        assert_eq!(merged, 2 * lifecycles, "every request and revert PR merged");
        let calls = self.forge().calls();
        let per = |n: u64| n as f64 / lifecycles as f64;
        println!(
            "forge API cost per lifecycle, {lifecycles} {} one every {} min (deleting merged branches):",
            match form {
                RequestForm::Comment => "requests by /breakglass comment",
                RequestForm::PullRequest => "requests opened as PRs",
            },
            STEADY_EVERY.num_minutes()
        );
        println!(
            "  {:.1} calls: {:.2} rate-limited, {:.1} free (304); {} rate-limited in all",
            per(calls.total),
            per(calls.rate_limited_cost),
            per(calls.not_modified),
            calls.rate_limited_cost
        );
        println!("    calls  rate-limited  route");
        let mut routes: Vec<_> = calls.by_route.iter().collect();
        routes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for ((method, route), n) in routes {
            let limited = calls.rate_limited(method, route);
            println!("    {n:>5}  {limited:>12}  {method} {route}");
        }
    }

    /// The requester's own PR adding request number `i` (the first form of the flow).
    fn open_request_pr(&self, user: &User, i: usize) {
        let id = format!("steady-pr-{i}");
        let branch = format!("request-{id}");
        let yaml = format!(
            "environment: oncall\nrole: admin\nduration: {STEADY_GRANT}\nreason: steady {i}\nrequester: {}\n",
            user.login
        );
        let path = format!("requests/oncall/{id}.yaml");
        self.forge()
            .push_files(REPO, &branch, user, &[(&path, &yaml)], "request");
        self.forge()
            .open_pr(REPO, user, &branch, &format!("Access request {id}"), "");
    }

    /// `pending` requests waiting for approval, one simulated hour of polling, and a 👍 on
    /// one in ten of them at spread times.
    async fn polling_cost(&self, pending: usize) {
        // 2h is past the fast path's 1h: each waits for an approver.
        for i in 0..pending {
            let user = &self.requesters[i % REQUESTERS];
            let body = format!("/breakglass oncall 2h -- waiting {i}");
            self.forge().comment(REPO, self.issue, user, &body);
        }
        self.settle_within(Duration::from_secs(1800)).await;
        let prs: Vec<u64> = self
            .forge()
            .prs(REPO)
            .into_iter()
            .filter(|p| p.state == "open")
            .map(|p| p.number)
            .collect();
        assert_eq!(prs.len(), pending, "every request is open and pending");
        let carol = self.forge().user("carol");
        // One in ten approved, spread over the hour and off the polls' phase.
        let every = 3600 / (pending / 10).max(1);
        let mut schedule: Vec<(usize, u64)> = prs
            .iter()
            .step_by(10)
            .enumerate()
            .map(|(k, &pr)| (k * every + (k * 11) % every.clamp(1, 29), pr))
            .collect();
        schedule.reverse();
        let (mut waiting, mut noticed) = (Vec::new(), Vec::new());
        self.forge().reset_calls();
        // The calls made so far, at each simulated second: for the busiest minute.
        let mut made = vec![0];
        for second in 0..3600 {
            while schedule.last().is_some_and(|&(at, _)| at == second) {
                let (_, pr) = schedule.pop().unwrap();
                self.forge().react(REPO, pr, &carol, "+1");
                waiting.push((pr, second));
            }
            self.advance(TimeDelta::seconds(1));
            self.settle().await;
            waiting.retain(|&(pr, at)| {
                let merged = self.forge().pr(REPO, pr).merged;
                if merged {
                    noticed.push(second + 1 - at);
                }
                !merged
            });
            made.push(self.forge().calls().total);
        }
        let busiest = made.windows(61).map(|w| w[60] - w[0]).max().unwrap_or(0);
        let calls = self.forge().calls();
        noticed.sort();
        let at = |q: f64| noticed[((noticed.len() as f64 * q) as usize).min(noticed.len() - 1)];
        println!("polling {pending} pending requests for one simulated hour (GitHub, ETags):");
        println!(
            "  {} requests ({:.0} a minute, {} in the busiest minute): {} rate-limited, {} free (304); a 👍 noticed after p50 {} s, p99 {} s, max {} s ({} approvals, {} not noticed)",
            calls.total,
            calls.total as f64 / 60.0,
            busiest,
            calls.rate_limited_cost,
            calls.not_modified,
            at(0.50),
            at(0.99),
            noticed[noticed.len() - 1],
            noticed.len(),
            waiting.len(),
        );
    }

    fn advance(&self, by: TimeDelta) {
        self.clock.advance(by);
        self.forge().advance_clock(by);
    }

    /// Until the forge sent every webhook and the bot has no pending delivery or due job.
    async fn settle(&self) {
        self.settle_within(Duration::from_secs(60)).await;
    }

    /// [`Self::settle`], waiting at most `limit` (a thousand requests take a while).
    async fn settle_within(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut quiet = 0;
        while quiet < 3 {
            assert!(Instant::now() < deadline, "the bot did not settle");
            self.forge().settle().await;
            let jobs = self.store.overdue_jobs(self.clock.now()).await.unwrap();
            let (pending,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM deliveries WHERE state = 'pending'")
                    .fetch_one(self.store.pool())
                    .await
                    .unwrap();
            // A clock moved past a reconciliation pass leaves it to come (its worker looks at
            // the clock every tick): counted calls would then depend on the tick.
            let reconciled = self
                .service
                .running
                .reconciliation
                .caught_up(self.clock.now());
            quiet = if jobs.is_empty() && pending == 0 && reconciled {
                quiet + 1
            } else {
                0
            };
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Time and round trips from the first webhook of `event` to the first comment on the request
/// PR after its merge.
fn measure(spans: &[Span], event: &str) -> Result<Sample, String> {
    let webhook = spans
        .iter()
        .find(|s| matches!(&s.kind, SpanKind::Webhook { event: e } if e == event))
        .ok_or(format!("no {event} webhook"))?;
    let merge = spans
        .iter()
        .find(|s| s.is_call("PUT", "/repos/{owner}/{repo}/pulls/{number}/merge") && s.status == 200)
        .ok_or("no merge")?;
    let pr_path = api_path(merge)
        .trim_end_matches("/merge")
        .replace("/pulls/", "/issues/");
    let comment = spans
        .iter()
        .filter(|s| s.started >= merge.finished)
        .find(|s| {
            s.is_call("POST", "/repos/{owner}/{repo}/issues/{number}/comments")
                && api_path(s) == format!("{pr_path}/comments")
        })
        .ok_or("no comment after the merge")?;
    let window = |end: std::time::Instant| -> Vec<Span> {
        spans
            .iter()
            .filter(|s| matches!(s.kind, SpanKind::Api { .. }))
            .filter(|s| s.started >= webhook.started && s.finished <= end)
            .cloned()
            .collect()
    };
    if std::env::var_os("BREAKGLASS_BENCH_TRACE").is_some() {
        for span in window(comment.finished) {
            let at = span.started - webhook.started;
            if let SpanKind::Api { method, path, .. } = &span.kind {
                println!("      {:>7.1} ms  {method} {path}", at.as_secs_f64() * 1e3);
            }
        }
    }
    Ok(Sample {
        elapsed: comment.finished - webhook.started,
        round_trips: sequential_round_trips(&window(comment.finished)),
        before_merge: sequential_round_trips(&window(merge.started)),
    })
}

fn api_path(span: &Span) -> &str {
    match &span.kind {
        SpanKind::Api { path, .. } => path,
        SpanKind::Webhook { .. } => "",
    }
}
