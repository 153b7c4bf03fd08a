//! The driver's side of the shared clock: the offset file the service processes read, the test
//! forge's clock moved in step, and a record of every jump so that a deadline can be judged on
//! time as the service saw it.

use std::path::{Path, PathBuf};

use breakglass_test_forge::TestForge;
use chrono::{DateTime, TimeDelta, Utc};

pub struct ChaosClock {
    path: PathBuf,
    offset: TimeDelta,
    /// Every jump as (from, to) on this clock, oldest first.
    jumps: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

impl ChaosClock {
    /// Starts at the wall clock (offset zero), the forge's clock too.
    pub fn new(dir: &Path) -> Self {
        let clock = Self {
            path: dir.join("clock"),
            offset: TimeDelta::zero(),
            jumps: Vec::new(),
        };
        clock.write();
        clock
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The services' "now".
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }

    /// Moves the services' clock and the forge's by `by`.
    pub fn advance(&mut self, forge: &TestForge, by: TimeDelta) {
        let from = self.now();
        self.offset += by;
        self.write();
        forge.advance_clock(by);
        self.jumps.push((from, from + by));
    }

    /// The first instant at or after `at` that the clock really showed: an instant skipped by
    /// a jump is first seen at the jump's end.
    pub fn first_seen(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        self.jumps
            .iter()
            .find(|(from, to)| *from < at && at <= *to)
            .map_or(at, |(_, to)| *to)
    }

    /// How much of the time from `from` to `to` the clock really ran: the span less the jumps
    /// inside it. `from` is an instant the clock showed (never one skipped by a jump).
    pub fn running_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> TimeDelta {
        let jumped: TimeDelta = self
            .jumps
            .iter()
            .filter(|(start, end)| from <= *start && *end <= to)
            .map(|(start, end)| *end - *start)
            .sum();
        to - from - jumped
    }

    fn write(&self) {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, self.offset.num_milliseconds().to_string()).expect("write clock");
        std::fs::rename(&tmp, &self.path).expect("publish clock");
    }
}
