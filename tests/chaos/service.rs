//! The service side of the chaos run: the real `breakglass::service` in its own OS process,
//! with a clock the driver moves through a file. This is test code only: the product binary
//! (`breakglass serve`) always runs on the system clock, and nothing in it can be told
//! otherwise.
//!
//! The chaos test binary re-runs itself as the service (see `chaos_service_process` in
//! `tests/chaos.rs`), so the process that gets `kill -9` is a real separate process running the
//! real service code: HTTP server, store, workers, forge clients.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use breakglass::clock::Clock;
use breakglass::config::Config;
use breakglass::service::{self, Options};
use chrono::{DateTime, TimeDelta, Utc};

/// Names the file holding the service's config (set only by the driver, on the child).
pub const CONFIG_VAR: &str = "BREAKGLASS_CHAOS_CONFIG";
/// Names the file holding the clock offset.
pub const CLOCK_VAR: &str = "BREAKGLASS_CHAOS_CLOCK";
/// How often idle workers look for work in the chaos service.
pub const TICK: Duration = Duration::from_millis(100);
/// Each forge call's timeout in the chaos service: the driver makes the forge hang for
/// whole windows, and a hang costs real time (production: 10 s).
pub const FORGE_TIMEOUT: Duration = Duration::from_millis(250);

/// The wall clock plus an offset in milliseconds that the driver writes to a file (atomically,
/// by rename). The test forge's clock is the wall clock plus the same offset, so both move in
/// step without sharing memory.
#[derive(Debug)]
pub struct FileClock {
    path: PathBuf,
    last_offset_ms: AtomicI64,
}

impl FileClock {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            last_offset_ms: AtomicI64::new(0),
        }
    }

    /// The offset now; the last one read if the file cannot be read (time never goes back).
    fn offset_ms(&self) -> i64 {
        let read = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|text| text.trim().parse::<i64>().ok());
        match read {
            Some(offset) => self
                .last_offset_ms
                .fetch_max(offset, Ordering::SeqCst)
                .max(offset),
            None => self.last_offset_ms.load(Ordering::SeqCst),
        }
    }
}

impl Clock for FileClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + TimeDelta::milliseconds(self.offset_ms())
    }
}

/// Runs the service until the process is killed.
pub fn serve(config_path: &Path, clock_path: &Path) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("BREAKGLASS_CHAOS_LOG").unwrap_or_else(|_| "warn,breakglass=info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let config = Config::load(config_path, std::iter::empty()).expect("the chaos config");
        let options = Options {
            clock: Arc::new(FileClock::new(clock_path.to_owned())),
            database_clock: false,
            tick: TICK,
            templates_dir: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates")),
            env: |_| None,
            forge_timeout: FORGE_TIMEOUT,
            ..Options::default()
        };
        let _running = service::start(&config, options)
            .await
            .expect("the chaos service starts");
        std::future::pending::<()>().await;
    });
}
