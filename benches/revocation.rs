//! `cargo bench --bench revocation`: on-time revocation and memory at 100,000 active grants
//! (issue 10, targets 4 and 6). A benchmark that prints figures, not a timed test.
//!
//! The service runs as it does in production: `breakglass serve` in a child process, on the
//! real clock, with the noop provider, against the test forge on loopback. Its database is
//! seeded through the store's API with what the service itself writes for a merged grant (the
//! active request, its applied-grant record and its revoke job), the requests repo holds every
//! request file on `main` (so reconciliation finds the grants held), and each request's PR
//! is an issue on the test forge (so the requester's "revoked" comment lands).
//!
//! 1. Idle: the service on an empty database; its RSS.
//! 2. 100,000 active grants whose expiries are spread evenly over a window; the service's RSS
//!    before the first expiry, then each grant's revocation lag: its `revoke` event's time
//!    minus its expiry, both on the bot's clock. p50, p99, max.
//! 3. The service is stopped, 10,000 more grants expire while it is down, it is started: the
//!    time from the start until all of them are revoked, and a check that no request has more
//!    than one `revoke` event.
//!
//! SQLite always; PostgreSQL too when `BREAKGLASS_TEST_DATABASE_URL` is set.
//! `BREAKGLASS_BENCH_GRANTS` (default 100,000; 2,000 under `cargo test --benches`),
//! `BREAKGLASS_BENCH_WINDOW_SECS` (default 600; 20) and `BREAKGLASS_BENCH_DOWN_GRANTS`
//! (default 10,000; 500) tune the run; `BREAKGLASS_BENCH_WRAP` runs the service under a
//! profiler (e.g. `heaptrack -o /tmp/serve`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use breakglass::config::{Config, GithubConfig};
use breakglass::names::{Login, Name, RequestId};
use breakglass::request::Reason;
use breakglass::store::{
    AppliedGrant, ForgeKind, JobKind, RequestRecord, RequestState, Store, StoredDecision, applied,
    jobs, requests,
};
use breakglass_test_forge::TestForge;
use chrono::{DateTime, TimeDelta, Utc};

const REPO: &str = "acme/access-requests";
/// Request files are spread over this many environments (one directory listing each).
const ENVIRONMENTS: usize = 10;
/// Rows written per seeding transaction.
const SEED_BATCH: usize = 2_000;

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let plan = Plan {
        grants: env_or(
            "BREAKGLASS_BENCH_GRANTS",
            if benching { 100_000 } else { 2_000 },
        ),
        window: Duration::from_secs(env_or(
            "BREAKGLASS_BENCH_WINDOW_SECS",
            if benching { 600 } else { 20 },
        )),
        down: env_or(
            "BREAKGLASS_BENCH_DOWN_GRANTS",
            if benching { 10_000 } else { 500 },
        ),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        println!(
            "on-time revocation: {} grants expiring over {} s, then {} expiring while the service is down (noop provider)",
            plan.grants,
            plan.window.as_secs(),
            plan.down
        );
        let mut backends = vec![false];
        if std::env::var_os("BREAKGLASS_TEST_DATABASE_URL").is_some() {
            backends.push(true);
        }
        for postgres in backends {
            run(&plan, postgres).await;
        }
    });
}

struct Plan {
    grants: usize,
    window: Duration,
    down: usize,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A fresh database in `dir` (SQLite) or on the test server (PostgreSQL): its URL, and what
/// keeps a PostgreSQL one alive.
async fn database(
    dir: &Path,
    postgres: bool,
) -> (String, Option<breakglass::store::testing::PostgresDatabase>) {
    if !postgres {
        return (format!("sqlite://{}/bench.db", dir.display()), None);
    }
    let (store, db) = breakglass::store::testing::postgres_store()
        .await
        .expect("PostgreSQL at BREAKGLASS_TEST_DATABASE_URL");
    store.close().await;
    (db.url().to_owned(), Some(db))
}

/// The service at rest: a requests repo with its policies only and an empty database, so that
/// its files and its records agree (a repo full of request files that no record holds is not
/// rest: the service removes them).
async fn idle_memory(dir: &Path, postgres: bool) -> Memory {
    let dir = dir.join("idle");
    std::fs::create_dir_all(&dir).unwrap();
    let (url, _database) = database(&dir, postgres).await;
    let world = World::build(&dir, &url, 0, 0).await;
    let mut service = world.serve("idle");
    wait_ready(&mut service, &world).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = memory(service.id());
    stop(service);
    idle
}

async fn run(plan: &Plan, postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    println!("  {}:", if postgres { "postgres" } else { "sqlite" });
    // 1. Idle.
    println!(
        "    RSS idle: {}",
        idle_memory(dir.path(), postgres).await.rss()
    );

    let (url, _database) = database(dir.path(), postgres).await;
    let total = plan.grants + plan.down;
    let started = Instant::now();
    // The files of the grants that expire while the service is down come with their records.
    let world = World::build(dir.path(), &url, plan.grants, total).await;
    eprintln!(
        "    (forge with {total} request files and PRs in {:.1?})",
        started.elapsed()
    );

    // 2. The grants expire over the window while the service runs.
    let store = world.store().await;
    let lead = Duration::from_secs(20) + Duration::from_micros(plan.grants as u64 * 300);
    let first = Utc::now() + TimeDelta::from_std(lead).unwrap();
    let seeding = Instant::now();
    seed(&store, 0..plan.grants, first, plan.window).await;
    eprintln!(
        "    (seeded {} grants in {:.1?})",
        plan.grants,
        seeding.elapsed()
    );
    let mut service = world.serve("window");
    wait_ready(&mut service, &world).await;
    let before_first = first - TimeDelta::seconds(1);
    assert!(
        Utc::now() < before_first,
        "seeding and start took longer than the lead of {lead:?}: raise it"
    );
    sleep_until(before_first).await;
    let loaded = memory(service.id());
    println!(
        "    RSS with {} active grants (before the first expiry): {}",
        plan.grants,
        loaded.rss()
    );
    let done = wait_revoked(
        &store,
        plan.grants,
        first + TimeDelta::from_std(plan.window).unwrap(),
    )
    .await;
    let peak = memory(service.id());
    let lags = lags(&store, 0..plan.grants).await;
    println!(
        "    revocation lag (revoke event − expiry, bot clock) over {} grants: p50 {} ms, p99 {} ms, max {} ms (all revoked {:.1} s after the last expiry)",
        lags.len(),
        percentile(&lags, 50.0),
        percentile(&lags, 99.0),
        lags.last().copied().unwrap_or_default(),
        done.as_secs_f64()
    );
    println!(
        "    RSS after the window: {}; peak (VmHWM) over the run: {}",
        peak.rss(),
        peak.hwm()
    );
    println!(
        "    reverts merged by then (forge lane, behind the revokes): {}",
        count(
            &store,
            "SELECT COUNT(*) AS n FROM events WHERE kind = 'revert'"
        )
        .await
    );
    stop(service);

    // 3. Stopped; more grants expire; started.
    let at = Utc::now() + TimeDelta::seconds(2);
    world.add_request_files(plan.grants..total);
    seed(&store, plan.grants..total, at, Duration::from_secs(2)).await;
    sleep_until(at + TimeDelta::seconds(3)).await;
    let restart = Instant::now();
    let mut service = world.serve("restart");
    wait_ready(&mut service, &world).await;
    let ready = restart.elapsed();
    loop {
        let revoked = revoked_among(&store, plan.grants..total).await;
        if revoked == plan.down {
            break;
        }
        assert!(
            restart.elapsed() < Duration::from_secs(300),
            "{revoked} of {} revoked",
            plan.down
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = restart.elapsed();
    stop(service);
    let twice = count(
        &store,
        "SELECT COUNT(*) AS n FROM (SELECT request_id FROM events WHERE kind = 'revoke' \
         GROUP BY request_id HAVING COUNT(*) > 1) AS twice",
    )
    .await;
    let revokes = count(
        &store,
        "SELECT COUNT(*) AS n FROM events WHERE kind = 'revoke'",
    )
    .await;
    println!(
        "    restart with {} expired while down: all revoked {:.2} s after the start (listening after {:.2} s)",
        plan.down,
        took.as_secs_f64(),
        ready.as_secs_f64()
    );
    println!(
        "    revoke events: {revokes} for {total} grants; requests revoked more than once: {twice}"
    );
    assert_eq!((revokes, twice), (total as i64, 0));
    store.close().await;
}

/// The test forge, the requests repo and the service's config.
struct World {
    forge: TestForge,
    bot: breakglass_test_forge::User,
    listen: std::net::SocketAddr,
    config: PathBuf,
    url: String,
    dir: PathBuf,
}

impl World {
    /// The forge with the request files of grants `0..on_main` on `main` and an issue for each
    /// of grants `0..issues` (the PR numbers of the seeded records), and the service's config.
    async fn build(dir: &Path, url: &str, on_main: usize, issues: usize) -> World {
        let forge = TestForge::start().await;
        let bot = forge.bot_user("breakglass[bot]");
        let alice = forge.user("alice");
        let mut files: Vec<(String, String)> = (0..ENVIRONMENTS)
            .map(|e| (format!("policies/env{e}.yaml"), policy(e)))
            .collect();
        files.extend(request_files(0..on_main));
        let borrowed: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        forge.create_repo(REPO, &borrowed);
        for i in 0..issues {
            let number =
                forge.open_issue(REPO, &alice, &format!("Access request {}", names(i).1), "");
            assert_eq!(number, pr_number(i), "issue numbers follow the grants");
        }
        std::fs::write(dir.join("token"), forge.token_for(&bot)).unwrap();
        std::fs::write(dir.join("secret"), "bench-secret").unwrap();
        // A free port, fixed, so that each start of the service is found at the same address.
        let listen = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let config = Config {
            listen,
            database_url: url.to_owned(),
            github: Some(GithubConfig {
                api_url: forge.api_url(),
                repository: REPO.into(),
                token_file: Some(dir.join("token")),
                webhook_secret_file: Some(dir.join("secret")),
                ..GithubConfig::default()
            }),
            ..Config::default()
        };
        let path = dir.join("breakglass.toml");
        std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
        World {
            forge,
            bot,
            listen,
            config: path,
            url: url.to_owned(),
            dir: dir.to_owned(),
        }
    }

    /// The request files of `grants`, pushed to `main` as the bot's merges would have put them.
    fn add_request_files(&self, grants: std::ops::Range<usize>) {
        let files = request_files(grants);
        let borrowed: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        self.forge.push_direct(
            REPO,
            &self.bot,
            &borrowed,
            "grants merged while the service was down",
        );
    }

    async fn store(&self) -> Store {
        let store = Store::connect(&self.url).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// `breakglass serve` in a child process; its log goes to `<dir>/<name>.log`.
    fn serve(&self, name: &str) -> Child {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        // A profiler around the service (e.g. `heaptrack -o /tmp/serve`), for finding what
        // holds its memory; the RSS figures are then the profiler's, not the service's.
        let mut command = match std::env::var("BREAKGLASS_BENCH_WRAP") {
            Ok(wrap) if !wrap.trim().is_empty() => {
                let mut words = wrap.split_whitespace();
                let mut command = Command::new(words.next().unwrap_or_default());
                command.args(words).arg(env!("CARGO_BIN_EXE_breakglass"));
                command
            }
            _ => Command::new(env!("CARGO_BIN_EXE_breakglass")),
        };
        command
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("breakglass serve starts")
    }
}

/// `(path, text)` of the request file of each of `grants`.
fn request_files(grants: std::ops::Range<usize>) -> Vec<(String, String)> {
    grants
        .map(|i| {
            let (env, id) = names(i);
            (format!("requests/{env}/{id}.yaml"), request_file(&env))
        })
        .collect()
}

/// `(environment, id)` of grant `i`.
fn names(i: usize) -> (String, String) {
    (format!("env{}", i % ENVIRONMENTS), format!("g{i:06}"))
}

fn pr_number(i: usize) -> u64 {
    i as u64 + 1
}

fn policy(e: usize) -> String {
    format!(
        "environment: env{e}\nmax_duration: 4h\ndefault_duration: 1h\nrequesters: [alice]\n\
         approvers: [carol]\napprovals: 1\nroles:\n  admin:\n    provider: noop\n"
    )
}

fn request_file(env: &str) -> String {
    format!("environment: {env}\nrole: admin\nduration: 1h\nreason: \"incident: bench\"\n")
}

/// Grants `range`, expiring evenly over `window` from `first`, as the service writes a merged
/// grant: the active request, what it applied, its revoke job at the expiry.
async fn seed(
    store: &Store,
    range: std::ops::Range<usize>,
    first: DateTime<Utc>,
    window: Duration,
) {
    let count = range.len().max(1) as f64;
    let now = Utc::now();
    let indexes: Vec<usize> = range.clone().collect();
    for batch in indexes.chunks(SEED_BATCH) {
        let mut tx = store.pool().begin().await.unwrap();
        for &i in batch {
            let offset = window.as_secs_f64() * (i - range.start) as f64 / count;
            let expires_at = first + TimeDelta::milliseconds((offset * 1000.0) as i64);
            let record = grant(i, now, expires_at);
            requests::insert_request(&mut tx, &record).await.unwrap();
            applied::plan_grant(
                &mut tx,
                &AppliedGrant {
                    request_id: record.id.clone(),
                    provider: "noop".into(),
                    role: serde_json::from_value(serde_json::json!({"provider": "noop"})).unwrap(),
                    files: Vec::new(),
                    request_blob: None,
                    applied_at: now,
                },
            )
            .await
            .unwrap();
            jobs::schedule_job(&mut tx, JobKind::Revoke, &record.id, expires_at, now)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
}

fn grant(i: usize, now: DateTime<Utc>, expires_at: DateTime<Utc>) -> RequestRecord {
    let (env, id) = names(i);
    let duration = (expires_at - now).num_seconds().max(1) as u64;
    RequestRecord {
        id: RequestId::try_from(id).unwrap(),
        forge: ForgeKind::GitHub,
        repository: REPO.into(),
        pr_number: pr_number(i),
        environment: Name::try_from(env.clone()).unwrap(),
        role: Name::try_from("admin".to_owned()).unwrap(),
        requester_login: Login::try_from("alice".to_owned()).unwrap(),
        requester_id: 1001,
        duration_secs: duration,
        reason: Reason::try_from("incident: bench".to_owned()).unwrap(),
        ticket: None,
        state: RequestState::Active,
        head_sha: "1111111111111111111111111111111111111111".into(),
        decision: Some(decision(env.as_str())),
        fast_path_rule: None,
        approved_by: Some(vec![Login::try_from("carol".to_owned()).unwrap()]),
        merge_sha: Some("2222222222222222222222222222222222222222".into()),
        granted_at: Some(now - TimeDelta::seconds(1)),
        expires_at: Some(expires_at),
        revert_pr_number: None,
        revoked_at: None,
        revoke_reason: None,
        revoked_by: None,
        review_due_at: None,
        reviewed_by: None,
        reviewed_at: None,
        total_secs: duration,
        created_at: now,
        updated_at: now,
        version: 1,
    }
}

/// A stored decision as the policy engine leaves it on an allowed request.
fn decision(env: &str) -> StoredDecision {
    serde_json::from_value(serde_json::json!({
        "decision": {
            "allowed": true, "environment": env, "role": "admin", "requester": "alice",
            "duration": "1h", "duration_defaulted": false, "violations": [], "unchecked": [],
            "approvals_required": 1, "approvers": ["carol"], "approval_reactions": ["+1"],
            "fast_path_misses": []
        },
        "head_since": null
    }))
    .expect("a stored decision")
}

/// Waits until the service listens (it has migrated and connected to the forge by then).
async fn wait_ready(service: &mut Child, world: &World) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = service.try_wait() {
            panic!("breakglass serve exited: {status}");
        }
        if tokio::net::TcpStream::connect(world.listen).await.is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "breakglass serve did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Graceful stop (SIGTERM), as a deploy does.
fn stop(mut service: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &service.id().to_string()])
        .status();
    let _ = service.wait();
}

async fn sleep_until(at: DateTime<Utc>) {
    if let Ok(wait) = (at - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
}

/// Waits until `n` grants are revoked; how long after `last_expiry` that was.
async fn wait_revoked(store: &Store, n: usize, last_expiry: DateTime<Utc>) -> Duration {
    loop {
        let revoked = count(
            store,
            "SELECT COUNT(*) AS n FROM events WHERE kind = 'revoke'",
        )
        .await;
        if revoked as usize >= n {
            return (Utc::now() - last_expiry).to_std().unwrap_or_default();
        }
        assert!(
            Utc::now() < last_expiry + TimeDelta::minutes(10),
            "only {revoked} of {n} revoked 10 minutes after the last expiry"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Revocation lags of grants `range` in milliseconds, sorted.
async fn lags(store: &Store, range: std::ops::Range<usize>) -> Vec<i64> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT r.id, e.at, r.expires_at FROM events e JOIN requests r ON r.id = e.request_id \
         WHERE e.kind = 'revoke'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let wanted: std::collections::HashSet<String> = range.map(|i| names(i).1).collect();
    let mut lags: Vec<i64> = rows
        .into_iter()
        .filter(|(id, _, _)| wanted.contains(id))
        .map(|(_, at, expires)| at - expires)
        .collect();
    lags.sort_unstable();
    lags
}

async fn revoked_among(store: &Store, range: std::ops::Range<usize>) -> usize {
    let first = names(range.start).1;
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT request_id FROM events WHERE kind = 'revoke' AND request_id >= $1")
            .bind(first)
            .fetch_all(store.pool())
            .await
            .unwrap();
    rows.len()
}

async fn count(store: &Store, sql: &'static str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(store.pool()).await.unwrap();
    n
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// VmRSS and VmHWM of a process, from /proc.
struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
}

impl Memory {
    fn rss(&self) -> String {
        format!("{:.1} MB", self.rss_kib as f64 / 1024.0)
    }

    fn hwm(&self) -> String {
        format!("{:.1} MB", self.hwm_kib as f64 / 1024.0)
    }
}

fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    Memory {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
    }
}
