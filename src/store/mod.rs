//! The bot's durable state: webhook deliveries, access requests, approvals, the job (timer)
//! queue and the tamper-evident event log, on SQLite (one replica) or PostgreSQL (several).
//!
//! One code path serves both databases through sqlx's `Any` driver. That driver carries only
//! integers and text, which sets the conventions: timestamps are unix **milliseconds** in
//! INTEGER/BIGINT columns, JSON is TEXT, enumerations are TEXT. Queries use `$1, $2…`
//! placeholders, which SQLite accepts as named parameters. The few places where the dialects
//! must differ (row locks when claiming work, serializing event appends) branch on [`Backend`].
//!
//! Queries are free functions in the submodules taking `&mut AnyConnection`, so they also run
//! inside a caller's transaction (`let mut tx = store.pool().begin().await?;
//! jobs::schedule_job(&mut tx, …)`); [`Store`] wraps each in a domain-named method. The clock is
//! injected: every method that needs "now" takes it, none reads the system time.
//!
//! Rows are decoded in one `TryFrom<&AnyRow>` per table, which is where illegal states are
//! refused (an `Active` request without an expiry, an unknown job kind…): they become
//! [`StoreError::Decode`], never a panic and never a half-valid value.

pub mod applied;
pub mod approvals;
pub mod changes;
pub mod deliveries;
pub mod effects;
pub mod epochs;
pub mod events;
pub mod grants;
pub mod jobs;
mod locks;
mod migrations;
pub mod requests;
mod revocations;
mod row;
pub mod testing;
mod unsynced;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool};
use sqlx::{Connection, Executor};

pub use applied::AppliedGrant;
pub use approvals::{Approval, ApprovalSource};
pub use changes::{Change, ChangeKind};
pub use deliveries::{
    DeliveryId, DeliveryState, MAX_DELIVERY_ATTEMPTS, NewDelivery, Recorded, StoredDelivery,
};
pub use effects::{CommentKey, Effect};
pub use events::{ChainError, EventActor, EventKind, EventRecord, GENESIS_HASH, NewEvent};
pub use grants::Granted;
pub use jobs::{Job, JobId, JobKind, Lane, PolledCounts};
pub use locks::{PrKey, RemovalLock};
pub use requests::{
    EXTENSION_HOLD_FOR, ExtensionHold, RequestRecord, RequestState, RevokeReason, Stamp,
    StoredDecision,
};
pub use revocations::RowOutcome;

/// Which database a [`Store`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// One file, one replica: the embedded default.
    Sqlite,
    /// Shared by several replicas; work is claimed with `FOR UPDATE SKIP LOCKED`.
    Postgres,
}

impl Backend {
    /// The backend a database URL names: `sqlite:…` or `postgres://…`/`postgresql://…`.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            // Only the scheme is echoed: the rest of a URL may hold a password.
            _ => Err(StoreError::UnsupportedUrl {
                scheme: scheme.chars().take(20).collect(),
            }),
        }
    }

    /// The backend behind a connection, so that free functions need not be told.
    pub fn of(conn: &AnyConnection) -> Result<Self, StoreError> {
        match conn.backend_name() {
            "SQLite" => Ok(Self::Sqlite),
            "PostgreSQL" => Ok(Self::Postgres),
            other => Err(StoreError::UnsupportedUrl {
                scheme: other.to_owned(),
            }),
        }
    }
}

/// The forge a request or delivery came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ForgeKind {
    /// GitHub or GitHub Enterprise (stored as `github`).
    GitHub,
    /// GitLab (stored as `gitlab`).
    GitLab,
}

row::string_enum!(ForgeKind {
    GitHub => "github",
    GitLab => "gitlab",
});

impl ForgeKind {
    /// What this forge calls a change request: `PR` on GitHub, `MR` on GitLab.
    pub fn change_word(self) -> &'static str {
        match self {
            Self::GitHub => "PR",
            Self::GitLab => "MR",
        }
    }
}

/// Who holds a claimed delivery or job, and until when. After `until` the lease has lapsed
/// (the worker is presumed dead) and anyone may claim the work again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The claiming worker's name (unique per process, e.g. host and pid).
    pub worker: String,
    /// When the lease lapses.
    pub until: DateTime<Utc>,
}

/// Why a store operation failed. Callers branch on [`StoreError::Conflict`] (reload and
/// retry), [`StoreError::NotFound`] and [`StoreError::Duplicate`]; the rest are reported.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// [`Store::connect`] was given a URL of another database.
    #[error(
        "unsupported database URL scheme `{scheme}`; use `sqlite://PATH`, `sqlite::memory:` or `postgres://…`"
    )]
    UnsupportedUrl {
        /// Only the scheme: the rest of the URL may hold a password.
        scheme: String,
    },
    /// Another replica updated the request since it was read (optimistic lock).
    #[error(
        "request `{id}` was changed concurrently (expected version {expected}, found {found}); reload and retry"
    )]
    Conflict {
        /// The request's id.
        id: String,
        /// The version the caller read.
        expected: i64,
        /// The version stored now.
        found: i64,
    },
    /// The row to change does not exist.
    #[error("{what} `{key}` not found")]
    NotFound {
        /// What was looked for, e.g. `request`.
        what: &'static str,
        /// Its key.
        key: String,
    },
    /// The row to insert exists already (same id, or same unique key).
    #[error("{what} `{key}` already exists")]
    Duplicate {
        /// What was inserted, e.g. `request`.
        what: &'static str,
        /// Its key.
        key: String,
    },
    /// A stored row holds an illegal state; it is reported, not half-read.
    #[error("stored {table} row `{key}` is invalid: {reason}")]
    Decode {
        /// The table, e.g. `requests`.
        table: &'static str,
        /// The row's key (id or seq).
        key: String,
        /// The column and what is wrong with it.
        reason: String,
    },
    /// The caller asked to write an illegal state; nothing was written.
    #[error("refusing to store {what} `{key}`: {reason}")]
    Invalid {
        /// What was to be written, e.g. `request`.
        what: &'static str,
        /// Its key.
        key: String,
        /// The broken invariant.
        reason: String,
    },
    /// The event log does not verify: a row was edited, deleted or reordered.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The database failed or refused (connection, constraint, syntax…). The cause is in the
    /// message and deliberately not a `source`, or `{:#}` would print it twice.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// A migration failed, or the applied ones differ from the embedded ones.
    #[error("database migration failed: {0}")]
    Migrate(sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(error)
    }
}

impl StoreError {
    /// Whether `err`'s chain holds a stored row that could not be read ([`StoreError::Decode`]):
    /// no passing failure, and no reason to fail the other rows read with it.
    pub fn is_unreadable_record(err: &anyhow::Error) -> bool {
        err.chain()
            .any(|e| matches!(e.downcast_ref::<Self>(), Some(Self::Decode { .. })))
    }
}

/// See [`Store::clock_reader`].
pub struct ClockReader {
    conn: sqlx::pool::PoolConnection<sqlx::Any>,
    backend: Backend,
}

impl ClockReader {
    /// [`Store::database_time`], on this reader's connection.
    pub async fn read(&mut self) -> Result<DateTime<Utc>, StoreError> {
        let sql = match self.backend {
            Backend::Postgres => {
                "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) AS now"
            }
            Backend::Sqlite => {
                "SELECT CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) AS now"
            }
        };
        let row = sqlx::query(sql).fetch_one(&mut *self.conn).await?;
        row::Fields::new(&row, "clock", "now").time("now")
    }
}

/// The connection pool and the backend it talks to. Cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// An in-memory SQLite database: one connection that must never be closed.
    in_memory: bool,
}

impl Store {
    /// Opens a pool on `sqlite://PATH` (created when missing), `sqlite::memory:` or
    /// `postgres://…`/`postgresql://…`. Does not migrate; call [`Store::migrate`].
    ///
    /// SQLite connections use WAL (readers do not block the writer), a 10 s busy timeout (a
    /// writer waits for another instead of failing) and enforced foreign keys. An in-memory
    /// database lives in a single connection that is never recycled, since each new
    /// connection would open a new, empty database: fine for tests, gone on exit.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let in_memory =
            backend == Backend::Sqlite && (url.contains(":memory:") || url.contains("mode=memory"));
        let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
        let pool = match backend {
            Backend::Postgres => {
                // The pool retries a refused connection until its acquire timeout and then
                // says only "timed out": one plain connection first names the cause (refused,
                // no such database, bad password) at once.
                use sqlx::Connection as _;
                sqlx::AnyConnection::connect(url).await?.close().await?;
                options.max_connections(10).connect(url).await?
            }
            Backend::Sqlite => {
                let options = if in_memory {
                    options
                        .max_connections(1)
                        .min_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None)
                } else {
                    // One connection: SQLite has one writer at a time, and a second connection
                    // waiting for the write lock sleeps in SQLite's busy handler (1, 2, 5, 10 ms
                    // and up) instead of queueing: under load that sleep, not the work, was the
                    // latency. The pool's queue is fair and wakes a waiter as soon as it is free.
                    options.max_connections(1)
                };
                options
                    // The pool pings a connection as it comes back (which also rolls back a
                    // transaction a cancelled caller left open); pinging it again as it is
                    // taken out only guards against a lost network peer, which SQLite, in
                    // process, does not have. Each store call saved a round trip to the
                    // connection's thread: intake's writer takes it again every 10 ms under load.
                    .test_before_acquire(false)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            // journal_mode is a no-op ("memory") for in-memory databases.
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            // Every commit synced: an acknowledged webhook survives power loss
                            // (WAL with NORMAL may lose the last commits). Group commit pays.
                            conn.execute("PRAGMA synchronous = FULL").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            Ok(())
                        })
                    })
                    .connect(&sqlite_url(url, in_memory))
                    .await?
            }
        };
        Ok(Self {
            pool,
            backend,
            in_memory,
        })
    }

    /// Applies the migrations of this backend that have not run yet (a no-op when all have).
    /// On PostgreSQL sqlx holds an advisory lock meanwhile, so replicas may start together.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrations::migrator(self.backend).run(&self.pool).await?;
        Ok(())
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for running the free query functions inside a transaction.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes every connection; waits for those in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Whether the database answers and takes writes (for `/readyz`). On SQLite, answering is
    /// not enough: another process holding the write lock leaves reads working while intake
    /// cannot store a delivery, so the probe is a write that changes nothing (it waits for the
    /// write lock like any insert, and commits nothing).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        match self.backend {
            Backend::Postgres => conn.ping().await?,
            Backend::Sqlite => {
                sqlx::query("DELETE FROM deliveries WHERE 0 = 1")
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }

    /// The database's clock, read now, to the millisecond: PostgreSQL's `clock_timestamp()`
    /// (the server's clock, the one every replica sharing the database can read), SQLite's
    /// `now` (this host's clock).
    pub async fn database_time(&self) -> Result<DateTime<Utc>, StoreError> {
        self.clock_reader().await?.read().await
    }

    /// A connection kept for reading the database's clock several times, so that waiting for
    /// a pooled connection is not part of the reads' round trips.
    pub async fn clock_reader(&self) -> Result<ClockReader, StoreError> {
        Ok(ClockReader {
            conn: self.conn().await?,
            backend: self.backend,
        })
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, StoreError> {
        Ok(self.pool.acquire().await?)
    }

    /// A write transaction. SQLite: the write lock is taken first, as the event append needs
    /// it (see `append_event`), instead of failing to upgrade a reader later.
    pub(crate) async fn begin_writing<'c>(
        &self,
        conn: &'c mut AnyConnection,
    ) -> Result<sqlx::Transaction<'c, sqlx::Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => conn.begin().await?,
        })
    }
}

/// A file URL without `mode=` would fail on a fresh install; first start should create it.
fn sqlite_url(url: &str, in_memory: bool) -> String {
    if in_memory || url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// Milliseconds since the epoch, the stored form of every timestamp. Sub-millisecond
/// precision is dropped, so compare round-tripped times at millisecond precision.
pub(crate) fn to_millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// A duration in milliseconds, saturating (a lease of a century is still "forever").
pub(crate) fn duration_millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Forge ids and counts are `u64` in Rust and BIGINT in SQL.
pub(crate) fn to_i64(value: u64, what: &'static str, key: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Invalid {
        what,
        key: key.to_owned(),
        reason: format!("{value} does not fit a signed 64-bit column"),
    })
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        })
    }
}

impl FromStr for Backend {
    type Err = StoreError;
    fn from_str(url: &str) -> Result<Self, StoreError> {
        Self::from_url(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend() {
        assert_eq!(Backend::from_url("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::from_url("sqlite::memory:").unwrap(),
            Backend::Sqlite
        );
        assert_eq!(
            Backend::from_url("postgres://u@h/db").unwrap(),
            Backend::Postgres
        );
        assert_eq!(
            Backend::from_url("postgresql://u@h/db").unwrap(),
            Backend::Postgres
        );
    }

    #[test]
    fn a_database_error_names_its_cause_once_in_an_error_chain() {
        let err = anyhow::Error::from(StoreError::from(sqlx::Error::PoolTimedOut));
        let chain = format!("{err:#}");
        let cause = sqlx::Error::PoolTimedOut.to_string();
        assert_eq!(chain.matches(&cause).count(), 1, "{chain}");
        assert!(chain.starts_with("database error: "), "{chain}");
    }

    #[test]
    fn unsupported_url_names_the_scheme_but_not_the_password() {
        let err = Backend::from_url("mysql://root:hunter2@db/x").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("`mysql`"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        assert!(Backend::from_url("breakglass.db").is_err());
    }

    #[test]
    fn sqlite_file_urls_create_the_file_unless_told_otherwise() {
        assert_eq!(sqlite_url("sqlite://a.db", false), "sqlite://a.db?mode=rwc");
        assert_eq!(
            sqlite_url("sqlite://a.db?cache=private", false),
            "sqlite://a.db?cache=private&mode=rwc"
        );
        assert_eq!(
            sqlite_url("sqlite://a.db?mode=ro", false),
            "sqlite://a.db?mode=ro"
        );
        assert_eq!(sqlite_url("sqlite::memory:", true), "sqlite::memory:");
    }

    #[tokio::test]
    async fn in_memory_store_keeps_its_data_across_calls() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        store.migrate().await.unwrap();
        store.ping().await.unwrap();
        assert_eq!(store.backend(), Backend::Sqlite);
        let counts = store.count_deliveries_by_state().await.unwrap();
        assert!(counts.iter().all(|(_, n)| *n == 0));
    }

    /// SQLite is in process: the pool's check as a connection comes back (which rolls back
    /// what a cancelled caller left open) stays; the ping before handing it out again goes.
    #[tokio::test]
    async fn sqlite_connections_are_handed_out_without_a_ping() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/ping.db", dir.path().display());
        let store = Store::connect(&url).await.unwrap();
        assert!(!store.pool().options().get_test_before_acquire());
        store.migrate().await.unwrap();
        store.ping().await.unwrap();
    }

    #[tokio::test]
    async fn connect_refuses_other_databases_clearly() {
        let err = Store::connect("mysql://localhost/x").await.unwrap_err();
        assert!(matches!(err, StoreError::UnsupportedUrl { .. }), "{err}");
    }
}
