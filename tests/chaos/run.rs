//! The chaos driver: plays seeded lifecycles against the test forge while the service runs as
//! separate processes that it `kill -9`s at random moments and restarts on the same database,
//! checking the invariants whenever the world is quiet and at the end.

use std::time::{Duration, Instant};

use breakglass::store::RequestState;
use chrono::{DateTime, TimeDelta, Utc};

use super::balancer::Balancer;
use super::clock::ChaosClock;
use super::invariants::{self, Snapshot, Uptime};
use super::lifecycle::{Lifecycle, Stage};
use super::outages::Outages;
use super::replicas::Replica;
use super::rng::Rng;
use super::world::{Backend, Dialect, REPO, World};

/// One chaos run's parameters.
#[derive(Clone, Debug)]
pub struct Plan {
    pub seed: u64,
    pub lifecycles: usize,
    pub replicas: usize,
    pub backend: Backend,
    /// The forge of the requests repo (`BREAKGLASS_CHAOS_FORGE`).
    pub forge: Dialect,
    /// Lifecycles in flight at once.
    pub parallel: usize,
    /// Chance (percent) that a round ends with a replica killed.
    pub kill_percent: u64,
    /// Chance (percent) that a round starts a forge outage (twice that before a clock jump);
    /// 0: none.
    pub outage_percent: u64,
    /// prod's `admin` role granted by `aws-iam` in moto (`BREAKGLASS_CHAOS_PROVIDER=aws-iam`),
    /// and the invariants read IAM too; otherwise every role is `noop`.
    pub aws: bool,
}

/// What a run did and found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub rounds: u64,
    pub kills: u64,
    pub restarts: u64,
    pub jumps: u64,
    /// Clock moves to the retry of a failed job while settling (not counted in `jumps`).
    pub backoffs_passed: u64,
    pub redeliveries: u64,
    /// Forge outages played: server errors, rate limits, hangs.
    pub outages: [u64; 3],
    /// API calls of the bot's that an outage failed (503, 429).
    pub failed_calls: u64,
    /// Starts that failed because the forge was failing.
    pub failed_starts: u64,
    pub granted: usize,
    pub worst_revoke_lateness: TimeDelta,
    /// With `aws`: IAM roles found holding the policy, summed over the quiet points (that the
    /// provider was really used).
    pub iam_attached_seen: usize,
    pub simulated: TimeDelta,
    pub wall: Duration,
    pub violations: Vec<String>,
}

/// The longest a failed job may wait for its retry: forge errors back off to 256 s at most,
/// and a rate limit's `Retry-After` in the test forge is a few seconds.
const LONGEST_BACKOFF: TimeDelta = TimeDelta::minutes(5);

struct Driver {
    plan: Plan,
    world: World,
    clock: ChaosClock,
    balancer: Balancer,
    replicas: Vec<Replica>,
    uptime: Uptime,
    /// Index into `uptime` of each replica's current run.
    runs: Vec<Option<usize>>,
    rng: Rng,
    outages: Outages,
    out: Outcome,
}

/// Plays `plan`; `None` when its database is not available.
pub async fn run(plan: Plan) -> Option<Outcome> {
    let world = World::create(plan.backend, plan.forge, plan.aws).await?;
    let clock = ChaosClock::new(world.path());
    let balancer = Balancer::start().await;
    world.hook_to(balancer.addr);
    let replicas = (0..plan.replicas)
        .map(|i| Replica::new(i, world.path(), clock.path(), &world.config))
        .collect();
    let mut driver = Driver {
        rng: Rng::new(plan.seed),
        outages: Outages::new(plan.seed, plan.outage_percent),
        runs: vec![None; plan.replicas],
        plan,
        world,
        clock,
        balancer,
        replicas,
        uptime: Uptime::default(),
        out: Outcome::default(),
    };
    let started = Instant::now();
    let origin = driver.clock.now();
    driver.play().await;
    driver.out.wall = started.elapsed();
    driver.out.outages = driver.outages.played;
    driver.out.failed_calls = driver.outages.failed_calls;
    driver.out.simulated = driver.clock.now() - origin;
    let Driver { world, out, .. } = driver;
    if !out.violations.is_empty() {
        eprintln!("chaos: service logs and database kept in {}", world.keep());
    }
    Some(out)
}

impl Driver {
    async fn play(&mut self) {
        for i in 0..self.replicas.len() {
            self.start(i).await;
        }
        let mut lifecycles: Vec<Lifecycle> = Vec::new();
        let mut idle_rounds = 0;
        let mut jumps_idle = 0;
        let simulated_cap = TimeDelta::days(2) + TimeDelta::hours(self.plan.lifecycles as i64);
        let origin = self.clock.now();
        loop {
            let open = lifecycles.iter().filter(|l| l.stage != Stage::Done).count();
            if open < self.plan.parallel && lifecycles.len() < self.plan.lifecycles {
                let n = lifecycles.len() + 1;
                lifecycles.push(Lifecycle::random(n, &mut self.rng));
            }
            if lifecycles.len() == self.plan.lifecycles
                && lifecycles.iter().all(|l| l.stage == Stage::Done)
            {
                break;
            }
            if self.clock.now() - origin > simulated_cap {
                self.violation(format!(
                    "lifecycles never finished: {:?}",
                    unfinished(&lifecycles)
                ));
                break;
            }
            let acted = self.round(&mut lifecycles).await;
            idle_rounds = if acted { 0 } else { idle_rounds + 1 };
            jumps_idle = if acted { 0 } else { jumps_idle };
            if idle_rounds >= 3 {
                self.quiet_then_jump(&lifecycles).await;
                idle_rounds = 0;
                jumps_idle += 1;
            }
            // A day and more of clock with nobody able to act: something is stuck for good.
            if jumps_idle > 150 {
                self.violation(format!(
                    "stuck: nothing moved over 150 clock jumps: {:?}",
                    unfinished(&lifecycles)
                ));
                break;
            }
        }
        self.finish(&lifecycles).await;
    }

    /// One round of people acting, then maybe a kill and restarts.
    async fn round(&mut self, lifecycles: &mut [Lifecycle]) -> bool {
        self.out.rounds += 1;
        self.outages.round(&self.world.forge);
        let records = self
            .world
            .store
            .list_requests(None)
            .await
            .expect("requests");
        let mut acted = false;
        for l in lifecycles.iter_mut() {
            let before = l.stage;
            acted |= l.step(&self.world, &records, &mut self.rng);
            if l.stage == Stage::Done && before != Stage::Done {
                acted = true;
            }
        }
        let mut pause = Duration::from_millis(20 + self.rng.below(150));
        for i in 0..self.replicas.len() {
            if self.replicas[i].is_up() && self.rng.chance(self.plan.kill_percent) {
                // Killed wherever the work it was just given stands.
                let at = Duration::from_millis(self.rng.below(400));
                tokio::time::sleep(at).await;
                pause = pause.saturating_sub(at);
                self.kill(i);
            } else if !self.replicas[i].is_up() && self.rng.chance(50) {
                self.start(i).await;
            }
        }
        tokio::time::sleep(pause).await;
        acted
    }

    async fn start(&mut self, i: usize) {
        if let Err(why) = self.replicas[i].start().await {
            // A service starting while the forge fails cannot learn who it is there, and
            // exits: it is still down, and tried again later (the outage ends before every
            // quiet point). Anything else is a failure of the run.
            assert!(self.outages.on(), "{why}");
            self.out.failed_starts += 1;
            return;
        }
        if self.replicas[i].starts > 1 {
            self.out.restarts += 1;
        }
        self.uptime.0.push((self.clock.now(), None));
        self.runs[i] = Some(self.uptime.0.len() - 1);
        self.update_balancer();
    }

    fn kill(&mut self, i: usize) {
        self.replicas[i].kill();
        self.out.kills += 1;
        if let Some(run) = self.runs[i].take() {
            self.uptime.0[run].1 = Some(self.clock.now());
        }
        self.update_balancer();
    }

    fn update_balancer(&self) {
        self.balancer.set_live(
            self.replicas
                .iter()
                .filter(|r| r.is_up())
                .map(|r| r.port)
                .collect(),
        );
    }

    fn violation(&mut self, what: String) {
        let line = format!("seed {}: {what}", self.plan.seed);
        eprintln!("chaos VIOLATION {line}");
        self.out.violations.push(line);
    }

    /// Brings every replica back, lets the bot finish what it has, checks the invariants, and
    /// moves time on: sometimes with every replica down, so expiries pass while it is dead.
    async fn quiet_then_jump(&mut self, lifecycles: &[Lifecycle]) {
        self.settle_and_check(false).await;
        self.outages.before_jump(&self.world.forge);
        let by = self.jump_size(lifecycles);
        let all_down = self.rng.chance(20);
        if all_down {
            for i in 0..self.replicas.len() {
                if self.replicas[i].is_up() {
                    self.kill(i);
                }
            }
        }
        self.clock.advance(&self.world.forge, by);
        self.out.jumps += 1;
        if all_down {
            for i in 0..self.replicas.len() {
                self.start(i).await;
            }
        }
    }

    /// Far enough to reach something: a poll (31 s) while approvals wait for one, else up to
    /// the next expiry, sometimes past it.
    fn jump_size(&mut self, lifecycles: &[Lifecycle]) -> TimeDelta {
        let waiting_for_poll = lifecycles.iter().any(|l| l.stage == Stage::AwaitGrant);
        if waiting_for_poll && self.rng.chance(70) {
            return TimeDelta::seconds(31);
        }
        TimeDelta::seconds(60 + self.rng.below(20 * 60) as i64)
    }

    async fn settle_and_check(&mut self, complete: bool) {
        self.outages.end(&self.world.forge);
        for i in 0..self.replicas.len() {
            if !self.replicas[i].is_up() {
                self.start(i).await;
            }
        }
        if let Err(why) = self.settle().await {
            self.violation(why);
        }
        let snap = Snapshot::read(&self.world).await;
        let mut found = invariants::exactly_once(&snap, &self.world, complete);
        found.extend(invariants::files_match_active(&snap));
        found.extend(invariants::no_duplicates(&snap));
        if let Some(aws) = &self.world.aws {
            let (violations, attached) = invariants::iam_matches_active(&snap, aws).await;
            found.extend(violations);
            self.out.iam_attached_seen += attached;
        }
        let (late, worst) = invariants::revocations_on_time(&snap, &self.clock, &self.uptime);
        found.extend(late);
        self.out.worst_revoke_lateness = self.out.worst_revoke_lateness.max(worst);
        for v in found {
            if !self.out.violations.iter().any(|seen| seen.ends_with(&v)) {
                self.violation(v);
            }
        }
    }

    /// Waits until the forge sent everything (failed deliveries sent again), no delivery is
    /// pending and no job is overdue, three checks in a row; an error after 60 s.
    async fn settle(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut quiet = 0;
        while quiet < 3 {
            self.world.forge.settle().await;
            let failed: Vec<String> = self
                .world
                .forge
                .deliveries()
                .into_iter()
                .filter(|d| d.attempts > 0 && !d.status.is_some_and(|s| (200..300).contains(&s)))
                .map(|d| d.id)
                .collect();
            for id in &failed {
                self.world.forge.redeliver(id);
                self.out.redeliveries += 1;
            }
            let mut busy = self.pending_work().await;
            if busy.is_empty() && failed.is_empty() {
                // A job that failed (the forge was out or rate limited) waits its backoff: the
                // world is not quiet until it ran again, so the clock moves on to it.
                busy = self.pass_backoff().await;
            }
            quiet = if busy.is_empty() && failed.is_empty() {
                quiet + 1
            } else {
                0
            };
            if Instant::now() > deadline {
                return Err(format!("the bot did not settle in 60 s: {busy}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Moves the clock to the first retry of a failed job, if one waits (polls excepted: they
    /// come back every 30 s by design, and what they wait for is no invariant) (at most
    /// [`LONGEST_BACKOFF`] ahead: a job backing off longer is stuck); what it waited for.
    async fn pass_backoff(&mut self) -> String {
        let waiting: Option<(i64, String, String, Option<String>)> = sqlx::query_as(
            "SELECT run_at, kind, request_id, last_error FROM jobs \
             WHERE last_error IS NOT NULL AND kind <> 'poll' ORDER BY run_at LIMIT 1",
        )
        .fetch_optional(self.world.store.pool())
        .await
        .expect("jobs");
        let Some((run_at, kind, request, error)) = waiting else {
            return String::new();
        };
        let due = DateTime::<Utc>::from_timestamp_millis(run_at).expect("a job's time");
        let wait = due - self.clock.now();
        if wait > LONGEST_BACKOFF {
            let stuck = format!("{kind} of {request} backs off {wait} after: {error:?}");
            if !self.out.violations.iter().any(|v| v.ends_with(&stuck)) {
                self.violation(stuck);
            }
            return String::new();
        }
        if wait > TimeDelta::zero() {
            self.clock
                .advance(&self.world.forge, wait + TimeDelta::milliseconds(10));
            self.out.backoffs_passed += 1;
        }
        format!("{kind} of {request} retrying after: {error:?}")
    }

    async fn pending_work(&self) -> String {
        let store = &self.world.store;
        let jobs = store.overdue_jobs(self.clock.now()).await.expect("jobs");
        let stuck: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT id, last_error FROM deliveries WHERE state = 'pending'")
                .fetch_all(store.pool())
                .await
                .expect("deliveries");
        if jobs.is_empty() && stuck.is_empty() {
            return String::new();
        }
        format!(
            "pending deliveries: {stuck:?}, due jobs: {:?}",
            jobs.iter()
                .map(|j| (
                    j.kind.to_string(),
                    j.request_id.to_string(),
                    j.last_error.clone()
                ))
                .collect::<Vec<_>>()
        )
    }

    /// The end: everything settled, every lifecycle ended, everything exactly once, and the
    /// event log and git agree (`breakglass audit verify`).
    async fn finish(&mut self, lifecycles: &[Lifecycle]) {
        self.settle_and_check(true).await;
        let records = self
            .world
            .store
            .list_requests(None)
            .await
            .expect("requests");
        for l in lifecycles {
            match l.record(&records) {
                None => {
                    self.violation(format!("lifecycle {} ({:?}) lost: no request", l.n, l.kind))
                }
                Some(r) if r.state != RequestState::Revoked => self.violation(format!(
                    "lifecycle {} ({:?}): {} ended {}",
                    l.n, l.kind, r.id, r.state
                )),
                Some(r) => self.check_extension(l, r),
            }
        }
        self.out.granted = records.iter().filter(|r| r.granted_at.is_some()).count();
        self.audit_verify();
    }

    fn check_extension(&mut self, l: &Lifecycle, r: &breakglass::store::RequestRecord) {
        let (Some(granted), Some(expires)) = (r.granted_at, r.expires_at) else {
            return self.violation(format!("{}: revoked without a grant time", r.id));
        };
        let asked = TimeDelta::minutes(l.minutes);
        let extended = asked + TimeDelta::minutes(30);
        let got = expires - granted;
        if got != asked && !(l.extended && got == extended) {
            self.violation(format!(
                "{}: lasted {got} for {asked} (extended: {})",
                r.id, l.extended
            ));
        }
    }

    fn audit_verify(&mut self) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_breakglass"))
            .args(["audit", "verify", "--repo"])
            .arg(self.world.forge.repo_path(REPO))
            .args([
                "--branch",
                "main",
                "--database-url",
                &self.world.config.database_url,
            ])
            .output()
            .expect("breakglass audit verify runs");
        if !out.status.success() {
            self.violation(format!(
                "audit verify: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
}

/// The lifecycles not done yet (for a violation's message).
fn unfinished(lifecycles: &[Lifecycle]) -> Vec<&Lifecycle> {
    lifecycles
        .iter()
        .filter(|l| l.stage != Stage::Done)
        .collect()
}
