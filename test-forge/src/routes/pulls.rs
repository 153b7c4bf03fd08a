//! Pull request routes: list, create, get, edit, files, commits, merge, reviews.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use git2::Oid;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiJson, ApiPath, ApiQuery, App, Caller, paginate};
use crate::error::{ApiError, ApiResult};
use crate::git;
use crate::json;
use crate::model::ReviewState;
use crate::ops::{IssueEdit, MergeRequest, NewPull};
use crate::state::{ForgeState, IssueRec, PrRec, RepoRec};

pub(super) fn routes() -> axum::Router<App> {
    axum::Router::new()
        .route(
            "/repos/{owner}/{repo}/pulls",
            get(list_pulls).post(create_pull),
        )
        .route(
            "/repos/{owner}/{repo}/pulls/{number}",
            get(get_pull).patch(edit_pull).post(edit_pull),
        )
        .route(
            "/repos/{owner}/{repo}/pulls/{number}/files",
            get(list_files),
        )
        .route(
            "/repos/{owner}/{repo}/pulls/{number}/commits",
            get(list_commits),
        )
        .route(
            "/repos/{owner}/{repo}/pulls/{number}/merge",
            get(is_merged).put(merge),
        )
        .route(
            "/repos/{owner}/{repo}/pulls/{number}/reviews",
            get(list_reviews).post(create_review),
        )
        .route(
            "/repos/{owner}/{repo}/pulls/{number}/reviews/{id}/dismissals",
            put(dismiss_review),
        )
}

type PullPath = ApiPath<(String, String, u64)>;

fn full(owner: &str, repo: &str) -> String {
    format!("{owner}/{repo}")
}

async fn list_pulls(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r)): ApiPath<(String, String)>,
    q: ApiQuery,
    uri: Uri,
) -> ApiResult<Response> {
    let st = app.lock();
    let rec = st.repo(&full(&o, &r))?;
    let state = q.get("state").unwrap_or("open");
    // `owner:branch`: a fork's branch of the same name is another head.
    let head = q.get("head").map(|h| match h.split_once(':') {
        Some((owner, branch)) => (Some(owner), branch),
        None => (None, h),
    });
    let base = q.get("base");
    let mut items: Vec<Value> = rec
        .issues
        .values()
        .rev()
        .filter_map(|i| i.pr.as_ref().map(|pr| (i, pr)))
        .filter(|(i, _)| match state {
            "open" => i.open,
            "closed" => !i.open,
            _ => true,
        })
        .filter(|(_, pr)| {
            head.is_none_or(|(owner, branch)| {
                pr.head_ref == branch && owner.is_none_or(|o| o == pr.head_owner(&rec.owner))
            })
        })
        .filter(|(_, pr)| base.is_none_or(|b| pr.base_ref == b))
        .map(|(i, pr)| json::pull(&st, rec, i, pr))
        .collect();
    if q.get("direction") == Some("asc") {
        items.reverse();
    }
    let resp = paginate(items, &q, &uri, &st.base_url);
    Ok(super::forge_dated(resp, st.now()))
}

#[derive(Deserialize)]
struct CreatePull {
    title: Option<String>,
    head: String,
    base: String,
    body: Option<String>,
    #[serde(default)]
    draft: bool,
}

async fn create_pull(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<CreatePull>,
) -> ApiResult<Response> {
    let login = caller.login()?.to_owned();
    let name = full(&o, &r);
    let mut st = app.lock();
    let number = st.open_pull(
        &name,
        &login,
        NewPull {
            head: &body.head,
            base: Some(&body.base),
            title: body.title.as_deref().unwrap_or_default(),
            body: body.body.as_deref().unwrap_or_default(),
            draft: body.draft,
        },
    )?;
    Ok((StatusCode::CREATED, Json(pull_json(&st, &name, number)?)).into_response())
}

fn with_pull<T>(
    st: &ForgeState,
    name: &str,
    number: u64,
    f: impl FnOnce(&RepoRec, &IssueRec, &PrRec) -> ApiResult<T>,
) -> ApiResult<T> {
    let rec = st.repo(name)?;
    let (i, pr) = rec.pull(number)?;
    f(rec, i, pr)
}

fn pull_json(st: &ForgeState, name: &str, number: u64) -> ApiResult<Value> {
    with_pull(st, name, number, |rec, i, pr| {
        Ok(json::pull(st, rec, i, pr))
    })
}

async fn get_pull(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r, n)): PullPath,
) -> ApiResult<Json<Value>> {
    let st = app.lock();
    Ok(Json(pull_json(&st, &full(&o, &r), n)?))
}

#[derive(Deserialize)]
struct EditPull {
    title: Option<String>,
    body: Option<String>,
    state: Option<String>,
}

async fn edit_pull(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r, n)): PullPath,
    ApiJson(body): ApiJson<EditPull>,
) -> ApiResult<Json<Value>> {
    let login = caller.login()?.to_owned();
    let name = full(&o, &r);
    let mut st = app.lock();
    st.repo(&name)?.pull(n)?;
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
    Ok(Json(pull_json(&st, &name, n)?))
}

/// The merge base a PR's diff is measured from (the fork point, also after the merge).
pub(crate) fn pr_range(rec: &RepoRec, pr: &PrRec) -> ApiResult<(Oid, Oid)> {
    let head = Oid::from_str(&pr.head_sha).map_err(ApiError::internal)?;
    let base_tip = match pr
        .merge_commit_sha
        .as_deref()
        .and_then(|s| Oid::from_str(s).ok())
    {
        Some(merge) => rec.git.find_commit(merge)?.parent_id(0)?,
        None => git::branch_tip(&rec.git, &pr.base_ref).ok_or_else(ApiError::not_found)?,
    };
    let from = git::merge_base(&rec.git, base_tip, head).ok_or_else(ApiError::not_found)?;
    Ok((from, head))
}

async fn list_files(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r, n)): PullPath,
    q: ApiQuery,
    uri: Uri,
) -> ApiResult<Response> {
    let st = app.lock();
    let items = with_pull(&st, &full(&o, &r), n, |rec, _, pr| {
        let (from, head) = pr_range(rec, pr)?;
        Ok(git::diff(&rec.git, from, head)?
            .iter()
            .map(|f| json::file_diff(&st, rec, &pr.head_sha, f))
            .collect::<Vec<_>>())
    })?;
    Ok(paginate(items, &q, &uri, &st.base_url))
}

async fn list_commits(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r, n)): PullPath,
    q: ApiQuery,
    uri: Uri,
) -> ApiResult<Response> {
    let st = app.lock();
    let items = with_pull(&st, &full(&o, &r), n, |rec, _, pr| {
        let (from, head) = pr_range(rec, pr)?;
        Ok(git::commits_between(&rec.git, from, head)?
            .into_iter()
            .filter_map(|oid| git::commit_detail(&rec.git, oid))
            .map(|d| json::commit(&st, rec, &d))
            .collect::<Vec<_>>())
    })?;
    Ok(paginate(items, &q, &uri, &st.base_url))
}

async fn is_merged(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r, n)): PullPath,
) -> ApiResult<StatusCode> {
    let st = app.lock();
    let merged = with_pull(&st, &full(&o, &r), n, |_, _, pr| Ok(pr.merged_at.is_some()))?;
    if merged {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

#[derive(Deserialize)]
struct MergeBody {
    commit_title: Option<String>,
    commit_message: Option<String>,
    sha: Option<String>,
    merge_method: Option<String>,
}

async fn merge(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r, n)): PullPath,
    ApiJson(body): ApiJson<MergeBody>,
) -> ApiResult<Json<Value>> {
    let login = caller.login()?.to_owned();
    let mut st = app.lock();
    let sha = st.merge_pull(
        &full(&o, &r),
        n,
        &login,
        MergeRequest {
            sha: body.sha.as_deref(),
            method: body.merge_method.as_deref().unwrap_or("merge"),
            title: body.commit_title.as_deref(),
            message: body.commit_message.as_deref(),
        },
    )?;
    Ok(Json(
        json!({"sha": sha, "merged": true, "message": "Pull Request successfully merged"}),
    ))
}

async fn list_reviews(
    State(app): State<App>,
    _c: Caller,
    ApiPath((o, r, n)): PullPath,
    q: ApiQuery,
    uri: Uri,
) -> ApiResult<Response> {
    let st = app.lock();
    let items = with_pull(&st, &full(&o, &r), n, |rec, _, pr| {
        Ok(pr
            .reviews
            .iter()
            .map(|x| json::review(&st, rec, n, x, false))
            .collect::<Vec<_>>())
    })?;
    Ok(paginate(items, &q, &uri, &st.base_url))
}

#[derive(Deserialize)]
struct CreateReview {
    body: Option<String>,
    event: Option<String>,
    commit_id: Option<String>,
}

async fn create_review(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r, n)): PullPath,
    ApiJson(body): ApiJson<CreateReview>,
) -> ApiResult<Json<Value>> {
    let login = caller.login()?.to_owned();
    let name = full(&o, &r);
    // Pending reviews (no event) are not modelled; GitHub would keep them invisible anyway.
    let event = body.event.as_deref().ok_or_else(|| {
        ApiError::unprocessable(
            "Validation Failed: pending reviews are not supported by the test forge; send an event",
        )
    })?;
    let state = ReviewState::from_event(event).ok_or_else(|| {
        ApiError::unprocessable(format!(
            "Validation Failed: event {event:?} is not one of APPROVE, REQUEST_CHANGES, COMMENT"
        ))
    })?;
    let mut st = app.lock();
    let id = st.submit_review(
        &name,
        n,
        &login,
        state,
        body.body.as_deref().unwrap_or_default(),
        body.commit_id.as_deref(),
    )?;
    let v = with_pull(&st, &name, n, |rec, _, pr| {
        let x = pr
            .reviews
            .iter()
            .find(|x| x.id == id)
            .ok_or_else(ApiError::not_found)?;
        Ok(json::review(&st, rec, n, x, false))
    })?;
    Ok(Json(v))
}

async fn dismiss_review(
    State(app): State<App>,
    caller: Caller,
    ApiPath((o, r, n, id)): ApiPath<(String, String, u64, u64)>,
) -> ApiResult<Json<Value>> {
    let login = caller.login()?.to_owned();
    let name = full(&o, &r);
    let mut st = app.lock();
    st.dismiss_review(&name, n, id, &login)?;
    let v = with_pull(&st, &name, n, |rec, _, pr| {
        let x = pr
            .reviews
            .iter()
            .find(|x| x.id == id)
            .ok_or_else(ApiError::not_found)?;
        Ok(json::review(&st, rec, n, x, false))
    })?;
    Ok(Json(v))
}
