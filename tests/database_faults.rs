//! The database goes away for a while (PostgreSQL refusing this service's database): `/readyz`
//! says so, intake answers 503 (the forge redelivers) and acknowledges nothing it did not
//! store; when the database is back, intake and the workers resume and nothing acknowledged
//! before the outage is lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use breakglass::clock::{Clock, SystemClock};
use breakglass::service::standalone::{REPO, SECRET, Setup, Standalone};
use breakglass::store::Store;

/// A signed `issue_comment` delivery for our repository with delivery id `id`.
async fn deliver(client: &reqwest::Client, addr: std::net::SocketAddr, id: &str) -> u16 {
    let body = serde_json::to_vec(&serde_json::json!({
        "action": "created",
        "issue": {"number": 1, "user": {"id": 1, "login": "alice", "type": "User"}},
        "comment": {"id": 1, "body": "looks good", "user": {"id": 1, "login": "alice", "type": "User"}, "created_at": "2026-12-02T00:00:00Z"},
        "repository": {"full_name": REPO},
        "sender": {"id": 1, "login": "alice", "type": "User"}
    }))
    .unwrap();
    let signature = breakglass_test_forge::sign_webhook(SECRET, &body);
    client
        .post(format!("http://{addr}/webhooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "issue_comment")
        .header("x-github-delivery", id)
        .header("x-hub-signature-256", signature)
        .body(body)
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn ready(client: &reqwest::Client, addr: std::net::SocketAddr) -> u16 {
    client
        .get(format!("http://{addr}/readyz"))
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Waits (up to `secs`) until `/readyz` answers 200 again.
async fn until_ready(client: &reqwest::Client, addr: std::net::SocketAddr, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while ready(client, addr).await != 200 {
        assert!(Instant::now() < deadline, "/readyz did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Another connection that takes SQLite's write lock (`BEGIN IMMEDIATE`) and holds it until
/// it is rolled back, as a backup tool or an operator's shell would.
async fn hold_the_write_lock(url: &str) -> sqlx::AnyConnection {
    let mut other = <sqlx::AnyConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    other
}

async fn done_deliveries(store: &Store) -> i64 {
    let (done,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM deliveries WHERE state = 'done'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    done
}

/// Waits (up to 60 s) until `n` deliveries are handled, then checks that `n` are stored: each
/// acknowledged or redelivered one exactly once.
async fn handled_once_each(store: &Store, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = done_deliveries(store).await;
        let (all,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM deliveries")
            .fetch_one(store.pool())
            .await
            .unwrap();
        if done == n {
            assert_eq!(all, n, "each delivery stored once");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the workers did not get through ({done} of {all} done)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Turns connections to `database` off (and ends the open ones) or back on.
async fn allow_connections(admin: &Store, database: &str, allow: bool) {
    // The name is the test's own slot, `breakglass_pool_<hex>_<n>`: safe to splice.
    assert!(
        database
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    );
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS {allow}"
    )))
    .execute(admin.pool())
    .await
    .unwrap();
    if !allow {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(database)
        .execute(admin.pool())
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_gets_503s_loses_nothing_acknowledged_and_work_resumes() {
    let Some((store, db)) = breakglass::store::testing::postgres_store().await else {
        eprintln!("SKIPPED: BREAKGLASS_TEST_DATABASE_URL is not set");
        return;
    };
    let server = std::env::var(breakglass::store::testing::DATABASE_URL_VAR).unwrap();
    let admin = Store::connect(&server).await.unwrap();
    let database = db
        .url()
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();

    let clock = Arc::new(SystemClock) as Arc<dyn Clock>;
    let service =
        Standalone::start(Some(db.url().to_owned()), clock, Duration::from_millis(50)).await;
    let running = service.running;
    let addr = running.addr;
    let client = reqwest::Client::new();
    assert_eq!(ready(&client, addr).await, 200);
    assert_eq!(deliver(&client, addr, "before-outage").await, 202);
    // Handled before the outage: a delivery a worker holds when the database goes away
    // waits for its lease to lapse (2 s once the heartbeat cannot renew it), which this story
    // does not wait for.
    handled_once_each(&store, 1).await;

    allow_connections(&admin, &database, false).await;
    assert_eq!(
        ready(&client, addr).await,
        503,
        "/readyz reflects the outage"
    );
    let during = deliver(&client, addr, "during-outage").await;
    assert_eq!(during, 503, "nothing is acknowledged that was not stored");

    allow_connections(&admin, &database, true).await;
    until_ready(&client, addr, 60).await;
    // The forge redelivers what got a 503.
    assert_eq!(deliver(&client, addr, "during-outage").await, 202);
    handled_once_each(&store, 2).await;
    running.shutdown().await;
}

/// SQLite's variant: another process holds the write lock (a backup tool, an operator's
/// `sqlite3` shell in a transaction). Reads still work, so `/readyz` probes a write; intake
/// answers 503 once its write times out, and everything resumes when the lock is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_database_gets_503s_loses_nothing_acknowledged_and_work_resumes() {
    let clock = Arc::new(SystemClock) as Arc<dyn Clock>;
    let service = Standalone::start(None, clock, Duration::from_millis(50)).await;
    let url = service.database_url();
    let store = Store::connect(&url).await.unwrap();
    let addr = service.running.addr;
    let client = reqwest::Client::new();
    assert_eq!(ready(&client, addr).await, 200);
    assert_eq!(deliver(&client, addr, "before-lock").await, 202);
    handled_once_each(&store, 1).await;

    let mut other = hold_the_write_lock(&url).await;
    let other = &mut other;
    assert_eq!(
        ready(&client, addr).await,
        503,
        "/readyz reflects that nothing can be written"
    );
    let during = deliver(&client, addr, "during-lock").await;
    assert_eq!(during, 503, "nothing is acknowledged that was not stored");

    sqlx::query("ROLLBACK").execute(&mut *other).await.unwrap();
    until_ready(&client, addr, 30).await;
    // The forge redelivers what got a 503. The write that timed out may have committed after
    // the lock went (a late commit of what was refused is harmless): then it is a duplicate.
    let again = deliver(&client, addr, "during-lock").await;
    assert!(matches!(again, 202 | 200), "redelivered: {again}");
    handled_once_each(&store, 2).await;
    let Standalone { running, .. } = service;
    running.shutdown().await;
}

/// A forge does not send a refused delivery again on its own: a request PR whose webhook got a
/// 503 while the database was locked is found by the catch-up once intake stores again, and
/// answered without waiting for its next event or a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_pr_whose_webhook_was_refused_is_caught_up_when_the_database_is_back() {
    let clock = Arc::new(SystemClock) as Arc<dyn Clock>;
    let service = Standalone::start(None, clock, Duration::from_millis(50)).await;
    let url = service.database_url();
    let addr = service.running.addr;
    let forge = &service.forge;
    forge.add_webhook(&format!("http://{addr}/webhooks/github"), SECRET);
    let client = reqwest::Client::new();
    let mut other = hold_the_write_lock(&url).await;
    let other = &mut other;
    let alice = forge.user("alice");
    let yaml =
        "environment: prod\nrole: admin\nduration: 1h\nreason: \"incident: INC-1 db down\"\n";
    forge.push_files(
        REPO,
        "request-r-lost",
        &alice,
        &[("requests/prod/r-lost.yaml", yaml)],
        "ask",
    );
    let pr = forge.open_pr(REPO, &alice, "request-r-lost", "Access request r-lost", "");
    forge.settle().await;
    let refused = forge
        .deliveries()
        .into_iter()
        .any(|d| d.event == "pull_request" && d.status == Some(503));
    assert!(
        refused,
        "the PR's webhook was refused: {:?}",
        forge.deliveries()
    );

    sqlx::query("ROLLBACK").execute(&mut *other).await.unwrap();
    until_ready(&client, addr, 30).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !forge
        .comments(REPO, pr)
        .iter()
        .any(|c| c.user == "breakglass[bot]")
    {
        assert!(
            Instant::now() < deadline,
            "the refused PR was never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Standalone { running, .. } = service;
    running.shutdown().await;
}

/// A host clock an hour ahead of the true time (and of the test database's, on this machine).
#[derive(Debug)]
struct HourAhead;

impl Clock for HourAhead {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + chrono::TimeDelta::hours(1)
    }
}

/// The service as production starts it on PostgreSQL (`database_clock`): on a host whose
/// clock is an hour ahead it keeps the database's time, and the task keeping it in step ends
/// with the service (a stop does not wait out its grace for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_on_postgres_keeps_time_by_the_databases_clock() {
    let Some((_store, db)) = breakglass::store::testing::postgres_store().await else {
        eprintln!("SKIPPED: BREAKGLASS_TEST_DATABASE_URL is not set");
        return;
    };
    let setup = Setup {
        database_url: Some(db.url().to_owned()),
        database_clock: true,
        ..Setup::default()
    };
    let service =
        Standalone::start_with(setup, Arc::new(HourAhead), Duration::from_millis(50)).await;
    let running = service.running;
    let now = running.workflows.shared().clock.now();
    let off = (now - chrono::Utc::now()).abs();
    assert!(off < chrono::TimeDelta::milliseconds(500), "off by {off}");
    // `/metrics` says how far this host's clock is from the database's: an hour behind it.
    let metrics = reqwest::get(format!("http://{}/metrics", running.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("breakglass_database_clock_offset_seconds "))
        .unwrap_or_else(|| panic!("{metrics}"));
    let offset: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((offset + 3600.0).abs() < 0.5, "{line}");
    let stopping = Instant::now();
    running.shutdown().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "{:?}",
        stopping.elapsed()
    );
}
