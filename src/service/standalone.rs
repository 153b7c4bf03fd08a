//! The service on its own against a test forge on loopback, for the benchmarks and the tests
//! that talk to it over HTTP only (no scenario harness): a requests repo with a README, the
//! bot's token and webhook secret in files, and the real service on a database of the
//! caller's choosing.

use std::sync::Arc;
use std::time::Duration;

use breakglass_test_forge::TestForge;

use super::{Options, Running, start};
use crate::clock::Clock;
use crate::config::{Config, GithubConfig};
use crate::store::testing::TempDir;

/// The requests repo of a standalone service.
pub const REPO: &str = "acme/access-requests";
/// Its webhook secret.
pub const SECRET: &str = "standalone-secret";

/// What a standalone world holds beyond the defaults.
pub struct Setup<'a> {
    /// `None`: a fresh SQLite file in the world's directory.
    pub database_url: Option<String>,
    /// Files of the requests repo besides its README (policies, say).
    pub files: &'a [(&'a str, &'a str)],
    /// Changes to the service's configuration.
    pub configure: fn(&mut Config),
    /// [`Options::database_clock`]: on PostgreSQL, keep time by the database's clock instead of
    /// the one given.
    pub database_clock: bool,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Self {
            database_url: None,
            files: &[],
            configure: |_| {},
            database_clock: false,
        }
    }
}

/// A running standalone service and what it needs to stay up.
pub struct Standalone {
    pub running: Running,
    pub forge: TestForge,
    /// Holds the secret files and, for SQLite, the database.
    pub dir: TempDir,
    database_url: String,
}

impl Standalone {
    /// Starts one on `database_url` (`None`: a fresh SQLite file in its directory).
    pub async fn start(
        database_url: Option<String>,
        clock: Arc<dyn Clock>,
        tick: Duration,
    ) -> Standalone {
        let setup = Setup {
            database_url,
            ..Setup::default()
        };
        Self::start_with(setup, clock, tick).await
    }

    /// Starts one as `setup` says.
    ///
    /// # Panics
    /// When the service cannot start: a benchmark or test cannot go on without it.
    pub async fn start_with(setup: Setup<'_>, clock: Arc<dyn Clock>, tick: Duration) -> Standalone {
        let dir = TempDir::new().expect("a temporary directory");
        let forge = TestForge::start().await;
        let bot = forge.bot_user("breakglass[bot]");
        let mut files = vec![("README.md", "# requests\n")];
        files.extend_from_slice(setup.files);
        forge.create_repo(REPO, &files);
        std::fs::write(dir.path().join("token"), forge.token_for(&bot)).expect("token file");
        std::fs::write(dir.path().join("secret"), SECRET).expect("secret file");
        let database_url = setup
            .database_url
            .unwrap_or_else(|| format!("sqlite://{}/standalone.db", dir.path().display()));
        let mut config = Config {
            listen: "127.0.0.1:0".parse().expect("a loopback address"),
            database_url,
            github: Some(GithubConfig {
                api_url: forge.api_url(),
                repository: REPO.into(),
                token_file: Some(dir.path().join("token")),
                webhook_secret_file: Some(dir.path().join("secret")),
                ..GithubConfig::default()
            }),
            ..Config::default()
        };
        (setup.configure)(&mut config);
        let options = Options {
            clock,
            database_clock: setup.database_clock,
            tick,
            templates_dir: None,
            env: |_| None,
            ..Options::default()
        };
        let running = start(&config, options).await.expect("the service starts");
        Standalone {
            running,
            forge,
            dir,
            database_url: config.database_url,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.running.addr
    }

    /// The URL of its database.
    pub fn database_url(&self) -> String {
        self.database_url.clone()
    }
}
