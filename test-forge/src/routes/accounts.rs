//! Accounts and auth: users, team memberships, GitHub App installations and their tokens,
//! collaborator permissions and the rate-limit endpoint.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::{Value, json};

use super::{ApiPath, App, Caller};
use crate::error::{ApiError, ApiResult};
use crate::json;
use crate::state::{ForgeState, TokenRec};

pub(super) fn routes() -> axum::Router<App> {
    axum::Router::new()
        .route("/user", get(current_user))
        .route("/users/{username}", get(get_user))
        .route(
            "/orgs/{org}/teams/{slug}/memberships/{username}",
            get(team_membership),
        )
        .route("/orgs/{org}/teams/{slug}/members", get(team_members))
        .route("/app", get(get_app))
        .route(
            "/app/installations/{id}/access_tokens",
            post(create_installation_token),
        )
        .route("/repos/{owner}/{repo}/installation", get(repo_installation))
        .route(
            "/repos/{owner}/{repo}/collaborators/{username}/permission",
            get(collaborator_permission),
        )
        .route("/rate_limit", get(rate_limit))
}

/// The token's own account; `type` is `Bot` only for bot accounts, so a personal token of a
/// machine user says `User`. An installation token has no user to answer for: GitHub's 403.
async fn current_user(State(app): State<App>, caller: Caller) -> ApiResult<Json<Value>> {
    if let Caller::Installation(_) = caller {
        return Err(ApiError::forbidden(
            "Resource not accessible by integration",
        ));
    }
    let login = caller.login()?.to_owned();
    let st = app.lock();
    Ok(Json(json::profile(&st, &login)))
}

async fn get_user(
    State(app): State<App>,
    _c: Caller,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let st = app.lock();
    if !st.users.contains_key(&username) {
        return Err(ApiError::not_found());
    }
    Ok(Json(json::profile(&st, &username)))
}

async fn team_membership(
    State(app): State<App>,
    _c: Caller,
    ApiPath((org, slug, username)): ApiPath<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let st = app.lock();
    let member = st
        .teams
        .get(&format!("{org}/{slug}"))
        .is_some_and(|m| m.contains(&username));
    if !member {
        return Err(ApiError::not_found());
    }
    Ok(Json(json!({
        "url": format!("{}/orgs/{org}/teams/{slug}/memberships/{}", st.base_url, json::url_seg(&username)),
        "role": "member",
        "state": "active",
    })))
}

async fn team_members(
    State(app): State<App>,
    _c: Caller,
    ApiPath((org, slug)): ApiPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    let st = app.lock();
    let members = st
        .teams
        .get(&format!("{org}/{slug}"))
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(Value::Array(
        members.iter().map(|m| json::account(&st, m)).collect(),
    )))
}

/// When the app (and its installation) came to be: when its bot account was made, on the
/// forge's clock, so that the answer is stable between calls (and so its ETag).
fn app_created(st: &ForgeState) -> chrono::DateTime<Utc> {
    st.app
        .as_ref()
        .and_then(|a| st.users.get(&a.bot_login))
        .map(|u| u.created_at)
        .unwrap_or_else(|| st.now())
}

fn installation_json(st: &ForgeState, owner: &str) -> ApiResult<Value> {
    let app = st.app.as_ref().ok_or_else(ApiError::not_found)?;
    let b = &st.base_url;
    Ok(json!({
        "id": app.installation_id,
        "account": json::account(st, owner),
        "repository_selection": "all",
        "access_tokens_url": format!("{b}/app/installations/{}/access_tokens", app.installation_id),
        "repositories_url": format!("{b}/installation/repositories"),
        "html_url": format!("{b}/settings/installations/{}", app.installation_id),
        "app_id": app.app_id,
        "app_slug": app.bot_login.trim_end_matches("[bot]"),
        "target_id": json::org_id(owner),
        "target_type": "Organization",
        "permissions": {"checks": "write", "contents": "write", "issues": "write", "pull_requests": "write", "statuses": "write", "members": "read", "metadata": "read"},
        "events": ["issue_comment", "pull_request", "pull_request_review", "push"],
        "created_at": json::ts(app_created(st)),
        "updated_at": json::ts(app_created(st)),
        "single_file_name": null,
        "has_multiple_single_files": false,
        "single_file_paths": [],
        "suspended_by": null,
        "suspended_at": null,
    }))
}

/// The app id of a JWT caller; user tokens get GitHub's JWT error.
fn require_app(caller: &Caller) -> ApiResult<u64> {
    match caller {
        Caller::App(id) => Ok(*id),
        Caller::User(_) | Caller::Installation(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        )),
    }
}

async fn get_app(State(app): State<App>, caller: Caller) -> ApiResult<Json<Value>> {
    require_app(&caller)?;
    let st = app.lock();
    let cfg = st.app.as_ref().ok_or_else(ApiError::not_found)?;
    let slug = cfg.bot_login.trim_end_matches("[bot]").to_owned();
    Ok(Json(json!({
        "id": cfg.app_id,
        "slug": slug,
        "node_id": format!("A_{}", cfg.app_id),
        "name": slug,
        "owner": null,
        "description": "",
        "external_url": st.base_url,
        "html_url": format!("{}/apps/{slug}", st.base_url),
        "created_at": json::ts(app_created(&st)),
        "updated_at": json::ts(app_created(&st)),
        "permissions": {},
        "events": [],
    })))
}

async fn create_installation_token(
    State(app): State<App>,
    caller: Caller,
    ApiPath(id): ApiPath<u64>,
) -> ApiResult<Response> {
    let app_id = require_app(&caller)?;
    let mut st = app.lock();
    let cfg = st.app.clone().ok_or_else(ApiError::not_found)?;
    if cfg.installation_id != id || cfg.app_id != app_id {
        return Err(ApiError::not_found());
    }
    let expires_at = st.now() + cfg.token_ttl;
    let token = format!("ghs_{}", uuid::Uuid::new_v4().simple());
    st.tokens.insert(
        token.clone(),
        TokenRec {
            login: cfg.bot_login.clone(),
            expires_at: Some(expires_at),
            installation: true,
        },
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "expires_at": json::ts(expires_at),
            "permissions": {"checks": "write", "contents": "write", "issues": "write", "pull_requests": "write", "statuses": "write", "members": "read", "metadata": "read"},
            "repository_selection": "all",
        })),
    )
        .into_response())
}

async fn repo_installation(
    State(app): State<App>,
    caller: Caller,
    ApiPath((owner, repo)): ApiPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    require_app(&caller)?;
    let st = app.lock();
    st.repo(&format!("{owner}/{repo}"))?;
    Ok(Json(installation_json(&st, &owner)?))
}

/// The repository's owner and the app bot get `admin`, team members of the owning org
/// `write`, everyone else `read`.
async fn collaborator_permission(
    State(app): State<App>,
    _c: Caller,
    ApiPath((owner, repo, username)): ApiPath<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let st = app.lock();
    let rec = st.repo(&format!("{owner}/{repo}"))?;
    if !st.users.contains_key(&username) {
        return Err(ApiError::not_found());
    }
    let permission = st.permission(rec, &username);
    Ok(Json(json!({
        "permission": permission,
        "role_name": permission,
        "user": json::account(&st, &username),
    })))
}

async fn rate_limit(_c: Caller) -> Json<Value> {
    let reset = Utc::now().timestamp() + 3600;
    let core = json!({"limit": 5000, "used": 0, "remaining": 5000, "reset": reset});
    Json(json!({"resources": {"core": core}, "rate": core}))
}
