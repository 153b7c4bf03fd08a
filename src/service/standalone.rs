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

/// A running standalone service and what it needs to stay up.
pub struct Standalone {
    pub running: Running,
    pub forge: TestForge,
    /// Holds the secret files and, for SQLite, the database.
    pub dir: TempDir,
}

impl Standalone {
    /// Starts one on `database_url` (`None`: a fresh SQLite file in its directory).
    ///
    /// # Panics
    /// When the service cannot start: a benchmark or test cannot go on without it.
    pub async fn start(
        database_url: Option<String>,
        clock: Arc<dyn Clock>,
        tick: Duration,
    ) -> Standalone {
        let dir = TempDir::new().expect("a temporary directory");
        let forge = TestForge::start().await;
        let bot = forge.bot_user("breakglass[bot]");
        forge.create_repo(REPO, &[("README.md", "# requests\n")]);
        std::fs::write(dir.path().join("token"), forge.token_for(&bot)).expect("token file");
        std::fs::write(dir.path().join("secret"), SECRET).expect("secret file");
        let database_url = database_url
            .unwrap_or_else(|| format!("sqlite://{}/standalone.db", dir.path().display()));
        let config = Config {
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
        let options = Options {
            clock,
            tick,
            templates_dir: None,
            env: |_| None,
        };
        let running = start(&config, options).await.expect("the service starts");
        Standalone {
            running,
            forge,
            dir,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.running.addr
    }
}
