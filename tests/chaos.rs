//! Chaos: random lifecycles against the test forge with the real service as separate OS
//! processes, `kill -9`ed at random moments and restarted on the same database; the invariants
//! of issue 11 checked whenever the world is quiet and at the end. See docs/reliability.md.
//!
//! Short runs (fixed seeds) are ordinary tests. The long run (`BREAKGLASS_CHAOS_FORGE=gitlab`
//! plays it on GitLab merge requests; `github` is the default; `BREAKGLASS_CHAOS_PROVIDER=aws-iam`
//! grants prod's `admin` through `aws-iam` in moto and checks IAM at every quiet point):
//!
//! ```sh
//! BREAKGLASS_CHAOS_LIFECYCLES=200 BREAKGLASS_CHAOS_SEED=<seed> BREAKGLASS_CHAOS_REPLICAS=1 \
//!   BREAKGLASS_CHAOS_BACKEND=sqlite cargo test --test chaos long_chaos -- --ignored --nocapture
//! ```

/// The driver and the service process; files in tests/chaos/.
mod chaos {
    pub mod balancer;
    pub mod clock;
    pub mod invariants;
    pub mod lifecycle;
    pub mod outages;
    pub mod replicas;
    pub mod rng;
    pub mod run;
    pub mod service;
    pub mod world;
}
#[path = "common/moto.rs"]
mod moto;

use chaos::run::{Plan, run};
use chaos::service;
use chaos::world::{Backend, Dialect};

/// The service side: the driver runs this test binary again with only this test selected.
/// Without the driver's variables it does nothing.
#[test]
#[ignore = "the chaos service process; started by the chaos driver"]
fn chaos_service_process() {
    let (Some(config), Some(clock)) = (
        std::env::var_os(service::CONFIG_VAR),
        std::env::var_os(service::CLOCK_VAR),
    ) else {
        return;
    };
    service::serve(config.as_ref(), clock.as_ref());
}

/// One chaos run at a time: the runs measure revocation delays in seconds, and two of them at
/// once on two cores would measure each other. This orders the runs of one process (a plain
/// `cargo test`); `.config/nextest.toml` puts them in one test group for cargo-nextest, which
/// runs each test in a process of its own.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn play(plan: Plan) {
    let _one_at_a_time = SERIAL.lock().await;
    eprintln!("chaos: {plan:?}");
    let Some(out) = run(plan.clone()).await else {
        eprintln!("SKIPPED postgres chaos: BREAKGLASS_TEST_DATABASE_URL is not set");
        return;
    };
    eprintln!(
        "chaos: seed {} | {} | {} lifecycles ({} granted) | {} replica(s) on {:?} | {} kills, {} restarts, \
         {} clock jumps ({} past a retry's backoff), {} redeliveries, {} rounds | forge outages: {} 503, {} 429, {} hang ({} calls failed, {} starts failed) | \
         worst revocation {:.1} s after expiry or restart | {:.1} h simulated in {:.1} s | {} violations",
        plan.seed,
        plan.forge.name(),
        plan.lifecycles,
        out.granted,
        plan.replicas,
        plan.backend,
        out.kills,
        out.restarts,
        out.jumps,
        out.backoffs_passed,
        out.redeliveries,
        out.rounds,
        out.outages[0],
        out.outages[1],
        out.outages[2],
        out.failed_calls,
        out.failed_starts,
        out.worst_revoke_lateness.num_milliseconds() as f64 / 1000.0,
        out.simulated.num_seconds() as f64 / 3600.0,
        out.wall.as_secs_f64(),
        out.violations.len()
    );
    if plan.aws {
        eprintln!(
            "chaos: IAM roles found holding the prod admin policy at quiet points: {}",
            out.iam_attached_seen
        );
        assert!(
            out.iam_attached_seen > 0 || out.granted == 0,
            "grants were made, yet no IAM role ever held the policy"
        );
    }
    assert!(
        out.violations.is_empty(),
        "chaos found {} violation(s) with seed {} (replay: BREAKGLASS_CHAOS_FORGE={} \
         BREAKGLASS_CHAOS_SEED={} BREAKGLASS_CHAOS_LIFECYCLES={} BREAKGLASS_CHAOS_REPLICAS={} BREAKGLASS_CHAOS_BACKEND={} \
         BREAKGLASS_CHAOS_OUTAGES={} BREAKGLASS_CHAOS_PROVIDER={} cargo test --test chaos long_chaos -- --ignored --nocapture):\n{}",
        out.violations.len(),
        plan.seed,
        plan.forge.name(),
        plan.seed,
        plan.lifecycles,
        plan.replicas,
        if plan.backend == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        },
        plan.outage_percent,
        if plan.aws { "aws-iam" } else { "noop" },
        out.violations.join("\n")
    );
}

fn short(backend: Backend, replicas: usize, seed: u64, lifecycles: usize) -> Plan {
    Plan {
        seed,
        lifecycles,
        replicas,
        backend,
        forge: Dialect::GitHub,
        parallel: 4,
        kill_percent: 12,
        // Fewer than the long run's: each outage costs real time (hung calls, backoffs), and
        // the short runs stay within CI's budget.
        outage_percent: 2,
        aws: false,
    }
}

/// Chance (percent) that a round of the long run starts a forge outage
/// (`BREAKGLASS_CHAOS_OUTAGES` sets it; 0 turns them off).
const OUTAGE_PERCENT: u64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_chaos_sqlite() {
    play(short(Backend::Sqlite, 1, 11, 20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_chaos_postgres_two_replicas() {
    play(short(Backend::Postgres, 2, 12, 12)).await;
}

/// The lifecycles on GitLab merge requests: MRs and issues by iid, 👍 as an emoji event,
/// GitLab's Approve, notes, and the outages on the `/api/v4` routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_chaos_gitlab_sqlite() {
    play(Plan {
        forge: Dialect::GitLab,
        // As often as the long run: this run is short enough to afford them, and they are
        // what puts the `/api/v4` routes' failures in front of the bot.
        outage_percent: OUTAGE_PERCENT,
        ..short(Backend::Sqlite, 1, 13, 12)
    })
    .await;
}

/// The long run, driven by the environment (see the module's doc).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: BREAKGLASS_CHAOS_LIFECYCLES=200 cargo test --test chaos long_chaos -- --ignored"]
async fn long_chaos() {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let seed = var("BREAKGLASS_CHAOS_SEED")
        .map(|s| s.parse().expect("BREAKGLASS_CHAOS_SEED is a number"))
        .unwrap_or_else(rand::random);
    let lifecycles =
        var("BREAKGLASS_CHAOS_LIFECYCLES").map_or(200, |n| n.parse().expect("a count"));
    let replicas = var("BREAKGLASS_CHAOS_REPLICAS").map_or(1, |n| n.parse().expect("a count"));
    let backend = match var("BREAKGLASS_CHAOS_BACKEND").as_deref() {
        None | Some("sqlite") => Backend::Sqlite,
        Some("postgres") => Backend::Postgres,
        Some(other) => panic!("BREAKGLASS_CHAOS_BACKEND is sqlite or postgres, not {other}"),
    };
    let forge = match var("BREAKGLASS_CHAOS_FORGE").as_deref() {
        None | Some("github") => Dialect::GitHub,
        Some("gitlab") => Dialect::GitLab,
        Some(other) => panic!("BREAKGLASS_CHAOS_FORGE is github or gitlab, not {other}"),
    };
    play(Plan {
        seed,
        lifecycles,
        replicas,
        backend,
        forge,
        parallel: 6,
        kill_percent: 12,
        outage_percent: var("BREAKGLASS_CHAOS_OUTAGES")
            .map_or(OUTAGE_PERCENT, |n| n.parse().expect("a percentage")),
        aws: match var("BREAKGLASS_CHAOS_PROVIDER").as_deref() {
            None | Some("noop") => false,
            Some("aws-iam") => true,
            Some(other) => panic!("BREAKGLASS_CHAOS_PROVIDER is noop or aws-iam, not {other}"),
        },
    })
    .await;
}

/// The revocation deadline counts the time the service had, not the clock's jumps: a jump that
/// starts right after an expiry gives the service no time, and the run would otherwise report
/// the jump as lateness (GitLab seed 13 did: a 17 min jump 13 ms after an expiry).
#[tokio::test]
async fn the_clocks_running_time_leaves_out_its_jumps() {
    let dir = tempfile::tempdir().expect("a dir");
    let forge = breakglass_test_forge::TestForge::start().await;
    let mut clock = chaos::clock::ChaosClock::new(dir.path());
    let expiry = clock.now();
    clock.advance(&forge, chrono::TimeDelta::minutes(17));
    let revoked = clock.now();
    let ran = clock.running_between(expiry, revoked);
    assert!(
        ran < chaos::invariants::REVOKE_GRACE,
        "a revoke right after a 17 min jump took {ran} of running time"
    );
    assert!(revoked - expiry >= chrono::TimeDelta::minutes(17));
    // Time that really passes counts, before and after a jump alike.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let later = clock.now();
    assert!(clock.running_between(expiry, later) >= chrono::TimeDelta::milliseconds(300));
    assert!(clock.running_between(revoked, later) >= chrono::TimeDelta::milliseconds(300));
}
