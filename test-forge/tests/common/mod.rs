//! Shared set-up for the forge's own tests: a forge with a requests repo, a human and a bot, and
//! octocrab clients pointed at the forge.

#![allow(dead_code)]

use breakglass_test_forge::{TestForge, User};
use octocrab::Octocrab;

pub const REPO: &str = "acme/access-requests";
pub const OWNER: &str = "acme";
pub const NAME: &str = "access-requests";

/// A forge with `acme/access-requests` (a README and a policy on `main`), alice and the bot.
pub struct World {
    pub forge: TestForge,
    pub alice: User,
    pub bot: User,
    /// octocrab acting as the bot.
    pub octo: Octocrab,
}

/// An octocrab client with `token`, without retries so tests see every status.
pub fn octocrab_with(forge: &TestForge, token: &str) -> Octocrab {
    Octocrab::builder()
        .base_uri(forge.api_url())
        .expect("base uri")
        .personal_token(token.to_owned())
        .add_retry_config(octocrab::service::middleware::retry::RetryConfig::None)
        .build()
        .expect("octocrab")
}

pub async fn world() -> World {
    let forge = TestForge::start().await;
    let alice = forge.user("alice");
    let bot = forge.bot_user("breakglass[bot]");
    forge.create_repo(
        REPO,
        &[
            ("README.md", "# Access requests\n"),
            (
                "policies/prod.yaml",
                "environment: prod\nmax_duration: 4h\n",
            ),
        ],
    );
    let octo = octocrab_with(&forge, &forge.token_for(&bot));
    World {
        forge,
        alice,
        bot,
        octo,
    }
}

/// alice pushes a request file on `branch` and opens a PR; returns its number.
pub fn alice_opens_request(w: &World, branch: &str) -> u64 {
    w.forge.push_files(
        REPO,
        branch,
        &w.alice,
        &[(
            "requests/prod/req-1.yaml",
            "environment: prod\nrole: admin\nduration: 1h\n",
        )],
        "Request prod admin",
    );
    w.forge
        .open_pr(REPO, &w.alice, branch, "Break-glass: prod admin", "INC-1")
}

/// The status code of an octocrab error (panics on other errors).
pub fn status_of(err: octocrab::Error) -> u16 {
    match err {
        octocrab::Error::GitHub { source, .. } => source.status_code.as_u16(),
        other => panic!("expected a GitHub error, got {other:?}"),
    }
}
