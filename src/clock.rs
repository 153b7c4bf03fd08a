//! Time, injected: the service reads the clock through [`Clock`], so tests can stop it, move it
//! past a grant's expiry, and watch the revocation happen.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

/// Where "now" comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;

    /// Changes each time the clock is moved by hand, so that the service's workers look at once
    /// for what fell due; `None` for a clock that runs by itself (they look every tick).
    fn moves(&self) -> Option<watch::Receiver<()>> {
        None
    }
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to (tests and the demo's fast-forward).
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
    moved: Arc<watch::Sender<()>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
            moved: Arc::new(watch::Sender::new(())),
        }
    }

    pub fn advance(&self, by: TimeDelta) {
        *self.lock() += by;
        self.moved.send_replace(());
    }

    pub fn set(&self, to: DateTime<Utc>) {
        *self.lock() = to;
        self.moved.send_replace(());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DateTime<Utc>> {
        self.now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.lock()
    }

    fn moves(&self) -> Option<watch::Receiver<()>> {
        Some(self.moved.subscribe())
    }
}

/// "in 1h", "in 59m", "2m ago": the relative half of every time we show.
pub fn relative(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let millis = (to - from).num_milliseconds();
    let secs = (millis.unsigned_abs() + 500) / 1000;
    // Round to the nearest minute above one minute: seconds are noise in a comment, and a
    // reminder sent a second after its time still says `in 10m`, not `in 9m`.
    let shown = if secs >= 60 {
        crate::duration::HumanDuration::from_secs((secs + 30) / 60 * 60)
    } else {
        crate::duration::HumanDuration::from_secs(secs)
    };
    if millis >= 0 {
        format!("in {shown}")
    } else {
        format!("{shown} ago")
    }
}

/// UTC ISO 8601 with seconds and a `Z`, the one format every message and trailer uses.
pub fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = Utc.with_ymd_and_hms(2026, 11, 26, 2, 14, 0).unwrap();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(TimeDelta::minutes(61));
        assert_eq!(iso(clock.now()), "2026-11-26T03:15:00Z");
    }

    #[test]
    fn relative_times_read_naturally() {
        let t = Utc.with_ymd_and_hms(2026, 11, 26, 2, 14, 0).unwrap();
        assert_eq!(relative(t, t + TimeDelta::hours(1)), "in 1h");
        assert_eq!(relative(t, t + TimeDelta::seconds(3599)), "in 1h");
        assert_eq!(relative(t, t + TimeDelta::seconds(599)), "in 10m");
        assert_eq!(relative(t, t + TimeDelta::seconds(569)), "in 9m");
        assert_eq!(relative(t, t + TimeDelta::milliseconds(3_599_600)), "in 1h");
        assert_eq!(relative(t, t - TimeDelta::seconds(89)), "1m ago");
        assert_eq!(relative(t, t - TimeDelta::seconds(90)), "2m ago");
        assert_eq!(relative(t, t - TimeDelta::minutes(2)), "2m ago");
        assert_eq!(relative(t, t + TimeDelta::seconds(30)), "in 30s");
    }
}
