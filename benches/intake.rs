//! `cargo bench --bench intake`: webhook intake over loopback HTTP. Many concurrent connections
//! POST GitHub's real `issue_comment` payload, signed, for the configured repository (so each
//! one is verified and durably stored before its 2xx), each with a fresh delivery id; the same
//! load then hits a bare axum handler that answers 200 with no work, in the same run, so the
//! ratio holds on a noisy shared machine. Prints requests/s, p50, p99 and the process's CPU
//! time per request of both, per database (SQLite always; PostgreSQL when
//! `BREAKGLASS_TEST_DATABASE_URL` is set). Then where intake's time goes: the bare handler on
//! the service's own listener, and a handler that reads, verifies and parses each delivery
//! without storing it.
//!
//! `BREAKGLASS_BENCH_SECONDS` (default 5; 1 under `cargo test --benches`) and
//! `BREAKGLASS_BENCH_CONNECTIONS` (default 32) tune the run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use breakglass::clock::{Clock, SystemClock};
use breakglass::service::standalone::{REPO, SECRET, Standalone};

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let seconds: u64 = env_or("BREAKGLASS_BENCH_SECONDS", if benching { 5 } else { 1 });
    let connections: usize = env_or("BREAKGLASS_BENCH_CONNECTIONS", 32);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let body = payload();
        let bare = bare_handler().await;
        let listener = on_our_listener(
            axum::Router::new().route("/webhooks/github", axum::routing::post(|| async { "ok\n" })),
        )
        .await;
        let checked = on_our_listener(
            axum::Router::new().route("/webhooks/github", axum::routing::post(verify_and_parse)),
        )
        .await;
        let mut databases = vec![("sqlite", false)];
        if std::env::var_os("BREAKGLASS_TEST_DATABASE_URL").is_some() {
            databases.push(("postgres", true));
        }
        println!(
            "webhook intake: {connections} connections, {seconds} s per run, {} byte payload",
            body.len()
        );
        for (name, postgres) in databases {
            let service = service(postgres).await;
            let bare_run = load(bare, &body, connections, seconds, false).await;
            let intake_run = load(service.addr, &body, connections, seconds, true).await;
            // Its workers would go on handling what it stored, beside the next run.
            service.stop();
            let alone = intake_alone(postgres).await;
            let alone_run = load(alone.addr, &body, connections, seconds, true).await;
            let listener_run = load(listener, &body, connections, seconds, true).await;
            let checked_run = load(checked, &body, connections, seconds, true).await;
            println!("  {name}:");
            println!("    bare axum handler   {bare_run}");
            println!("    POST /webhooks/github {intake_run}");
            println!("      (the service, its workers handling each delivery meanwhile)");
            println!("    intake alone          {alone_run}");
            println!("      (the same router and recorder; no worker handles the deliveries)");
            println!("    where it goes:");
            println!("    bare handler, our listener {listener_run}");
            println!("    + read, verify, parse   {checked_run}");
            println!(
                "    ratio intake/bare   {:.2} (service), {:.2} (intake alone)",
                intake_run.per_second() / bare_run.per_second(),
                alone_run.per_second() / bare_run.per_second()
            );
        }
    });
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// GitHub's published `issue_comment.created` example, for our repository.
fn payload() -> Vec<u8> {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/github/issue_comment.created.payload.json");
    let mut event: serde_json::Value = match std::fs::read(&fixture) {
        Ok(bytes) => serde_json::from_slice(&bytes).expect("the fixture is JSON"),
        Err(_) => {
            eprintln!("(no ../shared/fixtures: a minimal issue_comment payload instead)");
            serde_json::json!({
                "action": "created",
                "issue": {"number": 1, "user": {"id": 1, "login": "alice", "type": "User"}},
                "comment": {"id": 1, "body": "looks good", "user": {"id": 1, "login": "alice", "type": "User"}, "created_at": "2026-12-02T00:00:00Z"},
                "repository": {"full_name": REPO},
                "sender": {"id": 1, "login": "alice", "type": "User"}
            })
        }
    };
    event["repository"]["full_name"] = REPO.into();
    serde_json::to_vec(&event).unwrap()
}

/// The real service under test (standalone: a test forge, secrets in files) and, for
/// PostgreSQL, its fresh database.
struct Service {
    addr: SocketAddr,
    _standalone: Option<Standalone>,
    _database: Option<breakglass::store::testing::PostgresDatabase>,
    _dir: Option<tempfile::TempDir>,
}

impl Service {
    /// Stops the service's tasks at once (what it stored is not needed any more).
    fn stop(mut self) {
        if let Some(Standalone { running, .. }) = self._standalone.take() {
            drop(running.kill()); // aborted now; nothing waits for the tasks to be gone
        }
    }
}

/// The real service against a test forge, on PostgreSQL (a fresh database) or a fresh SQLite
/// file.
async fn service(postgres: bool) -> Service {
    let (url, database) = if postgres {
        let (store, db) = breakglass::store::testing::postgres_store()
            .await
            .expect("PostgreSQL at BREAKGLASS_TEST_DATABASE_URL");
        store.close().await;
        (Some(db.url().to_owned()), Some(db))
    } else {
        (None, None)
    };
    let clock = Arc::new(SystemClock) as Arc<dyn Clock>;
    let standalone = Standalone::start(url, clock, Duration::from_millis(200)).await;
    Service {
        addr: standalone.addr(),
        _standalone: Some(standalone),
        _database: database,
        _dir: None,
    }
}

/// The service's webhook intake on its own: the real router, signature check and group-commit
/// recorder on a fresh database, without the workers that then handle each delivery. What a
/// burst of webhooks meets: deliveries are stored as fast as this, handled after.
async fn intake_alone(postgres: bool) -> Service {
    use breakglass::server::{AppState, Intake, Recorder, router};
    let (url, database, _dir) = if postgres {
        let (store, db) = breakglass::store::testing::postgres_store()
            .await
            .expect("PostgreSQL at BREAKGLASS_TEST_DATABASE_URL");
        store.close().await;
        (db.url().to_owned(), Some(db), None)
    } else {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}/intake.db", dir.path().display());
        (url, None, Some(dir))
    };
    let store = breakglass::store::Store::connect(&url)
        .await
        .expect("the store opens");
    store.migrate().await.expect("migrations");
    let state = AppState {
        store: store.clone(),
        recorder: Recorder::start(store),
        github: Some(Intake {
            secrets: Arc::new(vec![breakglass::secret::Secret::new(SECRET)]),
            repository: REPO.into(),
        }),
        gitlab: None,
        metrics: Arc::default(),
        clock: Arc::new(SystemClock),
        database_clock: None,
        wake: Arc::default(),
        gaps: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(breakglass::server::listen::serve(
        listener,
        router(state),
        stopped,
    ));
    std::mem::forget(stop); // serves until the bench ends
    Service {
        addr,
        _standalone: None,
        _database: database,
        _dir,
    }
}

/// `app` served by the service's own listener (its timeouts and limits).
async fn on_our_listener(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(breakglass::server::listen::serve(listener, app, stopped));
    std::mem::forget(stop); // serves until the bench ends
    addr
}

/// What intake does before it stores: the body read, its signature checked, the event parsed
/// and encoded for the store.
async fn verify_and_parse(headers: axum::http::HeaderMap, body: axum::body::Bytes) -> &'static str {
    use breakglass::forge::github::webhook::{parse, verify_signature};
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let secrets = [breakglass::secret::Secret::new(SECRET)];
    verify_signature(&secrets, &body, header("x-hub-signature-256")).expect("signed");
    let id = header("x-github-delivery").expect("a delivery id");
    let delivery = parse(id, "issue_comment", &body).expect("parses");
    std::hint::black_box(serde_json::to_string(&delivery).expect("encodes"));
    "ok\n"
}

/// An axum handler answering 200 with no work.
async fn bare_handler() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app =
        axum::Router::new().route("/webhooks/github", axum::routing::post(|| async { "ok\n" }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// What one load run measured.
struct Run {
    requests: u64,
    failures: u64,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    /// CPU time of the whole process (load generator and server, user and system) per
    /// request: what the work costs, whatever else the shared machine runs meanwhile (which
    /// takes wall time, not this process's CPU time).
    cpu_per_request: Duration,
}

/// CPU time this process has used so far, all threads, user and system.
fn process_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let usage = unsafe {
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()), 0);
        usage.assume_init()
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

impl Run {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>9.0} requests/s  p50 {:>7.2} ms  p99 {:>7.2} ms  CPU {:>4.0} µs/request  ({} requests, {} failed)",
            self.per_second(),
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.cpu_per_request.as_secs_f64() * 1e6,
            self.requests,
            self.failures
        )
    }
}

/// `connections` clients POSTing `body` to `addr` for `seconds`; signed, with fresh delivery
/// ids, when `signed`.
async fn load(
    addr: SocketAddr,
    body: &[u8],
    connections: usize,
    seconds: u64,
    signed: bool,
) -> Run {
    let url = format!("http://{addr}/webhooks/github");
    let signature = breakglass_test_forge::sign_webhook(SECRET, body);
    let body = Arc::new(body.to_vec());
    let next_id = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let cpu_before = process_cpu();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (url, body, signature, next_id) = (
            url.clone(),
            body.clone(),
            signature.clone(),
            next_id.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            let (mut latencies, mut failures) = (Vec::new(), 0u64);
            while Instant::now() < deadline {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let mut request = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.as_ref().clone());
                if signed {
                    request = request
                        .header("x-github-event", "issue_comment")
                        .header("x-github-delivery", format!("bench-{id}"))
                        .header("x-hub-signature-256", &signature);
                }
                let sent = Instant::now();
                match request.send().await {
                    Ok(answer) if answer.status().is_success() => {
                        latencies.push(sent.elapsed());
                    }
                    _ => failures += 1,
                }
            }
            (latencies, failures)
        }));
    }
    let (mut latencies, mut failures) = (Vec::new(), 0);
    for task in tasks {
        let (l, f) = task.await.unwrap();
        latencies.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed();
    let cpu = process_cpu() - cpu_before;
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Run {
        requests: latencies.len() as u64,
        failures,
        elapsed,
        p50: at(0.50),
        p99: at(0.99),
        cpu_per_request: cpu / (latencies.len().max(1) as u32),
    }
}
