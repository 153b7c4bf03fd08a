//! Issue routes (pull requests are issues too): issues, comments, labels, reactions.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::Deserialize;
use serde_json::Value;

use super::{ApiJson, ApiPath, ApiQuery, App, Caller, paginate};
use crate::error::{ApiError, ApiResult};
use crate::json;
use crate::ops::{IssueEdit, ReactionTarget};
use crate::state::ForgeState;

pub(super) fn routes() -> axum::Router<App> {
    axum::Router::new()
        .route(
            "/repos/{owner}/{repo}/issues",
            get(list_issues).post(create_issue),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{number}",
            get(get_issue).patch(edit_issue).post(edit_issue),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{number}/comments",
            get(list_comments).post(create_comment),
        )
        .route(
            "/repos/{owner}/{repo}/issues/comments",
            get(list_repo_comments),
        )
        .route(
            "/repos/{owner}/{repo}/issues/comments/{id}",
            get(get_comment)
                .patch(edit_comment)
                .post(edit_comment)
                .delete(delete_comment),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{number}/timeline",
            get(list_timeline),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{number}/labels",
            get(list_labels)
                .post(add_labels)
                .put(set_labels)
                .delete(clear_labels),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{number}/labels/{name}",
            delete(remove_label),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{number}/reactions",
            get(list_issue_reactions).post(create_issue_reaction),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{number}/reactions/{id}",
            delete(delete_issue_reaction),
        )
        .route(
            "/repos/{owner}/{repo}/issues/comments/{id}/reactions",
            get(list_comment_reactions).post(create_comment_reaction),
        )
        .route(
            "/repos/{owner}/{repo}/issues/comments/{id}/reactions/{reaction}",
            delete(delete_comment_reaction),
        )
}

type RepoPath = ApiPath<(String, String)>;
type NumPath = ApiPath<(String, String, u64)>;
type TwoNumPath = ApiPath<(String, String, u64, u64)>;

fn full(owner: &str, repo: &str) -> String {
    format!("{owner}/{repo}")
}

fn issue_json(st: &ForgeState, name: &str, n: u64) -> ApiResult<Value> {
    let rec = st.repo(name)?;
    Ok(json::issue(st, rec, rec.issue(n)?))
}

async fn list_issues(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r)): RepoPath,
    q: ApiQuery,
    uri: Uri,
) -> ApiResult<Response> {
    let st = app.lock();
    let rec = st.repo(&full(&o, &r))?;
    let state = q.get("state").unwrap_or("open");
    let labels: Vec<&str> = q
        .get("labels")
        .map(|l| l.split(',').collect())
        .unwrap_or_default();
    let items = rec
        .issues
        .values()
        .rev()
        .filter(|i| match state {
            "open" => i.open,
            "closed" => !i.open,
            _ => true,
        })
        .filter(|i| labels.iter().all(|l| i.labels.iter().any(|x| x == l)))
        .map(|i| json::issue(&st, rec, i))
        .collect();
    Ok(paginate(items, &q, &uri, &st.base_url))
}

#[derive(Deserialize)]
struct CreateIssue {
    title: Option<String>,
    body: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
}

async fn create_issue(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r)): RepoPath,
    ApiJson(body): ApiJson<CreateIssue>,
) -> ApiResult<Response> {
    let login = caller.login()?.to_owned();
    let name = full(&o, &r);
    let mut st = app.lock();
    let n = st.open_issue(
        &name,
        &login,
        body.title.as_deref().unwrap_or_default(),
        body.body.as_deref().unwrap_or_default(),
    )?;
    if !body.labels.is_empty() {
        st.add_labels(&name, n, &login, &body.labels)?;
    }
    Ok((StatusCode::CREATED, Json(issue_json(&st, &name, n)?)).into_response())
}

async fn get_issue(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r, n)): NumPath,
) -> ApiResult<Json<Value>> {
    let st = app.lock();
    Ok(Json(issue_json(&st, &full(&o, &r), n)?))
}

#[derive(Deserialize)]
struct EditIssue {
    title: Option<String>,
    body: Option<String>,
    state: Option<String>,
    labels: Option<Vec<String>>,
}

async fn edit_issue(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r, n)): NumPath,
    ApiJson(body): ApiJson<EditIssue>,
) -> ApiResult<Json<Value>> {
    let login = caller.login()?.to_owned();
    let name = full(&o, &r);
    let mut st = app.lock();
    st.repo(&name)?.issue(n)?;
    st.edit_issue(
        &name,
        n,
        &login,
        IssueEdit {
            title: body.title.as_deref(),
            body: body.body.as_deref(),
            state: body.state.as_deref(),
        },
    )?;
    if let Some(labels) = &body.labels {
        st.set_labels(&name, n, &login, labels)?;
    }
    Ok(Json(issue_json(&st, &name, n)?))
}

async fn list_comments(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r, n)): NumPath,
    q: ApiQuery,
    uri: Uri,
) -> ApiResult<Response> {
    let st = app.lock();
    let rec = st.repo(&full(&o, &r))?;
    rec.issue(n)?;
    let since = q
        .get("since")
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&chrono::Utc));
    let items = rec
        .comments
        .values()
        .filter(|c| c.issue_number == n)
        .filter(|c| since.is_none_or(|s| c.updated_at >= s))
        .map(|c| json::comment(&st, rec, c))
        .collect();
    Ok(paginate(items, &q, &uri, &st.base_url))
}

/// An issue's timeline (`GET /repos/{o}/{r}/issues/{n}/timeline`), oldest first: its
/// comments (`commented`) and, for a pull request, each later head: `head_ref_force_pushed`
/// with the time of a move that was not a fast-forward, `committed` (a git commit, with no
/// time of the forge's) for one that was.
async fn list_timeline(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r, n)): NumPath,
    q: ApiQuery,
    uri: Uri,
) -> ApiResult<Response> {
    let st = app.lock();
    let rec = st.repo(&full(&o, &r))?;
    let issue = rec.issue(n)?;
    let mut dated: Vec<(chrono::DateTime<chrono::Utc>, Value)> = rec
        .comments
        .values()
        .filter(|c| c.issue_number == n)
        .map(|c| {
            let event = serde_json::json!({"id": c.id, "event": "commented", "body": c.body,
                "user": {"login": c.user}, "created_at": c.created_at, "updated_at": c.updated_at});
            (c.created_at, event)
        })
        .collect();
    let moves = issue.pr.iter().flat_map(|pr| pr.head_moves.iter().skip(1));
    for (k, m) in moves.enumerate() {
        let event = if m.forced {
            serde_json::json!({"id": 9_000_000 + k, "node_id": format!("HRFPE_{k}"), "event": "head_ref_force_pushed",
                "commit_id": null, "created_at": m.at})
        } else {
            serde_json::json!({"event": "committed", "sha": m.sha, "node_id": format!("C_{}", m.sha)})
        };
        dated.push((m.at, event));
    }
    dated.sort_by_key(|(at, _)| *at);
    let items = dated.into_iter().map(|(_, event)| event).collect();
    Ok(paginate(items, &q, &uri, &st.base_url))
}

/// Every comment of the repository (`GET /repos/{o}/{r}/issues/comments`): `since` (by
/// `updated_at`), `sort=created|updated` and `direction=asc|desc` (ascending by id without a
/// sort, as GitHub lists them), with the forge's own time as the `Date` header.
async fn list_repo_comments(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r)): ApiPath<(String, String)>,
    q: ApiQuery,
    uri: Uri,
) -> ApiResult<Response> {
    let st = app.lock();
    let rec = st.repo(&full(&o, &r))?;
    let since = q
        .get("since")
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&chrono::Utc));
    let mut comments: Vec<_> = rec
        .comments
        .values()
        .filter(|c| since.is_none_or(|s| c.updated_at >= s))
        .collect();
    match q.get("sort") {
        Some("updated") => comments.sort_by_key(|c| (c.updated_at, c.id)),
        Some(_) => comments.sort_by_key(|c| (c.created_at, c.id)),
        None => comments.sort_by_key(|c| c.id),
    }
    if q.get("sort").is_some() && q.get("direction") != Some("asc") {
        comments.reverse();
    }
    let items = comments
        .into_iter()
        .map(|c| json::comment(&st, rec, c))
        .collect();
    let resp = paginate(items, &q, &uri, &st.base_url);
    Ok(super::forge_dated(resp, st.now()))
}

#[derive(Deserialize)]
struct CommentBody {
    body: Option<String>,
}

fn comment_json(st: &ForgeState, name: &str, id: u64) -> ApiResult<Value> {
    let rec = st.repo(name)?;
    let c = rec.comments.get(&id).ok_or_else(ApiError::not_found)?;
    Ok(json::comment(st, rec, c))
}

async fn create_comment(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r, n)): NumPath,
    ApiJson(body): ApiJson<CommentBody>,
) -> ApiResult<Response> {
    let login = caller.login()?.to_owned();
    let name = full(&o, &r);
    let mut st = app.lock();
    let id = st.add_comment(&name, n, &login, body.body.as_deref().unwrap_or_default())?;
    Ok((StatusCode::CREATED, Json(comment_json(&st, &name, id)?)).into_response())
}

async fn get_comment(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r, id)): NumPath,
) -> ApiResult<Json<Value>> {
    let st = app.lock();
    Ok(Json(comment_json(&st, &full(&o, &r), id)?))
}

async fn edit_comment(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r, id)): NumPath,
    ApiJson(body): ApiJson<CommentBody>,
) -> ApiResult<Json<Value>> {
    let login = caller.login()?.to_owned();
    let name = full(&o, &r);
    let mut st = app.lock();
    st.edit_comment(&name, id, &login, body.body.as_deref().unwrap_or_default())?;
    Ok(Json(comment_json(&st, &name, id)?))
}

async fn delete_comment(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r, id)): NumPath,
) -> ApiResult<StatusCode> {
    let login = caller.login()?.to_owned();
    app.lock().delete_comment(&full(&o, &r), id, &login)?;
    Ok(StatusCode::NO_CONTENT)
}

fn labels_json(st: &ForgeState, name: &str, n: u64) -> ApiResult<Value> {
    let rec = st.repo(name)?;
    let i = rec.issue(n)?;
    Ok(Value::Array(
        i.labels.iter().map(|l| json::label(st, rec, l)).collect(),
    ))
}

/// `{"labels": [...]}` or a bare array, both of which GitHub accepts.
#[derive(Deserialize)]
#[serde(untagged)]
enum LabelsBody {
    Wrapped { labels: Vec<LabelName> },
    Bare(Vec<LabelName>),
}

/// A label given by name or as `{"name": ...}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum LabelName {
    Name(String),
    Object { name: String },
}

impl LabelsBody {
    fn names(self) -> Vec<String> {
        let list = match self {
            LabelsBody::Wrapped { labels } => labels,
            LabelsBody::Bare(labels) => labels,
        };
        list.into_iter()
            .map(|l| match l {
                LabelName::Name(n) | LabelName::Object { name: n } => n,
            })
            .collect()
    }
}

async fn list_labels(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r, n)): NumPath,
) -> ApiResult<Json<Value>> {
    let st = app.lock();
    Ok(Json(labels_json(&st, &full(&o, &r), n)?))
}

async fn add_labels(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r, n)): NumPath,
    ApiJson(body): ApiJson<LabelsBody>,
) -> ApiResult<Json<Value>> {
    let login = caller.login()?.to_owned();
    let name = full(&o, &r);
    let mut st = app.lock();
    st.add_labels(&name, n, &login, &body.names())?;
    Ok(Json(labels_json(&st, &name, n)?))
}

async fn set_labels(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r, n)): NumPath,
    ApiJson(body): ApiJson<LabelsBody>,
) -> ApiResult<Json<Value>> {
    let login = caller.login()?.to_owned();
    let name = full(&o, &r);
    let mut st = app.lock();
    st.set_labels(&name, n, &login, &body.names())?;
    Ok(Json(labels_json(&st, &name, n)?))
}

async fn clear_labels(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r, n)): NumPath,
) -> ApiResult<StatusCode> {
    let login = caller.login()?.to_owned();
    app.lock().set_labels(&full(&o, &r), n, &login, &[])?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_label(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r, n, label)): ApiPath<(String, String, u64, String)>,
) -> ApiResult<Json<Value>> {
    let login = caller.login()?.to_owned();
    let name = full(&o, &r);
    let mut st = app.lock();
    st.remove_label(&name, n, &login, &label)?;
    Ok(Json(labels_json(&st, &name, n)?))
}

fn list_reactions(
    app: &App,
    name: &str,
    target: ReactionTarget,
    q: &ApiQuery,
    uri: &Uri,
) -> ApiResult<Response> {
    let st = app.lock();
    let content = q.get("content");
    if let Some(c) = content
        && !super::REACTIONS.contains(&c)
    {
        return Err(ApiError::unprocessable(format!(
            "Validation Failed: content {c:?} is not a reaction"
        )));
    }
    let items = st
        .reactions(name, target)?
        .iter()
        // GitLab awards of emoji GitHub has no reaction for are not GitHub reactions.
        .filter(|x| super::REACTIONS.contains(&x.content.as_str()))
        .filter(|x| content.is_none_or(|c| x.content == c))
        .map(|x| json::reaction(&st, x))
        .collect();
    Ok(paginate(items, q, uri, &st.base_url))
}

#[derive(Deserialize)]
struct ReactionBody {
    content: Option<String>,
}

fn create_reaction(
    app: &App,
    caller: &Caller,
    name: &str,
    target: ReactionTarget,
    body: ReactionBody,
) -> ApiResult<Response> {
    let login = caller.login()?.to_owned();
    let mut st = app.lock();
    let content = body
        .content
        .ok_or_else(|| ApiError::unprocessable("Validation Failed: content is missing"))?;
    let (rec, created) = st.add_reaction(name, target, &login, &content)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json::reaction(&st, &rec))).into_response())
}

async fn list_issue_reactions(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r, n)): NumPath,
    q: ApiQuery,
    uri: Uri,
) -> ApiResult<Response> {
    list_reactions(&app, &full(&o, &r), ReactionTarget::Issue(n), &q, &uri)
}

async fn list_comment_reactions(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r, id)): NumPath,
    q: ApiQuery,
    uri: Uri,
) -> ApiResult<Response> {
    list_reactions(&app, &full(&o, &r), ReactionTarget::Comment(id), &q, &uri)
}

async fn create_issue_reaction(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r, n)): NumPath,
    ApiJson(body): ApiJson<ReactionBody>,
) -> ApiResult<Response> {
    create_reaction(&app, &caller, &full(&o, &r), ReactionTarget::Issue(n), body)
}

async fn create_comment_reaction(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r, id)): NumPath,
    ApiJson(body): ApiJson<ReactionBody>,
) -> ApiResult<Response> {
    create_reaction(
        &app,
        &caller,
        &full(&o, &r),
        ReactionTarget::Comment(id),
        body,
    )
}

async fn delete_issue_reaction(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r, n, id)): TwoNumPath,
) -> ApiResult<StatusCode> {
    caller.login()?;
    app.lock()
        .delete_reaction(&full(&o, &r), ReactionTarget::Issue(n), id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_comment_reaction(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r, cid, id)): TwoNumPath,
) -> ApiResult<StatusCode> {
    caller.login()?;
    app.lock()
        .delete_reaction(&full(&o, &r), ReactionTarget::Comment(cid), id)?;
    Ok(StatusCode::NO_CONTENT)
}
