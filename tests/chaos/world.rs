//! The chaos world: a requests repo on the test forge with the example policies, the people and
//! their teams, the bot's secrets on disk, a database, and the config every replica shares.

use std::path::{Path, PathBuf};

use breakglass::config::{AwsConfig, Config, GithubConfig, GitlabConfig};
use breakglass::store::Store;
use breakglass::store::testing::{PostgresDatabase, TempDir, postgres_store, sqlite_url};
use breakglass_test_forge::{Comment, Noteable, ReviewState, TestForge, User};

pub const REPO: &str = "acme/access-requests";
const SECRET: &str = "chaos-webhook-secret";

/// Which database the replicas share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Which forge the requests repo lives on. The test forge speaks both over the same git
/// repositories; the bot is configured for one (`[github]` or `[gitlab]`) and the people act
/// through that forge's API and webhooks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dialect {
    #[default]
    GitHub,
    GitLab,
}

impl Dialect {
    /// As `BREAKGLASS_CHAOS_FORGE` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::GitHub => "github",
            Dialect::GitLab => "gitlab",
        }
    }
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
    pub dialect: Dialect,
    pub people: People,
    pub store: Store,
    pub config: Config,
    pub dir: tempfile::TempDir,
    /// IAM in moto, when prod's `admin` role is granted by `aws-iam`.
    pub aws: Option<AwsWorld>,
    _database: Database,
}

/// moto, and what the invariants read there: each person's role `breakglass-<login>` and the
/// managed policy prod's `admin` grant attaches to it.
pub struct AwsWorld {
    pub iam: aws_sdk_iam::Client,
    pub policy_arn: String,
    _moto: crate::moto::Moto,
}

/// The role a grant of prod's `admin` to `login` attaches the policy to.
pub fn iam_role(login: &str) -> String {
    format!("breakglass-{login}")
}

impl AwsWorld {
    /// moto with a role per person and the policy; `None` (said) without Python.
    async fn start(logins: &[&str]) -> Option<AwsWorld> {
        crate::moto::fake_credentials();
        let moto = crate::moto::Moto::start().await?;
        let iam = crate::moto::iam_client(&moto);
        for login in logins {
            crate::moto::create_role(&iam, &iam_role(login)).await;
        }
        let policy_arn = crate::moto::create_admin_policy(&iam).await;
        Some(AwsWorld {
            iam,
            policy_arn,
            _moto: moto,
        })
    }

    /// prod's policy with its `admin` role granted through IAM.
    fn prod_policy(&self, noop: &str) -> String {
        let role = format!(
            "  admin:\n    provider: aws-iam\n    account: \"123456789012\"\n    principal: \"arn:aws:iam::123456789012:role/{}\"\n    policy_arn: {}\n",
            iam_role("{{ requester }}"),
            self.policy_arn
        );
        let changed = noop.replace("  admin:\n    provider: noop\n", &role);
        assert_ne!(changed, noop, "prod.yaml's admin role is noop");
        changed
    }

    /// Whether `login`'s role holds the policy now.
    pub async fn attached(&self, login: &str) -> bool {
        self.iam
            .list_attached_role_policies()
            .role_name(iam_role(login))
            .send()
            .await
            .expect("IAM answers")
            .attached_policies()
            .iter()
            .any(|p| p.policy_arn() == Some(self.policy_arn.as_str()))
    }
}

/// Kept alive (and deleted on drop) with the world.
type Database = (Option<TempDir>, Option<PostgresDatabase>);

impl World {
    /// `None` for PostgreSQL when `BREAKGLASS_TEST_DATABASE_URL` is not set.
    /// `aws`: prod's `admin` granted by `aws-iam` in moto (`None` without Python).
    pub async fn create(backend: Backend, dialect: Dialect, aws: bool) -> Option<World> {
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
        let (mut prod, staging) = (read("prod.yaml"), read("staging.yaml"));
        let aws = match aws {
            true => Some(AwsWorld::start(&["alice", "bob", "carol", "dan", "erin"]).await?),
            false => None,
        };
        if let Some(aws) = &aws {
            prod = aws.prod_policy(&prod);
        }
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
        let token = secret("token", &forge.token_for(&people.bot));
        let webhook = secret("webhook", SECRET);
        let (github, gitlab) = match dialect {
            Dialect::GitHub => {
                let github = GithubConfig {
                    api_url: forge.api_url(),
                    repository: REPO.into(),
                    token_file: Some(token),
                    webhook_secret_file: Some(webhook),
                    ..GithubConfig::default()
                };
                (Some(github), None)
            }
            Dialect::GitLab => {
                let gitlab = GitlabConfig {
                    api_url: forge.gitlab_api_url(),
                    project: REPO.into(),
                    token_file: Some(token),
                    webhook_token_file: Some(webhook),
                    ..GitlabConfig::default()
                };
                (None, Some(gitlab))
            }
        };
        let config = Config {
            database_url: url.clone(),
            // Many lifecycles run side by side, several per person.
            max_open_requests: 1000,
            github,
            gitlab,
            aws: aws.as_ref().map(|aws| AwsConfig {
                endpoint_url: aws._moto.url.clone(),
                ..AwsConfig::default()
            }),
            ..Config::default()
        };
        let store = Store::connect(&url)
            .await
            .expect("the chaos database opens");
        store.migrate().await.expect("migrate the chaos database");
        Some(World {
            forge,
            dialect,
            people,
            store,
            config,
            dir,
            aws,
            _database: database,
        })
    }

    /// Sends the forge's webhooks to `addr` (the balancer).
    pub fn hook_to(&self, addr: std::net::SocketAddr) {
        match self.dialect {
            Dialect::GitHub => self
                .forge
                .add_webhook(&format!("http://{addr}/webhooks/github"), SECRET),
            Dialect::GitLab => self
                .forge
                .add_gitlab_webhook(&format!("http://{addr}/webhooks/gitlab"), SECRET),
        }
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

/// What the people do on the forge, in the world's dialect. Change requests (GitHub PRs,
/// GitLab MRs) and issues are named by the number the bot knows them by: a PR or issue number
/// on GitHub, an MR or issue iid on GitLab (the bot's records hold the same numbers).
impl World {
    /// `user` opens a change request from `branch`; its number.
    pub fn open_change(&self, user: &User, branch: &str, title: &str) -> u64 {
        match self.dialect {
            Dialect::GitHub => self.forge.open_pr(REPO, user, branch, title, ""),
            Dialect::GitLab => self.forge.gl_open_mr(REPO, user, branch, title, ""),
        }
    }

    /// `user` opens an issue; its number.
    pub fn open_issue(&self, user: &User, title: &str) -> u64 {
        match self.dialect {
            Dialect::GitHub => self.forge.open_issue(REPO, user, title, ""),
            Dialect::GitLab => self.forge.gl_open_issue(REPO, user, title, ""),
        }
    }

    /// `user` comments `body` on change request `number`.
    pub fn comment_on_change(&self, number: u64, user: &User, body: &str) {
        match self.dialect {
            Dialect::GitHub => self.forge.comment(REPO, number, user, body),
            Dialect::GitLab => self.forge.gl_comment_mr(REPO, number, user, body),
        };
    }

    /// `user` comments `body` on issue `number`.
    pub fn comment_on_issue(&self, number: u64, user: &User, body: &str) {
        match self.dialect {
            Dialect::GitHub => self.forge.comment(REPO, number, user, body),
            Dialect::GitLab => self.forge.gl_comment_issue(REPO, number, user, body),
        };
    }

    /// `user` puts a 👍 on change request `number` (GitHub's `+1`, GitLab's `thumbsup`).
    pub fn thumbs_up(&self, number: u64, user: &User) {
        match self.dialect {
            Dialect::GitHub => self.forge.react(REPO, number, user, "+1"),
            Dialect::GitLab => self.forge.gl_award_mr(REPO, number, user, "thumbsup"),
        };
    }

    /// `user` approves change request `number` with the forge's own button (an approving
    /// review on GitHub, Approve on GitLab).
    pub fn approve_button(&self, number: u64, user: &User) {
        match self.dialect {
            Dialect::GitHub => {
                self.forge.review(REPO, number, user, ReviewState::Approved);
            }
            Dialect::GitLab => self.forge.gl_approve(REPO, number, user),
        }
    }

    /// `user` labels change request `number`.
    pub fn label_change(&self, number: u64, user: &User, label: &str) {
        let internal = match self.dialect {
            Dialect::GitHub => number,
            // The shared helpers take the forge's own number, not the MR's iid.
            Dialect::GitLab => self.forge.gl_number(REPO, Noteable::MergeRequest(number)),
        };
        self.forge.label(REPO, internal, user, label);
    }

    /// The comments (GitLab: notes) on change request `number`, oldest first.
    pub fn change_comments(&self, number: u64) -> Vec<Comment> {
        match self.dialect {
            Dialect::GitHub => self.forge.comments(REPO, number),
            Dialect::GitLab => self.forge.gl_notes(REPO, Noteable::MergeRequest(number)),
        }
    }
}
