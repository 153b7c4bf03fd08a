//! Who a token is: `GET /user` for personal tokens (a machine user is a `User`, a bot account a
//! `Bot`), GitHub's 403 for installation tokens, and the app's slug leading to its bot user.

mod common;

use breakglass_test_forge::AppConfig;
use common::*;

fn configure_app(w: &World) {
    w.forge.configure_app(AppConfig {
        app_id: 4242,
        installation_id: 77,
        bot_login: "breakglass[bot]".into(),
        token_ttl: chrono::Duration::hours(1),
    });
}

/// An installation token minted the way the bot mints it.
async fn installation_token(w: &World) -> String {
    let app = octocrab_with(&w.forge, &jwt(4242));
    let (status, body) = call(&app, "POST", "/app/installations/77/access_tokens", None).await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn get_user_with_a_personal_token_names_the_tokens_account_and_its_type() {
    let w = world().await;
    let machine = w.forge.user("breakglass-machine");
    for (user, kind) in [
        (&w.alice, "User"),
        // A personal token of a machine account is a user's token, bot or not in spirit.
        (&machine, "User"),
        (&w.bot, "Bot"),
    ] {
        let octo = octocrab_with(&w.forge, &w.forge.token_for(user));
        let me = get_json(&octo, "/user").await;
        assert_eq!(me["login"], user.login.as_str());
        assert_eq!(me["id"], user.id);
        assert_eq!(me["type"], kind);
    }
}

#[tokio::test]
async fn get_user_with_an_installation_token_is_githubs_403() {
    let w = world().await;
    configure_app(&w);
    let token = installation_token(&w).await;
    let as_app = octocrab_with(&w.forge, &token);
    let (status, body) = call(&as_app, "GET", "/user", None).await;
    assert_eq!(status, 403);
    assert_eq!(body["message"], "Resource not accessible by integration");
    // The token itself is good: it reads the repository and writes as the bot.
    let (status, _) = call(&as_app, "GET", &format!("/repos/{REPO}"), None).await;
    assert_eq!(status, 200);
    let n = w.forge.open_issue(REPO, &w.alice, "Access", "");
    let (status, comment) = call(
        &as_app,
        "POST",
        &format!("/repos/{REPO}/issues/{n}/comments"),
        Some(serde_json::json!({"body": "hello"})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(comment["user"]["login"], "breakglass[bot]");
    assert_eq!(comment["user"]["type"], "Bot");
}

#[tokio::test]
async fn the_apps_slug_leads_to_its_bot_user() {
    let w = world().await;
    configure_app(&w);
    let app = octocrab_with(&w.forge, &jwt(4242));
    let me = get_json(&app, "/app").await;
    assert_eq!(me["slug"], "breakglass");
    assert_eq!(me["id"], 4242);
    let slug = me["slug"].as_str().unwrap();
    for path in [
        format!("/users/{slug}[bot]"),
        format!("/users/{slug}%5Bbot%5D"),
    ] {
        let bot = get_json(&w.octo, &path).await;
        assert_eq!(bot["login"], "breakglass[bot]", "{path}");
        assert_eq!(bot["id"], w.bot.id, "{path}");
        assert_eq!(bot["type"], "Bot", "{path}");
    }
    // `GET /app` needs the app's JWT, not a user's token.
    let (status, _) = call(&w.octo, "GET", "/app", None).await;
    assert_eq!(status, 401);
    let (status, _) = call(&w.octo, "GET", "/users/nobody-here", None).await;
    assert_eq!(status, 404);
}
