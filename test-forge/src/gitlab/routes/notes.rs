//! Issues, and what hangs off issues and merge requests alike: notes and award emoji (also on
//! notes). Each route exists under `issues/:iid` and `merge_requests/:iid`; the handlers are
//! generic over which (`MR == true` for merge requests), since the iid alone is ambiguous.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use super::{GlPath, project, project_name};
use crate::gitlab::http::{GlError, GlParams, GlQuery, GlResult, GlUser, paginate};
use crate::gitlab::{Noteable, by_iid, json, number_of};
use crate::ops::{IssueEdit, ReactionTarget};
use crate::routes::App;
use crate::state::{ForgeState, RepoRec};

pub(super) fn routes() -> axum::Router<App> {
    axum::Router::new()
        .route(
            "/api/v4/projects/{id}/issues",
            get(list_issues).post(create_issue),
        )
        .route(
            "/api/v4/projects/{id}/issues/{iid}",
            get(get_issue).put(edit_issue),
        )
        .route(
            "/api/v4/projects/{id}/merge_requests/{iid}/notes",
            get(list_notes::<true>).post(create_note::<true>),
        )
        .route(
            "/api/v4/projects/{id}/issues/{iid}/notes",
            get(list_notes::<false>).post(create_note::<false>),
        )
        .route("/api/v4/projects/{id}/events", get(list_events))
        .route(
            "/api/v4/projects/{id}/merge_requests/{iid}/notes/{note_id}",
            get(get_note::<true>)
                .put(edit_note::<true>)
                .delete(delete_note::<true>),
        )
        .route(
            "/api/v4/projects/{id}/issues/{iid}/notes/{note_id}",
            get(get_note::<false>)
                .put(edit_note::<false>)
                .delete(delete_note::<false>),
        )
        .route(
            "/api/v4/projects/{id}/merge_requests/{iid}/award_emoji",
            get(list_awards::<true>).post(create_award::<true>),
        )
        .route(
            "/api/v4/projects/{id}/issues/{iid}/award_emoji",
            get(list_awards::<false>).post(create_award::<false>),
        )
        .route(
            "/api/v4/projects/{id}/merge_requests/{iid}/award_emoji/{award_id}",
            get(get_award::<true>).delete(delete_award::<true>),
        )
        .route(
            "/api/v4/projects/{id}/issues/{iid}/award_emoji/{award_id}",
            get(get_award::<false>).delete(delete_award::<false>),
        )
        .route(
            "/api/v4/projects/{id}/merge_requests/{iid}/notes/{note_id}/award_emoji",
            get(list_note_awards::<true>).post(create_note_award::<true>),
        )
        .route(
            "/api/v4/projects/{id}/issues/{iid}/notes/{note_id}/award_emoji",
            get(list_note_awards::<false>).post(create_note_award::<false>),
        )
        .route(
            "/api/v4/projects/{id}/merge_requests/{iid}/notes/{note_id}/award_emoji/{award_id}",
            get(get_note_award::<true>).delete(delete_note_award::<true>),
        )
        .route(
            "/api/v4/projects/{id}/issues/{iid}/notes/{note_id}/award_emoji/{award_id}",
            get(get_note_award::<false>).delete(delete_note_award::<false>),
        )
}

fn noteable<const MR: bool>(iid: u64) -> Noteable {
    if MR {
        Noteable::MergeRequest(iid)
    } else {
        Noteable::Issue(iid)
    }
}

// ---- events ----

/// The project's events (`GET /projects/:id/events`), of which only `action=commented` is
/// kept: one per note, with the note inside, newest first (`sort=asc` for oldest first), and
/// the forge's own time as the `Date` header. Any other action lists nothing.
async fn list_events(
    State(app): State<App>,
    _u: GlUser,
    GlPath(id): GlPath<String>,
    q: GlQuery,
    uri: Uri,
) -> GlResult<Response> {
    let st = app.lock();
    let r = project(&st, &id)?;
    let mut notes: Vec<_> = if q.get("action").is_none_or(|a| a == "commented") {
        r.comments.values().collect()
    } else {
        Vec::new()
    };
    notes.sort_by_key(|c| (c.created_at, c.id));
    if q.get("sort") != Some("asc") {
        notes.reverse();
    }
    let items = notes
        .into_iter()
        .filter_map(|c| {
            let i = r.issues.get(&c.issue_number)?;
            Some(serde_json::json!({
                "id": c.id,
                "project_id": r.id,
                "action_name": "commented on",
                "target_id": c.id,
                "target_iid": c.id,
                "target_type": "Note",
                "target_title": i.title,
                "author_id": json::user(&st, &c.user)["id"],
                "author": json::user(&st, &c.user),
                "author_username": c.user,
                "created_at": crate::gitlab::api_ts(c.created_at),
                "note": json::note(&st, r, i, c),
            }))
        })
        .collect();
    let resp = paginate(items, &q, &uri, &st.base_url);
    Ok(crate::routes::forge_dated(resp, st.now()))
}

// ---- issues ----

fn issue_json(st: &ForgeState, full: &str, iid: u64) -> GlResult<Value> {
    let r = st.repo(full)?;
    Ok(json::issue(st, r, by_iid(r, Noteable::Issue(iid))?))
}

async fn list_issues(
    State(app): State<App>,
    _u: GlUser,
    GlPath(id): GlPath<String>,
    q: GlQuery,
    uri: Uri,
) -> GlResult<Response> {
    let st = app.lock();
    let r = project(&st, &id)?;
    let state = q.get("state").unwrap_or("all");
    let items = r
        .issues
        .values()
        .rev()
        .filter(|i| i.pr.is_none())
        .filter(|i| state == "all" || json::state(i) == state)
        .map(|i| json::issue(&st, r, i))
        .collect();
    Ok(paginate(items, &q, &uri, &st.base_url))
}

async fn create_issue(
    State(app): State<App>,
    GlUser(login): GlUser,
    GlPath(id): GlPath<String>,
    p: GlParams,
) -> GlResult<Response> {
    let title = p.required("title")?;
    let mut st = app.lock();
    let full = project_name(&st, &id)?;
    let body = p.str("description").unwrap_or_default();
    let number = st.open_issue(&full, &login, &title, &body)?;
    if let Some(labels) = p.list("labels").filter(|l| !l.is_empty()) {
        st.add_labels(&full, number, &login, &labels)?;
    }
    let iid = st.repo(&full)?.issue(number)?.gl_iid;
    Ok((StatusCode::CREATED, Json(issue_json(&st, &full, iid)?)).into_response())
}

async fn get_issue(
    State(app): State<App>,
    _u: GlUser,
    GlPath((id, iid)): GlPath<(String, u64)>,
) -> GlResult<Json<Value>> {
    let st = app.lock();
    let full = project_name(&st, &id)?;
    Ok(Json(issue_json(&st, &full, iid)?))
}

/// `PUT /issues/:iid`: title, description, labels, `add_labels`/`remove_labels`, `state_event`.
async fn edit_issue(
    State(app): State<App>,
    GlUser(login): GlUser,
    GlPath((id, iid)): GlPath<(String, u64)>,
    p: GlParams,
) -> GlResult<Json<Value>> {
    let mut st = app.lock();
    let full = project_name(&st, &id)?;
    let number = number_of(st.repo(&full)?, Noteable::Issue(iid))?;
    let state = match p.str("state_event").as_deref() {
        None => None,
        Some("close") => Some("closed"),
        Some("reopen") => Some("open"),
        Some(_) => {
            return Err(GlError {
                status: StatusCode::BAD_REQUEST,
                body: serde_json::json!({"error": "state_event does not have a valid value"}),
            });
        }
    };
    let (title, body) = (p.str("title"), p.str("description"));
    st.edit_issue(
        &full,
        number,
        &login,
        IssueEdit {
            title: title.as_deref(),
            body: body.as_deref(),
            state,
        },
    )?;
    if let Some(labels) = p.list("labels") {
        st.set_labels(&full, number, &login, &labels)?;
    }
    if let Some(add) = p.list("add_labels") {
        st.add_labels(&full, number, &login, &add)?;
    }
    if let Some(remove) = p.list("remove_labels") {
        let current = st.repo(&full)?.issue(number)?.labels.clone();
        for name in remove.iter().filter(|n| current.contains(n)) {
            st.remove_label(&full, number, &login, name)?;
        }
    }
    Ok(Json(issue_json(&st, &full, iid)?))
}

// ---- notes ----

/// The note `note_id` of thread `of` (404 when it belongs to another thread).
fn note_json(st: &ForgeState, r: &RepoRec, of: Noteable, note_id: u64) -> GlResult<Value> {
    let i = by_iid(r, of)?;
    let c = r
        .comments
        .get(&note_id)
        .filter(|c| c.issue_number == i.number)
        .ok_or_else(|| GlError::not_found("Note"))?;
    Ok(json::note(st, r, i, c))
}

async fn list_notes<const MR: bool>(
    State(app): State<App>,
    _u: GlUser,
    GlPath((id, iid)): GlPath<(String, u64)>,
    q: GlQuery,
    uri: Uri,
) -> GlResult<Response> {
    let st = app.lock();
    let r = project(&st, &id)?;
    let i = by_iid(r, noteable::<MR>(iid))?;
    let mut notes: Vec<_> = r
        .comments
        .values()
        .filter(|c| c.issue_number == i.number)
        .collect();
    let by_updated = q.get("order_by") == Some("updated_at");
    notes.sort_by_key(|c| {
        (
            if by_updated {
                c.updated_at
            } else {
                c.created_at
            },
            c.id,
        )
    });
    // GitLab lists notes newest first unless asked `sort=asc`.
    if q.get("sort") != Some("asc") {
        notes.reverse();
    }
    let items = notes
        .into_iter()
        .map(|c| json::note(&st, r, i, c))
        .collect();
    Ok(paginate(items, &q, &uri, &st.base_url))
}

async fn create_note<const MR: bool>(
    State(app): State<App>,
    GlUser(login): GlUser,
    GlPath((id, iid)): GlPath<(String, u64)>,
    p: GlParams,
) -> GlResult<Response> {
    let body = p.required("body")?;
    let mut st = app.lock();
    let full = project_name(&st, &id)?;
    let of = noteable::<MR>(iid);
    let number = number_of(st.repo(&full)?, of)?;
    let note_id = st.add_comment(&full, number, &login, &body)?;
    let r = st.repo(&full)?;
    Ok((StatusCode::CREATED, Json(note_json(&st, r, of, note_id)?)).into_response())
}

async fn get_note<const MR: bool>(
    State(app): State<App>,
    _u: GlUser,
    GlPath((id, iid, note_id)): GlPath<(String, u64, u64)>,
) -> GlResult<Json<Value>> {
    let st = app.lock();
    let r = project(&st, &id)?;
    Ok(Json(note_json(&st, r, noteable::<MR>(iid), note_id)?))
}

async fn edit_note<const MR: bool>(
    State(app): State<App>,
    GlUser(login): GlUser,
    GlPath((id, iid, note_id)): GlPath<(String, u64, u64)>,
    p: GlParams,
) -> GlResult<Json<Value>> {
    let body = p.required("body")?;
    let mut st = app.lock();
    let full = project_name(&st, &id)?;
    let of = noteable::<MR>(iid);
    note_json(&st, st.repo(&full)?, of, note_id)?;
    st.edit_comment(&full, note_id, &login, &body)?;
    let r = st.repo(&full)?;
    Ok(Json(note_json(&st, r, of, note_id)?))
}

async fn delete_note<const MR: bool>(
    State(app): State<App>,
    GlUser(login): GlUser,
    GlPath((id, iid, note_id)): GlPath<(String, u64, u64)>,
) -> GlResult<StatusCode> {
    let mut st = app.lock();
    let full = project_name(&st, &id)?;
    note_json(&st, st.repo(&full)?, noteable::<MR>(iid), note_id)?;
    st.delete_comment(&full, note_id, &login)?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- award emoji ----

/// The model target and (`awardable_id`, `awardable_type`) of awards on thread `of`, or on
/// its note `note`.
fn award_target(
    r: &RepoRec,
    of: Noteable,
    note: Option<u64>,
) -> GlResult<(ReactionTarget, (u64, &'static str))> {
    let i = by_iid(r, of)?;
    match note {
        None => Ok((
            ReactionTarget::Issue(i.number),
            (json::global_id(i), of.type_name()),
        )),
        Some(note_id) => {
            r.comments
                .get(&note_id)
                .filter(|c| c.issue_number == i.number)
                .ok_or_else(|| GlError::not_found("Note"))?;
            Ok((ReactionTarget::Comment(note_id), (note_id, "Note")))
        }
    }
}

fn list_awards_of(
    app: &App,
    id: &str,
    of: Noteable,
    note: Option<u64>,
    q: &GlQuery,
    uri: &Uri,
) -> GlResult<Response> {
    let st = app.lock();
    let r = project(&st, id)?;
    let (target, awardable) = award_target(r, of, note)?;
    let items = st
        .reactions(&r.full_name(), target)?
        .iter()
        .map(|x| json::award(&st, x, awardable))
        .collect();
    Ok(paginate(items, q, uri, &st.base_url))
}

fn create_award_on(
    app: &App,
    login: &str,
    id: &str,
    of: Noteable,
    note: Option<u64>,
    p: &GlParams,
) -> GlResult<Response> {
    let name = p.required("name")?;
    let mut st = app.lock();
    let full = project_name(&st, id)?;
    let (target, awardable) = award_target(st.repo(&full)?, of, note)?;
    let rec = st.gl_award(&full, target, login, &name)?;
    Ok((StatusCode::CREATED, Json(json::award(&st, &rec, awardable))).into_response())
}

fn get_award_of(
    app: &App,
    id: &str,
    of: Noteable,
    note: Option<u64>,
    award_id: u64,
) -> GlResult<Json<Value>> {
    let st = app.lock();
    let r = project(&st, id)?;
    let (target, awardable) = award_target(r, of, note)?;
    let rec = st
        .reactions(&r.full_name(), target)?
        .iter()
        .find(|x| x.id == award_id)
        .ok_or_else(|| GlError::not_found("Award Emoji"))?;
    Ok(Json(json::award(&st, rec, awardable)))
}

fn delete_award_of(
    app: &App,
    login: &str,
    id: &str,
    of: Noteable,
    note: Option<u64>,
    award_id: u64,
) -> GlResult<StatusCode> {
    let mut st = app.lock();
    let full = project_name(&st, id)?;
    let (target, _) = award_target(st.repo(&full)?, of, note)?;
    st.gl_revoke(&full, target, award_id, Some(login))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_awards<const MR: bool>(
    State(app): State<App>,
    _u: GlUser,
    GlPath((id, iid)): GlPath<(String, u64)>,
    q: GlQuery,
    uri: Uri,
) -> GlResult<Response> {
    list_awards_of(&app, &id, noteable::<MR>(iid), None, &q, &uri)
}

async fn create_award<const MR: bool>(
    State(app): State<App>,
    GlUser(login): GlUser,
    GlPath((id, iid)): GlPath<(String, u64)>,
    p: GlParams,
) -> GlResult<Response> {
    create_award_on(&app, &login, &id, noteable::<MR>(iid), None, &p)
}

async fn get_award<const MR: bool>(
    State(app): State<App>,
    _u: GlUser,
    GlPath((id, iid, award_id)): GlPath<(String, u64, u64)>,
) -> GlResult<Json<Value>> {
    get_award_of(&app, &id, noteable::<MR>(iid), None, award_id)
}

async fn delete_award<const MR: bool>(
    State(app): State<App>,
    GlUser(login): GlUser,
    GlPath((id, iid, award_id)): GlPath<(String, u64, u64)>,
) -> GlResult<StatusCode> {
    delete_award_of(&app, &login, &id, noteable::<MR>(iid), None, award_id)
}

async fn list_note_awards<const MR: bool>(
    State(app): State<App>,
    _u: GlUser,
    GlPath((id, iid, note_id)): GlPath<(String, u64, u64)>,
    q: GlQuery,
    uri: Uri,
) -> GlResult<Response> {
    list_awards_of(&app, &id, noteable::<MR>(iid), Some(note_id), &q, &uri)
}

async fn create_note_award<const MR: bool>(
    State(app): State<App>,
    GlUser(login): GlUser,
    GlPath((id, iid, note_id)): GlPath<(String, u64, u64)>,
    p: GlParams,
) -> GlResult<Response> {
    create_award_on(&app, &login, &id, noteable::<MR>(iid), Some(note_id), &p)
}

async fn get_note_award<const MR: bool>(
    State(app): State<App>,
    _u: GlUser,
    GlPath((id, iid, note_id, award_id)): GlPath<(String, u64, u64, u64)>,
) -> GlResult<Json<Value>> {
    get_award_of(&app, &id, noteable::<MR>(iid), Some(note_id), award_id)
}

async fn delete_note_award<const MR: bool>(
    State(app): State<App>,
    GlUser(login): GlUser,
    GlPath((id, iid, note_id, award_id)): GlPath<(String, u64, u64, u64)>,
) -> GlResult<StatusCode> {
    delete_award_of(
        &app,
        &login,
        &id,
        noteable::<MR>(iid),
        Some(note_id),
        award_id,
    )
}
