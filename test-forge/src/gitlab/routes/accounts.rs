//! Users, projects and groups: `GET /user`, `GET /users?username=`, `GET /users/:id`,
//! `GET /projects/:id`, `GET /groups/:id`, `GET /groups/:id/members/:user_id` (direct members)
//! and `GET /groups/:id/members/all/:user_id` (inherited ones too).

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::{GlPath, project};
use crate::gitlab::group_id;
use crate::gitlab::http::{GlError, GlQuery, GlResult, GlUser, paginate};
use crate::gitlab::json;
use crate::routes::App;
use crate::state::ForgeState;

pub(super) fn routes() -> axum::Router<App> {
    axum::Router::new()
        .route("/api/v4/user", get(me))
        .route("/api/v4/users", get(users))
        .route("/api/v4/users/{user_id}", get(user_by_id))
        .route("/api/v4/projects/{id}", get(get_project))
        .route("/api/v4/groups/{id}", get(get_group))
        .route(
            "/api/v4/groups/{id}/members/all/{user_id}",
            get(group_member),
        )
        .route(
            "/api/v4/groups/{id}/members/{user_id}",
            get(direct_group_member),
        )
}

async fn me(State(app): State<App>, GlUser(login): GlUser) -> Json<Value> {
    Json(json::user_full(&app.lock(), &login))
}

async fn users(State(app): State<App>, _u: GlUser, q: GlQuery, uri: Uri) -> GlResult<Response> {
    let st = app.lock();
    let items = st
        .users
        .keys()
        .filter(|login| {
            q.get("username")
                .is_none_or(|u| u.eq_ignore_ascii_case(login))
        })
        .map(|login| json::user_full(&st, login))
        .collect();
    Ok(paginate(items, &q, &uri, &st.base_url))
}

fn login_of(st: &ForgeState, user_id: u64) -> Option<String> {
    st.users
        .values()
        .find(|u| u.id == user_id)
        .map(|u| u.login.clone())
}

async fn user_by_id(
    State(app): State<App>,
    _u: GlUser,
    GlPath(user_id): GlPath<u64>,
) -> GlResult<Json<Value>> {
    let st = app.lock();
    let login = login_of(&st, user_id).ok_or_else(|| GlError::not_found("User"))?;
    Ok(Json(json::user_full(&st, &login)))
}

async fn get_project(
    State(app): State<App>,
    _u: GlUser,
    GlPath(id): GlPath<String>,
) -> GlResult<Json<Value>> {
    let st = app.lock();
    if let Ok(r) = project(&st, &id) {
        return Ok(Json(json::project(&st, r)));
    }
    // A merge request's source fork is known by id and name only.
    for r in st.repos.values() {
        for i in r.issues.values() {
            if let Some(fork) = i.pr.as_ref().and_then(|p| p.head_repo.as_deref())
                && (id == fork || id.parse::<u64>().ok() == Some(json::fork_id(fork)))
            {
                return Ok(Json(json::fork_project(&st, r, fork)));
            }
        }
    }
    Err(GlError::not_found("Project"))
}

/// Every group path: each team `org/slug[/sub…]` and all its ancestors.
fn groups(st: &ForgeState) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for team in st.teams.keys() {
        let parts: Vec<&str> = team.split('/').collect();
        for n in 1..=parts.len() {
            out.insert(parts[..n].join("/"));
        }
    }
    out
}

/// The group path `id` names (a numeric id or a full path).
fn group(st: &ForgeState, id: &str) -> GlResult<String> {
    let all = groups(st);
    let found = match id.parse::<u64>() {
        Ok(n) => all.into_iter().find(|g| group_id(g) == n),
        Err(_) => all.into_iter().find(|g| g == id),
    };
    found.ok_or_else(|| GlError::not_found("Group"))
}

async fn get_group(
    State(app): State<App>,
    _u: GlUser,
    GlPath(id): GlPath<String>,
) -> GlResult<Json<Value>> {
    let st = app.lock();
    let path = group(&st, &id)?;
    let (parent, name) = path
        .rsplit_once('/')
        .map_or((None, path.as_str()), |(p, n)| (Some(p), n));
    Ok(Json(json!({
        "id": group_id(&path),
        "name": name,
        "path": name,
        "full_name": path.replace('/', " / "),
        "full_path": path,
        "parent_id": parent.map(group_id),
        "visibility": "private",
        "web_url": format!("{}/groups/{path}", st.base_url),
    })))
}

/// Whether `login` is a member of group `path`, directly or through an ancestor group (GitLab's
/// inherited membership: a member of `acme/sre` is a member of `acme/sre/oncall`).
fn is_member(st: &ForgeState, path: &str, login: &str) -> bool {
    st.teams.iter().any(|(team, members)| {
        (path == team || path.starts_with(&format!("{team}/"))) && members.contains(login)
    })
}

async fn group_member(
    State(app): State<App>,
    u: GlUser,
    path: GlPath<(String, u64)>,
) -> GlResult<Dated<Json<Value>>> {
    member_answer(&app, u, path, true)
}

/// A direct member of the group only (GitLab's `members/:user_id`): not one inherited from a
/// parent group.
async fn direct_group_member(
    State(app): State<App>,
    u: GlUser,
    path: GlPath<(String, u64)>,
) -> GlResult<Dated<Json<Value>>> {
    member_answer(&app, u, path, false)
}

/// The member's record, or 404 when `user_id` is not a member of group `id` (counting members
/// of its parent groups when `inherited`).
fn member_answer(
    app: &App,
    _u: GlUser,
    GlPath((id, user_id)): GlPath<(String, u64)>,
    inherited: bool,
) -> GlResult<Dated<Json<Value>>> {
    let st = app.lock();
    let path = group(&st, &id)?;
    let login = login_of(&st, user_id).ok_or_else(|| GlError::not_found("User"))?;
    let member = if inherited {
        is_member(&st, &path, &login)
    } else {
        st.teams.get(&path).is_some_and(|m| m.contains(&login))
    };
    if !member {
        return Err(GlError::message(
            axum::http::StatusCode::NOT_FOUND,
            "404 Not found",
        ));
    }
    // The `Date` header on the forge's own clock (not the machine's, which hyper would put):
    // a client judges the membership's `expires_at` by it.
    let date = st.now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    Ok((
        [(axum::http::header::DATE, date)],
        Json(json::member(&st, &path, &login)),
    ))
}

/// An answer with its `Date` header.
type Dated<T> = ([(axum::http::header::HeaderName, String); 1], T);
