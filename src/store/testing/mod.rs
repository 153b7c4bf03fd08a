//! Throwaway, migrated stores **for tests** (this crate's and the integration tests'); not
//! for production use.
//!
//! [`sqlite_store`] opens a fresh SQLite file in a temporary directory. [`postgres_store`]
//! leases an empty, migrated database on the server named by `BREAKGLASS_TEST_DATABASE_URL`
//! (e.g. `postgres://postgres@127.0.0.1:5432/test`) from a pool kept there, so tests run in
//! parallel without seeing each other (the `postgres` module says how). On a
//! local server add `?sslmode=disable`: TLS handshakes in a debug build make the PostgreSQL
//! run of `tests/store.rs` about four times slower (18 s instead of 4.5 s here).
//! [`for_each_backend`] runs one test body on SQLite and, when the variable is set, on
//! PostgreSQL too.
//!
//! The helpers panic on setup failure: that is a failed test, not data to recover from.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::Store;

mod postgres;
pub use postgres::{PostgresDatabase, postgres_store};

/// The environment variable naming a PostgreSQL server for tests.
pub const DATABASE_URL_VAR: &str = "BREAKGLASS_TEST_DATABASE_URL";

/// A temporary directory, deleted with its contents on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A new, empty directory under the system temporary directory.
    pub fn new() -> std::io::Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "breakglass-test-{}-{}-{:016x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&path)?;
        Ok(Self { path })
    }

    /// Where the directory is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover directory in /tmp is not worth a panic in drop.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A migrated store on a new SQLite file, and the directory holding it (keep it alive).
pub async fn sqlite_store() -> (Store, TempDir) {
    let dir = TempDir::new().expect("create a temporary directory");
    let store = Store::connect(&sqlite_url(dir.path()))
        .await
        .expect("open a SQLite test database");
    store
        .migrate()
        .await
        .expect("migrate the SQLite test database");
    (store, dir)
}

/// The URL of the SQLite file `breakglass.db` in `dir`, e.g. to reopen a store.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("breakglass.db").display())
}

/// Runs `test` on a fresh SQLite store, then on a fresh PostgreSQL store when
/// `BREAKGLASS_TEST_DATABASE_URL` is set (saying loudly on stderr when it is not).
/// An `Err` from `test` fails the test, naming the backend.
///
/// ```ignore
/// for_each_backend(|store| async move {
///     store.record_delivery(&delivery).await?;
///     Ok(())
/// })
/// .await;
/// ```
pub async fn for_each_backend<F, Fut>(test: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let (store, _dir) = sqlite_store().await;
    run("sqlite", &store, &test).await;
    match postgres_store().await {
        Some((store, _database)) => run("postgres", &store, &test).await,
        None => eprintln!("SKIPPED postgres: {DATABASE_URL_VAR} not set"),
    }
}

async fn run<F, Fut>(backend: &str, store: &Store, test: &F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    eprintln!("running on {backend}");
    let result = test(store.clone()).await;
    store.close().await;
    if let Err(err) = result {
        panic!("failed on {backend}: {err:?}");
    }
}
