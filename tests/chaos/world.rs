//! The chaos world: a requests repo on the test forge with the example policies, the people and
//! their teams, the bot's secrets on disk, a database, and the config every replica shares.

use std::path::{Path, PathBuf};

use breakglass::config::{Config, GithubConfig};
use breakglass::store::Store;
use breakglass::store::testing::{PostgresDatabase, TempDir, postgres_store, sqlite_url};
use breakglass_test_forge::{TestForge, User};

pub const REPO: &str = "acme/access-requests";
const SECRET: &str = "chaos-webhook-secret";

/// Which database the replicas share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct People {
    pub alice: User,
    pub bob: User,
    pub carol: User,
    pub dan: User,
    pub erin: User,
    pub bot: User,
}

pub struct World {
    pub forge: TestForge,
    pub people: People,
    pub store: Store,
    pub config: Config,
    pub dir: tempfile::TempDir,
    _database: Database,
}

/// Kept alive (and deleted on drop) with the world.
type Database = (Option<TempDir>, Option<PostgresDatabase>);

impl World {
    /// `None` for PostgreSQL when `BREAKGLASS_TEST_DATABASE_URL` is not set.
    pub async fn create(backend: Backend) -> Option<World> {
        let (database, url) = match backend {
            Backend::Sqlite => {
                let dir = TempDir::new().expect("temp dir");
                let url = sqlite_url(dir.path());
                ((Some(dir), None), url)
            }
            Backend::Postgres => {
                let (store, db) = postgres_store().await?;
                store.close().await;
                let url = db.url().to_owned();
                ((None, Some(db)), url)
            }
        };
        let forge = TestForge::start().await;
        let people = People {
            alice: forge.user("alice"),
            bob: forge.user("bob"),
            carol: forge.user("carol"),
            dan: forge.user("dan"),
            erin: forge.user("erin"),
            bot: forge.bot_user("breakglass[bot]"),
        };
        let policies = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies");
        let read = |name: &str| std::fs::read_to_string(policies.join(name)).expect("policy");
        let (prod, staging) = (read("prod.yaml"), read("staging.yaml"));
        forge.create_repo(
            REPO,
            &[
                ("README.md", "# access requests\n"),
                ("policies/prod.yaml", &prod),
                ("policies/staging.yaml", &staging),
            ],
        );
        for (team, user) in [
            ("acme/sre", &people.alice),
            ("acme/sre", &people.erin),
            ("acme/sre-leads", &people.carol),
            ("acme/sre-leads", &people.dan),
            ("acme/oncall", &people.bob),
            ("acme/oncall", &people.erin),
        ] {
            forge.add_team_member(team, user);
        }
        let dir = tempfile::tempdir().expect("chaos dir");
        let secret = |name: &str, value: &str| -> PathBuf {
            let path = dir.path().join(name);
            std::fs::write(&path, value).expect("secret file");
            path
        };
        let github = GithubConfig {
            api_url: forge.api_url(),
            repository: REPO.into(),
            token_file: Some(secret("token", &forge.token_for(&people.bot))),
            webhook_secret_file: Some(secret("webhook", SECRET)),
            ..GithubConfig::default()
        };
        let config = Config {
            database_url: url.clone(),
            // Many lifecycles run side by side, several per person.
            max_open_requests: 1000,
            github: Some(github),
            ..Config::default()
        };
        let store = Store::connect(&url)
            .await
            .expect("the chaos database opens");
        store.migrate().await.expect("migrate the chaos database");
        Some(World {
            forge,
            people,
            store,
            config,
            dir,
            _database: database,
        })
    }

    /// Sends the forge's webhooks to `addr` (the balancer).
    pub fn hook_to(&self, addr: std::net::SocketAddr) {
        self.forge
            .add_webhook(&format!("http://{addr}/webhooks/github"), SECRET);
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Keeps the run's directory (the replicas' logs) and its database for a post-mortem;
    /// returns where they are.
    pub fn keep(self) -> String {
        let kept = format!(
            "{} (database {})",
            self.dir.path().display(),
            self.config.database_url
        );
        std::mem::forget(self.dir);
        std::mem::forget(self._database);
        kept
    }
}
