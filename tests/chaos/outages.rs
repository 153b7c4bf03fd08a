//! Forge outages in the chaos run: at seeded random moments the test forge's whole API answers
//! 503, or 429 with a short `Retry-After`, or never answers, for a stretch of real time (the
//! service's clock is the wall clock plus the driver's jumps). Either dialect:
//! `FailureSpec::any` matches every route, and GitLab's `/api/v4` routes take injected failures
//! from the same table as GitHub's. Some start right before a clock jump, so that grants expire
//! while the forge is down. Every outage ends before a quiet point: the invariants are read once
//! the forge is back.

use std::time::{Duration, Instant};

use breakglass_test_forge::{FailureKind, FailureSpec, SpanKind, TestForge};

use super::rng::Rng;

/// How the forge fails during one outage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    ServerErrors,
    RateLimited,
    Hang,
}

/// The outages of a run, drawn from their own seeded generator: turning them on or off does
/// not change the lifecycles, kills and jumps a seed plays.
pub struct Outages {
    rng: Rng,
    /// Chance (percent) that a round starts one; a jump starts one twice as often.
    percent: u64,
    /// When the outage in progress ends (real time).
    ends: Option<Instant>,
    /// How many of each kind were played: server errors, rate limits, hangs.
    pub played: [u64; 3],
    /// The bot's API calls that an outage failed with a 503 or a 429 (a hung call is never
    /// answered, so never counted): proof that the outages reach the routes the bot uses.
    pub failed_calls: u64,
}

impl Outages {
    pub fn new(seed: u64, percent: u64) -> Self {
        Self {
            rng: Rng::new(seed ^ 0x6f75_7461_6765_7321),
            percent,
            ends: None,
            played: [0; 3],
            failed_calls: 0,
        }
    }

    /// Ends the outage in progress if its time is up, then maybe starts one (a round's turn).
    pub fn round(&mut self, forge: &TestForge) {
        if self.ends.is_some_and(|ends| Instant::now() >= ends) {
            self.end(forge);
        }
        let percent = self.percent;
        self.maybe_start(forge, percent);
    }

    /// Maybe starts an outage that the coming clock jump falls into.
    pub fn before_jump(&mut self, forge: &TestForge) {
        let percent = (self.percent * 2).min(100);
        self.maybe_start(forge, percent);
    }

    /// Whether the forge is failing now.
    pub fn on(&self) -> bool {
        self.ends.is_some()
    }

    /// Ends the outage in progress, if any (before a quiet point).
    pub fn end(&mut self, forge: &TestForge) {
        if self.ends.take().is_some() {
            forge.record_timeline(false);
            forge.clear_failures();
            self.failed_calls += forge
                .take_timeline()
                .iter()
                .filter(|span| matches!(span.kind, SpanKind::Api { .. }))
                .filter(|span| matches!(span.status, 429 | 503))
                .count() as u64;
        }
    }

    fn maybe_start(&mut self, forge: &TestForge, percent: u64) {
        if self.ends.is_some() || self.percent == 0 || !self.rng.chance(percent) {
            return;
        }
        let kind = *self
            .rng
            .pick(&[Kind::ServerErrors, Kind::RateLimited, Kind::Hang]);
        let failure = match kind {
            Kind::ServerErrors => FailureKind::Status(503),
            // Short: the quiet points wait for every delivery, and a delivery waits as long
            // as the forge asked.
            Kind::RateLimited => FailureKind::SecondaryRateLimit429 {
                retry_after: 1 + self.rng.below(5),
            },
            Kind::Hang => FailureKind::Hang,
        };
        let lasts = Duration::from_millis(500 + self.rng.below(2_500));
        forge.take_timeline(); // nothing from before the outage
        forge.record_timeline(true);
        forge.fail_next(FailureSpec::any(u32::MAX, failure));
        self.ends = Some(Instant::now() + lasts);
        self.played[kind as usize] += 1;
    }
}
