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

/// Records every webhook delivery without sending it: the payloads are what a test reads.
pub fn record_webhooks(forge: &TestForge) {
    forge.set_webhooks_paused(true);
    forge.add_webhook("http://127.0.0.1:9/unused", "s");
}

/// The recorded payloads of `event` with `action` (any action when `None`), oldest first.
pub fn payloads(forge: &TestForge, event: &str, action: Option<&str>) -> Vec<serde_json::Value> {
    forge
        .deliveries()
        .iter()
        .filter(|d| d.event == event && action.is_none_or(|a| d.action.as_deref() == Some(a)))
        .map(|d| d.payload())
        .collect()
}

/// `GET path` as raw JSON through `octo` (status errors fail the test).
pub async fn get_json(octo: &Octocrab, path: &str) -> serde_json::Value {
    octo.get(path, None::<&()>)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e:?}"))
}

/// The status and JSON body (`Null` when empty) of `method path`, through `octo`.
pub async fn call(
    octo: &Octocrab,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let body = body.as_ref();
    let resp = match method {
        "GET" => octo._get(path).await,
        "POST" => octo._post(path, body).await,
        "PUT" => octo._put(path, body).await,
        "PATCH" => octo._patch(path, body).await,
        "DELETE" => octo._delete(path, body).await,
        other => panic!("no such method {other}"),
    }
    .unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
    let status = resp.status().as_u16();
    let text = octo.body_to_string(resp).await.expect("a body");
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// A JWT with the given `iss`; the forge checks the shape and issuer, not the RSA signature.
pub fn jwt(iss: u64) -> String {
    use base64::Engine;
    let enc = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
    };
    let now = chrono::Utc::now().timestamp();
    format!(
        "{}.{}.c2lnbmF0dXJl",
        enc(serde_json::json!({"alg": "RS256", "typ": "JWT"})),
        enc(serde_json::json!({"iat": now - 60, "exp": now + 540, "iss": iss}))
    )
}
