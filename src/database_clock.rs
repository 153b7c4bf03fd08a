//! One clock for every replica. Replicas sharing a PostgreSQL database compare each other's
//! times all the time: a lease one writes, another judges lapsed; a revoke one schedules,
//! another finds due. Read off each host's own clock, a host a few seconds ahead took its
//! peers' live leases and repeated their comments, and one behind revoked a dead peer's grant
//! late. So on PostgreSQL the service keeps time by the database server's clock: read with
//! `clock_timestamp()` at start and every [`RESYNC`], and carried forward between two reads by
//! a monotonic timer. A step of the host's clock (NTP after a VM was paused, say) never moves
//! it: carried by the host's clock, it lasted until the next read, with the replica taking its
//! peers' live leases (a step ahead) or its own lapsing under it (a step behind).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
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

/// The database's clock, as last read, carried forward by a monotonic timer.
#[derive(Debug)]
pub struct DatabaseClock {
    /// Only to say how far the host's clock is from the database's (a metric, a warning).
    host: Arc<dyn Clock>,
    read: Mutex<Reading>,
    offset_millis: AtomicI64,
    warned: AtomicBool,
}

/// The database's time at an instant of this process's monotonic timer.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    database: DateTime<Utc>,
}

impl Clock for DatabaseClock {
    fn now(&self) -> DateTime<Utc> {
        let read = *self.read.lock().unwrap_or_else(PoisonError::into_inner);
        read.database + read.at.elapsed()
    }
}

impl DatabaseClock {
    /// A clock on `store`'s database's time, measured once before it is returned.
    pub async fn measure(store: &Store, host: Arc<dyn Clock>) -> Result<Arc<Self>, StoreError> {
        let read = Reading {
            at: Instant::now(),
            database: host.now(),
        };
        let clock = Arc::new(Self {
            host,
            read: Mutex::new(read),
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

    /// Reads the database's clock again and keeps it; returns how far it is from the host's.
    pub async fn resync(&self, store: &Store) -> Result<TimeDelta, StoreError> {
        let mut best: Option<(Duration, Reading, TimeDelta)> = None;
        let mut reader = store.clock_reader().await?;
        for _ in 0..SAMPLES {
            let sent = Instant::now();
            let host_before = self.host.now();
            let database = reader.read().await?;
            let round_trip = sent.elapsed();
            // The server read its clock somewhere in the round trip; its middle is the guess
            // whose error is at most half of it.
            let read = Reading {
                at: sent + round_trip / 2,
                database,
            };
            let offset = database - (host_before + round_trip / 2);
            if best.is_none_or(|(shortest, ..)| round_trip < shortest) {
                best = Some((round_trip, read, offset));
            }
        }
        let Some((_, read, offset)) = best else {
            return Ok(self.offset());
        };
        *self.read.lock().unwrap_or_else(PoisonError::into_inner) = read;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::testing::postgres_store;

    /// The host's clock steps half a minute ahead (NTP after a pause), then back: the
    /// service's time does not move with it, before the next read of the database's clock or
    /// after it; only the offset it reports does.
    #[tokio::test]
    async fn a_step_of_the_hosts_clock_does_not_move_the_services() {
        let Some((store, _database)) = postgres_store().await else {
            eprintln!("SKIPPED: no PostgreSQL");
            return;
        };
        let host = ManualClock::new(Utc::now());
        let clock = DatabaseClock::measure(&store, Arc::new(host.clone()))
            .await
            .unwrap();
        let true_time_is_kept = |when: &str| {
            let off = (clock.now() - Utc::now()).abs();
            assert!(off < TimeDelta::milliseconds(500), "{when}: off by {off}");
        };
        true_time_is_kept("at the start");
        host.advance(TimeDelta::seconds(30));
        true_time_is_kept("the host stepped ahead");
        let offset = clock.resync(&store).await.unwrap();
        assert!(
            (offset + TimeDelta::seconds(30)).abs() < TimeDelta::seconds(1),
            "{offset}"
        );
        true_time_is_kept("read again");
        host.advance(TimeDelta::seconds(-60));
        true_time_is_kept("the host stepped behind");
    }
}
