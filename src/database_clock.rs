//! One clock for every replica. Replicas sharing a PostgreSQL database compare each other's
//! times all the time: a lease one writes, another judges lapsed; a revoke one schedules,
//! another finds due. Read off each host's own clock, a host a few seconds ahead took its
//! peers' live leases and repeated their comments, and one behind revoked a dead peer's grant
//! late. So on PostgreSQL the service keeps time by the database server's clock: the host's
//! clock plus an offset measured against `clock_timestamp()` at start and every [`RESYNC`].
//! A step of the host's clock between two measurements lasts until the next one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::store::{Backend, Store, StoreError};

/// How often the offset is measured again: the drift of a host's clock in that time is
/// milliseconds, and each measurement is a few one-row queries.
pub const RESYNC: Duration = Duration::from_secs(10);

/// Reads per measurement; the one with the shortest round trip is kept, as it says most
/// precisely when the server read its clock.
const SAMPLES: usize = 3;

/// Beyond this, the host's clock is worth a warning: it is off by more than a lease.
const WARN_BEYOND: TimeDelta = TimeDelta::seconds(1);

/// The host's clock, moved onto the database's.
#[derive(Debug)]
pub struct DatabaseClock {
    host: Arc<dyn Clock>,
    offset_millis: AtomicI64,
    warned: AtomicBool,
}

impl Clock for DatabaseClock {
    fn now(&self) -> DateTime<Utc> {
        self.host.now() + self.offset()
    }
}

impl DatabaseClock {
    /// A clock on `store`'s database's time, measured once before it is returned.
    pub async fn measure(store: &Store, host: Arc<dyn Clock>) -> Result<Arc<Self>, StoreError> {
        let clock = Arc::new(Self {
            host,
            offset_millis: AtomicI64::new(0),
            warned: AtomicBool::new(false),
        });
        clock.resync(store).await?;
        Ok(clock)
    }

    /// How far the database's clock is ahead of the host's (negative: behind).
    pub fn offset(&self) -> TimeDelta {
        TimeDelta::milliseconds(self.offset_millis.load(Ordering::Relaxed))
    }

    /// Measures the offset again and keeps it.
    pub async fn resync(&self, store: &Store) -> Result<TimeDelta, StoreError> {
        let mut best: Option<(Duration, TimeDelta)> = None;
        let mut reader = store.clock_reader().await?;
        for _ in 0..SAMPLES {
            let sent = Instant::now();
            let host_before = self.host.now();
            let database = reader.read().await?;
            let round_trip = sent.elapsed();
            // The server read its clock somewhere in the round trip; its middle is the guess
            // whose error is at most half of it.
            let host_middle = host_before + round_trip / 2;
            let offset = database - host_middle;
            if best.is_none_or(|(shortest, _)| round_trip < shortest) {
                best = Some((round_trip, offset));
            }
        }
        let offset = best.map_or(TimeDelta::zero(), |(_, offset)| offset);
        self.offset_millis
            .store(offset.num_milliseconds(), Ordering::Relaxed);
        self.say_if_far(offset);
        Ok(offset)
    }

    /// Once when the host's clock goes further than [`WARN_BEYOND`] from the database's,
    /// once when it comes back.
    fn say_if_far(&self, offset: TimeDelta) {
        let far = offset.abs() > WARN_BEYOND;
        if self.warned.swap(far, Ordering::Relaxed) == far {
            return;
        }
        let offset_ms = offset.num_milliseconds();
        if far {
            tracing::warn!(
                offset_ms,
                "this host's clock and the database server's disagree (offset_ms: the database's ahead of this host's); breakglass keeps time by the database's, so that replicas agree, and that is also the time expiries are kept by and AWS sessions are cut at: synchronise both clocks (NTP)"
            );
        } else {
            tracing::info!(
                offset_ms,
                "this host's clock and the database server's agree again"
            );
        }
    }

    /// Measures again every [`RESYNC`] until `stop` says so. A failed measurement keeps the
    /// last offset (the database is unreachable then, and nothing is claimed anyway).
    pub fn keep_in_step(
        self: Arc<Self>,
        store: Store,
        mut stop: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(RESYNC) => {}
                    _ = stop.wait_for(|stopping| *stopping) => return,
                }
                if let Err(err) = self.resync(&store).await {
                    tracing::warn!(%err, "cannot read the database's clock; keeping the last offset");
                }
            }
        })
    }
}

/// The service's clock: on PostgreSQL, when `follow` (production), `host` moved onto the
/// database's time, with the clock to keep in step; otherwise `host` as it is (SQLite is one
/// host's file, and tests keep their own manual clock).
pub async fn service_clock(
    store: &Store,
    host: Arc<dyn Clock>,
    follow: bool,
) -> Result<(Arc<dyn Clock>, Option<Arc<DatabaseClock>>), StoreError> {
    if !follow || store.backend() != Backend::Postgres {
        return Ok((host, None));
    }
    let clock = DatabaseClock::measure(store, host).await?;
    Ok((clock.clone(), Some(clock)))
}
